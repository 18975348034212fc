//! The managers' figures in the database: `record_facts`, one row per visit,
//! order and job, rewritten by every push in its own transaction through
//! [`FactWrites`] (so the dashboard never opens documents); the queries the
//! dashboard reads ([`load_rows`], [`fleet`]); the filling of rows missing
//! for records stored before the table existed ([`missing_facts`],
//! [`write_missing`]); and each device's sync health (`device_health`,
//! stamped by [`write_sync`] on every push and pull).
//!
//! **Scope.** Fact rows are read through the caller's principals like the
//! records themselves, optionally narrowed to one team; devices and
//! rejections follow their users' teams ([`Members`]).

use fieldsync_core::TeamId;
use fieldsync_core::model::Projection;

use super::{Database, DbError};
use crate::domain::Caller;
use crate::domain::figures::facts::Facts;
use crate::domain::figures::kpis::{JobRow, OrderRow, VisitRow};
use crate::domain::push::opt_uuid;
use crate::on_pool;

/// Upserts one record's row of `record_facts` on an executor (a transaction
/// inside a push, a connection in [`write_missing`]). A macro so one text serves
/// both dialects' executors, like [`on_pool!`](crate::on_pool).
macro_rules! write_facts {
    // A row only where there is none (filling in: a concurrent push's row is newer).
    (@missing $exec:expr, $uuid:ident, $pg:expr, $org:expr, $projection:expr, $facts:expr) => {{
        let p: &fieldsync_core::model::Projection = $projection;
        let f: &$crate::domain::figures::facts::Facts = $facts;
        $crate::db::facts::write_facts!(@rows $exec, $uuid, $pg, $org, &[(p, f)], 1,
            "ON CONFLICT (record_id) DO NOTHING")
    }};
    // Many records' rows in as few statements as the parameter limits allow
    // (a push writes the rows of all its records at once), `$per_statement`
    // rows a statement.
    (@rows $exec:expr, $uuid:ident, $pg:expr, $org:expr, $rows:expr, $per_statement:expr, $tail:expr) => {{
        let rows: &[(
            &fieldsync_core::model::Projection,
            &$crate::domain::figures::facts::Facts,
        )] = $rows;
        for chunk in rows.chunks($per_statement) {
            let sql = format!(
                "{} VALUES {} {}",
                $crate::db::facts::FACT_INSERT,
                $crate::db::facts::fact_rows_params(chunk.len()),
                $tail
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe($crate::db::positional($pg, sql)));
            for (p, f) in chunk {
                q = q
                    .bind($uuid(*p.id.as_uuid()))
                    .bind($uuid($org))
                    .bind(p.kind.as_str())
                    .bind(p.owner.map(|o| $uuid(*o.as_uuid())))
                    .bind($crate::domain::push::opt_uuid(p.team.as_deref()).map($uuid))
                    .bind(p.status.as_deref())
                    .bind(p.deleted)
                    .bind(f.day.as_deref())
                    .bind(p.account_id.map(|a| $uuid(*a.as_uuid())))
                    .bind(f.visit_id.map(|v| $uuid(*v.as_uuid())))
                    .bind(f.planned)
                    .bind(f.planned_start_ms)
                    .bind(f.check_in_ms)
                    .bind(f.check_out_ms)
                    .bind(f.check_in_verdict.as_deref())
                    .bind(f.outcome.as_deref())
                    .bind(f.currency.as_deref())
                    .bind(f.net_minor)
                    .bind(f.total_minor)
                    .bind(f.created_ms)
                    .bind(f.completed_ms)
                    .bind(f.sla_due_ms)
                    .bind(f.window_end_ms)
                    .bind(f.first_time_fix)
                    .bind(f.window_start_ms)
                    .bind(f.first_arrived_ms);
            }
            q.execute($exec).await?;
        }
    }};
    // Upserts: what a push writes for every record it changed.
    (@upsert $exec:expr, $uuid:ident, $pg:expr, $org:expr, $rows:expr, $per_statement:expr) => {
        $crate::db::facts::write_facts!(@rows $exec, $uuid, $pg, $org, $rows, $per_statement,
            $crate::db::facts::FACT_UPSERT)
    };
}

