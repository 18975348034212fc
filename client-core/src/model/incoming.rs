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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{DeviceId, RecordId, TeamId, TerritoryId, UserId};
    use crate::model::order::{self, Order, OrderLine, OrderStatus};
    use crate::model::visit::{self, Site, Visit, VisitStatus};
    use crate::model::{DeviceTime, Money, Qty, RecordMeta, Role, TransitionRequest};
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
