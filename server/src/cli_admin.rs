//! The command line's administration of people: `fieldsync user
//! list|disable|enable|reset-password|set`, `fieldsync team
//! add|list|rename|set-manager`, `fieldsync territory add|list|rename` and
//! `fieldsync device list|revoke`. Each calls `service::people`, the use cases
//! of the pages and the JSON API, as the server itself (whoever runs the
//! command holds the database): the admin log names the command line.

use clap::{Args, Subcommand};
use fieldsync_server::domain::Caller;
use fieldsync_server::service::people::{self, Change};
use fieldsync_server::settings::SettingsArgs;

/// Which organisation, on which database.
#[derive(Debug, Args)]
pub struct OrgArgs {
    /// The organisation's slug.
    #[arg(long)]
    pub org: String,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

/// A user of an organisation, by email.
#[derive(Debug, Args)]
pub struct UserRef {
    /// The user's email.
    #[arg(long)]
    pub email: String,
    #[command(flatten)]
    pub at: OrgArgs,
}

/// `fieldsync user reset-password`.
#[derive(Debug, Args)]
pub struct ResetPassword {
    #[command(flatten)]
    pub user: UserRef,
    /// The new password [default: a temporary one, printed once].
    #[arg(long, env = "FIELDSYNC_USER_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

/// `fieldsync user set`.
#[derive(Debug, Args)]
pub struct UserSet {
    #[command(flatten)]
    pub user: UserRef,
    /// New role: rep, technician, manager or admin.
    #[arg(long)]
    pub role: Option<String>,
    /// New team, by name ("" for none).
    #[arg(long)]
    pub team: Option<String>,
    /// New territory, by name ("" for none).
    #[arg(long)]
    pub territory: Option<String>,
}

/// Teams.
#[derive(Debug, Subcommand)]
pub enum TeamCommand {
    /// Create a team.
    Add(TeamAdd),
    /// List the teams with their manager and size.
    List(OrgArgs),
    /// Rename a team.
    Rename(Rename),
    /// Name a team's manager (a manager moves into the team).
    SetManager(SetManager),
}

/// `fieldsync team add`.
#[derive(Debug, Args)]
pub struct TeamAdd {
    /// The team's name.
    pub name: String,
    /// Its manager's email.
    #[arg(long)]
    pub manager: Option<String>,
    #[command(flatten)]
    pub at: OrgArgs,
}

/// `fieldsync team|territory rename`.
#[derive(Debug, Args)]
pub struct Rename {
    /// The current name.
    pub name: String,
    /// The new name.
    #[arg(long)]
    pub to: String,
    #[command(flatten)]
    pub at: OrgArgs,
}

/// `fieldsync team set-manager`.
#[derive(Debug, Args)]
pub struct SetManager {
    /// The team's name.
    pub name: String,
    /// The manager's email.
    #[arg(long)]
    pub manager: String,
    #[command(flatten)]
    pub at: OrgArgs,
}

/// Territories.
#[derive(Debug, Subcommand)]
pub enum TerritoryCommand {
    /// Create a territory.
    Add(Named),
    /// List the territories.
    List(OrgArgs),
    /// Rename a territory.
    Rename(Rename),
}

/// A name in an organisation.
#[derive(Debug, Args)]
pub struct Named {
    /// The name.
    pub name: String,
    #[command(flatten)]
    pub at: OrgArgs,
}

/// Devices.
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// List every device with its user, last sync and backlog.
    List(OrgArgs),
    /// Revoke a device: it wipes its data at its next request.
    Revoke(Named),
}

/// One administrative command.
#[derive(Debug)]
pub enum Admin {
    /// `user list`.
    UserList(OrgArgs),
    /// `user disable|enable`.
    UserToggle(UserRef, bool),
    /// `user reset-password`.
    ResetPassword(ResetPassword),
    /// `user set`.
    UserSet(UserSet),
    /// `team ...`.
    Team(TeamCommand),
    /// `territory ...`.
    Territory(TerritoryCommand),
    /// `device ...`.
    Device(DeviceCommand),
}

impl Admin {
    fn at(&self) -> &OrgArgs {
        match self {
            Admin::UserList(a) => a,
            Admin::UserToggle(u, _) => &u.at,
            Admin::ResetPassword(r) => &r.user.at,
            Admin::UserSet(s) => &s.user.at,
            Admin::Team(
                TeamCommand::Add(TeamAdd { at, .. })
                | TeamCommand::Rename(Rename { at, .. })
                | TeamCommand::SetManager(SetManager { at, .. }),
            )
            | Admin::Territory(
                TerritoryCommand::Add(Named { at, .. })
                | TerritoryCommand::Rename(Rename { at, .. }),
            )
            | Admin::Device(DeviceCommand::Revoke(Named { at, .. })) => at,
            Admin::Team(TeamCommand::List(a))
            | Admin::Territory(TerritoryCommand::List(a))
            | Admin::Device(DeviceCommand::List(a)) => a,
        }
    }
}

fn time(secs: Option<i64>) -> String {
    secs.map(|s| {
        fieldsync_server::web::format::date_time(fieldsync_core::model::DeviceTime::utc(
            s.saturating_mul(1_000),
        ))
    })
    .unwrap_or_else(|| "-".into())
}

/// Runs one administrative command on the organisation it names.
pub async fn run(command: Admin) -> anyhow::Result<()> {
    let settings = command.at().settings.resolve()?;
    let db = fieldsync_server::open_database(&settings).await?;
    let result = async {
        let ctx = crate::command_context(&settings, &db).await?;
        let caller = people::command_line(&ctx, &command.at().org).await?;
        execute(&ctx, &caller, command).await
    }
    .await;
    db.close().await;
    result
}

async fn execute(
    ctx: &fieldsync_server::Context,
    caller: &Caller,
    command: Admin,
) -> anyhow::Result<()> {
    match command {
        Admin::UserList(_) => {
            for p in people::people(ctx, caller).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    p.email,
                    p.display_name,
                    p.role.as_str(),
                    p.team_name.as_deref().unwrap_or("-"),
                    p.territory_name.as_deref().unwrap_or("-"),
                    if p.disabled { "disabled" } else { "active" },
                    time(p.last_active_at)
                );
            }
        }
        Admin::UserToggle(u, disable) => {
            let id = people::user_by_email(ctx, caller, &u.email).await?;
            let changed = people::set_disabled(ctx, caller, id, disable).await?;
            let state = if disable { "disabled" } else { "enabled" };
            let note = if changed { "" } else { " (it already was)" };
            println!(
                "fieldsync: {} in {} (id {id}) is {state}{note}",
                u.email.trim().to_lowercase(),
                u.at.org
            );
        }
        Admin::ResetPassword(r) => {
            let id = people::user_by_email(ctx, caller, &r.user.email).await?;
            let done = people::reset_password(ctx, caller, id, r.password).await?;
            match done.temporary_password {
                Some(p) => println!(
                    "fieldsync: password of {} reset; their sessions ended. Temporary password (shown once): {p}",
                    done.email
                ),
                None => println!(
                    "fieldsync: password of {} set; their sessions ended",
                    done.email
                ),
            }
        }
        Admin::UserSet(s) => {
            let id = people::user_by_email(ctx, caller, &s.user.email).await?;
            let team = match s.team.as_deref().map(str::trim) {
                None => None,
                Some("") => Some(None),
                Some(name) => Some(Some(people::team_named(ctx, caller, name).await?)),
            };
            let territory = match s.territory.as_deref().map(str::trim) {
                None => None,
                Some("") => Some(None),
                Some(name) => Some(Some(people::territory_named(ctx, caller, name).await?)),
            };
            let role = s
                .role
                .as_deref()
                .map(fieldsync_server::domain::people::parse_role)
                .transpose()?;
            let p = people::change(
                ctx,
                caller,
                id,
                Change {
                    role,
                    team,
                    territory,
                },
            )
            .await?;
            println!(
                "fieldsync: {} is now {}, team {}, territory {}",
                p.email,
                p.role.as_str(),
                p.team_name.as_deref().unwrap_or("none"),
                p.territory_name.as_deref().unwrap_or("none")
            );
        }
        Admin::Team(TeamCommand::Add(t)) => {
            let manager = match &t.manager {
                Some(email) => Some(people::user_by_email(ctx, caller, email).await?),
                None => None,
            };
            let id = people::add_team(ctx, caller, &t.name, manager).await?;
            println!("fieldsync: created team {} (id {id})", t.name.trim());
        }
        Admin::Team(TeamCommand::List(_)) => {
            for t in people::teams(ctx, caller).await? {
                println!(
                    "{}\t{}\tmanager: {}\t{} member(s)",
                    t.id,
                    t.name,
                    t.manager_name.as_deref().unwrap_or("-"),
                    t.members
                );
            }
        }
        Admin::Team(TeamCommand::Rename(r)) => {
            let id = people::team_named(ctx, caller, &r.name).await?;
            people::rename_team(ctx, caller, id, &r.to).await?;
            println!(
                "fieldsync: renamed team {} to {}",
                r.name.trim(),
                r.to.trim()
            );
        }
        Admin::Team(TeamCommand::SetManager(m)) => {
            let id = people::team_named(ctx, caller, &m.name).await?;
            let user = people::user_by_email(ctx, caller, &m.manager).await?;
            people::set_manager(ctx, caller, id, user).await?;
            println!(
                "fieldsync: {} manages team {}",
                m.manager.trim().to_lowercase(),
                m.name.trim()
            );
        }
        Admin::Territory(TerritoryCommand::Add(t)) => {
            let id = people::add_territory(ctx, caller, &t.name).await?;
            println!("fieldsync: created territory {} (id {id})", t.name.trim());
        }
        Admin::Territory(TerritoryCommand::List(_)) => {
            for t in people::territories(ctx, caller).await? {
                println!("{}\t{}\t{} member(s)", t.id, t.name, t.members);
            }
        }
        Admin::Territory(TerritoryCommand::Rename(r)) => {
            let id = people::territory_named(ctx, caller, &r.name).await?;
            people::rename_territory(ctx, caller, id, &r.to).await?;
            println!(
                "fieldsync: renamed territory {} to {}",
                r.name.trim(),
                r.to.trim()
            );
        }
        Admin::Device(DeviceCommand::List(_)) => {
            let list = people::devices(ctx, caller).await?;
            for d in list.devices.iter().chain(list.web_sessions.iter()) {
                println!(
                    "{}\t{}\t{}\t{}\tlast sync {}\t{} pending\toldest unsynced {}\t{}",
                    d.id,
                    d.user_name,
                    d.platform,
                    d.app_version,
                    time(d.last_sync_at),
                    d.pending_changes,
                    time(d.oldest_unsynced_ms.map(|ms| ms.div_euclid(1_000))),
                    if d.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    }
                );
            }
        }
        Admin::Device(DeviceCommand::Revoke(d)) => {
            let id = d
                .name
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("{:?} is not a device id", d.name))?;
            let revoked = people::revoke_device(ctx, caller, id).await?;
            let note = if revoked { "" } else { " (it already was)" };
            println!(
                "fieldsync: device {id} is revoked{note}; it wipes its data at its next request"
            );
        }
    }
    Ok(())
}
