//! The store on the device: SQLite, one file, working offline for days.
//!
//! # What it keeps
//!
//! - **records**: one row per record: a compacted Automerge snapshot plus the
//!   projection columns the app's lists query (kind, status, owner, account,
//!   parent, start time, tombstone), indexed for those lists.
//! - **record_changes**: the changes made or received since the snapshot, appended
//!   one row per action (an action's raw Automerge change bytes). Loading a record
//!   reads its snapshot and appends these. Past [`StoreOptions::compact_after`]
//!   rows the record is compacted: a fresh `save()` replaces the snapshot and the
//!   rows go, in the same transaction.
//! - **outbox**: one row per local Automerge change the server has not
//!   acknowledged (record, change hash, time). The sync client pushes from it and
//!   deletes rows only when the server acknowledged the change; the change bytes
//!   themselves come from the document, so nothing is stored twice.
//! - **rejections**: the ledger of changes the server refused, with its reason.
//! - **sync_meta**: device id, actor id, feed cursor and the like.
//!
//! # Durability
//!
//! Every user action is **one SQLite transaction**: the appended change, its
//! outbox rows and the new projection commit together or not at all, so once a
//! call returns the edit survives the app being killed. The database runs in WAL
//! mode with `synchronous=NORMAL`, which is durable against a killed process
//! (committed pages are in the OS page cache and the WAL); [`Durability::Full`]
//! also survives power loss at the cost of an fsync per action.
//!
//! # Invariants
//!
//! - Nothing with an unacknowledged change is ever evicted: a record leaving the
//!   device's scope is dropped only when it has no outbox rows.
//! - Changes received from the server never enter the outbox.
//! - A document in the in-memory cache is always equal to what is on disk: an
//!   action that fails drops the cached copy so the next access reloads.
//!
//! One writer connection behind a mutex serves all calls; the API is synchronous
//! (apps call it off the main thread). A bounded cache of recently used documents
//! spares an edit from reloading its record.

mod schema;

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use automerge::{ActorId, AutoCommit, Change, ChangeHash};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_bytes::ByteBuf;

pub use schema::CURRENT_VERSION as SCHEMA_VERSION;

use crate::ids::RecordId;
use crate::model::{
    Actor, Conflict, DeviceTime, ModelError, Projection, Record, RecordDoc, RecordKind, Stateful,
    TransitionRequest,
};
use crate::protocol::{RecordChanges, Rejection, Snapshot};

/// Errors of the device store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record model refused the action (validation, transition, ...).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// SQLite failed (disk full, I/O error, ...).
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// No record with that id on this device.
    #[error("no record {0} on this device")]
    NotFound(RecordId),
    /// Stored bytes could not be read back.
    #[error("record {id} is damaged on this device: {detail}")]
    Corrupt {
        /// The record.
        id: RecordId,
        /// What failed.
        detail: String,
    },
    /// The database was written by a newer version of the app.
    #[error(
        "the local database has schema version {found}; this app supports up to {supported}: update the app"
    )]
    TooNew {
        /// Version found.
        found: i64,
        /// Newest supported.
        supported: i64,
    },
    /// A record with this id exists already.
    #[error("record {0} already exists")]
    Exists(RecordId),
}

/// How hard each action is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Survives the app being killed (WAL, `synchronous=NORMAL`).
    #[default]
    AppCrash,
    /// Also survives power loss (`synchronous=FULL`): an fsync per action.
    Full,
}

/// Options of [`DeviceStore::open`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Durability of each action.
    pub durability: Durability,
    /// Appended change rows after which a record is compacted into its snapshot.
    pub compact_after: u32,
    /// Documents kept in memory.
    pub cache_size: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            durability: Durability::AppCrash,
            compact_after: 32,
            cache_size: 256,
        }
    }
}

/// One entry of the rejection ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectionEntry {
    /// Ledger sequence.
    pub seq: i64,
    /// The record.
    pub record_id: RecordId,
    /// Its kind.
    pub kind: RecordKind,
    /// Stable reason code.
    pub code: String,
    /// Message to show.
    pub message: String,
    /// When the server refused it (device clock, ms).
    pub at_ms: i64,
}

