//! Crash test: a child process makes 1,000 edits and is killed with SIGKILL at a
//! random moment; the reopened store holds every edit whose call had returned,
//! and its outbox is consistent with the documents.
//!
//! The child is this same test binary, re-run with `FIELDSYNC_CRASH_CHILD` set:
//! it then runs only [`crash_child`], which prints the index of each edit after
//! the store call returned.

#![cfg(feature = "device")]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fieldsync_core::automerge::Change;
use fieldsync_core::model::Visit;
use fieldsync_core::store::{DeviceStore, StoreOptions};
use fieldsync_core::{
    Actor, DeviceId, DeviceTime, OrgId, RecordId, RecordMeta, Role, TeamId, TerritoryId, UserId,
};

const EDITS: usize = 1_000;
const RECORDS: usize = 10;

/// The child: creates `RECORDS` visits, then edits them round-robin, reporting each edit.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var("FIELDSYNC_CRASH_CHILD") else {
        return;
    };
    let store = DeviceStore::open(&path, StoreOptions::default()).expect("open");
    let rep = Actor::on_device(UserId::new(), Role::Rep, DeviceId::new());
    let (org, team, territory) = (OrgId::new(), TeamId::new(), TerritoryId::new());
    let mut ids = Vec::new();
    let mut out = std::io::stdout().lock();
    for _ in 0..RECORDS {
        let meta = RecordMeta {
            id: RecordId::new(),
            org,
            owner: rep.user,
            team,
            territory,
        };
        let v = Visit::planned(
            meta,
            RecordId::new(),
            DeviceTime::utc(0),
            DeviceTime::utc(1),
        );
        let id = store
            .create_stateful(&v, &rep, DeviceTime::utc(0))
            .expect("create");
        writeln!(out, "@record {id}").expect("stdout");
        ids.push(id);
    }
    out.flush().expect("flush");
    for i in 0..EDITS {
        let id = ids[i % RECORDS];
        store
            .update::<Visit>(id, DeviceTime::utc(i as i64), |v| {
                v.instructions = Some(format!("edit {i}"))
            })
            .expect("edit");
        writeln!(out, "@edit {i}").expect("stdout");
        out.flush().expect("flush");
    }
    // Finished before the kill: wait to be killed so the parent's logic is the same.
    std::thread::sleep(Duration::from_secs(30));
}

fn run_once(kill_after_edits: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("device.db");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env("FIELDSYNC_CRASH_CHILD", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let mut records = Vec::new();
    let mut last_edit: Option<usize> = None;
    let started = Instant::now();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        // libtest may print its own text before ours on the same line.
        let Some(at) = line.find('@') else { continue };
        let line = &line[at + 1..];
        if let Some(id) = line.strip_prefix("record ") {
            records.push(id.parse::<RecordId>().expect("id"));
        } else if let Some(i) = line.strip_prefix("edit ") {
            let i: usize = i.parse().expect("index");
            last_edit = Some(i);
            if i + 1 >= kill_after_edits {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "child too slow"
        );
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");

    let store = DeviceStore::open(&path, StoreOptions::default()).expect("reopen after kill");
    // No torn page and no index out of step with its table (the outbox's
    // unique index included); the per-record checks below do the rest.
    let integrity: String = rusqlite::Connection::open(&path)
        .expect("second connection")
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity check");
    assert_eq!(integrity, "ok");
    assert_eq!(records.len(), RECORDS);
    let mut expected_changes = 0u64;
    for (r, id) in records.iter().enumerate() {
        let v: Visit = store.read_stateful(*id).expect("record survives");
        // The last acknowledged edit of this record must be there (a later one may be too).
        let acked = last_edit.and_then(|last| (0..=last).rev().find(|i| i % RECORDS == r));
        let held: Option<usize> = v
            .instructions
            .as_deref()
            .and_then(|s| s.strip_prefix("edit "))
            .and_then(|s| s.parse().ok());
        if let Some(acked) = acked {
            let held = held.expect("an acknowledged edit is present");
            assert!(
                held >= acked,
                "record {r}: holds edit {held}, but edit {acked} had returned"
            );
        }
        // Outbox: exactly one row per change of the document, all present in it.
        let mut doc = store.doc(*id).expect("doc");
        let changes = doc.changes_since(&[]);
        expected_changes += changes.len() as u64;
        let batch = store.outbox_batch(RECORDS).expect("outbox readable");
        let row = batch
            .iter()
            .find(|b| b.id == *id)
            .expect("record in outbox");
        let mut outbox_hashes: Vec<_> = row
            .changes
            .iter()
            .map(|c| Change::from_bytes(c.to_vec()).expect("change").hash())
            .collect();
        let mut doc_hashes: Vec<_> = changes.iter().map(Change::hash).collect();
        outbox_hashes.sort();
        doc_hashes.sort();
        assert_eq!(
            outbox_hashes, doc_hashes,
            "record {r}: outbox and document disagree"
        );
    }
    assert_eq!(store.pending_changes().expect("count"), expected_changes);
}

#[test]
fn a_killed_writer_loses_no_acknowledged_edit_and_leaves_a_consistent_outbox() {
    if std::env::var("FIELDSYNC_CRASH_CHILD").is_ok() {
        return;
    }
    // Kill points spread over the run, varied per run by the clock.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as usize)
        .unwrap_or(7);
    for k in [1, 137, 501, 999, EDITS] {
        let point = ((k + seed % 97) % EDITS).max(1);
        run_once(point);
    }
}
