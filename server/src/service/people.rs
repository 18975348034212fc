//! Administration of people and devices, one use case per action, for the
//! pages (`web::people`), the JSON API (`http::people`) and the command line
//! (`fieldsync user|team|territory|device ...`) alike:
//!
//! - people: list (with team, territory and last activity), add (with a
//!   password, or an invitation: a temporary password made here and shown
//!   once), disable and enable again, reset a password, change role, team
//!   and territory;
//! - teams (create, rename, name their manager) and territories (create,
//!   rename);
//! - devices: list with their sync health (browser sessions apart) and revoke;
//! - the admin log: every action above, who, when, on whom (never a password).
//!
//! Who may is `domain::people` (and `domain::devices` for devices): an
//! administrator everything in their organisation; a manager lists their
//! team's people and devices and revokes their reps' and technicians' devices.
//!
//! **Sessions.** Disabling a user or resetting their password ends their
//! sessions: refresh tokens revoked, browser sessions ended, live connections
//! closed on every node. A disabled user's access tokens also stop at their
//! next request (`account_disabled`). Their records stay, attributed to them.
//!
//! **Read scope.** A new role, team or territory changes what a user reads
//! (their principals, `domain::caller::principals_of`). The change is stored
//! with a log position of its own (`db::people::change_user`), and the pull
//! of each of their devices that passes it sends the whole history of the
//! records they may now read and names in `removed` those they no longer may
//! (`db::records::pull`), like a grant or a revocation of one record.

use fieldsync_core::model::Role;
use fieldsync_core::{DeviceId, OrgId, TeamId, TerritoryId, UserId};
use serde::Serialize;

use super::Context;
use super::accounts::{self, NewUser};
use crate::db;
use crate::db::now_secs;
use crate::db::people::{Named, UserChange};
use crate::domain::accounts::{self as account_rules, AccountError};
use crate::domain::caller::principals_of;
use crate::domain::devices::{Owner, may_manage};
use crate::domain::people::{self as rules, Subject};
use crate::domain::{Caller, Error, Result};
use crate::live::Ended;

pub use crate::db::people::{AdminEntry, DeviceRow, PersonRow, TeamRow, TerritoryRow};

/// Most admin log entries one read returns.
pub const MAX_LOG_ENTRIES: i64 = 500;

/// A user to add.
#[derive(Debug, Clone)]
pub struct AddUser {
    /// Email, unique in the organisation.
    pub email: String,
    /// Name to show; empty means the part of the email before `@`.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// Team.
    pub team: Option<TeamId>,
    /// Territory.
    pub territory: Option<TerritoryId>,
    /// Their password; `None` invites them with a temporary password made here.
    pub password: Option<String>,
}

/// A user just added, or whose password was reset.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Credentials {
    /// The user.
    #[schema(value_type = uuid::Uuid)]
    pub id: UserId,
    /// Their email.
    pub email: String,
    /// The temporary password made for them, shown this once (it is stored
    /// only hashed); `None` when the administrator chose the password.
    pub temporary_password: Option<String>,
}

/// A change of a user's role, team or territory; `None` keeps the value.
#[derive(Debug, Clone, Default)]
pub struct Change {
    /// New role.
    pub role: Option<Role>,
    /// New team (`Some(None)`: no team).
    pub team: Option<Option<TeamId>>,
    /// New territory (`Some(None)`: no territory).
    pub territory: Option<Option<TerritoryId>>,
}

/// The devices the caller may see: app installations, and browser sessions
/// apart.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Devices {
    /// Phones and tablets (everything but browser sessions), last seen first.
    pub devices: Vec<DeviceRow>,
    /// Browser sessions of the managers' pages (platform `web`).
    pub web_sessions: Vec<DeviceRow>,
}

/// A temporary password: [`rules::TEMPORARY_PASSWORD_CHARS`] characters from
/// an alphabet without look-alikes, strong by the password rules.
fn temporary_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    loop {
        let mut bytes = [0u8; rules::TEMPORARY_PASSWORD_CHARS];
        rand::fill(&mut bytes[..]);
        let password: String = bytes
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
            .collect();
        if account_rules::check_password_strength(&password).is_ok() {
            return password;
        }
    }
}

/// Who the admin log names for `caller`.
fn actor_name(caller: &Caller) -> String {
    if caller.role() == Role::Server {
        "command line".to_owned()
    } else {
        caller.display_name.clone()
    }
}

