//! The office's side of orders, and the approval of technicians' time, as
//! rules with no I/O.
//!
//! **Orders.** The server decides every submitted order in the push that
//! submits it (`domain::authority`: `confirmed` within the price list's
//! policy, `pending_approval` beyond it). What is left to people:
//!
//! - a manager (their team's orders) or an administrator **approves** an order
//!   waiting for approval. The state machine lets only the server confirm an
//!   order, so the approval is the server's own transition
//!   (`pending_approval → confirmed`, made under the server's actor of the
//!   organisation), taken only after the use case checked that the approver
//!   may decide on this order; the event's reason names the approving manager
//!   ([`approval_reason`]), so the order's history, which every device syncs,
//!   says who approved and why;
//! - they **reject** it with a comment (required, like a request for changes
//!   on a report), as their own transition;
//! - an administrator, or the server on an operator's command, records its
//!   **fulfilment** (`confirmed → fulfilled`).
//!
//! A confirmed order is locked: the write table of the shared model
//! (`fieldsync_core::model::rules`) gives no field of an order to anyone in
//! `confirmed`, and the device store and the server's merge both apply it.
//!
//! **Time entries.** A technician's time entries start `pending`; a manager or
//! an administrator approves or rejects each ended one
//! (`time_entries.<id>.approval`, written on their behalf, the office's field
//! in the write table).
//!
//! Figures shown with an order (discount, value against the list price) are
//! derived here from the order and its price list with the model's
//! [`Order::totals`], never stored.

use std::collections::BTreeMap;

use fieldsync_core::model::{
    Actor, Approval, Assignment, DeviceTime, Order, OrderStatus, PriceList, RecordDoc, Role,
    Stateful, Status, StatusEvent, TimeKind, TransitionRequest,
};
use fieldsync_core::{RecordId, UserId};
use serde::{Deserialize, Serialize};

use super::{Error, Result};

/// Most orders one queue answer holds.
pub const MAX_ORDERS: usize = 200;
/// Longest decision comment.
pub const MAX_COMMENT_BYTES: usize = 4_000;
/// Most assignments the time approvals read (most recently changed first).
pub const MAX_ASSIGNMENTS: usize = 500;

/// What a caller is doing with orders; each refusal says it its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// Listing the orders in a status, or reading one.
    Reading,
    /// Approving or rejecting an order waiting for approval.
    Deciding,
    /// Recording an order's fulfilment.
    Fulfilling,
}

/// Who may do what with orders: managers and administrators read and decide
/// (the scope of the records they read limits them to their team's, or the
/// organisation's); administrators and the server record fulfilment.
pub fn may_handle(role: Role, what: Handling) -> Result<()> {
    let allowed = match what {
        Handling::Reading | Handling::Deciding => role.is_back_office(),
        Handling::Fulfilling => matches!(role, Role::Admin | Role::Server),
    };
    if allowed {
        return Ok(());
    }
    Err(Error::Forbidden(
        match what {
            Handling::Reading => "the order queue is for managers and administrators",
            Handling::Deciding => "only managers and administrators approve or reject orders",
            Handling::Fulfilling => "an order's fulfilment is recorded by an administrator",
        }
        .into(),
    ))
}

/// A record id given as text (in a path or a body).
pub fn parse_record_id(text: &str) -> Result<RecordId> {
    text.trim()
        .parse()
        .map_err(|_| Error::BadRequest(format!("{text:?} is not a record id")))
}

