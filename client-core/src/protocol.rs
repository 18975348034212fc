//! The sync protocol's wire types, shared by the device and the server.
//!
//! The full description, with the rules each side follows, is
//! `docs/protocol.md`; this module is its executable half. In short:
//!
//! - **Push** ([`PushRequest`] → [`PushResponse`]): the device sends the raw
//!   Automerge changes of any number of records; the server answers per record,
//!   accepted (with its heads after the merge) or rejected (with a reason the app
//!   can show and whether a retry can help). Resending a batch is harmless:
//!   Automerge changes are content-addressed.
//! - **Pull** ([`PullRequest`] → [`PullResponse`]): the changes in the device's scope
//!   after a cursor (the server's change-log sequence), in pages.
//! - **Prime** ([`PrimeRequest`] → [`PrimeResponse`]): compacted snapshots of every
//!   record in scope, in pages, for a new or reset device.
//! - **Repair** ([`RepairRequest`] → [`RepairResponse`]): Automerge's own sync
//!   protocol for one record whose histories disagree.
//!
//! Messages are CBOR (self-describing, compact for byte strings). Every struct
//! tolerates unknown fields, and new fields get defaults, so a newer server can
//! add information without breaking older apps; a breaking change bumps
//! [`PROTOCOL_VERSION`], negotiated through the [`PROTOCOL_HEADER`] header
//! ([`negotiate`]).

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_bytes::ByteBuf;
use uuid::Uuid;

use crate::ids::RecordId;
use crate::model::RecordKind;

/// The newest protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// The oldest protocol version this build still accepts.
pub const MIN_PROTOCOL_VERSION: u16 = 1;
/// HTTP header carrying the version: the client sends the newest it speaks, the
/// server answers with the one it uses.
pub const PROTOCOL_HEADER: &str = "fieldsync-protocol";
/// Content type of every sync message body.
pub const CONTENT_TYPE: &str = "application/cbor";
/// Deepest nesting a decoder accepts; our messages nest four levels.
const MAX_DEPTH: usize = 32;

/// The raw Automerge changes of one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordChanges {
    /// The record.
    pub id: RecordId,
    /// Its kind (must match the document's `kind`).
    pub kind: RecordKind,
    /// Raw Automerge changes, in any order (the receiver orders them by dependency).
    pub changes: Vec<ByteBuf>,
}

impl RecordChanges {
    /// The changes of `doc` not covered by `since` (all of them for `&[]`),
    /// as a push or the feed carries them.
    pub fn of_doc(doc: &mut crate::model::RecordDoc, since: &[automerge::ChangeHash]) -> Self {
        RecordChanges {
            id: doc.id(),
            kind: doc.kind(),
            changes: doc
                .changes_since(since)
                .iter()
                .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
                .collect(),
        }
    }
}

/// A device's pending changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRequest {
    /// Made by the device per batch; logged, and lets the server recognise a resend.
    pub batch: Uuid,
    /// The records with their changes.
    pub records: Vec<RecordChanges>,
    /// The device's sync health when it sent this push (figures before the
    /// push). Optional: older apps send none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<DeviceHealth>,
    /// The epoch each record's changes were made on, for records whose
    /// history was rewritten by an erasure (epoch above 0); a record not
    /// listed was edited on epoch 0. The server refuses, as retryable, changes
    /// made on an older epoch than the one it holds: the device pulls the new
    /// epoch, rebases its edits onto it and pushes them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub epochs: Vec<RecordEpoch>,
}

/// A record's epoch: how many times an erasure rewrote its history
/// (`docs/adr/0005-erasure-by-rewrite.md`). Records start at 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordEpoch {
    /// The record.
    pub id: RecordId,
    /// Its epoch.
    pub epoch: u32,
    /// From the server: the field paths (map keys from the record's root) the
    /// last rewrite took out. A device drops its unsynced edits to them when
    /// it rebases; never the erased values themselves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub erased: Vec<Vec<String>>,
    /// From the server: the attachments (SHA-256 hex) of this record the
    /// erasure deleted (photos of the person, signatures they drew). A device
    /// deletes its copies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<String>,
}

