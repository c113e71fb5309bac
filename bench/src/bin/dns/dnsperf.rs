//! Driving dnsperf and reading its report.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use skiff_bench::stats::Samples;

/// What one dnsperf run measured.
#[derive(Debug, Default, Clone)]
pub struct Run {
    pub sent: u64,
    pub completed: u64,
    pub elapsed: Duration,
    /// Average latency as dnsperf reports it.
    pub avg_latency: Duration,
    /// `NOERROR 3 (60.00%), NXDOMAIN 2 (40.00%)`, as dnsperf prints it.
    pub rcodes: String,
    /// Every response's latency (only with `verbose`).
    pub latencies: Samples,
}

impl Run {
    pub fn qps(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The response codes without the percentages, to compare servers by.
    pub fn rcode_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .rcodes
            .split(',')
            .filter_map(|c| c.split_whitespace().next())
            .map(str::to_string)
            .collect();
        names.sort();
        names
    }
}

/// How dnsperf drives the server.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// `-c`: clients (sockets).
    pub clients: usize,
    /// `-q`: queries outstanding at most.
    pub outstanding: usize,
    /// `-Q`: a fixed rate instead of as fast as the server answers.
    pub rate: Option<u64>,
    pub seconds: u64,
    /// `-v`: every response's latency (for percentiles; costs dnsperf some time).
    pub verbose: bool,
}

pub fn run(server: &str, queries: &Path, load: Load) -> Result<Run> {
    let mut cmd = Command::new("dnsperf");
    cmd.args(["-s", server])
        .args(["-c", &load.clients.to_string()])
        .args(["-q", &load.outstanding.to_string()])
        .args(["-l", &load.seconds.to_string()])
        // Lost queries count after 1 s, not dnsperf's default 5.
        .args(["-t", "1"])
        .arg("-d")
        .arg(queries);
    if let Some(rate) = load.rate {
        cmd.args(["-Q", &rate.to_string()]);
    }
    if load.verbose {
        cmd.arg("-v");
    }
    let out = cmd
        .output()
        .context("running dnsperf (is it installed? see bench/README.md)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "dnsperf against {server} failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse(&text).with_context(|| format!("reading dnsperf's report:\n{text}"))
}

fn parse(text: &str) -> Result<Run> {
    let field = |label: &str| -> Option<&str> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(str::trim)
    };
    let first_number = |label: &str| -> Result<f64> {
        field(label)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {label:?} in dnsperf's report"))
    };
    let mut latencies = Samples::default();
    for line in text.lines() {
        // `> NOERROR name type 0.000180`
        if let Some(rest) = line.strip_prefix("> ") {
            if let Some(secs) = rest.rsplit(' ').next().and_then(|s| s.parse::<f64>().ok()) {
                latencies.push(Duration::from_secs_f64(secs));
            }
        }
    }
    Ok(Run {
        sent: first_number("Queries sent:")? as u64,
        completed: first_number("Queries completed:")? as u64,
        elapsed: Duration::from_secs_f64(first_number("Run time (s):")?),
        avg_latency: Duration::from_secs_f64(first_number("Average Latency (s):")?),
        rcodes: field("Response codes:").unwrap_or_default().to_string(),
        latencies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_report() {
        let text = "[Status] Started\n> NOERROR a.cluster.local A 0.000180\n\
> NXDOMAIN b.cluster.local A 0.000122\n[Status] Testing complete (time limit)\n\n\
Statistics:\n\n  Queries sent:         5\n  Queries completed:    5 (100.00%)\n\
  Queries lost:         0 (0.00%)\n\n\
  Response codes:       NOERROR 3 (60.00%), NXDOMAIN 2 (40.00%)\n\
  Run time (s):         1.000168\n  Queries per second:   4.999160\n\n\
  Average Latency (s):  0.000130 (min 0.000097, max 0.000180)\n";
        let mut r = parse(text).expect("parses");
        assert_eq!((r.sent, r.completed), (5, 5));
        assert_eq!(r.avg_latency, Duration::from_micros(130));
        assert_eq!(r.rcode_names(), ["NOERROR", "NXDOMAIN"]);
        assert_eq!(r.latencies.len(), 2);
        assert_eq!(r.latencies.p99(), Duration::from_micros(180));
    }
}
