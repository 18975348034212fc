//! Live sync: while the device is online, a change made elsewhere reaches it in
//! about a second.
//!
//! The server keeps a server-sent-events stream open (`GET /v1/live`) and says
//! `changed` when records in the device's scope changed; the device then runs
//! an ordinary [`SyncClient::sync`]. Notifications carry no data, so nothing is
//! lost when one is missed: the device syncs whenever it (re)connects, and the
//! pull always starts from its stored cursor.
//!
//! The loop runs on its own thread until [`LiveSync::stop`]. It reconnects
//! with exponential backoff and jitter (the same policy as the sync loop),
//! honours the server's reconnect hint when a node shuts down, refreshes the
//! access token when it expires, and stops for good when the device is revoked
//! (after the sync that wipes it). A connection silent for longer than
//! [`LiveOptions::silence`] (the server sends a heartbeat every 15 s) is taken
//! for dead and replaced.

use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{NoProgress, SyncClient, SyncError, SyncReport, SyncStore, Transport, TransportError};

/// What the live channel says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveMessage {
    /// Connected; the feed's head at that moment.
    Hello {
        /// Highest log position of the organisation.
        head: u64,
    },
    /// Records in scope changed, up to this log position (0: unknown, pull anyway).
    Changed {
        /// The log position.
        seq: u64,
    },
    /// The server ends the stream: reconnect after this long.
    Reconnect {
        /// The server's hint.
        retry: Duration,
    },
}

/// An open live stream. `next` blocks until a message, the end of the stream
/// (`Ok(None)`) or a failure (a silent connection is a network failure).
pub trait LiveStream: Send {
    /// The next message.
    fn next(&mut self) -> Result<Option<LiveMessage>, TransportError>;
}

/// What the live loop reports to the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveEvent {
    /// The live channel is open.
    Connected,
    /// A sync ran because of a notification or a (re)connection.
    Synced(SyncReport),
    /// A sync failed; the loop carries on.
    SyncFailed(String),
    /// The channel closed; the loop reconnects after `retry_in`.
    Disconnected {
        /// Why.
        reason: String,
        /// When it tries again.
        retry_in: Duration,
    },
    /// The loop ended (stopped by the app, or the device was revoked or logged out).
    Stopped {
        /// Why.
        reason: String,
    },
}

/// Receives the live loop's events, on the loop's thread.
pub trait LiveListener: Send + Sync {
    /// One event.
    fn on_live(&self, event: LiveEvent);
}

/// Tuning of the live loop.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// First reconnect delay; doubles per failed attempt, with jitter.
    pub base_backoff: Duration,
    /// Longest reconnect delay.
    pub max_backoff: Duration,
    /// Longest silence before a connection is taken for dead (the server sends a
    /// heartbeat every 15 s).
    pub silence: Duration,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            silence: Duration::from_secs(45),
        }
    }
}

