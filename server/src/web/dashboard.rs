//! `/web/dashboard`: the team's figures for a range of UTC days (the last 7
//! by default) with their definitions, charts per rep, the fleet's sync
//! health, and CSV downloads of the range (`/web/export/{kind}.csv`).
//!
//! The numbers are `service::analytics::dashboard`'s, the same the JSON API
//! answers; `docs/kpis.md` defines each in full and the page repeats the
//! definitions in short.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::chart::{BarChart, Series};
use super::format;
use super::{WebError, WebQuery, WebUser, page};
use crate::domain::Error;
use crate::domain::figures::dates;
use crate::service::Context;
use crate::service::analytics::{self, Dashboard, DateRange, DeviceSyncHealth};
use crate::service::export::{self, Export};

/// Days shown when no range is given (today and the 6 before).
const DEFAULT_DAYS: i64 = 7;

/// The query string as sent.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RangeParams {
    from: Option<String>,
    to: Option<String>,
    team: Option<String>,
}

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The range asked for, or the last [`DEFAULT_DAYS`] UTC days up to today.
fn range_of(p: &RangeParams) -> Result<DateRange, Error> {
    DateRange::or_recent(nonempty(&p.from), nonempty(&p.to), DEFAULT_DAYS)
}

/// The query string of a range (and team), for links.
fn range_query(range: &DateRange, team: Option<&str>) -> String {
    let mut q = format!(
        "from={}&to={}",
        format::query_escape(&range.from_text()),
        format::query_escape(&range.to_text())
    );
    if let Some(t) = team {
        q.push_str("&team=");
        q.push_str(&format::query_escape(t));
    }
    q
}

/// `GET /web/dashboard?from=&to=[&team=]`.
pub(super) async fn show(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    WebQuery(params): WebQuery<RangeParams>,
) -> Result<Response, WebError> {
    let range = range_of(&params)?;
    let team = analytics::parse_team(nonempty(&params.team))?;
    let d = analytics::dashboard(&ctx, &web.caller, range, team).await?;
    let team_text = nonempty(&params.team).map(str::to_owned);
    Ok(render(&web, &d, &range, team_text.as_deref()).into_response())
}

