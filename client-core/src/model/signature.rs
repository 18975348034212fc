//! Customer signatures bound to what the signer saw.
//!
//! A signature ([`SignatureRef`], a value of the `signed` module that the
//! signed records carry) keeps the SHA-256 of the signature image (an
//! attachment), who signed and when, and the SHA-256 of a *canonical rendering*
//! of the content signed: the job summary shown on the technician's tablet, or
//! the order shown on the rep's phone. [`job_verdict`] and [`order_verdict`]
//! render the record as it is now and compare: if a covered field changed after
//! signing (on any device, merged through a sync), the signature shows as
//! [`SignatureVerdict::NoLongerMatches`]. The device and the server call the
//! same functions (this module does no I/O and builds without the `device`
//! feature), so they always agree.
//!
//! # Where a signature lives
//!
//! - **Service job**: on the technician's [`Assignment`] (one appointment on the
//!   job; a job with two visits gets two sign-offs). The job summary it covers
//!   is read from the job, the assignment and the assignment's checklist
//!   response ([`JobSummary`]).
//! - **Order**: on the [`Order`] itself.
//!
//! # The canonical rendering (version 1)
//!
//! The rendering is the UTF-8 JSON text `serde_json` writes for the private
//! `Signed*` structs below: object keys in the declaration order given here,
//! maps (`BTreeMap`) with their keys sorted, no whitespace, integers as
//! integers, money in minor units, quantities in ten-thousandths, times as
//! `{"at_ms":…,"tz_offset_min":…}`, absent optional values as `null`. Its first
//! key, `rendering`, names the format and version (`fieldsync/job-summary/1`,
//! `fieldsync/order/1`), so a later version can cover more fields without
//! invalidating older signatures: [`SignatureRef::rendering_version`] says which
//! one a signature was made with.
//!
//! **Job summary, covered**: job id, job type, asset, description (what the
//! customer reported), resolution (work done), first-time-fix flag; assignment
//! id, work start time; each part used (entry id, product, quantity, serial,
//! billable); each time entry (entry id, kind, start, end; a running entry has
//! no end, so stop the clock before asking for the signature); the checklist
//! response named by the assignment (its id, template and version, every answer
//! by question id with its value).
//!
//! **Job summary, not covered** (may change after signing without voiding it):
//! status and status history, priority, SLA and request window, the work end
//! time (set when completing, which follows the signature), arrival and travel
//! stamps and every GPS position, time-entry approval (a back-office decision),
//! the van stock a part came from and when it was booked, the checklist's
//! `completed` flag and who answered when, ownership (owner, team, territory).
//!
//! **Order, covered**: order id, account, ship-to, currency, delivery date; each
//! line (line id, product, description, quantity, unit price, discount percent
//! or amount, tax rate, and its computed gross, discount, net, tax and total);
//! the order's computed totals (gross, discount, net, tax, total). Totals are
//! computed with [`super::totals::order_totals`], never read from storage.
//!
//! **Order, not covered**: status, notes, visit, price list, ownership.

use std::collections::BTreeMap;

use automerge::ChangeHash;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::assignment::{Assignment, TimeKind};
use super::checklist::{AnswerValue, ChecklistResponse};
use super::job::ServiceJob;
use super::order::{Order, OrderStatus};
use super::status::TransitionError;
use super::totals::LineTotals;
use super::types::{Actor, DeviceTime, GeoPoint, Qty};
use super::{ModelError, RecordDoc, ValidationError};
use crate::ids::RecordId;

// The value lives in `signed`, below the records that carry it; this path stays.
pub use super::signed::SignatureRef;

/// The rendering version this build writes.
pub const RENDERING_VERSION: u32 = 1;

/// Whether a signature still matches the record as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum SignatureVerdict {
    /// The covered content is what the signer saw.
    Matches,
    /// A covered field changed after signing.
    NoLongerMatches {
        /// SHA-256 recorded at signing.
        signed: String,
        /// SHA-256 of the content as it is now.
        current: String,
    },
    /// There is no signature.
    Unsigned,
}

