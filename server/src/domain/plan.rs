//! Planning and dispatch as rules with no I/O: who plans, what a plan needs,
//! the dates of a recurring route, which bookings overlap, when a planned
//! visit counts as missed, and what a reassignment of a technician does.
//!
//! The records themselves (a visit for a rep, a job and its assignment for a
//! technician) are the shared model's; the server writes them on the
//! manager's behalf through the push path, where `domain::authority` checks
//! that the rep or technician is one the manager may plan for (a member of
//! their team; anyone of the organisation for an administrator). The rules
//! here only say what a good plan looks like before anything is written.

use std::collections::{BTreeMap, BTreeSet};

use fieldsync_core::model::{AssignmentStatus, Role, Visit, VisitStatus};
use fieldsync_core::{RecordId, UserId};

use super::{Error, Result};

/// Most visits one recurring route plans at once (a year of weekly visits).
pub const MAX_ROUTE_VISITS: u32 = 52;
/// Longest planned visit or assignment.
pub const MAX_BOOKING_MS: i64 = 24 * 3_600_000;
/// Most days the plan view shows at once.
pub const MAX_VIEW_DAYS: u32 = 14;
/// Longest reason (reopening a visit, cancelling a booking) and longest
/// instructions or job description.
pub const MAX_TEXT_BYTES: usize = 4_000;
/// One day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// What a caller is doing with the plan; each refusal says it its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Planning {
    /// Reading the team's plan.
    Viewing,
    /// Planning visits for reps.
    Visits,
    /// Creating, assigning and reassigning jobs.
    Dispatch,
    /// Reopening a completed visit.
    Reopen,
}

/// The plan belongs to the back office (managers and administrators).
pub fn may_plan(role: Role, what: Planning) -> Result<()> {
    if role.is_back_office() {
        return Ok(());
    }
    Err(Error::Forbidden(
        match what {
            Planning::Viewing => "the plan is for managers and administrators",
            Planning::Visits => "only managers and administrators plan visits for others",
            Planning::Dispatch => "only managers and administrators dispatch jobs",
            Planning::Reopen => "only managers and administrators reopen visits",
        }
        .into(),
    ))
}

/// A booking's start and end (ms since the epoch): the end after the start,
/// at most [`MAX_BOOKING_MS`] long.
pub fn check_slot(start_ms: i64, end_ms: i64) -> Result<()> {
    if end_ms <= start_ms {
        return Err(Error::BadRequest("the end must be after the start".into()));
    }
    if end_ms - start_ms > MAX_BOOKING_MS {
        return Err(Error::BadRequest("a booking lasts at most 24 hours".into()));
    }
    Ok(())
}

/// The role a planned person must have: visits are for reps, assignments
/// for technicians.
pub fn check_person(role: Role, wanted: Role, name: &str) -> Result<()> {
    if role == wanted {
        return Ok(());
    }
    Err(Error::BadRequest(match wanted {
        Role::Technician => format!("{name} is not a technician: jobs are assigned to technicians"),
        _ => format!("{name} is not a rep: visits are planned for reps"),
    }))
}

/// Optional free text (instructions, a description): trimmed, at most
/// [`MAX_TEXT_BYTES`]; empty is none.
pub fn optional_text(what: &str, text: Option<&str>) -> Result<Option<String>> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if text.len() > MAX_TEXT_BYTES {
        return Err(Error::BadRequest(format!(
            "the {what} is longer than {MAX_TEXT_BYTES} bytes"
        )));
    }
    Ok(Some(text.to_owned()))
}

/// A required reason (reopening, cancelling): trimmed, 1 to [`MAX_TEXT_BYTES`].
pub fn reason(what: &str, text: Option<&str>) -> Result<String> {
    optional_text("reason", text)?
        .ok_or_else(|| Error::BadRequest(format!("{what} needs a reason")))
}

/// The days between a recurring route's visits: every `weeks` weeks when
/// given (1 to 12), else the account's visit frequency (1 to 365 days).
pub fn route_every_days(weeks: Option<u32>, account_frequency_days: Option<u32>) -> Result<u32> {
    match (weeks, account_frequency_days) {
        (Some(w), _) if (1..=12).contains(&w) => Ok(w * 7),
        (Some(w), _) => Err(Error::BadRequest(format!(
            "a route repeats every 1 to 12 weeks, not {w}"
        ))),
        (None, Some(d)) if (1..=365).contains(&d) => Ok(d),
        (None, _) => Err(Error::BadRequest(
            "the account has no visit frequency: say every how many weeks".into(),
        )),
    }
}

/// The starts of a route's `count` visits, `every_days` apart from `first_ms`.
pub fn route_starts(first_ms: i64, every_days: u32, count: u32) -> Result<Vec<i64>> {
    if count == 0 || count > MAX_ROUTE_VISITS {
        return Err(Error::BadRequest(format!(
            "a route plans 1 to {MAX_ROUTE_VISITS} visits at once"
        )));
    }
    let step = i64::from(every_days) * DAY_MS;
    (0..i64::from(count))
        .map(|i| {
            step.checked_mul(i)
                .and_then(|d| first_ms.checked_add(d))
                .ok_or_else(|| Error::BadRequest("the route's dates are out of range".into()))
        })
        .collect()
}

