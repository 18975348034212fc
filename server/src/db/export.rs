//! What the CSV exports read: the fact rows of one kind for a range of days
//! in the caller's scope (narrowed to a team), the same rows the dashboard
//! counts, so an export adds up to the figures. At most `limit` rows are
//! read; the service refuses a file over its bound.

use fieldsync_core::TeamId;

use super::facts::Days;
use super::{Database, DbError};
use crate::domain::Caller;
use crate::on_pool;

/// One fact row as an export reads it: record id, owner id, owner name, team
/// id, account id, status, day, visit id, planned, planned start, check-in,
/// check-out (ms), check-in verdict, outcome, currency, net amount.
pub type FactTuple = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<bool>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

/// The columns of orders and jobs that do not fit [`FactTuple`]: record id,
/// total (orders) or creation time (jobs), completion, SLA due time,
/// first-time fix.
pub type MoreTuple = (String, Option<i64>, Option<i64>, Option<i64>, Option<bool>);

/// The fact rows of `kind` (`visit`, `order` or `service_job`) counting on a
/// day of `days`, by day and id, at most `limit`; with `more`, also their
/// [`MoreTuple`] columns.
pub async fn rows(
    db: &Database,
    caller: &Caller,
    team: Option<TeamId>,
    kind: &str,
    days: &Days,
    limit: i64,
    more: bool,
) -> Result<(Vec<FactTuple>, Vec<MoreTuple>), DbError> {
    let p = caller.principals();
    let org = *caller.org.as_uuid();
    let team = team.map(|t| *t.as_uuid());
    let (from, to) = (&days.from, &days.to);
    let filter = "f.org_id = $1 AND f.kind = $7 AND f.deleted = $8 AND f.day >= $9 \
         AND f.day <= $10 AND ($11 IS NULL OR f.team_id = $11) AND EXISTS (SELECT 1 FROM \
         record_scope s WHERE s.record_id = f.record_id AND s.principal IN ($2, $3, $4, $5, $6))";
    let main_sql = format!(
        "SELECT CAST(f.record_id AS TEXT), CAST(f.owner_id AS TEXT), u.display_name, \
         CAST(f.team_id AS TEXT), CAST(f.account_id AS TEXT), f.status, f.day, \
         CAST(f.visit_id AS TEXT), f.planned, f.planned_start_ms, f.check_in_ms, f.check_out_ms, \
         f.check_in_verdict, f.outcome, f.currency, f.net_minor \
         FROM record_facts f LEFT JOIN users u ON u.id = f.owner_id WHERE {filter} \
         ORDER BY f.day, f.record_id LIMIT $12"
    );
    let more_sql = format!(
        "SELECT CAST(f.record_id AS TEXT), \
         CASE WHEN f.kind = 'order' THEN f.total_minor ELSE f.created_ms END, \
         f.completed_ms, f.sla_due_ms, f.first_time_fix FROM record_facts f WHERE {filter} \
         ORDER BY f.day, f.record_id LIMIT $12"
    );
    Ok(on_pool!(db, |pool, uuid| {
        let rows: Vec<FactTuple> = sqlx::query_as(sqlx::AssertSqlSafe(main_sql.as_str()))
            .bind(uuid(org))
            .bind(&p[0])
            .bind(&p[1])
            .bind(&p[2])
            .bind(&p[3])
            .bind(&p[4])
            .bind(kind)
            .bind(false)
            .bind(from)
            .bind(to)
            .bind(team.map(uuid))
            .bind(limit)
            .fetch_all(pool)
            .await?;
        let more: Vec<MoreTuple> = if more {
            sqlx::query_as(sqlx::AssertSqlSafe(more_sql.as_str()))
                .bind(uuid(org))
                .bind(&p[0])
                .bind(&p[1])
                .bind(&p[2])
                .bind(&p[3])
                .bind(&p[4])
                .bind(kind)
                .bind(false)
                .bind(from)
                .bind(to)
                .bind(team.map(uuid))
                .bind(limit)
                .fetch_all(pool)
                .await?
        } else {
            Vec::new()
        };
        (rows, more)
    }))
}
