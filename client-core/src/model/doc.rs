//! [`RecordDoc`]: one record as one Automerge document.
//!
//! All edits go through three doors, each producing exactly one Automerge change
//! (one commit) so that one user action is one unit on the device, in the outbox
//! and on the wire:
//!
//! - [`RecordDoc::create`] writes a new record,
//! - [`RecordDoc::update`] runs a closure on the typed struct and writes back only
//!   the fields that changed,
//! - [`RecordDoc::transition`] moves the status through the state machine (and may
//!   edit fields in the same change, e.g. a check-out sets the outcome).
//!
//! Reading ([`RecordDoc::read`]) resolves the effective status by domain rule (see
//! [`super::status`]); every other field takes Automerge's deterministic winner.
//! [`RecordDoc::conflicts`] lists every field that holds concurrent values.
//!
//! This module knows no record kind in particular: everything here is generic
//! over [`Record`] and [`Stateful`]. The few methods that pick the typed record
//! from the kind a document names at run time ([`RecordDoc::status_name`],
//! [`RecordDoc::conflicts`], [`RecordDoc::resolve_status_by_name`]) are
//! defined in `kinds`, above the record modules, so imports run one way: the
//! records import this module, never the reverse.

use std::collections::HashMap;

use automerge::{
    ActorId, AutoCommit, Change, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value,
    hydrate, transaction::CommitOptions, transaction::Transactable,
};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::json::{create, hydrate_map, read_object, read_value, write_map};
use super::rules;
use super::status::{Status, StatusEvent, TransitionRequest};
use super::types::{Actor, DeviceTime, RecordKind, Role};
use super::untrusted::{check_bounded, fenced};
use super::{ModelError, Record, Stateful};
use crate::ids::RecordId;

/// Keys that edits through [`RecordDoc::update`] never touch.
const RESERVED: &[&str] = &["kind", "status", "history", "deleted"];

/// One record: an Automerge document plus what Fieldsync knows about it.
#[derive(Debug, Clone)]
pub struct RecordDoc {
    doc: Memoised,
    kind: RecordKind,
    id: RecordId,
}

/// A record's Automerge document, with what was read of it since it last
/// changed. Reads go through `Deref`; any mutable use (`DerefMut`: every
/// edit, merge, load, and the raw `RecordDoc::automerge`) forgets what was
/// read first, so nothing remembered outlives the state it was read from.
///
/// What is remembered is what the push path asks more than once of one
/// merged record: the root `status` (its checks, projection, figures and
/// clash test each ask, five times in all for a new stateful record) and
/// whether `history` is a map (the checks and the figures). Each lookup in
/// Automerge's columns costs a few microseconds, about what applying one
/// operation of a change does.
#[derive(Debug, Clone)]
struct Memoised {
    am: AutoCommit,
    /// The root `status`'s concurrent values: the name of each that is a
    /// string, `None` for any other value.
    status: std::sync::OnceLock<Vec<Option<String>>>,
    /// Whether the root `history` is a map.
    history_is_map: std::sync::OnceLock<bool>,
}

impl Memoised {
    fn new(am: AutoCommit) -> Self {
        Memoised {
            am,
            status: std::sync::OnceLock::new(),
            history_is_map: std::sync::OnceLock::new(),
        }
    }
}

impl std::ops::Deref for Memoised {
    type Target = AutoCommit;

    fn deref(&self) -> &AutoCommit {
        &self.am
    }
}

impl std::ops::DerefMut for Memoised {
    fn deref_mut(&mut self) -> &mut AutoCommit {
        self.status.take();
        self.history_is_map.take();
        &mut self.am
    }
}

/// The name a value of the root `status` holds: `None` for any value but a
/// string.
fn status_name_of(value: Value<'_>) -> Option<String> {
    match value {
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Str(name) => Some(name.to_string()),
            _ => None,
        },
        Value::Object(_) => None,
    }
}

