//! The skiff node agent: registers the node, runs the pods bound to it as process
//! trees in their own namespaces (DESIGN.md §4, §5), reports their status, and
//! serves their logs, exec and attach to the API server. It is an ordinary kube-rs
//! client of the API server.
//!
//! Start at [`run`]. Pods are watched in [`run`], each handled by a [`pod::Worker`];
//! networking is [`net`] + [`ipam`], processes are [`runtime`], files a pod sees are
//! [`files`], its environment [`envvars`], the ConfigMaps and Secrets its
//! volumes follow [`source_watch`], what images run [`catalog`], streaming
//! [`stream`], node registration [`node`].

pub mod catalog;
pub mod cgroup;
pub mod cmd;
pub mod container;
pub mod crossnode;
pub mod envvars;
pub mod events;
pub mod files;
pub mod image_gc;
pub mod ipam;
pub mod net;
pub mod node;
pub mod oci;
pub mod pod;
pub mod portforward;
pub mod probe;
pub mod runtime;
pub mod source_watch;
pub mod state;
pub mod stream;
pub mod teardown;
pub mod volumes;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::DeleteParams;
use kube::runtime::reflector;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use tokio::sync::mpsc;

use crate::pod::{lock, Msg, Runtime};

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub node_name: String,
    /// The node's address; `None`: first non-loopback IPv4, else the pod gateway.
    pub node_ip: Option<IpAddr>,
    /// The cluster pod network (`--pod-cidr`, the server's): pods' traffic to it is
    /// not masqueraded.
    pub pod_cidr: String,
    /// This node's own pod range when no node-IPAM controller assigns one (a
    /// single-node server without controllers); `None`: wait for the Node's
    /// `spec.podCIDR` as kubelet does.
    pub node_pod_cidr: Option<String>,
    /// How pods reach other nodes' pods (`--flannel-backend`).
    pub backend: crossnode::Backend,
    /// The node Lease's duration; renewed every quarter of it
    /// (`--node-lease-duration-seconds`, kubelet's default 40).
    pub node_lease_duration: std::time::Duration,
    pub cluster_domain: String,
    pub cluster_dns: IpAddr,
    /// Where pod state, logs and IPAM live (`<data_dir>/agent`).
    pub data_dir: PathBuf,
    /// The agent's streaming endpoint port (kubelet's is 10250).
    pub port: u16,
    /// Run the built-in catalog's host programs instead of pulling images (demos
    /// on a machine with no registry at all).
    pub host_images: bool,
    /// A k3s-style `registries.yaml` (mirrors, rewrites, credentials); absent: none.
    pub registry_config: Option<PathBuf>,
    /// Image GC's high and low disk-usage thresholds (percent of the filesystem).
    pub image_gc_thresholds: (u8, u8),
    /// The streaming endpoint's serving certificate and key (PEM), signed by the
    /// cluster CA for the node's name and addresses (default
    /// `<data_dir>/agent-serving.crt` and `.key`).
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    /// The cluster CA (PEM), which must have signed the API server's client
    /// certificate (default `<data_dir>/ca.crt`).
    pub client_ca: PathBuf,
}

impl AgentSettings {
    pub fn new(node_name: &str, data_dir: PathBuf) -> Self {
        let (serving_cert, serving_key, client_ca) = (
            data_dir.join("agent-serving.crt"),
            data_dir.join("agent-serving.key"),
            data_dir.join("ca.crt"),
        );
        Self {
            node_name: node_name.to_string(),
            node_ip: None,
            pod_cidr: "10.244.0.0/16".into(),
            node_pod_cidr: None,
            backend: crossnode::Backend::Auto,
            node_lease_duration: std::time::Duration::from_secs(40),
            cluster_domain: "cluster.local".into(),
            cluster_dns: IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10)),
            data_dir,
            port: 10250,
            host_images: false,
            registry_config: None,
            image_gc_thresholds: (85, 80),
            serving_cert,
            serving_key,
            client_ca,
        }
    }
}

