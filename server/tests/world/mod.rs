//! A real Fieldsync deployment for end-to-end tests and benchmarks: the server's
//! production router on a loopback port (in-process, on SQLite or on a throwaway
//! PostgreSQL database), an organisation with users, and devices that are real
//! `fieldsync-core` clients: a SQLite device store on disk, the sync client and
//! the HTTP transport, wrapped in a transport that can lose answers on purpose
//! and counts round trips and bytes.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use fieldsync_core::model::{Actor, RecordDoc, RecordMeta, Role};
use fieldsync_core::protocol::{
    self, PrimeRequest, PrimeResponse, PullRequest, PullResponse, PushRequest, PushResponse,
    RepairRequest, RepairResponse,
};
use fieldsync_core::store::{DeviceStore, StoreOptions};
use fieldsync_core::sync::{
    AttachmentDeclaration, AttachmentStatus, DeviceInfo, HttpTransport, LoginRequest,
    LoginResponse, SyncClient, SyncOptions, Transport, TransportError,
};
use fieldsync_core::{DeviceId, OrgId, RecordId, TeamId, TerritoryId, UserId};
use fieldsync_server::accounts::{self, NewUser};
use fieldsync_server::{Database, SettingsArgs, on_pool};

/// The password of every seeded user.
pub const PASSWORD: &str = "correct horse battery";
/// The seeded organisation's slug.
pub const ORG: &str = "acme";
/// The signing key the test server uses (so a test can mint its own tokens).
pub const SECRET: &str = "test-signing-key-0123456789abcdef-0123456789";

/// Which database the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite in a temporary directory.
    Sqlite,
    /// A fresh database in the shared throwaway PostgreSQL cluster.
    Postgres,
}

/// A seeded user.
#[derive(Debug, Clone)]
pub struct Person {
    /// Login email.
    pub email: String,
    /// Id.
    pub id: UserId,
    /// Role.
    pub role: Role,
    /// Team.
    pub team: TeamId,
}

/// A running server with its organisation.
pub struct World {
    /// The async runtime the server runs on.
    pub rt: tokio::runtime::Runtime,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// A pool on the server's database, for checks.
    pub db: Database,
    /// The organisation.
    pub org: OrgId,
    /// Team North (manager `mona`, reps `ana`, `ben`, `carla`, technician `tomas`).
    pub north: TeamId,
    /// Team South (rep `sara`, technician `tiago`).
    pub south: TeamId,
    /// The territory everyone works in.
    pub territory: TerritoryId,
    /// Seeded users by first name.
    pub people: std::collections::BTreeMap<&'static str, Person>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// The server as a child process (benchmarks measure its memory).
    pub process: std::sync::Mutex<Option<crate::support::ServerProcess>>,
    /// The settings the server runs with.
    pub settings: fieldsync_server::Settings,
    serve_args: Vec<String>,
    dir: tempfile::TempDir,
}

impl World {
    /// Starts a server on `backend` and seeds the organisation.
    pub fn start(backend: Backend) -> World {
        Self::launch(backend, false, |_| {})
    }

    /// Like [`World::start`], with settings changed by `tweak`.
    pub fn start_with(backend: Backend, tweak: impl FnOnce(&mut SettingsArgs)) -> World {
        Self::launch(backend, false, tweak)
    }

    /// Like [`World::start`], with the server as a `fieldsync serve` child process.
    pub fn start_process(backend: Backend) -> World {
        Self::launch(backend, true, |_| {})
    }