/// A field that holds concurrent values written on different devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    /// Dotted path of the field, e.g. `outcome` or `lines.<line id>.qty`.
    pub path: String,
    /// Every concurrent value, in Automerge's operation order.
    pub values: Vec<ConflictValue>,
}

/// One of the concurrent values of a [`Conflict`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictValue {
    /// The value as JSON.
    pub value: Json,
    /// The Automerge actor (one per device) that wrote it, as hex.
    pub actor: String,
    /// Whether this is the value the record currently shows.
    pub shown: bool,
}

impl RecordDoc {
    /// Creates the document of a new record, as one change made by `actor_id`.
    ///
    /// For stateful kinds use [`RecordDoc::create_stateful`], which also checks the
    /// initial status and records the creation in the status history.
    pub fn create<R: Record>(
        record: &R,
        actor_id: ActorId,
        at: DeviceTime,
    ) -> Result<Self, ModelError> {
        let mut this = Self::start::<R>(record, actor_id, None)?;
        this.commit("create", at);
        Ok(this)
    }

    /// Creates the document of a new stateful record: checks that `actor` may
    /// create it in its initial status and records a creation event.
    pub fn create_stateful<R: Stateful>(
        record: &R,
        actor_id: ActorId,
        actor: &Actor,
        at: DeviceTime,
    ) -> Result<Self, ModelError> {
        let status = record.status();
        if !status.may_start_in(actor.role) {
            return Err(super::TransitionError::precondition(format!(
                "a {} cannot be created as {} by a {}",
                R::Status::MACHINE,
                status.as_str(),
                actor.role
            ))
            .into());
        }
        let event = StatusEvent {
            id: RecordId::new(),
            from: None,
            to: status.as_str().to_owned(),
            by: actor.user,
            role: actor.role,
            device: actor.device,
            at,
            gps: None,
            reason: None,
        };
        let mut this = Self::start::<R>(record, actor_id, Some((status.as_str(), &event)))?;
        this.commit("create", at);
        Ok(this)
    }

    /// A new record's document, its first change still open: the record's
    /// fields, its kind and its status history (with the creation event of a
    /// stateful record, whose status it also sets), inserted as one batch.
    fn start<R: Record>(
        record: &R,
        actor_id: ActorId,
        stateful: Option<(&str, &StatusEvent)>,
    ) -> Result<Self, ModelError> {
        record.validate()?;
        let mut doc = AutoCommit::new().with_actor(actor_id);
        let encoding = doc.text_encoding();
        let json = to_object(record)?;
        let mut root = hydrate_map(&json, RESERVED, R::TEXT_FIELDS, encoding)?;
        root.insert("kind".into(), hydrate::Value::from(R::KIND.as_str()));
        let mut history = HashMap::new();
        if let Some((status, event)) = stateful {
            root.insert("status".into(), hydrate::Value::from(status));
            let entry = hydrate_map(&to_object(event)?, &[], &[], encoding)?;
            history.insert(event.id.to_string(), hydrate::Value::Map(entry.into()));
        }
        root.insert("history".into(), hydrate::Value::Map(history.into()));
        doc.init_root_from_hydrate(&root.into())?;
        Ok(Self {
            doc: Memoised::new(doc),
            kind: R::KIND,
            id: record.meta().id,
        })
    }

    /// Loads a saved document (a full save, possibly followed by incremental saves).
    pub fn load(bytes: &[u8]) -> Result<Self, ModelError> {
        check_bounded(bytes).map_err(ModelError::Malformed)?;
        let doc = fenced("loading a document", || AutoCommit::load(bytes))
            .map_err(ModelError::Malformed)??;
        Self::from_automerge(doc)
    }

