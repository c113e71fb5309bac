//! Services end to end (issue 3): the real `skiff server` and the machine's kubectl
//! inside a network namespace made for each test. Allocation of ClusterIPs, node
//! ports and load-balancer addresses, upstream's error messages, the built-in
//! services, concurrency, restarts, and the upstream conformance sequences.

mod support;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::{json, Value};
use support::{eventually, Cluster};

/// The Service manifests of the seed walkthroughs (`shared/seeds/`).
const SEEDS: &str = "apiVersion: v1
kind: Service
metadata:
  labels:
    app: example
  name: example
spec:
  ports:
  - name: http
    port: 80
    targetPort: http
  selector:
    app: example
---
apiVersion: v1
kind: Service
metadata:
  labels:
    app: example
  name: example-headless
spec:
  clusterIP: None
  ports:
  - name: http
    port: 80
    targetPort: http
  selector:
    app: example
---
apiVersion: v1
kind: Service
metadata:
  name: my-nginx
  labels:
    run: my-nginx
spec:
  type: NodePort
  ports:
  - port: 8080
    targetPort: 80
    protocol: TCP
    name: http
  - port: 443
    protocol: TCP
    name: https
  selector:
    run: my-nginx
---
apiVersion: v1
kind: Service
metadata:
  name: frontend
spec:
  type: NodePort
  ports:
    - port: 80
      nodePort: 30000
      targetPort: 80
  selector:
    app: web
---
apiVersion: v1
kind: Service
metadata:
  name: my-app
  labels:
    app: my-app
spec:
  type: LoadBalancer
  ports:
  - port: 80
    protocol: TCP
  selector:
    app: my-app
---
apiVersion: v1
kind: Service
metadata:
  name: frontend-lb
spec:
  type: LoadBalancer
  loadBalancerIP: 78.11.24.19
  selector:
    app: web
  ports:
  - protocol: TCP
    port: 80
    targetPort: 80
---
kind: Service
apiVersion: v1
metadata:
  name: my-service
spec:
  selector:
    app: my-app
  ports:
  - name: http
    protocol: TCP
    port: 80
    targetPort: 80
  sessionAffinity: ClientIP
  sessionAffinityConfig:
    clientIP:
      timeoutSeconds: 10000
---
apiVersion: v1
kind: Service
metadata:
  name: headless-svc
spec:
  clusterIP: None # <= Don't forget!!
  selector:
    app: web
  ports:
    - protocol: TCP
      port: 80
      targetPort: 8080
";

fn in_cidr(ip: &str, net: [u8; 4], prefix: u32) -> bool {
    let Ok(ip) = ip.parse::<Ipv4Addr>() else {
        return false;
    };
    let mask = u32::MAX << (32 - prefix);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn json_of(c: &Cluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&c.k(&all)).expect("kubectl -o json")
}

fn svc(c: &Cluster, name: &str) -> Value {
    json_of(c, &["get", "svc", name])
}

/// The `kubectl get svc` row of `name`, split into columns.
fn row(table: &str, name: &str) -> Vec<String> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|cols| cols.first().map(String::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in\n{table}"))
}

