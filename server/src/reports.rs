//! What a manager sees of visit reports: the inbox rows with the visit's
//! figures (planned and actual times, geofence verdict, order value) and
//! everything one report page shows (visit, site, orders with totals,
//! checklist answers, attachments, status history, review thread).
//!
//! Everything is read through the caller's scope: a report, and the records it
//! refers to, are found only when one of the caller's principals may read them
//! (a manager reads their team's records). Figures are derived here with the
//! shared model functions (order totals, durations), never stored.
//!
//! The inbox reads at most [`MAX_INBOX_CANDIDATES`] reports in the status,
//! most recent visit first, then filters by verdict and sorts in memory: one
//! manager's team has far fewer open reports than that. A wider date range
//! than that covers shows the most recent ones and says so.

use std::collections::{BTreeMap, BTreeSet};

use fieldsync_core::model::{
    Account, ChecklistResponse, ChecklistTemplate, DeviceTime, GeofenceVerdict, Location, Money,
    Order, OrderStatus, OrderTotals, RecordDoc, RecordKind, ReportStatus, StatusEvent, Visit,
    VisitReport,
};
use fieldsync_core::{RecordId, UserId};
use serde::{Deserialize, Serialize};

use crate::db::{Database, DbError, parse_uuid};
use crate::on_pool;
use crate::store::{self, Caller};

/// Most reports the inbox reads before filtering by verdict and sorting.
pub const MAX_INBOX_CANDIDATES: usize = 500;

/// How the inbox is sorted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    /// The visit's planned start (or check-in for an ad-hoc visit).
    #[default]
    Date,
    /// The rep's name.
    Rep,
    /// The account's name.
    Account,
    /// The order value.
    Value,
}

impl SortKey {
    /// Every key, in the order a form offers them.
    pub const ALL: [SortKey; 4] = [
        SortKey::Date,
        SortKey::Rep,
        SortKey::Account,
        SortKey::Value,
    ];

    /// The stable name used in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::Date => "date",
            SortKey::Rep => "rep",
            SortKey::Account => "account",
            SortKey::Value => "value",
        }
    }

    /// The key named `name`.
    pub fn parse(name: &str) -> Option<SortKey> {
        SortKey::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// What the inbox shows.
#[derive(Debug, Clone)]
pub struct InboxFilter {
    /// Reports in this status.
    pub status: ReportStatus,
    /// Only this rep's.
    pub rep: Option<UserId>,
    /// Visits from this time (ms since the epoch, inclusive).
    pub from_ms: Option<i64>,
    /// Visits before this time (ms since the epoch, exclusive).
    pub to_ms: Option<i64>,
    /// Only visits with this verdict (see [`visit_verdict`]).
    pub verdict: Option<GeofenceVerdict>,
    /// Sort order.
    pub sort: SortKey,
    /// Largest first.
    pub descending: bool,
}

impl Default for InboxFilter {
    fn default() -> Self {
        InboxFilter {
            status: ReportStatus::Submitted,
            rep: None,
            from_ms: None,
            to_ms: None,
            verdict: None,
            sort: SortKey::Date,
            descending: true,
        }
    }
}

/// One report in the inbox, with its visit's figures.
#[derive(Debug, Clone, Serialize)]
pub struct InboxRow {
    /// The report.
    pub id: RecordId,
    /// Its status.
    pub status: String,
    /// The rep.
    pub rep_id: Option<UserId>,
    /// The rep's name.
    pub rep_name: Option<String>,
    /// The visit reported on.
    pub visit_id: Option<RecordId>,
    /// The visit's account.
    pub account_id: Option<RecordId>,
    /// The account's name.
    pub account_name: Option<String>,
    /// Planned start.
    pub planned_start: Option<DeviceTime>,
    /// Planned end.
    pub planned_end: Option<DeviceTime>,
    /// Check-in.
    pub check_in: Option<DeviceTime>,
    /// Check-out.
    pub check_out: Option<DeviceTime>,
    /// The visit's geofence verdict (see [`visit_verdict`]).
    pub verdict: Option<GeofenceVerdict>,
    /// Net value of the visit's orders (not cancelled or rejected), per currency.
    pub order_value: Vec<Money>,
    /// When the server last stored a change of the report (Unix seconds).
    pub updated_at: i64,
}

impl InboxRow {
    /// When the visit happened or was planned, for sorting and date filters.
    pub fn visit_ms(&self) -> Option<i64> {
        self.planned_start.or(self.check_in).map(|t| t.at_ms)
    }
}

/// The verdict a visit is filed under: the worse of its check-in's and
/// check-out's (outside, then unverifiable, then no site coordinates, then inside).
pub fn visit_verdict(visit: &Visit) -> Option<GeofenceVerdict> {
    fn rank(v: GeofenceVerdict) -> u8 {
        match v {
            GeofenceVerdict::Outside => 3,
            GeofenceVerdict::UnverifiableOffline => 2,
            GeofenceVerdict::NoSiteCoords => 1,
            GeofenceVerdict::Inside => 0,
        }
    }
    [&visit.check_in, &visit.check_out]
        .into_iter()
        .flatten()
        .map(|p| p.verdict)
        .max_by_key(|v| rank(*v))
}

/// Net value of orders that count (not cancelled or rejected), summed per currency.
pub fn order_value<'a>(orders: impl IntoIterator<Item = &'a Order>) -> Vec<Money> {
    let mut sums: BTreeMap<String, i64> = BTreeMap::new();
    for order in orders {
        if matches!(order.status, OrderStatus::Cancelled | OrderStatus::Rejected) {
            continue;
        }
        if let Ok(totals) = order.totals() {
            let sum = sums.entry(totals.currency).or_default();
            *sum = sum.saturating_add(totals.net);
        }
    }
    sums.into_iter()
        .map(|(currency, minor)| Money::new(minor, currency))
        .collect()
}

