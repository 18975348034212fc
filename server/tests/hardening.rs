//! Hardening, second round (issue #16): what a hostile or broken client could
//! do to the server or to other users' data, each reproduced with requests
//! built by hand and shown to get the safe answer, on SQLite and PostgreSQL.
//!
//! - An Automerge operation bomb (a change of a hundred bytes that expands to
//!   900,000 list insertions) is refused before anything is merged, and an
//!   expensive push that stays under the limits merges off the write path: an
//!   ordinary push made meanwhile by someone else is not kept waiting.
//! - A record out of the caller's scope and a record that does not exist get
//!   the same answer from every endpoint that takes a record id (attachments:
//!   `tests/attachments.rs`).

use std::time::{Duration, Instant};

use fieldsync_core::RecordId;
use fieldsync_core::automerge::transaction::Transactable;
use fieldsync_core::automerge::{ObjType, ROOT, ScalarValue};
use fieldsync_core::model::report::{self, VisitReport};
use fieldsync_core::model::{MAX_CHANGE_OPS, RecordDoc, RecordKind, Visit};
use fieldsync_core::protocol::{PushOutcome, PushRequest, RecordChanges, RejectCode};
use fieldsync_core::sync::Transport as _;
use fieldsync_test_support::{Device, World, on_both_databases, today};
use serde_bytes::ByteBuf;

on_both_databases!(
    an_operation_bomb_is_refused_and_nobody_waits_for_an_expensive_push,
    out_of_scope_and_missing_records_get_the_same_answer,
);

/// The server's copy of `id` with one change by `dev` appending `ops` list
/// insertions under a new root key: a few hundred bytes on the wire whatever
/// `ops` is (Automerge run-length encodes the insertions).
fn bloated(w: &World, dev: &Device, id: RecordId, ops: usize) -> (RecordDoc, Vec<ByteBuf>) {
    let mut doc = w.server_doc(id).expect("on the server");
    doc.set_actor(dev.actor_id());
    let before = doc.heads();
    {
        let am = doc.automerge();
        let list = am.put_object(ROOT, "padding", ObjType::List).expect("list");
        am.splice(&list, 0, 0, std::iter::repeat_n(ScalarValue::Null, ops))
            .expect("splice");
        am.commit();
    }
    let changes = doc
        .changes_since(&before)
        .iter()
        .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
        .collect();
    (doc, changes)
}

fn push(dev: &Device, records: Vec<RecordChanges>) -> (Vec<PushOutcome>, Duration) {
    let started = Instant::now();
    let resp = dev
        .net()
        .push(
            &dev.access_token(),
            &PushRequest {
                batch: uuid::Uuid::now_v7(),
                records,
                health: None,
                epochs: Vec::new(),
            },
        )
        .expect("push answered");
    (
        resp.results.into_iter().map(|r| r.outcome).collect(),
        started.elapsed(),
    )
}

/// A small ordinary edit by `dev` to its own visit `id`, pushed through the
/// device's own sync; returns how long the sync took.
fn ordinary_edit(dev: &Device, id: RecordId, note: &str) -> Duration {
    dev.store()
        .update::<Visit>(id, today(11), |v| v.notes = note.into())
        .expect("edit");
    let started = Instant::now();
    let report = dev.sync();
    assert_eq!(report.rejected, 0, "the ordinary edit was accepted");
    started.elapsed()
}

