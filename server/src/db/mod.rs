//! The server's database: SQLite (embedded default) or PostgreSQL, chosen from
//! the URL, behind one type. Migrations for each dialect live in
//! `migrations/sqlite` and `migrations/postgres` and are embedded in the binary.
//! On PostgreSQL sqlx's migrator holds an advisory lock while it runs, so several
//! server nodes starting at once against one database migrate it exactly once.
//!
//! Queries are written once with `$1`-style placeholders, which both dialects
//! accept, and run on either pool through [`on_pool!`](crate::on_pool); the
//! push's large batched statements go through `positional` first, which
//! gives SQLite anonymous `?` (cheaper to bind by the thousand). The one
//! difference the code sees is ids: PostgreSQL stores `UUID`, SQLite stores the
//! hyphenated text, so ids are bound through the dialect's `uuid` function the
//! macro provides and read back as `CAST(col AS TEXT)`.

pub mod accounts;
pub mod attachments;
pub mod backup;
pub(crate) mod bulk;
pub mod catalogue;
pub(crate) mod checkout;
pub mod conflicts;
pub mod devices;
pub mod erasure;
pub mod export;
pub mod facts;
pub mod history;
pub mod jobs;
pub mod keys;
pub mod notify;
pub mod orders;
pub mod people;
pub mod plan;
pub mod records;
pub mod reports;
pub mod templates;
pub mod vans;
pub mod web_sessions;

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// `sql` for SQLite with its `$1, $2, …` parameters written as anonymous `?`,
/// when each appears once and in that order (else `sql` as it is; PostgreSQL
/// always gets it as it is). sqlx binds a named parameter by asking SQLite
/// its name, which walks the statement's list of names: binding n of them
/// costs n², a quarter of SQLite's thread in a profile of seeding. Anonymous
/// parameters have no names to walk. Quoted text is left alone.
pub(crate) fn positional(pg: bool, sql: String) -> String {
    if pg {
        return sql;
    }
    let mut out = String::with_capacity(sql.len());
    let mut next = 1usize;
    let mut chars = sql.char_indices().peekable();
    let mut quoted = false;
    while let Some((_, c)) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
        }
        if c != '$' || quoted {
            out.push(c);
            continue;
        }
        let mut n = 0usize;
        let mut digits = 0;
        while let Some(&(_, d)) = chars.peek() {
            let Some(v) = d.to_digit(10) else { break };
            n = n.saturating_mul(10).saturating_add(v as usize);
            digits += 1;
            chars.next();
        }
        if digits == 0 || n != next {
            return sql;
        }
        next += 1;
        out.push('?');
    }
    out
}

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

