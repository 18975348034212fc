//! Authentication over HTTP: login, refresh, `GET /v1/me`, and the [`AuthUser`]
//! extractor every protected handler takes.
//!
//! Access tokens are HS256 JWTs, short-lived (15 minutes by default), carrying
//! `sub` (user), `org`, `role`, `dev` (device), `iss`, `aud`, `iat`, `exp`, and
//! the key id in the header. Validation pins the algorithm to HS256 (so `none`
//! and every other algorithm are refused), requires `exp`, `iss`, `aud` and
//! `sub`, and checks issuer, audience and key id. A valid signature is not
//! enough: the extractor also loads the device and the user, so a revoked
//! device (`device_revoked`) or a disabled user is refused at once rather than
//! when the token expires, and team, territory and role come from the database,
//! not from a token minted before a manager changed them.
//!
//! Refresh tokens are opaque random strings, bound to one device, stored hashed
//! and rotated on every use (see [`crate::accounts::rotate_refresh_token`]).

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::{Json, Router, routing::get, routing::post};
use fieldsync_core::model::Role;
use fieldsync_core::{DeviceId, OrgId, TeamId, TerritoryId, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::accounts::{self, AccountError, DeviceRow, Rotation, UserRow};
use crate::db::{Database, DbError, now_secs};
use crate::error::{ApiError, ApiJson};
use crate::settings::{Secret, Settings};
use crate::{AppState, on_pool};

/// Seconds of clock skew tolerated on `exp`. Small, because access tokens are
/// short-lived and every node of one deployment should share a clock.
const LEEWAY_SECS: u64 = 5;

/// Key id of the first key generated and kept in the database.
const FIRST_STORED_KID: &str = "db-1";

/// How often a node reloads the stored keys on its own, so that a key made by
/// `fieldsync keys rotate` starts signing everywhere within this time.
pub const KEY_RELOAD_SECS: u64 = 60;

/// Shortest time between two reloads forced by a token with an unknown key id
/// (a token signed by another node with a key this node has not loaded yet).
const FORCED_RELOAD_SECS: u64 = 2;

/// Where the keys come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeySource {
    /// `jwt_secret` (signs and verifies) and `jwt_previous_secrets` (verify only).
    Configured,
    /// The `signing_keys` table: the newest key not retired signs, every key not
    /// retired verifies.
    Database,
}

/// The keys in force: one signs, all verify.
struct Keyring {
    signing_kid: String,
    signing: EncodingKey,
    verifying: Vec<(String, DecodingKey)>,
}

/// The signing keys and the rules tokens are made and checked with.
///
/// Keys rotate without logging anyone out: a new key signs new tokens while the
/// older ones still verify the tokens they signed, until an operator retires
/// them (after at least one access-token lifetime). Every token names its key in
/// the `kid` header.
#[derive(Clone)]
pub struct AuthKeys {
    source: KeySource,
    ring: Arc<std::sync::RwLock<Keyring>>,
    last_forced_reload: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    validation: Validation,
    issuer: String,
    audience: String,
    access_ttl_secs: u64,
    refresh_ttl_secs: u64,
}

impl std::fmt::Debug for AuthKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthKeys")
            .field("source", &self.source)
            .field("signing_kid", &self.signing_kid())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("access_ttl_secs", &self.access_ttl_secs)
            .finish_non_exhaustive()
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: UserId,
    /// The user's organisation.
    pub org: OrgId,
    /// The user's role when the token was made.
    pub role: Role,
    /// The device the token was issued to.
    pub dev: DeviceId,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
}

/// Why a token was not accepted by [`AuthKeys::verify`].
#[derive(Debug, PartialEq, Eq)]
pub enum VerifyError {
    /// The `kid` names no key this node holds (yet).
    UnknownKey,
    /// Anything else: bad signature, algorithm, claims, format.
    Invalid,
}

/// The key id of a configured secret: derived from the secret, so replacing it
/// changes the id and tokens of the old secret are told apart.
fn configured_kid(secret: &Secret) -> String {
    let digest = Sha256::digest(secret.expose().as_bytes());
    format!("cfg-{}", hex::encode(&digest[..6]))
}

