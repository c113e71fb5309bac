//! Command line: `skiff server` starts the store and the API server (and, as they
//! land, the other components) in dependency order.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use skiff_store::{Backend, MemoryBackend, SqliteBackend};

#[derive(Parser, Debug)]
#[command(
    name = "skiff",
    version,
    about = "Kubernetes service networking in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a single-node cluster: store and API server.
    Server(Box<ServerArgs>),
    /// List the images in the node's image store, with their size.
    Images(crate::images::StoreArgs),
    /// Manage the node's image store.
    #[command(subcommand)]
    Image(crate::images::ImageCommand),
    /// Manage join tokens: the credentials `skiff agent --token` joins a node with.
    #[command(subcommand)]
    Token(crate::token::TokenCommand),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum StoreKind {
    /// Embedded SQLite in the data directory (durable).
    Sqlite,
    /// In memory; everything is lost when skiff stops.
    Memory,
}

#[derive(Parser, Debug)]
struct ServerArgs {
    /// Where the store, credentials and kubeconfig live.
    #[arg(long, default_value = "/var/lib/skiff", env = "SKIFF_DATA_DIR")]
    data_dir: PathBuf,
    /// Address of the API server (HTTPS).
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Storage backend.
    #[arg(long, value_enum, default_value = "sqlite")]
    store: StoreKind,
    /// How often the store's superseded history is compacted, e.g. `5m`, `30s`.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    compact_interval: std::time::Duration,
    /// Revisions of history kept by compaction; watches further behind must relist (410).
    #[arg(long, default_value_t = 1000)]
    compact_keep: i64,
    /// Service ClusterIP range (IPv4 CIDR, at most a /12). `default/kubernetes` gets
    /// its first address, `kube-system/kube-dns` its tenth.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cidr: String,
    /// NodePort range, `FROM-TO`.
    #[arg(long, default_value = "30000-32767")]
    service_node_port_range: String,
    /// Addresses the built-in load balancer gives LoadBalancer services (IPv4 CIDR).
    /// The default, TEST-NET-2 (RFC 5737), is reserved for documentation and routed
    /// nowhere.
    #[arg(long, default_value = skiff_apiserver::services::DEFAULT_LB_POOL)]
    lb_pool: String,
    /// Name of this node (its Node object).
    #[arg(long, default_value_t = default_node_name(), env = "SKIFF_NODE_NAME")]
    node_name: String,
    /// This node's address as other hosts reach it (default: first non-loopback IPv4).
    #[arg(long)]
    node_ip: Option<std::net::IpAddr>,
    /// Cluster pod network; each node gets a /24 of it.
    #[arg(long, default_value = "10.244.0.0/16")]
    pod_cidr: String,
    /// The cluster's DNS zone.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Address of the cluster DNS service (pods' nameserver).
    #[arg(long, default_value = "10.96.0.10")]
    cluster_dns: std::net::IpAddr,
    /// DNS resolvers for names outside the cluster domain, `ADDR[:PORT]`, repeatable or
    /// comma-separated (default: the nameservers in the node's /etc/resolv.conf).
    #[arg(long = "upstream", value_name = "ADDR[:PORT]", value_delimiter = ',', value_parser = skiff_dns::parse_upstream)]
    upstream: Vec<SocketAddr>,
    /// Components not to start, comma-separated: controllers, agent, proxy, dns, netpol.
    #[arg(long, value_delimiter = ',')]
    disable: Vec<String>,
    /// Run the built-in catalog's host programs instead of pulling images: for
    /// demos on a machine with no registry at all. Pods then run on the node's own
    /// filesystem, not isolated from it.
    #[arg(long)]
    host_images: bool,
    /// Registry mirrors, rewrites and credentials (k3s `registries.yaml` format).
    #[arg(long, default_value = crate::images::DEFAULT_REGISTRY_CONFIG, env = "SKIFF_REGISTRY_CONFIG")]
    registry_config: PathBuf,
    /// Disk usage (percent of the image store's filesystem) above which unused
    /// images are garbage-collected (kubelet's `--image-gc-high-threshold`).
    #[arg(long, default_value_t = 85, value_parser = clap::value_parser!(u8).range(1..=100))]
    image_gc_high_threshold: u8,
    /// Disk usage that image garbage collection frees down to (`--image-gc-low-threshold`).
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(1..=100))]
    image_gc_low_threshold: u8,
    /// Log filter, e.g. `info` or `skiff_apiserver=debug`.
    #[arg(long, default_value = "info", env = "SKIFF_LOG")]
    log: String,
}

fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_ascii_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "skiff-node".to_string())
}

/// `90s`, `5m`, `1h` or plain seconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 30s, 5m, 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("invalid duration {s:?}: expected e.g. 30s, 5m, 1h")),
    };
    if secs == 0 {
        return Err("duration must be at least 1s".into());
    }
    Ok(std::time::Duration::from_secs(secs))
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => {
            init_logs(&args.log);
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => return fail(&anyhow::anyhow!(e).context("cannot start the runtime")),
            };
            match rt.block_on(server(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        Command::Images(args) => match crate::images::list(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
        Command::Image(cmd) => match crate::images::run(cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
        Command::Token(cmd) => match crate::token::run(cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
    }
}

fn fail(e: &anyhow::Error) -> ExitCode {
    // One line: the chain of causes, outermost first.
    eprintln!("skiff: error: {e:#}");
    ExitCode::FAILURE
}

fn init_logs(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn open_store(args: &ServerArgs) -> Result<Arc<dyn Backend>> {
    Ok(match args.store {
        StoreKind::Memory => Arc::new(MemoryBackend::new()),
        StoreKind::Sqlite => {
            std::fs::create_dir_all(&args.data_dir)
                .with_context(|| format!("data dir {} is not usable", args.data_dir.display()))?;
            let path = args.data_dir.join("state.db");
            Arc::new(
                SqliteBackend::open(&path)
                    .with_context(|| format!("cannot open the store at {}", path.display()))?,
            )
        }
    })
}

async fn server(args: ServerArgs) -> Result<()> {
    if args.image_gc_low_threshold > args.image_gc_high_threshold {
        anyhow::bail!(
            "--image-gc-low-threshold ({}) must not be above --image-gc-high-threshold ({})",
            args.image_gc_low_threshold,
            args.image_gc_high_threshold
        );
    }
    let services = skiff_apiserver::services::Settings::parse(
        &args.service_cidr,
        &args.service_node_port_range,
        &args.lb_pool,
    )
    .map_err(anyhow::Error::msg)?;
    tracing::info!(data_dir = %args.data_dir.display(), store = ?args.store, "starting skiff");
    let backend = open_store(&args)?;
    let running = skiff_apiserver::start(
        skiff_apiserver::Config {
            listen: args.listen,
            data_dir: args.data_dir.clone(),
            compact_interval: args.compact_interval,
            compact_keep: args.compact_keep,
            services,
        },
        backend,
    )
    .await?;
    let client = crate::components::client(&running.kubeconfig).await?;
    let node = crate::components::NodeSettings {
        node_name: args.node_name.clone(),
        node_ip: args.node_ip,
        pod_cidr: args.pod_cidr.clone(),
        service_cidr: args.service_cidr.clone(),
        cluster_domain: args.cluster_domain.clone(),
        cluster_dns: args.cluster_dns,
        dns_upstreams: args.upstream.clone(),
        disabled: args.disable.clone(),
        data_dir: args.data_dir.clone(),
        host_images: args.host_images,
        registry_config: Some(args.registry_config.clone()),
        image_gc_thresholds: (args.image_gc_high_threshold, args.image_gc_low_threshold),
        agent_tls: None,
    };
    let components = crate::components::start(&client, &node);
    for (name, _) in &components {
        tracing::info!(component = name, "started");
    }
    println!(
        "skiff is running. To use it:\n  export KUBECONFIG={}\n  kubectl get namespaces",
        running.kubeconfig.display()
    );
    match &running.join_token {
        Some(t) => println!(
            "To join another node (the token is also in {}):\n  skiff agent --server {} --token {t}",
            running.join_token_file.display(),
            running.url
        ),
        None => println!(
            "The default join token was deleted or has expired; make one with `skiff token create`."
        ),
    }
    let stopper = running.stopper();
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        Ok::<(), std::io::Error>(())
    };
    tokio::select! {
        r = shutdown => {
            r?;
            tracing::info!("shutting down");
            stopper.stop();
            Ok(())
        }
        r = running.wait() => r,
    }
}
