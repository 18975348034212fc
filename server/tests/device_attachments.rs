//! Attachments, device half (issue #7): a rep photographs a visit; the sync
//! client uploads the photo after pushing the visit, resumes an upload cut off
//! mid-way by sending only the missing chunks, and the manager downloads
//! identical bytes. Large attachments wait when the app says the network is
//! metered. One file attached to several records is sent once; attachments
//! the server refuses for good go to the refused ledger. On SQLite and on
//! PostgreSQL.

use std::sync::Mutex;
use std::sync::atomic::Ordering;

use fieldsync_core::RecordId;
use fieldsync_core::model::Account;
use fieldsync_core::model::visit::Visit;
use fieldsync_core::store::{AttachmentKind, Gps};
use fieldsync_core::sync::{SyncPhase, SyncProgress, SyncReport};
use fieldsync_test_support::{Backend, Device, World, fast_options, photo, today};

const MIB: usize = 1024 * 1024;

#[test]
fn device_attachments_on_sqlite() {
    device_attachments(Backend::Sqlite);
}

#[test]
fn device_attachments_on_postgres() {
    device_attachments(Backend::Postgres);
}

/// A visit of `name` (and its account), created on the device only.
fn visit_of(w: &World, dev: &Device, name: &str) -> RecordId {
    let account = Account {
        meta: w.meta(name),
        name: "Padaria Central".into(),
        account_type: "outlet".into(),
        account_status: "active".into(),
        code: None,
        price_list_id: None,
        visit_frequency_days: None,
        locations: Default::default(),
    };
    let account_id = dev.store().create(&account, today(8)).expect("account");
    let visit = Visit::planned(w.meta(name), account_id, today(10), today(11));
    dev.store()
        .create_stateful(&visit, &dev.actor, today(8))
        .expect("visit")
}

#[derive(Default)]
struct Recorder(Mutex<Vec<(SyncPhase, u64)>>);

impl SyncProgress for Recorder {
    fn progress(&self, phase: SyncPhase, done: u64) {
        if let Ok(mut v) = self.0.lock() {
            v.push((phase, done));
        }
    }
}

fn sync_with(dev: &Device, progress: &Recorder) -> SyncReport {
    dev.client
        .sync(progress)
        .unwrap_or_else(|e| panic!("{} sync failed: {e}", dev.person.email))
}

/// (status, content type, body) of `GET /v1/attachments/{sha256}` as `dev`.
fn download(w: &World, dev: &Device, sha256: &str) -> (u16, String, Vec<u8>) {
    let token = dev.access_token();
    let resp = ureq::get(format!("{}/v1/attachments/{sha256}", w.base))
        .header("authorization", format!("Bearer {token}"))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .expect("answer");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = resp
        .into_body()
        .with_config()
        .limit(64 * MIB as u64)
        .read_to_vec()
        .expect("body");
    (status, content_type, body)
}