/// `GET /web/export/{kind}.csv?from=&to=[&team=]`: the CSV file the JSON API
/// serves, for the signed-in manager.
pub(super) async fn csv(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(file): Path<String>,
    WebQuery(params): WebQuery<RangeParams>,
) -> Result<Response, WebError> {
    let Some(what) = Export::from_file_name(&file) else {
        return Err(WebError::Domain(Error::NotFound));
    };
    let range = range_of(&params)?;
    let team = analytics::parse_team(nonempty(&params.team))?;
    let body = export::export(&ctx, &web.caller, what, range, team).await?;
    let name = what.file_name(&range);
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

fn or_dash(v: Option<String>) -> String {
    v.unwrap_or_else(|| "—".to_owned())
}

fn render(web: &WebUser, d: &Dashboard, range: &DateRange, team: Option<&str>) -> Markup {
    let f = &d.figures;
    let v = &f.visits;
    let j = &f.jobs;
    let query = range_query(range, team);
    let reps: Vec<String> = f.reps.iter().map(|r| r.rep_name.clone()).collect();
    let visits_chart = BarChart {
        id: "chart-visits".into(),
        title: "Completed visits per rep per day (mean)".into(),
        unit: "visits a day".into(),
        categories: reps.clone(),
        series: vec![Series {
            name: "Visits a day".into(),
            values: f.reps.iter().map(|r| r.visits_per_day_mean).collect(),
        }],
    };
    let value_charts: Vec<BarChart> = v
        .order_value
        .iter()
        .map(|ov| BarChart {
            id: format!("chart-value-{}", ov.currency.to_ascii_lowercase()),
            title: "Order value per rep (net)".into(),
            unit: ov.currency.clone(),
            categories: reps.clone(),
            series: vec![Series {
                name: "Order value".into(),
                values: f
                    .reps
                    .iter()
                    .map(|r| {
                        r.visits
                            .order_value
                            .iter()
                            .find(|x| x.currency == ov.currency)
                            .map_or(0.0, |x| format::major(x.total_minor, &x.currency))
                    })
                    .collect(),
            }],
        })
        .collect();
    let body = html! {
        h1 { "Team dashboard" }
        p.meta { "From " (d.from) " to " (d.to) " (whole " (d.time_zone) " days). Full definitions of every figure: docs/kpis.md." }
        form.filters method="get" action="/web/dashboard" aria-label="Range" {
            div.field { label for="from" { "From" } input #from type="date" name="from" value=(d.from); }
            div.field { label for="to" { "To (included)" } input #to type="date" name="to" value=(d.to); }
            @if let Some(t) = team { input type="hidden" name="team" value=(t); }
            div.actions { button type="submit" { "Show" } a href="/web/dashboard" { "Last 7 days" } }
        }
        section aria-labelledby="h-export" {
            h2 #h-export { "Download the range" }
            ul {
                li { a href=(format!("/web/export/visits.csv?{query}")) download { "Visits (CSV)" } }
                li { a href=(format!("/web/export/orders.csv?{query}")) download { "Orders (CSV)" } }
                li { a href=(format!("/web/export/jobs.csv?{query}")) download { "Service jobs (CSV)" } }
            }
        }
        section aria-labelledby="h-visits" {
            h2 #h-visits { "Visits" }
            dl #figures-visits {
                dt { a href=(format!("/web/plan?from={}&view=week", d.from)) { "Completed visits" } } dd #fig-completed { (v.completed) span.hint { " — planned and ad hoc, counted on their day" } }
                dt { "Visit compliance" } dd #fig-compliance { (format::percent(v.compliance)) span.hint { " — " (v.planned_completed) " of " (v.planned) " planned visits completed (cancelled ones left out)" } }
                dt { a href="/web/orders?status=confirmed" { "Strike rate" } } dd #fig-strike-rate { (format::percent(v.strike_rate)) span.hint { " — " (v.with_order) " of " (v.completed) " completed visits with a taken order" } }
                dt { a href="/web/orders?status=confirmed" { "Order value" } } dd #fig-order-value {
                    @if v.order_value.is_empty() { "—" }
                    @for (i, ov) in v.order_value.iter().enumerate() {
                        @if i > 0 { "; " }
                        (format::amount(ov.total_minor, &ov.currency)) " in " (format::count(ov.orders, "order", "orders")) ", "
                        (or_dash(ov.per_visit_minor.map(|m| format::amount(m.round() as i64, &ov.currency)))) " per completed visit"
                    }
                    span.hint { " — net (after discounts, before tax) of the taken orders" }
                }
                dt { "Time on site" } dd #fig-time-on-site { (or_dash(v.time_on_site_min_mean.map(format::minutes))) span.hint { " — mean from check-in to check-out over " (v.timed) " timed visits" } }
                dt { "Checked in outside the geofence" } dd #fig-outside { (v.outside_geofence) " of " (v.checked_in) span.hint { " — check-ins farther from the site than its radius; " (v.unverified_geofence) " could not be checked" } }
            }
            div.charts {
                (visits_chart.render())
                @for c in &value_charts { (c.render()) }
            }
            div.table-wrap {
                table #visits-per-day {
                    caption { "Completed visits per rep per day" }
                    thead { tr { th scope="col" { "Rep" } @for day in &f.days { th scope="col" { (day) } } th scope="col" { "Compliance" } th scope="col" { "Strike rate" } } }
                    tbody {
                        @for r in &f.reps {
                            tr {
                                th scope="row" { (r.rep_name) }
                                @for n in &r.visits_per_day { td.num { (n) } }
                                td.num { (format::percent(r.visits.compliance)) }
                                td.num { (format::percent(r.visits.strike_rate)) }
                            }
                        }
                        @if f.reps.is_empty() { tr { td.empty colspan=(f.days.len() + 3) { "No visits in this range." } } }
                    }
                }
            }
        }
        section aria-labelledby="h-jobs" {
            h2 #h-jobs { "Service jobs" }
            dl #figures-jobs {
                dt { a href="/web/jobs" { "Open jobs" } } dd #fig-jobs-open { (j.open) span.hint { " — created by the end of the range and open, scheduled or in progress now" } }
                dt { a href="/web/jobs?status=closed" { "Closed jobs" } } dd #fig-jobs-closed { (j.closed) span.hint { " — completed during the range" } }
                dt { "Mean time to complete" } dd { (or_dash(j.mean_time_to_complete_min.map(format::minutes))) span.hint { " — from creation to completion, closed jobs" } }
                dt { "First-time-fix rate" } dd { (format::percent(j.first_time_fix_rate)) span.hint { " — " (j.first_time_fixed) " of " (j.first_time_fix_known) " closed jobs fixed on the first visit" } }
                dt { a href="/web/jobs?sla_breached=true" { "SLA breaches" } } dd #fig-sla { (j.sla_breaches) span.hint { " — jobs due in the range completed late or still open past their due time" } }
                dt { "Broken promises" } dd #fig-promises { (j.broken_promises) span.hint { " — of " (j.promises_known) " jobs first reached in the range with a promised arrival window, reached outside it" } }
            }
        }
        (fleet_section(d))
    };
    page("Team dashboard", Some(web.chrome()), body)
}