/// The epoch `epochs` gives `id` (0 when it is not listed).
pub fn epoch_of(epochs: &[RecordEpoch], id: RecordId) -> u32 {
    epochs
        .iter()
        .filter(|e| e.id == id)
        .map(|e| e.epoch)
        .max()
        .unwrap_or(0)
}

/// What a device reports about itself with each sync, for the managers'
/// fleet view: what it still holds unsynced and which app it runs.
///
/// Sent in [`PushRequest::health`] and [`PullRequest::health`]; every field is
/// optional on the wire, so apps that predate it and apps that add fields
/// later both keep working.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceHealth {
    /// Local changes the server has not acknowledged (the outbox).
    #[serde(default)]
    pub unsynced_changes: u64,
    /// Device time (ms since the epoch) of the oldest of them; `None` when
    /// nothing is unsynced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_unsynced_ms: Option<i64>,
    /// Bytes of attachments (photos, signatures, documents) not yet uploaded.
    #[serde(default)]
    pub pending_attachment_bytes: u64,
    /// The app's version, as given at login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
}

/// The server's answer to a push: one result per record, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushResponse {
    /// Per-record results.
    pub results: Vec<PushResult>,
}

/// What happened to one record of a push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushResult {
    /// The record.
    pub id: RecordId,
    /// Accepted or rejected.
    pub outcome: PushOutcome,
}

/// Accepted (durably committed) or rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum PushOutcome {
    /// Merged and committed; the record's heads on the server afterwards.
    Accepted {
        /// Heads as 32-byte change hashes.
        heads: Vec<ByteBuf>,
    },
    /// Not merged; nothing of this record's changes was stored (except in the
    /// rejection ledger).
    Rejected(Rejection),
}

/// Why a record's changes were refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// Stable code an app can branch on.
    pub code: RejectCode,
    /// A message an app can show the user.
    pub message: String,
    /// Whether sending the same changes again later can succeed.
    pub retryable: bool,
    /// The server's copy of the record (its stored form, an Automerge file:
    /// see `model::stored`), when it has one and the
    /// device may read it: the device resets the record to it, so its later
    /// changes no longer build on the refused ones. `None` for a record the server
    /// never accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_doc: Option<ByteBuf>,
}

/// Stable rejection codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// The bytes are not valid Automerge changes.
    InvalidChange,
    /// The changes depend on changes the server does not have: run repair.
    MissingDependencies,
    /// The changes were made under an actor id not assigned to this device.
    ForeignActor,
    /// The user may not write this record or field.
    Forbidden,
    /// The merged record breaks a rule (required field, range).
    Validation,
    /// A status change the state machine or the role does not allow.
    Transition,
    /// The record's kind does not match the document or the existing record.
    WrongKind,
    /// The record or batch is over a size limit.
    TooLarge,
    /// The server failed; retry later.
    Internal,
    /// The changes were made on an older epoch of the record (an erasure
    /// rewrote its history since): pull, rebase and push again.
    StaleEpoch,
    /// A code from a newer server.
    #[serde(other)]
    Unknown,
}

impl RejectCode {
    /// The stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectCode::InvalidChange => "invalid_change",
            RejectCode::MissingDependencies => "missing_dependencies",
            RejectCode::ForeignActor => "foreign_actor",
            RejectCode::Forbidden => "forbidden",
            RejectCode::Validation => "validation",
            RejectCode::Transition => "transition",
            RejectCode::WrongKind => "wrong_kind",
            RejectCode::TooLarge => "too_large",
            RejectCode::Internal => "internal",
            RejectCode::StaleEpoch => "stale_epoch",
            RejectCode::Unknown => "unknown",
        }
    }
}

