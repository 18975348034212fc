//! Attachments: photos, signatures and documents a device captured offline and
//! uploads later, in chunks, resumably (issue #7). The bytes live in a
//! [`BlobStore`] (files under the data directory today); the database keeps
//! what was declared, which chunks are stored and which records an attachment
//! belongs to.
//!
//! The flow (described for app developers in `docs/protocol.md`):
//!
//! 1. `POST /v1/attachments` declares `{sha256, record_id, kind, content_type,
//!    size}`. The caller must be able to write the record (whoever reads a
//!    record may write it). The answer names the chunk size and the chunks
//!    already stored, so declaring again after a lost connection is how a device
//!    resumes. A file already complete in the organisation is not uploaded
//!    again (`complete: true`): it is attached to the new record too.
//! 2. `PUT /v1/attachments/{sha256}/chunks/{idx}` stores one chunk, exactly
//!    [`CHUNK_SIZE`] bytes except the last, whose SHA-256 the sender gives in
//!    `x-chunk-sha256`; a chunk that does not match is refused and not stored.
//! 3. `POST /v1/attachments/{sha256}/complete` assembles the chunks (streaming)
//!    and keeps the file only if its SHA-256 is the declared one.
//! 4. `GET /v1/attachments/{sha256}` streams the file to anyone who can read a
//!    record it is attached to; to anyone else it does not exist (404).
//! 5. `GET /v1/attachments/{sha256}/thumbnail` serves a photo's thumbnail (a
//!    JPEG, longest side 320 px) under the same rule. It is made once, on the
//!    blocking pool, right after the photo completes (or on the first request,
//!    if that node stopped first); a photo that cannot be decoded answers 404
//!    `thumbnail_unavailable`, for good.
//!
//! An upload that has not moved for `[attachments] abandoned_after_hours` is
//! removed with its chunks by [`remove_abandoned`], which every node runs
//! periodically and `fieldsync attachments cleanup` runs once; each upload is
//! removed by exactly one of them (a conditional `DELETE` that one wins).
//!
//! Hashes from the path are checked to be 64 lowercase hex digits before
//! anything else, so no request names a path of its choosing.
//!
//! While an upload is in progress, any writer of one of its records in the
//! organisation may add chunks; a wrong chunk costs the upload a restart (the
//! whole-file hash catches it), never a wrong file.

mod blob;
mod s3;
pub mod thumbnail;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use fieldsync_core::RecordId;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use blob::{Assembled, BlobKey, BlobReader, BlobStore, FsBlobStore, Sha256Hex};
pub use s3::S3BlobStore;

use crate::AppState;
use crate::auth::AuthUser;
use crate::db::{Database, DbError, now_secs};
use crate::error::{ApiError, ApiJson};
use crate::on_pool;
use crate::settings::{BlobStoreKind, Settings};
use crate::store::{self, Caller};

/// Every chunk but the last is exactly this long (1 MiB).
pub const CHUNK_SIZE: u64 = 1024 * 1024;
/// The header that carries a chunk's SHA-256 (64 lowercase hex digits).
pub const CHUNK_HASH_HEADER: &str = "x-chunk-sha256";
/// How long browsers and proxies may keep a download or thumbnail: its name
/// is its content's hash, so it never changes.
const IMMUTABLE: &str = "private, max-age=31536000, immutable";

/// The blob store the settings name: files under `<data_dir>/attachments`, or
/// an S3-compatible bucket.
pub fn open_blob_store(settings: &Settings) -> anyhow::Result<Arc<dyn BlobStore>> {
    Ok(match settings.attachments.store {
        BlobStoreKind::Filesystem => {
            Arc::new(FsBlobStore::new(settings.data_dir.join("attachments")))
        }
        BlobStoreKind::S3 => Arc::new(S3BlobStore::from_settings(&settings.attachments)?),
    })
}

