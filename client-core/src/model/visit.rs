//! Visits: a rep's planned or ad-hoc call on a customer.
//!
//! State machine (DOMAIN.md), with who may take each edge:
//!
//! | from          | to            | who                         | condition                  |
//! |---------------|---------------|-----------------------------|----------------------------|
//! | `planned`     | `in_progress` | rep (check-in)              | check-in recorded          |
//! | `in_progress` | `completed`   | rep (check-out)             | check-out and outcome      |
//! | `planned`     | `cancelled`   | rep, manager, admin         |                            |
//! | `planned`     | `missed`      | manager, admin, server      |                            |
//! | `in_progress` | `cancelled`   | rep, manager, admin (abort) | a reason                   |
//! | `completed`   | `in_progress` | manager, admin (reopen)     | a reason                   |
//! | `cancelled`/`missed` | `planned` | manager, admin (re-plan) |                            |
//!
//! An ad-hoc visit is created directly `in_progress` with its check-in. The
//! geofence verdict is recorded with each check point and never blocks work.
//!
//! Concurrent statuses resolve by field evidence first: `completed` (6) >
//! `in_progress` (5) > `cancelled` (4) > `missed` (3) > `planned` (1). A visit
//! checked in offline while the office cancelled it shows as in progress, with
//! the cancellation kept as a conflict for the manager.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::geo::{GeofenceVerdict, geofence};
use super::status::{Status, TransitionError, TransitionRequest};
use super::types::{Actor, DeviceTime, GeoPoint, RecordKind, RecordMeta, Role, stable_names};
use super::{ModelError, Record, RecordDoc, Stateful, ValidationError};
use crate::ids::RecordId;

/// Status of a visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisitStatus {
    /// Scheduled, not started.
    Planned,
    /// Checked in.
    InProgress,
    /// Checked out with an outcome.
    Completed,
    /// Called off (before or during the visit).
    Cancelled,
    /// The planned time passed without a visit.
    Missed,
}

stable_names!(machine VisitStatus, "visit status" {
    Planned => "planned",
    InProgress => "in_progress",
    Completed => "completed",
    Cancelled => "cancelled",
    Missed => "missed",
});

impl Status for VisitStatus {
    const MACHINE: &'static str = "visit";

    fn all() -> &'static [Self] {
        Self::ALL
    }

    fn as_str(self) -> &'static str {
        self.stable_name()
    }

    fn may_start_in(self, role: Role) -> bool {
        match self {
            VisitStatus::Planned => {
                matches!(role, Role::Rep | Role::Manager | Role::Admin | Role::Server)
            }
            // An ad-hoc visit starts with its check-in.
            VisitStatus::InProgress => role == Role::Rep,
            _ => false,
        }
    }

    fn check(self, to: Self, role: Role) -> Result<(), TransitionError> {
        use Role::*;
        use VisitStatus::*;
        let allowed: &[Role] = match (self, to) {
            (Planned, InProgress) | (InProgress, Completed) => &[Rep],
            (Planned, Cancelled) | (InProgress, Cancelled) => &[Rep, Manager, Admin],
            (Planned, Missed) => &[Manager, Admin, Server],
            (Completed, InProgress) | (Cancelled, Planned) | (Missed, Planned) => &[Manager, Admin],
            _ => return Err(TransitionError::not_allowed(self, to)),
        };
        super::status::allow_roles(self, to, role, allowed)
    }

    fn precedence(self) -> u8 {
        match self {
            VisitStatus::Completed => 6,
            VisitStatus::InProgress => 5,
            VisitStatus::Cancelled => 4,
            VisitStatus::Missed => 3,
            VisitStatus::Planned => 1,
        }
    }
}

/// How a visit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisitOutcome {
    /// An order was taken.
    OrderTaken,
    /// Visited, no order.
    NoOrder,
    /// Another visit is needed.
    FollowUp,
    /// The outlet was closed.
    Closed,
    /// The contact was not available.
    ContactUnavailable,
}

stable_names!(VisitOutcome, "visit outcome" {
    OrderTaken => "order_taken",
    NoOrder => "no_order",
    FollowUp => "follow_up",
    Closed => "closed",
    ContactUnavailable => "contact_unavailable",
});

/// A check-in or check-out: when, where, and how that compares with the site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckPoint {
    /// Device time of the tap.
    pub at: DeviceTime,
    /// The fix, when the device had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gps: Option<GeoPoint>,
    /// Distance to the site in metres, when both positions are known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_m: Option<f64>,
    /// The geofence verdict, as the device computed it.
    pub verdict: GeofenceVerdict,
    /// The server's verdict, recomputed from the account's site and the fix
    /// when the check point reaches it (the device's stays above, as
    /// evidence of what the app showed). See [`CheckPoint::effective_verdict`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_verdict: Option<GeofenceVerdict>,
    /// The distance the server computed, metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_distance_m: Option<f64>,
}

