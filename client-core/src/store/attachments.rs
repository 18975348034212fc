//! Attachments on the device: photos, signatures and documents captured in the
//! field, kept until the server has them.
//!
//! # Tables (schema v5)
//!
//! - `attachments`: one row per file, keyed by the SHA-256 of its bytes
//!   (lowercase hex): attaching the same bytes twice keeps one row. Metadata
//!   (kind, content type, size, capture time and GPS) and the upload state:
//!   `pending` until the server has the whole file, then `uploaded`; `refused`
//!   when the server refused it for good (the refused ledger, with the server's
//!   code and message).
//! - `attachment_blobs`: the bytes, one BLOB per file, apart from the metadata
//!   so listing attachments never pages file contents in.
//! - `attachment_links`: which records a file is attached to (one file may be
//!   attached to several: the same photo on the visit and its report). Each link
//!   is `declared` once the server was told about it, which is how the server's
//!   `attachment_records` learns every record.
//!
//! # Never the whole file in memory
//!
//! [`DeviceStore::attach_file`] (and [`DeviceStore::attach_reader`]) allocate
//! the BLOB at its final size (`zeroblob`) and fill it through SQLite's
//! incremental BLOB I/O in [`COPY_CHUNK`] pieces while hashing, inside one
//! transaction: a kill half-way leaves nothing behind, and the memory used does
//! not grow with the file. The hash is known only at the end, so a file already
//! kept is detected then and the new copy dropped in the same transaction. The
//! upload reads one chunk at a time with [`DeviceStore::attachment_chunk`].
//! The store's connection is held while a file is copied (about 0.2 s for a 20
//! MiB photo on a phone), so other actions wait that long.
//!
//! # Retention
//!
//! Nothing deletes a pending or refused attachment, nor an uploaded one with a
//! link the server has not been told about; [`DeviceStore::wipe`] (a revoked
//! device) is the only exception. Uploaded attachments stay too (the app shows
//! them offline) until the app calls [`DeviceStore::release_uploaded_attachments`].

use std::io::Read;
use std::path::Path;

use rusqlite::{OptionalExtension, Transaction, params};
use sha2::{Digest, Sha256};

use super::{DeviceStore, StoreError, now_ms};
use crate::ids::RecordId;
use crate::model::DeviceTime;

/// Bytes copied per step when a file is streamed into the store (64 KiB).
pub const COPY_CHUNK: usize = 64 * 1024;

/// The largest file the device keeps (1 GiB; SQLite's BLOB limit is just under
/// 2 GiB and the server's largest kind is far below either).
pub const MAX_ATTACHMENT: u64 = 1 << 30;

/// What an attachment is; the server limits each kind's size and content types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttachmentKind {
    /// A photo (`image/jpeg`, `image/png`, `image/heic`, `image/webp`; 20 MiB).
    Photo,
    /// A signature (`image/png`, `image/webp`; 1 MiB).
    Signature,
    /// A document (`application/pdf`, `image/jpeg`, `image/png`; 50 MiB).
    Document,
}

impl AttachmentKind {
    /// The protocol's name for the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            AttachmentKind::Photo => "photo",
            AttachmentKind::Signature => "signature",
            AttachmentKind::Document => "document",
        }
    }

    /// The kind named `name` (as [`AttachmentKind::as_str`] writes it).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "photo" => Some(AttachmentKind::Photo),
            "signature" => Some(AttachmentKind::Signature),
            "document" => Some(AttachmentKind::Document),
            _ => None,
        }
    }
}

/// Where an attachment was captured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gps {
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lng: f64,
    /// Horizontal accuracy in metres, when the device reports it.
    pub accuracy_m: Option<f64>,
}

impl Gps {
    /// Whether the position is on the globe (and the accuracy, if any, is a
    /// non-negative number).
    pub fn is_valid(&self) -> bool {
        self.lat.is_finite()
            && self.lng.is_finite()
            && (-90.0..=90.0).contains(&self.lat)
            && (-180.0..=180.0).contains(&self.lng)
            && self.accuracy_m.is_none_or(|a| a.is_finite() && a >= 0.0)
    }
}

