//! `/web/conflicts`: the queue of semantic clashes (e.g. a job completed
//! offline while the office cancelled it), each with both sides and their
//! evidence (value, who, device, when, the status-history event with its
//! reason and position, the record's fields) and a form that keeps one side
//! (`POST /web/conflicts/{record_id}/resolve`, through
//! `service::conflicts::resolve`, like the JSON API).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use fieldsync_core::model::DeviceTime;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::format;
use super::{WebError, WebForm, WebQuery, WebUser, page, status_of};
use crate::domain::Error;
use crate::domain::conflicts::OVERLAP_PATH;
use crate::domain::figures::dates;
use crate::service::conflicts::{ConflictItem, HistoryEntry};
use crate::service::{self, Context};

/// Fields of the record shown in its summary, at most.
const SUMMARY_FIELDS: usize = 16;

/// The outcome of a resolution, shown once.
#[derive(Debug, Default, Deserialize)]
pub(super) struct QueueParams {
    resolved: Option<String>,
    status: Option<String>,
}

/// `GET /web/conflicts`.
pub(super) async fn show(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    WebQuery(params): WebQuery<QueueParams>,
) -> Result<Response, WebError> {
    let items = service::conflicts::list(&ctx, &web.caller).await?;
    let notice = match (params.resolved.as_deref(), params.status.as_deref()) {
        (Some(_), Some(status)) => Some((
            true,
            format!(
                "Resolved: the record keeps “{}”. Devices get it with their next sync.",
                format::status(status)
            ),
        )),
        _ => None,
    };
    Ok(render(&web, &items, notice).into_response())
}

#[derive(Debug, Deserialize)]
pub(super) struct ResolveForm {
    csrf: Option<String>,
    choose: Option<String>,
    #[serde(default)]
    comment: String,
}

/// `POST /web/conflicts/{record_id}/resolve`: keeps the chosen side. A refused
/// resolution shows the queue again with the reason.
pub(super) async fn resolve(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(record_id): Path<String>,
    WebForm(form): WebForm<ResolveForm>,
) -> Result<Response, WebError> {
    web.check_csrf(form.csrf.as_deref())?;
    let Some(choose) = form.choose.filter(|c| !c.is_empty()) else {
        return refused(
            &ctx,
            &web,
            Error::BadRequest("choose the side to keep".into()),
        )
        .await;
    };
    let comment = Some(form.comment.as_str());
    match service::conflicts::resolve(&ctx, &web.caller, &record_id, &choose, comment).await {
        Ok(done) => Ok(Redirect::to(&format!(
            "/web/conflicts?resolved={}&status={}",
            format::query_escape(&done.record_id),
            format::query_escape(&done.status)
        ))
        .into_response()),
        Err(e @ (Error::BadRequest(_) | Error::Conflict(_) | Error::NotFound)) => {
            refused(&ctx, &web, e).await
        }
        Err(e) => Err(WebError::Domain(e)),
    }
}

async fn refused(ctx: &Context, web: &WebUser, e: Error) -> Result<Response, WebError> {
    let status = status_of(e.kind());
    let text = match e {
        Error::NotFound => {
            "That conflict is no longer open (it may have been resolved already).".to_owned()
        }
        other => other.to_string(),
    };
    let items = service::conflicts::list(ctx, &web.caller).await?;
    Ok((status, render(web, &items, Some((false, text)))).into_response())
}

/// A JSON value as text: strings bare, the rest as JSON.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "—".to_owned(),
        other => other.to_string(),
    }
}

fn when(at_ms: i64, tz_offset_min: i32) -> String {
    format::date_time(DeviceTime {
        at_ms,
        tz_offset_min,
    })
}

fn gps_text(gps: &Value) -> String {
    let num = |k: &str| gps.get(k).and_then(Value::as_f64);
    match (num("lat"), num("lng")) {
        (Some(lat), Some(lon)) => match num("accuracy_m") {
            Some(acc) => format!("{lat:.5}, {lon:.5} (±{acc:.0} m)"),
            None => format!("{lat:.5}, {lon:.5}"),
        },
        _ => value_text(gps),
    }
}

fn event(e: &HistoryEntry) -> Markup {
    html! {
        (e.from.as_deref().map_or("Created".to_owned(), format::status)) " → " (format::status(&e.to))
        " by " (e.by.name) " (" (e.role) ")"
        @if let Some(dev) = &e.device_id { " on device " span.meta title=(dev) { (format::short_id(dev)) } }
        " at " (when(e.at_ms, e.tz_offset_min))
        @if let Some(gps) = &e.gps { ", at " (gps_text(gps)) }
        @if let Some(r) = &e.reason { ". Reason: “" (r) "”" }
    }
}

