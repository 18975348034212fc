//! Assignments: a technician's timed appointment on a service job, with the
//! parts they used and the time they booked.
//!
//! | from                       | to                | who                     | condition                        |
//! |----------------------------|-------------------|-------------------------|----------------------------------|
//! | `scheduled`                | `dispatched`      | manager, admin, server  |                                  |
//! | `dispatched`               | `accepted`        | technician              |                                  |
//! | `dispatched`               | `rejected`        | technician              | a reason                         |
//! | `rejected`                 | `dispatched`      | manager, admin          | (re-dispatch)                    |
//! | `accepted`                 | `traveling`       | technician              |                                  |
//! | `accepted`, `traveling`    | `on_site`         | technician              |                                  |
//! | `on_site`, `on_break`      | `in_progress`     | technician              |                                  |
//! | `in_progress`              | `on_break`        | technician              |                                  |
//! | `in_progress`              | `completed`       | technician              | checklist and signature if required |
//! | `on_site`, `in_progress`   | `cannot_complete` | technician              | a reason                         |
//! | `scheduled` … `on_site`    | `cancelled`       | manager, admin          | (only before work starts)        |
//!
//! Each field step records its actual time and position ([`Stamp`]). Parts used
//! and time entries are maps keyed by entry id inside the assignment document:
//! entries added offline on two devices never conflict.
//!
//! Concurrent statuses, field evidence first, later stages ahead of earlier ones:
//! `completed` (11), `cannot_complete` (10), `in_progress` (9), `on_break` (8),
//! `on_site` (7), `traveling` (6), `cancelled` (5), `rejected` (4), `accepted` (3),
//! `dispatched` (2), `scheduled` (1). Work completed offline while the office
//! cancelled the assignment shows as completed, with the cancellation kept as a
//! conflict for the manager.

use std::collections::BTreeMap;

use automerge::ChangeHash;
use serde::{Deserialize, Serialize};

use super::signed::SignatureRef;
use super::status::{Status, TransitionError, TransitionRequest};
use super::types::{Actor, DeviceTime, GeoPoint, Qty, RecordKind, RecordMeta, Role, stable_names};
use super::{ModelError, Record, RecordDoc, Stateful, ValidationError};
use crate::ids::RecordId;

/// Status of an assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssignmentStatus {
    /// Planned, not yet sent to the technician.
    Scheduled,
    /// Sent to the technician.
    Dispatched,
    /// Accepted by the technician.
    Accepted,
    /// Declined by the technician.
    Rejected,
    /// On the way.
    Traveling,
    /// Arrived.
    OnSite,
    /// Working.
    InProgress,
    /// Paused.
    OnBreak,
    /// Done.
    Completed,
    /// Could not be done (part missing, no access, ...).
    CannotComplete,
    /// Called off before work started.
    Cancelled,
}

impl AssignmentStatus {
    /// Whether the technician is out on this job (travelling or working).
    pub const fn is_active(self) -> bool {
        matches!(
            self,
            Self::Traveling | Self::OnSite | Self::InProgress | Self::OnBreak
        )
    }

    /// Whether work has started (the assignment can no longer be cancelled).
    pub const fn work_started(self) -> bool {
        matches!(
            self,
            Self::InProgress | Self::OnBreak | Self::Completed | Self::CannotComplete
        )
    }
}

stable_names!(machine AssignmentStatus, "assignment status" {
    Scheduled => "scheduled",
    Dispatched => "dispatched",
    Accepted => "accepted",
    Rejected => "rejected",
    Traveling => "traveling",
    OnSite => "on_site",
    InProgress => "in_progress",
    OnBreak => "on_break",
    Completed => "completed",
    CannotComplete => "cannot_complete",
    Cancelled => "cancelled",
});

impl Status for AssignmentStatus {
    const MACHINE: &'static str = "assignment";

