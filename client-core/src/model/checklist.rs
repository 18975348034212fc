//! Checklists: versioned templates and the responses filled on visits and jobs.
//!
//! A response stores one answer per question in a map keyed by question id, not
//! one blob: a technician and a colleague answering different questions offline
//! both keep their answers. A template is never edited once published; a change
//! is a new version, and a response names the version it answers.
//!
//! Template lifecycle. Each version is a record of its own. Version 1 starts a
//! family; version N+1 is a new record naming its `family` (the id of the
//! family's first version) and the version it `supersedes`, with
//! `version` = the predecessor's + 1 ([`ChecklistTemplate::check_successor`],
//! checked by the server on every push of a template). A version is a draft
//! (`published` false: the office edits it freely, nobody answers it) until it
//! is published; from then on nothing of it changes but `retired` (a retired
//! version is offered for no new work; the answers given to it stay valid). The
//! write table of `rules` holds this: a template's phase (`draft` or
//! `published`, [`super::rules::phase`]) plays the part of a status.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::types::{DeviceTime, RecordKind, RecordMeta};
use super::{Record, ValidationError};
use crate::ids::{RecordId, UserId};

/// The kind of answer a question takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuestionKind {
    /// Yes or no.
    YesNo,
    /// One of `choices`.
    Choice,
    /// A number.
    Number,
    /// Free text.
    Text,
    /// A photo (attachment hash).
    Photo,
    /// A signature (attachment hash).
    Signature,
    /// A scanned barcode.
    Barcode,
}

/// Show a question only when another question has a given answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShowIf {
    /// The question it depends on.
    pub question: String,
    /// The answer (as its text form: `yes`, `no`, a choice, a number) that shows it.
    pub equals: String,
}

/// One question of a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    /// Position in the form.
    pub position: u32,
    /// The question text.
    pub text: String,
    /// Answer kind.
    pub kind: QuestionKind,
    /// Options of a `choice` question.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    /// Must be answered (when shown).
    #[serde(default)]
    pub required: bool,
    /// Condition for showing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show_if: Option<ShowIf>,
}

/// A checklist template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecklistTemplate {
    /// Ownership.
    pub meta: RecordMeta,
    /// Name.
    pub name: String,
    /// Version number, from 1.
    pub version: u32,
    /// Published templates are sent to devices and never edited.
    #[serde(default)]
    pub published: bool,
    /// Questions by question id.
    #[serde(default)]
    pub questions: BTreeMap<String, Question>,
    /// The family's first version (`None` for a first version, and for
    /// templates made before versions named their family).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<RecordId>,
    /// The version this one follows (`None` for a first version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<RecordId>,
    /// A published version offered for no new work (its answers stay valid).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retired: bool,
}

impl ChecklistTemplate {
    /// The family's id: the id of its first version.
    pub fn family_id(&self) -> RecordId {
        self.family.unwrap_or(self.meta.id)
    }

    /// Whether responses may answer this version: it is published.
    pub fn answerable(&self) -> Result<(), ValidationError> {
        if !self.published {
            return Err(ValidationError::new(
                "template_id",
                "this checklist template is a draft; only a published version is answered",
            ));
        }
        Ok(())
    }

    /// Whether this version follows `predecessor` (the record its
    /// `supersedes` names): the predecessor is published, of the same family,
    /// and this version's number is the next one. A first version (no
    /// `supersedes`) follows nothing; it may carry a number above 1 for a
    /// template whose numbering started elsewhere (made by hand by an older
    /// app, or imported).
    pub fn check_successor(
        &self,
        predecessor: Option<&ChecklistTemplate>,
    ) -> Result<(), ValidationError> {
        match (self.supersedes, predecessor) {
            (None, _) => Ok(()),
            (Some(_), None) => Err(ValidationError::new(
                "supersedes",
                "the version this one follows is not available",
            )),
            (Some(id), Some(p)) => {
                if p.meta.id != id {
                    return Err(ValidationError::new(
                        "supersedes",
                        "names another template than the one given",
                    ));
                }
                if !p.published {
                    return Err(ValidationError::new(
                        "supersedes",
                        "a new version follows a published version, not a draft",
                    ));
                }
                if self.family != Some(p.family_id()) {
                    return Err(ValidationError::new(
                        "family",
                        "a new version belongs to the family of the version it follows",
                    ));
                }
                if Some(self.version) != p.version.checked_add(1) {
                    return Err(ValidationError::new(
                        "version",
                        format!(
                            "the version after {} is {}, not {}",
                            p.version,
                            p.version.saturating_add(1),
                            self.version
                        ),
                    ));
                }
                Ok(())
            }
        }
    }

