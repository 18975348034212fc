//! The sync use cases: push, pull, prime and repair, the rejection ledger and
//! a record's audit trail, for any caller (a device, a manager's browser
//! session acting through [`on_behalf`](crate::service::on_behalf), the demo
//! seeder, the server itself).
//!
//! A push runs in three stages: `db::records::apply_pushes` **loads** the
//! records in one transaction, `domain::push` **decides** each one (pure), and
//! the same transaction **writes** what was accepted. `service::write` adds
//! what surrounds the transaction: the merge before it, group commit (the
//! pushes of an organisation that wait together share one transaction), the
//! SQLite write gate, the retry when a concurrent push created the same
//! record, the live note after the commit, and the node's metrics (from the
//! timings the write path returns); this
//! module's [`push`] adds what the server does once a push is stored (a job's
//! roll-up, `service::jobs`).

use automerge::sync::SyncDoc;
use fieldsync_core::RecordId;
use fieldsync_core::protocol::{
    PrimeRequest, PrimeResponse, PullRequest, PullResponse, PushOutcome, PushRequest, PushResponse,
    RecordChanges, RejectCode, RepairRequest,
};
use serde_bytes::ByteBuf;
use uuid::Uuid;

use super::Context;
use crate::db::DbError;
use crate::db::records;
pub use crate::db::records::{AuditEntry, RejectionRow};
use crate::domain::{Caller, Error, Result};

/// Applies a push; each record is accepted or refused on its own. Errors are
/// failures of the whole request (nothing was stored). Once it is stored, the
/// server reacts: an assignment whose status moved rolls its job up (a push
/// of its own, as the server, through [`super::write`]; a failure is left to
/// the sweep, see [`super::jobs`]).
pub async fn push(ctx: &Context, caller: &Caller, req: &PushRequest) -> Result<PushResponse> {
    let pushed = super::write::push(ctx, caller, req).await?;
    if !pushed.status_changes.is_empty() {
        super::jobs::after_push(ctx, caller.org, &pushed.status_changes).await;
    }
    Ok(pushed.response)
}

/// One page of the change feed after the device's cursor.
///
/// The answer names the change log's identity. A device that last synced with
/// another one (the database was restored from a backup since) is logged and
/// counted: it pulls the feed again and repairs what it holds, which brings
/// back the changes acknowledged after the backup.
pub async fn pull(ctx: &Context, caller: &Caller, req: &PullRequest) -> Result<PullResponse> {
    let log = crate::db::backup::log_identity(&ctx.db).await?;
    if let Some(known) = &req.log
        && *known != log
    {
        tracing::warn!(
            device = ?caller.actor.device,
            user = %caller.actor.user,
            last_synced_with = %known,
            change_log = %log,
            "a device synced with the change log before a restore from backup; it pulls \
             the feed again and repairs what it holds"
        );
        ctx.metrics.device_after_restore();
    }
    let mut resp = records::pull(&ctx.db, caller, req).await?;
    super::history::extend(ctx, caller, req, &mut resp).await?;
    let ids: Vec<RecordId> = resp.records.iter().map(|r| r.id).collect();
    resp.epochs = crate::db::erasure::epochs(&ctx.db, &ids).await?;
    resp.log = Some(log);
    ctx.metrics.pulled();
    Ok(resp)
}

/// Snapshots of the records in scope, for a new device.
pub async fn prime(ctx: &Context, caller: &Caller, req: &PrimeRequest) -> Result<PrimeResponse> {
    let log = crate::db::backup::log_identity(&ctx.db).await?;
    let mut resp = records::prime(&ctx.db, caller, req).await?;
    let ids: Vec<RecordId> = resp.snapshots.iter().map(|s| s.id).collect();
    resp.epochs = crate::db::erasure::epochs(&ctx.db, &ids).await?;
    resp.log = Some(log);
    ctx.metrics.primed();
    Ok(resp)
}

/// Stores the changes made to `doc` since `before` through the push path a
/// device uses (scope, state machines, change log, live notes, the server's
/// reactions), as `caller`; a refusal is a conflict with the push's reason.
pub async fn push_since(
    ctx: &Context,
    caller: &Caller,
    id: RecordId,
    kind: fieldsync_core::model::RecordKind,
    doc: &mut fieldsync_core::model::RecordDoc,
    before: &[automerge::ChangeHash],
) -> Result<()> {
    let resp = push(ctx, caller, &super::write::since(id, kind, doc, before)).await?;
    super::write::accepted(resp)
}

