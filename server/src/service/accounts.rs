//! Account use cases: creating organisations, teams, territories and users
//! (the command line, the demo seeder and the tests call these), checking a
//! password, and registering the device a user logs in on.
//!
//! Invariants kept here:
//! - passwords are stored only as Argon2id PHC strings, hashed off the async
//!   runtime (`spawn_blocking`), at most [`hashing_permits`] at once, and a
//!   login for an unknown user still runs one
//!   verification ([`verify_password`] with `None`) so its timing does not
//!   reveal which emails exist;
//! - a device belongs to one user for its lifetime and gets one Automerge actor
//!   id, assigned here at its first login and never reused; a revoked device
//!   stays revoked.
//!
//! The rules (email, password, slug, names, who may register a device) are
//! `domain::accounts`' and `domain::devices`'; the SQL is `db::accounts`' and
//! `db::devices`'. Refusals are [`AccountError`]s turned into
//! [`Error`](crate::domain::Error)s.

use std::sync::{Arc, OnceLock};

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use fieldsync_core::model::Role;
use fieldsync_core::{DeviceId, OrgId, TeamId, TerritoryId, UserId};
use tokio::sync::Semaphore;

use crate::db::accounts::{self as rows, UserInsert};
use crate::db::devices::{self as device_rows, Reported};
use crate::db::{Database, DbError, now_secs};
use crate::domain::accounts::{self as rules, AccountError};
use crate::domain::devices::may_register;
use crate::domain::{Error, Result};
use crate::live::{self, Ended};

use super::Context;

pub use crate::db::accounts::UserRow;

/// A day, in seconds: the window of the new-devices cap.
const DAY_SECS: i64 = 24 * 3600;
pub use crate::db::devices::DeviceRow;

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

/// A database failure, or the account refusal a unique violation means.
fn unique_or(e: DbError, refusal: impl FnOnce() -> AccountError) -> Error {
    if e.unique_violation().is_some() {
        refusal().into()
    } else {
        e.into()
    }
}

/// Creates an organisation.
pub async fn create_org(db: &Database, name: &str, slug: &str) -> Result<OrgId> {
    rules::check_slug(slug)?;
    rules::check_name("name", name)?;
    let id = OrgId::new();
    rows::insert_org(db, id, name.trim(), slug)
        .await
        .map_err(|e| unique_or(e, || AccountError::DuplicateSlug(slug.into())))?;
    Ok(id)
}

/// The id of the organisation with this slug.
pub async fn org_by_slug(db: &Database, slug: &str) -> Result<Option<OrgId>> {
    Ok(rows::org_by_slug(db, slug).await?)
}

/// The id of the team called `name`, created if missing.
pub async fn ensure_team(db: &Database, org: OrgId, name: &str) -> Result<TeamId> {
    rules::check_name("teams", name)?;
    Ok(rows::ensure_team(db, org, name.trim()).await?)
}

/// The id of the territory called `name`, created if missing.
pub async fn ensure_territory(db: &Database, org: OrgId, name: &str) -> Result<TerritoryId> {
    rules::check_name("territories", name)?;
    Ok(rows::ensure_territory(db, org, name.trim()).await?)
}

/// Creates a user after checking the email, the role and the password.
pub async fn create_user(db: &Database, user: NewUser) -> Result<UserId> {
    let checked =
        rules::check_new_user(&user.email, &user.display_name, user.role, &user.password)?;
    if rows::find_user(db, user.org, &checked.email)
        .await?
        .is_some()
    {
        return Err(AccountError::DuplicateEmail(checked.email).into());
    }
    let hash = hash_password(user.password).await?;
    let id = UserId::new();
    let insert = UserInsert {
        id,
        org: user.org,
        email: &checked.email,
        display_name: &checked.display_name,
        role: user.role,
        team: user.team,
        territory: user.territory,
        password_hash: &hash,
    };
    // A unique violation here lost a race with another insert of the same email.
    rows::insert_user(db, &insert)
        .await
        .map_err(|e| unique_or(e, || AccountError::DuplicateEmail(checked.email.clone())))?;
    Ok(id)
}

/// The user logging in as `email` in the organisation with slug `org_slug`.
/// Unknown organisation, unknown email and a malformed email all answer `None`.
pub async fn find_login(db: &Database, org_slug: &str, email: &str) -> Result<Option<UserRow>> {
    let Ok(email) = rules::normalise_email(email) else {
        return Ok(None);
    };
    Ok(rows::find_login(db, org_slug, &email).await?)
}

/// The user with this id.
pub async fn user_by_id(db: &Database, id: UserId) -> Result<Option<UserRow>> {
    Ok(rows::user_by_id(db, id).await?)
}

/// The device with this id.
pub async fn device_by_id(db: &Database, id: DeviceId) -> Result<Option<DeviceRow>> {
    Ok(device_rows::device_by_id(db, id).await?)
}

/// Revokes a device and every refresh token it holds, with no permission
/// check (tools and tests); people revoke through
/// [`service::devices::revoke`](super::devices::revoke), which checks who may
/// and ends the device's live connection too. Returns whether this call
/// revoked it.
pub async fn revoke_device(db: &Database, id: DeviceId) -> Result<bool> {
    Ok(device_rows::revoke_device(db, id).await?)
}

/// Ends the live connections of a revoked device or a disabled user on every
/// node; a failure is logged (the connections then end at their next session
/// check).
pub(crate) async fn end_live_connections(ctx: &Context, user: UserId, ended: Ended) {
    let org = match rows::user_by_id(&ctx.db, user).await {
        Ok(Some(u)) => u.org,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "could not announce an ended session to live connections");
            return;
        }
    };
    if let Err(e) = live::announce_end(&ctx.db, Some(ctx.hub.as_ref()), org, ended).await {
        tracing::warn!(error = %e, "could not announce an ended session to live connections");
    }
}

