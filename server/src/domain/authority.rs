//! The push's second stage: what the shared model cannot decide alone,
//! because it needs other records and the organisation's people.
//!
//! `domain::push::decide_all` merged every record and checked it with the
//! model (`fieldsync_core::model::incoming`: transitions, the write table of
//! `rules`, signatures). What it decided names what else must be known
//! ([`Decisions::needs`]): the records its references name, the users, teams
//! and territories its ownership names, the price list of a submitted order.
//! `db::records::apply_pushes` loads those in the same transaction
//! ([`Lookups`]), and [`Decisions::finish`] decides the rest:
//!
//! - **References** name a record of the expected kind that the writer can
//!   already read, or one written in the same push (a new account and its
//!   first visit). A missing record and an unreadable one are refused alike,
//!   so a refusal tells nothing about what exists.
//! - **Ownership**: a record is created, and reassigned, only inside the
//!   writer's authority: reps and technicians for themselves in their own team
//!   and territory; managers for themselves or members of their team, in their
//!   team; administrators for anyone of the organisation; always to users,
//!   teams and territories that exist in it.
//! - **Server-made values**: a submitted order is priced from its price list
//!   (its own, else its account's) and decided in the same push, by the server
//!   as its own actor ([`server_actor`]): `confirmed` within the list's policy,
//!   `pending_approval` (with the reasons) with a product off the list, a
//!   discount over the list's maximum, a list in another currency or no list.
//!
//! Refusals here look like the model's: a rejection in the device's ledger,
//! the server's version of the record sent back.

use std::collections::{BTreeMap, BTreeSet};

use fieldsync_core::model::rules::references;
use fieldsync_core::model::{
    Account, ChecklistResponse, ChecklistTemplate, DeviceTime, Order, OrderStatus, PriceList,
    Projection, RecordDoc, RecordKind, Role, Site, Status, TransitionRequest, Visit, VisitStatus,
};
use fieldsync_core::protocol::{RejectCode, Rejection};
use fieldsync_core::{OrgId, RecordId, UserId};
use uuid::Uuid;

use super::caller::Caller;
use super::push::{Decisions, MAX_DOC_BYTES, Refusal, Retired, Write, opt_uuid};

/// What the second stage must know besides the pushed records.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// Records named by references (and price lists, accounts of orders).
    pub records: BTreeSet<RecordId>,
    /// Users named as owners.
    pub users: BTreeSet<UserId>,
    /// Teams named.
    pub teams: BTreeSet<Uuid>,
    /// Territories named.
    pub territories: BTreeSet<Uuid>,
    /// Reps whose visits in progress are to be listed (a push checks one in).
    pub visits_in_progress: BTreeSet<UserId>,
    /// Territories whose price lists are to be loaded (an order at an
    /// account without a price list is priced from its territory's default).
    pub territory_price_lists: BTreeSet<Uuid>,
}

impl Needs {
    /// Nothing more to load.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
            && self.users.is_empty()
            && self.teams.is_empty()
            && self.territories.is_empty()
            && self.visits_in_progress.is_empty()
            && self.territory_price_lists.is_empty()
    }
}

/// A record a reference names, as loaded for the caller.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its kind.
    pub kind: RecordKind,
    /// Whether the caller may read it.
    pub readable: bool,
    /// Its document, for the kinds the second stage reads (price lists,
    /// accounts, checklist templates).
    pub doc: Option<Vec<u8>>,
}

/// Whether the second stage reads a record of `kind` (so loads its document).
pub fn reads_document(kind: RecordKind) -> bool {
    matches!(
        kind,
        RecordKind::PriceList | RecordKind::Account | RecordKind::ChecklistTemplate
    )
}

/// A user of the organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Their team.
    pub team: Option<Uuid>,
    /// Their territory.
    pub territory: Option<Uuid>,
}

