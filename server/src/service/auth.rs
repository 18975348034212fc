//! Authentication: the signing keys, device login and refresh, turning an
//! access token into a [`Caller`], and the browser sessions of the managers'
//! pages.
//!
//! Access tokens are HS256 JWTs, short-lived (15 minutes by default), carrying
//! `sub` (user), `org`, `role`, `dev` (device), `iss`, `aud`, `iat`, `exp`, and
//! the key id in the header. Validation pins the algorithm to HS256 (so `none`
//! and every other algorithm are refused), requires `exp`, `iss`, `aud` and
//! `sub`, and checks issuer, audience and key id. A valid signature is not
//! enough: [`authenticate`] also loads the device and the user, so a revoked
//! device (`device_revoked`) or a disabled user is refused at once rather than
//! when the token expires, and team, territory and role come from the database,
//! not from a token minted before a manager changed them.
//!
//! Refresh tokens are opaque random strings, bound to one device, stored hashed
//! and rotated on every use (see `db::accounts::rotate_refresh_token`). A token
//! presented a second time means two holders: the device is revoked, so both
//! lose their refresh tokens, their access tokens at their next request and
//! their live connections at once ([`refresh`]). The one exception is a retry
//! after a lost answer ([`REFRESH_RETRY_GRACE_SECS`]): revoking the device
//! would wipe its unsynced work.
//!
//! Keys rotate without logging anyone out: a new key signs new tokens while the
//! older ones still verify the tokens they signed, until an operator retires
//! them ([`rotate_key`], [`retire_key`]).
//!
//! A browser sign-in ([`start_web_session`]) is a device login: it registers a
//! device with platform `web` (a fresh device id per sign-in), so a manager's
//! browser sessions are listed and revoked like their phones, and revoking the
//! device ends the session at its next request. The session lasts
//! [`WEB_SESSION_SECS`] and ends at sign-out ([`end_web_session`]); a day
//! after it ended, every node's cleaner removes it with its device
//! ([`clean_web_sessions_periodically`]). The cookie itself is `web::session`'s.
//!
//! New devices are capped per user and day (`new_devices_per_day`): a login
//! with a made-up device id, or a browser sign-in, beyond the cap answers
//! `too_many_devices`.

use std::net::IpAddr;
use std::sync::Arc;

use fieldsync_core::model::{Actor, Role};
use fieldsync_core::{DeviceId, OrgId, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Context;
use super::accounts::{self, DeviceInfo, DeviceRow, UserRow};
use crate::db::accounts::{self as account_rows, Rotation};
use crate::db::{self, Database, DbError, now_secs};
use crate::domain::accounts::{MAX_EMAIL_BYTES, login_within_bounds};
use crate::domain::devices::{check_reported, check_session_device};
use crate::domain::{Caller, Error, Result};
use crate::live::Ended;
use crate::settings::{Secret, Settings};

pub use crate::db::keys::StoredKey;

/// Seconds of clock skew tolerated on `exp`. Small, because access tokens are
/// short-lived and every node of one deployment should share a clock.
const LEEWAY_SECS: u64 = 5;

/// Key id of the first key generated and kept in the database.
const FIRST_STORED_KID: &str = "db-1";

/// How often a node reloads the stored keys on its own, so that a key made by
/// `fieldsync keys rotate` starts signing everywhere within this time.
pub const KEY_RELOAD_SECS: u64 = 60;

/// Shortest time between two reloads forced by a token with an unknown key id
/// (a token signed by another node with a key this node has not loaded yet).
const FORCED_RELOAD_SECS: u64 = 2;

/// Longest refresh token looked up; anything longer is not one of ours.
const MAX_REFRESH_TOKEN_BYTES: usize = 256;

/// How long a browser session lasts (12 hours: a working day, then sign in again).
pub const WEB_SESSION_SECS: i64 = 12 * 3600;

/// Where the keys come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeySource {
    /// `jwt_secret` (signs and verifies) and `jwt_previous_secrets` (verify only).
    Configured,
    /// The `signing_keys` table: the newest key not retired signs, every key not
    /// retired verifies.
    Database,
}

/// The keys in force: one signs, all verify.
struct Keyring {
    signing_kid: String,
    signing: EncodingKey,
    verifying: Vec<(String, DecodingKey)>,
}

