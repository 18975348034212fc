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
//! (`u:<user>`, `t:<team>`, …; see `db::records`). The `/v1/live` handler
//! (`http::live`) forwards a note to a connection when it shares a principal
//! with the caller, as a `changed` event whose id is the log position. No record content ever travels on this channel; a
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
//! a fresh token), at once when its device is revoked or its user disabled (a
//! note like a commit's announces it to every node; [`announce_end`]), within
//! [`SESSION_CHECK`] when that happened beside the server, and when the node
//! shuts down, with a `shutdown` event carrying a reconnect hint.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use fieldsync_core::{DeviceId, OrgId, UserId};
use tokio::sync::{broadcast, watch};

pub use crate::db::notify::LISTENER_APP_NAME;
use crate::db::notify::{self, NoteListener};
use crate::db::{Database, DbError, records};
use crate::domain::Error;
pub use crate::domain::note::Note;
use crate::domain::note::now_ms;
use crate::metrics::Metrics;
use crate::settings::Settings;

/// Interval of the heartbeat comments.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// Notes a connection may fall behind before it is told to pull anyway.
const BUFFER: usize = 1_024;
/// Reconnect hint sent with the `shutdown` event.
pub const SHUTDOWN_RETRY_MS: u64 = 2_000;
/// How often a live connection checks that its session still holds (device
/// not revoked, user not disabled). Revocations and disablings made through
/// the server are announced and end connections at once; this catches those
/// made beside it (`fieldsync user disable` on SQLite, a database edit).
pub const SESSION_CHECK: Duration = Duration::from_secs(30);

/// Open streams by `d:<device>` and `u:<user>`.
type StreamCounts = Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>;

/// A place among the open live streams, given back when the stream ends.
#[derive(Debug)]
pub struct StreamPermit {
    counts: StreamCounts,
    keys: Vec<String>,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        for key in &self.keys {
            if let Some(n) = counts.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(key);
                }
            }
        }
    }
}

/// One node's fan-out of notes to its live connections.
#[derive(Debug)]
pub struct Hub {
    /// Live streams open per device and per user, for the caps.
    streams: StreamCounts,
    /// The caps (0: none): per device, per user.
    caps: (usize, usize),
    /// Every note this node hears (its own SQLite commits, or every node's
    /// through the PostgreSQL listener); each live connection holds a receiver.
    notes: broadcast::Sender<Arc<Note>>,
    /// Set once when the node shuts down; each live connection watches it.
    closing: watch::Sender<bool>,
}

impl Default for Hub {
    fn default() -> Self {
        let (notes, _) = broadcast::channel(BUFFER);
        let (closing, _) = watch::channel(false);
        Hub {
            streams: StreamCounts::default(),
            caps: (
                Settings::default().live_streams_per_device,
                Settings::default().live_streams_per_user,
            ),
            notes,
            closing,
        }
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

    /// The notes from now on, for one live connection.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Note>> {
        self.notes.subscribe()
    }

    /// A hub whose live streams are capped at `per_device` and `per_user`
    /// (0: no cap); the default hub has the settings' default caps.
    pub fn with_stream_caps(per_device: usize, per_user: usize) -> Self {
        Hub {
            caps: (per_device, per_user),
            ..Hub::default()
        }
    }

    /// A place for one more live stream of `user` on `device` (`None`: a
    /// browser session), or which cap it would break (the settings
    /// `live_streams_per_device` and `live_streams_per_user`).
    pub fn admit(&self, user: &str, device: Option<&str>) -> Result<StreamPermit, Error> {
        let mut keys = vec![format!("u:{user}")];
        if let Some(device) = device {
            keys.push(format!("d:{device}"));
        }
        let mut counts = self
            .streams
            .lock()
            .map_err(|_| Error::internal("the live stream counts are poisoned"))?;
        for key in &keys {
            let (per, limit) = if key.starts_with("d:") {
                ("device", self.caps.0)
            } else {
                ("user", self.caps.1)
            };
            if limit > 0 && counts.get(key).copied().unwrap_or(0) >= limit {
                return Err(Error::TooManyStreams { per, limit });
            }
        }
        for key in &keys {
            *counts.entry(key.clone()).or_insert(0) += 1;
        }
        Ok(StreamPermit {
            counts: self.streams.clone(),
            keys,
        })
    }

    /// Becomes true when the node shuts down.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }
}

/// A session that ended, whose live connections must end with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// A revoked device (by a person, or by a reused refresh token).
    Device(DeviceId),
    /// A disabled user: every device of theirs.
    User(UserId),
}

/// Tells every node that `device` was revoked, so its live connections end.
pub async fn announce_revocation(
    db: &Database,
    hub: &Hub,
    org: OrgId,
    device: DeviceId,
) -> Result<(), DbError> {
    announce_end(db, Some(hub), org, Ended::Device(device)).await
}

/// Tells every node that a device was revoked or a user disabled, so their
/// live connections end at once: on PostgreSQL by a note on the channel every
/// node listens to (this one included); on SQLite (one node) by handing the
/// note to `hub`. Without a hub on SQLite (the command line, another process)
/// nothing is announced: the connections end at their next session check
/// ([`SESSION_CHECK`]).
pub async fn announce_end(
    db: &Database,
    hub: Option<&Hub>,
    org: OrgId,
    ended: Ended,
) -> Result<(), DbError> {
    let mut note = Note::new(org, 0, None, BTreeSet::new());
    match ended {
        Ended::Device(device) => note.revoked = Some(device.to_string()),
        Ended::User(user) => note.disabled = Some(user.to_string()),
    }
    match (db, hub) {
        (Database::Postgres(_), _) => notify::send(db, &note).await,
        (Database::Sqlite(_), Some(hub)) => {
            hub.publish(note);
            Ok(())
        }
        (Database::Sqlite(_), None) => Ok(()),
    }
}

/// Relays the PostgreSQL channel into this node's hub until `stop` fires;
/// reconnects when the listener connection drops and catches up from the log.
/// Returns at once on SQLite (one node: pushes publish to the hub directly).
pub async fn listen_postgres(
    db: Database,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    if !matches!(db, Database::Postgres(_)) {
        return;
    }
    let mut last_seq: Option<i64> = None;
    let mut attempt: u32 = 0;
    while !*stop.borrow() {
        let mut listener = match NoteListener::connect(&db).await {
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
            match notify::catch_up(&db, after).await {
                Ok(notes) => {
                    for note in notes {
                        last_seq = Some(last_seq.map_or(note.seq, |s| s.max(note.seq)));
                        hub.publish(note);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "live listener could not catch up"),
            }
        } else {
            last_seq = Some(records::global_head(&db).await.unwrap_or(0));
        }
        loop {
            tokio::select! {
                received = listener.recv() => match received {
                    Ok(Some(payload)) => match serde_json::from_str::<Note>(&payload) {
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
