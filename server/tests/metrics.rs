//! What an operator sees: `GET /metrics`, the JSON request log, and a node
//! stopped in the middle of a push. The server runs as the real `fieldsync
//! serve` process (so its log can be read and it can be sent SIGINT); the
//! devices are real `fieldsync-core` clients.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fieldsync_core::model::{Account, DeviceTime, Location, RecordMeta, Role};
use fieldsync_core::protocol::{self, PushOutcome, PushRequest, PushResponse};
use fieldsync_core::store::{DeviceStore, StoreOptions};
use fieldsync_core::sync::{
    DeviceInfo, HttpTransport, LoginRequest, NoProgress, SyncClient, SyncOptions,
};
use fieldsync_core::{DeviceId, OrgId, RecordId, TeamId, TerritoryId, UserId, automerge};
use fieldsync_server::service::accounts::{self, NewUser};
use fieldsync_server::{Database, SettingsArgs, on_pool};
use fieldsync_test_support::{ORG, PASSWORD, PgCluster, free_port, http_get, runtime};

/// A `fieldsync serve` process with JSON logs going to a file, and its organisation.
struct Node {
    child: Child,
    base: String,
    log: PathBuf,
    database_url: String,
    org: OrgId,
    team: TeamId,
    territory: TerritoryId,
    users: BTreeMap<&'static str, UserId>,
    dir: tempfile::TempDir,
}

type Client = SyncClient<Arc<DeviceStore>, HttpTransport>;