/// The signing keys and the rules tokens are made and checked with.
///
/// Keys rotate without logging anyone out: a new key signs new tokens while the
/// older ones still verify the tokens they signed, until an operator retires
/// them (after at least one access-token lifetime). Every token names its key in
/// the `kid` header.
#[derive(Clone)]
pub struct AuthKeys {
    source: KeySource,
    ring: Arc<std::sync::RwLock<Keyring>>,
    last_forced_reload: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    validation: Validation,
    issuer: String,
    audience: String,
    access_ttl_secs: u64,
    refresh_ttl_secs: u64,
}

impl std::fmt::Debug for AuthKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthKeys")
            .field("source", &self.source)
            .field("signing_kid", &self.signing_kid())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("access_ttl_secs", &self.access_ttl_secs)
            .finish_non_exhaustive()
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: UserId,
    /// The user's organisation.
    pub org: OrgId,
    /// The user's role when the token was made.
    pub role: Role,
    /// The device the token was issued to.
    pub dev: DeviceId,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
}

/// Why a token was not accepted by [`AuthKeys::verify`].
#[derive(Debug, PartialEq, Eq)]
pub enum VerifyError {
    /// The `kid` names no key this node holds (yet).
    UnknownKey,
    /// Anything else: bad signature, algorithm, claims, format.
    Invalid,
}

/// The key id of a configured secret: derived from the secret, so replacing it
/// changes the id and tokens of the old secret are told apart.
fn configured_kid(secret: &Secret) -> String {
    let digest = Sha256::digest(secret.expose().as_bytes());
    format!("cfg-{}", hex::encode(&digest[..6]))
}

impl AuthKeys {
    /// Keys from the settings (`jwt_secret` and `jwt_previous_secrets`), or
    /// from the `signing_keys` table (the first is generated on first start;
    /// the first node to insert it wins a race).
    pub async fn load(settings: &Settings, db: &Database) -> Result<AuthKeys, DbError> {
        let (source, ring) = match &settings.jwt_secret {
            Some(secret) => {
                let mut verifying = vec![(
                    configured_kid(secret),
                    DecodingKey::from_secret(secret.expose().as_bytes()),
                )];
                for old in &settings.jwt_previous_secrets {
                    verifying.push((
                        configured_kid(old),
                        DecodingKey::from_secret(old.expose().as_bytes()),
                    ));
                }
                let ring = Keyring {
                    signing_kid: configured_kid(secret),
                    signing: EncodingKey::from_secret(secret.expose().as_bytes()),
                    verifying,
                };
                (KeySource::Configured, ring)
            }
            None => {
                ensure_first_key(db).await?;
                (KeySource::Database, stored_ring(db).await?)
            }
        };
        Ok(AuthKeys::with_ring(source, ring, settings))
    }

    /// Keys from one raw secret (tests and tools).
    pub fn new(kid: String, secret: &[u8], settings: &Settings) -> AuthKeys {
        let ring = Keyring {
            signing_kid: kid.clone(),
            signing: EncodingKey::from_secret(secret),
            verifying: vec![(kid, DecodingKey::from_secret(secret))],
        };
        AuthKeys::with_ring(KeySource::Configured, ring, settings)
    }

