//! The checks behind the fuzz targets (`fuzz/`), kept here so the fuzzers and the
//! regression test (`tests/fuzz_regressions.rs`) run exactly the same code.
//!
//! Each `check_*` function takes arbitrary bytes and panics only when a property
//! is broken: decoding or merging may fail with an error (that is the point of
//! feeding it garbage), but it must never panic, overflow the stack or run away,
//! and what it accepts must survive its own round trip. See `docs/fuzzing.md`.
//!
//! [`seed_corpus`] makes the valid inputs the fuzzers start from (real encoded
//! messages, real Automerge changes made through the model); the files under
//! `fuzz/corpus/` are its output.
//!
//! Not part of the API: hidden from the docs and free to change.

use std::fmt::Debug;
use std::sync::OnceLock;

use automerge::ActorId;
use automerge::sync::SyncDoc;
use serde::{Serialize, de::DeserializeOwned};
use serde_bytes::ByteBuf;
use uuid::Uuid;

use crate::ids::{DeviceId, OrgId, RecordId, TeamId, TerritoryId, UserId};
use crate::model::{
    self, Actor, AssignmentStatus, DeviceTime, Money, OrderLine, PartUsed, Projection, Qty,
    RecordDoc, RecordKind, RecordMeta, Role, Site, VisitOutcome, stored,
};
use crate::protocol::{
    self, PrimeRequest, PrimeResponse, PullRequest, PullResponse, PushOutcome, PushRequest,
    PushResponse, PushResult, RecordChanges, RejectCode, Rejection, RepairRequest, RepairResponse,
    Snapshot,
};

/// Makes the process's panic hook skip panics that [`crate::model::untrusted`]
/// catches and turns into errors, and keeps it for every other panic. The fuzz
/// targets call it once: libFuzzer's hook aborts on any panic, even a caught one.
pub fn skip_fenced_panics_in_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !crate::model::untrusted::inside_fence() {
            previous(info);
        }
    }));
}

// --- protocol_decode ----------------------------------------------------------

/// Decodes `data` as every protocol message type. Whatever decodes must encode
/// and decode again to an equal message. Returns whether any type decoded.
pub fn check_protocol_decode(data: &[u8]) -> bool {
    // Every type is tried (no short-circuit): bytes that are one message may
    // still be fed to another type's decoder by a confused peer.
    [
        round_trip::<PushRequest>(data),
        round_trip::<PushResponse>(data),
        round_trip::<PushResult>(data),
        round_trip::<Rejection>(data),
        round_trip::<PullRequest>(data),
        round_trip::<PullResponse>(data),
        round_trip::<PrimeRequest>(data),
        round_trip::<PrimeResponse>(data),
        round_trip::<Snapshot>(data),
        round_trip::<RepairRequest>(data),
        round_trip::<RepairResponse>(data),
        round_trip::<RecordChanges>(data),
    ]
    .contains(&true)
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) -> bool {
    let Ok(message) = protocol::decode::<T>(data) else {
        return false;
    };
    let encoded = protocol::encode(&message);
    match protocol::decode::<T>(&encoded) {
        Ok(again) => assert_eq!(again, message, "round trip changed the message"),
        Err(e) => panic!("a decoded message does not decode after encoding: {e}"),
    }
    true
}

// --- merge_incoming -----------------------------------------------------------

/// Selector bits of the first input byte of [`check_merge_incoming`].
pub mod merge_input {
    /// The low two bits pick the seed record ([`super::seed_kinds`]): visit,
    /// order, assignment, job. The pushing actor is the visit's or order's rep,
    /// or the assignment's or job's technician.
    pub const SEED_MASK: u8 = 0b11;
    /// Push as a new record (`existing = None`) instead of onto the seed.
    pub const NEW_RECORD: u8 = 0x04;
    /// The rest is several changes, each framed as a little-endian `u16`
    /// length and that many bytes (a short last frame takes what is left);
    /// without it, the rest is one raw change.
    pub const FRAMED: u8 = 0x08;
    /// With [`FRAMED`]: the first frame is the server's copy (`save()` bytes),
    /// used instead of the built-in seed; the record id and kind are taken from it.
    pub const OWN_EXISTING: u8 = 0x10;
}

/// The fixed world every merge input lives in, so that inputs made once (the
/// corpus, committed crash files) mean the same thing on every run.
pub mod world {
    use super::*;

