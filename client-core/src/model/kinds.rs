//! What a document of any kind needs from its kind's typed record.
//!
//! The plain facts about a kind (whether it is stateful, dated, master data)
//! are methods of [`RecordKind`], at the bottom of the model. This module is
//! the other half: the one table that maps a kind, named by a document at run
//! time, to the typed record whose state machine governs it (`with_machine`),
//! and the methods of [`RecordDoc`] that need that table:
//!
//! - [`RecordDoc::status_name`]: the effective status, by the kind's machine
//!   (`null` for kinds without a status); projections and the server's
//!   conflicts queue read it;
//! - [`RecordDoc::conflicts`]: every field with concurrent values, the status
//!   value shown being the one the kind's machine ranks first;
//! - [`RecordDoc::resolve_status_by_name`]: a back-office settlement of a status
//!   clash to a status given by name (the managers' conflicts queue).
//!
//! It sits above every record module (`doc` is below them, the records import
//! `doc`), so the dispatch by kind does not make `doc` import the records.
//! `incoming` dispatches by kind too, to check a pushed change against the
//! kind's own rules.

use automerge::ChangeHash;
use serde_json::Value as Json;

use super::assignment::Assignment;
use super::doc::{Conflict, RecordDoc};
use super::job::ServiceJob;
use super::order::Order;
use super::report::VisitReport;
use super::status::Status;
use super::types::{Actor, DeviceTime, RecordKind};
use super::visit::Visit;
use super::{ModelError, Stateful, ValidationError};

/// Something to do with the typed record of a stateful kind, whichever it is.
trait WithMachine {
    /// What it gives.
    type Output;

    /// Does it with `R`, the stateful record of the document's kind.
    fn run<R: Stateful>(self) -> Self::Output;
}

/// Runs `f` with the stateful record type of `kind`; `None` for kinds without
/// a status. Exactly the kinds for which [`RecordKind::is_stateful`] holds
/// have a row (pinned by a test); the match has no catch-all, so a new kind
/// must be placed here.
fn with_machine<F: WithMachine>(kind: RecordKind, f: F) -> Option<F::Output> {
    match kind {
        RecordKind::Visit => Some(f.run::<Visit>()),
        RecordKind::VisitReport => Some(f.run::<VisitReport>()),
        RecordKind::Order => Some(f.run::<Order>()),
        RecordKind::ServiceJob => Some(f.run::<ServiceJob>()),
        RecordKind::Assignment => Some(f.run::<Assignment>()),
        RecordKind::Account
        | RecordKind::Contact
        | RecordKind::Product
        | RecordKind::PriceList
        | RecordKind::ChecklistTemplate
        | RecordKind::ChecklistResponse
        | RecordKind::VanStock => None,
    }
}

struct EffectiveStatus<'a>(&'a RecordDoc);

impl WithMachine for EffectiveStatus<'_> {
    type Output = Result<&'static str, ModelError>;

    fn run<R: Stateful>(self) -> Self::Output {
        Ok(self.0.status::<R::Status>()?.as_str())
    }
}

struct Settle<'a> {
    doc: &'a mut RecordDoc,
    actor: &'a Actor,
    status: &'a str,
    at: DeviceTime,
    reason: String,
}

impl WithMachine for Settle<'_> {
    type Output = Result<ChangeHash, ModelError>;

    fn run<R: Stateful>(self) -> Self::Output {
        let status = R::Status::parse(self.status).ok_or_else(|| {
            ValidationError::new(
                "status",
                format!("{:?} is not a {} status", self.status, R::Status::MACHINE),
            )
        })?;
        self.doc
            .resolve_status(self.actor, status, self.at, self.reason)
    }
}

impl RecordDoc {
    /// The effective status name of a stateful record, `Null` for kinds without a status.
    pub fn status_name(&self) -> Result<Json, ModelError> {
        match with_machine(self.kind(), EffectiveStatus(self)) {
            Some(name) => Ok(Json::String(name?.to_owned())),
            None => Ok(Json::Null),
        }
    }

    /// Every field holding concurrent values that differ, sorted by path.
    ///
    /// Concurrent writes of the *same* value are not conflicts. Only the shown
    /// value of a conflicting object is walked into. For the `status` of a
    /// stateful record, the value marked shown is the effective status (the
    /// kind's machine ranks the concurrent values; see [`super::status`]).
    pub fn conflicts(&self) -> Result<Vec<Conflict>, ModelError> {
        self.conflicts_showing(|| match self.status_name() {
            Ok(Json::String(name)) => Some(name),
            _ => None,
        })
    }

