//! The node's own routes: `GET /healthz` and `GET /metrics`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ErrorBody};
use super::schema::Health;
use crate::metrics::CONTENT_TYPE;
use crate::service::Context;

/// `GET /healthz`: 200 when the database answers, 503 when it does not.
#[utoipa::path(get, path = "/healthz", tag = "meta",
    responses(
        (status = 200, description = "The database answers", body = Health),
        (status = 503, description = "`database_unavailable`", body = ErrorBody),
    ))]
pub(crate) async fn healthz(State(ctx): State<Arc<Context>>) -> Result<Json<Health>, ApiError> {
    let database = crate::service::health(&ctx).await?;
    Ok(Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        database: database.into(),
    }))
}

/// `GET /metrics`. Unauthenticated: operators keep it off the public
/// listener (docs/operations.md).
pub(crate) async fn metrics(State(ctx): State<Arc<Context>>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], ctx.metrics.render()).into_response()
}
