//! Devices as stored: the row each login creates or refreshes, its revocation
//! (with every refresh token it holds), its last-seen stamp, and the listing
//! people manage their devices with.
//!
//! Invariants kept here:
//! - a device row is inserted once (`ON CONFLICT (id) DO NOTHING`), with the
//!   Automerge actor id the service assigned; its owner, organisation and
//!   actor id never change afterwards;
//! - a revoked device stays revoked: revocation only stamps devices not yet
//!   revoked, and revokes the device's refresh tokens in the same transaction.
//!
//! The rules (who may register, use or manage a device) are
//! `domain::devices`'; the use cases are `service::accounts` and
//! `service::devices`.

use fieldsync_core::{DeviceId, OrgId, TeamId, UserId};
use serde::Serialize;

use super::{Database, DbError, now_secs, parse_uuid};
use crate::domain::devices::Owner;
use crate::on_pool;

/// A device as stored.
#[derive(Debug, Clone)]
pub struct DeviceRow {
    /// Id made on the device.
    pub id: DeviceId,
    /// Owner.
    pub user: UserId,
    /// Automerge actor id, hex.
    pub actor_id: String,
    /// When it was revoked (Unix seconds).
    pub revoked_at: Option<i64>,
    /// When it was last seen (Unix seconds; kept to the minute, see
    /// [`touch_device`]).
    pub last_seen_at: i64,
}

/// The device with this id.
pub async fn device_by_id(db: &Database, id: DeviceId) -> Result<Option<DeviceRow>, DbError> {
    let row: Option<(String, String, Option<i64>, i64)> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT CAST(user_id AS TEXT), actor_id, revoked_at, last_seen_at FROM devices \
             WHERE id = $1",
        )
        .bind(uuid(*id.as_uuid()))
        .fetch_optional(pool)
        .await?
    });
    row.map(|(user, actor_id, revoked_at, last_seen_at)| {
        Ok(DeviceRow {
            id,
            user: UserId::from_uuid(parse_uuid(&user)?),
            actor_id,
            revoked_at,
            last_seen_at,
        })
    })
    .transpose()
}

/// What a device reports about itself at each login.
#[derive(Debug, Clone, Copy)]
pub struct Reported<'a> {
    /// `android`, `ios`, `web`, ...
    pub platform: &'a str,
    /// App version.
    pub app_version: &'a str,
}

