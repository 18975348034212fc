//! `GET /v1/live`: the live channel as server-sent events (why SSE, and what
//! flows: see the `live` module). Each connection forwards the notes of this
//! node's hub that concern its caller.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use fieldsync_core::{DeviceId, OrgId, UserId};
use tokio::sync::{broadcast, watch};

use super::error::{ApiError, ErrorBody};
use crate::domain::Caller;
use crate::live::{HEARTBEAT, Note, SESSION_CHECK, SHUTDOWN_RETRY_MS, StreamPermit};
use crate::metrics::LiveConnection;
use crate::service::{self, Context};

/// The live route.
pub fn routes() -> Router<Arc<Context>> {
    Router::new().route("/v1/live", get(live))
}

/// `GET /v1/live`: a `text/event-stream` of `hello` (the current log head),
/// `changed` (id and data: the log position) and, when the node stops,
/// `shutdown` (data: `{"retry_ms": …}`).
#[utoipa::path(get, path = "/v1/live", tag = "sync", security(("bearer" = [])),
    responses(
        (status = 200, description = "`text/event-stream`: `hello`, `changed`, `shutdown` events (docs/protocol.md)", content_type = "text/event-stream"),
        (status = 401, description = "Missing, invalid or expired token; `device_revoked`", body = ErrorBody),
        (status = 429, description = "`too_many_streams`: the device (4) or the user (16) already holds the most live streams on this node", body = ErrorBody),
    ))]
pub(crate) async fn live(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let principals: Vec<String> = caller.principals().into_iter().collect();
    let device = caller.device().map(|d| d.to_string()).unwrap_or_default();
    let (user_id, device_id) = (caller.user(), caller.device());
    let org = caller.org;
    let permit = ctx.hub.admit(
        &caller.user().to_string(),
        caller.device().map(|d| d.to_string()).as_deref(),
    )?;
    let head = service::sync::head(&ctx, &caller).await?;
    let notes = ctx.hub.subscribe();
    let closing = ctx.hub.closing();
    let lifetime = Duration::from_secs(ctx.keys.access_ttl_secs().max(60));
    tracing::debug!(device = %device, "live connection opened");
    // The stream's state: what it listens to and what it has said.
    struct Conn {
        notes: broadcast::Receiver<Arc<Note>>,
        closing: watch::Receiver<bool>,
        deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
        hello: Option<i64>,
        done: bool,
        org: OrgId,
        principals: Vec<String>,
        device: String,
        user: String,
        /// Checks now and then that the session still holds (see `SESSION_CHECK`).
        check: tokio::time::Interval,
        ctx: Arc<Context>,
        user_id: UserId,
        device_id: Option<DeviceId>,
        /// Counts the connection in `fieldsync_live_connections` while it is open.
        _counted: LiveConnection,
        /// Its place under the per-device and per-user caps.
        _permit: StreamPermit,
    }
    let conn = Conn {
        notes,
        closing,
        deadline: Box::pin(tokio::time::sleep(lifetime)),
        hello: Some(head),
        done: false,
        org,
        principals,
        device,
        user: user_id.to_string(),
        check: tokio::time::interval_at(tokio::time::Instant::now() + SESSION_CHECK, SESSION_CHECK),
        ctx: ctx.clone(),
        user_id,
        device_id,
        _counted: ctx.metrics.live_connection(),
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(conn, |mut c| async move {
        if c.done {
            return None;
        }
        if let Some(head) = c.hello.take() {
            let hello = Event::default()
                .event("hello")
                .data(format!("{{\"head\":{head}}}"));
            return Some((Ok(hello), c));
        }
        loop {
            let mut check_due = false;
            let event = tokio::select! {
                note = c.notes.recv() => match note {
                    Ok(note) if note.ends(&c.user, &c.device) => {
                        // The device was revoked or its user disabled: end now;
                        // its reconnect is refused (`device_revoked`, on which
                        // the app wipes its data, or `account_disabled`).
                        c.done = true;
                        Some(Event::default().event("reconnect").data("{\"retry_ms\":0}"))
                    }
                    Ok(note) if note.concerns(c.org, &c.principals, &c.device) => {
                        Some(changed(note.seq))
                    }
                    Ok(_) => None,
                    // Fell behind: one event makes the device pull everything anyway.
                    Err(broadcast::error::RecvError::Lagged(_)) => Some(changed(0)),
                    Err(broadcast::error::RecvError::Closed) => {
                        c.done = true;
                        None
                    }
                },
                _ = c.closing.wait_for(|closing| *closing) => {
                    c.done = true;
                    Some(Event::default()
                        .event("shutdown")
                        .data(format!("{{\"retry_ms\":{SHUTDOWN_RETRY_MS}}}")))
                }
                _ = c.check.tick() => {
                    // Checked below, once nothing of the select is borrowed.
                    check_due = true;
                    None
                }
                () = &mut c.deadline => {
                    // Reconnect with a fresh token (a revoked device is refused then).
                    c.done = true;
                    Some(Event::default().event("reconnect").data("{\"retry_ms\":0}"))
                }
            };
            // Boxed: the check's database future would otherwise be part of
            // every idle connection's state, though it runs once a while.
            if check_due
                && !Box::pin(service::auth::session_holds(&c.ctx, c.user_id, c.device_id)).await
            {
                // Revoked or disabled beside the server: end as on an announcement.
                c.done = true;
                let end = Event::default().event("reconnect").data("{\"retry_ms\":0}");
                return Some((Ok(end), c));
            }
            match event {
                Some(event) => return Some((Ok(event), c)),
                None if c.done => return None,
                None => {}
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(HEARTBEAT).text("")))
}

fn changed(seq: i64) -> Event {
    Event::default()
        .event("changed")
        .id(seq.to_string())
        .data(format!("{{\"seq\":{seq}}}"))
}
