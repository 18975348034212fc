//! Server settings, resolved in four layers: defaults in code, then an optional
//! TOML file (`--config` / `FIELDSYNC_CONFIG`), then environment variables
//! (`FIELDSYNC_…`), then command-line flags. Clap reads the last two layers
//! together (a flag wins over its variable), so [`SettingsArgs`] holds only what
//! was given and [`SettingsArgs::resolve`] fills the gaps from the file and the
//! defaults.
//!
//! Secrets (the JWT signing key, a password inside the database URL) never reach
//! `Debug` output or logs, and never come from a flag: a flag's value is in the
//! process list for every user of the machine to read. The signing keys come
//! from the environment (`FIELDSYNC_JWT_SECRET`, `FIELDSYNC_JWT_PREVIOUS_SECRETS`),
//! a file (`--jwt-secret-file`) or the settings file.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::domain::address::IpNet;
use crate::domain::scope::ScopeSettings;

/// Shortest accepted JWT signing key, in bytes (HS256 wants at least 256 bits).
pub const MIN_JWT_SECRET_LEN: usize = 32;

/// A secret string whose `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// The resolved settings the server runs with.
#[derive(Clone)]
pub struct Settings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory of the embedded SQLite database (created on first run).
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; `None` means SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// Largest number of pooled database connections ([`default_pool_size`]
    /// unless set).
    pub db_max_connections: u32,
    /// HS256 signing key. `None`: a key generated on first start and kept in the
    /// database, so every node sharing it agrees and restarts log nobody out.
    pub jwt_secret: Option<Secret>,
    /// Earlier `jwt_secret`s, still accepted on tokens they signed (verify only):
    /// rotating a configured key logs nobody out. Drop one after an access-token lifetime.
    pub jwt_previous_secrets: Vec<Secret>,
    /// `iss` claim written and required.
    pub jwt_issuer: String,
    /// `aud` claim written and required.
    pub jwt_audience: String,
    /// Lifetime of an access token, in seconds.
    pub access_token_ttl_secs: u64,
    /// Lifetime of a refresh token, in seconds.
    pub refresh_token_ttl_secs: u64,
    /// Authenticated requests one device may make per minute, per server node
    /// (0: no limit).
    pub requests_per_minute: u32,
    /// Login attempts per organisation and email per minute, per node (0: no limit).
    pub logins_per_minute: u32,
    /// Login attempts per client address per minute, per node (0: no limit),
    /// whatever the organisation and email: one address cannot try many
    /// accounts. The address is the peer's, or what a trusted proxy reports.
    pub logins_per_minute_per_address: u32,
    /// Proxies whose `X-Forwarded-For` is believed (addresses or networks);
    /// empty: the header is ignored (see [`crate::domain::address`]).
    pub trusted_proxies: Vec<IpNet>,
    /// New devices one user may register per day (24 hours), browser sign-ins
    /// included (0: no limit); a login beyond it answers 429 `too_many_devices`.
    pub new_devices_per_day: u32,
    /// Longest time a request may take until its answer starts, reading its
    /// body included (0: none). The live channel and attachment chunk uploads
    /// are exempt (they are long by nature); they have the body-read timeout.
    pub request_timeout_secs: u64,
    /// Longest time a client may take to send a request's headers (0: none):
    /// a client trickling its headers byte by byte is disconnected.
    pub header_read_timeout_secs: u64,
    /// Longest wait for the next piece of a request body (0: none): an upload
    /// that stalls is cut, one that keeps moving may take as long as it needs.
    pub body_read_timeout_secs: u64,
    /// The managers' pages: cookies and the cleanup of browser sessions
    /// (the `[web]` table of the file).
    pub web: WebSettings,
    /// Live streams one device may hold open at once, per node (0: no limit;
    /// an app needs one, a few more cover a reconnect racing the old stream's end).
    pub live_streams_per_device: usize,
    /// Live streams one user may hold open at once over all their devices,
    /// per node (0: no limit).
    pub live_streams_per_user: usize,
    /// Which dated records reach each role's devices (see [`crate::domain::scope`]).
    pub scope: ScopeSettings,
    /// Where attachments live and how long an unfinished upload is kept
    /// (the `[attachments]` table of the file).
    pub attachments: AttachmentSettings,
    /// When planned visits count as missed (the `[visits]` table of the file).
    pub visits: VisitSettings,
    /// Service jobs: the roll-up sweep (the `[jobs]` table of the file).
    pub jobs: JobSettings,
}