/// The state behind the mutex.
struct Inner {
    conn: Connection,
    /// Recently used documents, by record id; `order` is least recent first.
    cache: HashMap<RecordId, AutoCommit>,
    order: VecDeque<RecordId>,
    /// Actor id for local changes, read from sync_meta at open.
    actor: ActorId,
}

/// The device store. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct DeviceStore {
    inner: Mutex<Inner>,
    options: StoreOptions,
}

impl std::fmt::Debug for DeviceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceStore")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

const META_ACTOR: &str = "actor_id";
const META_CURSOR: &str = "cursor";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl DeviceStore {
    /// Opens (creating or upgrading) the store at `path`.
    pub fn open(path: impl AsRef<Path>, options: StoreOptions) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        Self::setup(conn, options)
    }

    /// A store in memory (tests, previews).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::setup(Connection::open_in_memory()?, StoreOptions::default())
    }

    fn setup(mut conn: Connection, options: StoreOptions) -> Result<Self, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let sync = match options.durability {
            Durability::AppCrash => "NORMAL",
            Durability::Full => "FULL",
        };
        conn.pragma_update(None, "synchronous", sync)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        schema::upgrade(&mut conn)?;
        let actor = match meta_get(&conn, META_ACTOR)? {
            Some(hex) => hex.parse::<ActorId>().map_err(|e| StoreError::Corrupt {
                id: RecordId::from_uuid(uuid::Uuid::nil()),
                detail: format!("stored actor id: {e}"),
            })?,
            None => {
                let actor = ActorId::random();
                meta_set(&conn, META_ACTOR, &actor.to_hex_string())?;
                actor
            }
        };
        Ok(Self {
            inner: Mutex::new(Inner {
                conn,
                cache: HashMap::new(),
                order: VecDeque::new(),
                actor,
            }),
            options,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave SQLite half-written (the
        // transaction rolls back), so a poisoned lock is safe to keep using.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The Automerge actor id local changes are made under.
    pub fn actor_id(&self) -> ActorId {
        self.lock().actor.clone()
    }

    /// Sets the actor id the server assigned to this device. Local documents
    /// take it for their next change.
    pub fn set_actor_id(&self, actor: ActorId) -> Result<(), StoreError> {
        let mut inner = self.lock();
        meta_set(&inner.conn, META_ACTOR, &actor.to_hex_string())?;
        for doc in inner.cache.values_mut() {
            doc.set_actor(actor.clone());
        }
        inner.actor = actor;
        Ok(())
    }

    /// Reads a sync metadata value.
    pub fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        meta_get(&self.lock().conn, key)
    }

    /// Writes a sync metadata value.
    pub fn meta_set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        meta_set(&self.lock().conn, key, value)
    }

    // --- Local actions ---------------------------------------------------------

    /// Stores a new record (one transaction) and queues its creation for upload.
    pub fn create<R: Record>(&self, record: &R, at: DeviceTime) -> Result<RecordId, StoreError> {
        let actor = self.actor_id();
        let doc = RecordDoc::create(record, actor, at)?;
        self.insert_new(doc)
    }

    /// Stores a new stateful record, checking its initial status for `actor`.
    pub fn create_stateful<R: Stateful>(
        &self,
        record: &R,
        actor: &Actor,
        at: DeviceTime,
    ) -> Result<RecordId, StoreError> {
        let doc = RecordDoc::create_stateful(record, self.actor_id(), actor, at)?;
        self.insert_new(doc)
    }

    fn insert_new(&self, mut doc: RecordDoc) -> Result<RecordId, StoreError> {
        let id = doc.id();
        let projection = Projection::of(&doc)?;
        let hashes: Vec<ChangeHash> = doc.changes_since(&[]).iter().map(Change::hash).collect();
        let snapshot = doc.save();
        let mut inner = self.lock();
        let tx = inner.conn.transaction()?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM records WHERE id = ?1)",
            [id.to_string()],
            |r| r.get(0),
        )?;
        if exists {
            return Err(StoreError::Exists(id));
        }
        write_record(&tx, &projection, &snapshot)?;
        queue(&tx, id, &hashes)?;
        tx.commit()?;
        inner.remember(id, doc.into_automerge(), self.options.cache_size);
        Ok(id)
    }

    /// Runs one user action on a record: `action` edits the document (through
    /// `RecordDoc::update`, `transition` or a domain function such as
    /// `visit::check_in`); whatever it committed is stored and queued for upload
    /// in one transaction.
    pub fn act<T>(
        &self,
        id: RecordId,
        action: impl FnOnce(&mut RecordDoc) -> Result<T, ModelError>,
    ) -> Result<T, StoreError> {
        let mut inner = self.lock();
        let am = inner.take(id)?;
        let mut doc = RecordDoc::from_automerge(am).map_err(|e| StoreError::Corrupt {
            id,
            detail: e.to_string(),
        })?;
        doc.set_actor(inner.actor.clone());
        let before = doc.heads();
        let out = match action(&mut doc) {
            Ok(out) => out,
            Err(e) => {
                // The document may hold a rolled-back transaction; reload next time.
                return Err(e.into());
            }
        };
        let new: Vec<Change> = doc.changes_since(&before);
        if new.is_empty() {
            inner.remember(id, doc.into_automerge(), self.options.cache_size);
            return Ok(out);
        }
        let projection = Projection::of(&doc)?;
        let hashes: Vec<ChangeHash> = new.iter().map(Change::hash).collect();
        let bytes: Vec<u8> = new
            .iter()
            .flat_map(|c| c.raw_bytes().iter().copied())
            .collect();
        let compact_after = self.options.compact_after;
        let tx = inner.conn.transaction()?;
        append(&tx, &projection, &bytes, compact_after, &mut doc)?;
        queue(&tx, id, &hashes)?;
        tx.commit()?;
        inner.remember(id, doc.into_automerge(), self.options.cache_size);
        Ok(out)
    }

    /// Edits a record's fields (one action).
    pub fn update<R: Record>(
        &self,
        id: RecordId,
        at: DeviceTime,
        edit: impl FnOnce(&mut R),
    ) -> Result<(), StoreError> {
        self.act(id, |doc| doc.update::<R>(at, edit).map(|_| ()))
    }

    /// Moves a record through its state machine (one action).
    pub fn transition<R: Stateful>(
        &self,
        id: RecordId,
        actor: &Actor,
        req: &TransitionRequest<R::Status>,
        edit: impl FnOnce(&mut R),
    ) -> Result<(), StoreError> {
        self.act(id, |doc| doc.transition::<R>(actor, req, edit).map(|_| ()))
    }

    /// Tombstones a record (one action).
    pub fn delete(&self, id: RecordId, at: DeviceTime) -> Result<(), StoreError> {
        self.act(id, |doc| doc.delete(at).map(|_| ()))
    }

    // --- Reading ---------------------------------------------------------------

    /// The record's document (a copy).
    pub fn doc(&self, id: RecordId) -> Result<RecordDoc, StoreError> {
        let mut inner = self.lock();
        let am = inner.take(id)?;
        let copy = am.clone();
        inner.remember(id, am, self.options.cache_size);
        RecordDoc::from_automerge(copy).map_err(|e| StoreError::Corrupt {
            id,
            detail: e.to_string(),
        })
    }

    /// Reads a record as its typed struct.
    pub fn read<R: Record>(&self, id: RecordId) -> Result<R, StoreError> {
        Ok(self.doc(id)?.read::<R>()?)
    }

    /// Reads a stateful record with its effective status.
    pub fn read_stateful<R: Stateful>(&self, id: RecordId) -> Result<R, StoreError> {
        Ok(self.doc(id)?.read_stateful::<R>()?)
    }

    /// Fields of the record holding concurrent values.
    pub fn conflicts(&self, id: RecordId) -> Result<Vec<Conflict>, StoreError> {
        Ok(self.doc(id)?.conflicts()?)
    }

    /// Visits planned (or checked in, for ad-hoc visits) in `[start_ms, end_ms)`,
    /// by start time: "today's visits" with the app's local day bounds.
    pub fn visits_between(
        &self,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Projection>, StoreError> {
        self.list(
            "kind = 'visit' AND deleted = 0 AND start_ms >= ?1 AND start_ms < ?2 ORDER BY start_ms, id",
            params![start_ms, end_ms],
        )
    }

    /// An account's visits, newest first.
    pub fn visits_for_account(&self, account_id: RecordId) -> Result<Vec<Projection>, StoreError> {
        self.list(
            "kind = 'visit' AND deleted = 0 AND account_id = ?1 ORDER BY start_ms DESC, id",
            params![account_id.to_string()],
        )
    }

    /// An account's orders.
    pub fn orders_for_account(&self, account_id: RecordId) -> Result<Vec<Projection>, StoreError> {
        self.list(
            "kind = 'order' AND deleted = 0 AND account_id = ?1 ORDER BY id DESC",
            params![account_id.to_string()],
        )
    }

    /// Records of `kind` in `status` (e.g. my assignments that are dispatched).
    pub fn by_status(&self, kind: RecordKind, status: &str) -> Result<Vec<Projection>, StoreError> {
        self.list(
            "kind = ?1 AND status = ?2 AND deleted = 0 ORDER BY start_ms, id",
            params![kind.as_str(), status],
        )
    }

    /// Every record of `kind`.
    pub fn all_of(&self, kind: RecordKind) -> Result<Vec<Projection>, StoreError> {
        self.list("kind = ?1 ORDER BY id", params![kind.as_str()])
    }

    fn list(
        &self,
        filter: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<Projection>, StoreError> {
        let inner = self.lock();
        let sql = format!(
            "SELECT id, kind, status, owner, team, territory, account_id, parent_id, start_ms, deleted \
             FROM records WHERE {filter}"
        );
        let mut stmt = inner.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(args, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, Option<i64>>(8)?,
                r.get::<_, bool>(9)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, kind, status, owner, team, territory, account, parent, start_ms, deleted) =
                row?;
            let id: RecordId = parse_id(&id)?;
            out.push(Projection {
                id,
                kind: kind
                    .parse()
                    .map_err(|e: crate::model::UnknownName| StoreError::Corrupt {
                        id,
                        detail: e.to_string(),
                    })?,
                status,
                owner: owner.and_then(|s| s.parse().ok()),
                team,
                territory,
                account_id: account.and_then(|s| s.parse().ok()),
                parent_id: parent.and_then(|s| s.parse().ok()),
                start_ms,
                deleted,
            });
        }
        Ok(out)
    }

    /// Local changes not yet acknowledged by the server.
    pub fn pending_changes(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .lock()
            .conn
            .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Device time of the oldest unacknowledged change, if any.
    pub fn oldest_pending_ms(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .lock()
            .conn
            .query_row("SELECT MIN(created_at_ms) FROM outbox", [], |r| r.get(0))?)
    }

    // --- Sync side -------------------------------------------------------------

    /// Up to `max_records` records with unacknowledged changes, oldest first, with
    /// the raw bytes of those changes.
    pub fn outbox_batch(&self, max_records: usize) -> Result<Vec<RecordChanges>, StoreError> {
        let mut inner = self.lock();
        let rows: Vec<(String, String)> = {
            let mut stmt = inner.conn.prepare_cached(
                "SELECT record_id, change_hash FROM outbox WHERE record_id IN \
                 (SELECT record_id FROM outbox GROUP BY record_id ORDER BY MIN(seq) LIMIT ?1) ORDER BY seq",
            )?;
            stmt.query_map([i64::try_from(max_records).unwrap_or(i64::MAX)], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<_, _>>()?
        };
        let mut grouped: Vec<(RecordId, Vec<ChangeHash>)> = Vec::new();
        for (rid, hash) in rows {
            let id = parse_id(&rid)?;
            let hash: ChangeHash = hash.parse().map_err(|_| StoreError::Corrupt {
                id,
                detail: "outbox hash".into(),
            })?;
            match grouped.iter_mut().find(|(g, _)| *g == id) {
                Some((_, hs)) => hs.push(hash),
                None => grouped.push((id, vec![hash])),
            }
        }
        let mut out = Vec::with_capacity(grouped.len());
        for (id, hashes) in grouped {
            let mut am = inner.take(id)?;
            let kind = RecordDoc::from_automerge(am.clone())
                .map(|d| d.kind())
                .map_err(|e| StoreError::Corrupt {
                    id,
                    detail: e.to_string(),
                })?;
            let mut changes = Vec::with_capacity(hashes.len());
            for h in &hashes {
                let change = am
                    .get_change_by_hash(h)
                    .ok_or_else(|| StoreError::Corrupt {
                        id,
                        detail: format!("outbox names change {h} the document does not hold"),
                    })?;
                changes.push(ByteBuf::from(change.raw_bytes().to_vec()));
            }
            inner.remember(id, am, self.options.cache_size);
            out.push(RecordChanges { id, kind, changes });
        }
        Ok(out)
    }

    /// The server committed these changes: drop them from the outbox.
    pub fn acknowledge(&self, id: RecordId, hashes: &[ChangeHash]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let tx = inner.conn.transaction()?;
        {
            let mut stmt =
                tx.prepare_cached("DELETE FROM outbox WHERE record_id = ?1 AND change_hash = ?2")?;
            for h in hashes {
                stmt.execute(params![id.to_string(), h.to_string()])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The server refused the record's changes. In one transaction: every
    /// unacknowledged local change of the record goes to the ledger with the
    /// reason (the app shows it and can re-apply the edit), leaves the outbox, and
    /// the record is reset to the server's copy (or removed, when the server never
    /// accepted it), so later edits no longer build on the refused changes.
    pub fn reject(&self, sent: &RecordChanges, rejection: &Rejection) -> Result<(), StoreError> {
        let id = sent.id;
        let mut inner = self.lock();
        let mut local = inner.take(id)?;
        // Everything still pending for this record, including edits made after the
        // batch was read: they all build on the refused changes.
        let pending: Vec<String> = {
            let mut stmt = inner.conn.prepare_cached(
                "SELECT change_hash FROM outbox WHERE record_id = ?1 ORDER BY seq",
            )?;
            stmt.query_map([id.to_string()], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        let mut refused: Vec<ByteBuf> = Vec::with_capacity(pending.len());
        for hash in &pending {
            if let Ok(h) = hash.parse::<ChangeHash>()
                && let Some(change) = local.get_change_by_hash(&h)
            {
                refused.push(ByteBuf::from(change.raw_bytes().to_vec()));
            }
        }
        let server = match &rejection.server_doc {
            Some(bytes) => {
                let am = AutoCommit::load(bytes).map_err(|e| StoreError::Corrupt {
                    id,
                    detail: format!("server copy: {e}"),
                })?;
                let doc = RecordDoc::from_automerge(am).map_err(|e| StoreError::Corrupt {
                    id,
                    detail: e.to_string(),
                })?;
                Some(doc)
            }
            None => None,
        };
        let tx = inner.conn.transaction()?;
        tx.execute(
            "INSERT INTO rejections (record_id, kind, code, message, changes, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                id.to_string(),
                sent.kind.as_str(),
                rejection.code.as_str(),
                rejection.message,
                crate::protocol::encode(&refused),
                now_ms()
            ],
        )?;
        tx.execute("DELETE FROM outbox WHERE record_id = ?1", [id.to_string()])?;
        let mut reset = None;
        match server {
            Some(mut doc) => {
                let projection = Projection::of(&doc)?;
                write_record(&tx, &projection, &doc.save())?;
                reset = Some(doc.into_automerge());
            }
            None => {
                tx.execute(
                    "DELETE FROM record_changes WHERE record_id = ?1",
                    [id.to_string()],
                )?;
                tx.execute("DELETE FROM records WHERE id = ?1", [id.to_string()])?;
            }
        }
        tx.commit()?;
        if let Some(mut am) = reset {
            am.set_actor(inner.actor.clone());
            inner.remember(id, am, self.options.cache_size);
        }
        Ok(())
    }

    /// The refused changes of a ledger entry (raw Automerge changes), for an app
    /// that shows what was refused or re-applies it.
    pub fn rejected_changes(&self, seq: i64) -> Result<Vec<Vec<u8>>, StoreError> {
        let blob: Vec<u8> = self.lock().conn.query_row(
            "SELECT changes FROM rejections WHERE seq = ?1",
            [seq],
            |r| r.get(0),
        )?;
        let changes: Vec<ByteBuf> =
            crate::protocol::decode(&blob).map_err(|e| StoreError::Corrupt {
                id: RecordId::from_uuid(uuid::Uuid::nil()),
                detail: e.to_string(),
            })?;
        Ok(changes.into_iter().map(ByteBuf::into_vec).collect())
    }

    /// Marks a ledger entry as dealt with (the app re-applied or dismissed it).
    pub fn resolve_rejection(&self, seq: i64) -> Result<(), StoreError> {
        self.lock()
            .conn
            .execute("UPDATE rejections SET resolved = 1 WHERE seq = ?1", [seq])?;
        Ok(())
    }

    /// The rejection ledger, newest first (unresolved entries only).
    pub fn rejections(&self) -> Result<Vec<RejectionEntry>, StoreError> {
        let inner = self.lock();
        let mut stmt = inner.conn.prepare_cached(
            "SELECT seq, record_id, kind, code, message, at_ms FROM rejections WHERE resolved = 0 ORDER BY seq DESC",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, rid, kind, code, message, at_ms) = row?;
            let record_id = parse_id(&rid)?;
            let kind =
                kind.parse()
                    .map_err(|e: crate::model::UnknownName| StoreError::Corrupt {
                        id: record_id,
                        detail: e.to_string(),
                    })?;
            out.push(RejectionEntry {
                seq,
                record_id,
                kind,
                code,
                message,
                at_ms,
            });
        }
        Ok(out)
    }

    /// Applies changes received from the server (not queued for upload), in one
    /// transaction per call. Records unknown to the device are created.
    pub fn apply_remote(&self, records: &[RecordChanges]) -> Result<(), StoreError> {
        self.apply_page(records, &[], None)
    }

    /// Applies a page of the feed, drops records that left the scope (unless
    /// they hold unsynced changes) and stores the cursor, in one transaction.
    pub fn apply_page(
        &self,
        records: &[RecordChanges],
        removed: &[RecordId],
        cursor: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let compact_after = self.options.compact_after;
        let mut touched: Vec<(RecordId, AutoCommit)> = Vec::new();
        let tx = inner.conn.transaction()?;
        for rc in records {
            let id = rc.id;
            let mut am = match load_doc(&tx, id)? {
                Some(am) => am,
                None => AutoCommit::new(),
            };
            let before = am.get_heads();
            let changes: Vec<Change> = rc
                .changes
                .iter()
                .map(|raw| {
                    Change::from_bytes(raw.to_vec()).map_err(|e| StoreError::Corrupt {
                        id,
                        detail: e.to_string(),
                    })
                })
                .collect::<Result<_, _>>()?;
            am.apply_changes(changes).map_err(|e| StoreError::Corrupt {
                id,
                detail: e.to_string(),
            })?;
            let new: Vec<Change> = am.get_changes(&before);
            if new.is_empty() {
                continue;
            }
            let mut doc = RecordDoc::from_automerge(am).map_err(|e| StoreError::Corrupt {
                id,
                detail: e.to_string(),
            })?;
            let projection = Projection::of(&doc)?;
            if before.is_empty() {
                let snapshot = doc.save();
                write_record(&tx, &projection, &snapshot)?;
            } else {
                let bytes: Vec<u8> = new
                    .iter()
                    .flat_map(|c| c.raw_bytes().iter().copied())
                    .collect();
                append(&tx, &projection, &bytes, compact_after, &mut doc)?;
            }
            touched.push((id, doc.into_automerge()));
        }
        for id in removed {
            let pending: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM outbox WHERE record_id = ?1)",
                [id.to_string()],
                |r| r.get(0),
            )?;
            if !pending {
                tx.execute(
                    "DELETE FROM record_changes WHERE record_id = ?1",
                    [id.to_string()],
                )?;
                tx.execute("DELETE FROM records WHERE id = ?1", [id.to_string()])?;
            }
        }
        if let Some(cursor) = cursor {
            meta_set(&tx, META_CURSOR, &cursor.to_string())?;
        }
        tx.commit()?;
        for id in removed {
            inner.forget(*id);
        }
        for (id, am) in touched {
            inner.forget(id);
            inner.remember(id, am, self.options.cache_size);
        }
        Ok(())
    }

    /// Stores snapshots received while priming, merging with any local copy.
    pub fn apply_snapshots(&self, snapshots: &[Snapshot]) -> Result<(), StoreError> {
        let records: Vec<RecordChanges> = snapshots
            .iter()
            .map(|s| {
                let mut am = AutoCommit::load(&s.doc).map_err(|e| StoreError::Corrupt {
                    id: s.id,
                    detail: e.to_string(),
                })?;
                Ok(RecordChanges {
                    id: s.id,
                    kind: s.kind,
                    changes: am
                        .get_changes(&[])
                        .iter()
                        .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
                        .collect(),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        self.apply_page(&records, &[], None)
    }

    /// The feed cursor; `None` before the device was first primed.
    pub fn cursor(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.meta_get(META_CURSOR)?.and_then(|s| s.parse().ok()))
    }

    /// Stores the feed cursor.
    pub fn set_cursor(&self, cursor: u64) -> Result<(), StoreError> {
        self.meta_set(META_CURSOR, &cursor.to_string())
    }

    /// Removes every record, change, outbox row, ledger entry and the cursor
    /// (a revoked device). The actor id is kept.
    pub fn wipe(&self) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let tx = inner.conn.transaction()?;
        tx.execute_batch(
            "DELETE FROM outbox; DELETE FROM record_changes; DELETE FROM records; DELETE FROM rejections; \
             DELETE FROM sync_meta WHERE key <> 'actor_id';",
        )?;
        tx.commit()?;
        inner.cache.clear();
        inner.order.clear();
        drop(inner);
        // Reclaim the pages so the customer data is gone from the file too.
        self.lock().conn.execute_batch("VACUUM")?;
        Ok(())
    }

    /// Appended change rows of a record (for tests and diagnostics).
    pub fn appended_rows(&self, id: RecordId) -> Result<u64, StoreError> {
        let n: i64 = self.lock().conn.query_row(
            "SELECT COUNT(*) FROM record_changes WHERE record_id = ?1",
            [id.to_string()],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Writes the WAL back into the main file (e.g. before measuring its size).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.lock()
            .conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
        Ok(())
    }
}

impl Inner {
    /// Takes a document out of the cache or loads it from disk.
    fn take(&mut self, id: RecordId) -> Result<AutoCommit, StoreError> {
        if let Some(doc) = self.cache.remove(&id) {
            self.order.retain(|x| *x != id);
            return Ok(doc);
        }
        let mut doc = load_doc(&self.conn, id)?.ok_or(StoreError::NotFound(id))?;
        doc.set_actor(self.actor.clone());
        Ok(doc)
    }

    fn remember(&mut self, id: RecordId, doc: AutoCommit, capacity: usize) {
        if capacity == 0 {
            return;
        }
        self.order.retain(|x| *x != id);
        self.cache.insert(id, doc);
        self.order.push_back(id);
        while self.order.len() > capacity {
            if let Some(old) = self.order.pop_front() {
                self.cache.remove(&old);
            }
        }
    }

    fn forget(&mut self, id: RecordId) {
        self.cache.remove(&id);
        self.order.retain(|x| *x != id);
    }
}

fn parse_id(s: &str) -> Result<RecordId, StoreError> {
    s.parse()
        .map_err(|e: crate::ids::InvalidId| StoreError::Corrupt {
            id: RecordId::from_uuid(uuid::Uuid::nil()),
            detail: e.to_string(),
        })
}

fn meta_get(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row("SELECT value FROM sync_meta WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()?)
}

fn meta_set(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO sync_meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}

/// Loads a record's document: the snapshot, then the appended changes in order.
fn load_doc(conn: &Connection, id: RecordId) -> Result<Option<AutoCommit>, StoreError> {
    let snapshot: Option<Vec<u8>> = conn
        .prepare_cached("SELECT snapshot FROM records WHERE id = ?1")?
        .query_row([id.to_string()], |r| r.get(0))
        .optional()?;
    let Some(snapshot) = snapshot else {
        return Ok(None);
    };
    let corrupt = |e: automerge::AutomergeError| StoreError::Corrupt {
        id,
        detail: e.to_string(),
    };
    let mut doc = AutoCommit::load(&snapshot).map_err(corrupt)?;
    let mut stmt =
        conn.prepare_cached("SELECT bytes FROM record_changes WHERE record_id = ?1 ORDER BY seq")?;
    let rows = stmt.query_map([id.to_string()], |r| r.get::<_, Vec<u8>>(0))?;
    for bytes in rows {
        doc.load_incremental(&bytes?).map_err(corrupt)?;
    }
    Ok(Some(doc))
}

/// Inserts or replaces a record row with a full snapshot (and no appended changes).
fn write_record(tx: &Transaction<'_>, p: &Projection, snapshot: &[u8]) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM record_changes WHERE record_id = ?1",
        [p.id.to_string()],
    )?;
    tx.execute(
        "INSERT INTO records (id, kind, snapshot, updated_at_ms) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT(id) DO UPDATE SET kind = excluded.kind, snapshot = excluded.snapshot",
        params![p.id.to_string(), p.kind.as_str(), snapshot, now_ms()],
    )?;
    write_projection(tx, p)
}

/// Rewrites a record's projection columns.
fn write_projection(tx: &Transaction<'_>, p: &Projection) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE records SET status = ?2, owner = ?3, team = ?4, territory = ?5, account_id = ?6, parent_id = ?7, \
         start_ms = ?8, deleted = ?9, updated_at_ms = ?10 WHERE id = ?1",
        params![
            p.id.to_string(),
            p.status,
            p.owner.map(|o| o.to_string()),
            p.team,
            p.territory,
            p.account_id.map(|a| a.to_string()),
            p.parent_id.map(|a| a.to_string()),
            p.start_ms,
            p.deleted,
            now_ms()
        ],
    )?;
    Ok(())
}

/// Appends an action's change bytes and rewrites the projection; compacts the
/// record into a fresh snapshot once it has `compact_after` appended rows.
fn append(
    tx: &Transaction<'_>,
    p: &Projection,
    bytes: &[u8],
    compact_after: u32,
    doc: &mut RecordDoc,
) -> Result<(), StoreError> {
    let id = p.id.to_string();
    let (rows, next): (i64, i64) = tx.query_row(
        "SELECT COUNT(*), COALESCE(MAX(seq), 0) + 1 FROM record_changes WHERE record_id = ?1",
        [&id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if rows + 1 >= i64::from(compact_after) {
        let snapshot = doc.save();
        return write_record(tx, p, &snapshot);
    }
    tx.execute(
        "INSERT INTO record_changes (record_id, seq, bytes) VALUES (?1, ?2, ?3)",
        params![id, next, bytes],
    )?;
    write_projection(tx, p)
}

/// Queues local changes for upload.
fn queue(tx: &Transaction<'_>, id: RecordId, hashes: &[ChangeHash]) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO outbox (record_id, change_hash, created_at_ms) VALUES (?1, ?2, ?3)",
    )?;
    let now = now_ms();
    for h in hashes {
        stmt.execute(params![id.to_string(), h.to_string(), now])?;
    }
    Ok(())
}
