//! Service jobs (work orders). A job's status is mostly rolled up from its
//! assignments ([`rollup`]); only the back office closes or cancels it.
//!
//! | from                      | to            | who                                  | condition                         |
//! |---------------------------|---------------|--------------------------------------|-----------------------------------|
//! | `open`                    | `scheduled`   | manager, admin, server               |                                   |
//! | `open`, `scheduled`       | `in_progress` | technician, server (roll-up)         |                                   |
//! | `in_progress`             | `completed`   | technician, manager, server (roll-up)|                                   |
//! | `completed`               | `in_progress` | manager, admin (reopen)              |                                   |
//! | `completed`               | `closed`      | manager, admin, server               |                                   |
//! | `open`, `scheduled`, `in_progress` | `cancelled` | manager, admin                | no assignment in progress ([`cancel`]) |
//!
//! Concurrent statuses: `closed` (6) > `completed` (5) > `in_progress` (4) >
//! `cancelled` (3) > `scheduled` (2) > `open` (1): a job worked on offline while
//! the office cancelled it shows the work, with the clash kept for the manager.

use automerge::ChangeHash;
use serde::{Deserialize, Serialize};

use super::assignment::AssignmentStatus;
use super::status::{Status, TransitionError, TransitionRequest};
use super::types::{Actor, DeviceTime, RecordKind, RecordMeta, Role, stable_names};
use super::{ModelError, Record, RecordDoc, Stateful, ValidationError};
use crate::ids::RecordId;

/// Status of a service job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Logged, not scheduled.
    Open,
    /// Has assignments.
    Scheduled,
    /// A technician is travelling to it or working on it.
    InProgress,
    /// Every assignment is done (or cancelled, with at least one done).
    Completed,
    /// Closed by the back office (invoiced, archived).
    Closed,
    /// Called off by the back office.
    Cancelled,
}

stable_names!(machine JobStatus, "service job status" {
    Open => "open",
    Scheduled => "scheduled",
    InProgress => "in_progress",
    Completed => "completed",
    Closed => "closed",
    Cancelled => "cancelled",
});

impl JobStatus {
    /// Whether work on the job is still to be done: `open`, `scheduled` or
    /// `in_progress` (the dashboard's open jobs, `docs/kpis.md`).
    pub const fn is_open(self) -> bool {
        matches!(self, Self::Open | Self::Scheduled | Self::InProgress)
    }

    /// Whether the work is done: `completed` or `closed` (the dashboard's
    /// closed jobs and the SLA check of the exports, `docs/kpis.md`).
    pub const fn is_done(self) -> bool {
        matches!(self, Self::Completed | Self::Closed)
    }
}

impl Status for JobStatus {
    const MACHINE: &'static str = "service job";

    fn all() -> &'static [Self] {
        Self::ALL
    }

    fn as_str(self) -> &'static str {
        self.stable_name()
    }

    fn may_start_in(self, role: Role) -> bool {
        matches!(self, JobStatus::Open | JobStatus::Scheduled) && role.is_back_office()
    }

    fn check(self, to: Self, role: Role) -> Result<(), TransitionError> {
        use JobStatus::*;
        use Role::*;
        let allowed: &[Role] = match (self, to) {
            (Open, Scheduled) => &[Manager, Admin, Server],
            (Open, InProgress) | (Scheduled, InProgress) => &[Technician, Server],
            (InProgress, Completed) => &[Technician, Manager, Server],
            (Completed, InProgress) => &[Manager, Admin],
            (Completed, Closed) => &[Manager, Admin, Server],
            (Open | Scheduled | InProgress, Cancelled) => &[Manager, Admin],
            _ => return Err(TransitionError::not_allowed(self, to)),
        };
        super::status::allow_roles(self, to, role, allowed)
    }

    fn precedence(self) -> u8 {
        match self {
            JobStatus::Closed => 6,
            JobStatus::Completed => 5,
            JobStatus::InProgress => 4,
            JobStatus::Cancelled => 3,
            JobStatus::Scheduled => 2,
            JobStatus::Open => 1,
        }
    }
}