impl AuthKeys {
    /// Keys from the settings (`jwt_secret` and `jwt_previous_secrets`), or
    /// from the `signing_keys` table (the first is generated on first start;
    /// the first node to insert it wins a race).
    pub async fn load(settings: &Settings, db: &Database) -> Result<AuthKeys, DbError> {
        let (source, ring) = match &settings.jwt_secret {
            Some(secret) => {
                let mut verifying = vec![(
                    configured_kid(secret),
                    DecodingKey::from_secret(secret.expose().as_bytes()),
                )];
                for old in &settings.jwt_previous_secrets {
                    verifying.push((
                        configured_kid(old),
                        DecodingKey::from_secret(old.expose().as_bytes()),
                    ));
                }
                let ring = Keyring {
                    signing_kid: configured_kid(secret),
                    signing: EncodingKey::from_secret(secret.expose().as_bytes()),
                    verifying,
                };
                (KeySource::Configured, ring)
            }
            None => {
                ensure_first_key(db).await?;
                (KeySource::Database, stored_ring(db).await?)
            }
        };
        Ok(AuthKeys::with_ring(source, ring, settings))
    }

    /// Keys from one raw secret (tests and tools).
    pub fn new(kid: String, secret: &[u8], settings: &Settings) -> AuthKeys {
        let ring = Keyring {
            signing_kid: kid.clone(),
            signing: EncodingKey::from_secret(secret),
            verifying: vec![(kid, DecodingKey::from_secret(secret))],
        };
        AuthKeys::with_ring(KeySource::Configured, ring, settings)
    }

    fn with_ring(source: KeySource, ring: Keyring, settings: &Settings) -> AuthKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[settings.jwt_issuer.as_str()]);
        validation.set_audience(&[settings.jwt_audience.as_str()]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        // A token whose `nbf` lies in the future is refused too.
        validation.validate_nbf = true;
        AuthKeys {
            source,
            ring: Arc::new(std::sync::RwLock::new(ring)),
            last_forced_reload: Arc::new(std::sync::Mutex::new(None)),
            validation,
            issuer: settings.jwt_issuer.clone(),
            audience: settings.jwt_audience.clone(),
            access_ttl_secs: settings.access_token_ttl_secs,
            refresh_ttl_secs: settings.refresh_token_ttl_secs,
        }
    }

    fn read_ring(&self) -> std::sync::RwLockReadGuard<'_, Keyring> {
        // A poisoned lock only means a panic elsewhere while swapping the ring;
        // the ring itself is always whole (it is replaced in one assignment).
        self.ring
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lifetime of an access token, in seconds.
    pub fn access_ttl_secs(&self) -> u64 {
        self.access_ttl_secs
    }

    /// The key id new tokens are signed with.
    pub fn signing_kid(&self) -> String {
        self.read_ring().signing_kid.clone()
    }

    /// Re-reads the stored keys (no-op for configured secrets): picks up a key
    /// made by `fieldsync keys rotate` on any node, and drops retired ones.
    pub async fn reload(&self, db: &Database) -> Result<(), DbError> {
        if self.source != KeySource::Database {
            return Ok(());
        }
        let ring = stored_ring(db).await?;
        let mut guard = self
            .ring
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.signing_kid != ring.signing_kid {
            tracing::info!(kid = %ring.signing_kid, "signing with a new key");
        }
        *guard = ring;
        Ok(())
    }

    /// A signed access token for `user` on `device`.
    pub fn access_token(&self, user: &UserRow, device: DeviceId) -> Result<String, ApiError> {
        let now = now_secs();
        let claims = Claims {
            sub: user.id,
            org: user.org,
            role: user.role,
            dev: device,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            exp: now.saturating_add(i64::try_from(self.access_ttl_secs).unwrap_or(i64::MAX)),
        };
        let ring = self.read_ring();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(ring.signing_kid.clone());
        jsonwebtoken::encode(&header, &claims, &ring.signing)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("signing a token failed: {e}")))
    }

    /// The claims of a valid token.
    pub fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Invalid)?;
        let kid = header.kid.ok_or(VerifyError::Invalid)?;
        let ring = self.read_ring();
        let key = ring
            .verifying
            .iter()
            .find(|(k, _)| *k == kid)
            .map(|(_, key)| key)
            .ok_or(VerifyError::UnknownKey)?;
        jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| VerifyError::Invalid)
    }

    /// [`verify`](Self::verify), reloading the stored keys once when the token
    /// names a key this node does not hold (another node may have rotated).
    /// Forced reloads are spaced out so forged key ids cannot hammer the database.
    pub async fn authenticate(&self, token: &str, db: &Database) -> Result<Claims, ApiError> {
        match self.verify(token) {
            Ok(claims) => Ok(claims),
            Err(VerifyError::Invalid) => Err(ApiError::InvalidToken),
            Err(VerifyError::UnknownKey) => {
                if self.source != KeySource::Database || !self.may_force_reload() {
                    return Err(ApiError::InvalidToken);
                }
                self.reload(db).await.map_err(ApiError::Unavailable)?;
                self.verify(token).map_err(|_| ApiError::InvalidToken)
            }
        }
    }

    fn may_force_reload(&self) -> bool {
        let mut last = self
            .last_forced_reload
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        match *last {
            Some(at) if now.duration_since(at).as_secs() < FORCED_RELOAD_SECS => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }
}