    fn all() -> &'static [Self] {
        Self::ALL
    }

    fn as_str(self) -> &'static str {
        self.stable_name()
    }

    fn may_start_in(self, role: Role) -> bool {
        match self {
            AssignmentStatus::Scheduled | AssignmentStatus::Dispatched => role.is_back_office(),
            _ => false,
        }
    }

    fn check(self, to: Self, role: Role) -> Result<(), TransitionError> {
        use AssignmentStatus::*;
        use Role::*;
        let allowed: &[Role] = match (self, to) {
            (Scheduled, Dispatched) => &[Manager, Admin, Server],
            (Rejected, Dispatched) => &[Manager, Admin],
            (Dispatched, Accepted) | (Dispatched, Rejected) => &[Technician],
            (Accepted, Traveling) | (Accepted, OnSite) | (Traveling, OnSite) => &[Technician],
            (OnSite, InProgress) | (OnBreak, InProgress) | (InProgress, OnBreak) => &[Technician],
            (InProgress, Completed) | (OnSite, CannotComplete) | (InProgress, CannotComplete) => {
                &[Technician]
            }
            (Scheduled | Dispatched | Accepted | Traveling | OnSite, Cancelled) => {
                &[Manager, Admin]
            }
            _ => return Err(TransitionError::not_allowed(self, to)),
        };
        super::status::allow_roles(self, to, role, allowed)
    }

    fn precedence(self) -> u8 {
        use AssignmentStatus::*;
        match self {
            Completed => 11,
            CannotComplete => 10,
            InProgress => 9,
            OnBreak => 8,
            OnSite => 7,
            Traveling => 6,
            Cancelled => 5,
            Rejected => 4,
            Accepted => 3,
            Dispatched => 2,
            Scheduled => 1,
        }
    }
}

/// When and where a field step happened.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stamp {
    /// Device time.
    pub at: DeviceTime,
    /// Position, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gps: Option<GeoPoint>,
}

/// A part used on the job (keyed by entry id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartUsed {
    /// The product (spare part).
    pub product_id: RecordId,
    /// Quantity.
    pub qty: Qty,
    /// The van stock it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub van_stock_id: Option<RecordId>,
    /// Serial number of a serialized part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Whether the customer is billed for it.
    pub billable: bool,
    /// When it was recorded.
    pub at: DeviceTime,
}

/// Kind of booked time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeKind {
    /// Driving to or from the site.
    Travel,
    /// Working on site.
    Work,
    /// A break.
    Break,
}

/// Approval state of a time entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    /// Not reviewed yet.
    #[default]
    Pending,
    /// Approved by the back office.
    Approved,
    /// Refused by the back office.
    Rejected,
}

stable_names!(Approval, "time entry approval" {
    Pending => "pending",
    Approved => "approved",
    Rejected => "rejected",
});

/// Time booked by the technician (keyed by entry id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeEntry {
    /// What kind of time.
    pub kind: TimeKind,
    /// Start.
    pub start: DeviceTime,
    /// End (`None` while running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DeviceTime>,
    /// Approval.
    #[serde(default)]
    pub approval: Approval,
    /// Note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl TimeEntry {
    /// Whole minutes, when the entry has ended.
    pub fn minutes(&self) -> Option<i64> {
        self.end
            .map(|end| super::totals::duration_minutes(self.start, end))
    }
}

/// An assignment of a technician to a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// Ownership: `owner` is the technician.
    pub meta: RecordMeta,
    /// The job.
    pub job_id: RecordId,
    /// Scheduled start.
    pub scheduled_start: DeviceTime,
    /// Scheduled end.
    pub scheduled_end: DeviceTime,
    /// Arrival window promised to the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrival_window_start: Option<DeviceTime>,
    /// End of the promised arrival window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrival_window_end: Option<DeviceTime>,
    /// Effective status.
    pub status: AssignmentStatus,
    /// Travel started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub travel_started: Option<Stamp>,
    /// Arrived on site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrived: Option<Stamp>,
    /// Work started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_started: Option<Stamp>,
    /// Work ended (completed or cannot complete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_ended: Option<Stamp>,
    /// Parts used, by entry id.
    #[serde(default)]
    pub parts: BTreeMap<RecordId, PartUsed>,
    /// Time entries, by entry id.
    #[serde(default)]
    pub time_entries: BTreeMap<RecordId, TimeEntry>,
    /// Completion requires the job's checklist to be answered.
    #[serde(default)]
    pub requires_checklist: bool,
    /// The checklist response filled on this assignment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checklist_response_id: Option<RecordId>,
    /// Whether the checklist response is complete (set when the response is completed).
    #[serde(default)]
    pub checklist_complete: bool,
    /// Completion requires the customer's signature.
    #[serde(default)]
    pub requires_signature: bool,
    /// The customer's signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureRef>,
}

