//! The attachment use cases: photos, signatures and documents a device
//! captured offline and uploads later, in chunks, resumably (issue #7). The
//! bytes live in the [`BlobStore`]; the database keeps the complete files,
//! which records each belongs to, and the uploads in progress; the rules are
//! `domain::attachments`.
//!
//! The flow (described for app developers in `docs/protocol.md`):
//!
//! 1. [`declare`] an upload `{sha256, record_id, kind, content_type, size}`.
//!    The caller must be able to write the record (whoever reads a record may
//!    write it). A file the caller can already read (through another record)
//!    is attached at once: `complete: true`, nothing to send. Otherwise the
//!    declaration starts, or resumes, the device's own upload session and
//!    names the chunk size and the chunks that session already stored; the
//!    answer is the same whether or not the file exists elsewhere in the
//!    organisation, and never tells another upload's size.
//! 2. [`put_chunk`] stores one chunk of the caller's own upload, exactly
//!    [`CHUNK_SIZE`](crate::domain::attachments::CHUNK_SIZE) bytes except the
//!    last, whose SHA-256 the sender gives; a chunk that does not match is
//!    refused and not stored.
//! 3. [`complete`] assembles the session's chunks (streaming) and keeps the
//!    file only if its SHA-256 is the declared one; only then are the records
//!    the device named attached to it. Sending the bytes is the proof that the
//!    device holds the file: knowing its hash is not.
//! 4. [`download`] opens the file for anyone who can read a record it is
//!    attached to; to anyone else it does not exist (not found).
//! 5. [`thumbnail`] opens a photo's thumbnail (a JPEG, longest side 320 px)
//!    under the same rule. It is made once, on the blocking pool, right after
//!    the photo completes (or on the first request, if that node stopped
//!    first); a photo that cannot be decoded is `thumbnail_unavailable`, for
//!    good.
//!
//! An upload that has not moved for `[attachments] abandoned_after_hours` is
//! removed with its chunks by [`remove_abandoned`], which every node runs
//! periodically ([`clean_periodically`]) and `fieldsync attachments cleanup`
//! runs once; each upload is removed by exactly one of them (a conditional
//! `DELETE` that one wins).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fieldsync_core::{DeviceId, OrgId, RecordId};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

use super::Context;
use crate::blob::{Assembled, BlobKey, BlobReader, BlobStore, Sha256Hex, UploadKey, thumbnail};
use crate::db::attachments::{self as rows, Declared, Finished};
use crate::db::{Database, now_secs, records};
use crate::domain::attachments::{
    self as rules, Attachment, AttachmentKind, CHUNK_SIZE, ThumbnailState,
};
use crate::domain::{Caller, Error, Result};

/// How long browsers and proxies may keep a download or thumbnail: its name
/// is its content's hash, so it never changes.
pub const CACHE_CONTROL: &str = "private, max-age=31536000, immutable";

/// A declaration: `POST /v1/attachments` body.
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

/// Where an upload stands: `POST /v1/attachments` answer.
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

/// A chunk stored by [`put_chunk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkReceipt {
    /// The attachment.
    pub sha256: Sha256Hex,
    /// The chunk's index.
    pub idx: u32,
    /// Its size in bytes.
    pub size: u64,
}

/// An attachment stored whole and verified by [`complete`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// The attachment.
    pub sha256: Sha256Hex,
    /// Its size in bytes.
    pub size: u64,
}

/// A stored file to serve: a download or a thumbnail. It may be cached for
/// good ([`CACHE_CONTROL`]): its name is its content's hash.
#[derive(Debug)]
pub struct Download {
    /// Its media type as declared (`image/jpeg` for a thumbnail).
    pub content_type: String,
    /// Its entity tag (without quotes): the hash, `-thumbnail` for a thumbnail.
    pub etag: String,
    /// Its bytes, streamed.
    pub blob: BlobReader,
}

fn io_error(what: &str, e: std::io::Error) -> Error {
    Error::internal(format!("attachment storage: {what}: {e}"))
}

/// The attachment, if it exists in the caller's organisation and the caller can
/// read a record it is attached to. Otherwise it does not exist for them.
async fn visible(db: &Database, caller: &Caller, key: &BlobKey) -> Result<Attachment> {
    let row = rows::find(db, key).await?.ok_or(Error::NotFound)?;
    if !rows::linked_readable(db, caller, key).await? {
        return Err(Error::NotFound);
    }
    Ok(row)
}

