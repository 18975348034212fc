//! The server is the authority: each way a client could get past rules that
//! only the device checked is tried with changes built by hand (a modified
//! app, a script with a stolen token) and pushed raw, bypassing the device's
//! own checks, on SQLite and on PostgreSQL. Every one is refused, or — for
//! what the server decides itself — corrected by the server in the same push.
//!
//! The rules are the shared model's (`fieldsync_core::model::rules`, rendered
//! in `docs/rules.md`) and the server's second stage (`domain::authority`).

use std::collections::BTreeMap;

use fieldsync_core::automerge::transaction::Transactable;
use fieldsync_core::automerge::{self, ObjType, ROOT, ReadDoc, Value};
use fieldsync_core::model::order::{self, Order, OrderLine, OrderStatus};
use fieldsync_core::model::report::{self, ReportStatus, VisitReport};
use fieldsync_core::model::visit::{self as visits, Site};
use fieldsync_core::model::{
    Account, Answer, AnswerValue, ChecklistResponse, ChecklistTemplate, DeviceTime, GeoPoint,
    GeofenceVerdict, JobStatus, Location, Money, PriceItem, PriceList, Product, Qty, Question,
    QuestionKind, RecordDoc, RecordMeta, Role, ServiceJob, TransitionRequest, Visit,
};
use fieldsync_core::protocol::{PushOutcome, RejectCode};
use fieldsync_core::{RecordId, TeamId, UserId};
use fieldsync_test_support::{Device, World, on_both_databases, today};

on_both_databases!(
    a_reference_never_grants_what_the_writer_cannot_read,
    ownership_is_fixed_for_the_field_and_bounded_for_the_office,
    a_status_event_continues_from_the_status_the_record_had,
    status_locks_hold_and_the_server_prices_submitted_orders,
    the_server_recomputes_verdicts_checks_checklists_and_keeps_closing_in_the_office,
    a_second_visit_in_progress_is_a_visible_clash_and_keeps_both_check_ins,
    two_check_ins_written_in_one_group_still_clash,
    pushes_of_one_record_at_once_are_written_one_after_the_other,
    a_group_never_holds_two_pushes_of_one_record,
    a_group_decides_each_push_with_its_own_reach,
    records_born_with_readers_beyond_their_own_are_read_by_them,
    an_idle_writer_stops_and_the_next_push_starts_another,
);

fn accepted(outcome: &PushOutcome, what: &str) {
    assert!(
        matches!(outcome, PushOutcome::Accepted { .. }),
        "{what}: {outcome:?}"
    );
}

fn refused(outcome: &PushOutcome, code: RejectCode, what: &str) -> String {
    match outcome {
        PushOutcome::Rejected(r) => {
            assert_eq!(r.code, code, "{what}: {}", r.message);
            assert!(!r.message.is_empty());
            r.message.clone()
        }
        other => panic!("{what}: accepted ({other:?})"),
    }
}

fn account(w: &World, dev: &Device, name: &str) -> RecordId {
    w.account_on(dev, name)
}

fn visit(w: &World, dev: &Device, account: RecordId) -> RecordId {
    w.visit_on(dev, account)
}

fn audit_status(w: &World, dev: &Device, id: RecordId) -> u16 {
    ureq::get(format!("{}/v1/records/{id}/audit", w.base))
        .header("authorization", format!("Bearer {}", dev.access_token()))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .expect("answer")
        .status()
        .as_u16()
}

fn server_json(w: &World, id: RecordId) -> serde_json::Value {
    w.server_doc(id)
        .expect("on the server")
        .to_json()
        .expect("json")
}

/// Reproduction 1: a reference to someone else's record (a typed field, or a
/// root key the kind does not have) used to grant the writer read access.
fn a_reference_never_grants_what_the_writer_cannot_read(w: World) {
    let ana = w.device("ana");
    let sara = w.device("sara");
    let ben = w.device("ben");
    let mona = w.device("mona");
    let adam = w.device("adam");
    let shop = account(&w, &ana, "Ana's shop");
    let ana_visit = visit(&w, &ana, shop);
    // An account Ana may not read: another territory's (everyone in a
    // territory reads its accounts).
    let porto = w.add_territory("Porto");
    let far_shop = w.account_in(&adam, "Loja do Porto", porto);
    adam.sync();
    let sara_shop = account(&w, &sara, "Sara's shop");
    let sara_visit = visit(&w, &sara, sara_shop);
    let ben_shop = account(&w, &ben, "Ben's shop");
    let ben_visit = visit(&w, &ben, ben_shop);
    let template = ChecklistTemplate {
        meta: w.meta("mona"),
        name: "Shelf check".into(),
        version: 1,
        published: true,
        family: None,
        supersedes: None,
        retired: false,
        questions: BTreeMap::new(),
    };
    let template = mona.store().create(&template, today(7)).expect("template");
    for dev in [&ana, &sara, &ben, &mona] {
        assert!(
            dev.sync().rejected == 0,
            "{} synced cleanly",
            dev.person.name()
        );
    }
    ana.sync();

    // The visit's account turned into one of another territory: refused,
    // nothing granted.
    let out = ana.push_forged(w.server_doc(ana_visit).expect("copy"), |doc| {
        doc.update::<Visit>(today(11), |v| v.account_id = far_shop)
            .expect("edit");
    });
    let message = refused(&out, RejectCode::Forbidden, "a visit at Porto's account");
    assert!(message.contains("cannot read"), "{message}");
    assert_eq!(
        server_json(&w, ana_visit)["account_id"],
        shop.to_string(),
        "the server's copy is unchanged"
    );

    // A root key no visit has, naming Sara's visit: refused as invalid.
    let out = ana.push_forged(w.server_doc(ana_visit).expect("copy"), |doc| {
        doc.automerge()
            .put(ROOT, "subject_id", sara_visit.to_string())
            .expect("put");
        doc.automerge().commit();
    });
    let message = refused(&out, RejectCode::Validation, "a hidden reference");
    assert!(message.contains("subject_id"), "{message}");

    // A checklist response about Ben's visit (same team, another rep).
    let response = |subject: RecordId| ChecklistResponse {
        meta: RecordMeta {
            id: RecordId::new(),
            ..w.meta("ana")
        },
        template_id: template,
        template_version: 1,
        subject_id: subject,
        answers: BTreeMap::new(),
        completed: false,
    };
    let forged = RecordDoc::create(
        &response(ben_visit),
        automerge::ActorId::random(),
        today(11),
    )
    .expect("doc");
    let out = ana.push_forged(forged, |doc| {
        doc.update::<ChecklistResponse>(today(11), |r| r.completed = true)
            .expect("edit");
    });
    // The creation under a foreign actor is refused before anything else;
    // made under Ana's own actor, the reference is what is refused.
    assert!(matches!(out, PushOutcome::Rejected(_)));
    let on_bens = response(ben_visit);
    let id = ana
        .store()
        .create(&on_bens, today(11))
        .expect("stored locally");
    let report = ana.sync();
    assert_eq!(report.rejected, 1, "refused by the server");
    let ledger = ana.store().rejections().expect("ledger");
    let entry = ledger
        .iter()
        .find(|r| r.record_id == id)
        .expect("in the ledger");
    assert!(entry.code.eq_ignore_ascii_case("forbidden"), "{entry:?}");
    // The positive control: her own visit.
    let own = ana
        .store()
        .create(&response(ana_visit), today(12))
        .expect("own");
    ana.sync();
    assert!(
        w.server_doc(own).is_some(),
        "a response on her own visit is stored"
    );

    // Nothing of Sara's or Ben's reached Ana but their accounts, which are
    // her territory's; nothing of Porto's.
    ana.sync();
    assert!(ana.store().doc(sara_shop).is_ok() && ana.store().doc(ben_shop).is_ok());
    for id in [sara_visit, ben_visit, far_shop] {
        assert!(ana.store().doc(id).is_err(), "ana holds none of it");
        assert_eq!(audit_status(&w, &ana, id), 404, "and cannot audit it");
    }
}