    fn with_ring(source: KeySource, ring: Keyring, settings: &Settings) -> AuthKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[settings.jwt_issuer.as_str()]);
        validation.set_audience(&[settings.jwt_audience.as_str()]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        // A token whose `nbf` lies in the future is refused too.
        validation.validate_nbf = true;
        AuthKeys {
            source,
            ring: Arc::new(std::sync::RwLock::new(ring)),
            last_forced_reload: Arc::new(std::sync::Mutex::new(None)),
            validation,
            issuer: settings.jwt_issuer.clone(),
            audience: settings.jwt_audience.clone(),
            access_ttl_secs: settings.access_token_ttl_secs,
            refresh_ttl_secs: settings.refresh_token_ttl_secs,
        }
    }

    fn read_ring(&self) -> std::sync::RwLockReadGuard<'_, Keyring> {
        // A poisoned lock only means a panic elsewhere while swapping the ring;
        // the ring itself is always whole (it is replaced in one assignment).
        self.ring
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lifetime of an access token, in seconds.
    pub fn access_ttl_secs(&self) -> u64 {
        self.access_ttl_secs
    }

    /// Lifetime of a refresh token, in seconds.
    pub fn refresh_ttl_secs(&self) -> u64 {
        self.refresh_ttl_secs
    }

    /// The key id new tokens are signed with.
    pub fn signing_kid(&self) -> String {
        self.read_ring().signing_kid.clone()
    }

    /// Re-reads the stored keys (no-op for configured secrets): picks up a key
    /// made by `fieldsync keys rotate` on any node, and drops retired ones.
    pub async fn reload(&self, db: &Database) -> Result<(), DbError> {
        if self.source != KeySource::Database {
            return Ok(());
        }
        let ring = stored_ring(db).await?;
        let mut guard = self
            .ring
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.signing_kid != ring.signing_kid {
            tracing::info!(kid = %ring.signing_kid, "signing with a new key");
        }
        *guard = ring;
        Ok(())
    }

    /// A signed access token for `user` on `device`.
    pub fn access_token(&self, user: &UserRow, device: DeviceId) -> Result<String> {
        let now = now_secs();
        let claims = Claims {
            sub: user.id,
            org: user.org,
            role: user.role,
            dev: device,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            exp: now.saturating_add(i64::try_from(self.access_ttl_secs).unwrap_or(i64::MAX)),
        };
        let ring = self.read_ring();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(ring.signing_kid.clone());
        jsonwebtoken::encode(&header, &claims, &ring.signing)
            .map_err(|e| Error::internal(format!("signing a token failed: {e}")))
    }

    /// The claims of a valid token.
    pub fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Invalid)?;
        let kid = header.kid.ok_or(VerifyError::Invalid)?;
        let ring = self.read_ring();
        let key = ring
            .verifying
            .iter()
            .find(|(k, _)| *k == kid)
            .map(|(_, key)| key)
            .ok_or(VerifyError::UnknownKey)?;
        jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| VerifyError::Invalid)
    }

    /// [`verify`](Self::verify), reloading the stored keys once when the token
    /// names a key this node does not hold (another node may have rotated).
    /// Forced reloads are spaced out so forged key ids cannot hammer the database.
    pub async fn authenticate(&self, token: &str, db: &Database) -> Result<Claims> {
        match self.verify(token) {
            Ok(claims) => Ok(claims),
            Err(VerifyError::Invalid) => Err(Error::InvalidToken),
            Err(VerifyError::UnknownKey) => {
                if self.source != KeySource::Database || !self.may_force_reload() {
                    return Err(Error::InvalidToken);
                }
                self.reload(db).await?;
                self.verify(token).map_err(|_| Error::InvalidToken)
            }
        }
    }

    fn may_force_reload(&self) -> bool {
        let mut last = self
            .last_forced_reload
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        match *last {
            Some(at) if now.duration_since(at).as_secs() < FORCED_RELOAD_SECS => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }
}

/// Generates the first stored key if the table is empty. Insert-then-read, so
/// two nodes starting together on one database end up with the same key.
async fn ensure_first_key(db: &Database) -> Result<(), DbError> {
    let mut fresh = [0u8; 32];
    rand::fill(&mut fresh[..]);
    db::keys::insert_key_if_missing(db, FIRST_STORED_KID, &fresh[..]).await
}

/// The stored keys in force: the newest signs, all verify.
async fn stored_ring(db: &Database) -> Result<Keyring, DbError> {
    let rows = db::keys::keys_in_force(db).await?;
    let Some((signing_kid, signing_secret)) = rows.first().cloned() else {
        return Err(DbError::Corrupt(
            "no signing key is in force; run `fieldsync keys rotate`".to_owned(),
        ));
    };
    Ok(Keyring {
        signing_kid,
        signing: EncodingKey::from_secret(&signing_secret),
        verifying: rows
            .iter()
            .map(|(kid, secret)| (kid.clone(), DecodingKey::from_secret(secret)))
            .collect(),
    })
}

/// Every stored key, newest first.
pub async fn stored_keys(db: &Database) -> Result<Vec<StoredKey>, DbError> {
    db::keys::stored_keys(db).await
}

/// Makes a new stored key, which signs from now on (on other nodes within
/// [`KEY_RELOAD_SECS`]). Older keys keep verifying until retired.
pub async fn rotate_key(db: &Database) -> Result<String, DbError> {
    let mut secret = [0u8; 32];
    rand::fill(&mut secret[..]);
    let mut id = [0u8; 6];
    rand::fill(&mut id[..]);
    let kid = format!("db-{}", hex::encode(id));
    // One second later than the newest key at least, so "newest" is never a tie.
    let newest = stored_keys(db).await?.first().map_or(0, |k| k.created_at);
    let created_at = now_secs().max(newest.saturating_add(1));
    db::keys::insert_key(db, &kid, &secret[..], created_at).await?;
    Ok(kid)
}

