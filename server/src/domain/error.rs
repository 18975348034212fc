//! The one error of the server's rules and use cases.
//!
//! Domain rules and services return [`Error`]; they never know about HTTP.
//! Each variant has a stable snake_case [`code`](Error::code), which is part of
//! the protocol (apps branch on `device_revoked` to wipe their data), and a
//! [`kind`](Error::kind) that the two front ends map to an answer: `http` to a
//! status and the JSON error body, `web` to an error page.
//!
//! Messages are written for the person who reads them: what went wrong and what
//! to do. Causes (`Unavailable`, `Internal`) are logged by `Display`, never
//! `Debug`, because a database error's `Debug` can quote row values.

use std::time::Duration;

/// A failure's cause, kept for the log.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result of a rule or a use case.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a rule or a use case refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database is unreachable or failing.
    #[error("the database is not available; try again later")]
    Unavailable(#[source] BoxError),
    /// Something unexpected; details are in the log.
    #[error("internal error; try again later")]
    Internal(#[source] BoxError),
    /// No such thing, or not in the caller's scope: one answer for both.
    #[error("not found")]
    NotFound,
    /// A value in a well-formed request is out of range.
    #[error("{0}")]
    BadRequest(String),
    /// A protocol message that is well-formed CBOR but not acceptable (too
    /// many records, a bad cursor).
    #[error("{0}")]
    InvalidMessage(String),
    /// Unknown organisation, unknown email or wrong password: one answer for
    /// all three, so nobody can probe which accounts exist.
    #[error("wrong organisation, email or password")]
    InvalidCredentials,
    /// The access token is malformed, forged, expired or for another audience.
    #[error("the access token is invalid or expired; refresh it or log in again")]
    InvalidToken,
    /// The refresh token is unknown, expired, revoked or already used.
    #[error("the refresh token is invalid, expired or already used; log in again")]
    InvalidRefreshToken,
    /// The device was revoked by an administrator.
    #[error("this device was revoked; wipe local data and log in again")]
    DeviceRevoked,
    /// The user was disabled by an administrator.
    #[error("this account is disabled; ask your administrator")]
    AccountDisabled,
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// Too many requests; try again after the duration.
    #[error("too many requests; try again in {} s", .0.as_secs().max(1))]
    RateLimited(Duration),
    /// Too many live streams open at once for this device or user.
    #[error(
        "this {per} already has {limit} live connections open, the most allowed; \
         close one (or let it end) and try again"
    )]
    TooManyStreams {
        /// `device` or `user`.
        per: &'static str,
        /// The cap.
        limit: usize,
    },
    /// The user registered the most new devices a day allows.
    #[error(
        "this account has signed in on {limit} new devices in the last 24 hours, the most allowed; \
         sign in again on a device already used, or ask your administrator to revoke unused ones \
         and try again tomorrow"
    )]
    TooManyDevices {
        /// The cap (`new_devices_per_day`).
        limit: u32,
    },
    /// The device id is registered to another user.
    #[error("this device is registered to another user; reinstall the app or clear its data")]
    DeviceInUse,
    /// The record is not in a state that allows this (e.g. approving a draft).
    #[error("{0}")]
    Conflict(String),
    /// A change to a published checklist template version, which is never
    /// edited (a change is a new version).
    #[error("{0}")]
    TemplatePublished(String),
    /// A declared attachment is over its kind's size limit.
    #[error("a {kind} attachment is at most {limit} bytes ({} MiB); this one is {size} bytes", .limit / 1_048_576)]
    AttachmentTooLarge {
        /// `photo`, `signature` or `document`.
        kind: &'static str,
        /// The kind's limit in bytes.
        limit: u64,
        /// The declared size.
        size: u64,
    },
    /// An uploaded chunk does not match the hash its sender gave: it was
    /// corrupted in transit and was not stored.
    #[error("{0}")]
    ChunkCorrupt(String),
    /// The assembled attachment does not have the declared SHA-256; its chunks
    /// were dropped and the upload starts again.
    #[error("{0}")]
    HashMismatch(String),
    /// The attachment has no thumbnail: not a photo, or a photo that cannot be
    /// decoded. The original is still there to download.
    #[error("{0}")]
    ThumbnailUnavailable(String),
}