impl Node {
    fn start(postgres: bool) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let database_url = postgres.then(|| PgCluster::shared().new_database());
        let settings = SettingsArgs {
            data_dir: Some(data.clone()),
            database_url: database_url.clone(),
            ..SettingsArgs::default()
        }
        .resolve()
        .expect("settings");
        let rt = runtime();
        let (org, team, territory, users) = rt.block_on(async {
            let db = fieldsync_server::open_database(&settings)
                .await
                .expect("open");
            let org = accounts::create_org(&db, "Acme", ORG).await.expect("org");
            let team = accounts::ensure_team(&db, org, "North")
                .await
                .expect("team");
            let territory = accounts::ensure_territory(&db, org, "Lisbon")
                .await
                .expect("territory");
            let mut users = BTreeMap::new();
            for name in ["ana", "ben"] {
                let id = accounts::create_user(
                    &db,
                    NewUser {
                        org,
                        email: format!("{name}@acme.test"),
                        display_name: format!("{name} Secretname"),
                        role: Role::Rep,
                        team: Some(team),
                        territory: Some(territory),
                        password: PASSWORD.into(),
                    },
                )
                .await
                .expect("user");
                users.insert(name, id);
            }
            db.close().await;
            (org, team, territory, users)
        });
        let port = free_port();
        let log = dir.path().join("server.log");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fieldsync"));
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&data);
        if let Some(url) = &database_url {
            cmd.args(["--database-url", url]);
        }
        let child = cmd
            .env("FIELDSYNC_LOG", "info")
            .env("FIELDSYNC_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn fieldsync");
        let node = Node {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
            database_url: settings.database_url(),
            org,
            team,
            territory,
            users,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(&format!("{}/healthz", node.base)).is_none_or(|(c, _)| c != 200) {
            assert!(
                Instant::now() < deadline,
                "fieldsync did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        node
    }

    /// A logged-in device of `name`.
    fn device(&self, name: &str) -> Client {
        let path = self
            .dir
            .path()
            .join(format!("{name}-{}.db", DeviceId::new()));
        let store = Arc::new(DeviceStore::open(&path, StoreOptions::default()).expect("store"));
        let client = SyncClient::new(
            store,
            HttpTransport::new(&self.base, Duration::from_secs(30)),
            SyncOptions::default(),
        );
        client
            .login(&LoginRequest {
                org: ORG.into(),
                email: format!("{name}@acme.test"),
                password: PASSWORD.into(),
                device: DeviceInfo {
                    id: DeviceId::new(),
                    platform: "test".into(),
                    app_version: "0.1.0".into(),
                },
            })
            .expect("login");
        client
    }

    /// Creates an account owned by `name` on `device`.
    fn account(&self, device: &Client, name: &str, title: &str) -> RecordId {
        let a = Account {
            meta: RecordMeta {
                id: RecordId::new(),
                org: self.org,
                owner: self.users[name],
                team: self.team,
                territory: self.territory,
            },
            name: title.into(),
            account_type: "outlet".into(),
            account_status: "active".into(),
            code: None,
            price_list_id: None,
            visit_frequency_days: Some(14),
            locations: [(
                RecordId::new(),
                Location {
                    name: "Main store".into(),
                    address: "Rua Augusta 1, Lisboa".into(),
                    coords: None,
                    geofence_radius_m: 150.0,
                    opening_hours: None,
                },
            )]
            .into_iter()
            .collect(),
        };
        device
            .store()
            .create(&a, DeviceTime::now_utc())
            .expect("create account")
    }

    fn metrics(&self) -> Exposition {
        let resp = ureq::get(format!("{}/metrics", self.base))
            .call()
            .expect("GET /metrics");
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        Exposition::parse(&resp.into_body().read_to_string().expect("body"))
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).expect("read the log")
    }

    /// The log, one JSON object a line (every line must be one).
    fn log_lines(&self) -> Vec<serde_json::Value> {
        self.log_text()
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))
            })
            .collect()
    }

    /// Records stored by the server, read from its database.
    fn stored_records(&self) -> i64 {
        runtime().block_on(async {
            let db = Database::connect(&self.database_url, 1)
                .await
                .expect("connect");
            let n = on_pool!(&db, |pool, _uuid| {
                sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM records")
                    .fetch_one(pool)
                    .await
                    .expect("count")
            });
            db.close().await;
            n
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed OpenMetrics/Prometheus text page: `(name, labels, value)` per sample.
struct Exposition {
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        assert!(text.ends_with("# EOF\n"), "no EOF marker:\n{text}");
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("no value: {line}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value: {line}"));
            let (name, labels) = match series.split_once('{') {
                None => (series.to_owned(), BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest
                        .strip_suffix('}')
                        .unwrap_or_else(|| panic!("unclosed labels: {line}"));
                    (name.to_owned(), parse_labels(body, line))
                }
            };
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "bad metric name: {line}"
            );
            samples.push((name, labels, value));
        }
        Exposition { samples }
    }

    /// The value of the sample `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
    }

    /// Every value of label `key` across all samples.
    fn label_values(&self, key: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .samples
            .iter()
            .filter_map(|(_, l, _)| l.get(key).cloned())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// `a="x",b="y"` (values may hold `{`, `}` and `,`; no escapes are needed here).
fn parse_labels(body: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad labels: {line}"));
        let (value, after) = after
            .split_once('"')
            .unwrap_or_else(|| panic!("unclosed label value: {line}"));
        labels.insert(key.to_owned(), value.to_owned());
        rest = after.strip_prefix(',').unwrap_or(after);
    }
    labels
}

#[test]
fn metrics_count_pushes_merges_and_rejections_on_sqlite() {
    metrics_count_pushes_merges_and_rejections(Node::start(false));
}

#[test]
fn metrics_count_pushes_merges_and_rejections_on_postgres() {
    metrics_count_pushes_merges_and_rejections(Node::start(true));
}

