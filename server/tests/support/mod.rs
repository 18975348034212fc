//! Test support: a throwaway PostgreSQL cluster and helpers to run the real binary.
//!
//! The cluster comes from the local `initdb`/`pg_ctl` (on PATH or under
//! `/usr/lib/postgresql/*/bin`). If they are missing the test fails, saying how to
//! install them: it never skips. PostgreSQL refuses to run as root, so as root the
//! binaries run as the `postgres` user through `runuser`, in a directory it owns.
//! One cluster serves a whole test binary; each test creates its own database.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running cluster, stopped when the test process exits.
pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
static NEXT_DB: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn find_bin(name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin").join(name)))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl PgCluster {
    fn command(&self, program: &Path) -> Command {
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    fn start() -> PgCluster {
        let initdb = find_bin("initdb").unwrap_or_else(|| {
            panic!("PostgreSQL's initdb was not found: install it with `apt-get install postgresql` (or run `cargo xtask test`, which does)")
        });
        let bin = initdb.parent().map(Path::to_path_buf).unwrap_or_default();
        assert!(
            bin.join("pg_ctl").is_file(),
            "pg_ctl not found beside {}",
            initdb.display()
        );
        let as_postgres = is_root();
        let dir = std::env::temp_dir().join(format!(
            "fieldsync-pg-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("chown");
            assert!(
                ok.success(),
                "could not give {} to the postgres user",
                dir.display()
            );
        }
        let cluster = PgCluster {
            dir,
            bin,
            port: free_port(),
            as_postgres,
        };
        let data = cluster.dir.join("data");
        let out = cluster
            .command(&initdb)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&data)
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            cluster.port,
            cluster.dir.display()
        );
        let out = cluster
            .command(&cluster.bin.join("pg_ctl"))
            .args(["-w", "-t", "60", "-D"])
            .arg(&data)
            .args(["-o", &opts, "-l"])
            .arg(cluster.dir.join("log"))
            .arg("start")
            .stdout(Stdio::null())
            .output()
            .expect("run pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(cluster.dir.join("log")).unwrap_or_default()
        );
        cluster
    }

    /// The shared cluster of this test binary.
    pub fn shared() -> &'static PgCluster {
        let cluster = CLUSTER.get_or_init(PgCluster::start);
        register_stop();
        cluster
    }

    /// Creates a fresh database and returns its URL.
    pub fn new_database(&self) -> String {
        let name = format!(
            "fs_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let admin = format!("postgres://postgres@127.0.0.1:{}/postgres", self.port);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .expect("connect to the test cluster");
            // The name is made here from the process id and a counter, never from input.
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("create database");
        });
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    fn stop(&self) {
        let _ = self
            .command(&self.bin.join("pg_ctl"))
            .args(["-D"])
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Stops the shared cluster when the test process exits.
fn register_stop() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        extern "C" fn stop_cluster() {
            if let Some(c) = CLUSTER.get() {
                c.stop();
            }
        }
        // The test harness exits the process without running destructors of
        // statics, so the cluster is stopped from a libc `atexit` handler.
        unsafe_atexit(stop_cluster);
    });
}

#[allow(unsafe_code)]
fn unsafe_atexit(f: extern "C" fn()) {
    unsafe extern "C" {
        fn atexit(cb: extern "C" fn()) -> i32;
    }
    // SAFETY: `atexit` only stores the function pointer; `f` is a plain
    // `extern "C" fn` with no captured state.
    unsafe {
        atexit(f);
    }
}

/// A running `fieldsync` process, killed on drop if still alive.
pub struct ServerProcess {
    pub child: Child,
    pub base: String,
}

impl ServerProcess {
    /// Spawns `fieldsync serve` with `args` and waits until `/healthz` answers.
    pub fn spawn(data_dir: &Path, extra: &[&str]) -> ServerProcess {
        Self::spawn_on(free_port(), data_dir, extra)
    }

    /// Spawns `fieldsync serve` on `port` (e.g. the port of a server that was just killed).
    pub fn spawn_on(port: u16, data_dir: &Path, extra: &[&str]) -> ServerProcess {
        let child = Command::new(env!("CARGO_BIN_EXE_fieldsync"))
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

/// A blocking GET over a plain TCP socket: (status code, body).
pub fn http_get(url: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((code, body))
}

/// A real S3-compatible server on loopback: `moto` (PyPI `moto[server]`, which
/// `cargo xtask deps` installs), killed on drop. It accepts any credentials.
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