/// A host port: protocol and port.
pub type HostPortKey = (String, u16);
/// Who holds a host port: pod uid, container port, pod IP once known.
pub type HostPortClaim = (String, u16, Option<Ipv4Addr>);

/// Shared by every pod worker and the stream server.
pub struct Agent {
    pub client: kube::Client,
    pub node_name: String,
    pub node_ip: Ipv4Addr,
    pub subnet: net::Cidr,
    /// Pods' interface MTU: the underlay's less the VXLAN overhead on a node that
    /// may encapsulate; `None`: the kernel's default.
    pub pod_mtu: Option<u32>,
    pub data_dir: PathBuf,
    pub ipam: ipam::Ipam,
    pub catalog: catalog::Catalog,
    /// Whether containers run [`catalog`] host programs instead of images.
    pub host_images: bool,
    /// Pulled images, content-addressed under `<data-dir>/agent/images`.
    pub images: Arc<skiff_image::ImageStore>,
    /// runc's state directory for this node's containers.
    pub runc_root: PathBuf,
    pub dns: files::DnsSettings,
    pub services: reflector::Store<Service>,
    pub pods: Mutex<HashMap<String, PodHandle>>,
    /// One watch per ConfigMap or Secret the pods' volumes read.
    pub source_watches: source_watch::SourceWatches,
    /// The cluster pod network (masquerade boundary).
    pub cluster: net::Cidr,
    /// Host ports in use: (protocol, port) -> (pod uid, container port, pod IP).
    pub host_ports: Mutex<BTreeMap<HostPortKey, HostPortClaim>>,
    /// Serialises rule syncs, so an older snapshot never lands after a newer one.
    pub rules_lock: tokio::sync::Mutex<()>,
}

pub struct PodHandle {
    pub namespace: String,
    pub name: String,
    pub tx: mpsc::UnboundedSender<Msg>,
    pub rt: Arc<Mutex<Runtime>>,
    /// The images its containers name (image GC keeps them).
    pub images: Vec<String>,
    /// The ConfigMaps and Secrets its volumes read (told when they change).
    pub sources: std::collections::BTreeSet<source_watch::SourceRef>,
}

impl Agent {
    /// Claims a pod's host ports; `Err` names the first one another pod holds.
    pub fn claim_host_ports(
        &self,
        uid: &str,
        wanted: &[(String, u16, u16)],
        ip: Option<Ipv4Addr>,
    ) -> Result<(), String> {
        let mut map = lock(&self.host_ports);
        for (proto, hp, _) in wanted {
            if let Some((owner, _, _)) = map.get(&(proto.clone(), *hp)) {
                if owner != uid {
                    let who = lock(&self.pods)
                        .get(owner)
                        .map(|h| format!("{}/{}", h.namespace, h.name))
                        .unwrap_or_else(|| owner.clone());
                    return Err(format!(
                        "hostPort {hp}/{proto} is already allocated to pod {who}"
                    ));
                }
            }
        }
        for (proto, hp, cp) in wanted {
            map.insert((proto.clone(), *hp), (uid.to_string(), *cp, ip));
        }
        Ok(())
    }

    pub fn release_host_ports(&self, uid: &str) -> bool {
        let mut map = lock(&self.host_ports);
        let before = map.len();
        map.retain(|_, (owner, _, _)| owner != uid);
        before != map.len()
    }

    /// Writes the agent's nft table from the current host ports.
    pub async fn sync_rules(&self) {
        let _guard = self.rules_lock.lock().await;
        let ports: Vec<net::HostPort> = lock(&self.host_ports)
            .iter()
            .filter_map(|((proto, hp), (_, cp, ip))| {
                Some(net::HostPort {
                    protocol: proto.clone(),
                    host_port: *hp,
                    pod_ip: (*ip)?,
                    container_port: *cp,
                })
            })
            .collect();
        if let Err(e) = net::sync_rules(self.cluster, &ports).await {
            tracing::warn!(error = %format!("{e:#}"), "syncing host ports");
        }
    }

