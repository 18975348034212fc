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
//! - the record's rejection-ledger entries (changes of the old history), the
//!   attachments the erasure deleted and, on an erased contact's own record,
//!   the files linked to it alone (a photo not yet uploaded) go;
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
use crate::model::stored::{self, appended, compacted};
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
    /// than the copy held (see the module docs); returns the ids handled
    /// (replaced, or left alone when the page lacks the rewrite), which the
    /// caller must not apply as ordinary changes.
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
        let mut adopted: Vec<(RecordId, Option<AutoCommit>)> = Vec::new();
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
            let storable = stored::all_storable(&rc.changes, &changes);
            let mut am = AutoCommit::new();
            am.apply_changes(changes)
                .map_err(|e| corrupt(e.to_string()))?;
            if am.get_heads().is_empty() || !am.get_missing_deps(&[]).is_empty() {
                // The page holds later changes of the new epoch but not the
                // rewrite they build on (the feed always sends the rewrite
                // first, so only a damaged page does this). The copy is left
                // as it is, nothing of the page merged into it; its edits stay
                // in the outbox, refused as retryable until a full pull (a
                // restore, a new priming) brings the rewrite.
                adopted.push((id, None));
                continue;
            }
            let mut doc = RecordDoc::from_automerge(am).map_err(|e| corrupt(e.to_string()))?;
            // This device's edits carried onto the new epoch, as made.
            let mut own: Vec<Vec<u8>> = Vec::new();
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
                        let mut made: Vec<Change> = rebased.changes_since(&base);
                        queue(&tx, id, &mut made)?;
                        own.extend(made.iter().map(|c| c.raw_bytes().to_vec()));
                        doc = rebased;
                    }
                }
                tx.execute(
                    "DELETE FROM rejections WHERE record_id = ?1",
                    [id.to_string()],
                )?;
            }
            // The attachments the erasure deleted and, on an erased contact's
            // own record, every file linked to it alone: a photo taken
            // offline before the erasure never reaches the server.
            let mut gone: Vec<String> = e.attachments.clone();
            if rc.kind == crate::model::RecordKind::Contact && !e.erased.is_empty() {
                let only: Vec<String> = tx
                    .prepare_cached(
                        "SELECT sha256 FROM attachment_links a WHERE a.record_id = ?1 \
                         AND NOT EXISTS (SELECT 1 FROM attachment_links o \
                         WHERE o.sha256 = a.sha256 AND o.record_id <> ?1)",
                    )?
                    .query_map([id.to_string()], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                gone.extend(only);
            }
            for sha in &gone {
                tx.execute(
                    "DELETE FROM attachment_blobs WHERE id IN \
                     (SELECT blob_id FROM attachments WHERE sha256 = ?1)",
                    [sha],
                )?;
                tx.execute("DELETE FROM attachment_links WHERE sha256 = ?1", [sha])?;
                tx.execute("DELETE FROM attachments WHERE sha256 = ?1", [sha])?;
            }
            let projection = Projection::of(&doc)?;
            // A checked save (`model::stored`); else the new epoch's changes
            // as they came, and this device's own carried over.
            let snapshot = match compacted(&mut doc, RecordDoc::save) {
                Some(saved) => saved,
                None if storable => appended(
                    &[],
                    rc.changes
                        .iter()
                        .map(|c| c.as_slice())
                        .chain(own.iter().map(Vec::as_slice)),
                ),
                None => doc.save(),
            };
            write_record(&tx, &projection, &snapshot)?;
            tx.execute(
                "UPDATE records SET epoch = ?2 WHERE id = ?1",
                params![id.to_string(), i64::from(e.epoch)],
            )?;
            search::write(&tx, &doc)?;
            adopted.push((id, Some(doc.into_automerge())));
        }
        tx.commit()?;
        let ids: Vec<RecordId> = adopted.iter().map(|(id, _)| *id).collect();
        let mut replaced = false;
        for (id, am) in adopted {
            if let Some(mut am) = am {
                am.set_actor(actor.clone());
                inner.forget(id);
                inner.remember(id, am, cache_size);
                replaced = true;
            }
        }
        if replaced {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{OrgId, TeamId, TerritoryId, UserId};
    use crate::model::erase::{ERASED, Scrub, Subject, personal_fields};
    use crate::model::{Contact, RecordMeta};
    use automerge::ActorId;
    use serde_bytes::ByteBuf;

    fn all_changes(doc: &mut RecordDoc) -> Vec<ByteBuf> {
        doc.changes_since(&[])
            .iter()
            .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn a_newer_epoch_replaces_the_copy_and_rebases_the_outbox() {
        let store = DeviceStore::open_in_memory().expect("store");
        let owner = UserId::new();
        let moved_to = RecordId::new();
        let contact = Contact {
            meta: RecordMeta {
                id: RecordId::new(),
                org: OrgId::new(),
                owner,
                team: TeamId::new(),
                territory: TerritoryId::new(),
            },
            account_id: RecordId::new(),
            name: "Hortensia Blackwood".into(),
            role: None,
            phone: Some("+1 555 0100".into()),
            email: None,
            marketing_consent: false,
            consent: None,
        };
        let id = store.create(&contact, DeviceTime::utc(1)).expect("create");
        // The server acknowledged the creation: the outbox is empty.
        let sent = store.outbox_batch(10).expect("outbox");
        let hashes: Vec<ChangeHash> = sent[0]
            .changes
            .iter()
            .filter_map(|c| Change::from_bytes(c.to_vec()).ok().map(|c| c.hash()))
            .collect();
        store.acknowledge(id, &hashes).expect("ack");
        let mut server = store.doc(id).expect("doc");
        // Offline: an erased field and one that stays.
        store
            .update::<Contact>(id, DeviceTime::utc(2), |c| {
                c.phone = Some("+1 555 0199".into());
                c.account_id = moved_to;
            })
            .expect("edit");
        assert_eq!(store.pending_changes().expect("pending"), 1);

        // The server's rewrite, at epoch 1.
        let subject = Subject::Contact(id);
        let fields = personal_fields(&server, &subject).expect("fields");
        let values = server.past_values(&fields).expect("values");
        let mut rewritten = server
            .rewritten(
                &Scrub {
                    fields: fields.clone(),
                    values,
                },
                ActorId::random(),
                DeviceTime::utc(3),
            )
            .expect("rewrite");
        let page = vec![RecordChanges {
            id,
            kind: crate::model::RecordKind::Contact,
            changes: all_changes(&mut rewritten),
        }];
        let epochs = vec![RecordEpoch {
            id,
            epoch: 1,
            erased: fields,
            attachments: Vec::new(),
        }];
        assert_eq!(store.adopt_epochs(&page, &epochs).expect("adopt"), vec![id]);
        assert_eq!(store.epoch(id).expect("epoch"), 1);
        let held: Contact = store.read(id).expect("read");
        assert_eq!(held.name, ERASED);
        assert_eq!(
            held.phone, None,
            "the offline edit of an erased field is dropped"
        );
        assert_eq!(held.account_id, moved_to, "the other edit is kept");
        // The outbox holds the one rebased change, which builds on the rewrite.
        let out = store.outbox_batch(10).expect("outbox");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].changes.len(), 1);
        let mut on_server = rewritten.clone();
        let change = Change::from_bytes(out[0].changes[0].to_vec()).expect("change");
        on_server.apply_changes(vec![change]).expect("applies");
        assert_eq!(
            on_server.read::<Contact>().expect("read").account_id,
            moved_to
        );
        assert!(store.appended_rows(id).expect("rows") == 0);
        // The same page again changes nothing (the epoch is held).
        assert!(
            store
                .adopt_epochs(&page, &epochs)
                .expect("again")
                .is_empty()
        );
    }
}
