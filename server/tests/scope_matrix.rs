//! Who reads and writes what: a matrix of users × records × operations across
//! two organisations, each with two teams in two territories, on SQLite and on
//! PostgreSQL.
//!
//! Every user of both organisations (a manager, a rep and a technician per
//! team, and an administrator) logs in a real device. The reps, managers and
//! technicians create their records through their devices; then, for every
//! user and every record of both organisations, the test checks four
//! operations against an oracle written here from the scope rules (not from the
//! server's code):
//!
//! - **prime**: the record is among the snapshots the user's device is primed with;
//! - **pull**: the record's changes are in the user's feed from cursor 0;
//! - **audit**: `GET /v1/records/{id}/audit` answers 200, else 404 (never 403,
//!   which would confirm the record exists);
//! - **write**: a forged edit of the record, made on the server's copy under
//!   the user's own actor id, is refused with `forbidden` and leaves the
//!   server's copy unchanged — for every record outside the user's read scope.
//!   Records inside it are written by their owners as a positive control.
//!
//! The test prints the number of checks per operation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use fieldsync_core::model::visit::Visit;
use fieldsync_core::model::{
    Account, Assignment, Contact, Location, Order, Product, RecordDoc, RecordKind, RecordMeta,
    Role, ServiceJob, VisitReport,
};
use fieldsync_core::protocol::{
    PrimeRequest, PullRequest, PushOutcome, PushRequest, RecordChanges, RejectCode,
};
use fieldsync_core::store::{DeviceStore, StoreOptions};
use fieldsync_core::sync::{
    DeviceInfo, HttpTransport, LoginRequest, LoginResponse, SyncClient, SyncOptions, Transport,
};
use fieldsync_core::{DeviceId, OrgId, RecordId, TeamId, TerritoryId, UserId, automerge};
use fieldsync_server::service::accounts::{self, NewUser};
use fieldsync_server::settings::Secret;
use fieldsync_server::{Database, SettingsArgs, on_pool};
use fieldsync_test_support::{Backend, Node, PASSWORD, today};
use serde_bytes::ByteBuf;

const SECRET: &str = "matrix-signing-key-0123456789abcdef-0123456789";

#[test]
fn on_sqlite() {
    matrix(Backend::Sqlite);
}

#[test]
fn on_postgres() {
    matrix(Backend::Postgres);
}

/// One user with a logged-in device.
struct User {
    name: String,
    role: Role,
    org: OrgId,
    team: Option<TeamId>,
    territory: Option<TerritoryId>,
    id: UserId,
    client: SyncClient<Arc<DeviceStore>, HttpTransport>,
    login: LoginResponse,
}

impl User {
    fn store(&self) -> &DeviceStore {
        self.client.store()
    }

    fn actor(&self) -> fieldsync_core::model::Actor {
        fieldsync_core::model::Actor::on_device(self.id, self.role, self.login.device.id)
    }

    fn meta(&self) -> RecordMeta {
        RecordMeta {
            id: RecordId::new(),
            org: self.org,
            owner: self.id,
            team: self.team.unwrap_or_default(),
            territory: self.territory.unwrap_or_default(),
        }
    }

    fn token(&self) -> String {
        self.client.session().expect("logged in").access_token
    }
}

/// A record of the seeded world, with what the oracle needs to know about it.
#[derive(Debug, Clone)]
struct Rec {
    id: RecordId,
    kind: RecordKind,
    org: OrgId,
    /// The owner's team (every record here is owned by a team member).
    team: TeamId,
    territory: TerritoryId,
    owner: UserId,
    /// Whose device made every change of it (the feed leaves a device's own out).
    writer: UserId,
    /// Who else may read it through references: the users granted it.
    granted: BTreeSet<UserId>,
}

/// The oracle: may `u` read `r`, by the rules of the scope (see `ARCHITECTURE.md`
/// and the server's scope module): administrators read their organisation;
/// managers their team's records; everyone the catalogue and the customers of
/// their territory; reps and technicians what they own and what their records
/// refer to.
fn may_read(u: &User, r: &Rec) -> bool {
    if u.org != r.org {
        return false;
    }
    let territory_wide = matches!(
        r.kind,
        RecordKind::Product
            | RecordKind::PriceList
            | RecordKind::ChecklistTemplate
            | RecordKind::Account
            | RecordKind::Contact
    );
    if territory_wide && u.territory == Some(r.territory) {
        return true;
    }
    match u.role {
        Role::Admin | Role::Server => true,
        Role::Manager => u.team == Some(r.team) || r.owner == u.id,
        Role::Rep | Role::Technician => r.owner == u.id || r.granted.contains(&u.id),
    }
}