fn node_ports(s: &Value) -> Vec<i64> {
    s["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_i64())
        .collect()
}

fn in_node_port_range(p: i64) -> bool {
    (30000..=32767).contains(&p)
}

#[test]
fn seed_services_apply_and_show_as_upstream() {
    let c = Cluster::start();
    let out = c.apply(SEEDS);
    assert!(out.contains("service/my-nginx created"), "{out}");
    // The load balancer gives out an address right away.
    let table = eventually(Duration::from_secs(10), || {
        let t = c.k(&["get", "svc"]);
        (!row(&t, "my-app")[3].contains("pending")).then_some(t)
    });
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );

    let example = row(&table, "example");
    assert_eq!(example[1], "ClusterIP");
    assert!(in_cidr(&example[2], [10, 96, 0, 0], 12), "{example:?}");
    assert_eq!(
        (example[3].as_str(), example[4].as_str()),
        ("<none>", "80/TCP")
    );

    let headless = row(&table, "example-headless");
    assert_eq!(&headless[1..5], ["ClusterIP", "None", "<none>", "80/TCP"]);

    let nginx = row(&table, "my-nginx");
    assert_eq!(nginx[1], "NodePort");
    let ports = svc(&c, "my-nginx");
    let np = node_ports(&ports);
    assert_eq!(np.len(), 2);
    assert!(
        np.iter().all(|p| in_node_port_range(*p)) && np[0] != np[1],
        "{np:?}"
    );
    assert_eq!(nginx[4], format!("8080:{}/TCP,443:{}/TCP", np[0], np[1]));

    let frontend = row(&table, "frontend");
    assert_eq!(
        (frontend[1].as_str(), frontend[4].as_str()),
        ("NodePort", "80:30000/TCP")
    );

    let lb = row(&table, "my-app");
    assert_eq!(lb[1], "LoadBalancer");
    assert!(in_cidr(&lb[3], [198, 51, 100, 0], 24), "{lb:?}");
    let lb_np = node_ports(&svc(&c, "my-app"));
    assert_eq!(lb[4], format!("80:{}/TCP", lb_np[0]));

    // An address the pool cannot give stays pending, and an event says why.
    let pending = row(&table, "frontend-lb");
    assert_eq!(pending[3], "<pending>");
    let describe = eventually(Duration::from_secs(10), || {
        let d = c.k(&["describe", "svc", "frontend-lb"]);
        d.contains("AllocationFailed").then_some(d)
    });
    assert!(
        describe.contains("Desired LoadBalancer IP:  78.11.24.19"),
        "{describe}"
    );
    assert!(
        describe.contains("Failed to allocate IP for \"default/frontend-lb\": requested loadBalancerIP 78.11.24.19 is not in pool 198.51.100.0/24"),
        "{describe}"
    );

    let d = c.k(&["describe", "svc", "example-headless"]);
    for line in [
        "IP:                       None",
        "IPs:                      None",
        "Session Affinity:         None",
    ] {
        assert!(d.contains(line), "{line}\n{d}");
    }
    let d = c.k(&["describe", "svc", "my-service"]);
    assert!(d.contains("Session Affinity:         ClientIP"), "{d}");
    let s = svc(&c, "my-service");
    assert_eq!(
        s["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
        10000
    );
    let d = c.k(&["describe", "svc", "my-app"]);
    assert!(
        d.contains(&format!("LoadBalancer Ingress:     {} (VIP)", lb[3])),
        "{d}"
    );
    let d = c.k(&["describe", "svc", "my-nginx"]);
    for line in [
        "Type:                     NodePort",
        "IP Family Policy:         SingleStack",
        "IP Families:              IPv4",
        "External Traffic Policy:  Cluster",
        "Internal Traffic Policy:  Cluster",
    ] {
        assert!(d.contains(line), "{line}\n{d}");
    }
    assert!(
        d.contains(&format!("NodePort:                 https  {}/TCP", np[1])),
        "{d}"
    );

    // Re-applying what was applied changes nothing: allocated values are kept.
    let again = c.apply(SEEDS);
    assert!(again.contains("service/my-nginx unchanged"), "{again}");
    assert_eq!(node_ports(&svc(&c, "my-nginx")), np);
}

#[test]
fn taken_and_out_of_range_values_fail_with_upstream_messages() {
    let c = Cluster::start();
    c.k(&[
        "create",
        "service",
        "nodeport",
        "np1",
        "--tcp=80:80",
        "--node-port=31111",
    ]);
    let err = c.k_err(&[
        "create",
        "service",
        "nodeport",
        "np2",
        "--tcp=80:80",
        "--node-port=31111",
    ]);
    assert!(err.contains("Service \"np2\" is invalid: spec.ports[0].nodePort: Invalid value: 31111: provided port is already allocated"), "{err}");
    let err = c.k_err(&[
        "create",
        "service",
        "nodeport",
        "np3",
        "--tcp=80:80",
        "--node-port=29999",
    ]);
    assert!(err.contains("Service \"np3\" is invalid: spec.ports[0].nodePort: Invalid value: 29999: provided port is not in the valid range. The range of valid ports is 30000-32767"), "{err}");

    let ip = svc(&c, "np1")["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest = |name: &str, ip: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  clusterIP: {ip}\n  ports:\n  - port: 80\n")
    };
    let out = c.kubectl_in(&["apply", "-f", "-"], &manifest("c1", &ip));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("The Service \"c1\" is invalid: spec.clusterIPs: Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: provided IP is already allocated")), "{err}");
    let out = c.kubectl_in(&["apply", "-f", "-"], &manifest("c2", "10.0.0.1"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spec.clusterIPs: Invalid value: []string{\"10.0.0.1\"}: failed to allocate IP 10.0.0.1: the provided IP (10.0.0.1) is not in the valid range. The range of valid IPs is 10.96.0.0/12"), "{err}");
    // The first and tenth addresses belong to kubernetes and kube-dns.
    for reserved in ["10.96.0.1", "10.96.0.10"] {
        let err = c.k_err(&[
            "create",
            "service",
            "clusterip",
            "r",
            "--tcp=80:80",
            &format!("--clusterip={reserved}"),
        ]);
        assert!(err.contains("provided IP is already allocated"), "{err}");
    }
    // A free address asked for is honoured.
    c.k(&[
        "create",
        "service",
        "clusterip",
        "mine",
        "--tcp=80:80",
        "--clusterip=10.100.0.7",
    ]);
    assert_eq!(svc(&c, "mine")["spec"]["clusterIPs"], json!(["10.100.0.7"]));
    let err = c.k_err(&[
        "patch",
        "svc",
        "mine",
        "-p",
        r#"{"spec":{"clusterIP":"10.100.0.8","clusterIPs":["10.100.0.8"]}}"#,
    ]);
    assert!(
        err.contains(
            "spec.clusterIPs[0]: Invalid value: []string{\"10.100.0.8\"}: may not change once set"
        ),
        "{err}"
    );

    // Validation errors as upstream words them.
    let bad = "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  type: NodePort\n  clusterIP: None\n  ports:\n  - port: 80\n  - port: 80\n";
    let out = c.kubectl_in(&["apply", "-f", "-"], bad);
    let err = String::from_utf8_lossy(&out.stderr);
    // kubectl lists several causes one per line.
    for cause in [
        "The Service \"bad\" is invalid: \n",
        "* spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services\n",
        "* spec.ports[0].name: Required value\n* spec.ports[1].name: Required value\n",
        "* spec.ports[1]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}",
    ] {
        assert!(err.contains(cause), "{cause}\n{err}");
    }

    // A dry run allocates nothing that stays.
    c.k(&[
        "create",
        "service",
        "nodeport",
        "dry",
        "--tcp=80:80",
        "--node-port=30123",
        "--dry-run=server",
    ]);
    c.k(&[
        "create",
        "service",
        "nodeport",
        "dry",
        "--tcp=80:80",
        "--node-port=30123",
    ]);
    // Deleting gives the port back at once.
    c.k(&["delete", "svc", "dry"]);
    c.k(&[
        "create",
        "service",
        "nodeport",
        "again",
        "--tcp=80:80",
        "--node-port=30123",
    ]);
}

