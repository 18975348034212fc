//! Planning and dispatch: the back office plans visits for its reps (one, or
//! a recurring route), creates jobs and assigns, reassigns and cancels the
//! technicians' assignments, reopens completed visits, and reads the team's
//! plan for a day or a week. The server itself marks planned visits nobody
//! started as missed ([`mark_missed`], run periodically by every node).
//!
//! Everything is written as ordinary Automerge changes through the push path
//! ([`super::sync::push`]): a manager's plan on the manager's behalf
//! ([`Caller::on_behalf`]), the missed mark as the server itself
//! ([`Caller::server`]). So the push's checks apply (a manager plans only for
//! members of their team, in their team; a reference names an account the
//! manager can read), the audit trail names who did it, and the rep's or
//! technician's device receives it with its next sync, live when connected.
//! The rules of a good plan are `domain::plan`'s.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use automerge::ChangeHash;
use fieldsync_core::model::{
    Account, Assignment, AssignmentStatus, DeviceTime, JobStatus, Priority, RecordDoc, RecordKind,
    RecordMeta, Role, ServiceJob, Status, TransitionRequest, Visit, VisitStatus,
};
use fieldsync_core::protocol::{PushOutcome, PushRequest, RecordChanges};
use fieldsync_core::{RecordId, UserId};
use serde::Serialize;
use serde_bytes::ByteBuf;
use uuid::Uuid;

use super::Context;
use crate::db::plan::{self as db_plan, PersonRow};
use crate::db::records;
use crate::domain::plan::{self, Booking, Planning, Reassign};
use crate::domain::{Caller, Error, Result};

/// Most bookings one plan view reads (a team's fortnight).
const MAX_VIEW_BOOKINGS: usize = 5_000;
/// Most accounts the plan's forms offer.
pub const MAX_ACCOUNT_CHOICES: usize = 2_000;
/// Most planned visits one pass of [`mark_missed`] looks at.
const MISSED_BATCH: usize = 500;

/// A visit a manager plans for a rep.
#[derive(Debug, Clone)]
pub struct NewVisit {
    /// The rep.
    pub rep: UserId,
    /// The account to visit.
    pub account: RecordId,
    /// Planned start (ms since the epoch).
    pub start_ms: i64,
    /// Planned end.
    pub end_ms: i64,
    /// Visit type (`sales` when not given).
    pub visit_type: Option<String>,
    /// The manager's instructions.
    pub instructions: Option<String>,
}

/// A recurring route: the same visit every few weeks.
#[derive(Debug, Clone)]
pub struct NewRoute {
    /// The first visit.
    pub first: NewVisit,
    /// Every how many weeks; `None`: the account's visit frequency.
    pub every_weeks: Option<u32>,
    /// How many visits (1 to [`plan::MAX_ROUTE_VISITS`]).
    pub count: u32,
}

/// An assignment of a technician to a job.
#[derive(Debug, Clone)]
pub struct NewAssignment {
    /// The technician.
    pub technician: UserId,
    /// Scheduled start (ms since the epoch).
    pub start_ms: i64,
    /// Scheduled end.
    pub end_ms: i64,
    /// The arrival window promised to the customer, when one was.
    pub promised: Option<(i64, i64)>,
}

/// A job the back office creates, assigned at once or later.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// The customer.
    pub account: RecordId,
    /// Job type, e.g. `repair`.
    pub job_type: String,
    /// What the customer reported.
    pub description: Option<String>,
    /// Priority (normal when not given).
    pub priority: Option<Priority>,
    /// SLA due (ms since the epoch).
    pub sla_due_ms: Option<i64>,
    /// The technician and times, when assigned at once.
    pub assign: Option<NewAssignment>,
}

/// What creating a job made.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CreatedJob {
    /// The job.
    pub job_id: String,
    /// Its assignment, when it was assigned at once.
    pub assignment_id: Option<String>,
}

/// One visit or assignment on the plan.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PlanItem {
    /// The visit or assignment.
    pub id: String,
    /// `visit` or `assignment`.
    pub kind: String,
    /// Its status.
    pub status: String,
    /// The rep or technician.
    pub person_id: String,
    /// Start (ms since the epoch).
    pub start_ms: i64,
    /// End.
    pub end_ms: i64,
    /// The account's id.
    pub account_id: Option<String>,
    /// The account's name, when the caller can read it.
    pub account_name: Option<String>,
    /// The assignment's job.
    pub job_id: Option<String>,
    /// Whether it overlaps another live booking of the same person.
    pub double_booked: bool,
}

