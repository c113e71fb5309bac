//! `bench/netpol`: NetworkPolicy enforcement's data plane (new connections per
//! second to a pod with 1,000 policies in the cluster, against none) and
//! control plane (time from a policy change to enforcement in the kernel), both
//! measured side by side in one run. See `bench/README.md`.
//!
//! The binary re-executes itself inside a network namespace it creates (the
//! "node", see `skiff_bench::netns`); the inner run makes pod namespaces joined
//! to it by veths, starts the real API server and the real enforcer in-process,
//! and runs itself again inside the pods as the server, the load generator and
//! the prober (hidden subcommands).

mod cluster;
mod topo;
mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use skiff_bench::netns;
use skiff_bench::report::{self, Table};
use skiff_bench::runtime::runtime;
use skiff_bench::stats::{fmt_duration, fmt_rate, thousands, Samples};

use crate::cluster::{ApiServer, Enforcer};
use crate::topo::{addr, Topology, INTRUDER, SERVER, TARGET};

const HEADING: &str = "## NetworkPolicy (bench/netpol)";

/// Benchmark NetworkPolicy enforcement: 1,000 policies against none.
#[derive(Parser, Debug, Clone)]
#[command(name = "netpol")]
struct Args {
    /// Policies in the cluster for the "with policies" side.
    #[arg(long, default_value_t = 1_000)]
    policies: usize,
    /// How many of them select the server pod (the client is allowed by the last).
    #[arg(long, default_value_t = 10)]
    selecting: usize,
    /// Data-plane rounds; each measures both sides once.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds per load run.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Connection loops of the load generator.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Policy changes timed on each side (half isolate the target, half release it).
    #[arg(long, default_value_t = 100)]
    changes: usize,
    /// Concurrent API clients creating the policies.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Do not record the results in the docs file (for smoke runs).
    #[arg(long)]
    no_docs: bool,
    /// The file the results section is written into.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/benchmarks.md"))]
    docs: PathBuf,
    /// Internal: the network namespace this run was re-executed in.
    #[arg(long = "inner", hide = true)]
    inner: Option<String>,
    #[command(subcommand)]
    helper: Option<Helper>,
}

/// What the benchmark runs inside its pods.
#[derive(Subcommand, Debug, Clone)]
enum Helper {
    /// TCP server answering one byte per connection.
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        port: u16,
    },
    /// New connections back to back; prints `connections errors elapsed_ns`.
    #[command(hide = true)]
    Load {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long)]
        workers: usize,
        #[arg(long)]
        millis: u64,
    },
    /// One connection; prints `ok` or `denied`.
    #[command(hide = true)]
    Connect {
        #[arg(long)]
        target: SocketAddr,
    },
    /// Waits for connections to become allowed or denied (commands on stdin).
    #[command(hide = true)]
    Probe,
}

