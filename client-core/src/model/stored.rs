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
//! ([`compacted`]): Automerge applies some change sequences that it does not
//! write back faithfully (fuzzing found a change in an encoding Automerge
//! reads but never writes, which a save re-encodes under another hash, and a
//! server copy and a change whose save does not load: "max_op is lower than
//! start_op"). A save that does not load back with the document's heads is not
//! stored: the record keeps its appended form, which loads by applying the
//! same changes to the same checked base, as they were applied when they were
//! accepted. So the server checks a record's save once per compaction instead
//! of on every push, and a device checks its own compactions, which hold other
//! devices' changes.

use automerge::AutoCommit;

use super::RecordDoc;
use super::untrusted::{check_bounded, fenced, tail_changes};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Actor, RecordMeta, Role, Visit};
    use crate::{DeviceId, OrgId, RecordId, TeamId, TerritoryId, UserId};

    fn visit() -> RecordDoc {
        let rep = Actor::on_device(UserId::new(), Role::Rep, DeviceId::new());
        let meta = RecordMeta {
            id: RecordId::new(),
            org: OrgId::new(),
            owner: rep.user,
            team: TeamId::new(),
            territory: TerritoryId::new(),
        };
        let v = Visit::planned(
            meta,
            RecordId::new(),
            crate::DeviceTime::utc(0),
            crate::DeviceTime::utc(1),
        );
        RecordDoc::create_stateful(
            &v,
            automerge::ActorId::random(),
            &rep,
            crate::DeviceTime::utc(0),
        )
        .expect("a visit")
    }

    #[test]
    fn a_record_stored_as_its_changes_then_appended_to_loads_with_its_heads() {
        let mut doc = visit();
        let first: Vec<Vec<u8>> = doc
            .changes_since(&[])
            .iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect();
        let stored = appended(&[], first.iter().map(Vec::as_slice));
        assert_eq!(tail(&stored), Some(first.len()));
        let before = doc.heads();
        doc.update::<Visit>(crate::DeviceTime::utc(2), |v| {
            v.notes = "gate code 4711".into()
        })
        .expect("an edit");
        let later: Vec<Vec<u8>> = doc
            .changes_since(&before)
            .iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect();
        let stored = appended(&stored, later.iter().map(Vec::as_slice));
        assert_eq!(tail(&stored), Some(first.len() + later.len()));
        let mut loaded = RecordDoc::load(&stored).expect("loads");
        assert_eq!(loaded.heads(), doc.heads());
        assert_eq!(loaded.to_json().ok(), doc.to_json().ok());

        // Compacted, the tail starts again; a change appended after counts one.
        let compact = compacted(&mut doc, RecordDoc::save_uncompressed).expect("faithful");
        assert_eq!(tail(&compact), Some(0));
        let before = doc.heads();
        doc.update::<Visit>(crate::DeviceTime::utc(3), |v| {
            v.notes = "gate code 4712".into()
        })
        .expect("an edit");
        let last: Vec<Vec<u8>> = doc
            .changes_since(&before)
            .iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect();
        let stored = appended(&compact, last.iter().map(Vec::as_slice));
        assert_eq!(tail(&stored), Some(1));
        assert_eq!(
            RecordDoc::load(&stored).expect("loads").heads(),
            doc.heads()
        );
    }

    #[test]
    fn a_save_that_does_not_load_with_the_heads_is_not_a_compaction() {
        let mut doc = visit();
        let mut other = visit();
        assert_eq!(compacted(&mut doc, |_| other.save()), None);
        assert_eq!(compacted(&mut doc, |_| b"not automerge".to_vec()), None);
        assert_eq!(
            compacted(&mut doc, |_| panic!("a save that fails inside Automerge")),
            None
        );
        assert!(compacted(&mut doc, RecordDoc::save).is_some());
    }

    #[test]
    fn compaction_is_due_past_the_tail_or_the_size() {
        let mut doc = visit();
        let saved = doc.save_uncompressed();
        assert!(!compaction_due(&[], COMPACT_AFTER, 100, 1_000));
        assert!(compaction_due(&[], COMPACT_AFTER + 1, 100, 1_000));
        assert!(!compaction_due(&saved, 1, 10, saved.len() + 10));
        assert!(compaction_due(&saved, 1, 11, saved.len() + 10));
        // Bytes whose chunks do not parse are compacted, not appended to.
        assert_eq!(tail(b"not automerge"), None);
        assert!(compaction_due(b"not automerge", 1, 1, 1_000));
    }
}
