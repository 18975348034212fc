//! The managers' pages in a real browser: Debian's headless `chromium` driven
//! through `chromedriver` (WebDriver) against the real server on a loopback
//! port, with a rep's real device (store and sync client) on the other side.
//! On SQLite and on PostgreSQL.
//!
//! The flow: the rep records a visit (check-in and check-out near the site, an
//! order, a photo) and submits its report; the manager signs in, opens the
//! inbox and the report, and requests changes with a comment; the rep's device
//! syncs, sees the request, resubmits; the manager approves; the device sees
//! the approval. Then two more reports are approved at once from the inbox.
//! Screenshots of the inbox and the report page are kept under
//! `target/screenshots/` (see docs/web.md).
//!
//! The test fails (it does not skip) when chromium or chromedriver is missing:
//! `cargo xtask deps` installs them.
//!
//! The pages' refusals (no session, wrong CSRF token, a rep signing in, a
//! request for changes without a comment) are checked over plain HTTP in
//! `pages_refuse_what_they_must`.

use fantoccini::Locator;
use fieldsync_core::RecordId;
use fieldsync_core::model::visit::{self, Site, Visit};
use fieldsync_core::model::{
    Account, Answer, AnswerValue, ChecklistResponse, ChecklistTemplate, DeviceTime, GeoPoint,
    JobStatus, KpiValue, Location, Money, Order, OrderLine, Qty, Question, QuestionKind,
    ServiceJob, Signer, TransitionRequest, VisitOutcome, VisitReport, order, report,
};
use fieldsync_core::store::AttachmentKind;
use fieldsync_test_support::{
    Backend, Browser, Device, LOGIN_CSRF_COOKIE, ORG, PASSWORD, SESSION_COOKIE, World, cookie_pair,
    csrf_of, http, open, settled, sign_in, source_says,
};

#[test]
fn a_manager_reviews_in_the_browser_on_sqlite() {
    review_in_the_browser(Backend::Sqlite, "sqlite");
}

#[test]
fn a_manager_reviews_in_the_browser_on_postgres() {
    review_in_the_browser(Backend::Postgres, "postgres");
}

/// The site of every account here: Praça do Comércio, Lisbon, 100 m fence.
const SITE: GeoPoint = GeoPoint {
    lat: 38.7075,
    lng: -9.1364,
    accuracy_m: None,
};
const FENCE_M: f64 = 100.0;

/// `hour` hours into today (UTC): inside every role's window.
fn today(hour: i64, minute: i64) -> DeviceTime {
    let now = DeviceTime::now_utc().at_ms;
    DeviceTime::utc(now - now.rem_euclid(86_400_000) + hour * 3_600_000 + minute * 60_000)
}

/// A point `north_m` metres north of the site.
fn north_of_site(north_m: f64) -> GeoPoint {
    GeoPoint {
        lat: SITE.lat + north_m / 111_195.0,
        lng: SITE.lng,
        accuracy_m: Some(10.0),
    }
}

fn account(w: &World, phone: &Device, name: &str) -> RecordId {
    let a = Account {
        meta: w.meta(phone.person.name()),
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
                address: "Praça do Comércio 1, Lisboa".into(),
                coords: Some(SITE),
                geofence_radius_m: FENCE_M,
                opening_hours: None,
            },
        )]
        .into_iter()
        .collect(),
    };
    phone.store().create(&a, today(0, 0)).expect("account")
}

