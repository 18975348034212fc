//! Erasure of personal data (GDPR Art. 17) end to end on both databases,
//! with real device stores: after an administrator erases a contact or a
//! user, every erased value is gone, byte for byte, from the server's
//! database (the SQLite file after a checkpoint; `pg_dump` of PostgreSQL),
//! the blob store and every device's store file and WAL — including a device
//! that was offline at the erasure with unsynced edits, whose other edits all
//! arrive. Also: a hostile client cannot bring old history back (a change on
//! an older epoch, a change starting a new history), a contact's data export,
//! the erasure log and the command line.

use std::path::{Path, PathBuf};

use fantoccini::Locator;
use fieldsync_core::RecordId;
use fieldsync_core::model::{
    Account, Contact, GeoPoint, Money, Order, OrderLine, Qty, RecordDoc, Role, Signer, Site, Visit,
    erase::ERASED, order, visit,
};
use fieldsync_core::protocol::{PushOutcome, RejectCode};
use fieldsync_core::store::AttachmentKind;
use fieldsync_core::sync::{NoProgress, SyncError};
use fieldsync_test_support::{
    Backend, Browser, Device, ORG, PASSWORD, SESSION_COOKIE, World, cookie_pair, csrf_of,
    fast_options, fieldsync, http, on_both_databases, settled, sign_in, today,
};
use serde_json::{Value, json};

on_both_databases!(
    erasing_a_contact_reaches_every_copy_and_keeps_the_offline_edits,
    erasing_a_user_keeps_their_visits_under_a_pseudonym,
    old_history_cannot_come_back,
    the_erasure_page_asks_for_a_confirmation_and_lists_the_log,
);

const NAME: &str = "Zebulon Quaxworth";
const NAME_LATER: &str = "Zeb Quaxworth-Lind";
const PHONE: &str = "+351 912 345 678";
const PHONE_LATER: &str = "+351 933 000 111";
const PHONE_OFFLINE: &str = "+351 966 777 888";
const EMAIL: &str = "zebulon@quaxworth.example";
const EMAIL_LATER: &str = "zq@lindquax.example";

/// A JSON request with a bearer token.
fn call(w: &World, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    fieldsync_test_support::api(w, token, method, path, body)
}

/// What to look for: the value's bytes, and their hex (how `pg_dump` writes
/// a `bytea`, such as a stored document).
fn needles(value: &[u8]) -> [Vec<u8>; 2] {
    [value.to_vec(), hex::encode(value).into_bytes()]
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() || hay.len() < needle.len() {
        return 0;
    }
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The bytes the server holds, by where: its database (the SQLite file and
/// WAL after a checkpoint, or a `pg_dump`), and each file of the blob store.
fn server_bytes(w: &World) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    match &w.settings.database_url {
        Some(url) if url.starts_with("postgres") => {
            let pg_dump = pg_bin("pg_dump");
            let dump = std::process::Command::new(&pg_dump)
                .arg("--dbname")
                .arg(url)
                .arg("--no-owner")
                .output()
                .expect("pg_dump runs");
            assert!(
                dump.status.success(),
                "pg_dump: {}",
                String::from_utf8_lossy(&dump.stderr)
            );
            assert!(dump.stdout.len() > 10_000, "a dump of the whole database");
            out.push(("pg_dump".to_owned(), dump.stdout));
        }
        _ => {
            w.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)".to_owned());
            for name in ["fieldsync.db", "fieldsync.db-wal"] {
                let path = w.settings.data_dir.join(name);
                if let Ok(bytes) = std::fs::read(&path) {
                    out.push((path.display().to_string(), bytes));
                }
            }
            assert!(!out.is_empty(), "the server's SQLite file");
        }
    }
    let mut blobs = Vec::new();
    files_under(&w.settings.data_dir.join("attachments"), &mut blobs);
    for path in blobs {
        let bytes = std::fs::read(&path).expect("blob");
        out.push((path.display().to_string(), bytes));
    }
    out
}

/// A PostgreSQL client binary, where the test cluster's are.
fn pg_bin(name: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL binaries in /usr/lib/postgresql")
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| PathBuf::from(name))
}

