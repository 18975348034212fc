//! Server settings: defaults in code, overridden by environment variables
//! (`FIELDSYNC_…`), overridden by command-line flags (clap does both layers).
//! `Debug` redacts the password of a database URL.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where to listen and which database to use.
#[derive(Clone, clap::Args)]
pub struct Settings {
    /// Address to listen on.
    #[arg(long, env = "FIELDSYNC_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Directory for the embedded SQLite database (created on first run).
    #[arg(long, env = "FIELDSYNC_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Database URL: `sqlite://…` or `postgres://…`. Default: SQLite in the data directory.
    #[arg(long, env = "FIELDSYNC_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Largest number of pooled database connections.
    #[arg(long, env = "FIELDSYNC_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
}

impl Settings {
    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("fieldsync.db").display()),
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database_url", &redact(&self.database_url()))
            .field("db_max_connections", &self.db_max_connections)
            .finish()
    }
}

/// Hides the password of `scheme://user:password@host/...`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_never_reach_debug_output() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/fs"),
            "postgres://app:***@db:5432/fs"
        );
        assert_eq!(
            redact("sqlite://data/fieldsync.db"),
            "sqlite://data/fieldsync.db"
        );
        let s = Settings {
            listen: "127.0.0.1:1".parse().expect("addr"),
            data_dir: "d".into(),
            database_url: Some("postgres://a:hunter2@h/db".into()),
            db_max_connections: 1,
        };
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