/// The columns of a facts row, in the order every form binds them.
pub(crate) const FACT_INSERT: &str = "INSERT INTO record_facts (record_id, org_id, kind, \
    owner_id, team_id, status, deleted, day, account_id, visit_id, planned, planned_start_ms, \
    check_in_ms, check_out_ms, check_in_verdict, outcome, currency, net_minor, total_minor, \
    created_ms, completed_ms, sla_due_ms, window_end_ms, first_time_fix, window_start_ms, \
    first_arrived_ms)";

/// Parameters of one fact row.
pub(crate) const FACT_COLS: usize = 26;

/// How a push's fact row replaces the one stored.
pub(crate) const FACT_UPSERT: &str = "ON CONFLICT (record_id) DO UPDATE SET \
    owner_id = excluded.owner_id, \
    team_id = excluded.team_id, status = excluded.status, deleted = excluded.deleted, \
    day = excluded.day, account_id = excluded.account_id, \
    visit_id = excluded.visit_id, planned = excluded.planned, \
    planned_start_ms = excluded.planned_start_ms, check_in_ms = excluded.check_in_ms, \
    check_out_ms = excluded.check_out_ms, \
    check_in_verdict = excluded.check_in_verdict, outcome = excluded.outcome, \
    currency = excluded.currency, net_minor = excluded.net_minor, \
    total_minor = excluded.total_minor, created_ms = excluded.created_ms, \
    completed_ms = excluded.completed_ms, sla_due_ms = excluded.sla_due_ms, \
    window_end_ms = excluded.window_end_ms, first_time_fix = excluded.first_time_fix, \
    window_start_ms = excluded.window_start_ms, \
    first_arrived_ms = excluded.first_arrived_ms";

/// A record's facts row as a push writes it: its projection and its figures.
pub(crate) type FactRow<'a> = (&'a Projection, &'a Facts);

/// The push's facts rows on a connection of either dialect, in its best form
/// (as `bulk::BulkWrites` writes the log, the records and their scope):
/// multi-row `VALUES` on SQLite, one array per column through `UNNEST` on
/// PostgreSQL.
pub(crate) trait FactWrites {
    /// Inserts or replaces the facts rows of `org`'s records.
    fn upsert_facts<'a>(
        &'a mut self,
        org: uuid::Uuid,
        rows: &'a [FactRow<'a>],
    ) -> impl std::future::Future<Output = Result<(), DbError>> + Send + 'a;
}

impl FactWrites for sqlx::SqliteConnection {
    async fn upsert_facts<'a>(
        &'a mut self,
        org: uuid::Uuid,
        rows: &'a [FactRow<'a>],
    ) -> Result<(), DbError> {
        let uuid = super::sqlite_uuid;
        write_facts!(@upsert &mut *self, uuid, false, org, rows,
            super::bulk::rows_per_statement(false, FACT_COLS));
        Ok(())
    }
}

