//! The morning rush: a field force comes back online at 8 a.m.
//!
//! 1,000 reps, each with a real device store, spent a day offline: each made 10
//! local edits (one note on each of their 10 visits), and the office made 50
//! changes to their records meanwhile (5 to each visit). The reps work in
//! territories of 20 (a territory's reps read its customers), and every device
//! was in step with the server when it went offline: the setup ends with an
//! evening sync of each, so the rush receives the day's 50 changes and not the
//! colleagues' accounts the setup created after a device's first sync. Then every device
//! reconnects, at a moment spread evenly over 60 s, and syncs: it pushes its 10
//! changes and pulls the office's 50. The server is a real `fieldsync serve`
//! process on loopback, on SQLite and on PostgreSQL. Printed per database:
//! p50 / p99 time from reconnect to converged (the sync returned with every
//! local change accepted and every remote one received), the server's CPU
//! seconds and peak resident memory over the rush, and the syncs that failed
//! for good or needed more than the two requests a clean sync takes (retries).
//!
//! Run with `cargo xtask bench` (or `cargo bench -p fieldsync-server --bench
//! rush`). `FIELDSYNC_BENCH_DEVICES` changes the 1,000 and
//! `FIELDSYNC_BENCH_WINDOW_SECS` the 60; `FIELDSYNC_BENCH_BACKENDS` picks the
//! databases as for the sync bench. `FIELDSYNC_BENCH_TINY=1` (what `cargo
//! xtask test` sets) runs 4 devices over 1 s: proof that it still runs, not a
//! measurement.

use std::time::{Duration, Instant};

use fieldsync_core::RecordId;
use fieldsync_core::model::{DeviceTime, Role, Visit};
use fieldsync_core::sync::{NoProgress, SyncOptions};
use fieldsync_test_support::{Backend, Device, World, bench_size, in_parallel};

/// Visits per rep; each gets one local edit and five office edits.
const VISITS: usize = 10;
const OFFICE_EDITS_PER_VISIT: usize = 5;
/// Reps per territory.
const REPS_PER_TERRITORY: usize = 20;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let devices = env_or("FIELDSYNC_BENCH_DEVICES", bench_size(1_000, 4));
    let window =
        Duration::from_secs(env_or("FIELDSYNC_BENCH_WINDOW_SECS", bench_size(60, 1)) as u64);
    let backends =
        std::env::var("FIELDSYNC_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let mut rows = Vec::new();
    for name in backends.split(',').map(str::trim) {
        let backend = match name {
            "sqlite" => Backend::Sqlite,
            "postgres" => Backend::Postgres,
            other => panic!("unknown backend {other:?}: use sqlite or postgres"),
        };
        rows.push((name.to_owned(), run(backend, name, devices, window)));
    }
    println!();
    println!(
        "| backend | devices over | converged | reconnect → converged p50 / p99 | server CPU | server peak RSS | failed / retried syncs |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, r) in rows {
        println!(
            "| {name} | {devices} over {} s | {} of {devices} | {:.0} / {:.0} ms | {:.1} s | {:.0} MiB | {} / {} |",
            window.as_secs(),
            r.converged,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
            r.cpu_secs,
            r.peak_kib as f64 / 1024.0,
            r.failed,
            r.retried
        );
    }
}

struct Rush {
    converged: usize,
    p50: Duration,
    p99: Duration,
    cpu_secs: f64,
    peak_kib: u64,
    failed: usize,
    retried: usize,
}

fn options() -> SyncOptions {
    SyncOptions {
        base_backoff: Duration::from_millis(200),
        ..SyncOptions::default()
    }
}

