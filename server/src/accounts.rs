//! Organisations, teams, territories, users, devices and refresh tokens: the
//! rows behind login, on either database.
//!
//! Invariants kept here:
//! - emails are stored trimmed and lower-cased, unique per organisation;
//! - passwords are stored only as Argon2id PHC strings, hashed off the async
//!   runtime (`spawn_blocking`), and a login for an unknown user still runs one
//!   verification so its timing does not reveal which emails exist;
//! - a device belongs to one user for its lifetime and gets one Automerge actor
//!   id, assigned here and never reused; a revoked device stays revoked;
//! - refresh tokens are stored as SHA-256 hashes. Rotation marks the presented
//!   token used in the same transaction that stores its successor; presenting a
//!   used token again revokes its whole family (every token descended from the
//!   same login), on the assumption that it was stolen.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use fieldsync_core::model::Role;
use fieldsync_core::{DeviceId, OrgId, TeamId, TerritoryId, UserId};
use sha2::{Digest, Sha256};
use sqlx::Row;
use uuid::Uuid;

use crate::db::{Database, DbError, now_secs, parse_uuid};
use crate::on_pool;

/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest accepted password, in bytes: Argon2 cost grows with input and a login
/// endpoint must not hash megabytes for an anonymous caller.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Account operations that can fail for a reason the caller should show.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// No organisation with this slug.
    #[error("no organisation with slug {0:?}")]
    UnknownOrg(String),
    /// The slug is taken.
    #[error("an organisation with slug {0:?} already exists")]
    DuplicateSlug(String),
    /// The email is taken in this organisation.
    #[error("a user with email {0:?} already exists in this organisation")]
    DuplicateEmail(String),
    /// The password is too weak or too long.
    #[error("weak password: {0}")]
    WeakPassword(String),
    /// A value is malformed (slug, email, name).
    #[error("invalid {field}: {message}")]
    Invalid {
        /// Which value.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The device id is registered to another user.
    #[error("this device is registered to another user")]
    DeviceOfAnotherUser,
    /// The device was revoked.
    #[error("this device was revoked")]
    DeviceRevoked,
    /// Hashing failed (out of memory or a bug); details logged by the caller.
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for AccountError {
    fn from(e: sqlx::Error) -> Self {
        AccountError::Db(DbError::Sqlx(e))
    }
}

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
    password_hash: String,
}

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
}

/// What the device says about itself at login.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    /// Id made on the device.
    pub id: DeviceId,
    /// `android`, `ios`, ...
    pub platform: String,
    /// App version.
    pub app_version: String,
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Organisation.
    pub org: OrgId,
    /// Email (normalised here).
    pub email: String,
    /// Name to show; empty means the part of the email before `@`.
    pub display_name: String,
    /// Role (not `server`).
    pub role: Role,
    /// Team.
    pub team: Option<TeamId>,
    /// Territory.
    pub territory: Option<TerritoryId>,
    /// Password in clear; checked for strength, then hashed.
    pub password: String,
}

/// Trims and lower-cases an email, and checks it has the shape `x@y`.
pub fn normalise_email(email: &str) -> Result<String, AccountError> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 320
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !email.chars().any(char::is_whitespace);
    if valid {
        Ok(email)
    } else {
        Err(AccountError::Invalid {
            field: "email",
            message: format!("{email:?} is not an email address"),
        })
    }
}

/// Refuses passwords that are too short, repetitive or too long.
pub fn check_password_strength(password: &str) -> Result<(), AccountError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(AccountError::WeakPassword(format!(
            "use at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AccountError::WeakPassword(format!(
            "use at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    let mut distinct: Vec<char> = password.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 4 {
        return Err(AccountError::WeakPassword(
            "use at least 4 different characters".to_owned(),
        ));
    }
    Ok(())
}

/// Hashes a password with Argon2id on a blocking thread.
pub async fn hash_password(password: String) -> Result<String, AccountError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| AccountError::Hash(e.to_string()))
    })
    .await
    .map_err(|e| AccountError::Hash(e.to_string()))?
}

/// Checks a password against a stored hash on a blocking thread. With no user
/// (`None`) it verifies against a fixed hash anyway, so that "no such user" and
/// "wrong password" take the same time, and answers `false`.
pub async fn verify_password(password: String, user: Option<&UserRow>) -> bool {
    let stored = user.map(|u| u.password_hash.clone());
    tokio::task::spawn_blocking(move || {
        let argon = Argon2::default();
        match stored {
            Some(hash) => argon
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok(),
            None => {
                if let Some(dummy) = dummy_hash() {
                    let _ = argon.verify_password(password.as_bytes(), dummy);
                }
                false
            }
        }
    })
    .await
    .unwrap_or(false)
}

fn dummy_hash() -> Option<&'static str> {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    DUMMY
        .get_or_init(|| {
            Argon2::default()
                .hash_password(b"no user has this password")
                .ok()
                .map(|h| h.to_string())
        })
        .as_deref()
}

