//! What the benchmark sees of the cluster: watches (kube-rs reflectors over
//! the cluster's own kubeconfig) of the Service's EndpointSlices, the
//! Deployment's pods and the Nodes. After every event the state that matters is
//! summed up in a [`Snapshot`], stamped with the wall clock when the event
//! arrived; each snapshot that differs from the last is kept, so the round can
//! read afterwards when each condition first held.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;

use crate::probe::now_ns;

/// The state the round's figures are read from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Wall-clock nanoseconds when the event that made it arrived.
    pub at: i128,
    /// Endpoints in the Service's slices that are ready (a missing condition
    /// counts as ready, as the API says), per node.
    pub ready_endpoints: BTreeMap<String, usize>,
    /// Pods of the Deployment Ready and not being deleted, per node.
    pub ready_pods: BTreeMap<String, usize>,
    /// Each Node's Ready condition status (`True`, `False`, `Unknown`).
    pub node_ready: BTreeMap<String, String>,
}

impl Snapshot {
    pub fn endpoints_on(&self, node: &str) -> usize {
        self.ready_endpoints.get(node).copied().unwrap_or(0)
    }

    pub fn pods_on(&self, node: &str) -> usize {
        self.ready_pods.get(node).copied().unwrap_or(0)
    }

    pub fn ready_pods_except(&self, node: &str) -> usize {
        self.ready_pods
            .iter()
            .filter(|(n, _)| n.as_str() != node)
            .map(|(_, c)| c)
            .sum()
    }

    pub fn node_status(&self, node: &str) -> &str {
        self.node_ready.get(node).map_or("", String::as_str)
    }

    fn same_state(&self, o: &Snapshot) -> bool {
        self.ready_endpoints == o.ready_endpoints
            && self.ready_pods == o.ready_pods
            && self.node_ready == o.node_ready
    }
}

/// The watches, running until dropped.
pub struct Observer {
    task: tokio::task::JoinHandle<()>,
    timeline: Arc<Mutex<Vec<Snapshot>>>,
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn pod_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn summarize(slices: &Store<EndpointSlice>, pods: &Store<Pod>, nodes: &Store<Node>) -> Snapshot {
    let mut s = Snapshot {
        at: now_ns(),
        ..Default::default()
    };
    for slice in slices.state() {
        for e in &slice.endpoints {
            let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if ready {
                let node = e.node_name.clone().unwrap_or_default();
                *s.ready_endpoints.entry(node).or_default() += e.addresses.len();
            }
        }
    }
    for p in pods.state() {
        if pod_ready(&p) {
            let node = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            *s.ready_pods.entry(node).or_default() += 1;
        }
    }
    for n in nodes.state() {
        let status = n
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map_or_else(String::new, |c| c.status.clone());
        s.node_ready
            .insert(n.metadata.name.clone().unwrap_or_default(), status);
    }
    s
}

impl Observer {
    /// Watches the slices of Service `service` and the pods labelled
    /// `selector` in `namespace`, and every Node.
    pub fn start(client: kube::Client, namespace: &str, service: &str, selector: &str) -> Self {
        let (slices, w1) = reflector::store();
        let (pods, w2) = reflector::store();
        let (nodes, w3) = reflector::store();
        let label = format!("kubernetes.io/service-name={service}");
        let s1 = reflector::reflector(
            w1,
            watcher::watcher(
                Api::<EndpointSlice>::namespaced(client.clone(), namespace),
                watcher::Config::default().labels(&label),
            ),
        )
        .default_backoff()
        .map(|e| e.map(|_| ()))
        .boxed();
        let s2 = reflector::reflector(
            w2,
            watcher::watcher(
                Api::<Pod>::namespaced(client.clone(), namespace),
                watcher::Config::default().labels(selector),
            ),
        )
        .default_backoff()
        .map(|e| e.map(|_| ()))
        .boxed();
        let s3 = reflector::reflector(
            w3,
            watcher::watcher(Api::<Node>::all(client), watcher::Config::default()),
        )
        .default_backoff()
        .map(|e| e.map(|_| ()))
        .boxed();
        let timeline = Arc::new(Mutex::new(Vec::<Snapshot>::new()));
        let sink = timeline.clone();
        let task = tokio::spawn(async move {
            let mut events = futures::stream::select_all([s1, s2, s3]);
            while let Some(ev) = events.next().await {
                if let Err(e) = ev {
                    eprintln!("  watch: {e}");
                    continue;
                }
                let snap = summarize(&slices, &pods, &nodes);
                let mut t = sink.lock().unwrap_or_else(|e| e.into_inner());
                if t.last().is_none_or(|l| !l.same_state(&snap)) {
                    t.push(snap);
                }
            }
        });
        Observer { task, timeline }
    }

    pub fn latest(&self) -> Snapshot {
        let t = self.timeline.lock().unwrap_or_else(|e| e.into_inner());
        t.last().cloned().unwrap_or_default()
    }

    /// Every snapshot so far.
    pub fn timeline(&self) -> Vec<Snapshot> {
        self.timeline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until the latest snapshot satisfies `ok`; returns it.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        ok: impl Fn(&Snapshot) -> bool,
    ) -> Result<Snapshot> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.latest();
            if ok(&s) {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!("{what}: not within {timeout:?}\nlast seen {s:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The first snapshot at or after `after` (wall ns) that satisfies `ok`.
pub fn first(timeline: &[Snapshot], after: i128, ok: impl Fn(&Snapshot) -> bool) -> Option<i128> {
    timeline
        .iter()
        .filter(|s| s.at >= after)
        .find(|s| ok(s))
        .map(|s| s.at)
}
