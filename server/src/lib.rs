//! # fieldsync-server
//!
//! The Fieldsync server: it authenticates devices, enforces who may read and
//! write what, merges changes into the central store and serves the managers'
//! pages. This crate's library is what the `fieldsync` binary runs and what the
//! tests run in-process on a loopback port.
//!
//! [`launch_with_tcp_listener`] is the one entry point: it takes settings, an
//! already bound listener (port 0 in tests) and a shutdown future, so a test runs
//! exactly the production router.

pub mod blob;
pub mod db;
pub mod domain;
pub mod http;
pub mod limits;
pub mod live;
pub mod metrics;
pub mod service;
pub mod settings;
pub mod web;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

pub use db::{Database, DbError};
pub use domain::{Caller, Error};
pub use http::{ApiError, ApiJson};
pub use service::Context;
pub use service::auth::AuthKeys;
pub use settings::{Settings, SettingsArgs, SettingsError};

/// Every route the node serves: the API, the managers' pages, the fallback,
/// and the request middleware around all of them.
pub fn router(ctx: Arc<Context>) -> Router {
    let tracked = axum::middleware::from_fn_with_state(ctx.metrics.clone(), http::track::track);
    let timed = axum::middleware::from_fn_with_state(ctx.timeouts, http::serve::limit_request);
    http::router()
        .merge(web::routes())
        .fallback(|| async { http::error::not_found() })
        // Inside the tracking, so a request cut by its timeout is counted and logged.
        .layer(timed)
        // Last, so it wraps every route and the fallback (and sees the matched route).
        .layer(tracked)
        .with_state(ctx)
}

/// Opens the database (creating the data directory for SQLite) and applies migrations.
pub async fn open_database(settings: &Settings) -> anyhow::Result<Database> {
    if settings.database_url.is_none() {
        std::fs::create_dir_all(&settings.data_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the data directory {}: {e}",
                settings.data_dir.display()
            )
        })?;
    }
    let db = Database::connect(&settings.database_url(), settings.db_max_connections).await?;
    db.migrate().await?;
    // Figures for records stored before the dashboard's table existed.
    let filled = service::analytics::backfill(&db).await?;
    if filled > 0 {
        tracing::info!(
            records = filled,
            "filled the dashboard figures of older records"
        );
    }
    Ok(db)
}

/// Serves on `listener` until `shutdown` completes, then finishes in-flight
/// requests and closes the database pool.
pub async fn launch_with_tcp_listener(
    settings: Settings,
    tcp: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let db = open_database(&settings).await?;
    let addr = tcp.local_addr()?;
    tracing::info!(
        %addr,
        database = db.kind(),
        url = %settings::redact(&settings.database_url()),
        "fieldsync listening on http://{addr}"
    );
    let state = Arc::new(Context::open(&settings, db.clone()).await?);
    let (hub, blobs) = (state.hub.clone(), state.blobs.clone());
    // PostgreSQL: every node hears every node's commits.
    let (stop_listener, listener_stopped) = tokio::sync::watch::channel(false);
    let listener = tokio::spawn(live::listen_postgres(
        db.clone(),
        hub.clone(),
        state.metrics.clone(),
        listener_stopped,
    ));
    // Picks up keys rotated by `fieldsync keys rotate` (on any node).
    let reloader = {
        let (keys, db) = (state.keys.clone(), db.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(
                service::auth::KEY_RELOAD_SECS,
            ));
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = keys.reload(&db).await {
                    tracing::warn!(error = %e, "could not reload the signing keys");
                }
            }
        })
    };
    // Removes uploads nobody finished (every node; each upload goes once).
    let cleaner = (settings.attachments.cleanup_interval_secs > 0).then(|| {
        tokio::spawn(service::attachments::clean_periodically(
            db.clone(),
            blobs,
            std::time::Duration::from_secs(
                settings
                    .attachments
                    .abandoned_after_hours
                    .saturating_mul(3600),
            ),
            std::time::Duration::from_secs(settings.attachments.cleanup_interval_secs),
        ))
    });
    // On shutdown, live connections end with a reconnect hint first, then axum
    // stops accepting and waits for the requests being served.
    let shutdown = {
        let metrics = state.metrics.clone();
        let closing_hub = hub.clone();
        async move {
            shutdown.await;
            let n = metrics.in_flight();
            let live = metrics.live_connections();
            tracing::info!(
                in_flight = n,
                live,
                "shutting down: finishing {n} in-flight requests, closing {live} live connections"
            );
            closing_hub.close();
        }
    };
    // Removes ended browser sessions and their devices (every node; each row goes once).
    let web_cleaner = (settings.web.cleanup_interval_secs > 0).then(|| {
        tokio::spawn(service::auth::clean_web_sessions_periodically(
            db.clone(),
            std::time::Duration::from_secs(settings.web.cleanup_interval_secs),
        ))
    });
    // Marks planned visits nobody started as missed (every node; a visit
    // already marked by another node is skipped).
    let missed = (settings.visits.missed_check_interval_secs > 0).then(|| {
        tokio::spawn(service::plan::mark_missed_periodically(
            state.clone(),
            std::time::Duration::from_secs(settings.visits.missed_after_minutes.saturating_mul(60)),
            std::time::Duration::from_secs(settings.visits.missed_check_interval_secs),
        ))
    });
    // Rolls up jobs whose roll-up was missed (every node; see service::jobs).
    let job_sweeper = (settings.jobs.sweep_interval_secs > 0).then(|| {
        tokio::spawn(service::jobs::sweep_periodically(
            state.clone(),
            std::time::Duration::from_secs(settings.jobs.sweep_interval_secs),
        ))
    });
    let timeouts = state.timeouts;
    http::serve::serve(tcp, router(state), timeouts, shutdown).await?;
    stop_listener.send_replace(true);
    let _ = listener.await;
    reloader.abort();
    for task in [cleaner, web_cleaner, missed, job_sweeper]
        .into_iter()
        .flatten()
    {
        task.abort();
    }
    db.close().await;
    tracing::info!("fieldsync stopped");
    Ok(())
}