/// Reproduction 2: ownership rewritten by a rep, records hidden from the
/// manager or planted in another team's inbox.
fn ownership_is_fixed_for_the_field_and_bounded_for_the_office(w: World) {
    let ana = w.device("ana");
    let mona = w.device("mona");
    let adam = w.device("adam");
    let shop = account(&w, &ana, "Ana's shop");
    let v = visit(&w, &ana, shop);
    let mut o = Order::new(w.meta("ana"), shop, "EUR");
    o.visit_id = Some(v);
    let order_id = ana
        .store()
        .create_stateful(&o, &ana.actor, today(9))
        .expect("order");
    ana.sync();
    let ben = w.person("ben");
    let sara = w.person("sara");

    let out = ana.push_forged(w.server_doc(order_id).expect("copy"), |doc| {
        set_meta(
            doc,
            &[
                ("owner", ben.id.to_string()),
                ("team", TeamId::new().to_string()),
            ],
        );
    });
    refused(
        &out,
        RejectCode::Forbidden,
        "a rep rewriting an order's owner",
    );
    let out = ana.push_forged(w.server_doc(v).expect("copy"), |doc| {
        set_meta(doc, &[("team", w.south.to_string())]);
    });
    refused(
        &out,
        RejectCode::Forbidden,
        "a rep hiding a visit from her manager",
    );
    assert_eq!(audit_status(&w, &mona, v), 200, "the manager still sees it");

    // A new visit tagged with the other team, owned by Ana.
    let planted = Visit::planned(
        RecordMeta {
            team: w.south,
            ..w.meta("ana")
        },
        shop,
        today(13),
        today(14),
    );
    let doc =
        RecordDoc::create_stateful(&planted, ana.actor_id(), &ana.actor, today(12)).expect("doc");
    let planted_id = doc.id();
    let mut doc = doc;
    let out = ana.push_new(&mut doc);
    let message = refused(
        &out,
        RejectCode::Forbidden,
        "a visit planted in another team",
    );
    assert!(message.contains("team"), "{message}");
    assert!(w.server_doc(planted_id).is_none());

    // The office: a manager inside the team, an administrator anywhere that exists.
    mona.sync();
    let out = mona.push_forged(w.server_doc(v).expect("copy"), |doc| {
        set_meta(doc, &[("owner", ben.id.to_string())]);
    });
    accepted(&out, "mona gives ana's visit to ben");
    let out = mona.push_forged(w.server_doc(v).expect("copy"), |doc| {
        set_meta(doc, &[("owner", sara.id.to_string())]);
    });
    refused(
        &out,
        RejectCode::Forbidden,
        "mona gives it to another team's rep",
    );
    let out = mona.push_forged(w.server_doc(v).expect("copy"), |doc| {
        set_meta(doc, &[("owner", UserId::new().to_string())]);
    });
    refused(&out, RejectCode::Forbidden, "mona gives it to nobody");
    adam.sync();
    let out = adam.push_forged(w.server_doc(v).expect("copy"), |doc| {
        set_meta(doc, &[("team", TeamId::new().to_string())]);
    });
    refused(
        &out,
        RejectCode::Forbidden,
        "adam moves it to a team that does not exist",
    );
    let out = adam.push_forged(w.server_doc(v).expect("copy"), |doc| {
        set_meta(
            doc,
            &[
                ("owner", sara.id.to_string()),
                ("team", w.south.to_string()),
            ],
        );
    });
    accepted(&out, "adam moves it to sara in the south");
    let stored = server_json(&w, v);
    assert_eq!(stored["meta"]["owner"], sara.id.to_string());
    assert_eq!(stored["meta"]["team"], w.south.to_string());
}

