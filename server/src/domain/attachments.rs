//! The rules of attachments (photos, signatures and documents a device
//! captured offline and uploads later, in chunks, resumably; issue #7): what
//! names an attachment, what each kind may be, how a file is cut into chunks,
//! and which check refuses what, with the message the sender reads.
//!
//! Invariants kept here:
//! - An attachment is named by its SHA-256 as 64 lowercase hex digits
//!   ([`Sha256Hex`]), checked before anything else, so no request names a
//!   path of its choosing; organisations never share files ([`BlobKey`]).
//! - Every chunk but the last is exactly the stored chunk size
//!   ([`CHUNK_SIZE`] when declared); the last is the rest.
//! - No declared content type is one a browser runs (no HTML, no SVG), as
//!   downloads are served with the declared type.
//! - An upload belongs to the device that declared it ([`UploadKey`]): its
//!   chunks are its own, and the records it names are attached to the file
//!   only when those chunks assemble into it. Knowing a hash proves nothing:
//!   a record is linked to a file only by a device that sent its bytes, or by
//!   a caller who can already read a record that has it; a declaration looks
//!   the same whether or not the file exists elsewhere in the organisation.
//!
//! The flow that applies these rules is `service::attachments`; the bytes live
//! in a `blob::BlobStore`, keyed by [`BlobKey`].

use std::time::Duration;

use fieldsync_core::{DeviceId, OrgId, RecordKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Caller, Error, Result};

/// Every chunk but the last is exactly this long (1 MiB).
pub const CHUNK_SIZE: u64 = 1024 * 1024;
/// The header that carries a chunk's SHA-256 (64 lowercase hex digits).
pub const CHUNK_HASH_HEADER: &str = "x-chunk-sha256";

/// A SHA-256 as 64 lowercase hex digits: the only form an attachment's name
/// takes, checked before it comes near a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sha256Hex(String);

impl Sha256Hex {
    /// `text` if it is exactly 64 lowercase hex digits.
    pub fn parse(text: &str) -> Option<Sha256Hex> {
        let ok = text.len() == 64
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| Sha256Hex(text.to_owned()))
    }

    /// The SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Sha256Hex {
        Sha256Hex(hex::encode(&Sha256::digest(bytes)[..]))
    }

    /// The hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One attachment: organisations never share files, even with equal hashes.
/// The key of its row and of its bytes in the blob store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobKey {
    /// The organisation.
    pub org: OrgId,
    /// The whole file's SHA-256.
    pub sha256: Sha256Hex,
}

/// One upload session: a file being uploaded by one device. Its chunks, in
/// the database and in the blob store, are its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadKey {
    /// The file it uploads.
    pub file: BlobKey,
    /// The device uploading it.
    pub device: DeviceId,
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

/// Largest photo read into memory to make a thumbnail (the photo limit).
pub fn thumbnail_source_limit() -> u64 {
    AttachmentKind::Photo.max_bytes()
}

/// An attachment as stored in its organisation (`complete`), or an upload
/// session's declaration of it (not `complete`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Its kind as stored (`photo`, `signature`, `document`).
    pub kind: String,
    /// Its declared media type.
    pub content_type: String,
    /// Its declared size in bytes.
    pub size: u64,
    /// The size of every chunk but the last.
    pub chunk_size: u64,
    /// Stored whole and verified.
    pub complete: bool,
    /// `ready`, `unavailable`, or `None` while not made yet.
    pub thumbnail: Option<String>,
}

impl Attachment {
    /// How many chunks the file has.
    pub fn chunks(&self) -> u32 {
        chunk_count(self.size, self.chunk_size)
    }

    /// The exact length of chunk `idx`.
    pub fn chunk_len(&self, idx: u32) -> u64 {
        let start = u64::from(idx) * self.chunk_size;
        self.size.saturating_sub(start).min(self.chunk_size)
    }

    /// Whether this is a photo (only photos have thumbnails).
    pub fn is_photo(&self) -> bool {
        self.kind == AttachmentKind::Photo.as_str()
    }