/// The `[jobs]` table of the settings file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobSettings {
    /// How often each node re-derives the status of every job not yet done
    /// whose status disagrees with its assignments (a roll-up lost to a crash
    /// between a push and its roll-up), in seconds (0: never).
    pub sweep_interval_secs: u64,
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            sweep_interval_secs: 300,
        }
    }
}

/// The `[visits]` table of the settings file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VisitSettings {
    /// A planned visit nobody started is marked `missed` this many minutes
    /// after its planned end (its start when it has no end).
    pub missed_after_minutes: u64,
    /// How often each node looks for missed visits, in seconds (0: never).
    pub missed_check_interval_secs: u64,
}

impl Default for VisitSettings {
    fn default() -> Self {
        VisitSettings {
            missed_after_minutes: 120,
            missed_check_interval_secs: 60,
        }
    }
}

/// The `[web]` table of the settings file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSettings {
    /// Session cookies are `Secure` and named with the `__Host-` prefix, so a
    /// browser sends them only over HTTPS. Turn off only to try the pages over
    /// plain HTTP (`serve --demo` does).
    pub secure_cookies: bool,
    /// How often each node removes ended and expired browser sessions, with
    /// their `web` devices, a day after they ended (0: never).
    pub cleanup_interval_secs: u64,
}

impl Default for WebSettings {
    fn default() -> Self {
        WebSettings {
            secure_cookies: true,
            cleanup_interval_secs: 3600,
        }
    }
}

/// The request timeouts a node serves with (`None`: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Until the answer starts (the live channel and chunk uploads exempt).
    pub request: Option<Duration>,
    /// For the request line and headers.
    pub headers: Option<Duration>,
    /// Between two pieces of a request body.
    pub body_read: Option<Duration>,
}

/// Where attachment bytes are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobStoreKind {
    /// Files under `<data_dir>/attachments` (one node, or a shared filesystem).
    #[default]
    Filesystem,
    /// An S3-compatible object store: several nodes share one bucket.
    S3,
}

/// The `[attachments]` table of the settings file.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttachmentSettings {
    /// `filesystem` (default) or `s3`.
    pub store: BlobStoreKind,
    /// The bucket (`s3`).
    pub bucket: Option<String>,
    /// The store's URL, e.g. `https://s3.eu-west-1.amazonaws.com` or a MinIO
    /// address [default: AWS, or `AWS_ENDPOINT`].
    pub endpoint: Option<String>,
    /// The region [default: `AWS_DEFAULT_REGION`/`AWS_REGION`, else us-east-1].
    pub region: Option<String>,
    /// Allow a plain `http://` endpoint (a store on the same private network).
    pub allow_http: bool,
    /// The access key id [default: `AWS_ACCESS_KEY_ID`].
    pub access_key_id: Option<String>,
    /// The secret access key [default: `AWS_SECRET_ACCESS_KEY`].
    pub secret_access_key: Option<Secret>,
    /// An upload that has not moved for this many hours is abandoned: it is
    /// removed with its chunks.
    pub abandoned_after_hours: u64,
    /// How often each node looks for abandoned uploads, in seconds (0: never;
    /// `fieldsync attachments cleanup` still works).
    pub cleanup_interval_secs: u64,
}

impl Default for AttachmentSettings {
    fn default() -> Self {
        AttachmentSettings {
            store: BlobStoreKind::Filesystem,
            bucket: None,
            endpoint: None,
            region: None,
            allow_http: false,
            access_key_id: None,
            secret_access_key: None,
            abandoned_after_hours: 72,
            cleanup_interval_secs: 3600,
        }
    }
}

impl fmt::Debug for AttachmentSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachmentSettings")
            .field("store", &self.store)
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .field("abandoned_after_hours", &self.abandoned_after_hours)
            .field("cleanup_interval_secs", &self.cleanup_interval_secs)
            .finish()
    }
}

