//! The managers' figures, computed from fact rows (see [`super::facts`]) with
//! no I/O. Every figure is defined here and, in the same words, in
//! `docs/kpis.md`; a rate whose denominator is zero is `None` (JSON `null`),
//! never zero.
//!
//! The range is a list of whole UTC days, `from` and `to` included.

use std::collections::{BTreeMap, BTreeSet};

use fieldsync_core::model::{JobStatus, OrderStatus, Status, VisitStatus};
use serde::Serialize;

use super::dates::{DAY_MS, format_day};

/// A visit as the figures see it (a row of `record_facts`).
#[derive(Debug, Clone)]
pub struct VisitRow {
    /// The visit.
    pub id: String,
    /// Its rep.
    pub rep_id: String,
    /// The rep's name.
    pub rep_name: String,
    /// Its status.
    pub status: String,
    /// The UTC day it counts on.
    pub day: String,
    /// Planned (not ad hoc).
    pub planned: bool,
    /// Check-in, device time.
    pub check_in_ms: Option<i64>,
    /// Check-out, device time.
    pub check_out_ms: Option<i64>,
    /// Geofence verdict at check-in.
    pub check_in_verdict: Option<String>,
}

/// An order as the figures see it.
#[derive(Debug, Clone)]
pub struct OrderRow {
    /// The order.
    pub id: String,
    /// Its salesperson.
    pub rep_id: String,
    /// Their name.
    pub rep_name: String,
    /// Its status.
    pub status: String,
    /// The UTC day it counts on.
    pub day: Option<String>,
    /// The visit it was taken on.
    pub visit_id: Option<String>,
    /// Its currency.
    pub currency: String,
    /// Net amount, minor units.
    pub net_minor: i64,
}

/// A service job as the figures see it.
#[derive(Debug, Clone)]
pub struct JobRow {
    /// The job.
    pub id: String,
    /// Its status.
    pub status: String,
    /// Created, device time.
    pub created_ms: Option<i64>,
    /// Completed, device time.
    pub completed_ms: Option<i64>,
    /// SLA due.
    pub sla_due_ms: Option<i64>,
    /// Fixed on the first visit, when known.
    pub first_time_fix: Option<bool>,
    /// Start of the promised arrival window.
    pub window_start_ms: Option<i64>,
    /// End of the promised arrival window.
    pub window_end_ms: Option<i64>,
    /// First arrival on site, device time.
    pub first_arrived_ms: Option<i64>,
}

/// Order value in one currency.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct OrderValue {
    /// ISO 4217 code.
    pub currency: String,
    /// Taken orders counting on a day of the range.
    pub orders: u64,
    /// Their net value (after discounts, before tax), minor units.
    pub total_minor: i64,
    /// Net value of the taken orders linked to the completed visits of the
    /// range, divided by the number of those visits (minor units).
    pub per_visit_minor: Option<f64>,
}

/// Visit figures of a team or of one rep.
#[derive(Debug, Clone, PartialEq, Serialize, Default, utoipa::ToSchema)]
pub struct VisitFigures {
    /// Planned visits of the range, cancelled ones left out.
    pub planned: u64,
    /// Of those, the completed ones.
    pub planned_completed: u64,
    /// `planned_completed / planned`.
    pub compliance: Option<f64>,
    /// Completed visits of the range (planned and ad hoc).
    pub completed: u64,
    /// Completed visits with at least one taken order linked to them.
    pub with_order: u64,
    /// `with_order / completed`.
    pub strike_rate: Option<f64>,
    /// Completed visits with both check-in and check-out.
    pub timed: u64,
    /// Their time on site, summed (whole minutes per visit).
    pub time_on_site_min_total: i64,
    /// `time_on_site_min_total / timed`.
    pub time_on_site_min_mean: Option<f64>,
    /// Visits of the range with a check-in (any status).
    pub checked_in: u64,
    /// Of those, checked in outside the site's geofence.
    pub outside_geofence: u64,
    /// Of those, whose position could not be checked (no fix, no site coordinates).
    pub unverified_geofence: u64,
    /// Order value per currency.
    pub order_value: Vec<OrderValue>,
}

/// One rep's figures.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RepFigures {
    /// The rep.
    pub rep_id: String,
    /// Their name.
    pub rep_name: String,
    /// Completed visits per day, aligned with [`Figures::days`].
    pub visits_per_day: Vec<u64>,
    /// `completed / number of days in the range`.
    pub visits_per_day_mean: f64,
    /// The rep's visit figures.
    #[serde(flatten)]
    pub visits: VisitFigures,
}

