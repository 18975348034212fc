//! Administration of people and devices, end to end on both databases: who
//! may do what through the JSON API (a rep nothing, a manager their team's
//! people and devices, an administrator everything, never the last
//! administrator away), disabling ends a user's sessions, a territory change
//! reaches the rep's real device at its next sync, a revoked device is wiped
//! at its next request, the command line through the same service, and one
//! Chromium test over the People and Devices pages.

use fantoccini::Locator;
use fieldsync_core::model::{Account, Product, RecordKind};
use fieldsync_core::sync::{NoProgress, SyncError};
use fieldsync_core::{DeviceId, RecordId, TerritoryId};
use fieldsync_test_support::{
    Backend, Browser, Device, ORG, PASSWORD, SESSION_COOKIE, World, cookie_pair, fieldsync, http,
    on_both_databases, settled, sign_in, today,
};
use serde_json::{Value, json};

on_both_databases!(
    only_administrators_administer_and_a_manager_sees_their_team,
    disabling_ends_sessions_and_an_invitation_signs_in_once,
    a_territory_change_reaches_the_reps_device_at_its_next_sync,
    a_promotion_brings_the_teams_records_and_a_demotion_takes_them_away,
    a_manager_revokes_a_team_members_device_and_it_is_wiped,
    the_command_line_uses_the_same_rules,
);

/// A JSON request with any method.
fn call(w: &World, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{}{path}", w.base);
    let auth = format!("Bearer {token}");
    let resp = match (method, body) {
        ("GET", _) => agent.get(&url).header("authorization", &auth).call(),
        ("PATCH", Some(b)) => agent
            .patch(&url)
            .header("authorization", &auth)
            .send_json(&b),
        (_, Some(b)) => agent
            .post(&url)
            .header("authorization", &auth)
            .send_json(&b),
        (_, None) => agent.post(&url).header("authorization", &auth).send_empty(),
    }
    .expect("request");
    let status = resp.status().as_u16();
    let text = resp.into_body().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn emails(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|p| p["email"].as_str().expect("email").to_owned())
        .collect()
}

