//! A real Fieldsync deployment for end-to-end tests and benchmarks: the server's
//! production router on a loopback port (in-process, on SQLite or on a throwaway
//! PostgreSQL database), an organisation with users, and devices that are real
//! `fieldsync-core` clients (see [`Device`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fieldsync_core::model::{Actor, RecordDoc, RecordMeta, Role};
use fieldsync_core::store::{DeviceStore, StoreOptions};
use fieldsync_core::sync::{DeviceInfo, HttpTransport, LoginRequest, SyncClient, SyncOptions};
use fieldsync_core::{DeviceId, OrgId, RecordId, TeamId, TerritoryId, UserId};

use crate::backend::Backend;
use crate::device::{Device, fast_options};
use crate::faulty::Faulty;
use crate::node::Node;
use crate::process::ServerProcess;
use crate::server::{self, Database, Secret, Settings, SettingsArgs};

/// The password of every seeded user.
pub const PASSWORD: &str = "correct horse battery";
/// The seeded organisation's slug.
pub const ORG: &str = "acme";
/// The signing key the test server uses (so a test can mint its own tokens).
pub const SECRET: &str = "test-signing-key-0123456789abcdef-0123456789";

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
    /// The territory the user works in (the records it creates are placed there).
    pub territory: TerritoryId,
}

impl Person {
    /// The first name: the part of the email before `@`.
    pub fn name(&self) -> &str {
        self.email.split('@').next().unwrap_or(&self.email)
    }
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
    /// Team North (manager `mona`, reps `ana`, `ben`, `carla`, technician `tomas`,
    /// administrator `adam`).
    pub north: TeamId,
    /// Team South (rep `sara`, technician `tiago`).
    pub south: TeamId,
    /// The territory everyone works in.
    pub territory: TerritoryId,
    /// Seeded users by first name.
    pub people: BTreeMap<&'static str, Person>,
    /// The server when it runs in this process.
    node: Option<Node>,
    /// The server as a child process (benchmarks measure its memory).
    pub process: std::sync::Mutex<Option<ServerProcess>>,
    /// The settings the server runs with.
    pub settings: Settings,
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

