//! Download scope over time: which dated records reach a role's devices.
//!
//! Who may read a record at all is decided by its principals (see
//! `db::records`). On top of that, the *dated* records — visits, orders,
//! visit reports, assignments and checklist responses (`RecordKind::is_dated`
//! in the shared model) — reach a device only
//! while their date lies in the role's window: by default, for reps and
//! technicians, from the start of yesterday to the end of the seventh day ahead
//! (UTC days); managers and administrators get
//! every date. Each role's window is set in the settings file:
//!
//! ```toml
//! [scope.rep]
//! days_back = 1
//! days_ahead = 7
//!
//! [scope.manager]
//! days_back = 60     # omit a side for no limit on it
//! ```
//!
//! A record's date (its *anchor*) is its planned or scheduled start; a record
//! without one (an order, a visit report, a checklist response) takes its
//! parent visit's or job's, else the time the server first stored it. The
//! window limits downloads only: a device may always push changes to records it
//! holds, whatever their date.
//!
//! The window moves a whole day at a time, so a device's window changes at most
//! once a day. A pull names the window the device last received; the server
//! sends the whole history of the records that entered since, and names those
//! that left in `removed` (the device drops them unless they hold unsynced
//! changes).
//!
//! **Reference records.** A rep about to call on a customer wants to know what
//! happened there last time, even when a colleague made that visit or it lies
//! before the window. So a caller with a window also receives, read-only, the
//! last `history_per_account` (default 3) completed visits and completed or
//! closed jobs of every account it has a visit or an assignment at in its
//! window (`db::history`, `service::history`):
//!
//! ```toml
//! [scope]
//! history_per_account = 5   # 0: none
//! ```

use fieldsync_core::model::Role;
use fieldsync_core::protocol::ScopeWindow;
use serde::Deserialize;

/// One day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// Longest window side accepted in the settings (ten years).
const MAX_DAYS: u32 = 3_650;

/// Most reference visits (and jobs) per account accepted in the settings.
const MAX_HISTORY: u32 = 50;

/// How far around today one role's dated records reach. A side left out has no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleWindow {
    /// Whole days before today (1: from the start of yesterday).
    pub days_back: Option<u32>,
    /// Whole days after today (7: to the end of the seventh day ahead).
    pub days_ahead: Option<u32>,
}

impl RoleWindow {
    /// Both sides limited.
    pub const fn days(back: u32, ahead: u32) -> Self {
        RoleWindow {
            days_back: Some(back),
            days_ahead: Some(ahead),
        }
    }

    /// The window on the UTC day of `now_ms`; `None` when neither side is limited.
    pub fn at(&self, now_ms: i64) -> Option<ScopeWindow> {
        if self.days_back.is_none() && self.days_ahead.is_none() {
            return None;
        }
        let today = now_ms.div_euclid(DAY_MS) * DAY_MS;
        Some(ScopeWindow {
            from_ms: self.days_back.map_or(i64::MIN, |d| {
                today.saturating_sub(i64::from(d).saturating_mul(DAY_MS))
            }),
            to_ms: self.days_ahead.map_or(i64::MAX, |d| {
                today.saturating_add((i64::from(d) + 1).saturating_mul(DAY_MS))
            }),
        })
    }
}

/// The windows of the roles that have one. Administrators (and the server)
/// always read every date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScopeSettings {
    /// Field sales reps.
    pub rep: RoleWindow,
    /// Service technicians.
    pub technician: RoleWindow,
    /// Managers (their team's records).
    pub manager: RoleWindow,
    /// For callers with a window: how many of the latest finished visits, and
    /// how many of the latest finished jobs, of each account they work at in
    /// their window reach their devices for reference, read-only, beyond their
    /// own scope (0: none). See `db::history`.
    pub history_per_account: u32,
}

impl Default for ScopeSettings {
    fn default() -> Self {
        ScopeSettings {
            rep: RoleWindow::days(1, 7),
            technician: RoleWindow::days(1, 7),
            manager: RoleWindow::default(),
            history_per_account: 3,
        }
    }
}

