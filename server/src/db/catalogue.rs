//! What administering the catalogue and the customers reads beside the
//! records themselves: the organisation's teams, territories and enabled
//! users (to resolve the names and emails a CSV file gives), and its first
//! administrator (on whose behalf the command line imports by default).
//! The records are read with `db::plan::readable_of_kind`, in the caller's
//! scope.

use fieldsync_core::OrgId;
use fieldsync_core::{TeamId, TerritoryId, UserId};

use super::{Database, DbError, parse_uuid};
use crate::on_pool;

/// A named row (team or territory).
#[derive(Debug, Clone)]
pub struct Named<T> {
    /// Id.
    pub id: T,
    /// Name.
    pub name: String,
}

/// An enabled user as the import resolves owners.
#[derive(Debug, Clone)]
pub struct MemberRow {
    /// Id.
    pub id: UserId,
    /// Email (lower-case).
    pub email: String,
    /// Display name.
    pub name: String,
    /// Team.
    pub team: Option<TeamId>,
    /// Territory.
    pub territory: Option<TerritoryId>,
}

async fn named(db: &Database, teams: bool, org: OrgId) -> Result<Vec<(String, String)>, DbError> {
    const TEAMS: &str =
        "SELECT CAST(id AS TEXT), name FROM teams WHERE org_id = $1 ORDER BY name, id";
    const TERRITORIES: &str =
        "SELECT CAST(id AS TEXT), name FROM territories WHERE org_id = $1 ORDER BY name, id";
    let sql = if teams { TEAMS } else { TERRITORIES };
    Ok(on_pool!(db, |pool, uuid| {
        sqlx::query_as(sql)
            .bind(uuid(*org.as_uuid()))
            .fetch_all(pool)
            .await?
    }))
}

/// The organisation's teams, by name.
pub async fn teams(db: &Database, org: OrgId) -> Result<Vec<Named<TeamId>>, DbError> {
    named(db, true, org)
        .await?
        .into_iter()
        .map(|(id, name)| {
            Ok(Named {
                id: TeamId::from_uuid(parse_uuid(&id)?),
                name,
            })
        })
        .collect()
}

/// The organisation's territories, by name.
pub async fn territories(db: &Database, org: OrgId) -> Result<Vec<Named<TerritoryId>>, DbError> {
    named(db, false, org)
        .await?
        .into_iter()
        .map(|(id, name)| {
            Ok(Named {
                id: TerritoryId::from_uuid(parse_uuid(&id)?),
                name,
            })
        })
        .collect()
}

/// The organisation's enabled users.
pub async fn members(db: &Database, org: OrgId) -> Result<Vec<MemberRow>, DbError> {
    type Row = (String, String, String, Option<String>, Option<String>);
    let rows: Vec<Row> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT CAST(id AS TEXT), email, display_name, CAST(team_id AS TEXT), \
             CAST(territory_id AS TEXT) FROM users WHERE org_id = $1 AND disabled = $2 \
             ORDER BY email",
        )
        .bind(uuid(*org.as_uuid()))
        .bind(false)
        .fetch_all(pool)
        .await?
    });
    rows.into_iter()
        .map(|(id, email, name, team, territory)| {
            Ok(MemberRow {
                id: UserId::from_uuid(parse_uuid(&id)?),
                email,
                name,
                team: team
                    .as_deref()
                    .map(parse_uuid)
                    .transpose()?
                    .map(TeamId::from_uuid),
                territory: territory
                    .as_deref()
                    .map(parse_uuid)
                    .transpose()?
                    .map(TerritoryId::from_uuid),
            })
        })
        .collect()
}

/// The email of the organisation's first enabled administrator.
pub async fn first_admin(db: &Database, org: OrgId) -> Result<Option<String>, DbError> {
    Ok(on_pool!(db, |pool, uuid| {
        sqlx::query_scalar(
            "SELECT email FROM users WHERE org_id = $1 AND role = 'admin' AND disabled = $2 \
             ORDER BY created_at, id LIMIT 1",
        )
        .bind(uuid(*org.as_uuid()))
        .bind(false)
        .fetch_optional(pool)
        .await?
    }))
}