/// Appends to the admin log; a failure is logged, the action stands.
async fn audit(
    ctx: &Context,
    caller: &Caller,
    action: &str,
    subject: (&str, String, String),
    detail: String,
) {
    let entry = AdminEntry {
        at: now_secs(),
        actor_id: caller.user().to_string(),
        actor_name: actor_name(caller),
        action: action.to_owned(),
        subject_kind: subject.0.to_owned(),
        subject_id: subject.1,
        subject_name: subject.2,
        detail,
    };
    tracing::info!(action, by = %caller.user(), subject = %entry.subject_id, "administration");
    if let Err(e) = db::people::log_admin(&ctx.db, caller.org, &entry).await {
        tracing::warn!(error = %e, action, "could not write the admin log");
    }
}

/// The user `id` of the caller's organisation (`not_found` otherwise).
async fn subject(ctx: &Context, caller: &Caller, id: UserId) -> Result<accounts::UserRow> {
    match db::accounts::user_by_id(&ctx.db, id).await? {
        Some(u) if u.org == caller.org => Ok(u),
        _ => Err(Error::NotFound),
    }
}

fn subject_of(u: &accounts::UserRow) -> Subject {
    Subject {
        id: u.id,
        org: u.org,
        role: u.role,
        disabled: u.disabled,
    }
}

/// Checks that team `id` is of the caller's organisation, answering its name.
async fn team_name(ctx: &Context, caller: &Caller, id: TeamId) -> Result<String> {
    db::people::name_of(&ctx.db, Named::Team, caller.org, *id.as_uuid())
        .await?
        .ok_or_else(|| Error::BadRequest(format!("there is no team {id}")))
}

/// Checks that territory `id` is of the caller's organisation, answering its name.
async fn territory_name(ctx: &Context, caller: &Caller, id: TerritoryId) -> Result<String> {
    db::people::name_of(&ctx.db, Named::Territory, caller.org, *id.as_uuid())
        .await?
        .ok_or_else(|| Error::BadRequest(format!("there is no territory {id}")))
}

/// The people the caller may see: the organisation's for an administrator,
/// their team's for a manager.
pub async fn people(ctx: &Context, caller: &Caller) -> Result<Vec<PersonRow>> {
    let team = rules::listing_scope(caller)?;
    Ok(db::people::list_users(&ctx.db, caller.org, team).await?)
}

/// Adds a user (administrators). Without a password, a temporary one is made
/// and answered once.
pub async fn add_user(ctx: &Context, caller: &Caller, user: AddUser) -> Result<Credentials> {
    rules::may_administer(caller)?;
    if user.role == Role::Server {
        return Err(Error::BadRequest(
            "use rep, technician, manager or admin".into(),
        ));
    }
    let mut names = Vec::new();
    if let Some(team) = user.team {
        names.push(format!("team {}", team_name(ctx, caller, team).await?));
    }
    if let Some(territory) = user.territory {
        names.push(format!(
            "territory {}",
            territory_name(ctx, caller, territory).await?
        ));
    }
    let (password, temporary) = match user.password {
        Some(p) => (p, None),
        None => {
            let p = temporary_password();
            (p.clone(), Some(p))
        }
    };
    let id = accounts::create_user(
        &ctx.db,
        NewUser {
            org: caller.org,
            email: user.email.clone(),
            display_name: user.display_name,
            role: user.role,
            team: user.team,
            territory: user.territory,
            password,
        },
    )
    .await?;
    let email = account_rules::normalise_email(&user.email)?;
    let how = if temporary.is_some() {
        "invited with a temporary password"
    } else {
        "added with a password"
    };
    let mut detail = format!("{how}, as {}", user.role.as_str());
    for n in names {
        detail.push_str(", ");
        detail.push_str(&n);
    }
    audit(
        ctx,
        caller,
        "user.add",
        ("user", id.to_string(), email.clone()),
        detail,
    )
    .await;
    Ok(Credentials {
        id,
        email,
        temporary_password: temporary,
    })
}

/// Ends every session of `user`, on every node: refresh tokens, browser
/// sessions, live connections.
async fn end_sessions(ctx: &Context, user: UserId) -> Result<()> {
    db::people::end_sessions(&ctx.db, user).await?;
    accounts::end_live_connections(ctx, user, Ended::User(user)).await;
    Ok(())
}