/// What was loaded for [`Needs`]; `None` for what does not exist in the
/// caller's organisation.
#[derive(Debug, Default)]
pub struct Lookups {
    /// Records.
    pub records: BTreeMap<RecordId, Option<Target>>,
    /// Users.
    pub users: BTreeMap<UserId, Option<Member>>,
    /// Teams that exist.
    pub teams: BTreeMap<Uuid, bool>,
    /// Territories that exist.
    pub territories: BTreeMap<Uuid, bool>,
    /// The visits in progress of each rep, as stored before the push.
    pub visits_in_progress: BTreeMap<UserId, Vec<RecordId>>,
    /// The stored price lists (documents) of each territory asked for.
    pub territory_price_lists: BTreeMap<Uuid, Vec<Vec<u8>>>,
}

pub use super::caller::server_actor;

fn changed_refs(w: &Write) -> Vec<(RecordId, &'static [RecordKind])> {
    let Some(p) = &w.pending else {
        return Vec::new();
    };
    references(p.kind)
        .iter()
        .zip(&p.refs)
        .enumerate()
        .filter_map(|(i, (r, now))| {
            let was = p.before_refs.get(i).copied().flatten();
            match *now {
                Some(id) if Some(id) != was && id != w.id => Some((id, r.to)),
                _ => None,
            }
        })
        .collect()
}

/// Whether the owner, team or territory is new (a new record, or one the
/// push reassigns).
fn ownership_changed(w: &Write) -> bool {
    let Some(p) = &w.pending else {
        return false;
    };
    match &p.before {
        None => true,
        Some(b) => {
            b.owner != w.projection.owner
                || b.team != w.projection.team
                || b.territory != w.projection.territory
        }
    }
}

/// A visit the push moves into progress: its rep.
fn checked_in_now(w: &Write) -> Option<UserId> {
    let p = w.pending.as_ref()?;
    let in_progress = Some(VisitStatus::InProgress.as_str());
    (p.kind == RecordKind::Visit
        && w.projection.status.as_deref() == in_progress
        && p.before.as_ref().and_then(|b| b.status.as_deref()) != in_progress)
        .then_some(w.projection.owner)
        .flatten()
}

/// For each visit the push checks in: another visit of the same rep in
/// progress (stored, and not ended by this push, or checked in earlier in it).
fn overlaps(writes: &[&Write], lookups: &Lookups) -> BTreeMap<RecordId, RecordId> {
    let in_progress = Some(VisitStatus::InProgress.as_str());
    let ended: BTreeSet<RecordId> = writes
        .iter()
        .filter(|w| {
            w.projection.kind == RecordKind::Visit && w.projection.status.as_deref() != in_progress
        })
        .map(|w| w.id)
        .collect();
    let mut out = BTreeMap::new();
    let mut started: BTreeMap<UserId, RecordId> = BTreeMap::new();
    for w in writes.iter().copied() {
        let Some(rep) = checked_in_now(w) else {
            continue;
        };
        let stored = lookups
            .visits_in_progress
            .get(&rep)
            .into_iter()
            .flatten()
            .find(|v| **v != w.id && !ended.contains(v));
        if let Some(other) = stored.or(started.get(&rep)) {
            out.insert(w.id, *other);
        }
        started.entry(rep).or_insert(w.id);
    }
    out
}

/// An order the push moved to `submitted`, to be priced.
fn submitted_now(w: &Write) -> Option<Order> {
    let p = w.pending.as_ref()?;
    submitted_order(&w.projection, p.before.as_ref(), &p.merged)
}

fn submitted_order(
    now: &Projection,
    before: Option<&Projection>,
    merged: &RecordDoc,
) -> Option<Order> {
    let submitted = Some(OrderStatus::Submitted.as_str());
    if now.kind != RecordKind::Order
        || now.status.as_deref() != submitted
        || before.and_then(|b| b.status.as_deref()) == submitted
    {
        return None;
    }
    merged.read_stateful::<Order>().ok()
}

/// A record the server reads for its own computations (a price list, an
/// account's site, a checklist template); nothing of it goes back to the
/// writer but what is computed from it.
fn loaded_doc<R: fieldsync_core::model::Record>(lookups: &Lookups, id: RecordId) -> Option<R> {
    let target = lookups.records.get(&id)?.as_ref()?;
    RecordDoc::load(target.doc.as_deref()?)
        .ok()?
        .read::<R>()
        .ok()
}

