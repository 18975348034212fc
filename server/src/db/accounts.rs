//! The rows behind login, on either database: organisations, teams,
//! territories, users and refresh tokens.
//!
//! Invariants kept here:
//! - emails are stored as given by the service, which normalises them first
//!   (`domain::accounts::normalise_email`); they are unique per organisation,
//!   and so are team and territory names;
//! - passwords are stored only as the Argon2id PHC strings the service makes;
//! - refresh tokens are stored as SHA-256 hashes ([`refresh_token_hash`]).
//!   Rotation marks the presented token used in the same transaction that
//!   stores its successor; presenting a used token again revokes its device
//!   (and with it every refresh token the device holds, its access tokens at
//!   their next use), on the assumption that it was stolen: whoever rotated it
//!   first, the thief or the device, holds a live pair, and only cutting off
//!   the device cuts off both.
//!
//! Devices are in [`super::devices`], signing keys in [`super::keys`], browser
//! sessions in [`super::web_sessions`].

use fieldsync_core::model::Role;
use fieldsync_core::{DeviceId, OrgId, TeamId, TerritoryId, UserId};
use sha2::{Digest, Sha256};
use sqlx::Row;
use uuid::Uuid;

use super::{Database, DbError, now_secs, parse_uuid};
use crate::on_pool;

/// A user as stored.
#[derive(Debug, Clone)]
pub struct UserRow {
    /// Id.
    pub id: UserId,
    /// Organisation.
    pub org: OrgId,
    /// Lower-cased email.
    pub email: String,
    /// Name to show.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// Team, if any.
    pub team: Option<TeamId>,
    /// Territory, if any.
    pub territory: Option<TerritoryId>,
    /// Disabled users cannot log in or use tokens.
    pub disabled: bool,
    /// The Argon2id PHC string; read only by the password check and never sent.
    pub(crate) password_hash: String,
}

/// Inserts an organisation. A taken slug fails with a unique violation
/// ([`DbError::unique_violation`]).
pub async fn insert_org(db: &Database, id: OrgId, name: &str, slug: &str) -> Result<(), DbError> {
    let result = on_pool!(db, |pool, uuid| {
        sqlx::query(
            "INSERT INTO organisations (id, slug, name, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(uuid(*id.as_uuid()))
        .bind(slug)
        .bind(name)
        .bind(now_secs())
        .execute(pool)
        .await
        .map(|_| ())
    });
    Ok(result?)
}

/// The id of the organisation with this slug.
pub async fn org_by_slug(db: &Database, slug: &str) -> Result<Option<OrgId>, DbError> {
    let row: Option<String> = on_pool!(db, |pool, _uuid| {
        sqlx::query_scalar("SELECT CAST(id AS TEXT) FROM organisations WHERE slug = $1")
            .bind(slug)
            .fetch_optional(pool)
            .await?
    });
    row.map(|s| parse_uuid(&s).map(OrgId::from_uuid))
        .transpose()
}

/// The id of the team called `name` (trimmed by the caller), created if missing.
pub async fn ensure_team(db: &Database, org: OrgId, name: &str) -> Result<TeamId, DbError> {
    ensure_named(db, "teams", org, name)
        .await
        .map(TeamId::from_uuid)
}

/// The id of the territory called `name` (trimmed by the caller), created if missing.
pub async fn ensure_territory(
    db: &Database,
    org: OrgId,
    name: &str,
) -> Result<TerritoryId, DbError> {
    ensure_named(db, "territories", org, name)
        .await
        .map(TerritoryId::from_uuid)
}

/// Insert-if-missing then read, so two callers racing on the same name both get
/// the one row. `table` is one of two constants, never input.
async fn ensure_named(
    db: &Database,
    table: &'static str,
    org: OrgId,
    name: &str,
) -> Result<Uuid, DbError> {
    let insert = format!(
        "INSERT INTO {table} (id, org_id, name, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (org_id, name) DO NOTHING"
    );
    let select = format!("SELECT CAST(id AS TEXT) FROM {table} WHERE org_id = $1 AND name = $2");
    let id: String = on_pool!(db, |pool, uuid| {
        sqlx::query(sqlx::AssertSqlSafe(insert))
            .bind(uuid(Uuid::now_v7()))
            .bind(uuid(*org.as_uuid()))
            .bind(name)
            .bind(now_secs())
            .execute(pool)
            .await?;
        sqlx::query_scalar(sqlx::AssertSqlSafe(select))
            .bind(uuid(*org.as_uuid()))
            .bind(name)
            .fetch_one(pool)
            .await?
    });
    parse_uuid(&id)
}

/// A user to insert, checked and hashed by the service.
#[derive(Debug, Clone)]
pub struct UserInsert<'a> {
    /// New id.
    pub id: UserId,
    /// Organisation.
    pub org: OrgId,
    /// Normalised email.
    pub email: &'a str,
    /// Name to show.
    pub display_name: &'a str,
    /// Role.
    pub role: Role,
    /// Team.
    pub team: Option<TeamId>,
    /// Territory.
    pub territory: Option<TerritoryId>,
    /// Argon2id PHC string.
    pub password_hash: &'a str,
}

