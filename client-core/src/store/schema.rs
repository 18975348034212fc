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
//!   Frozen copy: `tests/fixtures/store_v2.sql`.
//! - v3: the outbox without `AUTOINCREMENT` and with a unique
//!   `(record_id, change_hash)` index. `AUTOINCREMENT` rewrote the
//!   `sqlite_sequence` page on every action (one WAL page in six) to guarantee
//!   that a sequence number is never reused, which nothing needs: rows are only
//!   ordered, and a new rowid is still above every existing one. The unique index
//!   serves the per-record lookups as before and makes "one row per local change"
//!   a rule of the database rather than of the code. It also asks for the
//!   projection to be recomputed ([`REPROJECT_KEY`]).
//! - v4: attachments (photos, signatures, documents) keyed by their SHA-256,
//!   with the bytes in the row and an upload state (`pending`, `uploaded`).
//!   Frozen copy: `tests/fixtures/store_v4.sql`.
//! - v5: attachments split in three: metadata (now with the GPS accuracy and
//!   the refused ledger: state `refused`, the server's code and message, when),
//!   the bytes in `attachment_blobs` (written and read by incremental BLOB I/O,
//!   never whole), and `attachment_links` (one file attached to several
//!   records, each link `declared` once the server knows it). Existing rows
//!   keep their bytes and record; an uploaded one's link counts as declared.
//! - v6: search keys of accounts and products (`search_name`, `search_code`,
//!   `search_place`; see `search.rs`) with partial indexes for prefix
//!   search, and a request to fill them for the records already held
//!   ([`REINDEX_SEARCH_KEY`]).
//! - v7: accounts are found by their customer code too: the search keys of
//!   the records already held are computed again.
//! - v8: each record's epoch: how many times an erasure rewrote its history
//!   (`epochs.rs`); 0 for every record held before.
//! - v9: each outbox row keeps its change's bytes, so that a push reads its
//!   changes from the outbox instead of rebuilding them from the record's
//!   document (Automerge keeps no change's bytes: it re-encodes a change from
//!   the document's operations, and that was most of a device's CPU in a
//!   push). Rows queued before carry none and are rebuilt as before.

use rusqlite::Connection;

use super::StoreError;

