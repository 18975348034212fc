//! The office's side of orders (the approval queue, one order, approve,
//! reject, fulfil) and the approval of technicians' time entries.
//!
//! Every decision is an Automerge change stored through the push path a
//! device uses ([`super::sync::push_since`]): the same scope check, state
//! machine, write table and change log, so the rep's or technician's device
//! receives it with its next pull and keeps it offline. The rules (who
//! decides, what a decision needs, the figures shown) are `domain::orders`'s.
//!
//! An approval is the server's own transition (`pending_approval →
//! confirmed`: the state machine lets only the server confirm), made under
//! the server's actor of the organisation once this use case has checked that
//! the approver may decide on the order (a manager of the order's team, an
//! administrator); its reason names the approver. A rejection, a fulfilment
//! by an administrator and a time decision are the person's own change, made
//! on their behalf ([`Caller::on_behalf`]).

use std::collections::{BTreeMap, BTreeSet};

use fieldsync_core::model::{
    Account, Approval, Assignment, DeviceTime, Order, OrderStatus, PriceList, RecordDoc,
    RecordKind, Status,
};
use fieldsync_core::{OrgId, RecordId, UserId};

use super::Context;
use crate::db;
use crate::domain::authority::server_actor;
use crate::domain::caller::web_actor;
use crate::domain::orders::{self as rules, Handling};
pub use crate::domain::orders::{
    EventView, LineView, MAX_ORDERS, OrderDecision, OrderView, TimeDecision, TimeEntryView,
};
use crate::domain::{Caller, Error, Result};

/// The name the pages show for the server's own changes.
pub use crate::domain::caller::SERVER_NAME;

/// The caller as whom the server writes its own decisions in `org`
/// ([`Caller::server`]).
pub fn server_caller(org: OrgId) -> Caller {
    Caller::server(org)
}

/// The caller an operator's command acts as: the back-office user `email` of
/// organisation `org_slug` (on their behalf, like a page), or the server of
/// the organisation when no email is given. A disabled or unknown user, or
/// one outside the back office, is refused.
pub async fn operator(ctx: &Context, org_slug: &str, email: Option<&str>) -> Result<Caller> {
    let org = db::accounts::org_by_slug(&ctx.db, org_slug)
        .await?
        .ok_or_else(|| Error::BadRequest(format!("no organisation with slug {org_slug:?}")))?;
    let Some(email) = email else {
        return Ok(server_caller(org));
    };
    let email = email.trim().to_lowercase();
    let user = db::accounts::find_login(&ctx.db, org_slug, &email)
        .await?
        .ok_or_else(|| Error::BadRequest(format!("no user {email:?} in {org_slug:?}")))?;
    if user.disabled {
        return Err(Error::AccountDisabled);
    }
    if !user.role.is_back_office() {
        return Err(Error::Forbidden(format!(
            "{email} is a {}; orders are decided by managers and administrators",
            user.role
        )));
    }
    Ok(Caller {
        actor: fieldsync_core::model::Actor::without_device(user.id, user.role),
        org: user.org,
        team: user.team,
        territory: user.territory,
        display_name: user.display_name,
        actor_id: web_actor(user.id),
        window: None,
    })
}

/// Names of `users` who belong to the caller's organisation, and the
/// server's.
async fn names(
    ctx: &Context,
    caller: &Caller,
    users: BTreeSet<UserId>,
) -> Result<BTreeMap<UserId, String>> {
    let server = server_actor(caller.org).0.user;
    let mut out = BTreeMap::new();
    for user in users {
        if user == server {
            out.insert(user, SERVER_NAME.to_owned());
        } else if let Some(u) = db::accounts::user_by_id(&ctx.db, user).await?
            && u.org == caller.org
        {
            out.insert(user, u.display_name);
        }
    }
    Ok(names_with_fallback(out))
}

fn names_with_fallback(names: BTreeMap<UserId, String>) -> BTreeMap<UserId, String> {
    names
        .into_iter()
        .map(|(id, n)| {
            if n.trim().is_empty() {
                (id, id.to_string())
            } else {
                (id, n)
            }
        })
        .collect()
}

