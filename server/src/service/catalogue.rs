//! Administering the catalogue (products, price lists) and the customers
//! (accounts with their sites, contacts with consent): lists and searches,
//! one-record saves from a form, and bulk import and export of CSV files.
//! The pages (`web::catalogue`), the JSON API (`http::catalogue`) and the
//! command line (`fieldsync import|export`) call these functions.
//!
//! Every write is an ordinary Automerge change made on the administrator's
//! behalf ([`Caller::on_behalf`]) and stored through the push path, so the
//! model's rules and the push's checks apply, the change log names who did
//! it, and every device of the records' territory receives them with its
//! next sync. An import is **one** push written all or nothing
//! ([`super::write::push_all_or_nothing`]): a file with any error writes
//! nothing, and its dry run lists every error by line and column (the rules:
//! `domain::catalogue`). A save from a form is a one-row import: the same
//! checks, the same natural keys.

use std::collections::BTreeMap;
use std::time::Instant;

use fieldsync_core::model::{
    Account, Contact, Location, Money, PriceItem, PriceList, Product, Record, RecordDoc,
    RecordKind, RecordMeta,
};
use fieldsync_core::protocol::{PushOutcome, PushRequest, RecordChanges};
use fieldsync_core::{RecordId, TerritoryId};
use serde::Serialize;
use serde_bytes::ByteBuf;
use uuid::Uuid;

use super::Context;
use crate::db;
use crate::domain::catalogue::{
    self as rules, AccountRow, Administering, ContactRow, Directory, ImportKind,
    MAX_REPORTED_ERRORS, Member, PriceListRows, ProductRow, RowError, Rows,
};
use crate::domain::push::MAX_PUSH_RECORDS;
use crate::domain::{Caller, Error, Result};

/// Most records of one kind an administration page or an import reads.
pub const MAX_STORED: usize = 50_000;
/// Most rows a list answers (a search narrows it).
pub const MAX_LISTED: usize = 500;

/// What a dry run found or an import did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    /// `accounts`, `contacts`, `products` or `price-list`.
    pub kind: String,
    /// Whether this was only a check.
    pub dry_run: bool,
    /// No error: the file was imported (or would be).
    pub ok: bool,
    /// Data rows read (0 when the file itself could not be read).
    pub rows: usize,
    /// Records made new.
    pub created: usize,
    /// Stored records changed.
    pub updated: usize,
    /// Stored records the file leaves as they are.
    pub unchanged: usize,
    /// Every error, by line (at most 500 listed; `error_count` has them all).
    pub errors: Vec<RowError>,
    /// How many errors there are.
    pub error_count: usize,
    /// Time taken, milliseconds.
    pub millis: u64,
}

/// A product as the pages and the API list it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProductView {
    /// Id.
    pub id: String,
    /// SKU.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Unit.
    pub unit: String,
    /// Serial-tracked.
    pub serialized: bool,
    /// Spare part.
    pub spare_part: bool,
    /// Sold now.
    pub active: bool,
    /// Its territory's name.
    pub territory: String,
}

/// A price list's item.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PriceItemView {
    /// The product's SKU (its id when the product is not readable).
    pub sku: String,
    /// The product's name.
    pub product: String,
    /// Unit price, e.g. `12.50`.
    pub unit_price: String,
    /// Largest discount without approval, percent, e.g. `10.00`.
    pub max_discount_percent: String,
}

/// A price list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PriceListView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Currency.
    pub currency: String,
    /// Its territory's name.
    pub territory: String,
    /// How many accounts buy on it.
    pub accounts: usize,
    /// The default of its territory, for accounts without a list of their own.
    pub territory_default: bool,
    /// Items, by SKU.
    pub items: Vec<PriceItemView>,
}

/// An account's site.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SiteView {
    /// Name.
    pub name: String,
    /// Address.
    pub address: String,
    /// Latitude.
    pub lat: Option<f64>,
    /// Longitude.
    pub lng: Option<f64>,
    /// Geofence radius, metres.
    pub geofence_radius_m: f64,
}

/// An account.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AccountView {
    /// Id.
    pub id: String,
    /// Code (empty for an account made on a device and never given one).
    pub code: String,
    /// Name.
    pub name: String,
    /// Type.
    pub account_type: String,
    /// Status.
    pub account_status: String,
    /// Its price list's name.
    pub price_list: Option<String>,
    /// Target days between visits.
    pub visit_frequency_days: Option<u32>,
    /// Its owner's email.
    pub owner: String,
    /// Its territory's name.
    pub territory: String,
    /// Sites, by name.
    pub sites: Vec<SiteView>,
}