    fn launch(backend: Backend, as_process: bool, tweak: impl FnOnce(&mut SettingsArgs)) -> World {
        // `FIELDSYNC_TEST_LOG=debug` shows the server's log while debugging a test.
        if let Ok(filter) = std::env::var("FIELDSYNC_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(crate::support::PgCluster::shared().new_database()),
        };
        let mut args = SettingsArgs {
            data_dir: Some(dir.path().join("data")),
            database_url: database_url.clone(),
            jwt_secret: Some(fieldsync_server::settings::Secret::new(SECRET)),
            db_max_connections: Some(8),
            ..SettingsArgs::default()
        };
        tweak(&mut args);
        let settings = args.resolve().expect("settings");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (db, org, north, south, territory, people) = rt.block_on(async {
            let db = fieldsync_server::open_database(&settings)
                .await
                .expect("open and migrate");
            let org = accounts::create_org(&db, "Acme Field Services", ORG)
                .await
                .expect("org");
            let north = accounts::ensure_team(&db, org, "North")
                .await
                .expect("team");
            let south = accounts::ensure_team(&db, org, "South")
                .await
                .expect("team");
            let territory = accounts::ensure_territory(&db, org, "Lisbon")
                .await
                .expect("territory");
            let mut people = std::collections::BTreeMap::new();
            for (name, role, team) in [
                ("mona", Role::Manager, north),
                ("ana", Role::Rep, north),
                ("ben", Role::Rep, north),
                ("carla", Role::Rep, north),
                ("tomas", Role::Technician, north),
                ("sara", Role::Rep, south),
                ("tiago", Role::Technician, south),
                ("adam", Role::Admin, north),
            ] {
                let email = format!("{name}@acme.test");
                let id = accounts::create_user(
                    &db,
                    NewUser {
                        org,
                        email: email.clone(),
                        display_name: String::new(),
                        role,
                        team: Some(team),
                        territory: Some(territory),
                        password: PASSWORD.into(),
                    },
                )
                .await
                .expect("user");
                people.insert(
                    name,
                    Person {
                        email,
                        id,
                        role,
                        team,
                    },
                );
            }
            (db, org, north, south, territory, people)
        });
        let mut serve_args = Vec::new();
        let (base, stop, server, process) = if as_process {
            let mut args = vec!["--jwt-secret".to_owned(), SECRET.to_owned()];
            if let Some(url) = &database_url {
                args.extend(["--database-url".to_owned(), url.clone()]);
            }
            let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let process = crate::support::ServerProcess::spawn(&dir.path().join("data"), &arg_refs);
            serve_args = args;
            (process.base.clone(), None, None, Some(process))
        } else {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let listener = rt
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .expect("bind");
            let base = format!("http://{}", listener.local_addr().expect("addr"));
            let server = rt.spawn(fieldsync_server::launch_with_tcp_listener(
                settings.clone(),
                listener,
                async {
                    let _ = stopped.await;
                },
            ));
            (base, Some(stop), Some(server), None)
        };
        let world = World {
            rt,
            base,
            db,
            org,
            north,
            south,
            territory,
            people,
            stop,
            server,
            process: std::sync::Mutex::new(process),
            settings,
            serve_args,
            dir,
        };
        world.wait_healthy();
        world
    }

