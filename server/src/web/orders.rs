//! `/web/orders`: the approval queue (orders in a status, with rep, account,
//! date, net value, discount, value against the list price and the reasons
//! the server held them) with approve / reject on each waiting order;
//! `/web/orders/{id}`: one order (lines with list price against unit price,
//! discount, totals, status history with who and why) with its decision form,
//! and the fulfilment form for administrators once confirmed; `/web/time`:
//! technicians' ended time entries waiting for approval.
//!
//! Every decision is a POST form with the session's CSRF token, answered by a
//! redirect (or the page again with the refusal), and calls the same service
//! as the JSON API (`service::orders`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use fieldsync_core::model::{DeviceTime, OrderStatus, Role, Status};
use maud::{Markup, html};
use serde::Deserialize;

use super::format;
use super::{WebError, WebForm, WebQuery, WebUser, page, status_of};
use crate::domain::Error;
use crate::service::orders::{OrderDecision, OrderView, TimeDecision, TimeEntryView};
use crate::service::{self, Context};

/// Most rows one queue page shows.
const PAGE_ROWS: usize = 200;

#[derive(Debug, Default, Deserialize)]
pub(super) struct QueueParams {
    status: Option<String>,
    decided: Option<String>,
}

fn time_of(ms: Option<i64>) -> String {
    ms.map(|ms| format::date_time(DeviceTime::utc(ms)))
        .unwrap_or_else(|| "—".into())
}

/// Basis points as `12.5 %`, or a dash.
fn bp(v: Option<i64>) -> String {
    match v {
        Some(v) => {
            let text = format!("{:.1}", v as f64 / 100.0);
            format!("{} %", text.strip_suffix(".0").unwrap_or(&text))
        }
        None => "—".into(),
    }
}

/// A quantity as the model writes it (`2.5000`) without trailing zeros.
fn qty(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

fn decided_notice(decided: Option<&str>) -> Option<(bool, &'static str)> {
    match decided? {
        "confirmed" => Some((
            true,
            "Approved: the server confirmed the order. The rep's app shows it after its next sync.",
        )),
        "rejected" => Some((
            true,
            "Rejected. The rep's app shows your comment after its next sync.",
        )),
        "fulfilled" => Some((true, "Fulfilment recorded.")),
        _ => None,
    }
}

/// `GET /web/orders?status=pending_approval`.
pub(super) async fn queue(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    WebQuery(params): WebQuery<QueueParams>,
) -> Result<Response, WebError> {
    let status = params
        .status
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or(OrderStatus::PendingApproval.as_str())
        .to_owned();
    let rows = service::orders::queue(&ctx, &web.caller, &status, PAGE_ROWS).await?;
    let notice = decided_notice(params.decided.as_deref()).map(|(ok, t)| (ok, t.to_owned()));
    Ok(render_queue(&web, &status, &rows, notice).into_response())
}

fn render_queue(
    web: &WebUser,
    status: &str,
    rows: &[OrderView],
    notice: Option<(bool, String)>,
) -> Markup {
    let decidable = status == OrderStatus::PendingApproval.as_str();
    let body = html! {
        h1 { "Orders: " (format::status(status).to_lowercase()) }
        @if let Some((ok, text)) = notice {
            p class=(if ok { "notice ok" } else { "notice error" }) role="status" { (text) }
        }
        form.filters method="get" action="/web/orders" aria-label="Filter orders" {
            div.field {
                label for="f-status" { "Status" }
                select #f-status name="status" {
                    @for s in OrderStatus::ALL {
                        option value=(s.as_str()) selected[s.as_str() == status] { (format::status(s.as_str())) }
                    }
                }
            }
            div.field.actions { button type="submit" { "Show" } }
        }
        @if rows.is_empty() {
            p.empty { "No orders in this status." }
        } @else {
            p.count role="status" { (format::count(rows.len() as u64, "order", "orders")) }
            div.table-wrap {
                table.orders {
                    caption.visually-hidden { "Orders; open an order to see its lines" }
                    thead { tr {
                        th scope="col" { "Account" }
                        th scope="col" { "Rep" }
                        th scope="col" { "Date" }
                        th scope="col" { "Net value" }
                        th scope="col" { "Discount" }
                        th scope="col" { "Against list price" }
                        th scope="col" { "Why it waits" }
                        @if decidable { th scope="col" { "Decision" } }
                    } }
                    tbody {
                        @for o in rows { (queue_row(o, decidable, &web.csrf)) }
                    }
                }
            }
        }
    };
    page("Orders", Some(web.chrome()), body)
}