/// A contact's consent.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConsentView {
    /// `granted` or `withdrawn`.
    pub status: String,
    /// When, `YYYY-MM-DDTHH:MM:SSZ`.
    pub at: String,
    /// How it was collected.
    pub how: String,
}

/// A contact.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ContactView {
    /// Id.
    pub id: String,
    /// The account's code.
    pub account_code: String,
    /// The account's name.
    pub account: String,
    /// Name.
    pub name: String,
    /// Role.
    pub role: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// The last consent decision; `None`: never asked.
    pub consent: Option<ConsentView>,
}

/// Stored records of one kind in the caller's scope.
struct Stored<R> {
    items: Vec<(RecordDoc, R)>,
    /// Position in `items` by record id.
    by_id: BTreeMap<RecordId, usize>,
}

impl<R: Record> Stored<R> {
    async fn load(ctx: &Context, caller: &Caller) -> Result<Self> {
        let rows = db::plan::readable_of_kind(&ctx.db, caller, R::KIND, MAX_STORED + 1).await?;
        if rows.len() > MAX_STORED {
            return Err(Error::BadRequest(format!(
                "the organisation has more than {MAX_STORED} {} records: too many to administer here",
                R::KIND
            )));
        }
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            let doc = RecordDoc::load(&row.doc).map_err(stored)?;
            let value: R = doc.read().map_err(stored)?;
            items.push((doc, value));
        }
        let by_id = items
            .iter()
            .enumerate()
            .map(|(i, (_, r))| (r.meta().id, i))
            .collect();
        Ok(Stored { items, by_id })
    }

    fn find(&self, id: RecordId) -> Option<&R> {
        self.items.get(*self.by_id.get(&id)?).map(|(_, r)| r)
    }

    fn doc(&self, id: RecordId) -> Option<&RecordDoc> {
        self.items.get(*self.by_id.get(&id)?).map(|(d, _)| d)
    }
}

/// Names of the organisation's territories and emails of its users, for lists.
struct Names {
    territories: BTreeMap<TerritoryId, String>,
    users: BTreeMap<fieldsync_core::UserId, String>,
}

async fn names(ctx: &Context, caller: &Caller) -> Result<Names> {
    let territories = db::catalogue::territories(&ctx.db, caller.org)
        .await?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect();
    let users = db::catalogue::members(&ctx.db, caller.org)
        .await?
        .into_iter()
        .map(|m| (m.id, m.email))
        .collect();
    Ok(Names { territories, users })
}

impl Names {
    fn territory(&self, id: TerritoryId) -> String {
        self.territories.get(&id).cloned().unwrap_or_default()
    }
}

fn matches(query: Option<&str>, fields: &[&str]) -> bool {
    let Some(q) = query.map(str::trim).filter(|q| !q.is_empty()) else {
        return true;
    };
    let q = q.to_lowercase();
    fields.iter().any(|f| f.to_lowercase().contains(&q))
}

/// Products, by SKU, whose SKU or name contains `query`.
pub async fn products(
    ctx: &Context,
    caller: &Caller,
    query: Option<&str>,
) -> Result<Vec<ProductView>> {
    rules::may_administer(caller.role(), Administering::Reading)?;
    let names = names(ctx, caller).await?;
    let stored = Stored::<Product>::load(ctx, caller).await?;
    let mut out: Vec<ProductView> = stored
        .items
        .into_iter()
        .filter(|(_, p)| matches(query, &[&p.sku, &p.name]))
        .map(|(_, p)| ProductView {
            id: p.meta.id.to_string(),
            territory: names.territory(p.meta.territory),
            sku: p.sku,
            name: p.name,
            unit: p.unit,
            serialized: p.serialized,
            spare_part: p.spare_part,
            active: p.active,
        })
        .collect();
    out.sort_by_key(|a| a.sku.to_lowercase());
    out.truncate(MAX_LISTED);
    Ok(out)
}

