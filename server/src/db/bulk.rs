//! The push's bulk writes, each in its dialect's best form: the new changes
//! appended to the change log, the merged documents with their projections
//! upserted into `records` and their read scope (`records::apply_pushes`; the
//! managers' facts rows are written the same way by `facts::FactWrites`).
//!
//! SQLite takes multi-row `VALUES` with anonymous parameters
//! ([`super::positional`]). PostgreSQL takes one array per column through
//! `UNNEST`: a statement of a few parameters whatever the number of rows, so
//! its text is the same for every push (one prepared statement, planned
//! once, where a `VALUES` list of each length was a statement of its own,
//! parsed and planned again for every group of pushes) and the server binds
//! a handful of arrays instead of thousands of scalars.

use std::future::Future;

use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::DbError;

/// Rows one statement of a push's batched reads and writes carries at most
/// on PostgreSQL.
pub(crate) const BATCH_ROWS: usize = 500;

/// Parameters one batched statement binds at most on PostgreSQL: well under
/// its 65,535 per statement.
pub(crate) const PG_PARAMS: usize = 2_500;

/// Parameters one batched statement binds at most on SQLite (its limit is
/// 32,766). The batched statements write their parameters anonymously
/// ([`super::positional`]): sqlx binds a named one by asking SQLite its
/// name, a walk of the statement's list of names, so n named parameters cost
/// n² (at 2,500 that walk was the largest single cost of seeding, and at 240
/// still a quarter of SQLite's thread). Without the walk, larger statements
/// mean fewer hand-offs to SQLite's thread: 2,000 against 240 seeded 1.04x
/// faster.
pub(crate) const SQLITE_PARAMS: usize = 2_000;

/// Rows of `cols` parameters each that one batched statement carries.
pub(crate) fn rows_per_statement(pg: bool, cols: usize) -> usize {
    let cols = cols.max(1);
    if pg {
        (PG_PARAMS / cols).clamp(1, BATCH_ROWS)
    } else {
        (SQLITE_PARAMS / cols).max(1)
    }
}

