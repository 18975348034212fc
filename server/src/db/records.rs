//! Records, the change log and read scope: every SQL statement of the sync
//! path, written once for both databases through [`on_pool!`](crate::on_pool).
//!
//! - [`apply_pushes`]: one transaction for one or several pushes of an
//!   organisation (group commit). It **loads** each record with whether its
//!   pusher may read it, hands each push's records to that push's
//!   **decision** (pure: `domain::push`), then **writes** the accepted merges
//!   of all of them together: the new changes appended to the log, the merged
//!   documents and their projections, read scope extended along references,
//!   the managers' facts and conflicts, and the refusals in the rejection
//!   ledger. [`apply_push`] is the one-push case.
//! - [`pull`]: the log after a cursor, filtered by scope, grouped by record.
//! - [`prime`]: compacted documents of every record in scope, in id order.
//! - [`readable_doc`], [`may_read`]: one record, scope-checked.
//! - [`rejections`], [`audit_trail`]: the ledger and a record's history.
//!
//! **Commit order.** A cursor is only safe if no sequence below a visible one
//! can still commit. SQLite has one writer (pushes take `BEGIN IMMEDIATE`, and
//! the [`WriteGate`] keeps them from queueing inside SQLite's busy handler). On
//! PostgreSQL a push takes a transaction-scoped advisory lock per organisation
//! just before it appends to the log, after the merges, so the lock is held only
//! for the inserts and the commit; records being merged are row-locked with
//! `FOR UPDATE`, so two pushes of one record merge one after the other.
//!
//! **Scope, version 1.** Each record carries principals (see the migration):
//! its owner `u:`, its team `t:` (managers), its organisation `o:`
//! (administrators) and, for master data, its territory `r:`. When a record
//! refers to another (a visit to its account, an assignment to its job), the
//! owner of the referring record is granted the referred one, and an account
//! brings its contacts. A grant is stamped with its log position, so a pull
//! that passes it sends the granted record's whole history.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fieldsync_core::model::{Projection, RecordKind, Role, Status, VisitStatus};
use fieldsync_core::protocol::{
    PrimeRequest, PrimeResponse, PullRequest, PullResponse, RecordChanges, Rejection, Snapshot,
};
use fieldsync_core::{OrgId, RecordId};
use serde_bytes::ByteBuf;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::notify::{CHANNEL, payload};
use super::{Database, DbError, now_secs, parse_uuid};
use crate::domain::Caller;
use crate::domain::authority::{Lookups, Member, Needs, Target, reads_document};
use crate::domain::conflicts::{OVERLAP_PATH, STATUS_PATH};
use crate::domain::note::Note;
use crate::domain::push::{
    Decisions, Loaded, MAX_NOTE_RECORDS, MAX_PRIME_RECORDS, MAX_PULL_CHANGES, Retired,
    lost_principals, opt_uuid, own_principals,
};
use crate::on_pool;
use fieldsync_core::protocol::RecordEpoch;

/// `kind IN (...)` of the dated kinds, for queries over `records r`. Queries
/// that splice it in are marked `AssertSqlSafe`: it is built from the fixed
/// kind names, never from input.
fn dated_kinds_sql() -> String {
    let names: Vec<String> = RecordKind::ALL
        .iter()
        .filter(|k| k.is_dated())
        .map(|k| format!("'{}'", k.as_str()))
        .collect();
    format!("r.kind IN ({})", names.join(", "))
}

/// Which of `$principals` read each of the records `$ids` (on `$exec`, with
/// the dialect's `uuid`): record → its readers among them. A few statements.
macro_rules! readers_among {
    ($exec:expr, $uuid:ident, $pg:expr, $ids:expr, $principals:expr) => {{
        let ids: Vec<RecordId> = $ids.collect();
        let principals: &[String] = &$principals;
        let mut readers: BTreeMap<RecordId, Vec<String>> = BTreeMap::new();
        let per = rows_per_statement($pg, 1)
            .saturating_sub(principals.len())
            .max(1);
        if !principals.is_empty() {
            for chunk in ids.chunks(per) {
                let sql = format!(
                    "SELECT CAST(record_id AS TEXT), principal FROM record_scope \
                     WHERE principal IN ({}) AND record_id IN ({})",
                    params(1, principals.len()),
                    params(1 + principals.len(), chunk.len())
                );
                let mut q = sqlx::query_as::<_, (String, String)>(AssertSqlSafe(
                    crate::db::positional($pg, sql),
                ));
                for p in principals {
                    q = q.bind(p);
                }
                for id in chunk {
                    q = q.bind($uuid(*id.as_uuid()));
                }
                for (id, principal) in q.fetch_all($exec).await? {
                    readers
                        .entry(parse_record_id(&id)?)
                        .or_default()
                        .push(principal);
                }
            }
        }
        readers
    }};
}

/// `1` when the caller, through its five principals bound as `$1`…`$5`,
/// reads the record `r` of the query, else `0`.
const READ_BY_CALLER: &str = "CASE WHEN EXISTS (SELECT 1 FROM record_scope s \
     WHERE s.record_id = r.id AND s.principal IN ($1, $2, $3, $4, $5)) THEN 1 ELSE 0 END";

/// The scope rows `(record, principal)` of the records `$ids` (on `$exec`,
/// with the dialect's `uuid`), those that pass `$filter` (a fixed SQL
/// condition ending in `AND`, or empty). A few statements.
macro_rules! scope_rows {
    ($exec:expr, $uuid:ident, $pg:expr, $ids:expr, $filter:literal) => {{
        let mut rows: Vec<(RecordId, String)> = Vec::new();
        for chunk in $ids.chunks(rows_per_statement($pg, 1)) {
            let sql = format!(
                "SELECT CAST(record_id AS TEXT), principal FROM record_scope \
                 WHERE {} record_id IN ({})",
                $filter,
                params(1, chunk.len())
            );
            let mut q = sqlx::query_as::<_, (String, String)>(AssertSqlSafe(
                crate::db::positional($pg, sql),
            ));
            for id in chunk {
                q = q.bind($uuid(*id.as_uuid()));
            }
            for (id, principal) in q.fetch_all($exec).await? {
                rows.push((parse_record_id(&id)?, principal));
            }
        }
        rows
    }};
}

/// `'price_list', …`: the kinds whose documents a push's second stage
/// reads ([`reads_document`]), for `kind IN (…)`. Built from the fixed kind
/// names, never from input.
fn document_kinds_sql() -> String {
    RecordKind::ALL
        .iter()
        .filter(|k| reads_document(**k))
        .map(|k| format!("'{}'", k.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) use super::bulk::{params, rows_params, rows_per_statement};

/// A changed record's stored row before a push, as [`apply_pushes`] reads it.
#[derive(Debug, Default)]
struct Before {
    anchor_ms: Option<i64>,
    owner: Option<String>,
    team: Option<String>,
    territory: Option<String>,
    account: Option<String>,
    parent: Option<String>,
}

type BeforeRow = (
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

impl Before {
    fn from_row(row: BeforeRow) -> Result<(RecordId, Before), DbError> {
        let (id, anchor_ms, owner, team, territory, account, parent) = row;
        Ok((
            parse_record_id(&id)?,
            Before {
                anchor_ms,
                owner,
                team,
                territory,
                account,
                parent,
            },
        ))
    }
}

/// Loads a push's records as [`apply_pushes`] will, but outside its
/// transaction and without locking anything: the copy a push merges before
/// it waits for its turn to write (`apply_pushes` loads them again, and
/// only a push whose records changed meanwhile merges again). Also the
/// epochs above 0 of those records (a device's changes made on an epoch an
/// erasure has since rewritten are refused), read in the same statements.
pub async fn load_for_push(
    db: &Database,
    caller: &Caller,
    records: &[RecordChanges],
) -> Result<(Vec<Option<Loaded>>, Vec<RecordEpoch>), DbError> {
    let principals = caller.principals();
    let org = *caller.org.as_uuid();
    let pg = matches!(db, Database::Postgres(_));
    let ids: Vec<RecordId> = records.iter().map(|r| r.id).collect();
    type Row = (String, String, String, Vec<u8>, i32, i64, Option<String>);
    let mut rows: Vec<Row> = Vec::new();
    for chunk in ids.chunks(rows_per_statement(pg, 1)) {
        let sql = format!(
            "SELECT CAST(r.id AS TEXT), CAST(r.org_id AS TEXT), r.kind, r.doc, \
             {READ_BY_CALLER}, r.epoch, r.erased_fields FROM records r WHERE r.id IN ({})",
            params(6, chunk.len()),
        );
        let sql = crate::db::positional(pg, sql);
        rows.extend(on_pool!(db, |pool, uuid| {
            let mut q = sqlx::query_as::<_, Row>(AssertSqlSafe(sql));
            for p in &principals {
                q = q.bind(p);
            }
            for id in chunk {
                q = q.bind(uuid(*id.as_uuid()));
            }
            q.fetch_all(pool).await?
        }));
    }
    let mut stored: BTreeMap<RecordId, Loaded> = BTreeMap::new();
    let mut epochs = Vec::new();
    for (id, row_org, kind, doc, reads, epoch, erased) in rows {
        let id = parse_record_id(&id)?;
        if epoch > 0 {
            epochs.push(record_epoch(id, epoch, erased.as_deref()));
        }
        let loaded = if parse_uuid(&row_org)? != org {
            Loaded::foreign()
        } else {
            Loaded {
                kind,
                doc,
                readable: reads != 0,
            }
        };
        stored.insert(id, loaded);
    }
    let loaded = records.iter().map(|r| stored.get(&r.id).cloned()).collect();
    Ok((loaded, epochs))
}

/// What `records.erased_fields` holds: the paths the last rewrite took out
/// and the attachments it deleted.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct ErasedFields {
    pub(crate) fields: Vec<Vec<String>>,
    pub(crate) attachments: Vec<String>,
}

/// A record's epoch as stored: `records.epoch` and `records.erased_fields`.
pub(crate) fn record_epoch(id: RecordId, epoch: i64, erased: Option<&str>) -> RecordEpoch {
    let erased: ErasedFields = erased
        .and_then(|e| serde_json::from_str(e).ok())
        .unwrap_or_default();
    RecordEpoch {
        id,
        epoch: u32::try_from(epoch).unwrap_or(u32::MAX),
        erased: erased.fields,
        attachments: erased.attachments,
    }
}

/// Frees a push's merged documents on the blocking pool while the write
/// transaction goes on (freeing them in it would hold SQLite's one writer
/// for a fifth of the merge's time again).
fn free_elsewhere(retired: Retired) {
    if retired.is_empty() {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn_blocking(move || drop(retired));
        }
        Err(_) => drop(retired),
    }
}

/// Serialises writers on SQLite (it has one writer; waiting here is fairer and
/// cheaper than in SQLite's busy handler). PostgreSQL writers do not take it.
#[derive(Debug, Default)]
pub struct WriteGate {
    lock: tokio::sync::Mutex<()>,
}

impl WriteGate {
    /// Waits for the turn to write (SQLite), or returns at once (PostgreSQL).
    pub async fn enter(&self, db: &Database) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match db {
            Database::Sqlite(_) => Some(self.lock.lock().await),
            Database::Postgres(_) => None,
        }
    }
}