    /// A declaration of `size` bytes agrees with this one.
    pub fn check_declared_size(&self, size: u64) -> Result<()> {
        if self.size != size {
            return Err(Error::Conflict(format!(
                "this attachment was declared with a size of {} bytes, not {size}",
                self.size
            )));
        }
        Ok(())
    }

    /// Chunk `idx` may still be sent: the upload is not complete and the file
    /// has such a chunk. Returns the chunk's exact length.
    pub fn check_chunk(&self, idx: u32) -> Result<u64> {
        if self.complete {
            return Err(Error::Conflict(
                "this attachment is already complete; nothing more to send".into(),
            ));
        }
        if idx >= self.chunks() {
            return Err(Error::BadRequest(format!(
                "this attachment has chunks 0 to {}; there is no chunk {idx}",
                self.chunks().saturating_sub(1)
            )));
        }
        Ok(self.chunk_len(idx))
    }

    /// The file may be downloaded: it is complete (an upload in progress does
    /// not exist for readers).
    pub fn check_downloadable(&self) -> Result<()> {
        if !self.complete {
            return Err(Error::NotFound);
        }
        Ok(())
    }

    /// The file may have a thumbnail: it is complete and a photo.
    pub fn check_thumbnail(&self) -> Result<()> {
        self.check_downloadable()?;
        if !self.is_photo() {
            return Err(Error::ThumbnailUnavailable(format!(
                "only photos have thumbnails; this is a {}",
                self.kind
            )));
        }
        Ok(())
    }

    /// Where the photo's thumbnail stands: `None` while it is not made yet.
    pub fn thumbnail_state(&self) -> Option<ThumbnailState> {
        self.thumbnail.as_deref().map(ThumbnailState::from_stored)
    }
}

/// What became of a photo's thumbnail: made once, or found impossible for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThumbnailState {
    /// Made and kept next to the photo.
    Ready,
    /// The photo cannot be decoded (damaged, or a format without thumbnails).
    Unavailable,
}

impl ThumbnailState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ThumbnailState::Ready => "ready",
            ThumbnailState::Unavailable => "unavailable",
        }
    }

    /// The state a stored mark means: anything but `ready` is unavailable.
    pub fn from_stored(mark: &str) -> ThumbnailState {
        if mark == "ready" {
            ThumbnailState::Ready
        } else {
            ThumbnailState::Unavailable
        }
    }

    /// The answer to a request for a thumbnail that is not ready.
    pub fn check_ready(self) -> Result<()> {
        match self {
            ThumbnailState::Ready => Ok(()),
            ThumbnailState::Unavailable => Err(Error::ThumbnailUnavailable(
                "this photo could not be decoded (damaged, or a format other than JPEG, PNG or \
                 WebP); download the original instead"
                    .into(),
            )),
        }
    }
}

/// How many chunks of `chunk_size` bytes make `size` bytes.
pub fn chunk_count(size: u64, chunk_size: u64) -> u32 {
    u32::try_from(size.div_ceil(chunk_size.max(1))).unwrap_or(u32::MAX)
}

/// The attachment named by `text`, which must be 64 lowercase hex digits.
pub fn parse_hash(text: &str) -> Result<Sha256Hex> {
    Sha256Hex::parse(text).ok_or_else(|| {
        Error::BadRequest("an attachment is named by its SHA-256: 64 lowercase hex digits".into())
    })
}

/// A declaration's size and content type fit its kind.
pub fn check_declaration(kind: AttachmentKind, size: u64, content_type: &str) -> Result<()> {
    if size == 0 {
        return Err(Error::BadRequest("an attachment is at least 1 byte".into()));
    }
    if size > kind.max_bytes() {
        return Err(Error::AttachmentTooLarge {
            kind: kind.as_str(),
            limit: kind.max_bytes(),
            size,
        });
    }
    if !kind.content_types().contains(&content_type) {
        return Err(Error::BadRequest(format!(
            "a {} is one of {}; not {content_type:?}",
            kind.as_str(),
            kind.content_types().join(", "),
        )));
    }
    Ok(())
}