/// The principals' `IN` clause shared by the queries here, over `alias`.
fn scope_clause(alias: &str, first: usize) -> String {
    format!(
        "EXISTS (SELECT 1 FROM record_scope s WHERE s.record_id = {alias}.id \
         AND s.principal IN (${}, ${}, ${}, ${}, ${}))",
        first,
        first + 1,
        first + 2,
        first + 3,
        first + 4
    )
}

type CandidateRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    i64,
);

/// The inbox: reports in the filter's status in the caller's scope, with
/// their visits' figures, filtered and sorted.
pub async fn inbox(
    db: &Database,
    caller: &Caller,
    filter: &InboxFilter,
) -> Result<Vec<InboxRow>, DbError> {
    let p = caller.principals();
    let org = *caller.org.as_uuid();
    let status = fieldsync_core::model::Status::as_str(filter.status);
    let sql = format!(
        "SELECT CAST(r.id AS TEXT), r.status, CAST(r.owner_id AS TEXT), u.display_name, \
         CAST(r.parent_id AS TEXT), v.doc, a.doc, r.updated_at \
         FROM records r LEFT JOIN users u ON u.id = r.owner_id \
         LEFT JOIN records v ON v.id = r.parent_id AND v.kind = 'visit' \
         LEFT JOIN records a ON a.id = v.account_id AND a.kind = 'account' \
         WHERE r.org_id = $1 AND r.kind = 'visit_report' AND r.status = $2 AND r.deleted = $3 \
         AND ($4 IS NULL OR r.owner_id = $4) \
         AND ($5 IS NULL OR v.start_ms >= $5) AND ($6 IS NULL OR v.start_ms < $6) \
         AND {} ORDER BY v.start_ms DESC, r.id LIMIT $12",
        scope_clause("r", 7)
    );
    let limit = i64::try_from(MAX_INBOX_CANDIDATES).unwrap_or(i64::MAX);
    let rows: Vec<CandidateRow> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(uuid(org))
            .bind(status)
            .bind(false)
            .bind(filter.rep.map(|u| uuid(*u.as_uuid())))
            .bind(filter.from_ms)
            .bind(filter.to_ms)
            .bind(&p[0])
            .bind(&p[1])
            .bind(&p[2])
            .bind(&p[3])
            .bind(&p[4])
            .bind(limit)
            .fetch_all(pool)
            .await?
    });
    let mut out = Vec::with_capacity(rows.len());
    for (id, status, owner, owner_name, visit_id, visit_doc, account_doc, updated_at) in rows {
        let visit = visit_doc.as_deref().and_then(|b| read_visit(b, &id));
        let account = account_doc.as_deref().and_then(|b| read_account(b, &id));
        let visit_id: Option<RecordId> = visit_id.as_deref().and_then(|s| s.parse().ok());
        let orders = match (&visit, visit_id) {
            (Some(v), Some(vid)) => orders_of_visit(db, caller, vid, v).await?,
            _ => Vec::new(),
        };
        let row = InboxRow {
            id: parse_uuid(&id).map(RecordId::from_uuid)?,
            status: status.unwrap_or_default(),
            rep_id: owner.as_deref().and_then(|s| s.parse().ok()),
            rep_name: owner_name,
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
            verdict: visit.as_ref().and_then(visit_verdict),
            order_value: order_value(orders.iter().map(|(_, o)| o)),
            updated_at,
        };
        if filter.verdict.is_some() && row.verdict != filter.verdict {
            continue;
        }
        out.push(row);
    }
    sort_rows(&mut out, filter.sort, filter.descending);
    Ok(out)
}

