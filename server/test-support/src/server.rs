//! Everything this crate uses of `fieldsync_server`, in one place: when the
//! server's modules move, this file is the one to change.
//!
//! The rest of the crate reaches the server only through these items.

use std::future::Future;

use fieldsync_core::model::Role;
use fieldsync_core::{OrgId, TeamId, TerritoryId, UserId};
use fieldsync_server::on_pool;
use fieldsync_server::service::accounts::{self, NewUser};

pub use fieldsync_server::settings::Secret;
pub use fieldsync_server::{Database, Settings, SettingsArgs};

/// Opens the database named by `settings` and applies the migrations.
pub(crate) async fn open_database(settings: &Settings) -> anyhow::Result<Database> {
    fieldsync_server::open_database(settings).await
}

/// The production server on `listener` until `shutdown` completes.
pub(crate) fn serve(
    settings: Settings,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = anyhow::Result<()>> + Send + 'static {
    fieldsync_server::launch_with_tcp_listener(settings, listener, shutdown)
}

/// Creates the organisation `name` with `slug`.
pub(crate) async fn create_org(db: &Database, name: &str, slug: &str) -> OrgId {
    accounts::create_org(db, name, slug).await.expect("org")
}

/// The id of `org`'s team `name`, created if missing.
pub(crate) async fn ensure_team(db: &Database, org: OrgId, name: &str) -> TeamId {
    accounts::ensure_team(db, org, name).await.expect("team")
}

/// The id of `org`'s territory `name`, created if missing.
pub(crate) async fn ensure_territory(db: &Database, org: OrgId, name: &str) -> TerritoryId {
    accounts::ensure_territory(db, org, name)
        .await
        .expect("territory")
}

/// What [`create_user`] needs of a user.
pub(crate) struct User<'a> {
    pub org: OrgId,
    pub email: &'a str,
    pub display_name: &'a str,
    pub role: Role,
    pub team: Option<TeamId>,
    pub territory: Option<TerritoryId>,
    pub password: &'a str,
}

/// Creates a user.
pub(crate) async fn create_user(db: &Database, user: User<'_>) -> UserId {
    accounts::create_user(
        db,
        NewUser {
            org: user.org,
            email: user.email.to_owned(),
            display_name: user.display_name.to_owned(),
            role: user.role,
            team: user.team,
            territory: user.territory,
            password: user.password.to_owned(),
        },
    )
    .await
    .expect("user")
}

/// Runs `sql` (made by the test, no input from outside); rows affected.
pub(crate) async fn execute(db: &Database, sql: String) -> u64 {
    on_pool!(db, |pool, _uuid| {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(pool)
            .await
            .expect("execute")
            .rows_affected()
    })
}

/// Runs `sql` with `id` bound as `$1`; rows affected.
pub(crate) async fn execute_with_id(db: &Database, sql: &'static str, id: uuid::Uuid) -> u64 {
    on_pool!(db, |pool, uuid| {
        sqlx::query(sql)
            .bind(uuid(id))
            .execute(pool)
            .await
            .expect("execute")
            .rows_affected()
    })
}

/// Runs `sql` with `$1` bound to a number.
pub(crate) async fn execute_with_seq(db: &Database, sql: &'static str, seq: i64) -> u64 {
    on_pool!(db, |pool, _uuid| {
        sqlx::query(sql)
            .bind(seq)
            .execute(pool)
            .await
            .expect("execute")
            .rows_affected()
    })
}

/// One integer.
pub(crate) async fn scalar(db: &Database, sql: &'static str) -> i64 {
    on_pool!(db, |pool, _uuid| {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(pool)
            .await
            .expect("query")
    })
}

/// The stored document of record `id` (the `records` table), if any.
pub(crate) async fn record_doc(db: &Database, id: uuid::Uuid) -> Option<Vec<u8>> {
    on_pool!(db, |pool, uuid| {
        sqlx::query_scalar("SELECT doc FROM records WHERE id = $1")
            .bind(uuid(id))
            .fetch_optional(pool)
            .await
            .expect("query")
    })
}
