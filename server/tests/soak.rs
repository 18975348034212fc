//! Faults over time, end to end against the real server:
//!
//! - **The app killed during a sync**: the device is a separate process (this
//!   test binary again, see [`sync_child`]) priming and then pulling page by
//!   page from the server; it is SIGKILLed after a page, or a moment later
//!   (mid-request, mid-write), again and again. After each kill the store is
//!   reopened from its file, and each resumed run downloads only what the
//!   device did not hold: a priming goes on after its last page, a pull after
//!   its stored cursor.
//! - **The soak**: many devices (each a real store and sync client, logged in
//!   as a rep of its own) edit at a steady rate and sync, each with a live
//!   connection open, against a `fieldsync serve` process, while the server's
//!   memory, every error and the p99 of sync latency are taken per interval.
//!   It fails on any error, on memory that keeps growing after the warm-up,
//!   and on a p99 that drifts. `cargo test` runs it briefly (20 devices for
//!   20 s per database); `cargo xtask soak --minutes N` runs 1,000 devices
//!   for N minutes (release build).

use std::collections::BinaryHeap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fieldsync_core::model::{DeviceTime, Role, Visit};
use fieldsync_core::store::{DeviceStore, StoreOptions};
use fieldsync_core::sync::{
    HttpTransport, NoProgress, Session, SyncClient, SyncOptions, SyncPhase, SyncProgress,
};
use fieldsync_core::{RecordId, automerge};
use fieldsync_test_support::{
    Backend, Device, Person, World, fast_options, in_parallel, on_both_databases,
};

on_both_databases!(a_sync_killed_between_pages_resumes_without_downloading_again);
on_both_databases!(with unlimited: many_devices_editing_with_live_connections_hold_memory_errors_and_latency_flat);

/// Starts the server as a process with the abuse limits off (hundreds of
/// logins from one address within a minute are the set-up, not an attack).
fn unlimited(backend: Backend, scenario: fn(World)) {
    scenario(World::start_process_with(backend, |args| {
        args.logins_per_minute = Some(0);
        args.logins_per_minute_per_address = Some(0);
        args.new_devices_per_day = Some(0);
    }));
}

/// `ms` after the start of today (UTC): inside every role's download window.
fn t(ms: i64) -> DeviceTime {
    let now = DeviceTime::now_utc().at_ms;
    DeviceTime::utc(now - now.rem_euclid(86_400_000) + ms)
}

fn plan_visit(w: &World, dev: &Device, account_id: RecordId, i: i64) -> RecordId {
    let v = Visit::planned(
        w.meta_of(&dev.person),
        account_id,
        t(i * 600_000),
        t(i * 600_000 + 300_000),
    );
    dev.store()
        .create_stateful(&v, &dev.actor, t(i))
        .expect("create visit")
}

fn sorted_heads(mut doc: fieldsync_core::RecordDoc) -> Vec<automerge::ChangeHash> {
    let mut h = doc.heads();
    h.sort();
    h
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------
// The app killed during a sync
// ---------------------------------------------------------------------------

/// Pages are small so that a sync is many of them.
fn paged_options() -> SyncOptions {
    SyncOptions {
        prime_page: 3,
        pull_page: 4,
        ..fast_options()
    }
}

/// Prints a line per page applied: what this run downloaded so far and what
/// the store holds after the page.
struct Pages(Arc<DeviceStore>);

impl SyncProgress for Pages {
    fn progress(&self, phase: SyncPhase, done: u64) {
        let line = match phase {
            SyncPhase::Priming => {
                let held = self.0.held_records().map(|r| r.len()).unwrap_or(0);
                format!("@primed {done} {held}")
            }
            SyncPhase::Pulling => {
                let cursor = self.0.cursor().ok().flatten().unwrap_or(0);
                format!("@pulled {done} {cursor}")
            }
            _ => return,
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// The child: the app, syncing the store at `FIELDSYNC_SYNC_CHILD` with the
/// session it is given, page by page, reporting each page; the parent kills
/// it somewhere along the way. Does nothing in an ordinary test run.
#[test]
fn sync_child() {
    let Ok(path) = std::env::var("FIELDSYNC_SYNC_CHILD") else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set"));
    let store = Arc::new(DeviceStore::open(&path, StoreOptions::default()).expect("open"));
    let held = store.held_records().expect("held").len();
    let cursor = store.cursor().expect("cursor").unwrap_or(0);
    let client = SyncClient::new(
        store.clone(),
        HttpTransport::new(&var("FIELDSYNC_SYNC_BASE"), Duration::from_secs(30)),
        paged_options(),
    );
    client.set_session(Session {
        access_token: var("FIELDSYNC_SYNC_ACCESS"),
        refresh_token: var("FIELDSYNC_SYNC_REFRESH"),
    });
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "@start {held} {cursor}");
        let _ = out.flush();
    }
    let report = client.sync(&Pages(store)).expect("sync");
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "@done {} {}", report.primed, report.pulled);
        let _ = out.flush();
    }
    // Killed before or after finishing alike: wait for it.
    std::thread::sleep(Duration::from_secs(30));
}