/// Sorts inbox rows; rows without the key go last either way, ties by report id.
pub fn sort_rows(rows: &mut [InboxRow], key: SortKey, descending: bool) {
    use std::cmp::Ordering;
    fn cmp_opt<T: Ord>(a: Option<T>, b: Option<T>, descending: bool) -> Ordering {
        match (a, b) {
            (Some(a), Some(b)) if descending => b.cmp(&a),
            (Some(a), Some(b)) => a.cmp(&b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }
    }
    rows.sort_by(|a, b| {
        let first = match key {
            SortKey::Date => cmp_opt(a.visit_ms(), b.visit_ms(), descending),
            SortKey::Rep => cmp_opt(
                a.rep_name.as_ref().map(|s| s.to_lowercase()),
                b.rep_name.as_ref().map(|s| s.to_lowercase()),
                descending,
            ),
            SortKey::Account => cmp_opt(
                a.account_name.as_ref().map(|s| s.to_lowercase()),
                b.account_name.as_ref().map(|s| s.to_lowercase()),
                descending,
            ),
            // Per currency, then amount: one currency is the usual case.
            SortKey::Value => cmp_opt(
                a.order_value.first().map(|m| (m.currency.clone(), m.minor)),
                b.order_value.first().map(|m| (m.currency.clone(), m.minor)),
                descending,
            ),
        };
        first.then_with(|| a.id.cmp(&b.id))
    });
}

fn read_visit(bytes: &[u8], report: &str) -> Option<Visit> {
    match RecordDoc::load(bytes).and_then(|d| d.read_stateful::<Visit>()) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(report, error = %e, "the visit of a report does not read");
            None
        }
    }
}

fn read_account(bytes: &[u8], report: &str) -> Option<Account> {
    match RecordDoc::load(bytes).and_then(|d| d.read::<Account>()) {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::warn!(report, error = %e, "the account of a report does not read");
            None
        }
    }
}

