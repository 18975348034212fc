//! What the back office's job list and the server's roll-up sweep read: jobs
//! in the caller's scope with filters and paging ([`list`]), the technicians
//! assigned to a job ([`technicians_of`]), and, across organisations, the
//! jobs not yet done with their assignments' statuses ([`sweep_page`]).
//!
//! The list is scoped like the sync path (a record is found only when one of
//! the caller's principals is among its scope rows); the SLA filter reads the
//! projection's `start_ms` (a job's SLA due time) and the job's fact row
//! (its completion), with the same rule as `domain::jobs::sla_breached`.

use fieldsync_core::model::{JobStatus, RecordKind, Status};
use fieldsync_core::{OrgId, RecordId, TeamId, UserId};

use super::{Database, DbError, parse_uuid};
use crate::domain::Caller;
use crate::domain::jobs::JobFilter;
use crate::on_pool;

/// A job the list shows, with its document (for type, priority, account).
#[derive(Debug, Clone)]
pub struct ListedJob {
    /// The job.
    pub id: RecordId,
    /// Its status.
    pub status: Option<String>,
    /// Its SLA due time (ms since the epoch).
    pub sla_due_ms: Option<i64>,
    /// Its completion (device time), from its fact row.
    pub completed_ms: Option<i64>,
    /// Its document.
    pub doc: Vec<u8>,
}

/// One page of the jobs in the caller's scope that pass `filter`, by SLA
/// due time (jobs without one last), then id; one row more than the page
/// when another page follows.
pub async fn list(
    db: &Database,
    caller: &Caller,
    filter: &JobFilter,
    now_ms: i64,
) -> Result<Vec<ListedJob>, DbError> {
    let p = caller.principals();
    let sql = "SELECT CAST(r.id AS TEXT), r.status, r.start_ms, f.completed_ms, r.doc \
         FROM records r LEFT JOIN record_facts f ON f.record_id = r.id \
         WHERE r.org_id = $1 AND r.kind = $2 AND r.deleted = $3 \
         AND EXISTS (SELECT 1 FROM record_scope s WHERE s.record_id = r.id \
         AND s.principal IN ($4, $5, $6, $7, $8)) \
         AND ($9 IS NULL OR r.status = $9) \
         AND ($10 IS NULL OR EXISTS (SELECT 1 FROM records x WHERE x.org_id = r.org_id \
         AND x.kind = $11 AND x.parent_id = r.id AND x.deleted = $3 AND x.owner_id = $10)) \
         AND ($12 = $3 OR (r.start_ms IS NOT NULL AND r.status <> $13 AND \
         CASE WHEN r.status IN ($14, $15) AND f.completed_ms IS NOT NULL \
         THEN f.completed_ms > r.start_ms ELSE r.start_ms < $16 END)) \
         ORDER BY CASE WHEN r.start_ms IS NULL THEN 1 ELSE 0 END, r.start_ms, r.id \
         LIMIT $17 OFFSET $18";
    let status = filter.status.map(|s| s.as_str());
    let technician = filter.technician.map(|t| *t.as_uuid());
    type Row = (String, Option<String>, Option<i64>, Option<i64>, Vec<u8>);
    let rows: Vec<Row> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(sql)
            .bind(uuid(*caller.org.as_uuid()))
            .bind(RecordKind::ServiceJob.as_str())
            .bind(false)
            .bind(&p[0])
            .bind(&p[1])
            .bind(&p[2])
            .bind(&p[3])
            .bind(&p[4])
            .bind(status)
            .bind(technician.map(uuid))
            .bind(RecordKind::Assignment.as_str())
            .bind(filter.sla_breached)
            .bind(JobStatus::Cancelled.as_str())
            .bind(JobStatus::Completed.as_str())
            .bind(JobStatus::Closed.as_str())
            .bind(now_ms)
            .bind(i64::from(filter.per_page) + 1)
            .bind(filter.offset())
            .fetch_all(pool)
            .await?
    });
    rows.into_iter()
        .map(|(id, status, sla_due_ms, completed_ms, doc)| {
            Ok(ListedJob {
                id: RecordId::from_uuid(parse_uuid(&id)?),
                status,
                sla_due_ms,
                completed_ms,
                doc,
            })
        })
        .collect()
}

