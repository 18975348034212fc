//! The records and enums apps see: flat, with ids as strings, times as
//! milliseconds since the epoch (UTC), money in minor units with its currency,
//! quantities in whole or fractional units as `f64` at the edge (stored exactly
//! as ten-thousandths inside).

use fieldsync_core::model::{
    Assignment, AssignmentStatus, Order, Status, TimeKind, Visit, VisitOutcome, VisitReport,
};

/// A GPS fix from the device.
#[derive(Debug, Clone, Copy, PartialEq, uniffi::Record)]
pub struct GeoFix {
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lng: f64,
    /// Horizontal accuracy radius in metres, when the OS reports it.
    pub accuracy_m: Option<f64>,
}

impl From<GeoFix> for fieldsync_core::model::GeoPoint {
    fn from(f: GeoFix) -> Self {
        fieldsync_core::model::GeoPoint {
            lat: f.lat,
            lng: f.lng,
            accuracy_m: f.accuracy_m,
        }
    }
}

/// Who is logged in on this device.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SessionInfo {
    /// User id.
    pub user_id: String,
    /// `rep`, `technician`, `manager` or `admin`.
    pub role: String,
    /// Name to show.
    pub display_name: String,
    /// This device's id (keep it for the app's lifetime).
    pub device_id: String,
}

/// The tokens to keep in the platform's keychain and give back with
/// `restore_session` after the app restarts.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SessionTokens {
    /// Short-lived bearer token.
    pub access_token: String,
    /// Rotating refresh token.
    pub refresh_token: String,
}

/// How a visit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Outcome {
    /// An order was taken.
    OrderTaken,
    /// Visited, no order.
    NoOrder,
    /// Another visit is needed.
    FollowUp,
    /// The outlet was closed.
    Closed,
    /// The contact was not available.
    ContactUnavailable,
}

impl From<Outcome> for VisitOutcome {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::OrderTaken => VisitOutcome::OrderTaken,
            Outcome::NoOrder => VisitOutcome::NoOrder,
            Outcome::FollowUp => VisitOutcome::FollowUp,
            Outcome::Closed => VisitOutcome::Closed,
            Outcome::ContactUnavailable => VisitOutcome::ContactUnavailable,
        }
    }
}

/// A visit as a field app lists and shows it.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct VisitItem {
    /// Id.
    pub id: String,
    /// The account visited.
    pub account_id: String,
    /// `planned`, `in_progress`, `completed`, `missed`, `cancelled`.
    pub status: String,
    /// Planned start.
    pub planned_start_ms: Option<i64>,
    /// Planned end.
    pub planned_end_ms: Option<i64>,
    /// Check-in time.
    pub check_in_ms: Option<i64>,
    /// Check-out time.
    pub check_out_ms: Option<i64>,
    /// Distance to the site at check-in, metres.
    pub check_in_distance_m: Option<f64>,
    /// The geofence verdict at check-in: `inside`, `outside`,
    /// `unverifiable_offline` (no fix) or `no_site_coords`; the server's
    /// once it has checked the fix, else the device's. Never blocks work.
    pub check_in_verdict: Option<String>,
    /// The geofence verdict at check-out (as `check_in_verdict`).
    pub check_out_verdict: Option<String>,
    /// How it ended.
    pub outcome: Option<String>,
    /// Notes.
    pub notes: String,
    /// Planned (`false` for an ad-hoc visit).
    pub planned: bool,
    /// The contact met.
    pub contact_id: Option<String>,
    /// Suggested next visit date, `YYYY-MM-DD`.
    pub next_visit_date: Option<String>,
    /// The manager's instructions.
    pub instructions: Option<String>,
    /// Held for reference only (an earlier visit at one of the user's
    /// accounts, by a colleague or before the user's window): show it, offer
    /// no action on it (each would fail with `ReadOnly`).
    pub read_only: bool,
}

