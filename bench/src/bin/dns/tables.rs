//! The dnsperf phases, and the tables printed and recorded in `docs/benchmarks.md`.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};
use skiff_bench::report::Table;
use skiff_bench::stats::{fmt_duration, fmt_rate, thousands, Samples};

use crate::dnsperf::{self, Load, Run};
use crate::programming::Programming;
use crate::records::{Records, HEADLESS_ENDPOINTS, MIX};
use crate::Args;

pub const HEADING: &str = "## DNS (bench/dns)";

/// One server's full-speed rounds added up.
pub struct Throughput {
    pub name: String,
    pub completed: u64,
    pub lost: u64,
    pub elapsed: Duration,
    /// dnsperf's average latency, weighted by queries completed.
    latency_weighted: f64,
    pub round_qps: Vec<f64>,
    pub rcodes: Vec<String>,
}

impl Throughput {
    pub fn qps(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn avg_latency(&self) -> Duration {
        Duration::from_secs_f64(self.latency_weighted / self.completed.max(1) as f64)
    }

    /// The median over rounds of this server's QPS divided by `peer`'s in the same
    /// round: neighbours in time share the machine's load.
    pub fn paired_ratio(&self, peer: &Throughput) -> f64 {
        let mut r: Vec<f64> = self
            .round_qps
            .iter()
            .zip(&peer.round_qps)
            .map(|(a, b)| a / b)
            .filter(|r| r.is_finite())
            .collect();
        r.sort_by(f64::total_cmp);
        r.get(r.len() / 2).copied().unwrap_or(f64::NAN)
    }
}

/// Full speed: `rounds` rounds, each running every server for `seconds`, the order
/// rotating so none always goes first or last.
pub fn throughput(
    args: &Args,
    servers: &[(&str, &str)],
    queries: &Path,
) -> Result<Vec<Throughput>> {
    let mut out: Vec<Throughput> = servers
        .iter()
        .map(|(name, _)| Throughput {
            name: name.to_string(),
            completed: 0,
            lost: 0,
            elapsed: Duration::ZERO,
            latency_weighted: 0.0,
            round_qps: Vec::new(),
            rcodes: Vec::new(),
        })
        .collect();
    let load = Load {
        clients: args.clients,
        outstanding: 100,
        rate: None,
        seconds: args.seconds,
        verbose: false,
    };
    for round in 0..args.rounds {
        for k in 0..servers.len() {
            let i = (round + k) % servers.len();
            let (name, addr) = servers[i];
            eprintln!(
                "round {}/{}: dnsperf -c {} -l {} against {name}",
                round + 1,
                args.rounds,
                args.clients,
                args.seconds
            );
            let run = dnsperf::run(addr, queries, load)?;
            eprintln!(
                "  {} QPS, {} avg, {}",
                thousands(run.qps().round() as u64),
                fmt_duration(run.avg_latency),
                run.rcodes
            );
            let t = &mut out[i];
            t.completed += run.completed;
            t.lost += run.sent.saturating_sub(run.completed);
            t.elapsed += run.elapsed;
            t.latency_weighted += run.avg_latency.as_secs_f64() * run.completed as f64;
            t.round_qps.push(run.qps());
            t.rcodes = run.rcode_names();
        }
    }
    if let Some(first) = out.first() {
        for t in &out[1..] {
            if t.rcodes != first.rcodes {
                bail!(
                    "{} answered with rcodes {:?}, {} with {:?}: not the same work",
                    t.name,
                    t.rcodes,
                    first.name,
                    first.rcodes
                );
            }
        }
    }
    Ok(out)
}

/// At a fixed rate every server sustains: each response's latency.
pub fn latency(args: &Args, servers: &[(&str, &str)], queries: &Path) -> Result<Vec<Run>> {
    let load = Load {
        clients: args.clients,
        outstanding: 100,
        rate: Some(args.rate),
        seconds: args.latency_seconds,
        verbose: true,
    };
    servers
        .iter()
        .map(|(name, addr)| {
            eprintln!(
                "latency: dnsperf -Q {} -l {} against {name}",
                args.rate, args.latency_seconds
            );
            dnsperf::run(addr, queries, load)
        })
        .collect()
}

/// `skiff` divided by `peer`.
fn ratio(skiff: f64, peer: f64) -> String {
    if peer <= 0.0 || !skiff.is_finite() || !peer.is_finite() {
        return "n/a".into();
    }
    let r = skiff / peer;
    if r >= 100.0 {
        format!("{r:.0}×")
    } else if r >= 10.0 {
        format!("{r:.1}×")
    } else {
        format!("{r:.2}×")
    }
}

fn time_row(t: &mut Table, what: String, skiff: Duration, peer: Duration) {
    t.row(
        what,
        fmt_duration(skiff),
        fmt_duration(peer),
        ratio(skiff.as_secs_f64(), peer.as_secs_f64()),
    );
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

/// The docs section and the printed tables.
pub fn render(
    args: &Args,
    records: &Records,
    versions: &(String, String),
    throughput: Vec<Throughput>,
    mut latency: Vec<Run>,
    mut prog: Programming,
) -> Result<(String, String)> {
    let mut t = Table::new("measure", "skiff", "peer", "skiff ÷ peer");
    let Some((skiff, peers)) = throughput.split_first() else {
        bail!("no throughput figures");
    };
    let each = format!("{} × {} s", args.rounds, args.seconds);
    for p in peers {
        t.row(
            format!("QPS vs {} ({each})", p.name),
            fmt_rate(skiff.qps()),
            fmt_rate(p.qps()),
            ratio(skiff.qps(), p.qps()),
        );
    }
    for p in peers {
        t.row(
            format!("QPS vs {}, median of per-round ratios", p.name),
            String::new(),
            String::new(),
            ratio(skiff.paired_ratio(p), 1.0),
        );
    }
    for p in peers {
        time_row(
            &mut t,
            format!("avg latency at full speed vs {}", p.name),
            skiff.avg_latency(),
            p.avg_latency(),
        );
    }
    let rate = thousands(args.rate);
    let Some((skiff_lat, peer_lat)) = latency.split_first_mut() else {
        bail!("no latency figures");
    };
    let mut skiff_samples = std::mem::take(&mut skiff_lat.latencies);
    for (p, run) in peers.iter().zip(peer_lat.iter_mut()) {
        let peer = &mut run.latencies;
        for pct in [50.0, 99.0] {
            time_row(
                &mut t,
                format!("latency p{pct:.0} at {rate} QPS vs {}", p.name),
                skiff_samples.percentile(pct),
                peer.percentile(pct),
            );
        }
    }

    let n = args.changes;
    let mut pt = Table::new(
        "change",
        "write → first DNS answer",
        "floor: the API write alone",
        "÷ floor",
    );
    let mut rows = |what: &str, answer: &mut Samples, write: &mut Samples| {
        time_row(&mut pt, format!("{what} p50"), answer.p50(), write.p50());
        time_row(&mut pt, format!("{what} p99"), answer.p99(), write.p99());
    };
    rows(
        &format!("EndpointSlice patch ({n})"),
        &mut prog.slice_answer,
        &mut prog.slice_write,
    );
    rows(
        &format!("Service create ({n})"),
        &mut prog.create_answer,
        &mut prog.create_write,
    );
    let all = 2 * n;
    for pct in [50.0, 99.0] {
        pt.row(
            format!("answer after the API's response, all {all}, p{pct:.0}"),
            fmt_duration(prog.lag.percentile(pct)),
            String::new(),
            String::new(),
        );
    }
    for pct in [50.0, 99.0] {
        pt.row(
            format!(
                "skiff's share: watch event → index swap ({} swaps), p{pct:.0}",
                prog.own_share.count()
            ),
            prog.own_share
                .percentile_bound(pct)
                .map_or("n/a".into(), |d| format!("≤ {}", fmt_duration(d))),
            String::new(),
            String::new(),
        );
    }

    let knot_ratio = peers.first().map_or(f64::NAN, |k| skiff.qps() / k.qps());
    let masq_ratio = peers.get(1).map_or(f64::NAN, |d| skiff.qps() / d.qps());
    let prog_p99 = prog.slice_answer.p99().max(prog.create_answer.p99());
    let write_p99 = prog.slice_write.p99().max(prog.create_write.p99());
    let lag_p99 = prog.lag.p99();
    let ten_ms = Duration::from_millis(10);
    let goals = format!(
        "Goals: QPS ≥ Knot DNS's: {} ({}); QPS ≥ 2× dnsmasq's: {} ({}); programming \
         latency p99 < 10 ms, write start to answer: {} ({} at worst, the write alone {}); \
         beyond the write: {} ({}).",
        met(knot_ratio >= 1.0),
        ratio(knot_ratio, 1.0),
        met(masq_ratio >= 2.0),
        ratio(masq_ratio, 1.0),
        met(prog_p99 < ten_ms),
        fmt_duration(prog_p99),
        fmt_duration(write_p99),
        met(lag_p99 < ten_ms),
        fmt_duration(lag_p99),
    );
    let lost: Vec<String> = throughput
        .iter()
        .map(|s| format!("{} {}", s.name, thousands(s.lost)))
        .collect();
    let table = t.markdown();
    let prog_table = pt.markdown();
    let printed = format!("{table}\n{prog_table}\n{goals}\n");

    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let peers_named = format!(
        "{} and {}",
        versions.0.trim(),
        versions.1.split("  ").next().unwrap_or_default().trim()
    );
    let section = format!(
        "{HEADING}\n\n\
Command: `{cmd}`\n\n\
Run {date} on a machine with `nproc` = {nproc}, shared with other builds and with the \
load generator (dnsperf runs on the same cores as the server it drives). Only the ratios, \
measured side by side in this one run, are meaningful.\n\n\
**Throughput and latency.** skiff's DNS is fed by the real API server through its \
reflectors, as in `skiff server`; {peers_named} serve the same records, generated from \
the same {svc} ClusterIP services (A, SRV for a named port) and {hl} headless services \
of {eps} endpoints with hostnames (A per endpoint, member names, SRV) in {nss} namespaces, \
each on its own loopback address of the benchmark's network namespace. skiff has one UDP \
socket per core and Knot as many UDP workers; dnsmasq is single-threaded by design. \
Before timing, all three must give the same rcode and answer records to a sample of the \
mix. dnsperf `-c {clients}` (up to 100 queries outstanding) replays 10,000 queries: \
{MIX}. Full speed: {rounds} rounds of {secs} s per server, the order rotating; latency \
percentiles: dnsperf `-Q {rate_raw}` for {lsecs} s per server, every response timed. \
Queries lost (no answer within 1 s): {lost}. Ratios: above 1 is better for QPS, below 1 \
is better for latency.\n\n\
{table}\n\
**DNS programming latency.** With the {svc} + {hl} services in place, {n} EndpointSlice \
patches (a headless service's one endpoint moves to a new address) alternate with {n} \
Service creates, one at a time over HTTP/2. A thread asks skiff's DNS over UDP in a \
tight loop (the next query the moment an answer arrives); the time runs from the start \
of the write to the first answer that has the new address or the new name. The floor \
is the write itself (request sent, response read, the store's fsync included), which no \
watcher can beat. {before} of {total} changes were answered before the writer had read \
the API's response; \"answer after the API's response\" is the rest, what DNS adds to the \
write. skiff's share is read from its own histogram \
`skiff_dns_programming_duration_seconds` (bucket bounds) before and after the changes.\n\n\
{prog_table}\n\
{goals}\n",
        cmd = args.command_line(),
        svc = thousands(records.services.len() as u64),
        hl = thousands(records.headless.len() as u64),
        eps = HEADLESS_ENDPOINTS,
        nss = records.sizes.namespaces,
        clients = args.clients,
        rounds = args.rounds,
        secs = args.seconds,
        rate_raw = args.rate,
        lsecs = args.latency_seconds,
        lost = lost.join(", "),
        before = prog.before_response,
        total = 2 * n,
    );
    Ok((section, printed))
}
