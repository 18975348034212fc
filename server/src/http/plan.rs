//! Planning and dispatch as a JSON API: the team's plan for a period, visits
//! and recurring routes planned for reps, jobs created and assigned,
//! assignments reassigned, visits and assignments cancelled, completed visits
//! reopened. The work is `service::plan`'s; the Plan page calls the same
//! functions.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use fieldsync_core::model::Priority;
use fieldsync_core::{RecordId, UserId};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiJson, ErrorBody};
use crate::domain::review::parse_record_id;
use crate::domain::{Caller, Error};
use crate::service::plan::{CreatedJob, NewAssignment, NewJob, NewRoute, NewVisit, PlanView};
use crate::service::{self, Context};

/// The planning and dispatch routes.
pub fn routes() -> Router<Arc<Context>> {
    Router::new()
        .route("/v1/plan", get(view))
        .route("/v1/plan/visits", post(plan_visits))
        .route("/v1/jobs", post(create_job))
        .route("/v1/jobs/{id}/assignments", post(assign))
        .route("/v1/assignments/{id}/reassign", post(reassign))
        .route("/v1/assignments/{id}/cancel", post(cancel_assignment))
        .route("/v1/visits/{id}/cancel", post(cancel_visit))
        .route("/v1/visits/{id}/reopen", post(reopen))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PlanQuery {
    /// First day, `YYYY-MM-DD` (UTC; default today).
    #[serde(default)]
    from: Option<String>,
    /// Days to show (1 to 14, default 1).
    #[serde(default = "one_day")]
    days: u32,
}

fn one_day() -> u32 {
    1
}

/// `GET /v1/plan?from=2026-12-07&days=7`: one lane per rep and technician
/// the caller plans for, with their visits and assignments and double bookings.
#[utoipa::path(get, path = "/v1/plan", tag = "plan", security(("bearer" = [])),
    params(PlanQuery),
    responses(
        (status = 200, description = "The plan of the period", body = PlanView),
        (status = 400, description = "Not a date", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
    ))]
