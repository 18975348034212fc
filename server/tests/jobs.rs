//! Service jobs finish their life cycle, on SQLite and on PostgreSQL.
//!
//! A technician (a real device) completes the only assignment of a job
//! offline; after the sync the server has rolled the job up to `completed`
//! as itself (the audit names the server) and the technician's device has it
//! too; the manager sees it in the job list in a real browser, closes it with
//! a resolution on the job page, the first-time-fix and mean-time-to-complete
//! figures count it, and the technician's device sees `closed` after its next
//! sync. Screenshots: `target/screenshots/jobs-<db>.png`, `job-<db>.png`.
//!
//! Also: cancelling is refused while an assignment is in progress; a
//! technician cannot close (403 from the API, and a raw hostile push setting
//! `closed` or a resolution is refused by the shared rules); another team's
//! manager gets 404 exactly as for an unknown id; and the periodic sweep
//! repairs a job whose roll-up was missed (an assignment change stored
//! through the push transaction directly, as the demo seeder does, which
//! skips the reaction).

use fantoccini::Locator;
use fieldsync_core::RecordId;
use fieldsync_core::model::assignment;
use fieldsync_core::model::{
    Account, Assignment, AssignmentStatus, JobStatus, RecordDoc, Role, ServiceJob,
    TransitionRequest,
};
use fieldsync_core::protocol::{PushOutcome, RecordChanges, RejectCode};
use fieldsync_server::Caller;
use fieldsync_server::db::records;
use fieldsync_server::domain::authority::server_actor;
use fieldsync_server::domain::push;
use fieldsync_test_support::{
    Backend, Browser, Device, PASSWORD, World, fast_options, on_both_databases, settled,
    source_says, today,
};
use serde_json::Value;

on_both_databases!(
    cancelling_waits_for_the_work_to_stop,
    a_technician_cannot_close_a_job,
    another_teams_manager_finds_nothing,
    an_operator_cancels_a_job_from_the_command_line,
);
on_both_databases!(with run_with_sweep: the_sweep_repairs_a_missed_roll_up);

#[test]
fn a_job_completed_offline_is_closed_in_the_browser_on_sqlite() {
    completed_offline_then_closed(Backend::Sqlite, "sqlite");
}

#[test]
fn a_job_completed_offline_is_closed_in_the_browser_on_postgres() {
    completed_offline_then_closed(Backend::Postgres, "postgres");
}

fn run_with_sweep(backend: Backend, scenario: fn(World)) {
    scenario(World::start_with(backend, |args| {
        args.jobs_sweep_interval_secs = Some(1);
    }));
}

/// A JSON call with a device's token: (status, body).
fn api(w: &World, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    fieldsync_test_support::api(w, token, method, path, body)
}

/// Mona (north team's manager) opens a job for a customer of hers, with an
/// SLA due at 20:00 and the arrival promised between 09:00 and 11:00, and
/// dispatches it to Tomás. Returns (job, assignment).
fn dispatched_job(w: &World, mona: &Device) -> (RecordId, RecordId) {
    let account = Account {
        meta: w.meta("mona"),
        name: "Lavandaria Sol".into(),
        account_type: "customer".into(),
        account_status: "active".into(),
        code: None,
        price_list_id: None,
        visit_frequency_days: None,
        locations: Default::default(),
    };
    let account_id = mona.store().create(&account, today(7)).expect("account");
    let mut job = ServiceJob::new(w.meta("mona"), account_id, "repair");
    job.description = "Washer leaking".into();
    job.sla_due = Some(today(20));
    job.request_window_start = Some(today(9));
    job.request_window_end = Some(today(11));
    let job_id = mona
        .store()
        .create_stateful(&job, &mona.actor, today(8))
        .expect("job");
    let a = Assignment::new(w.meta("tomas"), job_id, today(9), today(13));
    let assignment_id = mona
        .store()
        .create_stateful(&a, &mona.actor, today(8))
        .expect("assignment");
    mona.store()
        .act(assignment_id, |d| {
            assignment::advance(
                d,
                &mona.actor,
                AssignmentStatus::Dispatched,
                today(8),
                None,
                None,
            )
        })
        .expect("dispatch");
    let r = mona.sync();
    assert_eq!(r.rejected, 0, "{r:?}");
    (job_id, assignment_id)
}

