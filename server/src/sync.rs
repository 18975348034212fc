//! The sync endpoints (`/v1/sync/{push,pull,prime,repair}`), the rejection
//! ledger (`GET /v1/rejections`) and a record's audit trail
//! (`GET /v1/records/{id}/audit`). Bodies are CBOR protocol messages
//! (`fieldsync_core::protocol`, described in `docs/protocol.md`); the work is
//! done by [`crate::store`]. Every failure outside a per-record result answers
//! in the one JSON error shape.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fieldsync_core::model::Actor;
use fieldsync_core::protocol::{
    self, CONTENT_TYPE, PROTOCOL_HEADER, PrimeRequest, PullRequest, PushRequest, RepairRequest,
    RepairResponse,
};
use serde::{Serialize, de::DeserializeOwned};

use crate::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::store::{self, Caller, RepairError};

/// Largest request body a sync endpoint reads.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// The sync routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/sync/push", post(push))
        .route("/v1/sync/pull", post(pull))
        .route("/v1/sync/prime", post(prime))
        .route("/v1/sync/repair", post(repair))
        .route("/v1/rejections", get(rejections))
        .route("/v1/records/{id}/audit", get(audit))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// A CBOR protocol message as a request body. Checks the content type and the
/// protocol version before decoding; decoding never panics.
#[derive(Debug)]
pub struct Cbor<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Cbor<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        check_version(req.headers())?;
        let is_cbor = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(';').next().unwrap_or("").trim() == CONTENT_TYPE);
        if !is_cbor {
            return Err(ApiError::UnsupportedCbor);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(MAX_BODY_BYTES)
            } else {
                ApiError::InvalidMessage(format!("could not read the body: {e}"))
            }
        })?;
        protocol::decode(&bytes)
            .map(Cbor)
            .map_err(|e| ApiError::InvalidMessage(e.to_string()))
    }
}

/// A CBOR answer, with the protocol version in use.
struct CborReply<T>(T);

impl<T: Serialize> IntoResponse for CborReply<T> {
    fn into_response(self) -> Response {
        let mut resp = protocol::encode(&self.0).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        headers.insert(
            PROTOCOL_HEADER,
            HeaderValue::from(protocol::PROTOCOL_VERSION),
        );
        resp
    }
}

fn check_version(headers: &HeaderMap) -> Result<u16, ApiError> {
    let offered = headers
        .get(PROTOCOL_HEADER)
        .map(|v| v.to_str().unwrap_or("?"));
    protocol::negotiate(offered).map_err(|e| ApiError::ProtocolUnsupported(e.to_string()))
}

/// The store's view of an authenticated user, with today's scope window of their role.
pub fn caller(state: &AppState, user: &AuthUser) -> Result<Caller, ApiError> {
    let actor_bytes = hex::decode(&user.actor_id).map_err(|_| {
        ApiError::Internal(anyhow::anyhow!(
            "device {} has a malformed actor id",
            user.device
        ))
    })?;
    Ok(Caller {
        actor: Actor::on_device(user.id, user.role, user.device),
        org: user.org,
        team: user.team,
        territory: user.territory,
        actor_id: automerge::ActorId::from(actor_bytes),
        window: state
            .scope
            .window(user.role, crate::db::now_secs().saturating_mul(1000)),
    })
}

/// Pushes a batch of changes; each record is accepted or refused on its own.
#[utoipa::path(post, path = "/v1/sync/push", tag = "sync", security(("bearer" = [])),
    request_body(content = crate::api_doc::CborMessage, content_type = "application/cbor",
        description = "A CBOR `PushRequest` (docs/protocol.md)"),
    responses(
        (status = 200, description = "A CBOR `PushResponse`", body = crate::api_doc::CborMessage, content_type = "application/cbor"),
        (status = 400, description = "`invalid_message`", body = crate::api_doc::ErrorBody),
        (status = 401, description = "Missing, invalid or expired token; `device_revoked`", body = crate::api_doc::ErrorBody),
        (status = 413, description = "`payload_too_large`", body = crate::api_doc::ErrorBody),
        (status = 415, description = "Not `application/cbor`", body = crate::api_doc::ErrorBody),
        (status = 426, description = "`protocol_unsupported`", body = crate::api_doc::ErrorBody),
    ))]
