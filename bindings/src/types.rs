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
    /// How it ended.
    pub outcome: Option<String>,
    /// Notes.
    pub notes: String,
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
            check_in_distance_m: v.check_in.as_ref().and_then(|c| c.distance_m),
            outcome: v.outcome.map(|o| {
                serde_json::to_value(o)
                    .ok()
                    .and_then(|j| j.as_str().map(str::to_owned))
                    .unwrap_or_default()
            }),
            notes: v.notes.clone(),
        }
    }
}

/// A visit report.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ReportItem {
    /// Id.
    pub id: String,
    /// The visit it reports on.
    pub visit_id: String,
    /// `draft`, `submitted`, `approved`, `changes_requested`.
    pub status: String,
    /// The rep's summary.
    pub summary: String,
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
            lines: o
                .lines
                .iter()
                .map(|(id, l)| OrderLineItem {
                    line_id: id.to_string(),
                    product_id: l.product_id.to_string(),
                    quantity: l.qty.raw() as f64 / fieldsync_core::model::Qty::SCALE as f64,
                    unit_price_minor: l.unit_price.minor,
                    discount_bp: l.discount_percent_bp,
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
    /// End, when finished.
    pub end_ms: Option<i64>,
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
