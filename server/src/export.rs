//! CSV export of visits, orders and service jobs for a range of UTC days:
//! `GET /v1/export/{visits,orders,jobs}.csv?from=YYYY-MM-DD&to=YYYY-MM-DD[&team=<id>]`.
//!
//! Rows come from `record_facts` (see [`crate::analytics`]) in the caller's
//! scope, the same as the dashboard's, so an export adds up to the figures.
//! The file is built in memory and bounded: more than [`MAX_ROWS`] rows is
//! refused with a request for a shorter range (at about 200 bytes a row, the
//! largest file is about 10 MB). Times are RFC 3339 in UTC; amounts are
//! integer minor units with their currency.
//!
//! Spreadsheets run a cell that starts with `=`, `+`, `-` or `@` (or a tab or
//! carriage return) as a formula: every text cell that does is prefixed with
//! `'` ([`cell`]), so a name typed on a device cannot become a formula on a
//! manager's laptop.

use std::borrow::Cow;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::AppState;
use crate::analytics::{DateRange, Scope, dates, parse_team};
use crate::auth::AuthUser;
use crate::db::DbError;
use crate::error::ApiError;
use crate::on_pool;

/// Most rows one export holds.
pub const MAX_ROWS: i64 = 50_000;

/// The export routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/export/visits.csv", get(visits_csv))
        .route("/v1/export/orders.csv", get(orders_csv))
        .route("/v1/export/jobs.csv", get(jobs_csv))
}

/// Which file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Export {
    /// Visits counting on a day of the range.
    Visits,
    /// Orders counting on a day of the range.
    Orders,
    /// Service jobs created on a day of the range.
    Jobs,
}

impl Export {
    fn name(self) -> &'static str {
        match self {
            Export::Visits => "visits",
            Export::Orders => "orders",
            Export::Jobs => "jobs",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Export::Visits => "visit",
            Export::Orders => "order",
            Export::Jobs => "service_job",
        }
    }

    fn header(self) -> &'static [&'static str] {
        match self {
            Export::Visits => &[
                "visit_id",
                "day",
                "rep_id",
                "rep_name",
                "team_id",
                "account_id",
                "status",
                "planned",
                "planned_start_utc",
                "check_in_utc",
                "check_out_utc",
                "time_on_site_min",
                "check_in_geofence",
                "outcome",
            ],
            Export::Orders => &[
                "order_id",
                "day",
                "rep_id",
                "rep_name",
                "team_id",
                "account_id",
                "visit_id",
                "status",
                "currency",
                "net_minor",
                "total_minor",
            ],
            Export::Jobs => &[
                "job_id",
                "created_utc",
                "owner_id",
                "owner_name",
                "team_id",
                "account_id",
                "status",
                "sla_due_utc",
                "completed_utc",
                "time_to_complete_min",
                "first_time_fix",
                "sla_breached",
            ],
        }
    }
}

/// A text cell made safe for spreadsheets: prefixed with `'` when it starts
/// with a character that makes it a formula.
pub fn cell(text: &str) -> Cow<'_, str> {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => Cow::Owned(format!("'{text}")),
        _ => Cow::Borrowed(text),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ExportQuery {
    /// First day, `YYYY-MM-DD` (UTC).
    from: Option<String>,
    /// Last day, included.
    to: Option<String>,
    /// An administrator may narrow to one team.
    team: Option<String>,
}

#[utoipa::path(get, path = "/v1/export/visits.csv", tag = "figures", security(("bearer" = [])),
    params(ExportQuery),
    responses(
        (status = 200, description = "The range's visits as CSV with a header row", body = String, content_type = "text/csv"),
        (status = 400, description = "Missing or malformed range", body = crate::api_doc::ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = crate::api_doc::ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = crate::api_doc::ErrorBody),
    ))]
pub(crate) async fn visits_csv(
    state: State<Arc<AppState>>,
    user: AuthUser,
    q: Query<ExportQuery>,
) -> Result<Response, ApiError> {
    serve(state, user, q, Export::Visits).await
}

#[utoipa::path(get, path = "/v1/export/orders.csv", tag = "figures", security(("bearer" = [])),
    params(ExportQuery),
    responses(
        (status = 200, description = "The range's orders as CSV with a header row", body = String, content_type = "text/csv"),
        (status = 400, description = "Missing or malformed range", body = crate::api_doc::ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = crate::api_doc::ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = crate::api_doc::ErrorBody),
    ))]
