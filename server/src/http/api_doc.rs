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
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, ErrorDetail};

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
            devices, the managers' review API and the back office's jobs. Every error answers `{\"error\": {\"code\", \"message\"}}`."
    ),
    modifiers(&BearerAuth),
    paths(
        super::meta::healthz,
        super::auth::login,
        super::auth::refresh,
        super::auth::me,
        super::sync::push,
        super::sync::pull,
        super::sync::prime,
        super::sync::repair,
        super::sync::rejections,
        super::sync::audit,
        super::live::live,
        super::devices::list,
        super::devices::revoke,
        super::users::disable,
        super::people::list,
        super::people::add,
        super::people::update,
        super::people::disable,
        super::people::enable,
        super::people::reset_password,
        super::people::teams,
        super::people::add_team,
        super::people::rename_team,
        super::people::set_manager,
        super::people::territories,
        super::people::add_territory,
        super::people::rename_territory,
        super::people::devices,
        super::people::log,
        super::erasure::erase_contact,
        super::erasure::erase_user,
        super::erasure::log,
        super::erasure::export_person,
        super::attachments::declare,
        super::attachments::put_chunk,
        super::attachments::complete,
        super::attachments::download,
        super::attachments::thumbnail_of,
        super::review::inbox,
        super::review::detail,
        super::review::decide_one,
        super::review::decide_many,
        super::orders::queue,
        super::orders::one,
        super::orders::decide,
        super::orders::fulfil,
        super::orders::time_queue,
        super::orders::decide_time,
        super::figures::serve_dashboard,
        super::conflicts::serve_list,
        super::conflicts::serve_resolve,
        super::export::visits_csv,
        super::export::orders_csv,
        super::export::jobs_csv,
        super::plan::view,
        super::plan::plan_visits,
        super::plan::create_job,
        super::plan::assign,
        super::plan::reassign,
        super::plan::cancel_assignment,
        super::plan::cancel_visit,
        super::plan::reopen,
        super::jobs::list,
        super::jobs::detail,
        super::jobs::close,
        super::jobs::cancel,
        super::templates::list,
        super::templates::one,
        super::templates::create,
        super::templates::edit,
        super::templates::publish,
        super::templates::retire,
        super::templates::new_version,
        super::vans::van,
        super::vans::replenish,
        super::catalogue::products,
        super::catalogue::price_lists,
        super::catalogue::accounts,
        super::catalogue::contacts,
        super::catalogue::save,
        super::catalogue::import,
        super::catalogue::export,
        openapi_json,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    tags(
        (name = "auth", description = "Signing in devices and refreshing tokens"),
        (name = "sync", description = "Push, pull, prime, repair, the live channel, the ledgers"),
        (name = "devices", description = "Listing and revoking devices"),
        (name = "users", description = "Disabling accounts"),
        (name = "people", description = "Administration: people, teams, territories, the devices list, the admin log, erasure of personal data and a contact's data export"),
        (name = "attachments", description = "Resumable, chunked uploads and scope-checked downloads"),
        (name = "review", description = "Managers' review of visit reports"),
        (name = "plan", description = "Planning visits, dispatching jobs, reopening visits"),
        (name = "orders", description = "The office's side of orders (approval, fulfilment) and time-entry approval"),
        (name = "jobs", description = "Service jobs in the back office: list, close, cancel"),
        (name = "templates", description = "Checklist templates: drafts, publishing, versions"),
        (name = "vans", description = "Technicians' van stock: balances and replenishment"),
        (name = "figures", description = "Team dashboard, fleet sync health, conflicts queue, CSV export"),
        (name = "catalogue", description = "Products, price lists, accounts and contacts: lists, saves, CSV import and export"),
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
pub(super) async fn openapi_json() -> impl IntoResponse {
    Json(openapi())
}
