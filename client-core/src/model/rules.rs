//! Who may write which field of which kind, in which status: the one table
//! the device and the server both enforce.
//!
//! The device checks an edit against [`FIELD_RULES`] before it is stored (so
//! the app tells the user at once); the server checks every pushed change
//! against the same table after the merge (`incoming`), because a client can
//! build its own Automerge changes. `docs/rules.md` is rendered from this
//! table ([`render_markdown`]) and a test fails when the two differ.
//!
//! A field is writable by a role in a status when one of its [`Grant`]s names
//! the role and the status (a grant with no statuses holds in every status;
//! kinds without a status machine have only such grants). The status is the
//! one the record had before the write; a push that moves the record through
//! several statuses (a visit checked in and out offline, pushed at once) may
//! write each field in any of them. A field a kind does not list is
//! refused outright, so nothing can hide data (or references) in keys the
//! typed records do not have.
//!
//! Some rules are not per field and live beside the table:
//!
//! - `meta` (ownership): `id`, `org` never change; `owner`, `team` and
//!   `territory` are fixed for reps and technicians, and the back office
//!   reassigns only within its authority (the server checks who exists);
//! - `status` and `history` change only through transitions (see `status`);
//! - a valid customer signature cannot be invalidated by a field user
//!   ([`signature_kept`]): what the customer signed is locked for them;
//! - references are read only from each kind's own typed fields
//!   ([`references`]), and name records of the expected kinds.

use std::fmt::Write as _;

use serde_json::Value as Json;

use super::types::{RecordKind, Role};

/// A set of roles that may write a field, in a set of statuses.
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    /// Who.
    pub roles: &'static [Role],
    /// In which statuses (the record's status before the write); empty: any.
    pub statuses: &'static [&'static str],
}

/// One field of one kind and who may write it.
#[derive(Debug, Clone, Copy)]
pub struct FieldRule {
    /// The kind.
    pub kind: RecordKind,
    /// A top-level key, or `key.*.sub` for one field of every entry of a map
    /// keyed by entry id (a time entry's approval).
    pub field: &'static str,
    /// Who may write it, and when.
    pub grants: &'static [Grant],
}

const REP: &[Role] = &[Role::Rep];
const TECH: &[Role] = &[Role::Technician];
const OFFICE: &[Role] = &[Role::Manager, Role::Admin, Role::Server];
const SALES: &[Role] = &[Role::Rep, Role::Manager, Role::Admin, Role::Server];
const SERVER: &[Role] = &[Role::Server];
const EVERYONE: &[Role] = &[
    Role::Rep,
    Role::Technician,
    Role::Manager,
    Role::Admin,
    Role::Server,
];
const ANY: &[&str] = &[];

