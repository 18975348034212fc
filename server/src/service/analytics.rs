//! The managers' figures and the fleet's sync health ([`dashboard`]), the
//! sync stamp every push and pull leaves ([`record_sync`]), and the filling
//! of figures for records stored before they were kept ([`backfill`]).
//!
//! **Where the numbers come from.** Every push that stores a visit, an order
//! or a service job rewrites the record's row of `record_facts` in the same
//! transaction (`domain::figures::facts::facts_of`): the dashboard reads those
//! rows (indexed by organisation, kind and day) and never opens a document.
//! Rows for records stored before the table existed are filled at start.
//! Every sync request stamps the device's row of `device_health` with the
//! server time and the figures the device reported.
//!
//! **Scope** ([`Scope::of`]). Like the review inbox: a manager sees the
//! records their team's principal reads (their team's, and their own), an
//! administrator the whole organisation, optionally narrowed to one team.
//! Devices and rejected changes follow the users' teams.
//!
//! **Time.** Days are UTC days (`YYYY-MM-DD`, [`DateRange`]); the
//! organisation's own time zone is not modelled yet. Figures use device times
//! (DOMAIN.md); the fleet's last sync uses the server's clock. `docs/kpis.md`
//! defines every figure.

use fieldsync_core::TeamId;
use fieldsync_core::model::{Projection, RecordDoc, RecordKind, Role};
use fieldsync_core::protocol::DeviceHealth;
use serde::Serialize;

use super::Context;
use crate::db::facts::{self as db_facts, Days, DeviceHealthRow, HealthReport, Members};
use crate::db::{Database, now_secs};
use crate::domain::figures::facts::{self, Facts};
use crate::domain::figures::{Figures, dates, kpis};
use crate::domain::{Caller, Error, Result};

/// Longest range a dashboard or an export covers, in days.
pub const MAX_RANGE_DAYS: i64 = 366;
/// A device is silent once its last sync is older than this (seconds).
pub const SILENT_AFTER_SECS: i64 = 86_400;
/// Longest app version kept from a device's report.
const MAX_APP_VERSION: usize = 64;
/// Records filled per page by [`backfill`].
const BACKFILL_PAGE: i64 = 500;

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
    pub fn parse(from: &str, to: &str) -> Result<Self> {
        let day = |name: &str, text: &str| {
            dates::parse_day(text).ok_or_else(|| {
                Error::BadRequest(format!(
                    "{name}={:?} is not a date; use YYYY-MM-DD",
                    text.chars().take(32).collect::<String>()
                ))
            })
        };
        let (first_day, last_day) = (day("from", from)?, day("to", to)?);
        if last_day < first_day {
            return Err(Error::BadRequest(
                "`to` is before `from`; give the earlier date first".into(),
            ));
        }
        if last_day - first_day >= MAX_RANGE_DAYS {
            return Err(Error::BadRequest(format!(
                "a range covers at most {MAX_RANGE_DAYS} days"
            )));
        }
        Ok(Self {
            first_day,
            last_day,
        })
    }

    /// The range of a query string's `from` and `to`, both required.
    pub fn required(from: Option<&str>, to: Option<&str>) -> Result<Self> {
        let (Some(from), Some(to)) = (from, to) else {
            return Err(Error::BadRequest(
                "give the range as from=YYYY-MM-DD&to=YYYY-MM-DD".into(),
            ));
        };
        Self::parse(from, to)
    }

    /// The range of `from` and `to` where each may be left out: `to` defaults
    /// to today (UTC), `from` to `days` days ending on `to`.
    pub fn or_recent(from: Option<&str>, to: Option<&str>, days: i64) -> Result<Self> {
        let today = now_secs().div_euclid(86_400);
        let to = to.map_or_else(|| dates::format_day(today), str::to_owned);
        let from = match from {
            Some(f) => f.to_owned(),
            None => {
                let last = dates::parse_day(&to).unwrap_or(today);
                dates::format_day(last - (days - 1))
            }
        };
        Self::parse(&from, &to)
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

    /// The range as the fact queries take it.
    pub fn days(&self) -> Days {
        let (from_ms, end_ms) = self.bounds_ms();
        Days {
            from: self.from_text(),
            to: self.to_text(),
            from_ms,
            end_ms,
        }
    }
}

