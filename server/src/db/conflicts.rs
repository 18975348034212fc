//! What the conflicts queue reads: the open rows of `conflicts` in the
//! caller's scope with their records' documents, and the names and devices
//! the evidence is told with. Rows are opened and closed by the push's own
//! transaction (`db::records`), never here.

use fieldsync_core::{OrgId, RecordId};

use super::{Database, DbError};
use crate::domain::Caller;
use crate::domain::conflicts::{DevicesByActor, MAX_LISTED, Names, OpenConflict};
use crate::on_pool;

type OpenRow = (
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    Vec<u8>,
);

/// The open conflicts on records in the caller's scope, newest first, at
/// most [`MAX_LISTED`].
pub async fn open(db: &Database, caller: &Caller) -> Result<Vec<OpenConflict>, DbError> {
    let p = caller.principals();
    let org = *caller.org.as_uuid();
    let rows: Vec<OpenRow> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT CAST(c.record_id AS TEXT), c.kind, c.path, c.detected_at, \
             CAST(c.user_id AS TEXT), CAST(c.device_id AS TEXT), r.doc \
             FROM conflicts c JOIN records r ON r.id = c.record_id \
             WHERE c.org_id = $1 AND c.resolved_at IS NULL AND EXISTS (SELECT 1 FROM \
             record_scope s WHERE s.record_id = c.record_id \
             AND s.principal IN ($2, $3, $4, $5, $6)) \
             ORDER BY c.detected_at DESC, c.record_id LIMIT $7",
        )
        .bind(uuid(org))
        .bind(&p[0])
        .bind(&p[1])
        .bind(&p[2])
        .bind(&p[3])
        .bind(&p[4])
        .bind(MAX_LISTED)
        .fetch_all(pool)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(
            |(record_id, kind, path, detected_at, user_id, device_id, doc)| OpenConflict {
                record_id,
                kind,
                path,
                detected_at,
                user_id,
                device_id,
                doc,
            },
        )
        .collect())
}

/// The organisation's users' names, by user id (text).
pub async fn user_names(db: &Database, org: OrgId) -> Result<Names, DbError> {
    let org = *org.as_uuid();
    let rows: Vec<(String, String)> = on_pool!(db, |pool, uuid| {
        sqlx::query_as("SELECT CAST(id AS TEXT), display_name FROM users WHERE org_id = $1")
            .bind(uuid(org))
            .fetch_all(pool)
            .await?
    });
    Ok(rows.into_iter().collect())
}

/// The organisation's devices by Automerge actor (lowercase hex): (device, user).
pub async fn devices_by_actor(db: &Database, org: OrgId) -> Result<DevicesByActor, DbError> {
    let org = *org.as_uuid();
    let rows: Vec<(String, String, String)> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT actor_id, CAST(id AS TEXT), CAST(user_id AS TEXT) FROM devices \
             WHERE org_id = $1",
        )
        .bind(uuid(org))
        .fetch_all(pool)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(|(actor, device, user)| (actor.to_lowercase(), (device, user)))
        .collect())
}

/// Whether the record has an open conflict in the organisation.
pub async fn is_open(db: &Database, org: OrgId, id: RecordId) -> Result<bool, DbError> {
    let org = *org.as_uuid();
    let found: Option<i32> = on_pool!(db, |pool, uuid| {
        sqlx::query_scalar(
            "SELECT 1 FROM conflicts WHERE record_id = $1 AND org_id = $2 \
             AND resolved_at IS NULL",
        )
        .bind(uuid(*id.as_uuid()))
        .bind(uuid(org))
        .fetch_optional(pool)
        .await?
    });
    Ok(found.is_some())
}
