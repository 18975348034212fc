//! Checklist templates in the office: who manages them, what a definition
//! given by a form, the API or a file must hold, and the views of families
//! and versions.
//!
//! The rules of a template itself (a published version is never edited, a new
//! version follows a published one with the next number, drafts are answered
//! by nobody) are the shared model's (`fieldsync_core::model::checklist` and
//! the write table of `rules`), applied on devices and again on every push.

use std::collections::{BTreeMap, BTreeSet};

use fieldsync_core::RecordId;
use fieldsync_core::model::{ChecklistTemplate, Question, QuestionKind, Role, ShowIf};
use serde::{Deserialize, Serialize};

use super::{Error, Result};

/// Most questions one template holds.
pub const MAX_QUESTIONS: usize = 200;
/// Most templates (versions) one listing reads.
pub const MAX_TEMPLATES: usize = 2_000;
/// Most characters of a name, a question's text, a choice.
const MAX_TEXT: usize = 500;

/// Managers and administrators manage templates; nobody else.
pub fn may_manage(role: Role) -> Result<()> {
    match role {
        Role::Manager | Role::Admin => Ok(()),
        _ => Err(Error::Forbidden(
            "checklist templates are managed by managers and administrators".into(),
        )),
    }
}

/// The refusal of any change to a published version: its stable code is
/// `template_published`; a change is a new version.
pub fn published(t: &ChecklistTemplate) -> Error {
    Error::TemplatePublished(format!(
        "{} version {} is published and is never edited; make a new version of it",
        t.name, t.version
    ))
}

/// A record id given as text.
pub fn parse_id(text: &str) -> Result<RecordId> {
    text.trim()
        .parse()
        .map_err(|_| Error::BadRequest(format!("{text:?} is not a template id")))
}

/// One question as a form, the API or a file gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QuestionInput {
    /// The question's key (letters, digits, `_`, `-`); answers name it.
    pub key: String,
    /// The question's text.
    pub text: String,
    /// `yes_no`, `choice`, `number`, `text`, `photo`, `signature` or `barcode`.
    pub kind: String,
    /// The options of a `choice` question.
    #[serde(default)]
    pub choices: Vec<String>,
    /// Must be answered (when shown).
    #[serde(default)]
    pub required: bool,
    /// Shown only when the question with this key ...
    #[serde(default)]
    pub show_if_question: Option<String>,
    /// ... has this answer (`yes`, `no`, a choice, a number).
    #[serde(default)]
    pub show_if_equals: Option<String>,
}

/// A template's definition: its name and questions, in form order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TemplateInput {
    /// The template's name.
    pub name: String,
    /// The questions, in form order.
    #[serde(default)]
    pub questions: Vec<QuestionInput>,
}

/// The stable name of a question kind.
pub fn kind_name(kind: QuestionKind) -> &'static str {
    match kind {
        QuestionKind::YesNo => "yes_no",
        QuestionKind::Choice => "choice",
        QuestionKind::Number => "number",
        QuestionKind::Text => "text",
        QuestionKind::Photo => "photo",
        QuestionKind::Signature => "signature",
        QuestionKind::Barcode => "barcode",
    }
}

/// Every question kind, in the order forms offer them.
pub const KINDS: [QuestionKind; 7] = [
    QuestionKind::YesNo,
    QuestionKind::Choice,
    QuestionKind::Number,
    QuestionKind::Text,
    QuestionKind::Photo,
    QuestionKind::Signature,
    QuestionKind::Barcode,
];

fn parse_kind(name: &str) -> Result<QuestionKind> {
    let name = name.trim();
    KINDS
        .into_iter()
        .find(|k| kind_name(*k) == name || (name == "yes/no" && *k == QuestionKind::YesNo))
        .ok_or_else(|| {
            Error::BadRequest(format!(
                "unknown question kind {name:?}; use yes_no, choice, number, text, photo, \
                 signature or barcode"
            ))
        })
}

fn blank(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn text(what: &str, value: &str) -> Result<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Error::BadRequest(format!("{what} is empty")));
    }
    if value.chars().count() > MAX_TEXT {
        return Err(Error::BadRequest(format!(
            "{what} is longer than {MAX_TEXT} characters"
        )));
    }
    Ok(value.to_owned())
}

