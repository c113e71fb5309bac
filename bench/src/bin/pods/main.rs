//! `bench/pods`: pod start latency (create request to a watch event showing the pod
//! Running and Ready) beside the floor, a bare `ip netns add` + veth + process spawn
//! measured in the same run, in the same network namespace. See `bench/README.md`.
//!
//! The binary first re-executes itself inside a network namespace it creates (see
//! `skiff_bench::netns`); the inner run starts the whole cluster in-process there
//! (API server, controllers, node agent) on a fresh data dir in a temp dir.

mod cluster;
mod floor;
mod measure;
mod pods;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use skiff_bench::netns;
use skiff_bench::report;
use skiff_bench::runtime::runtime;

const HEADING: &str = "## Pod start (bench/pods)";

/// Benchmark pod start latency against a bare namespace + veth + process, side by side.
#[derive(Parser, Debug, Clone)]
#[command(name = "pods")]
pub struct Args {
    /// Pods started one at a time (each interleaved with one floor sample).
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Pods with an exec readiness probe started one at a time (0: skip).
    #[arg(long, default_value_t = 100)]
    probed: usize,
    /// Pods created at once, beside as many floor samples at once (0: skip).
    #[arg(long, default_value_t = 100)]
    burst: usize,
    /// Do not record the results in the docs file (for smoke runs).
    #[arg(long)]
    no_docs: bool,
    /// The file the results section is written into.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/benchmarks.md"))]
    docs: PathBuf,
    /// Internal: the network namespace this run was re-executed in.
    #[arg(long = "inner", hide = true)]
    inner: Option<String>,
}

impl Args {
    /// The command that reproduces this run, every size spelled out.
    fn command_line(&self) -> String {
        format!(
            "cargo run --release -p skiff-bench --bin pods -- --pods {} --probed {} --burst {}",
            self.pods, self.probed, self.burst
        )
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    skiff_bench::logging::init();
    let result = match &args.inner {
        None => netns::run_outer("skiff-bench-pods"),
        Some(ns) => inner(ns, &args).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| {
        eprintln!("bench/pods: error: {e:#}");
        ExitCode::FAILURE
    })
}

fn inner(ns: &str, args: &Args) -> Result<()> {
    netns::verify_inside(ns)?;
    anyhow::ensure!(args.pods > 0, "--pods must be positive");
    anyhow::ensure!(
        args.pods.max(args.probed).max(args.burst) <= 250,
        "at most 250 pods per phase (the node's /24 of pod addresses)"
    );
    let dir = tempfile::Builder::new()
        .prefix("skiff-bench-pods")
        .tempdir()?;
    // Two runtimes, so the cluster and the load generator cannot starve each
    // other's schedulers; both default to one worker per core.
    let cluster_rt = runtime("cluster", None)?;
    let client_rt = runtime("client", None)?;
    let cluster = cluster::Cluster::start(&cluster_rt, dir.path())?;
    let floor_prefix = format!("{ns}-floor");
    let result = client_rt.block_on(async {
        tokio::select! {
            r = measure::run(args, &cluster, dir.path(), &floor_prefix) => r,
            r = netns::interrupted() => r.and_then(|()| Err(anyhow::anyhow!("interrupted"))),
        }
    });
    // Pods are deleted before the cluster stops, also after a failure, so no pod
    // process outlives the run (each sandbox also ends itself once its veth goes).
    if result.is_err() {
        let cleanup =
            client_rt.block_on(pods::delete_all(&cluster.client, Duration::from_secs(60)));
        if let Err(e) = cleanup {
            eprintln!("cleanup: {e:#}");
        }
    }
    cluster.stop();
    client_rt.shutdown_timeout(Duration::from_secs(2));
    cluster_rt.shutdown_timeout(Duration::from_secs(2));
    let (section, table) = result?;
    println!("\n{table}");
    if args.no_docs {
        eprintln!("not recording (--no-docs)");
    } else {
        report::write_section(&args.docs, HEADING, &section)?;
        eprintln!("recorded in {}", args.docs.display());
    }
    drop(dir);
    Ok(())
}
