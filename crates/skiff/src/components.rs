//! The cluster components that run beside the API server in `skiff server`:
//! each is an ordinary kube-rs client of the API server, started here in
//! dependency order. A component crate adds one `spawn` line to [`start`].
//!
//! Each component has its own identity and only the access its role grants
//! (issue #17, roles in `skiff_apiserver::rbac_components`): the agent is its
//! node (`system:node:<name>`), the proxy `system:kube-proxy`, DNS
//! `system:skiff:dns`, NetworkPolicy `system:skiff:netpol`, the ingress
//! `system:skiff:ingress`, the controllers
//! the controller manager for their caches and each its own ServiceAccount for
//! its writes. On `skiff server` the certificates are minted in memory from
//! the cluster CA at every start ([`server_clients`]); a joined node gets its
//! components' certificates from the API server (see [`crate::join`]).

use std::path::Path;

use anyhow::{Context, Result};
use tokio::task::JoinHandle;

/// What every component needs to know about the node and the cluster network.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// Name of this node's Node object.
    pub node_name: String,
    /// The node's address as other hosts reach it (NodePorts, `InternalIP`);
    /// `None`: the agent picks (first non-loopback IPv4, else the pod gateway).
    pub node_ip: Option<std::net::IpAddr>,
    /// Cluster pod network; each node gets one /24 of it.
    pub pod_cidr: String,
    /// How pods reach other nodes' pods (`--flannel-backend`).
    pub backend: skiff_agent::crossnode::Backend,
    /// Take the pod network's first /24 for this node instead of waiting for the
    /// node-IPAM controller: a server that runs no controllers is a lone node.
    pub claim_pod_cidr: bool,
    /// The node Lease's duration (renewed every quarter of it).
    pub node_lease_duration: std::time::Duration,
    /// Service network (the API server allocates ClusterIPs from it).
    pub service_cidr: String,
    /// DNS zone of the cluster, e.g. `cluster.local`.
    pub cluster_domain: String,
    /// The `kube-dns` ClusterIP written into pods' resolv.conf.
    pub cluster_dns: std::net::IpAddr,
    /// Resolvers for names outside the cluster domain (`--upstream`); empty: resolv.conf.
    pub dns_upstreams: Vec<std::net::SocketAddr>,
    /// The controllers' settings (a server's flags; a joining node runs none).
    pub controllers: skiff_controllers::Settings,
    /// Components not to start (`controllers`, `agent`, `proxy`, `dns`, `netpol`, `ingress`).
    pub disabled: Vec<String>,
    /// The ingress component's ports (`--ingress-http-port` and friends).
    pub ingress: IngressPorts,
    /// The server's data directory (the agent keeps pod state, logs and IPAM under it).
    pub data_dir: std::path::PathBuf,
    /// Run the built-in catalog's host programs instead of images (`--host-images`).
    pub host_images: bool,
    /// `registries.yaml` (mirrors, rewrites, credentials); a missing file is no config.
    pub registry_config: Option<std::path::PathBuf>,
    /// Image GC's high and low disk-usage thresholds, percent.
    pub image_gc_thresholds: (u8, u8),
    /// The agent's streaming endpoint credentials when the node joined a cluster
    /// (`skiff agent`, from [`crate::join::join`]); `None`: this is the server's
    /// own node, whose serving certificate is signed in process at start.
    pub agent_tls: Option<AgentTls>,
}

/// Where a node agent finds its streaming endpoint's TLS credentials (PEM).
#[derive(Debug, Clone)]
pub struct AgentTls {
    /// The node's serving certificate, signed by the cluster CA.
    pub serving_cert: std::path::PathBuf,
    pub serving_key: std::path::PathBuf,
    /// The cluster CA, which signed the API server's client certificate.
    pub client_ca: std::path::PathBuf,
}

/// Where the ingress component listens, on the node's address.
#[derive(Debug, Clone, Copy)]
pub struct IngressPorts {
    pub http: u16,
    pub https: u16,
    pub metrics: u16,
}

impl Default for IngressPorts {
    fn default() -> Self {
        let d = skiff_ingress::IngressSettings::new("");
        IngressPorts {
            http: d.http_port,
            https: d.https_port,
            metrics: d.metrics_port,
        }
    }
}

impl NodeSettings {
    pub fn enabled(&self, component: &str) -> bool {
        !self.disabled.iter().any(|d| d == component)
    }
}

/// A kube-rs client config from a kubeconfig file.
pub async fn config(kubeconfig: &Path) -> Result<kube::Config> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .context("kubeconfig")
}

/// A kube-rs client from a kubeconfig (the admin's, for `skiff` commands).
pub async fn client(kubeconfig: &Path) -> Result<kube::Client> {
    let config = config(kubeconfig).await?;
    kube::Client::try_from(config).context("building the in-process client")
}