/// A rep or technician and their bookings of the period.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Lane {
    /// The person.
    pub person_id: String,
    /// Their name.
    pub name: String,
    /// `rep` or `technician`.
    pub role: String,
    /// Their visits and assignments, earliest first.
    pub items: Vec<PlanItem>,
}

/// The team's plan for a period.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PlanView {
    /// Start of the period (ms since the epoch, midnight UTC).
    pub from_ms: i64,
    /// Its end (exclusive).
    pub to_ms: i64,
    /// One lane per rep and technician the caller plans for, by name.
    pub lanes: Vec<Lane>,
    /// How many bookings overlap another.
    pub double_booked: usize,
}

/// An account the plan's forms offer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AccountChoice {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Target days between visits.
    pub visit_frequency_days: Option<u32>,
}

/// Plans one visit for a rep; answers its id.
pub async fn plan_visit(ctx: &Context, caller: &Caller, visit: NewVisit) -> Result<RecordId> {
    plan::may_plan(caller.role(), Planning::Visits)?;
    let ids = plan_visits(ctx, caller, &visit, &[visit.start_ms]).await?;
    ids.into_iter()
        .next()
        .ok_or_else(|| Error::internal("planning a visit made nothing"))
}

/// Plans a recurring route for a rep (every N weeks, or at the account's
/// visit frequency); answers the visits' ids in date order. All are stored
/// in one push.
pub async fn plan_route(ctx: &Context, caller: &Caller, route: NewRoute) -> Result<Vec<RecordId>> {
    plan::may_plan(caller.role(), Planning::Visits)?;
    let writer = caller.on_behalf();
    let account: Account = read_record(ctx, &writer, route.first.account, RecordKind::Account)
        .await?
        .0
        .read()
        .map_err(stored)?;
    let every = plan::route_every_days(route.every_weeks, account.visit_frequency_days)?;
    let starts = plan::route_starts(route.first.start_ms, every, route.count)?;
    plan_visits(ctx, caller, &route.first, &starts).await
}

/// Visits like `visit` at each of `starts` (same length), in one push.
async fn plan_visits(
    ctx: &Context,
    caller: &Caller,
    visit: &NewVisit,
    starts: &[i64],
) -> Result<Vec<RecordId>> {
    plan::check_slot(visit.start_ms, visit.end_ms)?;
    let visit_type = plan::optional_text("visit type", visit.visit_type.as_deref())?
        .unwrap_or_else(|| "sales".to_owned());
    let instructions = plan::optional_text("instructions", visit.instructions.as_deref())?;
    let writer = caller.on_behalf();
    let rep = person(ctx, caller, visit.rep, Role::Rep).await?;
    let (account_doc, _) = read_record(ctx, &writer, visit.account, RecordKind::Account).await?;
    let account: Account = account_doc.read().map_err(stored)?;
    let length = visit.end_ms - visit.start_ms;
    let now = DeviceTime::now_utc();
    let mut docs = Vec::with_capacity(starts.len());
    for &start in starts {
        let meta = meta_for(caller, &rep, &account)?;
        let mut v = Visit::planned(
            meta,
            visit.account,
            DeviceTime::utc(start),
            DeviceTime::utc(start.saturating_add(length)),
        );
        v.visit_type = visit_type.clone();
        v.instructions = instructions.clone();
        docs.push(
            RecordDoc::create_stateful(&v, writer.actor_id.clone(), &writer.actor, now)
                .map_err(refused)?,
        );
    }
    store_new(ctx, &writer, docs).await
}

