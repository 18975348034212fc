//! `fieldsync demo`: a demo organisation a newcomer can log in to at once.
//!
//! It seeds team "Lisbon North" with a manager, three reps and two technicians,
//! a catalogue, accounts with geocoded sites, a week of visits around today
//! (past ones checked in and out, with reports submitted for review and orders
//! taken; future ones planned) and service jobs with assignments in several
//! states. Every record is made the way a device would make it, by the user who
//! would make it, and goes through the same load / decide / write path as a
//! device's push (`db::records::apply_push` deciding with
//! `domain::push::decide_all`), so the demo data is valid by construction.
//!
//! The seeder runs from the command line, before or without a running node: it
//! takes the database alone, not a node's [`Context`](super::Context), so no
//! live note or push metric is produced (none was before: it had no hub). It
//! writes one organisation nobody else writes to, one batch at a time, so it
//! needs neither the SQLite write gate nor the retry of racing pushes.
//!
//! Its password is printed and documented, so `fieldsync serve` refuses to
//! start while an organisation still lets its demo logins in with it
//! ([`open_demo_orgs`]) unless it runs with `--demo`.

use fieldsync_core::automerge::ActorId;
use fieldsync_core::model::visit::{self, Site, Visit, VisitOutcome};
use fieldsync_core::model::{
    Account, Actor, AssignmentStatus, DeviceTime, GeoPoint, Location, Money, Order, OrderLine,
    PartUsed, PriceItem, PriceList, Priority, Product, Qty, RecordDoc, RecordMeta, Role,
    ServiceJob, TimeEntry, TimeKind, VisitReport, assignment, order, report,
};
use fieldsync_core::model::{Approval, Assignment};
use fieldsync_core::protocol::RecordChanges;
use fieldsync_core::{OrgId, RecordId, TeamId, TerritoryId, UserId};
use serde_bytes::ByteBuf;

use super::accounts::{self, NewUser};
use crate::db::{Database, records};
use crate::domain::Caller;
use crate::domain::push;

/// The password of every demo user.
pub const DEMO_PASSWORD: &str = "fieldsync-demo";

/// A demo login, for printing.
#[derive(Debug, Clone)]
pub struct DemoLogin {
    /// Role name.
    pub role: Role,
    /// Email.
    pub email: String,
    /// Name.
    pub name: String,
}

/// What the demo created.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    /// The organisation's slug.
    pub slug: String,
    /// Everyone who can log in.
    pub logins: Vec<DemoLogin>,
    /// Records created, by kind name.
    pub records: Vec<(&'static str, usize)>,
}

struct Member {
    actor: Actor,
    actor_id: ActorId,
    team: TeamId,
    name: &'static str,
}

struct Seeder<'a> {
    db: &'a Database,
    org: OrgId,
    territory: TerritoryId,
    counts: std::collections::BTreeMap<&'static str, usize>,
    /// Every account made, to give service jobs to.
    accounts: Vec<RecordId>,
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Places in Lisbon the accounts sit at (lat, lng).
const PLACES: [(&str, f64, f64); 9] = [
    ("Mercearia Lopes", 38.7139, -9.1394),
    ("Padaria Central", 38.7169, -9.1399),
    ("Café Rio", 38.7075, -9.1364),
    ("Drogaria Norte", 38.7369, -9.1427),
    ("Supermercado Vale", 38.7436, -9.1602),
    ("Quiosque Sol", 38.7223, -9.1393),
    ("Tabacaria Lis", 38.7107, -9.1421),
    ("Hotel Avenida", 38.7200, -9.1450),
    ("Clínica Estrela", 38.7127, -9.1600),
];

fn ms_now() -> i64 {
    DeviceTime::now_utc().at_ms
}

