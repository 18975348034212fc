//! The forms a record's document is stored in, on the server and on a device.
//!
//! A stored record is an Automerge file of one of three shapes, which
//! Automerge loads alike: a document chunk (a compacted save), change chunks
//! (the changes as their author encoded them: a record pushed once), or a
//! document chunk followed by change chunks (a compacted record with the
//! changes accepted since appended). Appending encodes nothing; a record is
//! compacted once [`COMPACT_AFTER`] changes are appended, or when appending
//! would take it past the caller's size for an appended form.
//!
//! Compaction is the one step that encodes changes again, and it is checked
//! ([`compacted`]): Automerge has applied changes that it did not write back
//! faithfully (fuzzing found two, merged records whose save did not load
//! back; both were changes whose header checksum was wrong, which reading a
//! pushed change now refuses: [`storable`]), and the check guards against
//! any it has not found. A save that does not load back with the document's
//! heads is not stored: the record keeps its appended form, which loads by applying the
//! same changes to the same checked base, as they were applied when they were
//! accepted. So the server checks a record's save once per compaction instead
//! of on every push, and a device checks its own compactions, which hold other
//! devices' changes.

use automerge::AutoCommit;

use super::RecordDoc;
use super::untrusted::{check_bounded, checksum_matches, fenced, tail_changes};

/// Changes appended to a stored record before the server compacts it (the
/// device's store has its own setting, `compact_after`, of the same default).
pub const COMPACT_AFTER: usize = 16;

/// How many changes `stored` holds after its last compaction (all of them for
/// a record never compacted; 0 for no bytes); `None` when its chunk headers do
/// not parse.
pub fn tail(stored: &[u8]) -> Option<usize> {
    tail_changes(stored)
}

/// Whether `stored` (empty for a new record) is compacted rather than take
/// `count` more changes of `bytes` bytes in all: when its tail would pass
/// [`COMPACT_AFTER`], or it would pass `max_bytes`.
pub fn compaction_due(stored: &[u8], count: usize, bytes: usize, max_bytes: usize) -> bool {
    match tail(stored) {
        Some(tail) => tail + count > COMPACT_AFTER || stored.len() + bytes > max_bytes,
        None => true,
    }
}

/// Whether `raw`, the bytes `change` was read from, may be stored as they
/// came: their header's checksum is the change's. The server refuses a pushed
/// change whose checksum is wrong (Automerge applies it, but refuses to load a
/// file that holds it); a device meets one only from a server that predates
/// that check, and then stores a save instead.
pub fn storable(raw: &[u8], change: &automerge::Change) -> bool {
    checksum_matches(raw, change)
}

/// [`storable`] of every change of a pull, each beside the bytes it was read
/// from.
pub fn all_storable<R: AsRef<[u8]>>(raws: &[R], changes: &[automerge::Change]) -> bool {
    raws.iter()
        .zip(changes)
        .all(|(raw, change)| storable(raw.as_ref(), change))
}

/// `stored` with `changes` (raw change bytes) appended.
pub fn appended<'a>(stored: &[u8], changes: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = stored.to_vec();
    for change in changes {
        out.extend_from_slice(change);
    }
    out
}

/// `save` of `doc` when it loads back with the document's heads; `None` when
/// Automerge did not write it faithfully (see the module's notes), and the
/// caller keeps the appended form.
pub fn compacted(
    doc: &mut RecordDoc,
    save: impl FnOnce(&mut RecordDoc) -> Vec<u8>,
) -> Option<Vec<u8>> {
    let saved = fenced("saving a record to compact it", || save(doc)).ok()?;
    check_bounded(&saved).ok()?;
    let mut loaded = fenced("loading a compacted record", || AutoCommit::load(&saved))
        .ok()?
        .ok()?;
    (loaded.get_heads() == doc.heads()).then_some(saved)
}
