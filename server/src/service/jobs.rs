//! Service jobs in the back office: the server's roll-up of a job from its
//! assignments, the sweep that repairs a missed one, the job list and page,
//! and the manager's close and cancel.
//!
//! **Roll-up, after the commit.** When a push (from a device, or anything the
//! server writes on someone's behalf) stores an assignment that is new or
//! whose status moved, [`super::sync::push`] calls [`after_push`] once the
//! push has committed: the server reads the job and every assignment of it,
//! derives the job's status with the shared model (`job::apply_rollup_with`,
//! dated by the field's own arrival and end-of-work times) and stores the
//! result as itself (`domain::jobs::server_caller`, role `server`) through
//! the same push path (`service::write`, without the reactions of
//! `service::sync::push`: a roll-up writes a job, never an assignment), so
//! every device gets it with its next pull, live
//! devices are told at once, and the audit trail names the server.
//!
//! It runs after the commit rather than inside the assignment's transaction:
//! the job is another record, which the push transaction neither locks nor
//! merges, and a failure to roll up must not refuse the technician's work.
//! What a crash (or a failure) between the two leaves behind, the **sweep**
//! repairs: every node runs [`sweep_periodically`] (`[jobs]
//! sweep_interval_secs`, docs/operations.md), which re-derives every job not
//! yet done whose status disagrees with its assignments.
//!
//! **Idempotent, no loops, several nodes.** A roll-up writes only when the job
//! shows something else than its assignments imply; it writes a job, never an
//! assignment, so it triggers no roll-up of its own. Two nodes rolling up the
//! same job at once each write under a fresh Automerge actor the same status
//! with the same times (read from the assignments, not the clock): the
//! merged job shows that status, and a stale roll-up that lost the race
//! (an `in_progress` next to a `completed`) loses to the state machine's
//! precedence, while the sweep re-derives anything still off.
//!
//! Close and cancel are decided by `domain::jobs` and written on the
//! manager's behalf (`Caller::on_behalf`) through the push path, like a
//! report's review (`service::write` too: they write the job alone).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use fieldsync_core::model::job::{self, RollupTimes};
use fieldsync_core::model::{
    Account, Assignment, AssignmentStatus, ChecklistResponse, ChecklistTemplate, DeviceTime,
    JobStatus, RecordDoc, RecordKind, ServiceJob, Status,
};
use fieldsync_core::{OrgId, RecordId, UserId};

use super::Context;
use crate::db::{self, jobs as db_jobs, records, reports as db_reports};
use crate::domain::jobs::{
    self as rules, AssignmentView, JobDetail, JobFilter, JobPage, JobRow, Managing, TechnicianOnJob,
};
use crate::domain::{Caller, Error, Result};

/// Jobs one round of the sweep reads at a time.
const SWEEP_PAGE: i64 = 500;

fn unreadable(id: RecordId, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("stored record {id} cannot be read: {e}"))
}

fn now_ms() -> i64 {
    DeviceTime::now_utc().at_ms
}

/// What the server does after a push committed, given the written records
/// that are new or whose status moved: each assignment's job is rolled up.
/// Never fails the push (it is stored): a failure is logged and left to the
/// sweep. Boxed, because a roll-up is itself a push.
pub fn after_push<'a>(
    ctx: &'a Context,
    org: OrgId,
    changed: &'a [(RecordId, RecordKind, Option<RecordId>)],
) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        let jobs: BTreeSet<RecordId> = changed
            .iter()
            .filter(|(_, kind, _)| *kind == RecordKind::Assignment)
            .filter_map(|(_, _, job)| *job)
            .collect();
        for job in jobs {
            if let Err(e) = roll_up(ctx, org, job).await {
                tracing::warn!(%job, error = %e, "could not roll up a job; the sweep will");
            }
        }
    })
}

/// Re-derives job `id`'s status from its assignments and stores what changed
/// as the server; answers the job's status when it wrote one, `None` when
/// there was nothing to write (or no such job).
pub async fn roll_up(ctx: &Context, org: OrgId, id: RecordId) -> Result<Option<JobStatus>> {
    // A concurrent write of the job between the read and the push is merged
    // by the push; one more round covers a refusal caused by such a race.
    match roll_up_once(ctx, org, id).await {
        Err(Error::Conflict(why)) => {
            tracing::debug!(job = %id, why, "roll-up refused; reading the job again");
            roll_up_once(ctx, org, id).await
        }
        other => other,
    }
}

