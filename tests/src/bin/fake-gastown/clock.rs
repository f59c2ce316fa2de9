//! Time as the real tools print it: Unix milliseconds, RFC 3339 (`bd --json`) and
//! `YYYY-MM-DD HH:MM:SS` (`gt polecat status --json`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Howard Hinnant's days-to-civil: (year, month, day) for days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn split_time(ms: u64) -> (i64, u32, u32, u64, u64, u64, u64) {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let (y, mo, d) = civil_from_days(days);
    let sod = secs % 86_400;
    (y, mo, d, sod / 3600, sod % 3600 / 60, sod % 60, ms % 1000)
}

/// RFC 3339 in UTC, with the fraction trimmed like Go's `RFC3339Nano` (as `bd --json` prints).
pub fn rfc3339(ms: u64) -> String {
    let (y, mo, d, h, mi, s, frac) = split_time(ms);
    let mut out = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
    if frac != 0 {
        let f = format!("{frac:03}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// `YYYY-MM-DD HH:MM:SS`, the format of `gt polecat status --json` times.
pub fn gt_time(ms: u64) -> String {
    let (y, mo, d, h, mi, s, _) = split_time(ms);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_500), "2000-02-29T00:00:00.5Z");
        assert_eq!(rfc3339(1_767_225_599_123), "2025-12-31T23:59:59.123Z");
        assert_eq!(gt_time(1_767_225_599_123), "2025-12-31 23:59:59");
    }
}