/// A visit planned `hour`:00–`hour`:30, checked in `north_m` metres from the
/// site at `hour`:05 and out at `hour`:47, with a submitted report. Returns
/// (visit, report).
fn visit_with_report(
    w: &World,
    phone: &Device,
    account_id: RecordId,
    hour: i64,
    north_m: f64,
    summary: &str,
) -> (RecordId, RecordId) {
    let site = Site {
        coords: Some(SITE),
        radius_m: FENCE_M,
    };
    let v = Visit::planned(w.meta("ana"), account_id, today(hour, 0), today(hour, 30));
    let store = phone.store();
    let visit_id = store
        .create_stateful(&v, &phone.actor, today(0, 1))
        .expect("visit");
    let at = north_of_site(north_m);
    store
        .act(visit_id, |d| {
            visit::check_in(d, &phone.actor, today(hour, 5), Some(at), site)
        })
        .expect("check in");
    store
        .act(visit_id, |d| {
            visit::check_out(
                d,
                &phone.actor,
                today(hour, 47),
                Some(at),
                site,
                VisitOutcome::OrderTaken,
            )
        })
        .expect("check out");
    let report_id = store
        .create_stateful(
            &VisitReport::new(w.meta("ana"), visit_id),
            &phone.actor,
            today(hour, 48),
        )
        .expect("report");
    store
        .update::<VisitReport>(report_id, today(hour, 49), |r| {
            r.summary = summary.into();
            r.kpis.insert(
                "facings".into(),
                KpiValue {
                    target: Some(12.0),
                    actual: Some(9.0),
                    unit: "facings".into(),
                },
            );
        })
        .expect("write");
    store
        .act(report_id, |d| {
            report::submit(d, &phone.actor, today(hour, 50))
        })
        .expect("submit");
    (visit_id, report_id)
}

/// An order on the visit: 2 × 12.50 EUR and 3 × 4.00 EUR less 10 %, 23 % tax.
fn order_on(w: &World, phone: &Device, account_id: RecordId, visit_id: RecordId) -> RecordId {
    let mut o = Order::new(w.meta("ana"), account_id, "EUR");
    o.visit_id = Some(visit_id);
    let store = phone.store();
    let id = store
        .create_stateful(&o, &phone.actor, today(9, 40))
        .expect("order");
    let mut tea = OrderLine::new(RecordId::new(), Qty::units(2), Money::new(1_250, "EUR"));
    tea.description = Some("Green tea 500 g".into());
    tea.tax_rate_bp = 2_300;
    let mut cups = OrderLine::new(RecordId::new(), Qty::units(3), Money::new(400, "EUR"));
    cups.description = Some("Paper cups".into());
    cups.discount_percent_bp = Some(1_000);
    cups.tax_rate_bp = 2_300;
    for line in [tea, cups] {
        store
            .act(id, |d| order::add_line(d, &phone.actor, today(9, 41), line))
            .expect("line");
    }
    store
        .act(id, |d| order::submit(d, &phone.actor, today(9, 42)))
        .expect("submit order");
    id
}

/// The manager's "Shelf audit" template, answered by the rep on the visit.
fn checklist_on(w: &World, phone: &Device, visit_id: RecordId, photo: &str) {
    let laptop = w.device("mona");
    let question = |position, text: &str, kind| Question {
        position,
        text: text.into(),
        kind,
        choices: Vec::new(),
        required: true,
        show_if: None,
    };
    let template = ChecklistTemplate {
        meta: w.meta("mona"),
        name: "Shelf audit".into(),
        version: 1,
        published: true,
        family: None,
        supersedes: None,
        retired: false,
        questions: [
            (
                "photo".to_owned(),
                question(3, "Photo of the shelf", QuestionKind::Photo),
            ),
            (
                "stocked".to_owned(),
                question(1, "Is the display stocked?", QuestionKind::YesNo),
            ),
            (
                "facings".to_owned(),
                question(2, "Facings counted", QuestionKind::Number),
            ),
        ]
        .into_iter()
        .collect(),
    };
    let template_id = laptop
        .store()
        .create(&template, today(0, 0))
        .expect("template");
    laptop.sync();
    let by = w.person("ana").id;
    let answer = |value| Answer {
        value,
        at: today(9, 30),
        by,
    };
    let response = ChecklistResponse {
        meta: w.meta("ana"),
        template_id,
        template_version: 1,
        subject_id: visit_id,
        answers: [
            ("stocked".to_owned(), answer(AnswerValue::YesNo(true))),
            ("facings".to_owned(), answer(AnswerValue::Number(9.0))),
            (
                "photo".to_owned(),
                answer(AnswerValue::Photo(photo.to_owned())),
            ),
        ]
        .into_iter()
        .collect(),
        completed: true,
    };
    phone
        .store()
        .create(&response, today(9, 31))
        .expect("checklist response");
}

