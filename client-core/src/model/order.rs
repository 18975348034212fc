//! Orders taken by reps, with their lines.
//!
//! | from               | to                 | who                              | condition               |
//! |--------------------|--------------------|----------------------------------|-------------------------|
//! | `draft`            | `submitted`        | rep, manager, admin              | at least one line       |
//! | `submitted`        | `pending_approval` | server (a discount over policy)  |                         |
//! | `submitted`        | `confirmed`        | server                           |                         |
//! | `pending_approval` | `confirmed`        | server (on a manager's approval) |                         |
//! | `submitted`, `pending_approval` | `rejected` | manager, admin, server       | a reason                |
//! | `confirmed`        | `fulfilled`        | server, admin                    |                         |
//! | `draft`, `submitted` | `cancelled`      | rep, manager, admin              |                         |
//! | `pending_approval` | `cancelled`        | manager, admin                   |                         |
//! | `rejected`         | `draft`            | rep, manager (rework)            |                         |
//!
//! `confirmed` is set by the server only; from then on the order is locked. Lines
//! can be added, edited and removed only while the order is a draft. Lines are a
//! map keyed by line id, so lines added on two devices both survive.
//!
//! Totals are derived, never stored: a stored total would go stale when two
//! devices add lines concurrently. [`Order::totals`] computes them with the shared
//! [`super::totals::order_totals`].
//!
//! Concurrent statuses: `fulfilled` (7) > `confirmed` (6) > `rejected` (5) >
//! `cancelled` (4) > `pending_approval` (3) > `submitted` (2) > `draft` (1): the
//! server's decisions outrank the device's, and a terminal status outranks an open one.

use std::collections::BTreeMap;

use automerge::ChangeHash;
use serde::{Deserialize, Serialize};

use super::status::{Status, TransitionError, TransitionRequest};
use super::totals::{OrderTotals, order_totals};
use super::types::{Actor, DeviceTime, RecordKind, RecordMeta, Role, stable_names};
use super::{ModelError, Record, RecordDoc, Stateful, ValidationError};
use crate::ids::RecordId;

/// Status of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Being written; lines editable.
    Draft,
    /// Sent by the rep.
    Submitted,
    /// A discount exceeds policy; waiting for a manager.
    PendingApproval,
    /// Accepted by the server; locked.
    Confirmed,
    /// Delivered.
    Fulfilled,
    /// Refused by the back office.
    Rejected,
    /// Called off.
    Cancelled,
}

stable_names!(machine OrderStatus, "order status" {
    Draft => "draft",
    Submitted => "submitted",
    PendingApproval => "pending_approval",
    Confirmed => "confirmed",
    Fulfilled => "fulfilled",
    Rejected => "rejected",
    Cancelled => "cancelled",
});

impl OrderStatus {
    /// Whether the order counts as taken: sent by the rep and not called off
    /// or refused (`submitted`, `pending_approval`, `confirmed`, `fulfilled`).
    /// The team dashboard counts and sums taken orders (`docs/kpis.md`).
    pub const fn is_taken(self) -> bool {
        matches!(
            self,
            Self::Submitted | Self::PendingApproval | Self::Confirmed | Self::Fulfilled
        )
    }
}

impl Status for OrderStatus {
    const MACHINE: &'static str = "order";

    fn all() -> &'static [Self] {
        Self::ALL
    }

    fn as_str(self) -> &'static str {
        self.stable_name()
    }

    fn may_start_in(self, role: Role) -> bool {
        self == OrderStatus::Draft
            && matches!(role, Role::Rep | Role::Manager | Role::Admin | Role::Server)
    }

    fn check(self, to: Self, role: Role) -> Result<(), TransitionError> {
        use OrderStatus::*;
        use Role::*;
        let allowed: &[Role] = match (self, to) {
            (Draft, Submitted) => &[Rep, Manager, Admin],
            (Submitted, PendingApproval)
            | (Submitted, Confirmed)
            | (PendingApproval, Confirmed) => &[Server],
            (Submitted, Rejected) | (PendingApproval, Rejected) => &[Manager, Admin, Server],
            (Confirmed, Fulfilled) => &[Server, Admin],
            (Draft, Cancelled) | (Submitted, Cancelled) => &[Rep, Manager, Admin],
            (PendingApproval, Cancelled) => &[Manager, Admin],
            (Rejected, Draft) => &[Rep, Manager],
            _ => return Err(TransitionError::not_allowed(self, to)),
        };
        super::status::allow_roles(self, to, role, allowed)
    }

    fn precedence(self) -> u8 {
        match self {
            OrderStatus::Fulfilled => 7,
            OrderStatus::Confirmed => 6,
            OrderStatus::Rejected => 5,
            OrderStatus::Cancelled => 4,
            OrderStatus::PendingApproval => 3,
            OrderStatus::Submitted => 2,
            OrderStatus::Draft => 1,
        }
    }
}

