//! The real `fieldsync` binary as a child process: `fieldsync serve` until
//! dropped, and one-off commands (`migrate`, `org init`, ...).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::net::{free_port, http_get};

/// The `fieldsync` binary of this build: Cargo names it in
/// `CARGO_BIN_EXE_fieldsync` when it runs the server's tests and benches;
/// otherwise (an older Cargo, a test binary run by hand) it is the one beside
/// the running test binary's `deps/` directory.
pub fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CARGO_BIN_EXE_fieldsync") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join(format!("fieldsync{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "the fieldsync binary is not at {}: run the tests through `cargo test -p fieldsync-server`",
        bin.display()
    );
    bin
}

/// Runs `fieldsync` with `args`, extra environment and optional standard
/// input (closed after `stdin`'s text), and waits for it.
pub fn fieldsync<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> Output {
    let mut cmd = Command::new(server_binary());
    cmd.args(args)
        .env("FIELDSYNC_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run fieldsync");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("wait for fieldsync")
}

/// A running `fieldsync` process, killed on drop if still alive.
#[derive(Debug)]
pub struct ServerProcess {
    /// The process.
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl ServerProcess {
    /// Spawns `fieldsync serve` with `args` and waits until `/healthz` answers.
    pub fn spawn(data_dir: &Path, extra: &[&str]) -> ServerProcess {
        Self::spawn_on(free_port(), data_dir, extra)
    }

    /// Spawns `fieldsync serve` on `port` (e.g. the port of a server that was just killed).
    pub fn spawn_on(port: u16, data_dir: &Path, extra: &[&str]) -> ServerProcess {
        let child = Command::new(server_binary())
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(data_dir)
            .args(extra)
            .env("FIELDSYNC_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn fieldsync");
        let server = ServerProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if http_get(&format!("{}/healthz", server.base)).is_some_and(|(code, _)| code == 200) {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "fieldsync did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGINT (Ctrl-C) and waits for the exit status.
    pub fn interrupt(mut self) -> std::process::ExitStatus {
        let ok = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "fieldsync did not stop within 10 s of Ctrl-C"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process's CPU seconds from `/proc/<pid>/stat`: (its own user + system
/// time, the user + system time of its children it has waited for).
pub fn cpu_secs(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // Fields after the command name (which may hold spaces) in parentheses:
    // utime, stime, cutime and cstime are fields 14 to 17 of the line, 12 to
    // 15 here; the parent's pid is field 4, 2 here.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let hz = 100.0;
    Some((
        (tick(11)? + tick(12)?) as f64 / hz,
        (tick(13)? + tick(14)?) as f64 / hz,
    ))
}

/// The pids of `parent`'s live children.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let (_, rest) = s.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}
