//! Route changes, live: a new path added to the Ingress (one merge patch), timed
//! from the PATCH's answer to the first request on that path that a pod of the
//! path's backend answers through the ingress; beside the same change made to
//! nginx the way nginx takes it: its configuration rewritten and reloaded
//! (SIGHUP), timed from the signal to the first answer on the new path.

use std::time::Duration;

use anyhow::{Context, Result};
use kube::api::{Patch, PatchParams};
use serde_json::{json, Value};
use skiff_bench::stats::Samples;

use crate::cluster::{route, Cluster, BACKENDS, HOST, INGRESS};
use crate::load::wait_answer;
use crate::nginx::Nginx;

/// Where a new route must send its requests.
const TARGET: &str = "echo-b";
/// How long a change may take before the run gives up on it.
const LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct Changes {
    pub ingress: Samples,
    pub nginx: Samples,
}

/// `n` changes of each; consumes nginx (it is stopped afterwards).
pub async fn measure(cluster: &Cluster, nginx: Nginx, n: usize) -> Result<Changes> {
    let mut out = Changes::default();
    let mut paths: Vec<Value> = BACKENDS.iter().map(|(s, p)| route(p, s)).collect();
    let mut nginx_extra = Vec::new();
    let api = cluster.ingresses();
    for i in 0..n {
        let path = format!("/r{i:05}");
        paths.push(route(&path, TARGET));
        let patch = json!({"spec": {"rules": [{"host": HOST, "http": {"paths": paths}}]}});
        api.patch(INGRESS, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .context("patching the Ingress")?;
        let took = wait_answer(cluster.ingress_addr, &path, TARGET, LIMIT)
            .await
            .with_context(|| format!("route {path} through the ingress"))?;
        out.ingress.push(took);

        let path = format!("/n{i:05}");
        nginx_extra.push(path.clone());
        nginx.reload(&nginx_extra)?;
        let took = wait_answer(nginx.addr, &path, TARGET, LIMIT)
            .await
            .with_context(|| format!("route {path} through nginx"))?;
        out.nginx.push(took);
        // Old nginx workers finish their connections and exit in the background.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(nginx);
    Ok(out)
}
