//! The managers' web pages: server-rendered HTML (maud) under `/web`, with a
//! little progressive enhancement.
//!
//! Every page works without JavaScript: links, forms and buttons are real
//! elements, filters are a GET form, decisions are POST forms. `app.js` only
//! adds conveniences (select all, a count of selected reports, a prompt for
//! the comment a request for changes needs). The stylesheet and the script are
//! compiled into the binary and served from `/web/assets/`; pages load nothing
//! from anywhere else, and the Content-Security-Policy says so.
//!
//! Who may: managers (their team's reports) and administrators (the
//! organisation's), signed in with the same accounts as the app (see
//! [`session`]). Pages hold no rule and no SQL: they call the same services
//! as the JSON API (`service::review`, `service::reports`,
//! `service::conflicts`, `service::analytics`, `service::export`,
//! `service::jobs`, `service::people`), so a
//! decision made here is the same Automerge change made on the manager's
//! behalf as one made through the JSON API, and a refusal is the same
//! [`domain::Error`], shown as an error page ([`WebError`]).
//!
//! Pages: `/web/login`, `/web/inbox` (filters, sorting, bulk decisions),
//! `/web/reports/{id}` (the report and its decision form),
//! `/web/dashboard` (the team's figures and the fleet's sync health, with
//! CSV downloads at `/web/export/{visits,orders,jobs}.csv`),
//! `/web/jobs` and `/web/jobs/{id}` (service jobs, their assignments, close
//! and cancel forms),
//! `/web/conflicts` (the conflicts queue and its resolve forms),
//! `/web/plan` (the team's day or week; planning visits and routes, creating,
//! assigning, reassigning and cancelling jobs' assignments, reopening visits),
//! `/web/people` (people, teams, territories and the admin log, with the
//! administrators' forms), `/web/devices` (devices and browser sessions,
//! revoking one after a confirmation page),
//! `/web/orders` (the order approval queue), `/web/orders/{id}` (one order,
//! its decision and fulfilment forms), `/web/time` (time approvals),
//! `/web/templates` and `/web/templates/{id}` (checklist templates: drafts,
//! publishing, new versions, retiring),
//! `/web/attachments/{sha256}` and `.../thumbnail` (downloads and photo
//! thumbnails for the signed-in manager), `/web/catalogue` (products, price
//! lists), `/web/customers` (accounts, contacts with consent) and
//! `/web/import` (CSV import with a dry run) with CSV downloads at
//! `/web/export-csv/{kind}`, for administrators (managers read the lists).
//! `/web/erasure` (erasing a contact's or a user's personal data, with the
//! erasure log), for administrators.

mod catalogue;
pub mod chart;
mod conflicts;
mod dashboard;
mod erasure;
pub mod format;
mod inbox;
mod jobs;
mod orders;
mod people;
mod plan;
mod report;
pub mod session;
mod templates;

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};
use serde::de::DeserializeOwned;

use crate::domain::{self, ErrorKind};
use crate::service::Context;

pub use session::WebUser;

/// The stylesheet, compiled in.
const APP_CSS: &str = include_str!("assets/app.css");
/// The script, compiled in.
const APP_JS: &str = include_str!("assets/app.js");

/// Pages may load only what this server serves.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; script-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Largest form body a page accepts (a bulk decision on every report of a page).
const MAX_FORM_BYTES: usize = 64 * 1024;

/// Largest body of the Import page's forms: the CSV file, URL-encoded.
const MAX_IMPORT_FORM_BYTES: usize = 3 * crate::domain::catalogue::MAX_IMPORT_BYTES;

