//! What the benchmark's own watchers see: for every pod, whether it is Ready (on a
//! Pod watch) and whether its endpoint is ready (on an EndpointSlice watch), and since
//! when. Each state change is stamped the moment its event arrives, so a change's
//! latency is that stamp minus the moment the benchmark started the write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::watch;

use crate::{NAMESPACE, TRIGGER_ANNOTATION};

/// One pod's state as a watcher last saw it change.
#[derive(Debug, Clone)]
pub struct Seen {
    pub ready: bool,
    /// When the event that changed `ready` arrived.
    pub since: Instant,
    /// The node the pod (or its endpoint) is on.
    pub node: Option<String>,
    /// EndpointSlices only: the slice's last-change-trigger-time annotation in the
    /// event that changed `ready`.
    pub trigger: Option<String>,
}

/// Pod name -> state, shared between a watch task and the waiting benchmark.
#[derive(Clone)]
pub struct Observed {
    what: &'static str,
    state: Arc<Mutex<HashMap<String, Seen>>>,
    /// Bumped after every event, to wake waiters.
    tick: Arc<watch::Sender<u64>>,
}

impl Observed {
    fn new(what: &'static str) -> Self {
        Observed {
            what,
            state: Arc::default(),
            tick: Arc::new(watch::channel(0).0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `name` as `ready` (on `node`) at `now`, if that is a change.
    fn record(
        &self,
        name: &str,
        ready: bool,
        node: Option<&str>,
        trigger: Option<&str>,
        now: Instant,
    ) {
        let mut m = self.lock();
        let changed = m.get(name).is_none_or(|s| s.ready != ready);
        let entry = m.entry(name.to_string()).or_insert_with(|| Seen {
            ready,
            since: now,
            node: None,
            trigger: None,
        });
        if changed {
            entry.ready = ready;
            entry.since = now;
            entry.trigger = trigger.map(str::to_string);
        }
        if node.is_some() {
            entry.node = node.map(str::to_string);
        }
    }

    fn bump(&self) {
        self.tick.send_modify(|n| *n += 1);
    }

    pub fn get(&self, name: &str) -> Option<Seen> {
        self.lock().get(name).cloned()
    }

    /// How many pods `done` holds for.
    pub fn count(&self, done: impl Fn(&Seen) -> bool) -> usize {
        self.lock().values().filter(|s| done(s)).count()
    }

    /// Waits until `name` is seen `ready` by an event that arrived at or after
    /// `after`; returns that state.
    pub async fn wait_for(
        &self,
        name: &str,
        ready: bool,
        after: Instant,
        timeout: Duration,
    ) -> Result<Seen> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Subscribed before looking, so an event in between still wakes us.
            let mut tick = self.tick.subscribe();
            if let Some(s) = self.get(name) {
                if s.ready == ready && s.since >= after {
                    return Ok(s);
                }
            }
            if tokio::time::timeout_at(deadline, tick.changed())
                .await
                .is_err()
            {
                bail!(
                    "{}: pod {name} not seen {} within {timeout:?}",
                    self.what,
                    if ready { "ready" } else { "not ready" }
                );
            }
        }
    }

    /// Waits until `done(count)` for the number of pods `seen` holds for, or fails.
    pub async fn wait_until(
        &self,
        seen: impl Fn(&Seen) -> bool,
        done: impl Fn(usize) -> bool,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut tick = self.tick.subscribe();
            let n = self.count(&seen);
            if done(n) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, tick.changed())
                .await
                .is_err()
            {
                bail!(
                    "{}: only {n} pods in the wanted state after {timeout:?}",
                    self.what
                );
            }
        }
    }
}

/// Watches the benchmark namespace's EndpointSlices: every endpoint's ready condition,
/// by the pod its targetRef names.
pub fn watch_slices(client: kube::Client) -> Observed {
    let observed = Observed::new("EndpointSlice watch");
    let out = observed.clone();
    let api: Api<EndpointSlice> = Api::namespaced(client, NAMESPACE);
    tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(ev) = events.next().await {
            let slice = match ev {
                Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => s,
                Ok(_) => continue,
                Err(e) => {
                    eprintln!("EndpointSlice watch: {e}; retrying");
                    continue;
                }
            };
            let now = Instant::now();
            let trigger = slice
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(TRIGGER_ANNOTATION))
                .map(String::as_str);
            for ep in &slice.endpoints {
                let Some(name) = ep.target_ref.as_ref().and_then(|t| t.name.as_deref()) else {
                    continue;
                };
                let ready = ep.conditions.as_ref().and_then(|c| c.ready) == Some(true);
                out.record(name, ready, ep.node_name.as_deref(), trigger, now);
            }
            out.bump();
        }
    });
    observed
}

/// Watches the benchmark namespace's Pods: each one's Ready condition.
pub fn watch_pods(client: kube::Client) -> Observed {
    let observed = Observed::new("Pod watch");
    let out = observed.clone();
    let api: Api<Pod> = Api::namespaced(client, NAMESPACE);
    tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(ev) = events.next().await {
            let pod = match ev {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p,
                Ok(_) => continue,
                Err(e) => {
                    eprintln!("Pod watch: {e}; retrying");
                    continue;
                }
            };
            let now = Instant::now();
            let Some(name) = pod.metadata.name.as_deref() else {
                continue;
            };
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
            out.record(name, ready, node, None, now);
            out.bump();
        }
    });
    observed
}