/// Price lists, by name, with their items and how many accounts buy on each.
pub async fn price_lists(ctx: &Context, caller: &Caller) -> Result<Vec<PriceListView>> {
    rules::may_administer(caller.role(), Administering::Reading)?;
    let names = names(ctx, caller).await?;
    let products = Stored::<Product>::load(ctx, caller).await?;
    let accounts = Stored::<Account>::load(ctx, caller).await?;
    let lists = Stored::<PriceList>::load(ctx, caller).await?;
    let mut out: Vec<PriceListView> = lists
        .items
        .into_iter()
        .map(|(_, l)| {
            let mut items: Vec<PriceItemView> = l
                .items
                .iter()
                .map(|(pid, item)| {
                    let product = products.find(*pid);
                    PriceItemView {
                        sku: product.map_or_else(|| pid.to_string(), |p| p.sku.clone()),
                        product: product.map(|p| p.name.clone()).unwrap_or_default(),
                        unit_price: rules::format_minor(item.unit_price.minor, 2),
                        max_discount_percent: rules::format_minor(
                            i64::from(item.max_discount_bp),
                            2,
                        ),
                    }
                })
                .collect();
            items.sort_by(|a, b| a.sku.cmp(&b.sku));
            PriceListView {
                id: l.meta.id.to_string(),
                territory: names.territory(l.meta.territory),
                accounts: accounts
                    .items
                    .iter()
                    .filter(|(_, a)| a.price_list_id == Some(l.meta.id))
                    .count(),
                territory_default: l.territory_default,
                name: l.name,
                currency: l.currency,
                items,
            }
        })
        .collect();
    out.sort_by_key(|a| a.name.to_lowercase());
    Ok(out)
}

/// Accounts, by name, whose code or name contains `query`.
pub async fn accounts(
    ctx: &Context,
    caller: &Caller,
    query: Option<&str>,
) -> Result<Vec<AccountView>> {
    rules::may_administer(caller.role(), Administering::Reading)?;
    let names = names(ctx, caller).await?;
    let lists = Stored::<PriceList>::load(ctx, caller).await?;
    let stored = Stored::<Account>::load(ctx, caller).await?;
    let mut out: Vec<AccountView> = stored
        .items
        .into_iter()
        .filter(|(_, a)| matches(query, &[a.code.as_deref().unwrap_or(""), &a.name]))
        .map(|(_, a)| account_view(a, &names, &lists))
        .collect();
    out.sort_by_key(|a| a.name.to_lowercase());
    out.truncate(MAX_LISTED);
    Ok(out)
}

fn account_view(a: Account, names: &Names, lists: &Stored<PriceList>) -> AccountView {
    let mut sites: Vec<SiteView> = a
        .locations
        .values()
        .map(|l| SiteView {
            name: l.name.clone(),
            address: l.address.clone(),
            lat: l.coords.map(|c| c.lat),
            lng: l.coords.map(|c| c.lng),
            geofence_radius_m: l.geofence_radius_m,
        })
        .collect();
    sites.sort_by(|x, y| x.name.cmp(&y.name));
    AccountView {
        id: a.meta.id.to_string(),
        code: a.code.unwrap_or_default(),
        price_list: a
            .price_list_id
            .and_then(|id| lists.find(id))
            .map(|l| l.name.clone()),
        owner: names.users.get(&a.meta.owner).cloned().unwrap_or_default(),
        territory: names.territory(a.meta.territory),
        name: a.name,
        account_type: a.account_type,
        account_status: a.account_status,
        visit_frequency_days: a.visit_frequency_days,
        sites,
    }
}

/// Contacts, by account and name, whose name, email or account contains `query`.
pub async fn contacts(
    ctx: &Context,
    caller: &Caller,
    query: Option<&str>,
) -> Result<Vec<ContactView>> {
    rules::may_administer(caller.role(), Administering::Reading)?;
    let accounts = Stored::<Account>::load(ctx, caller).await?;
    let stored = Stored::<Contact>::load(ctx, caller).await?;
    let mut out: Vec<ContactView> = Vec::new();
    for (_, c) in stored.items {
        let account = accounts.find(c.account_id);
        let account_name = account.map(|a| a.name.clone()).unwrap_or_default();
        let code = account.and_then(|a| a.code.clone()).unwrap_or_default();
        if !matches(
            query,
            &[
                &c.name,
                c.email.as_deref().unwrap_or(""),
                &account_name,
                &code,
            ],
        ) {
            continue;
        }
        out.push(ContactView {
            id: c.meta.id.to_string(),
            account_code: code,
            account: account_name,
            consent: c.consent.as_ref().map(|k| ConsentView {
                status: k.status.as_str().into(),
                at: rules::format_time(k.at.at_ms),
                how: k.how.clone(),
            }),
            name: c.name,
            role: c.role,
            phone: c.phone,
            email: c.email,
        });
    }
    out.sort_by(|a, b| {
        (a.account.to_lowercase(), a.name.to_lowercase())
            .cmp(&(b.account.to_lowercase(), b.name.to_lowercase()))
    });
    out.truncate(MAX_LISTED);
    Ok(out)
}

/// What a check needs: the directory, and the stored records the rows update.
struct Loaded {
    dir: Directory,
    accounts: Stored<Account>,
    products: Stored<Product>,
    lists: Stored<PriceList>,
    contacts: Option<Stored<Contact>>,
    /// Stored contacts' positions by their key (account, lower-case name).
    contact_keys: BTreeMap<(RecordId, String), usize>,
}

