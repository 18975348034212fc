//! Who may write what, as a matrix: every role × kind × field × status,
//! for two operations (editing a field, tombstoning the record through its
//! `deleted` field), on SQLite and on PostgreSQL.
//!
//! The oracle is `docs/rules.md` read as a document (its tables parsed here),
//! not the server's code: for each cell the test expects an accept when the
//! cell names the record's status (or says `any`) and a refusal otherwise.
//! Every write is built by hand on the server's copy under the writer's own
//! device actor and pushed raw, as a modified app would, so the device's own
//! checks never stand in for the server's.
//!
//! Records are brought to each status through their state machines by the
//! users who may take each step (the order's `pending_approval` and
//! `confirmed` by the server, deciding a submitted order against its price
//! list in the same push; `fulfilled` by an administrator). Statuses that no
//! record keeps after a push — an order `submitted`, which the server decides
//! at once — or that no push can reach — a job `closed`, made by the office
//! through the server — are counted and named in the output as not reached.
//!
//! The test prints the number of checks.

use std::collections::BTreeMap;

use fieldsync_core::automerge::transaction::Transactable;
use fieldsync_core::automerge::{ROOT, ScalarValue};
use fieldsync_core::model::assignment::{self, Assignment, AssignmentStatus, PartUsed, TimeEntry};
use fieldsync_core::model::order::{self, Order, OrderLine, OrderStatus};
use fieldsync_core::model::report::{self, KpiValue, ReportStatus, ReviewComment, VisitReport};
use fieldsync_core::model::visit::{self, CheckPoint, Site, Visit, VisitOutcome, VisitStatus};
use fieldsync_core::model::{
    Account, Answer, AnswerValue, Approval, ChecklistResponse, ChecklistTemplate, Contact,
    DeviceTime, JobStatus, Location, Money, PriceItem, PriceList, Priority, Product, Qty, Question,
    QuestionKind, RecordDoc, RecordKind, ServiceJob, Status, TimeKind, TransitionRequest,
};
use fieldsync_core::protocol::PushOutcome;
use fieldsync_core::{RecordId, UserId};
use fieldsync_test_support::{Backend, Device, World, today};

#[test]
fn on_sqlite() {
    matrix(Backend::Sqlite);
}

#[test]
fn on_postgres() {
    matrix(Backend::Postgres);
}

const ROLES: [&str; 4] = ["rep", "technician", "manager", "admin"];

/// `docs/rules.md`, parsed: (kind, field) → role → the statuses named, or
/// `None` for `any`; a role missing from the map may never write the field.
type Oracle = BTreeMap<(String, String), BTreeMap<String, Option<Vec<String>>>>;

fn oracle() -> Oracle {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/rules.md");
    let text = std::fs::read_to_string(path).expect("docs/rules.md");
    let mut out = Oracle::new();
    let mut kind = String::new();
    let mut roles: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(k) = line.strip_prefix("## ") {
            kind = k.trim().to_owned();
            continue;
        }
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        if !line.starts_with('|') || cells.len() < 2 || cells[0].starts_with("---") {
            continue;
        }
        if cells[0] == "field" {
            roles = cells[1..].iter().map(|s| (*s).to_owned()).collect();
            continue;
        }
        let field = cells[0].trim_matches('`').to_owned();
        let mut by_role = BTreeMap::new();
        for (role, cell) in roles.iter().zip(&cells[1..]) {
            match *cell {
                "—" => {}
                "any" => {
                    by_role.insert(role.clone(), None);
                }
                list => {
                    by_role.insert(
                        role.clone(),
                        Some(list.split(", ").map(str::to_owned).collect()),
                    );
                }
            }
        }
        out.insert((kind.clone(), field), by_role);
    }
    assert!(out.len() > 80, "docs/rules.md has its tables");
    out
}

fn expected(
    oracle: &Oracle,
    kind: RecordKind,
    field: &str,
    role: &str,
    status: Option<&str>,
) -> bool {
    let cell = oracle
        .get(&(kind.as_str().to_owned(), field.to_owned()))
        .unwrap_or_else(|| panic!("docs/rules.md has no row for {kind}.{field}"));
    match cell.get(role) {
        None => false,
        Some(None) => true,
        Some(Some(statuses)) => status.is_some_and(|s| statuses.iter().any(|x| x == s)),
    }
}

/// Records the mutations point at: each readable by whoever writes the field.
struct Ctx {
    shop: RecordId,
    account2: RecordId,
    visit3: RecordId,
    job3: RecordId,
    template_b: RecordId,
    contact: RecordId,
    visit2: RecordId,
    tomas_account: RecordId,
    tomas_account2: RecordId,
    tomas_contact: RecordId,
    job2: RecordId,
    assignment2: RecordId,
    tomas_response: RecordId,
    list: RecordId,
    product: RecordId,
    template: RecordId,
    template_v2: RecordId,
}

struct Users {
    ana: Device,
    tomas: Device,
    mona: Device,
    adam: Device,
}

impl Users {
    fn by_role(&self, role: &str) -> &Device {
        match role {
            "rep" => &self.ana,
            "technician" => &self.tomas,
            "manager" => &self.mona,
            _ => &self.adam,
        }
    }
}

fn accepted(out: PushOutcome, what: &str) {
    assert!(
        matches!(out, PushOutcome::Accepted { .. }),
        "{what}: {out:?}"
    );
}