/// The status a job should have given its assignments.
///
/// Any assignment travelling, on site, working or on a break makes the job
/// `in_progress`; all of them completed or cancelled (at least one completed)
/// makes it `completed`. `closed` and `cancelled` are back-office decisions and
/// never rolled back; with no active or finished work the status is left as is.
pub fn rollup(current: JobStatus, assignments: &[AssignmentStatus]) -> JobStatus {
    use AssignmentStatus as A;
    if matches!(current, JobStatus::Closed | JobStatus::Cancelled) {
        return current;
    }
    if assignments.iter().any(|a| a.is_active()) {
        return JobStatus::InProgress;
    }
    let finished = |a: &A| matches!(a, A::Completed | A::Cancelled | A::Rejected);
    if !assignments.is_empty()
        && assignments.iter().all(finished)
        && assignments.contains(&A::Completed)
    {
        return JobStatus::Completed;
    }
    if current == JobStatus::Open && !assignments.is_empty() {
        return JobStatus::Scheduled;
    }
    current
}

/// Priority of a job.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Whenever convenient.
    Low,
    /// Normal.
    #[default]
    Normal,
    /// Soon.
    High,
    /// Now.
    Urgent,
}

/// A service job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceJob {
    /// Ownership: `owner` is the dispatcher responsible for the job.
    pub meta: RecordMeta,
    /// The customer.
    pub account_id: RecordId,
    /// Where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_id: Option<RecordId>,
    /// Who to ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<RecordId>,
    /// The equipment serviced (asset tag or serial).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    /// Job type, e.g. `repair`, `installation`, `maintenance`.
    pub job_type: String,
    /// Priority.
    #[serde(default)]
    pub priority: Priority,
    /// What the customer reported.
    #[serde(default)]
    pub description: String,
    /// Start of the window the customer asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_window_start: Option<DeviceTime>,
    /// End of that window (the promise: a job not done by then is a broken promise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_window_end: Option<DeviceTime>,
    /// SLA due time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla_due: Option<DeviceTime>,
    /// Effective status.
    pub status: JobStatus,
    /// When a technician first arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_arrived_at: Option<DeviceTime>,
    /// When the job was completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DeviceTime>,
    /// When it was closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<DeviceTime>,
    /// How it was resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    /// Fixed on the first visit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_time_fix: Option<bool>,
    /// Completing an assignment needs the checklist.
    #[serde(default)]
    pub requires_checklist: bool,
    /// The checklist template to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checklist_template_id: Option<RecordId>,
    /// Completing an assignment needs the customer's signature.
    #[serde(default)]
    pub requires_signature: bool,
}

impl ServiceJob {
    /// An open job.
    pub fn new(meta: RecordMeta, account_id: RecordId, job_type: impl Into<String>) -> Self {
        Self {
            meta,
            account_id,
            location_id: None,
            contact_id: None,
            asset: None,
            job_type: job_type.into(),
            priority: Priority::Normal,
            description: String::new(),
            request_window_start: None,
            request_window_end: None,
            sla_due: None,
            status: JobStatus::Open,
            first_arrived_at: None,
            completed_at: None,
            closed_at: None,
            resolution: None,
            first_time_fix: None,
            requires_checklist: false,
            checklist_template_id: None,
            requires_signature: false,
        }
    }
}

impl Record for ServiceJob {
    const KIND: RecordKind = RecordKind::ServiceJob;

    fn meta(&self) -> &RecordMeta {
        &self.meta
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if self.job_type.trim().is_empty() {
            return Err(ValidationError::new("job_type", "a job needs a type"));
        }
        if let (Some(s), Some(e)) = (self.request_window_start, self.request_window_end)
            && e.at_ms < s.at_ms
        {
            return Err(ValidationError::new(
                "request_window_end",
                "the window ends before it starts",
            ));
        }
        if self.requires_checklist && self.checklist_template_id.is_none() {
            return Err(ValidationError::new(
                "checklist_template_id",
                "a required checklist needs a template",
            ));
        }
        Ok(())
    }
}

impl Stateful for ServiceJob {
    type Status = JobStatus;

    fn status(&self) -> JobStatus {
        self.status
    }

    fn set_status(&mut self, status: JobStatus) {
        self.status = status;
    }