fn set_meta(doc: &mut RecordDoc, fields: &[(&str, String)]) {
    let am = doc.automerge();
    let meta = match am.get(ROOT, "meta").expect("read") {
        Some((Value::Object(ObjType::Map), id)) => id,
        other => panic!("no meta map: {other:?}"),
    };
    for (field, value) in fields {
        am.put(&meta, *field, value.as_str()).expect("put");
    }
    am.commit();
}

/// Writes a status event by hand, as a modified app would: `from` → `to`,
/// by `by` as a rep.
fn put_event(doc: &mut RecordDoc, from: &str, to: &str, by: UserId, at: DeviceTime) {
    let am = doc.automerge();
    let history = match am.get(ROOT, "history").expect("read") {
        Some((Value::Object(ObjType::Map), id)) => id,
        other => panic!("no history: {other:?}"),
    };
    let id = RecordId::new().to_string();
    let event = am
        .put_object(&history, id.as_str(), ObjType::Map)
        .expect("event");
    am.put(&event, "id", id.as_str()).expect("put");
    am.put(&event, "from", from).expect("put");
    am.put(&event, "to", to).expect("put");
    am.put(&event, "by", by.to_string()).expect("put");
    am.put(&event, "role", "rep").expect("put");
    let when = am.put_object(&event, "at", ObjType::Map).expect("at");
    am.put(&when, "at_ms", at.at_ms).expect("put");
    am.put(&when, "tz_offset_min", 0i64).expect("put");
    am.put(ROOT, "status", to).expect("put");
    am.commit();
}

fn report_for(w: &World, ana: &Device, visit: RecordId) -> RecordId {
    let mut r = VisitReport::new(w.meta("ana"), visit);
    r.summary = "Shelf space agreed.".into();
    let id = ana
        .store()
        .create_stateful(&r, &ana.actor, today(11))
        .expect("report");
    ana.store()
        .act(id, |d| report::submit(d, &ana.actor, today(12)))
        .expect("submit");
    id
}

/// Reproduction 3: after the approval, the rep replays "draft → submitted"
/// with new content, and the approved report went back to the inbox.
fn a_status_event_continues_from_the_status_the_record_had(w: World) {
    let ana = w.device("ana");
    let mona = w.device("mona");
    let shop = account(&w, &ana, "Ana's shop");
    let v = visit(&w, &ana, shop);
    let r = report_for(&w, &ana, v);
    ana.sync();
    mona.sync();
    mona.store()
        .act(r, |d| report::approve(d, &mona.actor, today(13), None))
        .expect("approve");
    mona.sync();
    ana.sync();
    let copy = ana.store().doc(r).expect("ana's copy, approved");
    assert_eq!(
        copy.status::<ReportStatus>().expect("status"),
        ReportStatus::Approved
    );
    let out = ana.push_forged(copy, |doc| {
        put_event(doc, "draft", "submitted", w.person("ana").id, today(14));
        doc.update::<VisitReport>(today(14), |r| r.summary = "Something else.".into())
            .expect("edit");
    });
    let message = refused(&out, RejectCode::Transition, "a replayed submission");
    assert!(message.contains("approved"), "{message}");
    let stored = server_json(&w, r);
    assert_eq!(stored["status"], "approved");
    assert_eq!(stored["summary"], "Shelf space agreed.");

    // The same event on the right status but an order the machine refuses.
    let out = ana.push_forged(w.server_doc(r).expect("copy"), |doc| {
        put_event(doc, "approved", "submitted", w.person("ana").id, today(15));
    });
    refused(&out, RejectCode::Transition, "approved to submitted");
}

/// Reproduction 4: lines and prices after submission, a 99.99 % discount
/// accepted as submitted, an approved report's summary edited by a device
/// that had not pulled the approval.
fn status_locks_hold_and_the_server_prices_submitted_orders(w: World) {
    let ana = w.device("ana");
    let mona = w.device("mona");
    let shop = account(&w, &ana, "Ana's shop");
    let v = visit(&w, &ana, shop);

    // The office's catalogue: a product at 10.00 EUR, at most 10 % off.
    let product = Product {
        meta: w.meta("mona"),
        sku: "SKU-1".into(),
        name: "Summer range".into(),
        unit: "pcs".into(),
        serialized: false,
        spare_part: false,
        active: true,
    };
    let product = mona.store().create(&product, today(7)).expect("product");
    let list = PriceList {
        territory_default: false,
        meta: w.meta("mona"),
        name: "Retail".into(),
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
    mona.sync();
    ana.sync();

    let take = |discount_bp: u32, typed_minor: i64| {
        let mut o = Order::new(w.meta("ana"), shop, "EUR");
        o.visit_id = Some(v);
        o.price_list_id = Some(list);
        let id = ana
            .store()
            .create_stateful(&o, &ana.actor, today(9))
            .expect("order");
        let mut line = OrderLine::new(product, Qty::units(2), Money::new(typed_minor, "EUR"));
        line.discount_percent_bp = Some(discount_bp);
        ana.store()
            .act(id, |d| {
                order::add_line(d, &ana.actor, today(9), line).map(|_| ())
            })
            .expect("line");
        ana.store()
            .act(id, |d| order::submit(d, &ana.actor, today(10)).map(|_| ()))
            .expect("submit");
        id
    };
    let fair = take(500, 1_000);
    let cheap = take(0, 1);
    let bombed = take(9_999, 1_000);
    let report = ana.sync();
    assert_eq!(report.rejected, 0, "a rep's orders are accepted");
    ana.sync();
    let status = |id| {
        ana.store()
            .doc(id)
            .expect("held")
            .status::<OrderStatus>()
            .expect("status")
    };
    let price = |id| {
        let o: Order = ana.store().read_stateful(id).expect("order");
        o.lines
            .values()
            .map(|l| l.unit_price.minor)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        status(fair),
        OrderStatus::Confirmed,
        "within policy: confirmed by the server in the same push"
    );
    assert_eq!(price(fair), vec![1_000]);
    assert_eq!(status(cheap), OrderStatus::Confirmed);
    assert_eq!(
        price(cheap),
        vec![1_000],
        "the list's price, not the typed one"
    );
    assert_eq!(
        status(bombed),
        OrderStatus::PendingApproval,
        "a discount over the list's maximum waits for a manager"
    );
    let history = ana
        .store()
        .doc(bombed)
        .expect("held")
        .history()
        .expect("history");
    let by_server = history
        .iter()
        .find(|e| e.to == "pending_approval")
        .expect("the server's event");
    assert!(
        by_server
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("10 %")),
        "{by_server:?}"
    );

    // Lines after submission, written past the device's own check: on an
    // order waiting for a manager and on a confirmed one.
    for (id, now) in [(bombed, "pending_approval"), (fair, "confirmed")] {
        let out = ana.push_forged(w.server_doc(id).expect("copy"), |doc| {
            doc.update::<Order>(today(11), |o| {
                for l in o.lines.values_mut() {
                    l.unit_price.minor = 1;
                }
            })
            .expect("edit");
        });
        let message = refused(&out, RejectCode::Forbidden, "prices after submission");
        assert!(message.contains(now), "{message}");
    }
    assert!(
        ana.store()
            .update::<Order>(bombed, today(11), |o| o.notes = Some("n".into()))
            .is_ok(),
        "notes stay open while the order waits for a manager"
    );
    assert!(
        ana.store()
            .update::<Order>(bombed, today(11), |o| o.delivery_date =
                Some("2030-01-01".into()))
            .is_err(),
        "the device refuses what the server would"
    );

    // The approved report, edited on a device that had not pulled the approval.
    let r = report_for(&w, &ana, v);
    ana.sync();
    mona.sync();
    mona.store()
        .act(r, |d| report::approve(d, &mona.actor, today(13), None))
        .expect("approve");
    mona.sync();
    let stale = ana.store().doc(r).expect("ana's copy, still submitted");
    assert!(
        ana.store()
            .update::<VisitReport>(r, today(14), |x| x.summary = "later".into())
            .is_err(),
        "the device refuses to edit a submitted report"
    );
    let out = ana.push_forged(stale, |doc| {
        doc.update::<VisitReport>(today(14), |x| x.summary = "changed after".into())
            .expect("edit");
    });
    refused(&out, RejectCode::Forbidden, "an approved report's summary");
    assert_eq!(server_json(&w, r)["summary"], "Shelf space agreed.");
}