/// A visit with a check point holding a fix: the account whose site its
/// geofence verdict is computed against.
fn site_account(w: &Write) -> Option<RecordId> {
    w.pending.as_ref()?.site_account
}

/// A checklist response: the template it answers; a checklist template:
/// the version it follows.
fn answered_template(w: &Write) -> Option<RecordId> {
    w.pending.as_ref()?.template
}

/// What pricing an order still needs loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missing {
    /// The account or the price list.
    Record(RecordId),
    /// The price lists of the account's territory.
    Territory(Uuid),
}

/// The price list that applies to an order: its own, else its account's,
/// else the default list of the account's territory
/// ([`PriceList::territory_default_for`], what the device uses too).
/// `Err` while what decides it is still to be loaded.
fn price_list_of(order: &Order, lookups: &Lookups) -> Result<Option<PriceList>, Missing> {
    let list_id = match order.price_list_id {
        Some(id) => id,
        None => {
            if !lookups.records.contains_key(&order.account_id) {
                return Err(Missing::Record(order.account_id));
            }
            let Some(account) = loaded_doc::<Account>(lookups, order.account_id) else {
                return Ok(None);
            };
            match account.price_list_id {
                Some(id) => id,
                None => {
                    let territory = *account.meta.territory.as_uuid();
                    let Some(docs) = lookups.territory_price_lists.get(&territory) else {
                        return Err(Missing::Territory(territory));
                    };
                    let lists: Vec<PriceList> = docs
                        .iter()
                        .filter_map(|d| RecordDoc::load(d).ok()?.read().ok())
                        .collect();
                    return Ok(PriceList::territory_default_for(&account, &lists).cloned());
                }
            }
        }
    };
    if !lookups.records.contains_key(&list_id) {
        return Err(Missing::Record(list_id));
    }
    Ok(loaded_doc::<PriceList>(lookups, list_id))
}

impl Decisions {
    /// What [`Decisions::finish`] needs that `lookups` does not hold yet.
    /// Called until it is empty (an order's account names its price list).
    pub fn needs(&self, lookups: &Lookups) -> Needs {
        let mut needs = Needs::default();
        let batch: BTreeSet<RecordId> = self.writes.iter().map(|w| w.id).collect();
        for w in &self.writes {
            for (id, _) in changed_refs(w) {
                if !batch.contains(&id) && !lookups.records.contains_key(&id) {
                    needs.records.insert(id);
                }
            }
            if ownership_changed(w) {
                let p = &w.projection;
                if let Some(owner) = p.owner
                    && !lookups.users.contains_key(&owner)
                {
                    needs.users.insert(owner);
                }
                if let Some(team) = opt_uuid(p.team.as_deref())
                    && !lookups.teams.contains_key(&team)
                {
                    needs.teams.insert(team);
                }
                if let Some(territory) = opt_uuid(p.territory.as_deref())
                    && !lookups.territories.contains_key(&territory)
                {
                    needs.territories.insert(territory);
                }
            }
            if let Some(order) = submitted_now(w) {
                match price_list_of(&order, lookups) {
                    Err(Missing::Record(id)) => {
                        needs.records.insert(id);
                    }
                    Err(Missing::Territory(t)) => {
                        needs.territory_price_lists.insert(t);
                    }
                    Ok(_) => {}
                }
            }
            if let Some(rep) = checked_in_now(w)
                && !lookups.visits_in_progress.contains_key(&rep)
            {
                needs.visits_in_progress.insert(rep);
            }
            if let Some(id) = site_account(w).or_else(|| answered_template(w))
                && !batch.contains(&id)
                && !lookups.records.contains_key(&id)
            {
                needs.records.insert(id);
            }
        }
        needs
    }

