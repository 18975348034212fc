//! The rows behind the administration of people, on either database: the
//! people list with their team, territory and last activity, changes of a
//! user's role, team and territory (with the log position that tells their
//! devices, see [`change_user`]), passwords, ending a user's sessions, teams
//! and territories, the devices list with their sync health, and the admin log.
//!
//! Invariants kept here:
//! - team and territory names are unique per organisation (a taken name fails
//!   with a unique violation, [`DbError::unique_violation`]);
//! - a change of a user's read scope is stored with a fresh log position in
//!   the same transaction as the user's new role, team or territory: a row of
//!   `change_log` that belongs to no record (the feed joins `records`, so no
//!   device ever receives it) taken under the organisation's log order (the
//!   advisory lock on PostgreSQL, `BEGIN IMMEDIATE` on SQLite), so every
//!   cursor handed out before the change is below it;
//! - the admin log never holds a password.
//!
//! The rules are `domain::people`'s; the use cases `service::people`'s.

use fieldsync_core::model::Role;
use fieldsync_core::{DeviceId, OrgId, TeamId, TerritoryId, UserId};
use serde::Serialize;
use uuid::Uuid;

use super::{Database, DbError, now_secs, parse_uuid};
use crate::on_pool;

/// A user as the people list shows them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PersonRow {
    /// User id.
    #[schema(value_type = uuid::Uuid)]
    pub id: UserId,
    /// Login email.
    pub email: String,
    /// Name to show.
    pub display_name: String,
    /// `rep`, `technician`, `manager` or `admin`.
    #[schema(value_type = String)]
    pub role: Role,
    /// Their team.
    #[schema(value_type = Option<uuid::Uuid>)]
    pub team_id: Option<TeamId>,
    /// The team's name.
    pub team_name: Option<String>,
    /// Their territory.
    #[schema(value_type = Option<uuid::Uuid>)]
    pub territory_id: Option<TerritoryId>,
    /// The territory's name.
    pub territory_name: Option<String>,
    /// Whether the account is disabled.
    pub disabled: bool,
    /// Last request of any of their devices or browser sessions (Unix
    /// seconds, to the minute); `None`: never signed in.
    pub last_active_at: Option<i64>,
}

type PersonTuple = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    bool,
    Option<i64>,
);

fn opt_id(text: Option<String>) -> Result<Option<Uuid>, DbError> {
    text.map(|t| parse_uuid(&t)).transpose()
}

fn role_of(text: &str) -> Result<Role, DbError> {
    text.parse()
        .map_err(|_| DbError::Corrupt(format!("unknown role {text:?}")))
}

/// The users of `org` (of `team` only, when given), by name.
pub async fn list_users(
    db: &Database,
    org: OrgId,
    team: Option<TeamId>,
) -> Result<Vec<PersonRow>, DbError> {
    let rows: Vec<PersonTuple> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT CAST(u.id AS TEXT), u.email, u.display_name, u.role, \
             CAST(u.team_id AS TEXT), t.name, CAST(u.territory_id AS TEXT), r.name, u.disabled, \
             (SELECT MAX(d.last_seen_at) FROM devices d WHERE d.user_id = u.id) \
             FROM users u LEFT JOIN teams t ON t.id = u.team_id \
             LEFT JOIN territories r ON r.id = u.territory_id \
             WHERE u.org_id = $1 AND ($2 IS NULL OR u.team_id = $2) \
             ORDER BY u.display_name, u.email",
        )
        .bind(uuid(*org.as_uuid()))
        .bind(team.map(|t| uuid(*t.as_uuid())))
        .fetch_all(pool)
        .await?
    });
    rows.into_iter()
        .map(|r| {
            Ok(PersonRow {
                id: UserId::from_uuid(parse_uuid(&r.0)?),
                email: r.1,
                display_name: r.2,
                role: role_of(&r.3)?,
                team_id: opt_id(r.4)?.map(TeamId::from_uuid),
                team_name: r.5,
                territory_id: opt_id(r.6)?.map(TerritoryId::from_uuid),
                territory_name: r.7,
                disabled: r.8,
                last_active_at: r.9,
            })
        })
        .collect()
}