/// The status a queue lists, by its stable name.
pub fn queue_status(name: &str) -> Result<OrderStatus> {
    OrderStatus::parse(name).ok_or_else(|| {
        Error::BadRequest(format!(
            "unknown order status {name:?}; use one of {}",
            OrderStatus::ALL
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// How many orders one queue answer holds: 1 to [`MAX_ORDERS`].
pub fn queue_limit(asked: usize) -> usize {
    asked.clamp(1, MAX_ORDERS)
}

/// A decision on an order waiting for approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderDecision {
    /// Confirm the order (made by the server for the approver).
    Approve,
    /// Refuse it; a comment is required.
    Reject,
}

impl OrderDecision {
    /// The stable name used in forms, the JSON API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderDecision::Approve => "approve",
            OrderDecision::Reject => "reject",
        }
    }

    /// The decision named `name`.
    pub fn parse(name: &str) -> Option<OrderDecision> {
        [OrderDecision::Approve, OrderDecision::Reject]
            .into_iter()
            .find(|d| d.as_str() == name)
    }

    /// The status an order has once this decision is stored.
    pub fn status(self) -> OrderStatus {
        match self {
            OrderDecision::Approve => OrderStatus::Confirmed,
            OrderDecision::Reject => OrderStatus::Rejected,
        }
    }
}

/// The comment that goes with `decision`: trimmed, `None` when blank; at most
/// [`MAX_COMMENT_BYTES`], and required to reject.
pub fn decision_comment(decision: OrderDecision, comment: Option<&str>) -> Result<Option<&str>> {
    let comment = comment.map(str::trim).filter(|c| !c.is_empty());
    if comment.is_some_and(|c| c.len() > MAX_COMMENT_BYTES) {
        return Err(Error::BadRequest(format!(
            "a comment holds at most {MAX_COMMENT_BYTES} bytes"
        )));
    }
    if decision == OrderDecision::Reject && comment.is_none() {
        return Err(Error::BadRequest(
            "say why: a comment is required to reject an order".into(),
        ));
    }
    Ok(comment)
}

/// The reason of the server's confirmation made on a person's approval: names
/// the approver (name, role and id, so it stays true if the name changes) and
/// carries their comment.
pub fn approval_reason(name: &str, role: Role, user: UserId, comment: Option<&str>) -> String {
    let name = name.trim();
    let who = if name.is_empty() {
        format!("{role} {user}")
    } else {
        format!("{name} ({role} {user})")
    };
    match comment {
        Some(c) => format!("approved by {who}: {c}"),
        None => format!("approved by {who}"),
    }
}

/// Takes `decision` on the order in `doc`: the approval as `server` (the
/// server's actor) with [`approval_reason`], the rejection as `approver`
/// with the comment. Refused (a conflict) unless the order waits for approval.
pub fn apply_decision(
    doc: &mut RecordDoc,
    approver: &Actor,
    approver_name: &str,
    server: &Actor,
    decision: OrderDecision,
    comment: Option<&str>,
    at: DeviceTime,
) -> Result<()> {
    let status = doc
        .status::<OrderStatus>()
        .map_err(|e| Error::internal(format!("stored order does not read: {e}")))?;
    if status != OrderStatus::PendingApproval {
        return Err(Error::Conflict(format!(
            "the order is {}; only an order waiting for approval is approved or rejected",
            status.as_str()
        )));
    }
    let made = match decision {
        OrderDecision::Approve => {
            let reason = approval_reason(approver_name, approver.role, approver.user, comment);
            doc.transition::<Order>(
                server,
                &TransitionRequest::new(OrderStatus::Confirmed, at).with_reason(reason),
                |_| {},
            )
        }
        OrderDecision::Reject => doc.transition::<Order>(
            approver,
            &TransitionRequest::new(OrderStatus::Rejected, at)
                .with_reason(comment.unwrap_or_default()),
            |_| {},
        ),
    };
    made.map(|_| ()).map_err(|e| Error::Conflict(e.to_string()))
}

/// Records the fulfilment of the confirmed order in `doc` as `actor` (an
/// administrator or the server); a note goes with it when given.
pub fn apply_fulfilment(
    doc: &mut RecordDoc,
    actor: &Actor,
    note: Option<&str>,
    at: DeviceTime,
) -> Result<()> {
    let note = note.map(str::trim).filter(|n| !n.is_empty());
    if note.is_some_and(|n| n.len() > MAX_COMMENT_BYTES) {
        return Err(Error::BadRequest(format!(
            "a note holds at most {MAX_COMMENT_BYTES} bytes"
        )));
    }
    let mut req = TransitionRequest::new(OrderStatus::Fulfilled, at);
    req.reason = note.map(str::to_owned);
    doc.transition::<Order>(actor, &req, |_| {})
        .map(|_| ())
        .map_err(|e| Error::Conflict(e.to_string()))
}

/// One line of an order as its page shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LineView {
    /// The line's id.
    pub id: String,
    /// The product.
    pub product_id: String,
    /// The line's text.
    pub description: Option<String>,
    /// Quantity, as text with up to four decimals.
    pub qty: String,
    /// Unit price (minor units of the order's currency).
    pub unit_price: i64,
    /// The price list's unit price for the product, when it is on the list.
    pub list_price: Option<i64>,
    /// The line's discount as a share of its gross amount, in basis points.
    pub discount_bp: Option<i64>,
    /// Quantity × unit price.
    pub gross: i64,
    /// The discount.
    pub discount: i64,
    /// Gross less discount.
    pub net: i64,
    /// Net plus tax.
    pub total: i64,
}

/// A status event as a page shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventView {
    /// When (ms since the epoch, by the writer's clock).
    pub at_ms: i64,
    /// The status before (`None` at creation).
    pub from: Option<String>,
    /// The status after.
    pub to: String,
    /// Who made it.
    pub by: String,
    /// Their name, when they are a user of the organisation.
    pub by_name: Option<String>,
    /// Their role.
    pub role: String,
    /// The reason or comment given.
    pub reason: Option<String>,
}

