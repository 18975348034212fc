//! Checking changes that arrive from a device, before the server accepts them.
//!
//! The server never trusts what a document says about who did what: it compares
//! the record before and after the pushed changes and checks each difference
//! against the *authenticated* actor.
//!
//! - The kind, id and organisation never change; a new record must belong to the
//!   actor's organisation.
//! - Every new status-history event was made by the actor, and its transition is
//!   one the state machine allows for the actor's role (the role written in the
//!   event is ignored), or a back-office settlement of a status clash to one
//!   of the clashing values (`RecordDoc::resolve_status`). A status that
//!   changed with no event is refused.
//! - The merged record reads as its typed struct and passes `validate()`.
//!
//! Who may write which record at all (ownership, team, organisation) is decided
//! by the server's scope rules before this runs.

use std::collections::BTreeSet;

use serde_json::Value as Json;

use super::rules;
use super::signature::SignatureVerdict;
use super::status::{Status, StatusEvent};
use super::types::{Actor, RecordKind, Role};
use super::untrusted::{fenced, read_change};
use super::{ModelError, RecordDoc, Stateful, TransitionError};
use crate::ids::OrgId;

/// Why an incoming change was refused, in the categories the protocol reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IncomingError {
    /// The record does not read or breaks its rules.
    #[error("{0}")]
    Validation(String),
    /// A status change that is not allowed.
    #[error("{0}")]
    Transition(String),
    /// Something the actor may not do.
    #[error("{0}")]
    Forbidden(String),
    /// The changes turn the record into another kind.
    #[error("{0}")]
    WrongKind(String),
    /// The bytes are not Automerge changes of this record.
    #[error("{0}")]
    InvalidChange(String),
    /// The changes depend on changes the server does not have.
    #[error("{0}")]
    MissingDependencies(String),
    /// A change was made under an actor id that is not the pushing device's.
    #[error("{0}")]
    ForeignActor(String),
    /// The changes would cost more to merge than a record may (see
    /// [`MAX_CHANGE_OPS`], [`MAX_RECORD_OPS`]).
    #[error("{0}")]
    TooLarge(String),
}

/// Most operations one change may hold once expanded. Automerge's columns
/// are run-length encoded, so a change of a hundred bytes can hold a million
/// list insertions, and merging costs time per operation, not per byte (a
/// 140-byte change of 900,000 insertions took the server 4.5 s). A real edit
/// holds a few to a few thousand operations; a long note typed offline in one
/// go a few tens of thousands.
pub const MAX_CHANGE_OPS: usize = 100_000;

/// Most operations a record's document may reach, counted by Automerge's
/// operation counter (what its newest change says it was made on). Every
/// later merge and every device's load of the record pays for all of them.
pub const MAX_RECORD_OPS: u64 = 500_000;

/// How many operations `raw` expands to, read without applying it (the
/// server's pre-flight of a push); `None` when it is not a change at all,
/// which the merge then reports.
pub fn change_ops(raw: &[u8]) -> Option<usize> {
    IncomingChange::read(raw).ops()
}

/// One pushed change, read once: the server's pre-flight reads every change
/// of a push to count its operations, and the merge ([`merge_read`]) takes
/// them as read instead of decoding and hashing each change a second time
/// (a tenth to a fifth of a new record's merge, by the machine's day).
#[derive(Debug, Clone)]
pub struct IncomingChange {
    raw: Vec<u8>,
    read: Result<automerge::Change, String>,
}

impl IncomingChange {
    /// Reads `raw`, bounded and with Automerge's panics turned into errors;
    /// bytes that are not a change are kept, and the merge refuses them.
    pub fn read(raw: &[u8]) -> Self {
        IncomingChange {
            raw: raw.to_vec(),
            read: read_change(raw),
        }
    }

    /// How many operations the change expands to; `None` when it is not one.
    pub fn ops(&self) -> Option<usize> {
        self.read.as_ref().ok().map(|c| c.len())
    }
}

fn too_many_ops_in_change(ops: usize) -> IncomingError {
    IncomingError::TooLarge(format!(
        "a change holds {ops} operations; a change holds at most {MAX_CHANGE_OPS} \
         (photos and documents belong in attachments)"
    ))
}

/// The server's copy of a record after accepting pushed changes.
#[derive(Debug)]
pub struct Merged {
    /// The merged record.
    pub doc: RecordDoc,
    /// The changes that were new to the server, in the order they were applied:
    /// (hash, raw bytes). Empty for a resend.
    pub new_changes: Vec<(automerge::ChangeHash, Vec<u8>)>,
    /// The merged record as JSON, and the server's copy before the push
    /// (`None` for a new record or a resend), as the checks read them: for
    /// callers that read fields without converting the documents again.
    pub json: Option<(Json, Option<Json>)>,
}

/// Applies changes pushed by a device to the server's copy of a record (`None`
/// for a record the server has not seen) and checks the result.
///
/// Changes the server already has are skipped (a resend is a no-op). Every new
/// change must be made under `device_actor`. Nothing is modified in place: on
/// error the caller's copy is untouched, and on success the merged document is
/// returned for the caller to store in one transaction.
pub fn merge_incoming(
    existing: Option<&RecordDoc>,
    id: crate::ids::RecordId,
    kind: RecordKind,
    raw_changes: &[Vec<u8>],
    device_actor: &automerge::ActorId,
    actor: &Actor,
    org: OrgId,
) -> Result<Merged, IncomingError> {
    let changes: Vec<IncomingChange> = raw_changes
        .iter()
        .map(|raw| IncomingChange::read(raw))
        .collect();
    merge_read(existing, id, kind, &changes, device_actor, actor, org)
}