/// Moves the assignment on Tomás's device through `steps`, each at its hour.
fn work(tomas: &Device, assignment_id: RecordId, steps: &[(AssignmentStatus, i64)]) {
    for (to, hour) in steps {
        tomas
            .store()
            .act(assignment_id, |d| {
                assignment::advance(d, &tomas.actor, *to, today(*hour), None, None)
            })
            .unwrap_or_else(|e| panic!("{to:?}: {e}"));
    }
}

fn an_operator_cancels_a_job_from_the_command_line(w: World) {
    let mona = w.device("mona");
    mona.sync();
    let (job_id, _) = dispatched_job(&w, &mona);
    let mut args = vec![
        "job".to_owned(),
        "cancel".to_owned(),
        "--org".to_owned(),
        fieldsync_test_support::ORG.to_owned(),
        "--as".to_owned(),
        "mona@acme.test".to_owned(),
        "--id".to_owned(),
        job_id.to_string(),
        "--data-dir".to_owned(),
        w.settings.data_dir.to_str().expect("utf-8").to_owned(),
    ];
    if let Some(url) = &w.settings.database_url {
        args.extend(["--database-url".to_owned(), url.clone()]);
    }
    // A technician is not in the back office: refused, nothing written.
    let mut as_tomas = args.clone();
    as_tomas[5] = "tomas@acme.test".into();
    as_tomas.extend(["--reason".to_owned(), "no".to_owned()]);
    let out = fieldsync_test_support::fieldsync(&as_tomas, &[], None);
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(job_on_server(&w, job_id).status, JobStatus::Scheduled);
    args.extend([
        "--reason".to_owned(),
        "customer cancelled by phone".to_owned(),
    ]);
    let out = fieldsync_test_support::fieldsync(&args, &[], None);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("is cancelled"),
        "{out:?}"
    );
    let job = w.server_doc(job_id).expect("job");
    let history = job.history().expect("history");
    let cancel = history
        .iter()
        .find(|e| e.to == "cancelled")
        .expect("a cancellation");
    assert_eq!(cancel.by, w.person("mona").id, "written on Mona's behalf");
    assert_eq!(
        cancel.reason.as_deref(),
        Some("customer cancelled by phone")
    );
}

fn job_on_server(w: &World, id: RecordId) -> ServiceJob {
    w.server_doc(id)
        .expect("the job is stored")
        .read_stateful()
        .expect("a job")
}