/// The checked name and questions of a definition: keys unique and plain,
/// kinds known, choices only (and always) for choice questions, show-if
/// naming another question of the template with both its parts. The model's
/// `validate` checks the record again when it is written.
pub fn build(input: &TemplateInput) -> Result<(String, BTreeMap<String, Question>)> {
    let name = text("the template's name", &input.name)?;
    if input.questions.len() > MAX_QUESTIONS {
        return Err(Error::BadRequest(format!(
            "a template holds at most {MAX_QUESTIONS} questions"
        )));
    }
    let keys: BTreeSet<&str> = input.questions.iter().map(|q| q.key.trim()).collect();
    let mut out = BTreeMap::new();
    for (i, q) in input.questions.iter().enumerate() {
        let key = q.key.trim();
        let valid_key = !key.is_empty()
            && key.len() <= 64
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid_key {
            return Err(Error::BadRequest(format!(
                "question {}: the key {key:?} is not 1 to 64 letters, digits, _ or -",
                i + 1
            )));
        }
        if out.contains_key(key) {
            return Err(Error::BadRequest(format!(
                "two questions have the key {key:?}"
            )));
        }
        let kind = parse_kind(&q.kind)?;
        let choices: Vec<String> = q
            .choices
            .iter()
            .map(|c| c.trim())
            .filter(|c| !c.is_empty())
            .map(|c| text(&format!("a choice of {key}"), c))
            .collect::<Result<_>>()?;
        match (kind, choices.is_empty()) {
            (QuestionKind::Choice, true) => {
                return Err(Error::BadRequest(format!(
                    "question {key}: a choice question needs choices"
                )));
            }
            (QuestionKind::Choice, false) | (_, true) => {}
            (_, false) => {
                return Err(Error::BadRequest(format!(
                    "question {key}: only a choice question has choices"
                )));
            }
        }
        let show_if = match (blank(&q.show_if_question), blank(&q.show_if_equals)) {
            (None, None) => None,
            (Some(other), Some(equals)) => {
                if other == key || !keys.contains(other) {
                    return Err(Error::BadRequest(format!(
                        "question {key}: show-if names {other:?}, not another question of this template"
                    )));
                }
                Some(ShowIf {
                    question: other.to_owned(),
                    equals: equals.to_owned(),
                })
            }
            _ => {
                return Err(Error::BadRequest(format!(
                    "question {key}: show-if needs a question and an answer"
                )));
            }
        };
        out.insert(
            key.to_owned(),
            Question {
                position: u32::try_from(i + 1).unwrap_or(u32::MAX),
                text: text(&format!("the text of {key}"), &q.text)?,
                kind,
                choices,
                required: q.required,
                show_if,
            },
        );
    }
    Ok((name, out))
}

/// A template's questions as a definition (what an edit form starts from).
pub fn input_of(t: &ChecklistTemplate) -> TemplateInput {
    TemplateInput {
        name: t.name.clone(),
        questions: ordered(t)
            .into_iter()
            .map(|(key, q)| QuestionInput {
                key: key.clone(),
                text: q.text.clone(),
                kind: kind_name(q.kind).into(),
                choices: q.choices.clone(),
                required: q.required,
                show_if_question: q.show_if.as_ref().map(|s| s.question.clone()),
                show_if_equals: q.show_if.as_ref().map(|s| s.equals.clone()),
            })
            .collect(),
    }
}

fn ordered(t: &ChecklistTemplate) -> Vec<(&String, &Question)> {
    let mut qs: Vec<(&String, &Question)> = t.questions.iter().collect();
    qs.sort_by_key(|(k, q)| (q.position, (*k).clone()));
    qs
}

/// One version of a template, as lists and the API show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TemplateView {
    /// The version's record id.
    pub id: String,
    /// The family: the id of its first version.
    pub family: String,
    /// The version it follows.
    pub supersedes: Option<String>,
    /// Its number, from 1.
    pub version: u32,
    /// Name.
    pub name: String,
    /// `draft`, `published` or `retired`.
    pub status: String,
    /// Published (answered by the field; never edited).
    pub published: bool,
    /// Retired (offered for no new work).
    pub retired: bool,
    /// The questions, in form order.
    pub questions: Vec<QuestionInput>,
}

impl TemplateView {
    /// The view of `t`.
    pub fn of(t: &ChecklistTemplate) -> TemplateView {
        TemplateView {
            id: t.meta.id.to_string(),
            family: t.family_id().to_string(),
            supersedes: t.supersedes.map(|s| s.to_string()),
            version: t.version,
            name: t.name.clone(),
            status: status_of(t).into(),
            published: t.published,
            retired: t.retired,
            questions: input_of(t).questions,
        }
    }
}