/// [`merge_incoming`] of changes already read ([`IncomingChange::read`]).
pub fn merge_read(
    existing: Option<&RecordDoc>,
    id: crate::ids::RecordId,
    kind: RecordKind,
    incoming: &[IncomingChange],
    device_actor: &automerge::ActorId,
    actor: &Actor,
    org: OrgId,
) -> Result<Merged, IncomingError> {
    let mut base = match existing {
        Some(doc) => doc.clone().into_automerge(),
        None => automerge::AutoCommit::new(),
    };
    // The record's operation counter so far: the largest of its heads' (a
    // change's counter is above those of every change it depends on).
    let heads = base.get_heads();
    let mut top_op = heads
        .iter()
        .filter_map(|h| base.get_change_by_hash(h))
        .map(|c| c.max_op())
        .max()
        .unwrap_or(0);
    let mut fresh: Vec<(automerge::ChangeHash, &[u8], &automerge::Change)> = Vec::new();
    for IncomingChange { raw, read } in incoming {
        let change = read
            .as_ref()
            .map_err(|e| IncomingError::InvalidChange(e.clone()))?;
        if base.get_change_by_hash(&change.hash()).is_some()
            || fresh.iter().any(|(h, _, _)| *h == change.hash())
        {
            continue;
        }
        // Counted before anything expands the change (re-encoding, applying).
        if change.len() > MAX_CHANGE_OPS {
            return Err(too_many_ops_in_change(change.len()));
        }
        top_op = top_op.max(change.max_op());
        if top_op > MAX_RECORD_OPS {
            return Err(IncomingError::TooLarge(format!(
                "the record would hold {top_op} operations; a record holds at most \
                 {MAX_RECORD_OPS} (photos and documents belong in attachments)"
            )));
        }
        // Automerge reads some encodings it would never write (fuzzing found
        // them) and writes them back canonically when the document is saved,
        // under another hash. Such a change is stored as it came: only a
        // compaction encodes changes again, and it is checked
        // (`stored::compacted`).
        if change.actor_id() != device_actor {
            return Err(IncomingError::ForeignActor(
                "a change was made under an actor id that is not this device's; log in again"
                    .into(),
            ));
        }
        // A change that depends on nothing starts a record's history: for a
        // record the server already holds it can only be old history (an
        // epoch an erasure rewrote, resent by a device that kept it) or a
        // forged second beginning, and merged it would bring back what the
        // rewrite took out.
        if existing.is_some() && change.deps().is_empty() {
            return Err(IncomingError::InvalidChange(
                "a change that starts a new history for a record that exists; \
                 pull the record and edit it again"
                    .into(),
            ));
        }
        fresh.push((change.hash(), raw.as_slice(), change));
    }
    if fresh.is_empty() {
        if let Some(doc) = existing {
            return Ok(Merged {
                doc: doc.clone(),
                new_changes: Vec::new(),
                json: None,
            });
        }
        return Err(IncomingError::InvalidChange(
            "a new record needs its changes".into(),
        ));
    }
    // `base` is our copy: on a panic inside Automerge it is dropped with the error.
    let changes: Vec<automerge::Change> = fresh.iter().map(|(_, _, c)| (*c).clone()).collect();
    fenced("applying changes", || base.apply_changes(changes))
        .map_err(IncomingError::InvalidChange)?
        .map_err(|e| IncomingError::InvalidChange(format!("the changes do not apply: {e}")))?;
    if !base.get_missing_deps(&[]).is_empty() {
        return Err(IncomingError::MissingDependencies(
            "the changes depend on history the server does not have; the app will repair the record".into(),
        ));
    }
    let after =
        RecordDoc::from_automerge(base).map_err(|e| IncomingError::Validation(e.to_string()))?;
    if after.id() != id || after.kind() != kind {
        return Err(IncomingError::WrongKind(format!(
            "the changes describe {} {}, not {kind} {id}",
            after.kind(),
            after.id()
        )));
    }
    // The heads the pushed changes were made on: what the device had seen.
    let fresh_hashes: BTreeSet<automerge::ChangeHash> = fresh.iter().map(|(h, _, _)| *h).collect();
    let mut base: Vec<automerge::ChangeHash> = fresh
        .iter()
        .flat_map(|(_, _, c)| c.deps().iter().copied())
        .filter(|d| !fresh_hashes.contains(d))
        .collect();
    base.sort_unstable();
    base.dedup();
    let json = check_pushed(existing, &after, Some(&base), actor, org)?;
    Ok(Merged {
        doc: after,
        new_changes: fresh
            .into_iter()
            .map(|(h, raw, _)| (h, raw.to_vec()))
            .collect(),
        json: Some(json),
    })
}

impl From<ModelError> for IncomingError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Transition(t) => IncomingError::Transition(t.to_string()),
            ModelError::WrongKind { .. } => IncomingError::WrongKind(e.to_string()),
            other => IncomingError::Validation(other.to_string()),
        }
    }
}

/// Checks `after` (the server's copy with the pushed changes applied) against
/// `before` (the server's copy without them; `None` for a new record), for
/// changes pushed by `actor` of organisation `org`.
pub fn check_incoming(
    before: Option<&RecordDoc>,
    after: &RecordDoc,
    actor: &Actor,
    org: OrgId,
) -> Result<(), IncomingError> {
    check_pushed(before, after, None, actor, org).map(|_| ())
}