fn device_attachments(backend: Backend) {
    let w = World::start(backend);
    let ana = w.device("ana");
    let visit = visit_of(&w, &ana, "ana");

    // A 3.5 MiB photo: four 1 MiB chunks on the server, the last half a MiB.
    let data = photo(3 * MIB + MIB / 2, 7);
    let gps = Some(Gps {
        lat: 38.7223,
        lng: -9.1393,
        accuracy_m: Some(12.0),
    });
    let hash = ana
        .store()
        .attach(
            visit,
            AttachmentKind::Photo,
            "image/jpeg",
            &data,
            today(10),
            gps,
        )
        .expect("attach");
    // Attaching the same photo again changes nothing.
    let again = ana
        .store()
        .attach(
            visit,
            AttachmentKind::Photo,
            "image/jpeg",
            &data,
            today(10),
            gps,
        )
        .expect("attach again");
    assert_eq!(hash, again);
    assert_eq!(ana.store().pending_attachments().expect("pending").len(), 1);

    // The connection dies after two chunks: the visit is pushed, the sync
    // still succeeds, the photo waits.
    ana.net().fail_chunks_after.store(2, Ordering::SeqCst);
    let first = ana.sync();
    assert_eq!(first.pushed, 2, "the account and the visit went first");
    assert_eq!(first.attachments_uploaded, 0, "{first:?}");
    assert_eq!(first.attachments_pending, 1, "{first:?}");
    assert_eq!(ana.net().chunk_puts.load(Ordering::SeqCst), 2);
    assert_eq!(ana.net().completions.load(Ordering::SeqCst), 0);
    let pending = ana.store().pending_attachments().expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].sha256, hash);

    // Back online: only chunks 2 and 3 are sent, then the upload completes.
    ana.net()
        .fail_chunks_after
        .store(u32::MAX, Ordering::SeqCst);
    ana.net().chunk_puts.store(0, Ordering::SeqCst);
    let progress = Recorder::default();
    let second = sync_with(&ana, &progress);
    assert_eq!(second.attachments_uploaded, 1, "{second:?}");
    assert_eq!(second.attachments_pending, 0, "{second:?}");
    assert_eq!(
        ana.net().chunk_puts.load(Ordering::SeqCst),
        2,
        "only the missing chunks were sent"
    );
    assert!(
        progress
            .0
            .lock()
            .expect("progress")
            .contains(&(SyncPhase::Uploading, 1)),
        "the upload was reported"
    );
    assert!(
        ana.store()
            .pending_attachments()
            .expect("pending")
            .is_empty()
    );
    assert!(
        ana.store().attachment(&hash).expect("kept") == data,
        "the device keeps its copy"
    );
    assert_eq!(
        w.scalar("SELECT COUNT(*) FROM attachments WHERE state = 'complete'"),
        1
    );

    // Nothing more to upload: the next sync declares nothing.
    let declared = ana.net().declarations.load(Ordering::SeqCst);
    let third = ana.sync();
    assert_eq!(third.attachments_uploaded, 0);
    assert_eq!(ana.net().declarations.load(Ordering::SeqCst), declared);

    // The manager downloads identical bytes.
    let mona = w.device("mona");
    mona.sync();
    let (status, content_type, body) = download(&w, &mona, &hash);
    assert_eq!(status, 200);
    assert_eq!(content_type, "image/jpeg");
    assert!(body == data, "the manager gets the photo byte for byte");

    // Off Wi-Fi the app holds back large attachments; a signature still goes.
    let metered = fast_options();
    let ben = w.device_with(
        "ben",
        fieldsync_core::sync::SyncOptions {
            upload_large_attachments: false,
            ..metered
        },
    );
    let bens_visit = visit_of(&w, &ben, "ben");
    let big = photo(2 * MIB + 1, 8);
    let signature = photo(10_000, 9);
    let big_hash = ben
        .store()
        .attach(
            bens_visit,
            AttachmentKind::Photo,
            "image/jpeg",
            &big,
            today(10),
            None,
        )
        .expect("attach");
    let sig_hash = ben
        .store()
        .attach(
            bens_visit,
            AttachmentKind::Signature,
            "image/png",
            &signature,
            today(10),
            None,
        )
        .expect("attach");
    let report = ben.sync();
    assert_eq!(report.attachments_uploaded, 1, "{report:?}");
    assert_eq!(report.attachments_pending, 1, "{report:?}");
    let pending = ben.store().pending_attachments().expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].sha256, big_hash);
    let (status, content_type, body) = download(&w, &ben, &sig_hash);
    assert_eq!(status, 200);
    assert_eq!(content_type, "image/png");
    assert!(body == signature);
    assert_eq!(download(&w, &ben, &big_hash).0, 404);
}

#[test]
fn shared_and_refused_attachments_on_sqlite() {
    shared_and_refused_attachments(Backend::Sqlite);
}

#[test]
fn shared_and_refused_attachments_on_postgres() {
    shared_and_refused_attachments(Backend::Postgres);
}