/// The order's figures, computed here independently of the shared totals code:
/// tea 2 × 12.50 = 25.00 net, 5.75 tax; cups 3 × 4.00 = 12.00 less 1.20 = 10.80
/// net, 2.484 → 2.48 tax. Net 35.80, total 44.03.
const ORDER_NET: &str = "35.80 EUR";
const ORDER_TOTAL: &str = "44.03 EUR";

fn review_in_the_browser(backend: Backend, label: &str) {
    let w = World::start(backend);
    let phone = w.device("ana");
    let hotel = account(&w, &phone, "Hotel Avenida");
    // Checked in and out 30 m from the site: inside the 100 m fence.
    let (visit_id, report_id) = visit_with_report(&w, &phone, hotel, 9, 30.0, "Met the buyer.");
    let order_id = order_on(&w, &phone, hotel, visit_id);
    // The customer signs the order on the rep's phone.
    let drawn = phone
        .store()
        .attach(
            order_id,
            AttachmentKind::Signature,
            "image/png",
            b"\x89PNG\r\n\x1a\n a signature drawn on the phone",
            today(9, 43),
            None,
        )
        .expect("signature image");
    phone
        .store()
        .sign_order(
            order_id,
            &phone.actor,
            today(9, 43),
            Signer {
                name: "Maria Lopes".into(),
                role: Some("owner".into()),
                image_sha256: drawn,
                gps: None,
            },
        )
        .expect("sign");
    let png = b"\x89PNG\r\n\x1a\n fieldsync shelf photo".to_vec();
    let photo = phone
        .store()
        .attach(
            visit_id,
            AttachmentKind::Photo,
            "image/png",
            &png,
            today(9, 20),
            None,
        )
        .expect("attach");
    checklist_on(&w, &phone, visit_id, &photo);
    let r = phone.sync();
    assert_eq!(
        r.rejected,
        0,
        "{r:?}: {:?}",
        phone.store().rejections().expect("ledger")
    );

    let browser = Browser::start(&w);
    let b = &browser.client;
    let base = &w.base;

    // Sign in: the inbox sends an anonymous visitor to the login form and back.
    w.rt.block_on(async {
        b.goto(&format!("{base}/web/inbox")).await.expect("goto");
        assert!(b.current_url().await.expect("url").path() == "/web/login");
        fieldsync_test_support::fill_login(b, "mona@acme.test", PASSWORD).await;
        settled(b, "table.inbox").await;
        assert_eq!(b.current_url().await.expect("url").path(), "/web/inbox");
        // Chromium keeps the default `Secure`, `__Host-` cookie over plain
        // HTTP on loopback (a secure context), so the pages work unchanged.
        let jar = b.get_all_cookies().await.expect("cookies");
        assert!(
            jar.iter()
                .any(|c| c.name() == "__Host-fieldsync_session" && c.secure() == Some(true)),
            "{jar:?}"
        );
        let html = b.source().await.expect("source");
        assert!(html.contains("Hotel Avenida"), "the report is listed");
        assert!(html.contains("Inside geofence"), "with its verdict");
        assert!(html.contains(ORDER_NET), "and its order value: {html}");
        assert!(html.contains("Reports listed per rep"), "the summary chart is drawn");
        browser.screenshot("inbox", label).await;
        // The same inbox on a tablet held upright.
        b.set_window_size(820, 1180).await.expect("tablet size");
        browser.screenshot("inbox-tablet", label).await;
        b.set_window_size(1280, 1000).await.expect("laptop size");

        // The report page.
        b.find(Locator::LinkText("Hotel Avenida"))
            .await
            .expect("link")
            .click()
            .await
            .expect("open");
        settled(b, "form.decision").await;
        assert_eq!(
            b.current_url().await.expect("url").path(),
            format!("/web/reports/{report_id}")
        );
        let html = b.source().await.expect("source");
        for expected in [
            "Met the buyer.",
            "Planned and actual times",
            "09:05 UTC+00:00",
            "09:47 UTC+00:00",
            "30 m",
            "Inside geofence",
            "Green tea 500 g",
            ORDER_NET,
            ORDER_TOTAL,
            "Main store",
            "facings",
            "Shelf audit (v1)",
            "Is the display stocked?",
            "Signature matches",
            "Signed by Maria Lopes",
        ] {
            assert!(html.contains(expected), "the report page shows {expected:?}");
        }
        let (stocked, facings, shelf) = (
            html.find("Is the display stocked?").expect("asked"),
            html.find("Facings counted").expect("asked"),
            html.find("Photo of the shelf").expect("asked"),
        );
        assert!(stocked < facings && facings < shelf, "answers in form order");
        let href = format!("/web/attachments/{photo}");
        assert!(html.contains(&href), "the photo's download is linked");
        assert!(
            html.contains(&format!("src=\"{href}/thumbnail\"")),
            "the photo shows as its thumbnail"
        );
        let status = b
            .execute(
                "return fetch(arguments[0]).then(r => r.status + ' ' + r.headers.get('content-type'))",
                vec![serde_json::json!(href)],
            )
            .await
            .expect("fetch the photo");
        assert_eq!(status, serde_json::json!("200 image/png"));
        // Tall enough for the whole report page.
        b.set_window_size(1280, 2800).await.expect("tall window");
        browser.screenshot("report", label).await;
        b.set_window_size(1280, 1000).await.expect("laptop size");

        // Request changes with a comment.
        b.find(Locator::Id("comment"))
            .await
            .expect("comment")
            .send_keys("Add the shelf count, please.")
            .await
            .expect("type");
        b.find(Locator::Css("form.decision button[value=request_changes]"))
            .await
            .expect("button")
            .click()
            .await
            .expect("request changes");
        let html = source_says(b, "Sent back for changes").await;
        assert!(html.contains("Sent back for changes"), "{html}");
    });

    // The rep's device sees the request, edits and resubmits.
    phone.sync();
    let back: VisitReport = phone.store().read_stateful(report_id).expect("read");
    assert_eq!(back.status, report::ReportStatus::ChangesRequested);
    assert!(
        back.comments
            .values()
            .any(|c| c.text == "Add the shelf count, please.")
    );
    phone
        .store()
        .update::<VisitReport>(report_id, today(10, 0), |r| {
            r.summary = "Met the buyer; 9 facings of 12.".into()
        })
        .expect("edit");
    phone
        .store()
        .act(report_id, |d| report::submit(d, &phone.actor, today(10, 1)))
        .expect("resubmit");
    phone.sync();

    // The manager approves the resubmitted report.
    w.rt.block_on(async {
        let html = open(b, &format!("{base}/web/reports/{report_id}")).await;
        assert!(html.contains("9 facings of 12"), "the new summary shows");
        assert!(
            html.contains("Add the shelf count, please."),
            "the thread shows"
        );
        b.find(Locator::Css("form.decision button[value=approve]"))
            .await
            .expect("button")
            .click()
            .await
            .expect("approve");
        let html = source_says(b, "Approved. The rep").await;
        assert!(html.contains("Approved. The rep"), "{html}");
    });
    phone.sync();
    let done: VisitReport = phone.store().read_stateful(report_id).expect("read");
    assert_eq!(done.status, report::ReportStatus::Approved);
    assert_eq!(done.reviewer, Some(w.person("mona").id));

    // Two more reports, one checked in 600 m away, approved at once.
    let kiosk = account(&w, &phone, "Quiosque Sol");
    let bakery = account(&w, &phone, "Padaria Central");
    let (_, far) = visit_with_report(&w, &phone, kiosk, 11, 600.0, "Shop was moving.");
    let (_, near) = visit_with_report(&w, &phone, bakery, 13, 0.0, "Restocked.");
    phone.sync();
    w.rt.block_on(async {
        let html = open(b, &format!("{base}/web/inbox?verdict=outside")).await;
        assert!(
            html.contains("Quiosque Sol") && !html.contains("Padaria Central"),
            "{html}"
        );
        assert!(
            !html.contains("Hotel Avenida"),
            "approved reports leave the inbox"
        );

        // Rep and date filters (the visits are today, UTC).
        let day = |offset: i64| {
            let ms = today(0, 0).at_ms + offset * 86_400_000;
            let days = ms.div_euclid(86_400_000);
            // Days since the epoch to a calendar date, the long way round.
            let mut y = 1970;
            let mut d = days;
            loop {
                let len = if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
                    366
                } else {
                    365
                };
                if d < len {
                    break;
                }
                d -= len;
                y += 1;
            }
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let months = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            let mut m = 0;
            while d >= months[m] {
                d -= months[m];
                m += 1;
            }
            format!("{y:04}-{:02}-{:02}", m + 1, d + 1)
        };
        let ana = w.person("ana").id;
        let (today_s, tomorrow) = (day(0), day(1));
        let html = open(
            b,
            &format!("{base}/web/inbox?rep={ana}&from={today_s}&to={today_s}"),
        )
        .await;
        assert!(
            html.contains("Quiosque Sol") && html.contains("Padaria Central"),
            "{html}"
        );
        let html = open(b, &format!("{base}/web/inbox?from={tomorrow}")).await;
        assert!(
            html.contains("No reports match"),
            "nothing from tomorrow on"
        );
        let ben = w.person("ben").id;
        let html = open(b, &format!("{base}/web/inbox?rep={ben}")).await;
        assert!(html.contains("No reports match"), "ben has none");

        let html = open(b, &format!("{base}/web/inbox?sort=account&dir=asc")).await;
        let (p, q) = (
            html.find("Padaria Central").expect("listed"),
            html.find("Quiosque Sol").expect("listed"),
        );
        assert!(p < q, "sorted by account");
        for id in [far, near] {
            b.find(Locator::Id(&format!("sel-{id}")))
                .await
                .expect("checkbox")
                .click()
                .await
                .expect("select");
        }
        let count = b
            .find(Locator::Css(".selected-count"))
            .await
            .expect("count")
            .text()
            .await
            .expect("text");
        assert!(count.contains("2 selected"), "the script counts: {count:?}");
        b.find(Locator::Css("fieldset.bulk button[value=approve]"))
            .await
            .expect("button")
            .click()
            .await
            .expect("approve selected");
        let html = source_says(b, "Approved: 2 reports.").await;
        assert!(html.contains("Approved: 2 reports."), "{html}");
        assert!(html.contains("No reports match"), "the inbox is empty now");
    });
    phone.sync();
    for id in [far, near] {
        let r: VisitReport = phone.store().read_stateful(id).expect("read");
        assert_eq!(r.status, report::ReportStatus::Approved);
    }

    // The dashboard of the last 7 days: three completed visits (one checked in
    // 600 m away) and the one order of 2 x 12.50 + 3 x 4.00 less 10 % = 35.80 EUR net.
    w.rt.block_on(async {
        b.find(Locator::LinkText("Dashboard"))
            .await
            .expect("navigation")
            .click()
            .await
            .expect("open the dashboard");
        settled(b, "#fig-completed").await;
        let text = |id: &'static str| async move {
            b.find(Locator::Id(id))
                .await
                .expect("figure")
                .text()
                .await
                .expect("text")
        };
        let completed = text("fig-completed").await;
        assert!(completed.starts_with("3 "), "{completed:?}");
        let value = text("fig-order-value").await;
        assert!(value.starts_with("35.80 EUR in 1 order,"), "{value:?}");
        let outside = text("fig-outside").await;
        assert!(outside.starts_with("1 of 3"), "{outside:?}");
        let compliance = text("fig-compliance").await;
        assert!(compliance.starts_with("100 %"), "{compliance:?}");
        let devices = b
            .find_all(Locator::Css("#fleet tbody tr"))
            .await
            .expect("fleet rows");
        assert!(
            devices.len() >= 2,
            "the rep's phone and this browser session"
        );
        let href = b
            .find(Locator::LinkText("Orders (CSV)"))
            .await
            .expect("CSV link")
            .attr("href")
            .await
            .expect("href")
            .expect("an href");
        let csv = b
            .execute(
                "return fetch(arguments[0]).then(r => r.text().then(t => r.status + '\\n' + t))",
                vec![serde_json::json!(href)],
            )
            .await
            .expect("fetch the CSV");
        let csv = csv.as_str().expect("text").to_owned();
        assert!(csv.starts_with("200\n"), "{csv}");
        assert_eq!(
            csv.lines().count(),
            3,
            "status, header and the one order: {csv}"
        );
        b.set_window_size(1280, 2400).await.expect("tall window");
        browser.screenshot("dashboard", label).await;
    });

    // Signing out ends the session and its device.
    w.rt.block_on(async {
        b.find(Locator::Css("header form button"))
            .await
            .expect("sign out")
            .click()
            .await
            .expect("click");
        settled(b, "#login-title").await;
        b.goto(&format!("{base}/web/inbox")).await.expect("goto");
        assert_eq!(b.current_url().await.expect("url").path(), "/web/login");
    });
    let live_web_devices =
        w.scalar("SELECT COUNT(*) FROM devices WHERE platform = 'web' AND revoked_at IS NULL");
    assert_eq!(live_web_devices, 0, "logout revoked the browser's device");
    browser.close(&w);
}