fn utc_date() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn completed_offline_then_closed(backend: Backend, label: &str) {
    let w = World::start(backend);
    let mona = w.device("mona");
    let tomas = w.device("tomas");
    let (job_id, assignment_id) = dispatched_job(&w, &mona);
    // The new assignment rolled the job up to scheduled, as the server.
    assert_eq!(job_on_server(&w, job_id).status, JobStatus::Scheduled);
    tomas.sync();

    // Offline: the whole visit on the tablet, nothing sent meanwhile.
    let requests = tomas
        .net()
        .requests
        .load(std::sync::atomic::Ordering::SeqCst);
    work(
        &tomas,
        assignment_id,
        &[
            (AssignmentStatus::Accepted, 9),
            (AssignmentStatus::Traveling, 9),
            (AssignmentStatus::OnSite, 10),
            (AssignmentStatus::InProgress, 10),
            (AssignmentStatus::Completed, 12),
        ],
    );
    assert_eq!(
        tomas
            .net()
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        requests,
        "offline: nothing went over the network"
    );
    assert_eq!(
        tomas
            .store()
            .read_stateful::<ServiceJob>(job_id)
            .expect("job on the tablet")
            .status,
        JobStatus::Scheduled,
        "the device does not roll up"
    );

    // Back online: one sync.
    let r = tomas.sync();
    assert_eq!(r.rejected, 0, "{r:?}");
    let job = job_on_server(&w, job_id);
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.first_arrived_at, Some(today(10)), "the arrival on site");
    assert_eq!(job.completed_at, Some(today(12)), "the end of the work");
    let doc = w.server_doc(job_id).expect("job");
    let history = doc.history().expect("history");
    let (server, _) = server_actor(w.org);
    // (The history is in device time: the roll-up to scheduled is dated by
    // the server's clock, the others by the field's arrival and end of work.)
    let mut moves: Vec<(&str, Role)> = history
        .iter()
        .filter(|e| e.from.is_some())
        .map(|e| (e.to.as_str(), e.role))
        .collect();
    moves.sort_by_key(|m| m.0);
    assert_eq!(
        moves,
        vec![
            ("completed", Role::Server),
            ("in_progress", Role::Server),
            ("scheduled", Role::Server),
        ]
    );
    assert!(
        history
            .iter()
            .filter(|e| e.from.is_some())
            .all(|e| e.by == server.user)
    );
    // The audit trail names the server, on no device.
    let (status, audit) = api(
        &w,
        "GET",
        &format!("/v1/records/{job_id}/audit"),
        &mona.access_token(),
        None,
    );
    assert_eq!(status, 200, "{audit}");
    let by_server = audit
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["user_id"] == Value::String(server.user.to_string()))
        .collect::<Vec<_>>();
    assert!(!by_server.is_empty(), "{audit}");
    assert!(by_server.iter().all(|e| e["device_id"].is_null()));
    // The technician's device pulled the roll-up in the same sync.
    assert_eq!(
        tomas
            .store()
            .read_stateful::<ServiceJob>(job_id)
            .expect("job")
            .status,
        JobStatus::Completed
    );

    // The manager's job list (JSON) has it, completed, with Tomás.
    let (status, list) = api(
        &w,
        "GET",
        "/v1/jobs?status=completed",
        &mona.access_token(),
        None,
    );
    assert_eq!(status, 200, "{list}");
    let rows = list["jobs"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{list}");
    assert_eq!(rows[0]["id"], job_id.to_string());
    assert_eq!(rows[0]["technicians"][0]["name"], "tomas");
    assert_eq!(rows[0]["sla_breached"], false);

    // In the browser: the list, the job page, the close form.
    let browser = Browser::start(&w);
    let b = &browser.client;
    let base = &w.base;
    w.rt.block_on(async {
        b.goto(&format!("{base}/web/jobs")).await.expect("goto");
        assert_eq!(b.current_url().await.expect("url").path(), "/web/login");
        fieldsync_test_support::fill_login(b, "mona@acme.test", PASSWORD).await;
        settled(b, "table.jobs").await;
        assert_eq!(b.current_url().await.expect("url").path(), "/web/jobs");
        let html = b.source().await.expect("source");
        assert!(html.contains("Lavandaria Sol"), "the job is listed");
        assert!(html.contains("badge completed"), "as completed");
        assert!(html.contains("tomas (completed)"), "with its technician");
        assert!(
            html.contains("aria-current=\"page\">Jobs"),
            "the nav shows where"
        );
        browser.screenshot("jobs", label).await;

        // Keyboard: the customer's link is focusable and opens the job.
        let link = b.find(Locator::Css("table.jobs td a")).await.expect("link");
        link.send_keys("\u{e007}").await.expect("enter");
        settled(b, "#close-form").await;
        let html = b.source().await.expect("source");
        assert!(html.contains("Washer leaking"));
        assert!(html.contains("Fieldsync (roll-up from the assignments)"));
        assert!(html.contains("Kept"), "arrived inside the promised window");
        b.set_window_size(1280, 2400).await.expect("tall window");
        browser.screenshot("job", label).await;
        b.set_window_size(1280, 1000).await.expect("laptop size");

        b.find(Locator::Id("resolution"))
            .await
            .expect("resolution")
            .send_keys("Door seal replaced, tested a full cycle")
            .await
            .expect("type");
        b.find(Locator::Id("ftf-yes"))
            .await
            .expect("yes")
            .click()
            .await
            .expect("yes");
        b.find(Locator::Id("close"))
            .await
            .expect("close")
            .click()
            .await
            .expect("close");
        let html = source_says(b, "Closed. Devices show it").await;
        assert!(html.contains("Closed. Devices show it"), "{html}");
        assert!(html.contains("badge closed"));
    });
    browser.close(&w);

    let job = job_on_server(&w, job_id);
    assert_eq!(job.status, JobStatus::Closed);
    assert_eq!(
        job.resolution.as_deref(),
        Some("Door seal replaced, tested a full cycle")
    );
    assert_eq!(job.first_time_fix, Some(true));
    assert!(job.closed_at.is_some());

    // The figures count it: closed, fixed first time, 240 minutes (08:00 to 12:00).
    let day = utc_date();
    let (status, dash) = api(
        &w,
        "GET",
        &format!("/v1/dashboard?from={day}&to={day}"),
        &mona.access_token(),
        None,
    );
    assert_eq!(status, 200, "{dash}");
    let jobs = &dash["jobs"];
    assert_eq!(jobs["closed"], 1, "{jobs}");
    assert_eq!(jobs["first_time_fix_known"], 1, "{jobs}");
    assert_eq!(jobs["first_time_fixed"], 1, "{jobs}");
    assert_eq!(jobs["first_time_fix_rate"].as_f64(), Some(1.0), "{jobs}");
    assert_eq!(jobs["mean_time_to_complete_min"].as_f64(), Some(240.0));
    assert_eq!(jobs["promises_known"], 1, "{jobs}");
    assert_eq!(jobs["broken_promises"], 0, "{jobs}");

    // The technician's device sees the close after its next sync.
    tomas.sync();
    let on_tablet: ServiceJob = tomas.store().read_stateful(job_id).expect("job");
    assert_eq!(on_tablet.status, JobStatus::Closed);
    assert_eq!(on_tablet.first_time_fix, Some(true));
}