// Both live below this module (the line beside its pricing in `totals`, the
// signature value in `signed`); these paths stay.
pub use super::signed::SignatureRef;
pub use super::totals::OrderLine;

/// An order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Ownership: `owner` is the salesperson.
    pub meta: RecordMeta,
    /// The customer.
    pub account_id: RecordId,
    /// Delivery location of the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ship_to: Option<RecordId>,
    /// The visit it was taken on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visit_id: Option<RecordId>,
    /// The price list used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_list_id: Option<RecordId>,
    /// ISO 4217 currency of every amount.
    pub currency: String,
    /// Requested delivery date, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_date: Option<String>,
    /// Effective status (written only by transitions).
    pub status: OrderStatus,
    /// Lines by line id.
    #[serde(default)]
    pub lines: BTreeMap<RecordId, OrderLine>,
    /// Customer's signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureRef>,
    /// Free notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

impl Order {
    /// A draft order with no lines.
    pub fn new(meta: RecordMeta, account_id: RecordId, currency: impl Into<String>) -> Self {
        Self {
            meta,
            account_id,
            ship_to: None,
            visit_id: None,
            price_list_id: None,
            currency: currency.into(),
            delivery_date: None,
            status: OrderStatus::Draft,
            lines: BTreeMap::new(),
            signature: None,
            notes: None,
        }
    }

    /// Line totals and order totals, computed from the lines.
    pub fn totals(&self) -> Result<OrderTotals, ValidationError> {
        order_totals(&self.currency, &self.lines)
    }

    /// Whether any line's discount is above `max_discount_bp` of its gross amount
    /// (the server then moves a submitted order to `pending_approval`).
    pub fn exceeds_discount_policy(&self, max_discount_bp: u32) -> bool {
        let Ok(totals) = self.totals() else {
            return true;
        };
        totals.lines.values().any(|l| {
            l.gross > 0
                && i128::from(l.discount) * 10_000
                    > i128::from(l.gross) * i128::from(max_discount_bp)
        })
    }

    /// Whether lines may still change.
    pub fn is_editable(&self) -> bool {
        self.status == OrderStatus::Draft
    }
}

impl Record for Order {
    const KIND: RecordKind = RecordKind::Order;

    fn meta(&self) -> &RecordMeta {
        &self.meta
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if self.currency.len() != 3 || !self.currency.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(ValidationError::new(
                "currency",
                "use a three-letter ISO currency code",
            ));
        }
        for (id, line) in &self.lines {
            if line.qty.raw() <= 0 {
                return Err(ValidationError::new(
                    format!("lines.{id}.qty"),
                    "quantity must be positive",
                ));
            }
            if line.unit_price.minor < 0 {
                return Err(ValidationError::new(
                    format!("lines.{id}.unit_price"),
                    "price cannot be negative",
                ));
            }
            if line.discount_percent_bp.is_some_and(|bp| bp > 10_000) {
                return Err(ValidationError::new(
                    format!("lines.{id}.discount"),
                    "discount is over 100 %",
                ));
            }
            if line.discount_amount_minor.is_some_and(|a| a < 0) {
                return Err(ValidationError::new(
                    format!("lines.{id}.discount"),
                    "discount cannot be negative",
                ));
            }
            if line.tax_rate_bp > 10_000 {
                return Err(ValidationError::new(
                    format!("lines.{id}.tax_rate_bp"),
                    "tax rate is over 100 %",
                ));
            }
        }
        if let Some(sig) = &self.signature {
            sig.validate("signature")?;
        }
        self.totals().map(|_| ())
    }
}

impl Stateful for Order {
    type Status = OrderStatus;

    fn status(&self) -> OrderStatus {
        self.status
    }

    fn set_status(&mut self, status: OrderStatus) {
        self.status = status;
    }

    fn guard(
        &self,
        req: &TransitionRequest<OrderStatus>,
        _actor: &Actor,
    ) -> Result<(), TransitionError> {
        match req.to {
            OrderStatus::Submitted if self.lines.is_empty() => Err(TransitionError::precondition(
                "add at least one line before submitting the order",
            )),
            OrderStatus::Rejected if req.reason.as_deref().is_none_or(|r| r.trim().is_empty()) => {
                Err(TransitionError::precondition(
                    "a reason is required to reject an order",
                ))
            }
            _ => Ok(()),
        }
    }
}