fn only_administrators_administer_and_a_manager_sees_their_team(w: World) {
    let (adam, mona, ben) = (w.device("adam"), w.device("mona"), w.device("ben"));
    let (sara, ana) = (w.person("sara"), w.person("ana"));

    // A rep lists nobody and changes nothing.
    let (status, _) = call(&w, &ben.access_token(), "GET", "/v1/people", None);
    assert_eq!(status, 403);
    let (status, _) = call(
        &w,
        &ben.access_token(),
        "POST",
        &format!("/v1/people/{}/disable", ana.id),
        None,
    );
    assert_eq!(status, 403);

    // A manager lists their team only, and changes nobody's role or team.
    let (status, list) = call(&w, &mona.access_token(), "GET", "/v1/people", None);
    assert_eq!(status, 200, "{list}");
    let listed = emails(&list);
    assert!(listed.contains(&ana.email), "{listed:?}");
    assert!(
        !listed.contains(&sara.email),
        "South is not mona's: {listed:?}"
    );
    let (status, body) = call(
        &w,
        &mona.access_token(),
        "PATCH",
        &format!("/v1/people/{}", ana.id),
        Some(json!({"role": "manager"})),
    );
    assert_eq!(status, 403, "{body}");
    let (status, _) = call(
        &w,
        &mona.access_token(),
        "POST",
        "/v1/teams",
        Some(json!({"name": "East"})),
    );
    assert_eq!(status, 403);
    let (status, teams) = call(&w, &mona.access_token(), "GET", "/v1/teams", None);
    assert_eq!(status, 200);
    assert_eq!(
        teams.as_array().map(Vec::len),
        Some(1),
        "her own team: {teams}"
    );

    // An administrator lists everyone, with last activity.
    let (status, list) = call(&w, &adam.access_token(), "GET", "/v1/people", None);
    assert_eq!(status, 200);
    assert!(emails(&list).contains(&sara.email));
    let me = list
        .as_array()
        .expect("list")
        .iter()
        .find(|p| p["email"] == "adam@acme.test")
        .expect("adam");
    assert!(me["last_active_at"].is_i64(), "signed in: {me}");

    // Clear refusals: a taken email, an unknown team, oneself, a taken name.
    let (status, body) = call(
        &w,
        &adam.access_token(),
        "POST",
        "/v1/people",
        Some(json!({"email": "ANA@acme.test", "role": "rep", "password": PASSWORD})),
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("already exists")
    );
    let (status, body) = call(
        &w,
        &adam.access_token(),
        "POST",
        "/v1/people",
        Some(
            json!({"email": "new@acme.test", "role": "rep", "password": PASSWORD,
            "team_id": uuid_of(w.territory)}),
        ),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no team")
    );
    let (status, body) = call(
        &w,
        &adam.access_token(),
        "POST",
        &format!("/v1/people/{}/disable", adam.person.id),
        None,
    );
    assert_eq!(status, 409, "{body}");
    let (status, body) = call(
        &w,
        &adam.access_token(),
        "PATCH",
        &format!("/v1/people/{}", adam.person.id),
        Some(json!({"role": "rep"})),
    );
    assert_eq!(status, 409, "{body}");
    let (status, _) = call(
        &w,
        &adam.access_token(),
        "POST",
        "/v1/teams",
        Some(json!({"name": "North"})),
    );
    assert_eq!(status, 409, "a taken team name");

    // A team with its manager; the manager moves into it.
    let (status, created) = call(
        &w,
        &adam.access_token(),
        "POST",
        "/v1/teams",
        Some(json!({"name": "East", "manager_id": mona.person.id})),
    );
    assert_eq!(status, 201, "{created}");
    let (_, teams) = call(&w, &adam.access_token(), "GET", "/v1/teams", None);
    let east = teams
        .as_array()
        .expect("teams")
        .iter()
        .find(|t| t["name"] == "East")
        .expect("East");
    assert_eq!(east["manager_id"], mona.person.id.to_string());
    assert_eq!(east["members"], 1);
    // A rep cannot manage a team.
    let (status, _) = call(
        &w,
        &adam.access_token(),
        "POST",
        &format!("/v1/teams/{}/manager", created["id"].as_str().expect("id")),
        Some(json!({"user_id": ben.person.id})),
    );
    assert_eq!(status, 409);

    // The admin log names each action, who and on whom; never a password.
    let (status, log) = call(&w, &adam.access_token(), "GET", "/v1/admin/log", None);
    assert_eq!(status, 200);
    let actions: Vec<&str> = log
        .as_array()
        .expect("log")
        .iter()
        .map(|e| e["action"].as_str().expect("action"))
        .collect();
    assert!(actions.contains(&"team.add"), "{log}");
    assert!(actions.contains(&"team.set_manager"), "{log}");
    assert!(
        actions.contains(&"user.change"),
        "mona moved to East: {log}"
    );
    assert!(
        log.as_array()
            .expect("log")
            .iter()
            .all(|e| e["actor_name"] == "adam")
    );
    let (status, _) = call(&w, &mona.access_token(), "GET", "/v1/admin/log", None);
    assert_eq!(status, 403);
}

fn uuid_of(t: TerritoryId) -> String {
    t.to_string()
}

fn login(w: &World, email: &str, password: &str) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let resp = agent
        .post(&format!("{}/v1/auth/login", w.base))
        .send_json(json!({
            "org": ORG, "email": email, "password": password,
            "device": {"id": DeviceId::new(), "platform": "android", "app_version": "1.0"}
        }))
        .expect("login");
    let status = resp.status().as_u16();
    let text = resp.into_body().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn refresh(w: &World, token: &str) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    agent
        .post(&format!("{}/v1/auth/refresh", w.base))
        .send_json(json!({"refresh_token": token}))
        .expect("refresh")
        .status()
        .as_u16()
}