/// An order with the figures the queue and its page show.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrderView {
    /// The order.
    pub id: String,
    /// Its status.
    pub status: String,
    /// The rep.
    pub rep_id: String,
    /// The rep's name.
    pub rep_name: Option<String>,
    /// The account.
    pub account_id: String,
    /// The account's name.
    pub account_name: Option<String>,
    /// The visit it was taken on.
    pub visit_id: Option<String>,
    /// When it was submitted (ms since the epoch), else created.
    pub date_ms: Option<i64>,
    /// ISO 4217 currency of every amount.
    pub currency: String,
    /// Requested delivery date.
    pub delivery_date: Option<String>,
    /// The rep's notes.
    pub notes: Option<String>,
    /// The price list applied (its own, else the account's).
    pub price_list_id: Option<String>,
    /// Its name.
    pub price_list_name: Option<String>,
    /// Sum of the lines' gross amounts.
    pub gross: i64,
    /// Sum of the lines' discounts.
    pub discount: i64,
    /// Net value (gross less discounts, before tax).
    pub net: i64,
    /// Tax.
    pub tax: i64,
    /// Grand total.
    pub total: i64,
    /// The discount as a share of the gross amount, in basis points.
    pub discount_bp: Option<i64>,
    /// Value of the lines at the list's prices (lines on the list only).
    pub list_value: Option<i64>,
    /// Net value against that list value of the same lines, in basis points
    /// (−1,250: sold 12.5 % under the list price).
    pub vs_list_bp: Option<i64>,
    /// Why the server held it for approval (the reason of the latest event
    /// into `pending_approval`).
    pub pending_reasons: Option<String>,
    /// The lines (only in the order's own answer; empty in the queue).
    pub lines: Vec<LineView>,
    /// The status history, oldest first (only in the order's own answer).
    pub history: Vec<EventView>,
}

fn share_bp(part: i64, whole: i64) -> Option<i64> {
    (whole != 0).then(|| {
        let v = i128::from(part) * 10_000 / i128::from(whole);
        i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
    })
}

