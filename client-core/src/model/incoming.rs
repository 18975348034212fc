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
//!   event is ignored). A status that changed with no event is refused.
//! - The merged record reads as its typed struct and passes `validate()`.
//!
//! Who may write which record at all (ownership, team, organisation) is decided
//! by the server's scope rules before this runs.

use std::collections::BTreeSet;

use serde_json::Value as Json;

use super::status::Status;
use super::types::{Actor, RecordKind};
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
    let after_json = after.to_json()?;
    if let Some(before) = before {
        if before.kind() != after.kind() {
            return Err(IncomingError::WrongKind(format!(
                "record {} is a {}, not a {}",
                after.id(),
                before.kind(),
                after.kind()
            )));
        }
        let before_json = before.to_json()?;
        for field in ["id", "org"] {
            if before_json["meta"][field] != after_json["meta"][field] {
                return Err(IncomingError::Forbidden(format!(
                    "meta.{field} cannot be changed"
                )));
            }
        }
    }
    if after_json["meta"]["org"] != Json::String(org.to_string()) {
        return Err(IncomingError::Forbidden(
            "the record belongs to another organisation".into(),
        ));
    }
    match after.kind() {
        RecordKind::Visit => check_record::<super::Visit>(before, after, actor),
        RecordKind::VisitReport => check_record::<super::VisitReport>(before, after, actor),
        RecordKind::Order => check_record::<super::Order>(before, after, actor),
        RecordKind::ServiceJob => check_record::<super::ServiceJob>(before, after, actor),
        RecordKind::Assignment => check_record::<super::Assignment>(before, after, actor),
        RecordKind::Account => check_plain::<super::Account>(after),
        RecordKind::Contact => check_plain::<super::Contact>(after),
        RecordKind::Product => check_plain::<super::Product>(after),
        RecordKind::PriceList => check_plain::<super::PriceList>(after),
        RecordKind::ChecklistTemplate => check_plain::<super::ChecklistTemplate>(after),
        RecordKind::ChecklistResponse => check_plain::<super::ChecklistResponse>(after),
    }
}

fn check_plain<R: super::Record>(after: &RecordDoc) -> Result<(), IncomingError> {
    let record: R = after.read()?;
    record
        .validate()
        .map_err(|e| IncomingError::Validation(e.to_string()))
}

fn check_record<R: Stateful>(
    before: Option<&RecordDoc>,
    after: &RecordDoc,
    actor: &Actor,
) -> Result<(), IncomingError> {
    let record: R = after.read_stateful()?;
    record
        .validate()
        .map_err(|e| IncomingError::Validation(e.to_string()))?;

    let seen: BTreeSet<_> = match before {
        Some(b) => b.history()?.into_iter().map(|e| e.id).collect(),
        None => BTreeSet::new(),
    };
    let new_events: Vec<_> = after
        .history()?
        .into_iter()
        .filter(|e| !seen.contains(&e.id))
        .collect();

    for event in &new_events {
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
            Some(from) => {
                let from = R::Status::parse(from).ok_or_else(|| {
                    IncomingError::Transition(format!(
                        "unknown {} status {from:?}",
                        R::Status::MACHINE
                    ))
                })?;
                from.check(to, actor.role)
                    .map_err(|e| IncomingError::Transition(e.to_string()))?;
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
    Ok(())
}
