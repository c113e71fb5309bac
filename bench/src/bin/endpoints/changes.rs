//! The timed part: `changes` pod status flips, one at a time. Change 2k makes pod k
//! Ready, change 2k+1 makes it not Ready again, as a kubelet would report a readiness
//! probe passing and then failing. Each change is timed three ways from the moment the
//! benchmark starts the status patch: until the patch returns (the bare API write,
//! the floor), until the benchmark's own Pod watch shows it (write + watch delivery),
//! and until its EndpointSlice watch shows the pod's endpoint in the new state (what
//! the controllers add: their watch, the reconcile, the slice write and its delivery).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use skiff_bench::stats::Samples;

use crate::observe::Observed;
use crate::setup::{now_rfc3339, pod_status};
use crate::{pod_name, NAMESPACE};

/// How long one change may take before the run fails: a lost endpoint is a bug.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// The latencies of one kind of change.
#[derive(Default)]
pub struct Timings {
    /// Status patch started -> the endpoint's new state on the slice watch.
    pub to_slice: Samples,
    /// Status patch started -> its response (the bare API write).
    pub write: Samples,
    /// Status patch started -> the pod's new state on the pod watch.
    pub to_pod_watch: Samples,
}

impl Timings {
    fn extend(&mut self, other: &Timings) {
        self.to_slice.extend(other.to_slice.clone());
        self.write.extend(other.write.clone());
        self.to_pod_watch.extend(other.to_pod_watch.clone());
    }
}

#[derive(Default)]
pub struct Results {
    pub to_ready: Timings,
    pub to_not_ready: Timings,
    /// Changes whose slice carried the last-change-trigger-time annotation, and of
    /// those, how many named the Ready transition time the change wrote.
    pub trigger_set: usize,
    pub trigger_matches: usize,
    /// The slowest changes to reach the slice, slowest first, to tell where an
    /// outlier's time went.
    pub slowest: Vec<Slow>,
}

/// One change's three times.
#[derive(Debug, Clone)]
pub struct Slow {
    pub change: usize,
    pub pod: String,
    pub ready: bool,
    pub write: Duration,
    pub to_pod_watch: Duration,
    pub to_slice: Duration,
}

/// How many of the slowest changes are kept.
const SLOWEST_KEPT: usize = 5;

impl Results {
    fn keep_if_slow(&mut self, slow: Slow) {
        self.slowest.push(slow);
        self.slowest.sort_by_key(|s| std::cmp::Reverse(s.to_slice));
        self.slowest.truncate(SLOWEST_KEPT);
    }
}

impl Results {
    pub fn all(&self) -> Timings {
        let mut all = Timings::default();
        all.extend(&self.to_ready);
        all.extend(&self.to_not_ready);
        all
    }

    pub fn changes(&self) -> usize {
        self.to_ready.write.len() + self.to_not_ready.write.len()
    }
}

/// Whether an annotation value names the same instant as the RFC 3339 time written.
fn same_instant(annotation: &str, written: &str) -> bool {
    match (
        chrono::DateTime::parse_from_rfc3339(annotation),
        chrono::DateTime::parse_from_rfc3339(written),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

pub async fn run(
    client: &kube::Client,
    slices: &Observed,
    pod_watch: &Observed,
    services: usize,
    changes: usize,
) -> Result<Results> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let mut results = Results::default();
    for c in 0..changes {
        let name = pod_name((c / 2) % services);
        let ready = c % 2 == 0;
        let transition = now_rfc3339();
        let patch = pod_status(ready, None, &transition);
        let t0 = Instant::now();
        pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("change {c}: patching pod {name}"))?;
        let written = t0.elapsed();
        let in_slice = slices
            .wait_for(&name, ready, t0, CHANGE_TIMEOUT)
            .await
            .with_context(|| format!("change {c}"))?;
        // The pod watch saw it long before the controllers could act on it.
        let on_pod_watch = pod_watch
            .wait_for(&name, ready, t0, CHANGE_TIMEOUT)
            .await
            .with_context(|| format!("change {c}"))?;
        let slow = Slow {
            change: c,
            pod: name.clone(),
            ready,
            write: written,
            to_pod_watch: on_pod_watch.since.saturating_duration_since(t0),
            to_slice: in_slice.since.saturating_duration_since(t0),
        };
        let timings = if ready {
            &mut results.to_ready
        } else {
            &mut results.to_not_ready
        };
        timings.write.push(slow.write);
        timings.to_slice.push(slow.to_slice);
        timings.to_pod_watch.push(slow.to_pod_watch);
        results.keep_if_slow(slow);
        if let Some(trigger) = &in_slice.trigger {
            results.trigger_set += 1;
            if same_instant(trigger, &transition) {
                results.trigger_matches += 1;
            }
        }
        if (c + 1) % 250 == 0 {
            eprintln!("  {} changes done", c + 1);
        }
    }
    Ok(results)
}
