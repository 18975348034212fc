//! Convergence property: replicas that edit offline and exchange changes in any
//! order and any grouping end with identical documents, identical projections
//! and identical conflict lists.
//!
//! Each replica is a device (replica 0 is the manager's, the others belong to the
//! same rep: a phone and a tablet). A random script of operations runs: create
//! records, edit fields, edit the collaborative notes, add and remove order
//! lines, status transitions (which the state machine may refuse: that is fine,
//! a refused transition writes nothing), deletes, and partial syncs that deliver
//! a random subset of the missing changes in random order (Automerge queues a
//! change until its dependencies arrive). At the end every replica receives
//! everything, and all replicas must agree on everything we can read.

use std::collections::BTreeMap;

use fieldsync_core::automerge::{ActorId, AutoCommit, Change, ChangeHash};
use fieldsync_core::model::order::{self, Order, OrderLine};
use fieldsync_core::model::projection::Projection;
use fieldsync_core::model::visit::{self, Site, Visit, VisitOutcome, VisitStatus};
use fieldsync_core::{
    Actor, DeviceId, DeviceTime, GeoPoint, Money, OrgId, Qty, RecordDoc, RecordId, RecordMeta,
    Role, TeamId, TerritoryId, TransitionRequest, UserId,
};
use proptest::prelude::*;

/// The people and devices of one test world.
struct World {
    org: OrgId,
    team: TeamId,
    territory: TerritoryId,
    rep: UserId,
    manager: UserId,
    devices: Vec<DeviceId>,
    account: RecordId,
}

impl World {
    fn new(replicas: usize) -> Self {
        Self {
            org: OrgId::new(),
            team: TeamId::new(),
            territory: TerritoryId::new(),
            rep: UserId::new(),
            manager: UserId::new(),
            devices: (0..replicas).map(|_| DeviceId::new()).collect(),
            account: RecordId::new(),
        }
    }

    fn actor(&self, replica: usize) -> Actor {
        if replica == 0 {
            Actor::on_device(self.manager, Role::Manager, self.devices[0])
        } else {
            Actor::on_device(self.rep, Role::Rep, self.devices[replica])
        }
    }

    fn meta(&self) -> RecordMeta {
        RecordMeta {
            id: RecordId::new(),
            org: self.org,
            owner: self.rep,
            team: self.team,
            territory: self.territory,
        }
    }
}

fn actor_id(replica: usize) -> ActorId {
    ActorId::from(vec![replica as u8 + 1; 16])
}

/// One device: its documents by record id.
struct Replica {
    index: usize,
    docs: BTreeMap<RecordId, AutoCommit>,
}

impl Replica {
    /// Runs `f` on the record, if this replica can read it (all its creation
    /// change has arrived). The document keeps whatever `f` committed.
    fn with_doc<T>(&mut self, id: RecordId, f: impl FnOnce(&mut RecordDoc) -> T) -> Option<T> {
        let am = self.docs.remove(&id)?;
        match RecordDoc::from_automerge(am.clone()) {
            Ok(mut doc) => {
                doc.set_actor(actor_id(self.index));
                let out = f(&mut doc);
                self.docs.insert(id, doc.into_automerge());
                Some(out)
            }
            Err(_) => {
                self.docs.insert(id, am);
                None
            }
        }
    }

    fn missing_for(&mut self, other: &mut Replica) -> Vec<(RecordId, Change)> {
        let mut out = Vec::new();
        for (id, doc) in &mut self.docs {
            let have: Vec<ChangeHash> = match other.docs.get_mut(id) {
                Some(d) => d.get_heads(),
                None => Vec::new(),
            };
            // Changes the other side lacks; a queued (not yet applied) change may be
            // resent, which Automerge ignores.
            for change in doc.get_changes(&have) {
                out.push((*id, change));
            }
        }
        out
    }

