//! Browser sessions of the managers' pages (`web_sessions`): one row per
//! sign-in, bound to the `web` device that sign-in registered.
//!
//! Invariants kept here:
//! - the database keeps only the SHA-256 of a session's cookie token, never
//!   the token, so a copy of the table opens no session;
//! - a session counts while it has not ended and has not expired; ending one
//!   is a stamp, the row stays until [`purge`] removes it a while later, with
//!   the `web` device it registered (so sign-ins do not grow `devices` for
//!   ever).
//!
//! The use cases (sign in, sign out, load the session of a request) are
//! `service::auth`'s; the cookie is `web::session`'s.

use fieldsync_core::{DeviceId, UserId};
use sha2::{Digest, Sha256};

use super::{Database, DbError, parse_uuid};
use crate::on_pool;

/// What the table keeps of a cookie token.
fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Stores a session of `user` on `device` whose cookie token is `token`,
/// made at `now` and lasting until `expires_at` (Unix seconds).
pub async fn insert(
    db: &Database,
    token: &str,
    device: DeviceId,
    user: UserId,
    now: i64,
    expires_at: i64,
) -> Result<(), DbError> {
    on_pool!(db, |pool, uuid| {
        sqlx::query(
            "INSERT INTO web_sessions (token_hash, device_id, user_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash(token))
        .bind(uuid(*device.as_uuid()))
        .bind(uuid(*user.as_uuid()))
        .bind(now)
        .bind(expires_at)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// The device and user of the session with this cookie token, if it has
/// neither ended nor expired at `now`.
pub async fn live(
    db: &Database,
    token: &str,
    now: i64,
) -> Result<Option<(DeviceId, UserId)>, DbError> {
    let row: Option<(String, String)> = on_pool!(db, |pool, _uuid| {
        sqlx::query_as(
            "SELECT CAST(device_id AS TEXT), CAST(user_id AS TEXT) FROM web_sessions \
             WHERE token_hash = $1 AND ended_at IS NULL AND expires_at > $2",
        )
        .bind(token_hash(token))
        .bind(now)
        .fetch_optional(pool)
        .await?
    });
    row.map(|(d, u)| {
        Ok((
            DeviceId::from_uuid(parse_uuid(&d)?),
            UserId::from_uuid(parse_uuid(&u)?),
        ))
    })
    .transpose()
}

/// Ends every open session of `device` at `now`.
pub async fn end_for_device(db: &Database, device: DeviceId, now: i64) -> Result<(), DbError> {
    on_pool!(db, |pool, uuid| {
        sqlx::query(
            "UPDATE web_sessions SET ended_at = $1 WHERE device_id = $2 AND ended_at IS NULL",
        )
        .bind(now)
        .bind(uuid(*device.as_uuid()))
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// Removes the sessions that ended or expired before `before` (Unix seconds),
/// then the `web` devices registered before `before` that no longer have a
/// session, a refresh token or sync figures. Each statement is one
/// conditional `DELETE`, so several nodes purging at once remove each row
/// once. Answers how many sessions and devices went.
pub async fn purge(db: &Database, before: i64) -> Result<(u64, u64), DbError> {
    Ok(on_pool!(db, |pool, _uuid| {
        let sessions = sqlx::query(
            "DELETE FROM web_sessions WHERE expires_at < $1 OR (ended_at IS NOT NULL AND ended_at < $1)",
        )
        .bind(before)
        .execute(pool)
        .await?
        .rows_affected();
        let devices = sqlx::query(
            "DELETE FROM devices WHERE platform = 'web' AND created_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM web_sessions s WHERE s.device_id = devices.id) \
             AND NOT EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.device_id = devices.id) \
             AND NOT EXISTS (SELECT 1 FROM device_health h WHERE h.device_id = devices.id)",
        )
        .bind(before)
        .execute(pool)
        .await?
        .rows_affected();
        (sessions, devices)
    }))
}