    /// The organisation.
    pub const ORG: OrgId =
        OrgId::from_uuid(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001));
    /// The rep who pushes visits and orders.
    pub const REP: UserId =
        UserId::from_uuid(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0002));
    /// The technician who pushes assignments and jobs.
    pub const TECH: UserId =
        UserId::from_uuid(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0003));
    /// The manager who created the assignment and the job.
    pub const MANAGER: UserId =
        UserId::from_uuid(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0004));
    /// The pushing device.
    pub const DEVICE: DeviceId =
        DeviceId::from_uuid(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0005));
    /// The account every record belongs to.
    pub const ACCOUNT: RecordId =
        RecordId::from_uuid(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0006));
    /// The seed records, in selector order: visit, order, assignment, job.
    pub const RECORDS: [RecordId; 4] = [
        RecordId::from_uuid(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0010)),
        RecordId::from_uuid(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0011)),
        RecordId::from_uuid(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0012)),
        RecordId::from_uuid(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0013)),
    ];

    /// The Automerge actor id assigned to the pushing device.
    pub fn device_actor() -> ActorId {
        ActorId::from(&[0xd1u8; 16][..])
    }

    /// The server's actor id (writes of back-office users).
    pub fn server_actor() -> ActorId {
        ActorId::from(&[0x5eu8; 16][..])
    }

    /// The pushing user for seed `i`.
    pub fn pusher(i: usize) -> Actor {
        if i < 2 {
            Actor::on_device(REP, Role::Rep, DEVICE)
        } else {
            Actor::on_device(TECH, Role::Technician, DEVICE)
        }
    }

    /// The manager.
    pub fn manager() -> Actor {
        Actor::without_device(MANAGER, Role::Manager)
    }

    /// The meta block of seed record `i`.
    pub fn meta(i: usize) -> RecordMeta {
        RecordMeta {
            id: RECORDS[i],
            org: ORG,
            owner: if i < 2 { REP } else { TECH },
            team: TeamId::from_uuid(Uuid::from_u128(7)),
            territory: TerritoryId::from_uuid(Uuid::from_u128(8)),
        }
    }
}

/// The kinds of the seed records, in selector order.
pub fn seed_kinds() -> [RecordKind; 4] {
    [
        RecordKind::Visit,
        RecordKind::Order,
        RecordKind::Assignment,
        RecordKind::ServiceJob,
    ]
}

const SITE: Site = Site {
    coords: None,
    radius_m: 100.0,
};

/// The server's copy of seed record `i` as first pushed: a visit or order the
/// rep's device created, an assignment or job the manager created (dispatched).
pub fn make_seed(i: usize) -> RecordDoc {
    use model::{Assignment, Order, ServiceJob, Visit};
    let t0 = DeviceTime::utc(1_700_000_000_000);
    let made = match i {
        0 => RecordDoc::create_stateful(
            &Visit::planned(
                world::meta(0),
                world::ACCOUNT,
                t0,
                DeviceTime::utc(t0.at_ms + 3_600_000),
            ),
            world::device_actor(),
            &world::pusher(0),
            t0,
        ),
        1 => RecordDoc::create_stateful(
            &Order::new(world::meta(1), world::ACCOUNT, "EUR"),
            world::device_actor(),
            &world::pusher(1),
            t0,
        ),
        2 => RecordDoc::create_stateful(
            &Assignment::new(
                world::meta(2),
                world::RECORDS[3],
                t0,
                DeviceTime::utc(t0.at_ms + 7_200_000),
            ),
            world::server_actor(),
            &world::manager(),
            t0,
        )
        .and_then(|mut doc| {
            model::assignment::advance(
                &mut doc,
                &world::manager(),
                AssignmentStatus::Dispatched,
                t0,
                None,
                None,
            )?;
            Ok(doc)
        }),
        _ => RecordDoc::create_stateful(
            &ServiceJob::new(world::meta(3), world::ACCOUNT, "repair"),
            world::server_actor(),
            &world::manager(),
            t0,
        ),
    };
    match made {
        Ok(doc) => doc,
        Err(e) => panic!("seed record {i} cannot be made: {e}"),
    }
}

/// The seed records' `save()` bytes, made once per process (their status events
/// get fresh ids, so the seeds differ between processes in those ids only).
fn seeds() -> &'static [Vec<u8>; 4] {
    static SEEDS: OnceLock<[Vec<u8>; 4]> = OnceLock::new();
    SEEDS.get_or_init(|| [0, 1, 2, 3].map(|i| make_seed(i).save()))
}

