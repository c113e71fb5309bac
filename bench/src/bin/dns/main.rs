//! `bench/dns`: skiff's cluster DNS against Knot DNS and dnsmasq serving the same
//! records, driven by dnsperf with a query mix like upstream's perf tests, and DNS
//! programming latency (API write to the first answer that reflects it) beside the
//! API write alone. See `bench/README.md`.
//!
//! The binary first re-executes itself inside a network namespace it creates (see
//! `skiff_bench::netns`). The inner run starts the API server in-process on a fresh
//! SQLite store, skiff's DNS in-process fed by it, and Knot and dnsmasq as child
//! processes, each on its own loopback address of that namespace.

mod check;
mod cluster;
mod dnsperf;
mod histogram;
mod peers;
mod programming;
mod records;
mod tables;
mod wire;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use skiff_bench::netns;
use skiff_bench::runtime::runtime;

use crate::records::{Records, Sizes, ZONE};

/// Where each server listens inside the namespace (port 53).
pub const SKIFF: &str = "127.0.0.2";
pub const KNOT: &str = "127.0.0.3";
pub const DNSMASQ: &str = "127.0.0.4";

/// Benchmark skiff's DNS against Knot DNS and dnsmasq, side by side.
#[derive(Parser, Debug, Clone)]
#[command(name = "dns")]
pub struct Args {
    /// ClusterIP services, each with a named port (A and SRV records).
    #[arg(long, default_value_t = 1_000)]
    services: usize,
    /// Headless services of 3 named endpoints each (StatefulSet-style).
    #[arg(long, default_value_t = 100)]
    headless: usize,
    /// Namespaces the services are spread over.
    #[arg(long, default_value_t = 10)]
    namespaces: usize,
    /// Seconds of dnsperf per server and round, at full speed.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Throughput rounds; each round runs every server, in a rotating order.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// dnsperf clients (`-c`), each with up to 100 queries outstanding.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// The fixed rate (queries per second) latency percentiles are taken at.
    #[arg(long, default_value_t = 2_000)]
    rate: u64,
    /// Seconds of dnsperf per server at the fixed rate.
    #[arg(long, default_value_t = 5)]
    latency_seconds: u64,
    /// EndpointSlice changes timed, and as many Service creates.
    #[arg(long, default_value_t = 200)]
    changes: usize,
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
            "cargo run --release -p skiff-bench --bin dns -- --services {} --headless {} \
             --namespaces {} --seconds {} --rounds {} --clients {} --rate {} \
             --latency-seconds {} --changes {}",
            self.services,
            self.headless,
            self.namespaces,
            self.seconds,
            self.rounds,
            self.clients,
            self.rate,
            self.latency_seconds,
            self.changes
        )
    }

    fn sizes(&self) -> Sizes {
        Sizes {
            services: self.services,
            headless: self.headless,
            namespaces: self.namespaces,
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    skiff_bench::logging::init();
    let result = match &args.inner {
        None => netns::run_outer("skiff-bench"),
        Some(ns) => inner(ns, &args).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| {
        eprintln!("bench/dns: error: {e:#}");
        ExitCode::FAILURE
    })
}

fn inner(ns: &str, args: &Args) -> Result<()> {
    netns::verify_inside(ns)?;
    anyhow::ensure!(
        args.services > 0 && args.headless > 0 && args.rounds > 0 && args.changes > 0,
        "--services, --headless, --rounds and --changes must be positive"
    );
    let dir = tempfile::Builder::new()
        .prefix("skiff-bench-dns")
        .tempdir()?;
    let data_dir = dir.path().join("server");
    std::fs::create_dir_all(&data_dir)?;

    // The API server and the DNS server each get their own runtime (one worker per
    // core, as `skiff server` has), so neither can starve the other's scheduler.
    let api_rt = runtime("api", None)?;
    let dns_rt = runtime("dns", None)?;
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    let api = api_rt.block_on(cluster::start_api(&data_dir))?;
    let skiff_addr = SocketAddr::new(SKIFF.parse()?, 53);
    let dns = dns_rt.spawn(cluster::run_dns(api.kubeconfig.clone(), skiff_addr));
    eprintln!("API server and skiff's DNS ({skiff_addr}) running inside netns {ns}");

    let result = client_rt.block_on(async {
        tokio::select! {
            r = measure(args, &api.server, dir.path()) => r,
            r = dns => Err(match r {
                Ok(Err(e)) => e.context("skiff's DNS stopped"),
                Ok(Ok(())) => anyhow!("skiff's DNS stopped"),
                Err(e) => anyhow!(e).context("skiff's DNS panicked"),
            }),
            r = netns::interrupted() => r.and_then(|()| Err(anyhow!("interrupted"))),
        }
    });
    api.stop();
    client_rt.shutdown_timeout(Duration::from_secs(2));
    dns_rt.shutdown_timeout(Duration::from_secs(2));
    api_rt.shutdown_timeout(Duration::from_secs(2));
    let (section, printed) = result?;
    println!("\n{printed}");
    if args.no_docs {
        eprintln!("not recording (--no-docs)");
    } else {
        skiff_bench::report::write_section(&args.docs, tables::HEADING, &section)?;
        eprintln!("recorded in {}", args.docs.display());
    }
    drop(dir);
    Ok(())
}

/// Runs every phase; returns the docs section and the printed tables.
async fn measure(
    args: &Args,
    server: &skiff_bench::client::Server,
    dir: &Path,
) -> Result<(String, String)> {
    let records = Records::new(args.sizes());
    eprintln!(
        "writing {} services and {} headless services with their EndpointSlices through the API",
        args.services, args.headless
    );
    cluster::populate(server, &records, &[programming::NAMESPACE], 4).await?;
    programming::setup(server).await?;
    let skiff_addr = SocketAddr::new(SKIFF.parse()?, 53);
    let last = records.services.last().context("no services")?;
    let last_headless = records.headless.last().context("no headless services")?;
    cluster::wait_for(
        skiff_addr,
        &format!("{}.{}.svc.{ZONE}", last.name, last.namespace),
        1,
    )
    .await?;
    cluster::wait_for(
        skiff_addr,
        &format!(
            "{}.{}.svc.{ZONE}",
            last_headless.name, last_headless.namespace
        ),
        records::HEADLESS_ENDPOINTS,
    )
    .await?;

    // Knot gets as many UDP workers as skiff has UDP sockets (one per core).
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut knot = peers::knot(dir, &records, KNOT, workers)?;
    let mut dnsmasq = peers::dnsmasq(dir, &records, DNSMASQ)?;
    let probe = format!("{}.{}.svc.{ZONE}", last.name, last.namespace);
    peers::wait_answers("Knot DNS", KNOT, &probe, || knot.check_running())?;
    peers::wait_answers("dnsmasq", DNSMASQ, &probe, || dnsmasq.check_running())?;

    let queries_text = records.queries(10_000);
    let queries = dir.join("queries.txt");
    std::fs::write(&queries, &queries_text)?;
    let servers = [("skiff", SKIFF), ("Knot DNS", KNOT), ("dnsmasq", DNSMASQ)];
    // One query of each kind in the mix (it repeats every 20 lines), and a few more.
    let sample: Vec<&str> = queries_text.lines().take(40).collect();
    let compared = check::same_answers(&servers, &sample)?;
    eprintln!("all three servers give the same answers to {compared} sample queries");

    let throughput = tables::throughput(args, &servers, &queries)?;
    knot.check_running()?;
    dnsmasq.check_running()?;
    let latency = tables::latency(args, &servers, &queries)?;

    eprintln!(
        "programming latency: {} EndpointSlice changes and {} Service creates",
        args.changes, args.changes
    );
    let programmed = programming::measure(
        server,
        skiff_addr,
        SocketAddr::new(skiff_addr.ip(), 9153),
        args.changes,
    )
    .await?;
    let versions = peers::versions();
    tables::render(args, &records, &versions, throughput, latency, programmed)
}