/// Records of `kind` whose parent (projection `parent_id`) is `parent`, in scope.
async fn children(
    db: &Database,
    caller: &Caller,
    kind: RecordKind,
    parent: RecordId,
) -> Result<Vec<(RecordId, Vec<u8>)>, DbError> {
    let p = caller.principals();
    let sql = format!(
        "SELECT CAST(r.id AS TEXT), r.doc FROM records r WHERE r.org_id = $1 AND r.kind = $2 \
         AND r.parent_id = $3 AND r.deleted = $4 AND {} ORDER BY r.created_seq",
        scope_clause("r", 5)
    );
    let rows: Vec<(String, Vec<u8>)> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(uuid(*caller.org.as_uuid()))
            .bind(kind.as_str())
            .bind(uuid(*parent.as_uuid()))
            .bind(false)
            .bind(&p[0])
            .bind(&p[1])
            .bind(&p[2])
            .bind(&p[3])
            .bind(&p[4])
            .fetch_all(pool)
            .await?
    });
    rows.into_iter()
        .map(|(id, doc)| Ok((RecordId::from_uuid(parse_uuid(&id)?), doc)))
        .collect()
}

/// Loads the readable records among `ids` (and the `extra` already found)
/// of `kind`, skipping ones that are gone, out of scope or do not read.
async fn by_ids(
    db: &Database,
    caller: &Caller,
    kind: RecordKind,
    ids: impl IntoIterator<Item = RecordId>,
    found: &mut Vec<(RecordId, Vec<u8>)>,
) -> Result<(), DbError> {
    let known: BTreeSet<RecordId> = found.iter().map(|(id, _)| *id).collect();
    for id in ids {
        if known.contains(&id) {
            continue;
        }
        if let Some((k, doc)) = store::readable_doc(db, caller, id).await?
            && k == kind
        {
            found.push((id, doc));
        }
    }
    Ok(())
}

/// The orders taken on a visit: those naming it and those it names.
async fn orders_of_visit(
    db: &Database,
    caller: &Caller,
    visit_id: RecordId,
    visit: &Visit,
) -> Result<Vec<(RecordId, Order)>, DbError> {
    let mut docs = children(db, caller, RecordKind::Order, visit_id).await?;
    by_ids(
        db,
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

/// A visit as the report page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct VisitView {
    /// The visit's id.
    pub id: RecordId,
    /// The visit.
    pub visit: Visit,
    /// Minutes between check-in and check-out.
    pub time_on_site_min: Option<i64>,
    /// The verdict it is filed under.
    pub verdict: Option<GeofenceVerdict>,
}

/// An order with its derived totals.
#[derive(Debug, Clone, Serialize)]
pub struct OrderView {
    /// The order's id.
    pub id: RecordId,
    /// The order.
    pub order: Order,
    /// Its totals; `None` when its lines do not add up (e.g. mixed currencies).
    pub totals: Option<OrderTotals>,
}

/// One answered question.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerView {
    /// The question's id.
    pub question_id: String,
    /// The question as the template words it (its id when the template is unknown).
    pub question: String,
    /// The answer as text (`yes`, `no`, a choice, a number, text).
    pub answer: String,
    /// SHA-256 of a photo or signature answer.
    pub attachment: Option<String>,
}

/// A filled checklist.
#[derive(Debug, Clone, Serialize)]
pub struct ChecklistView {
    /// The response's id.
    pub id: RecordId,
    /// The template's name, when it can be read.
    pub template_name: Option<String>,
    /// Marked complete.
    pub completed: bool,
    /// Answers in form order.
    pub answers: Vec<AnswerView>,
}

/// An attachment of the report, its visit, orders or checklists.
#[derive(Debug, Clone, Serialize)]
pub struct AttachmentView {
    /// SHA-256 (hex): its name.
    pub sha256: String,
    /// `photo`, `signature` or `document`.
    pub kind: String,
    /// Declared content type.
    pub content_type: String,
    /// Size in bytes.
    pub size: i64,
    /// Uploaded and checked (only then can it be downloaded).
    pub complete: bool,
}

