//! The sync loop's decisions, against an in-memory server that uses the real
//! merge-and-check (`merge_incoming`) and a real change log, through the
//! `Transport` seam: priming, per-record settling of a push (one rejected record
//! does not block the others), paged pulls with the cursor, retries with backoff,
//! one token refresh on 401, and the wipe of a revoked device. The end-to-end
//! tests with the real HTTP server come with the server's sync endpoints.

#![cfg(feature = "device")]

mod support;

use std::time::Duration;

use fieldsync_core::automerge::ActorId;
use fieldsync_core::model::Projection;
use fieldsync_core::model::visit::{self, Site, Visit, VisitStatus};
use fieldsync_core::protocol::{PushOutcome, PushRequest, RecordChanges};
use fieldsync_core::store::DeviceStore;
use fieldsync_core::sync::{NoProgress, Session, SyncClient, SyncError, SyncOptions, Transport};
use fieldsync_core::{
    Actor, DeviceId, DeviceTime, OrgId, RecordId, RecordKind, RecordMeta, Role, TeamId,
    TerritoryId, TransitionRequest, UserId,
};
use serde_bytes::ByteBuf;
use support::MemTransport;

struct World {
    org: OrgId,
    team: TeamId,
    territory: TerritoryId,
}

fn quick() -> SyncOptions {
    SyncOptions {
        push_batch: 3,
        pull_page: 4,
        prime_page: 2,
        max_attempts: 4,
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        upload_large_attachments: true,
    }
}

const SITE: Site = Site {
    coords: None,
    radius_m: 100.0,
};

fn setup() -> (World, MemTransport) {
    let world = World {
        org: OrgId::new(),
        team: TeamId::new(),
        territory: TerritoryId::new(),
    };
    let transport = MemTransport::new(world.org);
    (world, transport)
}

type Client = SyncClient<DeviceStore, MemTransport>;

fn register(t: &MemTransport, actor: &Actor, token: &str) -> Client {
    let store = DeviceStore::open_in_memory().expect("store");
    let actor_id = ActorId::random();
    store.set_actor_id(actor_id.clone()).expect("actor");
    t.register(token, actor, &actor_id);
    let client = SyncClient::new(store, t.clone(), quick());
    client.set_session(Session {
        access_token: token.into(),
        refresh_token: format!("refresh-{token}"),
    });
    client
}

fn meta(w: &World, owner: UserId) -> RecordMeta {
    RecordMeta {
        id: RecordId::new(),
        org: w.org,
        owner,
        team: w.team,
        territory: w.territory,
    }
}

fn rep(user: UserId) -> Actor {
    Actor::on_device(user, Role::Rep, DeviceId::new())
}

#[test]
fn two_devices_converge_through_the_server_and_a_new_device_is_primed() {
    let (w, t) = setup();
    let alice = UserId::new();
    let phone = register(&t, &rep(alice), "phone");
    let tablet = register(&t, &rep(alice), "tablet");
    let actor = rep(alice);
    let mut ids = Vec::new();
    for i in 0..5 {
        let v = Visit::planned(
            meta(&w, alice),
            RecordId::new(),
            DeviceTime::utc(i),
            DeviceTime::utc(i + 1),
        );
        ids.push(
            phone
                .store()
                .create_stateful(&v, &actor, DeviceTime::utc(0))
                .expect("create"),
        );
    }
    let report = phone.sync(&NoProgress).expect("phone sync");
    assert_eq!((report.pushed, report.rejected), (5, 0));
    assert_eq!(phone.store().pending_changes().expect("count"), 0);

    // The tablet was never synced: it primes (pages of 2), then pulls.
    let report = tablet.sync(&NoProgress).expect("tablet sync");
    assert_eq!(report.primed, 5);
    for id in &ids {
        assert_eq!(
            tablet.store().read::<Visit>(*id).expect("primed"),
            phone.store().read::<Visit>(*id).expect("local")
        );
    }

    // Concurrent edits of different fields on the two devices.
    phone
        .store()
        .update::<Visit>(ids[0], DeviceTime::utc(10), |v| {
            v.notes = "from the phone".into()
        })
        .expect("edit");
    tablet
        .store()
        .act(ids[0], |d| {
            visit::check_in(d, &actor, DeviceTime::utc(11), None, SITE)
        })
        .expect("check in");
    phone.sync(&NoProgress).expect("sync");
    tablet.sync(&NoProgress).expect("sync");
    phone.sync(&NoProgress).expect("sync");
    let (a, b): (Visit, Visit) = (
        phone.store().read_stateful(ids[0]).expect("phone"),
        tablet.store().read_stateful(ids[0]).expect("tablet"),
    );
    assert_eq!(a, b);
    assert_eq!(
        (a.notes.as_str(), a.status),
        ("from the phone", VisitStatus::InProgress)
    );
    let server_doc = t
        .server()
        .records
        .get(&ids[0])
        .cloned()
        .expect("server copy");
    assert_eq!(server_doc.read_stateful::<Visit>().expect("server"), a);
    assert_eq!(
        Projection::of(&server_doc)
            .expect("projection")
            .status
            .as_deref(),
        Some("in_progress")
    );
}

