//! Live channel figures, with the server as a real `fieldsync serve` process on
//! loopback:
//!
//! 1. edit-to-notification latency, p50 and p99, with 500 devices listening on
//!    `/v1/live` (all of one rep, so every edit of the rep's visit concerns all
//!    of them) and the 2,000 idle connections of item 3 open beside them
//!    (2,500 connected): the manager pushes an edit, each listening connection
//!    timestamps its `changed` event;
//! 2. edit-to-synced latency of one real device running live sync among them
//!    (notification, then its pull);
//! 3. server memory per idle live connection, from its resident memory before
//!    and after opening 2,000 more (floor: 12 KB each), another rep's devices
//!    that the edits do not concern; they stay open while item 1 runs.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p fieldsync-server --bench
//! live`). `FIELDSYNC_BENCH_LIVE` changes the 500, `FIELDSYNC_BENCH_IDLE` the
//! 2,000; `FIELDSYNC_BENCH_BACKENDS` picks the databases as for the sync bench.
//! `FIELDSYNC_BENCH_TINY=1` (what `cargo xtask test` sets) runs it with 4 live
//! and 8 idle connections: proof that it still runs, not a measurement.
//! Device rows are registered directly and their tokens minted with the test
//! key, so the figures measure the channel, not 2,500 password hashes.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fieldsync_core::model::{Account, Visit};
use fieldsync_core::sync::{LiveEvent, LiveListener, LiveOptions, NoProgress};
use fieldsync_core::{DeviceId, RecordId};
use fieldsync_server::service::accounts::{self, DeviceInfo};
use fieldsync_server::{AuthKeys, Settings};
use fieldsync_test_support::{Backend, SECRET, World, bench_size, today};

const ROUNDS: usize = 20;