/// The attachment routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/attachments", post(declare))
        .route("/v1/attachments/{sha256}", get(download))
        .route("/v1/attachments/{sha256}/thumbnail", get(thumbnail_of))
        .route("/v1/attachments/{sha256}/chunks/{idx}", put(put_chunk))
        .route("/v1/attachments/{sha256}/complete", post(complete))
        // A chunk, and room for a declaration; nothing larger is read.
        .layer(axum::extract::DefaultBodyLimit::max(CHUNK_SIZE as usize))
}

/// What an attachment is, which decides its size limit and content types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AttachmentKind {
    /// A photo of the job (at most 20 MiB).
    Photo,
    /// A captured signature (at most 1 MiB).
    Signature,
    /// A document (at most 50 MiB).
    Document,
}

impl AttachmentKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AttachmentKind::Photo => "photo",
            AttachmentKind::Signature => "signature",
            AttachmentKind::Document => "document",
        }
    }

    /// Largest file of this kind, in bytes.
    pub fn max_bytes(self) -> u64 {
        const MIB: u64 = 1024 * 1024;
        match self {
            AttachmentKind::Photo => 20 * MIB,
            AttachmentKind::Signature => MIB,
            AttachmentKind::Document => 50 * MIB,
        }
    }

    /// The content types accepted for this kind. None of them is one a browser
    /// runs (no HTML, no SVG), as downloads are served with the declared type.
    pub fn content_types(self) -> &'static [&'static str] {
        match self {
            AttachmentKind::Photo => &["image/jpeg", "image/png", "image/heic", "image/webp"],
            AttachmentKind::Signature => &["image/png", "image/webp"],
            AttachmentKind::Document => &["application/pdf", "image/jpeg", "image/png"],
        }
    }
}

/// `POST /v1/attachments` body.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct DeclareRequest {
    /// The whole file's SHA-256, 64 lowercase hex digits.
    pub sha256: String,
    /// The record it is attached to.
    #[schema(value_type = uuid::Uuid)]
    pub record_id: RecordId,
    /// What it is.
    pub kind: AttachmentKind,
    /// Its media type, one of the kind's.
    pub content_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// `POST /v1/attachments` answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeclareResponse {
    /// The attachment.
    pub sha256: String,
    /// Size of every chunk but the last.
    pub chunk_size: u64,
    /// How many chunks the file has.
    pub chunks: u32,
    /// Indexes of the chunks already stored, ascending: send the others.
    pub received: Vec<u32>,
    /// The file is stored and verified: nothing to send.
    pub complete: bool,
}

/// An attachment as stored in the caller's organisation.
#[derive(Debug, Clone)]
struct Row {
    kind: String,
    content_type: String,
    size: u64,
    chunk_size: u64,
    complete: bool,
    /// `ready`, `unavailable`, or `None` while not made yet.
    thumbnail: Option<String>,
}

impl Row {
    fn chunks(&self) -> u32 {
        chunk_count(self.size, self.chunk_size)
    }

    /// The exact length of chunk `idx`.
    fn chunk_len(&self, idx: u32) -> u64 {
        let start = u64::from(idx) * self.chunk_size;
        self.size.saturating_sub(start).min(self.chunk_size)
    }
}

fn chunk_count(size: u64, chunk_size: u64) -> u32 {
    u32::try_from(size.div_ceil(chunk_size.max(1))).unwrap_or(u32::MAX)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn parse_hash(text: &str) -> Result<Sha256Hex, ApiError> {
    Sha256Hex::parse(text).ok_or_else(|| {
        ApiError::BadRequest(
            "an attachment is named by its SHA-256: 64 lowercase hex digits".into(),
        )
    })
}

fn path_error(e: PathRejection) -> ApiError {
    ApiError::BadRequest(format!("bad path: {}", e.body_text()))
}

fn db_error(e: DbError) -> ApiError {
    ApiError::Unavailable(e)
}

fn io_error(what: &str, e: std::io::Error) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("attachment storage: {what}: {e}"))
}