/// The upload's chunk indexes both recorded in the database and present in
/// the blob store.
async fn received(ctx: &Context, upload: &UploadKey) -> Result<Vec<u32>> {
    let recorded = rows::recorded_chunks(&ctx.db, upload).await?;
    let stored = ctx
        .blobs
        .list_chunks(upload)
        .await
        .map_err(|e| io_error("listing chunks", e))?;
    Ok(rules::received(recorded, &stored))
}

/// Declares an upload, or asks again where it stands.
pub async fn declare(
    ctx: &Context,
    caller: &Caller,
    req: &DeclareRequest,
) -> Result<DeclareResponse> {
    let sha256 = rules::parse_hash(&req.sha256)?;
    rules::check_declaration(req.kind, req.size, &req.content_type)?;
    // Writing a record needs reading it; a record the caller cannot read does
    // not exist for them.
    if !records::may_read(&ctx.db, caller, req.record_id).await? {
        return Err(Error::NotFound);
    }
    let device = rules::declaring_device(caller)?;
    let key = BlobKey {
        org: caller.org,
        sha256,
    };
    let now = now_secs();
    // A file the caller already reads through another record: nothing to
    // prove, nothing to send.
    if let Some(file) = rows::find(&ctx.db, &key).await?
        && file.complete
        && rows::linked_readable(&ctx.db, caller, &key).await?
    {
        file.check_declared_size(req.size)?;
        rows::link_record(&ctx.db, &key, req.record_id, caller.user(), now).await?;
        return Ok(DeclareResponse {
            sha256: key.sha256.to_string(),
            chunk_size: file.chunk_size,
            chunks: file.chunks(),
            received: Vec::new(),
            complete: true,
        });
    }
    // Otherwise the device's own upload: whatever exists elsewhere in the
    // organisation, it sends the bytes (the proof it holds them), and its
    // record is attached when they assemble into the file.
    let upload = UploadKey { file: key, device };
    let declared = Declared {
        kind: req.kind.as_str(),
        content_type: &req.content_type,
        size: req.size,
        chunk_size: CHUNK_SIZE,
        created_by: caller.user(),
        now,
    };
    rows::declare_upload(&ctx.db, &upload, &declared).await?;
    let vanished = || Error::internal("a declared upload vanished");
    let mut row = rows::find_upload(&ctx.db, &upload)
        .await?
        .ok_or_else(vanished)?;
    if row.size != req.size || row.content_type != req.content_type || row.kind != declared.kind {
        // The device declares its file anew (an app that got it wrong the
        // first time): its own upload starts over.
        rows::restart_upload(&ctx.db, &upload, &declared).await?;
        ctx.blobs
            .delete_upload(&upload)
            .await
            .map_err(|e| io_error("deleting chunks", e))?;
        row = rows::find_upload(&ctx.db, &upload)
            .await?
            .ok_or_else(vanished)?;
    }
    rows::add_upload_record(&ctx.db, &upload, req.record_id, caller.user()).await?;
    Ok(DeclareResponse {
        sha256: upload.file.sha256.to_string(),
        chunk_size: row.chunk_size,
        chunks: row.chunks(),
        received: received(ctx, &upload).await?,
        complete: false,
    })
}

/// The caller's own upload of `sha256`; anyone else's does not exist for them.
async fn own_upload(
    ctx: &Context,
    caller: &Caller,
    sha256: Sha256Hex,
) -> Result<(UploadKey, Option<Attachment>)> {
    let upload = UploadKey {
        file: BlobKey {
            org: caller.org,
            sha256,
        },
        device: rules::declaring_device(caller).map_err(|_| Error::NotFound)?,
    };
    let row = rows::find_upload(&ctx.db, &upload).await?;
    Ok((upload, row))
}

/// Reads a chunk's body, refusing one longer than `limit` bytes or one that
/// breaks off (`None` either way).
async fn read_limited<S, E>(body: S, limit: u64) -> Option<Bytes>
where
    S: Stream<Item = std::result::Result<Bytes, E>>,
{
    let mut body = std::pin::pin!(body);
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut out = BytesMut::with_capacity(limit.min(CHUNK_SIZE as usize));
    while let Some(piece) = body.next().await {
        let piece = piece.ok()?;
        if out.len().saturating_add(piece.len()) > limit {
            return None;
        }
        out.extend_from_slice(&piece);
    }
    Some(out.freeze())
}

