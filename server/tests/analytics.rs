//! The managers' figures, fleet sync health, conflicts queue and CSV export,
//! end to end: records made on real devices (`fieldsync-core` stores and sync
//! clients over HTTP) and pushed through the real sync path, read back through
//! the JSON API, on SQLite and on PostgreSQL.
//!
//! The KPI test's expected figures are computed here, from the seed table
//! itself, with their own code: not with the server's.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

use fieldsync_core::RecordId;
use fieldsync_core::model::visit::{self, CheckPoint, Site, Visit, VisitOutcome, VisitStatus};
use fieldsync_core::model::{
    Account, DeviceTime, GeoPoint, JobStatus, Location, Money, Order, OrderLine, OrderStatus, Qty,
    ServiceJob, TransitionRequest,
};
use fieldsync_test_support::{Backend, Device, World, on_both_databases};
use serde_json::Value;

on_both_databases!(
    the_dashboard_matches_figures_computed_from_the_seed,
    the_csv_exports_parse_back_to_the_seeded_records,
    a_job_completed_offline_while_cancelled_is_queued_with_its_evidence_and_resolved,
    devices_report_their_sync_health_and_silent_ones_are_flagged,
);

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;

/// Start of today (UTC), ms.
fn today() -> i64 {
    let now = DeviceTime::now_utc().at_ms;
    now - now.rem_euclid(DAY)
}

/// `day` days from today (UTC), `ms` into that day.
fn t(day: i64, ms: i64) -> DeviceTime {
    DeviceTime::utc(today() + day * DAY + ms)
}

/// `YYYY-MM-DD` of `day` days from today, computed with the system's `date`
/// so the test does not share the server's calendar code.
fn date(day: i64) -> String {
    let secs = (today() + day * DAY) / 1_000;
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%d"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

const SHOP: GeoPoint = GeoPoint {
    lat: 38.7223,
    lng: -9.1393,
    accuracy_m: None,
};
const FAR: GeoPoint = GeoPoint {
    lat: 38.80,
    lng: -9.1393,
    accuracy_m: None,
};
const SITE: Site = Site {
    coords: Some(SHOP),
    radius_m: 100.0,
};

fn account(w: &World, dev: &Device, name: &str) -> RecordId {
    let a = Account {
        meta: w.meta(dev.person.name()),
        name: name.into(),
        account_type: "outlet".into(),
        account_status: "active".into(),
        code: None,
        price_list_id: None,
        visit_frequency_days: Some(14),
        locations: [(
            RecordId::new(),
            Location {
                name: "Main store".into(),
                address: "Rua Augusta 1, Lisboa".into(),
                coords: Some(SHOP),
                geofence_radius_m: 100.0,
                opening_hours: None,
            },
        )]
        .into_iter()
        .collect(),
    };
    dev.store().create(&a, t(-10, 0)).expect("create account")
}

/// How a seeded visit ends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    Completed(VisitOutcome),
    InProgress,
    Planned,
    Cancelled,
}

/// Where the rep was at check-in.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fix {
    Inside,
    Outside,
    Missing,
}

/// An order: units × unit price (minor units), tax, and what became of it.
#[derive(Debug, Clone, Copy)]
struct SeedOrder {
    units: i64,
    price: i64,
    tax_bp: u32,
    currency: &'static str,
    /// `None`: left a draft; `Some(false)`: submitted; `Some(true)`: submitted then cancelled.
    submitted_then_cancelled: Option<bool>,
}

impl SeedOrder {
    const fn taken(units: i64, price: i64) -> Self {
        SeedOrder {
            units,
            price,
            tax_bp: 2_300,
            currency: "EUR",
            submitted_then_cancelled: Some(false),
        }
    }
    fn is_taken(&self) -> bool {
        self.submitted_then_cancelled == Some(false)
    }
    fn net(&self) -> i64 {
        self.units * self.price
    }
}

#[derive(Debug, Clone)]
struct SeedVisit {
    rep: &'static str,
    day: i64,
    hour: i64,
    planned: bool,
    end: End,
    fix: Fix,
    minutes: i64,
    orders: Vec<SeedOrder>,
}

/// One row of the seed table, positionally (the table reads as a table).
#[allow(clippy::too_many_arguments)]
fn sv(
    rep: &'static str,
    day: i64,
    hour: i64,
    planned: bool,
    end: End,
    fix: Fix,
    minutes: i64,
    orders: Vec<SeedOrder>,
) -> SeedVisit {
    SeedVisit {
        rep,
        day,
        hour,
        planned,
        end,
        fix,
        minutes,
        orders,
    }
}

/// Orders not taken on a visit: (rep, day, hour, order).
fn loose_orders() -> Vec<(&'static str, i64, i64, SeedOrder)> {
    vec![
        ("ana", -1, 12, SeedOrder::taken(1, 10_000)),
        (
            "ben",
            -2,
            15,
            SeedOrder {
                currency: "USD",
                ..SeedOrder::taken(2, 3_000)
            },
        ),
        // Taken before the range: counts nowhere.
        ("ben", -6, 9, SeedOrder::taken(7, 100)),
    ]
}

