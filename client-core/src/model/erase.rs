//! Erasure of personal data from a record: the rewrite and the rebase.
//!
//! An Automerge document keeps every value it ever held in its history, so a
//! personal value cannot be deleted by an edit: an edit only hides it behind a
//! newer one. Erasure therefore *rewrites* the record: the server copies the
//! record's current state into a new document whose history is one change by
//! the server, leaving out the erased person's data, and gives the record a
//! new **epoch** (see `docs/adr/0005-erasure-by-rewrite.md`). Nothing of the
//! old history survives the copy.
//!
//! What is taken out is a [`Scrub`]:
//!
//! - **fields** ([`personal_fields`]): paths whose whole value is the person's
//!   (a contact's phone, the GPS fixes of an erased user's check-ins). A text
//!   field the record cannot do without (a contact's name) becomes [`ERASED`];
//!   anything else is removed.
//! - **values**: the person's own values (every name, phone and email the
//!   contact ever had, [`RecordDoc::past_values`]), replaced by [`ERASED`]
//!   wherever they appear in any text of the record — a visit's notes naming
//!   the buyer, a signature's signer. The values travel only inside the server;
//!   devices are told the erased *fields*, never the values.
//!
//! A device that holds unsynced edits to a rewritten record keeps them:
//! [`RecordDoc::rebase_onto`] carries every field the device changed since its
//! last acknowledged state onto the rewritten document, as one new change of
//! the device's, except fields under an erased path, which are dropped. Record
//! collections are maps keyed by entry id (see the module docs of `model`), so a
//! field path names the same thing in both documents.
//!
//! The copy keeps each field's shown value: concurrent values of a field
//! settle to the one the record shows. Status clashes the server queued for a
//! manager stay in its conflicts queue.

use automerge::{
    ActorId, AutoCommit, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value,
    transaction::Transactable,
};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::json::{MAX_DEPTH, read_object};
use super::types::{DeviceTime, RecordKind};
use super::{ModelError, RecordDoc};
use crate::ids::{RecordId, UserId};

/// What an erased text reads as.
pub const ERASED: &str = "[erased]";

/// Shortest value the values scrub looks for: shorter ones ("Jo", "12") would
/// match inside unrelated words and numbers.
pub const MIN_SCRUB_VALUE_CHARS: usize = 3;

/// Whose personal data is erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum Subject {
    /// A contact at a customer (the record itself holds their data).
    Contact(RecordId),
    /// A user of the organisation (a rep who left): their GPS fixes and name.
    User(UserId),
}

/// A field path: map keys from the record's root.
pub type FieldPath = Vec<String>;

/// What to take out of one record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scrub {
    /// Paths whose value is the person's: a text the record needs becomes
    /// [`ERASED`], anything else is removed.
    pub fields: Vec<FieldPath>,
    /// The person's own values, replaced by [`ERASED`] in every text of the
    /// record (case-insensitively for ASCII letters). Values shorter than
    /// [`MIN_SCRUB_VALUE_CHARS`] are ignored.
    pub values: Vec<String>,
}

impl Scrub {
    /// Whether this scrub takes nothing out.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.values.iter().all(|v| !searchable(v))
    }
}

/// Fields of a contact that are not personal: the record's frame and its link
/// to the customer. Every other field of the contact's own record is theirs.
const CONTACT_FRAME: &[&str] = &["kind", "meta", "account_id", "deleted", "history"];

/// Contact fields that stay (as [`ERASED`]) because the record needs them.
const CONTACT_KEPT_AS_ERASED: &[&str] = &["name"];