impl Assignment {
    /// A scheduled assignment of `meta.owner` (the technician) to a job.
    pub fn new(meta: RecordMeta, job_id: RecordId, start: DeviceTime, end: DeviceTime) -> Self {
        Self {
            meta,
            job_id,
            scheduled_start: start,
            scheduled_end: end,
            arrival_window_start: None,
            arrival_window_end: None,
            status: AssignmentStatus::Scheduled,
            travel_started: None,
            arrived: None,
            work_started: None,
            work_ended: None,
            parts: BTreeMap::new(),
            time_entries: BTreeMap::new(),
            requires_checklist: false,
            checklist_response_id: None,
            checklist_complete: false,
            requires_signature: false,
            signature: None,
        }
    }

    /// Booked minutes of each kind (running entries excluded).
    pub fn minutes_by_kind(&self) -> BTreeMap<TimeKind, i64> {
        let mut out = BTreeMap::new();
        for e in self.time_entries.values() {
            if let Some(m) = e.minutes() {
                *out.entry(e.kind).or_insert(0) += m;
            }
        }
        out
    }
}

impl Record for Assignment {
    const KIND: RecordKind = RecordKind::Assignment;

    fn meta(&self) -> &RecordMeta {
        &self.meta
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if self.scheduled_end.at_ms < self.scheduled_start.at_ms {
            return Err(ValidationError::new(
                "scheduled_end",
                "the scheduled end is before the start",
            ));
        }
        for (id, p) in &self.parts {
            if p.qty.raw() <= 0 {
                return Err(ValidationError::new(
                    format!("parts.{id}.qty"),
                    "quantity must be positive",
                ));
            }
        }
        for (id, t) in &self.time_entries {
            if t.end.is_some_and(|e| e.at_ms < t.start.at_ms) {
                return Err(ValidationError::new(
                    format!("time_entries.{id}.end"),
                    "the end is before the start",
                ));
            }
        }
        if let Some(sig) = &self.signature {
            sig.validate("signature")?;
        }
        Ok(())
    }
}

impl Stateful for Assignment {
    type Status = AssignmentStatus;

    fn status(&self) -> AssignmentStatus {
        self.status
    }

    fn set_status(&mut self, status: AssignmentStatus) {
        self.status = status;
    }

    fn guard(
        &self,
        req: &TransitionRequest<AssignmentStatus>,
        actor: &Actor,
    ) -> Result<(), TransitionError> {
        use AssignmentStatus::*;
        let reason_given = req.reason.as_deref().is_some_and(|r| !r.trim().is_empty());
        if actor.role == Role::Technician && actor.user != self.meta.owner {
            return Err(TransitionError::precondition(
                "only the assigned technician can do this",
            ));
        }
        match req.to {
            Completed if self.requires_checklist && !self.checklist_complete => Err(
                TransitionError::precondition("complete the checklist before completing the job"),
            ),
            Completed if self.requires_signature && self.signature.is_none() => {
                Err(TransitionError::precondition(
                    "the customer's signature is required to complete the job",
                ))
            }
            Rejected | CannotComplete if !reason_given => {
                Err(TransitionError::precondition("a reason is required"))
            }
            _ => Ok(()),
        }
    }
}