/// The lock key of an organisation's change log on PostgreSQL.
pub(crate) fn org_lock_key(org: OrgId) -> i64 {
    let bytes = org.as_uuid().as_bytes();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes[8..16]);
    i64::from_be_bytes(first)
}

/// What one push transaction did.
#[derive(Debug)]
pub struct Applied {
    /// Per record: the heads after the merge, or the refusal.
    pub results: Vec<(RecordId, Result<Vec<u8>, Rejection>)>,
    /// The live channel's note (ids only), when anything was written. On
    /// PostgreSQL it was already sent with the commit; on SQLite the caller
    /// hands it to the node's hub.
    pub note: Option<Note>,
    /// Time spent loading and deciding (merging).
    pub merge_time: Duration,
    /// Time spent writing and committing.
    pub commit_time: Duration,
    /// New changes appended to the log.
    pub changes_written: usize,
    /// The written records that are new or whose status moved: (id, kind,
    /// parent), for what the server does after the commit (the job roll-up).
    pub status_changes: Vec<(RecordId, RecordKind, Option<RecordId>)>,
}

/// Runs one push in one transaction: load every record with whether the
/// caller may read it, `decide` (pure, no I/O), then write what was decided.
/// Errors are database failures (nothing was stored); refusals of single
/// records are results.
pub async fn apply_push(
    db: &Database,
    caller: &Caller,
    batch: Uuid,
    records: &[RecordChanges],
    decide: impl FnOnce(&[Option<Loaded>]) -> Decisions + Send,
) -> Result<Applied, DbError> {
    apply_push_with(db, caller, batch, records, false, decide).await
}

/// [`apply_push`], where `all_or_nothing` writes nothing at all (no record,
/// no ledger entry) when any record is refused: what a bulk import needs.
/// The answer still says, record by record, what was refused and why.
pub async fn apply_push_with(
    db: &Database,
    caller: &Caller,
    batch: Uuid,
    records: &[RecordChanges],
    all_or_nothing: bool,
    decide: impl FnOnce(&[Option<Loaded>]) -> Decisions + Send,
) -> Result<Applied, DbError> {
    let job = PushJob {
        caller: caller.clone(),
        batch,
        records: Arc::new(records.to_vec()),
        all_or_nothing,
        stamp: None,
        decide: Box::new(decide),
    };
    let mut applied = apply_pushes(db, vec![job]).await?;
    applied
        .pop()
        .ok_or_else(|| DbError::Corrupt("a push transaction answered nothing".into()))
}

/// A device's sync stamp (`db::facts::write_sync`), written in its push's
/// transaction: the device and the health figures it reported, if any.
pub type SyncStamp = (fieldsync_core::DeviceId, Option<super::facts::HealthReport>);

/// How a push decides on the stored copies its transaction loaded (pure, no
/// I/O): `domain::push::decide_all`, or the merge made before the
/// transaction when nothing changed since.
pub type Decide<'a> = Box<dyn FnOnce(&[Option<Loaded>]) -> Decisions + Send + 'a>;

/// One push for [`apply_pushes`].
pub struct PushJob<'a> {
    /// Who pushes.
    pub caller: Caller,
    /// The push's id (the rejection ledger's batch).
    pub batch: Uuid,
    /// The pushed records, one entry per record.
    pub records: Arc<Vec<RecordChanges>>,
    /// Nothing of this push is written when any of its records is refused.
    pub all_or_nothing: bool,
    /// The pushing device's sync stamp, written with the push.
    pub stamp: Option<SyncStamp>,
    /// The decision on the stored copies.
    pub decide: Decide<'a>,
}

impl std::fmt::Debug for PushJob<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushJob")
            .field("org", &self.caller.org)
            .field("user", &self.caller.actor.user)
            .field("batch", &self.batch)
            .field("records", &self.records.len())
            .field("all_or_nothing", &self.all_or_nothing)
            .finish_non_exhaustive()
    }
}

/// One push's part of a group transaction, between its decision and the writes.
struct Decided {
    results: Vec<(RecordId, Result<Vec<u8>, Rejection>)>,
    refusals: Vec<crate::domain::push::Refusal>,
    merge_time: Duration,
}

/// The tables of the organisation's people and places that a group's pushes
/// name, read in one statement by [`apply_pushes`]: one `UNION ALL` branch
/// per table, told apart in the rows by this number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Directory {
    User = 0,
    Team = 1,
    Territory = 2,
}

impl Directory {
    fn table(self) -> &'static str {
        match self {
            Directory::User => "users",
            Directory::Team => "teams",
            Directory::Territory => "territories",
        }
    }

    /// The two columns the branch reads besides the id (a user's team and
    /// territory; none for the others).
    fn columns(self) -> &'static str {
        match self {
            Directory::User => "CAST(team_id AS TEXT), CAST(territory_id AS TEXT)",
            Directory::Team | Directory::Territory => "CAST(NULL AS TEXT), CAST(NULL AS TEXT)",
        }
    }
}

