//! `/web/plan`: the team's day or week, one row per rep and technician with
//! their visits and assignments, double bookings flagged; forms to plan a
//! visit (or a recurring route) for a rep, create a job and assign it,
//! reassign an assignment, cancel a visit or an assignment, and reopen a
//! completed visit. Every action is `service::plan`'s, the same as the JSON
//! API's; a refused action shows the plan again with the reason.
//!
//! Times are typed and shown in UTC (the organisation has no time zone yet).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use fieldsync_core::model::{DeviceTime, Priority, RecordKind};
use fieldsync_core::{RecordId, UserId};
use maud::{Markup, html};
use serde::Deserialize;

use super::{WebError, WebForm, WebQuery, WebUser, format, page, status_of};
use crate::domain::Error;
use crate::domain::figures::dates;
use crate::domain::plan::DAY_MS;
use crate::service::plan::{AccountChoice, NewAssignment, NewJob, NewRoute, NewVisit, PlanView};
use crate::service::{self, Context};

/// The page's query string.
#[derive(Debug, Default, Deserialize)]
pub(super) struct PlanParams {
    /// First day shown, `YYYY-MM-DD` (default today).
    from: Option<String>,
    /// `day` (default) or `week`.
    view: Option<String>,
    /// What the last action did, shown once.
    done: Option<String>,
}

/// Day or week.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Span {
    Day,
    Week,
}

impl Span {
    fn parse(v: Option<&str>) -> Span {
        match v {
            Some("week") => Span::Week,
            _ => Span::Day,
        }
    }
    fn days(self) -> u32 {
        match self {
            Span::Day => 1,
            Span::Week => 7,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Span::Day => "day",
            Span::Week => "week",
        }
    }
}

/// Where the page is: its first day (ms at midnight UTC) and span.
#[derive(Debug, Clone, Copy)]
struct At {
    from_ms: i64,
    span: Span,
}

impl At {
    fn from_params(from: Option<&str>, view: Option<&str>) -> Result<At, Error> {
        let span = Span::parse(view);
        let from_ms = match from.map(str::trim).filter(|s| !s.is_empty()) {
            Some(day) => format::parse_date(day)
                .ok_or_else(|| Error::BadRequest(format!("{day:?} is not a date (YYYY-MM-DD)")))?,
            None => DeviceTime::now_utc().at_ms.div_euclid(DAY_MS) * DAY_MS,
        };
        Ok(At { from_ms, span })
    }

    fn day(&self) -> String {
        dates::format_day(self.from_ms.div_euclid(DAY_MS))
    }

    fn url(&self, done: Option<&str>) -> String {
        let mut url = format!("/web/plan?from={}&view={}", self.day(), self.span.name());
        if let Some(d) = done {
            url.push_str("&done=");
            url.push_str(&format::query_escape(d));
        }
        url
    }

    fn shifted(&self, days: i64) -> At {
        At {
            from_ms: self.from_ms + days * DAY_MS,
            ..*self
        }
    }
}

/// `GET /web/plan?from=YYYY-MM-DD&view=day|week`.
pub(super) async fn show(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    WebQuery(params): WebQuery<PlanParams>,
) -> Result<Response, WebError> {
    let at = At::from_params(params.from.as_deref(), params.view.as_deref())?;
    let notice = params.done.map(|d| (true, d));
    Ok(render_page(&ctx, &web, at, notice).await?.into_response())
}

async fn render_page(
    ctx: &Context,
    web: &WebUser,
    at: At,
    notice: Option<(bool, String)>,
) -> Result<Markup, WebError> {
    let (view, accounts) =
        service::plan::page(ctx, &web.caller, at.from_ms, at.span.days()).await?;
    Ok(render(web, at, &view, &accounts, notice))
}

