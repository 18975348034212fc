//! The conflicts queue as a JSON API: `GET /v1/conflicts` lists the open
//! status clashes in the caller's scope with the evidence of both sides;
//! `POST /v1/conflicts/{record_id}/resolve` `{choose, comment}` keeps one
//! side, written on the manager's behalf through the push path. The work is
//! `service::conflicts`'s.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::error::{ApiError, ApiJson, ErrorBody};
use crate::domain::Caller;
use crate::service::conflicts::{ConflictItem, Resolved};
use crate::service::{self, Context};

/// The conflicts routes.
pub fn routes() -> Router<Arc<Context>> {
    Router::new()
        .route("/v1/conflicts", get(serve_list))
        .route("/v1/conflicts/{record_id}/resolve", post(serve_resolve))
}

/// `GET /v1/conflicts`: open conflicts in the caller's scope, newest first.
#[utoipa::path(get, path = "/v1/conflicts", tag = "figures", security(("bearer" = [])),
    responses(
        (status = 200, description = "Open status clashes with both sides and the evidence", body = Vec<ConflictItem>),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
    ))]
pub(crate) async fn serve_list(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
) -> Result<Json<Vec<ConflictItem>>, ApiError> {
    Ok(Json(service::conflicts::list(&ctx, &caller).await?))
}

/// `POST /v1/conflicts/{record_id}/resolve` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ResolveBody {
    /// The status to keep: one of the clashing values.
    pub choose: String,
    /// Why (kept in the status history; a default is written when absent).
    #[serde(default)]
    pub comment: Option<String>,
}

/// `POST /v1/conflicts/{record_id}/resolve`: keeps one side, written on the
/// manager's behalf through the push path.
#[utoipa::path(post, path = "/v1/conflicts/{record_id}/resolve", tag = "figures", security(("bearer" = [])),
    params(("record_id" = uuid::Uuid, Path, description = "The record")),
    request_body = ResolveBody,
    responses(
        (status = 200, description = "Settled; devices get it with their next sync", body = Resolved),
        (status = 400, description = "Not a record id, or not one of the clashing values", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
        (status = 404, description = "No open conflict on such a record in the caller's scope", body = ErrorBody),
    ))]
pub(crate) async fn serve_resolve(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(record_id): Path<String>,
    ApiJson(body): ApiJson<ResolveBody>,
) -> Result<Json<Resolved>, ApiError> {
    Ok(Json(
        service::conflicts::resolve(
            &ctx,
            &caller,
            &record_id,
            &body.choose,
            body.comment.as_deref(),
        )
        .await?,
    ))
}
