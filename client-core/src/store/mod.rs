//! The store on the device: SQLite, one file, working offline for days.
//!
//! # What it keeps
//!
//! - **records**: one row per record: a compacted Automerge snapshot plus the
//!   projection columns the app's lists query (kind, status, owner, team,
//!   territory, account, parent, start time, tombstone), indexed for those lists.
//!   The columns come from [`Projection::of`], the same pure function the server
//!   uses, so they are computed from the document for every kind alike.
//! - **record_changes**: the changes made or received since the snapshot, appended
//!   one row per action (an action's raw Automerge change bytes). Loading a record
//!   reads its snapshot and appends these. Past [`StoreOptions::compact_after`]
//!   rows the record is compacted: a fresh `save()` replaces the snapshot and the
//!   rows go, in the same transaction.
//! - **outbox**: one row per local Automerge change the server has not
//!   acknowledged (record, change hash, time, the change's bytes; unique per
//!   record and hash). The sync client pushes from it and deletes rows only
//!   when the server acknowledged the change. The bytes are there because
//!   Automerge 0.12 keeps none: it re-encodes a change from the document's
//!   operations, which was most of a device's CPU in a push; a large change
//!   (a record's creation) is kept deflated, so that a device offline for
//!   days holds its queue in little room. Rows queued before schema v9 have
//!   no bytes and are rebuilt from the document.
//! - **rejections**: the ledger of changes the server refused, with its reason.
//! - **attachments**: photos, signatures and documents by SHA-256, their bytes
//!   (streamed in and out by chunk, never whole in memory), the records each is
//!   attached to, whether they were uploaded, and the ledger of those the server
//!   refused for good (`attachments.rs`).
//! - **sync_meta**: device id, Automerge actor id, feed cursor and the like.
//!
//! A record whose history an erasure rewrote on the server (a newer *epoch*)
//! is replaced, with the device's unsynced edits rebased onto it
//! (`epochs.rs`); the store runs with `secure_delete` so removed data leaves
//! no copy in the file's free pages.
//!
//! The schema version is `PRAGMA user_version`; the upgrade steps and what each
//! version added are in `schema.rs`.
//!
//! # How an action runs
//!
//! [`DeviceStore::act`] is the one door for local edits ([`DeviceStore::update`],
//! [`DeviceStore::transition`] and [`DeviceStore::delete`] go through it):
//!
//! 1. take the document from the cache (or load snapshot + appended rows),
//! 2. run the action on it: it makes at most a few Automerge commits, usually one,
//! 3. in **one SQLite transaction**: append the new changes' bytes (or compact),
//!    insert one outbox row per new change, rewrite the projection columns,
//! 4. commit, then put the document back in the cache.
//!
//! If anything fails before the commit, the transaction rolls back and the
//! document is dropped from memory, so the next call reloads what is on disk.
//! Remote changes ([`DeviceStore::apply_page`]) take the same path minus the
//! outbox: what the server sent is never sent back.
//!
//! # Durability
//!
//! Once a call returns, its edit survives the app being killed. The database runs
//! in WAL mode with `synchronous=NORMAL`: a commit appends to the WAL file with a
//! `write()` but no fsync, so the committed pages sit in the OS page cache, which a
//! killed process does not take down with it; SQLite replays the WAL at the next
//! open. `tests/crash.rs` SIGKILLs a writer at random points to check it. Power
//! loss or a kernel crash can lose the last few actions (never corrupt the file);
//! [`Durability::Full`] (`synchronous=FULL`) closes that gap at the cost of an
//! fsync per action. In `NORMAL` the only fsyncs are WAL checkpoints, which
//! SQLite runs inside the action that fills the WAL to 1,000 pages, so the pages
//! an action writes decide how often an edit pays one; see
//! [`DeviceStore::checkpoint`] and `docs/benchmarks.md`.
//!
//! # Many small commits (automerge issue 1387)
//!
//! One user action is one Automerge change, by design: the outbox, the
//! rejection ledger and the server's audit all work per action. Automerge is slow
//! to *load* a document made of many small incremental chunks (1,000 appended
//! changes load about 44x slower than the compacted save of the same document;
//! `docs/benchmarks.md`). The store bounds that cost two ways:
//!
//! - **compaction**: no record ever has `compact_after` or more appended rows
//!   (16 by default, chosen from the sweep in `benches/store.rs`): the action that
//!   would reach it writes a fresh snapshot instead;
//! - **the document cache**: the `cache_size` most recently used documents stay
//!   in memory, so a burst of edits on one record does not reload it at all.
//!
//! # Invariants
//!
//! - **Nothing unsynced is ever evicted.** A record leaving the device's scope is
//!   dropped only when it has no outbox rows; the document cache only ever holds
//!   copies of what is on disk, so evicting from it loses nothing.
//! - Changes received from the server never enter the outbox.
//! - Every outbox row names a change its record's document holds.
//! - A document in the in-memory cache is always equal to what is on disk: an
//!   action that fails drops the cached copy so the next access reloads.
//!
//! One writer connection behind a mutex serves all calls; the API is synchronous
//! (apps call it off the main thread). Lists read only the projection columns and
//! never open documents.
//!
//! # Encryption at rest
//!
//! With [`StoreOptions::encryption_key`] the whole file (and its WAL) is
//! encrypted by SQLCipher; `key.rs` says how the key is applied and what a wrong
//! key does. A plaintext store is encrypted once with
//! [`DeviceStore::encrypt_in_place`]; [`DeviceStore::rekey`] changes the key.
//!
//! # Errors
//!
//! [`StoreError`] keeps the model's refusal ([`StoreError::Model`]) apart from
//! storage failures; [`StoreError::retryable`] says whether trying again later
//! can help (a busy database or a full disk, not a refused transition).

mod attachments;
mod epochs;
mod key;
mod schema;
mod search;
mod signatures;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use automerge::{ActorId, AutoCommit, Change, ChangeHash};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_bytes::ByteBuf;

pub use attachments::{
    AttachmentInfo, AttachmentKind, COPY_CHUNK, Gps, MAX_ATTACHMENT, RefusedAttachment, sha256_hex,
};
pub use key::StoreKey;
pub use schema::CURRENT_VERSION as SCHEMA_VERSION;
pub use search::fold as fold_for_search;

