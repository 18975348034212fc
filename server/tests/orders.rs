//! The office's side of orders and time, end to end on SQLite and on
//! PostgreSQL, with real devices, real HTTP and (for the approval queue) a
//! real headless chromium.
//!
//! - A rep's order within the price list's policy is `confirmed` by the
//!   server in the push that submits it; one beyond it is `pending_approval`
//!   on the rep's device after the sync, with the reasons.
//! - The manager approves it on the web page (screenshots
//!   `orders-queue-<db>.png`, `order-<db>.png` under `target/screenshots/`),
//!   and a technician's time entry on the time approvals page (`time-<db>.png`);
//!   the rep's device sees `confirmed` after its next sync, with the manager
//!   named in the history, and any further edit of its lines is refused: by
//!   the device store, and by the server for a raw push built by hand.
//! - Through the JSON API: a rejection needs a comment, a rep may not decide
//!   (403), a manager of another team does not find the order (404), an
//!   administrator records fulfilment (a manager may not), the CLI records it
//!   as the server.
//! - Time entries: the manager approves one and rejects another; the
//!   technician's device receives both.

use std::collections::BTreeMap;

use fantoccini::Locator;
use fieldsync_core::RecordId;
use fieldsync_core::model::assignment::{self, Approval, Assignment, TimeEntry, TimeKind};
use fieldsync_core::model::order::{self, Order, OrderLine, OrderStatus};
use fieldsync_core::model::{Money, PriceItem, PriceList, Product, Qty, Role, ServiceJob};
use fieldsync_core::protocol::{PushOutcome, RejectCode};
use fieldsync_test_support::{
    Backend, Browser, Device, ORG, PASSWORD, World, fast_options, fieldsync, on_both_databases,
    open, settled, today,
};

on_both_databases!(
    decisions_and_fulfilment_through_the_api,
    time_entries_are_approved_and_rejected,
);

#[test]
fn a_manager_approves_an_order_in_the_browser_on_sqlite() {
    approval_in_the_browser(Backend::Sqlite, "sqlite");
}

#[test]
fn a_manager_approves_an_order_in_the_browser_on_postgres() {
    approval_in_the_browser(Backend::Postgres, "postgres");
}

/// The office's catalogue, made on the manager's device and synced: one
/// product at 10.00 EUR, at most 10 % off. Returns (product, list).
fn catalogue(w: &World, mona: &Device) -> (RecordId, RecordId) {
    let product = Product {
        meta: w.meta("mona"),
        sku: "TEA-500".into(),
        name: "Green tea 500 g".into(),
        unit: "pcs".into(),
        serialized: false,
        spare_part: false,
        active: true,
    };
    let product = mona.store().create(&product, today(7)).expect("product");
    let list = PriceList {
        territory_default: false,
        meta: w.meta("mona"),
        name: "Retail 2026".into(),
        currency: "EUR".into(),
        items: BTreeMap::from([(
            product,
            PriceItem {
                unit_price: Money::new(1_000, "EUR"),
                max_discount_bp: 1_000,
            },
        )]),
    };
    let list = mona.store().create(&list, today(7)).expect("price list");
    assert_eq!(mona.sync().rejected, 0);
    (product, list)
}

/// A submitted order on the rep's device: 3 units at `discount_bp` off.
fn take_order(
    w: &World,
    rep: &Device,
    shop: RecordId,
    (product, list): (RecordId, RecordId),
    discount_bp: u32,
) -> RecordId {
    let mut o = Order::new(w.meta_of(&rep.person), shop, "EUR");
    o.price_list_id = Some(list);
    let id = rep
        .store()
        .create_stateful(&o, &rep.actor, today(9))
        .expect("order");
    let mut line = OrderLine::new(product, Qty::units(3), Money::new(1_000, "EUR"));
    line.discount_percent_bp = Some(discount_bp);
    line.description = Some("Green tea 500 g".into());
    line.tax_rate_bp = 2_300;
    rep.store()
        .act(id, |d| {
            order::add_line(d, &rep.actor, today(9), line).map(|_| ())
        })
        .expect("line");
    rep.store()
        .act(id, |d| order::submit(d, &rep.actor, today(10)).map(|_| ()))
        .expect("submit");
    id
}

fn status_on(dev: &Device, id: RecordId) -> OrderStatus {
    dev.store()
        .doc(id)
        .expect("held")
        .status::<OrderStatus>()
        .expect("status")
}