impl SignatureVerdict {
    /// The verdict's stable name: `matches`, `no_longer_matches`, `unsigned`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SignatureVerdict::Matches => "matches",
            SignatureVerdict::NoLongerMatches { .. } => "no_longer_matches",
            SignatureVerdict::Unsigned => "unsigned",
        }
    }
}

/// Compares a signature with the hash of the content as it is now.
pub fn verdict(signature: Option<&SignatureRef>, current: String) -> SignatureVerdict {
    match signature {
        None => SignatureVerdict::Unsigned,
        Some(s) if s.rendering_version == RENDERING_VERSION && s.document_sha256 == current => {
            SignatureVerdict::Matches
        }
        // A rendering version this build does not know cannot be confirmed:
        // showing it as changed is the safe answer.
        Some(s) => SignatureVerdict::NoLongerMatches {
            signed: s.document_sha256.clone(),
            current,
        },
    }
}

/// What a job signature covers: the job, the signed assignment and the
/// checklist response that assignment names (`None` when it names none or the
/// caller does not hold it; a named response that is missing makes the hash
/// differ, which is the safe answer).
#[derive(Debug, Clone, Copy)]
pub struct JobSummary<'a> {
    /// The service job.
    pub job: &'a ServiceJob,
    /// The technician's assignment (where the signature is kept).
    pub assignment: &'a Assignment,
    /// The assignment's checklist response.
    pub checklist: Option<&'a ChecklistResponse>,
}

#[derive(Serialize)]
struct SignedJob<'a> {
    rendering: &'static str,
    job_id: RecordId,
    job_type: &'a str,
    asset: Option<&'a str>,
    description: &'a str,
    resolution: Option<&'a str>,
    first_time_fix: Option<bool>,
    assignment_id: RecordId,
    work_started: Option<DeviceTime>,
    parts: BTreeMap<RecordId, SignedPart<'a>>,
    time: BTreeMap<RecordId, SignedTime>,
    checklist_response_id: Option<RecordId>,
    checklist: Option<SignedChecklist<'a>>,
}

#[derive(Serialize)]
struct SignedPart<'a> {
    product_id: RecordId,
    qty: Qty,
    serial: Option<&'a str>,
    billable: bool,
}

#[derive(Serialize)]
struct SignedTime {
    kind: TimeKind,
    start: DeviceTime,
    end: Option<DeviceTime>,
}

#[derive(Serialize)]
struct SignedChecklist<'a> {
    template_id: RecordId,
    template_version: u32,
    answers: BTreeMap<&'a str, &'a AnswerValue>,
}

#[derive(Serialize)]
struct SignedOrder<'a> {
    rendering: &'static str,
    order_id: RecordId,
    account_id: RecordId,
    ship_to: Option<RecordId>,
    currency: &'a str,
    delivery_date: Option<&'a str>,
    lines: BTreeMap<RecordId, SignedLine<'a>>,
    totals: Option<SignedTotals>,
}

#[derive(Serialize)]
struct SignedLine<'a> {
    product_id: RecordId,
    description: Option<&'a str>,
    qty: Qty,
    unit_price_minor: i64,
    discount_percent_bp: Option<u32>,
    discount_amount_minor: Option<i64>,
    tax_rate_bp: u32,
    figures: Option<LineTotals>,
}

#[derive(Serialize)]
struct SignedTotals {
    gross: i64,
    discount: i64,
    net: i64,
    tax: i64,
    total: i64,
}