#[test]
fn pages_refuse_what_they_must() {
    let w = World::start(Backend::Sqlite);
    let phone = w.device("ana");
    let shop = account(&w, &phone, "Hotel Avenida");
    let (_, report_id) = visit_with_report(&w, &phone, shop, 9, 0.0, "Met the buyer.");
    phone.sync();

    // No session: to the login form, and back afterwards.
    let a = http(&w, "GET", "/web/inbox?status=submitted", "", &[]);
    assert_eq!(a.status, 303);
    assert_eq!(
        a.location.as_deref(),
        Some("/web/login?next=%2Fweb%2Finbox%3Fstatus%3Dsubmitted")
    );
    assert_eq!(
        http(&w, "GET", "/", "", &[]).location.as_deref(),
        Some("/web/inbox")
    );

    // The login form refuses a token it did not hand out, reps, and wrong passwords.
    let form = http(&w, "GET", "/web/login", "", &[]);
    let forged = http(
        &w,
        "POST",
        "/web/login",
        &cookie_pair(&form, LOGIN_CSRF_COOKIE),
        &[
            ("org", ORG),
            ("email", "mona@acme.test"),
            ("password", PASSWORD),
            ("csrf", "0000"),
        ],
    );
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(
        forged
            .cookies
            .iter()
            .all(|c| !c.starts_with(&format!("{SESSION_COOKIE}=")))
    );
    let rep = sign_in(&w, "ana", PASSWORD);
    assert_eq!(rep.status, 403);
    assert!(
        rep.body.contains("managers and administrators"),
        "{}",
        rep.body
    );
    let wrong = sign_in(&w, "mona", "not the password at all");
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("wrong organisation, email or password"));
    assert!(
        wrong.body.contains("value=\"mona@acme.test\""),
        "the email is kept"
    );

    // A manager gets a strict, HttpOnly session cookie and lands in the inbox.
    let ok = sign_in(&w, "mona", PASSWORD);
    assert_eq!(
        (ok.status, ok.location.as_deref()),
        (303, Some("/web/inbox"))
    );
    let set = ok
        .cookies
        .iter()
        .find(|c| c.starts_with(&format!("{SESSION_COOKIE}=")))
        .expect("session cookie");
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/;"));
    // Secure by default, with what the `__Host-` prefix requires (no Domain),
    // even over plain HTTP and whatever a proxy header says.
    assert!(
        set.ends_with("; Secure") && !set.contains("Domain"),
        "{set}"
    );
    let session = cookie_pair(&ok, SESSION_COOKIE);
    let inbox = http(&w, "GET", "/web/inbox", &session, &[]);
    assert_eq!(inbox.status, 200);
    assert!(inbox.body.contains("Hotel Avenida"));
    let csp = inbox.csp.expect("a content security policy");
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    let csrf = csrf_of(&inbox.body);
    let css = http(&w, "GET", "/web/assets/app.css", "", &[]);
    assert_eq!(css.status, 200);
    assert!(css.body.contains(":focus-visible"));

    // Decisions: a wrong token or a missing comment changes nothing.
    let path = format!("/web/reports/{report_id}/decision");
    let status = || {
        w.server_doc(report_id)
            .expect("stored")
            .status::<report::ReportStatus>()
            .expect("status")
    };
    let forged = http(
        &w,
        "POST",
        &path,
        &session,
        &[("csrf", "forged"), ("decision", "approve")],
    );
    assert_eq!(forged.status, 403);
    assert_eq!(status(), report::ReportStatus::Submitted);
    let bare = http(
        &w,
        "POST",
        &path,
        &session,
        &[
            ("csrf", &csrf),
            ("decision", "request_changes"),
            ("comment", "  "),
        ],
    );
    assert_eq!(bare.status, 400);
    assert!(bare.body.contains("comment is required"), "{}", bare.body);
    assert_eq!(status(), report::ReportStatus::Submitted);
    let approved = http(
        &w,
        "POST",
        &path,
        &session,
        &[("csrf", &csrf), ("decision", "approve"), ("comment", "")],
    );
    assert_eq!(approved.status, 303);
    assert_eq!(status(), report::ReportStatus::Approved);
    let again = http(
        &w,
        "POST",
        &path,
        &session,
        &[
            ("csrf", &csrf),
            ("decision", "request_changes"),
            ("comment", "Too late?"),
        ],
    );
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(
        again.body.contains("Too late?"),
        "the comment as typed is kept"
    );

    // Bad input gets a page that says what is wrong.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let resp = agent
        .post(&format!("{}/web/login", w.base))
        .send_json(serde_json::json!({ "org": "acme" }))
        .expect("post");
    assert_eq!(resp.status().as_u16(), 400);
    let page = resp.into_body().read_to_string().expect("body");
    assert!(page.contains("the form could not be read"), "{page}");
    let bad = http(&w, "GET", "/web/inbox?from=2026-02-31", &session, &[]);
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("2026-02-31"));
    assert_eq!(
        http(&w, "GET", "/web/reports/nope", &session, &[]).status,
        404
    );
    let unknown = format!("/web/reports/{}", RecordId::new());
    assert_eq!(http(&w, "GET", &unknown, &session, &[]).status, 404);

    // The browser session is a device: revoking it ends the session.
    let web_device: String = w.rt.block_on(async {
        fieldsync_server::on_pool!(&w.db, |pool, _uuid| {
            sqlx::query_scalar::<_, String>(
                "SELECT CAST(id AS TEXT) FROM devices WHERE platform = 'web'",
            )
            .fetch_one(pool)
            .await
            .expect("the web device")
        })
    });
    let token = w
        .device("mona")
        .client
        .session()
        .expect("session")
        .access_token;
    let revoked: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let resp = revoked
        .post(&format!("{}/v1/devices/{web_device}/revoke", w.base))
        .header("authorization", &format!("Bearer {token}"))
        .send_empty()
        .expect("revoke");
    assert_eq!(resp.status().as_u16(), 200);
    let after = http(&w, "GET", "/web/inbox", &session, &[]);
    assert_eq!(after.status, 303, "back to the login form");
}