/// Every way to change a confirmed order's lines is refused: the device
/// store's own action and edit, and a raw push built by hand on the server's
/// copy, which the server refuses with the shared write table.
fn lines_are_locked(w: &World, rep: &Device, id: RecordId) {
    let o: Order = rep.store().read_stateful(id).expect("order");
    let line = *o.lines.keys().next().expect("a line");
    let edit = rep.store().act(id, |d| {
        order::edit_line(d, &rep.actor, today(11), line, |l| l.qty = Qty::units(30)).map(|_| ())
    });
    let message = edit.expect_err("the device refuses").to_string();
    assert!(message.contains("confirmed"), "{message}");
    assert!(
        rep.store()
            .update::<Order>(id, today(11), |o| {
                for l in o.lines.values_mut() {
                    l.discount_percent_bp = Some(9_000);
                }
            })
            .is_err(),
        "the store refuses a direct edit of the lines"
    );
    assert!(
        rep.store()
            .act(id, |d| {
                order::add_line(
                    d,
                    &rep.actor,
                    today(11),
                    OrderLine::new(RecordId::new(), Qty::units(1), Money::new(1, "EUR")),
                )
                .map(|_| ())
            })
            .is_err(),
        "no line is added"
    );
    let out = rep.push_forged(w.server_doc(id).expect("server copy"), |doc| {
        doc.update::<Order>(today(11), |o| {
            for l in o.lines.values_mut() {
                l.qty = Qty::units(300);
                l.unit_price.minor = 1;
            }
        })
        .expect("a hand-made edit");
    });
    match out {
        PushOutcome::Rejected(r) => {
            assert_eq!(r.code, RejectCode::Forbidden, "{}", r.message);
            assert!(r.message.contains("confirmed"), "{}", r.message);
        }
        other => panic!("a raw edit of a confirmed order's lines was accepted: {other:?}"),
    }
    let stored: Order = w
        .server_doc(id)
        .expect("stored")
        .read_stateful()
        .expect("order");
    assert!(
        stored.lines.values().all(|l| l.qty == Qty::units(3)),
        "the server's copy is unchanged"
    );
}