/// The technicians with an assignment on `job` that the caller reads, with
/// their names and the assignment's status, in assignment order.
pub async fn technicians_of(
    db: &Database,
    caller: &Caller,
    job: RecordId,
) -> Result<Vec<(UserId, String, Option<String>)>, DbError> {
    let p = caller.principals();
    let rows: Vec<(String, Option<String>, Option<String>)> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT CAST(x.owner_id AS TEXT), u.display_name, x.status FROM records x \
             JOIN users u ON u.id = x.owner_id \
             WHERE x.org_id = $1 AND x.kind = $2 AND x.parent_id = $3 AND x.deleted = $4 \
             AND EXISTS (SELECT 1 FROM record_scope s WHERE s.record_id = x.id \
             AND s.principal IN ($5, $6, $7, $8, $9)) ORDER BY x.created_seq",
        )
        .bind(uuid(*caller.org.as_uuid()))
        .bind(RecordKind::Assignment.as_str())
        .bind(uuid(*job.as_uuid()))
        .bind(false)
        .bind(&p[0])
        .bind(&p[1])
        .bind(&p[2])
        .bind(&p[3])
        .bind(&p[4])
        .fetch_all(pool)
        .await?
    });
    rows.into_iter()
        .map(|(id, name, status)| {
            Ok((
                UserId::from_uuid(parse_uuid(&id)?),
                name.unwrap_or_default(),
                status,
            ))
        })
        .collect()
}

/// A job not yet done, as the sweep sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepJob {
    /// Its organisation.
    pub org: OrgId,
    /// The job.
    pub id: RecordId,
    /// Its status.
    pub status: String,
    /// Its assignments' statuses (not deleted).
    pub assignments: Vec<String>,
}

/// Up to `page` jobs (of every organisation) that are `open`, `scheduled` or
/// `in_progress`, with ids after `after`, by id, with their assignments'
/// statuses: what the roll-up sweep compares.
pub async fn sweep_page(
    db: &Database,
    after: RecordId,
    page: i64,
) -> Result<Vec<SweepJob>, DbError> {
    type Row = (String, String, Option<String>, Option<String>);
    let rows: Vec<Row> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT CAST(j.id AS TEXT), CAST(j.org_id AS TEXT), j.status, a.status \
             FROM (SELECT id, org_id, status FROM records WHERE kind = $1 AND deleted = $2 \
             AND status IN ($3, $4, $5) AND id > $6 ORDER BY id LIMIT $7) j \
             LEFT JOIN records a ON a.parent_id = j.id AND a.org_id = j.org_id \
             AND a.kind = $8 AND a.deleted = $2 ORDER BY j.id",
        )
        .bind(RecordKind::ServiceJob.as_str())
        .bind(false)
        .bind(JobStatus::Open.as_str())
        .bind(JobStatus::Scheduled.as_str())
        .bind(JobStatus::InProgress.as_str())
        .bind(uuid(*after.as_uuid()))
        .bind(page)
        .bind(RecordKind::Assignment.as_str())
        .fetch_all(pool)
        .await?
    });
    let mut out: Vec<SweepJob> = Vec::new();
    for (id, org, status, assignment) in rows {
        let id = RecordId::from_uuid(parse_uuid(&id)?);
        if out.last().is_none_or(|j| j.id != id) {
            out.push(SweepJob {
                org: OrgId::from_uuid(parse_uuid(&org)?),
                id,
                status: status.unwrap_or_default(),
                assignments: Vec::new(),
            });
        }
        if let (Some(job), Some(a)) = (out.last_mut(), assignment) {
            job.assignments.push(a);
        }
    }
    Ok(out)
}

/// The technicians of the organisation, or of one team, by name.
pub async fn technicians(
    db: &Database,
    org: OrgId,
    team: Option<TeamId>,
) -> Result<Vec<(UserId, String)>, DbError> {
    let rows: Vec<(String, String)> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT CAST(id AS TEXT), display_name FROM users WHERE org_id = $1 \
             AND role = 'technician' AND ($2 IS NULL OR team_id = $2) ORDER BY display_name, id",
        )
        .bind(uuid(*org.as_uuid()))
        .bind(team.map(|t| uuid(*t.as_uuid())))
        .fetch_all(pool)
        .await?
    });
    rows.into_iter()
        .map(|(id, name)| Ok((UserId::from_uuid(parse_uuid(&id)?), name)))
        .collect()
}