/// Stores chunk `idx` of the upload `sha256`, whose body is `body` and whose
/// SHA-256 its sender gave as `claimed` (the chunk hash header). The chunk is
/// checked (length, hash) before anything is stored.
pub async fn put_chunk<S, E>(
    ctx: &Context,
    caller: &Caller,
    sha256: &str,
    idx: &str,
    claimed: Option<&str>,
    body: S,
) -> Result<ChunkReceipt>
where
    S: Stream<Item = std::result::Result<Bytes, E>>,
{
    let sha256 = rules::parse_hash(sha256)?;
    let idx = rules::parse_chunk_index(idx)?;
    let claimed = rules::parse_chunk_hash(claimed)?;
    let (upload, row) = own_upload(ctx, caller, sha256).await?;
    let row = row.ok_or(Error::NotFound)?;
    let expected = row.check_chunk(idx)?;
    let data = read_limited(body, expected)
        .await
        .ok_or_else(|| rules::chunk_body_unreadable(idx, expected))?;
    rules::check_chunk_body(idx, expected, &data, &claimed)?;
    ctx.blobs
        .put_chunk(&upload, idx, data)
        .await
        .map_err(|e| io_error("storing a chunk", e))?;
    rows::chunk_stored(&ctx.db, &upload, idx, expected, now_secs()).await?;
    Ok(ChunkReceipt {
        sha256: upload.file.sha256,
        idx,
        size: expected,
    })
}

/// Assembles the caller's upload `sha256` from its chunks and keeps the file
/// only if it is the declared one; the records the device named are then
/// attached to it, and a new photo's thumbnail is made in the background.
pub async fn complete(ctx: &Context, caller: &Caller, sha256: &str) -> Result<Completed> {
    let sha256 = rules::parse_hash(sha256)?;
    let (upload, row) = own_upload(ctx, caller, sha256).await?;
    let key = upload.file.clone();
    let Some(row) = row else {
        // Completed already (the answer was lost): the file is there for a
        // caller who reads a record that has it.
        let file = visible(&ctx.db, caller, &key).await?;
        return Ok(Completed {
            sha256: key.sha256,
            size: file.size,
        });
    };
    let have = received(ctx, &upload).await?;
    rules::check_all_received(row.chunks(), &have)?;
    let outcome = ctx
        .blobs
        .assemble(&upload, row.chunks())
        .await
        .map_err(|e| io_error("assembling", e))?;
    rows::forget_chunks(&ctx.db, &upload).await?;
    match outcome {
        Assembled::Verified { size } if size == row.size => {
            match rows::finish_upload(&ctx.db, &upload, &row, now_secs()).await? {
                Finished::Gone => {
                    // Removed as abandoned while it was being assembled: keep
                    // nothing that no other upload made a file of.
                    drop_unlisted_file(ctx, &key).await?;
                    return Err(rules::removed_as_abandoned());
                }
                Finished::Linked { new } => {
                    if new && row.is_photo() {
                        // Ready before a manager opens the report; the answer
                        // does not wait.
                        let (db, blobs, key) = (ctx.db.clone(), ctx.blobs.clone(), key.clone());
                        tokio::spawn(async move {
                            if let Err(e) = ensure_thumbnail(&db, blobs.as_ref(), &key).await {
                                tracing::warn!(error = %e.chain(), "could not make a thumbnail");
                            }
                        });
                    }
                }
            }
            Ok(Completed {
                sha256: key.sha256,
                size: row.size,
            })
        }
        Assembled::Verified { size } => {
            // Equal hashes of different lengths do not happen; keep nothing if they do.
            drop_unlisted_file(ctx, &key).await?;
            Err(rules::assembled_size_mismatch(size, row.size))
        }
        Assembled::Mismatch { actual } => Err(rules::assembled_hash_mismatch(&actual, &key.sha256)),
    }
}

/// Deletes the stored file `key` unless the database lists it (another
/// upload completed it).
async fn drop_unlisted_file(ctx: &Context, key: &BlobKey) -> Result<()> {
    if rows::find(&ctx.db, key).await?.is_none() {
        ctx.blobs
            .delete(key)
            .await
            .map_err(|e| io_error("deleting", e))?;
    }
    Ok(())
}

/// The complete attachment `sha256`, for a caller who can read a record it is
/// attached to (the JSON API and the managers' pages alike).
pub async fn download(ctx: &Context, caller: &Caller, sha256: &str) -> Result<Download> {
    let sha256 = rules::parse_hash(sha256)?;
    let key = BlobKey {
        org: caller.org,
        sha256,
    };
    let row = visible(&ctx.db, caller, &key).await?;
    row.check_downloadable()?;
    let Some(blob) = ctx
        .blobs
        .open(&key)
        .await
        .map_err(|e| io_error("opening", e))?
    else {
        tracing::error!(sha256 = %key.sha256, "a complete attachment is missing from the blob store");
        return Err(Error::NotFound);
    };
    Ok(Download {
        content_type: row.content_type,
        etag: key.sha256.to_string(),
        blob,
    })
}