fn queue_row(o: &OrderView, decidable: bool, csrf: &str) -> Markup {
    let account = o.account_name.as_deref().unwrap_or("Unknown account");
    let rep = o.rep_name.as_deref().unwrap_or("Unknown rep");
    let comment_id = format!("c-{}", o.id);
    html! {
        tr data-order=(o.id) {
            td { a href=(format!("/web/orders/{}", o.id)) { (account) } }
            td { (rep) }
            td { (time_of(o.date_ms)) }
            td.num { (format::amount(o.net, &o.currency)) }
            td.num { (bp(o.discount_bp)) }
            td.num { (bp(o.vs_list_bp)) }
            td { (o.pending_reasons.as_deref().unwrap_or("—")) }
            @if decidable {
                td {
                    form.decide method="post" action=(format!("/web/orders/{}/decision", o.id)) {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="back" value="queue";
                        label.visually-hidden for=(comment_id) { "Comment on the order of " (rep) " at " (account) " (required to reject)" }
                        input #(comment_id) type="text" name="comment" maxlength="4000" placeholder="Comment (required to reject)";
                        button type="submit" name="decision" value="approve" { "Approve" }
                        button.secondary type="submit" name="decision" value="reject" { "Reject" }
                    }
                }
            }
        }
    }
}

/// A page address that is not a record id is a page that does not exist.
fn check_id(id: &str) -> Result<(), WebError> {
    id.parse::<fieldsync_core::RecordId>()
        .map(|_| ())
        .map_err(|_| WebError::Domain(Error::NotFound))
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct OrderParams {
    decided: Option<String>,
}

/// `GET /web/orders/{id}`.
pub(super) async fn show(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(id): Path<String>,
    WebQuery(params): WebQuery<OrderParams>,
) -> Result<Response, WebError> {
    check_id(&id)?;
    let order = service::orders::order(&ctx, &web.caller, &id).await?;
    let notice = decided_notice(params.decided.as_deref()).map(|(ok, t)| (ok, t.to_owned()));
    Ok(render_order(&web, &order, notice, "").into_response())
}

#[derive(Debug, Deserialize)]
pub(super) struct DecisionForm {
    csrf: Option<String>,
    decision: Option<String>,
    #[serde(default)]
    comment: String,
    back: Option<String>,
}

/// `POST /web/orders/{id}/decision`: approve, or reject with a comment. A
/// refused decision shows the order page with the reason and the comment as
/// typed.
pub(super) async fn decide(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(id): Path<String>,
    WebForm(form): WebForm<DecisionForm>,
) -> Result<Response, WebError> {
    web.check_csrf(form.csrf.as_deref())?;
    check_id(&id)?;
    let Some(decision) = form.decision.as_deref().and_then(OrderDecision::parse) else {
        return Err(WebError::Domain(Error::BadRequest(
            "choose approve or reject".into(),
        )));
    };
    let comment = Some(form.comment.as_str());
    match service::orders::decide(&ctx, &web.caller, &id, decision, comment).await {
        Ok(status) => {
            let to = if form.back.as_deref() == Some("queue") {
                format!("/web/orders?decided={}", status.as_str())
            } else {
                format!("/web/orders/{id}?decided={}", status.as_str())
            };
            Ok(Redirect::to(&to).into_response())
        }
        Err(e @ (Error::BadRequest(_) | Error::Conflict(_))) => {
            let order = service::orders::order(&ctx, &web.caller, &id).await?;
            let status = status_of(e.kind());
            let page = render_order(&web, &order, Some((false, e.to_string())), &form.comment);
            Ok((status, page).into_response())
        }
        Err(e) => Err(WebError::Domain(e)),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct FulfilForm {
    csrf: Option<String>,
    #[serde(default)]
    note: String,
}

/// `POST /web/orders/{id}/fulfilment`: an administrator records the delivery.
pub(super) async fn fulfil(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(id): Path<String>,
    WebForm(form): WebForm<FulfilForm>,
) -> Result<Response, WebError> {
    web.check_csrf(form.csrf.as_deref())?;
    check_id(&id)?;
    match service::orders::fulfil(&ctx, &web.caller, &id, Some(form.note.as_str())).await {
        Ok(status) => Ok(
            Redirect::to(&format!("/web/orders/{id}?decided={}", status.as_str())).into_response(),
        ),
        Err(e @ (Error::BadRequest(_) | Error::Conflict(_))) => {
            let order = service::orders::order(&ctx, &web.caller, &id).await?;
            let status = status_of(e.kind());
            let page = render_order(&web, &order, Some((false, e.to_string())), "");
            Ok((status, page).into_response())
        }
        Err(e) => Err(WebError::Domain(e)),
    }
}

fn render_order(
    web: &WebUser,
    o: &OrderView,
    notice: Option<(bool, String)>,
    comment: &str,
) -> Markup {
    let account = o.account_name.as_deref().unwrap_or("Unknown account");
    let rep = o.rep_name.as_deref().unwrap_or("Unknown rep");
    let title = format!("Order: {account}");
    let money = |minor: i64| format::amount(minor, &o.currency);
    let pending = o.status == OrderStatus::PendingApproval.as_str();
    let fulfillable =
        o.status == OrderStatus::Confirmed.as_str() && web.caller.role() == Role::Admin;
    let body = html! {
        p.crumbs { a href="/web/orders" { "← Orders" } }
        h1 { (title) }
        @if let Some((ok, text)) = notice {
            p class=(if ok { "notice ok" } else { "notice error" }) role=(if ok { "status" } else { "alert" }) { (text) }
        }
        p.meta {
            "By " strong { (rep) } " · " (time_of(o.date_ms)) " · "
            span class=(format!("badge {}", o.status)) #order-status { (format::status(&o.status)) }
        }
        @if let Some(reasons) = &o.pending_reasons {
            @if pending {
                p.notice.warn { strong { "Held for approval: " } (reasons) }
            }
        }
        dl.facts {
            dt { "Price list" } dd { (o.price_list_name.as_deref().unwrap_or("None applies")) }
            @if let Some(d) = &o.delivery_date { dt { "Delivery" } dd { (d) } }
            @if let Some(n) = &o.notes { dt { "Notes" } dd { (n) } }
        }
        section aria-labelledby="h-lines" {
            h2 #h-lines { "Lines" }
            div.table-wrap {
                table.lines {
                    thead { tr {
                        th scope="col" { "Product" }
                        th scope="col" { "Qty" }
                        th scope="col" { "List price" }
                        th scope="col" { "Unit price" }
                        th scope="col" { "Discount" }
                        th scope="col" { "Net" }
                        th scope="col" { "Total" }
                    } }
                    tbody {
                        @for l in &o.lines {
                            tr {
                                td { (l.description.clone().unwrap_or_else(|| format::short_id(&l.product_id))) }
                                td.num { (qty(&l.qty)) }
                                td.num { (l.list_price.map(money).unwrap_or_else(|| "not on the list".into())) }
                                td.num { (money(l.unit_price)) }
                                td.num { (bp(l.discount_bp)) }
                                td.num { (money(l.net)) }
                                td.num { (money(l.total)) }
                            }
                        }
                    }
                    tfoot {
                        tr { th scope="row" colspan="5" { "Gross" } td.num colspan="2" { (money(o.gross)) } }
                        tr { th scope="row" colspan="5" { "Discount (" (bp(o.discount_bp)) ")" } td.num colspan="2" { (money(o.discount)) } }
                        tr { th scope="row" colspan="5" { "Net" } td.num colspan="2" #order-net { (money(o.net)) } }
                        tr { th scope="row" colspan="5" { "Tax" } td.num colspan="2" { (money(o.tax)) } }
                        tr { th scope="row" colspan="5" { "Total" } td.num colspan="2" #order-total { (money(o.total)) } }
                        @if let Some(lv) = o.list_value {
                            tr { th scope="row" colspan="5" { "At list prices (lines on the list)" } td.num colspan="2" { (money(lv)) " (" (bp(o.vs_list_bp)) ")" } }
                        }
                    }
                }
            }
        }
        @if pending {
            section aria-labelledby="h-decide" {
                h2 #h-decide { "Decision" }
                form.decision method="post" action=(format!("/web/orders/{}/decision", o.id)) {
                    input type="hidden" name="csrf" value=(web.csrf);
                    label for="comment" { "Comment (required to reject)" }
                    textarea #comment name="comment" rows="3" maxlength="4000" { (comment) }
                    div.buttons {
                        button type="submit" name="decision" value="approve" { "Approve" }
                        button.secondary type="submit" name="decision" value="reject" { "Reject" }
                    }
                }
            }
        }
        @if fulfillable {
            section aria-labelledby="h-fulfil" {
                h2 #h-fulfil { "Fulfilment" }
                form.decision method="post" action=(format!("/web/orders/{}/fulfilment", o.id)) {
                    input type="hidden" name="csrf" value=(web.csrf);
                    label for="note" { "Delivery note (optional)" }
                    input #note type="text" name="note" maxlength="4000";
                    div.buttons { button type="submit" { "Record fulfilment" } }
                }
            }
        }
        section aria-labelledby="h-history" {
            h2 #h-history { "Status history" }
            div.table-wrap {
                table.history {
                    thead { tr {
                        th scope="col" { "When" } th scope="col" { "Change" }
                        th scope="col" { "By" } th scope="col" { "Why" }
                    } }
                    tbody {
                        @for e in &o.history {
                            tr {
                                td { (time_of(Some(e.at_ms))) }
                                td {
                                    @if let Some(from) = &e.from { (format::status(from)) " → " }
                                    (format::status(&e.to))
                                }
                                td { (e.by_name.as_deref().unwrap_or("someone outside your team")) " (" (e.role) ")" }
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

#[derive(Debug, Default, Deserialize)]
pub(super) struct TimeParams {
    decided: Option<String>,
}

/// `GET /web/time`: time entries waiting for approval.
pub(super) async fn time(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    WebQuery(params): WebQuery<TimeParams>,
) -> Result<Response, WebError> {
    let rows = service::orders::time_queue(&ctx, &web.caller).await?;
    let notice = match params.decided.as_deref() {
        Some("approved") => Some("Time entry approved."),
        Some("rejected") => Some("Time entry rejected."),
        _ => None,
    };
    Ok(render_time(&web, &rows, notice).into_response())
}

fn render_time(web: &WebUser, rows: &[TimeEntryView], notice: Option<&str>) -> Markup {
    let body = html! {
        h1 { "Time approvals" }
        @if let Some(text) = notice {
            p.notice.ok role="status" { (text) }
        }
        @if rows.is_empty() {
            p.empty { "No time entries are waiting for approval." }
        } @else {
            p.count role="status" { (format::count(rows.len() as u64, "time entry", "time entries")) }
            div.table-wrap {
                table.time {
                    thead { tr {
                        th scope="col" { "Technician" }
                        th scope="col" { "Kind" }
                        th scope="col" { "From" }
                        th scope="col" { "To" }
                        th scope="col" { "Time" }
                        th scope="col" { "Note" }
                        th scope="col" { "Decision" }
                    } }
                    tbody {
                        @for e in rows {
                            @let who = e.technician_name.as_deref().unwrap_or("Unknown technician");
                            tr data-entry=(e.entry_id) {
                                td { (who) }
                                td { (format::status(&e.kind)) }
                                td { (time_of(Some(e.start_ms))) }
                                td { (time_of(Some(e.end_ms))) }
                                td.num { (format::minutes(e.minutes as f64)) }
                                td { (e.note.as_deref().unwrap_or("")) }
                                td {
                                    form.decide method="post" action=(format!("/web/time/{}/{}/decision", e.assignment_id, e.entry_id)) {
                                        input type="hidden" name="csrf" value=(web.csrf);
                                        button type="submit" name="decision" value="approve"
                                            aria-label=(format!("Approve {}'s {} time from {}", who, e.kind, time_of(Some(e.start_ms)))) { "Approve" }
                                        button.secondary type="submit" name="decision" value="reject"
                                            aria-label=(format!("Reject {}'s {} time from {}", who, e.kind, time_of(Some(e.start_ms)))) { "Reject" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page("Time approvals", Some(web.chrome()), body)
}

#[derive(Debug, Deserialize)]
pub(super) struct TimeForm {
    csrf: Option<String>,
    decision: Option<String>,
}

/// `POST /web/time/{assignment}/{entry}/decision`.
pub(super) async fn decide_time(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path((assignment, entry)): Path<(String, String)>,
    WebForm(form): WebForm<TimeForm>,
) -> Result<Response, WebError> {
    web.check_csrf(form.csrf.as_deref())?;
    check_id(&assignment)?;
    check_id(&entry)?;
    let Some(decision) = form.decision.as_deref().and_then(TimeDecision::parse) else {
        return Err(WebError::Domain(Error::BadRequest(
            "choose approve or reject".into(),
        )));
    };
    let approval =
        service::orders::decide_time(&ctx, &web.caller, &assignment, &entry, decision).await?;
    Ok(Redirect::to(&format!("/web/time?decided={}", approval.as_str())).into_response())
}
