//! Signatures bound to what the signer saw (issue #7): a technician has the
//! customer sign the job summary, a rep has the customer sign an order. A
//! covered field changed later on another device, merged through a sync, makes
//! the signature show as no longer matching on the signing device and on the
//! server's copy alike; an uncovered field leaves it matching. On SQLite and
//! on PostgreSQL.

use fieldsync_core::RecordId;
use fieldsync_core::automerge::ActorId;
use fieldsync_core::model::assignment::{self, PartUsed, TimeEntry, TimeKind};
use fieldsync_core::model::order::{self, Order, OrderLine};
use fieldsync_core::model::signature::SignatureVerdict;
use fieldsync_core::model::{Account, Actor, Assignment, Money, Priority, Qty, ServiceJob, Signer};
use fieldsync_core::store::{AttachmentKind, sha256_hex};
use fieldsync_server::Caller;
use fieldsync_server::service::signatures::signature_verdict;
use fieldsync_test_support::{Backend, Device, World, today};

#[test]
fn signatures_on_sqlite() {
    signatures(Backend::Sqlite);
}

#[test]
fn signatures_on_postgres() {
    signatures(Backend::Postgres);
}

/// The manager as the server's pages see them.
fn manager_caller(w: &World) -> Caller {
    let mona = w.person("mona");
    Caller {
        actor: Actor::without_device(mona.id, mona.role),
        org: w.org,
        team: Some(mona.team),
        territory: Some(w.territory),
        display_name: "Mona".into(),
        actor_id: ActorId::random(),
        window: None,
    }
}

fn server_verdict(w: &World, id: RecordId) -> SignatureVerdict {
    w.rt.block_on(signature_verdict(&w.db, &manager_caller(w), id))
        .expect("verdict")
        .expect("the manager reads the record")
}

fn account(w: &World, dev: &Device, owner: &str) -> RecordId {
    let account = Account {
        meta: w.meta(owner),
        name: "Lavandaria Sol".into(),
        account_type: "customer".into(),
        account_status: "active".into(),
        code: None,
        price_list_id: None,
        visit_frequency_days: None,
        locations: Default::default(),
    };
    dev.store().create(&account, today(7)).expect("account")
}

fn signer(image_sha256: String) -> Signer {
    Signer {
        name: "Maria Lopes".into(),
        role: Some("owner".into()),
        image_sha256,
        gps: None,
    }
}

