//! The managers' figures and the fleet's sync health, as data a page handler
//! calls directly ([`dashboard`]) and as JSON (`GET /v1/dashboard`).
//!
//! **Where the numbers come from.** Every push that stores a visit, an order
//! or a service job rewrites the record's row of `record_facts` in the same
//! transaction ([`facts::facts_of`]): the dashboard reads those rows (indexed
//! by organisation, kind and day) and never opens a document. Rows for
//! records stored before the table existed are filled at start
//! ([`backfill`]). Every sync request (push or pull) stamps the device's row of
//! `device_health` with the server time and the figures the device reported
//! ([`record_sync`]).
//!
//! **Scope.** Like the review inbox: a manager sees the records their team's
//! principal reads (their team's, and their own), an administrator the whole
//! organisation, optionally narrowed to one team. Devices and rejected
//! changes follow the users' teams.
//!
//! **Time.** Days are UTC days (`YYYY-MM-DD`); the organisation's own time
//! zone is not modelled yet. Figures use device times (DOMAIN.md); the fleet's
//! last sync uses the server's clock. `docs/kpis.md` defines every figure.

pub mod dates;
pub mod facts;
pub mod kpis;

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use fieldsync_core::TeamId;
use fieldsync_core::model::{RecordDoc, Role};
use fieldsync_core::protocol::DeviceHealth;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::AuthUser;
use crate::db::{Database, DbError, now_secs};
use crate::error::ApiError;
use crate::on_pool;
use crate::store::Caller;

pub use kpis::{Figures, JobFigures, OrderValue, RepFigures, VisitFigures};

/// Longest range a dashboard or an export covers, in days.
pub const MAX_RANGE_DAYS: i64 = 366;
/// A device is silent once its last sync is older than this (seconds).
pub const SILENT_AFTER_SECS: i64 = 86_400;
/// Longest app version kept from a device's report.
const MAX_APP_VERSION: usize = 64;

/// The dashboard routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/v1/dashboard", get(serve_dashboard))
}

/// A range of whole UTC days, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    /// First day (days since 1970-01-01).
    pub first_day: i64,
    /// Last day.
    pub last_day: i64,
}

impl DateRange {
    /// Parses `from` and `to` (`YYYY-MM-DD`), checking order and length.
    pub fn parse(from: &str, to: &str) -> Result<Self, ApiError> {
        let day = |name: &str, text: &str| {
            dates::parse_day(text).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "{name}={:?} is not a date; use YYYY-MM-DD",
                    text.chars().take(32).collect::<String>()
                ))
            })
        };
        let (first_day, last_day) = (day("from", from)?, day("to", to)?);
        if last_day < first_day {
            return Err(ApiError::BadRequest(
                "`to` is before `from`; give the earlier date first".into(),
            ));
        }
        if last_day - first_day >= MAX_RANGE_DAYS {
            return Err(ApiError::BadRequest(format!(
                "a range covers at most {MAX_RANGE_DAYS} days"
            )));
        }
        Ok(Self {
            first_day,
            last_day,
        })
    }

    /// `YYYY-MM-DD` of the first day.
    pub fn from_text(&self) -> String {
        dates::format_day(self.first_day)
    }

    /// `YYYY-MM-DD` of the last day.
    pub fn to_text(&self) -> String {
        dates::format_day(self.last_day)
    }

    /// The range in ms since the epoch: start inclusive, end exclusive.
    pub fn bounds_ms(&self) -> (i64, i64) {
        (
            self.first_day.saturating_mul(dates::DAY_MS),
            self.last_day
                .saturating_add(1)
                .saturating_mul(dates::DAY_MS),
        )
    }
}

/// Everything the team dashboard shows.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Dashboard {
    /// First day, `YYYY-MM-DD`.
    pub from: String,
    /// Last day, included.
    pub to: String,
    /// The time zone days are cut in (`UTC` for now).
    #[schema(value_type = String)]
    pub time_zone: &'static str,
    /// The team shown, when narrowed to one (a manager: always theirs).
    #[schema(value_type = Option<uuid::Uuid>)]
    pub team: Option<TeamId>,
    /// When the figures were computed (server time, Unix seconds).
    pub generated_at: i64,
    /// The field figures.
    #[serde(flatten)]
    pub figures: Figures,
    /// The fleet's sync health.
    pub fleet: Fleet,
}

