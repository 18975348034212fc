//! The device store against a real SQLite file: lists, outbox, remote changes,
//! reopening, compaction and schema upgrades.

#![cfg(feature = "device")]

use fieldsync_core::automerge::{ActorId, ChangeHash};
use fieldsync_core::model::order::{self, Order, OrderLine};
use fieldsync_core::model::visit::{self, Site, Visit, VisitOutcome, VisitStatus};
use fieldsync_core::model::{Assignment, AssignmentStatus, assignment, stored};
use fieldsync_core::protocol::{RecordChanges, RejectCode, Rejection};
use fieldsync_core::store::{DeviceStore, SCHEMA_VERSION, StoreOptions, sha256_hex};
use fieldsync_core::{
    Actor, DeviceId, DeviceTime, Money, OrgId, Qty, RecordDoc, RecordId, RecordKind, RecordMeta,
    Role, TeamId, TerritoryId, TransitionRequest, UserId,
};
use serde_bytes::ByteBuf;

const DAY: i64 = 86_400_000;
const MONDAY: i64 = 1_767_571_200_000; // 2026-01-05T00:00Z

struct World {
    org: OrgId,
    team: TeamId,
    territory: TerritoryId,
    rep: Actor,
}

impl World {
    fn new() -> Self {
        Self {
            org: OrgId::new(),
            team: TeamId::new(),
            territory: TerritoryId::new(),
            rep: Actor::on_device(UserId::new(), Role::Rep, DeviceId::new()),
        }
    }

    fn meta(&self, owner: UserId) -> RecordMeta {
        RecordMeta {
            id: RecordId::new(),
            org: self.org,
            owner,
            team: self.team,
            territory: self.territory,
        }
    }

    fn visit(&self, account: RecordId, start: i64) -> Visit {
        Visit::planned(
            self.meta(self.rep.user),
            account,
            DeviceTime::utc(start),
            DeviceTime::utc(start + 3_600_000),
        )
    }
}

const SITE: Site = Site {
    coords: None,
    radius_m: 100.0,
};

#[test]
fn lists_follow_creates_edits_transitions_and_deletes() {
    let w = World::new();
    let store = DeviceStore::open_in_memory().expect("open");
    let (acme, bravo) = (RecordId::new(), RecordId::new());
    let v1 = store
        .create_stateful(
            &w.visit(acme, MONDAY + 9 * 3_600_000),
            &w.rep,
            DeviceTime::utc(0),
        )
        .expect("v1");
    let v2 = store
        .create_stateful(
            &w.visit(bravo, MONDAY + 11 * 3_600_000),
            &w.rep,
            DeviceTime::utc(0),
        )
        .expect("v2");
    let v3 = store
        .create_stateful(
            &w.visit(acme, MONDAY + DAY + 3_600_000),
            &w.rep,
            DeviceTime::utc(0),
        )
        .expect("v3");

    let today: Vec<RecordId> = store
        .visits_between(MONDAY, MONDAY + DAY)
        .expect("today")
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(today, vec![v1, v2], "today's visits in start order");
    let acme_visits: Vec<RecordId> = store
        .visits_for_account(acme)
        .expect("acme")
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(
        acme_visits,
        vec![v3, v1],
        "an account's visits, newest first"
    );

    store
        .act(v1, |d| {
            visit::check_in(
                d,
                &w.rep,
                DeviceTime::utc(MONDAY + 9 * 3_600_000),
                None,
                SITE,
            )
        })
        .expect("check in");
    assert_eq!(
        store
            .by_status(RecordKind::Visit, "in_progress")
            .expect("list")[0]
            .id,
        v1
    );
    store
        .act(v1, |d| {
            visit::check_out(
                d,
                &w.rep,
                DeviceTime::utc(MONDAY + 10 * 3_600_000),
                None,
                SITE,
                VisitOutcome::NoOrder,
            )
        })
        .expect("check out");
    assert!(
        store
            .by_status(RecordKind::Visit, "in_progress")
            .expect("list")
            .is_empty()
    );
    assert_eq!(
        store.read_stateful::<Visit>(v1).expect("read").outcome,
        Some(VisitOutcome::NoOrder)
    );

    store.delete(v2, DeviceTime::utc(1)).expect("delete");
    assert_eq!(
        store
            .visits_between(MONDAY, MONDAY + DAY)
            .expect("today")
            .len(),
        1
    );

    let o = store
        .create_stateful(
            &Order::new(w.meta(w.rep.user), acme, "EUR"),
            &w.rep,
            DeviceTime::utc(0),
        )
        .expect("order");
    store
        .act(o, |d| {
            order::add_line(
                d,
                &w.rep,
                DeviceTime::utc(1),
                OrderLine::new(RecordId::new(), Qty::units(2), Money::new(250, "EUR")),
            )
        })
        .expect("line");
    assert_eq!(store.orders_for_account(acme).expect("orders")[0].id, o);
    assert!(store.orders_for_account(bravo).expect("orders").is_empty());
    assert_eq!(
        store
            .read::<Order>(o)
            .expect("read")
            .totals()
            .expect("totals")
            .total,
        500
    );
}