/// Service job figures.
#[derive(Debug, Clone, PartialEq, Serialize, Default, utoipa::ToSchema)]
pub struct JobFigures {
    /// Jobs created before the end of the range that are open now (`open`,
    /// `scheduled` or `in_progress`).
    pub open: u64,
    /// Jobs completed during the range (`completed` or `closed` now).
    pub closed: u64,
    /// Mean of creation to completion over the closed jobs, in minutes.
    pub mean_time_to_complete_min: Option<f64>,
    /// Closed jobs whose technician said whether it was fixed on the first visit.
    pub first_time_fix_known: u64,
    /// Of those, fixed on the first visit.
    pub first_time_fixed: u64,
    /// `first_time_fixed / first_time_fix_known`.
    pub first_time_fix_rate: Option<f64>,
    /// Jobs due (SLA) during the range, not cancelled, completed after the due
    /// time or not completed while it has passed.
    pub sla_breaches: u64,
    /// Jobs whose first arrival on site falls in the range and that had a
    /// promised arrival window.
    pub promises_known: u64,
    /// Of those, the first arrival was outside the window (a broken promise).
    pub broken_promises: u64,
}

/// Every figure of the range.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Figures {
    /// The days of the range, `YYYY-MM-DD`.
    pub days: Vec<String>,
    /// The team's (or the organisation's) visit figures.
    pub visits: VisitFigures,
    /// Per rep, by name.
    pub reps: Vec<RepFigures>,
    /// Service jobs.
    pub jobs: JobFigures,
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// Computes the figures of the days `first_day..=last_day` (day counts since
/// the epoch) at instant `now_ms`. `visits` and `orders` may hold rows outside
/// the range (orders of the range's visits that count on another day): they
/// are filtered here.
pub fn compute(
    first_day: i64,
    last_day: i64,
    now_ms: i64,
    visits: &[VisitRow],
    orders: &[OrderRow],
    jobs: &[JobRow],
) -> Figures {
    let days: Vec<String> = (first_day..=last_day).map(format_day).collect();
    let in_range = |day: &str| {
        days.first().is_some_and(|f| day >= f.as_str())
            && days.last().is_some_and(|l| day <= l.as_str())
    };
    let visits: Vec<&VisitRow> = visits.iter().filter(|v| in_range(&v.day)).collect();
    let taken: Vec<&OrderRow> = orders.iter().filter(|o| taken(&o.status)).collect();

    let team = visit_figures(&visits, &taken, &in_range, None);
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for v in &visits {
        names.insert(v.rep_id.clone(), v.rep_name.clone());
    }
    for o in taken
        .iter()
        .filter(|o| o.day.as_deref().is_some_and(in_range))
    {
        names.insert(o.rep_id.clone(), o.rep_name.clone());
    }
    let mut reps: Vec<RepFigures> = names
        .into_iter()
        .map(|(rep_id, rep_name)| {
            let figures = visit_figures(&visits, &taken, &in_range, Some(&rep_id));
            let visits_per_day = days
                .iter()
                .map(|d| {
                    visits
                        .iter()
                        .filter(|v| {
                            v.rep_id == rep_id
                                && v.status == VisitStatus::Completed.as_str()
                                && &v.day == d
                        })
                        .count() as u64
                })
                .collect();
            RepFigures {
                visits_per_day_mean: figures.completed as f64 / days.len().max(1) as f64,
                rep_id,
                rep_name,
                visits_per_day,
                visits: figures,
            }
        })
        .collect();
    reps.sort_by(|a, b| (&a.rep_name, &a.rep_id).cmp(&(&b.rep_name, &b.rep_id)));

    let from_ms = first_day.saturating_mul(DAY_MS);
    let end_ms = last_day.saturating_add(1).saturating_mul(DAY_MS);
    Figures {
        days,
        visits: team,
        reps,
        jobs: job_figures(jobs, from_ms, end_ms, now_ms),
    }
}

