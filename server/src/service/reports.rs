//! What a manager sees of visit reports: the inbox rows with the visit's
//! figures (planned and actual times, geofence verdict, order value), the
//! reps to filter by, and everything one report page shows (visit, site,
//! orders with totals and signature verdicts, checklist answers, attachments,
//! status history, review thread).
//!
//! Everything is read through the caller's scope: a report, and the records it
//! refers to, are found only when one of the caller's principals may read them
//! (a manager reads their team's records). Figures are derived with the
//! shared model functions (`domain::review`), never stored.
//!
//! The inbox reads at most
//! [`MAX_INBOX_CANDIDATES`](crate::domain::review::MAX_INBOX_CANDIDATES)
//! reports in the status, most recent visit first, then filters by verdict
//! and sorts in memory: one manager's team has far fewer open reports than
//! that.

use std::collections::{BTreeMap, BTreeSet};

use fieldsync_core::model::signature::SignatureVerdict;
use fieldsync_core::model::{
    Account, ChecklistResponse, ChecklistTemplate, Order, RecordDoc, RecordKind, Visit, VisitReport,
};
use fieldsync_core::{RecordId, UserId};

use super::Context;
use crate::db::{self, reports as db_reports};
use crate::domain::review::{self, RepsOf};
pub use crate::domain::review::{
    AnswerView, AttachmentView, ChecklistView, InboxFilter, InboxRow, OrderView, RepChoice,
    ReportDetail, SortKey, VisitView,
};
use crate::domain::{Caller, Error, Result};

/// A report page: the report and the signature verdict of each of its
/// orders that is signed (same order as `detail.orders`).
#[derive(Debug, Clone)]
pub struct ReportPage {
    /// The report with everything its page shows.
    pub detail: ReportDetail,
    /// The verdict on each order's signature; `None` for unsigned orders.
    pub verdicts: Vec<Option<SignatureVerdict>>,
}

fn read_visit(bytes: &[u8], report: RecordId) -> Option<Visit> {
    match RecordDoc::load(bytes).and_then(|d| d.read_stateful::<Visit>()) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(report = %report, error = %e, "the visit of a report does not read");
            None
        }
    }
}

fn read_account(bytes: &[u8], report: RecordId) -> Option<Account> {
    match RecordDoc::load(bytes).and_then(|d| d.read::<Account>()) {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::warn!(report = %report, error = %e, "the account of a report does not read");
            None
        }
    }
}

/// The inbox: reports in the filter's status in the caller's scope, with
/// their visits' figures, filtered and sorted.
pub async fn inbox(ctx: &Context, caller: &Caller, filter: &InboxFilter) -> Result<Vec<InboxRow>> {
    let candidates = db_reports::inbox_candidates(&ctx.db, caller, filter).await?;
    let mut out = Vec::with_capacity(candidates.len());
    for c in candidates {
        let visit = c.visit_doc.as_deref().and_then(|b| read_visit(b, c.id));
        let account = c.account_doc.as_deref().and_then(|b| read_account(b, c.id));
        let visit_id: Option<RecordId> = c.visit_id.as_deref().and_then(|s| s.parse().ok());
        let orders = match (&visit, visit_id) {
            (Some(v), Some(vid)) => orders_of_visit(ctx, caller, vid, v).await?,
            _ => Vec::new(),
        };
        let row = InboxRow {
            id: c.id,
            status: c.status.unwrap_or_default(),
            rep_id: c.owner.as_deref().and_then(|s| s.parse().ok()),
            rep_name: c.owner_name,
            visit_id,
            account_id: visit.as_ref().map(|v| v.account_id),
            account_name: account.map(|a| a.name),
            planned_start: visit.as_ref().and_then(|v| v.planned_start),
            planned_end: visit.as_ref().and_then(|v| v.planned_end),
            check_in: visit
                .as_ref()
                .and_then(|v| v.check_in.as_ref().map(|c| c.at)),
            check_out: visit
                .as_ref()
                .and_then(|v| v.check_out.as_ref().map(|c| c.at)),
            verdict: visit.as_ref().and_then(review::visit_verdict),
            order_value: review::order_value(orders.iter().map(|(_, o)| o)),
            updated_at: c.updated_at,
        };
        if filter.verdict.is_some() && row.verdict != filter.verdict {
            continue;
        }
        out.push(row);
    }
    review::sort_rows(&mut out, filter.sort, filter.descending);
    Ok(out)
}

/// The reps whose reports the caller reviews: their team's (a manager), or
/// the organisation's (an administrator).
pub async fn reps(ctx: &Context, caller: &Caller) -> Result<Vec<RepChoice>> {
    let team = match review::reps_of(caller.role(), caller.team) {
        RepsOf::Organisation => None,
        RepsOf::Team(t) => Some(t),
        RepsOf::Nobody => return Ok(Vec::new()),
    };
    Ok(db_reports::reps(&ctx.db, caller.org, team).await?)
}

/// The readable records among `ids` of `kind` not already `found`, added to
/// it; ones that are gone, out of scope or of another kind are skipped.
async fn by_ids(
    ctx: &Context,
    caller: &Caller,
    kind: RecordKind,
    ids: impl IntoIterator<Item = RecordId>,
    found: &mut Vec<(RecordId, Vec<u8>)>,
) -> Result<()> {
    let known: BTreeSet<RecordId> = found.iter().map(|(id, _)| *id).collect();
    for id in ids {
        if known.contains(&id) {
            continue;
        }
        if let Some((k, doc)) = db::records::readable_doc(&ctx.db, caller, id).await?
            && k == kind
        {
            found.push((id, doc));
        }
    }
    Ok(())
}