async fn find(db: &Database, key: &BlobKey) -> Result<Option<Row>, DbError> {
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
        |(kind, content_type, size, chunk_size, state, thumbnail)| Row {
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
async fn linked_readable(db: &Database, caller: &Caller, key: &BlobKey) -> Result<bool, DbError> {
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

/// The attachment, if it exists in the caller's organisation and the caller can
/// read a record it is attached to. Otherwise it does not exist for them.
async fn visible(state: &AppState, caller: &Caller, key: &BlobKey) -> Result<Row, ApiError> {
    let row = find(&state.db, key)
        .await
        .map_err(db_error)?
        .ok_or(ApiError::NotFound)?;
    if !linked_readable(&state.db, caller, key)
        .await
        .map_err(db_error)?
    {
        return Err(ApiError::NotFound);
    }
    Ok(row)
}

/// Chunk indexes both recorded in the database and present in the blob store.
async fn received(state: &AppState, key: &BlobKey) -> Result<Vec<u32>, ApiError> {
    let rows: Vec<i64> = on_pool!(&state.db, |pool, uuid| {
        sqlx::query_scalar(
            "SELECT idx FROM attachment_chunks WHERE org_id = $1 AND sha256 = $2 ORDER BY idx",
        )
        .bind(uuid(*key.org.as_uuid()))
        .bind(key.sha256.as_str())
        .fetch_all(pool)
        .await
        .map_err(DbError::from)
        .map_err(db_error)?
    });
    let stored: BTreeSet<u32> = state
        .blobs
        .list_chunks(key)
        .await
        .map_err(|e| io_error("listing chunks", e))?
        .into_iter()
        .collect();
    Ok(rows
        .into_iter()
        .filter_map(|i| u32::try_from(i).ok())
        .filter(|i| stored.contains(i))
        .collect())
}

/// Forgets the stored chunks of an upload (after it completed or failed).
async fn forget_chunks(db: &Database, key: &BlobKey) -> Result<(), DbError> {
    on_pool!(db, |pool, uuid| {
        sqlx::query("DELETE FROM attachment_chunks WHERE org_id = $1 AND sha256 = $2")
            .bind(uuid(*key.org.as_uuid()))
            .bind(key.sha256.as_str())
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// `POST /v1/attachments`: declares an upload, or asks again where it stands.
#[utoipa::path(post, path = "/v1/attachments", tag = "attachments", security(("bearer" = [])),
    request_body = DeclareRequest,
    responses(
        (status = 200, description = "Where the upload stands: the chunks to send", body = DeclareResponse),
        (status = 400, description = "Bad hash, kind or content type", body = crate::api_doc::ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = crate::api_doc::ErrorBody),
        (status = 404, description = "No such record in the caller's scope", body = crate::api_doc::ErrorBody),
        (status = 409, description = "Declared before with another size or type", body = crate::api_doc::ErrorBody),
        (status = 413, description = "`attachment_too_large` for its kind", body = crate::api_doc::ErrorBody),
    ))]
pub(crate) async fn declare(
    State(state): State<Arc<AppState>>,
    user: AuthUser,
    ApiJson(req): ApiJson<DeclareRequest>,
) -> Result<Json<DeclareResponse>, ApiError> {
    let sha256 = parse_hash(&req.sha256)?;
    let kind = req.kind;
    if req.size == 0 {
        return Err(ApiError::BadRequest(
            "an attachment is at least 1 byte".into(),
        ));
    }
    if req.size > kind.max_bytes() {
        return Err(ApiError::AttachmentTooLarge {
            kind: kind.as_str(),
            limit: kind.max_bytes(),
            size: req.size,
        });
    }
    if !kind.content_types().contains(&req.content_type.as_str()) {
        return Err(ApiError::BadRequest(format!(
            "a {} is one of {}; not {:?}",
            kind.as_str(),
            kind.content_types().join(", "),
            req.content_type
        )));
    }
    let caller = crate::sync::caller(&state, &user)?;
    // Writing a record needs reading it; a record the caller cannot read does
    // not exist for them.
    if !store::may_read(&state.db, &caller, req.record_id)
        .await
        .map_err(db_error)?
    {
        return Err(ApiError::NotFound);
    }
    let key = BlobKey {
        org: user.org,
        sha256,
    };
    let now = now_secs();
    let record = *req.record_id.as_uuid();
    on_pool!(&state.db, |pool, uuid| {
        sqlx::query(
            "INSERT INTO attachments (org_id, sha256, record_id, kind, content_type, size, \
             chunk_size, created_by, device_id, created_at, touched_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (org_id, sha256) DO UPDATE SET touched_at = $12 \
             WHERE attachments.state = 'uploading'",
        )
        .bind(uuid(*key.org.as_uuid()))
        .bind(key.sha256.as_str())
        .bind(uuid(record))
        .bind(kind.as_str())
        .bind(&req.content_type)
        .bind(to_i64(req.size))
        .bind(to_i64(CHUNK_SIZE))
        .bind(uuid(*user.id.as_uuid()))
        .bind(uuid(*user.device.as_uuid()))
        .bind(now)
        .bind(now)
        .bind(now)
        .execute(pool)
        .await
        .map_err(DbError::from)
        .map_err(db_error)?;
    });
    let row = find(&state.db, &key)
        .await
        .map_err(db_error)?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("declared attachment vanished")))?;
    if row.size != req.size {
        return Err(ApiError::Conflict(format!(
            "this attachment was declared with a size of {} bytes, not {}",
            row.size, req.size
        )));
    }
    on_pool!(&state.db, |pool, uuid| {
        sqlx::query(
            "INSERT INTO attachment_records (org_id, sha256, record_id, linked_by, linked_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id, sha256, record_id) DO NOTHING",
        )
        .bind(uuid(*key.org.as_uuid()))
        .bind(key.sha256.as_str())
        .bind(uuid(record))
        .bind(uuid(*user.id.as_uuid()))
        .bind(now)
        .execute(pool)
        .await
        .map_err(DbError::from)
        .map_err(db_error)?;
    });
    let received = if row.complete {
        Vec::new()
    } else {
        received(&state, &key).await?
    };
    Ok(Json(DeclareResponse {
        sha256: key.sha256.to_string(),
        chunk_size: row.chunk_size,
        chunks: row.chunks(),
        received,
        complete: row.complete,
    }))
}

/// `PUT /v1/attachments/{sha256}/chunks/{idx}`: stores one checked chunk.
#[utoipa::path(put, path = "/v1/attachments/{sha256}/chunks/{idx}", tag = "attachments", security(("bearer" = [])),
    params(("sha256" = String, Path, description = "The whole file's SHA-256, 64 lowercase hex digits"), ("idx" = u32, Path, description = "Chunk index, from 0"),
        ("x-chunk-sha256" = String, Header, description = "The chunk's SHA-256, 64 lowercase hex digits")),
    request_body(content = crate::api_doc::Binary, content_type = "application/octet-stream",
        description = "The chunk's bytes: `chunk_size` of them, fewer for the last"),
    responses(
        (status = 200, description = "Stored", body = crate::api_doc::ChunkStored),
        (status = 400, description = "`chunk_corrupt` (hash differs) or a bad index or size", body = crate::api_doc::ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = crate::api_doc::ErrorBody),
        (status = 404, description = "No such upload in the caller's scope", body = crate::api_doc::ErrorBody),
        (status = 409, description = "The upload is already complete", body = crate::api_doc::ErrorBody),
    ))]