async fn load(ctx: &Context, caller: &Caller, kind: ImportKind) -> Result<Loaded> {
    let members = db::catalogue::members(&ctx.db, caller.org).await?;
    let mut dir = Directory::default();
    for m in members {
        let member = Member {
            id: m.id,
            team: m.team,
            territory: m.territory,
        };
        if m.id == caller.user() {
            dir.importer = Some(member.clone());
        }
        dir.users.insert(m.email.to_lowercase(), member);
    }
    for t in db::catalogue::teams(&ctx.db, caller.org).await? {
        dir.teams.insert(t.name.to_lowercase(), t.id);
    }
    for t in db::catalogue::territories(&ctx.db, caller.org).await? {
        dir.territories.insert(t.name.to_lowercase(), t.id);
    }
    let accounts = Stored::<Account>::load(ctx, caller).await?;
    let products = Stored::<Product>::load(ctx, caller).await?;
    let lists = Stored::<PriceList>::load(ctx, caller).await?;
    for (_, a) in &accounts.items {
        if let Some(code) = &a.code {
            dir.accounts.insert(code.clone(), a.meta.id);
        }
    }
    for (_, p) in &products.items {
        dir.products.insert(p.sku.to_lowercase(), p.meta.id);
    }
    for (_, l) in &lists.items {
        dir.price_lists.insert(l.name.to_lowercase(), l.meta.id);
    }
    let contacts = if kind == ImportKind::Contacts {
        Some(Stored::<Contact>::load(ctx, caller).await?)
    } else {
        None
    };
    let contact_keys = contacts
        .iter()
        .flat_map(|c| c.items.iter().enumerate())
        .map(|(i, (_, c))| ((c.account_id, c.name.to_lowercase()), i))
        .collect();
    Ok(Loaded {
        dir,
        accounts,
        products,
        lists,
        contacts,
        contact_keys,
    })
}

/// The changes a checked file makes: one entry per record it creates or
/// changes (with the first line that names it), and how many it leaves as
/// they are.
#[derive(Default)]
struct Plan {
    records: Vec<(u64, RecordChanges)>,
    created: usize,
    updated: usize,
    unchanged: usize,
}

impl Plan {
    fn new_record<R: Record>(&mut self, line: u64, record: &R, writer: &Caller) -> Result<()> {
        let mut doc = RecordDoc::create(record, writer.actor_id.clone(), now()).map_err(refused)?;
        self.records.push((line, changes(&mut doc, &[])));
        self.created += 1;
        Ok(())
    }

    fn edit<R: Record>(
        &mut self,
        line: u64,
        doc: &RecordDoc,
        writer: &Caller,
        edit: impl FnOnce(&mut R),
    ) -> Result<()> {
        let mut doc = doc.clone();
        doc.set_actor(writer.actor_id.clone());
        let before = doc.heads();
        let made = doc
            .update_by::<R>(Some(writer.role()), now(), edit)
            .map_err(|e| line_error(line, e))?;
        if made.is_some() {
            self.records.push((line, changes(&mut doc, &before)));
            self.updated += 1;
        } else {
            self.unchanged += 1;
        }
        Ok(())
    }
}

fn line_error(line: u64, e: fieldsync_core::model::ModelError) -> Error {
    Error::BadRequest(format!("line {line}: {e}"))
}

fn now() -> fieldsync_core::model::DeviceTime {
    fieldsync_core::model::DeviceTime::now_utc()
}

fn changes(doc: &mut RecordDoc, before: &[automerge::ChangeHash]) -> RecordChanges {
    RecordChanges {
        id: doc.id(),
        kind: doc.kind(),
        changes: doc
            .automerge()
            .get_changes(before)
            .iter()
            .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
            .collect(),
    }
}

fn meta(caller: &Caller, o: &rules::Ownership) -> RecordMeta {
    RecordMeta {
        id: RecordId::new(),
        org: caller.org,
        owner: o.owner,
        team: o.team,
        territory: o.territory,
    }
}

fn reown(m: &mut RecordMeta, o: &rules::Ownership) {
    if o.owner_given {
        m.owner = o.owner;
    }
    if o.team_given {
        m.team = o.team;
    }
    if o.territory_given {
        m.territory = o.territory;
    }
}

fn find_doc<R: Record>(stored: &Stored<R>, id: RecordId) -> Option<&RecordDoc> {
    stored.doc(id)
}