/// Ask for the changes in scope after `cursor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    /// The last change-log sequence the device has applied (0 for none).
    pub cursor: u64,
    /// Upper bound on changes in the page; the server may send fewer.
    #[serde(default = "default_page")]
    pub max_changes: u32,
    /// The scope window the device last received (from the last pull or prime),
    /// so the server can send what entered the window since and name what left.
    /// It never widens what the server sends.
    #[serde(default)]
    pub window: Option<ScopeWindow>,
    /// The device's sync health (figures after its push). Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<DeviceHealth>,
    /// The server's change log this device last synced with ([`PullResponse::log`]),
    /// so the server can tell a device that synced with the log before a
    /// restore from backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// The records this device holds *for reference* ([`PullResponse::history`]
    /// of its last pull, those it still has). `None`: the device takes no
    /// reference records (an older app); the server then sends none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<RecordId>>,
}

/// The time span of dated records (visits, orders, visit reports, assignments,
/// checklist responses) a device holds, in ms since the epoch, `from_ms`
/// inclusive and `to_ms` exclusive. It moves a day at a time (UTC days); see
/// the server's scope settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ScopeWindow {
    /// Start, inclusive.
    pub from_ms: i64,
    /// End, exclusive.
    pub to_ms: i64,
}

impl ScopeWindow {
    /// Whether an instant lies in the window.
    pub fn contains(&self, ms: i64) -> bool {
        self.from_ms <= ms && ms < self.to_ms
    }
}

/// One page of the feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullResponse {
    /// Changes grouped by record, in feed order of each record's first change.
    pub records: Vec<RecordChanges>,
    /// Records that left the device's scope: drop them unless they hold unsynced changes.
    #[serde(default)]
    pub removed: Vec<RecordId>,
    /// The cursor to store once this page is applied.
    pub next_cursor: u64,
    /// Whether more pages follow right away.
    pub more: bool,
    /// The window this page was cut to (`None`: the caller's scope has no time
    /// limit). Store it with the cursor and send it with the next pull.
    #[serde(default)]
    pub window: Option<ScopeWindow>,
    /// The identity of the server's change log. A new one means the server's
    /// database was restored from a backup: the positions the device holds no
    /// longer name the same changes, and changes the device sent after the
    /// backup may be gone. The device then pulls the feed from the start and
    /// repairs every record it holds with the server (see `docs/protocol.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// The records the device now holds for reference, read-only: the last
    /// few finished visits and jobs at the accounts the caller works at in its
    /// window, which its own scope does not reach (a colleague's visit last
    /// month). Those it did not name in the request come whole in `records`,
    /// those it named get their new changes there, and those it named that
    /// are no longer reference (nor in its scope) are in `removed`. Sent when
    /// the request named a list and the caller's scope has a window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<RecordId>>,
    /// The epochs of this page's records whose history an erasure rewrote
    /// (the others are at epoch 0). A record at a newer epoch than the
    /// device's copy is replaced by the page's changes (which start with the
    /// rewrite), and the device's unsynced edits are rebased onto it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub epochs: Vec<RecordEpoch>,
}

/// Ask for a page of snapshots (priming a new or reset device).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrimeRequest {
    /// Continue after this record id (`None` for the first page).
    #[serde(default)]
    pub after: Option<RecordId>,
    /// The feed position the priming started at, echoed from the first page.
    #[serde(default)]
    pub cursor: Option<u64>,
    /// Upper bound on records in the page.
    #[serde(default = "default_page")]
    pub max_records: u32,
}

/// One page of snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrimeResponse {
    /// Compacted documents.
    pub snapshots: Vec<Snapshot>,
    /// Where the next page starts; `None` when this was the last.
    pub next: Option<RecordId>,
    /// The feed position to pull from once priming is done. It is taken before the
    /// first page is read, so nothing written during priming is missed (re-applying
    /// a change the snapshot already holds is a no-op).
    pub cursor: u64,
    /// The window this page was cut to; the device keeps the first page's.
    #[serde(default)]
    pub window: Option<ScopeWindow>,
    /// The identity of the server's change log (see [`PullResponse::log`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// The epochs of this page's records above 0 (see [`PullResponse::epochs`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub epochs: Vec<RecordEpoch>,
}