pub(crate) async fn push(
    State(state): State<Arc<AppState>>,
    user: AuthUser,
    Cbor(req): Cbor<PushRequest>,
) -> Result<Response, ApiError> {
    if req.records.len() > store::MAX_PUSH_RECORDS {
        return Err(ApiError::InvalidMessage(format!(
            "a push carries at most {} records; this one has {}",
            store::MAX_PUSH_RECORDS,
            req.records.len()
        )));
    }
    let caller = caller(&state, &user)?;
    let pushing = store::push(&state.db, &state.gate, &caller, &req);
    let resp = crate::metrics::measure_push(state.metrics.clone(), pushing)
        .await
        .map_err(ApiError::Unavailable)?;
    state.metrics.pushed(&resp);
    crate::analytics::record_sync(&state, &user, req.health.as_ref()).await;
    tracing::debug!(
        device = %user.device,
        batch = %req.batch,
        records = req.records.len(),
        "push"
    );
    Ok(CborReply(resp).into_response())
}

/// One page of the change feed after the device's cursor.
#[utoipa::path(post, path = "/v1/sync/pull", tag = "sync", security(("bearer" = [])),
    request_body(content = crate::api_doc::CborMessage, content_type = "application/cbor",
        description = "A CBOR `PullRequest` (docs/protocol.md)"),
    responses(
        (status = 200, description = "A CBOR `PullResponse`", body = crate::api_doc::CborMessage, content_type = "application/cbor"),
        (status = 400, description = "`invalid_message`", body = crate::api_doc::ErrorBody),
        (status = 401, description = "Missing, invalid or expired token; `device_revoked`", body = crate::api_doc::ErrorBody),
        (status = 415, description = "Not `application/cbor`", body = crate::api_doc::ErrorBody),
        (status = 426, description = "`protocol_unsupported`", body = crate::api_doc::ErrorBody),
    ))]
pub(crate) async fn pull(
    State(state): State<Arc<AppState>>,
    user: AuthUser,
    Cbor(req): Cbor<PullRequest>,
) -> Result<Response, ApiError> {
    let caller = caller(&state, &user)?;
    let resp = store::pull(&state.db, &caller, &req)
        .await
        .map_err(ApiError::Unavailable)?;
    state.metrics.pulled();
    crate::analytics::record_sync(&state, &user, req.health.as_ref()).await;
    Ok(CborReply(resp).into_response())
}

/// Snapshots of the records in scope, for a new device.
#[utoipa::path(post, path = "/v1/sync/prime", tag = "sync", security(("bearer" = [])),
    request_body(content = crate::api_doc::CborMessage, content_type = "application/cbor",
        description = "A CBOR `PrimeRequest` (docs/protocol.md)"),
    responses(
        (status = 200, description = "A CBOR `PrimeResponse`", body = crate::api_doc::CborMessage, content_type = "application/cbor"),
        (status = 400, description = "`invalid_message`", body = crate::api_doc::ErrorBody),
        (status = 401, description = "Missing, invalid or expired token; `device_revoked`", body = crate::api_doc::ErrorBody),
        (status = 415, description = "Not `application/cbor`", body = crate::api_doc::ErrorBody),
        (status = 426, description = "`protocol_unsupported`", body = crate::api_doc::ErrorBody),
    ))]
