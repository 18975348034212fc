//! What the managers' report pages read: the inbox's candidate reports with
//! their visits' and accounts' documents, the records hanging off a visit,
//! the attachments of a report's records and the reps a reviewer may filter by.
//!
//! Every query is scoped like the sync path: a record is found only when one
//! of the caller's principals is among its scope rows (a manager reads their
//! team's records, an administrator the organisation's).

use fieldsync_core::model::RecordKind;
use fieldsync_core::{OrgId, RecordId, TeamId, UserId};

use super::{Database, DbError, parse_uuid};
use crate::domain::Caller;
use crate::domain::review::{AttachmentView, InboxFilter, MAX_INBOX_CANDIDATES, RepChoice};
use crate::on_pool;

/// The principals' `IN` clause shared by the queries here, over `alias`,
/// with the five principals bound from `$first`.
fn scope_clause(alias: &str, first: usize) -> String {
    format!(
        "EXISTS (SELECT 1 FROM record_scope s WHERE s.record_id = {alias}.id \
         AND s.principal IN (${}, ${}, ${}, ${}, ${}))",
        first,
        first + 1,
        first + 2,
        first + 3,
        first + 4
    )
}

/// A report the inbox may list, with the documents its row is built from.
#[derive(Debug, Clone)]
pub struct InboxCandidate {
    /// The report.
    pub id: RecordId,
    /// Its status.
    pub status: Option<String>,
    /// The rep (user id as text).
    pub owner: Option<String>,
    /// The rep's name.
    pub owner_name: Option<String>,
    /// The visit reported on (id as text).
    pub visit_id: Option<String>,
    /// The visit's document.
    pub visit_doc: Option<Vec<u8>>,
    /// The visit's account's document.
    pub account_doc: Option<Vec<u8>>,
    /// When the server last stored a change of the report (Unix seconds).
    pub updated_at: i64,
}

type CandidateRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    i64,
);

/// Reports in the filter's status, rep and visit dates, in the caller's
/// scope, most recent visit first, at most [`MAX_INBOX_CANDIDATES`]. The
/// verdict filter and the sort order are applied to the built rows.
pub async fn inbox_candidates(
    db: &Database,
    caller: &Caller,
    filter: &InboxFilter,
) -> Result<Vec<InboxCandidate>, DbError> {
    let p = caller.principals();
    let org = *caller.org.as_uuid();
    let status = fieldsync_core::model::Status::as_str(filter.status);
    let sql = format!(
        "SELECT CAST(r.id AS TEXT), r.status, CAST(r.owner_id AS TEXT), u.display_name, \
         CAST(r.parent_id AS TEXT), v.doc, a.doc, r.updated_at \
         FROM records r LEFT JOIN users u ON u.id = r.owner_id \
         LEFT JOIN records v ON v.id = r.parent_id AND v.kind = 'visit' \
         LEFT JOIN records a ON a.id = v.account_id AND a.kind = 'account' \
         WHERE r.org_id = $1 AND r.kind = 'visit_report' AND r.status = $2 AND r.deleted = $3 \
         AND ($4 IS NULL OR r.owner_id = $4) \
         AND ($5 IS NULL OR v.start_ms >= $5) AND ($6 IS NULL OR v.start_ms < $6) \
         AND {} ORDER BY v.start_ms DESC, r.id LIMIT $12",
        scope_clause("r", 7)
    );
    let limit = i64::try_from(MAX_INBOX_CANDIDATES).unwrap_or(i64::MAX);
    let rows: Vec<CandidateRow> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(uuid(org))
            .bind(status)
            .bind(false)
            .bind(filter.rep.map(|u| uuid(*u.as_uuid())))
            .bind(filter.from_ms)
            .bind(filter.to_ms)
            .bind(&p[0])
            .bind(&p[1])
            .bind(&p[2])
            .bind(&p[3])
            .bind(&p[4])
            .bind(limit)
            .fetch_all(pool)
            .await?
    });
    rows.into_iter()
        .map(
            |(id, status, owner, owner_name, visit_id, visit_doc, account_doc, updated_at)| {
                Ok(InboxCandidate {
                    id: RecordId::from_uuid(parse_uuid(&id)?),
                    status,
                    owner,
                    owner_name,
                    visit_id,
                    visit_doc,
                    account_doc,
                    updated_at,
                })
            },
        )
        .collect()
}

/// Records of `kind` whose parent (projection `parent_id`) is `parent`, in
/// scope, not deleted, in creation order.
pub async fn children(
    db: &Database,
    caller: &Caller,
    kind: RecordKind,
    parent: RecordId,
) -> Result<Vec<(RecordId, Vec<u8>)>, DbError> {
    let p = caller.principals();
    let sql = format!(
        "SELECT CAST(r.id AS TEXT), r.doc FROM records r WHERE r.org_id = $1 AND r.kind = $2 \
         AND r.parent_id = $3 AND r.deleted = $4 AND {} ORDER BY r.created_seq",
        scope_clause("r", 5)
    );
    let rows: Vec<(String, Vec<u8>)> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(uuid(*caller.org.as_uuid()))
            .bind(kind.as_str())
            .bind(uuid(*parent.as_uuid()))
            .bind(false)
            .bind(&p[0])
            .bind(&p[1])
            .bind(&p[2])
            .bind(&p[3])
            .bind(&p[4])
            .fetch_all(pool)
            .await?
    });
    rows.into_iter()
        .map(|(id, doc)| Ok((RecordId::from_uuid(parse_uuid(&id)?), doc)))
        .collect()
}

/// Attachments linked to any of `records` (all readable by the caller), each
/// once, in the records' order and then upload order.
pub async fn attachments_of(
    db: &Database,
    caller: &Caller,
    records: &[RecordId],
) -> Result<Vec<AttachmentView>, DbError> {
    let mut out: Vec<AttachmentView> = Vec::new();
    for record in records {
        let rows: Vec<(String, String, String, i64, String)> = on_pool!(db, |pool, uuid| {
            sqlx::query_as(
                "SELECT t.sha256, t.kind, t.content_type, t.size, t.state \
                 FROM attachment_records a JOIN attachments t \
                 ON t.org_id = a.org_id AND t.sha256 = a.sha256 \
                 WHERE a.org_id = $1 AND a.record_id = $2 ORDER BY t.created_at, t.sha256",
            )
            .bind(uuid(*caller.org.as_uuid()))
            .bind(uuid(*record.as_uuid()))
            .fetch_all(pool)
            .await?
        });
        for (sha256, kind, content_type, size, state) in rows {
            if out.iter().any(|a| a.sha256 == sha256) {
                continue;
            }
            out.push(AttachmentView {
                sha256,
                kind,
                content_type,
                size,
                complete: state == "complete",
            });
        }
    }
    Ok(out)
}

/// The reps of the organisation, or of one team, by name.
pub async fn reps(
    db: &Database,
    org: OrgId,
    team: Option<TeamId>,
) -> Result<Vec<RepChoice>, DbError> {
    let rows: Vec<(String, String)> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT CAST(id AS TEXT), display_name FROM users WHERE org_id = $1 \
             AND role = 'rep' AND ($2 IS NULL OR team_id = $2) ORDER BY display_name, id",
        )
        .bind(uuid(*org.as_uuid()))
        .bind(team.map(|t| uuid(*t.as_uuid())))
        .fetch_all(pool)
        .await?
    });
    rows.into_iter()
        .map(|(id, name)| {
            Ok(RepChoice {
                id: UserId::from_uuid(parse_uuid(&id)?),
                name,
            })
        })
        .collect()
}
