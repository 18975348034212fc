//! `/web/jobs`: the service jobs of the manager's team (an administrator's:
//! the organisation's) with their status, SLA due time (a breach stands out),
//! technicians, filters (status, technician, SLA breached) and pages; and
//! `/web/jobs/{id}`: one job with its assignments (parts used, time entries,
//! checklist answers, the customer's signature and its verdict), photos and
//! documents, status history, and the close and cancel forms
//! (`POST /web/jobs/{id}/close`, `POST /web/jobs/{id}/cancel`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use fieldsync_core::model::signature::SignatureVerdict;
use fieldsync_core::model::{DeviceTime, JobStatus, Status};
use maud::{Markup, html};
use serde::Deserialize;

use super::format;
use super::{WebError, WebForm, WebQuery, WebUser, page, status_of};
use crate::domain::Error;
use crate::domain::jobs::{JobDetail, JobFilter, JobPage};
use crate::service::{self, Context};

const STATUSES: [JobStatus; 6] = [
    JobStatus::Open,
    JobStatus::Scheduled,
    JobStatus::InProgress,
    JobStatus::Completed,
    JobStatus::Closed,
    JobStatus::Cancelled,
];

#[derive(Debug, Default, Deserialize)]
pub(super) struct ListParams {
    status: Option<String>,
    technician: Option<String>,
    sla_breached: Option<String>,
    page: Option<u32>,
}

fn time(ms: Option<i64>) -> String {
    ms.map(|ms| format::date_time(DeviceTime::utc(ms)))
        .unwrap_or_else(|| "—".into())
}

/// `GET /web/jobs`.
pub(super) async fn list(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    WebQuery(params): WebQuery<ListParams>,
) -> Result<Response, WebError> {
    let breached = params
        .sla_breached
        .as_deref()
        .is_some_and(|v| !v.is_empty());
    let filter = JobFilter::parse(
        params.status.as_deref(),
        params.technician.as_deref(),
        breached,
        params.page,
        None,
    )?;
    let jobs = service::jobs::list(&ctx, &web.caller, &filter).await?;
    let technicians = service::jobs::technicians(&ctx, &web.caller).await?;
    Ok(render_list(&web, &params, &filter, &jobs, &technicians).into_response())
}

fn page_link(params: &ListParams, page: u32) -> String {
    let mut q = vec![format!("page={page}")];
    for (k, v) in [
        ("status", &params.status),
        ("technician", &params.technician),
        ("sla_breached", &params.sla_breached),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            q.push(format!("{k}={}", format::query_escape(v)));
        }
    }
    format!("/web/jobs?{}", q.join("&"))
}