/// Disables (`true`) or enables again (`false`) the account of `id`
/// (administrators; never their own, never the last active administrator).
/// Disabling ends their sessions; their records stay. Answers whether this
/// call changed the account.
pub async fn set_disabled(
    ctx: &Context,
    caller: &Caller,
    id: UserId,
    disabled: bool,
) -> Result<bool> {
    let target = subject(ctx, caller, id).await?;
    if disabled {
        let admins = db::people::active_admins(&ctx.db, caller.org).await?;
        rules::may_disable(caller, &subject_of(&target), admins)?;
    } else {
        rules::check_target(caller, &subject_of(&target))?;
    }
    let changed = db::accounts::set_disabled(&ctx.db, id, disabled).await?;
    if disabled {
        // Even when it already was: a session started meanwhile ends too.
        end_sessions(ctx, id).await?;
    }
    if changed {
        let action = if disabled {
            "user.disable"
        } else {
            "user.enable"
        };
        let detail = if disabled {
            "account disabled; sessions ended, records kept"
        } else {
            "account enabled again"
        };
        audit(
            ctx,
            caller,
            action,
            ("user", id.to_string(), target.email.clone()),
            detail.into(),
        )
        .await;
    }
    Ok(changed)
}

/// Sets a new password for `id` (administrators, for someone else): the one
/// given, or a temporary one made here and answered once. Ends their sessions.
pub async fn reset_password(
    ctx: &Context,
    caller: &Caller,
    id: UserId,
    password: Option<String>,
) -> Result<Credentials> {
    let target = subject(ctx, caller, id).await?;
    rules::may_reset_password(caller, &subject_of(&target))?;
    let (password, temporary) = match password {
        Some(p) => {
            account_rules::check_password_strength(&p)?;
            (p, None)
        }
        None => {
            let p = temporary_password();
            (p.clone(), Some(p))
        }
    };
    let hash = accounts::hash_password(password).await?;
    db::people::set_password(&ctx.db, id, &hash).await?;
    end_sessions(ctx, id).await?;
    let detail = if temporary.is_some() {
        "password reset to a temporary one; sessions ended"
    } else {
        "password set by an administrator; sessions ended"
    };
    audit(
        ctx,
        caller,
        "user.reset_password",
        ("user", id.to_string(), target.email.clone()),
        detail.into(),
    )
    .await;
    Ok(Credentials {
        id,
        email: target.email,
        temporary_password: temporary,
    })
}

/// Changes the role, team or territory of `id` (administrators). When this
/// changes what they read, their devices receive what they now may read and
/// drop what they no longer may at their next sync. Answers the user as
/// listed afterwards.
pub async fn change(
    ctx: &Context,
    caller: &Caller,
    id: UserId,
    change: Change,
) -> Result<PersonRow> {
    let target = subject(ctx, caller, id).await?;
    let role = change.role.unwrap_or(target.role);
    let admins = db::people::active_admins(&ctx.db, caller.org).await?;
    rules::may_set_role(caller, &subject_of(&target), role, admins)?;
    let team = change.team.unwrap_or(target.team);
    let territory = change.territory.unwrap_or(target.territory);
    let mut detail = Vec::new();
    if role != target.role {
        detail.push(format!("role {} → {}", target.role.as_str(), role.as_str()));
    }
    if team != target.team {
        let name = match team {
            Some(t) => team_name(ctx, caller, t).await?,
            None => "none".into(),
        };
        detail.push(format!("team → {name}"));
    }
    if territory != target.territory {
        let name = match territory {
            Some(t) => territory_name(ctx, caller, t).await?,
            None => "none".into(),
        };
        detail.push(format!("territory → {name}"));
    }
    if !detail.is_empty() {
        let before = rules::principal_set(&principals_of(
            caller.org,
            id,
            target.role,
            target.team,
            target.territory,
        ));
        let after = rules::principal_set(&principals_of(caller.org, id, role, team, territory));
        let scope = (before != after).then_some((before, after));
        let row = UserChange {
            user: id,
            org: caller.org,
            role,
            team,
            territory,
            scope,
        };
        let seq = {
            // SQLite has one writer: wait for it here, not in the busy handler.
            let _writer = ctx.gate.enter(&ctx.db).await;
            db::people::change_user(&ctx.db, &row).await?
        };
        if let Some(seq) = seq {
            detail.push("their devices receive the new scope at their next sync".into());
            nudge(ctx, caller.org, id, seq).await;
        }
        audit(
            ctx,
            caller,
            "user.change",
            ("user", id.to_string(), target.email.clone()),
            detail.join("; "),
        )
        .await;
    }
    db::people::list_users(&ctx.db, caller.org, None)
        .await?
        .into_iter()
        .find(|p| p.id == id)
        .ok_or(Error::NotFound)
}

