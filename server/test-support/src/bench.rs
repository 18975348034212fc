//! Sizes of the benchmarks. `FIELDSYNC_BENCH_TINY=1`, which `cargo xtask test`
//! sets when it runs every bench once in a debug build, shrinks every workload
//! to a few records: proof that the bench still runs end to end, not a
//! measurement (`cargo xtask bench` measures, in a release build).

use std::time::Instant;

use fieldsync_core::automerge::{ActorId, AutoCommit, Change};
use fieldsync_core::model::{Actor, DeviceTime, RecordDoc, RecordMeta, Role, Visit};
use fieldsync_core::protocol::RecordChanges;
use fieldsync_core::{DeviceId, OrgId, RecordId, TeamId, TerritoryId, UserId};
use fieldsync_server::Caller;

/// Whether this is a tiny run (`FIELDSYNC_BENCH_TINY` set, and not `0`).
pub fn bench_tiny() -> bool {
    std::env::var("FIELDSYNC_BENCH_TINY").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// `full`, or `tiny` in a tiny run.
pub fn bench_size(full: usize, tiny: usize) -> usize {
    if bench_tiny() { tiny } else { full }
}

/// A rep with their device's actor, in an organisation, team and territory
/// of their own (nothing is stored: for benches of the merge alone).
pub fn bench_rep() -> Caller {
    Caller {
        actor: Actor::on_device(UserId::new(), Role::Rep, DeviceId::new()),
        org: OrgId::new(),
        team: Some(TeamId::new()),
        territory: Some(TerritoryId::new()),
        display_name: "Ben".into(),
        actor_id: ActorId::random(),
        window: None,
    }
}

/// Edits after a bench visit's creation: five changes per record, the unit
/// of the crowd of `--bench sync` and of `--bench merge`.
pub const VISIT_EDITS: usize = 4;

/// The `i`th visit of `rep`'s day as a device pushes it: planned, then its
/// notes edited [`VISIT_EDITS`] times; its changes, and the device's copy.
pub fn bench_visit(rep: &Caller, i: usize) -> (RecordChanges, RecordDoc) {
    let start = 8 * 3_600_000 + i as i64 * 60_000;
    let visit = Visit::planned(
        RecordMeta {
            id: RecordId::new(),
            org: rep.org,
            owner: rep.user(),
            team: rep.team.unwrap_or_default(),
            territory: rep.territory.unwrap_or_default(),
        },
        RecordId::new(),
        DeviceTime::utc(start),
        DeviceTime::utc(start + 1_800_000),
    );
    let mut doc =
        RecordDoc::create_stateful(&visit, rep.actor_id.clone(), &rep.actor, DeviceTime::utc(0))
            .expect("a planned visit");
    for e in 0..VISIT_EDITS {
        doc.update::<Visit>(DeviceTime::utc(e as i64 + 1), |v| {
            v.notes = format!("edit {e}")
        })
        .expect("an edit");
    }
    (RecordChanges::of_doc(&mut doc, &[]), doc)
}

/// How fast the machine is at this moment, as the median time (µs) Automerge
/// takes to apply a bench visit's five changes to an empty document: the
/// same work whatever the server's code, so two runs' figures can be set
/// against the speed each ran at. The project's machine is shared, and the
/// same code's figures move by 2x over a day (`docs/benchmarks.md`,
/// "twentieth round"); a bench prints this beside them.
pub fn machine_gauge() -> f64 {
    let (pushed, _) = bench_visit(&bench_rep(), 0);
    let changes: Vec<Change> = pushed
        .changes
        .iter()
        .map(|c| Change::from_bytes(c.to_vec()).expect("a change"))
        .collect();
    let mut times: Vec<f64> = (0..bench_size(401, 5))
        .map(|_| {
            let changes = changes.clone();
            let started = Instant::now();
            let mut doc = AutoCommit::new();
            doc.apply_changes(changes).expect("the changes apply");
            let took = started.elapsed().as_secs_f64() * 1e6;
            assert!(doc.get_heads().len() == 1, "the visit's changes applied");
            took
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}
