//! The push path itself: one push's pre-flight, merge and transaction (with
//! the SQLite write gate, the retry on a racing create, the live note and the
//! metrics), and [`push_since`] for what the server writes. What the server
//! does after a push committed (a job's roll-up) is added by
//! [`super::sync::push`], which every device push and every write made on
//! someone's behalf goes through; the roll-up itself writes through here, so
//! it never triggers itself.

use std::sync::Arc;

use automerge::ChangeHash;
use fieldsync_core::RecordId;
use fieldsync_core::model::{RecordDoc, RecordKind};
use fieldsync_core::protocol::{PushOutcome, PushRequest, PushResponse, RecordChanges};
use serde_bytes::ByteBuf;
use uuid::Uuid;

use super::Context;
use crate::db::Database;
use crate::db::records;
use crate::domain::push::{self, MAX_PUSH_RECORDS};
use crate::domain::{Caller, Error, Result};

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
    // refused before anything is merged. The server's own writes (a web
    // page's, an import's) are made on the copy it just loaded.
    let stored_epochs = if caller.actor.device.is_some() {
        let ids: Vec<RecordId> = records.iter().map(|r| r.id).collect();
        Some(crate::db::erasure::epochs(&ctx.db, &ids).await?)
    } else {
        None
    };
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
        let early = records::load_for_push(&ctx.db, caller, &records).await?;
        let (checked, merged) = {
            let (caller, records, known) =
                (caller.clone(), Arc::clone(&records), preflight.clone());
            let (pushed_epochs, stored_epochs) = (req.epochs.clone(), stored_epochs.clone());
            let early = early.clone();
            tokio::task::spawn_blocking(move || {
                let checked = known.unwrap_or_else(|| {
                    let counted = push::preflight(&records);
                    Arc::new(match &stored_epochs {
                        Some(stored) => {
                            push::refuse_stale_epochs(&records, &pushed_epochs, stored, counted)
                        }
                        None => counted,
                    })
                });
                let merged = push::decide_all(&caller, &records, &early, &checked, budget);
                (checked, merged)
            })
            .await
            .map_err(|e| Error::internal(format!("push merge: {e}")))?
        };
        preflight = Some(Arc::clone(&checked));
        let early_merge = merge_started.elapsed();
        let result = {
            let _writer = ctx.gate.enter(&ctx.db).await;
            records::apply_push_stamped(
                &ctx.db,
                caller,
                req.batch,
                &records,
                all_or_nothing,
                stamp.as_ref(),
                |loaded| {
                    if loaded == early.as_slice() {
                        merged
                    } else {
                        // A concurrent push changed one of these records since the
                        // copy was loaded: merge again onto what is stored now (each
                        // record's cost is bounded by the pre-flight and the budget).
                        ctx.metrics.push_remerged();
                        off_async_threads(|| {
                            push::decide_all(caller, &records, loaded, &checked, budget)
                        })
                    }
                },
            )
            .await
        };
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
            Err(e) if e.unique_violation().is_some() && attempt < PUSH_ATTEMPTS => {
                // Another push created one of these records at the same moment:
                // run again, now merging into its copy.
                tracing::debug!(attempt, "push raced with another; retrying");
            }
            Err(e) => return Err(e.into()),
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