fn run(backend: Backend, name: &str, devices: usize, window: Duration) -> Rush {
    eprintln!("== {name}: {devices} reps, each a device with {VISITS} visits");
    let w = World::start_process_with(backend, |args| {
        // A thousand logins from one address within minutes, and every
        // device's live place: the abuse limits are not what is measured.
        args.logins_per_minute = Some(0);
        args.logins_per_minute_per_address = Some(0);
        args.new_devices_per_day = Some(0);
    });
    let started = Instant::now();
    let territories: Vec<_> = (0..devices.div_ceil(REPS_PER_TERRITORY))
        .map(|t| w.add_territory(&format!("Territory {t:03}")))
        .collect();
    let reps: Vec<usize> = (0..devices).collect();
    let people = in_parallel(&reps, 8, |i| {
        let territory = territories[i / REPS_PER_TERRITORY];
        w.add_person_in(&format!("rep{i:04}"), Role::Rep, w.north, territory)
    });
    // Yesterday: each rep's device holds an account and its visits, synced.
    let phones: Vec<(Device, Vec<RecordId>)> = in_parallel(&people, 8, |p| {
        let d = w.device_of(p.clone(), options());
        let account = w.account_on(&d, "Outlet");
        let today = today_ms();
        let visits: Vec<RecordId> = (0..VISITS)
            .map(|v| {
                let start = today + 8 * HOUR_MS + v as i64 * HOUR_MS / 2;
                d.store()
                    .create_stateful(
                        &Visit::planned(
                            w.meta_of(p),
                            account,
                            DeviceTime::utc(start),
                            DeviceTime::utc(start + HOUR_MS / 4),
                        ),
                        &d.actor,
                        DeviceTime::utc(0),
                    )
                    .expect("visit")
            })
            .collect();
        let report = d.sync();
        assert_eq!(report.rejected, 0, "{report:?}");
        (d, visits)
    });
    // Yesterday evening: each device syncs once more and holds what its
    // territory's colleagues created after its first sync.
    in_parallel(&phones, 8, |(d, _)| {
        let report = d.sync();
        assert_eq!(report.rejected, 0, "{report:?}");
    });
    eprintln!(
        "   {devices} devices logged in and synced in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The office, meanwhile: the manager changes each visit five times.
    let office = w.device_with("mona", options());
    office.sync();
    for (_, visits) in &phones {
        for id in visits {
            for e in 0..OFFICE_EDITS_PER_VISIT {
                office
                    .store()
                    .update::<Visit>(*id, DeviceTime::utc(100 + e as i64), |v| {
                        v.instructions = Some(format!("bring the new price list ({e})"))
                    })
                    .expect("office edit");
            }
        }
    }
    let report = office.sync();
    assert_eq!(report.rejected, 0, "{report:?}");
    // And each rep, offline, wrote a note on each visit.
    for (d, visits) in &phones {
        for id in visits {
            d.store()
                .update::<Visit>(*id, DeviceTime::utc(200), |v| {
                    v.notes = "shelf restocked".into()
                })
                .expect("local edit");
        }
    }
    eprintln!(
        "   the office made {} changes; every rep {VISITS} offline",
        devices * VISITS * OFFICE_EDITS_PER_VISIT
    );

    // 8 a.m.: each device reconnects at its moment of the window.
    let cpu_before = w.server_cpu_secs().unwrap_or(0.0);
    let rush_started = Instant::now();
    let step = window.as_secs_f64() / devices as f64;
    let indexed: Vec<(usize, &(Device, Vec<RecordId>))> = phones.iter().enumerate().collect();
    let outcomes = in_parallel(&indexed, devices.min(256), |(i, (d, _))| {
        let at = Duration::from_secs_f64(step * *i as f64);
        if let Some(wait) = at.checked_sub(rush_started.elapsed()) {
            std::thread::sleep(wait);
        }
        let began = Instant::now();
        let result = d.client.sync(&NoProgress);
        (began.elapsed(), result)
    });
    let cpu_secs = w.server_cpu_secs().unwrap_or(0.0) - cpu_before;
    let mut times = Vec::new();
    let (mut failed, mut retried) = (0, 0);
    let pulled: Vec<u64> = outcomes
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().map(|r| r.pulled))
        .collect();
    eprintln!(
        "   each device received {}–{} changes",
        pulled.iter().min().unwrap_or(&0),
        pulled.iter().max().unwrap_or(&0)
    );
    for (took, result) in outcomes {
        match result {
            Ok(r)
                if r.pushed == VISITS as u64
                    && r.pulled >= (VISITS * OFFICE_EDITS_PER_VISIT) as u64 =>
            {
                if r.round_trips > 2 {
                    retried += 1;
                }
                times.push(took);
            }
            Ok(r) => {
                eprintln!("   a sync ended unconverged: {r:?}");
                failed += 1;
            }
            Err(e) => {
                eprintln!("   a sync failed: {e}");
                failed += 1;
            }
        }
    }
    times.sort();
    let pct = |p: f64| {
        times
            .get(((times.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    Rush {
        converged: times.len(),
        p50: pct(0.5),
        p99: pct(0.99),
        cpu_secs,
        peak_kib: w.server_peak_kib().unwrap_or(0),
        failed,
        retried,
    }
}

const HOUR_MS: i64 = 3_600_000;

/// Midnight UTC today: the visits fall inside the reps' download window.
fn today_ms() -> i64 {
    let now = DeviceTime::now_utc().at_ms;
    now - now.rem_euclid(24 * HOUR_MS)
}
