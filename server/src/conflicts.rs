//! The conflicts queue: semantic clashes the merge kept for a manager, with
//! the evidence of both sides, and their resolution.
//!
//! A clash is a record whose status holds concurrent values after a merge: a
//! job completed offline while the office cancelled it, a visit checked in
//! while it was cancelled. The model shows the side with field evidence
//! (`Status::precedence`) and keeps the other; `RecordDoc::conflicts` lists
//! both. [`crate::store::push`] opens a row of `conflicts` in the transaction
//! that stores such a merge, and closes it in the one that stores a single
//! status again, whoever wrote it.
//!
//! `GET /v1/conflicts` lists the open ones in the caller's scope with their
//! evidence, read from the record itself: each value, which device and user
//! wrote it, the matching status-history event (device time, position,
//! reason), the whole history and the record's fields.
//! `POST /v1/conflicts/{record_id}/resolve` `{choose, comment}` settles one:
//! like a review decision, the server writes `RecordDoc::resolve_status` on
//! the manager's behalf (under [`crate::review::web_actor`]) through the push
//! path, so every device receives the settlement with its next pull and the
//! row leaves the queue in the same transaction.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use fieldsync_core::RecordId;
use fieldsync_core::model::{
    AssignmentStatus, Conflict, DeviceTime, JobStatus, OrderStatus, RecordDoc, RecordKind,
    ReportStatus, Status, StatusEvent, VisitStatus,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::AppState;
use crate::auth::AuthUser;
use crate::db::{Database, DbError};
use crate::error::{ApiError, ApiJson};
use crate::on_pool;
use crate::store::{self, Caller};

/// Most conflicts one list returns.
pub const MAX_LISTED: i64 = 200;
/// Longest resolution comment.
const MAX_COMMENT_BYTES: usize = 4_000;

/// The conflicts routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/conflicts", get(serve_list))
        .route("/v1/conflicts/{record_id}/resolve", post(serve_resolve))
}

/// The kinds whose status is governed by a state machine.
pub fn is_stateful(kind: RecordKind) -> bool {
    matches!(
        kind,
        RecordKind::Visit
            | RecordKind::VisitReport
            | RecordKind::Order
            | RecordKind::ServiceJob
            | RecordKind::Assignment
    )
}

/// One open conflict with its evidence.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConflictItem {
    /// The record.
    pub record_id: String,
    /// Its kind.
    pub kind: String,
    /// The clashing field (`status`).
    pub path: String,
    /// When the server stored the merge that made the clash (Unix seconds).
    pub detected_at: i64,
    /// Whose push made it.
    pub detected_by: Option<Person>,
    /// From which device.
    pub detected_device: Option<String>,
    /// The status the record shows now (the side with field evidence).
    pub shown: Option<String>,
    /// Every concurrent value with who wrote it and the matching history event.
    pub sides: Vec<Side>,
    /// Other fields edited concurrently on the same record (both values kept).
    #[schema(value_type = Vec<Object>)]
    pub other_fields: Vec<Conflict>,
    /// The whole status history, oldest first (device times).
    pub history: Vec<HistoryEntry>,
    /// The record's fields (history left out), as the server holds them.
    #[schema(value_type = Object)]
    pub record: Value,
}

/// A user, named.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Person {
    /// User id.
    pub id: String,
    /// Name to show.
    pub name: String,
}

/// One side of a clash.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Side {
    /// The value.
    #[schema(value_type = Object)]
    pub value: Value,
    /// Whether the record shows it now.
    pub shown: bool,
    /// The Automerge actor that wrote it (hex).
    pub actor: String,
    /// The device of that actor, when it is a device's (not the web app's).
    pub device_id: Option<String>,
    /// Who wrote it: the device's user, else the history event's author.
    pub by: Option<Person>,
    /// The latest status-history event that moved the record to this value.
    pub event: Option<HistoryEntry>,
}