/// [`check_incoming`], knowing the heads the pushed changes were made on
/// (`base`): what the pushing device had seen. A status event may continue
/// from a status the record had there (a device that was offline while the
/// office moved the record on), and then goes through the clash rules.
fn check_pushed(
    before: Option<&RecordDoc>,
    after: &RecordDoc,
    base: Option<&[automerge::ChangeHash]>,
    actor: &Actor,
    org: OrgId,
) -> Result<(Json, Option<Json>), IncomingError> {
    let after_json = after.to_json()?;
    let before_json = before.map(RecordDoc::to_json).transpose()?;
    if let Some(before) = before {
        if before.kind() != after.kind() {
            return Err(IncomingError::WrongKind(format!(
                "record {} is a {}, not a {}",
                after.id(),
                before.kind(),
                after.kind()
            )));
        }
        let before_json = before_json.as_ref().unwrap_or(&Json::Null);
        for field in ["id", "org"] {
            if before_json["meta"][field] != after_json["meta"][field] {
                return Err(IncomingError::Forbidden(format!(
                    "meta.{field} cannot be changed"
                )));
            }
        }
        if !actor.role.is_back_office() {
            for field in ["owner", "team", "territory"] {
                if before_json["meta"][field] != after_json["meta"][field] {
                    return Err(IncomingError::Forbidden(format!(
                        "a {} cannot change a record's {field}; the back office reassigns records",
                        actor.role
                    )));
                }
            }
        }
    }
    if after_json["meta"]["org"] != Json::String(org.to_string()) {
        return Err(IncomingError::Forbidden(
            "the record belongs to another organisation".into(),
        ));
    }
    // The state machine's checks of a stateful kind, with both readings.
    macro_rules! stateful {
        ($record:ty) => {
            check_record::<$record>(
                before.zip(before_json.as_ref()),
                after,
                &after_json,
                base,
                actor,
            )?
        };
    }
    let new_events = match after.kind() {
        RecordKind::Visit => stateful!(super::Visit),
        RecordKind::VisitReport => stateful!(super::VisitReport),
        RecordKind::Order => stateful!(super::Order),
        RecordKind::ServiceJob => stateful!(super::ServiceJob),
        RecordKind::Assignment => stateful!(super::Assignment),
        RecordKind::Account => check_plain::<super::Account>(after, &after_json)?,
        RecordKind::Contact => check_plain::<super::Contact>(after, &after_json)?,
        RecordKind::Product => check_plain::<super::Product>(after, &after_json)?,
        RecordKind::PriceList => check_plain::<super::PriceList>(after, &after_json)?,
        RecordKind::ChecklistTemplate => {
            check_plain::<super::ChecklistTemplate>(after, &after_json)?
        }
        RecordKind::ChecklistResponse => {
            check_plain::<super::ChecklistResponse>(after, &after_json)?
        }
        RecordKind::VanStock => {
            super::van_stock::check_movements(before_json.as_ref(), &after_json, actor.role)
                .map_err(IncomingError::Forbidden)?;
            check_plain::<super::VanStock>(after, &after_json)?
        }
    };
    check_fields(
        before,
        before_json.as_ref(),
        after,
        &after_json,
        &new_events,
        base,
        actor,
    )?;
    check_signature(before, after, &after_json, before_json.as_ref(), actor.role)?;
    Ok((after_json, before_json))
}

fn check_plain<R: super::Record>(
    after: &RecordDoc,
    after_json: &Json,
) -> Result<Vec<StatusEvent>, IncomingError> {
    let record: R = after.read_json(after_json)?;
    record
        .validate()
        .map_err(|e| IncomingError::Validation(e.to_string()))?;
    Ok(Vec::new())
}

/// Every field the push changed, against the table of `rules`, for the status
/// the record had before the push (for a new record: the status it was
/// created in). One exception keeps field evidence made offline: a field the
/// record's status now locks is still accepted when it was writable in the
/// status the device had seen and the push's own transition wins the clash
/// with the office's (a visit checked in offline while the office cancelled it
/// keeps its check-in, and the clash goes to the managers' queue).
fn check_fields(
    before: Option<&RecordDoc>,
    before_json: Option<&Json>,
    after: &RecordDoc,
    after_json: &Json,
    new_events: &[StatusEvent],
    base: Option<&[automerge::ChangeHash]>,
    actor: &Actor,
) -> Result<(), IncomingError> {
    let kind = after.kind();
    let status_before: Option<String> = match before {
        Some(b) if kind.is_stateful() => b.status_name()?.as_str().map(str::to_owned),
        // A kind without statuses may have a phase (a published template is
        // never edited, whatever the push writes alongside).
        Some(_) => before_json
            .and_then(|j| rules::phase(kind, j))
            .map(str::to_owned),
        None => new_events
            .iter()
            .find(|e| e.from.is_none())
            .map(|e| e.to.clone()),
    };
    let touched = rules::touched(kind, before_json, after_json)
        .map_err(|e| IncomingError::Validation(e.to_string()))?;
    // The statuses the push takes the record through: a device offline all
    // day pushes a visit's check-in and check-out together. Each field must
    // be writable in one of them.
    let mut path: Vec<Option<&str>> = vec![status_before.as_deref()];
    path.extend(new_events.iter().map(|e| Some(e.to.as_str())));
    let writable = |field: &str, statuses: &[Option<&str>]| {
        statuses
            .iter()
            .any(|s| rules::may_write(kind, field, *s, actor.role) == Some(true))
    };
    let Some(field) = touched.iter().find(|f| match before {
        Some(_) => !writable(f, &path),
        None => !rules::may_ever_write(kind, f, actor.role),
    }) else {
        return Ok(());
    };
    let locked = rules::Locked::Field {
        kind,
        field,
        status: status_before.clone(),
        role: actor.role,
    };
    let (Some(before), Some(base)) = (before, base) else {
        return Err(IncomingError::Forbidden(locked.to_string()));
    };
    let now = after.status_name()?.as_str().map(str::to_owned);
    let won = now != status_before && new_events.iter().any(|e| Some(&e.to) == now.as_ref());
    let seen = before.status_values(Some(base));
    let mut seen_path: Vec<Option<&str>> = seen.iter().map(|s| Some(s.as_str())).collect();
    seen_path.extend(new_events.iter().map(|e| Some(e.to.as_str())));
    if won && touched.iter().all(|f| writable(f, &seen_path)) {
        Ok(())
    } else {
        Err(IncomingError::Forbidden(locked.to_string()))
    }
}

/// [`check_signature`] for an edit made on the device: refused with
/// [`rules::Locked::Signed`] when `actor` is a field user who changed what a
/// customer signed while the signature matched it.
pub fn keeps_signature(
    before: &RecordDoc,
    after: &RecordDoc,
    role: Role,
) -> Result<(), rules::Locked> {
    if role.is_back_office() || !matches!(after.kind(), RecordKind::Order | RecordKind::Assignment)
    {
        return Ok(());
    }
    let (Ok(before_json), Ok(after_json)) = (before.to_json(), after.to_json()) else {
        return Ok(());
    };
    check_signature(Some(before), after, &after_json, Some(&before_json), role)
        .map_err(|_| rules::Locked::signed(after.kind()))
}