/// A record's full document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The record.
    pub id: RecordId,
    /// Its kind.
    pub kind: RecordKind,
    /// The record as the server stores it: an Automerge file (a compacted
    /// save, changes as they came, or both; see `model::stored`), which
    /// `Automerge::load` reads alike.
    pub doc: ByteBuf,
    /// The record's projection as the server computed it when it stored the
    /// document. A device priming many records stores the document bytes and
    /// these columns as they are, without loading each document (loading is
    /// most of the cost of priming); it loads a document when it is opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projection: Option<crate::model::Projection>,
}

/// One round of Automerge's sync protocol for one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairRequest {
    /// The record.
    pub id: RecordId,
    /// Its kind.
    pub kind: RecordKind,
    /// The device's encoded sync message.
    pub message: ByteBuf,
    /// The epoch of the device's copy. The server answers a copy of an older
    /// epoch with nothing to exchange: the device learns the new epoch from
    /// the feed, and its old history never reaches the server.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// The server's half of a repair round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairResponse {
    /// The server's sync message, `None` when the two sides agree.
    pub message: Option<ByteBuf>,
}

fn default_page() -> u32 {
    500
}

/// Encodes a message as CBOR.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail, and our types always serialize.
    if let Err(e) = ciborium::into_writer(message, &mut out) {
        unreachable!("encoding a protocol message into memory failed: {e}");
    }
    out
}

/// A message that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what} message: {detail}")]
pub struct DecodeError {
    /// Which message was expected.
    pub what: &'static str,
    /// What the decoder said (no payload bytes).
    pub detail: String,
}

/// Decodes a CBOR message, refusing deeply nested input. Never panics on any bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    ciborium::de::from_reader_with_recursion_limit(bytes, MAX_DEPTH).map_err(|e| DecodeError {
        what: short_type_name::<T>(),
        detail: e.to_string().chars().take(200).collect(),
    })
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

/// A protocol version the server cannot serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "protocol version {offered} is not supported: this server speaks {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION}; update the app"
)]
pub struct VersionError {
    /// What the client offered.
    pub offered: String,
}

/// Picks the version to use for a client that offered `offered` (the newest it
/// speaks). A missing header means version 1, the first release.
pub fn negotiate(offered: Option<&str>) -> Result<u16, VersionError> {
    let Some(raw) = offered else {
        return Ok(1);
    };
    let err = || VersionError {
        offered: raw.chars().take(16).collect(),
    };
    let v: u16 = raw.trim().parse().map_err(|_| err())?;
    if v < MIN_PROTOCOL_VERSION {
        return Err(err());
    }
    Ok(v.min(PROTOCOL_VERSION))
}

