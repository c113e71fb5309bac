//! CronJob schedules as upstream parses them (robfig/cron's `ParseStandard`):
//! five fields (minute, hour, day of month, month, day of week) with lists,
//! ranges, steps and names, or a descriptor (`@hourly`, `@daily`, ...), and
//! the next activation after a time, in a time zone. Error texts are robfig's,
//! since upstream puts them in its validation messages.

use k8s_openapi::jiff::civil::{Date, DateTime};
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{Timestamp, ToSpan};

/// A parsed schedule: one bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    /// robfig's "star bit": a `*` or `?` day field, which makes the other day
    /// field alone decide (else a day matches either field).
    dom_star: bool,
    dow_star: bool,
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

fn parse_int(expr: &str, s: &str) -> Result<u32, String> {
    let n: i64 = s.parse().map_err(|_| {
        format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax")
    })?;
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {expr}"));
    }
    u32::try_from(n).map_err(|_| format!("failed to parse int from {s}: value out of range"))
}

fn value(expr: &str, s: &str, b: &Bounds) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = b.names.iter().position(|n| *n == lower) {
        let i = u32::try_from(i).unwrap_or(0);
        return Ok(if b.min == 1 { i + 1 } else { i });
    }
    parse_int(expr, s)
}

/// One comma-separated term: `*`, `?`, `n`, `a-b`, each with an optional `/step`.
fn range(expr: &str, b: &Bounds) -> Result<(u64, bool), String> {
    let parts: Vec<&str> = expr.split('/').collect();
    let bounds: Vec<&str> = parts[0].split('-').collect();
    let single = bounds.len() == 1;
    let (start, mut end, mut star) = if bounds[0] == "*" || bounds[0] == "?" {
        (b.min, b.max, true)
    } else {
        let start = value(expr, bounds[0], b)?;
        let end = match bounds.len() {
            1 => start,
            2 => value(expr, bounds[1], b)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
        (start, end, false)
    };
    let step = match parts.len() {
        1 => 1,
        2 => {
            let s = parse_int(expr, parts[1])?;
            // "n/step" means n through the maximum.
            if single && !star {
                end = b.max;
            }
            if s > 1 {
                star = false;
            }
            s
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < b.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    let mut bits = 0u64;
    let mut v = start;
    while v <= end {
        bits |= 1 << v;
        v += step;
    }
    Ok((bits, star))
}

fn field(expr: &str, b: &Bounds) -> Result<(u64, bool), String> {
    let mut bits = 0;
    let mut star = false;
    for term in expr.split(',') {
        let (b2, s) = range(term, b)?;
        bits |= b2;
        star |= s;
    }
    Ok((bits, star))
}

impl Schedule {
    /// Parses a standard five-field spec or a descriptor.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err("empty spec string".into());
        }
        if spec.starts_with('@') {
            return Self::descriptor(spec);
        }
        let fields: Vec<&str> = spec.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: [{}]",
                fields.len(),
                fields.join(" ")
            ));
        }
        let (minute, _) = field(fields[0], &MINUTES)?;
        let (hour, _) = field(fields[1], &HOURS)?;
        let (dom, dom_star) = field(fields[2], &DOM)?;
        let (month, _) = field(fields[3], &MONTHS)?;
        let (dow, dow_star) = field(fields[4], &DOW)?;
        Ok(Schedule {
            minute,
            hour,
            dom,
            month,
            dow,
            dom_star,
            dow_star,
        })
    }

    fn descriptor(spec: &str) -> Result<Self, String> {
        let five = match spec {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            _ if spec.starts_with("@every ") => {
                return Err(format!(
                    "failed to parse duration {spec}: @every is not supported by skiff"
                ))
            }
            _ => return Err(format!("unrecognized descriptor: {spec}")),
        };
        Self::parse(five)
    }

    fn day_matches(&self, d: Date) -> bool {
        let dom = self.dom & (1 << d.day()) != 0;
        let dow = self.dow & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first activation strictly after `after`, in `tz`; `None` when there
    /// is none within five years (`0 0 30 2 *`).
    pub fn next(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = tz.to_datetime(after);
        // The next whole minute after `after`.
        let mut t = DateTime::from(start.date())
            .checked_add((i64::from(start.hour()) * 60 + i64::from(start.minute()) + 1).minutes())
            .ok()?;
        let limit = start.year() + 5;
        while t.year() <= limit {
            if self.month & (1 << t.month()) == 0 {
                let first = t.date().first_of_month();
                t = DateTime::from(first.checked_add(1.month()).ok()?);
                continue;
            }
            if !self.day_matches(t.date()) {
                t = DateTime::from(t.date().tomorrow().ok()?);
                continue;
            }
            if self.hour & (1 << t.hour()) == 0 {
                t = t
                    .checked_add(1.hour())
                    .ok()?
                    .with()
                    .minute(0)
                    .build()
                    .ok()?;
                continue;
            }
            if self.minute & (1 << t.minute()) == 0 {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            let ts = tz.to_ambiguous_timestamp(t).compatible().ok()?;
            if ts > after {
                return Some(ts);
            }
            t = t.checked_add(1.minute()).ok()?;
        }
        None
    }

    /// The latest activation in `(after, now]`, and how many there were
    /// (upstream's `mostRecentScheduleTime`, which warns past 100 misses).
    /// Every activation is walked: a year of a per-minute schedule is half a
    /// million cheap steps, once, when a CronJob comes back from a long pause.
    pub fn most_recent(
        &self,
        after: Timestamp,
        now: Timestamp,
        tz: &TimeZone,
    ) -> (Option<Timestamp>, usize) {
        let (mut last, mut n) = (None, 0);
        let mut t = after;
        while let Some(next) = self.next(t, tz) {
            if next > now {
                break;
            }
            last = Some(next);
            n += 1;
            t = next;
        }
        (last, n)
    }
}

/// Where the system's IANA time zone database is.
const ZONEINFO: &str = "/usr/share/zoneinfo";

/// The time zone `name` as Go's `time.LoadLocation` finds it; `None` (no
/// `timeZone`) is UTC, which is what upstream's controller manager runs in
/// here. The one IO of this crate: the zone files are data, as Go's are.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    let Some(name) = name else {
        return Ok(TimeZone::UTC);
    };
    if name == "UTC" || name.is_empty() {
        return Ok(TimeZone::UTC);
    }
    let bad = name.starts_with('/') || name.split('/').any(|p| p == ".." || p.is_empty());
    if bad {
        return Err(format!("unknown time zone {name}"));
    }
    let data = std::fs::read(format!("{ZONEINFO}/{name}"))
        .map_err(|_| format!("unknown time zone {name}"))?;
    TimeZone::tzif(name, &data).map_err(|_| format!("unknown time zone {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn parse_errors_are_robfigs() {
        assert_eq!(
            Schedule::parse("* * *").unwrap_err(),
            "expected exactly 5 fields, found 3: [* * *]"
        );
        assert_eq!(
            Schedule::parse("61 * * * *").unwrap_err(),
            "end of range (61) above maximum (59): 61"
        );
        assert_eq!(
            Schedule::parse("@often").unwrap_err(),
            "unrecognized descriptor: @often"
        );
        assert!(Schedule::parse("*/0 * * * *").is_err());
        assert!(Schedule::parse("0 0 * JAN-mar mon-fri").is_ok());
    }

    #[test]
    fn next_activations() {
        let utc = TimeZone::UTC;
        let every = Schedule::parse("*/1 * * * *").unwrap();
        assert_eq!(
            every.next(ts("2026-12-07T05:44:30Z"), &utc),
            Some(ts("2026-12-07T05:45:00Z"))
        );
        assert_eq!(
            every.next(ts("2026-12-07T05:45:00Z"), &utc),
            Some(ts("2026-12-07T05:46:00Z"))
        );
        let hourly = Schedule::parse("@hourly").unwrap();
        assert_eq!(
            hourly.next(ts("2026-12-31T23:10:00Z"), &utc),
            Some(ts("2027-01-01T00:00:00Z"))
        );
        // Day of month OR day of week when both are restricted.
        let s = Schedule::parse("0 12 1 * mon").unwrap();
        // 2026-12-07 is a Monday.
        assert_eq!(
            s.next(ts("2026-12-02T00:00:00Z"), &utc),
            Some(ts("2026-12-07T12:00:00Z"))
        );
        let (last, n) =
            every.most_recent(ts("2026-12-07T05:00:00Z"), ts("2026-12-07T05:03:10Z"), &utc);
        assert_eq!((last, n), (Some(ts("2026-12-07T05:03:00Z")), 3));
        let (last, n) =
            every.most_recent(ts("2025-12-07T05:00:00Z"), ts("2026-12-07T05:03:10Z"), &utc);
        assert_eq!((last, n), (Some(ts("2026-12-07T05:03:00Z")), 525_603));
        assert_eq!(
            Schedule::parse("0 0 30 2 *")
                .unwrap()
                .next(ts("2026-01-01T00:00:00Z"), &utc),
            None
        );
    }

    #[test]
    fn time_zones() {
        let tz = time_zone(Some("Europe/Berlin")).unwrap();
        let s = Schedule::parse("0 9 * * *").unwrap();
        assert_eq!(
            s.next(ts("2026-12-07T00:00:00Z"), &tz),
            Some(ts("2026-12-07T08:00:00Z"))
        );
        assert_eq!(
            time_zone(Some("Mars/Olympus")).unwrap_err(),
            "unknown time zone Mars/Olympus"
        );
        assert!(time_zone(Some("../etc/passwd")).is_err());
    }
}
