//! Server settings, resolved in four layers: defaults in code, then an optional
//! TOML file (`--config` / `FIELDSYNC_CONFIG`), then environment variables
//! (`FIELDSYNC_…`), then command-line flags. Clap reads the last two layers
//! together (a flag wins over its variable), so [`SettingsArgs`] holds only what
//! was given and [`SettingsArgs::resolve`] fills the gaps from the file and the
//! defaults.
//!
//! Secrets (the JWT signing key, a password inside the database URL) never reach
//! `Debug` output or logs.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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
    /// Largest number of pooled database connections.
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

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            database_url: None,
            db_max_connections: 16,
            jwt_secret: None,
            jwt_previous_secrets: Vec::new(),
            jwt_issuer: "fieldsync".to_owned(),
            jwt_audience: "fieldsync-api".to_owned(),
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            requests_per_minute: 600,
            logins_per_minute: 10,
            live_streams_per_device: 4,
            live_streams_per_user: 16,
            scope: ScopeSettings::default(),
            attachments: AttachmentSettings::default(),
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
            .field("scope", &self.scope)
            .field("attachments", &self.attachments)
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
    jwt_previous_secrets: Option<Vec<Secret>>,
    jwt_issuer: Option<String>,
    jwt_audience: Option<String>,
    access_token_ttl_secs: Option<u64>,
    refresh_token_ttl_secs: Option<u64>,
    requests_per_minute: Option<u32>,
    logins_per_minute: Option<u32>,
    live_streams_per_device: Option<usize>,
    live_streams_per_user: Option<usize>,
    scope: Option<ScopeSettings>,
    attachments: Option<AttachmentSettings>,
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

    /// Largest number of pooled database connections [default: 16].
    #[arg(long, env = "FIELDSYNC_DB_MAX_CONNECTIONS")]
    pub db_max_connections: Option<u32>,

    /// HS256 signing key for access tokens, at least 32 bytes [default: generated and kept in the database].
    #[arg(long, env = "FIELDSYNC_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,

    /// Earlier signing keys, comma-separated, still accepted on the tokens they signed.
    #[arg(
        long,
        env = "FIELDSYNC_JWT_PREVIOUS_SECRETS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub jwt_previous_secrets: Option<Vec<Secret>>,

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
            .finish_non_exhaustive()
    }
}

impl SettingsArgs {
    /// Defaults, then the file, then these flags and variables.
    pub fn resolve(&self) -> Result<Settings, SettingsError> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
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
            jwt_secret: self.jwt_secret.clone().or(file.jwt_secret),
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
        };
        settings.validate()?;
        Ok(settings)
    }
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