fn fleet_section(d: &Dashboard) -> Markup {
    let fleet = &d.fleet;
    html! {
        section aria-labelledby="h-fleet" {
            h2 #h-fleet { "Fleet sync health" }
            p {
                a href="/web/conflicts" { (format::count(fleet.open_conflicts, "open conflict", "open conflicts")) } " · "
                (fleet.rejected_changes) " changes refused by the server in the range · "
                @if fleet.silent_over_a_day > 0 {
                    strong.silent { (fleet.silent_over_a_day) " devices silent for more than a day" }
                } @else { "no device silent for more than a day" }
            }
            div.table-wrap {
                table #fleet {
                    caption { "Devices, longest silent first" }
                    thead { tr {
                        th scope="col" { "User" } th scope="col" { "Device" } th scope="col" { "App version" }
                        th scope="col" { "Last sync" } th scope="col" { "Unsynced changes" }
                        th scope="col" { "Oldest unsynced edit" } th scope="col" { "Pending attachments" }
                    } }
                    tbody {
                        @for dev in &fleet.devices { (device_row(dev)) }
                        @if fleet.devices.is_empty() { tr { td.empty colspan="7" { "No active device." } } }
                    }
                }
            }
        }
    }
}

fn device_row(dev: &DeviceSyncHealth) -> Markup {
    let short = format::short_id(&dev.device_id);
    html! {
        tr class=[dev.silent.then_some("silent")] {
            th scope="row" { (dev.user_name) }
            td { (dev.platform) " " span.meta title=(dev.device_id) { (short) } }
            td { (dev.app_version) }
            td {
                @match dev.last_sync_at {
                    Some(at) => { (dates::rfc3339(at.saturating_mul(1_000))) }
                    None => { "never" }
                }
                " (" (format::age(dev.silent_for_secs)) " ago)"
                @if dev.silent { " " span.badge.outside { "Silent" } }
            }
            td.num { @if dev.reported_at.is_some() { (dev.unsynced_changes) } @else { "not reported" } }
            td { (or_dash(dev.oldest_unsynced_age_secs.map(|s| format!("{} old", format::age(s))))) }
            td.num { @if dev.reported_at.is_some() { (format::bytes(dev.pending_attachment_bytes)) } @else { "—" } }
        }
    }
}
