//! Attachments (issue #7, server half): a photo uploaded in 1 MiB chunks, cut
//! off after two chunks and resumed with only the missing ones; a chunk damaged
//! in transit refused and not stored; a wrong whole-file hash refused at
//! completion; downloads only for readers of the record the photo is attached
//! to; size limits and hostile paths. On SQLite and on PostgreSQL.

mod support;
#[allow(dead_code)]
mod world;

use fieldsync_core::RecordId;
use fieldsync_core::model::visit::Visit;
use fieldsync_core::model::{Account, DeviceTime};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use world::{Backend, Device, World};

#[test]
fn attachments_on_sqlite() {
    attachments(Backend::Sqlite);
}

#[test]
fn attachments_on_postgres() {
    attachments(Backend::Postgres);
}

const MIB: usize = 1024 * 1024;

fn today(hour: i64) -> DeviceTime {
    let now = DeviceTime::now_utc().at_ms;
    DeviceTime::utc(now - now.rem_euclid(86_400_000) + hour * 3_600_000)
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..])
}

/// Deterministic bytes that differ from chunk to chunk.
fn photo(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 33) as u8
        })
        .collect()
}

/// The HTTP side of a device, as the app's uploader will speak it.
struct Http<'a> {
    base: &'a str,
    token: String,
    puts: std::cell::Cell<u32>,
}

impl<'a> Http<'a> {
    fn of(w: &'a World, dev: &Device) -> Http<'a> {
        Http {
            base: &w.base,
            token: dev.client.session().expect("session").access_token,
            puts: std::cell::Cell::new(0),
        }
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
    let account = Account {
        meta: w.meta("ana"),
        name: "Padaria Central".into(),
        account_type: "outlet".into(),
        account_status: "active".into(),
        price_list_id: None,
        visit_frequency_days: None,
        locations: Default::default(),
    };
    let account_id = ana.store().create(&account, today(8)).expect("account");
    let visit = Visit::planned(w.meta("ana"), account_id, today(10), today(11));
    let id = ana
        .store()
        .create_stateful(&visit, &ana.actor, today(8))
        .expect("visit");
    ana.sync();
    id
}

fn attachments(backend: Backend) {
    let w = World::start(backend);
    let ana_dev = w.device("ana");
    let visit = anas_visit(&w, &ana_dev);
    let ana = Http::of(&w, &ana_dev);

    // A 3.5 MiB photo: four chunks, the last half a MiB.
    let data = photo(3 * MIB + MIB / 2, 1);
    let hash = sha(&data);
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
        let (status, body) = ana.put_chunk(&hash, idx, chunk, &sha(chunk));
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
        let (status, body) = ana.put_chunk(&hash, idx, chunk, &sha(chunk));
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
    assert_eq!(w.scalar("SELECT COUNT(*) FROM attachment_chunks"), 0);

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
        let missing = http.download(&sha(b"no such file"));
        assert_eq!(missing.0, 404);
        assert_eq!(body, missing.3, "{who}: refused looks exactly like missing");
        // Nor attach to, or upload into, a record they cannot read.
        let (status, _) = http.declare(&declaration(&hash, visit, "photo", data.len()));
        assert_eq!(status, 404, "{who} cannot attach to ana's visit");
        // A small body: the server refuses before reading one, and a client still
        // sending a whole chunk could see the connection close under it.
        let (status, _) = http.put_chunk(&hash, 0, b"x", &sha(b"x"));
        assert_eq!(status, 404);
    }

    // A chunk damaged in transit: refused, not stored.
    let signed = photo(MIB + 1000, 2);
    let signed_hash = sha(&signed);
    let (status, body) = ana.declare(&declaration(&signed_hash, visit, "photo", signed.len()));
    assert_eq!(status, 200, "{body}");
    let original = &signed[..MIB];
    let mut damaged = original.to_vec();
    damaged[12_345] ^= 0x40;
    let (status, body) = ana.put_chunk(&signed_hash, 0, &damaged, &sha(original));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], json!("chunk_corrupt"));
    let (_, now) = ana.declare(&declaration(&signed_hash, visit, "photo", signed.len()));
    assert!(received(&now).is_empty(), "nothing was stored: {now}");
    // A chunk of the wrong length is refused too.
    let (status, _) = ana.put_chunk(
        &signed_hash,
        1,
        &signed[MIB..MIB + 10],
        &sha(&signed[MIB..MIB + 10]),
    );
    assert_eq!(status, 400);
    let (status, _) = ana.put_chunk(&signed_hash, 0, original, &sha(original));
    assert_eq!(status, 200);
    let (_, now) = ana.declare(&declaration(&signed_hash, visit, "photo", signed.len()));
    assert_eq!(received(&now), vec![0]);

    // Chunks that do not make the declared file: 422 at completion, dropped.
    let claimed = photo(MIB + 10, 3);
    let claimed_hash = sha(&claimed);
    let sent = photo(MIB + 10, 4);
    let (status, body) = ana.declare(&declaration(&claimed_hash, visit, "photo", claimed.len()));
    assert_eq!(status, 200, "{body}");
    for (idx, chunk) in sent.chunks(MIB).enumerate() {
        let (status, body) = ana.put_chunk(&claimed_hash, idx as u32, chunk, &sha(chunk));
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = ana.complete(&claimed_hash);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], json!("hash_mismatch"));
    let (_, now) = ana.declare(&declaration(&claimed_hash, visit, "photo", claimed.len()));
    assert!(received(&now).is_empty(), "the parts were dropped: {now}");
    assert_eq!(ana.download(&claimed_hash).0, 404);

    // Limits: a photo over 20 MiB is refused up front, naming the limit.
    let (status, body) = ana.declare(&declaration(&sha(b"big"), visit, "photo", 21 * MIB));
    assert_eq!(status, 413, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("20 MiB") && message.contains("20971520"),
        "{message}"
    );
    let (status, body) = ana.declare(&declaration(&sha(b"sig"), visit, "signature", 2 * MIB));
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("1 MiB")
    );
    let mut pdf_as_photo = declaration(&sha(b"x"), visit, "photo", 10);
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
        assert_eq!(ana.put_chunk(bad, 0, b"x", &sha(b"x")).0, 400, "PUT {bad}");
        assert_eq!(ana.complete(bad).0, 400, "complete {bad}");
    }
    let (status, _) = ana.declare(&declaration("../etc", visit, "photo", 10));
    assert_eq!(status, 400);
    let (status, _) = ana.put_chunk(&hash, 0, b"x", "../etc");
    assert_eq!(status, 400, "a malformed chunk hash header");
}