impl AttachmentSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        if self.store == BlobStoreKind::S3 && self.bucket.as_deref().is_none_or(str::is_empty) {
            return Err(SettingsError::Invalid(
                "[attachments] store = \"s3\" needs a bucket".to_owned(),
            ));
        }
        if self.abandoned_after_hours == 0 {
            return Err(SettingsError::Invalid(
                "[attachments] abandoned_after_hours must be at least 1".to_owned(),
            ));
        }
        Ok(())
    }
}

/// The pool's size when none is set: twice the machine's cores and two
/// more, the usual sizing of a connection pool against the cores of the
/// database that serves it (connections past that wait for a core on the
/// database's side, and switching among them costs it CPU). The machine's
/// own cores stand for the database's: right for SQLite and for PostgreSQL
/// on the same machine; a larger PostgreSQL elsewhere is worth a larger
/// setting (docs/operations.md).
pub fn default_pool_size() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    u32::try_from(cores)
        .unwrap_or(u32::MAX / 2)
        .saturating_mul(2)
        .saturating_add(2)
        .max(4)
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            database_url: None,
            db_max_connections: default_pool_size(),
            jwt_secret: None,
            jwt_previous_secrets: Vec::new(),
            jwt_issuer: "fieldsync".to_owned(),
            jwt_audience: "fieldsync-api".to_owned(),
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            requests_per_minute: 600,
            logins_per_minute: 10,
            logins_per_minute_per_address: 20,
            trusted_proxies: Vec::new(),
            new_devices_per_day: 20,
            request_timeout_secs: 120,
            header_read_timeout_secs: 30,
            body_read_timeout_secs: 30,
            web: WebSettings::default(),
            live_streams_per_device: 4,
            live_streams_per_user: 16,
            scope: ScopeSettings::default(),
            attachments: AttachmentSettings::default(),
            visits: VisitSettings::default(),
            jobs: JobSettings::default(),
        }
    }
}

impl Settings {
    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("fieldsync.db").display()),
        }
    }

    /// The request timeouts in effect.
    pub fn timeouts(&self) -> Timeouts {
        let secs = |n: u64| (n > 0).then(|| Duration::from_secs(n));
        Timeouts {
            request: secs(self.request_timeout_secs),
            headers: secs(self.header_read_timeout_secs),
            body_read: secs(self.body_read_timeout_secs),
        }
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if let Some(secret) = &self.jwt_secret
            && secret.expose().len() < MIN_JWT_SECRET_LEN
        {
            return Err(SettingsError::Invalid(format!(
                "jwt_secret must be at least {MIN_JWT_SECRET_LEN} bytes; \
                 generate one with `openssl rand -hex 32`, or leave it unset to let the server keep one in the database"
            )));
        }
        if self
            .jwt_previous_secrets
            .iter()
            .any(|s| s.expose().len() < MIN_JWT_SECRET_LEN)
        {
            return Err(SettingsError::Invalid(format!(
                "every jwt_previous_secrets entry must be at least {MIN_JWT_SECRET_LEN} bytes"
            )));
        }
        self.scope.validate().map_err(SettingsError::Invalid)?;
        self.attachments.validate()?;
        if self.access_token_ttl_secs == 0 || self.refresh_token_ttl_secs == 0 {
            return Err(SettingsError::Invalid(
                "token lifetimes must be at least one second".to_owned(),
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database_url", &redact(&self.database_url()))
            .field("db_max_connections", &self.db_max_connections)
            .field("jwt_secret", &self.jwt_secret)
            .field("jwt_previous_secrets", &self.jwt_previous_secrets)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .field("access_token_ttl_secs", &self.access_token_ttl_secs)
            .field("refresh_token_ttl_secs", &self.refresh_token_ttl_secs)
            .field("requests_per_minute", &self.requests_per_minute)
            .field("logins_per_minute", &self.logins_per_minute)
            .field(
                "logins_per_minute_per_address",
                &self.logins_per_minute_per_address,
            )
            .field("trusted_proxies", &self.trusted_proxies)
            .field("new_devices_per_day", &self.new_devices_per_day)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .field("header_read_timeout_secs", &self.header_read_timeout_secs)
            .field("body_read_timeout_secs", &self.body_read_timeout_secs)
            .field("web", &self.web)
            .field("scope", &self.scope)
            .field("attachments", &self.attachments)
            .field("visits", &self.visits)
            .field("jobs", &self.jobs)
            .finish()
    }
}

/// Settings that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The config file could not be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has unknown keys.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's explanation.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid settings: {0}")]
    Invalid(String),
}

/// The TOML file's keys: the same names as the flags, with underscores.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    db_max_connections: Option<u32>,
    jwt_secret: Option<Secret>,
    jwt_secret_file: Option<PathBuf>,
    jwt_previous_secrets: Option<Vec<Secret>>,
    jwt_issuer: Option<String>,
    jwt_audience: Option<String>,
    access_token_ttl_secs: Option<u64>,
    refresh_token_ttl_secs: Option<u64>,
    requests_per_minute: Option<u32>,
    logins_per_minute: Option<u32>,
    logins_per_minute_per_address: Option<u32>,
    trusted_proxies: Option<Vec<IpNet>>,
    new_devices_per_day: Option<u32>,
    request_timeout_secs: Option<u64>,
    header_read_timeout_secs: Option<u64>,
    body_read_timeout_secs: Option<u64>,
    web: Option<WebSettings>,
    live_streams_per_device: Option<usize>,
    live_streams_per_user: Option<usize>,
    scope: Option<ScopeSettings>,
    attachments: Option<AttachmentSettings>,
    visits: Option<VisitSettings>,
    jobs: Option<JobSettings>,
}

