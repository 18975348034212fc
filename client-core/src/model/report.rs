//! Visit reports: what the rep writes after a visit, reviewed by a manager.
//!
//! | from                | to                  | who                    | condition           |
//! |---------------------|---------------------|------------------------|---------------------|
//! | `draft`             | `submitted`         | rep                    | a summary           |
//! | `changes_requested` | `submitted`         | rep                    | a summary           |
//! | `submitted`         | `approved`          | manager, admin, server |                     |
//! | `submitted`         | `changes_requested` | manager, admin, server | a comment           |
//!
//! The server acts for a manager who decides in the web app. Submitting fixes a
//! SHA-256 content hash of what the manager reviews (summary, observations, KPI
//! values); [`VisitReport::content_matches`] tells whether the content changed since,
//! so an approved report cannot change unnoticed.
//!
//! Concurrent statuses: `changes_requested` (4) > `approved` (3) > `submitted` (2) >
//! `draft` (1). Two reviewers deciding differently at once end with the cautious
//! decision; the approval stays in the history and the conflict stays listed.

use std::collections::BTreeMap;

use automerge::ChangeHash;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::status::{Status, TransitionError, TransitionRequest};
use super::types::{Actor, DeviceTime, RecordKind, RecordMeta, Role, stable_names};
use super::{ModelError, Record, RecordDoc, Stateful, ValidationError};
use crate::ids::{RecordId, UserId};

/// Status of a visit report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    /// Being written.
    Draft,
    /// Waiting for review.
    Submitted,
    /// Accepted by a manager.
    Approved,
    /// Sent back to the rep with a comment.
    ChangesRequested,
}

stable_names!(machine ReportStatus, "visit report status" {
    Draft => "draft",
    Submitted => "submitted",
    Approved => "approved",
    ChangesRequested => "changes_requested",
});

impl Status for ReportStatus {
    const MACHINE: &'static str = "visit report";

    fn all() -> &'static [Self] {
        Self::ALL
    }

    fn as_str(self) -> &'static str {
        self.stable_name()
    }

    fn may_start_in(self, role: Role) -> bool {
        self == ReportStatus::Draft && matches!(role, Role::Rep | Role::Manager | Role::Admin)
    }

    fn check(self, to: Self, role: Role) -> Result<(), TransitionError> {
        use ReportStatus::*;
        use Role::*;
        let allowed: &[Role] = match (self, to) {
            (Draft, Submitted) | (ChangesRequested, Submitted) => &[Rep],
            (Submitted, Approved) | (Submitted, ChangesRequested) => &[Manager, Admin, Server],
            _ => return Err(TransitionError::not_allowed(self, to)),
        };
        super::status::allow_roles(self, to, role, allowed)
    }

    fn precedence(self) -> u8 {
        match self {
            ReportStatus::ChangesRequested => 4,
            ReportStatus::Approved => 3,
            ReportStatus::Submitted => 2,
            ReportStatus::Draft => 1,
        }
    }
}

/// A KPI measured on the visit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiValue {
    /// The target, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
    /// What was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<f64>,
    /// Unit, e.g. "facings", "%".
    #[serde(default)]
    pub unit: String,
}

/// One comment of the review thread (keyed by comment id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewComment {
    /// Author.
    pub by: UserId,
    /// When.
    pub at: DeviceTime,
    /// Text.
    pub text: String,
}

/// A visit report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisitReport {
    /// Ownership: `owner` is the rep.
    pub meta: RecordMeta,
    /// The visit reported on.
    pub visit_id: RecordId,
    /// Summary (required to submit).
    #[serde(default)]
    pub summary: String,
    /// Observations.
    #[serde(default)]
    pub observations: String,
    /// KPI values by KPI name.
    #[serde(default)]
    pub kpis: BTreeMap<String, KpiValue>,
    /// Effective status.
    pub status: ReportStatus,
    /// SHA-256 (hex) of the reviewable content at the last submission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    /// The manager who decided last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewer: Option<UserId>,
    /// When they decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DeviceTime>,
    /// The review thread.
    #[serde(default)]
    pub comments: BTreeMap<RecordId, ReviewComment>,
}

impl VisitReport {
    /// A draft report for a visit.
    pub fn new(meta: RecordMeta, visit_id: RecordId) -> Self {
        Self {
            meta,
            visit_id,
            summary: String::new(),
            observations: String::new(),
            kpis: BTreeMap::new(),
            status: ReportStatus::Draft,
            content_hash: None,
            reviewer: None,
            decided_at: None,
            comments: BTreeMap::new(),
        }
    }

    /// SHA-256 (hex) of the content a manager reviews. `serde_json` writes struct
    /// fields in declaration order and `BTreeMap` keys sorted, so the bytes are canonical.
    pub fn compute_content_hash(&self) -> String {
        #[derive(Serialize)]
        struct Reviewed<'a> {
            summary: &'a str,
            observations: &'a str,
            kpis: &'a BTreeMap<String, KpiValue>,
        }
        let bytes = serde_json::to_vec(&Reviewed {
            summary: &self.summary,
            observations: &self.observations,
            kpis: &self.kpis,
        })
        .unwrap_or_default();
        hex::encode(Sha256::digest(&bytes))
    }

    /// Whether the content is still what was submitted (false if never submitted).
    pub fn content_matches(&self) -> bool {
        self.content_hash.as_deref() == Some(self.compute_content_hash().as_str())
    }
}

