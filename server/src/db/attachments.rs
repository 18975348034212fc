//! Every SQL statement of attachments and signature verdicts.
//!
//! Three tables: `attachments` (one row per file per organisation: what was
//! declared, `uploading` or `complete`, the thumbnail's mark),
//! `attachment_chunks` (the chunks of an upload in progress) and
//! `attachment_records` (which records a file is attached to; reading one of
//! them is what lets a caller see the file). Rows are keyed by
//! [`BlobKey`] (organisation and SHA-256), like the bytes in the blob store.
//!
//! Removing abandoned uploads is safe on several nodes at once: each upload is
//! claimed by a conditional `DELETE` ([`claim_abandoned`]) that exactly one
//! node wins (the row cascades to its chunks and links).

use fieldsync_core::{DeviceId, OrgId, RecordId, UserId};

use super::{Database, DbError};
use crate::domain::Caller;
use crate::domain::attachments::{Attachment, BlobKey, CHUNK_SIZE};
use crate::on_pool;

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The attachment `key`, if declared in its organisation.
pub async fn find(db: &Database, key: &BlobKey) -> Result<Option<Attachment>, DbError> {
    type Found = (String, String, i64, i64, String, Option<String>);
    let row: Option<Found> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT kind, content_type, size, chunk_size, state, thumbnail FROM attachments \
             WHERE org_id = $1 AND sha256 = $2",
        )
        .bind(uuid(*key.org.as_uuid()))
        .bind(key.sha256.as_str())
        .fetch_optional(pool)
        .await?
    });
    Ok(row.map(
        |(kind, content_type, size, chunk_size, state, thumbnail)| Attachment {
            kind,
            content_type,
            size: u64::try_from(size).unwrap_or(0),
            chunk_size: u64::try_from(chunk_size).unwrap_or(CHUNK_SIZE),
            complete: state == "complete",
            thumbnail,
        },
    ))
}

/// Whether the caller can read one of the records the attachment is attached to.
pub async fn linked_readable(
    db: &Database,
    caller: &Caller,
    key: &BlobKey,
) -> Result<bool, DbError> {
    let p = caller.principals();
    let org = *key.org.as_uuid();
    let found: Option<i32> = on_pool!(db, |pool, uuid| {
        sqlx::query_scalar(
            "SELECT 1 FROM attachment_records a JOIN records r ON r.id = a.record_id \
             WHERE a.org_id = $1 AND a.sha256 = $2 AND r.org_id = $3 AND \
             EXISTS (SELECT 1 FROM record_scope s WHERE s.record_id = r.id \
             AND s.principal IN ($4, $5, $6, $7, $8)) LIMIT 1",
        )
        .bind(uuid(org))
        .bind(key.sha256.as_str())
        .bind(uuid(org))
        .bind(&p[0])
        .bind(&p[1])
        .bind(&p[2])
        .bind(&p[3])
        .bind(&p[4])
        .fetch_optional(pool)
        .await?
    });
    Ok(found.is_some())
}

/// What a declaration stores.
#[derive(Debug, Clone, Copy)]
pub struct Declared<'a> {
    /// The record it is attached to.
    pub record: RecordId,
    /// Its kind's stored name.
    pub kind: &'static str,
    /// Its media type.
    pub content_type: &'a str,
    /// Its size in bytes.
    pub size: u64,
    /// The size of every chunk but the last.
    pub chunk_size: u64,
    /// Who declared it.
    pub created_by: UserId,
    /// From which device.
    pub device: DeviceId,
    /// When (seconds since the epoch).
    pub now: i64,
}

