//! The figures of one record that the team dashboard and the exports need,
//! taken from its merged document when a push stores it (the `record_facts`
//! table). Pure: no I/O, so the rules are tested without a server.
//!
//! Only visits, orders and service jobs have facts. Every time is the device
//! time of the event (DOMAIN.md: KPI figures use the device time).

use fieldsync_core::RecordId;
use fieldsync_core::model::{
    JobStatus, Order, OrderStatus, RecordDoc, RecordKind, ServiceJob, Status, StatusEvent, Visit,
};

use super::dates::{day_of_ms, format_day};

/// One record's facts (the columns of `record_facts` besides those of its
/// projection: kind, owner, team, status, account, deleted).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// The UTC day the record counts on: a visit's planned start (its
    /// check-in when ad hoc), an order's first submission (its creation while
    /// it is a draft), a job's creation.
    pub day: Option<String>,
    /// An order's visit.
    pub visit_id: Option<RecordId>,
    /// A visit was planned (not ad hoc).
    pub planned: Option<bool>,
    /// A visit's planned start.
    pub planned_start_ms: Option<i64>,
    /// A visit's check-in.
    pub check_in_ms: Option<i64>,
    /// A visit's check-out.
    pub check_out_ms: Option<i64>,
    /// A visit's geofence verdict at check-in (`inside`, `outside`, ...).
    pub check_in_verdict: Option<String>,
    /// A visit's outcome (`order_taken`, `no_order`, ...).
    pub outcome: Option<String>,
    /// An order's currency.
    pub currency: Option<String>,
    /// An order's net amount (after discounts, before tax), minor units.
    pub net_minor: Option<i64>,
    /// An order's total (net plus tax), minor units.
    pub total_minor: Option<i64>,
    /// When the record was created (its creation event).
    pub created_ms: Option<i64>,
    /// When a job was completed: its `completed_at`, else its last move to
    /// `completed` in the status history.
    pub completed_ms: Option<i64>,
    /// A job's SLA due time.
    pub sla_due_ms: Option<i64>,
    /// The start of a job's promised arrival window (its request window).
    pub window_start_ms: Option<i64>,
    /// The end of a job's promised arrival window.
    pub window_end_ms: Option<i64>,
    /// When a technician first arrived on the job's site.
    pub first_arrived_ms: Option<i64>,
    /// A job was fixed on the first visit (when the technician said).
    pub first_time_fix: Option<bool>,
}

/// The kinds that have facts.
pub const KINDS: [RecordKind; 3] = [RecordKind::Visit, RecordKind::Order, RecordKind::ServiceJob];

/// The facts of a record; `None` for kinds without facts and for documents
/// that do not read as their kind (they are refused before they get here).
pub fn facts_of(doc: &RecordDoc) -> Option<Facts> {
    if !KINDS.contains(&doc.kind()) {
        return None;
    }
    facts_of_json(doc, &doc.to_json().ok()?)
}

/// [`facts_of`] from `json`, the document's JSON read already (the push path
/// has it from its checks).
pub fn facts_of_json(doc: &RecordDoc, json: &serde_json::Value) -> Option<Facts> {
    if !KINDS.contains(&doc.kind()) {
        return None;
    }
    let history = doc.history_in(json).ok()?;
    let created_ms = history
        .iter()
        .find(|e| e.from.is_none())
        .map(|e| e.at.at_ms);
    let day = |ms: Option<i64>| ms.map(|ms| format_day(day_of_ms(ms)));
    match doc.kind() {
        RecordKind::Visit => {
            let v: Visit = doc.read_stateful_json(json).ok()?;
            let check_in_ms = v.check_in.as_ref().map(|c| c.at.at_ms);
            let planned_start_ms = v.planned_start.map(|t| t.at_ms);
            Some(Facts {
                day: day(planned_start_ms.or(check_in_ms)),
                planned: Some(v.planned),
                planned_start_ms,
                check_in_ms,
                check_out_ms: v.check_out.as_ref().map(|c| c.at.at_ms),
                check_in_verdict: v
                    .check_in
                    .as_ref()
                    .map(|c| c.effective_verdict().as_str().to_owned()),
                outcome: v.outcome.map(|o| o.as_str().to_owned()),
                created_ms,
                ..Facts::default()
            })
        }
        RecordKind::Order => {
            let o: Order = doc.read_stateful_json(json).ok()?;
            let submitted_ms = history
                .iter()
                .filter(|e| e.to == OrderStatus::Submitted.as_str())
                .map(|e| e.at.at_ms)
                .min();
            let totals = o.totals().ok();
            Some(Facts {
                day: day(submitted_ms.or(created_ms)),
                visit_id: o.visit_id,
                currency: Some(o.currency.clone()),
                net_minor: totals.as_ref().map(|t| t.net),
                total_minor: totals.as_ref().map(|t| t.total),
                created_ms,
                ..Facts::default()
            })
        }
        RecordKind::ServiceJob => {
            let j: ServiceJob = doc.read_stateful_json(json).ok()?;
            let completed_ms = j.completed_at.map(|t| t.at_ms).or_else(|| {
                last_move_to(&history, JobStatus::Completed.as_str()).map(|e| e.at.at_ms)
            });
            Some(Facts {
                day: day(created_ms),
                created_ms,
                completed_ms,
                sla_due_ms: j.sla_due.map(|t| t.at_ms),
                window_start_ms: j.request_window_start.map(|t| t.at_ms),
                window_end_ms: j.request_window_end.map(|t| t.at_ms),
                first_arrived_ms: j.first_arrived_at.map(|t| t.at_ms),
                first_time_fix: j.first_time_fix,
                ..Facts::default()
            })
        }
        _ => None,
    }
}

