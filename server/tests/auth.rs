//! Login, refresh, `/v1/me` and token validation, through the real router on a
//! loopback port with a real HTTP client, on SQLite and on PostgreSQL. Every
//! scenario runs on both databases (`<scenario>::on_sqlite`, `::on_postgres`).

use std::future::Future;

use fieldsync_core::model::Role;
use fieldsync_core::{DeviceId, OrgId};
use fieldsync_server::service::accounts::{self, NewUser};
use fieldsync_server::service::auth;
use fieldsync_server::settings::Secret;
use fieldsync_server::{Database, SettingsArgs};
use fieldsync_test_support::{
    Backend, Node, PASSWORD, SECRET, b64url, configured_kid, on_both_databases, sign_jwt, unix_now,
};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

/// A running server plus a handle on its database for seeding.
#[derive(Clone)]
struct Harness {
    base: String,
    http: reqwest::Client,
    db: Database,
    org: OrgId,
}

/// Starts the server on `backend`, seeds organisation `acme` with a rep
/// `ana@acme.test` (team North, territory Lisbon), runs `scenario`, stops.
fn run<F, Fut>(backend: Backend, scenario: F)
where
    F: FnOnce(Harness) -> Fut,
    Fut: Future<Output = ()>,
{
    run_with(backend, Keys::Configured(SECRET, &[]), scenario);
}

/// Where the server's signing keys come from in a scenario.
#[derive(Clone, Copy)]
enum Keys {
    /// `jwt_secret` and `jwt_previous_secrets`.
    Configured(&'static str, &'static [&'static str]),
    /// The `signing_keys` table.
    Stored,
}

fn run_with<F, Fut>(backend: Backend, keys: Keys, scenario: F)
where
    F: FnOnce(Harness) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("tempdir");
    // Made before the runtime: the cluster helper runs its own blocking runtime.
    let database_url = backend.database_url();
    let settings = SettingsArgs {
        data_dir: Some(dir.path().join("data")),
        database_url,
        jwt_secret: match keys {
            Keys::Configured(secret, _) => Some(Secret::new(secret)),
            Keys::Stored => None,
        },
        jwt_previous_secrets: match keys {
            Keys::Configured(_, previous) => {
                Some(previous.iter().map(|s| Secret::new(*s)).collect())
            }
            Keys::Stored => None,
        },
        db_max_connections: Some(4),
        ..SettingsArgs::default()
    }
    .resolve()
    .expect("settings");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (db, org) = rt.block_on(async {
        let db = fieldsync_server::open_database(&settings)
            .await
            .expect("open and migrate");
        let org = seed(&db).await;
        (db, org)
    });
    let node = Node::start(rt.handle(), settings);
    rt.block_on(scenario(Harness {
        base: node.base.clone(),
        http: reqwest::Client::new(),
        db: db.clone(),
        org,
    }));
    node.stop();
    rt.block_on(db.close());
}

on_both_databases!(
    with run:
    login_returns_a_session_and_me_answers_the_user,
    wrong_password_unknown_user_and_unknown_org_get_the_same_401,
    refresh_rotates_and_reuse_of_a_rotated_token_kills_the_chain,
    expired_and_forged_access_tokens_get_401,
    a_revoked_device_is_refused_with_device_revoked,
    malformed_bodies_answer_the_json_error_shape,
);

mod key_rotation {
    #[test]
    fn stored_keys_on_sqlite() {
        super::run_with(
            super::Backend::Sqlite,
            super::Keys::Stored,
            super::stored_keys_rotate_without_logging_anyone_out,
        );
    }
    #[test]
    fn stored_keys_on_postgres() {
        super::run_with(
            super::Backend::Postgres,
            super::Keys::Stored,
            super::stored_keys_rotate_without_logging_anyone_out,
        );
    }
    #[test]
    fn configured_keys() {
        super::run_with(
            super::Backend::Sqlite,
            super::Keys::Configured(super::NEW_SECRET, &[super::SECRET]),
            super::a_previous_configured_secret_still_verifies_its_tokens,
        );
    }
}

async fn seed(db: &Database) -> OrgId {
    let org = accounts::create_org(db, "Acme", "acme")
        .await
        .expect("create org");
    let team = accounts::ensure_team(db, org, "North").await.expect("team");
    let territory = accounts::ensure_territory(db, org, "Lisbon")
        .await
        .expect("territory");
    accounts::create_user(
        db,
        NewUser {
            org,
            email: "Ana@Acme.test".into(),
            display_name: "Ana Silva".into(),
            role: Role::Rep,
            team: Some(team),
            territory: Some(territory),
            password: PASSWORD.into(),
        },
    )
    .await
    .expect("create user");
    org
}

impl Harness {
    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("JSON body"))
    }

    async fn me(&self, token: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}/v1/me", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("JSON body"))
    }

    async fn login(&self, device: DeviceId) -> (u16, Value) {
        self.post(
            "/v1/auth/login",
            &login_body("acme", "ana@acme.test", PASSWORD, device),
        )
        .await
    }

    async fn refresh(&self, token: &Value) -> (u16, Value) {
        self.post("/v1/auth/refresh", &json!({ "refresh_token": token }))
            .await
    }
}