pub(crate) async fn put_chunk(
    State(state): State<Arc<AppState>>,
    user: AuthUser,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let Path((sha, idx)) = path.map_err(path_error)?;
    let sha256 = parse_hash(&sha)?;
    let idx: u32 = idx
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{idx:?} is not a chunk index")))?;
    let claimed = headers
        .get(CHUNK_HASH_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(Sha256Hex::parse)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "send the chunk's SHA-256 (64 lowercase hex digits) in `{CHUNK_HASH_HEADER}`"
            ))
        })?;
    let caller = crate::sync::caller(&state, &user)?;
    let key = BlobKey {
        org: user.org,
        sha256,
    };
    let row = visible(&state, &caller, &key).await?;
    if row.complete {
        return Err(ApiError::Conflict(
            "this attachment is already complete; nothing more to send".into(),
        ));
    }
    if idx >= row.chunks() {
        return Err(ApiError::BadRequest(format!(
            "this attachment has chunks 0 to {}; there is no chunk {idx}",
            row.chunks().saturating_sub(1)
        )));
    }
    let expected = row.chunk_len(idx);
    let limit = usize::try_from(expected).unwrap_or(usize::MAX);
    let data: Bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::BadRequest(format!(
            "chunk {idx} must be exactly {expected} bytes; the body was longer or cut off"
        ))
    })?;
    if data.len() as u64 != expected {
        return Err(ApiError::BadRequest(format!(
            "chunk {idx} must be exactly {expected} bytes; got {}",
            data.len()
        )));
    }
    if Sha256Hex::of(&data) != claimed {
        return Err(ApiError::ChunkCorrupt(format!(
            "chunk {idx} does not match its `{CHUNK_HASH_HEADER}`: it was damaged in transit \
             and was not stored; send it again"
        )));
    }
    state
        .blobs
        .put_chunk(&key, idx, data)
        .await
        .map_err(|e| io_error("storing a chunk", e))?;
    let now = now_secs();
    on_pool!(&state.db, |pool, uuid| {
        sqlx::query(
            "INSERT INTO attachment_chunks (org_id, sha256, idx, size, stored_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (org_id, sha256, idx) DO UPDATE SET size = $6, stored_at = $7",
        )
        .bind(uuid(*key.org.as_uuid()))
        .bind(key.sha256.as_str())
        .bind(i64::from(idx))
        .bind(to_i64(expected))
        .bind(now)
        .bind(to_i64(expected))
        .bind(now)
        .execute(pool)
        .await
        .map_err(DbError::from)
        .map_err(db_error)?;
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
        .await
        .map_err(DbError::from)
        .map_err(db_error)?;
    });
    Ok(Json(
        json!({ "sha256": key.sha256.as_str(), "idx": idx, "size": expected }),
    ))
}