fn last_move_to<'a>(history: &'a [StatusEvent], to: &str) -> Option<&'a StatusEvent> {
    history.iter().rev().find(|e| e.to == to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldsync_core::model::visit::{self, Site};
    use fieldsync_core::model::{
        Actor, DeviceTime, GeoPoint, Money, OrderLine, Qty, RecordMeta, Role, TransitionRequest,
        VisitOutcome,
    };
    use fieldsync_core::{DeviceId, OrgId, TeamId, TerritoryId, UserId, automerge::ActorId};

    fn meta(owner: UserId) -> RecordMeta {
        RecordMeta {
            id: RecordId::new(),
            org: OrgId::new(),
            owner,
            team: TeamId::new(),
            territory: TerritoryId::new(),
        }
    }

    const HOUR: i64 = 3_600_000;
    /// 2026-11-30T00:00:00Z.
    const DAY0: i64 = 1_795_996_800_000;

    #[test]
    fn a_completed_visit_has_its_day_times_verdict_and_outcome() {
        let rep = Actor::on_device(UserId::new(), Role::Rep, DeviceId::new());
        let v = Visit::planned(
            meta(rep.user),
            RecordId::new(),
            DeviceTime::utc(DAY0 + 9 * HOUR),
            DeviceTime::utc(DAY0 + 10 * HOUR),
        );
        let mut doc =
            RecordDoc::create_stateful(&v, ActorId::random(), &rep, DeviceTime::utc(DAY0))
                .expect("create");
        let site = Site {
            coords: Some(GeoPoint {
                lat: 38.71,
                lng: -9.14,
                accuracy_m: None,
            }),
            radius_m: 100.0,
        };
        let far = GeoPoint {
            lat: 38.80,
            lng: -9.14,
            accuracy_m: None,
        };
        visit::check_in(
            &mut doc,
            &rep,
            DeviceTime::utc(DAY0 + 9 * HOUR),
            Some(far),
            site,
        )
        .expect("in");
        visit::check_out(
            &mut doc,
            &rep,
            DeviceTime::utc(DAY0 + 9 * HOUR + 1_800_000),
            None,
            site,
            VisitOutcome::OrderTaken,
        )
        .expect("out");
        let f = facts_of(&doc).expect("facts");
        assert_eq!(f.day.as_deref(), Some("2026-11-30"));
        assert_eq!(f.planned, Some(true));
        assert_eq!(f.check_in_verdict.as_deref(), Some("outside"));
        assert_eq!(f.outcome.as_deref(), Some("order_taken"));
        assert_eq!(
            f.check_out_ms.zip(f.check_in_ms).map(|(o, i)| o - i),
            Some(1_800_000)
        );
        assert_eq!(f.created_ms, Some(DAY0));
    }

    #[test]
    fn an_order_counts_on_the_day_it_was_submitted_with_its_net_value() {
        let rep = Actor::on_device(UserId::new(), Role::Rep, DeviceId::new());
        let mut o = Order::new(meta(rep.user), RecordId::new(), "EUR");
        let mut line = OrderLine::new(RecordId::new(), Qty::units(3), Money::new(1_000, "EUR"));
        line.tax_rate_bp = 2_300;
        o.lines.insert(RecordId::new(), line);
        let mut doc =
            RecordDoc::create_stateful(&o, ActorId::random(), &rep, DeviceTime::utc(DAY0 - HOUR))
                .expect("create");
        let draft = facts_of(&doc).expect("facts");
        assert_eq!(
            draft.day.as_deref(),
            Some("2026-11-29"),
            "a draft: its creation"
        );
        doc.transition::<Order>(
            &rep,
            &TransitionRequest::new(OrderStatus::Submitted, DeviceTime::utc(DAY0 + HOUR)),
            |_| {},
        )
        .expect("submit");
        let f = facts_of(&doc).expect("facts");
        assert_eq!(f.day.as_deref(), Some("2026-11-30"));
        assert_eq!((f.net_minor, f.total_minor), (Some(3_000), Some(3_690)));
        assert_eq!(f.currency.as_deref(), Some("EUR"));
    }
}
