//! The push path itself: one push's pre-flight, merge and transaction (with
//! group commit, the SQLite write gate, the retry on a racing create, the
//! live note and the metrics), and [`push_since`] for what the server
//! writes. What the server does after a push committed (a job's roll-up) is
//! added by [`super::sync::push`], which every device push and every write
//! made on someone's behalf goes through; the roll-up itself writes through
//! here, so it never triggers itself.

use std::collections::HashMap;
use std::sync::Arc;

use automerge::ChangeHash;
use fieldsync_core::RecordId;
use fieldsync_core::model::{RecordDoc, RecordKind};
use fieldsync_core::protocol::{PushOutcome, PushRequest, PushResponse, RecordChanges};
use serde_bytes::ByteBuf;
use uuid::Uuid;

use super::Context;
use crate::db::records::{self, WriteGate};
use crate::db::{Database, DbError};
use crate::domain::push::{self, MAX_PUSH_RECORDS};
use crate::domain::{Caller, Error, Result};
use fieldsync_core::OrgId;

/// How many times a push is retried when a concurrent push created the same record.
const PUSH_ATTEMPTS: usize = 3;

/// What a stored push answers, and what the server reacts to after it.
#[derive(Debug)]
pub struct Pushed {
    /// The answer to the pusher.
    pub response: PushResponse,
    /// The written records that are new or whose status moved: (id, kind, parent).
    pub status_changes: Vec<(RecordId, RecordKind, Option<RecordId>)>,
}

/// Applies a push; each record is accepted or refused on its own. Errors are
/// failures of the whole request (nothing was stored). Nothing happens after
/// the commit here: [`super::sync::push`] adds the server's reactions.
pub async fn push(ctx: &Context, caller: &Caller, req: &PushRequest) -> Result<Pushed> {
    push_with(ctx, caller, req, false).await
}

/// Most time an all-or-nothing push may spend merging. Such a push is the
/// server's own (an administrator's import, checked before and bounded in
/// records), so it gets more than a device push's `MERGE_BUDGET`: on a slow
/// or busy node a large import would otherwise be refused whole for time
/// alone.
pub const IMPORT_MERGE_BUDGET: std::time::Duration = std::time::Duration::from_secs(60);

/// [`push`], where nothing is written when any record is refused (a bulk
/// import: all or nothing), merged within [`IMPORT_MERGE_BUDGET`].
pub async fn push_all_or_nothing(
    ctx: &Context,
    caller: &Caller,
    req: &PushRequest,
) -> Result<Pushed> {
    push_with(ctx, caller, req, true).await
}

