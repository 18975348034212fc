//! The administration routes: people (`/v1/people`), teams (`/v1/teams`),
//! territories (`/v1/territories`), the devices list with sync health
//! (`/v1/admin/devices`; revoking is `POST /v1/devices/{id}/revoke`) and the
//! admin log (`/v1/admin/log`). Who may, and what each action does, is
//! `service::people`'s.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use fieldsync_core::{TeamId, TerritoryId, UserId};
use serde::{Deserialize, Deserializer, Serialize};

use super::error::{ApiError, ErrorBody};
use crate::domain::people::parse_role;
use crate::domain::{Caller, Error};
use crate::service::people::{
    AddUser, AdminEntry, Change, Credentials, Devices, PersonRow, TeamRow, TerritoryRow,
};
use crate::service::{self, Context};

/// The administration routes.
pub fn routes() -> Router<Arc<Context>> {
    Router::new()
        .route("/v1/people", get(list).post(add))
        .route("/v1/people/{id}", axum::routing::patch(update))
        .route("/v1/people/{id}/disable", post(disable))
        .route("/v1/people/{id}/enable", post(enable))
        .route("/v1/people/{id}/reset-password", post(reset_password))
        .route("/v1/teams", get(teams).post(add_team))
        .route("/v1/teams/{id}/rename", post(rename_team))
        .route("/v1/teams/{id}/manager", post(set_manager))
        .route("/v1/territories", get(territories).post(add_territory))
        .route("/v1/territories/{id}/rename", post(rename_territory))
        .route("/v1/admin/devices", get(devices))
        .route("/v1/admin/log", get(log))
}

fn parse_id<T: std::str::FromStr>(what: &str, id: &str) -> Result<T, Error> {
    id.trim()
        .parse()
        .map_err(|_| Error::BadRequest(format!("{id:?} is not a {what} id")))
}

/// The people the caller may see: the organisation's for an administrator,
/// their team's for a manager.
#[utoipa::path(get, path = "/v1/people", tag = "people", security(("bearer" = [])),
    responses(
        (status = 200, description = "The people", body = Vec<PersonRow>),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
    ))]
pub(crate) async fn list(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
) -> Result<Json<Vec<PersonRow>>, ApiError> {
    Ok(Json(service::people::people(&ctx, &caller).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct AddBody {
    /// Email, unique in the organisation.
    email: String,
    /// Name to show [default: the part of the email before `@`].
    #[serde(default)]
    display_name: String,
    /// `rep`, `technician`, `manager` or `admin`.
    role: String,
    /// Team id.
    #[schema(value_type = Option<uuid::Uuid>)]
    team_id: Option<TeamId>,
    /// Territory id.
    #[schema(value_type = Option<uuid::Uuid>)]
    territory_id: Option<TerritoryId>,
    /// Their password; absent: invite them with a temporary password, answered once.
    password: Option<String>,
}

/// Adds a user (administrators): with the password given, or invited with a
/// temporary password answered this once.
#[utoipa::path(post, path = "/v1/people", tag = "people", security(("bearer" = [])),
    request_body = AddBody,
    responses(
        (status = 201, description = "Added", body = Credentials),
        (status = 400, description = "Malformed email, weak password, unknown role, team or territory", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 409, description = "The email is taken", body = ErrorBody),
    ))]
pub(crate) async fn add(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Json(body): Json<AddBody>,
) -> Result<(StatusCode, Json<Credentials>), ApiError> {
    let user = AddUser {
        email: body.email,
        display_name: body.display_name,
        role: parse_role(&body.role)?,
        team: body.team_id,
        territory: body.territory_id,
        password: body.password,
    };
    let added = service::people::add_user(&ctx, &caller, user).await?;
    Ok((StatusCode::CREATED, Json(added)))
}

/// A present field, `null` included: `Some(None)` for `null`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct UpdateBody {
    /// New role.
    role: Option<String>,
    /// New team id; `null`: no team; absent: unchanged.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<uuid::Uuid>)]
    team_id: Option<Option<TeamId>>,
    /// New territory id; `null`: no territory; absent: unchanged.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<uuid::Uuid>)]
    territory_id: Option<Option<TerritoryId>>,
}