pub(crate) async fn orders_csv(
    state: State<Arc<AppState>>,
    user: AuthUser,
    q: Query<ExportQuery>,
) -> Result<Response, ApiError> {
    serve(state, user, q, Export::Orders).await
}

#[utoipa::path(get, path = "/v1/export/jobs.csv", tag = "figures", security(("bearer" = [])),
    params(ExportQuery),
    responses(
        (status = 200, description = "The range's jobs as CSV with a header row", body = String, content_type = "text/csv"),
        (status = 400, description = "Missing or malformed range", body = crate::api_doc::ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = crate::api_doc::ErrorBody),
        (status = 403, description = "Not a manager or administrator", body = crate::api_doc::ErrorBody),
    ))]
pub(crate) async fn jobs_csv(
    state: State<Arc<AppState>>,
    user: AuthUser,
    q: Query<ExportQuery>,
) -> Result<Response, ApiError> {
    serve(state, user, q, Export::Jobs).await
}

async fn serve(
    State(state): State<Arc<AppState>>,
    user: AuthUser,
    Query(q): Query<ExportQuery>,
    what: Export,
) -> Result<Response, ApiError> {
    let (Some(from), Some(to)) = (q.from.as_deref(), q.to.as_deref()) else {
        return Err(ApiError::BadRequest(
            "give the range as from=YYYY-MM-DD&to=YYYY-MM-DD".into(),
        ));
    };
    let range = DateRange::parse(from, to)?;
    let team = parse_team(q.team.as_deref())?;
    let body = export(&state, &user, what, range, team).await?;
    let mut resp = body.into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    let disposition = format!(
        "attachment; filename=\"{}-{}-{}.csv\"",
        what.name(),
        range.from_text(),
        range.to_text()
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

type FactTuple = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<bool>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

type MoreTuple = (String, Option<i64>, Option<i64>, Option<i64>, Option<bool>);

/// The CSV file of `what` for `range` in `user`'s scope (narrowed to `team`).
pub async fn export(
    state: &AppState,
    user: &AuthUser,
    what: Export,
    range: DateRange,
    team: Option<fieldsync_core::TeamId>,
) -> Result<Vec<u8>, ApiError> {
    let scope = Scope::of(state, user, team)?;
    let (rows, more) = load(&state.db, &scope, what, range)
        .await
        .map_err(ApiError::Unavailable)?;
    if rows.len() as i64 > MAX_ROWS {
        return Err(ApiError::BadRequest(format!(
            "the export would hold more than {MAX_ROWS} rows; export a shorter range"
        )));
    }
    let extra: std::collections::BTreeMap<String, MoreTuple> =
        more.into_iter().map(|m| (m.0.clone(), m)).collect();
    let now_ms = crate::db::now_secs().saturating_mul(1_000);
    let mut out = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| ApiError::Internal(anyhow::anyhow!("writing the CSV: {e}"));
    out.write_record(what.header()).map_err(fail)?;
    let text = |s: &Option<String>| cell(s.as_deref().unwrap_or("")).into_owned();
    let time = |ms: Option<i64>| ms.map(dates::rfc3339).unwrap_or_default();
    let num = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_default();
    for r in &rows {
        let (id, owner, owner_name, team_id, account, status, day, visit) =
            (&r.0, &r.1, &r.2, &r.3, &r.4, &r.5, &r.6, &r.7);
        let record: Vec<String> = match what {
            Export::Visits => {
                let on_site = match (r.10, r.11) {
                    (Some(i), Some(o)) => Some((o - i).max(0) / 60_000),
                    _ => None,
                };
                vec![
                    cell(id).into_owned(),
                    text(day),
                    text(owner),
                    text(owner_name),
                    text(team_id),
                    text(account),
                    text(status),
                    r.8.map(|p| p.to_string()).unwrap_or_default(),
                    time(r.9),
                    time(r.10),
                    time(r.11),
                    num(on_site),
                    text(&r.12),
                    text(&r.13),
                ]
            }
            Export::Orders => vec![
                cell(id).into_owned(),
                text(day),
                text(owner),
                text(owner_name),
                text(team_id),
                text(account),
                text(visit),
                text(status),
                text(&r.14),
                num(r.15),
                num(extra.get(id).and_then(|m| m.1)),
            ],
            Export::Jobs => {
                let m = extra.get(id);
                let created = m.and_then(|m| m.1);
                let completed = m.and_then(|m| m.2);
                let due = m.and_then(|m| m.3);
                let done = matches!(status.as_deref(), Some("completed" | "closed"));
                let breached = match (due, status.as_deref()) {
                    (None, _) | (_, Some("cancelled")) => false,
                    (Some(due), _) if done => completed.is_some_and(|c| c > due),
                    (Some(due), _) => now_ms > due,
                };
                vec![
                    cell(id).into_owned(),
                    time(created),
                    text(owner),
                    text(owner_name),
                    text(team_id),
                    text(account),
                    text(status),
                    time(due),
                    time(completed.filter(|_| done)),
                    num(created
                        .zip(completed.filter(|_| done))
                        .map(|(c, d)| (d - c).max(0) / 60_000)),
                    m.and_then(|m| m.4)
                        .map(|f| f.to_string())
                        .unwrap_or_default(),
                    breached.to_string(),
                ]
            }
        };
        out.write_record(&record).map_err(fail)?;
    }
    out.into_inner()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("writing the CSV: {e}")))
}