/// Database failures, with the URL's password never included.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL is not `sqlite://…` or `postgres://…`.
    #[error(
        "unsupported database URL {0:?}: use sqlite://PATH or postgres://USER:PASSWORD@HOST/DB"
    )]
    UnsupportedUrl(String),
    /// Connecting or querying failed.
    #[error("database error: {0}")]
    Sqlx(#[source] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value is not what the schema promises.
    #[error("unexpected stored data: {0}")]
    Corrupt(String),
    /// The operation does not apply to this database.
    #[error("{0}")]
    Unsupported(&'static str),
    /// A record's id was taken by another organisation's record while a
    /// push was being written: the push is run again, and the record then
    /// loads as another organisation's.
    #[error("a record id was taken by another organisation while the push was written")]
    IdTaken,
    /// The server's own write machinery failed (a writer task stopped or
    /// panicked): a bug, not the database's.
    #[error("{0}")]
    Internal(&'static str),
}

impl From<sqlx::Error> for DbError {
    /// Every failure of a statement passes here: one that says the
    /// connection to PostgreSQL broke marks the pool's connections as
    /// suspect (see [`checkout`]).
    fn from(e: sqlx::Error) -> Self {
        if checkout::breaks_connections(&e) {
            checkout::note_broken_connection();
        }
        DbError::Sqlx(e)
    }
}

impl DbError {
    /// The name of the violated unique constraint, if that is what failed.
    pub fn unique_violation(&self) -> Option<String> {
        match self {
            DbError::Sqlx(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Some(e.constraint().unwrap_or_default().to_owned())
            }
            _ => None,
        }
    }
}

/// Runs `$body` with `$pool` bound to whichever pool `$db` holds and `$uuid`
/// bound to the function that turns a [`uuid::Uuid`] into that dialect's bind
/// value. The body is compiled once per dialect.
#[macro_export]
macro_rules! on_pool {
    ($db:expr, |$pool:ident, $uuid:ident| $body:expr) => {
        match $db {
            $crate::db::Database::Sqlite($pool) => {
                let $uuid = $crate::db::sqlite_uuid;
                $body
            }
            $crate::db::Database::Postgres($pool) => {
                let $uuid = $crate::db::pg_uuid;
                $body
            }
        }
    };
}

/// An id as SQLite stores it: hyphenated text.
pub fn sqlite_uuid(id: uuid::Uuid) -> String {
    id.hyphenated().to_string()
}

/// An id as PostgreSQL stores it: a native `UUID`.
pub fn pg_uuid(id: uuid::Uuid) -> uuid::Uuid {
    id
}

/// Parses an id read back with `CAST(col AS TEXT)`.
pub fn parse_uuid(text: &str) -> Result<uuid::Uuid, DbError> {
    uuid::Uuid::parse_str(text).map_err(|_| DbError::Corrupt(format!("bad id {text:?}")))
}

/// Seconds since the Unix epoch: the unit of every stored time.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A pool on one of the supported databases.
#[derive(Debug, Clone)]
pub enum Database {
    /// Embedded SQLite.
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Postgres(PgPool),
}

impl Database {
    /// Connects to `url` (creating a SQLite file if missing).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, DbError> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                // Deleted content is zeroed, not left in free pages: what an
                // erasure removes is gone from the file (docs/privacy.md).
                .pragma("secure_delete", "ON");
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections.max(1))
                // A connection to a local file does not break while it
                // sits in the pool: no ping (a round trip to the
                // connection's worker thread) before each checkout.
                .test_before_acquire(false)
                .connect_with(options)
                .await?;
            Ok(Database::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            // PostgreSQL's default plan cache: a prepared statement may switch
            // to a generic plan after five runs, which suits the push path's
            // statements. The pull's range queries, whose best plan depends on
            // the range, are sent unnamed and planned for their parameters on
            // every run (`range_queries_cached`).
            let options = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(Duration::from_secs(10))
                // A connection is pinged before it is handed out only when it
                // may be dead (`checkout`), not on every checkout.
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if checkout::needs_ping(meta.idle_for) {
                            sqlx::Connection::ping(conn).await?;
                        }
                        Ok(true)
                    })
                })
                .connect_with(options)
                .await?;
            Ok(Database::Postgres(pool))
        } else {
            Err(DbError::UnsupportedUrl(crate::domain::redact::redact(url)))
        }
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), DbError> {
        match self {
            Database::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await?,
            Database::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    /// `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "sqlite",
            Database::Postgres(_) => "postgres",
        }
    }

    /// A trivial query, for health checks.
    pub async fn ping(&self) -> Result<(), DbError> {
        match self {
            Database::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(|_| ())?,
            Database::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(|_| ())?,
        }
        Ok(())
    }

    /// Number of applied migrations (for `migrate` output and tests).
    pub async fn applied_migrations(&self) -> Result<i64, DbError> {
        let sql = "SELECT COUNT(*) FROM _sqlx_migrations WHERE success";
        let n: i64 = match self {
            Database::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
            Database::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
        };
        Ok(n)
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        match self {
            Database::Sqlite(pool) => pool.close().await,
            Database::Postgres(pool) => pool.close().await,
        }
    }
}

impl DbError {
    /// Whether this is a bug (stored data that breaks the schema's promises,
    /// a statement the database cannot run, a row the server cannot read, or
    /// the server's own write machinery) rather than the database failing:
    /// the answer and the log then say so, instead of sending the operator to
    /// look at a database that is up.
    fn is_bug(&self) -> bool {
        match self {
            DbError::Corrupt(_) | DbError::Internal(_) => true,
            DbError::Sqlx(e) => match e {
                sqlx::Error::ColumnDecode { .. }
                | sqlx::Error::ColumnIndexOutOfBounds { .. }
                | sqlx::Error::ColumnNotFound(_)
                | sqlx::Error::Decode(_)
                | sqlx::Error::TypeNotFound { .. } => true,
                // A statement the database refuses as written: PostgreSQL's
                // class 42 (syntax error or access rule violation: unknown
                // table or column, a missing privilege), SQLite's plain
                // SQLITE_ERROR (1), which it answers for the same.
                sqlx::Error::Database(d) => d
                    .code()
                    .is_some_and(|code| code.starts_with("42") || code == "1"),
                _ => false,
            },
            _ => false,
        }
    }
}

impl From<DbError> for crate::domain::Error {
    /// A database failure is the domain's `Unavailable`, except a bug
    /// (`Internal`).
    fn from(e: DbError) -> Self {
        if e.is_bug() {
            crate::domain::Error::Internal(Box::new(e))
        } else {
            crate::domain::Error::Unavailable(Box::new(e))
        }
    }
}

impl From<std::sync::Arc<DbError>> for crate::domain::Error {
    /// The error of a group transaction, as each of its pushes reports it:
    /// classified as the error itself is.
    fn from(e: std::sync::Arc<DbError>) -> Self {
        match std::sync::Arc::try_unwrap(e) {
            Ok(e) => e.into(),
            Err(shared) if shared.is_bug() => crate::domain::Error::Internal(Box::new(shared)),
            Err(shared) => crate::domain::Error::Unavailable(Box::new(shared)),
        }
    }
}

