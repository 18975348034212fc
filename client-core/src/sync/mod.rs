//! The sync client: pushes the outbox, pulls the feed, primes a new device.
//!
//! [`SyncClient::sync`] runs one full sync:
//!
//! 1. **Prime** when the device has never synced (no cursor): pages of compacted
//!    snapshots, then the feed from the cursor the first page fixed.
//! 2. **Push** the outbox in batches. Each record's result is handled on its own:
//!    accepted changes leave the outbox; rejected ones go to the device's
//!    rejection ledger with the server's reason, the record is reset to the
//!    server's copy, and the other records of the batch are unaffected.
//! 3. **Upload** pending attachments (after the push, so the server knows
//!    their records): declare each for every record it is attached to, send
//!    only the chunks the server lacks (read from the store one chunk at a
//!    time), complete, mark uploaded. One attachment failing does not fail the
//!    sync: a retryable failure (network, 5xx, a corrupted chunk, a record the
//!    server does not have yet) leaves it pending for the next sync; a refusal
//!    that cannot change (too large for its kind, a content type or kind the
//!    server does not take, forbidden, the whole file's hash mismatching)
//!    moves it to the device's refused ledger with the server's reason, and it
//!    is not sent again ([`attachment_refusal_is_final`]).
//! 4. **Pull** pages of the feed after the stored cursor; each page and its cursor
//!    are applied in one local transaction.
//!
//! Every step is safe to interrupt: the outbox row of a change goes only after
//! the server acknowledged it (a resend is a no-op on the server), and the cursor
//! moves only with the page it covers. A retryable failure (no network, 5xx, 429)
//! is retried with exponential backoff and jitter; an expired access token is
//! refreshed once; a revoked device wipes its local data.
//!
//! The client drives a [`SyncStore`] (the device store implements it) and a
//! [`Transport`] (HTTP in production).

pub mod transport;

use std::sync::Mutex;
use std::time::Duration;

pub mod live;

pub use live::{LiveEvent, LiveListener, LiveMessage, LiveOptions, LiveStream, LiveSync};
pub use transport::{
    AttachmentDeclaration, AttachmentStatus, DeviceInfo, HttpTransport, LoginRequest,
    LoginResponse, SessionDevice, SessionUser, Transport, TransportError,
};

use crate::ids::RecordId;
use crate::model::Role;
use crate::protocol::{
    DeviceHealth, PrimeRequest, PullRequest, PushOutcome, PushRequest, RecordChanges, RecordEpoch,
    RejectCode, Rejection, RepairRequest, ScopeWindow, Snapshot,
};

/// Where a priming stands once a page is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrimeStand {
    /// More pages follow, after `record`; the priming started at feed
    /// position `cursor`.
    After {
        /// The last record of the page.
        record: RecordId,
        /// The feed position the priming started at.
        cursor: u64,
    },
    /// The last page: the device is primed and pulls from `cursor` on.
    Done {
        /// The feed position the priming started at.
        cursor: u64,
    },
}

/// A record's pending changes, with the hash of each (in the same order).
pub type PendingRecord = (RecordChanges, Vec<Vec<u8>>);

/// What the sync client needs from the device store.
pub trait SyncStore: Send + Sync {
    /// Up to `max_records` records with unacknowledged changes, oldest first,
    /// with the hash of each change as the store keeps it (so that nobody
    /// decodes the changes again to learn them).
    fn pending(&self, max_records: usize) -> Result<Vec<PendingRecord>, SyncError>;
    /// The server committed these changes (per record, the hashes
    /// [`SyncStore::pending`] answered): drop them from the outbox, every
    /// record of one push answer together (the device store: in one
    /// transaction).
    fn acknowledge(&self, acks: &[(RecordId, Vec<Vec<u8>>)]) -> Result<(), SyncError>;
    /// The server refused record `id`'s changes: keep them in the ledger and take
    /// them out of the outbox.
    fn reject(
        &self,
        id: RecordId,
        rejection: &Rejection,
        changes: &RecordChanges,
    ) -> Result<(), SyncError>;
    /// Handles a refusal like [`SyncStore::reject`], unless it is the clash
    /// of a store restored from an old phone backup (its changes reuse change
    /// numbers the server holds for this device's own later changes): then
    /// the refused edit is carried over as a new change, queued for the same
    /// sync, and the answer is `true`. Stores that cannot tell just reject.
    fn reject_or_carry_over(
        &self,
        id: RecordId,
        rejection: &Rejection,
        changes: &RecordChanges,
    ) -> Result<bool, SyncError> {
        self.reject(id, rejection, changes)?;
        Ok(false)
    }
    /// Applies a page of the feed and stores `next_cursor`, in one transaction.
    fn apply_page(
        &self,
        records: &[RecordChanges],
        removed: &[RecordId],
        next_cursor: u64,
    ) -> Result<(), SyncError>;
    /// Applies a page of snapshots (priming).
    fn apply_snapshots(&self, snapshots: &[Snapshot]) -> Result<(), SyncError>;
    /// Applies a page of priming and records where the priming stands after
    /// it. A store that can should do both in one transaction (the device
    /// store does), so that an app killed in between never downloads the page
    /// again; this default does one after the other.
    fn apply_prime_page(&self, snapshots: &[Snapshot], stand: PrimeStand) -> Result<(), SyncError> {
        self.apply_snapshots(snapshots)?;
        match stand {
            PrimeStand::After { record, cursor } => self.set_prime_progress(Some((record, cursor))),
            PrimeStand::Done { cursor } => {
                self.set_cursor(cursor)?;
                self.set_prime_progress(None)
            }
        }
    }
    /// The stored feed cursor; `None` before the first successful prime.
    fn cursor(&self) -> Result<Option<u64>, SyncError>;
    /// Stores the cursor at the end of priming.
    fn set_cursor(&self, cursor: u64) -> Result<(), SyncError>;
    /// The scope window of the last pull or prime (`None`: none, or no time limit).
    fn scope_window(&self) -> Result<Option<ScopeWindow>, SyncError>;
    /// Stores the scope window, after the page cut to it is applied.
    fn set_scope_window(&self, window: Option<ScopeWindow>) -> Result<(), SyncError>;
    /// Removes every local record and change (a revoked device).
    fn wipe(&self) -> Result<(), SyncError>;
    /// Takes the Automerge actor id the server assigned to this device.
    fn set_actor(&self, actor: automerge::ActorId) -> Result<(), SyncError>;
    /// Takes the signed-in user's role, for the write rules local edits are
    /// checked against (`model::rules`).
    fn set_role(&self, _role: Role) -> Result<(), SyncError> {
        Ok(())
    }
    /// The record's document, for a repair; `None` when the device lacks it.
    fn document(&self, id: RecordId) -> Result<Option<automerge::AutoCommit>, SyncError>;
    /// The identity of the server's change log this device last synced with
    /// (`None` before the first, or for a store that keeps none).
    fn log_id(&self) -> Result<Option<String>, SyncError> {
        Ok(None)
    }
    /// Stores the change log identity the server named.
    fn set_log_id(&self, _log: &str) -> Result<(), SyncError> {
        Ok(())
    }
    /// Where a priming cut short stands: the last record id of the last page
    /// applied and the feed position the priming started at.
    fn prime_progress(&self) -> Result<Option<(RecordId, u64)>, SyncError> {
        Ok(None)
    }
    /// Records (or, with `None`, forgets) where the priming stands.
    fn set_prime_progress(&self, _progress: Option<(RecordId, u64)>) -> Result<(), SyncError> {
        Ok(())
    }
    /// The records held for reference only ([`PullResponse::history`](crate::protocol::PullResponse::history)),
    /// named in each pull; `None` for a store that takes none (the server
    /// then sends none).
    fn reference_records(&self) -> Result<Option<Vec<RecordId>>, SyncError> {
        Ok(None)
    }
    /// Stores the reference records a pull page named, after the page is applied.
    fn set_reference_records(&self, _ids: &[RecordId]) -> Result<(), SyncError> {
        Ok(())
    }
    /// Every record the device holds, with its kind: after a restore of the
    /// server from backup, each is repaired with the server.
    fn held_records(&self) -> Result<Vec<(RecordId, crate::model::RecordKind)>, SyncError> {
        Ok(Vec::new())
    }
    /// Applies changes received outside the feed (repair), without queueing them.
    fn apply_remote(&self, records: &[RecordChanges]) -> Result<(), SyncError>;
    /// Attachments with bytes or links left to send. Stores without
    /// attachments have none.
    fn pending_attachments(&self) -> Result<Vec<crate::store::AttachmentInfo>, SyncError> {
        Ok(Vec::new())
    }
    /// Up to `len` bytes of an attachment from `offset`.
    fn attachment_chunk(
        &self,
        sha256: &str,
        _offset: u64,
        _len: usize,
    ) -> Result<Vec<u8>, SyncError> {
        Err(SyncError::Storage(format!("no attachment {sha256}")))
    }
    /// The server has the whole file.
    fn mark_attachment_uploaded(&self, _sha256: &str) -> Result<(), SyncError> {
        Ok(())
    }
    /// The server knows the file is attached to `record_id`.
    fn mark_attachment_declared(
        &self,
        _sha256: &str,
        _record_id: RecordId,
    ) -> Result<(), SyncError> {
        Ok(())
    }
    /// The server refused the attachment for good: into the refused ledger.
    fn refuse_attachment(
        &self,
        _sha256: &str,
        _code: &str,
        _message: &str,
    ) -> Result<(), SyncError> {
        Ok(())
    }
    /// Unacknowledged local changes and the device time (ms) of the oldest,
    /// for the health figures sent with each sync.
    fn unsynced(&self) -> Result<(u64, Option<i64>), SyncError> {
        Ok((0, None))
    }
    /// The epochs above 0 of the records of `ids` held (see
    /// `docs/protocol.md`, "Epochs"). Stores that predate epochs hold none.
    fn epochs(&self, _ids: &[RecordId]) -> Result<Vec<RecordEpoch>, SyncError> {
        Ok(Vec::new())
    }
    /// Replaces the records of `records` whose epoch in `epochs` is newer
    /// than the copy held, rebasing unsynced edits; returns their ids.
    fn adopt_epochs(
        &self,
        _records: &[RecordChanges],
        _epochs: &[RecordEpoch],
    ) -> Result<Vec<RecordId>, SyncError> {
        Ok(Vec::new())
    }
}

