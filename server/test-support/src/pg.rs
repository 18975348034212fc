//! A throwaway PostgreSQL cluster.
//!
//! The cluster comes from the local `initdb`/`pg_ctl` (on PATH or under
//! `/usr/lib/postgresql/*/bin`). If they are missing the test fails, saying how to
//! install them: it never skips. PostgreSQL refuses to run as root, so as root the
//! binaries run as the `postgres` user through `runuser`, in a directory it owns.
//! One cluster serves a whole test binary; each test creates its own database.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::net::free_port;

/// A running cluster, stopped when the test process exits.
#[derive(Debug)]
pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    /// The loopback port it listens on.
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
        let mut cluster = PgCluster {
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
        for attempt in 1.. {
            // `FIELDSYNC_PG_OPTIONS` adds server settings, for profiling a
            // bench (e.g. `-c shared_preload_libraries=pg_stat_statements`).
            let opts = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 {}",
                cluster.port,
                cluster.dir.display(),
                std::env::var("FIELDSYNC_PG_OPTIONS").unwrap_or_default()
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
            if out.status.success() {
                break;
            }
            let log = std::fs::read_to_string(cluster.dir.join("log")).unwrap_or_default();
            // Another process took the free port between its choice and the
            // postmaster's bind (tests start clusters and servers in
            // parallel): choose another, a few times.
            if attempt < 3 && log.contains("Address already in use") {
                cluster.port = free_port();
                continue;
            }
            panic!(
                "pg_ctl start failed: {}\n{log}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        cluster
    }

    /// A cluster of its own, for a test that restarts or stops it; stopped
    /// and removed when dropped.
    pub fn dedicated() -> PgCluster {
        PgCluster::start()
    }

    /// Restarts the cluster as a crash and a supervisor would: an immediate
    /// stop (no shutdown checkpoint; every connection is cut mid-statement and
    /// the next start runs crash recovery), then a start on the same port.
    pub fn restart(&self) {
        let data = self.dir.join("data");
        let out = self
            .command(&self.bin.join("pg_ctl"))
            .args(["-w", "-t", "60", "-D"])
            .arg(&data)
            .args(["-m", "immediate", "-l"])
            // The log file, not a pipe: the new postmaster keeps its output
            // open, and waiting on a pipe would never end.
            .arg(self.dir.join("log"))
            .arg("restart")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run pg_ctl restart");
        assert!(
            out.success(),
            "pg_ctl restart failed:\n{}",
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
    }

    /// CPU seconds the cluster has used so far: the postmaster, its live
    /// processes (backends, writers) and those that ended (which the
    /// postmaster waited for). For benchmarks: compare two readings.
    pub fn cpu_secs(&self) -> Option<f64> {
        let pid_file = std::fs::read_to_string(self.dir.join("data/postmaster.pid")).ok()?;
        let postmaster: u32 = pid_file.lines().next()?.trim().parse().ok()?;
        let (own, ended) = crate::process::cpu_secs(postmaster)?;
        let live: f64 = crate::process::children_of(postmaster)
            .into_iter()
            .filter_map(crate::process::cpu_secs)
            .map(|(own, ended)| own + ended)
            .sum();
        Some(own + ended + live)
    }

    /// The cluster's server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
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
        crate::rt::runtime().block_on(async {
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

impl Drop for PgCluster {
    // The shared cluster is a static and is never dropped (an `atexit`
    // handler stops it); a dedicated one stops with its test.
    fn drop(&mut self) {
        self.stop();
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