fn matrix(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let database_url = backend.database_url();
    let settings = SettingsArgs {
        data_dir: Some(dir.path().join("data")),
        database_url,
        jwt_secret: Some(Secret::new(SECRET)),
        db_max_connections: Some(8),
        ..SettingsArgs::default()
    }
    .resolve()
    .expect("settings");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let db = rt
        .block_on(fieldsync_server::open_database(&settings))
        .expect("open and migrate");
    let node = Node::start(rt.handle(), settings);
    let base = node.base.clone();

    // Two organisations; each has teams North (territory A) and South (territory B).
    let mut users: Vec<User> = Vec::new();
    for slug in ["acme", "globex"] {
        let people = rt.block_on(async {
            let org = accounts::create_org(&db, slug, slug).await.expect("org");
            let mut people = Vec::new();
            for (team_name, territory_name) in [("north", "a"), ("south", "b")] {
                let team = accounts::ensure_team(&db, org, team_name)
                    .await
                    .expect("team");
                let territory = accounts::ensure_territory(&db, org, territory_name)
                    .await
                    .expect("territory");
                for role in [Role::Manager, Role::Rep, Role::Technician] {
                    let name = format!("{}-{team_name}-{}", slug, role.as_str());
                    people.push((name, role, org, Some(team), Some(territory)));
                }
            }
            // A South rep who works North's territory: reads its catalogue and
            // customers, and nothing else of North's.
            let (south, north_territory) = (people[3].3, people[0].4);
            people.push((
                format!("{slug}-south-roamer"),
                Role::Rep,
                org,
                south,
                north_territory,
            ));
            people.push((format!("{slug}-admin"), Role::Admin, org, None, None));
            let mut out = Vec::new();
            for (name, role, org, team, territory) in people {
                let id = accounts::create_user(
                    &db,
                    NewUser {
                        org,
                        email: format!("{name}@{slug}.test"),
                        display_name: name.clone(),
                        role,
                        team,
                        territory,
                        password: PASSWORD.into(),
                    },
                )
                .await
                .expect("user");
                out.push((name, role, org, team, territory, id));
            }
            out
        });
        for (name, role, org, team, territory, id) in people {
            let path = dir.path().join(format!("{name}.db"));
            let store = Arc::new(DeviceStore::open(&path, StoreOptions::default()).expect("store"));
            let client = SyncClient::new(
                store,
                HttpTransport::new(&base, Duration::from_secs(30)),
                SyncOptions::default(),
            );
            let login = client
                .login(&LoginRequest {
                    org: slug.into(),
                    email: format!("{name}@{slug}.test"),
                    password: PASSWORD.into(),
                    device: DeviceInfo {
                        id: DeviceId::new(),
                        platform: "test".into(),
                        app_version: "1.0.0".into(),
                    },
                })
                .expect("login");
            users.push(User {
                name,
                role,
                org,
                team,
                territory,
                id,
                client,
                login,
            });
        }
    }
    let by_name = |name: &str| -> &User {
        users
            .iter()
            .find(|u| u.name == name)
            .unwrap_or_else(|| panic!("no user {name}"))
    };

    // The records: per team, the rep's account, contact, visit, order and visit
    // report; the manager's product for the territory and service job on the
    // rep's account, assigned to the team's technician.
    let mut recs: Vec<Rec> = Vec::new();
    for slug in ["acme", "globex"] {
        for team in ["north", "south"] {
            let rep = by_name(&format!("{slug}-{team}-rep"));
            let manager = by_name(&format!("{slug}-{team}-manager"));
            let tech = by_name(&format!("{slug}-{team}-technician"));
            let rec = |id, kind, owner: &User, writer: &User, granted: &[&User]| Rec {
                id,
                kind,
                org: owner.org,
                team: owner.team.expect("team member"),
                territory: owner.territory.expect("team member"),
                owner: owner.id,
                writer: writer.id,
                granted: granted.iter().map(|u| u.id).collect(),
            };
            let account = Account {
                meta: rep.meta(),
                name: format!("{slug} {team} customer"),
                account_type: "outlet".into(),
                account_status: "active".into(),
                code: None,
                price_list_id: None,
                visit_frequency_days: None,
                locations: [(
                    RecordId::new(),
                    Location {
                        name: "Main".into(),
                        address: "Rua 1".into(),
                        coords: None,
                        geofence_radius_m: 100.0,
                        opening_hours: None,
                    },
                )]
                .into_iter()
                .collect(),
            };
            let account_id = rep.store().create(&account, today(8)).expect("account");
            let contact = Contact {
                meta: rep.meta(),
                account_id,
                name: "Buyer".into(),
                role: None,
                phone: None,
                email: Some("buyer@example.test".into()),
                marketing_consent: false,
                consent: None,
            };
            let contact_id = rep.store().create(&contact, today(8)).expect("contact");
            let visit = Visit::planned(rep.meta(), account_id, today(10), today(11));
            let visit_id = rep
                .store()
                .create_stateful(&visit, &rep.actor(), today(8))
                .expect("visit");
            let mut order = Order::new(rep.meta(), account_id, "EUR");
            order.visit_id = Some(visit_id);
            let order_id = rep
                .store()
                .create_stateful(&order, &rep.actor(), today(10))
                .expect("order");
            let report_id = rep
                .store()
                .create_stateful(
                    &VisitReport::new(rep.meta(), visit_id),
                    &rep.actor(),
                    today(11),
                )
                .expect("report");
            rep.client
                .sync(&fieldsync_core::sync::NoProgress)
                .expect("rep sync");

            let product = Product {
                meta: manager.meta(),
                sku: format!("SKU-{slug}-{team}"),
                name: "Filter cartridge".into(),
                unit: "each".into(),
                serialized: false,
                spare_part: true,
                active: true,
            };
            let product_id = manager.store().create(&product, today(7)).expect("product");
            // The manager reads the rep's account (same team) and opens a job on it.
            manager
                .client
                .sync(&fieldsync_core::sync::NoProgress)
                .expect("manager sync");
            let job = ServiceJob::new(manager.meta(), account_id, "repair");
            let job_id = manager
                .store()
                .create_stateful(&job, &manager.actor(), today(9))
                .expect("job");
            let assignment = Assignment::new(tech.meta(), job_id, today(13), today(15));
            let assignment_id = manager
                .store()
                .create_stateful(&assignment, &manager.actor(), today(9))
                .expect("assignment");
            manager
                .client
                .sync(&fieldsync_core::sync::NoProgress)
                .expect("manager sync");

            // The technician is granted the job, its account and the account's contact.
            recs.push(rec(account_id, RecordKind::Account, rep, rep, &[tech]));
            recs.push(rec(contact_id, RecordKind::Contact, rep, rep, &[tech]));
            recs.push(rec(visit_id, RecordKind::Visit, rep, rep, &[]));
            recs.push(rec(order_id, RecordKind::Order, rep, rep, &[]));
            recs.push(rec(report_id, RecordKind::VisitReport, rep, rep, &[]));
            recs.push(rec(product_id, RecordKind::Product, manager, manager, &[]));
            recs.push(rec(
                job_id,
                RecordKind::ServiceJob,
                manager,
                manager,
                &[tech],
            ));
            recs.push(rec(
                assignment_id,
                RecordKind::Assignment,
                tech,
                manager,
                &[],
            ));
        }
    }
    assert_eq!(users.len(), 16);
    assert_eq!(recs.len(), 32);

    let mut checks: BTreeMap<&str, usize> = BTreeMap::new();
    let mut readable_pairs = 0;
    for u in &users {
        let transport = u.client.transport();
        let token = u.token();
        // Prime: every page.
        let mut primed: BTreeSet<RecordId> = BTreeSet::new();
        let mut req = PrimeRequest {
            after: None,
            cursor: None,
            max_records: 7,
        };
        loop {
            let page = transport.prime(&token, &req).expect("prime");
            primed.extend(page.snapshots.iter().map(|s| s.id));
            match page.next {
                Some(next) => {
                    req.after = Some(next);
                    req.cursor = Some(page.cursor);
                }
                None => break,
            }
        }
        // Pull from the start of the feed: every page.
        let mut pulled: BTreeSet<RecordId> = BTreeSet::new();
        let mut cursor = 0;
        loop {
            let page = transport
                .pull(
                    &token,
                    &PullRequest {
                        log: None,
                        history: None,
                        cursor,
                        max_changes: 50,
                        window: None,
                        health: None,
                    },
                )
                .expect("pull");
            pulled.extend(page.records.iter().map(|r| r.id));
            if !page.more {
                break;
            }
            cursor = page.next_cursor;
        }
        for r in &recs {
            let expected = may_read(u, r);
            readable_pairs += usize::from(expected);
            assert_eq!(
                primed.contains(&r.id),
                expected,
                "prime: {} reading {:?} {} of another's",
                u.name,
                r.kind,
                r.id
            );
            *checks.entry("prime").or_default() += 1;
            // The feed leaves out the device's own changes: its own records are
            // on it already. Everything else readable must come.
            if r.writer != u.id {
                assert_eq!(
                    pulled.contains(&r.id),
                    expected,
                    "pull: {} reading {:?} {}",
                    u.name,
                    r.kind,
                    r.id
                );
                *checks.entry("pull").or_default() += 1;
            }
            let status = audit_status(&base, &token, r.id);
            assert_eq!(
                status,
                if expected { 200 } else { 404 },
                "audit: {} reading {:?} {}",
                u.name,
                r.kind,
                r.id
            );
            *checks.entry("audit").or_default() += 1;
            if !expected {
                forged_edit_is_refused(&rt, &db, u, r);
                *checks.entry("write").or_default() += 1;
            }
        }
    }
    // Positive controls for writes: each rep edits their own visit.
    for slug in ["acme", "globex"] {
        for team in ["north", "south"] {
            let rep = by_name(&format!("{slug}-{team}-rep"));
            let visit = recs
                .iter()
                .find(|r| r.owner == rep.id && r.kind == RecordKind::Visit)
                .expect("the rep's visit");
            rep.store()
                .update::<Visit>(visit.id, today(12), |v| v.notes = "owner's edit".into())
                .expect("edit");
            let report = rep
                .client
                .sync(&fieldsync_core::sync::NoProgress)
                .expect("sync");
            assert_eq!((report.pushed, report.rejected), (1, 0), "{report:?}");
            *checks.entry("write (owner, accepted)").or_default() += 1;
        }
    }
    let total: usize = checks.values().sum();
    println!(
        "scope matrix: {} users x {} records; {readable_pairs} readable pairs; checks {checks:?}; {total} in all",
        users.len(),
        recs.len()
    );
    assert_eq!(checks["prime"], 16 * 32);
    assert_eq!(checks["audit"], 16 * 32);
    assert_eq!(checks["write"], 16 * 32 - readable_pairs);

    node.stop();
    rt.block_on(db.close());
}