/// Writes several pushes of one organisation in one transaction (group
/// commit: `service::write` gathers the pushes that wait for their turn).
/// The group's records are loaded (and locked) together; each push is then
/// decided, what the pushes name (records, people, places) is read for all
/// of them at once, each push taking what its own caller may read of it, and
/// each push is finished in turn, as it would be alone; then the writes of
/// all of them go out together: one change-log insert, one records
/// upsert, one scope insert, one facts upsert for the group (each within
/// [`rows_per_statement`]), one lock and one commit.
///
/// The pushes must touch disjoint records and belong to one organisation.
/// Each is decided on the rows as stored before the group, as if it came
/// first, with one exception that matters to the managers: a rep's visits in
/// progress are read as the earlier pushes of the group leave them, so two
/// check-ins arriving together still clash. (A record another push of the
/// group writes and this one only names, say an account edited at the same
/// moment, is read as it was: the two pushes were concurrent, either order
/// is theirs.)
///
/// Answers one [`Applied`] per push, in order. An error is a failure of the
/// whole transaction: nothing of any push was stored.
pub async fn apply_pushes(db: &Database, jobs: Vec<PushJob<'_>>) -> Result<Vec<Applied>, DbError> {
    let Some(first) = jobs.first() else {
        return Ok(Vec::new());
    };
    let org_id = first.caller.org;
    if jobs.iter().any(|j| j.caller.org != org_id) {
        return Err(DbError::Unsupported(
            "a group transaction writes the pushes of one organisation",
        ));
    }
    let pg = matches!(db, Database::Postgres(_));
    let org = *org_id.as_uuid();
    // The user and device a push's changes and refusals are written under.
    let who = |caller: &Caller| {
        (
            *caller.actor.user.as_uuid(),
            caller.actor.device.map(|d| *d.as_uuid()),
        )
    };
    let applied = on_pool!(db, |pool, uuid| {
        let mut tx = if pg {
            pool.begin().await?
        } else {
            pool.begin_with("BEGIN IMMEDIATE").await?
        };
        let mut decided: Vec<Decided> = Vec::with_capacity(jobs.len());
        // Every write of the group, with the push it belongs to.
        let mut writes: Vec<crate::domain::push::Write> = Vec::new();
        let mut write_job: Vec<usize> = Vec::new();
        let mut pushes: Vec<(Caller, Uuid, Option<SyncStamp>)> = Vec::with_capacity(jobs.len());

        // 1. Load, for the whole group: each pushed record's stored row
        // (locked in id order on PostgreSQL, so two transactions lock shared
        // records in the same order) and which of the callers' principals
        // read it.
        let load_started = Instant::now();
        let mut ids: Vec<RecordId> = jobs
            .iter()
            .flat_map(|j| j.records.iter().map(|r| r.id))
            .collect();
        ids.sort();
        ids.dedup();
        let mut stored: BTreeMap<RecordId, (String, String, Vec<u8>)> = BTreeMap::new();
        for chunk in ids.chunks(rows_per_statement(pg, 1)) {
            let sql = format!(
                "SELECT CAST(id AS TEXT), CAST(org_id AS TEXT), kind, doc FROM records \
                 WHERE id IN ({}) ORDER BY id{}",
                params(1, chunk.len()),
                if pg { " FOR UPDATE" } else { "" }
            );
            let mut q = sqlx::query_as::<_, (String, String, String, Vec<u8>)>(AssertSqlSafe(
                crate::db::positional(pg, sql),
            ));
            for id in chunk {
                q = q.bind(uuid(*id.as_uuid()));
            }
            for (id, row_org, kind, doc) in q.fetch_all(&mut *tx).await? {
                stored.insert(parse_record_id(&id)?, (row_org, kind, doc));
            }
        }
        let mut principals: Vec<String> = jobs.iter().flat_map(|j| j.caller.principals()).collect();
        principals.sort();
        principals.dedup();
        let readers = readers_among!(&mut *tx, uuid, pg, stored.keys().copied(), principals);
        let load_time = load_started.elapsed();

        // 2. Decide (pure) each push on the rows as stored: merge and the
        // model's rules.
        struct Staged {
            caller: Caller,
            batch: Uuid,
            all_or_nothing: bool,
            stamp: Option<SyncStamp>,
            principals: [String; 5],
            decisions: Decisions,
            lookups: Lookups,
            merge_time: Duration,
        }
        let mut staged: Vec<Staged> = Vec::with_capacity(jobs.len());
        for job in jobs {
            let merge_started = Instant::now();
            let PushJob {
                caller,
                batch,
                records,
                all_or_nothing,
                stamp,
                decide,
            } = job;
            let principals = caller.principals();
            let loaded: Vec<Option<Loaded>> = records
                .iter()
                .map(|rec| match stored.get(&rec.id) {
                    None => Ok(None),
                    Some((row_org, _, _)) if parse_uuid(row_org)? != org => {
                        Ok(Some(Loaded::foreign()))
                    }
                    Some((_, kind, doc)) => Ok(Some(Loaded {
                        kind: kind.clone(),
                        doc: doc.clone(),
                        readable: readers
                            .get(&rec.id)
                            .is_some_and(|r| principals.iter().any(|p| r.contains(p))),
                    })),
                })
                .collect::<Result<_, DbError>>()?;
            let decisions = decide(&loaded);
            staged.push(Staged {
                caller,
                batch,
                all_or_nothing,
                stamp,
                principals,
                decisions,
                lookups: Lookups::default(),
                merge_time: merge_started.elapsed(),
            });
        }

        // 3. What the pushes need besides their own records (the records
        // they name, the organisation's people and places, reps' visits in
        // progress, territories' price lists), read for the whole group at
        // once, as stored before it: a few statements for the group instead
        // of a few per push, in rounds (an order's account names its price
        // list). The organisation's people and places do not change in a
        // push.
        let lookups_started = Instant::now();
        // Named records of this organisation: kind and, for the kinds the
        // second stage reads, document; `None` for what is not one.
        type Named = Option<(RecordKind, Option<Vec<u8>>)>;
        let mut named: BTreeMap<RecordId, Named> = BTreeMap::new();
        let mut named_readers: BTreeMap<RecordId, Vec<String>> = BTreeMap::new();
        let mut users: BTreeMap<fieldsync_core::UserId, Option<Member>> = BTreeMap::new();
        let mut teams: BTreeMap<Uuid, bool> = BTreeMap::new();
        let mut territories: BTreeMap<Uuid, bool> = BTreeMap::new();
        // Each rep's visits in progress as stored (the earlier pushes of the
        // group are applied to it in step 4).
        let mut in_progress: BTreeMap<
            fieldsync_core::UserId,
            std::collections::BTreeSet<RecordId>,
        > = BTreeMap::new();
        let mut price_lists: BTreeMap<Uuid, Vec<Vec<u8>>> = BTreeMap::new();
        for _ in 0..3 {
            let needs: Vec<Needs> = staged
                .iter()
                .map(|s| s.decisions.needs(&s.lookups))
                .collect();
            if needs.iter().all(Needs::is_empty) {
                break;
            }
            let wanted: std::collections::BTreeSet<RecordId> = needs
                .iter()
                .flat_map(|n| n.records.iter().copied())
                .filter(|id| !named.contains_key(id))
                .collect();
            let wanted: Vec<RecordId> = wanted.into_iter().collect();
            for chunk in wanted.chunks(rows_per_statement(pg, 1)) {
                type TargetRow = (String, String, String, Option<Vec<u8>>);
                let sql = format!(
                    "SELECT CAST(r.id AS TEXT), CAST(r.org_id AS TEXT), r.kind, \
                     CASE WHEN r.kind IN ({}) THEN r.doc END FROM records r WHERE r.id IN ({})",
                    document_kinds_sql(),
                    params(1, chunk.len())
                );
                let mut q =
                    sqlx::query_as::<_, TargetRow>(AssertSqlSafe(crate::db::positional(pg, sql)));
                for id in chunk {
                    q = q.bind(uuid(*id.as_uuid()));
                    named.insert(*id, None);
                }
                for (id, row_org, kind, doc) in q.fetch_all(&mut *tx).await? {
                    if parse_uuid(&row_org)? == org {
                        named.insert(
                            parse_record_id(&id)?,
                            kind.parse::<RecordKind>().ok().map(|kind| (kind, doc)),
                        );
                    }
                }
            }
            named_readers.extend(readers_among!(
                &mut *tx,
                uuid,
                pg,
                wanted.iter().copied(),
                principals
            ));
            let reps: std::collections::BTreeSet<fieldsync_core::UserId> = needs
                .iter()
                .flat_map(|n| n.visits_in_progress.iter().copied())
                .filter(|rep| !in_progress.contains_key(rep))
                .collect();
            for rep in reps {
                let ids: Vec<String> = sqlx::query_scalar(
                    "SELECT CAST(id AS TEXT) FROM records WHERE org_id = $1 AND owner_id = $2 \
                     AND kind = $3 AND status = $4 AND deleted = $5",
                )
                .bind(uuid(org))
                .bind(uuid(*rep.as_uuid()))
                .bind(RecordKind::Visit.as_str())
                .bind(VisitStatus::InProgress.as_str())
                .bind(false)
                .fetch_all(&mut *tx)
                .await?;
                in_progress.insert(
                    rep,
                    ids.iter()
                        .filter_map(|i| i.parse::<RecordId>().ok())
                        .collect(),
                );
            }
            let lists: std::collections::BTreeSet<Uuid> = needs
                .iter()
                .flat_map(|n| n.territory_price_lists.iter().copied())
                .filter(|t| !price_lists.contains_key(t))
                .collect();
            for territory in lists {
                let docs: Vec<Vec<u8>> = sqlx::query_scalar(
                    "SELECT doc FROM records WHERE org_id = $1 AND kind = $2 \
                     AND territory_id = $3 AND deleted = $4 ORDER BY id",
                )
                .bind(uuid(org))
                .bind(RecordKind::PriceList.as_str())
                .bind(uuid(territory))
                .bind(false)
                .fetch_all(&mut *tx)
                .await?;
                price_lists.insert(territory, docs);
            }
            // The people and places named, in one statement: users (with
            // their team and territory), and which teams and territories exist.
            let mut people: Vec<(Directory, Uuid)> = Vec::new();
            for n in &needs {
                people.extend(
                    n.users
                        .iter()
                        .filter(|u| !users.contains_key(u))
                        .map(|u| (Directory::User, *u.as_uuid())),
                );
                people.extend(
                    n.teams
                        .iter()
                        .filter(|t| !teams.contains_key(t))
                        .map(|t| (Directory::Team, *t)),
                );
                people.extend(
                    n.territories
                        .iter()
                        .filter(|t| !territories.contains_key(t))
                        .map(|t| (Directory::Territory, *t)),
                );
            }
            people.sort();
            people.dedup();
            for chunk in people.chunks(rows_per_statement(pg, 1).saturating_sub(3).max(1)) {
                let mut branches: Vec<String> = Vec::new();
                let mut next = 1;
                for which in [Directory::User, Directory::Team, Directory::Territory] {
                    let n = chunk.iter().filter(|(w, _)| *w == which).count();
                    if n == 0 {
                        continue;
                    }
                    branches.push(format!(
                        "SELECT {}, CAST(id AS TEXT), {} FROM {} WHERE org_id = ${next} AND id IN ({})",
                        which as i32,
                        which.columns(),
                        which.table(),
                        params(next + 1, n)
                    ));
                    next += 1 + n;
                }
                type PeopleRow = (i32, String, Option<String>, Option<String>);
                let mut q = sqlx::query_as::<_, PeopleRow>(AssertSqlSafe(crate::db::positional(
                    pg,
                    branches.join(" UNION ALL "),
                )));
                // The chunk is sorted by table: the organisation's id goes
                // before each table's ids, as the branches name them.
                let mut previous = None;
                for (which, id) in chunk {
                    if previous != Some(*which) {
                        q = q.bind(uuid(org));
                        previous = Some(*which);
                    }
                    q = q.bind(uuid(*id));
                    match which {
                        Directory::User => {
                            users.insert(fieldsync_core::UserId::from_uuid(*id), None);
                        }
                        Directory::Team => {
                            teams.insert(*id, false);
                        }
                        Directory::Territory => {
                            territories.insert(*id, false);
                        }
                    }
                }
                for (which, id, team, territory) in q.fetch_all(&mut *tx).await? {
                    let id = parse_uuid(&id)?;
                    if which == Directory::User as i32 {
                        users.insert(
                            fieldsync_core::UserId::from_uuid(id),
                            Some(Member {
                                team: opt_uuid(team.as_deref()),
                                territory: opt_uuid(territory.as_deref()),
                            }),
                        );
                    } else if which == Directory::Team as i32 {
                        teams.insert(id, true);
                    } else {
                        territories.insert(id, true);
                    }
                }
            }
            // Each push's share, with what it may read of the named records.
            for (s, needs) in staged.iter_mut().zip(needs) {
                for id in needs.records {
                    let target = named.get(&id).cloned().flatten().map(|(kind, doc)| Target {
                        kind,
                        readable: named_readers
                            .get(&id)
                            .is_some_and(|r| s.principals.iter().any(|p| r.contains(p))),
                        doc,
                    });
                    s.lookups.records.insert(id, target);
                }
                for user in needs.users {
                    s.lookups
                        .users
                        .insert(user, users.get(&user).cloned().flatten());
                }
                for id in needs.teams {
                    s.lookups
                        .teams
                        .insert(id, teams.get(&id).copied().unwrap_or(false));
                }
                for id in needs.territories {
                    s.lookups
                        .territories
                        .insert(id, territories.get(&id).copied().unwrap_or(false));
                }
                for rep in needs.visits_in_progress {
                    // Filled in step 4, once the earlier pushes are known.
                    s.lookups.visits_in_progress.insert(rep, Vec::new());
                }
                for territory in needs.territory_price_lists {
                    s.lookups.territory_price_lists.insert(
                        territory,
                        price_lists.get(&territory).cloned().unwrap_or_default(),
                    );
                }
            }
        }
        let lookups_time = lookups_started.elapsed();

        // 4. Finish each push in turn: the rules that need the lookups, the
        // server's own changes.
        for (j, s) in staged.into_iter().enumerate() {
            let finish_started = Instant::now();
            let Staged {
                caller,
                batch,
                all_or_nothing,
                stamp,
                decisions,
                mut lookups,
                merge_time,
                ..
            } = s;
            // A rep's visits in progress as stored once the earlier pushes of
            // the group are written: another device of the rep may have
            // checked in or out a moment ago, and two check-ins arriving
            // together still clash.
            for (rep, listed) in lookups.visits_in_progress.iter_mut() {
                let mut now_in_progress = in_progress.get(rep).cloned().unwrap_or_default();
                for w in writes
                    .iter()
                    .filter(|w| w.projection.kind == RecordKind::Visit)
                {
                    let p = &w.projection;
                    if p.owner == Some(*rep)
                        && !p.deleted
                        && p.status.as_deref() == Some(VisitStatus::InProgress.as_str())
                    {
                        now_in_progress.insert(w.id);
                    } else {
                        now_in_progress.remove(&w.id);
                    }
                }
                *listed = now_in_progress.into_iter().collect();
            }
            let Decisions {
                results,
                writes: writes_of,
                refusals,
                retired,
            } = decisions.finish(&caller, &lookups);
            free_elsewhere(retired);
            // All or nothing: a refused record drops the push's writes, its
            // ledger entries and its stamp (nothing of it was written yet).
            let dropped = all_or_nothing && !refusals.is_empty();
            if !dropped {
                write_job.extend(std::iter::repeat_n(j, writes_of.len()));
                writes.extend(writes_of);
            }
            decided.push(Decided {
                results,
                refusals: if dropped { Vec::new() } else { refusals },
                merge_time: load_time + merge_time + lookups_time + finish_started.elapsed(),
            });
            pushes.push((caller, batch, if dropped { None } else { stamp }));
        }
        if writes.is_empty()
            && decided.iter().all(|d| d.refusals.is_empty())
            && pushes.iter().all(|(_, _, s)| s.is_none())
        {
            // Nothing to write (resends, or refusals dropped whole).
            tx.rollback().await?;
            return Ok(decided
                .into_iter()
                .map(|d| Applied {
                    results: d.results,
                    note: None,
                    merge_time: d.merge_time,
                    commit_time: Duration::ZERO,
                    changes_written: 0,
                    status_changes: Vec::new(),
                })
                .collect());
        }

        // 5. Write.
        let commit_started = Instant::now();
        let now = now_secs();

        // The devices' sync stamps, before the organisation's log lock: one
        // per device (its latest push's).
        {
            type Stamp<'a> = (Uuid, Option<&'a super::facts::HealthReport>);
            let mut latest: BTreeMap<Uuid, Stamp<'_>> = BTreeMap::new();
            for (caller, _, stamp) in &pushes {
                if let Some((device, report)) = stamp {
                    latest.insert(
                        *device.as_uuid(),
                        (*caller.actor.user.as_uuid(), report.as_ref()),
                    );
                }
            }
            let stamps: Vec<_> = latest.into_iter().map(|(d, (u, r))| (d, u, r)).collect();
            super::facts::stamp_syncs!(tx, uuid, pg, org, &stamps, now);
        }

        // What the stored rows say before this push: the previous owner, team
        // and territory of changed records (the readers they lose), their
        // references (whether the grants along them must be walked again) and
        // the anchors a record without a date of its own inherits.
        let mut before: BTreeMap<RecordId, Before> = BTreeMap::new();
        {
            let mut wanted: Vec<RecordId> = Vec::new();
            for w in &writes {
                if !w.is_new {
                    wanted.push(w.id);
                }
                if w.projection.start_ms.is_none() {
                    wanted.extend(w.projection.parent_id);
                }
            }
            wanted.sort();
            wanted.dedup();
            for chunk in wanted.chunks(rows_per_statement(pg, 1)) {
                let sql = before_sql(pg, chunk.len());
                let mut q =
                    sqlx::query_as::<_, BeforeRow>(AssertSqlSafe(crate::db::positional(pg, sql)))
                        .bind(uuid(org));
                for id in chunk {
                    q = q.bind(uuid(*id.as_uuid()));
                }
                for row in q.fetch_all(&mut *tx).await? {
                    let (id, b) = Before::from_row(row)?;
                    before.insert(id, b);
                }
            }
        }

        // Status clashes settled by this push: only records with an open one.
        let mut open_clashes: std::collections::BTreeSet<RecordId> = Default::default();
        {
            let settled: Vec<RecordId> = writes
                .iter()
                .filter(|w| w.status_clash == Some(false) && !w.is_new)
                .map(|w| w.id)
                .collect();
            for chunk in settled.chunks(rows_per_statement(pg, 1)) {
                let sql = format!(
                    "SELECT CAST(record_id AS TEXT) FROM conflicts WHERE resolved_at IS NULL \
                     AND path = $1 AND record_id IN ({})",
                    params(2, chunk.len())
                );
                let mut q =
                    sqlx::query_scalar::<_, String>(AssertSqlSafe(crate::db::positional(pg, sql)))
                        .bind(STATUS_PATH);
                for id in chunk {
                    q = q.bind(uuid(*id.as_uuid()));
                }
                for id in q.fetch_all(&mut *tx).await? {
                    open_clashes.insert(parse_record_id(&id)?);
                }
            }
        }

        // Grants along references that the owner already holds need no walk:
        // which of the targets the writes name are held by a user, in a few
        // statements (most edits name the account their owner already reads).
        let mut held: std::collections::BTreeSet<(RecordId, String)> = Default::default();
        {
            let mut targets: Vec<RecordId> = writes
                .iter()
                .filter(|w| w.projection.owner.is_some())
                .flat_map(|w| [w.projection.account_id, w.projection.parent_id])
                .flatten()
                .collect();
            targets.sort();
            targets.dedup();
            for (id, principal) in
                scope_rows!(&mut *tx, uuid, pg, &targets, "principal LIKE 'u:%' AND")
            {
                held.insert((id, principal));
            }
        }
        // This push's own read scope (written below) holds some of those
        // targets already: an account created in the same push as its visits.
        for w in &writes {
            for principal in own_principals(&w.projection, org_id) {
                if principal.starts_with("u:") {
                    held.insert((w.id, principal));
                }
            }
        }

        // From here to the commit the organisation's change log is locked on
        // PostgreSQL (its sequence numbers must commit in order, or a pull
        // could pass one still being written): what the writes below only
        // read is read above, outside the lock.
        if !writes.is_empty() && pg {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(org_lock_key(org_id))
                .execute(&mut *tx)
                .await?;
        }

        // The change log: every new change of the push in order, a few
        // statements in all; each record's first and last sequence.
        let mut seqs: BTreeMap<(RecordId, Vec<u8>), i64> = BTreeMap::new();
        {
            let mut rows: Vec<super::bulk::LogRow<'_>> = Vec::new();
            for (w, &j) in writes.iter().zip(&write_job) {
                let by_server = w.changes.len().saturating_sub(w.server_changes);
                let (user, device) = who(&pushes[j].0);
                for (i, (hash, raw)) in w.changes.iter().enumerate() {
                    // The server's own changes (pricing an order) are logged under
                    // no user and no device: every device pulls them, the pusher too.
                    let (u, d) = if i >= by_server {
                        (None, None)
                    } else {
                        (Some(user), device)
                    };
                    rows.push((*w.id.as_uuid(), hash.as_slice(), raw.as_slice(), u, d));
                }
            }
            let numbered = super::bulk::BulkWrites::change_log(&mut *tx, org, &rows, now).await?;
            for (seq, id, hash) in numbered {
                seqs.insert((parse_record_id(&id)?, hash), seq);
            }
        }
        // Per push: the last sequence it wrote.
        let mut top_seq = vec![0i64; decided.len()];
        // Per write: (first, last) sequence of its changes.
        let mut spans: Vec<(i64, i64)> = Vec::with_capacity(writes.len());
        for (w, &j) in writes.iter().zip(&write_job) {
            let mut span: Option<(i64, i64)> = None;
            for (hash, _) in &w.changes {
                let seq = *seqs.get(&(w.id, hash.clone())).ok_or_else(|| {
                    DbError::Corrupt(format!(
                        "the change log did not number a change of {}",
                        w.id
                    ))
                })?;
                span = Some(span.map_or((seq, seq), |(a, b)| (a.min(seq), b.max(seq))));
            }
            let span = span.unwrap_or((0, 0));
            top_seq[j] = top_seq[j].max(span.1);
            spans.push(span);
        }

        // Anchors (the record's date for download windows): its own start,
        // else its parent's (written earlier in this push, or stored), else
        // what it had, else now.
        let mut anchors: BTreeMap<RecordId, i64> = BTreeMap::new();
        let mut anchor_of: Vec<i64> = Vec::with_capacity(writes.len());
        for w in &writes {
            let p = &w.projection;
            let ms = p.start_ms.unwrap_or_else(|| {
                [p.parent_id, Some(w.id)]
                    .into_iter()
                    .flatten()
                    .find_map(|id| {
                        anchors
                            .get(&id)
                            .copied()
                            .or_else(|| before.get(&id).and_then(|b| b.anchor_ms))
                    })
                    .unwrap_or_else(|| now.saturating_mul(1000))
            });
            anchors.insert(w.id, ms);
            anchor_of.push(ms);
        }

        // A record that changes owner, team or territory loses the readers it
        // had through the old values; devices that can no longer read it are
        // told to drop it (see `scope_revocations`). Rare: one at a time.
        for (w, (_, last_seq)) in writes.iter().zip(&spans) {
            let Some(b) = before.get(&w.id).filter(|_| !w.is_new) else {
                continue;
            };
            let lost = lost_principals(
                &w.projection,
                b.owner.clone(),
                b.team.clone(),
                b.territory.clone(),
            );
            for principal in lost {
                // Read above, before this push took it away.
                held.remove(&(w.id, principal.clone()));
                sqlx::query("DELETE FROM record_scope WHERE record_id = $1 AND principal = $2")
                    .bind(uuid(*w.id.as_uuid()))
                    .bind(&principal)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO scope_revocations (seq, record_id, principal) \
                     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                )
                .bind(last_seq)
                .bind(uuid(*w.id.as_uuid()))
                .bind(&principal)
                .execute(&mut *tx)
                .await?;
            }
        }

        // The documents and their projections, a few statements.
        {
            let rows: Vec<super::bulk::RecordRow<'_>> = writes
                .iter()
                .zip(&spans)
                .zip(&anchor_of)
                .map(|((w, &(first_seq, last_seq)), &anchor_ms)| {
                    let p = &w.projection;
                    super::bulk::RecordRow {
                        id: *w.id.as_uuid(),
                        kind: p.kind.as_str(),
                        doc: &w.doc,
                        status: p.status.as_deref(),
                        owner: p.owner.map(|o| *o.as_uuid()),
                        team: opt_uuid(p.team.as_deref()),
                        territory: opt_uuid(p.territory.as_deref()),
                        account: p.account_id.map(|a| *a.as_uuid()),
                        parent: p.parent_id.map(|a| *a.as_uuid()),
                        start_ms: p.start_ms,
                        deleted: p.deleted,
                        created_seq: first_seq,
                        updated_seq: last_seq,
                        anchor_ms,
                        // A new record's anchor dates from its creation; a
                        // changed one from this push.
                        anchor_seq: if w.is_new { first_seq } else { last_seq },
                    }
                })
                .collect();
            super::bulk::BulkWrites::upsert_records(&mut *tx, org, &rows, now).await?;
        }

        // Read scope: each record's own principals (from birth for a new
        // record, stamped for ones an edit added), in a few statements.
        {
            let mut rows: Vec<super::bulk::ScopeRow> = Vec::new();
            for (w, (_, last_seq)) in writes.iter().zip(&spans) {
                let own_seq = if w.is_new { 0 } else { *last_seq };
                for principal in own_principals(&w.projection, org_id) {
                    rows.push((*w.id.as_uuid(), principal, own_seq));
                }
            }
            super::bulk::BulkWrites::grant_scope(&mut *tx, &rows).await?;
        }

        // The managers' figures, in the same transaction, a few statements in all.
        {
            let rows: Vec<super::facts::FactRow<'_>> = writes
                .iter()
                .filter_map(|w| w.facts.as_ref().map(|f| (&w.projection, f)))
                .collect();
            super::facts::FactWrites::upsert_facts(&mut *tx, org, &rows).await?;
        }

        // The records whose read scope this transaction widened beyond their
        // own principals (a contact's from its account, a target's along a
        // reference): their readers are read back for the live notes below.
        let mut widened: std::collections::BTreeSet<RecordId> = Default::default();
        for ((w, (_, last_seq)), &j) in writes.iter().zip(&spans).zip(&write_job) {
            let last_seq = *last_seq;
            let (user, device) = who(&pushes[j].0);
            let p = &w.projection;
            // The managers' conflicts queue, in the same transaction.
            // The managers' conflicts queue: a status clash, or two visits in
            // progress for one rep (listed on the one checked in last). A row
            // is opened, or opened again after a resolution; an open one stays
            // as it was.
            let opens = match (w.status_clash, w.overlap) {
                (Some(true), _) => Some(STATUS_PATH),
                (_, Some(_)) => Some(OVERLAP_PATH),
                _ => None,
            };
            if let Some(path) = opens {
                sqlx::query(
                    "INSERT INTO conflicts (record_id, org_id, kind, path, detected_at, \
                     detected_seq, user_id, device_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (record_id) DO UPDATE SET path = excluded.path, \
                     detected_at = excluded.detected_at, detected_seq = excluded.detected_seq, \
                     user_id = excluded.user_id, device_id = excluded.device_id, \
                     resolved_at = NULL, resolved_by = NULL, resolution = NULL \
                     WHERE conflicts.resolved_at IS NOT NULL",
                )
                .bind(uuid(*w.id.as_uuid()))
                .bind(uuid(org))
                .bind(p.kind.as_str())
                .bind(path)
                .bind(now)
                .bind(last_seq)
                .bind(uuid(user))
                .bind(device.map(uuid))
                .execute(&mut *tx)
                .await?;
            }
            if w.status_clash == Some(false) && open_clashes.contains(&w.id) {
                // A single status again: whoever wrote it settled the clash.
                sqlx::query(
                    "UPDATE conflicts SET resolved_at = $2, resolved_by = $3, resolution = $4 \
                     WHERE record_id = $1 AND resolved_at IS NULL AND path = $5",
                )
                .bind(uuid(*w.id.as_uuid()))
                .bind(now)
                .bind(uuid(user))
                .bind(p.status.as_deref())
                .bind(STATUS_PATH)
                .execute(&mut *tx)
                .await?;
            }
            if w.ends_visit
                && let Some(owner) = p.owner
            {
                sqlx::query(
                    "UPDATE conflicts SET resolved_at = $1, resolved_by = $2, resolution = $3 \
                     WHERE path = $4 AND resolved_at IS NULL AND record_id IN \
                     (SELECT id FROM records WHERE org_id = $5 AND owner_id = $6 AND kind = $7)",
                )
                .bind(now)
                .bind(uuid(user))
                .bind(p.status.as_deref())
                .bind(OVERLAP_PATH)
                .bind(uuid(org))
                .bind(uuid(*owner.as_uuid()))
                .bind(RecordKind::Visit.as_str())
                .execute(&mut *tx)
                .await?;
            }

            if p.kind == RecordKind::Contact
                && let Some(account) = p.account_id
            {
                // A contact is read by whoever reads its account.
                widened.insert(w.id);
                sqlx::query(
                    "INSERT INTO record_scope (record_id, principal, granted_seq) \
                     SELECT $1, principal, $2 FROM record_scope \
                     WHERE record_id = $3 AND principal LIKE 'u:%' \
                     ON CONFLICT (record_id, principal) DO NOTHING",
                )
                .bind(uuid(*w.id.as_uuid()))
                .bind(last_seq)
                .bind(uuid(*account.as_uuid()))
                .execute(&mut *tx)
                .await?;
            }
            // Grants along references: the owner reads what the record names
            // (and, through an account, its contacts). An edit that changes
            // neither the owner nor a reference grants nothing new: the
            // record's earlier writes walked the same way.
            let Some(owner) = p.owner else { continue };
            let unchanged = !w.is_new
                && before.get(&w.id).is_some_and(|b| {
                    b.owner == Some(owner.to_string())
                        && opt_uuid(b.account.as_deref()) == p.account_id.map(|a| *a.as_uuid())
                        && opt_uuid(b.parent.as_deref()) == p.parent_id.map(|a| *a.as_uuid())
                });
            if unchanged {
                continue;
            }
            let grantee = format!("u:{owner}");
            let mut work: Vec<RecordId> = [p.account_id, p.parent_id]
                .into_iter()
                .flatten()
                .filter(|t| *t != w.id)
                .collect();
            let mut visited = 0;
            while let Some(target) = work.pop() {
                visited += 1;
                if visited > 64 {
                    break;
                }
                // Held already: the insert below would grant nothing.
                if held.contains(&(target, grantee.clone())) {
                    continue;
                }
                let target_row: Option<(String, Option<String>, Option<String>)> = sqlx::query_as(
                    "SELECT kind, CAST(account_id AS TEXT), CAST(parent_id AS TEXT) \
                         FROM records WHERE id = $1 AND org_id = $2",
                )
                .bind(uuid(*target.as_uuid()))
                .bind(uuid(org))
                .fetch_optional(&mut *tx)
                .await?;
                let Some((kind, account, parent)) = target_row else {
                    continue;
                };
                widened.insert(target);
                let granted = sqlx::query(
                    "INSERT INTO record_scope (record_id, principal, granted_seq) \
                     VALUES ($1, $2, $3) ON CONFLICT (record_id, principal) DO NOTHING",
                )
                .bind(uuid(*target.as_uuid()))
                .bind(&grantee)
                .bind(last_seq)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                held.insert((target, grantee.clone()));
                if granted == 0 {
                    continue;
                }
                for next in [account, parent].into_iter().flatten() {
                    if let Ok(next) = next.parse::<RecordId>()
                        && next != target
                    {
                        work.push(next);
                    }
                }
                if kind == RecordKind::Account.as_str() {
                    let contacts: Vec<String> = sqlx::query_scalar(
                        "SELECT CAST(id AS TEXT) FROM records WHERE account_id = $1 AND kind = $2",
                    )
                    .bind(uuid(*target.as_uuid()))
                    .bind(RecordKind::Contact.as_str())
                    .fetch_all(&mut *tx)
                    .await?;
                    work.extend(contacts.iter().filter_map(|c| c.parse::<RecordId>().ok()));
                }
            }
        }

        // The live channel's notes, one per push: who may read what changed
        // (ids only). On PostgreSQL they are sent in this transaction, so
        // they exist exactly when the changes do; on SQLite the caller
        // publishes them after the commit.
        let mut per_push: Vec<Vec<RecordId>> = vec![Vec::new(); decided.len()];
        for (w, &j) in writes.iter().zip(&write_job) {
            per_push[j].push(w.id);
        }
        // A record created here and widened by nothing is read by its own
        // principals alone (the rows granted above): those are known without
        // reading them back (for the pushes whose notes name readers).
        let mut readers: BTreeMap<RecordId, Vec<String>> = writes
            .iter()
            .zip(&write_job)
            .filter(|(w, j)| {
                per_push[**j].len() <= MAX_NOTE_RECORDS && w.is_new && !widened.contains(&w.id)
            })
            .map(|(w, _)| (w.id, own_principals(&w.projection, org_id)))
            .collect();
        // Debug builds (every test) read them back all the same and check.
        #[cfg(debug_assertions)]
        {
            let known: Vec<RecordId> = readers.keys().copied().collect();
            let mut stored: BTreeMap<RecordId, std::collections::BTreeSet<String>> =
                BTreeMap::new();
            for (id, principal) in scope_rows!(&mut *tx, uuid, pg, &known, "") {
                stored.entry(id).or_default().insert(principal);
            }
            for (id, own) in &readers {
                let own: std::collections::BTreeSet<String> = own.iter().cloned().collect();
                assert_eq!(stored.get(id), Some(&own), "the readers of new record {id}");
            }
        }
        {
            // A push of more records than a note names reaches every listener
            // of the organisation: its records' readers are not read.
            let ids: Vec<RecordId> = per_push
                .iter()
                .filter(|ids| ids.len() <= MAX_NOTE_RECORDS)
                .flatten()
                .filter(|id| !readers.contains_key(id))
                .copied()
                .collect();
            for (id, principal) in scope_rows!(&mut *tx, uuid, pg, &ids, "") {
                readers.entry(id).or_default().push(principal);
            }
        }
        let notes: Vec<Option<Note>> = per_push
            .iter()
            .zip(&pushes)
            .zip(&top_seq)
            .map(|((ids, (caller, _, _)), &top)| {
                if ids.is_empty() {
                    return None;
                }
                let mut touched = std::collections::BTreeSet::new();
                if ids.len() <= MAX_NOTE_RECORDS {
                    for id in ids {
                        touched.extend(readers.get(id).into_iter().flatten().cloned());
                    }
                }
                Some(Note::new(
                    org_id,
                    top,
                    caller.actor.device.map(|d| d.to_string()),
                    touched,
                ))
            })
            .collect();
        if pg {
            let payloads = notes
                .iter()
                .flatten()
                .map(payload)
                .collect::<Result<Vec<String>, DbError>>()?;
            for chunk in payloads.chunks(rows_per_statement(pg, 1)) {
                let sql = format!(
                    "SELECT pg_notify($1, p) FROM (VALUES {}) AS v(p)",
                    rows_params(2, chunk.len(), 1)
                );
                let mut q = sqlx::query(AssertSqlSafe(sql)).bind(CHANNEL);
                for p in chunk {
                    q = q.bind(p);
                }
                q.execute(&mut *tx).await?;
            }
        }

        for (d, (caller, batch, _)) in decided.iter().zip(&pushes) {
            let (user, device) = who(caller);
            for r in &d.refusals {
                sqlx::query(
                    "INSERT INTO rejections (id, org_id, user_id, device_id, batch_id, record_id, \
                     kind, code, message, changes, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(uuid(Uuid::now_v7()))
                .bind(uuid(org))
                .bind(uuid(user))
                .bind(uuid(device.unwrap_or_default()))
                .bind(uuid(*batch))
                .bind(uuid(*r.id.as_uuid()))
                .bind(r.kind.as_str())
                .bind(r.rejection.code.as_str())
                .bind(&r.rejection.message)
                .bind(fieldsync_core::protocol::encode(&r.changes))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        let commit_time = commit_started.elapsed();
        let mut changes_written = vec![0usize; decided.len()];
        let mut status_changes: Vec<Vec<(RecordId, RecordKind, Option<RecordId>)>> =
            vec![Vec::new(); decided.len()];
        for (w, &j) in writes.iter().zip(&write_job) {
            changes_written[j] += w.changes.len();
            if w.status_changed {
                status_changes[j].push((w.id, w.projection.kind, w.projection.parent_id));
            }
        }
        decided
            .into_iter()
            .zip(notes)
            .zip(changes_written.into_iter().zip(status_changes))
            .map(|((d, note), (changes_written, status_changes))| Applied {
                results: d.results,
                note,
                merge_time: d.merge_time,
                commit_time,
                changes_written,
                status_changes,
            })
            .collect::<Vec<Applied>>()
    });
    let rejected: usize = applied
        .iter()
        .map(|a| a.results.iter().filter(|(_, r)| r.is_err()).count())
        .sum();
    if rejected > 0 {
        tracing::info!(rejected, "push refused some records");
    }
    Ok(applied)
}

/// The scope changes of `user` with a log position in `(after, upto]`, in
/// order: (before, after) principal sets (what a pull reads, stored by
/// `db::people::change_user`; a range query, see
/// [`super::range_queries_cached`]).
async fn scope_changes(
    db: &Database,
    user: fieldsync_core::UserId,
    after: i64,
    upto: i64,
) -> Result<Vec<(Vec<String>, Vec<String>)>, DbError> {
    let rows: Vec<(String, String)> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT before, after FROM scope_changes WHERE user_id = $1 AND seq > $2 \
             AND seq <= $3 ORDER BY seq",
        )
        .persistent(super::range_queries_cached(db))
        .bind(uuid(*user.as_uuid()))
        .bind(after)
        .bind(upto)
        .fetch_all(pool)
        .await?
    });
    let split = |s: &str| -> Vec<String> { s.split_whitespace().map(str::to_owned).collect() };
    Ok(rows
        .into_iter()
        .map(|(b, a)| (split(&b), split(&a)))
        .collect())
}