#[test]
fn one_rejected_record_does_not_block_the_rest_of_the_batch() {
    let (w, t) = setup();
    let alice = UserId::new();
    let phone = register(&t, &rep(alice), "phone");
    let actor = rep(alice);
    let good = phone
        .store()
        .create_stateful(
            &Visit::planned(
                meta(&w, alice),
                RecordId::new(),
                DeviceTime::utc(0),
                DeviceTime::utc(1),
            ),
            &actor,
            DeviceTime::utc(0),
        )
        .expect("create");
    // A rep's device claiming a manager's role marks a visit missed: the server refuses.
    let bad = phone
        .store()
        .create_stateful(
            &Visit::planned(
                meta(&w, alice),
                RecordId::new(),
                DeviceTime::utc(0),
                DeviceTime::utc(1),
            ),
            &actor,
            DeviceTime::utc(0),
        )
        .expect("create");
    let pretend = Actor {
        role: Role::Manager,
        ..actor.clone()
    };
    phone
        .store()
        .transition::<Visit>(
            bad,
            &pretend,
            &TransitionRequest::new(VisitStatus::Missed, DeviceTime::utc(2)),
            |_| {},
        )
        .expect("local check passes with the claimed role");
    let report = phone.sync(&NoProgress).expect("sync");
    assert_eq!((report.pushed, report.rejected), (1, 1));
    assert!(t.server().records.contains_key(&good));
    assert!(
        !t.server().records.contains_key(&bad),
        "nothing of the rejected record is stored"
    );
    let ledger = phone.store().rejections().expect("ledger");
    assert_eq!(
        (ledger.len(), ledger[0].record_id, ledger[0].code.as_str()),
        (1, bad, "transition")
    );
    assert!(ledger[0].message.contains("rep"), "{}", ledger[0].message);
    assert_eq!(phone.store().pending_changes().expect("count"), 0);
    assert!(
        phone.store().read::<Visit>(bad).is_err(),
        "a creation the server never accepted is taken back"
    );
    assert_eq!(
        phone
            .store()
            .rejected_changes(ledger[0].seq)
            .expect("kept")
            .len(),
        2,
        "creation and transition kept"
    );
}

#[test]
fn dropped_connections_are_retried_and_resending_is_harmless() {
    let (w, t) = setup();
    let alice = UserId::new();
    let phone = register(&t, &rep(alice), "phone");
    let id = phone
        .store()
        .create_stateful(
            &Visit::planned(
                meta(&w, alice),
                RecordId::new(),
                DeviceTime::utc(0),
                DeviceTime::utc(1),
            ),
            &rep(alice),
            DeviceTime::utc(0),
        )
        .expect("create");
    t.server().drop_next = 2;
    let report = phone
        .sync(&NoProgress)
        .expect("sync survives two dropped connections");
    assert_eq!(report.pushed, 1);
    let log_len = t.server().log.len();
    // The same batch again (e.g. the acknowledgement was lost): nothing changes.
    let batch = vec![RecordChanges {
        id,
        kind: RecordKind::Visit,
        changes: t
            .server()
            .log
            .iter()
            .map(|(_, _, b)| ByteBuf::from(b.clone()))
            .collect(),
    }];
    let resp = t
        .push(
            "phone",
            &PushRequest {
                batch: uuid::Uuid::now_v7(),
                records: batch,
                health: None,
                epochs: Vec::new(),
            },
        )
        .expect("push");
    assert!(matches!(
        resp.results[0].outcome,
        PushOutcome::Accepted { .. }
    ));
    assert_eq!(t.server().log.len(), log_len);

    t.server().drop_next = 10;
    let err = phone.sync(&NoProgress).expect_err("retries run out");
    assert!(matches!(err, SyncError::Network(_)) && err.retryable());
}

