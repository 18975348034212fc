//! The attachment endpoints (`/v1/attachments…`): declare an upload, send its
//! chunks, complete it, download the file or a photo's thumbnail. The work and
//! the rules are `service::attachments`; here the path, the chunk hash header
//! and the body are taken from the request, and a stored file becomes a
//! streamed answer that may be cached for good.
//!
//! The protocol, for app developers, is in `docs/protocol.md`: chunks are
//! `chunk_size` bytes except the last, each with its SHA-256 in
//! `x-chunk-sha256`; hashes in paths are 64 lowercase hex digits.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::error::{ApiError, ApiJson, ErrorBody};
use super::schema::Binary;
use crate::domain::attachments::{CHUNK_HASH_HEADER, CHUNK_SIZE};
use crate::domain::{Caller, Error};
use crate::service::attachments::{CACHE_CONTROL, DeclareRequest, DeclareResponse, Download};
use crate::service::{self, Context};

/// The attachment routes.
pub fn routes() -> Router<Arc<Context>> {
    Router::new()
        .route("/v1/attachments", post(declare))
        .route("/v1/attachments/{sha256}", get(download))
        .route("/v1/attachments/{sha256}/thumbnail", get(thumbnail_of))
        .route("/v1/attachments/{sha256}/chunks/{idx}", put(put_chunk))
        .route("/v1/attachments/{sha256}/complete", post(complete))
        // A chunk, and room for a declaration; nothing larger is read.
        .layer(axum::extract::DefaultBodyLimit::max(CHUNK_SIZE as usize))
}

/// A stored chunk (`PUT /v1/attachments/{sha256}/chunks/{idx}` answer; the
/// OpenAPI description only).
#[derive(Debug, Serialize, ToSchema)]
pub struct ChunkStored {
    /// The attachment.
    pub sha256: String,
    /// The chunk's index.
    pub idx: u32,
    /// Its size in bytes.
    pub size: u64,
}

/// An attachment stored whole and verified (`POST
/// /v1/attachments/{sha256}/complete` answer; the OpenAPI description only).
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadComplete {
    /// The attachment.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// Always true.
    pub complete: bool,
}

fn path_error(e: PathRejection) -> ApiError {
    ApiError::Domain(Error::BadRequest(format!("bad path: {}", e.body_text())))
}

/// `POST /v1/attachments`: declares an upload, or asks again where it stands.
#[utoipa::path(post, path = "/v1/attachments", tag = "attachments", security(("bearer" = [])),
    request_body = DeclareRequest,
    responses(
        (status = 200, description = "Where the upload stands: the chunks to send", body = DeclareResponse),
        (status = 400, description = "Bad hash, kind or content type", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "No such record in the caller's scope", body = ErrorBody),
        (status = 409, description = "Declared with another size: a file the caller can already read", body = ErrorBody),
        (status = 413, description = "`attachment_too_large` for its kind", body = ErrorBody),
    ))]
pub(crate) async fn declare(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    ApiJson(req): ApiJson<DeclareRequest>,
) -> Result<Json<DeclareResponse>, ApiError> {
    Ok(Json(
        service::attachments::declare(&ctx, &caller, &req).await?,
    ))
}

/// `PUT /v1/attachments/{sha256}/chunks/{idx}`: stores one checked chunk.
#[utoipa::path(put, path = "/v1/attachments/{sha256}/chunks/{idx}", tag = "attachments", security(("bearer" = [])),
    params(("sha256" = String, Path, description = "The whole file's SHA-256, 64 lowercase hex digits"), ("idx" = u32, Path, description = "Chunk index, from 0"),
        ("x-chunk-sha256" = String, Header, description = "The chunk's SHA-256, 64 lowercase hex digits")),
    request_body(content = Binary, content_type = "application/octet-stream",
        description = "The chunk's bytes: `chunk_size` of them, fewer for the last"),
    responses(
        (status = 200, description = "Stored", body = ChunkStored),
        (status = 400, description = "`chunk_corrupt` (hash differs) or a bad index or size", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "This device has not declared an upload of this file (or it completed)", body = ErrorBody),
    ))]