fn roll_up_once<'a>(
    ctx: &'a Context,
    org: OrgId,
    id: RecordId,
) -> Pin<Box<dyn Future<Output = Result<Option<JobStatus>>> + Send + 'a>> {
    Box::pin(async move {
        let server = rules::server_caller(org);
        let Some((kind, bytes)) = records::readable_doc(&ctx.db, &server, id).await? else {
            return Ok(None);
        };
        if kind != RecordKind::ServiceJob {
            return Ok(None);
        }
        let mut doc = RecordDoc::load(&bytes).map_err(|e| unreadable(id, e))?;
        let assignments = assignments_of(ctx, &server, id).await?;
        let statuses: Vec<AssignmentStatus> = assignments.iter().map(|a| a.status).collect();
        let current = doc.status::<JobStatus>().map_err(|e| unreadable(id, e))?;
        if job::rollup(current, &statuses) != current
            && rules::rollup_target(current, &statuses).is_none()
        {
            // Not the server's move (work started again on a completed job:
            // a manager reopens it).
            return Ok(None);
        }
        doc.set_actor(server.actor_id.clone());
        let before = doc.heads();
        let written = job::apply_rollup_with(
            &mut doc,
            &server.actor,
            &statuses,
            RollupTimes::of(&assignments),
            DeviceTime::now_utc(),
        )
        .map_err(|e| Error::Conflict(e.to_string()))?;
        if written.is_none() {
            return Ok(None);
        }
        super::write::push_since(ctx, &server, id, kind, &mut doc, &before).await?;
        let status = doc.status::<JobStatus>().map_err(|e| unreadable(id, e))?;
        tracing::info!(job = %id, from = current.as_str(), to = status.as_str(), "job rolled up");
        Ok(Some(status))
    })
}

/// The assignments of job `id` that `caller` reads, not deleted, in creation order.
async fn assignments_of(ctx: &Context, caller: &Caller, id: RecordId) -> Result<Vec<Assignment>> {
    let docs = db_reports::children(&ctx.db, caller, RecordKind::Assignment, id).await?;
    let mut out = Vec::with_capacity(docs.len());
    for (aid, bytes) in docs {
        match RecordDoc::load(&bytes).and_then(|d| d.read_stateful::<Assignment>()) {
            Ok(a) => out.push(a),
            Err(e) => tracing::warn!(assignment = %aid, error = %e, "an assignment does not read"),
        }
    }
    Ok(out)
}

/// One pass of the sweep over every organisation: each job not yet done
/// whose status disagrees with its assignments is rolled up. Answers how
/// many jobs it wrote.
pub async fn sweep(ctx: &Context) -> Result<usize> {
    let mut after = RecordId::from_uuid(uuid::Uuid::nil());
    let mut repaired = 0;
    loop {
        let page = db_jobs::sweep_page(&ctx.db, after, SWEEP_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for j in &page {
            let Some(current) = JobStatus::parse(&j.status) else {
                continue;
            };
            let statuses: Vec<AssignmentStatus> = j
                .assignments
                .iter()
                .filter_map(|s| AssignmentStatus::parse(s))
                .collect();
            if rules::rollup_target(current, &statuses).is_none() {
                continue;
            }
            match roll_up(ctx, j.org, j.id).await {
                Ok(Some(_)) => repaired += 1,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(job = %j.id, error = %e, "the sweep could not roll up a job")
                }
            }
        }
        if (page.len() as i64) < SWEEP_PAGE {
            break;
        }
    }
    Ok(repaired)
}

/// Runs [`sweep`] every `interval` on this node (each node runs it; a job
/// two nodes repair at once converges like any concurrent roll-up).
pub async fn sweep_periodically(ctx: Arc<Context>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match sweep(&ctx).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "the roll-up sweep repaired jobs"),
            Err(e) => tracing::warn!(error = %e, "the roll-up sweep failed"),
        }
    }
}

async fn account_name(ctx: &Context, caller: &Caller, id: RecordId) -> Result<Option<String>> {
    Ok(match records::readable_doc(&ctx.db, caller, id).await? {
        Some((RecordKind::Account, bytes)) => RecordDoc::load(&bytes)
            .and_then(|d| d.read::<Account>())
            .ok()
            .map(|a| a.name),
        _ => None,
    })
}

