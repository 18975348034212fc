//! Change notes across nodes on PostgreSQL: `NOTIFY` on one channel, a
//! listener connection per node, and catching up from the change log after
//! the listener's connection dropped. (A push sends its note inside its own
//! transaction, in `records::apply_pushes`, so a note exists exactly when its
//! changes are committed.) SQLite has one node and needs none of this.

use std::collections::BTreeSet;

use fieldsync_core::OrgId;
use sqlx::postgres::{PgListener, PgPoolOptions};

use super::{Database, DbError, parse_uuid};
use crate::domain::note::Note;

/// The PostgreSQL channel notes travel on.
pub const CHANNEL: &str = "fieldsync_changes";
/// `application_name` of each node's listener connection (operators can find it
/// in `pg_stat_activity`).
pub const LISTENER_APP_NAME: &str = "fieldsync-listener";

/// The payload of a note on the channel.
pub fn payload(note: &Note) -> Result<String, DbError> {
    serde_json::to_string(note)
        .map_err(|e| DbError::Corrupt(format!("cannot encode a change note: {e}")))
}

/// Sends `note` to every node now, outside any push (a revoked device).
/// Does nothing on SQLite.
pub async fn send(db: &Database, note: &Note) -> Result<(), DbError> {
    if let Database::Postgres(pool) = db {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload(note)?)
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// One node's listener connection on the notes channel.
#[derive(Debug)]
pub struct NoteListener {
    listener: PgListener,
}

impl NoteListener {
    /// Opens a dedicated connection (named [`LISTENER_APP_NAME`]) and listens.
    /// Fails on SQLite, which has no channel.
    pub async fn connect(db: &Database) -> Result<Self, DbError> {
        let Database::Postgres(pool) = db else {
            return Err(DbError::UnsupportedUrl(
                "change notes travel only on PostgreSQL".into(),
            ));
        };
        let options = pool
            .connect_options()
            .as_ref()
            .clone()
            .application_name(LISTENER_APP_NAME);
        let conn_pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        let mut listener = PgListener::connect_with(&conn_pool).await?;
        listener.listen(CHANNEL).await?;
        Ok(NoteListener { listener })
    }

    /// The next payload; `None` or an error when the connection dropped.
    pub async fn recv(&mut self) -> Result<Option<String>, DbError> {
        Ok(self
            .listener
            .try_recv()
            .await?
            .map(|n| n.payload().to_owned()))
    }
}

/// One organisation-wide note per organisation with changes after `after`.
pub async fn catch_up(db: &Database, after: i64) -> Result<Vec<Note>, DbError> {
    let rows: Vec<(String, i64)> = crate::on_pool!(db, |pool, _uuid| {
        sqlx::query_as(
            "SELECT CAST(org_id AS TEXT), MAX(seq) FROM change_log WHERE seq > $1 GROUP BY org_id",
        )
        .bind(after)
        .fetch_all(pool)
        .await?
    });
    rows.into_iter()
        .map(|(org, seq)| {
            Ok(Note::new(
                OrgId::from_uuid(parse_uuid(&org)?),
                seq,
                None,
                BTreeSet::new(),
            ))
        })
        .collect()
}
