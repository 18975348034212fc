//! The push decision: what to do with one record a device pushed, with no I/O.
//!
//! A push runs in three stages (see `service::sync::push`): **load** the
//! server's copy of each record and whether the caller may read it
//! (`db::records::apply_pushes`), **decide** here, record by record, and
//! **write** the accepted merges, the change log, scope rows, facts and
//! conflicts in one transaction. Deciding is pure: the same inputs give the same
//! merged document or the same refusal, so the rules are tested as a table
//! without a database.
//!
//! The business rules themselves are the shared model's
//! (`fieldsync_core::model::merge_incoming`): the device applied them before
//! sending, the server applies the same code again, because a client can build
//! its own changes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fieldsync_core::model::rules::references;
use fieldsync_core::model::stored;
use fieldsync_core::model::{
    IncomingChange, IncomingError, MAX_CHANGE_OPS, Merged, Projection, RecordDoc, RecordKind,
    merge_read,
};
use fieldsync_core::protocol::{
    PushOutcome, PushResponse, PushResult, RecordChanges, RecordEpoch, RejectCode, Rejection,
    epoch_of,
};
use fieldsync_core::{OrgId, RecordId};
use serde_bytes::ByteBuf;
use uuid::Uuid;

use super::caller::Caller;
use super::figures::facts::Facts;

/// Records up to this size are stored without Automerge's per-column
/// compression, and take appended changes up to it (see
/// [`stored_after`]).
pub const UNCOMPRESSED_DOC_BYTES: usize = 32 * 1024;

/// Most records one push may carry.
pub const MAX_PUSH_RECORDS: usize = 1_000;
/// Most changes one pull page returns (the client asks for fewer).
pub const MAX_PULL_CHANGES: u32 = 10_000;
/// Most snapshots one prime page returns.
pub const MAX_PRIME_RECORDS: u32 = 5_000;
/// Largest record: its saved document after a merge. Records hold text and
/// numbers; photos and documents travel as attachments.
pub const MAX_DOC_BYTES: usize = 1024 * 1024;
/// Most operations (expanded, see `fieldsync_core::model::MAX_CHANGE_OPS`)
/// one push may bring to merge; the records past it are refused as retryable
/// and come in the device's next push.
pub const MAX_PUSH_OPS: usize = 1_000_000;
/// Most time one push may spend merging (on the blocking pool, before it
/// writes). The records not merged by then are refused as retryable; the first
/// record is always merged, so every push makes progress.
pub const MERGE_BUDGET: Duration = Duration::from_secs(3);
/// Most written records one live note names the readers of; a larger push is
/// announced to the whole organisation.
pub const MAX_NOTE_RECORDS: usize = 64;

/// The principals a record has by itself (from its projection).
pub fn own_principals(p: &Projection, org: OrgId) -> Vec<String> {
    let mut out = vec![format!("o:{org}")];
    if let Some(owner) = p.owner {
        out.push(format!("u:{owner}"));
    }
    if let Some(team) = &p.team {
        out.push(format!("t:{team}"));
    }
    if p.kind.is_territory_wide()
        && let Some(territory) = &p.territory
    {
        out.push(format!("r:{territory}"));
    }
    out
}

/// The principals a record had through its previous owner, team and (for a
/// territory-wide kind) territory that its new projection no longer gives it.
pub fn lost_principals(
    p: &Projection,
    owner: Option<String>,
    team: Option<String>,
    territory: Option<String>,
) -> Vec<String> {
    let same = |old: &Option<String>, new: Option<&str>| {
        opt_uuid(old.as_deref()) == opt_uuid(new) || old.as_deref() == new
    };
    let mut lost = Vec::new();
    let new_owner = p.owner.map(|o| o.to_string());
    if let Some(old) = &owner
        && !same(&owner, new_owner.as_deref())
    {
        lost.push(format!("u:{old}"));
    }
    if let Some(old) = &team
        && !same(&team, p.team.as_deref())
    {
        lost.push(format!("t:{old}"));
    }
    if p.kind.is_territory_wide()
        && let Some(old) = &territory
        && !same(&territory, p.territory.as_deref())
    {
        lost.push(format!("r:{old}"));
    }
    lost
}

/// A record as loaded for a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The stored kind's name.
    pub kind: String,
    /// The stored document.
    pub doc: Vec<u8>,
    /// Whether the caller may read (and so write) it.
    pub readable: bool,
}

impl Loaded {
    /// A record of another organisation: it looks exactly like an unknown id
    /// would if it were readable, and nothing of it is returned.
    pub fn foreign() -> Self {
        Loaded {
            kind: String::new(),
            doc: Vec::new(),
            readable: false,
        }
    }
}

