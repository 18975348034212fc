//! CSV export of visits, orders and service jobs for a range of UTC days:
//! `GET /v1/export/{visits,orders,jobs}.csv?from=YYYY-MM-DD&to=YYYY-MM-DD[&team=<id>]`.
//! The file is `service::export`'s; this module answers it as a download.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::error::{ApiError, ErrorBody};
use crate::domain::Caller;
use crate::service::Context;
use crate::service::analytics::{self, DateRange};
use crate::service::export::{self, Export};

/// The export routes.
pub fn routes() -> Router<Arc<Context>> {
    Router::new()
        .route("/v1/export/visits.csv", get(visits_csv))
        .route("/v1/export/orders.csv", get(orders_csv))
        .route("/v1/export/jobs.csv", get(jobs_csv))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ExportQuery {
    /// First day, `YYYY-MM-DD` (UTC).
    from: Option<String>,
    /// Last day, included.
    to: Option<String>,
    /// An administrator may narrow to one team.
    team: Option<String>,
}

#[utoipa::path(get, path = "/v1/export/visits.csv", tag = "figures", security(("bearer" = [])),
    params(ExportQuery),
    responses(
        (status = 200, description = "The range's visits as CSV with a header row", body = String, content_type = "text/csv"),
        (status = 400, description = "Missing or malformed range", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
    ))]
pub(crate) async fn visits_csv(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    serve(&ctx, &caller, &q, Export::Visits).await
}

#[utoipa::path(get, path = "/v1/export/orders.csv", tag = "figures", security(("bearer" = [])),
    params(ExportQuery),
    responses(
        (status = 200, description = "The range's orders as CSV with a header row", body = String, content_type = "text/csv"),
        (status = 400, description = "Missing or malformed range", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
    ))]
pub(crate) async fn orders_csv(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    serve(&ctx, &caller, &q, Export::Orders).await
}

#[utoipa::path(get, path = "/v1/export/jobs.csv", tag = "figures", security(("bearer" = [])),
    params(ExportQuery),
    responses(
        (status = 200, description = "The range's jobs as CSV with a header row", body = String, content_type = "text/csv"),
        (status = 400, description = "Missing or malformed range", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
    ))]
pub(crate) async fn jobs_csv(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    serve(&ctx, &caller, &q, Export::Jobs).await
}

async fn serve(
    ctx: &Context,
    caller: &Caller,
    q: &ExportQuery,
    what: Export,
) -> Result<Response, ApiError> {
    let range = DateRange::required(q.from.as_deref(), q.to.as_deref())?;
    let team = analytics::parse_team(q.team.as_deref())?;
    let body = export::export(ctx, caller, what, range, team).await?;
    let mut resp = body.into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    let disposition = format!("attachment; filename=\"{}\"", what.file_name(&range));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}