/// The flags and environment variables of every command that opens the database.
/// Every field is optional so that an absent flag lets the file or the default apply.
#[derive(Clone, Default, clap::Args)]
pub struct SettingsArgs {
    /// TOML settings file (keys as the flags, with underscores).
    #[arg(long, env = "FIELDSYNC_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "FIELDSYNC_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Directory for the embedded SQLite database, created on first run [default: data].
    #[arg(long, env = "FIELDSYNC_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Database URL: `sqlite://…` or `postgres://…` [default: SQLite in the data directory].
    #[arg(long, env = "FIELDSYNC_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Largest number of pooled database connections [default: twice the cores, plus two].
    #[arg(long, env = "FIELDSYNC_DB_MAX_CONNECTIONS")]
    pub db_max_connections: Option<u32>,

    /// The HS256 signing key of access tokens, from `FIELDSYNC_JWT_SECRET`
    /// only (never a flag: the process list would show it).
    #[arg(skip = env_secret("FIELDSYNC_JWT_SECRET"))]
    pub jwt_secret: Option<Secret>,

    /// File holding the HS256 signing key for access tokens, at least 32 bytes
    /// (or give the key in FIELDSYNC_JWT_SECRET) [default: generated and kept in the database].
    #[arg(long, env = "FIELDSYNC_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,

    /// Earlier signing keys still accepted on the tokens they signed, from
    /// `FIELDSYNC_JWT_PREVIOUS_SECRETS` (comma-separated) only.
    #[arg(skip = env_secrets("FIELDSYNC_JWT_PREVIOUS_SECRETS"))]
    pub jwt_previous_secrets: Option<Vec<Secret>>,

    /// Gone: refused with a message saying where the key goes instead.
    #[arg(long = "jwt-secret", hide = true, value_name = "KEY")]
    pub removed_jwt_secret_flag: Option<String>,

    /// Gone: refused with a message saying where the keys go instead.
    #[arg(long = "jwt-previous-secrets", hide = true, value_name = "KEYS")]
    pub removed_jwt_previous_secrets_flag: Option<String>,

    /// `iss` claim of access tokens [default: fieldsync].
    #[arg(long, env = "FIELDSYNC_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// `aud` claim of access tokens [default: fieldsync-api].
    #[arg(long, env = "FIELDSYNC_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Access-token lifetime in seconds [default: 900].
    #[arg(long, env = "FIELDSYNC_ACCESS_TOKEN_TTL_SECS")]
    pub access_token_ttl_secs: Option<u64>,

