//! Every authenticated endpoint against a table of bad access tokens: each
//! answers 401 with only the error object, on SQLite and on PostgreSQL.

mod support;
#[allow(dead_code)]
mod world;

use std::time::{SystemTime, UNIX_EPOCH};

use fieldsync_core::protocol::{self, PrimeRequest, PullRequest, PushRequest, RepairRequest};
use fieldsync_core::{RecordId, RecordKind};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use world::{Backend, World};

#[test]
fn bad_tokens_on_sqlite() {
    bad_tokens_get_401_everywhere(World::start(Backend::Sqlite));
}

#[test]
fn bad_tokens_on_postgres() {
    bad_tokens_get_401_everywhere(World::start(Backend::Postgres));
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn kid() -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(world::SECRET.as_bytes());
    format!("cfg-{}", hex::encode(&d[..6]))
}

fn sign(alg: Algorithm, kid: Option<String>, claims: &Value, secret: &str) -> String {
    let mut header = Header::new(alg);
    header.kid = kid;
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

fn b64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
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
            "iss": "fieldsync", "aud": "fieldsync-api", "iat": now(), "exp": now() + 600,
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
    let valid = sign(
        Algorithm::HS256,
        Some(kid()),
        &good(json!({})),
        world::SECRET,
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
        b64(format!(r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#, kid()).as_bytes()),
        b64(good(json!({})).to_string().as_bytes())
    );
    // Ben's device revoked; Carla disabled.
    w.rt.block_on(fieldsync_server::accounts::revoke_device(
        &w.db,
        revoked.login.device.id,
    ))
    .expect("revoke");
    w.execute_with_id(
        "UPDATE users SET disabled = TRUE WHERE id = $1",
        *disabled.person.id.as_uuid(),
    );
    let of = |dev: &world::Device| {
        sign(
            Algorithm::HS256,
            Some(kid()),
            &json!({
                "sub": dev.person.id, "org": w.org, "role": "rep", "dev": dev.login.device.id,
                "iss": "fieldsync", "aud": "fieldsync-api", "iat": now(), "exp": now() + 600,
            }),
            world::SECRET,
        )
    };
    let table: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("garbage", Some("not-a-jwt".into())),
        ("none algorithm", Some(none)),
        (
            "wrong algorithm (HS384)",
            Some(sign(
                Algorithm::HS384,
                Some(kid()),
                &good(json!({})),
                world::SECRET,
            )),
        ),
        ("tampered signature", Some(tampered)),
        (
            "another key",
            Some(sign(
                Algorithm::HS256,
                Some(kid()),
                &good(json!({})),
                "another-secret-of-sufficient-length-0123456789",
            )),
        ),
        (
            "unknown key id",
            Some(sign(
                Algorithm::HS256,
                Some("cfg-000000000000".into()),
                &good(json!({})),
                world::SECRET,
            )),
        ),
        (
            "no key id",
            Some(sign(
                Algorithm::HS256,
                None,
                &good(json!({})),
                world::SECRET,
            )),
        ),
        (
            "wrong issuer",
            Some(sign(
                Algorithm::HS256,
                Some(kid()),
                &good(json!({"iss": "evil"})),
                world::SECRET,
            )),
        ),
        (
            "wrong audience",
            Some(sign(
                Algorithm::HS256,
                Some(kid()),
                &good(json!({"aud": "other-api"})),
                world::SECRET,
            )),
        ),
        (
            "expired",
            Some(sign(
                Algorithm::HS256,
                Some(kid()),
                &good(json!({"exp": now() - 120})),
                world::SECRET,
            )),
        ),
        (
            "not yet valid",
            Some(sign(
                Algorithm::HS256,
                Some(kid()),
                &good(json!({"nbf": now() + 3600})),
                world::SECRET,
            )),
        ),
        (
            "missing subject",
            Some(sign(
                Algorithm::HS256,
                Some(kid()),
                &good(json!({"sub": null})),
                world::SECRET,
            )),
        ),
        (
            "missing expiry",
            Some(sign(
                Algorithm::HS256,
                Some(kid()),
                &good(json!({"exp": null})),
                world::SECRET,
            )),
        ),
        (
            "subject of another user",
            Some(sign(
                Algorithm::HS256,
                Some(kid()),
                &good(json!({"sub": w.person("sara").id})),
                world::SECRET,
            )),
        ),
        (
            "unknown device",
            Some(sign(
                Algorithm::HS256,
                Some(kid()),
                &good(json!({"dev": uuid::Uuid::now_v7()})),
                world::SECRET,
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
             health: None, }))),
        ),
        (
            "POST",
            "/v1/sync/pull".into(),
            Some(cbor(protocol::encode(&PullRequest {
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