    /// The second stage: refuses what breaks a rule that needs `lookups`,
    /// adds the server's own changes, and saves what stays accepted.
    pub fn finish(mut self, caller: &Caller, lookups: &Lookups) -> Decisions {
        // Checklist templates of this push that are drafts: nobody answers
        // them, in the same push either.
        let draft_templates: BTreeSet<RecordId> = self
            .writes
            .iter()
            .filter_map(|w| {
                let p = w.pending.as_ref()?;
                if p.kind != RecordKind::ChecklistTemplate {
                    return None;
                }
                let t: ChecklistTemplate = p.merged.read().ok()?;
                (!t.published).then_some(w.id)
            })
            .collect();
        // References may name records of the same push; a record refused
        // here takes down those that name it, until nothing changes.
        let mut refused: BTreeMap<RecordId, Rejection> = BTreeMap::new();
        loop {
            let accepted: BTreeMap<RecordId, RecordKind> = self
                .writes
                .iter()
                .filter(|w| !refused.contains_key(&w.id))
                .map(|w| (w.id, w.projection.kind))
                .collect();
            let mut more = false;
            for w in &self.writes {
                if refused.contains_key(&w.id) {
                    continue;
                }
                if let Err(rejection) = check(caller, w, lookups, &accepted, &draft_templates) {
                    refused.insert(w.id, rejection);
                    more = true;
                }
            }
            if !more {
                break;
            }
        }
        let writes = std::mem::take(&mut self.writes);
        let accepted: Vec<&Write> = writes
            .iter()
            .filter(|w| !refused.contains_key(&w.id))
            .collect();
        let overlapping = overlaps(&accepted, lookups);
        // Each record's result, by id (the first, should a push list a
        // record twice): looked up once per write, not searched for.
        let mut slots: BTreeMap<RecordId, usize> = BTreeMap::new();
        for (i, (id, _)) in self.results.iter().enumerate() {
            slots.entry(*id).or_insert(i);
        }
        for mut w in writes {
            let slot = slots.get(&w.id).copied();
            w.overlap = overlapping.get(&w.id).copied();
            let in_progress = Some(VisitStatus::InProgress.as_str());
            w.ends_visit = w.projection.kind == RecordKind::Visit
                && w.projection.status.as_deref() != in_progress
                && w.pending
                    .as_ref()
                    .and_then(|p| p.before.as_ref())
                    .and_then(|b| b.status.as_deref())
                    == in_progress;
            let outcome = match refused.remove(&w.id) {
                Some(rejection) => Err(rejection),
                None => complete(caller, &mut w, lookups, &mut self.retired),
            };
            match outcome {
                Ok(heads) => {
                    if let Some(slot) = slot.and_then(|i| self.results.get_mut(i)) {
                        slot.1 = Ok(heads);
                    }
                    self.writes.push(w);
                }
                Err(rejection) => {
                    let (kind, pushed, server_doc) = match w.pending.take() {
                        Some(p) => (p.kind, p.pushed, p.server_doc),
                        None => (w.projection.kind, Vec::new(), None),
                    };
                    let rejection = Rejection {
                        server_doc,
                        ..rejection
                    };
                    if let Some(slot) = slot.and_then(|i| self.results.get_mut(i)) {
                        slot.1 = Err(rejection.clone());
                    }
                    self.refusals.push(Refusal {
                        id: w.id,
                        kind,
                        rejection,
                        changes: pushed,
                    });
                }
            }
        }
        self
    }
}

fn refusal(code: RejectCode, message: impl Into<String>) -> Rejection {
    Rejection {
        code,
        message: message.into(),
        retryable: false,
        server_doc: None,
    }
}