#[test]
fn an_expired_token_is_refreshed_once_and_a_revoked_device_is_wiped() {
    let (w, t) = setup();
    let alice = UserId::new();
    let phone = register(&t, &rep(alice), "phone");
    phone
        .store()
        .create_stateful(
            &Visit::planned(
                meta(&w, alice),
                RecordId::new(),
                DeviceTime::utc(0),
                DeviceTime::utc(1),
            ),
            &rep(alice),
            DeviceTime::utc(0),
        )
        .expect("create");
    // The token has expired, and the refresh meets a dropped connection
    // twice: it is retried like any request, and the sync goes through.
    t.server().expire_next = true;
    t.server().drop_refreshes = 2;
    phone.sync(&NoProgress).expect("sync after refresh");
    assert_eq!(t.server().drop_refreshes, 0, "the refresh was retried");
    assert_eq!(
        phone.session().expect("session").access_token,
        "refresh-phone+"
    );

    t.server().revoked = true;
    let err = phone.sync(&NoProgress).expect_err("revoked");
    assert!(matches!(err, SyncError::Revoked));
    assert!(
        phone
            .store()
            .all_of(RecordKind::Visit)
            .expect("list")
            .is_empty(),
        "local data wiped"
    );
    assert!(phone.session().is_none());
}

#[test]
fn a_change_stored_before_its_answer_was_lost_is_not_listed_as_refused() {
    let (w, t) = setup();
    let alice = UserId::new();
    let phone = register(&t, &rep(alice), "phone");
    phone.sync(&NoProgress).expect("primed");
    let actor = rep(alice);
    let id = phone
        .store()
        .create_stateful(
            &Visit::planned(
                meta(&w, alice),
                RecordId::new(),
                DeviceTime::utc(0),
                DeviceTime::utc(1),
            ),
            &actor,
            DeviceTime::utc(0),
        )
        .expect("create");
    // The server stores the creation, the answer is lost, and the retries
    // never get through: the device still counts the creation as pending.
    t.server().lose_next_answer = true;
    t.server().drop_next = 10;
    phone.sync(&NoProgress).expect_err("no answer");
    assert!(t.server().records.contains_key(&id));
    t.server().drop_next = 0;
    // Then a change the server refuses goes out with it.
    let pretend = Actor {
        role: Role::Manager,
        ..actor.clone()
    };
    phone
        .store()
        .transition::<Visit>(
            id,
            &pretend,
            &TransitionRequest::new(VisitStatus::Missed, DeviceTime::utc(2)),
            |_| {},
        )
        .expect("local check passes with the claimed role");
    let report = phone.sync(&NoProgress).expect("sync");
    assert_eq!(report.rejected, 1);
    let ledger = phone.store().rejections().expect("ledger");
    let refused = phone
        .store()
        .rejected_changes(ledger[0].seq)
        .expect("refused");
    assert_eq!(
        refused.len(),
        1,
        "only the transition: the creation is on the server"
    );
    assert!(
        phone.store().read::<Visit>(id).is_ok(),
        "the record stays, as the server has it"
    );
}

#[test]
fn a_priming_cut_short_resumes_where_it_stopped() {
    let (w, t) = setup();
    let alice = UserId::new();
    let tablet = register(&t, &rep(alice), "tablet");
    tablet.sync(&NoProgress).expect("primed");
    for i in 0..9 {
        let v = Visit::planned(
            meta(&w, alice),
            RecordId::new(),
            DeviceTime::utc(i),
            DeviceTime::utc(i + 1),
        );
        tablet
            .store()
            .create_stateful(&v, &rep(alice), DeviceTime::utc(0))
            .expect("create");
    }
    tablet.sync(&NoProgress).expect("pushed");

    // A new phone primes in pages of two; the network dies after two pages.
    let phone = register(&t, &rep(alice), "phone");
    t.server().fail_after = Some(2);
    phone.sync(&NoProgress).expect_err("cut short");
    assert_eq!(t.server().snapshots_served, 4);
    // Back online: the priming goes on after the last page the phone holds.
    t.server().fail_after = None;
    let report = phone.sync(&NoProgress).expect("resumed");
    assert_eq!(report.primed, 5, "only what the phone did not hold yet");
    assert_eq!(t.server().snapshots_served, 9);
    assert_eq!(
        phone.store().all_of(RecordKind::Visit).expect("list").len(),
        9
    );
    // And once primed, it pulls: nothing is primed again.
    let report = phone.sync(&NoProgress).expect("sync");
    assert_eq!(report.primed, 0);
}