/// Changes a user's role, team or territory (administrators). Their devices
/// receive the records they now may read, and drop those they no longer may,
/// at their next sync.
#[utoipa::path(patch, path = "/v1/people/{id}", tag = "people", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "User id")),
    request_body = UpdateBody,
    responses(
        (status = 200, description = "The user as now", body = PersonRow),
        (status = 400, description = "Unknown role, team or territory", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 404, description = "No such user in the caller's organisation", body = ErrorBody),
        (status = 409, description = "The caller's own role, or the last administrator", body = ErrorBody),
    ))]
pub(crate) async fn update(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<UpdateBody>,
) -> Result<Json<PersonRow>, ApiError> {
    let id: UserId = parse_id("user", &id)?;
    let change = Change {
        role: body.role.as_deref().map(parse_role).transpose()?,
        team: body.team_id,
        territory: body.territory_id,
    };
    Ok(Json(
        service::people::change(&ctx, &caller, id, change).await?,
    ))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Toggled {
    /// The user.
    #[schema(value_type = uuid::Uuid)]
    id: UserId,
    /// Whether this call changed the account (false: it already was so).
    changed: bool,
}

/// Disables a user's account (administrators; not their own, not the last
/// administrator): their sessions end at once, their records stay.
#[utoipa::path(post, path = "/v1/people/{id}/disable", tag = "people", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "Disabled", body = Toggled),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 404, description = "No such user in the caller's organisation", body = ErrorBody),
        (status = 409, description = "The caller's own account, or the last administrator", body = ErrorBody),
    ))]
pub(crate) async fn disable(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Toggled>, ApiError> {
    let id: UserId = parse_id("user", &id)?;
    let changed = service::people::set_disabled(&ctx, &caller, id, true).await?;
    Ok(Json(Toggled { id, changed }))
}

/// Enables a disabled account again (administrators).
#[utoipa::path(post, path = "/v1/people/{id}/enable", tag = "people", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "Enabled", body = Toggled),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 404, description = "No such user in the caller's organisation", body = ErrorBody),
    ))]
pub(crate) async fn enable(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Toggled>, ApiError> {
    let id: UserId = parse_id("user", &id)?;
    let changed = service::people::set_disabled(&ctx, &caller, id, false).await?;
    Ok(Json(Toggled { id, changed }))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(crate) struct ResetBody {
    /// The new password; absent: a temporary one, answered once.
    password: Option<String>,
}

/// Sets a new password for a user (administrators, for someone else) and
/// ends their sessions.
#[utoipa::path(post, path = "/v1/people/{id}/reset-password", tag = "people", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "User id")),
    request_body = ResetBody,
    responses(
        (status = 200, description = "Reset", body = Credentials),
        (status = 400, description = "Weak password", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 404, description = "No such user in the caller's organisation", body = ErrorBody),
        (status = 409, description = "The caller's own password", body = ErrorBody),
    ))]
pub(crate) async fn reset_password(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<ResetBody>,
) -> Result<Json<Credentials>, ApiError> {
    let id: UserId = parse_id("user", &id)?;
    Ok(Json(
        service::people::reset_password(&ctx, &caller, id, body.password).await?,
    ))
}

/// The teams (an administrator's organisation; a manager's own team).
#[utoipa::path(get, path = "/v1/teams", tag = "people", security(("bearer" = [])),
    responses(
        (status = 200, description = "The teams", body = Vec<TeamRow>),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
    ))]
