//! What an operator sees of a running node: `GET /metrics` in the OpenMetrics
//! text format (which Prometheus scrapes), and one structured log line per
//! request with its request id.
//!
//! **What is measured.** One [`Metrics`] per node, shared by the handlers
//! through `AppState`. Counters and histograms are updated at a few points:
//! [`track`] (every request: count, latency and in-flight requests by route
//! template), the sync handlers ([`Metrics::pushed`], [`Metrics::pulled`],
//! [`Metrics::primed`]), and `store::push` (merge and commit time, changes
//! merged) through [`measure_push`]. The live-update channel sets
//! [`Metrics::live_connection`] and [`Metrics::observe_feed_lag`].
//!
//! **Labels stay bounded.** A route label is the matched route template
//! (`/v1/records/{id}/audit`), never the raw path, and `unmatched` for paths no
//! route knows; a rejection label is a protocol reject code. No label ever
//! holds an id, an email or anything a client typed, so the number of series
//! is fixed by the code, not by traffic.
//!
//! **Logs.** [`track`] opens a `request` span with the request id (the
//! client's `x-request-id` if it is a short token, else a new UUID, echoed in
//! the answer), method and route; `AuthUser` adds the device and user ids.
//! Nothing else is put in the span: no query string, no body, no header
//! values. The line logged when the answer leaves carries the status and the
//! latency.
//!
//! **Why a task-local for the push timings.** `store::push` is called by the
//! sync handler, the demo seeder and the benchmark; only the handler has the
//! node's metrics. Rather than widen `store::push`'s signature for every
//! caller, the handler runs it inside [`measure_push`], which makes the
//! metrics reachable from inside the store for that one call. Outside it the
//! store's observations are dropped.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fieldsync_core::protocol::{PushOutcome, PushResponse};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing::Instrument;

use crate::AppState;

/// The header that carries a request's id, in and out.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The content type of `GET /metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The route label of a request that matched no route.
const UNMATCHED: &str = "unmatched";

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
    changes_merged: Counter,
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
            changes_merged: Counter::default(),
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
            "fieldsync_changes_merged",
            "Changes merged into the store and appended to the change log",
            m.changes_merged.clone(),
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

tokio::task_local! {
    /// The node's metrics while a push handler runs `store::push`.
    static PUSH_METRICS: Arc<Metrics>;
}

/// Runs `push` (a `store::push` call) with `metrics` reachable from inside the
/// store, so [`push_merged`] and [`push_committed`] record into them.
pub async fn measure_push<F: Future>(metrics: Arc<Metrics>, push: F) -> F::Output {
    PUSH_METRICS.scope(metrics, push).await
}

/// Called by the store when a push's merges are done (before its inserts);
/// returns the start of the commit part.
pub fn push_merged(merge_started: Instant) -> Instant {
    let now = Instant::now();
    let _ = PUSH_METRICS.try_with(|m| {
        m.push_merge_seconds
            .observe(now.duration_since(merge_started).as_secs_f64())
    });
    now
}

/// Called by the store once a push committed `changes` new changes.
pub fn push_committed(commit_started: Instant, changes: usize) {
    let secs = commit_started.elapsed().as_secs_f64();
    let _ = PUSH_METRICS.try_with(|m| {
        m.push_commit_seconds.observe(secs);
        m.changes_merged.inc_by(changes as u64);
    });
}

/// `GET /metrics`. Unauthenticated: operators keep it off the public
/// listener (docs/operations.md).
pub async fn serve(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

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

/// Takes a request out of the in-flight count however it ends, including
/// when the client goes away and the handler is dropped.
struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
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
    metrics.in_flight.inc();
    let guard = InFlight(&metrics.in_flight);
    let mut resp = next.run(req).instrument(span.clone()).await;
    drop(guard);

    let status = resp.status();
    let elapsed = started.elapsed();
    metrics
        .http_requests
        .get_or_create(&RouteStatusLabels {
            route: route.clone(),
            status: status.as_u16(),
        })
        .inc();
    metrics
        .http_seconds
        .get_or_create(&RouteLabel {
            route: route.clone(),
        })
        .observe(elapsed.as_secs_f64());
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

    #[tokio::test]
    async fn push_timings_are_recorded_only_inside_measure_push() {
        let m = Arc::new(Metrics::new());
        push_committed(push_merged(Instant::now()), 3);
        assert!(m.render().contains("fieldsync_push_commit_seconds_count 0"));
        measure_push(m.clone(), async {
            push_committed(push_merged(Instant::now()), 3);
        })
        .await;
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
    fn a_live_connection_is_counted_until_dropped() {
        let m = Arc::new(Metrics::new());
        let c = m.live_connection();
        assert_eq!(m.live_connections(), 1);
        drop(c);
        assert_eq!(m.live_connections(), 0);
    }
}
