//! The review of visit reports, as rules with no I/O: who may review, what a
//! decision needs (a comment to request changes, at most
//! [`MAX_COMMENT_BYTES`]), which status it moves a report to, and what a
//! manager sees of reports (the inbox's rows, filters and sort order; the
//! report page's visit, site, orders, checklists and attachments).
//!
//! The state machine itself (a decision applies only to a submitted report,
//! and only the back office decides) is the shared model's
//! (`fieldsync_core::model::report`); [`apply_decision`] runs it and turns a
//! refusal into a [`Conflict`](Error::Conflict). Figures shown with a report
//! (order value, time on site, geofence verdict) are derived here from the
//! records with the model's functions, never stored.

use std::collections::BTreeMap;

use fieldsync_core::model::{
    Account, Actor, ChecklistResponse, ChecklistTemplate, DeviceTime, GeofenceVerdict, Location,
    Money, Order, OrderStatus, OrderTotals, RecordDoc, ReportStatus, Role, StatusEvent, Visit,
    VisitReport, report,
};
use fieldsync_core::{RecordId, TeamId, UserId};
use serde::{Deserialize, Serialize};

use super::{Error, Result};

/// Most reports one inbox page or one bulk decision covers.
pub const MAX_REPORTS: usize = 200;
/// Longest review comment.
pub const MAX_COMMENT_BYTES: usize = 4_000;
/// Most reports the managers' inbox page reads before filtering by verdict
/// and sorting: one manager's team has far fewer open reports than that.
pub const MAX_INBOX_CANDIDATES: usize = 500;

/// What a caller is doing with visit reports; each refusal says it its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reviewing {
    /// Listing the reports in a status.
    Inbox,
    /// Reading one report with everything its page shows.
    Reading,
    /// Approving or requesting changes.
    Deciding,
}

/// Reports are reviewed by the back office (managers and administrators) only.
pub fn may_review(role: Role, what: Reviewing) -> Result<()> {
    if role.is_back_office() {
        return Ok(());
    }
    Err(Error::Forbidden(
        match what {
            Reviewing::Inbox => "the review inbox is for managers and administrators",
            Reviewing::Reading => "visit reports are reviewed by managers and administrators",
            Reviewing::Deciding => "only managers and administrators review visit reports",
        }
        .into(),
    ))
}

/// A record id given as text (in a path or a body).
pub fn parse_record_id(text: &str) -> Result<RecordId> {
    text.parse()
        .map_err(|_| Error::BadRequest(format!("{text:?} is not a record id")))
}

/// The status an inbox lists, by its stable name.
pub fn inbox_status(name: &str) -> Result<ReportStatus> {
    <ReportStatus as fieldsync_core::model::Status>::parse(name).ok_or_else(|| {
        Error::BadRequest(format!(
            "unknown report status {name:?}; use draft, submitted, approved or changes_requested"
        ))
    })
}

/// How many reports one inbox answer holds: 1 to [`MAX_REPORTS`].
pub fn inbox_limit(asked: usize) -> usize {
    asked.clamp(1, MAX_REPORTS)
}

/// A bulk decision covers 1 to [`MAX_REPORTS`] reports.
pub fn check_bulk_size(ids: usize) -> Result<()> {
    if ids == 0 || ids > MAX_REPORTS {
        return Err(Error::BadRequest(format!(
            "give 1 to {MAX_REPORTS} report ids"
        )));
    }
    Ok(())
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

impl Decision {
    /// The stable name used in forms and the JSON API.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::RequestChanges => "request_changes",
        }
    }

    /// The decision named `name`.
    pub fn parse(name: &str) -> Option<Decision> {
        [Decision::Approve, Decision::RequestChanges]
            .into_iter()
            .find(|d| d.as_str() == name)
    }

    /// The status a report has once this decision is stored.
    pub fn status(self) -> ReportStatus {
        match self {
            Decision::Approve => ReportStatus::Approved,
            Decision::RequestChanges => ReportStatus::ChangesRequested,
        }
    }
}

