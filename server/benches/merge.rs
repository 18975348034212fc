//! The server's CPU per pushed record, in one process and on one thread: what
//! `domain::push` does to a new visit of five changes (a rep's check-in day:
//! created, then edited four times), the unit the 100 devices' pushes of
//! `--bench sync` are made of. Where `--bench sync` measures a crowd over
//! half a second on a noisy machine, this runs thousands of records through
//! the same code and prints each step's share, so a change to the merge can
//! be compared with the code before it in one run of a minute or two. It
//! allocates through jemalloc, as the server does.
//!
//! Steps, per record (the first two are the push path itself; the others
//! are parts of the merge timed on their own, to say where its time goes):
//! - the pre-flight: each change decoded, hashed and counted;
//! - the decision: the merge onto no stored copy, the model's checks, the
//!   projection, the figures and the stored form (the changes as they came,
//!   `model::stored`) (`push::decide`);
//! - Automerge applying the five changes to an empty document;
//! - the merged record read as JSON (the checks' and the projection's input);
//! - a compaction alone: the merged record saved and loaded back to check it
//!   (what the decision did on every push before issue #21's appended
//!   storage, and does now once every 16 changes of a record);
//! - the next push: one more edit of each record decided onto its stored
//!   form (loaded, merged, checked, appended), and onto the same record
//!   compacted.
//!
//! It also prints the machine's speed at the start (`machine_gauge`, which
//! `--bench sync` prints too): this machine's figures move by 2x over a day.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p fieldsync-server --bench
//! merge`). `FIELDSYNC_BENCH_RECORDS` changes the 5,000 records;
//! `FIELDSYNC_BENCH_TINY=1` (what `cargo xtask test` sets) runs 20: proof
//! that it still runs, not a measurement.

use std::time::Instant;

use fieldsync_core::automerge::{self, AutoCommit};
use fieldsync_core::model::{DeviceTime, RecordDoc, Visit, stored};
use fieldsync_core::protocol::RecordChanges;
use fieldsync_server::domain::push;
use fieldsync_test_support::{
    VISIT_EDITS as EDITS, bench_rep, bench_size, bench_visit, machine_gauge,
};

