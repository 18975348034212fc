//! Backup and restore of the embedded database, and the change log's identity.
//!
//! The identity (`change_log_identity`, newest row) is what a restore changes:
//! devices compare it with the one they last synced with (see
//! `fieldsync_core::sync`, "after a restore"). A SQLite backup is a consistent
//! copy taken while the server runs (`VACUUM INTO`); a restore copies every
//! table of a backup back into the live database in one transaction, so a
//! connection still open (another process's idle pool) sees either the old
//! content or the restored one. PostgreSQL is backed up and restored with its
//! own tools (`pg_dump`, point-in-time recovery), followed by
//! `fieldsync mark-restored`.

use std::path::Path;

use super::{Database, DbError, now_secs};
use crate::on_pool;

/// The change log's identity in force; made (once, even with several nodes
/// starting together) when the database has none.
pub async fn log_identity(db: &Database) -> Result<String, DbError> {
    if let Some(id) = newest_identity(db).await? {
        return Ok(id);
    }
    let first = uuid::Uuid::now_v7().to_string();
    on_pool!(db, |pool, _uuid| {
        sqlx::query(
            "INSERT INTO change_log_identity (id, created_at, reason) \
             SELECT $1, $2, 'created' WHERE NOT EXISTS (SELECT 1 FROM change_log_identity)",
        )
        .bind(&first)
        .bind(now_secs())
        .execute(pool)
        .await?;
    });
    newest_identity(db)
        .await?
        .ok_or_else(|| DbError::Corrupt("no change log identity after making one".into()))
}

async fn newest_identity(db: &Database) -> Result<Option<String>, DbError> {
    Ok(on_pool!(db, |pool, _uuid| {
        sqlx::query_scalar(
            "SELECT id FROM change_log_identity ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .fetch_optional(pool)
        .await?
    }))
}

/// Gives the change log a new identity, recording why. Its `created_at` is
/// past every earlier one's, so it is the newest even within one second.
pub async fn new_log_identity(db: &Database, reason: &str) -> Result<String, DbError> {
    let id = uuid::Uuid::now_v7().to_string();
    let newest: Option<i64> = on_pool!(db, |pool, _uuid| {
        sqlx::query_scalar("SELECT MAX(created_at) FROM change_log_identity")
            .fetch_one(pool)
            .await?
    });
    let at = newest.map_or(now_secs(), |n| now_secs().max(n + 1));
    on_pool!(db, |pool, _uuid| {
        sqlx::query("INSERT INTO change_log_identity (id, created_at, reason) VALUES ($1, $2, $3)")
            .bind(&id)
            .bind(at)
            .bind(reason)
            .execute(pool)
            .await?;
    });
    Ok(id)
}

/// Writes a consistent copy of the SQLite database to `to` (a new file),
/// while the server may be running.
pub async fn backup_sqlite(db: &Database, to: &Path) -> Result<(), DbError> {
    let Database::Sqlite(pool) = db else {
        return Err(DbError::Unsupported(
            "the server's own backup is for SQLite; back PostgreSQL up with pg_dump or \
             point-in-time recovery (docs/operations.md)",
        ));
    };
    let path = to
        .to_str()
        .ok_or_else(|| DbError::Corrupt(format!("the path {} is not UTF-8", to.display())))?;
    sqlx::query("VACUUM INTO $1")
        .bind(path)
        .execute(pool)
        .await?;
    Ok(())
}

/// Replaces the content of the SQLite database with the backup at `from`, in
/// one transaction: every table the backup holds is emptied and refilled
/// (the migrations' bookkeeping and the change log's identity included, the
/// latter then renewed by the caller). Returns the tables restored.
pub async fn restore_sqlite(db: &Database, from: &Path) -> Result<usize, DbError> {
    let Database::Sqlite(pool) = db else {
        return Err(DbError::Unsupported(
            "the server's own restore is for SQLite; restore PostgreSQL with its own tools, \
             then run `fieldsync mark-restored`",
        ));
    };
    let path = from
        .to_str()
        .ok_or_else(|| DbError::Corrupt(format!("the path {} is not UTF-8", from.display())))?;
    let mut conn = pool.acquire().await?;
    sqlx::query("ATTACH DATABASE $1 AS backup")
        .bind(path)
        .execute(&mut *conn)
        .await?;
    let result = copy_tables(&mut conn).await;
    let detach = sqlx::query("DETACH DATABASE backup")
        .execute(&mut *conn)
        .await;
    let restored = result?;
    detach?;
    Ok(restored)
}

async fn copy_tables(conn: &mut sqlx::SqliteConnection) -> Result<usize, DbError> {
    // Table names come from the backup's own schema and are checked against
    // the live schema before they are spliced into SQL.
    // The migrations' bookkeeping stays the live database's: the schema stays
    // this version's, and a backup from an earlier version (fewer tables or
    // columns) fills what it has, the rest taking their defaults.
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM backup.sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await?;
    let live: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM main.sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut *conn)
    .await?;
    if tables.is_empty() {
        return Err(DbError::Corrupt(
            "the backup holds no tables: not a Fieldsync database".into(),
        ));
    }
    for t in &tables {
        if !live.contains(t) {
            return Err(DbError::Corrupt(format!(
                "the backup has a table {t:?} this server does not know: it was made by a newer version"
            )));
        }
    }
    sqlx::query("PRAGMA defer_foreign_keys = ON")
        .execute(&mut *conn)
        .await?;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    let copied = async {
        for t in &live {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM main.\"{t}\"")))
                .execute(&mut *conn)
                .await?;
        }
        for t in &tables {
            let columns: Vec<String> =
                sqlx::query_scalar("SELECT name FROM pragma_table_info($1, 'backup') ORDER BY cid")
                    .bind(t)
                    .fetch_all(&mut *conn)
                    .await?;
            if columns.iter().any(|c| c.contains('"')) {
                return Err(DbError::Corrupt(format!(
                    "a column name of {t:?} holds a quote"
                )));
            }
            let list = columns
                .iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", ");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO main.\"{t}\" ({list}) SELECT {list} FROM backup.\"{t}\""
            )))
            .execute(&mut *conn)
            .await?;
        }
        // AUTOINCREMENT counters go back with the rows they numbered.
        sqlx::query("DELETE FROM main.sqlite_sequence")
            .execute(&mut *conn)
            .await?;
        sqlx::query("INSERT INTO main.sqlite_sequence SELECT * FROM backup.sqlite_sequence")
            .execute(&mut *conn)
            .await?;
        Ok::<(), DbError>(())
    }
    .await;
    match copied {
        Ok(()) => {
            sqlx::query("COMMIT").execute(&mut *conn).await?;
            Ok(tables.len())
        }
        Err(e) => {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            Err(e)
        }
    }
}
