//! Command line: `skiff server` starts the store and the API server (and, as they
//! land, the other components) in dependency order.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use skiff_store::{Backend, EtcdBackend, EtcdConfig, EtcdTls, MemoryBackend, SqliteBackend};

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
    /// Run a cluster: store, API server, controllers, and this machine as its first node.
    Server(Box<ServerArgs>),
    /// Run a node that joins a cluster (`--server URL --token TOKEN`).
    Agent(Box<crate::agent::AgentArgs>),
    /// Start a local multi-node cluster on this machine, each node in its own
    /// network namespace on a bridge (for development and tests).
    Up(Box<crate::up::UpArgs>),
    /// Remove a local cluster made by `skiff up`: its nodes, pods and links.
    Down(crate::up::ClusterRef),
    /// List the images in the node's image store, with their size.
    Images(crate::images::StoreArgs),
    /// Manage the node's image store.
    #[command(subcommand)]
    Image(crate::images::ImageCommand),
    /// Manage join tokens: the credentials `skiff agent --token` joins a node with.
    #[command(subcommand)]
    Token(crate::token::TokenCommand),
    /// Print a kubeconfig for a new user (a client certificate signed by the
    /// cluster CA in `--data-dir`): `--user NAME [--group GROUP]...`.
    Kubeconfig(crate::kubeconfig::KubeconfigArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StoreKind {
    /// Embedded SQLite in the data directory (durable).
    Sqlite,
    /// In memory; everything is lost when skiff stops.
    Memory,
    /// An etcd v3 cluster (`--etcd-endpoints`): the cluster's state outlives any one
    /// machine, and several servers can share it.
    Etcd,
}

#[derive(Parser, Debug)]
struct ServerArgs {
    /// Where the store, credentials and kubeconfig live.
    #[arg(long, default_value = "/var/lib/skiff", env = "SKIFF_DATA_DIR")]
    data_dir: PathBuf,
    /// Address of the API server (HTTPS).
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Storage backend [default: sqlite; etcd with `--cluster-init`, with `--server`
    /// to a cluster that runs embedded etcd, and in a data directory that holds an
    /// embedded etcd member].
    #[arg(long, value_enum)]
    store: Option<StoreKind>,
    /// How often the store's superseded history is compacted, e.g. `5m`, `30s`.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    compact_interval: std::time::Duration,
    /// Revisions of history kept by compaction; watches further behind must relist (410).
    #[arg(long, default_value_t = 1000)]
    compact_keep: i64,
    /// etcd client URLs for `--store etcd`, comma-separated (`https://` with TLS).
    #[arg(
        long,
        value_name = "URL,...",
        value_delimiter = ',',
        alias = "etcd-servers"
    )]
    etcd_endpoints: Vec<String>,
    /// Where this cluster's keys live in etcd: `/skiff/registry/pods/default/web`. The
    /// store's keys already begin with upstream's `/registry/`, so the prefix goes in
    /// front of them (and never overlaps a kube-apiserver's data in a shared etcd).
    #[arg(long, default_value = "/skiff")]
    etcd_prefix: String,
    /// CA certificate (PEM) that verifies the etcd servers.
    #[arg(long, value_name = "FILE")]
    etcd_cafile: Option<PathBuf>,
    /// Client certificate (PEM) presented to etcd; needs `--etcd-keyfile`.
    #[arg(long, value_name = "FILE")]
    etcd_certfile: Option<PathBuf>,
    /// Private key (PEM) of `--etcd-certfile`.
    #[arg(long, value_name = "FILE")]
    etcd_keyfile: Option<PathBuf>,
    /// NodePort range, `FROM-TO`.
    #[arg(long, default_value = "30000-32767")]
    service_node_port_range: String,
    /// Addresses the built-in load balancer gives LoadBalancer services (IPv4 CIDR).
    /// The default, TEST-NET-2 (RFC 5737), is reserved for documentation and routed
    /// nowhere.
    #[arg(long, default_value = skiff_apiserver::services::DEFAULT_LB_POOL)]
    lb_pool: String,
    #[command(flatten)]
    node: crate::node_flags::NodeArgs,
    #[command(flatten)]
    join: crate::server_join::ServerJoinArgs,
    /// The ingress component's plain HTTP (and h2c) port, on the node's address
    /// (`kube-system/skiff-ingress` port 80 leads here).
    #[arg(long, default_value_t = 80)]
    ingress_http_port: u16,
    /// The ingress component's HTTPS port (`kube-system/skiff-ingress` port 443).
    #[arg(long, default_value_t = 443)]
    ingress_https_port: u16,
    /// The ingress component's Prometheus metrics port (`/metrics`).
    #[arg(long, default_value_t = 10254)]
    ingress_metrics_port: u16,
    /// Prefix length of each node's pod range, cut from `--pod-cidr`.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u8).range(8..=30))]
    node_cidr_mask_size: u8,
    /// How long a node may go without renewing its Lease before it is marked
    /// `Ready=Unknown`, tainted unreachable and its pods' endpoints dropped.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: std::time::Duration,
    /// Run the controllers only while this server holds the
    /// `kube-system/kube-controller-manager` Lease, as upstream's `--leader-elect`:
    /// for several servers on one etcd. Off by default: a lone server needs no
    /// election, and after an unclean restart would wait out its old Lease.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false)]
    leader_elect: bool,
    /// How long a standby waits after the leader's last renewal before taking over.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    leader_elect_lease_duration: std::time::Duration,
    /// How long the leader keeps trying to renew before it stops its controllers.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    leader_elect_renew_deadline: std::time::Duration,
    /// How often candidates try to acquire, and the leader to renew, the Lease.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    leader_elect_retry_period: std::time::Duration,
    /// A further name or address the API server's certificate covers, for nodes on
    /// other machines to dial (repeatable; the listen address is always covered).
    #[arg(long = "tls-san", value_name = "NAME|IP")]
    tls_san: Vec<String>,
    /// Seconds a new pod tolerates its node being not ready before it is evicted
    /// (the `DefaultTolerationSeconds` admission plugin's default).
    #[arg(long, default_value_t = skiff_api::admission::DEFAULT_TOLERATION_SECONDS)]
    default_not_ready_toleration_seconds: i64,
    /// Seconds a new pod tolerates its node being unreachable before it is evicted.
    #[arg(long, default_value_t = skiff_api::admission::DEFAULT_TOLERATION_SECONDS)]
    default_unreachable_toleration_seconds: i64,
    /// Log filter, e.g. `info` or `skiff_apiserver=debug`.
    #[arg(long, default_value = "info", env = "SKIFF_LOG")]
    log: String,
    /// Write the audit log here: one `audit.k8s.io/v1` Event per line, as
    /// kube-apiserver writes it (`-`: standard output). No audit log without it.
    #[arg(long, value_name = "PATH")]
    audit_log_path: Option<PathBuf>,
    /// The audit policy: an `audit.k8s.io/v1` `Policy` (YAML or JSON) whose first
    /// matching rule sets a request's level. Without one, every request is logged at
    /// level Metadata.
    #[arg(long, value_name = "FILE")]
    audit_policy_file: Option<PathBuf>,
    /// Megabytes the audit log file grows to before it is rotated (0: 100).
    #[arg(long, value_name = "MB", default_value_t = 0)]
    audit_log_maxsize: u64,
    /// Rotated audit log files kept, the oldest removed first (0: all).
    #[arg(long, value_name = "N", default_value_t = 0)]
    audit_log_maxbackup: usize,
}