impl CheckPoint {
    /// Records a check point against a site with coordinates `site` and fence `radius_m`.
    pub fn record(
        at: DeviceTime,
        gps: Option<GeoPoint>,
        site: Option<&GeoPoint>,
        radius_m: f64,
    ) -> Self {
        let (verdict, distance_m) = geofence(gps.as_ref(), site, radius_m);
        Self {
            at,
            gps,
            distance_m,
            verdict,
            server_verdict: None,
            server_distance_m: None,
        }
    }

    /// The verdict to trust: the server's when it has computed one, else the
    /// device's.
    pub fn effective_verdict(&self) -> GeofenceVerdict {
        self.server_verdict.unwrap_or(self.verdict)
    }

    /// Sets the server's verdict for a fix against `site`; whether it changed.
    pub fn verify(&mut self, site: &Site) -> bool {
        let (verdict, distance) = geofence(self.gps.as_ref(), site.coords.as_ref(), site.radius_m);
        let changed = self.server_verdict != Some(verdict) || self.server_distance_m != distance;
        self.server_verdict = Some(verdict);
        self.server_distance_m = distance;
        changed
    }
}

/// A visit of a rep to an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Visit {
    /// Ownership: `owner` is the rep.
    pub meta: RecordMeta,
    /// The account visited.
    pub account_id: RecordId,
    /// The account's location (site), when it has several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_id: Option<RecordId>,
    /// The contact met.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<RecordId>,
    /// Visit type, e.g. `sales`, `merchandising`, `audit`.
    pub visit_type: String,
    /// Planned by a manager or the rep (`false` for an ad-hoc visit).
    pub planned: bool,
    /// Planned start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_start: Option<DeviceTime>,
    /// Planned end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_end: Option<DeviceTime>,
    /// The manager's instructions for this visit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Effective status (written only by transitions).
    pub status: VisitStatus,
    /// The check-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_in: Option<CheckPoint>,
    /// The check-out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_out: Option<CheckPoint>,
    /// How it ended (required to complete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<VisitOutcome>,
    /// Collaborative notes (text merged character by character).
    #[serde(default)]
    pub notes: String,
    /// Suggested next visit date, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_visit_date: Option<String>,
    /// Orders taken during the visit (a set: keys are order ids).
    #[serde(default)]
    pub order_ids: BTreeMap<RecordId, bool>,
    /// Checklist responses filled during the visit (a set).
    #[serde(default)]
    pub checklist_response_ids: BTreeMap<RecordId, bool>,
}

impl Visit {
    /// A planned visit.
    pub fn planned(
        meta: RecordMeta,
        account_id: RecordId,
        start: DeviceTime,
        end: DeviceTime,
    ) -> Self {
        Self {
            meta,
            account_id,
            location_id: None,
            contact_id: None,
            visit_type: "sales".into(),
            planned: true,
            planned_start: Some(start),
            planned_end: Some(end),
            instructions: None,
            status: VisitStatus::Planned,
            check_in: None,
            check_out: None,
            outcome: None,
            notes: String::new(),
            next_visit_date: None,
            order_ids: BTreeMap::new(),
            checklist_response_ids: BTreeMap::new(),
        }
    }

    /// An ad-hoc visit, created checked in.
    pub fn ad_hoc(meta: RecordMeta, account_id: RecordId, check_in: CheckPoint) -> Self {
        let at = check_in.at;
        Self {
            planned: false,
            planned_start: None,
            planned_end: None,
            status: VisitStatus::InProgress,
            check_in: Some(check_in),
            ..Self::planned(meta, account_id, at, at)
        }
    }

    /// Minutes between check-in and check-out, when both are recorded.
    pub fn time_on_site_min(&self) -> Option<i64> {
        match (&self.check_in, &self.check_out) {
            (Some(i), Some(o)) => Some(super::totals::duration_minutes(i.at, o.at)),
            _ => None,
        }
    }
}