/// Parses the optional `team` parameter (empty: none).
pub fn parse_team(team: Option<&str>) -> Result<Option<TeamId>> {
    team.filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<TeamId>()
                .map_err(|_| Error::BadRequest(format!("team={t:?} is not a team id")))
        })
        .transpose()
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

impl DeviceSyncHealth {
    /// The health of a device's row as of `now` (server time, Unix seconds).
    pub fn of(r: DeviceHealthRow, now: i64) -> Self {
        let since = r.last_sync_at.unwrap_or(r.created_at);
        let silent_for_secs = (now - since).max(0);
        DeviceSyncHealth {
            device_id: r.device_id,
            user_id: r.user_id,
            user_name: r.user_name,
            platform: r.platform,
            app_version: r.reported_app_version.unwrap_or(r.login_app_version),
            last_sync_at: r.last_sync_at,
            silent_for_secs,
            silent: silent_for_secs > SILENT_AFTER_SECS,
            reported_at: r.reported_at,
            unsynced_changes: r.unsynced_changes.unwrap_or(0),
            oldest_unsynced_ms: r.oldest_unsynced_ms,
            oldest_unsynced_age_secs: r
                .oldest_unsynced_ms
                .map(|ms| (now - ms.div_euclid(1_000)).max(0)),
            pending_attachment_bytes: r.pending_attachment_bytes.unwrap_or(0),
        }
    }
}

/// Whose figures: the caller's scope, narrowed to a team when asked.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The caller (principals for record scope).
    pub caller: Caller,
    /// Only this team's records, devices and rejections.
    pub team: Option<TeamId>,
}

impl Scope {
    /// The scope of `caller` narrowed to `team`: managers and administrators
    /// only; a manager may narrow only to their own team (and is narrowed to it
    /// anyway).
    pub fn of(caller: &Caller, team: Option<TeamId>) -> Result<Self> {
        if !caller.is_back_office() {
            return Err(Error::Forbidden(
                "team figures are for managers and administrators".into(),
            ));
        }
        let team = match caller.role() {
            Role::Manager => {
                if team.is_some() && team != caller.team {
                    return Err(Error::Forbidden(
                        "a manager sees their own team's figures".into(),
                    ));
                }
                caller.team
            }
            _ => team,
        };
        Ok(Self {
            caller: caller.clone(),
            team,
        })
    }

    /// Whose devices and rejections: one team's when narrowed, else the
    /// organisation's for an administrator; a manager without a team sees
    /// only themselves, so no team matches.
    pub fn members(&self) -> Members {
        match (self.caller.role(), self.team) {
            (_, Some(t)) => Members::Team(*t.as_uuid()),
            (Role::Admin | Role::Server, None) => Members::Organisation,
            _ => Members::Team(uuid::Uuid::nil()),
        }
    }
}

