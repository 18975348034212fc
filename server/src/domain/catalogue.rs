//! Master data administration: who may change the catalogue (products,
//! price lists) and the customers (accounts, contacts), and the CSV files
//! they are imported from and exported to. Pure: the service reads the
//! organisation's people and records, this module checks a file against them
//! and answers typed rows or every error by line and column.
//!
//! One file holds one kind. Re-importing a file updates what it names by a
//! natural key instead of duplicating it: an account by its `code`, a product
//! by its `sku`, a price list by its `price_list` name (its items by `sku`),
//! a contact by its account's code and its `name`. Columns that are left
//! empty take a default (see [`columns`]); a column missing from the header is
//! an error only when it is required, so a file with just `sku,name` imports
//! products.

use std::collections::BTreeMap;

use fieldsync_core::model::{Consent, ConsentStatus, DeviceTime, GeoPoint, Role};
use fieldsync_core::{RecordId, TeamId, TerritoryId, UserId};

use super::figures::dates::{DAY_MS, days_from_civil};
use super::{Error, Result};

/// Largest CSV file one import reads.
pub const MAX_IMPORT_BYTES: usize = 4 * 1024 * 1024;
/// Most data rows of an accounts, contacts or products file: one import is
/// one push, written all or nothing (`domain::push::MAX_PUSH_RECORDS`).
pub const MAX_RECORD_ROWS: usize = super::push::MAX_PUSH_RECORDS;
/// Most data rows of a price-list file (items, over at most
/// [`MAX_RECORD_ROWS`] lists).
pub const MAX_ITEM_ROWS: usize = 20_000;
/// Most items on one price list (a list is one document, at most 1 MiB).
pub const MAX_LIST_ITEMS: usize = 5_000;
/// Most errors a report lists (the count says how many there were).
pub const MAX_REPORTED_ERRORS: usize = 500;
/// Longest text cell.
pub const MAX_CELL_CHARS: usize = 500;
/// Geofence radius of an imported site when the file gives none, metres.
pub const DEFAULT_RADIUS_M: f64 = 100.0;

/// What a caller does to master data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Administering {
    /// Lists, searches, exports.
    Reading,
    /// Creates, edits, imports.
    Writing,
}

/// Whether `role` may do `what` to the catalogue and the customers: the
/// back office reads, administrators (and the server) write.
pub fn may_administer(role: Role, what: Administering) -> Result<()> {
    match (role, what) {
        (Role::Admin | Role::Server, _) | (Role::Manager, Administering::Reading) => Ok(()),
        (Role::Manager, Administering::Writing) => Err(Error::Forbidden(
            "the catalogue and the customers are changed by administrators".into(),
        )),
        _ => Err(Error::Forbidden(
            "the catalogue and the customers are administered in the back office".into(),
        )),
    }
}

/// The kinds a CSV file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ImportKind {
    /// Accounts with one site each.
    Accounts,
    /// Contacts at accounts, with consent.
    Contacts,
    /// Products.
    Products,
    /// Price lists, one item a row.
    PriceList,
}

impl ImportKind {
    /// Every kind, in the order a fresh organisation imports them.
    pub const ALL: [ImportKind; 4] = [
        ImportKind::Products,
        ImportKind::PriceList,
        ImportKind::Accounts,
        ImportKind::Contacts,
    ];

    /// The name in addresses and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ImportKind::Accounts => "accounts",
            ImportKind::Contacts => "contacts",
            ImportKind::Products => "products",
            ImportKind::PriceList => "price-list",
        }
    }

    /// Most data rows of a file of this kind.
    pub fn max_rows(self) -> usize {
        match self {
            ImportKind::PriceList => MAX_ITEM_ROWS,
            _ => MAX_RECORD_ROWS,
        }
    }
}

impl std::str::FromStr for ImportKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "accounts" => Ok(ImportKind::Accounts),
            "contacts" => Ok(ImportKind::Contacts),
            "products" => Ok(ImportKind::Products),
            "price-list" | "price-lists" | "price_list" => Ok(ImportKind::PriceList),
            other => Err(Error::BadRequest(format!(
                "{other:?} is not a kind of import: accounts, contacts, products or price-list"
            ))),
        }
    }
}

/// One column of a file: its header, whether it is required, and what it holds.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// The header.
    pub name: &'static str,
    /// Must be in the header and filled on every row.
    pub required: bool,
    /// What it holds (the docs' table and the import page show it).
    pub help: &'static str,
}

const fn col(name: &'static str, required: bool, help: &'static str) -> Column {
    Column {
        name,
        required,
        help,
    }
}

const OWNERSHIP: [Column; 2] = [
    col(
        "team",
        false,
        "team name; empty: the owner's (else the importer's, else the only team)",
    ),
    col(
        "territory",
        false,
        "territory name; empty: the owner's (else the importer's, else the only territory). \
         Everyone in the territory reads the record",
    ),
];