fn audit_status(base: &str, token: &str, id: RecordId) -> u16 {
    match ureq::get(&format!("{base}/v1/records/{id}/audit"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
    {
        Ok(resp) => resp.status().as_u16(),
        Err(ureq::Error::StatusCode(code)) => code,
        Err(e) => panic!("audit request failed: {e}"),
    }
}

fn server_copy(rt: &tokio::runtime::Runtime, db: &Database, id: RecordId) -> Vec<u8> {
    rt.block_on(async {
        on_pool!(db, |pool, uuid| {
            sqlx::query_scalar::<_, Vec<u8>>("SELECT doc FROM records WHERE id = $1")
                .bind(uuid(*id.as_uuid()))
                .fetch_one(pool)
                .await
                .expect("server copy")
        })
    })
}

/// Edits the server's copy of `r` under `u`'s actor id, pushes the change as
/// `u`, and checks it is refused and nothing changed.
fn forged_edit_is_refused(rt: &tokio::runtime::Runtime, db: &Database, u: &User, r: &Rec) {
    let before = server_copy(rt, db, r.id);
    let mut doc = RecordDoc::load(&before).expect("load");
    let actor = automerge::ActorId::from(hex::decode(&u.login.device.actor_id).expect("hex"));
    doc.set_actor(actor);
    let heads = doc.heads();
    {
        use automerge::transaction::Transactable;
        doc.automerge()
            .put(automerge::ROOT, "deleted", true)
            .expect("edit");
    }
    let changes: Vec<ByteBuf> = doc
        .automerge()
        .get_changes(&heads)
        .iter()
        .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
        .collect();
    assert!(!changes.is_empty());
    let resp = u
        .client
        .transport()
        .push(
            &u.token(),
            &PushRequest {
                batch: uuid::Uuid::now_v7(),
                records: vec![RecordChanges {
                    id: r.id,
                    kind: r.kind,
                    changes,
                }],
                health: None,
                epochs: Vec::new(),
            },
        )
        .expect("push answered");
    match &resp.results[..] {
        [result] => match &result.outcome {
            PushOutcome::Rejected(rejection) => {
                assert_eq!(
                    rejection.code,
                    RejectCode::Forbidden,
                    "{} writing {:?}",
                    u.name,
                    r.kind
                );
                assert!(
                    rejection.server_doc.is_none(),
                    "nothing of an out-of-scope record is returned"
                );
            }
            PushOutcome::Accepted { .. } => {
                panic!("{} wrote {:?} {} outside their scope", u.name, r.kind, r.id)
            }
        },
        other => panic!("one result expected, got {other:?}"),
    }
    assert_eq!(
        server_copy(rt, db, r.id),
        before,
        "the server's copy is unchanged"
    );
}