/// `POST /v1/attachments/{sha256}/complete`: assembles and verifies the file.
#[utoipa::path(post, path = "/v1/attachments/{sha256}/complete", tag = "attachments", security(("bearer" = [])),
    params(("sha256" = String, Path, description = "The whole file's SHA-256, 64 lowercase hex digits")),
    responses(
        (status = 200, description = "Stored and verified", body = crate::api_doc::UploadComplete),
        (status = 401, description = "Missing, invalid or expired token", body = crate::api_doc::ErrorBody),
        (status = 404, description = "No such upload in the caller's scope", body = crate::api_doc::ErrorBody),
        (status = 409, description = "Chunks are missing (listed in the message)", body = crate::api_doc::ErrorBody),
        (status = 422, description = "`hash_mismatch`: the assembled file is not the declared one; the upload starts over", body = crate::api_doc::ErrorBody),
    ))]
pub(crate) async fn complete(
    State(state): State<Arc<AppState>>,
    user: AuthUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(sha) = path.map_err(path_error)?;
    let sha256 = parse_hash(&sha)?;
    let caller = crate::sync::caller(&state, &user)?;
    let key = BlobKey {
        org: user.org,
        sha256,
    };
    let row = visible(&state, &caller, &key).await?;
    let done = json!({ "sha256": key.sha256.as_str(), "size": row.size, "complete": true });
    if row.complete {
        return Ok(Json(done));
    }
    let have: BTreeSet<u32> = received(&state, &key).await?.into_iter().collect();
    let missing: Vec<u32> = (0..row.chunks()).filter(|i| !have.contains(i)).collect();
    if !missing.is_empty() {
        return Err(ApiError::Conflict(format!(
            "chunks {missing:?} are missing; declare again to see what to send"
        )));
    }
    let outcome = state
        .blobs
        .assemble(&key, row.chunks())
        .await
        .map_err(|e| io_error("assembling", e))?;
    forget_chunks(&state.db, &key).await.map_err(db_error)?;
    match outcome {
        Assembled::Verified { size } if size == row.size => {
            let now = now_secs();
            let updated = on_pool!(&state.db, |pool, uuid| {
                sqlx::query(
                    "UPDATE attachments SET state = 'complete', completed_at = $1, \
                     uploaded_bytes = $2 WHERE org_id = $3 AND sha256 = $4",
                )
                .bind(now)
                .bind(to_i64(size))
                .bind(uuid(*key.org.as_uuid()))
                .bind(key.sha256.as_str())
                .execute(pool)
                .await
                .map_err(DbError::from)
                .map_err(db_error)?
                .rows_affected()
            });
            if updated == 0 {
                // Removed as abandoned while it was being assembled: keep nothing.
                state
                    .blobs
                    .delete(&key)
                    .await
                    .map_err(|e| io_error("deleting", e))?;
                return Err(ApiError::Conflict(
                    "this upload was removed as abandoned; declare it again".into(),
                ));
            }
            if row.kind == AttachmentKind::Photo.as_str() {
                // Ready before a manager opens the report; the answer does not wait.
                let (state, key) = (state.clone(), key.clone());
                tokio::spawn(async move {
                    if let Err(e) = ensure_thumbnail(&state, &key).await {
                        tracing::warn!(error = %e, "could not make a thumbnail");
                    }
                });
            }
            Ok(Json(done))
        }
        Assembled::Verified { size } => {
            // Equal hashes of different lengths do not happen; keep nothing if they do.
            state
                .blobs
                .delete(&key)
                .await
                .map_err(|e| io_error("deleting", e))?;
            reset_upload(&state.db, &key).await?;
            Err(ApiError::HashMismatch(format!(
                "the uploaded chunks make {size} bytes, not the declared {}; they were dropped, \
                 upload the attachment again",
                row.size
            )))
        }
        Assembled::Mismatch { actual } => {
            reset_upload(&state.db, &key).await?;
            Err(ApiError::HashMismatch(format!(
                "the uploaded chunks hash to {actual}, not the declared {}; they were dropped, \
                 upload the attachment again",
                key.sha256
            )))
        }
    }
}

