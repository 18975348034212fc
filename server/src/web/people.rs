//! `/web/people`: the organisation's people (an administrator's) or a
//! manager's team, with the administrators' forms: add or invite a user,
//! change role, team and territory, disable and enable, reset a password;
//! the teams and territories (create, rename, name a team's manager); and the
//! admin log. `/web/devices`: every device the signed-in user may manage with
//! its sync health, a Revoke action behind a confirmation page
//! (`/web/devices/{id}/revoke`), and browser sessions in their own section.
//!
//! Every form is a POST with the session's CSRF token and calls
//! `service::people`, the use cases of the JSON API and the command line. An
//! action's result is the page again with a notice (a temporary password is
//! shown there once, and never again); a refusal is the page with the reason
//! and the status the JSON API would answer.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use fieldsync_core::model::{DeviceTime, Role};
use fieldsync_core::{DeviceId, TeamId, TerritoryId, UserId};
use maud::{Markup, html};
use serde::Deserialize;

use super::format;
use super::{WebError, WebForm, WebUser, page, status_of};
use crate::domain::people::parse_role;
use crate::domain::{Error, Result};
use crate::service::people::{
    AddUser, AdminEntry, Change, DeviceRow, PersonRow, TeamRow, TerritoryRow,
};
use crate::service::{self, Context};

/// Admin log entries the page shows.
const LOG_ROWS: i64 = 50;

/// A notice on the page: (ok, text).
type Notice = Option<(bool, String)>;

fn when(secs: Option<i64>) -> String {
    secs.map(|s| format::date_time(DeviceTime::utc(s.saturating_mul(1_000))))
        .unwrap_or_else(|| "—".into())
}

fn opt_id<T: std::str::FromStr>(what: &str, text: Option<&str>) -> Result<Option<T>> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => t
            .parse()
            .map(Some)
            .map_err(|_| Error::BadRequest(format!("there is no {what} {t:?}"))),
    }
}

fn id_of<T: std::str::FromStr>(id: &str) -> std::result::Result<T, WebError> {
    id.parse().map_err(|_| WebError::Domain(Error::NotFound))
}

struct PeoplePage {
    people: Vec<PersonRow>,
    teams: Vec<TeamRow>,
    territories: Vec<TerritoryRow>,
    log: Vec<AdminEntry>,
}

async fn load(ctx: &Context, web: &WebUser) -> Result<PeoplePage> {
    let admin = is_admin(web);
    Ok(PeoplePage {
        people: service::people::people(ctx, &web.caller).await?,
        teams: service::people::teams(ctx, &web.caller).await?,
        territories: service::people::territories(ctx, &web.caller).await?,
        log: if admin {
            service::people::admin_log(ctx, &web.caller, LOG_ROWS).await?
        } else {
            Vec::new()
        },
    })
}

fn is_admin(web: &WebUser) -> bool {
    matches!(web.caller.role(), Role::Admin | Role::Server)
}

/// `GET /web/people`.
pub(super) async fn show(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
) -> std::result::Result<Response, WebError> {
    let data = load(&ctx, &web).await?;
    Ok(render(&web, &data, None).into_response())
}

/// The page after an action: its notice, or the refusal with its status.
async fn after(
    ctx: &Context,
    web: &WebUser,
    result: Result<String>,
) -> std::result::Result<Response, WebError> {
    let (status, notice) = match result {
        Ok(text) => (StatusCode::OK, (true, text)),
        Err(e @ (Error::BadRequest(_) | Error::Conflict(_) | Error::NotFound)) => {
            (status_of(e.kind()), (false, e.to_string()))
        }
        Err(e) => return Err(WebError::Domain(e)),
    };
    let data = load(ctx, web).await?;
    Ok((status, render(web, &data, Some(notice))).into_response())
}

fn role_select(id: &str, current: Option<Role>) -> Markup {
    html! {
        select #(id) name="role" {
            @for r in [Role::Rep, Role::Technician, Role::Manager, Role::Admin] {
                option value=(r.as_str()) selected[current == Some(r)] { (r.as_str()) }
            }
        }
    }
}

fn team_select(id: &str, teams: &[TeamRow], current: Option<TeamId>) -> Markup {
    html! {
        select #(id) name="team" {
            option value="" selected[current.is_none()] { "No team" }
            @for t in teams {
                option value=(t.id) selected[current == Some(t.id)] { (t.name) }
            }
        }
    }
}

