//! What handlers take from a request: the [`Caller`] built from the access
//! token, the [`ClientAddr`] the request comes from, and [`Cbor`] protocol messages ([`ApiJson`](super::error::ApiJson)
//! is beside the error type it rejects with).
//!
//! A valid signature is not enough to be a caller: `service::auth::authenticate`
//! also loads the device and the user, so a revoked device or a disabled user
//! is refused at once rather than when the token expires, and the role, team
//! and territory come from the database, not from a token minted before a
//! manager changed them.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use fieldsync_core::protocol::{self, CONTENT_TYPE, PROTOCOL_HEADER};
use serde::{Serialize, de::DeserializeOwned};

use super::error::ApiError;
use crate::domain::Caller;
use crate::domain::address::client_address;
use crate::service::{self, Context};

/// Largest request body a sync endpoint reads.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// The address a request comes from: the TCP peer, or what a trusted proxy
/// reports in `X-Forwarded-For` (`domain::address`). `None` only when the
/// router runs without the peer addresses the node's server loop adds.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl FromRequestParts<Arc<Context>> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &Arc<Context>,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        Ok(ClientAddr(peer.map(|p| {
            client_address(p, forwarded, &ctx.trusted_proxies)
        })))
    }
}

impl FromRequestParts<Arc<Context>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &Arc<Context>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(ApiError::MissingToken)?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or(crate::domain::Error::InvalidToken)?;
        let caller = service::auth::authenticate(ctx, token).await?;
        // Ids only: the request's log lines say who, never their name or email.
        let span = tracing::Span::current();
        if let Some(device) = caller.device() {
            span.record("device", tracing::field::display(device));
        }
        span.record("user", tracing::field::display(caller.user()));
        Ok(caller)
    }
}

/// A CBOR protocol message as a request body. Checks the content type and the
/// protocol version before decoding; decoding never panics.
#[derive(Debug)]
pub struct Cbor<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Cbor<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        check_version(req.headers())?;
        let is_cbor = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(';').next().unwrap_or("").trim() == CONTENT_TYPE);
        if !is_cbor {
            return Err(ApiError::UnsupportedCbor);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(MAX_BODY_BYTES)
            } else {
                ApiError::InvalidMessage(format!("could not read the body: {e}"))
            }
        })?;
        protocol::decode(&bytes)
            .map(Cbor)
            .map_err(|e| ApiError::InvalidMessage(e.to_string()))
    }
}

/// A CBOR answer, with the protocol version in use.
#[derive(Debug)]
pub struct CborReply<T>(pub T);

impl<T: Serialize> IntoResponse for CborReply<T> {
    fn into_response(self) -> Response {
        let mut resp = protocol::encode(&self.0).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        headers.insert(
            PROTOCOL_HEADER,
            HeaderValue::from(protocol::PROTOCOL_VERSION),
        );
        resp
    }
}

fn check_version(headers: &HeaderMap) -> Result<u16, ApiError> {
    let offered = headers
        .get(PROTOCOL_HEADER)
        .map(|v| v.to_str().unwrap_or("?"));
    protocol::negotiate(offered).map_err(|e| ApiError::ProtocolUnsupported(e.to_string()))
}