/// How many active (not disabled) administrators `org` has.
pub async fn active_admins(db: &Database, org: OrgId) -> Result<i64, DbError> {
    Ok(on_pool!(db, |pool, uuid| {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM users WHERE org_id = $1 AND role = 'admin' AND disabled = $2",
        )
        .bind(uuid(*org.as_uuid()))
        .bind(false)
        .fetch_one(pool)
        .await?
    }))
}

/// A user's new role, team and territory.
#[derive(Debug, Clone)]
pub struct UserChange {
    /// The user.
    pub user: UserId,
    /// Their organisation.
    pub org: OrgId,
    /// New role.
    pub role: Role,
    /// New team.
    pub team: Option<TeamId>,
    /// New territory.
    pub territory: Option<TerritoryId>,
    /// The principals they read through before, when this changes them
    /// (`None`: the read scope stays the same).
    pub scope: Option<(Vec<String>, Vec<String>)>,
}

/// Stores a user's new role, team and territory and, when their read scope
/// changes, a `scope_changes` row at a fresh log position (see the module's
/// invariants). On SQLite the caller holds the write gate. Answers the log
/// position of the scope change, if there was one.
pub async fn change_user(db: &Database, change: &UserChange) -> Result<Option<i64>, DbError> {
    let pg = matches!(db, Database::Postgres(_));
    let now = now_secs();
    let seq = on_pool!(db, |pool, uuid| {
        let mut tx = if pg {
            pool.begin().await?
        } else {
            pool.begin_with("BEGIN IMMEDIATE").await?
        };
        sqlx::query("UPDATE users SET role = $1, team_id = $2, territory_id = $3 WHERE id = $4")
            .bind(change.role.as_str())
            .bind(change.team.map(|t| uuid(*t.as_uuid())))
            .bind(change.territory.map(|t| uuid(*t.as_uuid())))
            .bind(uuid(*change.user.as_uuid()))
            .execute(&mut *tx)
            .await?;
        let mut seq = None;
        if let Some((before, after)) = &change.scope {
            if pg {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(super::records::org_lock_key(change.org))
                    .execute(&mut *tx)
                    .await?;
            }
            let mut hash = [0u8; 32];
            rand::fill(&mut hash[..]);
            let at: i64 = sqlx::query_scalar(
                "INSERT INTO change_log (org_id, record_id, hash, change, user_id, device_id, \
                 committed_at) VALUES ($1, $2, $3, $4, NULL, NULL, $5) RETURNING seq",
            )
            .bind(uuid(*change.org.as_uuid()))
            .bind(uuid(Uuid::now_v7()))
            .bind(hash.to_vec())
            .bind(Vec::<u8>::new())
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO scope_changes (seq, user_id, before, after) VALUES ($1, $2, $3, $4)",
            )
            .bind(at)
            .bind(uuid(*change.user.as_uuid()))
            .bind(before.join(" "))
            .bind(after.join(" "))
            .execute(&mut *tx)
            .await?;
            seq = Some(at);
        }
        tx.commit().await?;
        seq
    });
    Ok(seq)
}