/// The device an upload is declared from: every upload row names one (the
/// signed-in device, or a browser session's), so the server's own writes
/// declare nothing.
pub fn declaring_device(caller: &Caller) -> Result<DeviceId> {
    caller.device().ok_or_else(|| {
        Error::Forbidden("attachments are declared from a signed-in device or session".into())
    })
}

/// The chunk index from a path segment.
pub fn parse_chunk_index(text: &str) -> Result<u32> {
    text.parse()
        .map_err(|_| Error::BadRequest(format!("{text:?} is not a chunk index")))
}

/// The chunk's SHA-256 its sender gave in [`CHUNK_HASH_HEADER`].
pub fn parse_chunk_hash(header: Option<&str>) -> Result<Sha256Hex> {
    header.and_then(Sha256Hex::parse).ok_or_else(|| {
        Error::BadRequest(format!(
            "send the chunk's SHA-256 (64 lowercase hex digits) in `{CHUNK_HASH_HEADER}`"
        ))
    })
}

/// The refusal of a chunk body that was longer than `expected` or broke off.
pub fn chunk_body_unreadable(idx: u32, expected: u64) -> Error {
    Error::BadRequest(format!(
        "chunk {idx} must be exactly {expected} bytes; the body was longer or cut off"
    ))
}

/// Chunk `idx` has exactly its `expected` length and the hash its sender gave;
/// one that does not is refused and not stored.
pub fn check_chunk_body(idx: u32, expected: u64, data: &[u8], claimed: &Sha256Hex) -> Result<()> {
    if data.len() as u64 != expected {
        return Err(Error::BadRequest(format!(
            "chunk {idx} must be exactly {expected} bytes; got {}",
            data.len()
        )));
    }
    if Sha256Hex::of(data) != *claimed {
        return Err(Error::ChunkCorrupt(format!(
            "chunk {idx} does not match its `{CHUNK_HASH_HEADER}`: it was damaged in transit \
             and was not stored; send it again"
        )));
    }
    Ok(())
}

/// The chunks an upload holds: recorded in the database (in its order) and
/// present in the blob store, since either can lose one the other still has.
pub fn received(recorded: impl IntoIterator<Item = u32>, stored: &[u32]) -> Vec<u32> {
    recorded
        .into_iter()
        .filter(|i| stored.contains(i))
        .collect()
}

/// Every one of the file's `chunks` chunks is among `have`, so it can be
/// assembled.
pub fn check_all_received(chunks: u32, have: &[u32]) -> Result<()> {
    let missing: Vec<u32> = (0..chunks).filter(|i| !have.contains(i)).collect();
    if !missing.is_empty() {
        return Err(Error::Conflict(format!(
            "chunks {missing:?} are missing; declare again to see what to send"
        )));
    }
    Ok(())
}

/// The refusal of assembled chunks that make `size` bytes instead of the
/// declared size (they are dropped).
pub fn assembled_size_mismatch(size: u64, declared: u64) -> Error {
    Error::HashMismatch(format!(
        "the uploaded chunks make {size} bytes, not the declared {declared}; they were dropped, \
         upload the attachment again"
    ))
}

/// The refusal of assembled chunks that hash to `actual` instead of the
/// declared hash (they are dropped).
pub fn assembled_hash_mismatch(actual: &str, declared: &Sha256Hex) -> Error {
    Error::HashMismatch(format!(
        "the uploaded chunks hash to {actual}, not the declared {declared}; they were dropped, \
         upload the attachment again"
    ))
}

/// The refusal of an upload removed as abandoned while it was being assembled.
pub fn removed_as_abandoned() -> Error {
    Error::Conflict("this upload was removed as abandoned; declare it again".into())
}

/// The time (seconds since the epoch) before which an upload that has not
/// moved is abandoned.
pub fn abandoned_before(now_secs: i64, older_than: Duration) -> i64 {
    now_secs.saturating_sub(i64::try_from(older_than.as_secs()).unwrap_or(i64::MAX))
}