fn an_operation_bomb_is_refused_and_nobody_waits_for_an_expensive_push(w: World) {
    let ana = w.device("ana");
    let ben = w.device("ben");
    let ana_shop = w.account_on(&ana, "Ana's shop");
    let ben_shop = w.account_on(&ben, "Ben's shop");
    let ana_visits: Vec<RecordId> = (0..8).map(|_| w.visit_on(&ana, ana_shop)).collect();
    let ben_visit = w.visit_on(&ben, ben_shop);
    ana.sync();
    ben.sync();
    let alone = ordinary_edit(&ben, ben_visit, "first");

    // The bomb: one change, 900,000 insertions.
    let (_, bomb) = bloated(&w, &ana, ana_visits[0], 900_000);
    let wire: usize = bomb.iter().map(|c| c.len()).sum();
    let (outcomes, bomb_time) = push(
        &ana,
        vec![RecordChanges {
            id: ana_visits[0],
            kind: RecordKind::Visit,
            changes: bomb,
        }],
    );
    match &outcomes[0] {
        PushOutcome::Rejected(r) => {
            assert_eq!(r.code, RejectCode::TooLarge, "{}", r.message);
            assert!(!r.retryable);
            assert!(r.message.contains("900001 operations"), "{}", r.message);
        }
        other => panic!("the bomb was accepted: {other:?}"),
    }
    assert!(
        w.server_doc(ana_visits[0])
            .expect("kept")
            .to_json()
            .expect("json")
            .get("padding")
            .is_none(),
        "nothing of the bomb is stored"
    );

    // An expensive push under the limits: eight records just under the
    // per-change limit. It merges on the blocking pool, outside the write
    // path, while Ben's ordinary push goes through.
    let heavy: Vec<RecordChanges> = ana_visits
        .iter()
        .map(|&id| RecordChanges {
            id,
            kind: RecordKind::Visit,
            changes: bloated(&w, &ana, id, MAX_CHANGE_OPS - 1).1,
        })
        .collect();
    let ana_push = {
        let ana = &ana;
        std::thread::scope(|s| {
            let heavy = s.spawn(move || push(ana, heavy));
            std::thread::sleep(Duration::from_millis(300));
            let during = ordinary_edit(&ben, ben_visit, "second");
            let (outcomes, took) = heavy.join().expect("the heavy push");
            (outcomes, took, during)
        })
    };
    let (heavy_outcomes, heavy_time, during) = ana_push;
    let refused_for_now = heavy_outcomes
        .iter()
        .filter(|o| matches!(o, PushOutcome::Rejected(r) if r.retryable))
        .count();
    // Every record is refused in the end (`padding` is not a field of a
    // visit), after its merge, or as retryable once the push's merge budget
    // ran out: either way, nothing of it is stored.
    for o in &heavy_outcomes {
        assert!(matches!(o, PushOutcome::Rejected(_)), "{o:?}");
    }
    println!(
        "op bomb: {wire} bytes, 900001 operations, refused in {bomb_time:.2?}; \
         expensive push of 8 x {} operations answered in {heavy_time:.2?} \
         ({refused_for_now} records left for the next push); \
         another user's ordinary sync {alone:.2?} alone, {during:.2?} during it \
         (ratio {:.1})",
        MAX_CHANGE_OPS - 1,
        during.as_secs_f64() / alone.as_secs_f64().max(0.001)
    );
    // Generous bounds: the machine is shared; the ratios above are the figure.
    assert!(
        bomb_time < Duration::from_secs(3),
        "bomb took {bomb_time:?}"
    );
    assert!(
        during < Duration::from_secs(3),
        "the ordinary sync waited {during:?} for the expensive push"
    );
}

/// (status, body) of a request with `token`.
fn call(method: &str, url: &str, token: &str, body: Option<serde_json::Value>) -> (u16, String) {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let auth = format!("Bearer {token}");
    let resp = match (method, body) {
        ("GET", _) => agent.get(url).header("authorization", &auth).call(),
        (_, Some(json)) => agent
            .post(url)
            .header("authorization", &auth)
            .send_json(json),
        (_, None) => agent.post(url).header("authorization", &auth).send_empty(),
    }
    .expect("answer");
    let status = resp.status().as_u16();
    (
        status,
        resp.into_body().read_to_string().unwrap_or_default(),
    )
}

/// Issue #16, "oracles": Mona manages team North; Sara's report (team South)
/// is out of her scope. Every endpoint that takes a record id answers Mona
/// exactly as it answers for an id that names nothing.
fn out_of_scope_and_missing_records_get_the_same_answer(w: World) {
    let sara = w.device("sara");
    let mona = w.device("mona");
    let shop = w.account_on(&sara, "Sara's shop");
    let visit_id = w.visit_on(&sara, shop);
    let report_id = sara
        .store()
        .create_stateful(
            &VisitReport::new(w.meta("sara"), visit_id),
            &sara.actor,
            today(9),
        )
        .expect("report");
    sara.store()
        .update::<VisitReport>(report_id, today(10), |r| {
            r.summary = "Met the owner.".into()
        })
        .expect("write");
    sara.store()
        .act(report_id, |d| report::submit(d, &sara.actor, today(11)))
        .expect("submit");
    assert_eq!(sara.sync().rejected, 0);
    let missing = RecordId::new();
    let token = mona.access_token();
    let decision = serde_json::json!({"decision": "approve"});
    for (what, method, path, body) in [
        ("report", "GET", "/v1/reports/{id}", None),
        (
            "decision",
            "POST",
            "/v1/reports/{id}/decision",
            Some(decision.clone()),
        ),
        ("audit", "GET", "/v1/records/{id}/audit", None),
        (
            "resolve",
            "POST",
            "/v1/conflicts/{id}/resolve",
            Some(serde_json::json!({"choose": "submitted"})),
        ),
    ] {
        for id in [report_id, visit_id] {
            let url = |id: RecordId| format!("{}{}", w.base, path.replace("{id}", &id.to_string()));
            let (status, answer) = call(method, &url(id), &token, body.clone());
            let (missing_status, missing_answer) =
                call(method, &url(missing), &token, body.clone());
            assert_eq!(status, 404, "{what} of an out-of-scope record: {answer}");
            assert_eq!(
                (status, answer.replace(&id.to_string(), "ID")),
                (
                    missing_status,
                    missing_answer.replace(&missing.to_string(), "ID")
                ),
                "{what}: out of scope answers like missing"
            );
        }
    }
}