/// `--audit-*`: the audit log's settings, `None` without `--audit-log-path`. A bad
/// `--audit-policy-file` refuses the start even so, as upstream's does.
fn audit_settings(args: &ServerArgs) -> Result<Option<skiff_apiserver::audit::Settings>> {
    let path = args.audit_log_path.clone().unwrap_or_else(|| "-".into());
    let mut settings =
        skiff_apiserver::audit::Settings::load(path, args.audit_policy_file.as_deref())?;
    settings.max_size_mb = args.audit_log_maxsize;
    settings.max_backups = args.audit_log_maxbackup;
    Ok(args.audit_log_path.is_some().then_some(settings))
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
        Command::Agent(args) => {
            init_logs(args.log_filter());
            block_on(crate::agent::run(*args))
        }
        Command::Up(args) => {
            init_logs("warn");
            block_on(crate::up::up(*args))
        }
        Command::Down(c) => match crate::up::down(c) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
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
        Command::Kubeconfig(args) => match crate::kubeconfig::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
    }
}

/// Runs `f` to completion on a new runtime: success, or the error on one line.
fn block_on(f: impl std::future::Future<Output = Result<()>>) -> ExitCode {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow::anyhow!(e).context("cannot start the runtime")),
    };
    match rt.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
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
    // Colours only on a terminal: a log redirected to a file (systemd, a test's
    // skiff.log) stays plain text that grep and readers can use.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
}