    /// Like [`World::start_process`], with settings changed by `tweak`; the
    /// child process gets the limits it sets (logins per minute, per address,
    /// new devices per day, live stream caps) as flags.
    pub fn start_process_with(backend: Backend, tweak: impl FnOnce(&mut SettingsArgs)) -> World {
        Self::launch(backend, true, tweak)
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
        let database_url = backend.database_url();
        let mut args = SettingsArgs {
            data_dir: Some(dir.path().join("data")),
            database_url: database_url.clone(),
            jwt_secret: Some(Secret::new(SECRET)),
            db_max_connections: Some(8),
            // Tests log many devices in from one address within a minute; a
            // test of these caps sets them (`None` for the defaults).
            logins_per_minute_per_address: Some(0),
            new_devices_per_day: Some(0),
            // Visits planned earlier today would turn `missed` under a test
            // that runs past their end; a test of that pass turns it on.
            missed_visit_check_secs: Some(0),
            ..SettingsArgs::default()
        };
        tweak(&mut args);
        let limits = (
            args.logins_per_minute,
            args.live_streams_per_device,
            args.live_streams_per_user,
            args.logins_per_minute_per_address,
            args.new_devices_per_day,
            args.missed_visit_check_secs,
        );
        let settings = args.resolve().expect("settings");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (db, org, north, south, territory, people) = rt.block_on(async {
            let db = server::open_database(&settings)
                .await
                .expect("open and migrate");
            let org = server::create_org(&db, "Acme Field Services", ORG).await;
            let north = server::ensure_team(&db, org, "North").await;
            let south = server::ensure_team(&db, org, "South").await;
            let territory = server::ensure_territory(&db, org, "Lisbon").await;
            let mut people = BTreeMap::new();
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
                let id = server::create_user(
                    &db,
                    server::User {
                        org,
                        email: &email,
                        display_name: "",
                        role,
                        team: Some(team),
                        territory: Some(territory),
                        password: PASSWORD,
                    },
                )
                .await;
                people.insert(
                    name,
                    Person {
                        email,
                        id,
                        role,
                        team,
                        territory,
                    },
                );
            }
            (db, org, north, south, territory, people)
        });
        let mut serve_args = Vec::new();
        let (base, node, process) = if as_process {
            // The key from a file, as an operator gives it (a flag would show in `ps`).
            let key = dir.path().join("jwt.key");
            std::fs::write(&key, SECRET).expect("write the signing key");
            let mut args = vec![
                "--jwt-secret-file".to_owned(),
                key.to_str().expect("utf-8 path").to_owned(),
            ];
            if let Some(url) = &database_url {
                args.extend(["--database-url".to_owned(), url.clone()]);
            }
            for (flag, value) in [
                ("--logins-per-minute", limits.0.map(|n| n.to_string())),
                ("--live-streams-per-device", limits.1.map(|n| n.to_string())),
                ("--live-streams-per-user", limits.2.map(|n| n.to_string())),
                (
                    "--logins-per-minute-per-address",
                    limits.3.map(|n| n.to_string()),
                ),
                ("--new-devices-per-day", limits.4.map(|n| n.to_string())),
                ("--missed-visit-check-secs", limits.5.map(|n| n.to_string())),
            ] {
                if let Some(value) = value {
                    args.extend([flag.to_owned(), value]);
                }
            }
            let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let process = ServerProcess::spawn(&dir.path().join("data"), &arg_refs);
            serve_args = args;
            (process.base.clone(), None, Some(process))
        } else {
            let node = Node::start(rt.handle(), settings.clone());
            (node.base.clone(), Some(node), None)
        };
        World {
            rt,
            base,
            db,
            org,
            north,
            south,
            territory,
            people,
            node,
            process: std::sync::Mutex::new(process),
            settings,
            serve_args,
            dir,
        }
    }

    /// Another server node with the same settings (so the same database and
    /// blob store), in this process on its own loopback port; stopped on drop.
    pub fn another_node(&self) -> Node {
        Node::start(self.rt.handle(), self.settings.clone())
    }

    /// Runs SQL made by the test (no input from outside) on the server's database.
    pub fn execute_sql(&self, sql: String) -> u64 {
        self.rt.block_on(server::execute(&self.db, sql))
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
        self.meta_of(&self.person(owner))
    }

    /// Record ownership for a record of `p` (a seeded user or one from
    /// [`World::add_person`]).
    pub fn meta_of(&self, p: &Person) -> RecordMeta {
        RecordMeta {
            id: RecordId::new(),
            org: self.org,
            owner: p.id,
            team: p.team,
            territory: p.territory,
        }
    }

    /// A user beyond the seeded ones (`<name>@acme.test`, the seeded
    /// password), for workloads of many users (benchmarks).
    pub fn add_person(&self, name: &str, role: Role, team: TeamId) -> Person {
        self.add_person_in(name, role, team, self.territory)
    }

    /// Like [`World::add_person`], working in `territory` (see
    /// [`World::add_territory`]): a field force spread over territories, each
    /// rep reading its own territory's customers.
    pub fn add_person_in(
        &self,
        name: &str,
        role: Role,
        team: TeamId,
        territory: TerritoryId,
    ) -> Person {
        let email = format!("{name}@acme.test");
        let id = self.rt.block_on(server::create_user(
            &self.db,
            server::User {
                org: self.org,
                email: &email,
                display_name: "",
                role,
                team: Some(team),
                territory: Some(territory),
                password: PASSWORD,
            },
        ));
        Person {
            email,
            id,
            role,
            team,
            territory,
        }
    }

    /// An account named `name`, owned by `dev`'s user, created on `dev`
    /// (not yet synced).
    pub fn account_on(&self, dev: &Device, name: &str) -> RecordId {
        let account = fieldsync_core::model::Account {
            meta: self.meta_of(&dev.person),
            name: name.into(),
            account_type: "outlet".into(),
            account_status: "active".into(),
            code: None,
            price_list_id: None,
            visit_frequency_days: None,
            locations: BTreeMap::new(),
        };
        dev.store()
            .create(&account, crate::today(8))
            .expect("an account")
    }

    /// A territory of the organisation besides the one everyone works in
    /// (created if missing).
    pub fn add_territory(&self, name: &str) -> TerritoryId {
        self.rt
            .block_on(server::ensure_territory(&self.db, self.org, name))
    }

    /// An account like [`World::account_on`]'s in `territory` (the device's
    /// user must be office to place it outside their own).
    pub fn account_in(&self, dev: &Device, name: &str, territory: TerritoryId) -> RecordId {
        let id = self.account_on(dev, name);
        dev.store()
            .update::<fieldsync_core::model::Account>(id, crate::today(8), |a| {
                a.meta.territory = territory
            })
            .expect("placed in the territory");
        id
    }

    /// A visit planned today from 9:00 to 10:00 at `account`, owned by
    /// `dev`'s user, created on `dev` (not yet synced).
    pub fn visit_on(&self, dev: &Device, account: RecordId) -> RecordId {
        let visit = fieldsync_core::model::Visit::planned(
            self.meta_of(&dev.person),
            account,
            crate::today(9),
            crate::today(10),
        );
        dev.store()
            .create_stateful(&visit, &dev.actor, crate::today(8))
            .expect("a visit")
    }

    /// A new device of `name`, logged in (not yet synced).
    pub fn device(&self, name: &str) -> Device {
        self.device_with(name, fast_options())
    }

    /// A new device with explicit sync options.
    pub fn device_with(&self, name: &str, options: SyncOptions) -> Device {
        self.device_of(self.person(name), options)
    }

    /// A new device of `person` (seeded or added), logged in (not yet synced).
    pub fn device_of(&self, person: Person, options: SyncOptions) -> Device {
        self.device_via(person, &self.base, options)
    }

    /// A new device of `person` that reaches the server at `base` (a proxy in
    /// front of it), logged in (not yet synced).
    pub fn device_via(&self, person: Person, base: &str, options: SyncOptions) -> Device {
        let path = self
            .dir
            .path()
            .join(format!("{}-{}.db", person.name(), DeviceId::new()));
        let store = Arc::new(DeviceStore::open(&path, StoreOptions::default()).expect("store"));
        let transport = Faulty::new(HttpTransport::new(base, Duration::from_secs(30)));
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
        let bytes = self
            .rt
            .block_on(server::record_doc(&self.db, *id.as_uuid()));
        bytes.map(|b| RecordDoc::load(&b).expect("server doc loads"))
    }

    /// Rows in the change log.
    pub fn log_len(&self) -> i64 {
        self.scalar("SELECT COUNT(*) FROM change_log")
    }

    /// One integer from the server's database.
    pub fn scalar(&self, sql: &'static str) -> i64 {
        self.rt.block_on(server::scalar(&self.db, sql))
    }

    /// Runs SQL against the server's database with one id bound as `$1`.
    pub fn execute_with_id(&self, sql: &'static str, id: uuid::Uuid) -> u64 {
        self.rt.block_on(server::execute_with_id(&self.db, sql, id))
    }

    /// Runs `sql` with `$1` bound to a number (a change-log position).
    pub fn execute_with_seq(&self, sql: &'static str, seq: i64) -> u64 {
        self.rt
            .block_on(server::execute_with_seq(&self.db, sql, seq))
    }
}

