//! The conflicts queue as rules with no I/O: who may see and settle a clash,
//! the evidence a manager is shown for each side, and what a resolution
//! writes.
//!
//! A clash is a record whose status holds concurrent values after a merge: a
//! job completed offline while the office cancelled it, a visit checked in
//! while it was cancelled. A rep checked in at two visits at once (devices
//! offline, or a check-out forgotten) is listed too ([`OVERLAP_PATH`]). The model shows the side with field evidence
//! (`Status::precedence`) and keeps the other; `RecordDoc::conflicts` lists
//! both. The push opens a row of `conflicts` in the transaction that stores
//! such a merge and closes it in the one that stores a single status again,
//! whoever wrote it (see `db::records`).
//!
//! **Evidence** ([`evidence`]) is read from the record itself: each value,
//! which device and user wrote it, the matching status-history event (device
//! time, position, reason), the whole history and the record's fields.
//! **Settling** ([`settle_status`]) keeps one of the clashing values, by
//! `RecordDoc::resolve_status`, with the manager's comment (or a default) as
//! the history's reason; the service writes it on the manager's behalf through
//! the push path, so every device receives it.

use std::collections::BTreeMap;

use fieldsync_core::RecordId;
use fieldsync_core::model::{
    Actor, AssignmentStatus, Conflict, DeviceTime, JobStatus, ModelError, OrderStatus, RecordDoc,
    RecordKind, ReportStatus, Role, Status, StatusEvent, VisitStatus,
};
use serde::Serialize;
use serde_json::Value;

use super::{Error, Result};

/// Most conflicts one list returns.
pub const MAX_LISTED: i64 = 200;
/// Longest resolution comment.
pub const MAX_COMMENT_BYTES: usize = 4_000;
/// The field whose clashes the queue settles.
pub const STATUS_PATH: &str = "status";
/// A rep with two visits in progress at once: the row is on the visit
/// checked in last, has no sides to keep, and closes when the rep ends one of
/// them (or the office cancels one). Both check-ins are kept.
pub const OVERLAP_PATH: &str = "in_progress";

/// What a caller is doing with the queue; each refusal says it its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// Listing the open conflicts.
    Listing,
    /// Keeping one side of a clash.
    Resolving,
}

/// The queue is the back office's (managers and administrators).
pub fn may_handle(role: Role, what: Handling) -> Result<()> {
    if role.is_back_office() {
        return Ok(());
    }
    Err(Error::Forbidden(
        match what {
            Handling::Listing => "the conflicts queue is for managers and administrators",
            Handling::Resolving => "only managers and administrators resolve conflicts",
        }
        .into(),
    ))
}

/// A resolution's comment: trimmed, `None` when blank, at most [`MAX_COMMENT_BYTES`].
pub fn resolution_comment(comment: Option<&str>) -> Result<Option<&str>> {
    let comment = comment.map(str::trim).filter(|c| !c.is_empty());
    if comment.is_some_and(|c| c.len() > MAX_COMMENT_BYTES) {
        return Err(Error::BadRequest(format!(
            "a comment holds at most {MAX_COMMENT_BYTES} bytes"
        )));
    }
    Ok(comment)
}

/// The status-history reason a resolution writes: the manager's comment, or
/// a default naming the kept value.
pub fn settlement_reason(comment: Option<&str>, choose: &str) -> String {
    comment.map_or_else(|| format!("conflict settled: kept {choose}"), str::to_owned)
}

/// `choose` must be one of the clash's values.
pub fn check_choice(clash: &Conflict, choose: &str) -> Result<()> {
    let choices: Vec<&str> = clash
        .values
        .iter()
        .filter_map(|v| v.value.as_str())
        .collect();
    if choices.contains(&choose) {
        return Ok(());
    }
    Err(Error::BadRequest(format!(
        "choose one of the clashing values: {}",
        choices.join(", ")
    )))
}