/// The page routes.
pub fn routes() -> Router<Arc<Context>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/web/inbox") }))
        .route("/web", get(|| async { Redirect::to("/web/inbox") }))
        .route("/web/", get(|| async { Redirect::to("/web/inbox") }))
        .route("/web/login", get(session::login_form).post(session::login))
        .route("/web/logout", post(session::logout))
        .route("/web/inbox", get(inbox::show))
        .route("/web/inbox/decisions", post(inbox::decide))
        .route("/web/reports/{id}", get(report::show))
        .route("/web/reports/{id}/decision", post(report::decide))
        .route("/web/orders", get(orders::queue))
        .route("/web/orders/{id}", get(orders::show))
        .route("/web/orders/{id}/decision", post(orders::decide))
        .route("/web/orders/{id}/fulfilment", post(orders::fulfil))
        .route("/web/time", get(orders::time))
        .route(
            "/web/time/{assignment}/{entry}/decision",
            post(orders::decide_time),
        )
        .route("/web/dashboard", get(dashboard::show))
        .route("/web/export/{file}", get(dashboard::csv))
        .route("/web/jobs", get(jobs::list))
        .route("/web/jobs/{id}", get(jobs::show))
        .route("/web/jobs/{id}/close", post(jobs::close))
        .route("/web/jobs/{id}/cancel", post(jobs::cancel))
        .route("/web/conflicts", get(conflicts::show))
        .route(
            "/web/conflicts/{record_id}/resolve",
            post(conflicts::resolve),
        )
        .route("/web/attachments/{sha256}", get(attachment))
        .route("/web/attachments/{sha256}/thumbnail", get(thumbnail))
        .route("/web/plan", get(plan::show))
        .route("/web/plan/visits", post(plan::plan_visit))
        .route("/web/plan/jobs", post(plan::create_job))
        .route("/web/plan/assignments/{id}/reassign", post(plan::reassign))
        .route("/web/plan/visits/{id}/reopen", post(plan::reopen))
        .route("/web/plan/visits/{id}/cancel", post(plan::cancel_visit))
        .route(
            "/web/plan/assignments/{id}/cancel",
            post(plan::cancel_assignment),
        )
        .route("/web/people", get(people::show))
        .route("/web/people/add", post(people::add))
        .route("/web/people/{id}/change", post(people::change))
        .route("/web/people/{id}/disable", post(people::disable))
        .route("/web/people/{id}/enable", post(people::enable))
        .route(
            "/web/people/{id}/reset-password",
            post(people::reset_password),
        )
        .route("/web/teams", post(people::add_team))
        .route("/web/teams/{id}/rename", post(people::rename_team))
        .route("/web/teams/{id}/manager", post(people::set_manager))
        .route("/web/territories", post(people::add_territory))
        .route(
            "/web/territories/{id}/rename",
            post(people::rename_territory),
        )
        .route("/web/devices", get(people::devices))
        .route(
            "/web/devices/{id}/revoke",
            get(people::confirm_revoke).post(people::revoke),
        )
        .route(
            "/web/templates",
            get(templates::list).post(templates::create),
        )
        .route(
            "/web/templates/{id}",
            get(templates::show).post(templates::edit),
        )
        .route("/web/templates/{id}/publish", post(templates::publish))
        .route("/web/templates/{id}/retire", post(templates::retire))
        .route(
            "/web/templates/{id}/new-version",
            post(templates::new_version),
        )
        .route("/web/catalogue", get(catalogue::catalogue))
        .route("/web/customers", get(catalogue::customers))
        .route("/web/admin/save/{kind}", post(catalogue::save))
        .route("/web/export-csv/{kind}", get(catalogue::export))
        .route("/web/import", get(catalogue::import_page))
        // A CSV file travels in the form (URL-encoded: room for its escaping).
        .route(
            "/web/import/check",
            post(catalogue::import_check)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_IMPORT_FORM_BYTES)),
        )
        .route(
            "/web/import/run",
            post(catalogue::import_run)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_IMPORT_FORM_BYTES)),
        )
        .route("/web/erasure", get(erasure::show))
        .route("/web/erasure/contact", post(erasure::erase_contact))
        .route("/web/erasure/user", post(erasure::erase_user))
        .route("/web/assets/app.css", get(css))
        .route("/web/assets/app.js", get(js))
        // Any other address under /web is a page that does not exist.
        .route("/web/{*rest}", axum::routing::any(not_found_page))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::map_response(page_headers))
}

/// Headers every page answer carries: nothing from elsewhere, no framing, no
/// caching of pages with team data.
async fn page_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Short: assets change with the binary and carry no version in their name.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

/// `GET /web/attachments/{sha256}`: the download the JSON API serves, for the
/// signed-in manager (same use case, same scope rule: readers of a record it
/// is attached to).
async fn attachment(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, WebError> {
    let Path(sha) = path.map_err(bad_attachment_path)?;
    let file = crate::service::attachments::download(&ctx, &web.caller, &sha).await?;
    Ok(stream_attachment(file))
}

/// `GET /web/attachments/{sha256}/thumbnail`: a photo's thumbnail for the
/// signed-in manager (same scope rule as the download).
async fn thumbnail(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, WebError> {
    let Path(sha) = path.map_err(bad_attachment_path)?;
    let thumb = crate::service::attachments::thumbnail(&ctx, &web.caller, &sha).await?;
    Ok(stream_attachment(thumb))
}

/// The answer the JSON API gives to an attachment path it cannot read.
fn bad_attachment_path(e: PathRejection) -> WebError {
    WebError::Domain(domain::Error::BadRequest(format!(
        "bad path: {}",
        e.body_text()
    )))
}

/// A stored file as a streamed answer that may be cached for good, with the
/// headers the JSON API's download carries (`page_headers` keeps its caching).
fn stream_attachment(file: crate::service::attachments::Download) -> Response {
    let content_type = HeaderValue::from_str(&file.content_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    // An error mid-way ends the body: the browser sees a short read.
    let body = axum::body::Body::from_stream(file.blob.body);
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(file.blob.len));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(crate::service::attachments::CACHE_CONTROL),
    );
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", file.etag)) {
        h.insert(header::ETAG, etag);
    }
    resp
}

/// A form body whose rejection is an error page.
#[derive(Debug)]
pub struct WebForm<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for WebForm<T> {
    type Rejection = WebError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Form::<T>::from_request(req, state)
            .await
            .map(|axum::Form(v)| WebForm(v))
            .map_err(|e| {
                WebError::Domain(domain::Error::BadRequest(format!(
                    "the form could not be read: {}",
                    e.body_text()
                )))
            })
    }
}