impl Seeder<'_> {
    fn meta(&self, owner: &Member) -> RecordMeta {
        RecordMeta {
            id: RecordId::new(),
            org: self.org,
            owner: owner.actor.user,
            team: owner.team,
            territory: self.territory,
        }
    }

    /// The caller `by` pushes as: on no device, with their own actor.
    fn caller(&self, by: &Member) -> Caller {
        Caller {
            actor: by.actor.clone(),
            org: self.org,
            team: Some(by.team),
            territory: Some(self.territory),
            display_name: by.name.to_owned(),
            actor_id: by.actor_id.clone(),
            window: None,
        }
    }

    /// Stores changes made by `by` through the push path; a refused record is
    /// a bug in the seeder.
    async fn push(&self, by: &Member, records: &[RecordChanges]) -> anyhow::Result<()> {
        let caller = self.caller(by);
        let records = push::dedupe(records);
        let applied =
            records::apply_push(self.db, &caller, uuid::Uuid::now_v7(), &records, |loaded| {
                push::decide_all(
                    &caller,
                    &records,
                    loaded,
                    &[],
                    &[],
                    std::time::Duration::MAX,
                )
            })
            .await?;
        for (id, outcome) in applied.results {
            if let Err(rejection) = outcome {
                anyhow::bail!("demo record {id} was refused: {}", rejection.message);
            }
        }
        Ok(())
    }

    /// Stores documents made by `by` through the push path.
    async fn save(&mut self, by: &Member, docs: Vec<RecordDoc>) -> anyhow::Result<()> {
        let records = docs
            .into_iter()
            .map(|mut doc| {
                let changes = doc
                    .automerge()
                    .get_changes(&[])
                    .iter()
                    .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
                    .collect();
                RecordChanges {
                    id: doc.id(),
                    kind: doc.kind(),
                    changes,
                }
            })
            .collect::<Vec<_>>();
        for r in &records {
            *self.counts.entry(r.kind.as_str()).or_default() += 1;
        }
        self.push(by, &records).await
    }
}

/// Most demo-shaped logins [`open_demo_orgs`] checks (each check is one
/// password hash, tens of milliseconds).
const MAX_DEMO_CHECKS: i64 = 60;

/// The slugs of organisations where a login seeded by `fieldsync demo`
/// (`<name>@<slug>.example`) still accepts the well-known [`DEMO_PASSWORD`]:
/// anyone who read the documentation can sign in there. An organisation whose
/// demo users all changed their passwords, or were removed, is not listed.
pub async fn open_demo_orgs(db: &Database) -> crate::domain::Result<Vec<String>> {
    let mut open: Vec<String> = Vec::new();
    for (slug, user) in crate::db::accounts::demo_shaped_users(db, MAX_DEMO_CHECKS).await? {
        if open.contains(&slug) {
            continue;
        }
        if accounts::verify_password(DEMO_PASSWORD.to_owned(), Some(&user)).await {
            open.push(slug);
        }
    }
    Ok(open)
}