/// Everything the report page shows.
#[derive(Debug, Clone, Serialize)]
pub struct ReportDetail {
    /// The report's id.
    pub id: RecordId,
    /// The report, with its effective status.
    pub report: VisitReport,
    /// Whether the reviewed content changed since it was last submitted.
    pub changed_since_submission: bool,
    /// The rep's name.
    pub rep_name: Option<String>,
    /// Status history, oldest first.
    pub history: Vec<StatusEvent>,
    /// The visit, when it can be read.
    pub visit: Option<VisitView>,
    /// The visit's account.
    pub account: Option<Account>,
    /// The visited site (the visit's location, or the account's only one).
    pub site: Option<Location>,
    /// Orders taken on the visit.
    pub orders: Vec<OrderView>,
    /// Checklists filled on the visit.
    pub checklists: Vec<ChecklistView>,
    /// Photos, signatures and documents.
    pub attachments: Vec<AttachmentView>,
    /// Names of the people the history and comments mention.
    pub names: BTreeMap<UserId, String>,
}

/// The report `id` with everything its page shows, if the caller may read it.
pub async fn detail(
    db: &Database,
    caller: &Caller,
    id: RecordId,
) -> Result<Option<ReportDetail>, DbError> {
    let Some((kind, bytes)) = store::readable_doc(db, caller, id).await? else {
        return Ok(None);
    };
    if kind != RecordKind::VisitReport {
        return Ok(None);
    }
    let doc = RecordDoc::load(&bytes)
        .map_err(|e| DbError::Corrupt(format!("stored report {id} does not load: {e}")))?;
    let report: VisitReport = doc
        .read_stateful()
        .map_err(|e| DbError::Corrupt(format!("stored report {id} does not read: {e}")))?;
    let history = doc.history().unwrap_or_default();

    let visit = match store::readable_doc(db, caller, report.visit_id).await? {
        Some((RecordKind::Visit, b)) => RecordDoc::load(&b)
            .and_then(|d| d.read_stateful::<Visit>())
            .ok(),
        _ => None,
    };
    let account = match &visit {
        Some(v) => match store::readable_doc(db, caller, v.account_id).await? {
            Some((RecordKind::Account, b)) => {
                RecordDoc::load(&b).and_then(|d| d.read::<Account>()).ok()
            }
            _ => None,
        },
        None => None,
    };
    let site = account.as_ref().and_then(|a| {
        visit
            .as_ref()
            .and_then(|v| v.location_id)
            .and_then(|l| a.locations.get(&l))
            .or_else(|| {
                (a.locations.len() == 1)
                    .then(|| a.locations.values().next())
                    .flatten()
            })
            .cloned()
    });

    let mut orders = Vec::new();
    let mut checklists = Vec::new();
    let mut linked: Vec<RecordId> = vec![id];
    if let Some(v) = &visit {
        linked.push(report.visit_id);
        for (oid, order) in orders_of_visit(db, caller, report.visit_id, v).await? {
            linked.push(oid);
            orders.push(OrderView {
                id: oid,
                totals: order.totals().ok(),
                order,
            });
        }
        let mut docs = children(db, caller, RecordKind::ChecklistResponse, report.visit_id).await?;
        by_ids(
            db,
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
            checklists.push(checklist_view(db, caller, rid, response).await?);
        }
    }
    let attachments = attachments_of(db, caller, &linked).await?;

    let mut people: BTreeSet<UserId> = history.iter().map(|e| e.by).collect();
    people.extend(report.comments.values().map(|c| c.by));
    people.insert(report.meta.owner);
    let mut names = BTreeMap::new();
    for user in people {
        if let Some(u) = crate::accounts::user_by_id(db, user).await?
            && u.org == caller.org
        {
            names.insert(user, u.display_name);
        }
    }
    Ok(Some(ReportDetail {
        id,
        changed_since_submission: report.content_hash.is_some() && !report.content_matches(),
        rep_name: names.get(&report.meta.owner).cloned(),
        report,
        history,
        visit: visit.map(|v| VisitView {
            id: v.meta.id,
            time_on_site_min: v.time_on_site_min(),
            verdict: visit_verdict(&v),
            visit: v,
        }),
        account,
        site,
        orders,
        checklists,
        attachments,
        names,
    }))
}