/// The highest log sequence of an organisation (0 for an empty log).
pub async fn org_head(db: &Database, org: OrgId) -> Result<i64, DbError> {
    log_head(db, org).await
}

/// The highest log sequence of all organisations (0 for an empty log).
pub async fn global_head(db: &Database) -> Result<i64, DbError> {
    let head: Option<i64> = on_pool!(db, |pool, _uuid| {
        sqlx::query_scalar("SELECT MAX(seq) FROM change_log")
            .fetch_one(pool)
            .await?
    });
    Ok(head.unwrap_or(0))
}

/// The highest log sequence of an organisation (0 for an empty log).
pub async fn log_head(db: &Database, org: OrgId) -> Result<i64, DbError> {
    let head: Option<i64> = on_pool!(db, |pool, uuid| {
        sqlx::query_scalar("SELECT MAX(seq) FROM change_log WHERE org_id = $1")
            .bind(uuid(*org.as_uuid()))
            .fetch_one(pool)
            .await?
    });
    Ok(head.unwrap_or(0))
}

pub fn parse_kind(kind: &str) -> Result<RecordKind, DbError> {
    kind.parse()
        .map_err(|_| DbError::Corrupt(format!("unknown record kind {kind:?}")))
}

pub fn parse_record_id(text: &str) -> Result<RecordId, DbError> {
    Ok(RecordId::from_uuid(parse_uuid(text)?))
}