    /// Refresh-token lifetime in seconds [default: 2592000, 30 days].
    #[arg(long, env = "FIELDSYNC_REFRESH_TOKEN_TTL_SECS")]
    pub refresh_token_ttl_secs: Option<u64>,

    /// Authenticated requests per device per minute, per node; 0 for no limit [default: 600].
    #[arg(long, env = "FIELDSYNC_REQUESTS_PER_MINUTE")]
    pub requests_per_minute: Option<u32>,

    /// Login attempts per organisation and email per minute, per node; 0 for no limit [default: 10].
    #[arg(long, env = "FIELDSYNC_LOGINS_PER_MINUTE")]
    pub logins_per_minute: Option<u32>,

    /// Login attempts per client address per minute, per node; 0 for no limit [default: 20].
    #[arg(long, env = "FIELDSYNC_LOGINS_PER_MINUTE_PER_ADDRESS")]
    pub logins_per_minute_per_address: Option<u32>,

    /// Proxies whose X-Forwarded-For is believed, comma-separated addresses or
    /// networks (10.0.0.0/8) [default: none, the header is ignored].
    #[arg(long, env = "FIELDSYNC_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<IpNet>>,

    /// New devices one user may register per day; 0 for no limit [default: 20].
    #[arg(long, env = "FIELDSYNC_NEW_DEVICES_PER_DAY")]
    pub new_devices_per_day: Option<u32>,

    /// Seconds between two passes that mark planned visits nobody started as
    /// missed; 0 for never [default: 60; `[visits]` in the file].
    #[arg(long, env = "FIELDSYNC_MISSED_VISIT_CHECK_SECS")]
    pub missed_visit_check_secs: Option<u64>,

    /// Seconds a request may take until its answer starts; 0 for none
    /// (the live channel and chunk uploads are exempt) [default: 120].
    #[arg(long, env = "FIELDSYNC_REQUEST_TIMEOUT_SECS")]
    pub request_timeout_secs: Option<u64>,

    /// Seconds a client may take to send a request's headers; 0 for none [default: 30].
    #[arg(long, env = "FIELDSYNC_HEADER_READ_TIMEOUT_SECS")]
    pub header_read_timeout_secs: Option<u64>,

    /// Seconds to wait for the next piece of a request body; 0 for none [default: 30].
    #[arg(long, env = "FIELDSYNC_BODY_READ_TIMEOUT_SECS")]
    pub body_read_timeout_secs: Option<u64>,

    /// Session cookies of the managers' pages are Secure with the __Host- prefix
    /// (HTTPS only); false to try the pages over plain HTTP [default: true].
    #[arg(long, env = "FIELDSYNC_SECURE_COOKIES")]
    pub secure_cookies: Option<bool>,

    /// Seconds between two passes of the job roll-up sweep on this node; 0 for
    /// none [default: 300, or `[jobs] sweep_interval_secs`].
    #[arg(long, env = "FIELDSYNC_JOBS_SWEEP_INTERVAL_SECS")]
    pub jobs_sweep_interval_secs: Option<u64>,

    /// Live streams one device may hold open at once, per node; 0 for no limit [default: 4].
    #[arg(long, env = "FIELDSYNC_LIVE_STREAMS_PER_DEVICE")]
    pub live_streams_per_device: Option<usize>,

    /// Live streams one user may hold open at once, per node; 0 for no limit [default: 16].
    #[arg(long, env = "FIELDSYNC_LIVE_STREAMS_PER_USER")]
    pub live_streams_per_user: Option<usize>,
}

impl fmt::Debug for SettingsArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SettingsArgs")
            .field("config", &self.config)
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database_url", &self.database_url.as_deref().map(redact))
            .field("jwt_secret", &self.jwt_secret)
            .field("jwt_secret_file", &self.jwt_secret_file)
            .field("jwt_previous_secrets", &self.jwt_previous_secrets)
            .finish_non_exhaustive()
    }
}