/// Seeds the demo organisation under `slug`.
pub async fn seed(db: &Database, slug: &str) -> anyhow::Result<DemoSummary> {
    let org = accounts::create_org(db, "Fieldsync Demo", slug).await?;
    let team = accounts::ensure_team(db, org, "Lisbon North").await?;
    let territory = accounts::ensure_territory(db, org, "Lisbon").await?;
    let people = [
        ("Marta Manager", "manager", Role::Manager),
        ("Rui Rep", "rep1", Role::Rep),
        ("Sofia Rep", "rep2", Role::Rep),
        ("Tiago Rep", "rep3", Role::Rep),
        ("Hugo Technician", "tech1", Role::Technician),
        ("Inês Technician", "tech2", Role::Technician),
    ];
    let mut logins = Vec::new();
    let mut members = Vec::new();
    for (name, login, role) in people {
        let email = format!("{login}@{slug}.example");
        let id: UserId = accounts::create_user(
            db,
            NewUser {
                org,
                email: email.clone(),
                display_name: name.into(),
                role,
                team: Some(team),
                territory: Some(territory),
                password: DEMO_PASSWORD.into(),
            },
        )
        .await?;
        logins.push(DemoLogin {
            role,
            email,
            name: name.into(),
        });
        members.push(Member {
            actor: Actor::without_device(id, role),
            actor_id: ActorId::random(),
            team,
            name,
        });
    }
    let mut s = Seeder {
        db,
        org,
        territory,
        counts: Default::default(),
        accounts: Vec::new(),
    };
    let manager = &members[0];
    let reps = &members[1..4];
    let techs = &members[4..6];
    let now = ms_now();
    let today = now - now.rem_euclid(DAY_MS);

    // The catalogue, made by the manager.
    let mut products = Vec::new();
    let mut docs = Vec::new();
    for (i, (sku, name, spare)) in [
        ("OLV-500", "Olive oil 500 ml", false),
        ("COF-250", "Coffee beans 250 g", false),
        ("WAT-6", "Mineral water 6 × 1.5 l", false),
        ("FLT-01", "Water filter cartridge", true),
        ("PMP-02", "Pump seal kit", true),
    ]
    .into_iter()
    .enumerate()
    {
        let p = Product {
            meta: s.meta(manager),
            sku: sku.into(),
            name: name.into(),
            unit: "pcs".into(),
            serialized: false,
            spare_part: spare,
            active: true,
        };
        products.push((p.meta.id, 350 + 275 * i as i64));
        docs.push(RecordDoc::create(
            &p,
            manager.actor_id.clone(),
            DeviceTime::utc(now),
        )?);
    }
    // The price list every account buys on: the catalogue's prices, up to
    // 10 % discount without a manager's approval.
    let price_list = PriceList {
        territory_default: false,
        meta: s.meta(manager),
        name: "Lisbon outlets 2026".into(),
        currency: "EUR".into(),
        items: products
            .iter()
            .map(|(id, price)| {
                (
                    *id,
                    PriceItem {
                        unit_price: Money {
                            minor: *price,
                            currency: "EUR".into(),
                        },
                        max_discount_bp: 1_000,
                    },
                )
            })
            .collect(),
    };
    let price_list_id = price_list.meta.id;
    docs.push(RecordDoc::create(
        &price_list,
        manager.actor_id.clone(),
        DeviceTime::utc(now),
    )?);
    s.save(manager, docs).await?;

    // Three accounts per rep, and each rep's week of visits.
    let mut places = PLACES.iter();
    for rep in reps {
        let mut docs = Vec::new();
        let mut sites = Vec::new();
        for _ in 0..3 {
            let Some(&(name, lat, lng)) = places.next() else {
                break;
            };
            let coords = GeoPoint {
                lat,
                lng,
                accuracy_m: None,
            };
            let location_id = RecordId::new();
            let a = Account {
                meta: s.meta(rep),
                name: name.into(),
                account_type: "outlet".into(),
                account_status: "active".into(),
                code: None,
                price_list_id: None,
                visit_frequency_days: Some(7),
                locations: [(
                    location_id,
                    Location {
                        name: "Main site".into(),
                        address: format!("{name}, Lisboa"),
                        coords: Some(coords),
                        geofence_radius_m: 150.0,
                        opening_hours: Some("Mo-Sa 08:00-19:00".into()),
                    },
                )]
                .into_iter()
                .collect(),
            };
            sites.push((a.meta.id, location_id, coords));
            s.accounts.push(a.meta.id);
            docs.push(RecordDoc::create(
                &a,
                rep.actor_id.clone(),
                DeviceTime::utc(now - 30 * DAY_MS),
            )?);
        }
        s.save(rep, docs).await?;

        let mut docs = Vec::new();
        for day in -3i64..=3 {
            for (slot, (account_id, location_id, coords)) in sites.iter().enumerate() {
                let start = today + day * DAY_MS + (9 + 2 * slot as i64) * HOUR_MS;
                let mut v = Visit::planned(
                    s.meta(rep),
                    *account_id,
                    DeviceTime::utc(start),
                    DeviceTime::utc(start + HOUR_MS),
                );
                v.location_id = Some(*location_id);
                let mut doc = RecordDoc::create_stateful(
                    &v,
                    rep.actor_id.clone(),
                    &rep.actor,
                    DeviceTime::utc(start - 5 * DAY_MS),
                )?;
                if start + HOUR_MS < now {
                    let site = Site {
                        coords: Some(*coords),
                        radius_m: 150.0,
                    };
                    // Every fifth visit is checked in from across the street.
                    let offset = if (day + slot as i64) % 5 == 0 {
                        0.004
                    } else {
                        0.0002
                    };
                    let at = GeoPoint {
                        lat: coords.lat + offset,
                        lng: coords.lng,
                        accuracy_m: Some(12.0),
                    };
                    visit::check_in(
                        &mut doc,
                        &rep.actor,
                        DeviceTime::utc(start + 7 * 60_000),
                        Some(at),
                        site,
                    )?;
                    let took_order = slot != 1;
                    visit::check_out(
                        &mut doc,
                        &rep.actor,
                        DeviceTime::utc(start + 48 * 60_000),
                        Some(at),
                        site,
                        if took_order {
                            VisitOutcome::OrderTaken
                        } else {
                            VisitOutcome::NoOrder
                        },
                    )?;
                    let mut r = VisitReport::new(s.meta(rep), v.meta.id);
                    r.summary = format!("Met the buyer; shelf facing checked (day {day}).");
                    let mut rdoc = RecordDoc::create_stateful(
                        &r,
                        rep.actor_id.clone(),
                        &rep.actor,
                        DeviceTime::utc(start + 50 * 60_000),
                    )?;
                    report::submit(&mut rdoc, &rep.actor, DeviceTime::utc(start + 55 * 60_000))?;
                    docs.push(rdoc);
                    if took_order {
                        // Taken on this visit: the order names it, so the
                        // dashboard's strike rate counts it.
                        let mut o = Order::new(s.meta(rep), *account_id, "EUR");
                        o.visit_id = Some(v.meta.id);
                        // (A rep names the list on the order; only the office
                        // sets an account's.)
                        o.price_list_id = Some(price_list_id);
                        let mut odoc = RecordDoc::create_stateful(
                            &o,
                            rep.actor_id.clone(),
                            &rep.actor,
                            DeviceTime::utc(start + 20 * 60_000),
                        )?;
                        for (n, (product_id, price)) in products.iter().take(3).enumerate() {
                            order::add_line(
                                &mut odoc,
                                &rep.actor,
                                DeviceTime::utc(start + 25 * 60_000),
                                OrderLine {
                                    product_id: *product_id,
                                    qty: Qty::units(2 + n as i64 + slot as i64),
                                    unit_price: Money {
                                        minor: *price,
                                        currency: "EUR".into(),
                                    },
                                    // Now and then a rep gives more than the
                                    // list allows: that order waits for the
                                    // manager's approval.
                                    discount_percent_bp: (n == 0 && (day + slot as i64) % 4 == 0)
                                        .then_some(1_500),
                                    discount_amount_minor: None,
                                    tax_rate_bp: 2_300,
                                    description: None,
                                },
                            )?;
                        }
                        order::submit(&mut odoc, &rep.actor, DeviceTime::utc(start + 30 * 60_000))?;
                        docs.push(odoc);
                    }
                }
                docs.push(doc);
            }
        }
        s.save(rep, docs).await?;
    }

    // Service jobs on the first accounts, made by the manager, with assignments
    // the technicians work through.
    // The organisation's accounts, oldest id first: the seeder made them all.
    let mut job_accounts = s.accounts.clone();
    job_accounts.sort();
    job_accounts.truncate(4);
    let steps: [&[AssignmentStatus]; 4] = [
        &[],
        &[AssignmentStatus::Accepted],
        &[
            AssignmentStatus::Accepted,
            AssignmentStatus::Traveling,
            AssignmentStatus::OnSite,
            AssignmentStatus::InProgress,
        ],
        &[
            AssignmentStatus::Accepted,
            AssignmentStatus::Traveling,
            AssignmentStatus::OnSite,
            AssignmentStatus::InProgress,
            AssignmentStatus::Completed,
        ],
    ];
    for (i, account_id) in job_accounts.iter().enumerate() {
        let tech = &techs[i % 2];
        let start = today + (i as i64 - 1) * DAY_MS + 10 * HOUR_MS;
        let mut job = ServiceJob::new(s.meta(manager), *account_id, "repair");
        job.description = "Water filter leaking; replace the cartridge and check the pump.".into();
        job.priority = if i == 0 {
            Priority::High
        } else {
            Priority::Normal
        };
        job.sla_due = Some(DeviceTime::utc(start + 2 * DAY_MS));
        let jdoc = RecordDoc::create_stateful(
            &job,
            manager.actor_id.clone(),
            &manager.actor,
            DeviceTime::utc(start - 2 * DAY_MS),
        )?;
        let a = Assignment::new(
            s.meta(tech),
            job.meta.id,
            DeviceTime::utc(start),
            DeviceTime::utc(start + 2 * HOUR_MS),
        );
        let mut adoc = RecordDoc::create_stateful(
            &a,
            manager.actor_id.clone(),
            &manager.actor,
            DeviceTime::utc(start - 2 * DAY_MS),
        )?;
        assignment::advance(
            &mut adoc,
            &manager.actor,
            AssignmentStatus::Dispatched,
            DeviceTime::utc(start - DAY_MS),
            None,
            None,
        )?;
        s.save(manager, vec![jdoc, adoc]).await?;
        // The technician works it: a document of their own made from the stored
        // one, so their changes are theirs.
        let stored = records::readable_doc(
            db,
            &Caller {
                actor: Actor::without_device(manager.actor.user, Role::Admin),
                org,
                team: None,
                territory: None,
                display_name: manager.name.to_owned(),
                actor_id: ActorId::random(),
                window: None,
            },
            a.meta.id,
        )
        .await?
        .ok_or_else(|| anyhow::anyhow!("the demo assignment was not stored"))?;
        let mut tdoc = RecordDoc::load(&stored.1)?;
        tdoc.set_actor(tech.actor_id.clone());
        let before = tdoc.heads();
        for (n, to) in steps[i].iter().enumerate() {
            let at = DeviceTime::utc(start + n as i64 * 20 * 60_000);
            assignment::advance(&mut tdoc, &tech.actor, *to, at, None, None)?;
            if *to == AssignmentStatus::InProgress {
                assignment::add_part(
                    &mut tdoc,
                    &tech.actor,
                    at,
                    PartUsed {
                        product_id: products[3].0,
                        qty: Qty::units(1),
                        van_stock_id: None,
                        serial: None,
                        billable: true,
                        at,
                    },
                )?;
                assignment::add_time_entry(
                    &mut tdoc,
                    &tech.actor,
                    at,
                    TimeEntry {
                        kind: TimeKind::Work,
                        start: at,
                        end: Some(DeviceTime::utc(at.at_ms + 40 * 60_000)),
                        approval: Approval::Pending,
                        note: None,
                    },
                )?;
            }
        }
        if !steps[i].is_empty() {
            let changes: Vec<ByteBuf> = tdoc
                .automerge()
                .get_changes(&before)
                .iter()
                .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
                .collect();
            let records = [RecordChanges {
                id: a.meta.id,
                kind: fieldsync_core::model::RecordKind::Assignment,
                changes,
            }];
            s.push(tech, &records).await?;
        }
    }

    let mut records: Vec<(&'static str, usize)> = s.counts.into_iter().collect();
    records.sort();
    Ok(DemoSummary {
        slug: slug.to_owned(),
        logins,
        records,
    })
}
