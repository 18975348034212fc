//! Service jobs in the back office: who may close and cancel them and what a
//! decision needs, the roll-up the server makes as itself, the SLA and the
//! promised arrival window, and what the job list and the job page show.
//!
//! The life cycle itself (statuses, who takes which edge, the roll-up from the
//! assignments, what closing and cancelling write) is the shared model's
//! (`fieldsync_core::model::job`); this module adds the server's part:
//!
//! - **Roll-up.** Each stored change of an assignment's status makes the
//!   server re-derive its job's status ([`rollup_target`]) and write it as
//!   itself ([`server_caller`], role `server`) through the push path, after
//!   the assignment's push committed; a periodic sweep repairs any job whose
//!   status disagrees with its assignments (`service::jobs`).
//! - **Close** a `completed` job with a resolution (required) and whether it
//!   was fixed on the first visit; **cancel** a job that is not being worked
//!   on, with a reason. Managers for their team's jobs, administrators for the
//!   organisation's, always on the manager's behalf (`Caller::on_behalf`).
//! - **SLA**: a job breaches it when it is completed after `sla_due`, or still
//!   not done once `sla_due` has passed ([`sla_breached`]); cancelled jobs
//!   never do. **Promise**: the job's request window is the arrival window
//!   agreed with the customer; a first arrival on site outside it is a broken
//!   promise ([`promise_kept`]).

use fieldsync_core::model::assignment::{PartUsed, TimeEntry};
use fieldsync_core::model::signature::SignatureVerdict;
use fieldsync_core::model::{
    Actor, Assignment, AssignmentStatus, DeviceTime, JobStatus, RecordDoc, Role, ServiceJob,
    Status, StatusEvent, job,
};
use fieldsync_core::{OrgId, RecordId, UserId};
use serde::Serialize;

use super::caller::Caller;
use super::review::{AttachmentView, ChecklistView};
use super::{Error, Result};

/// Longest resolution or cancellation reason, in bytes.
pub const MAX_TEXT_BYTES: usize = 4_000;
/// Rows one page of the job list shows, at most.
pub const MAX_PAGE_ROWS: u32 = 100;
/// Rows one page of the job list shows unless asked otherwise.
pub const DEFAULT_PAGE_ROWS: u32 = 50;

/// What a caller wants to do with jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Managing {
    /// List jobs or read one.
    Reading,
    /// Close or cancel one.
    Deciding,
}

/// Jobs are run by the back office: managers (their team's) and administrators.
pub fn may_manage(role: Role, what: Managing) -> Result<()> {
    if role.is_back_office() {
        return Ok(());
    }
    Err(Error::Forbidden(
        match what {
            Managing::Reading => "the job list is for managers and administrators",
            Managing::Deciding => "only managers and administrators close or cancel jobs",
        }
        .into(),
    ))
}

/// A job id given as text (in a path or a body).
pub fn parse_job_id(text: &str) -> Result<RecordId> {
    text.trim()
        .parse()
        .map_err(|_| Error::BadRequest(format!("{text:?} is not a job id")))
}

fn required_text<'a>(text: Option<&'a str>, what: &str) -> Result<&'a str> {
    let text = text.map(str::trim).unwrap_or_default();
    if text.is_empty() {
        return Err(Error::BadRequest(format!("{what} is required")));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(Error::BadRequest(format!(
            "{what} is {} bytes long; at most {MAX_TEXT_BYTES}",
            text.len()
        )));
    }
    Ok(text)
}

/// The resolution a close needs: not blank, at most [`MAX_TEXT_BYTES`].
pub fn resolution(text: Option<&str>) -> Result<&str> {
    required_text(text, "a resolution")
}

/// The reason a cancellation needs: not blank, at most [`MAX_TEXT_BYTES`].
pub fn cancel_reason(text: Option<&str>) -> Result<&str> {
    required_text(text, "a reason")
}

/// Closes the job in `doc` on `actor`'s behalf; refused (conflict) unless it
/// is `completed`.
pub fn close_job(
    doc: &mut RecordDoc,
    actor: &Actor,
    at: DeviceTime,
    resolution: &str,
    first_time_fix: bool,
) -> Result<()> {
    let status = job_status(doc)?;
    if status != JobStatus::Completed {
        return Err(Error::Conflict(format!(
            "only a completed job can be closed; this one is {}",
            status.as_str()
        )));
    }
    job::close(doc, actor, at, resolution, first_time_fix)
        .map(|_| ())
        .map_err(|e| Error::Conflict(e.to_string()))
}