    /// A draft of the next version of this (published) one: the same name
    /// and questions, `version` + 1, naming this one as its predecessor, with
    /// `meta` (a new id) as its ownership.
    pub fn next_version(&self, meta: RecordMeta) -> ChecklistTemplate {
        ChecklistTemplate {
            meta,
            name: self.name.clone(),
            version: self.version.saturating_add(1),
            published: false,
            questions: self.questions.clone(),
            family: Some(self.family_id()),
            supersedes: Some(self.meta.id),
            retired: false,
        }
    }
}

/// The version new work gets among `versions` (any templates; those of
/// other families are skipped): the highest published, not retired, version
/// of `family`.
pub fn latest_published<'a>(
    family: RecordId,
    versions: impl IntoIterator<Item = &'a ChecklistTemplate>,
) -> Option<&'a ChecklistTemplate> {
    versions
        .into_iter()
        .filter(|t| t.family_id() == family && t.published && !t.retired)
        .max_by_key(|t| t.version)
}

impl Record for ChecklistTemplate {
    const KIND: RecordKind = RecordKind::ChecklistTemplate;

    fn meta(&self) -> &RecordMeta {
        &self.meta
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if self.version == 0 {
            return Err(ValidationError::new("version", "versions start at 1"));
        }
        if self.supersedes == Some(self.meta.id) {
            return Err(ValidationError::new(
                "supersedes",
                "a version follows another",
            ));
        }
        if self.supersedes.is_none() && self.family.is_some_and(|f| f != self.meta.id) {
            return Err(ValidationError::new(
                "family",
                "a version of another family names the version it follows",
            ));
        }
        if self.supersedes.is_some() && self.family.is_none() {
            return Err(ValidationError::new(
                "family",
                "a later version names its family",
            ));
        }
        if self.retired && !self.published {
            return Err(ValidationError::new(
                "retired",
                "only a published version is retired; delete a draft instead",
            ));
        }
        for (id, q) in &self.questions {
            if q.kind == QuestionKind::Choice && q.choices.is_empty() {
                return Err(ValidationError::new(
                    format!("questions.{id}.choices"),
                    "a choice question needs choices",
                ));
            }
            if let Some(cond) = &q.show_if
                && !self.questions.contains_key(&cond.question)
            {
                return Err(ValidationError::new(
                    format!("questions.{id}.show_if"),
                    "depends on an unknown question",
                ));
            }
        }
        Ok(())
    }
}

/// An answer's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum AnswerValue {
    /// Yes/no.
    YesNo(bool),
    /// A choice.
    Choice(String),
    /// A number.
    Number(f64),
    /// Text.
    Text(String),
    /// SHA-256 (hex) of a photo attachment.
    Photo(String),
    /// SHA-256 (hex) of a signature attachment.
    Signature(String),
    /// A barcode.
    Barcode(String),
}

impl AnswerValue {
    /// The text form compared by [`ShowIf::equals`].
    pub fn as_text(&self) -> String {
        match self {
            AnswerValue::YesNo(true) => "yes".into(),
            AnswerValue::YesNo(false) => "no".into(),
            AnswerValue::Number(n) => n.to_string(),
            AnswerValue::Choice(s)
            | AnswerValue::Text(s)
            | AnswerValue::Photo(s)
            | AnswerValue::Signature(s)
            | AnswerValue::Barcode(s) => s.clone(),
        }
    }

    fn fits(&self, kind: QuestionKind) -> bool {
        matches!(
            (self, kind),
            (AnswerValue::YesNo(_), QuestionKind::YesNo)
                | (AnswerValue::Choice(_), QuestionKind::Choice)
                | (AnswerValue::Number(_), QuestionKind::Number)
                | (AnswerValue::Text(_), QuestionKind::Text)
                | (AnswerValue::Photo(_), QuestionKind::Photo)
                | (AnswerValue::Signature(_), QuestionKind::Signature)
                | (AnswerValue::Barcode(_), QuestionKind::Barcode)
        )
    }
}

/// One answer (keyed by question id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The value.
    pub value: AnswerValue,
    /// When it was given.
    pub at: DeviceTime,
    /// Who gave it.
    pub by: UserId,
}

