//! Reference records: the latest finished visits and jobs at the accounts a
//! field user works at, which its own scope does not reach (a colleague's
//! visit, or its own before the window). The statements only; what to send is
//! decided in `service::history`.

use std::collections::{BTreeMap, BTreeSet};

use fieldsync_core::model::RecordKind;
use fieldsync_core::protocol::RecordChanges;
use fieldsync_core::{OrgId, RecordId};
use serde_bytes::ByteBuf;
use sqlx::AssertSqlSafe;

use super::records::{parse_kind, parse_record_id, records_by_id};
use super::{Database, DbError, parse_uuid, sqlite_org};
use crate::domain::Caller;
use crate::on_pool;

/// Ids bound per statement (well under SQLite's and PostgreSQL's limits).
const CHUNK: usize = 500;

/// `$first, …` for `n` parameters.
fn params(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The accounts the caller has a visit at, or an assignment at (through its
/// job), in its window. Read from the caller's own grants (`u:<user>`): a
/// field user's visits and assignments are granted to it by ownership, and
/// its territory's grants are customers and the catalogue, never dated work.
pub async fn accounts_in_window(db: &Database, caller: &Caller) -> Result<Vec<String>, DbError> {
    let Some(window) = caller.window else {
        return Ok(Vec::new());
    };
    let me = format!("u:{}", caller.actor.user);
    let org = *caller.org.as_uuid();
    // From the caller's grants, each record by id (`records_by_id`).
    let sql = format!(
        "SELECT DISTINCT CAST(COALESCE(j.account_id, a.account_id) AS TEXT) \
         FROM record_scope s {} \
         LEFT JOIN records j ON a.kind = 'assignment' AND j.id = a.parent_id \
         WHERE s.principal = $1 AND a.org_id = $2 AND a.kind IN ('visit', 'assignment') \
         AND a.deleted = $3 AND a.anchor_ms >= $4 AND a.anchor_ms < $5",
        records_by_id(db, "s.record_id", "a")
    );
    let ids: Vec<Option<String>> = on_pool!(db, |pool, uuid| {
        sqlx::query_scalar(AssertSqlSafe(sql.as_str()))
            .bind(&me)
            .bind(uuid(org))
            .bind(false)
            .bind(window.from_ms)
            .bind(window.to_ms)
            .fetch_all(pool)
            .await?
    });
    Ok(ids.into_iter().flatten().collect())
}

/// The latest finished visits and jobs of `n` accounts (`$4`…) of
/// organisation `$1`, `$3` of each kind per account (`$2`: deleted, false),
/// found through the accounts' index. SQLite is told so: without statistics
/// it took the organisation's index, or the one by kind and status, for
/// narrower, and walked every record of the organisation (12 ms a call in
/// the morning rush, against 0.02) or every finished visit of the server.
fn latest_finished_sql(pg: bool, n: usize) -> String {
    let records = if pg {
        "records r"
    } else {
        "records r INDEXED BY records_account"
    };
    format!(
        "SELECT CAST(x.id AS TEXT), x.kind, x.anchor_ms FROM ( \
           SELECT r.id, r.kind, r.anchor_ms, ROW_NUMBER() OVER ( \
             PARTITION BY r.account_id, r.kind ORDER BY r.anchor_ms DESC, r.id DESC) AS n \
           FROM {records} \
           WHERE r.account_id IN ({}) AND r.org_id = $1 AND r.deleted = $2 \
           AND ((r.kind = 'visit' AND r.status = 'completed') \
             OR (r.kind = 'service_job' AND r.status IN ('completed', 'closed'))) \
         ) x WHERE x.n <= $3",
        params(4, n),
    )
}

/// The changes of `n` records (`$4`…) of organisation `$1` at log positions
/// in `($2, $3]`, found by record and position: on SQLite the organisation's
/// index would walk the whole range, every record's changes, from position 0
/// for a record sent whole ([`sqlite_org`]).
fn changes_sql(pg: bool, n: usize) -> String {
    format!(
        "SELECT CAST(l.record_id AS TEXT), r.kind, l.change FROM change_log l \
         JOIN records r ON r.id = l.record_id \
         WHERE l.record_id IN ({}) AND {} = $1 AND l.seq > $2 AND l.seq <= $3 \
         ORDER BY l.seq",
        params(4, n),
        sqlite_org(pg, "l.org_id"),
    )
}

/// The latest `per_account` completed visits, and the latest `per_account`
/// completed or closed jobs, of each of `accounts` (by their date, newest
/// first), with kind and date.
pub async fn latest_finished(
    db: &Database,
    org: OrgId,
    accounts: &[String],
    per_account: u32,
) -> Result<Vec<(RecordId, RecordKind, Option<i64>)>, DbError> {
    let mut out = Vec::new();
    if per_account == 0 {
        return Ok(out);
    }
    for chunk in accounts.chunks(CHUNK) {
        let ids = chunk
            .iter()
            .map(|a| parse_uuid(a))
            .collect::<Result<Vec<_>, _>>()?;
        let sql = latest_finished_sql(matches!(db, Database::Postgres(_)), ids.len());
        let rows: Vec<(String, String, Option<i64>)> = on_pool!(db, |pool, uuid| {
            let mut q = sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(uuid(*org.as_uuid()))
                .bind(false)
                .bind(i64::from(per_account));
            for id in &ids {
                q = q.bind(uuid(*id));
            }
            q.fetch_all(pool).await?
        });
        for (id, kind, anchor) in rows {
            out.push((parse_record_id(&id)?, parse_kind(&kind)?, anchor));
        }
    }
    Ok(out)
}

/// Which of `ids` the caller reads through its own scope: granted to one of
/// its principals, and dated kinds only while in its window (what `pull`
/// sends it anyway).
pub async fn in_own_scope(
    db: &Database,
    caller: &Caller,
    ids: &[RecordId],
) -> Result<BTreeSet<RecordId>, DbError> {
    let p = caller.principals();
    let mut out = BTreeSet::new();
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "SELECT DISTINCT CAST(r.id AS TEXT), r.kind, r.anchor_ms FROM records r \
             JOIN record_scope s ON s.record_id = r.id \
             WHERE s.principal IN ($1, $2, $3, $4, $5) AND r.org_id = $6 AND r.id IN ({})",
            params(7, chunk.len())
        );
        let rows: Vec<(String, String, Option<i64>)> = on_pool!(db, |pool, uuid| {
            let mut q = sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(&p[0])
                .bind(&p[1])
                .bind(&p[2])
                .bind(&p[3])
                .bind(&p[4])
                .bind(uuid(*caller.org.as_uuid()));
            for id in chunk {
                q = q.bind(uuid(*id.as_uuid()));
            }
            q.fetch_all(pool).await?
        });
        for (id, kind, anchor) in rows {
            let dated = parse_kind(&kind)?.is_dated();
            let in_window = match (caller.window, anchor) {
                (Some(w), Some(at)) => w.contains(at),
                _ => true,
            };
            if !dated || in_window {
                out.insert(parse_record_id(&id)?);
            }
        }
    }
    Ok(out)
}

