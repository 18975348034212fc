//! The middleware around every route: a request id (the client's
//! `x-request-id` if it is a short token, else a new UUID, echoed in the
//! answer), the `request` span (ids only: request id, method, route template;
//! the caller extractor adds device and user ids), the node's request counters
//! and latency, and one log line when the answer leaves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::metrics::{Metrics, UNMATCHED};

/// The header that carries a request's id, in and out.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of a request: the client's `x-request-id` when it is a short token
/// of letters, digits, `-`, `_` and `.` (so it can join logs across a proxy),
/// otherwise a new UUID. Anything else a client sends there is not logged.
fn request_id(req: &Request) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// Middleware around every route: request id, the `request` span, the
/// request counters and latency, and the in-flight gauge.
pub async fn track(State(metrics): State<Arc<Metrics>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(&req);
    // The template, never the path: `/v1/records/{id}/audit`.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
        .to_owned();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        route = %route,
        device = tracing::field::Empty,
        user = tracing::field::Empty,
    );
    if let Ok(value) = HeaderValue::from_str(&id) {
        req.headers_mut().insert(REQUEST_ID, value);
    }
    let in_flight = metrics.request_started();
    let mut resp = next.run(req).instrument(span.clone()).await;
    drop(in_flight);

    let status = resp.status();
    let elapsed = started.elapsed();
    metrics.request_answered(&route, status.as_u16(), elapsed);
    if let Ok(value) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, value);
    }
    log_answer(&span, &route, status, elapsed);
    resp
}

fn log_answer(span: &tracing::Span, route: &str, status: StatusCode, elapsed: Duration) {
    let _entered = span.enter();
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    let status = status.as_u16();
    // Probes and scrapes come every few seconds: kept out of the info log.
    if route == "/healthz" || route == "/metrics" {
        tracing::debug!(status, latency_ms, "answered");
    } else {
        tracing::info!(status, latency_ms, "answered");
    }
}
