//! The `fieldsync` command: run the server, apply migrations, and the first
//! administration steps (create an organisation with its admin, add users).
//! Every failure prints one `fieldsync: error: …` line and exits non-zero.

mod cli_admin;

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use fieldsync_core::model::Role;
use fieldsync_server::domain::accounts::{check_password_strength, normalise_email};
use fieldsync_server::service::accounts::{self, NewUser};
use fieldsync_server::service::auth;
use fieldsync_server::{AuthKeys, Settings, SettingsArgs, launch_with_tcp_listener, open_database};
use tracing_subscriber::EnvFilter;

/// The server allocates and frees in many small pieces on many threads (an
/// Automerge document's columns, the rows of a group commit), and glibc's
/// allocator spent a fifth of the push path's CPU doing so; jemalloc takes
/// an eighth less of the server's CPU per pushed change and less memory per
/// idle live connection (docs/benchmarks.md, "The push path, ninth round").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Fieldsync: offline-first sync for field sales and field service.
#[derive(Debug, Parser)]
#[command(name = "fieldsync", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format: `text` for people, `json` (one object per line, with the
    /// request's span fields) for a log collector. The level comes from `FIELDSYNC_LOG`.
    #[arg(
        long,
        global = true,
        env = "FIELDSYNC_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (SQLite in ./data unless --database-url is given).
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate(SettingsArgs),
    /// Manage organisations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage teams.
    #[command(subcommand)]
    Team(cli_admin::TeamCommand),
    /// Manage territories.
    #[command(subcommand)]
    Territory(cli_admin::TerritoryCommand),
    /// List and revoke devices.
    #[command(subcommand)]
    Device(cli_admin::DeviceCommand),
    /// Manage the stored token-signing keys (rotate without logging anyone out).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Attachment upkeep.
    #[command(subcommand)]
    Attachments(AttachmentsCommand),
    /// Visit upkeep.
    #[command(subcommand)]
    Visits(VisitsCommand),
    /// Close or cancel service jobs on a manager's or administrator's behalf.
    #[command(subcommand)]
    Job(JobCommand),
    /// Technicians' van stock: replenish a van on a manager's or
    /// administrator's behalf.
    #[command(subcommand)]
    Van(VanCommand),
    /// The office's decisions on orders (approve, reject, record fulfilment),
    /// for scripts: the same rules and the same push path as the pages.
    #[command(subcommand)]
    Order(OrderCommand),
    /// Checklist templates: list families and versions, import a definition
    /// (JSON or TOML), publish a draft, start the next version of a
    /// published one, as a manager or administrator (`--as`).
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Import accounts, contacts, products or a price list from a CSV file
    /// (all or nothing; every error listed by line and column).
    Import(ImportArgs),
    /// Export accounts, contacts, products or price lists as the CSV file an
    /// import reads.
    Export(ExportArgs),
    /// Seed a demo organisation (a manager, three reps, two technicians, accounts,
    /// a week of visits, orders and jobs) and print its logins.
    Demo(DemoArgs),
    /// Write a consistent copy of the embedded (SQLite) database to a new file,
    /// while the server runs. For PostgreSQL use pg_dump or point-in-time
    /// recovery (docs/operations.md).
    Backup(BackupArgs),
    /// Put the embedded (SQLite) database back from a backup file, and tell
    /// devices so: at their next sync they bring back what they sent after it.
    /// Stop every server node first.
    Restore(RestoreArgs),
    /// After restoring PostgreSQL with its own tools: tell devices the database
    /// went back in time, so they bring back what they sent after the backup.
    MarkRestored(MarkRestoredArgs),
    /// Erase a contact's or a user's personal data everywhere, history and
    /// devices included (docs/privacy.md), or list the erasures.
    #[command(subcommand)]
    Erase(EraseCommand),
    /// Everything held about one contact, as JSON (a data subject's access
    /// request).
    ExportPerson(ExportPersonArgs),
}

#[derive(Debug, Subcommand)]
enum EraseCommand {
    /// Erase a contact: their record, the records naming them or holding one
    /// of their values, photos of them and signatures they drew.
    Contact(EraseArgs),
    /// Erase a user (a rep who left): their GPS fixes and name; the account
    /// stays, pseudonymised and disabled.
    User(EraseArgs),
    /// The erasure log, newest first.
    Log(EraseLogArgs),
}

#[derive(Debug, Args)]
struct EraseArgs {
    /// The contact's record id or the user's id.
    id: String,
    /// Why (kept in the erasure log), e.g. "Art. 17 request of 3 March".
    #[arg(long)]
    reason: String,
    /// The organisation's slug.
    #[arg(long)]
    org: String,
    /// Email of the administrator who erases; the first administrator when not given.
    #[arg(long = "as")]
    as_user: Option<String>,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Debug, Args)]
struct EraseLogArgs {
    /// The organisation's slug.
    #[arg(long)]
    org: String,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Debug, Args)]
struct ExportPersonArgs {
    /// The contact's record id.
    id: String,
    /// The organisation's slug.
    #[arg(long)]
    org: String,
    /// Email of the administrator it is read as; the first administrator when not given.
    #[arg(long = "as")]
    as_user: Option<String>,
    /// Where to write the JSON; standard output when not given.
    #[arg(long)]
    output: Option<std::path::PathBuf>,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Debug, Args)]