/// What one run of the child said before it was killed (or finished).
#[derive(Debug, Default)]
struct Run {
    /// Records held and the cursor when it started.
    start: (u64, u64),
    /// `(primed in this run, records held)` after each priming page.
    primed: Vec<(u64, u64)>,
    /// `(pulled in this run, cursor)` after each pull page.
    pulled: Vec<(u64, u64)>,
    /// The run finished: `(primed, pulled)`.
    done: Option<(u64, u64)>,
}

/// Runs the child on the store at `path` and SIGKILLs it `delay_us`
/// microseconds after its `pages`-th page (or lets it finish).
fn run_child(
    w: &World,
    path: &std::path::Path,
    session: &Session,
    pages: usize,
    delay_us: u64,
) -> Run {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["--exact", "sync_child", "--nocapture", "--test-threads=1"])
        .env("FIELDSYNC_SYNC_CHILD", path)
        .env("FIELDSYNC_SYNC_BASE", &w.base)
        .env("FIELDSYNC_SYNC_ACCESS", &session.access_token)
        .env("FIELDSYNC_SYNC_REFRESH", &session.refresh_token)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the app");
    let stdout = child.stdout.take().expect("stdout");
    let mut run = Run::default();
    let started = Instant::now();
    let pair = |rest: &str| -> (u64, u64) {
        let mut it = rest
            .split_whitespace()
            .map(|n| n.parse::<u64>().expect("number"));
        (it.next().expect("first"), it.next().expect("second"))
    };
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        // libtest may print its own text before ours on the same line.
        let Some(at) = line.find('@') else { continue };
        let line = &line[at + 1..];
        if let Some(rest) = line.strip_prefix("start ") {
            run.start = pair(rest);
        } else if let Some(rest) = line.strip_prefix("primed ") {
            run.primed.push(pair(rest));
        } else if let Some(rest) = line.strip_prefix("pulled ") {
            run.pulled.push(pair(rest));
        } else if let Some(rest) = line.strip_prefix("done ") {
            run.done = Some(pair(rest));
            break;
        }
        if run.primed.len() + run.pulled.len() >= pages {
            std::thread::sleep(Duration::from_micros(delay_us));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the app is too slow"
        );
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    run
}