impl ScopeSettings {
    /// The window of `role` on the UTC day of `now_ms` (`None`: every date).
    pub fn window(&self, role: Role, now_ms: i64) -> Option<ScopeWindow> {
        match role {
            Role::Rep => self.rep.at(now_ms),
            Role::Technician => self.technician.at(now_ms),
            Role::Manager => self.manager.at(now_ms),
            Role::Admin | Role::Server => None,
        }
    }

    /// Refuses windows longer than ten years a side.
    pub fn validate(&self) -> Result<(), String> {
        for (role, w) in [
            ("rep", self.rep),
            ("technician", self.technician),
            ("manager", self.manager),
        ] {
            for days in [w.days_back, w.days_ahead].into_iter().flatten() {
                if days > MAX_DAYS {
                    return Err(format!(
                        "scope.{role}: at most {MAX_DAYS} days a side; leave a side out for no limit"
                    ));
                }
            }
        }
        if self.history_per_account > MAX_HISTORY {
            return Err(format!(
                "scope.history_per_account: at most {MAX_HISTORY} visits and jobs per account"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOON_JAN_10: i64 = 9 * DAY_MS + DAY_MS / 2;

    #[test]
    fn the_default_rep_window_runs_from_yesterday_to_the_seventh_day_ahead() {
        let w = ScopeSettings::default()
            .window(Role::Rep, NOON_JAN_10)
            .expect("reps have a window");
        assert_eq!(w.from_ms, 8 * DAY_MS);
        assert_eq!(w.to_ms, 17 * DAY_MS);
        assert!(w.contains(8 * DAY_MS));
        assert!(!w.contains(8 * DAY_MS - 1));
        assert!(w.contains(17 * DAY_MS - 1));
        assert!(!w.contains(17 * DAY_MS));
    }

    #[test]
    fn the_window_is_the_same_all_day_and_moves_at_midnight() {
        let s = ScopeSettings::default();
        let morning = s.window(Role::Technician, 9 * DAY_MS);
        let night = s.window(Role::Technician, 10 * DAY_MS - 1);
        let next = s.window(Role::Technician, 10 * DAY_MS);
        assert_eq!(morning, night);
        assert_ne!(night, next);
    }

    #[test]
    fn managers_and_admins_read_every_date_by_default() {
        let s = ScopeSettings::default();
        assert_eq!(s.window(Role::Manager, NOON_JAN_10), None);
        assert_eq!(s.window(Role::Admin, NOON_JAN_10), None);
    }

    #[test]
    fn an_open_side_has_no_limit() {
        let w = RoleWindow {
            days_back: Some(60),
            days_ahead: None,
        }
        .at(NOON_JAN_10)
        .expect("one side limited");
        assert_eq!(w.to_ms, i64::MAX);
        assert!(w.contains(i64::MAX - 1));
        assert!(w.contains(-51 * DAY_MS));
        assert!(!w.contains(-51 * DAY_MS - 1));
    }

    #[test]
    fn settings_parse_from_toml_and_refuse_silly_windows() {
        let s: ScopeSettings = toml::from_str("[rep]\ndays_back = 2\ndays_ahead = 14\n")
            .expect("valid scope settings");
        assert_eq!(s.rep, RoleWindow::days(2, 14));
        assert_eq!(s.technician, RoleWindow::days(1, 7));
        assert!(toml::from_str::<ScopeSettings>("[rep]\nweeks = 2\n").is_err());
        let silly = ScopeSettings {
            rep: RoleWindow::days(0, 100_000),
            ..ScopeSettings::default()
        };
        assert!(silly.validate().is_err());
        let s: ScopeSettings =
            toml::from_str("history_per_account = 5\n").expect("valid scope settings");
        assert_eq!(s.history_per_account, 5);
        assert_eq!(ScopeSettings::default().history_per_account, 3);
        let greedy = ScopeSettings {
            history_per_account: 51,
            ..ScopeSettings::default()
        };
        assert!(greedy.validate().is_err());
    }
}
