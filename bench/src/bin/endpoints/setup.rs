//! The cluster's contents before the timed changes: a Ready Node for the scheduler,
//! and `n` Services each selecting one pod of its own, every pod bound by the
//! scheduler, Running with an IP and not Ready, and listed (not ready) in its
//! Service's EndpointSlice.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::serde::{de::DeserializeOwned, Serialize};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::observe::Observed;
use crate::{pod_name, NAMESPACE, NODE};

/// Creates in flight at once during set-up (set-up is not measured).
const SETUP_CONCURRENCY: usize = 16;

/// Creates `what` unless it exists already.
async fn create<K>(api: &Api<K>, what: &K) -> Result<()>
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), what).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A pod's address: distinct for up to 65,536 × 156 pods, never on the machine.
fn pod_ip(i: usize) -> String {
    format!("10.{}.{}.{}", 100 + i / 65536, (i / 256) % 256, i % 256)
}

/// The status a kubelet would write for a started pod; `ready` sets its Ready condition.
pub fn pod_status(ready: bool, ip: Option<&str>, transition: &str) -> serde_json::Value {
    let status = if ready { "True" } else { "False" };
    let mut s = json!({
        "conditions": [{"type": "Ready", "status": status, "lastTransitionTime": transition}]
    });
    if let Some(ip) = ip {
        s["phase"] = json!("Running");
        s["podIP"] = json!(ip);
        s["podIPs"] = json!([{"ip": ip}]);
    }
    json!({ "status": s })
}

/// Now, as Kubernetes writes times (RFC 3339, whole seconds).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub async fn node_and_namespace(client: &kube::Client) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    create(
        &namespaces,
        &serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?,
    )
    .await
    .context("creating the namespace")?;
    let nodes: Api<Node> = Api::all(client.clone());
    create(
        &nodes,
        &serde_json::from_value(json!({"metadata": {"name": NODE}}))?,
    )
    .await
    .context("creating the node")?;
    let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    nodes
        .patch_status(NODE, &PatchParams::default(), &Patch::Merge(&ready))
        .await
        .context("marking the node Ready")?;
    Ok(())
}

/// Creates the `n` Services and their pods, and patches each pod Running, not Ready.
pub async fn services_and_pods(client: &kube::Client, n: usize) -> Result<Duration> {
    let began = Instant::now();
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    futures::stream::iter(0..n)
        .map(|i| {
            let (services, pods) = (services.clone(), pods.clone());
            async move {
                let name = pod_name(i);
                let svc: Service = serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}
                }))?;
                create(&services, &svc)
                    .await
                    .with_context(|| format!("service {name}"))?;
                // No nodeName: the scheduler binds it to the benchmark's node.
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {"app": name}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]}
                }))?;
                create(&pods, &pod)
                    .await
                    .with_context(|| format!("pod {name}"))?;
                let status = pod_status(false, Some(&pod_ip(i)), &now_rfc3339());
                patch_status_retrying(&pods, &name, &status)
                    .await
                    .with_context(|| format!("pod {name} status"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect::<()>()
        .await?;
    Ok(began.elapsed())
}

/// A status patch, retried on 409 Conflict: the API server retries a merge patch
/// that races another write only a few times, and in set-up the scheduler's binding
/// of the same pod races ours.
async fn patch_status_retrying(
    pods: &Api<Pod>,
    name: &str,
    status: &serde_json::Value,
) -> Result<()> {
    let mut attempt = 0;
    loop {
        match pods
            .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < 10 => {
                attempt += 1;
                eprintln!("  {name}: status patch conflicted (attempt {attempt}); retrying");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits until every pod is bound to the node and listed, not ready, in its slice.
pub async fn settle(slices: &Observed, n: usize, timeout: Duration) -> Result<Duration> {
    let began = Instant::now();
    slices
        .wait_until(
            |s| !s.ready && s.node.as_deref() == Some(NODE),
            |count| count >= n,
            timeout,
        )
        .await
        .context("waiting for every pod's endpoint (bound, not ready) in the slices")?;
    Ok(began.elapsed())
}
