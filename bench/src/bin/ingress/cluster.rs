//! The cluster under test: the real `skiff server` (API, controllers, agent,
//! proxy and the ingress) started as a process inside the benchmark's
//! namespace, on a link carrying the node's address; two backend
//! Deployments of this binary's `serve` (host programs: the pods' command),
//! their Services, and one Ingress routing to them by path.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{ListParams, PostParams};
use kube::Api;
use serde_json::{json, Value};
use skiff_bench::apiserver::client;

use crate::load;

pub const NAMESPACE: &str = "ingress-bench";
/// The host every Ingress rule, and every request, names.
pub const HOST: &str = "bench.local";
/// The node's address (on a veth in the benchmark's namespace): the ingress listens there on port 80.
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
const NODE: &str = "bench-node";
const LINK: &str = "bench0";
const PEER: &str = "bench1";
const API: &str = "127.0.0.1:6443";
/// The image the backends name (not in the catalog: their command is run).
const IMAGE: &str = "skiff-bench/echo";
/// The port the backend pods listen on (their Services' targetPort).
pub const BACKEND_PORT: u16 = 8080;
/// The backend Deployments, Services and the path each is routed at.
pub const BACKENDS: [(&str, &str); 2] = [("echo-a", "/a"), ("echo-b", "/b")];
/// The Ingress every route lives in.
pub const INGRESS: &str = "bench";

/// The backend pods' addresses, per Deployment.
#[derive(Debug, Clone)]
pub struct Pods {
    pub a: Vec<Ipv4Addr>,
    pub b: Vec<Ipv4Addr>,
}

pub struct Cluster {
    child: tokio::process::Child,
    pub client: kube::Client,
    /// The ingress: the node's address, port 80.
    pub ingress_addr: SocketAddr,
    log: PathBuf,
    replicas: usize,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Cluster {
    /// Starts `skiff server` with its data under `dir`; returns once the API answers.
    pub async fn start(skiff: &Path, dir: &Path, replicas: usize) -> Result<Self> {
        let node_ip = format!("{NODE_IP}/24");
        // A veth pair with both ends here: the node's link (no dummy driver in
        // every kernel), leading nowhere outside the namespace.
        ip(&["link", "add", LINK, "type", "veth", "peer", "name", PEER])?;
        ip(&["addr", "add", &node_ip, "dev", LINK])?;
        ip(&["link", "set", LINK, "up"])?;
        ip(&["link", "set", PEER, "up"])?;

        let data = dir.join("data");
        std::fs::create_dir_all(&data)?;
        let log = dir.join("skiff.log");
        let out = std::fs::File::create(&log)?;
        let child = tokio::process::Command::new(skiff)
            .args(["server", "--listen", API, "--host-images", "--data-dir"])
            .arg(&data)
            .args(["--node-name", NODE, "--node-ip", &NODE_IP.to_string()])
            .args(["--disable", "dns,netpol"])
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", skiff.display()))?;
        let kubeconfig = data.join("admin.kubeconfig");
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = loop {
            if kubeconfig.exists() {
                if let Ok(c) = client(&kubeconfig).await {
                    if c.apiserver_version().await.is_ok() {
                        break c;
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("skiff server not ready in 60 s; log:\n{}", tail(&log));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        eprintln!("skiff server up ({})", skiff.display());
        Ok(Cluster {
            child,
            client,
            ingress_addr: SocketAddr::from((NODE_IP, 80)),
            log,
            replicas,
        })
    }

    pub fn ingresses(&self) -> Api<Ingress> {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    /// The namespace, both backends and the Ingress; returns the pods' addresses
    /// once each backend answers directly and through the ingress.
    pub async fn deploy(&self) -> Result<Pods> {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?;
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        let exe = std::env::current_exe().context("locating the benchmark binary")?;
        for (name, _) in BACKENDS {
            self.create(&deployment(name, self.replicas, &exe)).await?;
            self.create(&service(name)).await?;
        }
        self.create(&ingress()).await?;
        let a = self.ready_pods(BACKENDS[0].0).await?;
        let b = self.ready_pods(BACKENDS[1].0).await?;
        for (name, path) in BACKENDS {
            self.wait_routed(path, name, Duration::from_secs(60))
                .await
                .with_context(|| format!("{path} never reached {name} through the ingress"))?;
        }
        Ok(Pods { a, b })
    }

    /// Creates any namespaced object of this benchmark (server-side, by its URL).
    async fn create(&self, obj: &Value) -> Result<()> {
        let api_version = obj["apiVersion"].as_str().unwrap_or("v1");
        let plural = match obj["kind"].as_str() {
            Some("Deployment") => "deployments",
            Some("Service") => "services",
            Some("Ingress") => "ingresses",
            other => bail!("no plural for {other:?}"),
        };
        let prefix = if api_version == "v1" {
            "/api/v1".to_string()
        } else {
            format!("/apis/{api_version}")
        };
        let uri = format!("{prefix}/namespaces/{NAMESPACE}/{plural}");
        let req = http::Request::post(uri)
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(obj)?)?;
        let _: Value = self
            .client
            .request(req)
            .await
            .with_context(|| format!("creating {}", obj["metadata"]["name"]))?;
        Ok(())
    }

    /// The addresses of `app`'s pods once all of them answer on the backend port.
    async fn ready_pods(&self, app: &str) -> Result<Vec<Ipv4Addr>> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), NAMESPACE);
        let lp = ListParams::default().labels(&format!("app={app}"));
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let list = pods.list(&lp).await?;
            let ips: Vec<Ipv4Addr> = list
                .items
                .iter()
                .filter_map(|p| p.status.as_ref()?.pod_ip.as_deref()?.parse().ok())
                .collect();
            if ips.len() == self.replicas {
                let mut all = true;
                for ip in &ips {
                    let addr = SocketAddr::from((*ip, BACKEND_PORT));
                    all &= load::get(addr, HOST, "/")
                        .await
                        .is_ok_and(|(status, body)| status == 200 && body.contains(app));
                }
                if all {
                    return Ok(ips);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{app}: {} of {} pods answering after 120 s; log:\n{}",
                    ips.len(),
                    self.replicas,
                    tail(&self.log)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until `path` on the ingress answers 200 from a pod of `app`;
    /// returns how long that took.
    pub async fn wait_routed(&self, path: &str, app: &str, limit: Duration) -> Result<Duration> {
        load::wait_answer(self.ingress_addr, path, app, limit).await
    }

    /// SIGTERM by PID, then SIGKILL if it is still there after 10 s.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// `replicas` pods running `exe serve` (with `--host-images`, a container
/// whose image the catalog does not know runs its command on the node).
fn deployment(name: &str, replicas: usize, exe: &Path) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "echo",
                    "image": IMAGE,
                    "command": [exe, "serve", "--port", BACKEND_PORT.to_string()],
                    "ports": [{"containerPort": BACKEND_PORT, "name": "http"}],
                }]},
            },
        },
    })
}

fn service(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "targetPort": BACKEND_PORT}],
        },
    })
}

/// One HTTP path of the Ingress: `path` (Prefix) to `service` port 80.
pub fn route(path: &str, service: &str) -> Value {
    json!({
        "path": path,
        "pathType": "Prefix",
        "backend": {"service": {"name": service, "port": {"number": 80}}},
    })
}

fn ingress() -> Value {
    let paths: Vec<Value> = BACKENDS.iter().map(|(s, p)| route(p, s)).collect();
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": INGRESS},
        "spec": {
            "ingressClassName": "skiff",
            "rules": [{"host": HOST, "http": {"paths": paths}}],
        },
    })
}