/// The records that carry a customer's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signed {
    /// An order, signed by the customer on the rep's device.
    Order,
    /// A technician's assignment, whose signature covers the job, the
    /// assignment and its checklist response.
    Assignment,
}

/// What a signature on a record of `kind` covers; other kinds carry none.
pub fn signed(kind: RecordKind) -> Result<Signed> {
    match kind {
        RecordKind::Order => Ok(Signed::Order),
        RecordKind::Assignment => Ok(Signed::Assignment),
        other => Err(Error::BadRequest(format!(
            "a {other} carries no signature; ask about an order or an assignment"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use fieldsync_core::UserId;
    use fieldsync_core::model::{Actor, Role};

    use super::*;

    fn stored(size: u64, complete: bool) -> Attachment {
        Attachment {
            kind: "photo".into(),
            content_type: "image/jpeg".into(),
            size,
            chunk_size: CHUNK_SIZE,
            complete,
            thumbnail: None,
        }
    }

    #[test]
    fn only_64_lowercase_hex_digits_are_hashes() {
        let good = "a".repeat(64);
        assert!(Sha256Hex::parse(&good).is_some());
        for bad in [
            "../etc".to_owned(),
            "A".repeat(64),
            "a".repeat(63),
            "a".repeat(65),
            format!("{}/", "a".repeat(63)),
            format!("{}g", "a".repeat(63)),
        ] {
            assert!(Sha256Hex::parse(&bad).is_none(), "{bad}");
            assert!(
                matches!(parse_hash(&bad), Err(Error::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_declaration_is_refused_when_empty_too_large_or_of_a_foreign_type() {
        let cases: [(AttachmentKind, u64, &str, Option<&str>); 6] = [
            (AttachmentKind::Photo, 1, "image/jpeg", None),
            (AttachmentKind::Photo, 0, "image/jpeg", Some("bad_request")),
            (
                AttachmentKind::Signature,
                CHUNK_SIZE + 1,
                "image/png",
                Some("attachment_too_large"),
            ),
            (
                AttachmentKind::Document,
                50 * CHUNK_SIZE,
                "application/pdf",
                None,
            ),
            (
                AttachmentKind::Photo,
                10,
                "image/svg+xml",
                Some("bad_request"),
            ),
            (
                AttachmentKind::Signature,
                10,
                "text/html",
                Some("bad_request"),
            ),
        ];
        for (kind, size, content_type, refused) in cases {
            let got = check_declaration(kind, size, content_type).err();
            assert_eq!(
                got.as_ref().map(Error::code),
                refused,
                "{kind:?} {size} {content_type}"
            );
        }
    }

    #[test]
    fn no_kind_accepts_a_type_a_browser_runs() {
        for kind in [
            AttachmentKind::Photo,
            AttachmentKind::Signature,
            AttachmentKind::Document,
        ] {
            for t in kind.content_types() {
                assert!(!t.contains("html") && !t.contains("svg"), "{t}");
            }
        }
    }

    #[test]
    fn a_file_is_cut_into_full_chunks_and_a_shorter_last_one() {
        let a = stored(2 * CHUNK_SIZE + 5, false);
        assert_eq!(a.chunks(), 3);
        assert_eq!(a.chunk_len(0), CHUNK_SIZE);
        assert_eq!(a.chunk_len(2), 5);
        assert_eq!(chunk_count(CHUNK_SIZE, CHUNK_SIZE), 1);
        assert_eq!(
            chunk_count(1, 0),
            1,
            "a zero chunk size does not divide by zero"
        );
    }

    #[test]
    fn a_chunk_is_refused_after_completion_or_past_the_last_index() {
        let a = stored(CHUNK_SIZE + 5, false);
        assert_eq!(a.check_chunk(1).ok(), Some(5));
        assert_eq!(a.check_chunk(2).map_err(|e| e.code()), Err("bad_request"));
        let done = stored(CHUNK_SIZE + 5, true);
        assert_eq!(done.check_chunk(0).map_err(|e| e.code()), Err("conflict"));
    }

    #[test]
    fn a_chunk_body_must_have_its_length_and_its_hash() {
        let data = b"hello";
        let right = Sha256Hex::of(data);
        assert!(check_chunk_body(0, 5, data, &right).is_ok());
        assert_eq!(
            check_chunk_body(0, 6, data, &right).map_err(|e| e.code()),
            Err("bad_request")
        );
        let wrong = Sha256Hex::of(b"other");
        assert_eq!(
            check_chunk_body(0, 5, data, &wrong).map_err(|e| e.code()),
            Err("chunk_corrupt")
        );
        assert_eq!(
            parse_chunk_hash(None).map_err(|e| e.code()),
            Err("bad_request")
        );
        assert_eq!(
            parse_chunk_index("-1").map_err(|e| e.code()),
            Err("bad_request")
        );
        assert_eq!(parse_chunk_index("7").ok(), Some(7));
    }

    #[test]
    fn only_chunks_in_both_the_database_and_the_store_count_as_received() {
        assert_eq!(received([0, 1, 2, 3], &[3, 1, 4]), vec![1, 3]);
        assert!(check_all_received(3, &[0, 1, 2]).is_ok());
        let e = check_all_received(3, &[1]).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("chunks [0, 2] are missing; declare again to see what to send")
        );
    }

    #[test]
    fn only_complete_photos_have_thumbnails() {
        assert_eq!(
            stored(5, false).check_thumbnail().map_err(|e| e.code()),
            Err("not_found")
        );
        assert!(stored(5, true).check_thumbnail().is_ok());
        let document = Attachment {
            kind: "document".into(),
            ..stored(5, true)
        };
        assert_eq!(
            document.check_thumbnail().map_err(|e| e.code()),
            Err("thumbnail_unavailable")
        );
    }

    #[test]
    fn any_stored_mark_but_ready_means_the_thumbnail_is_unavailable() {
        let mark = |m: Option<&str>| {
            Attachment {
                thumbnail: m.map(str::to_owned),
                ..stored(5, true)
            }
            .thumbnail_state()
        };
        assert_eq!(mark(None), None);
        assert_eq!(mark(Some("ready")), Some(ThumbnailState::Ready));
        assert_eq!(mark(Some("unavailable")), Some(ThumbnailState::Unavailable));
        assert_eq!(mark(Some("odd")), Some(ThumbnailState::Unavailable));
        assert!(ThumbnailState::Ready.check_ready().is_ok());
        assert!(ThumbnailState::Unavailable.check_ready().is_err());
    }

    #[test]
    fn a_declaration_needs_a_device_and_a_matching_size() {
        let on_device = Caller {
            actor: Actor::on_device(UserId::new(), Role::Rep, DeviceId::new()),
            org: OrgId::new(),
            team: None,
            territory: None,
            display_name: "Ana".into(),
            actor_id: automerge::ActorId::random(),
            window: None,
        };
        assert!(declaring_device(&on_device).is_ok());
        assert_eq!(
            declaring_device(&on_device.on_behalf()).map_err(|e| e.code()),
            Err("forbidden")
        );
        assert!(stored(5, false).check_declared_size(5).is_ok());
        assert_eq!(
            stored(5, false)
                .check_declared_size(6)
                .map_err(|e| e.code()),
            Err("conflict")
        );
    }

    #[test]
    fn uploads_are_abandoned_after_the_given_time_without_overflow() {
        assert_eq!(abandoned_before(1_000, Duration::from_secs(400)), 600);
        assert_eq!(abandoned_before(0, Duration::MAX), -i64::MAX);
    }

    #[test]
    fn only_orders_and_assignments_carry_signatures() {
        assert_eq!(signed(RecordKind::Order).ok(), Some(Signed::Order));
        assert_eq!(
            signed(RecordKind::Assignment).ok(),
            Some(Signed::Assignment)
        );
        assert_eq!(
            signed(RecordKind::Account).map_err(|e| e.code()),
            Err("bad_request")
        );
    }
}