/// `column` (an organisation id) as a condition names it: on SQLite behind a
/// unary `+`, which keeps the planner off the indexes that lead with it.
/// SQLite plans without statistics and takes an equality on an indexed
/// column for selective; an organisation's id is the least selective column
/// there is (most servers hold one), and statements that name records,
/// accounts or changes by id walked every record or change of the
/// organisation instead (the morning rush on SQLite spent most of its CPU
/// so: docs/benchmarks.md, "The morning rush on SQLite"). PostgreSQL keeps
/// statistics and gets the column as it is.
pub(crate) fn sqlite_org(pg: bool, column: &str) -> String {
    if pg {
        column.to_owned()
    } else {
        format!("+{column}")
    }
}

/// Whether the pull's queries over a range of the change log (`records::pull`,
/// `history::changes`) keep a prepared statement on the connection.
/// Not on PostgreSQL: a prepared statement may switch to a generic plan after
/// five runs, and the feed query's generic plan joined every change of the
/// range to every record of the caller's scope, 1.5 s where the plan for the
/// actual range takes 14 ms (the 60-minute soak found it: p99 from 0.1 s to
/// 1 s once connections had switched; docs/reliability.md). Sent unnamed, a
/// statement is planned for its parameters on every run. Planning every
/// statement of every connection instead (`plan_cache_mode =
/// force_custom_plan`, the first fix) cost PostgreSQL a quarter of its CPU on
/// the push path (docs/benchmarks.md, "The push path, fifth round").
pub(crate) fn range_queries_cached(db: &Database) -> bool {
    !matches!(db, Database::Postgres(_))
}

/// What SQLite plans for `sql` (with `params` parameters, all NULL) on an
/// empty database with every migration applied: each step's description.
/// SQLite keeps no statistics until `ANALYZE` runs, so the plan is the one a
/// server's statements get, however many rows the tables hold.
#[cfg(test)]
pub(crate) async fn sqlite_plan(sql: &str, params: usize) -> Vec<String> {
    let db = Database::connect("sqlite::memory:", 1)
        .await
        .expect("an in-memory database");
    db.migrate().await.expect("the migrations");
    let Database::Sqlite(pool) = &db else {
        unreachable!("connected to SQLite")
    };
    let sql = format!("EXPLAIN QUERY PLAN {sql}");
    let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(sqlx::AssertSqlSafe(sql));
    for _ in 0..params {
        query = query.bind(None::<String>);
    }
    query
        .fetch_all(pool)
        .await
        .expect("a plan")
        .into_iter()
        .map(|(_, _, _, detail)| detail)
        .collect()
}

/// The position of the step of `plan` that contains `needle`.
#[cfg(test)]
pub(crate) fn plan_step(plan: &[String], needle: &str) -> usize {
    plan.iter()
        .position(|d| d.contains(needle))
        .unwrap_or_else(|| panic!("no step {needle:?} in {plan:#?}"))
}

#[cfg(test)]
mod tests {
    use super::{DbError, positional};

    #[tokio::test]
    async fn a_statement_the_database_refuses_is_a_bug_not_an_outage() {
        let pool = sqlx::SqlitePool::connect("sqlite::memory:")
            .await
            .expect("an in-memory database");
        for sql in ["SELEC 1", "SELECT nothing FROM nowhere"] {
            let e = DbError::from(sqlx::query(sql).execute(&pool).await.expect_err("refused"));
            assert!(e.is_bug(), "{sql}: {e}");
            assert!(matches!(
                crate::domain::Error::from(e),
                crate::domain::Error::Internal(_)
            ));
        }
        pool.close().await;
        let e = DbError::from(
            sqlx::query("SELECT 1")
                .execute(&pool)
                .await
                .expect_err("closed"),
        );
        assert!(!e.is_bug(), "a closed pool is an outage: {e}");
    }

    #[test]
    fn parameters_in_order_become_anonymous_on_sqlite_only() {
        let sql = "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)".to_owned();
        assert_eq!(
            positional(false, sql.clone()),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)"
        );
        assert_eq!(positional(true, sql.clone()), sql);
    }

    #[test]
    fn parameters_out_of_order_or_repeated_are_left_named() {
        for sql in [
            "SELECT 1 WHERE a = $2 AND b = $1",
            "SELECT 1 WHERE a = $1 AND b = $1",
            "SELECT 1 WHERE a = $1 AND b = $3",
            "SELECT $ FROM t",
        ] {
            assert_eq!(positional(false, sql.to_owned()), sql);
        }
    }

    #[test]
    fn dollars_in_quoted_text_are_not_parameters() {
        assert_eq!(
            positional(false, "SELECT '$9', $1, 'it''s $2', $2".to_owned()),
            "SELECT '$9', ?, 'it''s $2', ?"
        );
    }
}
