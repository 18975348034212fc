//! Managers' review of visit reports, as a JSON API: the inbox of reports in a
//! status, and decisions (approve, request changes) one by one or in bulk.
//!
//! A decision is written into the report as an Automerge change made by the
//! server on the manager's behalf, under an actor id of its own per manager
//! ([`web_actor`]), and stored through the same push path a device uses
//! ([`store::push`]): the same scope check, the same state machine and role
//! rules of `merge_incoming`, the same change log. So the rep's device receives
//! the decision with its next pull like any other change, and keeps it offline.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use fieldsync_core::model::{Actor, DeviceTime, RecordDoc, RecordKind, report};
use fieldsync_core::protocol::{PushOutcome, PushRequest, RecordChanges};
use fieldsync_core::{RecordId, automerge};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiJson};
use crate::store;

/// Most reports one inbox page or one bulk decision covers.
pub const MAX_REPORTS: usize = 200;
/// Longest review comment.
const MAX_COMMENT_BYTES: usize = 4_000;

/// The review routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/reports", get(inbox))
        .route("/v1/reports/{id}", get(detail))
        .route("/v1/reports/{id}/decision", post(decide_one))
        .route("/v1/reports/decisions", post(decide_many))
}

/// The Automerge actor under which the server writes a manager's decisions:
/// stable per manager, distinct from every device's.
pub fn web_actor(user: fieldsync_core::UserId) -> automerge::ActorId {
    let digest = Sha256::digest(format!("fieldsync-web:{user}").as_bytes());
    automerge::ActorId::from(&digest[..16])
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
    "submitted".to_owned()
}

fn default_limit() -> usize {
    100
}

/// One report in the inbox.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InboxItem {
    /// The report.
    pub id: String,
    /// Its status.
    pub status: Option<String>,
    /// The rep.
    pub rep_id: Option<String>,
    /// The rep's name.
    pub rep_name: Option<String>,
    /// The visit it reports on.
    pub visit_id: Option<String>,
    /// The visit's account.
    pub account_id: Option<String>,
    /// The visit's planned start (ms since the epoch).
    pub planned_start_ms: Option<i64>,
    /// When the server last stored a change of the report (Unix seconds).
    pub updated_at: i64,
}

/// `GET /v1/reports?status=submitted&limit=100`: reports in the caller's scope
/// (a manager's team), newest first.
#[utoipa::path(get, path = "/v1/reports", tag = "review", security(("bearer" = [])),
    params(InboxQuery),
    responses(
        (status = 200, description = "Reports in the caller's scope, newest first", body = Vec<InboxItem>),
        (status = 400, description = "Unknown status", body = crate::api_doc::ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = crate::api_doc::ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = crate::api_doc::ErrorBody),
    ))]
pub(crate) async fn inbox(
    State(state): State<Arc<AppState>>,
    user: AuthUser,
    Query(q): Query<InboxQuery>,
) -> Result<Json<Vec<InboxItem>>, ApiError> {
    if !user.role.is_back_office() {
        return Err(ApiError::Forbidden(
            "the review inbox is for managers and administrators".into(),
        ));
    }
    if !["draft", "submitted", "approved", "changes_requested"].contains(&q.status.as_str()) {
        return Err(ApiError::BadRequest(format!(
            "unknown report status {:?}; use draft, submitted, approved or changes_requested",
            q.status
        )));
    }
    let caller = crate::sync::caller(&state, &user)?;
    let rows =
        store::reports_in_status(&state.db, &caller, &q.status, q.limit.clamp(1, MAX_REPORTS))
            .await
            .map_err(ApiError::Unavailable)?;
    Ok(Json(
        rows.into_iter()
            .map(|r| InboxItem {
                id: r.id,
                status: r.status,
                rep_id: r.owner,
                rep_name: r.owner_name,
                visit_id: r.visit,
                account_id: r.account,
                planned_start_ms: r.planned_start_ms,
                updated_at: r.updated_at,
            })
            .collect(),
    ))
}