fn login_body(org: &str, email: &str, password: &str, device: DeviceId) -> Value {
    json!({
        "org": org,
        "email": email,
        "password": password,
        "device": { "id": device, "platform": "android", "app_version": "1.4.2" },
    })
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no code>")
}

async fn login_returns_a_session_and_me_answers_the_user(h: Harness) {
    let device = DeviceId::new();
    let (status, session) = h.login(device).await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["expires_in"], 900);
    assert_eq!(session["user"]["role"], "rep");
    assert_eq!(session["user"]["display_name"], "Ana Silva");
    assert_eq!(session["user"]["org"], json!(h.org));
    assert!(session["user"]["team"].is_string(), "{session}");
    assert!(session["user"]["territory"].is_string(), "{session}");
    assert_eq!(session["device"]["id"], json!(device));
    let actor = session["device"]["actor_id"].as_str().expect("actor id");
    assert_eq!(actor.len(), 32);
    assert!(actor.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(
        session["refresh_token"]
            .as_str()
            .is_some_and(|t| t.len() >= 32)
    );

    let token = session["access_token"].as_str().expect("access token");
    let (status, me) = h.me(token).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["id"], session["user"]["id"]);
    assert_eq!(me["team"], session["user"]["team"]);

    // A second login from the same device keeps its actor id; another device gets its own.
    let (_, again) = h.login(device).await;
    assert_eq!(again["device"]["actor_id"], session["device"]["actor_id"]);
    let (_, other) = h.login(DeviceId::new()).await;
    assert_ne!(other["device"]["actor_id"], session["device"]["actor_id"]);

    let resp = h
        .http
        .get(format!("{}/v1/me", h.base))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(code(&body), "missing_token");
}

async fn wrong_password_unknown_user_and_unknown_org_get_the_same_401(h: Harness) {
    let device = DeviceId::new();
    let wrong_password = h
        .post(
            "/v1/auth/login",
            &login_body("acme", "ana@acme.test", "not the password", device),
        )
        .await;
    let unknown_user = h
        .post(
            "/v1/auth/login",
            &login_body("acme", "bob@acme.test", PASSWORD, device),
        )
        .await;
    let unknown_org = h
        .post(
            "/v1/auth/login",
            &login_body("globex", "ana@acme.test", PASSWORD, device),
        )
        .await;
    assert_eq!(wrong_password.0, 401);
    assert_eq!(code(&wrong_password.1), "invalid_credentials");
    assert_eq!(unknown_user, wrong_password);
    assert_eq!(unknown_org, wrong_password);
    // No device row was made by failed logins.
    assert!(
        accounts::device_by_id(&h.db, device)
            .await
            .expect("query")
            .is_none()
    );
}