fn sha256_of<T: Serialize>(value: &T) -> String {
    // Serialising these plain structs cannot fail (no maps with non-string
    // keys, no failing `Serialize` impls); an empty rendering would still give
    // a hash that matches nothing real.
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

impl JobSummary<'_> {
    /// The canonical rendering (version [`RENDERING_VERSION`]) as bytes.
    pub fn rendering(&self) -> Vec<u8> {
        serde_json::to_vec(&self.signed()).unwrap_or_default()
    }

    /// SHA-256 (hex) of the canonical rendering.
    pub fn sha256(&self) -> String {
        sha256_of(&self.signed())
    }

    fn signed(&self) -> SignedJob<'_> {
        let (job, a) = (self.job, self.assignment);
        let checklist = self
            .checklist
            .filter(|c| a.checklist_response_id == Some(c.meta.id))
            .map(|c| SignedChecklist {
                template_id: c.template_id,
                template_version: c.template_version,
                answers: c
                    .answers
                    .iter()
                    .map(|(q, ans)| (q.as_str(), &ans.value))
                    .collect(),
            });
        SignedJob {
            rendering: "fieldsync/job-summary/1",
            job_id: job.meta.id,
            job_type: &job.job_type,
            asset: job.asset.as_deref(),
            description: &job.description,
            resolution: job.resolution.as_deref(),
            first_time_fix: job.first_time_fix,
            assignment_id: a.meta.id,
            work_started: a.work_started.map(|s| s.at),
            parts: a
                .parts
                .iter()
                .map(|(id, p)| {
                    (
                        *id,
                        SignedPart {
                            product_id: p.product_id,
                            qty: p.qty,
                            serial: p.serial.as_deref(),
                            billable: p.billable,
                        },
                    )
                })
                .collect(),
            time: a
                .time_entries
                .iter()
                .map(|(id, t)| {
                    (
                        *id,
                        SignedTime {
                            kind: t.kind,
                            start: t.start,
                            end: t.end,
                        },
                    )
                })
                .collect(),
            checklist_response_id: a.checklist_response_id,
            checklist,
        }
    }
}

fn signed_order(order: &Order) -> SignedOrder<'_> {
    let totals = order.totals().ok();
    SignedOrder {
        rendering: "fieldsync/order/1",
        order_id: order.meta.id,
        account_id: order.account_id,
        ship_to: order.ship_to,
        currency: &order.currency,
        delivery_date: order.delivery_date.as_deref(),
        lines: order
            .lines
            .iter()
            .map(|(id, l)| {
                (
                    *id,
                    SignedLine {
                        product_id: l.product_id,
                        description: l.description.as_deref(),
                        qty: l.qty,
                        unit_price_minor: l.unit_price.minor,
                        discount_percent_bp: l.discount_percent_bp,
                        discount_amount_minor: l.discount_amount_minor,
                        tax_rate_bp: l.tax_rate_bp,
                        figures: totals.as_ref().and_then(|t| t.lines.get(id).copied()),
                    },
                )
            })
            .collect(),
        totals: totals.as_ref().map(|t| SignedTotals {
            gross: t.gross,
            discount: t.discount,
            net: t.net,
            tax: t.tax,
            total: t.total,
        }),
    }
}

/// The order's canonical rendering (version [`RENDERING_VERSION`]) as bytes.
pub fn order_rendering(order: &Order) -> Vec<u8> {
    serde_json::to_vec(&signed_order(order)).unwrap_or_default()
}

/// SHA-256 (hex) of the order's canonical rendering.
pub fn order_sha256(order: &Order) -> String {
    sha256_of(&signed_order(order))
}

/// The verdict on the job signature kept on `summary.assignment`.
pub fn job_verdict(summary: &JobSummary<'_>) -> SignatureVerdict {
    verdict(summary.assignment.signature.as_ref(), summary.sha256())
}

/// The verdict on the order's signature.
pub fn order_verdict(order: &Order) -> SignatureVerdict {
    verdict(order.signature.as_ref(), order_sha256(order))
}

/// Who signed, and the image they drew (already attached).
#[derive(Debug, Clone, PartialEq)]
pub struct Signer {
    /// The signer's name.
    pub name: String,
    /// Their role at the customer.
    pub role: Option<String>,
    /// SHA-256 (hex) of the signature image attachment.
    pub image_sha256: String,
    /// Where it was signed.
    pub gps: Option<GeoPoint>,
}

