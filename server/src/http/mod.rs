//! The JSON and CBOR API over HTTP: axum only.
//!
//! Each route group is a file whose handlers take an extractor or two (the
//! [`Caller`](crate::domain::Caller) built from the access token, a JSON or
//! CBOR body), call one use case in `service`, and turn its answer or its
//! [`domain::Error`](crate::domain::Error) into a response through the one
//! [`ApiError`]. No handler holds a rule or a SQL statement; the managers'
//! pages (`web`) call the same services, never these handlers.
//!
//! [`api_doc`] is the OpenAPI description generated from the handlers; only
//! this module imports it (to serve it).

mod api_doc;
pub mod attachments;
pub mod auth;
pub mod catalogue;
pub mod conflicts;
pub mod devices;
mod direct;
pub mod erasure;
pub mod error;
pub mod export;
pub mod extract;
pub mod figures;
pub mod jobs;
pub mod live;
pub mod meta;
pub mod orders;
pub mod people;
pub mod plan;
pub mod review;
pub mod schema;
pub mod serve;
pub mod sync;
pub mod templates;
pub mod track;
pub mod users;
pub mod vans;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

pub use api_doc::openapi;
pub use error::{ApiError, ApiJson};

use crate::service::Context;

/// The API's routes (the managers' pages are merged in by the crate root).
pub fn router() -> Router<Arc<Context>> {
    Router::new()
        .route("/healthz", get(meta::healthz))
        .route("/metrics", get(meta::metrics))
        .route("/v1/openapi.json", get(api_doc::openapi_json))
        .merge(auth::routes())
        .merge(sync::routes())
        .merge(devices::routes())
        .merge(users::routes())
        .merge(people::routes())
        .merge(live::routes())
        .merge(review::routes())
        .merge(orders::routes())
        .merge(attachments::routes())
        .merge(figures::routes())
        .merge(conflicts::routes())
        .merge(export::routes())
        .merge(plan::routes())
        .merge(jobs::routes())
        .merge(templates::routes())
        .merge(vans::routes())
        .merge(catalogue::routes())
        .merge(erasure::routes())
}