/// A filled checklist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChecklistResponse {
    /// Ownership.
    pub meta: RecordMeta,
    /// The template answered.
    pub template_id: RecordId,
    /// Its version.
    pub template_version: u32,
    /// The visit or assignment it was filled on.
    pub subject_id: RecordId,
    /// Answers by question id.
    #[serde(default)]
    pub answers: BTreeMap<String, Answer>,
    /// Marked complete by the user.
    #[serde(default)]
    pub completed: bool,
}

impl ChecklistResponse {
    /// Required questions that are shown (their conditions hold) but not answered,
    /// in form order. Empty means the response can be completed.
    pub fn missing_required(&self, template: &ChecklistTemplate) -> Vec<String> {
        let mut questions: Vec<(&String, &Question)> = template.questions.iter().collect();
        questions.sort_by_key(|(id, q)| (q.position, (*id).clone()));
        questions
            .into_iter()
            .filter(|(_, q)| q.required)
            .filter(|(_, q)| self.shows(q))
            .filter(|(id, _)| !self.answers.contains_key(*id))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Whether `question` is shown given the answers so far: it has no
    /// condition, or the question it depends on has the answer it names.
    pub fn shows(&self, question: &Question) -> bool {
        match &question.show_if {
            None => true,
            Some(cond) => self
                .answers
                .get(&cond.question)
                .is_some_and(|a| a.value.as_text() == cond.equals),
        }
    }

    /// The template's questions shown given the answers so far, in form
    /// order: what the form displays, one at a time or all at once.
    pub fn shown_questions(&self, template: &ChecklistTemplate) -> Vec<String> {
        let mut questions: Vec<(&String, &Question)> = template.questions.iter().collect();
        questions.sort_by_key(|(id, q)| (q.position, (*id).clone()));
        questions
            .into_iter()
            .filter(|(_, q)| self.shows(q))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Checks every answer against the template's question kinds and choices;
    /// a draft template is answered by nobody.
    pub fn check_against(&self, template: &ChecklistTemplate) -> Result<(), ValidationError> {
        if template.meta.id != self.template_id || template.version != self.template_version {
            return Err(ValidationError::new(
                "template_id",
                "answers another template version",
            ));
        }
        template.answerable()?;
        for (id, answer) in &self.answers {
            let Some(q) = template.questions.get(id) else {
                return Err(ValidationError::new(
                    format!("answers.{id}"),
                    "no such question",
                ));
            };
            if !answer.value.fits(q.kind) {
                return Err(ValidationError::new(
                    format!("answers.{id}"),
                    "answer does not fit the question",
                ));
            }
            if let AnswerValue::Choice(c) = &answer.value
                && !q.choices.contains(c)
            {
                return Err(ValidationError::new(
                    format!("answers.{id}"),
                    "not one of the choices",
                ));
            }
        }
        if self.completed {
            let missing = self.missing_required(template);
            if !missing.is_empty() {
                return Err(ValidationError::new(
                    "answers",
                    format!("required questions unanswered: {}", missing.join(", ")),
                ));
            }
        }
        Ok(())
    }
}

impl Record for ChecklistResponse {
    const KIND: RecordKind = RecordKind::ChecklistResponse;

    fn meta(&self) -> &RecordMeta {
        &self.meta
    }

    fn validate(&self) -> Result<(), ValidationError> {
        for (id, a) in &self.answers {
            if let AnswerValue::Number(n) = a.value
                && !n.is_finite()
            {
                return Err(ValidationError::new(
                    format!("answers.{id}"),
                    "not a number",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{OrgId, TeamId, TerritoryId};
    use crate::model::RecordDoc;
    use automerge::ActorId;

    fn meta() -> RecordMeta {
        RecordMeta {
            id: RecordId::new(),
            org: OrgId::new(),
            owner: UserId::new(),
            team: TeamId::new(),
            territory: TerritoryId::new(),
        }
    }

    fn q(position: u32, kind: QuestionKind, required: bool, show_if: Option<ShowIf>) -> Question {
        Question {
            position,
            text: format!("q{position}"),
            kind,
            choices: vec![],
            required,
            show_if,
        }
    }

    fn template() -> ChecklistTemplate {
        let mut questions = BTreeMap::new();
        questions.insert("leak".into(), q(1, QuestionKind::YesNo, true, None));
        questions.insert(
            "leak_photo".into(),
            q(
                2,
                QuestionKind::Photo,
                true,
                Some(ShowIf {
                    question: "leak".into(),
                    equals: "yes".into(),
                }),
            ),
        );
        questions.insert("pressure".into(), q(3, QuestionKind::Number, false, None));
        ChecklistTemplate {
            meta: meta(),
            name: "Boiler service".into(),
            version: 2,
            published: true,
            questions,
            family: None,
            supersedes: None,
            retired: false,
        }
    }

    fn answer(value: AnswerValue) -> Answer {
        Answer {
            value,
            at: DeviceTime::utc(0),
            by: UserId::new(),
        }
    }

    #[test]
    fn required_questions_follow_show_if() {
        let t = template();
        let mut r = ChecklistResponse {
            meta: meta(),
            template_id: t.meta.id,
            template_version: 2,
            subject_id: RecordId::new(),
            answers: BTreeMap::new(),
            completed: false,
        };
        assert_eq!(r.missing_required(&t), vec!["leak".to_string()]);
        assert_eq!(r.shown_questions(&t), ["leak", "pressure"]);
        r.answers
            .insert("leak".into(), answer(AnswerValue::YesNo(true)));
        assert_eq!(r.missing_required(&t), vec!["leak_photo".to_string()]);
        assert_eq!(r.shown_questions(&t), ["leak", "leak_photo", "pressure"]);
        r.answers
            .insert("leak".into(), answer(AnswerValue::YesNo(false)));
        assert!(r.missing_required(&t).is_empty());
        assert_eq!(r.shown_questions(&t), ["leak", "pressure"]);
        r.completed = true;
        assert_eq!(r.check_against(&t), Ok(()));
        r.answers
            .insert("pressure".into(), answer(AnswerValue::Text("high".into())));
        assert!(
            r.check_against(&t).is_err(),
            "a text answer to a number question"
        );
    }

    #[test]
    fn answers_given_on_two_devices_both_survive() {
        let t = template();
        let r = ChecklistResponse {
            meta: meta(),
            template_id: t.meta.id,
            template_version: 2,
            subject_id: RecordId::new(),
            answers: BTreeMap::new(),
            completed: false,
        };
        let mut a = RecordDoc::create(&r, ActorId::random(), DeviceTime::utc(0)).expect("create");
        let mut b = RecordDoc::from_automerge(a.automerge().fork()).expect("fork");
        b.set_actor(ActorId::random());
        a.update::<ChecklistResponse>(DeviceTime::utc(1), |r| {
            r.answers
                .insert("leak".into(), answer(AnswerValue::YesNo(false)));
        })
        .expect("a");
        b.update::<ChecklistResponse>(DeviceTime::utc(1), |r| {
            r.answers
                .insert("pressure".into(), answer(AnswerValue::Number(1.5)));
        })
        .expect("b");
        a.merge(&mut b).expect("merge");
        let merged: ChecklistResponse = a.read().expect("read");
        assert_eq!(merged.answers.len(), 2);
    }

    fn draft(t: &ChecklistTemplate) -> ChecklistTemplate {
        ChecklistTemplate {
            published: false,
            version: 1,
            ..t.clone()
        }
    }

    #[test]
    fn a_published_version_is_never_edited_only_retired_on_the_device_and_on_the_server() {
        use crate::model::{Actor, check_incoming};
        let manager = Actor::without_device(UserId::new(), crate::model::Role::Manager);
        let t = draft(&template());
        let org = t.meta.org;
        let mut doc = RecordDoc::create(&t, ActorId::random(), DeviceTime::utc(0)).expect("create");
        // A draft: the office edits it freely, then publishes it.
        doc.update_by::<ChecklistTemplate>(Some(manager.role), DeviceTime::utc(1), |t| {
            t.name = "Boiler service (2026)".into();
        })
        .expect("a draft is edited");
        doc.update_by::<ChecklistTemplate>(Some(manager.role), DeviceTime::utc(2), |t| {
            t.published = true;
        })
        .expect("published");
        // Published: every edit refused on the device, for every office role.
        type Edit = fn(&mut ChecklistTemplate);
        let edits: [(&str, Edit); 5] = [
            ("name", |t| t.name.push('!')),
            ("questions", |t| {
                t.questions.remove("pressure");
            }),
            ("version", |t| t.version += 1),
            ("published", |t| t.published = false),
            ("family", |t| t.family = Some(t.meta.id)),
        ];
        for role in [crate::model::Role::Manager, crate::model::Role::Admin] {
            for (field, edit) in edits {
                let err = doc
                    .update_by::<ChecklistTemplate>(Some(role), DeviceTime::utc(3), edit)
                    .expect_err(field);
                assert!(err.to_string().contains(field), "{field}: {err}");
            }
        }
        // The same edits written past the device's checks: the server refuses them.
        let server = RecordDoc::from_automerge(doc.automerge().fork()).expect("fork");
        for (field, edit) in edits {
            let mut forged = RecordDoc::from_automerge(doc.automerge().fork()).expect("fork");
            forged.set_actor(ActorId::random());
            forged
                .update::<ChecklistTemplate>(DeviceTime::utc(4), edit)
                .expect("unchecked edit");
            let err = check_incoming(Some(&server), &forged, &manager, org).expect_err(field);
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
        // Retiring is what changes after publishing.
        let mut retire = RecordDoc::from_automerge(doc.automerge().fork()).expect("fork");
        retire.set_actor(ActorId::random());
        retire
            .update_by::<ChecklistTemplate>(Some(manager.role), DeviceTime::utc(5), |t| {
                t.retired = true;
            })
            .expect("retired");
        assert_eq!(
            check_incoming(Some(&server), &retire, &manager, org),
            Ok(())
        );
        // Deleting a published version is refused too (its answers name it).
        let mut gone = RecordDoc::from_automerge(doc.automerge().fork()).expect("fork");
        gone.set_actor(ActorId::random());
        gone.delete(DeviceTime::utc(6)).expect("tombstone");
        assert!(check_incoming(Some(&server), &gone, &manager, org).is_err());
    }

    #[test]
    fn a_new_version_follows_a_published_one_with_the_next_number() {
        let v1 = template();
        let v1 = ChecklistTemplate { version: 1, ..v1 };
        let v2 = v1.next_version(meta());
        assert_eq!((v2.version, v2.published), (2, false));
        assert_eq!(v2.family, Some(v1.meta.id));
        assert_eq!(v2.supersedes, Some(v1.meta.id));
        assert_eq!(v2.questions, v1.questions);
        assert_eq!(v2.validate(), Ok(()));
        assert_eq!(v2.check_successor(Some(&v1)), Ok(()));
        assert!(v2.check_successor(None).is_err(), "predecessor unknown");
        assert!(
            v2.check_successor(Some(&draft(&v1))).is_err(),
            "a draft has no successor"
        );
        let skipping = ChecklistTemplate {
            version: 3,
            ..v2.clone()
        };
        assert_eq!(
            skipping
                .check_successor(Some(&v1))
                .expect_err("skips")
                .field,
            "version"
        );
        let foreign = ChecklistTemplate {
            family: Some(RecordId::new()),
            ..v2.clone()
        };
        assert!(foreign.check_successor(Some(&v1)).is_err());
        let mut v2p = v2.clone();
        v2p.published = true;
        let v3 = v2p.next_version(meta());
        assert_eq!((v3.version, v3.family), (3, Some(v1.meta.id)));
        assert_eq!(v3.check_successor(Some(&v2p)), Ok(()));
        // New work gets the highest published version that is not retired.
        let all = [v1.clone(), v2p.clone(), v3.clone()];
        assert_eq!(
            latest_published(v1.meta.id, &all).map(|t| t.version),
            Some(2)
        );
        let retired = ChecklistTemplate {
            retired: true,
            ..v2p.clone()
        };
        assert_eq!(
            latest_published(v1.meta.id, &[v1.clone(), retired, v3]).map(|t| t.version),
            Some(1)
        );
        assert!(latest_published(RecordId::new(), &all).is_none());
    }

    #[test]
    fn a_draft_is_answered_by_nobody() {
        let t = draft(&template());
        let r = ChecklistResponse {
            meta: meta(),
            template_id: t.meta.id,
            template_version: t.version,
            subject_id: RecordId::new(),
            answers: BTreeMap::new(),
            completed: false,
        };
        assert_eq!(r.check_against(&t).expect_err("draft").field, "template_id");
        let published = ChecklistTemplate {
            published: true,
            ..t
        };
        assert_eq!(r.check_against(&published), Ok(()));
    }
}
