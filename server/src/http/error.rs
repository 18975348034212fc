//! The one HTTP error type and the one error body. Every error answers
//! `{"error": {"code": "stable_snake_case", "message": "what to do"}}`
//! ([`ErrorBody`]) with a matching status; internal details are logged, never
//! returned.
//!
//! Most errors come from the use cases as a [`domain::Error`](crate::domain::Error)
//! and keep its stable code; the variants here are the ones only HTTP can
//! produce (a missing token, a body that is not JSON or CBOR, an unsupported
//! protocol version, a body over the limit, a request over the timeout). Codes are part of the protocol:
//! clients branch on them (`device_revoked` makes the app wipe its data), so a
//! code is never renamed.
//!
//! [`ApiJson`] replaces axum's `Json` extractor so that a malformed body or a
//! wrong content type also answers in this shape.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::domain::{self, ErrorKind};

/// Every error answer: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code (`invalid_token`, `not_found`, ...).
    #[schema(example = "not_found")]
    pub code: String,
    /// A sentence for people.
    pub message: String,
}

/// An error answered over HTTP.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A use case refused or failed.
    #[error(transparent)]
    Domain(#[from] domain::Error),
    /// The body is not the JSON this endpoint expects.
    #[error("invalid JSON body: {0}")]
    InvalidJson(String),
    /// The body is not declared as JSON.
    #[error("send the body as JSON with `content-type: application/json`")]
    UnsupportedMediaType,
    /// No `Authorization: Bearer` header.
    #[error("send an access token in `Authorization: Bearer …`; log in to get one")]
    MissingToken,
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
    /// The request took longer than the request timeout until its answer.
    #[error(
        "the request took longer than {} s; send it again (a large push in smaller batches)",
        .0.as_secs()
    )]
    Timeout(std::time::Duration),
}

/// The HTTP status for a kind of domain error.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Domain(e) => (status_of(e.kind()), e.code()),
            ApiError::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            ApiError::UnsupportedMediaType | ApiError::UnsupportedCbor => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::MissingToken => (StatusCode::UNAUTHORIZED, "missing_token"),
            ApiError::InvalidMessage(_) => (StatusCode::BAD_REQUEST, "invalid_message"),
            ApiError::ProtocolUnsupported(_) => {
                (StatusCode::UPGRADE_REQUIRED, "protocol_unsupported")
            }
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
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
}

/// No such route, or nothing the caller may see there.
pub fn not_found() -> ApiError {
    ApiError::Domain(domain::Error::NotFound)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Domain(e) = &self {
            e.log_if_server_error();
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message: self.to_string(),
            },
        };
        let mut resp = (status, Json(body)).into_response();
        if let ApiError::Domain(domain::Error::RateLimited(wait)) = &self {
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
