//! The production server in this process, on a loopback port.

use crate::net::wait_healthy;
use crate::server::{self, Settings};

/// A server node serving in this process on its own loopback port; stopped
/// (and waited for) on drop or by [`Node::stop`].
pub struct Node {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    rt: tokio::runtime::Handle,
}

impl Node {
    /// Starts the server with `settings` on `rt` and waits until `/healthz`
    /// answers. Call it outside the runtime (it blocks on it).
    pub fn start(rt: &tokio::runtime::Handle, settings: Settings) -> Node {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = rt.spawn(server::serve(settings, listener, async {
            let _ = stopped.await;
        }));
        let node = Node {
            base,
            stop: Some(stop),
            server: Some(server),
            rt: rt.clone(),
        };
        wait_healthy(&node.base, "the server");
        node
    }

    /// Stops the node and checks that it shut down cleanly.
    pub fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            self.rt
                .block_on(server)
                .expect("join")
                .expect("clean shutdown");
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = self.rt.block_on(server);
        }
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}
