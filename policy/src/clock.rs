//! The claim timestamp: RFC 3339 in UTC with second precision, without a date library in the
//! module.

/// The current time as RFC 3339 with second precision (UTC), e.g. `2026-11-28T17:00:00Z`.
pub fn now_rfc3339() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339_utc(seconds)
}

/// Seconds since the Unix epoch as RFC 3339 in UTC with second precision, e.g.
/// `2026-11-28T17:00:00Z` (years past 9999 are clamped to the end of 9999).
pub fn rfc3339_utc(seconds: u64) -> String {
    // 9999-12-31T23:59:59Z, the last instant with a four-digit year.
    let seconds = seconds.min(253_402_300_799);
    let (days, secs) = (seconds / 86_400, seconds % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant, "chrono-Compatible Low-Level Date
    // Algorithms"), in 400-year eras starting on March 1st.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3_600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339_utc;

    #[test]
    fn rfc3339_matches_jiff() {
        let mut seconds: Vec<u64> = vec![0, 59, 86_399, 86_400, 951_782_400, 1_795_885_200];
        // Every day from 1970 to 2400 at a varying time of day, leap years and centuries included.
        seconds.extend((0..157_000u64).map(|day| day * 86_400 + (day * 7_919) % 86_400));
        for s in seconds {
            let want = jiff::Timestamp::from_second(i64::try_from(s).unwrap_or(i64::MAX))
                .map(|t| t.to_string())
                .unwrap_or_default();
            assert_eq!(rfc3339_utc(s), want, "{s}");
        }
        assert_eq!(rfc3339_utc(1_795_885_200), "2026-11-28T17:00:00Z");
        assert_eq!(rfc3339_utc(u64::MAX), "9999-12-31T23:59:59Z");
    }
}
