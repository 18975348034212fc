//! `fieldsync org init` and `fieldsync user add`, run as real processes, and the
//! accounts they make used through a real `fieldsync serve`.

use std::path::Path;
use std::process::Output;

use fieldsync_test_support::{PASSWORD, PgCluster, ServerProcess, fieldsync, runtime};
use serde_json::{Value, json};

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `fieldsync` with `args` and waits for it to exit on its own, at most
/// `limit` (killed and failed beyond: a server that should have refused to
/// start is serving).
fn exits_within(args: &[&str], limit: std::time::Duration) -> Output {
    let mut child = std::process::Command::new(fieldsync_test_support::server_binary())
        .args(args)
        .env("FIELDSYNC_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run fieldsync");
    let started = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("fieldsync {args:?} did not exit within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// `org init` + `user add` on the database named by `db_args`.
fn init_acme_with_a_rep(db_args: &[&str]) {
    let mut args = vec![
        "org",
        "init",
        "--name",
        "Acme",
        "--slug",
        "acme",
        "--admin-email",
        "Admin@Acme.test",
        "--admin-password-stdin",
    ];
    args.extend_from_slice(db_args);
    let out = fieldsync(&args, &[], Some(&format!("{PASSWORD}\n")));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("created organisation \"Acme\" (slug acme"),
        "{}",
        text(&out)
    );

    let mut args = vec![
        "user",
        "add",
        "--org",
        "acme",
        "--email",
        "rep@acme.test",
        "--role",
        "rep",
        "--team",
        "North",
        "--territory",
        "Lisbon",
    ];
    args.extend_from_slice(db_args);
    let out = fieldsync(&args, &[("FIELDSYNC_USER_PASSWORD", PASSWORD)], None);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("added rep rep@acme.test to acme"),
        "{}",
        text(&out)
    );
}

async fn login(base: &str, email: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({
            "org": "acme",
            "email": email,
            "password": PASSWORD,
            "device": { "id": fieldsync_core::DeviceId::new(), "platform": "ios", "app_version": "1.0" },
        }))
        .send()
        .await
        .expect("login request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON"))
}

async fn me(base: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{base}/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .expect("me request")
        .status()
        .as_u16()
}

#[test]
fn org_init_and_user_add_make_accounts_whose_tokens_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("utf-8 path");
    init_acme_with_a_rep(&["--data-dir", data_arg]);

    let rt = runtime();
    let server = ServerProcess::spawn(&data, &[]);
    let (status, rep) = rt.block_on(login(&server.base, "rep@acme.test"));
    assert_eq!(status, 200, "{rep}");
    assert_eq!(rep["user"]["role"], "rep");
    assert!(rep["user"]["team"].is_string(), "team set by name: {rep}");
    assert!(rep["user"]["territory"].is_string(), "{rep}");
    let (status, admin) = rt.block_on(login(&server.base, "admin@acme.test"));
    assert_eq!(status, 200, "{admin}");
    assert_eq!(admin["user"]["role"], "admin");
    assert!(server.interrupt().success());

    // The signing key was generated and kept in the database: a restart logs nobody out.
    let server = ServerProcess::spawn(&data, &[]);
    let token = rep["access_token"].as_str().expect("token");
    assert_eq!(rt.block_on(me(&server.base, token)), 200);
    assert!(server.interrupt().success());
}

fn assert_refused(out: &Output, expected: &str) {
    assert!(!out.status.success(), "should fail: {}", text(out));
    let all = text(out);
    assert!(all.contains(expected), "expected {expected:?} in {all}");
    assert!(!all.contains("panicked"), "{all}");
}