/// A status-history event, with names.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    /// Status before (`None`: the creation).
    pub from: Option<String>,
    /// Status after.
    pub to: String,
    /// Who.
    pub by: Person,
    /// Their role then.
    pub role: String,
    /// The device, when made on one.
    pub device_id: Option<String>,
    /// Device time, ms since the epoch.
    pub at_ms: i64,
    /// The device's UTC offset then, minutes.
    pub tz_offset_min: i32,
    /// Position, when known.
    #[schema(value_type = Option<Object>)]
    pub gps: Option<Value>,
    /// Reason or comment.
    pub reason: Option<String>,
}

/// `GET /v1/conflicts`: open conflicts in the caller's scope, newest first.
#[utoipa::path(get, path = "/v1/conflicts", tag = "figures", security(("bearer" = [])),
    responses(
        (status = 200, description = "Open status clashes with both sides and the evidence", body = Vec<ConflictItem>),
        (status = 401, description = "Missing, invalid or expired token", body = crate::api_doc::ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = crate::api_doc::ErrorBody),
    ))]
pub(crate) async fn serve_list(
    State(state): State<Arc<AppState>>,
    user: AuthUser,
) -> Result<Json<Vec<ConflictItem>>, ApiError> {
    list(&state, &user).await.map(Json)
}

/// The open conflicts `user` may see (managers: their team's; administrators:
/// the organisation's), newest first, at most [`MAX_LISTED`].
pub async fn list(state: &AppState, user: &AuthUser) -> Result<Vec<ConflictItem>, ApiError> {
    if !user.role.is_back_office() {
        return Err(ApiError::Forbidden(
            "the conflicts queue is for managers and administrators".into(),
        ));
    }
    let caller = crate::sync::caller(state, user)?;
    let rows = open_rows(&state.db, &caller)
        .await
        .map_err(ApiError::Unavailable)?;
    let names = user_names(&state.db, &caller)
        .await
        .map_err(ApiError::Unavailable)?;
    let devices = devices_by_actor(&state.db, &caller)
        .await
        .map_err(ApiError::Unavailable)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        match evidence(row, &names, &devices) {
            Ok(item) => out.push(item),
            Err(e) => tracing::warn!(error = %e, "a conflicting record does not read"),
        }
    }
    Ok(out)
}

type OpenRow = (
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    Vec<u8>,
);

async fn open_rows(db: &Database, caller: &Caller) -> Result<Vec<OpenRow>, DbError> {
    let p = caller.principals();
    let org = *caller.org.as_uuid();
    Ok(on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT CAST(c.record_id AS TEXT), c.kind, c.path, c.detected_at, \
             CAST(c.user_id AS TEXT), CAST(c.device_id AS TEXT), r.doc \
             FROM conflicts c JOIN records r ON r.id = c.record_id \
             WHERE c.org_id = $1 AND c.resolved_at IS NULL AND EXISTS (SELECT 1 FROM \
             record_scope s WHERE s.record_id = c.record_id \
             AND s.principal IN ($2, $3, $4, $5, $6)) \
             ORDER BY c.detected_at DESC, c.record_id LIMIT $7",
        )
        .bind(uuid(org))
        .bind(&p[0])
        .bind(&p[1])
        .bind(&p[2])
        .bind(&p[3])
        .bind(&p[4])
        .bind(MAX_LISTED)
        .fetch_all(pool)
        .await?
    }))
}

async fn user_names(db: &Database, caller: &Caller) -> Result<BTreeMap<String, String>, DbError> {
    let org = *caller.org.as_uuid();
    let rows: Vec<(String, String)> = on_pool!(db, |pool, uuid| {
        sqlx::query_as("SELECT CAST(id AS TEXT), display_name FROM users WHERE org_id = $1")
            .bind(uuid(org))
            .fetch_all(pool)
            .await?
    });
    Ok(rows.into_iter().collect())
}

/// Devices of the organisation by Automerge actor (hex): (device, user).
async fn devices_by_actor(
    db: &Database,
    caller: &Caller,
) -> Result<BTreeMap<String, (String, String)>, DbError> {
    let org = *caller.org.as_uuid();
    let rows: Vec<(String, String, String)> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT actor_id, CAST(id AS TEXT), CAST(user_id AS TEXT) FROM devices \
             WHERE org_id = $1",
        )
        .bind(uuid(org))
        .fetch_all(pool)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(|(actor, device, user)| (actor.to_lowercase(), (device, user)))
        .collect())
}

