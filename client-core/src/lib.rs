//! # fieldsync-core
//!
//! The shared Rust core of Fieldsync, the offline-first sync system for field
//! sales and field service:
//!
//! - [`model`]: the record model. One Automerge document per record, typed
//!   structs over it, state machines, conflict listing, shared totals. Used by the
//!   device *and* the server; it has no I/O.
//! - `store` (feature `device`, on by default): the SQLite store on the phone or
//!   tablet: documents saved incrementally, the outbox of unacknowledged changes,
//!   sync metadata and the indexed lists a field app shows.
//! - `sync` (feature `device`): the sync client: push the outbox, pull the feed,
//!   prime a new device, with retries and backoff.
//! - [`protocol`]: the sync protocol's wire types and their CBOR encoding, shared
//!   by the device and the server (`docs/protocol.md`).
//!
//! The server depends on this crate with `default-features = false`, so SQLite and
//! the device runtime stay out of it.

#[doc(hidden)]
pub mod fuzzing;
pub mod ids;
pub mod model;
pub mod protocol;
#[cfg(feature = "device")]
pub mod store;
#[cfg(feature = "device")]
pub mod sync;

pub use ids::{DeviceId, InvalidId, OrgId, RecordId, TeamId, TerritoryId, UserId};
pub use model::{
    Actor, Conflict, ConflictValue, DeviceTime, GeoPoint, ModelError, Money, Qty, Record,
    RecordDoc, RecordKind, RecordMeta, Role, Stateful, Status, StatusEvent, TransitionError,
    TransitionRequest, ValidationError,
};

#[cfg(feature = "device")]
pub use store::{DeviceStore, Durability, RejectionEntry, StoreError, StoreKey, StoreOptions};

/// Re-exported so apps and the server name Automerge types through one version.
pub use automerge;