pub(crate) async fn view(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Query(q): Query<PlanQuery>,
) -> Result<Json<PlanView>, ApiError> {
    let from_ms = match q.from.as_deref() {
        Some(day) => crate::domain::figures::dates::parse_day(day)
            .map(|d| d * crate::domain::plan::DAY_MS)
            .ok_or_else(|| Error::BadRequest(format!("{day:?} is not a date (YYYY-MM-DD)")))?,
        None => fieldsync_core::model::DeviceTime::now_utc().at_ms,
    };
    Ok(Json(
        service::plan::view(&ctx, &caller, from_ms, q.days).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct PlanVisitsBody {
    /// The rep.
    #[schema(value_type = uuid::Uuid)]
    rep_id: UserId,
    /// The account.
    #[schema(value_type = uuid::Uuid)]
    account_id: RecordId,
    /// Planned start of the (first) visit, ms since the epoch.
    start_ms: i64,
    /// Planned end.
    end_ms: i64,
    /// Visit type (default `sales`).
    #[serde(default)]
    visit_type: Option<String>,
    /// Instructions for the rep.
    #[serde(default)]
    instructions: Option<String>,
    /// A recurring route: this many visits (1 to 52; default 1, no route).
    #[serde(default)]
    count: Option<u32>,
    /// Every how many weeks (1 to 12); without it, the account's visit frequency.
    #[serde(default)]
    every_weeks: Option<u32>,
}

/// The records a planning call made.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Planned {
    /// Their ids, in date order.
    pub ids: Vec<String>,
}

/// `POST /v1/plan/visits`: plans a visit for a rep, or a recurring route
/// (`count` visits every `every_weeks` weeks or at the account's frequency).
#[utoipa::path(post, path = "/v1/plan/visits", tag = "plan", security(("bearer" = [])),
    request_body = PlanVisitsBody,
    responses(
        (status = 201, description = "Planned; the rep's device gets them with its next sync (live when connected)", body = Planned),
        (status = 400, description = "A bad time, count or frequency", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
        (status = 404, description = "No such rep or account in the caller's scope", body = ErrorBody),
    ))]
pub(crate) async fn plan_visits(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    ApiJson(body): ApiJson<PlanVisitsBody>,
) -> Result<(StatusCode, Json<Planned>), ApiError> {
    let visit = NewVisit {
        rep: body.rep_id,
        account: body.account_id,
        start_ms: body.start_ms,
        end_ms: body.end_ms,
        visit_type: body.visit_type,
        instructions: body.instructions,
    };
    let ids = match body.count {
        None | Some(1) if body.every_weeks.is_none() => {
            vec![service::plan::plan_visit(&ctx, &caller, visit).await?]
        }
        count => {
            service::plan::plan_route(
                &ctx,
                &caller,
                NewRoute {
                    first: visit,
                    every_weeks: body.every_weeks,
                    count: count.unwrap_or(1),
                },
            )
            .await?
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(Planned {
            ids: ids.iter().map(ToString::to_string).collect(),
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct AssignBody {
    /// The technician.
    #[schema(value_type = uuid::Uuid)]
    technician_id: UserId,
    /// Scheduled start, ms since the epoch.
    start_ms: i64,
    /// Scheduled end.
    end_ms: i64,
    /// Start of the arrival window promised to the customer.
    #[serde(default)]
    promised_from_ms: Option<i64>,
    /// Its end.
    #[serde(default)]
    promised_to_ms: Option<i64>,
}

impl AssignBody {
    fn into_new(self) -> Result<NewAssignment, Error> {
        let promised = match (self.promised_from_ms, self.promised_to_ms) {
            (Some(a), Some(b)) => Some((a, b)),
            (None, None) => None,
            _ => {
                return Err(Error::BadRequest(
                    "a promised window needs both promised_from_ms and promised_to_ms".into(),
                ));
            }
        };
        Ok(NewAssignment {
            technician: self.technician_id,
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            promised,
        })
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct NewJobBody {
    /// The customer's account.
    #[schema(value_type = uuid::Uuid)]
    account_id: RecordId,
    /// Job type, e.g. `repair`.
    job_type: String,
    /// What the customer reported.
    #[serde(default)]
    description: Option<String>,
    /// `low`, `normal` (default), `high` or `urgent`.
    #[serde(default)]
    priority: Option<String>,
    /// SLA due, ms since the epoch.
    #[serde(default)]
    sla_due_ms: Option<i64>,
    /// Assign a technician at once.
    #[serde(default)]
    assign: Option<AssignBody>,
}

/// `POST /v1/jobs`: creates a job at an account, assigned at once when
/// `assign` is given (the technician's device gets it, live when connected).
#[utoipa::path(post, path = "/v1/jobs", tag = "plan", security(("bearer" = [])),
    request_body = NewJobBody,
    responses(
        (status = 201, description = "Created", body = CreatedJob),
        (status = 400, description = "No type, a bad priority or times", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
        (status = 404, description = "No such account or technician in the caller's scope", body = ErrorBody),
    ))]
pub(crate) async fn create_job(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    ApiJson(body): ApiJson<NewJobBody>,
) -> Result<(StatusCode, Json<CreatedJob>), ApiError> {
    let priority = body
        .priority
        .as_deref()
        .map(|p| {
            serde_json::from_value::<Priority>(serde_json::Value::String(p.to_owned())).map_err(
                |_| {
                    Error::BadRequest(format!(
                        "unknown priority {p:?}; use low, normal, high or urgent"
                    ))
                },
            )
        })
        .transpose()?;
    let job = NewJob {
        account: body.account_id,
        job_type: body.job_type,
        description: body.description,
        priority,
        sla_due_ms: body.sla_due_ms,
        assign: body.assign.map(AssignBody::into_new).transpose()?,
    };
    Ok((
        StatusCode::CREATED,
        Json(service::plan::create_job(&ctx, &caller, job).await?),
    ))
}

/// `POST /v1/jobs/{id}/assignments`: assigns a technician to a job.
#[utoipa::path(post, path = "/v1/jobs/{id}/assignments", tag = "plan", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Job id")),
    request_body = AssignBody,
    responses(
        (status = 201, description = "Assigned (dispatched)", body = Planned),
        (status = 400, description = "Bad times, or not a technician", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
        (status = 404, description = "No such job or technician in the caller's scope", body = ErrorBody),
        (status = 409, description = "The job is closed or cancelled", body = ErrorBody),
    ))]
pub(crate) async fn assign(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AssignBody>,
) -> Result<(StatusCode, Json<Planned>), ApiError> {
    let job = parse_record_id(&id)?;
    let made = service::plan::assign(&ctx, &caller, job, body.into_new()?).await?;
    Ok((
        StatusCode::CREATED,
        Json(Planned {
            ids: vec![made.to_string()],
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct ReassignBody {
    /// The technician who takes it over.
    #[schema(value_type = uuid::Uuid)]
    technician_id: UserId,
}

/// `POST /v1/assignments/{id}/reassign`: gives the assignment to another
/// technician (moved before it is accepted, replaced after); answers the
/// assignment the new technician has.
#[utoipa::path(post, path = "/v1/assignments/{id}/reassign", tag = "plan", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Assignment id")),
    request_body = ReassignBody,
    responses(
        (status = 200, description = "Reassigned", body = Planned),
        (status = 400, description = "Not a technician, or the same one", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
        (status = 404, description = "No such assignment or technician in the caller's scope", body = ErrorBody),
        (status = 409, description = "Work has started", body = ErrorBody),
    ))]
pub(crate) async fn reassign(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReassignBody>,
) -> Result<Json<Planned>, ApiError> {
    let id = parse_record_id(&id)?;
    let made = service::plan::reassign(&ctx, &caller, id, body.technician_id).await?;
    Ok(Json(Planned {
        ids: vec![made.to_string()],
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct ReasonBody {
    /// Why (required, at most 4,000 bytes).
    reason: Option<String>,
}

/// `POST /v1/assignments/{id}/cancel` `{reason}`: cancels an assignment
/// before work starts.
#[utoipa::path(post, path = "/v1/assignments/{id}/cancel", tag = "plan", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Assignment id")),
    request_body = ReasonBody,
    responses(
        (status = 204, description = "Cancelled"),
        (status = 400, description = "No reason", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
        (status = 404, description = "No such assignment in the caller's scope", body = ErrorBody),
        (status = 409, description = "Work has started", body = ErrorBody),
    ))]
pub(crate) async fn cancel_assignment(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> Result<StatusCode, ApiError> {
    cancel(
        &ctx,
        &caller,
        &id,
        body,
        fieldsync_core::model::RecordKind::Assignment,
    )
    .await
}

/// `POST /v1/visits/{id}/cancel` `{reason}`: cancels a planned visit (or
/// aborts one in progress).
#[utoipa::path(post, path = "/v1/visits/{id}/cancel", tag = "plan", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Visit id")),
    request_body = ReasonBody,
    responses(
        (status = 204, description = "Cancelled"),
        (status = 400, description = "No reason", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
        (status = 404, description = "No such visit in the caller's scope", body = ErrorBody),
        (status = 409, description = "The visit is completed, missed or cancelled", body = ErrorBody),
    ))]
pub(crate) async fn cancel_visit(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> Result<StatusCode, ApiError> {
    cancel(
        &ctx,
        &caller,
        &id,
        body,
        fieldsync_core::model::RecordKind::Visit,
    )
    .await
}

async fn cancel(
    ctx: &Context,
    caller: &Caller,
    id: &str,
    body: ReasonBody,
    kind: fieldsync_core::model::RecordKind,
) -> Result<StatusCode, ApiError> {
    let id = parse_record_id(id)?;
    service::plan::cancel(ctx, caller, id, kind, body.reason.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/visits/{id}/reopen` `{reason}`: reopens a completed visit (back
/// to in progress) so the rep can correct it.
#[utoipa::path(post, path = "/v1/visits/{id}/reopen", tag = "plan", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Visit id")),
    request_body = ReasonBody,
    responses(
        (status = 204, description = "Reopened; the rep's device gets it with its next sync"),
        (status = 400, description = "No reason", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
        (status = 404, description = "No such visit in the caller's scope", body = ErrorBody),
        (status = 409, description = "The visit is not completed", body = ErrorBody),
    ))]
pub(crate) async fn reopen(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> Result<StatusCode, ApiError> {
    let id = parse_record_id(&id)?;
    service::plan::reopen_visit(&ctx, &caller, id, body.reason.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}
