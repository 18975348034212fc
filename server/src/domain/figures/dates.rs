//! Calendar arithmetic for the managers' figures: UTC days as `YYYY-MM-DD`,
//! converted to and from milliseconds since the epoch without a calendar
//! crate (proleptic Gregorian calendar, the civil-from-days algorithm).

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 of a civil date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are in range by construction (1..=31, 1..=12).
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

/// Parses `YYYY-MM-DD` into a day count; `None` for anything else (including
/// dates that do not exist, such as February 30th).
pub fn parse_day(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let num = |s: &str| -> Option<u32> {
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    let year = num(text.get(0..4)?)?;
    let month = num(text.get(5..7)?)?;
    let day = num(text.get(8..10)?)?;
    if !(1..=12).contains(&month) || day == 0 {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    // Round-trips only for dates that exist.
    (civil_from_days(days) == (i64::from(year), month, day)).then_some(days)
}

/// `YYYY-MM-DD` of a day count.
pub fn format_day(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The UTC day an instant falls on.
pub fn day_of_ms(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// An instant as RFC 3339 in UTC, to the second (`2026-11-30T09:05:00Z`).
pub fn rfc3339(ms: i64) -> String {
    let (y, m, d) = civil_from_days(day_of_ms(ms));
    let secs = ms.rem_euclid(DAY_MS) / 1_000;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip_through_their_names() {
        assert_eq!(parse_day("1970-01-01"), Some(0));
        assert_eq!(parse_day("2000-03-01"), Some(11_017));
        assert_eq!(format_day(11_016), "2000-02-29");
        for days in [-700_000, -1, 0, 59, 20_000, 2_932_896] {
            assert_eq!(parse_day(&format_day(days)), Some(days), "{days}");
        }
    }

    #[test]
    fn malformed_and_impossible_dates_are_refused() {
        for bad in [
            "",
            "2026-2-01",
            "2026-13-01",
            "2026-02-30",
            "2026-00-10",
            "20a6-01-01",
            "2026/01/01",
            "+026-01-01",
            "2026-01-001",
        ] {
            assert_eq!(parse_day(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn instants_print_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_764_493_500_000), "2025-11-30T09:05:00Z");
        assert_eq!(rfc3339(-1_000), "1969-12-31T23:59:59Z");
    }
}