impl VisitItem {
    pub(crate) fn of(v: &Visit) -> Self {
        VisitItem {
            id: v.meta.id.to_string(),
            account_id: v.account_id.to_string(),
            status: v.status.as_str().into(),
            planned_start_ms: v.planned_start.map(|t| t.at_ms),
            planned_end_ms: v.planned_end.map(|t| t.at_ms),
            check_in_ms: v.check_in.as_ref().map(|c| c.at.at_ms),
            check_out_ms: v.check_out.as_ref().map(|c| c.at.at_ms),
            check_in_distance_m: v
                .check_in
                .as_ref()
                .and_then(|c| c.server_distance_m.or(c.distance_m)),
            check_in_verdict: v
                .check_in
                .as_ref()
                .map(|c| c.effective_verdict().as_str().into()),
            check_out_verdict: v
                .check_out
                .as_ref()
                .map(|c| c.effective_verdict().as_str().into()),
            outcome: v.outcome.map(|o| o.as_str().into()),
            notes: v.notes.clone(),
            planned: v.planned,
            contact_id: v.contact_id.map(|c| c.to_string()),
            next_visit_date: v.next_visit_date.clone(),
            instructions: v.instructions.clone(),
            read_only: false,
        }
    }
}

/// A visit report.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ReportItem {
    /// Id.
    pub id: String,
    /// The visit it reports on.
    pub visit_id: String,
    /// `draft`, `submitted`, `approved`, `changes_requested`.
    pub status: String,
    /// The rep's summary.
    pub summary: String,
    /// The rep's observations.
    pub observations: String,
    /// KPI values (target vs actual), by name.
    pub kpis: Vec<KpiItem>,
    /// The manager's comments, oldest first.
    pub comments: Vec<String>,
}

impl ReportItem {
    pub(crate) fn of(r: &VisitReport) -> Self {
        let mut comments: Vec<_> = r.comments.values().collect();
        comments.sort_by_key(|c| c.at.at_ms);
        ReportItem {
            id: r.meta.id.to_string(),
            visit_id: r.visit_id.to_string(),
            status: r.status.as_str().into(),
            summary: r.summary.clone(),
            observations: r.observations.clone(),
            kpis: r
                .kpis
                .iter()
                .map(|(name, k)| KpiItem {
                    name: name.clone(),
                    target: k.target,
                    actual: k.actual,
                    unit: k.unit.clone(),
                })
                .collect(),
            comments: comments.into_iter().map(|c| c.text.clone()).collect(),
        }
    }
}

/// One order line.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct OrderLineItem {
    /// Line id.
    pub line_id: String,
    /// Product.
    pub product_id: String,
    /// Quantity in units.
    pub quantity: f64,
    /// Unit price, minor units.
    pub unit_price_minor: i64,
    /// Discount in basis points of the line (1 % = 100).
    pub discount_bp: Option<u32>,
    /// Discount as an amount, minor units (capped at the line's gross).
    pub discount_amount_minor: Option<i64>,
    /// Tax rate in basis points (23 % = 2300).
    pub tax_rate_bp: u32,
    /// Line total after discount and tax, minor units.
    pub total_minor: i64,
}

/// An order with its lines and totals (computed, never stored).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct OrderItem {
    /// Id.
    pub id: String,
    /// The account.
    pub account_id: String,
    /// `draft`, `submitted`, `pending_approval`, `confirmed`, ...
    pub status: String,
    /// ISO 4217 currency.
    pub currency: String,
    /// The visit it was taken on.
    pub visit_id: Option<String>,
    /// The price list its lines were priced from.
    pub price_list_id: Option<String>,
    /// Delivery site (one of the account's sites).
    pub ship_to: Option<String>,
    /// Requested delivery date, `YYYY-MM-DD`.
    pub delivery_date: Option<String>,
    /// Free notes.
    pub notes: Option<String>,
    /// Lines.
    pub lines: Vec<OrderLineItem>,
    /// Sum before discounts.
    pub gross_minor: i64,
    /// Discounts.
    pub discount_minor: i64,
    /// Tax.
    pub tax_minor: i64,
    /// Total to pay.
    pub total_minor: i64,
}

impl OrderItem {
    pub(crate) fn of(o: &Order) -> Result<Self, crate::FieldsyncError> {
        let totals = o.totals().map_err(|e| crate::FieldsyncError::Validation {
            reason: e.to_string(),
        })?;
        Ok(OrderItem {
            id: o.meta.id.to_string(),
            account_id: o.account_id.to_string(),
            status: o.status.as_str().into(),
            currency: o.currency.clone(),
            visit_id: o.visit_id.map(|v| v.to_string()),
            price_list_id: o.price_list_id.map(|v| v.to_string()),
            ship_to: o.ship_to.map(|v| v.to_string()),
            delivery_date: o.delivery_date.clone(),
            notes: o.notes.clone(),
            lines: o
                .lines
                .iter()
                .map(|(id, l)| OrderLineItem {
                    line_id: id.to_string(),
                    product_id: l.product_id.to_string(),
                    quantity: l.qty.raw() as f64 / fieldsync_core::model::Qty::SCALE as f64,
                    unit_price_minor: l.unit_price.minor,
                    discount_bp: l.discount_percent_bp,
                    discount_amount_minor: l.discount_amount_minor,
                    tax_rate_bp: l.tax_rate_bp,
                    total_minor: totals.lines.get(id).map_or(0, |t| t.total),
                })
                .collect(),
            gross_minor: totals.gross,
            discount_minor: totals.discount,
            tax_minor: totals.tax,
            total_minor: totals.total,
        })
    }
}