/// Stores a new password hash for `user`.
pub async fn set_password(db: &Database, user: UserId, hash: &str) -> Result<(), DbError> {
    on_pool!(db, |pool, uuid| {
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash)
            .bind(uuid(*user.as_uuid()))
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// Ends every session of `user`: their refresh tokens are revoked and their
/// browser sessions ended (their devices stay registered and keep their
/// data; their access tokens die at their next use when the account is
/// disabled, or at their expiry). Answers how many tokens and sessions ended.
pub async fn end_sessions(db: &Database, user: UserId) -> Result<(u64, u64), DbError> {
    let now = now_secs();
    Ok(on_pool!(db, |pool, uuid| {
        let mut tx = pool.begin().await?;
        let tokens = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(uuid(*user.as_uuid()))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let sessions = sqlx::query(
            "UPDATE web_sessions SET ended_at = $1 WHERE user_id = $2 AND ended_at IS NULL",
        )
        .bind(now)
        .bind(uuid(*user.as_uuid()))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        (tokens, sessions)
    }))
}

/// A team as listed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TeamRow {
    /// Team id.
    #[schema(value_type = uuid::Uuid)]
    pub id: TeamId,
    /// Its name.
    pub name: String,
    /// Its manager, if one is named and still manages it (an active
    /// administrator, or an active manager still in the team).
    #[schema(value_type = Option<uuid::Uuid>)]
    pub manager_id: Option<UserId>,
    /// The manager's name.
    pub manager_name: Option<String>,
    /// How many users are in it.
    pub members: i64,
}

/// id, name, manager id, manager name, members.
type TeamTuple = (String, String, Option<String>, Option<String>, i64);

/// The teams of `org`, by name.
pub async fn list_teams(db: &Database, org: OrgId) -> Result<Vec<TeamRow>, DbError> {
    let rows: Vec<TeamTuple> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT CAST(t.id AS TEXT), t.name, CAST(m.id AS TEXT), m.display_name, \
             (SELECT COUNT(*) FROM users u WHERE u.team_id = t.id) \
             FROM teams t LEFT JOIN users m ON m.id = t.manager_id AND m.disabled = $2 \
             AND (m.role = 'admin' OR (m.role = 'manager' AND m.team_id = t.id)) \
             WHERE t.org_id = $1 ORDER BY t.name",
        )
        .bind(uuid(*org.as_uuid()))
        .bind(false)
        .fetch_all(pool)
        .await?
    });
    rows.into_iter()
        .map(|r| {
            Ok(TeamRow {
                id: TeamId::from_uuid(parse_uuid(&r.0)?),
                name: r.1,
                manager_id: opt_id(r.2)?.map(UserId::from_uuid),
                manager_name: r.3,
                members: r.4,
            })
        })
        .collect()
}

/// A territory as listed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TerritoryRow {
    /// Territory id.
    #[schema(value_type = uuid::Uuid)]
    pub id: TerritoryId,
    /// Its name.
    pub name: String,
    /// How many users work in it.
    pub members: i64,
}

/// The territories of `org`, by name.
pub async fn list_territories(db: &Database, org: OrgId) -> Result<Vec<TerritoryRow>, DbError> {
    let rows: Vec<(String, String, i64)> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT CAST(t.id AS TEXT), t.name, \
             (SELECT COUNT(*) FROM users u WHERE u.territory_id = t.id) \
             FROM territories t WHERE t.org_id = $1 ORDER BY t.name",
        )
        .bind(uuid(*org.as_uuid()))
        .fetch_all(pool)
        .await?
    });
    rows.into_iter()
        .map(|r| {
            Ok(TerritoryRow {
                id: TerritoryId::from_uuid(parse_uuid(&r.0)?),
                name: r.1,
                members: r.2,
            })
        })
        .collect()
}

/// Which of the two named tables: teams or territories. Never input.
#[derive(Debug, Clone, Copy)]
pub enum Named {
    /// `teams`.
    Team,
    /// `territories`.
    Territory,
}

impl Named {
    fn table(self) -> &'static str {
        match self {
            Named::Team => "teams",
            Named::Territory => "territories",
        }
    }
}

/// Inserts a team or territory called `name` (trimmed by the caller). A
/// taken name fails with a unique violation.
pub async fn insert_named(
    db: &Database,
    what: Named,
    org: OrgId,
    name: &str,
) -> Result<Uuid, DbError> {
    let id = Uuid::now_v7();
    let sql = format!(
        "INSERT INTO {} (id, org_id, name, created_at) VALUES ($1, $2, $3, $4)",
        what.table()
    );
    let result = on_pool!(db, |pool, uuid| {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(uuid(id))
            .bind(uuid(*org.as_uuid()))
            .bind(name)
            .bind(now_secs())
            .execute(pool)
            .await
            .map(|_| ())
    });
    result?;
    Ok(id)
}