#[test]
fn assignments_list_by_status() {
    let w = World::new();
    let store = DeviceStore::open_in_memory().expect("open");
    let tech = Actor::on_device(UserId::new(), Role::Technician, DeviceId::new());
    let manager = Actor::without_device(UserId::new(), Role::Manager);
    let mut a = Assignment::new(
        w.meta(tech.user),
        RecordId::new(),
        DeviceTime::utc(MONDAY),
        DeviceTime::utc(MONDAY + 1),
    );
    a.status = AssignmentStatus::Dispatched;
    let id = store
        .create_stateful(&a, &manager, DeviceTime::utc(0))
        .expect("create");
    assert_eq!(
        store
            .by_status(RecordKind::Assignment, "dispatched")
            .expect("list")
            .len(),
        1
    );
    store
        .act(id, |d| {
            assignment::advance(
                d,
                &tech,
                AssignmentStatus::Accepted,
                DeviceTime::utc(1),
                None,
                None,
            )
        })
        .expect("accept");
    assert!(
        store
            .by_status(RecordKind::Assignment, "dispatched")
            .expect("list")
            .is_empty()
    );
    assert_eq!(
        store
            .by_status(RecordKind::Assignment, "accepted")
            .expect("list")[0]
            .id,
        id
    );
}

fn ids(list: Vec<fieldsync_core::model::Projection>) -> Vec<RecordId> {
    list.iter().map(|p| p.id).collect()
}

#[test]
fn lists_follow_remote_creates_transitions_reschedules_and_deletes() {
    let w = World::new();
    let store = DeviceStore::open_in_memory().expect("open");
    let manager = Actor::without_device(UserId::new(), Role::Manager);
    let office = ActorId::random();
    let acme = RecordId::new();
    let t0 = DeviceTime::utc(0);
    // The office plans two of today's visits and the rep's order arrives from
    // another of their devices; an assignment is dispatched to a technician.
    let mut morning = RecordDoc::create_stateful(
        &w.visit(acme, MONDAY + 9 * 3_600_000),
        office.clone(),
        &manager,
        t0,
    )
    .expect("morning");
    let mut afternoon = RecordDoc::create_stateful(
        &w.visit(acme, MONDAY + 14 * 3_600_000),
        office.clone(),
        &manager,
        t0,
    )
    .expect("afternoon");
    let mut order = RecordDoc::create_stateful(
        &Order::new(w.meta(w.rep.user), acme, "EUR"),
        ActorId::random(),
        &w.rep,
        t0,
    )
    .expect("order");
    let job = RecordId::new();
    let mut a = Assignment::new(
        w.meta(UserId::new()),
        job,
        DeviceTime::utc(MONDAY + 8 * 3_600_000),
        DeviceTime::utc(MONDAY + 10 * 3_600_000),
    );
    a.status = AssignmentStatus::Dispatched;
    let mut assignment = RecordDoc::create_stateful(&a, office, &manager, t0).expect("assignment");
    store
        .apply_page(
            &[
                RecordChanges::of_doc(&mut morning, &[]),
                RecordChanges::of_doc(&mut afternoon, &[]),
                RecordChanges::of_doc(&mut order, &[]),
                RecordChanges::of_doc(&mut assignment, &[]),
            ],
            &[],
            Some(1),
        )
        .expect("first page");
    let (m, a_id, o) = (morning.id(), afternoon.id(), order.id());
    assert_eq!(
        ids(store.visits_between(MONDAY, MONDAY + DAY).expect("today")),
        vec![m, a_id]
    );
    assert_eq!(
        ids(store.visits_for_account(acme).expect("acme")),
        vec![a_id, m]
    );
    assert_eq!(
        ids(store.orders_for_account(acme).expect("orders")),
        vec![o]
    );
    let dispatched = store
        .by_status(RecordKind::Assignment, "dispatched")
        .expect("dispatched");
    assert_eq!(
        (dispatched.len(), dispatched[0].parent_id),
        (1, Some(job)),
        "an assignment is listed with its job"
    );
    assert_eq!(store.pending_changes().expect("count"), 0);

    // The office cancels the morning visit, moves the afternoon one to
    // tomorrow and deletes the order; all of it arrives in the next page.
    let since: Vec<Vec<ChangeHash>> = [&mut morning, &mut afternoon, &mut order]
        .into_iter()
        .map(RecordDoc::heads)
        .collect();
    morning
        .transition::<Visit>(
            &manager,
            &TransitionRequest::new(VisitStatus::Cancelled, DeviceTime::utc(1)),
            |_| {},
        )
        .expect("cancel");
    afternoon
        .update::<Visit>(DeviceTime::utc(1), |v| {
            v.planned_start = Some(DeviceTime::utc(MONDAY + DAY + 14 * 3_600_000));
            v.planned_end = Some(DeviceTime::utc(MONDAY + DAY + 15 * 3_600_000));
        })
        .expect("reschedule");
    order.delete(DeviceTime::utc(1)).expect("delete");
    store
        .apply_page(
            &[
                RecordChanges::of_doc(&mut morning, &since[0]),
                RecordChanges::of_doc(&mut afternoon, &since[1]),
                RecordChanges::of_doc(&mut order, &since[2]),
            ],
            &[],
            Some(2),
        )
        .expect("second page");
    assert_eq!(
        ids(store.visits_between(MONDAY, MONDAY + DAY).expect("today")),
        vec![m],
        "the rescheduled visit left today"
    );
    assert_eq!(
        ids(store
            .visits_between(MONDAY + DAY, MONDAY + 2 * DAY)
            .expect("tomorrow")),
        vec![a_id]
    );
    assert_eq!(
        ids(store
            .by_status(RecordKind::Visit, "cancelled")
            .expect("cancelled")),
        vec![m]
    );
    assert_eq!(
        ids(store
            .by_status(RecordKind::Visit, "planned")
            .expect("planned")),
        vec![a_id]
    );
    assert!(
        store.orders_for_account(acme).expect("orders").is_empty(),
        "a tombstoned order leaves the account's list"
    );
    assert!(store.all_of(RecordKind::Order).expect("all")[0].deleted);
    assert_eq!(
        store.pending_changes().expect("count"),
        0,
        "remote changes are not queued for upload"
    );
}