impl World {
    /// SIGKILLs the server process wherever it is (mid-transaction, mid-answer)
    /// and starts it again on the same port and database.
    pub fn kill_and_restart_server(&self) {
        self.restart_server_after(|| {});
    }

    /// The data directory the server process runs in.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// The database flags the server process runs with (`--database-url …`
    /// on PostgreSQL; none on SQLite, whose file is in [`World::data_dir`]).
    pub fn database_args(&self) -> Vec<String> {
        self.settings
            .database_url
            .as_ref()
            .map(|url| vec!["--database-url".to_owned(), url.clone()])
            .unwrap_or_default()
    }

    /// SIGKILLs the server process, runs `between` (an operator at work:
    /// a restore), and starts the server again on the same port and database.
    pub fn restart_server_after(&self, between: impl FnOnce()) {
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
        between();
        let args: Vec<&str> = self.serve_args.iter().map(String::as_str).collect();
        *slot = Some(ServerProcess::spawn_on(
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

    /// CPU time the server process has used so far, user and system, in
    /// seconds (`/proc/<pid>/stat`).
    pub fn server_cpu_secs(&self) -> Option<f64> {
        let pid = self.process.lock().ok()?.as_ref()?.child.id();
        crate::process::cpu_secs(pid).map(|(own, _)| own)
    }

    /// CPU seconds this process (the bench's devices, and the server when
    /// it runs in-process) has used so far.
    pub fn own_cpu_secs(&self) -> Option<f64> {
        crate::process::cpu_secs(std::process::id()).map(|(own, _)| own)
    }

    /// CPU seconds the PostgreSQL cluster has used so far (its postmaster and
    /// every backend, live or ended); `None` on SQLite, whose work is the
    /// server process's own.
    pub fn database_cpu_secs(&self) -> Option<f64> {
        match self.db {
            Database::Postgres(_) => crate::pg::PgCluster::shared().cpu_secs(),
            Database::Sqlite(_) => None,
        }
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
        // The in-process server first (it stops and is waited for), then the pool.
        drop(self.node.take());
        self.rt.block_on(self.db.close());
    }
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("base", &self.base)
            .field("org", &self.org)
            .field("people", &self.people)
            .finish_non_exhaustive()
    }
}
