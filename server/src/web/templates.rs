//! `/web/templates`: checklist template families with their versions and
//! status, and the form that creates a draft; `/web/templates/{id}`: one
//! version, read-only once published, with the draft's edit form and publish
//! button (`POST /web/templates/{id}`, `.../publish`), or the published
//! version's "new version" and retire buttons (`.../new-version`,
//! `.../retire`). Everything goes through `service::templates`, like the
//! JSON API and the CLI.
//!
//! The question form works without JavaScript: a fixed set of rows (the
//! draft's questions and a few empty ones); an empty row is no question.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::{WebError, WebForm, WebQuery, WebUser, page, status_of};
use crate::domain::Error;
use crate::domain::templates::{
    FamilyView, KINDS, QuestionInput, TemplateInput, TemplateView, kind_name,
};
use crate::service::templates::Placement;
use crate::service::{self, Context};

/// Empty question rows a form offers beyond the draft's questions.
const BLANK_ROWS: usize = 4;
/// Most question rows a form posts.
const MAX_ROWS: usize = 200;

#[derive(Debug, Default, Deserialize)]
pub(super) struct Params {
    done: Option<String>,
}

/// `GET /web/templates`.
pub(super) async fn list(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
) -> Result<Response, WebError> {
    let families = service::templates::list(&ctx, &web.caller).await?;
    Ok(render_list(&web, &families, None, &empty_input()).into_response())
}

