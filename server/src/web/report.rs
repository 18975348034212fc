//! `/web/reports/{id}`: one visit report with everything a manager checks
//! before deciding: planned against actual times, where the rep checked in and
//! out compared with the site, notes, checklist answers, the orders with their
//! lines and totals, photos and documents, the review thread and the status
//! history; and the decision form (`POST /web/reports/{id}/decision`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use fieldsync_core::RecordId;
use fieldsync_core::model::signature::SignatureVerdict;
use fieldsync_core::model::{CheckPoint, DeviceTime, ReportStatus, VisitOutcome};
use maud::{Markup, html};
use serde::Deserialize;

use super::format;
use super::{WebError, WebForm, WebQuery, WebUser, page, status_of};
use crate::domain::Error;
use crate::service::reports::{ReportDetail, ReportPage};
use crate::service::review::Decision;
use crate::service::{self, Context};

#[derive(Debug, Default, Deserialize)]
pub(super) struct ReportParams {
    decided: Option<String>,
}

/// A page address that is not a record id is a page that does not exist.
fn parse_id(id: &str) -> Result<RecordId, WebError> {
    id.parse().map_err(|_| WebError::Domain(Error::NotFound))
}

async fn load(ctx: &Context, web: &WebUser, id: RecordId) -> Result<ReportPage, WebError> {
    Ok(service::reports::page(ctx, &web.caller, id).await?)
}

/// `GET /web/reports/{id}`.
pub(super) async fn show(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(id): Path<String>,
    WebQuery(params): WebQuery<ReportParams>,
) -> Result<Response, WebError> {
    let id = parse_id(&id)?;
    let loaded = load(&ctx, &web, id).await?;
    let decided = params
        .decided
        .as_deref()
        .and_then(|d| d.parse::<ReportStatus>().ok());
    let notice = match decided {
        Some(ReportStatus::Approved) => Some((
            true,
            "Approved. The rep's app shows it after its next sync.",
        )),
        Some(ReportStatus::ChangesRequested) => Some((
            true,
            "Sent back for changes. The rep's app shows your comment after its next sync.",
        )),
        _ => None,
    };
    let notice = notice.map(|(ok, text)| (ok, text.to_owned()));
    Ok(render(&web, &loaded, notice, "").into_response())
}

#[derive(Debug, Deserialize)]
pub(super) struct DecisionForm {
    csrf: Option<String>,
    decision: Option<String>,
    #[serde(default)]
    comment: String,
}

/// `POST /web/reports/{id}/decision`: approve, or request changes with a
/// comment. A refused decision shows the page again with the reason and the
/// comment as typed.
pub(super) async fn decide(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(id): Path<String>,
    WebForm(form): WebForm<DecisionForm>,
) -> Result<Response, WebError> {
    web.check_csrf(form.csrf.as_deref())?;
    let record = parse_id(&id)?;
    let Some(decision) = form.decision.as_deref().and_then(Decision::parse) else {
        return Err(WebError::Domain(Error::BadRequest(
            "choose approve or request changes".into(),
        )));
    };
    let comment = Some(form.comment.as_str());
    match service::review::decide(&ctx, &web.caller, &id, decision, comment).await {
        Ok(status) => Ok(Redirect::to(&format!(
            "/web/reports/{record}?decided={}",
            fieldsync_core::model::Status::as_str(status)
        ))
        .into_response()),
        Err(e @ (Error::BadRequest(_) | Error::Conflict(_))) => {
            let loaded = load(&ctx, &web, record).await?;
            let status = status_of(e.kind());
            let page = render(&web, &loaded, Some((false, e.to_string())), &form.comment);
            Ok((status, page).into_response())
        }
        Err(e) => Err(WebError::Domain(e)),
    }
}

fn time(t: Option<DeviceTime>) -> String {
    t.map(format::date_time).unwrap_or_else(|| "—".into())
}