async fn reset_upload(db: &Database, key: &BlobKey) -> Result<(), ApiError> {
    on_pool!(db, |pool, uuid| {
        sqlx::query("UPDATE attachments SET uploaded_bytes = 0 WHERE org_id = $1 AND sha256 = $2")
            .bind(uuid(*key.org.as_uuid()))
            .bind(key.sha256.as_str())
            .execute(pool)
            .await
            .map_err(DbError::from)
            .map_err(db_error)?;
    });
    Ok(())
}

/// `GET /v1/attachments/{sha256}`: streams a complete attachment. The
/// managers' pages serve downloads through here for a browser session.
#[utoipa::path(get, path = "/v1/attachments/{sha256}", tag = "attachments", security(("bearer" = [])),
    params(("sha256" = String, Path, description = "The whole file's SHA-256, 64 lowercase hex digits")),
    responses(
        (status = 200, description = "The file, with its declared content type", body = crate::api_doc::Binary, content_type = "application/octet-stream"),
        (status = 401, description = "Missing, invalid or expired token", body = crate::api_doc::ErrorBody),
        (status = 404, description = "Not stored, not complete, or not attached to a record in the caller's scope", body = crate::api_doc::ErrorBody),
    ))]
pub(crate) async fn download(
    State(state): State<Arc<AppState>>,
    user: AuthUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(sha) = path.map_err(path_error)?;
    let sha256 = parse_hash(&sha)?;
    let caller = crate::sync::caller(&state, &user)?;
    let key = BlobKey {
        org: user.org,
        sha256,
    };
    let row = visible(&state, &caller, &key).await?;
    if !row.complete {
        return Err(ApiError::NotFound);
    }
    let Some(blob) = state
        .blobs
        .open(&key)
        .await
        .map_err(|e| io_error("opening", e))?
    else {
        tracing::error!(sha256 = %key.sha256, "a complete attachment is missing from the blob store");
        return Err(ApiError::NotFound);
    };
    let content_type = HeaderValue::from_str(&row.content_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    Ok(stream_blob(blob, content_type, &key.sha256.to_string()))
}

/// A stored file as a streamed answer that may be cached for good.
fn stream_blob(blob: BlobReader, content_type: HeaderValue, etag: &str) -> Response {
    // An error mid-way ends the body: the client sees a short read.
    let mut resp = (StatusCode::OK, Body::from_stream(blob.body)).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(blob.len));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        headers.insert(header::ETAG, etag);
    }
    resp
}