/// A manager's new phone primes, then pulls, page by page, as a process that
/// is SIGKILLed after one to three pages (right after the page, or a few
/// milliseconds into the next request or write), over and over until a run
/// finishes. Every run must resume exactly where the store stands: it primes
/// only records the store does not hold and pulls only feed positions after
/// the stored cursor (the feed holds only the rep's changes, one position
/// each). At the end the phone holds exactly the server's records.
fn a_sync_killed_between_pages_resumes_without_downloading_again(w: World) {
    let ana = w.device("ana");
    let shop = w.account_on(&ana, "Kill-the-app outlet");
    let visits: Vec<RecordId> = (0..20).map(|i| plan_visit(&w, &ana, shop, i)).collect();
    ana.sync();

    let phone = w.device_with("mona", paged_options());
    let path = phone.path.clone();
    let session = phone.client.session().expect("logged in");
    drop(phone);

    let mut rng = 0x5eed_u64;
    let mut next = move |n: u64| {
        rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (rng >> 33) % n
    };
    let mut kills = 0;
    // Priming, then (after the rep's edits) pulling.
    for phase in ["prime", "pull"] {
        if phase == "pull" {
            for (i, id) in visits.iter().enumerate() {
                for e in 0..3 {
                    ana.store()
                        .update::<Visit>(*id, t(i as i64), |v| v.notes = format!("edit {e}"))
                        .expect("edit");
                }
            }
            ana.sync();
        }
        loop {
            let pages = 1 + next(3) as usize;
            // Right after the page, or up to 3 ms into what follows it.
            let delay = if next(2) == 0 { 0 } else { next(3_000) };
            let run = run_child(&w, &path, &session, pages, delay);
            let (held0, cursor0) = run.start;
            for &(primed, held) in &run.primed {
                assert_eq!(
                    held,
                    held0 + primed,
                    "{phase}: the run primed a record the store held ({run:?})"
                );
            }
            // (A run that primed starts its pull at the priming's position.)
            for &(pulled, cursor) in run.pulled.iter().filter(|_| cursor0 > 0) {
                assert_eq!(
                    cursor,
                    cursor0 + pulled,
                    "{phase}: the run pulled a change the store held ({run:?})"
                );
            }
            // What the store says after the kill: at least what was reported.
            let store = DeviceStore::open(&path, StoreOptions::default()).expect("reopen");
            let held = store.held_records().expect("held").len() as u64;
            let cursor = store.cursor().expect("cursor").unwrap_or(0);
            if let Some(&(_, reported)) = run.primed.last() {
                assert!(held >= reported, "{phase}: primed pages lost by the kill");
            }
            if let Some(&(_, reported)) = run.pulled.last() {
                assert!(cursor >= reported, "{phase}: pulled pages lost by the kill");
            }
            drop(store);
            if let Some((primed, pulled)) = run.done {
                if phase == "prime" {
                    assert!(pulled == 0, "nothing to pull yet: {run:?}");
                    assert!(primed > 0 || held0 > 0, "{run:?}");
                }
                break;
            }
            kills += 1;
            assert!(kills < 200, "the sync never finished between kills");
        }
    }
    assert!(
        kills >= 4,
        "the app was killed during both phases ({kills})"
    );
    // The phone, reopened once more, holds exactly the server's records.
    let store = DeviceStore::open(&path, StoreOptions::default()).expect("reopen");
    for id in visits.iter().chain([&shop]) {
        let mine = sorted_heads(store.doc(*id).expect("held"));
        let server = sorted_heads(w.server_doc(*id).expect("on the server"));
        assert_eq!(mine, server, "{id}");
        let v: Option<Visit> = store.read_stateful(*id).ok();
        if let Some(v) = v {
            assert_eq!(v.notes, "edit 2");
        }
    }
    println!("app killed during a sync: {kills} kills, resumed without downloading again");
}

// ---------------------------------------------------------------------------
// The soak
// ---------------------------------------------------------------------------

/// One rep's phone in the soak.
struct Phone {
    device: Device,
    shop: RecordId,
    visits: Vec<RecordId>,
    edits: AtomicU64,
}

/// What went wrong, kept for the report (the first few in full).
#[derive(Default)]
struct Errors {
    count: AtomicU64,
    first: Mutex<Vec<String>>,
}

impl Errors {
    fn add(&self, what: String) {
        self.count.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut first) = self.first.lock()
            && first.len() < 10
        {
            eprintln!("soak error: {what}");
            first.push(what);
        }
    }
}

/// Live connection figures.
#[derive(Default)]
struct Live {
    open: AtomicUsize,
    notified: AtomicU64,
    reconnects: AtomicU64,
}

/// Opens `/v1/live` with `token`; the reader once the stream is open.
fn live_connect(base: &str, token: &str) -> Result<BufReader<TcpStream>, String> {
    let addr = base.trim_start_matches("http://");
    let mut socket = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    write!(
        socket,
        "GET /v1/live HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Accept: text/event-stream\r\n\r\n"
    )
    .map_err(|e| format!("request: {e}"))?;
    // Short reads, so that the end of the soak is seen quickly.
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(socket);
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match reader.read_line(&mut line) {
            Ok(0) => return Err("closed before its hello".into()),
            Ok(_) => {
                if line.starts_with("HTTP/1.1") && !line.contains(" 200 ") {
                    return Err(format!("answered {}", line.trim()));
                }
                if line.starts_with("event: hello") {
                    return Ok(reader);
                }
                line.clear();
            }
            Err(_) if Instant::now() < deadline => {}
            Err(e) => return Err(format!("no hello: {e}")),
        }
    }
}