/// Where an assignment can go next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum AssignmentStep {
    /// Accept the dispatched assignment.
    Accept,
    /// Decline it (reason required).
    Decline,
    /// Start driving.
    Travel,
    /// Arrived on site.
    OnSite,
    /// Start work.
    StartWork,
    /// Take a break.
    Break,
    /// Complete the work.
    Complete,
    /// Could not complete (reason required).
    CannotComplete,
    /// Send it (again) to the technician: a scheduled assignment, or one the
    /// technician declined (managers and administrators).
    Dispatch,
}

impl From<AssignmentStep> for AssignmentStatus {
    fn from(s: AssignmentStep) -> Self {
        match s {
            AssignmentStep::Accept => AssignmentStatus::Accepted,
            AssignmentStep::Decline => AssignmentStatus::Rejected,
            AssignmentStep::Travel => AssignmentStatus::Traveling,
            AssignmentStep::OnSite => AssignmentStatus::OnSite,
            AssignmentStep::StartWork => AssignmentStatus::InProgress,
            AssignmentStep::Break => AssignmentStatus::OnBreak,
            AssignmentStep::Complete => AssignmentStatus::Completed,
            AssignmentStep::CannotComplete => AssignmentStatus::CannotComplete,
            AssignmentStep::Dispatch => AssignmentStatus::Dispatched,
        }
    }
}

/// Kinds of booked time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum TimeKindItem {
    /// Driving.
    Travel,
    /// Working on site.
    Work,
    /// A break.
    Break,
}

impl From<TimeKindItem> for TimeKind {
    fn from(k: TimeKindItem) -> Self {
        match k {
            TimeKindItem::Travel => TimeKind::Travel,
            TimeKindItem::Work => TimeKind::Work,
            TimeKindItem::Break => TimeKind::Break,
        }
    }
}

/// A part used on an assignment.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct PartItem {
    /// Entry id.
    pub id: String,
    /// Product.
    pub product_id: String,
    /// Quantity in units.
    pub quantity: f64,
    /// Serial number of a serialized part.
    pub serial: Option<String>,
    /// Whether the customer is billed for it.
    pub billable: bool,
    /// The van stock it was taken from, if any.
    pub van_stock_id: Option<String>,
}

/// One product's stock in the technician's van.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct VanBalanceItem {
    /// The product.
    pub product_id: String,
    /// Its SKU (empty when the catalogue on the device does not hold it).
    pub sku: String,
    /// Its name.
    pub name: String,
    /// Put in by the office minus used, in units; negative when more was
    /// used than the van received (the office reconciles it).
    pub quantity: f64,
    /// Serial numbers in the van, sorted.
    pub serials: Vec<String>,
    /// Serial numbers used that the van never received, sorted.
    pub unknown_serials: Vec<String>,
}

/// The technician's van and its balances.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct VanStockItem {
    /// The van stock record (name it when booking a part from the van).
    pub id: String,
    /// Its label.
    pub name: String,
    /// Stock per product, by SKU.
    pub balances: Vec<VanBalanceItem>,
}

/// Time booked on an assignment.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TimeItem {
    /// Entry id.
    pub id: String,
    /// `travel`, `work`, `break`.
    pub kind: String,
    /// Start.
    pub start_ms: i64,
    /// End; `None` while the entry runs.
    pub end_ms: Option<i64>,
    /// Note.
    pub note: Option<String>,
    /// `pending`, `approved` or `rejected` (the back office decides).
    pub approval: String,
}

/// An assignment of a technician to a job.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct AssignmentItem {
    /// Id.
    pub id: String,
    /// The job.
    pub job_id: String,
    /// Status name.
    pub status: String,
    /// Scheduled start.
    pub scheduled_start_ms: i64,
    /// Parts used.
    pub parts: Vec<PartItem>,
    /// Time booked.
    pub time: Vec<TimeItem>,
    /// Whether the job's checklist is complete.
    pub checklist_complete: bool,
}