fn check_slug(slug: &str) -> Result<(), AccountError> {
    let ok = (2..=63).contains(&slug.len())
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(AccountError::Invalid {
            field: "slug",
            message: format!("{slug:?}: use 2 to 63 lower-case letters, digits and inner hyphens"),
        })
    }
}

fn check_name(field: &'static str, name: &str) -> Result<(), AccountError> {
    if name.trim().is_empty() || name.len() > 200 {
        return Err(AccountError::Invalid {
            field,
            message: "give 1 to 200 characters".to_owned(),
        });
    }
    Ok(())
}

/// Creates an organisation.
pub async fn create_org(db: &Database, name: &str, slug: &str) -> Result<OrgId, AccountError> {
    check_slug(slug)?;
    check_name("name", name)?;
    let id = OrgId::new();
    let result = on_pool!(db, |pool, uuid| {
        sqlx::query(
            "INSERT INTO organisations (id, slug, name, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(uuid(*id.as_uuid()))
        .bind(slug)
        .bind(name.trim())
        .bind(now_secs())
        .execute(pool)
        .await
        .map(|_| ())
    });
    match result.map_err(DbError::from) {
        Ok(()) => Ok(id),
        Err(e) if e.unique_violation().is_some() => Err(AccountError::DuplicateSlug(slug.into())),
        Err(e) => Err(e.into()),
    }
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

/// The id of the team called `name`, created if missing.
pub async fn ensure_team(db: &Database, org: OrgId, name: &str) -> Result<TeamId, AccountError> {
    ensure_named(db, "teams", org, name)
        .await
        .map(TeamId::from_uuid)
}

/// The id of the territory called `name`, created if missing.
pub async fn ensure_territory(
    db: &Database,
    org: OrgId,
    name: &str,
) -> Result<TerritoryId, AccountError> {
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
) -> Result<Uuid, AccountError> {
    check_name(table, name)?;
    let name = name.trim();
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
    Ok(parse_uuid(&id)?)
}

/// Creates a user after checking the email and the password.
pub async fn create_user(db: &Database, user: NewUser) -> Result<UserId, AccountError> {
    let email = normalise_email(&user.email)?;
    if user.role == Role::Server {
        return Err(AccountError::Invalid {
            field: "role",
            message: "use rep, technician, manager or admin".to_owned(),
        });
    }
    check_password_strength(&user.password)?;
    let display_name = match user.display_name.trim() {
        "" => email.split('@').next().unwrap_or_default().to_owned(),
        name => name.to_owned(),
    };
    check_name("display name", &display_name)?;
    if find_user(db, user.org, &email).await?.is_some() {
        return Err(AccountError::DuplicateEmail(email));
    }
    let hash = hash_password(user.password).await?;
    let id = UserId::new();
    let result = on_pool!(db, |pool, uuid| {
        sqlx::query(
            "INSERT INTO users (id, org_id, email, display_name, role, team_id, territory_id, \
             password_hash, disabled, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(uuid(*id.as_uuid()))
        .bind(uuid(*user.org.as_uuid()))
        .bind(&email)
        .bind(&display_name)
        .bind(user.role.as_str())
        .bind(user.team.map(|t| uuid(*t.as_uuid())))
        .bind(user.territory.map(|t| uuid(*t.as_uuid())))
        .bind(&hash)
        .bind(false)
        .bind(now_secs())
        .execute(pool)
        .await
        .map(|_| ())
    });
    match result.map_err(DbError::from) {
        Ok(()) => Ok(id),
        // Lost a race with another insert of the same email.
        Err(e) if e.unique_violation().is_some() => Err(AccountError::DuplicateEmail(email)),
        Err(e) => Err(e.into()),
    }
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

/// The user logging in as `email` in the organisation with slug `org_slug`.
/// Unknown organisation and unknown email both answer `None`.
pub async fn find_login(
    db: &Database,
    org_slug: &str,
    email: &str,
) -> Result<Option<UserRow>, DbError> {
    let Ok(email) = normalise_email(email) else {
        return Ok(None);
    };
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users u JOIN organisations o ON o.id = u.org_id \
         WHERE o.slug = $1 AND u.email = $2"
    );
    on_pool!(db, |pool, _uuid| {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(org_slug)
            .bind(&email)
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

/// The device with this id.
pub async fn device_by_id(db: &Database, id: DeviceId) -> Result<Option<DeviceRow>, DbError> {
    let row: Option<(String, String, Option<i64>)> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT CAST(user_id AS TEXT), actor_id, revoked_at FROM devices WHERE id = $1",
        )
        .bind(uuid(*id.as_uuid()))
        .fetch_optional(pool)
        .await?
    });
    row.map(|(user, actor_id, revoked_at)| {
        Ok(DeviceRow {
            id,
            user: UserId::from_uuid(parse_uuid(&user)?),
            actor_id,
            revoked_at,
        })
    })
    .transpose()
}

/// Records a login from `info` by `user`: creates the device with a fresh actor
/// id, or refreshes what it reports about itself. Refuses a device registered to
/// another user or revoked.
pub async fn register_device(
    db: &Database,
    user: &UserRow,
    info: &DeviceInfo,
) -> Result<DeviceRow, AccountError> {
    let now = now_secs();
    if let Some(device) = device_by_id(db, info.id).await? {
        if device.user != user.id {
            return Err(AccountError::DeviceOfAnotherUser);
        }
        if device.revoked_at.is_some() {
            return Err(AccountError::DeviceRevoked);
        }
        on_pool!(db, |pool, uuid| {
            sqlx::query(
                "UPDATE devices SET platform = $1, app_version = $2, last_seen_at = $3 WHERE id = $4",
            )
            .bind(&info.platform)
            .bind(&info.app_version)
            .bind(now)
            .bind(uuid(*info.id.as_uuid()))
            .execute(pool)
            .await?
            .rows_affected()
        });
        return Ok(device);
    }
    let mut actor = [0u8; 16];
    rand::fill(&mut actor[..]);
    let actor_id = hex::encode(actor);
    let inserted = on_pool!(db, |pool, uuid| {
        sqlx::query(
            "INSERT INTO devices (id, user_id, org_id, platform, app_version, actor_id, created_at, \
             last_seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(uuid(*info.id.as_uuid()))
        .bind(uuid(*user.id.as_uuid()))
        .bind(uuid(*user.org.as_uuid()))
        .bind(&info.platform)
        .bind(&info.app_version)
        .bind(&actor_id)
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected()
    });
    if inserted == 1 {
        return Ok(DeviceRow {
            id: info.id,
            user: user.id,
            actor_id,
            revoked_at: None,
        });
    }
    // Two first logins of one device raced; the other one's row stands.
    match device_by_id(db, info.id).await? {
        Some(d) if d.user == user.id && d.revoked_at.is_none() => Ok(d),
        Some(d) if d.user != user.id => Err(AccountError::DeviceOfAnotherUser),
        _ => Err(AccountError::DeviceRevoked),
    }
}

/// Revokes a device and every refresh token it holds. Its access tokens die at
/// their next use (the extractor checks the device). Returns whether it existed.
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

/// Notes that a device was active, at most once a minute per device so that
/// authenticated reads do not each cost a write.
pub async fn touch_device(db: &Database, id: DeviceId) -> Result<(), DbError> {
    let now = now_secs();
    on_pool!(db, |pool, uuid| {
        sqlx::query("UPDATE devices SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $3")
            .bind(now)
            .bind(uuid(*id.as_uuid()))
            .bind(now - 60)
            .execute(pool)
            .await?
            .rows_affected()
    });
    Ok(())
}

/// The SHA-256 of a refresh token: what the database keeps.
pub fn refresh_token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A new opaque refresh token: 32 random bytes, hex.
pub fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes[..]);
    hex::encode(bytes)
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
    /// The token had already been rotated: its family is now revoked.
    Reused,
    /// Unknown, expired or revoked.
    Invalid,
}

/// Trades `presented` for `new_token` if `presented` is live.
///
/// The conditional `UPDATE` comes first so the transaction takes the write lock
/// before reading (SQLite), and so of two concurrent rotations of one token only
/// one matches; the other sees a rotated token and revokes the family, which is
/// the safe reading of a token used twice.
pub async fn rotate_refresh_token(
    db: &Database,
    presented: &str,
    new_token: &str,
    ttl_secs: u64,
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
        if rotated == 1 {
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
            sqlx::query(
                "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(uuid(family))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(Rotation::Reused);
        }
        Ok(Rotation::Invalid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_lower_cased_and_must_have_an_at_sign() {
        assert_eq!(
            normalise_email("  Ana@Example.COM ").expect("valid"),
            "ana@example.com"
        );
        assert!(normalise_email("ana.example.com").is_err());
        assert!(normalise_email("@example.com").is_err());
        assert!(normalise_email("a b@example.com").is_err());
    }

    #[test]
    fn short_repetitive_and_huge_passwords_are_weak() {
        assert!(check_password_strength("correct horse battery").is_ok());
        assert!(check_password_strength("short1!").is_err());
        assert!(check_password_strength("aaaaaaaaaaaaaaab").is_err());
        assert!(check_password_strength(&"abcd".repeat(300)).is_err());
    }

    #[tokio::test]
    async fn a_password_verifies_against_its_hash_and_nothing_else() {
        let hash = hash_password("correct horse battery".into())
            .await
            .expect("hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        let user = UserRow {
            id: UserId::new(),
            org: OrgId::new(),
            email: "a@x".into(),
            display_name: "a".into(),
            role: Role::Rep,
            team: None,
            territory: None,
            disabled: false,
            password_hash: hash,
        };
        assert!(verify_password("correct horse battery".into(), Some(&user)).await);
        assert!(!verify_password("wrong horse battery".into(), Some(&user)).await);
        assert!(!verify_password("correct horse battery".into(), None).await);
    }
}