fn refusals_are_clear(db_args: &[&str]) {
    init_acme_with_a_rep(db_args);
    let with_db = |args: &[&'static str]| -> Vec<String> {
        args.iter()
            .chain(db_args)
            .map(|s| (*s).to_owned())
            .collect()
    };
    let pw = [("FIELDSYNC_USER_PASSWORD", PASSWORD)];
    let out = fieldsync(
        &with_db(&[
            "user",
            "add",
            "--org",
            "acme",
            "--email",
            "REP@acme.test",
            "--role",
            "rep",
        ]),
        &pw,
        None,
    );
    assert_refused(&out, "already exists in this organisation");
    let out = fieldsync(
        &with_db(&[
            "user",
            "add",
            "--org",
            "globex",
            "--email",
            "x@globex.test",
            "--role",
            "rep",
        ]),
        &pw,
        None,
    );
    assert_refused(&out, "no organisation with slug \"globex\"");
    let out = fieldsync(
        &with_db(&[
            "user",
            "add",
            "--org",
            "acme",
            "--email",
            "new@acme.test",
            "--role",
            "rep",
        ]),
        &[("FIELDSYNC_USER_PASSWORD", "abc123")],
        None,
    );
    assert_refused(&out, "weak password");
    let out = fieldsync(
        &with_db(&[
            "user",
            "add",
            "--org",
            "acme",
            "--email",
            "new@acme.test",
            "--role",
            "boss",
        ]),
        &pw,
        None,
    );
    assert_refused(&out, "unknown role \"boss\"");
    let out = fieldsync(
        &with_db(&[
            "org",
            "init",
            "--name",
            "Acme 2",
            "--slug",
            "acme",
            "--admin-email",
            "a@acme.test",
        ]),
        &[("FIELDSYNC_ADMIN_PASSWORD", PASSWORD)],
        None,
    );
    assert_refused(&out, "slug \"acme\" already exists");
}

#[test]
fn duplicate_emails_unknown_orgs_weak_passwords_and_bad_roles_are_refused_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    refusals_are_clear(&["--data-dir", data.to_str().expect("utf-8 path")]);
    assert!(Path::new(&data).join("fieldsync.db").is_file());
}

#[test]
fn duplicate_emails_unknown_orgs_weak_passwords_and_bad_roles_are_refused_on_postgres() {
    let url = PgCluster::shared().new_database();
    refusals_are_clear(&["--database-url", &url]);
}

