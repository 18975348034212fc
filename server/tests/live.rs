//! The live channel end to end: real devices (`fieldsync-core` live sync over
//! HTTP) against real server nodes on loopback ports.
//!
//! - On SQLite, one node: a change pushed by the manager reaches the rep's
//!   connected phone, which syncs on its own.
//! - On PostgreSQL, two nodes on one database: a change pushed through node A
//!   reaches a phone connected to node B (LISTEN/NOTIFY); the listener
//!   connections are killed mid-run and the next change still arrives (the
//!   listener reconnects and catches up from the change log).
//! - Stopping a node ends its live connections with a reconnect hint.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fieldsync_core::model::visit::Visit;
use fieldsync_core::model::{Account, RecordMeta, Role};
use fieldsync_core::store::{DeviceStore, StoreOptions};
use fieldsync_core::sync::{
    DeviceInfo, HttpTransport, LiveEvent, LiveListener, LiveOptions, LoginRequest, NoProgress,
    SyncClient, SyncOptions,
};
use fieldsync_core::{DeviceId, OrgId, RecordId, TeamId, TerritoryId, UserId};
use fieldsync_server::service::accounts::{self, NewUser};
use fieldsync_server::settings::Secret;
use fieldsync_server::{Database, Settings, SettingsArgs};
use fieldsync_test_support::{Node, PASSWORD, PgCluster, http_get, today};

const SECRET: &str = "live-signing-key-0123456789abcdef-0123456789";

type Client = Arc<SyncClient<Arc<DeviceStore>, HttpTransport>>;

struct World {
    rt: tokio::runtime::Runtime,
    db: Database,
    settings: Settings,
    org: OrgId,
    team: TeamId,
    territory: TerritoryId,
    ana: UserId,
    mona: UserId,
    dir: tempfile::TempDir,
}

impl World {
    fn new(postgres: bool) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = postgres.then(|| PgCluster::shared().new_database());
        let settings = SettingsArgs {
            data_dir: Some(dir.path().join("data")),
            database_url,
            jwt_secret: Some(Secret::new(SECRET)),
            db_max_connections: Some(8),
            ..SettingsArgs::default()
        }
        .resolve()
        .expect("settings");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (db, org, team, territory, ana, mona) = rt.block_on(async {
            let db = fieldsync_server::open_database(&settings)
                .await
                .expect("open and migrate");
            let org = accounts::create_org(&db, "Acme", "acme")
                .await
                .expect("org");
            let team = accounts::ensure_team(&db, org, "North")
                .await
                .expect("team");
            let territory = accounts::ensure_territory(&db, org, "Lisbon")
                .await
                .expect("territory");
            let mut ids = Vec::new();
            for (name, role) in [("ana", Role::Rep), ("mona", Role::Manager)] {
                ids.push(
                    accounts::create_user(
                        &db,
                        NewUser {
                            org,
                            email: format!("{name}@acme.test"),
                            display_name: name.into(),
                            role,
                            team: Some(team),
                            territory: Some(territory),
                            password: PASSWORD.into(),
                        },
                    )
                    .await
                    .expect("user"),
                );
            }
            (db, org, team, territory, ids[0], ids[1])
        });
        World {
            rt,
            db,
            settings,
            org,
            team,
            territory,
            ana,
            mona,
            dir,
        }
    }

    fn node(&self) -> Node {
        Node::start(self.rt.handle(), self.settings.clone())
    }

    fn client(&self, node: &Node, name: &str) -> Client {
        self.client_and_device(node, name).0
    }

    fn client_and_device(&self, node: &Node, name: &str) -> (Client, DeviceId) {
        let path = self
            .dir
            .path()
            .join(format!("{name}-{}.db", DeviceId::new()));
        let store = Arc::new(DeviceStore::open(&path, StoreOptions::default()).expect("store"));
        let client = SyncClient::new(
            store,
            HttpTransport::new(&node.base, Duration::from_secs(30)),
            SyncOptions::default(),
        );
        let login = client
            .login(&LoginRequest {
                org: "acme".into(),
                email: format!("{name}@acme.test"),
                password: PASSWORD.into(),
                device: DeviceInfo {
                    id: DeviceId::new(),
                    platform: "test".into(),
                    app_version: "1.0.0".into(),
                },
            })
            .expect("login");
        client.sync(&NoProgress).expect("first sync");
        (Arc::new(client), login.device.id)
    }

    fn meta(&self, owner: UserId) -> RecordMeta {
        RecordMeta {
            id: RecordId::new(),
            org: self.org,
            owner,
            team: self.team,
            territory: self.territory,
        }
    }
}