/// Cancels the job in `doc` on `actor`'s behalf, given its assignments'
/// statuses; refused (conflict) while one is in progress, or when the job is
/// already done or cancelled.
pub fn cancel_job(
    doc: &mut RecordDoc,
    actor: &Actor,
    assignments: &[AssignmentStatus],
    at: DeviceTime,
    reason: &str,
) -> Result<()> {
    let status = job_status(doc)?;
    if !status.is_open() {
        return Err(Error::Conflict(format!(
            "only a job not yet done can be cancelled; this one is {}",
            status.as_str()
        )));
    }
    job::cancel(doc, actor, assignments, at, reason)
        .map(|_| ())
        .map_err(|e| Error::Conflict(e.to_string()))
}

fn job_status(doc: &RecordDoc) -> Result<JobStatus> {
    doc.status::<JobStatus>()
        .map_err(|e| Error::internal(format!("a stored job has no status: {e}")))
}

/// The caller as whom the server writes its own roll-ups in `org`
/// ([`Caller::server`]: the organisation's server user, a fresh Automerge
/// actor per write, so two nodes rolling up one job at once both merge).
pub fn server_caller(org: OrgId) -> Caller {
    Caller::server(org)
}

/// The status the server moves a job in `current` to, given its assignments'
/// statuses; `None` when it shows that already, or when the move is not the
/// server's to make (a completed job with work started again is reopened by
/// a manager, never by the roll-up).
pub fn rollup_target(current: JobStatus, assignments: &[AssignmentStatus]) -> Option<JobStatus> {
    let target = job::rollup(current, assignments);
    let path = job::rollup_path(current, target);
    if path.is_empty() {
        return None;
    }
    let mut from = current;
    for step in path {
        from.check(step, Role::Server).ok()?;
        from = step;
    }
    Some(target)
}

/// Whether a job breached its SLA by `now_ms`: completed (or closed) after
/// `sla_due`, or not done while it has passed (the dashboard's
/// `sla_breaches` counts the jobs due in its range with this rule). Cancelled jobs and jobs
/// without a due time never do.
pub fn sla_breached(
    status: JobStatus,
    sla_due_ms: Option<i64>,
    completed_ms: Option<i64>,
    now_ms: i64,
) -> bool {
    let Some(due) = sla_due_ms else {
        return false;
    };
    match (status, completed_ms) {
        (JobStatus::Cancelled, _) => false,
        (s, Some(done)) if s.is_done() => done > due,
        // Not done, or done at a time nobody recorded: late once it passed.
        _ => now_ms > due,
    }
}

/// Whether the first arrival on site kept the promised window (the job's
/// request window, either end may be open); `None` when there was no
/// arrival yet or no window was promised.
pub fn promise_kept(
    first_arrival_ms: Option<i64>,
    window_start_ms: Option<i64>,
    window_end_ms: Option<i64>,
) -> Option<bool> {
    let arrived = first_arrival_ms?;
    if window_start_ms.is_none() && window_end_ms.is_none() {
        return None;
    }
    Some(window_start_ms.is_none_or(|s| arrived >= s) && window_end_ms.is_none_or(|e| arrived <= e))
}

/// What the job list is narrowed to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only jobs in this status.
    pub status: Option<JobStatus>,
    /// Only jobs with an assignment of this technician.
    pub technician: Option<UserId>,
    /// Only jobs that breached their SLA.
    pub sla_breached: bool,
    /// Page, from 1.
    pub page: u32,
    /// Rows per page (1 to [`MAX_PAGE_ROWS`]).
    pub per_page: u32,
}

fn nonempty(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|s| !s.is_empty())
}