/// The client each component runs with.
#[derive(Clone)]
pub struct ComponentClients {
    pub agent: kube::Client,
    pub proxy: kube::Client,
    pub dns: kube::Client,
    pub netpol: kube::Client,
    pub ingress: kube::Client,
    pub controllers: skiff_controllers::clients::Clients,
}

/// How long the certificates minted at each start are valid.
pub const COMPONENT_CERT_VALIDITY: std::time::Duration =
    std::time::Duration::from_secs(365 * 24 * 3600);

/// `base` (the API server's URL and CA) authenticating with a client
/// certificate and its key (PEM), held in memory.
pub fn with_certificate(mut base: kube::Config, cert_pem: &str, key_pem: &str) -> kube::Config {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    base.auth_info = kube::config::AuthInfo {
        client_certificate_data: Some(b64(cert_pem)),
        client_key_data: Some(b64(key_pem).into()),
        ..Default::default()
    };
    base
}

/// A client for `user` in `groups`, whose certificate the cluster CA signs now.
fn minted(
    base: &kube::Config,
    ca: &skiff_apiserver::pki::Ca,
    user: &str,
    groups: &[&str],
) -> Result<kube::Client> {
    let (cert, key) = ca
        .issue_client(user, groups, COMPONENT_CERT_VALIDITY)
        .with_context(|| format!("a client certificate for {user}"))?;
    kube::Client::try_from(with_certificate(base.clone(), &cert, &key))
        .with_context(|| format!("the client of {user}"))
}

/// The groups of a controller's ServiceAccount user, as upstream's token
/// authenticator gives them.
const CONTROLLER_ACCOUNT_GROUPS: &[&str] = &[
    "system:serviceaccounts",
    "system:serviceaccounts:kube-system",
];

/// `skiff server`'s components, each with a certificate of its own identity
/// signed by the cluster CA in `data_dir`; the server's URL and CA come from
/// the admin kubeconfig (its credential is not used).
pub async fn server_clients(
    kubeconfig: &Path,
    data_dir: &Path,
    node_name: &str,
) -> Result<ComponentClients> {
    use skiff_apiserver::rbac_components as roles;
    let base = config(kubeconfig).await?;
    let ca = skiff_apiserver::pki::Ca::load(data_dir)?;
    let shared = minted(&base, &ca, roles::CONTROLLER_MANAGER_USER, &[])?;
    let controllers = skiff_controllers::clients::Clients::new(shared, |user| {
        let groups = if user.starts_with("system:serviceaccount:") {
            CONTROLLER_ACCOUNT_GROUPS
        } else {
            &[]
        };
        minted(&base, &ca, user, groups)
    })?;
    Ok(ComponentClients {
        agent: minted(
            &base,
            &ca,
            &format!("system:node:{node_name}"),
            &[skiff_apiserver::authn::NODES],
        )?,
        proxy: minted(&base, &ca, roles::PROXY_USER, &[])?,
        dns: minted(&base, &ca, roles::DNS_USER, &[])?,
        netpol: minted(&base, &ca, roles::NETPOL_USER, &[])?,
        ingress: minted(&base, &ca, roles::INGRESS_USER, &[])?,
        controllers,
    })
}