impl AssignmentItem {
    pub(crate) fn of(a: &Assignment) -> Self {
        AssignmentItem {
            id: a.meta.id.to_string(),
            job_id: a.job_id.to_string(),
            status: a.status.as_str().into(),
            scheduled_start_ms: a.scheduled_start.at_ms,
            parts: a
                .parts
                .iter()
                .map(|(id, p)| PartItem {
                    id: id.to_string(),
                    product_id: p.product_id.to_string(),
                    quantity: p.qty.raw() as f64 / fieldsync_core::model::Qty::SCALE as f64,
                    serial: p.serial.clone(),
                    billable: p.billable,
                    van_stock_id: p.van_stock_id.map(|v| v.to_string()),
                })
                .collect(),
            time: a
                .time_entries
                .iter()
                .map(|(id, t)| TimeItem {
                    id: id.to_string(),
                    kind: serde_json::to_value(t.kind)
                        .ok()
                        .and_then(|j| j.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    start_ms: t.start.at_ms,
                    end_ms: t.end.map(|e| e.at_ms),
                    note: t.note.clone(),
                    approval: t.approval.as_str().into(),
                })
                .collect(),
            checklist_complete: a.checklist_complete,
        }
    }
}

/// One answer to a checklist question.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct AnswerItem {
    /// The question's key in the template.
    pub question: String,
    /// Yes/no answer, or
    pub yes_no: Option<bool>,
    /// a number, or
    pub number: Option<f64>,
    /// text (also for choices and barcodes).
    pub text: Option<String>,
}

/// A field with concurrent values, as `conflicts()` lists them.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ConflictItem {
    /// Path of the field, e.g. `notes` or `lines/<id>/qty`.
    pub field: String,
    /// The values as JSON text, the shown one first.
    pub values: Vec<String>,
}

/// A change the server refused, kept until the user deals with it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RejectionItem {
    /// Ledger entry.
    pub seq: i64,
    /// The record.
    pub record_id: String,
    /// Its kind.
    pub kind: String,
    /// Stable code (`transition`, `validation`, `forbidden`, ...).
    pub code: String,
    /// Why, to show the user.
    pub message: String,
    /// When the server refused it.
    pub at_ms: i64,
}

/// Sync phases reported to the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum SyncStage {
    /// First download of everything in scope.
    Priming,
    /// Sending local changes.
    Pushing,
    /// Receiving others' changes.
    Pulling,
    /// Uploading attachments (photos, signatures, documents).
    Uploading,
}

/// What live sync reports.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum LiveSyncEvent {
    /// The live channel is open.
    Connected,
    /// A sync ran (a change elsewhere, or a reconnection).
    Synced {
        /// What it did.
        summary: SyncSummary,
    },
    /// A sync failed; live sync carries on.
    SyncFailed {
        /// Why.
        detail: String,
    },
    /// The channel closed; it reconnects after `retry_in_ms`.
    Disconnected {
        /// Why.
        reason: String,
        /// Milliseconds until the next attempt.
        retry_in_ms: u64,
    },
    /// Live sync ended (stopped, revoked or logged out).
    Stopped {
        /// Why.
        reason: String,
    },
}

/// What a sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct SyncSummary {
    /// Records received when priming.
    pub primed: u64,
    /// Records whose changes the server accepted.
    pub pushed: u64,
    /// Records the server refused (see `rejections()`).
    pub rejected: u64,
    /// Changes received.
    pub pulled: u64,
    /// Records that left this device's scope and were dropped (unless they
    /// held unsynced changes).
    pub removed: u64,
    /// Requests made.
    pub round_trips: u64,
    /// Attachments uploaded.
    pub attachments_uploaded: u64,
    /// Attachments waiting for a later sync.
    pub attachments_pending: u64,
    /// Attachments the server refused for good in this sync (see
    /// `refused_attachments()`).
    pub attachments_refused: u64,
    /// Records replaced because an administrator erased personal data they
    /// held (their history was rewritten on the server); unsynced edits were
    /// carried over, except edits of the erased fields.
    pub rewritten: u64,
    /// Edits of a store restored from an old phone backup that the server
    /// refused because their change numbers were already taken, made again as
    /// new changes and sent in the same sync (nothing was lost; worth a line
    /// in the app's sync log, not an alert).
    pub carried_over: u64,
    /// The server's database was restored from a backup since the last sync:
    /// this device sent back what it held that the server had lost.
    pub server_restored: bool,
}

