//! `bench/nodes`: a node dies. Three nodes made by the release `skiff up
//! --nodes 3` (each a network namespace of its own on a bridge, node 1 the
//! server, nodes 2 and 3 `skiff agent`s), a Deployment of `traefik/whoami`
//! spread over them behind a Service; then node 3 is killed as the e2e kills
//! it (SIGKILL of its `skiff` process and of the process holding its network
//! namespace, its link removed), and a watch times the dead node's endpoints
//! going not ready and the replicas coming back Ready on the other nodes,
//! each beside the configured grace period and toleration. A ClusterIP prober
//! in a pod on node 1 counts the connections that fail after the endpoints
//! went not ready. Every round on a fresh cluster. See `bench/README.md`.
//!
//! The binary re-executes itself inside a network namespace it creates (see
//! `skiff_bench::netns`), which is the nodes' LAN: `skiff up` runs there, so
//! the bridge, the nodes and everything they route stay inside it.

mod cluster;
mod observe;
mod probe;
mod results;
mod round;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use skiff_bench::netns;
use skiff_bench::runtime::runtime;

/// Benchmark node failure: endpoints and replicas against the configured timeouts.
#[derive(Parser, Debug, Clone)]
#[command(name = "nodes")]
pub struct Args {
    /// `--node-monitor-grace-period` of the server, in seconds.
    #[arg(long, default_value_t = 10)]
    grace: u64,
    /// `--default-unreachable-toleration-seconds` of the server.
    #[arg(long, default_value_t = 10)]
    toleration: u64,
    /// `--node-lease-duration-seconds` of every node (the Lease is renewed
    /// every quarter of it, so a live node renews several times per grace
    /// period, as kubelet's defaults of 40 s and 10 s do).
    #[arg(long, default_value_t = 10)]
    lease: u64,
    /// Rounds, each on a fresh cluster.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Replicas of the Deployment (spread over the three nodes).
    #[arg(long, default_value_t = 6)]
    replicas: usize,
    /// `skiff up --flannel-backend`.
    #[arg(long, default_value = "auto")]
    backend: String,
    /// Concurrent connection loops of the ClusterIP prober.
    #[arg(long, default_value_t = 4)]
    probe_loops: usize,
    /// Pause of each prober loop between two connections, in milliseconds.
    #[arg(long, default_value_t = 50)]
    probe_interval_ms: u64,
    /// The `skiff` binary (default: the one beside this benchmark's binary,
    /// `target/release/skiff` for a release build).
    #[arg(long)]
    skiff: Option<PathBuf>,
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

/// What the benchmark runs inside the prober pod's network namespace.
#[derive(Subcommand, Debug, Clone)]
enum Helper {
    /// Opens connections to `target` in `loops` loops until stdout closes;
    /// prints `start_ns end_ns ok port` per connection.
    #[command(hide = true)]
    Probe {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long)]
        loops: usize,
        #[arg(long)]
        interval_ms: u64,
        #[arg(long)]
        timeout_ms: u64,
    },
}

impl Args {
    /// The command that reproduces this run, every setting spelled out.
    fn command_line(&self) -> String {
        format!(
            "cargo build --release -p skiff-bench -p skiff && \
             target/release/nodes --grace {} --toleration {} --lease {} --rounds {} --replicas {} \
             --backend {} --probe-loops {} --probe-interval-ms {}",
            self.grace,
            self.toleration,
            self.lease,
            self.rounds,
            self.replicas,
            self.backend,
            self.probe_loops,
            self.probe_interval_ms
        )
    }

    fn skiff_bin(&self) -> Result<PathBuf> {
        let path = match &self.skiff {
            Some(p) => p.clone(),
            None => std::env::current_exe()
                .context("locating the benchmark binary")?
                .with_file_name("skiff"),
        };
        anyhow::ensure!(
            path.is_file(),
            "no skiff binary at {} (build it: cargo build --release -p skiff, or pass --skiff)",
            path.display()
        );
        Ok(path)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    skiff_bench::logging::init();
    let result = match (&args.helper, &args.inner) {
        (
            Some(Helper::Probe {
                target,
                loops,
                interval_ms,
                timeout_ms,
            }),
            _,
        ) => probe::run(
            *target,
            *loops,
            Duration::from_millis(*interval_ms),
            Duration::from_millis(*timeout_ms),
        )
        .map(|()| ExitCode::SUCCESS),
        (None, None) => netns::run_outer("skiff-bench-nodes"),
        (None, Some(ns)) => inner(ns, &args).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| {
        eprintln!("bench/nodes: error: {e:#}");
        ExitCode::FAILURE
    })
}

fn inner(ns: &str, args: &Args) -> Result<()> {
    netns::verify_inside(ns)?;
    anyhow::ensure!(
        args.rounds > 0 && args.replicas >= 3 && args.probe_loops > 0 && args.grace > 0 && args.lease >= 4,
        "--rounds, --probe-loops and --grace must be positive, --replicas and --lease at least 3 and 4"
    );
    let skiff = args.skiff_bin()?;
    let dir = tempfile::Builder::new()
        .prefix("skiff-bench-nodes")
        .tempdir()?;
    let rt = runtime("bench", Some(2))?;
    let mut rounds = Vec::new();
    // Rounds that could not be measured (each with its error): reported, and
    // run again, up to as many as were asked for.
    let mut aborted: Vec<String> = Vec::new();
    let outcome = rt.block_on(async {
        tokio::select! {
            r = async {
                while rounds.len() < args.rounds {
                    let i = rounds.len() + aborted.len() + 1;
                    eprintln!("round {i} ({} of {} measured): skiff up --nodes 3", rounds.len(), args.rounds);
                    match round::run(args, &skiff, dir.path()).await {
                        Ok(r) => {
                            eprintln!("  {}", r.summary());
                            rounds.push(r);
                        }
                        Err(e) => {
                            eprintln!("  round {i} aborted: {e:#}");
                            aborted.push(format!("{e:#}"));
                            anyhow::ensure!(
                                aborted.len() <= args.rounds,
                                "{} rounds aborted; the last: {e:#}",
                                aborted.len()
                            );
                        }
                    }
                }
                anyhow::Ok(())
            } => r,
            r = netns::interrupted() => r.and_then(|()| Err(anyhow::anyhow!("interrupted"))),
        }
    });
    // Whatever cluster a failed or interrupted round left is taken down by its
    // guard inside `round::run` as the future is dropped.
    rt.shutdown_timeout(Duration::from_secs(5));
    outcome?;
    let (section, printed) = results::render(args, &rounds, &aborted);
    println!("\n{printed}");
    if args.no_docs {
        eprintln!("not recording (--no-docs)");
    } else {
        skiff_bench::report::write_section(&args.docs, results::HEADING, &section)?;
        eprintln!("recorded in {}", args.docs.display());
    }
    drop(dir);
    Ok(())
}