pub(crate) async fn prime(
    State(state): State<Arc<AppState>>,
    user: AuthUser,
    Cbor(req): Cbor<PrimeRequest>,
) -> Result<Response, ApiError> {
    let caller = caller(&state, &user)?;
    let resp = store::prime(&state.db, &caller, &req)
        .await
        .map_err(ApiError::Unavailable)?;
    state.metrics.primed();
    Ok(CborReply(resp).into_response())
}

/// Sends a record the device lost, or its missing changes.
#[utoipa::path(post, path = "/v1/sync/repair", tag = "sync", security(("bearer" = [])),
    request_body(content = crate::api_doc::CborMessage, content_type = "application/cbor",
        description = "A CBOR `RepairRequest` (docs/protocol.md)"),
    responses(
        (status = 200, description = "A CBOR `RepairResponse`", body = crate::api_doc::CborMessage, content_type = "application/cbor"),
        (status = 400, description = "`invalid_message`", body = crate::api_doc::ErrorBody),
        (status = 401, description = "Missing, invalid or expired token; `device_revoked`", body = crate::api_doc::ErrorBody),
        (status = 403, description = "Out of scope or refused", body = crate::api_doc::ErrorBody),
        (status = 415, description = "Not `application/cbor`", body = crate::api_doc::ErrorBody),
        (status = 426, description = "`protocol_unsupported`", body = crate::api_doc::ErrorBody),
    ))]
pub(crate) async fn repair(
    State(state): State<Arc<AppState>>,
    user: AuthUser,
    Cbor(req): Cbor<RepairRequest>,
) -> Result<Response, ApiError> {
    let caller = caller(&state, &user)?;
    match store::repair(&state.db, &state.gate, &caller, &req).await {
        Ok(message) => Ok(CborReply(RepairResponse {
            message: message.map(serde_bytes::ByteBuf::from),
        })
        .into_response()),
        Err(RepairError::Malformed(m)) => Err(ApiError::InvalidMessage(m)),
        Err(RepairError::OutOfScope) => Err(ApiError::Forbidden(
            "this record is not in your scope".into(),
        )),
        Err(RepairError::Refused(r)) => Err(ApiError::Forbidden(format!(
            "{}: {}",
            r.code.as_str(),
            r.message
        ))),
        Err(RepairError::Db(e)) => Err(ApiError::Unavailable(e)),
    }
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
        (status = 200, description = "Ledger entries, newest first", body = Vec<store::RejectionRow>),
        (status = 401, description = "Missing, invalid or expired token", body = crate::api_doc::ErrorBody),
    ))]
pub(crate) async fn rejections(
    State(state): State<Arc<AppState>>,
    user: AuthUser,
    Query(q): Query<RejectionsQuery>,
) -> Result<Json<Vec<store::RejectionRow>>, ApiError> {
    let caller = caller(&state, &user)?;
    store::rejections(&state.db, &caller, q.limit)
        .await
        .map(Json)
        .map_err(ApiError::Unavailable)
}

/// `GET /v1/records/{id}/audit`: who changed the record, from which device,
/// when. Answers 404 for a record outside the caller's scope, as for one that
/// does not exist.
#[utoipa::path(get, path = "/v1/records/{id}/audit", tag = "sync", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Record id")),
    responses(
        (status = 200, description = "Accepted changes, oldest first", body = Vec<store::AuditEntry>),
        (status = 400, description = "Not a record id", body = crate::api_doc::ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = crate::api_doc::ErrorBody),
        (status = 404, description = "No such record in the caller's scope", body = crate::api_doc::ErrorBody),
    ))]
pub(crate) async fn audit(
    State(state): State<Arc<AppState>>,
    user: AuthUser,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<Vec<store::AuditEntry>>, ApiError> {
    let id: fieldsync_core::RecordId = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{id:?} is not a record id")))?;
    let caller = caller(&state, &user)?;
    store::audit_trail(&state.db, &caller, id)
        .await
        .map_err(ApiError::Unavailable)?
        .map(Json)
        .ok_or(ApiError::NotFound)
}
