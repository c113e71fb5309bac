//! Two API servers on one store (issue 16): ClusterIP, NodePort and
//! LoadBalancer values stay unique under concurrent creates through both,
//! requested duplicates are refused with the field, deletes free the claims, and
//! repair removes a claim a crash left behind and restores a lost one.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use skiff_apiserver::services::Settings;
use skiff_apiserver::{Config, Running};
use skiff_store::{Backend, MemoryBackend, SqliteBackend};
use support::Client;

/// One server as a client sees it.
impl Client {
    async fn create(&self, svc: &Value) -> (u16, Value) {
        let ns = svc["metadata"]["namespace"].as_str().unwrap_or("default");
        self.call(
            "POST",
            &format!("/api/v1/namespaces/{ns}/services"),
            Some(svc),
        )
        .await
    }

    async fn delete(&self, name: &str) -> u16 {
        self.call(
            "DELETE",
            &format!("/api/v1/namespaces/default/services/{name}"),
            None,
        )
        .await
        .0
    }

    async fn services(&self) -> Vec<Value> {
        let (code, list) = self.call("GET", "/api/v1/services", None).await;
        assert_eq!(code, 200, "{list}");
        list["items"].as_array().cloned().unwrap_or_default()
    }
}

fn settings() -> Settings {
    let mut s =
        Settings::parse("10.96.0.0/24", "30000-30199", "198.51.100.0/26").expect("settings");
    s.repair_every = Duration::from_millis(300);
    s
}

async fn start(dir: &Path, backend: Arc<dyn Backend>) -> (Running, Client) {
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: dir.to_path_buf(),
        compact_interval: Duration::from_secs(3600),
        compact_keep: 10_000,
        services: settings(),
        admission: Default::default(),
        tls_sans: Vec::new(),
        audit: None,
    };
    let running = skiff_apiserver::start(config, backend)
        .await
        .expect("apiserver");
    let client = Client::new(&running, dir);
    (running, client)
}