/// Why a key could not be retired.
#[derive(Debug, thiserror::Error)]
pub enum RetireError {
    /// No such key.
    #[error("there is no signing key {0:?}; `fieldsync keys list` shows them")]
    Unknown(String),
    /// Retiring it would leave nothing to sign with.
    #[error("{0:?} is the only key in force; run `fieldsync keys rotate` first")]
    LastKey(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Whether `kid` may be retired given the stored `keys`: `Ok(true)` when it
/// must be, `Ok(false)` when it already is. The last key in force never is,
/// so there is always one to sign with.
fn check_retire(keys: &[StoredKey], kid: &str) -> Result<bool, RetireError> {
    let Some(key) = keys.iter().find(|k| k.kid == kid) else {
        return Err(RetireError::Unknown(kid.to_owned()));
    };
    if key.retired_at.is_some() {
        return Ok(false);
    }
    if keys.iter().filter(|k| k.retired_at.is_none()).count() < 2 {
        return Err(RetireError::LastKey(kid.to_owned()));
    }
    Ok(true)
}

/// Retires a stored key: tokens it signed are refused from the next reload on
/// (at once on a node that restarts, within [`KEY_RELOAD_SECS`] elsewhere).
pub async fn retire_key(db: &Database, kid: &str) -> Result<(), RetireError> {
    let keys = stored_keys(db).await?;
    if check_retire(&keys, kid)? {
        db::keys::retire_key(db, kid).await?;
    }
    Ok(())
}

/// The caller a verified `user` on `device` is: role, team and territory from
/// the database, the device's Automerge actor, today's window for the role.
fn caller_of(ctx: &Context, user: UserRow, device: &DeviceRow) -> Result<Caller> {
    let actor_bytes = hex::decode(&device.actor_id)
        .map_err(|_| Error::internal(format!("device {} has a malformed actor id", device.id)))?;
    Ok(Caller {
        actor: Actor::on_device(user.id, user.role, device.id),
        org: user.org,
        team: user.team,
        territory: user.territory,
        display_name: user.display_name,
        actor_id: automerge::ActorId::from(actor_bytes),
        window: ctx.scope.window(user.role, now_secs().saturating_mul(1000)),
    })
}

/// Notes the device's activity, when the row just read says the minute's
/// update is due (most requests then write nothing); not worth failing a
/// request over.
async fn touch(db: &Database, device: &DeviceRow) {
    if device.last_seen_at >= now_secs().saturating_sub(db::devices::TOUCH_EVERY_SECS) {
        return;
    }
    if let Err(e) = db::devices::touch_device(db, device.id).await {
        tracing::warn!(error = %e, "could not update the device's last-seen time");
    }
}

/// The caller of a request that presented the access token `token`: a valid
/// token whose device is its user's and not revoked, and whose user is not
/// disabled. The request is counted against the device's rate limit once the
/// token is known to be genuine, before any database work.
pub async fn authenticate(ctx: &Context, token: &str) -> Result<Caller> {
    let claims = ctx.keys.authenticate(token, &ctx.db).await?;
    // Counted once the token is genuine, before any database work.
    ctx.limits.request(&claims.dev.to_string())?;
    // The device and the user in one statement: this runs on every request.
    let (device, user) = account_rows::device_and_user(&ctx.db, claims.dev, claims.sub)
        .await?
        .ok_or(Error::InvalidToken)?;
    let user = session_of(claims.sub, &device, user)?;
    if user.org != claims.org {
        return Err(Error::InvalidToken);
    }
    touch(&ctx.db, &device).await;
    caller_of(ctx, user, &device)
}

/// Whether `user`'s session on `device` (if any) still holds: the device is
/// theirs and not revoked, and they are not disabled. Asked now and then by
/// live connections; a database that does not answer keeps the connection
/// (a blip should not disconnect every device of a node).
pub async fn session_holds(ctx: &Context, user: UserId, device: Option<DeviceId>) -> bool {
    let outcome = async {
        let user = match device {
            Some(device) => {
                let Some((row, found)) =
                    account_rows::device_and_user(&ctx.db, device, user).await?
                else {
                    return Ok(false);
                };
                check_session_device(row.user, row.revoked_at.is_some(), user)?;
                found
            }
            None => account_rows::user_by_id(&ctx.db, user).await?,
        };
        Ok::<_, Error>(user.is_some_and(|u| !u.disabled))
    }
    .await;
    match outcome {
        Ok(holds) => holds,
        Err(Error::Unavailable(_)) => true,
        Err(_) => false,
    }
}

/// The user of `device`, if the device is theirs, not revoked, and they are
/// not disabled.
pub async fn live_session(db: &Database, user: UserId, device: &DeviceRow) -> Result<UserRow> {
    let found = account_rows::user_by_id(db, user).await?;
    session_of(user, device, found)
}

/// [`live_session`]'s answer from rows already read: `found` is the row of
/// `user`, if any.
fn session_of(user: UserId, device: &DeviceRow, found: Option<UserRow>) -> Result<UserRow> {
    check_session_device(device.user, device.revoked_at.is_some(), user)?;
    let user = found.ok_or(Error::InvalidToken)?;
    if user.disabled {
        return Err(Error::AccountDisabled);
    }
    Ok(user)
}

/// A new opaque refresh token: 32 random bytes, hex.
fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes[..]);
    hex::encode(bytes)
}