/// Splits `data` into frames: a little-endian `u16` length, then that many
/// bytes; a last frame shorter than its length takes what is left.
pub fn split_frames(mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while let [a, b, rest @ ..] = data {
        let len = usize::from(u16::from_le_bytes([*a, *b])).min(rest.len());
        frames.push(rest[..len].to_vec());
        data = &rest[len..];
    }
    frames
}

/// Frames `parts` the way [`split_frames`] reads them.
pub fn join_frames(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        let len = u16::try_from(part.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&part[..usize::from(len)]);
    }
    out
}

/// Runs the server's merge path on pushed change bytes, laid out as described
/// in [`merge_input`]. A merge may be refused; one that is accepted must give a
/// record whose stored forms (`model::stored`: appended, and compacted when
/// the checked compaction takes it) load with its heads and contents, and
/// that has a projection. Returns whether the merge was accepted.
pub fn check_merge_incoming(data: &[u8]) -> bool {
    use merge_input::*;
    let Some((&selector, rest)) = data.split_first() else {
        return false;
    };
    let seed = usize::from(selector & SEED_MASK);
    let mut changes = if selector & FRAMED != 0 {
        split_frames(rest)
    } else {
        vec![rest.to_vec()]
    };
    let (mut id, mut kind) = (world::RECORDS[seed], seed_kinds()[seed]);
    // The server's copy, and the bytes it is stored as.
    let (existing, before) = if selector & NEW_RECORD != 0 {
        (None, Vec::new())
    } else if selector & FRAMED != 0 && selector & OWN_EXISTING != 0 {
        if changes.is_empty() {
            return false;
        }
        // A server copy that does not load is the server's problem (it answers
        // 500), not a pushed change's.
        let first = changes.remove(0);
        let Ok(doc) = RecordDoc::load(&first) else {
            return false;
        };
        (id, kind) = (doc.id(), doc.kind());
        (Some(doc), first)
    } else {
        match RecordDoc::load(&seeds()[seed]) {
            Ok(doc) => (Some(doc), seeds()[seed].clone()),
            Err(e) => panic!("seed record {seed} does not load: {e}"),
        }
    };
    let merged = model::merge_incoming(
        existing.as_ref(),
        id,
        kind,
        &changes,
        &world::device_actor(),
        &world::pusher(seed),
        world::ORG,
    );
    let Ok(merged) = merged else {
        return false;
    };
    let mut doc = merged.doc;
    // The forms the server stores an accepted record in (`model::stored`):
    // its stored copy with the new changes appended, and a checked
    // compaction, which may decline.
    let appended = stored::appended(
        &before,
        merged.new_changes.iter().map(|(_, raw)| raw.as_slice()),
    );
    loads_as(&mut doc, &appended, "appended form");
    if let Some(compacted) = stored::compacted(&mut doc, RecordDoc::save) {
        loads_as(&mut doc, &compacted, "compacted form");
    }
    let _ = Projection::of(&doc);
    true
}

/// Panics unless `bytes` load as `doc`: the same heads and contents.
fn loads_as(doc: &mut RecordDoc, bytes: &[u8], form: &str) {
    let mut loaded = match RecordDoc::load(bytes) {
        Ok(loaded) => loaded,
        Err(e) => panic!("a record does not load from its {form}: {e}"),
    };
    assert_eq!(
        loaded.heads(),
        doc.heads(),
        "heads changed through the {form}"
    );
    assert_eq!(
        loaded.to_json().ok(),
        doc.to_json().ok(),
        "contents changed through the {form}"
    );
}

// --- doc_load -----------------------------------------------------------------

/// Loads `data` as a stored record document and reads it every way the server
/// and the device do. A document that loads must survive `save()` and load.
/// Returns whether it loaded.
///
/// The bytes are tried as they are and, when they start like an Automerge chunk,
/// again with that chunk's checksum corrected: otherwise nearly every mutation
/// stops at the checksum and the fuzzer never reaches the document parser.
pub fn check_doc_load(data: &[u8]) -> bool {
    let as_is = load_and_read(data);
    let fixed = match with_checksum_fixed(data) {
        Some(fixed) if fixed != data => load_and_read(&fixed),
        _ => false,
    };
    as_is || fixed
}