fn territory_select(
    id: &str,
    territories: &[TerritoryRow],
    current: Option<TerritoryId>,
) -> Markup {
    html! {
        select #(id) name="territory" {
            option value="" selected[current.is_none()] { "No territory" }
            @for t in territories {
                option value=(t.id) selected[current == Some(t.id)] { (t.name) }
            }
        }
    }
}

fn render(web: &WebUser, d: &PeoplePage, notice: Notice) -> Markup {
    let admin = is_admin(web);
    let csrf = web.csrf.as_str();
    let body = html! {
        h1 { "People" }
        @if let Some((ok, text)) = notice {
            p #people-notice class=(if ok { "notice ok" } else { "notice error" }) role=(if ok { "status" } else { "alert" }) { (text) }
        }
        @if admin {
            section aria-labelledby="h-add" {
                h2 #h-add { "Add a person" }
                form.filters #add-person method="post" action="/web/people/add" {
                    input type="hidden" name="csrf" value=(csrf);
                    div.field { label for="a-email" { "Email" } input #a-email type="email" name="email" required; }
                    div.field { label for="a-name" { "Name" } input #a-name type="text" name="display_name"; }
                    div.field { label for="a-role" { "Role" } (role_select("a-role", Some(Role::Rep))) }
                    div.field { label for="a-team" { "Team" } (team_select("a-team", &d.teams, None)) }
                    div.field { label for="a-territory" { "Territory" } (territory_select("a-territory", &d.territories, None)) }
                    div.field { label for="a-password" { "Password (empty: invite with a temporary password)" } input #a-password type="password" name="password" autocomplete="new-password"; }
                    div.field.actions { button type="submit" { "Add" } }
                }
            }
        }
        section aria-labelledby="h-people" {
            h2 #h-people { @if admin { "Everyone" } @else { "Your team" } }
            div.table-wrap {
                table #people {
                    thead { tr {
                        th scope="col" { "Name" }
                        th scope="col" { "Email" }
                        th scope="col" { "Role, team, territory" }
                        th scope="col" { "State" }
                        th scope="col" { "Last active" }
                        @if admin { th scope="col" { "Actions" } }
                    } }
                    tbody {
                        @for p in &d.people {
                            tr data-email=(p.email) {
                                td { (p.display_name) }
                                td { (p.email) }
                                td {
                                    @if admin {
                                        form method="post" action=(format!("/web/people/{}/change", p.id)) {
                                            input type="hidden" name="csrf" value=(csrf);
                                            label.visually-hidden for=(format!("r-{}", p.id)) { "Role of " (p.email) }
                                            (role_select(&format!("r-{}", p.id), Some(p.role)))
                                            label.visually-hidden for=(format!("t-{}", p.id)) { "Team of " (p.email) }
                                            (team_select(&format!("t-{}", p.id), &d.teams, p.team_id))
                                            label.visually-hidden for=(format!("g-{}", p.id)) { "Territory of " (p.email) }
                                            (territory_select(&format!("g-{}", p.id), &d.territories, p.territory_id))
                                            button.secondary type="submit" { "Save" }
                                        }
                                    } @else {
                                        (p.role.as_str()) " · " (p.team_name.as_deref().unwrap_or("no team")) " · " (p.territory_name.as_deref().unwrap_or("no territory"))
                                    }
                                }
                                td.state { @if p.disabled { span.badge.rejected { "Disabled" } } @else { "Active" } }
                                td { (when(p.last_active_at)) }
                                @if admin {
                                    td {
                                        form method="post" action=(format!("/web/people/{}/{}", p.id, if p.disabled { "enable" } else { "disable" })) {
                                            input type="hidden" name="csrf" value=(csrf);
                                            button.secondary type="submit" { @if p.disabled { "Enable" } @else { "Disable" } }
                                        }
                                        form method="post" action=(format!("/web/people/{}/reset-password", p.id)) {
                                            input type="hidden" name="csrf" value=(csrf);
                                            button.secondary type="submit" { "Reset password" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="h-teams" {
            h2 #h-teams { "Teams" }
            ul #teams {
                @for t in &d.teams {
                    li data-team=(t.name) {
                        strong { (t.name) } " — " (format::count(t.members as u64, "person", "people")) ", manager: " (t.manager_name.as_deref().unwrap_or("none"))
                        @if admin {
                            form method="post" action=(format!("/web/teams/{}/rename", t.id)) {
                                input type="hidden" name="csrf" value=(csrf);
                                label.visually-hidden for=(format!("tn-{}", t.id)) { "New name of team " (t.name) }
                                input #(format!("tn-{}", t.id)) type="text" name="name" value=(t.name) required;
                                button.secondary type="submit" { "Rename" }
                            }
                            form method="post" action=(format!("/web/teams/{}/manager", t.id)) {
                                input type="hidden" name="csrf" value=(csrf);
                                label.visually-hidden for=(format!("tm-{}", t.id)) { "Manager of team " (t.name) }
                                select #(format!("tm-{}", t.id)) name="user" {
                                    @for p in d.people.iter().filter(|p| matches!(p.role, Role::Manager | Role::Admin) && !p.disabled) {
                                        option value=(p.id) selected[t.manager_id == Some(p.id)] { (p.display_name) " (" (p.email) ")" }
                                    }
                                }
                                button.secondary type="submit" { "Set manager" }
                            }
                        }
                    }
                }
            }
            @if admin {
                form.filters #add-team method="post" action="/web/teams" {
                    input type="hidden" name="csrf" value=(csrf);
                    div.field { label for="n-team" { "New team" } input #n-team type="text" name="name" required; }
                    div.field.actions { button type="submit" { "Create team" } }
                }
            }
        }
        section aria-labelledby="h-territories" {
            h2 #h-territories { "Territories" }
            ul #territories {
                @for t in &d.territories {
                    li data-territory=(t.name) {
                        strong { (t.name) } " — " (format::count(t.members as u64, "person", "people"))
                        @if admin {
                            form method="post" action=(format!("/web/territories/{}/rename", t.id)) {
                                input type="hidden" name="csrf" value=(csrf);
                                label.visually-hidden for=(format!("rn-{}", t.id)) { "New name of territory " (t.name) }
                                input #(format!("rn-{}", t.id)) type="text" name="name" value=(t.name) required;
                                button.secondary type="submit" { "Rename" }
                            }
                        }
                    }
                }
            }
            @if admin {
                form.filters #add-territory method="post" action="/web/territories" {
                    input type="hidden" name="csrf" value=(csrf);
                    div.field { label for="n-territory" { "New territory" } input #n-territory type="text" name="name" required; }
                    div.field.actions { button type="submit" { "Create territory" } }
                }
            }
        }
        @if admin {
            section aria-labelledby="h-log" {
                h2 #h-log { "Admin log" }
                @if d.log.is_empty() {
                    p.empty { "Nothing yet." }
                } @else {
                    div.table-wrap { table #admin-log {
                        thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "What" } th scope="col" { "On" } th scope="col" { "Detail" } } }
                        tbody { @for e in &d.log { tr {
                            td { (when(Some(e.at))) } td { (e.actor_name) } td { (e.action) } td { (e.subject_name) } td { (e.detail) }
                        } } }
                    } }
                }
            }
        }
    };
    page("People", Some(web.chrome()), body)
}

#[derive(Debug, Deserialize)]
pub(super) struct AddForm {
    csrf: Option<String>,
    #[serde(default)]
    email: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    role: String,
    team: Option<String>,
    territory: Option<String>,
    password: Option<String>,
}

fn shown_once(email: &str, password: Option<&str>, what: &str) -> String {
    match password {
        Some(p) => format!(
            "{what} {email}. Temporary password (shown only now; give it to them safely): {p}"
        ),
        None => format!("{what} {email}."),
    }
}

/// `POST /web/people/add`.
pub(super) async fn add(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    WebForm(form): WebForm<AddForm>,
) -> std::result::Result<Response, WebError> {
    web.check_csrf(form.csrf.as_deref())?;
    let result = async {
        let user = AddUser {
            email: form.email.clone(),
            display_name: form.display_name.clone(),
            role: parse_role(&form.role)?,
            team: opt_id("team", form.team.as_deref())?,
            territory: opt_id("territory", form.territory.as_deref())?,
            password: form.password.clone().filter(|p| !p.is_empty()),
        };
        let added = service::people::add_user(&ctx, &web.caller, user).await?;
        Ok(shown_once(
            &added.email,
            added.temporary_password.as_deref(),
            "Added",
        ))
    }
    .await;
    after(&ctx, &web, result).await
}

#[derive(Debug, Deserialize)]
pub(super) struct ChangeForm {
    csrf: Option<String>,
    role: Option<String>,
    team: Option<String>,
    territory: Option<String>,
}

/// `POST /web/people/{id}/change`: role, team and territory as chosen.
pub(super) async fn change(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(id): Path<String>,
    WebForm(form): WebForm<ChangeForm>,
) -> std::result::Result<Response, WebError> {
    web.check_csrf(form.csrf.as_deref())?;
    let id: UserId = id_of(&id)?;
    let result = async {
        let change = Change {
            role: form.role.as_deref().map(parse_role).transpose()?,
            team: Some(opt_id("team", form.team.as_deref())?),
            territory: Some(opt_id("territory", form.territory.as_deref())?),
        };
        let p = service::people::change(&ctx, &web.caller, id, change).await?;
        Ok(format!("Saved {}.", p.email))
    }
    .await;
    after(&ctx, &web, result).await
}

#[derive(Debug, Deserialize)]
pub(super) struct CsrfForm {
    csrf: Option<String>,
}

async fn toggle(
    ctx: Arc<Context>,
    web: WebUser,
    id: String,
    form: CsrfForm,
    disabled: bool,
) -> std::result::Result<Response, WebError> {
    web.check_csrf(form.csrf.as_deref())?;
    let id: UserId = id_of(&id)?;
    let result = service::people::set_disabled(&ctx, &web.caller, id, disabled)
        .await
        .map(|_| {
            if disabled {
                "Disabled: their sessions ended; their records stay.".to_owned()
            } else {
                "Enabled again.".to_owned()
            }
        });
    after(&ctx, &web, result).await
}

/// `POST /web/people/{id}/disable`.
pub(super) async fn disable(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(id): Path<String>,
    WebForm(form): WebForm<CsrfForm>,
) -> std::result::Result<Response, WebError> {
    toggle(ctx, web, id, form, true).await
}

/// `POST /web/people/{id}/enable`.
pub(super) async fn enable(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(id): Path<String>,
    WebForm(form): WebForm<CsrfForm>,
) -> std::result::Result<Response, WebError> {
    toggle(ctx, web, id, form, false).await
}

/// `POST /web/people/{id}/reset-password`: a temporary password, shown once.
pub(super) async fn reset_password(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(id): Path<String>,
    WebForm(form): WebForm<CsrfForm>,
) -> std::result::Result<Response, WebError> {
    web.check_csrf(form.csrf.as_deref())?;
    let id: UserId = id_of(&id)?;
    let result = service::people::reset_password(&ctx, &web.caller, id, None)
        .await
        .map(|c| {
            shown_once(
                &c.email,
                c.temporary_password.as_deref(),
                "Password reset for",
            )
        });
    after(&ctx, &web, result).await
}

#[derive(Debug, Deserialize)]
pub(super) struct NameForm {
    csrf: Option<String>,
    #[serde(default)]
    name: String,
}

/// `POST /web/teams`.
pub(super) async fn add_team(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    WebForm(form): WebForm<NameForm>,
) -> std::result::Result<Response, WebError> {
    web.check_csrf(form.csrf.as_deref())?;
    let result = service::people::add_team(&ctx, &web.caller, &form.name, None)
        .await
        .map(|_| format!("Team {} created.", form.name.trim()));
    after(&ctx, &web, result).await
}

/// `POST /web/teams/{id}/rename`.
pub(super) async fn rename_team(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(id): Path<String>,
    WebForm(form): WebForm<NameForm>,
) -> std::result::Result<Response, WebError> {
    web.check_csrf(form.csrf.as_deref())?;
    let id: TeamId = id_of(&id)?;
    let result = service::people::rename_team(&ctx, &web.caller, id, &form.name)
        .await
        .map(|()| format!("Team renamed to {}.", form.name.trim()));
    after(&ctx, &web, result).await
}

#[derive(Debug, Deserialize)]
pub(super) struct ManagerForm {
    csrf: Option<String>,
    user: Option<String>,
}

/// `POST /web/teams/{id}/manager`.
pub(super) async fn set_manager(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(id): Path<String>,
    WebForm(form): WebForm<ManagerForm>,
) -> std::result::Result<Response, WebError> {
    web.check_csrf(form.csrf.as_deref())?;
    let id: TeamId = id_of(&id)?;
    let result = async {
        let user: UserId = opt_id("user", form.user.as_deref())?
            .ok_or_else(|| Error::BadRequest("choose the team's manager".into()))?;
        service::people::set_manager(&ctx, &web.caller, id, user).await?;
        Ok("Manager set.".to_owned())
    }
    .await;
    after(&ctx, &web, result).await
}

/// `POST /web/territories`.
pub(super) async fn add_territory(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    WebForm(form): WebForm<NameForm>,
) -> std::result::Result<Response, WebError> {
    web.check_csrf(form.csrf.as_deref())?;
    let result = service::people::add_territory(&ctx, &web.caller, &form.name)
        .await
        .map(|_| format!("Territory {} created.", form.name.trim()));
    after(&ctx, &web, result).await
}

/// `POST /web/territories/{id}/rename`.
pub(super) async fn rename_territory(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(id): Path<String>,
    WebForm(form): WebForm<NameForm>,
) -> std::result::Result<Response, WebError> {
    web.check_csrf(form.csrf.as_deref())?;
    let id: TerritoryId = id_of(&id)?;
    let result = service::people::rename_territory(&ctx, &web.caller, id, &form.name)
        .await
        .map(|()| format!("Territory renamed to {}.", form.name.trim()));
    after(&ctx, &web, result).await
}

fn device_table(id: &str, rows: &[DeviceRow], revocable: bool) -> Markup {
    html! {
        div.table-wrap { table #(id) {
            thead { tr {
                th scope="col" { "User" }
                th scope="col" { "Platform" }
                th scope="col" { "App version" }
                th scope="col" { "Last seen" }
                th scope="col" { "Last sync" }
                th scope="col" { "Pending changes" }
                th scope="col" { "Oldest unsynced change" }
                th scope="col" { "State" }
            } }
            tbody { @for d in rows {
                tr data-device=(d.id) {
                    td { (d.user_name) }
                    td { (d.platform) }
                    td { (d.app_version) }
                    td { (when(Some(d.last_seen_at))) }
                    td { (when(d.last_sync_at)) }
                    td.num { (d.pending_changes) }
                    td { (d.oldest_unsynced_ms.map(|ms| format::date_time(DeviceTime::utc(ms))).unwrap_or_else(|| "—".into())) }
                    td.state {
                        @if d.revoked_at.is_some() {
                            span.badge.rejected { "Revoked " (when(d.revoked_at)) }
                        } @else if revocable {
                            a.button href=(format!("/web/devices/{}/revoke", d.id)) { "Revoke " span.visually-hidden { (d.user_name) "'s " (d.platform) " device" } }
                        } @else {
                            "Active"
                        }
                    }
                }
            } }
        } }
    }
}

/// `GET /web/devices`.
pub(super) async fn devices(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
) -> std::result::Result<Response, WebError> {
    let list = service::people::devices(&ctx, &web.caller).await?;
    let body = html! {
        h1 { "Devices" }
        p { "Revoking a device signs it out for good and wipes its data at its next request (changes it has not synced are lost)." }
        section aria-labelledby="h-apps" {
            h2 #h-apps { "Phones and tablets" }
            @if list.devices.is_empty() { p.empty { "No devices." } } @else { (device_table("devices", &list.devices, true)) }
        }
        section aria-labelledby="h-web" {
            h2 #h-web { "Browser sessions" }
            @if list.web_sessions.is_empty() { p.empty { "No browser sessions." } } @else { (device_table("web-sessions", &list.web_sessions, true)) }
        }
    };
    Ok(page("Devices", Some(web.chrome()), body).into_response())
}

/// `GET /web/devices/{id}/revoke`: the confirmation.
pub(super) async fn confirm_revoke(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(id): Path<String>,
) -> std::result::Result<Response, WebError> {
    let id: DeviceId = id_of(&id)?;
    let list = service::people::devices(&ctx, &web.caller).await?;
    let Some(d) = list
        .devices
        .iter()
        .chain(list.web_sessions.iter())
        .find(|d| d.id == id)
    else {
        return Err(WebError::Domain(Error::NotFound));
    };
    let body = html! {
        p.crumbs { a href="/web/devices" { "← Devices" } }
        h1 { "Revoke " (d.user_name) "'s " (d.platform) " device?" }
        p.notice.warn {
            "It is signed out for good and wipes its data at its next request. "
            @if d.pending_changes > 0 {
                strong { "It reported " (d.pending_changes) " change(s) not yet synced; they will be lost." }
            }
        }
        form #confirm-revoke method="post" action=(format!("/web/devices/{}/revoke", d.id)) {
            input type="hidden" name="csrf" value=(web.csrf);
            button type="submit" { "Revoke and wipe" }
            " "
            a href="/web/devices" { "Cancel" }
        }
    };
    Ok(page("Revoke a device", Some(web.chrome()), body).into_response())
}

/// `POST /web/devices/{id}/revoke`.
pub(super) async fn revoke(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(id): Path<String>,
    WebForm(form): WebForm<CsrfForm>,
) -> std::result::Result<Response, WebError> {
    web.check_csrf(form.csrf.as_deref())?;
    let id: DeviceId = id_of(&id)?;
    service::people::revoke_device(&ctx, &web.caller, id).await?;
    Ok(Redirect::to("/web/devices").into_response())
}