/// A refused action: the plan again, with the reason, and the status the
/// JSON API would answer.
async fn refused(ctx: &Context, web: &WebUser, at: At, e: Error) -> Result<Response, WebError> {
    match e {
        Error::BadRequest(_) | Error::Conflict(_) | Error::NotFound => {
            let status = status_of(e.kind());
            let text = match e {
                Error::NotFound => {
                    "That person, account or record is not in your team's plan.".to_owned()
                }
                other => other.to_string(),
            };
            let page = render_page(ctx, web, at, Some((false, text))).await?;
            Ok((status, page).into_response())
        }
        other => Err(WebError::Domain(other)),
    }
}

/// The hidden fields every form carries: the token and where to come back.
#[derive(Debug, Deserialize)]
pub(super) struct Back {
    csrf: Option<String>,
    from: Option<String>,
    view: Option<String>,
}

impl Back {
    fn at(&self) -> Result<At, Error> {
        At::from_params(self.from.as_deref(), self.view.as_deref())
    }
}

fn text(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn required<'a>(v: &'a Option<String>, what: &str) -> Result<&'a str, Error> {
    text(v).ok_or_else(|| Error::BadRequest(format!("choose {what}")))
}

fn user_id(v: &Option<String>, what: &str) -> Result<UserId, Error> {
    required(v, what)?
        .parse()
        .map_err(|_| Error::BadRequest(format!("choose {what}")))
}

fn record_id(v: &Option<String>, what: &str) -> Result<RecordId, Error> {
    required(v, what)?
        .parse()
        .map_err(|_| Error::BadRequest(format!("choose {what}")))
}

/// `HH:MM` on the day `day_ms` → ms.
fn at_time(day_ms: i64, hhmm: &str, what: &str) -> Result<i64, Error> {
    let bad = || Error::BadRequest(format!("the {what} time must be HH:MM"));
    let (h, m) = hhmm.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if !(0..24).contains(&h) || !(0..60).contains(&m) {
        return Err(bad());
    }
    Ok(day_ms + (h * 60 + m) * 60_000)
}

/// A date and a start and end time from a form → (start, end) ms.
fn slot(
    date: &Option<String>,
    start: &Option<String>,
    end: &Option<String>,
) -> Result<(i64, i64), Error> {
    let date = required(date, "a date")?;
    let day = format::parse_date(date)
        .ok_or_else(|| Error::BadRequest(format!("{date:?} is not a date (YYYY-MM-DD)")))?;
    Ok((
        at_time(day, required(start, "a start time")?, "start")?,
        at_time(day, required(end, "an end time")?, "end")?,
    ))
}

#[derive(Debug, Deserialize)]
pub(super) struct VisitForm {
    #[serde(flatten)]
    back: Back,
    rep: Option<String>,
    account: Option<String>,
    date: Option<String>,
    start: Option<String>,
    end: Option<String>,
    instructions: Option<String>,
    /// Empty: one visit; else every N weeks, or `account` for the account's frequency.
    repeat: Option<String>,
    count: Option<String>,
}

/// `POST /web/plan/visits`: a visit, or a recurring route, for a rep.
pub(super) async fn plan_visit(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    WebForm(form): WebForm<VisitForm>,
) -> Result<Response, WebError> {
    web.check_csrf(form.back.csrf.as_deref())?;
    let at = form.back.at()?;
    let result = async {
        let (start_ms, end_ms) = slot(&form.date, &form.start, &form.end)?;
        let visit = NewVisit {
            rep: user_id(&form.rep, "a rep")?,
            account: record_id(&form.account, "an account")?,
            start_ms,
            end_ms,
            visit_type: None,
            instructions: text(&form.instructions).map(str::to_owned),
        };
        match text(&form.repeat) {
            None => service::plan::plan_visit(&ctx, &web.caller, visit)
                .await
                .map(|_| "Visit planned. The rep's device gets it with its next sync.".to_owned()),
            Some(repeat) => {
                let every_weeks = match repeat {
                    "account" => None,
                    n => Some(
                        n.parse()
                            .map_err(|_| Error::BadRequest("repeat every 1 to 12 weeks".into()))?,
                    ),
                };
                let count = text(&form.count)
                    .unwrap_or("4")
                    .parse()
                    .map_err(|_| Error::BadRequest("say how many visits the route has".into()))?;
                service::plan::plan_route(
                    &ctx,
                    &web.caller,
                    NewRoute {
                        first: visit,
                        every_weeks,
                        count,
                    },
                )
                .await
                .map(|ids| format!("Route planned: {} visits.", ids.len()))
            }
        }
    }
    .await;
    done(&ctx, &web, at, result).await
}