const fn g(roles: &'static [Role], statuses: &'static [&'static str]) -> Grant {
    Grant { roles, statuses }
}

const fn rule(kind: RecordKind, field: &'static str, grants: &'static [Grant]) -> FieldRule {
    FieldRule {
        kind,
        field,
        grants,
    }
}

// Visit statuses.
const V_PLANNED: &[&str] = &["planned"];
const V_OPEN: &[&str] = &["planned", "in_progress"];
const V_IN: &[&str] = &["in_progress"];
const V_LINKABLE: &[&str] = &["planned", "in_progress", "completed"];
// Report statuses.
const R_WRITING: &[&str] = &["draft", "changes_requested"];
const R_REVIEW: &[&str] = &["submitted"];
// Order statuses.
const O_DRAFT: &[&str] = &["draft"];
const O_SIGNABLE: &[&str] = &["draft", "submitted"];
const O_OPEN: &[&str] = &["draft", "submitted", "pending_approval"];
// Job statuses.
const J_OPEN: &[&str] = &["open", "scheduled", "in_progress"];
const J_WORK: &[&str] = &["scheduled", "in_progress"];
const J_DONE: &[&str] = &["open", "scheduled", "in_progress", "completed"];
const J_CLOSING: &[&str] = &["completed"];
// Assignment statuses.
const A_PLANNING: &[&str] = &["scheduled", "dispatched", "accepted", "rejected"];
const A_NEW: &[&str] = &["scheduled", "dispatched"];
const A_FIELD: &[&str] = &[
    "scheduled",
    "dispatched",
    "accepted",
    "traveling",
    "on_site",
    "in_progress",
    "on_break",
];
const A_OFFICE: &[&str] = &[
    "scheduled",
    "dispatched",
    "accepted",
    "rejected",
    "traveling",
    "on_site",
    "in_progress",
    "on_break",
    "completed",
    "cannot_complete",
];
// Checklist template phases (see [`phase`]).
const T_DRAFT: &[&str] = &["draft"];
const T_PUBLISHED: &[&str] = &["published"];

use RecordKind as K;

/// Every writable field of every kind. `meta`, `kind`, `status` and
/// `history` are governed by their own rules (see the module documentation).
pub const FIELD_RULES: &[FieldRule] = &[
    // Visits: planned by the rep or the office; the rep's evidence (check-in,
    // check-out, outcome) is locked once the visit is completed, unless a
    // manager reopens it (back to in progress).
    rule(K::Visit, "account_id", &[g(SALES, V_PLANNED)]),
    rule(K::Visit, "location_id", &[g(SALES, V_PLANNED)]),
    rule(K::Visit, "visit_type", &[g(SALES, V_PLANNED)]),
    rule(K::Visit, "planned", &[g(SALES, V_PLANNED)]),
    rule(K::Visit, "planned_start", &[g(SALES, V_PLANNED)]),
    rule(K::Visit, "planned_end", &[g(SALES, V_PLANNED)]),
    rule(
        K::Visit,
        "instructions",
        &[g(SALES, V_PLANNED), g(OFFICE, V_OPEN)],
    ),
    rule(K::Visit, "contact_id", &[g(SALES, V_OPEN)]),
    // The server adds its own geofence verdict to each check point.
    rule(K::Visit, "check_in", &[g(REP, V_OPEN), g(SERVER, ANY)]),
    rule(K::Visit, "check_out", &[g(REP, V_IN), g(SERVER, ANY)]),
    rule(K::Visit, "outcome", &[g(REP, V_IN)]),
    rule(K::Visit, "notes", &[g(REP, V_LINKABLE), g(OFFICE, ANY)]),
    rule(
        K::Visit,
        "next_visit_date",
        &[g(REP, V_LINKABLE), g(OFFICE, ANY)],
    ),
    rule(K::Visit, "order_ids", &[g(SALES, V_LINKABLE)]),
    rule(K::Visit, "checklist_response_ids", &[g(SALES, V_LINKABLE)]),
    rule(K::Visit, "deleted", &[g(SALES, V_PLANNED)]),
    // Visit reports: the rep writes while drafting or reworking; once
    // submitted the content is locked and only reviewers write their fields.
    rule(K::VisitReport, "visit_id", &[g(REP, &["draft"])]),
    rule(K::VisitReport, "summary", &[g(REP, R_WRITING)]),
    rule(K::VisitReport, "observations", &[g(REP, R_WRITING)]),
    rule(K::VisitReport, "kpis", &[g(REP, R_WRITING)]),
    rule(K::VisitReport, "content_hash", &[g(REP, R_WRITING)]),
    rule(K::VisitReport, "reviewer", &[g(OFFICE, R_REVIEW)]),
    rule(K::VisitReport, "decided_at", &[g(OFFICE, R_REVIEW)]),
    rule(K::VisitReport, "comments", &[g(OFFICE, R_REVIEW)]),
    rule(K::VisitReport, "deleted", &[g(REP, &["draft"])]),
    // Orders: lines, prices and discounts only while a draft; the server prices
    // submitted orders from the price list (see the server's push).
    rule(K::Order, "account_id", &[g(SALES, O_DRAFT)]),
    rule(K::Order, "ship_to", &[g(SALES, O_DRAFT)]),
    rule(K::Order, "visit_id", &[g(SALES, O_DRAFT)]),
    rule(K::Order, "price_list_id", &[g(SALES, O_DRAFT)]),
    rule(K::Order, "currency", &[g(SALES, O_DRAFT)]),
    rule(K::Order, "delivery_date", &[g(SALES, O_DRAFT)]),
    rule(K::Order, "lines", &[g(SALES, O_DRAFT), g(SERVER, O_OPEN)]),
    rule(K::Order, "signature", &[g(SALES, O_SIGNABLE)]),
    rule(K::Order, "notes", &[g(SALES, O_OPEN)]),
    rule(K::Order, "deleted", &[g(SALES, O_DRAFT)]),
    // Service jobs: written by the office; technicians add what they find.
    rule(K::ServiceJob, "account_id", &[g(OFFICE, &["open"])]),
    rule(K::ServiceJob, "location_id", &[g(OFFICE, J_OPEN)]),
    rule(K::ServiceJob, "contact_id", &[g(OFFICE, J_OPEN)]),
    rule(
        K::ServiceJob,
        "asset",
        &[g(OFFICE, J_OPEN), g(TECH, J_WORK)],
    ),
    rule(K::ServiceJob, "job_type", &[g(OFFICE, J_OPEN)]),
    rule(K::ServiceJob, "priority", &[g(OFFICE, J_OPEN)]),
    rule(K::ServiceJob, "description", &[g(OFFICE, J_OPEN)]),
    rule(K::ServiceJob, "request_window_start", &[g(OFFICE, J_OPEN)]),
    rule(K::ServiceJob, "request_window_end", &[g(OFFICE, J_OPEN)]),
    rule(K::ServiceJob, "sla_due", &[g(OFFICE, J_OPEN)]),
    rule(K::ServiceJob, "requires_checklist", &[g(OFFICE, J_OPEN)]),
    rule(K::ServiceJob, "checklist_template_id", &[g(OFFICE, J_OPEN)]),
    rule(K::ServiceJob, "requires_signature", &[g(OFFICE, J_OPEN)]),
    rule(
        K::ServiceJob,
        "first_arrived_at",
        &[g(OFFICE, J_OPEN), g(TECH, J_OPEN)],
    ),
    rule(
        K::ServiceJob,
        "completed_at",
        &[g(OFFICE, J_DONE), g(TECH, J_WORK)],
    ),
    rule(
        K::ServiceJob,
        "resolution",
        &[g(OFFICE, J_DONE), g(TECH, J_WORK)],
    ),
    rule(
        K::ServiceJob,
        "first_time_fix",
        &[g(OFFICE, J_DONE), g(TECH, J_WORK)],
    ),
    rule(K::ServiceJob, "closed_at", &[g(OFFICE, J_CLOSING)]),
    rule(K::ServiceJob, "deleted", &[g(OFFICE, &["open"])]),
    // Assignments: planned by the office; the technician records the work
    // until it is completed, and never approves their own time.
    rule(K::Assignment, "job_id", &[g(OFFICE, &["scheduled"])]),
    rule(K::Assignment, "scheduled_start", &[g(OFFICE, A_PLANNING)]),
    rule(K::Assignment, "scheduled_end", &[g(OFFICE, A_PLANNING)]),
    rule(
        K::Assignment,
        "arrival_window_start",
        &[g(OFFICE, A_PLANNING)],
    ),
    rule(
        K::Assignment,
        "arrival_window_end",
        &[g(OFFICE, A_PLANNING)],
    ),
    rule(K::Assignment, "requires_checklist", &[g(OFFICE, A_NEW)]),
    rule(K::Assignment, "requires_signature", &[g(OFFICE, A_NEW)]),
    rule(K::Assignment, "travel_started", &[g(TECH, A_FIELD)]),
    rule(K::Assignment, "arrived", &[g(TECH, A_FIELD)]),
    rule(K::Assignment, "work_started", &[g(TECH, A_FIELD)]),
    rule(K::Assignment, "work_ended", &[g(TECH, A_FIELD)]),
    rule(
        K::Assignment,
        "parts",
        &[g(TECH, A_FIELD), g(OFFICE, A_OFFICE)],
    ),
    rule(
        K::Assignment,
        "time_entries",
        &[g(TECH, A_FIELD), g(OFFICE, A_OFFICE)],
    ),
    rule(K::Assignment, "time_entries.*.approval", &[g(OFFICE, ANY)]),
    rule(
        K::Assignment,
        "checklist_response_id",
        &[g(TECH, A_FIELD), g(OFFICE, A_OFFICE)],
    ),
    rule(
        K::Assignment,
        "checklist_complete",
        &[g(TECH, A_FIELD), g(OFFICE, A_OFFICE)],
    ),
    rule(K::Assignment, "signature", &[g(TECH, A_FIELD)]),
    rule(K::Assignment, "deleted", &[g(OFFICE, &["scheduled"])]),
    // Checklist responses: whoever fills them in; checked against the
    // template version they name when completed (on the server).
    rule(K::ChecklistResponse, "template_id", &[g(EVERYONE, ANY)]),
    rule(
        K::ChecklistResponse,
        "template_version",
        &[g(EVERYONE, ANY)],
    ),
    rule(K::ChecklistResponse, "subject_id", &[g(EVERYONE, ANY)]),
    rule(K::ChecklistResponse, "answers", &[g(EVERYONE, ANY)]),
    rule(K::ChecklistResponse, "completed", &[g(EVERYONE, ANY)]),
    rule(K::ChecklistResponse, "deleted", &[g(EVERYONE, ANY)]),
    // Accounts and contacts: their owners and the office.
    rule(K::Account, "code", &[g(OFFICE, ANY)]),
    rule(K::Account, "name", &[g(EVERYONE, ANY)]),
    rule(K::Account, "account_type", &[g(EVERYONE, ANY)]),
    rule(K::Account, "account_status", &[g(EVERYONE, ANY)]),
    rule(K::Account, "price_list_id", &[g(OFFICE, ANY)]),
    rule(K::Account, "visit_frequency_days", &[g(EVERYONE, ANY)]),
    rule(K::Account, "locations", &[g(EVERYONE, ANY)]),
    rule(K::Account, "deleted", &[g(OFFICE, ANY)]),
    rule(K::Contact, "account_id", &[g(EVERYONE, ANY)]),
    rule(K::Contact, "name", &[g(EVERYONE, ANY)]),
    rule(K::Contact, "role", &[g(EVERYONE, ANY)]),
    rule(K::Contact, "phone", &[g(EVERYONE, ANY)]),
    rule(K::Contact, "email", &[g(EVERYONE, ANY)]),
    rule(K::Contact, "marketing_consent", &[g(EVERYONE, ANY)]),
    rule(K::Contact, "consent", &[g(EVERYONE, ANY)]),
    rule(K::Contact, "deleted", &[g(EVERYONE, ANY)]),
    // The catalogue: the office only.
    rule(K::Product, "sku", &[g(OFFICE, ANY)]),
    rule(K::Product, "name", &[g(OFFICE, ANY)]),
    rule(K::Product, "unit", &[g(OFFICE, ANY)]),
    rule(K::Product, "serialized", &[g(OFFICE, ANY)]),
    rule(K::Product, "spare_part", &[g(OFFICE, ANY)]),
    rule(K::Product, "active", &[g(OFFICE, ANY)]),
    rule(K::Product, "deleted", &[g(OFFICE, ANY)]),
    rule(K::PriceList, "name", &[g(OFFICE, ANY)]),
    rule(K::PriceList, "currency", &[g(OFFICE, ANY)]),
    rule(K::PriceList, "items", &[g(OFFICE, ANY)]),
    rule(K::PriceList, "territory_default", &[g(OFFICE, ANY)]),
    rule(K::PriceList, "deleted", &[g(OFFICE, ANY)]),
    // Checklist templates: the office edits a draft; a published version is
    // never edited (a change is a new version), only retired. A published
    // version is never deleted either: responses keep the version they answered.
    rule(K::ChecklistTemplate, "name", &[g(OFFICE, T_DRAFT)]),
    rule(K::ChecklistTemplate, "version", &[g(OFFICE, T_DRAFT)]),
    rule(K::ChecklistTemplate, "published", &[g(OFFICE, T_DRAFT)]),
    rule(K::ChecklistTemplate, "questions", &[g(OFFICE, T_DRAFT)]),
    rule(K::ChecklistTemplate, "family", &[g(OFFICE, T_DRAFT)]),
    rule(K::ChecklistTemplate, "supersedes", &[g(OFFICE, T_DRAFT)]),
    rule(K::ChecklistTemplate, "retired", &[g(OFFICE, T_PUBLISHED)]),
    rule(K::ChecklistTemplate, "deleted", &[g(OFFICE, T_DRAFT)]),
    // Van stock: the office labels and fills the van; the technician who
    // drives it adds what they take out (movements only grow for them:
    // `van_stock::check_movements`).
    rule(K::VanStock, "name", &[g(OFFICE, ANY)]),
    rule(K::VanStock, "replenishments", &[g(OFFICE, ANY)]),
    rule(K::VanStock, "consumptions", &[g(TECH, ANY), g(OFFICE, ANY)]),
    rule(K::VanStock, "deleted", &[g(OFFICE, ANY)]),
];

/// Transitions decided in the office and made through the server (the
/// managers' pages and API, or the server itself), never pushed from a
/// device: closing a job. The order's `confirmed` and `pending_approval` are
/// the server's own (its role alone may take those edges).
pub const OFFICE_ONLY: &[(RecordKind, &str)] = &[(RecordKind::ServiceJob, "closed")];

/// The root keys every record has, governed outside the field table.
pub const RESERVED_KEYS: &[&str] = &["kind", "meta", "status", "history"];

/// Where a reference puts the record it names in the projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The account the record belongs to (its owner is granted the account).
    Account,
    /// The parent record (its owner is granted the parent).
    Parent,
    /// Another record it names (no grant).
    Other,
}

