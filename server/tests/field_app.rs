//! The field app's back-office counterparts, on SQLite and on PostgreSQL,
//! with real device stores and real HTTP.
//!
//! - **Van stock.** Mona (manager) fills Tomás's van through the JSON API
//!   (the first replenishment creates the van, owned by Tomás); his device
//!   receives it, he books a serialized part and two seals from the van
//!   offline (the van held no seal: the job is not blocked) while Mona
//!   puts one seal in; after the sync the office reads the pump's balance
//!   gone down by the serial used and the seals at minus one, to reconcile.
//!   A technician may not fill a van (403), serials must match a serialized
//!   part (400), another team's technician is not found (404), and a raw
//!   push that hides a part taken from the van is refused by the shared
//!   rules. `fieldsync van replenish` fills it from the command line.
//! - **A clash settled from the app.** Tomás stops the same running timer on
//!   his phone and on his tablet offline; after both sync the end clashes on
//!   the phone, he keeps one of the two ends (`RecordDoc::keep_value`, the
//!   call the bindings' `resolve_conflict` makes), the server stores it and
//!   the tablet receives the settled record; a status clash stays the
//!   office's.

use fieldsync_core::RecordId;
use fieldsync_core::model::van_stock::{self, Consumption};
use fieldsync_core::model::{
    Account, Assignment, AssignmentStatus, DeviceTime, PartUsed, Product, Qty, RecordKind,
    ServiceJob, TimeEntry, TimeKind, VanStock, assignment,
};
use fieldsync_core::protocol::{PushOutcome, RejectCode};
use fieldsync_test_support::{Device, World, on_both_databases, today};
use serde_json::{Value, json};

on_both_databases!(
    a_van_is_filled_by_the_office_and_drawn_from_offline,
    a_timer_stopped_on_two_devices_is_settled_from_the_app,
);

fn api(w: &World, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    fieldsync_test_support::api(w, token, method, path, body)
}

fn product(w: &World, mona: &Device, sku: &str, serialized: bool) -> RecordId {
    let p = Product {
        meta: w.meta("mona"),
        sku: sku.into(),
        name: format!("Part {sku}"),
        unit: "pcs".into(),
        serialized,
        spare_part: true,
        active: true,
    };
    mona.store().create(&p, today(7)).expect("product")
}

/// A job for a customer of Mona's, dispatched to Tomás; returns the assignment.
fn dispatched(w: &World, mona: &Device) -> RecordId {
    let account = Account {
        code: None,
        meta: w.meta("mona"),
        name: "Lavandaria Sol".into(),
        account_type: "customer".into(),
        account_status: "active".into(),
        price_list_id: None,
        visit_frequency_days: None,
        locations: Default::default(),
    };
    let account_id = mona.store().create(&account, today(7)).expect("account");
    let job = ServiceJob::new(w.meta("mona"), account_id, "repair");
    let job_id = mona
        .store()
        .create_stateful(&job, &mona.actor, today(8))
        .expect("job");
    let a = Assignment::new(w.meta("tomas"), job_id, today(9), today(13));
    let id = mona
        .store()
        .create_stateful(&a, &mona.actor, today(8))
        .expect("assignment");
    mona.store()
        .act(id, |d| {
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
    assert_eq!(mona.sync().rejected, 0);
    id
}

fn to_work(tomas: &Device, id: RecordId) {
    for (to, hour) in [
        (AssignmentStatus::Accepted, 9),
        (AssignmentStatus::OnSite, 10),
        (AssignmentStatus::InProgress, 10),
    ] {
        tomas
            .store()
            .act(id, |d| {
                assignment::advance(d, &tomas.actor, to, today(hour), None, None)
            })
            .unwrap_or_else(|e| panic!("{to:?}: {e}"));
    }
}

/// Books a part on the assignment from the van, as the bindings' `add_part`
/// with a van does: the part, then the van's consumption under its entry id.
fn from_van(
    tomas: &Device,
    assignment_id: RecordId,
    van: RecordId,
    product: RecordId,
    serial: Option<&str>,
) -> RecordId {
    let part = PartUsed {
        product_id: product,
        qty: Qty::units(1),
        van_stock_id: Some(van),
        serial: serial.map(str::to_owned),
        billable: true,
        at: today(11),
    };
    let used = Consumption {
        product_id: product,
        qty: part.qty,
        serial: part.serial.clone(),
        assignment_id,
        at: part.at,
    };
    let entry = tomas
        .store()
        .act(assignment_id, |d| {
            assignment::add_part(d, &tomas.actor, today(11), part)
        })
        .expect("part");
    tomas
        .store()
        .act(van, |d| {
            van_stock::consume(d, &tomas.actor, today(11), entry, used)
        })
        .expect("taken from the van");
    entry
}

fn balance<'a>(view: &'a Value, sku: &str) -> &'a Value {
    view["balances"]
        .as_array()
        .expect("balances")
        .iter()
        .find(|b| b["sku"] == sku)
        .unwrap_or_else(|| panic!("no {sku} in {view}"))
}