/// Values the server computes or checks itself: the geofence verdict (from the
/// account's site, not the app's), checklist answers against their template,
/// and closing a job, which is the office's decision.
fn the_server_recomputes_verdicts_checks_checklists_and_keeps_closing_in_the_office(w: World) {
    let ana = w.device("ana");
    let mona = w.device("mona");
    let tomas = w.device("tomas");
    let site = GeoPoint {
        lat: 38.7223,
        lng: -9.1393,
        accuracy_m: None,
    };
    let shop = Account {
        meta: w.meta("ana"),
        name: "Kiosk".into(),
        account_type: "outlet".into(),
        account_status: "active".into(),
        code: None,
        price_list_id: None,
        visit_frequency_days: None,
        locations: BTreeMap::from([(
            RecordId::new(),
            Location {
                name: "Main".into(),
                address: String::new(),
                coords: Some(site),
                geofence_radius_m: 100.0,
                opening_hours: None,
            },
        )]),
    };
    let shop = ana.store().create(&shop, today(8)).expect("account");
    let v = visit(&w, &ana, shop);
    ana.sync();
    // The app checks in two kilometres away, claiming it had no site to compare with.
    let far = GeoPoint {
        lat: site.lat + 0.018,
        lng: site.lng,
        accuracy_m: Some(10.0),
    };
    ana.store()
        .act(v, |d| {
            visits::check_in(
                d,
                &ana.actor,
                today(9),
                Some(far),
                Site {
                    coords: None,
                    radius_m: 100.0,
                },
            )
        })
        .expect("check in");
    assert_eq!(ana.sync().rejected, 0);
    let stored = server_json(&w, v);
    assert_eq!(
        stored["check_in"]["verdict"], "no_site_coords",
        "the app's, kept"
    );
    assert_eq!(
        stored["check_in"]["server_verdict"], "outside",
        "the server's"
    );
    assert!(
        stored["check_in"]["server_distance_m"]
            .as_f64()
            .is_some_and(|d| (1_900.0..2_100.0).contains(&d)),
        "{stored}"
    );
    ana.sync();
    let held: Visit = ana.store().read_stateful(v).expect("visit");
    assert_eq!(
        held.check_in.map(|c| c.effective_verdict()),
        Some(GeofenceVerdict::Outside),
        "the device receives the server's verdict"
    );

    // A checklist with a required question, answered against its template.
    let template = ChecklistTemplate {
        meta: w.meta("mona"),
        name: "Safety".into(),
        version: 1,
        published: true,
        family: None,
        supersedes: None,
        retired: false,
        questions: BTreeMap::from([(
            "gas_off".to_owned(),
            Question {
                position: 1,
                text: "Gas supply off?".into(),
                kind: QuestionKind::YesNo,
                choices: Vec::new(),
                required: true,
                show_if: None,
            },
        )]),
    };
    let template = mona.store().create(&template, today(7)).expect("template");
    mona.sync();
    ana.sync();
    let response = |answers: BTreeMap<String, Answer>| ChecklistResponse {
        meta: w.meta("ana"),
        template_id: template,
        template_version: 1,
        subject_id: v,
        answers,
        completed: true,
    };
    let answer = |value| Answer {
        value,
        at: today(9),
        by: w.person("ana").id,
    };
    let unanswered = ana
        .store()
        .create(&response(BTreeMap::new()), today(9))
        .expect("local");
    let mistyped = ana
        .store()
        .create(
            &response(BTreeMap::from([(
                "gas_off".to_owned(),
                answer(AnswerValue::Text("yes".into())),
            )])),
            today(9),
        )
        .expect("local");
    let good = ana
        .store()
        .create(
            &response(BTreeMap::from([(
                "gas_off".to_owned(),
                answer(AnswerValue::YesNo(true)),
            )])),
            today(9),
        )
        .expect("local");
    assert_eq!(ana.sync().rejected, 2);
    let ledger = ana.store().rejections().expect("ledger");
    for (id, words) in [(unanswered, "gas_off"), (mistyped, "does not fit")] {
        let entry = ledger.iter().find(|r| r.record_id == id).expect("refused");
        assert!(entry.code.eq_ignore_ascii_case("validation"), "{entry:?}");
        assert!(entry.message.contains(words), "{entry:?}");
    }
    assert!(w.server_doc(good).is_some());

    // A job completed in the field; closing it from a device is refused.
    let job = ServiceJob::new(w.meta("tomas"), shop, "repair");
    let job = mona
        .store()
        .create_stateful(&job, &mona.actor, today(8))
        .expect("job");
    assert_eq!(mona.sync().rejected, 0);
    tomas.sync();
    for to in [JobStatus::InProgress, JobStatus::Completed] {
        tomas
            .store()
            .transition::<ServiceJob>(
                job,
                &tomas.actor,
                &TransitionRequest::new(to, today(10)),
                |_| {},
            )
            .expect("work");
    }
    assert_eq!(tomas.sync().rejected, 0);
    mona.sync();
    let out = mona.push_forged(w.server_doc(job).expect("copy"), |doc| {
        doc.transition::<ServiceJob>(
            &mona.actor,
            &TransitionRequest::new(JobStatus::Closed, today(11)),
            |j| j.resolution = Some("Pump replaced".into()),
        )
        .expect("the model allows a manager");
    });
    let message = refused(&out, RejectCode::Transition, "closing a job from a device");
    assert!(message.contains("office"), "{message}");
}

