//! `/web/inbox`: the visit reports waiting for the manager, with filters
//! (status, rep, visit dates, geofence verdict), sorting (date, rep, account,
//! value), a chart of the listed reports per rep, and checkboxes for deciding
//! on several reports at once (`POST /web/inbox/decisions`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use fieldsync_core::model::{ReportStatus, Status};
use maud::{Markup, html};
use serde::Deserialize;

use super::chart::{BarChart, Series};
use super::format;
use super::{WebError, WebForm, WebQuery, WebUser, page};
use crate::domain::Error;
use crate::domain::review::{CommentProblem, MAX_REPORTS, review_comment};
use crate::service::reports::{InboxFilter, InboxRow, RepChoice, SortKey};
use crate::service::review::Decision;
use crate::service::{self, Context};

/// Most rows one inbox page shows.
const PAGE_ROWS: usize = 200;

/// The query string as sent; parsed by [`filter_from`] so a bad value gets a
/// page that says which, not a bare rejection.
#[derive(Debug, Default, Deserialize)]
pub(super) struct InboxParams {
    status: Option<String>,
    rep: Option<String>,
    from: Option<String>,
    to: Option<String>,
    verdict: Option<String>,
    sort: Option<String>,
    dir: Option<String>,
    // The outcome of a bulk decision, shown once.
    decided: Option<String>,
    done: Option<String>,
    refused: Option<String>,
    problem: Option<String>,
}

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn filter_from(p: &InboxParams) -> Result<InboxFilter, Error> {
    let mut f = InboxFilter::default();
    if let Some(s) = nonempty(&p.status) {
        f.status = ReportStatus::parse(s).ok_or_else(|| {
            Error::BadRequest(format!(
                "unknown report status {s:?}; use submitted, changes_requested, approved or draft"
            ))
        })?;
    }
    if let Some(r) = nonempty(&p.rep) {
        f.rep = Some(
            r.parse()
                .map_err(|_| Error::BadRequest(format!("{r:?} is not a rep id")))?,
        );
    }
    let day = |v: &str, what: &str| {
        format::parse_date(v).ok_or_else(|| {
            Error::BadRequest(format!(
                "the {what} date {v:?} is not a date like 2026-11-30"
            ))
        })
    };
    if let Some(v) = nonempty(&p.from) {
        f.from_ms = Some(day(v, "from")?);
    }
    if let Some(v) = nonempty(&p.to) {
        // The whole "to" day is included.
        f.to_ms = Some(day(v, "to")?.saturating_add(86_400_000));
    }
    if let (Some(a), Some(b)) = (f.from_ms, f.to_ms)
        && b <= a
    {
        return Err(Error::BadRequest(
            "the from date is after the to date".into(),
        ));
    }
    if let Some(v) = nonempty(&p.verdict) {
        f.verdict = Some(
            format::VERDICTS
                .into_iter()
                .find(|x| x.as_str() == v)
                .ok_or_else(|| Error::BadRequest(format!("unknown geofence verdict {v:?}")))?,
        );
    }
    if let Some(v) = nonempty(&p.sort) {
        f.sort = SortKey::parse(v).ok_or_else(|| {
            Error::BadRequest(format!(
                "cannot sort by {v:?}; use date, rep, account or value"
            ))
        })?;
    }
    f.descending = match nonempty(&p.dir) {
        None => f.sort == SortKey::Date || f.sort == SortKey::Value,
        Some("desc") => true,
        Some("asc") => false,
        Some(v) => {
            return Err(Error::BadRequest(format!(
                "sort direction {v:?}: use asc or desc"
            )));
        }
    };
    Ok(f)
}

/// The filter part of the query string (no sorting, no outcome).
fn filter_query(p: &InboxParams) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    for (k, v) in [
        ("status", &p.status),
        ("rep", &p.rep),
        ("from", &p.from),
        ("to", &p.to),
        ("verdict", &p.verdict),
    ] {
        if let Some(v) = nonempty(v) {
            q.push((k, v.to_owned()));
        }
    }
    q
}