/// One page of the jobs in the caller's scope (a manager's team, an
/// administrator's organisation) that pass `filter`.
pub async fn list(ctx: &Context, caller: &Caller, filter: &JobFilter) -> Result<JobPage> {
    rules::may_manage(caller.role(), Managing::Reading)?;
    let now = now_ms();
    let mut rows = db_jobs::list(&ctx.db, caller, filter, now).await?;
    let more = rows.len() > filter.per_page as usize;
    rows.truncate(filter.per_page as usize);
    let mut jobs = Vec::with_capacity(rows.len());
    for r in rows {
        let j: ServiceJob = match RecordDoc::load(&r.doc).and_then(|d| d.read_stateful()) {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(job = %r.id, error = %e, "a job does not read");
                continue;
            }
        };
        let technicians = db_jobs::technicians_of(&ctx.db, caller, r.id)
            .await?
            .into_iter()
            .map(|(id, name, status)| TechnicianOnJob {
                id: id.to_string(),
                name,
                assignment_status: status.unwrap_or_default(),
            })
            .collect();
        jobs.push(JobRow {
            id: r.id.to_string(),
            status: j.status.as_str().to_owned(),
            job_type: j.job_type.clone(),
            priority: format!("{:?}", j.priority).to_lowercase(),
            account_name: account_name(ctx, caller, j.account_id).await?,
            sla_due_ms: r.sla_due_ms,
            sla_breached: rules::sla_breached(j.status, r.sla_due_ms, r.completed_ms, now),
            completed_ms: r.completed_ms,
            technicians,
        });
    }
    Ok(JobPage {
        jobs,
        page: filter.page,
        per_page: filter.per_page,
        more,
    })
}

/// The technicians the caller may filter the list by: their team's (a
/// manager) or the organisation's (an administrator), by name.
pub async fn technicians(ctx: &Context, caller: &Caller) -> Result<Vec<(UserId, String)>> {
    rules::may_manage(caller.role(), Managing::Reading)?;
    let team = if caller.role() == fieldsync_core::model::Role::Admin {
        None
    } else {
        match caller.team {
            Some(t) => Some(t),
            None => return Ok(Vec::new()),
        }
    };
    Ok(db_jobs::technicians(&ctx.db, caller.org, team).await?)
}

/// Job `id` (as given) with everything its page shows; not found when it is
/// not a job in the caller's scope.
pub async fn detail(ctx: &Context, caller: &Caller, id: &str) -> Result<JobDetail> {
    rules::may_manage(caller.role(), Managing::Reading)?;
    let id = rules::parse_job_id(id)?;
    let Some((RecordKind::ServiceJob, bytes)) = records::readable_doc(&ctx.db, caller, id).await?
    else {
        return Err(Error::NotFound);
    };
    let doc = RecordDoc::load(&bytes).map_err(|e| unreadable(id, e))?;
    let j: ServiceJob = doc.read_stateful().map_err(|e| unreadable(id, e))?;
    let history = doc.history().unwrap_or_default();
    let mut linked = vec![id];
    let mut assignments = Vec::new();
    let mut people: BTreeSet<UserId> = history.iter().map(|e| e.by).collect();
    let docs = db_reports::children(&ctx.db, caller, RecordKind::Assignment, id).await?;
    for (aid, b) in docs {
        let Ok(a) = RecordDoc::load(&b).and_then(|d| d.read_stateful::<Assignment>()) else {
            continue;
        };
        linked.push(aid);
        people.insert(a.meta.owner);
        let signature = match &a.signature {
            Some(_) => super::signatures::signature_verdict(&ctx.db, caller, aid).await?,
            None => None,
        };
        let checklist = match a.checklist_response_id {
            Some(rid) => match records::readable_doc(&ctx.db, caller, rid).await? {
                Some((RecordKind::ChecklistResponse, rb)) => {
                    match RecordDoc::load(&rb).and_then(|d| d.read::<ChecklistResponse>()) {
                        Ok(response) => {
                            linked.push(rid);
                            let template =
                                match records::readable_doc(&ctx.db, caller, response.template_id)
                                    .await?
                                {
                                    Some((RecordKind::ChecklistTemplate, tb)) => {
                                        RecordDoc::load(&tb)
                                            .and_then(|d| d.read::<ChecklistTemplate>())
                                            .ok()
                                    }
                                    _ => None,
                                };
                            Some(crate::domain::review::checklist_view(
                                rid,
                                &response,
                                template.as_ref(),
                            ))
                        }
                        Err(_) => None,
                    }
                }
                _ => None,
            },
            None => None,
        };
        let (parts, time_entries, minutes) = rules::entries_of(&a);
        assignments.push(AssignmentView {
            id: aid,
            technician: None,
            assignment: a,
            parts,
            time_entries,
            minutes,
            signature,
            checklist,
        });
    }
    let attachments = db_reports::attachments_of(&ctx.db, caller, &linked).await?;
    let mut names = BTreeMap::new();
    for user in people {
        if let Some(u) = db::accounts::user_by_id(&ctx.db, user).await?
            && u.org == caller.org
        {
            names.insert(user, u.display_name);
        }
    }
    for a in &mut assignments {
        a.technician = names.get(&a.assignment.meta.owner).cloned();
    }
    let completed_ms = j.completed_at.map(|t| t.at_ms);
    let working = assignments.iter().any(|a| a.assignment.status.is_active());
    Ok(JobDetail {
        id,
        account_name: account_name(ctx, caller, j.account_id).await?,
        sla_breached: rules::sla_breached(
            j.status,
            j.sla_due.map(|t| t.at_ms),
            completed_ms,
            now_ms(),
        ),
        promise_kept: rules::promise_kept(
            j.first_arrived_at.map(|t| t.at_ms),
            j.request_window_start.map(|t| t.at_ms),
            j.request_window_end.map(|t| t.at_ms),
        ),
        closable: j.status == JobStatus::Completed,
        cancellable: j.status.is_open() && !working,
        job: j,
        assignments,
        attachments,
        history,
        names,
    })
}