/// Tells the live connections of `user`'s devices (on every node) that the
/// feed moved to `seq`, so they pull their new scope now rather than at their
/// next scheduled sync. A failure is logged: they get it at that sync anyway.
async fn nudge(ctx: &Context, org: OrgId, user: UserId, seq: i64) {
    let principals = std::collections::BTreeSet::from([format!("u:{user}")]);
    let note = crate::domain::note::Note::new(org, seq, None, principals);
    match &ctx.db {
        db::Database::Sqlite(_) => ctx.hub.publish(note),
        db::Database::Postgres(_) => {
            if let Err(e) = db::notify::send(&ctx.db, &note).await {
                tracing::warn!(error = %e, "could not tell live connections of a scope change");
            }
        }
    }
}

/// The organisation's teams (administrators; a manager sees their own team).
pub async fn teams(ctx: &Context, caller: &Caller) -> Result<Vec<TeamRow>> {
    let only = rules::listing_scope(caller)?;
    let all = db::people::list_teams(&ctx.db, caller.org).await?;
    Ok(all
        .into_iter()
        .filter(|t| only.is_none_or(|o| o == t.id))
        .collect())
}

/// The organisation's territories (managers and administrators).
pub async fn territories(ctx: &Context, caller: &Caller) -> Result<Vec<TerritoryRow>> {
    rules::listing_scope(caller)?;
    Ok(db::people::list_territories(&ctx.db, caller.org).await?)
}

/// A checked, trimmed name of a team or territory.
fn checked_name(field: &'static str, name: &str) -> Result<String> {
    account_rules::check_name(field, name)?;
    Ok(name.trim().to_owned())
}

fn taken(what: &str, name: &str, e: db::DbError) -> Error {
    if e.unique_violation().is_some() {
        Error::Conflict(format!("there is already a {what} called {name:?}"))
    } else {
        e.into()
    }
}

/// Creates a team (administrators), with its manager when given.
pub async fn add_team(
    ctx: &Context,
    caller: &Caller,
    name: &str,
    manager: Option<UserId>,
) -> Result<TeamId> {
    rules::may_administer(caller)?;
    let name = checked_name("team name", name)?;
    if let Some(m) = manager {
        rules::may_manage_team(&subject_of(&subject(ctx, caller, m).await?))?;
    }
    let id = db::people::insert_named(&ctx.db, Named::Team, caller.org, &name)
        .await
        .map(TeamId::from_uuid)
        .map_err(|e| taken("team", &name, e))?;
    audit(
        ctx,
        caller,
        "team.add",
        ("team", id.to_string(), name.clone()),
        "team created".into(),
    )
    .await;
    if let Some(m) = manager {
        set_manager(ctx, caller, id, m).await?;
    }
    Ok(id)
}

/// Renames a team (administrators).
pub async fn rename_team(ctx: &Context, caller: &Caller, id: TeamId, name: &str) -> Result<()> {
    rules::may_administer(caller)?;
    let old = team_name(ctx, caller, id).await?;
    let name = checked_name("team name", name)?;
    db::people::rename_named(&ctx.db, Named::Team, caller.org, *id.as_uuid(), &name)
        .await
        .map_err(|e| taken("team", &name, e))?;
    audit(
        ctx,
        caller,
        "team.rename",
        ("team", id.to_string(), name.clone()),
        format!("renamed from {old:?}"),
    )
    .await;
    Ok(())
}

/// Names `manager` (a manager or administrator) the manager of `team`
/// (administrators). A manager moves into the team they manage (their devices
/// then receive its records, see the module's notes on read scope).
pub async fn set_manager(
    ctx: &Context,
    caller: &Caller,
    team: TeamId,
    manager: UserId,
) -> Result<()> {
    rules::may_administer(caller)?;
    let name = team_name(ctx, caller, team).await?;
    let target = subject(ctx, caller, manager).await?;
    rules::may_manage_team(&subject_of(&target))?;
    if target.role == Role::Manager && target.team != Some(team) {
        change(
            ctx,
            caller,
            manager,
            Change {
                team: Some(Some(team)),
                ..Change::default()
            },
        )
        .await?;
    }
    db::people::set_team_manager(&ctx.db, team, Some(manager)).await?;
    audit(
        ctx,
        caller,
        "team.set_manager",
        ("team", team.to_string(), name),
        format!("manager → {}", target.email),
    )
    .await;
    Ok(())
}

/// Creates a territory (administrators).
pub async fn add_territory(ctx: &Context, caller: &Caller, name: &str) -> Result<TerritoryId> {
    rules::may_administer(caller)?;
    let name = checked_name("territory name", name)?;
    let id = db::people::insert_named(&ctx.db, Named::Territory, caller.org, &name)
        .await
        .map(TerritoryId::from_uuid)
        .map_err(|e| taken("territory", &name, e))?;
    audit(
        ctx,
        caller,
        "territory.add",
        ("territory", id.to_string(), name),
        "territory created".into(),
    )
    .await;
    Ok(id)
}

