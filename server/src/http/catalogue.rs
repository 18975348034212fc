//! The catalogue and the customers as a JSON API, for administrators (managers
//! read): products, price lists, accounts and contacts listed and searched,
//! one record saved from the columns of its CSV file, bulk CSV import (with a
//! dry run) and export. The work is `service::catalogue`'s; the Catalogue,
//! Customers and Import pages and `fieldsync import|export` call the same
//! functions.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiJson, ErrorBody};
use crate::domain::Caller;
use crate::domain::catalogue::{ImportKind, MAX_IMPORT_BYTES};
use crate::service::catalogue::{
    AccountView, ContactView, ImportReport, PriceListView, ProductView,
};
use crate::service::{self, Context};

/// The catalogue and customer routes.
pub fn routes() -> Router<Arc<Context>> {
    Router::new()
        .route("/v1/catalogue/products", get(products))
        .route("/v1/catalogue/price-lists", get(price_lists))
        .route("/v1/customers/accounts", get(accounts))
        .route("/v1/customers/contacts", get(contacts))
        .route("/v1/admin/records/{kind}", post(save))
        .route(
            "/v1/admin/import/{kind}",
            // The CSV travels inside JSON: room for the file and its escaping.
            post(import).layer(axum::extract::DefaultBodyLimit::max(2 * MAX_IMPORT_BYTES)),
        )
        .route("/v1/admin/export/{kind}", get(export))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Search {
    /// Only what contains this text (SKU, code, name, email).
    #[serde(default)]
    q: Option<String>,
}

/// `GET /v1/catalogue/products?q=oil`: products by SKU.
#[utoipa::path(get, path = "/v1/catalogue/products", tag = "catalogue", security(("bearer" = [])),
    params(Search),
    responses(
        (status = 200, description = "Products (at most 500)", body = [ProductView]),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
    ))]
pub(crate) async fn products(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Query(s): Query<Search>,
) -> Result<Json<Vec<ProductView>>, ApiError> {
    Ok(Json(
        service::catalogue::products(&ctx, &caller, s.q.as_deref()).await?,
    ))
}

/// `GET /v1/catalogue/price-lists`: price lists with their items.
#[utoipa::path(get, path = "/v1/catalogue/price-lists", tag = "catalogue", security(("bearer" = [])),
    responses(
        (status = 200, description = "Price lists", body = [PriceListView]),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
    ))]
pub(crate) async fn price_lists(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
) -> Result<Json<Vec<PriceListView>>, ApiError> {
    Ok(Json(service::catalogue::price_lists(&ctx, &caller).await?))
}

/// `GET /v1/customers/accounts?q=lisboa`: accounts by name, with their sites.
#[utoipa::path(get, path = "/v1/customers/accounts", tag = "catalogue", security(("bearer" = [])),
    params(Search),
    responses(
        (status = 200, description = "Accounts (at most 500)", body = [AccountView]),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
    ))]
pub(crate) async fn accounts(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Query(s): Query<Search>,
) -> Result<Json<Vec<AccountView>>, ApiError> {
    Ok(Json(
        service::catalogue::accounts(&ctx, &caller, s.q.as_deref()).await?,
    ))
}

/// `GET /v1/customers/contacts?q=rui`: contacts with their consent.
#[utoipa::path(get, path = "/v1/customers/contacts", tag = "catalogue", security(("bearer" = [])),
    params(Search),
    responses(
        (status = 200, description = "Contacts (at most 500)", body = [ContactView]),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
    ))]
pub(crate) async fn contacts(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Query(s): Query<Search>,
) -> Result<Json<Vec<ContactView>>, ApiError> {
    Ok(Json(
        service::catalogue::contacts(&ctx, &caller, s.q.as_deref()).await?,
    ))
}

/// What a save made.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Saved {
    /// The record's id.
    pub id: String,
}

/// `POST /v1/admin/records/{kind}`: saves one product, price-list item,
/// account or contact from the columns of its CSV file (`{"sku": "OLV-500",
/// "name": "Olive oil"}`), matched by its natural key like an import row.
#[utoipa::path(post, path = "/v1/admin/records/{kind}", tag = "catalogue", security(("bearer" = [])),
    params(("kind" = String, Path, description = "accounts, contacts, products or price-list")),
    request_body = BTreeMap<String, String>,
    responses(
        (status = 200, description = "Saved; devices of its territory get it with their next sync", body = Saved),
        (status = 400, description = "A column's value is wrong (the message says which)", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
    ))]
pub(crate) async fn save(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(kind): Path<String>,
    ApiJson(cells): ApiJson<BTreeMap<String, String>>,
) -> Result<Json<Saved>, ApiError> {
    let kind: ImportKind = kind.parse()?;
    let id = service::catalogue::save(&ctx, &caller, kind, &cells).await?;
    Ok(Json(Saved { id: id.to_string() }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct ImportBody {
    /// The CSV file's text (UTF-8, header line first; at most 4 MiB).
    csv: String,
    /// Only check: list every error, write nothing.
    #[serde(default)]
    dry_run: bool,
}

/// `POST /v1/admin/import/{kind}`: checks a CSV file and, unless `dry_run`,
/// imports it all or nothing. A file with errors answers 422 with the report
/// listing every error by line and column; nothing was written.
#[utoipa::path(post, path = "/v1/admin/import/{kind}", tag = "catalogue", security(("bearer" = [])),
    params(("kind" = String, Path, description = "accounts, contacts, products or price-list")),
    request_body = ImportBody,
    responses(
        (status = 200, description = "Checked (dry run) or imported", body = ImportReport),
        (status = 400, description = "Not a kind of import", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 413, description = "The body is over the limit", body = ErrorBody),
        (status = 422, description = "The file has errors; nothing was written", body = ImportReport),
    ))]
pub(crate) async fn import(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(kind): Path<String>,
    ApiJson(body): ApiJson<ImportBody>,
) -> Result<Response, ApiError> {
    let kind: ImportKind = kind.parse()?;
    let report =
        service::catalogue::import(&ctx, &caller, kind, body.csv.as_bytes(), body.dry_run).await?;
    let status = if report.ok {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((status, Json(report)).into_response())
}

/// `GET /v1/admin/export/{kind}`: the records as the CSV file an import reads.
#[utoipa::path(get, path = "/v1/admin/export/{kind}", tag = "catalogue", security(("bearer" = [])),
    params(("kind" = String, Path, description = "accounts, contacts, products or price-list")),
    responses(
        (status = 200, description = "The CSV file", content_type = "text/csv"),
        (status = 400, description = "Not a kind of export", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
    ))]
pub(crate) async fn export(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(kind): Path<String>,
) -> Result<Response, ApiError> {
    let kind: ImportKind = kind.parse()?;
    let csv = service::catalogue::export(&ctx, &caller, kind).await?;
    Ok(csv_response(kind, csv))
}

/// A CSV download named after its kind.
pub fn csv_response(kind: ImportKind, csv: Vec<u8>) -> Response {
    let mut resp = csv.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}.csv\"", kind.as_str()))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}