    fn wait_healthy(&self) {
        let url = format!("{}/healthz", self.base);
        for _ in 0..400 {
            if crate::support::http_get(&url).is_some_and(|(code, _)| code == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("the server did not become healthy");
    }

    /// Another server node with the same settings (so the same database and
    /// blob store), in this process on its own loopback port; stopped on drop.
    pub fn another_node(&self) -> Node {
        let listener = self
            .rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = self.rt.spawn(fieldsync_server::launch_with_tcp_listener(
            self.settings.clone(),
            listener,
            async {
                let _ = stopped.await;
            },
        ));
        let node = Node {
            base,
            stop: Some(stop),
            server: Some(server),
            rt: self.rt.handle().clone(),
        };
        let url = format!("{}/healthz", node.base);
        for _ in 0..400 {
            if crate::support::http_get(&url).is_some_and(|(code, _)| code == 200) {
                return node;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("the second node did not become healthy");
    }

    /// Runs SQL made by the test (no input from outside) on the server's database.
    pub fn execute_sql(&self, sql: String) -> u64 {
        self.rt.block_on(async {
            on_pool!(&self.db, |pool, _uuid| {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(pool)
                    .await
                    .expect("execute")
                    .rows_affected()
            })
        })
    }

    /// A user by first name.
    pub fn person(&self, name: &str) -> Person {
        self.people
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("no seeded user {name}"))
    }

    /// Record ownership for a record of `owner`.
    pub fn meta(&self, owner: &str) -> RecordMeta {
        let p = self.person(owner);
        RecordMeta {
            id: RecordId::new(),
            org: self.org,
            owner: p.id,
            team: p.team,
            territory: self.territory,
        }
    }

    /// A new device of `name`, logged in (not yet synced).
    pub fn device(&self, name: &str) -> Device {
        self.device_with(name, fast_options())
    }

    /// A new device with explicit sync options.
    pub fn device_with(&self, name: &str, options: SyncOptions) -> Device {
        let person = self.person(name);
        let path = self
            .dir
            .path()
            .join(format!("{name}-{}.db", DeviceId::new()));
        let store = Arc::new(DeviceStore::open(&path, StoreOptions::default()).expect("store"));
        let transport = Faulty::new(HttpTransport::new(&self.base, Duration::from_secs(30)));
        let client = SyncClient::new(store, transport, options);
        let device = DeviceId::new();
        let login = client
            .login(&LoginRequest {
                org: ORG.into(),
                email: person.email.clone(),
                password: PASSWORD.into(),
                device: DeviceInfo {
                    id: device,
                    platform: "test".into(),
                    app_version: "0.1.0".into(),
                },
            })
            .expect("login");
        Device {
            client,
            actor: Actor::on_device(person.id, person.role, device),
            person,
            path,
            login,
        }
    }

    /// The server's copy of a record.
    pub fn server_doc(&self, id: RecordId) -> Option<RecordDoc> {
        let bytes: Option<Vec<u8>> = self.rt.block_on(async {
            on_pool!(&self.db, |pool, uuid| {
                sqlx::query_scalar("SELECT doc FROM records WHERE id = $1")
                    .bind(uuid(*id.as_uuid()))
                    .fetch_optional(pool)
                    .await
                    .expect("query")
            })
        });
        bytes.map(|b| RecordDoc::load(&b).expect("server doc loads"))
    }

    /// Rows in the change log.
    pub fn log_len(&self) -> i64 {
        self.scalar("SELECT COUNT(*) FROM change_log")
    }

    /// One integer from the server's database.
    pub fn scalar(&self, sql: &'static str) -> i64 {
        self.rt.block_on(async {
            on_pool!(&self.db, |pool, _uuid| {
                sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(pool)
                    .await
                    .expect("query")
            })
        })
    }

    /// Runs SQL against the server's database with one id bound as `$1`.
    pub fn execute_with_id(&self, sql: &'static str, id: uuid::Uuid) -> u64 {
        self.rt.block_on(async {
            on_pool!(&self.db, |pool, uuid| {
                sqlx::query(sql)
                    .bind(uuid(id))
                    .execute(pool)
                    .await
                    .expect("execute")
                    .rows_affected()
            })
        })
    }
}

impl World {
    /// SIGKILLs the server process wherever it is (mid-transaction, mid-answer)
    /// and starts it again on the same port and database.
    pub fn kill_and_restart_server(&self) {
        let mut slot = self.process.lock().expect("lock");
        let mut old = slot.take().expect("the server runs as a process");
        let port: u16 = old
            .base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        let _ = old.child.kill();
        let _ = old.child.wait();
        drop(old);
        let args: Vec<&str> = self.serve_args.iter().map(String::as_str).collect();
        *slot = Some(crate::support::ServerProcess::spawn_on(
            port,
            &self.dir.path().join("data"),
            &args,
        ));
    }

    /// Peak resident memory of the server process in KiB (`VmHWM`), when it runs
    /// as a child process.
    pub fn server_peak_kib(&self) -> Option<u64> {
        self.server_status("VmHWM:")
    }

    /// Current resident memory of the server process in KiB (`VmRSS`).
    pub fn server_rss_kib(&self) -> Option<u64> {
        self.server_status("VmRSS:")
    }

    fn server_status(&self, field: &str) -> Option<u64> {
        let pid = self.process.lock().ok()?.as_ref()?.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = self.rt.block_on(server);
        }
        self.rt.block_on(self.db.close());
    }
}

/// A second server node of a [`World`] (see [`World::another_node`]).
pub struct Node {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    rt: tokio::runtime::Handle,
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

/// Options that keep retries quick in tests.
pub fn fast_options() -> SyncOptions {
    SyncOptions {
        base_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        ..SyncOptions::default()
    }
}

/// A device: a real store and sync client.
pub struct Device {
    /// The client (store inside).
    pub client: SyncClient<Arc<DeviceStore>, Faulty>,
    /// The user on this device, for domain actions.
    pub actor: Actor,
    /// Who.
    pub person: Person,
    /// The store's file.
    pub path: PathBuf,
    /// What login answered.
    pub login: LoginResponse,
}

impl Device {
    /// The store.
    pub fn store(&self) -> &DeviceStore {
        self.client.store()
    }

    /// The fault-injecting transport.
    pub fn net(&self) -> &Faulty {
        self.client.transport()
    }

    /// One full sync that must succeed.
    pub fn sync(&self) -> fieldsync_core::sync::SyncReport {
        self.client
            .sync(&fieldsync_core::sync::NoProgress)
            .unwrap_or_else(|e| panic!("{} sync failed: {e}", self.person.email))
    }
}

/// The HTTP transport with faults on demand and counters.
pub struct Faulty {
    inner: HttpTransport,
    /// Push answers to lose after the server handled the request.
    pub lose_push_answers: AtomicU32,
    /// Pull requests to let through before failing every further one.
    pub pulls_before_failure: AtomicU32,
    /// Whether pulls fail once `pulls_before_failure` reaches zero.
    pub fail_pulls: AtomicBool,
    /// Send every push twice (the second answer is the one returned).
    pub duplicate_pushes: AtomicBool,
    /// Requests sent (login and refresh included).
    pub requests: AtomicU64,
    /// CBOR body bytes sent and received on sync endpoints.
    pub bytes: AtomicU64,
    /// Chunk PUTs let through before every further one fails with a network
    /// error (`u32::MAX`: never).
    pub fail_chunks_after: AtomicU32,
    /// Chunk PUTs that reached the server.
    pub chunk_puts: AtomicU32,
    /// Attachment declarations sent.
    pub declarations: AtomicU32,
    /// Attachment completions sent.
    pub completions: AtomicU32,
}

impl Faulty {
    fn new(inner: HttpTransport) -> Self {
        Faulty {
            inner,
            lose_push_answers: AtomicU32::new(0),
            pulls_before_failure: AtomicU32::new(0),
            fail_pulls: AtomicBool::new(false),
            duplicate_pushes: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            fail_chunks_after: AtomicU32::new(u32::MAX),
            chunk_puts: AtomicU32::new(0),
            declarations: AtomicU32::new(0),
            completions: AtomicU32::new(0),
        }
    }

    /// Zeroes the counters.
    pub fn reset_counters(&self) {
        self.requests.store(0, Ordering::SeqCst);
        self.bytes.store(0, Ordering::SeqCst);
    }

    /// (requests, bytes) so far.
    pub fn counters(&self) -> (u64, u64) {
        (
            self.requests.load(Ordering::SeqCst),
            self.bytes.load(Ordering::SeqCst),
        )
    }

    fn count<Q: serde::Serialize, A: serde::Serialize>(&self, req: &Q, resp: &A) {
        let n = protocol::encode(req).len() + protocol::encode(resp).len();
        self.bytes.fetch_add(n as u64, Ordering::SeqCst);
    }
}

fn lost() -> TransportError {
    TransportError::Network("connection reset (injected)".into())
}

impl Transport for Faulty {
    fn login(&self, req: &LoginRequest) -> Result<LoginResponse, TransportError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.inner.login(req)
    }

    fn refresh(&self, refresh_token: &str) -> Result<LoginResponse, TransportError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.inner.refresh(refresh_token)
    }

    fn push(&self, token: &str, req: &PushRequest) -> Result<PushResponse, TransportError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        if self.duplicate_pushes.load(Ordering::SeqCst) {
            self.inner.push(token, req)?;
        }
        let resp = self.inner.push(token, req)?;
        self.count(req, &resp);
        let lose = self
            .lose_push_answers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if lose {
            return Err(lost());
        }
        Ok(resp)
    }