    /// Wraps an Automerge document, checking that it holds a record.
    pub fn from_automerge(doc: AutoCommit) -> Result<Self, ModelError> {
        let kind = match doc.get(ROOT, "kind")? {
            Some((Value::Scalar(s), _)) => match s.as_ref() {
                ScalarValue::Str(name) => name
                    .parse::<RecordKind>()
                    .map_err(|e| ModelError::Malformed(e.to_string()))?,
                _ => return Err(ModelError::Malformed("kind is not a string".into())),
            },
            _ => return Err(ModelError::Malformed("no kind".into())),
        };
        let id = match doc.get(ROOT, "meta")? {
            Some((Value::Object(ObjType::Map), meta)) => match doc.get(&meta, "id")? {
                Some((Value::Scalar(s), _)) => match s.as_ref() {
                    ScalarValue::Str(id) => id
                        .parse::<RecordId>()
                        .map_err(|e| ModelError::Malformed(e.to_string()))?,
                    _ => return Err(ModelError::Malformed("meta.id is not a string".into())),
                },
                _ => return Err(ModelError::Malformed("no meta.id".into())),
            },
            _ => return Err(ModelError::Malformed("no meta".into())),
        };
        Ok(Self {
            doc: Memoised::new(doc),
            kind,
            id,
        })
    }

    /// Sets the actor future changes are made under (one per device, assigned by the server).
    pub fn set_actor(&mut self, actor_id: ActorId) {
        self.doc.set_actor(actor_id);
    }

    /// The record's kind.
    pub fn kind(&self) -> RecordKind {
        self.kind
    }

    /// The record's id.
    pub fn id(&self) -> RecordId {
        self.id
    }

    /// Reads the typed record. The status is the effective one (see [`super::status`]).
    pub fn read<R: Record>(&self) -> Result<R, ModelError> {
        self.expect_kind(R::KIND)?;
        self.read_json(&self.to_json()?)
    }

    /// Reads a stateful record with its effective status.
    pub fn read_stateful<R: Stateful>(&self) -> Result<R, ModelError> {
        self.expect_kind(R::KIND)?;
        self.read_stateful_json(&self.to_json()?)
    }

    /// [`RecordDoc::read`] from `json`, this document's [`RecordDoc::to_json`]
    /// read already: a caller that needs both walks the document once.
    pub fn read_json<R: Record>(&self, json: &Json) -> Result<R, ModelError> {
        self.expect_kind(R::KIND)?;
        R::deserialize(json).map_err(|e| ModelError::Malformed(e.to_string()))
    }

    /// [`RecordDoc::read_stateful`] from `json`, as [`RecordDoc::read_json`].
    pub fn read_stateful_json<R: Stateful>(&self, json: &Json) -> Result<R, ModelError> {
        let mut record: R = self.read_json(json)?;
        record.set_status(self.status::<R::Status>()?);
        Ok(record)
    }

    /// The whole document as JSON (winning values; effective status not applied).
    pub fn to_json(&self) -> Result<Json, ModelError> {
        read_object(&self.doc, &ROOT)
    }

    /// The effective status: the highest-ranked of the concurrent values.
    pub fn status<S: Status>(&self) -> Result<S, ModelError> {
        let values: Vec<S> = self
            .status_read()?
            .iter()
            .filter_map(|name| name.as_deref().and_then(S::parse))
            .collect();
        S::resolve(&values)
            .ok_or_else(|| ModelError::Malformed(format!("no valid {} status", S::MACHINE)))
    }

    /// The root `status`'s concurrent values (see [`Memoised`]): read once
    /// while the document does not change.
    fn status_read(&self) -> Result<&[Option<String>], ModelError> {
        if let Some(read) = self.doc.status.get() {
            return Ok(read);
        }
        let read = self
            .doc
            .get_all(ROOT, "status")?
            .into_iter()
            .map(|(v, _)| status_name_of(v))
            .collect();
        Ok(self.doc.status.get_or_init(|| read))
    }

    /// Whether the root `status` holds concurrent values that differ: a
    /// status clash, the same answer as finding `status` among the record's
    /// conflicts. One lookup when there is a single value (almost always);
    /// the whole conflict walk only when there are several.
    pub fn status_clashes(&self) -> Result<bool, ModelError> {
        if self.status_read()?.len() < 2 {
            return Ok(false);
        }
        Ok(self
            .conflicts_showing(|| None)?
            .iter()
            .any(|c| c.path == "status"))
    }

