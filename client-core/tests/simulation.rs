//! Seeded simulation of many devices syncing through a faulty network.
//!
//! Each run is drawn from one seed: which device acts next, what it does
//! (plan a visit, edit notes, check in or out, cancel, sync, or get killed and
//! restarted from its store file), when the server's database is restored
//! from an earlier backup, and which faults hit each request (dropped
//! requests, lost answers after the server did the work, duplicated requests,
//! expired tokens). The devices are the real device store and sync client; the
//! server is the real merge-and-check the server runs on every push
//! (`merge_incoming`) over an in-memory change log (`support`). After the
//! faulty phase the network heals and every device syncs until quiet; then:
//!
//! - every replica holds exactly the server's records, with the same heads;
//! - every change a device made is on the server, or in that device's
//!   rejection ledger with a code and a message (and then not on the server);
//! - the change log holds no change twice; no device has anything left to send.
//!
//! `FIELDSYNC_SIM_SEEDS=N` runs N seeds (the default is a short run for
//! `cargo xtask test`; `cargo xtask soak` runs thousands), starting at
//! `FIELDSYNC_SIM_FIRST_SEED` (default 1). A failure names its seed; replay it
//! alone with `FIELDSYNC_SIM_FIRST_SEED=<seed> FIELDSYNC_SIM_SEEDS=1`.

#![cfg(feature = "device")]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use fieldsync_core::automerge::{ActorId, Change, ChangeHash};
use fieldsync_core::model::visit::{self, Site, Visit, VisitOutcome};
use fieldsync_core::store::{DeviceStore, StoreOptions};
use fieldsync_core::sync::{NoProgress, Session, SyncClient, SyncOptions};
use fieldsync_core::{
    Actor, DeviceId, DeviceTime, OrgId, RecordId, RecordKind, RecordMeta, Role, TeamId,
    TerritoryId, UserId,
};
use support::{Chaos, FaultCounts, MemTransport, Rng};

type Client = SyncClient<DeviceStore, MemTransport>;

const SITE: Site = Site {
    coords: None,
    radius_m: 100.0,
};

