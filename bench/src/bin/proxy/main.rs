//! `bench/proxy`: the service proxy's data plane (ClusterIP against the pod IP,
//! 10,000 services against one, and across two nodes per pod network backend)
//! and control plane (programming 10,000 services, single endpoint changes),
//! each beside a floor measured in the same run. See `bench/README.md`.
//!
//! The binary re-executes itself inside a network namespace it creates (the
//! "node", see `skiff_bench::netns`); the inner run makes pod namespaces
//! joined to it by veths, starts the real API server and the real proxier
//! in-process, and runs itself again inside the pods as the HTTP server, the
//! load generator and the prober (hidden subcommands).

mod cluster;
mod control;
mod crossnode;
mod dataplane;
mod nft;
mod results;
mod topo;
mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use skiff_bench::netns;
use skiff_bench::runtime::runtime;

use crate::cluster::{ApiServer, Proxy, SERVICE_PORT};
use crate::topo::{server_ip, Topology, SERVER_PORT};

/// Benchmark the service proxy against the bare paths and `nft` itself.
#[derive(Parser, Debug, Clone)]
#[command(name = "proxy")]
struct Args {
    /// Services programmed for the large phases (4 endpoints each; one of them
    /// is the data-plane target with one endpoint).
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    /// Single endpoint changes timed with all services present.
    #[arg(long, default_value_t = 100)]
    changes: usize,
    /// Data-plane rounds per comparison (each round runs both sides). Many
    /// short rounds rather than a few long ones: this machine's speed drifts
    /// by tens of percent over seconds, and the median of many closely paired
    /// rounds follows the difference between the paths, not the drift.
    #[arg(long, default_value_t = 30)]
    rounds: usize,
    /// Seconds per load-generator run.
    #[arg(long, default_value_t = 0.5)]
    seconds: f64,
    /// Concurrent connections (keep-alive) or connection loops (new connections).
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Concurrent API clients creating the services.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Only the cross-node phases (a client pod on this node, a server pod on
    /// a second node, host-gw and VXLAN): no 10,000-service phases.
    #[arg(long)]
    cross_node_only: bool,
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
    /// HTTP server answering its pod's name.
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        id: String,
        #[arg(long)]
        port: u16,
    },
    /// The load generator; prints `requests errors elapsed_ns`.
    #[command(hide = true)]
    Load {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long)]
        source: std::net::Ipv4Addr,
        #[arg(long, value_enum)]
        mode: wire::Mode,
        #[arg(long)]
        workers: usize,
        #[arg(long)]
        millis: u64,
    },
    /// Waits for addresses to answer with a given body (commands on stdin).
    #[command(hide = true)]
    Probe,
    /// Makes the VXLAN device in this (node B's) namespace, as the agent does.
    #[command(hide = true)]
    VxlanSetup {
        #[arg(long)]
        node: String,
        #[arg(long)]
        node_ip: std::net::Ipv4Addr,
        #[arg(long)]
        cidr: String,
    },
}

impl Args {
    /// The command that reproduces this run, every size spelled out.
    fn command_line(&self) -> String {
        if self.cross_node_only {
            return format!(
                "cargo run --release -p skiff-bench --bin proxy -- --cross-node-only \
                 --rounds {} --seconds {} --workers {}",
                self.rounds, self.seconds, self.workers
            );
        }
        format!(
            "cargo run --release -p skiff-bench --bin proxy -- --services {} --changes {} \
             --rounds {} --seconds {} --workers {} --concurrency {}",
            self.services, self.changes, self.rounds, self.seconds, self.workers, self.concurrency
        )
    }

