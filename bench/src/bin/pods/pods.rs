//! The skiff side: pods created through the API and timed until a watch event
//! shows them Running with the Ready condition True.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ServiceAccount};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use kube::Api;
use serde_json::json;
use tokio::sync::Notify;

/// Every pod of the benchmark lives here.
pub const NAMESPACE: &str = "bench";
/// How long one pod may take before the run is declared failed.
const POD_TIMEOUT: Duration = Duration::from_secs(60);

/// What a benchmark pod runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `busybox` running `sleep 3600`: Ready as soon as its process runs.
    Sleep,
    /// The same, with an exec readiness probe (`true`, no initial delay), so Ready
    /// also waits for the first probe to pass.
    Probed,
    /// The `httpd` test image (a real OCI image, run by runc), already in the
    /// node's store (`imagePullPolicy: IfNotPresent`); Ready as soon as its
    /// container is started, like `Sleep`.
    Image,
}

impl Kind {
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Sleep => "busybox `sleep 3600`",
            Kind::Probed => "busybox `sleep 3600` + exec readiness probe",
            Kind::Image => "the `httpd` test image (busybox `httpd -f -p 80`), cached, no probe",
        }
    }
}

pub fn manifest(name: &str, kind: Kind) -> Result<Pod> {
    let mut container = match kind {
        Kind::Sleep | Kind::Probed => json!({
            "name": "main",
            "image": "busybox",
            "args": ["sleep", "3600"],
        }),
        // The image's own entrypoint; `:latest` would default to `Always`.
        Kind::Image => json!({
            "name": "main",
            "image": crate::images::SERVED,
            "imagePullPolicy": "IfNotPresent",
        }),
    };
    if kind == Kind::Probed {
        container["readinessProbe"] = json!({
            "exec": {"command": ["true"]},
            "initialDelaySeconds": 0,
            "periodSeconds": 1,
        });
    }
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": "bench-pods"}},
        // `sleep` and `httpd` end on SIGTERM; a short grace keeps cleanup quick regardless.
        "spec": {"containers": [container], "terminationGracePeriodSeconds": 2},
    }))?)
}

/// When the watch first saw each stage of a pod.
#[derive(Debug, Default, Clone, Copy)]
pub struct Seen {
    pub scheduled: Option<Instant>,
    pub running: Option<Instant>,
    pub ready: Option<Instant>,
    /// `status.podIP`, once reported.
    pub ip: Option<std::net::IpAddr>,
}

/// One watch over the namespace's pods, started before any pod is created, that
/// stamps the first event showing each stage of each pod. The watch ends when the
/// last clone is dropped.
#[derive(Clone)]
pub struct Tracker {
    shared: Arc<Shared>,
    _watch: Arc<AbortOnDrop>,
}

#[derive(Default)]
struct Shared {
    seen: Mutex<HashMap<String, Seen>>,
    changed: Notify,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Tracker {
    /// Starts the watch and returns once its initial list is done.
    pub async fn start(client: kube::Client) -> Result<Self> {
        let shared = Arc::new(Shared::default());
        let api: Api<Pod> = Api::namespaced(client, NAMESPACE);
        let mut events = watcher::watcher(api, watcher::Config::default()).boxed();
        // The first event is Init: the watch is established (as a list) from here on.
        events.try_next().await?.context("the pod watch ended")?;
        let s = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                match events.try_next().await {
                    Ok(Some(watcher::Event::Apply(p) | watcher::Event::InitApply(p))) => {
                        s.observe(&p, Instant::now())
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        eprintln!("pod watch: {e}");
                        // The watcher retries at once; do not spin on a dead server.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(Tracker {
            shared,
            _watch: Arc::new(AbortOnDrop(task)),
        })
    }

    /// Waits until the watch has seen `name` Running and Ready.
    pub async fn ready(&self, name: &str) -> Result<Seen> {
        let s = &self.shared;
        let wait = async {
            loop {
                let changed = s.changed.notified();
                if let Some(s) = lock(&s.seen).get(name).filter(|s| s.ready.is_some()) {
                    return *s;
                }
                changed.await;
            }
        };
        tokio::time::timeout(POD_TIMEOUT, wait)
            .await
            .with_context(|| format!("pod {name} not Running and Ready within {POD_TIMEOUT:?}"))
    }
}

impl Shared {
    fn observe(&self, p: &Pod, at: Instant) {
        let Some(name) = p.metadata.name.clone() else {
            return;
        };
        let scheduled = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty());
        let status = p.status.as_ref();
        let running = status.and_then(|s| s.phase.as_deref()) == Some("Running");
        let ready = running
            && status
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let ip = status
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok());
        let mut seen = lock(&self.seen);
        let s = seen.entry(name).or_default();
        s.ip = s.ip.or(ip);
        for (now, stamp) in [
            (scheduled, &mut s.scheduled),
            (running, &mut s.running),
            (ready, &mut s.ready),
        ] {
            if now && stamp.is_none() {
                *stamp = Some(at);
            }
        }
        drop(seen);
        if ready {
            self.changed.notify_waiters();
        }
    }
}