/// Inserts a user, not disabled. A taken email fails with a unique violation
/// ([`DbError::unique_violation`]).
pub async fn insert_user(db: &Database, user: &UserInsert<'_>) -> Result<(), DbError> {
    let result = on_pool!(db, |pool, uuid| {
        sqlx::query(
            "INSERT INTO users (id, org_id, email, display_name, role, team_id, territory_id, \
             password_hash, disabled, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(uuid(*user.id.as_uuid()))
        .bind(uuid(*user.org.as_uuid()))
        .bind(user.email)
        .bind(user.display_name)
        .bind(user.role.as_str())
        .bind(user.team.map(|t| uuid(*t.as_uuid())))
        .bind(user.territory.map(|t| uuid(*t.as_uuid())))
        .bind(user.password_hash)
        .bind(false)
        .bind(now_secs())
        .execute(pool)
        .await
        .map(|_| ())
    });
    Ok(result?)
}

const USER_COLUMNS: &str = "CAST(u.id AS TEXT) AS id, CAST(u.org_id AS TEXT) AS org_id, u.email, \
     u.display_name, u.role, CAST(u.team_id AS TEXT) AS team_id, \
     CAST(u.territory_id AS TEXT) AS territory_id, u.password_hash, u.disabled";

fn user_from_row<R>(row: &R) -> Result<UserRow, DbError>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> bool: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let opt = |col: &str| -> Result<Option<Uuid>, DbError> {
        row.try_get::<Option<String>, _>(col)?
            .map(|s| parse_uuid(&s))
            .transpose()
    };
    let role: String = row.try_get("role")?;
    Ok(UserRow {
        id: UserId::from_uuid(parse_uuid(&row.try_get::<String, _>("id")?)?),
        org: OrgId::from_uuid(parse_uuid(&row.try_get::<String, _>("org_id")?)?),
        email: row.try_get("email")?,
        display_name: row.try_get("display_name")?,
        role: role
            .parse()
            .map_err(|_| DbError::Corrupt(format!("unknown role {role:?}")))?,
        team: opt("team_id")?.map(TeamId::from_uuid),
        territory: opt("territory_id")?.map(TerritoryId::from_uuid),
        disabled: row.try_get("disabled")?,
        password_hash: row.try_get("password_hash")?,
    })
}

/// The user with this (already normalised) email in `org`.
pub async fn find_user(db: &Database, org: OrgId, email: &str) -> Result<Option<UserRow>, DbError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE u.org_id = $1 AND u.email = $2");
    on_pool!(db, |pool, uuid| {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(uuid(*org.as_uuid()))
            .bind(email)
            .fetch_optional(pool)
            .await?
            .map(|r| user_from_row(&r))
            .transpose()
    })
}

/// The user with this (already normalised) email in the organisation with
/// slug `org_slug`. Unknown organisation and unknown email both answer `None`.
pub async fn find_login(
    db: &Database,
    org_slug: &str,
    email: &str,
) -> Result<Option<UserRow>, DbError> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users u JOIN organisations o ON o.id = u.org_id \
         WHERE o.slug = $1 AND u.email = $2"
    );
    on_pool!(db, |pool, _uuid| {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(org_slug)
            .bind(email)
            .fetch_optional(pool)
            .await?
            .map(|r| user_from_row(&r))
            .transpose()
    })
}