/// The rules of this stage for one record.
fn check(
    caller: &Caller,
    w: &Write,
    lookups: &Lookups,
    batch: &BTreeMap<RecordId, RecordKind>,
    draft_templates: &BTreeSet<RecordId>,
) -> Result<(), Rejection> {
    for (id, kinds) in changed_refs(w) {
        let kind = match batch.get(&id) {
            Some(kind) => Some(*kind),
            None => match lookups.records.get(&id) {
                Some(Some(t)) if t.readable => Some(t.kind),
                _ => None,
            },
        };
        match kind {
            Some(kind) if kinds.contains(&kind) => {}
            Some(kind) => {
                return Err(refusal(
                    RejectCode::Validation,
                    format!(
                        "this {} names {id}, a {kind}, where a {} is expected",
                        w.projection.kind,
                        kinds
                            .iter()
                            .map(|k| k.as_str())
                            .collect::<Vec<_>>()
                            .join(" or ")
                    ),
                ));
            }
            None => {
                return Err(refusal(
                    RejectCode::Forbidden,
                    format!(
                        "this {} names {id}, a record you cannot read; a record may only \
                         refer to records in your scope",
                        w.projection.kind
                    ),
                ));
            }
        }
    }
    if ownership_changed(w) {
        authority(caller, &w.projection, w.is_new, lookups)
            .map_err(|message| refusal(RejectCode::Forbidden, message))?;
    }
    if let Some(p) = &w.pending
        && p.kind == RecordKind::ChecklistTemplate
    {
        // A new version follows a published version of its family, numbered
        // next (checked on every write of a template: a draft's numbering
        // cannot drift either).
        let invalid = |message: String| refusal(RejectCode::Validation, message);
        let template: ChecklistTemplate = p.merged.read().map_err(|e| invalid(e.to_string()))?;
        let predecessor = template
            .supersedes
            .and_then(|id| match lookups.records.get(&id) {
                Some(Some(t)) if t.readable => loaded_doc::<ChecklistTemplate>(lookups, id),
                _ => None,
            });
        template
            .check_successor(predecessor.as_ref())
            .map_err(|e| invalid(format!("checklist template: {e}")))?;
    }
    if let (Some(template_id), Some(p)) = (answered_template(w), &w.pending)
        && p.kind == RecordKind::ChecklistResponse
    {
        let invalid = |message: String| refusal(RejectCode::Validation, message);
        let response: ChecklistResponse = p.merged.read().map_err(|e| invalid(e.to_string()))?;
        let Some(template) = loaded_doc::<ChecklistTemplate>(lookups, template_id) else {
            // A template of the same push is checked when it is stored; the
            // answers are checked again with the next change.
            return if draft_templates.contains(&template_id) {
                Err(invalid(
                    "this checklist template is a draft; only a published version is answered"
                        .into(),
                ))
            } else if batch.contains_key(&template_id) {
                Ok(())
            } else {
                Err(invalid(
                    "the checklist template this response answers is not available".into(),
                ))
            };
        };
        response
            .check_against(&template)
            .map_err(|e| invalid(format!("checklist response: {e}")))?;
        let missing = response.missing_required(&template);
        if response.completed && !missing.is_empty() {
            return Err(invalid(format!(
                "a completed checklist answers every required question; missing: {}",
                missing.join(", ")
            )));
        }
    }
    Ok(())
}

/// Whether the record's owner, team and territory lie inside the caller's
/// authority, and exist.
fn authority(
    caller: &Caller,
    p: &Projection,
    is_new: bool,
    lookups: &Lookups,
) -> Result<(), String> {
    let team = opt_uuid(p.team.as_deref());
    let territory = opt_uuid(p.territory.as_deref());
    let exists = |t: Option<Uuid>, of: &BTreeMap<Uuid, bool>| {
        t.is_some_and(|t| of.get(&t).copied().unwrap_or(false))
    };
    if !exists(team, &lookups.teams) {
        return Err("the record names a team that does not exist in your organisation".into());
    }
    if !exists(territory, &lookups.territories) {
        return Err("the record names a territory that does not exist in your organisation".into());
    }
    let owner = p
        .owner
        .and_then(|o| lookups.users.get(&o).cloned().flatten().map(|m| (o, m)));
    let Some((owner, member)) = owner else {
        return Err("the record's owner is not a user of your organisation".into());
    };
    let my_team = caller.team.map(|t| *t.as_uuid());
    let my_territory = caller.territory.map(|t| *t.as_uuid());
    match caller.role() {
        Role::Admin | Role::Server => Ok(()),
        Role::Manager => {
            if team != my_team {
                return Err(
                    "a manager creates and reassigns records in their own team only".into(),
                );
            }
            if owner != caller.user() && member.team != my_team {
                return Err(
                    "a manager gives records to themselves or to members of their team only".into(),
                );
            }
            Ok(())
        }
        Role::Rep | Role::Technician => {
            if !is_new {
                return Err("the back office reassigns records".into());
            }
            if owner != caller.user() {
                return Err(
                    "you may create records for yourself only; a manager creates them for the team"
                        .into(),
                );
            }
            if team != my_team || territory != my_territory {
                return Err("a new record carries your own team and territory".into());
            }
            Ok(())
        }
    }
}

