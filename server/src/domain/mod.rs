//! The server's rules and decisions, with no I/O: no axum, no sqlx, no tokio.
//!
//! Everything here is a pure function of its inputs, so it is tested with
//! tables and without a server. The business rules of records themselves (state
//! machines, validation, what a change may touch) are the shared model's, in
//! `fieldsync_core::model`: the device applies them before sending and the
//! server applies the same code again here, because a client can build its own
//! changes.
//!
//! - [`caller`]: who is calling and what they read through.
//! - [`push`]: the decision on each record of a push (merge and the model's
//!   rules), then [`authority`]: what needs other records and the
//!   organisation's people (references, ownership, prices).
//! - [`plan`]: planning and dispatch (routes, double bookings, missed
//!   visits, reassignment).
//! - [`scope`]: the window of dated records per role.
//! - [`note`]: the change note the live channel carries.
//! - [`address`]: which address a request comes from (trusted proxies).
//! - [`figures`]: the managers' figures from fact rows.
//! - [`jobs`]: closing and cancelling jobs, the server's roll-up, SLA and
//!   promised window.
//! - [`templates`]: checklist templates in the office (who manages them,
//!   definitions, families of versions).
//! - [`vans`]: who fills a technician's van, what a replenishment says.
//! - [`error`]: the one error of rules and use cases.

pub mod accounts;
pub mod address;
pub mod attachments;
pub mod authority;
pub mod caller;
pub mod catalogue;
pub mod conflicts;
pub mod devices;
pub mod erasure;
pub mod error;
pub mod figures;
pub mod jobs;
pub mod note;
pub mod orders;
pub mod people;
pub mod plan;
pub mod push;
pub mod redact;
pub mod review;
pub mod scope;
pub mod templates;
pub mod vans;

pub use caller::Caller;
pub use error::{Error, ErrorKind, Result};