/// The changes of checked rows, made as `writer` onto what is stored.
fn plan(writer: &Caller, rows: &Rows, stored: &Loaded) -> Result<Plan> {
    let mut plan = Plan::default();
    match rows {
        Rows::Products(rows) => {
            for row in rows {
                plan_product(&mut plan, writer, row, stored)?;
            }
        }
        Rows::PriceLists(lists) => {
            for list in lists {
                plan_price_list(&mut plan, writer, list, stored)?;
            }
            // One default list per territory: a new default takes the place
            // of the territory's stored one.
            for list in lists.iter().filter(|l| l.territory_default == Some(true)) {
                for (doc, other) in &stored.lists.items {
                    let in_file = lists
                        .iter()
                        .any(|l| l.name.eq_ignore_ascii_case(&other.name));
                    if other.territory_default
                        && !in_file
                        && other.meta.territory == list.ownership.territory
                    {
                        plan.edit::<PriceList>(list.line, doc, writer, |l| {
                            l.territory_default = false;
                        })?;
                    }
                }
            }
        }
        Rows::Accounts(rows) => {
            for row in rows {
                plan_account(&mut plan, writer, row, stored)?;
            }
        }
        Rows::Contacts(rows) => {
            for row in rows {
                plan_contact(&mut plan, writer, row, stored)?;
            }
        }
    }
    Ok(plan)
}

fn plan_product(plan: &mut Plan, writer: &Caller, row: &ProductRow, s: &Loaded) -> Result<()> {
    let fill = |p: &mut Product| {
        p.sku = row.sku.clone();
        p.name = row.name.clone();
        p.unit = row.unit.clone();
        p.serialized = row.serialized;
        p.spare_part = row.spare_part;
        p.active = row.active;
        reown(&mut p.meta, &row.ownership);
    };
    match s.dir.products.get(&row.sku.to_lowercase()) {
        Some(id) => {
            let doc = find_doc(&s.products, *id).ok_or_else(lost)?;
            plan.edit::<Product>(row.line, doc, writer, fill)
        }
        None => {
            let mut p = Product {
                meta: meta(writer, &row.ownership),
                sku: String::new(),
                name: String::new(),
                unit: String::new(),
                serialized: false,
                spare_part: false,
                active: true,
            };
            fill(&mut p);
            plan.new_record(row.line, &p, writer)
        }
    }
}

fn plan_price_list(
    plan: &mut Plan,
    writer: &Caller,
    list: &PriceListRows,
    s: &Loaded,
) -> Result<()> {
    let fill = |l: &mut PriceList| {
        l.name = list.name.clone();
        l.currency = list.currency.clone();
        if let Some(default) = list.territory_default {
            l.territory_default = default;
        }
        for item in &list.items {
            l.items.insert(
                item.product,
                PriceItem {
                    unit_price: Money {
                        minor: item.unit_price_minor,
                        currency: list.currency.clone(),
                    },
                    max_discount_bp: item.max_discount_bp,
                },
            );
        }
        reown(&mut l.meta, &list.ownership);
    };
    match s.dir.price_lists.get(&list.name.to_lowercase()) {
        Some(id) => {
            let doc = find_doc(&s.lists, *id).ok_or_else(lost)?;
            plan.edit::<PriceList>(list.line, doc, writer, fill)
        }
        None => {
            let mut l = PriceList {
                territory_default: false,
                meta: meta(writer, &list.ownership),
                name: String::new(),
                currency: String::new(),
                items: BTreeMap::new(),
            };
            fill(&mut l);
            plan.new_record(list.line, &l, writer)
        }
    }
}

fn plan_account(plan: &mut Plan, writer: &Caller, row: &AccountRow, s: &Loaded) -> Result<()> {
    let fill = |a: &mut Account| {
        a.code = Some(row.code.clone());
        a.name = row.name.clone();
        a.account_type = row.account_type.clone();
        a.account_status = row.account_status.clone();
        a.visit_frequency_days = row.visit_frequency_days;
        a.price_list_id = row.price_list;
        reown(&mut a.meta, &row.ownership);
        if let Some(site) = &row.site {
            let location = Location {
                name: site.name.clone(),
                address: site.address.clone(),
                coords: site.coords,
                geofence_radius_m: site.radius_m,
                opening_hours: None,
            };
            // The site of the same name is updated; another name adds a site.
            let same = a
                .locations
                .iter()
                .find(|(_, l)| l.name.eq_ignore_ascii_case(&site.name))
                .map(|(id, _)| *id);
            match same {
                Some(id) => {
                    if let Some(l) = a.locations.get_mut(&id) {
                        l.address = location.address;
                        l.coords = location.coords;
                        l.geofence_radius_m = location.geofence_radius_m;
                    }
                }
                None => {
                    a.locations.insert(RecordId::new(), location);
                }
            }
        }
    };
    match s.dir.accounts.get(&row.code) {
        Some(id) => {
            let doc = find_doc(&s.accounts, *id).ok_or_else(lost)?;
            plan.edit::<Account>(row.line, doc, writer, fill)
        }
        None => {
            let mut a = Account {
                meta: meta(writer, &row.ownership),
                code: None,
                name: String::new(),
                account_type: String::new(),
                account_status: String::new(),
                price_list_id: None,
                visit_frequency_days: None,
                locations: BTreeMap::new(),
            };
            fill(&mut a);
            plan.new_record(row.line, &a, writer)
        }
    }
}