/// One booking of a person's day, as the plan shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Booking {
    /// The visit or assignment.
    pub id: RecordId,
    /// The rep or technician.
    pub person: UserId,
    /// Start (ms since the epoch).
    pub start_ms: i64,
    /// End (ms since the epoch).
    pub end_ms: i64,
    /// Whether it still takes the person's time (not cancelled, missed or
    /// rejected).
    pub live: bool,
}

/// The bookings that overlap another live booking of the same person: a
/// double booking the plan shows for the manager to resolve. Touching ends
/// (one ends at 10:00, the next starts at 10:00) do not overlap.
pub fn double_booked(bookings: &[Booking]) -> BTreeSet<RecordId> {
    let mut by_person: BTreeMap<UserId, Vec<&Booking>> = BTreeMap::new();
    for b in bookings.iter().filter(|b| b.live) {
        by_person.entry(b.person).or_default().push(b);
    }
    let mut out = BTreeSet::new();
    for list in by_person.values_mut() {
        list.sort_by_key(|b| (b.start_ms, b.end_ms));
        // Sweep: the booking that ends latest so far overlaps each one that
        // starts before it ends.
        let mut latest: Option<&Booking> = None;
        for b in list.iter() {
            if let Some(l) = latest {
                if b.start_ms < l.end_ms {
                    out.insert(b.id);
                    out.insert(l.id);
                }
                if b.end_ms > l.end_ms {
                    latest = Some(b);
                }
            } else {
                latest = Some(b);
            }
        }
    }
    out
}

/// Whether a visit still counts against the person's time.
pub fn visit_is_live(status: VisitStatus) -> bool {
    !matches!(status, VisitStatus::Cancelled | VisitStatus::Missed)
}

/// Whether an assignment still counts against the technician's time.
pub fn assignment_is_live(status: AssignmentStatus) -> bool {
    !matches!(
        status,
        AssignmentStatus::Cancelled | AssignmentStatus::Rejected
    )
}

/// Whether a visit is missed at `now_ms`: still `planned` and its planned end
/// (its start when it has no end) more than `grace_ms` ago. A visit with no
/// planned time is never missed.
pub fn is_missed(visit: &Visit, now_ms: i64, grace_ms: i64) -> bool {
    if visit.status != VisitStatus::Planned {
        return false;
    }
    visit
        .planned_end
        .or(visit.planned_start)
        .is_some_and(|end| end.at_ms.saturating_add(grace_ms) < now_ms)
}

/// What reassigning an assignment to another technician does, by its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reassign {
    /// Not yet accepted: the assignment itself moves to the new technician
    /// (it leaves the old technician's device at their next sync).
    Move,
    /// The old technician turned it down: it moves and is dispatched again.
    MoveAndRedispatch,
    /// Accepted, or the technician is on the way: it is cancelled and a new
    /// assignment with the same times is dispatched to the new technician,
    /// so the old technician's record of what they accepted stays true.
    Replace,
}