    /// Every value the `status` key holds (several while a clash is open), as
    /// stored names, now or — with `heads` — as the record was at those heads.
    pub fn status_values(&self, heads: Option<&[ChangeHash]>) -> Vec<String> {
        let Some(heads) = heads else {
            return self
                .status_read()
                .map(|read| read.iter().flatten().cloned().collect())
                .unwrap_or_default();
        };
        self.doc
            .get_all_at(ROOT, "status", heads)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(v, _)| status_name_of(v))
            .collect()
    }

    /// Edits the record: `edit` changes the typed struct, and only the fields that
    /// differ afterwards are written, as one change. Returns the change's hash, or
    /// `None` when nothing changed.
    ///
    /// The id, organisation and status cannot be changed here.
    pub fn update<R: Record>(
        &mut self,
        at: DeviceTime,
        edit: impl FnOnce(&mut R),
    ) -> Result<Option<ChangeHash>, ModelError> {
        self.update_by(None, at, edit)
    }

    /// [`RecordDoc::update`], refused unless `role` may write every field the
    /// edit changes in the record's current status (the table of `rules`,
    /// which the server applies again to what the device pushes). With `None`
    /// the edit is not checked (a device that has not logged in yet).
    pub fn update_by<R: Record>(
        &mut self,
        role: Option<Role>,
        at: DeviceTime,
        edit: impl FnOnce(&mut R),
    ) -> Result<Option<ChangeHash>, ModelError> {
        let before: R = self.read()?;
        let mut after = before.clone();
        edit(&mut after);
        if let Some(role) = role {
            let statuses = self.status_values(None);
            let statuses: Vec<Option<&str>> = if statuses.is_empty() {
                vec![None]
            } else {
                statuses.iter().map(|s| Some(s.as_str())).collect()
            };
            for status in statuses {
                self.check_edit(&before, &after, status, role)?;
            }
        }
        if let Err(e) = self.write_fields(&before, &after) {
            // Nothing of a refused edit may linger into the next commit.
            self.doc.rollback();
            return Err(e);
        }
        Ok(self.commit("update", at))
    }

    /// Moves a stateful record to `req.to`, after applying `edit` to its fields, as one change.
    ///
    /// Checks, in order: the state machine edge and the actor's role, then the
    /// record's own guard against the edited record. On any refusal nothing is written.
    pub fn transition<R: Stateful>(
        &mut self,
        actor: &Actor,
        req: &TransitionRequest<R::Status>,
        edit: impl FnOnce(&mut R),
    ) -> Result<ChangeHash, ModelError> {
        let before: R = self.read_stateful()?;
        let from = before.status();
        from.check(req.to, actor.role)?;
        let mut after = before.clone();
        edit(&mut after);
        after.set_status(req.to);
        after.guard(req, actor)?;
        // The status itself is written below, with its history event.
        after.set_status(from);
        self.check_edit(&before, &after, Some(from.as_str()), actor.role)?;
        if let Err(e) = self.write_fields(&before, &after) {
            self.doc.rollback();
            return Err(e);
        }
        let event = StatusEvent {
            id: RecordId::new(),
            from: Some(from.as_str().to_owned()),
            to: req.to.as_str().to_owned(),
            by: actor.user,
            role: actor.role,
            device: actor.device,
            at: req.at,
            gps: req.gps,
            reason: req.reason.clone(),
        };
        let written = self
            .doc
            .put(ROOT, "status", req.to.as_str())
            .map_err(ModelError::from)
            .and_then(|()| self.append_event(&event));
        if let Err(e) = written {
            self.doc.rollback();
            return Err(e);
        }
        let message = format!("status:{}", req.to.as_str());
        self.commit(&message, req.at)
            .ok_or_else(|| ModelError::Malformed("transition produced no change".into()))
    }

    /// Whether `role` may make the edit from `before` to `after` while the
    /// record is in `status` (see `rules`).
    fn check_edit<R: Record>(
        &self,
        before: &R,
        after: &R,
        status: Option<&str>,
        role: Role,
    ) -> Result<(), ModelError> {
        let before = Json::Object(to_object(before)?);
        let after = Json::Object(to_object(after)?);
        rules::check_write(self.kind, Some(&before), &after, status, role)?;
        Ok(())
    }

    /// Settles a status conflict: writes `status` over every concurrent value and
    /// records the decision in the history. Only the back office may do this.
    pub fn resolve_status<S: Status>(
        &mut self,
        actor: &Actor,
        status: S,
        at: DeviceTime,
        reason: impl Into<String>,
    ) -> Result<ChangeHash, ModelError> {
        if !actor.role.is_back_office() {
            return Err(super::TransitionError::precondition(
                "only the back office can settle a status conflict",
            )
            .into());
        }
        let from = self.status::<S>()?;
        self.doc.put(ROOT, "status", status.as_str())?;
        let event = StatusEvent {
            id: RecordId::new(),
            from: Some(from.as_str().to_owned()),
            to: status.as_str().to_owned(),
            by: actor.user,
            role: actor.role,
            device: actor.device,
            at,
            gps: None,
            reason: Some(reason.into()),
        };
        self.append_event(&event)?;
        self.commit("resolve:status", at)
            .ok_or_else(|| ModelError::Malformed("resolution produced no change".into()))
    }

    /// Settles a field holding concurrent values (not the status: see
    /// [`RecordDoc::resolve_status`]) by writing `keep`, one of its values,
    /// over all of them: what a field user does from the app when two of their
    /// devices, or they and the office, wrote the same field offline (a
    /// running time entry stopped on the phone and on the tablet).
    ///
    /// Refused when the field no longer clashes, when `keep` is not one of its
    /// values, and when `role`
    /// may not write the field in the record's status (the table of `rules`,
    /// which the server applies to the push again).
    pub fn keep_value(
        &mut self,
        role: Role,
        path: &str,
        keep: &Json,
        at: DeviceTime,
    ) -> Result<ChangeHash, ModelError> {
        if path == "status" {
            return Err(super::TransitionError::precondition(
                "a status clash is settled by the back office",
            )
            .into());
        }
        let clash = self
            .conflicts_showing(|| None)?
            .into_iter()
            .find(|c| c.path == path)
            .ok_or_else(|| {
                super::ValidationError::new(path, "this field no longer holds concurrent values")
            })?;
        if !clash.values.iter().any(|v| v.value == *keep) {
            return Err(super::ValidationError::new(
                path,
                "keep one of the concurrent values of the field",
            )
            .into());
        }
        let segments: Vec<&str> = path.split('.').collect();
        let kind = self.kind();
        // The table's field: `key.*.sub` when the kind guards that sub-field
        // of its entries, else the top-level key.
        let field = match segments.as_slice() {
            [key, _, sub] => rules::rules_of(kind)
                .find(|r| r.field == format!("{key}.*.{sub}"))
                .or_else(|| rules::rules_of(kind).find(|r| r.field == *key)),
            [key, ..] => rules::rules_of(kind).find(|r| r.field == *key),
            [] => None,
        }
        .ok_or_else(|| rules::Locked::UnknownField {
            kind,
            field: path.to_owned(),
        })?;
        let statuses = self.status_values(None);
        let statuses: Vec<Option<&str>> = if statuses.is_empty() {
            vec![None]
        } else {
            statuses.iter().map(|s| Some(s.as_str())).collect()
        };
        for status in statuses {
            if rules::may_write(kind, field.field, status, role) != Some(true) {
                return Err(rules::Locked::Field {
                    kind,
                    field: field.field,
                    status: status.map(str::to_owned),
                    role,
                }
                .into());
            }
        }
        let (last, parents) = segments
            .split_last()
            .ok_or_else(|| ModelError::Malformed("an empty path".into()))?;
        let mut obj = ROOT;
        for key in parents {
            obj = match self.doc.get(&obj, *key)? {
                Some((Value::Object(ObjType::Map), child)) => child,
                _ => {
                    return Err(ModelError::Malformed(format!("{path}: {key} is not a map")));
                }
            };
        }
        // A new value (or object, for a time) written over every concurrent one.
        create(&mut self.doc, &obj, last, keep, false)?;
        self.commit("resolve:field", at)
            .ok_or_else(|| ModelError::Malformed("resolution produced no change".into()))
    }

    /// Tombstones the record. The tombstone replicates like any edit and is never
    /// purged, so a device that was offline for months still learns of it.
    pub fn delete(&mut self, at: DeviceTime) -> Result<Option<ChangeHash>, ModelError> {
        if self.is_deleted() {
            return Ok(None);
        }
        self.doc.put(ROOT, "deleted", true)?;
        Ok(self.commit("delete", at))
    }

    /// Whether the record is tombstoned.
    pub fn is_deleted(&self) -> bool {
        matches!(
            self.doc.get(ROOT, "deleted"),
            Ok(Some((Value::Scalar(s), _))) if matches!(s.as_ref(), ScalarValue::Boolean(true))
        )
    }

    /// The status history, oldest first (by device time, then event id).
    pub fn history(&self) -> Result<Vec<StatusEvent>, ModelError> {
        let Some((Value::Object(ObjType::Map), history)) = self.doc.get(ROOT, "history")? else {
            return Ok(Vec::new());
        };
        events_of(&read_object(&self.doc, &history)?)
    }

    /// [`RecordDoc::history`], read from `json`, this record's own
    /// [`RecordDoc::to_json`]: the same events without reading the document a
    /// second time (the push path reads a record's JSON once and its history
    /// three times).
    pub fn history_in(&self, json: &Json) -> Result<Vec<StatusEvent>, ModelError> {
        let history_is_map = match self.doc.history_is_map.get() {
            Some(&known) => known,
            None => {
                let read = matches!(
                    self.doc.get(ROOT, "history")?,
                    Some((Value::Object(ObjType::Map), _))
                );
                *self.doc.history_is_map.get_or_init(|| read)
            }
        };
        if !history_is_map {
            return Ok(Vec::new());
        }
        json.get("history").map_or(Ok(Vec::new()), events_of)
    }

    /// Every field holding concurrent values that differ, sorted by path; the
    /// walk behind [`RecordDoc::conflicts`].
    ///
    /// Which of the concurrent values of the root `status` the record shows is
    /// the kind's machine's to say: `effective_status` gives its name (asked
    /// only when the status clashes; `None` falls back to Automerge's winner).
    /// The kind dispatch lives above the record modules (`kinds`), so this
    /// module does not import the records that import it.
    pub(super) fn conflicts_showing(
        &self,
        effective_status: impl Fn() -> Option<String>,
    ) -> Result<Vec<Conflict>, ModelError> {
        let mut out = Vec::new();
        self.collect_conflicts(&ROOT, String::new(), 0, &effective_status, &mut out)?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn collect_conflicts(
        &self,
        obj: &ObjId,
        prefix: String,
        depth: usize,
        effective_status: &dyn Fn() -> Option<String>,
        out: &mut Vec<Conflict>,
    ) -> Result<(), ModelError> {
        if depth > super::json::MAX_DEPTH {
            return Err(ModelError::Malformed(format!(
                "objects nest deeper than {} levels",
                super::json::MAX_DEPTH
            )));
        }
        if !matches!(self.doc.object_type(obj)?, ObjType::Map | ObjType::Table) {
            return Ok(());
        }
        for key in self.doc.keys(obj).collect::<Vec<_>>() {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            let all = self.doc.get_all(obj, key.as_str())?;
            if all.len() > 1 {
                let mut values = Vec::with_capacity(all.len());
                for (v, id) in &all {
                    values.push((read_value(&self.doc, v.clone(), id)?, actor_of(id)));
                }
                let distinct = values.iter().any(|(v, _)| *v != values[0].0);
                if distinct {
                    let shown = if prefix.is_empty() && key == "status" {
                        shown_status(&values, effective_status())
                    } else {
                        values.len() - 1
                    };
                    out.push(Conflict {
                        path: path.clone(),
                        values: values
                            .into_iter()
                            .enumerate()
                            .map(|(i, (value, actor))| ConflictValue {
                                value,
                                actor,
                                shown: i == shown,
                            })
                            .collect(),
                    });
                }
            }
            if let Some((Value::Object(ObjType::Map), child)) = self.doc.get(obj, key.as_str())? {
                self.collect_conflicts(&child, path, depth + 1, effective_status, out)?;
            }
        }
        Ok(())
    }

    fn write_fields<R: Record>(&mut self, before: &R, after: &R) -> Result<(), ModelError> {
        let (b, a) = (before.meta(), after.meta());
        if a.id != b.id {
            return Err(ModelError::Immutable {
                field: "meta.id",
                hint: "",
            });
        }
        if a.org != b.org {
            return Err(ModelError::Immutable {
                field: "meta.org",
                hint: "",
            });
        }
        let before_json = to_object(before)?;
        let after_json = to_object(after)?;
        if before_json.get("status") != after_json.get("status") {
            return Err(ModelError::Immutable {
                field: "status",
                hint: "; use a transition",
            });
        }
        after.validate()?;
        write_map(&mut self.doc, &ROOT, &after_json, RESERVED, R::TEXT_FIELDS)
    }

    fn append_event(&mut self, event: &StatusEvent) -> Result<(), ModelError> {
        let history = match self.doc.get(ROOT, "history")? {
            Some((Value::Object(ObjType::Map), id)) => id,
            _ => self.doc.put_object(ROOT, "history", ObjType::Map)?,
        };
        let key = event.id.to_string();
        let entry = self.doc.put_object(&history, key.as_str(), ObjType::Map)?;
        let json = to_object(event)?;
        write_map(&mut self.doc, &entry, &json, &[], &[])
    }

    fn expect_kind(&self, kind: RecordKind) -> Result<(), ModelError> {
        if self.kind == kind {
            Ok(())
        } else {
            Err(ModelError::WrongKind {
                expected: kind,
                found: self.kind.as_str().into(),
            })
        }
    }

    pub(super) fn commit(&mut self, message: &str, at: DeviceTime) -> Option<ChangeHash> {
        self.doc.commit_with(
            CommitOptions::default()
                .with_message(message.to_owned())
                .with_time(at.at_ms.div_euclid(1000)),
        )
    }

    // --- Persistence and sync -------------------------------------------------

    /// The Automerge document, to read (the model's own modules).
    pub(super) fn am(&self) -> &AutoCommit {
        &self.doc
    }

    /// The current heads (hashes of the changes nothing else depends on yet).
    pub fn heads(&mut self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// A compact full save.
    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    /// A full save without Automerge's own compression of its columns: larger
    /// alone, but a run of small documents compresses far better together
    /// (gzip on the wire sees the field names and ids they share, which
    /// per-document deflate hides). The server stores small documents this way
    /// so a priming answer is small once gzipped; both forms load alike.
    pub fn save_uncompressed(&mut self) -> Vec<u8> {
        self.doc.save_nocompress()
    }

    /// The changes made or received since the last call to `save`/`save_incremental`.
    pub fn save_incremental(&mut self) -> Vec<u8> {
        self.doc.save_incremental()
    }

    /// Appends incremental save bytes (or raw changes) to the document.
    pub fn load_incremental(&mut self, bytes: &[u8]) -> Result<usize, ModelError> {
        // On a panic the document may be half-updated: replace it by the state
        // before the call, so the caller keeps a consistent record.
        check_bounded(bytes).map_err(ModelError::Malformed)?;
        let before = self.doc.clone();
        match fenced("loading incremental bytes", || {
            self.doc.load_incremental(bytes)
        }) {
            Ok(loaded) => Ok(loaded?),
            Err(e) => {
                self.doc = before;
                Err(ModelError::Malformed(e))
            }
        }
    }

    /// The changes not covered by `have` (the changes after those heads).
    pub fn changes_since(&mut self, have: &[ChangeHash]) -> Vec<Change> {
        self.doc.get_changes(have)
    }

    /// One change by hash, if the document has it.
    pub fn change(&mut self, hash: &ChangeHash) -> Option<Change> {
        self.doc.get_change_by_hash(hash)
    }

    /// Applies changes received from elsewhere.
    pub fn apply_changes(&mut self, changes: Vec<Change>) -> Result<(), ModelError> {
        let before = self.doc.clone();
        match fenced("applying changes", || self.doc.apply_changes(changes)) {
            Ok(applied) => Ok(applied?),
            Err(e) => {
                self.doc = before;
                Err(ModelError::Malformed(e))
            }
        }
    }

    /// Merges another replica of the same record into this one.
    pub fn merge(&mut self, other: &mut RecordDoc) -> Result<Vec<ChangeHash>, ModelError> {
        if other.id != self.id {
            return Err(ModelError::Malformed(
                "cannot merge two different records".into(),
            ));
        }
        Ok(self.doc.merge(&mut other.doc)?)
    }

    /// Writes the raw status key, bypassing the state machine: how a forged or
    /// buggy client would, for tests of the server's checks.
    #[cfg(test)]
    pub(crate) fn automerge_put_status_for_tests(&mut self, status: &str) {
        self.automerge_put_root_for_tests("status", status);
    }

    /// Writes a raw root key, bypassing validation (tests of incoming checks).
    #[cfg(test)]
    pub(crate) fn automerge_put_root_for_tests(&mut self, key: &str, value: &str) {
        let _ = self.doc.put(ROOT, key, value);
        self.doc.commit();
    }

    /// Gives back the underlying Automerge document.
    pub fn into_automerge(self) -> AutoCommit {
        self.doc.am
    }

    /// The underlying Automerge document, for sync and inspection.
    pub fn automerge(&mut self) -> &mut AutoCommit {
        &mut self.doc
    }
}

/// The events of a record's `history` map read as JSON, oldest first (by
/// device time, then event id); anything but a map holds none.
fn events_of(history: &Json) -> Result<Vec<StatusEvent>, ModelError> {
    let mut events: Vec<StatusEvent> = match history {
        Json::Object(map) => map
            .values()
            .map(|v| StatusEvent::deserialize(v).map_err(|e| ModelError::Malformed(e.to_string())))
            .collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    events.sort_by_key(|e| (e.at.at_ms, e.id));
    Ok(events)
}

fn actor_of(id: &ObjId) -> String {
    match id {
        ObjId::Root => String::new(),
        ObjId::Id(_, actor, _) => actor.to_hex_string(),
    }
}

/// Index of the status value that wins by domain rule. Statuses are compared by
/// name only here (the machine is not known), so the rule is re-applied by
/// name: the kind's machine decides. Falls back to Automerge's winner.
fn shown_status(values: &[(Json, String)], effective: Option<String>) -> usize {
    let Some(current) = effective else {
        return values.len() - 1;
    };
    values
        .iter()
        .position(|(v, _)| v.as_str() == Some(current.as_str()))
        .unwrap_or(values.len() - 1)
}

fn to_object<T: Serialize>(value: &T) -> Result<serde_json::Map<String, Json>, ModelError> {
    match serde_json::to_value(value) {
        Ok(Json::Object(map)) => Ok(map),
        Ok(_) => Err(ModelError::Malformed(
            "a record must serialize to an object".into(),
        )),
        Err(e) => Err(ModelError::Malformed(e.to_string())),
    }
}