/// Where this server's state lives, from its flags and whether its data
/// directory already holds an embedded etcd member (`has_member`).
#[derive(Debug, PartialEq, Eq)]
enum StorePlan {
    /// `--store` (SQLite when not given), this server's own or an external etcd.
    Own(StoreKind),
    /// An embedded etcd member: a new cluster's (`--cluster-init`), or one that
    /// has data already (a restart, with or without the flags it was made with).
    Embedded { new: bool },
    /// `--server`: the first server's answer decides between an etcd member of
    /// this server's own and the external etcd of `--etcd-endpoints`.
    Join { external: bool },
}

fn store_name(k: StoreKind) -> &'static str {
    match k {
        StoreKind::Sqlite => "sqlite",
        StoreKind::Memory => "memory",
        StoreKind::Etcd => "etcd",
    }
}

fn store_plan(args: &ServerArgs, has_member: bool) -> Result<StorePlan> {
    use anyhow::bail;
    let j = &args.join;
    let endpoints = !args.etcd_endpoints.is_empty();
    let etcd_tls =
        args.etcd_cafile.is_some() || args.etcd_certfile.is_some() || args.etcd_keyfile.is_some();
    let own_store = args.store.filter(|k| *k != StoreKind::Etcd);
    if j.cluster_init {
        if j.server.is_some() {
            bail!(
                "--cluster-init makes a new cluster and --server joins one: give only one of them"
            );
        }
        if j.token.is_some() {
            bail!("--token is for joining with --server; --cluster-init makes the cluster's token (<data-dir>/server-token)");
        }
        if let Some(k) = own_store {
            bail!(
                "--cluster-init runs an embedded etcd: it cannot be used with --store {}",
                store_name(k)
            );
        }
        if endpoints {
            bail!("--cluster-init runs its own etcd member: drop --etcd-endpoints (that is for an external etcd)");
        }
        if etcd_tls {
            bail!("--cluster-init signs its etcd certificates with the cluster CA: drop --etcd-cafile, --etcd-certfile and --etcd-keyfile");
        }
        return Ok(StorePlan::Embedded { new: !has_member });
    }
    if endpoints && args.store != Some(StoreKind::Etcd) {
        bail!("--etcd-endpoints needs --store etcd");
    }
    if j.server.is_some() {
        if let Some(k) = own_store {
            bail!("--server needs a store the servers share (the first server's embedded etcd, or --store etcd --etcd-endpoints), not --store {}", store_name(k));
        }
        if !endpoints && has_member {
            return Ok(StorePlan::Embedded { new: false });
        }
        return Ok(StorePlan::Join {
            external: endpoints,
        });
    }
    Ok(match args.store {
        None | Some(StoreKind::Etcd) if !endpoints && has_member => {
            StorePlan::Embedded { new: false }
        }
        None => StorePlan::Own(StoreKind::Sqlite),
        Some(StoreKind::Etcd) if !endpoints => bail!(
            "--store etcd needs --etcd-endpoints URL,... (or --cluster-init for an etcd member of this server's own)"
        ),
        Some(k) => StorePlan::Own(k),
    })
}

/// The store to open.
enum StoreChoice {
    Memory,
    Sqlite,
    Etcd {
        endpoints: Vec<String>,
        tls: Option<EtcdTls>,
    },
}

/// The store `--store` and the `--etcd-*` flags name.
fn own_store(args: &ServerArgs, kind: StoreKind) -> StoreChoice {
    match kind {
        StoreKind::Memory => StoreChoice::Memory,
        StoreKind::Sqlite => StoreChoice::Sqlite,
        StoreKind::Etcd => {
            let files = [&args.etcd_cafile, &args.etcd_certfile, &args.etcd_keyfile];
            let tls = files.iter().any(|f| f.is_some()).then(|| EtcdTls {
                ca_file: args.etcd_cafile.clone(),
                cert_file: args.etcd_certfile.clone(),
                key_file: args.etcd_keyfile.clone(),
            });
            StoreChoice::Etcd {
                endpoints: args.etcd_endpoints.clone(),
                tls,
            }
        }
    }
}