/// A phone's live connection, kept open until `stop`: counts `changed`
/// events and reconnects (with the device's current token) when the server
/// ends the stream (`reconnect`), as it does when the access token's lifetime
/// is over. A connection that cannot be opened again within a minute is an
/// error.
fn follow_live(base: &str, phone: &Phone, live: &Live, errors: &Errors, stop: &AtomicBool) {
    let mut failing_since: Option<Instant> = None;
    let mut first = true;
    while !stop.load(Ordering::SeqCst) {
        let token = phone
            .device
            .client
            .session()
            .map(|s| s.access_token)
            .unwrap_or_default();
        let mut reader = match live_connect(base, &token) {
            Ok(r) => r,
            Err(e) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(60) {
                    errors.add(format!(
                        "live connection of {}: {e}",
                        phone.device.person.email
                    ));
                    failing_since = None;
                }
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        failing_since = None;
        if !std::mem::take(&mut first) {
            live.reconnects.fetch_add(1, Ordering::SeqCst);
        }
        live.open.fetch_add(1, Ordering::SeqCst);
        let mut line = String::new();
        while !stop.load(Ordering::SeqCst) {
            match reader.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => {
                    if line.starts_with("event: changed") {
                        live.notified.fetch_add(1, Ordering::SeqCst);
                    }
                    // The server ends the stream (its token's lifetime is
                    // over, or the node shuts down): reconnect at once, as
                    // the app does. The kept-alive socket stays open.
                    let end =
                        line.starts_with("event: reconnect") || line.starts_with("event: shutdown");
                    line.clear();
                    if end {
                        break;
                    }
                }
                // A timeout keeps what was read of the line.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        live.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The soft limit of open files of this process (Linux), inherited by the
/// server process.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Sync latencies of one interval.
#[derive(Default)]
struct Interval {
    latencies: Vec<Duration>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `FIELDSYNC_SOAK_DEVICES` reps (20) each edit one of their visits every
/// `FIELDSYNC_SOAK_EDIT_EVERY_SECS` (2 s; the edits spread evenly over that
/// period) and sync, for `FIELDSYNC_SOAK_SECS` (20 s), each with a live
/// connection open; the manager edits one rep's visit a second and syncs
/// too. Every interval (`FIELDSYNC_SOAK_INTERVAL_SECS`, a twelfth of the run
/// and at least 5 s) prints the server's resident memory, the syncs and
/// their p50 / p99 latency (an edit's sync: push and pull), the errors and
/// the live connections. Fails on any error (a failed sync, a refused
/// change, a live connection that cannot be reopened), when the memory at
/// the end is over 1.5 times the memory after the first interval (the
/// warm-up), and when the p99 drifts (the mean p99 of the last third of the
/// intervals over twice that of the first third after the warm-up, plus
/// 50 ms). Then every phone syncs once more and holds exactly the server's
/// copy of its records, and the change log holds each change once.
fn many_devices_editing_with_live_connections_hold_memory_errors_and_latency_flat(w: World) {
    let devices: usize = env_or("FIELDSYNC_SOAK_DEVICES", 20);
    let run_for = Duration::from_secs(env_or("FIELDSYNC_SOAK_SECS", 20));
    let every = Duration::from_secs_f64(env_or("FIELDSYNC_SOAK_EDIT_EVERY_SECS", 2.0));
    let interval = Duration::from_secs(env_or(
        "FIELDSYNC_SOAK_INTERVAL_SECS",
        (run_for.as_secs() / 12).max(5),
    ));
    // Each device holds its store's files, a kept-alive connection and its
    // live connection, and the server one end of each connection.
    if let Some(limit) = open_files_limit() {
        assert!(
            limit >= devices as u64 * 8,
            "{devices} devices need about {} open files; the limit is {limit} (`ulimit -n`)",
            devices * 8
        );
    }
    let backend = if w.settings.database_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let setup = Instant::now();
    let names: Vec<usize> = (0..devices).collect();
    let people: Vec<Person> = in_parallel(&names, 8, |i| {
        w.add_person(&format!("soak{i:04}"), Role::Rep, w.north)
    });
    let options = SyncOptions {
        max_attempts: 3,
        ..fast_options()
    };
    let phones: Vec<Phone> = in_parallel(&people, 8, |p| {
        let device = w.device_of(p.clone(), options.clone());
        let shop = w.account_on(&device, "Soak outlet");
        let visits = (0..3).map(|i| plan_visit(&w, &device, shop, i)).collect();
        let report = device.sync();
        assert_eq!(report.rejected, 0, "{report:?}");
        Phone {
            device,
            shop,
            visits,
            edits: AtomicU64::new(0),
        }
    });
    let office = w.device_with("mona", options);
    office.sync();
    eprintln!(
        "soak on {backend}: {devices} devices logged in and synced in {:.1} s; \
         each edits every {:.1} s, for {} s",
        setup.elapsed().as_secs_f64(),
        every.as_secs_f64(),
        run_for.as_secs()
    );

    let stop = AtomicBool::new(false);
    let errors = Errors::default();
    let live = Live::default();
    let syncs = AtomicU64::new(0);
    let intervals: Mutex<Vec<Interval>> = Mutex::new(vec![Interval::default()]);
    let office_edits = AtomicU64::new(0);
    // Each phone's next edit, earliest first: (due, phone).
    let started = Instant::now();
    let queue: Mutex<BinaryHeap<std::cmp::Reverse<(Instant, usize)>>> = Mutex::new(
        (0..devices)
            .map(|i| std::cmp::Reverse((started + every.mul_f64(i as f64 / devices as f64), i)))
            .collect(),
    );
    let mut rss: Vec<(Duration, u64)> = vec![(Duration::ZERO, w.server_rss_kib().unwrap_or(0))];
    let mut rows: Vec<(usize, Duration, Duration)> = Vec::new();
    std::thread::scope(|s| {
        for phone in &phones {
            let (base, live, errors, stop) = (&w.base, &live, &errors, &stop);
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn_scoped(s, move || follow_live(base, phone, live, errors, stop))
                .expect("live thread");
        }
        for _ in 0..devices.clamp(1, 32) {
            s.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    let Some(std::cmp::Reverse((due, i))) = queue.lock().expect("queue").pop()
                    else {
                        return;
                    };
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let phone = &phones[i];
                    let n = phone.edits.fetch_add(1, Ordering::SeqCst);
                    let visit = phone.visits[n as usize % phone.visits.len()];
                    match phone
                        .device
                        .store()
                        .update::<Visit>(visit, t(1), |v| v.notes = format!("soak edit {n}"))
                    {
                        Ok(()) => {
                            let began = Instant::now();
                            match phone.device.client.sync(&NoProgress) {
                                Ok(r) if r.rejected == 0 => {
                                    let took = began.elapsed();
                                    syncs.fetch_add(1, Ordering::SeqCst);
                                    if let Some(last) =
                                        intervals.lock().expect("intervals").last_mut()
                                    {
                                        last.latencies.push(took);
                                    }
                                }
                                Ok(r) => errors.add(format!("refused: {r:?}")),
                                Err(e) => errors.add(format!("sync: {e}")),
                            }
                        }
                        Err(e) => errors.add(format!("edit: {e}")),
                    }
                    queue
                        .lock()
                        .expect("queue")
                        .push(std::cmp::Reverse((due + every, i)));
                }
            });
        }
        // The office: one rep's visit a second.
        s.spawn(|| {
            let mut k = 0usize;
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_secs(1));
                let phone = &phones[k % phones.len()];
                let visit = phone.visits[k % phone.visits.len()];
                k += 1;
                // The manager holds the rep's visit once a sync brought it.
                if office.store().doc(visit).is_err() {
                    if let Err(e) = office.client.sync(&NoProgress) {
                        errors.add(format!("office sync: {e}"));
                    }
                    continue;
                }
                match office.store().update::<Visit>(visit, t(2), |v| {
                    v.instructions = Some(format!("office note {k}"))
                }) {
                    Ok(()) => {
                        office_edits.fetch_add(1, Ordering::SeqCst);
                        match office.client.sync(&NoProgress) {
                            Ok(r) if r.rejected == 0 => {}
                            Ok(r) => errors.add(format!("office refused: {r:?}")),
                            Err(e) => errors.add(format!("office sync: {e}")),
                        }
                    }
                    Err(e) => errors.add(format!("office edit: {e}")),
                }
            }
        });
        // The monitor: one line per interval.
        eprintln!(
            "| {backend} | time | syncs | p50 | p99 | errors | server RSS | live open / notified / reopened |"
        );
        while started.elapsed() < run_for {
            let end = (started.elapsed().as_secs_f64() / interval.as_secs_f64()).floor() + 1.0;
            let until = started + interval.mul_f64(end);
            std::thread::sleep(
                until
                    .min(started + run_for)
                    .saturating_duration_since(Instant::now()),
            );
            let mut done = {
                let mut all = intervals.lock().expect("intervals");
                let last = all.len() - 1;
                all.push(Interval::default());
                std::mem::take(&mut all[last].latencies)
            };
            done.sort();
            let (p50, p99) = (percentile(&done, 0.5), percentile(&done, 0.99));
            let now = started.elapsed();
            let mem = w.server_rss_kib().unwrap_or(0);
            rss.push((now, mem));
            rows.push((done.len(), p50, p99));
            eprintln!(
                "| {backend} | {:>5.0} s | {:>6} | {:>6.1} ms | {:>6.1} ms | {} | {:.1} MiB | {} / {} / {} |",
                now.as_secs_f64(),
                done.len(),
                ms(p50),
                ms(p99),
                errors.count.load(Ordering::SeqCst),
                mem as f64 / 1024.0,
                live.open.load(Ordering::SeqCst),
                live.notified.load(Ordering::SeqCst),
                live.reconnects.load(Ordering::SeqCst),
            );
        }
        stop.store(true, Ordering::SeqCst);
    });

    // Every phone syncs once more: it holds exactly the server's copy.
    in_parallel(&phones, 8, |p| {
        p.device.sync();
        assert_eq!(p.device.store().pending_changes().expect("pending"), 0);
    });
    let mut changes_found = 0u64;
    for p in &phones {
        for id in p.visits.iter().chain([&p.shop]) {
            let mine = sorted_heads(p.device.store().doc(*id).expect("held"));
            let mut server = w.server_doc(*id).expect("on the server");
            changes_found += server.changes_since(&[]).len() as u64;
            assert_eq!(mine, sorted_heads(server), "{}", p.device.person.email);
        }
    }
    let edits: u64 = phones.iter().map(|p| p.edits.load(Ordering::SeqCst)).sum();
    let logged = w.log_len() as u64;
    let total_syncs = syncs.load(Ordering::SeqCst);
    let error_count = errors.count.load(Ordering::SeqCst);
    let (start_kib, end_kib) = (rss.get(1).map_or(0, |r| r.1), rss.last().map_or(0, |r| r.1));
    eprintln!(
        "soak on {backend}: {devices} devices for {} s: {total_syncs} syncs, {edits} device \
         edits and {} office edits, {error_count} errors; every phone converged; {changes_found} \
         changes in the phones' records, {logged} in the change log; live: {} notifications, \
         {} reopened; server RSS {:.1} MiB at start, {:.1} MiB after the warm-up, {:.1} MiB at \
         the end",
        run_for.as_secs(),
        office_edits.load(Ordering::SeqCst),
        live.notified.load(Ordering::SeqCst),
        live.reconnects.load(Ordering::SeqCst),
        rss[0].1 as f64 / 1024.0,
        start_kib as f64 / 1024.0,
        end_kib as f64 / 1024.0,
    );

    let first = errors.first.lock().map(|f| f.clone()).unwrap_or_default();
    assert_eq!(error_count, 0, "errors during the soak: {first:?}");
    assert!(total_syncs > 0, "the devices synced");
    // Every change of the phones' records (theirs and the office's) is in
    // the change log once, and the log holds nothing else.
    assert_eq!(
        logged, changes_found,
        "the change log against the changes in the records"
    );
    assert!(
        changes_found >= edits,
        "{edits} edits, {changes_found} changes"
    );
    assert!(
        end_kib as f64 <= start_kib as f64 * 1.5,
        "server memory grew from {start_kib} KiB after the warm-up to {end_kib} KiB"
    );
    // p99 drift: the intervals after the warm-up, first third against last.
    let steady: Vec<Duration> = rows.iter().skip(1).map(|r| r.2).collect();
    if steady.len() >= 2 {
        let third = steady.len().div_ceil(3);
        let mean = |xs: &[Duration]| xs.iter().map(|d| ms(*d)).sum::<f64>() / xs.len() as f64;
        let (early, late) = (
            mean(&steady[..third]),
            mean(&steady[steady.len() - third..]),
        );
        assert!(
            late <= 2.0 * early + 50.0,
            "p99 of sync latency drifted from {early:.1} ms to {late:.1} ms"
        );
    }
}