fn service(name: &str, kind: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["type"] = json!(kind);
    if spec.get("ports").is_none() {
        spec["ports"] = json!([{"port": 80, "protocol": "TCP"}]);
    }
    json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

fn cluster_ip(s: &Value) -> Option<String> {
    s["spec"]["clusterIP"]
        .as_str()
        .filter(|ip| !ip.is_empty() && *ip != "None")
        .map(str::to_string)
}

fn node_ports(s: &Value) -> Vec<i64> {
    let mut out: Vec<i64> = s["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_i64())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn ingress_ips(s: &Value) -> Vec<String> {
    s["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().map(str::to_string))
        .collect()
}

fn causes(body: &Value) -> Vec<String> {
    body["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["field"].as_str().map(str::to_string))
        .collect()
}

/// Every claim in the store: key → owning uid.
fn claims(backend: &dyn Backend) -> HashMap<String, String> {
    backend
        .list("/skiff/allocations/", None, None)
        .expect("list claims")
        .items
        .into_iter()
        .map(|kv| {
            let v: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
            (kv.key, v["uid"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

/// Asserts no value is held twice and every held value has a claim naming its
/// service; returns the claim keys the services account for.
fn check_unique(items: &[Value], store: &HashMap<String, String>) -> HashSet<String> {
    let mut seen = HashMap::new();
    let mut expected = HashSet::new();
    for s in items {
        let name = format!(
            "{}/{}",
            s["metadata"]["namespace"].as_str().unwrap_or_default(),
            s["metadata"]["name"].as_str().unwrap_or_default()
        );
        let uid = s["metadata"]["uid"].as_str().unwrap_or_default();
        let mut keys = Vec::new();
        if let Some(ip) = cluster_ip(s) {
            keys.push(format!("/skiff/allocations/clusterips/{ip}"));
        }
        for p in node_ports(s) {
            keys.push(format!("/skiff/allocations/nodeports/{p}"));
        }
        for ip in ingress_ips(s) {
            keys.push(format!("/skiff/allocations/loadbalancerips/{ip}"));
        }
        for k in keys {
            if let Some(other) = seen.insert(k.clone(), name.clone()) {
                panic!("{k} held by both {other} and {name}");
            }
            assert_eq!(
                store.get(&k).map(String::as_str),
                Some(uid),
                "{name} holds {k} without its claim"
            );
            expected.insert(k);
        }
    }
    expected
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn two_servers_on_one_store(backend: Arc<dyn Backend>) {
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let (_ra, a) = start(dir_a.path(), backend.clone()).await;
    let (_rb, b) = start(dir_b.path(), backend.clone()).await;
    let servers = [a.clone(), b.clone()];

    // Many dynamic creates through both servers at once.
    let mut tasks = Vec::new();
    for i in 0..90 {
        let c = servers[i % 2].clone();
        let kind = ["ClusterIP", "NodePort", "LoadBalancer"][i % 3];
        let svc = service(&format!("dyn-{i}"), kind, json!({}));
        tasks.push(tokio::spawn(async move { c.create(&svc).await }));
    }
    // Pairs asking for the same value, one through each server.
    let requested = [
        (
            "ClusterIP",
            json!({"clusterIP": "10.96.0.11"}),
            "spec.clusterIPs",
        ),
        (
            "ClusterIP",
            json!({"clusterIP": "10.96.0.12"}),
            "spec.clusterIPs",
        ),
        (
            "NodePort",
            json!({"ports": [{"port": 80, "protocol": "TCP", "nodePort": 30005}]}),
            "spec.ports[0].nodePort",
        ),
        (
            "NodePort",
            json!({"ports": [{"port": 80, "protocol": "TCP", "nodePort": 30006}]}),
            "spec.ports[0].nodePort",
        ),
    ];
    let mut pairs = Vec::new();
    for (i, (kind, spec, field)) in requested.iter().enumerate() {
        let mut both = Vec::new();
        for (j, c) in servers.iter().enumerate() {
            let c = c.clone();
            let svc = service(&format!("req-{i}-{j}"), kind, spec.clone());
            both.push(tokio::spawn(async move { c.create(&svc).await }));
        }
        pairs.push((both, *field));
    }
    // Two LoadBalancers asking for one address: one gets it, one waits.
    for (j, c) in servers.iter().enumerate() {
        let c = c.clone();
        let svc = service(
            &format!("lb-req-{j}"),
            "LoadBalancer",
            json!({"loadBalancerIP": "198.51.100.7"}),
        );
        tasks.push(tokio::spawn(async move { c.create(&svc).await }));
    }
    for t in tasks {
        let (code, body) = t.await.expect("create task");
        assert_eq!(code, 201, "{body}");
    }
    for (both, field) in pairs {
        let mut codes = Vec::new();
        for t in both {
            let (code, body) = t.await.expect("create task");
            if code == 422 {
                assert!(
                    causes(&body).iter().any(|f| f == field),
                    "422 without {field}: {body}"
                );
                let msg = body["message"].as_str().unwrap_or_default();
                assert!(msg.contains("already allocated"), "{msg}");
            }
            codes.push(code);
        }
        codes.sort_unstable();
        assert_eq!(codes, vec![201, 422], "one of a requested pair wins");
    }

    let items = a.services().await;
    assert_eq!(items.len(), 90 + 4 + 2 + 2, "built-ins included");
    let store = claims(&*backend);
    let expected = check_unique(&items, &store);
    assert!(store.contains_key("/skiff/allocations/clusterips/10.96.0.1"));
    assert!(store.contains_key("/skiff/allocations/clusterips/10.96.0.10"));
    assert_eq!(
        store.keys().cloned().collect::<HashSet<_>>(),
        expected,
        "claims the services do not account for"
    );
    let lb_holders = items
        .iter()
        .filter(|s| ingress_ips(s).contains(&"198.51.100.7".to_string()))
        .count();
    assert_eq!(lb_holders, 1);

    // Deletes through the other server free the claims before they answer.
    let victims: Vec<Value> = items
        .iter()
        .filter(|s| {
            let n = s["metadata"]["name"].as_str().unwrap_or_default();
            n.starts_with("dyn-") && !node_ports(s).is_empty()
        })
        .take(10)
        .cloned()
        .collect();
    assert_eq!(victims.len(), 10);
    let mut freed_ports = Vec::new();
    for (i, v) in victims.iter().enumerate() {
        let name = v["metadata"]["name"].as_str().unwrap_or_default();
        assert_eq!(servers[(i + 1) % 2].delete(name).await, 200);
        let store = claims(&*backend);
        for p in node_ports(v) {
            assert!(!store.contains_key(&format!("/skiff/allocations/nodeports/{p}")));
            freed_ports.push((i, p));
        }
    }
    // ... and a freed value can be asked for at once through either server.
    for (i, p) in freed_ports.iter().take(4) {
        let svc = service(
            &format!("again-{i}-{p}"),
            "NodePort",
            json!({"ports": [{"port": 80, "protocol": "TCP", "nodePort": p}]}),
        );
        let (code, body) = servers[*i % 2].create(&svc).await;
        assert_eq!(code, 201, "{body}");
    }

    // A crash between claim and service write leaves a claim nobody holds:
    // repair removes it (seen leaked on two passes).
    let leaked = "/skiff/allocations/nodeports/30010";
    let ghost = json!({"uid": "ghost-uid", "service": "default/ghost"}).to_string();
    backend
        .create(leaked, ghost.as_bytes())
        .expect("leak a claim");
    eventually("the leaked claim is repaired away", || {
        !claims(&*backend).contains_key(leaked)
    })
    .await;
    // A leaked claim a write asks for is taken back on the spot.
    let leaked = "/skiff/allocations/clusterips/10.96.0.14";
    backend
        .create(leaked, ghost.as_bytes())
        .expect("leak a claim");
    let (code, body) = b
        .create(&service(
            "takes-leaked",
            "ClusterIP",
            json!({"clusterIP": "10.96.0.14"}),
        ))
        .await;
    assert_eq!(code, 201, "{body}");
    // A fresh claim of a create in flight elsewhere is not: the usual 422.
    let fresh = json!({"uid": "inflight-uid", "service": "default/inflight",
        "claimedAt": chrono::Utc::now().timestamp()})
    .to_string();
    backend
        .create("/skiff/allocations/nodeports/30011", fresh.as_bytes())
        .expect("claim");
    let (code, body) = a
        .create(&service(
            "wants-inflight",
            "NodePort",
            json!({"ports": [{"port": 80, "protocol": "TCP", "nodePort": 30011}]}),
        ))
        .await;
    assert_eq!(code, 422, "{body}");
    backend
        .delete("/skiff/allocations/nodeports/30011", None)
        .expect("unclaim");

    // A lost claim of a stored service is made again.
    let keep = items
        .iter()
        .find(|s| s["metadata"]["name"] == "dyn-1")
        .expect("dyn-1");
    let port = node_ports(keep)[0];
    let key = format!("/skiff/allocations/nodeports/{port}");
    backend.delete(&key, None).expect("lose a claim");
    eventually("the lost claim is restored", || {
        claims(&*backend).contains_key(&key)
    })
    .await;

    // After all of it, still unique and fully claimed.
    let items = b.services().await;
    let store = claims(&*backend);
    let expected = check_unique(&items, &store);
    assert_eq!(store.keys().cloned().collect::<HashSet<_>>(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_memory_store() {
    two_servers_on_one_store(Arc::new(MemoryBackend::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_sqlite_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = SqliteBackend::open(dir.path().join("state.db")).expect("sqlite");
    two_servers_on_one_store(Arc::new(backend)).await;
}
