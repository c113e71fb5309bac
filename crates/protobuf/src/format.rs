//! Text forms Go's JSON encoder uses for time types: RFC 3339 timestamps and
//! `time.Duration` strings.

use std::fmt::Write;

/// Seconds from the Unix epoch to Go's zero `time.Time` (0001-01-01T00:00:00Z), which
/// `metav1.Time` prints as `null`.
pub(crate) const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

/// Formats a UTC timestamp as RFC 3339: `2006-01-02T15:04:05Z`, or with
/// `Some(micros)` as `2006-01-02T15:04:05.000000Z`.
pub(crate) fn rfc3339(seconds: i64, micros: Option<u32>) -> String {
    let days = seconds.div_euclid(86_400);
    let secs_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mut out = String::with_capacity(32);
    if year < 0 {
        out.push('-');
    }
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        year.unsigned_abs(),
        month,
        day,
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60
    );
    if let Some(us) = micros {
        let _ = write!(out, ".{us:06}");
    }
    out.push('Z');
    out
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // day is in 1..=31 and month in 1..=12, so the conversions cannot fail.
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

/// Formats nanoseconds the way Go's `time.Duration.String` does: `1h2m3.5s`, `1.5ms`, `0s`.
pub(crate) fn go_duration(nanos: i64) -> String {
    let mut u = nanos.unsigned_abs();
    let mut out = String::new();
    if nanos < 0 {
        out.push('-');
    }
    if u < 1_000_000_000 {
        let (prec, unit) = match u {
            0 => return "0s".to_string(),
            1..=999 => (0, "ns"),
            1_000..=999_999 => (3, "µs"),
            _ => (6, "ms"),
        };
        let (int, frac) = split_fraction(u, prec);
        let _ = write!(out, "{int}{frac}{unit}");
        return out;
    }
    let frac;
    (u, frac) = split_fraction(u, 9);
    let (hours, minutes, seconds) = (u / 3600, u / 60 % 60, u % 60);
    if hours > 0 {
        let _ = write!(out, "{hours}h{minutes}m");
    } else if minutes > 0 {
        let _ = write!(out, "{minutes}m");
    }
    let _ = write!(out, "{seconds}{frac}s");
    out
}

/// Splits `value / 10^prec` into its integer part and a fraction such as `.25`
/// (empty when zero, trailing zeros removed).
fn split_fraction(value: u64, prec: u32) -> (u64, String) {
    let pow = 10u64.pow(prec);
    let (int, frac) = (value / pow, value % pow);
    if frac == 0 {
        return (int, String::new());
    }
    let digits = format!(".{frac:0width$}", width = prec as usize);
    (int, digits.trim_end_matches('0').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0, None), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000, None), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400, None), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(-1, Some(5)), "1969-12-31T23:59:59.000005Z");
        assert_eq!(rfc3339(GO_ZERO_TIME_SECONDS, None), "0001-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(253_402_300_799, Some(999_999)),
            "9999-12-31T23:59:59.999999Z"
        );
        // Extremes must not panic.
        let _ = rfc3339(i64::MIN, None);
        let _ = rfc3339(i64::MAX, Some(0));
    }

    #[test]
    fn durations() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(1), "1ns");
        assert_eq!(go_duration(1_500), "1.5µs");
        assert_eq!(go_duration(1_200_000), "1.2ms");
        assert_eq!(go_duration(1_000_000_000), "1s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(3_723_500_000_000), "1h2m3.5s");
        assert_eq!(go_duration(-2_000_000), "-2ms");
        assert_eq!(go_duration(i64::MIN), "-2562047h47m16.854775808s");
    }
}