/// A field user cannot change what a customer signed while the signature
/// still matches it (they may sign again). The back office may, and the
/// signature then shows as no longer matching.
fn check_signature(
    before: Option<&RecordDoc>,
    after: &RecordDoc,
    after_json: &Json,
    before_json: Option<&Json>,
    role: Role,
) -> Result<(), IncomingError> {
    let Some(before) = before else {
        return Ok(());
    };
    if role.is_back_office() {
        return Ok(());
    }
    let refused = || IncomingError::Forbidden(rules::Locked::signed(after.kind()).to_string());
    match after.kind() {
        RecordKind::Order => {
            let (old, new): (super::Order, super::Order) =
                (before.read_stateful()?, after.read_stateful()?);
            let matched = super::signature::order_verdict(&old) == SignatureVerdict::Matches;
            if matched && super::signature::order_verdict(&new) != SignatureVerdict::Matches {
                return Err(refused());
            }
        }
        RecordKind::Assignment => {
            // The job summary also covers the job; on the assignment itself a
            // field user keeps the signed work, parts, time and checklist.
            let Some(before_json) = before_json else {
                return Ok(());
            };
            if before_json.get("signature").is_none_or(Json::is_null)
                || before_json.get("signature") != after_json.get("signature")
            {
                return Ok(());
            }
            let signed_time = |j: &Json| -> Json {
                let entries = j
                    .get("time_entries")
                    .and_then(Json::as_object)
                    .cloned()
                    .unwrap_or_default();
                entries
                    .into_iter()
                    .map(|(id, mut e)| {
                        if let Some(e) = e.as_object_mut() {
                            e.remove("approval");
                            e.remove("note");
                        }
                        (id, e)
                    })
                    .collect::<serde_json::Map<_, _>>()
                    .into()
            };
            let covered = ["work_started", "parts", "checklist_response_id"];
            if covered
                .iter()
                .any(|f| before_json.get(f) != after_json.get(f))
                || signed_time(before_json) != signed_time(after_json)
            {
                return Err(refused());
            }
        }
        _ => {}
    }
    Ok(())
}

/// Whether an event to `to` is the back office settling a status clash
/// ([`RecordDoc::resolve_status`]): before the change the status held
/// concurrent values, `to` is one of them, and afterwards it holds one value.
/// Such a settlement need not be an edge of the state machine (the manager
/// keeps the office's cancellation over the field's completion, say).
fn settles_status_clash(
    before: Option<&RecordDoc>,
    after: &RecordDoc,
    actor: &Actor,
    to: &str,
) -> bool {
    if !actor.role.is_back_office() {
        return false;
    }
    let status_clash = |doc: &RecordDoc| {
        doc.conflicts()
            .ok()
            .and_then(|c| c.into_iter().find(|c| c.path == "status"))
    };
    let Some(clash) = before.and_then(status_clash) else {
        return false;
    };
    clash.values.iter().any(|v| v.value.as_str() == Some(to)) && status_clash(after).is_none()
}

/// `before`: the server's copy without the pushed changes, and its JSON.
fn check_record<R: Stateful>(
    before: Option<(&RecordDoc, &Json)>,
    after: &RecordDoc,
    after_json: &Json,
    base: Option<&[automerge::ChangeHash]>,
    actor: &Actor,
) -> Result<Vec<StatusEvent>, IncomingError> {
    let record: R = after.read_stateful_json(after_json)?;
    record
        .validate()
        .map_err(|e| IncomingError::Validation(e.to_string()))?;

    let seen: BTreeSet<_> = match before {
        Some((b, json)) => b.history_in(json)?.into_iter().map(|e| e.id).collect(),
        None => BTreeSet::new(),
    };
    let before = before.map(|(doc, _)| doc);
    let new_events: Vec<_> = after
        .history_in(after_json)?
        .into_iter()
        .filter(|e| !seen.contains(&e.id))
        .collect();

    for event in &new_events {
        if actor.device.is_some() && rules::OFFICE_ONLY.contains(&(after.kind(), event.to.as_str()))
        {
            return Err(IncomingError::Transition(format!(
                "a {} is {} in the office, not from a device",
                R::Status::MACHINE,
                event.to
            )));
        }
        if event.by != actor.user {
            return Err(IncomingError::Forbidden(format!(
                "a status change is attributed to another user ({})",
                event.by
            )));
        }
        let to = R::Status::parse(&event.to).ok_or_else(|| {
            IncomingError::Transition(format!(
                "unknown {} status {:?}",
                R::Status::MACHINE,
                event.to
            ))
        })?;
        match event.from.as_deref() {
            None => {
                if before.is_some() {
                    return Err(IncomingError::Transition(
                        "a record can be created only once".into(),
                    ));
                }
                if !to.may_start_in(actor.role) {
                    return Err(IncomingError::Transition(
                        TransitionError::precondition(format!(
                            "a {} cannot be created as {} by a {}",
                            R::Status::MACHINE,
                            to.as_str(),
                            actor.role
                        ))
                        .to_string(),
                    ));
                }
            }
            Some(from_name) => {
                // The event continues from a status the record had: on the
                // server, earlier in this push, or where the device saw it.
                if let Some(before) = before
                    && !continues(before, from_name, &new_events, base)
                {
                    return Err(IncomingError::Transition(format!(
                        "this {} is {} now, not {from_name}; the change was made on a copy \
                         the server never had",
                        R::Status::MACHINE,
                        before.status_name()?.as_str().unwrap_or("without a status"),
                    )));
                }
                let from = R::Status::parse(from_name).ok_or_else(|| {
                    IncomingError::Transition(format!(
                        "unknown {} status {from_name:?}",
                        R::Status::MACHINE
                    ))
                })?;
                if let Err(e) = from.check(to, actor.role)
                    && !settles_status_clash(before, after, actor, &event.to)
                {
                    return Err(IncomingError::Transition(e.to_string()));
                }
            }
        }
    }

    // The record's own guard (an outcome to complete a visit, a comment to request
    // changes) is checked against the merged record for the status it now shows.
    if let Some(last) = new_events
        .iter()
        .filter(|e| e.from.is_some())
        .max_by_key(|e| (e.at.at_ms, e.id))
        && last.to == record.status().as_str()
    {
        let req = super::TransitionRequest {
            to: record.status(),
            at: last.at,
            gps: last.gps,
            reason: last.reason.clone(),
        };
        record
            .guard(&req, actor)
            .map_err(|e| IncomingError::Transition(e.to_string()))?;
    }

    // A status that moved without any new event is a direct write of the field.
    if let Some(before) = before {
        let was = before.status::<R::Status>()?;
        let is = after.status::<R::Status>()?;
        if was != is && new_events.is_empty() {
            return Err(IncomingError::Forbidden(
                "the status can only change through a transition".into(),
            ));
        }
    } else if new_events.iter().all(|e| e.from.is_some()) {
        return Err(IncomingError::Validation(
            "a new record needs its creation event".into(),
        ));
    }
    Ok(new_events)
}