fn query_string(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", format::query_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `GET /web/inbox`.
pub(super) async fn show(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    WebQuery(params): WebQuery<InboxParams>,
) -> Result<Response, WebError> {
    let filter = filter_from(&params)?;
    let mut rows = service::reports::inbox(&ctx, &web.caller, &filter).await?;
    let reps = service::reports::reps(&ctx, &web.caller).await?;
    let truncated = rows.len() > PAGE_ROWS;
    rows.truncate(PAGE_ROWS);
    let body = render(&params, &filter, &rows, &reps, truncated, &web.csrf);
    Ok(page_markup(&web, body).into_response())
}

fn page_markup(web: &WebUser, body: Markup) -> Markup {
    page("Review inbox", Some(web.chrome()), body)
}

fn outcome(params: &InboxParams) -> Option<(bool, String)> {
    if let Some(problem) = nonempty(&params.problem) {
        let text = match problem {
            "none_selected" => "Select at least one report first.",
            "comment_required" => "Say what to change: a comment is required to request changes.",
            "comment_too_long" => "A review comment holds at most 4,000 bytes.",
            _ => "The decision could not be made.",
        };
        return Some((false, text.to_owned()));
    }
    let decided = nonempty(&params.decided)?;
    let done: usize = nonempty(&params.done)?.parse().ok()?;
    let refused: usize = nonempty(&params.refused)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let verb = if decided == "approve" {
        "Approved"
    } else {
        "Sent back for changes"
    };
    let mut text = format!("{verb}: {done} report{}.", if done == 1 { "" } else { "s" });
    if refused > 0 {
        text.push_str(&format!(
            " {refused} could not be decided (already decided, changed meanwhile, or not in your team)."
        ));
    }
    Some((refused == 0, text))
}

fn render(
    params: &InboxParams,
    filter: &InboxFilter,
    rows: &[InboxRow],
    reps: &[RepChoice],
    truncated: bool,
    csrf: &str,
) -> Markup {
    let status = filter.status.as_str();
    let decidable = filter.status == ReportStatus::Submitted;
    let back = {
        let mut q = filter_query(params);
        q.push(("sort", filter.sort.as_str().to_owned()));
        q.push((
            "dir",
            if filter.descending { "desc" } else { "asc" }.to_owned(),
        ));
        query_string(&q)
    };
    let sort_link = |key: SortKey| {
        let dir = if filter.sort == key {
            if filter.descending { "asc" } else { "desc" }
        } else if matches!(key, SortKey::Date | SortKey::Value) {
            "desc"
        } else {
            "asc"
        };
        let mut q = filter_query(params);
        q.push(("sort", key.as_str().to_owned()));
        q.push(("dir", dir.to_owned()));
        format!("/web/inbox?{}", query_string(&q))
    };
    let aria_sort = |key: SortKey| {
        if filter.sort != key {
            "none"
        } else if filter.descending {
            "descending"
        } else {
            "ascending"
        }
    };
    let header = |key: SortKey, label: &str| {
        html! {
            th scope="col" aria-sort=(aria_sort(key)) {
                a href=(sort_link(key)) { (label) span.sort-mark aria-hidden="true" {
                    @if filter.sort == key { @if filter.descending { " ▼" } @else { " ▲" } }
                } }
            }
        }
    };
    html! {
        h1 { "Visit reports: " (format::status(status).to_lowercase()) }
        @if let Some((ok, text)) = outcome(params) {
            p class=(if ok { "notice ok" } else { "notice error" }) role="status" { (text) }
        }
        form.filters method="get" action="/web/inbox" aria-label="Filter reports" {
            div.field {
                label for="f-status" { "Status" }
                select #f-status name="status" {
                    @for s in [ReportStatus::Submitted, ReportStatus::ChangesRequested, ReportStatus::Approved, ReportStatus::Draft] {
                        option value=(s.as_str()) selected[s == filter.status] { (format::status(s.as_str())) }
                    }
                }
            }
            div.field {
                label for="f-rep" { "Rep" }
                select #f-rep name="rep" {
                    option value="" { "Everyone" }
                    @for r in reps {
                        option value=(r.id) selected[filter.rep == Some(r.id)] { (r.name) }
                    }
                }
            }
            div.field {
                label for="f-from" { "Visits from" }
                input #f-from type="date" name="from" value=(nonempty(&params.from).unwrap_or(""));
            }
            div.field {
                label for="f-to" { "to" }
                input #f-to type="date" name="to" value=(nonempty(&params.to).unwrap_or(""));
            }
            div.field {
                label for="f-verdict" { "Geofence" }
                select #f-verdict name="verdict" {
                    option value="" { "Any" }
                    @for v in format::VERDICTS {
                        option value=(v.as_str()) selected[filter.verdict == Some(v)] { (format::verdict(v)) }
                    }
                }
            }
            input type="hidden" name="sort" value=(filter.sort.as_str());
            input type="hidden" name="dir" value=(if filter.descending { "desc" } else { "asc" });
            div.field.actions {
                button type="submit" { "Apply filters" }
                a href="/web/inbox" { "Clear" }
            }
        }
        (summary_chart(rows))
        @if rows.is_empty() {
            p.empty { "No reports match these filters." }
        } @else {
            form #bulk method="post" action="/web/inbox/decisions" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="back" value=(back);
                p.count role="status" aria-live="polite" {
                    (rows.len()) " report" @if rows.len() != 1 { "s" }
                    @if truncated { " (the first " (PAGE_ROWS) "; narrow the filters to see the rest)" }
                    span.selected-count {}
                }
                div.table-wrap {
                    table.inbox {
                        caption.visually-hidden { "Visit reports; column headers sort the list" }
                        thead {
                            tr {
                                @if decidable {
                                    th scope="col" {
                                        span.visually-hidden { "Select" }
                                    }
                                }
                                (header(SortKey::Rep, "Rep"))
                                (header(SortKey::Account, "Account"))
                                (header(SortKey::Date, "Date"))
                                th scope="col" { "Planned" }
                                th scope="col" { "Actual" }
                                th scope="col" { "Geofence" }
                                (header(SortKey::Value, "Order value"))
                                th scope="col" { "Status" }
                            }
                        }
                        tbody {
                            @for r in rows { (row(r, decidable)) }
                        }
                    }
                }
                @if decidable {
                    fieldset.bulk {
                        legend { "Decide on the selected reports" }
                        label for="bulk-comment" { "Comment (required to request changes)" }
                        textarea #bulk-comment name="comment" rows="2" maxlength="4000" {}
                        div.buttons {
                            button type="submit" name="decision" value="approve" { "Approve selected" }
                            button.secondary type="submit" name="decision" value="request_changes" {
                                "Request changes on selected"
                            }
                        }
                    }
                }
            }
        }
    }
}

