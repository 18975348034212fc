//! Every SQL statement of attachments and signature verdicts.
//!
//! Files: `attachments` (one row per complete, verified file per
//! organisation, with its thumbnail's mark) and `attachment_records` (which
//! records a file is attached to; reading one of them is what lets a caller
//! see the file), keyed by [`BlobKey`] (organisation and SHA-256) like the
//! bytes in the blob store. Uploads: `attachment_uploads` (one session per
//! file and device), `attachment_upload_chunks` (its chunks) and
//! `attachment_upload_records` (the records its device attaches the file to,
//! linked when it completes), keyed by [`UploadKey`].
//!
//! Removing abandoned uploads is safe on several nodes at once: each upload is
//! claimed by a conditional `DELETE` ([`claim_abandoned`]) that exactly one
//! node wins (the row cascades to its chunks and records).

use fieldsync_core::{OrgId, RecordId, UserId};

use super::{Database, DbError, parse_uuid};
use crate::domain::Caller;
use crate::domain::attachments::{Attachment, BlobKey, CHUNK_SIZE, UploadKey};
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
    /// When (seconds since the epoch).
    pub now: i64,
}

/// Starts the device's upload session of a file; declaring it again only
/// marks it as moving (it keeps what it was first declared with).
pub async fn declare_upload(
    db: &Database,
    upload: &UploadKey,
    d: &Declared<'_>,
) -> Result<(), DbError> {
    let key = &upload.file;
    on_pool!(db, |pool, uuid| {
        sqlx::query(
            "INSERT INTO attachment_uploads (org_id, sha256, device_id, kind, content_type, \
             size, chunk_size, created_by, created_at, touched_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (org_id, sha256, device_id) DO UPDATE SET touched_at = $11",
        )
        .bind(uuid(*key.org.as_uuid()))
        .bind(key.sha256.as_str())
        .bind(uuid(*upload.device.as_uuid()))
        .bind(d.kind)
        .bind(d.content_type)
        .bind(to_i64(d.size))
        .bind(to_i64(d.chunk_size))
        .bind(uuid(*d.created_by.as_uuid()))
        .bind(d.now)
        .bind(d.now)
        .bind(d.now)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// Starts the device's upload over with what it declares now: nothing stored.
pub async fn restart_upload(
    db: &Database,
    upload: &UploadKey,
    d: &Declared<'_>,
) -> Result<(), DbError> {
    let key = &upload.file;
    on_pool!(db, |pool, uuid| {
        let mut tx = pool.begin().await?;
        sqlx::query(
            "UPDATE attachment_uploads SET kind = $1, content_type = $2, size = $3, \
             chunk_size = $4, touched_at = $5 WHERE org_id = $6 AND sha256 = $7 AND device_id = $8",
        )
        .bind(d.kind)
        .bind(d.content_type)
        .bind(to_i64(d.size))
        .bind(to_i64(d.chunk_size))
        .bind(d.now)
        .bind(uuid(*key.org.as_uuid()))
        .bind(key.sha256.as_str())
        .bind(uuid(*upload.device.as_uuid()))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM attachment_upload_chunks \
             WHERE org_id = $1 AND sha256 = $2 AND device_id = $3",
        )
        .bind(uuid(*key.org.as_uuid()))
        .bind(key.sha256.as_str())
        .bind(uuid(*upload.device.as_uuid()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    });
    Ok(())
}

/// The device's upload session of a file, as an attachment not yet complete.
pub async fn find_upload(db: &Database, upload: &UploadKey) -> Result<Option<Attachment>, DbError> {
    let key = &upload.file;
    let row: Option<(String, String, i64, i64)> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT kind, content_type, size, chunk_size FROM attachment_uploads \
             WHERE org_id = $1 AND sha256 = $2 AND device_id = $3",
        )
        .bind(uuid(*key.org.as_uuid()))
        .bind(key.sha256.as_str())
        .bind(uuid(*upload.device.as_uuid()))
        .fetch_optional(pool)
        .await?
    });
    Ok(
        row.map(|(kind, content_type, size, chunk_size)| Attachment {
            kind,
            content_type,
            size: u64::try_from(size).unwrap_or(0),
            chunk_size: u64::try_from(chunk_size).unwrap_or(CHUNK_SIZE),
            complete: false,
            thumbnail: None,
        }),
    )
}

/// Notes that the upload's device attaches the file to `record` too: linked
/// when the upload completes.
pub async fn add_upload_record(
    db: &Database,
    upload: &UploadKey,
    record: RecordId,
    by: UserId,
) -> Result<(), DbError> {
    let key = &upload.file;
    on_pool!(db, |pool, uuid| {
        sqlx::query(
            "INSERT INTO attachment_upload_records (org_id, sha256, device_id, record_id, \
             linked_by) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (org_id, sha256, device_id, record_id) DO NOTHING",
        )
        .bind(uuid(*key.org.as_uuid()))
        .bind(key.sha256.as_str())
        .bind(uuid(*upload.device.as_uuid()))
        .bind(uuid(*record.as_uuid()))
        .bind(uuid(*by.as_uuid()))
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// Attaches the complete file to `record` too (once).
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

/// The upload's chunk indexes recorded as stored, ascending.
pub async fn recorded_chunks(db: &Database, upload: &UploadKey) -> Result<Vec<u32>, DbError> {
    let key = &upload.file;
    let rows: Vec<i64> = on_pool!(db, |pool, uuid| {
        sqlx::query_scalar(
            "SELECT idx FROM attachment_upload_chunks \
             WHERE org_id = $1 AND sha256 = $2 AND device_id = $3 ORDER BY idx",
        )
        .bind(uuid(*key.org.as_uuid()))
        .bind(key.sha256.as_str())
        .bind(uuid(*upload.device.as_uuid()))
        .fetch_all(pool)
        .await?
    });
    Ok(rows
        .into_iter()
        .filter_map(|i| u32::try_from(i).ok())
        .collect())
}

/// Records chunk `idx` (of `size` bytes) of the upload as stored and the
/// upload as moving.
pub async fn chunk_stored(
    db: &Database,
    upload: &UploadKey,
    idx: u32,
    size: u64,
    now: i64,
) -> Result<(), DbError> {
    let key = &upload.file;
    on_pool!(db, |pool, uuid| {
        let mut tx = pool.begin().await?;
        let moved = sqlx::query(
            "UPDATE attachment_uploads SET touched_at = $1 \
             WHERE org_id = $2 AND sha256 = $3 AND device_id = $4",
        )
        .bind(now)
        .bind(uuid(*key.org.as_uuid()))
        .bind(key.sha256.as_str())
        .bind(uuid(*upload.device.as_uuid()))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // Removed as abandoned meanwhile: its chunk rows went with it.
        if moved == 1 {
            sqlx::query(
                "INSERT INTO attachment_upload_chunks \
                 (org_id, sha256, device_id, idx, size, stored_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (org_id, sha256, device_id, idx) \
                 DO UPDATE SET size = $7, stored_at = $8",
            )
            .bind(uuid(*key.org.as_uuid()))
            .bind(key.sha256.as_str())
            .bind(uuid(*upload.device.as_uuid()))
            .bind(i64::from(idx))
            .bind(to_i64(size))
            .bind(now)
            .bind(to_i64(size))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
    });
    Ok(())
}

/// Forgets the stored chunks of an upload (after its chunks were assembled,
/// into the file or into nothing).
pub async fn forget_chunks(db: &Database, upload: &UploadKey) -> Result<(), DbError> {
    let key = &upload.file;
    on_pool!(db, |pool, uuid| {
        sqlx::query(
            "DELETE FROM attachment_upload_chunks \
             WHERE org_id = $1 AND sha256 = $2 AND device_id = $3",
        )
        .bind(uuid(*key.org.as_uuid()))
        .bind(key.sha256.as_str())
        .bind(uuid(*upload.device.as_uuid()))
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// What [`finish_upload`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// The file is stored and the upload's records are linked to it; `new`
    /// when no other upload had stored it before.
    Linked {
        /// The file's row was made by this upload.
        new: bool,
    },
    /// The upload was removed as abandoned while its chunks were assembled.
    Gone,
}

/// Ends an upload whose chunks assembled into its verified file of `size`
/// bytes, in one transaction: the session goes, the file's row is made
/// (unless another upload made it first) and the records the session's device
/// named are linked to it.
pub async fn finish_upload(
    db: &Database,
    upload: &UploadKey,
    file: &Attachment,
    now: i64,
) -> Result<Finished, DbError> {
    let key = &upload.file;
    let device = *upload.device.as_uuid();
    let finished = on_pool!(db, |pool, uuid| {
        let mut tx = pool.begin().await?;
        let records: Vec<(String, String)> = sqlx::query_as(
            "SELECT CAST(record_id AS TEXT), CAST(linked_by AS TEXT) \
             FROM attachment_upload_records \
             WHERE org_id = $1 AND sha256 = $2 AND device_id = $3 ORDER BY record_id",
        )
        .bind(uuid(*key.org.as_uuid()))
        .bind(key.sha256.as_str())
        .bind(uuid(device))
        .fetch_all(&mut *tx)
        .await?;
        let created_by: Option<String> = sqlx::query_scalar(
            "DELETE FROM attachment_uploads WHERE org_id = $1 AND sha256 = $2 \
             AND device_id = $3 RETURNING CAST(created_by AS TEXT)",
        )
        .bind(uuid(*key.org.as_uuid()))
        .bind(key.sha256.as_str())
        .bind(uuid(device))
        .fetch_optional(&mut *tx)
        .await?;
        match (created_by, records.first()) {
            (Some(created_by), Some((first, _))) => {
                let new = sqlx::query(
                    "INSERT INTO attachments (org_id, sha256, record_id, kind, content_type, \
                     size, chunk_size, uploaded_bytes, state, created_by, device_id, \
                     created_at, completed_at, touched_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'complete', $9, $10, $11, $12, $13) \
                     ON CONFLICT (org_id, sha256) DO NOTHING",
                )
                .bind(uuid(*key.org.as_uuid()))
                .bind(key.sha256.as_str())
                .bind(uuid(parse_uuid(first)?))
                .bind(&file.kind)
                .bind(&file.content_type)
                .bind(to_i64(file.size))
                .bind(to_i64(file.chunk_size))
                .bind(to_i64(file.size))
                .bind(uuid(parse_uuid(&created_by)?))
                .bind(uuid(device))
                .bind(now)
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                for (record, by) in &records {
                    sqlx::query(
                        "INSERT INTO attachment_records \
                         (org_id, sha256, record_id, linked_by, linked_at) \
                         VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (org_id, sha256, record_id) DO NOTHING",
                    )
                    .bind(uuid(*key.org.as_uuid()))
                    .bind(key.sha256.as_str())
                    .bind(uuid(parse_uuid(record)?))
                    .bind(uuid(parse_uuid(by)?))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Finished::Linked { new }
            }
            _ => {
                tx.rollback().await?;
                Finished::Gone
            }
        }
    });
    Ok(finished)
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
/// `(org_id, sha256, device_id)` text read back from the row (checked by the
/// caller).
pub async fn abandoned(
    db: &Database,
    cutoff: i64,
    limit: i64,
) -> Result<Vec<(String, String, String)>, DbError> {
    let found: Vec<(String, String, String)> = on_pool!(db, |pool, _uuid| {
        sqlx::query_as(
            "SELECT CAST(org_id AS TEXT), sha256, CAST(device_id AS TEXT) \
             FROM attachment_uploads WHERE touched_at < $1 ORDER BY touched_at LIMIT $2",
        )
        .bind(cutoff)
        .bind(limit)
        .fetch_all(pool)
        .await?
    });
    Ok(found)
}

/// Claims the abandoned upload: its row goes (cascading to its chunks and
/// records) only if it has not moved since `cutoff`, and only for one node.
/// Returns how many rows went (1: claimed).
pub async fn claim_abandoned(
    db: &Database,
    upload: &UploadKey,
    cutoff: i64,
) -> Result<u64, DbError> {
    let key = &upload.file;
    let claimed = on_pool!(db, |pool, uuid| {
        sqlx::query(
            "DELETE FROM attachment_uploads WHERE org_id = $1 AND sha256 = $2 \
             AND device_id = $3 AND touched_at < $4",
        )
        .bind(uuid(*key.org.as_uuid()))
        .bind(key.sha256.as_str())
        .bind(uuid(*upload.device.as_uuid()))
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