impl Record for Visit {
    const KIND: RecordKind = RecordKind::Visit;
    const TEXT_FIELDS: &'static [&'static str] = &["notes"];

    fn meta(&self) -> &RecordMeta {
        &self.meta
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if self.visit_type.trim().is_empty() {
            return Err(ValidationError::new("visit_type", "a visit needs a type"));
        }
        if let (Some(s), Some(e)) = (self.planned_start, self.planned_end)
            && e.at_ms < s.at_ms
        {
            return Err(ValidationError::new(
                "planned_end",
                "the planned end is before the planned start",
            ));
        }
        if self.planned && self.planned_start.is_none() {
            return Err(ValidationError::new(
                "planned_start",
                "a planned visit needs a planned start",
            ));
        }
        if matches!(
            self.status,
            VisitStatus::InProgress | VisitStatus::Completed
        ) && self.check_in.is_none()
        {
            return Err(ValidationError::new(
                "check_in",
                "a visit in progress needs its check-in",
            ));
        }
        for (field, point) in [("check_in", &self.check_in), ("check_out", &self.check_out)] {
            if let Some(gps) = point.as_ref().and_then(|p| p.gps.as_ref())
                && !gps.is_valid()
            {
                return Err(ValidationError::new(
                    format!("{field}.gps"),
                    "position is off the globe",
                ));
            }
        }
        if let (Some(i), Some(o)) = (&self.check_in, &self.check_out)
            && o.at.at_ms < i.at.at_ms
        {
            return Err(ValidationError::new(
                "check_out",
                "check-out is before check-in",
            ));
        }
        Ok(())
    }
}

impl Stateful for Visit {
    type Status = VisitStatus;

    fn status(&self) -> VisitStatus {
        self.status
    }

    fn set_status(&mut self, status: VisitStatus) {
        self.status = status;
    }

    fn guard(
        &self,
        req: &TransitionRequest<VisitStatus>,
        actor: &Actor,
    ) -> Result<(), TransitionError> {
        let reason_given = req.reason.as_deref().is_some_and(|r| !r.trim().is_empty());
        match req.to {
            VisitStatus::InProgress if self.check_in.is_none() => {
                Err(TransitionError::precondition("check in to start the visit"))
            }
            VisitStatus::InProgress if actor.role == Role::Rep && actor.user != self.meta.owner => {
                Err(TransitionError::precondition(
                    "only the visit's rep can check in",
                ))
            }
            VisitStatus::Completed if self.check_out.is_none() => Err(
                TransitionError::precondition("check out to complete the visit"),
            ),
            VisitStatus::Completed if self.outcome.is_none() => Err(TransitionError::precondition(
                "an outcome is required to complete the visit",
            )),
            VisitStatus::Cancelled if self.check_in.is_some() && !reason_given => Err(
                TransitionError::precondition("a reason is required to abort a visit in progress"),
            ),
            _ => Ok(()),
        }
    }
}

/// Where the visit takes place, for the geofence verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Site {
    /// The site's coordinates, if known.
    pub coords: Option<GeoPoint>,
    /// The geofence radius in metres.
    pub radius_m: f64,
}

/// Checks in: records the check point and moves the visit to `in_progress`, as one change.
pub fn check_in(
    doc: &mut RecordDoc,
    actor: &Actor,
    at: DeviceTime,
    gps: Option<GeoPoint>,
    site: Site,
) -> Result<automerge::ChangeHash, ModelError> {
    let point = CheckPoint::record(at, gps, site.coords.as_ref(), site.radius_m);
    let mut req = TransitionRequest::new(VisitStatus::InProgress, at);
    req.gps = gps;
    doc.transition::<Visit>(actor, &req, |v| v.check_in = Some(point))
}

/// Checks out with an outcome: records the check point and completes the visit, as one change.
pub fn check_out(
    doc: &mut RecordDoc,
    actor: &Actor,
    at: DeviceTime,
    gps: Option<GeoPoint>,
    site: Site,
    outcome: VisitOutcome,
) -> Result<automerge::ChangeHash, ModelError> {
    let point = CheckPoint::record(at, gps, site.coords.as_ref(), site.radius_m);
    let mut req = TransitionRequest::new(VisitStatus::Completed, at);
    req.gps = gps;
    doc.transition::<Visit>(actor, &req, |v| {
        v.check_out = Some(point);
        v.outcome = Some(outcome);
    })
}