/// A field of a kind that names another record.
#[derive(Debug, Clone, Copy)]
pub struct Reference {
    /// The top-level key.
    pub field: &'static str,
    /// The kinds it may name.
    pub to: &'static [RecordKind],
    /// What it is to the projection.
    pub slot: Slot,
}

const fn reference(field: &'static str, to: &'static [RecordKind], slot: Slot) -> Reference {
    Reference { field, to, slot }
}

const ACCOUNT: &[RecordKind] = &[K::Account];
const VISIT_REFS: &[Reference] = &[
    reference("account_id", ACCOUNT, Slot::Account),
    reference("contact_id", &[K::Contact], Slot::Other),
];
const REPORT_REFS: &[Reference] = &[reference("visit_id", &[K::Visit], Slot::Parent)];
const ORDER_REFS: &[Reference] = &[
    reference("account_id", ACCOUNT, Slot::Account),
    reference("visit_id", &[K::Visit], Slot::Parent),
    reference("price_list_id", &[K::PriceList], Slot::Other),
];
const JOB_REFS: &[Reference] = &[
    reference("account_id", ACCOUNT, Slot::Account),
    reference("contact_id", &[K::Contact], Slot::Other),
    reference(
        "checklist_template_id",
        &[K::ChecklistTemplate],
        Slot::Other,
    ),
];
const ASSIGNMENT_REFS: &[Reference] = &[
    reference("job_id", &[K::ServiceJob], Slot::Parent),
    reference(
        "checklist_response_id",
        &[K::ChecklistResponse],
        Slot::Other,
    ),
];
const RESPONSE_REFS: &[Reference] = &[
    reference(
        "subject_id",
        &[K::Visit, K::Assignment, K::ServiceJob],
        Slot::Parent,
    ),
    reference("template_id", &[K::ChecklistTemplate], Slot::Other),
];
const CONTACT_REFS: &[Reference] = &[reference("account_id", ACCOUNT, Slot::Account)];
const TEMPLATE_REFS: &[Reference] = &[
    reference("family", &[K::ChecklistTemplate], Slot::Other),
    reference("supersedes", &[K::ChecklistTemplate], Slot::Other),
];
const ACCOUNT_REFS: &[Reference] = &[reference("price_list_id", &[K::PriceList], Slot::Other)];

