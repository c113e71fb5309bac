//! Benchmark (issue 4): time from a pod becoming Ready to its endpoint being
//! ready in its Service's EndpointSlice, beside the time of the bare API write
//! (the status patch that makes it Ready) in the same run.
//!
//! Run against a skiff server started with `--disable agent,proxy,dns`, inside
//! a network namespace of its own, with KUBECONFIG pointing at it:
//!
//! ```text
//! cargo run --release -p skiff-controllers --example endpoint_latency -- [services] [changes]
//! ```
//!
//! Defaults: 1,000 services (one pod each) and 1,000 changes; prints p50/p99.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::Client;
use serde_json::json;

type Seen = Arc<Mutex<HashMap<String, Instant>>>;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let services: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let changes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let client = Client::try_default().await?;
    let ns = "default";
    let pp = PostParams::default();

    let nodes: Api<Node> = Api::all(client.clone());
    let node = serde_json::from_value(json!({"metadata": {"name": "bench-node"}}))?;
    let _ = nodes.create(&pp, &node).await;
    let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    nodes
        .patch_status("bench-node", &PatchParams::default(), &Patch::Merge(&ready))
        .await?;

    let svcs: Api<Service> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let setup = Instant::now();
    for i in 0..services {
        let name = format!("bench-{i}");
        let svc = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}
        }))?;
        let _ = svcs.create(&pp, &svc).await;
        let pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"nodeName": "bench-node", "containers": [{"name": "c", "image": "nginx"}]}
        }))?;
        let _ = pods.create(&pp, &pod).await;
        let ip = format!("10.{}.{}.{}", 100 + i / 65536, (i / 256) % 256, i % 256);
        let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "False"}]}});
        pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
    }
    eprintln!(
        "setup: {services} services and pods in {:?}",
        setup.elapsed()
    );

    // Record when each pod's endpoint is first seen ready.
    let seen: Seen = Arc::default();
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let s2 = seen.clone();
    tokio::spawn(async move {
        let stream = watcher(slices, watcher::Config::default());
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            let Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) = ev else {
                continue;
            };
            let now = Instant::now();
            let mut m = s2.lock().unwrap_or_else(|e| e.into_inner());
            for e in &s.endpoints {
                let ready = e.conditions.as_ref().and_then(|c| c.ready) == Some(true);
                if let (true, Some(name)) =
                    (ready, e.target_ref.as_ref().and_then(|t| t.name.clone()))
                {
                    m.entry(name).or_insert(now);
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut programming = Vec::new();
    let mut writes = Vec::new();
    for c in 0..changes {
        let name = format!("bench-{}", c % services);
        seen.lock().unwrap_or_else(|e| e.into_inner()).remove(&name);
        let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": ts}]}});
        let t0 = Instant::now();
        pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
        writes.push(t0.elapsed());
        let deadline = t0 + Duration::from_secs(10);
        loop {
            if let Some(t) = seen.lock().unwrap_or_else(|e| e.into_inner()).get(&name) {
                programming.push(t.saturating_duration_since(t0));
                break;
            }
            if Instant::now() > deadline {
                eprintln!("{name}: not seen within 10 s");
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        // Back to not ready for the next round over the same pod.
        let back = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}});
        pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&back))
            .await?;
    }
    programming.sort();
    writes.sort();
    let (p50, p99) = (
        percentile(&programming, 0.5),
        percentile(&programming, 0.99),
    );
    let (w50, w99) = (percentile(&writes, 0.5), percentile(&writes, 0.99));
    println!(
        "pod Ready -> endpoint ready in slice ({} changes, {services} services):",
        programming.len()
    );
    println!("  p50 {p50:?}  p99 {p99:?}");
    println!("bare API write (pod status patch):");
    println!("  p50 {w50:?}  p99 {w99:?}");
    println!(
        "ratio p50 {:.1}x  p99 {:.1}x",
        p50.as_secs_f64() / w50.as_secs_f64().max(1e-9),
        p99.as_secs_f64() / w99.as_secs_f64().max(1e-9)
    );
    Ok(())
}