const ACCOUNT_COLUMNS: &[Column] = &[
    col(
        "code",
        true,
        "the account's code (unique in the organisation): the key a re-import updates by",
    ),
    col("name", true, "display name"),
    col(
        "account_type",
        false,
        "e.g. outlet, distributor; empty: customer",
    ),
    col(
        "account_status",
        false,
        "active, prospect or inactive; empty: active",
    ),
    col(
        "visit_frequency_days",
        false,
        "target days between visits, 1 to 365",
    ),
    col("price_list", false, "name of an existing price list"),
    col(
        "owner",
        false,
        "email of the account manager; empty: the importer",
    ),
    OWNERSHIP[0],
    OWNERSHIP[1],
    col("location_name", false, "the site's name; empty: Main site"),
    col("address", false, "the site's postal address, one line"),
    col("lat", false, "latitude in degrees (with lng)"),
    col("lng", false, "longitude in degrees (with lat)"),
    col(
        "geofence_radius_m",
        false,
        "check-in radius in metres; empty: 100",
    ),
];

const CONTACT_COLUMNS: &[Column] = &[
    col(
        "account_code",
        true,
        "the code of an existing account; the contact gets its owner, team and territory",
    ),
    col(
        "name",
        true,
        "full name: with the account, the key a re-import updates by",
    ),
    col("role", false, "role at the customer, e.g. buyer"),
    col("phone", false, "phone number"),
    col("email", false, "email address"),
    col("consent", false, "granted or withdrawn; empty: not asked"),
    col(
        "consent_at",
        false,
        "when consent was given or withdrawn: YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ",
    ),
    col(
        "consent_how",
        false,
        "how it was collected, e.g. signed form (required with consent)",
    ),
];

const PRODUCT_COLUMNS: &[Column] = &[
    col(
        "sku",
        true,
        "stock-keeping unit (unique in the organisation): the key a re-import updates by",
    ),
    col("name", true, "name"),
    col("unit", false, "e.g. pcs, kg; empty: pcs"),
    col(
        "serialized",
        false,
        "yes or no: tracked by serial number; empty: no",
    ),
    col(
        "spare_part",
        false,
        "yes or no: a spare part for service jobs; empty: no",
    ),
    col("active", false, "yes or no: sold now; empty: yes"),
    OWNERSHIP[0],
    OWNERSHIP[1],
];

const PRICE_LIST_COLUMNS: &[Column] = &[
    col(
        "price_list",
        true,
        "the list's name (unique in the organisation): the key a re-import updates by",
    ),
    col(
        "currency",
        true,
        "ISO 4217 code, e.g. EUR; the same on every row of a list",
    ),
    col("sku", true, "an existing product's SKU, once per list"),
    col(
        "unit_price",
        true,
        "price per unit, e.g. 12.50 (two decimals at most)",
    ),
    col(
        "max_discount_percent",
        false,
        "largest discount a rep gives without approval, 0 to 100; empty: 0",
    ),
    col(
        "territory_default",
        false,
        "yes: the list of its territory for accounts without one of their own (one per \
         territory); empty: as it is (no for a new list)",
    ),
    OWNERSHIP[0],
    OWNERSHIP[1],
];

/// The columns of a file of `kind`, in the order an export writes them.
pub fn columns(kind: ImportKind) -> &'static [Column] {
    match kind {
        ImportKind::Accounts => ACCOUNT_COLUMNS,
        ImportKind::Contacts => CONTACT_COLUMNS,
        ImportKind::Products => PRODUCT_COLUMNS,
        ImportKind::PriceList => PRICE_LIST_COLUMNS,
    }
}

/// One error of a file: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct RowError {
    /// The line in the file (the header is line 1).
    pub line: u64,
    /// The column's header; empty for the whole line.
    pub column: String,
    /// What is wrong, and how to fix it.
    pub message: String,
}

fn err(line: u64, column: &str, message: impl Into<String>) -> RowError {
    RowError {
        line,
        column: column.to_owned(),
        message: message.into(),
    }
}

/// A user as the import resolves owners.
#[derive(Debug, Clone)]
pub struct Member {
    /// Id.
    pub id: UserId,
    /// Team.
    pub team: Option<TeamId>,
    /// Territory.
    pub territory: Option<TerritoryId>,
}

/// What a file is checked against: the organisation's people, teams and
/// territories, and the records that natural keys name.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    /// The importer.
    pub importer: Option<Member>,
    /// Enabled users by lower-case email.
    pub users: BTreeMap<String, Member>,
    /// Teams by lower-case name.
    pub teams: BTreeMap<String, TeamId>,
    /// Territories by lower-case name.
    pub territories: BTreeMap<String, TerritoryId>,
    /// Stored accounts by code.
    pub accounts: BTreeMap<String, RecordId>,
    /// Stored products by SKU (lower-case).
    pub products: BTreeMap<String, RecordId>,
    /// Stored price lists by lower-case name.
    pub price_lists: BTreeMap<String, RecordId>,
}

/// Where an imported record belongs. A record the import updates keeps its
/// owner, team and territory unless the row names them (`*_given`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    /// Owner.
    pub owner: UserId,
    /// Team.
    pub team: TeamId,
    /// Territory.
    pub territory: TerritoryId,
    /// The row names the owner.
    pub owner_given: bool,
    /// The row names the team.
    pub team_given: bool,
    /// The row names the territory.
    pub territory_given: bool,
}

/// An account's site from a row.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteRow {
    /// Name.
    pub name: String,
    /// Address.
    pub address: String,
    /// Position.
    pub coords: Option<GeoPoint>,
    /// Geofence radius, metres.
    pub radius_m: f64,
}