    /// The runtime view of a pod by namespace and name (for streaming).
    pub fn find(&self, ns: &str, name: &str) -> Option<Arc<Mutex<Runtime>>> {
        lock(&self.pods)
            .values()
            .find(|h| h.namespace == ns && h.name == name)
            .map(|h| h.rt.clone())
    }
}

/// Runs the agent until an unrecoverable error (which is also logged: the
/// caller may only hold the task handle).
pub async fn run(client: kube::Client, settings: AgentSettings) -> Result<()> {
    let r = run_inner(client, settings).await;
    if let Err(e) = &r {
        tracing::error!(error = %format!("{e:#}"), "node agent stopped");
    }
    r
}

async fn run_inner(client: kube::Client, settings: AgentSettings) -> Result<()> {
    let cluster = net::Cidr::parse(&settings.pod_cidr).context("--pod-cidr")?;
    let claim = match &settings.node_pod_cidr {
        Some(c) => Some(net::Cidr::parse(c).context("the node's pod CIDR")?),
        None => None,
    };
    let data_dir = settings.data_dir.join("agent");
    std::fs::create_dir_all(state::pods_dir(&data_dir))
        .with_context(|| format!("creating {}", data_dir.display()))?;
    node::create(&client, &settings.node_name, claim).await?;
    let subnet = node::wait_pod_cidr(&client, &settings.node_name).await?;
    if !cluster.covers(subnet) {
        anyhow::bail!(
            "the Node's pod CIDR {subnet} is outside the cluster pod network {cluster} (--pod-cidr must match the server's)"
        );
    }
    net::setup_node(subnet, cluster)
        .await
        .context("setting up the pod network")?;
    let node_ip = match settings.node_ip {
        Some(IpAddr::V4(ip)) => ip,
        _ => net::first_ipv4().await.unwrap_or(subnet.gateway()),
    };
    // A node with an address of its own may have peers to encapsulate to; one
    // alone on its bridge (the gateway as its address) has none.
    let pod_mtu = if settings.backend.may_encapsulate() && node_ip != subnet.gateway() {
        let (dev, mtu) = crossnode::underlay(node_ip).await?;
        let inner = mtu.saturating_sub(crossnode::VXLAN_OVERHEAD);
        crossnode::setup_vxlan(&settings.node_name, node_ip, &dev, inner, subnet).await?;
        Some(inner)
    } else {
        None
    };

    let listener = tokio::net::TcpListener::bind((node_ip, settings.port))
        .await
        .with_context(|| format!("agent endpoint {node_ip}:{}", settings.port))?;
    let port = listener.local_addr()?.port();

    let info = node::NodeInfo {
        name: settings.node_name.clone(),
        ip: node_ip,
        port,
    };
    let since = node::register(&client, &info).await?;
    tokio::spawn(node::heartbeat(
        client.clone(),
        info,
        since,
        settings.node_lease_duration,
    ));
    if node_ip != subnet.gateway() {
        let me = crossnode::Local {
            name: settings.node_name.clone(),
            ip: node_ip,
            cidr: subnet,
            backend: settings.backend,
        };
        let c = client.clone();
        tokio::spawn(async move {
            if let Err(e) = crossnode::run(c, me).await {
                tracing::error!(error = %format!("{e:#}"), "routes to other nodes' pods");
            }
        });
    }

    let (reader, writer) = reflector::store();
    let svc_api: Api<Service> = Api::all(client.clone());
    tokio::spawn(
        reflector::reflector(
            writer,
            watcher::watcher(svc_api, watcher::Config::default()),
        )
        .for_each(|_| futures::future::ready(())),
    );
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        reader.wait_until_ready(),
    )
    .await;

    let registries = match &settings.registry_config {
        Some(p) => skiff_image::RegistryConfig::load(p)
            .with_context(|| format!("--registry-config {}", p.display()))?,
        None => skiff_image::RegistryConfig::default(),
    };
    let images = skiff_image::ImageStore::open(&data_dir.join("images"), registries)
        .context("opening the image store")?;
    let runc_root = data_dir.join("runc");
    std::fs::create_dir_all(&runc_root)
        .with_context(|| format!("creating {}", runc_root.display()))?;
    if !settings.host_images {
        container::check_runtime().await?;
        cgroup::ensure_mounted()
            .await
            .context("mounting the cgroup hierarchies")?;
    }
    let agent = Arc::new(Agent {
        client: client.clone(),
        node_name: settings.node_name.clone(),
        node_ip,
        subnet,
        pod_mtu,
        ipam: ipam::Ipam::open(&data_dir.join("ipam"), subnet)?,
        catalog: catalog::Catalog::load(Some(&data_dir.join("images.json"))),
        host_images: settings.host_images,
        images: Arc::new(images),
        runc_root,
        dns: files::DnsSettings {
            cluster_domain: settings.cluster_domain.clone(),
            cluster_dns: settings.cluster_dns.to_string(),
            host_resolv: std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        },
        data_dir,
        services: reader,
        pods: Mutex::new(HashMap::new()),
        source_watches: source_watch::SourceWatches::default(),
        cluster,
        host_ports: Mutex::new(BTreeMap::new()),
        rules_lock: tokio::sync::Mutex::new(()),
    });
    tokio::spawn(stream::serve(
        agent.clone(),
        listener,
        stream::tls_config(
            &settings.serving_cert,
            &settings.serving_key,
            &settings.client_ca,
        )?,
    ));
    tokio::spawn(image_gc::run(agent.clone(), settings.image_gc_thresholds));
    tokio::spawn(refresh_tokens(agent.clone()));
    tracing::info!(node = %settings.node_name, %node_ip, %subnet, port, "agent running");
    watch_pods(agent).await
}