#[derive(Debug, Deserialize)]
pub(super) struct JobForm {
    #[serde(flatten)]
    back: Back,
    account: Option<String>,
    job_type: Option<String>,
    description: Option<String>,
    priority: Option<String>,
    sla_date: Option<String>,
    technician: Option<String>,
    date: Option<String>,
    start: Option<String>,
    end: Option<String>,
}

/// `POST /web/plan/jobs`: a job, assigned to a technician when one is chosen.
pub(super) async fn create_job(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    WebForm(form): WebForm<JobForm>,
) -> Result<Response, WebError> {
    web.check_csrf(form.back.csrf.as_deref())?;
    let at = form.back.at()?;
    let result = async {
        let priority = match text(&form.priority) {
            None => None,
            Some(p) => Some(
                serde_json::from_value::<Priority>(serde_json::Value::String(p.to_owned()))
                    .map_err(|_| Error::BadRequest(format!("unknown priority {p:?}")))?,
            ),
        };
        let sla_due_ms = match text(&form.sla_date) {
            None => None,
            // Due at the end of that day.
            Some(d) => Some(
                format::parse_date(d)
                    .ok_or_else(|| Error::BadRequest(format!("{d:?} is not a date")))?
                    + DAY_MS
                    - 60_000,
            ),
        };
        let assign = match text(&form.technician) {
            None => None,
            Some(_) => {
                let (start_ms, end_ms) = slot(&form.date, &form.start, &form.end)?;
                Some(NewAssignment {
                    technician: user_id(&form.technician, "a technician")?,
                    start_ms,
                    end_ms,
                    promised: None,
                })
            }
        };
        let assigned = assign.is_some();
        service::plan::create_job(
            &ctx,
            &web.caller,
            NewJob {
                account: record_id(&form.account, "an account")?,
                job_type: text(&form.job_type).unwrap_or("repair").to_owned(),
                description: text(&form.description).map(str::to_owned),
                priority,
                sla_due_ms,
                assign,
            },
        )
        .await
        .map(|_| {
            if assigned {
                "Job created and dispatched to the technician.".to_owned()
            } else {
                "Job created; assign it when you know who goes.".to_owned()
            }
        })
    }
    .await;
    done(&ctx, &web, at, result).await
}

#[derive(Debug, Deserialize)]
pub(super) struct ReassignForm {
    #[serde(flatten)]
    back: Back,
    technician: Option<String>,
}

/// `POST /web/plan/assignments/{id}/reassign`.
pub(super) async fn reassign(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(id): Path<String>,
    WebForm(form): WebForm<ReassignForm>,
) -> Result<Response, WebError> {
    web.check_csrf(form.back.csrf.as_deref())?;
    let at = form.back.at()?;
    let result = async {
        let id: RecordId = parse_id(&id)?;
        let tech = user_id(&form.technician, "a technician")?;
        service::plan::reassign(&ctx, &web.caller, id, tech)
            .await
            .map(|_| {
                "Reassigned. Both technicians' devices get it with their next sync.".to_owned()
            })
    }
    .await;
    done(&ctx, &web, at, result).await
}

#[derive(Debug, Deserialize)]
pub(super) struct ReasonForm {
    #[serde(flatten)]
    back: Back,
    reason: Option<String>,
}

/// `POST /web/plan/visits/{id}/cancel`.
pub(super) async fn cancel_visit(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(id): Path<String>,
    WebForm(form): WebForm<ReasonForm>,
) -> Result<Response, WebError> {
    cancel(&ctx, &web, &id, RecordKind::Visit, form).await
}

