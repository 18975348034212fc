//! Checklist templates for the back office as a JSON API: the families with
//! their versions, one version, creating and editing drafts, publishing,
//! retiring and starting the next version. The work is
//! `service::templates`'s; the pages and the CLI call the same functions.
//!
//! Changing a published version answers 409 with the code
//! `template_published`: a change to a published template is a new version.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::error::{ApiError, ApiJson, ErrorBody};
use crate::domain::Caller;
use crate::domain::templates::{FamilyView, QuestionInput, TemplateInput, TemplateView};
use crate::service::templates::Placement;
use crate::service::{self, Context};

/// The template routes.
pub fn routes() -> Router<Arc<Context>> {
    Router::new()
        .route("/v1/templates", get(list).post(create))
        .route("/v1/templates/{id}", get(one).put(edit))
        .route("/v1/templates/{id}/publish", post(publish))
        .route("/v1/templates/{id}/retire", post(retire))
        .route("/v1/templates/{id}/new-version", post(new_version))
}

/// A new draft: its definition, and optionally where it is kept.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct CreateBody {
    /// The template's name.
    name: String,
    /// The questions, in form order.
    #[serde(default)]
    questions: Vec<QuestionInput>,
    /// The team that keeps it (default: the caller's).
    team: Option<uuid::Uuid>,
    /// The territory whose people read it (default: the caller's).
    territory: Option<uuid::Uuid>,
}

/// `GET /v1/templates`: every template family the caller can read, with
/// every version (drafts, published, retired), by name.
#[utoipa::path(get, path = "/v1/templates", tag = "templates", security(("bearer" = [])),
    responses(
        (status = 200, description = "Families with their versions, newest version first", body = Vec<FamilyView>),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
    ))]
pub(crate) async fn list(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
) -> Result<Json<Vec<FamilyView>>, ApiError> {
    Ok(Json(service::templates::list(&ctx, &caller).await?))
}

/// `GET /v1/templates/{id}`: one version with its questions.
#[utoipa::path(get, path = "/v1/templates/{id}", tag = "templates", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Template version id")),
    responses(
        (status = 200, description = "The version", body = TemplateView),
        (status = 400, description = "Not a record id", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
        (status = 404, description = "No such template in the caller's scope", body = ErrorBody),
    ))]
pub(crate) async fn one(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TemplateView>, ApiError> {
    Ok(Json(service::templates::get(&ctx, &caller, &id).await?))
}

/// `POST /v1/templates`: creates a draft (version 1 of a new family).
#[utoipa::path(post, path = "/v1/templates", tag = "templates", security(("bearer" = [])),
    request_body = CreateBody,
    responses(
        (status = 200, description = "The draft", body = TemplateView),
        (status = 400, description = "A question is not valid (kind, key, choices, show-if)", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
        (status = 409, description = "Refused by the push's checks (team or territory outside the caller's authority)", body = ErrorBody),
    ))]
pub(crate) async fn create(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Json<TemplateView>, ApiError> {
    let input = TemplateInput {
        name: body.name,
        questions: body.questions,
    };
    let placement = Placement {
        team: body.team.map(fieldsync_core::TeamId::from_uuid),
        territory: body.territory.map(fieldsync_core::TerritoryId::from_uuid),
    };
    Ok(Json(
        service::templates::create_draft(&ctx, &caller, &input, placement).await?,
    ))
}

/// `PUT /v1/templates/{id}`: replaces a draft's name and questions. A
/// published version answers 409 `template_published`.
#[utoipa::path(put, path = "/v1/templates/{id}", tag = "templates", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Template version id")),
    request_body = TemplateInput,
    responses(
        (status = 200, description = "The edited draft", body = TemplateView),
        (status = 400, description = "A question is not valid", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
        (status = 404, description = "No such template in the caller's scope", body = ErrorBody),
        (status = 409, description = "`template_published`: the version is published and never edited; make a new version", body = ErrorBody),
    ))]
pub(crate) async fn edit(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TemplateInput>,
) -> Result<Json<TemplateView>, ApiError> {
    Ok(Json(
        service::templates::edit_draft(&ctx, &caller, &id, &body).await?,
    ))
}

/// `POST /v1/templates/{id}/publish`: publishes a draft; devices of its
/// territory get it with their next sync.
#[utoipa::path(post, path = "/v1/templates/{id}/publish", tag = "templates", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Template version id")),
    responses(
        (status = 200, description = "Published", body = TemplateView),
        (status = 400, description = "No questions", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
        (status = 404, description = "No such template in the caller's scope", body = ErrorBody),
        (status = 409, description = "`template_published`: already published; or `conflict`: the family already published this number", body = ErrorBody),
    ))]
pub(crate) async fn publish(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TemplateView>, ApiError> {
    Ok(Json(service::templates::publish(&ctx, &caller, &id).await?))
}

/// `POST /v1/templates/{id}/retire`: retires a published version (offered
/// for no new work; its answers stay valid).
#[utoipa::path(post, path = "/v1/templates/{id}/retire", tag = "templates", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Template version id")),
    responses(
        (status = 200, description = "Retired", body = TemplateView),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
        (status = 404, description = "No such template in the caller's scope", body = ErrorBody),
        (status = 409, description = "A draft is not retired", body = ErrorBody),
    ))]
pub(crate) async fn retire(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TemplateView>, ApiError> {
    Ok(Json(service::templates::retire(&ctx, &caller, &id).await?))
}

/// `POST /v1/templates/{id}/new-version`: a draft of the next version of a
/// published one (its name and questions copied, numbered next).
#[utoipa::path(post, path = "/v1/templates/{id}/new-version", tag = "templates", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Published template version id")),
    responses(
        (status = 200, description = "The new draft", body = TemplateView),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
        (status = 404, description = "No such template in the caller's scope", body = ErrorBody),
        (status = 409, description = "A draft, or the family already has a later version", body = ErrorBody),
    ))]
pub(crate) async fn new_version(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TemplateView>, ApiError> {
    Ok(Json(
        service::templates::new_version(&ctx, &caller, &id).await?,
    ))
}