impl FactWrites for sqlx::PgConnection {
    async fn upsert_facts<'a>(
        &'a mut self,
        org: uuid::Uuid,
        rows: &'a [FactRow<'a>],
    ) -> Result<(), DbError> {
        for chunk in rows.chunks(super::bulk::PG_ARRAY_ROWS) {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "{} SELECT r, $1, k, o, te, s, d, day, a, v, pl, ps, ci, co, cv, oc, cu, \
                 nm, tm, cr, cp, sla, we, ftf, ws, fa FROM UNNEST($2::uuid[], $3::text[], \
                 $4::uuid[], $5::uuid[], $6::text[], $7::bool[], $8::text[], $9::uuid[], \
                 $10::uuid[], $11::bool[], $12::int8[], $13::int8[], $14::int8[], $15::text[], \
                 $16::text[], $17::text[], $18::int8[], $19::int8[], $20::int8[], $21::int8[], \
                 $22::int8[], $23::int8[], $24::bool[], $25::int8[], $26::int8[]) \
                 AS u(r, k, o, te, s, d, day, a, v, pl, ps, ci, co, cv, oc, cu, nm, tm, cr, cp, \
                 sla, we, ftf, ws, fa) {}",
                FACT_INSERT, FACT_UPSERT
            )))
            .bind(org)
            .bind(column(chunk, |p, _| *p.id.as_uuid()))
            .bind(column(chunk, |p, _| p.kind.as_str()))
            .bind(column(chunk, |p, _| p.owner.map(|o| *o.as_uuid())))
            .bind(column(chunk, |p, _| opt_uuid(p.team.as_deref())))
            .bind(column(chunk, |p, _| p.status.as_deref()))
            .bind(column(chunk, |p, _| p.deleted))
            .bind(column(chunk, |_, f| f.day.as_deref()))
            .bind(column(chunk, |p, _| p.account_id.map(|a| *a.as_uuid())))
            .bind(column(chunk, |_, f| f.visit_id.map(|v| *v.as_uuid())))
            .bind(column(chunk, |_, f| f.planned))
            .bind(column(chunk, |_, f| f.planned_start_ms))
            .bind(column(chunk, |_, f| f.check_in_ms))
            .bind(column(chunk, |_, f| f.check_out_ms))
            .bind(column(chunk, |_, f| f.check_in_verdict.as_deref()))
            .bind(column(chunk, |_, f| f.outcome.as_deref()))
            .bind(column(chunk, |_, f| f.currency.as_deref()))
            .bind(column(chunk, |_, f| f.net_minor))
            .bind(column(chunk, |_, f| f.total_minor))
            .bind(column(chunk, |_, f| f.created_ms))
            .bind(column(chunk, |_, f| f.completed_ms))
            .bind(column(chunk, |_, f| f.sla_due_ms))
            .bind(column(chunk, |_, f| f.window_end_ms))
            .bind(column(chunk, |_, f| f.first_time_fix))
            .bind(column(chunk, |_, f| f.window_start_ms))
            .bind(column(chunk, |_, f| f.first_arrived_ms))
            .execute(&mut *self)
            .await?;
        }
        Ok(())
    }
}

/// One column of a run of facts rows, as the array `UNNEST` takes.
fn column<'a, T>(rows: &[FactRow<'a>], f: impl Fn(&'a Projection, &'a Facts) -> T) -> Vec<T> {
    rows.iter().map(|&(p, x)| f(p, x)).collect()
}