/// `fieldsync demo` on the database named by `db_args`, then a real client
/// logs in to the served demo as a rep and as a technician and is primed with
/// what each should see.
fn demo_seeds_an_organisation_whose_users_can_sync(
    db_args: &[&str],
    data_dir: &Path,
    serve_args: &[&str],
) {
    let mut args = vec!["demo"];
    args.extend_from_slice(db_args);
    let out = fieldsync(&args, &[], None);
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    for login in [
        "manager@demo.example",
        "rep1@demo.example",
        "rep3@demo.example",
        "tech2@demo.example",
        "fieldsync-demo",
    ] {
        assert!(printed.contains(login), "{login} missing from:\n{printed}");
    }
    // A second run refuses to seed the same organisation again.
    let again = fieldsync(&args, &[], None);
    assert!(!again.status.success());
    assert!(text(&again).contains("already exists"), "{}", text(&again));

    // A plain `serve` refuses the database: the demo's password is public.
    let data = data_dir.to_str().expect("utf-8 path");
    let mut plain = vec!["serve", "--listen", "127.0.0.1:0", "--data-dir", data];
    plain.extend_from_slice(serve_args);
    let refused = exits_within(&plain, std::time::Duration::from_secs(60));
    assert!(!refused.status.success(), "{}", text(&refused));
    let said = text(&refused);
    assert!(
        said.contains("demo organisation \"demo\"")
            && said.contains("fieldsync serve --demo")
            && said.contains("fieldsync-demo"),
        "{said}"
    );
    let mut with_demo = serve_args.to_vec();
    with_demo.push("--demo");
    let server = ServerProcess::spawn(data_dir, &with_demo);
    use fieldsync_core::model::RecordKind;
    use fieldsync_core::store::DeviceStore;
    use fieldsync_core::sync::{
        DeviceInfo, HttpTransport, LoginRequest, NoProgress, SyncClient, SyncOptions,
    };
    let prime = |email: &str| {
        let client = SyncClient::new(
            DeviceStore::open_in_memory().expect("store"),
            HttpTransport::new(&server.base, std::time::Duration::from_secs(30)),
            SyncOptions::default(),
        );
        client
            .login(&LoginRequest {
                org: "demo".into(),
                email: email.into(),
                password: "fieldsync-demo".into(),
                device: DeviceInfo {
                    id: fieldsync_core::DeviceId::new(),
                    platform: "test".into(),
                    app_version: "0.1.0".into(),
                },
            })
            .expect("login");
        client.sync(&NoProgress).expect("sync");
        client
    };
    let rep = prime("rep1@demo.example");
    let count = |c: &SyncClient<DeviceStore, HttpTransport>, kind| {
        c.store().all_of(kind).expect("list").len()
    };
    // The rep's own visits, and for reference the last finished visits at the
    // accounts the rep calls on in the window (read-only).
    let (reference, own): (Vec<_>, Vec<_>) = rep
        .store()
        .all_of(RecordKind::Visit)
        .expect("list")
        .into_iter()
        .partition(|p| rep.store().is_reference(p.id));
    assert_eq!(
        own.len(),
        15,
        "three visits a day from yesterday to three days ahead: the demo's \
         older visits are outside a rep's download window"
    );
    assert!(
        !reference.is_empty(),
        "what happened at the rep's customers lately"
    );
    assert!(
        reference
            .iter()
            .all(|p| p.status.as_deref() == Some("completed")),
        "only finished visits are sent for reference: {reference:?}"
    );
    // Every account of the demo's territory (three per rep), not only the
    // rep's own: a territory's customers are read by everyone in it.
    assert_eq!(count(&rep, RecordKind::Account), 9);
    assert!(count(&rep, RecordKind::Order) > 0);
    // Priced from the demo's price list: most orders confirmed at once, the
    // ones with a discount over the list's 10 % waiting for the manager.
    let statuses: Vec<String> = rep
        .store()
        .all_of(RecordKind::Order)
        .expect("orders")
        .into_iter()
        .filter_map(|p| p.status)
        .collect();
    assert!(
        statuses.iter().any(|s| s == "confirmed")
            && statuses.iter().any(|s| s == "pending_approval"),
        "{statuses:?}"
    );
    assert_eq!(
        count(&rep, RecordKind::Product),
        5,
        "the territory's catalogue"
    );
    let tech = prime("tech1@demo.example");
    assert_eq!(count(&tech, RecordKind::Assignment), 2);
    assert_eq!(
        count(&tech, RecordKind::ServiceJob),
        2,
        "the jobs of the assignments"
    );
    // No visits of their own; for reference, the last finished visits at the
    // customers of their jobs in the window.
    let tech_visits = tech.store().all_of(RecordKind::Visit).expect("list");
    assert!(
        tech_visits
            .iter()
            .all(|p| tech.store().is_reference(p.id) && p.status.as_deref() == Some("completed")),
        "{tech_visits:?}"
    );
    assert!(
        count(&tech, RecordKind::Account) >= 1,
        "the accounts of the jobs"
    );
    let manager = prime("manager@demo.example");
    assert_eq!(count(&manager, RecordKind::Visit), 63);
    assert_eq!(count(&manager, RecordKind::ServiceJob), 4);
    // The demo's figures are consistent: orders taken on visits name them,
    // so the strike rate counts them.
    let day = |offset: i64| {
        let now = fieldsync_core::model::DeviceTime::now_utc().at_ms;
        fieldsync_server::domain::figures::dates::format_day(now.div_euclid(86_400_000) + offset)
    };
    let token = manager.session().expect("session").access_token;
    let figures: serde_json::Value = ureq::get(&format!(
        "{}/v1/dashboard?from={}&to={}",
        server.base,
        day(-14),
        day(0)
    ))
    .header("authorization", &format!("Bearer {token}"))
    .call()
    .expect("dashboard")
    .into_body()
    .read_json()
    .expect("json");
    let visits = &figures["visits"];
    let (completed, with_order) = (
        visits["completed"].as_u64().expect("completed"),
        visits["with_order"].as_u64().expect("with_order"),
    );
    assert!(
        completed > 0 && with_order > 0 && with_order < completed,
        "two of three completed demo visits take an order: {visits}"
    );
    assert!(server.interrupt().success());
}