impl SettingsArgs {
    /// Defaults, then the file, then these flags and variables.
    pub fn resolve(&self) -> Result<Settings, SettingsError> {
        for (given, flag, variable) in [
            (
                &self.removed_jwt_secret_flag,
                "--jwt-secret",
                "FIELDSYNC_JWT_SECRET or --jwt-secret-file",
            ),
            (
                &self.removed_jwt_previous_secrets_flag,
                "--jwt-previous-secrets",
                "FIELDSYNC_JWT_PREVIOUS_SECRETS",
            ),
        ] {
            if given.is_some() {
                return Err(SettingsError::Invalid(format!(
                    "{flag} is no longer accepted: a flag's value shows in the process list to every \
                     user of this machine; give the key in {variable} (or jwt_secret in the --config file) \
                     and replace the key you passed, it may have been seen"
                )));
            }
        }
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let jwt_secret = match one_secret(
            self.jwt_secret.clone(),
            self.jwt_secret_file.as_deref(),
            "FIELDSYNC_JWT_SECRET and --jwt-secret-file (or FIELDSYNC_JWT_SECRET_FILE)",
        )? {
            Some(secret) => Some(secret),
            None => one_secret(
                file.jwt_secret.clone(),
                file.jwt_secret_file.as_deref(),
                "jwt_secret and jwt_secret_file in the config file",
            )?,
        };
        let d = Settings::default();
        let settings = Settings {
            listen: self.listen.or(file.listen).unwrap_or(d.listen),
            data_dir: self
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or(d.data_dir),
            database_url: self.database_url.clone().or(file.database_url),
            db_max_connections: self
                .db_max_connections
                .or(file.db_max_connections)
                .unwrap_or(d.db_max_connections),
            jwt_secret,
            jwt_previous_secrets: self
                .jwt_previous_secrets
                .clone()
                .or(file.jwt_previous_secrets)
                .unwrap_or_default(),
            jwt_issuer: self
                .jwt_issuer
                .clone()
                .or(file.jwt_issuer)
                .unwrap_or(d.jwt_issuer),
            jwt_audience: self
                .jwt_audience
                .clone()
                .or(file.jwt_audience)
                .unwrap_or(d.jwt_audience),
            access_token_ttl_secs: self
                .access_token_ttl_secs
                .or(file.access_token_ttl_secs)
                .unwrap_or(d.access_token_ttl_secs),
            refresh_token_ttl_secs: self
                .refresh_token_ttl_secs
                .or(file.refresh_token_ttl_secs)
                .unwrap_or(d.refresh_token_ttl_secs),
            requests_per_minute: self
                .requests_per_minute
                .or(file.requests_per_minute)
                .unwrap_or(d.requests_per_minute),
            logins_per_minute: self
                .logins_per_minute
                .or(file.logins_per_minute)
                .unwrap_or(d.logins_per_minute),
            logins_per_minute_per_address: self
                .logins_per_minute_per_address
                .or(file.logins_per_minute_per_address)
                .unwrap_or(d.logins_per_minute_per_address),
            trusted_proxies: self
                .trusted_proxies
                .clone()
                .or(file.trusted_proxies)
                .unwrap_or(d.trusted_proxies),
            new_devices_per_day: self
                .new_devices_per_day
                .or(file.new_devices_per_day)
                .unwrap_or(d.new_devices_per_day),
            request_timeout_secs: self
                .request_timeout_secs
                .or(file.request_timeout_secs)
                .unwrap_or(d.request_timeout_secs),
            header_read_timeout_secs: self
                .header_read_timeout_secs
                .or(file.header_read_timeout_secs)
                .unwrap_or(d.header_read_timeout_secs),
            body_read_timeout_secs: self
                .body_read_timeout_secs
                .or(file.body_read_timeout_secs)
                .unwrap_or(d.body_read_timeout_secs),
            web: {
                let mut web = file.web.unwrap_or(d.web);
                if let Some(secure) = self.secure_cookies {
                    web.secure_cookies = secure;
                }
                web
            },
            live_streams_per_device: self
                .live_streams_per_device
                .or(file.live_streams_per_device)
                .unwrap_or(d.live_streams_per_device),
            live_streams_per_user: self
                .live_streams_per_user
                .or(file.live_streams_per_user)
                .unwrap_or(d.live_streams_per_user),
            scope: file.scope.unwrap_or(d.scope),
            attachments: file.attachments.unwrap_or(d.attachments),
            visits: {
                let mut visits = file.visits.unwrap_or(d.visits);
                if let Some(secs) = self.missed_visit_check_secs {
                    visits.missed_check_interval_secs = secs;
                }
                visits
            },
            jobs: {
                let mut jobs = file.jobs.unwrap_or(d.jobs);
                if let Some(secs) = self.jobs_sweep_interval_secs {
                    jobs.sweep_interval_secs = secs;
                }
                jobs
            },
        };
        settings.validate()?;
        Ok(settings)
    }
}

