//! The team dashboard as a JSON API: `GET /v1/dashboard` answers the field
//! figures of a range of UTC days and the fleet's sync health
//! (`service::analytics`; every figure is defined in `docs/kpis.md`).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::error::{ApiError, ErrorBody};
use crate::domain::Caller;
use crate::service::Context;
use crate::service::analytics::{self, Dashboard, DateRange};

/// The dashboard routes.
pub fn routes() -> Router<Arc<Context>> {
    Router::new().route("/v1/dashboard", get(serve_dashboard))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DashboardQuery {
    /// First day, `YYYY-MM-DD` (UTC).
    from: Option<String>,
    /// Last day, included.
    to: Option<String>,
    /// An administrator may narrow to one team.
    team: Option<String>,
}

/// `GET /v1/dashboard?from=YYYY-MM-DD&to=YYYY-MM-DD[&team=<id>]`.
#[utoipa::path(get, path = "/v1/dashboard", tag = "figures", security(("bearer" = [])),
    params(DashboardQuery),
    responses(
        (status = 200, description = "The team's figures and the fleet's sync health (definitions: docs/kpis.md)", body = Dashboard),
        (status = 400, description = "Missing or malformed range, or a range too long", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
    ))]
pub(crate) async fn serve_dashboard(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Query(q): Query<DashboardQuery>,
) -> Result<Json<Dashboard>, ApiError> {
    let range = DateRange::required(q.from.as_deref(), q.to.as_deref())?;
    let team = analytics::parse_team(q.team.as_deref())?;
    Ok(Json(
        analytics::dashboard(&ctx, &caller, range, team).await?,
    ))
}