/// Moves the assignment one step, stamping the step's time and position.
pub fn advance(
    doc: &mut RecordDoc,
    actor: &Actor,
    to: AssignmentStatus,
    at: DeviceTime,
    gps: Option<GeoPoint>,
    reason: Option<String>,
) -> Result<ChangeHash, ModelError> {
    let mut req = TransitionRequest::new(to, at);
    req.gps = gps;
    req.reason = reason;
    let stamp = Stamp { at, gps };
    doc.transition::<Assignment>(actor, &req, |a| match to {
        AssignmentStatus::Traveling => a.travel_started = Some(stamp),
        AssignmentStatus::OnSite => a.arrived = Some(stamp),
        AssignmentStatus::InProgress if a.work_started.is_none() => a.work_started = Some(stamp),
        AssignmentStatus::Completed | AssignmentStatus::CannotComplete => {
            a.work_ended = Some(stamp)
        }
        _ => {}
    })
}

fn open_for_entries(doc: &RecordDoc, actor: &Actor) -> Result<(), ModelError> {
    let a: Assignment = doc.read_stateful()?;
    if matches!(
        a.status,
        AssignmentStatus::Cancelled | AssignmentStatus::Rejected
    ) {
        return Err(TransitionError::precondition(format!(
            "the assignment is {}",
            a.status.as_str()
        ))
        .into());
    }
    if actor.role == Role::Technician && actor.user != a.meta.owner {
        return Err(TransitionError::precondition(
            "only the assigned technician can book on this assignment",
        )
        .into());
    }
    Ok(())
}

/// Records a part used; returns the entry id.
pub fn add_part(
    doc: &mut RecordDoc,
    actor: &Actor,
    at: DeviceTime,
    part: PartUsed,
) -> Result<RecordId, ModelError> {
    open_for_entries(doc, actor)?;
    let id = RecordId::new();
    doc.update::<Assignment>(at, |a| {
        a.parts.insert(id, part);
    })?;
    Ok(id)
}

/// Books time; returns the entry id.
pub fn add_time_entry(
    doc: &mut RecordDoc,
    actor: &Actor,
    at: DeviceTime,
    entry: TimeEntry,
) -> Result<RecordId, ModelError> {
    open_for_entries(doc, actor)?;
    let id = RecordId::new();
    doc.update::<Assignment>(at, |a| {
        a.time_entries.insert(id, entry);
    })?;
    Ok(id)
}

/// Attaches the customer's signature.
pub fn sign(
    doc: &mut RecordDoc,
    actor: &Actor,
    at: DeviceTime,
    signature: SignatureRef,
) -> Result<Option<ChangeHash>, ModelError> {
    open_for_entries(doc, actor)?;
    doc.update::<Assignment>(at, |a| a.signature = Some(signature))
}