/// Start latency of one pod and its stages, all measured from the create request.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// When the create request was sent.
    pub began: Instant,
    /// Create request until the API answered.
    pub created: Duration,
    pub scheduled: Duration,
    pub ready: Duration,
    /// `status.podIP` as the Ready event showed it.
    pub ip: Option<std::net::IpAddr>,
}

/// Creates one pod and waits for it to be Running and Ready.
pub async fn start_one(
    client: &kube::Client,
    tracker: &Tracker,
    name: &str,
    kind: Kind,
) -> Result<Timing> {
    let api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let pod = manifest(name, kind)?;
    let began = Instant::now();
    api.create(&PostParams::default(), &pod)
        .await
        .with_context(|| format!("creating pod {name}"))?;
    let created = began.elapsed();
    let seen = tracker.ready(name).await?;
    let since =
        |t: Option<Instant>| t.map_or(Duration::ZERO, |t| t.saturating_duration_since(began));
    Ok(Timing {
        began,
        created,
        scheduled: since(seen.scheduled),
        ready: since(seen.ready),
        ip: seen.ip,
    })
}

/// Creates `n` pods at once (concurrent requests); each is timed from its own
/// request. Returns the timings and the time until the last was Ready.
pub async fn start_burst(
    client: &kube::Client,
    tracker: &Tracker,
    prefix: &str,
    n: usize,
    kind: Kind,
) -> Result<(Vec<Timing>, Duration)> {
    let began = Instant::now();
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}-{i:03}")).collect();
    let timings = futures::future::try_join_all(
        names
            .iter()
            .map(|name| start_one(client, tracker, name, kind)),
    )
    .await?;
    Ok((timings, began.elapsed()))
}

pub async fn create_namespace(client: &kube::Client) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}
    }))?;
    api.create(&PostParams::default(), &ns)
        .await
        .context("creating the benchmark's namespace")?;
    wait_service_account(client).await
}

/// Waits until the controllers have made the namespace's `default`
/// ServiceAccount and `kube-root-ca.crt` ConfigMap, so every pod gets (and its
/// agent fills) the projected service-account token volume, as in `skiff server`.
async fn wait_service_account(client: &kube::Client) -> Result<()> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if accounts.get_opt("default").await?.is_some()
            && config_maps.get_opt("kube-root-ca.crt").await?.is_some()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no default ServiceAccount and kube-root-ca.crt in {NAMESPACE} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Deletes every pod in the namespace and waits until the agent has finished each
/// (it removes a pod from the API only after its processes, veth and IP are gone).
pub async fn delete_all(client: &kube::Client, timeout: Duration) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .context("deleting the benchmark's pods")?;
    let deadline = Instant::now() + timeout;
    loop {
        let left = api.list(&ListParams::default()).await?.items.len();
        if left == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{left} pods still exist {timeout:?} after they were deleted");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
