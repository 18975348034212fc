//! What van stock reads: the van of a technician.

use fieldsync_core::{OrgId, RecordId, UserId};

use super::records::parse_record_id;
use super::{Database, DbError};
use crate::on_pool;

/// The van of `technician` (the oldest live `van_stock` record they own),
/// whoever asks: the caller's scope is checked when the document is read.
pub async fn van_of(
    db: &Database,
    org: OrgId,
    technician: UserId,
) -> Result<Option<RecordId>, DbError> {
    let row: Option<(String,)> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT CAST(id AS TEXT) FROM records WHERE org_id = $1 AND kind = 'van_stock' \
             AND owner_id = $2 AND deleted = $3 ORDER BY id LIMIT 1",
        )
        .bind(uuid(*org.as_uuid()))
        .bind(uuid(*technician.as_uuid()))
        .bind(false)
        .fetch_optional(pool)
        .await?
    });
    row.map(|(id,)| parse_record_id(&id)).transpose()
}