/// Sync health of the devices in scope.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Fleet {
    /// Each active (not revoked) device, longest silent first.
    pub devices: Vec<DeviceSyncHealth>,
    /// Devices whose last sync is more than a day old (or that never synced
    /// and logged in more than a day ago).
    pub silent_over_a_day: u64,
    /// Conflicts waiting for a manager (see `GET /v1/conflicts`), now.
    pub open_conflicts: u64,
    /// Changes the server refused during the range (rejection ledger entries).
    pub rejected_changes: u64,
}

/// One device's sync health.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeviceSyncHealth {
    /// The device.
    pub device_id: String,
    /// Its user.
    pub user_id: String,
    /// Their name.
    pub user_name: String,
    /// `android`, `ios`, ...
    pub platform: String,
    /// App version: as reported with the last sync, else as given at login.
    pub app_version: String,
    /// Last sync (push or pull), server time, Unix seconds; `None`: never synced.
    pub last_sync_at: Option<i64>,
    /// Seconds since the last sync (since login when it never synced).
    pub silent_for_secs: i64,
    /// More than a day without a sync.
    pub silent: bool,
    /// When the figures below were reported (server time); `None` for apps
    /// that do not report them.
    pub reported_at: Option<i64>,
    /// Changes on the device the server has not acknowledged.
    pub unsynced_changes: i64,
    /// Device time of the oldest of them (ms since the epoch).
    pub oldest_unsynced_ms: Option<i64>,
    /// Its age now, in seconds.
    pub oldest_unsynced_age_secs: Option<i64>,
    /// Attachment bytes waiting for upload.
    pub pending_attachment_bytes: i64,
}

/// Whose figures: the caller's scope, narrowed to a team when asked.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The store's view of the caller (principals for record scope).
    pub caller: Caller,
    /// Only this team's records, devices and rejections.
    pub team: Option<TeamId>,
}

impl Scope {
    /// The scope of `user` narrowed to `team`: managers and administrators
    /// only; a manager may narrow only to their own team (and is narrowed to it
    /// anyway).
    pub fn of(state: &AppState, user: &AuthUser, team: Option<TeamId>) -> Result<Self, ApiError> {
        if !user.role.is_back_office() {
            return Err(ApiError::Forbidden(
                "team figures are for managers and administrators".into(),
            ));
        }
        let team = match user.role {
            Role::Manager => {
                if team.is_some() && team != user.team {
                    return Err(ApiError::Forbidden(
                        "a manager sees their own team's figures".into(),
                    ));
                }
                user.team
            }
            _ => team,
        };
        Ok(Self {
            caller: crate::sync::caller(state, user)?,
            team,
        })
    }

    fn team_uuid(&self) -> Option<uuid::Uuid> {
        self.team.map(|t| *t.as_uuid())
    }

    /// For devices and rejections: 2 the whole organisation, 1 one team.
    fn user_filter(&self) -> (i64, Option<uuid::Uuid>) {
        match (self.caller.actor.role, self.team) {
            (_, Some(t)) => (1, Some(*t.as_uuid())),
            (Role::Admin | Role::Server, None) => (2, None),
            // A manager without a team sees only themselves: no team matches.
            _ => (1, Some(uuid::Uuid::nil())),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DashboardQuery {
    /// First day, `YYYY-MM-DD` (UTC).
    from: Option<String>,
    /// Last day, included.
    to: Option<String>,
    /// An administrator may narrow to one team.
    team: Option<String>,
}

/// Parses the optional `team` parameter.
pub fn parse_team(team: Option<&str>) -> Result<Option<TeamId>, ApiError> {
    team.filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<TeamId>()
                .map_err(|_| ApiError::BadRequest(format!("team={t:?} is not a team id")))
        })
        .transpose()
}

/// `GET /v1/dashboard?from=YYYY-MM-DD&to=YYYY-MM-DD[&team=<id>]`.
#[utoipa::path(get, path = "/v1/dashboard", tag = "figures", security(("bearer" = [])),
    params(DashboardQuery),
    responses(
        (status = 200, description = "The team's figures and the fleet's sync health (definitions: docs/kpis.md)", body = Dashboard),
        (status = 400, description = "Missing or malformed range, or a range too long", body = crate::api_doc::ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = crate::api_doc::ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = crate::api_doc::ErrorBody),
    ))]