pub(crate) async fn put_chunk(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let Path((sha, idx)) = path.map_err(path_error)?;
    let claimed = headers.get(CHUNK_HASH_HEADER).and_then(|v| v.to_str().ok());
    let stored = service::attachments::put_chunk(
        &ctx,
        &caller,
        &sha,
        &idx,
        claimed,
        body.into_data_stream(),
    )
    .await?;
    Ok(Json(
        json!({ "sha256": stored.sha256.as_str(), "idx": stored.idx, "size": stored.size }),
    ))
}

/// `POST /v1/attachments/{sha256}/complete`: assembles and verifies the file.
#[utoipa::path(post, path = "/v1/attachments/{sha256}/complete", tag = "attachments", security(("bearer" = [])),
    params(("sha256" = String, Path, description = "The whole file's SHA-256, 64 lowercase hex digits")),
    responses(
        (status = 200, description = "Stored and verified", body = UploadComplete),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "This device has no upload of this file, and the caller reads no record that has it", body = ErrorBody),
        (status = 409, description = "Chunks are missing (listed in the message)", body = ErrorBody),
        (status = 422, description = "`hash_mismatch`: the assembled file is not the declared one; the upload starts over", body = ErrorBody),
    ))]
pub(crate) async fn complete(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(sha) = path.map_err(path_error)?;
    let done = service::attachments::complete(&ctx, &caller, &sha).await?;
    Ok(Json(
        json!({ "sha256": done.sha256.as_str(), "size": done.size, "complete": true }),
    ))
}

/// `GET /v1/attachments/{sha256}`: streams a complete attachment. The
/// managers' pages serve the same download (`service::attachments::download`)
/// for a browser session.
#[utoipa::path(get, path = "/v1/attachments/{sha256}", tag = "attachments", security(("bearer" = [])),
    params(("sha256" = String, Path, description = "The whole file's SHA-256, 64 lowercase hex digits")),
    responses(
        (status = 200, description = "The file, with its declared content type", body = Binary, content_type = "application/octet-stream"),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "Not stored, not complete, or not attached to a record in the caller's scope", body = ErrorBody),
    ))]
pub(crate) async fn download(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(sha) = path.map_err(path_error)?;
    let file = service::attachments::download(&ctx, &caller, &sha).await?;
    Ok(stream_blob(file))
}

/// `GET /v1/attachments/{sha256}/thumbnail`: a photo's thumbnail (JPEG).
#[utoipa::path(get, path = "/v1/attachments/{sha256}/thumbnail", tag = "attachments", security(("bearer" = [])),
    params(("sha256" = String, Path, description = "The photo's SHA-256, 64 lowercase hex digits")),
    responses(
        (status = 200, description = "A JPEG at most 320 px on its longest side", body = Binary, content_type = "image/jpeg"),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "Not stored, not in the caller's scope, or `thumbnail_unavailable` (not a photo, or it cannot be decoded)", body = ErrorBody),
    ))]
pub(crate) async fn thumbnail_of(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(sha) = path.map_err(path_error)?;
    let thumb = service::attachments::thumbnail(&ctx, &caller, &sha).await?;
    Ok(stream_blob(thumb))
}

/// A stored file as a streamed answer that may be cached for good.
fn stream_blob(file: Download) -> Response {
    // A declared type is one the domain accepted; anything unsendable is bytes.
    let content_type = HeaderValue::from_str(&file.content_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    // An error mid-way ends the body: the client sees a short read.
    let mut resp = (StatusCode::OK, Body::from_stream(file.blob.body)).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(file.blob.len));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", file.etag)) {
        headers.insert(header::ETAG, etag);
    }
    resp
}
