//! End-to-end sync figures on both databases, with the server as a real
//! `fieldsync serve` process on loopback and real device stores:
//!
//! 0. seeding the records through the push path, in pushes of 500 records
//!    with two in flight (records per second, the pushes alone);
//! 1. prime a fresh device holding 20,000 records in scope (wall time);
//! 2. one edited field among 20,000 held records: round trips and bytes for the
//!    device that edits and for another device that receives it;
//! 3. a day offline: 200 local and 500 remote changes among 20,000 records;
//! 4. 100 devices each pushing 50 edits at once, in five rounds: changes
//!    merged and committed per second (the median round), the CPU each part
//!    of the machine spent per change, and the server's peak resident memory;
//! 5. the machine's speed before item 0 and after item 4 (`machine_gauge`:
//!    the same work whatever the server's code), to set the figures of runs
//!    at different hours against each other.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p fieldsync-server --bench
//! sync`). `FIELDSYNC_BENCH_RECORDS` changes the 20,000; `FIELDSYNC_BENCH_BACKENDS`
//! (`sqlite`, `postgres`, or both, comma-separated) picks the databases;
//! `FIELDSYNC_BENCH_ROUNDS` the rounds of item 4.
//! `FIELDSYNC_BENCH_TINY=1` (what `cargo xtask test` sets) runs it with 40
//! records and 3 devices: proof that it still runs, not a measurement.
//! Bytes are CBOR body bytes of the sync requests and answers (HTTP headers add
//! about 300 bytes per round trip).

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use fieldsync_core::RecordId;
use fieldsync_core::automerge::ActorId;
use fieldsync_core::model::{Account, Actor, DeviceTime, RecordDoc, Visit};
use fieldsync_core::protocol::{PushOutcome, PushRequest, RecordChanges};
use fieldsync_core::sync::{NoProgress, SyncOptions};
use fieldsync_server::Caller;
use fieldsync_server::service::{self, Context};
use fieldsync_test_support::{Backend, Device, VISIT_EDITS, World, bench_size, machine_gauge};
use futures_util::StreamExt;

/// The server's allocator (`main.rs`): the seeding runs the server's push
/// path in this process, and its figures are to be the server's. The
/// devices of items 1 to 4 allocate with it too; their CPU is counted apart
/// from the server's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let records: usize = std::env::var("FIELDSYNC_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| bench_size(20_000, 40));
    let backends =
        std::env::var("FIELDSYNC_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let mut rows = Vec::new();
    for name in backends.split(',').map(str::trim) {
        let (backend, name) = match name {
            "sqlite" => (Backend::Sqlite, "sqlite"),
            "postgres" => (Backend::Postgres, "postgres"),
            other => panic!("unknown backend {other:?}: use sqlite or postgres"),
        };
        rows.extend(run(backend, name, records));
    }
    println!();
    println!("| backend | figure | value | floor |");
    println!("|---|---|---|---|");
    for (backend, figure, value, floor) in rows {
        println!("| {backend} | {figure} | {value} | {floor} |");
    }
}

type Row = (&'static str, String, String, &'static str);