impl Record for VisitReport {
    const KIND: RecordKind = RecordKind::VisitReport;

    fn meta(&self) -> &RecordMeta {
        &self.meta
    }

    fn validate(&self) -> Result<(), ValidationError> {
        for (name, kpi) in &self.kpis {
            if kpi.target.is_some_and(|v| !v.is_finite())
                || kpi.actual.is_some_and(|v| !v.is_finite())
            {
                return Err(ValidationError::new(
                    format!("kpis.{name}"),
                    "KPI values must be numbers",
                ));
            }
        }
        for (id, c) in &self.comments {
            if c.text.trim().is_empty() {
                return Err(ValidationError::new(
                    format!("comments.{id}"),
                    "a comment cannot be empty",
                ));
            }
        }
        Ok(())
    }
}

impl Stateful for VisitReport {
    type Status = ReportStatus;

    fn status(&self) -> ReportStatus {
        self.status
    }

    fn set_status(&mut self, status: ReportStatus) {
        self.status = status;
    }

    fn guard(
        &self,
        req: &TransitionRequest<ReportStatus>,
        actor: &Actor,
    ) -> Result<(), TransitionError> {
        match req.to {
            ReportStatus::Submitted if self.summary.trim().is_empty() => Err(
                TransitionError::precondition("write a summary before submitting the report"),
            ),
            ReportStatus::Submitted if actor.user != self.meta.owner => Err(
                TransitionError::precondition("only the report's rep can submit it"),
            ),
            ReportStatus::ChangesRequested
                if req.reason.as_deref().is_none_or(|r| r.trim().is_empty()) =>
            {
                Err(TransitionError::precondition(
                    "a comment is required to request changes",
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Submits (or resubmits) the report, fixing its content hash.
pub fn submit(
    doc: &mut RecordDoc,
    actor: &Actor,
    at: DeviceTime,
) -> Result<ChangeHash, ModelError> {
    doc.transition::<VisitReport>(
        actor,
        &TransitionRequest::new(ReportStatus::Submitted, at),
        |r| {
            r.content_hash = Some(r.compute_content_hash());
        },
    )
}

/// Approves a submitted report, with an optional comment.
pub fn approve(
    doc: &mut RecordDoc,
    actor: &Actor,
    at: DeviceTime,
    comment: Option<String>,
) -> Result<ChangeHash, ModelError> {
    let mut req = TransitionRequest::new(ReportStatus::Approved, at);
    req.reason = comment.clone().filter(|c| !c.trim().is_empty());
    decide(doc, actor, &req)
}

/// Sends a submitted report back to the rep; the comment is required.
pub fn request_changes(
    doc: &mut RecordDoc,
    actor: &Actor,
    at: DeviceTime,
    comment: impl Into<String>,
) -> Result<ChangeHash, ModelError> {
    let req = TransitionRequest::new(ReportStatus::ChangesRequested, at).with_reason(comment);
    decide(doc, actor, &req)
}

fn decide(
    doc: &mut RecordDoc,
    actor: &Actor,
    req: &TransitionRequest<ReportStatus>,
) -> Result<ChangeHash, ModelError> {
    let comment = req.reason.clone();
    doc.transition::<VisitReport>(actor, req, |r| {
        r.reviewer = Some(actor.user);
        r.decided_at = Some(req.at);
        if let Some(text) = comment {
            r.comments.insert(
                RecordId::new(),
                ReviewComment {
                    by: actor.user,
                    at: req.at,
                    text,
                },
            );
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{DeviceId, OrgId, TeamId, TerritoryId};
    use automerge::ActorId;
    use rstest::rstest;

    use ReportStatus::*;
    use Role::*;

    #[test]
    fn statuses_have_stable_names() {
        crate::model::types::assert_stable_names(
            ReportStatus::ALL,
            ReportStatus::as_str,
            &["draft", "submitted", "approved", "changes_requested"],
        );
    }

    #[rstest]
    #[case(Draft, Submitted, Rep)]
    #[case(ChangesRequested, Submitted, Rep)]
    #[case(Submitted, Approved, Manager)]
    #[case(Submitted, Approved, Server)]
    #[case(Submitted, ChangesRequested, Manager)]
    #[case(Submitted, ChangesRequested, Admin)]
    fn allowed_transitions(
        #[case] from: ReportStatus,
        #[case] to: ReportStatus,
        #[case] role: Role,
    ) {
        assert_eq!(from.check(to, role), Ok(()));
    }

    #[rstest]
    #[case::reps_do_not_review(Submitted, Approved, Rep)]
    #[case::reps_do_not_request_changes(Submitted, ChangesRequested, Rep)]
    #[case::technicians_do_not_review(Submitted, Approved, Technician)]
    #[case::managers_do_not_submit_for_reps(Draft, Submitted, Manager)]
    fn refused_by_role(#[case] from: ReportStatus, #[case] to: ReportStatus, #[case] role: Role) {
        assert!(matches!(
            from.check(to, role),
            Err(TransitionError::RoleNotAllowed { .. })
        ));
    }

    #[rstest]
    #[case(Draft, Approved)]
    #[case(Approved, Submitted)]
    #[case(Approved, ChangesRequested)]
    #[case(ChangesRequested, Approved)]
    #[case(Submitted, Draft)]
    fn refused_edges(#[case] from: ReportStatus, #[case] to: ReportStatus) {
        for role in [Rep, Manager, Admin, Server] {
            assert!(matches!(
                from.check(to, role),
                Err(TransitionError::NotAllowed { .. })
            ));
        }
    }

    fn setup() -> (RecordDoc, Actor, Actor) {
        let rep = Actor::on_device(UserId::new(), Rep, DeviceId::new());
        let manager = Actor::without_device(UserId::new(), Manager);
        let meta = RecordMeta {
            id: RecordId::new(),
            org: OrgId::new(),
            owner: rep.user,
            team: TeamId::new(),
            territory: TerritoryId::new(),
        };
        let mut report = VisitReport::new(meta, RecordId::new());
        report.summary = "Shelf share up".into();
        let doc = RecordDoc::create_stateful(&report, ActorId::random(), &rep, DeviceTime::utc(0))
            .expect("create");
        (doc, rep, manager)
    }

    #[test]
    fn the_review_cycle_keeps_comments_and_the_content_hash() {
        let (mut doc, rep, manager) = setup();
        submit(&mut doc, &rep, DeviceTime::utc(1)).expect("submit");
        let err = request_changes(&mut doc, &manager, DeviceTime::utc(2), "  ")
            .expect_err("comment required");
        assert!(err.to_string().contains("comment is required"));
        request_changes(
            &mut doc,
            &manager,
            DeviceTime::utc(2),
            "Add the competitor prices",
        )
        .expect("request");
        doc.update::<VisitReport>(DeviceTime::utc(3), |r| {
            r.observations = "Competitor at 1.99".into()
        })
        .expect("edit");
        let r: VisitReport = doc.read_stateful().expect("read");
        assert!(!r.content_matches(), "edited after submission");
        submit(&mut doc, &rep, DeviceTime::utc(4)).expect("resubmit");
        approve(&mut doc, &manager, DeviceTime::utc(5), None).expect("approve");
        let r: VisitReport = doc.read_stateful().expect("read");
        assert_eq!(r.status, Approved);
        assert!(r.content_matches());
        assert_eq!(r.reviewer, Some(manager.user));
        assert_eq!(r.comments.len(), 1);
        doc.update::<VisitReport>(DeviceTime::utc(6), |r| r.summary = "changed later".into())
            .expect("edit");
        let r: VisitReport = doc.read_stateful().expect("read");
        assert!(!r.content_matches(), "a change after approval shows");
    }

    #[test]
    fn a_rep_cannot_approve_their_own_report() {
        let (mut doc, rep, _) = setup();
        submit(&mut doc, &rep, DeviceTime::utc(1)).expect("submit");
        assert!(approve(&mut doc, &rep, DeviceTime::utc(2), None).is_err());
        assert_eq!(doc.status::<ReportStatus>().expect("status"), Submitted);
    }

    #[test]
    fn two_reviewers_deciding_at_once_end_with_changes_requested() {
        let (mut a, rep, manager) = setup();
        submit(&mut a, &rep, DeviceTime::utc(1)).expect("submit");
        let mut b = RecordDoc::from_automerge(a.automerge().fork()).expect("fork");
        b.set_actor(ActorId::random());
        approve(&mut a, &manager, DeviceTime::utc(2), None).expect("approve");
        request_changes(
            &mut b,
            &Actor::without_device(UserId::new(), Admin),
            DeviceTime::utc(2),
            "Missing photos",
        )
        .expect("request");
        a.merge(&mut b).expect("merge");
        b.merge(&mut a).expect("merge back");
        for doc in [&a, &b] {
            assert_eq!(
                doc.status::<ReportStatus>().expect("status"),
                ChangesRequested
            );
            let conflicts = doc.conflicts().expect("conflicts");
            let status = conflicts
                .iter()
                .find(|c| c.path == "status")
                .expect("the clash is listed");
            let shown: Vec<_> = status.values.iter().filter(|v| v.shown).collect();
            assert_eq!(shown.len(), 1);
            assert_eq!(shown[0].value, "changes_requested");
            assert!(status.values.iter().any(|v| v.value == "approved"));
            let history = doc.history().expect("history");
            assert!(history.iter().any(|e| e.to == "approved"));
            assert!(
                history.iter().any(|e| e.to == "changes_requested"
                    && e.reason.as_deref() == Some("Missing photos"))
            );
        }
        assert_eq!(a.to_json().expect("json"), b.to_json().expect("json"));
    }
}