async fn watch_pods(agent: Arc<Agent>) -> Result<()> {
    let api: Api<Pod> = Api::all(agent.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", agent.node_name));
    let mut saved: BTreeMap<String, (PathBuf, state::PodState)> = state::load_all(&agent.data_dir);
    let mut first_sync = true;
    let mut seen: Vec<String> = Vec::new();
    // Back off on errors (an API server restarting), instead of spinning.
    let mut stream = watcher::watcher(api, cfg).default_backoff().boxed();
    while let Some(ev) = stream.try_next().await.transpose() {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(error = %e, "pod watch");
                continue;
            }
        };
        match ev {
            Event::Init => seen.clear(),
            Event::InitApply(p) => {
                seen.push(p.metadata.uid.clone().unwrap_or_default());
                dispatch(&agent, p, &mut saved).await;
            }
            Event::Apply(p) => dispatch(&agent, p, &mut saved).await,
            Event::Delete(p) => {
                let uid = p.metadata.uid.clone().unwrap_or_default();
                if let Some(h) = lock(&agent.pods).get(&uid) {
                    let _ = h.tx.send(Msg::Gone);
                }
            }
            Event::InitDone => {
                // Pods that vanished while we were not watching.
                let gone: Vec<_> = lock(&agent.pods)
                    .iter()
                    .filter(|(uid, _)| !seen.contains(uid))
                    .map(|(_, h)| h.tx.clone())
                    .collect();
                for tx in gone {
                    let _ = tx.send(Msg::Gone);
                }
                if first_sync {
                    first_sync = false;
                    for (uid, (dir, s)) in std::mem::take(&mut saved) {
                        cleanup_orphan(&agent, &uid, &dir, &s).await;
                    }
                    let live: Vec<String> = lock(&agent.pods).keys().cloned().collect();
                    for (ip, owner) in agent.ipam.allocations() {
                        if !live.contains(&owner) {
                            agent.ipam.release(ip);
                        }
                    }
                }
            }
        }
    }
    anyhow::bail!("pod watch ended")
}

