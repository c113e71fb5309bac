//! skiff's own share of programming latency, from its metrics: the histogram
//! `skiff_dns_programming_duration_seconds` (a watch event's arrival to the swap of
//! an index that answers it), read before and after the changes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result};

const METRIC: &str = "skiff_dns_programming_duration_seconds_bucket{le=\"";

/// Cumulative bucket counts: (upper bound in seconds, count), `+Inf` last.
#[derive(Debug, Clone, Default)]
pub struct Buckets(Vec<(f64, u64)>);

/// Reads the histogram from `/metrics` at `addr` (plain HTTP/1.0).
pub fn read(addr: SocketAddr) -> Result<Buckets> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connecting to skiff's metrics at {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: dns\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(parse(&text))
}

fn parse(text: &str) -> Buckets {
    Buckets(
        text.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(METRIC)?;
                let (le, count) = rest.split_once("\"} ")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, count.trim().parse().ok()?))
            })
            .collect(),
    )
}

impl Buckets {
    /// The observations made since `before`.
    pub fn since(&self, before: &Buckets) -> Buckets {
        Buckets(
            self.0
                .iter()
                .map(|(le, n)| {
                    let was = before
                        .0
                        .iter()
                        .find(|(b, _)| b == le)
                        .map_or(0, |(_, c)| *c);
                    (*le, n.saturating_sub(was))
                })
                .collect(),
        )
    }

    pub fn count(&self) -> u64 {
        self.0.last().map_or(0, |(_, n)| *n)
    }

    /// The upper bound of the bucket holding percentile `p`; `None` if empty or
    /// beyond the last finite bucket.
    pub fn percentile_bound(&self, p: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((p / 100.0) * total as f64).ceil() as u64;
        self.0
            .iter()
            .find(|(_, n)| *n >= rank.max(1))
            .and_then(|(le, _)| le.is_finite().then(|| Duration::from_secs_f64(*le)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_from_buckets() {
        let before = parse(
            "skiff_dns_programming_duration_seconds_bucket{le=\"0.0001\"} 5\n\
             skiff_dns_programming_duration_seconds_bucket{le=\"0.0002\"} 5\n\
             skiff_dns_programming_duration_seconds_bucket{le=\"+Inf\"} 5\n",
        );
        let after = parse(
            "x 1\nskiff_dns_programming_duration_seconds_bucket{le=\"0.0001\"} 15\n\
             skiff_dns_programming_duration_seconds_bucket{le=\"0.0002\"} 104\n\
             skiff_dns_programming_duration_seconds_bucket{le=\"+Inf\"} 105\n",
        );
        let d = after.since(&before);
        assert_eq!(d.count(), 100);
        assert_eq!(d.percentile_bound(5.0), Some(Duration::from_micros(100)));
        assert_eq!(d.percentile_bound(50.0), Some(Duration::from_micros(200)));
        assert_eq!(d.percentile_bound(99.5), None);
    }
}
