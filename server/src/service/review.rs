//! Managers' review of visit reports: the inbox of reports in a status, one
//! report with everything its page shows, and decisions (approve, request
//! changes) one by one or in bulk.
//!
//! A decision is written into the report as an Automerge change made by the
//! server on the manager's behalf ([`Caller::on_behalf`]: no device, an actor
//! id of its own per manager) and stored through the same push path a device
//! uses ([`super::sync::push_since`]): the same scope check, the same state
//! machine and role rules, the same change log. So the rep's device receives
//! the decision with its next pull like any other change, and keeps it
//! offline. The rules (who reviews, what a decision needs, the status it leads
//! to) are `domain::review`'s.

use fieldsync_core::model::{DeviceTime, RecordDoc, RecordKind, ReportStatus};
use serde::Serialize;

use super::Context;
use crate::db::records;
use crate::domain::review::{self, Reviewing};
pub use crate::domain::review::{Decision, MAX_REPORTS, ReportDetail};
use crate::domain::{Caller, Error, Result};

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

/// Reports in `status` (a stable status name) in the caller's scope (a
/// manager's team), newest change first, at most `limit` (1 to [`MAX_REPORTS`]).
pub async fn inbox(
    ctx: &Context,
    caller: &Caller,
    status: &str,
    limit: usize,
) -> Result<Vec<InboxItem>> {
    review::may_review(caller.role(), Reviewing::Inbox)?;
    let status = review::inbox_status(status)?;
    let rows = records::reports_in_status(
        &ctx.db,
        caller,
        fieldsync_core::model::Status::as_str(status),
        review::inbox_limit(limit),
    )
    .await?;
    Ok(rows
        .into_iter()
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
        .collect())
}

/// The report `id` (as given) with everything its page shows; not found when
/// it is not a report in the caller's scope.
pub async fn detail(ctx: &Context, caller: &Caller, id: &str) -> Result<ReportDetail> {
    review::may_review(caller.role(), Reviewing::Reading)?;
    let id = review::parse_record_id(id)?;
    super::reports::detail(ctx, caller, id)
        .await?
        .ok_or(Error::NotFound)
}

/// Writes one decision on report `id` (as given) on the caller's behalf
/// through the push path; answers the report's new status. The managers' web
/// pages decide through here too.
pub async fn decide(
    ctx: &Context,
    caller: &Caller,
    id: &str,
    decision: Decision,
    comment: Option<&str>,
) -> Result<ReportStatus> {
    review::may_review(caller.role(), Reviewing::Deciding)?;
    let id = review::parse_record_id(id)?;
    let comment = review::review_comment(decision, comment)?;
    let writer = caller.on_behalf();
    let Some((kind, bytes)) = records::readable_doc(&ctx.db, &writer, id).await? else {
        return Err(Error::NotFound);
    };
    if kind != RecordKind::VisitReport {
        return Err(Error::NotFound);
    }
    let mut doc = RecordDoc::load(&bytes)
        .map_err(|e| Error::internal(format!("stored report {id} does not load: {e}")))?;
    doc.set_actor(writer.actor_id.clone());
    let before = doc.heads();
    review::apply_decision(
        &mut doc,
        &writer.actor,
        decision,
        comment,
        DeviceTime::now_utc(),
    )?;
    super::sync::push_since(ctx, &writer, id, kind, &mut doc, &before).await?;
    Ok(decision.status())
}

/// The same decision on each of `ids` (1 to [`MAX_REPORTS`]), each on its
/// own: one refusal does not stop the others. Answers each id with its new
/// status or its refusal, in order.
pub async fn decide_many(
    ctx: &Context,
    caller: &Caller,
    ids: Vec<String>,
    decision: Decision,
    comment: Option<&str>,
) -> Result<Vec<(String, Result<ReportStatus>)>> {
    review::check_bulk_size(ids.len())?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let result = decide(ctx, caller, &id, decision, comment).await;
        out.push((id, result));
    }
    Ok(out)
}
