//! Latency samples, percentiles, and how figures are printed.

use std::time::Duration;

/// A set of latency samples; percentiles by nearest rank.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    sorted: bool,
    values: Vec<Duration>,
}

impl Samples {
    pub fn with_capacity(n: usize) -> Self {
        Samples {
            sorted: true,
            values: Vec::with_capacity(n),
        }
    }

    pub fn push(&mut self, d: Duration) {
        self.sorted = false;
        self.values.push(d);
    }

    pub fn extend(&mut self, other: Samples) {
        self.sorted = false;
        self.values.extend(other.values);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `p` in 0..=100. Zero for no samples, so an empty phase prints rather than panics.
    pub fn percentile(&mut self, p: f64) -> Duration {
        if self.values.is_empty() {
            return Duration::ZERO;
        }
        if !self.sorted {
            self.values.sort_unstable();
            self.sorted = true;
        }
        let rank = (p / 100.0 * self.values.len() as f64).ceil() as usize;
        self.values[rank.clamp(1, self.values.len()) - 1]
    }

    pub fn p50(&mut self) -> Duration {
        self.percentile(50.0)
    }

    pub fn p99(&mut self) -> Duration {
        self.percentile(99.0)
    }
}

/// `1.23 ms`, `456 µs`, `2.01 s`: three significant digits is all a shared machine gives.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    let (v, unit) = if s >= 1.0 {
        (s, "s")
    } else if s >= 1e-3 {
        (s * 1e3, "ms")
    } else {
        (s * 1e6, "µs")
    };
    let decimals = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.decimals$} {unit}")
}

/// `12,345/s`
pub fn fmt_rate(per_sec: f64) -> String {
    format!("{}/s", thousands(per_sec.round() as u64))
}

pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut s = Samples::default();
        for ms in 1..=100 {
            s.push(Duration::from_millis(ms));
        }
        assert_eq!(s.p50(), Duration::from_millis(50));
        assert_eq!(s.p99(), Duration::from_millis(99));
        assert_eq!(s.percentile(100.0), Duration::from_millis(100));
        assert_eq!(Samples::default().p99(), Duration::ZERO);
    }

    #[test]
    fn formats() {
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(fmt_rate(12_345.4), "12,345/s");
        assert_eq!(fmt_duration(Duration::from_micros(456)), "456 µs");
        assert_eq!(fmt_duration(Duration::from_micros(1_230)), "1.23 ms");
        assert_eq!(fmt_duration(Duration::from_micros(12_340)), "12.3 ms");
        assert_eq!(fmt_duration(Duration::from_millis(2_010)), "2.01 s");
    }
}