fn run(backend: Backend, name: &'static str, records: usize) -> Vec<Row> {
    eprintln!("== {name}: starting a server process and seeding {records} records for ana");
    // A hundred devices log in at once, three users among them: the per-login
    // limit (a defence against password guessing) is off for the bench.
    let w = World::start_process_with(backend, |args| args.logins_per_minute = Some(0));
    // The machine's speed before the seeding and after the crowd: the same
    // work whatever the code, to set this run's figures against another's.
    let gauge_before = machine_gauge();
    let started = Instant::now();
    let (visits, pushing) = seed(&w, records);
    let seeding = started.elapsed().as_secs_f64();
    eprintln!(
        "   seeded in {seeding:.1} s ({:.0} records/s through the push path; \
         {:.0} records/s counting the pushes alone)",
        records as f64 / seeding,
        records as f64 / pushing.max(1e-9)
    );
    let mut out = vec![(
        name,
        format!(
            "seeding {records} records through the push path (batches of 500, {} in flight)",
            seed_in_flight()
        ),
        format!(
            "{:.0} records/s with building them ({seeding:.1} s); {:.0} records/s in the pushes alone ({pushing:.1} s)",
            records as f64 / seeding,
            records as f64 / pushing.max(1e-9)
        ),
        "≥ 10,000/s",
    )];

    // 1. Prime.
    let phone = w.device("ana");
    let started = Instant::now();
    let report = phone.sync();
    let prime_s = started.elapsed().as_secs_f64();
    let (trips, bytes) = phone.net().counters();
    eprintln!(
        "   primed {} records in {prime_s:.2} s, {trips} requests, {:.1} MB",
        report.primed,
        bytes as f64 / 1e6
    );
    out.push((
        name,
        "prime a fresh device, records in scope".into(),
        format!("{}", report.primed),
        "",
    ));
    out.push((
        name,
        "prime: wall time end to end".into(),
        format!("{prime_s:.2} s"),
        "≤ 5 s",
    ));
    out.push((
        name,
        "prime: round trips / bytes".into(),
        format!("{trips} / {:.1} MB", bytes as f64 / 1e6),
        "",
    ));
    // 1b. The same priming as the network carries it: answer bodies as sent,
    // without and with gzip (what the device's transport asks for).
    let token = phone.access_token();
    let (plain, plain_s) = prime_on_the_wire(&w, &token, false);
    let (gzip, gzip_s) = prime_on_the_wire(&w, &token, true);
    out.push((
        name,
        "prime on the wire: identity / gzip (bytes, time)".into(),
        format!(
            "{:.2} MB in {plain_s:.2} s / {:.2} MB in {gzip_s:.2} s (gzip is {:.0} % of the bytes, {:.2}x the time)",
            plain as f64 / 1e6,
            gzip as f64 / 1e6,
            100.0 * gzip as f64 / plain.max(1) as f64,
            gzip_s / plain_s.max(1e-9)
        ),
        "≤ 6 MB for 20,000 records",
    ));
    let tablet = w.device("ana");
    tablet.sync();

    // 2. One edited field.
    phone.net().reset_counters();
    tablet.net().reset_counters();
    phone
        .store()
        .update::<Visit>(visits[records / 2], DeviceTime::utc(1), |v| {
            v.notes = "Owner asked for a call next week.".into()
        })
        .expect("edit");
    phone.sync();
    let (p_trips, p_bytes) = phone.net().counters();
    tablet.sync();
    let (t_trips, t_bytes) = tablet.net().counters();
    out.push((
        name,
        "one field: editing device (push + pull)".into(),
        format!("{p_trips} round trips, {p_bytes} B"),
        "1 + 1, ≤ 4 KB",
    ));
    out.push((
        name,
        "one field: receiving device (pull)".into(),
        format!("{t_trips} round trip, {t_bytes} B"),
        "1, ≤ 4 KB",
    ));

    // 3. A day offline.
    let (local, remote) = (200.min(records / 4), 500.min(records / 2));
    for (i, id) in visits.iter().take(local).enumerate() {
        phone
            .store()
            .update::<Visit>(*id, DeviceTime::utc(10 + i as i64), |v| {
                v.notes = format!("visited, shelf {i} restocked")
            })
            .expect("local edit");
    }
    for (i, id) in visits.iter().rev().take(remote).enumerate() {
        tablet
            .store()
            .update::<Visit>(*id, DeviceTime::utc(10 + i as i64), |v| {
                v.instructions = Some(format!("bring the new price list ({i})"))
            })
            .expect("remote edit");
    }
    tablet.sync();
    phone.net().reset_counters();
    let report = phone.sync();
    let (d_trips, d_bytes) = phone.net().counters();
    assert_eq!(
        (report.pushed, report.pulled),
        (local as u64, remote as u64),
        "{report:?}"
    );
    out.push((
        name,
        format!("day offline: {local} local + {remote} remote changes"),
        format!("{d_trips} round trips, {:.1} KB", d_bytes as f64 / 1e3),
        "≤ 3, ≤ 300 KB",
    ));
    drop(phone);
    drop(tablet);

    // 4. 100 devices × 50 edits, pushed at once, in rounds: one crowd takes
    // half a second, and a second on this machine moves by a quarter from
    // one run to the next, so the median of several says more than one.
    let devices = bench_size(100, 3);
    let rounds: usize = std::env::var("FIELDSYNC_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| bench_size(5, 1))
        .max(1);
    let measured = hundred_devices(&w, devices, rounds);
    let gauge_after = machine_gauge();
    let mut rates: Vec<f64> = measured.iter().map(|r| r.rate).collect();
    let each = rates
        .iter()
        .map(|r| format!("{r:.0}"))
        .collect::<Vec<_>>()
        .join(" / ");
    rates.sort_by(f64::total_cmp);
    let rate = rates[rates.len() / 2];
    let elapsed: f64 = measured.iter().map(|r| r.elapsed).sum();
    out.push((
        name,
        format!("{devices} devices × 50 edits: merged and committed (median of {rounds})"),
        format!("{rate:.0} changes/s (rounds: {each}; {elapsed:.2} s in all)"),
        if name == "postgres" {
            "≥ 20,000/s"
        } else {
            "≥ 15,000/s"
        },
    ));
    // The server's own CPU time over those pushes (the devices run in this
    // process and share the machine): what the push path costs per change,
    // whatever else the machine was doing.
    let total = |f: fn(&Round) -> Option<f64>| measured.iter().map(f).sum::<Option<f64>>();
    let (cpu, clients, database) = (
        total(|r| r.server),
        total(|r| r.devices),
        total(|r| r.database),
    );
    let changes = (devices * 50 * rounds) as f64;
    if let Some(cpu) = cpu {
        out.push((
            name,
            format!("{devices} devices × 50 edits: the server's CPU time"),
            format!(
                "{cpu:.2} s, {:.0} µs per change ({:.0} changes per server CPU-second)",
                cpu * 1e6 / changes,
                changes / cpu.max(1e-9)
            ),
            "",
        ));
    }
    // Where the machine's CPU went over those pushes: the server, the
    // devices (this process), PostgreSQL. Their sum per change bounds what
    // this machine can merge and commit with all its cores busy, whatever
    // the server does.
    if let (Some(server), Some(clients)) = (cpu, clients) {
        let total = server + clients + database.unwrap_or(0.0);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        out.push((
            name,
            format!("{devices} devices × 50 edits: the machine's CPU per change"),
            format!(
                "server {:.0} µs + devices {:.0} µs{} = {:.0} µs: {cores} cores bound this \
                 machine at {:.0} changes/s",
                server * 1e6 / changes,
                clients * 1e6 / changes,
                database
                    .map(|d| format!(" + PostgreSQL {:.0} µs", d * 1e6 / changes))
                    .unwrap_or_default(),
                total * 1e6 / changes,
                cores * changes / total.max(1e-9)
            ),
            "",
        ));
    }
    out.push((
        name,
        "the machine's speed, before the seeding / after the crowd: Automerge applying one \
         visit's five changes, median (`machine_gauge`)"
            .into(),
        format!("{gauge_before:.1} / {gauge_after:.1} µs"),
        "",
    ));
    // 4b. What the database itself takes for the same number of change-log
    // rows on the same machine, in the same run: the ceiling the push path
    // is measured against.
    let rows = devices * 50;
    let ceiling = raw_ceiling(&w, rows);
    out.push((
        name,
        format!("raw batched insert of {rows} change-log rows (1,000 per statement)"),
        format!(
            "{ceiling:.0} rows/s; the push path reaches {:.1} % of it",
            100.0 * rate / ceiling.max(1.0)
        ),
        "push path ≥ 15 %",
    ));
    let peak = w.server_peak_kib().unwrap_or(0);
    out.push((
        name,
        "server peak resident memory (whole run)".into(),
        format!("{:.0} MiB", peak as f64 / 1024.0),
        "",
    ));
    out
}

/// Inserts `rows` rows shaped like the change log's (two ids, a 32-byte hash,
/// a 500-byte change, user, device, time; the same unique and order indexes)
/// into a scratch table of the server's database, 1,000 rows per statement
/// and per transaction (`UNNEST` of arrays on PostgreSQL, multi-row `VALUES`
/// on SQLite): rows per second.
fn raw_ceiling(w: &World, rows: usize) -> f64 {
    use fieldsync_server::Database;
    const BATCH: usize = 1_000;
    let org = uuid::Uuid::now_v7();
    let row = |i: usize| {
        let mut hash = [0u8; 32];
        hash[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let change: Vec<u8> = (0..500).map(|b| (b * 7 + i) as u8).collect();
        (uuid::Uuid::now_v7(), hash.to_vec(), change)
    };
    w.rt.block_on(async {
        match &w.db {
            Database::Postgres(pool) => {
                sqlx::query(
                    "CREATE TABLE IF NOT EXISTS bench_ceiling (seq BIGSERIAL PRIMARY KEY, \
                     org_id UUID NOT NULL, record_id UUID NOT NULL, hash BYTEA NOT NULL, \
                     change BYTEA NOT NULL, user_id UUID, device_id UUID, \
                     committed_at BIGINT NOT NULL, UNIQUE (record_id, hash))",
                )
                .execute(pool)
                .await
                .expect("scratch table");
                sqlx::query(
                    "CREATE INDEX IF NOT EXISTS bench_ceiling_org_seq ON bench_ceiling (org_id, seq)",
                )
                .execute(pool)
                .await
                .expect("scratch index");
                let started = Instant::now();
                for chunk in (0..rows).collect::<Vec<_>>().chunks(BATCH) {
                    let made: Vec<_> = chunk.iter().map(|&i| row(i)).collect();
                    sqlx::query(
                        "INSERT INTO bench_ceiling (org_id, record_id, hash, change, user_id, \
                         device_id, committed_at) SELECT * FROM UNNEST($1::uuid[], $2::uuid[], \
                         $3::bytea[], $4::bytea[], $5::uuid[], $6::uuid[], $7::int8[])",
                    )
                    .bind(vec![org; made.len()])
                    .bind(made.iter().map(|r| r.0).collect::<Vec<_>>())
                    .bind(made.iter().map(|r| r.1.clone()).collect::<Vec<_>>())
                    .bind(made.iter().map(|r| r.2.clone()).collect::<Vec<_>>())
                    .bind(vec![org; made.len()])
                    .bind(vec![org; made.len()])
                    .bind(vec![0i64; made.len()])
                    .execute(pool)
                    .await
                    .expect("raw insert");
                }
                rows as f64 / started.elapsed().as_secs_f64()
            }
            Database::Sqlite(pool) => {
                sqlx::query(
                    "CREATE TABLE IF NOT EXISTS bench_ceiling (seq INTEGER PRIMARY KEY \
                     AUTOINCREMENT, org_id TEXT NOT NULL, record_id TEXT NOT NULL, \
                     hash BLOB NOT NULL, change BLOB NOT NULL, user_id TEXT, device_id TEXT, \
                     committed_at INTEGER NOT NULL, UNIQUE (record_id, hash))",
                )
                .execute(pool)
                .await
                .expect("scratch table");
                sqlx::query(
                    "CREATE INDEX IF NOT EXISTS bench_ceiling_org_seq ON bench_ceiling (org_id, seq)",
                )
                .execute(pool)
                .await
                .expect("scratch index");
                let started = Instant::now();
                for chunk in (0..rows).collect::<Vec<_>>().chunks(BATCH) {
                    let values: Vec<String> = (0..chunk.len())
                        .map(|r| {
                            let b = r * 3;
                            format!("($1, ${}, ${}, ${}, $1, $1, 0)", b + 2, b + 3, b + 4)
                        })
                        .collect();
                    let sql = format!(
                        "INSERT INTO bench_ceiling (org_id, record_id, hash, change, user_id, \
                         device_id, committed_at) VALUES {}",
                        values.join(", ")
                    );
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(org.to_string());
                    for &i in chunk {
                        let (id, hash, change) = row(i);
                        q = q.bind(id.to_string()).bind(hash).bind(change);
                    }
                    q.execute(pool).await.expect("raw insert");
                }
                rows as f64 / started.elapsed().as_secs_f64()
            }
        }
    })
}

/// Primes every record `token` reads, page by page, asking for gzip or not,
/// and reads the answers' bodies as they came (reqwest here decompresses
/// nothing): (body bytes, seconds).
fn prime_on_the_wire(w: &World, token: &str, gzip: bool) -> (usize, f64) {
    use fieldsync_core::protocol::{
        self, CONTENT_TYPE, PROTOCOL_HEADER, PROTOCOL_VERSION, PrimeRequest, PrimeResponse,
    };
    use std::io::Read as _;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut request = PrimeRequest {
        after: None,
        cursor: None,
        max_records: 5_000,
    };
    let mut total = 0;
    loop {
        let (encoding, body) = w.rt.block_on(async {
            let mut call = client
                .post(format!("{}/v1/sync/prime", w.base))
                .header("content-type", CONTENT_TYPE)
                .header("accept", CONTENT_TYPE)
                .header("authorization", format!("Bearer {token}"))
                .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string())
                .body(protocol::encode(&request));
            if gzip {
                call = call.header("accept-encoding", "gzip");
            }
            let resp = call.send().await.expect("prime answered");
            assert!(resp.status().is_success(), "prime: {}", resp.status());
            let encoding = resp
                .headers()
                .get("content-encoding")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            (encoding, resp.bytes().await.expect("prime body"))
        });
        total += body.len();
        let page: PrimeResponse = match encoding.as_deref() {
            Some("gzip") => {
                let mut plain = Vec::new();
                flate2::read::GzDecoder::new(&body[..])
                    .read_to_end(&mut plain)
                    .expect("gunzip");
                protocol::decode(&plain)
            }
            None => protocol::decode(&body),
            Some(other) => panic!("unexpected content-encoding {other}"),
        }
        .expect("a prime page");
        assert_eq!(gzip, encoding.is_some(), "gzip exactly when asked for");
        request.cursor = Some(page.cursor);
        request.after = page.next;
        if request.after.is_none() {
            return (total, started.elapsed().as_secs_f64());
        }
    }
}

const DAY_MS: i64 = 86_400_000;

/// Dated records must fall inside the rep's download window to be synced.
fn start_of_yesterday() -> i64 {
    let now = DeviceTime::now_utc().at_ms;
    now - now.rem_euclid(DAY_MS) - DAY_MS
}

/// Stores `n` records owned by ana directly through the server's push path:
/// one account per 20 visits, in pushes of 500. The records are built first
/// (as a device or an import would have them), then pushed with
/// [`seed_in_flight`] pushes in flight, as a bulk loader keeps its
/// connection busy: one push merges on the cores while the one before it
/// writes. Returns the visit ids and the seconds spent in the pushes alone.
fn seed(w: &World, n: usize) -> (Vec<RecordId>, f64) {
    let ana = w.person("ana");
    let actor = Actor::without_device(ana.id, ana.role);
    let caller = Caller {
        actor: actor.clone(),
        org: w.org,
        team: Some(ana.team),
        territory: Some(w.territory),
        display_name: "Ana".into(),
        actor_id: ActorId::random(),
        window: None,
    };
    let ctx =
        w.rt.block_on(Context::open(&w.settings, w.db.clone()))
            .expect("a node's context");
    let yesterday = start_of_yesterday();
    let building = Instant::now();
    let mut visits = Vec::with_capacity(n);
    let mut pushes: Vec<PushRequest> = Vec::new();
    let mut batch: Vec<RecordChanges> = Vec::new();
    let mut account = RecordId::new();
    for i in 0..n {
        let mut doc = if i % 20 == 0 {
            let a = Account {
                meta: w.meta("ana"),
                name: format!("Outlet {i}"),
                account_type: "outlet".into(),
                account_status: "active".into(),
                code: None,
                price_list_id: None,
                visit_frequency_days: Some(14),
                locations: Default::default(),
            };
            account = a.meta.id;
            RecordDoc::create(&a, caller.actor_id.clone(), DeviceTime::utc(0))
        } else {
            let v = Visit::planned(
                w.meta("ana"),
                account,
                // 30 s apart from the start of yesterday: 20,000 visits span
                // seven days, inside a rep's download window.
                DeviceTime::utc(yesterday + i as i64 * 30_000),
                DeviceTime::utc(yesterday + i as i64 * 30_000 + 1_800_000),
            );
            visits.push(v.meta.id);
            RecordDoc::create_stateful(&v, caller.actor_id.clone(), &actor, DeviceTime::utc(0))
        }
        .expect("record");
        batch.push(RecordChanges::of_doc(&mut doc, &[]));
        if batch.len() == 500 || i + 1 == n {
            pushes.push(PushRequest {
                batch: uuid::Uuid::now_v7(),
                records: std::mem::take(&mut batch),
                health: None,
                epochs: Vec::new(),
            });
        }
    }
    eprintln!(
        "   built {n} records in {:.1} s; pushing them",
        building.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let answers: Vec<_> = w.rt.block_on(
        futures_util::stream::iter(&pushes)
            .map(|req| service::sync::push(&ctx, &caller, req))
            .buffered(seed_in_flight())
            .collect(),
    );
    let pushing = started.elapsed().as_secs_f64();
    for resp in answers {
        let resp = resp.expect("seed push");
        assert!(
            resp.results
                .iter()
                .all(|r| matches!(r.outcome, PushOutcome::Accepted { .. }))
        );
    }
    (visits, pushing)
}

/// Pushes the seeding keeps in flight: `FIELDSYNC_BENCH_SEED_IN_FLIGHT`, else 2.
fn seed_in_flight() -> usize {
    std::env::var("FIELDSYNC_BENCH_SEED_IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(2)
}

/// `count` devices (100; spread over three reps) each make 50 changes
/// offline, then push at the same moment, `rounds` times over (the same
/// devices, new visits each round): each round's figures.
fn hundred_devices(w: &World, count: usize, rounds: usize) -> Vec<Round> {
    const RECORDS: usize = 10;
    const EDITS: usize = VISIT_EDITS; // + 1 creation = 5 changes per record, 50 per device
    let reps = ["ben", "carla", "sara"];
    let devices: Vec<Device> = (0..count)
        .map(|i| {
            w.device_with(
                reps[i % reps.len()],
                SyncOptions {
                    base_backoff: Duration::from_millis(20),
                    ..SyncOptions::default()
                },
            )
        })
        .collect();
    // The rep's own account, stored before the timed pushes (a visit may
    // only name an account its writer reads).
    let accounts: Vec<RecordId> = devices
        .iter()
        .map(|d| {
            let account = w.account_on(d, "Outlet");
            let stored = d.client.push_pending(&NoProgress).expect("the account");
            assert_eq!(stored.rejected, 0);
            account
        })
        .collect();
    let yesterday = start_of_yesterday();
    let mut out = Vec::with_capacity(rounds);
    for round in 0..rounds {
        for (d, account) in devices.iter().zip(&accounts) {
            for r in 0..RECORDS {
                let start = yesterday + DAY_MS + ((round * RECORDS + r) as i64) * 60_000;
                let v = Visit::planned(
                    w.meta(d.person.name()),
                    *account,
                    DeviceTime::utc(start),
                    DeviceTime::utc(start + 1),
                );
                let id = d
                    .store()
                    .create_stateful(&v, &d.actor, DeviceTime::utc(0))
                    .expect("create");
                for e in 0..EDITS {
                    d.store()
                        .update::<Visit>(id, DeviceTime::utc(e as i64 + 1), |v| {
                            v.notes = format!("edit {e}")
                        })
                        .expect("edit");
                }
            }
            assert_eq!(
                d.store().pending_changes().expect("pending"),
                (RECORDS * (EDITS + 1)) as u64
            );
        }
        // Three meeting points: all start together; all have pushed (the
        // clock and the CPU counters are read there); all may end. A
        // thread's end (its allocator returning memory to the system, a
        // flush of every core's page tables) is the bench's own cost, not a
        // device's push: it happens after the counters are read.
        let (start, pushed, end) = (
            Arc::new(Barrier::new(count + 1)),
            Arc::new(Barrier::new(count + 1)),
            Arc::new(Barrier::new(count + 1)),
        );
        // Logins and set-up above cost the server CPU too (a password hash per
        // device): its clock is read from here. PostgreSQL's counters are read
        // before this process's own, so that walking its processes is not
        // counted as the devices' work.
        let cpu_before = w.server_cpu_secs();
        let db_before = w.database_cpu_secs();
        let devices_before = w.own_cpu_secs();
        eprintln!(
            "   round {} of {rounds}: {count} devices hold 50 changes each; pushing them at once",
            round + 1
        );
        let (elapsed, server_after, devices_after, db_after) = std::thread::scope(|s| {
            for d in &devices {
                let (start, pushed, end) = (start.clone(), pushed.clone(), end.clone());
                s.spawn(move || {
                    start.wait();
                    let report = d.client.push_pending(&NoProgress);
                    // Checked once every thread has met the others: a
                    // failed push that panicked before the barriers would
                    // leave the rest waiting for it for ever.
                    pushed.wait();
                    end.wait();
                    let report = report.expect("concurrent push");
                    assert_eq!(report.pushed, RECORDS as u64);
                });
            }
            start.wait();
            let started = Instant::now();
            pushed.wait();
            let elapsed = started.elapsed().as_secs_f64();
            let server = w.server_cpu_secs();
            let own = w.own_cpu_secs();
            let counters = (elapsed, server, own, w.database_cpu_secs());
            end.wait();
            counters
        });
        eprintln!("   {count} devices pushed in {elapsed:.2} s");
        let since = |after: Option<f64>, before: Option<f64>| after.zip(before).map(|(a, b)| a - b);
        let changes = (count * RECORDS * (EDITS + 1)) as f64;
        out.push(Round {
            rate: changes / elapsed,
            elapsed,
            server: since(server_after, cpu_before),
            devices: since(devices_after, devices_before),
            database: since(db_after, db_before),
        });
        for d in &devices {
            assert_eq!(d.store().pending_changes().expect("pending"), 0);
        }
    }
    out
}

/// One round of the 100 devices' pushes: the rate, its wall time, and the CPU
/// seconds the server, the devices (this process) and PostgreSQL (`None` on
/// SQLite, which runs inside the server) spent over it.
struct Round {
    rate: f64,
    elapsed: f64,
    server: Option<f64>,
    devices: Option<f64>,
    database: Option<f64>,
}