fn cancelling_waits_for_the_work_to_stop(w: World) {
    let mona = w.device("mona");
    let tomas = w.device("tomas");
    let (job_id, assignment_id) = dispatched_job(&w, &mona);
    tomas.sync();
    work(
        &tomas,
        assignment_id,
        &[
            (AssignmentStatus::Accepted, 9),
            (AssignmentStatus::Traveling, 9),
        ],
    );
    assert_eq!(tomas.sync().rejected, 0);
    let travelling = job_on_server(&w, job_id);
    assert_eq!(travelling.status, JobStatus::InProgress);
    assert_eq!(travelling.first_arrived_at, None, "not arrived yet");
    let path = format!("/v1/jobs/{job_id}/cancel");
    let token = mona.access_token();
    let (status, body) = api(&w, "POST", &path, &token, Some(serde_json::json!({})));
    assert_eq!(status, 400, "a reason is required: {body}");
    let (status, body) = api(
        &w,
        "POST",
        &path,
        &token,
        Some(serde_json::json!({"reason": "customer called"})),
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("in progress")),
        "{body}"
    );
    assert_eq!(job_on_server(&w, job_id).status, JobStatus::InProgress);
    // Closing is only for completed jobs.
    let (status, body) = api(
        &w,
        "POST",
        &format!("/v1/jobs/{job_id}/close"),
        &token,
        Some(serde_json::json!({"resolution": "done", "first_time_fix": true})),
    );
    assert_eq!(status, 409, "{body}");

    // On site: the arrival reaches the job without a status move.
    work(&tomas, assignment_id, &[(AssignmentStatus::OnSite, 10)]);
    assert_eq!(tomas.sync().rejected, 0);
    assert_eq!(job_on_server(&w, job_id).first_arrived_at, Some(today(10)));

    // A job nobody works on yet is cancelled, and its technician learns it.
    let (other_job, _) = dispatched_job(&w, &mona);
    let (status, body) = api(
        &w,
        "POST",
        &format!("/v1/jobs/{other_job}/cancel"),
        &token,
        Some(serde_json::json!({"reason": "duplicate of another job"})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "cancelled");
    let cancelled = w.server_doc(other_job).expect("job");
    // (Found by what it did, not by place: the history is in device time,
    // and the test's field times may lie after the server's clock.)
    let history = cancelled.history().expect("history");
    let last = history
        .iter()
        .find(|e| e.to == "cancelled")
        .expect("a cancellation event");
    assert_eq!(last.by, w.person("mona").id, "written on Mona's behalf");
    assert_eq!(last.reason.as_deref(), Some("duplicate of another job"));
    tomas.sync();
    assert_eq!(
        tomas
            .store()
            .read_stateful::<ServiceJob>(other_job)
            .expect("job")
            .status,
        JobStatus::Cancelled
    );
}