fn conflicts_seen_by(w: &World, dev: &Device) -> Vec<serde_json::Value> {
    let body = ureq::get(format!("{}/v1/conflicts", w.base))
        .header("authorization", format!("Bearer {}", dev.access_token()))
        .call()
        .expect("conflicts")
        .into_body()
        .read_to_string()
        .expect("body");
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    json.get("conflicts")
        .or(Some(&json))
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default()
}

/// Two check-ins at once by one rep (two phones offline, or a check-out
/// forgotten): both are kept, the second visit is listed in the managers'
/// queue, and the clash closes when the rep ends one of them.
fn a_second_visit_in_progress_is_a_visible_clash_and_keeps_both_check_ins(w: World) {
    let phone = w.device("ana");
    let tablet = w.device("ana");
    let mona = w.device("mona");
    let shop = account(&w, &phone, "Ana's shop");
    let first = visit(&w, &phone, shop);
    let second = visit(&w, &phone, shop);
    phone.sync();
    tablet.sync();
    let site = Site {
        coords: None,
        radius_m: 100.0,
    };
    phone
        .store()
        .act(first, |d| {
            visits::check_in(d, &phone.actor, today(9), None, site)
        })
        .expect("first check-in");
    tablet
        .store()
        .act(second, |d| {
            visits::check_in(d, &tablet.actor, today(9), None, site)
        })
        .expect("second check-in, on the other device");
    assert_eq!(phone.sync().rejected, 0);
    assert!(
        conflicts_seen_by(&w, &mona).is_empty(),
        "one visit in progress"
    );
    assert_eq!(tablet.sync().rejected, 0, "the evidence is kept");
    for id in [first, second] {
        assert_eq!(server_json(&w, id)["status"], "in_progress");
    }
    let listed = conflicts_seen_by(&w, &mona);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["record_id"], second.to_string());
    assert_eq!(listed[0]["path"], "in_progress");
    // There is no side to keep: the queue's resolve says so.
    let resolve = ureq::post(format!("{}/v1/conflicts/{second}/resolve", w.base))
        .header("authorization", format!("Bearer {}", mona.access_token()))
        .config()
        .http_status_as_error(false)
        .build()
        .send_json(serde_json::json!({"choose": "in_progress"}))
        .expect("answer");
    assert_eq!(resolve.status().as_u16(), 409);
    // The rep checks out of the first visit: the clash closes.
    phone
        .store()
        .act(first, |d| {
            visits::check_out(
                d,
                &phone.actor,
                today(10),
                None,
                site,
                fieldsync_core::model::VisitOutcome::NoOrder,
            )
        })
        .expect("check out");
    assert_eq!(phone.sync().rejected, 0);
    assert!(conflicts_seen_by(&w, &mona).is_empty(), "closed");
    // Later the office cancels the second visit while the tablet, offline,
    // checks out of it: the same record's row opens again, as a status clash.
    mona.sync();
    mona.store()
        .act(second, |d| {
            d.transition::<Visit>(
                &mona.actor,
                &fieldsync_core::model::TransitionRequest::new(
                    fieldsync_core::model::VisitStatus::Cancelled,
                    today(10),
                )
                .with_reason("the shop is closed today"),
                |_| {},
            )
        })
        .expect("cancel");
    assert_eq!(mona.sync().rejected, 0);
    tablet
        .store()
        .act(second, |d| {
            visits::check_out(
                d,
                &tablet.actor,
                today(11),
                None,
                site,
                fieldsync_core::model::VisitOutcome::NoOrder,
            )
        })
        .expect("check out offline");
    assert_eq!(tablet.sync().rejected, 0, "field evidence is kept");
    let listed = conflicts_seen_by(&w, &mona);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["record_id"], second.to_string());
    assert_eq!(listed[0]["path"], "status");
}

/// The caller `dev` is when it pushes as `name` (what the server's
/// authentication would make of its token).
fn caller_of(w: &World, dev: &Device, name: &str) -> fieldsync_server::Caller {
    let person = &dev.person;
    fieldsync_server::Caller {
        actor: dev.actor.clone(),
        org: w.org,
        team: Some(person.team),
        territory: Some(person.territory),
        display_name: name.into(),
        actor_id: dev.actor_id(),
        window: None,
    }
}