/// A job completed offline by the technician while the office cancelled it
/// shows on the conflicts page with both sides, and the form settles it.
#[test]
fn a_conflict_is_shown_and_resolved_through_the_page() {
    let w = World::start(Backend::Sqlite);
    let tomas = w.device("tomas");
    let office = w.device("mona");
    let clinic = account(&w, &tomas, "Clinic");
    tomas.sync();
    let mut job = ServiceJob::new(w.meta("tomas"), clinic, "repair");
    job.description = "Fridge does not cool".into();
    let job_id = office
        .store()
        .create_stateful(&job, &office.actor, today(8, 0))
        .expect("job");
    let r = office.sync();
    assert_eq!(
        r.rejected,
        0,
        "{:?}",
        office.store().rejections().expect("ledger")
    );
    tomas.sync();
    tomas
        .store()
        .transition::<ServiceJob>(
            job_id,
            &tomas.actor,
            &TransitionRequest::new(JobStatus::InProgress, today(9, 0)),
            |_| {},
        )
        .expect("start");
    tomas.sync();
    office.sync();
    // Offline on both sides: the technician completes, the office cancels.
    tomas
        .store()
        .transition::<ServiceJob>(
            job_id,
            &tomas.actor,
            &TransitionRequest::new(JobStatus::Completed, today(10, 0)),
            |j| j.resolution = Some("Replaced the compressor relay".into()),
        )
        .expect("complete");
    office
        .store()
        .transition::<ServiceJob>(
            job_id,
            &office.actor,
            &TransitionRequest::new(JobStatus::Cancelled, today(9, 59))
                .with_reason("duplicate of another job"),
            |_| {},
        )
        .expect("cancel");
    office.sync();
    tomas.sync();

    // The pages need a session; the dashboard refuses a backwards range and
    // the downloads know only their three files.
    let anonymous = http(&w, "GET", "/web/conflicts", "", &[]);
    assert_eq!(anonymous.status, 303);
    let session = cookie_pair(&sign_in(&w, "mona", PASSWORD), SESSION_COOKIE);
    let backwards = http(
        &w,
        "GET",
        "/web/dashboard?from=2026-12-01&to=2026-11-01",
        &session,
        &[],
    );
    assert_eq!(backwards.status, 400, "{}", backwards.body);
    assert!(
        backwards.body.contains("`to` is before `from`"),
        "{}",
        backwards.body
    );
    assert_eq!(
        http(&w, "GET", "/web/export/users.csv", &session, &[]).status,
        404
    );
    let jobs = http(&w, "GET", "/web/export/jobs.csv", &session, &[]);
    assert_eq!(jobs.status, 200, "{}", jobs.body);
    assert_eq!(
        jobs.body.lines().count(),
        2,
        "the header and the job: {}",
        jobs.body
    );
    let dashboard = http(&w, "GET", "/web/dashboard", &session, &[]);
    assert!(
        dashboard.body.contains("1 open conflict<"),
        "{}",
        dashboard.body
    );

    let page = http(&w, "GET", "/web/conflicts", &session, &[]);
    assert_eq!(page.status, 200, "{}", page.body);
    let job = job_id.to_string();
    for evidence in [
        job.as_str(),
        "Fridge does not cool",
        "→ Completed",
        "→ Cancelled",
        "Reason: “duplicate of another job”",
        "Keep which status?",
    ] {
        assert!(
            page.body.contains(evidence),
            "{evidence:?} in {}",
            page.body
        );
    }
    let action = format!("/web/conflicts/{job}/resolve");
    assert!(page.body.contains(&action));
    let csrf = csrf_of(&page.body);

    // Refused: a forged token, and a value that is not one of the sides.
    let forged = http(
        &w,
        "POST",
        &action,
        &session,
        &[("csrf", "00"), ("choose", "completed")],
    );
    assert_eq!(forged.status, 403);
    let wrong = http(
        &w,
        "POST",
        &action,
        &session,
        &[("csrf", &csrf), ("choose", "closed")],
    );
    assert_eq!(wrong.status, 400, "{}", wrong.body);
    assert!(
        wrong.body.contains("choose one of the clashing values"),
        "{}",
        wrong.body
    );
    assert!(wrong.body.contains(&action), "the conflict is still listed");

    let done = http(
        &w,
        "POST",
        &action,
        &session,
        &[
            ("csrf", &csrf),
            ("choose", "completed"),
            ("comment", "The repair was done."),
        ],
    );
    assert_eq!(done.status, 303, "{}", done.body);
    let back = done.location.expect("back to the queue");
    let after = http(&w, "GET", &back, &session, &[]);
    assert!(
        after.body.contains("the record keeps “Completed”"),
        "{}",
        after.body
    );
    assert!(after.body.contains("No open conflicts."), "{}", after.body);
    let again = http(
        &w,
        "POST",
        &action,
        &session,
        &[("csrf", &csrf), ("choose", "completed")],
    );
    assert_eq!(again.status, 404, "{}", again.body);

    tomas.sync();
    let settled: ServiceJob = tomas.store().read_stateful(job_id).expect("read");
    assert_eq!(settled.status, JobStatus::Completed);
    let history = tomas
        .store()
        .doc(job_id)
        .expect("doc")
        .history()
        .expect("history");
    assert!(
        history
            .iter()
            .any(|e| e.reason.as_deref() == Some("The repair was done."))
    );
}