async fn checklist_view(
    db: &Database,
    caller: &Caller,
    id: RecordId,
    response: ChecklistResponse,
) -> Result<ChecklistView, DbError> {
    let template = match store::readable_doc(db, caller, response.template_id).await? {
        Some((RecordKind::ChecklistTemplate, b)) => RecordDoc::load(&b)
            .and_then(|d| d.read::<ChecklistTemplate>())
            .ok(),
        _ => None,
    };
    let position = |qid: &str| {
        template
            .as_ref()
            .and_then(|t| t.questions.get(qid))
            .map_or(u32::MAX, |q| q.position)
    };
    let mut answers: Vec<AnswerView> = response
        .answers
        .iter()
        .map(|(qid, answer)| {
            use fieldsync_core::model::AnswerValue;
            let attachment = match &answer.value {
                AnswerValue::Photo(h) | AnswerValue::Signature(h) => Some(h.clone()),
                _ => None,
            };
            AnswerView {
                question_id: qid.clone(),
                question: template
                    .as_ref()
                    .and_then(|t| t.questions.get(qid))
                    .map_or_else(|| qid.clone(), |q| q.text.clone()),
                answer: answer.value.as_text(),
                attachment,
            }
        })
        .collect();
    answers.sort_by(|a, b| {
        (position(&a.question_id), &a.question_id).cmp(&(position(&b.question_id), &b.question_id))
    });
    Ok(ChecklistView {
        id,
        template_name: template.map(|t| format!("{} (v{})", t.name, t.version)),
        completed: response.completed,
        answers,
    })
}

/// Attachments linked to any of `records` (all readable by the caller).
async fn attachments_of(
    db: &Database,
    caller: &Caller,
    records: &[RecordId],
) -> Result<Vec<AttachmentView>, DbError> {
    let mut out: Vec<AttachmentView> = Vec::new();
    for record in records {
        let rows: Vec<(String, String, String, i64, String)> = on_pool!(db, |pool, uuid| {
            sqlx::query_as(
                "SELECT t.sha256, t.kind, t.content_type, t.size, t.state \
                 FROM attachment_records a JOIN attachments t \
                 ON t.org_id = a.org_id AND t.sha256 = a.sha256 \
                 WHERE a.org_id = $1 AND a.record_id = $2 ORDER BY t.created_at, t.sha256",
            )
            .bind(uuid(*caller.org.as_uuid()))
            .bind(uuid(*record.as_uuid()))
            .fetch_all(pool)
            .await?
        });
        for (sha256, kind, content_type, size, state) in rows {
            if out.iter().any(|a| a.sha256 == sha256) {
                continue;
            }
            out.push(AttachmentView {
                sha256,
                kind,
                content_type,
                size,
                complete: state == "complete",
            });
        }
    }
    Ok(out)
}

/// A user the inbox can filter by.
#[derive(Debug, Clone, Serialize)]
pub struct RepChoice {
    /// The user.
    pub id: UserId,
    /// Their name.
    pub name: String,
}