/// `POST /web/templates`: a new draft.
pub(super) async fn create(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    WebForm(form): WebForm<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    web.check_csrf(field(&form, "csrf"))?;
    let input = input_of_form(&form)?;
    match service::templates::create_draft(&ctx, &web.caller, &input, Placement::default()).await {
        Ok(t) => Ok(Redirect::to(&format!("/web/templates/{}?done=created", t.id)).into_response()),
        Err(e @ (Error::BadRequest(_) | Error::Conflict(_))) => {
            let families = service::templates::list(&ctx, &web.caller).await?;
            let status = status_of(e.kind());
            Ok((
                status,
                render_list(&web, &families, Some(e.to_string()), &input),
            )
                .into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /web/templates/{id}`.
pub(super) async fn show(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(id): Path<String>,
    WebQuery(params): WebQuery<Params>,
) -> Result<Response, WebError> {
    let id = template_id(&id)?;
    let t = service::templates::get(&ctx, &web.caller, &id).await?;
    let notice = params.done.as_deref().and_then(|d| match d {
        "created" => Some("Draft saved. Publish it when it is ready."),
        "edited" => Some("Draft saved."),
        "published" => Some("Published. Devices of the territory get it with their next sync."),
        "new-version" => Some("A draft of the next version, copied from the published one."),
        "retired" => Some("Retired: offered for no new work; its answers stay."),
        _ => None,
    });
    let input = TemplateInput {
        name: t.name.clone(),
        questions: t.questions.clone(),
    };
    Ok(render_one(&web, &t, notice.map(|n| (true, n.to_owned())), &input).into_response())
}

/// `POST /web/templates/{id}`: edits a draft.
pub(super) async fn edit(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(id): Path<String>,
    WebForm(form): WebForm<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    web.check_csrf(field(&form, "csrf"))?;
    let id = template_id(&id)?;
    let input = input_of_form(&form)?;
    let result = service::templates::edit_draft(&ctx, &web.caller, &id, &input).await;
    after(&ctx, &web, &id, result, "edited", &input).await
}

#[derive(Debug, Deserialize)]
pub(super) struct ActionForm {
    csrf: Option<String>,
}

/// `POST /web/templates/{id}/publish`.
pub(super) async fn publish(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(id): Path<String>,
    WebForm(form): WebForm<ActionForm>,
) -> Result<Response, WebError> {
    web.check_csrf(form.csrf.as_deref())?;
    let id = template_id(&id)?;
    let result = service::templates::publish(&ctx, &web.caller, &id).await;
    after(&ctx, &web, &id, result, "published", &empty_input()).await
}

/// `POST /web/templates/{id}/retire`.
pub(super) async fn retire(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(id): Path<String>,
    WebForm(form): WebForm<ActionForm>,
) -> Result<Response, WebError> {
    web.check_csrf(form.csrf.as_deref())?;
    let id = template_id(&id)?;
    let result = service::templates::retire(&ctx, &web.caller, &id).await;
    after(&ctx, &web, &id, result, "retired", &empty_input()).await
}

/// `POST /web/templates/{id}/new-version`: goes to the new draft.
pub(super) async fn new_version(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(id): Path<String>,
    WebForm(form): WebForm<ActionForm>,
) -> Result<Response, WebError> {
    web.check_csrf(form.csrf.as_deref())?;
    let id = template_id(&id)?;
    match service::templates::new_version(&ctx, &web.caller, &id).await {
        Ok(t) => {
            Ok(Redirect::to(&format!("/web/templates/{}?done=new-version", t.id)).into_response())
        }
        Err(e) => refused(&ctx, &web, &id, e, &empty_input()).await,
    }
}

/// Where a decision on `id` leads: the version with a notice, or the page
/// again with the refusal.
async fn after(
    ctx: &Context,
    web: &WebUser,
    id: &str,
    result: crate::domain::Result<TemplateView>,
    done: &str,
    typed: &TemplateInput,
) -> Result<Response, WebError> {
    match result {
        Ok(_) => Ok(Redirect::to(&format!("/web/templates/{id}?done={done}")).into_response()),
        Err(e) => refused(ctx, web, id, e, typed).await,
    }
}

async fn refused(
    ctx: &Context,
    web: &WebUser,
    id: &str,
    e: Error,
    typed: &TemplateInput,
) -> Result<Response, WebError> {
    match e {
        Error::BadRequest(_) | Error::Conflict(_) | Error::TemplatePublished(_) => {
            let t = service::templates::get(ctx, &web.caller, id).await?;
            let status = status_of(e.kind());
            let typed = if typed.name.is_empty() {
                TemplateInput {
                    name: t.name.clone(),
                    questions: t.questions.clone(),
                }
            } else {
                typed.clone()
            };
            Ok((
                status,
                render_one(web, &t, Some((false, e.to_string())), &typed),
            )
                .into_response())
        }
        e => Err(e.into()),
    }
}

/// A page address that is not a record id is a page that does not exist.
fn template_id(id: &str) -> Result<String, WebError> {
    id.parse::<fieldsync_core::RecordId>()
        .map(|id| id.to_string())
        .map_err(|_| WebError::Domain(Error::NotFound))
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The definition a form posted: `name`, and rows `q{i}_key`, `q{i}_text`,
/// `q{i}_kind`, `q{i}_choices` (comma-separated), `q{i}_required`,
/// `q{i}_show_if`, `q{i}_equals`; a row with neither key nor text is skipped.
fn input_of_form(form: &[(String, String)]) -> Result<TemplateInput, WebError> {
    let mut questions = Vec::new();
    for i in 0..MAX_ROWS {
        let get = |f: &str| field(form, &format!("q{i}_{f}")).map(str::trim);
        let (Some(key), Some(text)) = (get("key"), get("text")) else {
            continue;
        };
        if key.is_empty() && text.is_empty() {
            continue;
        }
        let opt = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(str::to_owned);
        questions.push(QuestionInput {
            key: key.to_owned(),
            text: text.to_owned(),
            kind: get("kind").unwrap_or("yes_no").to_owned(),
            choices: get("choices")
                .unwrap_or_default()
                .split(',')
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty())
                .collect(),
            required: get("required").is_some(),
            show_if_question: opt(get("show_if")),
            show_if_equals: opt(get("equals")),
        });
    }
    Ok(TemplateInput {
        name: field(form, "name").unwrap_or_default().to_owned(),
        questions,
    })
}

fn empty_input() -> TemplateInput {
    TemplateInput {
        name: String::new(),
        questions: Vec::new(),
    }
}

fn status_badge(status: &str) -> Markup {
    html! { span class={"badge status-" (status)} { (status) } }
}

fn render_list(
    web: &WebUser,
    families: &[FamilyView],
    error: Option<String>,
    typed: &TemplateInput,
) -> Markup {
    let body = html! {
        h1 #templates-title { "Checklist templates" }
        p {
            "A published version is never edited: a change is a new version. "
            "Answers keep the version they answered; new work gets the newest published version."
        }
        @if families.is_empty() {
            p.empty { "No checklist templates yet." }
        } @else {
            table.templates {
                caption { "Families and their versions, newest first" }
                thead { tr { th scope="col" { "Template" } th scope="col" { "Version" } th scope="col" { "Status" } th scope="col" { "Questions" } } }
                tbody {
                    @for f in families {
                        @for v in &f.versions {
                            tr {
                                td { (v.name) @if f.current.as_deref() == Some(v.id.as_str()) { " " span.badge { "current" } } }
                                td { a href={"/web/templates/" (v.id)} { "Version " (v.version) } }
                                td { (status_badge(&v.status)) }
                                td { (v.questions.len()) }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="new-template" {
            h2 #new-template { "New template" }
            @if let Some(e) = &error {
                p.notice.error #template-notice role="alert" { (e) }
            }
            (question_form(web, "/web/templates", typed, "Save draft"))
        }
    };
    page("Checklist templates", Some(web.chrome()), body)
}

fn question_form(web: &WebUser, action: &str, typed: &TemplateInput, submit: &str) -> Markup {
    let rows = typed.questions.len() + BLANK_ROWS;
    html! {
        form.template-form #template-form method="post" action=(action) {
            input type="hidden" name="csrf" value=(web.csrf);
            div.field {
                label for="t-name" { "Name" }
                input #t-name type="text" name="name" required value=(typed.name);
            }
            fieldset {
                legend { "Questions, in form order (leave a row empty to skip it)" }
                @for i in 0..rows {
                    @let q = typed.questions.get(i);
                    fieldset.question {
                        legend { "Question " (i + 1) }
                        div.field {
                            label for={"q" (i) "-key"} { "Key" }
                            input id={"q" (i) "-key"} type="text" name={"q" (i) "_key"} value=[q.map(|q| q.key.as_str())] pattern="[A-Za-z0-9_-]+";
                        }
                        div.field {
                            label for={"q" (i) "-text"} { "Question" }
                            input id={"q" (i) "-text"} type="text" name={"q" (i) "_text"} value=[q.map(|q| q.text.as_str())];
                        }
                        div.field {
                            label for={"q" (i) "-kind"} { "Answer" }
                            select id={"q" (i) "-kind"} name={"q" (i) "_kind"} {
                                @for k in KINDS {
                                    option value=(kind_name(k)) selected[q.is_some_and(|q| q.kind == kind_name(k))] { (kind_name(k).replace('_', "/")) }
                                }
                            }
                        }
                        div.field {
                            label for={"q" (i) "-choices"} { "Choices (comma-separated, choice questions)" }
                            input id={"q" (i) "-choices"} type="text" name={"q" (i) "_choices"} value=[q.map(|q| q.choices.join(", "))];
                        }
                        div.field {
                            input id={"q" (i) "-required"} type="checkbox" name={"q" (i) "_required"} value="yes" checked[q.is_some_and(|q| q.required)];
                            label for={"q" (i) "-required"} { "Required" }
                        }
                        div.field {
                            label for={"q" (i) "-show-if"} { "Show only if question (key)" }
                            input id={"q" (i) "-show-if"} type="text" name={"q" (i) "_show_if"} value=[q.and_then(|q| q.show_if_question.as_deref())];
                        }
                        div.field {
                            label for={"q" (i) "-equals"} { "has the answer" }
                            input id={"q" (i) "-equals"} type="text" name={"q" (i) "_equals"} value=[q.and_then(|q| q.show_if_equals.as_deref())];
                        }
                    }
                }
            }
            div.field.actions { button type="submit" { (submit) } }
        }
    }
}

fn render_one(
    web: &WebUser,
    t: &TemplateView,
    notice: Option<(bool, String)>,
    typed: &TemplateInput,
) -> Markup {
    let title = format!("Template: {} v{}", t.name, t.version);
    let body = html! {
        p { a href="/web/templates" { "All templates" } }
        h1 #template-title { (t.name) " — version " (t.version) " " (status_badge(&t.status)) }
        @if let Some((ok, message)) = &notice {
            @if *ok {
                p.notice #template-notice role="status" { (message) }
            } @else {
                p.notice.error #template-notice role="alert" { (message) }
            }
        }
        table.questions {
            caption { "Questions" }
            thead { tr { th scope="col" { "Key" } th scope="col" { "Question" } th scope="col" { "Answer" } th scope="col" { "Choices" } th scope="col" { "Required" } th scope="col" { "Shown when" } } }
            tbody {
                @for q in &t.questions {
                    tr {
                        td { code { (q.key) } }
                        td { (q.text) }
                        td { (q.kind.replace('_', "/")) }
                        td { (q.choices.join(", ")) }
                        td { @if q.required { "yes" } @else { "no" } }
                        td {
                            @if let (Some(other), Some(eq)) = (&q.show_if_question, &q.show_if_equals) {
                                (other) " = " (eq)
                            } @else { "always" }
                        }
                    }
                }
            }
        }
        @if t.published {
            p { "This version is published and is never edited; a change is a new version." }
            div.actions {
                form #new-version method="post" action={"/web/templates/" (t.id) "/new-version"} {
                    input type="hidden" name="csrf" value=(web.csrf);
                    button type="submit" { "New version" }
                }
                @if !t.retired {
                    form method="post" action={"/web/templates/" (t.id) "/retire"} {
                        input type="hidden" name="csrf" value=(web.csrf);
                        button.secondary type="submit" { "Retire this version" }
                    }
                }
            }
        } @else {
            form #publish method="post" action={"/web/templates/" (t.id) "/publish"} {
                input type="hidden" name="csrf" value=(web.csrf);
                button type="submit" { "Publish version " (t.version) }
            }
            section aria-labelledby="edit-draft" {
                h2 #edit-draft { "Edit the draft" }
                (question_form(web, &format!("/web/templates/{}", t.id), typed, "Save draft"))
            }
        }
    };
    page(&title, Some(web.chrome()), body)
}