/// The changes of records `ids` of organisation `org` at log positions in
/// `(after, upto]`, grouped by record, each record's in log order.
pub async fn changes(
    db: &Database,
    org: OrgId,
    ids: &[RecordId],
    after: i64,
    upto: i64,
) -> Result<Vec<RecordChanges>, DbError> {
    let mut grouped: BTreeMap<RecordId, RecordChanges> = BTreeMap::new();
    let cached = super::range_queries_cached(db);
    for chunk in ids.chunks(CHUNK) {
        let sql = changes_sql(matches!(db, Database::Postgres(_)), chunk.len());
        let rows: Vec<(String, String, Vec<u8>)> = on_pool!(db, |pool, uuid| {
            let mut q = sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .persistent(cached)
                .bind(uuid(*org.as_uuid()))
                .bind(after)
                .bind(upto);
            for id in chunk {
                q = q.bind(uuid(*id.as_uuid()));
            }
            q.fetch_all(pool).await?
        });
        for (id, kind, change) in rows {
            let id = parse_record_id(&id)?;
            let kind = parse_kind(&kind)?;
            grouped
                .entry(id)
                .or_insert_with(|| RecordChanges {
                    id,
                    kind,
                    changes: Vec::new(),
                })
                .changes
                .push(ByteBuf::from(change));
        }
    }
    Ok(grouped.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::{changes_sql, latest_finished_sql};
    use crate::db::{plan_step, sqlite_plan};

    /// An account's latest finished visits are found through the accounts'
    /// index on SQLite, not by walking the organisation's records.
    #[tokio::test]
    async fn latest_finished_visits_are_read_by_account_on_sqlite() {
        for n in [1, 50] {
            let plan = sqlite_plan(&latest_finished_sql(false, n), n + 3).await;
            plan_step(&plan, "SEARCH r USING INDEX records_account (account_id=?)");
        }
    }

    /// Records' changes are read by record and position on SQLite, not by
    /// walking the organisation's log over the range (from position 0 for a
    /// record sent whole).
    #[tokio::test]
    async fn records_changes_are_read_by_record_and_position_on_sqlite() {
        for n in [1, 50] {
            let plan = sqlite_plan(&changes_sql(false, n), n + 3).await;
            plan_step(
                &plan,
                "SEARCH l USING INDEX change_log_record_seq (record_id=? AND seq>? AND seq<?)",
            );
        }
    }
}