/// Creates a job at an account, assigned to a technician at once when
/// `job.assign` says so (one push: the job and its assignment).
pub async fn create_job(ctx: &Context, caller: &Caller, job: NewJob) -> Result<CreatedJob> {
    plan::may_plan(caller.role(), Planning::Dispatch)?;
    let job_type = plan::optional_text("job type", Some(&job.job_type))?
        .ok_or_else(|| Error::BadRequest("a job needs a type, e.g. repair".into()))?;
    let description = plan::optional_text("description", job.description.as_deref())?;
    let writer = caller.on_behalf();
    let (account_doc, _) = read_record(ctx, &writer, job.account, RecordKind::Account).await?;
    let account: Account = account_doc.read().map_err(stored)?;
    let technician = match &job.assign {
        Some(a) => {
            plan::check_slot(a.start_ms, a.end_ms)?;
            Some(person(ctx, caller, a.technician, Role::Technician).await?)
        }
        None => None,
    };
    // The job is the dispatcher's, in the technician's team (or the
    // dispatcher's own when nobody is assigned yet).
    let team = technician
        .as_ref()
        .and_then(|t| t.team)
        .or(caller.team)
        .ok_or_else(|| {
            Error::BadRequest("assign a technician: you have no team to keep the job in".into())
        })?;
    let meta = RecordMeta {
        id: RecordId::new(),
        org: caller.org,
        owner: caller.user(),
        team,
        territory: account.meta.territory,
    };
    let mut record = ServiceJob::new(meta, job.account, job_type);
    record.description = description.unwrap_or_default();
    record.priority = job.priority.unwrap_or_default();
    record.sla_due = job.sla_due_ms.map(DeviceTime::utc);
    let now = DeviceTime::now_utc();
    let job_doc = RecordDoc::create_stateful(&record, writer.actor_id.clone(), &writer.actor, now)
        .map_err(refused)?;
    let job_id = job_doc.id();
    let mut docs = vec![job_doc];
    if let (Some(tech), Some(a)) = (&technician, &job.assign) {
        docs.push(new_assignment(caller, &writer, &record, &account, tech, a)?);
    }
    let ids = store_new(ctx, &writer, docs).await?;
    Ok(CreatedJob {
        job_id: job_id.to_string(),
        assignment_id: ids.get(1).map(ToString::to_string),
    })
}

/// Assigns a technician to an existing job; answers the assignment's id.
pub async fn assign(
    ctx: &Context,
    caller: &Caller,
    job_id: RecordId,
    assignment: NewAssignment,
) -> Result<RecordId> {
    plan::may_plan(caller.role(), Planning::Dispatch)?;
    plan::check_slot(assignment.start_ms, assignment.end_ms)?;
    let writer = caller.on_behalf();
    let (job_doc, _) = read_record(ctx, &writer, job_id, RecordKind::ServiceJob).await?;
    let job: ServiceJob = job_doc.read_stateful().map_err(stored)?;
    if matches!(job.status, JobStatus::Closed | JobStatus::Cancelled) {
        return Err(Error::Conflict(format!(
            "the job is {}: it takes no new assignment",
            job.status.as_str()
        )));
    }
    let (account_doc, _) = read_record(ctx, &writer, job.account_id, RecordKind::Account).await?;
    let account: Account = account_doc.read().map_err(stored)?;
    let tech = person(ctx, caller, assignment.technician, Role::Technician).await?;
    let doc = new_assignment(caller, &writer, &job, &account, &tech, &assignment)?;
    let ids = store_new(ctx, &writer, vec![doc]).await?;
    ids.into_iter()
        .next()
        .ok_or_else(|| Error::internal("assigning made nothing"))
}

