//! The live channel: tells online devices that records in their scope changed,
//! so they pull at once instead of at their next scheduled sync.
//!
//! **Why server-sent events.** The channel only ever flows from server to
//! device, and the device answers a notification with an ordinary pull. SSE is
//! plain HTTP: it passes every proxy and load balancer that passes the rest of
//! the API, authenticates with the same bearer token, and needs no second
//! protocol on the device (the core reads it with the same HTTP client it syncs
//! with). WebSocket would add a bidirectional framing layer nothing here uses.
//!
//! **What flows.** A [`Note`] carries ids only: the organisation, the log
//! position, the pushing device, and the principals of the records that changed
//! (`u:<user>`, `t:<team>`, …; see [`crate::store`]). A connection forwards a
//! note when it shares a principal with the caller, as a `changed` event whose
//! id is the log position. No record content ever travels on this channel; a
//! notified device pulls, and the pull applies the full scope rules.
//!
//! **Across nodes.** On PostgreSQL a push sends its note with `pg_notify` in
//! the committing transaction, so a note exists exactly when its changes are
//! committed, and every node's listener ([`listen_postgres`]) hands it to its
//! local [`Hub`]. A listener whose connection drops reconnects and catches up
//! from the change log: every organisation with changes after the last note it
//! saw gets an organisation-wide note. On SQLite (one node) a push publishes to
//! the hub in-process after its commit.
//!
//! **Nothing lost.** A note is a hint, never the data: a device pulls right
//! after it connects, and a connection that falls behind the hub's buffer gets
//! one `changed` event that makes it pull. Heartbeats (SSE comments every 15 s)
//! keep idle connections open through NATs and let devices detect dead ones.
//! A connection ends after one access-token lifetime (the device reconnects with
//! a fresh token), at once when its device is revoked (a note like a commit's
//! announces it to every node), and when the node shuts down, with a `shutdown`
//! event carrying a reconnect hint.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use fieldsync_core::OrgId;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::AppState;
use crate::auth::AuthUser;
use crate::db::{Database, DbError};
use crate::error::ApiError;

/// The PostgreSQL channel notes travel on.
pub const CHANNEL: &str = "fieldsync_changes";
/// `application_name` of each node's listener connection (operators can find it
/// in `pg_stat_activity`).
pub const LISTENER_APP_NAME: &str = "fieldsync-listener";
/// Interval of the heartbeat comments.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// Notes a connection may fall behind before it is told to pull anyway.
const BUFFER: usize = 1_024;
/// Principals one note names; a push touching more is announced organisation-wide
/// (a PostgreSQL notification payload is limited to 8,000 bytes).
const MAX_PRINCIPALS: usize = 64;
/// Reconnect hint sent with the `shutdown` event.
const SHUTDOWN_RETRY_MS: u64 = 2_000;

/// Milliseconds since the epoch (0 if the clock is before it).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A commit, announced to the devices it concerns. Ids only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// The organisation.
    pub org: OrgId,
    /// The highest log position of the commit.
    pub seq: i64,
    /// The device that pushed (it is not told about its own changes).
    #[serde(default)]
    pub device: Option<String>,
    /// Principals of the changed records; empty means every device of the organisation.
    #[serde(default)]
    pub principals: Vec<String>,
    /// When the commit happened (Unix milliseconds), for the feed-lag figure.
    #[serde(default)]
    pub at_ms: i64,
    /// Set when the note announces a revoked device instead of a commit: that
    /// device's live connections end at once.
    #[serde(default)]
    pub revoked: Option<String>,
}

impl Note {
    /// A note for a commit touching records with these principals.
    pub fn new(org: OrgId, seq: i64, device: Option<String>, principals: BTreeSet<String>) -> Note {
        let principals = if principals.len() > MAX_PRINCIPALS {
            Vec::new()
        } else {
            principals.into_iter().collect()
        };
        Note {
            org,
            seq,
            device,
            principals,
            at_ms: now_ms(),
            revoked: None,
        }
    }