/// The references of each kind, read only from these typed fields.
pub fn references(kind: RecordKind) -> &'static [Reference] {
    match kind {
        K::Visit => VISIT_REFS,
        K::VisitReport => REPORT_REFS,
        K::Order => ORDER_REFS,
        K::ServiceJob => JOB_REFS,
        K::Assignment => ASSIGNMENT_REFS,
        K::ChecklistResponse => RESPONSE_REFS,
        K::Contact => CONTACT_REFS,
        K::Account => ACCOUNT_REFS,
        K::ChecklistTemplate => TEMPLATE_REFS,
        // A van's movements name products and assignments inside their
        // entries, not as the record's own references.
        K::Product | K::PriceList | K::VanStock => &[],
    }
}

/// The phase of a record of a kind without a status machine whose writable
/// fields still depend on where it stands, read from its JSON: a checklist
/// template is a `draft` until it is `published`. The write table names the
/// phase where it names statuses, and [`check_write`] and the server's check
/// of a push read it where a stateful record's status is read. `None` for
/// every other kind.
pub fn phase(kind: RecordKind, json: &Json) -> Option<&'static str> {
    match kind {
        K::ChecklistTemplate => Some(if json.get("published") == Some(&Json::Bool(true)) {
            "published"
        } else {
            "draft"
        }),
        _ => None,
    }
}