/// The order with its figures: totals by the model, the list's prices for
/// the lines on `list`, the reasons it waits and its history (`names` of
/// the people in it).
pub fn order_view(
    id: RecordId,
    order: &Order,
    history: &[StatusEvent],
    list: Option<(RecordId, &PriceList)>,
    account_name: Option<String>,
    names: &BTreeMap<UserId, String>,
    with_details: bool,
) -> Result<OrderView> {
    let totals = order
        .totals()
        .map_err(|e| Error::internal(format!("order {id} has no totals: {e}")))?;
    let list_price = |product: &RecordId| {
        list.and_then(|(_, l)| {
            (l.currency == order.currency)
                .then(|| l.items.get(product).map(|i| i.unit_price.minor))
                .flatten()
        })
    };
    // The net of the lines on the list against their value at list prices.
    let mut list_value: Option<i64> = None;
    let mut net_on_list: i64 = 0;
    let mut lines = Vec::new();
    for (line_id, line) in &order.lines {
        let t = totals.lines.get(line_id);
        let lp = list_price(&line.product_id);
        if let (Some(lp), Some(t)) = (lp, t) {
            let at_list = i128::from(line.qty.0) * i128::from(lp) / 10_000;
            let at_list = i64::try_from(at_list).unwrap_or(i64::MAX);
            list_value = Some(list_value.unwrap_or(0).saturating_add(at_list));
            net_on_list = net_on_list.saturating_add(t.net);
        }
        if with_details {
            lines.push(LineView {
                id: line_id.to_string(),
                product_id: line.product_id.to_string(),
                description: line.description.clone(),
                qty: line.qty.to_string(),
                unit_price: line.unit_price.minor,
                list_price: lp,
                discount_bp: t.and_then(|t| share_bp(t.discount, t.gross)),
                gross: t.map_or(0, |t| t.gross),
                discount: t.map_or(0, |t| t.discount),
                net: t.map_or(0, |t| t.net),
                total: t.map_or(0, |t| t.total),
            });
        }
    }
    let vs_list_bp = list_value.and_then(|lv| share_bp(net_on_list.saturating_sub(lv), lv));
    let submitted = OrderStatus::Submitted.as_str();
    let date_ms = history
        .iter()
        .rev()
        .find(|e| e.to == submitted)
        .or_else(|| history.first())
        .map(|e| e.at.at_ms);
    let pending = OrderStatus::PendingApproval.as_str();
    let pending_reasons = history
        .iter()
        .rev()
        .find(|e| e.to == pending)
        .and_then(|e| e.reason.clone());
    let history = if with_details {
        history
            .iter()
            .map(|e| EventView {
                at_ms: e.at.at_ms,
                from: e.from.clone(),
                to: e.to.clone(),
                by: e.by.to_string(),
                by_name: names.get(&e.by).cloned(),
                role: e.role.as_str().to_owned(),
                reason: e.reason.clone(),
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(OrderView {
        id: id.to_string(),
        status: order.status().as_str().to_owned(),
        rep_id: order.meta.owner.to_string(),
        rep_name: names.get(&order.meta.owner).cloned(),
        account_id: order.account_id.to_string(),
        account_name,
        visit_id: order.visit_id.map(|v| v.to_string()),
        date_ms,
        currency: order.currency.clone(),
        delivery_date: order.delivery_date.clone(),
        notes: order.notes.clone(),
        price_list_id: list.map(|(id, _)| id.to_string()),
        price_list_name: list.map(|(_, l)| l.name.clone()),
        gross: totals.gross,
        discount: totals.discount,
        net: totals.net,
        tax: totals.tax,
        total: totals.total,
        discount_bp: share_bp(totals.discount, totals.gross),
        list_value,
        vs_list_bp,
        pending_reasons,
        lines,
        history,
    })
}

/// A decision on a technician's time entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimeDecision {
    /// Accept the time as booked.
    Approve,
    /// Refuse it.
    Reject,
}

impl TimeDecision {
    /// The stable name used in forms and the JSON API.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeDecision::Approve => "approve",
            TimeDecision::Reject => "reject",
        }
    }

    /// The decision named `name`.
    pub fn parse(name: &str) -> Option<TimeDecision> {
        [TimeDecision::Approve, TimeDecision::Reject]
            .into_iter()
            .find(|d| d.as_str() == name)
    }

    /// The approval state it gives the entry.
    pub fn approval(self) -> Approval {
        match self {
            TimeDecision::Approve => Approval::Approved,
            TimeDecision::Reject => Approval::Rejected,
        }
    }
}

/// Time entries are approved by managers (their team's technicians) and
/// administrators.
pub fn may_approve_time(role: Role) -> Result<()> {
    if matches!(role, Role::Manager | Role::Admin) {
        return Ok(());
    }
    Err(Error::Forbidden(
        "only managers and administrators approve time entries".into(),
    ))
}

/// One ended time entry waiting for approval.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TimeEntryView {
    /// The assignment it is booked on.
    pub assignment_id: String,
    /// The entry's id.
    pub entry_id: String,
    /// The technician.
    pub technician_id: String,
    /// The technician's name.
    pub technician_name: Option<String>,
    /// The job the assignment is for.
    pub job_id: String,
    /// `travel`, `work` or `break`.
    pub kind: String,
    /// Start (ms since the epoch).
    pub start_ms: i64,
    /// End (ms since the epoch).
    pub end_ms: i64,
    /// Whole minutes.
    pub minutes: i64,
    /// The technician's note.
    pub note: Option<String>,
}

