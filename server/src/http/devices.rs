//! The device routes: `GET /v1/devices` lists a user's devices and
//! `POST /v1/devices/{id}/revoke` cuts one off. Who may, and what revoking
//! does, is `service::devices`'.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use fieldsync_core::{DeviceId, UserId};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ErrorBody};
use crate::domain::{Caller, Error};
use crate::service::devices::DeviceInfo;
use crate::service::{self, Context};

/// The device routes.
pub fn routes() -> Router<Arc<Context>> {
    Router::new()
        .route("/v1/devices", get(list))
        .route("/v1/devices/{id}/revoke", post(revoke))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Whose devices; the caller's own when absent.
    #[param(value_type = Option<uuid::Uuid>)]
    user: Option<UserId>,
}

/// A user's devices: the caller's own, a team member's for their manager, any
/// in the organisation for an administrator.
#[utoipa::path(get, path = "/v1/devices", tag = "devices", security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "The devices", body = Vec<DeviceInfo>),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a device the caller may manage", body = ErrorBody),
    ))]
pub(crate) async fn list(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<DeviceInfo>>, ApiError> {
    Ok(Json(service::devices::list(&ctx, &caller, q.user).await?))
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
        (status = 400, description = "Not a device id", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "No such device the caller may manage", body = ErrorBody),
    ))]
pub(crate) async fn revoke(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
    let id: DeviceId = id
        .parse()
        .map_err(|_| Error::BadRequest(format!("{id:?} is not a device id")))?;
    let revoked = service::people::revoke_device(&ctx, &caller, id).await?;
    Ok(Json(Revoked { id, revoked }))
}