/// Calls a visit off: a planned visit is cancelled, a visit in progress is
/// aborted (the state machine's guard then asks for a reason), as one change.
pub fn cancel(
    doc: &mut RecordDoc,
    actor: &Actor,
    at: DeviceTime,
    reason: Option<String>,
) -> Result<automerge::ChangeHash, ModelError> {
    let mut req = TransitionRequest::new(VisitStatus::Cancelled, at);
    req.reason = reason.filter(|r| !r.trim().is_empty());
    doc.transition::<Visit>(actor, &req, |_| {})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{DeviceId, OrgId, TeamId, TerritoryId, UserId};
    use automerge::ActorId;
    use rstest::rstest;

    use Role::*;
    use VisitStatus::*;

    #[test]
    fn statuses_and_outcomes_have_stable_names() {
        use crate::model::types::assert_stable_names;
        assert_stable_names(
            VisitStatus::ALL,
            VisitStatus::as_str,
            &["planned", "in_progress", "completed", "cancelled", "missed"],
        );
        assert_stable_names(
            VisitOutcome::ALL,
            VisitOutcome::as_str,
            &[
                "order_taken",
                "no_order",
                "follow_up",
                "closed",
                "contact_unavailable",
            ],
        );
    }

    #[rstest]
    #[case(Planned, InProgress, Rep)]
    #[case(InProgress, Completed, Rep)]
    #[case(Planned, Cancelled, Rep)]
    #[case(Planned, Cancelled, Manager)]
    #[case(Planned, Missed, Manager)]
    #[case(Planned, Missed, Server)]
    #[case(InProgress, Cancelled, Rep)]
    #[case(Completed, InProgress, Manager)]
    #[case(Cancelled, Planned, Admin)]
    #[case(Missed, Planned, Manager)]
    fn allowed_transitions(#[case] from: VisitStatus, #[case] to: VisitStatus, #[case] role: Role) {
        assert_eq!(from.check(to, role), Ok(()));
    }

    #[rstest]
    #[case::managers_do_not_check_in_for_reps(Planned, InProgress, Manager)]
    #[case::technicians_have_no_visits(Planned, InProgress, Technician)]
    #[case::reps_cannot_reopen_a_completed_visit(Completed, InProgress, Rep)]
    #[case::reps_cannot_mark_missed(Planned, Missed, Rep)]
    #[case::reps_cannot_replan_a_cancelled_visit(Cancelled, Planned, Rep)]
    fn refused_by_role(#[case] from: VisitStatus, #[case] to: VisitStatus, #[case] role: Role) {
        assert!(matches!(
            from.check(to, role),
            Err(TransitionError::RoleNotAllowed { .. })
        ));
    }

    #[rstest]
    #[case(Planned, Completed)]
    #[case(Completed, Cancelled)]
    #[case(Missed, InProgress)]
    #[case(InProgress, Missed)]
    #[case(Completed, Planned)]
    fn refused_edges(#[case] from: VisitStatus, #[case] to: VisitStatus) {
        for role in [Rep, Manager, Admin, Server] {
            assert!(matches!(
                from.check(to, role),
                Err(TransitionError::NotAllowed { .. })
            ));
        }
    }

    fn planned() -> (RecordDoc, Actor) {
        let rep = Actor::on_device(UserId::new(), Rep, DeviceId::new());
        let meta = RecordMeta {
            id: RecordId::new(),
            org: OrgId::new(),
            owner: rep.user,
            team: TeamId::new(),
            territory: TerritoryId::new(),
        };
        let v = Visit::planned(
            meta,
            RecordId::new(),
            DeviceTime::utc(0),
            DeviceTime::utc(3_600_000),
        );
        (
            RecordDoc::create_stateful(&v, ActorId::random(), &rep, DeviceTime::utc(0))
                .expect("create"),
            rep,
        )
    }

    const SITE: Site = Site {
        coords: Some(GeoPoint {
            lat: 48.137,
            lng: 11.575,
            accuracy_m: None,
        }),
        radius_m: 100.0,
    };

    #[test]
    fn check_in_and_out_record_positions_verdicts_and_history() {
        let (mut doc, rep) = planned();
        let far = GeoPoint {
            lat: 48.2,
            lng: 11.575,
            accuracy_m: Some(10.0),
        };
        check_in(&mut doc, &rep, DeviceTime::utc(60_000), Some(far), SITE).expect("check in");
        check_out(
            &mut doc,
            &rep,
            DeviceTime::utc(60_000 * 46),
            None,
            SITE,
            VisitOutcome::NoOrder,
        )
        .expect("check out");
        let v: Visit = doc.read_stateful().expect("read");
        assert_eq!(v.status, Completed);
        assert_eq!(
            v.check_in.as_ref().map(|c| c.verdict),
            Some(GeofenceVerdict::Outside)
        );
        assert_eq!(
            v.check_out.as_ref().map(|c| c.verdict),
            Some(GeofenceVerdict::UnverifiableOffline)
        );
        assert_eq!(v.time_on_site_min(), Some(45));
        let history = doc.history().expect("history");
        assert_eq!(
            history.iter().map(|e| e.to.as_str()).collect::<Vec<_>>(),
            ["planned", "in_progress", "completed"]
        );
        assert_eq!(history[1].gps, Some(far));
        // The push path reads the history from the record's JSON.
        let json = doc.to_json().expect("json");
        assert_eq!(doc.history_in(&json).expect("history from JSON"), history);
    }

    #[test]
    fn aborting_a_visit_in_progress_needs_a_reason_and_writes_nothing_without_one() {
        let (mut doc, rep) = planned();
        check_in(&mut doc, &rep, DeviceTime::utc(1), None, SITE).expect("check in");
        let heads = doc.heads();
        let err = doc
            .transition::<Visit>(
                &rep,
                &TransitionRequest::new(Cancelled, DeviceTime::utc(2)),
                |_| {},
            )
            .expect_err("reason required");
        assert!(err.to_string().contains("reason"));
        assert_eq!(doc.heads(), heads, "a refused transition writes nothing");
    }

    #[test]
    fn cancelling_is_free_before_check_in_and_needs_a_reason_after() {
        let (mut doc, rep) = planned();
        cancel(&mut doc, &rep, DeviceTime::utc(1), None).expect("cancel a planned visit");
        assert_eq!(doc.status::<VisitStatus>().expect("status"), Cancelled);

        let (mut doc, rep) = planned();
        check_in(&mut doc, &rep, DeviceTime::utc(1), None, SITE).expect("check in");
        let err = cancel(&mut doc, &rep, DeviceTime::utc(2), Some("  ".into()))
            .expect_err("a blank reason is no reason");
        assert!(err.to_string().contains("reason"), "{err}");
        cancel(
            &mut doc,
            &rep,
            DeviceTime::utc(3),
            Some("shop on fire".into()),
        )
        .expect("abort");
        let history = doc.history().expect("history");
        assert_eq!(
            history.last().and_then(|e| e.reason.as_deref()),
            Some("shop on fire")
        );
    }

    #[test]
    fn only_the_visits_rep_checks_in_and_the_status_is_not_a_plain_field() {
        let (mut doc, _) = planned();
        let other = Actor::on_device(UserId::new(), Rep, DeviceId::new());
        assert!(check_in(&mut doc, &other, DeviceTime::utc(1), None, SITE).is_err());
        let err = doc
            .update::<Visit>(DeviceTime::utc(1), |v| v.status = Completed)
            .expect_err("immutable");
        assert!(matches!(
            err,
            ModelError::Immutable {
                field: "status",
                ..
            }
        ));
    }

    #[test]
    fn a_refused_edit_leaves_nothing_behind_for_the_next_change() {
        use automerge::transaction::Transactable;
        let (mut doc, _) = planned();
        let err = doc
            .update::<Visit>(DeviceTime::utc(1), |v| {
                v.notes = "half written".into();
                v.visit_type = " ".into();
            })
            .expect_err("a visit needs a type");
        assert!(matches!(err, ModelError::Validation(_)));
        assert_eq!(doc.automerge().pending_ops(), 0);
        doc.update::<Visit>(DeviceTime::utc(2), |v| v.instructions = Some("ok".into()))
            .expect("edit");
        let v: Visit = doc.read_stateful().expect("read");
        assert_eq!(v.notes, "", "the refused edit's notes did not ride along");
    }

    #[test]
    fn a_visit_checked_in_offline_while_cancelled_in_the_office_shows_in_progress() {
        let (mut device, rep) = planned();
        let mut office = RecordDoc::from_automerge(device.automerge().fork()).expect("fork");
        office.set_actor(ActorId::random());
        let manager = Actor::without_device(UserId::new(), Manager);
        office
            .transition::<Visit>(
                &manager,
                &TransitionRequest::new(Cancelled, DeviceTime::utc(5)),
                |_| {},
            )
            .expect("cancel");
        check_in(&mut device, &rep, DeviceTime::utc(6), None, SITE).expect("check in");
        office.merge(&mut device).expect("merge");
        device.merge(&mut office).expect("merge back");
        for doc in [&office, &device] {
            assert_eq!(doc.status::<VisitStatus>().expect("status"), InProgress);
            let conflicts = doc.conflicts().expect("conflicts");
            let status = conflicts
                .iter()
                .find(|c| c.path == "status")
                .expect("the clash is listed");
            let shown: Vec<_> = status.values.iter().filter(|v| v.shown).collect();
            assert_eq!(shown.len(), 1);
            assert_eq!(shown[0].value, "in_progress");
            assert!(status.values.iter().any(|v| v.value == "cancelled"));
            let history = doc.history().expect("history");
            assert!(history.iter().any(|e| e.to == "in_progress"));
            assert!(history.iter().any(|e| e.to == "cancelled"));
        }
    }
}