/// Settles the status clash of `doc` (record `id` of `kind`) by keeping
/// `choose`, as `actor`: the clash must still be there, `choose` must be one
/// of its values and a status of the kind's machine. The change is made in
/// `doc`; storing it is the caller's.
pub fn settle_status(
    doc: &mut RecordDoc,
    id: RecordId,
    kind: RecordKind,
    actor: &Actor,
    choose: &str,
    comment: Option<&str>,
    at: DeviceTime,
) -> Result<()> {
    let clash = doc
        .conflicts()
        .map_err(|e| Error::internal(format!("conflicts of {id}: {e}")))?
        .into_iter()
        .find(|c| c.path == STATUS_PATH)
        .ok_or_else(|| Error::Conflict("this record's status no longer clashes".into()))?;
    check_choice(&clash, choose)?;
    let reason = settlement_reason(comment, choose);
    match kind {
        RecordKind::Visit => keep::<VisitStatus>(doc, actor, choose, at, &reason),
        RecordKind::VisitReport => keep::<ReportStatus>(doc, actor, choose, at, &reason),
        RecordKind::Order => keep::<OrderStatus>(doc, actor, choose, at, &reason),
        RecordKind::ServiceJob => keep::<JobStatus>(doc, actor, choose, at, &reason),
        RecordKind::Assignment => keep::<AssignmentStatus>(doc, actor, choose, at, &reason),
        _ => Err(Error::Conflict("this record has no status".into())),
    }
}

fn keep<S: Status>(
    doc: &mut RecordDoc,
    actor: &Actor,
    choose: &str,
    at: DeviceTime,
    reason: &str,
) -> Result<()> {
    let status = S::parse(choose)
        .ok_or_else(|| Error::BadRequest(format!("{choose:?} is not a {} status", S::MACHINE)))?;
    doc.resolve_status(actor, status, at, reason)
        .map(|_| ())
        .map_err(|e| Error::Conflict(e.to_string()))
}

/// An open conflict as stored: the `conflicts` row and the record's document.
#[derive(Debug, Clone)]
pub struct OpenConflict {
    /// The record.
    pub record_id: String,
    /// Its kind.
    pub kind: String,
    /// The clashing field.
    pub path: String,
    /// When the server stored the merge that made the clash (Unix seconds).
    pub detected_at: i64,
    /// Whose push made it.
    pub user_id: Option<String>,
    /// From which device.
    pub device_id: Option<String>,
    /// The record's document.
    pub doc: Vec<u8>,
}

/// One open conflict with its evidence.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConflictItem {
    /// The record.
    pub record_id: String,
    /// Its kind.
    pub kind: String,
    /// The clashing field: `status`, or `in_progress` for a rep checked in at
    /// two visits at once (no sides; it closes when the rep ends one).
    pub path: String,
    /// When the server stored the merge that made the clash (Unix seconds).
    pub detected_at: i64,
    /// Whose push made it.
    pub detected_by: Option<Person>,
    /// From which device.
    pub detected_device: Option<String>,
    /// The status the record shows now (the side with field evidence).
    pub shown: Option<String>,
    /// Every concurrent value with who wrote it and the matching history event.
    pub sides: Vec<Side>,
    /// Other fields edited concurrently on the same record (both values kept).
    #[schema(value_type = Vec<Object>)]
    pub other_fields: Vec<Conflict>,
    /// The whole status history, oldest first (device times).
    pub history: Vec<HistoryEntry>,
    /// The record's fields (history left out), as the server holds them.
    #[schema(value_type = Object)]
    pub record: Value,
}

/// A user, named.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Person {
    /// User id.
    pub id: String,
    /// Name to show.
    pub name: String,
}

/// One side of a clash.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Side {
    /// The value.
    #[schema(value_type = Object)]
    pub value: Value,
    /// Whether the record shows it now.
    pub shown: bool,
    /// The Automerge actor that wrote it (hex).
    pub actor: String,
    /// The device of that actor, when it is a device's (not the web app's).
    pub device_id: Option<String>,
    /// Who wrote it: the device's user, else the history event's author.
    pub by: Option<Person>,
    /// The latest status-history event that moved the record to this value.
    pub event: Option<HistoryEntry>,
}

/// A status-history event, with names.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    /// Status before (`None`: the creation).
    pub from: Option<String>,
    /// Status after.
    pub to: String,
    /// Who.
    pub by: Person,
    /// Their role then.
    pub role: String,
    /// The device, when made on one.
    pub device_id: Option<String>,
    /// Device time, ms since the epoch.
    pub at_ms: i64,
    /// The device's UTC offset then, minutes.
    pub tz_offset_min: i32,
    /// Position, when known.
    #[schema(value_type = Option<Object>)]
    pub gps: Option<Value>,
    /// Reason or comment.
    pub reason: Option<String>,
}

/// Names by user id (text), as the organisation's users table gives them.
pub type Names = BTreeMap<String, String>;
/// Devices by Automerge actor (lowercase hex): (device id, user id).
pub type DevicesByActor = BTreeMap<String, (String, String)>;