/// A device's sign-in: what login and refresh answer.
#[derive(Debug, Clone)]
pub struct Session {
    /// Short-lived bearer token.
    pub access_token: String,
    /// Single-use token for the next pair.
    pub refresh_token: String,
    /// Seconds until `access_token` expires.
    pub expires_in: u64,
    /// The user.
    pub user: UserRow,
    /// The device.
    pub device: DeviceRow,
}

fn session(
    keys: &AuthKeys,
    user: UserRow,
    device: DeviceRow,
    refresh_token: String,
) -> Result<Session> {
    Ok(Session {
        access_token: keys.access_token(&user, device.id)?,
        refresh_token,
        expires_in: keys.access_ttl_secs,
        user,
        device,
    })
}

/// A device's login attempt.
#[derive(Clone)]
pub struct Login {
    /// Organisation slug.
    pub org: String,
    /// Email.
    pub email: String,
    /// Password.
    pub password: String,
    /// The device.
    pub device: DeviceInfo,
    /// The client's address (per-address login limit); `None` when unknown.
    pub from: Option<IpAddr>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("Login")
            .field("org", &self.org)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

/// The user whose credentials these are, if they may sign in: counted against
/// the login rate limits (per client address `from`, then per account), the password checked (even with no such user, so the
/// answer's timing reveals nothing), not disabled.
async fn check_credentials(
    ctx: &Context,
    from: Option<IpAddr>,
    org: &str,
    email: &str,
    password: String,
) -> Result<UserRow> {
    ctx.limits.login_from(from)?;
    ctx.limits.login(org, email)?;
    let user = accounts::find_login(&ctx.db, org, email).await?;
    // Runs even without a user so the answer's timing reveals nothing.
    if !accounts::verify_password(password, user.as_ref()).await {
        return Err(Error::InvalidCredentials);
    }
    let user = user.ok_or(Error::InvalidCredentials)?;
    if user.disabled {
        return Err(Error::AccountDisabled);
    }
    Ok(user)
}

/// Signs a user in on a device: a short-lived access token and a single-use
/// refresh token.
pub async fn login(ctx: &Context, login: Login) -> Result<Session> {
    check_reported("device.platform", &login.device.platform)?;
    check_reported("device.app_version", &login.device.app_version)?;
    if !login_within_bounds(&login.org, &login.password) {
        return Err(Error::InvalidCredentials);
    }
    let user = check_credentials(ctx, login.from, &login.org, &login.email, login.password).await?;
    let device =
        accounts::register_device(&ctx.db, &user, &login.device, ctx.new_devices_per_day).await?;
    let refresh_token = new_refresh_token();
    account_rows::store_refresh_token(
        &ctx.db,
        &refresh_token,
        user.id,
        device.id,
        ctx.keys.refresh_ttl_secs,
    )
    .await?;
    tracing::info!(user = %user.id, device = %device.id, "login");
    session(&ctx.keys, user, device, refresh_token)
}

/// How long after a refresh token was rotated presenting it again counts as a
/// retry after a lost answer rather than a reuse, provided the token it was
/// rotated to was never presented (`db::accounts::rotate_refresh_token`). A
/// phone on a bad network loses answers; a revoked device wipes its store.
/// The cost: someone who copied a token and rotated it first keeps the access
/// token they got until it expires (their refresh token is revoked), instead
/// of losing it at once.
pub const REFRESH_RETRY_GRACE_SECS: i64 = 30;

/// Trades a refresh token for a new pair. A token presented twice revokes its
/// device: both holders (the device and whoever copied the token) lose their
/// refresh tokens, their access tokens at their next request and their live
/// connections at once; a retry after a lost answer is not a reuse
/// ([`REFRESH_RETRY_GRACE_SECS`]).
pub async fn refresh(ctx: &Context, presented: &str) -> Result<Session> {
    if presented.len() > MAX_REFRESH_TOKEN_BYTES {
        return Err(Error::InvalidRefreshToken);
    }
    let new_token = new_refresh_token();
    let rotation = account_rows::rotate_refresh_token(
        &ctx.db,
        presented,
        &new_token,
        ctx.keys.refresh_ttl_secs,
        REFRESH_RETRY_GRACE_SECS,
    )
    .await?;
    let (user, device) = match rotation {
        Rotation::Rotated { user, device } => (user, device),
        Rotation::Reused { user, device } => {
            tracing::warn!(
                user = %user,
                device = %device,
                "a rotated refresh token was presented again; its device is revoked"
            );
            accounts::end_live_connections(ctx, user, Ended::Device(device)).await;
            return Err(Error::InvalidRefreshToken);
        }
        Rotation::Invalid => return Err(Error::InvalidRefreshToken),
    };
    let device = db::devices::device_by_id(&ctx.db, device)
        .await?
        .ok_or(Error::InvalidRefreshToken)?;
    let user = live_session(&ctx.db, user, &device).await?;
    session(&ctx.keys, user, device, new_token)
}

/// Signs a manager or administrator in to the pages: checks the credentials
/// and the role, registers the browser as a `web` device and stores the
/// session. Answers the session's cookie token (32 random bytes, hex), which
/// only the browser keeps.
pub async fn start_web_session(
    ctx: &Context,
    from: Option<IpAddr>,
    org: &str,
    email: &str,
    password: String,
) -> Result<String> {
    if !login_within_bounds(org, &password) || email.len() > MAX_EMAIL_BYTES {
        return Err(Error::InvalidCredentials);
    }
    let user = check_credentials(ctx, from, org, email, password).await?;
    if !user.role.is_back_office() {
        return Err(Error::Forbidden(
            "these pages are for managers and administrators; reps and technicians use the app"
                .into(),
        ));
    }
    let info = DeviceInfo {
        id: DeviceId::new(),
        platform: "web".into(),
        app_version: format!("web {}", env!("CARGO_PKG_VERSION")),
    };
    let device = accounts::register_device(&ctx.db, &user, &info, ctx.new_devices_per_day).await?;
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes[..]);
    let token = hex::encode(bytes);
    let now = now_secs();
    db::web_sessions::insert(
        &ctx.db,
        &token,
        device.id,
        user.id,
        now,
        now.saturating_add(WEB_SESSION_SECS),
    )
    .await?;
    tracing::info!(user = %user.id, device = %device.id, "web login");
    Ok(token)
}