/// Generates the first stored key if the table is empty. Insert-then-read, so
/// two nodes starting together on one database end up with the same key.
async fn ensure_first_key(db: &Database) -> Result<(), DbError> {
    let mut fresh = [0u8; 32];
    rand::fill(&mut fresh[..]);
    on_pool!(db, |pool, _uuid| {
        sqlx::query(
            "INSERT INTO signing_keys (kid, secret, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (kid) DO NOTHING",
        )
        .bind(FIRST_STORED_KID)
        .bind(&fresh[..])
        .bind(now_secs())
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// A stored signing key as `fieldsync keys list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Key id (the token header's `kid`).
    pub kid: String,
    /// When it was made (Unix seconds).
    pub created_at: i64,
    /// When it was retired, if it was.
    pub retired_at: Option<i64>,
}

/// Every stored key, newest first.
pub async fn stored_keys(db: &Database) -> Result<Vec<StoredKey>, DbError> {
    let rows: Vec<(String, i64, Option<i64>)> = on_pool!(db, |pool, _uuid| {
        sqlx::query_as(
            "SELECT kid, created_at, retired_at FROM signing_keys \
             ORDER BY created_at DESC, kid DESC",
        )
        .fetch_all(pool)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(|(kid, created_at, retired_at)| StoredKey {
            kid,
            created_at,
            retired_at,
        })
        .collect())
}

/// Makes a new stored key, which signs from now on (on other nodes within
/// [`KEY_RELOAD_SECS`]). Older keys keep verifying until retired.
pub async fn rotate_key(db: &Database) -> Result<String, DbError> {
    let mut secret = [0u8; 32];
    rand::fill(&mut secret[..]);
    let mut id = [0u8; 6];
    rand::fill(&mut id[..]);
    let kid = format!("db-{}", hex::encode(id));
    // One second later than the newest key at least, so "newest" is never a tie.
    let newest = stored_keys(db).await?.first().map_or(0, |k| k.created_at);
    let created_at = now_secs().max(newest.saturating_add(1));
    on_pool!(db, |pool, _uuid| {
        sqlx::query("INSERT INTO signing_keys (kid, secret, created_at) VALUES ($1, $2, $3)")
            .bind(&kid)
            .bind(&secret[..])
            .bind(created_at)
            .execute(pool)
            .await?;
    });
    Ok(kid)
}

/// Why a key could not be retired.
#[derive(Debug, thiserror::Error)]
pub enum RetireError {
    /// No such key.
    #[error("there is no signing key {0:?}; `fieldsync keys list` shows them")]
    Unknown(String),
    /// Retiring it would leave nothing to sign with.
    #[error("{0:?} is the only key in force; run `fieldsync keys rotate` first")]
    LastKey(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Retires a stored key: tokens it signed are refused from the next reload on
/// (at once on a node that restarts, within [`KEY_RELOAD_SECS`] elsewhere).
pub async fn retire_key(db: &Database, kid: &str) -> Result<(), RetireError> {
    let keys = stored_keys(db).await?;
    let Some(key) = keys.iter().find(|k| k.kid == kid) else {
        return Err(RetireError::Unknown(kid.to_owned()));
    };
    if key.retired_at.is_some() {
        return Ok(());
    }
    if keys.iter().filter(|k| k.retired_at.is_none()).count() < 2 {
        return Err(RetireError::LastKey(kid.to_owned()));
    }
    let retire = async {
        on_pool!(db, |pool, _uuid| {
            sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE kid = $2")
                .bind(now_secs())
                .bind(kid)
                .execute(pool)
                .await?;
        });
        Ok::<(), DbError>(())
    };
    retire.await?;
    Ok(())
}

/// The stored keys in force: the newest signs, all verify.
async fn stored_ring(db: &Database) -> Result<Keyring, DbError> {
    let rows: Vec<(String, Vec<u8>)> = on_pool!(db, |pool, _uuid| {
        sqlx::query_as(
            "SELECT kid, secret FROM signing_keys WHERE retired_at IS NULL \
             ORDER BY created_at DESC, kid DESC",
        )
        .fetch_all(pool)
        .await?
    });
    let Some((signing_kid, signing_secret)) = rows.first().cloned() else {
        return Err(DbError::Corrupt(
            "no signing key is in force; run `fieldsync keys rotate`".to_owned(),
        ));
    };
    Ok(Keyring {
        signing_kid,
        signing: EncodingKey::from_secret(&signing_secret),
        verifying: rows
            .iter()
            .map(|(kid, secret)| (kid.clone(), DecodingKey::from_secret(secret)))
            .collect(),
    })
}

/// The authenticated caller of a request: a valid access token whose device is
/// not revoked and whose user is not disabled.
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// User id.
    pub id: UserId,
    /// Organisation.
    pub org: OrgId,
    /// Current role.
    pub role: Role,
    /// Current team.
    pub team: Option<TeamId>,
    /// Current territory.
    pub territory: Option<TerritoryId>,
    /// Name to show.
    pub display_name: String,
    /// The device the request comes from.
    pub device: DeviceId,
    /// The Automerge actor id (hex) the server assigned to that device.
    pub actor_id: String,
}

impl FromRequestParts<Arc<AppState>> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or(ApiError::MissingToken)?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or(ApiError::InvalidToken)?;
        let claims = state.keys.authenticate(token, &state.db).await?;
        // Counted once the token is genuine, before any database work.
        state.limits.request(&claims.dev.to_string())?;
        let device = accounts::device_by_id(&state.db, claims.dev)
            .await
            .map_err(ApiError::Unavailable)?
            .ok_or(ApiError::InvalidToken)?;
        let user = live_session(&state.db, claims.sub, &device).await?;
        if user.org != claims.org {
            return Err(ApiError::InvalidToken);
        }
        if let Err(e) = accounts::touch_device(&state.db, device.id).await {
            // Not worth failing the request over a last-seen stamp.
            tracing::warn!(error = %e, "could not update the device's last-seen time");
        }
        // Ids only: the request's log lines say who, never their name or email.
        tracing::Span::current()
            .record("device", tracing::field::display(device.id))
            .record("user", tracing::field::display(user.id));
        Ok(AuthUser {
            id: user.id,
            org: user.org,
            role: user.role,
            team: user.team,
            territory: user.territory,
            display_name: user.display_name,
            device: device.id,
            actor_id: device.actor_id,
        })
    }
}

/// The user of `device`, if the device is theirs, not revoked, and they are not disabled.
pub(crate) async fn live_session(
    db: &Database,
    user: UserId,
    device: &DeviceRow,
) -> Result<UserRow, ApiError> {
    if device.user != user {
        return Err(ApiError::InvalidToken);
    }
    if device.revoked_at.is_some() {
        return Err(ApiError::DeviceRevoked);
    }
    let user = accounts::user_by_id(db, user)
        .await
        .map_err(ApiError::Unavailable)?
        .ok_or(ApiError::InvalidToken)?;
    if user.disabled {
        return Err(ApiError::AccountDisabled);
    }
    Ok(user)
}

/// `POST /v1/auth/login` body. Field names match the client's `LoginRequest`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    /// Organisation slug.
    pub org: String,
    /// Email.
    pub email: String,
    /// Password.
    pub password: String,
    /// The device.
    pub device: LoginDevice,
}

/// The device part of a login.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LoginDevice {
    /// Id made on the device.
    #[schema(value_type = uuid::Uuid)]
    pub id: DeviceId,
    /// Platform name.
    pub platform: String,
    /// App version.
    pub app_version: String,
}