#[test]
fn a_push_answer_is_acknowledged_in_one_go_and_leaves_later_edits_pending() {
    let w = World::new();
    let store = DeviceStore::open_in_memory().expect("open");
    let ids: Vec<RecordId> = (0..3)
        .map(|i| {
            store
                .create_stateful(
                    &w.visit(RecordId::new(), MONDAY + i),
                    &w.rep,
                    DeviceTime::utc(0),
                )
                .expect("create")
        })
        .collect();
    let batch = store.outbox_batch_hashed(10).expect("batch");
    assert_eq!(batch.len(), 3);
    // The hashes come from the outbox, in the order of the changes.
    for (rec, hashes) in &batch {
        let read: Vec<ChangeHash> = rec.changes.iter().map(|c| hash_of(c)).collect();
        assert_eq!(&read, hashes);
    }
    // An edit made while the push was on its way is not part of the answer.
    store
        .update::<Visit>(ids[0], DeviceTime::utc(1), |v| v.notes = "late".into())
        .expect("edit");
    let acks: Vec<(RecordId, Vec<ChangeHash>)> = batch
        .iter()
        .filter(|(rec, _)| rec.id != ids[2])
        .map(|(rec, hashes)| (rec.id, hashes.clone()))
        .collect();
    store.acknowledge_all(&acks).expect("ack");
    let left: Vec<RecordId> = store
        .outbox_batch(10)
        .expect("batch")
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&ids[0]) && left.contains(&ids[2]));
    assert_eq!(store.pending_changes().expect("count"), 2);
}

#[test]
fn the_outbox_holds_each_local_change_until_acknowledged() {
    let w = World::new();
    let store = DeviceStore::open_in_memory().expect("open");
    let v = store
        .create_stateful(
            &w.visit(RecordId::new(), MONDAY),
            &w.rep,
            DeviceTime::utc(0),
        )
        .expect("create");
    store
        .update::<Visit>(v, DeviceTime::utc(1), |v| v.notes = "gate code 1234".into())
        .expect("edit");
    store
        .update::<Visit>(v, DeviceTime::utc(2), |v| v.notes = "gate code 1234".into())
        .expect("no-op edit");
    assert_eq!(
        store.pending_changes().expect("count"),
        2,
        "one change per action that changed something"
    );

    let batch = store.outbox_batch(10).expect("batch");
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].changes.len(), 2);
    let first: Vec<ChangeHash> = batch[0].changes[..1].iter().map(|c| hash_of(c)).collect();
    store.acknowledge(v, &first).expect("ack");
    assert_eq!(store.pending_changes().expect("count"), 1);

    let rest = store.outbox_batch(10).expect("batch");
    store
        .reject(
            &rest[0],
            &Rejection {
                code: RejectCode::Validation,
                message: "notes too long".into(),
                retryable: false,
                server_doc: None,
            },
        )
        .expect("reject");
    assert_eq!(store.pending_changes().expect("count"), 0);
    let ledger = store.rejections().expect("ledger");
    assert_eq!(
        (ledger.len(), ledger[0].code.as_str(), ledger[0].record_id),
        (1, "validation", v)
    );
}

#[test]
fn remote_changes_merge_without_entering_the_outbox() {
    let w = World::new();
    let store = DeviceStore::open_in_memory().expect("open");
    // A record made elsewhere arrives.
    let mut remote = RecordDoc::create_stateful(
        &w.visit(RecordId::new(), MONDAY),
        ActorId::random(),
        &w.rep,
        DeviceTime::utc(0),
    )
    .expect("remote");
    let id = remote.id();
    let all = |d: &mut RecordDoc, since: &[ChangeHash]| RecordChanges {
        id,
        kind: RecordKind::Visit,
        changes: d
            .changes_since(since)
            .iter()
            .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
            .collect(),
    };
    store
        .apply_page(&[all(&mut remote, &[])], &[], Some(7))
        .expect("apply");
    assert_eq!(store.cursor().expect("cursor"), Some(7));
    assert_eq!(store.pending_changes().expect("count"), 0);
    // Both sides edit different fields; the remote edit arrives; both survive.
    store
        .update::<Visit>(id, DeviceTime::utc(1), |v| {
            v.instructions = Some("local".into())
        })
        .expect("local edit");
    let heads = remote.heads();
    remote
        .update::<Visit>(DeviceTime::utc(1), |v| v.visit_type = "audit".into())
        .expect("remote edit");
    store
        .apply_remote(&[all(&mut remote, &heads)])
        .expect("apply");
    let v: Visit = store.read_stateful(id).expect("read");
    assert_eq!(
        (v.instructions.as_deref(), v.visit_type.as_str()),
        (Some("local"), "audit")
    );
    assert_eq!(store.pending_changes().expect("count"), 1);
    // Applying the same page again changes nothing.
    store.apply_remote(&[all(&mut remote, &[])]).expect("again");
    assert_eq!(store.pending_changes().expect("count"), 1);
    // A record leaving scope stays while it has unsynced changes.
    store.apply_page(&[], &[id], Some(8)).expect("removed");
    assert!(
        store.read::<Visit>(id).is_ok(),
        "unsynced records are never evicted"
    );
    let pending = store.outbox_batch(10).expect("batch");
    let hashes: Vec<ChangeHash> = pending[0].changes.iter().map(|c| hash_of(c)).collect();
    store.acknowledge(id, &hashes).expect("ack");
    store.apply_page(&[], &[id], Some(9)).expect("removed");
    assert!(
        store.read::<Visit>(id).is_err(),
        "a synced record that left scope is dropped"
    );
}

