//! The state-machine engine shared by every record with a status.
//!
//! A status is never a plain field: it changes only through
//! `RecordDoc::transition` (in `doc`, which builds on this module), which
//! checks the transition against the record's state machine and the actor's
//! role, runs the record's own guard (an outcome is required to complete a
//! visit, a comment to request changes), writes the new status and appends an
//! event to the status history, all in one Automerge change.
//!
//! The kinds with a machine are those for which `RecordKind::is_stateful`
//! holds: visits, visit reports, orders, service jobs and assignments. Each
//! machine is its record module's status enum (`VisitStatus`, `ReportStatus`,
//! `OrderStatus`, `JobStatus`, `AssignmentStatus`), with its transition table
//! in that module's documentation. Its stable names are [`Status::as_str`] and
//! [`Status::parse`]; the enum also has an inherent `ALL`, `FromStr` and
//! `Display`, so callers (the server's figures, filters and pages) name
//! statuses as typed values and never spell them as strings of their own.
//!
//! # Concurrent transitions
//!
//! Two devices offline can both move a record from the same status. Automerge
//! keeps both values of the `status` key; Fieldsync does not use Automerge's
//! arbitrary (actor-ordered) winner. Instead every state machine ranks its
//! statuses by [`Status::precedence`] and the *effective* status is the
//! highest-ranked of the concurrent values (ties broken by name, so every
//! replica picks the same one). The rule of thumb behind the ranks: **evidence of
//! work done in the field outranks an administrative decision made without it**,
//! and a terminal status outranks a non-terminal one. A job completed offline while
//! the office cancelled it shows as completed, the cancellation is still there, and
//! the pair is listed by `RecordDoc::conflicts` until a manager resolves it.
//! Both events stay in the status history.

use std::fmt::Debug;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::types::{DeviceTime, GeoPoint, Role};
use crate::ids::{DeviceId, RecordId, UserId};

/// A status enum of one state machine.
pub trait Status: Copy + Eq + Debug + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The machine's name, for messages ("visit", "order", ...).
    const MACHINE: &'static str;

    /// Every status of the machine (the enum's inherent `ALL`).
    fn all() -> &'static [Self];

    /// The stable name stored in documents (also what the enum's `Display` writes).
    fn as_str(self) -> &'static str;

    /// Parses a stored name; `None` for names this version does not know
    /// (the enum's `FromStr` says which name it refused).
    fn parse(name: &str) -> Option<Self> {
        Self::all().iter().copied().find(|s| s.as_str() == name)
    }

    /// Whether a record may be created in this status by `role`.
    fn may_start_in(self, role: Role) -> bool;

    /// Whether `role` may move a record from `self` to `to`. Returns the reason when not.
    fn check(self, to: Self, role: Role) -> Result<(), TransitionError>;

    /// Rank used to pick the effective status among concurrent values: higher wins.
    fn precedence(self) -> u8;

    /// Picks the effective status among concurrent values, deterministically.
    fn resolve(values: &[Self]) -> Option<Self> {
        values
            .iter()
            .copied()
            .max_by(|a, b| (a.precedence(), a.as_str()).cmp(&(b.precedence(), b.as_str())))
    }
}

/// Why a transition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum TransitionError {
    /// The state machine has no such edge.
    #[error("a {machine} cannot go from {from} to {to}")]
    NotAllowed {
        /// Machine name.
        machine: String,
        /// Current status.
        from: String,
        /// Requested status.
        to: String,
    },
    /// The edge exists but this role may not take it.
    #[error("a {role} may not move a {machine} from {from} to {to}")]
    RoleNotAllowed {
        /// Machine name.
        machine: String,
        /// Current status.
        from: String,
        /// Requested status.
        to: String,
        /// The actor's role.
        role: Role,
    },
    /// A record-specific condition is not met (e.g. an outcome is required).
    #[error("{message}")]
    Precondition {
        /// What is missing, in words an app can show.
        message: String,
    },
}

impl TransitionError {
    /// The standard "no such edge" error.
    pub fn not_allowed<S: Status>(from: S, to: S) -> Self {
        Self::NotAllowed {
            machine: S::MACHINE.into(),
            from: from.as_str().into(),
            to: to.as_str().into(),
        }
    }

    /// The standard "not for your role" error.
    pub fn role<S: Status>(from: S, to: S, role: Role) -> Self {
        Self::RoleNotAllowed {
            machine: S::MACHINE.into(),
            from: from.as_str().into(),
            to: to.as_str().into(),
            role,
        }
    }

    /// A failed precondition with a message for the user.
    pub fn precondition(message: impl Into<String>) -> Self {
        Self::Precondition {
            message: message.into(),
        }
    }
}

/// The tail of every machine's `check`: the edge exists and `allowed` lists the
/// roles that may take it.
pub fn allow_roles<S: Status>(
    from: S,
    to: S,
    role: Role,
    allowed: &[Role],
) -> Result<(), TransitionError> {
    if allowed.contains(&role) {
        Ok(())
    } else {
        Err(TransitionError::role(from, to, role))
    }
}

/// What a caller asks of a transition: the target and the circumstances.
#[derive(Debug, Clone, PartialEq)]
pub struct TransitionRequest<S> {
    /// The status to move to.
    pub to: S,
    /// When it happened on the device.
    pub at: DeviceTime,
    /// Where it happened, when a fix was available.
    pub gps: Option<GeoPoint>,
    /// A reason or comment (required for some transitions, e.g. requesting changes).
    pub reason: Option<String>,
}

impl<S> TransitionRequest<S> {
    /// A request with no position and no reason.
    pub fn new(to: S, at: DeviceTime) -> Self {
        Self {
            to,
            at,
            gps: None,
            reason: None,
        }
    }

    /// Adds the position.
    pub fn with_gps(mut self, gps: GeoPoint) -> Self {
        self.gps = Some(gps);
        self
    }

    /// Adds a reason or comment.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// One entry of a record's status history. Stored in the document's `history`
/// map keyed by the event id, so concurrent events on two devices both survive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusEvent {
    /// The event's own id (its key in the history map).
    pub id: RecordId,
    /// The status before; `None` for the creation event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The status after.
    pub to: String,
    /// Who made the change.
    pub by: UserId,
    /// Their role at the time.
    pub role: Role,
    /// The device it was made on, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceId>,
    /// When, by the device's clock.
    pub at: DeviceTime,
    /// Where, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gps: Option<GeoPoint>,
    /// The reason or comment given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
