//! The one HTTP error type. Every error answers
//! `{"error": {"code": "stable_snake_case", "message": "what to do"}}` with a
//! matching status; internal details are logged, never returned.
//!
//! Codes are part of the protocol: clients branch on them (`device_revoked`
//! makes the app wipe its data), so a code is never renamed.
//!
//! [`ApiJson`] replaces axum's `Json` extractor so that a malformed body or a
//! wrong content type also answers in this shape.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

/// An error answered over HTTP.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The database is unreachable or failing.
    #[error("the database is not available; try again later")]
    Unavailable(#[source] crate::db::DbError),
    /// Something unexpected; details are in the log.
    #[error("internal error; try again later")]
    Internal(#[source] anyhow::Error),
    /// No such route.
    #[error("not found")]
    NotFound,
    /// The body is not the JSON this endpoint expects.
    #[error("invalid JSON body: {0}")]
    InvalidJson(String),
    /// The body is not declared as JSON.
    #[error("send the body as JSON with `content-type: application/json`")]
    UnsupportedMediaType,
    /// A value in a well-formed body is out of range.
    #[error("{0}")]
    BadRequest(String),
    /// Unknown organisation, unknown email or wrong password: one answer for all
    /// three, so nobody can probe which accounts exist.
    #[error("wrong organisation, email or password")]
    InvalidCredentials,
    /// No `Authorization: Bearer` header.
    #[error("send an access token in `Authorization: Bearer …`; log in to get one")]
    MissingToken,
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
    /// The body is not the protocol message this endpoint expects.
    #[error("{0}")]
    InvalidMessage(String),
    /// A sync endpoint was sent something other than CBOR.
    #[error("send the body as CBOR with `content-type: application/cbor`")]
    UnsupportedCbor,
    /// The app speaks a protocol version this server no longer serves.
    #[error("{0}")]
    ProtocolUnsupported(String),
    /// The body is over the size limit.
    #[error("the request body is over the limit of {0} bytes; send fewer records per request")]
    TooLarge(usize),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// Too many requests; try again after the duration.
    #[error("too many requests; try again in {} s", .0.as_secs().max(1))]
    RateLimited(std::time::Duration),
    /// The device id is registered to another user.
    #[error("this device is registered to another user; reinstall the app or clear its data")]
    DeviceInUse,
    /// The record is not in a state that allows this (e.g. approving a draft).
    #[error("{0}")]
    Conflict(String),
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

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            ApiError::MissingToken => (StatusCode::UNAUTHORIZED, "missing_token"),
            ApiError::InvalidToken => (StatusCode::UNAUTHORIZED, "invalid_token"),
            ApiError::InvalidRefreshToken => (StatusCode::UNAUTHORIZED, "invalid_refresh_token"),
            ApiError::DeviceRevoked => (StatusCode::UNAUTHORIZED, "device_revoked"),
            ApiError::AccountDisabled => (StatusCode::FORBIDDEN, "account_disabled"),
            ApiError::DeviceInUse => (StatusCode::CONFLICT, "device_in_use"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::InvalidMessage(_) => (StatusCode::BAD_REQUEST, "invalid_message"),
            ApiError::UnsupportedCbor => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::ProtocolUnsupported(_) => {
                (StatusCode::UPGRADE_REQUIRED, "protocol_unsupported")
            }
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::AttachmentTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "attachment_too_large")
            }
            ApiError::ChunkCorrupt(_) => (StatusCode::BAD_REQUEST, "chunk_corrupt"),
            ApiError::HashMismatch(_) => (StatusCode::UNPROCESSABLE_ENTITY, "hash_mismatch"),
            ApiError::ThumbnailUnavailable(_) => (StatusCode::NOT_FOUND, "thumbnail_unavailable"),
        }
    }

    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        self.status_and_code().1
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.status_and_code().0
    }

    /// Logs a server-side failure with its causes (client errors are not logged).
    pub fn log_if_server_error(&self) {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            // Display, never Debug: a database error's Debug carries the
            // server's DETAIL, which can quote row values (personal data).
            let mut chain = self.to_string();
            let mut source = std::error::Error::source(self);
            while let Some(cause) = source {
                chain.push_str(": ");
                chain.push_str(&cause.to_string());
                source = cause.source();
            }
            tracing::error!(error = %chain, code, "request failed");
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        self.log_if_server_error();
        let body = json!({ "error": { "code": code, "message": self.to_string() } });
        let mut resp = (status, Json(body)).into_response();
        if let ApiError::RateLimited(wait) = &self {
            // Whole seconds, rounded up, as the header requires.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs.max(1)),
            );
        }
        resp
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
            // Syntax and data errors describe the client's own input (a line and
            // column, a missing field), so they are safe and useful to return.
            other => ApiError::InvalidJson(other.body_text()),
        }
    }
}

/// A JSON body whose rejection is an [`ApiError`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(ApiJson(value))
    }
}
