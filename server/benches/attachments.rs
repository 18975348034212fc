//! Attachment upload figures, with the server as a real `fieldsync serve`
//! process on loopback (so its memory is its own):
//!
//! 1. 50 photos of 2 MB uploaded as a device does (declare, 1 MiB chunks each
//!    with its SHA-256, complete): throughput in MB/s;
//! 2. the server's resident memory before, its peak (`VmHWM`) and the growth;
//! 3. the same with 5 files of 20 MB (the same 100 MB), on a fresh server: the
//!    peak must not grow with the file size (chunks and assembly stream), so the
//!    ratio of the two peaks stays near 1.
//!
//! The photos are random bytes (nothing to compress, no thumbnail decoded: the
//! figures are the upload path's; decoding is bounded on its own, see
//! `attachments::thumbnail`). Run with `cargo xtask bench` (or `cargo bench -p
//! fieldsync-server --bench attachments`); `FIELDSYNC_BENCH_BACKENDS` picks the
//! databases as for the sync bench. `FIELDSYNC_BENCH_TINY=1` (what `cargo xtask
//! test` sets) uploads 2 and 1 files: proof that it still runs, not a
//! measurement.

use std::time::Instant;

use fieldsync_core::RecordId;
use fieldsync_core::model::{Account, Visit};
use fieldsync_test_support::{Backend, World, bench_size, sha256_hex, today};
use serde_json::{Value, json};

const MB: usize = 1_000_000;
const MIB: usize = 1024 * 1024;

fn main() {
    let backends =
        std::env::var("FIELDSYNC_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let mut rows = Vec::new();
    for name in backends.split(',').map(str::trim) {
        let (backend, name) = match name {
            "sqlite" => (Backend::Sqlite, "sqlite"),
            "postgres" => (Backend::Postgres, "postgres"),
            other => panic!("unknown backend {other:?}: use sqlite or postgres"),
        };
        let (small_files, large_files) = (bench_size(50, 2), bench_size(5, 1));
        let small = run(backend, small_files, 2 * MB);
        let large = run(backend, large_files, 20 * MB);
        for (files, r) in [
            (format!("{small_files} × 2 MB"), &small),
            (format!("{large_files} × 20 MB"), &large),
        ] {
            rows.push((
                name,
                format!("{files}: throughput"),
                format!("{:.1} MB/s ({:.2} s)", r.mb_per_s, r.secs),
            ));
            rows.push((
                name,
                format!("{files}: server RSS before → peak (growth)"),
                format!(
                    "{:.0} → {:.0} MiB (+{:.0} MiB)",
                    r.before_kib as f64 / 1024.0,
                    r.peak_kib as f64 / 1024.0,
                    r.peak_kib.saturating_sub(r.before_kib) as f64 / 1024.0
                ),
            ));
        }
        rows.push((
            name,
            "peak RSS, 20 MB files ÷ 2 MB files".into(),
            format!(
                "{:.2}",
                large.peak_kib as f64 / small.peak_kib.max(1) as f64
            ),
        ));
    }
    println!();
    println!("| backend | figure | value |");
    println!("|---|---|---|");
    for (backend, figure, value) in rows {
        println!("| {backend} | {figure} | {value} |");
    }
}

struct Run {
    secs: f64,
    mb_per_s: f64,
    before_kib: u64,
    peak_kib: u64,
}

/// Bytes that differ from file to file and do not compress.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn run(backend: Backend, files: usize, size: usize) -> Run {
    let w = World::start_process(backend);
    let ana = w.device("ana");
    let account = Account {
        meta: w.meta("ana"),
        name: "Padaria Central".into(),
        account_type: "outlet".into(),
        account_status: "active".into(),
        code: None,
        price_list_id: None,
        visit_frequency_days: None,
        locations: Default::default(),
    };
    let account_id = ana.store().create(&account, today(8)).expect("account");
    let visit: RecordId = ana
        .store()
        .create_stateful(
            &Visit::planned(w.meta("ana"), account_id, today(10), today(11)),
            &ana.actor,
            today(8),
        )
        .expect("visit");
    ana.sync();
    let token = ana.access_token();
    let auth = format!("Bearer {token}");
    // Made before the clock starts; the bench's own memory is not the server's.
    let photos: Vec<Vec<u8>> = (0..files)
        .map(|i| random_bytes(size, (size + i) as u64))
        .collect();
    let agent = ureq::Agent::new_with_defaults();
    let before_kib = w.server_rss_kib().expect("server RSS");
    let started = Instant::now();
    for data in &photos {
        let hash = sha256_hex(data);
        let declared: Value = agent
            .post(format!("{}/v1/attachments", w.base))
            .header("authorization", &auth)
            .send_json(json!({
                "sha256": hash, "record_id": visit, "kind": "photo",
                "content_type": "image/jpeg", "size": data.len(),
            }))
            .expect("declare")
            .into_body()
            .read_json()
            .expect("declaration");
        assert_eq!(declared["complete"], json!(false), "{declared}");
        for (idx, chunk) in data.chunks(MIB).enumerate() {
            agent
                .put(format!("{}/v1/attachments/{hash}/chunks/{idx}", w.base))
                .header("authorization", &auth)
                .header("content-type", "application/octet-stream")
                .header("x-chunk-sha256", sha256_hex(chunk))
                .send(chunk)
                .expect("chunk");
        }
        agent
            .post(format!("{}/v1/attachments/{hash}/complete", w.base))
            .header("authorization", &auth)
            .send_empty()
            .expect("complete");
    }
    let secs = started.elapsed().as_secs_f64();
    let peak_kib = w.server_peak_kib().expect("server peak");
    let total = (files * size) as f64 / MB as f64;
    Run {
        secs,
        mb_per_s: total / secs,
        before_kib,
        peak_kib,
    }
}