/// Forwards live events to the test thread.
struct Events(Mutex<Sender<LiveEvent>>);

impl LiveListener for Events {
    fn on_live(&self, event: LiveEvent) {
        if let Ok(tx) = self.0.lock() {
            let _ = tx.send(event);
        }
    }
}

fn listen(client: &Client) -> (fieldsync_core::sync::LiveSync, Receiver<LiveEvent>) {
    let (tx, rx) = channel();
    let live = client.start_live(
        Arc::new(Events(Mutex::new(tx))),
        LiveOptions {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            ..LiveOptions::default()
        },
    );
    (live, rx)
}

/// Waits for an event matching `want`, failing after `within`.
fn wait_for(
    rx: &Receiver<LiveEvent>,
    within: Duration,
    want: impl Fn(&LiveEvent) -> bool,
) -> LiveEvent {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(e) if want(&e) => return e,
            Ok(e) => seen.push(e),
            Err(_) => break,
        }
    }
    panic!("no matching live event within {within:?}; saw {seen:?}");
}

fn pulled_something(e: &LiveEvent) -> bool {
    matches!(e, LiveEvent::Synced(r) if r.pulled > 0)
}

/// The manager plans a visit for ana (and its account) through `via`'s client.
fn plan_visit(w: &World, mona: &Client) -> RecordId {
    let account = Account {
        meta: w.meta(w.ana),
        name: "Padaria Central".into(),
        account_type: "outlet".into(),
        account_status: "active".into(),
        code: None,
        price_list_id: None,
        visit_frequency_days: None,
        locations: Default::default(),
    };
    let account_id = mona.store().create(&account, today(8)).expect("account");
    let visit = Visit::planned(w.meta(w.ana), account_id, today(10), today(11));
    let actor = fieldsync_core::model::Actor::without_device(w.mona, Role::Manager);
    let id = mona
        .store()
        .create_stateful(&visit, &actor, today(8))
        .expect("visit");
    mona.sync(&NoProgress).expect("push");
    id
}

fn edit(mona: &Client, visit: RecordId, note: &str) {
    mona.store()
        .update::<Visit>(visit, today(9), |v| v.notes = note.into())
        .expect("edit");
    let report = mona.sync(&NoProgress).expect("push");
    assert_eq!(report.pushed, 1);
}

#[test]
fn a_change_reaches_a_connected_phone_in_about_a_second_on_sqlite() {
    let w = World::new(false);
    let node = w.node();
    let ana = w.client(&node, "ana");
    let mona = w.client(&node, "mona");
    let (live, rx) = listen(&ana);
    wait_for(&rx, Duration::from_secs(10), |e| *e == LiveEvent::Connected);
    wait_for(&rx, Duration::from_secs(10), |e| {
        matches!(e, LiveEvent::Synced(_))
    });

    // Operators see the connection.
    let (_, metrics) = http_get(&format!("{}/metrics", node.base)).expect("metrics");
    assert!(
        metrics.lines().any(|l| l == "fieldsync_live_connections 1"),
        "{metrics}"
    );

    let started = Instant::now();
    let visit = plan_visit(&w, &mona);
    wait_for(&rx, Duration::from_secs(5), pulled_something);
    let latency = started.elapsed();
    let got: Visit = ana.store().read(visit).expect("the visit is on the phone");
    assert_eq!(got.meta.owner, w.ana);
    println!("live: push to other device's sync in {latency:?}");

    edit(&mona, visit, "bring samples");
    wait_for(&rx, Duration::from_secs(5), pulled_something);
    let got: Visit = ana.store().read(visit).expect("read");
    assert_eq!(got.notes, "bring samples");

    // A node that stops ends the stream with a reconnect hint.
    node.stop();
    let e = wait_for(&rx, Duration::from_secs(10), |e| {
        matches!(e, LiveEvent::Disconnected { .. })
    });
    assert!(
        matches!(&e, LiveEvent::Disconnected { reason, .. } if reason.contains("asked to reconnect")),
        "{e:?}"
    );
    live.stop();
    wait_for(&rx, Duration::from_secs(10), |e| {
        matches!(e, LiveEvent::Stopped { .. })
    });
    let _ = w.db.clone();
}