/// A secret from a variable, or from the file a path names (its first line,
/// without the line break), whichever of the two was given; both is an error.
fn one_secret(
    value: Option<Secret>,
    file: Option<&Path>,
    both: &str,
) -> Result<Option<Secret>, SettingsError> {
    match (value, file) {
        (Some(_), Some(_)) => Err(SettingsError::Invalid(format!(
            "give the signing key once, not both {both}"
        ))),
        (Some(secret), None) => Ok(Some(secret)),
        (None, Some(path)) => read_secret_file(path).map(Some),
        (None, None) => Ok(None),
    }
}

/// The key in a secret file: its content without the trailing line break.
fn read_secret_file(path: &Path) -> Result<Secret, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let key = text.trim_end_matches(['\r', '\n']);
    if key.is_empty() {
        return Err(SettingsError::Invalid(format!(
            "the signing key file {} is empty",
            path.display()
        )));
    }
    Ok(Secret::new(key))
}

/// A secret from the environment variable `name`, if set and not empty.
fn env_secret(name: &str) -> Option<Secret> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .map(Secret::new)
}

/// Comma-separated secrets from the environment variable `name`.
fn env_secrets(name: &str) -> Option<Vec<Secret>> {
    std::env::var(name).ok().filter(|v| !v.is_empty()).map(|v| {
        v.split(',')
            .filter(|s| !s.is_empty())
            .map(Secret::new)
            .collect()
    })
}

fn read_file(path: &Path) -> Result<FileSettings, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| SettingsError::Parse {
        path: path.to_owned(),
        message: e.message().to_owned(),
    })
}