#[test]
fn built_in_services_exist_and_come_back() {
    let c = Cluster::start();
    let info = c.k(&["cluster-info"]);
    assert!(
        info.contains("Kubernetes control plane is running at https://127.0.0.1:6443"),
        "{info}"
    );
    assert!(info.contains("CoreDNS is running at https://127.0.0.1:6443/api/v1/namespaces/kube-system/services/kube-dns:dns/proxy"), "{info}");

    let k = svc(&c, "kubernetes");
    assert_eq!(k["spec"]["clusterIP"], "10.96.0.1");
    assert_eq!(
        k["spec"]["ports"],
        json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}])
    );
    let dns = json_of(&c, &["get", "svc", "kube-dns", "-n", "kube-system"]);
    assert_eq!(dns["spec"]["clusterIP"], "10.96.0.10");
    assert_eq!(
        dns["metadata"]["labels"],
        json!({"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"})
    );
    assert_eq!(dns["spec"]["selector"], json!({"k8s-app": "kube-dns"}));
    let ports: Vec<(String, i64, String)> = dns["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().into(),
                p["port"].as_i64().unwrap(),
                p["protocol"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            ("dns".into(), 53, "UDP".into()),
            ("dns-tcp".into(), 53, "TCP".into()),
            ("metrics".into(), 9153, "TCP".into())
        ]
    );
    let t = c.k(&["get", "svc", "-n", "kube-system"]);
    assert_eq!(
        &row(&t, "kube-dns")[1..5],
        [
            "ClusterIP",
            "10.96.0.10",
            "<none>",
            "53/UDP,53/TCP,9153/TCP"
        ]
    );

    let ep = c.k(&["get", "endpoints", "kubernetes"]);
    assert_eq!(row(&ep, "kubernetes")[1], "127.0.0.1:6443");
    let slices = c.k(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=kubernetes",
    ]);
    assert_eq!(
        &row(&slices, "kubernetes")[1..4],
        ["IPv4", "6443", "127.0.0.1"]
    );

    c.k(&["delete", "svc", "kubernetes"]);
    c.k(&["delete", "svc", "kube-dns", "-n", "kube-system"]);
    let back = |ns: &str, name: &str, ip: &str| {
        eventually(Duration::from_secs(15), || {
            let out = c.kubectl(&[
                "get",
                "svc",
                name,
                "-n",
                ns,
                "-o",
                "jsonpath={.spec.clusterIP}",
            ]);
            (out.status.success() && String::from_utf8_lossy(&out.stdout) == ip).then_some(())
        })
    };
    back("default", "kubernetes", "10.96.0.1");
    back("kube-system", "kube-dns", "10.96.0.10");
}

