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
//!
//! Hashes from the path are checked to be 64 lowercase hex digits before
//! anything else, so no request names a path of its choosing.
//!
//! While an upload is in progress, any writer of one of its records in the
//! organisation may add chunks; a wrong chunk costs the upload a restart (the
//! whole-file hash catches it), never a wrong file.

mod blob;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use fieldsync_core::RecordId;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

pub use blob::{Assembled, BlobKey, BlobReader, BlobStore, FsBlobStore, Sha256Hex};

use crate::AppState;
use crate::auth::AuthUser;
use crate::db::{Database, DbError, now_secs};
use crate::error::{ApiError, ApiJson};
use crate::on_pool;
use crate::store::{self, Caller};

/// Every chunk but the last is exactly this long (1 MiB).
pub const CHUNK_SIZE: u64 = 1024 * 1024;
/// The header that carries a chunk's SHA-256 (64 lowercase hex digits).
pub const CHUNK_HASH_HEADER: &str = "x-chunk-sha256";
/// Buffer of a streamed download.
const READ_BUFFER: usize = 64 * 1024;

/// The attachment routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/attachments", post(declare))
        .route("/v1/attachments/{sha256}", get(download))
        .route("/v1/attachments/{sha256}/chunks/{idx}", put(put_chunk))
        .route("/v1/attachments/{sha256}/complete", post(complete))
        // A chunk, and room for a declaration; nothing larger is read.
        .layer(axum::extract::DefaultBodyLimit::max(CHUNK_SIZE as usize))
}

/// What an attachment is, which decides its size limit and content types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
pub struct DeclareRequest {
    /// The whole file's SHA-256, 64 lowercase hex digits.
    pub sha256: String,
    /// The record it is attached to.
    pub record_id: RecordId,
    /// What it is.
    pub kind: AttachmentKind,
    /// Its media type, one of the kind's.
    pub content_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// `POST /v1/attachments` answer.
#[derive(Debug, Clone, Serialize)]
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
    content_type: String,
    size: u64,
    chunk_size: u64,
    complete: bool,
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
    let row: Option<(String, i64, i64, String)> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT content_type, size, chunk_size, state FROM attachments \
             WHERE org_id = $1 AND sha256 = $2",
        )
        .bind(uuid(*key.org.as_uuid()))
        .bind(key.sha256.as_str())
        .fetch_optional(pool)
        .await?
    });
    Ok(row.map(|(content_type, size, chunk_size, state)| Row {
        content_type,
        size: u64::try_from(size).unwrap_or(0),
        chunk_size: u64::try_from(chunk_size).unwrap_or(CHUNK_SIZE),
        complete: state == "complete",
    }))
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
async fn declare(
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
             chunk_size, created_by, device_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (org_id, sha256) DO NOTHING",
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
async fn put_chunk(
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
             FROM attachment_chunks c WHERE c.org_id = $1 AND c.sha256 = $2) \
             WHERE org_id = $3 AND sha256 = $4",
        )
        .bind(uuid(*key.org.as_uuid()))
        .bind(key.sha256.as_str())
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
async fn complete(
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
            on_pool!(&state.db, |pool, uuid| {
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
                .map_err(db_error)?;
            });
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
    let len = blob.len;
    let stream = futures_util::stream::unfold(Some(blob.reader), |reader| async move {
        let mut reader = reader?;
        let mut buf = vec![0u8; READ_BUFFER];
        match reader.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(reader)))
            }
            // Ends the body after the error: the client sees a short read.
            Err(e) => Some((Err(e), None)),
        }
    });
    let content_type = HeaderValue::from_str(&row.content_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    let mut resp = (StatusCode::OK, Body::from_stream(stream)).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", key.sha256)) {
        headers.insert(header::ETAG, etag);
    }
    Ok(resp)
}