/// A catalogue item.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ProductItem {
    /// Id.
    pub id: String,
    /// Stock-keeping unit.
    pub sku: String,
    /// Name.
    pub name: String,
    /// A spare part for service jobs.
    pub spare_part: bool,
}

/// A file kept on the device for one or more records.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct AttachmentItem {
    /// SHA-256 of the bytes (lowercase hex): the name the server serves it by.
    pub sha256: String,
    /// `photo`, `signature` or `document`.
    pub kind: String,
    /// MIME type.
    pub content_type: String,
    /// Size in bytes.
    pub size: u64,
    /// Every record it is attached to, the first one first.
    pub record_ids: Vec<String>,
    /// When it was captured (ms since the epoch, UTC).
    pub captured_at_ms: i64,
    /// Where it was captured, when known.
    pub gps: Option<GeoFix>,
    /// Whether the server has the whole file.
    pub uploaded: bool,
}

impl AttachmentItem {
    pub(crate) fn of(a: &fieldsync_core::store::AttachmentInfo) -> Self {
        AttachmentItem {
            sha256: a.sha256.clone(),
            kind: a.kind.as_str().into(),
            content_type: a.content_type.clone(),
            size: a.size,
            record_ids: a.records.iter().map(ToString::to_string).collect(),
            captured_at_ms: a.captured_at.at_ms,
            gps: a.gps.map(|g| GeoFix {
                lat: g.lat,
                lng: g.lng,
                accuracy_m: g.accuracy_m,
            }),
            uploaded: a.uploaded,
        }
    }
}

/// An attachment the server refused for good: it is kept on the device but
/// not sent again until the app calls `retry_attachment`.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct RefusedAttachmentItem {
    /// The attachment.
    pub attachment: AttachmentItem,
    /// The server's stable code (`attachment_too_large`, `bad_request`,
    /// `forbidden`, `hash_mismatch`, ...).
    pub code: String,
    /// The server's reason, to show.
    pub message: String,
    /// When it was refused (device clock, ms).
    pub at_ms: i64,
}

/// Whether a customer signature still matches what the customer saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum SignatureState {
    /// The signed content is unchanged.
    Matches,
    /// Something the customer signed changed since.
    NoLongerMatches,
    /// Not signed.
    Unsigned,
}

/// A record's signature and its verdict.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SignatureCheck {
    /// The verdict.
    pub state: SignatureState,
    /// Who signed.
    pub signer_name: Option<String>,
    /// When (ms since the epoch, UTC).
    pub signed_at_ms: Option<i64>,
    /// SHA-256 of the signature image (an attachment of the record).
    pub image_sha256: Option<String>,
    /// SHA-256 of the content when it was signed.
    pub signed_sha256: Option<String>,
    /// SHA-256 of the content now.
    pub current_sha256: Option<String>,
}

impl SignatureCheck {
    pub(crate) fn of(
        signature: Option<&fieldsync_core::model::SignatureRef>,
        verdict: fieldsync_core::model::SignatureVerdict,
    ) -> Self {
        use fieldsync_core::model::SignatureVerdict as V;
        let (state, current) = match verdict {
            V::Matches => (
                SignatureState::Matches,
                signature.map(|s| s.document_sha256.clone()),
            ),
            V::NoLongerMatches { current, .. } => (SignatureState::NoLongerMatches, Some(current)),
            V::Unsigned => (SignatureState::Unsigned, None),
        };
        SignatureCheck {
            state,
            signer_name: signature.map(|s| s.signer_name.clone()),
            signed_at_ms: signature.map(|s| s.at.at_ms),
            image_sha256: signature.map(|s| s.image_sha256.clone()),
            signed_sha256: signature.map(|s| s.document_sha256.clone()),
            current_sha256: current,
        }
    }
}

fn priority_name(p: fieldsync_core::model::Priority) -> &'static str {
    use fieldsync_core::model::Priority as P;
    match p {
        P::Low => "low",
        P::Normal => "normal",
        P::High => "high",
        P::Urgent => "urgent",
    }
}

/// A site of an account.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SiteItem {
    /// Location id (give it to `set_order_details` as the ship-to).
    pub id: String,
    /// Name, e.g. "Main store".
    pub name: String,
    /// One-line postal address.
    pub address: String,
    /// Coordinates, when geocoded.
    pub coords: Option<GeoFix>,
    /// Geofence radius for check-in verdicts, metres.
    pub geofence_radius_m: f64,
    /// Opening hours as text.
    pub opening_hours: Option<String>,
}