#[test]
fn two_hundred_parallel_creates_get_distinct_values() {
    let c = Cluster::start();
    let script = format!(
        r#"T=$(cat {dir}/admin.token)
for i in $(seq 1 200); do
  curl -sk -o /dev/null -w '%{{http_code}}\n' -H "Authorization: Bearer $T" -H 'Content-Type: application/json' \
    -X POST https://127.0.0.1:6443/api/v1/namespaces/default/services \
    -d "{{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{{\"name\":\"p$i\"}},\"spec\":{{\"type\":\"NodePort\",\"ports\":[{{\"port\":80}}]}}}}" &
done
wait"#,
        dir = c.data_dir().display()
    );
    let out = c.sh(&script);
    let codes = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        codes.lines().filter(|l| *l == "201").count(),
        200,
        "{codes}"
    );
    let list = json_of(&c, &["get", "svc", "-A"]);
    let items = list["items"].as_array().unwrap();
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    for s in items {
        if let Some(ip) = s["spec"]["clusterIP"].as_str().filter(|ip| *ip != "None") {
            assert!(ips.insert(ip.to_string()), "clusterIP {ip} given twice");
            assert!(in_cidr(ip, [10, 96, 0, 0], 12), "{ip}");
        }
        for p in node_ports(s) {
            assert!(ports.insert(p), "nodePort {p} given twice");
        }
    }
    assert_eq!(items.len(), 202);
    assert_eq!((ips.len(), ports.len()), (202, 200));
}