/// The caller of a page request whose session cookie token is `token`.
///
/// `Ok(None)` means "sign in again": no such session, ended or expired, or
/// its device gone or revoked. A disabled account, a user who is no longer a
/// manager or administrator, the rate limit and failures are errors.
pub async fn web_session(ctx: &Context, token: &str) -> Result<Option<Caller>> {
    let Some((device, user)) = db::web_sessions::live(&ctx.db, token, now_secs()).await? else {
        return Ok(None);
    };
    ctx.limits.request(&device.to_string())?;
    let Some(device) = db::devices::device_by_id(&ctx.db, device).await? else {
        return Ok(None);
    };
    let user = match live_session(&ctx.db, user, &device).await {
        Ok(u) => u,
        Err(Error::DeviceRevoked | Error::InvalidToken) => return Ok(None),
        Err(e) => return Err(e),
    };
    if !user.role.is_back_office() {
        return Err(Error::Forbidden(
            "these pages are for managers and administrators".into(),
        ));
    }
    touch(&ctx.db, &device).await;
    caller_of(ctx, user, &device).map(Some)
}

/// Signs out of the pages: ends the sessions of the caller's browser device
/// and revokes the device.
pub async fn end_web_session(ctx: &Context, caller: &Caller) -> Result<()> {
    let Some(device) = caller.device() else {
        return Err(Error::internal("a page session without a device"));
    };
    db::web_sessions::end_for_device(&ctx.db, device, now_secs()).await?;
    db::devices::revoke_device(&ctx.db, device).await?;
    tracing::info!(user = %caller.user(), device = %device, "web logout");
    Ok(())
}