fn main() {
    let live: usize = env_or("FIELDSYNC_BENCH_LIVE", bench_size(500, 4));
    let idle: usize = env_or("FIELDSYNC_BENCH_IDLE", bench_size(2_000, 8));
    let backends =
        std::env::var("FIELDSYNC_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let mut rows = Vec::new();
    for name in backends.split(',').map(str::trim) {
        let (backend, name) = match name {
            "sqlite" => (Backend::Sqlite, "sqlite"),
            "postgres" => (Backend::Postgres, "postgres"),
            other => panic!("unknown backend {other:?}: use sqlite or postgres"),
        };
        rows.extend(run(backend, name, live, idle));
    }
    println!();
    println!("| backend | figure | value | floor |");
    println!("|---|---|---|---|");
    for (backend, figure, value, floor) in rows {
        println!("| {backend} | {figure} | {value} | {floor} |");
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

type Row = (&'static str, String, String, &'static str);

/// Access tokens for `n` new devices of `user`, registered directly.
fn tokens(w: &World, user: &str, n: usize) -> Vec<String> {
    let settings = Settings {
        jwt_secret: Some(fieldsync_server::settings::Secret::new(SECRET)),
        ..Settings::default()
    };
    let person = w.person(user);
    w.rt.block_on(async {
        let keys = AuthKeys::load(&settings, &w.db).await.expect("keys");
        let row = accounts::user_by_id(&w.db, person.id)
            .await
            .expect("user")
            .expect("seeded");
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let device = accounts::register_device(
                &w.db,
                &row,
                &DeviceInfo {
                    id: DeviceId::new(),
                    platform: "bench".into(),
                    app_version: "1.0.0".into(),
                },
                // Hundreds of devices of one user: no daily cap here.
                0,
            )
            .await
            .expect("device");
            out.push(keys.access_token(&row, device.id).expect("token"));
        }
        out
    })
}

/// Opens `/v1/live` with `token`; returns the socket once the `hello` arrived.
fn connect(base: &str, token: &str) -> BufReader<TcpStream> {
    let addr = base.trim_start_matches("http://");
    let mut socket = TcpStream::connect(addr).expect("connect");
    write!(
        socket,
        "GET /v1/live HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Accept: text/event-stream\r\n\r\n"
    )
    .expect("request");
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut reader = BufReader::new(socket);
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).expect("read");
        assert!(n > 0, "the live stream closed before its hello");
        if line.starts_with("HTTP/1.1") {
            assert!(line.contains(" 200 "), "live answered {line}");
        }
        if line.starts_with("event: hello") {
            return reader;
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Events(Mutex<std::sync::mpsc::Sender<LiveEvent>>);

impl LiveListener for Events {
    fn on_live(&self, event: LiveEvent) {
        if let Ok(tx) = self.0.lock() {
            let _ = tx.send(event);
        }
    }
}

fn run(backend: Backend, name: &'static str, live: usize, idle: usize) -> Vec<Row> {
    eprintln!("live bench on {name}: {live} live connections, {idle} idle ones");
    // Hundreds of streams of one user: the per-user and per-device caps off.
    let w = World::start_process_with(backend, |args| {
        args.live_streams_per_user = Some(0);
        args.live_streams_per_device = Some(0);
    });
    let mona = w.device("mona");
    // The visit every edit touches: ana's, planned by the manager.
    let account = Account {
        meta: w.meta("ana"),
        name: "Bench outlet".into(),
        account_type: "outlet".into(),
        account_status: "active".into(),
        code: None,
        price_list_id: None,
        visit_frequency_days: None,
        locations: Default::default(),
    };
    let account_id = mona.store().create(&account, today(8)).expect("account");
    let visit: RecordId = mona
        .store()
        .create_stateful(
            &Visit::planned(w.meta("ana"), account_id, today(10), today(11)),
            &mona.actor,
            today(8),
        )
        .expect("visit");
    mona.sync();

    // One real phone with live sync, for the full edit-to-synced figure.
    let phone = Arc::new(w.device("ana").client);
    phone.sync(&NoProgress).expect("prime");
    let (tx, rx) = channel();
    let handle = phone.start_live(Arc::new(Events(Mutex::new(tx))), LiveOptions::default());
    loop {
        if let Ok(LiveEvent::Synced(_)) = rx.recv_timeout(Duration::from_secs(30)) {
            break;
        }
    }

    // Notification listeners: one thread per connection, timestamping `changed`.
    let stamps: Arc<Mutex<Vec<(usize, Instant)>>> = Arc::default();
    let round = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    for token in tokens(&w, "ana", live) {
        let mut reader = connect(&w.base, &token);
        let stamps = stamps.clone();
        let round = round.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if line.starts_with("event: changed") {
                            let r = round.load(std::sync::atomic::Ordering::SeqCst);
                            if let Ok(mut s) = stamps.lock() {
                                s.push((r, Instant::now()));
                            }
                        }
                    }
                }
            }
        });
    }
    eprintln!("  {live} connections open in {:?}", started.elapsed());

    // Memory per idle connection: another user's devices, which the edits
    // below do not concern, opened before them and kept open while they run,
    // so the latencies are measured with live + idle connections open.
    std::thread::sleep(Duration::from_millis(500));
    let before = w.server_rss_kib().unwrap_or(0);
    let idle_tokens = tokens(&w, "ben", idle);
    let mut idle_sockets = Vec::with_capacity(idle);
    for token in &idle_tokens {
        idle_sockets.push(connect(&w.base, token));
    }
    std::thread::sleep(Duration::from_secs(1));
    let after = w.server_rss_kib().unwrap_or(0);
    let per_conn = (after.saturating_sub(before) as f64) * 1024.0 / idle as f64;
    let connected = live + idle;

    let mut notify = Vec::new();
    let mut synced = Vec::new();
    for r in 1..=ROUNDS {
        round.store(r, std::sync::atomic::Ordering::SeqCst);
        while rx.try_recv().is_ok() {}
        mona.store()
            .update::<Visit>(visit, today(9), |v| v.notes = format!("round {r}"))
            .expect("edit");
        let t0 = Instant::now();
        mona.sync();
        // The phone's sync that pulls this edit.
        let deadline = t0 + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(LiveEvent::Synced(report)) = rx.recv_timeout(Duration::from_secs(1))
                && report.pulled > 0
            {
                synced.push(t0.elapsed());
                break;
            }
        }
        // Every listener's stamp for this round.
        let deadline = t0 + Duration::from_secs(30);
        loop {
            let got: Vec<Instant> = stamps
                .lock()
                .map(|s| {
                    s.iter()
                        .filter(|(x, _)| *x == r)
                        .map(|(_, at)| *at)
                        .collect()
                })
                .unwrap_or_default();
            if got.len() >= live || Instant::now() > deadline {
                notify.extend(got.iter().map(|at| at.saturating_duration_since(t0)));
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    handle.stop();
    notify.sort();
    synced.sort();
    let expected = live * ROUNDS;

    drop(idle_sockets);

    vec![
        (
            name,
            format!("edit to notification, {live} notified of {connected} connected, p50"),
            format!("{:.1} ms", percentile(&notify, 0.5).as_secs_f64() * 1e3),
            "about a second",
        ),
        (
            name,
            format!("edit to notification, {live} notified of {connected} connected, p99"),
            format!(
                "{:.1} ms ({} of {expected} delivered)",
                percentile(&notify, 0.99).as_secs_f64() * 1e3,
                notify.len()
            ),
            "≤ 50 ms",
        ),
        (
            name,
            "edit to synced on a live device (notify + pull), p50 / p99".into(),
            format!(
                "{:.1} / {:.1} ms over {} rounds",
                percentile(&synced, 0.5).as_secs_f64() * 1e3,
                percentile(&synced, 0.99).as_secs_f64() * 1e3,
                synced.len()
            ),
            "about a second",
        ),
        (
            name,
            format!("server memory per idle connection ({idle} opened)"),
            format!(
                "{:.1} KB ({} → {} MiB resident)",
                per_conn / 1000.0,
                before / 1024,
                after / 1024
            ),
            "≤ 12 KB",
        ),
    ]
}
