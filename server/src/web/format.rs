//! How the pages write times, money, verdicts and statuses, and read dates.
//!
//! Times are shown as the device saw them (its UTC offset at the moment),
//! which is what the rep and the customer saw on site.

use fieldsync_core::model::{DeviceTime, GeofenceVerdict, Money};

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// (year, month, day) → days since 1970-01-01 (`days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let (m, d) = (i64::from(m), i64::from(d));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The local wall-clock of a device time: (date, `HH:MM`).
fn local(t: DeviceTime) -> ((i64, u32, u32), String) {
    let ms = t
        .at_ms
        .saturating_add(i64::from(t.tz_offset_min).saturating_mul(60_000));
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000) / 60_000;
    (
        civil_from_days(days),
        format!("{:02}:{:02}", in_day / 60, in_day % 60),
    )
}

/// `2026-11-30`.
pub fn date(t: DeviceTime) -> String {
    let ((y, m, d), _) = local(t);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `14:05`.
pub fn clock(t: DeviceTime) -> String {
    local(t).1
}

/// `2026-11-30 14:05 UTC+01:00`.
pub fn date_time(t: DeviceTime) -> String {
    let off = t.tz_offset_min;
    let sign = if off < 0 { '-' } else { '+' };
    let off = off.unsigned_abs();
    format!(
        "{} {} UTC{sign}{:02}:{:02}",
        date(t),
        clock(t),
        off / 60,
        off % 60
    )
}

/// `2026-11-30` → ms at 00:00 UTC that day.
pub fn parse_date(text: &str) -> Option<i64> {
    let mut parts = text.trim().splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if !(1..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    // Refuses 2026-02-31 and the like: the day must round-trip.
    (civil_from_days(days) == (y, m, d)).then_some(days * 86_400_000)
}

/// Minor units per major unit of a currency (ISO 4217 exponent; 2 unless listed).
fn exponent(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// Minor units of `currency` as a number of major units (for charts).
pub fn major(minor: i64, currency: &str) -> f64 {
    minor as f64 / 10f64.powi(exponent(currency) as i32)
}

/// `1,234.50 EUR`.
pub fn money(m: &Money) -> String {
    amount(m.minor, &m.currency)
}

/// Minor units of `currency` as `1,234.50 EUR`.
pub fn amount(minor: i64, currency: &str) -> String {
    let exp = exponent(currency);
    let scale = 10u64.pow(exp);
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let whole = (abs / scale).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if exp == 0 {
        format!("{sign}{grouped} {currency}")
    } else {
        let frac = abs % scale;
        format!(
            "{sign}{grouped}.{frac:0width$} {currency}",
            width = exp as usize
        )
    }
}

/// Several currencies' amounts, or a dash.
pub fn money_list(values: &[Money]) -> String {
    if values.is_empty() {
        return "—".to_owned();
    }
    values.iter().map(money).collect::<Vec<_>>().join(" + ")
}

/// A quantity without trailing zeros: `2`, `2.5`, `0.125`.
pub fn qty(q: fieldsync_core::model::Qty) -> String {
    let text = q.to_string();
    match text.split_once('.') {
        Some((whole, frac)) if frac.trim_end_matches('0').is_empty() => whole.to_owned(),
        Some((whole, frac)) => format!("{whole}.{}", frac.trim_end_matches('0')),
        None => text,
    }
}

/// A verdict in words.
pub fn verdict(v: GeofenceVerdict) -> &'static str {
    match v {
        GeofenceVerdict::Inside => "Inside geofence",
        GeofenceVerdict::Outside => "Outside geofence",
        GeofenceVerdict::UnverifiableOffline => "No GPS fix",
        GeofenceVerdict::NoSiteCoords => "Site has no coordinates",
    }
}

/// Every verdict, with its stable name, for filters.
pub const VERDICTS: [GeofenceVerdict; 4] = [
    GeofenceVerdict::Inside,
    GeofenceVerdict::Outside,
    GeofenceVerdict::UnverifiableOffline,
    GeofenceVerdict::NoSiteCoords,
];

/// A status name in words (`changes_requested` → `Changes requested`).
pub fn status(name: &str) -> String {
    let words = name.replace('_', " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A byte count in words.
pub fn bytes(n: i64) -> String {
    let n = n.max(0) as f64;
    if n < 1024.0 {
        format!("{n} bytes")
    } else if n < 1024.0 * 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else {
        format!("{:.1} MiB", n / (1024.0 * 1024.0))
    }
}

/// A rate as a whole percentage (`67 %`), or a dash when there is nothing to
/// divide by.
pub fn percent(rate: Option<f64>) -> String {
    match rate {
        Some(r) if r.is_finite() => format!("{:.0} %", r * 100.0),
        _ => "—".to_owned(),
    }
}

/// A duration given in minutes: `45 min`, `2 h 05 min`.
pub fn minutes(min: f64) -> String {
    if !min.is_finite() || min < 0.0 {
        return "—".to_owned();
    }
    let whole = min.round() as i64;
    if whole < 60 {
        format!("{whole} min")
    } else {
        format!("{} h {:02} min", whole / 60, whole % 60)
    }
}

/// An age given in seconds, in its largest unit: `40 s`, `12 min`, `3 h`, `2 d 4 h`.
pub fn age(secs: i64) -> String {
    let s = secs.max(0);
    if s < 60 {
        format!("{s} s")
    } else if s < 3_600 {
        format!("{} min", s / 60)
    } else if s < 86_400 {
        format!("{} h", s / 3_600)
    } else {
        format!("{} d {} h", s / 86_400, (s % 86_400) / 3_600)
    }
}

/// The last 8 characters of an id (time-ordered ids share their first ones),
/// for tables; the whole id goes in a `title`.
pub fn short_id(id: &str) -> String {
    let n = id.chars().count();
    id.chars().skip(n.saturating_sub(8)).collect()
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `n` with the singular or plural noun: "1 order", "3 orders".
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_impossible_days_are_refused() {
        let ms = parse_date("2026-11-30").expect("date");
        assert_eq!(date(DeviceTime::utc(ms)), "2026-11-30");
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(
            parse_date("2024-02-29").map(|ms| ms / 86_400_000),
            Some(19_782)
        );
        assert_eq!(parse_date("2026-02-31"), None);
        assert_eq!(parse_date("yesterday"), None);
        assert_eq!(parse_date("2026-13-01"), None);
    }

    #[test]
    fn times_show_the_devices_wall_clock_and_offset() {
        // 2026-11-30 23:30 UTC seen from UTC+01:00 is the next day.
        let ms = parse_date("2026-11-30").expect("date") + (23 * 60 + 30) * 60_000;
        let t = DeviceTime {
            at_ms: ms,
            tz_offset_min: 60,
        };
        assert_eq!(date_time(t), "2026-12-01 00:30 UTC+01:00");
        let west = DeviceTime {
            at_ms: ms,
            tz_offset_min: -330,
        };
        assert_eq!(date_time(west), "2026-11-30 18:00 UTC-05:30");
    }

    #[test]
    fn money_uses_the_currencys_decimals_and_groups_thousands() {
        assert_eq!(amount(1_234_567, "EUR"), "12,345.67 EUR");
        assert_eq!(amount(-5, "EUR"), "-0.05 EUR");
        assert_eq!(amount(1500, "JPY"), "1,500 JPY");
        assert_eq!(amount(1_500, "KWD"), "1.500 KWD");
        assert_eq!(money_list(&[]), "—");
        use fieldsync_core::model::Qty;
        assert_eq!(qty(Qty::units(2)), "2");
        assert_eq!(qty(Qty(12_500)), "1.25");
        assert_eq!(qty(Qty(-5)), "-0.0005");
    }

    #[test]
    fn rates_durations_and_ages_read_as_words() {
        assert_eq!(percent(Some(2.0 / 3.0)), "67 %");
        assert_eq!(percent(Some(1.0)), "100 %");
        assert_eq!(percent(None), "—");
        assert_eq!(percent(Some(f64::NAN)), "—");
        assert_eq!(minutes(44.6), "45 min");
        assert_eq!(minutes(125.0), "2 h 05 min");
        assert_eq!(minutes(-1.0), "—");
        assert_eq!(age(-5), "0 s");
        assert_eq!(age(59), "59 s");
        assert_eq!(age(720), "12 min");
        assert_eq!(age(3 * 3_600 + 59), "3 h");
        assert_eq!(age(2 * 86_400 + 4 * 3_600 + 100), "2 d 4 h");
        assert_eq!(short_id("0192f3a4-7b1c-7def-8abc-1234567890ab"), "567890ab");
        assert_eq!(short_id("abc"), "abc");
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            query_escape("/web/inbox?a=1&b"),
            "%2Fweb%2Finbox%3Fa%3D1%26b"
        );
        assert_eq!(status("changes_requested"), "Changes requested");
    }

    #[test]
    fn counts_take_the_plural_except_for_one() {
        assert_eq!(count(0, "order", "orders"), "0 orders");
        assert_eq!(count(1, "order", "orders"), "1 order");
        assert_eq!(
            count(2, "open conflict", "open conflicts"),
            "2 open conflicts"
        );
    }
}