/// `CROSS JOIN`s the records whose id is `key` (a column of what comes
/// before), as `alias`, looked up by primary key one by one whatever the
/// planner believes: for the queries that start from a field user's grants
/// (a few hundred) among the organisation's thousands of records. SQLite keeps
/// a `CROSS JOIN`'s order; on PostgreSQL a `LATERAL` subquery with `OFFSET 0`
/// is planned on its own, where the only condition is the key (on tables
/// never analysed, the planner took the `(org_id, kind, anchor_ms)` index for
/// a handful of rows and walked every visit of the organisation).
pub(crate) fn records_by_id(db: &Database, key: &str, alias: &str) -> String {
    match db {
        Database::Sqlite(_) => format!("CROSS JOIN records {alias} ON {alias}.id = {key}"),
        Database::Postgres(_) => format!(
            "CROSS JOIN LATERAL (SELECT * FROM records x WHERE x.id = {key} OFFSET 0) {alias}"
        ),
    }
}

/// What the stored rows of `n` records (`$2`…, of organisation `$1`) say
/// before a push writes them: anchor, owner, team, territory, account and
/// parent. By id: without statistics SQLite takes the organisation for
/// selective and, given a group commit's few hundred ids, walked all its
/// records instead ([`super::sqlite_org`]).
fn before_sql(pg: bool, n: usize) -> String {
    format!(
        "SELECT CAST(id AS TEXT), anchor_ms, CAST(owner_id AS TEXT), \
         CAST(team_id AS TEXT), CAST(territory_id AS TEXT), \
         CAST(account_id AS TEXT), CAST(parent_id AS TEXT) FROM records \
         WHERE {} = $1 AND id IN ({})",
        super::sqlite_org(pg, "org_id"),
        params(2, n)
    )
}