impl JobFilter {
    /// A filter from what a client asked: a status by its stable name, a
    /// technician's id, the breach flag, page and size (defaults: page 1,
    /// [`DEFAULT_PAGE_ROWS`]).
    pub fn parse(
        status: Option<&str>,
        technician: Option<&str>,
        sla_breached: bool,
        page: Option<u32>,
        per_page: Option<u32>,
    ) -> Result<JobFilter> {
        let status = nonempty(status)
            .map(|s| {
                JobStatus::parse(s).ok_or_else(|| {
                    Error::BadRequest(format!(
                        "unknown job status {s:?}; use open, scheduled, in_progress, completed, \
                         closed or cancelled"
                    ))
                })
            })
            .transpose()?;
        let technician = nonempty(technician)
            .map(|t| {
                t.parse::<UserId>()
                    .map_err(|_| Error::BadRequest(format!("{t:?} is not a technician id")))
            })
            .transpose()?;
        let page = page.unwrap_or(1);
        if page == 0 {
            return Err(Error::BadRequest("pages are counted from 1".into()));
        }
        let per_page = per_page.unwrap_or(DEFAULT_PAGE_ROWS);
        if per_page == 0 || per_page > MAX_PAGE_ROWS {
            return Err(Error::BadRequest(format!(
                "a page holds 1 to {MAX_PAGE_ROWS} jobs"
            )));
        }
        Ok(JobFilter {
            status,
            technician,
            sla_breached,
            page,
            per_page,
        })
    }

    /// Rows to skip for the page.
    pub fn offset(&self) -> i64 {
        i64::from(self.page.saturating_sub(1)) * i64::from(self.per_page)
    }
}

/// A technician on a job, with their assignment's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TechnicianOnJob {
    /// The technician's user id.
    pub id: String,
    /// Their name.
    pub name: String,
    /// Their assignment's status.
    pub assignment_status: String,
}

/// One row of the job list.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct JobRow {
    /// The job.
    pub id: String,
    /// Its status.
    pub status: String,
    /// Job type (repair, installation, ...).
    pub job_type: String,
    /// Priority.
    pub priority: String,
    /// The customer's name, when readable.
    pub account_name: Option<String>,
    /// SLA due time (ms since the epoch).
    pub sla_due_ms: Option<i64>,
    /// Whether the SLA is breached now ([`sla_breached`]).
    pub sla_breached: bool,
    /// Completed (ms since the epoch, device time).
    pub completed_ms: Option<i64>,
    /// Technicians assigned, in assignment order.
    pub technicians: Vec<TechnicianOnJob>,
}

/// One page of the job list.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct JobPage {
    /// The rows, SLA due first (jobs without one last).
    pub jobs: Vec<JobRow>,
    /// This page, from 1.
    pub page: u32,
    /// Rows per page.
    pub per_page: u32,
    /// Whether another page follows.
    pub more: bool,
}

/// An assignment as the job page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AssignmentView {
    /// The assignment.
    pub id: RecordId,
    /// The technician's name.
    pub technician: Option<String>,
    /// The assignment as stored.
    pub assignment: Assignment,
    /// Parts used, in booking order.
    pub parts: Vec<PartUsed>,
    /// Time entries, by start.
    pub time_entries: Vec<TimeEntry>,
    /// Booked minutes (stopped entries).
    pub minutes: i64,
    /// The verdict on the customer's signature, when signed.
    pub signature: Option<SignatureVerdict>,
    /// The checklist filled on it.
    pub checklist: Option<ChecklistView>,
}

/// Everything the job page shows.
#[derive(Debug, Clone, Serialize)]
pub struct JobDetail {
    /// The job.
    pub id: RecordId,
    /// The job as stored.
    pub job: ServiceJob,
    /// The customer's name, when readable.
    pub account_name: Option<String>,
    /// Its assignments, in creation order.
    pub assignments: Vec<AssignmentView>,
    /// Photos, signatures and documents of the job and its assignments.
    pub attachments: Vec<AttachmentView>,
    /// Status history, oldest first.
    pub history: Vec<StatusEvent>,
    /// Names of the people in the history.
    pub names: std::collections::BTreeMap<UserId, String>,
    /// Whether the SLA is breached now.
    pub sla_breached: bool,
    /// Whether the first arrival kept the promised window.
    pub promise_kept: Option<bool>,
    /// Whether the back office may close it now (completed).
    pub closable: bool,
    /// Whether it may be cancelled now (not done, nobody working on it).
    pub cancellable: bool,
}

/// The page's view of an assignment's entries: parts in booking order, time
/// entries by start, booked minutes.
pub fn entries_of(a: &Assignment) -> (Vec<PartUsed>, Vec<TimeEntry>, i64) {
    let mut parts: Vec<PartUsed> = a.parts.values().cloned().collect();
    parts.sort_by_key(|p| p.at.at_ms);
    let mut time: Vec<TimeEntry> = a.time_entries.values().cloned().collect();
    time.sort_by_key(|t| t.start.at_ms);
    let minutes = a.minutes_by_kind().values().sum();
    (parts, time, minutes)
}