/// `edit` made on the server's copy of `id` under `dev`'s actor: the changes
/// `dev` would push for it.
fn edited(
    w: &World,
    dev: &Device,
    id: RecordId,
    edit: impl FnOnce(&mut RecordDoc),
) -> fieldsync_core::protocol::RecordChanges {
    let mut doc = w.server_doc(id).expect("on the server");
    doc.set_actor(dev.actor_id());
    let before = doc.heads();
    edit(&mut doc);
    fieldsync_core::protocol::RecordChanges {
        id,
        kind: doc.kind(),
        changes: doc
            .changes_since(&before)
            .iter()
            .map(|c| serde_bytes::ByteBuf::from(c.raw_bytes().to_vec()))
            .collect(),
    }
}

/// `dev`'s push of `changes` as `name`, as a job of a group transaction,
/// decided on whatever the group loads after `hold_ms` (a writer kept busy
/// on purpose).
fn group_job(
    w: &World,
    dev: &Device,
    name: &str,
    changes: fieldsync_core::protocol::RecordChanges,
    hold_ms: u64,
) -> fieldsync_server::db::records::PushJob<'static> {
    use fieldsync_server::domain::push;
    let caller = caller_of(w, dev, name);
    let records = std::sync::Arc::new(vec![changes]);
    let (deciding, pushed) = (caller.clone(), std::sync::Arc::clone(&records));
    fieldsync_server::db::records::PushJob {
        caller,
        batch: uuid::Uuid::now_v7(),
        records,
        all_or_nothing: false,
        stamp: None,
        decide: Box::new(move |loaded| {
            std::thread::sleep(std::time::Duration::from_millis(hold_ms));
            push::decide_all(
                &deciding,
                &pushed,
                loaded,
                &[],
                &[],
                std::time::Duration::MAX,
            )
        }),
    }
}

/// One push of `dev`'s check-in of `visit`, as a job of a group transaction.
fn check_in_job(
    w: &World,
    dev: &Device,
    name: &str,
    visit: RecordId,
) -> fieldsync_server::db::records::PushJob<'static> {
    let site = Site {
        coords: None,
        radius_m: 100.0,
    };
    let changes = edited(w, dev, visit, |doc| {
        visits::check_in(doc, &dev.actor, today(9), None, site).expect("check in");
    });
    group_job(w, dev, name, changes, 0)
}

/// Group commit: pushes of one organisation that wait together are written
/// in one transaction, each decided on the records as stored before the
/// group. A rep's two check-ins arriving in one group (phone and tablet at
/// the same moment) must still see each other: the second is listed as a
/// clash, exactly as when they arrive one after the other.
fn two_check_ins_written_in_one_group_still_clash(w: World) {
    let phone = w.device("ana");
    let tablet = w.device("ana");
    let mona = w.device("mona");
    let shop = account(&w, &phone, "Ana's shop");
    let first = visit(&w, &phone, shop);
    let second = visit(&w, &phone, shop);
    phone.sync();
    let jobs = vec![
        check_in_job(&w, &phone, "ana", first),
        check_in_job(&w, &tablet, "ana", second),
    ];
    let log = w.log_len();
    let applied =
        w.rt.block_on(fieldsync_server::db::records::apply_pushes(&w.db, jobs))
            .expect("one transaction");
    assert_eq!(applied.len(), 2, "one answer per push");
    for (a, id) in applied.iter().zip([first, second]) {
        assert_eq!(a.results.len(), 1);
        assert_eq!(a.results[0].0, id, "each push answers its own record");
        assert!(a.results[0].1.is_ok(), "{:?}", a.results[0].1);
        assert!(a.changes_written > 0);
        let note = a.note.as_ref().expect("a live note per push");
        assert!(
            note.principals.iter().any(|p| p.starts_with("u:")),
            "{note:?}"
        );
    }
    assert!(w.log_len() > log, "both pushes' changes are in the log");
    for id in [first, second] {
        assert_eq!(server_json(&w, id)["status"], "in_progress");
    }
    let listed = conflicts_seen_by(&w, &mona);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["record_id"], second.to_string());
    assert_eq!(listed[0]["path"], "in_progress");
    // Each device pulls the other's check-in and not its own back.
    tablet.sync();
    assert_eq!(
        tablet
            .store()
            .read_stateful::<Visit>(first)
            .expect("first visit")
            .status,
        fieldsync_core::model::VisitStatus::InProgress
    );
}

/// Group commit reads the records a group's pushes name once for all of
/// them, with the scope rows of every pusher: each push must still be
/// decided with its own pusher's reach. Pia (Porto) and Ana (the territory
/// everyone else works in) each move a visit of theirs to a Porto account,
/// in one group: Pia's move stands; Ana's is refused as a reference she
/// cannot read, as it is when she pushes alone.
fn a_group_decides_each_push_with_its_own_reach(w: World) {
    let porto = w.add_territory("Porto");
    let adam = w.device("adam");
    let far_shop = w.account_in(&adam, "Loja do Porto", porto);
    let kiosk = w.account_in(&adam, "Quiosque do Porto", porto);
    adam.sync();
    let pia = w.device_of(
        w.add_person_in("pia", Role::Rep, w.north, porto),
        fieldsync_test_support::fast_options(),
    );
    pia.sync();
    let pia_visit = visit(&w, &pia, kiosk);
    pia.sync();
    let ana = w.device("ana");
    let shop = account(&w, &ana, "Ana's shop");
    let ana_visit = visit(&w, &ana, shop);
    ana.sync();
    let moved = |dev: &Device, id: RecordId, to: RecordId| {
        edited(&w, dev, id, |doc| {
            doc.update::<Visit>(today(11), |v| v.account_id = to)
                .expect("edit");
        })
    };
    // Both orders (Pia's visit to the shop, then back to the kiosk): whoever
    // comes first, the other is decided with its own reach.
    let pia_move = (&pia, "pia", pia_visit);
    let ana_move = (&ana, "ana", ana_visit);
    for (group, to) in [
        ([pia_move, ana_move], far_shop),
        ([ana_move, pia_move], kiosk),
    ] {
        let jobs = group
            .iter()
            .map(|&(dev, name, id)| group_job(&w, dev, name, moved(dev, id, to), 0))
            .collect();
        let applied =
            w.rt.block_on(fieldsync_server::db::records::apply_pushes(&w.db, jobs))
                .expect("one transaction");
        for (a, (_, name, _)) in applied.iter().zip(group) {
            let outcome = &a.results[0].1;
            if name == "pia" {
                assert!(outcome.is_ok(), "Pia reads Porto's accounts: {outcome:?}");
            } else {
                let refusal = outcome
                    .as_ref()
                    .expect_err("Ana does not read Porto's accounts");
                assert_eq!(refusal.code, RejectCode::Forbidden, "{}", refusal.message);
                assert!(
                    refusal.message.contains("cannot read"),
                    "{}",
                    refusal.message
                );
            }
        }
    }
    assert_eq!(server_json(&w, pia_visit)["account_id"], kiosk.to_string());
    assert_eq!(server_json(&w, ana_visit)["account_id"], shop.to_string());
}