/// Renames a team or territory of `org`. A taken name fails with a unique
/// violation. Answers whether it exists.
pub async fn rename_named(
    db: &Database,
    what: Named,
    org: OrgId,
    id: Uuid,
    name: &str,
) -> Result<bool, DbError> {
    let sql = format!(
        "UPDATE {} SET name = $1 WHERE id = $2 AND org_id = $3",
        what.table()
    );
    let n = on_pool!(db, |pool, uuid| {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .bind(uuid(id))
            .bind(uuid(*org.as_uuid()))
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
    });
    Ok(n? == 1)
}

/// The name of team or territory `id` of `org`.
pub async fn name_of(
    db: &Database,
    what: Named,
    org: OrgId,
    id: Uuid,
) -> Result<Option<String>, DbError> {
    let sql = format!(
        "SELECT name FROM {} WHERE id = $1 AND org_id = $2",
        what.table()
    );
    Ok(on_pool!(db, |pool, uuid| {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(uuid(id))
            .bind(uuid(*org.as_uuid()))
            .fetch_optional(pool)
            .await?
    }))
}

/// The id of the team or territory of `org` called `name`.
pub async fn id_named(
    db: &Database,
    what: Named,
    org: OrgId,
    name: &str,
) -> Result<Option<Uuid>, DbError> {
    let sql = format!(
        "SELECT CAST(id AS TEXT) FROM {} WHERE org_id = $1 AND name = $2",
        what.table()
    );
    let id: Option<String> = on_pool!(db, |pool, uuid| {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(uuid(*org.as_uuid()))
            .bind(name)
            .fetch_optional(pool)
            .await?
    });
    id.map(|i| parse_uuid(&i)).transpose()
}

/// Names `manager` the manager of `team`.
pub async fn set_team_manager(
    db: &Database,
    team: TeamId,
    manager: Option<UserId>,
) -> Result<(), DbError> {
    on_pool!(db, |pool, uuid| {
        sqlx::query("UPDATE teams SET manager_id = $1 WHERE id = $2")
            .bind(manager.map(|m| uuid(*m.as_uuid())))
            .bind(uuid(*team.as_uuid()))
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// A device as the Devices page lists it: its user, what it runs, its last
/// sync and the backlog it reported with it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeviceRow {
    /// Device id.
    #[schema(value_type = uuid::Uuid)]
    pub id: DeviceId,
    /// Its user.
    #[schema(value_type = uuid::Uuid)]
    pub user_id: UserId,
    /// The user's name.
    pub user_name: String,
    /// The user's role.
    #[schema(value_type = String)]
    pub user_role: Role,
    /// The user's team.
    #[schema(value_type = Option<uuid::Uuid>)]
    pub team_id: Option<TeamId>,
    /// `android`, `ios`, `web` (a browser session), ...
    pub platform: String,
    /// App version: as reported with the last sync, else as given at login.
    pub app_version: String,
    /// First login (Unix seconds).
    pub created_at: i64,
    /// Last request (Unix seconds, to the minute).
    pub last_seen_at: i64,
    /// Last sync (push or pull), Unix seconds; `None`: never synced.
    pub last_sync_at: Option<i64>,
    /// Changes on the device the server has not acknowledged, as reported.
    pub pending_changes: i64,
    /// Device time of the oldest of them (ms since the epoch).
    pub oldest_unsynced_ms: Option<i64>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
}

type DeviceTuple = (
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<i64>,
);

/// The devices of `org` (of `team`'s users only, when given), browser
/// sessions included, last seen first.
pub async fn list_devices(
    db: &Database,
    org: OrgId,
    team: Option<TeamId>,
) -> Result<Vec<DeviceRow>, DbError> {
    let rows: Vec<DeviceTuple> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT CAST(d.id AS TEXT), CAST(d.user_id AS TEXT), u.display_name, u.role, \
             CAST(u.team_id AS TEXT), d.platform, d.app_version, d.created_at, d.last_seen_at, \
             h.last_sync_at, h.unsynced_changes, h.oldest_unsynced_ms, h.app_version, \
             d.revoked_at \
             FROM devices d JOIN users u ON u.id = d.user_id \
             LEFT JOIN device_health h ON h.device_id = d.id \
             WHERE d.org_id = $1 AND ($2 IS NULL OR u.team_id = $2) \
             ORDER BY d.last_seen_at DESC, d.id",
        )
        .bind(uuid(*org.as_uuid()))
        .bind(team.map(|t| uuid(*t.as_uuid())))
        .fetch_all(pool)
        .await?
    });
    rows.into_iter()
        .map(|r| {
            Ok(DeviceRow {
                id: DeviceId::from_uuid(parse_uuid(&r.0)?),
                user_id: UserId::from_uuid(parse_uuid(&r.1)?),
                user_name: r.2,
                user_role: role_of(&r.3)?,
                team_id: opt_id(r.4)?.map(TeamId::from_uuid),
                platform: r.5,
                app_version: r.12.unwrap_or(r.6),
                created_at: r.7,
                last_seen_at: r.8,
                last_sync_at: r.9,
                pending_changes: r.10.unwrap_or(0),
                oldest_unsynced_ms: r.11,
                revoked_at: r.13,
            })
        })
        .collect()
}