fn plan_contact(plan: &mut Plan, writer: &Caller, row: &ContactRow, s: &Loaded) -> Result<()> {
    let account = s.accounts.find(row.account).ok_or_else(lost)?;
    let fill = |c: &mut Contact| {
        c.account_id = row.account;
        c.name = row.name.clone();
        c.role = row.role.clone();
        c.phone = row.phone.clone();
        c.email = row.email.clone();
        // An empty consent leaves the recorded one as it is.
        if let Some(consent) = &row.consent
            && c.consent.as_ref() != Some(consent)
        {
            c.record_consent(consent.clone());
        }
    };
    let existing = s.contacts.as_ref().and_then(|contacts| {
        let i = s
            .contact_keys
            .get(&(row.account, row.name.to_lowercase()))?;
        contacts.items.get(*i).map(|(d, _)| d)
    });
    match existing {
        Some(doc) => plan.edit::<Contact>(row.line, doc, writer, fill),
        None => {
            let mut c = Contact {
                // A contact belongs where its account does.
                meta: RecordMeta {
                    id: RecordId::new(),
                    ..account.meta.clone()
                },
                account_id: row.account,
                name: String::new(),
                role: None,
                phone: None,
                email: None,
                marketing_consent: false,
                consent: None,
            };
            fill(&mut c);
            plan.new_record(row.line, &c, writer)
        }
    }
}

fn lost() -> Error {
    Error::internal("a record the directory names was not loaded")
}

/// Checks `file` as a CSV file of `kind` and, unless `dry_run`, imports it:
/// all or nothing, in one push, as the caller (an administrator). A file with
/// errors answers a report listing them (`ok` false) and writes nothing.
pub async fn import(
    ctx: &Context,
    caller: &Caller,
    kind: ImportKind,
    file: &[u8],
    dry_run: bool,
) -> Result<ImportReport> {
    rules::may_administer(caller.role(), Administering::Writing)?;
    let started = Instant::now();
    let writer = caller.on_behalf();
    let stored = load(ctx, caller, kind).await?;
    let mut report = ImportReport {
        kind: kind.as_str().into(),
        dry_run,
        ok: false,
        rows: 0,
        created: 0,
        updated: 0,
        unchanged: 0,
        errors: Vec::new(),
        error_count: 0,
        millis: 0,
    };
    let rows = match rules::check(kind, file, &stored.dir) {
        Ok(rows) => rows,
        Err(errors) => return Ok(refused_report(report, errors, started)),
    };
    report.rows = rows.rows();
    let plan = plan(&writer, &rows, &stored)?;
    report.created = plan.created;
    report.updated = plan.updated;
    report.unchanged = plan.unchanged;
    if plan.records.len() > MAX_PUSH_RECORDS {
        return Ok(refused_report(
            report,
            vec![RowError {
                line: 0,
                column: String::new(),
                message: format!(
                    "the file changes {} records; one import changes at most {MAX_PUSH_RECORDS}: split it",
                    plan.records.len()
                ),
            }],
            started,
        ));
    }
    if !dry_run && !plan.records.is_empty() {
        let lines: BTreeMap<RecordId, u64> = plan.records.iter().map(|(l, r)| (r.id, *l)).collect();
        let req = PushRequest {
            batch: Uuid::now_v7(),
            records: plan.records.into_iter().map(|(_, r)| r).collect(),
            health: None,
            epochs: Vec::new(),
        };
        let pushed = super::write::push_all_or_nothing(ctx, &writer, &req).await?;
        let errors: Vec<RowError> = pushed
            .response
            .results
            .into_iter()
            .filter_map(|r| match r.outcome {
                PushOutcome::Rejected(rej) => Some(RowError {
                    line: lines.get(&r.id).copied().unwrap_or(0),
                    column: String::new(),
                    message: format!("refused by the server: {}", rej.message),
                }),
                PushOutcome::Accepted { .. } => None,
            })
            .collect();
        if !errors.is_empty() {
            return Ok(refused_report(report, errors, started));
        }
        tracing::info!(
            kind = kind.as_str(),
            created = report.created,
            updated = report.updated,
            by = %caller.user(),
            "imported a CSV file"
        );
    }
    report.ok = true;
    report.millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(report)
}