#[test]
fn a_reopened_store_holds_everything_and_compaction_keeps_documents_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("device.db");
    let w = World::new();
    let options = StoreOptions {
        compact_after: 8,
        cache_size: 0,
        ..StoreOptions::default()
    };
    let (id, json, heads, actor) = {
        let store = DeviceStore::open(&path, options.clone()).expect("open");
        let id = store
            .create_stateful(
                &w.visit(RecordId::new(), MONDAY),
                &w.rep,
                DeviceTime::utc(0),
            )
            .expect("create");
        for i in 0..20 {
            store
                .update::<Visit>(id, DeviceTime::utc(i), |v| v.notes = format!("note {i}"))
                .expect("edit");
        }
        assert!(
            store.appended_rows(id).expect("rows") < 8,
            "compacted past the threshold"
        );
        let mut doc = store.doc(id).expect("doc");
        (
            id,
            doc.to_json().expect("json"),
            doc.heads(),
            store.actor_id(),
        )
    };
    let store = DeviceStore::open(&path, options).expect("reopen");
    let mut doc = store.doc(id).expect("doc");
    assert_eq!(doc.to_json().expect("json"), json);
    assert_eq!(doc.heads(), heads);
    assert_eq!(store.pending_changes().expect("count"), 21);
    assert_eq!(store.actor_id(), actor, "the device keeps its actor id");
}

#[test]
fn a_pulled_record_is_stored_as_its_changes_and_loads_after_a_reopen_and_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("device.db");
    let w = World::new();
    let options = StoreOptions {
        compact_after: 4,
        cache_size: 0,
        ..StoreOptions::default()
    };
    let mut remote = made(&w);
    for i in 0..2 {
        remote
            .update::<Visit>(DeviceTime::utc(i), |v| v.notes = format!("remote {i}"))
            .expect("remote edit");
    }
    let id = remote.id();
    let changes = |d: &mut RecordDoc| RecordChanges {
        id,
        kind: RecordKind::Visit,
        changes: d
            .changes_since(&[])
            .iter()
            .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
            .collect(),
    };
    {
        let store = DeviceStore::open(&path, options.clone()).expect("open");
        store
            .apply_page(&[changes(&mut remote)], &[], Some(3))
            .expect("apply");
    }
    // Reopened, nothing cached: the stored changes load as the record.
    let store = DeviceStore::open(&path, options).expect("reopen");
    let mut held = store.doc(id).expect("the pulled record loads");
    assert_eq!(held.heads(), remote.heads());
    assert_eq!(held.to_json().ok(), remote.to_json().ok());
    // Local edits past the threshold compact it by a checked save.
    for i in 0..6 {
        store
            .update::<Visit>(id, DeviceTime::utc(10 + i), |v| {
                v.notes = format!("local {i}")
            })
            .expect("edit");
    }
    assert!(store.appended_rows(id).expect("rows") < 4, "compacted");
    assert_eq!(store.read::<Visit>(id).expect("read").notes, "local 5");
}

/// A device whose storage fills up: the action that does not fit fails with a
/// full-storage error and leaves nothing behind; everything before it is
/// intact, reads go on, and once there is room again the app carries on.
#[test]
fn a_full_disk_fails_the_action_cleanly_and_the_app_goes_on_once_space_is_freed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("device.db");
    let w = World::new();
    let capped = StoreOptions {
        max_size_bytes: Some(160 * 1024),
        ..StoreOptions::default()
    };
    let mut made = Vec::new();
    let err = {
        let store = DeviceStore::open(&path, capped.clone()).expect("open");
        let big_notes = "a long visit note that fills the disk ".repeat(40);
        loop {
            let created = store
                .create_stateful(
                    &w.visit(RecordId::new(), MONDAY),
                    &w.rep,
                    DeviceTime::utc(0),
                )
                .and_then(|id| {
                    made.push(id);
                    store.update::<Visit>(id, DeviceTime::utc(1), |v| v.notes = big_notes.clone())
                });
            if let Err(e) = created {
                break e;
            }
            assert!(made.len() < 10_000, "the cap never bit");
        }
    };
    assert!(err.is_storage_full() && err.retryable(), "{err}");
    assert!(made.len() > 5, "records fitted before the disk filled");

    // Reopened (the app restarted), still full: reading works and shows every
    // action that succeeded; the failed one left nothing half-written.
    let store = DeviceStore::open(&path, capped).expect("reopen while full");
    let listed = store.all_of(RecordKind::Visit).expect("list").len();
    assert_eq!(listed, made.len());
    for id in &made {
        store.read::<Visit>(*id).expect("every stored visit reads");
    }
    let check: String = rusqlite::Connection::open(&path)
        .expect("raw")
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity");
    assert_eq!(check, "ok");
    let pending = store.pending_changes().expect("count");
    drop(store);

    // Space freed: the same store takes new actions.
    let store = DeviceStore::open(&path, StoreOptions::default()).expect("room again");
    let id = store
        .create_stateful(
            &w.visit(RecordId::new(), MONDAY),
            &w.rep,
            DeviceTime::utc(2),
        )
        .expect("create once space is freed");
    store
        .update::<Visit>(made[0], DeviceTime::utc(3), |v| v.notes = "after".into())
        .expect("edit once space is freed");
    assert_eq!(store.pending_changes().expect("count"), pending + 2);
    assert_eq!(store.read::<Visit>(id).expect("read").notes, "");
}