/// A device's store file and its WAL.
fn device_bytes(dev: &Device) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let wal = PathBuf::from(format!("{}-wal", dev.path.display()));
    for path in [dev.path.clone(), wal] {
        if let Ok(bytes) = std::fs::read(&path) {
            out.push((path.display().to_string(), bytes));
        }
    }
    assert!(!out.is_empty(), "{} has a store file", dev.person.email);
    out
}

/// Asserts no value appears anywhere in `places`, listing every hit.
fn assert_gone(places: &[(String, Vec<u8>)], values: &[(&str, Vec<u8>)]) {
    let mut hits = Vec::new();
    for (place, bytes) in places {
        for (label, value) in values {
            for needle in needles(value) {
                let n = count(bytes, &needle);
                if n > 0 {
                    hits.push(format!("{label} x{n} in {place}"));
                }
            }
        }
    }
    assert!(hits.is_empty(), "erased values survive: {hits:#?}");
}

/// Asserts a value is found (so the scan is known to see that kind of copy).
fn assert_found(places: &[(String, Vec<u8>)], value: &[u8]) {
    let found = places
        .iter()
        .any(|(_, bytes)| needles(value).iter().any(|n| count(bytes, n) > 0));
    assert!(
        found,
        "{} not found before the erasure",
        String::from_utf8_lossy(value)
    );
}