use crate::ids::RecordId;
use crate::model::stored::{self, appended, compacted};
use crate::model::{
    Actor, Conflict, DeviceTime, MAX_CHANGE_OPS, ModelError, Projection, Record, RecordDoc,
    RecordKind, Role, Stateful, TransitionRequest, ValidationError, keeps_signature,
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
    /// The key given does not decrypt the file. Nothing was written: the same
    /// file opens with the right key.
    #[error("the device store could not be decrypted: wrong key or not a Fieldsync store")]
    WrongKey,
    /// The file is encrypted (or is not a database at all) and no key was given.
    #[error("the device store is encrypted (or is not a Fieldsync store): open it with its key")]
    KeyRequired,
    /// A key was given but the file is a plaintext store.
    #[error(
        "the device store is not encrypted: open it without a key, or encrypt it first with DeviceStore::encrypt_in_place"
    )]
    NotEncrypted,
    /// An encryption key of the wrong length.
    #[error("an encryption key must be {} bytes, not {found}", StoreKey::LEN)]
    KeyLength {
        /// Bytes given.
        found: usize,
    },
    /// An attachment could not be kept as given (empty, too large, a file
    /// that changed while it was read, a position off the globe). Nothing was kept.
    #[error("attachment not kept: {0}")]
    AttachmentInput(String),
    /// The record is held for reference only (an earlier visit or job at one
    /// of the user's accounts, made by someone else or before the user's
    /// window): it can be read, not changed, on this device.
    #[error(
        "record {0} is shown for reference only (an earlier visit or job at this account): it cannot be changed here"
    )]
    ReadOnly(RecordId),
    /// No open entry with that sequence number in the rejection ledger.
    #[error("no open rejection {0} on this device")]
    NoRejection(i64),
    /// No attachment with that SHA-256 on this device.
    #[error("no attachment {0} on this device")]
    AttachmentNotFound(String),
    /// A file operation outside SQLite failed (encrypting a store in place).
    #[error("file: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// Whether the same call can succeed later with no change by the user or the
    /// app: SQLite was busy or locked, the disk was full (space may be freed) or an
    /// I/O call failed. A refused action, a missing record or damaged bytes fail
    /// the same way every time, so retrying them only hides the problem.
    pub fn retryable(&self) -> bool {
        use rusqlite::ErrorCode;
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
                    | ErrorCode::DiskFull
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::OutOfMemory
            ),
            _ => false,
        }
    }

    /// Whether the device ran out of storage (the disk, or the store's
    /// [`StoreOptions::max_size_bytes`]): the action changed nothing and
    /// succeeds once space is freed. Apps say so to the user rather than
    /// reporting a fault.
    pub fn is_storage_full(&self) -> bool {
        matches!(
            self,
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DiskFull
        )
    }
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
    ///
    /// Default 16. Loading a record costs its snapshot plus one incremental load
    /// per appended row, so the threshold bounds the cost of opening a record that
    /// is not cached; compacting costs one full `save()`. In the sweep of
    /// `benches/store.rs` the threshold made no measurable difference to cached
    /// edits, while an uncached edit's p50 grew steadily with it (about 0.8 ms at
    /// 8, 1.0 ms at 16, 1.2 ms at 32, 2.6 ms at 128).
    pub compact_after: u32,
    /// Documents kept in memory (least recently used goes first). Only copies of
    /// what is on disk are cached, so eviction never loses an edit. The cache
    /// saves reloading a record with a history: about 3x on such an edit in the
    /// benchmark, nothing measurable on a freshly created one.
    pub cache_size: usize,
    /// Encrypts the whole file (and its WAL) with this key (SQLCipher). `None`
    /// (the default) keeps a plaintext file. The store drops (and zeroes) its
    /// copy once the file is open.
    pub encryption_key: Option<StoreKey>,
    /// Largest the store's file may grow to, in bytes. Past it every action
    /// fails as a full disk does ([`StoreError::is_storage_full`], retryable)
    /// and changes nothing; reading and syncing what is stored go on. `None`
    /// (the default): the disk's own limit. An app may keep the store from
    /// eating the room its photos and the system need; the fault tests use it
    /// to fill the "disk" on purpose.
    pub max_size_bytes: Option<u64>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            durability: Durability::AppCrash,
            compact_after: 16,
            cache_size: 256,
            encryption_key: None,
            max_size_bytes: None,
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
    /// The signed-in user's role, for the write rules (`model::rules`); `None`
    /// before the first login.
    role: Option<Role>,
    /// Records held for reference only (see [`DeviceStore::set_reference_records`]),
    /// read from sync_meta at open.
    reference: BTreeSet<RecordId>,
}

/// The device store. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct DeviceStore {
    inner: Mutex<Inner>,
    /// The options it was opened with, minus the key (dropped after open).
    options: StoreOptions,
    /// Whether the file is encrypted (it was opened with a key).
    encrypted: bool,
}

impl std::fmt::Debug for DeviceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceStore")
            .field("options", &self.options)
            .field("encrypted", &self.encrypted)
            .finish_non_exhaustive()
    }
}