/// The dashboard of `range` for `caller` (a manager: their team; an
/// administrator: the organisation, or `team`).
pub async fn dashboard(
    ctx: &Context,
    caller: &Caller,
    range: DateRange,
    team: Option<TeamId>,
) -> Result<Dashboard> {
    let scope = Scope::of(caller, team)?;
    let now = now_secs();
    let days = range.days();
    let (visits, orders, jobs) =
        db_facts::load_rows(&ctx.db, &scope.caller, scope.team, &days).await?;
    let figures = kpis::compute(
        range.first_day,
        range.last_day,
        now.saturating_mul(1_000),
        &visits,
        &orders,
        &jobs,
    );
    let rows = db_facts::fleet(&ctx.db, &scope.caller, scope.team, scope.members(), &days).await?;
    let devices: Vec<DeviceSyncHealth> = rows
        .devices
        .into_iter()
        .map(|r| DeviceSyncHealth::of(r, now))
        .collect();
    let fleet = Fleet {
        silent_over_a_day: devices.iter().filter(|d| d.silent).count() as u64,
        devices,
        open_conflicts: u64::try_from(rows.open_conflicts).unwrap_or(0),
        rejected_changes: u64::try_from(rows.rejected).unwrap_or(0),
    };
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

/// The figures of a device's report as they are kept: counts capped to the
/// column's range, the app version without control characters and at most
/// [`MAX_APP_VERSION`] characters.
pub(crate) fn health_report(h: &DeviceHealth) -> HealthReport {
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    HealthReport {
        unsynced_changes: count(h.unsynced_changes),
        oldest_unsynced_ms: h.oldest_unsynced_ms,
        pending_attachment_bytes: count(h.pending_attachment_bytes),
        app_version: h.app_version.as_deref().map(|v| {
            v.chars()
                .filter(|c| !c.is_control())
                .take(MAX_APP_VERSION)
                .collect()
        }),
    }
}

/// Stamps the calling device's last sync and keeps the figures it reported
/// (when it did). Runs after each pull; a device's push stamps it in the
/// push's own transaction (`service::write`). A failure is logged, never
/// fails the sync. A caller without a device (the server writing on someone's
/// behalf) has nothing to stamp.
pub async fn record_sync(ctx: &Context, caller: &Caller, health: Option<&DeviceHealth>) {
    let Some(device) = caller.device() else {
        return;
    };
    let report = health.map(health_report);
    // SQLite has one writer: wait for it here rather than in the busy handler.
    let written = {
        let _writer = ctx.gate.enter(&ctx.db).await;
        db_facts::write_sync(&ctx.db, caller, device, now_secs(), report.as_ref()).await
    };
    if let Err(e) = written {
        tracing::warn!(error = %e, device = %device, "could not record the device's sync health");
    }
}

/// The fact row of a stored record and its projection; a record that does not
/// read gets an empty, deleted row (counted nowhere), so it is not tried again.
fn facts_of_stored(id: &str, kind: RecordKind, bytes: &[u8]) -> Option<(Facts, Projection)> {
    let rid = id.parse::<fieldsync_core::RecordId>().ok()?;
    let read = RecordDoc::load(bytes).ok().and_then(|doc| {
        let projection = Projection::of(&doc).ok()?;
        Some((facts::facts_of(&doc).unwrap_or_default(), projection))
    });
    Some(read.unwrap_or_else(|| {
        tracing::warn!(record = %id, "a stored record does not read; it has no figures");
        (
            Facts::default(),
            Projection {
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
    }))
}

/// Fills `record_facts` for records stored before it existed (or whose row
/// is missing), a page at a time. Runs at start; cheap when nothing is missing.
pub async fn backfill(db: &Database) -> Result<u64> {
    let mut filled = 0u64;
    loop {
        let rows = db_facts::missing_facts(db, BACKFILL_PAGE).await?;
        if rows.is_empty() {
            return Ok(filled);
        }
        let mut wrote = 0;
        for row in rows {
            let Ok(kind) = row.kind.parse::<RecordKind>() else {
                continue;
            };
            let Some((facts, projection)) = facts_of_stored(&row.id, kind, &row.doc) else {
                continue;
            };
            db_facts::write_missing(db, row.org, &projection, &facts).await?;
            wrote += 1;
        }
        filled += wrote;
        if wrote == 0 {
            return Ok(filled);
        }
    }
}

#[cfg(test)]
mod tests {
    use fieldsync_core::model::Actor;
    use fieldsync_core::{DeviceId, OrgId, UserId};

    use super::*;

    fn caller(role: Role, team: Option<TeamId>) -> Caller {
        Caller {
            actor: Actor::on_device(UserId::new(), role, DeviceId::new()),
            org: OrgId::new(),
            team,
            territory: None,
            display_name: "Ana".into(),
            actor_id: automerge::ActorId::random(),
            window: None,
        }
    }

    #[test]
    fn a_range_is_whole_days_in_order_and_at_most_a_year() {
        let r = DateRange::parse("2026-11-01", "2026-11-30").expect("valid");
        assert_eq!(r.last_day - r.first_day, 29);
        assert_eq!(
            (r.from_text(), r.to_text()),
            ("2026-11-01".into(), "2026-11-30".into())
        );
        let (from, end) = r.bounds_ms();
        assert_eq!(end - from, 30 * dates::DAY_MS);
        for (from, to, says) in [
            ("2026-11-30", "2026-11-01", "before"),
            ("2026-02-31", "2026-03-01", "not a date"),
            ("2025-01-01", "2026-01-02", "at most 366 days"),
        ] {
            let e = DateRange::parse(from, to).expect_err(says);
            assert!(e.to_string().contains(says), "{e}");
        }
        assert!(DateRange::required(Some("2026-11-01"), None).is_err());
        let recent = DateRange::or_recent(None, Some("2026-11-30"), 7).expect("valid");
        assert_eq!(recent.from_text(), "2026-11-24");
    }

    #[test]
    fn a_manager_sees_only_their_own_team() {
        let team = TeamId::new();
        let manager = caller(Role::Manager, Some(team));
        assert_eq!(Scope::of(&manager, None).expect("own").team, Some(team));
        assert_eq!(
            Scope::of(&manager, Some(team)).expect("own").team,
            Some(team)
        );
        let other = Scope::of(&manager, Some(TeamId::new())).expect_err("another team");
        assert_eq!(other.code(), "forbidden");
        assert!(Scope::of(&caller(Role::Rep, Some(team)), None).is_err());
        let admin = caller(Role::Admin, None);
        assert_eq!(
            Scope::of(&admin, None).expect("org").members(),
            Members::Organisation
        );
        assert_eq!(
            Scope::of(&admin, Some(team)).expect("team").members(),
            Members::Team(*team.as_uuid())
        );
        let alone = caller(Role::Manager, None);
        assert_eq!(
            Scope::of(&alone, None).expect("alone").members(),
            Members::Team(uuid::Uuid::nil()),
            "a manager without a team matches no team"
        );
    }

    #[test]
    fn a_reported_app_version_is_cleaned_and_bounded() {
        let h = DeviceHealth {
            unsynced_changes: u64::MAX,
            oldest_unsynced_ms: Some(5),
            pending_attachment_bytes: 10,
            app_version: Some(format!("1.2\n{}", "9".repeat(100))),
        };
        let r = health_report(&h);
        assert_eq!(r.unsynced_changes, i64::MAX);
        let v = r.app_version.expect("kept");
        assert!(
            v.starts_with("1.29") && v.chars().count() == MAX_APP_VERSION,
            "{v}"
        );
    }

    #[test]
    fn a_device_is_silent_after_a_day_without_sync() {
        let row = |last: Option<i64>| DeviceHealthRow {
            device_id: "d".into(),
            user_id: "u".into(),
            user_name: "Ana".into(),
            platform: "android".into(),
            login_app_version: "1.0".into(),
            created_at: 0,
            last_sync_at: last,
            reported_at: None,
            unsynced_changes: None,
            oldest_unsynced_ms: Some(1_000),
            pending_attachment_bytes: None,
            reported_app_version: Some("1.1".into()),
        };
        let now = SILENT_AFTER_SECS + 10;
        let never = DeviceSyncHealth::of(row(None), now);
        assert!(never.silent);
        assert_eq!(never.silent_for_secs, now);
        assert_eq!(never.app_version, "1.1");
        assert_eq!(never.oldest_unsynced_age_secs, Some(now - 1));
        let recent = DeviceSyncHealth::of(row(Some(now - 60)), now);
        assert!(!recent.silent);
    }
}
