//! `bench/pods`: pod start latency (create request to a watch event showing the pod
//! Running and Ready) beside the floor, a bare `ip netns add` + veth + process spawn
//! measured in the same run, in the same network namespace; then pods of a cached
//! OCI image beside the same image started with `runc run -d`, and a first pull of
//! a 50 MB image beside `skopeo copy`. See `bench/README.md`.
//!
//! The binary first re-executes itself inside a network namespace it creates (see
//! `skiff_bench::netns`); the inner run starts the whole cluster in-process there
//! (API server, controllers, node agent) on a fresh data dir in a temp dir: once
//! with the agent running host programs, once running images.

mod cluster;
mod docs;
mod floor;
mod image_phase;
mod images;
mod measure;
mod pods;
mod pull;
mod runc_floor;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use skiff_bench::netns;
use skiff_bench::report;
use skiff_bench::runtime::runtime;
use tokio::runtime::Runtime;

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
    /// Pods of a cached OCI image started one at a time, each beside one
    /// `runc run -d` of the same image (0: skip).
    #[arg(long, default_value_t = 100)]
    images: usize,
    /// Rounds of a first pull into an empty store beside `skopeo copy` (0: skip).
    #[arg(long, default_value_t = 5)]
    pull_rounds: usize,
    /// Megabytes of random bytes in the pulled image's extra layer.
    #[arg(long, default_value_t = 50)]
    pull_mb: u32,
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
            "cargo run --release -p skiff-bench --bin pods -- --pods {} --probed {} --burst {} \
             --images {} --pull-rounds {} --pull-mb {}",
            self.pods, self.probed, self.burst, self.images, self.pull_rounds, self.pull_mb
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
    anyhow::ensure!(
        args.pods.max(args.probed).max(args.burst).max(args.images) <= 250,
        "at most 250 pods per phase (the node's /24 of pod addresses)"
    );
    let dir = tempfile::Builder::new()
        .prefix("skiff-bench-pods")
        .tempdir()?;
    // Two runtimes, so the cluster and the load generator cannot starve each
    // other's schedulers; both default to one worker per core.
    let client_rt = runtime("client", None)?;
    let result = phases(ns, args, dir.path(), &client_rt);
    client_rt.shutdown_timeout(Duration::from_secs(2));
    let (host, mut img, mut pulled) = result?;
    let tables = docs::image_tables(img.as_mut(), pulled.as_mut());
    println!("\n{}", docs::printed(host.as_ref(), &tables));
    if args.no_docs {
        eprintln!("not recording (--no-docs)");
    } else {
        report::write_section(
            &args.docs,
            HEADING,
            &docs::section(args, host.as_ref(), &tables),
        )?;
        eprintln!("recorded in {}", args.docs.display());
    }
    drop(dir);
    Ok(())
}

type Results = (
    Option<measure::HostTables>,
    Option<image_phase::ImageSamples>,
    Option<pull::PullSamples>,
);

/// Every phase in turn: the pull (no cluster running), the host-program pods,
/// the image pods.
fn phases(ns: &str, args: &Args, dir: &Path, client_rt: &Runtime) -> Result<Results> {
    let oci = if args.images > 0 || args.pull_rounds > 0 {
        let mb = (args.pull_rounds > 0).then_some(args.pull_mb);
        Some(block(client_rt, images::build(dir, mb))?)
    } else {
        None
    };
    let pulled = match &oci {
        Some(oci) if args.pull_rounds > 0 => {
            let pull_dir = dir.join("pull");
            std::fs::create_dir_all(&pull_dir)?;
            Some(block(
                client_rt,
                pull::run(args.pull_rounds, oci, &pull_dir),
            )?)
        }
        _ => None,
    };
    let host = if args.pods > 0 {
        let data = dir.join("host");
        let c = Running::start(&data, true)?;
        let floor_prefix = format!("{ns}-floor");
        let r = block(
            client_rt,
            measure::run(args, &c.cluster, &data, &floor_prefix),
        );
        c.finish(client_rt, r.is_err());
        Some(r?)
    } else {
        None
    };
    let img = match &oci {
        Some(oci) if args.images > 0 => {
            let data = dir.join("images");
            let imported = images::import(&data.join("agent/images"), oci)?;
            eprintln!("imported {}", imported.join(", "));
            let c = Running::start(&data, false)?;
            let floor_dir = dir.join("floor");
            let r = block(
                client_rt,
                image_phase::run(args.images, &c.cluster, &data, &floor_dir),
            );
            c.finish(client_rt, r.is_err());
            let leaks = image_phase::leaks(dir);
            anyhow::ensure!(
                leaks.is_empty(),
                "left behind after the image phase: {}",
                leaks.join("; ")
            );
            Some(r?)
        }
        _ => None,
    };
    Ok((host, img, pulled))
}

/// Runs `f` on the client runtime until it ends or the run is interrupted.
fn block<T>(rt: &Runtime, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    rt.block_on(async {
        tokio::select! {
            r = f => r,
            r = netns::interrupted() => r.and_then(|()| Err(anyhow::anyhow!("interrupted"))),
        }
    })
}

/// A cluster on a runtime of its own, so stopping it ends every task it spawned.
struct Running {
    rt: Runtime,
    cluster: cluster::Cluster,
}

impl Running {
    fn start(data_dir: &Path, host_images: bool) -> Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let rt = runtime("cluster", None)?;
        let cluster = cluster::Cluster::start(&rt, data_dir, host_images)?;
        Ok(Self { rt, cluster })
    }

    /// Stops the cluster; after a failure, deletes its pods first so no pod
    /// process outlives the run (each sandbox also ends itself once its veth goes).
    fn finish(self, client_rt: &Runtime, failed: bool) {
        if failed {
            let cleanup = client_rt.block_on(pods::delete_all(
                &self.cluster.client,
                Duration::from_secs(60),
            ));
            if let Err(e) = cleanup {
                eprintln!("cleanup: {e:#}");
            }
        }
        self.cluster.stop();
        self.rt.shutdown_timeout(Duration::from_secs(2));
    }
}