pub(crate) async fn serve_dashboard(
    State(state): State<Arc<AppState>>,
    user: AuthUser,
    Query(q): Query<DashboardQuery>,
) -> Result<Json<Dashboard>, ApiError> {
    let (Some(from), Some(to)) = (q.from.as_deref(), q.to.as_deref()) else {
        return Err(ApiError::BadRequest(
            "give the range as from=YYYY-MM-DD&to=YYYY-MM-DD".into(),
        ));
    };
    let range = DateRange::parse(from, to)?;
    let team = parse_team(q.team.as_deref())?;
    dashboard(&state, &user, range, team).await.map(Json)
}

/// The dashboard of `range` for `user` (a manager: their team; an
/// administrator: the organisation, or `team`).
pub async fn dashboard(
    state: &AppState,
    user: &AuthUser,
    range: DateRange,
    team: Option<TeamId>,
) -> Result<Dashboard, ApiError> {
    let scope = Scope::of(state, user, team)?;
    let now = now_secs();
    let (visits, orders, jobs) = load_rows(&state.db, &scope, range)
        .await
        .map_err(ApiError::Unavailable)?;
    let figures = kpis::compute(
        range.first_day,
        range.last_day,
        now.saturating_mul(1_000),
        &visits,
        &orders,
        &jobs,
    );
    let fleet = fleet(&state.db, &scope, range, now)
        .await
        .map_err(ApiError::Unavailable)?;
    Ok(Dashboard {
        from: range.from_text(),
        to: range.to_text(),
        time_zone: "UTC",
        team: scope.team,
        generated_at: now,
        figures,
        fleet,
    })
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
);

