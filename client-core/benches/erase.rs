//! Erasure benchmark: what rewriting a record without a person's data costs,
//! against the record's ordinary operations in the same run (ratios, since this
//! machine is noisy). The figures are recorded in `docs/benchmarks.md` and
//! weighed in `docs/adr/0005-erasure-by-rewrite.md`.
//!
//! Run with `cargo bench -p fieldsync-core --bench erase`.
//! `FIELDSYNC_BENCH_TINY=1` (what `cargo xtask test` sets) runs each figure at
//! a tiny size in a debug build: proof that the bench still runs, not a
//! measurement.

use std::time::{Duration, Instant};

use fieldsync_core::automerge::ActorId;
use fieldsync_core::model::erase::{Scrub, Subject, personal_fields};
use fieldsync_core::model::{Contact, RecordDoc};
use fieldsync_core::{DeviceTime, OrgId, RecordId, RecordMeta, TeamId, TerritoryId, UserId};

fn tiny() -> bool {
    std::env::var("FIELDSYNC_BENCH_TINY").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The median of `runs` timings of `f`.
fn median_of(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// A contact edited `edits` times (phone and name in turn): its history holds
/// every value.
fn contact_with_history(edits: usize) -> RecordDoc {
    let c = Contact {
        meta: RecordMeta {
            id: RecordId::new(),
            org: OrgId::new(),
            owner: UserId::new(),
            team: TeamId::new(),
            territory: TerritoryId::new(),
        },
        account_id: RecordId::new(),
        name: "Zebulon Quaxley".into(),
        role: Some("buyer".into()),
        phone: Some("+351 912 000 000".into()),
        email: Some("zebulon@quax.example".into()),
        marketing_consent: false,
        consent: None,
    };
    let mut doc = RecordDoc::create(&c, ActorId::random(), DeviceTime::utc(1)).expect("create");
    for i in 0..edits {
        let at = DeviceTime::utc(2 + i as i64);
        doc.update::<Contact>(at, |c| {
            if i % 2 == 0 {
                c.phone = Some(format!("+351 912 000 {i:03}"));
            } else {
                c.name = format!("Zebulon Quaxley {i}");
            }
        })
        .expect("edit");
    }
    doc
}

fn main() {
    let runs = if tiny() { 3 } else { 101 };
    if tiny() {
        println!("Fieldsync erasure benchmark: TINY RUN (no figure)\n");
    } else {
        println!("Fieldsync erasure benchmark (release build)\n");
    }
    println!(
        "{:>8}  {:>12}  {:>12}  {:>12}  {:>12}  {:>10}  {:>10}  {:>10}",
        "edits", "load+read", "harvest", "rewrite", "rebase", "rw/load", "bytes", "after"
    );
    let sizes: &[usize] = if tiny() { &[2] } else { &[1, 10, 50, 200] };
    for &edits in sizes {
        let mut doc = contact_with_history(edits);
        let saved = doc.save();
        let subject = Subject::Contact(doc.id());
        let fields = personal_fields(&doc, &subject).expect("fields");
        let values = doc.past_values(&fields).expect("values");
        let scrub = Scrub {
            fields: fields.clone(),
            values,
        };

        // The ordinary cost of touching a record: load it and read it.
        let load = median_of(runs, || {
            let d = RecordDoc::load(&saved).expect("load");
            let _: Contact = d.read().expect("read");
        });
        // Every past value of the personal fields (one state per change).
        let harvest = median_of(runs, || {
            let mut d = doc.clone();
            assert!(!d.past_values(&fields).expect("values").is_empty());
        });
        let rewrite = median_of(runs, || {
            doc.rewritten(&scrub, ActorId::random(), DeviceTime::utc(0))
                .expect("rewrite");
        });
        let rewritten = doc
            .rewritten(&scrub, ActorId::random(), DeviceTime::utc(0))
            .expect("rewrite");
        // A device with one unsynced edit rebases it onto the new epoch.
        let mut device = doc.clone();
        device.set_actor(ActorId::random());
        let synced = device.heads();
        device
            .update::<Contact>(DeviceTime::utc(9), |c| c.account_id = RecordId::new())
            .expect("offline edit");
        let rebase = median_of(runs, || {
            let mut d = device.clone();
            let (_, moved) = d
                .rebase_onto(&synced, &rewritten, &fields, DeviceTime::utc(10))
                .expect("rebase");
            assert!(moved);
        });
        let after = rewritten.clone().save().len();
        println!(
            "{:>8}  {:>12}  {:>12}  {:>12}  {:>12}  {:>9.1}x  {:>10}  {:>10}",
            edits,
            us(load),
            us(harvest),
            us(rewrite),
            us(rebase),
            rewrite.as_secs_f64() / load.as_secs_f64(),
            saved.len(),
            after
        );
    }
}
