//! The token-signing keys kept in the database (`signing_keys`), used when no
//! `jwt_secret` is configured: the newest key not retired signs, every key not
//! retired verifies, a retired key stays in the table (so `fieldsync keys
//! list` can show it) but verifies nothing.
//!
//! Key ids and secrets are made by `service::auth`; this module only stores
//! and reads them.

use super::{Database, DbError, now_secs};
use crate::on_pool;

/// A stored signing key as `fieldsync keys list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Key id (the token header's `kid`).
    pub kid: String,
    /// When it was made (Unix seconds).
    pub created_at: i64,
    /// When it was retired, if it was.
    pub retired_at: Option<i64>,
}

/// Inserts a key unless one with this id exists. Insert-then-read, so two
/// nodes starting together on one database end up with the same first key.
pub async fn insert_key_if_missing(db: &Database, kid: &str, secret: &[u8]) -> Result<(), DbError> {
    on_pool!(db, |pool, _uuid| {
        sqlx::query(
            "INSERT INTO signing_keys (kid, secret, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (kid) DO NOTHING",
        )
        .bind(kid)
        .bind(secret)
        .bind(now_secs())
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// Inserts a new key made at `created_at`.
pub async fn insert_key(
    db: &Database,
    kid: &str,
    secret: &[u8],
    created_at: i64,
) -> Result<(), DbError> {
    on_pool!(db, |pool, _uuid| {
        sqlx::query("INSERT INTO signing_keys (kid, secret, created_at) VALUES ($1, $2, $3)")
            .bind(kid)
            .bind(secret)
            .bind(created_at)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// Every stored key, newest first.
pub async fn stored_keys(db: &Database) -> Result<Vec<StoredKey>, DbError> {
    let rows: Vec<(String, i64, Option<i64>)> = on_pool!(db, |pool, _uuid| {
        sqlx::query_as(
            "SELECT kid, created_at, retired_at FROM signing_keys \
             ORDER BY created_at DESC, kid DESC",
        )
        .fetch_all(pool)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(|(kid, created_at, retired_at)| StoredKey {
            kid,
            created_at,
            retired_at,
        })
        .collect())
}

/// The keys in force (not retired), newest first, as `(kid, secret)`.
pub async fn keys_in_force(db: &Database) -> Result<Vec<(String, Vec<u8>)>, DbError> {
    let rows: Vec<(String, Vec<u8>)> = on_pool!(db, |pool, _uuid| {
        sqlx::query_as(
            "SELECT kid, secret FROM signing_keys WHERE retired_at IS NULL \
             ORDER BY created_at DESC, kid DESC",
        )
        .fetch_all(pool)
        .await?
    });
    Ok(rows)
}

/// Marks a key retired now.
pub async fn retire_key(db: &Database, kid: &str) -> Result<(), DbError> {
    on_pool!(db, |pool, _uuid| {
        sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE kid = $2")
            .bind(now_secs())
            .bind(kid)
            .execute(pool)
            .await?;
    });
    Ok(())
}
