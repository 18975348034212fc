//! The node's HTTP server loop and its timeouts: what stops a client from
//! holding a connection or a request open for nothing.
//!
//! - **Headers**: a client has `header_read_timeout_secs` to send a request's
//!   line and headers (hyper's HTTP/1 header-read timer), so a client trickling
//!   its headers byte by byte (slow loris) is disconnected. hyper runs the
//!   same timer while a kept-alive connection waits for its next request, so
//!   it also bounds idle connections (30 s by default: longer than the device
//!   client's 15 s pool, so a client never reuses a connection the server is
//!   closing). `axum::serve`
//!   offers no such timer, hence this loop, which is otherwise axum's: one
//!   task per connection, graceful shutdown that lets in-flight requests end.
//!   Each request carries its peer's address as
//!   [`ConnectInfo`](axum::extract::ConnectInfo) (per-address login limits).
//!   A connection that opens with a live request is served outside hyper's
//!   connection, within the same header-read timeout ([`super::direct`]).
//! - **Request** ([`limit_request`]): a request has `request_timeout_secs`
//!   until its answer starts (reading its body and the handler's work), then
//!   answers 408 `request_timeout`. The live channel and attachment chunk
//!   uploads are exempt: a live stream answers at once and then lasts, and a
//!   chunk may take long over a slow network while it keeps moving. What an
//!   answer streams afterwards (a download, live events) is not timed.
//! - **Body reads**: every request body must deliver its next piece within
//!   `body_read_timeout_secs`; a stalled upload fails to read (its handler
//!   answers as for a broken body) instead of holding its task for ever.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_service::Service;

use super::direct;
use super::error::ApiError;
use crate::settings::Timeouts;

/// Routes whose requests are long by nature and exempt from the request
/// timeout (matched route templates).
const LONG_ROUTES: &[(Method, &str)] = &[
    (Method::GET, "/v1/live"),
    (Method::PUT, "/v1/attachments/{sha256}/chunks/{idx}"),
];

/// Serves `router` on `listener` until `shutdown` completes, then stops
/// accepting, lets every connection finish its requests and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Set once at shutdown; every connection watches it to close gracefully.
    let (stop, stopping) = watch::channel(false);
    // Every connection task holds a clone; the loop's end waits until all are dropped.
    let (all_done, done) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, as axum does.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let router = router.clone();
        let mut stopping = stopping.clone();
        let done = done.clone();
        tokio::spawn(async move {
            // A connection opening with a live request is served outside
            // hyper's connection (see `direct`); every other goes to hyper.
            let routed = tokio::select! {
                routed = direct::route(tcp, peer, timeouts.headers) => routed,
                _ = stopping.wait_for(|s| *s) => direct::Route::Drop,
            };
            let io = match routed {
                direct::Route::Live(tcp, req) => {
                    direct::serve_live(tcp, req, router).await;
                    return drop(done);
                }
                direct::Route::Hyper(io) => io,
                direct::Route::Drop => return drop(done),
            };
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let mut req = req.map(Body::new);
                req.extensions_mut().insert(ConnectInfo(peer));
                let mut router = router.clone();
                async move { router.call(req).await }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new());
            // `None` (the setting 0) turns hyper's own 30 s default off too.
            builder.header_read_timeout(timeouts.headers);
            let conn = builder.serve_connection(TokioIo::new(io), service);
            tokio::pin!(conn);
            let mut closing = false;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(error = %e, %peer, "connection ended with an error");
                        }
                        break;
                    }
                    _ = stopping.wait_for(|s| *s), if !closing => {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(done);
        });
    }
    drop(listener);
    stop.send_replace(true);
    drop(done);
    all_done.closed().await;
    Ok(())
}

/// The request and body-read timeouts around every route (see the module
/// documentation). Layered on the router so it sees the matched route.
pub async fn limit_request(State(timeouts): State<Timeouts>, req: Request, next: Next) -> Response {
    let long = req.extensions().get::<MatchedPath>().is_some_and(|p| {
        LONG_ROUTES
            .iter()
            .any(|(m, route)| m == req.method() && p.as_str() == *route)
    });
    let req = match timeouts.body_read {
        Some(idle) => req.map(|body| read_within(body, idle)),
        None => req,
    };
    match timeouts.request {
        Some(limit) if !long => match tokio::time::timeout(limit, next.run(req)).await {
            Ok(resp) => resp,
            Err(_) => ApiError::Timeout(limit).into_response(),
        },
        _ => next.run(req).await,
    }
}

/// The body, failing when its next piece takes longer than `idle` to arrive.
fn read_within(body: Body, idle: Duration) -> Body {
    let pieces = body.into_data_stream();
    Body::from_stream(futures_util::stream::unfold(
        Some(pieces),
        move |pieces| async move {
            let mut pieces = pieces?;
            match tokio::time::timeout(idle, pieces.next()).await {
                Ok(Some(piece)) => Some((piece, Some(pieces))),
                Ok(None) => None,
                Err(_) => Some((Err(axum::Error::new(BodyStalled(idle))), None)),
            }
        },
    ))
}

/// A request body that stopped moving.
#[derive(Debug, thiserror::Error)]
#[error("the request body stalled: nothing arrived for {} s", .0.as_secs())]
struct BodyStalled(Duration);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exempt_routes_are_routes_the_api_serves() {
        // A misspelt template would silently put the live channel or chunk
        // uploads back under the request timeout.
        let doc = crate::http::openapi();
        for (method, route) in LONG_ROUTES {
            let item = doc
                .paths
                .paths
                .get(*route)
                .unwrap_or_else(|| panic!("{route} is not a route"));
            let op = match *method {
                Method::GET => item.get.as_ref(),
                Method::PUT => item.put.as_ref(),
                _ => None,
            };
            assert!(op.is_some(), "{method} {route} is not served");
        }
    }
}
