//! What an operator sees of a running node: `GET /metrics` in the OpenMetrics
//! text format (which Prometheus scrapes), and one structured log line per
//! request with its request id.
//!
//! **What is measured.** One [`Metrics`] per node, shared by the handlers
//! through `AppState`. Counters and histograms are updated at a few points:
//! `http::track` (every request: count, latency and in-flight requests by
//! route template, through [`Metrics::request_started`] and
//! [`Metrics::request_answered`]), the sync handlers ([`Metrics::pushed`], [`Metrics::pulled`],
//! [`Metrics::primed`]), and `service::sync::push` (merge and commit time,
//! changes merged) through [`Metrics::push_applied`]. The live-update channel sets
//! [`Metrics::live_connection`] and [`Metrics::observe_feed_lag`].
//!
//! **Labels stay bounded.** A route label is the matched route template
//! (`/v1/records/{id}/audit`), never the raw path, and `unmatched` for paths no
//! route knows; a rejection label is a protocol reject code. No label ever
//! holds an id, an email or anything a client typed, so the number of series
//! is fixed by the code, not by traffic.
//!
//! **Logs.** `http::track` opens a `request` span with the request id (the
//! client's `x-request-id` if it is a short token, else a new UUID, echoed in
//! the answer), method and route; the caller extractor adds the device and user ids.
//! Nothing else is put in the span: no query string, no body, no header
//! values. The line logged when the answer leaves carries the status and the
//! latency.
//!
//! **Push timings come back from the write path.** `db::records::apply_pushes`
//! returns how long its merges and its commit took; `service::sync::push`
//! records them with [`Metrics::push_applied`], whoever called it (a device's
//! push, a manager's decision written on their behalf, the demo seeder).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use fieldsync_core::protocol::{PushOutcome, PushResponse};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The content type of `GET /metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The route label of a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CodeLabel {
    code: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteStatusLabels {
    route: String,
    status: u16,
}

/// Buckets from 0.5 ms to about 16 s, doubling: a push's merge and commit and a
/// request's latency all fall somewhere in there.
fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The metrics of one node. The registry holds clones of the same handles
/// (each is an `Arc` inside), so updating a field updates what is served.
pub struct Metrics {
    registry: Registry,
    pushes: Counter,
    pulls: Counter,
    primes: Counter,
    /// Pulls from devices that last synced with the change log before a
    /// restore from backup.
    devices_after_restore: Counter,
    changes_merged: Counter,
    pushes_remerged: Counter,
    rejections: Family<CodeLabel, Counter>,
    http_requests: Family<RouteStatusLabels, Counter>,
    http_seconds: Family<RouteLabel, Histogram, fn() -> Histogram>,
    push_merge_seconds: Histogram,
    push_commit_seconds: Histogram,
    /// Requests being served now; read at shutdown to say how many it waits for.
    in_flight: Gauge,
    /// Devices connected to the live channel; the live module holds a
    /// [`LiveConnection`] per stream.
    live_connections: Gauge,
    feed_lag_seconds: Gauge<f64, AtomicU64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("in_flight", &self.in_flight.get())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric at zero.
    pub fn new() -> Self {
        let m = Metrics {
            registry: Registry::default(),
            pushes: Counter::default(),
            pulls: Counter::default(),
            primes: Counter::default(),
            devices_after_restore: Counter::default(),
            changes_merged: Counter::default(),
            pushes_remerged: Counter::default(),
            rejections: Family::default(),
            http_requests: Family::default(),
            http_seconds: Family::new_with_constructor(seconds_histogram),
            push_merge_seconds: seconds_histogram(),
            push_commit_seconds: seconds_histogram(),
            in_flight: Gauge::default(),
            live_connections: Gauge::default(),
            feed_lag_seconds: Gauge::default(),
        };
        let mut r = Registry::default();
        // Counters get their `_total` suffix from the encoder.
        r.register("fieldsync_pushes", "Push requests served", m.pushes.clone());
        r.register("fieldsync_pulls", "Pull requests served", m.pulls.clone());
        r.register(
            "fieldsync_primes",
            "Prime requests served",
            m.primes.clone(),
        );
        r.register(
            "fieldsync_devices_after_restore",
            "Pulls from devices that last synced before the database was restored from a backup \
             (each then repairs what it holds)",
            m.devices_after_restore.clone(),
        );
        r.register(
            "fieldsync_changes_merged",
            "Changes merged into the store and appended to the change log",
            m.changes_merged.clone(),
        );
        r.register(
            "fieldsync_pushes_remerged",
            "Pushes merged a second time because a concurrent push changed one of their \
             records while they merged",
            m.pushes_remerged.clone(),
        );
        r.register(
            "fieldsync_rejections",
            "Records refused in pushes, by reject code",
            m.rejections.clone(),
        );
        r.register(
            "fieldsync_http_requests",
            "HTTP requests answered, by route template and status",
            m.http_requests.clone(),
        );
        r.register(
            "fieldsync_http_request_seconds",
            "HTTP request latency, by route template",
            m.http_seconds.clone(),
        );
        r.register(
            "fieldsync_push_merge_seconds",
            "Time a push spends loading, checking and merging its records",
            m.push_merge_seconds.clone(),
        );
        r.register(
            "fieldsync_push_commit_seconds",
            "Time a push spends appending to the log and committing (lock wait included)",
            m.push_commit_seconds.clone(),
        );
        r.register(
            "fieldsync_http_in_flight_requests",
            "HTTP requests being served now",
            m.in_flight.clone(),
        );
        r.register(
            "fieldsync_live_connections",
            "Devices connected to the live-update channel of this node",
            m.live_connections.clone(),
        );
        r.register(
            "fieldsync_feed_lag_seconds",
            "Seconds between a change's commit and this node learning of it (last seen)",
            m.feed_lag_seconds.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail; an encoder error would be a bug
        // in a metric, and an empty page is what a scraper then gets.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "could not encode the metrics");
        }
        out
    }