/// The user with this id.
pub async fn user_by_id(db: &Database, id: UserId) -> Result<Option<UserRow>, DbError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1");
    on_pool!(db, |pool, uuid| {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(uuid(*id.as_uuid()))
            .fetch_optional(pool)
            .await?
            .map(|r| user_from_row(&r))
            .transpose()
    })
}

/// The device and the user an access token names, read together: every
/// authenticated request needs both (is the device its user's and not
/// revoked, is the user enabled), and one statement is one round trip and
/// one pool checkout instead of two. `None` when the device is unknown; the
/// user is `None` when no user has that id.
pub async fn device_and_user(
    db: &Database,
    device: DeviceId,
    user: UserId,
) -> Result<Option<(super::devices::DeviceRow, Option<UserRow>)>, DbError> {
    let sql = format!(
        "SELECT CAST(d.user_id AS TEXT) AS device_user, d.actor_id, d.revoked_at, \
         d.last_seen_at, {USER_COLUMNS} FROM devices d LEFT JOIN users u ON u.id = $2 \
         WHERE d.id = $1"
    );
    on_pool!(db, |pool, uuid| {
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(uuid(*device.as_uuid()))
            .bind(uuid(*user.as_uuid()))
            .fetch_optional(pool)
            .await?
        else {
            return Ok(None);
        };
        let device = super::devices::DeviceRow {
            id: device,
            user: UserId::from_uuid(parse_uuid(&row.try_get::<String, _>("device_user")?)?),
            actor_id: row.try_get("actor_id")?,
            revoked_at: row.try_get("revoked_at")?,
            last_seen_at: row.try_get("last_seen_at")?,
        };
        // The user's columns are all null when the join found no user.
        let user = match row.try_get::<Option<String>, _>("id")? {
            Some(_) => Some(user_from_row(&row)?),
            None => None,
        };
        Ok(Some((device, user)))
    })
}

/// Users whose email is `<name>@<their organisation's slug>.example`, the
/// shape of the logins `fieldsync demo` seeds, with their organisation's
/// slug; at most `limit`.
pub async fn demo_shaped_users(
    db: &Database,
    limit: i64,
) -> Result<Vec<(String, UserRow)>, DbError> {
    let sql = format!(
        "SELECT o.slug AS slug, {USER_COLUMNS} FROM users u JOIN organisations o ON o.id = u.org_id \
         WHERE u.email LIKE '%@' || o.slug || '.example' ORDER BY o.slug LIMIT $1"
    );
    on_pool!(db, |pool, _uuid| {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get::<String, _>("slug")?, user_from_row(r)?)))
            .collect::<Result<Vec<_>, DbError>>()
    })
}

/// Disables (or enables) the user with this id. Returns whether this call
/// changed it.
pub async fn set_disabled(db: &Database, id: UserId, disabled: bool) -> Result<bool, DbError> {
    let n = on_pool!(db, |pool, uuid| {
        sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2 AND disabled <> $1")
            .bind(disabled)
            .bind(uuid(*id.as_uuid()))
            .execute(pool)
            .await?
            .rows_affected()
    });
    Ok(n == 1)
}