pub use crate::domain::redact::redact;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_and_signing_keys_never_reach_debug_output() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/fs"),
            "postgres://app:***@db:5432/fs"
        );
        assert_eq!(
            redact("sqlite://data/fieldsync.db"),
            "sqlite://data/fieldsync.db"
        );
        let s = Settings {
            database_url: Some("postgres://a:hunter2@h/db".into()),
            jwt_secret: Some(Secret::new("k".repeat(40))),
            ..Settings::default()
        };
        let mut s = s;
        s.attachments.secret_access_key = Some(Secret::new("wJalrXUtnFEMI"));
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("wJalrXUtnFEMI"), "{shown}");
        assert!(!shown.contains("kkkk"), "{shown}");
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_wins_over_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fieldsync.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\ndata_dir = \"/srv/fs\"\naccess_token_ttl_secs = 60\n",
        )
        .expect("write config");
        let args = SettingsArgs {
            config: Some(path),
            data_dir: Some("/flag/dir".into()),
            ..SettingsArgs::default()
        };
        let s = args.resolve().expect("valid settings");
        assert_eq!(s.listen, "127.0.0.1:9999".parse().expect("addr"));
        assert_eq!(s.data_dir, PathBuf::from("/flag/dir"));
        assert_eq!(s.access_token_ttl_secs, 60);
        assert_eq!(s.refresh_token_ttl_secs, 30 * 24 * 3600);
    }

    #[test]
    fn unknown_keys_and_short_signing_keys_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fieldsync.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:1\"\n").expect("write config");
        let args = SettingsArgs {
            config: Some(path),
            ..SettingsArgs::default()
        };
        assert!(matches!(args.resolve(), Err(SettingsError::Parse { .. })));
        let args = SettingsArgs {
            jwt_secret: Some(Secret::new("short")),
            ..SettingsArgs::default()
        };
        assert!(matches!(args.resolve(), Err(SettingsError::Invalid(_))));
    }

    #[test]
    fn the_signing_key_comes_from_a_file_and_never_from_a_flag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("jwt.key");
        std::fs::write(&key, format!("{}\n", "k".repeat(40))).expect("write key");
        let s = SettingsArgs {
            jwt_secret_file: Some(key.clone()),
            ..SettingsArgs::default()
        }
        .resolve()
        .expect("a key from a file");
        assert_eq!(
            s.jwt_secret.as_ref().map(Secret::expose),
            Some("k".repeat(40).as_str())
        );
        let both = SettingsArgs {
            jwt_secret: Some(Secret::new("j".repeat(40))),
            jwt_secret_file: Some(key),
            ..SettingsArgs::default()
        }
        .resolve();
        assert!(matches!(both, Err(SettingsError::Invalid(_))));
        let flag = SettingsArgs {
            removed_jwt_secret_flag: Some("k".repeat(40)),
            ..SettingsArgs::default()
        }
        .resolve();
        let Err(SettingsError::Invalid(message)) = flag else {
            panic!("the flag is refused: {flag:?}");
        };
        assert!(message.contains("FIELDSYNC_JWT_SECRET"), "{message}");
        let missing = SettingsArgs {
            jwt_secret_file: Some(dir.path().join("absent")),
            ..SettingsArgs::default()
        }
        .resolve();
        assert!(matches!(missing, Err(SettingsError::Read { .. })));
    }

    #[test]
    fn cookies_are_secure_unless_a_setting_says_otherwise() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fieldsync.toml");
        assert!(
            SettingsArgs::default()
                .resolve()
                .expect("defaults")
                .web
                .secure_cookies
        );
        std::fs::write(&path, "[web]\nsecure_cookies = false\n").expect("write config");
        let file = SettingsArgs {
            config: Some(path.clone()),
            ..SettingsArgs::default()
        };
        assert!(!file.resolve().expect("file").web.secure_cookies);
        let flag_wins = SettingsArgs {
            secure_cookies: Some(true),
            ..file
        };
        assert!(flag_wins.resolve().expect("flag").web.secure_cookies);
        std::fs::write(&path, "trusted_proxies = [\"10.0.0.0/8\", \"192.0.2.1\"]\n")
            .expect("write config");
        let s = SettingsArgs {
            config: Some(path.clone()),
            ..SettingsArgs::default()
        }
        .resolve()
        .expect("proxies");
        assert_eq!(s.trusted_proxies.len(), 2);
        std::fs::write(&path, "trusted_proxies = [\"10.0.0.0/40\"]\n").expect("write config");
        assert!(matches!(
            SettingsArgs {
                config: Some(path),
                ..SettingsArgs::default()
            }
            .resolve(),
            Err(SettingsError::Parse { .. })
        ));
    }

    #[test]
    fn the_attachments_table_picks_the_store_and_s3_needs_a_bucket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fieldsync.toml");
        let resolve = |text: &str| {
            std::fs::write(&path, text).expect("write config");
            SettingsArgs {
                config: Some(path.clone()),
                ..SettingsArgs::default()
            }
            .resolve()
        };
        let s = resolve("").expect("defaults");
        assert_eq!(s.attachments.store, BlobStoreKind::Filesystem);
        assert_eq!(s.attachments.abandoned_after_hours, 72);
        let s = resolve(
            "[attachments]\nstore = \"s3\"\nbucket = \"photos\"\n\
             endpoint = \"http://127.0.0.1:9000\"\nallow_http = true\nabandoned_after_hours = 24\n",
        )
        .expect("s3");
        assert_eq!(s.attachments.store, BlobStoreKind::S3);
        assert_eq!(s.attachments.bucket.as_deref(), Some("photos"));
        assert!(s.attachments.allow_http);
        assert_eq!(s.attachments.abandoned_after_hours, 24);
        assert!(matches!(
            resolve("[attachments]\nstore = \"s3\"\n"),
            Err(SettingsError::Invalid(_))
        ));
        assert!(matches!(
            resolve("[attachments]\nstore = \"ftp\"\n"),
            Err(SettingsError::Parse { .. })
        ));
    }
}