/// An old database holding one visit with two unsynced local changes (creation
/// and an edit), written the way that version of the store wrote it.
struct OldDatabase {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    id: RecordId,
    pending: Vec<ChangeHash>,
}

fn old_database(w: &World, fixture: &str) -> OldDatabase {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.db");
    let mut doc = RecordDoc::create_stateful(
        &w.visit(RecordId::new(), MONDAY),
        ActorId::random(),
        &w.rep,
        DeviceTime::utc(0),
    )
    .expect("doc");
    doc.update::<Visit>(DeviceTime::utc(1), |v| {
        v.instructions = Some("before upgrade".into())
    })
    .expect("edit");
    let pending: Vec<ChangeHash> = doc.changes_since(&[]).iter().map(|c| c.hash()).collect();
    let conn = rusqlite::Connection::open(&path).expect("open");
    conn.execute_batch(fixture).expect("old schema");
    // Only the columns every old version had: v1 had no team column.
    conn.execute(
        "INSERT INTO records (id, kind, snapshot, status, owner, account_id, start_ms, updated_at_ms) \
         VALUES (?1, 'visit', ?2, 'planned', ?3, NULL, ?4, 0)",
        rusqlite::params![
            doc.id().to_string(),
            doc.save(),
            w.rep.user.to_string(),
            MONDAY
        ],
    )
    .expect("row");
    for h in &pending {
        conn.execute(
            "INSERT INTO outbox (record_id, change_hash, created_at_ms) VALUES (?1, ?2, 0)",
            [doc.id().to_string(), h.to_string()],
        )
        .expect("outbox");
    }
    OldDatabase {
        _dir: dir,
        path,
        id: doc.id(),
        pending,
    }
}

/// Opens an old database with the current code and checks that nothing was lost.
fn upgrade_and_check(w: &World, old: &OldDatabase) -> DeviceStore {
    let store = DeviceStore::open(&old.path, StoreOptions::default()).expect("upgrade");
    let version: i64 = rusqlite::Connection::open(&old.path)
        .expect("open")
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, SCHEMA_VERSION);
    let today = store.visits_between(MONDAY, MONDAY + DAY).expect("list");
    assert_eq!(ids(today.clone()), vec![old.id]);
    assert_eq!(
        today[0].team,
        Some(w.team.to_string()),
        "columns added since are filled in from the documents"
    );
    let v: Visit = store.read_stateful(old.id).expect("read");
    assert_eq!(v.instructions.as_deref(), Some("before upgrade"));
    // The outbox keeps its rows and their order, and new rows go after them.
    store
        .update::<Visit>(old.id, DeviceTime::utc(2), |v| {
            v.notes = "after upgrade".into()
        })
        .expect("edit");
    let batch = store.outbox_batch(10).expect("batch");
    let queued: Vec<ChangeHash> = batch[0].changes.iter().map(|c| hash_of(c)).collect();
    assert_eq!(queued.len(), 3);
    assert_eq!(queued[..2], old.pending[..], "old rows first, in order");
    assert_eq!(store.pending_changes().expect("count"), 3);
    assert_eq!(
        ids(store
            .by_status(RecordKind::Visit, "planned")
            .expect("status index")),
        vec![old.id]
    );
    store
}

#[test]
fn a_version_1_database_upgrades_with_its_data() {
    let w = World::new();
    let old = old_database(&w, include_str!("fixtures/store_v1.sql"));
    let store = upgrade_and_check(&w, &old);
    assert!(store.rejections().expect("ledger table added").is_empty());
}

#[test]
fn a_version_2_database_upgrades_with_its_outbox_and_ledger() {
    let w = World::new();
    let old = old_database(&w, include_str!("fixtures/store_v2.sql"));
    rusqlite::Connection::open(&old.path)
        .expect("open")
        .execute(
            "INSERT INTO rejections (record_id, kind, code, message, changes, at_ms) \
             VALUES (?1, 'visit', 'forbidden', 'not yours', x'80', 5)",
            [RecordId::new().to_string()],
        )
        .expect("ledger entry");
    let store = upgrade_and_check(&w, &old);
    let ledger = store.rejections().expect("ledger");
    assert_eq!((ledger.len(), ledger[0].message.as_str()), (1, "not yours"));
}