fn editable(doc: &RecordDoc, actor: &Actor) -> Result<(), ModelError> {
    let order: Order = doc.read_stateful()?;
    if !order.is_editable() {
        return Err(TransitionError::precondition(format!(
            "the order is {} and can no longer be changed",
            order.status.as_str()
        ))
        .into());
    }
    if actor.role == Role::Rep && actor.user != order.meta.owner {
        return Err(
            TransitionError::precondition("only the order's salesperson can change it").into(),
        );
    }
    Ok(())
}

/// Adds a line; returns its id.
pub fn add_line(
    doc: &mut RecordDoc,
    actor: &Actor,
    at: DeviceTime,
    line: OrderLine,
) -> Result<RecordId, ModelError> {
    editable(doc, actor)?;
    let id = RecordId::new();
    doc.update::<Order>(at, |o| {
        o.lines.insert(id, line);
    })?;
    Ok(id)
}

/// Edits a line in place (only the fields `edit` changes are written).
pub fn edit_line(
    doc: &mut RecordDoc,
    actor: &Actor,
    at: DeviceTime,
    line_id: RecordId,
    edit: impl FnOnce(&mut OrderLine),
) -> Result<Option<ChangeHash>, ModelError> {
    editable(doc, actor)?;
    let order: Order = doc.read()?;
    if !order.lines.contains_key(&line_id) {
        return Err(ValidationError::new(format!("lines.{line_id}"), "no such line").into());
    }
    doc.update::<Order>(at, |o| {
        if let Some(line) = o.lines.get_mut(&line_id) {
            edit(line);
        }
    })
}

/// Removes a line.
pub fn remove_line(
    doc: &mut RecordDoc,
    actor: &Actor,
    at: DeviceTime,
    line_id: RecordId,
) -> Result<Option<ChangeHash>, ModelError> {
    editable(doc, actor)?;
    doc.update::<Order>(at, |o| {
        o.lines.remove(&line_id);
    })
}

/// Submits a draft order.
pub fn submit(
    doc: &mut RecordDoc,
    actor: &Actor,
    at: DeviceTime,
) -> Result<ChangeHash, ModelError> {
    doc.transition::<Order>(
        actor,
        &TransitionRequest::new(OrderStatus::Submitted, at),
        |_| {},
    )
}

/// Calls an order off (a draft or a submitted order by its salesperson; a
/// pending one by the back office), with an optional reason.
pub fn cancel(
    doc: &mut RecordDoc,
    actor: &Actor,
    at: DeviceTime,
    reason: Option<String>,
) -> Result<ChangeHash, ModelError> {
    let mut req = TransitionRequest::new(OrderStatus::Cancelled, at);
    req.reason = reason.filter(|r| !r.trim().is_empty());
    doc.transition::<Order>(actor, &req, |_| {})
}

/// Refuses a submitted or pending order (the back office), with a reason.
pub fn reject(
    doc: &mut RecordDoc,
    actor: &Actor,
    at: DeviceTime,
    reason: impl Into<String>,
) -> Result<ChangeHash, ModelError> {
    doc.transition::<Order>(
        actor,
        &TransitionRequest::new(OrderStatus::Rejected, at).with_reason(reason),
        |_| {},
    )
}