fn seed_visits() -> Vec<SeedVisit> {
    use End::*;
    use Fix::*;
    use VisitOutcome::*;
    let draft = SeedOrder {
        submitted_then_cancelled: None,
        ..SeedOrder::taken(3, 100)
    };
    let cancelled = SeedOrder {
        submitted_then_cancelled: Some(true),
        ..SeedOrder::taken(5, 200)
    };
    vec![
        sv(
            "ana",
            -3,
            9,
            true,
            Completed(OrderTaken),
            Inside,
            30,
            vec![SeedOrder::taken(2, 1_500)],
        ),
        sv("ana", -3, 11, true, Completed(NoOrder), Outside, 45, vec![]),
        sv("ana", -2, 10, true, Cancelled, Inside, 0, vec![]),
        sv(
            "ana",
            -2,
            14,
            false,
            Completed(OrderTaken),
            Missing,
            20,
            vec![SeedOrder::taken(1, 999), draft],
        ),
        sv("ana", -1, 9, true, Planned, Inside, 0, vec![]),
        sv(
            "ana",
            0,
            8,
            true,
            Completed(FollowUp),
            Inside,
            60,
            vec![cancelled],
        ),
        sv(
            "ana",
            -5,
            10,
            true,
            Completed(NoOrder),
            Inside,
            15,
            vec![SeedOrder::taken(9, 900)],
        ),
        sv(
            "ben",
            -3,
            10,
            true,
            Completed(OrderTaken),
            Outside,
            50,
            vec![SeedOrder::taken(10, 250), SeedOrder::taken(1, 5_000)],
        ),
        sv("ben", -1, 13, true, InProgress, Inside, 0, vec![]),
        sv("ben", 2, 9, true, Planned, Inside, 0, vec![]),
        sv("ben", -2, 16, true, Completed(NoOrder), Inside, 35, vec![]),
        sv(
            "sara",
            -2,
            9,
            true,
            Completed(OrderTaken),
            Inside,
            25,
            vec![SeedOrder::taken(4, 700)],
        ),
    ]
}

/// A seeded job: created, SLA due, what happened (all relative to today).
#[derive(Debug, Clone, Copy)]
struct SeedJob {
    created: (i64, i64),
    due: Option<(i64, i64)>,
    started: bool,
    completed: Option<(i64, i64)>,
    first_time_fix: Option<bool>,
    cancelled: bool,
}

fn seed_jobs() -> Vec<SeedJob> {
    let job = |created, due| SeedJob {
        created,
        due,
        started: false,
        completed: None,
        first_time_fix: None,
        cancelled: false,
    };
    vec![
        // On time, fixed first time.
        SeedJob {
            started: true,
            completed: Some((-3, 15)),
            first_time_fix: Some(true),
            ..job((-3, 9), Some((-3, 17)))
        },
        // Late, not fixed first time.
        SeedJob {
            started: true,
            completed: Some((-2, 12)),
            first_time_fix: Some(false),
            ..job((-3, 10), Some((-2, 10)))
        },
        // Overdue and still in progress.
        SeedJob {
            started: true,
            ..job((-2, 8), Some((-2, 18)))
        },
        // Open, due after the range.
        job((-1, 9), Some((2, 9))),
        // Done before the range.
        SeedJob {
            started: true,
            completed: Some((-5, 11)),
            first_time_fix: Some(true),
            ..job((-6, 9), Some((-5, 12)))
        },
        // Cancelled past its due time: no breach.
        SeedJob {
            cancelled: true,
            ..job((-2, 7), Some((-2, 12)))
        },
        // Done, first-time fix unknown, no SLA.
        SeedJob {
            started: true,
            completed: Some((-1, 16)),
            ..job((-1, 10), None)
        },
    ]
}

/// What the seed produced: record ids by seed row.
struct Seeded {
    visits: Vec<RecordId>,
    jobs: Vec<RecordId>,
}

fn make_order(
    w: &World,
    dev: &Device,
    shop: RecordId,
    visit: Option<RecordId>,
    o: &SeedOrder,
    at: DeviceTime,
) -> RecordId {
    let mut order = Order::new(w.meta(dev.person.name()), shop, o.currency);
    order.visit_id = visit;
    let mut line = OrderLine::new(
        RecordId::new(),
        Qty::units(o.units),
        Money::new(o.price, o.currency),
    );
    line.tax_rate_bp = o.tax_bp;
    order.lines.insert(RecordId::new(), line);
    let id = dev
        .store()
        .create_stateful(&order, &dev.actor, at)
        .expect("order");
    if o.submitted_then_cancelled.is_some() {
        dev.store()
            .transition::<Order>(
                id,
                &dev.actor,
                &TransitionRequest::new(OrderStatus::Submitted, at),
                |_| {},
            )
            .expect("submit");
    }
    if o.submitted_then_cancelled == Some(true) {
        dev.store()
            .transition::<Order>(
                id,
                &dev.actor,
                &TransitionRequest::new(OrderStatus::Cancelled, DeviceTime::utc(at.at_ms + 60_000)),
                |_| {},
            )
            .expect("cancel");
    }
    id
}

