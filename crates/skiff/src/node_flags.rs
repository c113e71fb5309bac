//! The flags of a node, shared by `skiff server` (a node that also runs the
//! control plane) and `skiff agent` (a node that joins one): what the node agent,
//! proxy, DNS and NetworkPolicy components need. They must agree across the
//! cluster where they describe it (`--service-cidr`, `--pod-cidr`,
//! `--cluster-domain`, `--cluster-dns`, `--flannel-backend`).

use std::path::Path;

use anyhow::Result;

#[derive(clap::Args, Debug, Clone)]
pub struct NodeArgs {
    /// Service ClusterIP range (IPv4 CIDR, at most a /12). `default/kubernetes` gets
    /// its first address, `kube-system/kube-dns` its tenth.
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cidr: String,
    /// Name of this node (its Node object).
    #[arg(long, default_value_t = default_node_name(), env = "SKIFF_NODE_NAME")]
    pub node_name: String,
    /// This node's address as other hosts reach it (default: first non-loopback IPv4).
    #[arg(long)]
    pub node_ip: Option<std::net::IpAddr>,
    /// Cluster pod network; each node gets a /24 of it.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub pod_cidr: String,
    /// How pods reach other nodes' pods: `host-gw` (routes via each node's
    /// address; nodes on one L2 segment), `vxlan` (a kernel VXLAN overlay), or
    /// `auto` (direct where a node is on a connected subnet, VXLAN elsewhere).
    #[arg(long, default_value = "auto")]
    pub flannel_backend: skiff_agent::crossnode::Backend,
    /// Seconds the node's Lease lasts; the agent renews it every quarter of that
    /// (kubelet's flag). Keep the server's `--node-monitor-grace-period` several
    /// renewals long.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(4..=3600))]
    pub node_lease_duration_seconds: u32,
    /// The cluster's DNS zone.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Address of the cluster DNS service (pods' nameserver).
    #[arg(long, default_value = "10.96.0.10")]
    pub cluster_dns: std::net::IpAddr,
    /// DNS resolvers for names outside the cluster domain, `ADDR[:PORT]`, repeatable or
    /// comma-separated (default: the nameservers in the node's /etc/resolv.conf).
    #[arg(long = "upstream", value_name = "ADDR[:PORT]", value_delimiter = ',', value_parser = skiff_dns::parse_upstream)]
    pub upstream: Vec<std::net::SocketAddr>,
    /// Components not to start, comma-separated: controllers, agent, proxy, dns,
    /// netpol, ingress.
    #[arg(long, value_delimiter = ',')]
    pub disable: Vec<String>,
    /// Run the built-in catalog's host programs instead of pulling images: for
    /// demos on a machine with no registry at all. Pods then run on the node's own
    /// filesystem, not isolated from it.
    #[arg(long)]
    pub host_images: bool,
    /// Registry mirrors, rewrites and credentials (k3s `registries.yaml` format).
    #[arg(long, default_value = crate::images::DEFAULT_REGISTRY_CONFIG, env = "SKIFF_REGISTRY_CONFIG")]
    pub registry_config: std::path::PathBuf,
    /// Disk usage (percent of the image store's filesystem) above which unused
    /// images are garbage-collected (kubelet's `--image-gc-high-threshold`).
    #[arg(long, default_value_t = 85, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub image_gc_high_threshold: u8,
    /// Disk usage that image garbage collection frees down to (`--image-gc-low-threshold`).
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub image_gc_low_threshold: u8,
}

pub fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_ascii_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "skiff-node".to_string())
}

impl NodeArgs {
    /// The components' settings; `data_dir`: where this node keeps its state.
    pub fn settings(&self, data_dir: &Path) -> Result<crate::components::NodeSettings> {
        if self.image_gc_low_threshold > self.image_gc_high_threshold {
            anyhow::bail!(
                "--image-gc-low-threshold ({}) must not be above --image-gc-high-threshold ({})",
                self.image_gc_low_threshold,
                self.image_gc_high_threshold
            );
        }
        for d in &self.disable {
            if !["controllers", "agent", "proxy", "dns", "netpol", "ingress"].contains(&d.as_str())
            {
                anyhow::bail!(
                    "--disable: unknown component {d:?} (expected controllers, agent, proxy, dns, netpol or ingress)"
                );
            }
        }
        Ok(crate::components::NodeSettings {
            node_name: self.node_name.clone(),
            node_ip: self.node_ip,
            pod_cidr: self.pod_cidr.clone(),
            backend: self.flannel_backend,
            claim_pod_cidr: false,
            node_lease_duration: std::time::Duration::from_secs(u64::from(
                self.node_lease_duration_seconds,
            )),
            controllers: skiff_controllers::Settings {
                cluster_cidr: Some(self.pod_cidr.clone()),
                root_ca_file: Some(data_dir.join(skiff_apiserver::pki::CA)),
                ..Default::default()
            },
            service_cidr: self.service_cidr.clone(),
            cluster_domain: self.cluster_domain.clone(),
            cluster_dns: self.cluster_dns,
            dns_upstreams: self.upstream.clone(),
            disabled: self.disable.clone(),
            ingress: Default::default(),
            data_dir: data_dir.to_path_buf(),
            host_images: self.host_images,
            registry_config: Some(self.registry_config.clone()),
            image_gc_thresholds: (self.image_gc_high_threshold, self.image_gc_low_threshold),
            agent_tls: None,
        })
    }
}
