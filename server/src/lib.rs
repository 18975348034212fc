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

pub mod accounts;
pub mod analytics;
pub mod api_doc;
pub mod attachments;
pub mod auth;
pub mod conflicts;
pub mod db;
pub mod demo;
pub mod devices;
pub mod error;
pub mod export;
pub mod limits;
pub mod live;
pub mod metrics;
pub mod reports;
pub mod review;
pub mod scope;
pub mod settings;
pub mod signatures;
pub mod store;
pub mod sync;
pub mod web;

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub use accounts::AccountError;
pub use auth::{AuthKeys, AuthUser};
pub use db::{Database, DbError};
pub use error::{ApiError, ApiJson};
pub use settings::{Settings, SettingsArgs, SettingsError};

/// Shared state of the HTTP handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The central store.
    pub db: Database,
    /// How access tokens are signed and checked.
    pub keys: AuthKeys,
    /// Serialises pushes on SQLite.
    pub gate: Arc<store::WriteGate>,
    /// Request and login rate limits of this node.
    pub limits: Arc<limits::Limits>,
    /// Which dated records reach each role's devices.
    pub scope: scope::ScopeSettings,
    /// This node's live connections and the notes they listen to.
    pub hub: Arc<live::Hub>,
    /// What `GET /metrics` serves; updated by the handlers and the request middleware.
    pub metrics: Arc<metrics::Metrics>,
    /// Where attachment bytes live (files under `<data_dir>/attachments`, or an
    /// S3-compatible bucket that several nodes share).
    pub blobs: Arc<dyn attachments::BlobStore>,
}

/// The HTTP routes.
pub fn router(state: Arc<AppState>) -> Router {
    let tracked = axum::middleware::from_fn_with_state(state.metrics.clone(), metrics::track);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::serve))
        .route("/v1/openapi.json", get(api_doc::openapi_json))
        .merge(auth::routes())
        .merge(sync::routes())
        .merge(devices::routes())
        .merge(live::routes())
        .merge(review::routes())
        .merge(attachments::routes())
        .merge(analytics::routes())
        .merge(conflicts::routes())
        .merge(export::routes())
        .merge(web::routes())
        .fallback(|| async { ApiError::NotFound })
        // Last, so it wraps every route and the fallback (and sees the matched route).
        .layer(tracked)
        .with_state(state)
}

/// `GET /healthz`: 200 when the database answers, 503 when it does not.
#[utoipa::path(get, path = "/healthz", tag = "meta",
    responses(
        (status = 200, description = "The database answers", body = api_doc::Health),
        (status = 503, description = "`database_unavailable`", body = api_doc::ErrorBody),
    ))]
pub(crate) async fn healthz(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    state.db.ping().await.map_err(ApiError::Unavailable)?;
    Ok(Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "database": state.db.kind(),
    })))
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
    let filled = analytics::backfill(&db).await?;
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
    let keys = AuthKeys::load(&settings, &db).await?;
    let blobs = attachments::open_blob_store(&settings)?;
    let hub = Arc::new(live::Hub::default());
    let state = Arc::new(AppState {
        db: db.clone(),
        keys,
        gate: Arc::new(store::WriteGate::with_hub(hub.clone())),
        limits: Arc::new(limits::Limits::new(
            settings.requests_per_minute,
            settings.logins_per_minute,
        )),
        scope: settings.scope,
        hub: hub.clone(),
        metrics: Arc::new(metrics::Metrics::default()),
        blobs: blobs.clone(),
    });
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
            let mut tick =
                tokio::time::interval(std::time::Duration::from_secs(auth::KEY_RELOAD_SECS));
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
        tokio::spawn(attachments::clean_periodically(
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
    axum::serve(tcp, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    stop_listener.send_replace(true);
    let _ = listener.await;
    reloader.abort();
    if let Some(cleaner) = cleaner {
        cleaner.abort();
    }
    db.close().await;
    tracing::info!("fieldsync stopped");
    Ok(())
}