/// The schema version this build writes.
pub const CURRENT_VERSION: i64 = 9;

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
    // v3
    r"
    CREATE TABLE outbox_v3 (
        seq           INTEGER PRIMARY KEY,
        record_id     TEXT NOT NULL,
        change_hash   TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX outbox_record_change ON outbox_v3 (record_id, change_hash);
    INSERT OR IGNORE INTO outbox_v3 (seq, record_id, change_hash, created_at_ms)
        SELECT seq, record_id, change_hash, created_at_ms FROM outbox ORDER BY seq;
    DROP TABLE outbox;
    ALTER TABLE outbox_v3 RENAME TO outbox;
    DELETE FROM sqlite_sequence WHERE name = 'outbox';
    INSERT OR REPLACE INTO sync_meta (key, value) VALUES ('reproject', '1');
    ",
    // v4
    r"
    CREATE TABLE attachments (
        sha256         TEXT PRIMARY KEY,
        record_id      TEXT NOT NULL,
        kind           TEXT NOT NULL,
        content_type   TEXT NOT NULL,
        size           INTEGER NOT NULL,
        captured_at_ms INTEGER NOT NULL,
        tz_offset_min  INTEGER NOT NULL,
        lat            REAL,
        lng            REAL,
        bytes          BLOB NOT NULL,
        state          TEXT NOT NULL DEFAULT 'pending'
    );
    CREATE INDEX attachments_state ON attachments (state);
    ",
    // v5
    r"
    CREATE TABLE attachment_blobs (
        id    INTEGER PRIMARY KEY,
        bytes BLOB NOT NULL
    );
    CREATE TABLE attachments_v5 (
        sha256          TEXT PRIMARY KEY,
        kind            TEXT NOT NULL,
        content_type    TEXT NOT NULL,
        size            INTEGER NOT NULL,
        captured_at_ms  INTEGER NOT NULL,
        tz_offset_min   INTEGER NOT NULL,
        lat             REAL,
        lng             REAL,
        accuracy_m      REAL,
        blob_id         INTEGER NOT NULL,
        state           TEXT NOT NULL DEFAULT 'pending',
        refused_code    TEXT,
        refused_message TEXT,
        refused_at_ms   INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE attachment_links (
        sha256       TEXT NOT NULL,
        record_id    TEXT NOT NULL,
        linked_at_ms INTEGER NOT NULL,
        declared     INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (sha256, record_id)
    ) WITHOUT ROWID;
    INSERT INTO attachment_blobs (id, bytes) SELECT rowid, bytes FROM attachments;
    INSERT INTO attachments_v5
        (sha256, kind, content_type, size, captured_at_ms, tz_offset_min, lat, lng, blob_id, state)
        SELECT sha256, kind, content_type, size, captured_at_ms, tz_offset_min, lat, lng, rowid, state
        FROM attachments;
    INSERT INTO attachment_links (sha256, record_id, linked_at_ms, declared)
        SELECT sha256, record_id, captured_at_ms, state = 'uploaded' FROM attachments;
    DROP TABLE attachments;
    ALTER TABLE attachments_v5 RENAME TO attachments;
    CREATE INDEX attachments_state ON attachments (state);
    ",
    // v6
    r"
    ALTER TABLE records ADD COLUMN search_name TEXT;
    ALTER TABLE records ADD COLUMN search_code TEXT;
    ALTER TABLE records ADD COLUMN search_place TEXT;
    CREATE INDEX records_search_name ON records (kind, search_name) WHERE search_name IS NOT NULL;
    CREATE INDEX records_search_code ON records (kind, search_code) WHERE search_code IS NOT NULL;
    INSERT OR REPLACE INTO sync_meta (key, value) VALUES ('reindex_search', '1');
    ",
    // v7
    r"
    INSERT OR REPLACE INTO sync_meta (key, value) VALUES ('reindex_search', '1');
    ",
    // v8
    r"
    ALTER TABLE records ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
    ",
    // v9
    r"
    ALTER TABLE outbox ADD COLUMN bytes BLOB;
    ",
];

/// The `sync_meta` key a step sets when the projection columns must be
/// recomputed from the documents (SQL cannot read Automerge). The store does it
/// at the next open and clears the key in the same transaction, so a kill in
/// between only means doing it again. v3 sets it for the `team` and `territory`
/// columns v2 added, which databases upgraded from v1 had left empty.
pub const REPROJECT_KEY: &str = "reproject";

/// The `sync_meta` key a step sets when the search keys of the accounts and
/// products already held must be computed (v6 added them); cleared like
/// [`REPROJECT_KEY`].
pub const REINDEX_SEARCH_KEY: &str = "reindex_search";

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema of a database as SQLite prints it, in a stable order.
    fn schema_of(conn: &Connection) -> Vec<(String, String)> {
        let mut stmt = conn
            .prepare("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
            .expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    /// Runs the first `steps` migrations the way [`upgrade`] does.
    fn migrated_to(steps: usize) -> Connection {
        let mut conn = Connection::open_in_memory().expect("open");
        for (from, sql) in MIGRATIONS[..steps].iter().enumerate() {
            let tx = conn.transaction().expect("tx");
            tx.execute_batch(sql).expect("step");
            tx.pragma_update(None, "user_version", from as i64 + 1)
                .expect("version");
            tx.commit().expect("commit");
        }
        conn
    }

    #[test]
    fn released_migration_steps_still_build_their_frozen_schemas() {
        for (version, fixture) in [
            (1, include_str!("../../tests/fixtures/store_v1.sql")),
            (2, include_str!("../../tests/fixtures/store_v2.sql")),
            (4, include_str!("../../tests/fixtures/store_v4.sql")),
        ] {
            let frozen = Connection::open_in_memory().expect("open");
            frozen.execute_batch(fixture).expect("fixture");
            let built = migrated_to(version);
            let norm = |rows: Vec<(String, String)>| -> Vec<(String, String)> {
                rows.into_iter()
                    .map(|(n, sql)| (n, sql.split_whitespace().collect::<Vec<_>>().join(" ")))
                    .collect()
            };
            assert_eq!(
                norm(schema_of(&built)),
                norm(schema_of(&frozen)),
                "step {version} was edited after release: add a new step instead"
            );
        }
    }

    #[test]
    fn the_current_schema_is_the_last_step() {
        assert_eq!(MIGRATIONS.len() as i64, CURRENT_VERSION);
    }
}
