//! Wall-clock helpers: unix milliseconds and RFC 3339 formatting.
//!
//! What this module owns: the one place that reads the system clock as unix
//! time, and the RFC 3339 (UTC, millisecond) rendering used in payloads and
//! the `dead-letters list` output. Civil-date conversion is done here rather
//! than pulling in a date crate for one function.
//!
//! Callers: intake (receive times), queue (due times), delivery (payloads,
//! latency), admin output.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time now, milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Unix time now, whole seconds.
pub fn now_secs() -> u64 {
    now_ms() / 1000
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a unix time in milliseconds.
pub fn rfc3339_from_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let millis = ms % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a unix time in seconds (negative = before
/// 1970), or `None` outside the years 0000..=9999 that RFC 3339 can write.
pub fn rfc3339_from_unix_secs(secs: i64) -> Option<String> {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return None;
    }
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    ))
}

/// Gregorian (year, month, day) of a day count since 1970-01-01, using the
/// era/day-of-era decomposition (400-year cycles of 146097 days).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // shift the epoch to 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1
    let mp = (5 * doy + 2) / 153; // month from March [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_from_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_from_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_from_ms(1_614_265_330_123), "2021-02-25T15:02:10.123Z");
        assert_eq!(rfc3339_from_ms(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn unix_seconds_render_without_millis_and_out_of_range_is_none() {
        assert_eq!(rfc3339_from_unix_secs(1_614_265_330).as_deref(), Some("2021-02-25T15:02:10Z"));
        assert_eq!(rfc3339_from_unix_secs(-1).as_deref(), Some("1969-12-31T23:59:59Z"));
        assert_eq!(rfc3339_from_unix_secs(253_402_300_799).as_deref(), Some("9999-12-31T23:59:59Z"));
        assert_eq!(rfc3339_from_unix_secs(253_402_300_800), None);
        assert_eq!(rfc3339_from_unix_secs(i64::MIN), None);
    }

    #[test]
    fn agrees_with_httpdate_on_the_day() {
        for secs in [0u64, 86_399, 1_000_000_000, 1_700_000_000, 2_000_000_000] {
            let http = httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_secs(secs));
            let ours = rfc3339_from_ms(secs * 1000);
            let day: u32 = ours[8..10].parse().unwrap();
            assert!(http.contains(&format!(" {day:02} ")), "{http} vs {ours}");
        }
    }
}