/// A customer account.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct AccountItem {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// The office's customer code (searchable), when it gave one.
    pub code: Option<String>,
    /// `outlet`, `distributor`, `customer`, ...
    pub account_type: String,
    /// `active`, `prospect`, `inactive`.
    pub account_status: String,
    /// The price list that applies, when the office set one.
    pub price_list_id: Option<String>,
    /// Target days between visits.
    pub visit_frequency_days: Option<u32>,
    /// Sites.
    pub sites: Vec<SiteItem>,
}

impl AccountItem {
    pub(crate) fn of(a: &fieldsync_core::model::Account) -> Self {
        AccountItem {
            id: a.meta.id.to_string(),
            name: a.name.clone(),
            code: a.code.clone(),
            account_type: a.account_type.clone(),
            account_status: a.account_status.clone(),
            price_list_id: a.price_list_id.map(|p| p.to_string()),
            visit_frequency_days: a.visit_frequency_days,
            sites: a
                .locations
                .iter()
                .map(|(id, l)| SiteItem {
                    id: id.to_string(),
                    name: l.name.clone(),
                    address: l.address.clone(),
                    coords: l.coords.map(|c| GeoFix {
                        lat: c.lat,
                        lng: c.lng,
                        accuracy_m: c.accuracy_m,
                    }),
                    geofence_radius_m: l.geofence_radius_m,
                    opening_hours: l.opening_hours.clone(),
                })
                .collect(),
        }
    }
}

/// A person at a customer.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ContactItem {
    /// Id.
    pub id: String,
    /// Their account.
    pub account_id: String,
    /// Full name.
    pub name: String,
    /// Role at the customer, e.g. "buyer".
    pub role: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Consent to be contacted for marketing.
    pub marketing_consent: bool,
}

impl ContactItem {
    pub(crate) fn of(c: &fieldsync_core::model::Contact) -> Self {
        ContactItem {
            id: c.meta.id.to_string(),
            account_id: c.account_id.to_string(),
            name: c.name.clone(),
            role: c.role.clone(),
            phone: c.phone.clone(),
            email: c.email.clone(),
            marketing_consent: c.marketing_consent,
        }
    }
}

/// What a new contact holds.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct NewContact {
    /// Full name (required).
    pub name: String,
    /// Role at the customer.
    pub role: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Consent to be contacted for marketing.
    pub marketing_consent: bool,
}

/// A product's price on a list.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PriceEntry {
    /// The product.
    pub product_id: String,
    /// Unit price, minor units of the list's currency.
    pub unit_price_minor: i64,
    /// Largest discount a rep gives without a manager's approval, basis points.
    pub max_discount_bp: u32,
}

/// A price list.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PriceListItem {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// ISO 4217 currency of every price.
    pub currency: String,
    /// Prices, by product id.
    pub items: Vec<PriceEntry>,
}

impl PriceListItem {
    pub(crate) fn of(l: &fieldsync_core::model::PriceList) -> Self {
        PriceListItem {
            id: l.meta.id.to_string(),
            name: l.name.clone(),
            currency: l.currency.clone(),
            items: l
                .items
                .iter()
                .map(|(product, item)| PriceEntry {
                    product_id: product.to_string(),
                    unit_price_minor: item.unit_price.minor,
                    max_discount_bp: item.max_discount_bp,
                })
                .collect(),
        }
    }
}

/// A KPI measured on a visit: the target and what was found.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct KpiItem {
    /// KPI name, e.g. `facings`.
    pub name: String,
    /// The target, when there is one.
    pub target: Option<f64>,
    /// What was measured.
    pub actual: Option<f64>,
    /// Unit, e.g. "facings", "%".
    pub unit: String,
}

/// The kind of answer a checklist question takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum QuestionKindItem {
    /// Yes or no.
    YesNo,
    /// One of the question's choices.
    Choice,
    /// A number.
    Number,
    /// Free text.
    Text,
    /// A photo (an attachment of the response's subject, by SHA-256).
    Photo,
    /// A signature (an attachment, by SHA-256).
    Signature,
    /// A scanned barcode.
    Barcode,
}