/// Writes the seed on real devices and syncs them.
fn seed(w: &World) -> Seeded {
    let devices: BTreeMap<&str, Device> = ["ana", "ben", "sara"]
        .into_iter()
        .map(|n| (n, w.device(n)))
        .collect();
    let shops: BTreeMap<&str, RecordId> = devices
        .iter()
        .map(|(n, d)| (*n, account(w, d, &format!("Shop of {n}"))))
        .collect();
    let mut visits = Vec::new();
    for s in seed_visits() {
        let dev = &devices[s.rep];
        let shop = shops[s.rep];
        let start = t(s.day, s.hour * HOUR);
        let gps = match s.fix {
            Fix::Inside => Some(SHOP),
            Fix::Outside => Some(FAR),
            Fix::Missing => None,
        };
        let id = if s.planned {
            let v = Visit::planned(
                w.meta(s.rep),
                shop,
                start,
                DeviceTime::utc(start.at_ms + HOUR),
            );
            let id = dev
                .store()
                .create_stateful(&v, &dev.actor, t(-10, 0))
                .expect("plan");
            match s.end {
                End::Planned => {}
                End::Cancelled => dev
                    .store()
                    .transition::<Visit>(
                        id,
                        &dev.actor,
                        &TransitionRequest::new(VisitStatus::Cancelled, start),
                        |_| {},
                    )
                    .expect("cancel"),
                End::InProgress | End::Completed(_) => dev
                    .store()
                    .act(id, |d| visit::check_in(d, &dev.actor, start, gps, SITE))
                    .map(|_| ())
                    .expect("check in"),
            }
            id
        } else {
            let point = CheckPoint::record(start, gps, Some(&SHOP), SITE.radius_m);
            let v = Visit::ad_hoc(w.meta(s.rep), shop, point);
            dev.store()
                .create_stateful(&v, &dev.actor, start)
                .expect("ad hoc")
        };
        let out = DeviceTime::utc(start.at_ms + s.minutes * 60_000);
        if let End::Completed(outcome) = s.end {
            dev.store()
                .act(id, |d| {
                    visit::check_out(d, &dev.actor, out, gps, SITE, outcome)
                })
                .expect("check out");
        }
        for o in &s.orders {
            make_order(w, dev, shop, Some(id), o, out);
        }
        visits.push(id);
    }
    for (rep, day, hour, o) in loose_orders() {
        make_order(w, &devices[rep], shops[rep], None, &o, t(day, hour * HOUR));
    }

    // Jobs: dispatched by the manager to the technician, worked on his tablet.
    let mona = w.device("mona");
    let tomas = w.device("tomas");
    let tomas_shop = account(w, &tomas, "Clinic");
    tomas.sync();
    mona.sync();
    let mut jobs = Vec::new();
    for j in seed_jobs() {
        let mut job = ServiceJob::new(w.meta("tomas"), tomas_shop, "repair");
        job.sla_due = j.due.map(|(d, h)| t(d, h * HOUR));
        let created = t(j.created.0, j.created.1 * HOUR);
        let id = mona
            .store()
            .create_stateful(&job, &mona.actor, created)
            .expect("job");
        if j.cancelled {
            mona.store()
                .transition::<ServiceJob>(
                    id,
                    &mona.actor,
                    &TransitionRequest::new(
                        JobStatus::Cancelled,
                        DeviceTime::utc(created.at_ms + HOUR),
                    )
                    .with_reason("customer cancelled"),
                    |_| {},
                )
                .expect("cancel job");
        }
        jobs.push(id);
    }
    mona.sync();
    tomas.sync();
    for (j, id) in seed_jobs().iter().zip(&jobs) {
        let created = t(j.created.0, j.created.1 * HOUR);
        if j.started {
            tomas
                .store()
                .transition::<ServiceJob>(
                    *id,
                    &tomas.actor,
                    &TransitionRequest::new(
                        JobStatus::InProgress,
                        DeviceTime::utc(created.at_ms + HOUR),
                    ),
                    |_| {},
                )
                .expect("start job");
        }
        if let Some((d, h)) = j.completed {
            let at = t(d, h * HOUR);
            tomas
                .store()
                .transition::<ServiceJob>(
                    *id,
                    &tomas.actor,
                    &TransitionRequest::new(JobStatus::Completed, at),
                    |job| {
                        job.completed_at = Some(at);
                        job.first_time_fix = j.first_time_fix;
                    },
                )
                .expect("complete job");
        }
    }
    tomas.sync();

    // One refused change per team (a rep may not create another rep's visit).
    for (rep, other) in [("ana", "ben"), ("sara", "ana")] {
        let dev = &devices[rep];
        let v = Visit::planned(w.meta(other), shops[rep], t(-1, 0), t(-1, HOUR));
        dev.store()
            .create_stateful(&v, &dev.actor, t(-1, 0))
            .expect("foreign visit");
    }
    for dev in devices.values() {
        let report = dev.sync();
        assert_eq!(
            report.rejected,
            u64::from(dev.person.name() != "ben"),
            "{report:?}: {:?}",
            dev.store().rejections().expect("ledger")
        );
    }
    Seeded { visits, jobs }
}

/// A JSON or text request with a bearer token: status and body text.
fn call(w: &World, path: &str, token: &str, body: Option<Value>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{}{path}", w.base);
    let auth = format!("Bearer {token}");
    let resp = match body {
        None => agent.get(&url).header("authorization", &auth).call(),
        Some(b) => agent.post(&url).header("authorization", &auth).send_json(b),
    }
    .expect("request");
    let status = resp.status().as_u16();
    (status, resp.into_body().read_to_string().expect("body"))
}

