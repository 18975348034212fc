//! Every authenticated endpoint against a table of bad access tokens: each
//! answers 401 with only the error object, on SQLite and on PostgreSQL.

use fieldsync_core::protocol::{self, PrimeRequest, PullRequest, PushRequest, RepairRequest};
use fieldsync_core::{RecordId, RecordKind};
use fieldsync_test_support::{
    Backend, Device, SECRET, World, b64url, configured_kid, sign_jwt, unix_now,
};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

#[test]
fn bad_tokens_on_sqlite() {
    bad_tokens_get_401_everywhere(World::start(Backend::Sqlite));
}

#[test]
fn bad_tokens_on_postgres() {
    bad_tokens_get_401_everywhere(World::start(Backend::Postgres));
}

/// Method, path, and the body (content type and bytes) for POSTs that take one.
type Endpoint = (&'static str, String, Option<(&'static str, Vec<u8>)>);

fn bad_tokens_get_401_everywhere(w: World) {
    let phone = w.device("ana");
    let revoked = w.device("ben");
    let disabled = w.device("carla");
    let good = |extra: Value| {
        let mut claims = json!({
            "sub": phone.person.id, "org": w.org, "role": "rep", "dev": phone.login.device.id,
            "iss": "fieldsync", "aud": "fieldsync-api", "iat": unix_now(), "exp": unix_now() + 600,
        });
        if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                if v.is_null() {
                    c.remove(k);
                } else {
                    c.insert(k.clone(), v.clone());
                }
            }
        }
        claims
    };
    let valid = sign_jwt(
        Algorithm::HS256,
        Some(configured_kid(SECRET)),
        &good(json!({})),
        SECRET,
    );
    // Sanity: the well-formed token works.
    let me = ureq::get(format!("{}/v1/me", w.base))
        .header("authorization", format!("Bearer {valid}"))
        .call()
        .expect("the valid token is accepted");
    assert_eq!(me.status().as_u16(), 200);

    let mut tampered = valid.clone();
    let last = tampered.pop().expect("char");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let none = format!(
        "{}.{}.",
        b64url(
            format!(
                r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#,
                configured_kid(SECRET)
            )
            .as_bytes()
        ),
        b64url(good(json!({})).to_string().as_bytes())
    );
    // Ben's device revoked; Carla disabled.
    w.rt.block_on(fieldsync_server::service::accounts::revoke_device(
        &w.db,
        revoked.login.device.id,
    ))
    .expect("revoke");
    w.execute_with_id(
        "UPDATE users SET disabled = TRUE WHERE id = $1",
        *disabled.person.id.as_uuid(),
    );
    let of = |dev: &Device| {
        sign_jwt(
            Algorithm::HS256,
            Some(configured_kid(SECRET)),
            &json!({
                "sub": dev.person.id, "org": w.org, "role": "rep", "dev": dev.login.device.id,
                "iss": "fieldsync", "aud": "fieldsync-api", "iat": unix_now(), "exp": unix_now() + 600,
            }),
            SECRET,
        )
    };
    let table: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("garbage", Some("not-a-jwt".into())),
        ("none algorithm", Some(none)),
        (
            "wrong algorithm (HS384)",
            Some(sign_jwt(
                Algorithm::HS384,
                Some(configured_kid(SECRET)),
                &good(json!({})),
                SECRET,
            )),
        ),
        ("tampered signature", Some(tampered)),
        (
            "another key",
            Some(sign_jwt(
                Algorithm::HS256,
                Some(configured_kid(SECRET)),
                &good(json!({})),
                "another-secret-of-sufficient-length-0123456789",
            )),
        ),
        (
            "unknown key id",
            Some(sign_jwt(
                Algorithm::HS256,
                Some("cfg-000000000000".into()),
                &good(json!({})),
                SECRET,
            )),
        ),
        (
            "no key id",
            Some(sign_jwt(Algorithm::HS256, None, &good(json!({})), SECRET)),
        ),
        (
            "wrong issuer",
            Some(sign_jwt(
                Algorithm::HS256,
                Some(configured_kid(SECRET)),
                &good(json!({"iss": "evil"})),
                SECRET,
            )),
        ),
        (
            "wrong audience",
            Some(sign_jwt(
                Algorithm::HS256,
                Some(configured_kid(SECRET)),
                &good(json!({"aud": "other-api"})),
                SECRET,
            )),
        ),
        (
            "expired",
            Some(sign_jwt(
                Algorithm::HS256,
                Some(configured_kid(SECRET)),
                &good(json!({"exp": unix_now() - 120})),
                SECRET,
            )),
        ),
        (
            "not yet valid",
            Some(sign_jwt(
                Algorithm::HS256,
                Some(configured_kid(SECRET)),
                &good(json!({"nbf": unix_now() + 3600})),
                SECRET,
            )),
        ),
        (
            "missing subject",
            Some(sign_jwt(
                Algorithm::HS256,
                Some(configured_kid(SECRET)),
                &good(json!({"sub": null})),
                SECRET,
            )),
        ),
        (
            "missing expiry",
            Some(sign_jwt(
                Algorithm::HS256,
                Some(configured_kid(SECRET)),
                &good(json!({"exp": null})),
                SECRET,
            )),
        ),
        (
            "subject of another user",
            Some(sign_jwt(
                Algorithm::HS256,
                Some(configured_kid(SECRET)),
                &good(json!({"sub": w.person("sara").id})),
                SECRET,
            )),
        ),
        (
            "unknown device",
            Some(sign_jwt(
                Algorithm::HS256,
                Some(configured_kid(SECRET)),
                &good(json!({"dev": uuid::Uuid::now_v7()})),
                SECRET,
            )),
        ),
        ("revoked device", Some(of(&revoked))),
        ("disabled user", Some(of(&disabled))),
    ];
    let record = RecordId::new();
    let cbor = |body: Vec<u8>| ("application/cbor", body);
    let endpoints: Vec<Endpoint> = vec![
        ("GET", "/v1/me".into(), None),
        ("GET", "/v1/rejections".into(), None),
        ("GET", "/v1/devices".into(), None),
        ("GET", format!("/v1/records/{record}/audit"), None),
        ("GET", "/v1/live".into(), None),
        ("GET", format!("/v1/attachments/{}", "ab".repeat(32)), None),
        (
            "POST",
            "/v1/attachments".into(),
            Some((
                "application/json",
                format!(
                    r#"{{"sha256":"{}","record_id":"{record}","kind":"photo","content_type":"image/jpeg","size":10}}"#,
                    "ab".repeat(32)
                )
                .into_bytes(),
            )),
        ),
        (
            "POST",
            format!("/v1/attachments/{}/complete", "ab".repeat(32)),
            None,
        ),
        ("GET", "/v1/reports?status=submitted".into(), None),
        ("GET", format!("/v1/reports/{record}"), None),
        (
            "POST",
            format!("/v1/reports/{record}/decision"),
            Some(("application/json", br#"{"decision":"approve"}"#.to_vec())),
        ),
        (
            "POST",
            "/v1/reports/decisions".into(),
            Some((
                "application/json",
                format!(r#"{{"ids":["{record}"],"decision":"approve"}}"#).into_bytes(),
            )),
        ),
        (
            "POST",
            format!("/v1/devices/{}/revoke", phone.login.device.id),
            None,
        ),
        (
            "POST",
            "/v1/sync/push".into(),
            Some(cbor(protocol::encode(&PushRequest {
                batch: uuid::Uuid::now_v7(),
                records: vec![],
                epochs: Vec::new(),
             health: None, }))),
        ),
        (
            "POST",
            "/v1/sync/pull".into(),
            Some(cbor(protocol::encode(&PullRequest {
                log: None,
                history: None,
                cursor: 0,
                max_changes: 10,
                window: None,
             health: None, }))),
        ),
        (
            "POST",
            "/v1/sync/prime".into(),
            Some(cbor(protocol::encode(&PrimeRequest {
                after: None,
                cursor: None,
                max_records: 10,
            }))),
        ),
        (
            "POST",
            "/v1/sync/repair".into(),
            Some(cbor(protocol::encode(&RepairRequest {
                id: record,
                kind: RecordKind::Visit,
                message: serde_bytes::ByteBuf::from(vec![0x42]),
                epoch: 0,
            }))),
        ),
    ];
    let mut checked = 0;
    for (name, token) in &table {
        for (method, path, body) in &endpoints {
            let url = format!("{}{path}", w.base);
            let resp = if *method == "GET" {
                let mut req = ureq::get(&url).config().http_status_as_error(false).build();
                if let Some(t) = token {
                    req = req.header("authorization", format!("Bearer {t}"));
                }
                req.call()
            } else {
                let mut req = ureq::post(&url)
                    .config()
                    .http_status_as_error(false)
                    .build();
                if let Some(t) = token {
                    req = req.header("authorization", format!("Bearer {t}"));
                }
                match body {
                    Some((ct, bytes)) => req.header("content-type", *ct).send(&bytes[..]),
                    None => req.send_empty(),
                }
            }
            .expect("answer");
            let status = resp.status().as_u16();
            let text = resp.into_body().read_to_string().unwrap_or_default();
            let json: Value = serde_json::from_str(&text).unwrap_or_default();
            assert!(
                status == 401 || (*name == "disabled user" && status == 403),
                "{name} on {method} {path}: {status} {text}"
            );
            let keys: Vec<&String> = json
                .as_object()
                .map(|o| o.keys().collect())
                .unwrap_or_default();
            assert_eq!(
                keys,
                vec!["error"],
                "{name} on {path}: nothing but the error: {text}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, table.len() * endpoints.len());
    // The revoked device's answer tells the app to wipe.
    let resp = ureq::get(format!("{}/v1/me", w.base))
        .header("authorization", format!("Bearer {}", of(&revoked)))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .expect("answer");
    let text = resp.into_body().read_to_string().unwrap_or_default();
    assert!(text.contains("device_revoked"), "{text}");
    eprintln!("{checked} token × endpoint combinations refused");
}

#[test]
fn a_device_offline_past_its_refresh_token_logs_in_again_and_pushes_its_outbox_on_sqlite() {
    offline_past_the_refresh_token(Backend::Sqlite);
}

#[test]
fn a_device_offline_past_its_refresh_token_logs_in_again_and_pushes_its_outbox_on_postgres() {
    offline_past_the_refresh_token(Backend::Postgres);
}

/// A phone left in a drawer longer than its refresh token lives (30 days by
/// default, three seconds here): its next sync cannot sign in, nothing it
/// holds is dropped, and once the rep types the password again the same device
/// (same actor) pushes the whole outbox.
fn offline_past_the_refresh_token(backend: Backend) {
    use fieldsync_core::model::Visit;
    use fieldsync_core::sync::{DeviceInfo, LoginRequest, NoProgress, SyncError};
    use fieldsync_core::{DeviceTime, RecordDoc};

    let w = World::start_with(backend, |s| {
        s.access_token_ttl_secs = Some(1);
        s.refresh_token_ttl_secs = Some(3);
    });
    let phone = w.device("ana");
    let shop = w.account_on(&phone, "Drawer outlet");
    phone.sync();
    let mut offline = Vec::new();
    for i in 0..5 {
        let visit = Visit::planned(
            w.meta("ana"),
            shop,
            DeviceTime::utc(i),
            DeviceTime::utc(i + 3_600_000),
        );
        offline.push(
            phone
                .store()
                .create_stateful(&visit, &phone.actor, DeviceTime::utc(i))
                .expect("plan offline"),
        );
    }
    phone
        .store()
        .update::<fieldsync_core::model::Account>(shop, DeviceTime::utc(9), |a| {
            a.name = "Drawer outlet (renamed offline)".into()
        })
        .expect("edit offline");
    let pending = phone.store().pending_changes().expect("pending");
    assert_eq!(pending, 6);
    // Past both lives: the access token's second and the five seconds of
    // clock skew the server tolerates, and the refresh token's three.
    std::thread::sleep(std::time::Duration::from_millis(7_500));

    let err = phone
        .client
        .sync(&NoProgress)
        .expect_err("the refresh token has expired");
    assert!(matches!(err, SyncError::Auth(_)), "{err:?}");
    assert_eq!(
        phone.store().pending_changes().expect("pending"),
        pending,
        "nothing is dropped while signed out"
    );

    let again = phone
        .client
        .login(&LoginRequest {
            org: fieldsync_test_support::ORG.into(),
            email: phone.person.email.clone(),
            password: fieldsync_test_support::PASSWORD.into(),
            device: DeviceInfo {
                id: phone.login.device.id,
                platform: "test".into(),
                app_version: "0.1.0".into(),
            },
        })
        .expect("log in again");
    assert_eq!(
        again.device.actor_id, phone.login.device.actor_id,
        "the same device keeps its actor"
    );
    let report = phone.client.sync(&NoProgress).expect("sync after login");
    assert_eq!(report.rejected, 0);
    assert_eq!(phone.store().pending_changes().expect("pending"), 0);
    for id in offline.iter().chain([&shop]) {
        let mut server: RecordDoc = w.server_doc(*id).expect("on the server");
        let mut local = phone.store().doc(*id).expect("on the phone");
        assert_eq!(server.heads(), local.heads());
    }
}
