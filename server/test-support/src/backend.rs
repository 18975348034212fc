//! Which database a test's server runs on.

use crate::pg::PgCluster;

/// Which database the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite in a temporary directory.
    Sqlite,
    /// A fresh database in the shared throwaway PostgreSQL cluster.
    Postgres,
}

impl Backend {
    /// The `database_url` setting for a fresh database: none for SQLite (the
    /// data directory's file), a new database of the shared cluster for
    /// PostgreSQL. Call it outside any async runtime: the cluster helper runs
    /// its own.
    pub fn database_url(self) -> Option<String> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres => Some(PgCluster::shared().new_database()),
        }
    }
}