#[test]
fn a_store_restored_from_an_old_phone_backup_is_brought_back_in_line() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("phone.db");
    let (w, t) = setup();
    let alice = UserId::new();
    let actor = rep(alice);
    let actor_id = ActorId::random();
    let open = |t: &MemTransport| {
        let store = DeviceStore::open(&path, fieldsync_core::store::StoreOptions::default())
            .expect("store");
        store.set_actor_id(actor_id.clone()).expect("actor");
        t.register("phone", &actor, &actor_id);
        let client = SyncClient::new(store, t.clone(), quick());
        client.set_session(Session {
            access_token: "phone".into(),
            refresh_token: "refresh-phone".into(),
        });
        client
    };
    let phone = open(&t);
    phone.sync(&NoProgress).expect("primed");
    let visit_id = phone
        .store()
        .create_stateful(
            &Visit::planned(
                meta(&w, alice),
                RecordId::new(),
                DeviceTime::utc(0),
                DeviceTime::utc(1),
            ),
            &actor,
            DeviceTime::utc(0),
        )
        .expect("create");
    phone.sync(&NoProgress).expect("sync");
    // The phone's backup (the app's data, as the OS backs it up).
    drop(phone);
    let backup = dir.path().join("backup.db");
    std::fs::copy(&path, &backup).expect("back up");
    let phone = open(&t);
    // Later edits, synced.
    for i in 0..3 {
        phone
            .store()
            .update::<Visit>(visit_id, DeviceTime::utc(10 + i), |v| {
                v.notes = format!("after the backup {i}")
            })
            .expect("edit");
    }
    phone.sync(&NoProgress).expect("sync");
    let server_heads = t.server().records[&visit_id].clone().heads();
    // The phone is restored from the old backup. Its first sync brings back
    // what it had sent since (its own later changes), so the edits it makes
    // afterwards follow them. (An edit made on the restored store before that
    // first sync reuses a change number the server already holds and is
    // refused into the ledger: see docs/reliability.md.)
    drop(phone);
    std::fs::copy(&backup, &path).expect("restore");
    let _ = std::fs::remove_file(dir.path().join("phone.db-wal"));
    let phone = open(&t);
    let report = phone.sync(&NoProgress).expect("sync after the restore");
    assert_eq!(report.rejected, 0, "{report:?}");
    phone
        .store()
        .update::<Visit>(visit_id, DeviceTime::utc(20), |v| {
            v.instructions = Some("only the restored phone has this".into())
        })
        .expect("edit on the restored phone");
    let report = phone.sync(&NoProgress).expect("sync");
    assert_eq!(report.rejected, 0, "{report:?}");
    let mut server = t.server().records[&visit_id].clone();
    let v: Visit = server.read_stateful().expect("visit");
    assert_eq!(
        v.notes, "after the backup 2",
        "the edits after the backup stay"
    );
    assert_eq!(
        v.instructions.as_deref(),
        Some("only the restored phone has this"),
        "the restored phone's own edit arrives"
    );
    assert!(server_heads.iter().all(|h| server.change(h).is_some()));
    let mut local = phone.store().doc(visit_id).expect("local");
    assert_eq!(local.heads(), server.heads());

    // Restored again, and this time edited before its first sync: the edit
    // reuses a change number the server holds (for the phone's own later
    // changes), so the server refuses it; the sync client sees the clash and
    // carries the edit over as a new change, which lands in the same sync.
    // Nothing goes to the ledger, nothing is lost, nothing is stored twice.
    drop(phone);
    std::fs::copy(&backup, &path).expect("restore");
    let _ = std::fs::remove_file(dir.path().join("phone.db-wal"));
    let phone = open(&t);
    phone
        .store()
        .update::<Visit>(visit_id, DeviceTime::utc(30), |v| {
            v.notes = "typed on the restored phone before it synced".into()
        })
        .expect("edit");
    let logged = t.server().log.len();
    let report = phone.sync(&NoProgress).expect("sync");
    assert_eq!(report.rejected, 0, "{report:?}");
    assert_eq!(report.carried_over, 1, "{report:?}");
    assert!(phone.store().rejections().expect("ledger").is_empty());
    assert_eq!(phone.store().pending_changes().expect("pending"), 0);
    assert_eq!(
        t.server().log.len(),
        logged + 1,
        "the edit is logged once, as one new change"
    );
    let mut server = t.server().records[&visit_id].clone();
    let v: Visit = server.read_stateful().expect("visit");
    assert_eq!(v.notes, "typed on the restored phone before it synced");
    assert_eq!(
        v.instructions.as_deref(),
        Some("only the restored phone has this"),
        "and nothing else went back"
    );
    let mut local = phone.store().doc(visit_id).expect("local");
    assert_eq!(local.heads(), server.heads());
}
