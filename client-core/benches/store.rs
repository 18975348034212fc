//! Device store benchmark: prints the figures recorded in `docs/benchmarks.md`.
//!
//! Run with `cargo bench -p fieldsync-core --bench store` (or `cargo xtask bench`).
//! Automerge alone is measured in the same run as the baseline, and the store's
//! figures are also given as ratios to it, because this machine is noisy.
//!
//! `FIELDSYNC_BENCH_TINY=1` (what `cargo xtask test` sets) runs every figure at
//! a fiftieth of its size in a debug build: proof that the bench still runs,
//! not a measurement.

use std::time::{Duration, Instant};

use fieldsync_core::automerge::{AutoCommit, ROOT, ReadDoc, transaction::Transactable};
use fieldsync_core::model::Visit;
use fieldsync_core::store::{DeviceStore, StoreOptions};
use fieldsync_core::{
    Actor, DeviceId, DeviceTime, OrgId, RecordId, RecordMeta, Role, TeamId, TerritoryId, UserId,
};

const DAY: i64 = 86_400_000;

/// `full`, or a fiftieth of it in a tiny run (`FIELDSYNC_BENCH_TINY`).
fn sized(full: usize) -> usize {
    let tiny = std::env::var("FIELDSYNC_BENCH_TINY").is_ok_and(|v| !v.is_empty() && v != "0");
    if tiny { (full / 50).max(1) } else { full }
}
const TODAY: i64 = 1_767_571_200_000;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The median time of `runs` runs of `f`: single timings on this machine are noisy.
fn median_of(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    pct(&times, 0.5)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

struct World {
    org: OrgId,
    team: TeamId,
    territory: TerritoryId,
    rep: Actor,
}

impl World {
    fn visit(&self, i: i64) -> Visit {
        let meta = RecordMeta {
            id: RecordId::new(),
            org: self.org,
            owner: self.rep.user,
            team: self.team,
            territory: self.territory,
        };
        // Spread over two weeks around today, 8:00 to 18:00.
        let start = TODAY + (i % 14 - 7) * DAY + 8 * 3_600_000 + (i % 10) * 3_600_000;
        let mut v = Visit::planned(
            meta,
            RecordId::new(),
            DeviceTime::utc(start),
            DeviceTime::utc(start + 3_600_000),
        );
        v.instructions = Some("Check the promo display and the chiller".into());
        v
    }
}

fn automerge_baseline() -> (Duration, usize, Duration, Duration, Duration) {
    let fields: [(&str, &str); 12] = [
        ("kind", "visit"),
        ("id", "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
        ("org", "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c"),
        ("owner", "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5d"),
        ("account_id", "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5e"),
        ("visit_type", "sales"),
        ("status", "planned"),
        ("planned_start", "2026-01-05T09:00:00Z"),
        ("planned_end", "2026-01-05T10:00:00Z"),
        ("instructions", "Check the promo display"),
        ("notes", ""),
        ("outcome", ""),
    ];
    let n = sized(2_000);
    let mut create = Vec::with_capacity(n);
    let mut saved = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let mut doc = AutoCommit::new();
        for (k, v) in fields {
            doc.put(ROOT, k, v).expect("put");
        }
        doc.commit();
        create.push(t.elapsed());
        saved = doc.save();
    }
    create.sort();
    let mut load = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let doc = AutoCommit::load(&saved).expect("load");
        load.push(t.elapsed());
        assert!(doc.get(ROOT, "kind").expect("get").is_some());
    }
    load.sort();
    let mut doc = AutoCommit::load(&saved).expect("load");
    let mut edits = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        doc.put(ROOT, "notes", format!("note {i}")).expect("put");
        doc.commit();
        let bytes = doc.save_incremental();
        edits.push(t.elapsed());
        assert!(!bytes.is_empty());
    }
    edits.sort();
    (
        pct(&create, 0.5),
        saved.len(),
        pct(&load, 0.5),
        pct(&edits, 0.5),
        pct(&edits, 0.99),
    )
}