fn json(w: &World, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let (status, text) = call(w, path, token, body);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn close(a: &Value, b: Option<f64>, what: &str) {
    match (a.as_f64(), b) {
        (None, None) => assert!(a.is_null(), "{what}: {a}"),
        (Some(x), Some(y)) => assert!((x - y).abs() < 1e-9, "{what}: got {x}, expected {y}"),
        _ => panic!("{what}: got {a}, expected {b:?}"),
    }
}

/// The expected visit figures of `reps` over days `from..=to`, from the seed.
fn expected_visits(reps: &[&str], from: i64, to: i64) -> Value {
    let mine: Vec<SeedVisit> = seed_visits()
        .into_iter()
        .filter(|v| reps.contains(&v.rep) && (from..=to).contains(&v.day))
        .collect();
    let completed: Vec<&SeedVisit> = mine
        .iter()
        .filter(|v| matches!(v.end, End::Completed(_)))
        .collect();
    let planned: Vec<&SeedVisit> = mine
        .iter()
        .filter(|v| v.planned && v.end != End::Cancelled)
        .collect();
    let planned_completed = planned
        .iter()
        .filter(|v| matches!(v.end, End::Completed(_)))
        .count();
    let with_order = completed
        .iter()
        .filter(|v| v.orders.iter().any(SeedOrder::is_taken))
        .count();
    let minutes: i64 = completed.iter().map(|v| v.minutes).sum();
    let checked_in: Vec<&SeedVisit> = mine
        .iter()
        .filter(|v| matches!(v.end, End::Completed(_) | End::InProgress))
        .collect();
    // Order value per currency: taken orders submitted on a day of the range.
    let mut total: BTreeMap<&str, (u64, i64)> = BTreeMap::new();
    let mut linked: BTreeMap<&str, i64> = BTreeMap::new();
    for v in seed_visits().iter().filter(|v| reps.contains(&v.rep)) {
        for o in v.orders.iter().filter(|o| o.is_taken()) {
            if (from..=to).contains(&v.day) {
                let e = total.entry(o.currency).or_default();
                e.0 += 1;
                e.1 += o.net();
                if matches!(v.end, End::Completed(_)) {
                    *linked.entry(o.currency).or_default() += o.net();
                }
            }
        }
    }
    for (rep, day, _, o) in loose_orders() {
        if reps.contains(&rep) && (from..=to).contains(&day) && o.is_taken() {
            let e = total.entry(o.currency).or_default();
            e.0 += 1;
            e.1 += o.net();
        }
    }
    let n = completed.len() as f64;
    let value: Vec<Value> = total
        .iter()
        .map(|(cur, (orders, sum))| {
            serde_json::json!({
                "currency": cur,
                "orders": orders,
                "total_minor": sum,
                "per_visit_minor": (n > 0.0).then(|| *linked.get(cur).unwrap_or(&0) as f64 / n),
            })
        })
        .collect();
    let ratio = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
    serde_json::json!({
        "planned": planned.len(),
        "planned_completed": planned_completed,
        "compliance": ratio(planned_completed, planned.len()),
        "completed": completed.len(),
        "with_order": with_order,
        "strike_rate": ratio(with_order, completed.len()),
        "timed": completed.len(),
        "time_on_site_min_total": minutes,
        "time_on_site_min_mean": (!completed.is_empty()).then(|| minutes as f64 / n),
        "checked_in": checked_in.len(),
        "outside_geofence": checked_in.iter().filter(|v| v.fix == Fix::Outside).count(),
        "unverified_geofence": checked_in.iter().filter(|v| v.fix == Fix::Missing).count(),
        "order_value": value,
    })
}

/// Compares a figures object with the expected one, floats with a tolerance.
fn assert_figures(got: &Value, want: &Value, what: &str) {
    let Some(want) = want.as_object() else {
        panic!("{what}: expected an object")
    };
    for (key, w) in want {
        let g = &got[key];
        match (key.as_str(), w) {
            ("order_value", Value::Array(items)) => {
                let g = g
                    .as_array()
                    .unwrap_or_else(|| panic!("{what}.order_value: {got}"));
                assert_eq!(
                    g.len(),
                    items.len(),
                    "{what}.order_value: {g:?} vs {items:?}"
                );
                for (gi, wi) in g.iter().zip(items) {
                    assert_eq!(gi["currency"], wi["currency"], "{what}");
                    assert_eq!(gi["orders"], wi["orders"], "{what} {}", wi["currency"]);
                    assert_eq!(
                        gi["total_minor"], wi["total_minor"],
                        "{what} {}",
                        wi["currency"]
                    );
                    close(
                        &gi["per_visit_minor"],
                        wi["per_visit_minor"].as_f64(),
                        &format!("{what}.per_visit_minor"),
                    );
                }
            }
            (_, Value::Number(n)) if n.is_f64() => close(g, n.as_f64(), &format!("{what}.{key}")),
            (_, Value::Null) => assert!(g.is_null(), "{what}.{key}: {g}"),
            _ => assert_eq!(g, w, "{what}.{key}"),
        }
    }
}

fn expected_jobs(from: i64, to: i64) -> Value {
    let (lo, hi) = (today() + from * DAY, today() + (to + 1) * DAY);
    let at = |(d, h): (i64, i64)| today() + d * DAY + h * HOUR;
    let now = DeviceTime::now_utc().at_ms;
    let jobs = seed_jobs();
    let open = jobs
        .iter()
        .filter(|j| !j.cancelled && j.completed.is_none() && at(j.created) < hi)
        .count();
    let closed: Vec<&SeedJob> = jobs
        .iter()
        .filter(|j| j.completed.is_some_and(|c| (lo..hi).contains(&at(c))))
        .collect();
    let spans: Vec<i64> = closed
        .iter()
        .filter_map(|j| Some(at(j.completed?) - at(j.created)))
        .collect();
    let known = closed.iter().filter(|j| j.first_time_fix.is_some()).count();
    let fixed = closed
        .iter()
        .filter(|j| j.first_time_fix == Some(true))
        .count();
    let breaches = jobs
        .iter()
        .filter(|j| !j.cancelled)
        .filter(|j| {
            let Some(due) = j.due.map(at) else {
                return false;
            };
            (lo..hi).contains(&due)
                && match j.completed {
                    Some(c) => at(c) > due,
                    None => now > due,
                }
        })
        .count();
    serde_json::json!({
        "open": open,
        "closed": closed.len(),
        "mean_time_to_complete_min": (!spans.is_empty())
            .then(|| spans.iter().sum::<i64>() as f64 / spans.len() as f64 / 60_000.0),
        "first_time_fix_known": known,
        "first_time_fixed": fixed,
        "first_time_fix_rate": (known > 0).then(|| fixed as f64 / known as f64),
        "sla_breaches": breaches,
    })
}

fn the_dashboard_matches_figures_computed_from_the_seed(w: World) {
    let seeded = seed(&w);
    assert_eq!(seeded.visits.len(), seed_visits().len());
    let mona = w.device("mona");
    let (from, to) = (-3, 0);
    let path = format!("/v1/dashboard?from={}&to={}", date(from), date(to));
    let started = std::time::Instant::now();
    let (status, dash) = json(&w, &path, &mona.access_token(), None);
    let took = started.elapsed();
    assert_eq!(status, 200, "{dash}");
    eprintln!(
        "dashboard over {} visits answered in {took:?}",
        seed_visits().len()
    );

    assert_eq!(dash["time_zone"], "UTC");
    assert_eq!(dash["from"], date(from).as_str());
    assert_eq!(dash["days"].as_array().map(Vec::len), Some(4));
    assert_eq!(dash["team"], w.north.to_string().as_str());

    // The manager's team: ana and ben, not sara (team South).
    assert_figures(
        &dash["visits"],
        &expected_visits(&["ana", "ben"], from, to),
        "team",
    );
    let reps = dash["reps"].as_array().expect("reps");
    let ids: BTreeSet<String> = reps
        .iter()
        .map(|r| r["rep_id"].as_str().unwrap_or("").to_owned())
        .collect();
    let want: BTreeSet<String> = ["ana", "ben"]
        .iter()
        .map(|n| w.person(n).id.to_string())
        .collect();
    assert_eq!(ids, want);
    for rep in reps {
        let name = if rep["rep_id"] == w.person("ana").id.to_string().as_str() {
            "ana"
        } else {
            "ben"
        };
        assert_figures(rep, &expected_visits(&[name], from, to), name);
        let per_day: Vec<u64> = (from..=to)
            .map(|d| {
                seed_visits()
                    .iter()
                    .filter(|v| v.rep == name && v.day == d && matches!(v.end, End::Completed(_)))
                    .count() as u64
            })
            .collect();
        let got: Vec<u64> = rep["visits_per_day"]
            .as_array()
            .expect("per day")
            .iter()
            .filter_map(Value::as_u64)
            .collect();
        assert_eq!(got, per_day, "{name} per day");
    }
    assert_figures(&dash["jobs"], &expected_jobs(from, to), "jobs");

    // Fleet: the team's devices, one refused change (ana's) today.
    assert_eq!(dash["fleet"]["rejected_changes"], 1, "{}", dash["fleet"]);
    assert_eq!(dash["fleet"]["open_conflicts"], 0);
    let devices = dash["fleet"]["devices"].as_array().expect("devices");
    assert!(
        devices
            .iter()
            .all(|d| d["user_id"] != w.person("sara").id.to_string().as_str())
    );
    assert!(
        devices
            .iter()
            .any(|d| d["user_id"] == w.person("ana").id.to_string().as_str())
    );

    // An administrator sees the organisation, or one team.
    let adam = w.device("adam");
    let (status, south) = json(
        &w,
        &format!("{path}&team={}", w.south),
        &adam.access_token(),
        None,
    );
    assert_eq!(status, 200, "{south}");
    assert_figures(
        &south["visits"],
        &expected_visits(&["sara"], from, to),
        "south",
    );
    assert_eq!(south["fleet"]["rejected_changes"], 1);
    let (_, all) = json(&w, &path, &adam.access_token(), None);
    assert_figures(
        &all["visits"],
        &expected_visits(&["ana", "ben", "sara"], from, to),
        "org",
    );
    assert_eq!(all["fleet"]["rejected_changes"], 2);

    // A narrower range: only the third day back.
    let (_, one) = json(
        &w,
        &format!("/v1/dashboard?from={0}&to={0}", date(-3)),
        &mona.access_token(),
        None,
    );
    assert_figures(
        &one["visits"],
        &expected_visits(&["ana", "ben"], -3, -3),
        "one day",
    );
    assert_figures(&one["jobs"], &expected_jobs(-3, -3), "one day jobs");

    // Refusals: a rep, another team, bad dates.
    let ana = w.device("ana");
    assert_eq!(json(&w, &path, &ana.access_token(), None).0, 403);
    assert_eq!(
        json(
            &w,
            &format!("{path}&team={}", w.south),
            &mona.access_token(),
            None
        )
        .0,
        403
    );
    for bad in [
        format!("/v1/dashboard?from={}", date(0)),
        format!("/v1/dashboard?from=2026-02-30&to={}", date(0)),
        format!("/v1/dashboard?from={}&to={}", date(0), date(-1)),
        "/v1/dashboard?from=2020-01-01&to=2026-01-01".to_owned(),
        format!("/v1/dashboard?from={0}&to={0}&team=nope", date(0)),
    ] {
        let (status, body) = json(&w, &bad, &mona.access_token(), None);
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{bad}");
    }
}

fn the_csv_exports_parse_back_to_the_seeded_records(w: World) {
    let seeded = seed(&w);
    // A rep's name that a spreadsheet would run as a formula.
    w.execute_with_id(
        "UPDATE users SET display_name = '=HYPERLINK(\"http://x\",\"y\")' WHERE id = $1",
        *w.person("ana").id.as_uuid(),
    );
    let mona = w.device("mona");
    let range = format!("from={}&to={}", date(-3), date(0));
    let (status, text) = call(
        &w,
        &format!("/v1/export/visits.csv?{range}"),
        &mona.access_token(),
        None,
    );
    assert_eq!(status, 200, "{text}");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header[0], "visit_id");
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    let expected: BTreeMap<String, SeedVisit> = seed_visits()
        .into_iter()
        .zip(&seeded.visits)
        .filter(|(v, _)| v.rep != "sara" && (-3..=0).contains(&v.day))
        .map(|(v, id)| (id.to_string(), v))
        .collect();
    assert_eq!(
        rows.len(),
        expected.len(),
        "one row per visit of the range in the team"
    );
    for row in &rows {
        let v = expected
            .get(&row[col("visit_id")])
            .unwrap_or_else(|| panic!("unexpected row {row:?}"));
        assert_eq!(&row[col("day")], date(v.day));
        assert_eq!(&row[col("rep_id")], w.person(v.rep).id.to_string());
        let status = match v.end {
            End::Completed(_) => "completed",
            End::InProgress => "in_progress",
            End::Planned => "planned",
            End::Cancelled => "cancelled",
        };
        assert_eq!(&row[col("status")], status);
        if matches!(v.end, End::Completed(_)) {
            assert_eq!(
                row[col("time_on_site_min")].parse::<i64>().ok(),
                Some(v.minutes)
            );
            let verdict = match v.fix {
                Fix::Inside => "inside",
                Fix::Outside => "outside",
                Fix::Missing => "unverifiable_offline",
            };
            assert_eq!(&row[col("check_in_geofence")], verdict);
            assert!(row[col("check_in_utc")].ends_with('Z'));
        }
        if v.rep == "ana" {
            assert_eq!(
                &row[col("rep_name")],
                "'=HYPERLINK(\"http://x\",\"y\")",
                "defused"
            );
        }
    }

    let (status, text) = call(
        &w,
        &format!("/v1/export/orders.csv?{range}"),
        &mona.access_token(),
        None,
    );
    assert_eq!(status, 200, "{text}");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    // Every order of the team counting on a day of the range: drafts and
    // cancelled ones too, with their status.
    let mut want: Vec<(String, i64)> = Vec::new();
    for v in seed_visits()
        .iter()
        .filter(|v| v.rep != "sara" && (-3..=0).contains(&v.day))
    {
        for o in &v.orders {
            let status = match o.submitted_then_cancelled {
                None => "draft",
                // No price list applies: the server holds the order for a manager.
                Some(false) => "pending_approval",
                Some(true) => "cancelled",
            };
            // A draft counts on its creation: the check-out, the same day.
            want.push((status.to_owned(), o.net()));
        }
    }
    for (rep, day, _, o) in loose_orders() {
        if rep != "sara" && (-3..=0).contains(&day) {
            want.push(("pending_approval".into(), o.net()));
        }
    }
    let mut got: Vec<(String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r[col("status")].to_owned(),
                r[col("net_minor")].parse().unwrap_or(-1),
            )
        })
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);

    let (status, text) = call(
        &w,
        &format!("/v1/export/jobs.csv?{range}"),
        &mona.access_token(),
        None,
    );
    assert_eq!(status, 200, "{text}");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    let want: BTreeMap<String, SeedJob> = seed_jobs()
        .into_iter()
        .zip(&seeded.jobs)
        .filter(|(j, _)| (-3..=0).contains(&j.created.0))
        .map(|(j, id)| (id.to_string(), j))
        .collect();
    assert_eq!(rows.len(), want.len());
    let now = DeviceTime::now_utc().at_ms;
    let at = |(d, h): (i64, i64)| today() + d * DAY + h * HOUR;
    for row in &rows {
        let j = want
            .get(&row[col("job_id")])
            .unwrap_or_else(|| panic!("unexpected job {row:?}"));
        let breached = !j.cancelled
            && j.due.is_some_and(|due| match j.completed {
                Some(c) => at(c) > at(due),
                None => now > at(due),
            });
        assert_eq!(&row[col("sla_breached")], breached.to_string(), "{row:?}");
        assert_eq!(
            &row[col("first_time_fix")],
            j.first_time_fix.map(|f| f.to_string()).unwrap_or_default()
        );
        if let Some(c) = j.completed {
            assert_eq!(
                row[col("time_to_complete_min")].parse::<i64>().ok(),
                Some((at(c) - at(j.created)) / 60_000)
            );
        }
    }

    // Scope and input: a rep may not export; a bad range is refused.
    let ana = w.device("ana");
    assert_eq!(
        call(
            &w,
            &format!("/v1/export/visits.csv?{range}"),
            &ana.access_token(),
            None
        )
        .0,
        403
    );
    assert_eq!(
        call(
            &w,
            "/v1/export/visits.csv?from=x&to=y",
            &mona.access_token(),
            None
        )
        .0,
        400
    );
}

