//! Which pooled connections to PostgreSQL are pinged before they are handed
//! out. sqlx pings a connection when it goes back to the pool; pinging it
//! again before every checkout (its default) is a second round trip per
//! checkout (the two pings together were some 7 % of the server's CPU under
//! a crowd of pushes). As connection pools commonly do, a connection back in
//! the pool for less than [`TRUSTED_IDLE`] is handed out as it is: the ping
//! on its return found it alive a moment ago. Longer idle ones are pinged (a
//! database restarted meanwhile leaves them dead), and so is every
//! connection for [`SUSPECT_FOR`] after a statement failed on a broken
//! connection: a restart quicker than `TRUSTED_IDLE` is seen by that first
//! failure (its request answers "unavailable" and the device retries), and
//! the dead connections still in the pool are then found by their ping, not
//! by more requests.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a connection back in the pool is trusted without a ping.
pub const TRUSTED_IDLE: Duration = Duration::from_millis(500);

/// How long after a broken connection every checkout pings.
pub const SUSPECT_FOR: Duration = Duration::from_secs(30);

/// The clock [`BROKEN_AT`] counts from.
static START: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Milliseconds from [`START`] to the last broken connection, plus one
/// (zero: none yet). Shared by every pool of the process: a second pool
/// pings a little more after the first one's database failed, which
/// costs a few round trips and keeps this out of each statement's path.
static BROKEN_AT: AtomicU64 = AtomicU64::new(0);

/// Whether `e` says the connection it ran on is gone: an I/O, TLS or
/// protocol failure, or PostgreSQL's connection exceptions (class 08)
/// and shutdowns (57P01 to 57P05).
pub fn breaks_connections(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

/// Notes that a connection was found broken just now.
pub fn note_broken_connection() {
    let since = u64::try_from(START.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
    BROKEN_AT.store(since.saturating_add(1), Ordering::Relaxed);
}

/// Whether a connection idle for `idle_for` is pinged before it is
/// handed out.
pub fn needs_ping(idle_for: Duration) -> bool {
    let broken_ago = match BROKEN_AT.load(Ordering::Relaxed) {
        0 => None,
        at => Some(
            START
                .elapsed()
                .saturating_sub(Duration::from_millis(at - 1)),
        ),
    };
    ping_due(idle_for, broken_ago)
}

/// [`needs_ping`] for a connection idle for `idle_for`, the last broken
/// connection `broken_ago` (if any).
fn ping_due(idle_for: Duration, broken_ago: Option<Duration>) -> bool {
    idle_for >= TRUSTED_IDLE || broken_ago.is_some_and(|ago| ago < SUSPECT_FOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_failures_are_told_from_statement_failures() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        assert!(breaks_connections(&io));
        assert!(breaks_connections(&sqlx::Error::Protocol("bad".into())));
        assert!(!breaks_connections(&sqlx::Error::RowNotFound));
        assert!(!breaks_connections(&sqlx::Error::PoolTimedOut));
        assert!(!breaks_connections(&sqlx::Error::ColumnNotFound(
            "x".into()
        )));
    }

    #[test]
    fn a_connection_is_pinged_when_idle_long_or_after_a_broken_one() {
        let moment = Duration::from_millis(20);
        // All is well: a connection just returned goes out as it is; one
        // idle long enough for a restart is pinged.
        assert!(!ping_due(moment, None));
        assert!(!ping_due(TRUSTED_IDLE - moment, None));
        assert!(ping_due(TRUSTED_IDLE, None));
        assert!(ping_due(Duration::from_secs(3600), None));
        // A broken connection a moment ago: every checkout pings, until
        // it is long enough ago.
        assert!(ping_due(Duration::ZERO, Some(moment)));
        assert!(ping_due(moment, Some(SUSPECT_FOR - moment)));
        assert!(!ping_due(moment, Some(SUSPECT_FOR)));
        assert!(ping_due(TRUSTED_IDLE, Some(SUSPECT_FOR)));
    }

    #[test]
    fn a_broken_connection_is_remembered() {
        note_broken_connection();
        assert!(needs_ping(Duration::ZERO));
    }
}