/// Loads job `id` for a decision on the caller's behalf: the writer and the
/// document under its actor; not found when the caller does not read it.
async fn for_decision(ctx: &Context, caller: &Caller, id: RecordId) -> Result<(Caller, RecordDoc)> {
    let writer = caller.on_behalf();
    let Some((RecordKind::ServiceJob, bytes)) = records::readable_doc(&ctx.db, &writer, id).await?
    else {
        return Err(Error::NotFound);
    };
    let mut doc = RecordDoc::load(&bytes).map_err(|e| unreadable(id, e))?;
    doc.set_actor(writer.actor_id.clone());
    Ok((writer, doc))
}

/// Closes job `id` (as given) on the caller's behalf: a resolution (required)
/// and whether it was fixed on the first visit; only a `completed` job.
/// Answers the job's new status. The pages and the CLI close through here.
pub async fn close(
    ctx: &Context,
    caller: &Caller,
    id: &str,
    resolution: Option<&str>,
    first_time_fix: bool,
) -> Result<JobStatus> {
    rules::may_manage(caller.role(), Managing::Deciding)?;
    let id = rules::parse_job_id(id)?;
    let resolution = rules::resolution(resolution)?;
    let (writer, mut doc) = for_decision(ctx, caller, id).await?;
    let before = doc.heads();
    rules::close_job(
        &mut doc,
        &writer.actor,
        DeviceTime::now_utc(),
        resolution,
        first_time_fix,
    )?;
    super::write::push_since(ctx, &writer, id, RecordKind::ServiceJob, &mut doc, &before).await?;
    Ok(JobStatus::Closed)
}

/// Cancels job `id` (as given) on the caller's behalf, with a reason;
/// refused while any of its assignments is in progress (whoever's it is).
pub async fn cancel(
    ctx: &Context,
    caller: &Caller,
    id: &str,
    reason: Option<&str>,
) -> Result<JobStatus> {
    rules::may_manage(caller.role(), Managing::Deciding)?;
    let id = rules::parse_job_id(id)?;
    let reason = rules::cancel_reason(reason)?;
    let (writer, mut doc) = for_decision(ctx, caller, id).await?;
    // Every assignment counts, also one of a technician outside the
    // manager's team: the rule is about the job, not about what they list.
    let all = assignments_of(ctx, &rules::server_caller(caller.org), id).await?;
    let statuses: Vec<AssignmentStatus> = all.iter().map(|a| a.status).collect();
    let before = doc.heads();
    rules::cancel_job(
        &mut doc,
        &writer.actor,
        &statuses,
        DeviceTime::now_utc(),
        reason,
    )?;
    super::write::push_since(ctx, &writer, id, RecordKind::ServiceJob, &mut doc, &before).await?;
    Ok(JobStatus::Cancelled)
}

/// The caller a back-office user is when an operator acts for them from the
/// command line (`fieldsync job close --as <email>`): the user of `org_slug`
/// with `email`, on no device, writing under the same actor as their pages.
/// Field users and disabled accounts are refused.
pub async fn office_caller(ctx: &Context, org_slug: &str, email: &str) -> Result<Caller> {
    let org = db::accounts::org_by_slug(&ctx.db, org_slug)
        .await?
        .ok_or_else(|| Error::BadRequest(format!("no organisation {org_slug:?}")))?;
    let user = db::accounts::find_user(&ctx.db, org, &email.trim().to_lowercase())
        .await?
        .ok_or_else(|| Error::BadRequest(format!("no user {email:?} in {org_slug:?}")))?;
    if user.disabled {
        return Err(Error::AccountDisabled);
    }
    rules::may_manage(user.role, Managing::Deciding)?;
    let caller = Caller {
        actor: fieldsync_core::model::Actor::without_device(user.id, user.role),
        org,
        team: user.team,
        territory: user.territory,
        display_name: user.display_name,
        actor_id: crate::domain::caller::web_actor(user.id),
        window: None,
    };
    Ok(caller)
}