#[test]
fn a_change_through_node_a_reaches_a_phone_on_node_b_even_when_the_listener_drops() {
    let w = World::new(true);
    let a = w.node();
    let b = w.node();
    let ana = w.client(&b, "ana");
    let mona = w.client(&a, "mona");
    let (live, rx) = listen(&ana);
    wait_for(&rx, Duration::from_secs(10), |e| *e == LiveEvent::Connected);
    wait_for(&rx, Duration::from_secs(10), |e| {
        matches!(e, LiveEvent::Synced(_))
    });

    let started = Instant::now();
    let visit = plan_visit(&w, &mona);
    wait_for(&rx, Duration::from_secs(5), pulled_something);
    println!("live across nodes: {:?}", started.elapsed());
    assert!(ana.store().read::<Visit>(visit).is_ok());

    // Kill every node's listener connection, then change something at once.
    let killed: i64 = w.rt.block_on(async {
        let Database::Postgres(pool) = &w.db else {
            unreachable!("a PostgreSQL world")
        };
        sqlx::query_scalar(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = $1 AND datname = current_database()",
        )
        .bind(fieldsync_server::live::LISTENER_APP_NAME)
        .fetch_one(pool)
        .await
        .expect("terminate listeners")
    });
    assert_eq!(killed, 2, "one listener per node");
    edit(&mona, visit, "changed while the listeners were down");
    wait_for(&rx, Duration::from_secs(10), pulled_something);
    let got: Visit = ana.store().read(visit).expect("read");
    assert_eq!(got.notes, "changed while the listeners were down");

    // And the listeners are back: the next change flows as usual.
    edit(&mona, visit, "after the reconnect");
    wait_for(&rx, Duration::from_secs(10), pulled_something);
    let got: Visit = ana.store().read(visit).expect("read");
    assert_eq!(got.notes, "after the reconnect");

    live.stop();
    a.stop();
    b.stop();
}

/// On PostgreSQL through two nodes (revoked on A, connected to B); on SQLite
/// (one node) through the one.
fn revocation_cuts_the_live_channel(postgres: bool) {
    let w = World::new(postgres);
    let a = w.node();
    let b = if postgres { Some(w.node()) } else { None };
    let b_ref = b.as_ref().unwrap_or(&a);
    let (ana, device) = w.client_and_device(b_ref, "ana");
    let mona = w.client(&a, "mona");
    let visit = plan_visit(&w, &mona);
    ana.sync(&NoProgress).expect("sync");
    assert!(ana.store().read::<Visit>(visit).is_ok());
    let (live, rx) = listen(&ana);
    wait_for(&rx, Duration::from_secs(10), |e| *e == LiveEvent::Connected);
    // Its catch-up sync is done: the phone now only listens, so only the
    // revocation note can end the stream before its token's lifetime.
    wait_for(&rx, Duration::from_secs(10), |e| {
        matches!(e, LiveEvent::Synced(_))
    });

    // The manager revokes ana's phone (through the other node on PostgreSQL).
    let token = mona.session().expect("session").access_token;
    let resp = ureq::post(&format!("{}/v1/devices/{device}/revoke", a.base))
        .header("authorization", &format!("Bearer {token}"))
        .send_empty()
        .expect("revoke");
    assert_eq!(resp.status().as_u16(), 200);
    let started = Instant::now();
    let stopped = wait_for(&rx, Duration::from_secs(5), |e| {
        matches!(e, LiveEvent::Stopped { .. })
    });
    assert!(
        matches!(&stopped, LiveEvent::Stopped { reason } if reason.contains("revoked")),
        "{stopped:?}"
    );
    println!("revoked phone cut off in {:?}", started.elapsed());
    assert!(
        ana.store().read::<Visit>(visit).is_err(),
        "the revoked phone's data is wiped"
    );
    drop(live);
    a.stop();
    if let Some(b) = b {
        b.stop();
    }
}

#[test]
fn a_revoked_phone_is_cut_off_its_live_channel_at_once_and_wiped_on_sqlite() {
    revocation_cuts_the_live_channel(false);
}

#[test]
fn a_revoked_phone_is_cut_off_its_live_channel_at_once_and_wiped_on_postgres() {
    revocation_cuts_the_live_channel(true);
}
