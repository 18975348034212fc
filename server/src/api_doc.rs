//! The OpenAPI description of the server's HTTP API, served at
//! `GET /v1/openapi.json`.
//!
//! It is generated from the handlers and types themselves (`#[utoipa::path]` on
//! each handler, `ToSchema` on each body), so it changes with the code. A test
//! (`server/tests/openapi.rs`) checks that every route the router serves is
//! described here and that every described route is served. The sync messages
//! are CBOR and described in `docs/protocol.md`; here they appear as binary
//! bodies with their message names.

use axum::Json;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// Every error answer: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code (`invalid_token`, `not_found`, ...).
    #[schema(example = "not_found")]
    pub code: String,
    /// A sentence for people.
    pub message: String,
}

/// A CBOR-encoded sync message (docs/protocol.md).
#[derive(Debug, ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct CborMessage(pub Vec<u8>);

/// Raw bytes.
#[derive(Debug, ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Binary(pub Vec<u8>);

/// A JSON object whose fields are listed in the operation's description.
#[derive(Debug, ToSchema)]
#[schema(value_type = Object)]
pub struct JsonObject(pub serde_json::Value);

/// A stored chunk.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChunkStored {
    /// The attachment.
    pub sha256: String,
    /// The chunk's index.
    pub idx: u32,
    /// Its size in bytes.
    pub size: u64,
}

/// An attachment stored whole and verified.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadComplete {
    /// The attachment.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// Always true.
    pub complete: bool,
}

/// What `GET /healthz` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// The server's version.
    pub version: String,
    /// `sqlite` or `postgres`.
    pub database: String,
}

/// The access token as a bearer scheme.
#[derive(Debug)]
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "The access token from `POST /v1/auth/login` or `/v1/auth/refresh`",
                    ))
                    .build(),
            ),
        );
    }
}

/// The API description.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Fieldsync server API",
        description = "Sign-in, sync (CBOR, docs/protocol.md), live notifications, attachments, \
            devices and the managers' review API. Every error answers `{\"error\": {\"code\", \"message\"}}`."
    ),
    modifiers(&BearerAuth),
    paths(
        crate::healthz,
        crate::auth::login,
        crate::auth::refresh,
        crate::auth::me,
        crate::sync::push,
        crate::sync::pull,
        crate::sync::prime,
        crate::sync::repair,
        crate::sync::rejections,
        crate::sync::audit,
        crate::live::live,
        crate::devices::list,
        crate::devices::revoke,
        crate::attachments::declare,
        crate::attachments::put_chunk,
        crate::attachments::complete,
        crate::attachments::download,
        crate::attachments::thumbnail_of,
        crate::review::inbox,
        crate::review::detail,
        crate::review::decide_one,
        crate::review::decide_many,
        crate::analytics::serve_dashboard,
        crate::conflicts::serve_list,
        crate::conflicts::serve_resolve,
        crate::export::visits_csv,
        crate::export::orders_csv,
        crate::export::jobs_csv,
        openapi_json,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    tags(
        (name = "auth", description = "Signing in devices and refreshing tokens"),
        (name = "sync", description = "Push, pull, prime, repair, the live channel, the ledgers"),
        (name = "devices", description = "Listing and revoking devices"),
        (name = "attachments", description = "Resumable, chunked uploads and scope-checked downloads"),
        (name = "review", description = "Managers' review of visit reports"),
        (name = "figures", description = "Team dashboard, fleet sync health, conflicts queue, CSV export"),
        (name = "meta", description = "Health and this description"),
    )
)]
pub struct ApiDoc;

/// The description as served.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// `GET /v1/openapi.json`: this API's OpenAPI 3.1 description. Public, like the
/// API's shape; every operation says whether it needs a token.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI description", content_type = "application/json")))]
pub(crate) async fn openapi_json() -> impl IntoResponse {
    Json(openapi())
}