    fn receive(&mut self, changes: Vec<(RecordId, Change)>) {
        for (id, change) in changes {
            let doc = self
                .docs
                .entry(id)
                .or_insert_with(|| AutoCommit::new().with_actor(actor_id(self.index)));
            doc.apply_changes(vec![change])
                .expect("applying a well-formed change never fails");
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    CreateVisit {
        replica: usize,
    },
    CreateOrder {
        replica: usize,
    },
    EditInstructions {
        replica: usize,
        record: usize,
        text: String,
    },
    EditNotes {
        replica: usize,
        record: usize,
        at: usize,
        delete: usize,
        insert: String,
    },
    Transition {
        replica: usize,
        record: usize,
        step: u8,
    },
    AddLine {
        replica: usize,
        record: usize,
        qty: i64,
        price: i64,
    },
    EditLine {
        replica: usize,
        record: usize,
        line: usize,
        qty: i64,
    },
    RemoveLine {
        replica: usize,
        record: usize,
        line: usize,
    },
    Delete {
        replica: usize,
        record: usize,
    },
    Sync {
        from: usize,
        to: usize,
        keep: Vec<bool>,
        seed: u64,
    },
}

fn op(replicas: usize) -> impl Strategy<Value = Op> {
    let r = 0..replicas;
    prop_oneof![
        r.clone().prop_map(|replica| Op::CreateVisit { replica }),
        r.clone().prop_map(|replica| Op::CreateOrder { replica }),
        (r.clone(), 0..8usize, "[a-z ]{0,12}").prop_map(|(replica, record, text)| {
            Op::EditInstructions {
                replica,
                record,
                text,
            }
        }),
        (r.clone(), 0..8usize, 0..40usize, 0..4usize, "[a-z ]{0,6}").prop_map(
            |(replica, record, at, delete, insert)| Op::EditNotes {
                replica,
                record,
                at,
                delete,
                insert
            }
        ),
        (r.clone(), 0..8usize, 0..6u8).prop_map(|(replica, record, step)| Op::Transition {
            replica,
            record,
            step
        }),
        (r.clone(), 0..8usize, 1..50i64, 1..10_000i64).prop_map(|(replica, record, qty, price)| {
            Op::AddLine {
                replica,
                record,
                qty,
                price,
            }
        }),
        (r.clone(), 0..8usize, 0..4usize, 1..50i64).prop_map(|(replica, record, line, qty)| {
            Op::EditLine {
                replica,
                record,
                line,
                qty,
            }
        }),
        (r.clone(), 0..8usize, 0..4usize).prop_map(|(replica, record, line)| Op::RemoveLine {
            replica,
            record,
            line
        }),
        (r.clone(), 0..8usize).prop_map(|(replica, record)| Op::Delete { replica, record }),
        (
            r.clone(),
            r,
            proptest::collection::vec(any::<bool>(), 0..64),
            any::<u64>()
        )
            .prop_map(|(from, to, keep, seed)| Op::Sync {
                from,
                to,
                keep,
                seed
            }),
    ]
}

fn t(ms: i64) -> DeviceTime {
    DeviceTime {
        at_ms: 1_767_225_600_000 + ms,
        tz_offset_min: 60,
    }
}

const SITE: Site = Site {
    coords: Some(GeoPoint {
        lat: 48.137,
        lng: 11.575,
        accuracy_m: None,
    }),
    radius_m: 100.0,
};

fn run(replica_count: usize, ops: Vec<Op>) {
    let world = World::new(replica_count);
    let mut replicas: Vec<Replica> = (0..replica_count)
        .map(|index| Replica {
            index,
            docs: BTreeMap::new(),
        })
        .collect();
    // Record ids in creation order, shared by the script (a replica that has not
    // received a record yet simply skips operations on it).
    let mut records: Vec<RecordId> = Vec::new();

    for (step, op) in ops.into_iter().enumerate() {
        let now = t(step as i64 * 60_000);
        match op {
            Op::CreateVisit { replica } => {
                let visit = Visit::planned(
                    world.meta(),
                    world.account,
                    now,
                    t(step as i64 * 60_000 + 3_600_000),
                );
                let doc = RecordDoc::create_stateful(
                    &visit,
                    actor_id(replica),
                    &world.actor(replica),
                    now,
                )
                .expect("a planned visit is valid");
                records.push(doc.id());
                replicas[replica]
                    .docs
                    .insert(doc.id(), doc.into_automerge());
            }
            Op::CreateOrder { replica } => {
                let order = Order::new(world.meta(), world.account, "EUR");
                let doc = RecordDoc::create_stateful(
                    &order,
                    actor_id(replica),
                    &world.actor(replica),
                    now,
                )
                .expect("a draft order is valid");
                records.push(doc.id());
                replicas[replica]
                    .docs
                    .insert(doc.id(), doc.into_automerge());
            }
            Op::EditInstructions {
                replica,
                record,
                text,
            } => {
                let Some(&id) = records.get(record) else {
                    continue;
                };
                replicas[replica].with_doc(id, |doc| {
                    let _ = doc.update::<Visit>(now, |v| v.instructions = Some(text.clone()));
                });
            }
            Op::EditNotes {
                replica,
                record,
                at,
                delete,
                insert,
            } => {
                let Some(&id) = records.get(record) else {
                    continue;
                };
                replicas[replica].with_doc(id, |doc| {
                    let _ = doc.update::<Visit>(now, |v| {
                        let chars: Vec<char> = v.notes.chars().collect();
                        let at = at.min(chars.len());
                        let end = (at + delete).min(chars.len());
                        let mut next: String = chars[..at].iter().collect();
                        next.push_str(&insert);
                        next.extend(&chars[end..]);
                        v.notes = next;
                    });
                });
            }
            Op::Transition {
                replica,
                record,
                step: which,
            } => {
                let Some(&id) = records.get(record) else {
                    continue;
                };
                let actor = world.actor(replica);
                replicas[replica].with_doc(id, |doc| {
                    // Refused transitions are expected; they must write nothing.
                    let _ = match which {
                        0 => visit::check_in(doc, &actor, now, SITE.coords, SITE),
                        1 => visit::check_out(
                            doc,
                            &actor,
                            now,
                            SITE.coords,
                            SITE,
                            VisitOutcome::OrderTaken,
                        ),
                        2 => doc.transition::<Visit>(
                            &actor,
                            &TransitionRequest::new(VisitStatus::Cancelled, now)
                                .with_reason("customer closed"),
                            |_| {},
                        ),
                        3 => doc.transition::<Visit>(
                            &actor,
                            &TransitionRequest::new(VisitStatus::Missed, now),
                            |_| {},
                        ),
                        4 => doc.transition::<Visit>(
                            &actor,
                            &TransitionRequest::new(VisitStatus::InProgress, now)
                                .with_reason("reopened"),
                            |_| {},
                        ),
                        _ => order::submit(doc, &actor, now),
                    };
                });
            }
            Op::AddLine {
                replica,
                record,
                qty,
                price,
            } => {
                let Some(&id) = records.get(record) else {
                    continue;
                };
                let actor = world.actor(replica);
                replicas[replica].with_doc(id, |doc| {
                    let line =
                        OrderLine::new(RecordId::new(), Qty::units(qty), Money::new(price, "EUR"));
                    let _ = order::add_line(doc, &actor, now, line);
                });
            }
            Op::EditLine {
                replica,
                record,
                line,
                qty,
            } => {
                let Some(&id) = records.get(record) else {
                    continue;
                };
                let actor = world.actor(replica);
                replicas[replica].with_doc(id, |doc| {
                    let Ok(o) = doc.read::<Order>() else { return };
                    let Some(line_id) = o.lines.keys().nth(line).copied() else {
                        return;
                    };
                    let _ =
                        order::edit_line(doc, &actor, now, line_id, |l| l.qty = Qty::units(qty));
                });
            }
            Op::RemoveLine {
                replica,
                record,
                line,
            } => {
                let Some(&id) = records.get(record) else {
                    continue;
                };
                let actor = world.actor(replica);
                replicas[replica].with_doc(id, |doc| {
                    let Ok(o) = doc.read::<Order>() else { return };
                    let Some(line_id) = o.lines.keys().nth(line).copied() else {
                        return;
                    };
                    let _ = order::remove_line(doc, &actor, now, line_id);
                });
            }
            Op::Delete { replica, record } => {
                let Some(&id) = records.get(record) else {
                    continue;
                };
                replicas[replica].with_doc(id, |doc| {
                    let _ = doc.delete(now);
                });
            }
            Op::Sync {
                from,
                to,
                keep,
                seed,
            } => {
                if from == to {
                    continue;
                }
                let (a, b) = pair(&mut replicas, from, to);
                let mut changes = a.missing_for(b);
                // A random grouping: drop some, shuffle the rest.
                let mut i = 0;
                changes.retain(|_| {
                    i += 1;
                    keep.get(i - 1).copied().unwrap_or(true)
                });
                shuffle(&mut changes, seed);
                b.receive(changes);
            }
        }
    }

    // Full exchange, in both directions, until nothing is missing anywhere.
    for round in 0..2 {
        for from in 0..replica_count {
            for to in 0..replica_count {
                if from != to {
                    let (a, b) = pair(&mut replicas, from, to);
                    let mut changes = a.missing_for(b);
                    shuffle(&mut changes, (round * 31 + from * 7 + to) as u64);
                    b.receive(changes);
                }
            }
        }
    }

    let reference = snapshot(&mut replicas[0]);
    for replica in &mut replicas[1..] {
        let other = snapshot(replica);
        assert_eq!(
            reference.len(),
            other.len(),
            "replicas hold different record sets"
        );
        for (a, b) in reference.iter().zip(other.iter()) {
            assert_eq!(
                a, b,
                "replica {} diverged on record {}",
                replica.index, a.id
            );
        }
    }
    assert_eq!(
        reference.len(),
        records.len(),
        "every created record reached every replica"
    );
}

/// Everything observable about one record on one replica.
#[derive(Debug, PartialEq)]
struct Observed {
    id: RecordId,
    heads: Vec<ChangeHash>,
    json: serde_json::Value,
    status: serde_json::Value,
    conflicts: Vec<fieldsync_core::Conflict>,
    history_len: usize,
    projection: Projection,
    totals: Option<String>,
}

fn snapshot(replica: &mut Replica) -> Vec<Observed> {
    let mut out = Vec::new();
    for (id, am) in &mut replica.docs {
        let mut heads = am.get_heads();
        heads.sort();
        let doc = RecordDoc::from_automerge(am.clone())
            .expect("every record is complete after the exchange");
        let totals = doc
            .read::<Order>()
            .ok()
            .map(|o| format!("{:?}", o.totals()));
        out.push(Observed {
            id: *id,
            heads,
            json: doc.to_json().expect("readable"),
            status: doc.status_name().expect("status"),
            conflicts: doc.conflicts().expect("conflicts"),
            history_len: doc.history().expect("history").len(),
            projection: Projection::of(&doc).expect("projection"),
            totals,
        });
    }
    out
}

fn pair(replicas: &mut [Replica], a: usize, b: usize) -> (&mut Replica, &mut Replica) {
    assert_ne!(a, b);
    if a < b {
        let (left, right) = replicas.split_at_mut(b);
        (&mut left[a], &mut right[0])
    } else {
        let (left, right) = replicas.split_at_mut(a);
        (&mut right[0], &mut left[b])
    }
}

/// A small deterministic shuffle (xorshift), so a failing case replays exactly.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed | 1;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = (state % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn replicas_converge_whatever_the_order_and_grouping_of_exchanges(
        replicas in 3usize..=5,
        ops in proptest::collection::vec(op(5), 1..60),
    ) {
        let ops = ops
            .into_iter()
            .map(|op| clamp(op, replicas))
            .collect();
        run(replicas, ops);
    }
}

