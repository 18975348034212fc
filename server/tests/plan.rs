//! Planning and dispatch end to end, on SQLite and PostgreSQL: a manager plans
//! on the Plan page in headless chromium and the rep's live-connected device
//! has the visit without asking; jobs are created, assigned and reassigned
//! through the JSON API and reach the technicians' devices (and leave the old
//! one's); completed visits are reopened; planned visits nobody started turn
//! `missed` by the server's own periodic pass, on the server and the device.
//! Refusals (a rep planning, another team's people, no reason) answer like the
//! rest of the API. Screenshots: `target/screenshots/plan-*.png`.

use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fantoccini::Locator;
use fieldsync_core::RecordId;
use fieldsync_core::model::visit::{self, Site};
use fieldsync_core::model::{
    Assignment, AssignmentStatus, DeviceTime, Role, ServiceJob, Visit, VisitOutcome, VisitStatus,
};
use fieldsync_core::sync::{LiveEvent, LiveListener, LiveOptions};
use fieldsync_test_support::{
    Backend, Browser, Device, PASSWORD, SESSION_COOKIE, World, cookie_pair, http,
    on_both_databases, open, settled, sign_in, today,
};
use serde_json::{Value, json};

const DAY_MS: i64 = 86_400_000;

on_both_databases!(
    jobs_are_dispatched_and_reassigned_through_the_api,
    visits_are_planned_as_routes_reopened_and_cancelled,
    refusals_answer_like_the_rest_of_the_api,
    an_operator_marks_missed_visits_from_the_command_line,
);
on_both_databases!(with run_missed: planned_visits_nobody_started_turn_missed);

#[test]
fn a_manager_plans_on_the_page_and_the_rep_has_it_live_on_sqlite() {
    plan_in_the_browser(Backend::Sqlite, "sqlite");
}

#[test]
fn a_manager_plans_on_the_page_and_the_rep_has_it_live_on_postgres() {
    plan_in_the_browser(Backend::Postgres, "postgres");
}

/// A JSON call with `device`'s token: status and body.
fn api(w: &World, device: &Device, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    fieldsync_test_support::api(w, &device.access_token(), method, path, body)
}

/// An account of `dev`'s user, synced to the server.
fn account(w: &World, dev: &Device, name: &str) -> RecordId {
    let id = w.account_on(dev, name);
    let r = dev.sync();
    assert_eq!(r.rejected, 0, "{r:?}");
    id
}

