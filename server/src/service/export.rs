//! CSV export of visits, orders and service jobs for a range of UTC days.
//!
//! Rows come from `record_facts` (see [`super::analytics`]) in the caller's
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
use std::collections::BTreeMap;

use fieldsync_core::TeamId;
use fieldsync_core::model::{JobStatus, Status};

use super::Context;
use super::analytics::{DateRange, Scope};
use crate::db::export::{self as db_export, FactTuple, MoreTuple};
use crate::db::now_secs;
use crate::domain::figures::dates;
use crate::domain::{Caller, Error, Result};

/// Most rows one export holds.
pub const MAX_ROWS: i64 = 50_000;

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
    /// Every file.
    pub const ALL: [Export; 3] = [Export::Visits, Export::Orders, Export::Jobs];

    /// The file's name without range or extension.
    pub fn name(self) -> &'static str {
        match self {
            Export::Visits => "visits",
            Export::Orders => "orders",
            Export::Jobs => "jobs",
        }
    }

    /// The file named `file` (`visits.csv`, `orders.csv`, `jobs.csv`).
    pub fn from_file_name(file: &str) -> Option<Export> {
        let name = file.strip_suffix(".csv")?;
        Export::ALL.into_iter().find(|e| e.name() == name)
    }

    /// The name a download of `range` is saved under.
    pub fn file_name(self, range: &DateRange) -> String {
        format!(
            "{}-{}-{}.csv",
            self.name(),
            range.from_text(),
            range.to_text()
        )
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

/// The CSV file of `what` for `range` in `caller`'s scope (narrowed to `team`).
pub async fn export(
    ctx: &Context,
    caller: &Caller,
    what: Export,
    range: DateRange,
    team: Option<TeamId>,
) -> Result<Vec<u8>> {
    let scope = Scope::of(caller, team)?;
    let (rows, more) = db_export::rows(
        &ctx.db,
        &scope.caller,
        scope.team,
        what.kind(),
        &range.days(),
        MAX_ROWS + 1,
        what != Export::Visits,
    )
    .await?;
    if rows.len() as i64 > MAX_ROWS {
        return Err(Error::BadRequest(format!(
            "the export would hold more than {MAX_ROWS} rows; export a shorter range"
        )));
    }
    write_csv(what, &rows, more, now_secs().saturating_mul(1_000))
}

/// The file: a header row, then one row per fact row; `now_ms` decides
/// whether an open job is past its due time.
fn write_csv(
    what: Export,
    rows: &[FactTuple],
    more: Vec<MoreTuple>,
    now_ms: i64,
) -> Result<Vec<u8>> {
    let extra: BTreeMap<String, MoreTuple> = more.into_iter().map(|m| (m.0.clone(), m)).collect();
    let mut out = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| Error::internal(format!("writing the CSV: {e}"));
    out.write_record(what.header()).map_err(fail)?;
    let text = |s: &Option<String>| cell(s.as_deref().unwrap_or("")).into_owned();
    let time = |ms: Option<i64>| ms.map(dates::rfc3339).unwrap_or_default();
    let num = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_default();
    for r in rows {
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
                let done = status
                    .as_deref()
                    .and_then(|s| s.parse::<JobStatus>().ok())
                    .is_some_and(JobStatus::is_done);
                let breached = match (due, status.as_deref()) {
                    (None, _) => false,
                    (_, Some(s)) if s == JobStatus::Cancelled.as_str() => false,
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
        .map_err(|e| Error::internal(format!("writing the CSV: {e}")))
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

    #[test]
    fn files_are_named_by_kind_and_range() {
        let range = DateRange::parse("2026-11-01", "2026-11-07").expect("range");
        assert_eq!(
            Export::Orders.file_name(&range),
            "orders-2026-11-01-2026-11-07.csv"
        );
        assert_eq!(Export::from_file_name("jobs.csv"), Some(Export::Jobs));
        assert_eq!(Export::from_file_name("jobs"), None);
        assert_eq!(Export::from_file_name("users.csv"), None);
    }

    #[test]
    fn an_open_job_past_its_due_time_is_a_breach() {
        let job = |status: &str| -> FactTuple {
            (
                "j1".into(),
                Some("u".into()),
                Some("=cmd".into()),
                None,
                None,
                Some(status.into()),
                Some("2026-11-01".into()),
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
            )
        };
        let more = || vec![("j1".to_owned(), Some(0), None, Some(1_000), Some(true))];
        let csv = |status: &str, now_ms| {
            String::from_utf8(write_csv(Export::Jobs, &[job(status)], more(), now_ms).expect("csv"))
                .expect("utf-8")
        };
        let late = csv("open", 2_000);
        assert!(
            late.lines()
                .nth(1)
                .is_some_and(|l| l.ends_with(",true,true")),
            "{late}"
        );
        assert!(late.contains("'=cmd"), "a name cannot be a formula: {late}");
        let cancelled = csv("cancelled", 2_000);
        assert!(
            cancelled
                .lines()
                .nth(1)
                .is_some_and(|l| l.ends_with(",false")),
            "{cancelled}"
        );
    }
}