/// Renames a territory (administrators).
pub async fn rename_territory(
    ctx: &Context,
    caller: &Caller,
    id: TerritoryId,
    name: &str,
) -> Result<()> {
    rules::may_administer(caller)?;
    let old = territory_name(ctx, caller, id).await?;
    let name = checked_name("territory name", name)?;
    db::people::rename_named(&ctx.db, Named::Territory, caller.org, *id.as_uuid(), &name)
        .await
        .map_err(|e| taken("territory", &name, e))?;
    audit(
        ctx,
        caller,
        "territory.rename",
        ("territory", id.to_string(), name),
        format!("renamed from {old:?}"),
    )
    .await;
    Ok(())
}

/// The devices the caller may see, with their sync health: every device of
/// the organisation for an administrator; their own and their team's reps'
/// and technicians' for a manager (the ones they may revoke).
pub async fn devices(ctx: &Context, caller: &Caller) -> Result<Devices> {
    let team = rules::listing_scope(caller)?;
    let rows = db::people::list_devices(&ctx.db, caller.org, team).await?;
    let (web_sessions, devices) = rows
        .into_iter()
        .filter(|d| {
            may_manage(
                caller,
                Owner {
                    id: d.user_id,
                    team: d.team_id,
                    role: d.user_role,
                },
            )
        })
        .partition(|d| d.platform == "web");
    Ok(Devices {
        devices,
        web_sessions,
    })
}

/// Revokes device `id` (see `service::devices::revoke`: the device wipes its
/// data at its next request) and writes it in the admin log. Answers whether
/// this call revoked it.
pub async fn revoke_device(ctx: &Context, caller: &Caller, id: DeviceId) -> Result<bool> {
    let revoked = super::devices::revoke(ctx, caller, id).await?;
    if revoked {
        let found = db::devices::list(&ctx.db, caller.org, None, Some(id)).await?;
        let name = found
            .first()
            .map(|(d, _)| format!("{} ({})", d.user_name, d.platform))
            .unwrap_or_default();
        audit(
            ctx,
            caller,
            "device.revoke",
            ("device", id.to_string(), name),
            "revoked: the device wipes its data at its next request".into(),
        )
        .await;
    }
    Ok(revoked)
}

/// The newest entries of the admin log (administrators).
pub async fn admin_log(ctx: &Context, caller: &Caller, limit: i64) -> Result<Vec<AdminEntry>> {
    rules::may_administer(caller)?;
    Ok(db::people::admin_log(&ctx.db, caller.org, limit.clamp(1, MAX_LOG_ENTRIES)).await?)
}

/// The user of the caller's organisation with this email (the command line
/// names people by email).
pub async fn user_by_email(ctx: &Context, caller: &Caller, email: &str) -> Result<UserId> {
    let email = account_rules::normalise_email(email)?;
    db::accounts::find_user(&ctx.db, caller.org, &email)
        .await?
        .map(|u| u.id)
        .ok_or_else(|| Error::BadRequest(format!("there is no user {email}")))
}

/// The team of the caller's organisation called `name`.
pub async fn team_named(ctx: &Context, caller: &Caller, name: &str) -> Result<TeamId> {
    db::people::id_named(&ctx.db, Named::Team, caller.org, name.trim())
        .await?
        .map(TeamId::from_uuid)
        .ok_or_else(|| Error::BadRequest(format!("there is no team called {:?}", name.trim())))
}

/// The territory of the caller's organisation called `name`.
pub async fn territory_named(ctx: &Context, caller: &Caller, name: &str) -> Result<TerritoryId> {
    db::people::id_named(&ctx.db, Named::Territory, caller.org, name.trim())
        .await?
        .map(TerritoryId::from_uuid)
        .ok_or_else(|| Error::BadRequest(format!("there is no territory called {:?}", name.trim())))
}

/// The organisation `slug` as the command line acts on it: the server itself
/// (whoever runs the command holds the database), named "command line" in
/// the admin log.
pub async fn command_line(ctx: &Context, slug: &str) -> Result<Caller> {
    let org: OrgId = db::accounts::org_by_slug(&ctx.db, slug)
        .await?
        .ok_or_else(|| AccountError::UnknownOrg(slug.into()))?;
    Ok(Caller::server(org))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_passwords_are_strong_and_differ() {
        let a = temporary_password();
        let b = temporary_password();
        assert_eq!(a.chars().count(), rules::TEMPORARY_PASSWORD_CHARS);
        assert!(account_rules::check_password_strength(&a).is_ok());
        assert_ne!(a, b);
    }
}