/// The price list that applies to `order` (its own, else its account's),
/// when the caller reads it.
async fn list_of(
    ctx: &Context,
    caller: &Caller,
    order: &Order,
    account: Option<&Account>,
    cache: &mut BTreeMap<RecordId, Option<PriceList>>,
) -> Result<Option<(RecordId, PriceList)>> {
    let Some(id) = order
        .price_list_id
        .or_else(|| account.and_then(|a| a.price_list_id))
    else {
        return Ok(None);
    };
    if let std::collections::btree_map::Entry::Vacant(slot) = cache.entry(id) {
        let list = match db::records::readable_doc(&ctx.db, caller, id).await? {
            Some((RecordKind::PriceList, bytes)) => RecordDoc::load(&bytes)
                .ok()
                .and_then(|d| d.read::<PriceList>().ok()),
            _ => None,
        };
        slot.insert(list);
    }
    Ok(cache.get(&id).cloned().flatten().map(|l| (id, l)))
}

fn read_account(bytes: Option<&[u8]>) -> Option<Account> {
    RecordDoc::load(bytes?).ok()?.read::<Account>().ok()
}

/// Orders in `status` (a stable status name) in the caller's scope (a
/// manager's team, an administrator's organisation), most recently changed
/// first, at most `limit` (1 to [`MAX_ORDERS`]), with their figures.
pub async fn queue(
    ctx: &Context,
    caller: &Caller,
    status: &str,
    limit: usize,
) -> Result<Vec<OrderView>> {
    rules::may_handle(caller.role(), Handling::Reading)?;
    let status = rules::queue_status(status)?;
    let rows = db::orders::of_kind(
        &ctx.db,
        caller,
        RecordKind::Order.as_str(),
        Some(status.as_str()),
        rules::queue_limit(limit),
    )
    .await?;
    let mut loaded = Vec::with_capacity(rows.len());
    let mut people = BTreeSet::new();
    for row in rows {
        let Ok(doc) = RecordDoc::load(&row.doc) else {
            tracing::warn!(order = %row.id, "a stored order does not load");
            continue;
        };
        let (Ok(order), Ok(history)) = (doc.read_stateful::<Order>(), doc.history()) else {
            tracing::warn!(order = %row.id, "a stored order does not read");
            continue;
        };
        people.insert(order.meta.owner);
        loaded.push((row, order, history));
    }
    let names = names(ctx, caller, people).await?;
    let mut lists = BTreeMap::new();
    let mut out = Vec::with_capacity(loaded.len());
    for (row, order, history) in loaded {
        let account = read_account(row.account_doc.as_deref());
        let list = list_of(ctx, caller, &order, account.as_ref(), &mut lists).await?;
        out.push(rules::order_view(
            row.id,
            &order,
            &history,
            list.as_ref().map(|(id, l)| (*id, l)),
            account.map(|a| a.name),
            &names,
            false,
        )?);
    }
    Ok(out)
}

/// The stored order `id` as the caller reads it: not found when it is not an
/// order in the caller's scope.
async fn readable_order(ctx: &Context, caller: &Caller, id: RecordId) -> Result<RecordDoc> {
    match db::records::readable_doc(&ctx.db, caller, id).await? {
        Some((RecordKind::Order, bytes)) => RecordDoc::load(&bytes)
            .map_err(|e| Error::internal(format!("stored order {id} does not load: {e}"))),
        _ => Err(Error::NotFound),
    }
}

/// The order `id` (as given) with its lines, figures and history; not found
/// when it is not an order in the caller's scope.
pub async fn order(ctx: &Context, caller: &Caller, id: &str) -> Result<OrderView> {
    rules::may_handle(caller.role(), Handling::Reading)?;
    let id = rules::parse_record_id(id)?;
    let doc = readable_order(ctx, caller, id).await?;
    let order: Order = doc
        .read_stateful()
        .map_err(|e| Error::internal(format!("stored order {id} does not read: {e}")))?;
    let history = doc
        .history()
        .map_err(|e| Error::internal(format!("stored order {id} has no history: {e}")))?;
    let account = match db::records::readable_doc(&ctx.db, caller, order.account_id).await? {
        Some((RecordKind::Account, bytes)) => read_account(Some(&bytes)),
        _ => None,
    };
    let mut people: BTreeSet<UserId> = history.iter().map(|e| e.by).collect();
    people.insert(order.meta.owner);
    let names = names(ctx, caller, people).await?;
    let list = list_of(ctx, caller, &order, account.as_ref(), &mut BTreeMap::new()).await?;
    rules::order_view(
        id,
        &order,
        &history,
        list.as_ref().map(|(id, l)| (*id, l)),
        account.map(|a| a.name),
        &names,
        true,
    )
}