struct BackupArgs {
    /// The backup file to write (must not exist).
    #[arg(long)]
    to: std::path::PathBuf,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Debug, Args)]
struct RestoreArgs {
    /// The backup file to restore from.
    #[arg(long)]
    from: std::path::PathBuf,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Debug, Args)]
struct MarkRestoredArgs {
    /// Why (kept with the new change-log identity), e.g. "PITR to 09:00".
    #[arg(long, default_value = "restored from backup")]
    reason: String,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Seed the demo organisation (as `fieldsync demo`) if it is not there yet,
    /// and print its logins before serving; session cookies work over plain
    /// HTTP. For trying Fieldsync, not production: without it, `serve` refuses
    /// a database holding a demo organisation.
    #[arg(long)]
    demo: bool,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CsvKind {
    Accounts,
    Contacts,
    Products,
    #[value(name = "price-list")]
    PriceList,
}

impl CsvKind {
    fn kind(self) -> fieldsync_server::domain::catalogue::ImportKind {
        use fieldsync_server::domain::catalogue::ImportKind;
        match self {
            CsvKind::Accounts => ImportKind::Accounts,
            CsvKind::Contacts => ImportKind::Contacts,
            CsvKind::Products => ImportKind::Products,
            CsvKind::PriceList => ImportKind::PriceList,
        }
    }
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// What the file holds (docs/operations.md lists each kind's columns).
    kind: CsvKind,
    /// The CSV file (UTF-8, a header line first).
    file: std::path::PathBuf,
    /// The organisation's slug.
    #[arg(long)]
    org: String,
    /// Email of the administrator on whose behalf it is written (the audit
    /// names them); the organisation's first administrator when not given.
    #[arg(long = "as")]
    as_user: Option<String>,
    /// Only check the file: list every error, write nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// What to export.
    kind: CsvKind,
    /// Where to write the CSV file; standard output when not given.
    #[arg(long)]
    output: Option<std::path::PathBuf>,
    /// The organisation's slug.
    #[arg(long)]
    org: String,
    /// Email of the administrator it is read as; the first administrator when not given.
    #[arg(long = "as")]
    as_user: Option<String>,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// The demo organisation's slug (what users type at login).
    #[arg(long, default_value = "demo")]
    slug: String,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Debug, Subcommand)]
enum OrgCommand {
    /// Create an organisation and its first administrator.
    Init(OrgInit),
}

#[derive(Debug, Args)]
struct OrgInit {
    /// Display name, e.g. "Acme Field Services".
    #[arg(long)]
    name: String,
    /// Short name users type at login: lower-case letters, digits, hyphens.
    #[arg(long)]
    slug: String,
    /// The administrator's email.
    #[arg(long)]
    admin_email: String,
    /// The administrator's name to show [default: the part of the email before @].
    #[arg(long, default_value = "")]
    admin_name: String,
    /// The administrator's password (prefer the variable or --admin-password-stdin:
    /// a flag is visible to other users in the process list).
    #[arg(long, env = "FIELDSYNC_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// Read the administrator's password from the first line of standard input.
    #[arg(long, conflicts_with = "admin_password")]
    admin_password_stdin: bool,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// List the stored signing keys, newest first, and which one signs.
    List(SettingsArgs),
    /// Make a new key; it signs new tokens from now on (on running nodes within
    /// a minute) while older keys keep verifying the tokens they signed.
    Rotate(SettingsArgs),
    /// Retire a key: tokens it signed are refused (wait one access-token lifetime
    /// after a rotation, or retire at once after a leak).
    Retire(KeysRetire),
}

#[derive(Debug, Args)]
struct KeysRetire {
    /// The key id (`kid`), as `fieldsync keys list` shows it.
    kid: String,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Debug, Subcommand)]
enum AttachmentsCommand {
    /// Remove uploads that have not moved for `[attachments] abandoned_after_hours`
    /// (72 by default), with their chunks. Safe while servers run: each upload is
    /// removed once, by whoever gets to it first.
    Cleanup(AttachmentsCleanup),
}

#[derive(Debug, Subcommand)]
enum VisitsCommand {
    /// Mark as missed every planned visit nobody started whose planned end is
    /// more than `[visits] missed_after_minutes` (120 by default) ago, as the
    /// running servers do every minute. For a cron job when they do not
    /// (`missed_check_interval_secs = 0`). Devices get the marks with their
    /// next sync.
    MarkMissed(VisitsMarkMissed),
}

#[derive(Debug, Args)]
struct VisitsMarkMissed {
    /// Minutes after a visit's planned end before it counts as missed
    /// [default: the setting].
    #[arg(long)]
    after_minutes: Option<u64>,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Debug, Args)]
struct AttachmentsCleanup {
    /// Remove uploads that have not moved for this many hours [default: the setting].
    #[arg(long)]
    older_than_hours: Option<u64>,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Debug, Subcommand)]
enum OrderCommand {
    /// Approve an order waiting for approval: the server confirms it, naming
    /// the approver in its history.
    Approve(OrderDecide),
    /// Reject an order waiting for approval (a comment is required).
    Reject(OrderDecide),
    /// Record that a confirmed order was delivered.
    Fulfil(OrderFulfil),
}

#[derive(Debug, Args)]
struct OrderDecide {
    /// The order's id.
    id: String,
    /// The organisation's slug.
    #[arg(long)]
    org: String,
    /// The email of the manager or administrator who decides (managers decide
    /// on their team's orders only).
    #[arg(long)]
    by: String,
    /// Why (required to reject).
    #[arg(long)]
    comment: Option<String>,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Debug, Args)]