fn render(web: &WebUser, items: &[ConflictItem], notice: Option<(bool, String)>) -> Markup {
    let body = html! {
        h1 { "Conflicts" }
        p.meta { "Records whose status was changed on two sides at once (for example a job completed offline while the office cancelled it), and reps checked in at two visits at once. A clashing record shows one side until you keep one; devices get your choice with their next sync." }
        @if let Some((ok, text)) = &notice {
            p class=(if *ok { "notice ok" } else { "notice error" }) role=(if *ok { "status" } else { "alert" }) { (text) }
        }
        @if items.is_empty() { p.empty #no-conflicts { "No open conflicts." } }
        @for (n, c) in items.iter().enumerate() { (item(web, n, c)) }
    };
    page("Conflicts", Some(web.chrome()), body)
}

fn item(web: &WebUser, n: usize, c: &ConflictItem) -> Markup {
    let heading = format!("h-conflict-{n}");
    let summary: Vec<(&String, &Value)> = c
        .record
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(_, v)| !v.is_object() && !v.is_array())
                .take(SUMMARY_FIELDS)
                .collect()
        })
        .unwrap_or_default();
    html! {
        section.conflict aria-labelledby=(heading) data-record=(c.record_id) {
            h2 #(heading) { (format::status(&c.kind)) " " span.meta { (c.record_id) } }
            @if c.path == OVERLAP_PATH {
                p.overlap {
                    "The rep checked in here while another of their visits was still in progress. "
                    "Both check-ins are kept. This closes when the rep checks out of either visit, or when you cancel one. "
                    "Detected " (dates::rfc3339(c.detected_at.saturating_mul(1_000)))
                    @if let Some(p) = &c.detected_by { " in a sync by " (p.name) }
                    "."
                }
            } @else {
            p {
                "The " (c.path) " clashes"
                @if let Some(s) = &c.shown { "; the record shows “" (format::status(s)) "” now" }
                ". Detected " (dates::rfc3339(c.detected_at.saturating_mul(1_000)))
                @if let Some(p) = &c.detected_by { " in a sync by " (p.name) }
                @if let Some(d) = &c.detected_device { " from device " span.meta title=(d) { (format::short_id(d)) } }
                "."
            }
            div.table-wrap {
                table.sides {
                    caption { "Both sides" }
                    thead { tr { th scope="col" { "Value" } th scope="col" { "Written by" } th scope="col" { "Device" } th scope="col" { "Evidence (status history)" } } }
                    tbody {
                        @for s in &c.sides {
                            tr {
                                th scope="row" { (format::status(&value_text(&s.value))) @if s.shown { " " span.badge { "shown now" } } }
                                td { (s.by.as_ref().map_or("Unknown", |p| p.name.as_str())) }
                                td { (s.device_id.as_deref().map_or("web app or server".to_owned(), format::short_id)) }
                                td { @if let Some(e) = &s.event { (event(e)) } @else { "No matching history event." } }
                            }
                        }
                    }
                }
            }
            details {
                summary { "The record and its full status history" }
                dl {
                    @for (k, v) in &summary { dt { (k) } dd { (value_text(v)) } }
                }
                ol { @for e in &c.history { li { (event(e)) } } }
                @if !c.other_fields.is_empty() {
                    p { (c.other_fields.len()) " other fields were edited on both sides too; both values are kept." }
                }
            }
            form.resolve method="post" action=(format!("/web/conflicts/{}/resolve", c.record_id)) {
                input type="hidden" name="csrf" value=(web.csrf);
                fieldset {
                    legend { "Keep which " (c.path) "?" }
                    @for (i, s) in c.sides.iter().enumerate() {
                        @let id = format!("choose-{n}-{i}");
                        @let v = value_text(&s.value);
                        div { input #(id) type="radio" name="choose" value=(v) required; " " label for=(id) { (format::status(&v)) } }
                    }
                    label for=(format!("comment-{n}")) { "Comment (optional, kept in the status history)" }
                    textarea #(format!("comment-{n}")) name="comment" rows="2" {}
                    div.buttons { button type="submit" { "Resolve" } }
                }
            }
            }
        }
    }
}