/// Why a sync stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The network or the server failed and retries ran out.
    #[error("network: {0}")]
    Network(#[source] TransportError),
    /// Logging in is needed (refresh token expired or refused).
    #[error("authentication needed: {0}")]
    Auth(String),
    /// The device was revoked; local data was wiped.
    #[error("this device was revoked by an administrator; local data was removed")]
    Revoked,
    /// The server refused the request as a whole.
    #[error("refused by the server: {message}")]
    Refused {
        /// The server's stable error code.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The local store failed.
    #[error("storage: {0}")]
    Storage(String),
    /// Not logged in yet.
    #[error("not logged in")]
    NotLoggedIn,
    /// The server sent something this client cannot use.
    #[error("protocol: {0}")]
    Protocol(String),
}

impl SyncError {
    /// Whether running the same sync later can succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, SyncError::Network(_))
    }
}

/// Progress of a running sync, reported to the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPhase {
    /// Downloading snapshots.
    Priming,
    /// Uploading local changes.
    Pushing,
    /// Downloading remote changes.
    Pulling,
    /// Uploading attachments (photos, signatures, documents).
    Uploading,
}

/// Receives progress reports. Called on the syncing thread; keep it quick.
pub trait SyncProgress: Send + Sync {
    /// `done` units of `phase` are finished (records primed, records pushed,
    /// changes pulled, attachments uploaded).
    fn progress(&self, phase: SyncPhase, done: u64);
}

/// A progress listener that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl SyncProgress for NoProgress {
    fn progress(&self, _phase: SyncPhase, _done: u64) {}
}

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Records primed from snapshots.
    pub primed: u64,
    /// Records whose changes the server accepted.
    pub pushed: u64,
    /// Records whose changes the server rejected (now in the ledger).
    pub rejected: u64,
    /// Remote changes applied.
    pub pulled: u64,
    /// Records whose history was repaired with the server.
    pub repaired: u64,
    /// Refused edits of a store restored from an old phone backup, carried
    /// over as new changes and sent again (not in the ledger).
    pub carried_over: u64,
    /// The server's database had been restored from a backup since the last
    /// sync: the feed was pulled again and every record repaired.
    pub server_restored: bool,
    /// Records the server named as out of scope (dropped unless they held
    /// unsynced changes).
    pub removed: u64,
    /// HTTP round trips made.
    pub round_trips: u64,
    /// Attachments whose upload completed.
    pub attachments_uploaded: u64,
    /// Attachments still waiting for a later sync (failed, or skipped as large
    /// with [`SyncOptions::upload_large_attachments`] off).
    pub attachments_pending: u64,
    /// Attachments the server refused for good in this sync (now in the
    /// refused ledger).
    pub attachments_refused: u64,
    /// Records replaced because an erasure rewrote their history on the
    /// server (a newer epoch), with unsynced edits carried over.
    pub rewritten: u64,
}

