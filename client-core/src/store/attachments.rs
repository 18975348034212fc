//! Attachments on the device: photos, signatures and documents captured in the
//! field, kept until the server has them.
//!
//! One row per file, keyed by the SHA-256 of its bytes (lowercase hex): attaching
//! the same bytes twice keeps one row. The bytes live in the row (a BLOB); a
//! photo is a few MiB, well within what SQLite handles. A row is `pending` until
//! the sync client has uploaded it (`docs/protocol.md`, "Attachments"), then
//! `uploaded`. Nothing deletes a pending attachment; [`DeviceStore::wipe`] (a
//! revoked device) is the only exception.

use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::{DeviceStore, StoreError};
use crate::ids::RecordId;
use crate::model::DeviceTime;

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
}

/// An attachment's metadata (without its bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct AttachmentInfo {
    /// SHA-256 of the bytes, 64 lowercase hex digits.
    pub sha256: String,
    /// The record it belongs to.
    pub record_id: RecordId,
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
    /// Whether the server has it.
    pub uploaded: bool,
}

const STATE_PENDING: &str = "pending";
const STATE_UPLOADED: &str = "uploaded";

/// SHA-256 of `bytes` in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..])
}

/// One row as an [`AttachmentInfo`]; `None` for a row this build cannot read
/// (an unknown kind or a malformed record id), which is then left alone.
fn info_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<Option<AttachmentInfo>> {
    let record: String = row.get(1)?;
    let kind: String = row.get(2)?;
    let (Ok(record_id), Some(kind)) = (record.parse::<RecordId>(), AttachmentKind::parse(&kind))
    else {
        return Ok(None);
    };
    let lat: Option<f64> = row.get(7)?;
    let lng: Option<f64> = row.get(8)?;
    let size: i64 = row.get(4)?;
    let state: String = row.get(9)?;
    Ok(Some(AttachmentInfo {
        sha256: row.get(0)?,
        record_id,
        kind,
        content_type: row.get(3)?,
        size: u64::try_from(size).unwrap_or(0),
        captured_at: DeviceTime {
            at_ms: row.get(5)?,
            tz_offset_min: row.get(6)?,
        },
        gps: lat.zip(lng).map(|(lat, lng)| Gps { lat, lng }),
        uploaded: state == STATE_UPLOADED,
    }))
}

const COLUMNS: &str = "sha256, record_id, kind, content_type, size, captured_at_ms, \
                       tz_offset_min, lat, lng, state";

impl DeviceStore {
    /// Keeps `bytes` as an attachment of `record_id` until it is uploaded, and
    /// returns its SHA-256 (lowercase hex). Attaching the same bytes again keeps
    /// the one row (and its first metadata).
    pub fn attach(
        &self,
        record_id: RecordId,
        kind: AttachmentKind,
        content_type: &str,
        bytes: &[u8],
        captured_at: DeviceTime,
        gps: Option<Gps>,
    ) -> Result<String, StoreError> {
        let sha256 = sha256_hex(bytes);
        let size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
        self.lock().conn.execute(
            "INSERT OR IGNORE INTO attachments \
             (sha256, record_id, kind, content_type, size, captured_at_ms, tz_offset_min, lat, lng, bytes, state) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                sha256,
                record_id.to_string(),
                kind.as_str(),
                content_type,
                size,
                captured_at.at_ms,
                captured_at.tz_offset_min,
                gps.map(|g| g.lat),
                gps.map(|g| g.lng),
                bytes,
                STATE_PENDING,
            ],
        )?;
        Ok(sha256)
    }

    /// Attachments not yet uploaded, oldest capture first.
    pub fn pending_attachments(&self) -> Result<Vec<AttachmentInfo>, StoreError> {
        let inner = self.lock();
        let mut stmt = inner.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM attachments WHERE state = ?1 ORDER BY captured_at_ms, sha256"
        ))?;
        let rows = stmt
            .query_map([STATE_PENDING], info_of)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows.into_iter().flatten().collect())
    }

    /// An attachment's metadata.
    pub fn attachment_info(&self, sha256: &str) -> Result<AttachmentInfo, StoreError> {
        let inner = self.lock();
        let row = inner
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM attachments WHERE sha256 = ?1"),
                [sha256],
                info_of,
            )
            .optional()?;
        row.flatten()
            .ok_or_else(|| StoreError::AttachmentNotFound(sha256.to_owned()))
    }

    /// An attachment's bytes.
    pub fn attachment(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        self.lock()
            .conn
            .query_row(
                "SELECT bytes FROM attachments WHERE sha256 = ?1",
                [sha256],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| StoreError::AttachmentNotFound(sha256.to_owned()))
    }

    /// The server has the attachment (its upload completed).
    pub fn mark_attachment_uploaded(&self, sha256: &str) -> Result<(), StoreError> {
        self.lock().conn.execute(
            "UPDATE attachments SET state = ?2 WHERE sha256 = ?1",
            params![sha256, STATE_UPLOADED],
        )?;
        Ok(())
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
            a
        };
        let store = DeviceStore::open(&path, StoreOptions::default()).expect("reopen");
        let pending = store.pending_attachments().expect("pending");
        assert_eq!(pending.len(), 1);
        let info = &pending[0];
        assert_eq!(info.sha256, hash);
        assert_eq!(info.record_id, record);
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
}