/// The reps whose reports the caller reviews: their team's (a manager), or
/// the organisation's (an administrator).
pub async fn reps(db: &Database, caller: &Caller) -> Result<Vec<RepChoice>, DbError> {
    let team = match caller.actor.role {
        fieldsync_core::model::Role::Admin | fieldsync_core::model::Role::Server => None,
        _ => match caller.team {
            Some(t) => Some(t),
            None => return Ok(Vec::new()),
        },
    };
    let rows: Vec<(String, String)> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT CAST(id AS TEXT), display_name FROM users WHERE org_id = $1 \
             AND role = 'rep' AND ($2 IS NULL OR team_id = $2) ORDER BY display_name, id",
        )
        .bind(uuid(*caller.org.as_uuid()))
        .bind(team.map(|t| uuid(*t.as_uuid())))
        .fetch_all(pool)
        .await?
    });
    rows.into_iter()
        .map(|(id, name)| {
            Ok(RepChoice {
                id: UserId::from_uuid(parse_uuid(&id)?),
                name,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: u128, rep: Option<&str>, ms: Option<i64>, value: Option<i64>) -> InboxRow {
        InboxRow {
            id: RecordId::from_uuid(uuid::Uuid::from_u128(n)),
            status: "submitted".into(),
            rep_id: None,
            rep_name: rep.map(str::to_owned),
            visit_id: None,
            account_id: None,
            account_name: None,
            planned_start: ms.map(DeviceTime::utc),
            planned_end: None,
            check_in: None,
            check_out: None,
            verdict: None,
            order_value: value
                .map(|v| vec![Money::new(v, "EUR")])
                .unwrap_or_default(),
            updated_at: 0,
        }
    }

    fn ids(rows: &[InboxRow]) -> Vec<u128> {
        rows.iter().map(|r| r.id.as_uuid().as_u128()).collect()
    }

    #[test]
    fn rows_sort_by_each_key_with_missing_values_last() {
        let mut rows = vec![
            row(1, Some("ben"), Some(300), Some(500)),
            row(2, Some("Ana"), None, Some(9_000)),
            row(3, None, Some(100), None),
        ];
        sort_rows(&mut rows, SortKey::Date, true);
        assert_eq!(ids(&rows), [1, 3, 2]);
        sort_rows(&mut rows, SortKey::Date, false);
        assert_eq!(ids(&rows), [3, 1, 2]);
        sort_rows(&mut rows, SortKey::Rep, false);
        assert_eq!(ids(&rows), [2, 1, 3], "case-insensitive");
        sort_rows(&mut rows, SortKey::Value, true);
        assert_eq!(ids(&rows), [2, 1, 3]);
    }

    #[test]
    fn the_worse_verdict_of_check_in_and_check_out_files_the_visit() {
        use fieldsync_core::model::CheckPoint;
        let point = |verdict| CheckPoint {
            at: DeviceTime::utc(0),
            gps: None,
            distance_m: None,
            verdict,
        };
        let meta = fieldsync_core::model::RecordMeta {
            id: RecordId::new(),
            org: fieldsync_core::OrgId::new(),
            owner: UserId::new(),
            team: fieldsync_core::TeamId::new(),
            territory: fieldsync_core::TerritoryId::new(),
        };
        let mut v = Visit::ad_hoc(meta, RecordId::new(), point(GeofenceVerdict::Inside));
        assert_eq!(visit_verdict(&v), Some(GeofenceVerdict::Inside));
        v.check_out = Some(point(GeofenceVerdict::Outside));
        assert_eq!(visit_verdict(&v), Some(GeofenceVerdict::Outside));
        v.check_in = Some(point(GeofenceVerdict::UnverifiableOffline));
        assert_eq!(visit_verdict(&v), Some(GeofenceVerdict::Outside));
    }

    #[test]
    fn order_value_sums_net_per_currency_and_skips_cancelled_orders() {
        use fieldsync_core::model::{OrderLine, Qty};
        let meta = fieldsync_core::model::RecordMeta {
            id: RecordId::new(),
            org: fieldsync_core::OrgId::new(),
            owner: UserId::new(),
            team: fieldsync_core::TeamId::new(),
            territory: fieldsync_core::TerritoryId::new(),
        };
        let order = |minor: i64, tax: u32, status| {
            let mut o = Order::new(meta.clone(), RecordId::new(), "EUR");
            let mut line = OrderLine::new(RecordId::new(), Qty::units(2), Money::new(minor, "EUR"));
            line.tax_rate_bp = tax;
            o.lines.insert(RecordId::new(), line);
            o.status = status;
            o
        };
        let orders = [
            order(1_000, 2_300, OrderStatus::Submitted),
            order(250, 0, OrderStatus::Confirmed),
            order(99_999, 0, OrderStatus::Cancelled),
        ];
        assert_eq!(order_value(&orders), vec![Money::new(2_500, "EUR")]);
    }
}