/// Maps replica indexes generated for five replicas onto `n`.
fn clamp(op: Op, n: usize) -> Op {
    match op {
        Op::CreateVisit { replica } => Op::CreateVisit {
            replica: replica % n,
        },
        Op::CreateOrder { replica } => Op::CreateOrder {
            replica: replica % n,
        },
        Op::EditInstructions {
            replica,
            record,
            text,
        } => Op::EditInstructions {
            replica: replica % n,
            record,
            text,
        },
        Op::EditNotes {
            replica,
            record,
            at,
            delete,
            insert,
        } => Op::EditNotes {
            replica: replica % n,
            record,
            at,
            delete,
            insert,
        },
        Op::Transition {
            replica,
            record,
            step,
        } => Op::Transition {
            replica: replica % n,
            record,
            step,
        },
        Op::AddLine {
            replica,
            record,
            qty,
            price,
        } => Op::AddLine {
            replica: replica % n,
            record,
            qty,
            price,
        },
        Op::EditLine {
            replica,
            record,
            line,
            qty,
        } => Op::EditLine {
            replica: replica % n,
            record,
            line,
            qty,
        },
        Op::RemoveLine {
            replica,
            record,
            line,
        } => Op::RemoveLine {
            replica: replica % n,
            record,
            line,
        },
        Op::Delete { replica, record } => Op::Delete {
            replica: replica % n,
            record,
        },
        Op::Sync {
            from,
            to,
            keep,
            seed,
        } => Op::Sync {
            from: from % n,
            to: to % n,
            keep,
            seed,
        },
    }
}

#[test]
fn two_devices_cancelling_and_checking_in_concurrently_converge_on_the_field_evidence() {
    let ops = vec![
        Op::CreateVisit { replica: 1 },
        Op::Sync {
            from: 1,
            to: 0,
            keep: vec![],
            seed: 1,
        },
        Op::Sync {
            from: 1,
            to: 2,
            keep: vec![],
            seed: 1,
        },
        Op::Transition {
            replica: 0,
            record: 0,
            step: 2,
        },
        Op::Transition {
            replica: 2,
            record: 0,
            step: 0,
        },
        Op::EditInstructions {
            replica: 0,
            record: 0,
            text: "bring samples".into(),
        },
        Op::EditInstructions {
            replica: 1,
            record: 0,
            text: "ask for the buyer".into(),
        },
    ];
    run(3, ops);
}