    /// A push was answered: counts it and its refused records by code.
    pub fn pushed(&self, resp: &PushResponse) {
        self.pushes.inc();
        for r in &resp.results {
            if let PushOutcome::Rejected(rejection) = &r.outcome {
                self.rejections
                    .get_or_create(&CodeLabel {
                        code: rejection.code.as_str(),
                    })
                    .inc();
            }
        }
    }

    /// A pull was answered.
    pub fn pulled(&self) {
        self.pulls.inc();
    }

    /// A prime page was answered.
    pub fn primed(&self) {
        self.primes.inc();
    }

    /// A device that synced before a restore from backup pulled.
    pub fn device_after_restore(&self) {
        self.devices_after_restore.inc();
    }

    /// HTTP requests being served now.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.get()
    }

    /// Counts a device connected to the live channel until the guard is dropped
    /// (so a stream that ends any way at all is uncounted).
    pub fn live_connection(self: &Arc<Self>) -> LiveConnection {
        self.live_connections.inc();
        LiveConnection(Arc::clone(self))
    }

    /// Devices connected to the live channel now.
    pub fn live_connections(&self) -> i64 {
        self.live_connections.get()
    }

    /// How long after its commit this node learnt of a change (from the
    /// notification's commit time); the gauge holds the last value seen.
    pub fn observe_feed_lag(&self, secs: f64) {
        self.feed_lag_seconds.set(secs.max(0.0));
    }
}

/// One device on the live channel; see [`Metrics::live_connection`].
#[derive(Debug)]
pub struct LiveConnection(Arc<Metrics>);

impl Drop for LiveConnection {
    fn drop(&mut self) {
        self.0.live_connections.dec();
    }
}

/// Takes a request out of the in-flight count however it ends, including
/// when the client goes away and the handler is dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

impl Metrics {
    /// Counts a request in flight until the guard is dropped.
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.inc();
        InFlight(self.clone())
    }

    /// Counts an answered request under its route template (never the raw
    /// path) and status, with its latency.
    pub fn request_answered(&self, route: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .get_or_create(&RouteStatusLabels {
                route: route.to_owned(),
                status,
            })
            .inc();
        self.http_seconds
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a push merged again inside its transaction (see `service::sync::push`).
    pub fn push_remerged(&self) {
        self.pushes_remerged.inc();
    }

    /// Records one push transaction: its merge and commit times and the
    /// changes it appended to the log.
    pub fn push_applied(&self, merge: Duration, commit: Duration, changes: usize) {
        self.push_merge_seconds.observe(merge.as_secs_f64());
        self.push_commit_seconds.observe(commit.as_secs_f64());
        self.changes_merged.inc_by(changes as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_exposed_with_their_total_suffix() {
        let m = Metrics::new();
        m.pulled();
        let text = m.render();
        assert!(text.contains("fieldsync_pulls_total 1"), "{text}");
        assert!(
            text.contains("fieldsync_push_merge_seconds_count 0"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn push_timings_are_recorded_as_the_write_path_returns_them() {
        let m = Metrics::new();
        m.push_applied(Duration::from_millis(2), Duration::from_millis(5), 3);
        let text = m.render();
        assert!(
            text.contains("fieldsync_push_merge_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("fieldsync_push_commit_seconds_count 1"),
            "{text}"
        );
        assert_eq!(m.changes_merged.get(), 3);
    }

    #[test]
    fn a_request_is_in_flight_until_its_guard_drops() {
        let m = Arc::new(Metrics::new());
        let g = m.request_started();
        assert_eq!(m.in_flight(), 1);
        drop(g);
        assert_eq!(m.in_flight(), 0);
        m.request_answered("/v1/me", 200, Duration::from_millis(1));
        assert!(m.render().contains("route=\"/v1/me\""));
    }

    #[test]
    fn a_live_connection_is_counted_until_dropped() {
        let m = Arc::new(Metrics::new());
        let c = m.live_connection();
        assert_eq!(m.live_connections(), 1);
        drop(c);
        assert_eq!(m.live_connections(), 0);
    }
}
