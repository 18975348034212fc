//! Attachments (issue #7, server half): a photo uploaded in 1 MiB chunks, cut
//! off after two chunks and resumed with only the missing ones; a chunk damaged
//! in transit refused and not stored; a wrong whole-file hash refused at
//! completion; downloads only for readers of the record the photo is attached
//! to; size limits and hostile paths. On SQLite and on PostgreSQL.
//!
//! Then: two server nodes sharing one PostgreSQL database and one bucket of a
//! real S3-compatible server (moto, on loopback), an upload started on one node
//! and resumed and downloaded on the other; thumbnails of real JPEG and PNG
//! photos, a damaged photo and an outsider; abandoned uploads removed once
//! when two cleaners race, and by `fieldsync attachments cleanup`; and knowing
//! a file's hash is no way to it (issue #16).

use fieldsync_core::RecordId;
use fieldsync_core::model::Account;
use fieldsync_core::model::visit::Visit;
use fieldsync_test_support::{Backend, Device, S3Server, World, photo, sha256_hex, today};
use serde_json::{Value, json};

#[test]
fn attachments_on_sqlite() {
    attachments(Backend::Sqlite);
}

#[test]
fn attachments_on_postgres() {
    attachments(Backend::Postgres);
}

#[test]
fn knowing_a_hash_proves_nothing_on_sqlite() {
    knowing_a_hash_proves_nothing(Backend::Sqlite);
}

#[test]
fn knowing_a_hash_proves_nothing_on_postgres() {
    knowing_a_hash_proves_nothing(Backend::Postgres);
}

const MIB: usize = 1024 * 1024;

/// The HTTP side of a device, as the app's uploader will speak it.
struct Http<'a> {
    base: &'a str,
    token: String,
    puts: std::cell::Cell<u32>,
}