/// Whether a new event's `from` is a status the record could have had for
/// the device that made it: a value the server's copy holds, the `to` of
/// another event of the same push, or a value the record held at the heads
/// the push was made on.
fn continues(
    before: &RecordDoc,
    from: &str,
    new_events: &[StatusEvent],
    base: Option<&[automerge::ChangeHash]>,
) -> bool {
    before.status_values(None).iter().any(|s| s == from)
        || new_events.iter().any(|e| e.to == from)
        || base.is_some_and(|heads| before.status_values(Some(heads)).iter().any(|s| s == from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{DeviceId, RecordId, TeamId, TerritoryId, UserId};
    use crate::model::order::{self, Order, OrderLine, OrderStatus};
    use crate::model::visit::{self, Site, Visit, VisitStatus};
    use crate::model::{
        Assignment, AssignmentStatus, DeviceTime, JobStatus, Money, Qty, RecordMeta, ReportStatus,
        Role, ServiceJob, Status, TransitionRequest, VisitReport,
    };
    use automerge::ActorId;

    struct World {
        org: OrgId,
        rep: Actor,
    }

    fn world() -> World {
        World {
            org: OrgId::new(),
            rep: Actor::on_device(UserId::new(), Role::Rep, DeviceId::new()),
        }
    }

    fn meta(w: &World) -> RecordMeta {
        RecordMeta {
            id: RecordId::new(),
            org: w.org,
            owner: w.rep.user,
            team: TeamId::new(),
            territory: TerritoryId::new(),
        }
    }

    /// The server's copy and a device copy made from it.
    fn pair(doc: &mut RecordDoc) -> (RecordDoc, RecordDoc) {
        let server = RecordDoc::from_automerge(doc.automerge().fork()).expect("fork");
        let mut device = RecordDoc::from_automerge(doc.automerge().fork()).expect("fork");
        device.set_actor(ActorId::random());
        (server, device)
    }

    fn merged(server: &RecordDoc, device: &mut RecordDoc) -> RecordDoc {
        let mut after = server.clone();
        after.merge(device).expect("merge");
        after
    }

    const SITE: Site = Site {
        coords: None,
        radius_m: 100.0,
    };

    fn names<S: Status>() -> Vec<&'static str> {
        S::all().iter().map(|s| s.as_str()).collect()
    }

    #[test]
    fn every_status_named_in_the_table_is_one_of_its_kind() {
        assert_eq!(rules::statuses(RecordKind::Visit), names::<VisitStatus>());
        assert_eq!(
            rules::statuses(RecordKind::VisitReport),
            names::<ReportStatus>()
        );
        assert_eq!(rules::statuses(RecordKind::Order), names::<OrderStatus>());
        assert_eq!(
            rules::statuses(RecordKind::ServiceJob),
            names::<JobStatus>()
        );
        assert_eq!(
            rules::statuses(RecordKind::Assignment),
            names::<AssignmentStatus>()
        );
        assert_eq!(
            rules::statuses(RecordKind::ChecklistTemplate),
            ["draft", "published"]
        );
        for r in rules::FIELD_RULES {
            for grant in r.grants {
                // A kind without statuses names only its phases (a
                // checklist template's draft and published), if any.
                if !r.kind.is_stateful() && r.kind != RecordKind::ChecklistTemplate {
                    assert!(grant.statuses.is_empty(), "{} {}", r.kind, r.field);
                }
                for s in grant.statuses {
                    assert!(
                        rules::statuses(r.kind).contains(s),
                        "{} {}: {s}",
                        r.kind,
                        r.field
                    );
                }
            }
        }
    }

    fn any_meta() -> RecordMeta {
        RecordMeta {
            id: RecordId::new(),
            org: OrgId::new(),
            owner: UserId::new(),
            team: TeamId::new(),
            territory: TerritoryId::new(),
        }
    }

    /// Every key a typed record writes is in the table (records with every
    /// optional field filled, as JSON).
    #[test]
    fn the_table_covers_every_field_of_every_kind() {
        let id = RecordId::new;
        let samples: Vec<(RecordKind, Json)> = vec![
            (
                RecordKind::Visit,
                serde_json::to_value(Visit::planned(
                    any_meta(),
                    id(),
                    DeviceTime::utc(0),
                    DeviceTime::utc(1),
                ))
                .expect("json"),
            ),
            (
                RecordKind::VisitReport,
                serde_json::to_value(VisitReport::new(any_meta(), id())).expect("json"),
            ),
            (
                RecordKind::Order,
                serde_json::to_value(Order::new(any_meta(), id(), "EUR")).expect("json"),
            ),
            (
                RecordKind::ServiceJob,
                serde_json::to_value(ServiceJob::new(any_meta(), id(), "repair")).expect("json"),
            ),
            (
                RecordKind::Assignment,
                serde_json::to_value(Assignment::new(
                    any_meta(),
                    id(),
                    DeviceTime::utc(0),
                    DeviceTime::utc(1),
                ))
                .expect("json"),
            ),
        ];
        let mut seen = 0;
        for (kind, json) in samples {
            for key in json.as_object().expect("object").keys() {
                if rules::RESERVED_KEYS.contains(&key.as_str()) {
                    continue;
                }
                assert!(
                    rules::may_write(kind, key, None, Role::Server).is_some(),
                    "{kind}.{key} is not in the table"
                );
                seen += 1;
            }
        }
        assert!(seen > 20);
        // The fields of every kind, by name, as its struct declares them.
        let declared: &[(RecordKind, &[&str])] = &[
            (
                RecordKind::Visit,
                &[
                    "account_id",
                    "location_id",
                    "contact_id",
                    "visit_type",
                    "planned",
                    "planned_start",
                    "planned_end",
                    "instructions",
                    "check_in",
                    "check_out",
                    "outcome",
                    "notes",
                    "next_visit_date",
                    "order_ids",
                    "checklist_response_ids",
                ],
            ),
            (
                RecordKind::VisitReport,
                &[
                    "visit_id",
                    "summary",
                    "observations",
                    "kpis",
                    "content_hash",
                    "reviewer",
                    "decided_at",
                    "comments",
                ],
            ),
            (
                RecordKind::Order,
                &[
                    "account_id",
                    "ship_to",
                    "visit_id",
                    "price_list_id",
                    "currency",
                    "delivery_date",
                    "lines",
                    "signature",
                    "notes",
                ],
            ),
            (
                RecordKind::ServiceJob,
                &[
                    "account_id",
                    "location_id",
                    "contact_id",
                    "asset",
                    "job_type",
                    "priority",
                    "description",
                    "request_window_start",
                    "request_window_end",
                    "sla_due",
                    "first_arrived_at",
                    "completed_at",
                    "closed_at",
                    "resolution",
                    "first_time_fix",
                    "requires_checklist",
                    "checklist_template_id",
                    "requires_signature",
                ],
            ),
            (
                RecordKind::Assignment,
                &[
                    "job_id",
                    "scheduled_start",
                    "scheduled_end",
                    "arrival_window_start",
                    "arrival_window_end",
                    "travel_started",
                    "arrived",
                    "work_started",
                    "work_ended",
                    "parts",
                    "time_entries",
                    "requires_checklist",
                    "checklist_response_id",
                    "checklist_complete",
                    "requires_signature",
                    "signature",
                ],
            ),
        ];
        for (kind, fields) in declared {
            let listed: Vec<&str> = rules::rules_of(*kind)
                .map(|r| r.field)
                .filter(|f| !f.contains('.') && *f != "deleted")
                .collect();
            let mut want = fields.to_vec();
            want.sort_unstable();
            let mut got = listed.clone();
            got.sort_unstable();
            assert_eq!(got, want, "{kind}");
        }
    }

    #[test]
    fn a_manager_may_settle_a_status_clash_on_either_side_and_a_rep_may_not() {
        let w = world();
        let v = Visit::planned(
            meta(&w),
            RecordId::new(),
            DeviceTime::utc(0),
            DeviceTime::utc(1),
        );
        let mut doc = RecordDoc::create_stateful(&v, ActorId::random(), &w.rep, DeviceTime::utc(0))
            .expect("create");
        let (mut office, mut device) = pair(&mut doc);
        office.set_actor(ActorId::random());
        let manager = Actor::without_device(UserId::new(), Role::Manager);
        office
            .transition::<Visit>(
                &manager,
                &TransitionRequest::new(VisitStatus::Cancelled, DeviceTime::utc(5)),
                |_| {},
            )
            .expect("cancel");
        visit::check_in(&mut device, &w.rep, DeviceTime::utc(6), None, SITE).expect("check in");
        let clashing = merged(&office, &mut device);
        assert!(
            clashing
                .conflicts()
                .expect("conflicts")
                .iter()
                .any(|c| c.path == "status")
        );
        for keep in [VisitStatus::Cancelled, VisitStatus::InProgress] {
            let mut settled = clashing.clone();
            settled.set_actor(ActorId::random());
            settled
                .resolve_status(&manager, keep, DeviceTime::utc(9), "checked with the rep")
                .expect("settle");
            assert_eq!(
                check_incoming(Some(&clashing), &settled, &manager, w.org),
                Ok(()),
                "keeping {keep:?}"
            );
            assert!(settled.conflicts().expect("conflicts").is_empty());
        }
        // The same settlement by a rep (written past the model's own refusal) is
        // refused: in progress to in progress is no edge of the machine.
        let mut forged = clashing.clone();
        forged.set_actor(ActorId::random());
        let as_manager = Actor {
            role: Role::Manager,
            ..w.rep.clone()
        };
        forged
            .resolve_status(
                &as_manager,
                VisitStatus::InProgress,
                DeviceTime::utc(9),
                "mine",
            )
            .expect("settle");
        assert!(matches!(
            check_incoming(Some(&clashing), &forged, &w.rep, w.org),
            Err(IncomingError::Transition(_))
        ));
    }

    #[test]
    fn a_new_record_made_by_its_rep_is_accepted() {
        let w = world();
        let v = Visit::planned(
            meta(&w),
            RecordId::new(),
            DeviceTime::utc(0),
            DeviceTime::utc(1),
        );
        let doc = RecordDoc::create_stateful(&v, ActorId::random(), &w.rep, DeviceTime::utc(0))
            .expect("create");
        assert_eq!(check_incoming(None, &doc, &w.rep, w.org), Ok(()));
    }

    /// A van's movements only grow for its technician: a consumption added
    /// offline is accepted, one rewritten to hide a part is refused, and a
    /// replenishment is the office's.
    #[test]
    fn a_technician_adds_to_their_van_but_never_rewrites_or_fills_it() {
        use crate::model::van_stock::{self, Consumption, Replenishment, VanStock};
        use crate::model::{Qty, Record};
        let w = world();
        let tech = Actor::on_device(UserId::new(), Role::Technician, DeviceId::new());
        let office = Actor::without_device(UserId::new(), Role::Manager);
        let mut m = meta(&w);
        m.owner = tech.user;
        let mut doc = RecordDoc::create(
            &VanStock::new(m, "B-FS 42"),
            ActorId::random(),
            DeviceTime::utc(0),
        )
        .expect("create");
        assert_eq!(VanStock::KIND, RecordKind::VanStock);
        let part = RecordId::new();
        let used = || Consumption {
            product_id: part,
            qty: Qty::units(1),
            serial: None,
            assignment_id: RecordId::new(),
            at: DeviceTime::utc(1),
        };
        van_stock::consume(&mut doc, &tech, DeviceTime::utc(1), RecordId::new(), used())
            .expect("used");
        let (server, mut device) = pair(&mut doc);
        van_stock::consume(
            &mut device,
            &tech,
            DeviceTime::utc(2),
            RecordId::new(),
            used(),
        )
        .expect("used");
        let after = merged(&server, &mut device);
        assert_eq!(check_incoming(Some(&server), &after, &tech, w.org), Ok(()));

        let (server, mut device) = pair(&mut doc);
        device
            .update::<VanStock>(DeviceTime::utc(3), |v| v.consumptions.clear())
            .expect("edit");
        let after = merged(&server, &mut device);
        assert!(matches!(
            check_incoming(Some(&server), &after, &tech, w.org),
            Err(IncomingError::Forbidden(m)) if m.contains("consumptions")
        ));
        assert_eq!(
            check_incoming(Some(&server), &after, &office, w.org),
            Ok(())
        );

        let (server, mut device) = pair(&mut doc);
        device
            .update::<VanStock>(DeviceTime::utc(3), |v| {
                v.replenishments.insert(
                    RecordId::new(),
                    Replenishment {
                        product_id: part,
                        qty: Qty::units(5),
                        serials: Vec::new(),
                        at: DeviceTime::utc(3),
                        note: None,
                    },
                );
            })
            .expect("edit");
        let after = merged(&server, &mut device);
        assert!(matches!(
            check_incoming(Some(&server), &after, &tech, w.org),
            Err(IncomingError::Forbidden(m)) if m.contains("replenishments")
        ));
    }

    #[test]
    fn a_record_of_another_organisation_is_forbidden() {
        let w = world();
        let v = Visit::planned(
            meta(&w),
            RecordId::new(),
            DeviceTime::utc(0),
            DeviceTime::utc(1),
        );
        let doc = RecordDoc::create_stateful(&v, ActorId::random(), &w.rep, DeviceTime::utc(0))
            .expect("create");
        assert!(matches!(
            check_incoming(None, &doc, &w.rep, OrgId::new()),
            Err(IncomingError::Forbidden(_))
        ));
    }

    #[test]
    fn a_legal_check_in_is_accepted() {
        let w = world();
        let v = Visit::planned(
            meta(&w),
            RecordId::new(),
            DeviceTime::utc(0),
            DeviceTime::utc(1),
        );
        let mut doc = RecordDoc::create_stateful(&v, ActorId::random(), &w.rep, DeviceTime::utc(0))
            .expect("create");
        let (server, mut device) = pair(&mut doc);
        visit::check_in(&mut device, &w.rep, DeviceTime::utc(5), None, SITE).expect("check in");
        let after = merged(&server, &mut device);
        assert_eq!(check_incoming(Some(&server), &after, &w.rep, w.org), Ok(()));
    }

    #[test]
    fn a_transition_the_pushing_role_may_not_make_is_refused_whatever_the_event_claims() {
        // A rep's device forges a "manager" event marking a visit missed.
        let w = world();
        let v = Visit::planned(
            meta(&w),
            RecordId::new(),
            DeviceTime::utc(0),
            DeviceTime::utc(1),
        );
        let mut doc = RecordDoc::create_stateful(&v, ActorId::random(), &w.rep, DeviceTime::utc(0))
            .expect("create");
        let (server, mut device) = pair(&mut doc);
        let claimed = Actor {
            role: Role::Manager,
            ..w.rep.clone()
        };
        device
            .transition::<Visit>(
                &claimed,
                &TransitionRequest::new(VisitStatus::Missed, DeviceTime::utc(5)),
                |_| {},
            )
            .expect("the device's own check passes with the claimed role");
        let after = merged(&server, &mut device);
        assert!(matches!(
            check_incoming(Some(&server), &after, &w.rep, w.org),
            Err(IncomingError::Transition(_))
        ));
    }

    #[test]
    fn a_status_written_without_a_transition_is_forbidden() {
        let w = world();
        let o = Order::new(meta(&w), RecordId::new(), "EUR");
        let mut doc = RecordDoc::create_stateful(&o, ActorId::random(), &w.rep, DeviceTime::utc(0))
            .expect("create");
        let (server, mut device) = pair(&mut doc);
        device.automerge_put_status_for_tests("confirmed");
        let after = merged(&server, &mut device);
        assert!(matches!(
            check_incoming(Some(&server), &after, &w.rep, w.org),
            Err(IncomingError::Forbidden(_))
        ));
    }

    #[test]
    fn an_event_attributed_to_another_user_is_forbidden() {
        let w = world();
        let o = Order::new(meta(&w), RecordId::new(), "EUR");
        let mut doc = RecordDoc::create_stateful(&o, ActorId::random(), &w.rep, DeviceTime::utc(0))
            .expect("create");
        let (server, mut device) = pair(&mut doc);
        order::add_line(
            &mut device,
            &w.rep,
            DeviceTime::utc(1),
            OrderLine::new(RecordId::new(), Qty::units(1), Money::new(5, "EUR")),
        )
        .expect("line");
        order::submit(&mut device, &w.rep, DeviceTime::utc(2)).expect("submit");
        let after = merged(&server, &mut device);
        let someone_else = Actor::on_device(UserId::new(), Role::Rep, DeviceId::new());
        assert!(matches!(
            check_incoming(Some(&server), &after, &someone_else, w.org),
            Err(IncomingError::Forbidden(_))
        ));
        assert_eq!(check_incoming(Some(&server), &after, &w.rep, w.org), Ok(()));
        assert_eq!(
            after.status::<OrderStatus>().expect("status"),
            OrderStatus::Submitted
        );
    }

    fn raw(doc: &mut RecordDoc, since: &[automerge::ChangeHash]) -> Vec<Vec<u8>> {
        doc.changes_since(since)
            .iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect()
    }

    /// A rep's planned visit, made on a device under `actor`.
    fn planned_visit(w: &World, actor: ActorId) -> RecordDoc {
        let v = Visit::planned(
            meta(w),
            RecordId::new(),
            DeviceTime::utc(0),
            DeviceTime::utc(1),
        );
        RecordDoc::create_stateful(&v, actor, &w.rep, DeviceTime::utc(0)).expect("create")
    }

    /// `changes` of `device`'s record pushed by the rep under `actor` onto
    /// the server's copy `existing`.
    fn merge(
        w: &World,
        existing: Option<&RecordDoc>,
        device: &RecordDoc,
        changes: &[Vec<u8>],
        actor: &ActorId,
    ) -> Result<Merged, IncomingError> {
        merge_incoming(
            existing,
            device.id(),
            device.kind(),
            changes,
            actor,
            &w.rep,
            w.org,
        )
    }

    #[test]
    fn merging_a_push_is_idempotent() {
        let w = world();
        let device_actor = ActorId::random();
        let mut device = planned_visit(&w, device_actor.clone());
        visit::check_in(&mut device, &w.rep, DeviceTime::utc(5), None, SITE).expect("check in");
        let changes = raw(&mut device, &[]);
        let first = merge(&w, None, &device, &changes, &device_actor).expect("accepted");
        assert_eq!(first.new_changes.len(), 2);
        let again =
            merge(&w, Some(&first.doc), &device, &changes, &device_actor).expect("resend accepted");
        assert!(again.new_changes.is_empty());
        let mut merged = again.doc;
        assert_eq!(merged.heads(), device.heads());
    }

    #[test]
    fn an_operation_bomb_is_refused_before_it_is_expanded() {
        use automerge::transaction::Transactable;
        let w = world();
        let device_actor = ActorId::random();
        let mut device = planned_visit(&w, device_actor.clone());
        let created = raw(&mut device, &[]);
        let server = merge(&w, None, &device, &created, &device_actor)
            .expect("accepted")
            .doc;
        let before = device.heads();
        let bloat = |doc: &mut RecordDoc, n: usize| {
            let am = doc.automerge();
            let list = am
                .put_object(automerge::ROOT, "padding", automerge::ObjType::List)
                .expect("list");
            am.splice(
                &list,
                0,
                0,
                std::iter::repeat_n(automerge::ScalarValue::Null, n),
            )
            .expect("splice");
            am.commit();
        };
        bloat(&mut device, MAX_CHANGE_OPS + 1);
        let bomb = raw(&mut device, &before);
        let wire: usize = bomb.iter().map(Vec::len).sum();
        assert!(wire < 1_000, "run-length encoded: {wire} bytes");
        assert_eq!(change_ops(&bomb[0]), Some(MAX_CHANGE_OPS + 2));
        let err = merge(&w, Some(&server), &device, &bomb, &device_actor).expect_err("refused");
        assert!(
            matches!(&err, IncomingError::TooLarge(m) if m.contains("at most 100000")),
            "{err:?}"
        );
        // Under the per-change limit, but the record's operation counter
        // would pass the record's limit.
        let mut big = server.clone();
        big.set_actor(device_actor.clone());
        let start = big.heads();
        let mut changes = Vec::new();
        for _ in 0..6 {
            let at = big.heads();
            bloat(&mut big, MAX_CHANGE_OPS - 10);
            changes.extend(raw(&mut big, &at));
        }
        assert!(!start.is_empty());
        let err = merge(&w, Some(&server), &device, &changes, &device_actor).expect_err("refused");
        assert!(
            matches!(&err, IncomingError::TooLarge(m) if m.contains("record holds at most")),
            "{err:?}"
        );
    }

    #[test]
    fn changes_under_another_actor_are_refused() {
        let w = world();
        let mut device = planned_visit(&w, ActorId::random());
        let changes = raw(&mut device, &[]);
        let err = merge_incoming(
            None,
            device.id(),
            device.kind(),
            &changes,
            &ActorId::random(),
            &w.rep,
            w.org,
        )
        .expect_err("foreign");
        assert!(matches!(err, IncomingError::ForeignActor(_)));
    }

    #[test]
    fn garbage_bytes_and_missing_history_are_refused() {
        let w = world();
        let device_actor = ActorId::random();
        let mut device = planned_visit(&w, device_actor.clone());
        let id = device.id();
        let err = merge_incoming(
            None,
            id,
            RecordKind::Visit,
            &[vec![1, 2, 3]],
            &device_actor,
            &w.rep,
            w.org,
        )
        .expect_err("garbage");
        assert!(matches!(err, IncomingError::InvalidChange(_)));
        let heads = device.heads();
        visit::check_in(&mut device, &w.rep, DeviceTime::utc(5), None, SITE).expect("check in");
        let only_the_second = raw(&mut device, &heads);
        let err = merge_incoming(
            None,
            id,
            RecordKind::Visit,
            &only_the_second,
            &device_actor,
            &w.rep,
            w.org,
        )
        .expect_err("gap");
        assert!(matches!(err, IncomingError::MissingDependencies(_)));
        let all = raw(&mut device, &[]);
        let err = merge_incoming(
            None,
            id,
            RecordKind::Order,
            &all,
            &device_actor,
            &w.rep,
            w.org,
        )
        .expect_err("kind");
        assert!(matches!(err, IncomingError::WrongKind(_)));
    }

    #[test]
    fn an_invalid_merged_record_is_refused() {
        let w = world();
        let o = Order::new(meta(&w), RecordId::new(), "EUR");
        let mut doc = RecordDoc::create_stateful(&o, ActorId::random(), &w.rep, DeviceTime::utc(0))
            .expect("create");
        let (server, mut device) = pair(&mut doc);
        device.automerge_put_root_for_tests("currency", "euro");
        let after = merged(&server, &mut device);
        assert!(matches!(
            check_incoming(Some(&server), &after, &w.rep, w.org),
            Err(IncomingError::Validation(_))
        ));
    }
}