async fn refresh_rotates_and_reuse_of_a_rotated_token_kills_the_chain(h: Harness) {
    let (_, first) = h.login(DeviceId::new()).await;
    let (_, other_device) = h.login(DeviceId::new()).await;

    let (status, second) = h.refresh(&first["refresh_token"]).await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_eq!(second["device"], first["device"]);
    let (status, _) = h.me(second["access_token"].as_str().expect("token")).await;
    assert_eq!(status, 200);

    // Once its successor was used, the used token is dead, and presenting it
    // again revokes the whole chain. (Presented again before its successor
    // ever was, it is a retry after a lost answer: `tests/sessions.rs`.)
    let (status, third) = h.refresh(&second["refresh_token"]).await;
    assert_eq!(status, 200, "{third}");
    let (status, body) = h.refresh(&first["refresh_token"]).await;
    assert_eq!(status, 401);
    assert_eq!(code(&body), "invalid_refresh_token");
    let (status, body) = h.refresh(&third["refresh_token"]).await;
    assert_eq!(status, 401, "the chain was revoked: {body}");

    // Another login's chain is untouched, and unknown tokens are refused.
    let (status, _) = h.refresh(&other_device["refresh_token"]).await;
    assert_eq!(status, 200);
    let (status, body) = h.refresh(&json!("0".repeat(64))).await;
    assert_eq!(status, 401);
    assert_eq!(code(&body), "invalid_refresh_token");
}