impl Args {
    /// The command that reproduces this run, every size spelled out.
    fn command_line(&self) -> String {
        format!(
            "cargo run --release -p skiff-bench --bin netpol -- --policies {} --selecting {} \
             --rounds {} --seconds {} --workers {} --changes {} --concurrency {}",
            self.policies,
            self.selecting,
            self.rounds,
            self.seconds,
            self.workers,
            self.changes,
            self.concurrency
        )
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    skiff_bench::logging::init();
    let result = match (&args.helper, &args.inner) {
        (Some(helper), _) => run_helper(helper.clone()).map(|()| ExitCode::SUCCESS),
        (None, None) => netns::run_outer("skiff-bench-netpol"),
        (None, Some(ns)) => inner(ns, &args).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| {
        eprintln!("bench/netpol: error: {e:#}");
        ExitCode::FAILURE
    })
}

fn run_helper(helper: Helper) -> Result<()> {
    match helper {
        Helper::Serve { port } => wire::serve(port),
        Helper::Load {
            target,
            workers,
            millis,
        } => wire::load(target, workers, millis),
        Helper::Connect { target } => wire::connect(target),
        Helper::Probe => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?
            .block_on(wire::probe()),
    }
}

fn inner(ns: &str, args: &Args) -> Result<()> {
    netns::verify_inside(ns)?;
    anyhow::ensure!(
        args.policies > 0 && args.rounds > 0 && args.workers > 0 && args.changes >= 2,
        "--policies, --rounds, --workers must be positive and --changes at least 2"
    );
    anyhow::ensure!(
        args.selecting <= args.policies,
        "--selecting cannot exceed --policies"
    );
    let dir = tempfile::Builder::new()
        .prefix("skiff-bench-netpol")
        .tempdir()?;
    let server_rt = runtime("api", Some(2))?;
    let enforcer_rt = runtime("netpol", Some(1))?;
    let bench_rt = runtime("bench", Some(1))?;
    // Inside the runtime: the pods' servers are its child processes.
    let topo = bench_rt.block_on(async { Topology::create(ns) })?;
    let result = bench_rt.block_on(async {
        let api = ApiServer::start(&server_rt, dir.path()).await?;
        let enforcer = Enforcer::start(&enforcer_rt, &api);
        let r = tokio::select! {
            r = measure(args, &api, &enforcer, &topo) => r,
            r = netns::interrupted() => r.and_then(|()| Err(anyhow::anyhow!("interrupted"))),
        };
        enforcer.stop().await;
        api.stop();
        r
    });
    drop(topo);
    enforcer_rt.shutdown_timeout(Duration::from_secs(2));
    server_rt.shutdown_timeout(Duration::from_secs(2));
    let (section, table) = result?;
    println!("\n{table}");
    if args.no_docs {
        eprintln!("not recording (--no-docs)");
    } else {
        report::write_section(&args.docs, HEADING, &section)?;
        eprintln!("recorded in {}", args.docs.display());
    }
    Ok(())
}

/// Flushes the node's conntrack table, so every load run starts from the same
/// (empty) table. Best effort: without `conntrack` both sides just share it.
fn flush_conntrack() {
    let _ = std::process::Command::new("conntrack")
        .arg("-F")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// One load run against the server pod: connections per second.
async fn load(args: &Args, topo: &Topology) -> Result<f64> {
    flush_conntrack();
    let millis = (args.seconds * 1000.0) as u64;
    let out = topo
        .run_in(
            topo::CLIENT,
            &[
                "load".into(),
                "--target".into(),
                addr(SERVER).to_string(),
                "--workers".into(),
                args.workers.to_string(),
                "--millis".into(),
                millis.to_string(),
            ],
        )
        .await?;
    let f: Vec<u64> = out
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("load output {out:?}"))?;
    let [done, errors, nanos] = f[..] else {
        bail!("load output {out:?}");
    };
    if errors > 0 {
        bail!("{errors} connections failed during a load run ({done} succeeded)");
    }
    Ok(done as f64 / (nanos as f64 / 1e9))
}

/// Can the intruder pod connect to the server?
async fn intruder_allowed(topo: &Topology) -> Result<bool> {
    let out = topo
        .run_in(
            INTRUDER,
            &[
                "connect".into(),
                "--target".into(),
                addr(SERVER).to_string(),
            ],
        )
        .await?;
    Ok(out == "ok")
}

/// Creates the policies and waits until they are enforced.
async fn add_policies(args: &Args, api: &ApiServer, enforcer: &Enforcer) -> Result<Duration> {
    let start = Instant::now();
    api.create_policies(args.policies, args.selecting, args.concurrency)
        .await?;
    enforcer.wait_for(args.policies).await?;
    Ok(start.elapsed())
}

async fn remove_policies(api: &ApiServer, enforcer: &Enforcer) -> Result<()> {
    api.delete_policies().await?;
    enforcer.wait_for(0).await
}

/// `changes` timed policy changes: isolate the target, then release it.
async fn changes(args: &Args, api: &ApiServer, topo: &Topology) -> Result<Samples> {
    let mut prober = topo.prober()?;
    let mut samples = Samples::with_capacity(args.changes);
    // Warm the path once, unmeasured.
    prober.start(true, addr(TARGET)).await?;
    prober.done().await?;
    for _ in 0..args.changes / 2 {
        prober.start(false, addr(TARGET)).await?;
        api.isolate_target().await?;
        samples.push(prober.done().await?);
        tokio::time::sleep(Duration::from_millis(30)).await;
        prober.start(true, addr(TARGET)).await?;
        api.release_target().await?;
        samples.push(prober.done().await?);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    Ok(samples)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn ratio(a: f64, b: f64) -> String {
    if b <= 0.0 {
        "n/a".into()
    } else {
        format!("{:.2}×", a / b)
    }
}

/// Runs every phase; returns the docs section and the printed table.
async fn measure(
    args: &Args,
    api: &ApiServer,
    enforcer: &Enforcer,
    topo: &Topology,
) -> Result<(String, String)> {
    api.create_pods().await?;
    enforcer.wait_started().await?;
    // Servers up and nothing enforced yet.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !intruder_allowed(topo).await? {
        if Instant::now() > deadline {
            bail!("the server pod does not answer");
        }
    }

    // Data plane: both sides once per round, switching between them once per
    // round (none, with | with, none | none, with ...).
    let (mut with, mut none) = (Vec::new(), Vec::new());
    let mut present = false;
    let mut programmed = Samples::with_capacity(args.rounds);
    for round in 0..args.rounds {
        for _ in 0..2 {
            let rate = load(args, topo).await?;
            eprintln!(
                "round {}: {} policies: {}",
                round + 1,
                if present { args.policies } else { 0 },
                fmt_rate(rate)
            );
            if present { &mut with } else { &mut none }.push(rate);
            if with.len() + none.len() == 2 * (round + 1) {
                break;
            }
            if present {
                remove_policies(api, enforcer).await?;
            } else {
                programmed.push(add_policies(args, api, enforcer).await?);
                anyhow::ensure!(
                    !intruder_allowed(topo).await?,
                    "the policies are not enforced: the intruder reaches the server"
                );
            }
            present = !present;
        }
    }

    // Control plane: timed changes with the policies present, then without.
    if !present {
        programmed.push(add_policies(args, api, enforcer).await?);
    }
    let mut change_with = changes(args, api, topo).await?;
    remove_policies(api, enforcer).await?;
    let mut change_none = changes(args, api, topo).await?;

    // Each round's two runs are minutes apart at most, so their ratio is the
    // steadier figure on a shared machine; the median of those is the ratio.
    let mut per_round: Vec<f64> = with.iter().zip(&none).map(|(w, n)| w / n).collect();
    let round_ratio = median(&mut per_round);
    let (rate_with, rate_none) = (median(&mut with), median(&mut none));
    let mut t = Table::new(
        "figure",
        &format!("{} policies", thousands(args.policies as u64)),
        "no policies",
        "ratio",
    );
    t.row(
        format!(
            "new connections/s to a pod ({} of the policies select it), median of {} rounds",
            args.selecting, args.rounds
        ),
        fmt_rate(rate_with),
        fmt_rate(rate_none),
        format!("{round_ratio:.2}×"),
    );
    for (label, p) in [("p50", 50.0), ("p99", 99.0)] {
        let (a, b) = (change_with.percentile(p), change_none.percentile(p));
        t.row(
            format!("policy change -> enforced in the kernel, {label}"),
            fmt_duration(a),
            fmt_duration(b),
            ratio(a.as_secs_f64(), b.as_secs_f64()),
        );
    }
    let table = t.markdown();
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let section = format!(
        "{HEADING}\n\n\
Command: `flock /tmp/skiff-bench.lock {cmd}`\n\n\
Run {date} on a machine with `nproc` = {nproc}, shared with other builds; the API server, \
the enforcer, the load generator and the pods' servers share its cores, inside a network \
namespace the benchmark made. Only the ratios, measured side by side in this one run, are \
meaningful.\n\n\
{table}\n\
- Connections: `{workers}` loops in a client pod each open a TCP connection to the server \
pod (routed through the node, so every SYN crosses the enforcer's forward-hook chains), read \
one byte and reset it; {secs} s per run, conntrack flushed before each. With policies, the \
server is selected by {selecting} of them and the client is allowed by the last one jumped \
to, so a new connection passes the dispatch map, {selecting} policy chains and a set lookup; \
without, it passes the dispatch map only. The ratio is the median of the rounds' own \
ratios (each round runs both sides back to back). Goal: at least 0.9.\n\
- Changes: {changes} per side, alternately creating a policy that isolates another pod and \
deleting it, through the API. Each runs from the moment a prober in a third pod is told to \
expect the new verdict (just before the API request) to the start of the first new \
connection (one every 0.5 ms) that gets it, so it covers the API write, the watch, rule \
generation from the whole model, the diff and the `nft` transaction.\n\
- Programming all {policies} policies (created by {concurrency} clients) took {prog} \
(median of {n} times).\n",
        cmd = args.command_line(),
        workers = args.workers,
        secs = args.seconds,
        selecting = args.selecting,
        changes = change_with.len(),
        policies = thousands(args.policies as u64),
        concurrency = args.concurrency,
        prog = fmt_duration(programmed.p50()),
        n = programmed.len(),
    );
    Ok((section, table))
}