async fn push_with(
    ctx: &Context,
    caller: &Caller,
    req: &PushRequest,
    all_or_nothing: bool,
) -> Result<Pushed> {
    let budget = if all_or_nothing {
        IMPORT_MERGE_BUDGET
    } else {
        push::MERGE_BUDGET
    };
    if req.records.len() > MAX_PUSH_RECORDS {
        return Err(Error::InvalidMessage(format!(
            "a push carries at most {MAX_PUSH_RECORDS} records; this one has {}",
            req.records.len()
        )));
    }
    let records = Arc::new(push::dedupe(&req.records));
    // A device's changes made on an epoch an erasure has since rewritten are
    // refused before anything is merged (the epochs come with the first
    // early copy of the records, below). The server's own writes (a web
    // page's, an import's) are made on the copy it just loaded.
    let mut stored_epochs = None;
    // A device's push stamps its sync (and the health it reported) in the
    // push's transaction; the server writing on someone's behalf has none.
    let stamp = caller
        .device()
        .map(|d| (d, req.health.as_ref().map(super::analytics::health_report)));
    // What each record's changes cost to merge, counted on the blocking pool
    // in the same hand-off as the first merge: an operation bomb is refused
    // there, before anything is merged. Kept for the attempts after a race.
    let mut preflight: Option<Arc<push::Preflight>> = None;
    let mut attempt = 0;
    loop {
        attempt += 1;
        // Merge first, on the blocking pool and before the write gate, from
        // a copy loaded without locks: an expensive push keeps one blocking
        // thread busy, never the async threads or the other writers.
        let merge_started = std::time::Instant::now();
        let (early, epochs) = records::load_for_push(&ctx.db, caller, &records).await?;
        if caller.actor.device.is_some() && stored_epochs.is_none() {
            stored_epochs = Some(epochs);
        }
        let slot = ctx.committer.merge_slot().await;
        let (checked, merged) = {
            let (caller, records, known) =
                (caller.clone(), Arc::clone(&records), preflight.clone());
            let (pushed_epochs, stored_epochs) = (req.epochs.clone(), stored_epochs.clone());
            let early = early.clone();
            tokio::task::spawn_blocking(move || {
                // The changes as the pre-flight read them are merged as they
                // are (read once); after a race they are read again.
                let (checked, read) = match known {
                    Some(checked) => (checked, Vec::new()),
                    None => {
                        let (counted, read) = push::preflight(&records);
                        let checked = match &stored_epochs {
                            Some(stored) => {
                                push::refuse_stale_epochs(&records, &pushed_epochs, stored, counted)
                            }
                            None => counted,
                        };
                        (Arc::new(checked), read)
                    }
                };
                let merged = push::decide_all(&caller, &records, &early, &checked, &read, budget);
                (checked, merged)
            })
            .await
            .map_err(|e| Error::internal(format!("push merge: {e}")))?
        };
        drop(slot);
        preflight = Some(Arc::clone(&checked));
        let early_merge = merge_started.elapsed();
        let decide: records::Decide<'static> = {
            let (caller, records, checked) =
                (caller.clone(), Arc::clone(&records), Arc::clone(&checked));
            let metrics = Arc::clone(&ctx.metrics);
            Box::new(move |loaded: &[Option<push::Loaded>]| {
                if loaded == early.as_slice() {
                    merged
                } else {
                    // A concurrent push changed one of these records since the
                    // copy was loaded: merge again onto what is stored now (each
                    // record's cost is bounded by the pre-flight and the budget).
                    metrics.push_remerged();
                    off_async_threads(|| {
                        push::decide_all(&caller, &records, loaded, &checked, &[], budget)
                    })
                }
            })
        };
        let job = records::PushJob {
            caller: caller.clone(),
            batch: req.batch,
            records: Arc::clone(&records),
            all_or_nothing,
            stamp: stamp.clone(),
            decide,
        };
        let result = ctx.committer.write(&ctx.db, &ctx.gate, job).await;
        match result {
            Ok(applied) => {
                ctx.metrics.push_applied(
                    early_merge + applied.merge_time,
                    applied.commit_time,
                    applied.changes_written,
                );
                // SQLite: one node, so the note goes straight to its hub
                // (PostgreSQL sent it with the commit, to every node).
                if let (Database::Sqlite(_), Some(note)) = (&ctx.db, applied.note) {
                    ctx.hub.publish(note);
                }
                let response = push::response(applied.results);
                ctx.metrics.pushed(&response);
                return Ok(Pushed {
                    response,
                    status_changes: applied.status_changes,
                });
            }
            Err(e)
                if (e.unique_violation().is_some() || matches!(*e, DbError::IdTaken))
                    && attempt < PUSH_ATTEMPTS =>
            {
                // Another push created one of these records at the same moment:
                // run again, now merging into its copy (or, when it was
                // another organisation's, refusing the record).
                tracing::debug!(attempt, "push raced with another; retrying");
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Most pushes one group transaction writes.
const MAX_GROUP_PUSHES: usize = 64;

/// Most records one group transaction writes (a push alone may bring up to
/// `MAX_PUSH_RECORDS`).
const MAX_GROUP_RECORDS: usize = 2_000;

/// What a push waits for from its organisation's writer.
type Answer = Result<records::Applied, Arc<DbError>>;

/// A push waiting for its turn to write.
struct Waiting {
    job: records::PushJob<'static>,
    reply: tokio::sync::oneshot::Sender<Answer>,
}

/// Group commit: the pushes of one organisation that wait for their turn to
/// write go out together, in one transaction of `db::records::apply_pushes`
/// (a few statements and one commit for all of them instead of a dozen
/// statements and a commit each). Each organisation has one writer task on
/// a node, started at its first push; it takes whatever waits when it is
/// free, so a lone push is written at once and a crowd in a few rounds. Its
/// pushes' records are disjoint: a push that shares a record with one
/// already in the group waits for the next round, where it is loaded with
/// the first one's writes. A writer that has had nothing to write for
/// [`WRITER_IDLE`] stops, so a node serving many organisations keeps tasks
/// only for those that push; the next push starts a new one.
#[derive(Debug)]
pub struct Committer {
    writers: Arc<std::sync::Mutex<HashMap<OrgId, Writer>>>,
    /// Numbers the writers started, so that a writer retiring (or a push
    /// finding one gone) removes its own entry and never its successor's.
    started: std::sync::atomic::AtomicU64,
    /// How long a writer waits for a push before it stops.
    idle: std::time::Duration,
    /// One per core: how many pushes merge at once before their turn to
    /// write. A crowd of pushes merged all at once shares the cores among
    /// all of them, so they all finish late and together, and the writer
    /// idles until then; merged a few at a time, each is ready early and
    /// written while the next ones merge.
    merging: tokio::sync::Semaphore,
}

/// How long an organisation's writer waits for a push before it stops.
pub const WRITER_IDLE: std::time::Duration = std::time::Duration::from_secs(300);

/// An organisation's running writer: its queue, and which writer it is.
#[derive(Debug)]
struct Writer {
    number: u64,
    queue: tokio::sync::mpsc::UnboundedSender<Waiting>,
}

impl Default for Committer {
    fn default() -> Self {
        Committer::with_idle(WRITER_IDLE)
    }
}

impl Committer {
    /// A committer whose writers stop after `idle` without a push (tests
    /// shorten [`WRITER_IDLE`] to watch them go).
    pub fn with_idle(idle: std::time::Duration) -> Self {
        Committer {
            writers: Default::default(),
            started: Default::default(),
            idle,
            merging: tokio::sync::Semaphore::new(push::cores()),
        }
    }

    /// Waits for a core to merge a push on (see `merging`).
    pub async fn merge_slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        // The semaphore is never closed; a closed one would only stop the bound.
        self.merging.acquire().await.ok()
    }

    /// How many organisations have a writer running on this node.
    pub fn writers(&self) -> usize {
        self.writers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Writes `job` with whatever else of its organisation waits, and
    /// answers its part (on SQLite the group holds `gate`).
    pub async fn write(
        &self,
        db: &Database,
        gate: &Arc<WriteGate>,
        job: records::PushJob<'static>,
    ) -> Answer {
        let org = job.caller.org;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let mut waiting = Waiting { job, reply };
        // A writer that stopped (it retired as this push took its queue, or
        // its runtime ended) is started again.
        for _ in 0..3 {
            let (number, sender) = {
                let mut writers = self
                    .writers
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let writer = writers.entry(org).or_insert_with(|| {
                    let number = self
                        .started
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let (queue, rx) = tokio::sync::mpsc::unbounded_channel();
                    let retire = Retire {
                        writers: Arc::downgrade(&self.writers),
                        org,
                        number,
                        idle: self.idle,
                    };
                    tokio::spawn(write_groups(db.clone(), Arc::clone(gate), rx, retire));
                    Writer { number, queue }
                });
                (writer.number, writer.queue.clone())
            };
            match sender.send(waiting) {
                Ok(()) => {
                    return answer.await.unwrap_or_else(|_| {
                        Err(Arc::new(DbError::Internal(
                            "the organisation's writer stopped before answering",
                        )))
                    });
                }
                Err(tokio::sync::mpsc::error::SendError(back)) => {
                    waiting = back;
                    forget_writer(&self.writers, org, number);
                }
            }
        }
        Err(Arc::new(DbError::Internal(
            "no writer for the organisation could be started",
        )))
    }
}

/// Takes writer `number` of `org` off `writers`, unless another has taken
/// its place.
fn forget_writer(writers: &std::sync::Mutex<HashMap<OrgId, Writer>>, org: OrgId, number: u64) {
    let mut writers = writers
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if writers.get(&org).is_some_and(|w| w.number == number) {
        writers.remove(&org);
    }
}

/// What a writer needs to stop when idle: where it is listed, and as what.
/// The list is held weakly: a committer dropped (a test's, a node's at
/// shutdown) drops its writers' queues, and they end at once.
struct Retire {
    writers: std::sync::Weak<std::sync::Mutex<HashMap<OrgId, Writer>>>,
    org: OrgId,
    number: u64,
    idle: std::time::Duration,
}

/// An organisation's writer: takes the waiting pushes in rounds and writes
/// each round in one transaction. Idle for `retire.idle`, it takes itself
/// off the list (the next push starts another writer), closes its queue,
/// writes what was sent before the close, and ends.
async fn write_groups(
    db: Database,
    gate: Arc<WriteGate>,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<Waiting>,
    retire: Retire,
) {
    use futures_util::FutureExt;
    let mut deferred: std::collections::VecDeque<Waiting> = Default::default();
    loop {
        let first = match deferred.pop_front() {
            Some(w) => w,
            None => match tokio::time::timeout(retire.idle, queue.recv()).await {
                Ok(Some(w)) => w,
                Ok(None) => return,
                Err(_idle) => {
                    // A push that took this queue off the list before it was
                    // removed either sent before the close (and is written
                    // here: `recv` yields it before `None`) or finds the
                    // queue closed and starts a new writer.
                    if let Some(writers) = retire.writers.upgrade() {
                        forget_writer(&writers, retire.org, retire.number);
                    }
                    queue.close();
                    continue;
                }
            },
        };
        let mut touched: std::collections::HashSet<RecordId> =
            first.job.records.iter().map(|r| r.id).collect();
        let mut size = first.job.records.len();
        let mut group = vec![first];
        let mut later = std::collections::VecDeque::new();
        let mut looked = 0;
        while group.len() < MAX_GROUP_PUSHES && looked < 4 * MAX_GROUP_PUSHES {
            let Some(next) = deferred.pop_front().or_else(|| queue.try_recv().ok()) else {
                break;
            };
            looked += 1;
            let shares = next.job.records.iter().any(|r| touched.contains(&r.id));
            if shares || size + next.job.records.len() > MAX_GROUP_RECORDS {
                later.push_back(next);
                continue;
            }
            size += next.job.records.len();
            touched.extend(next.job.records.iter().map(|r| r.id));
            group.push(next);
        }
        later.extend(deferred.drain(..));
        deferred = later;
        let (jobs, replies): (Vec<_>, Vec<_>) = group.into_iter().map(|w| (w.job, w.reply)).unzip();
        let written = std::panic::AssertUnwindSafe(async {
            let _writer = gate.enter(&db).await;
            records::apply_pushes(&db, jobs).await
        })
        .catch_unwind()
        .await;
        match written {
            Ok(Ok(applied)) => {
                for (reply, applied) in replies.into_iter().zip(applied) {
                    let _ = reply.send(Ok(applied));
                }
            }
            Ok(Err(e)) => {
                let e = Arc::new(e);
                for reply in replies {
                    let _ = reply.send(Err(Arc::clone(&e)));
                }
            }
            Err(_) => {
                tracing::error!(
                    "a group of pushes panicked while writing; nothing of it was stored"
                );
                let e = Arc::new(DbError::Internal("the push's write failed"));
                for reply in replies {
                    let _ = reply.send(Err(Arc::clone(&e)));
                }
            }
        }
    }
}

/// Runs CPU-bound `f` on this async thread, telling a multi-threaded runtime to
/// move its other tasks elsewhere meanwhile (a current-thread runtime, as in
/// some tests, just runs it).
fn off_async_threads<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Stores the changes made to `doc` since `before` through the push path a
/// device uses (scope, state machines, change log, live notes), as `caller`,
/// without the server's reactions (a job's roll-up writes the job only); a
/// refusal is a conflict with the push's reason.
pub async fn push_since(
    ctx: &Context,
    caller: &Caller,
    id: RecordId,
    kind: RecordKind,
    doc: &mut RecordDoc,
    before: &[ChangeHash],
) -> Result<()> {
    let pushed = push(ctx, caller, &since(id, kind, doc, before)).await?;
    accepted(pushed.response)
}

/// The push of the changes made to `doc` since `before`.
pub(super) fn since(
    id: RecordId,
    kind: RecordKind,
    doc: &mut RecordDoc,
    before: &[ChangeHash],
) -> PushRequest {
    let changes: Vec<ByteBuf> = doc
        .automerge()
        .get_changes(before)
        .iter()
        .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
        .collect();
    PushRequest {
        batch: Uuid::now_v7(),
        records: vec![RecordChanges { id, kind, changes }],
        health: None,
        epochs: Vec::new(),
    }
}

/// The one record of a push accepted, or its refusal as a conflict.
pub(super) fn accepted(resp: PushResponse) -> Result<()> {
    match resp.results.into_iter().next().map(|r| r.outcome) {
        Some(PushOutcome::Accepted { .. }) => Ok(()),
        Some(PushOutcome::Rejected(r)) => Err(Error::Conflict(r.message)),
        None => Err(Error::internal("the push answered nothing")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldsync_core::UserId;
    use fieldsync_core::model::{Actor, Role};

    /// A push that takes a writer's queue off the list just as the writer
    /// retires finds it closed: it takes that writer off the list (and no
    /// other) and starts a new one, which writes it.
    #[tokio::test]
    async fn a_push_that_finds_its_writer_gone_starts_another() {
        let db = Database::connect("sqlite::memory:", 1)
            .await
            .expect("an in-memory database");
        db.migrate().await.expect("migrated");
        let gate = Arc::new(WriteGate::default());
        let committer = Committer::with_idle(WRITER_IDLE);
        let org = OrgId::new();
        let (gone, closed) = tokio::sync::mpsc::unbounded_channel();
        drop(closed);
        committer.writers.lock().expect("not poisoned").insert(
            org,
            Writer {
                number: u64::MAX,
                queue: gone,
            },
        );
        let user = UserId::new();
        let job = records::PushJob {
            caller: crate::domain::Caller {
                actor: Actor::without_device(user, Role::Admin),
                org,
                team: None,
                territory: None,
                display_name: "Admin".into(),
                actor_id: automerge::ActorId::random(),
                window: None,
            },
            batch: Uuid::now_v7(),
            records: Arc::new(Vec::new()),
            all_or_nothing: false,
            stamp: None,
            decide: Box::new(|_| push::Decisions::default()),
        };
        let written = committer.write(&db, &gate, job).await;
        assert!(written.is_ok(), "{written:?}");
        let writers = committer.writers.lock().expect("not poisoned");
        assert_eq!(writers.len(), 1);
        assert_ne!(writers[&org].number, u64::MAX, "a new writer took the push");
    }
}
