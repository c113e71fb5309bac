//! Node registration and heartbeats, as kubelet does them: the Node object with its
//! addresses, pod CIDR, capacity, conditions and kubelet endpoint; a Lease in
//! `kube-node-lease` renewed every quarter of its duration (10 s of 40 s, kubelet's
//! defaults); the status re-posted every minute (and on start) so
//! `lastHeartbeatTime` stays fresh.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

use crate::net::Cidr;

pub struct NodeInfo {
    pub name: String,
    pub ip: Ipv4Addr,
    pub port: u16,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn now_micro() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn memory_ki() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn status(n: &NodeInfo, ready_since: &str) -> serde_json::Value {
    let t = now();
    let capacity = json!({
        "cpu": cpus().to_string(),
        "memory": format!("{}Ki", memory_ki()),
        "pods": "110",
        "ephemeral-storage": "0",
    });
    let cond = |ty: &str, status: &str, reason: &str, message: &str, since: &str| {
        json!({"type": ty, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": t, "lastTransitionTime": since})
    };
    json!({
        "capacity": capacity,
        "allocatable": capacity,
        "addresses": [
            {"type": "InternalIP", "address": n.ip.to_string()},
            {"type": "Hostname", "address": n.name},
        ],
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available", ready_since),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure", ready_since),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available", ready_since),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status", ready_since),
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": n.port}},
        "nodeInfo": {
            "machineID": read_trim("/etc/machine-id"),
            "systemUUID": read_trim("/sys/class/dmi/id/product_uuid"),
            "bootID": read_trim("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": read_trim("/proc/sys/kernel/osrelease"),
            "osImage": "skiff",
            "containerRuntimeVersion": "skiff://0.1.0",
            "kubeletVersion": "v1.33.0-skiff",
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        },
    })
}

/// Creates the Node if it is missing (labels as kubelet sets them), claiming
/// `claim` as its pod CIDR when it has none yet. With no claim, the pod CIDR is
/// the node-IPAM controller's to assign: see [`wait_pod_cidr`].
pub async fn create(client: &kube::Client, name: &str, claim: Option<Cidr>) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let existing = nodes.get_opt(name).await.context("reading the Node")?;
    let arch = std::env::consts::ARCH
        .replace("x86_64", "amd64")
        .replace("aarch64", "arm64");
    let spec = match claim {
        Some(c) => json!({"podCIDR": c.to_string(), "podCIDRs": [c.to_string()]}),
        None => json!({}),
    };
    match existing {
        None => {
            let node: Node = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": arch,
                    "beta.kubernetes.io/os": "linux",
                    "beta.kubernetes.io/arch": arch,
                }},
                "spec": spec,
            }))?;
            match nodes.create(&PostParams::default(), &node).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e).context("creating the Node"),
            }
        }
        Some(n) => {
            let has_cidr = n
                .spec
                .as_ref()
                .and_then(|s| s.pod_cidr.as_deref())
                .is_some_and(|c| !c.is_empty());
            // The pod CIDR is immutable once set (as upstream), so only a Node
            // without one takes the claim.
            if !has_cidr && claim.is_some() {
                nodes
                    .patch(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(&json!({"spec": spec})),
                    )
                    .await
                    .context("updating the Node")?;
            }
        }
    }
    Ok(())
}

/// The Node's pod CIDR, once it exists and has one: the node-IPAM controller
/// assigns it after the Node is created (kubelet waits the same way before it
/// starts pods).
pub async fn wait_pod_cidr(client: &kube::Client, name: &str) -> Result<Cidr> {
    let nodes: Api<Node> = Api::all(client.clone());
    let started = std::time::Instant::now();
    let mut told = false;
    loop {
        // Absent: the agent has not created it yet (other node components wait
        // for the range too), or it was deleted and the agent makes it again.
        let node = nodes.get_opt(name).await.context("reading the Node")?;
        let cidr = node.and_then(|n| n.spec).and_then(|s| s.pod_cidr);
        if let Some(c) = cidr.filter(|c| !c.is_empty()) {
            return Cidr::parse(&c).with_context(|| format!("the Node's spec.podCIDR {c:?}"));
        }
        if !told && started.elapsed() > Duration::from_secs(3) {
            tracing::info!(
                node = name,
                "waiting for the node-IPAM controller to assign a pod CIDR"
            );
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Posts the Node's status (addresses, capacity, conditions, endpoint) and
/// returns the time its conditions hold from.
pub async fn register(client: &kube::Client, n: &NodeInfo) -> Result<String> {
    let since = now();
    post_status(client, n, &since).await?;
    Ok(since)
}

async fn post_status(client: &kube::Client, n: &NodeInfo, since: &str) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch_status(
            &n.name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status(n, since)})),
        )
        .await
        .context("posting the Node status")?;
    Ok(())
}

/// How often the node status is re-posted besides the Lease renewals.
const STATUS_PERIOD: Duration = Duration::from_secs(60);

async fn renew_lease(client: &kube::Client, node: &str, duration: Duration) -> Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let spec = json!({"holderIdentity": node, "leaseDurationSeconds": duration.as_secs(),
        "renewTime": now_micro()});
    if leases.get_opt(node).await?.is_some() {
        leases
            .patch(
                node,
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": spec})),
            )
            .await?;
    } else {
        let lease: Lease = serde_json::from_value(json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": node, "namespace": "kube-node-lease"},
            "spec": spec,
        }))?;
        leases.create(&PostParams::default(), &lease).await?;
    }
    Ok(())
}

/// Heartbeats until the task is dropped: the Lease every quarter of
/// `lease_duration` (kubelet's `--node-lease-duration-seconds`; the server's
/// `--node-monitor-grace-period` should be several renewals long), the status
/// every minute, and at once when the Node is seen not Ready (the
/// node-lifecycle controller marked it Unknown while this node was cut off), so
/// a node that comes back is usable again within one renewal.
pub async fn heartbeat(
    client: kube::Client,
    n: NodeInfo,
    mut since: String,
    lease_duration: Duration,
) {
    let nodes: Api<Node> = Api::all(client.clone());
    let period = (lease_duration / 4).max(Duration::from_secs(1));
    let mut tick = tokio::time::interval(period);
    let mut posted = std::time::Instant::now();
    loop {
        tick.tick().await;
        if let Err(e) = renew_lease(&client, &n.name, lease_duration).await {
            tracing::warn!(error = %e, "renewing the node lease");
        }
        let marked_down = match nodes.get_opt(&n.name).await {
            Ok(Some(node)) => !is_ready(&node),
            _ => false,
        };
        if marked_down {
            // Ready again from now: the condition's transition time moves.
            since = now();
        }
        if marked_down || posted.elapsed() >= STATUS_PERIOD {
            if let Err(e) = post_status(&client, &n, &since).await {
                tracing::warn!(error = %e, "posting node status");
            }
            posted = std::time::Instant::now();
        }
    }
}

fn is_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