/// One entry of the admin log.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AdminEntry {
    /// When (Unix seconds).
    pub at: i64,
    /// Who: a user id, or the server's for the command line.
    pub actor_id: String,
    /// Their name.
    pub actor_name: String,
    /// What: `user.add`, `user.disable`, `team.rename`, `device.revoke`, ...
    pub action: String,
    /// `user`, `team`, `territory` or `device`.
    pub subject_kind: String,
    /// On what (its id).
    pub subject_id: String,
    /// Its name (a user's email, a team's name, a device's user and platform).
    pub subject_name: String,
    /// What changed, in words (never a password).
    pub detail: String,
}

/// Appends an entry to `org`'s admin log.
pub async fn log_admin(db: &Database, org: OrgId, entry: &AdminEntry) -> Result<(), DbError> {
    on_pool!(db, |pool, uuid| {
        sqlx::query(
            "INSERT INTO admin_log (id, org_id, at, actor_id, actor_name, action, subject_kind, \
             subject_id, subject_name, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(uuid(Uuid::now_v7()))
        .bind(uuid(*org.as_uuid()))
        .bind(entry.at)
        .bind(&entry.actor_id)
        .bind(&entry.actor_name)
        .bind(&entry.action)
        .bind(&entry.subject_kind)
        .bind(&entry.subject_id)
        .bind(&entry.subject_name)
        .bind(&entry.detail)
        .execute(pool)
        .await?;
    });
    Ok(())
}

type AdminTuple = (i64, String, String, String, String, String, String, String);

/// The newest `limit` entries of `org`'s admin log, newest first.
pub async fn admin_log(db: &Database, org: OrgId, limit: i64) -> Result<Vec<AdminEntry>, DbError> {
    let rows: Vec<AdminTuple> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT at, actor_id, actor_name, action, subject_kind, subject_id, subject_name, \
             detail FROM admin_log WHERE org_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(uuid(*org.as_uuid()))
        .bind(limit)
        .fetch_all(pool)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(|r| AdminEntry {
            at: r.0,
            actor_id: r.1,
            actor_name: r.2,
            action: r.3,
            subject_kind: r.4,
            subject_id: r.5,
            subject_name: r.6,
            detail: r.7,
        })
        .collect())
}