fn kind_name(k: TimeKind) -> &'static str {
    match k {
        TimeKind::Travel => "travel",
        TimeKind::Work => "work",
        TimeKind::Break => "break",
    }
}

/// The ended entries of an assignment still `pending`, oldest first.
pub fn pending_entries(
    id: RecordId,
    a: &Assignment,
    names: &BTreeMap<UserId, String>,
) -> Vec<TimeEntryView> {
    let mut out: Vec<TimeEntryView> = a
        .time_entries
        .iter()
        .filter(|(_, e)| e.approval == Approval::Pending)
        .filter_map(|(entry_id, e)| {
            let end = e.end?;
            Some(TimeEntryView {
                assignment_id: id.to_string(),
                entry_id: entry_id.to_string(),
                technician_id: a.meta.owner.to_string(),
                technician_name: names.get(&a.meta.owner).cloned(),
                job_id: a.job_id.to_string(),
                kind: kind_name(e.kind).to_owned(),
                start_ms: e.start.at_ms,
                end_ms: end.at_ms,
                minutes: e.minutes().unwrap_or(0),
                note: e.note.clone(),
            })
        })
        .collect();
    out.sort_by_key(|e| e.start_ms);
    out
}

/// Writes `decision` on entry `entry` of the assignment in `doc` as a person
/// of `role`: only an ended entry still pending is decided (a conflict
/// otherwise), and the model's write table checks the role may write it.
pub fn decide_time_entry(
    doc: &mut RecordDoc,
    role: Role,
    entry: RecordId,
    decision: TimeDecision,
    at: DeviceTime,
) -> Result<()> {
    let a: Assignment = doc
        .read_stateful()
        .map_err(|e| Error::internal(format!("stored assignment does not read: {e}")))?;
    let Some(e) = a.time_entries.get(&entry) else {
        return Err(Error::NotFound);
    };
    if e.end.is_none() {
        return Err(Error::Conflict(
            "the time entry is still running; it is decided once it has ended".into(),
        ));
    }
    if e.approval != Approval::Pending {
        return Err(Error::Conflict(format!(
            "the time entry is already {}",
            e.approval.as_str()
        )));
    }
    doc.update_by::<Assignment>(Some(role), at, |a| {
        if let Some(e) = a.time_entries.get_mut(&entry) {
            e.approval = decision.approval();
        }
    })
    .map(|_| ())
    .map_err(|e| Error::Conflict(e.to_string()))
}

#[cfg(test)]
mod tests {
    use fieldsync_core::model::{Money, OrderLine, PriceItem, Qty, RecordMeta, TimeEntry, order};
    use fieldsync_core::{DeviceId, OrgId, TeamId, TerritoryId};

    use super::*;

    fn meta(owner: UserId) -> RecordMeta {
        RecordMeta {
            id: RecordId::new(),
            org: OrgId::new(),
            owner,
            team: TeamId::new(),
            territory: TerritoryId::new(),
        }
    }

    #[test]
    fn who_reads_decides_and_fulfils() {
        use Handling::*;
        let table = [
            (Role::Rep, [false, false, false]),
            (Role::Technician, [false, false, false]),
            (Role::Manager, [true, true, false]),
            (Role::Admin, [true, true, true]),
            (Role::Server, [true, true, true]),
        ];
        for (role, allowed) in table {
            for (what, ok) in [Reading, Deciding, Fulfilling].into_iter().zip(allowed) {
                let got = may_handle(role, what);
                assert_eq!(got.is_ok(), ok, "{role:?} {what:?}");
                if let Err(e) = got {
                    assert_eq!(e.code(), "forbidden");
                }
            }
        }
        assert!(may_approve_time(Role::Manager).is_ok());
        assert!(may_approve_time(Role::Admin).is_ok());
        assert!(may_approve_time(Role::Technician).is_err());
        assert!(may_approve_time(Role::Rep).is_err());
    }

