//! The node agent's end-to-end harness: a cluster with the agent on whose pods
//! are killed when it drops, and the pod manifests and reads the agent tests
//! share. Here because those tests are split over two files by topic.

use std::time::Duration;

use serde_json::{json, Value};

use super::{eventually, Cluster};

pub const NODE: &str = "test-node";
pub const FLAGS: &[&str] = &["--disable", "controllers,proxy,dns", "--node-name", NODE];

/// A cluster whose pods are cleaned up when it is dropped: the server is killed
/// first, then every process in a pod network namespace the agent recorded.
pub struct AgentCluster {
    c: Cluster,
    // Held for the cluster's life: these tests run one at a time, as their
    // timings (probes, back-off, watchdogs) are real and the machine is shared.
    _serial: std::sync::MutexGuard<'static, ()>,
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl std::ops::Deref for AgentCluster {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.c
    }
}

impl std::ops::DerefMut for AgentCluster {
    fn deref_mut(&mut self) -> &mut Cluster {
        &mut self.c
    }
}

impl Drop for AgentCluster {
    fn drop(&mut self) {
        self.c.stop(true);
        self.c.kill_pods();
    }
}

pub fn start() -> AgentCluster {
    start_with(FLAGS)
}

pub fn start_with(flags: &[&str]) -> AgentCluster {
    let serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let c = AgentCluster {
        c: Cluster::start_with(flags),
        _serial: serial,
    };
    eventually(Duration::from_secs(20), || {
        let out = c.kubectl(&["get", "node", NODE]);
        out.status.success().then_some(())
    });
    c
}

pub fn states(c: &Cluster) -> Vec<Value> {
    let dir = c.data_dir().join("agent/pods");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("state.json")).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect()
}

pub fn pod_json(name: &str, image: &str, args: &[&str], extra: Value) -> String {
    let mut container = json!({"name": name, "image": image});
    if !args.is_empty() {
        container["args"] = json!(args);
    }
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"nodeName": NODE, "containers": [container], "terminationGracePeriodSeconds": 2},
    });
    merge(&mut pod, extra);
    pod.to_string()
}

pub fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

pub fn get_pod(c: &Cluster, name: &str) -> Value {
    serde_json::from_str(&c.k(&["get", "pod", name, "-o", "json"])).expect("pod json")
}

pub fn ready(p: &Value) -> bool {
    p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

pub fn wait_ready(c: &Cluster, name: &str) -> Value {
    eventually(Duration::from_secs(30), || {
        let p = get_pod(c, name);
        (p["status"]["phase"] == "Running" && ready(&p)).then_some(p)
    })
}

pub fn exec(c: &Cluster, pod: &str, cmd: &[&str]) -> String {
    let mut args = vec!["exec", pod, "--"];
    args.extend_from_slice(cmd);
    c.k(&args)
}

pub fn links(c: &Cluster) -> String {
    let out = c
        .netns
        .command("ip")
        .args(["-br", "link"])
        .output()
        .expect("ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn ipam(c: &Cluster) -> Vec<String> {
    std::fs::read_dir(c.data_dir().join("agent/ipam"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "last")
        .collect()
}