impl From<QuestionKindItem> for fieldsync_core::model::QuestionKind {
    fn from(k: QuestionKindItem) -> Self {
        use fieldsync_core::model::QuestionKind as K;
        match k {
            QuestionKindItem::YesNo => K::YesNo,
            QuestionKindItem::Choice => K::Choice,
            QuestionKindItem::Number => K::Number,
            QuestionKindItem::Text => K::Text,
            QuestionKindItem::Photo => K::Photo,
            QuestionKindItem::Signature => K::Signature,
            QuestionKindItem::Barcode => K::Barcode,
        }
    }
}

impl From<fieldsync_core::model::QuestionKind> for QuestionKindItem {
    fn from(k: fieldsync_core::model::QuestionKind) -> Self {
        use fieldsync_core::model::QuestionKind as K;
        match k {
            K::YesNo => QuestionKindItem::YesNo,
            K::Choice => QuestionKindItem::Choice,
            K::Number => QuestionKindItem::Number,
            K::Text => QuestionKindItem::Text,
            K::Photo => QuestionKindItem::Photo,
            K::Signature => QuestionKindItem::Signature,
            K::Barcode => QuestionKindItem::Barcode,
        }
    }
}

/// One question of a checklist template.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct QuestionItem {
    /// The question's key in the template (answers name it).
    pub key: String,
    /// Position in the form, from 1.
    pub position: u32,
    /// The question.
    pub text: String,
    /// Kind of answer.
    pub kind: QuestionKindItem,
    /// Options of a choice question.
    pub choices: Vec<String>,
    /// Must be answered when shown.
    pub required: bool,
    /// Shown only when this question ...
    pub show_if_question: Option<String>,
    /// ... has this answer (`yes`, `no`, a choice, a number as text).
    pub show_if_equals: Option<String>,
}

/// A checklist template (published by the office; a change is a new version).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ChecklistTemplateItem {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Version, from 1.
    pub version: u32,
    /// Questions in form order.
    pub questions: Vec<QuestionItem>,
}

impl ChecklistTemplateItem {
    pub(crate) fn of(t: &fieldsync_core::model::ChecklistTemplate) -> Self {
        let mut questions: Vec<QuestionItem> = t
            .questions
            .iter()
            .map(|(key, q)| QuestionItem {
                key: key.clone(),
                position: q.position,
                text: q.text.clone(),
                kind: q.kind.into(),
                choices: q.choices.clone(),
                required: q.required,
                show_if_question: q.show_if.as_ref().map(|c| c.question.clone()),
                show_if_equals: q.show_if.as_ref().map(|c| c.equals.clone()),
            })
            .collect();
        questions.sort_by(|a, b| (a.position, &a.key).cmp(&(b.position, &b.key)));
        ChecklistTemplateItem {
            id: t.meta.id.to_string(),
            name: t.name.clone(),
            version: t.version,
            questions,
        }
    }
}

/// An answer's value, one variant per question kind.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum AnswerValueItem {
    /// Yes or no.
    YesNo {
        /// The answer.
        value: bool,
    },
    /// One of the choices.
    Choice {
        /// The choice, as the template spells it.
        value: String,
    },
    /// A number.
    Number {
        /// The answer.
        value: f64,
    },
    /// Free text.
    Text {
        /// The answer.
        value: String,
    },
    /// A photo kept with `attach_photo` (its SHA-256).
    Photo {
        /// SHA-256 of the attachment.
        sha256: String,
    },
    /// A drawn signature kept with `attach_file`/`attach_photo` (its SHA-256).
    Signature {
        /// SHA-256 of the attachment.
        sha256: String,
    },
    /// A scanned barcode.
    Barcode {
        /// The code read.
        value: String,
    },
}

impl From<AnswerValueItem> for fieldsync_core::model::AnswerValue {
    fn from(v: AnswerValueItem) -> Self {
        use fieldsync_core::model::AnswerValue as A;
        match v {
            AnswerValueItem::YesNo { value } => A::YesNo(value),
            AnswerValueItem::Choice { value } => A::Choice(value),
            AnswerValueItem::Number { value } => A::Number(value),
            AnswerValueItem::Text { value } => A::Text(value),
            AnswerValueItem::Photo { sha256 } => A::Photo(sha256),
            AnswerValueItem::Signature { sha256 } => A::Signature(sha256),
            AnswerValueItem::Barcode { value } => A::Barcode(value),
        }
    }
}

