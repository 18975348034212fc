//! What an erasure costs the devices (`docs/adr/0005-erasure-by-rewrite.md`):
//! a rep's phone holds 20,000 records (accounts and visits) and a contact
//! edited a few times, with visits naming them; an administrator erases the
//! contact; the phone's next sync replaces the rewritten records. The figures
//! set that sync (round trips, bytes, time, records replaced) beside an
//! ordinary one-edit sync and a priming of the same 20,000 records, which is
//! what a device would need without record epochs.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p fieldsync-server --bench
//! erasure`). `FIELDSYNC_BENCH_RECORDS` changes the 20,000;
//! `FIELDSYNC_BENCH_BACKENDS` (`sqlite`, `postgres`, or both) picks the
//! databases. `FIELDSYNC_BENCH_TINY=1` (what `cargo xtask test` sets) runs it
//! with 40 records: proof that it still runs, not a measurement.

use std::time::Instant;

use fieldsync_core::RecordId;
use fieldsync_core::automerge::ActorId;
use fieldsync_core::model::{Account, Actor, Contact, DeviceTime, RecordDoc, Role, Visit};
use fieldsync_core::protocol::{PushOutcome, PushRequest, RecordChanges};
use fieldsync_server::Caller;
use fieldsync_server::service::{self, Context};
use fieldsync_test_support::{Backend, Device, World, bench_size, today};
use serde_bytes::ByteBuf;

fn main() {
    let records: usize = std::env::var("FIELDSYNC_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| bench_size(20_000, 40));
    let backends = std::env::var("FIELDSYNC_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite".into());
    let mut rows = Vec::new();
    for name in backends.split(',').map(str::trim) {
        let (backend, name) = match name {
            "sqlite" => (Backend::Sqlite, "sqlite"),
            "postgres" => (Backend::Postgres, "postgres"),
            other => panic!("unknown backend {other:?}: use sqlite or postgres"),
        };
        rows.extend(run(backend, name, records));
    }
    println!();
    println!("| backend | sync | round trips | bytes | time | records received |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {:.0} ms | {} |",
            r.backend, r.what, r.trips, r.bytes, r.ms, r.received
        );
    }
}

struct Row {
    backend: &'static str,
    what: String,
    trips: u64,
    bytes: u64,
    ms: f64,
    received: u64,
}

fn measured(dev: &Device, backend: &'static str, what: String, f: impl FnOnce() -> u64) -> Row {
    dev.net().reset_counters();
    let started = Instant::now();
    let received = f();
    let ms = started.elapsed().as_secs_f64() * 1_000.0;
    let (trips, bytes) = dev.net().counters();
    eprintln!("   {what}: {trips} round trips, {bytes} bytes, {ms:.0} ms, {received} records");
    Row {
        backend,
        what,
        trips,
        bytes,
        ms,
        received,
    }
}

fn caller_of(w: &World, who: &str, role: Role) -> Caller {
    let p = w.person(who);
    Caller {
        actor: Actor::without_device(p.id, role),
        org: w.org,
        team: Some(p.team),
        territory: Some(w.territory),
        display_name: who.into(),
        actor_id: ActorId::random(),
        window: None,
    }
}

fn run(backend: Backend, name: &'static str, records: usize) -> Vec<Row> {
    eprintln!("== {name}: seeding {records} records for ana");
    let w = World::start(backend);
    let ctx =
        w.rt.block_on(Context::open(&w.settings, w.db.clone()))
            .expect("a node's context");
    let (contact, account) = seed(&w, &ctx, records);
    let mut out = Vec::new();

    let phone = w.device("ana");
    out.push(measured(
        &phone,
        name,
        format!("priming {records} records (what a device needs without epochs)"),
        || phone.sync().primed,
    ));
    // An ordinary sync: one field edited elsewhere.
    let tablet = w.device("ana");
    tablet.sync();
    tablet
        .store()
        .update::<Account>(account, today(10), |a| a.name = "Outlet renamed".into())
        .expect("edit");
    tablet.sync();
    out.push(measured(
        &phone,
        name,
        "one edit made elsewhere".into(),
        || phone.sync().pulled,
    ));
    // The phone's copy of the contact, as it held it before.
    assert!(
        phone.store().read::<Contact>(contact).is_ok(),
        "the phone holds the contact"
    );

    let adam = caller_of(&w, "adam", Role::Admin);
    let started = Instant::now();
    let erased =
        w.rt.block_on(service::erasure::erase_contact(
            &ctx,
            &adam,
            contact,
            "benchmark",
        ))
        .expect("erased");
    eprintln!(
        "   the erasure itself: {} records rewritten in {:.0} ms",
        erased.records.len(),
        started.elapsed().as_secs_f64() * 1_000.0
    );
    out.push(measured(
        &phone,
        name,
        format!(
            "after erasing one contact ({} records rewritten)",
            erased.records.len()
        ),
        || phone.sync().rewritten,
    ));
    let held: Contact = phone.store().read(contact).expect("held");
    assert_eq!(held.name, fieldsync_core::model::erase::ERASED);
    out
}