/// How many prepared statements a store's connection keeps: all of the
/// store's (some thirty), where rusqlite's default of 16 made a push parse
/// its statements again between edits'.
const STATEMENT_CACHE: usize = 64;
const META_ACTOR: &str = "actor_id";
const META_CURSOR: &str = "cursor";
const META_ROLE: &str = "role";
/// The reference records, ids separated by spaces.
const META_REFERENCE: &str = "reference_records";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl DeviceStore {
    /// Opens (creating or upgrading) the store at `path`.
    ///
    /// With [`StoreOptions::encryption_key`] the file is encrypted (a new file is
    /// created encrypted). A key that does not decrypt the file gives
    /// [`StoreError::WrongKey`], an encrypted file opened without a key
    /// [`StoreError::KeyRequired`], a plaintext file opened with a key
    /// [`StoreError::NotEncrypted`]; none of them changes the file.
    pub fn open(path: impl AsRef<Path>, mut options: StoreOptions) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let conn = Connection::open(path)?;
        // The key must be the connection's first statement, before WAL and the
        // schema; it is dropped (zeroed) as soon as SQLCipher has it.
        let key = options.encryption_key.take();
        if let Some(key) = &key {
            key::apply(&conn, key)?;
        }
        key::verify(&conn, Some(path), key.is_some())?;
        Self::setup(conn, options, key.is_some())
    }

    /// A store in memory (tests, previews).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::setup(
            Connection::open_in_memory()?,
            StoreOptions::default(),
            false,
        )
    }

    /// Encrypts the plaintext store at `path` with `key`, in place: its content
    /// is exported into a new encrypted file (`sqlcipher_export`) next to it,
    /// which then replaces it with an atomic rename. An app that starts
    /// encrypting an existing install calls this once, before opening the store
    /// with the key. No store may be open on `path` meanwhile.
    ///
    /// Interrupted, it leaves the plaintext store as it was (and a stray
    /// `<path>.encrypting` that the next call removes). The old plaintext pages
    /// are unlinked, not wiped: flash storage may keep them until reused.
    pub fn encrypt_in_place(path: impl AsRef<Path>, key: &StoreKey) -> Result<(), StoreError> {
        let path = path.as_ref();
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".encrypting");
        let tmp = std::path::PathBuf::from(tmp);
        let conn = Connection::open(path)?;
        key::verify(&conn, Some(path), false)?;
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        let tmp_name = tmp.to_str().ok_or_else(|| {
            StoreError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the store's path is not valid UTF-8",
            ))
        })?;
        let attach = zeroize::Zeroizing::new(format!(
            "ATTACH DATABASE ?1 AS encrypted {}",
            key.attach_clause().as_str()
        ));
        conn.execute(&attach, [tmp_name])?;
        conn.query_row("SELECT sqlcipher_export('encrypted')", [], |_| Ok(()))?;
        // The schema version lives in the header, which the export does not copy.
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        conn.pragma_update(Some("encrypted"), "user_version", version)?;
        conn.execute_batch("DETACH DATABASE encrypted")?;
        // Closing the last connection checkpoints the WAL into the plaintext
        // file and deletes it. A WAL still there means another connection has
        // the store open; renaming under it would lose its writes.
        conn.close().map_err(|(_, e)| e)?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        if Path::new(&wal).exists() {
            let _ = std::fs::remove_file(&tmp);
            return Err(StoreError::Io(std::io::Error::new(
                std::io::ErrorKind::ResourceBusy,
                "the store is open elsewhere: close it before encrypting it",
            )));
        }
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    /// Changes the key of an encrypted store: every page is rewritten under
    /// `new_key`, in one transaction. The store stays open and usable; the next
    /// open needs `new_key`. A plaintext store gives [`StoreError::NotEncrypted`]
    /// (use [`DeviceStore::encrypt_in_place`]).
    pub fn rekey(&self, new_key: &StoreKey) -> Result<(), StoreError> {
        if !self.encrypted {
            return Err(StoreError::NotEncrypted);
        }
        key::rekey(&self.lock().conn, new_key)
    }

    /// Whether the file is encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    fn setup(
        mut conn: Connection,
        options: StoreOptions,
        encrypted: bool,
    ) -> Result<Self, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let sync = match options.durability {
            Durability::AppCrash => "NORMAL",
            Durability::Full => "FULL",
        };
        conn.pragma_update(None, "synchronous", sync)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Deleted content is overwritten with zeros, not left in free pages:
        // what an erasure or a wipe removes is gone from the file itself.
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        if let Some(max) = options.max_size_bytes {
            // SQLite never shrinks below the pages in use: a cap under the
            // current size only stops growth.
            let page: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
            let pages = max / u64::try_from(page.max(1)).unwrap_or(4096);
            conn.pragma_update(
                None,
                "max_page_count",
                i64::try_from(pages.max(1)).unwrap_or(i64::MAX),
            )?;
        }
        schema::upgrade(&mut conn)?;
        if meta_get(&conn, schema::REPROJECT_KEY)?.is_some() {
            reproject_all(&mut conn)?;
        }
        if meta_get(&conn, schema::REINDEX_SEARCH_KEY)?.is_some() {
            reindex_search(&mut conn)?;
        }
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
        let role = meta_get(&conn, META_ROLE)?.and_then(|r| r.parse::<Role>().ok());
        let reference = meta_get(&conn, META_REFERENCE)?
            .unwrap_or_default()
            .split_whitespace()
            .map(parse_id)
            .collect::<Result<BTreeSet<_>, _>>()?;
        Ok(Self {
            inner: Mutex::new(Inner {
                role,
                reference,
                conn,
                cache: HashMap::new(),
                order: VecDeque::new(),
                actor,
            }),
            options,
            encrypted,
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

    /// Sets the signed-in user's role: local edits are checked against the
    /// write rules for it (`model::rules`), as the server will check them.
    pub fn set_role(&self, role: Role) -> Result<(), StoreError> {
        let mut inner = self.lock();
        meta_set(&inner.conn, META_ROLE, role.as_str())?;
        inner.role = Some(role);
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

    /// Records the server sends for reference: the last few finished visits
    /// and jobs at the accounts the user works at, beyond the user's own scope
    /// (a colleague's visit last month). They are read like any record and
    /// refused to every local action ([`StoreError::ReadOnly`]); the server
    /// refuses writes to them too. Replaces the set after each pull page.
    pub fn set_reference_records(&self, ids: &[RecordId]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let text = ids
            .iter()
            .map(RecordId::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        meta_set(&inner.conn, META_REFERENCE, &text)?;
        inner.reference = ids.iter().copied().collect();
        Ok(())
    }

    /// The reference records this device holds (named by the last pull and
    /// still stored), in id order.
    pub fn reference_records(&self) -> Result<Vec<RecordId>, StoreError> {
        let inner = self.lock();
        let mut held = Vec::with_capacity(inner.reference.len());
        let mut exists = inner
            .conn
            .prepare_cached("SELECT EXISTS(SELECT 1 FROM records WHERE id = ?1)")?;
        for id in &inner.reference {
            if exists.query_row([id.to_string()], |r| r.get::<_, bool>(0))? {
                held.push(*id);
            }
        }
        Ok(held)
    }

    /// Whether record `id` is held for reference only (read-only here).
    pub fn is_reference(&self, id: RecordId) -> bool {
        self.lock().reference.contains(&id)
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
        let mut changes = doc.changes_since(&[]);
        within_merge_limits(&changes)?;
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
        search::write(&tx, &doc)?;
        queue(&tx, id, &mut changes)?;
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
        if inner.reference.contains(&id) {
            return Err(StoreError::ReadOnly(id));
        }
        let am = inner.take(id)?;
        let mut doc = RecordDoc::from_automerge(am).map_err(|e| StoreError::Corrupt {
            id,
            detail: e.to_string(),
        })?;
        doc.set_actor(inner.actor.clone());
        let before = doc.heads();
        // What a customer signed stays as signed for a field user (the server
        // refuses it too): the copy to compare with, for signed kinds only.
        let field_role = inner.role.filter(|r| !r.is_back_office());
        let unsigned_copy = match field_role {
            Some(_) if matches!(doc.kind(), RecordKind::Order | RecordKind::Assignment) => {
                Some(doc.clone())
            }
            _ => None,
        };
        let out = match action(&mut doc) {
            Ok(out) => out,
            Err(e) => {
                // The document may hold a rolled-back transaction; reload next time.
                return Err(e.into());
            }
        };
        if let (Some(role), Some(was)) = (field_role, &unsigned_copy)
            && let Err(locked) = keeps_signature(was, &doc, role)
        {
            // Dropped from the cache: the next action reloads the stored copy.
            return Err(ModelError::from(locked).into());
        }
        let mut new: Vec<Change> = doc.changes_since(&before);
        if new.is_empty() {
            inner.remember(id, doc.into_automerge(), self.options.cache_size);
            return Ok(out);
        }
        // Dropped from the cache on refusal: the next action reloads the stored copy.
        within_merge_limits(&new)?;
        let projection = Projection::of(&doc)?;
        let bytes: Vec<u8> = new
            .iter()
            .flat_map(|c| c.raw_bytes().iter().copied())
            .collect();
        let compact_after = self.options.compact_after;
        let tx = inner.conn.transaction()?;
        append(&tx, &projection, &bytes, compact_after, &mut doc)?;
        search::write(&tx, &doc)?;
        queue(&tx, id, &mut new)?;
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
        let role = self.lock().role;
        self.act(id, |doc| doc.update_by::<R>(role, at, edit).map(|_| ()))
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

    /// Accounts whose name or customer code starts with `prefix` (folded:
    /// case and accents do not matter), by name, at most `limit`. An empty
    /// prefix lists every account by name.
    pub fn search_accounts(&self, prefix: &str, limit: u32) -> Result<Vec<Projection>, StoreError> {
        self.search_by_prefix("account", "search_name", "search_code", prefix, limit)
    }

    /// Accounts with a site whose name or address contains `text` (a city,
    /// a street; folded like names), by name, at most `limit`.
    pub fn search_accounts_at(
        &self,
        text: &str,
        limit: u32,
    ) -> Result<Vec<Projection>, StoreError> {
        let text = search::fold(text);
        self.list(
            &format!(
                "kind = 'account' AND deleted = 0 AND search_place IS NOT NULL \
                 AND instr(search_place, ?1) > 0 ORDER BY search_name, id LIMIT {limit}"
            ),
            params![text],
        )
    }

    /// Products whose SKU or name starts with `prefix` (folded), by SKU, at
    /// most `limit`.
    pub fn search_products(&self, prefix: &str, limit: u32) -> Result<Vec<Projection>, StoreError> {
        self.search_by_prefix("product", "search_code", "search_name", prefix, limit)
    }

    /// Records of `kind` whose `by` or `also` search key starts with
    /// `prefix` (folded), ordered by `by`, at most `limit`.
    ///
    /// Each key is read through its own index, in two parts joined by
    /// `UNION`: the `by` part walks its index in the order asked for and
    /// stops at `limit`, and only the `also` part (a code or a name typed
    /// instead, which few records share a prefix of) is read whole and
    /// sorted. One `OR` of the two ranges made SQLite read every record of
    /// both ranges and sort them all before the limit: a name prefix such
    /// as "pa" is a fifth of the accounts, and a search took milliseconds
    /// where the name's index alone took tens of microseconds.
    fn search_by_prefix(
        &self,
        kind: &str,
        by: &str,
        also: &str,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<Projection>, StoreError> {
        let from = search::fold(prefix);
        let to = search::prefix_end(&from);
        // An empty prefix is every record with a `by` key: the first part alone.
        let also = (!from.is_empty()).then_some(also);
        self.list(&prefix_filter(kind, by, also, limit), params![from, to])
    }

    /// Records of `kind` that are not deleted and belong to `account_id`
    /// (an account's contacts, jobs, ...).
    pub fn of_account(
        &self,
        kind: RecordKind,
        account_id: RecordId,
    ) -> Result<Vec<Projection>, StoreError> {
        self.list(
            "kind = ?1 AND account_id = ?2 AND deleted = 0 ORDER BY start_ms DESC, id",
            params![kind.as_str(), account_id.to_string()],
        )
    }

    /// The projections of the records `filter` selects.
    ///
    /// A `LIMIT` is written into `filter` as a number, never bound: the
    /// SQLite the store bundles (3.50) plans a bound limit with its value
    /// (`sqlite3ExprIsInteger`), which marks the statement to be planned
    /// again whenever that parameter is bound, so a cached statement with
    /// `LIMIT ?` is parsed and planned on every run. Callers ask with one or
    /// two limits, so the statement cache keeps a statement each.
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

    /// Every record on the device, with its kind (tombstoned ones included).
    pub fn held_records(&self) -> Result<Vec<(RecordId, RecordKind)>, StoreError> {
        let inner = self.lock();
        let mut stmt = inner
            .conn
            .prepare_cached("SELECT id, kind FROM records ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, kind) = row?;
            let id = id.parse::<RecordId>().map_err(|e| StoreError::Corrupt {
                id: RecordId::default(),
                detail: format!("record id {id:?}: {e}"),
            })?;
            let kind = kind
                .parse::<RecordKind>()
                .map_err(|e| StoreError::Corrupt {
                    id,
                    detail: e.to_string(),
                })?;
            out.push((id, kind));
        }
        Ok(out)
    }

    /// Local changes not yet acknowledged by the server.
    pub fn pending_changes(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .lock()
            .conn
            .prepare_cached("SELECT COUNT(*) FROM outbox")?
            .query_row([], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Device time of the oldest unacknowledged change, if any.
    pub fn oldest_pending_ms(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .lock()
            .conn
            .prepare_cached("SELECT MIN(created_at_ms) FROM outbox")?
            .query_row([], |r| r.get(0))?)
    }

    // --- Sync side -------------------------------------------------------------

    /// Up to `max_records` records with unacknowledged changes, oldest first, with
    /// the raw bytes of those changes.
    pub fn outbox_batch(&self, max_records: usize) -> Result<Vec<RecordChanges>, StoreError> {
        Ok(self
            .outbox_batch_hashed(max_records)?
            .into_iter()
            .map(|(rec, _)| rec)
            .collect())
    }

    /// [`outbox_batch`](Self::outbox_batch), with the hashes of each record's
    /// changes as the outbox lists them (what [`acknowledge_all`](Self::acknowledge_all)
    /// takes once the server committed them), so that nobody decodes the
    /// changes again to learn them.
    pub fn outbox_batch_hashed(
        &self,
        max_records: usize,
    ) -> Result<Vec<(RecordChanges, Vec<ChangeHash>)>, StoreError> {
        let mut inner = self.lock();
        // The record's kind comes with each row (wrapping the document to
        // read it would clone the whole document for one string).
        type Row = (String, String, Option<Vec<u8>>, Option<String>);
        let rows: Vec<Row> = {
            // The limit is written in, not bound (see `list`): a bound one
            // had this statement planned again on every push, a tenth of
            // the device's CPU over it.
            let limit = i64::try_from(max_records).unwrap_or(i64::MAX);
            let mut stmt = inner.conn.prepare_cached(&format!(
                "SELECT o.record_id, o.change_hash, o.bytes, r.kind FROM outbox o \
                 LEFT JOIN records r ON r.id = o.record_id WHERE o.record_id IN \
                 (SELECT record_id FROM outbox GROUP BY record_id ORDER BY MIN(seq) LIMIT {limit}) \
                 ORDER BY o.seq"
            ))?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<Result<_, _>>()?
        };
        // Each record's changes in outbox order, records in the order of their
        // first change.
        type Pending = (
            RecordId,
            Option<String>,
            Vec<ChangeHash>,
            Vec<Option<Vec<u8>>>,
        );
        let mut grouped: Vec<Pending> = Vec::new();
        let mut at: HashMap<RecordId, usize> = HashMap::new();
        for (rid, hash, bytes, kind) in rows {
            let id = parse_id(&rid)?;
            let hash: ChangeHash = hash.parse().map_err(|_| StoreError::Corrupt {
                id,
                detail: "outbox hash".into(),
            })?;
            let i = *at.entry(id).or_insert_with(|| {
                grouped.push((id, kind, Vec::new(), Vec::new()));
                grouped.len() - 1
            });
            grouped[i].2.push(hash);
            grouped[i].3.push(bytes);
        }
        let mut out = Vec::with_capacity(grouped.len());
        for (id, kind, hashes, bytes) in grouped {
            let kind: RecordKind = kind.ok_or(StoreError::NotFound(id))?.parse().map_err(
                |e: crate::model::UnknownName| StoreError::Corrupt {
                    id,
                    detail: e.to_string(),
                },
            )?;
            // Changes queued since schema v9 carry their bytes: sent without
            // touching the document.
            if let Some(stored) = bytes.into_iter().collect::<Option<Vec<Vec<u8>>>>() {
                let changes = stored
                    .into_iter()
                    .zip(&hashes)
                    .map(|(bytes, hash)| as_sent(id, hash, bytes).map(ByteBuf::from))
                    .collect::<Result<_, _>>()?;
                out.push((RecordChanges { id, kind, changes }, hashes));
                continue;
            }
            let mut am = inner.take(id)?;
            let missing = |h: &ChangeHash| StoreError::Corrupt {
                id,
                detail: format!("outbox names change {h} the document does not hold"),
            };
            // Rows queued before v9: Automerge 0.12 keeps no change's bytes,
            // it rebuilds a change from the document's operations, reading all
            // of them for each one asked for. A record whose pending changes
            // are half its history or more (a record made offline and edited,
            // the usual case) is rebuilt whole in one reading; a long history
            // with an edit or two pending, change by change.
            let mut changes = Vec::with_capacity(hashes.len());
            if hashes.len() > 1
                && u64::try_from(hashes.len() * 2)
                    .is_ok_and(|n| n >= automerge::ReadDoc::stats(&am).num_changes)
            {
                let mut all: HashMap<ChangeHash, Change> = am
                    .get_changes(&[])
                    .into_iter()
                    .map(|c| (c.hash(), c))
                    .collect();
                for h in &hashes {
                    let change = all.remove(h).ok_or_else(|| missing(h))?;
                    changes.push(ByteBuf::from(change.raw_bytes().to_vec()));
                }
            } else {
                for h in &hashes {
                    let change = am.get_change_by_hash(h).ok_or_else(|| missing(h))?;
                    changes.push(ByteBuf::from(change.raw_bytes().to_vec()));
                }
            }
            inner.remember(id, am, self.options.cache_size);
            out.push((RecordChanges { id, kind, changes }, hashes));
        }
        Ok(out)
    }

    /// The server committed these changes: drop them from the outbox.
    pub fn acknowledge(&self, id: RecordId, hashes: &[ChangeHash]) -> Result<(), StoreError> {
        self.acknowledge_all(&[(id, hashes.to_vec())])
    }

    /// [`acknowledge`](Self::acknowledge) for every record a push answer
    /// accepted, in one transaction: one commit per push instead of one per
    /// record.
    pub fn acknowledge_all(&self, acks: &[(RecordId, Vec<ChangeHash>)]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let tx = inner.conn.transaction()?;
        {
            let mut stmt =
                tx.prepare_cached("DELETE FROM outbox WHERE record_id = ?1 AND change_hash = ?2")?;
            for (id, hashes) in acks {
                let id = id.to_string();
                for h in hashes {
                    stmt.execute(params![id, h.to_string()])?;
                }
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
        let mut server = match &rejection.server_doc {
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
        // The ledger keeps what the server does not have. A change it stored
        // from an earlier push whose answer was lost, then refused with a later
        // one, is on the server: it is no refused change.
        let mut refused: Vec<ByteBuf> = Vec::with_capacity(pending.len());
        for hash in &pending {
            if let Ok(h) = hash.parse::<ChangeHash>()
                && let Some(change) = local.get_change_by_hash(&h)
            {
                let stored = server.as_mut().is_some_and(|doc| doc.change(&h).is_some());
                if !stored {
                    refused.push(ByteBuf::from(change.raw_bytes().to_vec()));
                }
            }
        }
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
        match (server, &rejection.server_doc) {
            (Some(doc), Some(bytes)) => {
                // The server's copy is stored as it came, as priming stores it.
                let projection = Projection::of(&doc)?;
                write_record(&tx, &projection, bytes)?;
                search::write(&tx, &doc)?;
                reset = Some(doc.into_automerge());
            }
            _ => {
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

    /// Whether a refusal of `sent` is the clash of a store restored from an
    /// old phone backup: a change of this device's actor reuses a change
    /// number (Automerge's per-actor sequence) that the server's copy holds
    /// with other content — the device's own later changes, sent before the
    /// backup was restored. Such changes are refused as a whole, but nothing
    /// in them is wrong: they can be carried over as a new change
    /// ([`DeviceStore::restore_rejection`]).
    pub fn is_restored_clash(
        &self,
        sent: &RecordChanges,
        rejection: &Rejection,
    ) -> Result<bool, StoreError> {
        let Some(bytes) = &rejection.server_doc else {
            return Ok(false);
        };
        let actor = self.actor_id();
        let mine: Vec<Change> = sent
            .changes
            .iter()
            .filter_map(|raw| Change::from_bytes(raw.to_vec()).ok())
            .filter(|c| *c.actor_id() == actor)
            .collect();
        if mine.is_empty() {
            return Ok(false);
        }
        // A server copy that does not load is no clash this device can settle.
        let Ok(mut server) = AutoCommit::load(bytes) else {
            return Ok(false);
        };
        let held: std::collections::BTreeMap<u64, ChangeHash> = server
            .get_changes(&[])
            .iter()
            .filter(|c| *c.actor_id() == actor)
            .map(|c| (c.seq(), c.hash()))
            .collect();
        Ok(mine
            .iter()
            .any(|c| held.get(&c.seq()).is_some_and(|h| *h != c.hash())))
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

    /// Restores a refused edit: applies the ledger entry's changes again as
    /// local changes, queued for the next sync, and marks the entry dealt
    /// with. For when the reason has gone (the office re-planned the visit the
    /// edit was made on, say); the server checks them again like any push.
    ///
    /// The fields the changes touch are first checked against the write rules
    /// (`model::rules`) for the record's status now and the signed-in role,
    /// like any edit on the device; a refused restore changes nothing and
    /// leaves the entry open. A record the server never accepted (it left the
    /// device with the refusal) is created again. Changes that no longer fit
    /// the record (the user edited it since, on top of the server's copy) are
    /// refused as a validation error: make the edit again instead. Changes
    /// refused because the store came back from an old backup (their change
    /// numbers taken by the device's own later changes on the server) are
    /// carried over as a new change.
    pub fn restore_rejection(&self, seq: i64) -> Result<RecordId, StoreError> {
        let row: Option<String> = self
            .lock()
            .conn
            .query_row(
                "SELECT record_id FROM rejections WHERE seq = ?1 AND resolved = 0",
                [seq],
                |r| r.get(0),
            )
            .optional()?;
        let id: RecordId = parse_id(&row.ok_or(StoreError::NoRejection(seq))?)?;
        let changes: Vec<Change> = self
            .rejected_changes(seq)?
            .into_iter()
            .map(|raw| {
                Change::from_bytes(raw).map_err(|e| StoreError::Corrupt {
                    id,
                    detail: format!("refused change: {e}"),
                })
            })
            .collect::<Result<_, _>>()?;
        let role = self.lock().role;
        let held: bool = self.lock().conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM records WHERE id = ?1)",
            [id.to_string()],
            |r| r.get(0),
        )?;
        let unfit = |e: automerge::AutomergeError| {
            ModelError::Validation(ValidationError::new(
                "changes",
                format!("the refused edit no longer fits this record ({e}); make it again"),
            ))
        };
        let edited_since: bool = self.lock().conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM outbox WHERE record_id = ?1)",
            [id.to_string()],
            |r| r.get(0),
        )?;
        if held {
            self.act(id, |doc| {
                let before = doc.to_json()?;
                let status = doc.status_name()?.as_str().map(str::to_owned);
                let heads = doc.heads();
                let mut trial = doc.clone();
                match trial.automerge().apply_changes(changes.clone()) {
                    Ok(()) => *doc = trial,
                    // The changes reuse change numbers this device's actor
                    // used for other changes the server holds: the store was
                    // restored from an old backup after it sent them. With
                    // nothing newer typed here, their field edits are carried
                    // over as a new change. (Over an edit typed since, they
                    // no longer fit: the user makes it again.)
                    Err(e) if !edited_since => {
                        rebase_refused(doc, &changes).map_err(|_| unfit(e))?
                    }
                    Err(e) => return Err(unfit(e)),
                }
                if doc.heads() == heads {
                    // Already there, or waiting for changes this device never had.
                    return Err(ModelError::Validation(ValidationError::new(
                        "changes",
                        "the refused edit cannot be applied to this record; make it again",
                    )));
                }
                if let Some(role) = role {
                    crate::model::rules::check_write(
                        doc.kind(),
                        Some(&before),
                        &doc.to_json()?,
                        status.as_deref(),
                        role,
                    )?;
                }
                Ok(())
            })?;
        } else {
            let mut am = AutoCommit::new();
            am.apply_changes(changes)
                .map_err(|e| StoreError::Model(unfit(e)))?;
            am.set_actor(self.actor_id());
            let doc = RecordDoc::from_automerge(am)?;
            if doc.id() != id {
                return Err(StoreError::Corrupt {
                    id,
                    detail: format!("the refused changes make record {}", doc.id()),
                });
            }
            self.insert_new(doc)?;
        }
        self.resolve_rejection(seq)?;
        Ok(id)
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
        let cursor = cursor.map(|c| c.to_string());
        let notes: Vec<(&str, &str)> = cursor
            .as_deref()
            .map(|c| (META_CURSOR, c))
            .into_iter()
            .collect();
        self.apply_page_noting(records, removed, &notes)
    }

    /// [`DeviceStore::apply_page`] with any sync metadata (`notes`: key and
    /// value) written in the same transaction.
    fn apply_page_noting(
        &self,
        records: &[RecordChanges],
        removed: &[RecordId],
        notes: &[(&str, &str)],
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
            let storable = stored::all_storable(&rc.changes, &changes);
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
                // A record new here is stored as the changes that came, as
                // the server stores a new record (`model::stored`); a long
                // history is compacted, by a checked save.
                let came = || appended(&[], rc.changes.iter().map(|c| c.as_slice()));
                let snapshot = if !storable {
                    doc.save()
                } else if new.len() < compact_after as usize {
                    came()
                } else {
                    compacted(&mut doc, RecordDoc::save).unwrap_or_else(came)
                };
                write_record(&tx, &projection, &snapshot)?;
            } else {
                let bytes: Vec<u8> = new
                    .iter()
                    .flat_map(|c| c.raw_bytes().iter().copied())
                    .collect();
                append(&tx, &projection, &bytes, compact_after, &mut doc)?;
            }
            search::write(&tx, &doc)?;
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
        for (key, value) in notes {
            meta_set(&tx, key, value)?;
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
        self.apply_snapshots_noting(snapshots, None, &[])
    }

    /// A page of priming: [`DeviceStore::apply_snapshots`], with the feed
    /// cursor (when the priming is done) and any other sync metadata
    /// (`notes`: key and value, such as where the priming stands) written in
    /// the same transaction as the page's last write. An app killed at any
    /// point holds either the page and the note that it has it, or neither,
    /// so a resumed priming never downloads a page it holds again.
    pub fn apply_snapshots_noting(
        &self,
        snapshots: &[Snapshot],
        cursor: Option<u64>,
        notes: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        let cursor = cursor.map(|c| c.to_string());
        let notes: Vec<(&str, &str)> = cursor
            .as_deref()
            .map(|c| (META_CURSOR, c))
            .into_iter()
            .chain(notes.iter().copied())
            .collect();
        // Records the device does not hold yet (all of them when priming) are
        // stored as the snapshot bytes themselves, with the projection the
        // server sent (or, from an older server, one computed after a load);
        // no re-save. Records it holds are merged change by change.
        let mut known = Vec::new();
        {
            let inner = self.lock();
            let tx = inner.conn.unchecked_transaction()?;
            for s in snapshots {
                let exists: bool = tx
                    .prepare_cached("SELECT EXISTS(SELECT 1 FROM records WHERE id = ?1)")?
                    .query_row([s.id.to_string()], |r| r.get(0))?;
                if !exists
                    && let Some(p) = &s.projection
                    && p.id == s.id
                    && p.kind == s.kind
                {
                    insert_snapshot(&tx, p, &s.doc)?;
                    // Only accounts and products are opened, for their search keys.
                    if search::indexed(s.kind)
                        && let Ok(doc) = RecordDoc::load(&s.doc)
                    {
                        search::write(&tx, &doc)?;
                    }
                    continue;
                }
                let am = AutoCommit::load(&s.doc).map_err(|e| StoreError::Corrupt {
                    id: s.id,
                    detail: e.to_string(),
                })?;
                if exists {
                    known.push((s, am));
                    continue;
                }
                let doc = RecordDoc::from_automerge(am).map_err(|e| StoreError::Corrupt {
                    id: s.id,
                    detail: e.to_string(),
                })?;
                if doc.id() != s.id || doc.kind() != s.kind {
                    return Err(StoreError::Corrupt {
                        id: s.id,
                        detail: format!("the snapshot holds {} {}", doc.kind(), doc.id()),
                    });
                }
                write_record(&tx, &Projection::of(&doc)?, &s.doc)?;
                search::write(&tx, &doc)?;
            }
            // Records held already are merged below, in a second
            // transaction: the notes go with that one.
            if known.is_empty() {
                for (key, value) in &notes {
                    meta_set(&tx, key, value)?;
                }
            }
            tx.commit()?;
        }
        let records: Vec<RecordChanges> = known
            .into_iter()
            .map(|(s, mut am)| RecordChanges {
                id: s.id,
                kind: s.kind,
                changes: am
                    .get_changes(&[])
                    .iter()
                    .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
                    .collect(),
            })
            .collect();
        if records.is_empty() {
            return Ok(());
        }
        self.apply_page_noting(&records, &[], &notes)
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
             DELETE FROM attachment_links; DELETE FROM attachments; DELETE FROM attachment_blobs; \
             DELETE FROM sync_meta WHERE key <> 'actor_id';",
        )?;
        tx.commit()?;
        inner.cache.clear();
        inner.order.clear();
        inner.reference.clear();
        drop(inner);
        // Reclaim the pages so the customer data is gone from the file too,
        // and from the WAL, which still holds the pages as they were.
        self.lock()
            .conn
            .execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")?;
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

    /// Writes the WAL back into the main file and empties it.
    ///
    /// SQLite also does this by itself, inside whichever action makes the WAL
    /// reach 1,000 pages; that action then pays the only fsync of
    /// `synchronous=NORMAL` (a few ms, the slowest edits in the benchmark). An app
    /// can call this when it goes to the background so that cost lands when no
    /// one is waiting.
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

/// Refuses an edit whose change the server would refuse for good: a change of
/// more operations than a push may merge (`MAX_CHANGE_OPS`, a very long text
/// typed at once). Refused here, the user can shorten it; accepted, it would
/// sit in the outbox and be refused at every sync.
fn within_merge_limits(changes: &[Change]) -> Result<(), StoreError> {
    match changes.iter().map(Change::len).max() {
        Some(ops) if ops > MAX_CHANGE_OPS => Err(ModelError::Validation(ValidationError::new(
            "record",
            format!(
                "this edit holds {ops} operations; one edit holds at most {MAX_CHANGE_OPS} \
                 (photos and documents belong in attachments; split a long text)"
            ),
        ))
        .into()),
        _ => Ok(()),
    }
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
///
/// The indexed columns are written only when one of them changed: SQLite
/// rewrites the entries of every index whose columns appear in an UPDATE's SET
/// list, even when the values are the same, and most actions (notes, a
/// quantity) change none of them. That skips three index pages per action, a
/// third of the WAL an edit writes, and with it a third of the checkpoints that
/// make the slowest edits (see `docs/benchmarks.md`).
/// Stores a record the device does not hold yet, snapshot and projection in one row.
fn insert_snapshot(
    tx: &Transaction<'_>,
    p: &Projection,
    snapshot: &[u8],
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO records (id, kind, snapshot, status, owner, team, territory, account_id, \
         parent_id, start_ms, deleted, updated_at_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        p.id.to_string(),
        p.kind.as_str(),
        snapshot,
        p.status,
        p.owner.map(|o| o.to_string()),
        p.team,
        p.territory,
        p.account_id.map(|a| a.to_string()),
        p.parent_id.map(|a| a.to_string()),
        p.start_ms,
        p.deleted,
        now_ms(),
    ])?;
    Ok(())
}

fn write_projection(tx: &Transaction<'_>, p: &Projection) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE records SET status = ?2, owner = ?3, team = ?4, territory = ?5, account_id = ?6, \
         parent_id = ?7, start_ms = ?8, deleted = ?9 \
         WHERE id = ?1 AND (status IS NOT ?2 OR owner IS NOT ?3 OR team IS NOT ?4 OR territory IS NOT ?5 \
         OR account_id IS NOT ?6 OR parent_id IS NOT ?7 OR start_ms IS NOT ?8 OR deleted IS NOT ?9)",
    )?
    .execute(params![
        p.id.to_string(),
        p.status,
        p.owner.map(|o| o.to_string()),
        p.team,
        p.territory,
        p.account_id.map(|a| a.to_string()),
        p.parent_id.map(|a| a.to_string()),
        p.start_ms,
        p.deleted,
    ])?;
    tx.prepare_cached("UPDATE records SET updated_at_ms = ?2 WHERE id = ?1")?
        .execute(params![p.id.to_string(), now_ms()])?;
    Ok(())
}

/// Recomputes every record's projection columns and clears the request, in one
/// transaction (after an upgrade that added columns; see `schema.rs`). A record
/// whose document cannot be read keeps its old columns: one damaged record must
/// not keep the app from opening its store.
fn reproject_all(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    let ids: Vec<String> = tx
        .prepare("SELECT id FROM records")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in ids {
        let Ok(id) = parse_id(&id) else { continue };
        let projection = match load_doc(&tx, id) {
            Ok(Some(am)) => RecordDoc::from_automerge(am)
                .and_then(|doc| Projection::of(&doc))
                .ok(),
            Ok(None) | Err(StoreError::Corrupt { .. }) => None,
            Err(e) => return Err(e),
        };
        if let Some(projection) = projection {
            write_projection(&tx, &projection)?;
        }
    }
    tx.execute(
        "DELETE FROM sync_meta WHERE key = ?1",
        [schema::REPROJECT_KEY],
    )?;
    tx.commit()?;
    Ok(())
}

/// Computes the search keys of every account and product held and clears the
/// request, in one transaction (after the upgrade that added them). Like
/// [`reproject_all`], a record that cannot be read is skipped.
fn reindex_search(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    let ids: Vec<String> = tx
        .prepare("SELECT id FROM records WHERE kind IN ('account', 'product')")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in ids {
        let Ok(id) = parse_id(&id) else { continue };
        match load_doc(&tx, id) {
            Ok(Some(am)) => {
                if let Ok(doc) = RecordDoc::from_automerge(am) {
                    search::write(&tx, &doc)?;
                }
            }
            Ok(None) | Err(StoreError::Corrupt { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    tx.execute(
        "DELETE FROM sync_meta WHERE key = ?1",
        [schema::REINDEX_SEARCH_KEY],
    )?;
    tx.commit()?;
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
    // A compaction is a checked save: one that does not load back with the
    // record's heads (`model::stored`) is not used, and the changes stay
    // appended.
    if rows + 1 >= i64::from(compact_after)
        && let Some(snapshot) = compacted(doc, RecordDoc::save)
    {
        return write_record(tx, p, &snapshot);
    }
    tx.execute(
        "INSERT INTO record_changes (record_id, seq, bytes) VALUES (?1, ?2, ?3)",
        params![id, next, bytes],
    )?;
    write_projection(tx, p)
}

/// Queues local changes for upload.
/// Carries the field edits of `refused` (changes the record cannot take as
/// they are) onto `doc` as one new change of `doc`'s actor: the changes are
/// replayed on the state they were made on, and what they changed is written
/// on top of the record as it is now (`RecordDoc::rebase_onto`).
fn rebase_refused(doc: &mut RecordDoc, refused: &[Change]) -> Result<(), ModelError> {
    let own: std::collections::BTreeSet<ChangeHash> = refused.iter().map(Change::hash).collect();
    let mut base: Vec<ChangeHash> = refused
        .iter()
        .flat_map(|c| c.deps().to_vec())
        .filter(|d| !own.contains(d))
        .collect();
    base.sort();
    base.dedup();
    let actor = doc.automerge().get_actor().clone();
    let mut made = RecordDoc::from_automerge(doc.automerge().fork_at(&base)?)?;
    made.automerge().apply_changes(refused.to_vec())?;
    made.set_actor(actor);
    let (rebased, _) = made.rebase_onto(&base, doc, &[], DeviceTime::now_utc())?;
    *doc = rebased;
    Ok(())
}

/// The bytes a push sends for an outbox row: the change as Automerge encodes
/// it on commit, inflated if the row keeps it deflated (the server stores
/// changes as they come, and reads plain ones faster). A row that is not the
/// change it names (its header's checksum is the hash's first bytes) is a
/// damaged store.
fn as_sent(id: RecordId, hash: &ChangeHash, stored: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    crate::model::untrusted::plain_change(stored, hash).ok_or_else(|| StoreError::Corrupt {
        id,
        detail: format!("the outbox row of change {hash} does not hold it"),
    })
}

/// Each change with its bytes, which the push reads instead of rebuilding
/// the change from the record's document (see
/// [`DeviceStore::outbox_batch_hashed`]). A change Automerge finds worth
/// compressing (a record's creation: about 800 bytes, 450 deflated) is kept
/// deflated: the outbox is a queue of what is not yet sent, and a device
/// offline for days holds one row per action.
fn queue(tx: &Transaction<'_>, id: RecordId, changes: &mut [Change]) -> Result<(), StoreError> {
    // A local change is new by construction, so the unique index never fires
    // here; if it ever did, the row it would add is already there.
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO outbox (record_id, change_hash, created_at_ms, bytes) \
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    let now = now_ms();
    let id = id.to_string();
    for c in changes {
        let hash = c.hash().to_string();
        stmt.execute(params![id, hash, now, c.bytes().as_ref()])?;
    }
    Ok(())
}

/// The filter of [`DeviceStore::search_by_prefix`]: records of `kind` whose
/// `by` (or `also`) key lies in `?1..?2`, by `by`, at most `limit`.
fn prefix_filter(kind: &str, by: &str, also: Option<&str>, limit: u32) -> String {
    let part = |key: &str| {
        format!(
            "SELECT id FROM (SELECT id FROM records WHERE kind = '{kind}' AND deleted = 0 \
             AND {key} >= ?1 AND {key} < ?2 ORDER BY {by}, id LIMIT {limit})"
        )
    };
    let parts = match also {
        Some(also) => format!("{} UNION {}", part(by), part(also)),
        None => part(by),
    };
    format!("id IN ({parts}) ORDER BY {by}, id LIMIT {limit}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use rusqlite::ffi;

    fn sqlite(code: std::ffi::c_int) -> StoreError {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(ffi::Error::new(code), None))
    }

    #[rstest]
    #[case::busy(sqlite(ffi::SQLITE_BUSY), true)]
    #[case::locked(sqlite(ffi::SQLITE_LOCKED), true)]
    #[case::disk_full(sqlite(ffi::SQLITE_FULL), true)]
    #[case::io_error(sqlite(ffi::SQLITE_IOERR), true)]
    #[case::damaged_file(sqlite(ffi::SQLITE_CORRUPT), false)]
    #[case::constraint(sqlite(ffi::SQLITE_CONSTRAINT), false)]
    #[case::missing_record(StoreError::NotFound(RecordId::new()), false)]
    #[case::refused_by_the_model(
        StoreError::Model(ModelError::Malformed("no kind".into())),
        false
    )]
    #[case::newer_schema(StoreError::TooNew { found: 9, supported: 2 }, false)]
    fn only_transient_storage_failures_are_retryable(
        #[case] error: StoreError,
        #[case] retryable: bool,
    ) {
        assert_eq!(error.retryable(), retryable, "{error}");
    }

    /// A prefix search reads each key's range through that key's index, and
    /// the ordering key's part stops at the limit: SQLite's plan for each
    /// search, on a store of this schema, names both indexes and scans no
    /// table or index whole. (One `OR` of the two ranges read both ranges
    /// whole and sorted them: milliseconds a search on 20,000 accounts.)
    #[rstest]
    #[case::accounts("account", "search_name", "search_code")]
    #[case::products("product", "search_code", "search_name")]
    fn a_prefix_search_reads_each_key_through_its_index(
        #[case] kind: &str,
        #[case] by: &str,
        #[case] also: &str,
    ) {
        let store = DeviceStore::open_in_memory().expect("open");
        let inner = store.lock();
        for also in [Some(also), None] {
            let sql = format!(
                "EXPLAIN QUERY PLAN SELECT id FROM records WHERE {}",
                prefix_filter(kind, by, also, 20)
            );
            let mut stmt = inner.conn.prepare(&sql).expect("plan");
            let plan: Vec<String> = stmt
                .query_map(["ab", "ac"], |r| r.get(3))
                .expect("plan")
                .collect::<Result<_, _>>()
                .expect("plan rows");
            let index = |key: &str| {
                format!("SEARCH records USING INDEX records_{key} (kind=? AND {key}>? AND {key}<?)")
            };
            assert!(plan.contains(&index(by)), "{plan:#?}");
            assert_eq!(
                also.is_some(),
                plan.contains(&index("search_code")) && plan.contains(&index("search_name")),
                "{plan:#?}"
            );
            assert!(
                plan.iter()
                    .all(|step| !step.starts_with("SCAN records") && step != "MULTI-INDEX OR"),
                "{plan:#?}"
            );
            // The ordering key's part needs no sort of its own: its index
            // gives the order, so it stops at the limit.
            let by_part = plan.iter().position(|s| *s == index(by)).expect("by part");
            assert!(
                plan.get(by_part + 1)
                    .is_none_or(|s| !s.starts_with("USE TEMP B-TREE")),
                "{plan:#?}"
            );
        }
    }

    #[test]
    fn a_busy_database_is_reported_as_retryable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("device.db");
        let store = DeviceStore::open(&path, StoreOptions::default()).expect("open");
        let other = Connection::open(&path).expect("second connection");
        other
            .execute_batch("BEGIN IMMEDIATE")
            .expect("hold the write lock");
        store
            .lock()
            .conn
            .busy_timeout(std::time::Duration::ZERO)
            .expect("no waiting");
        let err = store
            .meta_set("k", "v")
            .expect_err("the writer lock is held");
        assert!(err.retryable(), "{err}");
        other.execute_batch("ROLLBACK").expect("release");
        store.meta_set("k", "v").expect("retry succeeds");
    }

    #[test]
    fn reference_records_are_read_only_and_outlive_a_restart() {
        use crate::ids::{DeviceId, OrgId, TeamId, TerritoryId, UserId};
        use crate::model::{RecordMeta, Role, Visit};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("device.db");
        let store = DeviceStore::open(&path, StoreOptions::default()).expect("open");
        let rep = Actor::on_device(UserId::new(), Role::Rep, DeviceId::new());
        let visit = |owner| {
            Visit::planned(
                RecordMeta {
                    id: RecordId::new(),
                    org: OrgId::new(),
                    owner,
                    team: TeamId::new(),
                    territory: TerritoryId::new(),
                },
                RecordId::new(),
                DeviceTime::utc(0),
                DeviceTime::utc(1),
            )
        };
        let colleague = store
            .create_stateful(&visit(UserId::new()), &rep, DeviceTime::utc(0))
            .expect("create");
        let mine = store
            .create_stateful(&visit(rep.user), &rep, DeviceTime::utc(0))
            .expect("create");
        let gone = RecordId::new();
        store
            .set_reference_records(&[colleague, gone])
            .expect("reference");
        drop(store);
        let store = DeviceStore::open(&path, StoreOptions::default()).expect("reopen");
        assert!(store.is_reference(colleague) && !store.is_reference(mine));
        assert_eq!(
            store.reference_records().expect("held"),
            vec![colleague],
            "only those the store holds are named to the server"
        );
        let pending = store.pending_changes().expect("pending");
        let err = store
            .update::<Visit>(colleague, DeviceTime::utc(2), |v| v.notes = "x".into())
            .expect_err("read-only");
        assert!(
            matches!(err, StoreError::ReadOnly(id) if id == colleague),
            "{err}"
        );
        assert_eq!(store.pending_changes().expect("pending"), pending);
        store
            .update::<Visit>(mine, DeviceTime::utc(2), |v| v.notes = "x".into())
            .expect("one's own visit is writable");
        store.wipe().expect("wipe");
        assert!(!store.is_reference(colleague));
    }

    /// A rep on a device and a visit of theirs, planned, not yet stored.
    fn a_reps_visit() -> (Actor, crate::model::Visit) {
        use crate::ids::{DeviceId, OrgId, TeamId, TerritoryId, UserId};
        use crate::model::{RecordMeta, Role, Visit};
        let rep = Actor::on_device(UserId::new(), Role::Rep, DeviceId::new());
        let meta = RecordMeta {
            id: RecordId::new(),
            org: OrgId::new(),
            owner: rep.user,
            team: TeamId::new(),
            territory: TerritoryId::new(),
        };
        let visit = Visit::planned(
            meta,
            RecordId::new(),
            DeviceTime::utc(0),
            DeviceTime::utc(1),
        );
        (rep, visit)
    }

    #[test]
    fn an_edit_the_server_would_refuse_for_its_size_is_refused_on_the_device() {
        use automerge::transaction::Transactable;
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            DeviceStore::open(dir.path().join("device.db"), StoreOptions::default()).expect("open");
        let (rep, visit) = a_reps_visit();
        let id = store
            .create_stateful(&visit, &rep, DeviceTime::utc(0))
            .expect("create");
        let pending = store.pending_changes().expect("pending");
        let huge = |n: usize| {
            move |doc: &mut RecordDoc| {
                let am = doc.automerge();
                let list = am.put_object(automerge::ROOT, "padding", automerge::ObjType::List)?;
                am.splice(
                    &list,
                    0,
                    0,
                    std::iter::repeat_n(automerge::ScalarValue::Null, n),
                )?;
                am.commit();
                Ok(())
            }
        };
        let err = store.act(id, huge(MAX_CHANGE_OPS)).expect_err("refused");
        assert!(err.to_string().contains("at most 100000"), "{err}");
        assert_eq!(
            store.pending_changes().expect("pending"),
            pending,
            "nothing queued"
        );
        let stored = store.doc(id).expect("stored");
        assert!(stored.to_json().expect("json").get("padding").is_none());
    }

    /// A push sends each change from its outbox row, without the record's
    /// document: the creation kept deflated (and inflated to send), the edit
    /// as it is. A row queued before schema v9 (no bytes) has its change
    /// rebuilt from the document: the same bytes every way.
    #[test]
    fn the_outbox_keeps_each_change_it_sends() {
        use crate::model::Visit;
        let store = DeviceStore::open_in_memory().expect("store");
        let (rep, visit) = a_reps_visit();
        let id = store
            .create_stateful(&visit, &rep, DeviceTime::utc(0))
            .expect("create");
        store
            .update::<Visit>(id, DeviceTime::utc(2), |v| v.notes = "restocked".into())
            .expect("edit");
        let mut doc = store.doc(id).expect("doc");
        let made: Vec<Vec<u8>> = doc
            .changes_since(&[])
            .iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect();
        let sent = |store: &DeviceStore| -> Vec<Vec<u8>> {
            let batch = store.outbox_batch_hashed(10).expect("batch");
            assert_eq!(batch.len(), 1);
            let (record, hashes) = &batch[0];
            assert_eq!(record.id, id);
            assert_eq!(hashes.len(), record.changes.len());
            record.changes.iter().map(|c| c.to_vec()).collect()
        };
        let rows: Vec<Option<Vec<u8>>> = {
            let inner = store.lock();
            let mut stmt = inner
                .conn
                .prepare("SELECT bytes FROM outbox ORDER BY seq")
                .expect("prepare");
            stmt.query_map([], |r| r.get(0))
                .expect("query")
                .collect::<Result<_, _>>()
                .expect("rows")
        };
        let [Some(creation), Some(edit)] = &rows[..] else {
            panic!("two rows with bytes: {rows:?}")
        };
        assert_eq!(creation.get(8), Some(&2), "the creation is kept deflated");
        assert!(creation.len() < made[0].len() * 3 / 4);
        assert_eq!(edit, &made[1], "a small edit is kept as it is");
        assert_eq!(sent(&store), made);
        // The creation's row as an older store wrote it.
        store
            .lock()
            .conn
            .execute(
                "UPDATE outbox SET bytes = NULL WHERE seq = (SELECT MIN(seq) FROM outbox)",
                [],
            )
            .expect("old row");
        assert_eq!(sent(&store), made);
        // A damaged row is reported, not sent.
        store
            .lock()
            .conn
            .execute("UPDATE outbox SET bytes = ?1", [creation])
            .expect("damage");
        let err = store.outbox_batch(10).expect_err("damaged");
        assert!(err.to_string().contains("does not hold it"), "{err}");
    }

    /// Pages written to the WAL per edit that changes no listed column. Nine
    /// before the indexed columns were written only on change and the outbox lost
    /// `AUTOINCREMENT`; every page counts, because a checkpoint (the only fsync in
    /// `synchronous=NORMAL`) runs each time the WAL reaches 1,000 pages.
    #[test]
    fn an_edit_of_an_unlisted_field_writes_few_wal_pages() {
        use crate::ids::{DeviceId, OrgId, TeamId, TerritoryId, UserId};
        use crate::model::{RecordMeta, Role, Visit};
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            DeviceStore::open(dir.path().join("device.db"), StoreOptions::default()).expect("open");
        let rep = Actor::on_device(UserId::new(), Role::Rep, DeviceId::new());
        let (org, team, territory) = (OrgId::new(), TeamId::new(), TerritoryId::new());
        let ids: Vec<RecordId> = (0..500i64)
            .map(|i| {
                let meta = RecordMeta {
                    id: RecordId::new(),
                    org,
                    owner: rep.user,
                    team,
                    territory,
                };
                let v = Visit::planned(
                    meta,
                    RecordId::new(),
                    DeviceTime::utc(i),
                    DeviceTime::utc(i + 1),
                );
                store
                    .create_stateful(&v, &rep, DeviceTime::utc(0))
                    .expect("create")
            })
            .collect();
        let wal_frames = |s: &DeviceStore| -> i64 {
            s.lock()
                .conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
                .expect("checkpoint")
        };
        store
            .lock()
            .conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA wal_autocheckpoint = 0;")
            .expect("empty the WAL and keep it growing");
        let before = wal_frames(&store);
        let edits = 500;
        for (i, id) in ids.iter().cycle().take(edits).enumerate() {
            store
                .update::<Visit>(*id, DeviceTime::utc(1), |v| v.notes = format!("note {i}"))
                .expect("edit");
        }
        let per_edit = (wal_frames(&store) - before) as f64 / edits as f64;
        assert!(per_edit < 7.0, "{per_edit:.2} WAL pages per edit");
    }
}