/// An account row.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountRow {
    /// Line.
    pub line: u64,
    /// Code (the key).
    pub code: String,
    /// Name.
    pub name: String,
    /// Type.
    pub account_type: String,
    /// Status.
    pub account_status: String,
    /// Visit frequency.
    pub visit_frequency_days: Option<u32>,
    /// Price list.
    pub price_list: Option<RecordId>,
    /// Ownership.
    pub ownership: Ownership,
    /// The site, when the row names one.
    pub site: Option<SiteRow>,
}

/// A contact row.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactRow {
    /// Line.
    pub line: u64,
    /// The account's code.
    pub account_code: String,
    /// The account.
    pub account: RecordId,
    /// Name (with the account, the key).
    pub name: String,
    /// Role.
    pub role: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Consent, when the row records one.
    pub consent: Option<Consent>,
}

/// A product row.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductRow {
    /// Line.
    pub line: u64,
    /// SKU (the key).
    pub sku: String,
    /// Name.
    pub name: String,
    /// Unit.
    pub unit: String,
    /// Serial-tracked.
    pub serialized: bool,
    /// Spare part.
    pub spare_part: bool,
    /// Active.
    pub active: bool,
    /// Team and territory (owner: the importer).
    pub ownership: Ownership,
}

/// A price list item row.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRow {
    /// Line.
    pub line: u64,
    /// The product.
    pub product: RecordId,
    /// Unit price, minor units.
    pub unit_price_minor: i64,
    /// Largest discount, basis points.
    pub max_discount_bp: u32,
}

/// A price list gathered from its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceListRows {
    /// The first line naming it.
    pub line: u64,
    /// Name (the key).
    pub name: String,
    /// Currency.
    pub currency: String,
    /// Team and territory (owner: the importer).
    pub ownership: Ownership,
    /// Whether it is its territory's default (`None`: as it is).
    pub territory_default: Option<bool>,
    /// Items, in file order.
    pub items: Vec<ItemRow>,
}

/// A checked file.
#[derive(Debug, Clone, PartialEq)]
pub enum Rows {
    /// Accounts.
    Accounts(Vec<AccountRow>),
    /// Contacts.
    Contacts(Vec<ContactRow>),
    /// Products.
    Products(Vec<ProductRow>),
    /// Price lists.
    PriceLists(Vec<PriceListRows>),
}

impl Rows {
    /// How many data rows the file holds (a price list's items each a row).
    pub fn rows(&self) -> usize {
        match self {
            Rows::PriceLists(lists) => lists.iter().map(|l| l.items.len()).sum(),
            other => other.records(),
        }
    }

    /// How many records the file makes or updates.
    pub fn records(&self) -> usize {
        match self {
            Rows::Accounts(r) => r.len(),
            Rows::Contacts(r) => r.len(),
            Rows::Products(r) => r.len(),
            Rows::PriceLists(r) => r.len(),
        }
    }
}

/// A file's data rows as read: line and cells by column name.
struct Table {
    rows: Vec<(u64, BTreeMap<&'static str, String>)>,
}

/// Reads a CSV file of `kind`: the header (known columns, every required
/// one), then each row (as many cells as the header, within the limits).
/// Every problem is listed; `Err` holds them all.
fn read_table(kind: ImportKind, bytes: &[u8]) -> std::result::Result<Table, Vec<RowError>> {
    if bytes.len() > MAX_IMPORT_BYTES {
        return Err(vec![err(
            0,
            "",
            format!(
                "the file has {} bytes; an import reads at most {} MiB: split it",
                bytes.len(),
                MAX_IMPORT_BYTES / 1_048_576
            ),
        )]);
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(false)
        .from_reader(bytes);
    let known = columns(kind);
    let mut errors = Vec::new();
    let mut records = reader.byte_records();
    let header = match records.next() {
        None => {
            return Err(vec![err(
                1,
                "",
                "the file is empty: it needs a header line",
            )]);
        }
        Some(Err(e)) => return Err(vec![err(1, "", format!("the header cannot be read: {e}"))]),
        Some(Ok(h)) => h,
    };
    let mut index: Vec<Option<&'static str>> = Vec::with_capacity(header.len());
    for cell in header.iter() {
        let name = String::from_utf8_lossy(cell).trim().to_ascii_lowercase();
        match known.iter().find(|c| c.name == name) {
            Some(c) if index.contains(&Some(c.name)) => {
                errors.push(err(1, c.name, "this column appears twice"));
                index.push(None);
            }
            Some(c) => index.push(Some(c.name)),
            None if name.is_empty() => index.push(None),
            None => {
                errors.push(err(
                    1,
                    &name,
                    format!(
                        "unknown column; the columns of a {} file are: {}",
                        kind.as_str(),
                        known.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
                    ),
                ));
                index.push(None);
            }
        }
    }
    for c in known.iter().filter(|c| c.required) {
        if !index.contains(&Some(c.name)) {
            errors.push(err(1, c.name, "required column missing from the header"));
        }
    }
    let mut rows = Vec::new();
    let mut lines = LineCounter::new(bytes);
    for record in records {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| lines.line_at(p.byte()));
                errors.push(err(line, "", format!("the line cannot be read: {e}")));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| lines.line_at(p.byte()));
        if record.iter().all(|c| c.iter().all(u8::is_ascii_whitespace)) {
            continue;
        }
        if rows.len() >= kind.max_rows() {
            errors.push(err(
                line,
                "",
                format!(
                    "a {} file holds at most {} rows: split it",
                    kind.as_str(),
                    kind.max_rows()
                ),
            ));
            break;
        }
        if record.len() != header.len() {
            errors.push(err(
                line,
                "",
                format!(
                    "{} cells where the header has {}",
                    record.len(),
                    header.len()
                ),
            ));
            continue;
        }
        let mut cells = BTreeMap::new();
        for (cell, name) in record.iter().zip(&index) {
            let Some(name) = name else { continue };
            match std::str::from_utf8(cell) {
                Ok(text) if text.chars().count() > MAX_CELL_CHARS => errors.push(err(
                    line,
                    name,
                    format!("longer than {MAX_CELL_CHARS} characters"),
                )),
                Ok(text) => {
                    cells.insert(*name, text.trim().to_owned());
                }
                Err(_) => errors.push(err(line, name, "not UTF-8 text: save the file as UTF-8")),
            }
        }
        rows.push((line, cells));
    }
    if errors.is_empty() {
        Ok(Table { rows })
    } else {
        Err(errors)
    }
}