    fn guard(
        &self,
        req: &TransitionRequest<JobStatus>,
        _actor: &Actor,
    ) -> Result<(), TransitionError> {
        match req.to {
            JobStatus::Cancelled if req.reason.as_deref().is_none_or(|r| r.trim().is_empty()) => {
                Err(TransitionError::precondition(
                    "a reason is required to cancel a job",
                ))
            }
            JobStatus::Closed
                if self
                    .resolution
                    .as_deref()
                    .is_none_or(|r| r.trim().is_empty()) =>
            {
                Err(TransitionError::precondition(
                    "a resolution is required to close a job",
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Cancels a job, refused while any assignment is in progress.
pub fn cancel(
    doc: &mut RecordDoc,
    actor: &Actor,
    assignments: &[AssignmentStatus],
    at: DeviceTime,
    reason: impl Into<String>,
) -> Result<ChangeHash, ModelError> {
    if assignments.iter().any(|a| a.is_active()) {
        return Err(TransitionError::precondition(
            "a job cannot be cancelled while an assignment is in progress",
        )
        .into());
    }
    doc.transition::<ServiceJob>(
        actor,
        &TransitionRequest::new(JobStatus::Cancelled, at).with_reason(reason),
        |_| {},
    )
}

/// Closes a completed job for the back office: the resolution (required,
/// kept as written when it is the one the job already has, so a customer's
/// signature over it still matches), whether it was fixed on the first visit,
/// and `closed_at`, in one change with the status.
pub fn close(
    doc: &mut RecordDoc,
    actor: &Actor,
    at: DeviceTime,
    resolution: &str,
    first_time_fix: bool,
) -> Result<ChangeHash, ModelError> {
    let resolution = resolution.trim().to_owned();
    doc.transition::<ServiceJob>(actor, &TransitionRequest::new(JobStatus::Closed, at), |j| {
        j.closed_at = Some(at);
        if j.resolution.as_deref().map(str::trim) != Some(resolution.as_str()) {
            j.resolution = Some(resolution);
        }
        j.first_time_fix = Some(first_time_fix);
    })
}

/// When the work a roll-up reports happened, read from the assignments
/// (device times of the field's stamps, never the server's clock), so two
/// servers rolling up the same job write the same values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollupTimes {
    /// The earliest arrival on site of any assignment.
    pub first_arrival: Option<DeviceTime>,
    /// The latest end of work of the completed assignments.
    pub completed: Option<DeviceTime>,
}

impl RollupTimes {
    /// The times found in `assignments`.
    pub fn of(assignments: &[super::Assignment]) -> Self {
        let first_arrival = assignments
            .iter()
            .filter_map(|a| a.arrived.or(a.work_started).map(|s| s.at))
            .min_by_key(|t| t.at_ms);
        let completed = assignments
            .iter()
            .filter(|a| a.status == AssignmentStatus::Completed)
            .filter_map(|a| a.work_ended.map(|s| s.at))
            .max_by_key(|t| t.at_ms);
        RollupTimes {
            first_arrival,
            completed,
        }
    }
}

/// Applies the roll-up: moves the job to the status its assignments imply (one
/// change, by `actor`), stamping first arrival and completion. Returns `None`
/// when the job already shows that status.
pub fn apply_rollup(
    doc: &mut RecordDoc,
    actor: &Actor,
    assignments: &[AssignmentStatus],
    at: DeviceTime,
) -> Result<Option<ChangeHash>, ModelError> {
    let times = RollupTimes {
        first_arrival: Some(at),
        completed: Some(at),
    };
    apply_rollup_with(doc, actor, assignments, times, at)
}

/// The statuses a roll-up passes through from `current` to `target`: the
/// target itself, or `in_progress` first when the work was both started and
/// finished since the job was last rolled up (a technician who completed the
/// only assignment offline: the job goes `scheduled` → `in_progress` →
/// `completed`, each an edge of the table).
pub fn rollup_path(current: JobStatus, target: JobStatus) -> Vec<JobStatus> {
    if current == target {
        Vec::new()
    } else if target == JobStatus::Completed
        && matches!(current, JobStatus::Open | JobStatus::Scheduled)
    {
        vec![JobStatus::InProgress, JobStatus::Completed]
    } else {
        vec![target]
    }
}

/// [`apply_rollup`] with the times the assignments give: each status step is
/// dated by the field's own time (arrival, end of work; `at` when unknown),
/// `first_arrived_at` is set from the first arrival (also when the job was
/// already in progress because a technician set off), and `completed_at` from
/// the end of the last work. Returns the last change made, `None` when the job
/// already shows all of it (so a roll-up run twice writes nothing the second
/// time).
pub fn apply_rollup_with(
    doc: &mut RecordDoc,
    actor: &Actor,
    assignments: &[AssignmentStatus],
    times: RollupTimes,
    at: DeviceTime,
) -> Result<Option<ChangeHash>, ModelError> {
    let current = doc.status::<JobStatus>()?;
    let target = rollup(current, assignments);
    let mut last = None;
    for step in rollup_path(current, target) {
        let when = match step {
            JobStatus::InProgress => times.first_arrival.unwrap_or(at),
            JobStatus::Completed => times.completed.unwrap_or(at),
            _ => at,
        };
        let arrival = times.first_arrival;
        last = Some(doc.transition::<ServiceJob>(
            actor,
            &TransitionRequest::new(step, when),
            |j| match step {
                JobStatus::InProgress if j.first_arrived_at.is_none() => {
                    j.first_arrived_at = arrival;
                }
                JobStatus::Completed => {
                    if j.first_arrived_at.is_none() {
                        j.first_arrived_at = arrival;
                    }
                    j.completed_at = Some(when);
                }
                _ => {}
            },
        )?);
    }
    // A technician who set off made the job `in_progress` before arriving:
    // the arrival comes with a later roll-up that moves no status.
    if doc.status::<JobStatus>()? == JobStatus::InProgress
        && let Some(arrival) = times.first_arrival
    {
        let job: ServiceJob = doc.read_stateful()?;
        if job.first_arrived_at.is_none()
            && let Some(hash) = doc.update_by::<ServiceJob>(Some(actor.role), at, |j| {
                j.first_arrived_at = Some(arrival);
            })?
        {
            last = Some(hash);
        }
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{OrgId, TeamId, TerritoryId, UserId};
    use automerge::ActorId;
    use rstest::rstest;

    use AssignmentStatus as A;
    use JobStatus::*;
    use Role::*;

    #[test]
    fn statuses_have_stable_names() {
        crate::model::types::assert_stable_names(
            JobStatus::ALL,
            JobStatus::as_str,
            &[
                "open",
                "scheduled",
                "in_progress",
                "completed",
                "closed",
                "cancelled",
            ],
        );
    }

    #[rstest]
    // (status, open, done)
    #[case(Open, true, false)]
    #[case(Scheduled, true, false)]
    #[case(InProgress, true, false)]
    #[case(Completed, false, true)]
    #[case(Closed, false, true)]
    #[case(Cancelled, false, false)]
    fn open_and_done_jobs(#[case] status: JobStatus, #[case] open: bool, #[case] done: bool) {
        assert_eq!((status.is_open(), status.is_done()), (open, done));
    }

    #[rstest]
    #[case(Open, Scheduled, Manager)]
    #[case(Scheduled, InProgress, Technician)]
    #[case(Open, InProgress, Server)]
    #[case(InProgress, Completed, Technician)]
    #[case(Completed, Closed, Manager)]
    #[case(Completed, InProgress, Admin)]
    #[case(Scheduled, Cancelled, Manager)]
    fn allowed_transitions(#[case] from: JobStatus, #[case] to: JobStatus, #[case] role: Role) {
        assert_eq!(from.check(to, role), Ok(()));
    }

    #[rstest]
    #[case::closing_is_back_office_only(Completed, Closed, Technician)]
    #[case::technicians_cannot_cancel(Scheduled, Cancelled, Technician)]
    #[case::the_server_does_not_cancel(Open, Cancelled, Server)]
    #[case::reps_have_no_jobs(Scheduled, InProgress, Rep)]
    fn refused_by_role(#[case] from: JobStatus, #[case] to: JobStatus, #[case] role: Role) {
        assert!(matches!(
            from.check(to, role),
            Err(TransitionError::RoleNotAllowed { .. })
        ));
    }

    #[rstest]
    #[case(Closed, InProgress)]
    #[case(Cancelled, InProgress)]
    #[case(Completed, Cancelled)]
    #[case(Open, Completed)]
    #[case(Closed, Open)]
    fn refused_edges(#[case] from: JobStatus, #[case] to: JobStatus) {
        for role in [Technician, Manager, Admin, Server] {
            assert!(matches!(
                from.check(to, role),
                Err(TransitionError::NotAllowed { .. })
            ));
        }
    }

    #[rstest]
    #[case::nothing_assigned(Open, &[], Open)]
    #[case::assigned(Open, &[A::Scheduled], Scheduled)]
    #[case::travelling(Scheduled, &[A::Accepted, A::Traveling], InProgress)]
    #[case::on_break(Scheduled, &[A::OnBreak], InProgress)]
    #[case::all_done(InProgress, &[A::Completed, A::Completed], Completed)]
    #[case::done_and_cancelled(InProgress, &[A::Completed, A::Cancelled], Completed)]
    #[case::all_cancelled_is_not_completion(Scheduled, &[A::Cancelled], Scheduled)]
    #[case::one_still_working(InProgress, &[A::Completed, A::InProgress], InProgress)]
    #[case::closed_stays_closed(Closed, &[A::InProgress], Closed)]
    #[case::cancelled_stays_cancelled(Cancelled, &[A::Completed], Cancelled)]
    fn rollup_table(
        #[case] current: JobStatus,
        #[case] assignments: &[A],
        #[case] expected: JobStatus,
    ) {
        assert_eq!(rollup(current, assignments), expected);
    }

    fn job() -> (RecordDoc, Actor) {
        let manager = Actor::without_device(UserId::new(), Manager);
        let meta = RecordMeta {
            id: RecordId::new(),
            org: OrgId::new(),
            owner: manager.user,
            team: TeamId::new(),
            territory: TerritoryId::new(),
        };
        let j = ServiceJob::new(meta, RecordId::new(), "repair");
        (
            RecordDoc::create_stateful(&j, ActorId::random(), &manager, DeviceTime::utc(0))
                .expect("create"),
            manager,
        )
    }

    #[test]
    fn a_job_cannot_be_cancelled_while_an_assignment_is_in_progress() {
        let (mut doc, manager) = job();
        let err = cancel(
            &mut doc,
            &manager,
            &[A::InProgress],
            DeviceTime::utc(1),
            "customer called",
        )
        .expect_err("refused");
        assert!(err.to_string().contains("in progress"));
        cancel(
            &mut doc,
            &manager,
            &[A::Accepted],
            DeviceTime::utc(2),
            "customer called",
        )
        .expect("allowed");
        assert_eq!(doc.status::<JobStatus>().expect("status"), Cancelled);
    }

    #[test]
    fn the_rollup_stamps_first_arrival_and_completion() {
        let (mut doc, _) = job();
        let server = Actor::without_device(UserId::new(), Server);
        apply_rollup(&mut doc, &server, &[A::OnSite], DeviceTime::utc(10)).expect("rollup");
        assert_eq!(
            apply_rollup(&mut doc, &server, &[A::InProgress], DeviceTime::utc(11)).expect("same"),
            None
        );
        apply_rollup(&mut doc, &server, &[A::Completed], DeviceTime::utc(20)).expect("rollup");
        let j: ServiceJob = doc.read_stateful().expect("read");
        assert_eq!(j.status, Completed);
        assert_eq!(j.first_arrived_at, Some(DeviceTime::utc(10)));
        assert_eq!(j.completed_at, Some(DeviceTime::utc(20)));
    }

    #[test]
    fn work_started_and_finished_offline_rolls_up_through_in_progress() {
        let (mut doc, manager) = job();
        doc.transition::<ServiceJob>(
            &manager,
            &TransitionRequest::new(Scheduled, DeviceTime::utc(1)),
            |_| {},
        )
        .expect("scheduled");
        let server = Actor::without_device(UserId::new(), Server);
        let times = RollupTimes {
            first_arrival: Some(DeviceTime::utc(10)),
            completed: Some(DeviceTime::utc(30)),
        };
        assert_eq!(
            rollup_path(Scheduled, Completed),
            vec![InProgress, Completed]
        );
        apply_rollup_with(
            &mut doc,
            &server,
            &[A::Completed],
            times,
            DeviceTime::utc(99),
        )
        .expect("rollup")
        .expect("a change");
        let j: ServiceJob = doc.read_stateful().expect("read");
        assert_eq!(j.status, Completed);
        assert_eq!(j.first_arrived_at, Some(DeviceTime::utc(10)));
        assert_eq!(j.completed_at, Some(DeviceTime::utc(30)));
        let history = doc.history().expect("history");
        let moves: Vec<(&str, i64)> = history
            .iter()
            .skip(2)
            .map(|e| (e.to.as_str(), e.at.at_ms))
            .collect();
        assert_eq!(moves, vec![("in_progress", 10), ("completed", 30)]);
        // Run again: nothing to write.
        assert_eq!(
            apply_rollup_with(
                &mut doc,
                &server,
                &[A::Completed],
                times,
                DeviceTime::utc(100)
            )
            .expect("again"),
            None
        );
    }

    #[test]
    fn setting_off_starts_the_job_and_the_arrival_is_stamped_later() {
        let (mut doc, _) = job();
        let server = Actor::without_device(UserId::new(), Server);
        apply_rollup_with(
            &mut doc,
            &server,
            &[A::Traveling],
            RollupTimes::default(),
            DeviceTime::utc(5),
        )
        .expect("rollup");
        let j: ServiceJob = doc.read_stateful().expect("read");
        assert_eq!((j.status, j.first_arrived_at), (InProgress, None));
        let arrived = RollupTimes {
            first_arrival: Some(DeviceTime::utc(8)),
            completed: None,
        };
        apply_rollup_with(&mut doc, &server, &[A::OnSite], arrived, DeviceTime::utc(9))
            .expect("rollup")
            .expect("the arrival is written");
        let j: ServiceJob = doc.read_stateful().expect("read");
        assert_eq!(j.first_arrived_at, Some(DeviceTime::utc(8)));
    }

    #[test]
    fn closing_needs_a_resolution_and_stamps_the_close() {
        let (mut doc, manager) = job();
        let server = Actor::without_device(UserId::new(), Server);
        apply_rollup(&mut doc, &server, &[A::Completed], DeviceTime::utc(20)).expect("done");
        let err = close(&mut doc, &manager, DeviceTime::utc(30), "  ", true).expect_err("refused");
        assert!(err.to_string().contains("resolution"), "{err}");
        close(
            &mut doc,
            &manager,
            DeviceTime::utc(31),
            "Seal replaced",
            true,
        )
        .expect("closed");
        let j: ServiceJob = doc.read_stateful().expect("read");
        assert_eq!(j.status, Closed);
        assert_eq!(j.closed_at, Some(DeviceTime::utc(31)));
        assert_eq!(j.resolution.as_deref(), Some("Seal replaced"));
        assert_eq!(j.first_time_fix, Some(true));
    }

    #[test]
    fn a_job_completed_offline_while_cancelled_in_the_office_shows_completed_with_the_clash() {
        let (mut office, manager) = job();
        let tech = Actor::without_device(UserId::new(), Technician);
        office
            .transition::<ServiceJob>(
                &tech,
                &TransitionRequest::new(InProgress, DeviceTime::utc(1)),
                |_| {},
            )
            .expect("start");
        let mut device = RecordDoc::from_automerge(office.automerge().fork()).expect("fork");
        device.set_actor(ActorId::random());
        device
            .transition::<ServiceJob>(
                &tech,
                &TransitionRequest::new(Completed, DeviceTime::utc(5)),
                |_| {},
            )
            .expect("complete");
        office
            .transition::<ServiceJob>(
                &manager,
                &TransitionRequest::new(Cancelled, DeviceTime::utc(4)).with_reason("duplicate"),
                |_| {},
            )
            .expect("cancel");
        office.merge(&mut device).expect("merge");
        device.merge(&mut office).expect("merge back");
        for doc in [&office, &device] {
            assert_eq!(doc.status::<JobStatus>().expect("status"), Completed);
            let conflicts = doc.conflicts().expect("conflicts");
            let status = conflicts
                .iter()
                .find(|c| c.path == "status")
                .expect("the clash is listed");
            let shown: Vec<_> = status.values.iter().filter(|v| v.shown).collect();
            assert_eq!(shown.len(), 1);
            assert_eq!(shown[0].value, "completed");
            assert!(status.values.iter().any(|v| v.value == "cancelled"));
            let history = doc.history().expect("history");
            assert!(history.iter().any(|e| e.to == "completed"));
            assert!(
                history
                    .iter()
                    .any(|e| e.to == "cancelled" && e.reason.as_deref() == Some("duplicate"))
            );
        }
    }
}