    /// Settles a status clash to the status named `status`, for callers that
    /// hold a document of any kind (the managers' conflicts queue): the typed
    /// [`RecordDoc::resolve_status`] of the document's kind. Refused with a
    /// validation error when the kind has no status or `status` is not one of
    /// its machine's, and like `resolve_status` when the actor is not back
    /// office.
    pub fn resolve_status_by_name(
        &mut self,
        actor: &Actor,
        status: &str,
        at: DeviceTime,
        reason: impl Into<String>,
    ) -> Result<ChangeHash, ModelError> {
        let kind = self.kind();
        let settle = Settle {
            doc: self,
            actor,
            status,
            at,
            reason: reason.into(),
        };
        with_machine(kind, settle).unwrap_or_else(|| {
            Err(ValidationError::new("status", format!("a {kind} has no status")).into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{DeviceId, OrgId, RecordId, TeamId, TerritoryId, UserId};
    use crate::model::{Contact, RecordMeta, Role, TransitionRequest, VisitStatus};
    use automerge::ActorId;

    struct KindOf;

    impl WithMachine for KindOf {
        type Output = (RecordKind, &'static str);

        fn run<R: Stateful>(self) -> Self::Output {
            (R::KIND, R::Status::MACHINE)
        }
    }

    #[test]
    fn every_stateful_kind_and_only_those_has_its_own_machine() {
        for &kind in RecordKind::ALL {
            match with_machine(kind, KindOf) {
                Some((record_kind, machine)) => {
                    assert!(kind.is_stateful(), "{kind} has a machine ({machine})");
                    assert_eq!(record_kind, kind, "{kind} dispatches to its own record");
                }
                None => assert!(!kind.is_stateful(), "{kind} is stateful but has no machine"),
            }
        }
    }

    fn meta(owner: UserId) -> RecordMeta {
        RecordMeta {
            id: RecordId::new(),
            org: OrgId::new(),
            owner,
            team: TeamId::new(),
            territory: TerritoryId::new(),
        }
    }

    /// A planned visit checked in on the rep's phone while the office
    /// cancelled it: the status clashes, `in_progress` shown.
    fn clashing_visit() -> (RecordDoc, Actor) {
        let (mut phone, mut office, manager) = checked_in_and_cancelled(|_, _| {});
        phone.merge(&mut office).expect("merge");
        (phone, manager)
    }

    /// A planned visit checked in on the rep's phone (returned first) while
    /// the office cancelled its copy (second), not merged yet; `step` sees
    /// each copy after each step, with the status it should then have.
    fn checked_in_and_cancelled(
        mut step: impl FnMut(&RecordDoc, &str),
    ) -> (RecordDoc, RecordDoc, Actor) {
        let rep = Actor::on_device(UserId::new(), Role::Rep, DeviceId::new());
        let manager = Actor::without_device(UserId::new(), Role::Manager);
        let v = Visit::planned(
            meta(rep.user),
            RecordId::new(),
            DeviceTime::utc(0),
            DeviceTime::utc(3_600_000),
        );
        let mut phone = RecordDoc::create_stateful(&v, ActorId::random(), &rep, DeviceTime::utc(0))
            .expect("create");
        step(&phone, "planned");
        let mut office = RecordDoc::from_automerge(phone.automerge().fork()).expect("fork");
        office.set_actor(ActorId::random());
        step(&office, "planned");
        office
            .transition::<Visit>(
                &manager,
                &TransitionRequest::new(VisitStatus::Cancelled, DeviceTime::utc(1))
                    .with_reason("shop closed"),
                |_| {},
            )
            .expect("cancel");
        step(&office, "cancelled");
        crate::model::visit::check_in(
            &mut phone,
            &rep,
            DeviceTime::utc(2),
            None,
            crate::model::visit::Site {
                coords: None,
                radius_m: 100.0,
            },
        )
        .expect("check in");
        step(&phone, "in_progress");
        (phone, office, manager)
    }

    #[test]
    fn the_status_shown_in_a_clash_is_the_machines_choice() {
        let (doc, _) = clashing_visit();
        assert_eq!(doc.status_name().expect("status"), "in_progress");
        assert!(doc.status_clashes().expect("read"));
        let clash = doc.conflicts().expect("conflicts");
        let status = clash.iter().find(|c| c.path == "status").expect("listed");
        let shown: Vec<_> = status.values.iter().filter(|v| v.shown).collect();
        assert_eq!(shown.len(), 1);
        assert_eq!(shown[0].value, "in_progress");
    }

    #[test]
    fn a_clash_is_settled_by_name() {
        let (mut doc, manager) = clashing_visit();
        let err = doc
            .resolve_status_by_name(&manager, "finished", DeviceTime::utc(3), "typo")
            .expect_err("not a visit status");
        assert!(err.to_string().contains("not a visit status"), "{err}");
        doc.resolve_status_by_name(&manager, "cancelled", DeviceTime::utc(3), "shop closed")
            .expect("settle");
        assert_eq!(doc.status_name().expect("status"), "cancelled");
        assert!(doc.conflicts().expect("conflicts").is_empty());
        assert!(!doc.status_clashes().expect("read"));
    }

    #[test]
    fn the_same_status_written_on_two_sides_is_no_clash() {
        let manager = Actor::without_device(UserId::new(), Role::Manager);
        let v = Visit::planned(
            meta(UserId::new()),
            RecordId::new(),
            DeviceTime::utc(0),
            DeviceTime::utc(3_600_000),
        );
        let mut one =
            RecordDoc::create_stateful(&v, ActorId::random(), &manager, DeviceTime::utc(0))
                .expect("create");
        let mut other = RecordDoc::from_automerge(one.automerge().fork()).expect("fork");
        other.set_actor(ActorId::random());
        for (doc, at) in [(&mut one, 1), (&mut other, 2)] {
            doc.transition::<Visit>(
                &manager,
                &TransitionRequest::new(VisitStatus::Cancelled, DeviceTime::utc(at))
                    .with_reason("shop closed"),
                |_| {},
            )
            .expect("cancel");
        }
        one.merge(&mut other).expect("merge");
        // Two concurrent values, the same name: nothing for the managers.
        assert_eq!(one.status_values(None).len(), 2);
        assert!(!one.status_clashes().expect("read"));
        assert!(
            !one.conflicts()
                .expect("conflicts")
                .iter()
                .any(|c| c.path == "status")
        );
    }

    #[test]
    fn a_kind_without_a_status_has_none_to_name_or_settle() {
        let admin = Actor::without_device(UserId::new(), Role::Admin);
        let contact = Contact {
            meta: meta(admin.user),
            account_id: RecordId::new(),
            name: "Ana".into(),
            role: None,
            phone: None,
            email: None,
            marketing_consent: false,
            consent: None,
        };
        let mut doc =
            RecordDoc::create(&contact, ActorId::random(), DeviceTime::utc(0)).expect("create");
        assert_eq!(doc.status_name().expect("status"), Json::Null);
        let err = doc
            .resolve_status_by_name(&admin, "open", DeviceTime::utc(1), "no")
            .expect_err("no status");
        assert!(err.to_string().contains("a contact has no status"), "{err}");
    }

    /// The status (and whether the history is a map) is read from Automerge
    /// once while the document stays as it is (`doc::Memoised`); every way a
    /// document changes has it read again: an edit, a transition, changes
    /// applied, bytes loaded, a merge, and a write through the raw document.
    #[test]
    fn what_is_read_once_of_a_document_follows_every_change_of_it() {
        use automerge::transaction::Transactable;
        // Each step's status read right after it (and so remembered).
        let (mut phone, mut office, _) = checked_in_and_cancelled(|doc, status| {
            assert_eq!(doc.status_name().expect("status"), status);
            assert!(!doc.status_clashes().expect("read"));
        });
        let from_office = office.changes_since(&[]);

        let mut applied = phone.clone();
        assert!(!applied.status_clashes().expect("read"), "read before");
        applied.apply_changes(from_office.clone()).expect("applies");
        assert!(
            applied.status_clashes().expect("read"),
            "read after applying"
        );
        assert_eq!(applied.status_values(None).len(), 2);

        let mut loaded = phone.clone();
        assert_eq!(loaded.status_values(None), ["in_progress"]);
        let bytes: Vec<u8> = from_office
            .iter()
            .flat_map(|c| c.raw_bytes().to_vec())
            .collect();
        loaded.load_incremental(&bytes).expect("loads");
        assert!(loaded.status_clashes().expect("read"), "read after loading");

        phone.merge(&mut office).expect("merge");
        assert!(phone.status_clashes().expect("read"), "read after merging");
        assert_eq!(phone.status_name().expect("status"), "in_progress");

        assert_eq!(
            office.status::<VisitStatus>().expect("status"),
            VisitStatus::Cancelled
        );
        office
            .automerge()
            .put(automerge::ROOT, "status", "completed")
            .expect("a raw write");
        assert_eq!(
            office.status::<VisitStatus>().expect("status"),
            VisitStatus::Completed,
            "read after a raw write, its transaction still open"
        );
        office.automerge().commit();
        assert_eq!(office.status_name().expect("status"), "completed");

        // Whether `history` is a map, remembered the same way.
        let json = office.to_json().expect("json");
        assert_eq!(office.history_in(&json).expect("history").len(), 2);
        office
            .automerge()
            .put(automerge::ROOT, "history", "rewritten")
            .expect("a raw write");
        office.automerge().commit();
        assert!(
            office.history_in(&json).expect("history").is_empty(),
            "a history that is no longer a map holds no events"
        );
    }
}