/// The fact rows of the range in scope: visits counting on a day of the
/// range, orders counting on one or linked to one of those visits, and the
/// jobs that can matter (not completed before the range, created before its end).
pub async fn load_rows(
    db: &Database,
    scope: &Scope,
    range: DateRange,
) -> Result<(Vec<kpis::VisitRow>, Vec<kpis::OrderRow>, Vec<kpis::JobRow>), DbError> {
    let p = scope.caller.principals();
    let org = *scope.caller.org.as_uuid();
    let team = scope.team_uuid();
    let (from, to) = (range.from_text(), range.to_text());
    let (from_ms, end_ms) = range.bounds_ms();
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
         f.sla_due_ms, f.first_time_fix FROM record_facts f \
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
            .bind(&from)
            .bind(&to)
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
            .bind(&from)
            .bind(&to)
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
            .map(|r| kpis::VisitRow {
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
            .map(|r| kpis::OrderRow {
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
            .map(|r| kpis::JobRow {
                id: r.0,
                status: text(r.1),
                created_ms: r.2,
                completed_ms: r.3,
                sla_due_ms: r.4,
                first_time_fix: r.5,
            })
            .collect(),
    ))
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

/// The fleet part of the dashboard.
async fn fleet(db: &Database, scope: &Scope, range: DateRange, now: i64) -> Result<Fleet, DbError> {
    let org = *scope.caller.org.as_uuid();
    let (mode, team) = scope.user_filter();
    let (from_ms, end_ms) = range.bounds_ms();
    let p = scope.caller.principals();
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
        .bind(team.map(uuid))
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
        .bind(team.map(uuid))
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
        .bind(scope.team_uuid().map(uuid))
        .fetch_one(pool)
        .await?;
        (rejected, open)
    });
    let devices: Vec<DeviceSyncHealth> = rows
        .into_iter()
        .map(|r| {
            let since = r.6.unwrap_or(r.5);
            let silent_for_secs = (now - since).max(0);
            DeviceSyncHealth {
                device_id: r.0,
                user_id: r.1,
                user_name: r.2,
                platform: r.3,
                app_version: r.11.unwrap_or(r.4),
                last_sync_at: r.6,
                silent_for_secs,
                silent: silent_for_secs > SILENT_AFTER_SECS,
                reported_at: r.7,
                unsynced_changes: r.8.unwrap_or(0),
                oldest_unsynced_ms: r.9,
                oldest_unsynced_age_secs: r.9.map(|ms| (now - ms.div_euclid(1_000)).max(0)),
                pending_attachment_bytes: r.10.unwrap_or(0),
            }
        })
        .collect();
    Ok(Fleet {
        silent_over_a_day: devices.iter().filter(|d| d.silent).count() as u64,
        devices,
        open_conflicts: u64::try_from(open_conflicts).unwrap_or(0),
        rejected_changes: u64::try_from(rejected).unwrap_or(0),
    })
}

/// Stamps the calling device's last sync and keeps the figures it reported
/// (when it did). Runs after each push and pull; a failure is logged, never
/// fails the sync.
pub async fn record_sync(state: &AppState, user: &AuthUser, health: Option<&DeviceHealth>) {
    if let Err(e) = write_sync(state, user, health).await {
        tracing::warn!(error = %e, device = %user.device, "could not record the device's sync health");
    }
}

async fn write_sync(
    state: &AppState,
    user: &AuthUser,
    health: Option<&DeviceHealth>,
) -> Result<(), DbError> {
    let now = now_secs();
    let device = *user.device.as_uuid();
    let org = *user.org.as_uuid();
    let who = *user.id.as_uuid();
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    // SQLite has one writer: wait for it here rather than in the busy handler.
    let _writer = state.gate.enter(&state.db).await;
    on_pool!(&state.db, |pool, uuid| {
        match health {
            Some(h) => {
                let version = h.app_version.as_deref().map(|v| {
                    v.chars()
                        .filter(|c| !c.is_control())
                        .take(MAX_APP_VERSION)
                        .collect::<String>()
                });
                sqlx::query(
                    "INSERT INTO device_health (device_id, org_id, user_id, last_sync_at, \
                     reported_at, unsynced_changes, oldest_unsynced_ms, pending_attachment_bytes, \
                     app_version) VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8) \
                     ON CONFLICT (device_id) DO UPDATE SET last_sync_at = excluded.last_sync_at, \
                     reported_at = excluded.reported_at, \
                     unsynced_changes = excluded.unsynced_changes, \
                     oldest_unsynced_ms = excluded.oldest_unsynced_ms, \
                     pending_attachment_bytes = excluded.pending_attachment_bytes, \
                     app_version = COALESCE(excluded.app_version, device_health.app_version)",
                )
                .bind(uuid(device))
                .bind(uuid(org))
                .bind(uuid(who))
                .bind(now)
                .bind(count(h.unsynced_changes))
                .bind(h.oldest_unsynced_ms)
                .bind(count(h.pending_attachment_bytes))
                .bind(version)
                .execute(pool)
                .await?;
            }
            None => {
                sqlx::query(
                    "INSERT INTO device_health (device_id, org_id, user_id, last_sync_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (device_id) \
                     DO UPDATE SET last_sync_at = excluded.last_sync_at",
                )
                .bind(uuid(device))
                .bind(uuid(org))
                .bind(uuid(who))
                .bind(now)
                .execute(pool)
                .await?;
            }
        }
    });
    Ok(())
}

/// Fills `record_facts` for records stored before it existed (or whose row
/// is missing), a page at a time. Runs at start; cheap when nothing is missing.
pub async fn backfill(db: &Database) -> Result<u64, DbError> {
    const PAGE: i64 = 500;
    let mut filled = 0u64;
    loop {
        type Row = (String, String, String, Vec<u8>);
        let rows: Vec<Row> = on_pool!(db, |pool, _uuid| {
            sqlx::query_as(
                "SELECT CAST(r.id AS TEXT), CAST(r.org_id AS TEXT), r.kind, r.doc FROM records r \
                 WHERE r.kind IN ('visit', 'order', 'service_job') \
                 AND NOT EXISTS (SELECT 1 FROM record_facts f WHERE f.record_id = r.id) \
                 ORDER BY r.id LIMIT $1",
            )
            .bind(PAGE)
            .fetch_all(pool)
            .await?
        });
        if rows.is_empty() {
            return Ok(filled);
        }
        let mut wrote = 0;
        for (id, org, kind, bytes) in rows {
            let (Ok(rid), Ok(kind)) = (
                id.parse::<fieldsync_core::RecordId>(),
                kind.parse::<fieldsync_core::model::RecordKind>(),
            ) else {
                continue;
            };
            let read = RecordDoc::load(&bytes).ok().and_then(|doc| {
                let projection = fieldsync_core::model::Projection::of(&doc).ok()?;
                Some((facts::facts_of(&doc).unwrap_or_default(), projection))
            });
            let (facts, projection) = read.unwrap_or_else(|| {
                tracing::warn!(record = %id, "a stored record does not read; it has no figures");
                // A row with no figures (counted nowhere), so it is not tried again.
                (
                    facts::Facts::default(),
                    fieldsync_core::model::Projection {
                        id: rid,
                        kind,
                        status: None,
                        owner: None,
                        team: None,
                        territory: None,
                        account_id: None,
                        parent_id: None,
                        start_ms: None,
                        deleted: true,
                    },
                )
            });
            let org = crate::db::parse_uuid(&org)?;
            on_pool!(db, |pool, uuid| {
                let mut conn = pool.acquire().await?;
                crate::write_facts!(@missing &mut *conn, uuid, org, &projection, &facts);
            });
            wrote += 1;
        }
        filled += wrote;
        if wrote == 0 {
            return Ok(filled);
        }
    }
}

/// Upserts one record's row of `record_facts` on an executor (a transaction
/// inside a push, a connection in [`backfill`]). A macro so one text serves
/// both dialects' executors, like [`on_pool!`](crate::on_pool).
#[macro_export]
macro_rules! write_facts {
    // A row only where there is none (filling in: a concurrent push's row is newer).
    (@missing $exec:expr, $uuid:ident, $org:expr, $projection:expr, $facts:expr) => {
        $crate::write_facts!(@sql $exec, $uuid, $org, $projection, $facts,
            "ON CONFLICT (record_id) DO NOTHING")
    };
    (@sql $exec:expr, $uuid:ident, $org:expr, $projection:expr, $facts:expr, $tail:literal) => {{
        let p: &fieldsync_core::model::Projection = $projection;
        let f: &$crate::analytics::facts::Facts = $facts;
        let opt_uuid = |s: Option<&str>| s.and_then(|s| uuid::Uuid::parse_str(s).ok());
        sqlx::query(concat!(
            "INSERT INTO record_facts (record_id, org_id, kind, owner_id, team_id, status, \
             deleted, day, account_id, visit_id, planned, planned_start_ms, check_in_ms, \
             check_out_ms, check_in_verdict, outcome, currency, net_minor, total_minor, \
             created_ms, completed_ms, sla_due_ms, window_end_ms, first_time_fix) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
             $17, $18, $19, $20, $21, $22, $23, $24) ",
            $tail
        ))
        .bind($uuid(*p.id.as_uuid()))
        .bind($uuid($org))
        .bind(p.kind.as_str())
        .bind(p.owner.map(|o| $uuid(*o.as_uuid())))
        .bind(opt_uuid(p.team.as_deref()).map($uuid))
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
        .execute($exec)
        .await?;
    }};
    ($exec:expr, $uuid:ident, $org:expr, $projection:expr, $facts:expr) => {
        $crate::write_facts!(@sql $exec, $uuid, $org, $projection, $facts,
            "ON CONFLICT (record_id) DO UPDATE SET owner_id = excluded.owner_id, \
             team_id = excluded.team_id, status = excluded.status, deleted = excluded.deleted, \
             day = excluded.day, account_id = excluded.account_id, \
             visit_id = excluded.visit_id, planned = excluded.planned, \
             planned_start_ms = excluded.planned_start_ms, check_in_ms = excluded.check_in_ms, \
             check_out_ms = excluded.check_out_ms, \
             check_in_verdict = excluded.check_in_verdict, outcome = excluded.outcome, \
             currency = excluded.currency, net_minor = excluded.net_minor, \
             total_minor = excluded.total_minor, created_ms = excluded.created_ms, \
             completed_ms = excluded.completed_ms, sla_due_ms = excluded.sla_due_ms, \
             window_end_ms = excluded.window_end_ms, first_time_fix = excluded.first_time_fix")
    };
}