/// The records the caller reads (`$4`–`$8`: its principals), as a table.
const MINE: &str = "(SELECT DISTINCT s.record_id FROM record_scope s \
     WHERE s.principal IN ($4, $5, $6, $7, $8)) mine";

/// Whether the caller reads the record `r` (`$4`–`$8`: its principals).
const IN_SCOPE: &str = "EXISTS (SELECT 1 FROM record_scope s WHERE s.record_id = r.id \
     AND s.principal IN ($4, $5, $6, $7, $8))";

/// The pull's feed query: the caller's changes past the cursor (`$2`) up to
/// the head (`$3`) in the organisation `$1`, read from the records the caller
/// reads (`narrow`) or by walking the feed (see [`pull`]); `$9` rows at most,
/// none pushed by the device `$10`, dated records only inside the window
/// `$11`..`$12`.
fn feed_sql(pg: bool, narrow: bool) -> String {
    // On SQLite each record's changes past the cursor come from the
    // `(record_id, seq)` index (the unary `+` keeps it off `(org_id, seq)`,
    // which it would otherwise walk again for each of the caller's records),
    // and the record's row is read only for a record that has such changes.
    let (feed_from, feed_scope, l_org, l_seq) = match (narrow, pg) {
        (true, false) => (
            format!(
                "{MINE} CROSS JOIN change_log l ON l.record_id = mine.record_id \
                 CROSS JOIN records r ON r.id = l.record_id"
            ),
            "1 = 1",
            "+l.org_id",
            "l.seq",
        ),
        (true, true) => (
            format!(
                "{MINE} CROSS JOIN LATERAL (SELECT l.seq, l.record_id, l.change, l.device_id, \
                 l.org_id FROM change_log l WHERE l.record_id = mine.record_id \
                 AND l.seq + 0 > $2 AND l.seq + 0 <= $3 OFFSET 0) l \
                 JOIN records r ON r.id = l.record_id"
            ),
            "1 = 1",
            "l.org_id",
            "l.seq",
        ),
        (false, _) => (
            "change_log l JOIN records r ON r.id = l.record_id".to_owned(),
            IN_SCOPE,
            "l.org_id",
            "l.seq",
        ),
    };
    let dated = dated_kinds_sql();
    // Administrators read through `o:<org>`, which every record carries.
    format!(
        "SELECT l.seq, CAST(l.record_id AS TEXT), r.kind, l.change \
         FROM {feed_from} \
         WHERE {l_org} = $1 AND {l_seq} > $2 AND {l_seq} <= $3 AND {feed_scope} \
         AND (l.device_id IS NULL OR l.device_id <> $10) \
         AND (NOT {dated} OR r.anchor_ms IS NULL OR (r.anchor_ms >= $11 AND r.anchor_ms < $12)) \
         ORDER BY l.seq LIMIT $9"
    )
}

/// Log positions past a field user's cursor beyond which PostgreSQL serves
/// its pull from the records it reads rather than by walking the feed (see
/// `pull`): about where probing every change of the range costs more than
/// looking up each of a rep's few hundred records.
pub const NARROW_PULL_RANGE: i64 = 1_000;

