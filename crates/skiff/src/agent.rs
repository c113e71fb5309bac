//! `skiff agent`: a node that joins a cluster run by `skiff server` elsewhere.
//! It trades the server's join token for credentials of its own (see
//! [`crate::join`]), then runs the node components (agent, proxy, DNS,
//! NetworkPolicy) against the server with them, never with the admin token:
//! the agent as the node, the others each with a client certificate of its
//! own identity ([`crate::join_components`]).

use std::path::PathBuf;

use anyhow::{Context, Result};

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// The API server to join, e.g. `https://10.0.0.1:6443`.
    #[arg(long, env = "SKIFF_URL")]
    server: String,
    /// The join token `skiff server` printed (also in its `<data-dir>/node-token`),
    /// or one from `skiff token create`. Not needed once this node has joined.
    #[arg(long, env = "SKIFF_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Where this node's credentials, pods and images live.
    #[arg(long, default_value = "/var/lib/skiff", env = "SKIFF_DATA_DIR")]
    data_dir: PathBuf,
    #[command(flatten)]
    node: crate::node_flags::NodeArgs,
    /// Log filter, e.g. `info` or `skiff_agent=debug`.
    #[arg(long, default_value = "info", env = "SKIFF_LOG")]
    log: String,
}

impl AgentArgs {
    pub fn log_filter(&self) -> &str {
        &self.log
    }
}

pub async fn run(args: AgentArgs) -> Result<()> {
    let mut node = args.node.settings(&args.data_dir)?;
    // The control plane runs on the server; a joining node runs node parts only.
    if !node.disabled.iter().any(|d| d == "controllers") {
        node.disabled.push("controllers".into());
    }
    let ip = match node.node_ip {
        Some(ip) => ip,
        None => std::net::IpAddr::V4(
            skiff_agent::net::first_ipv4()
                .await
                .context("this machine has no IPv4 address to join with (pass --node-ip)")?,
        ),
    };
    node.node_ip = Some(ip);
    let creds = crate::join::join(
        &args.server,
        args.token.as_deref(),
        &node.node_name,
        &[ip],
        &args.data_dir,
    )
    .await?;
    node.agent_tls = Some(creds.agent_tls());
    // The components reach the API through the forwarder, so the node stays
    // in the cluster while any of its servers lives.
    let balancer = crate::balancer::Balancer::start(resolve(&args.server).await?).await?;
    let client = client_via(&creds.kubeconfig, balancer.local).await?;
    balancer.follow(client.clone());
    let certs = crate::join_components::ensure(
        &format!("https://{}", balancer.local),
        &creds,
        &node.node_name,
        &args.data_dir,
    )
    .await?;
    let component = |name: &'static str| {
        let cert = certs.get(name).cloned();
        let (kubeconfig, local) = (creds.kubeconfig.clone(), balancer.local);
        async move {
            let cert = cert.with_context(|| format!("no certificate for the {name} component"))?;
            client_via_cert(&kubeconfig, local, &cert).await
        }
    };
    let clients = crate::components::ComponentClients {
        agent: client.clone(),
        proxy: component("proxy").await?,
        dns: component("dns").await?,
        netpol: component("netpol").await?,
        ingress: component("ingress").await?,
        // A joined node runs no controllers.
        controllers: client.clone().into(),
    };
    let components = crate::components::start(&clients, &node);
    for (name, _) in &components {
        tracing::info!(component = name, "started");
    }
    println!(
        "skiff agent: node {} joined {} as {ip}",
        node.node_name, args.server
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let ended = futures_first(components);
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = term.recv() => Ok(()),
        r = ended => r,
    }
}

/// `host:port` of an `https://host:port` URL (the port defaults to 443).
async fn resolve(server: &str) -> Result<std::net::SocketAddr> {
    let authority = server
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && p.bytes().all(|b| b.is_ascii_digit()) => (
            h,
            p.parse()
                .with_context(|| format!("--server {server:?}: bad port"))?,
        ),
        _ => (authority, 443),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    anyhow::ensure!(!host.is_empty(), "--server {server:?} has no host");
    tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("resolving --server {server}"))?
        .next()
        .with_context(|| format!("--server {server}: the name has no address"))
}

/// The node's kubeconfig as a client config that dials `local` (the forwarder).
async fn config_via(
    kubeconfig: &std::path::Path,
    local: std::net::SocketAddr,
) -> Result<kube::Config> {
    let mut config = crate::components::config(kubeconfig).await?;
    config.cluster_url = format!("https://{local}")
        .parse()
        .context("the forwarder's URL")?;
    Ok(config)
}

/// A client from the node's kubeconfig that dials `local` (the forwarder).
async fn client_via(
    kubeconfig: &std::path::Path,
    local: std::net::SocketAddr,
) -> Result<kube::Client> {
    let config = config_via(kubeconfig, local).await?;
    kube::Client::try_from(config).context("building the node's client")
}

/// A client that dials `local` (the forwarder) with the cluster CA of the
/// node's kubeconfig and a component's certificate instead of the node token.
async fn client_via_cert(
    kubeconfig: &std::path::Path,
    local: std::net::SocketAddr,
    cert: &crate::join_components::ComponentCert,
) -> Result<kube::Client> {
    let config = config_via(kubeconfig, local).await?;
    let config = crate::components::with_certificate(config, &cert.cert_pem, &cert.key_pem);
    kube::Client::try_from(config).context("building a component's client")
}

/// The first component to end: a node whose agent stopped is no node.
async fn futures_first(components: Vec<crate::components::Component>) -> Result<()> {
    if components.is_empty() {
        return std::future::pending().await;
    }
    let names: Vec<_> = components.iter().map(|(n, _)| *n).collect();
    let (r, i, _) = futures::future::select_all(components.into_iter().map(|(_, h)| h)).await;
    match r {
        Ok(Ok(())) => anyhow::bail!("the {} component ended", names[i]),
        Ok(Err(e)) => Err(e.context(format!("the {} component failed", names[i]))),
        Err(e) => anyhow::bail!("the {} component panicked: {e}", names[i]),
    }
}
