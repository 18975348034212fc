//! Projections: the few columns of a record that lists and scope queries need,
//! taken from its document. Both the device store and the server store keep one
//! row per record with these columns, rewritten in the same transaction as the
//! document, so a list never has to open documents.
//!
//! The projection is computed from the document's JSON: the owner, team and
//! territory from `meta`, the account and the parent from the references the
//! kind declares in `rules` (an order's visit, an assignment's job, a
//! response's subject), never from keys the kind does not have.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::rules::{self, Slot};
use super::{ModelError, RecordDoc, RecordKind};
use crate::ids::{RecordId, UserId};

/// The indexed columns of one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Projection {
    /// The record.
    pub id: RecordId,
    /// Its kind.
    pub kind: RecordKind,
    /// Effective status, for stateful kinds.
    pub status: Option<String>,
    /// `meta.owner`: the rep, technician or account manager.
    pub owner: Option<UserId>,
    /// `meta.team`.
    pub team: Option<String>,
    /// `meta.territory`.
    pub territory: Option<String>,
    /// The account the record belongs to (visits, orders, jobs, contacts), or
    /// the account itself.
    pub account_id: Option<RecordId>,
    /// The parent record: an assignment's job, a report's visit, a response's subject.
    pub parent_id: Option<RecordId>,
    /// When it is planned to start, ms since the epoch (visits: planned start,
    /// or check-in for ad-hoc visits; assignments: scheduled start; jobs: SLA due).
    pub start_ms: Option<i64>,
    /// Tombstoned.
    pub deleted: bool,
}

impl Projection {
    /// Computes the projection of a record document.
    pub fn of(doc: &RecordDoc) -> Result<Self, ModelError> {
        Self::of_json(doc, &doc.to_json()?)
    }

    /// [`Projection::of`], with the document's JSON already at hand.
    pub fn of_json(doc: &RecordDoc, json: &Json) -> Result<Self, ModelError> {
        let status = match doc.status_name()? {
            Json::String(s) => Some(s),
            _ => None,
        };
        let kind = doc.kind();
        // References come only from the kind's own typed fields (`rules`): a
        // key another kind uses, or one no kind has, names nothing here.
        let slot = |slot: Slot| {
            rules::references(kind)
                .iter()
                .filter(|r| r.slot == slot)
                .find_map(|r| id_at(json, &[r.field]))
        };
        let account_id = if kind == RecordKind::Account {
            Some(doc.id())
        } else {
            slot(Slot::Account)
        };
        let parent_id = slot(Slot::Parent);
        let start_ms = match kind {
            RecordKind::Visit => ms_at(json, &["planned_start", "at_ms"])
                .or_else(|| ms_at(json, &["check_in", "at", "at_ms"])),
            RecordKind::Assignment => ms_at(json, &["scheduled_start", "at_ms"]),
            RecordKind::ServiceJob => ms_at(json, &["sla_due", "at_ms"]),
            _ => None,
        };
        Ok(Self {
            id: doc.id(),
            kind,
            status,
            owner: str_at(json, &["meta", "owner"]).and_then(|s| s.parse().ok()),
            team: str_at(json, &["meta", "team"]).map(str::to_owned),
            territory: str_at(json, &["meta", "territory"]).map(str::to_owned),
            account_id,
            parent_id,
            start_ms,
            deleted: doc.is_deleted(),
        })
    }
}

fn at<'a>(json: &'a Json, path: &[&str]) -> Option<&'a Json> {
    path.iter().try_fold(json, |v, key| v.get(key))
}

fn str_at<'a>(json: &'a Json, path: &[&str]) -> Option<&'a str> {
    at(json, path).and_then(Json::as_str)
}

fn id_at(json: &Json, path: &[&str]) -> Option<RecordId> {
    str_at(json, path).and_then(|s| s.parse().ok())
}

fn ms_at(json: &Json, path: &[&str]) -> Option<i64> {
    at(json, path).and_then(Json::as_i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{DeviceId, OrgId, TeamId, TerritoryId};
    use crate::model::{Actor, Assignment, DeviceTime, RecordMeta, Role, Visit};
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

    #[test]
    fn a_visit_projects_its_account_start_status_and_owner() {
        let rep = Actor::on_device(UserId::new(), Role::Rep, DeviceId::new());
        let account = RecordId::new();
        let v = Visit::planned(
            meta(rep.user),
            account,
            DeviceTime::utc(1_000),
            DeviceTime::utc(2_000),
        );
        let mut doc = RecordDoc::create_stateful(&v, ActorId::random(), &rep, DeviceTime::utc(0))
            .expect("create");
        let p = Projection::of(&doc).expect("projection");
        assert_eq!(p.kind, RecordKind::Visit);
        assert_eq!(p.status.as_deref(), Some("planned"));
        assert_eq!(p.owner, Some(rep.user));
        assert_eq!(p.account_id, Some(account));
        assert_eq!(p.start_ms, Some(1_000));
        assert!(!p.deleted);
        doc.delete(DeviceTime::utc(5)).expect("delete");
        assert!(Projection::of(&doc).expect("projection").deleted);
    }

    #[test]
    fn an_assignment_projects_its_job_as_parent() {
        let manager = Actor::without_device(UserId::new(), Role::Manager);
        let tech = UserId::new();
        let job = RecordId::new();
        let a = Assignment::new(meta(tech), job, DeviceTime::utc(7), DeviceTime::utc(8));
        let doc = RecordDoc::create_stateful(&a, ActorId::random(), &manager, DeviceTime::utc(0))
            .expect("create");
        let p = Projection::of(&doc).expect("projection");
        assert_eq!(
            (p.parent_id, p.start_ms, p.status.as_deref()),
            (Some(job), Some(7), Some("scheduled"))
        );
        assert_eq!(p.owner, Some(tech));
    }
}