/// Gets the store's place ready: fetches a joining server's bootstrap data,
/// starts the embedded etcd member (and waits until it answers). Returns the
/// store to open, and the member, which stops when dropped.
async fn prepare_store(args: &ServerArgs) -> Result<(StoreChoice, Option<Etcd>)> {
    let plan = store_plan(args, embedded_etcd::has_data(&args.data_dir))?;
    tracing::info!(?plan, "store");
    let mut join_urls = None;
    let start = match plan {
        StorePlan::Own(kind) => return Ok((own_store(args, kind), None)),
        StorePlan::Embedded { new: false } => Start::Restart,
        StorePlan::Embedded { new: true } => Start::New {
            token: format!("skiff-{}", cluster_id(&args.data_dir)?),
        },
        StorePlan::Join { external } => {
            let bundle = crate::server_join::fetch(&args.join)
                .await?
                .context("--server is missing")?;
            if !external && !bundle.embedded_etcd {
                anyhow::bail!("--server: that cluster's servers share an external etcd; give it with --store etcd --etcd-endpoints URL,...");
            }
            bundle.write(&args.data_dir)?;
            if external {
                return Ok((own_store(args, StoreKind::Etcd), None));
            }
            join_urls = Some(bundle.etcd_client_urls);
            Start::Restart
        }
    };
    let ip = match args.node.node_ip {
        Some(ip) => ip,
        None => skiff_agent::net::first_ipv4()
            .await
            .map(std::net::IpAddr::V4)
            .context("the embedded etcd needs this node's address: give --node-ip (no non-loopback IPv4 address found)")?,
    };
    let member = embedded_etcd::Member {
        name: args.node.node_name.clone(),
        ip,
        data_dir: args.data_dir.clone(),
    };
    let (ca, _) = skiff_apiserver::pki::ensure_ca(&args.data_dir)?;
    member.sign_certs(&ca)?;
    let start = match join_urls {
        Some(urls) => Start::Existing {
            initial_cluster: embedded_etcd::add_member(&member, &urls).await?,
        },
        None => start,
    };
    let mut etcd = Etcd::start(&member, &start)?;
    etcd.wait_ready().await?;
    embedded_etcd::advertise(&member)?;
    let choice = StoreChoice::Etcd {
        endpoints: vec![embedded_etcd::LOCAL_ENDPOINT.to_string()],
        tls: Some(member.store_tls()),
    };
    Ok((choice, Some(etcd)))
}

fn open_store(args: &ServerArgs, choice: StoreChoice) -> Result<Arc<dyn Backend>> {
    Ok(match choice {
        StoreChoice::Memory => Arc::new(MemoryBackend::new()),
        StoreChoice::Sqlite => {
            std::fs::create_dir_all(&args.data_dir)
                .with_context(|| format!("data dir {} is not usable", args.data_dir.display()))?;
            let path = args.data_dir.join("state.db");
            Arc::new(
                SqliteBackend::open(&path)
                    .with_context(|| format!("cannot open the store at {}", path.display()))?,
            )
        }
        StoreChoice::Etcd { endpoints, tls } => {
            std::fs::create_dir_all(&args.data_dir)
                .with_context(|| format!("data dir {} is not usable", args.data_dir.display()))?;
            let config = EtcdConfig {
                endpoints,
                prefix: args.etcd_prefix.clone(),
                cluster: cluster_id(&args.data_dir)?,
                tls,
                watch_capacity: skiff_store::DEFAULT_WATCH_CAPACITY,
            };
            Arc::new(EtcdBackend::connect(config).context("cannot open the etcd store")?)
        }
    })
}