/// A record made by `by` from scratch, under `by`'s device actor.
fn create<R: fieldsync_core::model::Record>(w: &World, by: &Device, record: &R) -> RecordId {
    push_created(
        w,
        by,
        RecordDoc::create(record, by.actor_id(), today(7)).expect("create"),
    )
}

fn create_stateful<R: fieldsync_core::model::Stateful>(
    w: &World,
    by: &Device,
    record: &R,
) -> RecordId {
    let doc =
        RecordDoc::create_stateful(record, by.actor_id(), &by.actor, today(7)).expect("create");
    push_created(w, by, doc)
}

fn push_created(w: &World, by: &Device, mut doc: RecordDoc) -> RecordId {
    let id = doc.id();
    accepted(by.push_new(&mut doc), &format!("creating {id}"));
    assert!(w.server_doc(id).is_some());
    id
}

/// One step of a record's way to a status, by `by`.
fn step(w: &World, by: &Device, id: RecordId, edit: impl FnOnce(&mut RecordDoc)) {
    accepted(
        by.push_forged(w.server_doc(id).expect("copy"), edit),
        &format!("a step of {id}"),
    );
}

fn reason<S>(to: S, at: DeviceTime) -> TransitionRequest<S> {
    TransitionRequest::new(to, at).with_reason("because")
}

