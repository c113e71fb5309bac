//! One round: a fresh three-node cluster, the Deployment spread over it, the
//! prober running, node 3 killed, and the times read from the watches.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::PostParams;
use kube::Api;
use serde_json::json;

use crate::cluster::{Cluster, VICTIM};
use crate::observe::{first, Observer};
use crate::probe::{now_ns, Attempt, Prober};
use crate::Args;

const NAMESPACE: &str = "default";
const APP: &str = "whoami";
const PROBER_POD: &str = "prober";
/// A prober connection not established within this counts as failed: long
/// enough for two SYN retransmissions (1 s, then 2 s later), so a SYN the
/// server's short accept queue dropped is retried, not counted as a failure,
/// while a SYN sent to a dead node's pod is never answered.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// An established connection that took this long needed a retransmitted SYN.
pub const PROBE_SLOW: Duration = Duration::from_millis(900);

/// What the prober saw in one window of the round.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    pub total: usize,
    pub failed: usize,
    /// Established, after a retransmitted SYN.
    pub slow: usize,
}

impl Window {
    fn of<'a>(attempts: impl Iterator<Item = &'a Attempt>) -> Self {
        let mut w = Window::default();
        for a in attempts {
            w.total += 1;
            w.failed += usize::from(!a.ok);
            w.slow += usize::from(a.ok && a.end - a.start >= PROBE_SLOW.as_nanos() as i128);
        }
        w
    }
}

/// The figures of one round; times are wall-clock nanoseconds.
#[derive(Debug, Clone)]
pub struct Round {
    /// Ready replicas on nodes 1, 2, 3 before the kill.
    pub spread: [usize; 3],
    pub kill: i128,
    /// Node 3's last Lease renewTime (read after the kill).
    pub last_renew: i128,
    /// `last_renew` + the grace period.
    pub grace_end: i128,
    /// The watch shows node 3 Ready=Unknown.
    pub unknown: Option<i128>,
    /// The watch shows no ready endpoint on node 3 in the Service's slices.
    pub endpoints: i128,
    /// The watch shows every replica Ready on nodes 1 and 2.
    pub replicas: i128,
    /// Prober connections started before the kill, between the kill and the
    /// endpoints going not ready, and after that.
    pub before: Window,
    pub during: Window,
    pub after: Window,
    /// The latest start of a failed connection after the endpoints went not
    /// ready, from that moment.
    pub last_failure_after: Option<i128>,
    /// Snapshots in which node 1 or 2 was not Ready (should be none).
    pub healthy_not_ready: usize,
    /// Of the connections failed after the endpoints went: those node 1's
    /// conntrack table sent to a pod on node 3 by an entry an earlier failed
    /// attempt from the same source port left (stale), those it sent there
    /// with no such attempt (the proxier had not caught up yet), the rest.
    pub failed_stale: usize,
    pub failed_lag: usize,
    pub failed_other: usize,
}

fn secs(ns: i128) -> f64 {
    ns as f64 / 1e9
}

impl Round {
    pub fn summary(&self) -> String {
        format!(
            "spread {:?}; renewed {:.2} s before the kill; endpoints not ready {:.2} s after \
             the kill ({:+.3} s after grace end); replicas Ready elsewhere {:.2} s after the kill; \
             prober: {} of {} failed ({} slow) after the endpoints went",
            self.spread,
            secs(self.kill - self.last_renew),
            secs(self.endpoints - self.kill),
            secs(self.endpoints - self.grace_end),
            secs(self.replicas - self.kill),
            self.after.failed,
            self.after.total,
            self.after.slow,
        )
    }
}

async fn create<K>(api: &Api<K>, value: serde_json::Value) -> Result<()>
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + k8s_openapi::serde::Serialize
        + k8s_openapi::serde::de::DeserializeOwned,
{
    let obj: K = serde_json::from_value(value)?;
    api.create(&PostParams::default(), &obj).await?;
    Ok(())
}

/// The Deployment, its Service and the prober pod (pinned to node 1).
async fn workload(client: &kube::Client, replicas: usize) -> Result<()> {
    let labels = json!({"app": APP});
    create(
        &Api::<Deployment>::namespaced(client.clone(), NAMESPACE),
        json!({
            "metadata": {"name": APP},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{
                        "name": APP, "image": "traefik/whoami",
                        "ports": [{"containerPort": 80}],
                        // Ready once it listens, not once its process started.
                        "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1},
                    }]},
                },
            },
        }),
    )
    .await
    .context("creating the Deployment")?;
    create(
        &Api::<Service>::namespaced(client.clone(), NAMESPACE),
        json!({
            "metadata": {"name": APP},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 80}]},
        }),
    )
    .await
    .context("creating the Service")?;
    create(
        &Api::<Pod>::namespaced(client.clone(), NAMESPACE),
        json!({
            "metadata": {"name": PROBER_POD, "labels": {"app": PROBER_POD}},
            "spec": {
                "nodeName": Cluster::node_name(1),
                "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "sleep", "image": "busybox", "command": ["sleep", "3600"]}],
            },
        }),
    )
    .await
    .context("creating the prober pod")?;
    Ok(())
}

