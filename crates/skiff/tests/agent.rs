//! The node agent end to end: a real `skiff server` (agent on; controllers, proxy
//! and DNS off) in a test-made network namespace, pods bound to the node by
//! `spec.nodeName`, driven with the real kubectl (exec, run -i, logs -f) and curl
//! from inside pods. Every test kills what its pods left on the machine, even on
//! failure: pods are processes that by design outlive the agent.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::{eventually, Cluster};

const NODE: &str = "test-node";
const FLAGS: &[&str] = &["--disable", "controllers,proxy,dns", "--node-name", NODE];

/// A cluster whose pods are cleaned up when it is dropped: the server is killed
/// first, then every process in a pod network namespace the agent recorded.
struct AgentCluster {
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

fn start() -> AgentCluster {
    start_with(FLAGS)
}

fn start_with(flags: &[&str]) -> AgentCluster {
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

fn states(c: &Cluster) -> Vec<Value> {
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

fn pod_json(name: &str, image: &str, args: &[&str], extra: Value) -> String {
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

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn get_pod(c: &Cluster, name: &str) -> Value {
    serde_json::from_str(&c.k(&["get", "pod", name, "-o", "json"])).expect("pod json")
}

fn ready(p: &Value) -> bool {
    p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn wait_ready(c: &Cluster, name: &str) -> Value {
    eventually(Duration::from_secs(30), || {
        let p = get_pod(c, name);
        (p["status"]["phase"] == "Running" && ready(&p)).then_some(p)
    })
}

fn exec(c: &Cluster, pod: &str, cmd: &[&str]) -> String {
    let mut args = vec!["exec", pod, "--"];
    args.extend_from_slice(cmd);
    c.k(&args)
}

fn links(c: &Cluster) -> String {
    let out = c
        .netns
        .command("ip")
        .args(["-br", "link"])
        .output()
        .expect("ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ipam(c: &Cluster) -> Vec<String> {
    std::fs::read_dir(c.data_dir().join("agent/ipam"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "last")
        .collect()
}

#[test]
fn node_registers_with_lease_and_status() {
    let c = start();
    let node: Value = serde_json::from_str(&c.k(&["get", "node", NODE, "-o", "json"])).unwrap();
    assert_eq!(node["spec"]["podCIDR"], "10.244.0.0/24");
    let addrs = node["status"]["addresses"].as_array().unwrap();
    assert!(addrs
        .iter()
        .any(|a| a["type"] == "InternalIP" && a["address"] == "10.244.0.1"));
    assert!(node["status"]["capacity"]["cpu"].is_string());
    assert_eq!(node["status"]["capacity"]["pods"], "110");
    assert!(node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64() > Some(0));
    let conds = node["status"]["conditions"].as_array().unwrap();
    assert!(conds
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True" && c["reason"] == "KubeletReady"));
    let lease: Value =
        serde_json::from_str(&c.k(&["get", "lease", "-n", "kube-node-lease", NODE, "-o", "json"]))
            .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], NODE);
    assert!(lease["spec"]["renewTime"].is_string());
    assert!(c.k(&["get", "nodes"]).contains("Ready"));
    // The bridge holds the gateway, in the test's namespace only.
    let out = c
        .netns
        .command("ip")
        .args(["-4", "-o", "addr", "show", "skiff0"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("10.244.0.1/24"));
}

#[test]
fn pods_get_addresses_files_env_and_talk_to_each_other() {
    let c = start();
    for i in 0..3 {
        c.apply(&pod_json(
            &format!("httpenv-{i}"),
            "bretfisher/httpenv",
            &[],
            json!({}),
        ));
    }
    let pods: Vec<Value> = (0..3)
        .map(|i| wait_ready(&c, &format!("httpenv-{i}")))
        .collect();
    let ips: Vec<String> = pods
        .iter()
        .map(|p| p["status"]["podIP"].as_str().unwrap().to_string())
        .collect();
    let mut distinct = ips.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{ips:?}");
    for p in &pods {
        assert_eq!(p["status"]["hostIP"], "10.244.0.1");
        assert_eq!(p["status"]["containerStatuses"][0]["ready"], true);
        assert!(p["status"]["containerStatuses"][0]["state"]["running"].is_object());
    }
    // Each answers on :8888 from another pod, without NAT (it sees the caller's IP
    // as its own network peer).
    for (i, ip) in ips.iter().enumerate() {
        let from = format!("httpenv-{}", (i + 1) % 3);
        let body = exec(
            &c,
            &from,
            &["curl", "-s", "-m", "5", &format!("http://{ip}:8888/")],
        );
        let env: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(env["HOSTNAME"], format!("httpenv-{i}"));
    }
    // What kubelet writes.
    assert_eq!(exec(&c, "httpenv-0", &["hostname"]).trim(), "httpenv-0");
    assert_eq!(
        exec(&c, "httpenv-0", &["cat", "/etc/resolv.conf"]),
        format!(
            "search default.svc.cluster.local svc.cluster.local cluster.local{}\nnameserver 10.96.0.10\noptions ndots:5\n",
            host_search()
        )
    );
    let hosts = exec(&c, "httpenv-0", &["cat", "/etc/hosts"]);
    assert!(
        hosts.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"),
        "{hosts}"
    );
    assert!(
        hosts.ends_with(&format!("{}\thttpenv-0\n", ips[0])),
        "{hosts}"
    );
    // Service variables exist only for services created before the container.
    c.k(&["create", "service", "clusterip", "httpenv", "--tcp=8888"]);
    c.apply(&pod_json(
        "late",
        "busybox",
        &["sleep", "3600"],
        json!({"spec": {"containers": [{"name": "late", "image": "busybox", "args": ["sleep", "3600"],
            "env": [{"name": "MY_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "MY_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "GREETING", "value": "hello $(MY_NODE)"}],
            "workingDir": "/tmp"}]}}),
    ));
    let late = wait_ready(&c, "late");
    let env = exec(&c, "late", &["printenv"]);
    assert!(env.contains("HTTPENV_SERVICE_HOST="), "{env}");
    assert!(env.contains("HTTPENV_SERVICE_PORT=8888"), "{env}");
    assert!(env.contains("HTTPENV_PORT_8888_TCP_PORT=8888"), "{env}");
    assert!(env.contains("KUBERNETES_SERVICE_HOST=10.96.0.1"), "{env}");
    assert!(env.contains(&format!(
        "MY_POD_IP={}\n",
        late["status"]["podIP"].as_str().unwrap()
    )));
    assert!(env.contains(&format!("GREETING=hello {NODE}\n")), "{env}");
    assert_eq!(exec(&c, "late", &["pwd"]).trim(), "/tmp");
    let early = exec(&c, "httpenv-0", &["printenv"]);
    assert!(!early.contains("HTTPENV_SERVICE_HOST"), "{early}");
    // envFrom and key references read ConfigMaps and Secrets at container start;
    // a missing one keeps the container waiting with upstream's reason.
    c.k(&["create", "configmap", "cfg", "--from-literal=mode=fast"]);
    c.k(&[
        "create",
        "secret",
        "generic",
        "db",
        "--from-literal=password=s3cret",
    ]);
    c.apply(&pod_json(
        "configured",
        "busybox",
        &["sleep", "3600"],
        json!({"spec": {"containers": [{"name": "configured", "image": "busybox", "args": ["sleep", "3600"],
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
            "env": [{"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]}]}}),
    ));
    c.apply(&pod_json(
        "misconfigured",
        "busybox",
        &["sleep", "3600"],
        json!({"spec": {"containers": [{"name": "misconfigured", "image": "busybox", "args": ["sleep", "3600"],
            "envFrom": [{"configMapRef": {"name": "missing"}}]}]}}),
    ));
    wait_ready(&c, "configured");
    let env = exec(&c, "configured", &["printenv"]);
    assert!(env.contains("CFG_mode=fast\n"), "{env}");
    assert!(env.contains("PASS=s3cret\n"), "{env}");
    let w = eventually(Duration::from_secs(15), || {
        let p = get_pod(&c, "misconfigured");
        let w = p["status"]["containerStatuses"][0]["state"]["waiting"].clone();
        (w["reason"] == "CreateContainerConfigError").then_some(w)
    });
    assert_eq!(w["message"], "configmap \"missing\" not found");
    // Pods reach the node (the gateway) too.
    let health = exec(
        &c,
        "late",
        &["curl", "-sk", "-m", "3", "https://10.244.0.1:10250/healthz"],
    );
    assert_eq!(health, "ok");
}

fn host_search() -> String {
    let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    conf.lines()
        .filter_map(|l| l.strip_prefix("search "))
        .next_back()
        .map(|s| {
            s.split_whitespace()
                .map(|d| format!(" {d}"))
                .collect::<String>()
        })
        .unwrap_or_default()
}

#[test]
fn exec_attach_and_logs_through_kubectl() {
    let c = start();
    c.apply(&pod_json("box", "busybox", &["sleep", "3600"], json!({})));
    c.apply(&pod_json(
        "ticker",
        "busybox",
        &[
            "sh",
            "-c",
            "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done",
        ],
        json!({}),
    ));
    wait_ready(&c, "box");
    wait_ready(&c, "ticker");
    // Exit codes reach kubectl.
    let out = c.kubectl(&["exec", "box", "--", "false"]);
    assert_eq!(out.status.code(), Some(1));
    let out = c.kubectl(&[
        "exec",
        "box",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("err\n"));
    // stdin.
    let out = c.kubectl_in(
        &["exec", "-i", "box", "--", "sh"],
        "echo via-stdin; exit 4\n",
    );
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "via-stdin\n");
    // -it under a real terminal shows a prompt, and the terminal size follows
    // kubectl's (resize messages).
    let out = c.sh(
        "(sleep 2; printf 'echo pty-$((6*7))\\r'; sleep 0.5; printf 'stty size\\r'; sleep 1; printf 'exit\\r') | \
         timeout 20 script -qfec 'stty rows 33 cols 101; kubectl exec -it box -- sh' /dev/null",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("# "), "no prompt: {text:?}");
    assert!(text.contains("pty-42"), "{text:?}");
    assert!(text.contains("33 101"), "size not passed on: {text:?}");
    // run -i --rm driven through stdin, exit code carried back.
    let out = c.sh(&format!(
        "(sleep 3; echo 'echo hi-from-run; hostname'; sleep 1; echo 'exit 3') | \
         timeout 60 kubectl run -i --rm --restart=Never --image=busybox t \
         --overrides='{{\"spec\":{{\"nodeName\":\"{NODE}\"}}}}' -- sh"
    ));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("hi-from-run\nt\n"),
        "{text:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The seeds' throwaway shell: run -it --rm with a terminal.
    let out = c.sh(&format!(
        "(sleep 4; printf 'echo seed-$((6*7))\\r'; sleep 1; printf 'exit\\r'; sleep 2) | \
         timeout 60 script -qfec \"kubectl run tmp-shell --rm -it --image nicolaka/netshoot \
         --overrides='{{\\\"spec\\\":{{\\\"nodeName\\\":\\\"{NODE}\\\"}}}}' -- bash\" /dev/null"
    ));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("seed-42"),
        "{text:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(Duration::from_secs(30), || {
        (!c.k(&["get", "pods"]).contains("tmp-shell")).then_some(())
    });
    // The seeds' shell pod, attached to with a terminal of kubectl's size.
    c.apply(&pod_json(
        "shpod",
        "bretfisher/shpod",
        &[],
        json!({"spec": {"containers": [{"name": "shpod", "image": "bretfisher/shpod",
            "stdin": true, "tty": true}]}}),
    ));
    wait_ready(&c, "shpod");
    let out = c.sh(
        "(sleep 2; printf 'echo attached-$((6*7)); stty size\\r'; sleep 1; printf 'exit\\r'; sleep 1) | \
         timeout 20 script -qfec 'stty rows 40 cols 120; kubectl attach -ti shpod' /dev/null",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("attached-42"), "{text:?}");
    assert!(text.contains("40 120"), "{text:?}");
    // Logs: tail, follow streams new lines.
    let tail = c.k(&["logs", "ticker", "--tail=2"]);
    assert_eq!(tail.lines().count(), 2, "{tail:?}");
    let out = c.sh("timeout 3 kubectl logs -f ticker");
    let text = String::from_utf8_lossy(&out.stdout);
    let n = text.lines().count();
    assert!(n >= 10, "follow should stream: {text:?}");
    let err = c.k_err(&["logs", "nosuch"]);
    assert!(err.contains("not found"), "{err}");
    // All of that went to the agent over TLS it serves with a certificate the
    // cluster CA signed for the node's address; the agent serves only the API
    // server's client certificate: not a plain connection, not the admin token.
    // (curl verifies the agent's certificate against the CA for 10.244.0.1.)
    let dir = c.data_dir();
    let url = "https://10.244.0.1:10250/containerLogs/default/ticker/ticker";
    let out = c.sh(&format!(
        "curl -s --cacert {0}/ca.crt -w ' %{{http_code}}' -H \"Authorization: Bearer $(cat {0}/admin.token)\" -m 3 {url}",
        dir.display()
    ));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.ends_with(" 401"),
        "{text:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = c.sh("curl -s -m 3 http://10.244.0.1:10250/healthz");
    assert!(!out.status.success(), "plain HTTP answered");
}

#[test]
fn restarts_back_off_probes_and_deletion_cleans_up() {
    let c = start();
    let flag = c.dir.path().join("ready-flag");
    std::fs::write(&flag, "").unwrap();
    c.apply(&pod_json(
        "crash",
        "busybox",
        &["sh", "-c", "echo dying; exit 2"],
        json!({}),
    ));
    c.apply(&pod_json(
        "probed",
        "busybox",
        &["sleep", "3600"],
        json!({"spec": {"containers": [{"name": "probed", "image": "busybox", "args": ["sleep", "3600"],
            "readinessProbe": {"exec": {"command": ["test", "-e", flag.to_str().unwrap()]},
                               "periodSeconds": 1, "failureThreshold": 1}}]}}),
    ));
    c.apply(&pod_json(
        "unlive",
        "busybox",
        &["sleep", "3600"],
        json!({"spec": {"containers": [{"name": "unlive", "image": "busybox", "args": ["sleep", "3600"],
            "livenessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 2}}]}}),
    ));
    c.apply(&pod_json(
        "unknown",
        "example.com/not-an-image:v1",
        &[],
        json!({}),
    ));
    wait_ready(&c, "probed");
    // Not ready once the probe fails.
    std::fs::remove_file(&flag).unwrap();
    eventually(Duration::from_secs(15), || {
        (!ready(&get_pod(&c, "probed"))).then_some(())
    });
    assert_eq!(get_pod(&c, "probed")["status"]["phase"], "Running");
    // Unknown image: waiting with a clear reason, never run.
    let p = get_pod(&c, "unknown");
    let w = &p["status"]["containerStatuses"][0]["state"]["waiting"];
    assert_eq!(w["reason"], "ErrImagePull");
    assert!(w["message"]
        .as_str()
        .unwrap()
        .contains("not in skiff's built-in catalog"));
    assert_eq!(p["status"]["phase"], "Pending");
    // Crash loop: rising restart count, back-off, last state kept, logs of the previous run.
    let p = eventually(Duration::from_secs(60), || {
        let p = get_pod(&c, "crash");
        (p["status"]["containerStatuses"][0]["restartCount"].as_i64() >= Some(2)).then_some(p)
    });
    let s = &p["status"]["containerStatuses"][0];
    assert_eq!(s["lastState"]["terminated"]["exitCode"], 2);
    let w = eventually(Duration::from_secs(30), || {
        let p = get_pod(&c, "crash");
        let w = p["status"]["containerStatuses"][0]["state"]["waiting"].clone();
        (w["reason"] == "CrashLoopBackOff").then_some(w)
    });
    assert!(
        w["message"].as_str().unwrap().starts_with("back-off "),
        "{w}"
    );
    assert!(c.k(&["get", "pods"]).contains("CrashLoopBackOff"));
    assert_eq!(c.k(&["logs", "crash", "--previous"]), "dying\n");
    // A failing postStart hook restarts the container.
    c.apply(&pod_json(
        "hooked",
        "busybox",
        &["sleep", "3600"],
        json!({"spec": {"containers": [{"name": "hooked", "image": "busybox", "args": ["sleep", "3600"],
            "lifecycle": {"postStart": {"exec": {"command": ["false"]}}}}]}}),
    ));
    eventually(Duration::from_secs(30), || {
        let p = get_pod(&c, "hooked");
        (p["status"]["containerStatuses"][0]["restartCount"].as_i64() >= Some(1)).then_some(())
    });
    // A failing liveness probe restarts the container.
    let p = eventually(Duration::from_secs(30), || {
        let p = get_pod(&c, "unlive");
        (p["status"]["containerStatuses"][0]["restartCount"].as_i64() >= Some(1)).then_some(p)
    });
    assert_eq!(
        p["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"], 143,
        "killed by SIGTERM"
    );
    // A pod that ran to completion keeps status and logs, not its address.
    c.apply(&pod_json(
        "done",
        "busybox",
        &["sh", "-c", "echo finished"],
        json!({"spec": {"restartPolicy": "Never"}}),
    ));
    let p = eventually(Duration::from_secs(20), || {
        let p = get_pod(&c, "done");
        (p["status"]["phase"] == "Succeeded").then_some(p)
    });
    let ip = p["status"]["podIP"].as_str().unwrap().to_string();
    assert_eq!(
        p["status"]["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
    eventually(Duration::from_secs(10), || {
        (!ipam(&c).contains(&ip)).then_some(())
    });
    assert_eq!(c.k(&["logs", "done"]), "finished\n");
    assert!(c.k(&["get", "pod", "done"]).contains("Completed"));
    // What went on is in the events, as kubelet reports it.
    let events = c.k(&["get", "events"]);
    for want in [
        "Started",
        "BackOff",
        "ErrImagePull",
        "Unhealthy",
        "Killing",
        "FailedPostStartHook",
    ] {
        assert!(events.contains(want), "no {want} event:\n{events}");
    }
    // hostNetwork cannot be honoured: a clear reason instead of a silent failure.
    c.apply(&pod_json(
        "hostnet",
        "busybox",
        &["sleep", "3600"],
        json!({"spec": {"hostNetwork": true}}),
    ));
    let w = eventually(Duration::from_secs(15), || {
        let p = get_pod(&c, "hostnet");
        let w = p["status"]["containerStatuses"][0]["state"]["waiting"].clone();
        (w["reason"] == "CreateContainerConfigError").then_some(w)
    });
    assert!(
        w["message"].as_str().unwrap().contains("hostNetwork"),
        "{w}"
    );

    // Deletion removes processes, veth, address and files.
    let before = states(&c);
    let probed = before
        .iter()
        .find(|s| s["name"] == "probed")
        .unwrap()
        .clone();
    let veth = probed["veth"].as_str().unwrap().to_string();
    let ip = probed["ip"].as_str().unwrap().to_string();
    let sandbox = probed["sandbox"]["pid"].as_u64().unwrap();
    assert!(links(&c).contains(&veth));
    assert!(ipam(&c).contains(&ip));
    c.k(&[
        "delete", "pod", "probed", "crash", "unknown", "hostnet", "unlive", "done", "hooked",
    ]);
    assert!(!links(&c).contains(&veth));
    assert!(!ipam(&c).contains(&ip));
    assert!(!std::path::Path::new(&format!("/proc/{sandbox}")).exists());
    assert!(states(&c).is_empty());
    assert!(c.pod_processes().is_empty());
    assert!(c.k(&["get", "pods"]).trim().is_empty());
}

#[test]
fn agent_sigkill_and_restart_keeps_pods_running() {
    let mut c = start();
    for name in ["a", "b"] {
        c.apply(&pod_json(name, "traefik/whoami", &[], json!({})));
    }
    let a = wait_ready(&c, "a");
    let b = wait_ready(&c, "b");
    let (ip_a, ip_b) = (
        a["status"]["podIP"].as_str().unwrap().to_string(),
        b["status"]["podIP"].as_str().unwrap().to_string(),
    );
    let before = c.lasting_pod_processes();
    assert!(!before.is_empty());
    c.stop(true);
    // Pods outlive the agent...
    for pid in &before {
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
    c.spawn(FLAGS);
    // ...and are adopted, not restarted: same IPs, same processes, still serving.
    let a2 = wait_ready(&c, "a");
    assert_eq!(a2["status"]["podIP"], ip_a.as_str());
    assert_eq!(a2["status"]["containerStatuses"][0]["restartCount"], 0);
    let body = exec(
        &c,
        "a",
        &["curl", "-s", "-m", "5", &format!("http://{ip_b}/")],
    );
    assert!(body.contains("Hostname: b\n"), "{body}");
    assert!(body.contains(&format!("IP: {ip_b}")), "{body}");
    let mut after = c.lasting_pod_processes();
    after.retain(|p| before.contains(p));
    assert_eq!(after.len(), before.len(), "processes were replaced");
    // A pod deleted while the agent is down is cleaned up when it comes back.
    c.stop(true);
    let b_state = states(&c).into_iter().find(|s| s["name"] == "b").unwrap();
    let veth_b = b_state["veth"].as_str().unwrap().to_string();
    c.spawn(&[
        "--disable",
        "controllers,proxy,dns,agent",
        "--node-name",
        NODE,
    ]);
    c.k(&["delete", "pod", "b", "--force", "--grace-period=0"]);
    c.stop(true);
    c.spawn(FLAGS);
    wait_ready(&c, "a");
    eventually(Duration::from_secs(20), || {
        (!links(&c).contains(&veth_b) && !ipam(&c).contains(&ip_b)).then_some(())
    });
    assert_eq!(ipam(&c), vec![ip_a.clone()]);
    // Only a's sandbox and container are left.
    assert_eq!(states(&c).len(), 1);
}

#[test]
fn init_and_sidecar_containers_share_the_pod() {
    let c = start();
    let marker = c.dir.path().join("init-ran");
    let bye = c.dir.path().join("pre-stop-ran");
    let hello = c.dir.path().join("post-start-ran");
    c.apply(
        &json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "duo"},
            "spec": {
                "nodeName": NODE,
                "terminationGracePeriodSeconds": 2,
                "initContainers": [{"name": "init", "image": "busybox",
                    "command": ["sh", "-c", format!("hostname > {}", marker.display())]}],
                "containers": [
                    {"name": "web", "image": "nginx", "ports": [{"containerPort": 80, "hostPort": 8080}],
                     "livenessProbe": {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 1},
                     "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1}},
                    {"name": "shell", "image": "busybox", "args": ["sleep", "3600"],
                     "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", format!("hostname > {}", bye.display())]}},
                                   "postStart": {"exec": {"command": ["sh", "-c", format!("hostname > {}", hello.display())]}}}},
                ],
            },
        })
        .to_string(),
    );
    let p = wait_ready(&c, "duo");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "duo\n");
    let init = &p["status"]["initContainerStatuses"][0];
    assert_eq!(init["state"]["terminated"]["exitCode"], 0);
    assert_eq!(init["state"]["terminated"]["reason"], "Completed");
    assert_eq!(
        c.k(&["get", "pod", "duo"])
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .nth(1),
        Some("2/2")
    );
    // Containers of a pod reach each other on localhost.
    let page = c.k(&[
        "exec",
        "duo",
        "-c",
        "shell",
        "--",
        "curl",
        "-s",
        "-m",
        "3",
        "http://localhost/",
    ]);
    assert!(page.contains("Welcome to nginx!"), "{page}");
    // The host port reaches the pod through the node's address; a second pod
    // asking for it is told why it cannot run.
    let page = c.sh("curl -s -m 3 http://10.244.0.1:8080/");
    assert!(String::from_utf8_lossy(&page.stdout).contains("Welcome to nginx!"));
    c.apply(&pod_json(
        "clash",
        "busybox",
        &["sleep", "3600"],
        json!({"spec": {"containers": [{"name": "clash", "image": "busybox", "args": ["sleep", "3600"],
            "ports": [{"containerPort": 80, "hostPort": 8080}]}]}}),
    ));
    let w = eventually(Duration::from_secs(15), || {
        let p = get_pod(&c, "clash");
        let w = p["status"]["containerStatuses"][0]["state"]["waiting"].clone();
        (w["reason"] == "CreateContainerConfigError").then_some(w)
    });
    assert!(
        w["message"]
            .as_str()
            .unwrap()
            .contains("hostPort 8080/TCP is already allocated to pod default/duo"),
        "{w}"
    );
    // Without a container, kubectl asks the pod for its default (the API server's
    // message names the choices).
    let err = c.k_err(&["logs", "duo", "-c", "nosuch"]);
    assert!(err.contains("nosuch"), "{err}");
    eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(&hello)
            .ok()
            .filter(|h| h == "duo\n")
    });
    // preStop hooks run before the containers are stopped.
    c.k(&["delete", "pod", "duo"]);
    assert_eq!(std::fs::read_to_string(&bye).unwrap(), "duo\n");
}

#[test]
fn pods_cut_off_from_the_node_do_not_outlive_it() {
    let mut c = start();
    c.apply(&pod_json(
        "orphan",
        "busybox",
        &["sleep", "3600"],
        json!({}),
    ));
    wait_ready(&c, "orphan");
    let s = states(&c).pop().expect("state");
    let veth = s["veth"].as_str().unwrap().to_string();
    let pids = c.pod_processes();
    assert!(pids.len() >= 2, "{pids:?}");
    // The agent is gone and the node end of the pod's link disappears (as when a
    // test's namespace is deleted): the pod's processes end themselves.
    c.stop(true);
    let out = c
        .netns
        .command("ip")
        .args(["link", "del", &veth])
        .output()
        .unwrap();
    assert!(out.status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    loop {
        let left: Vec<String> = pids
            .iter()
            .filter(|p| std::path::Path::new(&format!("/proc/{p}/ns")).exists())
            .map(|p| {
                let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
                format!("{p}: {stat}")
            })
            .collect();
        if left.is_empty() {
            break;
        }
        if std::time::Instant::now() >= deadline {
            let links = Command::new("nsenter")
                .args(["-t", &pids[0].to_string(), "-n", "ip", "-br", "link"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let children = Command::new("ps")
                .args(["-o", "pid,ppid,stat,args", "--ppid", &pids[0].to_string()])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            panic!("still alive: {left:?}\nLINKS {links}\nCHILDREN {children}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_dead_sandbox_is_recreated_with_the_same_address() {
    let c = start();
    c.apply(&pod_json("phoenix", "bretfisher/httpenv", &[], json!({})));
    let p = wait_ready(&c, "phoenix");
    let ip = p["status"]["podIP"].as_str().unwrap().to_string();
    let s = states(&c).pop().expect("state");
    let old = s["sandbox"]["pid"].as_u64().unwrap();
    let out = Command::new("kill")
        .args(["-KILL", &old.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let p = eventually(Duration::from_secs(40), || {
        let p = get_pod(&c, "phoenix");
        let restarted = p["status"]["containerStatuses"][0]["restartCount"].as_i64() >= Some(1);
        (restarted && ready(&p)).then_some(p)
    });
    assert_eq!(p["status"]["podIP"], ip.as_str());
    let new = states(&c).pop().expect("state")["sandbox"]["pid"].as_u64();
    assert!(new.is_some() && new != Some(old));
    // Ready means started (no probe): the server may still be binding its port.
    eventually(Duration::from_secs(20), || {
        let body = c.sh(&format!("curl -s -m 3 http://{ip}:8888/"));
        String::from_utf8_lossy(&body.stdout)
            .contains("\"HOSTNAME\": \"phoenix\"")
            .then_some(())
    });
    assert!(c.k(&["get", "events"]).contains("SandboxChanged"));
}

fn pods_of(c: &Cluster, selector: &str) -> Vec<Value> {
    let list: Value = serde_json::from_str(&c.k(&["get", "pods", "-l", selector, "-o", "json"]))
        .expect("pod list");
    list["items"].as_array().cloned().unwrap_or_default()
}

/// The issue's first scenario, with the controllers and scheduler on: a
/// deployment scaled to five, every replica Running and Ready on its own
/// address and reachable from the others; service variables only in pods
/// started after the service.
#[test]
fn deployment_of_five_and_the_service_env_ordering() {
    let c = start_with(&["--disable", "proxy,dns", "--node-name", NODE]);
    c.k(&[
        "create",
        "deployment",
        "httpenv",
        "--image=bretfisher/httpenv",
    ]);
    c.k(&["scale", "deployment/httpenv", "--replicas=5"]);
    let pods = eventually(Duration::from_secs(60), || {
        let pods = pods_of(&c, "app=httpenv");
        (pods.len() == 5
            && pods
                .iter()
                .all(|p| p["status"]["phase"] == "Running" && ready(p)))
        .then_some(pods)
    });
    let mut ips: Vec<String> = pods
        .iter()
        .map(|p| p["status"]["podIP"].as_str().unwrap().to_string())
        .collect();
    let names: Vec<String> = pods
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    for (i, ip) in ips.iter().enumerate() {
        let from = &names[(i + 1) % names.len()];
        let body = exec(
            &c,
            from,
            &["curl", "-s", "-m", "5", &format!("http://{ip}:8888/")],
        );
        assert!(
            body.contains(&format!("\"HOSTNAME\": \"{}\"", names[i])),
            "{body}"
        );
    }
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 5);
    // Pods made before the service lack its variables; a replacement has them.
    c.k(&["expose", "deployment", "httpenv", "--port", "8888"]);
    let old = &names[0];
    assert!(!exec(&c, old, &["printenv"]).contains("HTTPENV_SERVICE_HOST"));
    c.k(&["delete", "pod", &names[1]]);
    let fresh = eventually(Duration::from_secs(60), || {
        pods_of(&c, "app=httpenv").into_iter().find(|p| {
            let n = p["metadata"]["name"].as_str().unwrap_or_default();
            !names.iter().any(|x| x == n) && p["status"]["phase"] == "Running" && ready(p)
        })
    });
    let fresh = fresh["metadata"]["name"].as_str().unwrap().to_string();
    let env = exec(&c, &fresh, &["printenv"]);
    assert!(env.contains("HTTPENV_SERVICE_HOST="), "{env}");
    assert!(env.contains("HTTPENV_SERVICE_PORT=8888"), "{env}");
}