/// The paths of `doc` that hold personal data of `subject` as whole values.
///
/// - The erased contact's own record: every field but its frame (id,
///   organisation, owner, account, history); the name stays as [`ERASED`].
/// - A record naming the contact (`contact_id`) with a signature: the signer's
///   name and role.
/// - An erased user's records: every GPS fix (`gps` anywhere in them); in any
///   record, the GPS fix of a status event the user made.
///
/// Free text naming the person is the values scrub's (see [`Scrub::values`]).
pub fn personal_fields(doc: &RecordDoc, subject: &Subject) -> Result<Vec<FieldPath>, ModelError> {
    let json = doc.to_json()?;
    let mut out = Vec::new();
    match subject {
        Subject::Contact(id) => {
            if doc.kind() == RecordKind::Contact && doc.id() == *id {
                if let Json::Object(map) = &json {
                    for key in map.keys() {
                        if !CONTACT_FRAME.contains(&key.as_str()) {
                            out.push(vec![key.clone()]);
                        }
                    }
                }
            } else if json.get("contact_id").and_then(Json::as_str) == Some(&id.to_string())
                && json.get("signature").is_some_and(Json::is_object)
            {
                out.push(path(&["signature", "signer_name"]));
                out.push(path(&["signature", "signer_role"]));
            }
        }
        Subject::User(user) => {
            let user = user.to_string();
            let owned = json.pointer("/meta/owner").and_then(Json::as_str) == Some(&user);
            let mut here = Vec::new();
            find_gps(&json, &mut here, &mut out, &|at: &[String], map| {
                owned
                    || (at.first().map(String::as_str) == Some("history")
                        && map.get("by").and_then(Json::as_str) == Some(&user))
            });
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn path(keys: &[&str]) -> FieldPath {
    keys.iter().map(|k| (*k).to_owned()).collect()
}

/// Whether the GPS fix in the map at a path is the erased user's.
type TakesGps<'a> = &'a dyn Fn(&[String], &serde_json::Map<String, Json>) -> bool;

/// Collects the paths of `gps` keys under maps `take` accepts.
fn find_gps(json: &Json, here: &mut Vec<String>, out: &mut Vec<FieldPath>, take: TakesGps<'_>) {
    let Json::Object(map) = json else { return };
    if map.contains_key("gps") && take(here, map) {
        let mut p = here.clone();
        p.push("gps".into());
        out.push(p);
    }
    for (key, value) in map {
        if here.len() < MAX_DEPTH {
            here.push(key.clone());
            find_gps(value, here, out, take);
            here.pop();
        }
    }
}

fn searchable(value: &str) -> bool {
    value.trim().chars().count() >= MIN_SCRUB_VALUE_CHARS
}

/// `text` with every occurrence of each of `values` replaced by [`ERASED`]
/// (ASCII letters compared without case); `None` when nothing matched.
pub fn scrub_text(text: &str, values: &[String]) -> Option<String> {
    let mut current: Option<String> = None;
    for value in values.iter().map(|v| v.trim()).filter(|v| searchable(v)) {
        let haystack = current.as_deref().unwrap_or(text);
        if let Some(replaced) = replace_ignoring_ascii_case(haystack, value) {
            current = Some(replaced);
        }
    }
    current
}

fn replace_ignoring_ascii_case(text: &str, needle: &str) -> Option<String> {
    let (hay, pat) = (text.as_bytes(), needle.as_bytes());
    if pat.is_empty() || hay.len() < pat.len() {
        return None;
    }
    let mut out = String::new();
    let (mut copied, mut i, mut found) = (0, 0, false);
    while i + pat.len() <= hay.len() {
        // A match starts on a character boundary: the needle's first byte is
        // ASCII or a UTF-8 lead byte, and folding ASCII case leaves every other
        // byte as it is.
        if hay[i..i + pat.len()].eq_ignore_ascii_case(pat) && text.is_char_boundary(i) {
            out.push_str(&text[copied..i]);
            out.push_str(ERASED);
            i += pat.len();
            copied = i;
            found = true;
        } else {
            i += 1;
        }
    }
    if !found {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

/// What happens to one path of the copy.
enum Take {
    /// Copy it (scrubbing its texts).
    Keep,
    /// Leave it out.
    Remove,
    /// Keep it as [`ERASED`] (a text the record needs).
    Blank,
}

fn take_for(path: &[String], fields: &[FieldPath], kind: RecordKind) -> Take {
    for field in fields {
        if path.starts_with(field) {
            let needed = (kind == RecordKind::Contact
                && field.len() == 1
                && CONTACT_KEPT_AS_ERASED.contains(&field[0].as_str()))
                || field.last().map(String::as_str) == Some("signer_name");
            return if needed && path.len() == field.len() {
                Take::Blank
            } else {
                Take::Remove
            };
        }
    }
    Take::Keep
}

impl RecordDoc {
    /// This record's current state as a new document made of one change by
    /// `actor`, without what `scrub` takes out: the record an erasure leaves.
    /// The record keeps its id and kind.
    pub fn rewritten(
        &self,
        scrub: &Scrub,
        actor: ActorId,
        at: DeviceTime,
    ) -> Result<RecordDoc, ModelError> {
        let mut out = AutoCommit::new().with_actor(actor);
        let mut here = Vec::new();
        let copy = Copy {
            src: self.am(),
            scrub,
            kind: self.kind(),
        };
        copy.map(&ROOT, &mut out, &ROOT, &mut here)?;
        let mut doc = RecordDoc::from_automerge(out)?;
        doc.commit("erase", at);
        Ok(doc)
    }

    /// Every value the fields at `paths` held in any state of this record's
    /// history, as text (a contact's every past name, phone and email): what
    /// the values scrub must look for in other records, which may have copied
    /// an old value before it changed.
    pub fn past_values(&mut self, paths: &[FieldPath]) -> Result<Vec<String>, ModelError> {
        let mut out: Vec<String> = Vec::new();
        // Replay the history one change at a time (in causal order, as
        // Automerge gives it) and read the fields after each: every state the
        // record went through, in time linear in the history's length.
        let changes = self.automerge().get_changes(&[]);
        let mut replay = AutoCommit::new();
        for change in changes {
            replay.apply_changes([change])?;
            let json = read_object(&replay, &ROOT)?;
            for p in paths {
                let mut at = &json;
                for key in p {
                    match at.get(key) {
                        Some(next) => at = next,
                        None => {
                            at = &Json::Null;
                            break;
                        }
                    }
                }
                collect_texts(at, &mut out);
            }
        }
        out.retain(|v| searchable(v) && v != ERASED);
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Carries this device's unsynced edits — every field changed since
    /// `synced` (the heads the server last acknowledged) — onto `rewritten`,
    /// the record's new epoch, as one change by this document's actor. Fields
    /// under an `erased` path are dropped: an erasure is never undone by an
    /// offline device. Returns the rebased document and whether any edit was
    /// carried over.
    pub fn rebase_onto(
        &mut self,
        synced: &[ChangeHash],
        rewritten: &RecordDoc,
        erased: &[FieldPath],
        at: DeviceTime,
    ) -> Result<(RecordDoc, bool), ModelError> {
        let actor = self.automerge().get_actor().clone();
        let before = self.automerge().fork_at(synced)?;
        let before = read_object(&before, &ROOT)?;
        let after = read_object(self.am(), &ROOT)?;
        let mut changed = Vec::new();
        diff_paths(&before, &after, &mut Vec::new(), &mut changed);
        changed.retain(|p| !erased.iter().any(|e| p.starts_with(e)));

        let mut out = rewritten.clone();
        out.set_actor(actor);
        let keep = Scrub::default();
        for p in &changed {
            let (parent, key) = p.split_at(p.len() - 1);
            let target = ensure_maps(out.automerge(), parent)?;
            let key = key[0].as_str();
            match locate(self.am(), p)? {
                Some((value, id)) => {
                    let copy = Copy {
                        src: self.am(),
                        scrub: &keep,
                        kind: self.kind(),
                    };
                    copy.value(value, id, out.automerge(), &target, Prop::Key(key), p)?;
                }
                None => {
                    if out.automerge().get(&target, key)?.is_some() {
                        out.automerge().delete(&target, key)?;
                    }
                }
            }
        }
        let moved = out.commit("rebase", at).is_some();
        Ok((out, moved))
    }
}

fn collect_texts(json: &Json, out: &mut Vec<String>) {
    match json {
        Json::String(s) => out.push(s.clone()),
        Json::Array(items) => items.iter().for_each(|v| collect_texts(v, out)),
        Json::Object(map) => map.values().for_each(|v| collect_texts(v, out)),
        _ => {}
    }
}

/// The paths (down to map keys) where `after` differs from `before`. A value
/// that is a map on both sides is compared key by key; anything else (a
/// scalar, a list, a text) is one path.
fn diff_paths(before: &Json, after: &Json, here: &mut Vec<String>, out: &mut Vec<FieldPath>) {
    match (before, after) {
        (Json::Object(a), Json::Object(b)) if here.len() < MAX_DEPTH => {
            for (key, value) in b {
                here.push(key.clone());
                diff_paths(a.get(key).unwrap_or(&Json::Null), value, here, out);
                here.pop();
            }
            for key in a.keys().filter(|k| !b.contains_key(*k)) {
                here.push(key.clone());
                out.push(here.clone());
                here.pop();
            }
        }
        (a, b) if a != b => out.push(here.clone()),
        _ => {}
    }
}

/// The maps along `path` in `doc`, made where missing (or where something else
/// stands); returns the last.
fn ensure_maps(doc: &mut AutoCommit, path: &[String]) -> Result<ObjId, ModelError> {
    let mut obj = ROOT;
    for key in path {
        obj = match doc.get(&obj, key.as_str())? {
            Some((Value::Object(ObjType::Map), id)) => id,
            _ => doc.put_object(&obj, key.as_str(), ObjType::Map)?,
        };
    }
    Ok(obj)
}

/// The value at `path` in `doc`, if any.
fn locate<'a>(
    doc: &'a AutoCommit,
    path: &[String],
) -> Result<Option<(Value<'a>, ObjId)>, ModelError> {
    let mut obj = ROOT;
    let mut found = None;
    for key in path {
        match doc.get(&obj, key.as_str())? {
            Some((value, id)) => {
                obj = id.clone();
                found = Some((value, id));
            }
            None => return Ok(None),
        }
    }
    Ok(found)
}

enum Prop<'k> {
    Key(&'k str),
    Index(usize),
}

/// A deep copy of one document's current state into another, scrubbed.
struct Copy<'a> {
    src: &'a AutoCommit,
    scrub: &'a Scrub,
    kind: RecordKind,
}

impl Copy<'_> {
    fn map(
        &self,
        from: &ObjId,
        dst: &mut AutoCommit,
        to: &ObjId,
        here: &mut Vec<String>,
    ) -> Result<(), ModelError> {
        if here.len() > MAX_DEPTH {
            return Err(ModelError::Malformed("record nests too deep".into()));
        }
        for key in self.src.keys(from).collect::<Vec<_>>() {
            let Some((value, id)) = self.src.get(from, key.as_str())? else {
                continue;
            };
            here.push(key.clone());
            match take_for(here, &self.scrub.fields, self.kind) {
                Take::Remove => {}
                Take::Blank => match value {
                    Value::Object(ObjType::Text) => {
                        let text = dst.put_object(to, key.as_str(), ObjType::Text)?;
                        dst.splice_text(&text, 0, 0, ERASED)?;
                    }
                    Value::Scalar(s) if matches!(s.as_ref(), ScalarValue::Str(_)) => {
                        dst.put(to, key.as_str(), ERASED)?;
                    }
                    _ => {}
                },
                Take::Keep => self.value(value, id, dst, to, Prop::Key(&key), here)?,
            }
            here.pop();
        }
        Ok(())
    }

    fn value(
        &self,
        value: Value<'_>,
        id: ObjId,
        dst: &mut AutoCommit,
        to: &ObjId,
        prop: Prop<'_>,
        here: &[String],
    ) -> Result<(), ModelError> {
        let mut here = here.to_vec();
        match value {
            Value::Object(kind) => {
                let made = match prop {
                    Prop::Key(k) => dst.put_object(to, k, kind)?,
                    Prop::Index(i) => dst.insert_object(to, i, kind)?,
                };
                match kind {
                    ObjType::Map | ObjType::Table => self.map(&id, dst, &made, &mut here)?,
                    ObjType::List => {
                        for i in 0..self.src.length(&id) {
                            if let Some((v, vid)) = self.src.get(&id, i)? {
                                self.value(v, vid, dst, &made, Prop::Index(i), &here)?;
                            }
                        }
                    }
                    ObjType::Text => {
                        let text = self.src.text(&id)?;
                        let text = scrub_text(&text, &self.scrub.values).unwrap_or(text);
                        dst.splice_text(&made, 0, 0, &text)?;
                    }
                }
            }
            Value::Scalar(s) => {
                let s = match s.as_ref() {
                    ScalarValue::Str(text) => match scrub_text(text, &self.scrub.values) {
                        Some(clean) => ScalarValue::Str(clean.into()),
                        None => s.into_owned(),
                    },
                    ScalarValue::Counter(c) => ScalarValue::counter(i64::from(c)),
                    _ => s.into_owned(),
                };
                match prop {
                    Prop::Key(k) => dst.put(to, k, s)?,
                    Prop::Index(i) => dst.insert(to, i, s)?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{OrgId, TeamId, TerritoryId};
    use crate::model::{Contact, RecordMeta};

    fn at(ms: i64) -> DeviceTime {
        DeviceTime::utc(ms)
    }

    fn contact() -> Contact {
        Contact {
            meta: RecordMeta {
                id: RecordId::new(),
                org: OrgId::new(),
                owner: UserId::new(),
                team: TeamId::new(),
                territory: TerritoryId::new(),
            },
            account_id: RecordId::new(),
            name: "Zebulon Quaxley".into(),
            role: Some("buyer".into()),
            phone: Some("+351 912 000 111".into()),
            email: Some("zebulon@quax.example".into()),
            marketing_consent: true,
            consent: None,
        }
    }

    fn contains(bytes: &[u8], needle: &str) -> bool {
        bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
    }

    #[test]
    fn the_rewrite_keeps_no_past_value_of_an_erased_contact() {
        let c = contact();
        let id = c.meta.id;
        let mut doc = RecordDoc::create(&c, ActorId::random(), at(1)).expect("create");
        doc.update::<Contact>(at(2), |c| c.phone = Some("+351 933 222 444".into()))
            .expect("edit");
        doc.update::<Contact>(at(3), |c| c.name = "Zeb Quaxley".into())
            .expect("edit");
        let subject = Subject::Contact(id);
        let fields = personal_fields(&doc, &subject).expect("fields");
        assert!(fields.contains(&vec!["phone".to_owned()]), "{fields:?}");
        assert!(
            !fields.contains(&vec!["account_id".to_owned()]),
            "{fields:?}"
        );
        let values = doc.past_values(&fields).expect("values");
        for v in [
            "Zebulon Quaxley",
            "Zeb Quaxley",
            "+351 912 000 111",
            "+351 933 222 444",
        ] {
            assert!(values.iter().any(|x| x == v), "{v} in {values:?}");
        }
        let before = doc.save_uncompressed();
        assert!(contains(&before, "Zebulon Quaxley"), "the history holds it");

        let scrub = Scrub { fields, values };
        let mut clean = doc
            .rewritten(&scrub, ActorId::random(), at(4))
            .expect("rewrite");
        let bytes = clean.save_uncompressed();
        for v in [
            "Zebulon",
            "Zeb Quaxley",
            "912 000 111",
            "933 222 444",
            "quax.example",
        ] {
            assert!(!contains(&bytes, v), "{v} survived the rewrite");
        }
        let after: Contact = clean.read().expect("still a contact");
        assert_eq!(after.name, ERASED);
        assert_eq!((after.phone, after.email, after.role), (None, None, None));
        assert_eq!((after.meta, after.account_id), (c.meta, c.account_id));
        assert_eq!(clean.changes_since(&[]).len(), 1, "a history of one change");
    }

    #[test]
    fn an_offline_edit_is_rebased_except_on_erased_fields() {
        let c = contact();
        let mut server = RecordDoc::create(&c, ActorId::random(), at(1)).expect("create");
        let mut device = server.clone();
        device.set_actor(ActorId::random());
        let synced = device.heads();
        let moved_to = RecordId::new();
        // Offline: the device edits an erased field and one that stays.
        device
            .update::<Contact>(at(2), |c| {
                c.phone = Some("+351 999 888 777".into());
                c.account_id = moved_to;
            })
            .expect("edit");
        let subject = Subject::Contact(c.meta.id);
        let fields = personal_fields(&server, &subject).expect("fields");
        let values = server.past_values(&fields).expect("values");
        let rewritten = server
            .rewritten(
                &Scrub {
                    fields: fields.clone(),
                    values,
                },
                ActorId::random(),
                at(3),
            )
            .expect("rewrite");
        let (mut rebased, moved) = device
            .rebase_onto(&synced, &rewritten, &fields, at(4))
            .expect("rebase");
        assert!(moved);
        let read: Contact = rebased.read().expect("read");
        assert_eq!(read.account_id, moved_to, "kept");
        assert_eq!(read.phone, None, "the erased field stays erased");
        assert!(!contains(&rebased.save_uncompressed(), "999 888 777"));
        // The rebased change applies on the server's rewritten document.
        let mut server_side = rewritten.clone();
        let heads = server_side.heads();
        let change = rebased.changes_since(&heads);
        assert_eq!(change.len(), 1);
        server_side.apply_changes(change).expect("applies");
        assert_eq!(
            server_side.read::<Contact>().expect("read").account_id,
            moved_to
        );
    }

    #[test]
    fn free_text_naming_the_person_is_scrubbed_ignoring_case() {
        let values = vec!["Zebulon Quaxley".to_owned(), "ab".to_owned()];
        assert_eq!(
            scrub_text("Met ZEBULON quaxley at the café; ab", &values).as_deref(),
            Some("Met [erased] at the café; ab")
        );
        assert_eq!(scrub_text("nothing here", &values), None);
        // Multi-byte text around a match stays whole.
        assert_eq!(
            scrub_text("ñ Zebulon Quaxleyñ", &values).as_deref(),
            Some("ñ [erased]ñ")
        );
    }
}