impl Signer {
    fn signature(self, at: DeviceTime, document_sha256: String) -> SignatureRef {
        SignatureRef {
            signer_name: self.name.trim().to_owned(),
            signer_role: self.role.filter(|r| !r.trim().is_empty()),
            at,
            gps: self.gps,
            image_sha256: self.image_sha256,
            document_sha256,
            rendering_version: RENDERING_VERSION,
        }
    }
}

/// Records the customer's signature on the assignment `doc`, bound to the job
/// summary as it is now (`job` and `checklist` as the device holds them).
pub fn sign_job(
    doc: &mut RecordDoc,
    actor: &Actor,
    at: DeviceTime,
    job: &ServiceJob,
    checklist: Option<&ChecklistResponse>,
    signer: Signer,
) -> Result<Option<ChangeHash>, ModelError> {
    let assignment: Assignment = doc.read_stateful()?;
    if assignment.job_id != job.meta.id {
        return Err(ValidationError::new("job_id", "the assignment belongs to another job").into());
    }
    let hash = JobSummary {
        job,
        assignment: &assignment,
        checklist,
    }
    .sha256();
    let signature = signer.signature(at, hash);
    signature.validate("signature")?;
    super::assignment::sign(doc, actor, at, signature)
}

/// Records the customer's signature on the order `doc`, bound to its lines and
/// totals as they are now. A draft or submitted order can be signed; once the
/// back office has decided on it, it cannot.
pub fn sign_order(
    doc: &mut RecordDoc,
    actor: &Actor,
    at: DeviceTime,
    signer: Signer,
) -> Result<Option<ChangeHash>, ModelError> {
    let order: Order = doc.read_stateful()?;
    if !matches!(order.status, OrderStatus::Draft | OrderStatus::Submitted) {
        return Err(TransitionError::precondition(format!(
            "the order is {} and can no longer be signed",
            super::Status::as_str(order.status)
        ))
        .into());
    }
    if actor.role == super::Role::Rep && actor.user != order.meta.owner {
        return Err(TransitionError::precondition(
            "only the order's salesperson can have it signed",
        )
        .into());
    }
    let signature = signer.signature(at, order_sha256(&order));
    signature.validate("signature")?;
    doc.update::<Order>(at, |o| o.signature = Some(signature))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{DeviceId, OrgId, TeamId, TerritoryId, UserId};
    use crate::model::assignment::{PartUsed, TimeEntry};
    use crate::model::checklist::Answer;
    use crate::model::order::OrderLine;
    use crate::model::{Money, RecordMeta, Role};
    use automerge::ActorId;

    fn meta(owner: UserId) -> RecordMeta {
        RecordMeta {
            id: RecordId::new(),
            org: OrgId::new(),
            owner,
            team: TeamId::new(),
            territory: TerritoryId::new(),
        }
    }

    fn image() -> String {
        hex::encode(Sha256::digest(b"a drawn signature"))
    }

    fn signer() -> Signer {
        Signer {
            name: "Maria Lopes".into(),
            role: Some("store manager".into()),
            image_sha256: image(),
            gps: None,
        }
    }

    struct Job {
        job: ServiceJob,
        assignment: Assignment,
        checklist: ChecklistResponse,
    }

    fn job() -> Job {
        let tech = UserId::new();
        let mut job = ServiceJob::new(meta(UserId::new()), RecordId::new(), "repair");
        job.description = "Washer leaking".into();
        job.resolution = Some("Pump seal replaced".into());
        let mut a = Assignment::new(
            meta(tech),
            job.meta.id,
            DeviceTime::utc(0),
            DeviceTime::utc(3_600_000),
        );
        a.parts.insert(
            RecordId::new(),
            PartUsed {
                product_id: RecordId::new(),
                qty: Qty::units(1),
                van_stock_id: None,
                serial: Some("SN-1".into()),
                billable: true,
                at: DeviceTime::utc(10),
            },
        );
        a.time_entries.insert(
            RecordId::new(),
            TimeEntry {
                kind: TimeKind::Work,
                start: DeviceTime::utc(0),
                end: Some(DeviceTime::utc(2_700_000)),
                approval: Default::default(),
                note: None,
            },
        );
        let mut c = ChecklistResponse {
            meta: meta(tech),
            template_id: RecordId::new(),
            template_version: 1,
            subject_id: a.meta.id,
            answers: BTreeMap::new(),
            completed: false,
        };
        c.answers.insert(
            "q1".into(),
            Answer {
                value: AnswerValue::YesNo(true),
                at: DeviceTime::utc(5),
                by: tech,
            },
        );
        a.checklist_response_id = Some(c.meta.id);
        Job {
            job,
            assignment: a,
            checklist: c,
        }
    }

    /// A named edit of a job summary.
    type Edit = (&'static str, fn(&mut Job));

    fn hash(j: &Job) -> String {
        JobSummary {
            job: &j.job,
            assignment: &j.assignment,
            checklist: Some(&j.checklist),
        }
        .sha256()
    }

    #[test]
    fn the_job_rendering_is_deterministic_and_names_its_version() {
        let j = job();
        let summary = JobSummary {
            job: &j.job,
            assignment: &j.assignment,
            checklist: Some(&j.checklist),
        };
        let text = String::from_utf8(summary.rendering()).expect("utf-8");
        assert!(text.starts_with(r#"{"rendering":"fieldsync/job-summary/1","#));
        assert!(text.contains("Pump seal replaced"));
        assert_eq!(summary.sha256(), hash(&j));
        assert_eq!(
            summary.sha256(),
            hex::encode(Sha256::digest(text.as_bytes()))
        );
    }

    #[test]
    fn covered_job_fields_change_the_hash() {
        let j = job();
        let signed = hash(&j);
        let clone = |j: &Job| Job {
            job: j.job.clone(),
            assignment: j.assignment.clone(),
            checklist: j.checklist.clone(),
        };
        let covered: [Edit; 6] = [
            ("resolution", |j| {
                j.job.resolution = Some("Nothing done".into())
            }),
            ("description", |j| j.job.description = "Dryer".into()),
            ("asset", |j| j.job.asset = Some("W-9".into())),
            ("part qty", |j| {
                for p in j.assignment.parts.values_mut() {
                    p.qty = Qty::units(2);
                }
            }),
            ("time end", |j| {
                for t in j.assignment.time_entries.values_mut() {
                    t.end = Some(DeviceTime::utc(9_000_000));
                }
            }),
            ("checklist answer", |j| {
                for a in j.checklist.answers.values_mut() {
                    a.value = AnswerValue::YesNo(false);
                }
            }),
        ];
        for (name, edit) in covered {
            let mut k = clone(&j);
            edit(&mut k);
            assert_ne!(hash(&k), signed, "{name} is covered");
        }
        let uncovered: [Edit; 4] = [
            ("priority", |j| {
                j.job.priority = crate::model::Priority::Urgent
            }),
            ("work end", |j| {
                j.assignment.work_ended = Some(crate::model::Stamp {
                    at: DeviceTime::utc(1),
                    gps: None,
                })
            }),
            ("time approval", |j| {
                for t in j.assignment.time_entries.values_mut() {
                    t.approval = crate::model::Approval::Approved;
                }
            }),
            ("checklist completed", |j| j.checklist.completed = true),
        ];
        for (name, edit) in uncovered {
            let mut k = clone(&j);
            edit(&mut k);
            assert_eq!(hash(&k), signed, "{name} is not covered");
        }
    }

    #[test]
    fn a_missing_checklist_response_does_not_match() {
        let j = job();
        let without = JobSummary {
            job: &j.job,
            assignment: &j.assignment,
            checklist: None,
        }
        .sha256();
        assert_ne!(without, hash(&j));
    }

    fn order_doc() -> (RecordDoc, Actor) {
        let rep = Actor::on_device(UserId::new(), Role::Rep, DeviceId::new());
        let mut o = Order::new(meta(rep.user), RecordId::new(), "EUR");
        o.lines.insert(
            RecordId::new(),
            OrderLine::new(RecordId::new(), Qty::units(3), Money::new(1_250, "EUR")),
        );
        o.notes = Some("Call before delivery".into());
        let doc = RecordDoc::create_stateful(&o, ActorId::random(), &rep, DeviceTime::utc(0))
            .expect("create");
        (doc, rep)
    }

    #[test]
    fn an_order_signature_follows_its_lines_not_its_notes() {
        let (mut doc, rep) = order_doc();
        let o: Order = doc.read_stateful().expect("read");
        assert_eq!(order_verdict(&o), SignatureVerdict::Unsigned);
        sign_order(&mut doc, &rep, DeviceTime::utc(1), signer()).expect("sign");
        let o: Order = doc.read_stateful().expect("read");
        assert_eq!(order_verdict(&o), SignatureVerdict::Matches);
        let sig = o.signature.clone().expect("signed");
        assert_eq!(sig.signer_name, "Maria Lopes");
        assert_eq!(sig.image_sha256, image());
        assert_eq!(sig.rendering_version, RENDERING_VERSION);

        doc.update::<Order>(DeviceTime::utc(2), |o| o.notes = Some("Ring twice".into()))
            .expect("notes");
        let o: Order = doc.read_stateful().expect("read");
        assert_eq!(order_verdict(&o), SignatureVerdict::Matches);

        let line = *o.lines.keys().next().expect("line");
        crate::model::order::edit_line(&mut doc, &rep, DeviceTime::utc(3), line, |l| {
            l.discount_percent_bp = Some(1_000)
        })
        .expect("discount");
        let o: Order = doc.read_stateful().expect("read");
        match order_verdict(&o) {
            SignatureVerdict::NoLongerMatches { signed, current } => {
                assert_eq!(signed, sig.document_sha256);
                assert_eq!(current, order_sha256(&o));
                assert_ne!(signed, current);
            }
            other => panic!("a discount after signing must show: {other:?}"),
        }
    }

    #[test]
    fn a_signature_without_a_name_or_image_hash_is_refused() {
        let (mut doc, rep) = order_doc();
        let err = sign_order(
            &mut doc,
            &rep,
            DeviceTime::utc(1),
            Signer {
                name: "  ".into(),
                ..signer()
            },
        )
        .expect_err("no name");
        assert!(err.to_string().contains("signer"));
        let err = sign_order(
            &mut doc,
            &rep,
            DeviceTime::utc(1),
            Signer {
                image_sha256: "not a hash".into(),
                ..signer()
            },
        )
        .expect_err("bad hash");
        assert!(err.to_string().contains("SHA-256"));
        let o: Order = doc.read_stateful().expect("read");
        assert!(o.signature.is_none(), "nothing was written");
    }

    #[test]
    fn an_unknown_rendering_version_does_not_match() {
        let j = job();
        let mut a = j.assignment.clone();
        a.signature = Some(signer().signature(DeviceTime::utc(1), hash(&j)));
        let s = JobSummary {
            job: &j.job,
            assignment: &a,
            checklist: Some(&j.checklist),
        };
        assert_eq!(job_verdict(&s), SignatureVerdict::Matches);
        if let Some(sig) = a.signature.as_mut() {
            sig.rendering_version = 2;
        }
        let s = JobSummary {
            job: &j.job,
            assignment: &a,
            checklist: Some(&j.checklist),
        };
        assert!(matches!(
            job_verdict(&s),
            SignatureVerdict::NoLongerMatches { .. }
        ));
    }
}