/// `data` with the first chunk's checksum (4 bytes after the magic) set to the
/// first 4 bytes of SHA-256 over its type, length and body; `None` when the
/// bytes do not start with a chunk header.
pub fn with_checksum_fixed(data: &[u8]) -> Option<Vec<u8>> {
    use sha2::{Digest, Sha256};
    const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
    if data.len() < 10 || data[..4] != MAGIC {
        return None;
    }
    // Type byte, then the body length as unsigned LEB128.
    let mut len: u64 = 0;
    let mut at = 9;
    for shift in (0..64).step_by(7) {
        let byte = *data.get(at)?;
        at += 1;
        len |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
    }
    let end = at.checked_add(usize::try_from(len).ok()?)?.min(data.len());
    let digest = Sha256::digest(&data[8..end]);
    let mut fixed = data.to_vec();
    fixed[4..8].copy_from_slice(&digest[..4]);
    Some(fixed)
}

fn load_and_read(data: &[u8]) -> bool {
    let Ok(mut doc) = RecordDoc::load(data) else {
        return false;
    };
    let _ = Projection::of(&doc);
    let _ = doc.history();
    let _ = doc.conflicts();
    let _ = doc.status_name();
    read_typed(&doc);
    let saved = doc.save();
    loads_as(&mut doc, &saved, "own save");
    true
}

fn read_typed(doc: &RecordDoc) {
    use model::*;
    let _ = match doc.kind() {
        RecordKind::Visit => doc.read_stateful::<Visit>().map(drop),
        RecordKind::VisitReport => doc.read_stateful::<VisitReport>().map(drop),
        RecordKind::Order => doc.read_stateful::<Order>().map(drop),
        RecordKind::ServiceJob => doc.read_stateful::<ServiceJob>().map(drop),
        RecordKind::Assignment => doc.read_stateful::<Assignment>().map(drop),
        RecordKind::Account => doc.read::<Account>().map(drop),
        RecordKind::Contact => doc.read::<Contact>().map(drop),
        RecordKind::Product => doc.read::<Product>().map(drop),
        RecordKind::PriceList => doc.read::<PriceList>().map(drop),
        RecordKind::ChecklistTemplate => doc.read::<ChecklistTemplate>().map(drop),
        RecordKind::ChecklistResponse => doc.read::<ChecklistResponse>().map(drop),
        RecordKind::VanStock => doc.read::<VanStock>().map(drop),
    };
}

/// A check: takes an input, panics on a broken property, returns whether the
/// input was accepted.
pub type Check = fn(&[u8]) -> bool;

/// The fuzz targets by name, with their checks.
pub const TARGETS: [(&str, Check); 3] = [
    ("protocol_decode", check_protocol_decode),
    ("merge_incoming", check_merge_incoming),
    ("doc_load", check_doc_load),
];

// --- Seed corpus --------------------------------------------------------------

/// One seed input: the fuzz target it is for, a file name, the bytes.
#[derive(Debug)]
pub struct SeedInput {
    /// `protocol_decode`, `merge_incoming` or `doc_load`.
    pub target: &'static str,
    /// File name under `fuzz/corpus/<target>/`.
    pub name: &'static str,
    /// The input.
    pub bytes: Vec<u8>,
}

fn raw_changes(doc: &mut RecordDoc, since: &[automerge::ChangeHash]) -> Vec<Vec<u8>> {
    doc.changes_since(since)
        .iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect()
}

fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
    v.iter().map(Vec::as_slice).collect()
}

fn fork(doc: &mut RecordDoc, actor: ActorId) -> RecordDoc {
    let mut copy = match RecordDoc::from_automerge(doc.automerge().fork()) {
        Ok(copy) => copy,
        Err(e) => panic!("a fork does not read: {e}"),
    };
    copy.set_actor(actor);
    copy
}

fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("making the seed corpus failed: {e}"),
    }
}