fn signatures(backend: Backend) {
    let w = World::start(backend);
    let mona = w.device("mona");
    let tomas = w.device("tomas");

    // The office opens a job and assigns it to Tomás.
    let account_id = account(&w, &mona, "mona");
    let mut job = ServiceJob::new(w.meta("mona"), account_id, "repair");
    job.description = "Washer leaking".into();
    let job_id = mona
        .store()
        .create_stateful(&job, &mona.actor, today(8))
        .expect("job");
    let a = Assignment::new(w.meta("tomas"), job_id, today(13), today(15));
    let assignment_id = mona
        .store()
        .create_stateful(&a, &mona.actor, today(8))
        .expect("assignment");
    mona.sync();
    tomas.sync();

    // On site, offline: a part, the time, the work done, then the signature.
    tomas
        .store()
        .act(assignment_id, |d| {
            assignment::add_part(
                d,
                &tomas.actor,
                today(13),
                PartUsed {
                    product_id: RecordId::new(),
                    qty: Qty::units(1),
                    van_stock_id: None,
                    serial: Some("SEAL-77".into()),
                    billable: true,
                    at: today(13),
                },
            )
        })
        .expect("part");
    tomas
        .store()
        .act(assignment_id, |d| {
            assignment::add_time_entry(
                d,
                &tomas.actor,
                today(14),
                TimeEntry {
                    kind: TimeKind::Work,
                    start: today(13),
                    end: Some(today(14)),
                    approval: Default::default(),
                    note: None,
                },
            )
        })
        .expect("time");
    assert_eq!(
        tomas
            .store()
            .job_signature_verdict(assignment_id)
            .expect("verdict"),
        SignatureVerdict::Unsigned
    );
    let drawn = b"\x89PNG a signature drawn on the tablet".to_vec();
    let image = tomas
        .store()
        .attach(
            assignment_id,
            AttachmentKind::Signature,
            "image/png",
            &drawn,
            today(14),
            None,
        )
        .expect("image");
    assert_eq!(image, sha256_hex(&drawn));
    tomas
        .store()
        .sign_job(
            assignment_id,
            &tomas.actor,
            today(14),
            signer(image.clone()),
        )
        .expect("sign");
    assert_eq!(
        tomas
            .store()
            .job_signature_verdict(assignment_id)
            .expect("verdict"),
        SignatureVerdict::Matches
    );
    let report = tomas.sync();
    assert_eq!(report.rejected, 0, "{report:?}");
    assert_eq!(report.attachments_uploaded, 1, "the image went too");
    assert_eq!(server_verdict(&w, assignment_id), SignatureVerdict::Matches);
    let signed = tomas
        .store()
        .read_stateful::<Assignment>(assignment_id)
        .expect("read")
        .signature
        .expect("signed")
        .document_sha256;

    // The office raises the priority: not part of what the customer signed.
    mona.sync();
    mona.store()
        .update::<ServiceJob>(job_id, today(15), |j| j.priority = Priority::Urgent)
        .expect("priority");
    mona.sync();
    tomas.sync();
    assert_eq!(
        tomas
            .store()
            .read_stateful::<ServiceJob>(job_id)
            .expect("job")
            .priority,
        Priority::Urgent,
        "the edit reached the tablet"
    );
    assert_eq!(
        tomas
            .store()
            .job_signature_verdict(assignment_id)
            .expect("verdict"),
        SignatureVerdict::Matches
    );
    assert_eq!(server_verdict(&w, assignment_id), SignatureVerdict::Matches);

    // The office rewrites the work done: the signature no longer matches,
    // on the tablet and on the server, with the same hashes.
    mona.store()
        .update::<ServiceJob>(job_id, today(16), |j| {
            j.resolution = Some("Drum replaced".into())
        })
        .expect("resolution");
    mona.sync();
    tomas.sync();
    let on_device = tomas
        .store()
        .job_signature_verdict(assignment_id)
        .expect("verdict");
    match &on_device {
        SignatureVerdict::NoLongerMatches { signed: s, current } => {
            assert_eq!(s, &signed);
            assert_ne!(current, &signed);
        }
        other => panic!("the change must show on the device: {other:?}"),
    }
    assert_eq!(server_verdict(&w, assignment_id), on_device);

    // An order signed on Ana's phone, the image from a file.
    let ana = w.device("ana");
    let shop = account(&w, &ana, "ana");
    let o = Order::new(w.meta("ana"), shop, "EUR");
    let order_id = ana
        .store()
        .create_stateful(&o, &ana.actor, today(10))
        .expect("order");
    let line = ana
        .store()
        .act(order_id, |d| {
            order::add_line(
                d,
                &ana.actor,
                today(10),
                OrderLine::new(RecordId::new(), Qty::units(4), Money::new(1_250, "EUR")),
            )
        })
        .expect("line");
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("signature.png");
    std::fs::write(&file, b"\x89PNG the customer's signature").expect("write");
    let image = ana
        .store()
        .attach_file(
            order_id,
            AttachmentKind::Signature,
            "image/png",
            &file,
            today(10),
            None,
        )
        .expect("image from a file");
    ana.store()
        .sign_order(order_id, &ana.actor, today(10), signer(image))
        .expect("sign");
    ana.sync();
    assert_eq!(server_verdict(&w, order_id), SignatureVerdict::Matches);

    // The manager adds a note (not covered), then changes a quantity (covered).
    mona.sync();
    mona.store()
        .update::<Order>(order_id, today(11), |o| {
            o.notes = Some("Deliver before noon".into())
        })
        .expect("notes");
    mona.sync();
    ana.sync();
    assert_eq!(
        ana.store()
            .order_signature_verdict(order_id)
            .expect("verdict"),
        SignatureVerdict::Matches
    );
    assert_eq!(server_verdict(&w, order_id), SignatureVerdict::Matches);
    mona.store()
        .act(order_id, |d| {
            order::edit_line(d, &mona.actor, today(12), line, |l| l.qty = Qty::units(40))
        })
        .expect("quantity");
    let report = mona.sync();
    assert_eq!(report.rejected, 0, "{report:?}");
    ana.sync();
    let on_phone = ana
        .store()
        .order_signature_verdict(order_id)
        .expect("verdict");
    assert!(
        matches!(on_phone, SignatureVerdict::NoLongerMatches { .. }),
        "{on_phone:?}"
    );
    assert_eq!(server_verdict(&w, order_id), on_phone);

    // Records without a signature field are not asked about.
    assert!(
        w.rt.block_on(signature_verdict(&w.db, &manager_caller(&w), job_id))
            .is_err()
    );
}