pub(crate) async fn teams(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
) -> Result<Json<Vec<TeamRow>>, ApiError> {
    Ok(Json(service::people::teams(&ctx, &caller).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct TeamBody {
    /// The team's name, unique in the organisation.
    name: String,
    /// Its manager (a manager or administrator).
    #[schema(value_type = Option<uuid::Uuid>)]
    manager_id: Option<UserId>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Created {
    /// The new team's or territory's id.
    id: String,
}

/// Creates a team (administrators).
#[utoipa::path(post, path = "/v1/teams", tag = "people", security(("bearer" = [])),
    request_body = TeamBody,
    responses(
        (status = 201, description = "Created", body = Created),
        (status = 400, description = "Bad name, or the manager cannot manage", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    ))]
pub(crate) async fn add_team(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Json(body): Json<TeamBody>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let id = service::people::add_team(&ctx, &caller, &body.name, body.manager_id).await?;
    Ok((StatusCode::CREATED, Json(Created { id: id.to_string() })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct RenameBody {
    /// The new name.
    name: String,
}

/// Renames a team (administrators).
#[utoipa::path(post, path = "/v1/teams/{id}/rename", tag = "people", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Team id")),
    request_body = RenameBody,
    responses(
        (status = 204, description = "Renamed"),
        (status = 400, description = "Bad name or unknown team", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    ))]
pub(crate) async fn rename_team(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<RenameBody>,
) -> Result<StatusCode, ApiError> {
    let id: TeamId = parse_id("team", &id)?;
    service::people::rename_team(&ctx, &caller, id, &body.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct ManagerBody {
    /// The manager (a manager or administrator of the organisation).
    #[schema(value_type = uuid::Uuid)]
    user_id: UserId,
}

/// Names a team's manager (administrators); a manager moves into the team.
#[utoipa::path(post, path = "/v1/teams/{id}/manager", tag = "people", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Team id")),
    request_body = ManagerBody,
    responses(
        (status = 204, description = "Set"),
        (status = 400, description = "Unknown team", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 404, description = "No such user in the caller's organisation", body = ErrorBody),
        (status = 409, description = "The user is not a manager, or disabled", body = ErrorBody),
    ))]
pub(crate) async fn set_manager(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<ManagerBody>,
) -> Result<StatusCode, ApiError> {
    let id: TeamId = parse_id("team", &id)?;
    service::people::set_manager(&ctx, &caller, id, body.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The organisation's territories (managers and administrators).
#[utoipa::path(get, path = "/v1/territories", tag = "people", security(("bearer" = [])),
    responses(
        (status = 200, description = "The territories", body = Vec<TerritoryRow>),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
    ))]
pub(crate) async fn territories(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
) -> Result<Json<Vec<TerritoryRow>>, ApiError> {
    Ok(Json(service::people::territories(&ctx, &caller).await?))
}

/// Creates a territory (administrators).
#[utoipa::path(post, path = "/v1/territories", tag = "people", security(("bearer" = [])),
    request_body = RenameBody,
    responses(
        (status = 201, description = "Created", body = Created),
        (status = 400, description = "Bad name", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    ))]
pub(crate) async fn add_territory(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Json(body): Json<RenameBody>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let id = service::people::add_territory(&ctx, &caller, &body.name).await?;
    Ok((StatusCode::CREATED, Json(Created { id: id.to_string() })))
}

/// Renames a territory (administrators).
#[utoipa::path(post, path = "/v1/territories/{id}/rename", tag = "people", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Territory id")),
    request_body = RenameBody,
    responses(
        (status = 204, description = "Renamed"),
        (status = 400, description = "Bad name or unknown territory", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    ))]
pub(crate) async fn rename_territory(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<RenameBody>,
) -> Result<StatusCode, ApiError> {
    let id: TerritoryId = parse_id("territory", &id)?;
    service::people::rename_territory(&ctx, &caller, id, &body.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every device the caller may manage, with its sync health (pending
/// changes, oldest unsynced change, last sync); browser sessions apart.
#[utoipa::path(get, path = "/v1/admin/devices", tag = "people", security(("bearer" = [])),
    responses(
        (status = 200, description = "The devices", body = Devices),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = ErrorBody),
    ))]
pub(crate) async fn devices(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
) -> Result<Json<Devices>, ApiError> {
    Ok(Json(service::people::devices(&ctx, &caller).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogQuery {
    /// Most entries [default 100, at most 500].
    limit: Option<i64>,
}

/// The admin log, newest first (administrators): who did what to whom, when.
#[utoipa::path(get, path = "/v1/admin/log", tag = "people", security(("bearer" = [])),
    params(LogQuery),
    responses(
        (status = 200, description = "The entries", body = Vec<AdminEntry>),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
    ))]
pub(crate) async fn log(
    State(ctx): State<Arc<Context>>,
    caller: Caller,
    Query(q): Query<LogQuery>,
) -> Result<Json<Vec<AdminEntry>>, ApiError> {
    Ok(Json(
        service::people::admin_log(&ctx, &caller, q.limit.unwrap_or(100)).await?,
    ))
}