impl From<&fieldsync_core::model::AnswerValue> for AnswerValueItem {
    fn from(v: &fieldsync_core::model::AnswerValue) -> Self {
        use fieldsync_core::model::AnswerValue as A;
        match v.clone() {
            A::YesNo(value) => AnswerValueItem::YesNo { value },
            A::Choice(value) => AnswerValueItem::Choice { value },
            A::Number(value) => AnswerValueItem::Number { value },
            A::Text(value) => AnswerValueItem::Text { value },
            A::Photo(sha256) => AnswerValueItem::Photo { sha256 },
            A::Signature(sha256) => AnswerValueItem::Signature { sha256 },
            A::Barcode(value) => AnswerValueItem::Barcode { value },
        }
    }
}

/// One given answer.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct GivenAnswer {
    /// The question's key.
    pub question: String,
    /// The value.
    pub value: AnswerValueItem,
    /// When it was given.
    pub at_ms: i64,
}

/// A checklist being filled, with what the form shows now.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ChecklistItem {
    /// Response id.
    pub id: String,
    /// The template answered.
    pub template_id: String,
    /// Its version.
    pub template_version: u32,
    /// The visit or assignment it is filled on.
    pub subject_id: String,
    /// Answers so far, in form order.
    pub answers: Vec<GivenAnswer>,
    /// The questions shown given the answers (show-if), in form order.
    pub shown_questions: Vec<String>,
    /// Shown required questions still unanswered: empty means it can be completed.
    pub missing_required: Vec<String>,
    /// Marked complete.
    pub completed: bool,
}

impl ChecklistItem {
    pub(crate) fn of(
        r: &fieldsync_core::model::ChecklistResponse,
        t: &fieldsync_core::model::ChecklistTemplate,
    ) -> Self {
        let shown = r.shown_questions(t);
        let position = |key: &str| t.questions.get(key).map_or(u32::MAX, |q| q.position);
        let mut answers: Vec<GivenAnswer> = r
            .answers
            .iter()
            .map(|(q, a)| GivenAnswer {
                question: q.clone(),
                value: (&a.value).into(),
                at_ms: a.at.at_ms,
            })
            .collect();
        answers.sort_by(|a, b| {
            (position(&a.question), &a.question).cmp(&(position(&b.question), &b.question))
        });
        ChecklistItem {
            id: r.meta.id.to_string(),
            template_id: r.template_id.to_string(),
            template_version: r.template_version,
            subject_id: r.subject_id.to_string(),
            answers,
            shown_questions: shown,
            missing_required: r.missing_required(t),
            completed: r.completed,
        }
    }
}

/// A service job, as a technician's job screen shows it.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct JobItem {
    /// Id.
    pub id: String,
    /// The customer.
    pub account_id: String,
    /// `open`, `scheduled`, `in_progress`, `completed`, `closed`, `cancelled`.
    pub status: String,
    /// `repair`, `installation`, `maintenance`, ...
    pub job_type: String,
    /// `low`, `normal`, `high`, `urgent`.
    pub priority: String,
    /// What the customer reported.
    pub description: String,
    /// The equipment (asset tag or serial).
    pub asset: Option<String>,
    /// SLA due time.
    pub sla_due_ms: Option<i64>,
    /// How it was resolved.
    pub resolution: Option<String>,
    /// Fixed on the first visit.
    pub first_time_fix: Option<bool>,
    /// When it was completed.
    pub completed_at_ms: Option<i64>,
    /// Completing an assignment needs the checklist.
    pub requires_checklist: bool,
    /// The checklist template to fill.
    pub checklist_template_id: Option<String>,
    /// Completing an assignment needs the customer's signature.
    pub requires_signature: bool,
    /// Held for reference only (an earlier job at one of the user's
    /// accounts): show it, offer no action on it.
    pub read_only: bool,
}

impl JobItem {
    pub(crate) fn of(j: &fieldsync_core::model::ServiceJob) -> Self {
        use fieldsync_core::model::Status as _;
        JobItem {
            id: j.meta.id.to_string(),
            account_id: j.account_id.to_string(),
            status: j.status.as_str().into(),
            job_type: j.job_type.clone(),
            priority: priority_name(j.priority).into(),
            description: j.description.clone(),
            asset: j.asset.clone(),
            sla_due_ms: j.sla_due.map(|t| t.at_ms),
            resolution: j.resolution.clone(),
            first_time_fix: j.first_time_fix,
            completed_at_ms: j.completed_at.map(|t| t.at_ms),
            requires_checklist: j.requires_checklist,
            checklist_template_id: j.checklist_template_id.map(|t| t.to_string()),
            requires_signature: j.requires_signature,
            read_only: false,
        }
    }
}