fn person(names: &BTreeMap<String, String>, id: &str) -> Person {
    Person {
        id: id.to_owned(),
        name: names.get(id).cloned().unwrap_or_default(),
    }
}

fn entry(names: &BTreeMap<String, String>, e: &StatusEvent) -> HistoryEntry {
    HistoryEntry {
        from: e.from.clone(),
        to: e.to.clone(),
        by: person(names, &e.by.to_string()),
        role: e.role.as_str().to_owned(),
        device_id: e.device.map(|d| d.to_string()),
        at_ms: e.at.at_ms,
        tz_offset_min: e.at.tz_offset_min,
        gps: e.gps.and_then(|g| serde_json::to_value(g).ok()),
        reason: e.reason.clone(),
    }
}

fn evidence(
    row: OpenRow,
    names: &BTreeMap<String, String>,
    devices: &BTreeMap<String, (String, String)>,
) -> Result<ConflictItem, fieldsync_core::model::ModelError> {
    let (record_id, kind, path, detected_at, user_id, device_id, bytes) = row;
    let doc = RecordDoc::load(&bytes)?;
    let history = doc.history()?;
    let mut conflicts = doc.conflicts()?;
    let clash = conflicts
        .iter()
        .position(|c| c.path == path)
        .map(|i| conflicts.remove(i));
    let sides = clash
        .map(|c| c.values)
        .unwrap_or_default()
        .into_iter()
        .map(|v| {
            let device = devices.get(&v.actor.to_lowercase());
            let event = v.value.as_str().and_then(|to| {
                history
                    .iter()
                    .rev()
                    .filter(|e| e.to == to)
                    .find(|e| device.is_none_or(|(_, u)| e.by.to_string() == *u))
            });
            let by = device
                .map(|(_, u)| person(names, u))
                .or_else(|| event.map(|e| person(names, &e.by.to_string())));
            Side {
                value: v.value,
                shown: v.shown,
                actor: v.actor,
                device_id: device.map(|(d, _)| d.clone()),
                by,
                event: event.map(|e| entry(names, e)),
            }
        })
        .collect();
    let mut record = doc.to_json()?;
    if let Some(map) = record.as_object_mut() {
        map.remove("history");
    }
    Ok(ConflictItem {
        record_id,
        kind,
        path,
        detected_at,
        detected_by: user_id.as_deref().map(|u| person(names, u)),
        detected_device: device_id,
        shown: doc.status_name()?.as_str().map(str::to_owned),
        sides,
        other_fields: conflicts,
        history: history.iter().map(|e| entry(names, e)).collect(),
        record,
    })
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

/// What a resolution answers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Resolved {
    /// The record.
    pub record_id: String,
    /// Its status now.
    pub status: String,
}

/// `POST /v1/conflicts/{record_id}/resolve`: keeps one side, written on the
/// manager's behalf through the push path.
#[utoipa::path(post, path = "/v1/conflicts/{record_id}/resolve", tag = "figures", security(("bearer" = [])),
    params(("record_id" = uuid::Uuid, Path, description = "The record")),
    request_body = ResolveBody,
    responses(
        (status = 200, description = "Settled; devices get it with their next sync", body = Resolved),
        (status = 400, description = "Not a record id, or not one of the clashing values", body = crate::api_doc::ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = crate::api_doc::ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = crate::api_doc::ErrorBody),
        (status = 404, description = "No open conflict on such a record in the caller's scope", body = crate::api_doc::ErrorBody),
    ))]
pub(crate) async fn serve_resolve(
    State(state): State<Arc<AppState>>,
    user: AuthUser,
    Path(record_id): Path<String>,
    ApiJson(body): ApiJson<ResolveBody>,
) -> Result<Json<Resolved>, ApiError> {
    resolve(&state, &user, &record_id, &body).await.map(Json)
}