/// This cluster's identity in its etcd prefix, kept in the data directory (made at the
/// first start): a server with another data directory is refused the prefix rather than
/// mixing two clusters' objects.
fn cluster_id(data_dir: &std::path::Path) -> Result<String> {
    use std::io::Read;
    let path = data_dir.join(CLUSTER_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom")?;
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&path, format!("{id}\n"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

use crate::embedded_etcd::{self, Etcd, Start};
use skiff_apiserver::server_join::CLUSTER_ID_FILE;

async fn server(args: ServerArgs) -> Result<()> {
    let audit = audit_settings(&args)?;
    let mut node = args.node.settings(&args.data_dir)?;
    node.claim_pod_cidr = !node.enabled("controllers");
    node.controllers.node_cidr_mask_size = args.node_cidr_mask_size;
    node.ingress = crate::components::IngressPorts {
        http: args.ingress_http_port,
        https: args.ingress_https_port,
        metrics: args.ingress_metrics_port,
    };
    node.controllers.node_monitor_grace_period = args.node_monitor_grace_period;
    if args.leader_elect {
        let election = skiff_controllers::leader::LeaderElection {
            lease_duration: args.leader_elect_lease_duration,
            renew_deadline: args.leader_elect_renew_deadline,
            retry_period: args.leader_elect_retry_period,
            identity: skiff_controllers::leader::identity_for(&node.node_name),
            ..Default::default()
        };
        election.validate()?;
        node.controllers.leader_election = Some(election);
    }
    let services = skiff_apiserver::services::Settings::parse(
        &args.node.service_cidr,
        &args.service_node_port_range,
        &args.lb_pool,
    )
    .map_err(anyhow::Error::msg)?;
    tracing::info!(data_dir = %args.data_dir.display(), "starting skiff");
    let (choice, mut member) = prepare_store(&args).await?;
    let shared = matches!(choice, StoreChoice::Etcd { .. });
    let backend = open_store(&args, choice)?;
    let running = skiff_apiserver::start(
        skiff_apiserver::Config {
            listen: args.listen,
            data_dir: args.data_dir.clone(),
            compact_interval: args.compact_interval,
            compact_keep: args.compact_keep,
            services: services.clone(),
            admission: skiff_apiserver::AdmissionSettings {
                not_ready_toleration_seconds: args.default_not_ready_toleration_seconds,
                unreachable_toleration_seconds: args.default_unreachable_toleration_seconds,
            },
            // Pods reach the API server at the `kubernetes` ClusterIP (in-cluster config).
            tls_sans: [services.service_cidr.addr(0).to_string()]
                .into_iter()
                .chain(args.tls_san.iter().cloned())
                .collect(),
            audit,
        },
        backend,
    )
    .await?;
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
    if member.is_some() {
        println!(
            "To add another server, with an etcd member of its own (the token is also in {}):\n  skiff server --server {} --token {}",
            running.server_token_file.display(),
            running.url,
            running.server_token
        );
    } else if shared {
        println!(
            "To add another API server on the same etcd (the token is also in {}):\n  skiff server --store etcd --etcd-endpoints ... --server {} --token {}",
            running.server_token_file.display(),
            running.url,
            running.server_token
        );
    }
    // Each component's certificate is minted now (see components::server_clients),
    // after the instructions: a user (or test) waits for those, not for this.
    let clients =
        crate::components::server_clients(&running.kubeconfig, &args.data_dir, &node.node_name)
            .await?;
    let components = crate::components::start(&clients, &node);
    for (name, _) in &components {
        tracing::info!(component = name, "started");
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
    let member_exit = async {
        match member.as_mut() {
            Some(m) => m.exited().await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        r = shutdown => {
            r?;
            tracing::info!("shutting down");
            // The controllers stop on the same signal and release their leader
            // Lease, through the API server: it must still be up for that.
            crate::components::wait_stopped(components, "controllers").await;
            stopper.stop();
            Ok(())
        }
        r = running.wait() => r,
        msg = member_exit => {
            stopper.stop();
            Err(anyhow::anyhow!(msg))
        }
    };
    // The etcd member last: everything above used it.
    drop(member);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(flags: &[&str], has_member: bool) -> Result<StorePlan> {
        let argv = ["skiff", "server"].iter().chain(flags);
        let cli = Cli::try_parse_from(argv).map_err(|e| anyhow::anyhow!("{e}"))?;
        let Command::Server(args) = cli.command else {
            anyhow::bail!("not a server command");
        };
        store_plan(&args, has_member)
    }

    fn err(flags: &[&str]) -> String {
        match plan(flags, false) {
            Ok(p) => panic!("{flags:?} was accepted: {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    const TOKEN: &str = "K10aa::server:bb";

    #[test]
    fn cluster_init_runs_an_embedded_member_and_refuses_other_stores() {
        assert_eq!(
            plan(&["--cluster-init"], false).ok(),
            Some(StorePlan::Embedded { new: true })
        );
        assert_eq!(
            plan(&["--cluster-init", "--store", "etcd"], true).ok(),
            Some(StorePlan::Embedded { new: false })
        );
        assert!(err(&["--cluster-init", "--store", "sqlite"]).contains("--store sqlite"));
        assert!(err(&["--cluster-init", "--store", "memory"]).contains("--store memory"));
        let e = err(&[
            "--cluster-init",
            "--store",
            "etcd",
            "--etcd-endpoints",
            "http://x:2379",
        ]);
        assert!(e.contains("--etcd-endpoints"), "{e}");
        assert!(err(&["--cluster-init", "--etcd-cafile", "/ca"]).contains("--etcd-cafile"));
        assert!(err(&["--cluster-init", "--server", "https://a:6443"]).contains("--server"));
        assert!(err(&["--cluster-init", "--token", TOKEN]).contains("--token"));
    }

    #[test]
    fn server_joins_embedded_or_external_etcd_but_never_a_servers_own_store() {
        let join = ["--server", "https://10.0.0.2:6443", "--token", TOKEN];
        assert_eq!(
            plan(&join, false).ok(),
            Some(StorePlan::Join { external: false })
        );
        // A member's data is there: it restarts, without asking the first server.
        assert_eq!(
            plan(&join, true).ok(),
            Some(StorePlan::Embedded { new: false })
        );
        let mut external = join.to_vec();
        external.extend(["--store", "etcd", "--etcd-endpoints", "http://e:2379"]);
        assert_eq!(
            plan(&external, true).ok(),
            Some(StorePlan::Join { external: true })
        );
        let mut sqlite = join.to_vec();
        sqlite.extend(["--store", "sqlite"]);
        assert!(err(&sqlite).contains("--store sqlite"));
    }

    #[test]
    fn audit_flags_make_the_audit_settings_and_a_bad_policy_is_refused() {
        let settings = |flags: &[&str]| {
            let argv = ["skiff", "server"].iter().chain(flags);
            let cli = Cli::try_parse_from(argv).map_err(|e| anyhow::anyhow!("{e}"))?;
            let Command::Server(args) = cli.command else {
                anyhow::bail!("not a server command");
            };
            audit_settings(&args)
        };
        assert!(settings(&[]).expect("no audit").is_none());
        let s = settings(&[
            "--audit-log-path",
            "-",
            "--audit-log-maxsize",
            "5",
            "--audit-log-maxbackup",
            "2",
        ])
        .expect("audit")
        .expect("on");
        assert_eq!(
            (s.path.to_str(), s.max_size_mb, s.max_backups),
            (Some("-"), 5, 2)
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = dir.path().join("policy.yaml");
        std::fs::write(
            &bad,
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Loud\n",
        )
        .expect("write");
        let bad = bad.to_str().expect("path");
        // Refused with or without a log to write.
        for flags in [
            &["--audit-policy-file", bad][..],
            &["--audit-log-path", "-", "--audit-policy-file", bad],
        ] {
            let e = settings(flags).expect_err("bad policy").to_string();
            assert!(
                e.contains("--audit-policy-file") && e.contains("rules[0].level"),
                "{e}"
            );
        }
    }

    #[test]
    fn sqlite_stays_the_default_and_a_members_data_dir_restarts_it() {
        assert_eq!(
            plan(&[], false).ok(),
            Some(StorePlan::Own(StoreKind::Sqlite))
        );
        assert_eq!(
            plan(&[], true).ok(),
            Some(StorePlan::Embedded { new: false })
        );
        assert_eq!(
            plan(&["--store", "sqlite"], true).ok(),
            Some(StorePlan::Own(StoreKind::Sqlite))
        );
        assert!(err(&["--store", "etcd"]).contains("--etcd-endpoints"));
        assert!(err(&["--etcd-endpoints", "http://e:2379"]).contains("--store etcd"));
        assert_eq!(
            plan(
                &["--store", "etcd", "--etcd-endpoints", "http://e:2379"],
                true
            )
            .ok(),
            Some(StorePlan::Own(StoreKind::Etcd))
        );
    }
}