/// How often the pods' bound tokens are checked for being due.
const TOKEN_CHECK: std::time::Duration = std::time::Duration::from_secs(10);

/// Has the pods whose ServiceAccount tokens are due rewrite those volumes
/// (which fetches new tokens), and forgets the tokens of pods that are gone.
async fn refresh_tokens(agent: Arc<Agent>) {
    loop {
        tokio::time::sleep(TOKEN_CHECK).await;
        let pods = lock(&agent.pods);
        volumes::sa_token::retain_pods(|uid| pods.contains_key(uid));
        for uid in volumes::sa_token::due(std::time::SystemTime::now()) {
            if let Some(h) = pods.get(&uid) {
                let _ =
                    h.tx.send(Msg::SourceChanged(volumes::Source::ServiceAccountToken));
            }
        }
    }
}

async fn dispatch(
    agent: &Arc<Agent>,
    pod: Pod,
    saved: &mut BTreeMap<String, (PathBuf, state::PodState)>,
) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if uid.is_empty() {
        return;
    }
    {
        let pods = lock(&agent.pods);
        if let Some(h) = pods.get(&uid) {
            let _ = h.tx.send(Msg::Update(Box::new(pod)));
            return;
        }
    }
    let adopted = saved.remove(&uid).map(|(_, s)| s);
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    let finished = matches!(phase, Some("Succeeded" | "Failed"));
    if adopted.is_none() && (pod.metadata.deletion_timestamp.is_some() || finished) {
        if pod.metadata.deletion_timestamp.is_some() {
            // Nothing of it runs here: let the deletion complete.
            let api: Api<Pod> = Api::namespaced(
                agent.client.clone(),
                pod.metadata.namespace.as_deref().unwrap_or("default"),
            );
            let _ = api
                .delete(
                    pod.metadata.name.as_deref().unwrap_or_default(),
                    &DeleteParams {
                        grace_period_seconds: Some(0),
                        ..Default::default()
                    },
                )
                .await;
        }
        return;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let rt = Arc::new(Mutex::new(Runtime::default()));
    lock(&agent.pods).insert(
        uid,
        PodHandle {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            tx: tx.clone(),
            rt: rt.clone(),
            images: pod
                .spec
                .iter()
                .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
                .filter_map(|c| c.image.clone())
                .collect(),
            sources: source_watch::referenced(&pod),
        },
    );
    agent.source_watches.reconcile(agent);
    let worker = pod::Worker::new(agent.clone(), pod, tx, rt, adopted);
    tokio::spawn(worker.run(rx));
}

/// A pod the agent ran before its restart that no longer exists: kill what is left.
async fn cleanup_orphan(agent: &Agent, uid: &str, dir: &std::path::Path, s: &state::PodState) {
    tracing::info!(uid, pod = %s.name, "cleaning up a pod deleted while the agent was down");
    for c in s.containers.values() {
        if let Some(p) = c.proc.filter(runtime::Proc::alive) {
            container::signal(p.pid, c.runc.as_ref(), "KILL").await;
        }
    }
    if let Some(p) = s.sandbox.filter(runtime::Proc::alive) {
        runtime::signal(p.pid, "KILL").await;
    }
    let runcs: Vec<container::RuncRef> = s
        .containers
        .values()
        .filter_map(|c| c.runc.clone())
        .collect();
    container::remove_pod(uid, dir, runcs).await;
    net::detach_pod(&net::veth_name(uid)).await;
    if let Some(ip) = s.ip {
        agent.ipam.release_owned(ip, uid);
    }
    let _ = std::fs::remove_dir_all(dir);
}