/// One round of Automerge's sync protocol for one record.
///
/// The server keeps no sync state between rounds: each round starts from a
/// fresh state, which costs at most a resent change and keeps nodes stateless.
/// Changes the device sends are accepted only when made under the device's own
/// actor, and only through [`push`], with its checks; changes of other actors
/// are ignored (their own devices bring them back in their own repair).
pub async fn repair(
    ctx: &Context,
    caller: &Caller,
    req: &RepairRequest,
) -> Result<Option<Vec<u8>>> {
    let malformed = |e: &dyn std::fmt::Display| {
        Error::InvalidMessage(format!("not an Automerge sync message: {e}"))
    };
    let corrupt = |e: automerge::AutomergeError| Error::from(DbError::Corrupt(e.to_string()));
    let mut message = automerge::sync::Message::decode(&req.message).map_err(|e| malformed(&e))?;
    // A record the caller may not read is answered exactly like one the
    // server does not have, so repair tells nothing about what exists; changes
    // the device sends for it go through the push, which refuses them.
    let server = records::readable_doc(&ctx.db, caller, req.id)
        .await?
        .map(|(_, doc)| doc);
    // A copy of an epoch an erasure has since rewritten has nothing to
    // exchange: the device learns the new epoch from the feed and rebases
    // its edits onto it, and its old history never reaches the server.
    if server.is_some() {
        let stored = crate::db::erasure::epochs(&ctx.db, &[req.id]).await?;
        if fieldsync_core::protocol::epoch_of(&stored, req.id) > req.epoch {
            return Ok(None);
        }
    }
    let mut base = match &server {
        Some(bytes) => automerge::AutoCommit::load(bytes).map_err(corrupt)?,
        None => automerge::AutoCommit::new(),
    };
    // The device's changes the server lacks, made under the device's actor.
    if !message.changes.is_empty() {
        let mut scratch = base.clone();
        for chunk in message.changes.iter() {
            scratch.load_incremental(chunk).map_err(|e| malformed(&e))?;
        }
        let have = base.get_heads();
        let own: Vec<ByteBuf> = scratch
            .get_changes(&have)
            .into_iter()
            .filter(|c| c.actor_id() == &caller.actor_id)
            .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
            .collect();
        if !own.is_empty() {
            let push_req = PushRequest {
                batch: Uuid::now_v7(),
                records: vec![RecordChanges {
                    id: req.id,
                    kind: req.kind,
                    changes: own,
                }],
                health: None,
                epochs: vec![fieldsync_core::protocol::RecordEpoch {
                    id: req.id,
                    epoch: req.epoch,
                    erased: Vec::new(),
                    attachments: Vec::new(),
                }],
            };
            let resp = push(ctx, caller, &push_req).await?;
            if let Some(PushOutcome::Rejected(rejection)) =
                resp.results.into_iter().next().map(|r| r.outcome)
            {
                // Missing history is what repair is for: answer with what the
                // server has, so the device can send the rest next round.
                if rejection.code != RejectCode::MissingDependencies {
                    return Err(Error::Forbidden(format!(
                        "{}: {}",
                        rejection.code.as_str(),
                        rejection.message
                    )));
                }
            }
            if let Some((_, doc)) = records::readable_doc(&ctx.db, caller, req.id).await? {
                base = automerge::AutoCommit::load(&doc).map_err(corrupt)?;
            }
        }
        message.changes = automerge::sync::ChunkList::empty();
    }
    let mut state = automerge::sync::State::new();
    base.sync()
        .receive_sync_message(&mut state, message)
        .map_err(|e| malformed(&e))?;
    Ok(base
        .sync()
        .generate_sync_message(&mut state)
        .map(|m| m.encode()))
}

/// The rejection ledger entries the caller may see, newest first.
pub async fn rejections(ctx: &Context, caller: &Caller, limit: u32) -> Result<Vec<RejectionRow>> {
    Ok(records::rejections(&ctx.db, caller, limit).await?)
}

/// A record's audit trail, oldest first; not found when the record is not in
/// the caller's scope (or does not exist).
pub async fn audit(ctx: &Context, caller: &Caller, id: RecordId) -> Result<Vec<AuditEntry>> {
    records::audit_trail(&ctx.db, caller, id)
        .await?
        .ok_or(Error::NotFound)
}

/// The highest log position of the caller's organisation (0 for an empty log).
pub async fn head(ctx: &Context, caller: &Caller) -> Result<i64> {
    Ok(records::org_head(&ctx.db, caller.org).await?)
}
