//! Service jobs for the back office as a JSON API: the job list (filters and
//! paging), one job with its assignments, and closing and cancelling a job.
//! The work is `service::jobs`'s; the pages and the CLI call the same functions.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use fieldsync_core::model::Status;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiJson, ErrorBody};
use super::schema::JsonObject;
use crate::domain::Caller;
use crate::domain::jobs::{JobDetail, JobFilter, JobPage};
use crate::service::{self, Context};

/// The job routes.
pub fn routes() -> Router<Arc<Context>> {
    Router::new()
        .route("/v1/jobs", get(list))
        .route("/v1/jobs/{id}", get(detail))
        .route("/v1/jobs/{id}/close", post(close))
        .route("/v1/jobs/{id}/cancel", post(cancel))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only jobs in this status (`open`, `scheduled`, `in_progress`,
    /// `completed`, `closed`, `cancelled`).
    status: Option<String>,
    /// Only jobs with an assignment of this technician (user id).
    technician: Option<String>,
    /// Only jobs that breached their SLA (completed after `sla_due`, or not
    /// done while it has passed).
    #[serde(default)]
    sla_breached: bool,
    /// Page, from 1 (default 1).
    page: Option<u32>,
    /// Jobs per page, 1 to 100 (default 50).
    per_page: Option<u32>,
}

/// `GET /v1/jobs`: the jobs in the caller's scope (a manager's team, an
/// administrator's organisation), SLA due first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "One page of jobs, SLA due first", body = JobPage),
        (status = 400, description = "Unknown status, bad technician id or page", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
    ))]
pub(crate) async fn list(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<JobPage>, ApiError> {
    let filter = JobFilter::parse(
        q.status.as_deref(),
        q.technician.as_deref(),
        q.sla_breached,
        q.page,
        q.per_page,
    )?;
    Ok(Json(service::jobs::list(&ctx, &caller, &filter).await?))
}

/// `GET /v1/jobs/{id}`: the job with its assignments (parts, time entries,
/// checklist, signature verdict), attachments, status history, SLA and
/// promise verdicts, and whether it may be closed or cancelled now.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job with its assignments, attachments and history", body = JsonObject),
        (status = 400, description = "Not a record id", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
        (status = 404, description = "No such job in the caller's scope", body = ErrorBody),
    ))]
pub(crate) async fn detail(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<JobDetail>, ApiError> {
    Ok(Json(service::jobs::detail(&ctx, &caller, &id).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct CloseBody {
    /// How the job was resolved (required, at most 4,000 bytes).
    resolution: Option<String>,
    /// Fixed on the first visit.
    first_time_fix: bool,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct CancelBody {
    /// Why (required, at most 4,000 bytes).
    reason: Option<String>,
}

/// A job's status after a decision.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobDecided {
    /// The job.
    pub id: String,
    /// Its status now.
    pub status: String,
}

/// `POST /v1/jobs/{id}/close` `{resolution, first_time_fix}`: closes a
/// completed job on the caller's behalf.
#[utoipa::path(post, path = "/v1/jobs/{id}/close", tag = "jobs", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Job id")),
    request_body = CloseBody,
    responses(
        (status = 200, description = "Closed; devices get it with their next sync", body = JobDecided),
        (status = 400, description = "Bad id, or no resolution", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
        (status = 404, description = "No such job in the caller's scope", body = ErrorBody),
        (status = 409, description = "The job is not completed", body = ErrorBody),
    ))]
pub(crate) async fn close(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CloseBody>,
) -> Result<Json<JobDecided>, ApiError> {
    let status = service::jobs::close(
        &ctx,
        &caller,
        &id,
        body.resolution.as_deref(),
        body.first_time_fix,
    )
    .await?;
    Ok(Json(JobDecided {
        id,
        status: status.as_str().to_owned(),
    }))
}

/// `POST /v1/jobs/{id}/cancel` `{reason}`: cancels a job nobody is working
/// on, on the caller's behalf.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Job id")),
    request_body = CancelBody,
    responses(
        (status = 200, description = "Cancelled; devices get it with their next sync", body = JobDecided),
        (status = 400, description = "Bad id, or no reason", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
        (status = 404, description = "No such job in the caller's scope", body = ErrorBody),
        (status = 409, description = "An assignment is in progress, or the job is done", body = ErrorBody),
    ))]
pub(crate) async fn cancel(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CancelBody>,
) -> Result<Json<JobDecided>, ApiError> {
    let status = service::jobs::cancel(&ctx, &caller, &id, body.reason.as_deref()).await?;
    Ok(Json(JobDecided {
        id,
        status: status.as_str().to_owned(),
    }))
}