fn a_van_is_filled_by_the_office_and_drawn_from_offline(w: World) {
    let mona = w.device("mona");
    let tomas = w.device("tomas");
    let pump = product(&w, &mona, "PUMP-9", true);
    let seal = product(&w, &mona, "SEAL-2", false);
    let assignment_id = dispatched(&w, &mona);
    let tomas_id = w.person("tomas").id;
    let path = format!("/v1/technicians/{tomas_id}/van/replenish");

    // The office's rules on a replenishment.
    let (status, body) = api(
        &w,
        "POST",
        &path,
        &tomas.access_token(),
        Some(json!({"product_id": pump.to_string(), "qty": "2", "serials": ["P-1", "P-2"]})),
    );
    assert_eq!(status, 403, "a technician does not fill vans: {body}");
    let (status, body) = api(
        &w,
        "POST",
        &path,
        &mona.access_token(),
        Some(json!({"product_id": pump.to_string(), "qty": "2", "serials": ["P-1"]})),
    );
    assert_eq!(status, 400, "two pumps need two serials: {body}");
    let tiago = w.person("tiago").id;
    let (status, _) = api(
        &w,
        "POST",
        &format!("/v1/technicians/{tiago}/van/replenish"),
        &mona.access_token(),
        Some(json!({"product_id": seal.to_string(), "qty": "1"})),
    );
    assert_eq!(status, 404, "another team's technician is not Mona's");

    let (status, view) = api(
        &w,
        "POST",
        &path,
        &mona.access_token(),
        Some(
            json!({"product_id": pump.to_string(), "qty": "2", "serials": ["P-1", " P-2 "],
                    "note": "delivery 118"}),
        ),
    );
    assert_eq!(status, 200, "{view}");
    assert_eq!(balance(&view, "PUMP-9")["qty"], "2.0000");
    let van: RecordId = view["van_id"]
        .as_str()
        .expect("van id")
        .parse()
        .expect("a record id");

    // Tomás receives his van and works offline.
    assert_eq!(tomas.sync().rejected, 0);
    let on_device: VanStock = tomas.store().read(van).expect("the van reached Tomás");
    assert_eq!(on_device.meta.owner, tomas_id);
    assert_eq!(on_device.balance_of(pump), Qty::units(2));
    to_work(&tomas, assignment_id);
    from_van(&tomas, assignment_id, van, pump, Some("P-2"));
    from_van(&tomas, assignment_id, van, seal, None);
    let hidden = from_van(&tomas, assignment_id, van, seal, None);
    let here: VanStock = tomas.store().read(van).expect("van");
    assert_eq!(
        here.balance_of(seal),
        Qty::units(-2),
        "an empty van never blocks the job"
    );

    // Meanwhile the office puts one seal in.
    let (status, body) = api(
        &w,
        "POST",
        &path,
        &mona.access_token(),
        Some(json!({"product_id": seal.to_string(), "qty": "1"})),
    );
    assert_eq!(status, 200, "{body}");

    let r = tomas.sync();
    assert_eq!(r.rejected, 0, "{r:?}");
    let (status, view) = api(
        &w,
        "GET",
        &format!("/v1/technicians/{tomas_id}/van"),
        &mona.access_token(),
        None,
    );
    assert_eq!(status, 200, "{view}");
    assert_eq!(balance(&view, "PUMP-9")["qty"], "1.0000");
    assert_eq!(balance(&view, "PUMP-9")["serials"], json!(["P-1"]));
    assert_eq!(balance(&view, "SEAL-2")["qty"], "-1.0000", "{view}");
    let merged: VanStock = tomas.store().read(van).expect("van");
    assert_eq!(merged.balance_of(seal), Qty::units(-1), "the device agrees");
    assert_eq!(merged.replenishments.len(), 2);
    let on_server: Assignment = w
        .server_doc(assignment_id)
        .expect("stored")
        .read_stateful()
        .expect("assignment");
    assert!(
        on_server
            .parts
            .values()
            .all(|p| p.van_stock_id == Some(van))
    );

    // A raw push hiding a seal taken from the van.
    let out = tomas.push_forged(w.server_doc(van).expect("copy"), |doc| {
        doc.update::<VanStock>(today(12), |v| {
            v.consumptions.remove(&hidden);
        })
        .expect("edit");
    });
    match out {
        PushOutcome::Rejected(r) => {
            assert_eq!(r.code, RejectCode::Forbidden, "{r:?}");
            assert!(r.message.contains("consumptions"), "{r:?}");
        }
        other => panic!("a hidden part must be refused: {other:?}"),
    }
    assert_eq!(
        w.server_doc(van)
            .expect("van")
            .read::<VanStock>()
            .expect("van")
            .consumptions
            .len(),
        3
    );
    assert_eq!(
        tomas
            .store()
            .all_of(RecordKind::VanStock)
            .expect("list")
            .len(),
        1
    );

    // The command line, on Mona's behalf; a technician is refused.
    let mut args: Vec<String> = [
        "van",
        "replenish",
        "--org",
        fieldsync_test_support::ORG,
        "--as",
        "mona@acme.test",
        "--technician",
        &tomas_id.to_string(),
        "--product",
        &pump.to_string(),
        "--qty",
        "1",
        "--serial",
        "P-3",
        "--data-dir",
        w.settings.data_dir.to_str().expect("utf-8"),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if let Some(url) = &w.settings.database_url {
        args.extend(["--database-url".to_owned(), url.clone()]);
    }
    let mut as_tomas = args.clone();
    as_tomas[5] = "tomas@acme.test".into();
    let out = fieldsync_test_support::fieldsync(&as_tomas, &[], None);
    assert!(!out.status.success(), "{out:?}");
    let out = fieldsync_test_support::fieldsync(&args, &[], None);
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("PUMP-9") && printed.contains("P-1 P-3"),
        "{printed}"
    );
    tomas.sync();
    let van_now: VanStock = tomas.store().read(van).expect("van");
    assert_eq!(van_now.balance_of(pump), Qty::units(2));
}