impl<'a> Http<'a> {
    fn of(w: &'a World, dev: &Device) -> Http<'a> {
        Http::at(&w.base, dev)
    }

    /// The same device talking to the server node at `base`.
    fn at(base: &'a str, dev: &Device) -> Http<'a> {
        Http {
            base,
            token: dev.access_token(),
            puts: std::cell::Cell::new(0),
        }
    }

    /// Declares, sends the missing chunks and completes: the whole upload.
    fn upload(&self, record: RecordId, kind: &str, content_type: &str, data: &[u8]) -> String {
        let hash = sha256_hex(data);
        let mut body = declaration(&hash, record, kind, data.len());
        body["content_type"] = json!(content_type);
        let (status, answer) = self.declare(&body);
        assert_eq!(status, 200, "{answer}");
        let have = received(&answer);
        for (idx, chunk) in data.chunks(MIB).enumerate() {
            if !have.contains(&(idx as u64)) {
                let (status, body) = self.put_chunk(&hash, idx as u32, chunk, &sha256_hex(chunk));
                assert_eq!(status, 200, "{body}");
            }
        }
        let (status, body) = self.complete(&hash);
        assert_eq!(status, 200, "{body}");
        hash
    }

    /// (status, content type, cache control, body)
    fn thumbnail(&self, hash: &str) -> (u16, String, String, Vec<u8>) {
        let resp = ureq::get(format!("{}/v1/attachments/{hash}/thumbnail", self.base))
            .header("authorization", self.auth())
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .expect("answer");
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .unwrap_or_default()
        };
        let (content_type, cache) = (header("content-type"), header("cache-control"));
        let body = resp.into_body().read_to_vec().expect("body");
        (status, content_type, cache, body)
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    fn declare(&self, body: &Value) -> (u16, Value) {
        let resp = ureq::post(format!("{}/v1/attachments", self.base))
            .header("authorization", self.auth())
            .config()
            .http_status_as_error(false)
            .build()
            .send_json(body)
            .expect("answer");
        let status = resp.status().as_u16();
        (status, resp.into_body().read_json().unwrap_or(Value::Null))
    }

    fn put_chunk(&self, hash: &str, idx: u32, body: &[u8], header_hash: &str) -> (u16, Value) {
        self.puts.set(self.puts.get() + 1);
        let resp = ureq::put(format!("{}/v1/attachments/{hash}/chunks/{idx}", self.base))
            .header("authorization", self.auth())
            .header("content-type", "application/octet-stream")
            .header("x-chunk-sha256", header_hash)
            .config()
            .http_status_as_error(false)
            .build()
            .send(body)
            .expect("answer");
        let status = resp.status().as_u16();
        (status, resp.into_body().read_json().unwrap_or(Value::Null))
    }

    fn complete(&self, hash: &str) -> (u16, Value) {
        let resp = ureq::post(format!("{}/v1/attachments/{hash}/complete", self.base))
            .header("authorization", self.auth())
            .config()
            .http_status_as_error(false)
            .build()
            .send_empty()
            .expect("answer");
        let status = resp.status().as_u16();
        (status, resp.into_body().read_json().unwrap_or(Value::Null))
    }

    /// (status, content type, content length, body)
    fn download(&self, hash: &str) -> (u16, String, Option<u64>, Vec<u8>) {
        let resp = ureq::get(format!("{}/v1/attachments/{hash}", self.base))
            .header("authorization", self.auth())
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .expect("answer");
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header("content-type").unwrap_or_default();
        let length = header("content-length").and_then(|v| v.parse().ok());
        let body = resp
            .into_body()
            .with_config()
            .limit(64 * MIB as u64)
            .read_to_vec()
            .expect("body");
        (status, content_type, length, body)
    }
}

fn declaration(hash: &str, record: RecordId, kind: &str, size: usize) -> Value {
    json!({
        "sha256": hash,
        "record_id": record,
        "kind": kind,
        "content_type": "image/jpeg",
        "size": size,
    })
}

fn received(answer: &Value) -> Vec<u64> {
    answer["received"]
        .as_array()
        .unwrap_or_else(|| panic!("no `received` in {answer}"))
        .iter()
        .filter_map(Value::as_u64)
        .collect()
}

/// Ana's visit (and its account), pushed to the server.
fn anas_visit(w: &World, ana: &Device) -> RecordId {
    visit_of(w, ana, "ana")
}

/// A visit of `name` on `dev` (and its account), pushed to the server.
fn visit_of(w: &World, ana: &Device, name: &str) -> RecordId {
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
    let account_id = ana.store().create(&account, today(8)).expect("account");
    let visit = Visit::planned(w.meta(name), account_id, today(10), today(11));
    let id = ana
        .store()
        .create_stateful(&visit, &ana.actor, today(8))
        .expect("visit");
    ana.sync();
    id
}

/// Issue #16, reproduction 1: Ben, who cannot read Ana's photo, used to get
/// it attached to his own visit (and so download it) by declaring its hash,
/// learning its size from a 409 on the way, and could put chunks into Ana's
/// unfinished upload. Now a declaration answers the same whether or not the
/// file exists, uploads are each device's own, and Ben gets the file only by
/// sending its bytes.
fn knowing_a_hash_proves_nothing(backend: Backend) {
    let w = World::start(backend);
    let ana_dev = w.device("ana");
    let ben_dev = w.device("ben");
    let ana_visit = anas_visit(&w, &ana_dev);
    let ben_visit = visit_of(&w, &ben_dev, "ben");
    let ana = Http::of(&w, &ana_dev);
    let ben = Http::of(&w, &ben_dev);
    let secret = photo(3045, 31);
    let hash = ana.upload(ana_visit, "photo", "image/jpeg", &secret);
    assert_eq!(ben.download(&hash).0, 404, "Ben cannot read Ana's photo");

    // Declaring the known hash looks exactly like declaring an unknown one,
    // whatever size is given: no 409 naming the real size, never `complete`.
    // (Declaring again with another size starts the device's own upload over.)
    let unknown = sha256_hex(b"a file nobody has");
    for size in [1, 3045, 5000] {
        let (status, known) = ben.declare(&declaration(&hash, ben_visit, "photo", size));
        assert_eq!(status, 200, "{known}");
        let (status, fresh) = ben.declare(&declaration(&unknown, ben_visit, "photo", size));
        assert_eq!(status, 200, "{fresh}");
        let mut known = known;
        known["sha256"] = json!(unknown);
        assert_eq!(known, fresh, "a declaration tells nothing (size {size})");
        assert_eq!(fresh["complete"], json!(false));
    }
    // Completing without sending anything: the file stays out of reach.
    let (status, body) = ben.complete(&hash);
    assert_eq!(status, 409, "{body}");
    assert_eq!(ben.download(&hash).0, 404);
    assert_eq!(
        w.scalar("SELECT COUNT(*) FROM attachment_records"),
        1,
        "only Ana's visit has the photo"
    );

    // Ana's next upload, cut off after one chunk. Ben declares the same hash
    // and sends a chunk of the right length and a matching chunk hash but the
    // wrong bytes: it goes into his own upload, never into Ana's.
    let second = photo(2 * MIB, 32);
    let second_hash = sha256_hex(&second);
    let (status, body) = ana.declare(&declaration(&second_hash, ana_visit, "photo", second.len()));
    assert_eq!(status, 200, "{body}");
    let (status, _) = ana.put_chunk(&second_hash, 0, &second[..MIB], &sha256_hex(&second[..MIB]));
    assert_eq!(status, 200);
    let (status, body) = ben.declare(&declaration(&second_hash, ben_visit, "photo", second.len()));
    assert_eq!(status, 200, "{body}");
    assert!(
        received(&body).is_empty(),
        "Ben does not see Ana's chunks: {body}"
    );
    let forged = vec![0x5a; MIB];
    let (status, body) = ben.put_chunk(&second_hash, 1, &forged, &sha256_hex(&forged));
    assert_eq!(status, 200, "{body}");
    let (status, body) = ana.declare(&declaration(&second_hash, ana_visit, "photo", second.len()));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        received(&body),
        vec![0],
        "Ana's upload holds only her chunk"
    );
    let (status, _) = ana.put_chunk(&second_hash, 1, &second[MIB..], &sha256_hex(&second[MIB..]));
    assert_eq!(status, 200);
    let (status, body) = ana.complete(&second_hash);
    assert_eq!(status, 200, "{body}");
    let (_, _, _, back) = ana.download(&second_hash);
    assert!(back == second, "Ana's file is hers, byte for byte");
    // Ben's own upload of it fails its hash check at completion.
    let (status, body) = ben.put_chunk(&second_hash, 0, &forged, &sha256_hex(&forged));
    assert_eq!(status, 200, "{body}");
    let (status, body) = ben.complete(&second_hash);
    assert_eq!(status, 422, "{body}");
    assert_eq!(ben.download(&second_hash).0, 404);

    // A device that really holds the file proves it by sending it: then it is
    // attached to Ben's visit, and Ben reads it.
    let proved = ben.upload(ben_visit, "photo", "image/jpeg", &secret);
    assert_eq!(proved, hash);
    let (status, _, _, back) = ben.download(&hash);
    assert_eq!(status, 200);
    assert!(back == secret);
    assert_eq!(
        w.scalar("SELECT COUNT(*) FROM attachments WHERE state = 'complete'"),
        2,
        "the file is stored once"
    );
    assert_eq!(w.scalar("SELECT COUNT(*) FROM attachment_upload_chunks"), 0);
}

fn attachments(backend: Backend) {
    let w = World::start(backend);
    let ana_dev = w.device("ana");
    let visit = anas_visit(&w, &ana_dev);
    let ana = Http::of(&w, &ana_dev);

    // A 3.5 MiB photo: four chunks, the last half a MiB.
    let data = photo(3 * MIB + MIB / 2, 1);
    let hash = sha256_hex(&data);
    let chunks: Vec<&[u8]> = data.chunks(MIB).collect();
    let (status, first) = ana.declare(&declaration(&hash, visit, "photo", data.len()));
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["chunk_size"], json!(MIB));
    assert_eq!(first["chunks"], json!(4));
    assert_eq!(first["complete"], json!(false));
    assert!(received(&first).is_empty());