/// Why a review comment cannot go with a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommentProblem {
    /// Over [`MAX_COMMENT_BYTES`].
    TooLong,
    /// Changes requested without saying which.
    Required,
}

impl From<CommentProblem> for Error {
    fn from(p: CommentProblem) -> Self {
        Error::BadRequest(match p {
            CommentProblem::TooLong => {
                format!("a review comment holds at most {MAX_COMMENT_BYTES} bytes")
            }
            CommentProblem::Required => {
                "say what to change: a comment is required to request changes".to_owned()
            }
        })
    }
}

/// The comment that goes with `decision`: trimmed, `None` when blank; at most
/// [`MAX_COMMENT_BYTES`], and required to request changes.
pub fn review_comment(
    decision: Decision,
    comment: Option<&str>,
) -> Result<Option<&str>, CommentProblem> {
    let comment = comment.map(str::trim).filter(|c| !c.is_empty());
    if comment.is_some_and(|c| c.len() > MAX_COMMENT_BYTES) {
        return Err(CommentProblem::TooLong);
    }
    if decision == Decision::RequestChanges && comment.is_none() {
        return Err(CommentProblem::Required);
    }
    Ok(comment)
}

/// Writes `decision` into the report's document as `actor` (the model checks
/// the report is submitted and the actor may decide); a refusal is a conflict.
pub fn apply_decision(
    doc: &mut RecordDoc,
    actor: &Actor,
    decision: Decision,
    comment: Option<&str>,
    at: DeviceTime,
) -> Result<()> {
    let made = match decision {
        Decision::Approve => report::approve(doc, actor, at, comment.map(str::to_owned)),
        Decision::RequestChanges => {
            report::request_changes(doc, actor, at, comment.unwrap_or_default())
        }
    };
    made.map(|_| ()).map_err(|e| Error::Conflict(e.to_string()))
}

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

/// What the managers' inbox page shows.
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

/// One report in the managers' inbox, with its visit's figures.
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
        .map(|p| p.effective_verdict())
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