fn a_job_completed_offline_while_cancelled_is_queued_with_its_evidence_and_resolved(w: World) {
    let tomas = w.device("tomas");
    let mona = w.device("mona");
    let shop = account(&w, &tomas, "Clinic");
    tomas.sync();
    let mut job = ServiceJob::new(w.meta("tomas"), shop, "repair");
    job.description = "Fridge does not cool".into();
    let job_id = mona
        .store()
        .create_stateful(&job, &mona.actor, t(0, HOUR))
        .expect("job");
    mona.sync();
    tomas.sync();
    tomas
        .store()
        .transition::<ServiceJob>(
            job_id,
            &tomas.actor,
            &TransitionRequest::new(JobStatus::InProgress, t(0, 2 * HOUR)),
            |_| {},
        )
        .expect("start");
    tomas.sync();
    mona.sync();

    // Offline on both sides: the technician completes, the office cancels.
    tomas
        .store()
        .transition::<ServiceJob>(
            job_id,
            &tomas.actor,
            &TransitionRequest::new(JobStatus::Completed, t(0, 3 * HOUR)),
            |j| {
                j.first_time_fix = Some(true);
                j.resolution = Some("Replaced the compressor relay".into());
            },
        )
        .expect("complete");
    mona.store()
        .transition::<ServiceJob>(
            job_id,
            &mona.actor,
            &TransitionRequest::new(JobStatus::Cancelled, t(0, 3 * HOUR - 60_000))
                .with_reason("duplicate of another job"),
            |_| {},
        )
        .expect("cancel");
    mona.sync();
    tomas.sync();

    let (status, queue) = json(&w, "/v1/conflicts", &mona.access_token(), None);
    assert_eq!(status, 200, "{queue}");
    let items = queue.as_array().expect("list");
    assert_eq!(items.len(), 1, "{queue}");
    let item = &items[0];
    assert_eq!(item["record_id"], job_id.to_string().as_str());
    assert_eq!(item["kind"], "service_job");
    assert_eq!(item["path"], "status");
    assert_eq!(item["shown"], "completed", "field evidence shows");
    assert_eq!(
        item["detected_by"]["id"],
        w.person("tomas").id.to_string().as_str()
    );
    let side = |value: &str| {
        item["sides"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["value"] == value))
            .unwrap_or_else(|| panic!("no side {value}: {item}"))
            .clone()
    };
    let done = side("completed");
    assert_eq!(done["by"]["id"], w.person("tomas").id.to_string().as_str());
    assert_eq!(
        done["device_id"],
        tomas
            .actor
            .device
            .map(|d| d.to_string())
            .unwrap_or_default()
            .as_str()
    );
    assert_eq!(done["event"]["at_ms"], t(0, 3 * HOUR).at_ms);
    assert_eq!(done["shown"], true);
    let cancelled = side("cancelled");
    assert_eq!(
        cancelled["by"]["id"],
        w.person("mona").id.to_string().as_str()
    );
    assert_eq!(cancelled["event"]["reason"], "duplicate of another job");
    assert_eq!(cancelled["shown"], false);
    let history: Vec<&str> = item["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|e| e["to"].as_str())
        .collect();
    assert!(
        history.contains(&"completed") && history.contains(&"cancelled"),
        "{history:?}"
    );
    assert_eq!(
        item["record"]["resolution"],
        "Replaced the compressor relay"
    );
    assert!(item["record"].get("history").is_none());

    // The dashboard counts it; reps may not see or resolve the queue.
    let day = date(0);
    let (_, dash) = json(
        &w,
        &format!("/v1/dashboard?from={day}&to={day}"),
        &mona.access_token(),
        None,
    );
    assert_eq!(dash["fleet"]["open_conflicts"], 1);
    let ana = w.device("ana");
    assert_eq!(json(&w, "/v1/conflicts", &ana.access_token(), None).0, 403);
    let resolve = format!("/v1/conflicts/{job_id}/resolve");
    assert_eq!(
        json(
            &w,
            &resolve,
            &ana.access_token(),
            Some(serde_json::json!({"choose": "cancelled"}))
        )
        .0,
        403
    );
    let (status, body) = json(
        &w,
        &resolve,
        &mona.access_token(),
        Some(serde_json::json!({"choose": "closed"})),
    );
    assert_eq!(status, 400, "only a clashing value: {body}");
    assert_eq!(
        json(
            &w,
            &format!("/v1/conflicts/{}/resolve", RecordId::new()),
            &mona.access_token(),
            Some(serde_json::json!({"choose": "cancelled"}))
        )
        .0,
        404
    );

    // The manager keeps the cancellation; both devices get it and the queue empties.
    let (status, body) = json(
        &w,
        &resolve,
        &mona.access_token(),
        Some(
            serde_json::json!({"choose": "cancelled", "comment": "the customer had called it off"}),
        ),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "cancelled");
    let (_, queue) = json(&w, "/v1/conflicts", &mona.access_token(), None);
    assert_eq!(queue.as_array().map(Vec::len), Some(0), "{queue}");
    let (_, dash) = json(
        &w,
        &format!("/v1/dashboard?from={day}&to={day}"),
        &mona.access_token(),
        None,
    );
    assert_eq!(dash["fleet"]["open_conflicts"], 0);
    for dev in [&tomas, &mona] {
        dev.sync();
        let j: ServiceJob = dev.store().read_stateful(job_id).expect("read");
        assert_eq!(j.status, JobStatus::Cancelled, "{}", dev.person.email);
        let conflicts = dev.store().conflicts(job_id).expect("conflicts");
        assert!(
            conflicts.iter().all(|c| c.path != "status"),
            "{conflicts:?}"
        );
        let history = dev
            .store()
            .doc(job_id)
            .expect("doc")
            .history()
            .expect("history");
        assert!(
            history
                .iter()
                .any(|e| e.reason.as_deref() == Some("the customer had called it off"))
        );
    }
    // Settled already.
    assert_eq!(
        json(
            &w,
            &resolve,
            &mona.access_token(),
            Some(serde_json::json!({"choose": "completed"}))
        )
        .0,
        404
    );
}