    // Two chunks, then the connection dies: nothing more is sent.
    for idx in 0..2u32 {
        let chunk = chunks[idx as usize];
        let (status, body) = ana.put_chunk(&hash, idx, chunk, &sha256_hex(chunk));
        assert_eq!(status, 200, "{body}");
    }
    // Completing now names what is missing.
    let (status, body) = ana.complete(&hash);
    assert_eq!(status, 409, "{body}");

    // Back online: declaring again says where the upload stands.
    let (status, again) = ana.declare(&declaration(&hash, visit, "photo", data.len()));
    assert_eq!(status, 200, "{again}");
    assert_eq!(received(&again), vec![0, 1]);
    for idx in 0..4u32 {
        if received(&again).contains(&u64::from(idx)) {
            continue;
        }
        let chunk = chunks[idx as usize];
        let (status, body) = ana.put_chunk(&hash, idx, chunk, &sha256_hex(chunk));
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        ana.puts.get(),
        4,
        "only chunks 2 and 3 were sent after the resume"
    );
    let (status, body) = ana.complete(&hash);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["complete"], json!(true));
    // Completing twice is harmless.
    assert_eq!(ana.complete(&hash).0, 200);

    let (status, content_type, length, back) = ana.download(&hash);
    assert_eq!(status, 200);
    assert_eq!(content_type, "image/jpeg");
    assert_eq!(length, Some(data.len() as u64));
    assert!(back == data, "the download is byte-identical");

    // The same file declared again (same organisation): nothing to upload.
    let (status, dedup) = ana.declare(&declaration(&hash, visit, "photo", data.len()));
    assert_eq!(status, 200, "{dedup}");
    assert_eq!(dedup["complete"], json!(true));
    assert_eq!(
        w.scalar("SELECT COUNT(*) FROM attachments WHERE state = 'complete'"),
        1
    );
    assert_eq!(w.scalar("SELECT COUNT(*) FROM attachment_upload_chunks"), 0);
    assert_eq!(w.scalar("SELECT COUNT(*) FROM attachment_uploads"), 0);

    // Who may download: the owner's manager yes; a teammate and the other team no.
    let mona = Http::of(&w, &w.device("mona"));
    let ben = Http::of(&w, &w.device("ben"));
    let sara = Http::of(&w, &w.device("sara"));
    let (status, _, _, back) = mona.download(&hash);
    assert_eq!(status, 200);
    assert!(back == data);
    for (who, http) in [("ben", &ben), ("sara", &sara)] {
        let (status, _, _, body) = http.download(&hash);
        assert_eq!(status, 404, "{who} must not see ana's photo");
        let missing = http.download(&sha256_hex(b"no such file"));
        assert_eq!(missing.0, 404);
        assert_eq!(body, missing.3, "{who}: refused looks exactly like missing");
        // Nor attach to, or upload into, a record they cannot read.
        let (status, _) = http.declare(&declaration(&hash, visit, "photo", data.len()));
        assert_eq!(status, 404, "{who} cannot attach to ana's visit");
        // A small body: the server refuses before reading one, and a client still
        // sending a whole chunk could see the connection close under it.
        let (status, _) = http.put_chunk(&hash, 0, b"x", &sha256_hex(b"x"));
        assert_eq!(status, 404);
    }

    // A chunk damaged in transit: refused, not stored.
    let signed = photo(MIB + 1000, 2);
    let signed_hash = sha256_hex(&signed);
    let (status, body) = ana.declare(&declaration(&signed_hash, visit, "photo", signed.len()));
    assert_eq!(status, 200, "{body}");
    let original = &signed[..MIB];
    let mut damaged = original.to_vec();
    damaged[12_345] ^= 0x40;
    let (status, body) = ana.put_chunk(&signed_hash, 0, &damaged, &sha256_hex(original));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], json!("chunk_corrupt"));
    let (_, now) = ana.declare(&declaration(&signed_hash, visit, "photo", signed.len()));
    assert!(received(&now).is_empty(), "nothing was stored: {now}");
    // A chunk of the wrong length is refused too.
    let (status, _) = ana.put_chunk(
        &signed_hash,
        1,
        &signed[MIB..MIB + 10],
        &sha256_hex(&signed[MIB..MIB + 10]),
    );
    assert_eq!(status, 400);
    let (status, _) = ana.put_chunk(&signed_hash, 0, original, &sha256_hex(original));
    assert_eq!(status, 200);
    let (_, now) = ana.declare(&declaration(&signed_hash, visit, "photo", signed.len()));
    assert_eq!(received(&now), vec![0]);

    // Chunks that do not make the declared file: 422 at completion, dropped.
    let claimed = photo(MIB + 10, 3);
    let claimed_hash = sha256_hex(&claimed);
    let sent = photo(MIB + 10, 4);
    let (status, body) = ana.declare(&declaration(&claimed_hash, visit, "photo", claimed.len()));
    assert_eq!(status, 200, "{body}");
    for (idx, chunk) in sent.chunks(MIB).enumerate() {
        let (status, body) = ana.put_chunk(&claimed_hash, idx as u32, chunk, &sha256_hex(chunk));
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = ana.complete(&claimed_hash);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], json!("hash_mismatch"));
    let (_, now) = ana.declare(&declaration(&claimed_hash, visit, "photo", claimed.len()));
    assert!(received(&now).is_empty(), "the parts were dropped: {now}");
    assert_eq!(ana.download(&claimed_hash).0, 404);

    // Limits: a photo over 20 MiB is refused up front, naming the limit.
    let (status, body) = ana.declare(&declaration(&sha256_hex(b"big"), visit, "photo", 21 * MIB));
    assert_eq!(status, 413, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("20 MiB") && message.contains("20971520"),
        "{message}"
    );
    let (status, body) = ana.declare(&declaration(
        &sha256_hex(b"sig"),
        visit,
        "signature",
        2 * MIB,
    ));
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("1 MiB")
    );
    let mut pdf_as_photo = declaration(&sha256_hex(b"x"), visit, "photo", 10);
    pdf_as_photo["content_type"] = json!("text/html");
    assert_eq!(ana.declare(&pdf_as_photo).0, 400);

    // Hostile or malformed names never reach the filesystem.
    let upper = hash.to_uppercase();
    for bad in [
        "..%2Fetc",
        "..%2F..%2Fetc%2Fpasswd",
        "%2E%2E",
        "ABCDEF",
        upper.as_str(),
    ] {
        assert_eq!(ana.download(bad).0, 400, "GET {bad}");
        assert_eq!(
            ana.put_chunk(bad, 0, b"x", &sha256_hex(b"x")).0,
            400,
            "PUT {bad}"
        );
        assert_eq!(ana.complete(bad).0, 400, "complete {bad}");
    }
    let (status, _) = ana.declare(&declaration("../etc", visit, "photo", 10));
    assert_eq!(status, 400);
    let (status, _) = ana.put_chunk(&hash, 0, b"x", "../etc");
    assert_eq!(status, 400, "a malformed chunk hash header");
}