/// `POST /v1/auth/refresh` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RefreshRequest {
    /// The refresh token from the last login or refresh.
    pub refresh_token: String,
}

/// What login and refresh answer. Field names match the client's `LoginResponse`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoginResponse {
    /// Short-lived bearer token.
    pub access_token: String,
    /// Single-use token for the next pair.
    pub refresh_token: String,
    /// Seconds until `access_token` expires.
    pub expires_in: u64,
    /// The user.
    pub user: SessionUser,
    /// The device.
    pub device: SessionDevice,
}

/// The user as the client sees it (`GET /v1/me` answers this too).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionUser {
    /// Id.
    #[schema(value_type = uuid::Uuid)]
    pub id: UserId,
    /// Organisation.
    #[schema(value_type = uuid::Uuid)]
    pub org: OrgId,
    /// Role: `rep`, `technician`, `manager` or `admin`.
    #[schema(value_type = String, example = "manager")]
    pub role: Role,
    /// Team.
    #[schema(value_type = Option<uuid::Uuid>)]
    pub team: Option<TeamId>,
    /// Territory.
    #[schema(value_type = Option<uuid::Uuid>)]
    pub territory: Option<TerritoryId>,
    /// Name to show.
    pub display_name: String,
}

/// The device's server-side identity.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionDevice {
    /// Id.
    #[schema(value_type = uuid::Uuid)]
    pub id: DeviceId,
    /// Automerge actor id (hex) for every change made on this device.
    pub actor_id: String,
}