/// Adds the server's own changes to an accepted record, saves it and computes
/// what is written beside it. Returns the record's heads.
fn complete(
    caller: &Caller,
    w: &mut Write,
    lookups: &Lookups,
    retired: &mut Retired,
) -> Result<Vec<u8>, Rejection> {
    let Some(mut pending) = w.pending.take() else {
        return Err(refusal(
            RejectCode::Internal,
            "the record was decided twice",
        ));
    };
    let result = complete_with(caller, w, &mut pending, lookups);
    if result.is_err() {
        // Kept for the ledger.
        w.pending = Some(pending);
    } else {
        retired.0.push(pending);
    }
    result
}

fn complete_with(
    caller: &Caller,
    w: &mut Write,
    pending: &mut super::push::Pending,
    lookups: &Lookups,
) -> Result<Vec<u8>, Rejection> {
    let doc = &mut pending.merged;
    let heads = doc.heads();
    // Whether a step below may have written: only then is the document
    // asked for changes since `heads` (Automerge reads every operation to
    // answer, on the writer's serial path, for nothing on most records).
    let mut may_have_written = false;
    if let Some(order) = submitted_order(&w.projection, pending.before.as_ref(), doc)
        && let Ok(list) = price_list_of(&order, lookups)
    {
        may_have_written = true;
        price(doc, &order, list.as_ref(), caller.org).map_err(|e| {
            refusal(
                RejectCode::Internal,
                format!("the server could not price the order: {e}"),
            )
        })?;
    }
    if let Some(account_id) = pending.site_account
        && let Some(account) = loaded_doc::<Account>(lookups, account_id)
    {
        may_have_written = true;
        verify_geofence(doc, &account, caller.org).map_err(|e| {
            refusal(
                RejectCode::Internal,
                format!("the server could not verify the geofence: {e}"),
            )
        })?;
    }
    // What the server wrote itself, logged after the device's changes.
    let made: Vec<(Vec<u8>, Vec<u8>)> = if may_have_written {
        doc.changes_since(&heads)
            .iter()
            .map(|c| (c.hash().0.to_vec(), c.raw_bytes().to_vec()))
            .collect()
    } else {
        Vec::new()
    };
    let server_wrote = !made.is_empty();
    if server_wrote {
        w.server_changes = made.len();
        w.changes.extend(made);
        w.projection =
            Projection::of(doc).map_err(|e| refusal(RejectCode::Internal, e.to_string()))?;
    }
    // The form the decision stored, with the server's own changes appended.
    let saved = if server_wrote {
        let made: Vec<&[u8]> = w.changes[w.changes.len() - w.server_changes..]
            .iter()
            .map(|(_, raw)| raw.as_slice())
            .collect();
        super::push::stored_after(&w.doc, doc, &made)
    } else {
        std::mem::take(&mut w.doc)
    };
    if saved.len() > MAX_DOC_BYTES {
        return Err(Rejection {
            server_doc: pending.server_doc.clone(),
            ..refusal(
                RejectCode::TooLarge,
                format!(
                    "record {} would hold {} KiB; a record holds at most {} KiB \
                     (photos and documents belong in attachments)",
                    w.id,
                    saved.len() / 1024,
                    MAX_DOC_BYTES / 1024
                ),
            )
        });
    }
    w.doc = saved;
    (w.facts, w.status_clash) = if server_wrote {
        super::push::figures_of(doc, None)
    } else {
        std::mem::take(&mut pending.figures)
    };
    let heads = if server_wrote { doc.heads() } else { heads };
    Ok(heads.iter().flat_map(|h| h.0).collect())
}

