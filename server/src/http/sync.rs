//! The sync endpoints (`/v1/sync/{push,pull,prime,repair}`), the rejection
//! ledger (`GET /v1/rejections`) and a record's audit trail
//! (`GET /v1/records/{id}/audit`). Bodies are CBOR protocol messages
//! (`fieldsync_core::protocol`, described in `docs/protocol.md`); the work is
//! done by `service::sync`. Every failure outside a per-record result answers
//! in the one JSON error shape.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fieldsync_core::protocol::{
    PrimeRequest, PullRequest, PushRequest, RepairRequest, RepairResponse,
};
use tower_http::compression::predicate::SizeAbove;
use tower_http::compression::{CompressionLayer, CompressionLevel};

use super::error::{ApiError, ErrorBody};
use super::extract::{Cbor, CborReply, MAX_BODY_BYTES};
use super::schema::CborMessage;
use crate::domain::{Caller, Error};
use crate::service::sync::{AuditEntry, RejectionRow};
use crate::service::{self, Context};

/// Answers smaller than this go uncompressed: a push's answer is a few hundred
/// bytes, where gzip saves nothing worth a core's time.
const COMPRESS_ABOVE: u16 = 1024;

/// The sync routes. Their answers are gzipped for a client that says it
/// accepts it (`accept-encoding: gzip`; the device's transport does), at
/// gzip's fastest level: a priming page of snapshots shrinks several times
/// for a few milliseconds of a core.
pub fn routes() -> Router<Arc<Context>> {
    Router::new()
        .route("/v1/sync/push", post(push))
        .route("/v1/sync/pull", post(pull))
        .route("/v1/sync/prime", post(prime))
        .route("/v1/sync/repair", post(repair))
        .route("/v1/rejections", get(rejections))
        .route("/v1/records/{id}/audit", get(audit))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(
            CompressionLayer::new()
                .quality(CompressionLevel::Fastest)
                .compress_when(SizeAbove::new(COMPRESS_ABOVE)),
        )
}

/// Pushes a batch of changes; each record is accepted or refused on its own.
#[utoipa::path(post, path = "/v1/sync/push", tag = "sync", security(("bearer" = [])),
    request_body(content = CborMessage, content_type = "application/cbor",
        description = "A CBOR `PushRequest` (docs/protocol.md)"),
    responses(
        (status = 200, description = "A CBOR `PushResponse`", body = CborMessage, content_type = "application/cbor"),
        (status = 400, description = "`invalid_message`", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token; `device_revoked`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "Not `application/cbor`", body = ErrorBody),
        (status = 426, description = "`protocol_unsupported`", body = ErrorBody),
    ))]
pub(crate) async fn push(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Cbor(req): Cbor<PushRequest>,
) -> Result<Response, ApiError> {
    // The push stamps the device's sync in its own transaction.
    let resp = service::sync::push(&ctx, &caller, &req).await?;
    tracing::debug!(batch = %req.batch, records = req.records.len(), "push");
    Ok(CborReply(resp).into_response())
}

/// One page of the change feed after the device's cursor.
#[utoipa::path(post, path = "/v1/sync/pull", tag = "sync", security(("bearer" = [])),
    request_body(content = CborMessage, content_type = "application/cbor",
        description = "A CBOR `PullRequest` (docs/protocol.md)"),
    responses(
        (status = 200, description = "A CBOR `PullResponse`", body = CborMessage, content_type = "application/cbor"),
        (status = 400, description = "`invalid_message`", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token; `device_revoked`", body = ErrorBody),
        (status = 415, description = "Not `application/cbor`", body = ErrorBody),
        (status = 426, description = "`protocol_unsupported`", body = ErrorBody),
    ))]
pub(crate) async fn pull(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Cbor(req): Cbor<PullRequest>,
) -> Result<Response, ApiError> {
    let resp = service::sync::pull(&ctx, &caller, &req).await?;
    service::analytics::record_sync(&ctx, &caller, req.health.as_ref()).await;
    Ok(CborReply(resp).into_response())
}

/// Snapshots of the records in scope, for a new device.
#[utoipa::path(post, path = "/v1/sync/prime", tag = "sync", security(("bearer" = [])),
    request_body(content = CborMessage, content_type = "application/cbor",
        description = "A CBOR `PrimeRequest` (docs/protocol.md)"),
    responses(
        (status = 200, description = "A CBOR `PrimeResponse`", body = CborMessage, content_type = "application/cbor"),
        (status = 400, description = "`invalid_message`", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token; `device_revoked`", body = ErrorBody),
        (status = 415, description = "Not `application/cbor`", body = ErrorBody),
        (status = 426, description = "`protocol_unsupported`", body = ErrorBody),
    ))]
pub(crate) async fn prime(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Cbor(req): Cbor<PrimeRequest>,
) -> Result<Response, ApiError> {
    let resp = service::sync::prime(&ctx, &caller, &req).await?;
    Ok(CborReply(resp).into_response())
}

/// Sends a record the device lost, or its missing changes.
#[utoipa::path(post, path = "/v1/sync/repair", tag = "sync", security(("bearer" = [])),
    request_body(content = CborMessage, content_type = "application/cbor",
        description = "A CBOR `RepairRequest` (docs/protocol.md)"),
    responses(
        (status = 200, description = "A CBOR `RepairResponse`", body = CborMessage, content_type = "application/cbor"),
        (status = 400, description = "`invalid_message`", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token; `device_revoked`", body = ErrorBody),
        (status = 403, description = "Out of scope or refused", body = ErrorBody),
        (status = 415, description = "Not `application/cbor`", body = ErrorBody),
        (status = 426, description = "`protocol_unsupported`", body = ErrorBody),
    ))]
pub(crate) async fn repair(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Cbor(req): Cbor<RepairRequest>,
) -> Result<Response, ApiError> {
    let message = service::sync::repair(&ctx, &caller, &req).await?;
    Ok(CborReply(RepairResponse {
        message: message.map(serde_bytes::ByteBuf::from),
    })
    .into_response())
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RejectionsQuery {
    /// Most entries to answer (newest first).
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_limit() -> u32 {
    100
}

/// `GET /v1/rejections`: the server's rejection ledger as the caller may see it.
#[utoipa::path(get, path = "/v1/rejections", tag = "sync", security(("bearer" = [])),
    params(RejectionsQuery),
    responses(
        (status = 200, description = "Ledger entries, newest first", body = Vec<RejectionRow>),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
    ))]
pub(crate) async fn rejections(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Query(q): Query<RejectionsQuery>,
) -> Result<Json<Vec<RejectionRow>>, ApiError> {
    Ok(Json(
        service::sync::rejections(&ctx, &caller, q.limit).await?,
    ))
}

/// `GET /v1/records/{id}/audit`: who changed the record, from which device,
/// when. Answers 404 for a record outside the caller's scope, as for one that
/// does not exist.
#[utoipa::path(get, path = "/v1/records/{id}/audit", tag = "sync", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Record id")),
    responses(
        (status = 200, description = "Accepted changes, oldest first", body = Vec<AuditEntry>),
        (status = 400, description = "Not a record id", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "No such record in the caller's scope", body = ErrorBody),
    ))]
pub(crate) async fn audit(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let id: fieldsync_core::RecordId = id
        .parse()
        .map_err(|_| Error::BadRequest(format!("{id:?} is not a record id")))?;
    Ok(Json(service::sync::audit(&ctx, &caller, id).await?))
}