#[test]
fn a_version_4_database_upgrades_with_its_attachments() {
    let w = World::new();
    let old = old_database(&w, include_str!("fixtures/store_v4.sql"));
    let photo: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let photo_hash = sha256_hex(&photo);
    let signature = b"signature png".to_vec();
    let sig_hash = sha256_hex(&signature);
    {
        let conn = rusqlite::Connection::open(&old.path).expect("open");
        // A v4 app wrote the projection columns v2 added.
        conn.execute(
            "UPDATE records SET team = ?1, territory = ?2",
            [w.team.to_string(), w.territory.to_string()],
        )
        .expect("projection");
        for (hash, kind, bytes, state) in [
            (&photo_hash, "photo", &photo, "pending"),
            (&sig_hash, "signature", &signature, "uploaded"),
        ] {
            conn.execute(
                "INSERT INTO attachments (sha256, record_id, kind, content_type, size, \
                 captured_at_ms, tz_offset_min, lat, lng, bytes, state) \
                 VALUES (?1, ?2, ?3, 'image/png', ?4, 10, 60, 38.7, -9.1, ?5, ?6)",
                rusqlite::params![
                    hash,
                    old.id.to_string(),
                    kind,
                    bytes.len() as i64,
                    bytes,
                    state
                ],
            )
            .expect("attachment");
        }
    }
    let store = upgrade_and_check(&w, &old);
    let pending = store.pending_attachments().expect("pending");
    assert_eq!(
        pending.len(),
        1,
        "the uploaded signature has nothing left to send"
    );
    let p = &pending[0];
    assert_eq!(p.sha256, photo_hash);
    assert_eq!(
        (p.records.clone(), p.undeclared.clone()),
        (vec![old.id], vec![old.id])
    );
    assert_eq!(
        p.captured_at,
        DeviceTime {
            at_ms: 10,
            tz_offset_min: 60
        }
    );
    assert_eq!(
        p.gps.map(|g| (g.lat, g.lng, g.accuracy_m)),
        Some((38.7, -9.1, None))
    );
    assert!(store.attachment(&photo_hash).expect("bytes kept") == photo);
    let sig = store.attachment_info(&sig_hash).expect("signature kept");
    assert!(sig.uploaded && sig.undeclared.is_empty(), "{sig:?}");
    assert!(store.attachment(&sig_hash).expect("bytes") == signature);
}

#[test]
fn a_database_from_a_newer_app_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("new.db");
    rusqlite::Connection::open(&path)
        .expect("open")
        .pragma_update(None, "user_version", 99)
        .expect("pragma");
    let err = DeviceStore::open(&path, StoreOptions::default()).expect_err("too new");
    assert!(err.to_string().contains("update the app"), "{err}");
}

#[test]
fn wiping_removes_every_record() {
    let w = World::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("device.db");
    let store = DeviceStore::open(&path, StoreOptions::default()).expect("open");
    let mut v = w.visit(RecordId::new(), MONDAY);
    v.instructions = Some("Customer Zebulon Quartermaine".into());
    store
        .create_stateful(&v, &w.rep, DeviceTime::utc(0))
        .expect("create");
    store.set_cursor(5).expect("cursor");
    store.wipe().expect("wipe");
    assert_eq!(store.pending_changes().expect("count"), 0);
    assert_eq!(store.cursor().expect("cursor"), None);
    store.checkpoint().expect("checkpoint");
    let bytes = std::fs::read(&path).expect("read file");
    assert!(
        !bytes.windows(9).any(|w| w == b"Zebulon Q"),
        "customer data left in the file"
    );
}

#[test]
fn a_rejected_record_is_reset_to_the_servers_copy_and_its_changes_kept_in_the_ledger() {
    let w = World::new();
    let store = DeviceStore::open_in_memory().expect("open");
    let id = store
        .create_stateful(
            &w.visit(RecordId::new(), MONDAY),
            &w.rep,
            DeviceTime::utc(0),
        )
        .expect("create");
    // The server accepted the creation.
    let mut server_copy = store.doc(id).expect("doc");
    let created: Vec<ChangeHash> = server_copy
        .changes_since(&[])
        .iter()
        .map(|c| c.hash())
        .collect();
    store.acknowledge(id, &created).expect("ack");
    // Two local edits; the server refuses them.
    store
        .update::<Visit>(id, DeviceTime::utc(1), |v| {
            v.instructions = Some("refused".into())
        })
        .expect("edit");
    store
        .update::<Visit>(id, DeviceTime::utc(2), |v| v.notes = "also refused".into())
        .expect("edit");
    let sent = store.outbox_batch(10).expect("batch").remove(0);
    let rejection = Rejection {
        code: RejectCode::Forbidden,
        message: "you may not change this visit".into(),
        retryable: false,
        server_doc: Some(ByteBuf::from(server_copy.save())),
    };
    store.reject(&sent, &rejection).expect("reject");
    assert_eq!(store.pending_changes().expect("count"), 0);
    let v: Visit = store.read_stateful(id).expect("reset record");
    assert_eq!((v.instructions.as_deref(), v.notes.as_str()), (None, ""));
    let ledger = store.rejections().expect("ledger");
    assert_eq!(ledger[0].code, "forbidden");
    assert_eq!(
        store
            .rejected_changes(ledger[0].seq)
            .expect("changes")
            .len(),
        2
    );
    // The next edit builds on the server's copy only.
    store
        .update::<Visit>(id, DeviceTime::utc(3), |v| v.notes = "fixed".into())
        .expect("edit");
    let next = store.outbox_batch(10).expect("batch").remove(0);
    let mut replay = server_copy.clone();
    replay
        .apply_changes(
            next.changes
                .iter()
                .map(|c| fieldsync_core::automerge::Change::from_bytes(c.to_vec()).expect("change"))
                .collect(),
        )
        .expect("applies to the server copy without missing dependencies");
    assert_eq!(replay.read::<Visit>().expect("read").notes, "fixed");
    store.resolve_rejection(ledger[0].seq).expect("resolve");
    assert!(store.rejections().expect("ledger").is_empty());
}

