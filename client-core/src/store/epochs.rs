//! Records whose history an erasure rewrote (record *epochs*, see
//! `docs/adr/0005-erasure-by-rewrite.md` and `docs/protocol.md`).
//!
//! The server erases a person's data by copying each record that holds it
//! into a new document of one change and raising the record's epoch. When
//! the feed (or a priming) brings a record at a newer epoch than the copy
//! held here, [`DeviceStore::adopt_epochs`] replaces the copy, in one
//! transaction:
//!
//! - the new document is made from the page's changes of the record alone
//!   (they start with the rewrite), never merged with the old history;
//! - the device's unsynced edits of the record (its outbox) are carried onto
//!   it as one new change (`RecordDoc::rebase_onto`), except edits of the
//!   erased fields, which are dropped; the outbox rows are replaced by that
//!   change's;
//! - the record's rejection-ledger entries (changes of the old history) and
//!   the attachments the erasure deleted go;
//! - the snapshot is rewritten and the appended rows deleted.
//!
//! The store runs with `secure_delete`, so the freed pages are zeroed, and
//! the WAL is checkpointed and truncated after a replacement: none of the
//! erased bytes stays in the file.

use std::collections::BTreeSet;

use automerge::{AutoCommit, Change, ChangeHash};
use rusqlite::{OptionalExtension, params};

use super::{DeviceStore, StoreError, load_doc, queue, search, write_record};
use crate::ids::RecordId;
use crate::model::{DeviceTime, Projection, RecordDoc};
use crate::protocol::{RecordChanges, RecordEpoch};

impl DeviceStore {
    /// The epochs above 0 of the records of `ids` held here.
    pub fn epochs(&self, ids: &[RecordId]) -> Result<Vec<RecordEpoch>, StoreError> {
        let inner = self.lock();
        let mut stmt = inner
            .conn
            .prepare_cached("SELECT epoch FROM records WHERE id = ?1 AND epoch > 0")?;
        let mut out = Vec::new();
        for id in ids {
            let epoch: Option<i64> = stmt.query_row([id.to_string()], |r| r.get(0)).optional()?;
            if let Some(epoch) = epoch {
                out.push(RecordEpoch {
                    id: *id,
                    epoch: u32::try_from(epoch).unwrap_or(u32::MAX),
                    erased: Vec::new(),
                    attachments: Vec::new(),
                });
            }
        }
        Ok(out)
    }

    /// The epoch of the copy of `id` held here (0 when none, or not held).
    pub fn epoch(&self, id: RecordId) -> Result<u32, StoreError> {
        Ok(crate::protocol::epoch_of(&self.epochs(&[id])?, id))
    }