/// An attachment's metadata (without its bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct AttachmentInfo {
    /// SHA-256 of the bytes, 64 lowercase hex digits.
    pub sha256: String,
    /// The record it was first attached to.
    pub record_id: RecordId,
    /// Every record it is attached to, first one first.
    pub records: Vec<RecordId>,
    /// The records the server has not yet been told it is attached to.
    pub undeclared: Vec<RecordId>,
    /// What it is.
    pub kind: AttachmentKind,
    /// MIME type.
    pub content_type: String,
    /// Size in bytes.
    pub size: u64,
    /// When it was captured.
    pub captured_at: DeviceTime,
    /// Where it was captured, when known.
    pub gps: Option<Gps>,
    /// Whether the server has the whole file.
    pub uploaded: bool,
}

/// An entry of the refused ledger: an attachment the server will not take.
#[derive(Debug, Clone, PartialEq)]
pub struct RefusedAttachment {
    /// The attachment.
    pub info: AttachmentInfo,
    /// The server's stable error code (`attachment_too_large`, `bad_request`,
    /// `forbidden`, `hash_mismatch`, ...).
    pub code: String,
    /// The server's message, to show.
    pub message: String,
    /// When it was refused (device clock, ms).
    pub at_ms: i64,
}

const STATE_PENDING: &str = "pending";
const STATE_UPLOADED: &str = "uploaded";
const STATE_REFUSED: &str = "refused";

/// SHA-256 of `bytes` in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..])
}

const COLUMNS: &str = "a.sha256, a.kind, a.content_type, a.size, a.captured_at_ms, \
                       a.tz_offset_min, a.lat, a.lng, a.accuracy_m, a.state";

/// One row as an [`AttachmentInfo`] (links filled in later); `None` for a row
/// this build cannot read (an unknown kind), which is then left alone.
fn info_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<Option<AttachmentInfo>> {
    let kind: String = row.get(1)?;
    let Some(kind) = AttachmentKind::parse(&kind) else {
        return Ok(None);
    };
    let lat: Option<f64> = row.get(6)?;
    let lng: Option<f64> = row.get(7)?;
    let accuracy_m: Option<f64> = row.get(8)?;
    let size: i64 = row.get(3)?;
    let state: String = row.get(9)?;
    Ok(Some(AttachmentInfo {
        sha256: row.get(0)?,
        record_id: RecordId::from_uuid(uuid::Uuid::nil()),
        records: Vec::new(),
        undeclared: Vec::new(),
        kind,
        content_type: row.get(2)?,
        size: u64::try_from(size).unwrap_or(0),
        captured_at: DeviceTime {
            at_ms: row.get(4)?,
            tz_offset_min: row.get(5)?,
        },
        gps: lat.zip(lng).map(|(lat, lng)| Gps {
            lat,
            lng,
            accuracy_m,
        }),
        uploaded: state == STATE_UPLOADED,
    }))
}

/// Fills in an attachment's links; `None` when it has no readable link.
fn with_links(
    conn: &rusqlite::Connection,
    mut info: AttachmentInfo,
) -> Result<Option<AttachmentInfo>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT record_id, declared FROM attachment_links WHERE sha256 = ?1 \
         ORDER BY linked_at_ms, record_id",
    )?;
    let rows = stmt
        .query_map([&info.sha256], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (record, declared) in rows {
        let Ok(id) = record.parse::<RecordId>() else {
            continue;
        };
        info.records.push(id);
        if !declared {
            info.undeclared.push(id);
        }
    }
    let Some(first) = info.records.first() else {
        return Ok(None);
    };
    info.record_id = *first;
    Ok(Some(info))
}

fn query_infos(
    conn: &rusqlite::Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<AttachmentInfo>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt
        .query_map(args, info_of)?
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    for info in rows.into_iter().flatten() {
        if let Some(info) = with_links(conn, info)? {
            out.push(info);
        }
    }
    Ok(out)
}

fn link(tx: &Transaction<'_>, sha256: &str, record_id: RecordId) -> Result<(), StoreError> {
    tx.execute(
        "INSERT OR IGNORE INTO attachment_links (sha256, record_id, linked_at_ms, declared) \
         VALUES (?1, ?2, ?3, 0)",
        params![sha256, record_id.to_string(), now_ms()],
    )?;
    Ok(())
}

fn bad_input(detail: impl Into<String>) -> StoreError {
    StoreError::AttachmentInput(detail.into())
}