/// `POST /web/plan/assignments/{id}/cancel`.
pub(super) async fn cancel_assignment(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(id): Path<String>,
    WebForm(form): WebForm<ReasonForm>,
) -> Result<Response, WebError> {
    cancel(&ctx, &web, &id, RecordKind::Assignment, form).await
}

async fn cancel(
    ctx: &Context,
    web: &WebUser,
    id: &str,
    kind: RecordKind,
    form: ReasonForm,
) -> Result<Response, WebError> {
    web.check_csrf(form.back.csrf.as_deref())?;
    let at = form.back.at()?;
    let result = async {
        let id = parse_id(id)?;
        service::plan::cancel(ctx, &web.caller, id, kind, form.reason.as_deref())
            .await
            .map(|()| "Cancelled.".to_owned())
    }
    .await;
    done(ctx, web, at, result).await
}

/// `POST /web/plan/visits/{id}/reopen`.
pub(super) async fn reopen(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(id): Path<String>,
    WebForm(form): WebForm<ReasonForm>,
) -> Result<Response, WebError> {
    web.check_csrf(form.back.csrf.as_deref())?;
    let at = form.back.at()?;
    let result = async {
        let id = parse_id(&id)?;
        service::plan::reopen_visit(&ctx, &web.caller, id, form.reason.as_deref())
            .await
            .map(|()| "Visit reopened: the rep can correct it and check out again.".to_owned())
    }
    .await;
    done(&ctx, &web, at, result).await
}

fn parse_id(id: &str) -> Result<RecordId, Error> {
    id.parse()
        .map_err(|_| Error::BadRequest(format!("{id:?} is not a record id")))
}

/// After an action: back to the plan with what it did, or the plan with why not.
async fn done(
    ctx: &Context,
    web: &WebUser,
    at: At,
    result: Result<String, Error>,
) -> Result<Response, WebError> {
    match result {
        Ok(message) => Ok(Redirect::to(&at.url(Some(&message))).into_response()),
        Err(e) => refused(ctx, web, at, e).await,
    }
}

fn hhmm(ms: i64) -> String {
    let min = ms.rem_euclid(DAY_MS) / 60_000;
    format!("{:02}:{:02}", min / 60, min % 60)
}