fn approval_in_the_browser(backend: Backend, label: &str) {
    let w = World::start(backend);
    let mona = w.device("mona");
    let ana = w.device("ana");
    let cat = catalogue(&w, &mona);
    ana.sync();
    let shop = w.account_on(&ana, "Hotel Avenida");
    let fair = take_order(&w, &ana, shop, cat, 500);
    let big = take_order(&w, &ana, shop, cat, 2_500);
    assert_eq!(ana.sync().rejected, 0);
    ana.sync();
    assert_eq!(
        status_on(&ana, fair),
        OrderStatus::Confirmed,
        "within policy: confirmed in the same push"
    );
    assert_eq!(
        status_on(&ana, big),
        OrderStatus::PendingApproval,
        "beyond policy: waiting for a manager, on the rep's device after the sync"
    );

    // A technician's ended time entry, for the time approvals page.
    let tomas = w.device("tomas");
    let clinic = w.account_on(&tomas, "Clinic");
    assert_eq!(tomas.sync().rejected, 0);
    mona.sync();
    let job = mona
        .store()
        .create_stateful(
            &ServiceJob::new(w.meta("tomas"), clinic, "repair"),
            &mona.actor,
            today(7),
        )
        .expect("job");
    let assignment_id = mona
        .store()
        .create_stateful(
            &Assignment::new(w.meta("tomas"), job, today(9), today(12)),
            &mona.actor,
            today(7),
        )
        .expect("assignment");
    assert_eq!(mona.sync().rejected, 0);
    tomas.sync();
    let entry_id = tomas
        .store()
        .act(assignment_id, |d| {
            assignment::add_time_entry(
                d,
                &tomas.actor,
                today(12),
                TimeEntry {
                    kind: TimeKind::Work,
                    start: today(10),
                    end: Some(today(12)),
                    approval: Approval::Pending,
                    note: Some("pump replaced".into()),
                },
            )
        })
        .expect("book time");
    assert_eq!(tomas.sync().rejected, 0);

    let browser = Browser::start(&w);
    let b = &browser.client;
    let base = &w.base;
    w.rt.block_on(async {
        b.goto(&format!("{base}/web/orders")).await.expect("goto");
        assert_eq!(b.current_url().await.expect("url").path(), "/web/login");
        fieldsync_test_support::fill_login(b, "mona@acme.test", PASSWORD).await;
        settled(b, "table.orders").await;
        assert_eq!(b.current_url().await.expect("url").path(), "/web/orders");
        let html = b.source().await.expect("source");
        assert!(html.contains("Hotel Avenida"), "the account");
        assert!(html.contains("25 %"), "the discount");
        assert!(html.contains("over the 10 %"), "why it waits");
        assert!(html.contains("22.50 EUR"), "net value: 3 × 10.00 less 25 %");
        assert!(
            !html.contains(&format!("data-order=\"{fair}\"")),
            "a confirmed order is not in the approval queue"
        );
        browser.screenshot("orders-queue", label).await;

        // The order page, reached from the queue with the keyboard's link.
        b.find(Locator::Css(&format!("a[href='/web/orders/{big}']")))
            .await
            .expect("link")
            .click()
            .await
            .expect("open");
        settled(b, "table.lines").await;
        let html = b.source().await.expect("source");
        assert!(html.contains("10.00 EUR"), "the list price");
        assert!(html.contains("27.68 EUR"), "total with 23 % tax");
        assert!(html.contains("Pending approval"));
        browser.screenshot("order", label).await;

        // Rejecting without a comment is refused with the reason, nothing stored.
        b.find(Locator::Css("button[value=reject]"))
            .await
            .expect("reject")
            .click()
            .await
            .expect("click");
        settled(b, "p.notice.error").await;
        let html = b.source().await.expect("source");
        assert!(html.contains("comment is required"), "the refusal says why");

        b.find(Locator::Id("comment"))
            .await
            .expect("comment")
            .send_keys("Key account, agreed with sales")
            .await
            .expect("type");
        b.find(Locator::Css("button[value=approve]"))
            .await
            .expect("approve")
            .click()
            .await
            .expect("click");
        settled(b, "p.notice.ok").await;
        let html = open(b, &format!("{base}/web/orders/{big}")).await;
        assert!(html.contains("Confirmed"), "confirmed on the page");
        assert!(
            html.contains("approved by"),
            "the history names the approver"
        );

        // Time approvals: the technician's ended entry, approved from its row.
        let html = open(b, &format!("{base}/web/time")).await;
        assert!(html.contains("pump replaced"), "the entry's note");
        b.find(Locator::Css(&format!(
            "tr[data-entry='{entry_id}'] button[value=approve]"
        )))
        .await
        .expect("approve button")
        .click()
        .await
        .expect("click");
        settled(b, "p.notice.ok").await;
        let html = b.source().await.expect("source");
        assert!(
            !html.contains(&format!("data-entry=\"{entry_id}\"")),
            "decided: no longer waiting"
        );
        browser.screenshot("time", label).await;
    });
    browser.close(&w);
    tomas.sync();
    let held: Assignment = tomas
        .store()
        .read_stateful(assignment_id)
        .expect("assignment");
    assert_eq!(held.time_entries[&entry_id].approval, Approval::Approved);

    // The rep's device sees it after its next sync, with the approver named.
    ana.sync();
    assert_eq!(status_on(&ana, big), OrderStatus::Confirmed);
    let history = ana
        .store()
        .doc(big)
        .expect("held")
        .history()
        .expect("history");
    // (Events found by what they did: the history is in device time, and the
    // test's field times may lie after the server's clock.)
    let last = history
        .iter()
        .find(|e| e.to == "confirmed")
        .expect("a confirmation");
    assert_eq!(last.to, "confirmed");
    assert_eq!(last.role, Role::Server, "the server confirms");
    let why = last.reason.as_deref().unwrap_or_default();
    assert!(
        why.contains(&w.person("mona").id.to_string()) && why.contains("Key account"),
        "{why}"
    );
    lines_are_locked(&w, &ana, big);
    lines_are_locked(&w, &ana, fair);
}

/// A JSON call with `dev`'s token; answers the status and the body.
fn api(
    w: &World,
    dev: &Device,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    fieldsync_test_support::api(w, &dev.access_token(), method, path, body)
}

fn ids_of(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|o| o["id"].as_str().expect("id").to_owned())
        .collect()
}

