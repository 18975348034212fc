//! What the office's order and time pages read: the orders in a status and
//! the assignments (with their time entries) in the caller's scope, with the
//! owner's name and the account's document.
//!
//! Scoped like the sync path: a record is found only when one of the caller's
//! principals is among its scope rows (a manager reads their team's records,
//! an administrator the organisation's).

use fieldsync_core::RecordId;

use super::{Database, DbError, parse_uuid};
use crate::domain::Caller;
use crate::on_pool;

/// A record the office's lists are built from.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The record.
    pub id: RecordId,
    /// Its document.
    pub doc: Vec<u8>,
    /// The owner's name.
    pub owner_name: Option<String>,
    /// The document of the account it belongs to, when the caller reads it.
    pub account_doc: Option<Vec<u8>>,
    /// When the server last stored a change of it (Unix seconds).
    pub updated_at: i64,
}

type Row = (String, Vec<u8>, Option<String>, Option<Vec<u8>>, i64);

/// Records of `kind` in the caller's scope, not deleted, in `status` when
/// given, most recently changed first, at most `limit`.
pub async fn of_kind(
    db: &Database,
    caller: &Caller,
    kind: &str,
    status: Option<&str>,
    limit: usize,
) -> Result<Vec<Listed>, DbError> {
    let p = caller.principals();
    let org = *caller.org.as_uuid();
    // An empty status: any.
    const SQL: &str = "SELECT CAST(r.id AS TEXT), r.doc, u.display_name, \
         CASE WHEN EXISTS (SELECT 1 FROM record_scope s WHERE s.record_id = a.id \
         AND s.principal IN ($3, $4, $5, $6, $7)) THEN a.doc END, r.updated_at \
         FROM records r LEFT JOIN users u ON u.id = r.owner_id \
         LEFT JOIN records a ON a.id = r.account_id AND a.org_id = r.org_id \
         WHERE r.org_id = $1 AND r.kind = $2 AND r.deleted = $9 \
         AND ($10 = '' OR r.status = $10) \
         AND EXISTS (SELECT 1 FROM record_scope s WHERE s.record_id = r.id \
         AND s.principal IN ($3, $4, $5, $6, $7)) \
         ORDER BY r.updated_at DESC, r.id LIMIT $8";
    let rows: Vec<Row> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(SQL)
            .bind(uuid(org))
            .bind(kind)
            .bind(&p[0])
            .bind(&p[1])
            .bind(&p[2])
            .bind(&p[3])
            .bind(&p[4])
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(false)
            .bind(status.unwrap_or(""))
            .fetch_all(pool)
            .await?
    });
    rows.into_iter()
        .map(|(id, doc, owner_name, account_doc, updated_at)| {
            Ok(Listed {
                id: RecordId::from_uuid(parse_uuid(&id)?),
                doc,
                owner_name,
                account_doc,
                updated_at,
            })
        })
        .collect()
}