/// Gives an assignment to another technician: moved while nobody accepted
/// it, cancelled and replaced once accepted (see [`plan::reassignment`]);
/// refused once work started. Answers the assignment the new technician has.
pub async fn reassign(
    ctx: &Context,
    caller: &Caller,
    assignment_id: RecordId,
    technician: UserId,
) -> Result<RecordId> {
    plan::may_plan(caller.role(), Planning::Dispatch)?;
    let writer = caller.on_behalf();
    let (mut doc, kind) = read_record(ctx, &writer, assignment_id, RecordKind::Assignment).await?;
    let current: Assignment = doc.read_stateful().map_err(stored)?;
    let tech = person(ctx, caller, technician, Role::Technician).await?;
    if tech.id == current.meta.owner {
        return Err(Error::BadRequest(format!(
            "the assignment is already {}'s",
            tech.name
        )));
    }
    let how = plan::reassignment(current.status)?;
    let now = DeviceTime::now_utc();
    doc.set_actor(writer.actor_id.clone());
    let before = doc.heads();
    match how {
        Reassign::Move | Reassign::MoveAndRedispatch => {
            let team = tech.team.ok_or_else(|| no_team(&tech))?;
            doc.update_by::<Assignment>(Some(writer.role()), now, |a| {
                a.meta.owner = tech.id;
                a.meta.team = team;
                if let Some(t) = tech.territory {
                    a.meta.territory = t;
                }
            })
            .map_err(refused)?;
            if how == Reassign::MoveAndRedispatch {
                doc.transition::<Assignment>(
                    &writer.actor,
                    &TransitionRequest::new(AssignmentStatus::Dispatched, now),
                    |_| {},
                )
                .map_err(refused)?;
            }
            super::sync::push_since(ctx, &writer, assignment_id, kind, &mut doc, &before).await?;
            Ok(assignment_id)
        }
        Reassign::Replace => {
            let (job_doc, _) =
                read_record(ctx, &writer, current.job_id, RecordKind::ServiceJob).await?;
            let job: ServiceJob = job_doc.read_stateful().map_err(stored)?;
            let (account_doc, _) =
                read_record(ctx, &writer, job.account_id, RecordKind::Account).await?;
            let account: Account = account_doc.read().map_err(stored)?;
            doc.transition::<Assignment>(
                &writer.actor,
                &TransitionRequest::new(AssignmentStatus::Cancelled, now)
                    .with_reason(format!("reassigned to {}", tech.name)),
                |_| {},
            )
            .map_err(refused)?;
            let mut replacement = new_assignment(
                caller,
                &writer,
                &job,
                &account,
                &tech,
                &NewAssignment {
                    technician: tech.id,
                    start_ms: current.scheduled_start.at_ms,
                    end_ms: current.scheduled_end.at_ms,
                    promised: current
                        .arrival_window_start
                        .zip(current.arrival_window_end)
                        .map(|(a, b)| (a.at_ms, b.at_ms)),
                },
            )?;
            let new_id = replacement.id();
            let changes = changes_since(&mut doc, &before);
            store(
                ctx,
                &writer,
                vec![
                    RecordChanges {
                        id: assignment_id,
                        kind,
                        changes,
                    },
                    whole(&mut replacement),
                ],
            )
            .await?;
            Ok(new_id)
        }
    }
}

/// Cancels a visit (planned or in progress) or an assignment (before work
/// starts), with a reason; `kind` is the one expected (anything else is not
/// found).
pub async fn cancel(
    ctx: &Context,
    caller: &Caller,
    id: RecordId,
    kind: RecordKind,
    why: Option<&str>,
) -> Result<()> {
    plan::may_plan(caller.role(), Planning::Dispatch)?;
    let why = plan::reason("cancelling", why)?;
    let writer = caller.on_behalf();
    let (mut doc, kind) = read_record(ctx, &writer, id, kind).await?;
    doc.set_actor(writer.actor_id.clone());
    let before = doc.heads();
    let now = DeviceTime::now_utc();
    match kind {
        RecordKind::Visit => doc
            .transition::<Visit>(
                &writer.actor,
                &TransitionRequest::new(VisitStatus::Cancelled, now).with_reason(why),
                |_| {},
            )
            .map(drop),
        RecordKind::Assignment => doc
            .transition::<Assignment>(
                &writer.actor,
                &TransitionRequest::new(AssignmentStatus::Cancelled, now).with_reason(why),
                |_| {},
            )
            .map(drop),
        _ => return Err(Error::NotFound),
    }
    .map_err(refused)?;
    super::sync::push_since(ctx, &writer, id, kind, &mut doc, &before).await
}

/// Reopens a completed visit (back to in progress) with a reason, so the rep
/// can correct it and check out again.
pub async fn reopen_visit(
    ctx: &Context,
    caller: &Caller,
    id: RecordId,
    why: Option<&str>,
) -> Result<()> {
    plan::may_plan(caller.role(), Planning::Reopen)?;
    let why = plan::reason("reopening a visit", why)?;
    let writer = caller.on_behalf();
    let (mut doc, kind) = read_record(ctx, &writer, id, RecordKind::Visit).await?;
    doc.set_actor(writer.actor_id.clone());
    let before = doc.heads();
    doc.transition::<Visit>(
        &writer.actor,
        &TransitionRequest::new(VisitStatus::InProgress, DeviceTime::now_utc()).with_reason(why),
        |_| {},
    )
    .map_err(refused)?;
    super::sync::push_since(ctx, &writer, id, kind, &mut doc, &before).await
}