/// Line numbers of byte offsets, counted as the reader moves forward. The
/// reader's own line count is off after a CRLF line end (what browsers send),
/// so lines are counted here: a record starts after any line-end bytes.
struct LineCounter<'a> {
    bytes: &'a [u8],
    at: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        LineCounter {
            bytes,
            at: 0,
            line: 1,
        }
    }

    fn line_at(&mut self, byte: u64) -> u64 {
        let mut start = usize::try_from(byte)
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        while start < self.bytes.len() && matches!(self.bytes[start], b'\r' | b'\n') {
            start += 1;
        }
        if start >= self.at {
            let newlines = self.bytes[self.at..start]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            self.line += newlines as u64;
            self.at = start;
        }
        self.line
    }
}

/// One row's cells, collecting its errors.
struct Row<'a> {
    line: u64,
    cells: &'a BTreeMap<&'static str, String>,
    errors: &'a mut Vec<RowError>,
}

impl Row<'_> {
    fn text(&self, name: &str) -> Option<String> {
        self.cells.get(name).filter(|v| !v.is_empty()).cloned()
    }

    fn fail(&mut self, column: &str, message: impl Into<String>) {
        self.errors.push(err(self.line, column, message));
    }

    fn required(&mut self, name: &str) -> String {
        match self.text(name) {
            Some(v) => v,
            None => {
                self.fail(name, "required: this cell is empty");
                String::new()
            }
        }
    }

    fn flag(&mut self, name: &str, default: bool) -> bool {
        match self.text(name).map(|v| v.to_ascii_lowercase()).as_deref() {
            None => default,
            Some("yes" | "y" | "true" | "1") => true,
            Some("no" | "n" | "false" | "0") => false,
            Some(other) => {
                self.fail(name, format!("{other:?} is not yes or no"));
                default
            }
        }
    }

    fn number(&mut self, name: &str) -> Option<f64> {
        let text = self.text(name)?;
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Some(v),
            _ => {
                self.fail(name, format!("{text:?} is not a number"));
                None
            }
        }
    }

    /// Team and territory from the row, else `fallback`'s, else the
    /// importer's, else the organisation's only one.
    fn ownership(&mut self, dir: &Directory, owner: Option<&Member>) -> Option<Ownership> {
        let owner = owner.or(dir.importer.as_ref())?;
        let team = match self.text("team") {
            Some(name) => match dir.teams.get(&name.to_lowercase()) {
                Some(t) => Some(*t),
                None => {
                    self.fail("team", format!("no team called {name:?}"));
                    return None;
                }
            },
            None => owner.team.or_else(|| only(&dir.teams)),
        };
        let territory = match self.text("territory") {
            Some(name) => match dir.territories.get(&name.to_lowercase()) {
                Some(t) => Some(*t),
                None => {
                    self.fail("territory", format!("no territory called {name:?}"));
                    return None;
                }
            },
            None => owner.territory.or_else(|| only(&dir.territories)),
        };
        let Some(team) = team else {
            self.fail(
                "team",
                "name the team: the owner has none and the organisation has several (or none)",
            );
            return None;
        };
        let Some(territory) = territory else {
            self.fail(
                "territory",
                "name the territory: the owner has none and the organisation has several (or none)",
            );
            return None;
        };
        Some(Ownership {
            owner: owner.id,
            team,
            territory,
            owner_given: self.text("owner").is_some(),
            team_given: self.text("team").is_some(),
            territory_given: self.text("territory").is_some(),
        })
    }
}

fn only<T: Copy>(map: &BTreeMap<String, T>) -> Option<T> {
    let mut values = map.values();
    match (values.next(), values.next()) {
        (Some(v), None) => Some(*v),
        _ => None,
    }
}

/// Checks a file of `kind` against `dir`: the typed rows, or every error.
pub fn check(
    kind: ImportKind,
    bytes: &[u8],
    dir: &Directory,
) -> std::result::Result<Rows, Vec<RowError>> {
    let table = read_table(kind, bytes)?;
    check_table(kind, &table, dir)
}