/// The rules of one kind.
pub fn rules_of(kind: RecordKind) -> impl Iterator<Item = &'static FieldRule> {
    FIELD_RULES.iter().filter(move |r| r.kind == kind)
}

/// Whether `role` may write `field` (a table entry's `field`) of `kind` while
/// the record is in `status` (`None` for kinds without a status). `None`
/// when the kind has no such field.
pub fn may_write(kind: RecordKind, field: &str, status: Option<&str>, role: Role) -> Option<bool> {
    let rule = FIELD_RULES
        .iter()
        .find(|r| r.kind == kind && r.field == field)?;
    Some(rule.grants.iter().any(|grant| {
        grant.roles.contains(&role)
            && (grant.statuses.is_empty() || status.is_some_and(|s| grant.statuses.contains(&s)))
    }))
}

/// Whether `role` may write `field` of `kind` in some status: what a new
/// record may hold when `role` creates it (an ad-hoc visit is created in
/// progress with its account; nobody but a reviewer creates a report with a
/// review).
pub fn may_ever_write(kind: RecordKind, field: &str, role: Role) -> bool {
    FIELD_RULES
        .iter()
        .filter(|r| r.kind == kind && r.field == field)
        .any(|r| r.grants.iter().any(|g| g.roles.contains(&role)))
}