/// Refreshes what an existing device reports about itself, and its last-seen time.
pub async fn update_reported(
    db: &Database,
    id: DeviceId,
    reported: Reported<'_>,
    now: i64,
) -> Result<(), DbError> {
    on_pool!(db, |pool, uuid| {
        sqlx::query(
            "UPDATE devices SET platform = $1, app_version = $2, last_seen_at = $3 WHERE id = $4",
        )
        .bind(reported.platform)
        .bind(reported.app_version)
        .bind(now)
        .bind(uuid(*id.as_uuid()))
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// Inserts a device of `user` in `org` with `actor_id`, unless a device with
/// this id exists already. Returns whether this call inserted it (false: two
/// first logins of one device raced, or the id was taken).
pub async fn insert_device(
    db: &Database,
    id: DeviceId,
    user: UserId,
    org: OrgId,
    reported: Reported<'_>,
    actor_id: &str,
    now: i64,
) -> Result<bool, DbError> {
    let inserted = on_pool!(db, |pool, uuid| {
        sqlx::query(
            "INSERT INTO devices (id, user_id, org_id, platform, app_version, actor_id, created_at, \
             last_seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(uuid(*id.as_uuid()))
        .bind(uuid(*user.as_uuid()))
        .bind(uuid(*org.as_uuid()))
        .bind(reported.platform)
        .bind(reported.app_version)
        .bind(actor_id)
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(inserted == 1)
}

/// How many devices `user` registered since `since` (Unix seconds).
pub async fn registered_since(db: &Database, user: UserId, since: i64) -> Result<i64, DbError> {
    Ok(on_pool!(db, |pool, uuid| {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM devices WHERE user_id = $1 AND created_at > $2",
        )
        .bind(uuid(*user.as_uuid()))
        .bind(since)
        .fetch_one(pool)
        .await?
    }))
}

/// Revokes a device and every refresh token it holds. Its access tokens die at
/// their next use (authentication checks the device). Returns whether this
/// call revoked it (false: unknown or already revoked).
pub async fn revoke_device(db: &Database, id: DeviceId) -> Result<bool, DbError> {
    let now = now_secs();
    let n = on_pool!(db, |pool, uuid| {
        let mut tx = pool.begin().await?;
        let n =
            sqlx::query("UPDATE devices SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(uuid(*id.as_uuid()))
                .execute(&mut *tx)
                .await?
                .rows_affected();
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE device_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(uuid(*id.as_uuid()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        n
    });
    Ok(n == 1)
}

/// How stale a device's last-seen time may grow before a request updates it.
pub const TOUCH_EVERY_SECS: i64 = 60;

/// Notes that a device was active, at most once a minute per device so that
/// authenticated reads do not each cost a write.
pub async fn touch_device(db: &Database, id: DeviceId) -> Result<(), DbError> {
    let now = now_secs();
    on_pool!(db, |pool, uuid| {
        sqlx::query("UPDATE devices SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $3")
            .bind(now)
            .bind(uuid(*id.as_uuid()))
            .bind(now - TOUCH_EVERY_SECS)
            .execute(pool)
            .await?
            .rows_affected()
    });
    Ok(())
}

/// A device as listed (`GET /v1/devices`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeviceInfo {
    /// Device id.
    #[schema(value_type = uuid::Uuid)]
    pub id: DeviceId,
    /// Its user.
    #[schema(value_type = uuid::Uuid)]
    pub user_id: UserId,
    /// The user's name.
    pub user_name: String,
    /// `android`, `ios`, ...
    pub platform: String,
    /// App version at its last login.
    pub app_version: String,
    /// First login (Unix seconds).
    pub created_at: i64,
    /// Last request, to the minute (Unix seconds).
    pub last_seen_at: i64,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
}

type DeviceListRow = (
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    String,
);

/// Devices of `org` matching the filters (a user, a device; `None` matches
/// all), last seen first, each with its user's team and role for permission
/// checks.
pub async fn list(
    db: &Database,
    org: OrgId,
    user: Option<UserId>,
    device: Option<DeviceId>,
) -> Result<Vec<(DeviceInfo, Owner)>, DbError> {
    let rows: Vec<DeviceListRow> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT CAST(d.id AS TEXT), CAST(d.user_id AS TEXT), u.display_name, d.platform, \
             d.app_version, d.created_at, d.last_seen_at, d.revoked_at, CAST(u.team_id AS TEXT), \
             u.role FROM devices d JOIN users u ON u.id = d.user_id \
             WHERE d.org_id = $1 AND ($2 IS NULL OR d.user_id = $2) \
             AND ($3 IS NULL OR d.id = $3) \
             ORDER BY d.last_seen_at DESC",
        )
        .bind(uuid(*org.as_uuid()))
        .bind(user.map(|u| uuid(*u.as_uuid())))
        .bind(device.map(|d| uuid(*d.as_uuid())))
        .fetch_all(pool)
        .await?
    });
    rows.into_iter()
        .map(|r| {
            let user_id = UserId::from_uuid(parse_uuid(&r.1)?);
            let owner = Owner {
                id: user_id,
                team: r
                    .8
                    .map(|t| parse_uuid(&t).map(TeamId::from_uuid))
                    .transpose()?,
                role: r
                    .9
                    .parse()
                    .map_err(|_| DbError::Corrupt(format!("unknown role {:?}", r.9)))?,
            };
            Ok((
                DeviceInfo {
                    id: DeviceId::from_uuid(parse_uuid(&r.0)?),
                    user_id,
                    user_name: r.2,
                    platform: r.3,
                    app_version: r.4,
                    created_at: r.5,
                    last_seen_at: r.6,
                    revoked_at: r.7,
                },
                owner,
            ))
        })
        .collect()
}