fn render_list(
    web: &WebUser,
    params: &ListParams,
    filter: &JobFilter,
    jobs: &JobPage,
    technicians: &[(fieldsync_core::UserId, String)],
) -> Markup {
    let body = html! {
        h1 { "Service jobs" }
        form.filters method="get" action="/web/jobs" {
            div.field {
                label for="f-status" { "Status" }
                select #f-status name="status" {
                    option value="" { "Any" }
                    @for s in STATUSES {
                        option value=(s.as_str()) selected[filter.status == Some(s)] { (format::status(s.as_str())) }
                    }
                }
            }
            div.field {
                label for="f-tech" { "Technician" }
                select #f-tech name="technician" {
                    option value="" { "Everyone" }
                    @for (id, name) in technicians {
                        option value=(id) selected[filter.technician == Some(*id)] { (name) }
                    }
                }
            }
            div.field {
                input #f-breach type="checkbox" name="sla_breached" value="true" checked[filter.sla_breached];
                label for="f-breach" { "SLA breached only" }
            }
            div.field.actions {
                button type="submit" { "Apply filters" }
                a href="/web/jobs" { "Clear" }
            }
        }
        @if jobs.jobs.is_empty() {
            p.empty { "No jobs match these filters." }
        } @else {
            p.count role="status" { "Page " (jobs.page) ": " (format::count(jobs.jobs.len() as u64, "job", "jobs")) }
            div.table-wrap {
                table.jobs {
                    caption.visually-hidden { "Service jobs, SLA due first" }
                    thead { tr {
                        th scope="col" { "Customer" } th scope="col" { "Type" } th scope="col" { "Priority" }
                        th scope="col" { "Status" } th scope="col" { "SLA due" } th scope="col" { "Technicians" }
                    } }
                    tbody {
                        @for j in &jobs.jobs {
                            tr class=[j.sla_breached.then_some("breach")] {
                                td { a href=(format!("/web/jobs/{}", j.id)) { (j.account_name.as_deref().unwrap_or("Unknown customer")) } }
                                td { (j.job_type) }
                                td { (format::status(&j.priority)) }
                                td { span class=(format!("badge {}", j.status)) { (format::status(&j.status)) } }
                                td.due {
                                    (time(j.sla_due_ms))
                                    @if j.sla_breached { " " span.badge.breach { "SLA breached" } }
                                }
                                td {
                                    @if j.technicians.is_empty() { "—" }
                                    @for (n, t) in j.technicians.iter().enumerate() {
                                        @if n > 0 { ", " }
                                        (t.name) " (" (format::status(&t.assignment_status).to_lowercase()) ")"
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        nav.pages aria-label="Pages" {
            @if jobs.page > 1 { a rel="prev" href=(page_link(params, jobs.page - 1)) { "← Previous page" } " " }
            @if jobs.more { a rel="next" href=(page_link(params, jobs.page + 1)) { "Next page →" } }
        }
    };
    page("Service jobs", Some(web.chrome()), body)
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct JobParams {
    decided: Option<String>,
}

/// A page address that is not a record id is a page that does not exist.
fn job_id(id: &str) -> Result<String, WebError> {
    id.parse::<fieldsync_core::RecordId>()
        .map(|id| id.to_string())
        .map_err(|_| WebError::Domain(Error::NotFound))
}

/// `GET /web/jobs/{id}`.
pub(super) async fn show(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(id): Path<String>,
    WebQuery(params): WebQuery<JobParams>,
) -> Result<Response, WebError> {
    let id = job_id(&id)?;
    let detail = service::jobs::detail(&ctx, &web.caller, &id).await?;
    let notice = match params.decided.as_deref() {
        Some("closed") => Some((
            true,
            "Closed. Devices show it after their next sync.".to_owned(),
        )),
        Some("cancelled") => Some((
            true,
            "Cancelled. Devices show it after their next sync.".to_owned(),
        )),
        _ => None,
    };
    Ok(render_job(&web, &detail, notice, &Typed::default()).into_response())
}

/// What the manager typed, shown again when a decision was refused.
#[derive(Debug, Default)]
struct Typed {
    resolution: Option<String>,
    reason: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct CloseForm {
    csrf: Option<String>,
    #[serde(default)]
    resolution: String,
    first_time_fix: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct CancelForm {
    csrf: Option<String>,
    #[serde(default)]
    reason: String,
}

/// A refused decision shows the page again with the reason and what was typed.
async fn refused(
    ctx: &Context,
    web: &WebUser,
    id: &str,
    e: Error,
    typed: Typed,
) -> Result<Response, WebError> {
    match e {
        Error::BadRequest(_) | Error::Conflict(_) => {
            let detail = service::jobs::detail(ctx, &web.caller, id).await?;
            let status = status_of(e.kind());
            let page = render_job(web, &detail, Some((false, e.to_string())), &typed);
            Ok((status, page).into_response())
        }
        e => Err(WebError::Domain(e)),
    }
}

/// `POST /web/jobs/{id}/close`.
pub(super) async fn close(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(id): Path<String>,
    WebForm(form): WebForm<CloseForm>,
) -> Result<Response, WebError> {
    web.check_csrf(form.csrf.as_deref())?;
    let id = job_id(&id)?;
    let first_time_fix = match form.first_time_fix.as_deref() {
        Some("yes") => true,
        Some("no") => false,
        _ => {
            let e = Error::BadRequest("say whether the job was fixed on the first visit".into());
            let typed = Typed {
                resolution: Some(form.resolution),
                ..Typed::default()
            };
            return refused(&ctx, &web, &id, e, typed).await;
        }
    };
    match service::jobs::close(
        &ctx,
        &web.caller,
        &id,
        Some(&form.resolution),
        first_time_fix,
    )
    .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/web/jobs/{id}?decided=closed")).into_response()),
        Err(e) => {
            let typed = Typed {
                resolution: Some(form.resolution),
                ..Typed::default()
            };
            refused(&ctx, &web, &id, e, typed).await
        }
    }
}

/// `POST /web/jobs/{id}/cancel`.
pub(super) async fn cancel(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(id): Path<String>,
    WebForm(form): WebForm<CancelForm>,
) -> Result<Response, WebError> {
    web.check_csrf(form.csrf.as_deref())?;
    let id = job_id(&id)?;
    match service::jobs::cancel(&ctx, &web.caller, &id, Some(&form.reason)).await {
        Ok(_) => Ok(Redirect::to(&format!("/web/jobs/{id}?decided=cancelled")).into_response()),
        Err(e) => {
            let typed = Typed {
                reason: form.reason,
                ..Typed::default()
            };
            refused(&ctx, &web, &id, e, typed).await
        }
    }
}

fn dt(t: Option<DeviceTime>) -> String {
    t.map(format::date_time).unwrap_or_else(|| "—".into())
}

fn verdict(v: Option<&SignatureVerdict>) -> Markup {
    match v {
        Some(SignatureVerdict::Matches) => html! { span.badge.approved { "Signature matches" } },
        Some(SignatureVerdict::NoLongerMatches { .. }) => html! {
            span.badge.changes_requested { "Signature no longer matches: the work changed after signing" }
        },
        _ => html! {},
    }
}

fn render_job(
    web: &WebUser,
    d: &JobDetail,
    notice: Option<(bool, String)>,
    typed: &Typed,
) -> Markup {
    let j = &d.job;
    let customer = d.account_name.as_deref().unwrap_or("Unknown customer");
    let title = format!("Job: {customer}");
    let status = j.status.as_str();
    let name_of = |u: &fieldsync_core::UserId| {
        d.names
            .get(u)
            .cloned()
            .unwrap_or_else(|| "someone outside your team".into())
    };
    let resolution = typed
        .resolution
        .clone()
        .or_else(|| j.resolution.clone())
        .unwrap_or_default();
    let body = html! {
        p.crumbs { a href="/web/jobs" { "← Service jobs" } }
        h1 { (title) }
        p.meta {
            (j.job_type) " · " (format::status(&format!("{:?}", j.priority).to_lowercase())) " priority · "
            span #job-status class=(format!("badge {status}")) { (format::status(status)) }
            @if d.sla_breached { " " span.badge.breach { "SLA breached" } }
        }
        @if let Some((ok, text)) = &notice {
            p class=(if *ok { "notice ok" } else { "notice error" }) role=(if *ok { "status" } else { "alert" }) { (text) }
        }
        section aria-labelledby="h-job" {
            h2 #h-job { "Job" }
            dl {
                dt { "What the customer reported" } dd.prose { (if j.description.is_empty() { "—" } else { &j.description }) }
                @if let Some(asset) = &j.asset { dt { "Equipment" } dd { (asset) } }
                dt { "SLA due" } dd { (dt(j.sla_due)) }
                dt { "Promised arrival" } dd {
                    (dt(j.request_window_start)) " – " (dt(j.request_window_end))
                    @match d.promise_kept {
                        Some(true) => { " " span.badge.approved { "Kept" } },
                        Some(false) => { " " span.badge.breach { "Broken" } },
                        None => {},
                    }
                }
                dt { "First arrival" } dd { (dt(j.first_arrived_at)) }
                dt { "Completed" } dd { (dt(j.completed_at)) }
                dt { "Closed" } dd { (dt(j.closed_at)) }
                dt { "Resolution" } dd.prose { (j.resolution.as_deref().unwrap_or("—")) }
                dt { "Fixed on the first visit" } dd { (match j.first_time_fix { Some(true) => "Yes", Some(false) => "No", None => "—" }) }
            }
        }
        section aria-labelledby="h-assignments" {
            h2 #h-assignments { "Assignments" }
            @if d.assignments.is_empty() { p { "Nobody is assigned yet." } }
            @for (n, a) in d.assignments.iter().enumerate() {
                article.assignment aria-labelledby=(format!("h-a{n}")) {
                    h3 id=(format!("h-a{n}")) {
                        (a.technician.as_deref().unwrap_or("Unknown technician")) " · "
                        span class=(format!("badge {}", a.assignment.status.as_str())) { (format::status(a.assignment.status.as_str())) }
                    }
                    p {
                        "Scheduled " (format::date_time(a.assignment.scheduled_start)) "–" (format::clock(a.assignment.scheduled_end))
                        " · arrived " (dt(a.assignment.arrived.map(|s| s.at)))
                        " · work " (dt(a.assignment.work_started.map(|s| s.at))) " to " (dt(a.assignment.work_ended.map(|s| s.at)))
                    }
                    table {
                        caption { "Parts used" }
                        thead { tr { th scope="col" { "Product" } th scope="col" { "Qty" } th scope="col" { "Serial" } th scope="col" { "Billable" } } }
                        tbody {
                            @if a.parts.is_empty() { tr { td colspan="4" { "None." } } }
                            @for p in &a.parts {
                                tr {
                                    th scope="row" { (p.product_id) }
                                    td.num { (format::qty(p.qty)) }
                                    td { (p.serial.as_deref().unwrap_or("—")) }
                                    td { (if p.billable { "Yes" } else { "No" }) }
                                }
                            }
                        }
                    }
                    table {
                        caption { "Time (" (a.minutes) " min booked)" }
                        thead { tr { th scope="col" { "Kind" } th scope="col" { "Start" } th scope="col" { "End" } th scope="col" { "Approval" } } }
                        tbody {
                            @if a.time_entries.is_empty() { tr { td colspan="4" { "None." } } }
                            @for t in &a.time_entries {
                                tr {
                                    th scope="row" { (format::status(&format!("{:?}", t.kind).to_lowercase())) }
                                    td { (format::date_time(t.start)) }
                                    td { (dt(t.end)) }
                                    td { (format::status(&format!("{:?}", t.approval).to_lowercase())) }
                                }
                            }
                        }
                    }
                    @if let Some(c) = &a.checklist {
                        h4 { (c.template_name.as_deref().unwrap_or("Checklist")) @if !c.completed { " (not completed)" } }
                        dl.answers {
                            @for ans in &c.answers {
                                dt { (ans.question) }
                                dd {
                                    @if let Some(sha) = &ans.attachment {
                                        a href=(format!("/web/attachments/{sha}")) { "Open the " (ans.question_id) " attachment" }
                                    } @else { (ans.answer) }
                                }
                            }
                        }
                    }
                    @if let Some(sig) = &a.assignment.signature {
                        p.signature {
                            (verdict(a.signature.as_ref())) " "
                            "Signed by " (sig.signer_name) " at " (format::date_time(sig.at)) ". "
                            a href=(format!("/web/attachments/{}", sig.image_sha256)) { "Signature image" }
                        }
                    } @else {
                        p { "Not signed by the customer." }
                    }
                }
            }
        }
        section aria-labelledby="h-photos" {
            h2 #h-photos { "Photos and documents" }
            @if d.attachments.is_empty() { p { "None attached." } }
            ul.attachments {
                @for (n, a) in d.attachments.iter().enumerate() {
                    li {
                        @if a.complete && a.kind == "photo" {
                            a.thumb href=(format!("/web/attachments/{}", a.sha256)) {
                                img src=(format!("/web/attachments/{}/thumbnail", a.sha256))
                                    alt=(format!("Photo {} (opens the original)", n + 1)) loading="lazy";
                            }
                        }
                        @if a.complete {
                            a href=(format!("/web/attachments/{}", a.sha256)) download {
                                "Download " (a.kind) " " (n + 1) " (" (a.content_type) ", " (format::bytes(a.size)) ")"
                            }
                        } @else {
                            (format::status(&a.kind)) " " (n + 1) " is still uploading from the technician's device."
                        }
                    }
                }
            }
        }
        section aria-labelledby="h-decide" {
            h2 #h-decide { "Close or cancel" }
            @if d.closable {
                form #close-form method="post" action=(format!("/web/jobs/{}/close", d.id)) {
                    input type="hidden" name="csrf" value=(web.csrf);
                    label for="resolution" { "Resolution (required)" }
                    textarea #resolution name="resolution" rows="3" maxlength="4000" required { (resolution) }
                    fieldset.choice {
                        legend { "Fixed on the first visit?" }
                        input #ftf-yes type="radio" name="first_time_fix" value="yes" checked[j.first_time_fix != Some(false)];
                        label for="ftf-yes" { "Yes" }
                        input #ftf-no type="radio" name="first_time_fix" value="no" checked[j.first_time_fix == Some(false)];
                        label for="ftf-no" { "No" }
                    }
                    @if d.assignments.iter().any(|a| a.assignment.signature.is_some()) {
                        p.hint { "The customer signed the resolution as the technician wrote it; a different text makes the signature show as no longer matching." }
                    }
                    div.buttons { button #close type="submit" { "Close the job" } }
                }
            } @else {
                p { "Only a completed job can be closed; this one is " (format::status(status).to_lowercase()) "." }
            }
            @if d.cancellable {
                form #cancel-form method="post" action=(format!("/web/jobs/{}/cancel", d.id)) {
                    input type="hidden" name="csrf" value=(web.csrf);
                    label for="reason" { "Reason to cancel (required)" }
                    textarea #reason name="reason" rows="2" maxlength="4000" required { (typed.reason) }
                    div.buttons { button.secondary #cancel type="submit" { "Cancel the job" } }
                }
            } @else if j.status.is_open() {
                p { "A technician is working on this job; it cannot be cancelled now." }
            }
        }
        section aria-labelledby="h-history" {
            h2 #h-history { "Status history" }
            div.table-wrap {
                table {
                    thead { tr { th scope="col" { "When" } th scope="col" { "Change" } th scope="col" { "By" } th scope="col" { "Reason" } } }
                    tbody {
                        @for e in &d.history {
                            tr {
                                td { (format::date_time(e.at)) }
                                td { @if let Some(from) = &e.from { (format::status(from)) " → " } (format::status(&e.to)) }
                                td {
                                    @if e.role == fieldsync_core::model::Role::Server { "Fieldsync (roll-up from the assignments)" }
                                    @else { (name_of(&e.by)) " (" (e.role.as_str()) ")" }
                                }
                                td { (e.reason.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    };
    page(&title, Some(web.chrome()), body)
}