/// A merged record waiting to be written.
#[derive(Debug)]
pub struct Write {
    /// The record.
    pub id: RecordId,
    /// Whether the server had no copy before.
    pub is_new: bool,
    /// The merged document as the server stores it (`model::stored`): its
    /// stored copy with the new changes appended, or compacted.
    pub doc: Vec<u8>,
    /// Its indexed columns.
    pub projection: Projection,
    /// The new changes to append to the log: (hash, raw change).
    pub changes: Vec<(Vec<u8>, Vec<u8>)>,
    /// How many of `changes`, at the end, the server made itself in this
    /// push (pricing a submitted order); logged under no user and no device.
    pub server_changes: usize,
    /// The record's figures for the managers' dashboard (visits, orders, jobs).
    pub facts: Option<Facts>,
    /// For stateful kinds: whether the merged status holds concurrent values
    /// (a conflict for the managers' queue); `None` for other kinds.
    pub status_clash: Option<bool>,
    /// A visit the push put in progress while its rep has another one in
    /// progress: that other visit (a clash for the managers' queue).
    pub overlap: Option<RecordId>,
    /// A visit the push takes out of progress: its rep's overlap clashes close.
    pub ends_visit: bool,
    /// The record is new or its status moved: what the server reacts to after
    /// the commit (an assignment's job is rolled up, `service::jobs`).
    pub status_changed: bool,
    /// Until [`Decisions::finish`]: the merged record, what the server had,
    /// and what was pushed (kept for the ledger should the record be refused).
    /// Boxed: a merged Automerge document is over 4 KB by itself, and every
    /// write of a push is moved several times (from its merging thread into
    /// the push's list, through the second stage, into the writer).
    pub(super) pending: Option<Box<Pending>>,
}

#[derive(Debug)]
pub(super) struct Pending {
    pub(super) merged: RecordDoc,
    pub(super) before: Option<Projection>,
    pub(super) before_refs: Vec<Option<RecordId>>,
    /// The record's references now, in the order of `rules::references`.
    pub(super) refs: Vec<Option<RecordId>>,
    /// A visit with a fix: the account whose site its verdict is computed from.
    pub(super) site_account: Option<RecordId>,
    /// A checklist response: the template it answers; a checklist
    /// template: the version it follows.
    pub(super) template: Option<RecordId>,
    pub(super) kind: RecordKind,
    pub(super) pushed: Vec<ByteBuf>,
    pub(super) server_doc: Option<ByteBuf>,
    /// The merged record's figures and status clash, worked out while the
    /// push merges on all cores: the second stage runs inside the write
    /// transaction (on SQLite, under the single writer) and takes them as
    /// they are unless the server changes the record itself.
    pub(super) figures: (Option<Facts>, Option<bool>),
}

/// A refused record waiting to be logged in the rejection ledger.
#[derive(Debug)]
pub struct Refusal {
    /// The record.
    pub id: RecordId,
    /// Its kind as pushed.
    pub kind: RecordKind,
    /// Why.
    pub rejection: Rejection,
    /// The refused changes, kept for the ledger.
    pub changes: Vec<ByteBuf>,
}

/// What a push decided for each of its records, in request order.
#[derive(Debug, Default)]
pub struct Decisions {
    /// Per record: the heads after the merge, or the refusal.
    pub results: Vec<(RecordId, Result<Vec<u8>, Rejection>)>,
    /// Merges to write.
    pub writes: Vec<Write>,
    /// Refusals to log.
    pub refusals: Vec<Refusal>,
    /// The merged documents of the accepted records once saved, to be freed
    /// away from the write transaction (see [`Retired`]).
    pub retired: Retired,
}

/// Merged documents a push no longer needs. Freeing an Automerge document
/// takes as long as a fifth of merging it (its columns are many small
/// allocations), so the write transaction, which on SQLite holds the single
/// writer, hands them to another thread rather than dropping them itself.
#[derive(Debug, Default)]
pub struct Retired(pub(super) Vec<Box<Pending>>);