fn row(r: &InboxRow, decidable: bool) -> Markup {
    let rep = r.rep_name.as_deref().unwrap_or("Unknown rep");
    let account = r.account_name.as_deref().unwrap_or("Unknown account");
    let when = r
        .planned_start
        .or(r.check_in)
        .map(format::date)
        .unwrap_or_else(|| "—".into());
    let span = |a: Option<fieldsync_core::model::DeviceTime>,
                b: Option<fieldsync_core::model::DeviceTime>| {
        match (a, b) {
            (Some(a), Some(b)) => format!("{}–{}", format::clock(a), format::clock(b)),
            (Some(a), None) => format!("{}–…", format::clock(a)),
            _ => "—".to_owned(),
        }
    };
    let checkbox_id = format!("sel-{}", r.id);
    html! {
        tr {
            @if decidable {
                td {
                    input.select type="checkbox" name="ids" value=(r.id) id=(checkbox_id);
                    label.visually-hidden for=(checkbox_id) { "Select the report of " (rep) " at " (account) " on " (when) }
                }
            }
            td { (rep) }
            td { a href=(format!("/web/reports/{}", r.id)) { (account) } }
            td { (when) }
            td { (span(r.planned_start, r.planned_end)) }
            td { (span(r.check_in, r.check_out)) }
            td {
                @match r.verdict {
                    Some(v) => span class=(format!("badge {}", v.as_str())) { (format::verdict(v)) },
                    None => "—",
                }
            }
            td.num { (format::money_list(&r.order_value)) }
            td { span class=(format!("badge {}", r.status)) { (format::status(&r.status)) } }
        }
    }
}