/// A query string whose rejection is an error page.
#[derive(Debug)]
pub struct WebQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for WebQuery<T> {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| WebQuery(v))
            .map_err(|e| {
                WebError::Domain(domain::Error::BadRequest(format!(
                    "the address could not be read: {}",
                    e.body_text()
                )))
            })
    }
}

/// What the layout shows of the signed-in user.
#[derive(Debug, Clone, Copy)]
pub struct Chrome<'a> {
    /// Their name.
    pub name: &'a str,
    /// Their role.
    pub role: &'a str,
    /// The CSRF token of the logout form.
    pub csrf: &'a str,
}

/// A whole page: skip link, header with navigation and sign-out, main content.
pub fn page(title: &str, chrome: Option<Chrome<'_>>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Fieldsync" }
                link rel="stylesheet" href="/web/assets/app.css";
                script src="/web/assets/app.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/web/inbox" { "Fieldsync" }
                    @if let Some(c) = chrome {
                        nav aria-label="Main" {
                            ul {
                                li { a href="/web/inbox" aria-current=[(title == "Review inbox").then_some("page")] { "Review inbox" } }
                                li { a href="/web/orders" aria-current=[(title == "Orders").then_some("page")] { "Orders" } }
                                li { a href="/web/time" aria-current=[(title == "Time approvals").then_some("page")] { "Time" } }
                                li { a href="/web/dashboard" aria-current=[(title == "Team dashboard").then_some("page")] { "Dashboard" } }
                                li { a href="/web/jobs" aria-current=[(title == "Service jobs" || title.starts_with("Job: ")).then_some("page")] { "Jobs" } }
                                li { a href="/web/conflicts" aria-current=[(title == "Conflicts").then_some("page")] { "Conflicts" } }
                                li { a href="/web/plan" aria-current=[(title == "Plan").then_some("page")] { "Plan" } }
                                @if c.role == "admin" || c.role == "manager" {
                                    li { a href="/web/people" aria-current=[(title == "People").then_some("page")] { "People" } }
                                    li { a href="/web/devices" aria-current=[(title == "Devices").then_some("page")] { "Devices" } }
                                    li { a href="/web/catalogue" aria-current=[(title == "Catalogue").then_some("page")] { "Catalogue" } }
                                    li { a href="/web/customers" aria-current=[(title == "Customers").then_some("page")] { "Customers" } }
                                }
                                li { a href="/web/templates" aria-current=[(title == "Checklist templates" || title.starts_with("Template: ")).then_some("page")] { "Templates" } }
                                @if c.role == "admin" {
                                    li { a href="/web/import" aria-current=[(title == "Import").then_some("page")] { "Import" } }
                                    li { a href="/web/erasure" aria-current=[(title == "Erasure").then_some("page")] { "Erasure" } }
                                }
                            }
                        }
                        div.who {
                            span { (c.name) " (" (c.role) ")" }
                            form method="post" action="/web/logout" {
                                input type="hidden" name="csrf" value=(c.csrf);
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main #main tabindex="-1" { (body) }
            }
        }
    }
}

/// Why a page could not be served.
#[derive(Debug)]
pub enum WebError {
    /// No live session: sign in (then come back to `next`).
    LoginRequired {
        /// The page to return to.
        next: Option<String>,
    },
    /// A form without this session's CSRF token.
    Csrf,
    /// A use case refused or failed: the page says why, with the status the
    /// JSON API would answer.
    Domain(domain::Error),
}

impl From<domain::Error> for WebError {
    fn from(e: domain::Error) -> Self {
        WebError::Domain(e)
    }
}

/// The status of a page that answers `kind` (the JSON API's, for the same error).
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::LoginRequired { next } => {
                let to = match next {
                    Some(n) => format!("/web/login?next={}", format::query_escape(&n)),
                    None => "/web/login".to_owned(),
                };
                Redirect::to(&to).into_response()
            }
            WebError::Csrf => error_page(
                StatusCode::FORBIDDEN,
                "This form expired",
                "The form was sent without this session's security token (it may come from \
                 an old tab or another site). Nothing was changed; open the page again and retry.",
            ),
            WebError::Domain(e) => {
                e.log_if_server_error();
                let status = status_of(e.kind());
                let title = match status {
                    StatusCode::NOT_FOUND => "Not found",
                    StatusCode::FORBIDDEN => "Not allowed",
                    StatusCode::TOO_MANY_REQUESTS => "Too many requests",
                    s if s.is_server_error() => "Something went wrong",
                    _ => "That did not work",
                };
                let message = match &e {
                    domain::Error::NotFound => {
                        "There is nothing here, or it is not in your team's records.".to_owned()
                    }
                    other => other.to_string(),
                };
                error_page(status, title, &message)
            }
        }
    }
}

/// Any address under `/web` that is no page: a page saying so (not the
/// JSON API's error), with the way back.
async fn not_found_page() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is no page at this address. It may have moved, or the link is mistyped.",
    )
}

fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = html! {
        h1 { (title) }
        p.notice.error role="alert" { (message) }
        p { a href="/web/inbox" { "Back to the inbox" } }
    };
    (status, page(title, None, body)).into_response()
}