/// Makes the thumbnail of the complete photo `key` unless it was made (or
/// found impossible) already. Returns the thumbnail's state.
async fn ensure_thumbnail(
    db: &Database,
    blobs: &dyn BlobStore,
    key: &BlobKey,
) -> Result<ThumbnailState> {
    let row = rows::find(db, key).await?.ok_or(Error::NotFound)?;
    if let Some(state) = row.thumbnail_state() {
        return Ok(state);
    }
    // One photo in memory per turn; the turn ends when this function returns.
    let _turn = thumbnail::turn().await;
    let Some(mut photo) = blobs.open(key).await.map_err(|e| io_error("opening", e))? else {
        return Err(Error::NotFound);
    };
    // The format is known from the first bytes: a HEIC or a damaged file is
    // not read whole for nothing.
    let first = match photo.body.next().await {
        Some(piece) => piece.map_err(|e| io_error("reading a photo", e))?,
        None => Bytes::new(),
    };
    let outcome = if !thumbnail::decodable(&first) {
        tracing::info!(sha256 = %key.sha256, "a photo in a format without thumbnails");
        ThumbnailState::Unavailable
    } else {
        let rest = photo.body;
        let whole = BlobReader {
            len: photo.len,
            body: futures_util::stream::once(async move { Ok(first) })
                .chain(rest)
                .boxed(),
        };
        let bytes = whole
            .read_to_vec(rules::thumbnail_source_limit())
            .await
            .map_err(|e| io_error("reading a photo", e))?;
        match thumbnail::make(bytes).await {
            Ok(jpeg) => {
                blobs
                    .put_thumbnail(key, Bytes::from(jpeg))
                    .await
                    .map_err(|e| io_error("storing a thumbnail", e))?;
                ThumbnailState::Ready
            }
            Err(e) => {
                tracing::info!(sha256 = %key.sha256, reason = %e, "a photo has no thumbnail");
                ThumbnailState::Unavailable
            }
        }
    };
    rows::set_thumbnail(db, key, outcome.as_str()).await?;
    Ok(outcome)
}

/// The thumbnail (JPEG) of the complete photo `sha256`, under the download's
/// rule; made now if it was not made yet.
pub async fn thumbnail(ctx: &Context, caller: &Caller, sha256: &str) -> Result<Download> {
    let sha256 = rules::parse_hash(sha256)?;
    let key = BlobKey {
        org: caller.org,
        sha256,
    };
    let row = visible(&ctx.db, caller, &key).await?;
    row.check_thumbnail()?;
    ensure_thumbnail(&ctx.db, ctx.blobs.as_ref(), &key)
        .await?
        .check_ready()?;
    let Some(blob) = ctx
        .blobs
        .open_thumbnail(&key)
        .await
        .map_err(|e| io_error("opening a thumbnail", e))?
    else {
        // The mark says ready but the store lost it: make it again next time.
        tracing::error!(sha256 = %key.sha256, "a ready thumbnail is missing from the blob store");
        rows::forget_thumbnail(&ctx.db, &key).await?;
        return Err(Error::NotFound);
    };
    Ok(Download {
        content_type: "image/jpeg".to_owned(),
        etag: format!("{}-thumbnail", key.sha256),
        blob,
    })
}

/// Removes every upload that has not moved since `older_than` ago, with its
/// chunks and its blobs; returns how many. Safe on several nodes at once:
/// each upload is claimed by a conditional `DELETE` that exactly one wins, and
/// only the winner removes its blobs.
pub async fn remove_abandoned(
    db: &Database,
    blobs: &dyn BlobStore,
    older_than: Duration,
) -> Result<u64> {
    const BATCH: i64 = 500;
    let cutoff = rules::abandoned_before(now_secs(), older_than);
    let mut removed = 0u64;
    loop {
        let found = rows::abandoned(db, cutoff, BATCH).await?;
        let batch = found.len();
        for (org, sha, device) in found {
            let (Ok(org_id), Some(sha256), Ok(device_id)) = (
                crate::db::parse_uuid(&org),
                Sha256Hex::parse(&sha),
                crate::db::parse_uuid(&device),
            ) else {
                tracing::error!(%org, %sha, %device, "an upload row with a malformed key");
                continue;
            };
            let upload = UploadKey {
                file: BlobKey {
                    org: OrgId::from_uuid(org_id),
                    sha256,
                },
                device: DeviceId::from_uuid(device_id),
            };
            if rows::claim_abandoned(db, &upload, cutoff).await? == 1 {
                blobs
                    .delete_upload(&upload)
                    .await
                    .map_err(|e| io_error("deleting", e))?;
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
            Err(e) => tracing::warn!(error = %e.chain(), "could not remove abandoned uploads"),
        }
    }
}