fn devices_report_their_sync_health_and_silent_ones_are_flagged(w: World) {
    let ana = w.device("ana");
    let mona = w.device("mona");
    let shop = account(&w, &ana, "Pastelaria");
    let v = Visit::planned(w.meta("ana"), shop, t(0, 9 * HOUR), t(0, 10 * HOUR));
    let visit_id = ana
        .store()
        .create_stateful(&v, &ana.actor, t(0, HOUR))
        .expect("visit");
    ana.sync();

    // Offline edits, then a sync whose pull fails: the push reported them.
    for i in 0..3 {
        ana.store()
            .update::<Visit>(visit_id, t(0, 2 * HOUR + i), |v| {
                v.notes = format!("note {i}")
            })
            .expect("edit");
    }
    let oldest = ana
        .store()
        .oldest_pending_ms()
        .expect("oldest")
        .expect("pending");
    ana.net().fail_pulls.store(true, Ordering::SeqCst);
    ana.net().pulls_before_failure.store(0, Ordering::SeqCst);
    assert!(ana.client.sync(&fieldsync_core::sync::NoProgress).is_err());
    let day = date(0);
    let path = format!("/v1/dashboard?from={day}&to={day}");
    let find = |dash: &Value| {
        dash["fleet"]["devices"]
            .as_array()
            .and_then(|d| {
                d.iter().find(|d| {
                    d["device_id"]
                        == ana
                            .actor
                            .device
                            .map(|d| d.to_string())
                            .unwrap_or_default()
                            .as_str()
                })
            })
            .cloned()
            .unwrap_or_else(|| panic!("ana's device is listed: {dash}"))
    };
    let (status, dash) = json(&w, &path, &mona.access_token(), None);
    assert_eq!(status, 200, "{dash}");
    let dev = find(&dash);
    assert_eq!(dev["unsynced_changes"], 3, "{dev}");
    assert_eq!(dev["oldest_unsynced_ms"], oldest);
    assert_eq!(dev["app_version"], "0.1.0");
    assert_eq!(dev["silent"], false);
    assert!(dev["last_sync_at"].as_i64().is_some());

    // A photo whose upload fails waits on the device: the pull says so.
    ana.net().fail_pulls.store(false, Ordering::SeqCst);
    ana.net().fail_chunks_after.store(0, Ordering::SeqCst);
    let photo = vec![7u8; 300_000];
    ana.store()
        .attach(
            visit_id,
            fieldsync_core::store::AttachmentKind::Photo,
            "image/jpeg",
            &photo,
            t(0, 3 * HOUR),
            None,
        )
        .expect("attach");
    ana.sync();
    let (_, dash) = json(&w, &path, &mona.access_token(), None);
    let dev = find(&dash);
    assert_eq!(dev["unsynced_changes"], 0, "{dev}");
    assert!(dev["oldest_unsynced_ms"].is_null());
    assert_eq!(dev["pending_attachment_bytes"], photo.len() as u64);

    // Two days without a sync: silent.
    w.execute_with_id(
        "UPDATE device_health SET last_sync_at = last_sync_at - 172800 WHERE device_id = $1",
        ana.actor.device.map(|d| *d.as_uuid()).unwrap_or_default(),
    );
    let (_, dash) = json(&w, &path, &mona.access_token(), None);
    let dev = find(&dash);
    assert_eq!(dev["silent"], true, "{dev}");
    assert!(
        dev["silent_for_secs"]
            .as_i64()
            .is_some_and(|s| s >= 172_800)
    );
    assert!(
        dash["fleet"]["silent_over_a_day"]
            .as_u64()
            .is_some_and(|n| n >= 1)
    );

    // An app that sends no figures still stamps its last sync.
    let body = fieldsync_core::protocol::encode(&fieldsync_core::protocol::PullRequest {
        log: None,
        history: None,
        cursor: 0,
        max_changes: 10,
        window: None,
        health: None,
    });
    let resp = ureq::post(format!("{}/v1/sync/pull", w.base))
        .header("authorization", format!("Bearer {}", ana.access_token()))
        .header("content-type", "application/cbor")
        .send(&body[..])
        .expect("pull");
    assert_eq!(resp.status().as_u16(), 200);
    let (_, dash) = json(&w, &path, &mona.access_token(), None);
    let dev = find(&dash);
    assert_eq!(dev["silent"], false, "{dev}");
    assert_eq!(
        dev["pending_attachment_bytes"],
        photo.len() as u64,
        "figures kept"
    );
}