/// One file attached to several records goes up once and is linked to each
/// on the server; attachments the server refuses for good go to the device's
/// refused ledger with the server's reason and are not sent again.
fn shared_and_refused_attachments(backend: Backend) {
    let w = World::start(backend);
    let carla = w.device("carla");
    let first = visit_of(&w, &carla, "carla");
    let second = visit_of(&w, &carla, "carla");

    // A 3.5 MiB document from a file on disk, streamed into the store.
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("manual.pdf");
    let data = photo(3 * MIB + MIB / 2, 11);
    std::fs::write(&path, &data).expect("write");
    let gps = Some(Gps {
        lat: 38.71,
        lng: -9.13,
        accuracy_m: Some(4.0),
    });
    let hash = carla
        .store()
        .attach_file(
            first,
            AttachmentKind::Document,
            "application/pdf",
            &path,
            today(10),
            gps,
        )
        .expect("attach file");
    carla.store().link_attachment(&hash, second).expect("link");
    let info = carla.store().attachment_info(&hash).expect("info");
    assert_eq!(info.records, vec![first, second]);
    assert_eq!(info.gps, gps);

    // Two the server will never take: a signature over its 1 MiB limit and a
    // photo of a type it does not accept.
    let too_big = carla
        .store()
        .attach(
            first,
            AttachmentKind::Signature,
            "image/png",
            &photo(MIB + 1, 12),
            today(10),
            None,
        )
        .expect("attach");
    let wrong_type = carla
        .store()
        .attach(
            first,
            AttachmentKind::Photo,
            "text/plain",
            &photo(1_000, 13),
            today(10),
            None,
        )
        .expect("attach");

    let report = carla.sync();
    assert_eq!(report.attachments_uploaded, 1, "{report:?}");
    assert_eq!(report.attachments_refused, 2, "{report:?}");
    assert_eq!(report.attachments_pending, 0, "{report:?}");
    assert_eq!(
        carla.net().chunk_puts.load(Ordering::SeqCst),
        4,
        "the shared file went up once"
    );
    assert_eq!(w.scalar("SELECT COUNT(*) FROM attachment_records"), 2);
    assert!(
        carla
            .store()
            .pending_attachments()
            .expect("pending")
            .is_empty()
    );
    let ledger = carla.store().refused_attachments().expect("ledger");
    assert_eq!(ledger.len(), 2);
    let big = ledger
        .iter()
        .find(|r| r.info.sha256 == too_big)
        .expect("the large signature is listed");
    assert_eq!(big.code, "attachment_too_large");
    assert!(big.message.contains("1 MiB"), "{}", big.message);
    let typed = ledger
        .iter()
        .find(|r| r.info.sha256 == wrong_type)
        .expect("the text photo is listed");
    assert_eq!(typed.code, "bad_request");
    assert!(typed.message.contains("text/plain"), "{}", typed.message);

    // The next sync does not try them again.
    let declared = carla.net().declarations.load(Ordering::SeqCst);
    let again = carla.sync();
    assert_eq!(again.attachments_refused, 0, "{again:?}");
    assert_eq!(carla.net().declarations.load(Ordering::SeqCst), declared);

    // Attached to a third record later: one declaration, no bytes.
    let third = visit_of(&w, &carla, "carla");
    carla.store().link_attachment(&hash, third).expect("link");
    carla.net().chunk_puts.store(0, Ordering::SeqCst);
    let linked = carla.sync();
    assert_eq!(linked.attachments_uploaded, 0, "{linked:?}");
    assert_eq!(carla.net().chunk_puts.load(Ordering::SeqCst), 0);
    assert_eq!(
        carla.net().declarations.load(Ordering::SeqCst),
        declared + 1
    );
    assert_eq!(w.scalar("SELECT COUNT(*) FROM attachment_records"), 3);

    // The manager gets the file byte for byte.
    let mona = w.device("mona");
    mona.sync();
    let (status, content_type, body) = download(&w, &mona, &hash);
    assert_eq!((status, content_type.as_str()), (200, "application/pdf"));
    assert!(body == data);
}