/// A write the table refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Locked {
    /// The kind has no such field.
    #[error("a {kind} has no field {field:?}")]
    UnknownField {
        /// The kind.
        kind: RecordKind,
        /// The root key.
        field: String,
    },
    /// The field exists but this role may not write it in this status.
    #[error("{}", locked_message(*.kind, .field, .status.as_deref(), *.role))]
    Field {
        /// The kind.
        kind: RecordKind,
        /// The table's field.
        field: &'static str,
        /// The status the record had.
        status: Option<String>,
        /// Who tried.
        role: Role,
    },
    /// A field user changed what a customer signed (the signature matched).
    #[error(
        "the customer signed this {kind}; ask for a new signature before changing what they signed"
    )]
    Signed {
        /// The kind.
        kind: RecordKind,
    },
}

impl Locked {
    /// What a customer signed, changed by a field user while the signature
    /// still matched it.
    pub fn signed(kind: RecordKind) -> Self {
        Locked::Signed { kind }
    }
}

fn locked_message(kind: RecordKind, field: &str, status: Option<&str>, role: Role) -> String {
    match status {
        Some(status) => format!("a {role} may not change the {field} of a {status} {kind}"),
        None => format!("a {role} may not change the {field} of a {kind}"),
    }
}

/// The table's fields a write from `before` to `after` (both the record's JSON;
/// `before` is `None` for a new record) touches: every root key whose value
/// differs, and for `key.*.sub` entries the sub-field of each entry that
/// differs. For a new record only keys holding something count (an empty text,
/// map or list, `false` and `null` are the defaults every new record has).
pub fn touched(
    kind: RecordKind,
    before: Option<&Json>,
    after: &Json,
) -> Result<Vec<&'static str>, Locked> {
    let empty = serde_json::Map::new();
    let b = before.and_then(Json::as_object).unwrap_or(&empty);
    let a = after.as_object().unwrap_or(&empty);
    let mut out = Vec::new();
    let keys = a.keys().chain(b.keys().filter(|k| !a.contains_key(*k)));
    for key in keys {
        if RESERVED_KEYS.contains(&key.as_str()) {
            continue;
        }
        let (old, new) = (b.get(key), a.get(key));
        let changed = match before {
            Some(_) => old != new,
            None => new.is_some_and(holds_something),
        };
        if !changed {
            continue;
        }
        let Some(top) = rules_of(kind).find(|r| r.field == key.as_str()) else {
            return Err(Locked::UnknownField {
                kind,
                field: key.clone(),
            });
        };
        let nested: Vec<&'static FieldRule> = rules_of(kind)
            .filter(|r| {
                r.field
                    .strip_prefix(key.as_str())
                    .is_some_and(|rest| rest.starts_with(".*."))
            })
            .collect();
        if nested.is_empty() {
            out.push(top.field);
            continue;
        }
        // A map of entries with rules for some of their fields.
        let entries = |v: Option<&Json>| v.and_then(Json::as_object).cloned().unwrap_or_default();
        let (old, new) = (entries(old), entries(new));
        for id in new
            .keys()
            .chain(old.keys().filter(|k| !new.contains_key(*k)))
        {
            let (oe, ne) = (old.get(id), new.get(id));
            if oe == ne {
                continue;
            }
            let sub = |e: Option<&Json>, f: &str| e.and_then(|e| e.get(f)).cloned();
            let mut rest_changed = false;
            let fields: std::collections::BTreeSet<&String> = [oe, ne]
                .into_iter()
                .flatten()
                .filter_map(Json::as_object)
                .flat_map(|m| m.keys())
                .collect();
            if oe.is_none_or(|e| !e.is_object()) || ne.is_none_or(|e| !e.is_object()) {
                rest_changed = true;
            }
            for f in fields {
                if sub(oe, f) == sub(ne, f) {
                    continue;
                }
                match nested
                    .iter()
                    .find(|r| r.field.rsplit('.').next() == Some(f.as_str()))
                {
                    // A new entry may hold the default of a guarded field.
                    Some(r)
                        if oe.is_some()
                            || sub(ne, f).as_ref().is_some_and(holds_something_but_default) =>
                    {
                        out.push(r.field)
                    }
                    Some(_) => {}
                    None => rest_changed = true,
                }
            }
            if rest_changed {
                out.push(top.field);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn holds_something(v: &Json) -> bool {
    match v {
        Json::Null | Json::Bool(false) => false,
        Json::String(s) => !s.is_empty(),
        Json::Array(a) => !a.is_empty(),
        Json::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// Whether a new entry's guarded field holds something other than the value
/// an entry starts with (a new time entry's approval is `pending`).
fn holds_something_but_default(v: &Json) -> bool {
    holds_something(v) && v.as_str() != Some("pending")
}

/// Checks a write from `before` to `after` by `role`, the record being in
/// `status` before it (for a new record: the status it is created in).
pub fn check_write(
    kind: RecordKind,
    before: Option<&Json>,
    after: &Json,
    status: Option<&str>,
    role: Role,
) -> Result<(), Locked> {
    // A kind without statuses may still have a phase (a published template).
    let status = status.or_else(|| before.and_then(|b| phase(kind, b)));
    for field in touched(kind, before, after)? {
        if may_write(kind, field, status, role) != Some(true) {
            return Err(Locked::Field {
                kind,
                field,
                status: status.map(str::to_owned),
                role,
            });
        }
    }
    Ok(())
}

/// The statuses of each stateful kind, in the order of their machine.
pub fn statuses(kind: RecordKind) -> &'static [&'static str] {
    match kind {
        K::Visit => &["planned", "in_progress", "completed", "cancelled", "missed"],
        K::VisitReport => &["draft", "submitted", "approved", "changes_requested"],
        K::Order => &[
            "draft",
            "submitted",
            "pending_approval",
            "confirmed",
            "fulfilled",
            "rejected",
            "cancelled",
        ],
        K::ServiceJob => &[
            "open",
            "scheduled",
            "in_progress",
            "completed",
            "closed",
            "cancelled",
        ],
        K::Assignment => &[
            "scheduled",
            "dispatched",
            "accepted",
            "rejected",
            "traveling",
            "on_site",
            "in_progress",
            "on_break",
            "completed",
            "cannot_complete",
            "cancelled",
        ],
        K::ChecklistTemplate => &["draft", "published"],
        _ => &[],
    }
}

const ROLES: [Role; 5] = [
    Role::Rep,
    Role::Technician,
    Role::Manager,
    Role::Admin,
    Role::Server,
];

/// `docs/rules.md`: the table, one section per kind, one row per field, one
/// column per role, each cell the statuses in which that role may write the
/// field (`any`, or `—` for never).
pub fn render_markdown() -> String {
    let mut out = String::new();
    out.push_str(
        "# Who may write what\n\n\
         Rendered from `client-core/src/model/rules.rs` (`FIELD_RULES`); a test fails when \
         this file and the table differ. Run `cargo test -p fieldsync-core rules_md -- \
         --ignored` to write it again after changing the table.\n\n\
         The device refuses a write the table does not allow before storing it, and the \
         server refuses a pushed change that makes one (a rejection in the device's ledger, \
         the record back at the server's version). A cell lists the statuses the record \
         must have **before** the write; `any` means every status (or a kind without \
         one); `—` means never. A root key a kind does not list here is refused.\n\n\
         Beside the table: `meta.id`, `meta.org` and `kind` never change; `meta.owner`, \
         `meta.team` and `meta.territory` are fixed for reps and technicians and changed by \
         managers within their team and administrators within the organisation, to users, \
         teams and territories that exist; `status` and `history` change only through the \
         state machines of `docs/domain.md`, each new event continuing from the status the \
         record had (closing a job is decided in the office, through the server, never \
         pushed from a device); a field user cannot change what a customer signed while the signature \
         matches it. A checklist template has no status but a phase, `draft` until it is \
         `published` (read from its `published` field), which its cells name.\n",
    );
    let mut kind_now: Option<RecordKind> = None;
    for r in FIELD_RULES {
        if kind_now != Some(r.kind) {
            kind_now = Some(r.kind);
            let _ = write!(out, "\n## {}\n\n| field |", r.kind);
            for role in ROLES {
                let _ = write!(out, " {role} |");
            }
            out.push_str("\n|---|");
            for _ in ROLES {
                out.push_str("---|");
            }
            out.push('\n');
        }
        let _ = write!(out, "| `{}` |", r.field);
        for role in ROLES {
            let cell = cell(r, role);
            let _ = write!(out, " {cell} |");
        }
        out.push('\n');
    }
    out
}

fn cell(r: &FieldRule, role: Role) -> String {
    let mut statuses: Vec<&str> = Vec::new();
    for grant in r.grants.iter().filter(|g| g.roles.contains(&role)) {
        if grant.statuses.is_empty() {
            return "any".into();
        }
        statuses.extend(grant.statuses.iter().copied());
    }
    if statuses.is_empty() {
        return "—".into();
    }
    // In the machine's order.
    let order = self::statuses(r.kind);
    statuses.sort_by_key(|s| order.iter().position(|o| o == s));
    statuses.dedup();
    statuses.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_is_writable_only_by_the_roles_and_in_the_statuses_it_names() {
        assert_eq!(
            may_write(K::Order, "lines", Some("draft"), Role::Rep),
            Some(true)
        );
        assert_eq!(
            may_write(K::Order, "lines", Some("submitted"), Role::Rep),
            Some(false)
        );
        assert_eq!(
            may_write(K::Order, "lines", Some("submitted"), Role::Server),
            Some(true)
        );
        assert_eq!(
            may_write(K::VisitReport, "summary", Some("approved"), Role::Rep),
            Some(false)
        );
        assert_eq!(
            may_write(K::VisitReport, "comments", Some("submitted"), Role::Rep),
            Some(false)
        );
        assert_eq!(
            may_write(K::VisitReport, "comments", Some("submitted"), Role::Manager),
            Some(true)
        );
        assert_eq!(
            may_write(K::Visit, "check_out", Some("completed"), Role::Rep),
            Some(false)
        );
        assert_eq!(may_write(K::Product, "sku", None, Role::Rep), Some(false));
        assert_eq!(may_write(K::Visit, "nonsense", None, Role::Admin), None);
    }

    #[test]
    fn touched_names_changed_fields_unknown_keys_and_entry_sub_fields() {
        let before = serde_json::json!({
            "kind": "assignment", "meta": {}, "legacy": "x",
            "time_entries": {"e1": {"kind": "work", "approval": "pending", "note": null}},
            "parts": {}
        });
        let mut after = before.clone();
        // A key the kind does not have is left alone when unchanged, refused when written.
        after["time_entries"]["e1"]["approval"] = "approved".into();
        assert_eq!(
            touched(K::Assignment, Some(&before), &after),
            Ok(vec!["time_entries.*.approval"])
        );
        let mut hidden = after.clone();
        hidden["subject_id"] = "someone else's order".into();
        assert_eq!(
            touched(K::Assignment, Some(&before), &hidden),
            Err(Locked::UnknownField {
                kind: K::Assignment,
                field: "subject_id".into()
            })
        );
        assert_eq!(
            touched(K::Assignment, Some(&before), &after),
            Ok(vec!["time_entries.*.approval"])
        );
        after["time_entries"]["e1"]["note"] = "late".into();
        assert_eq!(
            touched(K::Assignment, Some(&before), &after),
            Ok(vec!["time_entries", "time_entries.*.approval"])
        );
        // A new entry, pending: only the entries themselves.
        let mut added = before.clone();
        added["time_entries"]["e2"] = serde_json::json!({"kind": "work", "approval": "pending"});
        assert_eq!(
            touched(K::Assignment, Some(&before), &added),
            Ok(vec!["time_entries"])
        );
        added["time_entries"]["e2"]["approval"] = "approved".into();
        assert_eq!(
            touched(K::Assignment, Some(&before), &added),
            Ok(vec!["time_entries", "time_entries.*.approval"])
        );
        // A new record: only keys holding something.
        let new = serde_json::json!({"kind": "visit", "meta": {}, "notes": "", "order_ids": {}, "account_id": "a"});
        assert_eq!(touched(K::Visit, None, &new), Ok(vec!["account_id"]));
    }

    /// `docs/rules.md` is this table rendered.
    #[test]
    fn rules_md_is_the_table_rendered() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/rules.md");
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == render_markdown(),
            "docs/rules.md differs from FIELD_RULES; run `cargo test -p fieldsync-core rules_md -- --ignored`"
        );
    }

    /// Writes `docs/rules.md` from the table.
    #[test]
    #[ignore = "writes docs/rules.md"]
    fn rules_md_write() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/rules.md");
        std::fs::write(path, render_markdown()).expect("write docs/rules.md");
    }
}