/// `($1, …, $26), ($27, …), …` for `rows` fact rows.
pub(crate) fn fact_rows_params(rows: usize) -> String {
    (0..rows)
        .map(|r| {
            let first = 1 + r * FACT_COLS;
            let cols: Vec<String> = (first..first + FACT_COLS)
                .map(|i| format!("${i}"))
                .collect();
            format!("({})", cols.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) use write_facts;

/// A range of whole UTC days as the fact queries take it.
#[derive(Debug, Clone)]
pub struct Days {
    /// First day, `YYYY-MM-DD`.
    pub from: String,
    /// Last day (included), `YYYY-MM-DD`.
    pub to: String,
    /// Start of the first day, ms since the epoch.
    pub from_ms: i64,
    /// End of the last day (exclusive), ms since the epoch.
    pub end_ms: i64,
}

/// `EXISTS` clause of record scope over `record_facts f`, principals at `$2`..`$6`.
const IN_SCOPE: &str = "EXISTS (SELECT 1 FROM record_scope s WHERE s.record_id = f.record_id \
     AND s.principal IN ($2, $3, $4, $5, $6))";

type VisitTuple = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<bool>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);
type OrderTuple = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
);
type JobTuple = (
    String,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<bool>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// The fact rows of the range in the caller's scope (narrowed to `team`):
/// visits counting on a day of the range, orders counting on one or linked to
/// one of those visits, and the jobs that can matter (not completed before
/// the range, created before its end).
pub async fn load_rows(
    db: &Database,
    caller: &Caller,
    team: Option<TeamId>,
    days: &Days,
) -> Result<(Vec<VisitRow>, Vec<OrderRow>, Vec<JobRow>), DbError> {
    let p = caller.principals();
    let org = *caller.org.as_uuid();
    let team = team.map(|t| *t.as_uuid());
    let (from, to) = (&days.from, &days.to);
    let (from_ms, end_ms) = (days.from_ms, days.end_ms);
    let visit_sql = format!(
        "SELECT CAST(f.record_id AS TEXT), CAST(f.owner_id AS TEXT), u.display_name, f.status, \
         f.day, f.planned, f.check_in_ms, f.check_out_ms, f.check_in_verdict \
         FROM record_facts f LEFT JOIN users u ON u.id = f.owner_id \
         WHERE f.org_id = $1 AND f.kind = 'visit' AND f.deleted = $7 \
         AND f.day >= $8 AND f.day <= $9 AND ($10 IS NULL OR f.team_id = $10) AND {IN_SCOPE}"
    );
    let order_sql = format!(
        "SELECT CAST(f.record_id AS TEXT), CAST(f.owner_id AS TEXT), u.display_name, f.status, \
         f.day, CAST(f.visit_id AS TEXT), f.currency, f.net_minor \
         FROM record_facts f LEFT JOIN users u ON u.id = f.owner_id \
         WHERE f.org_id = $1 AND f.kind = 'order' AND f.deleted = $7 \
         AND ((f.day >= $8 AND f.day <= $9) OR f.visit_id IN (SELECT v.record_id \
         FROM record_facts v WHERE v.org_id = $1 AND v.kind = 'visit' \
         AND v.day >= $8 AND v.day <= $9)) \
         AND ($10 IS NULL OR f.team_id = $10) AND {IN_SCOPE}"
    );
    let job_sql = format!(
        "SELECT CAST(f.record_id AS TEXT), f.status, f.created_ms, f.completed_ms, \
         f.sla_due_ms, f.first_time_fix, f.window_start_ms, f.window_end_ms, \
         f.first_arrived_ms FROM record_facts f \
         WHERE f.org_id = $1 AND f.kind = 'service_job' AND f.deleted = $7 \
         AND (f.created_ms IS NULL OR f.created_ms < $9) \
         AND (f.completed_ms IS NULL OR f.completed_ms >= $8 OR f.sla_due_ms >= $8) \
         AND ($10 IS NULL OR f.team_id = $10) AND {IN_SCOPE}"
    );
    let (visits, orders, jobs) = on_pool!(db, |pool, uuid| {
        let visits: Vec<VisitTuple> = sqlx::query_as(sqlx::AssertSqlSafe(visit_sql.as_str()))
            .bind(uuid(org))
            .bind(&p[0])
            .bind(&p[1])
            .bind(&p[2])
            .bind(&p[3])
            .bind(&p[4])
            .bind(false)
            .bind(from)
            .bind(to)
            .bind(team.map(uuid))
            .fetch_all(pool)
            .await?;
        let orders: Vec<OrderTuple> = sqlx::query_as(sqlx::AssertSqlSafe(order_sql.as_str()))
            .bind(uuid(org))
            .bind(&p[0])
            .bind(&p[1])
            .bind(&p[2])
            .bind(&p[3])
            .bind(&p[4])
            .bind(false)
            .bind(from)
            .bind(to)
            .bind(team.map(uuid))
            .fetch_all(pool)
            .await?;
        let jobs: Vec<JobTuple> = sqlx::query_as(sqlx::AssertSqlSafe(job_sql.as_str()))
            .bind(uuid(org))
            .bind(&p[0])
            .bind(&p[1])
            .bind(&p[2])
            .bind(&p[3])
            .bind(&p[4])
            .bind(false)
            .bind(from_ms)
            .bind(end_ms)
            .bind(team.map(uuid))
            .fetch_all(pool)
            .await?;
        (visits, orders, jobs)
    });
    let text = |s: Option<String>| s.unwrap_or_default();
    Ok((
        visits
            .into_iter()
            .map(|r| VisitRow {
                id: r.0,
                rep_id: text(r.1),
                rep_name: text(r.2),
                status: text(r.3),
                day: text(r.4),
                planned: r.5.unwrap_or(false),
                check_in_ms: r.6,
                check_out_ms: r.7,
                check_in_verdict: r.8,
            })
            .collect(),
        orders
            .into_iter()
            .map(|r| OrderRow {
                id: r.0,
                rep_id: text(r.1),
                rep_name: text(r.2),
                status: text(r.3),
                day: r.4,
                visit_id: r.5,
                currency: text(r.6),
                net_minor: r.7.unwrap_or(0),
            })
            .collect(),
        jobs.into_iter()
            .map(|r| JobRow {
                id: r.0,
                status: text(r.1),
                created_ms: r.2,
                completed_ms: r.3,
                sla_due_ms: r.4,
                first_time_fix: r.5,
                window_start_ms: r.6,
                window_end_ms: r.7,
                first_arrived_ms: r.8,
            })
            .collect(),
    ))
}

/// Whose devices and rejected changes the fleet counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Members {
    /// Every user of the organisation.
    Organisation,
    /// The users of one team (no team matches the nil id).
    Team(uuid::Uuid),
}

impl Members {
    /// The two binds of `($2 = 2 OR u.team_id = $3)`.
    fn binds(self) -> (i64, Option<uuid::Uuid>) {
        match self {
            Members::Organisation => (2, None),
            Members::Team(t) => (1, Some(t)),
        }
    }
}

/// One active device with its last sync and the figures it last reported.
#[derive(Debug, Clone)]
pub struct DeviceHealthRow {
    /// The device.
    pub device_id: String,
    /// Its user.
    pub user_id: String,
    /// Their name.
    pub user_name: String,
    /// `android`, `ios`, ...
    pub platform: String,
    /// The app version given at login.
    pub login_app_version: String,
    /// When the device logged in (Unix seconds).
    pub created_at: i64,
    /// Last sync, server time (Unix seconds).
    pub last_sync_at: Option<i64>,
    /// When the figures below were reported.
    pub reported_at: Option<i64>,
    /// Changes on the device the server has not acknowledged.
    pub unsynced_changes: Option<i64>,
    /// Device time of the oldest of them (ms since the epoch).
    pub oldest_unsynced_ms: Option<i64>,
    /// Attachment bytes waiting for upload.
    pub pending_attachment_bytes: Option<i64>,
    /// The app version reported with the last sync.
    pub reported_app_version: Option<String>,
}

/// What the fleet part of the dashboard reads.
#[derive(Debug, Clone)]
pub struct FleetRows {
    /// Active (not revoked) devices, browser sessions left out, longest silent first.
    pub devices: Vec<DeviceHealthRow>,
    /// Rejection ledger entries of the range.
    pub rejected: i64,
    /// Open conflicts on records in scope (narrowed to `team`), now.
    pub open_conflicts: i64,
}

type DeviceTuple = (
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

/// The fleet's rows: `members`' devices and rejections during the range, and
/// the open conflicts in the caller's scope (narrowed to `team`).
pub async fn fleet(
    db: &Database,
    caller: &Caller,
    team: Option<TeamId>,
    members: Members,
    days: &Days,
) -> Result<FleetRows, DbError> {
    let org = *caller.org.as_uuid();
    let (mode, member_team) = members.binds();
    let (from_ms, end_ms) = (days.from_ms, days.end_ms);
    let p = caller.principals();
    let rows: Vec<DeviceTuple> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT CAST(d.id AS TEXT), CAST(d.user_id AS TEXT), u.display_name, d.platform, \
             d.app_version, d.created_at, h.last_sync_at, h.reported_at, h.unsynced_changes, \
             h.oldest_unsynced_ms, h.pending_attachment_bytes, h.app_version \
             FROM devices d JOIN users u ON u.id = d.user_id \
             LEFT JOIN device_health h ON h.device_id = d.id \
             WHERE d.org_id = $1 AND d.revoked_at IS NULL AND d.platform <> 'web' \
               AND ($2 = 2 OR u.team_id = $3) \
             ORDER BY COALESCE(h.last_sync_at, d.created_at), d.id",
        )
        .bind(uuid(org))
        .bind(mode)
        .bind(member_team.map(uuid))
        .fetch_all(pool)
        .await?
    });
    let (rejected, open_conflicts): (i64, i64) = on_pool!(db, |pool, uuid| {
        let rejected: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM rejections x JOIN users u ON u.id = x.user_id \
             WHERE x.org_id = $1 AND ($2 = 2 OR u.team_id = $3) \
             AND x.created_at >= $4 AND x.created_at < $5",
        )
        .bind(uuid(org))
        .bind(mode)
        .bind(member_team.map(uuid))
        .bind(from_ms / 1_000)
        .bind(end_ms / 1_000)
        .fetch_one(pool)
        .await?;
        let open: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM conflicts c JOIN records r ON r.id = c.record_id \
             WHERE c.org_id = $1 AND c.resolved_at IS NULL \
             AND ($7 IS NULL OR r.team_id = $7) AND EXISTS (SELECT 1 FROM record_scope s \
             WHERE s.record_id = c.record_id AND s.principal IN ($2, $3, $4, $5, $6))",
        )
        .bind(uuid(org))
        .bind(&p[0])
        .bind(&p[1])
        .bind(&p[2])
        .bind(&p[3])
        .bind(&p[4])
        .bind(team.map(|t| uuid(*t.as_uuid())))
        .fetch_one(pool)
        .await?;
        (rejected, open)
    });
    Ok(FleetRows {
        devices: rows
            .into_iter()
            .map(|r| DeviceHealthRow {
                device_id: r.0,
                user_id: r.1,
                user_name: r.2,
                platform: r.3,
                login_app_version: r.4,
                created_at: r.5,
                last_sync_at: r.6,
                reported_at: r.7,
                unsynced_changes: r.8,
                oldest_unsynced_ms: r.9,
                pending_attachment_bytes: r.10,
                reported_app_version: r.11,
            })
            .collect(),
        rejected,
        open_conflicts,
    })
}