fn main() {
    let w = World {
        org: OrgId::new(),
        team: TeamId::new(),
        territory: TerritoryId::new(),
        rep: Actor::on_device(UserId::new(), Role::Rep, DeviceId::new()),
    };
    if sized(50) == 1 {
        println!(
            "Fieldsync device store benchmark: TINY RUN (a fiftieth of each size; no figure)\n"
        );
    } else {
        println!("Fieldsync device store benchmark (release build)\n");
    }

    let (am_create, am_size, am_load, am_edit_p50, am_edit_p99) = automerge_baseline();
    println!("Automerge 0.12 alone, 12-field visit document:");
    println!("  create + commit          p50 {}", us(am_create));
    println!("  save size                {am_size} bytes");
    println!("  load                     p50 {}", us(am_load));
    println!(
        "  one-field edit + commit + save_incremental   p50 {}   p99 {}\n",
        us(am_edit_p50),
        us(am_edit_p99)
    );

    let dir = tempfile::tempdir().expect("tempdir");

    // 1. Create 10,000 visits.
    let path = dir.path().join("create.db");
    let store = DeviceStore::open(&path, StoreOptions::default()).expect("open");
    let n = sized(10_000);
    let t = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n as i64 {
        ids.push(
            store
                .create_stateful(&w.visit(i), &w.rep, DeviceTime::utc(0))
                .expect("create"),
        );
    }
    let elapsed = t.elapsed();
    store.checkpoint().expect("checkpoint");
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!("Create 10,000 visits (one transaction each):");
    println!(
        "  {:.0} records/s ({:.1} µs each, {:.1}x Automerge create alone)",
        n as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / n as f64,
        elapsed.as_secs_f64() / n as f64 / am_create.as_secs_f64()
    );
    println!(
        "  {:.0} bytes on disk per visit (file after checkpoint / 10,000; floor 2,048)\n",
        bytes as f64 / n as f64
    );

    // 1b. What a push reads from the store: batches of 500 records (the
    // push batch) with their pending changes, from the outbox rows, and the
    // same rows as a store before schema v9 kept them (hash only: each change
    // rebuilt from its record's document).
    let batch_read = |store: &DeviceStore| {
        let rounds = sized(20).max(1);
        let t = Instant::now();
        let mut records = 0;
        for _ in 0..rounds {
            records += store.outbox_batch(500).expect("outbox").len();
        }
        t.elapsed().as_secs_f64() * 1e6 / records.max(1) as f64
    };
    let from_rows = batch_read(&store);
    let old = rusqlite::Connection::open(&path).expect("open");
    old.execute("UPDATE outbox SET bytes = NULL", [])
        .expect("rows as before v9");
    let rebuilt = batch_read(&store);
    println!("A push's read of the outbox (batches of 500 new visits, one change each):");
    println!(
        "  {from_rows:.1} µs per record from the outbox rows; {rebuilt:.1} µs rebuilt from the \
         documents as before schema v9 ({:.1}x)\n",
        rebuilt / from_rows.max(1e-9)
    );
    drop(old);

    // 2. Local edit of one field, persisted.
    let mut lat = Vec::with_capacity(sized(4_000));
    for i in 0..sized(4_000) {
        let id = ids[i % 100];
        let t = Instant::now();
        store
            .update::<Visit>(id, DeviceTime::utc(i as i64), |v| {
                v.instructions = Some(format!("edit {i}"))
            })
            .expect("edit");
        lat.push(t.elapsed());
    }
    lat.sort();
    println!("Local edit of one field, persisted (4,000 edits over 100 cached records):");
    println!(
        "  p50 {}   p99 {}   max {}   (floor p99 5,000 µs; p50 {:.1}x Automerge alone)",
        us(pct(&lat, 0.5)),
        us(pct(&lat, 0.99)),
        us(pct(&lat, 1.0)),
        pct(&lat, 0.5).as_secs_f64() / am_edit_p50.as_secs_f64()
    );
    let cold = DeviceStore::open(
        &path,
        StoreOptions {
            cache_size: 0,
            ..StoreOptions::default()
        },
    )
    .expect("open");
    let mut lat = Vec::with_capacity(sized(2_000));
    // The same 100 records as above, with their histories and appended rows, so
    // the only difference is the cache.
    for i in 0..sized(2_000) {
        let id = ids[i % 100];
        let t = Instant::now();
        cold.update::<Visit>(id, DeviceTime::utc(i as i64), |v| {
            v.instructions = Some(format!("cold {i}"))
        })
        .expect("edit");
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "  same records without the document cache (load from SQLite each time): p50 {}   p99 {}\n",
        us(pct(&lat, 0.5)),
        us(pct(&lat, 0.99))
    );
    drop(cold);
    drop(store);

    // 3. Open a store of 20,000 records and list today's visits.
    let path = dir.path().join("open.db");
    {
        let store = DeviceStore::open(&path, StoreOptions::default()).expect("open");
        for i in 0..sized(20_000) as i64 {
            store
                .create_stateful(&w.visit(i), &w.rep, DeviceTime::utc(0))
                .expect("create");
        }
        store.checkpoint().expect("checkpoint");
    }
    let t = Instant::now();
    let store = DeviceStore::open(&path, StoreOptions::default()).expect("open");
    let today = store.visits_between(TODAY, TODAY + DAY).expect("list");
    let open_list = t.elapsed();
    let t = Instant::now();
    let visits: Vec<Visit> = today
        .iter()
        .map(|p| store.read_stateful(p.id).expect("read"))
        .collect();
    let read_all = t.elapsed();
    println!(
        "Open a store of 20,000 visits and list today's ({} visits):",
        today.len()
    );
    println!(
        "  open + list {:.2} ms (floor 1,000 ms); reading those visits' documents {:.2} ms\n",
        open_list.as_secs_f64() * 1e3,
        read_all.as_secs_f64() * 1e3
    );
    assert!(visits.iter().all(|v| {
        v.planned_start
            .is_some_and(|s| s.at_ms >= TODAY && s.at_ms < TODAY + DAY)
    }));

    // 4. The small-commit write path (automerge issue 1387): one commit per edit.
    let mut doc = AutoCommit::new();
    doc.put(ROOT, "kind", "visit").expect("put");
    doc.commit();
    let t = Instant::now();
    for i in 0..sized(1_000) {
        doc.put(ROOT, "notes", format!("note {i}")).expect("put");
        doc.commit();
    }
    let commits = t.elapsed();
    let mut incremental = Vec::new();
    let mut first = AutoCommit::new();
    first.put(ROOT, "kind", "visit").expect("put");
    first.commit();
    let base = first.save();
    for i in 0..sized(1_000) {
        first.put(ROOT, "notes", format!("note {i}")).expect("put");
        first.commit();
        incremental.push(first.save_incremental());
    }
    let load_chunks = median_of(11, || {
        let mut loaded = AutoCommit::load(&base).expect("load");
        for chunk in &incremental {
            loaded.load_incremental(chunk).expect("load");
        }
    });
    let compact = doc.save();
    let load_compact = median_of(11, || {
        AutoCommit::load(&compact).expect("load");
    });
    // The most appended rows a record can have before the store compacts it.
    let worst = StoreOptions::default().compact_after as usize - 1;
    let load_worst = median_of(11, || {
        let mut loaded = AutoCommit::load(&base).expect("load");
        for chunk in &incremental[..worst] {
            loaded.load_incremental(chunk).expect("load");
        }
    });
    println!("Small commits (automerge issue 1387): 1,000 one-field commits on one document");
    println!(
        "  1,000 commits {:.2} ms ({:.1} µs each)",
        commits.as_secs_f64() * 1e3,
        commits.as_secs_f64() * 1e6 / 1_000.0
    );
    println!(
        "  load snapshot + 1,000 appended changes {:.2} ms; load compacted save ({} bytes) {:.2} ms",
        load_chunks.as_secs_f64() * 1e3,
        compact.len(),
        load_compact.as_secs_f64() * 1e3
    );
    println!(
        "  load snapshot + {worst} appended changes (the store's worst case before compaction) {:.3} ms\n",
        load_worst.as_secs_f64() * 1e3
    );

    account_search(&w, dir.path());
    compaction_sweep(&w, dir.path());
}

