//! Times for seeded records and tokens.

use std::time::{SystemTime, UNIX_EPOCH};

use fieldsync_core::model::DeviceTime;

/// `hour` hours after the start of today (UTC): inside every role's download
/// window.
pub fn today(hour: i64) -> DeviceTime {
    let now = DeviceTime::now_utc().at_ms;
    DeviceTime::utc(now - now.rem_euclid(86_400_000) + hour * 3_600_000)
}

/// Seconds since the Unix epoch, now (for token claims).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        .try_into()
        .expect("seconds")
}