impl Retired {
    /// Whether there is nothing to free.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a push's pre-flight found about each of its records, before anything
/// is loaded or merged: `Some` refuses the record.
pub type Preflight = Vec<Option<Rejection>>;

/// Each record's changes as the pre-flight read them, in request order, for
/// the merge to take as they are (see [`IncomingChange`]). Empty where they
/// were not read (a merge again after a race reads them itself).
pub type ReadChanges = Vec<Vec<IncomingChange>>;

/// Counts the operations each record's changes expand to, reading only the
/// changes (cheap next to merging them): a record with a change over
/// [`MAX_CHANGE_OPS`] is refused for good, and the records past
/// [`MAX_PUSH_OPS`] in the push are refused as retryable (never the first).
/// Bytes that are not changes pass; the merge reports them. Answers the
/// changes as read too, for the merge.
pub fn preflight(records: &[RecordChanges]) -> (Preflight, ReadChanges) {
    preflight_within(records, MAX_CHANGE_OPS, MAX_PUSH_OPS)
}

fn preflight_within(
    records: &[RecordChanges],
    max_change: usize,
    max_push: usize,
) -> (Preflight, ReadChanges) {
    // Reading the changes is a fifth of the cost of merging a new record's:
    // read on all cores, then counted up in order.
    let read = |i: usize| -> Vec<IncomingChange> {
        records[i]
            .changes
            .iter()
            .map(|c| IncomingChange::read(c))
            .collect()
    };
    let mut done = on_cores(records.len(), read);
    let read: ReadChanges = (0..records.len())
        .map(|i| {
            done.get_mut(i)
                .and_then(Option::take)
                .unwrap_or_else(|| read(i))
        })
        .collect();
    let mut total = 0usize;
    let verdicts = read
        .iter()
        .enumerate()
        .map(|(i, changes)| {
            let ops: Vec<usize> = changes.iter().filter_map(IncomingChange::ops).collect();
            if let Some(&worst) = ops.iter().max()
                && worst > max_change
            {
                return Some(Rejection::from(IncomingError::TooLarge(format!(
                    "a change holds {worst} operations; a change holds at most {max_change} \
                     (photos and documents belong in attachments)"
                ))));
            }
            total = total.saturating_add(ops.iter().sum());
            (i > 0 && total > max_push).then(|| Rejection {
                code: RejectCode::TooLarge,
                message: format!(
                    "this push brings more than {max_push} operations to merge; \
                     this record comes in the next push"
                ),
                retryable: true,
                server_doc: None,
            })
        })
        .collect();
    (verdicts, read)
}

/// Refuses, as retryable, each record whose changes were made on an older
/// epoch than the one the server holds (`pushed` and `stored` list the
/// epochs above 0): an erasure rewrote its history since, and the device
/// pulls the new epoch, rebases its edits onto it and pushes them again
/// (`docs/adr/0005-erasure-by-rewrite.md`). Nothing of the old history is
/// merged.
pub fn refuse_stale_epochs(
    records: &[RecordChanges],
    pushed: &[RecordEpoch],
    stored: &[RecordEpoch],
    mut preflight: Preflight,
) -> Preflight {
    for (i, rec) in records.iter().enumerate() {
        let (mine, theirs) = (epoch_of(pushed, rec.id), epoch_of(stored, rec.id));
        if mine < theirs
            && let Some(slot) = preflight.get_mut(i)
        {
            *slot = Some(Rejection {
                code: RejectCode::StaleEpoch,
                message: format!(
                    "this record was rewritten by an erasure (epoch {theirs}; these changes \
                     were made on epoch {mine}); sync again to carry your edits over"
                ),
                retryable: true,
                server_doc: None,
            });
        }
    }
    preflight
}

/// Decides every record of a push (already deduplicated) given what was
/// loaded for each (`None`: the server has no copy) and what its pre-flight
/// found (and the changes as it read them, when it did: `read` may be
/// empty), merging for at most `budget` (the first record whatever it takes).
pub fn decide_all(
    caller: &Caller,
    records: &[RecordChanges],
    loaded: &[Option<Loaded>],
    preflight: &[Option<Rejection>],
    read: &[Vec<IncomingChange>],
    budget: Duration,
) -> Decisions {
    let started = Instant::now();
    let mut out = Decisions::default();
    // Records are merged on several cores when the push is large enough to
    // pay for the threads; a push that lists a record twice (with two kinds)
    // is decided in order, since the second entry's fate depends on the first.
    let mut ids: Vec<RecordId> = records.iter().map(|r| r.id).collect();
    ids.sort();
    ids.dedup();
    let mut early: Vec<Option<Outcome>> = if ids.len() == records.len() {
        decide_in_parallel(caller, records, loaded, preflight, read, budget, started)
    } else {
        Vec::new()
    };
    for (i, (rec, loaded)) in records.iter().zip(loaded).enumerate() {
        let outcome = if let Some(decided) = early.get_mut(i).and_then(Option::take) {
            decided
        } else if let Some(Some(refused)) = preflight.get(i) {
            Err(refused.clone())
        } else if out.writes.iter().any(|w| w.id == rec.id) {
            Err(Rejection {
                code: RejectCode::WrongKind,
                message: "the batch lists this record twice with different kinds".into(),
                retryable: false,
                server_doc: None,
            })
        } else if i > 0 && started.elapsed() > budget {
            Err(Rejection {
                code: RejectCode::TooLarge,
                message: format!(
                    "this push took more than {} s to merge; this record comes in the next push",
                    budget.as_secs()
                ),
                retryable: true,
                server_doc: None,
            })
        } else {
            decide(caller, rec, loaded.as_ref(), read.get(i).map(Vec::as_slice))
        };
        match outcome {
            Ok((write, heads)) => {
                if let Some(w) = write {
                    out.writes.push(w);
                }
                out.results.push((rec.id, Ok(heads)));
            }
            Err(rejection) => {
                // Changes on an erased epoch may hold erased values: the
                // ledger notes the refusal, not what was refused (the device
                // keeps its edits and rebases them).
                let changes = if rejection.code == RejectCode::StaleEpoch {
                    Vec::new()
                } else {
                    rec.changes.clone()
                };
                out.refusals.push(Refusal {
                    id: rec.id,
                    kind: rec.kind,
                    rejection: rejection.clone(),
                    changes,
                });
                out.results.push((rec.id, Err(rejection)));
            }
        }
    }
    out
}

/// What [`decide`] answers for one record.
type Outcome = Result<(Option<Write>, Vec<u8>), Rejection>;

/// Records per merging thread below which a push is merged on one thread:
/// starting a thread costs about what merging a small record does.
const RECORDS_PER_THREAD: usize = 8;

/// Decides every record of a push whose ids are all distinct on up to
/// `available_parallelism` threads (each takes the next undecided record, so
/// one costly record does not hold up the others), with the budget of
/// [`decide_all`]. An empty answer: the push is too small to share out, and
/// [`decide_all`] decides it on its own thread.
fn decide_in_parallel(
    caller: &Caller,
    records: &[RecordChanges],
    loaded: &[Option<Loaded>],
    preflight: &[Option<Rejection>],
    read: &[Vec<IncomingChange>],
    budget: Duration,
    started: Instant,
) -> Vec<Option<Outcome>> {
    let one = |i: usize| -> Outcome {
        if let Some(Some(refused)) = preflight.get(i) {
            Err(refused.clone())
        } else if i > 0 && started.elapsed() > budget {
            Err(Rejection {
                code: RejectCode::TooLarge,
                message: format!(
                    "this push took more than {} s to merge; this record comes in the next push",
                    budget.as_secs()
                ),
                retryable: true,
                server_doc: None,
            })
        } else {
            decide(
                caller,
                &records[i],
                loaded.get(i).and_then(Option::as_ref),
                read.get(i).map(Vec::as_slice),
            )
        }
    };
    on_cores(records.len(), one)
}

/// The cores this process may use, read once: `available_parallelism` opens
/// and reads the cgroup's quota files on every call, which every push paid
/// for (a thirteenth of a ten-record push's pre-flight in a profile). The
/// merges sharing a push out and the service's merge slots count the same.
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `f` of `0..n` on the machine's cores, when `n` is large enough to pay for
/// the threads (else nothing: the caller works through them itself). An
/// item whose thread failed is `None`: a panic inside a merge is caught where
/// Automerge is called (`fenced`); should one escape anyway, the caller
/// decides those items again on its own thread, one by one.
fn on_cores<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<Option<T>> {
    let threads = cores().min(n / RECORDS_PER_THREAD);
    if threads < 2 {
        return Vec::new();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || {
        let mut mine = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if i >= n {
                return mine;
            }
            mine.push((i, f(i)));
        }
    };
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
        for (i, done) in work() {
            out[i] = Some(done);
        }
        for helper in helpers {
            if let Ok(done) = helper.join() {
                for (i, item) in done {
                    out[i] = Some(item);
                }
            }
        }
    });
    out
}