/// `$first, $first+1, …` for `n` parameters.
pub(crate) fn params(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($1, $2, $3), ($4, $5, $6), …` for `rows` rows of `cols` parameters from `$first`.
pub(crate) fn rows_params(first: usize, rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", params(first + r * cols, cols)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One change for the log: (record, hash, change, user, device).
pub(crate) type LogRow<'a> = (Uuid, &'a [u8], &'a [u8], Option<Uuid>, Option<Uuid>);

/// One record's row as a push writes it.
#[derive(Debug)]
pub(crate) struct RecordRow<'a> {
    pub id: Uuid,
    pub kind: &'a str,
    pub doc: &'a [u8],
    pub status: Option<&'a str>,
    pub owner: Option<Uuid>,
    pub team: Option<Uuid>,
    pub territory: Option<Uuid>,
    pub account: Option<Uuid>,
    pub parent: Option<Uuid>,
    pub start_ms: Option<i64>,
    pub deleted: bool,
    pub created_seq: i64,
    pub updated_seq: i64,
    pub anchor_ms: i64,
    pub anchor_seq: i64,
}

/// One read-scope row: (record, principal, the log position it was granted at).
pub(crate) type ScopeRow = (Uuid, String, i64);

/// The columns a push writes of a record, in the order both forms bind them.
const RECORDS_INSERT: &str = "INSERT INTO records (id, org_id, kind, doc, status, owner_id, \
     team_id, territory_id, account_id, parent_id, start_ms, deleted, created_seq, updated_seq, \
     created_at, updated_at, anchor_ms, anchor_seq)";

/// The columns of a change-log row, in the order both forms bind them.
const LOG_INSERT: &str = "INSERT INTO change_log \
     (org_id, record_id, hash, change, user_id, device_id, committed_at)";

/// What the upsert changes of a stored record: everything but its id,
/// organisation, kind and creation; the anchor's position moves only when
/// the anchor does. A row of another organisation is never updated: an id
/// another organisation's push took while this one was being written (two
/// creations of one id at once, each under its own organisation's lock)
/// leaves the row out of the statement's count, and [`DbError::IdTaken`]
/// sends the push round again, where the id loads as another
/// organisation's and the record is refused.
const RECORDS_ON_CONFLICT: &str = "ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, \
     status = excluded.status, owner_id = excluded.owner_id, team_id = excluded.team_id, \
     territory_id = excluded.territory_id, account_id = excluded.account_id, \
     parent_id = excluded.parent_id, start_ms = excluded.start_ms, \
     deleted = excluded.deleted, updated_seq = excluded.updated_seq, \
     updated_at = excluded.updated_at, \
     anchor_seq = CASE WHEN records.anchor_ms IS DISTINCT FROM excluded.anchor_ms \
     THEN excluded.anchor_seq ELSE records.anchor_seq END, \
     anchor_ms = excluded.anchor_ms WHERE records.org_id = excluded.org_id";

/// Rows one `UNNEST` statement carries on PostgreSQL (bounded for the
/// size of one message, not for parameters).
pub(crate) const PG_ARRAY_ROWS: usize = 2_000;

/// The push's bulk writes on a connection of either dialect.
pub(crate) trait BulkWrites {
    /// Appends `rows` to `org`'s change log in order, committed at `now`:
    /// (seq, record id as text, hash) of each.
    fn change_log<'a>(
        &'a mut self,
        org: Uuid,
        rows: &'a [LogRow<'a>],
        now: i64,
    ) -> impl Future<Output = Result<Vec<(i64, String, Vec<u8>)>, DbError>> + Send + 'a;

    /// Inserts or updates `rows` of `org` at `now`.
    fn upsert_records<'a>(
        &'a mut self,
        org: Uuid,
        rows: &'a [RecordRow<'a>],
        now: i64,
    ) -> impl Future<Output = Result<(), DbError>> + Send + 'a;

    /// Grants the read scope `rows` (a grant held already stays as it was).
    fn grant_scope<'a>(
        &'a mut self,
        rows: &'a [ScopeRow],
    ) -> impl Future<Output = Result<(), DbError>> + Send + 'a;
}

impl BulkWrites for sqlx::SqliteConnection {
    async fn change_log<'a>(
        &'a mut self,
        org: Uuid,
        rows: &'a [LogRow<'a>],
        now: i64,
    ) -> Result<Vec<(i64, String, Vec<u8>)>, DbError> {
        let uuid = super::sqlite_uuid;
        let mut out = Vec::with_capacity(rows.len());
        // Every row binds its own organisation and time: the statement's
        // parameters then run in order, which SQLite binds cheapest.
        for chunk in rows.chunks(rows_per_statement(false, 7)) {
            let sql = format!(
                "{LOG_INSERT} VALUES {} RETURNING seq, CAST(record_id AS TEXT), hash",
                rows_params(1, chunk.len(), 7)
            );
            let mut q = sqlx::query_as::<_, (i64, String, Vec<u8>)>(AssertSqlSafe(
                super::positional(false, sql),
            ));
            for (id, hash, raw, u, d) in chunk {
                q = q
                    .bind(uuid(org))
                    .bind(uuid(*id))
                    .bind(*hash)
                    .bind(*raw)
                    .bind(u.map(uuid))
                    .bind(d.map(uuid))
                    .bind(now);
            }
            out.extend(q.fetch_all(&mut *self).await?);
        }
        Ok(out)
    }

    async fn upsert_records<'a>(
        &'a mut self,
        org: Uuid,
        rows: &'a [RecordRow<'a>],
        now: i64,
    ) -> Result<(), DbError> {
        const COLS: usize = 18;
        let uuid = super::sqlite_uuid;
        for chunk in rows.chunks(rows_per_statement(false, COLS)) {
            let sql = format!(
                "{RECORDS_INSERT} VALUES {} {RECORDS_ON_CONFLICT}",
                rows_params(1, chunk.len(), COLS)
            );
            let mut q = sqlx::query(AssertSqlSafe(super::positional(false, sql)));
            for r in chunk {
                q = q
                    .bind(uuid(r.id))
                    .bind(uuid(org))
                    .bind(r.kind)
                    .bind(r.doc)
                    .bind(r.status)
                    .bind(r.owner.map(uuid))
                    .bind(r.team.map(uuid))
                    .bind(r.territory.map(uuid))
                    .bind(r.account.map(uuid))
                    .bind(r.parent.map(uuid))
                    .bind(r.start_ms)
                    .bind(r.deleted)
                    .bind(r.created_seq)
                    .bind(r.updated_seq)
                    .bind(now)
                    .bind(now)
                    .bind(r.anchor_ms)
                    .bind(r.anchor_seq);
            }
            written(q.execute(&mut *self).await?.rows_affected(), chunk.len())?;
        }
        Ok(())
    }

    async fn grant_scope<'a>(&'a mut self, rows: &'a [ScopeRow]) -> Result<(), DbError> {
        let uuid = super::sqlite_uuid;
        for chunk in rows.chunks(rows_per_statement(false, 3)) {
            let sql = format!(
                "{SCOPE_INSERT} VALUES {} {SCOPE_ON_CONFLICT}",
                rows_params(1, chunk.len(), 3)
            );
            let mut q = sqlx::query(AssertSqlSafe(super::positional(false, sql)));
            for (id, principal, seq) in chunk {
                q = q.bind(uuid(*id)).bind(principal).bind(*seq);
            }
            q.execute(&mut *self).await?;
        }
        Ok(())
    }
}

/// Every row of a records upsert was inserted or updated; one that was not
/// is another organisation's (see [`RECORDS_ON_CONFLICT`]).
fn written(rows_affected: u64, rows: usize) -> Result<(), DbError> {
    if rows_affected == rows as u64 {
        Ok(())
    } else {
        Err(DbError::IdTaken)
    }
}

/// The columns of a read-scope row, in the order both forms bind them.
const SCOPE_INSERT: &str = "INSERT INTO record_scope (record_id, principal, granted_seq)";

/// A grant held already stays with the position it was first granted at.
const SCOPE_ON_CONFLICT: &str = "ON CONFLICT (record_id, principal) DO NOTHING";

impl BulkWrites for sqlx::PgConnection {
    async fn change_log<'a>(
        &'a mut self,
        org: Uuid,
        rows: &'a [LogRow<'a>],
        now: i64,
    ) -> Result<Vec<(i64, String, Vec<u8>)>, DbError> {
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(PG_ARRAY_ROWS) {
            let records: Vec<Uuid> = chunk.iter().map(|r| r.0).collect();
            let hashes: Vec<&[u8]> = chunk.iter().map(|r| r.1).collect();
            let changes: Vec<&[u8]> = chunk.iter().map(|r| r.2).collect();
            let users: Vec<Option<Uuid>> = chunk.iter().map(|r| r.3).collect();
            let devices: Vec<Option<Uuid>> = chunk.iter().map(|r| r.4).collect();
            // Numbered in the arrays' order (`ORDER BY n`): a record's
            // changes are logged in the order they were applied.
            out.extend(
                sqlx::query_as::<_, (i64, String, Vec<u8>)>(AssertSqlSafe(format!(
                    "{LOG_INSERT} SELECT $1, r, h, c, u, d, $2 FROM UNNEST($3::uuid[], \
                     $4::bytea[], $5::bytea[], $6::uuid[], $7::uuid[]) \
                     WITH ORDINALITY AS t(r, h, c, u, d, n) \
                     ORDER BY n RETURNING seq, CAST(record_id AS TEXT), hash"
                )))
                .bind(org)
                .bind(now)
                .bind(records)
                .bind(hashes)
                .bind(changes)
                .bind(users)
                .bind(devices)
                .fetch_all(&mut *self)
                .await?,
            );
        }
        Ok(out)
    }

    async fn upsert_records<'a>(
        &'a mut self,
        org: Uuid,
        rows: &'a [RecordRow<'a>],
        now: i64,
    ) -> Result<(), DbError> {
        for chunk in rows.chunks(PG_ARRAY_ROWS) {
            let column = |f: fn(&RecordRow<'_>) -> Option<Uuid>| -> Vec<Option<Uuid>> {
                chunk.iter().map(f).collect()
            };
            let sql = format!(
                "{RECORDS_INSERT} SELECT id, $1, kind, doc, status, owner_id, team_id, territory_id, account_id, \
                 parent_id, start_ms, deleted, created_seq, updated_seq, $2, $2, anchor_ms, \
                 anchor_seq FROM UNNEST($3::uuid[], $4::text[], $5::bytea[], $6::text[], \
                 $7::uuid[], $8::uuid[], $9::uuid[], $10::uuid[], $11::uuid[], $12::int8[], \
                 $13::bool[], $14::int8[], $15::int8[], $16::int8[], $17::int8[]) \
                 AS t(id, kind, doc, status, owner_id, team_id, territory_id, account_id, \
                 parent_id, start_ms, deleted, created_seq, updated_seq, anchor_ms, anchor_seq) \
                 {RECORDS_ON_CONFLICT}"
            );
            let done = sqlx::query(AssertSqlSafe(sql))
                .bind(org)
                .bind(now)
                .bind(chunk.iter().map(|r| r.id).collect::<Vec<Uuid>>())
                .bind(chunk.iter().map(|r| r.kind).collect::<Vec<&str>>())
                .bind(chunk.iter().map(|r| r.doc).collect::<Vec<&[u8]>>())
                .bind(
                    chunk
                        .iter()
                        .map(|r| r.status)
                        .collect::<Vec<Option<&str>>>(),
                )
                .bind(column(|r| r.owner))
                .bind(column(|r| r.team))
                .bind(column(|r| r.territory))
                .bind(column(|r| r.account))
                .bind(column(|r| r.parent))
                .bind(
                    chunk
                        .iter()
                        .map(|r| r.start_ms)
                        .collect::<Vec<Option<i64>>>(),
                )
                .bind(chunk.iter().map(|r| r.deleted).collect::<Vec<bool>>())
                .bind(chunk.iter().map(|r| r.created_seq).collect::<Vec<i64>>())
                .bind(chunk.iter().map(|r| r.updated_seq).collect::<Vec<i64>>())
                .bind(chunk.iter().map(|r| r.anchor_ms).collect::<Vec<i64>>())
                .bind(chunk.iter().map(|r| r.anchor_seq).collect::<Vec<i64>>())
                .execute(&mut *self)
                .await?;
            written(done.rows_affected(), chunk.len())?;
        }
        Ok(())
    }

    async fn grant_scope<'a>(&'a mut self, rows: &'a [ScopeRow]) -> Result<(), DbError> {
        for chunk in rows.chunks(PG_ARRAY_ROWS) {
            sqlx::query(AssertSqlSafe(format!(
                "{SCOPE_INSERT} SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::int8[]) \
                 {SCOPE_ON_CONFLICT}"
            )))
            .bind(chunk.iter().map(|r| r.0).collect::<Vec<Uuid>>())
            .bind(chunk.iter().map(|r| r.1.as_str()).collect::<Vec<&str>>())
            .bind(chunk.iter().map(|r| r.2).collect::<Vec<i64>>())
            .execute(&mut *self)
            .await?;
        }
        Ok(())
    }
}