/// `n` records for ana through the push path: an account every 20 records
/// and visits to it; the first account has a contact, edited three times,
/// whom its first visits name. Returns the contact and the first account.
fn seed(w: &World, ctx: &Context, n: usize) -> (RecordId, RecordId) {
    let caller = caller_of(w, "ana", Role::Rep);
    let actor = caller.actor.clone();
    let mut batch: Vec<RecordDoc> = Vec::new();
    let mut account = RecordId::new();
    let mut first: Option<(RecordId, RecordId)> = None;
    let yesterday = today(0).at_ms - 86_400_000;
    for i in 0..n {
        let doc = if i % 20 == 0 {
            let a = Account {
                meta: w.meta("ana"),
                name: format!("Outlet {i}"),
                account_type: "outlet".into(),
                account_status: "active".into(),
                code: None,
                price_list_id: None,
                visit_frequency_days: Some(14),
                locations: Default::default(),
            };
            account = a.meta.id;
            RecordDoc::create(&a, caller.actor_id.clone(), DeviceTime::utc(0))
        } else if first.is_none() {
            let c = Contact {
                meta: w.meta("ana"),
                account_id: account,
                name: "Isolde Varga-Pennington".into(),
                role: Some("buyer".into()),
                phone: Some("+36 30 123 4567".into()),
                email: Some("isolde@varga.example".into()),
                marketing_consent: true,
                consent: None,
            };
            first = Some((c.meta.id, account));
            let mut doc = RecordDoc::create(&c, caller.actor_id.clone(), DeviceTime::utc(0))
                .expect("contact");
            for (k, phone) in ["+36 30 765 4321", "+36 20 111 2222", "+36 70 333 4444"]
                .iter()
                .enumerate()
            {
                doc.update::<Contact>(DeviceTime::utc(k as i64 + 1), |c| {
                    c.phone = Some((*phone).into())
                })
                .expect("edit");
            }
            Ok(doc)
        } else {
            let mut v = Visit::planned(
                w.meta("ana"),
                account,
                // 30 s apart from the start of yesterday: 20,000 visits span
                // seven days, inside a rep's download window.
                DeviceTime::utc(yesterday + i as i64 * 30_000),
                DeviceTime::utc(yesterday + i as i64 * 30_000 + 1_800_000),
            );
            if let Some((contact, at)) = first
                && at == account
            {
                v.contact_id = Some(contact);
                v.notes = "Met Isolde Varga-Pennington".into();
            }
            RecordDoc::create_stateful(&v, caller.actor_id.clone(), &actor, DeviceTime::utc(0))
        }
        .expect("record");
        batch.push(doc);
        if batch.len() == 500 || i + 1 == n {
            let records = batch
                .drain(..)
                .map(|mut d| RecordChanges {
                    id: d.id(),
                    kind: d.kind(),
                    changes: d
                        .automerge()
                        .get_changes(&[])
                        .iter()
                        .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
                        .collect(),
                })
                .collect();
            let resp =
                w.rt.block_on(service::sync::push(
                    ctx,
                    &caller,
                    &PushRequest {
                        batch: uuid::Uuid::now_v7(),
                        records,
                        health: None,
                        epochs: Vec::new(),
                    },
                ))
                .expect("seed push");
            for r in resp.results {
                assert!(
                    matches!(r.outcome, PushOutcome::Accepted { .. }),
                    "seed refused: {:?}",
                    r.outcome
                );
            }
        }
    }
    first.expect("a contact (at least 2 records)")
}