/// Serves one page of the feed after `req.cursor`, in the caller's scope,
/// leaving out the changes the calling device pushed itself.
///
/// Dated records come only while their anchor lies in the caller's window.
/// Records that entered it since the window the device names (time moved on,
/// or the record was rescheduled) come with their whole history, like records
/// granted to the caller since the cursor; records that left it are named in
/// `removed`.
pub async fn pull(
    db: &Database,
    caller: &Caller,
    req: &PullRequest,
) -> Result<PullResponse, DbError> {
    let cursor = i64::try_from(req.cursor).unwrap_or(i64::MAX);
    let max = req.max_changes.clamp(1, MAX_PULL_CHANGES);
    let head = log_head(db, caller.org).await?;
    // A device's own changes are not sent back to it: it has them.
    let device = caller
        .actor
        .device
        .map(|d| *d.as_uuid())
        .unwrap_or_default();
    let p = caller.principals();
    let org = *caller.org.as_uuid();
    let (lo, hi) = caller.window_bounds();
    // The window the device holds; without one, the current one (nothing moved).
    let (old_lo, old_hi) = match (req.window, caller.window) {
        (Some(w), Some(_)) => (w.from_ms, w.to_ms),
        _ => (lo, hi),
    };
    let dated = dated_kinds_sql();
    // Two ways to find what the caller reads. Probing walks the feed since the
    // cursor (every change of everyone) and checks each one's scope: cheap for
    // a short range, and the only sensible way for managers and
    // administrators, whose scope is most of the feed. Narrow starts from the
    // records the caller reads and reads their changes through the
    // `(record_id, hash)` index: a rep's or technician's scope is a few hundred
    // records out of the organisation's thousands.
    //
    // On SQLite, whose planner would walk the feed whatever its length, a rep
    // or technician always reads narrow (`CROSS JOIN` fixes the order there).
    // On PostgreSQL a field user reads narrow once the range is long: a device
    // a day offline while the office wrote 50,000 changes (issue #21's
    // morning rush). There the planner cannot be left to choose: a cursor
    // past the table's last statistics looks like an empty range, so right
    // after a bulk write it probed 50,000 changes per pull until autovacuum
    // analysed the log (p99 6 s at 1,000 devices). `LATERAL … OFFSET 0` keeps
    // the per-record lookup, and `seq + 0` keeps it on the `record_id` index:
    // on a log never analysed, the planner took the `(org_id, seq)` range for
    // four rows and walked its 50,000 for each record.
    let field_user = matches!(caller.actor.role, Role::Rep | Role::Technician);
    let narrow = field_user
        && match db {
            Database::Sqlite(_) => true,
            Database::Postgres(_) => head.saturating_sub(cursor) > NARROW_PULL_RANGE,
        };
    let (records_from, records_scope) = if narrow {
        (
            format!("{MINE} {}", records_by_id(db, "mine.record_id", "r")),
            "1 = 1",
        )
    } else {
        ("records r".to_owned(), IN_SCOPE)
    };
    let feed_sql = feed_sql(matches!(db, Database::Postgres(_)), narrow);
    // Dated records in the window now that the device may lack: out of its old
    // window, or moved into this one since the cursor (not just created: the
    // feed carries new records whole).
    let entering_sql = format!(
        "SELECT CAST(r.id AS TEXT) FROM {records_from} \
         WHERE r.org_id = $1 AND {dated} AND r.created_seq <= $2 AND r.created_seq <= $3 \
         AND r.anchor_ms >= $9 AND r.anchor_ms < $10 \
         AND (r.anchor_ms < $11 OR r.anchor_ms >= $12 \
              OR (r.anchor_seq > $2 AND r.anchor_seq <> r.created_seq)) \
         AND {records_scope}"
    );
    // Dated records the device may hold that are out of the window now.
    let leaving_sql = format!(
        "SELECT CAST(r.id AS TEXT) FROM {records_from} \
         WHERE r.org_id = $1 AND {dated} AND r.created_seq <= $2 AND r.created_seq <= $3 \
         AND NOT (r.anchor_ms >= $9 AND r.anchor_ms < $10) \
         AND ((r.anchor_ms >= $11 AND r.anchor_ms < $12) \
              OR (r.anchor_seq > $2 AND r.anchor_seq <> r.created_seq)) \
         AND {records_scope}"
    );
    let windowed = caller.window.is_some();
    let cached = super::range_queries_cached(db);
    let (rows, full, removed) = on_pool!(db, |pool, uuid| {
        let mut rows: Vec<(i64, String, String, Vec<u8>)> =
            sqlx::query_as(AssertSqlSafe(feed_sql.as_str()))
                .persistent(cached)
                .bind(uuid(org))
                .bind(cursor)
                .bind(head)
                .bind(&p[0])
                .bind(&p[1])
                .bind(&p[2])
                .bind(&p[3])
                .bind(&p[4])
                .bind(i64::from(max) + 1)
                .bind(uuid(device))
                .bind(lo)
                .bind(hi)
                .fetch_all(pool)
                .await?;
        let more = rows.len() > max as usize;
        rows.truncate(max as usize);
        let next = if more {
            rows.last().map_or(head, |r| r.0)
        } else {
            head
        };
        // Records granted to the caller after the cursor: their whole history
        // (dated ones only while in the window).
        let granted_sql = format!(
            "SELECT DISTINCT CAST(s.record_id AS TEXT) FROM record_scope s \
             JOIN records r ON r.id = s.record_id \
             WHERE s.principal IN ($1, $2, $3, $4, $5) AND s.granted_seq > $6 \
             AND s.granted_seq <= $7 \
             AND (NOT {dated} OR r.anchor_ms IS NULL OR (r.anchor_ms >= $8 AND r.anchor_ms < $9))"
        );
        let mut full_ids: Vec<String> = sqlx::query_scalar(AssertSqlSafe(granted_sql.as_str()))
            .persistent(cached)
            .bind(&p[0])
            .bind(&p[1])
            .bind(&p[2])
            .bind(&p[3])
            .bind(&p[4])
            .bind(cursor)
            .bind(next)
            .bind(lo)
            .bind(hi)
            .fetch_all(pool)
            .await?;
        let mut removed: Vec<String> = Vec::new();
        if windowed && cursor > 0 {
            for (sql, out) in [(&entering_sql, &mut full_ids), (&leaving_sql, &mut removed)] {
                let ids: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql.as_str()))
                    .persistent(cached)
                    .bind(uuid(org))
                    .bind(cursor)
                    .bind(next)
                    .bind(&p[0])
                    .bind(&p[1])
                    .bind(&p[2])
                    .bind(&p[3])
                    .bind(&p[4])
                    .bind(lo)
                    .bind(hi)
                    .bind(old_lo)
                    .bind(old_hi)
                    .fetch_all(pool)
                    .await?;
                out.extend(ids);
            }
        }
        // Records the caller lost (a new owner, team or territory) since the cursor.
        let revoked: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT CAST(v.record_id AS TEXT) FROM scope_revocations v \
             WHERE v.principal IN ($1, $2, $3, $4, $5) AND v.seq > $6 AND v.seq <= $7 \
             AND NOT EXISTS (SELECT 1 FROM record_scope s WHERE s.record_id = v.record_id \
             AND s.principal IN ($1, $2, $3, $4, $5))",
        )
        .persistent(cached)
        .bind(&p[0])
        .bind(&p[1])
        .bind(&p[2])
        .bind(&p[3])
        .bind(&p[4])
        .bind(cursor)
        .bind(next)
        .fetch_all(pool)
        .await?;
        removed.extend(revoked);
        // The caller's own read scope changed since the cursor (a new role,
        // team or territory, stored by `db::people::change_user` at a log
        // position of its own): the records of the principals gained come
        // whole (dated ones only while in the window), and those of the
        // principals lost that no principal the user still has grants are
        // named in `removed`. Several changes in the range count as one, from
        // the first one's principals to the last one's.
        let changes = scope_changes(db, caller.actor.user, cursor, next).await?;
        if let (Some(first), Some(last)) = (changes.first(), changes.last()) {
            let (before, after) = (&first.0, &last.1);
            let (gained, lost) = crate::domain::people::scope_delta(before, after);
            let pad = |v: &[String]| -> Vec<String> {
                let mut v = v.to_vec();
                v.resize(5.max(v.len()), "-".to_owned());
                v
            };
            if !gained.is_empty() {
                let g = pad(&gained);
                let sql = format!(
                    "SELECT DISTINCT CAST(s.record_id AS TEXT) FROM record_scope s \
                     JOIN records r ON r.id = s.record_id \
                     WHERE s.principal IN ({}) AND r.org_id = ${} AND r.created_seq <= ${} \
                     AND (NOT {dated} OR r.anchor_ms IS NULL \
                          OR (r.anchor_ms >= ${} AND r.anchor_ms < ${}))",
                    params(1, g.len()),
                    g.len() + 1,
                    g.len() + 2,
                    g.len() + 3,
                    g.len() + 4,
                );
                let mut q = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql));
                for p in &g {
                    q = q.bind(p);
                }
                let ids = q
                    .bind(uuid(org))
                    .bind(next)
                    .bind(lo)
                    .bind(hi)
                    .fetch_all(pool)
                    .await?;
                full_ids.extend(ids);
            }
            if !lost.is_empty() {
                let (l, a) = (pad(&lost), pad(after));
                let sql = format!(
                    "SELECT DISTINCT CAST(s.record_id AS TEXT) FROM record_scope s \
                     WHERE s.principal IN ({}) AND NOT EXISTS (SELECT 1 FROM record_scope k \
                     WHERE k.record_id = s.record_id AND k.principal IN ({}))",
                    params(1, l.len()),
                    params(l.len() + 1, a.len()),
                );
                let mut q = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql));
                for p in l.iter().chain(a.iter()) {
                    q = q.bind(p);
                }
                removed.extend(q.fetch_all(pool).await?);
            }
        }
        removed.sort();
        removed.dedup();
        full_ids.sort();
        full_ids.dedup();
        let mut full: Vec<(String, String, Vec<Vec<u8>>)> = Vec::new();
        for id in full_ids {
            let record = parse_uuid(&id)?;
            let kind: Option<String> =
                sqlx::query_scalar("SELECT kind FROM records WHERE id = $1 AND org_id = $2")
                    .bind(uuid(record))
                    .bind(uuid(org))
                    .fetch_optional(pool)
                    .await?;
            let Some(kind) = kind else { continue };
            let changes: Vec<Vec<u8>> = sqlx::query_scalar(
                "SELECT change FROM change_log WHERE record_id = $1 AND seq <= $2 ORDER BY seq",
            )
            .bind(uuid(record))
            .bind(next)
            .fetch_all(pool)
            .await?;
            full.push((id, kind, changes));
        }
        ((rows, more, next), full, removed)
    });
    let (rows, more, next) = rows;
    let mut records: Vec<RecordChanges> = Vec::new();
    let mut index: BTreeMap<RecordId, usize> = BTreeMap::new();
    let mut add = |id: &str, kind: &str, change: Vec<u8>| -> Result<(), DbError> {
        let id = parse_record_id(id)?;
        let i = match index.get(&id) {
            Some(&i) => i,
            None => {
                index.insert(id, records.len());
                records.push(RecordChanges {
                    id,
                    kind: parse_kind(kind)?,
                    changes: Vec::new(),
                });
                records.len() - 1
            }
        };
        records[i].changes.push(ByteBuf::from(change));
        Ok(())
    };
    for (id, kind, changes) in full {
        for change in changes {
            add(&id, &kind, change)?;
        }
    }
    for (_, id, kind, change) in rows {
        add(&id, &kind, change)?;
    }
    // A whole history and its feed entries may overlap; send each change once.
    for r in &mut records {
        let mut seen = std::collections::HashSet::new();
        r.changes.retain(|c| seen.insert(c.to_vec()));
    }
    let removed = removed
        .iter()
        .map(|id| parse_record_id(id))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PullResponse {
        log: None,
        history: None,
        records,
        removed,
        next_cursor: u64::try_from(next).unwrap_or(0),
        more,
        window: caller.window,
        epochs: Vec::new(),
    })
}

/// A snapshot as read: id, kind, document, then the projection columns.
type SnapshotRow = (
    String,
    String,
    Vec<u8>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    bool,
);

/// Serves one page of snapshots for priming, in record-id order, each with
/// its projection (see [`Snapshot::projection`]).
pub async fn prime(
    db: &Database,
    caller: &Caller,
    req: &PrimeRequest,
) -> Result<PrimeResponse, DbError> {
    let cursor = match req.cursor {
        Some(c) => i64::try_from(c).unwrap_or(i64::MAX),
        // Taken before any snapshot is read: what commits meanwhile is pulled later.
        None => log_head(db, caller.org).await?,
    };
    let max = req.max_records.clamp(1, MAX_PRIME_RECORDS);
    let p = caller.principals();
    let org = *caller.org.as_uuid();
    let (lo, hi) = caller.window_bounds();
    let dated = dated_kinds_sql();
    let sql = if req.after.is_some() {
        "SELECT CAST(r.id AS TEXT), r.kind, r.doc, r.status, CAST(r.owner_id AS TEXT), \
         CAST(r.team_id AS TEXT), CAST(r.territory_id AS TEXT), CAST(r.account_id AS TEXT), \
         CAST(r.parent_id AS TEXT), r.start_ms, r.deleted FROM records r \
         WHERE r.org_id = $1 AND r.id > $2 AND EXISTS (SELECT 1 FROM record_scope s \
         WHERE s.record_id = r.id AND s.principal IN ($3, $4, $5, $6, $7)) \
         AND (NOT DATED OR r.anchor_ms IS NULL OR (r.anchor_ms >= $9 AND r.anchor_ms < $10)) \
         ORDER BY r.id LIMIT $8"
    } else {
        "SELECT CAST(r.id AS TEXT), r.kind, r.doc, r.status, CAST(r.owner_id AS TEXT), \
         CAST(r.team_id AS TEXT), CAST(r.territory_id AS TEXT), CAST(r.account_id AS TEXT), \
         CAST(r.parent_id AS TEXT), r.start_ms, r.deleted FROM records r \
         WHERE r.org_id = $1 AND $2 IS NULL AND EXISTS (SELECT 1 FROM record_scope s \
         WHERE s.record_id = r.id AND s.principal IN ($3, $4, $5, $6, $7)) \
         AND (NOT DATED OR r.anchor_ms IS NULL OR (r.anchor_ms >= $9 AND r.anchor_ms < $10)) \
         ORDER BY r.id LIMIT $8"
    }
    .replace("DATED", &dated);
    let mut rows: Vec<SnapshotRow> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(AssertSqlSafe(sql.as_str()))
            .bind(uuid(org))
            .bind(req.after.map(|a| uuid(*a.as_uuid())))
            .bind(&p[0])
            .bind(&p[1])
            .bind(&p[2])
            .bind(&p[3])
            .bind(&p[4])
            .bind(i64::from(max) + 1)
            .bind(lo)
            .bind(hi)
            .fetch_all(pool)
            .await?
    });
    let more = rows.len() > max as usize;
    rows.truncate(max as usize);
    let snapshots = rows
        .into_iter()
        .map(|row| {
            let id = parse_record_id(&row.0)?;
            let kind = parse_kind(&row.1)?;
            let ids = |s: Option<String>| s.and_then(|s| s.parse::<RecordId>().ok());
            Ok(Snapshot {
                id,
                kind,
                doc: ByteBuf::from(row.2),
                projection: Some(Projection {
                    id,
                    kind,
                    status: row.3,
                    owner: row.4.and_then(|s| s.parse().ok()),
                    team: row.5,
                    territory: row.6,
                    account_id: ids(row.7),
                    parent_id: ids(row.8),
                    start_ms: row.9,
                    deleted: row.10,
                }),
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    Ok(PrimeResponse {
        log: None,
        next: if more {
            snapshots.last().map(|s| s.id)
        } else {
            None
        },
        snapshots,
        cursor: u64::try_from(cursor).unwrap_or(0),
        window: caller.window,
        epochs: Vec::new(),
    })
}

/// A visit report as the review inbox lists it.
#[derive(Debug, Clone)]
pub struct ReportRow {
    /// The report's id.
    pub id: String,
    /// Its status.
    pub status: Option<String>,
    /// The rep.
    pub owner: Option<String>,
    /// The rep's name.
    pub owner_name: Option<String>,
    /// The visit.
    pub visit: Option<String>,
    /// The visit's account.
    pub account: Option<String>,
    /// The visit's planned start.
    pub planned_start_ms: Option<i64>,
    /// Last stored change (Unix seconds).
    pub updated_at: i64,
}

/// Visit reports in `status` in the caller's scope, newest change first.
pub async fn reports_in_status(
    db: &Database,
    caller: &Caller,
    status: &str,
    limit: usize,
) -> Result<Vec<ReportRow>, DbError> {
    type Row = (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i64>,
        i64,
    );
    let p = caller.principals();
    let org = *caller.org.as_uuid();
    let rows: Vec<Row> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT CAST(r.id AS TEXT), r.status, CAST(r.owner_id AS TEXT), u.display_name, \
             CAST(r.parent_id AS TEXT), CAST(v.account_id AS TEXT), v.start_ms, r.updated_at \
             FROM records r LEFT JOIN users u ON u.id = r.owner_id \
             LEFT JOIN records v ON v.id = r.parent_id \
             WHERE r.org_id = $1 AND r.kind = 'visit_report' AND r.status = $2 \
             AND r.deleted = $9 AND EXISTS (SELECT 1 FROM record_scope s WHERE s.record_id = r.id \
             AND s.principal IN ($3, $4, $5, $6, $7)) \
             ORDER BY r.updated_at DESC, r.id LIMIT $8",
        )
        .bind(uuid(org))
        .bind(status)
        .bind(&p[0])
        .bind(&p[1])
        .bind(&p[2])
        .bind(&p[3])
        .bind(&p[4])
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(false)
        .fetch_all(pool)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(|r| ReportRow {
            id: r.0,
            status: r.1,
            owner: r.2,
            owner_name: r.3,
            visit: r.4,
            account: r.5,
            planned_start_ms: r.6,
            updated_at: r.7,
        })
        .collect())
}

/// The server's copy of a record, if it exists in the caller's organisation and scope.
pub async fn readable_doc(
    db: &Database,
    caller: &Caller,
    id: RecordId,
) -> Result<Option<(RecordKind, Vec<u8>)>, DbError> {
    let p = caller.principals();
    let org = *caller.org.as_uuid();
    let row: Option<(String, Vec<u8>)> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT r.kind, r.doc FROM records r WHERE r.id = $1 AND r.org_id = $2 AND \
             EXISTS (SELECT 1 FROM record_scope s WHERE s.record_id = r.id \
             AND s.principal IN ($3, $4, $5, $6, $7))",
        )
        .bind(uuid(*id.as_uuid()))
        .bind(uuid(org))
        .bind(&p[0])
        .bind(&p[1])
        .bind(&p[2])
        .bind(&p[3])
        .bind(&p[4])
        .fetch_optional(pool)
        .await?
    });
    row.map(|(kind, doc)| Ok((parse_kind(&kind)?, doc)))
        .transpose()
}

