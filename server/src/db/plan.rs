//! What planning and dispatch read: the people a manager plans for, the
//! visits and assignments of a period in the caller's scope, the accounts a
//! visit or job can be planned at, and the planned visits old enough to be
//! missed.

use fieldsync_core::model::{RecordKind, Role};
use fieldsync_core::{OrgId, RecordId, TeamId, TerritoryId, UserId};

use super::records::{parse_kind, parse_record_id};
use super::{Database, DbError, parse_uuid};
use crate::domain::Caller;
use crate::on_pool;

/// A rep or technician as the plan lists them.
#[derive(Debug, Clone)]
pub struct PersonRow {
    /// Id.
    pub id: UserId,
    /// Name.
    pub name: String,
    /// Rep or technician.
    pub role: Role,
    /// Their team.
    pub team: Option<TeamId>,
    /// Their territory.
    pub territory: Option<TerritoryId>,
}

/// The enabled reps and technicians of the organisation, or of one team, by name.
pub async fn people(
    db: &Database,
    org: OrgId,
    team: Option<TeamId>,
) -> Result<Vec<PersonRow>, DbError> {
    type Row = (String, String, String, Option<String>, Option<String>);
    let rows: Vec<Row> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT CAST(id AS TEXT), display_name, role, CAST(team_id AS TEXT), \
             CAST(territory_id AS TEXT) FROM users WHERE org_id = $1 \
             AND role IN ('rep', 'technician') AND disabled = $3 \
             AND ($2 IS NULL OR team_id = $2) ORDER BY display_name, id",
        )
        .bind(uuid(*org.as_uuid()))
        .bind(team.map(|t| uuid(*t.as_uuid())))
        .bind(false)
        .fetch_all(pool)
        .await?
    });
    rows.into_iter()
        .map(|(id, name, role, team, territory)| {
            Ok(PersonRow {
                id: UserId::from_uuid(parse_uuid(&id)?),
                name,
                role: role
                    .parse()
                    .map_err(|_| DbError::Corrupt(format!("unknown role {role:?}")))?,
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

/// A stored record with its document.
#[derive(Debug, Clone)]
pub struct DocRow {
    /// Id.
    pub id: RecordId,
    /// Kind.
    pub kind: RecordKind,
    /// The stored Automerge document.
    pub doc: Vec<u8>,
}

/// The visits and assignments in the caller's scope starting in
/// `[from_ms, to_ms)`, at most `limit`, earliest first.
pub async fn bookings(
    db: &Database,
    caller: &Caller,
    from_ms: i64,
    to_ms: i64,
    limit: usize,
) -> Result<Vec<DocRow>, DbError> {
    let p = caller.principals();
    let org = *caller.org.as_uuid();
    let rows: Vec<(String, String, Vec<u8>)> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT CAST(r.id AS TEXT), r.kind, r.doc FROM records r \
             WHERE r.org_id = $1 AND r.kind IN ('visit', 'assignment') AND r.deleted = $10 \
             AND r.start_ms >= $8 AND r.start_ms < $9 \
             AND EXISTS (SELECT 1 FROM record_scope s WHERE s.record_id = r.id \
             AND s.principal IN ($2, $3, $4, $5, $6)) \
             ORDER BY r.start_ms, r.id LIMIT $7",
        )
        .bind(uuid(org))
        .bind(&p[0])
        .bind(&p[1])
        .bind(&p[2])
        .bind(&p[3])
        .bind(&p[4])
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(from_ms)
        .bind(to_ms)
        .bind(false)
        .fetch_all(pool)
        .await?
    });
    doc_rows(rows)
}

/// Records of `kind` in the caller's scope (accounts to plan at), at most
/// `limit`, in id order.
pub async fn readable_of_kind(
    db: &Database,
    caller: &Caller,
    kind: RecordKind,
    limit: usize,
) -> Result<Vec<DocRow>, DbError> {
    let p = caller.principals();
    let org = *caller.org.as_uuid();
    let rows: Vec<(String, String, Vec<u8>)> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT CAST(r.id AS TEXT), r.kind, r.doc FROM records r \
             WHERE r.org_id = $1 AND r.kind = $8 AND r.deleted = $9 \
             AND EXISTS (SELECT 1 FROM record_scope s WHERE s.record_id = r.id \
             AND s.principal IN ($2, $3, $4, $5, $6)) \
             ORDER BY r.id LIMIT $7",
        )
        .bind(uuid(org))
        .bind(&p[0])
        .bind(&p[1])
        .bind(&p[2])
        .bind(&p[3])
        .bind(&p[4])
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(kind.as_str())
        .bind(false)
        .fetch_all(pool)
        .await?
    });
    doc_rows(rows)
}

fn doc_rows(rows: Vec<(String, String, Vec<u8>)>) -> Result<Vec<DocRow>, DbError> {
    rows.into_iter()
        .map(|(id, kind, doc)| {
            Ok(DocRow {
                id: parse_record_id(&id)?,
                kind: parse_kind(&kind)?,
                doc,
            })
        })
        .collect()
}

/// Planned visits of every organisation that started before `before_ms`:
/// the candidates for being missed (each is checked against its planned end
/// before it is marked). At most `limit`, oldest first.
pub async fn planned_visits_before(
    db: &Database,
    before_ms: i64,
    limit: usize,
) -> Result<Vec<(OrgId, RecordId)>, DbError> {
    let rows: Vec<(String, String)> = on_pool!(db, |pool, _uuid| {
        sqlx::query_as(
            "SELECT CAST(org_id AS TEXT), CAST(id AS TEXT) FROM records \
             WHERE kind = 'visit' AND status = 'planned' AND deleted = $3 \
             AND start_ms < $1 ORDER BY start_ms, id LIMIT $2",
        )
        .bind(before_ms)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(false)
        .fetch_all(pool)
        .await?
    });
    rows.into_iter()
        .map(|(org, id)| Ok((OrgId::from_uuid(parse_uuid(&org)?), parse_record_id(&id)?)))
        .collect()
}