/// The orders taken on a visit: those naming it and those it names.
async fn orders_of_visit(
    ctx: &Context,
    caller: &Caller,
    visit_id: RecordId,
    visit: &Visit,
) -> Result<Vec<(RecordId, Order)>> {
    let mut docs = db_reports::children(&ctx.db, caller, RecordKind::Order, visit_id).await?;
    by_ids(
        ctx,
        caller,
        RecordKind::Order,
        visit.order_ids.keys().copied(),
        &mut docs,
    )
    .await?;
    Ok(docs
        .into_iter()
        .filter_map(|(id, bytes)| {
            let doc = RecordDoc::load(&bytes).ok()?;
            if doc.is_deleted() {
                return None;
            }
            doc.read_stateful::<Order>().ok().map(|o| (id, o))
        })
        .collect())
}

/// The readable record `id` of `kind`, as a document.
async fn readable_of_kind(
    ctx: &Context,
    caller: &Caller,
    id: RecordId,
    kind: RecordKind,
) -> Result<Option<RecordDoc>> {
    Ok(
        match db::records::readable_doc(&ctx.db, caller, id).await? {
            Some((k, bytes)) if k == kind => RecordDoc::load(&bytes).ok(),
            _ => None,
        },
    )
}

/// The report `id` with everything its page shows, if the caller may read it.
pub async fn detail(ctx: &Context, caller: &Caller, id: RecordId) -> Result<Option<ReportDetail>> {
    let Some((kind, bytes)) = db::records::readable_doc(&ctx.db, caller, id).await? else {
        return Ok(None);
    };
    if kind != RecordKind::VisitReport {
        return Ok(None);
    }
    let corrupt = |what: &str, e: &dyn std::fmt::Display| {
        Error::internal(format!("stored report {id} does not {what}: {e}"))
    };
    let doc = RecordDoc::load(&bytes).map_err(|e| corrupt("load", &e))?;
    let report: VisitReport = doc.read_stateful().map_err(|e| corrupt("read", &e))?;
    let history = doc.history().unwrap_or_default();

    let visit = readable_of_kind(ctx, caller, report.visit_id, RecordKind::Visit)
        .await?
        .and_then(|d| d.read_stateful::<Visit>().ok());
    let account = match &visit {
        Some(v) => readable_of_kind(ctx, caller, v.account_id, RecordKind::Account)
            .await?
            .and_then(|d| d.read::<Account>().ok()),
        None => None,
    };
    let site = account
        .as_ref()
        .and_then(|a| review::site_of(a, visit.as_ref()));

    let mut orders = Vec::new();
    let mut checklists = Vec::new();
    let mut linked: Vec<RecordId> = vec![id];
    if let Some(v) = &visit {
        linked.push(report.visit_id);
        for (oid, order) in orders_of_visit(ctx, caller, report.visit_id, v).await? {
            linked.push(oid);
            orders.push(OrderView {
                id: oid,
                totals: order.totals().ok(),
                order,
            });
        }
        let mut docs = db_reports::children(
            &ctx.db,
            caller,
            RecordKind::ChecklistResponse,
            report.visit_id,
        )
        .await?;
        by_ids(
            ctx,
            caller,
            RecordKind::ChecklistResponse,
            v.checklist_response_ids.keys().copied(),
            &mut docs,
        )
        .await?;
        for (rid, b) in docs {
            let Ok(response) = RecordDoc::load(&b).and_then(|d| d.read::<ChecklistResponse>())
            else {
                continue;
            };
            linked.push(rid);
            let template = readable_of_kind(
                ctx,
                caller,
                response.template_id,
                RecordKind::ChecklistTemplate,
            )
            .await?
            .and_then(|d| d.read::<ChecklistTemplate>().ok());
            checklists.push(review::checklist_view(rid, &response, template.as_ref()));
        }
    }
    let attachments = db_reports::attachments_of(&ctx.db, caller, &linked).await?;

    let mut people: BTreeSet<UserId> = history.iter().map(|e| e.by).collect();
    people.extend(report.comments.values().map(|c| c.by));
    people.insert(report.meta.owner);
    let mut names = BTreeMap::new();
    for user in people {
        if let Some(u) = db::accounts::user_by_id(&ctx.db, user).await?
            && u.org == caller.org
        {
            names.insert(user, u.display_name);
        }
    }
    Ok(Some(ReportDetail {
        id,
        changed_since_submission: review::changed_since_submission(&report),
        rep_name: names.get(&report.meta.owner).cloned(),
        report,
        history,
        visit: visit.map(VisitView::of),
        account,
        site,
        orders,
        checklists,
        attachments,
        names,
    }))
}

/// The report page of `id`: the report and the verdict on each signed
/// order's signature; not found when the caller may not read it.
pub async fn page(ctx: &Context, caller: &Caller, id: RecordId) -> Result<ReportPage> {
    let detail = detail(ctx, caller, id).await?.ok_or(Error::NotFound)?;
    let mut verdicts = Vec::with_capacity(detail.orders.len());
    for o in &detail.orders {
        let verdict = match &o.order.signature {
            None => None,
            Some(_) => super::signatures::signature_verdict(&ctx.db, caller, o.id).await?,
        };
        verdicts.push(verdict);
    }
    Ok(ReportPage { detail, verdicts })
}