/// Stops a running time entry at `end`, with an optional note (the note is
/// kept when `note` is `None`). Refused for an entry that already ended.
pub fn stop_time_entry(
    doc: &mut RecordDoc,
    actor: &Actor,
    at: DeviceTime,
    entry: RecordId,
    end: DeviceTime,
    note: Option<String>,
) -> Result<Option<ChangeHash>, ModelError> {
    open_for_entries(doc, actor)?;
    let a: Assignment = doc.read()?;
    match a.time_entries.get(&entry) {
        None => {
            return Err(ValidationError::new(
                format!("time_entries.{entry}"),
                "no such time entry",
            )
            .into());
        }
        Some(t) if t.end.is_some() => {
            return Err(TransitionError::precondition("the time entry has already ended").into());
        }
        Some(_) => {}
    }
    doc.update::<Assignment>(at, |a| {
        if let Some(t) = a.time_entries.get_mut(&entry) {
            t.end = Some(end);
            if note.is_some() {
                t.note = note;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{DeviceId, OrgId, TeamId, TerritoryId, UserId};
    use automerge::ActorId;
    use rstest::rstest;

    use AssignmentStatus::*;
    use Role::*;

    #[test]
    fn statuses_and_approvals_have_stable_names() {
        use crate::model::types::assert_stable_names;
        assert_stable_names(
            AssignmentStatus::ALL,
            AssignmentStatus::as_str,
            &[
                "scheduled",
                "dispatched",
                "accepted",
                "rejected",
                "traveling",
                "on_site",
                "in_progress",
                "on_break",
                "completed",
                "cannot_complete",
                "cancelled",
            ],
        );
        assert_stable_names(
            Approval::ALL,
            Approval::as_str,
            &["pending", "approved", "rejected"],
        );
    }

    #[rstest]
    #[case(Scheduled, Dispatched, Manager)]
    #[case(Scheduled, Dispatched, Server)]
    #[case(Dispatched, Accepted, Technician)]
    #[case(Dispatched, Rejected, Technician)]
    #[case(Rejected, Dispatched, Manager)]
    #[case(Accepted, Traveling, Technician)]
    #[case(Accepted, OnSite, Technician)]
    #[case(Traveling, OnSite, Technician)]
    #[case(OnSite, InProgress, Technician)]
    #[case(InProgress, OnBreak, Technician)]
    #[case(OnBreak, InProgress, Technician)]
    #[case(InProgress, Completed, Technician)]
    #[case(InProgress, CannotComplete, Technician)]
    #[case(OnSite, CannotComplete, Technician)]
    #[case(Scheduled, Cancelled, Manager)]
    #[case(Traveling, Cancelled, Admin)]
    #[case(OnSite, Cancelled, Manager)]
    fn allowed_transitions(
        #[case] from: AssignmentStatus,
        #[case] to: AssignmentStatus,
        #[case] role: Role,
    ) {
        assert_eq!(from.check(to, role), Ok(()));
    }

    #[rstest]
    #[case::technicians_do_not_dispatch(Scheduled, Dispatched, Technician)]
    #[case::managers_do_not_accept_for_technicians(Dispatched, Accepted, Manager)]
    #[case::managers_do_not_complete_for_technicians(InProgress, Completed, Manager)]
    #[case::technicians_do_not_cancel(Accepted, Cancelled, Technician)]
    #[case::reps_have_no_assignments(Dispatched, Accepted, Rep)]
    fn refused_by_role(
        #[case] from: AssignmentStatus,
        #[case] to: AssignmentStatus,
        #[case] role: Role,
    ) {
        assert!(matches!(
            from.check(to, role),
            Err(TransitionError::RoleNotAllowed { .. })
        ));
    }

    #[rstest]
    #[case::no_cancel_once_work_started(InProgress, Cancelled)]
    #[case::no_cancel_on_break(OnBreak, Cancelled)]
    #[case::no_cancel_when_done(Completed, Cancelled)]
    #[case::no_skipping_to_completed(Accepted, Completed)]
    #[case::completed_is_final(Completed, InProgress)]
    #[case::no_undo_of_a_rejection_by_accepting(Rejected, Accepted)]
    fn refused_edges(#[case] from: AssignmentStatus, #[case] to: AssignmentStatus) {
        for role in [Technician, Manager, Admin, Server] {
            assert!(matches!(
                from.check(to, role),
                Err(TransitionError::NotAllowed { .. })
            ));
        }
    }

    fn setup(requires_signature: bool) -> (RecordDoc, Actor, Actor) {
        let tech = Actor::on_device(UserId::new(), Technician, DeviceId::new());
        let manager = Actor::without_device(UserId::new(), Manager);
        let meta = RecordMeta {
            id: RecordId::new(),
            org: OrgId::new(),
            owner: tech.user,
            team: TeamId::new(),
            territory: TerritoryId::new(),
        };
        let mut a = Assignment::new(
            meta,
            RecordId::new(),
            DeviceTime::utc(0),
            DeviceTime::utc(3_600_000),
        );
        a.status = Dispatched;
        a.requires_signature = requires_signature;
        let doc = RecordDoc::create_stateful(&a, ActorId::random(), &manager, DeviceTime::utc(0))
            .expect("create");
        (doc, tech, manager)
    }

    fn walk_to_in_progress(doc: &mut RecordDoc, tech: &Actor) {
        for (i, s) in [Accepted, Traveling, OnSite, InProgress]
            .into_iter()
            .enumerate()
        {
            advance(
                doc,
                tech,
                s,
                DeviceTime::utc(60_000 * (i as i64 + 1)),
                None,
                None,
            )
            .expect("step");
        }
    }

    /// A timer stopped on the phone and on the tablet offline: the end
    /// clashes, and the technician keeps one of the two from the app; a rep
    /// may not (the table), and the status is the office's to settle.
    #[test]
    fn a_time_entry_stopped_on_two_devices_is_settled_by_its_technician() {
        let (mut doc, tech, _) = setup(false);
        walk_to_in_progress(&mut doc, &tech);
        let entry = add_time_entry(
            &mut doc,
            &tech,
            DeviceTime::utc(300_000),
            TimeEntry {
                kind: TimeKind::Work,
                start: DeviceTime::utc(240_000),
                end: None,
                approval: Approval::Pending,
                note: None,
            },
        )
        .expect("running");
        let mut tablet = RecordDoc::from_automerge(doc.automerge().fork()).expect("fork");
        tablet.set_actor(ActorId::random());
        stop_time_entry(
            &mut doc,
            &tech,
            DeviceTime::utc(1),
            entry,
            DeviceTime::utc(900_000),
            None,
        )
        .expect("stop on the phone");
        stop_time_entry(
            &mut tablet,
            &tech,
            DeviceTime::utc(1),
            entry,
            DeviceTime::utc(960_000),
            None,
        )
        .expect("stop on the tablet");
        doc.merge(&mut tablet).expect("merge");
        let clash = doc.conflicts().expect("conflicts");
        let end = clash
            .iter()
            .find(|c| c.path.starts_with(&format!("time_entries.{entry}.end")))
            .expect("the end clashes");
        let keep = end
            .values
            .iter()
            .find(|v| v.value["at_ms"] == 900_000)
            .expect("the phone's end")
            .value
            .clone();
        let err = doc
            .keep_value(Role::Rep, &end.path, &keep, DeviceTime::utc(2))
            .expect_err("a rep does not book a technician's time");
        assert!(err.to_string().contains("may not change"), "{err}");
        let err = doc
            .keep_value(
                Technician,
                "status",
                &serde_json::json!("completed"),
                DeviceTime::utc(2),
            )
            .expect_err("the status is the office's");
        assert!(err.to_string().contains("back office"), "{err}");
        doc.keep_value(Technician, &end.path, &keep, DeviceTime::utc(2))
            .expect("kept");
        assert!(doc.conflicts().expect("conflicts").is_empty());
        let a: Assignment = doc.read_stateful().expect("read");
        assert_eq!(a.time_entries[&entry].end, Some(DeviceTime::utc(900_000)));
    }

    #[test]
    fn a_technicians_day_stamps_every_step_and_books_parts_and_time() {
        let (mut doc, tech, _) = setup(false);
        walk_to_in_progress(&mut doc, &tech);
        add_part(
            &mut doc,
            &tech,
            DeviceTime::utc(300_000),
            PartUsed {
                product_id: RecordId::new(),
                qty: Qty::units(2),
                van_stock_id: None,
                serial: None,
                billable: true,
                at: DeviceTime::utc(300_000),
            },
        )
        .expect("part");
        add_time_entry(
            &mut doc,
            &tech,
            DeviceTime::utc(300_000),
            TimeEntry {
                kind: TimeKind::Work,
                start: DeviceTime::utc(240_000),
                end: Some(DeviceTime::utc(240_000 + 45 * 60_000)),
                approval: Approval::Pending,
                note: None,
            },
        )
        .expect("time");
        advance(
            &mut doc,
            &tech,
            Completed,
            DeviceTime::utc(400_000),
            None,
            None,
        )
        .expect("complete");
        let a: Assignment = doc.read_stateful().expect("read");
        assert_eq!(a.status, Completed);
        assert!(
            a.travel_started.is_some()
                && a.arrived.is_some()
                && a.work_started.is_some()
                && a.work_ended.is_some()
        );
        assert_eq!(a.parts.len(), 1);
        assert_eq!(a.minutes_by_kind().get(&TimeKind::Work), Some(&45));
        assert_eq!(doc.history().expect("history").len(), 6);
    }

    #[test]
    fn a_running_time_entry_is_stopped_once_with_its_note() {
        let (mut doc, tech, _) = setup(false);
        walk_to_in_progress(&mut doc, &tech);
        let running = TimeEntry {
            kind: TimeKind::Travel,
            start: DeviceTime::utc(60_000),
            end: None,
            approval: Approval::Pending,
            note: None,
        };
        let id = add_time_entry(&mut doc, &tech, DeviceTime::utc(60_000), running).expect("time");
        let end = DeviceTime::utc(60_000 + 25 * 60_000);
        let note = Some("traffic on the bridge".to_owned());
        stop_time_entry(&mut doc, &tech, end, id, end, note).expect("stop");
        let a: Assignment = doc.read_stateful().expect("read");
        assert_eq!(a.minutes_by_kind().get(&TimeKind::Travel), Some(&25));
        assert_eq!(
            a.time_entries[&id].note.as_deref(),
            Some("traffic on the bridge")
        );
        let err = stop_time_entry(&mut doc, &tech, end, id, end, None).expect_err("ended");
        assert!(err.to_string().contains("already ended"), "{err}");
        assert!(stop_time_entry(&mut doc, &tech, end, RecordId::new(), end, None).is_err());
    }

    #[test]
    fn completion_waits_for_the_signature_when_required() {
        let (mut doc, tech, _) = setup(true);
        walk_to_in_progress(&mut doc, &tech);
        let err = advance(
            &mut doc,
            &tech,
            Completed,
            DeviceTime::utc(500_000),
            None,
            None,
        )
        .expect_err("needs signature");
        assert!(err.to_string().contains("signature"));
        sign(
            &mut doc,
            &tech,
            DeviceTime::utc(500_000),
            SignatureRef {
                signer_name: "A. Customer".into(),
                signer_role: None,
                at: DeviceTime::utc(500_000),
                gps: None,
                image_sha256: "00".repeat(32),
                document_sha256: "11".repeat(32),
                rendering_version: 1,
            },
        )
        .expect("sign");
        advance(
            &mut doc,
            &tech,
            Completed,
            DeviceTime::utc(510_000),
            None,
            None,
        )
        .expect("complete");
    }

    #[test]
    fn another_technician_cannot_move_the_assignment() {
        let (mut doc, _, _) = setup(false);
        let other = Actor::on_device(UserId::new(), Technician, DeviceId::new());
        assert!(advance(&mut doc, &other, Accepted, DeviceTime::utc(1), None, None).is_err());
    }

    #[test]
    fn work_completed_offline_while_the_office_cancelled_shows_completed_and_keeps_the_clash() {
        let (mut tech_doc, tech, manager) = setup(false);
        advance(
            &mut tech_doc,
            &tech,
            Accepted,
            DeviceTime::utc(1),
            None,
            None,
        )
        .expect("accept");
        let mut office = RecordDoc::from_automerge(tech_doc.automerge().fork()).expect("fork");
        office.set_actor(ActorId::random());
        office
            .transition::<Assignment>(
                &manager,
                &TransitionRequest::new(Cancelled, DeviceTime::utc(2)),
                |_| {},
            )
            .expect("cancel");
        for (i, s) in [Traveling, OnSite, InProgress, Completed]
            .into_iter()
            .enumerate()
        {
            advance(
                &mut tech_doc,
                &tech,
                s,
                DeviceTime::utc(10 + i as i64),
                None,
                None,
            )
            .expect("step");
        }
        tech_doc.merge(&mut office).expect("merge");
        office.merge(&mut tech_doc).expect("merge back");
        for doc in [&tech_doc, &office] {
            assert_eq!(doc.status::<AssignmentStatus>().expect("status"), Completed);
            let c = doc.conflicts().expect("conflicts");
            let status = c.iter().find(|c| c.path == "status").expect("clash listed");
            assert!(status.values.iter().any(|v| v.value == "cancelled"));
            assert!(
                doc.history()
                    .expect("history")
                    .iter()
                    .any(|e| e.to == "cancelled")
            );
        }
        // A manager settles it; the conflict is gone everywhere.
        office
            .resolve_status(
                &manager,
                Completed,
                DeviceTime::utc(99),
                "work was done; cancellation withdrawn",
            )
            .expect("resolve");
        tech_doc.merge(&mut office).expect("merge");
        assert!(
            tech_doc
                .conflicts()
                .expect("conflicts")
                .iter()
                .all(|c| c.path != "status")
        );
    }
}