/// A running live loop.
#[derive(Debug)]
pub struct LiveSync {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LiveSync {
    /// Asks the loop to stop; it ends within a fraction of a second (or after
    /// the sync it is running).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Whether the loop's thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for LiveSync {
    fn drop(&mut self) {
        self.stop();
    }
}

impl<S, T> SyncClient<S, T>
where
    S: SyncStore + 'static,
    T: Transport + 'static,
{
    /// Starts live sync on a thread of its own; see the module docs.
    pub fn start_live(
        self: &Arc<Self>,
        listener: Arc<dyn LiveListener>,
        options: LiveOptions,
    ) -> LiveSync {
        let stop = Arc::new(AtomicBool::new(false));
        let client = Arc::clone(self);
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("fieldsync-live".into())
            .spawn(move || {
                let reason = client.live_loop(&*listener, &options, &flag);
                listener.on_live(LiveEvent::Stopped { reason });
            })
            .ok();
        LiveSync { stop, thread }
    }

    /// Runs until stopped; returns why it stopped.
    fn live_loop(
        &self,
        listener: &dyn LiveListener,
        options: &LiveOptions,
        stop: &AtomicBool,
    ) -> String {
        let policy = super::SyncOptions {
            base_backoff: options.base_backoff,
            max_backoff: options.max_backoff,
            ..self.options.clone()
        };
        let mut attempt: u32 = 0;
        loop {
            if stop.load(Ordering::SeqCst) {
                return "stopped".into();
            }
            let Some(session) = self.session() else {
                return "not logged in".into();
            };
            let (reason, wait) = match self.transport.live(&session.access_token) {
                Ok(stream) => {
                    attempt = 0;
                    listener.on_live(LiveEvent::Connected);
                    // Catch up with whatever happened while disconnected.
                    if let Some(end) = self.live_sync(listener) {
                        return end;
                    }
                    self.follow(stream, listener, stop)
                }
                // Expired token: a sync refreshes it (and wipes a revoked device).
                Err(TransportError::Unauthorized { .. } | TransportError::Revoked(_)) => {
                    if let Some(end) = self.live_sync(listener) {
                        return end;
                    }
                    attempt = attempt.saturating_add(1);
                    ("token renewed".to_owned(), super::backoff(&policy, attempt))
                }
                Err(TransportError::RateLimited { retry_after }) => {
                    ("rate limited".to_owned(), retry_after)
                }
                Err(e) => {
                    attempt = attempt.saturating_add(1);
                    (e.to_string(), super::backoff(&policy, attempt))
                }
            };
            if stop.load(Ordering::SeqCst) {
                return "stopped".into();
            }
            listener.on_live(LiveEvent::Disconnected {
                reason,
                retry_in: wait,
            });
            // Sleep in short steps so `stop` is honoured quickly.
            let until = std::time::Instant::now() + wait;
            while std::time::Instant::now() < until {
                if stop.load(Ordering::SeqCst) {
                    return "stopped".into();
                }
                std::thread::sleep(Duration::from_millis(50).min(wait));
            }
        }
    }

    /// Reads one connection until it ends; returns why and how long to wait.
    ///
    /// The blocking reads run on a reader thread, so that `stop` is honoured
    /// within a fraction of a second; a reader left behind ends at its next
    /// heartbeat, without reporting anything.
    fn follow(
        &self,
        mut stream: Box<dyn LiveStream>,
        listener: &dyn LiveListener,
        stop: &AtomicBool,
    ) -> (String, Duration) {
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let reader = std::thread::Builder::new()
            .name("fieldsync-live-reader".into())
            .spawn(move || {
                loop {
                    let message = stream.next();
                    let last = !matches!(
                        message,
                        Ok(Some(
                            LiveMessage::Changed { .. } | LiveMessage::Hello { .. }
                        ))
                    );
                    if tx.send(message).is_err() || last {
                        return;
                    }
                }
            });
        if let Err(e) = reader {
            return (
                format!("cannot start the live reader: {e}"),
                Duration::from_secs(1),
            );
        }
        loop {
            if stop.load(Ordering::SeqCst) {
                return ("stopped".into(), Duration::ZERO);
            }
            let message = match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(message) => message,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Ok(None),
            };
            match message {
                Ok(Some(LiveMessage::Changed { .. })) => {
                    // Several notifications in a row need one sync.
                    while let Ok(Ok(Some(LiveMessage::Changed { .. }))) = rx.try_recv() {}
                    if self.live_sync(listener).is_some() {
                        return ("device revoked".into(), Duration::ZERO);
                    }
                }
                Ok(Some(LiveMessage::Hello { .. })) => {}
                Ok(Some(LiveMessage::Reconnect { retry })) => {
                    let wait = retry + Duration::from_millis(super::jitter(500));
                    return ("the server asked to reconnect".into(), wait);
                }
                Ok(None) => {
                    return (
                        "the server closed the stream".into(),
                        Duration::from_millis(super::jitter(1_000)),
                    );
                }
                Err(e) => return (e.to_string(), Duration::from_millis(super::jitter(1_000))),
            }
        }
    }