/// Disables or enables the account `email` of the organisation `org_slug`
/// from the command line (no caller: whoever runs it holds the database).
/// Disabling announces the end of the user's live connections to every node
/// on PostgreSQL; on SQLite they end at their next session check
/// ([`crate::live::SESSION_CHECK`]). Answers the user and whether this call
/// changed the account.
pub async fn set_disabled_by_email(
    db: &Database,
    org_slug: &str,
    email: &str,
    disabled: bool,
) -> Result<(UserId, bool)> {
    let org = rows::org_by_slug(db, org_slug)
        .await?
        .ok_or_else(|| AccountError::UnknownOrg(org_slug.into()))?;
    let email = rules::normalise_email(email)?;
    let user = rows::find_user(db, org, &email)
        .await?
        .ok_or_else(|| Error::BadRequest(format!("there is no user {email} in {org_slug}")))?;
    let changed = rows::set_disabled(db, user.id, disabled).await?;
    if disabled && let Err(e) = live::announce_end(db, None, org, Ended::User(user.id)).await {
        tracing::warn!(error = %e, "could not announce the disabling to live connections");
    }
    Ok((user.id, changed))
}

/// How many password hashes may run at once on a node: one per core (at
/// least two). Each Argon2id hash takes about 19 MiB and a core for tens of
/// milliseconds, so a burst of logins waits its turn instead of taking the
/// node's memory and blocking pool.
pub fn hashing_permits() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

fn hashing() -> Arc<Semaphore> {
    static HASHING: OnceLock<Arc<Semaphore>> = OnceLock::new();
    HASHING
        .get_or_init(|| Arc::new(Semaphore::new(hashing_permits())))
        .clone()
}

/// Runs one password hash on a blocking thread, within the node's bound.
async fn bounded<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let permit = hashing()
        .acquire_owned()
        .await
        .map_err(|e| Error::internal(format!("password hashing is closed: {e}")))?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    })
    .await
    .map_err(|e| Error::internal(format!("password hashing failed: {e}")))
}

/// Hashes a password with Argon2id on a blocking thread.
pub async fn hash_password(password: String) -> Result<String> {
    bounded(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| Error::internal(format!("password hashing failed: {e}")))
    })
    .await?
}

/// Checks a password against a stored hash on a blocking thread. With no user
/// (`None`) it verifies against a fixed hash anyway, so that "no such user" and
/// "wrong password" take the same time, and answers `false`.
pub async fn verify_password(password: String, user: Option<&UserRow>) -> bool {
    let stored = user.map(|u| u.password_hash.clone());
    bounded(move || {
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

/// Records a login from `info` by `user`: creates the device with a fresh actor
/// id, or refreshes what it reports about itself. Refuses a device registered to
/// another user (`device_in_use`) or revoked (`device_revoked`), and a new
/// device beyond `per_day` new devices of the user in the last 24 hours
/// (`too_many_devices`; 0: no limit), so that logins with made-up device ids
/// cannot grow the devices table without end. Two logins racing at the cap
/// may both pass: the cap is a bound on growth, not an exact count.
pub async fn register_device(
    db: &Database,
    user: &UserRow,
    info: &DeviceInfo,
    per_day: u32,
) -> Result<DeviceRow> {
    let now = now_secs();
    let reported = Reported {
        platform: &info.platform,
        app_version: &info.app_version,
    };
    if let Some(device) = device_rows::device_by_id(db, info.id).await? {
        may_register(device.user, device.revoked_at.is_some(), user.id)?;
        device_rows::update_reported(db, info.id, reported, now).await?;
        return Ok(device);
    }
    if per_day > 0 {
        let recent = device_rows::registered_since(db, user.id, now - DAY_SECS).await?;
        if recent >= i64::from(per_day) {
            tracing::warn!(user = %user.id, recent, "new device refused: over the daily cap");
            return Err(Error::TooManyDevices { limit: per_day });
        }
    }
    let mut actor = [0u8; 16];
    rand::fill(&mut actor[..]);
    let actor_id = hex::encode(actor);
    if device_rows::insert_device(db, info.id, user.id, user.org, reported, &actor_id, now).await? {
        return Ok(DeviceRow {
            id: info.id,
            user: user.id,
            actor_id,
            revoked_at: None,
            last_seen_at: now,
        });
    }
    // Two first logins of one device raced; the other one's row stands.
    match device_rows::device_by_id(db, info.id).await? {
        Some(d) => {
            may_register(d.user, d.revoked_at.is_some(), user.id)?;
            Ok(d)
        }
        None => Err(AccountError::DeviceRevoked.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn password_hashes_wait_for_a_place_beyond_the_bound() {
        // How long one hash takes here, free.
        let started = std::time::Instant::now();
        hash_password("a first one".into()).await.expect("hash");
        let one = started.elapsed();
        let all = u32::try_from(hashing_permits()).expect("a few permits");
        let held = hashing()
            .acquire_many_owned(all)
            .await
            .expect("every place");
        let waiting = tokio::spawn(verify_password("anything at all".into(), None));
        let early = tokio::time::timeout(
            one * 4 + std::time::Duration::from_millis(100),
            hash_password("another one here".into()),
        )
        .await;
        assert!(
            early.is_err(),
            "no hash runs while every place is taken (one takes {one:?})"
        );
        assert!(!waiting.is_finished());
        drop(held);
        assert!(!waiting.await.expect("joined"), "runs once a place is free");
        assert!(hash_password("and now this".into()).await.is_ok());
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