/// Checks one row given as cells by column name (a form of the pages or the
/// JSON API), with the same rules as a file's row; errors carry line 0.
pub fn check_cells(
    kind: ImportKind,
    cells: &BTreeMap<String, String>,
    dir: &Directory,
) -> std::result::Result<Rows, Vec<RowError>> {
    let mut row = BTreeMap::new();
    for c in columns(kind) {
        if let Some(v) = cells.get(c.name) {
            if v.chars().count() > MAX_CELL_CHARS {
                return Err(vec![err(
                    0,
                    c.name,
                    format!("longer than {MAX_CELL_CHARS} characters"),
                )]);
            }
            row.insert(c.name, v.trim().to_owned());
        }
    }
    let table = Table {
        rows: vec![(0, row)],
    };
    check_table(kind, &table, dir)
}

fn check_table(
    kind: ImportKind,
    table: &Table,
    dir: &Directory,
) -> std::result::Result<Rows, Vec<RowError>> {
    let mut errors = Vec::new();
    let rows = match kind {
        ImportKind::Accounts => Rows::Accounts(accounts(table, dir, &mut errors)),
        ImportKind::Contacts => Rows::Contacts(contacts(table, dir, &mut errors)),
        ImportKind::Products => Rows::Products(products(table, dir, &mut errors)),
        ImportKind::PriceList => Rows::PriceLists(price_lists(table, dir, &mut errors)),
    };
    if errors.is_empty() {
        Ok(rows)
    } else {
        errors.sort_by_key(|e| e.line);
        Err(errors)
    }
}

fn accounts(table: &Table, dir: &Directory, errors: &mut Vec<RowError>) -> Vec<AccountRow> {
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut out = Vec::new();
    for (line, cells) in &table.rows {
        let before = errors.len();
        let mut r = Row {
            line: *line,
            cells,
            errors,
        };
        let code = r.required("code");
        if let Some(first) = seen.insert(code.clone(), *line)
            && !code.is_empty()
        {
            r.fail("code", format!("{code:?} is also on line {first}"));
        }
        let name = r.required("name");
        let account_type = r.text("account_type").unwrap_or_else(|| "customer".into());
        let account_status = r
            .text("account_status")
            .map(|s| s.to_lowercase())
            .unwrap_or_else(|| "active".into());
        if !matches!(account_status.as_str(), "active" | "prospect" | "inactive") {
            r.fail(
                "account_status",
                format!("{account_status:?} is not active, prospect or inactive"),
            );
        }
        let visit_frequency_days =
            r.text("visit_frequency_days")
                .and_then(|v| match v.parse::<u32>() {
                    Ok(d) if (1..=365).contains(&d) => Some(d),
                    _ => {
                        r.fail(
                            "visit_frequency_days",
                            format!("{v:?} is not a number of days from 1 to 365"),
                        );
                        None
                    }
                });
        let price_list = r.text("price_list").and_then(|name| {
            let found = dir.price_lists.get(&name.to_lowercase()).copied();
            if found.is_none() {
                r.fail(
                    "price_list",
                    format!("no price list called {name:?}: import it first"),
                );
            }
            found
        });
        let owner = match r.text("owner") {
            Some(email) => match dir.users.get(&email.to_lowercase()) {
                Some(m) => Some(m.clone()),
                None => {
                    r.fail("owner", format!("no enabled user with the email {email:?}"));
                    None
                }
            },
            None => dir.importer.clone(),
        };
        let ownership = owner.as_ref().and_then(|o| r.ownership(dir, Some(o)));
        let lat = r.number("lat");
        let lng = r.number("lng");
        let coords = match (lat, lng) {
            (Some(lat), Some(lng)) => {
                let p = GeoPoint {
                    lat,
                    lng,
                    accuracy_m: None,
                };
                if p.is_valid() {
                    Some(p)
                } else {
                    r.fail(
                        "lat",
                        "position is off the globe (lat -90..90, lng -180..180)",
                    );
                    None
                }
            }
            (None, None) => None,
            (Some(_), None) => {
                r.fail("lng", "give lat and lng together");
                None
            }
            (None, Some(_)) => {
                r.fail("lat", "give lat and lng together");
                None
            }
        };
        let radius = r.number("geofence_radius_m");
        if radius.is_some_and(|m| !(m > 0.0 && m <= 100_000.0)) {
            r.fail(
                "geofence_radius_m",
                "the radius is in metres, above 0 and at most 100000",
            );
        }
        let location_name = r.text("location_name");
        let address = r.text("address");
        let site =
            (location_name.is_some() || address.is_some() || coords.is_some()).then(|| SiteRow {
                name: location_name.unwrap_or_else(|| "Main site".into()),
                address: address.unwrap_or_default(),
                coords,
                radius_m: radius.unwrap_or(DEFAULT_RADIUS_M),
            });
        if let (Some(ownership), true) = (ownership, errors.len() == before) {
            out.push(AccountRow {
                line: *line,
                code,
                name,
                account_type,
                account_status,
                visit_frequency_days,
                price_list,
                ownership,
                site,
            });
        }
    }
    out
}