#[test]
fn a_refused_edit_is_restored_once_its_reason_is_gone_and_queued_again() {
    let w = World::new();
    let store = DeviceStore::open_in_memory().expect("open");
    store.set_role(Role::Rep).expect("role");
    let id = store
        .create_stateful(
            &w.visit(RecordId::new(), MONDAY),
            &w.rep,
            DeviceTime::utc(0),
        )
        .expect("create");
    let mut server_copy = store.doc(id).expect("doc");
    let created: Vec<ChangeHash> = server_copy
        .changes_since(&[])
        .iter()
        .map(|c| c.hash())
        .collect();
    store.acknowledge(id, &created).expect("ack");
    store
        .update::<Visit>(id, DeviceTime::utc(1), |v| {
            v.next_visit_date = Some("2026-01-12".into())
        })
        .expect("edit");
    let sent = store.outbox_batch(10).expect("batch").remove(0);
    store
        .reject(
            &sent,
            &Rejection {
                code: RejectCode::Forbidden,
                message: "a rep may not change the next_visit_date of a cancelled visit".into(),
                retryable: false,
                server_doc: Some(ByteBuf::from(server_copy.save())),
            },
        )
        .expect("reject");
    let seq = store.rejections().expect("ledger")[0].seq;
    assert_eq!(
        store
            .read_stateful::<Visit>(id)
            .expect("reset")
            .next_visit_date,
        None
    );

    assert_eq!(store.restore_rejection(seq).expect("restore"), id);
    let v: Visit = store.read_stateful(id).expect("restored");
    assert_eq!(v.next_visit_date.as_deref(), Some("2026-01-12"));
    assert_eq!(store.pending_changes().expect("queued again"), 1);
    assert!(store.rejections().expect("ledger").is_empty());
    assert!(matches!(
        store.restore_rejection(seq),
        Err(fieldsync_core::store::StoreError::NoRejection(s)) if s == seq
    ));
}

#[test]
fn a_restore_that_no_longer_fits_changes_nothing_and_keeps_the_entry() {
    let w = World::new();
    let store = DeviceStore::open_in_memory().expect("open");
    store.set_role(Role::Rep).expect("role");
    let id = store
        .create_stateful(
            &w.visit(RecordId::new(), MONDAY),
            &w.rep,
            DeviceTime::utc(0),
        )
        .expect("create");
    let mut server_copy = store.doc(id).expect("doc");
    let created: Vec<ChangeHash> = server_copy
        .changes_since(&[])
        .iter()
        .map(|c| c.hash())
        .collect();
    store.acknowledge(id, &created).expect("ack");
    store
        .update::<Visit>(id, DeviceTime::utc(1), |v| v.notes = "refused".into())
        .expect("edit");
    let sent = store.outbox_batch(10).expect("batch").remove(0);
    store
        .reject(
            &sent,
            &Rejection {
                code: RejectCode::Validation,
                message: "no".into(),
                retryable: false,
                server_doc: Some(ByteBuf::from(server_copy.save())),
            },
        )
        .expect("reject");
    // The user made another edit on top of the server's copy since.
    store
        .update::<Visit>(id, DeviceTime::utc(2), |v| v.notes = "typed again".into())
        .expect("edit");
    let seq = store.rejections().expect("ledger")[0].seq;
    let err = store.restore_rejection(seq).expect_err("does not fit");
    assert!(err.to_string().contains("make it again"), "{err}");
    assert_eq!(store.rejections().expect("ledger").len(), 1);
    assert_eq!(store.pending_changes().expect("count"), 1);
    let v: Visit = store.read_stateful(id).expect("read");
    assert_eq!(v.notes, "typed again");
}

#[test]
fn accounts_and_products_are_found_by_prefix_place_and_sku_and_deleted_ones_are_not() {
    use fieldsync_core::model::{Account, Location, Product};
    let w = World::new();
    let store = DeviceStore::open_in_memory().expect("open");
    let account = |name: &str, address: &str| Account {
        meta: w.meta(w.rep.user),
        name: name.into(),
        account_type: "outlet".into(),
        account_status: "active".into(),
        code: None,
        price_list_id: None,
        visit_frequency_days: None,
        locations: [(
            RecordId::new(),
            Location {
                name: "Main site".into(),
                address: address.into(),
                coords: None,
                geofence_radius_m: 100.0,
                opening_hours: None,
            },
        )]
        .into_iter()
        .collect(),
    };
    let at = DeviceTime::utc(0);
    let sao = store
        .create(&account("São João Café", "Rua Augusta 1, Lisboa"), at)
        .expect("a");
    let santos = store
        .create(&account("Santos Mercado", "Av. da Boavista 9, Porto"), at)
        .expect("b");
    let gone = store
        .create(&account("Sao Bento Bar", "Rua do Ouro 3, Lisboa"), at)
        .expect("c");
    store.delete(gone, at).expect("delete");
    let ids =
        |p: Vec<fieldsync_core::model::Projection>| p.into_iter().map(|p| p.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.search_accounts("SAO", 10).expect("search")),
        [sao]
    );
    assert_eq!(
        ids(store.search_accounts("", 10).expect("all")),
        [santos, sao]
    );
    assert_eq!(
        ids(store.search_accounts("sa", 1).expect("limit")),
        [santos]
    );
    assert_eq!(
        ids(store.search_accounts_at("lisboa", 10).expect("place")),
        [sao]
    );
    store
        .update::<Account>(santos, DeviceTime::utc(1), |a| a.name = "Zé Mercado".into())
        .expect("rename");
    assert_eq!(
        ids(store.search_accounts("ze m", 10).expect("renamed")),
        [santos]
    );
    assert!(
        store
            .search_accounts("santos", 10)
            .expect("old name")
            .is_empty()
    );
    // By the customer code as well.
    store
        .update::<Account>(santos, DeviceTime::utc(2), |a| {
            a.code = Some("PT-0042".into())
        })
        .expect("code");
    assert_eq!(
        ids(store.search_accounts("pt-00", 10).expect("by code")),
        [santos]
    );

    let product = |sku: &str, name: &str| Product {
        meta: w.meta(w.rep.user),
        sku: sku.into(),
        name: name.into(),
        unit: "pcs".into(),
        serialized: false,
        spare_part: false,
        active: true,
    };
    let oil = store
        .create(&product("OLV-500", "Olive oil"), at)
        .expect("p");
    let filter = store
        .create(&product("FLT-01", "Oil filter"), at)
        .expect("p");
    assert_eq!(ids(store.search_products("olv", 10).expect("sku")), [oil]);
    assert_eq!(
        ids(store.search_products("oil", 10).expect("name")),
        [filter]
    );
    assert_eq!(
        ids(store.search_products("o", 10).expect("both")),
        [filter, oil]
    );
}