fn a_technician_cannot_close_a_job(w: World) {
    let mona = w.device("mona");
    let tomas = w.device("tomas");
    let (job_id, assignment_id) = dispatched_job(&w, &mona);
    tomas.sync();
    work(
        &tomas,
        assignment_id,
        &[
            (AssignmentStatus::Accepted, 9),
            (AssignmentStatus::OnSite, 10),
            (AssignmentStatus::InProgress, 10),
            (AssignmentStatus::Completed, 11),
        ],
    );
    assert_eq!(tomas.sync().rejected, 0);
    assert_eq!(job_on_server(&w, job_id).status, JobStatus::Completed);

    // The API: not for technicians.
    let (status, body) = api(
        &w,
        "POST",
        &format!("/v1/jobs/{job_id}/close"),
        &tomas.access_token(),
        Some(serde_json::json!({"resolution": "fixed it", "first_time_fix": true})),
    );
    assert_eq!(status, 403, "{body}");
    let (status, _) = api(&w, "GET", "/v1/jobs", &tomas.access_token(), None);
    assert_eq!(status, 403);

    // A raw push closing the job, its history event claiming a manager.
    let claimed = fieldsync_core::model::Actor::on_device(
        tomas.person.id,
        Role::Manager,
        tomas.actor.device.expect("a device"),
    );
    let out = tomas.push_forged(w.server_doc(job_id).expect("copy"), |doc| {
        doc.transition::<ServiceJob>(
            &claimed,
            &TransitionRequest::new(JobStatus::Closed, today(12)),
            |j| j.resolution = Some("closed it myself".into()),
        )
        .expect("the forged change is made");
    });
    match out {
        PushOutcome::Rejected(r) => {
            assert!(
                matches!(r.code, RejectCode::Transition | RejectCode::Forbidden),
                "{r:?}"
            );
        }
        other => panic!("a technician closed a job: {other:?}"),
    }
    // A raw write of the resolution on the completed job.
    let out = tomas.push_forged(w.server_doc(job_id).expect("copy"), |doc| {
        doc.update_by::<ServiceJob>(None, today(12), |j| {
            j.resolution = Some("my own resolution".into());
            j.first_time_fix = Some(true);
        })
        .expect("the forged change is made");
    });
    assert!(
        matches!(out, PushOutcome::Rejected(_)),
        "a technician wrote the resolution of a completed job: {out:?}"
    );
    let job = job_on_server(&w, job_id);
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.resolution, None);
    assert_eq!(job.first_time_fix, None);
}

