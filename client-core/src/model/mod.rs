//! The record model shared by the device and the server.
//!
//! Every business record is one Automerge document ([`RecordDoc`]). Apps and the
//! server work with plain typed structs ([`Visit`], [`Order`], ...) that implement
//! [`Record`]; the document layer reads a struct out of a document and writes back
//! only the fields that changed, so concurrent edits of different fields on two
//! devices merge field by field. See `docs/adr/0001-typed-records-over-automerge.md`
//! for why this is our own thin layer rather than autosurgeon.
//!
//! Layout of a record document (root map):
//!
//! | key       | what                                                            |
//! |-----------|-----------------------------------------------------------------|
//! | `kind`    | the [`RecordKind`] name; set at creation, never changed          |
//! | `meta`    | [`RecordMeta`]: id, org, owner, team, territory                  |
//! | `status`  | the status name (stateful kinds); written only by transitions    |
//! | `history` | map of [`StatusEvent`] keyed by event id                         |
//! | `deleted` | `true` once the record is tombstoned                             |
//! | ...       | the kind's own fields; collections are maps keyed by entry id    |
//!
//! The struct types are also what the server validates pushed changes with, so
//! this module must not depend on the device runtime (SQLite, HTTP): it builds
//! with `cargo check -p fieldsync-core --no-default-features --lib`.
//!
//! # Facts about kinds and statuses
//!
//! What a kind *is* lives on [`RecordKind`]: [`RecordKind::is_stateful`] (a
//! status with a state machine and a history), [`RecordKind::is_dated`] (cut to
//! a role's download window) and [`RecordKind::is_master_data`] (the catalogue,
//! written by the back office only). Every status and outcome is a typed enum
//! with its stable names (`ALL`, `as_str`, `FromStr`, `Display`; a status's
//! `as_str` is the [`Status`] trait's): [`VisitStatus`],
//! [`VisitOutcome`], [`ReportStatus`], [`OrderStatus`], [`JobStatus`],
//! [`AssignmentStatus`], a time entry's [`Approval`], a check point's
//! [`GeofenceVerdict`]. Code outside the model (the server above all) asks
//! these instead of spelling kinds and statuses as strings of its own.
//!
//! # Layers
//!
//! The files of this module import one another one way only: each file named
//! below imports only files named before it, test code and doc links included
//! (this file's own items, as opposed to its re-exports, come second).
//! `cargo xtask layers` (a step of `cargo xtask test`) reads the sources and
//! fails on a cycle, and on any I/O crate (SQLite, HTTP) used here.
//!
//! 1. `types` (value types, [`RecordKind`] and its facts), `untrusted` (bounds
//!    on bytes from elsewhere);
//! 2. `status` (the state-machine engine), `rules` (who may write which
//!    field of which kind in which status, and each kind's references: the
//!    table the device and the server both enforce), then this file's
//!    [`Record`], [`Stateful`] and errors, then `json` (the JSON bridge);
//! 3. `doc` ([`RecordDoc`], generic over [`Record`] and [`Stateful`]; it knows
//!    no kind in particular), then `stored` (the forms a record's document is
//!    stored in: appended changes, checked compaction);
//! 4. parts records share: `geo`, `totals` (figures and the [`OrderLine`] they
//!    price), `signed` (the [`SignatureRef`] signed records carry);
//! 5. the records: `contact`, `catalog`, `checklist`, `visit`, `report`,
//!    `order`, `assignment`, `van_stock` (a technician's van, its balances
//!    derived from movements), then `account` (a visit's site) and `job`
//!    (rolled up from its assignments);
//! 6. what reads several kinds: `signature` (renderings of a job summary and
//!    an order), `kinds` (dispatch from a document's kind to its typed record:
//!    [`RecordDoc::status_name`], [`RecordDoc::conflicts`]), `incoming` (the
//!    server's checks of pushed changes), `projection` and `erase` (a record
//!    rewritten without a person's data, and a device's edits rebased onto it).

pub mod account;
pub mod assignment;
pub mod catalog;
pub mod checklist;
pub mod contact;
mod doc;
pub mod erase;
pub mod geo;
pub mod incoming;
pub mod job;
mod json;
mod kinds;
pub mod order;
pub mod projection;
pub mod report;
pub mod rules;
pub mod signature;
pub mod signed;
pub mod status;
pub mod stored;
pub mod totals;
pub mod types;
pub(crate) mod untrusted;
pub mod van_stock;
pub mod visit;