impl VisitView {
    /// The view of `visit`, with its derived figures.
    pub fn of(visit: Visit) -> Self {
        VisitView {
            id: visit.meta.id,
            time_on_site_min: visit.time_on_site_min(),
            verdict: visit_verdict(&visit),
            visit,
        }
    }
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

/// Whether the reviewed content changed since the report was last submitted.
pub fn changed_since_submission(report: &VisitReport) -> bool {
    report.content_hash.is_some() && !report.content_matches()
}

/// The visited site: the visit's location on the account, or the account's
/// only location when the visit names none.
pub fn site_of(account: &Account, visit: Option<&Visit>) -> Option<Location> {
    visit
        .and_then(|v| v.location_id)
        .and_then(|l| account.locations.get(&l))
        .or_else(|| {
            (account.locations.len() == 1)
                .then(|| account.locations.values().next())
                .flatten()
        })
        .cloned()
}

/// A filled checklist as the page shows it: each answer worded as the
/// template asks it, in the template's order (unknown questions last, by id).
pub fn checklist_view(
    id: RecordId,
    response: &ChecklistResponse,
    template: Option<&ChecklistTemplate>,
) -> ChecklistView {
    use fieldsync_core::model::AnswerValue;
    let position = |qid: &str| {
        template
            .and_then(|t| t.questions.get(qid))
            .map_or(u32::MAX, |q| q.position)
    };
    let mut answers: Vec<AnswerView> = response
        .answers
        .iter()
        .map(|(qid, answer)| {
            let attachment = match &answer.value {
                AnswerValue::Photo(h) | AnswerValue::Signature(h) => Some(h.clone()),
                _ => None,
            };
            AnswerView {
                question_id: qid.clone(),
                question: template
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
    ChecklistView {
        id,
        template_name: template.map(|t| format!("{} (v{})", t.name, t.version)),
        completed: response.completed,
        answers,
    }
}

/// A user the inbox can filter by.
#[derive(Debug, Clone, Serialize)]
pub struct RepChoice {
    /// The user.
    pub id: UserId,
    /// Their name.
    pub name: String,
}

/// Whose reps a reviewer chooses among.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepsOf {
    /// The whole organisation's (an administrator, the server).
    Organisation,
    /// One team's (a manager's own).
    Team(TeamId),
    /// Nobody's (a manager without a team).
    Nobody,
}

/// The reps whose reports `role` reviews: a manager their team's, an
/// administrator the organisation's.
pub fn reps_of(role: Role, team: Option<TeamId>) -> RepsOf {
    match (role, team) {
        (Role::Admin | Role::Server, _) => RepsOf::Organisation,
        (_, Some(t)) => RepsOf::Team(t),
        (_, None) => RepsOf::Nobody,
    }
}

#[cfg(test)]
mod tests {
    use fieldsync_core::model::{CheckPoint, RecordMeta};
    use fieldsync_core::{DeviceId, OrgId, TerritoryId};

    use super::*;

    fn meta() -> RecordMeta {
        RecordMeta {
            id: RecordId::new(),
            org: OrgId::new(),
            owner: UserId::new(),
            team: TeamId::new(),
            territory: TerritoryId::new(),
        }
    }

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
    fn only_the_back_office_reviews_reports() {
        for (role, allowed) in [
            (Role::Manager, true),
            (Role::Admin, true),
            (Role::Rep, false),
            (Role::Technician, false),
        ] {
            for what in [Reviewing::Inbox, Reviewing::Reading, Reviewing::Deciding] {
                let verdict = may_review(role, what);
                assert_eq!(verdict.is_ok(), allowed, "{role:?} {what:?}");
                if let Err(e) = verdict {
                    assert_eq!(e.code(), "forbidden");
                }
            }
        }
    }

    #[test]
    fn a_request_for_changes_needs_a_comment() {
        use CommentProblem::Required;
        use Decision::{Approve, RequestChanges};
        type Case = (
            Decision,
            Option<&'static str>,
            Result<Option<&'static str>, CommentProblem>,
        );
        let table: [Case; 6] = [
            (Approve, None, Ok(None)),
            (Approve, Some("  "), Ok(None)),
            (Approve, Some(" fine "), Ok(Some("fine"))),
            (RequestChanges, Some("add photos"), Ok(Some("add photos"))),
            (RequestChanges, None, Err(Required)),
            (RequestChanges, Some(" \n "), Err(Required)),
        ];
        for (decision, comment, expected) in table {
            assert_eq!(
                review_comment(decision, comment),
                expected,
                "{decision:?} {comment:?}"
            );
        }
        assert_eq!(
            Error::from(Required).to_string(),
            "say what to change: a comment is required to request changes"
        );
    }

    #[test]
    fn a_comment_over_the_limit_is_refused_whatever_the_decision() {
        let long = "x".repeat(MAX_COMMENT_BYTES + 1);
        for decision in [Decision::Approve, Decision::RequestChanges] {
            assert_eq!(
                review_comment(decision, Some(&long)),
                Err(CommentProblem::TooLong)
            );
        }
        let at_limit = "x".repeat(MAX_COMMENT_BYTES);
        assert!(review_comment(Decision::Approve, Some(&at_limit)).is_ok());
        let e = Error::from(CommentProblem::TooLong);
        assert_eq!(e.to_string(), "a review comment holds at most 4000 bytes");
    }

    #[test]
    fn each_decision_names_the_status_it_leads_to() {
        for (decision, status, name) in [
            (Decision::Approve, ReportStatus::Approved, "approve"),
            (
                Decision::RequestChanges,
                ReportStatus::ChangesRequested,
                "request_changes",
            ),
        ] {
            assert_eq!(decision.status(), status);
            assert_eq!(decision.as_str(), name);
            assert_eq!(Decision::parse(name), Some(decision));
        }
        assert_eq!(Decision::parse("reject"), None);
    }

    #[test]
    fn a_bulk_decision_covers_one_to_two_hundred_reports() {
        for (n, ok) in [
            (0, false),
            (1, true),
            (MAX_REPORTS, true),
            (MAX_REPORTS + 1, false),
        ] {
            assert_eq!(check_bulk_size(n).is_ok(), ok, "{n}");
        }
    }

    #[test]
    fn inbox_statuses_are_the_report_statuses_and_limits_are_clamped() {
        assert_eq!(inbox_status("approved").ok(), Some(ReportStatus::Approved));
        let e = inbox_status("done").expect_err("unknown");
        assert!(e.to_string().contains("\"done\""), "{e}");
        assert_eq!(inbox_limit(0), 1);
        assert_eq!(inbox_limit(100), 100);
        assert_eq!(inbox_limit(10_000), MAX_REPORTS);
        assert_eq!(
            parse_record_id("nope").expect_err("not an id").to_string(),
            "\"nope\" is not a record id"
        );
    }

    #[test]
    fn a_decision_applies_only_to_a_submitted_report() {
        let rep = Actor::on_device(UserId::new(), Role::Rep, DeviceId::new());
        let manager = Actor::without_device(UserId::new(), Role::Manager);
        let mut m = meta();
        m.owner = rep.user;
        let mut draft = VisitReport::new(m, RecordId::new());
        draft.summary = "Shelf share up".into();
        let mut doc = RecordDoc::create_stateful(
            &draft,
            automerge::ActorId::random(),
            &rep,
            DeviceTime::utc(0),
        )
        .expect("create");
        let refused = apply_decision(
            &mut doc,
            &manager,
            Decision::Approve,
            None,
            DeviceTime::utc(1),
        )
        .expect_err("a draft is not decided");
        assert_eq!(refused.code(), "conflict");
        report::submit(&mut doc, &rep, DeviceTime::utc(2)).expect("submit");
        apply_decision(
            &mut doc,
            &manager,
            Decision::RequestChanges,
            Some("add the prices"),
            DeviceTime::utc(3),
        )
        .expect("decided");
        let r: VisitReport = doc.read_stateful().expect("read");
        assert_eq!(r.status, ReportStatus::ChangesRequested);
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
        let point = |verdict| CheckPoint {
            at: DeviceTime::utc(0),
            gps: None,
            distance_m: None,
            verdict,
            server_verdict: None,
            server_distance_m: None,
        };
        let mut v = Visit::ad_hoc(meta(), RecordId::new(), point(GeofenceVerdict::Inside));
        assert_eq!(visit_verdict(&v), Some(GeofenceVerdict::Inside));
        v.check_out = Some(point(GeofenceVerdict::Outside));
        assert_eq!(visit_verdict(&v), Some(GeofenceVerdict::Outside));
        v.check_in = Some(point(GeofenceVerdict::UnverifiableOffline));
        assert_eq!(visit_verdict(&v), Some(GeofenceVerdict::Outside));
    }

    #[test]
    fn order_value_sums_net_per_currency_and_skips_cancelled_orders() {
        use fieldsync_core::model::{OrderLine, Qty};
        let meta = meta();
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

    #[test]
    fn reviewers_choose_among_their_own_reps() {
        let t = TeamId::new();
        assert_eq!(reps_of(Role::Admin, Some(t)), RepsOf::Organisation);
        assert_eq!(reps_of(Role::Server, None), RepsOf::Organisation);
        assert_eq!(reps_of(Role::Manager, Some(t)), RepsOf::Team(t));
        assert_eq!(reps_of(Role::Manager, None), RepsOf::Nobody);
    }
}