/// Takes a rejected order back to a draft, to rework its lines and submit it again.
pub fn rework(
    doc: &mut RecordDoc,
    actor: &Actor,
    at: DeviceTime,
) -> Result<ChangeHash, ModelError> {
    doc.transition::<Order>(
        actor,
        &TransitionRequest::new(OrderStatus::Draft, at),
        |_| {},
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{DeviceId, OrgId, TeamId, TerritoryId, UserId};
    use crate::model::types::{Money, Qty};
    use automerge::ActorId;
    use rstest::rstest;

    use OrderStatus::*;
    use Role::*;

    #[test]
    fn statuses_have_stable_names() {
        crate::model::types::assert_stable_names(
            OrderStatus::ALL,
            OrderStatus::as_str,
            &[
                "draft",
                "submitted",
                "pending_approval",
                "confirmed",
                "fulfilled",
                "rejected",
                "cancelled",
            ],
        );
    }

    #[rstest]
    #[case(Draft, false)]
    #[case(Submitted, true)]
    #[case(PendingApproval, true)]
    #[case(Confirmed, true)]
    #[case(Fulfilled, true)]
    #[case(Rejected, false)]
    #[case(Cancelled, false)]
    fn taken_orders(#[case] status: OrderStatus, #[case] taken: bool) {
        assert_eq!(status.is_taken(), taken);
    }

    #[rstest]
    #[case(Draft, Submitted, Rep)]
    #[case(Draft, Submitted, Manager)]
    #[case(Submitted, PendingApproval, Server)]
    #[case(Submitted, Confirmed, Server)]
    #[case(PendingApproval, Confirmed, Server)]
    #[case(PendingApproval, Rejected, Manager)]
    #[case(Submitted, Rejected, Admin)]
    #[case(Confirmed, Fulfilled, Server)]
    #[case(Draft, Cancelled, Rep)]
    #[case(Submitted, Cancelled, Rep)]
    #[case(PendingApproval, Cancelled, Manager)]
    #[case(Rejected, Draft, Rep)]
    fn allowed_transitions(#[case] from: OrderStatus, #[case] to: OrderStatus, #[case] role: Role) {
        assert_eq!(from.check(to, role), Ok(()));
    }

    #[rstest]
    #[case::only_the_server_confirms(Submitted, Confirmed, Manager)]
    #[case::not_even_an_admin_confirms(PendingApproval, Confirmed, Admin)]
    #[case::reps_cannot_confirm(Submitted, Confirmed, Rep)]
    #[case::reps_cannot_reject(Submitted, Rejected, Rep)]
    #[case::reps_cannot_cancel_pending(PendingApproval, Cancelled, Rep)]
    #[case::technicians_take_no_orders(Draft, Submitted, Technician)]
    fn refused_by_role(#[case] from: OrderStatus, #[case] to: OrderStatus, #[case] role: Role) {
        assert!(matches!(
            from.check(to, role),
            Err(TransitionError::RoleNotAllowed { .. })
        ));
    }

    #[rstest]
    #[case(Draft, Confirmed)]
    #[case(Confirmed, Draft)]
    #[case(Confirmed, Cancelled)]
    #[case(Fulfilled, Draft)]
    #[case(Cancelled, Submitted)]
    #[case(Draft, Fulfilled)]
    fn refused_edges(#[case] from: OrderStatus, #[case] to: OrderStatus) {
        for role in [Rep, Manager, Admin, Server] {
            assert!(matches!(
                from.check(to, role),
                Err(TransitionError::NotAllowed { .. })
            ));
        }
    }

    struct Fixture {
        doc: RecordDoc,
        rep: Actor,
        server: Actor,
    }

    fn fixture() -> Fixture {
        let rep = Actor::on_device(UserId::new(), Rep, DeviceId::new());
        let meta = RecordMeta {
            id: RecordId::new(),
            org: OrgId::new(),
            owner: rep.user,
            team: TeamId::new(),
            territory: TerritoryId::new(),
        };
        let order = Order::new(meta, RecordId::new(), "EUR");
        let doc = RecordDoc::create_stateful(&order, ActorId::random(), &rep, DeviceTime::utc(0))
            .expect("create");
        Fixture {
            doc,
            rep,
            server: Actor::without_device(UserId::new(), Server),
        }
    }

    #[test]
    fn an_empty_order_cannot_be_submitted() {
        let mut f = fixture();
        let err = submit(&mut f.doc, &f.rep, DeviceTime::utc(1)).expect_err("no lines");
        assert!(err.to_string().contains("at least one line"));
    }

    #[test]
    fn a_rejected_order_is_reworked_as_a_draft_and_a_draft_is_cancelled() {
        let mut f = fixture();
        add_line(
            &mut f.doc,
            &f.rep,
            DeviceTime::utc(1),
            OrderLine::new(RecordId::new(), Qty::units(1), Money::new(500, "EUR")),
        )
        .expect("add");
        submit(&mut f.doc, &f.rep, DeviceTime::utc(2)).expect("submit");
        assert!(reject(&mut f.doc, &f.rep, DeviceTime::utc(3), "no").is_err());
        assert!(reject(&mut f.doc, &f.server, DeviceTime::utc(3), " ").is_err());
        reject(&mut f.doc, &f.server, DeviceTime::utc(3), "credit limit").expect("reject");
        rework(&mut f.doc, &f.rep, DeviceTime::utc(4)).expect("rework");
        let o: Order = f.doc.read_stateful().expect("read");
        assert!(o.is_editable());
        cancel(
            &mut f.doc,
            &f.rep,
            DeviceTime::utc(5),
            Some("customer changed their mind".into()),
        )
        .expect("cancel");
        assert_eq!(f.doc.status::<OrderStatus>().expect("status"), Cancelled);
        assert!(rework(&mut f.doc, &f.rep, DeviceTime::utc(6)).is_err());
    }

    #[test]
    fn a_confirmed_order_is_locked() {
        let mut f = fixture();
        let line = add_line(
            &mut f.doc,
            &f.rep,
            DeviceTime::utc(1),
            OrderLine::new(RecordId::new(), Qty::units(2), Money::new(500, "EUR")),
        )
        .expect("add");
        submit(&mut f.doc, &f.rep, DeviceTime::utc(2)).expect("submit");
        assert!(
            add_line(
                &mut f.doc,
                &f.rep,
                DeviceTime::utc(3),
                OrderLine::new(RecordId::new(), Qty::units(1), Money::new(1, "EUR"))
            )
            .is_err()
        );
        f.doc
            .transition::<Order>(
                &f.server,
                &TransitionRequest::new(Confirmed, DeviceTime::utc(4)),
                |_| {},
            )
            .expect("server confirms");
        let err = edit_line(&mut f.doc, &f.rep, DeviceTime::utc(5), line, |l| {
            l.qty = Qty::units(9)
        })
        .expect_err("locked");
        assert!(err.to_string().contains("confirmed"));
        assert!(remove_line(&mut f.doc, &f.rep, DeviceTime::utc(5), line).is_err());
        let order: Order = f.doc.read_stateful().expect("read");
        assert_eq!(order.totals().expect("totals").total, 1_000);
    }

    #[test]
    fn lines_added_on_two_devices_both_survive_and_totals_follow() {
        let mut a = fixture();
        let mut b = RecordDoc::from_automerge(a.doc.automerge().fork()).expect("fork");
        b.set_actor(ActorId::random());
        add_line(
            &mut a.doc,
            &a.rep,
            DeviceTime::utc(1),
            OrderLine::new(RecordId::new(), Qty::units(1), Money::new(100, "EUR")),
        )
        .expect("a");
        add_line(
            &mut b,
            &a.rep,
            DeviceTime::utc(1),
            OrderLine::new(RecordId::new(), Qty::units(3), Money::new(200, "EUR")),
        )
        .expect("b");
        a.doc.merge(&mut b).expect("merge");
        b.merge(&mut a.doc).expect("merge back");
        let (oa, ob): (Order, Order) = (a.doc.read().expect("a"), b.read().expect("b"));
        assert_eq!(oa.lines.len(), 2);
        assert_eq!(oa, ob);
        assert_eq!(oa.totals().expect("totals").total, 700);
        assert!(a.doc.conflicts().expect("conflicts").is_empty());
    }

    #[test]
    fn a_cancellation_and_a_confirmation_made_concurrently_resolve_to_the_confirmation() {
        let mut a = fixture();
        add_line(
            &mut a.doc,
            &a.rep,
            DeviceTime::utc(1),
            OrderLine::new(RecordId::new(), Qty::units(1), Money::new(100, "EUR")),
        )
        .expect("line");
        submit(&mut a.doc, &a.rep, DeviceTime::utc(2)).expect("submit");
        let mut server_copy = RecordDoc::from_automerge(a.doc.automerge().fork()).expect("fork");
        server_copy.set_actor(ActorId::random());
        a.doc
            .transition::<Order>(
                &a.rep,
                &TransitionRequest::new(Cancelled, DeviceTime::utc(3)),
                |_| {},
            )
            .expect("rep cancels");
        server_copy
            .transition::<Order>(
                &a.server,
                &TransitionRequest::new(Confirmed, DeviceTime::utc(3)),
                |_| {},
            )
            .expect("server confirms");
        a.doc.merge(&mut server_copy).expect("merge");
        server_copy.merge(&mut a.doc).expect("merge back");
        for doc in [&a.doc, &server_copy] {
            assert_eq!(doc.status::<OrderStatus>().expect("status"), Confirmed);
            let conflicts = doc.conflicts().expect("conflicts");
            let status = conflicts
                .iter()
                .find(|c| c.path == "status")
                .expect("status conflict listed");
            let shown: Vec<_> = status
                .values
                .iter()
                .filter(|v| v.shown)
                .map(|v| v.value.clone())
                .collect();
            assert_eq!(shown, vec![serde_json::json!("confirmed")]);
            assert_eq!(doc.history().expect("history").len(), 4);
        }
    }

    #[test]
    fn discount_policy_is_checked_per_line() {
        let f = fixture();
        let mut order: Order = f.doc.read_stateful().expect("read");
        let mut line = OrderLine::new(RecordId::new(), Qty::units(1), Money::new(1_000, "EUR"));
        line.discount_percent_bp = Some(1_500);
        order.lines.insert(RecordId::new(), line);
        assert!(order.exceeds_discount_policy(1_000));
        assert!(!order.exceeds_discount_policy(2_000));
    }
}
