//! Replays every input the fuzzers found a bug with
//! (`tests/fuzz_regressions/<target>/`) and every seed of their corpus
//! (`fuzz/corpus/<target>/`) through the same checks the fuzz targets run
//! (`fieldsync_core::fuzzing`), so a fixed crash stays fixed without a fuzzer.
//! `docs/fuzzing.md` says how to run the fuzzers and add a crash here.

use std::path::{Path, PathBuf};

use fieldsync_core::fuzzing::{TARGETS, seed_corpus};

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"))
        .collect();
    files.sort();
    files
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_committed_crash_and_corpus_file_replays_without_a_panic() {
    for (target, check) in TARGETS {
        let dirs = [
            crate_dir().join("tests/fuzz_regressions").join(target),
            crate_dir().join("../fuzz/corpus").join(target),
        ];
        let mut replayed = 0;
        for file in dirs.iter().flat_map(|d| files_in(d)) {
            let bytes = std::fs::read(&file).expect("read input");
            // Named first: a stack overflow aborts the process before a panic message.
            eprintln!("{target}: {}", file.display());
            check(&bytes);
            replayed += 1;
        }
        assert!(replayed > 0, "no input replayed for {target}: {dirs:?}");
    }
}

#[test]
fn every_seed_input_is_accepted_by_its_target() {
    // The seeds are worth fuzzing from only if they get past the first refusal.
    for seed in seed_corpus() {
        let (_, check) = TARGETS
            .iter()
            .find(|(t, _)| *t == seed.target)
            .expect("known target");
        assert!(
            check(&seed.bytes),
            "{}/{} is refused",
            seed.target,
            seed.name
        );
    }
}

/// Rewrites `fuzz/corpus/` from the model:
/// `cargo test -p fieldsync-core --test fuzz_regressions -- --ignored write_seed_corpus`.
#[test]
#[ignore = "writes files; run by hand after changing the model or the protocol"]
fn write_seed_corpus() {
    for seed in seed_corpus() {
        let dir = crate_dir().join("../fuzz/corpus").join(seed.target);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        std::fs::write(dir.join(seed.name), &seed.bytes).expect("write seed");
    }
}

// --- Bad input the fuzzers probe, as named cases --------------------------------

use fieldsync_core::fuzzing::{make_seed, world};
use fieldsync_core::model::{IncomingError, Site, Visit, VisitOutcome, merge_incoming, visit};
use fieldsync_core::{DeviceTime, RecordDoc};

fn regression(target: &str, name: &str) -> Vec<u8> {
    std::fs::read(
        crate_dir()
            .join("tests/fuzz_regressions")
            .join(target)
            .join(name),
    )
    .expect("committed regression input")
}

#[test]
fn corrupt_automerge_bytes_are_an_error_not_a_panic() {
    let mut doc = make_seed(0);
    let good = doc.save();
    assert!(RecordDoc::load(&good).is_ok());
    for cut in 1..good.len() {
        assert!(RecordDoc::load(&good[..cut]).is_err(), "cut at {cut}");
    }
    for at in 0..good.len() {
        let mut bad = good.clone();
        bad[at] ^= 0x55;
        // Most flips break the checksum; none may panic.
        let _ = RecordDoc::load(&bad);
    }
    assert!(RecordDoc::load(&[0x85, 0x6f, 0x4a, 0x83, 0xff, 0xff]).is_err());
    // An input that panicked inside Automerge before the fence (found with its
    // checksum corrected, as the fuzz target tries every input).
    let crash = regression("doc_load", "hexane_column_cut_short");
    let crash = fieldsync_core::fuzzing::with_checksum_fixed(&crash).expect("a chunk");
    let err = RecordDoc::load(&crash).expect_err("refused");
    assert!(err.to_string().contains("malformed"), "{err}");
}