/// The rows of the export (at most one more than [`MAX_ROWS`]) and, for
/// orders and jobs, the columns that do not fit the first tuple.
async fn load(
    db: &crate::db::Database,
    scope: &Scope,
    what: Export,
    range: DateRange,
) -> Result<(Vec<FactTuple>, Vec<MoreTuple>), DbError> {
    let p = scope.caller.principals();
    let org = *scope.caller.org.as_uuid();
    let team = scope.team.map(|t| *t.as_uuid());
    let (from, to) = (range.from_text(), range.to_text());
    let filter = "f.org_id = $1 AND f.kind = $7 AND f.deleted = $8 AND f.day >= $9 \
         AND f.day <= $10 AND ($11 IS NULL OR f.team_id = $11) AND EXISTS (SELECT 1 FROM \
         record_scope s WHERE s.record_id = f.record_id AND s.principal IN ($2, $3, $4, $5, $6))";
    let main_sql = format!(
        "SELECT CAST(f.record_id AS TEXT), CAST(f.owner_id AS TEXT), u.display_name, \
         CAST(f.team_id AS TEXT), CAST(f.account_id AS TEXT), f.status, f.day, \
         CAST(f.visit_id AS TEXT), f.planned, f.planned_start_ms, f.check_in_ms, f.check_out_ms, \
         f.check_in_verdict, f.outcome, f.currency, f.net_minor \
         FROM record_facts f LEFT JOIN users u ON u.id = f.owner_id WHERE {filter} \
         ORDER BY f.day, f.record_id LIMIT $12"
    );
    let more_sql = format!(
        "SELECT CAST(f.record_id AS TEXT), \
         CASE WHEN f.kind = 'order' THEN f.total_minor ELSE f.created_ms END, \
         f.completed_ms, f.sla_due_ms, f.first_time_fix FROM record_facts f WHERE {filter} \
         ORDER BY f.day, f.record_id LIMIT $12"
    );
    let kind = what.kind();
    Ok(on_pool!(db, |pool, uuid| {
        let rows: Vec<FactTuple> = sqlx::query_as(sqlx::AssertSqlSafe(main_sql.as_str()))
            .bind(uuid(org))
            .bind(&p[0])
            .bind(&p[1])
            .bind(&p[2])
            .bind(&p[3])
            .bind(&p[4])
            .bind(kind)
            .bind(false)
            .bind(&from)
            .bind(&to)
            .bind(team.map(uuid))
            .bind(MAX_ROWS + 1)
            .fetch_all(pool)
            .await?;
        let more: Vec<MoreTuple> = if what == Export::Visits {
            Vec::new()
        } else {
            sqlx::query_as(sqlx::AssertSqlSafe(more_sql.as_str()))
                .bind(uuid(org))
                .bind(&p[0])
                .bind(&p[1])
                .bind(&p[2])
                .bind(&p[3])
                .bind(&p[4])
                .bind(kind)
                .bind(false)
                .bind(&from)
                .bind(&to)
                .bind(team.map(uuid))
                .bind(MAX_ROWS + 1)
                .fetch_all(pool)
                .await?
        };
        (rows, more)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_that_a_spreadsheet_would_run_are_defused() {
        for bad in [
            "=HYPERLINK(\"x\")",
            "+1+1",
            "-2+3",
            "@SUM(A1)",
            "\tx",
            "\rx",
        ] {
            assert_eq!(cell(bad), format!("'{bad}"), "{bad:?}");
        }
        for fine in ["Ana", "", "2026-11-30", "a=b", "'quoted"] {
            assert_eq!(cell(fine), fine);
        }
    }
}