struct OrderFulfil {
    /// The order's id.
    id: String,
    /// The organisation's slug.
    #[arg(long)]
    org: String,
    /// The administrator who records it [default: the server itself, e.g. for
    /// a warehouse system's script].
    #[arg(long)]
    by: Option<String>,
    /// A note for the order's history (a delivery reference).
    #[arg(long)]
    note: Option<String>,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Debug, Subcommand)]
enum JobCommand {
    /// Close a completed job with a resolution, as the back-office user --as
    /// (devices get it with their next sync; the audit names that user).
    Close(JobClose),
    /// Cancel a job nobody is working on, with a reason, as the user --as.
    Cancel(JobCancel),
}

#[derive(Debug, Args)]
struct JobWho {
    /// The organisation's slug.
    #[arg(long)]
    org: String,
    /// Email of the manager or administrator on whose behalf it is written.
    #[arg(long = "as")]
    as_user: String,
    /// The job's id.
    #[arg(long)]
    id: String,
}

#[derive(Debug, Args)]
struct JobClose {
    #[command(flatten)]
    who: JobWho,
    /// How the job was resolved.
    #[arg(long)]
    resolution: String,
    /// Fixed on the first visit: yes or no.
    #[arg(long, value_parser = ["yes", "no"])]
    first_time_fix: String,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Debug, Args)]
struct JobCancel {
    #[command(flatten)]
    who: JobWho,
    /// Why the job is cancelled.
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Debug, Subcommand)]
enum TemplateCommand {
    /// List the template families with their versions and status.
    List(TemplateWho),
    /// Create a draft from a definition file (`.json` or `.toml`: `name`
    /// and `questions` with `key`, `text`, `kind`, `choices`, `required`,
    /// `show_if_question`, `show_if_equals`); `--publish` publishes it.
    Import(TemplateImport),
    /// Publish a draft version (`--id`).
    Publish(TemplateId),
    /// Start a draft of the next version of a published version (`--id`).
    NewVersion(TemplateId),
}

#[derive(Debug, Subcommand)]
enum VanCommand {
    /// Put parts in a technician's van (the first replenishment creates the
    /// van), as the back-office user --as; prints the van's balances.
    Replenish(VanReplenish),
}

#[derive(Debug, Args)]
struct VanReplenish {
    /// The organisation's slug.
    #[arg(long)]
    org: String,
    /// Email of the manager or administrator on whose behalf it is written.
    #[arg(long = "as")]
    as_user: String,
    /// The technician's user id.
    #[arg(long)]
    technician: String,
    /// The product's id.
    #[arg(long)]
    product: String,
    /// The quantity (`2`, `1.5`; negative takes parts out).
    #[arg(long, allow_hyphen_values = true)]
    qty: String,
    /// A serial number of a serialized part (repeat it, one per unit).
    #[arg(long = "serial")]
    serials: Vec<String>,
    /// A note for the technician.
    #[arg(long)]
    note: Option<String>,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Debug, Args)]
struct TemplateWho {
    /// The organisation's slug.
    #[arg(long)]
    org: String,
    /// Email of the manager or administrator on whose behalf it is written.
    #[arg(long = "as")]
    as_user: String,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Debug, Args)]
struct TemplateId {
    #[command(flatten)]
    who: TemplateWho,
    /// The template version's id.
    #[arg(long)]
    id: String,
}

