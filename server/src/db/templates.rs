//! What the checklist template pages, API and CLI read: the templates (every
//! version) the caller can read, scoped like the sync path.

use fieldsync_core::RecordId;

use super::{Database, DbError, parse_uuid};
use crate::domain::Caller;
use crate::on_pool;

/// The documents of the checklist templates (every version, drafts too) in
/// the caller's organisation and scope, not deleted, oldest first, at most
/// `limit`.
pub async fn readable(
    db: &Database,
    caller: &Caller,
    limit: usize,
) -> Result<Vec<(RecordId, Vec<u8>)>, DbError> {
    let p = caller.principals();
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows: Vec<(String, Vec<u8>)> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT CAST(r.id AS TEXT), r.doc FROM records r WHERE r.org_id = $1 \
             AND r.kind = 'checklist_template' AND r.deleted = $2 AND \
             EXISTS (SELECT 1 FROM record_scope s WHERE s.record_id = r.id \
             AND s.principal IN ($3, $4, $5, $6, $7)) ORDER BY r.created_seq LIMIT $8",
        )
        .bind(uuid(*caller.org.as_uuid()))
        .bind(false)
        .bind(&p[0])
        .bind(&p[1])
        .bind(&p[2])
        .bind(&p[3])
        .bind(&p[4])
        .bind(limit)
        .fetch_all(pool)
        .await?
    });
    rows.into_iter()
        .map(|(id, doc)| Ok((RecordId::from_uuid(parse_uuid(&id)?), doc)))
        .collect()
}