/// Tuning of the sync loop; the defaults suit a phone on a mobile network.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Records per push request.
    pub push_batch: usize,
    /// Changes per pull page.
    pub pull_page: u32,
    /// Records per prime page.
    pub prime_page: u32,
    /// Attempts per request for retryable failures.
    pub max_attempts: u32,
    /// First backoff delay; doubles each attempt, with jitter, up to `max_backoff`.
    pub base_backoff: Duration,
    /// Longest backoff delay.
    pub max_backoff: Duration,
    /// Whether attachments over [`LARGE_ATTACHMENT`] bytes are uploaded. The
    /// app turns it off on metered networks; they wait for the next sync.
    pub upload_large_attachments: bool,
}

/// Attachments above this size (2 MiB) wait when
/// [`SyncOptions::upload_large_attachments`] is off.
pub const LARGE_ATTACHMENT: u64 = 2 * 1024 * 1024;

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            push_batch: 200,
            pull_page: 2_000,
            prime_page: 2_000,
            max_attempts: 5,
            base_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            upload_large_attachments: true,
        }
    }
}

/// Tokens of the logged-in session.
#[derive(Clone)]
pub struct Session {
    /// Bearer token.
    pub access_token: String,
    /// Rotating refresh token.
    pub refresh_token: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session { .. }")
    }
}

/// Runs syncs for one device.
pub struct SyncClient<S: SyncStore, T: Transport> {
    store: S,
    transport: T,
    options: SyncOptions,
    /// Whether large attachments go up now: starts as
    /// [`SyncOptions::upload_large_attachments`]; the app flips it as the
    /// network changes (Wi-Fi or metered) with
    /// [`SyncClient::set_upload_large_attachments`], read at each upload.
    large_uploads: std::sync::atomic::AtomicBool,
    /// The current tokens; replaced on refresh. A sync holds the lock only while
    /// reading or replacing them, never across a request.
    session: Mutex<Option<Session>>,
    /// The app's version, from the last login (or [`SyncClient::set_app_version`]);
    /// sent with the health figures of each sync.
    app_version: Mutex<Option<String>>,
}