/// The plan of the `days` days from `from_ms` (rounded down to midnight UTC),
/// one lane per rep and technician the caller plans for, with double
/// bookings marked.
pub async fn view(ctx: &Context, caller: &Caller, from_ms: i64, days: u32) -> Result<PlanView> {
    let accounts = accounts(ctx, caller).await?;
    view_with(ctx, caller, from_ms, days, &accounts).await
}

/// The plan (as [`view`]) and the accounts its forms offer, read once for
/// both: what the Plan page shows.
pub async fn page(
    ctx: &Context,
    caller: &Caller,
    from_ms: i64,
    days: u32,
) -> Result<(PlanView, Vec<AccountChoice>)> {
    let accounts = accounts(ctx, caller).await?;
    let view = view_with(ctx, caller, from_ms, days, &accounts).await?;
    Ok((view, accounts))
}

async fn view_with(
    ctx: &Context,
    caller: &Caller,
    from_ms: i64,
    days: u32,
    choices: &[AccountChoice],
) -> Result<PlanView> {
    plan::may_plan(caller.role(), Planning::Viewing)?;
    let days = days.clamp(1, plan::MAX_VIEW_DAYS);
    let from_ms = from_ms.div_euclid(plan::DAY_MS) * plan::DAY_MS;
    let to_ms = from_ms.saturating_add(i64::from(days) * plan::DAY_MS);
    let people = planned_people(ctx, caller).await?;
    // A booking that starts up to a day before the period may still run into it.
    let rows = db_plan::bookings(
        &ctx.db,
        caller,
        from_ms - plan::DAY_MS,
        to_ms,
        MAX_VIEW_BOOKINGS,
    )
    .await?;
    let accounts: BTreeMap<RecordId, String> = choices
        .iter()
        .filter_map(|a| Some((a.id.parse().ok()?, a.name.clone())))
        .collect();
    let mut items: Vec<(UserId, PlanItem, bool)> = Vec::new();
    let mut job_accounts: BTreeMap<RecordId, Option<RecordId>> = BTreeMap::new();
    for row in rows {
        let doc = RecordDoc::load(&row.doc).map_err(stored)?;
        let item = match row.kind {
            RecordKind::Visit => {
                let v: Visit = doc.read_stateful().map_err(stored)?;
                let (Some(start), Some(end)) = (v.planned_start, v.planned_end.or(v.planned_start))
                else {
                    continue;
                };
                (
                    v.meta.owner,
                    PlanItem {
                        id: row.id.to_string(),
                        kind: "visit".into(),
                        status: v.status.as_str().into(),
                        person_id: v.meta.owner.to_string(),
                        start_ms: start.at_ms,
                        end_ms: end.at_ms,
                        account_id: Some(v.account_id.to_string()),
                        account_name: accounts.get(&v.account_id).cloned(),
                        job_id: None,
                        double_booked: false,
                    },
                    plan::visit_is_live(v.status),
                )
            }
            RecordKind::Assignment => {
                let a: Assignment = doc.read_stateful().map_err(stored)?;
                // The job's account, read once per job of the period.
                let account = match job_accounts.get(&a.job_id) {
                    Some(known) => *known,
                    None => {
                        let account = match records::readable_doc(&ctx.db, caller, a.job_id).await?
                        {
                            Some((RecordKind::ServiceJob, bytes)) => RecordDoc::load(&bytes)
                                .and_then(|d| d.read_stateful::<ServiceJob>())
                                .ok()
                                .map(|j| j.account_id),
                            _ => None,
                        };
                        job_accounts.insert(a.job_id, account);
                        account
                    }
                };
                (
                    a.meta.owner,
                    PlanItem {
                        id: row.id.to_string(),
                        kind: "assignment".into(),
                        status: a.status.as_str().into(),
                        person_id: a.meta.owner.to_string(),
                        start_ms: a.scheduled_start.at_ms,
                        end_ms: a.scheduled_end.at_ms,
                        account_id: account.map(|id| id.to_string()),
                        account_name: account.and_then(|id| accounts.get(&id).cloned()),
                        job_id: Some(a.job_id.to_string()),
                        double_booked: false,
                    },
                    plan::assignment_is_live(a.status),
                )
            }
            _ => continue,
        };
        if item.1.end_ms > from_ms {
            items.push(item);
        }
    }
    let bookings: Vec<Booking> = items
        .iter()
        .filter_map(|(person, item, live)| {
            Some(Booking {
                id: item.id.parse().ok()?,
                person: *person,
                start_ms: item.start_ms,
                end_ms: item.end_ms,
                live: *live,
            })
        })
        .collect();
    let double = plan::double_booked(&bookings);
    let mut lanes: Vec<Lane> = people
        .iter()
        .map(|p| Lane {
            person_id: p.id.to_string(),
            name: p.name.clone(),
            role: p.role.to_string(),
            items: Vec::new(),
        })
        .collect();
    let lane_of: BTreeMap<UserId, usize> =
        people.iter().enumerate().map(|(i, p)| (p.id, i)).collect();
    for (person, mut item, _) in items {
        item.double_booked = item
            .id
            .parse::<RecordId>()
            .is_ok_and(|id| double.contains(&id));
        if let Some(&i) = lane_of.get(&person) {
            lanes[i].items.push(item);
        }
    }
    Ok(PlanView {
        from_ms,
        to_ms,
        lanes,
        double_booked: double.len(),
    })
}