pub use account::{Account, Location};
pub use assignment::{
    Approval, Assignment, AssignmentStatus, PartUsed, Stamp, TimeEntry, TimeKind,
};
pub use catalog::{PriceItem, PriceList, Product};
pub use checklist::{
    Answer, AnswerValue, ChecklistResponse, ChecklistTemplate, Question, QuestionKind, ShowIf,
    latest_published,
};
pub use contact::{Consent, ConsentStatus, Contact};
pub use doc::{Conflict, ConflictValue, RecordDoc};
pub use geo::GeofenceVerdict;
pub use incoming::{
    IncomingChange, IncomingError, MAX_CHANGE_OPS, MAX_RECORD_OPS, Merged, change_ops,
    check_incoming, keeps_signature, merge_incoming, merge_read,
};
pub use job::{JobStatus, Priority, RollupTimes, ServiceJob};
pub use order::{Order, OrderStatus};
pub use projection::Projection;
pub use report::{KpiValue, ReportStatus, ReviewComment, VisitReport};
pub use signature::{JobSummary, SignatureVerdict, Signer};
pub use signed::SignatureRef;
pub use status::{Status, StatusEvent, TransitionError, TransitionRequest};
pub use totals::{LineTotals, OrderLine, OrderTotals};
pub use types::{
    Actor, DeviceTime, GeoPoint, Money, Qty, RecordKind, RecordMeta, Role, UnknownName,
};
pub use van_stock::{Balance, Consumption, Replenishment, VanStock};
pub use visit::{CheckPoint, Site, Visit, VisitOutcome, VisitStatus};

use std::fmt::Debug;

use serde::{Serialize, de::DeserializeOwned};

/// A typed view of one kind of record document.
pub trait Record: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static {
    /// The document's kind.
    const KIND: RecordKind;

    /// Top-level string fields kept as collaborative text (concurrent edits of the
    /// same paragraph on two devices merge character by character).
    const TEXT_FIELDS: &'static [&'static str] = &[];

    /// The ownership block.
    fn meta(&self) -> &RecordMeta;

    /// Required fields and value ranges. Runs on creation and after every update,
    /// on the device and again on the server.
    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }
}

/// A record with a status governed by a state machine.
pub trait Stateful: Record {
    /// The machine's status enum.
    type Status: Status;

    /// The status held in the struct.
    fn status(&self) -> Self::Status;

    /// Sets the struct's status (used when reading a document: the effective status
    /// is resolved by the document layer, see [`status`]).
    fn set_status(&mut self, status: Self::Status);

    /// Record-specific conditions on a transition, checked against the record as it
    /// will be after the edits made with the transition (e.g. an outcome is required
    /// to complete a visit).
    fn guard(
        &self,
        _req: &TransitionRequest<Self::Status>,
        _actor: &Actor,
    ) -> Result<(), TransitionError> {
        Ok(())
    }
}

/// A record that fails its own rules: a required field is missing, a value is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// The field at fault, as a dotted path.
    pub field: String,
    /// What is wrong, in words an app can show.
    pub message: String,
}

impl ValidationError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Errors of the record model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The record breaks its own rules.
    #[error("invalid record: {0}")]
    Validation(#[from] ValidationError),
    /// The transition is not allowed.
    #[error("transition refused: {0}")]
    Transition(#[from] TransitionError),
    /// A document of another kind was used where this kind was expected.
    #[error("expected a {expected} document, found {found}")]
    WrongKind {
        /// What the caller asked for.
        expected: RecordKind,
        /// What the document holds.
        found: String,
    },
    /// An edit tried to change something that only a dedicated action may change.
    #[error("{field} cannot be changed by an edit{hint}")]
    Immutable {
        /// The field.
        field: &'static str,
        /// How to change it instead, if at all.
        hint: &'static str,
    },
    /// The role may not write this field in the record's status (see `rules`).
    #[error("{0}")]
    Locked(#[from] rules::Locked),
    /// The document is not a record this version can read (missing keys, wrong types).
    #[error("record document is malformed: {0}")]
    Malformed(String),
    /// Automerge refused the bytes or the operation.
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
}