/// Decides one record of a push, with no I/O: the merged record to write, or
/// why it is refused. `read` is the record's changes as the pre-flight read
/// them, when it did.
pub fn decide(
    caller: &Caller,
    rec: &RecordChanges,
    loaded: Option<&Loaded>,
    read: Option<&[IncomingChange]>,
) -> Result<(Option<Write>, Vec<u8>), Rejection> {
    let forbidden = |message: &str| Rejection {
        code: RejectCode::Forbidden,
        message: message.to_owned(),
        retryable: false,
        server_doc: None,
    };
    let existing = match loaded {
        Some(l) if !l.readable => {
            return Err(forbidden(
                "this record is not in your scope; nothing of it was stored",
            ));
        }
        Some(l) => {
            if l.kind != rec.kind.as_str() {
                return Err(Rejection {
                    code: RejectCode::WrongKind,
                    message: format!("record {} is a {}, not a {}", rec.id, l.kind, rec.kind),
                    retryable: false,
                    server_doc: Some(ByteBuf::from(l.doc.clone())),
                });
            }
            let doc = RecordDoc::load(&l.doc).map_err(|e| Rejection {
                code: RejectCode::Internal,
                message: format!("the server's copy of this record does not load: {e}"),
                retryable: true,
                server_doc: None,
            })?;
            Some(doc)
        }
        None => None,
    };
    let server_doc = || loaded.map(|l| ByteBuf::from(l.doc.clone()));
    if rec.kind.is_master_data() && !caller.actor.role.is_back_office() {
        return Err(Rejection {
            server_doc: server_doc(),
            ..forbidden(
                "only managers and administrators change the catalogue, price lists and checklist templates",
            )
        });
    }
    let too_large = |size: usize| Rejection {
        code: RejectCode::TooLarge,
        message: format!(
            "record {} would hold {} KiB; a record holds at most {} KiB \
             (photos and documents belong in attachments)",
            rec.id,
            size / 1024,
            MAX_DOC_BYTES / 1024
        ),
        retryable: false,
        server_doc: server_doc(),
    };
    let incoming: usize = rec.changes.iter().map(|c| c.len()).sum();
    if incoming > MAX_DOC_BYTES {
        return Err(too_large(incoming));
    }
    let read_here: Vec<IncomingChange>;
    let incoming = match read {
        Some(read) if read.len() == rec.changes.len() => read,
        _ => {
            read_here = rec
                .changes
                .iter()
                .map(|c| IncomingChange::read(c))
                .collect();
            &read_here
        }
    };
    let merged = merge_read(
        existing.as_ref(),
        rec.id,
        rec.kind,
        incoming,
        &caller.actor_id,
        &caller.actor,
        caller.org,
    )
    .map_err(|e: IncomingError| Rejection {
        server_doc: server_doc(),
        ..Rejection::from(e)
    })?;
    let Merged {
        mut doc,
        new_changes,
        json,
    } = merged;
    let heads: Vec<u8> = doc.heads().iter().flat_map(|h| h.0).collect();
    if new_changes.is_empty() {
        return Ok((None, heads));
    }
    // The JSON the model's checks already read, for the projection and what
    // the second stage needs (no document is converted twice).
    let (after_json, before_json) = match json {
        Some(pair) => pair,
        None => (
            doc.to_json().map_err(|e| Rejection {
                code: RejectCode::Validation,
                message: e.to_string(),
                retryable: false,
                server_doc: server_doc(),
            })?,
            None,
        ),
    };
    let projection = Projection::of_json(&doc, &after_json).map_err(|e| Rejection {
        code: RejectCode::Validation,
        message: e.to_string(),
        retryable: false,
        server_doc: server_doc(),
    })?;
    let before = match (&existing, &before_json) {
        (Some(d), Some(j)) => Projection::of_json(d, j).ok(),
        _ => None,
    };
    let status_changed = existing.is_none()
        || before
            .as_ref()
            .is_none_or(|b| b.status != projection.status);
    let before_refs = before_json
        .as_ref()
        .map(|j| refs_of(rec.kind, j))
        .unwrap_or_default();
    let refs = refs_of(rec.kind, &after_json);
    let id_at = |path: &[&str]| {
        path.iter()
            .try_fold(&after_json, |v, k| v.get(k))
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse::<RecordId>().ok())
    };
    let has_fix = |point: &str| {
        after_json
            .get(point)
            .and_then(|p| p.get("gps"))
            .is_some_and(|g| !g.is_null())
    };
    let site_account = (rec.kind == RecordKind::Visit
        && (has_fix("check_in") || has_fix("check_out")))
    .then(|| id_at(&["account_id"]))
    .flatten();
    let template = match rec.kind {
        RecordKind::ChecklistResponse => id_at(&["template_id"]),
        RecordKind::ChecklistTemplate => id_at(&["supersedes"]),
        _ => None,
    };
    let changes: Vec<(Vec<u8>, Vec<u8>)> = new_changes
        .into_iter()
        .map(|(h, raw)| (h.0.to_vec(), raw))
        .collect();
    // The server's copy with the new changes appended, or compacted once
    // that is due ([`stored_after`]).
    let stored = stored_after(
        loaded.map_or(&[][..], |l| l.doc.as_slice()),
        &mut doc,
        &changes
            .iter()
            .map(|(_, raw)| raw.as_slice())
            .collect::<Vec<_>>(),
    );
    Ok((
        Some(Write {
            id: rec.id,
            is_new: existing.is_none(),
            doc: stored,
            projection,
            changes,
            server_changes: 0,
            facts: None,
            status_clash: None,
            overlap: None,
            ends_visit: false,
            status_changed,
            pending: Some(Box::new(Pending {
                figures: figures_of(&doc, Some(&after_json)),
                merged: doc,
                before,
                before_refs,
                refs,
                site_account,
                template,
                kind: rec.kind,
                pushed: rec.changes.clone(),
                server_doc: server_doc(),
            })),
        }),
        heads,
    ))
}