fn a_timer_stopped_on_two_devices_is_settled_from_the_app(w: World) {
    let mona = w.device("mona");
    let phone = w.device("tomas");
    let tablet = w.device("tomas");
    let assignment_id = dispatched(&w, &mona);
    phone.sync();
    to_work(&phone, assignment_id);
    let entry = phone
        .store()
        .act(assignment_id, |d| {
            assignment::add_time_entry(
                d,
                &phone.actor,
                today(10),
                TimeEntry {
                    kind: TimeKind::Work,
                    start: today(10),
                    end: None,
                    approval: Default::default(),
                    note: None,
                },
            )
        })
        .expect("timer");
    assert_eq!(phone.sync().rejected, 0);
    tablet.sync();

    // Both stop it offline, a few minutes apart.
    let stop = |dev: &Device, end: DeviceTime| {
        dev.store()
            .act(assignment_id, |d| {
                assignment::stop_time_entry(d, &dev.actor, end, entry, end, None)
            })
            .expect("stop");
    };
    stop(&phone, today(11));
    stop(&tablet, DeviceTime::utc(today(11).at_ms + 300_000));
    assert_eq!(phone.sync().rejected, 0);
    assert_eq!(tablet.sync().rejected, 0);
    phone.sync();

    let path = format!("time_entries.{entry}.end");
    let clash = phone.store().conflicts(assignment_id).expect("conflicts");
    let end = clash
        .iter()
        .find(|c| c.path == path)
        .unwrap_or_else(|| panic!("the end clashes: {clash:?}"));
    let keep = end
        .values
        .iter()
        .find(|v| v.value["at_ms"] == today(11).at_ms)
        .expect("the phone's end")
        .value
        .clone();

    // The status is the office's to settle, not the technician's.
    let refused = phone.store().act(assignment_id, |d| {
        d.resolve_status_by_name(&phone.actor, "completed", today(12), "done")
    });
    assert!(refused.is_err(), "a technician does not settle statuses");

    phone
        .store()
        .act(assignment_id, |d| {
            d.keep_value(phone.actor.role, &path, &keep, today(12))
        })
        .expect("kept");
    assert_eq!(phone.sync().rejected, 0);
    let on_server = w.server_doc(assignment_id).expect("stored");
    assert!(on_server.conflicts().expect("conflicts").is_empty());
    let a: Assignment = on_server.read_stateful().expect("assignment");
    assert_eq!(a.time_entries[&entry].end, Some(today(11)));
    tablet.sync();
    assert!(
        tablet
            .store()
            .conflicts(assignment_id)
            .expect("conflicts")
            .is_empty()
    );
}