fn metrics_count_pushes_merges_and_rejections(node: Node) {
    let before = node.metrics();
    assert_eq!(before.get("fieldsync_pushes_total", &[]), 0.0);
    assert_eq!(before.get("fieldsync_live_connections", &[]), 0.0);

    // An honest device pushes three accounts and pulls.
    let ana = node.device("ana");
    let ids: Vec<RecordId> = (0..3)
        .map(|i| node.account(&ana, "ana", &format!("Drogaria {i}")))
        .collect();
    let pushed_changes = ana.store().pending_changes().expect("outbox");
    assert!(pushed_changes >= 3);
    let report = ana.sync(&NoProgress).expect("sync");
    assert_eq!((report.pushed, report.rejected), (3, 0));

    // A device writing under an actor id the server did not give it is refused.
    let ben = node.device("ben");
    ben.store()
        .set_actor_id(automerge::ActorId::random())
        .expect("actor");
    node.account(&ben, "ben", "Loja Azul");
    let report = ben.sync(&NoProgress).expect("sync");
    assert_eq!((report.pushed, report.rejected), (0, 1));

    // A route with an id in its path, and a path no route knows.
    let token = ana.session().expect("session").access_token;
    let resp = ureq::get(format!("{}/v1/records/{}/audit", node.base, ids[0]))
        .header("authorization", format!("Bearer {token}"))
        .header("x-request-id", "audit-check-1")
        .call()
        .expect("audit");
    assert_eq!(
        resp.headers().get("x-request-id").map(|v| v.as_bytes()),
        Some(&b"audit-check-1"[..]),
        "the request id is echoed"
    );
    let stray = RecordId::new();
    let resp = ureq::get(format!("{}/nowhere/{stray}", node.base))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .expect("404");
    assert_eq!(resp.status().as_u16(), 404);
    let generated = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("a request id is made when the client sends none");
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");

    let m = node.metrics();
    assert_eq!(m.get("fieldsync_pushes_total", &[]), 2.0);
    assert!(m.get("fieldsync_pulls_total", &[]) >= 1.0);
    assert_eq!(
        m.get("fieldsync_changes_merged_total", &[]),
        pushed_changes as f64,
        "every change pushed by the honest device, none of the refused one"
    );
    assert!(m.get("fieldsync_push_merge_seconds_count", &[]) >= 2.0);
    assert!(m.get("fieldsync_push_commit_seconds_count", &[]) >= 2.0);
    assert!(m.get("fieldsync_push_merge_seconds_sum", &[]) > 0.0);
    assert_eq!(
        m.get("fieldsync_rejections_total", &[("code", "foreign_actor")]),
        1.0
    );
    assert_eq!(
        m.get(
            "fieldsync_http_requests_total",
            &[("route", "/v1/sync/push"), ("status", "200")]
        ),
        2.0
    );
    assert_eq!(
        m.get(
            "fieldsync_http_requests_total",
            &[("route", "/v1/records/{id}/audit"), ("status", "200")]
        ),
        1.0
    );
    assert_eq!(
        m.get(
            "fieldsync_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );
    assert!(
        m.get(
            "fieldsync_http_request_seconds_count",
            &[("route", "/v1/auth/login")]
        ) >= 2.0
    );
    // Only this scrape is being served.
    assert_eq!(m.get("fieldsync_http_in_flight_requests", &[]), 1.0);
    assert_eq!(m.get("fieldsync_live_connections", &[]), 0.0);

    // Route labels are templates: no id ever becomes a label.
    for route in m.label_values("route") {
        assert!(
            route == "unmatched" || route.starts_with('/'),
            "odd route label {route:?}"
        );
        assert!(
            !route.split('/').any(|s| uuid::Uuid::parse_str(s).is_ok()),
            "an id in route label {route:?}"
        );
    }
    let page = ureq::get(format!("{}/metrics", node.base))
        .call()
        .expect("GET /metrics")
        .into_body()
        .read_to_string()
        .expect("body");
    for id in ids.iter().chain([&stray]) {
        assert!(!page.contains(&id.to_string()), "{id} in /metrics");
    }

    // The log: JSON lines; requests carry their id and the device and user ids;
    // no email, password, token, name or record content anywhere.
    let lines = node.log_lines();
    let audit = lines
        .iter()
        .find(|l| {
            l["span"]["request_id"] == "audit-check-1" && l["fields"]["message"] == "answered"
        })
        .unwrap_or_else(|| {
            panic!(
                "no answered line for the audit request:\n{}",
                node.log_text()
            )
        });
    assert_eq!(audit["span"]["route"], "/v1/records/{id}/audit");
    assert_eq!(audit["fields"]["status"], 200);
    assert_eq!(audit["span"]["user"], node.users["ana"].to_string());
    assert!(audit["span"]["device"].is_string());
    let pushes: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["span"]["route"] == "/v1/sync/push" && l["fields"]["message"] == "answered")
        .collect();
    assert_eq!(pushes.len(), 2, "one answered line per push");
    for p in pushes {
        assert!(
            p["span"]["request_id"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        );
        assert!(p["span"]["device"].is_string());
    }
    let text = node.log_text();
    let refresh = ana.session().expect("session").refresh_token;
    for secret in [
        "ana@acme.test",
        "ben@acme.test",
        "Secretname",
        PASSWORD,
        token.as_str(),
        refresh.as_str(),
        "Drogaria",
        "Loja Azul",
        "Rua Augusta",
    ] {
        assert!(!text.contains(secret), "{secret:?} is in the log:\n{text}");
    }
}

#[test]
fn a_node_being_stopped_finishes_the_push_it_is_receiving() {
    let mut node = Node::start(false);
    let ana = node.device("ana");
    const RECORDS: usize = 300;
    for i in 0..RECORDS {
        node.account(&ana, "ana", &format!("Outlet {i}"));
    }
    let req = PushRequest {
        batch: uuid::Uuid::now_v7(),
        records: ana.store().outbox_batch(RECORDS).expect("outbox"),
        health: None,
        epochs: Vec::new(),
    };
    assert_eq!(req.records.len(), RECORDS);
    let body = protocol::encode(&req);
    let token = ana.session().expect("session").access_token;

    // Headers and half the body, so the push is in flight when the node is told to stop.
    let host = node.base.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&host).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "POST /v1/sync/push HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: {}\r\nContent-Length: {}\r\nx-request-id: big-push\r\n\r\n",
        protocol::CONTENT_TYPE,
        body.len()
    )
    .expect("write headers");
    let (first, second) = body.split_at(body.len() / 2);
    stream.write_all(first).expect("write half the body");
    stream.flush().expect("flush");
    let deadline = Instant::now() + Duration::from_secs(10);
    // Two in flight: the push, and the scrape asking.
    while node.metrics().get("fieldsync_http_in_flight_requests", &[]) < 2.0 {
        assert!(Instant::now() < deadline, "the push never got in flight");
        std::thread::sleep(Duration::from_millis(20));
    }

    let killed = Command::new("kill")
        .args(["-INT", &node.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !node.log_text().contains("shutting down") {
        assert!(
            Instant::now() < deadline,
            "no shutdown line:\n{}",
            node.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        node.log_text()
            .contains("shutting down: finishing 1 in-flight requests"),
        "{}",
        node.log_text()
    );
    // A stopping node takes no new connections (the listener closes just
    // after that line)...
    let deadline = Instant::now() + Duration::from_secs(5);
    while http_get(&format!("{}/healthz", node.base)).is_some() {
        assert!(
            Instant::now() < deadline,
            "a stopping node still answers new requests"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // ...but the push it was receiving is merged, committed and answered.
    stream.write_all(second).expect("write the rest");
    stream.flush().expect("flush");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the answer");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let answer: PushResponse = protocol::decode(&raw[split + 4..]).expect("a push answer");
    assert_eq!(answer.results.len(), RECORDS);
    assert!(
        answer
            .results
            .iter()
            .all(|r| matches!(r.outcome, PushOutcome::Accepted { .. }))
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = node.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the node did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(node.log_text().contains("fieldsync stopped"));
    assert_eq!(node.stored_records(), RECORDS as i64);
}
