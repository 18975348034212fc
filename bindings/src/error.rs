//! The one error type apps see. Flat on purpose: an app branches on the variant
//! (show a login screen, show a validation message, retry later) and shows the
//! text; it never has to unpick nested causes. (No field is called `message`:
//! Kotlin exceptions already have one.)

use fieldsync_core::model::ModelError;
use fieldsync_core::store::StoreError;
use fieldsync_core::sync::SyncError;

/// Everything that can go wrong in a call.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum FieldsyncError {
    /// No connection, a timeout, or the server failing: try again later (the
    /// changes stay in the outbox).
    #[error("network: {detail}")]
    Network {
        /// What failed.
        detail: String,
    },
    /// Wrong credentials, or the session ended: log in again.
    #[error("authentication: {detail}")]
    Auth {
        /// The server's message.
        detail: String,
    },
    /// An administrator revoked this device; local data was removed.
    #[error("this device was revoked; its local data was removed")]
    Revoked,
    /// A call that needs a session was made before logging in.
    #[error("not logged in")]
    NotLoggedIn,
    /// The record breaks a rule (a required field, a range).
    #[error("{reason}")]
    Validation {
        /// What is wrong, to show the user.
        reason: String,
    },
    /// The status change is not allowed (state machine, role or guard).
    #[error("{reason}")]
    Transition {
        /// Why, to show the user.
        reason: String,
    },
    /// The server refused the request as a whole.
    #[error("refused by the server: {detail}")]
    Refused {
        /// The server's message.
        detail: String,
    },
    /// No record (or attachment) with this id on the device.
    #[error("no record or attachment {id} on this device")]
    NotFound {
        /// The id asked for.
        id: String,
    },
    /// The record is held for reference only (an earlier visit or job at one of
    /// the user's accounts, by a colleague or before the user's window): show
    /// it, do not offer to change it.
    #[error("record {id} is shown for reference only and cannot be changed")]
    ReadOnly {
        /// The record.
        id: String,
    },
    /// An argument is malformed (an id that is not a UUID, a negative quantity).
    #[error("{detail}")]
    InvalidArgument {
        /// What is wrong.
        detail: String,
    },
    /// The device store could not be opened with the key given: a wrong key, no
    /// key for an encrypted store, or a key for a plaintext one. The file is
    /// unchanged; open it again with the right key (if the key is lost, the
    /// only way on is to delete the file and sync again, losing unsynced edits).
    #[error("{detail}")]
    Encryption {
        /// Which of the three it was.
        detail: String,
    },
    /// The local database failed.
    #[error("storage: {detail}")]
    Storage {
        /// What failed.
        detail: String,
    },
}

impl From<ModelError> for FieldsyncError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Transition(t) => FieldsyncError::Transition {
                reason: t.to_string(),
            },
            ModelError::Validation(v) => FieldsyncError::Validation {
                reason: v.to_string(),
            },
            other => FieldsyncError::Validation {
                reason: other.to_string(),
            },
        }
    }
}

impl From<StoreError> for FieldsyncError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Model(m) => m.into(),
            StoreError::NotFound(id) => FieldsyncError::NotFound { id: id.to_string() },
            StoreError::ReadOnly(id) => FieldsyncError::ReadOnly { id: id.to_string() },
            e @ (StoreError::WrongKey | StoreError::KeyRequired | StoreError::NotEncrypted) => {
                FieldsyncError::Encryption {
                    detail: e.to_string(),
                }
            }
            e @ (StoreError::KeyLength { .. } | StoreError::AttachmentInput(_)) => {
                FieldsyncError::InvalidArgument {
                    detail: e.to_string(),
                }
            }
            StoreError::AttachmentNotFound(sha256) => FieldsyncError::NotFound { id: sha256 },
            StoreError::NoRejection(seq) => FieldsyncError::NotFound {
                id: seq.to_string(),
            },
            other => FieldsyncError::Storage {
                detail: other.to_string(),
            },
        }
    }
}

impl From<SyncError> for FieldsyncError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Network(t) => FieldsyncError::Network {
                detail: t.to_string(),
            },
            SyncError::Auth(detail) => FieldsyncError::Auth { detail },
            SyncError::Revoked => FieldsyncError::Revoked,
            SyncError::Refused { message, .. } => FieldsyncError::Refused { detail: message },
            SyncError::Storage(detail) => FieldsyncError::Storage { detail },
            SyncError::NotLoggedIn => FieldsyncError::NotLoggedIn,
            SyncError::Protocol(detail) => FieldsyncError::Network { detail },
        }
    }
}

/// Parses an id argument.
pub(crate) fn parse_id<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, FieldsyncError> {
    s.trim()
        .parse()
        .map_err(|_| FieldsyncError::InvalidArgument {
            detail: format!("{what} {s:?} is not a valid id"),
        })
}
