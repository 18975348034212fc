//! The account routes: `POST /v1/users/{id}/disable` lets an administrator cut
//! a user off at once. Who may, and what disabling does, is
//! `service::people::set_disabled`'s.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use fieldsync_core::UserId;
use serde::Serialize;

use super::error::{ApiError, ErrorBody};
use crate::domain::{Caller, Error};
use crate::service::{self, Context};

/// The account routes.
pub fn routes() -> Router<Arc<Context>> {
    Router::new().route("/v1/users/{id}/disable", post(disable))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Disabled {
    /// The user.
    #[schema(value_type = uuid::Uuid)]
    id: UserId,
    /// Whether this call disabled the account (false: it already was).
    disabled: bool,
}

/// Disables a user's account: their tokens and browser sessions stop working
/// at their next request (`account_disabled`) and their live connections end
/// at once, on every node.
#[utoipa::path(post, path = "/v1/users/{id}/disable", tag = "users", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "Disabled", body = Disabled),
        (status = 400, description = "Not a user id", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 404, description = "No such user in the caller's organisation", body = ErrorBody),
        (status = 409, description = "The caller's own account", body = ErrorBody),
    ))]
pub(crate) async fn disable(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Disabled>, ApiError> {
    let id: UserId = id
        .parse()
        .map_err(|_| Error::BadRequest(format!("{id:?} is not a user id")))?;
    let disabled = service::people::set_disabled(&ctx, &caller, id, true).await?;
    Ok(Json(Disabled { id, disabled }))
}