    /// Whether a caller with these principals, on `device`, should hear of it.
    fn concerns(&self, org: OrgId, principals: &[String], device: &str) -> bool {
        self.revoked.is_none()
            && self.org == org
            && self.device.as_deref() != Some(device)
            && (self.principals.is_empty()
                || self.principals.iter().any(|p| principals.contains(p)))
    }
}

/// One node's fan-out of notes to its live connections.
#[derive(Debug)]
pub struct Hub {
    notes: broadcast::Sender<Arc<Note>>,
    closing: watch::Sender<bool>,
}

impl Default for Hub {
    fn default() -> Self {
        let (notes, _) = broadcast::channel(BUFFER);
        let (closing, _) = watch::channel(false);
        Hub { notes, closing }
    }
}

impl Hub {
    /// Hands a note to every live connection of this node.
    pub fn publish(&self, note: Note) {
        // No receivers is fine: nobody is connected.
        let _ = self.notes.send(Arc::new(note));
    }

    /// Ends every live connection with a `shutdown` event (the node is stopping).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }
}

/// The live route.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/v1/live", get(live))
}

/// `GET /v1/live`: a `text/event-stream` of `hello` (the current log head),
/// `changed` (id and data: the log position) and, when the node stops,
/// `shutdown` (data: `{"retry_ms": …}`).
#[utoipa::path(get, path = "/v1/live", tag = "sync", security(("bearer" = [])),
    responses(
        (status = 200, description = "`text/event-stream`: `hello`, `changed`, `shutdown` events (docs/protocol.md)", content_type = "text/event-stream"),
        (status = 401, description = "Missing, invalid or expired token; `device_revoked`", body = crate::api_doc::ErrorBody),
    ))]