fn contacts(table: &Table, dir: &Directory, errors: &mut Vec<RowError>) -> Vec<ContactRow> {
    let mut seen: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut out = Vec::new();
    for (line, cells) in &table.rows {
        let before = errors.len();
        let mut r = Row {
            line: *line,
            cells,
            errors,
        };
        let account_code = r.required("account_code");
        let account = if account_code.is_empty() {
            None
        } else {
            let found = dir.accounts.get(&account_code).copied();
            if found.is_none() {
                r.fail(
                    "account_code",
                    format!("no account with the code {account_code:?}: import it first"),
                );
            }
            found
        };
        let name = r.required("name");
        if let Some(first) = seen.insert((account_code.clone(), name.to_lowercase()), *line)
            && !name.is_empty()
        {
            r.fail(
                "name",
                format!("{name:?} at this account is also on line {first}"),
            );
        }
        let email = r.text("email");
        if email.as_deref().is_some_and(|e| !e.contains('@')) {
            r.fail("email", "not an email address");
        }
        let status = r
            .text("consent")
            .and_then(|s| match s.parse::<ConsentStatus>() {
                Ok(s) => Some(s),
                Err(m) => {
                    r.fail("consent", m);
                    None
                }
            });
        let at = r.text("consent_at").and_then(|t| match parse_time(&t) {
            Some(ms) => Some(DeviceTime::utc(ms)),
            None => {
                r.fail(
                    "consent_at",
                    format!("{t:?} is not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ)"),
                );
                None
            }
        });
        let how = r.text("consent_how");
        let consent = match (status, at, how) {
            (Some(status), Some(at), Some(how)) => Some(Consent { status, at, how }),
            (Some(_), at, how) => {
                if at.is_none() && r.text("consent_at").is_none() {
                    r.fail("consent_at", "say when consent was given or withdrawn");
                }
                if how.is_none() {
                    r.fail(
                        "consent_how",
                        "say how consent was collected, e.g. signed form",
                    );
                }
                None
            }
            (None, at, how) => {
                if (at.is_some() || how.is_some()) && r.text("consent").is_none() {
                    r.fail(
                        "consent",
                        "granted or withdrawn: the row says when or how, but not what",
                    );
                }
                None
            }
        };
        if let (Some(account), true) = (account, errors.len() == before) {
            out.push(ContactRow {
                line: *line,
                account_code,
                account,
                name,
                role: cells.get("role").filter(|v| !v.is_empty()).cloned(),
                phone: cells.get("phone").filter(|v| !v.is_empty()).cloned(),
                email,
                consent,
            });
        }
    }
    out
}

fn products(table: &Table, dir: &Directory, errors: &mut Vec<RowError>) -> Vec<ProductRow> {
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut out = Vec::new();
    for (line, cells) in &table.rows {
        let before = errors.len();
        let mut r = Row {
            line: *line,
            cells,
            errors,
        };
        let sku = r.required("sku");
        if let Some(first) = seen.insert(sku.to_lowercase(), *line)
            && !sku.is_empty()
        {
            r.fail("sku", format!("{sku:?} is also on line {first}"));
        }
        let name = r.required("name");
        let unit = r.text("unit").unwrap_or_else(|| "pcs".into());
        let serialized = r.flag("serialized", false);
        let spare_part = r.flag("spare_part", false);
        let active = r.flag("active", true);
        let ownership = r.ownership(dir, None);
        if let (Some(ownership), true) = (ownership, errors.len() == before) {
            out.push(ProductRow {
                line: *line,
                sku,
                name,
                unit,
                serialized,
                spare_part,
                active,
                ownership,
            });
        }
    }
    out
}

fn price_lists(table: &Table, dir: &Directory, errors: &mut Vec<RowError>) -> Vec<PriceListRows> {
    let mut lists: Vec<PriceListRows> = Vec::new();
    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen: BTreeMap<(String, RecordId), u64> = BTreeMap::new();
    for (line, cells) in &table.rows {
        let before = errors.len();
        let mut r = Row {
            line: *line,
            cells,
            errors,
        };
        let name = r.required("price_list");
        let currency = r.required("currency").to_uppercase();
        let well_formed = currency.len() == 3 && currency.chars().all(|c| c.is_ascii_uppercase());
        if !currency.is_empty() && !well_formed {
            r.fail(
                "currency",
                format!("{currency:?} is not a currency code like EUR"),
            );
        }
        let sku = r.required("sku");
        let product = if sku.is_empty() {
            None
        } else {
            let found = dir.products.get(&sku.to_lowercase()).copied();
            if found.is_none() {
                r.fail(
                    "sku",
                    format!("no product with the SKU {sku:?}: import it first"),
                );
            }
            found
        };
        let price = r.required("unit_price");
        let unit_price_minor = if price.is_empty() {
            None
        } else {
            match parse_minor(&price, 2) {
                Some(v) if v >= 0 => Some(v),
                _ => {
                    r.fail(
                        "unit_price",
                        format!(
                            "{price:?} is not a price like 12.50 (not negative, two decimals at most)"
                        ),
                    );
                    None
                }
            }
        };
        let max_discount_bp = match r.text("max_discount_percent") {
            None => Some(0),
            Some(text) => match parse_minor(text.trim_end_matches('%'), 2) {
                Some(bp) if (0..=10_000).contains(&bp) => u32::try_from(bp).ok(),
                _ => {
                    r.fail(
                        "max_discount_percent",
                        format!("{text:?} is not a percentage from 0 to 100"),
                    );
                    None
                }
            },
        };
        if let Some(product) = product
            && !name.is_empty()
            && let Some(first) = seen.insert((name.to_lowercase(), product), *line)
        {
            r.fail(
                "sku",
                format!("{sku:?} is already on this list on line {first}"),
            );
        }
        let territory_default = r
            .text("territory_default")
            .map(|_| r.flag("territory_default", false));
        let ownership = match by_name.get(&name.to_lowercase()) {
            Some(&i) => {
                let list = &lists[i];
                if let (Some(was), Some(now)) = (list.territory_default, territory_default)
                    && was != now
                {
                    r.fail(
                        "territory_default",
                        format!("line {} says otherwise for the same list", list.line),
                    );
                }
                if !currency.is_empty() && list.currency != currency {
                    r.fail(
                        "currency",
                        format!(
                            "the list {name:?} is in {} (line {}); one list has one currency",
                            list.currency, list.line
                        ),
                    );
                }
                Some(list.ownership)
            }
            None => r.ownership(dir, None),
        };
        let (Some(product), Some(unit_price_minor), Some(max_discount_bp), Some(ownership)) =
            (product, unit_price_minor, max_discount_bp, ownership)
        else {
            continue;
        };
        if errors.len() != before {
            continue;
        }
        let item = ItemRow {
            line: *line,
            product,
            unit_price_minor,
            max_discount_bp,
        };
        match by_name.get(&name.to_lowercase()) {
            Some(&i) => {
                if lists[i].items.len() >= MAX_LIST_ITEMS {
                    errors.push(err(
                        *line,
                        "price_list",
                        format!("a price list holds at most {MAX_LIST_ITEMS} items"),
                    ));
                    continue;
                }
                lists[i].items.push(item);
            }
            None => {
                if territory_default == Some(true)
                    && let Some(other) = lists.iter().find(|l| {
                        l.territory_default == Some(true)
                            && l.ownership.territory == ownership.territory
                    })
                {
                    errors.push(err(
                        *line,
                        "territory_default",
                        format!(
                            "{:?} (line {}) is already the default of this territory: one per territory",
                            other.name, other.line
                        ),
                    ));
                    continue;
                }
                by_name.insert(name.to_lowercase(), lists.len());
                lists.push(PriceListRows {
                    line: *line,
                    name,
                    currency,
                    ownership,
                    territory_default,
                    items: vec![item],
                });
            }
        }
    }
    lists
}