impl From<crate::model::IncomingError> for Rejection {
    fn from(e: crate::model::IncomingError) -> Self {
        use crate::model::IncomingError as E;
        let (code, retryable) = match &e {
            E::Validation(_) => (RejectCode::Validation, false),
            E::Transition(_) => (RejectCode::Transition, false),
            E::Forbidden(_) => (RejectCode::Forbidden, false),
            E::WrongKind(_) => (RejectCode::WrongKind, false),
            E::InvalidChange(_) => (RejectCode::InvalidChange, false),
            // Repair brings the missing history; the same changes then apply.
            E::MissingDependencies(_) => (RejectCode::MissingDependencies, true),
            E::ForeignActor(_) => (RejectCode::ForeignActor, false),
            E::TooLarge(_) => (RejectCode::TooLarge, false),
        };
        Rejection {
            code,
            message: e.to_string(),
            retryable,
            server_doc: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_push() -> PushRequest {
        PushRequest {
            batch: Uuid::from_u128(7),
            records: vec![RecordChanges {
                id: RecordId::from_uuid(Uuid::from_u128(1)),
                kind: RecordKind::Visit,
                changes: vec![
                    ByteBuf::from(vec![0x85, 0x6f, 0x4a, 0x83]),
                    ByteBuf::from(vec![1, 2, 3]),
                ],
            }],
            health: None,
            epochs: Vec::new(),
        }
    }

    #[test]
    fn device_health_is_optional_both_ways() {
        let with = PullRequest {
            log: None,
            history: None,
            cursor: 3,
            max_changes: 10,
            window: None,
            health: Some(DeviceHealth {
                unsynced_changes: 4,
                oldest_unsynced_ms: Some(1_700_000_000_000),
                pending_attachment_bytes: 2_048,
                app_version: Some("2.1.0".into()),
            }),
        };
        assert_eq!(decode::<PullRequest>(&encode(&with)), Ok(with.clone()));
        // A server that predates the field reads the message as before.
        #[derive(Debug, Deserialize)]
        struct OldPull {
            cursor: u64,
        }
        assert_eq!(decode::<OldPull>(&encode(&with)).map(|p| p.cursor), Ok(3));
        // An app that predates it sends no `health` key at all.
        let without = PullRequest {
            log: None,
            health: None,
            ..with
        };
        let bytes = encode(&without);
        assert!(!bytes.windows(6).any(|w| w == b"health"));
        assert_eq!(decode::<PullRequest>(&bytes), Ok(without));
        // Partial figures from a newer or older app get defaults.
        #[derive(Serialize)]
        struct Partial {
            cursor: u64,
            health: std::collections::BTreeMap<&'static str, u64>,
        }
        let partial = encode(&Partial {
            cursor: 1,
            health: [("unsynced_changes", 2), ("from_the_future", 9)].into(),
        });
        let read = decode::<PullRequest>(&partial).expect("decodes");
        assert_eq!(
            read.health,
            Some(DeviceHealth {
                unsynced_changes: 2,
                ..DeviceHealth::default()
            })
        );
    }

    #[test]
    fn messages_round_trip() {
        let push = sample_push();
        assert_eq!(decode::<PushRequest>(&encode(&push)), Ok(push));
        let resp = PushResponse {
            results: vec![
                PushResult {
                    id: RecordId::from_uuid(Uuid::from_u128(1)),
                    outcome: PushOutcome::Accepted {
                        heads: vec![ByteBuf::from(vec![9; 32])],
                    },
                },
                PushResult {
                    id: RecordId::from_uuid(Uuid::from_u128(2)),
                    outcome: PushOutcome::Rejected(Rejection {
                        code: RejectCode::Transition,
                        message: "an outcome is required to complete the visit".into(),
                        retryable: false,
                        server_doc: Some(ByteBuf::from(vec![1, 2, 3])),
                    }),
                },
            ],
        };
        assert_eq!(decode::<PushResponse>(&encode(&resp)), Ok(resp));
        let pull = PullResponse {
            log: None,
            history: None,
            records: vec![],
            removed: vec![RecordId::from_uuid(Uuid::from_u128(3))],
            next_cursor: 42,
            more: false,
            window: Some(ScopeWindow {
                from_ms: -5,
                to_ms: 86_400_000,
            }),
            epochs: Vec::new(),
        };
        assert_eq!(decode::<PullResponse>(&encode(&pull)), Ok(pull));
    }

    #[test]
    fn byte_strings_are_encoded_compactly() {
        // 1,000 change bytes cost about 1,000 bytes on the wire, not an array of integers.
        let push = PushRequest {
            batch: Uuid::nil(),
            records: vec![RecordChanges {
                id: RecordId::from_uuid(Uuid::nil()),
                kind: RecordKind::Order,
                changes: vec![ByteBuf::from(vec![0xff; 1000])],
            }],
            health: None,
            epochs: Vec::new(),
        };
        let len = encode(&push).len();
        assert!(len < 1_150, "{len} bytes");
    }

    #[test]
    fn unknown_fields_and_codes_from_a_newer_server_are_tolerated() {
        #[derive(Serialize)]
        struct NewerRejection<'a> {
            code: &'a str,
            message: &'a str,
            retryable: bool,
            hint: &'a str,
        }
        let bytes = encode(&NewerRejection {
            code: "quota_exceeded",
            message: "m",
            retryable: true,
            hint: "later",
        });
        let r: Rejection = decode(&bytes).expect("decodes");
        assert_eq!(r.code, RejectCode::Unknown);
        assert!(r.retryable);
    }

    #[test]
    fn garbage_and_truncated_input_is_an_error_not_a_panic() {
        let good = encode(&sample_push());
        for cut in 0..good.len() {
            assert!(decode::<PushRequest>(&good[..cut]).is_err());
        }
        assert!(decode::<PushRequest>(&[0xff; 64]).is_err());
        // 10,000 nested arrays.
        let deep = vec![0x81u8; 10_000];
        let err = decode::<PushRequest>(&deep).expect_err("too deep");
        assert_eq!(err.what, "PushRequest");
    }

    #[test]
    fn a_hundred_thousand_nested_arrays_are_an_error_not_a_stack_overflow() {
        // Arrays, maps and tags, each 100,000 deep, as every message type.
        for opener in [0x81u8, 0xa1, 0xc6] {
            let deep = vec![opener; 100_000];
            assert!(decode::<PushRequest>(&deep).is_err());
            assert!(decode::<PullResponse>(&deep).is_err());
            assert!(decode::<PrimeResponse>(&deep).is_err());
            assert!(decode::<RepairRequest>(&deep).is_err());
        }
        // Nested inside an otherwise valid message, where an unknown field is skipped.
        let mut bytes = vec![0xa3, 0x65];
        bytes.extend_from_slice(b"batch");
        bytes.push(0x50);
        bytes.extend_from_slice(&[0; 16]);
        bytes.push(0x67);
        bytes.extend_from_slice(b"records");
        bytes.push(0x80);
        bytes.push(0x61);
        bytes.push(b'x');
        bytes.extend(vec![0x81u8; 100_000]);
        assert!(decode::<PushRequest>(&bytes).is_err());
    }

    #[test]
    fn a_huge_declared_length_is_an_error_without_allocating_it() {
        // A RepairRequest whose message (a byte string, a text string, an array)
        // claims 2^63 entries and brings ten: the decoder reads in small chunks
        // and stops at the end of the input instead of reserving 8 EiB.
        let good = encode(&RepairRequest {
            id: RecordId::from_uuid(Uuid::nil()),
            kind: RecordKind::Visit,
            message: ByteBuf::from(vec![7u8; 3]),
            epoch: 0,
        });
        let at = good.len() - 4;
        assert_eq!(good[at], 0x43, "message is the last field, 3 bytes long");
        for major in [0x40u8, 0x60, 0x80] {
            let mut bytes = good[..at].to_vec();
            bytes.push(major | 0x1b);
            bytes.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0]);
            bytes.extend_from_slice(&[0; 10]);
            assert!(decode::<RepairRequest>(&bytes).is_err());
        }
        // An array of records declaring 2^63 entries.
        let mut bytes = vec![0xa1, 0x67];
        bytes.extend_from_slice(b"records");
        bytes.push(0x9b);
        bytes.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert!(decode::<PullResponse>(&bytes).is_err());
    }

    #[test]
    fn an_unknown_record_kind_is_an_error() {
        let mut changes = sample_push();
        let mut bytes = encode(&changes);
        let at = bytes
            .windows(5)
            .position(|w| w == b"visit")
            .expect("kind on the wire");
        bytes[at..at + 5].copy_from_slice(b"yacht");
        let err = decode::<PushRequest>(&bytes).expect_err("unknown kind");
        assert_eq!(err.what, "PushRequest");
        changes.records.clear();
        assert_eq!(decode::<PushRequest>(&encode(&changes)), Ok(changes));
    }

    #[test]
    fn version_negotiation_picks_the_common_version() {
        assert_eq!(negotiate(None), Ok(1));
        assert_eq!(negotiate(Some("1")), Ok(1));
        assert_eq!(negotiate(Some("99")), Ok(PROTOCOL_VERSION));
        assert!(negotiate(Some("0")).is_err());
        let err = negotiate(Some("banana")).expect_err("not a number");
        assert!(err.to_string().contains("update the app"));
    }
}
