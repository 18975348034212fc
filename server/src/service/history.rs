//! Reference records for field users: the last few finished visits and jobs
//! at the accounts a rep or technician works at in its window, sent with its
//! pulls although its own scope does not reach them (a colleague's visit last
//! month, its own before the window), so it sees what happened there last
//! time. Read-only: the server refuses writes to them like to any record
//! outside the caller's scope, and the device store refuses them first.
//!
//! The device names the reference records it holds in each pull; the server
//! works out the current set (`db::history`) and answers with the difference,
//! so nothing is stored per device and a lost answer costs nothing: records
//! new to the set come whole, those the device holds get their changes since
//! its cursor, those that left the set are named in `removed` (unless the
//! caller's own scope reaches them now). How many per account is a setting
//! (`[scope] history_per_account`, default 3; see `domain::scope`).

use std::collections::BTreeSet;

use fieldsync_core::RecordId;
use fieldsync_core::protocol::{PullRequest, PullResponse};

use super::Context;
use crate::db::history;
use crate::domain::{Caller, Error, Result};

/// Most reference records a device may name in one pull (a few hundred is
/// usual: accounts in the window times twice the setting).
pub const MAX_HELD: usize = 10_000;

/// Adds the reference records to one pull page `resp` answering `req`. Does
/// nothing for a device that named none (an older app) or a caller without a
/// window (managers and administrators read every date of their scope).
pub async fn extend(
    ctx: &Context,
    caller: &Caller,
    req: &PullRequest,
    resp: &mut PullResponse,
) -> Result<()> {
    let Some(held) = &req.history else {
        return Ok(());
    };
    if caller.window.is_none() {
        return Ok(());
    }
    if held.len() > MAX_HELD {
        return Err(Error::InvalidMessage(format!(
            "a pull names {} reference records; at most {MAX_HELD}",
            held.len()
        )));
    }
    let held: BTreeSet<RecordId> = held.iter().copied().collect();
    let per_account = ctx.scope.history_per_account;
    let accounts = if per_account == 0 {
        Vec::new()
    } else {
        history::accounts_in_window(&ctx.db, caller).await?
    };
    let latest = history::latest_finished(&ctx.db, caller.org, &accounts, per_account).await?;
    let mut asked: Vec<RecordId> = latest.iter().map(|(id, _, _)| *id).collect();
    asked.extend(held.iter().copied());
    asked.sort();
    asked.dedup();
    let own = history::in_own_scope(&ctx.db, caller, &asked).await?;
    let reference: BTreeSet<RecordId> = latest
        .iter()
        .map(|(id, _, _)| *id)
        .filter(|id| !own.contains(id))
        .collect();

    // A record leaving the caller's scope in this page (its window moved past
    // it) that is reference now stays on the device: it holds it already.
    let leaving: BTreeSet<RecordId> = resp
        .removed
        .iter()
        .copied()
        .filter(|id| reference.contains(id))
        .collect();
    resp.removed.retain(|id| !reference.contains(id));
    let (kept, new): (Vec<RecordId>, Vec<RecordId>) = reference
        .iter()
        .copied()
        .partition(|id| held.contains(id) || leaving.contains(id));
    let cursor = i64::try_from(req.cursor).unwrap_or(i64::MAX);
    let next = i64::try_from(resp.next_cursor).unwrap_or(i64::MAX);
    let mut extra = history::changes(&ctx.db, caller.org, &new, 0, next).await?;
    extra.extend(history::changes(&ctx.db, caller.org, &kept, cursor, next).await?);
    for rc in extra {
        match resp.records.iter_mut().find(|r| r.id == rc.id) {
            Some(r) => {
                for c in rc.changes {
                    if !r.changes.contains(&c) {
                        r.changes.push(c);
                    }
                }
            }
            None => resp.records.push(rc),
        }
    }
    // Held ones that are neither reference nor in the caller's scope any more.
    resp.removed.extend(
        held.iter()
            .copied()
            .filter(|id| !reference.contains(id) && !own.contains(id)),
    );
    resp.removed.sort();
    resp.removed.dedup();
    resp.history = Some(reference.into_iter().collect());
    Ok(())
}