    /// One sync, reported. `Some(reason)` when the loop must end.
    fn live_sync(&self, listener: &dyn LiveListener) -> Option<String> {
        match self.sync(&NoProgress) {
            Ok(report) => {
                listener.on_live(LiveEvent::Synced(report));
                None
            }
            Err(SyncError::Revoked) => Some("this device was revoked; its data was wiped".into()),
            Err(SyncError::NotLoggedIn) => Some("not logged in".into()),
            Err(e) => {
                listener.on_live(LiveEvent::SyncFailed(e.to_string()));
                None
            }
        }
    }
}

/// Reads server-sent events from a byte stream (the subset the server sends:
/// `event:`, `data:`, `id:` fields, comments as heartbeats).
#[derive(Debug)]
pub struct SseReader<R> {
    reader: R,
}

impl<R: BufRead> SseReader<R> {
    /// Reads events from `reader`.
    pub fn new(reader: R) -> Self {
        SseReader { reader }
    }

    /// The next event as (event name, data); `None` at the end of the stream.
    pub fn next_event(&mut self) -> std::io::Result<Option<(String, String)>> {
        let mut event = String::new();
        let mut data = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.reader.read_line(&mut line)?;
            if n == 0 {
                return Ok(None);
            }
            // Lines are short; a line longer than 64 KiB is not ours.
            if line.len() > 64 * 1024 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "oversized event-stream line",
                ));
            }
            let text = line.trim_end_matches(['\r', '\n']);
            if text.is_empty() {
                if event.is_empty() && data.is_empty() {
                    continue;
                }
                return Ok(Some((
                    std::mem::take(&mut event),
                    std::mem::take(&mut data),
                )));
            }
            if text.starts_with(':') {
                continue; // heartbeat
            }
            let (field, value) = text.split_once(':').unwrap_or((text, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => value.clone_into(&mut event),
                "data" => {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(value);
                }
                _ => {}
            }
        }
    }
}

/// The live message of an event, if it is one the client knows.
pub fn parse_live_event(event: &str, data: &str) -> Option<LiveMessage> {
    let json: serde_json::Value = serde_json::from_str(data).ok()?;
    let num = |key: &str| json.get(key).and_then(serde_json::Value::as_u64);
    match event {
        "hello" => Some(LiveMessage::Hello {
            head: num("head").unwrap_or(0),
        }),
        "changed" => Some(LiveMessage::Changed {
            seq: num("seq").unwrap_or(0),
        }),
        "shutdown" | "reconnect" => Some(LiveMessage::Reconnect {
            retry: Duration::from_millis(num("retry_ms").unwrap_or(1_000).min(300_000)),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_stream_parser_reads_events_and_skips_heartbeats() {
        let text = ": \n\nevent: hello\ndata: {\"head\":4}\n\n:\n\nevent: changed\nid: 9\ndata: {\"seq\":9}\n\nevent: shutdown\ndata: {\"retry_ms\":2000}\n\n";
        let mut r = SseReader::new(text.as_bytes());
        let mut got = Vec::new();
        while let Some((event, data)) = r.next_event().expect("read") {
            got.push(parse_live_event(&event, &data).expect("known event"));
        }
        assert_eq!(
            got,
            vec![
                LiveMessage::Hello { head: 4 },
                LiveMessage::Changed { seq: 9 },
                LiveMessage::Reconnect {
                    retry: Duration::from_millis(2_000)
                },
            ]
        );
    }

    #[test]
    fn unknown_or_malformed_events_are_ignored() {
        assert_eq!(parse_live_event("changed", "not json"), None);
        assert_eq!(parse_live_event("gossip", "{}"), None);
        let mut r = SseReader::new("data: {}\n\n".as_bytes());
        assert_eq!(
            r.next_event().expect("read"),
            Some((String::new(), "{}".to_owned()))
        );
    }
}
