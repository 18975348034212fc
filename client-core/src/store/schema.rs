//! The device database schema and its upgrades.
//!
//! The version lives in `PRAGMA user_version`. Each entry of [`MIGRATIONS`] moves
//! the schema up by one, inside the same transaction as the version bump, so an
//! upgrade interrupted by a kill leaves the old version intact. A released step is
//! never edited; a change is a new step. `tests/fixtures/store_v1.sql` is a frozen
//! copy of version 1 for the upgrade test.
//!
//! - v1: records (snapshot + projection columns), appended changes, outbox, sync metadata.
//! - v2: team and territory projection columns, a status index for the
//!   "jobs and assignments by status" lists, and the rejection ledger.

use rusqlite::Connection;

use super::StoreError;

/// The schema version this build writes.
pub const CURRENT_VERSION: i64 = 2;

/// Upgrade steps; `MIGRATIONS[n]` goes from version `n` to `n + 1`.
pub const MIGRATIONS: &[&str] = &[
    // v1
    r"
    CREATE TABLE records (
        id            TEXT PRIMARY KEY,
        kind          TEXT NOT NULL,
        snapshot      BLOB NOT NULL,
        status        TEXT,
        owner         TEXT,
        account_id    TEXT,
        parent_id     TEXT,
        start_ms      INTEGER,
        deleted       INTEGER NOT NULL DEFAULT 0,
        updated_at_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE record_changes (
        record_id TEXT NOT NULL,
        seq       INTEGER NOT NULL,
        bytes     BLOB NOT NULL,
        PRIMARY KEY (record_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE outbox (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,
        record_id     TEXT NOT NULL,
        change_hash   TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL
    );
    CREATE TABLE sync_meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX records_kind_start ON records (kind, start_ms);
    CREATE INDEX records_kind_account ON records (kind, account_id);
    CREATE INDEX outbox_record ON outbox (record_id);
    ",
    // v2
    r"
    ALTER TABLE records ADD COLUMN team TEXT;
    ALTER TABLE records ADD COLUMN territory TEXT;
    CREATE INDEX records_kind_status ON records (kind, status);
    CREATE TABLE rejections (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        record_id  TEXT NOT NULL,
        kind       TEXT NOT NULL,
        code       TEXT NOT NULL,
        message    TEXT NOT NULL,
        changes    BLOB NOT NULL,
        at_ms      INTEGER NOT NULL,
        resolved   INTEGER NOT NULL DEFAULT 0
    );
    ",
];

/// Brings the database to [`CURRENT_VERSION`]. Refuses a database written by a
/// newer build rather than guessing.
pub fn upgrade(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > CURRENT_VERSION {
        return Err(StoreError::TooNew {
            found: version,
            supported: CURRENT_VERSION,
        });
    }
    for (from, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", from as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
