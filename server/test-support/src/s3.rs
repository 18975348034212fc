//! A real S3-compatible object store on loopback, for the attachment store.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::net::{free_port, http_get};

/// A real S3-compatible server on loopback: `moto` (PyPI `moto[server]`, which
/// `cargo xtask deps` installs), killed on drop. It accepts any credentials.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl S3Server {
    /// Starts the server and waits until it answers. Never skips: without moto
    /// the test fails, saying how to install it.
    pub fn start() -> S3Server {
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 (needed to run moto, the S3-compatible test server)");
        let mut server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "moto's S3 server exited ({status}): install it with \
                     `pip install 'moto[server]'` (or run `cargo xtask deps`)"
                );
            }
            if http_get(&format!("{}/", server.endpoint)).is_some() {
                return server;
            }
            assert!(Instant::now() < deadline, "moto did not start within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, name: &str) {
        let resp = ureq::put(format!("{}/{name}", self.endpoint))
            .send_empty()
            .expect("create the bucket");
        assert_eq!(resp.status().as_u16(), 200);
    }

    /// The keys of the objects in `bucket`.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let body = ureq::get(format!("{}/{bucket}?list-type=2", self.endpoint))
            .call()
            .expect("list the bucket")
            .into_body()
            .read_to_string()
            .expect("listing");
        body.split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(k, _)| k.to_owned()))
            .collect()
    }

    /// An `[attachments]` table for a settings file that stores in `bucket`.
    pub fn settings_toml(&self, bucket: &str) -> String {
        format!(
            "[attachments]\nstore = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{}\"\n\
             region = \"us-east-1\"\nallow_http = true\naccess_key_id = \"test\"\n\
             secret_access_key = \"test\"\n",
            self.endpoint
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