/// The reps and technicians the caller plans for: a manager's team, or the
/// whole organisation for an administrator.
pub async fn planned_people(ctx: &Context, caller: &Caller) -> Result<Vec<PersonRow>> {
    plan::may_plan(caller.role(), Planning::Viewing)?;
    let team = match caller.role() {
        Role::Admin | Role::Server => None,
        _ => Some(caller.team.ok_or(Error::NotFound)?),
    };
    Ok(db_plan::people(&ctx.db, caller.org, team).await?)
}

/// The accounts the caller can plan at, by name.
pub async fn accounts(ctx: &Context, caller: &Caller) -> Result<Vec<AccountChoice>> {
    plan::may_plan(caller.role(), Planning::Viewing)?;
    let rows = db_plan::readable_of_kind(&ctx.db, caller, RecordKind::Account, MAX_ACCOUNT_CHOICES)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let a: Account = RecordDoc::load(&row.doc)
            .and_then(|d| d.read())
            .map_err(stored)?;
        out.push(AccountChoice {
            id: row.id.to_string(),
            name: a.name,
            visit_frequency_days: a.visit_frequency_days,
        });
    }
    out.sort_by_key(|a| a.name.to_lowercase());
    Ok(out)
}

/// Marks as missed, as the server, every planned visit whose planned end is
/// more than `grace` before `now_ms`; answers how many it marked. A visit
/// that cannot be marked (a device's check-in arrived meanwhile) is left as
/// it is.
pub async fn mark_missed(ctx: &Context, now_ms: i64, grace: Duration) -> Result<usize> {
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let candidates =
        db_plan::planned_visits_before(&ctx.db, now_ms.saturating_sub(grace_ms), MISSED_BATCH)
            .await?;
    let mut marked = 0;
    for (org, id) in candidates {
        let server = Caller::server(org);
        let Some((kind, bytes)) = records::readable_doc(&ctx.db, &server, id).await? else {
            continue;
        };
        let mut doc = RecordDoc::load(&bytes).map_err(stored)?;
        let visit: Visit = doc.read_stateful().map_err(stored)?;
        if !plan::is_missed(&visit, now_ms, grace_ms) {
            continue;
        }
        doc.set_actor(server.actor_id.clone());
        let before = doc.heads();
        let minutes = grace_ms / 60_000;
        let made = doc.transition::<Visit>(
            &server.actor,
            &TransitionRequest::new(VisitStatus::Missed, DeviceTime::utc(now_ms)).with_reason(
                format!("not started within {minutes} minutes of its planned end"),
            ),
            |_| {},
        );
        if let Err(e) = made {
            tracing::warn!(visit = %id, error = %e, "could not mark a visit missed");
            continue;
        }
        match super::sync::push_since(ctx, &server, id, kind, &mut doc, &before).await {
            Ok(()) => marked += 1,
            Err(e) => tracing::warn!(visit = %id, error = %e, "could not mark a visit missed"),
        }
    }
    if marked > 0 {
        tracing::info!(visits = marked, "marked planned visits as missed");
    }
    Ok(marked)
}

/// Runs [`mark_missed`] every `every` until the task is aborted.
pub async fn mark_missed_periodically(ctx: Arc<Context>, grace: Duration, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now_ms = DeviceTime::now_utc().at_ms;
        if let Err(e) = mark_missed(&ctx, now_ms, grace).await {
            tracing::warn!(error = %e, "the missed-visit pass failed; retrying at the next tick");
        }
    }
}

