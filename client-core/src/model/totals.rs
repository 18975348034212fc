//! Figures computed the same way on every device and on the server: order
//! totals, line totals, durations. The server recomputes every total a device
//! sends with these functions; the device shows the same numbers offline.

use super::types::DeviceTime;

/// Whole minutes from `start` to `end` (negative spans count as zero).
/// Device times are compared in UTC; the offsets only matter for display.
pub fn duration_minutes(start: DeviceTime, end: DeviceTime) -> i64 {
    (end.at_ms - start.at_ms).max(0) / 60_000
}