async fn expired_and_forged_access_tokens_get_401(h: Harness) {
    let (_, session) = h.login(DeviceId::new()).await;
    let good = session["access_token"].as_str().expect("token");
    let header = jsonwebtoken::decode_header(good).expect("header");
    let kid = header.kid.expect("the header names its key");
    let claims = |overrides: Value| {
        let mut c = json!({
            "sub": session["user"]["id"],
            "org": session["user"]["org"],
            "role": "rep",
            "dev": session["device"]["id"],
            "iss": "fieldsync",
            "aud": "fieldsync-api",
            "iat": unix_now(),
            "exp": unix_now() + 300,
        });
        for (k, v) in overrides.as_object().expect("object") {
            if v.is_null() {
                c.as_object_mut().expect("object").remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let sign = |alg: Algorithm, kid: &str, secret: &str, claims: &Value| {
        sign_jwt(alg, Some(kid.to_owned()), claims, secret)
    };

    // The minting here is right: the same recipe with good values is accepted.
    let minted = sign(Algorithm::HS256, &kid, SECRET, &claims(json!({})));
    assert_eq!(h.me(&minted).await.0, 200, "a correctly minted token works");

    let unsigned = format!(
        "{}.{}.",
        b64url(
            json!({ "alg": "none", "typ": "JWT", "kid": kid })
                .to_string()
                .as_bytes()
        ),
        b64url(claims(json!({})).to_string().as_bytes())
    );
    let mut bad_signature = good.to_owned();
    let last = bad_signature.pop().expect("non-empty");
    bad_signature.push(if last == 'A' { 'B' } else { 'A' });
    let parts: Vec<&str> = good.split('.').collect();
    let tampered_payload = format!(
        "{}.{}.{}",
        parts[0],
        b64url(claims(json!({ "role": "admin" })).to_string().as_bytes()),
        parts[2]
    );
    let forged = [
        (
            "expired",
            sign(
                Algorithm::HS256,
                &kid,
                SECRET,
                &claims(json!({ "exp": unix_now() - 60 })),
            ),
        ),
        ("alg none", unsigned),
        (
            "HS512",
            sign(Algorithm::HS512, &kid, SECRET, &claims(json!({}))),
        ),
        ("tampered signature", bad_signature),
        ("tampered payload", tampered_payload),
        (
            "other key",
            sign(
                Algorithm::HS256,
                &kid,
                "another-key-0123456789abcdef0123456789",
                &claims(json!({})),
            ),
        ),
        (
            "unknown kid",
            sign(Algorithm::HS256, "old-key", SECRET, &claims(json!({}))),
        ),
        (
            "wrong iss",
            sign(
                Algorithm::HS256,
                &kid,
                SECRET,
                &claims(json!({ "iss": "someone-else" })),
            ),
        ),
        (
            "wrong aud",
            sign(
                Algorithm::HS256,
                &kid,
                SECRET,
                &claims(json!({ "aud": "other-api" })),
            ),
        ),
        (
            "missing sub",
            sign(
                Algorithm::HS256,
                &kid,
                SECRET,
                &claims(json!({ "sub": null })),
            ),
        ),
        (
            "missing exp",
            sign(
                Algorithm::HS256,
                &kid,
                SECRET,
                &claims(json!({ "exp": null })),
            ),
        ),
        (
            "unknown device",
            sign(
                Algorithm::HS256,
                &kid,
                SECRET,
                &claims(json!({ "dev": DeviceId::new() })),
            ),
        ),
        ("garbage", "not-a-token".to_owned()),
    ];
    for (what, token) in forged {
        let (status, body) = h.me(&token).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(code(&body), "invalid_token", "{what}");
        assert!(body["error"]["message"].is_string(), "{what}");
    }
}

async fn a_revoked_device_is_refused_with_device_revoked(h: Harness) {
    let device = DeviceId::new();
    let (_, session) = h.login(device).await;
    let token = session["access_token"].as_str().expect("token");
    assert_eq!(h.me(token).await.0, 200);
    assert!(
        accounts::revoke_device(&h.db, device)
            .await
            .expect("revoke")
    );

    let (status, body) = h.me(token).await;
    assert_eq!(status, 401);
    assert_eq!(code(&body), "device_revoked");
    let (status, _) = h.refresh(&session["refresh_token"]).await;
    assert_eq!(status, 401, "its refresh tokens died with it");
    let (status, body) = h.login(device).await;
    assert_eq!(status, 401);
    assert_eq!(code(&body), "device_revoked");
}

async fn malformed_bodies_answer_the_json_error_shape(h: Harness) {
    let url = format!("{}/v1/auth/login", h.base);
    let send = |body: &'static str, content_type: Option<&'static str>| {
        let mut req = h.http.post(&url).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        async move {
            let resp = req.send().await.expect("request");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.expect("JSON error body"))
        }
    };
    let (status, body) = send("{\"org\": \"acme\",", Some("application/json")).await;
    assert_eq!(status, 400);
    assert_eq!(code(&body), "invalid_json");
    let (status, body) = send("{\"org\": \"acme\"}", Some("application/json")).await;
    assert_eq!(status, 400, "missing fields: {body}");
    assert_eq!(code(&body), "invalid_json");
    let (status, body) = send("{}", None).await;
    assert_eq!(status, 415);
    assert_eq!(code(&body), "unsupported_media_type");
    let (status, body) = send("org=acme", Some("application/x-www-form-urlencoded")).await;
    assert_eq!(status, 415);
    assert!(body["error"]["message"].is_string());
}

const NEW_SECRET: &str = "rotated-signing-key-fedcba9876543210-fedcba98";

/// An access token for the session's user and device, signed with `secret` under `kid`.
fn mint(session: &Value, kid: &str, secret: &[u8]) -> String {
    let claims = json!({
        "sub": session["user"]["id"],
        "org": session["user"]["org"],
        "role": "rep",
        "dev": session["device"]["id"],
        "iss": "fieldsync",
        "aud": "fieldsync-api",
        "iat": unix_now(),
        "exp": unix_now() + 300,
    });
    sign_jwt(Algorithm::HS256, Some(kid.to_owned()), &claims, secret)
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("header")
        .kid
        .expect("every token names its key")
}

async fn stored_secret(db: &Database, kid: &str) -> Vec<u8> {
    match db {
        Database::Sqlite(pool) => {
            sqlx::query_scalar("SELECT secret FROM signing_keys WHERE kid = $1")
                .bind(kid)
                .fetch_one(pool)
                .await
                .expect("stored key")
        }
        Database::Postgres(pool) => {
            sqlx::query_scalar("SELECT secret FROM signing_keys WHERE kid = $1")
                .bind(kid)
                .fetch_one(pool)
                .await
                .expect("stored key")
        }
    }
}

async fn stored_keys_rotate_without_logging_anyone_out(h: Harness) {
    let (_, before) = h.login(DeviceId::new()).await;
    let old_token = before["access_token"].as_str().expect("token").to_owned();
    let old_kid = kid_of(&old_token);
    assert_eq!(h.me(&old_token).await.0, 200);

    // An operator rotates (on another node, say): this node has not reloaded yet.
    let new_kid = auth::rotate_key(&h.db).await.expect("rotate");
    assert_ne!(new_kid, old_kid);
    // A token signed with the new key by a node that has it: this node loads the
    // key on first sight of its id instead of refusing the token.
    let secret = stored_secret(&h.db, &new_kid).await;
    let from_other_node = mint(&before, &new_kid, &secret);
    assert_eq!(h.me(&from_other_node).await.0, 200, "the new key verifies");
    // From now on this node signs with the new key; the old token still works.
    let (_, after) = h.login(DeviceId::new()).await;
    let new_token = after["access_token"].as_str().expect("token").to_owned();
    assert_eq!(kid_of(&new_token), new_kid, "new tokens name the new key");
    assert_eq!(h.me(&old_token).await.0, 200, "nobody is logged out");
    let (status, refreshed) = h.refresh(&before["refresh_token"]).await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(
        kid_of(refreshed["access_token"].as_str().expect("token")),
        new_kid,
        "a refresh moves an old session to the new key"
    );

    // Retiring the only key in force is refused; retiring the old one works.
    let keys = auth::stored_keys(&h.db).await.expect("keys");
    assert_eq!(keys.len(), 2);
    assert!(auth::retire_key(&h.db, "no-such-key").await.is_err());
    auth::retire_key(&h.db, &old_kid).await.expect("retire");
    assert!(
        matches!(
            auth::retire_key(&h.db, &new_kid).await,
            Err(auth::RetireError::LastKey(_))
        ),
        "the last key in force cannot be retired"
    );
    // A token naming a key this node does not know makes it reload (at most
    // every few seconds); after that the retired key verifies nothing.
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    let unknown = mint(
        &before,
        "db-000000000000",
        b"some-other-secret-0123456789abcdef",
    );
    assert_eq!(h.me(&unknown).await.0, 401);
    let (status, body) = h.me(&old_token).await;
    assert_eq!(status, 401, "a retired key's tokens are refused: {body}");
    assert_eq!(code(&body), "invalid_token");
    assert_eq!(h.me(&new_token).await.0, 200);
}

async fn a_previous_configured_secret_still_verifies_its_tokens(h: Harness) {
    let (_, session) = h.login(DeviceId::new()).await;
    let current = session["access_token"].as_str().expect("token");
    assert_eq!(h.me(current).await.0, 200);
    let current_kid = kid_of(current);
    // A token the server signed before the rotation: the old secret, its own kid.
    let old_kid = configured_kid(SECRET);
    assert_ne!(old_kid, current_kid);
    let old = mint(&session, &old_kid, SECRET.as_bytes());
    assert_eq!(
        h.me(&old).await.0,
        200,
        "the previous secret still verifies"
    );
    // But only under its own key id: the old secret cannot sign as the new key.
    let mixed = mint(&session, &current_kid, SECRET.as_bytes());
    assert_eq!(h.me(&mixed).await.0, 401);
    // Nor does the previous secret ever sign.
    let (_, again) = h.login(DeviceId::new()).await;
    assert_eq!(
        kid_of(again["access_token"].as_str().expect("token")),
        current_kid
    );
}