fn ids(body: &Value) -> Vec<RecordId> {
    body["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_str().expect("id").parse().expect("record id"))
        .collect()
}

fn tomorrow(hour: i64) -> i64 {
    today(24 + hour).at_ms
}

fn jobs_are_dispatched_and_reassigned_through_the_api(w: World) {
    let ana = w.device("ana");
    let mona = w.device("mona");
    let tomas = w.device("tomas");
    let teo = w.add_person("teo", Role::Technician, w.north);
    let teo_phone = w.device_of(teo.clone(), fieldsync_test_support::fast_options());
    for d in [&ana, &mona, &tomas, &teo_phone] {
        d.sync();
    }
    let shop = account(&w, &ana, "Loja do Bairro");

    // A job, assigned to Tomás at once: his device gets both records.
    let (status, created) = api(
        &w,
        &mona,
        "POST",
        "/v1/jobs",
        Some(json!({
            "account_id": shop.to_string(),
            "job_type": "repair",
            "description": "Fridge not cooling",
            "priority": "high",
            "sla_due_ms": tomorrow(18),
            "assign": {"technician_id": w.person("tomas").id.to_string(),
                       "start_ms": tomorrow(9), "end_ms": tomorrow(11)},
        })),
    );
    assert_eq!(status, 201, "{created}");
    let job: RecordId = created["job_id"]
        .as_str()
        .expect("job")
        .parse()
        .expect("id");
    let first: RecordId = created["assignment_id"]
        .as_str()
        .expect("assignment")
        .parse()
        .expect("id");
    tomas.sync();
    let a: Assignment = tomas
        .store()
        .read_stateful(first)
        .expect("assignment on the device");
    assert_eq!(a.status, AssignmentStatus::Dispatched);
    assert_eq!(a.meta.owner, w.person("tomas").id);
    let j: ServiceJob = tomas.store().read_stateful(job).expect("job on the device");
    assert_eq!(j.description, "Fridge not cooling");
    assert!(j.sla_due.is_some());

    // Not accepted yet: the assignment itself moves to Teo, and leaves Tomás's device.
    let (status, body) = api(
        &w,
        &mona,
        "POST",
        &format!("/v1/assignments/{first}/reassign"),
        Some(json!({"technician_id": teo.id.to_string()})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), vec![first], "moved, same record");
    tomas.sync();
    teo_phone.sync();
    assert!(
        tomas.store().read_stateful::<Assignment>(first).is_err(),
        "the old technician's device no longer holds it"
    );
    let moved: Assignment = teo_phone.store().read_stateful(first).expect("moved");
    assert_eq!(moved.meta.owner, teo.id);

    // Accepted by Teo, then given back to Tomás: cancelled and replaced, so
    // Teo's record of what he accepted stays true.
    teo_phone
        .store()
        .act(first, |d| {
            d.transition::<Assignment>(
                &teo_phone.actor,
                &fieldsync_core::model::TransitionRequest::new(
                    AssignmentStatus::Accepted,
                    DeviceTime::now_utc(),
                ),
                |_| {},
            )
        })
        .expect("accept");
    assert_eq!(teo_phone.sync().rejected, 0);
    let (status, body) = api(
        &w,
        &mona,
        "POST",
        &format!("/v1/assignments/{first}/reassign"),
        Some(json!({"technician_id": w.person("tomas").id.to_string()})),
    );
    assert_eq!(status, 200, "{body}");
    let replacement = ids(&body)[0];
    assert_ne!(replacement, first);
    teo_phone.sync();
    tomas.sync();
    let old: Assignment = teo_phone.store().read_stateful(first).expect("kept");
    assert_eq!(old.status, AssignmentStatus::Cancelled);
    let new: Assignment = tomas
        .store()
        .read_stateful(replacement)
        .expect("replacement");
    assert_eq!(new.status, AssignmentStatus::Dispatched);
    assert_eq!(new.scheduled_start, a.scheduled_start, "same times");

    // A second assignment on the job, and the plan shows both people's days.
    let (status, body) = api(
        &w,
        &mona,
        "POST",
        &format!("/v1/jobs/{job}/assignments"),
        Some(json!({"technician_id": teo.id.to_string(),
                    "start_ms": tomorrow(13), "end_ms": tomorrow(14),
                    "promised_from_ms": tomorrow(13), "promised_to_ms": tomorrow(13) + 1_800_000})),
    );
    assert_eq!(status, 201, "{body}");
    let day = fieldsync_server::domain::figures::dates::format_day(tomorrow(0).div_euclid(DAY_MS));
    let (status, plan) = api(
        &w,
        &mona,
        "GET",
        &format!("/v1/plan?from={day}&days=1"),
        None,
    );
    assert_eq!(status, 200, "{plan}");
    let lane = |person: &fieldsync_test_support::Person| -> Vec<Value> {
        let (id, name) = (person.id.to_string(), person.name());
        plan["lanes"]
            .as_array()
            .expect("lanes")
            .iter()
            .find(|l| l["person_id"] == json!(id))
            .map(|l| l["items"].as_array().expect("items").clone())
            .unwrap_or_else(|| panic!("{name} has a lane: {plan}"))
    };
    assert_eq!(lane(&w.person("tomas")).len(), 1, "{plan}");
    assert_eq!(
        lane(&teo).len(),
        2,
        "the cancelled one and the new one: {plan}"
    );
    assert!(
        plan["lanes"]
            .as_array()
            .expect("lanes")
            .iter()
            .all(|l| l["person_id"] != json!(w.person("tiago").id.to_string())),
        "another team's technician is not on Mona's plan"
    );

    // Work started: no reassignment.
    for step in [
        AssignmentStatus::Accepted,
        AssignmentStatus::OnSite,
        AssignmentStatus::InProgress,
    ] {
        tomas
            .store()
            .act(replacement, |d| {
                d.transition::<Assignment>(
                    &tomas.actor,
                    &fieldsync_core::model::TransitionRequest::new(step, DeviceTime::now_utc()),
                    |_| {},
                )
            })
            .expect("step");
    }
    assert_eq!(tomas.sync().rejected, 0);
    let (status, body) = api(
        &w,
        &mona,
        "POST",
        &format!("/v1/assignments/{replacement}/reassign"),
        Some(json!({"technician_id": teo.id.to_string()})),
    );
    assert_eq!(status, 409, "{body}");
    let (status, _) = api(
        &w,
        &mona,
        "POST",
        &format!("/v1/assignments/{replacement}/cancel"),
        Some(json!({"reason": "customer called"})),
    );
    assert_eq!(status, 409, "no cancelling work in progress");
}

fn visits_are_planned_as_routes_reopened_and_cancelled(w: World) {
    let ana = w.device("ana");
    let mona = w.device("mona");
    ana.sync();
    mona.sync();
    let shop = account(&w, &ana, "Mercearia Central");

    // A route: three visits two weeks apart, in one call.
    let (status, body) = api(
        &w,
        &mona,
        "POST",
        "/v1/plan/visits",
        Some(
            json!({"rep_id": w.person("ana").id.to_string(), "account_id": shop.to_string(),
                    "start_ms": tomorrow(9), "end_ms": tomorrow(10),
                    "instructions": "Check the new shelf", "count": 3, "every_weeks": 2}),
        ),
    );
    assert_eq!(status, 201, "{body}");
    let route = ids(&body);
    assert_eq!(route.len(), 3);
    let starts: Vec<i64> = route
        .iter()
        .map(|id| {
            let v: Visit = w
                .server_doc(*id)
                .expect("stored")
                .read_stateful()
                .expect("visit");
            assert_eq!(v.meta.owner, w.person("ana").id);
            assert_eq!(v.instructions.as_deref(), Some("Check the new shelf"));
            v.planned_start.expect("start").at_ms
        })
        .collect();
    assert_eq!(
        starts,
        vec![
            tomorrow(9),
            tomorrow(9) + 14 * DAY_MS,
            tomorrow(9) + 28 * DAY_MS
        ]
    );
    // The device gets the one inside its window (tomorrow), not the later ones.
    ana.sync();
    let first: Visit = ana
        .store()
        .read_stateful(route[0])
        .expect("tomorrow's visit");
    assert_eq!(first.status, VisitStatus::Planned);
    assert!(ana.store().read_stateful::<Visit>(route[2]).is_err());

    // Cancel needs a reason; with one, the device sees it cancelled.
    let path = format!("/v1/visits/{}/cancel", route[1]);
    let (status, _) = api(&w, &mona, "POST", &path, Some(json!({"reason": " "})));
    assert_eq!(status, 400);
    let (status, _) = api(
        &w,
        &mona,
        "POST",
        &path,
        Some(json!({"reason": "shop closed"})),
    );
    assert_eq!(status, 204);
    let v: Visit = w
        .server_doc(route[1])
        .expect("stored")
        .read_stateful()
        .expect("visit");
    assert_eq!(v.status, VisitStatus::Cancelled);
    // An assignment path with a visit's id is not found.
    let (status, _) = api(
        &w,
        &mona,
        "POST",
        &format!("/v1/assignments/{}/cancel", route[0]),
        Some(json!({"reason": "x"})),
    );
    assert_eq!(status, 404);

    // Ana does today's visit; Mona reopens it with a reason; Ana sees it in
    // progress and checks out again.
    let visit_id = w.visit_on(&ana, shop);
    let site = Site {
        coords: None,
        radius_m: 100.0,
    };
    ana.store()
        .act(visit_id, |d| {
            visit::check_in(d, &ana.actor, today(9), None, site)
        })
        .expect("check in");
    ana.store()
        .act(visit_id, |d| {
            visit::check_out(d, &ana.actor, today(10), None, site, VisitOutcome::NoOrder)
        })
        .expect("check out");
    assert_eq!(ana.sync().rejected, 0);
    let reopen = format!("/v1/visits/{visit_id}/reopen");
    let (status, _) = api(&w, &mona, "POST", &reopen, Some(json!({})));
    assert_eq!(status, 400, "a reason is required");
    let (status, body) = api(
        &w,
        &mona,
        "POST",
        &reopen,
        Some(json!({"reason": "the outcome is wrong"})),
    );
    assert_eq!(status, 204, "{body}");
    let (status, _) = api(&w, &mona, "POST", &reopen, Some(json!({"reason": "again"})));
    assert_eq!(status, 409, "only a completed visit reopens");
    ana.sync();
    let v: Visit = ana.store().read_stateful(visit_id).expect("visit");
    assert_eq!(v.status, VisitStatus::InProgress);
    let history = ana
        .store()
        .doc(visit_id)
        .expect("doc")
        .history()
        .expect("history");
    // (Found by what it did: the history is in device time, and the visit's
    // field times may lie after the server's clock.)
    let last = history
        .iter()
        .find(|e| e.from.as_deref() == Some("completed"))
        .expect("the reopening");
    assert_eq!(last.by, w.person("mona").id, "the audit names the manager");
    assert_eq!(last.reason.as_deref(), Some("the outcome is wrong"));
    ana.store()
        .act(visit_id, |d| {
            visit::check_out(
                d,
                &ana.actor,
                today(11),
                None,
                site,
                VisitOutcome::OrderTaken,
            )
        })
        .expect("check out again");
    assert_eq!(ana.sync().rejected, 0);
}

fn refusals_answer_like_the_rest_of_the_api(w: World) {
    let ana = w.device("ana");
    let mona = w.device("mona");
    let sara = w.device("sara");
    for d in [&ana, &mona, &sara] {
        d.sync();
    }
    let shop = account(&w, &ana, "Padaria");
    // An account Mona cannot read: another team's in another territory (a
    // territory's accounts are read by everyone in it, whatever their team).
    let adam = w.device("adam");
    let south_shop = w.account_in(&adam, "Talho do Sul", w.add_territory("Algarve"));
    adam.store()
        .update::<fieldsync_core::model::Account>(south_shop, today(8), |a| a.meta.team = w.south)
        .expect("South's");
    assert_eq!(adam.sync().rejected, 0);
    let visit = |rep: &str, acc: RecordId| {
        json!({"rep_id": w.person(rep).id.to_string(), "account_id": acc.to_string(),
               "start_ms": tomorrow(9), "end_ms": tomorrow(10)})
    };
    // A rep does not plan for others, nor dispatch.
    let (status, _) = api(
        &w,
        &ana,
        "POST",
        "/v1/plan/visits",
        Some(visit("ana", shop)),
    );
    assert_eq!(status, 403);
    let (status, _) = api(&w, &ana, "GET", "/v1/plan", None);
    assert_eq!(status, 403);
    let mut backwards = visit("ana", shop);
    backwards["end_ms"] = json!(tomorrow(8));
    for (why, body, want) in [
        // Another team's rep, or an account Mona cannot read: not found, alike.
        ("another team's rep", visit("sara", shop), 404),
        ("another territory's account", visit("ana", south_shop), 404),
        ("no such account", visit("ana", RecordId::new()), 404),
        // A technician is not a rep; an end before the start is no visit.
        ("a technician", visit("tomas", shop), 400),
        ("an end before the start", backwards, 400),
    ] {
        let (status, answer) = api(&w, &mona, "POST", "/v1/plan/visits", Some(body));
        assert_eq!(status, want, "{why}: {answer}");
    }
    // A route at the account's frequency, when the account has none.
    let mut route = visit("ana", shop);
    route["count"] = json!(4);
    let (status, body) = api(&w, &mona, "POST", "/v1/plan/visits", Some(route));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("frequency")
    );
    // Malformed bodies and ids.
    let (status, _) = api(
        &w,
        &mona,
        "POST",
        "/v1/jobs",
        Some(json!({"job_type": "repair"})),
    );
    assert!(status == 400 || status == 422, "{status}");
    let (status, _) = api(
        &w,
        &mona,
        "POST",
        "/v1/visits/not-an-id/reopen",
        Some(json!({"reason": "x"})),
    );
    assert_eq!(status, 400);
    let (status, _) = api(
        &w,
        &mona,
        "POST",
        "/v1/jobs",
        Some(json!({"account_id": shop.to_string(), "job_type": "repair", "priority": "asap"})),
    );
    assert_eq!(status, 400);
    // Nothing was planned by any of it.
    let (status, plan) = api(&w, &mona, "GET", "/v1/plan?days=14", None);
    assert_eq!(status, 200);
    let items: usize = plan["lanes"]
        .as_array()
        .expect("lanes")
        .iter()
        .map(|l| l["items"].as_array().expect("items").len())
        .sum();
    assert_eq!(items, 0, "{plan}");

    // Under /web an unknown address is a page, not a JSON error.
    let reply = http(&w, "GET", "/web/no-such-page", "", &[]);
    assert_eq!(reply.status, 404);
    assert!(reply.body.contains("Page not found"), "{}", reply.body);
    assert!(reply.body.starts_with("<!DOCTYPE html>"));
    let reply = http(&w, "POST", "/web/plan/visits/x/nonsense", "", &[]);
    assert_eq!(reply.status, 404);
    assert!(reply.body.contains("Page not found"), "{}", reply.body);

    // The dashboard's figures link to the rows behind them, and each link opens.
    let session = cookie_pair(&sign_in(&w, "mona", PASSWORD), SESSION_COOKIE);
    let dashboard = http(&w, "GET", "/web/dashboard", &session, &[]);
    assert_eq!(dashboard.status, 200);
    let links: Vec<String> = dashboard
        .body
        .split("<dt><a href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|href| href.replace("&amp;", "&"))
        .collect();
    for wanted in [
        "/web/plan?from=",
        "/web/orders?status=confirmed",
        "/web/jobs?status=closed",
        "/web/jobs?sla_breached=true",
    ] {
        assert!(
            links.iter().any(|l| l.starts_with(wanted)),
            "{wanted} in {links:?}"
        );
    }
    for link in &links {
        let page = http(&w, "GET", link, &session, &[]);
        assert_eq!(page.status, 200, "{link}: {}", page.body);
    }
}

fn run_missed(backend: Backend, scenario: fn(World)) {
    scenario(World::start_with(backend, |a| {
        a.missed_visit_check_secs = Some(1);
    }));
}

fn planned_visits_nobody_started_turn_missed(w: World) {
    let ana = w.device("ana");
    ana.sync();
    let shop = account(&w, &ana, "Quiosque");
    let now = DeviceTime::now_utc().at_ms;
    let plan = |from: i64, to: i64| {
        let v = Visit::planned(
            w.meta("ana"),
            shop,
            DeviceTime::utc(from),
            DeviceTime::utc(to),
        );
        ana.store()
            .create_stateful(&v, &ana.actor, DeviceTime::utc(now - 5 * 3_600_000))
            .expect("visit")
    };
    // Ended three hours ago (past the two-hour grace), ended an hour ago
    // (inside it), and one the rep did (checked in): only the first is missed.
    let missed = plan(now - 4 * 3_600_000, now - 3 * 3_600_000);
    let recent = plan(now - 2 * 3_600_000, now - 3_600_000);
    let done = plan(now - 5 * 3_600_000, now - 4 * 3_600_000);
    let site = Site {
        coords: None,
        radius_m: 100.0,
    };
    ana.store()
        .act(done, |d| {
            visit::check_in(
                d,
                &ana.actor,
                DeviceTime::utc(now - 5 * 3_600_000),
                None,
                site,
            )
        })
        .expect("check in");
    assert_eq!(ana.sync().rejected, 0);

    let status = |id: RecordId| {
        w.server_doc(id)
            .expect("stored")
            .read_stateful::<Visit>()
            .expect("visit")
            .status
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while status(missed) != VisitStatus::Missed {
        assert!(
            Instant::now() < deadline,
            "the server did not mark the visit missed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A few more passes change nothing else.
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(status(recent), VisitStatus::Planned);
    assert_eq!(status(done), VisitStatus::InProgress);

    ana.sync();
    let v: Visit = ana.store().read_stateful(missed).expect("visit");
    assert_eq!(v.status, VisitStatus::Missed, "the device has it too");
    let history = ana
        .store()
        .doc(missed)
        .expect("doc")
        .history()
        .expect("history");
    let last = history.last().expect("an event");
    assert_eq!(last.role, Role::Server, "marked by the server itself");
    assert!(
        last.reason
            .as_deref()
            .is_some_and(|r| r.contains("120 minutes"))
    );
    // One mark, not one per pass.
    let missed_events = history.iter().filter(|e| e.to == "missed").count();
    assert_eq!(missed_events, 1);
}

fn an_operator_marks_missed_visits_from_the_command_line(w: World) {
    let ana = w.device("ana");
    ana.sync();
    let shop = account(&w, &ana, "Tabacaria");
    let now = DeviceTime::now_utc().at_ms;
    let v = Visit::planned(
        w.meta("ana"),
        shop,
        DeviceTime::utc(now - 3 * 3_600_000),
        DeviceTime::utc(now - 2 * 3_600_000),
    );
    let id = ana
        .store()
        .create_stateful(&v, &ana.actor, DeviceTime::utc(now - 4 * 3_600_000))
        .expect("visit");
    ana.sync();
    let mut args = vec![
        "visits".to_owned(),
        "mark-missed".to_owned(),
        "--data-dir".to_owned(),
        w.settings.data_dir.to_str().expect("utf-8").to_owned(),
    ];
    if let Some(url) = &w.settings.database_url {
        args.extend(["--database-url".to_owned(), url.clone()]);
    }
    let env = [("FIELDSYNC_JWT_SECRET", fieldsync_test_support::SECRET)];
    // Ended two hours ago: not missed with three hours' grace, missed with one.
    let out = fieldsync_test_support::fieldsync(
        &[args.clone(), vec!["--after-minutes".into(), "180".into()]].concat(),
        &env,
        None,
    );
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("marked 0 planned visit(s)"));
    let out = fieldsync_test_support::fieldsync(
        &[args, vec!["--after-minutes".into(), "60".into()]].concat(),
        &env,
        None,
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("marked 1 planned visit(s) missed"),
        "{out:?}"
    );
    ana.sync();
    let v: Visit = ana.store().read_stateful(id).expect("visit");
    assert_eq!(v.status, VisitStatus::Missed);
}

/// Forwards live events to the test thread.
struct Events(Mutex<std::sync::mpsc::Sender<LiveEvent>>);

impl LiveListener for Events {
    fn on_live(&self, event: LiveEvent) {
        if let Ok(tx) = self.0.lock() {
            let _ = tx.send(event);
        }
    }
}

fn wait_connected(rx: &Receiver<LiveEvent>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if let Ok(LiveEvent::Connected) = rx.recv_timeout(left) {
            return;
        }
    }
    panic!("the live channel did not connect");
}

/// Waits (up to 10 s) until the plan's notice says `text`: the page a form
/// sent to has replaced the one it was sent from (which may show a notice of
/// its own, from the form before).
async fn notice_says(b: &fantoccini::Client, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(notice) = b.find(Locator::Id("plan-notice")).await
            && let Ok(shown) = notice.text().await
            && shown.contains(text)
        {
            return;
        }
        assert!(Instant::now() < deadline, "the plan never said {text:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn choose(b: &fantoccini::Client, select: &str, value: &str) {
    b.find(Locator::Css(&format!("{select} option[value='{value}']")))
        .await
        .unwrap_or_else(|e| panic!("{select} offers {value}: {e}"))
        .click()
        .await
        .expect("choose");
}

async fn type_into(b: &fantoccini::Client, css: &str, text: &str) {
    let field = b.find(Locator::Css(css)).await.expect("field");
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

fn plan_in_the_browser(backend: Backend, label: &str) {
    let w = World::start(backend);
    let ana_device = w.device("ana");
    let tomas = w.device("tomas");
    ana_device.sync();
    tomas.sync();
    let shop = account(&w, &ana_device, "Café Central");
    let ana_id = w.person("ana").id;
    let Device { client, actor, .. } = ana_device;
    let ana = Arc::new(client);
    let (tx, rx) = channel();
    let live = ana.start_live(
        Arc::new(Events(Mutex::new(tx))),
        LiveOptions {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            ..LiveOptions::default()
        },
    );
    wait_connected(&rx);

    let browser = Browser::start(&w);
    let b = &browser.client;
    let base = &w.base;
    let day = fieldsync_server::domain::figures::dates::format_day(tomorrow(0).div_euclid(DAY_MS));
    let planned_in = w.rt.block_on(async {
        b.goto(&format!("{base}/web/plan")).await.expect("goto");
        settled(b, "#login-title").await;
        fieldsync_test_support::fill_login(b, "mona@acme.test", PASSWORD).await;
        settled(b, "#plan-title").await;

        // Tomorrow's plan: plan a visit for Ana at Café Central, 14:00–15:00.
        let html = open(b, &format!("{base}/web/plan?from={day}&view=day")).await;
        assert!(html.contains("Café Central"), "the account is offered");
        assert!(html.contains(&ana_id.to_string()), "Ana is offered: {html}");
        choose(b, "#visit-rep", &ana_id.to_string()).await;
        choose(b, "#visit-account", &shop.to_string()).await;
        type_into(b, "#visit-start", "14:00").await;
        type_into(b, "#visit-end", "15:00").await;
        type_into(b, "#visit-instructions", "Bring the new catalogue").await;
        let clicked = Instant::now();
        b.find(Locator::Css("#plan-visit button[type=submit]"))
            .await
            .expect("plan")
            .click()
            .await
            .expect("click");
        notice_says(b, "Visit planned").await;
        clicked
    });

    // The rep's device, live-connected, has it without asking.
    let deadline = Instant::now() + Duration::from_secs(10);
    let visit_id = loop {
        let found = ana
            .store()
            .all_of(fieldsync_core::model::RecordKind::Visit)
            .expect("visits")
            .into_iter()
            .map(|p| p.id)
            .find(|id| {
                ana.store()
                    .read_stateful::<Visit>(*id)
                    .is_ok_and(|v| v.instructions.as_deref() == Some("Bring the new catalogue"))
            });
        if let Some(id) = found {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "the visit did not reach the live device"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    println!(
        "plan page ({label}): a planned visit reached the rep's live device {} ms after the click",
        planned_in.elapsed().as_millis()
    );
    let v: Visit = ana.store().read_stateful(visit_id).expect("visit");
    assert_eq!(v.planned_start.expect("start").at_ms, tomorrow(14));
    assert_eq!(v.meta.owner, ana_id);

    // A job for Tomás at the same account, then a second visit that
    // overlaps the first: the plan flags the double booking.
    w.rt.block_on(async {
        choose(b, "#job-account", &shop.to_string()).await;
        type_into(b, "#job-description", "Coffee machine leaks").await;
        choose(b, "#job-technician", &w.person("tomas").id.to_string()).await;
        type_into(b, "#job-start", "10:00").await;
        type_into(b, "#job-end", "12:00").await;
        b.find(Locator::Css("#create-job button[type=submit]"))
            .await
            .expect("create")
            .click()
            .await
            .expect("click");
        notice_says(b, "Job created").await;
        choose(b, "#visit-rep", &ana_id.to_string()).await;
        choose(b, "#visit-account", &shop.to_string()).await;
        type_into(b, "#visit-start", "14:30").await;
        type_into(b, "#visit-end", "15:30").await;
        b.find(Locator::Css("#plan-visit button[type=submit]"))
            .await
            .expect("plan")
            .click()
            .await
            .expect("click");
        settled(b, "#double-booked").await;
        let html = b.source().await.expect("source");
        assert_eq!(
            html.matches("double-booked</span>").count(),
            2,
            "both visits flagged"
        );
        assert!(
            html.contains("Job: Café Central"),
            "an assignment shows its job's account"
        );
        browser.screenshot("plan", label).await;

        // A refused form shows the plan again with the reason.
        choose(b, "#visit-rep", &ana_id.to_string()).await;
        choose(b, "#visit-account", &shop.to_string()).await;
        type_into(b, "#visit-start", "16:00").await;
        type_into(b, "#visit-end", "15:00").await;
        b.find(Locator::Css("#plan-visit button[type=submit]"))
            .await
            .expect("plan")
            .click()
            .await
            .expect("click");
        settled(b, "#plan-notice.error").await;
        let html = b.source().await.expect("source");
        assert!(html.contains("the end must be after the start"), "{html}");
    });
    tomas.sync();
    let dispatched: Vec<RecordId> = tomas
        .store()
        .all_of(fieldsync_core::model::RecordKind::Assignment)
        .expect("assignments")
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(
        dispatched.len(),
        1,
        "the technician has the job's assignment"
    );
    let job = tomas
        .store()
        .read_stateful::<Assignment>(dispatched[0])
        .expect("assignment")
        .job_id;
    let j: ServiceJob = tomas.store().read_stateful(job).expect("job");
    assert_eq!(j.description, "Coffee machine leaks");

    // A visit Ana did today, reopened from the plan with a reason: her live
    // device has it in progress again.
    let site = Site {
        coords: None,
        radius_m: 100.0,
    };
    let done = ana
        .store()
        .create_stateful(
            &Visit::planned(w.meta("ana"), shop, today(1), today(2)),
            &actor,
            today(0),
        )
        .expect("visit");
    ana.store()
        .act(done, |d| visit::check_in(d, &actor, today(1), None, site))
        .expect("check in");
    ana.store()
        .act(done, |d| {
            visit::check_out(d, &actor, today(2), None, site, VisitOutcome::NoOrder)
        })
        .expect("check out");
    ana.sync(&fieldsync_core::sync::NoProgress).expect("sync");
    let today_day =
        fieldsync_server::domain::figures::dates::format_day(today(0).at_ms.div_euclid(DAY_MS));
    w.rt.block_on(async {
        open(b, &format!("{base}/web/plan?from={today_day}&view=day")).await;
        type_into(b, &format!("#reopen-{done}"), "The outcome is wrong").await;
        b.find(Locator::Css(&format!(
            "li[data-id='{done}'] form.reopen button"
        )))
        .await
        .expect("reopen button")
        .click()
        .await
        .expect("click");
        notice_says(b, "Visit reopened").await;
        browser.screenshot("plan-reopened", label).await;
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while ana
        .store()
        .read_stateful::<Visit>(done)
        .expect("visit")
        .status
        != VisitStatus::InProgress
    {
        assert!(
            Instant::now() < deadline,
            "the reopening did not reach the live device"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    live.stop();
    browser.close(&w);

    // The pages' refusals over plain HTTP: a rep is not let in.
    let rep = sign_in(&w, "ana", PASSWORD);
    assert_ne!(rep.status, 303, "a rep has no pages");
}