/// A component task: its name (for logs) and its handle.
pub type Component = (&'static str, JoinHandle<Result<()>>);

/// Starts every component. Order matters where one consumes what another makes.
pub fn start(clients: &ComponentClients, node: &NodeSettings) -> Vec<Component> {
    tracing::info!(
        node = %node.node_name,
        node_ip = ?node.node_ip,
        pod_cidr = %node.pod_cidr,
        service_cidr = %node.service_cidr,
        cluster_domain = %node.cluster_domain,
        cluster_dns = %node.cluster_dns,
        "starting components"
    );
    let mut components: Vec<Component> = Vec::new();
    if node.enabled("agent") {
        components.push((
            "agent",
            tokio::spawn(skiff_agent::run(
                clients.agent.clone(),
                agent_settings(node),
            )),
        ));
    }
    if node.enabled("dns") {
        let with_agent = node.enabled("agent");
        let (c, mut s, name) = (
            clients.dns.clone(),
            skiff_dns::DnsSettings::new(
                &node.cluster_domain,
                node.cluster_dns,
                &node.pod_cidr,
                &node.node_name,
            )
            .with_upstreams(node.dns_upstreams.clone()),
            node.node_name.clone(),
        );
        components.push((
            "dns",
            tokio::spawn(async move {
                // Pods reach this node's DNS at their gateway, the first address
                // of the node's own pod range, known once the range is assigned.
                // (Without an agent on this node, the first range's gateway.)
                if with_agent {
                    let range = skiff_agent::node::wait_pod_cidr(&c, &name).await?;
                    s.endpoint_ip = Some(std::net::IpAddr::V4(range.gateway()));
                }
                Ok(skiff_dns::run(c, s).await?)
            }),
        ));
    }
    if node.enabled("controllers") {
        let (c, s) = (clients.controllers.clone(), node.controllers.clone());
        components.push((
            "controllers",
            tokio::spawn(async move {
                let stop = stop_signal();
                Ok(skiff_controllers::leader::run_controllers(c, s, stop).await?)
            }),
        ));
    }
    if node.enabled("proxy") {
        let (c, s) = (clients.proxy.clone(), proxy_settings(node));
        components.push((
            "proxy",
            tokio::spawn(async move { Ok(skiff_proxy::run(c, s).await?) }),
        ));
    }
    if node.enabled("netpol") {
        let (c, s) = (
            clients.netpol.clone(),
            skiff_netpol::NetpolSettings::new(&node.node_name),
        );
        components.push((
            "netpol",
            tokio::spawn(async move { Ok(skiff_netpol::run(c, s).await?) }),
        ));
    }
    if node.enabled("ingress") {
        let c = clients.ingress.clone();
        let mut s = skiff_ingress::IngressSettings::new(&node.node_name);
        s.node_ip = node.node_ip;
        (s.http_port, s.https_port, s.metrics_port) =
            (node.ingress.http, node.ingress.https, node.ingress.metrics);
        components.push((
            "ingress",
            tokio::spawn(async move { Ok(skiff_ingress::run(c, s).await?) }),
        ));
    }
    components
}

/// SIGINT or SIGTERM, the signals `skiff server` stops on (every listener
/// hears them). Without a handler for SIGTERM: never.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// How long a stopping server waits for a component to finish: the
/// controllers' Lease release is one API call, bounded by its retry period.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Waits, up to [`STOP_WAIT`], for the component `name` to end after a stop signal.
pub async fn wait_stopped(components: Vec<Component>, name: &str) {
    for (n, handle) in components {
        if n == name && tokio::time::timeout(STOP_WAIT, handle).await.is_err() {
            tracing::warn!(component = n, "did not stop in time");
        }
    }
}

/// The proxy's settings from the node's.
fn proxy_settings(node: &NodeSettings) -> skiff_proxy::ProxySettings {
    let mut s = skiff_proxy::ProxySettings::new(&node.node_name, &node.service_cidr);
    s.pod_cidr = Some(node.pod_cidr.clone());
    if let Some(std::net::IpAddr::V4(ip)) = node.node_ip {
        s.node_ips = vec![ip];
    }
    s
}

/// The agent's settings from the node's.
fn agent_settings(node: &NodeSettings) -> skiff_agent::AgentSettings {
    let mut s = skiff_agent::AgentSettings::new(&node.node_name, node.data_dir.clone());
    s.node_ip = node.node_ip;
    s.pod_cidr = node.pod_cidr.clone();
    if node.claim_pod_cidr {
        s.node_pod_cidr = skiff_agent::net::Cidr::parse(&node.pod_cidr)
            .ok()
            .map(|c| c.node_subnet().to_string());
    }
    s.backend = node.backend;
    s.node_lease_duration = node.node_lease_duration;
    s.cluster_domain = node.cluster_domain.clone();
    s.cluster_dns = node.cluster_dns;
    s.host_images = node.host_images;
    s.registry_config = node.registry_config.clone();
    s.image_gc_thresholds = node.image_gc_thresholds;
    match &node.agent_tls {
        Some(tls) => {
            s.serving_cert = tls.serving_cert.clone();
            s.serving_key = tls.serving_key.clone();
            s.client_ca = tls.client_ca.clone();
        }
        None => {
            // The server's own node: its serving certificate comes straight from
            // the cluster CA in the data directory, for every address the agent
            // may register as its InternalIP (`--node-ip`; else this machine's
            // IPv4 addresses, or the gateway of the node's first pod range on a
            // machine with none), at the default paths the agent reads.
            let addresses = in_process_agent_addresses(node);
            if let Err(e) = skiff_apiserver::pki::agent_serving_cert(
                &node.data_dir,
                &node.node_name,
                &addresses,
            ) {
                tracing::error!(error = %format!("{e:#}"), "signing the node agent's serving certificate");
            }
        }
    }
    s
}

/// The addresses the in-process agent may register as its InternalIP, as it
/// picks one (see [`skiff_agent::AgentSettings::node_ip`]).
fn in_process_agent_addresses(node: &NodeSettings) -> Vec<std::net::IpAddr> {
    if let Some(ip) = node.node_ip {
        return vec![ip];
    }
    let mut ips: Vec<std::net::IpAddr> = nix::ifaddrs::getifaddrs()
        .map(|addrs| {
            addrs
                .filter(|a| a.interface_name != "lo" && a.interface_name != "skiff0")
                .filter_map(|a| a.address?.as_sockaddr_in().map(|s| s.ip()))
                .filter(|ip| !ip.is_loopback())
                .map(std::net::IpAddr::V4)
                .collect()
        })
        .unwrap_or_default();
    if let Ok(c) = skiff_agent::net::Cidr::parse(&node.pod_cidr) {
        ips.push(std::net::IpAddr::V4(c.node_subnet().gateway()));
    }
    ips.dedup();
    ips
}