/// The server's allocator (`main.rs`), so the figures are the server's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let records: usize = std::env::var("FIELDSYNC_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| bench_size(5_000, 20));
    let gauge = machine_gauge();
    let rep = bench_rep();
    eprintln!("building {records} visits of {} changes", EDITS + 1);
    let (pushed, mut made): (Vec<RecordChanges>, Vec<RecordDoc>) =
        (0..records).map(|i| bench_visit(&rep, i)).unzip();

    // The pre-flight, as a device's push of ten records runs it (on one
    // thread; its reading goes to the merge).
    let started = Instant::now();
    let mut read = Vec::with_capacity(records);
    for push in pushed.chunks(10) {
        let (verdicts, changes) = push::preflight(push);
        assert!(verdicts.iter().all(Option::is_none), "a visit was refused");
        read.extend(changes);
    }
    let preflight = started.elapsed().as_secs_f64();

    // The decision, one record after another on this thread.
    let started = Instant::now();
    let mut stored = Vec::with_capacity(records);
    for (rec, read) in pushed.iter().zip(&read) {
        let (write, _heads) =
            push::decide(&rep, rec, None, Some(read)).unwrap_or_else(|r| panic!("refused: {r:?}"));
        let write = write.expect("a new record is written");
        assert_eq!(write.changes.len(), EDITS + 1);
        stored.push(write.doc);
    }
    let decide = started.elapsed().as_secs_f64();
    assert_eq!(
        stored::tail(&stored[0]),
        Some(EDITS + 1),
        "a new record is stored as its changes"
    );

    // The next push of each record: one edit, onto its stored form.
    let edits: Vec<RecordChanges> = made
        .iter_mut()
        .map(|doc| {
            let before = doc.heads();
            doc.update::<Visit>(DeviceTime::utc(60_000), |v| v.notes = "the next day".into())
                .expect("an edit");
            RecordChanges::of_doc(doc, &before)
        })
        .collect();
    let loaded = |doc: Vec<u8>| push::Loaded {
        kind: "visit".into(),
        doc,
        readable: true,
    };
    // The same records compacted (as every record was stored before
    // appended storage), for the next push onto each form in one run.
    let compacted: Vec<push::Loaded> = stored
        .iter()
        .map(|doc| {
            let mut doc = RecordDoc::load(doc).expect("the stored form loads");
            loaded(doc.save_uncompressed())
        })
        .collect();
    let held: Vec<push::Loaded> = stored.into_iter().map(loaded).collect();
    let next_onto = |held: &[push::Loaded], tail: usize| {
        let started = Instant::now();
        for (rec, held) in edits.iter().zip(held) {
            let (write, _heads) = push::decide(&rep, rec, Some(held), None)
                .unwrap_or_else(|r| panic!("refused: {r:?}"));
            let write = write.expect("an edit is written");
            assert_eq!(stored::tail(&write.doc), Some(tail));
        }
        started.elapsed().as_secs_f64()
    };
    let next = next_onto(&held, EDITS + 2);
    let next_compacted = next_onto(&compacted, 1);

    // Parts of the merge on their own.
    let changes: Vec<Vec<automerge::Change>> = pushed
        .iter()
        .map(|r| {
            r.changes
                .iter()
                .map(|c| automerge::Change::from_bytes(c.to_vec()).expect("a change"))
                .collect()
        })
        .collect();
    let started = Instant::now();
    let mut merged = Vec::with_capacity(records);
    for c in changes {
        let mut doc = AutoCommit::new();
        doc.apply_changes(c).expect("the changes apply");
        merged.push(doc);
    }
    let apply = started.elapsed().as_secs_f64();
    let docs: Vec<RecordDoc> = merged
        .into_iter()
        .map(|d| RecordDoc::from_automerge(d).expect("a visit"))
        .collect();
    let started = Instant::now();
    for d in &docs {
        let json = d.to_json().expect("as JSON");
        assert!(json.is_object());
    }
    let json = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for mut d in docs {
        let saved = stored::compacted(&mut d, RecordDoc::save_uncompressed);
        assert!(saved.is_some(), "the save loads back");
    }
    let compaction = started.elapsed().as_secs_f64();

    let per = |secs: f64| secs * 1e6 / records as f64;
    let share = |secs: f64| 100.0 * secs / decide;
    println!();
    println!(
        "| step, per new visit of {} changes ({records} visits) | µs | share of the decision |",
        EDITS + 1
    );
    println!("|---|---|---|");
    println!(
        "| pre-flight: read, hash and count the changes | {:.1} | |",
        per(preflight)
    );
    println!(
        "| **decision: merge, checks, projection, stored form** | **{:.1}** | 100 % |",
        per(decide)
    );
    println!(
        "| of which Automerge applying the changes | {:.1} | {:.0} % |",
        per(apply),
        share(apply)
    );
    println!(
        "| of which the record read as JSON (once) | {:.1} | {:.0} % |",
        per(json),
        share(json)
    );
    println!(
        "| a compaction alone (save, load back; once every 16 changes) | {:.1} | {:.0} % |",
        per(compaction),
        share(compaction)
    );
    println!(
        "| the next push: one edit onto the stored form (five changes appended) | {:.1} | {:.0} % |",
        per(next),
        share(next)
    );
    println!(
        "| … onto the same record compacted | {:.1} | {:.0} % |",
        per(next_compacted),
        share(next_compacted)
    );
    println!(
        "| one core, pre-flight and decision | {:.0} records/s | |",
        records as f64 / (preflight + decide)
    );
    println!(
        "| the machine's speed: Automerge applying one visit's changes, median (`machine_gauge`) | {gauge:.1} | |"
    );
}