    /// Replaces every record of `records` whose epoch in `epochs` is newer
    /// than the copy held (see the module docs); returns the ids replaced,
    /// which the caller must not apply again as ordinary changes.
    pub fn adopt_epochs(
        &self,
        records: &[RecordChanges],
        epochs: &[RecordEpoch],
    ) -> Result<Vec<RecordId>, StoreError> {
        if epochs.is_empty() {
            return Ok(Vec::new());
        }
        let mut inner = self.lock();
        let actor = inner.actor.clone();
        let cache_size = self.options.cache_size;
        let mut adopted: Vec<(RecordId, AutoCommit)> = Vec::new();
        let tx = inner.conn.transaction()?;
        for e in epochs {
            let Some(rc) = records.iter().find(|r| r.id == e.id) else {
                continue;
            };
            let id = rc.id;
            let held: Option<i64> = tx
                .query_row(
                    "SELECT epoch FROM records WHERE id = ?1",
                    [id.to_string()],
                    |r| r.get(0),
                )
                .optional()?;
            if held.is_some_and(|h| h >= i64::from(e.epoch)) {
                continue;
            }
            let corrupt = |detail: String| StoreError::Corrupt { id, detail };
            let changes: Vec<Change> = rc
                .changes
                .iter()
                .map(|raw| Change::from_bytes(raw.to_vec()).map_err(|e| corrupt(e.to_string())))
                .collect::<Result<_, _>>()?;
            let mut am = AutoCommit::new();
            am.apply_changes(changes)
                .map_err(|e| corrupt(e.to_string()))?;
            if am.get_heads().is_empty() || !am.get_missing_deps(&[]).is_empty() {
                // Not the start of the new epoch: nothing to replace with.
                return Err(corrupt(format!(
                    "epoch {} of the record came without its rewrite",
                    e.epoch
                )));
            }
            let mut doc = RecordDoc::from_automerge(am).map_err(|e| corrupt(e.to_string()))?;
            if doc.id() != id || doc.kind() != rc.kind {
                return Err(corrupt(format!(
                    "the new epoch holds {} {}",
                    doc.kind(),
                    doc.id()
                )));
            }
            if held.is_some() {
                let pending: Vec<String> = tx
                    .prepare_cached(
                        "SELECT change_hash FROM outbox WHERE record_id = ?1 ORDER BY seq",
                    )?
                    .query_map([id.to_string()], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                tx.execute("DELETE FROM outbox WHERE record_id = ?1", [id.to_string()])?;
                if !pending.is_empty()
                    && let Some(old) = load_doc(&tx, id)?
                {
                    let pending: BTreeSet<ChangeHash> =
                        pending.iter().filter_map(|h| h.parse().ok()).collect();
                    let mut old =
                        RecordDoc::from_automerge(old).map_err(|e| corrupt(e.to_string()))?;
                    old.set_actor(actor.clone());
                    let synced = synced_heads(&mut old, &pending);
                    let (mut rebased, moved) = old
                        .rebase_onto(&synced, &doc, &e.erased, DeviceTime::now_utc())
                        .map_err(StoreError::from)?;
                    if moved {
                        let base = doc.heads();
                        let made: Vec<ChangeHash> = rebased
                            .changes_since(&base)
                            .iter()
                            .map(Change::hash)
                            .collect();
                        queue(&tx, id, &made)?;
                        doc = rebased;
                    }
                }
                tx.execute(
                    "DELETE FROM rejections WHERE record_id = ?1",
                    [id.to_string()],
                )?;
            }
            for sha in &e.attachments {
                tx.execute(
                    "DELETE FROM attachment_blobs WHERE id IN \
                     (SELECT blob_id FROM attachments WHERE sha256 = ?1)",
                    [sha],
                )?;
                tx.execute("DELETE FROM attachment_links WHERE sha256 = ?1", [sha])?;
                tx.execute("DELETE FROM attachments WHERE sha256 = ?1", [sha])?;
            }
            let projection = Projection::of(&doc)?;
            write_record(&tx, &projection, &doc.save())?;
            tx.execute(
                "UPDATE records SET epoch = ?2 WHERE id = ?1",
                params![id.to_string(), i64::from(e.epoch)],
            )?;
            search::write(&tx, &doc)?;
            adopted.push((id, doc.into_automerge()));
        }
        tx.commit()?;
        let ids: Vec<RecordId> = adopted.iter().map(|(id, _)| *id).collect();
        for (id, mut am) in adopted {
            am.set_actor(actor.clone());
            inner.forget(id);
            inner.remember(id, am, cache_size);
        }
        if !ids.is_empty() {
            // The old pages are zeroed (`secure_delete`); the WAL, which
            // holds copies of them, is written back and emptied.
            inner
                .conn
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
        }
        Ok(ids)
    }
}

/// The heads of `doc` without the changes in `pending` (the device's
/// unsynced ones): the state the server last acknowledged.
fn synced_heads(doc: &mut RecordDoc, pending: &BTreeSet<ChangeHash>) -> Vec<ChangeHash> {
    let changes = doc.changes_since(&[]);
    let kept: Vec<&Change> = changes
        .iter()
        .filter(|c| !pending.contains(&c.hash()))
        .collect();
    let depended: BTreeSet<ChangeHash> =
        kept.iter().flat_map(|c| c.deps().iter().copied()).collect();
    kept.iter()
        .map(|c| c.hash())
        .filter(|h| !depended.contains(h))
        .collect()
}