pub(crate) async fn live(
    State(state): State<Arc<AppState>>,
    user: AuthUser,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let caller = crate::sync::caller(&state, &user)?;
    let principals: Vec<String> = caller.principals().into_iter().collect();
    let device = user.device.to_string();
    let org = user.org;
    let head = crate::store::org_head(&state.db, org)
        .await
        .map_err(ApiError::Unavailable)?;
    let notes = state.hub.notes.subscribe();
    let closing = state.hub.closing.subscribe();
    let lifetime = Duration::from_secs(state.keys.access_ttl_secs().max(60));
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
        /// Counts the connection in `fieldsync_live_connections` while it is open.
        _counted: crate::metrics::LiveConnection,
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
        _counted: state.metrics.live_connection(),
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
            let event = tokio::select! {
                note = c.notes.recv() => match note {
                    Ok(note) if note.revoked.as_deref() == Some(c.device.as_str()) => {
                        // The device was revoked: end now; its reconnect is refused
                        // with `device_revoked`, on which the app wipes its data.
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
                () = &mut c.deadline => {
                    // Reconnect with a fresh token (a revoked device is refused then).
                    c.done = true;
                    Some(Event::default().event("reconnect").data("{\"retry_ms\":0}"))
                }
            };
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

/// Tells every node that `device` was revoked, so its live connections end.
pub async fn announce_revocation(
    state: &AppState,
    org: OrgId,
    device: fieldsync_core::DeviceId,
) -> Result<(), DbError> {
    let mut note = Note::new(org, 0, None, BTreeSet::new());
    note.revoked = Some(device.to_string());
    match &state.db {
        Database::Postgres(pool) => {
            let payload = serde_json::to_string(&note)
                .map_err(|e| DbError::Corrupt(format!("cannot encode a note: {e}")))?;
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(payload)
                .execute(pool)
                .await?;
        }
        Database::Sqlite(_) => state.hub.publish(note),
    }
    Ok(())
}

/// Relays the PostgreSQL channel into this node's hub until `stop` fires;
/// reconnects when the listener connection drops and catches up from the log.
pub async fn listen_postgres(
    db: Database,
    hub: Arc<Hub>,
    metrics: Arc<crate::metrics::Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let Database::Postgres(pool) = &db else {
        return;
    };
    let options = pool
        .connect_options()
        .as_ref()
        .clone()
        .application_name(LISTENER_APP_NAME);
    let mut last_seq: Option<i64> = None;
    let mut attempt: u32 = 0;
    while !*stop.borrow() {
        let listener = async {
            let conn_pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await?;
            let mut listener = sqlx::postgres::PgListener::connect_with(&conn_pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        let mut listener = match listener {
            Ok(l) => l,
            Err(e) => {
                attempt = attempt.saturating_add(1);
                let wait = Duration::from_millis(200u64.saturating_mul(1 << attempt.min(6)));
                tracing::warn!(error = %e, retry_in = ?wait, "live listener cannot connect");
                tokio::select! {
                    () = tokio::time::sleep(wait) => continue,
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        };
        attempt = 0;
        // Whatever committed while no listener was connected.
        if let Some(after) = last_seq {
            match catch_up(&db, after).await {
                Ok(notes) => {
                    for note in notes {
                        last_seq = Some(last_seq.map_or(note.seq, |s| s.max(note.seq)));
                        hub.publish(note);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "live listener could not catch up"),
            }
        } else {
            last_seq = Some(crate::store::global_head(&db).await.unwrap_or(0));
        }
        loop {
            tokio::select! {
                received = listener.try_recv() => match received {
                    Ok(Some(n)) => match serde_json::from_str::<Note>(n.payload()) {
                        Ok(note) => {
                            last_seq = Some(last_seq.map_or(note.seq, |s| s.max(note.seq)));
                            // Precision: the nodes' clocks (keep them in sync).
                            let lag_ms = now_ms().saturating_sub(note.at_ms);
                            metrics.observe_feed_lag(lag_ms as f64 / 1000.0);
                            hub.publish(note);
                        }
                        Err(e) => tracing::warn!(error = %e, "ignoring a malformed change note"),
                    },
                    // The connection dropped: reconnect, then catch up.
                    Ok(None) | Err(_) => {
                        tracing::warn!("live listener connection lost; reconnecting");
                        break;
                    }
                },
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

/// One organisation-wide note per organisation with changes after `after`.
async fn catch_up(db: &Database, after: i64) -> Result<Vec<Note>, DbError> {
    let rows: Vec<(String, i64)> = crate::on_pool!(db, |pool, _uuid| {
        sqlx::query_as(
            "SELECT CAST(org_id AS TEXT), MAX(seq) FROM change_log WHERE seq > $1 GROUP BY org_id",
        )
        .bind(after)
        .fetch_all(pool)
        .await?
    });
    rows.into_iter()
        .map(|(org, seq)| {
            Ok(Note::new(
                OrgId::from_uuid(crate::db::parse_uuid(&org)?),
                seq,
                None,
                BTreeSet::new(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_reaches_the_principals_it_names_but_not_its_own_device() {
        let org = OrgId::new();
        let note = Note::new(
            org,
            7,
            Some("dev-a".into()),
            ["u:1".to_owned(), "t:9".to_owned()].into_iter().collect(),
        );
        assert!(note.concerns(org, &["u:1".into()], "dev-b"));
        assert!(note.concerns(org, &["u:2".into(), "t:9".into()], "dev-b"));
        assert!(
            !note.concerns(org, &["u:1".into()], "dev-a"),
            "its own push"
        );
        assert!(!note.concerns(org, &["u:2".into()], "dev-b"));
        assert!(!note.concerns(OrgId::new(), &["u:1".into()], "dev-b"));
    }

    #[test]
    fn a_wide_push_is_announced_to_the_whole_organisation_and_fits_a_notification() {
        let org = OrgId::new();
        let many: BTreeSet<String> = (0..500).map(|i| format!("u:{:036}", i)).collect();
        let note = Note::new(org, 1, None, many);
        assert!(note.principals.is_empty());
        assert!(note.concerns(org, &["u:anyone".into()], "dev"));
        let few: BTreeSet<String> = (0..MAX_PRINCIPALS)
            .map(|_| format!("u:{}", uuid::Uuid::now_v7()))
            .collect();
        let payload = serde_json::to_string(&Note::new(org, i64::MAX, Some("x".repeat(36)), few))
            .expect("json");
        assert!(payload.len() < 8_000, "{} bytes", payload.len());
    }
}