/// How long an ended or expired browser session (and its `web` device) is
/// kept before [`remove_ended_web_sessions`] purges it: a day, so the
/// new-devices cap (per 24 hours) still counts the devices of the day, and a
/// manager still sees yesterday's browser sessions in their devices.
pub const ENDED_WEB_SESSIONS_KEPT_SECS: i64 = 24 * 3600;

/// Removes browser sessions that ended or expired more than
/// [`ENDED_WEB_SESSIONS_KEPT_SECS`] ago, with their `web` devices. Answers how
/// many sessions and devices went.
pub async fn remove_ended_web_sessions(db: &Database) -> Result<(u64, u64)> {
    let before = now_secs().saturating_sub(ENDED_WEB_SESSIONS_KEPT_SECS);
    Ok(db::web_sessions::purge(db, before).await?)
}

/// [`remove_ended_web_sessions`] every `interval`, on every node (each row
/// goes once, whichever node gets to it); runs until aborted.
pub async fn clean_web_sessions_periodically(db: Database, interval: std::time::Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match remove_ended_web_sessions(&db).await {
            Ok((0, 0)) => {}
            Ok((sessions, devices)) => tracing::info!(
                sessions,
                devices,
                "removed ended browser sessions and their devices"
            ),
            Err(e) => tracing::warn!(error = %e, "could not remove ended browser sessions"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str, retired: bool) -> StoredKey {
        StoredKey {
            kid: kid.into(),
            created_at: 1,
            retired_at: retired.then_some(2),
        }
    }

    #[test]
    fn an_older_key_is_retired_while_a_newer_one_signs() {
        let keys = [key("db-new", false), key("db-old", false)];
        assert!(matches!(check_retire(&keys, "db-old"), Ok(true)));
    }

    #[test]
    fn the_last_key_in_force_is_never_retired() {
        let keys = [key("db-new", false), key("db-old", true)];
        assert!(matches!(
            check_retire(&keys, "db-new"),
            Err(RetireError::LastKey(_))
        ));
    }

    #[test]
    fn retiring_a_retired_key_again_changes_nothing() {
        let keys = [key("db-new", false), key("db-old", true)];
        assert!(matches!(check_retire(&keys, "db-old"), Ok(false)));
    }

    #[test]
    fn an_unknown_key_cannot_be_retired() {
        let keys = [key("db-new", false)];
        assert!(matches!(
            check_retire(&keys, "db-nope"),
            Err(RetireError::Unknown(_))
        ));
    }

    fn settings() -> Settings {
        Settings::default()
    }

    #[test]
    fn a_token_verifies_with_its_key_and_not_with_another() {
        let keys = AuthKeys::new(
            "k1".into(),
            b"0123456789abcdef0123456789abcdef",
            &settings(),
        );
        let user = UserRow {
            id: UserId::new(),
            org: OrgId::new(),
            email: "a@x".into(),
            display_name: "a".into(),
            role: Role::Rep,
            team: None,
            territory: None,
            disabled: false,
            password_hash: String::new(),
        };
        let device = DeviceId::new();
        let token = keys.access_token(&user, device).expect("token");
        let claims = keys.verify(&token).expect("valid");
        assert_eq!((claims.sub, claims.dev), (user.id, device));
        let other = AuthKeys::new(
            "k1".into(),
            b"another secret of 32 bytes......",
            &settings(),
        );
        assert_eq!(other.verify(&token).err(), Some(VerifyError::Invalid));
        let renamed = AuthKeys::new(
            "k2".into(),
            b"0123456789abcdef0123456789abcdef",
            &settings(),
        );
        assert_eq!(renamed.verify(&token).err(), Some(VerifyError::UnknownKey));
    }
}
