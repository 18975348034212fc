//! Signing devices in over HTTP: `POST /v1/auth/login`, `POST /v1/auth/refresh`
//! and `GET /v1/me`. The bodies' field names match the client's
//! `LoginRequest` and `LoginResponse`; the work (credentials, tokens, device
//! registration) is `service::auth`'s, and the token of every other route is
//! checked by the [`Caller`] extractor (`http::extract`).

use std::sync::Arc;

use axum::extract::State;
use axum::{Json, Router, routing::get, routing::post};
use fieldsync_core::model::Role;
use fieldsync_core::{DeviceId, OrgId, TeamId, TerritoryId, UserId};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiJson, ErrorBody};
use super::extract::ClientAddr;
use crate::domain::Caller;
use crate::service::Context;
use crate::service::accounts::DeviceInfo;
use crate::service::auth::{self, Login, Session};

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

impl From<Session> for LoginResponse {
    fn from(s: Session) -> Self {
        LoginResponse {
            access_token: s.access_token,
            refresh_token: s.refresh_token,
            expires_in: s.expires_in,
            user: SessionUser {
                id: s.user.id,
                org: s.user.org,
                role: s.user.role,
                team: s.user.team,
                territory: s.user.territory,
                display_name: s.user.display_name,
            },
            device: SessionDevice {
                id: s.device.id,
                actor_id: s.device.actor_id,
            },
        }
    }
}

/// The `/v1/auth` and `/v1/me` routes.
pub fn routes() -> Router<Arc<Context>> {
    Router::new()
        .route("/v1/auth/login", post(login))
        .route("/v1/auth/refresh", post(refresh))
        .route("/v1/me", get(me))
}

/// Signs a user in on a device: a short-lived access token and a single-use
/// refresh token.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = LoginResponse),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "`invalid_credentials`", body = ErrorBody),
        (status = 403, description = "`account_disabled`", body = ErrorBody),
        (status = 409, description = "`device_in_use`: the device id belongs to another user", body = ErrorBody),
        (status = 429, description = "`rate_limited` (per account, or per client address), or \
            `too_many_devices`: the user registered the most new devices a day allows (20)", body = ErrorBody),
    ))]
pub(crate) async fn login(
    State(ctx): State<Arc<Context>>,
    ClientAddr(from): ClientAddr,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let login = Login {
        org: req.org,
        email: req.email,
        password: req.password,
        device: DeviceInfo {
            id: req.device.id,
            platform: req.device.platform,
            app_version: req.device.app_version,
        },
        from,
    };
    Ok(Json(auth::login(&ctx, login).await?.into()))
}

/// Trades a refresh token for a new pair; a token presented twice revokes its
/// device (its access tokens and live connections end too).
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = LoginResponse),
        (status = 401, description = "`invalid_refresh_token` or `device_revoked`", body = ErrorBody),
        (status = 403, description = "`account_disabled`", body = ErrorBody),
    ))]
pub(crate) async fn refresh(
    State(ctx): State<Arc<Context>>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    Ok(Json(auth::refresh(&ctx, &req.refresh_token).await?.into()))
}

/// The signed-in user.
#[utoipa::path(get, path = "/v1/me", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "The user", body = SessionUser),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
    ))]
pub(crate) async fn me(caller: Caller) -> Json<SessionUser> {
    Json(SessionUser {
        id: caller.user(),
        org: caller.org,
        role: caller.role(),
        team: caller.team,
        territory: caller.territory,
        display_name: caller.display_name,
    })
}