fn decisions_and_fulfilment_through_the_api(w: World) {
    let mona = w.device("mona");
    let ana = w.device("ana");
    let adam = w.device("adam");
    let stan = w.device_of(w.add_person("stan", Role::Manager, w.south), fast_options());
    let cat = catalogue(&w, &mona);
    ana.sync();
    let shop = w.account_on(&ana, "Kiosk Rossio");
    let fair = take_order(&w, &ana, shop, cat, 0);
    let approve_me = take_order(&w, &ana, shop, cat, 5_000);
    let reject_me = take_order(&w, &ana, shop, cat, 9_999);
    assert_eq!(ana.sync().rejected, 0);
    ana.sync();
    assert_eq!(status_on(&ana, fair), OrderStatus::Confirmed);

    // The queue: the manager's team's orders waiting, with their figures.
    let (code, queue) = api(&w, &mona, "GET", "/v1/orders", None);
    assert_eq!(code, 200, "{queue}");
    let mut listed = ids_of(&queue);
    listed.sort();
    let mut want = vec![approve_me.to_string(), reject_me.to_string()];
    want.sort();
    assert_eq!(listed, want);
    let row = queue
        .as_array()
        .and_then(|a| a.iter().find(|o| o["id"] == approve_me.to_string()))
        .expect("row");
    assert_eq!(row["discount_bp"], 5_000);
    assert_eq!(row["net"], 1_500);
    assert_eq!(row["vs_list_bp"], -5_000);
    assert!(
        row["pending_reasons"]
            .as_str()
            .is_some_and(|r| r.contains("10 %")),
        "{row}"
    );
    let (_, confirmed) = api(&w, &mona, "GET", "/v1/orders?status=confirmed", None);
    assert_eq!(ids_of(&confirmed), vec![fair.to_string()]);
    let (code, _) = api(&w, &mona, "GET", "/v1/orders?status=done", None);
    assert_eq!(code, 400);

    // Who may not: a rep (403), a manager of another team (404, like a
    // missing order), an unknown id (404).
    let approve = serde_json::json!({"decision": "approve"});
    let (code, body) = api(
        &w,
        &ana,
        "POST",
        &format!("/v1/orders/{approve_me}/decision"),
        Some(approve.clone()),
    );
    assert_eq!(code, 403, "{body}");
    assert_eq!(api(&w, &ana, "GET", "/v1/orders", None).0, 403);
    for path in [
        format!("/v1/orders/{approve_me}/decision"),
        format!("/v1/orders/{}/decision", RecordId::new()),
    ] {
        let (code, body) = api(&w, &stan, "POST", &path, Some(approve.clone()));
        assert_eq!(code, 404, "{body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    assert_eq!(
        api(&w, &stan, "GET", &format!("/v1/orders/{approve_me}"), None).0,
        404
    );
    let (_, theirs) = api(&w, &stan, "GET", "/v1/orders", None);
    assert!(ids_of(&theirs).is_empty(), "another team's queue is empty");

    // A rejection needs a comment.
    let path = format!("/v1/orders/{reject_me}/decision");
    let (code, body) = api(
        &w,
        &mona,
        "POST",
        &path,
        Some(serde_json::json!({"decision": "reject", "comment": "  "})),
    );
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        w.server_doc(reject_me)
            .expect("stored")
            .status::<OrderStatus>()
            .expect("status"),
        OrderStatus::PendingApproval,
        "nothing stored"
    );
    let (code, body) = api(
        &w,
        &mona,
        "POST",
        &path,
        Some(serde_json::json!({"decision": "reject", "comment": "A 99.99 % discount is a typo"})),
    );
    assert_eq!((code, body["status"].as_str()), (200, Some("rejected")));

    let path = format!("/v1/orders/{approve_me}/decision");
    let (code, body) = api(&w, &mona, "POST", &path, Some(approve.clone()));
    assert_eq!((code, body["status"].as_str()), (200, Some("confirmed")));
    let (code, body) = api(&w, &mona, "POST", &path, Some(approve.clone()));
    assert_eq!(code, 409, "decided already: {body}");

    // The order's own answer: lines against the list, history with names.
    let (code, one) = api(&w, &mona, "GET", &format!("/v1/orders/{approve_me}"), None);
    assert_eq!(code, 200);
    assert_eq!(one["status"], "confirmed");
    assert_eq!(one["lines"][0]["list_price"], 1_000);
    let last = one["history"]
        .as_array()
        .and_then(|h| h.iter().find(|e| e["to"] == "confirmed"))
        .expect("a confirmation");
    assert_eq!(last["role"], "server");
    assert!(
        last["reason"]
            .as_str()
            .is_some_and(|r| r.contains(&w.person("mona").id.to_string())),
        "{last}"
    );

    // The rep's device: confirmed, and rejected with the comment.
    ana.sync();
    assert_eq!(status_on(&ana, approve_me), OrderStatus::Confirmed);
    assert_eq!(status_on(&ana, reject_me), OrderStatus::Rejected);
    let history = ana
        .store()
        .doc(reject_me)
        .expect("held")
        .history()
        .expect("history");
    let last = history
        .iter()
        .find(|e| e.to == "rejected")
        .expect("a rejection");
    assert_eq!(last.by, w.person("mona").id);
    assert_eq!(last.reason.as_deref(), Some("A 99.99 % discount is a typo"));

    // Fulfilment: not by a manager, by an administrator through the API, by
    // the server through the CLI; not twice.
    let fulfil = |dev: &Device, id: RecordId| {
        api(
            &w,
            dev,
            "POST",
            &format!("/v1/orders/{id}/fulfilment"),
            Some(serde_json::json!({"note": "delivery 4711"})),
        )
    };
    assert_eq!(fulfil(&mona, fair).0, 403);
    let (code, body) = fulfil(&adam, fair);
    assert_eq!((code, body["status"].as_str()), (200, Some("fulfilled")));
    assert_eq!(fulfil(&adam, fair).0, 409);
    assert_eq!(
        fulfil(&adam, reject_me).0,
        409,
        "a rejected order is not fulfilled"
    );
    let db_args: Vec<String> = match &w.settings.database_url {
        Some(url) => vec!["--database-url".into(), url.clone()],
        None => vec![
            "--data-dir".into(),
            w.settings.data_dir.display().to_string(),
        ],
    };
    let mut args: Vec<String> = vec![
        "order".into(),
        "fulfil".into(),
        approve_me.to_string(),
        "--org".into(),
        ORG.into(),
        "--note".into(),
        "picked up".into(),
    ];
    args.extend(db_args.iter().cloned());
    let out = fieldsync(&args, &[], None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("fulfilled"), "{stdout}");
    // The CLI refuses a rep as the decider.
    let mut as_rep = vec![
        "order".to_owned(),
        "approve".into(),
        reject_me.to_string(),
        "--by".into(),
        "ana@acme.test".into(),
        "--org".into(),
        ORG.into(),
    ];
    as_rep.extend(db_args.iter().cloned());
    let out = fieldsync(&as_rep, &[], None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("managers and administrators"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ana.sync();
    assert_eq!(status_on(&ana, fair), OrderStatus::Fulfilled);
    assert_eq!(status_on(&ana, approve_me), OrderStatus::Fulfilled);
    let history = ana
        .store()
        .doc(approve_me)
        .expect("held")
        .history()
        .expect("history");
    assert_eq!(
        history.iter().find(|e| e.to == "confirmed").map(|e| e.role),
        Some(Role::Server)
    );
}

fn time_entries_are_approved_and_rejected(w: World) {
    let mona = w.device("mona");
    let tomas = w.device("tomas");
    let ana = w.device("ana");
    let stan = w.device_of(w.add_person("stan", Role::Manager, w.south), fast_options());
    let clinic = w.account_on(&tomas, "Clinic");
    assert_eq!(tomas.sync().rejected, 0);
    mona.sync();
    let mut job = ServiceJob::new(w.meta("tomas"), clinic, "repair");
    job.description = "Pump".into();
    let job = mona
        .store()
        .create_stateful(&job, &mona.actor, today(7))
        .expect("job");
    let a = mona
        .store()
        .create_stateful(
            &Assignment::new(w.meta("tomas"), job, today(9), today(12)),
            &mona.actor,
            today(7),
        )
        .expect("assignment");
    assert_eq!(mona.sync().rejected, 0);
    tomas.sync();
    let entry = |start: i64, end: Option<i64>, kind| TimeEntry {
        kind,
        start: today(start),
        end: end.map(today),
        approval: Approval::Pending,
        note: Some("on site".into()),
    };
    let mut ids = Vec::new();
    for e in [
        entry(9, Some(10), TimeKind::Travel),
        entry(10, Some(12), TimeKind::Work),
        entry(12, None, TimeKind::Work),
    ] {
        let id = tomas
            .store()
            .act(a, |d| {
                assignment::add_time_entry(d, &tomas.actor, today(12), e)
            })
            .expect("book time");
        ids.push(id);
    }
    // A technician cannot approve their own time on the device either.
    assert!(
        tomas
            .store()
            .update::<Assignment>(a, today(12), |x| {
                for e in x.time_entries.values_mut() {
                    e.approval = Approval::Approved;
                }
            })
            .is_err()
    );
    assert_eq!(tomas.sync().rejected, 0);

    let (code, pending) = api(&w, &mona, "GET", "/v1/time-entries", None);
    assert_eq!(code, 200, "{pending}");
    let listed: Vec<&str> = pending
        .as_array()
        .expect("list")
        .iter()
        .map(|e| e["entry_id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        listed,
        vec![ids[0].to_string(), ids[1].to_string()],
        "ended entries only, oldest first"
    );
    assert_eq!(pending[1]["minutes"], 120);
    assert_eq!(api(&w, &tomas, "GET", "/v1/time-entries", None).0, 403);
    assert_eq!(api(&w, &ana, "GET", "/v1/time-entries", None).0, 403);
    let (_, theirs) = api(&w, &stan, "GET", "/v1/time-entries", None);
    assert_eq!(theirs.as_array().map(Vec::len), Some(0));

    let decide = |dev: &Device, entry: RecordId, decision: &str| {
        api(
            &w,
            dev,
            "POST",
            &format!("/v1/assignments/{a}/time-entries/{entry}/decision"),
            Some(serde_json::json!({ "decision": decision })),
        )
    };
    assert_eq!(decide(&stan, ids[0], "approve").0, 404, "another team's");
    assert_eq!(decide(&tomas, ids[0], "approve").0, 403);
    assert_eq!(decide(&mona, ids[2], "approve").0, 409, "still running");
    assert_eq!(decide(&mona, RecordId::new(), "approve").0, 404);
    let (code, body) = decide(&mona, ids[0], "approve");
    assert_eq!((code, body["approval"].as_str()), (200, Some("approved")));
    let (code, body) = decide(&mona, ids[1], "reject");
    assert_eq!((code, body["approval"].as_str()), (200, Some("rejected")));
    assert_eq!(decide(&mona, ids[1], "approve").0, 409, "decided already");
    let (_, left) = api(&w, &mona, "GET", "/v1/time-entries", None);
    assert_eq!(left.as_array().map(Vec::len), Some(0));

    tomas.sync();
    let held: Assignment = tomas.store().read_stateful(a).expect("assignment");
    assert_eq!(held.time_entries[&ids[0]].approval, Approval::Approved);
    assert_eq!(held.time_entries[&ids[1]].approval, Approval::Rejected);
    assert_eq!(held.time_entries[&ids[2]].approval, Approval::Pending);

    // The page lists what waits and decides with a CSRF-checked form.
    let entry_id = tomas
        .store()
        .act(a, |d| {
            assignment::add_time_entry(
                d,
                &tomas.actor,
                today(13),
                entry(13, Some(14), TimeKind::Work),
            )
        })
        .expect("book");
    tomas.sync();
    let login = fieldsync_test_support::sign_in(&w, "mona", PASSWORD);
    let cookie =
        fieldsync_test_support::cookie_pair(&login, fieldsync_test_support::SESSION_COOKIE);
    let page = fieldsync_test_support::http(&w, "GET", "/web/time", &cookie, &[]);
    assert_eq!(page.status, 200);
    assert!(page.body.contains(&format!("data-entry=\"{entry_id}\"")));
    let action = format!("/web/time/{a}/{entry_id}/decision");
    let forged = fieldsync_test_support::http(
        &w,
        "POST",
        &action,
        &cookie,
        &[("csrf", "nope"), ("decision", "approve")],
    );
    assert_eq!(forged.status, 403, "no CSRF token, no decision");
    let csrf = fieldsync_test_support::csrf_of(&page.body);
    let done = fieldsync_test_support::http(
        &w,
        "POST",
        &action,
        &cookie,
        &[("csrf", &csrf), ("decision", "approve")],
    );
    assert_eq!(done.status, 303, "{}", done.body);
    tomas.sync();
    let held: Assignment = tomas.store().read_stateful(a).expect("assignment");
    assert_eq!(held.time_entries[&entry_id].approval, Approval::Approved);
}