#[test]
fn demo_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("utf-8 path").to_owned();
    demo_seeds_an_organisation_whose_users_can_sync(&["--data-dir", &data_arg], &data, &[]);
}

#[test]
fn demo_on_postgres() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = PgCluster::shared().new_database();
    demo_seeds_an_organisation_whose_users_can_sync(
        &["--database-url", &url],
        dir.path(),
        &["--database-url", &url],
    );
}

/// The README's first command (`serve --demo`) seeds the demo once and serves it;
/// starting it again keeps the data.
#[test]
fn serve_with_demo_seeds_once_and_serves_the_demo_logins() {
    use fieldsync_core::model::RecordKind;
    use fieldsync_core::store::DeviceStore;
    use fieldsync_core::sync::{
        DeviceInfo, HttpTransport, LoginRequest, NoProgress, SyncClient, SyncOptions,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    for _ in 0..2 {
        let server = ServerProcess::spawn(&data, &["--demo"]);
        // A plain-HTTP trial: the pages' cookies work without TLS.
        let form = ureq::get(format!("{}/web/login", server.base))
            .call()
            .expect("login form");
        let cookie = form
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            cookie.starts_with("fieldsync_login_csrf=") && !cookie.contains("Secure"),
            "{cookie}"
        );
        let client = SyncClient::new(
            DeviceStore::open_in_memory().expect("store"),
            HttpTransport::new(&server.base, std::time::Duration::from_secs(30)),
            SyncOptions::default(),
        );
        client
            .login(&LoginRequest {
                org: "demo".into(),
                email: "rep2@demo.example".into(),
                password: "fieldsync-demo".into(),
                device: DeviceInfo {
                    id: fieldsync_core::DeviceId::new(),
                    platform: "test".into(),
                    app_version: "0.1.0".into(),
                },
            })
            .expect("login");
        client.sync(&NoProgress).expect("sync");
        assert_eq!(
            client
                .store()
                .all_of(RecordKind::Visit)
                .expect("list")
                .into_iter()
                .filter(|p| !client.store().is_reference(p.id))
                .count(),
            15,
            "the demo's visits inside the rep's window"
        );
        assert!(server.interrupt().success());
    }
}

/// Signing keys never come from a flag: the removed `--jwt-secret` is refused
/// with a message saying where the key goes, and `FIELDSYNC_JWT_SECRET` is read.
#[test]
fn the_signing_key_comes_from_the_environment_and_never_from_a_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path");
    let key = "k".repeat(40);
    let flag = fieldsync(
        &["migrate", "--data-dir", data, "--jwt-secret", &key],
        &[],
        None,
    );
    assert!(!flag.status.success());
    let said = text(&flag);
    assert!(
        said.contains("--jwt-secret is no longer accepted")
            && said.contains("FIELDSYNC_JWT_SECRET or --jwt-secret-file"),
        "{said}"
    );
    // `keys` refuses to manage stored keys when a key is configured: proof
    // that the variable was read.
    let env = fieldsync(
        &["keys", "list", "--data-dir", data],
        &[("FIELDSYNC_JWT_SECRET", &key)],
        None,
    );
    assert!(!env.status.success());
    assert!(
        text(&env).contains("configured jwt_secret"),
        "{}",
        text(&env)
    );
    let key_file = dir.path().join("jwt.key");
    std::fs::write(&key_file, format!("{key}\n")).expect("key file");
    let file = fieldsync(
        &[
            "keys",
            "list",
            "--data-dir",
            data,
            "--jwt-secret-file",
            key_file.to_str().expect("utf-8 path"),
        ],
        &[],
        None,
    );
    assert!(
        text(&file).contains("configured jwt_secret"),
        "{}",
        text(&file)
    );
    let unset = fieldsync(&["keys", "list", "--data-dir", data], &[], None);
    assert!(unset.status.success(), "{}", text(&unset));
}