/// The rep or technician `id`, of the role wanted, whom the caller plans for;
/// anyone else answers not found, like a missing user.
async fn person(ctx: &Context, caller: &Caller, id: UserId, wanted: Role) -> Result<PersonRow> {
    let found = planned_people(ctx, caller)
        .await?
        .into_iter()
        .find(|p| p.id == id)
        .ok_or(Error::NotFound)?;
    plan::check_person(found.role, wanted, &found.name)?;
    Ok(found)
}

fn no_team(p: &PersonRow) -> Error {
    Error::BadRequest(format!("{} has no team: give them one first", p.name))
}

/// A new record of the person's: their team, their territory (else the
/// account's).
fn meta_for(caller: &Caller, p: &PersonRow, account: &Account) -> Result<RecordMeta> {
    Ok(RecordMeta {
        id: RecordId::new(),
        org: caller.org,
        owner: p.id,
        team: p.team.ok_or_else(|| no_team(p))?,
        territory: p.territory.unwrap_or(account.meta.territory),
    })
}

/// A dispatched assignment of `tech` to `job`.
fn new_assignment(
    caller: &Caller,
    writer: &Caller,
    job: &ServiceJob,
    account: &Account,
    tech: &PersonRow,
    a: &NewAssignment,
) -> Result<RecordDoc> {
    let mut record = Assignment::new(
        meta_for(caller, tech, account)?,
        job.meta.id,
        DeviceTime::utc(a.start_ms),
        DeviceTime::utc(a.end_ms),
    );
    record.status = AssignmentStatus::Dispatched;
    record.requires_checklist = job.requires_checklist;
    record.requires_signature = job.requires_signature;
    if let Some((from, to)) = a.promised {
        plan::check_slot(from, to)?;
        record.arrival_window_start = Some(DeviceTime::utc(from));
        record.arrival_window_end = Some(DeviceTime::utc(to));
    }
    RecordDoc::create_stateful(
        &record,
        writer.actor_id.clone(),
        &writer.actor,
        DeviceTime::now_utc(),
    )
    .map_err(refused)
}

/// The record `id` of `kind` as the writer can read it; anything else is not found.
async fn read_record(
    ctx: &Context,
    writer: &Caller,
    id: RecordId,
    kind: RecordKind,
) -> Result<(RecordDoc, RecordKind)> {
    match records::readable_doc(&ctx.db, writer, id).await? {
        Some((k, bytes)) if k == kind => Ok((RecordDoc::load(&bytes).map_err(stored)?, k)),
        _ => Err(Error::NotFound),
    }
}

fn changes_since(doc: &mut RecordDoc, before: &[ChangeHash]) -> Vec<ByteBuf> {
    doc.automerge()
        .get_changes(before)
        .iter()
        .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
        .collect()
}

fn whole(doc: &mut RecordDoc) -> RecordChanges {
    RecordChanges {
        id: doc.id(),
        kind: doc.kind(),
        changes: changes_since(doc, &[]),
    }
}

/// Stores new records in one push; answers their ids.
async fn store_new(
    ctx: &Context,
    writer: &Caller,
    mut docs: Vec<RecordDoc>,
) -> Result<Vec<RecordId>> {
    let ids = docs.iter().map(RecordDoc::id).collect();
    store(ctx, writer, docs.iter_mut().map(whole).collect()).await?;
    Ok(ids)
}

/// Pushes `records` as `writer`; the first refusal is the answer (the push
/// checks each record the same way, so one refused usually means all).
async fn store(ctx: &Context, writer: &Caller, records: Vec<RecordChanges>) -> Result<()> {
    let resp = super::sync::push(
        ctx,
        writer,
        &PushRequest {
            batch: Uuid::now_v7(),
            records,
            health: None,
            epochs: Vec::new(),
        },
    )
    .await?;
    for r in resp.results {
        if let PushOutcome::Rejected(r) = r.outcome {
            return Err(Error::Conflict(r.message));
        }
    }
    Ok(())
}

/// A model refusal of what the caller asked.
fn refused(e: fieldsync_core::model::ModelError) -> Error {
    Error::Conflict(e.to_string())
}

/// A stored document that does not read: the server's fault, not the caller's.
fn stored(e: fieldsync_core::model::ModelError) -> Error {
    Error::internal(format!("a stored record does not load: {e}"))
}