/// Largest photo read into memory to make a thumbnail (the photo limit).
fn thumbnail_source_limit() -> u64 {
    AttachmentKind::Photo.max_bytes()
}

/// Makes the thumbnail of the complete photo `key` unless it was made (or
/// found impossible) already. Returns the thumbnail's state.
async fn ensure_thumbnail(state: &AppState, key: &BlobKey) -> Result<&'static str, ApiError> {
    let row = find(&state.db, key)
        .await
        .map_err(db_error)?
        .ok_or(ApiError::NotFound)?;
    match row.thumbnail.as_deref() {
        Some("ready") => return Ok("ready"),
        Some(_) => return Ok("unavailable"),
        None => {}
    }
    // One photo in memory per turn; the turn ends when this function returns.
    let _turn = thumbnail::turn().await;
    let Some(mut photo) = state
        .blobs
        .open(key)
        .await
        .map_err(|e| io_error("opening", e))?
    else {
        return Err(ApiError::NotFound);
    };
    // The format is known from the first bytes: a HEIC or a damaged file is
    // not read whole for nothing.
    let first = match photo.body.next().await {
        Some(piece) => piece.map_err(|e| io_error("reading a photo", e))?,
        None => Bytes::new(),
    };
    let outcome = if !thumbnail::decodable(&first) {
        tracing::info!(sha256 = %key.sha256, "a photo in a format without thumbnails");
        "unavailable"
    } else {
        let rest = photo.body;
        let whole = BlobReader {
            len: photo.len,
            body: futures_util::stream::once(async move { Ok(first) })
                .chain(rest)
                .boxed(),
        };
        let bytes = whole
            .read_to_vec(thumbnail_source_limit())
            .await
            .map_err(|e| io_error("reading a photo", e))?;
        match thumbnail::make(bytes).await {
            Ok(jpeg) => {
                state
                    .blobs
                    .put_thumbnail(key, Bytes::from(jpeg))
                    .await
                    .map_err(|e| io_error("storing a thumbnail", e))?;
                "ready"
            }
            Err(e) => {
                tracing::info!(sha256 = %key.sha256, reason = %e, "a photo has no thumbnail");
                "unavailable"
            }
        }
    };
    on_pool!(&state.db, |pool, uuid| {
        sqlx::query("UPDATE attachments SET thumbnail = $1 WHERE org_id = $2 AND sha256 = $3")
            .bind(outcome)
            .bind(uuid(*key.org.as_uuid()))
            .bind(key.sha256.as_str())
            .execute(pool)
            .await
            .map_err(DbError::from)
            .map_err(db_error)?;
    });
    Ok(outcome)
}

/// `GET /v1/attachments/{sha256}/thumbnail`: a photo's thumbnail (JPEG).
#[utoipa::path(get, path = "/v1/attachments/{sha256}/thumbnail", tag = "attachments", security(("bearer" = [])),
    params(("sha256" = String, Path, description = "The photo's SHA-256, 64 lowercase hex digits")),
    responses(
        (status = 200, description = "A JPEG at most 320 px on its longest side", body = crate::api_doc::Binary, content_type = "image/jpeg"),
        (status = 401, description = "Missing, invalid or expired token", body = crate::api_doc::ErrorBody),
        (status = 404, description = "Not stored, not in the caller's scope, or `thumbnail_unavailable` (not a photo, or it cannot be decoded)", body = crate::api_doc::ErrorBody),
    ))]