fn erasing_a_contact_reaches_every_copy_and_keeps_the_offline_edits(w: World) {
    let (phone, tablet, mona, adam) = (
        w.device("ana"),
        w.device("ana"),
        w.device("mona"),
        w.device("adam"),
    );
    let shop = w.account_on(&phone, "Corner Shop");
    let annex = w.account_on(&phone, "Corner Annex");
    let contact = Contact {
        meta: w.meta("ana"),
        account_id: shop,
        name: NAME.into(),
        role: Some("buyer".into()),
        phone: Some(PHONE.into()),
        email: Some(EMAIL.into()),
        marketing_consent: true,
        consent: None,
    };
    let cid = phone.store().create(&contact, today(8)).expect("contact");
    // Photographed: a photo of them (its bytes carry their name, as a
    // caption would), linked to their record only.
    let photo = format!("JPEG photo of {NAME} at the counter").into_bytes();
    let photo_sha = phone
        .store()
        .attach(
            cid,
            AttachmentKind::Photo,
            "image/jpeg",
            &photo,
            today(8),
            None,
        )
        .expect("photo");
    // A visit meeting them, whose notes name them.
    let visit_id = w.visit_on(&phone, shop);
    phone
        .store()
        .update::<Visit>(visit_id, today(8), |v| {
            v.contact_id = Some(cid);
            v.notes = format!("Met {NAME}; call back on {PHONE}");
        })
        .expect("visit");
    // An order they signed.
    let order_id = phone
        .store()
        .create_stateful(
            &Order::new(w.meta("ana"), shop, "EUR"),
            &phone.actor,
            today(9),
        )
        .expect("order");
    phone
        .store()
        .act(order_id, |d| {
            order::add_line(
                d,
                &phone.actor,
                today(9),
                OrderLine::new(RecordId::new(), Qty::units(2), Money::new(990, "EUR")),
            )
        })
        .expect("line");
    let drawing = format!("PNG signature drawn by {NAME}").into_bytes();
    let signature_sha = phone
        .store()
        .attach(
            order_id,
            AttachmentKind::Signature,
            "image/png",
            &drawing,
            today(9),
            None,
        )
        .expect("signature image");
    phone
        .store()
        .sign_order(
            order_id,
            &phone.actor,
            today(9),
            Signer {
                name: NAME.into(),
                role: Some("buyer".into()),
                image_sha256: signature_sha.clone(),
                gps: None,
            },
        )
        .expect("signed");
    phone.sync();
    tablet.sync();
    mona.sync();

    // Edited on three devices: the history holds several values.
    phone
        .store()
        .update::<Contact>(cid, today(10), |c| c.name = NAME_LATER.into())
        .expect("renamed");
    phone.sync();
    tablet.sync();
    tablet
        .store()
        .update::<Contact>(cid, today(10), |c| c.phone = Some(PHONE_LATER.into()))
        .expect("new phone");
    tablet.sync();
    mona.sync();
    mona.store()
        .update::<Contact>(cid, today(11), |c| c.email = Some(EMAIL_LATER.into()))
        .expect("new email");
    mona.sync();
    phone.sync();
    tablet.sync();

    // The tablet goes offline with edits: to the contact (an erased field
    // and one that stays), to the visit naming them, and to other records.
    tablet
        .store()
        .update::<Contact>(cid, today(12), |c| {
            c.phone = Some(PHONE_OFFLINE.into());
            c.account_id = annex;
        })
        .expect("offline contact edit");
    tablet
        .store()
        .update::<Visit>(visit_id, today(12), |v| {
            v.notes = "Bring the autumn samples".into()
        })
        .expect("offline visit edit");
    tablet
        .store()
        .update::<Account>(shop, today(12), |a| a.name = "Corner Shop Ltd".into())
        .expect("offline account edit");
    let offline_visit = w.visit_on(&tablet, annex);

    let values: Vec<(&str, Vec<u8>)> = [
        NAME,
        NAME_LATER,
        PHONE,
        PHONE_LATER,
        PHONE_OFFLINE,
        EMAIL,
        EMAIL_LATER,
    ]
    .iter()
    .map(|v| (*v, v.as_bytes().to_vec()))
    .collect();
    // The scan sees each kind of copy before the erasure.
    let before = server_bytes(&w);
    for v in [NAME, PHONE_LATER, EMAIL_LATER] {
        assert_found(&before, v.as_bytes());
    }
    assert_found(&device_bytes(&phone), PHONE.as_bytes());
    assert!(
        w.settings.data_dir.join("attachments").exists(),
        "the blob store holds the photo and the signature"
    );

    // The data export (Art. 15) holds everything, past values included.
    let (status, export) = call(
        &w,
        &adam.access_token(),
        "GET",
        &format!("/v1/admin/export/person/{cid}"),
        None,
    );
    assert_eq!(status, 200, "{export}");
    let past: Vec<&str> = export["values_in_history"]
        .as_array()
        .expect("values")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for v in [NAME, NAME_LATER, PHONE, PHONE_LATER, EMAIL, EMAIL_LATER] {
        assert!(past.contains(&v), "{v} in {past:?}");
    }
    assert!(
        export["records"]
            .as_array()
            .expect("records")
            .iter()
            .any(|r| r["id"] == visit_id.to_string()),
        "{export}"
    );
    assert_eq!(export["attachments"], json!([photo_sha]));

    // Only an administrator erases, and with a reason.
    let path = format!("/v1/admin/erase/contact/{cid}");
    let (status, _) = call(
        &w,
        &phone.access_token(),
        "POST",
        &path,
        Some(json!({"reason": "asked"})),
    );
    assert_eq!(status, 403);
    let (status, _) = call(
        &w,
        &adam.access_token(),
        "POST",
        &path,
        Some(json!({"reason": " "})),
    );
    assert_eq!(status, 400);
    let (status, _) = call(
        &w,
        &adam.access_token(),
        "POST",
        &format!("/v1/admin/erase/contact/{}", RecordId::new()),
        Some(json!({"reason": "asked"})),
    );
    assert_eq!(status, 404);
    let (status, erased) = call(
        &w,
        &adam.access_token(),
        "POST",
        &path,
        Some(json!({"reason": "Art. 17 request by email of 3 March"})),
    );
    assert_eq!(status, 200, "{erased}");
    let rewritten: Vec<&str> = erased["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for id in [cid, visit_id, order_id] {
        assert!(
            rewritten.contains(&id.to_string().as_str()),
            "{id} in {erased}"
        );
    }
    assert!(
        !rewritten.contains(&annex.to_string().as_str()),
        "a record holding none of their data stays as it was: {erased}"
    );
    assert_eq!(erased["attachments"], 2, "{erased}");

    // The devices sync, the offline one last (twice: its edits made on the
    // old epoch are refused as retryable, rebased, and pushed again).
    phone.sync();
    mona.sync();
    let first = tablet.sync();
    assert!(first.rewritten >= 2, "{first:?}");
    assert_eq!(first.rejected, 0, "nothing refused for good: {first:?}");
    tablet.sync();
    assert_eq!(tablet.store().pending_changes().expect("outbox"), 0);
    phone.sync();
    mona.sync();

    // Everything the offline tablet did that is not erased arrived.
    let contact_now: Contact = w.server_doc(cid).expect("contact").read().expect("contact");
    assert_eq!(contact_now.name, ERASED);
    assert_eq!(
        contact_now.account_id, annex,
        "the move made offline arrived"
    );
    assert_eq!((contact_now.phone, contact_now.email), (None, None));
    let visit_now: Visit = w
        .server_doc(visit_id)
        .expect("visit")
        .read_stateful()
        .expect("visit");
    assert_eq!(visit_now.notes, "Bring the autumn samples");
    assert_eq!(visit_now.contact_id, Some(cid), "the reference stays");
    let shop_now: Account = w.server_doc(shop).expect("shop").read().expect("shop");
    assert_eq!(shop_now.name, "Corner Shop Ltd");
    assert!(
        w.server_doc(offline_visit).is_some(),
        "the visit made offline arrived"
    );
    let order_now: Order = w
        .server_doc(order_id)
        .expect("order")
        .read_stateful()
        .expect("order");
    assert_eq!(order_now.lines.len(), 1, "the order itself stays");
    for dev in [&phone, &tablet, &mona] {
        let held: Contact = dev.store().read(cid).expect("contact held");
        assert_eq!(held.name, ERASED, "{}", dev.person.email);
        assert_eq!(held.account_id, annex, "{}", dev.person.email);
        assert_eq!(dev.store().epoch(cid).expect("epoch"), 1);
        assert!(
            dev.store().attachment_info(&photo_sha).is_err(),
            "{} dropped the photo",
            dev.person.email
        );
    }
    // A history of two changes: the server's rewrite, then the offline
    // device's rebased edit.
    assert_eq!(
        w.server_doc(cid).expect("contact").changes_since(&[]).len(),
        2
    );

    // The erasure log says who, when, why and which records, never a value.
    let (status, log) = call(&w, &adam.access_token(), "GET", "/v1/admin/erasures", None);
    assert_eq!(status, 200, "{log}");
    assert_eq!(log[0]["subject_id"], cid.to_string());
    assert_eq!(log[0]["reason"], "Art. 17 request by email of 3 March");
    assert!(!log.to_string().contains("Quaxworth"), "{log}");

    // Byte for byte: the server's database and blob store, every device's
    // store file and WAL.
    let mut places = server_bytes(&w);
    for dev in [&phone, &tablet, &mona, &adam] {
        places.extend(device_bytes(dev));
    }
    let mut all = values.clone();
    all.push(("photo", photo));
    all.push(("signature image", drawing));
    assert_gone(&places, &all);
}