impl DeviceStore {
    /// Keeps `bytes` as an attachment of `record_id` until it is uploaded, and
    /// returns its SHA-256 (lowercase hex). Attaching the same bytes again keeps
    /// the one row (and its first metadata) and links it to `record_id` too.
    pub fn attach(
        &self,
        record_id: RecordId,
        kind: AttachmentKind,
        content_type: &str,
        bytes: &[u8],
        captured_at: DeviceTime,
        gps: Option<Gps>,
    ) -> Result<String, StoreError> {
        self.attach_reader(
            record_id,
            kind,
            content_type,
            bytes,
            bytes.len() as u64,
            captured_at,
            gps,
        )
    }

    /// Like [`DeviceStore::attach`] for a file on disk, streamed into the store
    /// while it is hashed (never read whole into memory).
    pub fn attach_file(
        &self,
        record_id: RecordId,
        kind: AttachmentKind,
        content_type: &str,
        path: &Path,
        captured_at: DeviceTime,
        gps: Option<Gps>,
    ) -> Result<String, StoreError> {
        let file = std::fs::File::open(path)
            .map_err(|e| bad_input(format!("cannot open {}: {e}", path.display())))?;
        let size = file
            .metadata()
            .map_err(|e| bad_input(format!("cannot read {}: {e}", path.display())))?
            .len();
        self.attach_reader(
            record_id,
            kind,
            content_type,
            std::io::BufReader::with_capacity(COPY_CHUNK, file),
            size,
            captured_at,
            gps,
        )
    }