/// The PID of the prober pod's sandbox, from node 1's agent state, once the
/// pod is Running.
async fn prober_sandbox(client: &kube::Client, cluster: &Cluster) -> Result<u32> {
    let pods = Api::<Pod>::namespaced(client.clone(), NAMESPACE);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let running = pods
            .get(PROBER_POD)
            .await?
            .status
            .and_then(|s| s.phase)
            .is_some_and(|p| p == "Running");
        if running {
            let saved = skiff_agent::state::load_all(&cluster.agent_dir(1));
            let sandbox = saved
                .values()
                .find(|(_, s)| s.namespace == NAMESPACE && s.name == PROBER_POD)
                .and_then(|(_, s)| s.sandbox)
                .filter(|p| p.alive());
            if let Some(p) = sandbox {
                return Ok(p.pid);
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the prober pod is not running on node 1 after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// For each failed connection (by source port), the endpoint node 1's
/// conntrack table holds for it: `conntrack -L` in node 1's namespace of the
/// entries to the ClusterIP. `(port, reply source)` pairs.
fn conntrack_endpoints(netns_pid: u32, cip: std::net::Ipv4Addr) -> Result<Vec<(u16, String)>> {
    let out = std::process::Command::new("nsenter")
        .args(["-t", &netns_pid.to_string(), "-n", "--"])
        .args([
            "conntrack",
            "-L",
            "-p",
            "tcp",
            "--orig-dst",
            &cip.to_string(),
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .context("running conntrack in node 1's namespace")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut found = Vec::new();
    for line in text.lines() {
        // `... src=POD dst=CIP sport=P dport=80 [UNREPLIED] src=EP dst=POD ...`
        let srcs: Vec<&str> = line
            .split_whitespace()
            .filter_map(|w| w.strip_prefix("src="))
            .collect();
        let sport = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("sport="))
            .and_then(|p| p.parse::<u16>().ok());
        if let (Some(port), Some(ep)) = (sport, srcs.get(1)) {
            found.push((port, ep.to_string()));
        }
    }
    Ok(found)
}

/// The pod IPs of the Deployment's pods on `node`.
async fn dead_pod_ips(client: &kube::Client, node: &str) -> Result<Vec<String>> {
    let pods = Api::<Pod>::namespaced(client.clone(), NAMESPACE)
        .list(&kube::api::ListParams::default().labels(&format!("app={APP}")))
        .await?;
    Ok(pods
        .items
        .into_iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
        .filter_map(|p| p.status.and_then(|s| s.pod_ip))
        .collect())
}

/// Node `node`'s Lease renewTime, wall-clock nanoseconds.
async fn renew_time(client: &kube::Client, node: &str) -> Result<i128> {
    let lease = Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
        .get(node)
        .await
        .with_context(|| format!("reading node {node}'s Lease"))?;
    let t = lease
        .spec
        .and_then(|s| s.renew_time)
        .with_context(|| format!("node {node}'s Lease has no renewTime"))?;
    Ok(t.0.as_nanosecond())
}

/// The pods, for a failed round's message.
async fn describe_pods(client: &kube::Client) -> String {
    let list = match Api::<Pod>::namespaced(client.clone(), NAMESPACE)
        .list(&Default::default())
        .await
    {
        Ok(l) => l,
        Err(e) => return format!("listing pods: {e}"),
    };
    let mut out = String::from("pods:\n");
    for p in list.items {
        let st = p.status.unwrap_or_default();
        let conds: Vec<String> = st
            .conditions
            .unwrap_or_default()
            .iter()
            .map(|c| format!("{}={}", c.type_, c.status))
            .collect();
        out.push_str(&format!(
            "  {} node={} phase={} ip={} deleting={} {}\n",
            p.metadata.name.unwrap_or_default(),
            p.spec.and_then(|s| s.node_name).unwrap_or_default(),
            st.phase.unwrap_or_default(),
            st.pod_ip.unwrap_or_default(),
            p.metadata.deletion_timestamp.is_some(),
            conds.join(","),
        ));
    }
    out
}

pub async fn run(args: &Args, skiff: &Path, data_dir: &Path) -> Result<Round> {
    let cluster = Cluster::up(args, skiff, data_dir).await?;
    let client = skiff_bench::apiserver::client(&cluster.kubeconfig()).await?;
    let nodes: Vec<String> = (1..=3).map(Cluster::node_name).collect();
    let victim = Cluster::node_name(VICTIM);
    let observer = Observer::start(client.clone(), NAMESPACE, APP, &format!("app={APP}"));
    workload(&client, args.replicas).await?;
    let r = args.replicas;
    let spread = observer
        .wait_for(
            "every replica Ready and ready in the slices, on all three nodes",
            Duration::from_secs(180),
            |s| {
                nodes
                    .iter()
                    .all(|n| s.pods_on(n) > 0 && s.node_status(n) == "True")
                    && s.ready_pods.values().sum::<usize>() == r
                    && s.ready_endpoints.values().sum::<usize>() == r
            },
        )
        .await?;
    let spread = [0, 1, 2].map(|i| spread.pods_on(&nodes[i]));
    eprintln!("  {r} replicas Ready, per node {spread:?}");

    let cip: std::net::Ipv4Addr = Api::<Service>::namespaced(client.clone(), NAMESPACE)
        .get(APP)
        .await?
        .spec
        .and_then(|s| s.cluster_ip)
        .context("no ClusterIP")?
        .parse()?;
    let pid = prober_sandbox(&client, &cluster).await?;
    let prober = Prober::start(
        pid,
        SocketAddr::from((cip, 80)),
        args.probe_loops,
        Duration::from_millis(args.probe_interval_ms),
        PROBE_TIMEOUT,
    )?;
    // Until the prober is steady: the proxier has the service, the replicas answer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (total, ok) = prober.counts();
        if ok >= 50 && ok == total {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the ClusterIP prober is not steady after 30 s: {ok} of {total} connections established");
        }
        if ok < total {
            // A failure while every node is up: start counting again.
            eprintln!(
                "  prober: {} of {total} connections failed before the kill; waiting",
                total - ok
            );
            prober
                .attempts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
    }
    let setup_done = now_ns();
    // A random moment within one renewal period: the set-up above takes about
    // the same time every round, and would otherwise kill at the same phase
    // of node 3's renewals each time.
    let renew_period = Duration::from_secs(args.lease).div_f64(4.0);
    let pause = renew_period.mul_f64(rand::random::<f64>());
    tokio::time::sleep(pause).await;
    let renew_before = renew_time(&client, &victim).await?;
    // Node 3's pods' addresses, to tell where failed connections went.
    let dead = dead_pod_ips(&client, &victim).await?;

    let mac_before = cluster.bridge_mac();
    let kill = now_ns();
    cluster.kill_node(VICTIM)?;
    let bridge_mac_changed = cluster.bridge_mac() != mac_before;
    if bridge_mac_changed {
        eprintln!(
            "  the nodes' bridge changed its MAC address with node 3's veth gone ({mac_before} -> {})",
            cluster.bridge_mac()
        );
    }
    eprintln!(
        "  node {VICTIM} killed ({:.2} s after its Lease was last seen renewed)",
        secs(kill - renew_before)
    );
    let grace = Duration::from_secs(args.grace);
    let toleration = Duration::from_secs(args.toleration);
    let gone = observer
        .wait_for(
            "node 3's endpoints not ready",
            grace + Duration::from_secs(60),
            |s| s.endpoints_on(&victim) == 0,
        )
        .await;
    if let Err(e) = gone {
        let neigh = std::process::Command::new("nsenter")
            .args([
                "-t",
                &cluster.netns_pid(1)?.to_string(),
                "-n",
                "--",
                "ip",
                "neigh",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        eprintln!(
            "  the bridge's MAC now {}; node 1's neighbours:\n{neigh}",
            cluster.bridge_mac()
        );
        let renew = tokio::time::timeout(Duration::from_secs(5), renew_time(&client, &victim))
            .await
            .ok()
            .and_then(Result::ok);
        eprintln!(
            "  node 3's Lease renewTime now: {}\n  server log (node 1), last lines:\n{}",
            renew.map_or("unreadable".into(), |r| format!(
                "{:+.3} s after the kill",
                secs(r - kill)
            )),
            cluster.log_tail(1, 60)
        );
        return Err(e);
    }
    let moved = observer
        .wait_for(
            "every replica Ready on nodes 1 and 2",
            grace + toleration + Duration::from_secs(120),
            |s| s.ready_pods_except(&victim) >= r,
        )
        .await;
    if let Err(e) = moved {
        eprintln!("{}", describe_pods(&client).await);
        return Err(e);
    }
    // The prober goes on a little after the last change.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let attempts = prober.stop().await;
    let last_renew = renew_time(&client, &victim).await?;
    let timeline = observer.timeline();
    drop(observer);

    let endpoints = first(&timeline, kill, |s| s.endpoints_on(&victim) == 0)
        .context("no snapshot with node 3's endpoints gone")?;
    let replicas = first(&timeline, kill, |s| s.ready_pods_except(&victim) >= r)
        .context("no snapshot with every replica elsewhere")?;
    let unknown = first(&timeline, kill, |s| s.node_status(&victim) == "Unknown");
    let healthy_not_ready = timeline
        .iter()
        .filter(|s| s.at >= setup_done)
        .filter(|s| nodes[..2].iter().any(|n| s.node_status(n) != "True"))
        .count();
    let before = Window::of(attempts.iter().filter(|a| a.start < kill));
    let during = Window::of(
        attempts
            .iter()
            .filter(|a| a.start >= kill && a.start < endpoints),
    );
    let after = Window::of(attempts.iter().filter(|a| a.start >= endpoints));
    let trace = std::env::var_os("SKIFF_BENCH_TRACE").is_some();
    let conntrack = if trace || attempts.iter().any(|a| a.start >= endpoints && !a.ok) {
        conntrack_endpoints(cluster.netns_pid(1)?, cip)?
    } else {
        Vec::new()
    };
    let endpoint_of = |port: u16| {
        conntrack
            .iter()
            .find(|(p, _)| *p == port)
            .map_or("no entry", |(_, e)| e.as_str())
    };
    if trace {
        let rel = |t: i128| format!("{:+.3}", secs(t - kill));
        eprintln!("  timeline (s after the kill):");
        for snap in timeline.iter().filter(|s| s.at >= setup_done) {
            eprintln!(
                "    {} endpoints {:?} pods {:?} nodes {:?}",
                rel(snap.at),
                snap.ready_endpoints,
                snap.ready_pods,
                snap.node_ready
            );
        }
        for a in attempts
            .iter()
            .filter(|a| !a.ok || a.end - a.start >= PROBE_SLOW.as_nanos() as i128)
        {
            eprintln!(
                "    {} prober connection from port {} {} after {:.3} s (conntrack: to {})",
                rel(a.start),
                a.port,
                if a.ok { "established" } else { "failed" },
                secs(a.end - a.start),
                endpoint_of(a.port)
            );
        }
    }
    let last_failure_after = attempts
        .iter()
        .filter(|a| a.start >= endpoints && !a.ok)
        .map(|a| a.start - endpoints)
        .max();
    // Where did the failures after the endpoints went go? Node 1's conntrack
    // (read above, while the cluster is still up) says which endpoint each
    // source port's entry was sent to; the prober's own log says whether that
    // port had already failed before the endpoints went (a stale entry reused).
    let (mut failed_stale, mut failed_lag, mut failed_other) = (0, 0, 0);
    for f in attempts.iter().filter(|a| a.start >= endpoints && !a.ok) {
        let ep = endpoint_of(f.port);
        let to_dead = dead.iter().any(|d| d == ep);
        let earlier = attempts
            .iter()
            .find(|b| b.port == f.port && !b.ok && b.start >= kill && b.start < endpoints);
        let why = match (to_dead, earlier) {
            (true, Some(b)) => {
                failed_stale += 1;
                format!(
                    "a stale entry: the same port failed {:.3} s after the kill",
                    secs(b.start - kill)
                )
            }
            (true, None) => {
                failed_lag += 1;
                "node 1's proxier had not yet removed it".to_string()
            }
            (false, _) => {
                failed_other += 1;
                "not node 3".to_string()
            }
        };
        eprintln!(
            "  prober connection from port {} failed {:.3} s after the endpoints went: \
             conntrack sends it to {ep} ({why})",
            f.port,
            secs(f.start - endpoints),
        );
    }
    drop(cluster);
    Ok(Round {
        spread,
        kill,
        last_renew,
        grace_end: last_renew + grace.as_nanos() as i128,
        unknown,
        endpoints,
        replicas,
        before,
        during,
        after,
        last_failure_after,
        healthy_not_ready,
        failed_stale,
        failed_lag,
        failed_other,
    })
}