pub(crate) async fn thumbnail_of(
    State(state): State<Arc<AppState>>,
    user: AuthUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(sha) = path.map_err(path_error)?;
    let sha256 = parse_hash(&sha)?;
    let caller = crate::sync::caller(&state, &user)?;
    let key = BlobKey {
        org: user.org,
        sha256,
    };
    let row = visible(&state, &caller, &key).await?;
    if !row.complete {
        return Err(ApiError::NotFound);
    }
    if row.kind != AttachmentKind::Photo.as_str() {
        return Err(ApiError::ThumbnailUnavailable(format!(
            "only photos have thumbnails; this is a {}",
            row.kind
        )));
    }
    let unavailable = || {
        ApiError::ThumbnailUnavailable(
            "this photo could not be decoded (damaged, or a format other than JPEG, PNG or \
             WebP); download the original instead"
                .into(),
        )
    };
    if ensure_thumbnail(&state, &key).await? != "ready" {
        return Err(unavailable());
    }
    let Some(blob) = state
        .blobs
        .open_thumbnail(&key)
        .await
        .map_err(|e| io_error("opening a thumbnail", e))?
    else {
        // The mark says ready but the store lost it: make it again next time.
        tracing::error!(sha256 = %key.sha256, "a ready thumbnail is missing from the blob store");
        on_pool!(&state.db, |pool, uuid| {
            sqlx::query(
                "UPDATE attachments SET thumbnail = NULL WHERE org_id = $1 AND sha256 = $2",
            )
            .bind(uuid(*key.org.as_uuid()))
            .bind(key.sha256.as_str())
            .execute(pool)
            .await
            .map_err(DbError::from)
            .map_err(db_error)?;
        });
        return Err(ApiError::NotFound);
    };
    Ok(stream_blob(
        blob,
        HeaderValue::from_static("image/jpeg"),
        &format!("{}-thumbnail", key.sha256),
    ))
}

/// Removes every upload that has not moved since `older_than` ago, with its
/// chunks and its blobs; returns how many. Safe on several nodes at once:
/// each upload is claimed by a conditional `DELETE` that exactly one wins, and
/// only the winner removes its blobs.
pub async fn remove_abandoned(
    db: &Database,
    blobs: &dyn BlobStore,
    older_than: Duration,
) -> Result<u64, anyhow::Error> {
    const BATCH: i64 = 500;
    let cutoff = now_secs().saturating_sub(i64::try_from(older_than.as_secs()).unwrap_or(i64::MAX));
    let mut removed = 0u64;
    loop {
        let found: Vec<(String, String)> = on_pool!(db, |pool, _uuid| {
            sqlx::query_as(
                "SELECT CAST(org_id AS TEXT), sha256 FROM attachments \
                 WHERE state = 'uploading' AND COALESCE(touched_at, created_at) < $1 \
                 ORDER BY created_at LIMIT $2",
            )
            .bind(cutoff)
            .bind(BATCH)
            .fetch_all(pool)
            .await?
        });
        let batch = found.len();
        for (org, sha) in found {
            let (Ok(org), Some(sha256)) = (crate::db::parse_uuid(&org), Sha256Hex::parse(&sha))
            else {
                tracing::error!(%org, %sha, "an attachment row with a malformed key");
                continue;
            };
            let key = BlobKey {
                org: fieldsync_core::OrgId::from_uuid(org),
                sha256,
            };
            // The claim: the row goes (cascading to its chunks and links) only
            // if it is still an abandoned upload, and only for one node.
            let claimed = on_pool!(db, |pool, uuid| {
                sqlx::query(
                    "DELETE FROM attachments WHERE org_id = $1 AND sha256 = $2 \
                     AND state = 'uploading' AND COALESCE(touched_at, created_at) < $3",
                )
                .bind(uuid(org))
                .bind(key.sha256.as_str())
                .bind(cutoff)
                .execute(pool)
                .await?
                .rows_affected()
            });
            if claimed == 1 {
                blobs.delete(&key).await?;
                removed += 1;
            }
        }
        if batch < BATCH as usize {
            return Ok(removed);
        }
    }
}

/// Every `interval`, removes the uploads abandoned for `older_than` (the
/// node's periodic task; runs until the task is aborted).
pub async fn clean_periodically(
    db: Database,
    blobs: Arc<dyn BlobStore>,
    older_than: Duration,
    interval: Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match remove_abandoned(&db, blobs.as_ref(), older_than).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "removed abandoned attachment uploads"),
            Err(e) => tracing::warn!(error = %e, "could not remove abandoned uploads"),
        }
    }
}