fn refused_report(
    mut report: ImportReport,
    mut errors: Vec<RowError>,
    started: Instant,
) -> ImportReport {
    report.ok = false;
    report.created = 0;
    report.updated = 0;
    report.unchanged = 0;
    report.error_count = errors.len();
    errors.truncate(MAX_REPORTED_ERRORS);
    report.errors = errors;
    report.millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report
}

/// Saves one record from a form (the pages, the JSON API): `cells` by column
/// name, as a row of a CSV file of `kind` (the same checks; the natural key
/// picks the record to update, else a new one is made). Answers the id.
pub async fn save(
    ctx: &Context,
    caller: &Caller,
    kind: ImportKind,
    cells: &BTreeMap<String, String>,
) -> Result<RecordId> {
    rules::may_administer(caller.role(), Administering::Writing)?;
    let writer = caller.on_behalf();
    let stored = load(ctx, caller, kind).await?;
    let rows = rules::check_cells(kind, cells, &stored.dir).map_err(|errors| {
        Error::BadRequest(
            errors
                .iter()
                .map(|e| format!("{}: {}", e.column, e.message))
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let plan = plan(&writer, &rows, &stored)?;
    let Some((_, record)) = plan.records.into_iter().next() else {
        // Nothing changed: answer the record the key names.
        return key_id(&rows, &stored).ok_or_else(|| Error::internal("no record saved"));
    };
    let id = record.id;
    let req = PushRequest {
        batch: Uuid::now_v7(),
        records: vec![record],
        health: None,
        epochs: Vec::new(),
    };
    let pushed = super::write::push_all_or_nothing(ctx, &writer, &req).await?;
    super::write::accepted(pushed.response)?;
    Ok(id)
}

fn key_id(rows: &Rows, s: &Loaded) -> Option<RecordId> {
    match rows {
        Rows::Products(r) => s.dir.products.get(&r.first()?.sku.to_lowercase()).copied(),
        Rows::PriceLists(r) => s
            .dir
            .price_lists
            .get(&r.first()?.name.to_lowercase())
            .copied(),
        Rows::Accounts(r) => s.dir.accounts.get(&r.first()?.code).copied(),
        Rows::Contacts(r) => {
            let row = r.first()?;
            let i = s
                .contact_keys
                .get(&(row.account, row.name.to_lowercase()))?;
            s.contacts.as_ref()?.items.get(*i).map(|(_, c)| c.meta.id)
        }
    }
}

/// The records of `kind` in the caller's scope as a CSV file of the columns
/// an import reads (so an export imports back unchanged).
pub async fn export(ctx: &Context, caller: &Caller, kind: ImportKind) -> Result<Vec<u8>> {
    rules::may_administer(caller.role(), Administering::Reading)?;
    let names = names(ctx, caller).await?;
    let teams: BTreeMap<_, _> = db::catalogue::teams(&ctx.db, caller.org)
        .await?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect();
    let team = |id| teams.get(&id).cloned().unwrap_or_default();
    let yes = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let mut rows: Vec<Vec<String>> = Vec::new();
    match kind {
        ImportKind::Products => {
            let mut stored = Stored::<Product>::load(ctx, caller).await?.items;
            stored.sort_by(|a, b| a.1.sku.cmp(&b.1.sku));
            for (_, p) in stored {
                rows.push(vec![
                    p.sku,
                    p.name,
                    p.unit,
                    yes(p.serialized),
                    yes(p.spare_part),
                    yes(p.active),
                    team(p.meta.team),
                    names.territory(p.meta.territory),
                ]);
            }
        }
        ImportKind::PriceList => {
            let products = Stored::<Product>::load(ctx, caller).await?;
            let mut lists = Stored::<PriceList>::load(ctx, caller).await?.items;
            lists.sort_by(|a, b| a.1.name.cmp(&b.1.name));
            for (_, l) in lists {
                let mut items: Vec<(String, &PriceItem)> = l
                    .items
                    .iter()
                    .filter_map(|(id, item)| Some((products.find(*id)?.sku.clone(), item)))
                    .collect();
                items.sort_by(|a, b| a.0.cmp(&b.0));
                for (sku, item) in items {
                    rows.push(vec![
                        l.name.clone(),
                        l.currency.clone(),
                        sku,
                        rules::format_minor(item.unit_price.minor, 2),
                        rules::format_minor(i64::from(item.max_discount_bp), 2),
                        yes(l.territory_default),
                        team(l.meta.team),
                        names.territory(l.meta.territory),
                    ]);
                }
            }
        }
        ImportKind::Accounts => {
            let lists = Stored::<PriceList>::load(ctx, caller).await?;
            let mut stored = Stored::<Account>::load(ctx, caller).await?.items;
            stored.sort_by(|a, b| a.1.code.cmp(&b.1.code).then(a.1.name.cmp(&b.1.name)));
            for (_, a) in stored {
                // Accounts without a code (made on a device) cannot be
                // matched on import: they are left out of the file.
                let Some(code) = a.code.clone() else { continue };
                let site = a.locations.values().next();
                rows.push(vec![
                    code,
                    a.name.clone(),
                    a.account_type.clone(),
                    a.account_status.clone(),
                    a.visit_frequency_days
                        .map(|d| d.to_string())
                        .unwrap_or_default(),
                    a.price_list_id
                        .and_then(|id| lists.find(id))
                        .map(|l| l.name.clone())
                        .unwrap_or_default(),
                    names.users.get(&a.meta.owner).cloned().unwrap_or_default(),
                    team(a.meta.team),
                    names.territory(a.meta.territory),
                    site.map(|s| s.name.clone()).unwrap_or_default(),
                    site.map(|s| s.address.clone()).unwrap_or_default(),
                    site.and_then(|s| s.coords)
                        .map(|c| c.lat.to_string())
                        .unwrap_or_default(),
                    site.and_then(|s| s.coords)
                        .map(|c| c.lng.to_string())
                        .unwrap_or_default(),
                    site.map(|s| s.geofence_radius_m.to_string())
                        .unwrap_or_default(),
                ]);
            }
        }
        ImportKind::Contacts => {
            let accounts = Stored::<Account>::load(ctx, caller).await?;
            let mut out: Vec<(String, Contact)> = Vec::new();
            for (_, c) in Stored::<Contact>::load(ctx, caller).await?.items {
                if let Some(code) = accounts.find(c.account_id).and_then(|a| a.code.clone()) {
                    out.push((code, c));
                }
            }
            out.sort_by(|a, b| (&a.0, &a.1.name).cmp(&(&b.0, &b.1.name)));
            for (code, c) in out {
                let consent = c.consent.as_ref();
                rows.push(vec![
                    code,
                    c.name.clone(),
                    c.role.clone().unwrap_or_default(),
                    c.phone.clone().unwrap_or_default(),
                    c.email.clone().unwrap_or_default(),
                    consent
                        .map(|k| k.status.as_str().to_owned())
                        .unwrap_or_default(),
                    consent
                        .map(|k| rules::format_time(k.at.at_ms))
                        .unwrap_or_default(),
                    consent.map(|k| k.how.clone()).unwrap_or_default(),
                ]);
            }
        }
    }
    rules::csv_of(kind, &rows)
}

/// The kind of records a file of `kind` holds.
pub fn record_kind(kind: ImportKind) -> RecordKind {
    match kind {
        ImportKind::Accounts => RecordKind::Account,
        ImportKind::Contacts => RecordKind::Contact,
        ImportKind::Products => RecordKind::Product,
        ImportKind::PriceList => RecordKind::PriceList,
    }
}

/// The administrator on whose behalf the command line imports and exports
/// in the organisation `org_slug`: the user `email`, else the organisation's
/// first administrator.
pub async fn operator(ctx: &Context, org_slug: &str, email: Option<&str>) -> Result<Caller> {
    let org = db::accounts::org_by_slug(&ctx.db, org_slug)
        .await?
        .ok_or_else(|| Error::BadRequest(format!("no organisation {org_slug:?}")))?;
    let email = match email {
        Some(e) => e.trim().to_lowercase(),
        None => db::catalogue::first_admin(&ctx.db, org)
            .await?
            .ok_or_else(|| {
                Error::BadRequest(format!("{org_slug:?} has no enabled administrator"))
            })?,
    };
    let user = db::accounts::find_user(&ctx.db, org, &email)
        .await?
        .ok_or_else(|| Error::BadRequest(format!("no user {email:?} in {org_slug:?}")))?;
    if user.disabled {
        return Err(Error::AccountDisabled);
    }
    rules::may_administer(user.role, Administering::Writing)?;
    Ok(Caller {
        actor: fieldsync_core::model::Actor::without_device(user.id, user.role),
        org,
        team: user.team,
        territory: user.territory,
        display_name: user.display_name,
        actor_id: crate::domain::caller::web_actor(user.id),
        window: None,
    })
}

/// A model refusal of what the caller asked.
fn refused(e: fieldsync_core::model::ModelError) -> Error {
    Error::BadRequest(e.to_string())
}

/// A stored document that does not read: the server's fault, not the caller's.
fn stored(e: fieldsync_core::model::ModelError) -> Error {
    Error::internal(format!("a stored record does not load: {e}"))
}
