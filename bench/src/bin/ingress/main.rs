//! `bench/ingress`: HTTP through skiff's ingress beside the same requests sent
//! straight to the pods and through Debian's nginx configured as a reverse proxy
//! to the same pod IPs, in the same run; and how soon an Ingress edit is live
//! (beside nginx's reload). See `bench/README.md`.
//!
//! The binary re-executes itself inside a network namespace it creates (see
//! `skiff_bench::netns`); the inner run starts the real `skiff server` there
//! (the binary beside this one), whose agent runs the backend pods as host
//! programs: this binary again, as the hidden `serve` subcommand.

mod backend;
mod cluster;
mod load;
mod nginx;
mod results;
mod route_change;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use skiff_bench::netns;
use skiff_bench::runtime::runtime;

/// Benchmark the ingress against direct requests and nginx.
#[derive(Parser, Debug, Clone)]
#[command(name = "ingress")]
struct Args {
    /// Concurrent keep-alive connections of the load generator.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Rounds per comparison; each round loads all three paths, in a rotating order.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Seconds each path is loaded per round.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Replicas of each of the two backend Deployments.
    #[arg(long, default_value_t = 2)]
    replicas: usize,
    /// Live route changes timed (Ingress edits, and as many nginx reloads).
    #[arg(long, default_value_t = 50)]
    changes: usize,
    /// The skiff binary (default: `skiff` beside this binary).
    #[arg(long)]
    skiff: Option<PathBuf>,
    /// The nginx binary.
    #[arg(long, default_value = "/usr/sbin/nginx")]
    nginx: PathBuf,
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

/// What the benchmark's pods run.
#[derive(Subcommand, Debug, Clone)]
enum Helper {
    /// HTTP/1.1 server answering with its pod's hostname.
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        port: u16,
    },
}

impl Args {
    /// The command that reproduces this run, every setting spelled out.
    pub fn command_line(&self) -> String {
        format!(
            "cargo build --release -p skiff-bench -p skiff && \
             target/release/ingress --connections {} --rounds {} --seconds {} --replicas {} --changes {}",
            self.connections, self.rounds, self.seconds, self.replicas, self.changes
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
        (Some(Helper::Serve { port }), _) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(backend::serve(*port)))
            .map(|()| ExitCode::SUCCESS),
        (None, None) => netns::run_outer("skiff-bench-ingress"),
        (None, Some(ns)) => inner(ns, &args).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| {
        eprintln!("bench/ingress: error: {e:#}");
        ExitCode::FAILURE
    })
}

fn inner(ns: &str, args: &Args) -> Result<()> {
    netns::verify_inside(ns)?;
    anyhow::ensure!(
        args.connections > 0 && args.rounds > 0 && args.replicas > 0 && args.seconds > 0.0,
        "--connections, --rounds, --replicas and --seconds must be positive"
    );
    anyhow::ensure!(
        args.nginx.is_file(),
        "no nginx at {} (scripts/deps installs Debian's)",
        args.nginx.display()
    );
    let skiff = args.skiff_bin()?;
    let dir = tempfile::Builder::new()
        .prefix("skiff-bench-ingress")
        .tempdir()?;
    // One thread for the load generator: the same client cost for all three paths.
    let rt = runtime("bench", Some(1))?;
    let outcome = rt.block_on(async {
        tokio::select! {
            r = measure(args, &skiff, dir.path()) => r,
            r = netns::interrupted() => r.and_then(|()| Err(anyhow::anyhow!("interrupted"))),
        }
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    let (section, printed) = outcome?;
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

/// The whole run; returns the docs section and what is printed.
async fn measure(
    args: &Args,
    skiff: &std::path::Path,
    dir: &std::path::Path,
) -> Result<(String, String)> {
    let cluster = cluster::Cluster::start(skiff, dir, args.replicas).await?;
    let pods = cluster.deploy().await?;
    eprintln!(
        "backends: echo-a {:?}, echo-b {:?}; ingress at {}",
        pods.a, pods.b, cluster.ingress_addr
    );
    let nginx = nginx::Nginx::start(&args.nginx, dir, &pods, &[]).await?;
    let shape = load::Shape {
        connections: args.connections,
        duration: Duration::from_secs_f64(args.seconds),
    };
    let compared = load::compare(&cluster, &nginx, &pods, shape, args.rounds).await?;
    eprintln!("{} live route changes", args.changes);
    let changes = route_change::measure(&cluster, nginx, args.changes).await?;
    cluster.stop().await;
    Ok(results::render(args, &compared, &changes))
}