#[test]
fn restart_keeps_allocations() {
    // Small ranges, so values lost over a restart would certainly be reused.
    let flags = [
        "--service-cidr",
        "10.96.0.0/26",
        "--service-node-port-range",
        "30000-30039",
        "--lb-pool",
        "198.51.100.0/29",
    ];
    let mut c = Cluster::start_with(&flags);
    let create = |c: &Cluster, from: usize| {
        let mut docs = Vec::new();
        for i in from..from + 20 {
            let ty = if i % 10 == 0 {
                "LoadBalancer"
            } else {
                "NodePort"
            };
            docs.push(format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: s{i}\nspec:\n  type: {ty}\n  ports:\n  - port: 80\n"));
        }
        c.apply(&docs.join("---\n"));
    };
    create(&c, 0);
    c.stop(false);
    c.spawn(&flags);
    create(&c, 20);
    let err = c.k_err(&[
        "create",
        "service",
        "nodeport",
        "late",
        "--tcp=80:80",
        "--node-port=30000",
    ]);
    assert!(err.contains("provided port is"), "{err}");
    let list = json_of(&c, &["get", "svc", "-A"]);
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    let mut lbs = HashSet::new();
    for s in list["items"].as_array().unwrap() {
        let ip = s["spec"]["clusterIP"].as_str().unwrap().to_string();
        assert!(in_cidr(&ip, [10, 96, 0, 0], 26), "{ip}");
        assert!(
            ips.insert(ip.clone()),
            "clusterIP {ip} reused after restart"
        );
        for p in node_ports(s) {
            assert!(
                (30000..=30039).contains(&p) && ports.insert(p),
                "nodePort {p} reused after restart"
            );
        }
        if let Some(lb) = s["status"]["loadBalancer"]["ingress"][0]["ip"].as_str() {
            assert!(
                lbs.insert(lb.to_string()),
                "LB address {lb} reused after restart"
            );
        }
    }
    assert_eq!((ips.len(), ports.len(), lbs.len()), (42, 40, 4));
}

#[test]
fn load_balancer_pool_exhaustion_waits_then_assigns() {
    let c = Cluster::start_with(&["--lb-pool", "198.51.100.0/30"]);
    let lb = |name: &str, extra: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  type: LoadBalancer\n{extra}  ports:\n  - port: 80\n")
    };
    c.apply(&lb("a", "  loadBalancerIP: 198.51.100.2\n"));
    c.apply(&lb("b", ""));
    c.apply(&lb("c", ""));
    let ip = |name: &str| {
        svc(&c, name)["status"]["loadBalancer"]["ingress"][0]["ip"]
            .as_str()
            .map(str::to_string)
    };
    assert_eq!(ip("a").as_deref(), Some("198.51.100.2"));
    assert_eq!(ip("b").as_deref(), Some("198.51.100.1"));
    assert_eq!(ip("c"), None);
    assert_eq!(row(&c.k(&["get", "svc", "c"]), "c")[3], "<pending>");
    eventually(Duration::from_secs(15), || {
        c.k(&["describe", "svc", "c"])
            .contains(
                "Failed to allocate IP for \"default/c\": no available IPs in pool 198.51.100.0/30",
            )
            .then_some(())
    });
    // A released address goes to the service that waits.
    c.k(&["delete", "svc", "a"]);
    eventually(Duration::from_secs(15), || {
        (ip("c").as_deref() == Some("198.51.100.2")).then_some(())
    });
    // allocateLoadBalancerNodePorts: false gets no node ports.
    c.apply(&lb("d", "  allocateLoadBalancerNodePorts: false\n"));
    assert!(node_ports(&svc(&c, "d")).is_empty());
    // Another implementation's class is left alone.
    c.apply(&lb("e", "  loadBalancerClass: example.com/other\n"));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(row(&c.k(&["get", "svc", "e"]), "e")[3], "<pending>");
}

#[test]
fn bad_flags_exit_with_one_line_naming_the_flag() {
    let ns = support::Netns::new();
    let dir = tempfile::tempdir().unwrap();
    for (flag, value) in [
        ("--service-cidr", "10.96.0.0/33"),
        ("--service-cidr", "fd00::/108"),
        ("--service-cidr", "10.0.0.0/8"),
        ("--service-node-port-range", "32767-30000"),
        ("--lb-pool", "nonsense"),
        ("--lb-pool", "10.96.1.0/24"),
    ] {
        let out = ns
            .command(support::skiff_bin())
            .args(["server", "--listen", support::API, "--data-dir"])
            .arg(dir.path())
            .args([flag, value])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} {value} accepted");
        let lines: Vec<&str> = err.lines().filter(|l| !l.contains(" INFO ")).collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(lines[0].contains(flag), "{err}");
    }
}