fn person(names: &Names, id: &str) -> Person {
    Person {
        id: id.to_owned(),
        name: names.get(id).cloned().unwrap_or_default(),
    }
}

fn entry(names: &Names, e: &StatusEvent) -> HistoryEntry {
    HistoryEntry {
        from: e.from.clone(),
        to: e.to.clone(),
        by: person(names, &e.by.to_string()),
        role: e.role.as_str().to_owned(),
        device_id: e.device.map(|d| d.to_string()),
        at_ms: e.at.at_ms,
        tz_offset_min: e.at.tz_offset_min,
        gps: e.gps.and_then(|g| serde_json::to_value(g).ok()),
        reason: e.reason.clone(),
    }
}

/// The evidence of one open conflict: each side with who wrote it (the
/// device's user when a device's actor wrote it, else the author of the
/// matching history event) and the latest history event that moved the
/// record to that value (by that user, when the device is known).
pub fn evidence(
    row: OpenConflict,
    names: &Names,
    devices: &DevicesByActor,
) -> Result<ConflictItem, ModelError> {
    let OpenConflict {
        record_id,
        kind,
        path,
        detected_at,
        user_id,
        device_id,
        doc: bytes,
    } = row;
    let doc = RecordDoc::load(&bytes)?;
    let history = doc.history()?;
    let mut conflicts = doc.conflicts()?;
    let clash = conflicts
        .iter()
        .position(|c| c.path == path)
        .map(|i| conflicts.remove(i));
    let sides = clash
        .map(|c| c.values)
        .unwrap_or_default()
        .into_iter()
        .map(|v| {
            let device = devices.get(&v.actor.to_lowercase());
            let event = v.value.as_str().and_then(|to| {
                history
                    .iter()
                    .rev()
                    .filter(|e| e.to == to)
                    .find(|e| device.is_none_or(|(_, u)| e.by.to_string() == *u))
            });
            let by = device
                .map(|(_, u)| person(names, u))
                .or_else(|| event.map(|e| person(names, &e.by.to_string())));
            Side {
                value: v.value,
                shown: v.shown,
                actor: v.actor,
                device_id: device.map(|(d, _)| d.clone()),
                by,
                event: event.map(|e| entry(names, e)),
            }
        })
        .collect();
    let mut record = doc.to_json()?;
    if let Some(map) = record.as_object_mut() {
        map.remove("history");
    }
    Ok(ConflictItem {
        record_id,
        kind,
        path,
        detected_at,
        detected_by: user_id.as_deref().map(|u| person(names, u)),
        detected_device: device_id,
        shown: doc.status_name()?.as_str().map(str::to_owned),
        sides,
        other_fields: conflicts,
        history: history.iter().map(|e| entry(names, e)).collect(),
        record,
    })
}

#[cfg(test)]
mod tests {
    use fieldsync_core::model::{ConflictValue, RecordMeta, VisitReport, report};
    use fieldsync_core::{DeviceId, OrgId, TeamId, TerritoryId, UserId};

    use super::*;

    fn clash(values: &[&str]) -> Conflict {
        Conflict {
            path: STATUS_PATH.into(),
            values: values
                .iter()
                .enumerate()
                .map(|(i, v)| ConflictValue {
                    value: Value::String((*v).into()),
                    actor: format!("{i:02x}"),
                    shown: i == 0,
                })
                .collect(),
        }
    }

    /// A submitted report that one manager approved while another sent it
    /// back, merged: its status clashes.
    fn clashing_report() -> (RecordDoc, Actor) {
        let rep = Actor::on_device(UserId::new(), Role::Rep, DeviceId::new());
        let meta = RecordMeta {
            id: RecordId::new(),
            org: OrgId::new(),
            owner: rep.user,
            team: TeamId::new(),
            territory: TerritoryId::new(),
        };
        let mut report = VisitReport::new(meta, RecordId::new());
        report.summary = "Shelf share up".into();
        let mut a = RecordDoc::create_stateful(
            &report,
            automerge::ActorId::random(),
            &rep,
            DeviceTime::utc(0),
        )
        .expect("create");
        report::submit(&mut a, &rep, DeviceTime::utc(1)).expect("submit");
        let mut b = RecordDoc::from_automerge(a.automerge().fork()).expect("fork");
        b.set_actor(automerge::ActorId::random());
        let manager = Actor::without_device(UserId::new(), Role::Manager);
        a.set_actor(automerge::ActorId::random());
        report::approve(&mut a, &manager, DeviceTime::utc(2), None).expect("approve");
        let admin = Actor::without_device(UserId::new(), Role::Admin);
        report::request_changes(&mut b, &admin, DeviceTime::utc(2), "Missing photos")
            .expect("request");
        a.merge(&mut b).expect("merge");
        (a, manager)
    }

