//! Erasure of personal data and a contact's data export, for administrators:
//! `POST /v1/admin/erase/contact/{id}`, `POST /v1/admin/erase/user/{id}`,
//! `GET /v1/admin/erasures` (the erasure log) and
//! `GET /v1/admin/export/person/{contact_id}`. What each does is
//! `service::erasure`'s (`docs/privacy.md`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use fieldsync_core::{RecordId, UserId};
use serde::Deserialize;

use super::error::{ApiError, ApiJson, ErrorBody};
use crate::domain::{Caller, Error};
use crate::service::erasure::{Erasure, ErasureEntry};
use crate::service::{self, Context};

/// The erasure routes.
pub fn routes() -> Router<Arc<Context>> {
    Router::new()
        .route("/v1/admin/erase/contact/{id}", post(erase_contact))
        .route("/v1/admin/erase/user/{id}", post(erase_user))
        .route("/v1/admin/erasures", get(log))
        .route("/v1/admin/export/person/{id}", get(export_person))
}

fn parse_id<T: std::str::FromStr>(what: &str, id: &str) -> Result<T, Error> {
    id.trim()
        .parse()
        .map_err(|_| Error::BadRequest(format!("{id:?} is not a {what} id")))
}

/// Why the data is erased.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct EraseBody {
    /// The reason, kept in the erasure log (e.g. "Art. 17 request of 3 March").
    reason: String,
}

/// Erases a contact's personal data everywhere: their record, records naming
/// them or holding one of their values (history included), photos of them and
/// signatures they drew. Devices follow at their next sync.
#[utoipa::path(post, path = "/v1/admin/erase/contact/{id}", tag = "people",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The contact's record id")),
    request_body = EraseBody,
    responses(
        (status = 200, description = "Erased", body = Erasure),
        (status = 400, description = "No reason given", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 404, description = "No such contact", body = ErrorBody),
    ))]
pub(crate) async fn erase_contact(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<EraseBody>,
) -> Result<Json<Erasure>, ApiError> {
    let id: RecordId = parse_id("contact", &id)?;
    Ok(Json(
        service::erasure::erase_contact(&ctx, &caller, id, &body.reason).await?,
    ))
}

/// Erases a user's personal data (a rep who left): their GPS fixes and their
/// name in texts; the account stays, pseudonymised and disabled.
#[utoipa::path(post, path = "/v1/admin/erase/user/{id}", tag = "people",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The user's id")),
    request_body = EraseBody,
    responses(
        (status = 200, description = "Erased", body = Erasure),
        (status = 400, description = "No reason given", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    ))]
pub(crate) async fn erase_user(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<EraseBody>,
) -> Result<Json<Erasure>, ApiError> {
    let id: UserId = parse_id("user", &id)?;
    Ok(Json(
        service::erasure::erase_user(&ctx, &caller, id, &body.reason).await?,
    ))
}

/// The erasure log, newest first: who erased whose data, when, why, which
/// records (never a value).
#[utoipa::path(get, path = "/v1/admin/erasures", tag = "people", security(("bearer" = [])),
    responses(
        (status = 200, description = "The erasures", body = Vec<ErasureEntry>),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
    ))]
pub(crate) async fn log(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
) -> Result<Json<Vec<ErasureEntry>>, ApiError> {
    Ok(Json(service::erasure::log(&ctx, &caller, 200).await?))
}

/// Everything held about one contact (GDPR Art. 15), as JSON: their record,
/// the past values of their fields, the records naming them and the
/// attachments linked to them.
#[utoipa::path(get, path = "/v1/admin/export/person/{id}", tag = "people",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The contact's record id")),
    responses(
        (status = 200, description = "The export", body = Object),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 404, description = "No such contact", body = ErrorBody),
    ))]
pub(crate) async fn export_person(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id: RecordId = parse_id("contact", &id)?;
    Ok(Json(
        service::erasure::export_contact(&ctx, &caller, id).await?,
    ))
}