fn visit_figures(
    visits: &[&VisitRow],
    taken: &[&OrderRow],
    in_range: &dyn Fn(&str) -> bool,
    rep: Option<&str>,
) -> VisitFigures {
    let mine = |id: &str| rep.is_none_or(|r| r == id);
    let visits: Vec<&&VisitRow> = visits.iter().filter(|v| mine(&v.rep_id)).collect();
    let completed: Vec<&&&VisitRow> = visits
        .iter()
        .filter(|v| v.status == VisitStatus::Completed.as_str())
        .collect();
    let planned: Vec<&&&VisitRow> = visits
        .iter()
        .filter(|v| v.planned && v.status != VisitStatus::Cancelled.as_str())
        .collect();
    let planned_completed = planned
        .iter()
        .filter(|v| v.status == VisitStatus::Completed.as_str())
        .count() as u64;
    let completed_ids: BTreeSet<&str> = completed.iter().map(|v| v.id.as_str()).collect();
    let linked: Vec<&&OrderRow> = taken
        .iter()
        .filter(|o| {
            o.visit_id
                .as_deref()
                .is_some_and(|v| completed_ids.contains(v))
        })
        .collect();
    let with_order = completed
        .iter()
        .filter(|v| {
            linked
                .iter()
                .any(|o| o.visit_id.as_deref() == Some(v.id.as_str()))
        })
        .count() as u64;
    let durations: Vec<i64> = completed
        .iter()
        .filter_map(|v| match (v.check_in_ms, v.check_out_ms) {
            (Some(i), Some(o)) => Some((o - i).max(0) / 60_000),
            _ => None,
        })
        .collect();
    let checked_in: Vec<&&&VisitRow> = visits.iter().filter(|v| v.check_in_ms.is_some()).collect();
    let verdict = |v: &VisitRow, names: &[&str]| {
        v.check_in_verdict
            .as_deref()
            .is_some_and(|x| names.contains(&x))
    };

    let mut values: BTreeMap<&str, OrderValue> = BTreeMap::new();
    let completed_n = completed.len() as u64;
    for o in taken
        .iter()
        .filter(|o| mine(&o.rep_id) && o.day.as_deref().is_some_and(in_range))
    {
        let entry = values
            .entry(&o.currency)
            .or_insert_with(|| empty(&o.currency));
        entry.orders += 1;
        entry.total_minor = entry.total_minor.saturating_add(o.net_minor);
    }
    let mut linked_value: BTreeMap<&str, i64> = BTreeMap::new();
    for o in &linked {
        let sum = linked_value.entry(o.currency.as_str()).or_default();
        *sum = sum.saturating_add(o.net_minor);
    }
    for (currency, sum) in linked_value {
        values
            .entry(currency)
            .or_insert_with(|| empty(currency))
            .per_visit_minor = (completed_n > 0).then(|| sum as f64 / completed_n as f64);
    }
    for v in values.values_mut() {
        if v.per_visit_minor.is_none() && completed_n > 0 {
            v.per_visit_minor = Some(0.0);
        }
    }

    let total: i64 = durations.iter().sum();
    VisitFigures {
        planned: planned.len() as u64,
        planned_completed,
        compliance: ratio(planned_completed, planned.len() as u64),
        completed: completed_n,
        with_order,
        strike_rate: ratio(with_order, completed_n),
        timed: durations.len() as u64,
        time_on_site_min_total: total,
        time_on_site_min_mean: (!durations.is_empty())
            .then(|| total as f64 / durations.len() as f64),
        checked_in: checked_in.len() as u64,
        outside_geofence: checked_in
            .iter()
            .filter(|v| verdict(v, &["outside"]))
            .count() as u64,
        unverified_geofence: checked_in
            .iter()
            .filter(|v| verdict(v, &["unverifiable_offline", "no_site_coords"]))
            .count() as u64,
        order_value: values.into_values().collect(),
    }
}

fn empty(currency: &str) -> OrderValue {
    OrderValue {
        currency: currency.to_owned(),
        orders: 0,
        total_minor: 0,
        per_visit_minor: None,
    }
}