/// `draft`, `published` or `retired`.
pub fn status_of(t: &ChecklistTemplate) -> &'static str {
    match (t.published, t.retired) {
        (false, _) => "draft",
        (true, false) => "published",
        (true, true) => "retired",
    }
}

/// A family of versions, newest version first.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FamilyView {
    /// The family's id (its first version's).
    pub family: String,
    /// The newest version's name.
    pub name: String,
    /// The version new work gets (highest published, not retired).
    pub current: Option<String>,
    /// Every version, newest first.
    pub versions: Vec<TemplateView>,
}

/// Groups versions into families, sorted by name; versions newest first.
pub fn families(templates: &[ChecklistTemplate]) -> Vec<FamilyView> {
    let mut by_family: BTreeMap<RecordId, Vec<&ChecklistTemplate>> = BTreeMap::new();
    for t in templates {
        by_family.entry(t.family_id()).or_default().push(t);
    }
    let mut out: Vec<FamilyView> = by_family
        .into_iter()
        .map(|(family, mut versions)| {
            versions.sort_by(|a, b| b.version.cmp(&a.version).then(a.meta.id.cmp(&b.meta.id)));
            let current = fieldsync_core::model::latest_published(family, versions.iter().copied())
                .map(|t| t.meta.id.to_string());
            FamilyView {
                family: family.to_string(),
                name: versions.first().map(|t| t.name.clone()).unwrap_or_default(),
                current,
                versions: versions.into_iter().map(TemplateView::of).collect(),
            }
        })
        .collect();
    out.sort_by_key(|a| a.name.to_lowercase());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(key: &str, kind: &str) -> QuestionInput {
        QuestionInput {
            key: key.into(),
            text: format!("{key}?"),
            kind: kind.into(),
            choices: Vec::new(),
            required: false,
            show_if_question: None,
            show_if_equals: None,
        }
    }

    #[test]
    fn a_definition_is_checked_before_anything_is_written() {
        let mut leak_photo = q("leak_photo", "photo");
        leak_photo.show_if_question = Some("leak".into());
        leak_photo.show_if_equals = Some("yes".into());
        let mut cause = q("cause", "choice");
        cause.choices = vec!["Seal".into(), " ".into(), "Pipe".into()];
        let ok = TemplateInput {
            name: " Boiler ".into(),
            questions: vec![q("leak", "yes_no"), leak_photo, cause.clone()],
        };
        let (name, qs) = build(&ok).expect("valid");
        assert_eq!(name, "Boiler");
        assert_eq!(qs["cause"].choices, ["Seal", "Pipe"]);
        assert_eq!(qs["leak_photo"].position, 2);

        let bad = |mutate: fn(&mut TemplateInput)| {
            let mut i = ok.clone();
            mutate(&mut i);
            build(&i).expect_err("refused").to_string()
        };
        assert!(bad(|i| i.name = " ".into()).contains("name"));
        assert!(bad(|i| i.questions[0].kind = "essay".into()).contains("essay"));
        assert!(bad(|i| i.questions[1].key = "leak".into()).contains("two questions"));
        assert!(bad(|i| i.questions[2].choices.clear()).contains("needs choices"));
        assert!(bad(|i| i.questions[0].choices = vec!["x".into()]).contains("only a choice"));
        assert!(
            bad(|i| i.questions[1].show_if_question = Some("nowhere".into())).contains("show-if")
        );
        assert!(bad(|i| i.questions[1].show_if_equals = None).contains("show-if needs"));
        assert!(bad(|i| i.questions[0].key = "a b".into()).contains("key"));
    }

    #[test]
    fn only_the_office_manages_templates() {
        assert!(may_manage(Role::Manager).is_ok());
        assert!(may_manage(Role::Admin).is_ok());
        assert!(may_manage(Role::Rep).is_err());
        assert!(may_manage(Role::Technician).is_err());
        assert_eq!(
            published(&ChecklistTemplate {
                meta: fieldsync_core::model::RecordMeta {
                    id: RecordId::new(),
                    org: fieldsync_core::OrgId::new(),
                    owner: fieldsync_core::UserId::new(),
                    team: fieldsync_core::TeamId::new(),
                    territory: fieldsync_core::TerritoryId::new(),
                },
                name: "x".into(),
                version: 1,
                published: true,
                questions: BTreeMap::new(),
                family: None,
                supersedes: None,
                retired: false,
            })
            .code(),
            "template_published"
        );
    }
}