/// Reports listed and their order value per rep, drawn from the rows shown.
fn summary_chart(rows: &[InboxRow]) -> Markup {
    if rows.is_empty() {
        return html! {};
    }
    let mut per_rep: BTreeMap<String, (f64, i64)> = BTreeMap::new();
    let currencies: std::collections::BTreeSet<&str> = rows
        .iter()
        .flat_map(|r| r.order_value.iter().map(|m| m.currency.as_str()))
        .collect();
    for r in rows {
        let e = per_rep
            .entry(r.rep_name.clone().unwrap_or_else(|| "Unknown rep".into()))
            .or_default();
        e.0 += 1.0;
        e.1 =
            e.1.saturating_add(r.order_value.iter().map(|m| m.minor).sum::<i64>());
    }
    let categories: Vec<String> = per_rep.keys().cloned().collect();
    let reports_chart = BarChart {
        id: "chart-reports".into(),
        title: "Reports listed per rep".into(),
        unit: "reports".into(),
        categories: categories.clone(),
        series: vec![Series {
            name: "Reports".into(),
            values: per_rep.values().map(|v| v.0).collect(),
        }],
    };
    // Order value per rep only when one currency is involved: sums across
    // currencies would mean nothing.
    let value_chart = (currencies.len() == 1).then(|| {
        let currency = currencies.iter().next().copied().unwrap_or_default();
        BarChart {
            id: "chart-value".into(),
            title: "Order value per rep (net)".into(),
            unit: currency.to_owned(),
            categories,
            series: vec![Series {
                name: "Order value".into(),
                values: per_rep
                    .values()
                    .map(|v| format::major(v.1, currency))
                    .collect(),
            }],
        }
    });
    html! {
        section.charts aria-label="Summary of the listed reports" {
            (reports_chart.render())
            @if let Some(c) = value_chart { (c.render()) }
        }
    }
}

/// `POST /web/inbox/decisions`: the same decision on every selected report,
/// each on its own; then back to the inbox with the outcome.
pub(super) async fn decide(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    WebForm(fields): WebForm<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    web.check_csrf(field("csrf"))?;
    // Only a query string of our own making goes back into the redirect.
    let back = field("back")
        .filter(|b| {
            b.len() <= 1_000
                && b.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"=&-_.%~".contains(&c))
        })
        .unwrap_or("");
    let to = |outcome: String| {
        let sep = if back.is_empty() { "" } else { "&" };
        Redirect::to(&format!("/web/inbox?{back}{sep}{outcome}")).into_response()
    };
    let Some(decision) = field("decision").and_then(Decision::parse) else {
        return Err(WebError::Domain(Error::BadRequest(
            "choose approve or request changes".into(),
        )));
    };
    let ids: Vec<&str> = fields
        .iter()
        .filter(|(k, _)| k == "ids")
        .map(|(_, v)| v.as_str())
        .collect();
    if ids.is_empty() {
        return Ok(to("problem=none_selected".into()));
    }
    if ids.len() > MAX_REPORTS {
        return Err(WebError::Domain(Error::BadRequest(format!(
            "decide on at most {MAX_REPORTS} reports at once"
        ))));
    }
    let comment = match review_comment(decision, field("comment")) {
        Ok(comment) => comment,
        Err(CommentProblem::Required) => return Ok(to("problem=comment_required".into())),
        Err(CommentProblem::TooLong) => return Ok(to("problem=comment_too_long".into())),
    };
    let (mut done, mut refused) = (0usize, 0usize);
    for id in ids {
        match service::review::decide(&ctx, &web.caller, id, decision, comment).await {
            Ok(_) => done += 1,
            Err(e @ (Error::Unavailable(_) | Error::Internal(_))) => {
                return Err(WebError::Domain(e));
            }
            Err(e) => {
                tracing::info!(report = id, code = e.code(), "a bulk decision was refused");
                refused += 1;
            }
        }
    }
    Ok(to(format!(
        "decided={}&done={done}&refused={refused}",
        decision.as_str()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_parsed_and_bad_values_named() {
        let p = InboxParams {
            status: Some("approved".into()),
            from: Some("2026-11-01".into()),
            to: Some("2026-11-30".into()),
            verdict: Some("outside".into()),
            sort: Some("rep".into()),
            ..InboxParams::default()
        };
        let f = filter_from(&p).expect("valid");
        assert_eq!(f.status, ReportStatus::Approved);
        assert_eq!(
            f.to_ms.zip(f.from_ms).map(|(t, f)| (t - f) / 86_400_000),
            Some(30),
            "the to day is included"
        );
        assert!(!f.descending, "names sort A to Z first");
        for (field, bad) in [
            ("status", "done"),
            ("from", "2026-02-31"),
            ("verdict", "nearby"),
            ("sort", "colour"),
        ] {
            let mut p = InboxParams::default();
            match field {
                "status" => p.status = Some(bad.into()),
                "from" => p.from = Some(bad.into()),
                "verdict" => p.verdict = Some(bad.into()),
                _ => p.sort = Some(bad.into()),
            }
            let err = filter_from(&p).expect_err(field);
            assert!(err.to_string().contains(bad), "{err}");
        }
        let reversed = InboxParams {
            from: Some("2026-11-30".into()),
            to: Some("2026-11-01".into()),
            ..InboxParams::default()
        };
        assert!(filter_from(&reversed).is_err());
    }
}