/// The `/v1/auth` and `/v1/me` routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/auth/login", post(login))
        .route("/v1/auth/refresh", post(refresh))
        .route("/v1/me", get(me))
}

fn check_len(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > max {
        return Err(ApiError::BadRequest(format!(
            "{field} must be 1 to {max} bytes"
        )));
    }
    Ok(())
}

/// Signs a user in on a device: a short-lived access token and a single-use
/// refresh token.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = LoginResponse),
        (status = 400, description = "Malformed body", body = crate::api_doc::ErrorBody),
        (status = 401, description = "`invalid_credentials`", body = crate::api_doc::ErrorBody),
        (status = 403, description = "`account_disabled`", body = crate::api_doc::ErrorBody),
        (status = 409, description = "`device_in_use`: the device id belongs to another user", body = crate::api_doc::ErrorBody),
        (status = 429, description = "`rate_limited`", body = crate::api_doc::ErrorBody),
    ))]
pub(crate) async fn login(
    State(state): State<Arc<AppState>>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    check_len("device.platform", &req.device.platform, 64)?;
    check_len("device.app_version", &req.device.app_version, 64)?;
    if req.password.len() > accounts::MAX_PASSWORD_BYTES || req.org.len() > 63 {
        return Err(ApiError::InvalidCredentials);
    }
    state.limits.login(&req.org, &req.email)?;
    let user = accounts::find_login(&state.db, &req.org, &req.email)
        .await
        .map_err(ApiError::Unavailable)?;
    // Runs even without a user so the answer's timing reveals nothing.
    if !accounts::verify_password(req.password, user.as_ref()).await {
        return Err(ApiError::InvalidCredentials);
    }
    let user = user.ok_or(ApiError::InvalidCredentials)?;
    if user.disabled {
        return Err(ApiError::AccountDisabled);
    }
    let info = accounts::DeviceInfo {
        id: req.device.id,
        platform: req.device.platform,
        app_version: req.device.app_version,
    };
    let device = accounts::register_device(&state.db, &user, &info)
        .await
        .map_err(account_error)?;
    let refresh_token = accounts::new_refresh_token();
    accounts::store_refresh_token(
        &state.db,
        &refresh_token,
        user.id,
        device.id,
        state.keys.refresh_ttl_secs,
    )
    .await
    .map_err(ApiError::Unavailable)?;
    tracing::info!(user = %user.id, device = %device.id, "login");
    session(&state.keys, &user, &device, refresh_token).map(Json)
}