impl<S: SyncStore, T: Transport> std::fmt::Debug for SyncClient<S, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncClient")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<S: SyncStore, T: Transport> SyncClient<S, T> {
    /// A client over `store` and `transport`.
    pub fn new(store: S, transport: T, options: SyncOptions) -> Self {
        Self {
            store,
            transport,
            large_uploads: std::sync::atomic::AtomicBool::new(options.upload_large_attachments),
            options,
            session: Mutex::new(None),
            app_version: Mutex::new(None),
        }
    }

    /// Whether attachments over [`LARGE_ATTACHMENT`] bytes are uploaded from
    /// the next sync on: the app turns it off on a metered network and on
    /// again on Wi-Fi. Small files (signatures, most documents) always go.
    pub fn set_upload_large_attachments(&self, on: bool) {
        self.large_uploads
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether large attachments are uploaded now.
    pub fn uploads_large_attachments(&self) -> bool {
        self.large_uploads
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets the app version reported with each sync (login sets it too, from
    /// the login's device information): for apps that restore a session
    /// instead of logging in.
    pub fn set_app_version(&self, version: impl Into<String>) {
        if let Ok(mut v) = self.app_version.lock() {
            *v = Some(version.into());
        }
    }

    /// The health figures sent with a push or pull: what the device still
    /// holds unsynced and its app version. `None` when the store cannot say
    /// (the sync goes on without them).
    pub fn health(&self) -> Option<DeviceHealth> {
        let (unsynced_changes, oldest_unsynced_ms) = self.store.unsynced().ok()?;
        let pending_attachment_bytes = self
            .store
            .pending_attachments()
            .ok()?
            .iter()
            .map(|a| a.size)
            .sum();
        Some(DeviceHealth {
            unsynced_changes,
            oldest_unsynced_ms,
            pending_attachment_bytes,
            app_version: self.app_version.lock().ok().and_then(|v| v.clone()),
        })
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Logs in and keeps the session.
    pub fn login(&self, req: &LoginRequest) -> Result<LoginResponse, SyncError> {
        let resp = self.transport.login(req).map_err(|e| match e {
            TransportError::Unauthorized { message, .. }
            | TransportError::Refused { message, .. } => SyncError::Auth(message),
            other => SyncError::Network(other),
        })?;
        let actor = hex::decode(&resp.device.actor_id).map_err(|_| {
            SyncError::Protocol(format!(
                "the server assigned a malformed actor id {:?}",
                resp.device.actor_id
            ))
        })?;
        // Every change from now on is made under the id the server assigned;
        // the server refuses changes made under any other.
        self.store.set_actor(automerge::ActorId::from(actor))?;
        self.store.set_role(resp.user.role)?;
        self.set_app_version(req.device.app_version.clone());
        self.set_session(Session {
            access_token: resp.access_token.clone(),
            refresh_token: resp.refresh_token.clone(),
        });
        Ok(resp)
    }

    /// Uses tokens obtained earlier (e.g. restored from the app's keychain).
    pub fn set_session(&self, session: Session) {
        if let Ok(mut s) = self.session.lock() {
            *s = Some(session);
        }
    }

    /// The current tokens, for the app to keep in its keychain.
    pub fn session(&self) -> Option<Session> {
        self.session.lock().ok().and_then(|s| s.clone())
    }

    /// Runs one full sync: prime if needed, push, pull.
    pub fn sync(&self, progress: &dyn SyncProgress) -> Result<SyncReport, SyncError> {
        let mut report = SyncReport::default();
        if self.store.cursor()?.is_none() {
            self.prime(progress, &mut report)?;
        }
        self.push(progress, &mut report)?;
        self.upload_attachments(progress, &mut report)?;
        self.pull(progress, &mut report)?;
        Ok(report)
    }

    /// Pushes the outbox only (no prime, no pull): for "send now" before the
    /// app goes to the background or the user logs out.
    pub fn push_pending(&self, progress: &dyn SyncProgress) -> Result<SyncReport, SyncError> {
        let mut report = SyncReport::default();
        self.push(progress, &mut report)?;
        Ok(report)
    }

    /// Primes page by page. Each page applied is remembered, so a priming cut
    /// short (the app killed, the network gone) resumes after the last page
    /// the device holds instead of downloading everything again; the feed
    /// position stays the one the priming started at, so nothing written
    /// meanwhile is missed.
    fn prime(&self, progress: &dyn SyncProgress, report: &mut SyncReport) -> Result<(), SyncError> {
        let resumed = self.store.prime_progress()?;
        let mut req = PrimeRequest {
            after: resumed.map(|(after, _)| after),
            cursor: resumed.map(|(_, cursor)| cursor),
            max_records: self.options.prime_page,
        };
        // The first page's window: records that entered the window while later
        // pages were served come again with the next pull, which is harmless.
        let mut window = None;
        let mut first = true;
        loop {
            let page = self.call(report, |t, token| t.prime(token, &req))?;
            if std::mem::take(&mut first) {
                window = page.window;
                if let Some(log) = &page.log {
                    self.store.set_log_id(log)?;
                }
            }
            let adopted = if page.epochs.is_empty() {
                Vec::new()
            } else {
                let as_changes = snapshot_changes(&page.snapshots, &page.epochs)?;
                self.store.adopt_epochs(&as_changes, &page.epochs)?
            };
            let snapshots: Vec<Snapshot> = page
                .snapshots
                .iter()
                .filter(|s| !adopted.contains(&s.id))
                .cloned()
                .collect();
            // The page and where the priming stands after it are stored
            // together; the window goes first, so that a device holding a
            // cursor always holds the window its pulls name.
            let stand = match page.next {
                Some(record) => PrimeStand::After {
                    record,
                    cursor: page.cursor,
                },
                None => {
                    self.store.set_scope_window(window)?;
                    PrimeStand::Done {
                        cursor: page.cursor,
                    }
                }
            };
            self.store.apply_prime_page(&snapshots, stand)?;
            report.primed += page.snapshots.len() as u64;
            progress.progress(SyncPhase::Priming, report.primed);
            match page.next {
                Some(next) => {
                    req.after = Some(next);
                    req.cursor = Some(page.cursor);
                }
                None => return Ok(()),
            }
        }
    }

    fn push(&self, progress: &dyn SyncProgress, report: &mut SyncReport) -> Result<(), SyncError> {
        let mut repaired = std::collections::BTreeSet::new();
        let mut carried = std::collections::BTreeSet::new();
        loop {
            let (batch, hashes): (Vec<RecordChanges>, Vec<Vec<Vec<u8>>>) = self
                .store
                .pending(self.options.push_batch)?
                .into_iter()
                .unzip();
            if batch.is_empty() {
                return Ok(());
            }
            let ids: Vec<RecordId> = batch.iter().map(|r| r.id).collect();
            let req = PushRequest {
                batch: uuid::Uuid::now_v7(),
                epochs: self.store.epochs(&ids)?,
                records: batch,
                health: self.health(),
            };
            let resp = self.call(report, |t, token| t.push(token, &req))?;
            let mut settled = 0;
            // The accepted records leave the outbox together, after the loop
            // (the refused ones touch only their own records' rows).
            let mut acks: Vec<(RecordId, Vec<Vec<u8>>)> = Vec::new();
            for result in resp.results {
                let Some(i) = req.records.iter().position(|r| r.id == result.id) else {
                    continue;
                };
                let sent = &req.records[i];
                match result.outcome {
                    PushOutcome::Accepted { .. } => {
                        if !acks.iter().any(|(id, _)| *id == result.id) {
                            acks.push((result.id, hashes[i].clone()));
                            report.pushed += 1;
                            settled += 1;
                        }
                    }
                    // A store restored from an old phone backup edited before
                    // its first sync: the edit goes again as a new change
                    // (once per record and sync; a second refusal is final).
                    PushOutcome::Rejected(rejection)
                        if !rejection.retryable && carried.insert(result.id) =>
                    {
                        if self
                            .store
                            .reject_or_carry_over(result.id, &rejection, sent)?
                        {
                            report.carried_over += 1;
                        } else {
                            report.rejected += 1;
                        }
                        settled += 1;
                    }
                    PushOutcome::Rejected(rejection) if !rejection.retryable => {
                        self.store.reject(result.id, &rejection, sent)?;
                        report.rejected += 1;
                        settled += 1;
                    }
                    // The server lacks history these changes build on (it was
                    // restored from a backup, say): exchange histories with
                    // Automerge's sync protocol, then push again.
                    PushOutcome::Rejected(rejection)
                        if rejection.code == RejectCode::MissingDependencies
                            && repaired.insert(result.id) =>
                    {
                        self.repair(result.id, sent.kind, report)?;
                        report.repaired += 1;
                        settled += 1;
                    }
                    // Other retryable rejections stay in the outbox for the next sync.
                    PushOutcome::Rejected(_) => {}
                }
            }
            self.store.acknowledge(&acks)?;
            progress.progress(SyncPhase::Pushing, report.pushed + report.rejected);
            if settled == 0 {
                // Nothing moved (every record was retryably refused): stop rather than loop.
                return Ok(());
            }
        }
    }

    /// Uploads pending attachments. A retryable failure of one attachment
    /// leaves it pending for the next sync, a final refusal puts it in the
    /// refused ledger; only a lost session (revoked, login needed) or the local
    /// store failing stops the sync. When the network gives out the remaining
    /// attachments wait too.
    fn upload_attachments(
        &self,
        progress: &dyn SyncProgress,
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        let pending = self.store.pending_attachments()?;
        let large_ok = self.uploads_large_attachments();
        let mut network_down = false;
        for info in pending {
            // Telling the server about one more record costs no bytes: only the
            // file itself waits for an unmetered network.
            let held_back = !info.uploaded && !large_ok && info.size > LARGE_ATTACHMENT;
            if network_down || held_back {
                report.attachments_pending += 1;
                continue;
            }
            match self.upload_one(&info, report) {
                Ok(()) => {
                    if !info.uploaded {
                        report.attachments_uploaded += 1;
                        progress.progress(SyncPhase::Uploading, report.attachments_uploaded);
                    }
                }
                Err((
                    _,
                    e @ (SyncError::Revoked
                    | SyncError::Auth(_)
                    | SyncError::NotLoggedIn
                    | SyncError::Storage(_)),
                )) => return Err(e),
                Err((_, SyncError::Network(_))) => {
                    network_down = true;
                    report.attachments_pending += 1;
                }
                Err((step, SyncError::Refused { code, message }))
                    if attachment_refusal_is_final(step, &code) =>
                {
                    self.store
                        .refuse_attachment(&info.sha256, &code, &message)?;
                    report.attachments_refused += 1;
                }
                Err(_) => report.attachments_pending += 1,
            }
        }
        Ok(())
    }

    /// Declares the attachment for each record the server does not know about
    /// (the first record when every link is known but the bytes are not
    /// there), sends the chunks the server lacks one at a time, completes.
    fn upload_one(
        &self,
        info: &crate::store::AttachmentInfo,
        report: &mut SyncReport,
    ) -> Result<(), (UploadStep, SyncError)> {
        let mut records = info.undeclared.clone();
        if records.is_empty() {
            records.push(info.record_id);
        }
        let mut have_file = info.uploaded;
        for record_id in records {
            let declaration = AttachmentDeclaration {
                sha256: info.sha256.clone(),
                record_id,
                kind: info.kind.as_str().to_owned(),
                content_type: info.content_type.clone(),
                size: info.size,
            };
            let status = self
                .call(report, |t, token| t.declare_attachment(token, &declaration))
                .map_err(|e| (UploadStep::Declare, e))?;
            if !status.complete {
                self.send_chunks(info, &status, report)?;
            }
            if !have_file {
                self.store
                    .mark_attachment_uploaded(&info.sha256)
                    .map_err(|e| (UploadStep::Complete, e))?;
                have_file = true;
            }
            self.store
                .mark_attachment_declared(&info.sha256, record_id)
                .map_err(|e| (UploadStep::Declare, e))?;
        }
        Ok(())
    }

    /// Sends the chunks `status` does not list as received, reading each from
    /// the store only when it is sent, then completes the upload.
    fn send_chunks(
        &self,
        info: &crate::store::AttachmentInfo,
        status: &AttachmentStatus,
        report: &mut SyncReport,
    ) -> Result<(), (UploadStep, SyncError)> {
        let protocol = |m: String| (UploadStep::Chunk, SyncError::Protocol(m));
        let chunk_size = usize::try_from(status.chunk_size)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| protocol(format!("chunk size {}", status.chunk_size)))?;
        let chunks = info.size.div_ceil(status.chunk_size);
        for idx in 0..chunks {
            let idx = u32::try_from(idx).map_err(|_| protocol("too many chunks".into()))?;
            if status.received.contains(&idx) {
                continue;
            }
            let chunk = self
                .store
                .attachment_chunk(&info.sha256, u64::from(idx) * status.chunk_size, chunk_size)
                .map_err(|e| (UploadStep::Chunk, e))?;
            self.call(report, |t, token| {
                t.put_attachment_chunk(token, &info.sha256, idx, &chunk)
            })
            .map_err(|e| (UploadStep::Chunk, e))?;
        }
        self.call(report, |t, token| {
            t.complete_attachment(token, &info.sha256)
        })
        .map_err(|e| (UploadStep::Complete, e))
    }

    fn pull(&self, progress: &dyn SyncProgress, report: &mut SyncReport) -> Result<(), SyncError> {
        loop {
            let cursor = self.store.cursor()?.unwrap_or(0);
            let known = self.store.log_id()?;
            let req = PullRequest {
                log: known.clone(),
                cursor,
                max_changes: self.options.pull_page,
                window: self.store.scope_window()?,
                health: self.health(),
                history: self.store.reference_records()?,
            };
            let page = self.call(report, |t, token| t.pull(token, &req))?;
            match (&known, &page.log) {
                (Some(known), Some(log)) if known != log => {
                    self.after_restore(log, report)?;
                    continue;
                }
                (None, Some(log)) => self.store.set_log_id(log)?,
                _ => {}
            }
            // Records an erasure rewrote since the device's copy: replaced
            // (the page's changes of each are its new history), the rest
            // applied as usual.
            let adopted = self.store.adopt_epochs(&page.records, &page.epochs)?;
            report.rewritten += adopted.len() as u64;
            let records: Vec<RecordChanges> = page
                .records
                .iter()
                .filter(|r| !adopted.contains(&r.id))
                .cloned()
                .collect();
            self.store
                .apply_page(&records, &page.removed, page.next_cursor)?;
            // Stored after the page: if the app dies in between, the next pull
            // names the old window and gets the entering records again (idempotent).
            self.store.set_scope_window(page.window)?;
            if let Some(reference) = &page.history {
                self.store.set_reference_records(reference)?;
            }
            report.removed += page.removed.len() as u64;
            report.pulled += page
                .records
                .iter()
                .map(|r| r.changes.len() as u64)
                .sum::<u64>();
            progress.progress(SyncPhase::Pulling, report.pulled);
            if !page.more || page.next_cursor <= cursor {
                return Ok(());
            }
        }
    }

    /// The server's database was restored from a backup (its change log has a
    /// new identity): the device's cursor names positions of the old log, and
    /// changes the server acknowledged after the backup may be gone from it.
    /// The device pulls the feed again from the start and repairs every record
    /// it holds with the server (Automerge's sync protocol, as for a record
    /// whose history the server lacks), which brings back what only the device
    /// still has. The new identity is stored last: a sync cut short here
    /// starts over at its next run.
    fn after_restore(&self, log: &str, report: &mut SyncReport) -> Result<(), SyncError> {
        self.store.set_cursor(0)?;
        // Reference records are read-only here: nothing of theirs is only on
        // this device, and the server would not repair them (not in scope).
        let reference = self.store.reference_records()?.unwrap_or_default();
        for (id, kind) in self.store.held_records()? {
            if reference.contains(&id) {
                continue;
            }
            self.repair(id, kind, report)?;
            report.repaired += 1;
        }
        self.store.set_log_id(log)?;
        report.server_restored = true;
        Ok(())
    }

    /// One request with the retry policy: backoff on retryable failures, one
    /// refresh on 401, wipe on revocation.
    fn call<R>(
        &self,
        report: &mut SyncReport,
        request: impl Fn(&T, &str) -> Result<R, TransportError>,
    ) -> Result<R, SyncError> {
        let mut attempt = 0;
        let mut refreshed = false;
        loop {
            let token = self.session().ok_or(SyncError::NotLoggedIn)?.access_token;
            report.round_trips += 1;
            match request(&self.transport, &token) {
                Ok(r) => return Ok(r),
                Err(TransportError::Revoked(_)) => {
                    self.store.wipe()?;
                    if let Ok(mut s) = self.session.lock() {
                        *s = None;
                    }
                    return Err(SyncError::Revoked);
                }
                Err(TransportError::Unauthorized { message, .. }) => {
                    if refreshed {
                        return Err(SyncError::Auth(message));
                    }
                    refreshed = true;
                    self.refresh(report)?;
                }
                Err(e) if e.retryable() => {
                    attempt += 1;
                    if attempt >= self.options.max_attempts {
                        return Err(SyncError::Network(e));
                    }
                    let wait = match &e {
                        TransportError::RateLimited { retry_after } => *retry_after,
                        _ => backoff(&self.options, attempt),
                    };
                    std::thread::sleep(wait);
                }
                Err(TransportError::Refused { code, message, .. }) => {
                    return Err(SyncError::Refused { code, message });
                }
                Err(e) => return Err(SyncError::Network(e)),
            }
        }
    }

    /// Runs Automerge's sync protocol for one record with the server until
    /// neither side has anything to send (or a few rounds have passed). What the
    /// server sends is applied like pulled changes; what the device has and the
    /// server lacks is validated by the server like a push.
    fn repair(
        &self,
        id: RecordId,
        kind: crate::model::RecordKind,
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        use automerge::sync::SyncDoc;
        const MAX_ROUNDS: usize = 8;
        let mut doc = self
            .store
            .document(id)?
            .unwrap_or_else(automerge::AutoCommit::new);
        let mut state = automerge::sync::State::new();
        for _ in 0..MAX_ROUNDS {
            let Some(message) = doc.sync().generate_sync_message(&mut state) else {
                return Ok(());
            };
            let req = RepairRequest {
                id,
                kind,
                message: serde_bytes::ByteBuf::from(message.encode()),
                epoch: crate::protocol::epoch_of(&self.store.epochs(&[id])?, id),
            };
            let resp = self.call(report, |t, token| t.repair(token, &req))?;
            let Some(reply) = resp.message else {
                return Ok(());
            };
            let reply = automerge::sync::Message::decode(&reply)
                .map_err(|e| SyncError::Protocol(format!("repair answer: {e}")))?;
            let before = doc.get_heads();
            doc.sync()
                .receive_sync_message(&mut state, reply)
                .map_err(|e| SyncError::Protocol(format!("repair answer: {e}")))?;
            let new: Vec<serde_bytes::ByteBuf> = doc
                .get_changes(&before)
                .into_iter()
                .map(|c| serde_bytes::ByteBuf::from(c.raw_bytes().to_vec()))
                .collect();
            if !new.is_empty() {
                self.store.apply_remote(&[RecordChanges {
                    id,
                    kind,
                    changes: new,
                }])?;
            }
        }
        Ok(())
    }

    /// Trades the refresh token for a new pair, retrying a network failure
    /// with the sync's backoff policy like any request: the server takes a
    /// token presented again shortly after its rotation as a retry after a
    /// lost answer, not as a stolen token. (Without the retry, a refresh that
    /// met a dropped connection failed the whole sync.)
    fn refresh(&self, report: &mut SyncReport) -> Result<(), SyncError> {
        let mut attempt = 0;
        loop {
            let refresh_token = self.session().ok_or(SyncError::NotLoggedIn)?.refresh_token;
            report.round_trips += 1;
            match self.transport.refresh(&refresh_token) {
                Ok(resp) => {
                    self.set_session(Session {
                        access_token: resp.access_token,
                        refresh_token: resp.refresh_token,
                    });
                    return Ok(());
                }
                Err(TransportError::Revoked(_)) => {
                    self.store.wipe()?;
                    return Err(SyncError::Revoked);
                }
                Err(e) if e.retryable() => {
                    attempt += 1;
                    if attempt >= self.options.max_attempts {
                        return Err(SyncError::Network(e));
                    }
                    let wait = match &e {
                        TransportError::RateLimited { retry_after } => *retry_after,
                        _ => backoff(&self.options, attempt),
                    };
                    std::thread::sleep(wait);
                }
                Err(e) => return Err(SyncError::Auth(e.to_string())),
            }
        }
    }
}

/// Exponential backoff with jitter: a random delay between half and all of `base × 2^attempt`,
/// capped, so many devices coming back online together do not retry in step.
/// The whole history of each snapshot at a listed epoch, as changes (a
/// priming that meets a record the device holds at an older epoch).
fn snapshot_changes(
    snapshots: &[Snapshot],
    epochs: &[RecordEpoch],
) -> Result<Vec<RecordChanges>, SyncError> {
    let mut out = Vec::new();
    for s in snapshots
        .iter()
        .filter(|s| epochs.iter().any(|e| e.id == s.id))
    {
        let mut am = automerge::AutoCommit::load(&s.doc)
            .map_err(|e| SyncError::Protocol(format!("snapshot of {}: {e}", s.id)))?;
        out.push(RecordChanges {
            id: s.id,
            kind: s.kind,
            changes: am
                .get_changes(&[])
                .iter()
                .map(|c| serde_bytes::ByteBuf::from(c.raw_bytes().to_vec()))
                .collect(),
        });
    }
    Ok(out)
}

fn backoff(options: &SyncOptions, attempt: u32) -> Duration {
    let ceiling = options
        .base_backoff
        .saturating_mul(1u32 << attempt.min(16))
        .min(options.max_backoff);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(jitter(nanos))
}

fn jitter(max: u64) -> u64 {
    use std::hash::{BuildHasher, RandomState};
    if max == 0 {
        return 0;
    }
    // A fresh RandomState is seeded randomly per process and per call.
    let r = RandomState::new().hash_one(std::time::SystemTime::now());
    max / 2 + r % (max / 2 + 1)
}

/// `sync_meta` key of the scope window, as `from_ms,to_ms`.
const META_SCOPE_WINDOW: &str = "scope_window";
/// The identity of the server's change log the device last synced with.
const META_LOG: &str = "change_log";
/// Where a priming cut short stands (`<record id>,<cursor>`).
const META_PRIME: &str = "prime_progress";

impl SyncStore for crate::store::DeviceStore {
    fn epochs(&self, ids: &[RecordId]) -> Result<Vec<RecordEpoch>, SyncError> {
        Ok(crate::store::DeviceStore::epochs(self, ids)?)
    }

    fn adopt_epochs(
        &self,
        records: &[RecordChanges],
        epochs: &[RecordEpoch],
    ) -> Result<Vec<RecordId>, SyncError> {
        Ok(crate::store::DeviceStore::adopt_epochs(
            self, records, epochs,
        )?)
    }
    fn unsynced(&self) -> Result<(u64, Option<i64>), SyncError> {
        Ok((self.pending_changes()?, self.oldest_pending_ms()?))
    }

    fn pending(&self, max_records: usize) -> Result<Vec<PendingRecord>, SyncError> {
        Ok(self
            .outbox_batch_hashed(max_records)?
            .into_iter()
            .map(|(rec, hashes)| (rec, hashes.iter().map(|h| h.0.to_vec()).collect()))
            .collect())
    }

    fn acknowledge(&self, acks: &[(RecordId, Vec<Vec<u8>>)]) -> Result<(), SyncError> {
        let acks: Vec<(RecordId, Vec<automerge::ChangeHash>)> = acks
            .iter()
            .map(|(id, hashes)| {
                let hashes = hashes
                    .iter()
                    .filter_map(|h| automerge::ChangeHash::try_from(h.as_slice()).ok())
                    .collect();
                (*id, hashes)
            })
            .collect();
        Ok(crate::store::DeviceStore::acknowledge_all(self, &acks)?)
    }

    fn reject(
        &self,
        _id: RecordId,
        rejection: &Rejection,
        changes: &RecordChanges,
    ) -> Result<(), SyncError> {
        Ok(crate::store::DeviceStore::reject(self, changes, rejection)?)
    }

    fn reject_or_carry_over(
        &self,
        id: RecordId,
        rejection: &Rejection,
        changes: &RecordChanges,
    ) -> Result<bool, SyncError> {
        let clash = self.is_restored_clash(changes, rejection)?;
        crate::store::DeviceStore::reject(self, changes, rejection)?;
        if !clash {
            return Ok(false);
        }
        // The refusal is in the ledger (and the record reset to the server's
        // copy) first, so an app killed before the edit is carried over still
        // holds it there, for the user to restore.
        let Some(entry) = self.rejections()?.into_iter().find(|e| e.record_id == id) else {
            return Ok(false);
        };
        match self.restore_rejection(entry.seq) {
            Ok(_) => Ok(true),
            // It does not fit after all: it stays in the ledger, as any refusal.
            Err(crate::store::StoreError::Model(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn apply_page(
        &self,
        records: &[RecordChanges],
        removed: &[RecordId],
        next_cursor: u64,
    ) -> Result<(), SyncError> {
        Ok(crate::store::DeviceStore::apply_page(
            self,
            records,
            removed,
            Some(next_cursor),
        )?)
    }

    fn apply_snapshots(&self, snapshots: &[Snapshot]) -> Result<(), SyncError> {
        Ok(crate::store::DeviceStore::apply_snapshots(self, snapshots)?)
    }

    fn apply_prime_page(&self, snapshots: &[Snapshot], stand: PrimeStand) -> Result<(), SyncError> {
        let (cursor, progress) = match stand {
            PrimeStand::After { record, cursor } => (None, format!("{record},{cursor}")),
            // An empty progress reads back as none.
            PrimeStand::Done { cursor } => (Some(cursor), String::new()),
        };
        Ok(self.apply_snapshots_noting(snapshots, cursor, &[(META_PRIME, &progress)])?)
    }

    fn cursor(&self) -> Result<Option<u64>, SyncError> {
        Ok(crate::store::DeviceStore::cursor(self)?)
    }

    fn set_cursor(&self, cursor: u64) -> Result<(), SyncError> {
        Ok(crate::store::DeviceStore::set_cursor(self, cursor)?)
    }

    fn scope_window(&self) -> Result<Option<ScopeWindow>, SyncError> {
        let Some(text) = self.meta_get(META_SCOPE_WINDOW)? else {
            return Ok(None);
        };
        // Written by `set_scope_window` only; anything else is treated as no window,
        // which at worst makes the next pull send records the device already has.
        Ok(text.split_once(',').and_then(|(from, to)| {
            Some(ScopeWindow {
                from_ms: from.parse().ok()?,
                to_ms: to.parse().ok()?,
            })
        }))
    }

    fn set_scope_window(&self, window: Option<ScopeWindow>) -> Result<(), SyncError> {
        let text = window.map_or_else(String::new, |w| format!("{},{}", w.from_ms, w.to_ms));
        Ok(self.meta_set(META_SCOPE_WINDOW, &text)?)
    }

    fn wipe(&self) -> Result<(), SyncError> {
        Ok(crate::store::DeviceStore::wipe(self)?)
    }

    fn set_actor(&self, actor: automerge::ActorId) -> Result<(), SyncError> {
        Ok(self.set_actor_id(actor)?)
    }

    fn set_role(&self, role: Role) -> Result<(), SyncError> {
        Ok(crate::store::DeviceStore::set_role(self, role)?)
    }

    fn log_id(&self) -> Result<Option<String>, SyncError> {
        Ok(self.meta_get(META_LOG)?)
    }

    fn set_log_id(&self, log: &str) -> Result<(), SyncError> {
        Ok(self.meta_set(META_LOG, log)?)
    }

    fn held_records(&self) -> Result<Vec<(RecordId, crate::model::RecordKind)>, SyncError> {
        Ok(crate::store::DeviceStore::held_records(self)?)
    }

    fn prime_progress(&self) -> Result<Option<(RecordId, u64)>, SyncError> {
        let Some(text) = self.meta_get(META_PRIME)? else {
            return Ok(None);
        };
        // Written by `set_prime_progress` only; anything else starts over.
        Ok(text
            .split_once(',')
            .and_then(|(after, cursor)| Some((after.parse().ok()?, cursor.parse().ok()?))))
    }

    fn set_prime_progress(&self, progress: Option<(RecordId, u64)>) -> Result<(), SyncError> {
        let text = progress.map_or_else(String::new, |(after, cursor)| format!("{after},{cursor}"));
        Ok(self.meta_set(META_PRIME, &text)?)
    }

    fn reference_records(&self) -> Result<Option<Vec<RecordId>>, SyncError> {
        Ok(Some(crate::store::DeviceStore::reference_records(self)?))
    }

    fn set_reference_records(&self, ids: &[RecordId]) -> Result<(), SyncError> {
        Ok(crate::store::DeviceStore::set_reference_records(self, ids)?)
    }

    fn document(&self, id: RecordId) -> Result<Option<automerge::AutoCommit>, SyncError> {
        match self.doc(id) {
            Ok(doc) => Ok(Some(doc.into_automerge())),
            Err(crate::store::StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn apply_remote(&self, records: &[RecordChanges]) -> Result<(), SyncError> {
        Ok(crate::store::DeviceStore::apply_remote(self, records)?)
    }

    fn pending_attachments(&self) -> Result<Vec<crate::store::AttachmentInfo>, SyncError> {
        Ok(crate::store::DeviceStore::pending_attachments(self)?)
    }

    fn attachment_chunk(
        &self,
        sha256: &str,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, SyncError> {
        Ok(crate::store::DeviceStore::attachment_chunk(
            self, sha256, offset, len,
        )?)
    }

    fn mark_attachment_uploaded(&self, sha256: &str) -> Result<(), SyncError> {
        Ok(crate::store::DeviceStore::mark_attachment_uploaded(
            self, sha256,
        )?)
    }

    fn mark_attachment_declared(&self, sha256: &str, record_id: RecordId) -> Result<(), SyncError> {
        Ok(crate::store::DeviceStore::mark_attachment_declared(
            self, sha256, record_id,
        )?)
    }

    fn refuse_attachment(&self, sha256: &str, code: &str, message: &str) -> Result<(), SyncError> {
        Ok(crate::store::DeviceStore::refuse_attachment(
            self, sha256, code, message,
        )?)
    }
}

impl<S: SyncStore> SyncStore for std::sync::Arc<S> {
    fn epochs(&self, ids: &[RecordId]) -> Result<Vec<RecordEpoch>, SyncError> {
        (**self).epochs(ids)
    }

    fn adopt_epochs(
        &self,
        records: &[RecordChanges],
        epochs: &[RecordEpoch],
    ) -> Result<Vec<RecordId>, SyncError> {
        (**self).adopt_epochs(records, epochs)
    }
    fn pending(&self, max_records: usize) -> Result<Vec<PendingRecord>, SyncError> {
        (**self).pending(max_records)
    }
    fn acknowledge(&self, acks: &[(RecordId, Vec<Vec<u8>>)]) -> Result<(), SyncError> {
        (**self).acknowledge(acks)
    }
    fn reject(
        &self,
        id: RecordId,
        rejection: &Rejection,
        changes: &RecordChanges,
    ) -> Result<(), SyncError> {
        (**self).reject(id, rejection, changes)
    }
    fn apply_page(
        &self,
        records: &[RecordChanges],
        removed: &[RecordId],
        next_cursor: u64,
    ) -> Result<(), SyncError> {
        (**self).apply_page(records, removed, next_cursor)
    }
    fn apply_snapshots(&self, snapshots: &[Snapshot]) -> Result<(), SyncError> {
        (**self).apply_snapshots(snapshots)
    }
    fn apply_prime_page(&self, snapshots: &[Snapshot], stand: PrimeStand) -> Result<(), SyncError> {
        (**self).apply_prime_page(snapshots, stand)
    }
    fn reject_or_carry_over(
        &self,
        id: RecordId,
        rejection: &Rejection,
        changes: &RecordChanges,
    ) -> Result<bool, SyncError> {
        (**self).reject_or_carry_over(id, rejection, changes)
    }
    fn cursor(&self) -> Result<Option<u64>, SyncError> {
        (**self).cursor()
    }
    fn set_cursor(&self, cursor: u64) -> Result<(), SyncError> {
        (**self).set_cursor(cursor)
    }
    fn scope_window(&self) -> Result<Option<ScopeWindow>, SyncError> {
        (**self).scope_window()
    }
    fn set_scope_window(&self, window: Option<ScopeWindow>) -> Result<(), SyncError> {
        (**self).set_scope_window(window)
    }
    fn wipe(&self) -> Result<(), SyncError> {
        (**self).wipe()
    }
    fn set_actor(&self, actor: automerge::ActorId) -> Result<(), SyncError> {
        (**self).set_actor(actor)
    }

    fn set_role(&self, role: Role) -> Result<(), SyncError> {
        (**self).set_role(role)
    }
    fn log_id(&self) -> Result<Option<String>, SyncError> {
        (**self).log_id()
    }
    fn set_log_id(&self, log: &str) -> Result<(), SyncError> {
        (**self).set_log_id(log)
    }
    fn held_records(&self) -> Result<Vec<(RecordId, crate::model::RecordKind)>, SyncError> {
        (**self).held_records()
    }
    fn prime_progress(&self) -> Result<Option<(RecordId, u64)>, SyncError> {
        (**self).prime_progress()
    }
    fn set_prime_progress(&self, progress: Option<(RecordId, u64)>) -> Result<(), SyncError> {
        (**self).set_prime_progress(progress)
    }
    fn reference_records(&self) -> Result<Option<Vec<RecordId>>, SyncError> {
        (**self).reference_records()
    }
    fn set_reference_records(&self, ids: &[RecordId]) -> Result<(), SyncError> {
        (**self).set_reference_records(ids)
    }
    fn document(&self, id: RecordId) -> Result<Option<automerge::AutoCommit>, SyncError> {
        (**self).document(id)
    }
    fn apply_remote(&self, records: &[RecordChanges]) -> Result<(), SyncError> {
        (**self).apply_remote(records)
    }
    fn pending_attachments(&self) -> Result<Vec<crate::store::AttachmentInfo>, SyncError> {
        (**self).pending_attachments()
    }
    fn attachment_chunk(
        &self,
        sha256: &str,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, SyncError> {
        (**self).attachment_chunk(sha256, offset, len)
    }
    fn unsynced(&self) -> Result<(u64, Option<i64>), SyncError> {
        (**self).unsynced()
    }
    fn mark_attachment_uploaded(&self, sha256: &str) -> Result<(), SyncError> {
        (**self).mark_attachment_uploaded(sha256)
    }
    fn mark_attachment_declared(&self, sha256: &str, record_id: RecordId) -> Result<(), SyncError> {
        (**self).mark_attachment_declared(sha256, record_id)
    }
    fn refuse_attachment(&self, sha256: &str, code: &str, message: &str) -> Result<(), SyncError> {
        (**self).refuse_attachment(sha256, code, message)
    }
}

/// The step of an attachment upload a failure happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadStep {
    /// `POST /v1/attachments`: the file's kind, size, type and record.
    Declare,
    /// `PUT …/chunks/{idx}`: one chunk.
    Chunk,
    /// `POST …/complete`: the whole file checked against its hash.
    Complete,
}

/// Whether the server's refusal (`code`, at `step`) of an attachment can never
/// change by trying again, so the attachment goes to the refused ledger.
///
/// Final: the file is too large for its kind, its kind or content type is not
/// taken (`bad_request`, `invalid_json`), the caller may not attach it
/// (`forbidden`), it was declared before with another size (`conflict` when
/// declaring), or the whole file does not hash to its name (`hash_mismatch`:
/// the device's copy is not what it claims to be). Not final: the record is not
/// on the server yet (`not_found`: its push may be pending), a chunk corrupted
/// in transit (`chunk_corrupt`), chunks missing at completion (`conflict`), and
/// any code this build does not know.
pub fn attachment_refusal_is_final(step: UploadStep, code: &str) -> bool {
    match code {
        "attachment_too_large" | "bad_request" | "invalid_json" | "forbidden" | "hash_mismatch" => {
            true
        }
        "conflict" => step == UploadStep::Declare,
        _ => false,
    }
}

impl From<crate::store::StoreError> for SyncError {
    fn from(e: crate::store::StoreError) -> Self {
        SyncError::Storage(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::too_large(UploadStep::Declare, "attachment_too_large", true)]
    #[case::unknown_content_type(UploadStep::Declare, "bad_request", true)]
    #[case::unknown_kind(UploadStep::Declare, "invalid_json", true)]
    #[case::forbidden(UploadStep::Declare, "forbidden", true)]
    #[case::declared_with_another_size(UploadStep::Declare, "conflict", true)]
    #[case::whole_file_hash_mismatch(UploadStep::Complete, "hash_mismatch", true)]
    #[case::record_not_pushed_yet(UploadStep::Declare, "not_found", false)]
    #[case::chunk_corrupted_in_transit(UploadStep::Chunk, "chunk_corrupt", false)]
    #[case::chunks_missing_at_completion(UploadStep::Complete, "conflict", false)]
    #[case::unknown_code(UploadStep::Chunk, "something_new", false)]
    fn attachment_refusals(#[case] step: UploadStep, #[case] code: &str, #[case] last: bool) {
        assert_eq!(attachment_refusal_is_final(step, code), last);
    }

    #[test]
    fn backoff_grows_and_stays_under_the_cap() {
        let o = SyncOptions {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..SyncOptions::default()
        };
        for attempt in 1..20 {
            let d = backoff(&o, attempt);
            assert!(d <= Duration::from_secs(1), "{d:?}");
            let floor = (Duration::from_millis(100) * (1 << attempt.min(16)))
                .min(Duration::from_secs(1))
                / 2;
            assert!(d >= floor, "attempt {attempt}: {d:?} < {floor:?}");
        }
    }
}