/// Declares an upload; declaring one again (still uploading) only marks it as
/// moving. A row already there keeps what it was first declared with.
pub async fn declare(db: &Database, key: &BlobKey, d: &Declared<'_>) -> Result<(), DbError> {
    on_pool!(db, |pool, uuid| {
        sqlx::query(
            "INSERT INTO attachments (org_id, sha256, record_id, kind, content_type, size, \
             chunk_size, created_by, device_id, created_at, touched_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (org_id, sha256) DO UPDATE SET touched_at = $12 \
             WHERE attachments.state = 'uploading'",
        )
        .bind(uuid(*key.org.as_uuid()))
        .bind(key.sha256.as_str())
        .bind(uuid(*d.record.as_uuid()))
        .bind(d.kind)
        .bind(d.content_type)
        .bind(to_i64(d.size))
        .bind(to_i64(d.chunk_size))
        .bind(uuid(*d.created_by.as_uuid()))
        .bind(uuid(*d.device.as_uuid()))
        .bind(d.now)
        .bind(d.now)
        .bind(d.now)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// Attaches the file to `record` too (once).
pub async fn link_record(
    db: &Database,
    key: &BlobKey,
    record: RecordId,
    linked_by: UserId,
    now: i64,
) -> Result<(), DbError> {
    on_pool!(db, |pool, uuid| {
        sqlx::query(
            "INSERT INTO attachment_records (org_id, sha256, record_id, linked_by, linked_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id, sha256, record_id) DO NOTHING",
        )
        .bind(uuid(*key.org.as_uuid()))
        .bind(key.sha256.as_str())
        .bind(uuid(*record.as_uuid()))
        .bind(uuid(*linked_by.as_uuid()))
        .bind(now)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// The chunk indexes recorded as stored, ascending.
pub async fn recorded_chunks(db: &Database, key: &BlobKey) -> Result<Vec<u32>, DbError> {
    let rows: Vec<i64> = on_pool!(db, |pool, uuid| {
        sqlx::query_scalar(
            "SELECT idx FROM attachment_chunks WHERE org_id = $1 AND sha256 = $2 ORDER BY idx",
        )
        .bind(uuid(*key.org.as_uuid()))
        .bind(key.sha256.as_str())
        .fetch_all(pool)
        .await?
    });
    Ok(rows
        .into_iter()
        .filter_map(|i| u32::try_from(i).ok())
        .collect())
}

/// Records chunk `idx` (of `size` bytes) as stored and the upload as moving,
/// with its uploaded bytes recounted.
pub async fn chunk_stored(
    db: &Database,
    key: &BlobKey,
    idx: u32,
    size: u64,
    now: i64,
) -> Result<(), DbError> {
    on_pool!(db, |pool, uuid| {
        sqlx::query(
            "INSERT INTO attachment_chunks (org_id, sha256, idx, size, stored_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (org_id, sha256, idx) DO UPDATE SET size = $6, stored_at = $7",
        )
        .bind(uuid(*key.org.as_uuid()))
        .bind(key.sha256.as_str())
        .bind(i64::from(idx))
        .bind(to_i64(size))
        .bind(now)
        .bind(to_i64(size))
        .bind(now)
        .execute(pool)
        .await?;
        sqlx::query(
            "UPDATE attachments SET uploaded_bytes = (SELECT COALESCE(SUM(c.size), 0) \
             FROM attachment_chunks c WHERE c.org_id = $1 AND c.sha256 = $2), touched_at = $3 \
             WHERE org_id = $4 AND sha256 = $5",
        )
        .bind(uuid(*key.org.as_uuid()))
        .bind(key.sha256.as_str())
        .bind(now)
        .bind(uuid(*key.org.as_uuid()))
        .bind(key.sha256.as_str())
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// Forgets the stored chunks of an upload (after it completed or failed).
pub async fn forget_chunks(db: &Database, key: &BlobKey) -> Result<(), DbError> {
    on_pool!(db, |pool, uuid| {
        sqlx::query("DELETE FROM attachment_chunks WHERE org_id = $1 AND sha256 = $2")
            .bind(uuid(*key.org.as_uuid()))
            .bind(key.sha256.as_str())
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// Marks the upload complete with its `size`; returns how many rows changed
/// (0 when it was removed as abandoned meanwhile).
pub async fn mark_complete(
    db: &Database,
    key: &BlobKey,
    size: u64,
    now: i64,
) -> Result<u64, DbError> {
    let updated = on_pool!(db, |pool, uuid| {
        sqlx::query(
            "UPDATE attachments SET state = 'complete', completed_at = $1, \
             uploaded_bytes = $2 WHERE org_id = $3 AND sha256 = $4",
        )
        .bind(now)
        .bind(to_i64(size))
        .bind(uuid(*key.org.as_uuid()))
        .bind(key.sha256.as_str())
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(updated)
}

/// Starts the upload over: nothing uploaded.
pub async fn reset_upload(db: &Database, key: &BlobKey) -> Result<(), DbError> {
    on_pool!(db, |pool, uuid| {
        sqlx::query("UPDATE attachments SET uploaded_bytes = 0 WHERE org_id = $1 AND sha256 = $2")
            .bind(uuid(*key.org.as_uuid()))
            .bind(key.sha256.as_str())
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// Keeps the thumbnail's mark (`ready` or `unavailable`).
pub async fn set_thumbnail(db: &Database, key: &BlobKey, mark: &str) -> Result<(), DbError> {
    on_pool!(db, |pool, uuid| {
        sqlx::query("UPDATE attachments SET thumbnail = $1 WHERE org_id = $2 AND sha256 = $3")
            .bind(mark)
            .bind(uuid(*key.org.as_uuid()))
            .bind(key.sha256.as_str())
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// Forgets the thumbnail's mark, so it is made again on the next request.
pub async fn forget_thumbnail(db: &Database, key: &BlobKey) -> Result<(), DbError> {
    on_pool!(db, |pool, uuid| {
        sqlx::query("UPDATE attachments SET thumbnail = NULL WHERE org_id = $1 AND sha256 = $2")
            .bind(uuid(*key.org.as_uuid()))
            .bind(key.sha256.as_str())
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// Up to `limit` uploads that have not moved since `cutoff`, oldest first, as
/// `(org_id, sha256)` text read back from the row (checked by the caller).
pub async fn abandoned(
    db: &Database,
    cutoff: i64,
    limit: i64,
) -> Result<Vec<(String, String)>, DbError> {
    let found: Vec<(String, String)> = on_pool!(db, |pool, _uuid| {
        sqlx::query_as(
            "SELECT CAST(org_id AS TEXT), sha256 FROM attachments \
             WHERE state = 'uploading' AND COALESCE(touched_at, created_at) < $1 \
             ORDER BY created_at LIMIT $2",
        )
        .bind(cutoff)
        .bind(limit)
        .fetch_all(pool)
        .await?
    });
    Ok(found)
}

/// Claims the abandoned upload `key`: its row goes (cascading to its chunks
/// and links) only if it is still an upload that has not moved since
/// `cutoff`, and only for one node. Returns how many rows went (1: claimed).
pub async fn claim_abandoned(db: &Database, key: &BlobKey, cutoff: i64) -> Result<u64, DbError> {
    let claimed = on_pool!(db, |pool, uuid| {
        sqlx::query(
            "DELETE FROM attachments WHERE org_id = $1 AND sha256 = $2 \
             AND state = 'uploading' AND COALESCE(touched_at, created_at) < $3",
        )
        .bind(uuid(*key.org.as_uuid()))
        .bind(key.sha256.as_str())
        .bind(cutoff)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(claimed)
}

/// A record's merged document within the organisation, whatever its scope
/// (a job and checklist response a signature covers, whoever may list them).
pub async fn org_doc(db: &Database, org: OrgId, id: RecordId) -> Result<Option<Vec<u8>>, DbError> {
    let bytes: Option<Vec<u8>> = on_pool!(db, |pool, uuid| {
        sqlx::query_scalar("SELECT doc FROM records WHERE id = $1 AND org_id = $2")
            .bind(uuid(*id.as_uuid()))
            .bind(uuid(*org.as_uuid()))
            .fetch_optional(pool)
            .await?
    });
    Ok(bytes)
}