    #[test]
    fn only_the_back_office_handles_the_queue() {
        for (role, allowed) in [
            (Role::Manager, true),
            (Role::Admin, true),
            (Role::Rep, false),
            (Role::Technician, false),
        ] {
            for what in [Handling::Listing, Handling::Resolving] {
                assert_eq!(may_handle(role, what).is_ok(), allowed, "{role:?} {what:?}");
            }
        }
    }

    #[test]
    fn a_resolution_comment_is_optional_trimmed_and_bounded() {
        assert_eq!(resolution_comment(None).ok(), Some(None));
        assert_eq!(resolution_comment(Some("  ")).ok(), Some(None));
        assert_eq!(resolution_comment(Some(" ok ")).ok(), Some(Some("ok")));
        let long = "x".repeat(MAX_COMMENT_BYTES + 1);
        assert_eq!(
            resolution_comment(Some(&long))
                .expect_err("too long")
                .to_string(),
            "a comment holds at most 4000 bytes"
        );
    }

    #[test]
    fn the_reason_is_the_comment_or_names_the_kept_value() {
        assert_eq!(
            settlement_reason(None, "cancelled"),
            "conflict settled: kept cancelled"
        );
        assert_eq!(
            settlement_reason(Some("customer called"), "x"),
            "customer called"
        );
    }

    #[test]
    fn a_manager_keeps_only_one_of_the_clashing_values() {
        let c = clash(&["completed", "cancelled"]);
        assert!(check_choice(&c, "cancelled").is_ok());
        let e = check_choice(&c, "in_progress").expect_err("not a side");
        assert_eq!(
            e.to_string(),
            "choose one of the clashing values: completed, cancelled"
        );
        assert_eq!(e.code(), "bad_request");
    }

    #[test]
    fn settling_writes_the_chosen_value_and_ends_the_clash() {
        let (mut doc, manager) = clashing_report();
        let id = RecordId::new();
        assert!(
            doc.conflicts()
                .expect("conflicts")
                .iter()
                .any(|c| c.path == "status")
        );
        let e = settle_status(
            &mut doc,
            id,
            RecordKind::VisitReport,
            &manager,
            "draft",
            None,
            DeviceTime::utc(3),
        )
        .expect_err("not a side");
        assert_eq!(e.code(), "bad_request");
        settle_status(
            &mut doc,
            id,
            RecordKind::VisitReport,
            &manager,
            "approved",
            None,
            DeviceTime::utc(3),
        )
        .expect("settled");
        assert_eq!(
            doc.status::<ReportStatus>().expect("status"),
            ReportStatus::Approved
        );
        let last = doc.history().expect("history").pop().expect("an event");
        assert_eq!(
            last.reason.as_deref(),
            Some("conflict settled: kept approved")
        );
        let again = settle_status(
            &mut doc,
            id,
            RecordKind::VisitReport,
            &manager,
            "approved",
            None,
            DeviceTime::utc(4),
        )
        .expect_err("no clash left");
        assert_eq!(again.to_string(), "this record's status no longer clashes");
    }

    #[test]
    fn the_evidence_names_who_wrote_each_side() {
        let (mut doc, manager) = clashing_report();
        let bytes = doc.save();
        let names: Names = [(manager.user.to_string(), "Mia".to_owned())].into();
        let item = evidence(
            OpenConflict {
                record_id: "r".into(),
                kind: "visit_report".into(),
                path: STATUS_PATH.into(),
                detected_at: 7,
                user_id: Some(manager.user.to_string()),
                device_id: None,
                doc: bytes,
            },
            &names,
            &DevicesByActor::new(),
        )
        .expect("evidence");
        assert_eq!(item.sides.len(), 2);
        assert_eq!(item.detected_by.map(|p| p.name).as_deref(), Some("Mia"));
        let approved = item
            .sides
            .iter()
            .find(|s| s.value == "approved")
            .expect("the approval");
        assert_eq!(approved.by.as_ref().map(|p| p.name.as_str()), Some("Mia"));
        assert_eq!(
            approved.event.as_ref().map(|e| e.to.as_str()),
            Some("approved")
        );
        assert!(item.record.get("history").is_none());
    }
}