/// Sets the server's geofence verdict on a visit's check points with a fix,
/// from the account's site (the visit's location, else the account's first),
/// as the server; the device's verdict stays beside it.
fn verify_geofence(
    doc: &mut RecordDoc,
    account: &Account,
    org: OrgId,
) -> Result<(), fieldsync_core::model::ModelError> {
    let visit: Visit = doc.read_stateful()?;
    let location = visit
        .location_id
        .and_then(|id| account.locations.get(&id))
        .or_else(|| account.locations.values().next());
    let site = location.map_or(
        Site {
            coords: None,
            radius_m: 100.0,
        },
        |l| l.site(),
    );
    let mut verified = visit.clone();
    let mut changed = false;
    for point in [&mut verified.check_in, &mut verified.check_out]
        .into_iter()
        .flatten()
    {
        if point.gps.is_some() {
            changed |= point.verify(&site);
        }
    }
    if changed {
        let (_, actor_id) = server_actor(org);
        doc.set_actor(actor_id);
        doc.update_by::<Visit>(
            Some(Role::Server),
            DeviceTime::utc(super::note::now_ms()),
            |v| {
                v.check_in = verified.check_in.clone();
                v.check_out = verified.check_out.clone();
            },
        )?;
    }
    Ok(())
}

/// Why the server confirmed an order at once: the reason of its event.
pub const WITHIN_POLICY: &str = "priced from the price list, within its policy";

