//! The use cases: what a device, a manager's page, the command line or the
//! server itself can ask for, each a function taking the node's [`Context`]
//! and a [`Caller`](crate::domain::Caller) and returning a
//! [`domain::Error`](crate::domain::Error) when it refuses or fails.
//!
//! Services decide with `domain` and read and write with `db`; they know
//! nothing of HTTP or HTML, so the JSON API (`http`), the managers' pages
//! (`web`), the CLI and the tests all run the same code. A service that acts
//! for a manager in a browser writes through the same push path a device uses
//! ([`sync::push_since`] with [`Caller::on_behalf`](crate::domain::Caller::on_behalf)),
//! so every rule and the audit trail apply to it too.

pub mod accounts;
pub mod analytics;
pub mod attachments;
pub mod auth;
pub mod backup;
pub mod catalogue;
pub mod conflicts;
pub mod demo;
pub mod devices;
pub mod erasure;
pub mod export;
pub mod history;
pub mod jobs;
pub mod orders;
pub mod people;
pub mod plan;
pub mod reports;
pub mod review;
pub mod signatures;
pub mod sync;
pub mod templates;
pub mod vans;
pub mod write;

use std::sync::Arc;

use crate::blob::BlobStore;
use crate::db::Database;
use crate::db::records::WriteGate;
use crate::domain::address::IpNet;
use crate::domain::scope::ScopeSettings;
use crate::limits::Limits;
use crate::live::Hub;
use crate::metrics::Metrics;
use crate::settings::{Settings, Timeouts};

/// What every use case of a node may need: the node's shared parts.
#[derive(Debug, Clone)]
pub struct Context {
    /// The central store.
    pub db: Database,
    /// How access tokens are signed and checked.
    pub keys: auth::AuthKeys,
    /// Serialises pushes on SQLite.
    pub gate: Arc<WriteGate>,
    /// Writes the pushes of each organisation in groups.
    pub committer: Arc<write::Committer>,
    /// Request and login rate limits of this node.
    pub limits: Arc<Limits>,
    /// Which dated records reach each role's devices.
    pub scope: ScopeSettings,
    /// This node's live connections and the notes they listen to.
    pub hub: Arc<Hub>,
    /// What `GET /metrics` serves; updated by the services and the request middleware.
    pub metrics: Arc<Metrics>,
    /// Where attachment bytes live (files under `<data_dir>/attachments`, or an
    /// S3-compatible bucket that several nodes share).
    pub blobs: Arc<dyn BlobStore>,
    /// Proxies whose `X-Forwarded-For` names the client (per-address limits).
    pub trusted_proxies: Arc<[IpNet]>,
    /// New devices one user may register per day (0: no limit).
    pub new_devices_per_day: u32,
    /// Whether the pages' session cookies are `Secure` with the `__Host-` prefix.
    pub secure_cookies: bool,
    /// The request and body-read timeouts the router applies.
    pub timeouts: Timeouts,
}

impl Context {
    /// The parts of a node serving `db` with `settings`: the signing keys
    /// (loaded, or created on first start), a fresh live hub, metrics and rate
    /// limits, and the blob store the settings name.
    pub async fn open(settings: &Settings, db: Database) -> anyhow::Result<Context> {
        let keys = auth::AuthKeys::load(settings, &db).await?;
        let blobs = crate::blob::open_blob_store(settings)?;
        Ok(Context {
            db,
            keys,
            gate: Arc::new(WriteGate::default()),
            committer: Arc::default(),
            limits: Arc::new(Limits::new(
                settings.requests_per_minute,
                settings.logins_per_minute,
                settings.logins_per_minute_per_address,
            )),
            scope: settings.scope,
            hub: Arc::new(Hub::with_stream_caps(
                settings.live_streams_per_device,
                settings.live_streams_per_user,
            )),
            metrics: Arc::new(Metrics::default()),
            blobs,
            trusted_proxies: settings.trusted_proxies.clone().into(),
            new_devices_per_day: settings.new_devices_per_day,
            secure_cookies: settings.web.secure_cookies,
            timeouts: settings.timeouts(),
        })
    }
}

/// Whether the database answers; names it (`sqlite` or `postgres`).
pub async fn health(ctx: &Context) -> crate::domain::Result<&'static str> {
    ctx.db.ping().await?;
    Ok(ctx.db.kind())
}