/// Trades a refresh token for a new pair; a token presented twice revokes its
/// whole family.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = LoginResponse),
        (status = 401, description = "`invalid_refresh_token` or `device_revoked`", body = crate::api_doc::ErrorBody),
        (status = 403, description = "`account_disabled`", body = crate::api_doc::ErrorBody),
    ))]
pub(crate) async fn refresh(
    State(state): State<Arc<AppState>>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    if req.refresh_token.len() > 256 {
        return Err(ApiError::InvalidRefreshToken);
    }
    let new_token = accounts::new_refresh_token();
    let rotation = accounts::rotate_refresh_token(
        &state.db,
        &req.refresh_token,
        &new_token,
        state.keys.refresh_ttl_secs,
    )
    .await
    .map_err(ApiError::Unavailable)?;
    let (user, device) = match rotation {
        Rotation::Rotated { user, device } => (user, device),
        Rotation::Reused => {
            tracing::warn!("a rotated refresh token was presented again; its family is revoked");
            return Err(ApiError::InvalidRefreshToken);
        }
        Rotation::Invalid => return Err(ApiError::InvalidRefreshToken),
    };
    let device = accounts::device_by_id(&state.db, device)
        .await
        .map_err(ApiError::Unavailable)?
        .ok_or(ApiError::InvalidRefreshToken)?;
    let user = live_session(&state.db, user, &device).await?;
    session(&state.keys, &user, &device, new_token).map(Json)
}

/// The signed-in user.
#[utoipa::path(get, path = "/v1/me", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "The user", body = SessionUser),
        (status = 401, description = "Missing, invalid or expired token", body = crate::api_doc::ErrorBody),
    ))]
pub(crate) async fn me(user: AuthUser) -> Json<SessionUser> {
    Json(SessionUser {
        id: user.id,
        org: user.org,
        role: user.role,
        team: user.team,
        territory: user.territory,
        display_name: user.display_name,
    })
}

fn session(
    keys: &AuthKeys,
    user: &UserRow,
    device: &DeviceRow,
    refresh_token: String,
) -> Result<LoginResponse, ApiError> {
    Ok(LoginResponse {
        access_token: keys.access_token(user, device.id)?,
        refresh_token,
        expires_in: keys.access_ttl_secs,
        user: SessionUser {
            id: user.id,
            org: user.org,
            role: user.role,
            team: user.team,
            territory: user.territory,
            display_name: user.display_name.clone(),
        },
        device: SessionDevice {
            id: device.id,
            actor_id: device.actor_id.clone(),
        },
    })
}

fn account_error(e: AccountError) -> ApiError {
    match e {
        AccountError::DeviceRevoked => ApiError::DeviceRevoked,
        AccountError::DeviceOfAnotherUser => ApiError::DeviceInUse,
        AccountError::Db(e) => ApiError::Unavailable(e),
        other => ApiError::Internal(anyhow::Error::new(other)),
    }
}