/// `GET /v1/reports/{id}`: everything the report page shows (visit, site,
/// orders with totals, checklist answers, attachments, history), as JSON.
#[utoipa::path(get, path = "/v1/reports/{id}", tag = "review", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Report id")),
    responses(
        (status = 200, description = "The report with its visit, site, orders and totals, checklist answers, attachments, signature verdicts and history", body = crate::api_doc::JsonObject),
        (status = 400, description = "Not a record id", body = crate::api_doc::ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = crate::api_doc::ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = crate::api_doc::ErrorBody),
        (status = 404, description = "No such report in the caller's scope", body = crate::api_doc::ErrorBody),
    ))]
pub(crate) async fn detail(
    State(state): State<Arc<AppState>>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<crate::reports::ReportDetail>, ApiError> {
    if !user.role.is_back_office() {
        return Err(ApiError::Forbidden(
            "visit reports are reviewed by managers and administrators".into(),
        ));
    }
    let id: RecordId = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{id:?} is not a record id")))?;
    let caller = crate::sync::caller(&state, &user)?;
    crate::reports::detail(&state.db, &caller, id)
        .await
        .map_err(ApiError::Unavailable)?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

/// A manager's decision on a submitted report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Accept the report.
    Approve,
    /// Send it back to the rep; a comment is required.
    RequestChanges,
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

/// The outcome of one decision.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DecisionResult {
    /// The report.
    pub id: String,
    /// Its status now, when the decision was stored.
    pub status: Option<String>,
    /// Why it was not, otherwise: `{code, message}` as every error.
    #[schema(value_type = Option<crate::api_doc::ErrorDetail>)]
    pub error: Option<serde_json::Value>,
}

/// `POST /v1/reports/{id}/decision` `{decision, comment}`.
#[utoipa::path(post, path = "/v1/reports/{id}/decision", tag = "review", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Report id")),
    request_body = DecisionBody,
    responses(
        (status = 200, description = "Stored; the rep's device gets it with its next sync", body = DecisionResult),
        (status = 400, description = "Bad id, or changes requested without a comment", body = crate::api_doc::ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = crate::api_doc::ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = crate::api_doc::ErrorBody),
        (status = 404, description = "No such report in the caller's scope", body = crate::api_doc::ErrorBody),
        (status = 409, description = "The report is not in a status this decision applies to", body = crate::api_doc::ErrorBody),
    ))]
pub(crate) async fn decide_one(
    State(state): State<Arc<AppState>>,
    user: AuthUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> Result<Json<DecisionResult>, ApiError> {
    let status = decide(&state, &user, &id, body.decision, body.comment.as_deref()).await?;
    Ok(Json(DecisionResult {
        id,
        status: Some(status),
        error: None,
    }))
}

/// `POST /v1/reports/decisions` `{ids, decision, comment}`: each report on its
/// own; one refusal does not stop the others.
#[utoipa::path(post, path = "/v1/reports/decisions", tag = "review", security(("bearer" = [])),
    request_body = BulkBody,
    responses(
        (status = 200, description = "One result per id, in order; refusals carry `error`", body = Vec<DecisionResult>),
        (status = 400, description = "No ids, or more than 200", body = crate::api_doc::ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = crate::api_doc::ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = crate::api_doc::ErrorBody),
    ))]
pub(crate) async fn decide_many(
    State(state): State<Arc<AppState>>,
    user: AuthUser,
    ApiJson(body): ApiJson<BulkBody>,
) -> Result<Json<Vec<DecisionResult>>, ApiError> {
    if body.ids.is_empty() || body.ids.len() > MAX_REPORTS {
        return Err(ApiError::BadRequest(format!(
            "give 1 to {MAX_REPORTS} report ids"
        )));
    }
    let mut out = Vec::with_capacity(body.ids.len());
    for id in body.ids {
        let result = decide(&state, &user, &id, body.decision, body.comment.as_deref()).await;
        out.push(match result {
            Ok(status) => DecisionResult {
                id,
                status: Some(status),
                error: None,
            },
            Err(e) => DecisionResult {
                id,
                status: None,
                error: Some(serde_json::json!({ "code": e.code(), "message": e.to_string() })),
            },
        });
    }
    Ok(Json(out))
}

