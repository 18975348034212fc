//! Devices as people manage them: `GET /v1/devices` lists a user's devices
//! (app version, platform, first and last contact, revoked or not), and
//! `POST /v1/devices/{id}/revoke` cuts one off: its refresh tokens die at once,
//! and its next request (any access token it still holds included) answers
//! `device_revoked`, which makes the app wipe its local data.
//!
//! Who may: everyone their own devices; a manager the devices of their team's
//! users; an administrator every device of the organisation. A device the
//! caller may not manage answers like one that does not exist.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use fieldsync_core::model::Role;
use fieldsync_core::{DeviceId, UserId};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::accounts;
use crate::auth::AuthUser;
use crate::db::{Database, DbError, parse_uuid};
use crate::error::ApiError;
use crate::on_pool;

/// The device routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/devices", get(list))
        .route("/v1/devices/{id}/revoke", post(revoke))
}

/// A device as listed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeviceInfo {
    /// Device id.
    #[schema(value_type = uuid::Uuid)]
    pub id: DeviceId,
    /// Its user.
    #[schema(value_type = uuid::Uuid)]
    pub user_id: UserId,
    /// The user's name.
    pub user_name: String,
    /// `android`, `ios`, ...
    pub platform: String,
    /// App version at its last login.
    pub app_version: String,
    /// First login (Unix seconds).
    pub created_at: i64,
    /// Last request, to the minute (Unix seconds).
    pub last_seen_at: i64,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Whose devices; the caller's own when absent.
    #[param(value_type = Option<uuid::Uuid>)]
    user: Option<UserId>,
}

type DeviceListRow = (
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    Option<String>,
);

/// Devices matching the filter, with the user's team for permission checks.
async fn devices(
    db: &Database,
    org: fieldsync_core::OrgId,
    user: Option<UserId>,
    device: Option<DeviceId>,
) -> Result<Vec<(DeviceInfo, Option<String>)>, DbError> {
    let rows: Vec<DeviceListRow> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT CAST(d.id AS TEXT), CAST(d.user_id AS TEXT), u.display_name, d.platform, \
             d.app_version, d.created_at, d.last_seen_at, d.revoked_at, CAST(u.team_id AS TEXT) \
             FROM devices d JOIN users u ON u.id = d.user_id \
             WHERE d.org_id = $1 AND ($2 IS NULL OR d.user_id = $2) \
             AND ($3 IS NULL OR d.id = $3) \
             ORDER BY d.last_seen_at DESC",
        )
        .bind(uuid(*org.as_uuid()))
        .bind(user.map(|u| uuid(*u.as_uuid())))
        .bind(device.map(|d| uuid(*d.as_uuid())))
        .fetch_all(pool)
        .await?
    });
    rows.into_iter()
        .map(|r| {
            Ok((
                DeviceInfo {
                    id: DeviceId::from_uuid(parse_uuid(&r.0)?),
                    user_id: UserId::from_uuid(parse_uuid(&r.1)?),
                    user_name: r.2,
                    platform: r.3,
                    app_version: r.4,
                    created_at: r.5,
                    last_seen_at: r.6,
                    revoked_at: r.7,
                },
                r.8,
            ))
        })
        .collect()
}

/// Whether `caller` may see and revoke the devices of a user in `team`.
fn may_manage(caller: &AuthUser, owner: UserId, owner_team: Option<&str>) -> bool {
    match caller.role {
        Role::Admin | Role::Server => true,
        Role::Manager => {
            owner == caller.id
                || (caller.team.is_some()
                    && owner_team == caller.team.map(|t| t.to_string()).as_deref())
        }
        Role::Rep | Role::Technician => owner == caller.id,
    }
}

/// A user's devices: the caller's own, a team member's for their manager, any
/// in the organisation for an administrator.
#[utoipa::path(get, path = "/v1/devices", tag = "devices", security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "The devices", body = Vec<DeviceInfo>),
        (status = 401, description = "Missing, invalid or expired token", body = crate::api_doc::ErrorBody),
        (status = 403, description = "Not a device the caller may manage", body = crate::api_doc::ErrorBody),
    ))]
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    caller: AuthUser,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<DeviceInfo>>, ApiError> {
    let user = q.user.unwrap_or(caller.id);
    let found = devices(&state.db, caller.org, Some(user), None)
        .await
        .map_err(ApiError::Unavailable)?;
    if user != caller.id {
        let owner = accounts::user_by_id(&state.db, user)
            .await
            .map_err(ApiError::Unavailable)?;
        let allowed = owner.is_some_and(|o| {
            o.org == caller.org
                && may_manage(&caller, o.id, o.team.map(|t| t.to_string()).as_deref())
        });
        if !allowed {
            return Err(ApiError::Forbidden(
                "you may list your own devices, and a manager their team's".into(),
            ));
        }
    }
    Ok(Json(found.into_iter().map(|(d, _)| d).collect()))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Revoked {
    /// The device.
    #[schema(value_type = uuid::Uuid)]
    id: DeviceId,
    /// Whether this call revoked it (false: it already was).
    revoked: bool,
}

/// Revokes a device: its tokens die at once and its next request answers
/// `device_revoked`, which makes the app wipe its data.
#[utoipa::path(post, path = "/v1/devices/{id}/revoke", tag = "devices", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Device id")),
    responses(
        (status = 200, description = "Revoked", body = Revoked),
        (status = 400, description = "Not a device id", body = crate::api_doc::ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = crate::api_doc::ErrorBody),
        (status = 404, description = "No such device the caller may manage", body = crate::api_doc::ErrorBody),
    ))]
pub(crate) async fn revoke(
    State(state): State<Arc<AppState>>,
    caller: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
    let id: DeviceId = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{id:?} is not a device id")))?;
    let found = devices(&state.db, caller.org, None, Some(id))
        .await
        .map_err(ApiError::Unavailable)?;
    let Some((device, team)) = found.into_iter().next() else {
        return Err(ApiError::NotFound);
    };
    if !may_manage(&caller, device.user_id, team.as_deref()) {
        return Err(ApiError::NotFound);
    }
    let revoked = accounts::revoke_device(&state.db, id)
        .await
        .map_err(ApiError::Unavailable)?;
    tracing::info!(device = %id, by = %caller.id, revoked, "device revoked");
    // Its live connection, on whichever node, ends now rather than at the
    // end of its token's lifetime.
    if let Err(e) = crate::live::announce_revocation(&state, caller.org, id).await {
        tracing::warn!(error = %e, device = %id, "could not announce the revocation to live connections");
    }
    Ok(Json(Revoked { id, revoked }))
}