/// Whether the caller may read the record (it exists in their organisation and
/// one of their principals is in its scope). A record is writable by whoever can
/// read it; the model's rules decide what the write may change.
pub async fn may_read(db: &Database, caller: &Caller, id: RecordId) -> Result<bool, DbError> {
    let p = caller.principals();
    let org = *caller.org.as_uuid();
    let found: Option<i32> = on_pool!(db, |pool, uuid| {
        sqlx::query_scalar(
            "SELECT 1 FROM records r WHERE r.id = $1 AND r.org_id = $2 AND \
             EXISTS (SELECT 1 FROM record_scope s WHERE s.record_id = r.id \
             AND s.principal IN ($3, $4, $5, $6, $7))",
        )
        .bind(uuid(*id.as_uuid()))
        .bind(uuid(org))
        .bind(&p[0])
        .bind(&p[1])
        .bind(&p[2])
        .bind(&p[3])
        .bind(&p[4])
        .fetch_optional(pool)
        .await?
    });
    Ok(found.is_some())
}

/// One entry of the server's rejection ledger.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RejectionRow {
    /// Entry id.
    pub id: Uuid,
    /// Who pushed.
    pub user_id: Uuid,
    /// From which device.
    pub device_id: Uuid,
    /// The record.
    pub record_id: Uuid,
    /// Its kind.
    pub kind: String,
    /// Stable code.
    pub code: String,
    /// Why.
    pub message: String,
    /// Number of refused changes.
    pub changes: usize,
    /// When (Unix seconds).
    pub created_at: i64,
}

/// A ledger row as read: ids as text, the changes as CBOR.
type LedgerRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    Vec<u8>,
    i64,
);

/// The rejection ledger entries the caller may see: their own, a manager's
/// team's, an administrator's organisation's; newest first.
pub async fn rejections(
    db: &Database,
    caller: &Caller,
    limit: u32,
) -> Result<Vec<RejectionRow>, DbError> {
    let org = *caller.org.as_uuid();
    let user = *caller.actor.user.as_uuid();
    let (mode, team) = match caller.actor.role {
        Role::Admin | Role::Server => (2i64, None),
        Role::Manager => (1, caller.team.map(|t| *t.as_uuid())),
        Role::Rep | Role::Technician => (0, None),
    };
    let rows: Vec<LedgerRow> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT CAST(x.id AS TEXT), CAST(x.user_id AS TEXT), CAST(x.device_id AS TEXT), \
                 CAST(x.record_id AS TEXT), x.kind, x.code, x.message, x.changes, x.created_at \
                 FROM rejections x JOIN users u ON u.id = x.user_id \
                 WHERE x.org_id = $1 AND ($2 = 2 OR x.user_id = $3 \
                 OR ($2 = 1 AND u.team_id = $4)) \
                 ORDER BY x.created_at DESC, x.id DESC LIMIT $5",
        )
        .bind(uuid(org))
        .bind(mode)
        .bind(uuid(user))
        .bind(team.map(uuid))
        .bind(i64::from(limit.min(1_000)))
        .fetch_all(pool)
        .await?
    });
    rows.into_iter()
        .map(
            |(id, user, device, record, kind, code, message, changes, at)| {
                let n = fieldsync_core::protocol::decode::<Vec<ByteBuf>>(&changes)
                    .map(|c| c.len())
                    .unwrap_or(0);
                Ok(RejectionRow {
                    id: parse_uuid(&id)?,
                    user_id: parse_uuid(&user)?,
                    device_id: parse_uuid(&device)?,
                    record_id: parse_uuid(&record)?,
                    kind,
                    code,
                    message,
                    changes: n,
                    created_at: at,
                })
            },
        )
        .collect()
}

/// One entry of a record's audit trail: an accepted change, who made it, from
/// which device, when.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Position in the change log.
    pub seq: i64,
    /// Who pushed it.
    pub user_id: Option<Uuid>,
    /// Their name.
    pub user_name: Option<String>,
    /// From which device (`None` for changes the server made itself).
    pub device_id: Option<Uuid>,
    /// When the server committed it (Unix seconds).
    pub committed_at: i64,
    /// The Automerge change hash, hex.
    pub change_hash: String,
}

/// A record's audit trail, oldest first; `None` when the record is not in the
/// caller's scope (or does not exist).
pub async fn audit_trail(
    db: &Database,
    caller: &Caller,
    id: RecordId,
) -> Result<Option<Vec<AuditEntry>>, DbError> {
    if readable_doc(db, caller, id).await?.is_none() {
        return Ok(None);
    }
    type Row = (
        i64,
        Option<String>,
        Option<String>,
        Option<String>,
        i64,
        Vec<u8>,
    );
    let rows: Vec<Row> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT l.seq, CAST(l.user_id AS TEXT), u.display_name, CAST(l.device_id AS TEXT), \
             l.committed_at, l.hash FROM change_log l LEFT JOIN users u ON u.id = l.user_id \
             WHERE l.record_id = $1 ORDER BY l.seq",
        )
        .bind(uuid(*id.as_uuid()))
        .fetch_all(pool)
        .await?
    });
    rows.into_iter()
        .map(|(seq, user, name, device, at, hash)| {
            Ok(AuditEntry {
                seq,
                user_id: user.as_deref().map(parse_uuid).transpose()?,
                user_name: name,
                device_id: device.as_deref().map(parse_uuid).transpose()?,
                committed_at: at,
                change_hash: hex::encode(hash),
            })
        })
        .collect::<Result<Vec<_>, DbError>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::bulk::{BATCH_ROWS, PG_PARAMS, SQLITE_PARAMS};

    /// What SQLite plans for a field user's pull: each record's changes past
    /// the cursor read by position, and a record's row only for a record
    /// that has such changes. The plan that read every change a record ever
    /// had was a large part of the server's CPU in the morning rush.
    #[tokio::test]
    async fn a_field_users_pull_on_sqlite_reads_only_the_changes_past_the_cursor() {
        let plan = crate::db::sqlite_plan(&feed_sql(false, true), 12).await;
        let step = |needle: &str| crate::db::plan_step(&plan, needle);
        let log =
            step("SEARCH l USING INDEX change_log_record_seq (record_id=? AND seq>? AND seq<?)");
        assert!(step("SCAN mine") < log, "{plan:#?}");
        assert!(log < step("SEARCH r "), "{plan:#?}");
    }

    /// A group commit reads its records' rows before writing them by id,
    /// not by walking the organisation's records (which SQLite, without
    /// statistics, took for the narrower way).
    #[tokio::test]
    async fn the_rows_before_a_push_are_read_by_id_on_sqlite() {
        for n in [1, 10, 300] {
            let sql = crate::db::positional(false, before_sql(false, n));
            let plan = crate::db::sqlite_plan(&sql, n + 1).await;
            crate::db::plan_step(
                &plan,
                "SEARCH records USING INDEX sqlite_autoindex_records_1 (id=?)",
            );
            assert_eq!(plan.len(), 1, "{plan:#?}");
        }
    }

    #[test]
    fn batched_statements_stay_within_each_dialects_parameter_budget() {
        for cols in [1, 3, 7, 18, crate::db::facts::FACT_COLS, 300] {
            let sqlite = rows_per_statement(false, cols);
            let pg = rows_per_statement(true, cols);
            assert!(sqlite >= 1 && pg >= 1, "{cols} columns");
            // One row always fits, however wide; more only within the budget.
            assert!(sqlite == 1 || sqlite * cols <= SQLITE_PARAMS, "{cols}");
            assert!(
                pg == 1 || (pg * cols <= PG_PARAMS && pg <= BATCH_ROWS),
                "{cols}"
            );
        }
        // The change log (7 columns): 285 rows a statement on SQLite, 357 on PostgreSQL.
        assert_eq!(rows_per_statement(false, 7), 285);
        assert_eq!(rows_per_statement(true, 7), 357);
    }
}