    /// Streams exactly `size` bytes from `reader` into the store as an
    /// attachment of `record_id` (one transaction; see the module doc).
    /// A reader that ends early or has more than `size` bytes is refused and
    /// nothing is kept.
    #[allow(clippy::too_many_arguments)] // the attachment's metadata, each one plain
    pub fn attach_reader(
        &self,
        record_id: RecordId,
        kind: AttachmentKind,
        content_type: &str,
        mut reader: impl Read,
        size: u64,
        captured_at: DeviceTime,
        gps: Option<Gps>,
    ) -> Result<String, StoreError> {
        if size == 0 {
            return Err(bad_input("an attachment cannot be empty"));
        }
        if size > MAX_ATTACHMENT {
            return Err(bad_input(format!(
                "an attachment is at most {MAX_ATTACHMENT} bytes; this one is {size}"
            )));
        }
        if content_type.trim().is_empty() {
            return Err(bad_input("give the attachment's content type"));
        }
        if gps.is_some_and(|g| !g.is_valid()) {
            return Err(bad_input("the capture position is not on the globe"));
        }
        let len = usize::try_from(size).map_err(|_| bad_input("file too large"))?;
        let mut inner = self.lock();
        let tx = inner.conn.transaction()?;
        tx.execute(
            "INSERT INTO attachment_blobs (bytes) VALUES (zeroblob(?1))",
            [size as i64],
        )?;
        let blob_id = tx.last_insert_rowid();
        let mut hasher = Sha256::new();
        {
            let mut blob = tx.blob_open(
                rusqlite::MAIN_DB,
                "attachment_blobs",
                "bytes",
                blob_id,
                false,
            )?;
            let mut buf = vec![0u8; COPY_CHUNK];
            let mut offset = 0usize;
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(bad_input(format!("reading the file failed: {e}"))),
                };
                if n == 0 {
                    break;
                }
                if offset + n > len {
                    return Err(bad_input(format!(
                        "the file grew while it was read (more than {size} bytes); try again"
                    )));
                }
                blob.write_at(&buf[..n], offset)?;
                hasher.update(&buf[..n]);
                offset += n;
            }
            if offset != len {
                return Err(bad_input(format!(
                    "the file ended after {offset} of {size} bytes; try again"
                )));
            }
        }
        let sha256 = hex::encode(hasher.finalize());
        let known: Option<i64> = tx
            .query_row(
                "SELECT blob_id FROM attachments WHERE sha256 = ?1",
                [&sha256],
                |r| r.get(0),
            )
            .optional()?;
        if known.is_some() {
            tx.execute("DELETE FROM attachment_blobs WHERE id = ?1", [blob_id])?;
        } else {
            tx.execute(
                "INSERT INTO attachments \
                 (sha256, kind, content_type, size, captured_at_ms, tz_offset_min, lat, lng, \
                  accuracy_m, blob_id, state) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    sha256,
                    kind.as_str(),
                    content_type,
                    size as i64,
                    captured_at.at_ms,
                    captured_at.tz_offset_min,
                    gps.map(|g| g.lat),
                    gps.map(|g| g.lng),
                    gps.and_then(|g| g.accuracy_m),
                    blob_id,
                    STATE_PENDING,
                ],
            )?;
        }
        link(&tx, &sha256, record_id)?;
        tx.commit()?;
        Ok(sha256)
    }

    /// Attaches a file the device already keeps to another record (the server
    /// is told at the next sync; the bytes are not sent again).
    pub fn link_attachment(&self, sha256: &str, record_id: RecordId) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let tx = inner.conn.transaction()?;
        let known: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM attachments WHERE sha256 = ?1",
                [sha256],
                |r| r.get(0),
            )
            .optional()?;
        if known.is_none() {
            return Err(StoreError::AttachmentNotFound(sha256.to_owned()));
        }
        link(&tx, sha256, record_id)?;
        tx.commit()?;
        Ok(())
    }

    /// Attachments with something left to send: the bytes (not yet uploaded) or
    /// a link the server has not been told about. Refused ones are not listed
    /// (see [`DeviceStore::refused_attachments`]). Oldest capture first.
    pub fn pending_attachments(&self) -> Result<Vec<AttachmentInfo>, StoreError> {
        let inner = self.lock();
        query_infos(
            &inner.conn,
            &format!(
                "SELECT {COLUMNS} FROM attachments a WHERE a.state = ?1 \
                 OR (a.state = ?2 AND EXISTS (SELECT 1 FROM attachment_links l \
                     WHERE l.sha256 = a.sha256 AND l.declared = 0)) \
                 ORDER BY a.captured_at_ms, a.sha256"
            ),
            [STATE_PENDING, STATE_UPLOADED],
        )
    }

    /// Attachments of a record, oldest capture first.
    pub fn attachments_of(&self, record_id: RecordId) -> Result<Vec<AttachmentInfo>, StoreError> {
        let inner = self.lock();
        query_infos(
            &inner.conn,
            &format!(
                "SELECT {COLUMNS} FROM attachments a JOIN attachment_links l \
                 ON l.sha256 = a.sha256 WHERE l.record_id = ?1 \
                 ORDER BY a.captured_at_ms, a.sha256"
            ),
            [record_id.to_string()],
        )
    }

    /// An attachment's metadata.
    pub fn attachment_info(&self, sha256: &str) -> Result<AttachmentInfo, StoreError> {
        let inner = self.lock();
        query_infos(
            &inner.conn,
            &format!("SELECT {COLUMNS} FROM attachments a WHERE a.sha256 = ?1"),
            [sha256],
        )?
        .pop()
        .ok_or_else(|| StoreError::AttachmentNotFound(sha256.to_owned()))
    }

    fn blob_of(&self, sha256: &str) -> Result<(i64, u64), StoreError> {
        let row: Option<(i64, i64)> = self
            .lock()
            .conn
            .query_row(
                "SELECT blob_id, size FROM attachments WHERE sha256 = ?1",
                [sha256],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (blob, size) = row.ok_or_else(|| StoreError::AttachmentNotFound(sha256.to_owned()))?;
        Ok((blob, u64::try_from(size).unwrap_or(0)))
    }

    /// Up to `len` bytes of an attachment from `offset` (fewer at the end of
    /// the file, none past it). Reads only those bytes.
    pub fn attachment_chunk(
        &self,
        sha256: &str,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, StoreError> {
        let (blob_id, size) = self.blob_of(sha256)?;
        if offset >= size {
            return Ok(Vec::new());
        }
        let n = usize::try_from((size - offset).min(len as u64)).unwrap_or(len);
        let start = usize::try_from(offset).map_err(|_| bad_input("offset out of range"))?;
        let inner = self.lock();
        let blob = inner.conn.blob_open(
            rusqlite::MAIN_DB,
            "attachment_blobs",
            "bytes",
            blob_id,
            true,
        )?;
        let mut buf = vec![0u8; n];
        blob.read_at_exact(&mut buf, start)?;
        Ok(buf)
    }

    /// An attachment's bytes, whole (to show a small file; uploads read
    /// [`DeviceStore::attachment_chunk`] by chunk).
    pub fn attachment(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        let (_, size) = self.blob_of(sha256)?;
        self.attachment_chunk(sha256, 0, usize::try_from(size).unwrap_or(usize::MAX))
    }

    /// The server has the whole file.
    pub fn mark_attachment_uploaded(&self, sha256: &str) -> Result<(), StoreError> {
        self.lock().conn.execute(
            "UPDATE attachments SET state = ?2 WHERE sha256 = ?1 AND state = ?3",
            params![sha256, STATE_UPLOADED, STATE_PENDING],
        )?;
        Ok(())
    }

    /// The server knows the file is attached to `record_id`.
    pub fn mark_attachment_declared(
        &self,
        sha256: &str,
        record_id: RecordId,
    ) -> Result<(), StoreError> {
        self.lock().conn.execute(
            "UPDATE attachment_links SET declared = 1 WHERE sha256 = ?1 AND record_id = ?2",
            params![sha256, record_id.to_string()],
        )?;
        Ok(())
    }

    /// The server refused the attachment for good: it goes to the refused
    /// ledger with the server's code and message and is no longer sent.
    pub fn refuse_attachment(
        &self,
        sha256: &str,
        code: &str,
        message: &str,
    ) -> Result<(), StoreError> {
        self.lock().conn.execute(
            "UPDATE attachments SET state = ?2, refused_code = ?3, refused_message = ?4, \
             refused_at_ms = ?5 WHERE sha256 = ?1",
            params![sha256, STATE_REFUSED, code, message, now_ms()],
        )?;
        Ok(())
    }

    /// The refused ledger, most recent first.
    pub fn refused_attachments(&self) -> Result<Vec<RefusedAttachment>, StoreError> {
        let inner = self.lock();
        let mut stmt = inner.conn.prepare(&format!(
            "SELECT {COLUMNS}, a.refused_code, a.refused_message, a.refused_at_ms \
             FROM attachments a WHERE a.state = ?1 ORDER BY a.refused_at_ms DESC, a.sha256"
        ))?;
        let rows = stmt
            .query_map([STATE_REFUSED], |r| {
                Ok((
                    info_of(r)?,
                    r.get::<_, Option<String>>(10)?.unwrap_or_default(),
                    r.get::<_, Option<String>>(11)?.unwrap_or_default(),
                    r.get::<_, Option<i64>>(12)?.unwrap_or(0),
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::new();
        for (info, code, message, at_ms) in rows {
            let Some(info) = info else { continue };
            if let Some(info) = with_links(&inner.conn, info)? {
                out.push(RefusedAttachment {
                    info,
                    code,
                    message,
                    at_ms,
                });
            }
        }
        Ok(out)
    }

    /// Takes a refused attachment out of the ledger so the next sync tries it
    /// again (after the server's limits changed, say).
    pub fn retry_attachment(&self, sha256: &str) -> Result<(), StoreError> {
        let n = self.lock().conn.execute(
            "UPDATE attachments SET state = ?2, refused_code = NULL, refused_message = NULL, \
             refused_at_ms = NULL WHERE sha256 = ?1 AND state = ?3",
            params![sha256, STATE_PENDING, STATE_REFUSED],
        )?;
        if n == 0 {
            return Err(StoreError::AttachmentNotFound(sha256.to_owned()));
        }
        Ok(())
    }

    /// Frees the space of attachments the server has whole and knows every
    /// record of, and whose records have no unsynced change. Returns how many
    /// went. Pending and refused attachments are never touched.
    pub fn release_uploaded_attachments(&self) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let tx = inner.conn.transaction()?;
        let done: Vec<(String, i64)> = {
            let mut stmt = tx.prepare(
                "SELECT a.sha256, a.blob_id FROM attachments a WHERE a.state = 'uploaded' \
                 AND NOT EXISTS (SELECT 1 FROM attachment_links l WHERE l.sha256 = a.sha256 \
                   AND (l.declared = 0 \
                        OR EXISTS (SELECT 1 FROM outbox o WHERE o.record_id = l.record_id)))",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        for (sha256, blob_id) in &done {
            tx.execute("DELETE FROM attachment_links WHERE sha256 = ?1", [sha256])?;
            tx.execute("DELETE FROM attachments WHERE sha256 = ?1", [sha256])?;
            tx.execute("DELETE FROM attachment_blobs WHERE id = ?1", [blob_id])?;
        }
        tx.commit()?;
        Ok(done.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    #[test]
    fn same_bytes_are_one_pending_row_that_survives_reopening() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("device.db");
        let record = RecordId::new();
        let photo: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let at = DeviceTime::utc(1_700_000_000_000);
        let gps = Some(Gps {
            lat: 38.72,
            lng: -9.14,
            accuracy_m: Some(6.5),
        });
        let hash = {
            let store = DeviceStore::open(&path, StoreOptions::default()).expect("open");
            let a = store
                .attach(record, AttachmentKind::Photo, "image/jpeg", &photo, at, gps)
                .expect("attach");
            let b = store
                .attach(
                    record,
                    AttachmentKind::Photo,
                    "image/jpeg",
                    &photo,
                    at,
                    None,
                )
                .expect("attach again");
            assert_eq!(a, b);
            assert_eq!(a, sha256_hex(&photo));
            assert_eq!(a.len(), 64);
            let other = store
                .attach(
                    record,
                    AttachmentKind::Signature,
                    "image/png",
                    b"sig",
                    at,
                    None,
                )
                .expect("attach");
            assert_ne!(a, other);
            assert_eq!(store.pending_attachments().expect("pending").len(), 2);
            store.mark_attachment_uploaded(&other).expect("mark");
            store
                .mark_attachment_declared(&other, record)
                .expect("mark");
            a
        };
        let store = DeviceStore::open(&path, StoreOptions::default()).expect("reopen");
        let pending = store.pending_attachments().expect("pending");
        assert_eq!(pending.len(), 1);
        let info = &pending[0];
        assert_eq!(info.sha256, hash);
        assert_eq!(info.record_id, record);
        assert_eq!(info.records, vec![record]);
        assert_eq!(info.kind, AttachmentKind::Photo);
        assert_eq!(info.content_type, "image/jpeg");
        assert_eq!(info.size, photo.len() as u64);
        assert_eq!(info.captured_at, at);
        assert_eq!(info.gps, gps);
        assert!(!info.uploaded);
        assert!(store.attachment(&hash).expect("bytes") == photo);
        assert!(matches!(
            store.attachment(&sha256_hex(b"nothing")),
            Err(StoreError::AttachmentNotFound(_))
        ));
        // A revoked device loses them all.
        store.wipe().expect("wipe");
        assert!(store.pending_attachments().expect("pending").is_empty());
    }

    /// A reader that hands out at most `step` bytes per call and counts the
    /// largest buffer it was asked to fill.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
        largest_request: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.largest_request = self.largest_request.max(buf.len());
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_large_file_streams_in_and_reads_back_chunk_by_chunk() {
        let dir = tempfile::tempdir().expect("dir");
        let store =
            DeviceStore::open(dir.path().join("d.db"), StoreOptions::default()).expect("open");
        // Five and a half copy chunks, from a file on disk.
        let data: Vec<u8> = (0..(COPY_CHUNK * 11 / 2))
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
            .collect();
        let file = dir.path().join("photo.jpg");
        std::fs::write(&file, &data).expect("write");
        let record = RecordId::new();
        let hash = store
            .attach_file(
                record,
                AttachmentKind::Photo,
                "image/jpeg",
                &file,
                DeviceTime::utc(1),
                None,
            )
            .expect("attach file");
        assert_eq!(hash, sha256_hex(&data));
        // Read back in uneven chunks: every chunk is exact, the last is short.
        let chunk = 100_000;
        let mut back = Vec::new();
        let mut offset = 0u64;
        loop {
            let part = store.attachment_chunk(&hash, offset, chunk).expect("chunk");
            if part.is_empty() {
                break;
            }
            assert!(part.len() <= chunk);
            offset += part.len() as u64;
            back.extend(part);
        }
        assert!(back == data);

        // The reader is only ever asked for one copy chunk at a time.
        let mut trickle = Trickle {
            data: &data,
            step: 10_000,
            largest_request: 0,
        };
        let other = RecordId::new();
        let again = store
            .attach_reader(
                other,
                AttachmentKind::Photo,
                "image/jpeg",
                &mut trickle,
                data.len() as u64,
                DeviceTime::utc(2),
                None,
            )
            .expect("attach reader");
        assert_eq!(again, hash);
        assert!(trickle.largest_request <= COPY_CHUNK);
        let info = store.attachment_info(&hash).expect("info");
        assert_eq!(info.records, vec![record, other], "one file, two records");
        let blobs: i64 = store
            .lock()
            .conn
            .query_row("SELECT COUNT(*) FROM attachment_blobs", [], |r| r.get(0))
            .expect("count");
        assert_eq!(blobs, 1, "the second copy was dropped");
    }

    #[test]
    fn a_short_or_long_file_is_refused_and_leaves_nothing() {
        let store = DeviceStore::open_in_memory().expect("open");
        let data = vec![7u8; 1_000];
        for claimed in [999u64, 1_001] {
            let err = store
                .attach_reader(
                    RecordId::new(),
                    AttachmentKind::Document,
                    "application/pdf",
                    &data[..],
                    claimed,
                    DeviceTime::utc(0),
                    None,
                )
                .expect_err("size mismatch");
            assert!(matches!(err, StoreError::AttachmentInput(_)), "{err}");
        }
        let err = store
            .attach(
                RecordId::new(),
                AttachmentKind::Photo,
                "image/jpeg",
                b"",
                DeviceTime::utc(0),
                None,
            )
            .expect_err("empty");
        assert!(err.to_string().contains("empty"));
        let blobs: i64 = store
            .lock()
            .conn
            .query_row("SELECT COUNT(*) FROM attachment_blobs", [], |r| r.get(0))
            .expect("count");
        assert_eq!(blobs, 0);
        assert!(store.pending_attachments().expect("pending").is_empty());
    }

    #[test]
    fn a_refused_attachment_leaves_the_pending_list_for_the_ledger() {
        let store = DeviceStore::open_in_memory().expect("open");
        let record = RecordId::new();
        let hash = store
            .attach(
                record,
                AttachmentKind::Signature,
                "image/png",
                b"png bytes",
                DeviceTime::utc(0),
                None,
            )
            .expect("attach");
        store
            .refuse_attachment(
                &hash,
                "attachment_too_large",
                "a signature is at most 1 MiB",
            )
            .expect("refuse");
        assert!(store.pending_attachments().expect("pending").is_empty());
        let ledger = store.refused_attachments().expect("ledger");
        assert_eq!(ledger.len(), 1);
        assert_eq!(ledger[0].info.sha256, hash);
        assert_eq!(ledger[0].code, "attachment_too_large");
        assert!(ledger[0].message.contains("1 MiB"));
        assert!(store.attachment(&hash).is_ok(), "the bytes are kept");
        store.retry_attachment(&hash).expect("retry");
        assert!(store.refused_attachments().expect("ledger").is_empty());
        assert_eq!(store.pending_attachments().expect("pending").len(), 1);
    }

    #[test]
    fn only_fully_synced_attachments_are_released() {
        let store = DeviceStore::open_in_memory().expect("open");
        let (a, b) = (RecordId::new(), RecordId::new());
        let done = store
            .attach(
                a,
                AttachmentKind::Photo,
                "image/jpeg",
                b"one",
                DeviceTime::utc(0),
                None,
            )
            .expect("attach");
        let half = store
            .attach(
                a,
                AttachmentKind::Photo,
                "image/jpeg",
                b"two",
                DeviceTime::utc(0),
                None,
            )
            .expect("attach");
        store.link_attachment(&half, b).expect("link");
        for h in [&done, &half] {
            store.mark_attachment_uploaded(h).expect("uploaded");
            store.mark_attachment_declared(h, a).expect("declared");
        }
        // `half` is uploaded but the server does not know about record b yet.
        assert_eq!(store.pending_attachments().expect("pending").len(), 1);
        assert_eq!(store.release_uploaded_attachments().expect("release"), 1);
        assert!(matches!(
            store.attachment_info(&done),
            Err(StoreError::AttachmentNotFound(_))
        ));
        assert_eq!(store.attachment(&half).expect("kept"), b"two");
        assert_eq!(
            store.attachment_info(&half).expect("info").undeclared,
            vec![b]
        );
    }
}
