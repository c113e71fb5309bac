//! The node agent end to end: a real `skiff server` (agent on; controllers, proxy
//! and DNS off) in a test-made network namespace, pods bound to the node by
//! `spec.nodeName`, driven with the real kubectl (exec, run -i, logs -f) and curl
//! from inside pods. Every test kills what its pods left on the machine, even on
//! failure: pods are processes that by design outlive the agent. What happens
//! when things go wrong (crashes, probes, a killed agent) is in `agent_failures.rs`.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::agent::{exec, get_pod, pod_json, ready, start, start_with, wait_ready, NODE};
use support::{eventually, Cluster};

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

fn pods_of(c: &Cluster, selector: &str) -> Vec<Value> {
    let list: Value = serde_json::from_str(&c.k(&["get", "pods", "-l", selector, "-o", "json"]))
        .expect("pod list");
    list["items"].as_array().cloned().unwrap_or_default()
}

/// The first scenario, with the controllers and scheduler on: a
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