/// Search of 20,000 accounts by a name prefix, as a field app's search box
/// asks it (20 results a query): the index range scan alone, and with the
/// results' documents read (what the bindings' `search_accounts` returns).
fn account_search(w: &World, dir: &std::path::Path) {
    use fieldsync_core::model::{Account, Location};
    const FIRST: &[&str] = &[
        "Café",
        "Mercearia",
        "Padaria",
        "Farmácia",
        "Quiosque",
        "Talho",
        "Drogaria",
        "Pastelaria",
        "Restaurante",
        "Supermercado",
        "Tabacaria",
        "Papelaria",
        "Frutaria",
        "Garrafeira",
    ];
    const SECOND: &[&str] = &[
        "Central",
        "do Bairro",
        "São João",
        "Avenida",
        "da Praça",
        "Estrela",
        "Lusitânia",
        "Atlântico",
        "Boavista",
        "Graça",
        "Alfama",
        "Belém",
        "Oriente",
        "Campo",
    ];
    let path = dir.join("accounts.db");
    let store = DeviceStore::open(&path, StoreOptions::default()).expect("open");
    let n = sized(20_000);
    let mut names = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!(
            "{} {} {}",
            FIRST[i % FIRST.len()],
            SECOND[(i / FIRST.len()) % SECOND.len()],
            i
        );
        let a = Account {
            meta: RecordMeta {
                id: RecordId::new(),
                org: w.org,
                owner: w.rep.user,
                team: w.team,
                territory: w.territory,
            },
            name: name.clone(),
            account_type: "outlet".into(),
            account_status: "active".into(),
            code: None,
            price_list_id: None,
            visit_frequency_days: Some(14),
            locations: [(
                RecordId::new(),
                Location {
                    name: "Main site".into(),
                    address: format!("Rua {} {}, Lisboa", SECOND[i % SECOND.len()], i % 200),
                    coords: None,
                    geofence_radius_m: 150.0,
                    opening_hours: None,
                },
            )]
            .into_iter()
            .collect(),
        };
        store.create(&a, DeviceTime::utc(0)).expect("create");
        names.push(name);
    }
    store.checkpoint().expect("checkpoint");
    // Prefixes people type: the first 2 to 8 characters of a real name, in
    // lower case and without accents half of the time.
    let queries: Vec<String> = (0..sized(4_000))
        .map(|i| {
            let name = &names[(i * 7_919) % names.len()];
            let cut: String = name.chars().take(2 + i % 7).collect();
            if i % 2 == 0 {
                fieldsync_core::store::fold_for_search(&cut)
            } else {
                cut
            }
        })
        .collect();
    let mut index = Vec::with_capacity(queries.len());
    let mut found = 0usize;
    for q in &queries {
        let t = Instant::now();
        let hits = store.search_accounts(q, 20).expect("search");
        index.push(t.elapsed());
        found += hits.len();
    }
    index.sort();
    let mut with_docs = Vec::with_capacity(queries.len() / 4);
    for q in queries.iter().step_by(4) {
        let t = Instant::now();
        let hits = store.search_accounts(q, 20).expect("search");
        let read: Vec<Account> = hits
            .iter()
            .map(|p| store.read(p.id).expect("read"))
            .collect();
        with_docs.push(t.elapsed());
        assert!(read.iter().all(|a| !a.name.is_empty()));
    }
    with_docs.sort();
    println!(
        "Search 20,000 accounts by a name prefix (20 results; {} queries, {:.1} hits each):",
        queries.len(),
        found as f64 / queries.len() as f64
    );
    println!(
        "  index only       p50 {}   p99 {}   max {}   (target p99 10,000 µs)",
        us(pct(&index, 0.5)),
        us(pct(&index, 0.99)),
        us(pct(&index, 1.0))
    );
    println!(
        "  with documents   p50 {}   p99 {}   (the 20 accounts read, as search_accounts returns them)\n",
        us(pct(&with_docs, 0.5)),
        us(pct(&with_docs, 0.99))
    );
    assert!(
        sized(50) == 1 || pct(&index, 0.99) < Duration::from_millis(10),
        "account search is over 10 ms at p99"
    );
}