#[test]
fn a_run_length_bomb_is_refused_before_automerge_expands_it() {
    // 1.8 KB whose columns claim billions of rows: it took Automerge over ten
    // seconds and a gigabyte before it was bounded.
    let started = std::time::Instant::now();
    let err =
        RecordDoc::load(&regression("doc_load", "run_length_bomb_timeout")).expect_err("refused");
    assert!(err.to_string().contains("too large"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[test]
fn a_record_with_a_long_note_is_within_the_bounds() {
    let mut doc = make_seed(0);
    let note = "shelf restocked; ".repeat(12_000);
    doc.update::<Visit>(DeviceTime::utc(1_700_000_100_000), |v| {
        v.notes = note.clone()
    })
    .expect("long note");
    let mut loaded = RecordDoc::load(&doc.save()).expect("loads");
    assert_eq!(loaded.read::<Visit>().expect("reads").notes, note);
    assert_eq!(loaded.heads(), doc.heads());
}

#[test]
fn a_change_whose_dependencies_are_missing_is_refused_with_missing_dependencies() {
    let rep = world::pusher(0);
    let site = Site {
        coords: None,
        radius_m: 100.0,
    };
    let mut server = make_seed(0);
    let mut device = RecordDoc::from_automerge(server.automerge().fork()).expect("device copy");
    device.set_actor(world::device_actor());
    let before = device.heads();
    visit::check_in(
        &mut device,
        &rep,
        DeviceTime::utc(1_700_000_060_000),
        None,
        site,
    )
    .expect("check in");
    let after_check_in = device.heads();
    visit::check_out(
        &mut device,
        &rep,
        DeviceTime::utc(1_700_000_900_000),
        None,
        site,
        VisitOutcome::NoOrder,
    )
    .expect("check out");
    // Only the check-out: it depends on the check-in the server never got.
    let only_last: Vec<Vec<u8>> = device
        .changes_since(&after_check_in)
        .iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect();
    let push = |changes: &[Vec<u8>]| {
        merge_incoming(
            Some(&server),
            world::RECORDS[0],
            server.kind(),
            changes,
            &world::device_actor(),
            &rep,
            world::ORG,
        )
    };
    let err = push(&only_last).expect_err("gap");
    assert!(
        matches!(err, IncomingError::MissingDependencies(_)),
        "{err:?}"
    );
    // With the missing change the same push is accepted.
    let all: Vec<Vec<u8>> = device
        .changes_since(&before)
        .iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect();
    assert_eq!(push(&all).expect("accepted").new_changes.len(), 2);
}

#[test]
fn a_change_whose_checksum_is_not_its_hash_is_refused() {
    // Automerge read it and applied it, and a save wrote it back with a right
    // checksum under another hash ("mismatching heads"). Records are stored
    // and sent with their changes as they came (`model::stored`), and
    // Automerge refuses to load a file holding it: refused when read.
    assert!(
        !fieldsync_core::fuzzing::check_merge_incoming(&regression(
            "merge_incoming",
            "saved_merge_does_not_load_mismatching_heads"
        )),
        "refused"
    );
}

#[test]
fn a_merge_that_would_not_load_from_its_own_save_is_refused() {
    // A server copy and a change that Automerge merged, but whose saved
    // document it refused to load ("max_op is lower than start_op"); the
    // change's checksum is not its hash's either: refused when read.
    assert!(
        !fieldsync_core::fuzzing::check_merge_incoming(&regression(
            "merge_incoming",
            "saved_merge_does_not_load_max_op_below_start_op"
        )),
        "refused"
    );
}

#[test]
fn a_bundle_chunk_is_refused_before_automerge_expands_it() {
    // A bundle (a chunk kind records never hold) whose delta column made
    // Automerge allocate past 2 GB.
    let bytes = regression("doc_load", "bundle_chunk_out_of_memory");
    let bytes = fieldsync_core::fuzzing::with_checksum_fixed(&bytes).unwrap_or(bytes);
    let err = RecordDoc::load(&bytes).expect_err("refused");
    assert!(err.to_string().contains("never hold"), "{err}");
}

#[test]
fn column_data_automerge_reads_more_leniently_is_refused() {
    // Column data this crate's bound check could not parse, which Automerge read
    // anyway and expanded past 2 GB.
    let bytes = regression("doc_load", "lenient_column_out_of_memory");
    let started = std::time::Instant::now();
    for bytes in [
        bytes.clone(),
        fieldsync_core::fuzzing::with_checksum_fixed(&bytes).unwrap_or(bytes),
    ] {
        assert!(RecordDoc::load(&bytes).is_err());
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}