/// What kind of answer an [`Error`] calls for; the front ends map it to an
/// HTTP status or an error page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong: fix it before sending it again.
    Invalid,
    /// Who is calling is unknown or no longer valid: log in again.
    Unauthenticated,
    /// The caller is known but may not do this.
    Forbidden,
    /// Nothing there (or nothing the caller may see).
    NotFound,
    /// The state of the thing does not allow it now.
    Conflict,
    /// Over a size limit.
    TooLarge,
    /// Understood, but its content does not check out (a hash mismatch).
    Unprocessable,
    /// Slow down.
    RateLimited,
    /// The server cannot serve now; retrying later can help.
    Unavailable,
    /// A bug or an unexpected state; retrying later can help.
    Internal,
}

impl Error {
    /// An internal error with a message (for states that should not happen).
    pub fn internal(message: impl std::fmt::Display) -> Self {
        Error::Internal(message.to_string().into())
    }

    /// The stable code of this error: part of the protocol, never renamed.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Unavailable(_) => "database_unavailable",
            Error::Internal(_) => "internal",
            Error::NotFound => "not_found",
            Error::BadRequest(_) => "bad_request",
            Error::InvalidMessage(_) => "invalid_message",
            Error::InvalidCredentials => "invalid_credentials",
            Error::InvalidToken => "invalid_token",
            Error::InvalidRefreshToken => "invalid_refresh_token",
            Error::DeviceRevoked => "device_revoked",
            Error::AccountDisabled => "account_disabled",
            Error::Forbidden(_) => "forbidden",
            Error::RateLimited(_) => "rate_limited",
            Error::TooManyStreams { .. } => "too_many_streams",
            Error::TooManyDevices { .. } => "too_many_devices",
            Error::DeviceInUse => "device_in_use",
            Error::Conflict(_) => "conflict",
            Error::TemplatePublished(_) => "template_published",
            Error::AttachmentTooLarge { .. } => "attachment_too_large",
            Error::ChunkCorrupt(_) => "chunk_corrupt",
            Error::HashMismatch(_) => "hash_mismatch",
            Error::ThumbnailUnavailable(_) => "thumbnail_unavailable",
        }
    }

    /// What kind of answer this error calls for.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Unavailable(_) => ErrorKind::Unavailable,
            Error::Internal(_) => ErrorKind::Internal,
            Error::NotFound | Error::ThumbnailUnavailable(_) => ErrorKind::NotFound,
            Error::BadRequest(_) | Error::InvalidMessage(_) | Error::ChunkCorrupt(_) => {
                ErrorKind::Invalid
            }
            Error::InvalidCredentials
            | Error::InvalidToken
            | Error::InvalidRefreshToken
            | Error::DeviceRevoked => ErrorKind::Unauthenticated,
            Error::AccountDisabled | Error::Forbidden(_) => ErrorKind::Forbidden,
            Error::RateLimited(_) | Error::TooManyStreams { .. } | Error::TooManyDevices { .. } => {
                ErrorKind::RateLimited
            }
            Error::DeviceInUse | Error::Conflict(_) | Error::TemplatePublished(_) => {
                ErrorKind::Conflict
            }
            Error::AttachmentTooLarge { .. } => ErrorKind::TooLarge,
            Error::HashMismatch(_) => ErrorKind::Unprocessable,
        }
    }

    /// The message with its causes, for the log (server-side failures only
    /// carry causes).
    pub fn chain(&self) -> String {
        let mut chain = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            chain.push_str(": ");
            chain.push_str(&cause.to_string());
            source = cause.source();
        }
        chain
    }

    /// Logs a server-side failure with its causes; client errors are not logged.
    pub fn log_if_server_error(&self) {
        if matches!(self.kind(), ErrorKind::Unavailable | ErrorKind::Internal) {
            // Display, never Debug: see the module documentation.
            tracing::error!(error = %self.chain(), code = self.code(), "request failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_snake_case() {
        let all = [
            Error::NotFound,
            Error::InvalidCredentials,
            Error::DeviceRevoked,
            Error::RateLimited(Duration::from_secs(3)),
            Error::Conflict("x".into()),
            Error::internal("boom"),
        ];
        for e in &all {
            assert!(
                e.code().chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{}",
                e.code()
            );
        }
        assert_eq!(Error::DeviceRevoked.code(), "device_revoked");
        assert_eq!(Error::DeviceRevoked.kind(), ErrorKind::Unauthenticated);
    }

    #[test]
    fn the_log_chain_names_the_cause() {
        let e = Error::Unavailable("connection refused".into());
        assert_eq!(
            e.chain(),
            "the database is not available; try again later: connection refused"
        );
    }

    #[test]
    fn rate_limited_says_at_least_one_second() {
        let e = Error::RateLimited(Duration::from_millis(200));
        assert_eq!(e.to_string(), "too many requests; try again in 1 s");
    }
}