/// A decimal with at most `decimals` digits after the point, in minor units
/// (`"12.5"` with 2 decimals is 1250).
pub fn parse_minor(text: &str, decimals: u32) -> Option<i64> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !fraction.chars().all(|c| c.is_ascii_digit())
        || fraction.len() > decimals as usize
        || whole.len() > 12
    {
        return None;
    }
    let scale = 10_i64.checked_pow(decimals)?;
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut frac: i64 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().ok()?
    };
    for _ in fraction.len()..decimals as usize {
        frac *= 10;
    }
    let v = whole.checked_mul(scale)?.checked_add(frac)?;
    Some(if negative { -v } else { v })
}

/// Minor units as a decimal with `decimals` digits (`1250` is `"12.50"`).
pub fn format_minor(minor: i64, decimals: u32) -> String {
    let scale = 10_i64.pow(decimals);
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let scale = scale.unsigned_abs();
    if decimals == 0 {
        return format!("{sign}{abs}");
    }
    format!(
        "{sign}{}.{:0width$}",
        abs / scale,
        abs % scale,
        width = decimals as usize
    )
}

/// `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM[:SS]Z` as milliseconds.
pub fn parse_time(text: &str) -> Option<i64> {
    let text = text.trim();
    let (date, time) = match text.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t.strip_suffix('Z').unwrap_or(t))),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    let mut ms = days_from_civil(y, m, d) * DAY_MS;
    if let Some(time) = time {
        let mut hms = time.split(':');
        let h: i64 = hms.next()?.parse().ok()?;
        let min: i64 = hms.next()?.parse().ok()?;
        let s: i64 = match hms.next() {
            Some(s) => s.parse().ok()?,
            None => 0,
        };
        if hms.next().is_some()
            || !(0..24).contains(&h)
            || !(0..60).contains(&min)
            || !(0..60).contains(&s)
        {
            return None;
        }
        ms += ((h * 60 + min) * 60 + s) * 1_000;
    }
    Some(ms)
}