    #[test]
    fn a_rejection_needs_a_comment_and_comments_are_bounded() {
        use OrderDecision::*;
        assert_eq!(decision_comment(Approve, None).ok(), Some(None));
        assert_eq!(
            decision_comment(Approve, Some(" ok ")).ok(),
            Some(Some("ok"))
        );
        assert_eq!(
            decision_comment(Reject, Some(" too cheap ")).ok(),
            Some(Some("too cheap"))
        );
        for blank in [None, Some(""), Some(" \n ")] {
            let e = decision_comment(Reject, blank).expect_err("a comment is required");
            assert!(e.to_string().contains("comment is required"), "{e}");
        }
        let long = "x".repeat(MAX_COMMENT_BYTES + 1);
        assert!(decision_comment(Approve, Some(&long)).is_err());
        assert_eq!(OrderDecision::parse("approve"), Some(Approve));
        assert_eq!(OrderDecision::parse("reject"), Some(Reject));
        assert_eq!(OrderDecision::parse("cancel"), None);
        assert_eq!(Approve.status(), OrderStatus::Confirmed);
        assert_eq!(Reject.status(), OrderStatus::Rejected);
    }

    #[test]
    fn the_approval_reason_names_the_approver() {
        let u = UserId::new();
        assert_eq!(
            approval_reason("Mona", Role::Manager, u, Some("key account")),
            format!("approved by Mona (manager {u}): key account")
        );
        assert_eq!(
            approval_reason(" ", Role::Admin, u, None),
            format!("approved by admin {u}")
        );
        assert!(queue_status("pending_approval").is_ok());
        assert!(queue_status("done").is_err());
        assert_eq!(queue_limit(0), 1);
        assert_eq!(queue_limit(10_000), MAX_ORDERS);
    }

    /// A rep's order of 2 × 10.00 at 20 % off, submitted.
    fn submitted_order() -> (RecordDoc, Actor, RecordId) {
        let rep = Actor::on_device(UserId::new(), Role::Rep, DeviceId::new());
        let product = RecordId::new();
        let o = Order::new(meta(rep.user), RecordId::new(), "EUR");
        let mut doc =
            RecordDoc::create_stateful(&o, automerge::ActorId::random(), &rep, DeviceTime::utc(0))
                .expect("create");
        let mut line = OrderLine::new(product, Qty::units(2), Money::new(1_000, "EUR"));
        line.discount_percent_bp = Some(2_000);
        order::add_line(&mut doc, &rep, DeviceTime::utc(1), line).expect("line");
        order::submit(&mut doc, &rep, DeviceTime::utc(2)).expect("submit");
        (doc, rep, product)
    }

    #[test]
    fn only_an_order_waiting_for_approval_is_decided_and_the_server_confirms_it() {
        let (mut doc, _, _) = submitted_order();
        let manager = Actor::without_device(UserId::new(), Role::Manager);
        let server = Actor::without_device(UserId::new(), Role::Server);
        let early = apply_decision(
            &mut doc,
            &manager,
            "Mona",
            &server,
            OrderDecision::Approve,
            None,
            DeviceTime::utc(3),
        )
        .expect_err("a submitted order is the server's to decide");
        assert_eq!(early.code(), "conflict");
        doc.transition::<Order>(
            &server,
            &TransitionRequest::new(OrderStatus::PendingApproval, DeviceTime::utc(3))
                .with_reason("over policy"),
            |_| {},
        )
        .expect("held");
        apply_decision(
            &mut doc,
            &manager,
            "Mona",
            &server,
            OrderDecision::Approve,
            Some("fine"),
            DeviceTime::utc(4),
        )
        .expect("approved");
        let history = doc.history().expect("history");
        let last = history.last().expect("event");
        assert_eq!(last.to, "confirmed");
        assert_eq!(last.by, server.user);
        assert_eq!(last.role, Role::Server);
        assert!(
            last.reason
                .as_deref()
                .is_some_and(|r| r.contains("Mona") && r.contains("fine")),
            "{last:?}"
        );
        let again = apply_decision(
            &mut doc,
            &manager,
            "Mona",
            &server,
            OrderDecision::Reject,
            Some("no"),
            DeviceTime::utc(5),
        )
        .expect_err("decided already");
        assert_eq!(again.code(), "conflict");
        // Fulfilment: the state machine's roles.
        let by_manager = apply_fulfilment(&mut doc, &manager, None, DeviceTime::utc(6));
        assert!(by_manager.is_err(), "a manager does not fulfil");
        let admin = Actor::without_device(UserId::new(), Role::Admin);
        apply_fulfilment(&mut doc, &admin, Some("delivered"), DeviceTime::utc(7)).expect("fulfil");
        assert_eq!(
            doc.status::<OrderStatus>().expect("status"),
            OrderStatus::Fulfilled
        );
    }