fn options() -> SyncOptions {
    SyncOptions {
        push_batch: 3,
        pull_page: 5,
        prime_page: 3,
        max_attempts: 3,
        base_backoff: Duration::from_micros(100),
        max_backoff: Duration::from_millis(1),
        upload_large_attachments: true,
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Device {
    name: String,
    actor: Actor,
    path: PathBuf,
    client: Option<Client>,
    /// Every change this device made, by record.
    made: BTreeMap<RecordId, BTreeSet<ChangeHash>>,
}

impl Device {
    fn client(&self) -> &Client {
        self.client.as_ref().expect("the device is running")
    }

    fn store(&self) -> &DeviceStore {
        self.client().store()
    }

    /// Notes the changes a local action just made to `id`.
    fn remember(&mut self, id: RecordId, before: &[ChangeHash]) {
        let Ok(mut doc) = self.store().doc(id) else {
            return;
        };
        let mine = doc.changes_since(before);
        self.made
            .entry(id)
            .or_default()
            .extend(mine.iter().map(Change::hash));
    }

    /// The app is killed and started again: the store reopens from its file.
    fn restart(&mut self, transport: &MemTransport) {
        let session = self.client().session();
        self.client = None;
        let store = DeviceStore::open(&self.path, StoreOptions::default()).expect("reopen");
        let client = SyncClient::new(store, transport.clone(), options());
        if let Some(session) = session {
            client.set_session(session);
        }
        self.client = Some(client);
    }
}

/// What one run did, for the report.
#[derive(Debug, Default)]
struct Run {
    actions: u64,
    refused_locally: u64,
    syncs: u64,
    failed_syncs: u64,
    restarts: u64,
    server_restores: u64,
    rejections: u64,
    faults: FaultCounts,
    records: usize,
    changes: usize,
}

fn heads_of(store: &DeviceStore, id: RecordId) -> Option<Vec<ChangeHash>> {
    store.doc(id).ok().map(|mut d| {
        let mut h = d.heads();
        h.sort();
        h
    })
}

fn simulate(seed: u64, dir: &std::path::Path) -> Run {
    let mut rng = Rng::new(seed);
    let org = OrgId::new();
    let team = TeamId::new();
    let territory = TerritoryId::new();
    let transport = MemTransport::new(org);
    let (alice, bob, mona) = (UserId::new(), UserId::new(), UserId::new());
    let people = [
        ("alice-phone", alice, Role::Rep),
        ("alice-tablet", alice, Role::Rep),
        ("bob-phone", bob, Role::Rep),
        ("mona-laptop", mona, Role::Manager),
    ];
    let count = 2 + rng.below(3) as usize; // two to four devices
    let mut devices: Vec<Device> = Vec::new();
    for (name, user, role) in people.iter().take(count) {
        let actor = Actor::on_device(*user, *role, DeviceId::new());
        let path = dir.join(format!("{seed}-{name}.db"));
        let store = DeviceStore::open(&path, StoreOptions::default()).expect("store");
        let actor_id = ActorId::random();
        store.set_actor_id(actor_id.clone()).expect("actor");
        transport.register(name, &actor, &actor_id);
        let client = SyncClient::new(store, transport.clone(), options());
        client.set_session(Session {
            access_token: (*name).into(),
            refresh_token: format!("refresh-{name}"),
        });
        devices.push(Device {
            name: (*name).into(),
            actor,
            path,
            client: Some(client),
            made: BTreeMap::new(),
        });
    }
    let reps = [alice, bob];
    transport.server().chaos = Some(Chaos {
        rng: Rng::new(seed ^ 0xC4A0_5EED),
        drop_request: 8,
        lose_answer: 8,
        duplicate: 5,
        expire: 3,
    });

    let mut run = Run::default();
    let mut backup = transport.server().backup();
    let steps = 30 + rng.below(30);
    for step in 0..steps {
        let at = DeviceTime::utc(1_767_571_200_000 + step as i64 * 60_000);
        let d = &mut devices[rng.below(count as u64) as usize];
        let visits: Vec<RecordId> = d
            .store()
            .all_of(RecordKind::Visit)
            .expect("list")
            .iter()
            .map(|p| p.id)
            .collect();
        let pick = |rng: &mut Rng| -> Option<RecordId> {
            (!visits.is_empty()).then(|| visits[rng.below(visits.len() as u64) as usize])
        };
        let roll = rng.below(100);
        run.actions += 1;
        let outcome: Result<(), String> = match roll {
            0..=19 => {
                let owner = if d.actor.role == Role::Manager {
                    reps[rng.below(2) as usize]
                } else {
                    d.actor.user
                };
                let v = Visit::planned(
                    RecordMeta {
                        id: RecordId::new(),
                        org,
                        owner,
                        team,
                        territory,
                    },
                    RecordId::new(),
                    at,
                    DeviceTime::utc(at.at_ms + 3_600_000),
                );
                match d.store().create_stateful(&v, &d.actor, at) {
                    Ok(id) => {
                        d.remember(id, &[]);
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            20..=44 => match pick(&mut rng) {
                Some(id) => {
                    let before = heads_of(d.store(), id).unwrap_or_default();
                    let text = format!("{} at step {step}", d.name);
                    let r = d
                        .store()
                        .update::<Visit>(id, at, |v| v.notes = text)
                        .map_err(|e| e.to_string());
                    d.remember(id, &before);
                    r
                }
                None => Ok(()),
            },
            45..=59 => match pick(&mut rng) {
                Some(id) => {
                    let before = heads_of(d.store(), id).unwrap_or_default();
                    let actor = d.actor.clone();
                    let status = d
                        .store()
                        .read_stateful::<Visit>(id)
                        .map(|v| v.status.to_string())
                        .unwrap_or_default();
                    let r = d
                        .store()
                        .act(id, |doc| match (actor.role, status.as_str()) {
                            (Role::Manager, _) => {
                                visit::cancel(doc, &actor, at, Some("customer closed".into()))
                                    .map(|_| ())
                            }
                            (_, "planned") => {
                                visit::check_in(doc, &actor, at, None, SITE).map(|_| ())
                            }
                            _ => visit::check_out(
                                doc,
                                &actor,
                                at,
                                None,
                                SITE,
                                VisitOutcome::OrderTaken,
                            )
                            .map(|_| ()),
                        })
                        .map_err(|e| e.to_string());
                    d.remember(id, &before);
                    r
                }
                None => Ok(()),
            },
            60..=94 => {
                run.syncs += 1;
                match d.client().sync(&NoProgress) {
                    Ok(report) => {
                        run.rejections += report.rejected;
                        Ok(())
                    }
                    Err(_) => {
                        // A failed sync is what a flaky network looks like; the
                        // next one picks up where this one stopped.
                        run.failed_syncs += 1;
                        Ok(())
                    }
                }
            }
            95..=97 => {
                run.restarts += 1;
                d.restart(&transport);
                Ok(())
            }
            _ => {
                // The server's database is restored from the backup taken
                // earlier in the run (or the empty one it started from), and a
                // new backup is taken from then on.
                run.server_restores += 1;
                let mut server = transport.server();
                let log_id = format!("log-{seed}-{step}");
                server.restore(&backup, &log_id);
                drop(server);
                backup = transport.server().backup();
                Ok(())
            }
        };
        if rng.chance(10) {
            backup = transport.server().backup();
        }
        if outcome.is_err() {
            run.refused_locally += 1;
        }
    }

    // The network heals; every device syncs until nothing moves.
    run.faults = transport.server().faults;
    transport.server().chaos = None;
    for _ in 0..3 {
        for d in &devices {
            let report = d.client().sync(&NoProgress).unwrap_or_else(|e| {
                panic!("seed {seed}: {} syncs on a healed network: {e}", d.name)
            });
            run.rejections += report.rejected;
        }
    }

    let server = transport.server();
    run.records = server.records.len();
    run.changes = server.log.len();
    let logged: BTreeSet<ChangeHash> = server
        .log
        .iter()
        .map(|(_, _, bytes)| {
            Change::from_bytes(bytes.clone())
                .expect("a logged change")
                .hash()
        })
        .collect();
    assert_eq!(
        logged.len(),
        server.log.len(),
        "seed {seed}: a change is in the log twice"
    );
    let mut server_heads = BTreeMap::new();
    let mut server_changes: BTreeMap<RecordId, BTreeSet<ChangeHash>> = BTreeMap::new();
    for (id, doc) in &server.records {
        let mut doc = doc.clone();
        let mut h = doc.heads();
        h.sort();
        server_heads.insert(*id, h);
        server_changes.insert(
            *id,
            doc.changes_since(&[]).iter().map(Change::hash).collect(),
        );
    }
    drop(server);
    for d in &devices {
        let store = d.store();
        assert_eq!(
            store.pending_changes().expect("count"),
            0,
            "seed {seed}: {} still has changes to send",
            d.name
        );
        let held: BTreeSet<RecordId> = store
            .all_of(RecordKind::Visit)
            .expect("list")
            .iter()
            .map(|p| p.id)
            .collect();
        let expected: BTreeSet<RecordId> = server_heads.keys().copied().collect();
        assert_eq!(
            held, expected,
            "seed {seed}: {} holds other records",
            d.name
        );
        for (id, heads) in &server_heads {
            assert_eq!(
                heads_of(store, *id).as_ref(),
                Some(heads),
                "seed {seed}: {} differs from the server on {id}",
                d.name
            );
        }
        // Every change made here is on the server or explained by a rejection.
        let mut rejected: BTreeSet<ChangeHash> = BTreeSet::new();
        for entry in store.rejections().expect("ledger") {
            assert!(
                !entry.code.is_empty() && !entry.message.is_empty(),
                "seed {seed}: a rejection without a reason on {}",
                d.name
            );
            for bytes in store.rejected_changes(entry.seq).expect("refused changes") {
                let hash = Change::from_bytes(bytes).expect("a refused change").hash();
                assert!(
                    !logged.contains(&hash),
                    "seed {seed}: a refused change of {} reached the log",
                    entry.record_id
                );
                rejected.insert(hash);
            }
        }
        for (id, hashes) in &d.made {
            let on_server = server_changes.get(id);
            for hash in hashes {
                assert!(
                    on_server.is_some_and(|s| s.contains(hash)) || rejected.contains(hash),
                    "seed {seed}: {} lost a change to {id}",
                    d.name
                );
            }
        }
    }
    run
}

#[test]
fn seeded_runs_converge_and_lose_nothing() {
    let first = env_u64("FIELDSYNC_SIM_FIRST_SEED", 1);
    let seeds = env_u64("FIELDSYNC_SIM_SEEDS", 40);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut total = Run::default();
    let mut faults = 0;
    for seed in first..first + seeds {
        let run = simulate(seed, dir.path());
        total.actions += run.actions;
        total.refused_locally += run.refused_locally;
        total.syncs += run.syncs;
        total.failed_syncs += run.failed_syncs;
        total.restarts += run.restarts;
        total.server_restores += run.server_restores;
        total.rejections += run.rejections;
        total.records += run.records;
        total.changes += run.changes;
        faults += run.faults.total();
    }
    println!(
        "simulation: {seeds} seeds from {first}: {} actions ({} refused on the device), \
         {} syncs ({} failed under faults), {} app restarts, {} server restores from backup, \
         {faults} network faults injected, {} server rejections, {} records and {} changes \
         converged",
        total.actions,
        total.refused_locally,
        total.syncs,
        total.failed_syncs,
        total.restarts,
        total.server_restores,
        total.rejections,
        total.records,
        total.changes
    );
    assert!(faults > 0, "the runs injected faults");
    assert!(total.changes > 0, "the runs made changes");
}