fn erasing_a_user_keeps_their_visits_under_a_pseudonym(w: World) {
    let quillon = w.add_person("quillon.fairweather", Role::Rep, w.north);
    let rep = w.device_of(quillon.clone(), fast_options());
    let (mona, adam) = (w.device("mona"), w.device("adam"));
    let kiosk = w.account_on(&rep, "Harbour Kiosk");
    let visit_id = w.visit_on(&rep, kiosk);
    let fix = GeoPoint {
        lat: 38.716_732_1,
        lng: -9.139_876_5,
        accuracy_m: Some(7.25),
    };
    let site = Site {
        coords: None,
        radius_m: 150.0,
    };
    rep.store()
        .act(visit_id, |d| {
            visit::check_in(d, &rep.actor, today(9), Some(fix), site)
        })
        .expect("check-in");
    rep.store()
        .update::<Visit>(visit_id, today(9), |v| {
            v.notes = format!("Shelf audit by {}", quillon.email)
        })
        .expect("notes");
    rep.sync();
    mona.sync();
    let gps: Vec<(&str, Vec<u8>)> = vec![
        ("latitude", fix.lat.to_le_bytes().to_vec()),
        ("longitude", fix.lng.to_le_bytes().to_vec()),
        ("email", quillon.email.as_bytes().to_vec()),
    ];
    let before = server_bytes(&w);
    assert_found(&before, &fix.lat.to_le_bytes());
    assert_found(&before, quillon.email.as_bytes());

    // The command line, through the same service.
    let mut args: Vec<String> = [
        "erase",
        "user",
        &quillon.id.to_string(),
        "--reason",
        "left the company; Art. 17",
        "--org",
        ORG,
        "--data-dir",
        w.settings.data_dir.to_str().expect("utf-8"),
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    args.extend(w.database_args());
    let out = fieldsync(&args, &[], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("records rewritten"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The rep's visit stays, attributed to a pseudonym; their fixes are gone.
    mona.sync();
    let visit_now: Visit = w
        .server_doc(visit_id)
        .expect("visit")
        .read_stateful()
        .expect("visit");
    assert_eq!(visit_now.meta.owner, quillon.id, "still theirs, by id");
    assert!(
        visit_now.check_in.is_some(),
        "the check-in stays, without its fix"
    );
    assert_eq!(
        visit_now.check_in.as_ref().and_then(|c| c.gps),
        None,
        "{visit_now:?}"
    );
    assert_eq!(visit_now.notes, format!("Shelf audit by {ERASED}"));
    let held: Visit = mona.store().read_stateful(visit_id).expect("held");
    assert_eq!(held.check_in.as_ref().and_then(|c| c.gps), None);
    let (status, people) = call(&w, &adam.access_token(), "GET", "/v1/people", None);
    assert_eq!(status, 200);
    let them = people
        .as_array()
        .expect("people")
        .iter()
        .find(|p| p["id"] == quillon.id.to_string())
        .expect("the account stays");
    assert!(
        them["display_name"]
            .as_str()
            .is_some_and(|n| n.starts_with("Former user")),
        "{them}"
    );
    // Their device is revoked: it wipes itself at its next request.
    assert!(matches!(
        rep.client.sync(&NoProgress),
        Err(SyncError::Revoked)
    ));

    let mut places = server_bytes(&w);
    for dev in [&rep, &mona, &adam] {
        places.extend(device_bytes(dev));
    }
    assert_gone(&places, &gps);
}

fn old_history_cannot_come_back(w: World) {
    let (ana, adam) = (w.device("ana"), w.device("adam"));
    let shop = w.account_on(&ana, "Quay Stores");
    let contact = Contact {
        meta: w.meta("ana"),
        account_id: shop,
        name: "Ophelia Wrenbeck".into(),
        role: None,
        phone: Some("+44 7700 900456".into()),
        email: None,
        marketing_consent: false,
        consent: None,
    };
    let cid = ana.store().create(&contact, today(8)).expect("contact");
    ana.sync();
    // A copy of the record as it was, kept by a hostile client.
    let old = ana.store().doc(cid).expect("doc");
    let (status, _) = call(
        &w,
        &adam.access_token(),
        "POST",
        &format!("/v1/admin/erase/contact/{cid}"),
        Some(json!({"reason": "Art. 17"})),
    );
    assert_eq!(status, 200);

    // An edit made on the old epoch is refused, retryably: pull first.
    let outcome = ana.push_forged(old.clone(), |d| {
        d.update::<Contact>(today(9), |c| c.phone = Some("+44 7700 900999".into()))
            .expect("edit");
    });
    match outcome {
        PushOutcome::Rejected(r) => {
            assert_eq!(r.code, RejectCode::StaleEpoch, "{r:?}");
            assert!(r.retryable);
        }
        other => panic!("an old-epoch change must be refused: {other:?}"),
    }
    // The old history itself, sent as a new record's would be (it starts
    // with a change that depends on nothing), even when naming the current
    // epoch, is refused for good: nothing of it is merged.
    let mut whole = old.clone();
    let outcome = ana.push_new(&mut whole);
    assert!(
        matches!(&outcome, PushOutcome::Rejected(r) if r.code == RejectCode::StaleEpoch),
        "{outcome:?}"
    );
    let mut forged = RecordDoc::create(&contact, ana.actor_id(), today(8)).expect("doc");
    let raw: Vec<serde_bytes::ByteBuf> = forged
        .changes_since(&[])
        .iter()
        .map(|c| serde_bytes::ByteBuf::from(c.raw_bytes().to_vec()))
        .collect();
    use fieldsync_core::sync::Transport as _;
    let resp = ana
        .net()
        .push(
            &ana.access_token(),
            &fieldsync_core::protocol::PushRequest {
                batch: uuid::Uuid::now_v7(),
                records: vec![fieldsync_core::protocol::RecordChanges {
                    id: cid,
                    kind: fieldsync_core::model::RecordKind::Contact,
                    changes: raw,
                }],
                health: None,
                epochs: vec![fieldsync_core::protocol::RecordEpoch {
                    id: cid,
                    epoch: 1,
                    erased: Vec::new(),
                    attachments: Vec::new(),
                }],
            },
        )
        .expect("answered");
    match &resp.results[0].outcome {
        PushOutcome::Rejected(r) => {
            assert_eq!(r.code, RejectCode::InvalidChange, "{r:?}");
            assert!(!r.retryable);
        }
        other => panic!("a second beginning must be refused: {other:?}"),
    }
    let server: Contact = w.server_doc(cid).expect("doc").read().expect("contact");
    assert_eq!((server.name.as_str(), server.phone), (ERASED, None));
    let bytes = w.server_doc(cid).expect("doc").save_uncompressed();
    assert_eq!(count(&bytes, b"Wrenbeck"), 0);

    // Repair (after a restore, say) cannot bring the old history back: a
    // device on the old epoch exchanges nothing, and one claiming the new
    // epoch has its old changes refused.
    use fieldsync_core::automerge::sync::{Message, State, SyncDoc};
    let repair = |epoch: u32, message: Vec<u8>| {
        ana.net().repair(
            &ana.access_token(),
            &fieldsync_core::protocol::RepairRequest {
                id: cid,
                kind: fieldsync_core::model::RecordKind::Contact,
                message: serde_bytes::ByteBuf::from(message),
                epoch,
            },
        )
    };
    let mut old_am = old.clone().into_automerge();
    let mut state = State::new();
    let first = old_am
        .sync()
        .generate_sync_message(&mut state)
        .expect("a first message")
        .encode();
    let answer = repair(0, first.clone()).expect("answered");
    assert_eq!(answer.message, None, "nothing to exchange on an old epoch");
    let answer = repair(1, first).expect("answered");
    let reply = Message::decode(&answer.message.expect("the server's heads")).expect("decodes");
    old_am
        .sync()
        .receive_sync_message(&mut state, reply)
        .expect("received");
    let with_changes = old_am
        .sync()
        .generate_sync_message(&mut state)
        .expect("the old history")
        .encode();
    assert!(
        repair(1, with_changes).is_err(),
        "old history sent by repair is refused"
    );
    let bytes = w.server_doc(cid).expect("doc").save_uncompressed();
    assert_eq!(count(&bytes, b"Wrenbeck"), 0);

    // The device itself follows with its next sync.
    let report = ana.sync();
    assert!(report.rewritten >= 1, "{report:?}");
    let held: Contact = ana.store().read(cid).expect("held");
    assert_eq!(held.name, ERASED);

    // A device primed after the erasure holds the new epoch, and its edits,
    // made on it, are accepted.
    let fresh = w.device("ana");
    assert!(fresh.sync().primed > 0);
    assert_eq!(fresh.store().epoch(cid).expect("epoch"), 1);
    fresh
        .store()
        .update::<Contact>(cid, today(10), |c| c.role = Some("new buyer".into()))
        .expect("edit");
    let report = fresh.sync();
    assert_eq!((report.pushed, report.rejected), (1, 0), "{report:?}");
    let server: Contact = w.server_doc(cid).expect("doc").read().expect("contact");
    assert_eq!(server.role.as_deref(), Some("new buyer"));
}

fn the_erasure_page_asks_for_a_confirmation_and_lists_the_log(w: World) {
    let ana = w.device("ana");
    let shop = w.account_on(&ana, "Lantern Market");
    let contact = Contact {
        meta: w.meta("ana"),
        account_id: shop,
        name: "Perpetua Ollendorf".into(),
        role: None,
        phone: None,
        email: Some("perpetua@ollendorf.example".into()),
        marketing_consent: false,
        consent: None,
    };
    let cid = ana.store().create(&contact, today(8)).expect("contact");
    ana.sync();

    // A manager has no such page.
    let mona = cookie_pair(&sign_in(&w, "mona", PASSWORD), SESSION_COOKIE);
    assert_eq!(http(&w, "GET", "/web/erasure", &mona, &[]).status, 403);

    let adam = cookie_pair(&sign_in(&w, "adam", PASSWORD), SESSION_COOKIE);
    let page = http(&w, "GET", "/web/erasure", &adam, &[]);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("No erasure yet."), "{}", page.body);
    assert!(
        page.body
            .contains(r#"href="/web/erasure" aria-current="page""#)
    );
    let csrf = csrf_of(&page.body);
    let id = cid.to_string();
    // Not confirmed: nothing happens.
    let refused = http(
        &w,
        "POST",
        "/web/erasure/contact",
        &adam,
        &[("csrf", &csrf), ("id", &id), ("reason", "Art. 17")],
    );
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains("cannot be undone"),
        "{}",
        refused.body
    );
    let still: Contact = w.server_doc(cid).expect("doc").read().expect("contact");
    assert_eq!(still.name, "Perpetua Ollendorf");
    // Without the session's token: refused.
    let forged = http(
        &w,
        "POST",
        "/web/erasure/contact",
        &adam,
        &[("id", &id), ("reason", "Art. 17"), ("confirm", "yes")],
    );
    assert_ne!(forged.status, 200);
    // Confirmed: erased, and the log lists it without any value.
    let done = http(
        &w,
        "POST",
        "/web/erasure/contact",
        &adam,
        &[
            ("csrf", &csrf),
            ("id", &id),
            ("reason", "Art. 17 request on the phone"),
            ("confirm", "yes"),
        ],
    );
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("record(s) rewritten"), "{}", done.body);
    assert!(done.body.contains(&id), "{}", done.body);
    assert!(done.body.contains("Art. 17 request on the phone"));
    assert!(!done.body.contains("Ollendorf"));
    let erased: Contact = w.server_doc(cid).expect("doc").read().expect("contact");
    assert_eq!((erased.name.as_str(), erased.email), (ERASED, None));
    ana.sync();
    let held: Contact = ana.store().read(cid).expect("held");
    assert_eq!(held.name, ERASED);
}

/// The page, in Chromium: the confirmation box is required, then the contact
/// is erased and the log lists it.
#[test]
fn an_administrator_erases_a_contact_in_the_page() {
    let w = World::start(Backend::Sqlite);
    let ana = w.device("ana");
    let shop = w.account_on(&ana, "Sundial Grocers");
    let contact = Contact {
        meta: w.meta("ana"),
        account_id: shop,
        name: "Cornelius Brightwater".into(),
        role: None,
        phone: Some("+351 210 000 999".into()),
        email: None,
        marketing_consent: false,
        consent: None,
    };
    let cid = ana.store().create(&contact, today(8)).expect("contact");
    ana.sync();
    let browser = Browser::start(&w);
    let b = &browser.client;
    let base = w.base.clone();
    let id = cid.to_string();
    w.rt.block_on(async {
        b.goto(&format!("{base}/web/erasure")).await.expect("goto");
        fieldsync_test_support::fill_login(b, "adam@acme.test", PASSWORD).await;
        settled(b, "#erase-contact").await;
        let html = b.source().await.expect("source");
        assert!(html.contains("No erasure yet."), "{html}");
        let type_in = |css: &'static str, text: String| async move {
            let field = b.find(Locator::Id(css)).await.expect("field");
            field.clear().await.expect("clear");
            field.send_keys(&text).await.expect("type");
        };
        type_in("erase-contact-id", id.clone()).await;
        type_in(
            "erase-contact-reason",
            "Art. 17 request at the counter".into(),
        )
        .await;
        let button = b
            .find(Locator::Css("#erase-contact button[type=submit]"))
            .await
            .expect("button");
        // Not ticked: the browser keeps the form (the box is required).
        button.click().await.expect("click");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(
            b.find(Locator::Id("erasure-notice")).await.is_err(),
            "nothing was sent"
        );
        b.find(Locator::Id("erase-contact-confirm"))
            .await
            .expect("box")
            .click()
            .await
            .expect("tick");
        button.click().await.expect("click");
        settled(b, "#erasure-notice").await;
        let notice = b
            .find(Locator::Id("erasure-notice"))
            .await
            .expect("notice")
            .text()
            .await
            .expect("text");
        assert!(notice.contains("record(s) rewritten"), "{notice}");
        settled(b, "table#erasure-log").await;
        let html = b.source().await.expect("source");
        assert!(html.contains(&id), "the log names the contact: {html}");
        assert!(!html.contains("Brightwater"), "and none of their values");
        browser.screenshot("erasure", "admin").await;
    });
    let erased: Contact = w.server_doc(cid).expect("doc").read().expect("contact");
    assert_eq!((erased.name.as_str(), erased.phone), (ERASED, None));
    browser.close(&w);
}