/// The SHA-256 of a refresh token: what the database keeps.
pub fn refresh_token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Stores a refresh token that starts a new family (a login).
pub async fn store_refresh_token(
    db: &Database,
    token: &str,
    user: UserId,
    device: DeviceId,
    ttl_secs: u64,
) -> Result<(), DbError> {
    let now = now_secs();
    let expires = now.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX));
    let id = Uuid::now_v7();
    on_pool!(db, |pool, uuid| {
        sqlx::query(
            "INSERT INTO refresh_tokens (id, token_hash, family_id, device_id, user_id, created_at, \
             expires_at) VALUES ($1, $2, $1, $3, $4, $5, $6)",
        )
        .bind(uuid(id))
        .bind(refresh_token_hash(token))
        .bind(uuid(*device.as_uuid()))
        .bind(uuid(*user.as_uuid()))
        .bind(now)
        .bind(expires)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// family, device, user (as text), rotated_at, revoked_at.
type TokenRow = (String, String, String, Option<i64>, Option<i64>);

/// What presenting a refresh token led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was live: `new_token` replaces it.
    Rotated {
        /// Its user.
        user: UserId,
        /// Its device.
        device: DeviceId,
    },
    /// The token had already been rotated: its device is now revoked, with
    /// every refresh token it holds.
    Reused {
        /// Its user.
        user: UserId,
        /// Its device, now revoked.
        device: DeviceId,
    },
    /// Unknown, expired or revoked.
    Invalid,
}

/// Trades `presented` for `new_token` if `presented` is live.
///
/// The conditional `UPDATE` comes first so the transaction takes the write lock
/// before reading (SQLite), and so of two concurrent rotations of one token only
/// one matches. A token presented again is a reuse, and revokes the device,
/// except for a **retry**: within `retry_grace_secs` of its rotation, while
/// the token it was rotated to has never been presented, it is the same
/// device asking again after the answer was lost on a bad network (the answer
/// it never read held that successor). Then the successor is revoked and
/// `new_token` replaces it: whoever might hold the successor loses it, and
/// the device keeps its data (a revoked device wipes its store, unsynced
/// changes included).
pub async fn rotate_refresh_token(
    db: &Database,
    presented: &str,
    new_token: &str,
    ttl_secs: u64,
    retry_grace_secs: i64,
) -> Result<Rotation, DbError> {
    let now = now_secs();
    let expires = now.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX));
    let old_hash = refresh_token_hash(presented);
    let new_id = Uuid::now_v7();
    on_pool!(db, |pool, uuid| {
        let mut tx = pool.begin().await?;
        let rotated = sqlx::query(
            "UPDATE refresh_tokens SET rotated_at = $1, replaced_by = $2 \
             WHERE token_hash = $3 AND rotated_at IS NULL AND revoked_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(uuid(new_id))
        .bind(&old_hash)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let row: Option<TokenRow> = sqlx::query_as(
            "SELECT CAST(family_id AS TEXT), CAST(device_id AS TEXT), CAST(user_id AS TEXT), \
             rotated_at, revoked_at FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(&old_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((family, device, user, rotated_at, revoked_at)) = row else {
            return Ok(Rotation::Invalid);
        };
        let family = parse_uuid(&family)?;
        let retried = match (rotated, rotated_at, revoked_at) {
            (0, Some(at), None) if now.saturating_sub(at) <= retry_grace_secs => {
                // The successor, revoked here only if nobody presented it.
                sqlx::query(
                    "UPDATE refresh_tokens SET revoked_at = $1 WHERE id = \
                     (SELECT replaced_by FROM refresh_tokens WHERE token_hash = $2) \
                     AND rotated_at IS NULL AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(&old_hash)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1
            }
            _ => false,
        };
        if retried {
            sqlx::query("UPDATE refresh_tokens SET replaced_by = $1 WHERE token_hash = $2")
                .bind(uuid(new_id))
                .bind(&old_hash)
                .execute(&mut *tx)
                .await?;
        }
        if rotated == 1 || retried {
            let device = DeviceId::from_uuid(parse_uuid(&device)?);
            let user = UserId::from_uuid(parse_uuid(&user)?);
            sqlx::query(
                "INSERT INTO refresh_tokens (id, token_hash, family_id, device_id, user_id, \
                 created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(uuid(new_id))
            .bind(refresh_token_hash(new_token))
            .bind(uuid(family))
            .bind(uuid(*device.as_uuid()))
            .bind(uuid(*user.as_uuid()))
            .bind(now)
            .bind(expires)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(Rotation::Rotated { user, device });
        }
        if rotated_at.is_some() && revoked_at.is_none() {
            let device = DeviceId::from_uuid(parse_uuid(&device)?);
            let user = UserId::from_uuid(parse_uuid(&user)?);
            // The device, not only this family: the other holder's access
            // token dies at its next request (authentication checks the device).
            sqlx::query("UPDATE devices SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(uuid(*device.as_uuid()))
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE refresh_tokens SET revoked_at = $1 \
                 WHERE (family_id = $2 OR device_id = $3) AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(uuid(family))
            .bind(uuid(*device.as_uuid()))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(Rotation::Reused { user, device });
        }
        Ok(Rotation::Invalid)
    })
}
