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
use crate::settings::Settings;
use crate::{AppState, on_pool};

/// Seconds of clock skew tolerated on `exp`. Small, because access tokens are
/// short-lived and every node of one deployment should share a clock.
const LEEWAY_SECS: u64 = 5;

/// Key id of the key generated and kept in the database.
const STORED_KID: &str = "db-1";

/// The signing key and the rules tokens are made and checked with.
#[derive(Clone)]
pub struct AuthKeys {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    access_ttl_secs: u64,
    refresh_ttl_secs: u64,
}

impl std::fmt::Debug for AuthKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthKeys")
            .field("kid", &self.kid)
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

impl AuthKeys {
    /// Keys from the configured secret, or from the one kept in the database
    /// (generated on first start; the first node to insert it wins a race).
    pub async fn load(settings: &Settings, db: &Database) -> Result<AuthKeys, DbError> {
        let (kid, secret) = match &settings.jwt_secret {
            Some(secret) => {
                // A key id derived from the key: rotating the key changes it, so a
                // token signed with the old key is refused as "unknown key".
                let digest = Sha256::digest(secret.expose().as_bytes());
                (
                    format!("cfg-{}", hex::encode(&digest[..6])),
                    secret.expose().as_bytes().to_vec(),
                )
            }
            None => (STORED_KID.to_owned(), stored_secret(db).await?),
        };
        Ok(AuthKeys::new(kid, &secret, settings))
    }

    /// Keys from raw parts (used by `load` and tests).
    pub fn new(kid: String, secret: &[u8], settings: &Settings) -> AuthKeys {
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
            kid,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: settings.jwt_issuer.clone(),
            audience: settings.jwt_audience.clone(),
            access_ttl_secs: settings.access_token_ttl_secs,
            refresh_ttl_secs: settings.refresh_token_ttl_secs,
        }
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
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("signing a token failed: {e}")))
    }

    /// The claims of a valid token; any defect is `invalid_token`.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| ApiError::InvalidToken)?;
        if header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(ApiError::InvalidToken);
        }
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| ApiError::InvalidToken)
    }
}

/// The stored signing key, generated if missing. Insert-then-read, so two nodes
/// starting together on one database end up with the same key.
async fn stored_secret(db: &Database) -> Result<Vec<u8>, DbError> {
    let mut fresh = [0u8; 32];
    rand::fill(&mut fresh[..]);
    let secret: Vec<u8> = on_pool!(db, |pool, _uuid| {
        sqlx::query(
            "INSERT INTO signing_keys (kid, secret, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (kid) DO NOTHING",
        )
        .bind(STORED_KID)
        .bind(&fresh[..])
        .bind(now_secs())
        .execute(pool)
        .await?;
        sqlx::query_scalar("SELECT secret FROM signing_keys WHERE kid = $1")
            .bind(STORED_KID)
            .fetch_one(pool)
            .await?
    });
    Ok(secret)
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
        let claims = state.keys.verify(token)?;
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
async fn live_session(
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
#[derive(Debug, Deserialize)]
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
#[derive(Debug, Deserialize)]
pub struct LoginDevice {
    /// Id made on the device.
    pub id: DeviceId,
    /// Platform name.
    pub platform: String,
    /// App version.
    pub app_version: String,
}

/// `POST /v1/auth/refresh` body.
#[derive(Debug, Deserialize)]
pub struct RefreshRequest {
    /// The refresh token from the last login or refresh.
    pub refresh_token: String,
}

/// What login and refresh answer. Field names match the client's `LoginResponse`.
#[derive(Debug, Serialize)]
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
#[derive(Debug, Serialize)]
pub struct SessionUser {
    /// Id.
    pub id: UserId,
    /// Organisation.
    pub org: OrgId,
    /// Role.
    pub role: Role,
    /// Team.
    pub team: Option<TeamId>,
    /// Territory.
    pub territory: Option<TerritoryId>,
    /// Name to show.
    pub display_name: String,
}

/// The device's server-side identity.
#[derive(Debug, Serialize)]
pub struct SessionDevice {
    /// Id.
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

async fn login(
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

async fn refresh(
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

async fn me(user: AuthUser) -> Json<SessionUser> {
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