/// Milliseconds as `YYYY-MM-DDTHH:MM:SSZ` (what an export writes).
pub fn format_time(ms: i64) -> String {
    let (y, m, d) = super::figures::dates::civil_from_days(ms.div_euclid(DAY_MS));
    let secs = ms.rem_euclid(DAY_MS) / 1_000;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3_600,
        secs / 60 % 60,
        secs % 60
    )
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A record's cells in the order of [`columns`], as an export writes them.
pub fn csv_of(kind: ImportKind, rows: &[Vec<String>]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let header: Vec<&str> = columns(kind).iter().map(|c| c.name).collect();
    let fail = |e: csv::Error| Error::internal(format!("writing CSV: {e}"));
    w.write_record(&header).map_err(fail)?;
    for row in rows {
        w.write_record(row).map_err(fail)?;
    }
    w.into_inner()
        .map_err(|e| Error::internal(format!("writing CSV: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> Directory {
        let me = Member {
            id: UserId::new(),
            team: Some(TeamId::new()),
            territory: Some(TerritoryId::new()),
        };
        let mut d = Directory {
            importer: Some(me.clone()),
            ..Directory::default()
        };
        d.users.insert("ana@acme.test".into(), me);
        d.products.insert("olv-500".into(), RecordId::new());
        d
    }

    #[test]
    fn only_administrators_write_and_the_back_office_reads() {
        for role in [Role::Admin, Role::Server] {
            assert!(may_administer(role, Administering::Writing).is_ok());
        }
        assert!(may_administer(Role::Manager, Administering::Reading).is_ok());
        for role in [Role::Manager, Role::Rep, Role::Technician] {
            assert!(
                may_administer(role, Administering::Writing).is_err(),
                "{role:?}"
            );
        }
        assert!(may_administer(Role::Rep, Administering::Reading).is_err());
    }

    #[test]
    fn every_error_of_a_file_is_listed_by_line_and_column() {
        let file = "code,name,account_status,lat,lng\n\
                    A1,Shop,active,1,2\n\
                    A2,,sleeping,,\n\
                    A1,Again,,95,10\n";
        let errors = check(ImportKind::Accounts, file.as_bytes(), &dir()).expect_err("refused");
        let got: Vec<(u64, &str)> = errors.iter().map(|e| (e.line, e.column.as_str())).collect();
        assert_eq!(
            got,
            [(3, "name"), (3, "account_status"), (4, "code"), (4, "lat")]
        );
    }

    #[test]
    fn lines_are_counted_with_crlf_line_ends_and_quoted_line_breaks() {
        let file = "sku,name\r\nA,\"Two\r\nlines\"\r\nB,\r\n\r\nC,\r\n";
        let errors = check(ImportKind::Products, file.as_bytes(), &dir()).expect_err("refused");
        let got: Vec<u64> = errors.iter().map(|e| e.line).collect();
        assert_eq!(got, [4, 6]);
    }

    #[test]
    fn the_header_names_known_columns_and_every_required_one() {
        let errors =
            check(ImportKind::Products, b"sku,colour\nX,red\n", &dir()).expect_err("refused");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!((errors[0].line, errors[0].column.as_str()), (1, "colour"));
        assert_eq!((errors[1].line, errors[1].column.as_str()), (1, "name"));
    }

    #[test]
    fn price_lists_gather_their_items_and_check_prices() {
        let file = "price_list,currency,sku,unit_price,max_discount_percent\n\
                    Retail,EUR,OLV-500,3.5,10\n\
                    Retail,USD,OLV-500,1.234,101\n\
                    Retail,EUR,NOPE,1,\n";
        let errors = check(ImportKind::PriceList, file.as_bytes(), &dir()).expect_err("refused");
        let got: Vec<(u64, &str)> = errors.iter().map(|e| (e.line, e.column.as_str())).collect();
        assert_eq!(
            got,
            [
                (3, "unit_price"),
                (3, "max_discount_percent"),
                (3, "sku"),
                (3, "currency"),
                (4, "sku")
            ]
        );
        let ok = "price_list,currency,sku,unit_price,max_discount_percent\nRetail,eur,olv-500,3.5,12.5\n";
        let Ok(Rows::PriceLists(lists)) = check(ImportKind::PriceList, ok.as_bytes(), &dir())
        else {
            panic!("a good file");
        };
        assert_eq!(lists[0].currency, "EUR");
        assert_eq!(lists[0].items[0].unit_price_minor, 350);
        assert_eq!(lists[0].items[0].max_discount_bp, 1_250);
    }

    #[test]
    fn consent_needs_its_evidence() {
        let mut d = dir();
        d.accounts.insert("A1".into(), RecordId::new());
        let file = "account_code,name,consent,consent_at,consent_how\n\
                    A1,Rui,granted,2026-03-01,signed form\n\
                    A1,Eva,withdrawn,,\n\
                    A9,Zé,,,\n";
        let errors = check(ImportKind::Contacts, file.as_bytes(), &d).expect_err("refused");
        let got: Vec<(u64, &str)> = errors.iter().map(|e| (e.line, e.column.as_str())).collect();
        assert_eq!(
            got,
            [(3, "consent_at"), (3, "consent_how"), (4, "account_code")]
        );
    }

    #[test]
    fn numbers_and_times_round_trip() {
        assert_eq!(parse_minor("12.5", 2), Some(1_250));
        assert_eq!(parse_minor("0.05", 2), Some(5));
        assert_eq!(parse_minor("1.005", 2), None);
        assert_eq!(parse_minor("abc", 2), None);
        assert_eq!(format_minor(1_250, 2), "12.50");
        assert_eq!(format_minor(5, 2), "0.05");
        let t = parse_time("2026-03-01T10:20:30Z").expect("time");
        assert_eq!(format_time(t), "2026-03-01T10:20:30Z");
        assert_eq!(parse_time("2026-02-30"), None);
        assert_eq!(
            parse_time("2026-03-01").map(format_time).as_deref(),
            Some("2026-03-01T00:00:00Z")
        );
    }

    #[test]
    fn limits_are_errors_that_say_so() {
        let mut file = String::from("sku,name\n");
        for i in 0..=MAX_RECORD_ROWS {
            file.push_str(&format!("S{i},P\n"));
        }
        let errors = check(ImportKind::Products, file.as_bytes(), &dir()).expect_err("refused");
        assert!(errors[0].message.contains("at most"), "{errors:?}");
        let big = vec![b'a'; MAX_IMPORT_BYTES + 1];
        let errors = check(ImportKind::Products, &big, &dir()).expect_err("refused");
        assert!(errors[0].message.contains("MiB"), "{errors:?}");
    }
}
