//! The managers' review of visit reports as a JSON API: the inbox of reports
//! in a status, one report with everything its page shows, and decisions
//! (approve, request changes) one by one or in bulk. The work is
//! `service::review`'s; a bulk answer carries each refusal in the one error
//! shape.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use fieldsync_core::model::{ReportStatus, Status};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiJson, ErrorBody, ErrorDetail};
use super::schema::JsonObject;
use crate::domain::Caller;
use crate::service::review::{Decision, InboxItem, ReportDetail};
use crate::service::{self, Context};

/// The review routes.
pub fn routes() -> Router<Arc<Context>> {
    Router::new()
        .route("/v1/reports", get(inbox))
        .route("/v1/reports/{id}", get(detail))
        .route("/v1/reports/{id}/decision", post(decide_one))
        .route("/v1/reports/decisions", post(decide_many))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct InboxQuery {
    /// `draft`, `submitted` (default), `approved` or `changes_requested`.
    #[serde(default = "submitted")]
    status: String,
    /// Most reports to answer (1 to 200, default 100).
    #[serde(default = "default_limit")]
    limit: usize,
}

fn submitted() -> String {
    ReportStatus::Submitted.as_str().to_owned()
}

fn default_limit() -> usize {
    100
}

/// `GET /v1/reports?status=submitted&limit=100`: reports in the caller's scope
/// (a manager's team), newest first.
#[utoipa::path(get, path = "/v1/reports", tag = "review", security(("bearer" = [])),
    params(InboxQuery),
    responses(
        (status = 200, description = "Reports in the caller's scope, newest first", body = Vec<InboxItem>),
        (status = 400, description = "Unknown status", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
    ))]
pub(crate) async fn inbox(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Query(q): Query<InboxQuery>,
) -> Result<Json<Vec<InboxItem>>, ApiError> {
    Ok(Json(
        service::review::inbox(&ctx, &caller, &q.status, q.limit).await?,
    ))
}

/// `GET /v1/reports/{id}`: everything the report page shows (visit, site,
/// orders with totals, checklist answers, attachments, history), as JSON.
#[utoipa::path(get, path = "/v1/reports/{id}", tag = "review", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Report id")),
    responses(
        (status = 200, description = "The report with its visit, site, orders and totals, checklist answers, attachments, signature verdicts and history", body = JsonObject),
        (status = 400, description = "Not a record id", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
        (status = 404, description = "No such report in the caller's scope", body = ErrorBody),
    ))]
pub(crate) async fn detail(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ReportDetail>, ApiError> {
    Ok(Json(service::review::detail(&ctx, &caller, &id).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct DecisionBody {
    /// The decision.
    decision: Decision,
    /// Why; required to request changes (at most 4,000 bytes).
    #[serde(default)]
    comment: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct BulkBody {
    /// The reports (1 to 200).
    ids: Vec<String>,
    /// The decision for all of them.
    decision: Decision,
    /// Why; required to request changes.
    #[serde(default)]
    comment: Option<String>,
}

/// The outcome of one decision. Defined here, not in the service, because a
/// refusal is answered in the HTTP error shape ([`ErrorDetail`]).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DecisionResult {
    /// The report.
    pub id: String,
    /// Its status now, when the decision was stored.
    pub status: Option<String>,
    /// Why it was not, otherwise: `{code, message}` as every error.
    #[schema(value_type = Option<ErrorDetail>)]
    pub error: Option<serde_json::Value>,
}

/// `POST /v1/reports/{id}/decision` `{decision, comment}`.
#[utoipa::path(post, path = "/v1/reports/{id}/decision", tag = "review", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Report id")),
    request_body = DecisionBody,
    responses(
        (status = 200, description = "Stored; the rep's device gets it with its next sync", body = DecisionResult),
        (status = 400, description = "Bad id, or changes requested without a comment", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
        (status = 404, description = "No such report in the caller's scope", body = ErrorBody),
        (status = 409, description = "The report is not in a status this decision applies to", body = ErrorBody),
    ))]
pub(crate) async fn decide_one(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> Result<Json<DecisionResult>, ApiError> {
    let status =
        service::review::decide(&ctx, &caller, &id, body.decision, body.comment.as_deref()).await?;
    Ok(Json(DecisionResult {
        id,
        status: Some(fieldsync_core::model::Status::as_str(status).to_owned()),
        error: None,
    }))
}

/// `POST /v1/reports/decisions` `{ids, decision, comment}`: each report on its
/// own; one refusal does not stop the others.
#[utoipa::path(post, path = "/v1/reports/decisions", tag = "review", security(("bearer" = [])),
    request_body = BulkBody,
    responses(
        (status = 200, description = "One result per id, in order; refusals carry `error`", body = Vec<DecisionResult>),
        (status = 400, description = "No ids, or more than 200", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
    ))]
pub(crate) async fn decide_many(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    ApiJson(body): ApiJson<BulkBody>,
) -> Result<Json<Vec<DecisionResult>>, ApiError> {
    let results = service::review::decide_many(
        &ctx,
        &caller,
        body.ids,
        body.decision,
        body.comment.as_deref(),
    )
    .await?;
    Ok(Json(
        results
            .into_iter()
            .map(|(id, result)| match result {
                Ok(status) => DecisionResult {
                    id,
                    status: Some(fieldsync_core::model::Status::as_str(status).to_owned()),
                    error: None,
                },
                // Each refusal in the one error shape, with its stable code.
                Err(e) => DecisionResult {
                    id,
                    status: None,
                    error: Some(serde_json::json!({ "code": e.code(), "message": e.to_string() })),
                },
            })
            .collect(),
    ))
}