/// Group commit never puts two pushes of one record in one transaction (each
/// would be decided on the copy stored before the other): pushes of one
/// record that arrive together are written one after the other, the later
/// one merged again onto the first one's copy, and both edits stand. Pushes
/// of other records arriving with them are written as usual.
fn pushes_of_one_record_at_once_are_written_one_after_the_other(w: World) {
    use fieldsync_core::protocol::PushRequest;
    use fieldsync_server::service::{Context, sync};
    let phone = w.device("ana");
    let tablet = w.device("ana");
    let shop = account(&w, &phone, "Ana's shop");
    let other = account(&w, &phone, "Ana's other shop");
    phone.sync();
    let edit = |dev: &Device, id: RecordId, change: fn(&mut Account)| PushRequest {
        batch: uuid::Uuid::now_v7(),
        records: vec![edited(&w, dev, id, |doc| {
            doc.update::<Account>(today(10), change).expect("edit");
        })],
        health: None,
        epochs: Vec::new(),
    };
    let by_phone = edit(&phone, shop, |a| a.name = "Ana's corner shop".into());
    let by_tablet = edit(&tablet, shop, |a| a.visit_frequency_days = Some(7));
    let elsewhere = edit(&phone, other, |a| a.name = "Ana's kiosk".into());
    let ctx =
        w.rt.block_on(Context::open(&w.settings, w.db.clone()))
            .expect("a node's context");
    let (phone_caller, tablet_caller) =
        (caller_of(&w, &phone, "ana"), caller_of(&w, &tablet, "ana"));
    let answers = w.rt.block_on(async {
        tokio::join!(
            sync::push(&ctx, &phone_caller, &by_phone),
            sync::push(&ctx, &tablet_caller, &by_tablet),
            sync::push(&ctx, &phone_caller, &elsewhere),
        )
    });
    for answer in [answers.0, answers.1, answers.2] {
        let answer = answer.expect("stored");
        accepted(&answer.results[0].outcome, "each push");
    }
    let stored: Account = w.server_doc(shop).expect("shop").read().expect("read");
    assert_eq!(stored.name, "Ana's corner shop", "the phone's edit stands");
    assert_eq!(stored.visit_frequency_days, Some(7), "so does the tablet's");
    let other: Account = w.server_doc(other).expect("other").read().expect("read");
    assert_eq!(other.name, "Ana's kiosk");
    // Each device pulls the other's edit (its own it made itself: these
    // were made on copies, so each store holds only what it pulls).
    phone.sync();
    tablet.sync();
    let on_phone: Account = phone.store().read(shop).expect("held");
    let on_tablet: Account = tablet.store().read(shop).expect("held");
    assert_eq!(on_phone.visit_frequency_days, Some(7), "the tablet's edit");
    assert_eq!(on_tablet.name, "Ana's corner shop", "the phone's edit");
}

/// The writer's grouping, made deterministic: while a first push's group is
/// being written (its decision held up on purpose), three pushes queue, two
/// of them of one record. The next group takes the first of those and the
/// push of another record; the second push of the shared record waits for
/// the group after, and is decided on the first one's copy, so neither edit
/// is lost.
fn a_group_never_holds_two_pushes_of_one_record(w: World) {
    use fieldsync_server::db::records::WriteGate;
    use fieldsync_server::service::write::Committer;
    use std::sync::Arc;
    let phone = w.device("ana");
    let tablet = w.device("ana");
    let shop = account(&w, &phone, "Ana's shop");
    let other = account(&w, &phone, "Ana's other shop");
    let third = account(&w, &phone, "Ana's third shop");
    phone.sync();
    // A push of `dev`'s edit of `id`, decided after `hold` milliseconds.
    let job = |dev: &Device, id: RecordId, change: fn(&mut Account), hold: u64| {
        let changes = edited(&w, dev, id, |doc| {
            doc.update::<Account>(today(10), change).expect("edit");
        });
        group_job(&w, dev, "ana", changes, hold)
    };
    let first = job(&phone, third, |a| a.name = "Ana's third kiosk".into(), 300);
    let by_phone = job(&phone, shop, |a| a.name = "Ana's corner shop".into(), 0);
    let by_tablet = job(&tablet, shop, |a| a.visit_frequency_days = Some(7), 0);
    let elsewhere = job(&phone, other, |a| a.name = "Ana's kiosk".into(), 0);
    let committer = Arc::new(Committer::default());
    let gate = Arc::new(WriteGate::default());
    let db = w.db.clone();
    let answers = w.rt.block_on(async move {
        let write = |job| {
            let (committer, gate, db) = (Arc::clone(&committer), Arc::clone(&gate), db.clone());
            tokio::spawn(async move { committer.write(&db, &gate, job).await })
        };
        let first = write(first);
        // The writer holds `first`'s group while these three queue.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let rest = [write(by_phone), write(by_tablet), write(elsewhere)];
        let mut answers = vec![first.await.expect("task").expect("written")];
        for task in rest {
            answers.push(task.await.expect("task").expect("written"));
        }
        answers
    });
    for a in &answers {
        assert!(a.results.iter().all(|(_, r)| r.is_ok()), "{:?}", a.results);
    }
    let stored: Account = w.server_doc(shop).expect("shop").read().expect("read");
    assert_eq!(stored.name, "Ana's corner shop", "the phone's edit stands");
    assert_eq!(stored.visit_frequency_days, Some(7), "so does the tablet's");
    for (id, name) in [(other, "Ana's kiosk"), (third, "Ana's third kiosk")] {
        let a: Account = w.server_doc(id).expect("account").read().expect("read");
        assert_eq!(a.name, name);
    }
}