#[cfg(test)]
mod tests {
    use super::*;

    use AssignmentStatus as A;
    use JobStatus::*;

    #[test]
    fn the_server_rolls_up_what_is_its_to_roll_up() {
        let table: &[(JobStatus, &[A], Option<JobStatus>, &str)] = &[
            (Open, &[A::Scheduled], Some(Scheduled), "assigned"),
            (
                Scheduled,
                &[A::Completed],
                Some(Completed),
                "completed offline",
            ),
            (
                Open,
                &[A::Completed],
                Some(Completed),
                "never rolled up, then done",
            ),
            (Scheduled, &[A::Traveling], Some(InProgress), "travelling"),
            (InProgress, &[A::InProgress], None, "already there"),
            (
                Completed,
                &[A::InProgress],
                None,
                "reopening is a manager's",
            ),
            (Closed, &[A::Completed], None, "closed stays closed"),
            (Open, &[], None, "nothing assigned"),
        ];
        for (current, assignments, expected, case) in table {
            assert_eq!(rollup_target(*current, assignments), *expected, "{case}");
        }
    }

    #[test]
    fn sla_table() {
        // (status, due, completed, now, breached)
        let table = [
            (Completed, Some(100), Some(150), 10, true),
            (Closed, Some(100), Some(90), 500, false),
            (InProgress, Some(100), None, 101, true),
            (Open, Some(100), None, 99, false),
            (Cancelled, Some(100), None, 500, false),
            (Open, None, None, 500, false),
            (Completed, Some(100), None, 500, true),
        ];
        for (status, due, done, now, breached) in table {
            assert_eq!(
                sla_breached(status, due, done, now),
                breached,
                "{status:?} due {due:?} done {done:?} at {now}"
            );
        }
    }

    #[test]
    fn promise_table() {
        // (first arrival, window start, window end, kept)
        let table = [
            (Some(50), Some(40), Some(60), Some(true)),
            (Some(70), Some(40), Some(60), Some(false)),
            (Some(30), Some(40), Some(60), Some(false)),
            (Some(30), None, Some(60), Some(true)),
            (None, Some(40), Some(60), None),
            (Some(50), None, None, None),
        ];
        for (arrival, from, to, kept) in table {
            assert_eq!(
                promise_kept(arrival, from, to),
                kept,
                "{arrival:?} in {from:?}..{to:?}"
            );
        }
    }

    #[test]
    fn decisions_need_their_text_and_the_back_office() {
        assert!(matches!(resolution(Some("  ")), Err(Error::BadRequest(_))));
        assert!(matches!(resolution(None), Err(Error::BadRequest(_))));
        assert_eq!(resolution(Some(" Fixed ")).expect("ok"), "Fixed");
        let long = "x".repeat(MAX_TEXT_BYTES + 1);
        assert!(matches!(
            cancel_reason(Some(&long)),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            may_manage(Role::Technician, Managing::Deciding),
            Err(Error::Forbidden(_))
        ));
        assert!(may_manage(Role::Manager, Managing::Deciding).is_ok());
    }

    #[test]
    fn the_list_filter_reads_what_clients_send() {
        let f = JobFilter::parse(Some("completed"), None, true, Some(2), Some(10)).expect("ok");
        assert_eq!(f.status, Some(Completed));
        assert_eq!(f.offset(), 10);
        assert!(JobFilter::parse(Some("done"), None, false, None, None).is_err());
        assert!(JobFilter::parse(None, Some("bob"), false, None, None).is_err());
        assert!(JobFilter::parse(None, None, false, Some(0), None).is_err());
        assert!(JobFilter::parse(None, None, false, None, Some(101)).is_err());
    }

    #[test]
    fn the_server_writes_as_itself_with_a_fresh_actor_each_time() {
        let org = OrgId::new();
        let (a, b) = (server_caller(org), server_caller(org));
        assert_eq!(a.role(), Role::Server);
        assert_eq!(a.user(), b.user());
        assert_eq!(a.device(), None);
        assert_ne!(a.actor_id, b.actor_id);
        assert_eq!(a.principals()[0], format!("o:{org}"));
    }
}