    fn pull(&self, token: &str, req: &PullRequest) -> Result<PullResponse, TransportError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        if self.fail_pulls.load(Ordering::SeqCst)
            && self
                .pulls_before_failure
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_err()
        {
            return Err(lost());
        }
        let resp = self.inner.pull(token, req)?;
        self.count(req, &resp);
        Ok(resp)
    }

    fn prime(&self, token: &str, req: &PrimeRequest) -> Result<PrimeResponse, TransportError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let resp = self.inner.prime(token, req)?;
        self.count(req, &resp);
        Ok(resp)
    }

    fn repair(&self, token: &str, req: &RepairRequest) -> Result<RepairResponse, TransportError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let resp = self.inner.repair(token, req)?;
        self.count(req, &resp);
        Ok(resp)
    }

    fn declare_attachment(
        &self,
        token: &str,
        req: &AttachmentDeclaration,
    ) -> Result<AttachmentStatus, TransportError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.declarations.fetch_add(1, Ordering::SeqCst);
        self.inner.declare_attachment(token, req)
    }

    fn put_attachment_chunk(
        &self,
        token: &str,
        sha256: &str,
        idx: u32,
        chunk: &[u8],
    ) -> Result<(), TransportError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        if self.chunk_puts.load(Ordering::SeqCst) >= self.fail_chunks_after.load(Ordering::SeqCst) {
            return Err(lost());
        }
        self.chunk_puts.fetch_add(1, Ordering::SeqCst);
        self.inner.put_attachment_chunk(token, sha256, idx, chunk)
    }

    fn complete_attachment(&self, token: &str, sha256: &str) -> Result<(), TransportError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.completions.fetch_add(1, Ordering::SeqCst);
        self.inner.complete_attachment(token, sha256)
    }

    fn live(
        &self,
        token: &str,
    ) -> Result<Box<dyn fieldsync_core::sync::LiveStream>, TransportError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.inner.live(token)
    }
}