/// A record written for the first time is read by its own principals (owner,
/// team, territory) and, in two cases, by more from its birth: a contact by
/// whoever reads its account, and a record another write of the same push
/// names by that write's owner. Pia works Porto; Mona (her manager) plans a
/// visit for her at Ana's shop, which Pia then reads through it. Ana's new
/// contact there is Pia's to read; so are a new account of Mona's and the
/// visit for Pia at it, pushed together. (The writer's live note names the
/// readers of each new record without reading them back unless one of these
/// widened them; debug builds read them back anyway and check.)
fn records_born_with_readers_beyond_their_own_are_read_by_them(w: World) {
    use fieldsync_core::model::Contact;
    let porto = w.add_territory("Porto");
    let pia = w.device_of(
        w.add_person_in("pia", Role::Rep, w.north, porto),
        fieldsync_test_support::fast_options(),
    );
    let ana = w.device("ana");
    let mona = w.device("mona");
    let shop = account(&w, &ana, "Ana's shop");
    ana.sync();
    mona.sync();
    let planned = |at: RecordId| {
        let v = Visit::planned(w.meta_of(&pia.person), at, today(9), today(10));
        mona.store()
            .create_stateful(&v, &mona.actor, today(8))
            .expect("a visit for Pia")
    };
    let at_shop = planned(shop);
    assert_eq!(mona.sync().rejected, 0, "Mona plans Pia's visit");
    let contact = Contact {
        meta: w.meta("ana"),
        account_id: shop,
        name: "Buyer".into(),
        role: None,
        phone: None,
        email: None,
        marketing_consent: false,
        consent: None,
    };
    let contact = ana.store().create(&contact, today(8)).expect("contact");
    assert_eq!(ana.sync().rejected, 0, "Ana's contact");
    let outlet = account(&w, &mona, "Mona's new outlet");
    let at_outlet = planned(outlet);
    assert_eq!(mona.sync().rejected, 0, "the outlet and its visit");
    pia.sync();
    for (id, what) in [
        (at_shop, "her visit at Ana's shop"),
        (shop, "Ana's shop"),
        (contact, "the shop's new contact"),
        (outlet, "the new outlet"),
        (at_outlet, "her visit there"),
    ] {
        assert!(pia.store().doc(id).is_ok(), "Pia reads {what}");
    }
}

/// An organisation's writer stops once it has had nothing to write for its
/// idle time, and the next push starts another: pushes that arrive as it
/// stops (the idle time here a few milliseconds, the pushes as far apart)
/// are all written, each edit on the one before.
fn an_idle_writer_stops_and_the_next_push_starts_another(w: World) {
    use fieldsync_server::db::records::WriteGate;
    use fieldsync_server::service::write::Committer;
    use std::sync::Arc;
    use std::time::Duration;
    let phone = w.device("ana");
    let shop = account(&w, &phone, "Ana's shop");
    phone.sync();
    let committer = Arc::new(Committer::with_idle(Duration::from_millis(3)));
    let gate = Arc::new(WriteGate::default());
    let frequencies = 1..=24;
    for (i, days) in frequencies.clone().enumerate() {
        let changes = edited(&w, &phone, shop, |doc| {
            doc.update::<Account>(today(10), |a| a.visit_frequency_days = Some(days))
                .expect("edit");
        });
        let job = group_job(&w, &phone, "ana", changes, 0);
        let (committer, gate, db) = (Arc::clone(&committer), Arc::clone(&gate), w.db.clone());
        let written = w.rt.block_on(async move {
            // 0 to 5 ms apart: before, around and after the writer's idle time.
            tokio::time::sleep(Duration::from_micros((i as u64 * 1_700) % 5_000)).await;
            committer.write(&db, &gate, job).await
        });
        let written = written.expect("written");
        assert!(
            written.results.iter().all(|(_, r)| r.is_ok()),
            "{:?}",
            written.results
        );
    }
    let stored: Account = w.server_doc(shop).expect("shop").read().expect("read");
    assert_eq!(
        stored.visit_frequency_days,
        frequencies.last(),
        "every edit was written"
    );
    // Long idle: the writer is gone; the next push starts one.
    w.rt.block_on(async { tokio::time::sleep(Duration::from_millis(100)).await });
    assert_eq!(committer.writers(), 0, "the idle writer stopped");
    let changes = edited(&w, &phone, shop, |doc| {
        doc.update::<Account>(today(11), |a| a.name = "Ana's corner shop".into())
            .expect("edit");
    });
    let job = group_job(&w, &phone, "ana", changes, 0);
    let (c, gate, db) = (Arc::clone(&committer), Arc::clone(&gate), w.db.clone());
    let written = w.rt.block_on(async move { c.write(&db, &gate, job).await });
    assert!(
        written
            .expect("written")
            .results
            .iter()
            .all(|(_, r)| r.is_ok())
    );
    assert_eq!(committer.writers(), 1, "a new writer took the push");
    let stored: Account = w.server_doc(shop).expect("shop").read().expect("read");
    assert_eq!(stored.name, "Ana's corner shop");
}