/// Edit latency for several compaction thresholds, with the document cache on
/// (an edit pays for the compacting `save()` every `compact_after` actions) and
/// off (every edit also reloads the snapshot plus up to `compact_after - 1`
/// appended rows). The default threshold is picked from this table.
fn compaction_sweep(w: &World, dir: &std::path::Path) {
    const RECORDS: usize = 20;
    let edits = sized(2_000);
    println!(
        "Compaction threshold sweep ({edits} edits over {RECORDS} records, {} each):",
        edits / RECORDS
    );
    println!("  compact_after | cached p50 / p99       | uncached p50 / p99");
    for threshold in [8u32, 16, 32, 64, 128] {
        let mut cells = Vec::new();
        for cache_size in [256usize, 0] {
            let path = dir.join(format!("sweep-{threshold}-{cache_size}.db"));
            let store = DeviceStore::open(
                &path,
                StoreOptions {
                    compact_after: threshold,
                    cache_size,
                    ..StoreOptions::default()
                },
            )
            .expect("open");
            let ids: Vec<RecordId> = (0..RECORDS as i64)
                .map(|i| {
                    store
                        .create_stateful(&w.visit(i), &w.rep, DeviceTime::utc(0))
                        .expect("create")
                })
                .collect();
            let mut lat = Vec::with_capacity(edits);
            for i in 0..edits {
                let t = Instant::now();
                store
                    .update::<Visit>(ids[i % RECORDS], DeviceTime::utc(i as i64), |v| {
                        v.instructions = Some(format!("edit {i}"))
                    })
                    .expect("edit");
                lat.push(t.elapsed());
            }
            lat.sort();
            cells.push(format!(
                "{:>8} / {:>9}",
                us(pct(&lat, 0.5)),
                us(pct(&lat, 0.99))
            ));
        }
        println!("  {threshold:>13} | {} | {}", cells[0], cells[1]);
    }
}
