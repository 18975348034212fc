//! Van stock for the back office as a JSON API: a technician's van with its
//! balances, and a replenishment. The work is `service::vans`'s; the CLI
//! (`fieldsync van replenish`) calls the same function.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use fieldsync_core::UserId;
use serde::Deserialize;

use super::error::{ApiError, ApiJson, ErrorBody};
use crate::domain::review::parse_record_id;
use crate::domain::vans::VanView;
use crate::domain::{Caller, Error};
use crate::service::vans::NewReplenishment;
use crate::service::{self, Context};

/// The van routes.
pub fn routes() -> Router<Arc<Context>> {
    Router::new()
        .route("/v1/technicians/{id}/van", get(van))
        .route("/v1/technicians/{id}/van/replenish", post(replenish))
}

fn technician(id: &str) -> Result<UserId, Error> {
    id.parse()
        .map_err(|_| Error::BadRequest(format!("{id:?} is not a user id")))
}

/// `GET /v1/technicians/{id}/van`: the technician's van with its balance per
/// product; a negative quantity or an unknown serial is a part used from an
/// empty van, to reconcile.
#[utoipa::path(get, path = "/v1/technicians/{id}/van", tag = "vans", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The technician's user id")),
    responses(
        (status = 200, description = "The van and its balances", body = VanView),
        (status = 400, description = "Not a user id", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
        (status = 404, description = "No van for this technician in the caller's scope", body = ErrorBody),
    ))]
pub(crate) async fn van(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<VanView>, ApiError> {
    Ok(Json(
        service::vans::van(&ctx, &caller, technician(&id)?).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct ReplenishBody {
    /// The product (a record id).
    #[schema(value_type = uuid::Uuid)]
    product_id: String,
    /// The quantity, up to four decimals (`"2"`, `"1.5"`); negative takes
    /// parts out (a correction, a return to the warehouse).
    qty: String,
    /// The serial numbers of a serialized part, one per unit.
    #[serde(default)]
    serials: Vec<String>,
    /// A note for the technician (delivery number, reason).
    #[serde(default)]
    note: Option<String>,
}

/// `POST /v1/technicians/{id}/van/replenish`: puts parts in the technician's
/// van on the caller's behalf (the first one creates the van); the
/// technician's device gets it with its next sync.
#[utoipa::path(post, path = "/v1/technicians/{id}/van/replenish", tag = "vans", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The technician's user id")),
    request_body = ReplenishBody,
    responses(
        (status = 200, description = "The van after the replenishment", body = VanView),
        (status = 400, description = "Bad id or quantity, serials that do not match the product, not a technician", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
        (status = 404, description = "No such technician or product in the caller's scope", body = ErrorBody),
    ))]
pub(crate) async fn replenish(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReplenishBody>,
) -> Result<Json<VanView>, ApiError> {
    let new = NewReplenishment {
        product: parse_record_id(&body.product_id)?,
        qty: body.qty,
        serials: body.serials,
        note: body.note,
    };
    Ok(Json(
        service::vans::replenish(&ctx, &caller, technician(&id)?, new).await?,
    ))
}