fn disabling_ends_sessions_and_an_invitation_signs_in_once(w: World) {
    let adam = w.device("adam");
    // An invitation: a temporary password, answered once and never stored in clear.
    let (status, added) = call(
        &w,
        &adam.access_token(),
        "POST",
        "/v1/people",
        Some(
            json!({"email": "Nina@acme.test", "role": "rep", "team_id": w.north,
            "territory_id": w.territory}),
        ),
    );
    assert_eq!(status, 201, "{added}");
    let temporary = added["temporary_password"]
        .as_str()
        .expect("a temporary password")
        .to_owned();
    assert_eq!(added["email"], "nina@acme.test");
    let (status, session) = login(&w, "nina@acme.test", &temporary);
    assert_eq!(status, 200, "{session}");
    let access = session["access_token"].as_str().expect("access").to_owned();
    let refresh_token = session["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let (status, _) = call(&w, &access, "GET", "/v1/devices", None);
    assert_eq!(status, 200);

    // Disabling ends the sessions: the refresh token is revoked, the access
    // token stops at its next request.
    let nina = added["id"].as_str().expect("id").to_owned();
    let (status, body) = call(
        &w,
        &adam.access_token(),
        "POST",
        &format!("/v1/people/{nina}/disable"),
        None,
    );
    assert_eq!((status, &body["changed"]), (200, &json!(true)), "{body}");
    let (status, body) = call(&w, &access, "GET", "/v1/devices", None);
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "account_disabled");
    assert_eq!(refresh(&w, &refresh_token), 401);
    let revoked_tokens = w.scalar(
        "SELECT COUNT(*) FROM refresh_tokens t JOIN users u ON u.id = t.user_id \
         WHERE u.email = 'nina@acme.test' AND t.revoked_at IS NOT NULL",
    );
    assert_eq!(revoked_tokens, 1);

    // Enabled again, the old refresh token stays dead; a new login works.
    let (status, _) = call(
        &w,
        &adam.access_token(),
        "POST",
        &format!("/v1/people/{nina}/enable"),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(refresh(&w, &refresh_token), 401);
    let (status, _) = login(&w, "nina@acme.test", &temporary);
    assert_eq!(status, 200);

    // A password reset makes a new temporary password and ends the sessions.
    let (status, reset) = call(
        &w,
        &adam.access_token(),
        "POST",
        &format!("/v1/people/{nina}/reset-password"),
        Some(json!({})),
    );
    assert_eq!(status, 200, "{reset}");
    let second = reset["temporary_password"].as_str().expect("new one");
    assert_ne!(second, temporary);
    assert_eq!(login(&w, "nina@acme.test", &temporary).0, 401);
    assert_eq!(login(&w, "nina@acme.test", second).0, 200);

    // The admin log never holds a password.
    let (_, log) = call(&w, &adam.access_token(), "GET", "/v1/admin/log", None);
    let text = log.to_string();
    assert!(
        text.contains("user.disable") && text.contains("user.reset_password"),
        "{text}"
    );
    assert!(
        !text.contains(&temporary) && !text.contains(second),
        "{text}"
    );
}

/// A product of `territory` (master data: read by everyone working in the
/// territory), created on `dev` and synced.
fn product_in(w: &World, dev: &Device, name: &str, territory: TerritoryId) -> RecordId {
    let mut meta = w.meta_of(&dev.person);
    meta.territory = territory;
    let product = Product {
        meta,
        sku: name.to_uppercase(),
        name: name.into(),
        unit: "pcs".into(),
        serialized: false,
        spare_part: false,
        active: true,
    };
    let id = dev.store().create(&product, today(8)).expect("product");
    let report = dev.sync();
    assert_eq!(report.rejected, 0, "{report:?}");
    id
}

fn has(dev: &Device, kind: RecordKind, id: RecordId) -> bool {
    dev.store()
        .all_of(kind)
        .expect("records")
        .iter()
        .any(|p| p.id == id)
}

fn a_territory_change_reaches_the_reps_device_at_its_next_sync(w: World) {
    let adam = w.device("adam");
    let (status, created) = call(
        &w,
        &adam.access_token(),
        "POST",
        "/v1/territories",
        Some(json!({"name": "Porto"})),
    );
    assert_eq!(status, 201, "{created}");
    let porto: TerritoryId = created["id"].as_str().expect("id").parse().expect("uuid");
    let lisbon_item = product_in(&w, &adam, "Bica", w.territory);
    let porto_item = product_in(&w, &adam, "Francesinha", porto);
    let product = |dev: &Device, id| has(dev, RecordKind::Product, id);

    // Ana works in Lisbon: her phone has Lisbon's catalogue, not Porto's.
    let phone = w.device("ana");
    let own = w.account_on(&phone, "A conta da Ana");
    phone.sync();
    assert!(has(&phone, RecordKind::Account, own), "her own account");
    assert!(product(&phone, lisbon_item), "her territory's product");
    assert!(!product(&phone, porto_item));
    // Her cursor moves past both products.
    let rep = w.device("ben");
    w.account_on(&rep, "Outra loja");
    rep.sync();
    phone.sync();

    // Moved to Porto: at her next sync the phone has Porto's product, drops
    // Lisbon's, and keeps her own account.
    let (status, body) = call(
        &w,
        &adam.access_token(),
        "PATCH",
        &format!("/v1/people/{}", phone.person.id),
        Some(json!({"territory_id": porto})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["territory_name"], "Porto");
    let report = phone.sync();
    assert!(
        product(&phone, porto_item),
        "the new territory's product arrived: {report:?}"
    );
    assert!(
        !product(&phone, lisbon_item),
        "the old territory's product left"
    );
    assert!(
        has(&phone, RecordKind::Account, own),
        "her own account stays"
    );
    // A later sync changes nothing back.
    phone.sync();
    assert!(product(&phone, porto_item) && !product(&phone, lisbon_item));

    // A device primed afterwards has the same scope.
    let fresh = w.device("ana");
    fresh.sync();
    assert!(product(&fresh, porto_item) && !product(&fresh, lisbon_item));
    assert!(has(&fresh, RecordKind::Account, own));

    // Back to Lisbon: the phone follows again, twice in a row before a sync
    // (Porto, then Lisbon, then Porto again) counts as the last one.
    for territory in [w.territory, porto, w.territory] {
        let (status, _) = call(
            &w,
            &adam.access_token(),
            "PATCH",
            &format!("/v1/people/{}", phone.person.id),
            Some(json!({"territory_id": territory})),
        );
        assert_eq!(status, 200);
    }
    phone.sync();
    assert!(product(&phone, lisbon_item) && !product(&phone, porto_item));
}

fn a_promotion_brings_the_teams_records_and_a_demotion_takes_them_away(w: World) {
    let adam = w.device("adam");
    let carla = w.device("carla");
    // Visits, not accounts: everyone in the territory reads its accounts.
    let shop = w.account_on(&carla, "A loja da Carla");
    let hers = w.visit_on(&carla, shop);
    carla.sync();
    let phone = w.device("ben");
    let his = w.visit_on(&phone, shop);
    phone.sync();
    let account = |dev: &Device, id| has(dev, RecordKind::Visit, id);
    assert!(!account(&phone, hers), "a rep reads only his own");

    // Ben becomes North's second manager: his phone receives the team's records.
    let promote = |role: &str| {
        call(
            &w,
            &adam.access_token(),
            "PATCH",
            &format!("/v1/people/{}", phone.person.id),
            Some(json!({"role": role})),
        )
    };
    let (status, body) = promote("manager");
    assert_eq!((status, &body["role"]), (200, &json!("manager")), "{body}");
    phone.sync();
    assert!(account(&phone, hers) && account(&phone, his));
    // The manager's pages now show him North; a manager has no forms.
    let session = cookie_pair(&sign_in(&w, "ben", PASSWORD), SESSION_COOKIE);
    let page = http(&w, "GET", "/web/people", &session, &[]);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("carla@acme.test") && !page.body.contains("sara@acme.test"));
    assert!(!page.body.contains("add-person") && !page.body.contains("Admin log"));
    let devices = http(&w, "GET", "/web/devices", &session, &[]);
    assert!(
        devices.body.contains(&carla.login.device.id.to_string()),
        "{}",
        devices.body
    );

    // Back to rep: the team's records leave his phone, his own stay.
    let (status, _) = promote("rep");
    assert_eq!(status, 200);
    phone.sync();
    assert!(!account(&phone, hers), "the team's visit left");
    assert!(account(&phone, his), "his own stays");
    // And a rep may not open the people page at all.
    let rep = sign_in(&w, "ben", PASSWORD);
    assert_eq!(rep.status, 403);
}

fn a_manager_revokes_a_team_members_device_and_it_is_wiped(w: World) {
    let mona = w.device("mona");
    let phone = w.device("ana");
    let south = w.device("sara");
    let shop = w.account_on(&phone, "Loja Revogada");
    phone.sync();
    south.sync();
    // An unsynced edit, reported with the next pull.
    phone
        .store()
        .update::<Account>(shop, today(9), |a| a.name = "pending".into())
        .expect("edit");

    let (status, list) = call(&w, &mona.access_token(), "GET", "/v1/admin/devices", None);
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> = list["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| d["id"].as_str().expect("id"))
        .collect();
    let phone_id = phone.login.device.id.to_string();
    assert!(ids.contains(&phone_id.as_str()), "{list}");
    assert!(
        !ids.contains(&south.login.device.id.to_string().as_str()),
        "South's devices are not mona's: {list}"
    );
    let row = list["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .find(|d| d["id"] == phone_id)
        .expect("listed");
    assert_eq!(row["user_name"], "ana");
    assert!(row["last_sync_at"].is_i64(), "{row}");
    assert!(row["revoked_at"].is_null());

    // Another team's device answers like a missing one.
    let (status, _) = call(
        &w,
        &mona.access_token(),
        "POST",
        &format!("/v1/devices/{}/revoke", south.login.device.id),
        None,
    );
    assert_eq!(status, 404);
    let (status, body) = call(
        &w,
        &mona.access_token(),
        "POST",
        &format!("/v1/devices/{phone_id}/revoke"),
        None,
    );
    assert_eq!((status, &body["revoked"]), (200, &json!(true)), "{body}");
    let err = phone.client.sync(&NoProgress).expect_err("revoked");
    assert!(matches!(err, SyncError::Revoked), "{err}");
    assert!(
        phone
            .store()
            .all_of(RecordKind::Account)
            .expect("list")
            .is_empty()
    );
    assert_eq!(phone.store().pending_changes().expect("pending"), 0);

    let adam = w.device("adam");
    let (_, log) = call(&w, &adam.access_token(), "GET", "/v1/admin/log", None);
    let entry = log
        .as_array()
        .expect("log")
        .iter()
        .find(|e| e["action"] == "device.revoke")
        .expect("logged");
    assert_eq!(entry["actor_name"], "mona");
    assert_eq!(entry["subject_id"], phone_id);
}

fn db_args(w: &World) -> Vec<String> {
    let mut args = vec![
        "--data-dir".to_owned(),
        w.settings.data_dir.to_str().expect("utf-8").to_owned(),
    ];
    if let Some(url) = &w.settings.database_url {
        args.extend(["--database-url".to_owned(), url.clone()]);
    }
    args
}

fn cli(w: &World, args: &[&str]) -> (bool, String) {
    let mut all: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    all.extend(db_args(w));
    let out = fieldsync(&all, &[], None);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn the_command_line_uses_the_same_rules(w: World) {
    // The last administrator cannot be disabled or demoted, even from the
    // command line.
    let (ok, text) = cli(
        &w,
        &["user", "disable", "--org", ORG, "--email", "adam@acme.test"],
    );
    assert!(!ok && text.contains("last active administrator"), "{text}");
    let (ok, text) = cli(
        &w,
        &[
            "user",
            "set",
            "--org",
            ORG,
            "--email",
            "adam@acme.test",
            "--role",
            "manager",
        ],
    );
    assert!(!ok && text.contains("last active administrator"), "{text}");

    let (ok, text) = cli(&w, &["territory", "add", "Faro", "--org", ORG]);
    assert!(ok, "{text}");
    let (ok, text) = cli(&w, &["team", "add", "Algarve", "--org", ORG]);
    assert!(ok, "{text}");
    let (ok, text) = cli(
        &w,
        &[
            "user",
            "add",
            "--org",
            ORG,
            "--email",
            "rui@acme.test",
            "--role",
            "rep",
            "--team",
            "Algarve",
            "--territory",
            "Faro",
            "--invite",
        ],
    );
    assert!(
        ok && text.contains("temporary password (shown once)"),
        "{text}"
    );
    let (ok, text) = cli(
        &w,
        &[
            "team",
            "set-manager",
            "Algarve",
            "--org",
            ORG,
            "--manager",
            "mona@acme.test",
        ],
    );
    assert!(ok, "{text}");
    let (ok, text) = cli(
        &w,
        &["team", "rename", "Algarve", "--to", "Sul", "--org", ORG],
    );
    assert!(ok, "{text}");
    let (ok, text) = cli(
        &w,
        &[
            "user",
            "set",
            "--org",
            ORG,
            "--email",
            "rui@acme.test",
            "--territory",
            "",
            "--role",
            "technician",
        ],
    );
    assert!(
        ok && text.contains("technician, team Sul, territory none"),
        "{text}"
    );
    let (ok, text) = cli(&w, &["user", "list", "--org", ORG]);
    assert!(
        ok && text.contains("rui@acme.test") && text.contains("Sul"),
        "{text}"
    );
    let (ok, text) = cli(&w, &["team", "list", "--org", ORG]);
    assert!(ok && text.contains("Sul\tmanager: mona"), "{text}");
    let (ok, text) = cli(&w, &["team", "add", "Sul", "--org", ORG]);
    assert!(!ok && text.contains("already a team called"), "{text}");

    let phone = w.device("ben");
    phone.sync();
    let (ok, text) = cli(&w, &["device", "list", "--org", ORG]);
    assert!(
        ok && text.contains(&phone.login.device.id.to_string()),
        "{text}"
    );
    let (ok, text) = cli(
        &w,
        &[
            "device",
            "revoke",
            &phone.login.device.id.to_string(),
            "--org",
            ORG,
        ],
    );
    assert!(ok, "{text}");
    assert!(matches!(
        phone.client.sync(&NoProgress).expect_err("revoked"),
        SyncError::Revoked
    ));
    let (ok, text) = cli(
        &w,
        &["user", "disable", "--org", ORG, "--email", "rui@acme.test"],
    );
    assert!(ok && text.contains("is disabled"), "{text}");
    let logged = w.scalar("SELECT COUNT(*) FROM admin_log WHERE actor_name = 'command line'");
    assert!(logged >= 7, "{logged}");
}

/// The pages, in Chromium: an administrator adds a territory, a team, a
/// manager and two reps, and revokes a device on the Devices page.
#[test]
fn an_administrator_sets_up_a_team_and_revokes_a_device_in_the_pages() {
    let w = World::start(Backend::Sqlite);
    let phone = w.device("ana");
    phone.sync();
    let browser = Browser::start(&w);
    let b = &browser.client;
    let base = w.base.clone();
    let submit = |form: &'static str| async move {
        b.find(Locator::Css(&format!("{form} button[type=submit]")))
            .await
            .expect("button")
            .click()
            .await
            .expect("click");
    };
    let type_in = |id: &'static str, text: String| async move {
        let field = b.find(Locator::Id(id)).await.expect("field");
        field.clear().await.expect("clear");
        field.send_keys(&text).await.expect("type");
    };
    // The notice of the page an action answered with: waits for one that
    // says `expected` (the page before it showed another one).
    let notice = |expected: &'static str| async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Ok(e) = b.find(Locator::Id("people-notice")).await
                && let Ok(text) = e.text().await
                && text.contains(expected)
            {
                return text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no notice saying {expected:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    w.rt.block_on(async {
        b.goto(&format!("{base}/web/people")).await.expect("goto");
        fieldsync_test_support::fill_login(b, "adam@acme.test", PASSWORD).await;
        settled(b, "table#people").await;
        let html = b.source().await.expect("source");
        assert!(html.contains("href=\"/web/devices\""), "nav link");

        type_in("n-territory", "Braga".into()).await;
        submit("#add-territory").await;
        notice("Territory Braga created").await;
        type_in("n-team", "Minho".into()).await;
        submit("#add-team").await;
        notice("Team Minho created").await;

        let select = |id: &'static str, text: &'static str| async move {
            b.find(Locator::Id(id))
                .await
                .expect("select")
                .select_by_label(text)
                .await
                .expect("choose");
        };
        for (email, role) in [
            ("marta@acme.test", "manager"),
            ("rita@acme.test", "rep"),
            ("rui@acme.test", "rep"),
        ] {
            type_in("a-email", email.into()).await;
            select("a-role", role).await;
            select("a-team", "Minho").await;
            select("a-territory", "Braga").await;
            submit("#add-person").await;
            let text = notice(email).await;
            assert!(text.contains("Temporary password"), "{text}");
        }
        // Marta manages Minho.
        let minho = b
            .find(Locator::Css("li[data-team=Minho] select"))
            .await
            .expect("manager select");
        minho
            .select_by_label("marta (marta@acme.test)")
            .await
            .expect("choose marta");
        b.find(Locator::Css(
            "li[data-team=Minho] form:nth-of-type(2) button",
        ))
        .await
        .expect("set manager")
        .click()
        .await
        .expect("click");
        notice("Manager set").await;
        let html = b.source().await.expect("source");
        assert!(html.contains("manager: marta"), "{html}");
        assert!(html.contains("team.set_manager"), "the admin log shows it");
        b.set_window_size(1280, 2400).await.expect("tall window");
        browser.screenshot("people", "admin").await;

        // The Devices page: revoke ana's phone after the confirmation.
        b.find(Locator::LinkText("Devices"))
            .await
            .expect("nav")
            .click()
            .await
            .expect("click");
        settled(b, "table#devices").await;
        let row = format!("tr[data-device='{}'] a", phone.login.device.id);
        b.find(Locator::Css(&row))
            .await
            .expect("revoke link")
            .click()
            .await
            .expect("click");
        settled(b, "#confirm-revoke").await;
        submit("#confirm-revoke").await;
        settled(b, "table#devices").await;
        let html = b.source().await.expect("source");
        assert!(html.contains("Revoked"), "{html}");
        assert!(html.contains("Browser sessions"));
        browser.screenshot("devices", "admin").await;
    });
    let err = phone.client.sync(&NoProgress).expect_err("revoked");
    assert!(matches!(err, SyncError::Revoked), "{err}");
    assert!(
        phone
            .store()
            .all_of(RecordKind::Account)
            .expect("list")
            .is_empty()
    );
    let added = w.scalar(
        "SELECT COUNT(*) FROM users u JOIN teams t ON t.id = u.team_id \
         JOIN territories r ON r.id = u.territory_id WHERE t.name = 'Minho' AND r.name = 'Braga'",
    );
    assert_eq!(added, 3);
    browser.close(&w);
}