/// The bytes the server stores for `doc`, whose stored form was `before`
/// (empty for a new record) and which took `changes` (raw, as they came)
/// since: `before` with the changes appended, which costs no encoding, or
/// once a compaction is due (`model::stored`: [`stored::COMPACT_AFTER`]
/// changes appended, or past [`UNCOMPRESSED_DOC_BYTES`]) a save of the
/// record, checked to load back with its heads. A save that does not keeps
/// the appended form, which loads by applying the same changes again.
///
/// Priming sends the stored bytes as they are: changes and small saves
/// without Automerge's own deflate, so gzip on the wire compresses a page of
/// them together (about a third of the bytes for a typical visit); a large
/// save compressed (its own text compresses well alone, and the size limit
/// applies to the compressed form).
pub fn stored_after(before: &[u8], doc: &mut RecordDoc, changes: &[&[u8]]) -> Vec<u8> {
    let bytes = changes.iter().map(|c| c.len()).sum();
    if !stored::compaction_due(before, changes.len(), bytes, UNCOMPRESSED_DOC_BYTES) {
        return stored::appended(before, changes.iter().copied());
    }
    stored::compacted(doc, |doc| {
        let plain = doc.save_uncompressed();
        if plain.len() <= UNCOMPRESSED_DOC_BYTES {
            plain
        } else {
            doc.save()
        }
    })
    .unwrap_or_else(|| {
        tracing::warn!(
            record = %doc.id(),
            "a record's save does not load back with its heads; it stays appended"
        );
        stored::appended(before, changes.iter().copied())
    })
}

/// A merged record's figures for the managers' dashboard, and for a stateful
/// kind whether its status clashes (a conflict for the managers' queue).
/// `json` is the document's JSON when the caller has it.
pub(super) fn figures_of(
    doc: &RecordDoc,
    json: Option<&serde_json::Value>,
) -> (Option<Facts>, Option<bool>) {
    let clash = doc
        .kind()
        .is_stateful()
        .then(|| doc.status_clashes().unwrap_or(false));
    let facts = match json {
        Some(json) => super::figures::facts::facts_of_json(doc, json),
        None => super::figures::facts::facts_of(doc),
    };
    (facts, clash)
}

/// The values of a record's references, in the order of `rules::references`.
fn refs_of(kind: RecordKind, json: &serde_json::Value) -> Vec<Option<RecordId>> {
    references(kind)
        .iter()
        .map(|r| {
            json.get(r.field)
                .and_then(|v| v.as_str())
                .and_then(|s| s.parse().ok())
        })
        .collect()
}

/// Merges one duplicate-free list of records out of a request (a record listed
/// twice gets both lists of changes).
pub fn dedupe(records: &[RecordChanges]) -> Vec<RecordChanges> {
    let mut order: Vec<RecordChanges> = Vec::with_capacity(records.len());
    let mut index: BTreeMap<RecordId, usize> = BTreeMap::new();
    for rec in records {
        match index.get(&rec.id) {
            Some(&i) if order[i].kind == rec.kind => {
                order[i].changes.extend(rec.changes.iter().cloned());
            }
            // A second entry of another kind is refused on its own below.
            Some(_) => order.push(rec.clone()),
            None => {
                index.insert(rec.id, order.len());
                order.push(rec.clone());
            }
        }
    }
    order
}