/// Settles the open conflict of `record_id` by keeping `body.choose`,
/// written through the push path on `user`'s behalf.
pub async fn resolve(
    state: &AppState,
    user: &AuthUser,
    record_id: &str,
    body: &ResolveBody,
) -> Result<Resolved, ApiError> {
    if !user.role.is_back_office() {
        return Err(ApiError::Forbidden(
            "only managers and administrators resolve conflicts".into(),
        ));
    }
    let id: RecordId = record_id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{record_id:?} is not a record id")))?;
    let comment = body
        .comment
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    if comment.is_some_and(|c| c.len() > MAX_COMMENT_BYTES) {
        return Err(ApiError::BadRequest(format!(
            "a comment holds at most {MAX_COMMENT_BYTES} bytes"
        )));
    }
    let caller = crate::review::web_caller(state, user)?;
    let Some((kind, bytes)) = store::readable_doc(&state.db, &caller, id)
        .await
        .map_err(ApiError::Unavailable)?
    else {
        return Err(ApiError::NotFound);
    };
    if !is_open(&state.db, &caller, id)
        .await
        .map_err(ApiError::Unavailable)?
    {
        return Err(ApiError::NotFound);
    }
    let mut doc = RecordDoc::load(&bytes).map_err(|e| {
        ApiError::Internal(anyhow::anyhow!("stored record {id} does not load: {e}"))
    })?;
    let clash = doc
        .conflicts()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("conflicts of {id}: {e}")))?
        .into_iter()
        .find(|c| c.path == "status")
        .ok_or_else(|| ApiError::Conflict("this record's status no longer clashes".into()))?;
    let choices: Vec<String> = clash
        .values
        .iter()
        .filter_map(|v| v.value.as_str().map(str::to_owned))
        .collect();
    if !choices.contains(&body.choose) {
        return Err(ApiError::BadRequest(format!(
            "choose one of the clashing values: {}",
            choices.join(", ")
        )));
    }
    let reason = comment.map_or_else(
        || format!("conflict settled: kept {}", body.choose),
        str::to_owned,
    );
    doc.set_actor(caller.actor_id.clone());
    let before = doc.heads();
    let at = DeviceTime::now_utc();
    let settled = match kind {
        RecordKind::Visit => settle::<VisitStatus>(&mut doc, &caller, &body.choose, at, &reason),
        RecordKind::VisitReport => {
            settle::<ReportStatus>(&mut doc, &caller, &body.choose, at, &reason)
        }
        RecordKind::Order => settle::<OrderStatus>(&mut doc, &caller, &body.choose, at, &reason),
        RecordKind::ServiceJob => settle::<JobStatus>(&mut doc, &caller, &body.choose, at, &reason),
        RecordKind::Assignment => {
            settle::<AssignmentStatus>(&mut doc, &caller, &body.choose, at, &reason)
        }
        _ => Err(ApiError::Conflict("this record has no status".into())),
    };
    settled?;
    crate::review::push_since(state, &caller, id, kind, &mut doc, &before).await?;
    Ok(Resolved {
        record_id: id.to_string(),
        status: body.choose.clone(),
    })
}

fn settle<S: Status>(
    doc: &mut RecordDoc,
    caller: &Caller,
    choose: &str,
    at: DeviceTime,
    reason: &str,
) -> Result<(), ApiError> {
    let status = S::parse(choose).ok_or_else(|| {
        ApiError::BadRequest(format!("{choose:?} is not a {} status", S::MACHINE))
    })?;
    doc.resolve_status(&caller.actor, status, at, reason)
        .map(|_| ())
        .map_err(|e| ApiError::Conflict(e.to_string()))
}

/// Whether the record has an open conflict in the caller's organisation.
async fn is_open(db: &Database, caller: &Caller, id: RecordId) -> Result<bool, DbError> {
    let org = *caller.org.as_uuid();
    let found: Option<i32> = on_pool!(db, |pool, uuid| {
        sqlx::query_scalar(
            "SELECT 1 FROM conflicts WHERE record_id = $1 AND org_id = $2 \
             AND resolved_at IS NULL",
        )
        .bind(uuid(*id.as_uuid()))
        .bind(uuid(org))
        .fetch_optional(pool)
        .await?
    });
    Ok(found.is_some())
}
