//! The office's side of orders and time as a JSON API: the orders in a status
//! (the approval queue), one order with its lines, figures and history,
//! approve / reject, fulfilment; the time entries awaiting approval and their
//! decisions. The work is `service::orders`'s.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use fieldsync_core::model::{OrderStatus, Status};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiJson, ErrorBody};
use crate::domain::Caller;
use crate::service::orders::{OrderDecision, OrderView, TimeDecision, TimeEntryView};
use crate::service::{self, Context};

/// The order and time routes.
pub fn routes() -> Router<Arc<Context>> {
    Router::new()
        .route("/v1/orders", get(queue))
        .route("/v1/orders/{id}", get(one))
        .route("/v1/orders/{id}/decision", post(decide))
        .route("/v1/orders/{id}/fulfilment", post(fulfil))
        .route("/v1/time-entries", get(time_queue))
        .route(
            "/v1/assignments/{record_id}/time-entries/{id}/decision",
            post(decide_time),
        )
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct QueueQuery {
    /// An order status; `pending_approval` (the approval queue) by default.
    #[serde(default = "pending")]
    status: String,
    /// Most orders to answer (1 to 200, default 100).
    #[serde(default = "default_limit")]
    limit: usize,
}

fn pending() -> String {
    OrderStatus::PendingApproval.as_str().to_owned()
}

fn default_limit() -> usize {
    100
}

/// `GET /v1/orders?status=pending_approval&limit=100`: orders in the caller's
/// scope (a manager's team), most recently changed first, with their figures.
#[utoipa::path(get, path = "/v1/orders", tag = "orders", security(("bearer" = [])),
    params(QueueQuery),
    responses(
        (status = 200, description = "Orders in the caller's scope, with net value, discount, value against the list price and the reasons they wait", body = Vec<OrderView>),
        (status = 400, description = "Unknown status", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
    ))]
pub(crate) async fn queue(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Query(q): Query<QueueQuery>,
) -> Result<Json<Vec<OrderView>>, ApiError> {
    Ok(Json(
        service::orders::queue(&ctx, &caller, &q.status, q.limit).await?,
    ))
}

/// `GET /v1/orders/{id}`: the order with its lines (unit price against the
/// list price), totals and status history.
#[utoipa::path(get, path = "/v1/orders/{id}", tag = "orders", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 400, description = "Not a record id", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
        (status = 404, description = "No such order in the caller's scope", body = ErrorBody),
    ))]
pub(crate) async fn one(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    Ok(Json(service::orders::order(&ctx, &caller, &id).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct DecisionBody {
    /// The decision.
    decision: OrderDecision,
    /// Why; required to reject (at most 4,000 bytes).
    #[serde(default)]
    comment: Option<String>,
}

/// An order's status after a decision or a fulfilment.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct OrderOutcome {
    /// The order.
    id: String,
    /// Its status now.
    status: String,
}

/// `POST /v1/orders/{id}/decision` `{decision, comment}`: approve (the server
/// confirms the order, naming the approver) or reject (a comment is required)
/// an order waiting for approval.
#[utoipa::path(post, path = "/v1/orders/{id}/decision", tag = "orders", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Order id")),
    request_body = DecisionBody,
    responses(
        (status = 200, description = "Stored; the rep's device gets it with its next sync", body = OrderOutcome),
        (status = 400, description = "Bad id, or a rejection without a comment", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
        (status = 404, description = "No such order in the caller's scope", body = ErrorBody),
        (status = 409, description = "The order is not waiting for approval", body = ErrorBody),
    ))]
pub(crate) async fn decide(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> Result<Json<OrderOutcome>, ApiError> {
    let status =
        service::orders::decide(&ctx, &caller, &id, body.decision, body.comment.as_deref()).await?;
    Ok(Json(OrderOutcome {
        id,
        status: status.as_str().to_owned(),
    }))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(crate) struct FulfilmentBody {
    /// A note for the history (delivery reference), optional.
    #[serde(default)]
    note: Option<String>,
}

/// `POST /v1/orders/{id}/fulfilment` `{note}`: records that a confirmed order
/// was delivered (administrators).
#[utoipa::path(post, path = "/v1/orders/{id}/fulfilment", tag = "orders", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Order id")),
    request_body = FulfilmentBody,
    responses(
        (status = 200, description = "Stored; the rep's device gets it with its next sync", body = OrderOutcome),
        (status = 400, description = "Bad id or note", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 404, description = "No such order in the caller's scope", body = ErrorBody),
        (status = 409, description = "The order is not confirmed", body = ErrorBody),
    ))]
pub(crate) async fn fulfil(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<FulfilmentBody>,
) -> Result<Json<OrderOutcome>, ApiError> {
    let status = service::orders::fulfil(&ctx, &caller, &id, body.note.as_deref()).await?;
    Ok(Json(OrderOutcome {
        id,
        status: status.as_str().to_owned(),
    }))
}

/// `GET /v1/time-entries`: technicians' ended time entries still pending, in
/// the caller's scope, oldest first.
#[utoipa::path(get, path = "/v1/time-entries", tag = "orders", security(("bearer" = [])),
    responses(
        (status = 200, description = "Time entries awaiting approval", body = Vec<TimeEntryView>),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
    ))]
pub(crate) async fn time_queue(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
) -> Result<Json<Vec<TimeEntryView>>, ApiError> {
    Ok(Json(service::orders::time_queue(&ctx, &caller).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct TimeDecisionBody {
    /// The decision.
    decision: TimeDecision,
}

/// A time entry's approval state after a decision.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TimeOutcome {
    /// The assignment.
    assignment_id: String,
    /// The entry.
    entry_id: String,
    /// `approved` or `rejected`.
    approval: String,
}

/// `POST /v1/assignments/{record_id}/time-entries/{id}/decision` `{decision}`.
#[utoipa::path(post, path = "/v1/assignments/{record_id}/time-entries/{id}/decision", tag = "orders",
    security(("bearer" = [])),
    params(
        ("record_id" = uuid::Uuid, Path, description = "Assignment id"),
        ("id" = uuid::Uuid, Path, description = "Time entry id"),
    ),
    request_body = TimeDecisionBody,
    responses(
        (status = 200, description = "Stored; the technician's device gets it with its next sync", body = TimeOutcome),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
        (status = 404, description = "No such assignment or entry in the caller's scope", body = ErrorBody),
        (status = 409, description = "The entry is running or already decided", body = ErrorBody),
    ))]
pub(crate) async fn decide_time(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path((id, entry)): Path<(String, String)>,
    ApiJson(body): ApiJson<TimeDecisionBody>,
) -> Result<Json<TimeOutcome>, ApiError> {
    let approval = service::orders::decide_time(&ctx, &caller, &id, &entry, body.decision).await?;
    Ok(Json(TimeOutcome {
        assignment_id: id,
        entry_id: entry,
        approval: approval.as_str().to_owned(),
    }))
}