/// Approves or rejects the order `id` (as given) waiting for approval;
/// answers its new status. A rejection needs a comment. The pages, the JSON
/// API and the CLI decide through here.
pub async fn decide(
    ctx: &Context,
    caller: &Caller,
    id: &str,
    decision: OrderDecision,
    comment: Option<&str>,
) -> Result<OrderStatus> {
    rules::may_handle(caller.role(), Handling::Deciding)?;
    let id = rules::parse_record_id(id)?;
    let comment = rules::decision_comment(decision, comment)?;
    let person = caller.on_behalf();
    // Found through the approver's own scope: another team's order is not found.
    let mut doc = readable_order(ctx, &person, id).await?;
    let server = server_caller(caller.org);
    let writer = match decision {
        OrderDecision::Approve => &server,
        OrderDecision::Reject => &person,
    };
    doc.set_actor(writer.actor_id.clone());
    let before = doc.heads();
    rules::apply_decision(
        &mut doc,
        &person.actor,
        &caller.display_name,
        &server.actor,
        decision,
        comment,
        DeviceTime::now_utc(),
    )?;
    super::sync::push_since(ctx, writer, id, RecordKind::Order, &mut doc, &before).await?;
    tracing::info!(order = %id, by = %caller.user(), decision = decision.as_str(), "order decided");
    Ok(decision.status())
}

/// Records the fulfilment of the confirmed order `id` (as given), as an
/// administrator (on their behalf) or the server; answers its new status.
pub async fn fulfil(
    ctx: &Context,
    caller: &Caller,
    id: &str,
    note: Option<&str>,
) -> Result<OrderStatus> {
    rules::may_handle(caller.role(), Handling::Fulfilling)?;
    let id = rules::parse_record_id(id)?;
    let writer = if caller.role() == fieldsync_core::model::Role::Server {
        caller.clone()
    } else {
        caller.on_behalf()
    };
    let mut doc = readable_order(ctx, &writer, id).await?;
    doc.set_actor(writer.actor_id.clone());
    let before = doc.heads();
    rules::apply_fulfilment(&mut doc, &writer.actor, note, DeviceTime::now_utc())?;
    super::sync::push_since(ctx, &writer, id, RecordKind::Order, &mut doc, &before).await?;
    Ok(OrderStatus::Fulfilled)
}

/// The ended time entries still pending in the caller's scope (a manager's
/// team's technicians, an administrator's organisation), oldest first.
pub async fn time_queue(ctx: &Context, caller: &Caller) -> Result<Vec<TimeEntryView>> {
    rules::may_approve_time(caller.role())?;
    let rows = db::orders::of_kind(
        &ctx.db,
        caller,
        RecordKind::Assignment.as_str(),
        None,
        rules::MAX_ASSIGNMENTS,
    )
    .await?;
    let mut assignments = Vec::new();
    let mut people = BTreeSet::new();
    for row in rows {
        let Some(a) = RecordDoc::load(&row.doc)
            .ok()
            .and_then(|d| d.read_stateful::<Assignment>().ok())
        else {
            tracing::warn!(assignment = %row.id, "a stored assignment does not read");
            continue;
        };
        if a.time_entries
            .values()
            .any(|e| e.approval == Approval::Pending && e.end.is_some())
        {
            people.insert(a.meta.owner);
            assignments.push((row.id, a));
        }
    }
    let names = names(ctx, caller, people).await?;
    let mut out: Vec<TimeEntryView> = assignments
        .iter()
        .flat_map(|(id, a)| rules::pending_entries(*id, a, &names))
        .collect();
    out.sort_by_key(|e| e.start_ms);
    Ok(out)
}

/// Approves or rejects time entry `entry` of assignment `assignment` (ids as
/// given) on the caller's behalf; answers the entry's new approval state.
pub async fn decide_time(
    ctx: &Context,
    caller: &Caller,
    assignment: &str,
    entry: &str,
    decision: TimeDecision,
) -> Result<Approval> {
    rules::may_approve_time(caller.role())?;
    let id = rules::parse_record_id(assignment)?;
    let entry = rules::parse_record_id(entry)?;
    let writer = caller.on_behalf();
    let mut doc = match db::records::readable_doc(&ctx.db, &writer, id).await? {
        Some((RecordKind::Assignment, bytes)) => RecordDoc::load(&bytes)
            .map_err(|e| Error::internal(format!("stored assignment {id} does not load: {e}")))?,
        _ => return Err(Error::NotFound),
    };
    doc.set_actor(writer.actor_id.clone());
    let before = doc.heads();
    rules::decide_time_entry(
        &mut doc,
        writer.role(),
        entry,
        decision,
        DeviceTime::now_utc(),
    )?;
    super::sync::push_since(ctx, &writer, id, RecordKind::Assignment, &mut doc, &before).await?;
    Ok(decision.approval())
}