    #[test]
    fn figures_compare_the_net_value_with_the_list_price() {
        let (doc, rep, product) = submitted_order();
        let o: Order = doc.read_stateful().expect("order");
        let list = PriceList {
            territory_default: false,
            meta: meta(rep.user),
            name: "Retail".into(),
            currency: "EUR".into(),
            items: BTreeMap::from([(
                product,
                PriceItem {
                    unit_price: Money::new(1_250, "EUR"),
                    max_discount_bp: 1_000,
                },
            )]),
        };
        let history = doc.history().expect("history");
        let names = BTreeMap::from([(rep.user, "Ana".to_owned())]);
        let id = RecordId::new();
        let v = order_view(id, &o, &history, Some((id, &list)), None, &names, true).expect("view");
        assert_eq!((v.gross, v.discount, v.net), (2_000, 400, 1_600));
        assert_eq!(v.discount_bp, Some(2_000));
        assert_eq!(v.list_value, Some(2_500));
        // 16.00 against 25.00 at list prices: 36 % under.
        assert_eq!(v.vs_list_bp, Some(-3_600));
        assert_eq!(v.lines[0].list_price, Some(1_250));
        assert_eq!(v.lines[0].discount_bp, Some(2_000));
        assert_eq!(v.rep_name.as_deref(), Some("Ana"));
        assert_eq!(v.history.len(), 2);
        assert_eq!(v.date_ms, Some(2));
        let bare = order_view(id, &o, &history, None, None, &names, false).expect("view");
        assert_eq!((bare.list_value, bare.vs_list_bp), (None, None));
        assert!(bare.lines.is_empty() && bare.history.is_empty());
    }

    #[test]
    fn an_ended_pending_time_entry_is_decided_once() {
        let tech = Actor::on_device(UserId::new(), Role::Technician, DeviceId::new());
        let mut a = Assignment::new(
            meta(tech.user),
            RecordId::new(),
            DeviceTime::utc(0),
            DeviceTime::utc(3_600_000),
        );
        let (ended, running) = (RecordId::new(), RecordId::new());
        for (id, end) in [(ended, Some(DeviceTime::utc(1_800_000))), (running, None)] {
            a.time_entries.insert(
                id,
                TimeEntry {
                    kind: TimeKind::Work,
                    start: DeviceTime::utc(0),
                    end,
                    approval: Approval::Pending,
                    note: None,
                },
            );
        }
        // Assignments are made by the office.
        let office = Actor::without_device(UserId::new(), Role::Manager);
        let mut doc = RecordDoc::create_stateful(
            &a,
            automerge::ActorId::random(),
            &office,
            DeviceTime::utc(0),
        )
        .expect("create");
        let listed = pending_entries(RecordId::new(), &a, &BTreeMap::new());
        assert_eq!(listed.len(), 1, "running entries wait");
        assert_eq!(listed[0].minutes, 30);
        let at = DeviceTime::utc(5);
        let e = decide_time_entry(&mut doc, Role::Manager, running, TimeDecision::Approve, at)
            .expect_err("running");
        assert_eq!(e.code(), "conflict");
        let e = decide_time_entry(&mut doc, Role::Technician, ended, TimeDecision::Approve, at)
            .expect_err("a technician approves nothing");
        assert_eq!(e.code(), "conflict");
        decide_time_entry(&mut doc, Role::Manager, ended, TimeDecision::Reject, at)
            .expect("rejected");
        let a: Assignment = doc.read_stateful().expect("read");
        assert_eq!(a.time_entries[&ended].approval, Approval::Rejected);
        let e = decide_time_entry(&mut doc, Role::Admin, ended, TimeDecision::Approve, at)
            .expect_err("decided");
        assert_eq!(e.code(), "conflict");
        assert_eq!(
            decide_time_entry(
                &mut doc,
                Role::Admin,
                RecordId::new(),
                TimeDecision::Approve,
                at
            )
            .expect_err("none")
            .code(),
            "not_found"
        );
    }
}