/// The dashboard's cost grows with the fact rows of the range, not with the
/// documents: 1,000 completed visits synced from a phone, the dashboard timed
/// against what reading the same visits from their documents costs.
#[test]
fn the_dashboard_reads_facts_rather_than_documents() {
    const N: i64 = 1_000;
    let w = World::start(Backend::Sqlite);
    let ana = w.device("ana");
    let shop = account(&w, &ana, "Hipermercado");
    for i in 0..N {
        let start = t(-(i % 4), 8 * HOUR + (i / 4) * 60_000);
        let v = Visit::planned(
            w.meta("ana"),
            shop,
            start,
            DeviceTime::utc(start.at_ms + HOUR),
        );
        let id = ana
            .store()
            .create_stateful(&v, &ana.actor, t(-10, 0))
            .expect("plan");
        ana.store()
            .act(id, |d| {
                visit::check_in(d, &ana.actor, start, Some(SHOP), SITE)
            })
            .expect("in");
        ana.store()
            .act(id, |d| {
                visit::check_out(
                    d,
                    &ana.actor,
                    DeviceTime::utc(start.at_ms + 20 * 60_000),
                    Some(SHOP),
                    SITE,
                    VisitOutcome::NoOrder,
                )
            })
            .expect("out");
    }
    ana.sync();
    let mona = w.device("mona");
    let path = format!("/v1/dashboard?from={}&to={}", date(-3), date(0));
    let _ = json(&w, &path, &mona.access_token(), None);
    let started = std::time::Instant::now();
    let (status, dash) = json(&w, &path, &mona.access_token(), None);
    let from_facts = started.elapsed();
    assert_eq!(status, 200, "{dash}");
    assert_eq!(dash["visits"]["completed"], N);
    assert_eq!(dash["visits"]["time_on_site_min_total"], N * 20);

    // The alternative: open every visit's document.
    let started = std::time::Instant::now();
    let docs: Vec<Vec<u8>> = w.rt.block_on(async {
        fieldsync_server::on_pool!(&w.db, |pool, _uuid| {
            sqlx::query_scalar("SELECT doc FROM records WHERE kind = 'visit'")
                .fetch_all(pool)
                .await
                .expect("docs")
        })
    });
    let completed = docs
        .iter()
        .map(|b| fieldsync_core::model::RecordDoc::load(b).expect("load"))
        .filter(|d| {
            d.read_stateful::<Visit>()
                .is_ok_and(|v| v.status == VisitStatus::Completed)
        })
        .count();
    let from_documents = started.elapsed();
    assert_eq!(completed as i64, N);
    eprintln!(
        "{N} visits: dashboard over HTTP from facts {from_facts:?}; \
         loading and reading the documents alone {from_documents:?}"
    );
}
