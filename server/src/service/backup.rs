//! Backup and restore (the operator's side; see `docs/operations.md`).
//!
//! A restore puts the database back at an earlier point: changes devices sent
//! after the backup are gone from it, and the change-log positions devices
//! hold name other changes. Both restore paths therefore give the change log
//! a new identity; every device notices it at its next pull, pulls the feed
//! again and repairs each record it holds, which brings back what only the
//! devices still have (`fieldsync_core::sync`).

use std::path::Path;

use crate::db::{Database, DbError, backup};

/// Writes a consistent copy of the embedded (SQLite) database to `to`, which
/// must not exist yet; the server may be running.
pub async fn backup_to(db: &Database, to: &Path) -> Result<(), DbError> {
    if to.exists() {
        return Err(DbError::Corrupt(format!(
            "{} exists already: a backup never overwrites a file",
            to.display()
        )));
    }
    backup::backup_sqlite(db, to).await
}

/// Restores the embedded database from the backup at `from` and gives the
/// change log a new identity. Returns (tables restored, the new identity).
pub async fn restore_from(db: &Database, from: &Path) -> Result<(usize, String), DbError> {
    if !from.is_file() {
        return Err(DbError::Corrupt(format!(
            "no backup file at {}",
            from.display()
        )));
    }
    let tables = backup::restore_sqlite(db, from).await?;
    let id = backup::new_log_identity(db, &format!("restored from {}", from.display())).await?;
    Ok((tables, id))
}

/// After PostgreSQL was restored with its own tools: gives the change log a
/// new identity so devices bring back what the restore lost.
pub async fn mark_restored(db: &Database, reason: &str) -> Result<String, DbError> {
    backup::new_log_identity(db, reason).await
}