    fn shape(&self) -> dataplane::Shape {
        dataplane::Shape {
            rounds: self.rounds,
            seconds: self.seconds,
            workers: self.workers,
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    skiff_bench::logging::init();
    let result = match (&args.helper, &args.inner) {
        (Some(helper), _) => run_helper(helper.clone()).map(|()| ExitCode::SUCCESS),
        (None, None) => netns::run_outer("skiff-bench-proxy"),
        (None, Some(ns)) => inner(ns, &args).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| {
        eprintln!("bench/proxy: error: {e:#}");
        ExitCode::FAILURE
    })
}

fn run_helper(helper: Helper) -> Result<()> {
    let rt = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    match helper {
        Helper::Serve { id, port } => rt()?.block_on(wire::serve(id, port)),
        Helper::Load {
            target,
            source,
            mode,
            workers,
            millis,
        } => rt()?.block_on(wire::load(
            target,
            source,
            mode,
            workers,
            Duration::from_millis(millis),
        )),
        Helper::Probe => wire::probe(),
        Helper::VxlanSetup {
            node,
            node_ip,
            cidr,
        } => rt()?.block_on(crossnode::vxlan_setup(&node, node_ip, &cidr)),
    }
}

/// Removes the floor's table however the run ends.
struct FloorTable;

impl Drop for FloorTable {
    fn drop(&mut self) {
        nft::delete_floor();
    }
}

fn inner(ns: &str, args: &Args) -> Result<()> {
    netns::verify_inside(ns)?;
    anyhow::ensure!(
        args.services >= 2 && args.rounds > 0 && args.workers > 0 && args.concurrency > 0,
        "--services must be at least 2; --rounds, --workers and --concurrency positive"
    );
    let dir = tempfile::Builder::new()
        .prefix("skiff-bench-proxy")
        .tempdir()?;
    // The API server and the proxier each get their own runtime, as separate
    // components would; the benchmark's own work runs on a third.
    let server_rt = runtime("apiserver", Some(2))?;
    let proxy_rt = runtime("proxy", Some(1))?;
    let bench_rt = runtime("bench", Some(1))?;
    // Helper processes are tokio children of the benchmark's runtime.
    let entered = bench_rt.enter();
    let mut topo = Topology::create(ns, 5)?;
    for i in 1..=5 {
        topo.start_server(i)?;
    }
    topo.add_node_b()?;
    let _floor = FloorTable;
    let result = bench_rt.block_on(async {
        let mut prober = topo.prober()?;
        let api = ApiServer::start(&server_rt, dir.path()).await?;
        let r = tokio::select! {
            r = measure(args, &topo, &mut prober, &api, &proxy_rt) => r,
            r = netns::interrupted() => r.and_then(|()| Err(anyhow::anyhow!("interrupted"))),
        };
        api.stop();
        r
    });
    // Drops whatever proxier is left (its table goes with it).
    proxy_rt.shutdown_timeout(Duration::from_secs(5));
    server_rt.shutdown_timeout(Duration::from_secs(2));
    drop(topo);
    drop(entered);
    bench_rt.shutdown_timeout(Duration::from_secs(2));
    let (sections, table) = result?;
    println!("\n{table}");
    if args.no_docs {
        eprintln!("not recording (--no-docs)");
    } else {
        for (heading, section) in sections {
            skiff_bench::report::write_section(&args.docs, heading, &section)?;
        }
        eprintln!("recorded in {}", args.docs.display());
    }
    drop(dir);
    Ok(())
}

/// The docs sections (heading, text) a run writes.
type Sections = Vec<(&'static str, String)>;

/// Every phase in order; returns the docs sections and the printed tables.
async fn measure(
    args: &Args,
    topo: &Topology,
    prober: &mut topo::Prober,
    api: &ApiServer,
    proxy_rt: &tokio::runtime::Runtime,
) -> Result<(Sections, String)> {
    api.create_namespace().await?;
    let proxy = Proxy::start(proxy_rt, api);
    if args.cross_node_only {
        let cross = crossnode::measure(topo, prober, api, args.shape()).await?;
        proxy.stop().await;
        let (section, printed) = results::render_cross(&cross, &args.command_line(), args.shape());
        return Ok((vec![(results::CROSS_HEADING, section)], printed));
    }
    let web_ip = api.create_service(cluster::WEB, &[1]).await?;
    let vip = SocketAddr::from((web_ip, SERVICE_PORT));
    let pod = SocketAddr::from((server_ip(1), SERVER_PORT));
    prober
        .wait_for(&vip.to_string(), &topo::server_name(1))
        .await
        .context("the first service never answered through its ClusterIP")?;

    eprintln!("data plane with 1 service (client {})", topo.client_ns());
    let small = dataplane::phase(topo, vip, pod, args.shape()).await?;
    let cross = crossnode::measure(topo, prober, api, args.shape()).await?;

    let bulk_count = args.services - 1;
    eprintln!(
        "creating {bulk_count} more services x {} endpoints through the API ({} clients), proxy running",
        control::BULK_ENDPOINTS.len(),
        args.concurrency
    );
    let bulk = control::create_bulk(api, prober, bulk_count, args.concurrency).await?;
    eprintln!(
        "  writes {:?}, live {:?}; proxy (full, failed) syncs so far {:?}",
        bulk.writes,
        bulk.live,
        proxy.syncs()
    );
    let endpoints = bulk_count * control::BULK_ENDPOINTS.len() + 1;
    control::wait_complete(args.services, endpoints).await?;

    eprintln!(
        "cold start: proxy restarted over {} services",
        args.services
    );
    let last_ip = bulk.services.last().map(|s| s.1).context("no services")?;
    let cold = control::cold_start(api, proxy_rt, proxy, prober, last_ip).await?;
    control::wait_complete(args.services, endpoints).await?;

    eprintln!("data plane with {} services", args.services);
    let large = dataplane::phase(topo, vip, pod, args.shape()).await?;

    eprintln!("{} single endpoint changes", args.changes);
    let changes = control::endpoint_changes(api, prober, &bulk.services, args.changes).await?;
    cold.proxy.stop().await;

    let results = results::Results {
        services: args.services,
        concurrency: args.concurrency,
        small,
        large,
        bulk,
        cold_live: cold.live,
        cold_floor: cold.floor,
        changes,
    };
    let (section, printed) = results::render(&results, &args.command_line(), args.shape());
    let (cross_section, cross_printed) =
        results::render_cross(&cross, &args.command_line(), args.shape());
    Ok((
        vec![
            (results::HEADING, section),
            (results::CROSS_HEADING, cross_section),
        ],
        format!("{printed}\n\n{cross_printed}"),
    ))
}