/// The figures a device reported with a sync, as stored.
#[derive(Debug, Clone)]
pub struct HealthReport {
    /// Changes on the device the server has not acknowledged.
    pub unsynced_changes: i64,
    /// Device time of the oldest of them (ms since the epoch).
    pub oldest_unsynced_ms: Option<i64>,
    /// Attachment bytes waiting for upload.
    pub pending_attachment_bytes: i64,
    /// The app's version, already cleaned; `None` keeps the stored one.
    pub app_version: Option<String>,
}

/// Stamps devices' syncs on an executor (`$exec`, with the dialect's `$uuid`;
/// `$pg` for PostgreSQL): `$stamps` is `(device, user, report)` for each
/// device once, all of `$org`, synced at `$now`. One statement for the
/// devices that reported their figures and one for those that did not. A
/// macro so one text serves both dialects: [`write_sync`] and a group of
/// pushes (`records::apply_pushes`, in the group's transaction) use it.
macro_rules! stamp_syncs {
    ($exec:expr, $uuid:ident, $pg:expr, $org:expr, $stamps:expr, $now:expr) => {{
        use $crate::db::bulk::{rows_params, rows_per_statement};
        let stamps: &[(
            uuid::Uuid,
            uuid::Uuid,
            Option<&$crate::db::facts::HealthReport>,
        )] = $stamps;
        let plain: Vec<(uuid::Uuid, uuid::Uuid)> = stamps
            .iter()
            .filter(|(_, _, r)| r.is_none())
            .map(|(d, u, _)| (*d, *u))
            .collect();
        for chunk in plain.chunks(rows_per_statement($pg, 4)) {
            let sql = format!(
                "INSERT INTO device_health (device_id, org_id, user_id, last_sync_at) \
                 VALUES {} ON CONFLICT (device_id) \
                 DO UPDATE SET last_sync_at = excluded.last_sync_at",
                rows_params(1, chunk.len(), 4)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe($crate::db::positional($pg, sql)));
            for (device, user) in chunk {
                q = q
                    .bind($uuid(*device))
                    .bind($uuid($org))
                    .bind($uuid(*user))
                    .bind($now);
            }
            q.execute(&mut *$exec).await?;
        }
        let reported: Vec<(uuid::Uuid, uuid::Uuid, &$crate::db::facts::HealthReport)> = stamps
            .iter()
            .filter_map(|(d, u, r)| r.map(|r| (*d, *u, r)))
            .collect();
        for chunk in reported.chunks(rows_per_statement($pg, 9)) {
            let sql = format!(
                "INSERT INTO device_health (device_id, org_id, user_id, last_sync_at, \
                 reported_at, unsynced_changes, oldest_unsynced_ms, pending_attachment_bytes, \
                 app_version) VALUES {} \
                 ON CONFLICT (device_id) DO UPDATE SET last_sync_at = excluded.last_sync_at, \
                 reported_at = excluded.reported_at, \
                 unsynced_changes = excluded.unsynced_changes, \
                 oldest_unsynced_ms = excluded.oldest_unsynced_ms, \
                 pending_attachment_bytes = excluded.pending_attachment_bytes, \
                 app_version = COALESCE(excluded.app_version, device_health.app_version)",
                rows_params(1, chunk.len(), 9)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe($crate::db::positional($pg, sql)));
            for (device, user, h) in chunk {
                q = q
                    .bind($uuid(*device))
                    .bind($uuid($org))
                    .bind($uuid(*user))
                    .bind($now)
                    .bind($now)
                    .bind(h.unsynced_changes)
                    .bind(h.oldest_unsynced_ms)
                    .bind(h.pending_attachment_bytes)
                    .bind(h.app_version.as_deref());
            }
            q.execute(&mut *$exec).await?;
        }
    }};
}

