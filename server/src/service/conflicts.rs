//! The conflicts queue: semantic clashes the merge kept for a manager, with
//! the evidence of both sides ([`list`]), and their resolution ([`resolve`]).
//!
//! A push opens a row of `conflicts` in the transaction that stores a merge
//! whose status clashes, and closes it in the one that stores a single status
//! again, whoever wrote it. Settling one is like a review decision: the server
//! writes `RecordDoc::resolve_status` on the manager's behalf
//! ([`Caller::on_behalf`]) through the push path
//! ([`super::sync::push_since`]), so every device receives the settlement
//! with its next pull and the row leaves the queue in the same transaction.
//! The rules and the evidence are `domain::conflicts`'s.

use fieldsync_core::model::{DeviceTime, RecordDoc};
use serde::Serialize;

use super::Context;
use crate::db::{conflicts as db_conflicts, records};
use crate::domain::conflicts::{self, Handling};
pub use crate::domain::conflicts::{ConflictItem, HistoryEntry, Person, Side};
use crate::domain::review::parse_record_id;
use crate::domain::{Caller, Error, Result};

/// What a resolution answers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Resolved {
    /// The record.
    pub record_id: String,
    /// Its status now.
    pub status: String,
}

/// The open conflicts the caller may see (managers: their team's;
/// administrators: the organisation's), newest first, at most
/// [`MAX_LISTED`](conflicts::MAX_LISTED). A record that does not read is
/// logged and left out.
pub async fn list(ctx: &Context, caller: &Caller) -> Result<Vec<ConflictItem>> {
    conflicts::may_handle(caller.role(), Handling::Listing)?;
    let rows = db_conflicts::open(&ctx.db, caller).await?;
    let names = db_conflicts::user_names(&ctx.db, caller.org).await?;
    let devices = db_conflicts::devices_by_actor(&ctx.db, caller.org).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        match conflicts::evidence(row, &names, &devices) {
            Ok(item) => out.push(item),
            Err(e) => tracing::warn!(error = %e, "a conflicting record does not read"),
        }
    }
    Ok(out)
}

/// Settles the open conflict of `record_id` (as given) by keeping `choose`,
/// with `comment` as the history's reason, written through the push path on
/// the caller's behalf.
pub async fn resolve(
    ctx: &Context,
    caller: &Caller,
    record_id: &str,
    choose: &str,
    comment: Option<&str>,
) -> Result<Resolved> {
    conflicts::may_handle(caller.role(), Handling::Resolving)?;
    let id = parse_record_id(record_id)?;
    let comment = conflicts::resolution_comment(comment)?;
    let writer = caller.on_behalf();
    let Some((kind, bytes)) = records::readable_doc(&ctx.db, &writer, id).await? else {
        return Err(Error::NotFound);
    };
    if !db_conflicts::is_open(&ctx.db, writer.org, id).await? {
        return Err(Error::NotFound);
    }
    let mut doc = RecordDoc::load(&bytes)
        .map_err(|e| Error::internal(format!("stored record {id} does not load: {e}")))?;
    doc.set_actor(writer.actor_id.clone());
    let before = doc.heads();
    conflicts::settle_status(
        &mut doc,
        id,
        kind,
        &writer.actor,
        choose,
        comment,
        DeviceTime::now_utc(),
    )?;
    super::sync::push_since(ctx, &writer, id, kind, &mut doc, &before).await?;
    Ok(Resolved {
        record_id: id.to_string(),
        status: choose.to_owned(),
    })
}