/// A real photo: a colour gradient with grain (as a camera's), `width` x
/// `height`, encoded as JPEG or PNG.
fn real_photo(width: u32, height: u32, format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        let grain = ((x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) >> 9) as u8 & 0x3f;
        image::Rgb([
            (x * 190 / width) as u8 + grain,
            (y * 190 / height) as u8 + grain,
            128 + grain,
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

fn dimensions(bytes: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg)
        .expect("the thumbnail is a JPEG");
    (img.width(), img.height())
}

/// Waits until `sql` counts `want` (work done off the request, on a task).
fn eventually(w: &World, sql: &'static str, want: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while w.scalar(sql) != want {
        assert!(
            std::time::Instant::now() < deadline,
            "{sql} never reached {want}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn thumbnails_of_photos() {
    let w = World::start(Backend::Sqlite);
    let ana_dev = w.device("ana");
    let visit = anas_visit(&w, &ana_dev);
    let ana = Http::of(&w, &ana_dev);

    // A landscape JPEG: its thumbnail is made right after the upload completes.
    let jpeg = real_photo(1600, 1200, image::ImageFormat::Jpeg);
    let jpeg_hash = ana.upload(visit, "photo", "image/jpeg", &jpeg);
    eventually(
        &w,
        "SELECT COUNT(*) FROM attachments WHERE thumbnail = 'ready'",
        1,
    );
    let (status, content_type, cache, body) = ana.thumbnail(&jpeg_hash);
    assert_eq!(status, 200);
    assert_eq!(content_type, "image/jpeg");
    assert!(cache.contains("immutable"), "{cache}");
    assert_eq!(dimensions(&body), (320, 240));
    assert!(body.len() < jpeg.len() / 4, "a thumbnail is small");

    // A portrait PNG over two chunks: the longest side becomes 320.
    let png = real_photo(900, 1350, image::ImageFormat::Png);
    assert!(png.len() > MIB, "{} bytes", png.len());
    let png_hash = ana.upload(visit, "photo", "image/png", &png);
    let (status, _, _, body) = ana.thumbnail(&png_hash);
    assert_eq!(status, 200);
    let (width, height) = dimensions(&body);
    assert_eq!(height, 320);
    assert!((213..=214).contains(&width), "{width}x{height}");
    // The manager sees it too; a teammate and the other team do not.
    let mona = Http::of(&w, &w.device("mona"));
    assert_eq!(mona.thumbnail(&png_hash).0, 200);
    for who in ["ben", "sara"] {
        let other = Http::of(&w, &w.device(who));
        let (status, _, _, body) = other.thumbnail(&png_hash);
        assert_eq!(status, 404, "{who}");
        let body: Value = serde_json::from_slice(&body).expect("json error");
        assert_eq!(body["error"]["code"], json!("not_found"), "{who}");
    }

    // A damaged "photo" (a JPEG's first bytes, then noise): a clear error, for
    // good, and the server goes on serving.
    let mut damaged = jpeg[..64].to_vec();
    damaged.extend(photo(5000, 9));
    let damaged_hash = ana.upload(visit, "photo", "image/jpeg", &damaged);
    for _ in 0..2 {
        let (status, _, _, body) = ana.thumbnail(&damaged_hash);
        assert_eq!(status, 404);
        let body: Value = serde_json::from_slice(&body).expect("json error");
        assert_eq!(
            body["error"]["code"],
            json!("thumbnail_unavailable"),
            "{body}"
        );
    }
    assert_eq!(
        w.scalar("SELECT COUNT(*) FROM attachments WHERE thumbnail = 'unavailable'"),
        1
    );
    // The original is still there to download.
    assert_eq!(ana.download(&damaged_hash).3, damaged);
    // A document has no thumbnail.
    let pdf = b"%PDF-1.4 a work order".to_vec();
    let pdf_hash = ana.upload(visit, "document", "application/pdf", &pdf);
    let (status, _, _, body) = ana.thumbnail(&pdf_hash);
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("thumbnail_unavailable"));
    assert_eq!(ana.thumbnail(&jpeg_hash).0, 200, "still serving");
}

#[test]
fn abandoned_uploads_on_sqlite() {
    abandoned_uploads(Backend::Sqlite);
}

#[test]
fn abandoned_uploads_on_postgres() {
    abandoned_uploads(Backend::Postgres);
}

fn abandoned_uploads(backend: Backend) {
    let w = World::start(backend);
    let ana_dev = w.device("ana");
    let visit = anas_visit(&w, &ana_dev);
    let ana = Http::of(&w, &ana_dev);
    let blobs = fieldsync_server::blob::open_blob_store(&w.settings).expect("blob store");

    // Two uploads cut off after one chunk, a recent one, and a complete file.
    let start = |seed: u64| {
        let data = photo(2 * MIB, seed);
        let hash = sha256_hex(&data);
        let (status, body) = ana.declare(&declaration(&hash, visit, "photo", data.len()));
        assert_eq!(status, 200, "{body}");
        let (status, body) = ana.put_chunk(&hash, 0, &data[..MIB], &sha256_hex(&data[..MIB]));
        assert_eq!(status, 200, "{body}");
        (hash, data)
    };
    let (old_a, _) = start(21);
    let (old_b, _) = start(22);
    let (recent, _) = start(23);
    let done = ana.upload(visit, "photo", "image/jpeg", &photo(MIB, 24));
    // The two old ones last moved four days ago; so did the complete file.
    let backdate = |table: &str, hash: &str| {
        w.execute_sql(format!(
            "UPDATE {table} SET created_at = created_at - 345600, \
             touched_at = touched_at - 345600 WHERE sha256 = '{hash}'"
        ))
    };
    for hash in [&old_a, &old_b] {
        assert_eq!(backdate("attachment_uploads", hash), 1);
    }
    assert_eq!(backdate("attachments", &done), 1);

    // Two cleaners at once (as two nodes would): each upload is removed once.
    let (first, second) = w.rt.block_on(async {
        let older = std::time::Duration::from_secs(72 * 3600);
        tokio::join!(
            fieldsync_server::service::attachments::remove_abandoned(&w.db, blobs.as_ref(), older),
            fieldsync_server::service::attachments::remove_abandoned(&w.db, blobs.as_ref(), older),
        )
    });
    let (first, second) = (first.expect("cleanup"), second.expect("cleanup"));
    assert_eq!(first + second, 2, "{first} + {second}");
    assert_eq!(w.scalar("SELECT COUNT(*) FROM attachments"), 1);
    assert_eq!(w.scalar("SELECT COUNT(*) FROM attachment_uploads"), 1);
    assert_eq!(w.scalar("SELECT COUNT(*) FROM attachment_upload_chunks"), 1);
    for hash in [&old_a, &old_b] {
        let upload = fieldsync_server::blob::UploadKey {
            file: fieldsync_server::blob::BlobKey {
                org: w.org,
                sha256: fieldsync_server::blob::Sha256Hex::parse(hash).expect("hex"),
            },
            device: ana_dev.login.device.id,
        };
        let left = w.rt.block_on(blobs.list_chunks(&upload)).expect("list");
        assert!(left.is_empty(), "the chunks of {hash} are gone: {left:?}");
        // Declaring again starts from nothing.
        let (status, body) = ana.declare(&declaration(hash, visit, "photo", 2 * MIB));
        assert_eq!(status, 200, "{body}");
        assert!(received(&body).is_empty(), "{body}");
    }
    // The recent upload and the complete file are untouched.
    let (_, body) = ana.declare(&declaration(&recent, visit, "photo", 2 * MIB));
    assert_eq!(received(&body), vec![0]);
    assert_eq!(ana.download(&done).0, 200);

    // The command line does the same (here: the recent one, with a shorter age).
    assert_eq!(
        w.execute_sql(format!(
            "UPDATE attachment_uploads SET touched_at = touched_at - 7200 \
             WHERE sha256 = '{recent}'"
        )),
        1
    );
    let mut cli = std::process::Command::new(env!("CARGO_BIN_EXE_fieldsync"));
    cli.args([
        "attachments",
        "cleanup",
        "--older-than-hours",
        "1",
        "--data-dir",
    ])
    .arg(&w.settings.data_dir)
    .env("FIELDSYNC_LOG", "warn");
    if let Some(url) = &w.settings.database_url {
        cli.args(["--database-url", url.as_str()]);
    }
    let out = cli.output().expect("run fieldsync attachments cleanup");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("removed 1 upload"), "{stdout}");
    let (_, body) = ana.declare(&declaration(&recent, visit, "photo", 2 * MIB));
    assert!(received(&body).is_empty(), "{body}");
    assert_eq!(
        ana.download(&done).0,
        200,
        "complete files are never removed"
    );
}

#[test]
fn two_nodes_share_attachments_in_an_s3_bucket() {
    let s3 = S3Server::start();
    s3.create_bucket("fieldsync-attachments");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("fieldsync.toml");
    std::fs::write(&config, s3.settings_toml("fieldsync-attachments")).expect("config");
    let w = World::start_with(Backend::Postgres, |args| args.config = Some(config.clone()));
    let node_b = w.another_node();
    let ana_dev = w.device("ana");
    let visit = anas_visit(&w, &ana_dev);
    let on_a = Http::at(&w.base, &ana_dev);
    let on_b = Http::at(&node_b.base, &ana_dev);

    // 17.5 MiB: eighteen chunks, assembled into three multipart parts. Five
    // through node A, then the connection drops.
    let data = photo(17 * MIB + MIB / 2, 31);
    let hash = sha256_hex(&data);
    let chunks: Vec<&[u8]> = data.chunks(MIB).collect();
    let (status, body) = on_a.declare(&declaration(&hash, visit, "photo", data.len()));
    assert_eq!(status, 200, "{body}");
    for idx in 0..5u32 {
        let chunk = chunks[idx as usize];
        let (status, body) = on_a.put_chunk(&hash, idx, chunk, &sha256_hex(chunk));
        assert_eq!(status, 200, "{body}");
    }
    // The device comes back through node B, which knows what A stored.
    let (status, again) = on_b.declare(&declaration(&hash, visit, "photo", data.len()));
    assert_eq!(status, 200, "{again}");
    assert_eq!(received(&again), vec![0, 1, 2, 3, 4]);
    for idx in 5..18u32 {
        let chunk = chunks[idx as usize];
        let (status, body) = on_b.put_chunk(&hash, idx, chunk, &sha256_hex(chunk));
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        on_a.puts.get() + on_b.puts.get(),
        18,
        "no chunk was sent twice"
    );
    let (status, body) = on_b.complete(&hash);
    assert_eq!(status, 200, "{body}");

    // Both nodes serve the same bytes; a chunk damaged on the way is refused.
    for (node, http) in [("A", &on_a), ("B", &on_b)] {
        let (status, _, length, back) = http.download(&hash);
        assert_eq!(status, 200, "node {node}");
        assert_eq!(length, Some(data.len() as u64));
        assert!(back == data, "node {node} serves the file byte for byte");
    }
    let keys = s3.keys("fieldsync-attachments");
    let org = w.org.as_uuid().hyphenated().to_string();
    assert!(
        keys.contains(&format!("{org}/{}/{hash}", &hash[..2])),
        "{keys:?}"
    );
    assert!(
        !keys.iter().any(|k| k.contains("/parts/")),
        "the chunks are gone once assembled: {keys:?}"
    );
    assert!(
        !w.settings.data_dir.join("attachments").exists(),
        "nothing was written to the node's disk"
    );

    // A chunk whose bytes do not match: refused by node A, nothing stored.
    let other = photo(MIB + 10, 32);
    let other_hash = sha256_hex(&other);
    assert_eq!(
        on_a.declare(&declaration(&other_hash, visit, "photo", other.len()))
            .0,
        200
    );
    let mut damaged = other[..MIB].to_vec();
    damaged[7] ^= 1;
    let (status, body) = on_a.put_chunk(&other_hash, 0, &damaged, &sha256_hex(&other[..MIB]));
    assert_eq!(status, 400, "{body}");
    let (_, body) = on_b.declare(&declaration(&other_hash, visit, "photo", other.len()));
    assert!(received(&body).is_empty(), "{body}");

    // Left half-way and abandoned: removed with its chunk objects.
    let (status, body) = on_a.put_chunk(&other_hash, 0, &other[..MIB], &sha256_hex(&other[..MIB]));
    assert_eq!(status, 200, "{body}");
    assert!(
        s3.keys("fieldsync-attachments")
            .iter()
            .any(|k| k.contains(&format!("/parts/{other_hash}/"))),
        "the chunk is an object in the bucket"
    );
    assert_eq!(
        w.execute_sql(format!(
            "UPDATE attachment_uploads SET touched_at = touched_at - 345600 \
             WHERE sha256 = '{other_hash}'"
        )),
        1
    );
    let blobs = fieldsync_server::blob::open_blob_store(&w.settings).expect("blob store");
    let removed =
        w.rt.block_on(fieldsync_server::service::attachments::remove_abandoned(
            &w.db,
            blobs.as_ref(),
            std::time::Duration::from_secs(72 * 3600),
        ))
        .expect("cleanup");
    assert_eq!(removed, 1);
    assert!(
        !s3.keys("fieldsync-attachments")
            .iter()
            .any(|k| k.contains(&other_hash)),
        "no object of the abandoned upload is left"
    );

    // A real photo uploaded through A has its thumbnail served by B.
    let jpeg = real_photo(1000, 1500, image::ImageFormat::Jpeg);
    let jpeg_hash = on_a.upload(visit, "photo", "image/jpeg", &jpeg);
    let (status, _, _, thumb) = on_b.thumbnail(&jpeg_hash);
    assert_eq!(status, 200);
    let (width, height) = dimensions(&thumb);
    assert_eq!(height, 320);
    assert!((213..=214).contains(&width), "{width}x{height}");
    assert!(
        s3.keys("fieldsync-attachments")
            .contains(&format!("{org}/{}/{jpeg_hash}.thumb.jpg", &jpeg_hash[..2])),
        "the thumbnail lives next to the photo"
    );
    // The other team sees neither, through either node.
    let sara = w.device("sara");
    assert_eq!(Http::at(&node_b.base, &sara).download(&hash).0, 404);
    assert_eq!(Http::at(&w.base, &sara).thumbnail(&jpeg_hash).0, 404);
    drop(node_b);
}
