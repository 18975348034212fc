//! Checklists: versioned templates and the responses filled on visits and jobs.
//!
//! A response stores one answer per question in a map keyed by question id, not
//! one blob: a technician and a colleague answering different questions offline
//! both keep their answers. A template is never edited once published; a change
//! is a new version, and a response names the version it answers.

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

    /// Checks every answer against the template's question kinds and choices.
    pub fn check_against(&self, template: &ChecklistTemplate) -> Result<(), ValidationError> {
        if template.meta.id != self.template_id || template.version != self.template_version {
            return Err(ValidationError::new(
                "template_id",
                "answers another template version",
            ));
        }
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
}