pub(crate) use stamp_syncs;

/// Stamps `device`'s last sync at `now` (server time) and, when it reported
/// them, keeps its figures. The caller holds the SQLite write gate.
pub async fn write_sync(
    db: &Database,
    caller: &Caller,
    device: fieldsync_core::DeviceId,
    now: i64,
    report: Option<&HealthReport>,
) -> Result<(), DbError> {
    let stamps = [(*device.as_uuid(), *caller.user().as_uuid(), report)];
    let org = *caller.org.as_uuid();
    let pg = matches!(db, Database::Postgres(_));
    on_pool!(db, |pool, uuid| {
        let mut conn = pool.acquire().await?;
        stamp_syncs!(conn, uuid, pg, org, &stamps, now);
    });
    Ok(())
}

/// A stored record of a kind with figures that has no row of `record_facts`.
#[derive(Debug, Clone)]
pub struct MissingFacts {
    /// The record's id (text).
    pub id: String,
    /// Its organisation.
    pub org: uuid::Uuid,
    /// Its kind's stored name.
    pub kind: String,
    /// Its document.
    pub doc: Vec<u8>,
}

/// Up to `page` records (visits, orders, jobs) without a fact row, by id.
pub async fn missing_facts(db: &Database, page: i64) -> Result<Vec<MissingFacts>, DbError> {
    type Row = (String, String, String, Vec<u8>);
    let rows: Vec<Row> = on_pool!(db, |pool, _uuid| {
        sqlx::query_as(
            "SELECT CAST(r.id AS TEXT), CAST(r.org_id AS TEXT), r.kind, r.doc FROM records r \
             WHERE r.kind IN ('visit', 'order', 'service_job') \
             AND NOT EXISTS (SELECT 1 FROM record_facts f WHERE f.record_id = r.id) \
             ORDER BY r.id LIMIT $1",
        )
        .bind(page)
        .fetch_all(pool)
        .await?
    });
    rows.into_iter()
        .map(|(id, org, kind, doc)| {
            Ok(MissingFacts {
                id,
                org: super::parse_uuid(&org)?,
                kind,
                doc,
            })
        })
        .collect()
}

/// Writes a record's fact row where there is none (a concurrent push's row
/// is newer and stays).
pub async fn write_missing(
    db: &Database,
    org: uuid::Uuid,
    projection: &Projection,
    facts: &Facts,
) -> Result<(), DbError> {
    let pg = matches!(db, Database::Postgres(_));
    on_pool!(db, |pool, uuid| {
        let mut conn = pool.acquire().await?;
        write_facts!(@missing &mut *conn, uuid, pg, org, projection, facts);
    });
    Ok(())
}