/// Valid inputs for every target, made through the model: real encoded
/// messages, real Automerge changes and documents. Small on purpose.
pub fn seed_corpus() -> Vec<SeedInput> {
    use merge_input::*;
    let mut out = Vec::new();
    let t = |s: i64| DeviceTime::utc(1_700_000_000_000 + s * 1000);
    let rep = world::pusher(0);
    let tech = world::pusher(2);

    // A visit pushed whole as a new record, and checked in and out on top of the
    // server's copy.
    let mut visit = make_seed(0);
    let created = raw_changes(&mut visit, &[]);
    let visit_saved = visit.save();
    let visit_heads = visit.heads();
    ok(model::visit::check_in(&mut visit, &rep, t(60), None, SITE));
    ok(model::visit::check_out(
        &mut visit,
        &rep,
        t(900),
        None,
        SITE,
        VisitOutcome::OrderTaken,
    ));
    let visit_push = raw_changes(&mut visit, &visit_heads);
    let all: Vec<Vec<u8>> = raw_changes(&mut visit, &[]);
    out.push(SeedInput {
        target: "merge_incoming",
        name: "visit_new_whole_history",
        bytes: [vec![NEW_RECORD | FRAMED], join_frames(&refs(&all))].concat(),
    });
    out.push(SeedInput {
        target: "merge_incoming",
        name: "visit_new_raw_creation",
        bytes: [vec![NEW_RECORD], created[0].clone()].concat(),
    });
    let mut frames = vec![visit_saved.as_slice()];
    frames.extend(refs(&visit_push));
    out.push(SeedInput {
        target: "merge_incoming",
        name: "visit_check_in_and_out",
        bytes: [vec![FRAMED | OWN_EXISTING], join_frames(&frames)].concat(),
    });

    // An order: a line added and the order submitted.
    let mut order = make_seed(1);
    let order_saved = order.save();
    let order_heads = order.heads();
    ok(model::order::add_line(
        &mut order,
        &rep,
        t(10),
        OrderLine::new(world::ACCOUNT, Qty::units(3), Money::new(1250, "EUR")),
    ));
    ok(model::order::submit(&mut order, &rep, t(20)));
    let order_push = raw_changes(&mut order, &order_heads);
    let mut frames = vec![order_saved.as_slice()];
    frames.extend(refs(&order_push));
    out.push(SeedInput {
        target: "merge_incoming",
        name: "order_line_and_submit",
        bytes: [vec![1 | FRAMED | OWN_EXISTING], join_frames(&frames)].concat(),
    });

    // An assignment the technician accepts, travels to, works on and books a part on.
    let mut server = make_seed(2);
    let assignment_saved = server.save();
    let mut device = fork(&mut server, world::device_actor());
    let heads = device.heads();
    for step in [
        AssignmentStatus::Accepted,
        AssignmentStatus::Traveling,
        AssignmentStatus::OnSite,
        AssignmentStatus::InProgress,
    ] {
        ok(model::assignment::advance(
            &mut device,
            &tech,
            step,
            t(100),
            None,
            None,
        ));
    }
    ok(model::assignment::add_part(
        &mut device,
        &tech,
        t(200),
        PartUsed {
            product_id: world::ACCOUNT,
            qty: Qty::units(1),
            van_stock_id: None,
            serial: Some("SN-1".into()),
            billable: true,
            at: t(200),
        },
    ));
    let assignment_push = raw_changes(&mut device, &heads);
    let mut frames = vec![assignment_saved.as_slice()];
    frames.extend(refs(&assignment_push));
    out.push(SeedInput {
        target: "merge_incoming",
        name: "assignment_accept_to_part",
        bytes: [vec![2 | FRAMED | OWN_EXISTING], join_frames(&frames)].concat(),
    });

    // doc_load: stored documents, one with concurrent edits (conflicts) and one
    // followed by an incremental save.
    let mut a = fork(&mut visit, ActorId::from(&[0xa1u8; 16][..]));
    let mut b = fork(&mut visit, ActorId::from(&[0xb2u8; 16][..]));
    ok(a.update::<model::Visit>(t(1000), |v| v.notes = "back door".into()));
    ok(b.update::<model::Visit>(t(1001), |v| v.notes = "front door".into()));
    ok(a.update::<model::Visit>(t(1002), |v| v.instructions = Some("ring".into())));
    ok(b.update::<model::Visit>(t(1003), |v| v.instructions = Some("call".into())));
    ok(a.merge(&mut b));
    out.push(SeedInput {
        target: "doc_load",
        name: "visit_with_conflicts",
        bytes: a.save(),
    });
    out.push(SeedInput {
        target: "doc_load",
        name: "order_submitted",
        bytes: order.save(),
    });
    let mut later = fork(&mut device, world::device_actor());
    let mut incremental = later.save();
    ok(model::assignment::advance(
        &mut later,
        &tech,
        AssignmentStatus::Completed,
        t(300),
        None,
        None,
    ));
    incremental.extend(later.save_incremental());
    out.push(SeedInput {
        target: "doc_load",
        name: "assignment_save_then_incremental",
        bytes: incremental,
    });
    out.push(SeedInput {
        target: "doc_load",
        name: "job_created",
        bytes: make_seed(3).save(),
    });

    // protocol_decode: one of each message, with real change and document bytes.
    let bufs = |v: &[Vec<u8>]| v.iter().cloned().map(ByteBuf::from).collect::<Vec<_>>();
    let visit_changes = RecordChanges {
        id: world::RECORDS[0],
        kind: RecordKind::Visit,
        changes: bufs(&visit_push),
    };
    out.push(SeedInput {
        target: "protocol_decode",
        name: "push_request",
        bytes: protocol::encode(&PushRequest {
            batch: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0099),
            records: vec![
                visit_changes.clone(),
                RecordChanges {
                    id: world::RECORDS[1],
                    kind: RecordKind::Order,
                    changes: bufs(&order_push),
                },
            ],
            health: None,
            epochs: Vec::new(),
        }),
    });
    out.push(SeedInput {
        target: "protocol_decode",
        name: "push_response",
        bytes: protocol::encode(&PushResponse {
            results: vec![
                PushResult {
                    id: world::RECORDS[0],
                    outcome: PushOutcome::Accepted {
                        heads: visit
                            .heads()
                            .iter()
                            .map(|h| ByteBuf::from(h.0.to_vec()))
                            .collect(),
                    },
                },
                PushResult {
                    id: world::RECORDS[1],
                    outcome: PushOutcome::Rejected(Rejection {
                        code: RejectCode::Transition,
                        message: "an order needs a line".into(),
                        retryable: false,
                        server_doc: Some(ByteBuf::from(order_saved.clone())),
                    }),
                },
            ],
        }),
    });
    out.push(SeedInput {
        target: "protocol_decode",
        name: "pull_request",
        bytes: protocol::encode(&PullRequest {
            log: None,
            history: None,
            cursor: 42,
            max_changes: 500,
            window: Some(protocol::ScopeWindow {
                from_ms: 1_700_000_000_000,
                to_ms: 1_700_777_600_000,
            }),
            health: None,
        }),
    });
    out.push(SeedInput {
        target: "protocol_decode",
        name: "pull_response",
        bytes: protocol::encode(&PullResponse {
            log: None,
            history: None,
            records: vec![visit_changes],
            removed: vec![world::RECORDS[3]],
            next_cursor: 43,
            more: true,
            window: Some(protocol::ScopeWindow {
                from_ms: i64::MIN,
                to_ms: 1_700_777_600_000,
            }),
            epochs: Vec::new(),
        }),
    });
    out.push(SeedInput {
        target: "protocol_decode",
        name: "prime_request",
        bytes: protocol::encode(&PrimeRequest {
            after: Some(world::RECORDS[0]),
            cursor: Some(7),
            max_records: 100,
        }),
    });
    let snapshot = |doc: &mut RecordDoc| Snapshot {
        id: doc.id(),
        kind: doc.kind(),
        doc: ByteBuf::from(doc.save()),
        projection: Projection::of(doc).ok(),
    };
    out.push(SeedInput {
        target: "protocol_decode",
        name: "prime_response",
        bytes: protocol::encode(&PrimeResponse {
            log: None,
            snapshots: vec![snapshot(&mut server), snapshot(&mut make_seed(3))],
            next: Some(world::RECORDS[3]),
            cursor: 7,
            window: None,
            epochs: Vec::new(),
        }),
    });
    let mut state = automerge::sync::State::new();
    let message = device
        .automerge()
        .sync()
        .generate_sync_message(&mut state)
        .map(|m| m.encode())
        .unwrap_or_default();
    out.push(SeedInput {
        target: "protocol_decode",
        name: "repair_request",
        bytes: protocol::encode(&RepairRequest {
            id: world::RECORDS[2],
            kind: RecordKind::Assignment,
            message: ByteBuf::from(message.clone()),
            epoch: 0,
        }),
    });
    out.push(SeedInput {
        target: "protocol_decode",
        name: "repair_response",
        bytes: protocol::encode(&RepairResponse {
            message: Some(ByteBuf::from(message)),
        }),
    });
    out
}