#[derive(Debug, Args)]
struct TemplateImport {
    #[command(flatten)]
    who: TemplateWho,
    /// The definition file.
    file: std::path::PathBuf,
    /// Publish it at once.
    #[arg(long)]
    publish: bool,
    /// The territory (id) whose people read it [default: the user's].
    #[arg(long)]
    territory: Option<uuid::Uuid>,
    /// The team (id) that keeps it [default: the user's].
    #[arg(long)]
    team: Option<uuid::Uuid>,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user to an organisation (with --invite: a temporary password,
    /// printed once).
    Add(UserAdd),
    /// List the users with their role, team, territory, state and last activity.
    List(cli_admin::OrgArgs),
    /// Disable a user: their sessions end (refresh tokens, browser sessions,
    /// live connections: at once on PostgreSQL, within 30 s on SQLite); their
    /// records stay. Not yourself, not the last administrator.
    Disable(cli_admin::UserRef),
    /// Enable a disabled user again.
    Enable(cli_admin::UserRef),
    /// Set a user's password (a temporary one, printed once, unless given);
    /// their sessions end.
    ResetPassword(cli_admin::ResetPassword),
    /// Change a user's role, team or territory; their devices receive their
    /// new scope at their next sync.
    Set(cli_admin::UserSet),
}

#[derive(Debug, Args)]
struct UserAdd {
    /// The organisation's slug.
    #[arg(long)]
    org: String,
    /// Email, unique in the organisation.
    #[arg(long)]
    email: String,
    /// rep, technician, manager or admin.
    #[arg(long)]
    role: String,
    /// Team name (created if missing).
    #[arg(long)]
    team: Option<String>,
    /// Territory name (created if missing).
    #[arg(long)]
    territory: Option<String>,
    /// Name to show [default: the part of the email before @].
    #[arg(long, default_value = "")]
    display_name: String,
    /// Password (prefer the variable or --password-stdin).
    #[arg(long, env = "FIELDSYNC_USER_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long, conflicts_with = "password")]
    password_stdin: bool,
    /// Invite: make a temporary password and print it once (instead of
    /// --password).
    #[arg(long, conflicts_with_all = ["password", "password_stdin"])]
    invite: bool,
    #[command(flatten)]
    settings: SettingsArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter =
        EnvFilter::try_from_env("FIELDSYNC_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    match cli.log_format {
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fieldsync: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => {
                let mut settings = args.settings.resolve()?;
                if args.demo {
                    // A trial over plain HTTP: cookies a browser keeps without TLS.
                    settings.web.secure_cookies = false;
                    ensure_demo(&settings, "demo").await?;
                } else {
                    refuse_open_demo(&settings).await?;
                }
                serve(settings).await
            }
            Command::Org(OrgCommand::Init(init)) => org_init(init).await,
            Command::User(UserCommand::Add(add)) => user_add(add).await,
            Command::User(UserCommand::List(a)) => {
                cli_admin::run(cli_admin::Admin::UserList(a)).await
            }
            Command::User(UserCommand::Disable(u)) => {
                cli_admin::run(cli_admin::Admin::UserToggle(u, true)).await
            }
            Command::User(UserCommand::Enable(u)) => {
                cli_admin::run(cli_admin::Admin::UserToggle(u, false)).await
            }
            Command::User(UserCommand::ResetPassword(r)) => {
                cli_admin::run(cli_admin::Admin::ResetPassword(r)).await
            }
            Command::User(UserCommand::Set(s)) => {
                cli_admin::run(cli_admin::Admin::UserSet(s)).await
            }
            Command::Team(c) => cli_admin::run(cli_admin::Admin::Team(c)).await,
            Command::Territory(c) => cli_admin::run(cli_admin::Admin::Territory(c)).await,
            Command::Device(c) => cli_admin::run(cli_admin::Admin::Device(c)).await,
            Command::Job(command) => job(command).await,
            Command::Van(VanCommand::Replenish(args)) => van_replenish(args).await,
            Command::Demo(args) => demo(args).await,
            Command::Keys(command) => keys(command).await,
            Command::Attachments(AttachmentsCommand::Cleanup(args)) => cleanup(args).await,
            Command::Visits(VisitsCommand::MarkMissed(args)) => mark_missed(args).await,
            Command::Order(command) => order(command).await,
            Command::Backup(args) => {
                let db = open_database(&args.settings.resolve()?).await?;
                let done = fieldsync_server::service::backup::backup_to(&db, &args.to).await;
                db.close().await;
                done?;
                let size = std::fs::metadata(&args.to).map(|m| m.len()).unwrap_or(0);
                println!(
                    "fieldsync: backed up to {} ({size} bytes)",
                    args.to.display()
                );
                Ok(())
            }
            Command::Restore(args) => {
                let db = open_database(&args.settings.resolve()?).await?;
                let done = fieldsync_server::service::backup::restore_from(&db, &args.from).await;
                db.close().await;
                let (tables, log) = done?;
                println!(
                    "fieldsync: restored {tables} tables from {}; the change log is now {log}: \
                     devices bring back what they sent after the backup at their next sync",
                    args.from.display()
                );
                Ok(())
            }
            Command::MarkRestored(args) => {
                let db = open_database(&args.settings.resolve()?).await?;
                let done =
                    fieldsync_server::service::backup::mark_restored(&db, &args.reason).await;
                db.close().await;
                println!(
                    "fieldsync: the change log is now {}: devices bring back what they sent \
                     after the backup at their next sync",
                    done?
                );
                Ok(())
            }
            Command::Template(command) => template(command).await,
            Command::Import(args) => import(args).await,
            Command::Export(args) => export(args).await,
            Command::Erase(command) => erase(command).await,
            Command::ExportPerson(args) => export_person(args).await,
            Command::Migrate(args) => {
                let db = open_database(&args.resolve()?).await?;
                println!(
                    "fieldsync: {} database is up to date ({} migrations applied)",
                    db.kind(),
                    db.applied_migrations().await?
                );
                db.close().await;
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fieldsync: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    let args = match &command {
        KeysCommand::List(a) | KeysCommand::Rotate(a) => a,
        KeysCommand::Retire(r) => &r.settings,
    };
    let settings = args.resolve()?;
    if settings.jwt_secret.is_some() {
        anyhow::bail!(
            "this server signs with the configured jwt_secret; rotate it by moving the old \
             secret to jwt_previous_secrets and setting a new jwt_secret"
        );
    }
    let db = open_database(&settings).await?;
    let result = async {
        match command {
            KeysCommand::List(_) => {
                // Makes the first key if there is none yet, as a server start would.
                AuthKeys::load(&settings, &db).await?;
                let keys = auth::stored_keys(&db).await?;
                let signing = keys
                    .iter()
                    .find(|k| k.retired_at.is_none())
                    .map(|k| k.kid.clone());
                for k in keys {
                    let state = match k.retired_at {
                        Some(at) => format!("retired at {at}"),
                        None if Some(&k.kid) == signing.as_ref() => "signing".to_owned(),
                        None => "verifying".to_owned(),
                    };
                    println!("{}\tcreated {}\t{state}", k.kid, k.created_at);
                }
            }
            KeysCommand::Rotate(_) => {
                AuthKeys::load(&settings, &db).await?;
                let kid = auth::rotate_key(&db).await?;
                println!(
                    "fieldsync: new signing key {kid}; running nodes sign with it within {} s. \
                     Retire the old key after one access-token lifetime ({} s) with \
                     `fieldsync keys retire <kid>`",
                    auth::KEY_RELOAD_SECS,
                    settings.access_token_ttl_secs
                );
            }
            KeysCommand::Retire(r) => {
                auth::retire_key(&db, &r.kid).await?;
                println!(
                    "fieldsync: key {} retired; tokens it signed are refused",
                    r.kid
                );
            }
        }
        anyhow::Ok(())
    }
    .await;
    db.close().await;
    result
}

async fn cleanup(args: AttachmentsCleanup) -> anyhow::Result<()> {
    let settings = args.settings.resolve()?;
    let hours = args
        .older_than_hours
        .unwrap_or(settings.attachments.abandoned_after_hours);
    if hours == 0 {
        anyhow::bail!("--older-than-hours must be at least 1");
    }
    let blobs = fieldsync_server::blob::open_blob_store(&settings)?;
    let db = open_database(&settings).await?;
    let result = fieldsync_server::service::attachments::remove_abandoned(
        &db,
        blobs.as_ref(),
        std::time::Duration::from_secs(hours.saturating_mul(3600)),
    )
    .await;
    db.close().await;
    let removed = result?;
    println!("fieldsync: removed {removed} upload(s) that had not moved for {hours} hour(s)");
    Ok(())
}

/// The node's parts for a command that writes through the services (orders,
/// jobs, missed visits) and signs no token: a throwaway signing key keeps it
/// from creating a stored key in a database whose servers use a configured one.
async fn command_context(
    settings: &Settings,
    db: &fieldsync_server::Database,
) -> anyhow::Result<fieldsync_server::Context> {
    let mut settings = settings.clone();
    let mut throwaway = [0u8; 32];
    rand::fill(&mut throwaway[..]);
    settings.jwt_secret = Some(fieldsync_server::settings::Secret::new(hex::encode(
        throwaway,
    )));
    fieldsync_server::Context::open(&settings, db.clone()).await
}

async fn mark_missed(args: VisitsMarkMissed) -> anyhow::Result<()> {
    let settings = args.settings.resolve()?;
    let minutes = args
        .after_minutes
        .unwrap_or(settings.visits.missed_after_minutes);
    let db = open_database(&settings).await?;
    let result = async {
        let ctx = command_context(&settings, &db).await?;
        let now = fieldsync_core::model::DeviceTime::now_utc().at_ms;
        let grace = std::time::Duration::from_secs(minutes.saturating_mul(60));
        let mut total = 0;
        // One pass looks at a bounded batch; go on until a pass marks nothing.
        loop {
            let marked = fieldsync_server::service::plan::mark_missed(&ctx, now, grace).await?;
            total += marked;
            if marked == 0 {
                break;
            }
        }
        anyhow::Ok(total)
    }
    .await;
    db.close().await;
    let total = result?;
    println!(
        "fieldsync: marked {total} planned visit(s) missed ({minutes} minutes after their planned end)"
    );
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
    launch_with_tcp_listener(settings, listener, shutdown_signal()).await
}

/// The password from the flag/variable, or the first line of standard input.
fn password(given: Option<String>, from_stdin: bool, flag: &str) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    given.ok_or_else(|| {
        anyhow::anyhow!("give a password with {flag}, its environment variable, or {flag}-stdin")
    })
}

async fn org_init(init: OrgInit) -> anyhow::Result<()> {
    let password = password(
        init.admin_password,
        init.admin_password_stdin,
        "--admin-password",
    )?;
    // Checked before anything is written so a refused admin leaves no orphan organisation.
    let email = normalise_email(&init.admin_email)?;
    check_password_strength(&password)?;
    let db = open_database(&init.settings.resolve()?).await?;
    let result = async {
        let org = accounts::create_org(&db, &init.name, &init.slug).await?;
        let admin = accounts::create_user(
            &db,
            NewUser {
                org,
                email: email.clone(),
                display_name: init.admin_name,
                role: Role::Admin,
                team: None,
                territory: None,
                password,
            },
        )
        .await?;
        println!(
            "fieldsync: created organisation {:?} (slug {}, id {org}) with administrator {email} (id {admin})",
            init.name.trim(),
            init.slug
        );
        anyhow::Ok(())
    }
    .await;
    db.close().await;
    result
}

/// `fieldsync user add`: `service::people::add_user` as the command line; a
/// team or territory named but missing is created first (also logged).
async fn user_add(add: UserAdd) -> anyhow::Result<()> {
    use fieldsync_server::domain::Error;
    use fieldsync_server::service::people::{self, AddUser};
    let role = fieldsync_server::domain::people::parse_role(&add.role)?;
    let password = if add.invite {
        None
    } else {
        let password = password(add.password, add.password_stdin, "--password")?;
        check_password_strength(&password)?;
        Some(password)
    };
    let settings = add.settings.resolve()?;
    let db = open_database(&settings).await?;
    let result = async {
        let ctx = command_context(&settings, &db).await?;
        let caller = people::command_line(&ctx, &add.org).await?;
        let team = match &add.team {
            Some(name) => Some(match people::team_named(&ctx, &caller, name).await {
                Ok(id) => id,
                Err(Error::BadRequest(_)) => people::add_team(&ctx, &caller, name, None).await?,
                Err(e) => return Err(e.into()),
            }),
            None => None,
        };
        let territory = match &add.territory {
            Some(name) => Some(match people::territory_named(&ctx, &caller, name).await {
                Ok(id) => id,
                Err(Error::BadRequest(_)) => people::add_territory(&ctx, &caller, name).await?,
                Err(e) => return Err(e.into()),
            }),
            None => None,
        };
        let added = people::add_user(
            &ctx,
            &caller,
            AddUser {
                email: add.email.clone(),
                display_name: add.display_name,
                role,
                team,
                territory,
                password,
            },
        )
        .await?;
        println!(
            "fieldsync: added {role} {} to {} (id {})",
            added.email, add.org, added.id
        );
        if let Some(p) = added.temporary_password {
            println!("fieldsync: temporary password (shown once): {p}");
        }
        anyhow::Ok(())
    }
    .await;
    db.close().await;
    result
}

async fn order(command: OrderCommand) -> anyhow::Result<()> {
    use fieldsync_server::service::orders::{self, OrderDecision};
    let (settings, org, by) = match &command {
        OrderCommand::Approve(a) | OrderCommand::Reject(a) => {
            (&a.settings, &a.org, Some(a.by.as_str()))
        }
        OrderCommand::Fulfil(f) => (&f.settings, &f.org, f.by.as_deref()),
    };
    let settings = settings.resolve()?;
    let db = open_database(&settings).await?;
    let result = async {
        let ctx = command_context(&settings, &db).await?;
        let caller = orders::operator(&ctx, org, by).await?;
        let (id, status) = match &command {
            OrderCommand::Approve(a) => (
                &a.id,
                orders::decide(
                    &ctx,
                    &caller,
                    &a.id,
                    OrderDecision::Approve,
                    a.comment.as_deref(),
                )
                .await?,
            ),
            OrderCommand::Reject(a) => (
                &a.id,
                orders::decide(
                    &ctx,
                    &caller,
                    &a.id,
                    OrderDecision::Reject,
                    a.comment.as_deref(),
                )
                .await?,
            ),
            OrderCommand::Fulfil(f) => (
                &f.id,
                orders::fulfil(&ctx, &caller, &f.id, f.note.as_deref()).await?,
            ),
        };
        println!(
            "fieldsync: order {} is {}",
            id.trim(),
            fieldsync_core::model::Status::as_str(status)
        );
        anyhow::Ok(())
    }
    .await;
    db.close().await;
    result
}

/// `fieldsync van replenish`: the same use case as the API, for the user
/// `--as`, through the push path.
async fn van_replenish(args: VanReplenish) -> anyhow::Result<()> {
    use fieldsync_server::service::{jobs, vans};
    let settings = args.settings.resolve()?;
    let db = open_database(&settings).await?;
    let result = async {
        let ctx = command_context(&settings, &db).await?;
        let caller = jobs::office_caller(&ctx, &args.org, &args.as_user).await?;
        let technician = args
            .technician
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{:?} is not a user id", args.technician))?;
        let product = args
            .product
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{:?} is not a product id", args.product))?;
        let new = vans::NewReplenishment {
            product,
            qty: args.qty.clone(),
            serials: args.serials.clone(),
            note: args.note.clone(),
        };
        let van = vans::replenish(&ctx, &caller, technician, new).await?;
        println!("fieldsync: van {} ({})", van.van_id, van.name);
        for b in &van.balances {
            println!(
                "  {}\t{}\t{}\t{}",
                b.sku,
                b.name,
                b.qty,
                b.serials.join(" ")
            );
        }
        anyhow::Ok(())
    }
    .await;
    db.close().await;
    result
}

/// `fieldsync job close|cancel`: the same use case as the pages and the API,
/// for the user `--as`, through the push path.
async fn job(command: JobCommand) -> anyhow::Result<()> {
    use fieldsync_server::service::jobs;
    let (who, settings) = match &command {
        JobCommand::Close(c) => (&c.who, &c.settings),
        JobCommand::Cancel(c) => (&c.who, &c.settings),
    };
    let settings = settings.resolve()?;
    let db = open_database(&settings).await?;
    let result = async {
        let ctx = command_context(&settings, &db).await?;
        let caller = jobs::office_caller(&ctx, &who.org, &who.as_user).await?;
        let status = match &command {
            JobCommand::Close(c) => {
                jobs::close(
                    &ctx,
                    &caller,
                    &who.id,
                    Some(&c.resolution),
                    c.first_time_fix == "yes",
                )
                .await?
            }
            JobCommand::Cancel(c) => jobs::cancel(&ctx, &caller, &who.id, Some(&c.reason)).await?,
        };
        println!(
            "fieldsync: job {} is {}",
            who.id.trim(),
            fieldsync_core::model::Status::as_str(status)
        );
        anyhow::Ok(())
    }
    .await;
    db.close().await;
    result
}

/// `fieldsync import KIND FILE`: the pages' import, from the command line.
async fn import(args: ImportArgs) -> anyhow::Result<()> {
    use fieldsync_server::service::catalogue;
    let kind = args.kind.kind();
    let limit = fieldsync_server::domain::catalogue::MAX_IMPORT_BYTES;
    let size = std::fs::metadata(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?
        .len();
    if size > limit as u64 {
        anyhow::bail!(
            "{} has {size} bytes; an import reads at most {} MiB: split it",
            args.file.display(),
            limit / 1_048_576
        );
    }
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let settings = args.settings.resolve()?;
    let db = open_database(&settings).await?;
    let result = async {
        let ctx = command_context(&settings, &db).await?;
        let caller = catalogue::operator(&ctx, &args.org, args.as_user.as_deref()).await?;
        println!(
            "fieldsync: checking {} ({} {}) as {}",
            args.file.display(),
            kind.as_str(),
            if args.dry_run { "dry run" } else { "import" },
            caller.display_name
        );
        let report = catalogue::import(&ctx, &caller, kind, &bytes, args.dry_run).await?;
        anyhow::Ok(report)
    }
    .await;
    db.close().await;
    let report = result?;
    if !report.ok {
        for e in &report.errors {
            let column = if e.column.is_empty() { "-" } else { &e.column };
            eprintln!("line {}, column {column}: {}", e.line, e.message);
        }
        anyhow::bail!(
            "{} error(s); nothing was written. Fix the file and run again",
            report.error_count
        );
    }
    let verb = if report.dry_run {
        "would create"
    } else {
        "created"
    };
    println!(
        "fieldsync: {} row(s) of {}; records: {verb} {}, {} {}, {} unchanged ({} ms)",
        report.rows,
        report.kind,
        report.created,
        if report.dry_run {
            "would update"
        } else {
            "updated"
        },
        report.updated,
        report.unchanged,
        report.millis
    );
    Ok(())
}

/// `fieldsync export KIND`: the CSV file an import reads back.
async fn export(args: ExportArgs) -> anyhow::Result<()> {
    use fieldsync_server::service::catalogue;
    let settings = args.settings.resolve()?;
    let db = open_database(&settings).await?;
    let result = async {
        let ctx = command_context(&settings, &db).await?;
        let caller = catalogue::operator(&ctx, &args.org, args.as_user.as_deref()).await?;
        anyhow::Ok(catalogue::export(&ctx, &caller, args.kind.kind()).await?)
    }
    .await;
    db.close().await;
    write_output(args.output.as_deref(), &result?)
}

/// `fieldsync erase contact|user ID --reason ...` and `fieldsync erase log`.
async fn erase(command: EraseCommand) -> anyhow::Result<()> {
    use fieldsync_server::service::{catalogue, erasure};
    let (settings, org, as_user) = match &command {
        EraseCommand::Contact(a) | EraseCommand::User(a) => {
            (&a.settings, &a.org, a.as_user.as_deref())
        }
        EraseCommand::Log(a) => (&a.settings, &a.org, None),
    };
    let settings = settings.resolve()?;
    let db = open_database(&settings).await?;
    let result = async {
        let ctx = command_context(&settings, &db).await?;
        let caller = catalogue::operator(&ctx, org, as_user).await?;
        let parse = |what: &str, id: &str| {
            id.trim()
                .parse::<uuid::Uuid>()
                .map_err(|_| anyhow::anyhow!("{id:?} is not a {what} id"))
        };
        let done = match &command {
            EraseCommand::Contact(a) => {
                let id = fieldsync_core::RecordId::from_uuid(parse("contact", &a.id)?);
                erasure::erase_contact(&ctx, &caller, id, &a.reason).await?
            }
            EraseCommand::User(a) => {
                let id = fieldsync_core::UserId::from_uuid(parse("user", &a.id)?);
                erasure::erase_user(&ctx, &caller, id, &a.reason).await?
            }
            EraseCommand::Log(_) => {
                for e in erasure::log(&ctx, &caller, 1_000).await? {
                    println!(
                        "{}\t{}\t{}\t{}\t{} records\t{} attachments\t{}",
                        e.at,
                        e.actor_id,
                        e.subject_kind,
                        e.subject_id,
                        e.records.len(),
                        e.attachments,
                        e.reason
                    );
                }
                return anyhow::Ok(());
            }
        };
        println!(
            "fieldsync: erased: {} records rewritten, {} attachments deleted (erasure {}); \
             devices follow at their next sync",
            done.records.len(),
            done.attachments,
            done.id
        );
        anyhow::Ok(())
    }
    .await;
    db.close().await;
    result
}

/// `fieldsync export-person CONTACT_ID`: everything held about one contact, as JSON.
async fn export_person(args: ExportPersonArgs) -> anyhow::Result<()> {
    use fieldsync_server::service::{catalogue, erasure};
    let settings = args.settings.resolve()?;
    let db = open_database(&settings).await?;
    let result = async {
        let ctx = command_context(&settings, &db).await?;
        let caller = catalogue::operator(&ctx, &args.org, args.as_user.as_deref()).await?;
        let id: uuid::Uuid = args
            .id
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{:?} is not a contact id", args.id))?;
        let json =
            erasure::export_contact(&ctx, &caller, fieldsync_core::RecordId::from_uuid(id)).await?;
        anyhow::Ok(serde_json::to_vec_pretty(&json)?)
    }
    .await;
    db.close().await;
    write_output(args.output.as_deref(), &result?)
}

/// Writes an export to `path`, saying so on stderr, or to stdout without one.
fn write_output(path: Option<&std::path::Path>, bytes: &[u8]) -> anyhow::Result<()> {
    match path {
        Some(path) => {
            std::fs::write(path, bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "fieldsync: wrote {} ({} bytes)",
                path.display(),
                bytes.len()
            );
        }
        None => {
            use std::io::Write;
            std::io::stdout().write_all(bytes)?;
        }
    }
    Ok(())
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let settings = args.settings.resolve()?;
    let db = open_database(&settings).await?;
    if accounts::org_by_slug(&db, &args.slug).await?.is_some() {
        db.close().await;
        anyhow::bail!(
            "an organisation with slug {:?} already exists; choose another with --slug",
            args.slug
        );
    }
    seed_demo(db, &args.slug).await
}

/// `serve --demo`: seeds the demo organisation unless it is there already.
async fn ensure_demo(settings: &Settings, slug: &str) -> anyhow::Result<()> {
    let db = open_database(settings).await?;
    if accounts::org_by_slug(&db, slug).await?.is_some() {
        db.close().await;
        println!(
            "fieldsync: demo organisation {slug:?} is ready; users are manager@, rep1@ … rep3@, \
             tech1@ and tech2@{slug}.example, password {:?}",
            fieldsync_server::service::demo::DEMO_PASSWORD
        );
        return Ok(());
    }
    seed_demo(db, slug).await
}

/// `serve` without `--demo`: refuses to start while a demo organisation's
/// logins still accept the published password.
async fn refuse_open_demo(settings: &Settings) -> anyhow::Result<()> {
    let db = open_database(settings).await?;
    let open = fieldsync_server::service::demo::open_demo_orgs(&db).await;
    db.close().await;
    let open = open?;
    if open.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "this database holds the demo organisation{} {}, whose users sign in with the published \
         password {:?}; serving it would let anyone in. Run `fieldsync serve --demo` to serve it \
         as a trial (plain-HTTP cookies, demo logins printed), or use another database \
         (--data-dir or --database-url) for real work",
        if open.len() == 1 { "" } else { "s" },
        open.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", "),
        fieldsync_server::service::demo::DEMO_PASSWORD
    )
}

async fn seed_demo(db: fieldsync_server::Database, slug: &str) -> anyhow::Result<()> {
    println!("fieldsync: seeding demo organisation {slug:?}…");
    let result = fieldsync_server::service::demo::seed(&db, slug).await;
    db.close().await;
    let summary = result?;
    let records: Vec<String> = summary
        .records
        .iter()
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect();
    println!("fieldsync: created {}", records.join(", "));
    println!();
    println!(
        "Log in with organisation {:?} and password {:?}:",
        summary.slug,
        fieldsync_server::service::demo::DEMO_PASSWORD
    );
    for login in &summary.logins {
        println!(
            "  {:<11} {:<28} {}",
            login.role.as_str(),
            login.email,
            login.name
        );
    }
    println!();
    println!(
        "Serve it with `fieldsync serve --demo` (same --data-dir or --database-url) and point an app at it."
    );
    Ok(())
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown requested");
}

/// `fieldsync template list|import|publish|new-version`: the same use cases
/// as the pages and the API (`service::templates`), for the user `--as`,
/// through the push path.
async fn template(command: TemplateCommand) -> anyhow::Result<()> {
    use fieldsync_server::domain::templates::TemplateInput;
    use fieldsync_server::service::{jobs, templates};
    let who = match &command {
        TemplateCommand::List(w) => w,
        TemplateCommand::Import(i) => &i.who,
        TemplateCommand::Publish(t) | TemplateCommand::NewVersion(t) => &t.who,
    };
    // The file is read before anything is opened: a bad file changes nothing.
    let input: Option<TemplateInput> = match &command {
        TemplateCommand::Import(i) => {
            let text = std::fs::read_to_string(&i.file)
                .with_context(|| format!("cannot read {}", i.file.display()))?;
            let is_toml = i.file.extension().is_some_and(|e| e == "toml");
            Some(if is_toml {
                toml::from_str(&text)
                    .with_context(|| format!("{} is not a template definition", i.file.display()))?
            } else {
                serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a template definition", i.file.display()))?
            })
        }
        _ => None,
    };
    let settings = who.settings.resolve()?;
    let db = open_database(&settings).await?;
    let result = async {
        let ctx = command_context(&settings, &db).await?;
        let caller = jobs::office_caller(&ctx, &who.org, &who.as_user).await?;
        let print = |t: &fieldsync_server::domain::templates::TemplateView| {
            println!(
                "{}\t{}\tversion {}\t{}\t{} question(s)",
                t.id,
                t.name,
                t.version,
                t.status,
                t.questions.len()
            );
        };
        match (&command, &input) {
            (TemplateCommand::List(_), _) => {
                for family in templates::list(&ctx, &caller).await? {
                    for v in &family.versions {
                        print(v);
                    }
                }
            }
            (TemplateCommand::Import(i), Some(input)) => {
                let placement = templates::Placement {
                    team: i.team.map(fieldsync_core::TeamId::from_uuid),
                    territory: i.territory.map(fieldsync_core::TerritoryId::from_uuid),
                };
                print(&templates::import(&ctx, &caller, input, placement, i.publish).await?);
            }
            (TemplateCommand::Import(_), None) => anyhow::bail!("no definition read"),
            (TemplateCommand::Publish(t), _) => {
                print(&templates::publish(&ctx, &caller, &t.id).await?);
            }
            (TemplateCommand::NewVersion(t), _) => {
                print(&templates::new_version(&ctx, &caller, &t.id).await?);
            }
        }
        anyhow::Ok(())
    }
    .await;
    db.close().await;
    result
}