fn another_teams_manager_finds_nothing(w: World) {
    let mona = w.device("mona");
    let (job_id, _) = dispatched_job(&w, &mona);
    let sven = w.add_person("sven", Role::Manager, w.south);
    let sven = w.device_of(sven, fast_options());
    let token = sven.access_token();
    let unknown = RecordId::new();
    for id in [job_id, unknown] {
        let (status, body) = api(&w, "GET", &format!("/v1/jobs/{id}"), &token, None);
        assert_eq!(status, 404, "{body}");
        let (status, closed) = api(
            &w,
            "POST",
            &format!("/v1/jobs/{id}/cancel"),
            &token,
            Some(serde_json::json!({"reason": "not mine"})),
        );
        assert_eq!(status, 404, "{closed}");
        assert_eq!(closed, body, "a job of another team looks like no job");
    }
    let (status, list) = api(&w, "GET", "/v1/jobs", &token, None);
    assert_eq!(status, 200);
    assert_eq!(list["jobs"].as_array().map(Vec::len), Some(0), "{list}");
    // Mona sees hers; the admin sees it too.
    let (status, detail) = api(
        &w,
        "GET",
        &format!("/v1/jobs/{job_id}"),
        &mona.access_token(),
        None,
    );
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["job"]["status"], "scheduled");
    assert_eq!(detail["assignments"].as_array().map(Vec::len), Some(1));
    let adam = w.device("adam");
    let (status, _) = api(
        &w,
        "GET",
        &format!("/v1/jobs/{job_id}"),
        &adam.access_token(),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(job_on_server(&w, job_id).status, JobStatus::Scheduled);
}

fn the_sweep_repairs_a_missed_roll_up(w: World) {
    let mona = w.device("mona");
    let tomas = w.device("tomas");
    let (job_id, assignment_id) = dispatched_job(&w, &mona);
    tomas.sync();
    assert_eq!(job_on_server(&w, job_id).status, JobStatus::Scheduled);

    // Tomás's work stored straight through the push transaction (as the demo
    // seeder stores), which skips the reaction: the job is left behind.
    let person = w.person("tomas");
    let caller = Caller {
        actor: tomas.actor.clone(),
        org: w.org,
        team: Some(person.team),
        territory: Some(w.territory),
        display_name: "tomas".into(),
        actor_id: tomas.actor_id(),
        window: None,
    };
    let mut doc: RecordDoc = w.server_doc(assignment_id).expect("assignment");
    doc.set_actor(tomas.actor_id());
    let before = doc.heads();
    for (to, hour) in [
        (AssignmentStatus::Accepted, 9),
        (AssignmentStatus::OnSite, 10),
        (AssignmentStatus::InProgress, 10),
        (AssignmentStatus::Completed, 12),
    ] {
        assignment::advance(&mut doc, &tomas.actor, to, today(hour), None, None).expect("step");
    }
    let changes = doc
        .changes_since(&before)
        .iter()
        .map(|c| serde_bytes::ByteBuf::from(c.raw_bytes().to_vec()))
        .collect();
    let recs = vec![RecordChanges {
        id: assignment_id,
        kind: fieldsync_core::model::RecordKind::Assignment,
        changes,
    }];
    let applied =
        w.rt.block_on(records::apply_push(
            &w.db,
            &caller,
            uuid::Uuid::now_v7(),
            &recs,
            |loaded| push::decide_all(&caller, &recs, loaded, &[], &[], std::time::Duration::MAX),
        ))
        .expect("stored");
    assert!(applied.results.iter().all(|(_, r)| r.is_ok()));
    let stored: Assignment = w
        .server_doc(assignment_id)
        .expect("assignment")
        .read_stateful()
        .expect("read");
    assert_eq!(stored.status, AssignmentStatus::Completed);

    // The sweep (every second here) finds the job behind its assignments.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let job = job_on_server(&w, job_id);
        if job.status == JobStatus::Completed {
            assert_eq!(job.completed_at, Some(today(12)));
            assert_eq!(job.first_arrived_at, Some(today(10)));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sweep did not repair the job: {:?}",
            job.status
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Once repaired it stays as it is: the next passes write nothing.
    let len = w.log_len();
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    assert_eq!(w.log_len(), len, "the sweep is idempotent");
    tomas.sync();
    assert_eq!(
        tomas
            .store()
            .read_stateful::<ServiceJob>(job_id)
            .expect("job")
            .status,
        JobStatus::Completed
    );
}