fn matrix(backend: Backend) {
    let w = World::start(backend);
    let u = Users {
        ana: w.device("ana"),
        tomas: w.device("tomas"),
        mona: w.device("mona"),
        adam: w.device("adam"),
    };
    let oracle = oracle();
    let account = |who: &str, name: &str| Account {
        meta: w.meta(who),
        name: name.into(),
        account_type: "outlet".into(),
        account_status: "active".into(),
        code: None,
        price_list_id: None,
        visit_frequency_days: None,
        locations: BTreeMap::new(),
    };
    let contact = |who: &str, account_id| Contact {
        meta: w.meta(who),
        account_id,
        name: "Rosa".into(),
        role: None,
        phone: None,
        email: None,
        marketing_consent: false,
        consent: None,
    };
    let ana_shop = create(&w, &u.ana, &account("ana", "Shop"));
    let account2 = create(&w, &u.ana, &account("ana", "Shop 2"));
    let ana_contact = create(&w, &u.ana, &contact("ana", ana_shop));
    let tomas_account = create(&w, &u.tomas, &account("tomas", "Clinic"));
    let tomas_account2 = create(&w, &u.tomas, &account("tomas", "Clinic 2"));
    let tomas_contact = create(&w, &u.tomas, &contact("tomas", tomas_account));
    let product = create(
        &w,
        &u.mona,
        &Product {
            meta: w.meta("mona"),
            sku: "P".into(),
            name: "Pump".into(),
            unit: "pcs".into(),
            serialized: false,
            spare_part: true,
            active: true,
        },
    );
    let list = create(
        &w,
        &u.mona,
        &PriceList {
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
        },
    );
    let template_of = |version: u32| ChecklistTemplate {
        meta: w.meta("mona"),
        name: "Check".into(),
        version,
        published: true,
        family: None,
        supersedes: None,
        retired: false,
        questions: BTreeMap::from([(
            "q".to_owned(),
            Question {
                position: 1,
                text: "Ok?".into(),
                kind: QuestionKind::YesNo,
                choices: Vec::new(),
                required: false,
                show_if: None,
            },
        )]),
    };
    let template = create(&w, &u.mona, &template_of(1));
    let template_v2 = create(&w, &u.mona, &template_of(2));
    let template_b = create(&w, &u.mona, &template_of(1));
    let planned = |who: &str, account| Visit::planned(w.meta(who), account, today(9), today(10));
    let visit2 = create_stateful(&w, &u.ana, &planned("ana", account2));
    let visit3 = create_stateful(&w, &u.ana, &planned("ana", account2));
    let job_of = |account| {
        let mut j = ServiceJob::new(w.meta("tomas"), account, "repair");
        j.description = "Broken".into();
        j
    };
    let job2 = create_stateful(&w, &u.mona, &job_of(tomas_account2));
    let job3 = create_stateful(&w, &u.mona, &job_of(tomas_account2));
    let assignment2 = create_stateful(
        &w,
        &u.mona,
        &Assignment::new(w.meta("tomas"), job2, today(10), today(11)),
    );
    let response_of = |who: &str, subject| ChecklistResponse {
        meta: w.meta(who),
        template_id: template,
        template_version: 1,
        subject_id: subject,
        answers: BTreeMap::new(),
        completed: false,
    };
    let tomas_response = create(&w, &u.tomas, &response_of("tomas", assignment2));
    let ctx = Ctx {
        shop: ana_shop,
        account2,
        visit3,
        job3,
        template_b,
        contact: ana_contact,
        visit2,
        tomas_account,
        tomas_account2,
        tomas_contact,
        job2,
        assignment2,
        tomas_response,
        list,
        product,
        template,
        template_v2,
    };

    // Records in every status each machine reaches from a device.
    let mut records: Vec<(RecordKind, Option<&'static str>, RecordId)> = Vec::new();
    let ana = &u.ana;
    let (mona, tomas) = (&u.mona, &u.tomas);
    for &status in VisitStatus::ALL {
        let id = create_stateful(&w, ana, &planned("ana", ana_shop));
        let site = Site {
            coords: None,
            radius_m: 100.0,
        };
        let check_in = |d: &mut RecordDoc| {
            visit::check_in(d, &ana.actor, today(9), None, site).expect("in");
        };
        match status {
            VisitStatus::Planned => {}
            VisitStatus::InProgress => step(&w, ana, id, check_in),
            VisitStatus::Completed => {
                step(&w, ana, id, check_in);
                step(&w, ana, id, |d| {
                    visit::check_out(d, &ana.actor, today(10), None, site, VisitOutcome::NoOrder)
                        .expect("out");
                });
            }
            VisitStatus::Cancelled => step(&w, ana, id, |d| {
                d.transition::<Visit>(
                    &ana.actor,
                    &reason(VisitStatus::Cancelled, today(8)),
                    |_| {},
                )
                .expect("cancel");
            }),
            VisitStatus::Missed => step(&w, mona, id, |d| {
                d.transition::<Visit>(
                    &mona.actor,
                    &TransitionRequest::new(VisitStatus::Missed, today(8)),
                    |_| {},
                )
                .expect("missed");
            }),
        }
        records.push((RecordKind::Visit, Some(status.as_str()), id));
    }
    for &status in ReportStatus::ALL {
        let mut r = VisitReport::new(w.meta("ana"), ctx.visit2);
        r.summary = "Fine.".into();
        let id = create_stateful(&w, ana, &r);
        if status != ReportStatus::Draft {
            step(&w, ana, id, |d| {
                report::submit(d, &ana.actor, today(11)).expect("submit");
            });
        }
        match status {
            ReportStatus::Approved => step(&w, mona, id, |d| {
                report::approve(d, &mona.actor, today(12), None).expect("approve");
            }),
            ReportStatus::ChangesRequested => step(&w, mona, id, |d| {
                report::request_changes(d, &mona.actor, today(12), "more").expect("request");
            }),
            _ => {}
        }
        records.push((RecordKind::VisitReport, Some(status.as_str()), id));
    }
    let mut unreached: Vec<String> = Vec::new();
    for &status in OrderStatus::ALL {
        let mut o = Order::new(w.meta("ana"), ana_shop, "EUR");
        if matches!(
            status,
            OrderStatus::PendingApproval | OrderStatus::Confirmed | OrderStatus::Fulfilled
        ) {
            o.price_list_id = Some(ctx.list);
        }
        o.lines.insert(
            RecordId::new(),
            OrderLine {
                discount_percent_bp: (status == OrderStatus::PendingApproval).then_some(5_000),
                ..OrderLine::new(ctx.product, Qty::units(1), Money::new(1_000, "EUR"))
            },
        );
        if status == OrderStatus::Submitted {
            unreached.push(format!("order {status}"));
            continue;
        }
        let id = create_stateful(&w, ana, &o);
        let submit = |d: &mut RecordDoc| {
            order::submit(d, &ana.actor, today(11)).expect("submit");
        };
        match status {
            OrderStatus::Draft => {}
            OrderStatus::PendingApproval | OrderStatus::Confirmed => step(&w, ana, id, submit),
            OrderStatus::Fulfilled => {
                step(&w, ana, id, submit);
                let adam = &u.adam;
                step(&w, adam, id, |d| {
                    d.transition::<Order>(
                        &adam.actor,
                        &TransitionRequest::new(OrderStatus::Fulfilled, today(12)),
                        |_| {},
                    )
                    .expect("fulfil");
                });
            }
            OrderStatus::Rejected => {
                step(&w, ana, id, submit);
                step(&w, mona, id, |d| {
                    d.transition::<Order>(
                        &mona.actor,
                        &reason(OrderStatus::Rejected, today(12)),
                        |_| {},
                    )
                    .expect("reject");
                });
            }
            OrderStatus::Cancelled => step(&w, ana, id, |d| {
                d.transition::<Order>(
                    &ana.actor,
                    &TransitionRequest::new(OrderStatus::Cancelled, today(12)),
                    |_| {},
                )
                .expect("cancel");
            }),
            _ => unreachable!(),
        }
        let held = w.server_doc(id).expect("order");
        assert_eq!(held.status::<OrderStatus>().expect("status"), status);
        records.push((RecordKind::Order, Some(status.as_str()), id));
    }
    for &status in JobStatus::ALL {
        if status == JobStatus::Closed {
            unreached.push(format!("service_job {status}"));
            continue;
        }
        let id = create_stateful(&w, mona, &job_of(ctx.tomas_account));
        let move_to = |by: &Device, to: JobStatus| {
            step(&w, by, id, |d| {
                d.transition::<ServiceJob>(&by.actor, &reason(to, today(12)), |_| {})
                    .expect("job step");
            });
        };
        match status {
            JobStatus::Open => {}
            JobStatus::Scheduled => move_to(mona, JobStatus::Scheduled),
            JobStatus::InProgress => move_to(tomas, JobStatus::InProgress),
            JobStatus::Completed => {
                move_to(tomas, JobStatus::InProgress);
                move_to(tomas, JobStatus::Completed);
            }
            JobStatus::Cancelled => move_to(mona, JobStatus::Cancelled),
            JobStatus::Closed => unreachable!(),
        }
        records.push((RecordKind::ServiceJob, Some(status.as_str()), id));
    }
    use AssignmentStatus as A;
    for &status in A::ALL {
        // With one time entry, to approve.
        let mut a = Assignment::new(w.meta("tomas"), ctx.job2, today(10), today(11));
        a.time_entries.insert(
            RecordId::new(),
            TimeEntry {
                kind: TimeKind::Travel,
                start: today(9),
                end: Some(today(10)),
                approval: Approval::Pending,
                note: None,
            },
        );
        let id = create_stateful(&w, mona, &a);
        let path: &[(A, bool)] = match status {
            A::Scheduled => &[],
            A::Dispatched => &[(A::Dispatched, true)],
            A::Accepted => &[(A::Dispatched, true), (A::Accepted, false)],
            A::Rejected => &[(A::Dispatched, true), (A::Rejected, false)],
            A::Traveling => &[
                (A::Dispatched, true),
                (A::Accepted, false),
                (A::Traveling, false),
            ],
            A::OnSite => &[
                (A::Dispatched, true),
                (A::Accepted, false),
                (A::OnSite, false),
            ],
            A::InProgress => &[
                (A::Dispatched, true),
                (A::Accepted, false),
                (A::OnSite, false),
                (A::InProgress, false),
            ],
            A::OnBreak => &[
                (A::Dispatched, true),
                (A::Accepted, false),
                (A::OnSite, false),
                (A::InProgress, false),
                (A::OnBreak, false),
            ],
            A::Completed => &[
                (A::Dispatched, true),
                (A::Accepted, false),
                (A::OnSite, false),
                (A::InProgress, false),
                (A::Completed, false),
            ],
            A::CannotComplete => &[
                (A::Dispatched, true),
                (A::Accepted, false),
                (A::OnSite, false),
                (A::CannotComplete, false),
            ],
            A::Cancelled => &[(A::Cancelled, true)],
        };
        for (to, office) in path {
            let by = if *office { mona } else { tomas };
            step(&w, by, id, |d| {
                assignment::advance(d, &by.actor, *to, today(10), None, Some("because".into()))
                    .expect("assignment step");
            });
        }
        records.push((RecordKind::Assignment, Some(status.as_str()), id));
    }
    // The plain kinds: one record per owner.
    records.push((
        RecordKind::Account,
        None,
        create(&w, ana, &account("ana", "Plain")),
    ));
    records.push((
        RecordKind::Account,
        None,
        create(&w, tomas, &account("tomas", "Plain")),
    ));
    records.push((
        RecordKind::Contact,
        None,
        create(&w, ana, &contact("ana", ana_shop)),
    ));
    records.push((
        RecordKind::Contact,
        None,
        create(&w, tomas, &contact("tomas", ctx.tomas_account)),
    ));
    records.push((
        RecordKind::ChecklistResponse,
        None,
        create(&w, ana, &response_of("ana", ctx.visit2)),
    ));
    records.push((RecordKind::ChecklistResponse, None, ctx.tomas_response));
    records.push((
        RecordKind::Product,
        None,
        create(
            &w,
            mona,
            &Product {
                meta: w.meta("mona"),
                sku: "Q".into(),
                name: "Valve".into(),
                unit: "pcs".into(),
                serialized: false,
                spare_part: false,
                active: true,
            },
        ),
    ));
    records.push((
        RecordKind::PriceList,
        None,
        create(
            &w,
            mona,
            &PriceList {
                territory_default: false,
                meta: w.meta("mona"),
                name: "Empty".into(),
                currency: "EUR".into(),
                items: BTreeMap::new(),
            },
        ),
    ));
    // A published version: its phase plays the part of a status (a draft
    // would not stay one: publishing it is one of the writes).
    records.push((
        RecordKind::ChecklistTemplate,
        Some("published"),
        create(&w, mona, &template_of(3)),
    ));

    // The matrix.
    let mut checks = 0usize;
    let mut by_op: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut wrong: Vec<String> = Vec::new();
    for (kind, status, id) in &records {
        let owner = w.server_doc(*id).expect("record").to_json().expect("json")["meta"]["owner"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut fields: Vec<String> = oracle
            .keys()
            .filter(|(k, _)| k == kind.as_str())
            .map(|(_, f)| f.clone())
            .collect();
        // A customer's signature locks what it covers for field users (the
        // rule beside the table), so it is written after everything else.
        fields.sort_by_key(|f| (f == "signature", f == "deleted"));
        for role in ROLES {
            let dev = u.by_role(role);
            let own = dev.person.id.to_string() == owner;
            // Reps and technicians write only records they may read (the
            // scope rules): their own, and the territory's catalogue and
            // customers (every user here works in one territory); the table
            // speaks of the records they may read.
            let readable = match role {
                "rep" | "technician" => own || kind.is_territory_wide(),
                _ => true,
            };
            for field in &fields {
                let Some(edit) = mutation(*kind, field, &ctx, dev.person.id) else {
                    panic!("no mutation for {kind}.{field}");
                };
                let copy = w.server_doc(*id).expect("copy");
                let out = dev.push_forged(copy, |d| edit(d));
                let want = readable && expected(&oracle, *kind, field, role, *status);
                let got = matches!(out, PushOutcome::Accepted { .. });
                checks += 1;
                let op = if field == "deleted" {
                    "tombstone"
                } else {
                    "edit"
                };
                let e = by_op.entry(op).or_default();
                if got {
                    e.0 += 1;
                } else {
                    e.1 += 1;
                }
                if want != got {
                    let out = match out {
                        PushOutcome::Rejected(r) => format!("{:?}: {}", r.code, r.message),
                        other => format!("{other:?}"),
                    };
                    wrong.push(format!(
                        "{role} {} {kind}.{field} in {}: expected {}, got {out}",
                        if own { "(own)" } else { "" },
                        status.unwrap_or("-"),
                        if want { "accept" } else { "refusal" },
                    ));
                }
            }
        }
    }
    eprintln!(
        "write matrix on {backend:?}: {checks} checks over {} records, {} roles; \
         by operation (accepted, refused): {by_op:?}; unexpected: {}; \
         not reachable from a device: {}",
        records.len(),
        ROLES.len(),
        wrong.len(),
        unreached.join(", ")
    );
    assert!(checks > 1_500, "{checks} checks");
    assert!(
        wrong.is_empty(),
        "unexpected outcomes:\n{}",
        wrong.join("\n")
    );
}

type Edit = Box<dyn FnOnce(&mut RecordDoc)>;

fn other<T: PartialEq + Copy>(now: T, a: T, b: T) -> T {
    if now == a { b } else { a }
}

fn toggle<T: PartialEq + Copy>(now: Option<T>, value: T) -> Option<T> {
    if now.is_some() { None } else { Some(value) }
}

fn later(now: Option<DeviceTime>, from: DeviceTime) -> Option<DeviceTime> {
    Some(DeviceTime::utc(now.map_or(from.at_ms, |t| t.at_ms + 1)))
}

fn signature(at: DeviceTime, seed: &str) -> fieldsync_core::model::SignatureRef {
    let hex: String = seed.chars().filter(char::is_ascii_hexdigit).collect();
    fieldsync_core::model::SignatureRef {
        signer_name: "Rosa".into(),
        signer_role: None,
        at,
        gps: None,
        image_sha256: "a".repeat(64),
        document_sha256: hex.repeat(3)[..64].to_owned(),
        rendering_version: 1,
    }
}

/// A valid new value for one field, always different from the current one,
/// as an edit of the server's copy.
fn mutation(kind: RecordKind, field: &str, ctx: &Ctx, writer: UserId) -> Option<Edit> {
    let at = today(13);
    if field == "time_entries.*.approval" {
        return Some(Box::new(move |d: &mut RecordDoc| {
            d.update::<Assignment>(at, |a| {
                if let Some(e) = a.time_entries.values_mut().next() {
                    e.approval = other(e.approval, Approval::Approved, Approval::Rejected);
                }
            })
            .expect("a valid edit");
        }));
    }
    if field == "deleted" {
        return Some(Box::new(|d: &mut RecordDoc| {
            let now = d.is_deleted();
            d.automerge()
                .put(ROOT, "deleted", ScalarValue::Boolean(!now))
                .expect("put");
            d.automerge().commit();
        }));
    }
    let (shop, account2, contact) = (ctx.shop, ctx.account2, ctx.contact);
    let (visit2, visit3, list, product) = (ctx.visit2, ctx.visit3, ctx.list, ctx.product);
    let (tomas_account, tomas_account2, tomas_contact) =
        (ctx.tomas_account, ctx.tomas_account2, ctx.tomas_contact);
    let (job2, job3, assignment2, tomas_response) =
        (ctx.job2, ctx.job3, ctx.assignment2, ctx.tomas_response);
    let (template, template_b, template_v2) = (ctx.template, ctx.template_b, ctx.template_v2);
    let n = uuid::Uuid::now_v7().simple().to_string();
    macro_rules! edit {
        ($ty:ty, |$r:ident| $body:expr) => {
            Some(Box::new(move |d: &mut RecordDoc| {
                d.update::<$ty>(at, |$r| {
                    $body;
                })
                .expect("a valid edit");
            }) as Edit)
        };
    }
    match (kind, field) {
        (RecordKind::Visit, "account_id") => edit!(Visit, |v| v.account_id =
            other(v.account_id, account2, shop)),
        (RecordKind::Visit, "location_id") => {
            edit!(Visit, |v| v.location_id = Some(RecordId::new()))
        }
        (RecordKind::Visit, "contact_id") => {
            edit!(Visit, |v| v.contact_id = toggle(v.contact_id, contact))
        }
        (RecordKind::Visit, "visit_type") => edit!(Visit, |v| v.visit_type = n.clone()),
        (RecordKind::Visit, "planned") => edit!(Visit, |v| v.planned = !v.planned),
        (RecordKind::Visit, "planned_start") => edit!(Visit, |v| {
            if let Some(s) = &mut v.planned_start {
                s.at_ms -= 60_000;
            }
        }),
        (RecordKind::Visit, "planned_end") => edit!(Visit, |v| {
            if let Some(e) = &mut v.planned_end {
                e.at_ms += 60_000;
            }
        }),
        (RecordKind::Visit, "instructions") => edit!(Visit, |v| v.instructions = Some(n.clone())),
        (RecordKind::Visit, "check_in") => edit!(Visit, |v| {
            let mut p = CheckPoint::record(at, None, None, 100.0);
            p.at = match (&v.check_in, &v.check_out) {
                (_, Some(out)) => DeviceTime::utc(out.at.at_ms - 1 - (n.len() as i64 % 7)),
                (Some(i), None) => DeviceTime::utc(i.at.at_ms + 1),
                (None, None) => at,
            };
            if v.check_in.as_ref().is_some_and(|i| i.at == p.at) {
                p.at.at_ms -= 1;
            }
            v.check_in = Some(p)
        }),
        (RecordKind::Visit, "check_out") => edit!(Visit, |v| {
            let mut p = CheckPoint::record(at, None, None, 100.0);
            p.at = later(v.check_out.as_ref().map(|c| c.at), at).unwrap_or(at);
            v.check_out = Some(p)
        }),
        (RecordKind::Visit, "outcome") => edit!(Visit, |v| {
            v.outcome = Some(
                other(
                    v.outcome,
                    Some(VisitOutcome::FollowUp),
                    Some(VisitOutcome::Closed),
                )
                .unwrap_or(VisitOutcome::FollowUp),
            )
        }),
        (RecordKind::Visit, "notes") => edit!(Visit, |v| v.notes.push('x')),
        (RecordKind::Visit, "next_visit_date") => {
            edit!(Visit, |v| v.next_visit_date = Some(n.clone()))
        }
        (RecordKind::Visit, "order_ids") => edit!(Visit, |v| {
            v.order_ids.insert(RecordId::new(), true);
        }),
        (RecordKind::Visit, "checklist_response_ids") => edit!(Visit, |v| {
            v.checklist_response_ids.insert(RecordId::new(), true);
        }),
        (RecordKind::VisitReport, "visit_id") => edit!(VisitReport, |r| r.visit_id =
            other(r.visit_id, visit2, visit3)),
        (RecordKind::VisitReport, "summary") => edit!(VisitReport, |r| r.summary.push('x')),
        (RecordKind::VisitReport, "observations") => {
            edit!(VisitReport, |r| r.observations.push('x'))
        }
        (RecordKind::VisitReport, "kpis") => edit!(VisitReport, |r| {
            r.kpis.insert(
                n.clone(),
                KpiValue {
                    target: Some(1.0),
                    actual: Some(2.0),
                    unit: "u".into(),
                },
            );
        }),
        (RecordKind::VisitReport, "content_hash") => {
            edit!(VisitReport, |r| r.content_hash = Some(n.clone()))
        }
        (RecordKind::VisitReport, "reviewer") => {
            edit!(VisitReport, |r| r.reviewer = toggle(r.reviewer, writer))
        }
        (RecordKind::VisitReport, "decided_at") => {
            edit!(VisitReport, |r| r.decided_at = later(r.decided_at, at))
        }
        (RecordKind::VisitReport, "comments") => edit!(VisitReport, |r| {
            r.comments.insert(
                RecordId::new(),
                ReviewComment {
                    by: writer,
                    at,
                    text: "see".into(),
                },
            );
        }),
        (RecordKind::Order, "account_id") => edit!(Order, |o| o.account_id =
            other(o.account_id, account2, shop)),
        (RecordKind::Order, "ship_to") => edit!(Order, |o| o.ship_to = Some(RecordId::new())),
        (RecordKind::Order, "visit_id") => edit!(Order, |o| o.visit_id =
            Some(other(o.visit_id.unwrap_or(visit3), visit2, visit3))),
        (RecordKind::Order, "price_list_id") => {
            edit!(Order, |o| o.price_list_id = toggle(o.price_list_id, list))
        }
        (RecordKind::Order, "currency") => edit!(Order, |o| {
            let next = if o.currency == "EUR" { "USD" } else { "EUR" };
            o.currency = next.into();
            for l in o.lines.values_mut() {
                l.unit_price.currency = next.into();
            }
        }),
        (RecordKind::Order, "delivery_date") => edit!(Order, |o| o.delivery_date = Some(n.clone())),
        (RecordKind::Order, "lines") => edit!(Order, |o| {
            let currency = o.currency.clone();
            o.lines.insert(
                RecordId::new(),
                OrderLine::new(product, Qty::units(1), Money::new(1_000, &currency)),
            );
        }),
        (RecordKind::Order, "signature") => edit!(Order, |o| o.signature = Some(signature(at, &n))),
        (RecordKind::Order, "notes") => edit!(Order, |o| o.notes = Some(n.clone())),
        (RecordKind::ServiceJob, "account_id") => edit!(ServiceJob, |j| j.account_id =
            other(j.account_id, tomas_account2, tomas_account)),
        (RecordKind::ServiceJob, "location_id") => {
            edit!(ServiceJob, |j| j.location_id = Some(RecordId::new()))
        }
        (RecordKind::ServiceJob, "contact_id") => edit!(ServiceJob, |j| j.contact_id =
            toggle(j.contact_id, tomas_contact)),
        (RecordKind::ServiceJob, "asset") => edit!(ServiceJob, |j| j.asset = Some(n.clone())),
        (RecordKind::ServiceJob, "job_type") => edit!(ServiceJob, |j| j.job_type = n.clone()),
        (RecordKind::ServiceJob, "priority") => edit!(ServiceJob, |j| j.priority =
            other(j.priority, Priority::High, Priority::Low)),
        (RecordKind::ServiceJob, "description") => edit!(ServiceJob, |j| j.description.push('x')),
        (RecordKind::ServiceJob, "request_window_start") => edit!(ServiceJob, |j| j
            .request_window_start =
            later(j.request_window_start, at)),
        (RecordKind::ServiceJob, "request_window_end") => {
            edit!(ServiceJob, |j| j.request_window_end = later(
                j.request_window_end,
                DeviceTime::utc(at.at_ms + 1_000_000_000)
            ))
        }
        (RecordKind::ServiceJob, "sla_due") => {
            edit!(ServiceJob, |j| j.sla_due = later(j.sla_due, at))
        }
        (RecordKind::ServiceJob, "requires_checklist") => edit!(ServiceJob, |j| {
            // A required checklist names its template (the same cells).
            j.requires_checklist = !j.requires_checklist;
            if j.checklist_template_id.is_none() {
                j.checklist_template_id = Some(template);
            }
        }),
        (RecordKind::ServiceJob, "checklist_template_id") => {
            edit!(ServiceJob, |j| j.checklist_template_id = Some(other(
                j.checklist_template_id.unwrap_or(template_b),
                template,
                template_b
            )))
        }
        (RecordKind::ServiceJob, "requires_signature") => {
            edit!(ServiceJob, |j| j.requires_signature = !j.requires_signature)
        }
        (RecordKind::ServiceJob, "first_arrived_at") => edit!(ServiceJob, |j| j.first_arrived_at =
            later(j.first_arrived_at, at)),
        (RecordKind::ServiceJob, "completed_at") => {
            edit!(ServiceJob, |j| j.completed_at = later(j.completed_at, at))
        }
        (RecordKind::ServiceJob, "closed_at") => {
            edit!(ServiceJob, |j| j.closed_at = later(j.closed_at, at))
        }
        (RecordKind::ServiceJob, "resolution") => {
            edit!(ServiceJob, |j| j.resolution = Some(n.clone()))
        }
        (RecordKind::ServiceJob, "first_time_fix") => edit!(ServiceJob, |j| j.first_time_fix =
            Some(!j.first_time_fix.unwrap_or(false))),
        (RecordKind::Assignment, "job_id") => {
            edit!(Assignment, |a| a.job_id = other(a.job_id, job3, job2))
        }
        (RecordKind::Assignment, "scheduled_start") => {
            edit!(Assignment, |a| a.scheduled_start.at_ms -= 60_000)
        }
        (RecordKind::Assignment, "scheduled_end") => {
            edit!(Assignment, |a| a.scheduled_end.at_ms += 60_000)
        }
        (RecordKind::Assignment, "arrival_window_start") => edit!(Assignment, |a| {
            let start = a.scheduled_start;
            a.arrival_window_start = Some(DeviceTime::utc(
                a.arrival_window_start.map_or(start.at_ms, |t| t.at_ms + 1),
            ))
        }),
        (RecordKind::Assignment, "arrival_window_end") => edit!(Assignment, |a| {
            let end = a.scheduled_end;
            a.arrival_window_end = Some(DeviceTime::utc(
                a.arrival_window_end.map_or(end.at_ms, |t| t.at_ms - 1),
            ))
        }),
        (RecordKind::Assignment, "requires_checklist") => {
            edit!(Assignment, |a| a.requires_checklist = !a.requires_checklist)
        }
        (RecordKind::Assignment, "requires_signature") => {
            edit!(Assignment, |a| a.requires_signature = !a.requires_signature)
        }
        (RecordKind::Assignment, "travel_started") => edit!(Assignment, |a| a.travel_started =
            Some(assignment::Stamp {
                at: later(a.travel_started.map(|s| s.at), at).unwrap_or(at),
                gps: None
            })),
        (RecordKind::Assignment, "arrived") => edit!(Assignment, |a| a.arrived =
            Some(assignment::Stamp {
                at: later(a.arrived.map(|s| s.at), at).unwrap_or(at),
                gps: None
            })),
        (RecordKind::Assignment, "work_started") => edit!(Assignment, |a| a.work_started =
            Some(assignment::Stamp {
                at: later(a.work_started.map(|s| s.at), at).unwrap_or(at),
                gps: None
            })),
        (RecordKind::Assignment, "work_ended") => edit!(Assignment, |a| a.work_ended =
            Some(assignment::Stamp {
                at: later(a.work_ended.map(|s| s.at), at).unwrap_or(at),
                gps: None
            })),
        (RecordKind::Assignment, "parts") => edit!(Assignment, |a| {
            a.parts.insert(
                RecordId::new(),
                PartUsed {
                    product_id: product,
                    qty: Qty::units(1),
                    van_stock_id: None,
                    serial: None,
                    billable: true,
                    at,
                },
            );
        }),
        (RecordKind::Assignment, "time_entries") => edit!(Assignment, |a| {
            a.time_entries.insert(
                RecordId::new(),
                TimeEntry {
                    kind: TimeKind::Work,
                    start: at,
                    end: Some(DeviceTime::utc(at.at_ms + 60_000)),
                    approval: Approval::Pending,
                    note: None,
                },
            );
        }),
        (RecordKind::Assignment, "checklist_response_id") => edit!(Assignment, |a| a
            .checklist_response_id =
            toggle(a.checklist_response_id, tomas_response)),
        (RecordKind::Assignment, "checklist_complete") => {
            edit!(Assignment, |a| a.checklist_complete = !a.checklist_complete)
        }
        (RecordKind::Assignment, "signature") => {
            edit!(Assignment, |a| a.signature = Some(signature(at, &n)))
        }
        (RecordKind::ChecklistResponse, "template_id") => edit!(ChecklistResponse, |r| {
            // Another template of the same version.
            r.template_id = match r.template_version {
                1 => other(r.template_id, template, template_b),
                _ => r.template_id,
            };
            if r.template_version != 1 {
                r.template_id = template;
                r.template_version = 1;
            }
        }),
        (RecordKind::ChecklistResponse, "template_version") => edit!(ChecklistResponse, |r| {
            // The version follows its template: both change together.
            if r.template_version == 1 {
                r.template_version = 2;
                r.template_id = template_v2;
            } else {
                r.template_version = 1;
                r.template_id = template;
            }
        }),
        (RecordKind::ChecklistResponse, "subject_id") => edit!(ChecklistResponse, |r| {
            r.subject_id = match r.subject_id {
                s if s == visit2 => visit3,
                s if s == visit3 => visit2,
                s if s == assignment2 => job2,
                _ => assignment2,
            }
        }),
        (RecordKind::ChecklistResponse, "answers") => edit!(ChecklistResponse, |r| {
            let yes = r
                .answers
                .get("q")
                .is_some_and(|a| a.value == AnswerValue::YesNo(true));
            r.answers.insert(
                "q".into(),
                Answer {
                    value: AnswerValue::YesNo(!yes),
                    at,
                    by: writer,
                },
            );
        }),
        (RecordKind::ChecklistResponse, "completed") => {
            edit!(ChecklistResponse, |r| r.completed = !r.completed)
        }
        (RecordKind::Account, "code") => edit!(Account, |a| a.code = Some(format!("C-{n}"))),
        (RecordKind::Account, "name") => edit!(Account, |a| a.name.push('x')),
        (RecordKind::Account, "account_type") => edit!(Account, |a| a.account_type.push('x')),
        (RecordKind::Account, "account_status") => edit!(Account, |a| a.account_status.push('x')),
        (RecordKind::Account, "price_list_id") => {
            edit!(Account, |a| a.price_list_id = toggle(a.price_list_id, list))
        }
        (RecordKind::Account, "visit_frequency_days") => edit!(Account, |a| a
            .visit_frequency_days =
            Some(a.visit_frequency_days.unwrap_or(0) + 1)),
        (RecordKind::Account, "locations") => edit!(Account, |a| {
            a.locations.insert(
                RecordId::new(),
                Location {
                    name: "Back".into(),
                    address: String::new(),
                    coords: None,
                    geofence_radius_m: 50.0,
                    opening_hours: None,
                },
            );
        }),
        (RecordKind::Contact, "account_id") => edit!(Contact, |c| {
            c.account_id = match c.account_id {
                a if a == tomas_account => tomas_account2,
                a if a == tomas_account2 => tomas_account,
                a => other(a, shop, account2),
            }
        }),
        (RecordKind::Contact, "name") => edit!(Contact, |c| c.name.push('x')),
        (RecordKind::Contact, "role") => edit!(Contact, |c| c.role = Some(n.clone())),
        (RecordKind::Contact, "phone") => edit!(Contact, |c| c.phone = Some(n.clone())),
        (RecordKind::Contact, "email") => edit!(Contact, |c| c.email = Some(format!("{n}@x.test"))),
        (RecordKind::Contact, "marketing_consent") => {
            edit!(Contact, |c| c.marketing_consent = !c.marketing_consent)
        }
        (RecordKind::Contact, "consent") => edit!(Contact, |c| {
            c.consent = Some(fieldsync_core::model::Consent {
                status: fieldsync_core::model::ConsentStatus::Granted,
                at,
                how: format!("form {n}"),
            })
        }),
        (RecordKind::Product, "sku") => edit!(Product, |p| p.sku.push('x')),
        (RecordKind::Product, "name") => edit!(Product, |p| p.name.push('x')),
        (RecordKind::Product, "unit") => edit!(Product, |p| p.unit.push('x')),
        (RecordKind::Product, "serialized") => edit!(Product, |p| p.serialized = !p.serialized),
        (RecordKind::Product, "spare_part") => edit!(Product, |p| p.spare_part = !p.spare_part),
        (RecordKind::Product, "active") => edit!(Product, |p| p.active = !p.active),
        (RecordKind::PriceList, "name") => edit!(PriceList, |p| p.name.push('x')),
        (RecordKind::PriceList, "territory_default") => {
            edit!(PriceList, |p| p.territory_default = !p.territory_default)
        }
        (RecordKind::PriceList, "currency") => edit!(PriceList, |p| {
            // Its items follow (the same cells).
            p.currency = if p.currency == "EUR" {
                "USD".into()
            } else {
                "EUR".into()
            };
            for item in p.items.values_mut() {
                item.unit_price.currency = p.currency.clone();
            }
        }),
        (RecordKind::PriceList, "items") => edit!(PriceList, |p| {
            // Emptied and filled in turn, so a change of currency stays valid.
            if p.items.is_empty() {
                let currency = p.currency.clone();
                p.items.insert(
                    RecordId::new(),
                    PriceItem {
                        unit_price: Money::new(5, &currency),
                        max_discount_bp: 0,
                    },
                );
            } else {
                p.items.clear();
            }
        }),
        (RecordKind::ChecklistTemplate, "name") => edit!(ChecklistTemplate, |t| t.name.push('x')),
        (RecordKind::ChecklistTemplate, "version") => edit!(ChecklistTemplate, |t| t.version += 1),
        (RecordKind::ChecklistTemplate, "published") => edit!(ChecklistTemplate, |t| {
            t.published = !t.published;
            // Only a published version is retired.
            t.retired &= t.published;
        }),
        (RecordKind::ChecklistTemplate, "family") => {
            edit!(ChecklistTemplate, |t| t.family = Some(t.meta.id))
        }
        (RecordKind::ChecklistTemplate, "supersedes") => edit!(ChecklistTemplate, |t| {
            t.supersedes = Some(template);
            t.family = Some(template);
        }),
        (RecordKind::ChecklistTemplate, "retired") => {
            edit!(ChecklistTemplate, |t| t.retired = !t.retired)
        }
        (RecordKind::ChecklistTemplate, "questions") => edit!(ChecklistTemplate, |t| {
            t.questions.insert(
                n.clone(),
                Question {
                    position: 9,
                    text: "More?".into(),
                    kind: QuestionKind::Text,
                    choices: Vec::new(),
                    required: false,
                    show_if: None,
                },
            );
        }),
        _ => None,
    }
}