/// Prices a just-submitted order from its price list and decides it, as the
/// server: every line of a product on the list takes the list's unit price;
/// then the order is `confirmed` when it is within the list's policy, or moved
/// to `pending_approval` for a manager, with the reasons, when a product is
/// off the list, the list is in another currency, a discount is over the
/// list's maximum, or no price list applies at all (nothing to check the
/// rep's prices against).
fn price(
    doc: &mut RecordDoc,
    order: &Order,
    list: Option<&PriceList>,
    org: OrgId,
) -> Result<(), fieldsync_core::model::ModelError> {
    let (server, actor_id) = server_actor(org);
    doc.set_actor(actor_id);
    let at = DeviceTime::utc(super::note::now_ms());
    let mut why: Vec<String> = Vec::new();
    match list {
        None => why
            .push("no price list applies to the order, so its prices are the rep's own".to_owned()),
        Some(list) if list.currency != order.currency => why.push(format!(
            "the price list is in {}, the order in {}",
            list.currency, order.currency
        )),
        Some(list) => {
            doc.update_by::<Order>(Some(Role::Server), at, |o| {
                for line in o.lines.values_mut() {
                    if let Some(item) = list.items.get(&line.product_id) {
                        line.unit_price = item.unit_price.clone();
                    }
                }
            })?;
            let priced: Order = doc.read_stateful()?;
            let totals = priced.totals().ok();
            for (id, line) in &priced.lines {
                let Some(item) = list.items.get(&line.product_id) else {
                    why.push(format!(
                        "product {} is not on the price list",
                        line.product_id
                    ));
                    continue;
                };
                let over = totals
                    .as_ref()
                    .and_then(|t| t.lines.get(id))
                    .is_none_or(|l| {
                        l.gross > 0
                            && i128::from(l.discount) * 10_000
                                > i128::from(l.gross) * i128::from(item.max_discount_bp)
                    });
                if over {
                    why.push(format!(
                        "a discount on product {} is over the {} % the price list allows",
                        line.product_id,
                        f64::from(item.max_discount_bp) / 100.0
                    ));
                }
            }
        }
    }
    let decision = if why.is_empty() {
        TransitionRequest::new(OrderStatus::Confirmed, at).with_reason(WITHIN_POLICY)
    } else {
        why.sort();
        why.dedup();
        TransitionRequest::new(OrderStatus::PendingApproval, at).with_reason(why.join("; "))
    };
    doc.transition::<Order>(&server, &decision, |_| {})?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use fieldsync_core::model::{RecordKind, Role};
    use fieldsync_core::protocol::{RecordChanges, RejectCode, Rejection};
    use fieldsync_core::{OrgId, TeamId, UserId};

    use super::super::caller::Caller;
    use super::super::push::tests::{caller, new_visit};
    use super::super::push::{Write, decide_all};

    /// Both stages for one new record, with `members` (user, team) the users
    /// of the organisation and `caller`'s team and territory existing.
    fn decided(
        caller: &Caller,
        rec: &RecordChanges,
        members: &[(UserId, Option<TeamId>)],
    ) -> Result<(Write, Vec<u8>), Rejection> {
        use super::{Lookups, Member};
        let records = vec![rec.clone()];
        let decisions = decide_all(
            caller,
            &records,
            &[None],
            &[],
            &[],
            std::time::Duration::MAX,
        );
        let mut lookups = Lookups::default();
        for (user, team) in members {
            lookups.users.insert(
                *user,
                Some(Member {
                    team: team.map(|t| *t.as_uuid()),
                    territory: caller.territory.map(|t| *t.as_uuid()),
                }),
            );
        }
        if let Some(team) = caller.team {
            lookups.teams.insert(*team.as_uuid(), true);
        }
        if let Some(territory) = caller.territory {
            lookups.territories.insert(*territory.as_uuid(), true);
        }
        // The visit's account, readable by the caller; every team exists.
        let needs = decisions.needs(&lookups);
        for team in needs.teams {
            lookups.teams.insert(team, true);
        }
        for id in needs.records {
            lookups.records.insert(
                id,
                Some(super::Target {
                    kind: RecordKind::Account,
                    readable: true,
                    doc: None,
                }),
            );
        }
        let left = decisions.needs(&lookups);
        assert!(left.is_empty(), "everything is known: {left:?}");
        let mut done = decisions.finish(caller, &lookups);
        match done.results.pop() {
            Some((_, Ok(heads))) => Ok((done.writes.pop().expect("a write"), heads)),
            Some((_, Err(rejection))) => Err(rejection),
            None => panic!("no result"),
        }
    }

    #[test]
    fn a_rep_creates_their_own_visit() {
        let (org, team) = (OrgId::new(), TeamId::new());
        let rep = caller(Role::Rep, org, team);
        let (rec, _) = new_visit(&rep, rep.user());
        let (write, heads) = decided(&rep, &rec, &[(rep.user(), rep.team)]).expect("accepted");
        assert!(write.is_new);
        assert_eq!(write.changes.len(), rec.changes.len());
        assert_eq!(write.projection.owner, Some(rep.user()));
        assert_eq!(write.status_clash, Some(false), "visits are stateful");
        assert!(write.facts.is_some(), "visits have dashboard facts");
        assert!(!write.doc.is_empty(), "saved");
        assert_eq!(heads.len(), 32);
    }

    #[test]
    fn a_rep_may_not_create_a_record_for_someone_else() {
        let (org, team) = (OrgId::new(), TeamId::new());
        let rep = caller(Role::Rep, org, team);
        let other = UserId::new();
        let (rec, _) = new_visit(&rep, other);
        let members = [(rep.user(), rep.team), (other, rep.team)];
        assert_eq!(
            decided(&rep, &rec, &members).expect_err("refused").code,
            RejectCode::Forbidden
        );
    }

    #[test]
    fn a_manager_creates_records_for_the_team_but_not_for_another_team() {
        let (org, team) = (OrgId::new(), TeamId::new());
        let manager = caller(Role::Manager, org, team);
        let member = UserId::new();
        let (rec, _) = new_visit(&manager, member);
        assert!(
            decided(&manager, &rec, &[(member, Some(team))]).is_ok(),
            "own team"
        );
        let stranger = UserId::new();
        let (for_stranger, _) = new_visit(&manager, stranger);
        assert_eq!(
            decided(&manager, &for_stranger, &[(stranger, Some(TeamId::new()))])
                .expect_err("another team's member")
                .code,
            RejectCode::Forbidden
        );
        let elsewhere = Caller {
            team: Some(TeamId::new()),
            ..manager.clone()
        };
        assert_eq!(
            decided(&elsewhere, &rec, &[(member, Some(team))])
                .expect_err("another team")
                .code,
            RejectCode::Forbidden
        );
    }
}