pub fn opt_uuid(s: Option<&str>) -> Option<Uuid> {
    s.and_then(|s| Uuid::parse_str(s).ok())
}

/// The answer to a push, from its decisions.
pub fn response(results: Vec<(RecordId, Result<Vec<u8>, Rejection>)>) -> PushResponse {
    PushResponse {
        results: results
            .into_iter()
            .map(|(id, r)| PushResult {
                id,
                outcome: match r {
                    Ok(heads) => PushOutcome::Accepted {
                        heads: heads
                            .chunks(32)
                            .map(|h| ByteBuf::from(h.to_vec()))
                            .collect(),
                    },
                    Err(rejection) => PushOutcome::Rejected(rejection),
                },
            })
            .collect(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use fieldsync_core::model::{Actor, DeviceTime, Product, RecordMeta, Role, Visit, change_ops};
    use fieldsync_core::{DeviceId, TeamId, TerritoryId, UserId};

    use super::*;

    /// A caller of `role` in one organisation, with its own device actor.
    pub(crate) fn caller(role: Role, org: OrgId, team: TeamId) -> Caller {
        Caller {
            actor: Actor::on_device(UserId::new(), role, DeviceId::new()),
            org,
            team: Some(team),
            territory: Some(TerritoryId::new()),
            display_name: "someone".into(),
            actor_id: automerge::ActorId::random(),
            window: None,
        }
    }

    pub(crate) fn meta(owner: UserId, org: OrgId, team: TeamId) -> RecordMeta {
        RecordMeta {
            id: RecordId::new(),
            org,
            owner,
            team,
            territory: TerritoryId::new(),
        }
    }

    /// A new planned visit owned by `owner`, created by `by` under its actor,
    /// in `by`'s team and territory.
    pub(crate) fn new_visit(by: &Caller, owner: UserId) -> (RecordChanges, RecordDoc) {
        let team = by.team.unwrap_or_default();
        let visit = Visit::planned(
            RecordMeta {
                territory: by.territory.unwrap_or_default(),
                ..meta(owner, by.org, team)
            },
            RecordId::new(),
            DeviceTime::utc(0),
            DeviceTime::utc(3_600_000),
        );
        let mut doc =
            RecordDoc::create_stateful(&visit, by.actor_id.clone(), &by.actor, DeviceTime::utc(0))
                .expect("a planned visit");
        (RecordChanges::of_doc(&mut doc, &[]), doc)
    }

    fn new_product(by: &Caller) -> RecordChanges {
        let product = Product {
            meta: meta(by.user(), by.org, by.team.unwrap_or_default()),
            sku: "P-1".into(),
            name: "Pump".into(),
            unit: "pcs".into(),
            serialized: false,
            spare_part: true,
            active: true,
        };
        let mut doc = RecordDoc::create(&product, by.actor_id.clone(), DeviceTime::utc(0))
            .expect("a product");
        RecordChanges::of_doc(&mut doc, &[])
    }

    fn stored(doc: &mut RecordDoc, readable: bool) -> Loaded {
        Loaded {
            kind: doc.kind().as_str().to_owned(),
            doc: doc.save(),
            readable,
        }
    }

    fn refused(outcome: Result<(Option<Write>, Vec<u8>), Rejection>) -> RejectCode {
        match outcome {
            Ok(_) => panic!("accepted"),
            Err(r) => r.code,
        }
    }

    #[test]
    fn a_record_takes_its_changes_appended_and_is_compacted_once_they_are_due() {
        use fieldsync_core::model::stored::{COMPACT_AFTER, tail};
        let (org, team) = (OrgId::new(), TeamId::new());
        let rep = caller(Role::Rep, org, team);
        let (rec, mut doc) = new_visit(&rep, rep.user());
        let first = rec.changes.len();
        let (write, _) = decide(&rep, &rec, None, None).expect("accepted");
        let mut held = Loaded {
            kind: "visit".into(),
            doc: write.expect("a write").doc,
            readable: true,
        };
        assert_eq!(tail(&held.doc), Some(first));
        // One edit a push: appended until the tail would pass the mark, then
        // compacted to a save that starts the tail again.
        let mut tails = Vec::new();
        for n in 0..COMPACT_AFTER {
            let before = doc.heads();
            doc.update::<Visit>(DeviceTime::utc(n as i64 + 1), |v| {
                v.notes = format!("edit {n}")
            })
            .expect("an edit");
            let edit = RecordChanges::of_doc(&mut doc, &before);
            let (write, heads) = decide(&rep, &edit, Some(&held), None).expect("accepted");
            held.doc = write.expect("a write").doc;
            assert_eq!(
                heads,
                doc.heads().iter().flat_map(|h| h.0).collect::<Vec<_>>()
            );
            let mut loaded = RecordDoc::load(&held.doc).expect("the stored form loads");
            assert_eq!(loaded.heads(), doc.heads());
            tails.push(tail(&held.doc).expect("chunks"));
        }
        let due = COMPACT_AFTER - first;
        let expected: Vec<usize> = (1..=COMPACT_AFTER)
            .map(|n| if n <= due { first + n } else { n - due - 1 })
            .collect();
        assert_eq!(tails, expected);
    }

    #[test]
    fn only_the_back_office_writes_master_data() {
        let (org, team) = (OrgId::new(), TeamId::new());
        for (role, allowed) in [
            (Role::Rep, false),
            (Role::Technician, false),
            (Role::Manager, true),
            (Role::Admin, true),
        ] {
            let who = caller(role, org, team);
            let rec = new_product(&who);
            assert_eq!(decide(&who, &rec, None, None).is_ok(), allowed, "{role:?}");
        }
    }

    #[test]
    fn an_unreadable_record_is_refused_and_nothing_of_it_is_returned() {
        let (org, team) = (OrgId::new(), TeamId::new());
        let rep = caller(Role::Rep, org, team);
        let (rec, mut doc) = new_visit(&rep, rep.user());
        let loaded = stored(&mut doc, false);
        match decide(&rep, &rec, Some(&loaded), None) {
            Err(r) => {
                assert_eq!(r.code, RejectCode::Forbidden);
                assert!(r.server_doc.is_none());
            }
            Ok(_) => panic!("accepted"),
        }
        assert_eq!(
            refused(decide(&rep, &rec, Some(&Loaded::foreign()), None)),
            RejectCode::Forbidden
        );
    }

    #[test]
    fn a_record_pushed_under_another_kind_is_refused() {
        let (org, team) = (OrgId::new(), TeamId::new());
        let rep = caller(Role::Rep, org, team);
        let (rec, mut doc) = new_visit(&rep, rep.user());
        let mut loaded = stored(&mut doc, true);
        loaded.kind = RecordKind::Order.as_str().to_owned();
        assert_eq!(
            refused(decide(&rep, &rec, Some(&loaded), None)),
            RejectCode::WrongKind
        );
    }

    #[test]
    fn changes_the_server_has_already_are_accepted_with_nothing_to_write() {
        let (org, team) = (OrgId::new(), TeamId::new());
        let rep = caller(Role::Rep, org, team);
        let (rec, mut doc) = new_visit(&rep, rep.user());
        let loaded = stored(&mut doc, true);
        let (write, heads) = decide(&rep, &rec, Some(&loaded), None).expect("accepted");
        assert!(write.is_none());
        assert_eq!(heads.len(), 32);
    }

    #[test]
    fn a_large_push_is_counted_on_the_cores_and_limited_in_request_order() {
        let org = OrgId::new();
        let rep = caller(Role::Rep, org, TeamId::new());
        // Enough records to be shared out over the cores (`on_cores`).
        let records: Vec<RecordChanges> = (0..8 * RECORDS_PER_THREAD)
            .map(|_| new_visit(&rep, rep.actor.user).0)
            .collect();
        let ops: Vec<usize> = records
            .iter()
            .map(|r| r.changes.iter().filter_map(|c| change_ops(c)).sum())
            .collect();
        // The push limit lets the first ten in, whichever thread counted them.
        let verdicts = preflight_within(&records, usize::MAX, ops[..10].iter().sum()).0;
        assert_eq!(verdicts.len(), records.len());
        assert!(verdicts[..10].iter().all(Option::is_none), "{verdicts:?}");
        for v in &verdicts[10..] {
            let r = v.as_ref().expect("deferred");
            assert_eq!(r.code, RejectCode::TooLarge);
            assert!(r.retryable, "{}", r.message);
        }
    }

    #[test]
    fn the_preflight_refuses_costly_changes_and_defers_what_is_past_the_push_limit() {
        let org = OrgId::new();
        let rep = caller(Role::Rep, org, TeamId::new());
        let records: Vec<RecordChanges> =
            (0..4).map(|_| new_visit(&rep, rep.actor.user).0).collect();
        let ops: Vec<usize> = records
            .iter()
            .map(|r| r.changes.iter().filter_map(|c| change_ops(c)).sum())
            .collect();
        assert!(ops.iter().all(|&n| n > 1), "{ops:?}");
        let worst_change = records[0]
            .changes
            .iter()
            .filter_map(|c| change_ops(c))
            .max()
            .unwrap_or(0);
        // Each change is under the limit; the push limit lets two records in.
        let verdicts = preflight_within(&records, worst_change, ops[0] + ops[1]).0;
        assert!(
            verdicts[0].is_none() && verdicts[1].is_none(),
            "{verdicts:?}"
        );
        for v in &verdicts[2..] {
            let r = v.as_ref().expect("deferred");
            assert_eq!(r.code, RejectCode::TooLarge);
            assert!(r.retryable, "{}", r.message);
        }
        // A change over the limit is refused for good, even as the first.
        let verdicts = preflight_within(&records, worst_change - 1, usize::MAX).0;
        let r = verdicts[0].as_ref().expect("refused");
        assert!(
            !r.retryable && r.message.contains("operations"),
            "{}",
            r.message
        );
        // The first record is always merged, however large the push.
        assert!(preflight_within(&records, usize::MAX, 0).0[0].is_none());
        // Merging stops at the budget, never before the first record.
        let decided = decide_all(
            &rep,
            &records,
            &[None, None, None, None],
            &[],
            &[],
            Duration::ZERO,
        );
        assert!(decided.results[0].1.is_ok());
        for (_, r) in &decided.results[1..] {
            assert!(matches!(r, Err(r) if r.retryable && r.code == RejectCode::TooLarge));
        }
    }

    #[test]
    fn a_push_over_the_record_limit_is_refused_before_merging() {
        let (org, team) = (OrgId::new(), TeamId::new());
        let rep = caller(Role::Rep, org, team);
        let (mut rec, _) = new_visit(&rep, rep.user());
        rec.changes = vec![ByteBuf::from(vec![0u8; MAX_DOC_BYTES + 1])];
        assert_eq!(
            refused(decide(&rep, &rec, None, None)),
            RejectCode::TooLarge
        );
    }

    #[test]
    fn a_record_listed_twice_with_two_kinds_is_refused_the_second_time() {
        let (org, team) = (OrgId::new(), TeamId::new());
        let rep = caller(Role::Rep, org, team);
        let (rec, _) = new_visit(&rep, rep.user());
        let twin = RecordChanges {
            kind: RecordKind::Order,
            ..rec.clone()
        };
        let records = dedupe(&[rec.clone(), twin]);
        assert_eq!(records.len(), 2, "a second kind is kept apart");
        let decided = decide_all(&rep, &records, &[None, None], &[], &[], Duration::MAX);
        assert_eq!(decided.writes.len(), 1);
        assert_eq!(decided.refusals.len(), 1);
        assert_eq!(decided.refusals[0].rejection.code, RejectCode::WrongKind);
        let answer = response(decided.results);
        assert!(matches!(
            answer.results[0].outcome,
            PushOutcome::Accepted { .. }
        ));
        assert!(matches!(
            answer.results[1].outcome,
            PushOutcome::Rejected(_)
        ));
    }

    #[test]
    fn the_same_record_listed_twice_merges_both_lists() {
        let (org, team) = (OrgId::new(), TeamId::new());
        let rep = caller(Role::Rep, org, team);
        let (rec, _) = new_visit(&rep, rep.user());
        let records = dedupe(&[rec.clone(), rec.clone()]);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].changes.len(), 2 * rec.changes.len());
    }

    #[test]
    fn a_large_push_is_decided_on_several_threads_in_request_order_with_its_stored_form() {
        let (org, team) = (OrgId::new(), TeamId::new());
        let rep = caller(Role::Rep, org, team);
        let mut docs = Vec::new();
        let mut records = Vec::new();
        for _ in 0..3 * RECORDS_PER_THREAD {
            let (rec, doc) = new_visit(&rep, rep.user());
            records.push(rec);
            docs.push(doc);
        }
        // One refused by its pre-flight, in the middle: it stays in its place.
        let mut preflight: Preflight = vec![None; records.len()];
        preflight[5] = Some(Rejection {
            code: RejectCode::TooLarge,
            message: "too many operations".into(),
            retryable: false,
            server_doc: None,
        });
        let loaded: Vec<Option<Loaded>> = vec![None; records.len()];
        // Merged from the changes as the pre-flight read them.
        let (_, read) = super::preflight(&records);
        let parallel = decide_all(&rep, &records, &loaded, &preflight, &read, MERGE_BUDGET);
        let ids: Vec<RecordId> = parallel.results.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, records.iter().map(|r| r.id).collect::<Vec<_>>());
        assert!(parallel.results[5].1.is_err());
        assert_eq!(parallel.refusals.len(), 1);
        assert_eq!(parallel.writes.len(), records.len() - 1);
        for (w, doc) in parallel.writes.iter().zip(
            docs.iter_mut()
                .enumerate()
                .filter(|(i, _)| *i != 5)
                .map(|(_, d)| d),
        ) {
            assert_eq!(w.id, doc.id());
            // A new record is stored as its changes as they came, and loads
            // with the record's heads.
            assert_eq!(
                fieldsync_core::model::stored::tail(&w.doc),
                Some(records[0].changes.len())
            );
            let mut stored = RecordDoc::load(&w.doc).expect("the stored form loads");
            assert_eq!(stored.heads(), doc.heads());
        }
        // The same push decided on one thread, each record reading its own
        // changes, gives the same answers.
        let one: Vec<_> = records
            .iter()
            .zip(&loaded)
            .enumerate()
            .map(|(i, (rec, l))| match &preflight[i] {
                Some(refused) => Err(refused.code),
                None => decide(&rep, rec, l.as_ref(), None)
                    .map(|(_, heads)| heads)
                    .map_err(|r| r.code),
            })
            .collect();
        let many: Vec<_> = parallel
            .results
            .iter()
            .map(|(_, r)| r.clone().map_err(|r| r.code))
            .collect();
        assert_eq!(one, many);
    }

    #[test]
    fn a_changed_owner_loses_the_old_principals() {
        let (org, team) = (OrgId::new(), TeamId::new());
        let rep = caller(Role::Rep, org, team);
        let (rec, _) = new_visit(&rep, rep.user());
        let (write, _) = decide(&rep, &rec, None, None).expect("accepted");
        let p = write.expect("write").projection;
        let old_owner = UserId::new().to_string();
        let lost = lost_principals(&p, Some(old_owner.clone()), p.team.clone(), None);
        assert_eq!(lost, vec![format!("u:{old_owner}")]);
        let own = own_principals(&p, org);
        assert!(own.contains(&format!("o:{org}")));
        assert!(own.contains(&format!("u:{}", rep.user())));
    }
}