/// Writes one decision through the push path; answers the report's new status.
/// The managers' web pages decide through here too.
pub(crate) async fn decide(
    state: &Arc<AppState>,
    user: &AuthUser,
    id: &str,
    decision: Decision,
    comment: Option<&str>,
) -> Result<String, ApiError> {
    if !user.role.is_back_office() {
        return Err(ApiError::Forbidden(
            "only managers and administrators review visit reports".into(),
        ));
    }
    let id: RecordId = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{id:?} is not a record id")))?;
    let comment = comment.map(str::trim).filter(|c| !c.is_empty());
    if comment.is_some_and(|c| c.len() > MAX_COMMENT_BYTES) {
        return Err(ApiError::BadRequest(format!(
            "a review comment holds at most {MAX_COMMENT_BYTES} bytes"
        )));
    }
    if decision == Decision::RequestChanges && comment.is_none() {
        return Err(ApiError::BadRequest(
            "say what to change: a comment is required to request changes".into(),
        ));
    }
    let caller = web_caller(state, user)?;
    let Some((kind, bytes)) = store::readable_doc(&state.db, &caller, id)
        .await
        .map_err(ApiError::Unavailable)?
    else {
        return Err(ApiError::NotFound);
    };
    if kind != RecordKind::VisitReport {
        return Err(ApiError::NotFound);
    }
    let mut doc = RecordDoc::load(&bytes).map_err(|e| {
        ApiError::Internal(anyhow::anyhow!("stored report {id} does not load: {e}"))
    })?;
    doc.set_actor(caller.actor_id.clone());
    let before = doc.heads();
    let at = DeviceTime::now_utc();
    let made = match decision {
        Decision::Approve => {
            report::approve(&mut doc, &caller.actor, at, comment.map(str::to_owned))
        }
        Decision::RequestChanges => {
            report::request_changes(&mut doc, &caller.actor, at, comment.unwrap_or_default())
        }
    };
    made.map_err(|e| ApiError::Conflict(e.to_string()))?;
    push_since(state, &caller, id, kind, &mut doc, &before).await?;
    Ok(match decision {
        Decision::Approve => "approved",
        Decision::RequestChanges => "changes_requested",
    }
    .to_owned())
}

/// The caller as whom the server writes on `user`'s behalf: the user's scope,
/// no device, and the user's [`web_actor`].
pub(crate) fn web_caller(state: &AppState, user: &AuthUser) -> Result<store::Caller, ApiError> {
    let mut caller = crate::sync::caller(state, user)?;
    caller.actor = Actor::without_device(user.id, user.role);
    caller.actor_id = web_actor(user.id);
    Ok(caller)
}

/// Stores the changes made to `doc` since `before` through the push path a
/// device uses (scope, state machines, change log, live notes); a refusal is a
/// 409 with the push's reason.
pub(crate) async fn push_since(
    state: &AppState,
    caller: &store::Caller,
    id: RecordId,
    kind: RecordKind,
    doc: &mut RecordDoc,
    before: &[automerge::ChangeHash],
) -> Result<(), ApiError> {
    let changes: Vec<ByteBuf> = doc
        .automerge()
        .get_changes(before)
        .iter()
        .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
        .collect();
    let resp = store::push(
        &state.db,
        &state.gate,
        caller,
        &PushRequest {
            batch: uuid::Uuid::now_v7(),
            records: vec![RecordChanges { id, kind, changes }],
            health: None,
        },
    )
    .await
    .map_err(ApiError::Unavailable)?;
    match resp.results.into_iter().next().map(|r| r.outcome) {
        Some(PushOutcome::Accepted { .. }) => Ok(()),
        Some(PushOutcome::Rejected(r)) => Err(ApiError::Conflict(r.message)),
        None => Err(ApiError::Internal(anyhow::anyhow!(
            "the push answered nothing"
        ))),
    }
}