fn render(
    web: &WebUser,
    loaded: &ReportPage,
    notice: Option<(bool, String)>,
    comment: &str,
) -> Markup {
    let d = &loaded.detail;
    let account = d
        .account
        .as_ref()
        .map_or("Unknown account", |a| a.name.as_str());
    let rep = d.rep_name.as_deref().unwrap_or("Unknown rep");
    let title = format!("Visit report: {account}");
    let name_of = |u: &fieldsync_core::UserId| {
        d.names
            .get(u)
            .cloned()
            .unwrap_or_else(|| "someone outside your team".into())
    };
    let body = html! {
        p.crumbs { a href="/web/inbox" { "← Review inbox" } }
        h1 { (title) }
        p.meta {
            "By " strong { (rep) }
            @if let Some(v) = &d.visit {
                " · visit on " (time(v.visit.planned_start.or(v.visit.check_in.as_ref().map(|c| c.at))))
            }
            " · " span class=(format!("badge {}", d.report.status_name())) { (format::status(d.report.status_name())) }
        }
        @if let Some((ok, text)) = &notice {
            p class=(if *ok { "notice ok" } else { "notice error" }) role=(if *ok { "status" } else { "alert" }) { (text) }
        }
        @if d.changed_since_submission {
            p.notice.warn role="note" { "The report's content changed after it was submitted." }
        }
        div.grid {
            section aria-labelledby="h-summary" {
                h2 #h-summary { "Report" }
                h3 { "Summary" }
                p.prose { (if d.report.summary.is_empty() { "—" } else { &d.report.summary }) }
                @if !d.report.observations.is_empty() {
                    h3 { "Observations" }
                    p.prose { (d.report.observations) }
                }
                @if !d.report.kpis.is_empty() {
                    table {
                        caption { "Measured on the visit" }
                        thead { tr { th scope="col" { "KPI" } th scope="col" { "Target" } th scope="col" { "Actual" } } }
                        tbody {
                            @for (name, k) in &d.report.kpis {
                                tr {
                                    th scope="row" { (name) }
                                    td.num { (k.target.map(|v| format!("{v} {}", k.unit)).unwrap_or_else(|| "—".into())) }
                                    td.num { (k.actual.map(|v| format!("{v} {}", k.unit)).unwrap_or_else(|| "—".into())) }
                                }
                            }
                        }
                    }
                }
            }
            (visit_section(d))
        }
        (checklists_section(d))
        (orders_section(d, &loaded.verdicts))
        (attachments_section(d))
        section aria-labelledby="h-review" {
            h2 #h-review { "Review" }
            @if d.report.comments.is_empty() {
                p { "No comments yet." }
            } @else {
                ol.thread {
                    @for c in sorted_comments(d) {
                        li {
                            p.prose { (c.text) }
                            p.by { (name_of(&c.by)) ", " (format::date_time(c.at)) }
                        }
                    }
                }
            }
            @if d.report.status == ReportStatus::Submitted {
                form.decision method="post" action=(format!("/web/reports/{}/decision", d.id)) {
                    input type="hidden" name="csrf" value=(web.csrf);
                    label for="comment" { "Comment (required to request changes)" }
                    textarea #comment name="comment" rows="3" maxlength="4000" { (comment) }
                    div.buttons {
                        button type="submit" name="decision" value="approve" { "Approve" }
                        button.secondary type="submit" name="decision" value="request_changes" { "Request changes" }
                    }
                }
            } @else {
                p { "Decisions are made on submitted reports; this one is "
                    (format::status(d.report.status_name()).to_lowercase()) "." }
                @if !comment.trim().is_empty() {
                    p { "Your comment was not sent; here it is to copy:" }
                    blockquote.prose { (comment) }
                }
            }
        }
        section aria-labelledby="h-history" {
            h2 #h-history { "Status history" }
            div.table-wrap {
                table {
                    thead { tr {
                        th scope="col" { "When" } th scope="col" { "Change" }
                        th scope="col" { "By" } th scope="col" { "Comment" }
                    } }
                    tbody {
                        @for e in &d.history {
                            tr {
                                td { (format::date_time(e.at)) }
                                td {
                                    @if let Some(from) = &e.from { (format::status(from)) " → " }
                                    (format::status(&e.to))
                                }
                                td { (name_of(&e.by)) " (" (e.role.as_str()) ")" }
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

fn sorted_comments(d: &ReportDetail) -> Vec<&fieldsync_core::model::ReviewComment> {
    let mut c: Vec<_> = d.report.comments.values().collect();
    c.sort_by_key(|c| c.at);
    c
}

trait StatusName {
    fn status_name(&self) -> &'static str;
}

impl StatusName for fieldsync_core::model::VisitReport {
    fn status_name(&self) -> &'static str {
        fieldsync_core::model::Status::as_str(self.status)
    }
}

fn position(p: &CheckPoint) -> String {
    match &p.gps {
        Some(g) => match g.accuracy_m {
            Some(acc) => format!("{:.5}, {:.5} (±{acc:.0} m)", g.lat, g.lng),
            None => format!("{:.5}, {:.5}", g.lat, g.lng),
        },
        None => "no position".into(),
    }
}

fn outcome(o: VisitOutcome) -> &'static str {
    match o {
        VisitOutcome::OrderTaken => "Order taken",
        VisitOutcome::NoOrder => "No order",
        VisitOutcome::FollowUp => "Follow-up needed",
        VisitOutcome::Closed => "Outlet closed",
        VisitOutcome::ContactUnavailable => "Contact unavailable",
    }
}

fn visit_section(d: &ReportDetail) -> Markup {
    let Some(v) = &d.visit else {
        return html! {
            section aria-labelledby="h-visit" {
                h2 #h-visit { "Visit" }
                p { "The visit of this report is not available." }
            }
        };
    };
    let visit = &v.visit;
    let planned_min = match (visit.planned_start, visit.planned_end) {
        (Some(a), Some(b)) => Some(fieldsync_core::model::totals::duration_minutes(a, b)),
        _ => None,
    };
    html! {
        section aria-labelledby="h-visit" {
            h2 #h-visit { "Visit" }
            table {
                caption { "Planned and actual times" }
                thead { tr { th scope="col" { "" } th scope="col" { "Start" } th scope="col" { "End" } th scope="col" { "Minutes" } } }
                tbody {
                    tr {
                        th scope="row" { "Planned" }
                        td { (time(visit.planned_start)) }
                        td { (time(visit.planned_end)) }
                        td.num { (planned_min.map(|m| m.to_string()).unwrap_or_else(|| "—".into())) }
                    }
                    tr {
                        th scope="row" { "Actual" }
                        td { (time(visit.check_in.as_ref().map(|c| c.at))) }
                        td { (time(visit.check_out.as_ref().map(|c| c.at))) }
                        td.num { (v.time_on_site_min.map(|m| m.to_string()).unwrap_or_else(|| "—".into())) }
                    }
                }
            }
            table {
                caption { "Where the rep checked in and out" }
                thead { tr { th scope="col" { "" } th scope="col" { "Position" } th scope="col" { "Distance to site" } th scope="col" { "Verdict" } } }
                tbody {
                    @for (label, point) in [("Check-in", &visit.check_in), ("Check-out", &visit.check_out)] {
                        tr {
                            th scope="row" { (label) }
                            @match point {
                                Some(p) => {
                                    td { (position(p)) }
                                    td.num { (p.server_distance_m.or(p.distance_m).map(|m| format!("{m:.0} m")).unwrap_or_else(|| "—".into())) }
                                    td {
                                        span class=(format!("badge {}", p.effective_verdict().as_str())) { (format::verdict(p.effective_verdict())) }
                                        @if p.effective_verdict() != p.verdict {
                                            " " small { "(the app showed " (format::verdict(p.verdict)) ")" }
                                        }
                                    }
                                },
                                None => { td colspan="3" { "Not recorded" } },
                            }
                        }
                    }
                }
            }
            dl {
                @if let Some(site) = &d.site {
                    dt { "Site" }
                    dd {
                        (site.name)
                        @if !site.address.is_empty() { ", " (site.address) }
                        @if let Some(c) = &site.coords { " (" (format!("{:.5}, {:.5}", c.lat, c.lng)) ", fence " (format!("{:.0}", site.geofence_radius_m)) " m)" }
                    }
                }
                dt { "Type" } dd { (visit.visit_type) @if !visit.planned { " (ad hoc)" } }
                @if let Some(o) = visit.outcome {
                    dt { "Outcome" } dd { (outcome(o)) }
                }
                @if let Some(i) = &visit.instructions { dt { "Instructions" } dd.prose { (i) } }
                dt { "Notes" } dd.prose { (if visit.notes.is_empty() { "—" } else { &visit.notes }) }
                @if let Some(n) = &visit.next_visit_date { dt { "Next visit" } dd { (n) } }
            }
        }
    }
}

fn checklists_section(d: &ReportDetail) -> Markup {
    if d.checklists.is_empty() {
        return html! {};
    }
    html! {
        section aria-labelledby="h-checklists" {
            h2 #h-checklists { "Checklists" }
            @for c in &d.checklists {
                h3 {
                    (c.template_name.as_deref().unwrap_or("Checklist"))
                    @if !c.completed { " (not completed)" }
                }
                dl.answers {
                    @for a in &c.answers {
                        dt { (a.question) }
                        dd {
                            @if let Some(sha) = &a.attachment {
                                a href=(format!("/web/attachments/{sha}")) { "Open the " (a.question_id) " attachment" }
                            } @else {
                                (a.answer)
                            }
                        }
                    }
                }
            }
        }
    }
}

fn orders_section(d: &ReportDetail, verdicts: &[Option<SignatureVerdict>]) -> Markup {
    html! {
        section aria-labelledby="h-orders" {
            h2 #h-orders { "Orders" }
            @if d.orders.is_empty() { p { "No order was taken on this visit." } }
            @for (n, o) in d.orders.iter().enumerate() {
                div.table-wrap {
                    table.order {
                        caption {
                            "Order " (n + 1) " · " (format::status(fieldsync_core::model::Status::as_str(o.order.status)))
                            @if let Some(date) = &o.order.delivery_date { " · delivery " (date) }
                        }
                        thead { tr {
                            th scope="col" { "Item" } th scope="col" { "Qty" } th scope="col" { "Unit price" }
                            th scope="col" { "Discount" } th scope="col" { "Tax" } th scope="col" { "Net" } th scope="col" { "Total" }
                        } }
                        tbody {
                            @for (line_id, line) in &o.order.lines {
                                @let t = o.totals.as_ref().and_then(|t| t.lines.get(line_id));
                                tr {
                                    th scope="row" { (line.description.clone().unwrap_or_else(|| line.product_id.to_string())) }
                                    td.num { (format::qty(line.qty)) }
                                    td.num { (format::money(&line.unit_price)) }
                                    td.num { (t.map(|t| format::amount(t.discount, &o.order.currency)).unwrap_or_else(|| "—".into())) }
                                    td.num { (format!("{:.2} %", f64::from(line.tax_rate_bp) / 100.0)) }
                                    td.num { (t.map(|t| format::amount(t.net, &o.order.currency)).unwrap_or_else(|| "—".into())) }
                                    td.num { (t.map(|t| format::amount(t.total, &o.order.currency)).unwrap_or_else(|| "—".into())) }
                                }
                            }
                        }
                        @if let Some(t) = &o.totals {
                            tfoot {
                                tr {
                                    th scope="row" colspan="5" { "Order totals (gross " (format::amount(t.gross, &t.currency)) ", discount " (format::amount(t.discount, &t.currency)) ", tax " (format::amount(t.tax, &t.currency)) ")" }
                                    td.num { (format::amount(t.net, &t.currency)) }
                                    td.num { strong { (format::amount(t.total, &t.currency)) } }
                                }
                            }
                        }
                    }
                }
                @if let Some(sig) = &o.order.signature {
                    p.signature {
                        @match verdicts.get(n).and_then(Option::as_ref) {
                            Some(SignatureVerdict::Matches) => { span.badge.approved { "Signature matches" } " " }
                            Some(SignatureVerdict::NoLongerMatches { .. }) => { span.badge.changes_requested { "Signature no longer matches: the order changed after signing" } " " }
                            _ => {}
                        }
                        "Signed by " (sig.signer_name) " at " (format::date_time(sig.at)) ". "
                        a href=(format!("/web/attachments/{}", sig.image_sha256)) { "Signature image" } }
                }
            }
        }
    }
}

fn attachments_section(d: &ReportDetail) -> Markup {
    html! {
        section aria-labelledby="h-photos" {
            h2 #h-photos { "Photos and documents" }
            @if d.attachments.is_empty() { p { "None attached." } }
            ul.attachments {
                @for (n, a) in d.attachments.iter().enumerate() {
                    li {
                        @if a.complete && a.kind == "photo" {
                            a.thumb href=(format!("/web/attachments/{}", a.sha256)) {
                                img src=(format!("/web/attachments/{}/thumbnail", a.sha256))
                                    alt=(format!("Photo {} (opens the original)", n + 1))
                                    loading="lazy";
                            }
                        }
                        @if a.complete {
                            a href=(format!("/web/attachments/{}", a.sha256)) download {
                                "Download " (a.kind) " " (n + 1) " (original, " (a.content_type) ", " (format::bytes(a.size)) ")"
                            }
                        } @else {
                            (format::status(&a.kind)) " " (n + 1) " is still uploading from the rep's device."
                        }
                    }
                }
            }
        }
    }
}