/// How an assignment in `status` is reassigned; refused once work started.
pub fn reassignment(status: AssignmentStatus) -> Result<Reassign> {
    use AssignmentStatus as A;
    match status {
        A::Scheduled | A::Dispatched => Ok(Reassign::Move),
        A::Rejected => Ok(Reassign::MoveAndRedispatch),
        A::Accepted | A::Traveling | A::OnSite => Ok(Reassign::Replace),
        other => Err(Error::Conflict(format!(
            "an assignment that is {} cannot be reassigned: work has started or ended",
            fieldsync_core::model::Status::as_str(other)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use fieldsync_core::model::{DeviceTime, RecordMeta};
    use fieldsync_core::{OrgId, TeamId, TerritoryId};
    use rstest::rstest;

    use super::*;

    fn booking(person: UserId, start_h: i64, end_h: i64) -> Booking {
        Booking {
            id: RecordId::new(),
            person,
            start_ms: start_h * 3_600_000,
            end_ms: end_h * 3_600_000,
            live: true,
        }
    }

    #[test]
    fn overlapping_bookings_of_one_person_are_double_booked() {
        let (ana, ben) = (UserId::new(), UserId::new());
        let a = booking(ana, 9, 11);
        let b = booking(ana, 10, 12);
        let touching = booking(ana, 12, 13);
        let other_person = booking(ben, 9, 11);
        let mut cancelled = booking(ana, 12, 14);
        cancelled.live = false;
        let found = double_booked(&[
            a.clone(),
            b.clone(),
            touching.clone(),
            other_person.clone(),
            cancelled,
        ]);
        assert_eq!(found, [a.id, b.id].into_iter().collect());
    }

    #[test]
    fn a_long_booking_overlaps_every_one_inside_it() {
        let ana = UserId::new();
        let day = booking(ana, 8, 18);
        let (x, y) = (booking(ana, 9, 10), booking(ana, 14, 15));
        let found = double_booked(&[day.clone(), x.clone(), y.clone()]);
        assert_eq!(found, [day.id, x.id, y.id].into_iter().collect());
    }

    #[rstest]
    #[case(Some(2), Some(30), Ok(14))]
    #[case(None, Some(30), Ok(30))]
    #[case(Some(0), None, Err(()))]
    #[case(Some(13), None, Err(()))]
    #[case(None, None, Err(()))]
    #[case(None, Some(0), Err(()))]
    fn a_route_repeats_by_weeks_or_the_accounts_frequency(
        #[case] weeks: Option<u32>,
        #[case] freq: Option<u32>,
        #[case] expected: std::result::Result<u32, ()>,
    ) {
        assert_eq!(route_every_days(weeks, freq).map_err(|_| ()), expected);
    }

    #[test]
    fn route_starts_step_by_days_and_are_bounded() {
        assert_eq!(
            route_starts(1_000, 14, 3).expect("starts"),
            vec![1_000, 1_000 + 14 * DAY_MS, 1_000 + 28 * DAY_MS]
        );
        assert!(route_starts(0, 7, 0).is_err());
        assert!(route_starts(0, 7, MAX_ROUTE_VISITS + 1).is_err());
        assert!(route_starts(i64::MAX - 10, 7, 2).is_err(), "no overflow");
    }

    #[test]
    fn slots_must_end_after_they_start_and_last_at_most_a_day() {
        assert!(check_slot(0, 1).is_ok());
        assert!(check_slot(5, 5).is_err());
        assert!(check_slot(0, MAX_BOOKING_MS + 1).is_err());
    }

    fn visit(status: VisitStatus, start: Option<i64>, end: Option<i64>) -> Visit {
        let meta = RecordMeta {
            id: RecordId::new(),
            org: OrgId::new(),
            owner: UserId::new(),
            team: TeamId::new(),
            territory: TerritoryId::new(),
        };
        let mut v = Visit::planned(
            meta,
            RecordId::new(),
            DeviceTime::utc(0),
            DeviceTime::utc(0),
        );
        v.status = status;
        v.planned_start = start.map(DeviceTime::utc);
        v.planned_end = end.map(DeviceTime::utc);
        v
    }

    #[rstest]
    #[case::past_end_and_grace(VisitStatus::Planned, Some(0), Some(100), 1_000, 500, true)]
    #[case::inside_grace(VisitStatus::Planned, Some(0), Some(100), 550, 500, false)]
    #[case::no_end_uses_start(VisitStatus::Planned, Some(0), None, 1_000, 500, true)]
    #[case::no_time_never(VisitStatus::Planned, None, None, i64::MAX, 0, false)]
    #[case::checked_in(VisitStatus::InProgress, Some(0), Some(100), 10_000, 500, false)]
    #[case::cancelled(VisitStatus::Cancelled, Some(0), Some(100), 10_000, 500, false)]
    fn a_visit_is_missed_only_when_still_planned_past_end_and_grace(
        #[case] status: VisitStatus,
        #[case] start: Option<i64>,
        #[case] end: Option<i64>,
        #[case] now: i64,
        #[case] grace: i64,
        #[case] missed: bool,
    ) {
        assert_eq!(is_missed(&visit(status, start, end), now, grace), missed);
    }

    #[rstest]
    #[case(AssignmentStatus::Scheduled, Some(Reassign::Move))]
    #[case(AssignmentStatus::Dispatched, Some(Reassign::Move))]
    #[case(AssignmentStatus::Rejected, Some(Reassign::MoveAndRedispatch))]
    #[case(AssignmentStatus::Accepted, Some(Reassign::Replace))]
    #[case(AssignmentStatus::OnSite, Some(Reassign::Replace))]
    #[case(AssignmentStatus::InProgress, None)]
    #[case(AssignmentStatus::Completed, None)]
    #[case(AssignmentStatus::Cancelled, None)]
    fn reassignment_depends_on_how_far_the_work_went(
        #[case] status: AssignmentStatus,
        #[case] expected: Option<Reassign>,
    ) {
        assert_eq!(reassignment(status).ok(), expected);
    }

    #[test]
    fn reasons_are_required_and_bounded() {
        assert!(reason("reopening a visit", Some("  ")).is_err());
        assert_eq!(
            reason("reopening", Some(" forgot the photo ")).expect("reason"),
            "forgot the photo"
        );
        assert!(reason("x", Some(&"a".repeat(MAX_TEXT_BYTES + 1))).is_err());
        assert!(may_plan(Role::Rep, Planning::Visits).is_err());
        assert!(may_plan(Role::Manager, Planning::Dispatch).is_ok());
        assert!(check_person(Role::Rep, Role::Technician, "Ana").is_err());
    }
}