/// The hash of a change as sent (what the outbox lists it under).
fn hash_of(raw: &[u8]) -> ChangeHash {
    fieldsync_core::automerge::Change::from_bytes(raw.to_vec())
        .expect("change")
        .hash()
}

// --- model::stored: the forms both stores keep a record in ------------------

/// A planned visit made on another device.
fn made(w: &World) -> RecordDoc {
    RecordDoc::create_stateful(
        &w.visit(RecordId::new(), MONDAY),
        ActorId::random(),
        &w.rep,
        DeviceTime::utc(0),
    )
    .expect("a visit")
}

#[test]
fn a_record_stored_as_its_changes_then_appended_to_loads_with_its_heads() {
    let mut doc = made(&World::new());
    let first: Vec<Vec<u8>> = doc
        .changes_since(&[])
        .iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect();
    let form = stored::appended(&[], first.iter().map(Vec::as_slice));
    assert_eq!(stored::tail(&form), Some(first.len()));
    let before = doc.heads();
    doc.update::<Visit>(DeviceTime::utc(2), |v| v.notes = "gate code 4711".into())
        .expect("an edit");
    let later: Vec<Vec<u8>> = doc
        .changes_since(&before)
        .iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect();
    let form = stored::appended(&form, later.iter().map(Vec::as_slice));
    assert_eq!(stored::tail(&form), Some(first.len() + later.len()));
    let mut loaded = RecordDoc::load(&form).expect("loads");
    assert_eq!(loaded.heads(), doc.heads());
    assert_eq!(loaded.to_json().ok(), doc.to_json().ok());

    // Compacted, the tail starts again; a change appended after counts one.
    let compact = stored::compacted(&mut doc, RecordDoc::save_uncompressed).expect("faithful");
    assert_eq!(stored::tail(&compact), Some(0));
    let before = doc.heads();
    doc.update::<Visit>(DeviceTime::utc(3), |v| v.notes = "gate code 4712".into())
        .expect("an edit");
    let last: Vec<Vec<u8>> = doc
        .changes_since(&before)
        .iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect();
    let form = stored::appended(&compact, last.iter().map(Vec::as_slice));
    assert_eq!(stored::tail(&form), Some(1));
    assert_eq!(RecordDoc::load(&form).expect("loads").heads(), doc.heads());
}

#[test]
fn a_save_that_does_not_load_with_the_heads_is_not_a_compaction() {
    let mut doc = made(&World::new());
    let mut other = made(&World::new());
    assert_eq!(stored::compacted(&mut doc, |_| other.save()), None);
    assert_eq!(
        stored::compacted(&mut doc, |_| b"not automerge".to_vec()),
        None
    );
    assert_eq!(
        stored::compacted(&mut doc, |_| panic!("a save that fails inside Automerge")),
        None
    );
    assert!(stored::compacted(&mut doc, RecordDoc::save).is_some());
}

#[test]
fn compaction_is_due_past_the_tail_or_the_size() {
    let mut doc = made(&World::new());
    let saved = doc.save_uncompressed();
    assert!(!stored::compaction_due(
        &[],
        stored::COMPACT_AFTER,
        100,
        1_000
    ));
    assert!(stored::compaction_due(
        &[],
        stored::COMPACT_AFTER + 1,
        100,
        1_000
    ));
    assert!(!stored::compaction_due(&saved, 1, 10, saved.len() + 10));
    assert!(stored::compaction_due(&saved, 1, 11, saved.len() + 10));
    // Bytes whose chunks do not parse are compacted, not appended to.
    assert_eq!(stored::tail(b"not automerge"), None);
    assert!(stored::compaction_due(b"not automerge", 1, 1, 1_000));
}

#[test]
fn a_pulled_change_with_a_wrong_checksum_is_stored_as_a_save_that_loads() {
    // A server from before the checksum check may still send such a change
    // from its log: Automerge applies it, but would refuse to load the
    // change's bytes stored as they came.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("device.db");
    let w = World::new();
    let options = StoreOptions {
        cache_size: 0,
        ..StoreOptions::default()
    };
    let mut remote = made(&w);
    let id = remote.id();
    let mut changes: Vec<ByteBuf> = remote
        .changes_since(&[])
        .iter()
        .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
        .collect();
    changes[0][4] ^= 0xff;
    assert!(
        RecordDoc::load(&changes[0]).is_err(),
        "Automerge refuses it"
    );
    {
        let store = DeviceStore::open(&path, options.clone()).expect("open");
        let page = RecordChanges {
            id,
            kind: RecordKind::Visit,
            changes,
        };
        store.apply_page(&[page], &[], Some(1)).expect("apply");
    }
    let store = DeviceStore::open(&path, options).expect("reopen");
    let mut held = store.doc(id).expect("the pulled record loads");
    assert_eq!(held.heads(), remote.heads());
}