fn render(
    web: &WebUser,
    at: At,
    view: &PlanView,
    accounts: &[AccountChoice],
    notice: Option<(bool, String)>,
) -> Markup {
    let days: Vec<i64> = (0..i64::from(at.span.days()))
        .map(|d| view.from_ms + d * DAY_MS)
        .collect();
    let reps: Vec<_> = view.lanes.iter().filter(|l| l.role == "rep").collect();
    let techs: Vec<_> = view
        .lanes
        .iter()
        .filter(|l| l.role == "technician")
        .collect();
    let names: BTreeMap<&str, &str> = view
        .lanes
        .iter()
        .map(|l| (l.person_id.as_str(), l.name.as_str()))
        .collect();
    let title = match at.span {
        Span::Day => format!("Plan for {}", at.day()),
        Span::Week => format!("Plan for the week of {}", at.day()),
    };
    let back = |extra: Markup| {
        html! {
            input type="hidden" name="csrf" value=(web.csrf);
            input type="hidden" name="from" value=(at.day());
            input type="hidden" name="view" value=(at.span.name());
            (extra)
        }
    };
    let step = match at.span {
        Span::Day => 1,
        Span::Week => 7,
    };
    let body = html! {
        h1 #plan-title { (title) }
        p.meta { "Times are in UTC. Visits and jobs you plan here reach the rep's or technician's device with its next sync, at once when it is online." }
        @if let Some((ok, text)) = &notice {
            p #plan-notice class=(if *ok { "notice ok" } else { "notice error" }) role=(if *ok { "status" } else { "alert" }) { (text) }
        }
        nav.crumbs aria-label="Period" {
            a href=(at.shifted(-step).url(None)) rel="prev" { "← Previous" } " · "
            a href=(At { from_ms: DeviceTime::now_utc().at_ms.div_euclid(DAY_MS) * DAY_MS, span: at.span }.url(None)) { "Today" } " · "
            a href=(at.shifted(step).url(None)) rel="next" { "Next →" } " · "
            @if at.span == Span::Day {
                a href=(At { span: Span::Week, ..at }.url(None)) { "Week view" }
            } @else {
                a href=(At { span: Span::Day, ..at }.url(None)) { "Day view" }
            }
        }
        @if view.double_booked > 0 {
            p #double-booked.notice.warn role="status" { (format::count(view.double_booked as u64, "booking overlaps", "bookings overlap")) " another of the same person (marked “double-booked”)." }
        }
        div.table-wrap {
            table.plan {
                caption { "Visits and assignments by person" }
                thead {
                    tr {
                        th scope="col" { "Person" }
                        @for d in &days { th scope="col" { (dates::format_day(d.div_euclid(DAY_MS))) } }
                    }
                }
                tbody {
                    @if view.lanes.is_empty() {
                        tr { td colspan=(days.len() + 1) { "No reps or technicians in your team." } }
                    }
                    @for lane in &view.lanes {
                        tr data-person=(lane.person_id) {
                            th scope="row" { (lane.name) br; span.meta { (lane.role) } }
                            @for d in &days {
                                td {
                                    @let items: Vec<_> = lane.items.iter().filter(|i| i.start_ms.div_euclid(DAY_MS) * DAY_MS == *d).collect();
                                    @if items.is_empty() { span.empty { "—" } }
                                    ul.bookings {
                                        @for i in items {
                                            li.booking data-id=(i.id) data-kind=(i.kind) data-status=(i.status) {
                                                strong { (hhmm(i.start_ms)) "–" (hhmm(i.end_ms)) }
                                                " "
                                                @if i.kind == "visit" { "Visit" } @else { "Job" }
                                                @if let Some(a) = &i.account_name { ": " (a) }
                                                " " span.badge class=(format!("badge {}", i.status)) { (format::status(&i.status)) }
                                                @if i.double_booked { " " span.badge.outside.double { "double-booked" } }
                                                (actions(&back, i, &techs))
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        div.grid {
            section aria-labelledby="plan-visit-title" {
                h2 #plan-visit-title { "Plan a visit" }
                form #plan-visit method="post" action="/web/plan/visits" {
                    (back(html! {}))
                    label for="visit-rep" { "Rep" }
                    select #visit-rep name="rep" required {
                        option value="" { "Choose a rep" }
                        @for r in &reps { option value=(r.person_id) { (r.name) } }
                    }
                    label for="visit-account" { "Account" }
                    select #visit-account name="account" required {
                        option value="" { "Choose an account" }
                        @for a in accounts { option value=(a.id) { (a.name) @if let Some(f) = a.visit_frequency_days { " (every " (f) " days)" } } }
                    }
                    label for="visit-date" { "Date" }
                    input #visit-date type="date" name="date" value=(at.day()) required;
                    label for="visit-start" { "From (HH:MM)" }
                    input #visit-start type="text" name="start" value="09:00" pattern="[0-9]{1,2}:[0-9]{2}" required;
                    label for="visit-end" { "To (HH:MM)" }
                    input #visit-end type="text" name="end" value="10:00" pattern="[0-9]{1,2}:[0-9]{2}" required;
                    label for="visit-instructions" { "Instructions (optional)" }
                    textarea #visit-instructions name="instructions" rows="2" {}
                    label for="visit-repeat" { "Repeat" }
                    select #visit-repeat name="repeat" {
                        option value="" { "Once" }
                        option value="account" { "At the account's visit frequency" }
                        @for w in [1, 2, 4, 8] { option value=(w) { "Every " (format::count(w, "week", "weeks")) } }
                    }
                    label for="visit-count" { "Visits in the route" }
                    input #visit-count type="text" name="count" value="4" inputmode="numeric";
                    div.buttons { button type="submit" { "Plan visit" } }
                }
            }
            section aria-labelledby="create-job-title" {
                h2 #create-job-title { "Create a job" }
                form #create-job method="post" action="/web/plan/jobs" {
                    (back(html! {}))
                    label for="job-account" { "Account" }
                    select #job-account name="account" required {
                        option value="" { "Choose an account" }
                        @for a in accounts { option value=(a.id) { (a.name) } }
                    }
                    label for="job-type" { "Type" }
                    input #job-type type="text" name="job_type" value="repair" required;
                    label for="job-description" { "What the customer reported" }
                    textarea #job-description name="description" rows="2" {}
                    label for="job-priority" { "Priority" }
                    select #job-priority name="priority" {
                        @for p in ["normal", "low", "high", "urgent"] { option value=(p) { (p) } }
                    }
                    label for="job-sla" { "SLA due (date, optional)" }
                    input #job-sla type="date" name="sla_date";
                    label for="job-technician" { "Assign to (optional)" }
                    select #job-technician name="technician" {
                        option value="" { "Nobody yet" }
                        @for t in &techs { option value=(t.person_id) { (t.name) } }
                    }
                    label for="job-date" { "Date" }
                    input #job-date type="date" name="date" value=(at.day());
                    label for="job-start" { "From (HH:MM)" }
                    input #job-start type="text" name="start" value="09:00" pattern="[0-9]{1,2}:[0-9]{2}";
                    label for="job-end" { "To (HH:MM)" }
                    input #job-end type="text" name="end" value="11:00" pattern="[0-9]{1,2}:[0-9]{2}";
                    div.buttons { button type="submit" { "Create job" } }
                }
            }
        }
        @if !names.is_empty() { p.meta { (format::count(names.len() as u64, "person", "people")) " in this plan." } }
    };
    page("Plan", Some(web.chrome()), body)
}

/// The forms under one booking: reassign or cancel an assignment; cancel a
/// planned visit; reopen a completed one.
fn actions(
    back: &dyn Fn(Markup) -> Markup,
    i: &crate::service::plan::PlanItem,
    techs: &[&crate::service::plan::Lane],
) -> Markup {
    let id = &i.id;
    let reassignable = i.kind == "assignment"
        && matches!(
            i.status.as_str(),
            "scheduled" | "dispatched" | "rejected" | "accepted" | "traveling" | "on_site"
        );
    let cancellable = match i.kind.as_str() {
        "visit" => matches!(i.status.as_str(), "planned" | "in_progress"),
        _ => matches!(
            i.status.as_str(),
            "scheduled" | "dispatched" | "accepted" | "traveling" | "on_site"
        ),
    };
    let plural = if i.kind == "visit" {
        "visits"
    } else {
        "assignments"
    };
    html! {
        @if reassignable {
            form.inline.reassign method="post" action=(format!("/web/plan/assignments/{id}/reassign")) {
                (back(html! {}))
                label for=(format!("reassign-{id}")) { "Reassign to" }
                select #(format!("reassign-{id}")) name="technician" required {
                    option value="" { "Choose" }
                    @for t in techs { @if t.person_id != i.person_id { option value=(t.person_id) { (t.name) } } }
                }
                button.secondary type="submit" { "Reassign" }
            }
        }
        @if cancellable {
            form.inline.cancel method="post" action=(format!("/web/plan/{plural}/{id}/cancel")) {
                (back(html! {}))
                label for=(format!("cancel-{id}")) { "Reason" }
                input #(format!("cancel-{id}")) type="text" name="reason" required;
                button.secondary type="submit" { "Cancel" }
            }
        }
        @if i.kind == "visit" && i.status == "completed" {
            form.inline.reopen method="post" action=(format!("/web/plan/visits/{id}/reopen")) {
                (back(html! {}))
                label for=(format!("reopen-{id}")) { "Reason" }
                input #(format!("reopen-{id}")) type="text" name="reason" required;
                button.secondary type="submit" { "Reopen" }
            }
        }
    }
}