fn job_figures(jobs: &[JobRow], from_ms: i64, end_ms: i64, now_ms: i64) -> JobFigures {
    let during = |ms: Option<i64>| ms.is_some_and(|ms| from_ms <= ms && ms < end_ms);
    let open = jobs
        .iter()
        .filter(|j| job_status(&j.status).is_some_and(JobStatus::is_open))
        .filter(|j| j.created_ms.is_none_or(|c| c < end_ms))
        .count() as u64;
    let closed: Vec<&JobRow> = jobs
        .iter()
        .filter(|j| job_status(&j.status).is_some_and(JobStatus::is_done) && during(j.completed_ms))
        .collect();
    let spans: Vec<i64> = closed
        .iter()
        .filter_map(|j| Some((j.completed_ms? - j.created_ms?).max(0)))
        .collect();
    let known = closed.iter().filter(|j| j.first_time_fix.is_some()).count() as u64;
    let fixed = closed
        .iter()
        .filter(|j| j.first_time_fix == Some(true))
        .count() as u64;
    let sla_breaches = jobs
        .iter()
        .filter(|j| during(j.sla_due_ms))
        .filter(|j| {
            job_status(&j.status).is_some_and(|s| {
                crate::domain::jobs::sla_breached(s, j.sla_due_ms, j.completed_ms, now_ms)
            })
        })
        .count() as u64;
    let promised: Vec<bool> = jobs
        .iter()
        .filter(|j| during(j.first_arrived_ms))
        .filter_map(|j| {
            crate::domain::jobs::promise_kept(
                j.first_arrived_ms,
                j.window_start_ms,
                j.window_end_ms,
            )
        })
        .collect();
    JobFigures {
        promises_known: promised.len() as u64,
        broken_promises: promised.iter().filter(|kept| !**kept).count() as u64,
        open,
        closed: closed.len() as u64,
        mean_time_to_complete_min: (!spans.is_empty())
            .then(|| spans.iter().sum::<i64>() as f64 / spans.len() as f64 / 60_000.0),
        first_time_fix_known: known,
        first_time_fixed: fixed,
        first_time_fix_rate: ratio(fixed, known),
        sla_breaches,
    }
}

/// Whether an order in `status` counts as taken (the model's
/// [`OrderStatus::is_taken`]); an unknown name does not.
fn taken(status: &str) -> bool {
    status
        .parse::<OrderStatus>()
        .is_ok_and(OrderStatus::is_taken)
}

/// A job's status by its stored name.
fn job_status(status: &str) -> Option<JobStatus> {
    status.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visit(id: &str, rep: &str, status: &str, day: &str, planned: bool) -> VisitRow {
        VisitRow {
            id: id.into(),
            rep_id: rep.into(),
            rep_name: rep.into(),
            status: status.into(),
            day: day.into(),
            planned,
            check_in_ms: None,
            check_out_ms: None,
            check_in_verdict: None,
        }
    }

    #[test]
    fn empty_ranges_give_no_rates_rather_than_zero() {
        let f = compute(20_000, 20_001, 0, &[], &[], &[]);
        assert_eq!(f.days.len(), 2);
        assert_eq!(f.visits.compliance, None);
        assert_eq!(f.visits.strike_rate, None);
        assert_eq!(f.jobs.first_time_fix_rate, None);
        assert!(f.reps.is_empty());
    }

    #[test]
    fn cancelled_visits_leave_compliance_and_visits_outside_the_range_count_nowhere() {
        let day = format_day(20_000);
        let rows = [
            visit("a", "r", "completed", &day, true),
            visit("b", "r", "planned", &day, true),
            visit("c", "r", "cancelled", &day, true),
            visit("d", "r", "completed", &format_day(20_005), true),
        ];
        let f = compute(20_000, 20_000, 0, &rows, &[], &[]);
        assert_eq!((f.visits.planned, f.visits.planned_completed), (2, 1));
        assert_eq!(f.visits.compliance, Some(0.5));
        assert_eq!(f.reps[0].visits_per_day, vec![1]);
    }

    #[test]
    fn a_job_completed_after_its_due_time_is_a_breach_and_one_on_time_is_not() {
        let job = |id: &str, done: Option<i64>, due: i64| JobRow {
            id: id.into(),
            status: if done.is_some() {
                "completed"
            } else {
                "in_progress"
            }
            .into(),
            created_ms: Some(0),
            completed_ms: done,
            sla_due_ms: Some(due),
            first_time_fix: done.map(|_| true),
            window_start_ms: Some(0),
            window_end_ms: Some(DAY_MS),
            first_arrived_ms: done.map(|d| d - DAY_MS),
        };
        let jobs = [
            job("late", Some(5 * DAY_MS), 4 * DAY_MS),
            job("on-time", Some(3 * DAY_MS), 4 * DAY_MS),
            job("overdue", None, 4 * DAY_MS),
        ];
        let f = job_figures(&jobs, 0, 10 * DAY_MS, 6 * DAY_MS);
        assert_eq!(f.sla_breaches, 2);
        // Arrivals a day before completion: days 4 and 2, both outside the
        // window of day 0 to day 1.
        assert_eq!((f.promises_known, f.broken_promises), (2, 2));
        assert_eq!(f.closed, 2);
        assert_eq!(f.open, 1);
        assert_eq!(
            f.mean_time_to_complete_min,
            Some(4.0 * DAY_MS as f64 / 60_000.0)
        );
    }
}
