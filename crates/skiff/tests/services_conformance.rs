//! The upstream conformance sequences for Services (test/e2e/network/service.go:
//! "should be able to change the type", "should complete a service status
//! lifecycle", "should delete a collection of services", "should find a service
//! from listing all namespaces"), API parts only, against the real `skiff server`
//! and kubectl in a network namespace per test.

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::{json, Value};
use support::{eventually, Cluster};

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

/// `jig.UpdateService`: GET, change, PUT (kubectl replace sends the object back).
fn update(c: &Cluster, name: &str, change: impl FnOnce(&mut Value)) -> Value {
    let mut s = svc(c, name);
    change(&mut s);
    let out = c.kubectl_in(&["replace", "-o", "json", "-f", "-"], &s.to_string());
    assert!(
        out.status.success(),
        "replace: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("replace -o json")
}

fn external_name(c: &Cluster, name: &str) {
    c.apply(&format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  labels:\n    testid: {name}\nspec:\n  type: ExternalName\n  externalName: foo.example.com\n  selector:\n    testid: {name}\n"));
}

#[test]
fn conformance_change_type_from_external_name_to_cluster_ip_and_node_port() {
    let c = Cluster::start();
    external_name(&c, "externalname-service");
    let s = update(&c, "externalname-service", |s| {
        s["spec"]["type"] = json!("ClusterIP");
        s["spec"]["externalName"] = json!("");
        s["spec"]["ports"] =
            json!([{"port": 80, "name": "http", "protocol": "TCP", "targetPort": 9376}]);
    });
    let ip = s["spec"]["clusterIP"].as_str().unwrap();
    assert!(in_cidr(ip, [10, 96, 0, 0], 12), "{s}");
    assert_eq!(s["spec"]["clusterIPs"], json!([ip]));
    assert_eq!(s["spec"]["ipFamilies"], json!(["IPv4"]));

    external_name(&c, "externalname-np");
    let s = update(&c, "externalname-np", |s| {
        s["spec"]["type"] = json!("NodePort");
        s["spec"]["externalName"] = json!("");
        s["spec"]["ports"] =
            json!([{"port": 80, "name": "http", "protocol": "TCP", "targetPort": 9376}]);
    });
    assert!(
        in_cidr(s["spec"]["clusterIP"].as_str().unwrap(), [10, 96, 0, 0], 12),
        "{s}"
    );
    assert!(
        node_ports(&s).iter().all(|p| in_node_port_range(*p)) && node_ports(&s).len() == 1,
        "{s}"
    );
    assert_eq!(s["spec"]["externalTrafficPolicy"], "Cluster");
}

#[test]
fn conformance_change_type_to_external_name_releases() {
    let c = Cluster::start();
    c.apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: clusterip-service\nspec:\n  ports:\n  - port: 80\n    targetPort: 80\n");
    let ip = svc(&c, "clusterip-service")["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    let s = update(&c, "clusterip-service", |s| {
        s["spec"]["type"] = json!("ExternalName");
        s["spec"]["externalName"] = json!("foo.example.com");
    });
    assert!(
        s["spec"].get("clusterIP").is_none() && s["spec"].get("clusterIPs").is_none(),
        "{s}"
    );
    // The address is free again.
    c.k(&[
        "create",
        "service",
        "clusterip",
        "reuse-ip",
        "--tcp=80:80",
        &format!("--clusterip={ip}"),
    ]);

    c.k(&[
        "create",
        "service",
        "nodeport",
        "nodeport-service",
        "--tcp=80:80",
        "--node-port=30777",
    ]);
    let s = update(&c, "nodeport-service", |s| {
        s["spec"]["type"] = json!("ExternalName");
        s["spec"]["externalName"] = json!("foo.example.com");
    });
    assert!(
        node_ports(&s).is_empty() && s["spec"].get("clusterIP").is_none(),
        "{s}"
    );
    assert!(s["spec"].get("externalTrafficPolicy").is_none(), "{s}");
    c.k(&[
        "create",
        "service",
        "nodeport",
        "reuse-port",
        "--tcp=80:80",
        "--node-port=30777",
    ]);

    // And back: ExternalName -> LoadBalancer -> ClusterIP keeps its address.
    let s = update(&c, "nodeport-service", |s| {
        s["spec"]["type"] = json!("LoadBalancer");
        s["spec"]["externalName"] = json!("");
    });
    let ip = s["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert_eq!(node_ports(&s).len(), 1);
    let lb = eventually(Duration::from_secs(10), || {
        svc(&c, "nodeport-service")["status"]["loadBalancer"]["ingress"][0]["ip"]
            .as_str()
            .map(str::to_string)
    });
    let s = update(&c, "nodeport-service", |s| {
        s["spec"]["type"] = json!("ClusterIP")
    });
    assert_eq!(s["spec"]["clusterIP"], json!(ip));
    assert!(
        node_ports(&s).is_empty() && s["status"]["loadBalancer"] == json!({}),
        "{s}"
    );
    let free = format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: lb2\nspec:\n  type: LoadBalancer\n  loadBalancerIP: {lb}\n  ports:\n  - port: 80\n");
    c.apply(&free);
    assert_eq!(
        svc(&c, "lb2")["status"]["loadBalancer"]["ingress"][0]["ip"],
        json!(lb)
    );
}

#[test]
fn conformance_service_status_lifecycle() {
    let c = Cluster::start();
    c.apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: test-service-abcde\n  labels:\n    test-service-static: \"true\"\nspec:\n  type: LoadBalancer\n  loadBalancerClass: example.com/internal-vip\n  ports:\n  - name: http\n    protocol: TCP\n    port: 80\n    targetPort: 80\n");
    let name = "test-service-abcde";
    let st: Value = serde_json::from_str(&c.k(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/default/services/{name}/status"),
    ]))
    .unwrap();
    assert_eq!(st["metadata"]["name"], name);
    // Another load balancer implementation owns this class: skiff gives no address.
    assert_eq!(st["status"]["loadBalancer"], json!({}));

    c.k(&["patch", "svc", name, "--subresource=status", "--type=merge", "-p",
        r#"{"metadata":{"annotations":{"patchedstatus":"true"}},"status":{"loadBalancer":{"ingress":[{"ip":"203.0.113.1"}]}}}"#]);
    let s = svc(&c, name);
    assert_eq!(
        s["status"]["loadBalancer"]["ingress"],
        json!([{"ip": "203.0.113.1", "ipMode": "VIP"}])
    );

    let mut put = s.clone();
    put["status"]["conditions"] = json!([{"type": "StatusUpdate", "status": "True", "reason": "E2E", "message": "Set from e2e test", "lastTransitionTime": "2026-01-01T00:00:00Z"}]);
    let script = format!(
        "curl -sk -o /dev/null -w '%{{http_code}}' -X PUT -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' --data-binary @- https://127.0.0.1:6443/api/v1/namespaces/default/services/{name}/status <<'EOF'\n{put}\nEOF",
        c.token()
    );
    let out = c.sh(&script);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    let s = svc(&c, name);
    assert_eq!(s["status"]["conditions"][0]["type"], "StatusUpdate");
    assert_eq!(
        s["status"]["loadBalancer"]["ingress"][0]["ip"],
        "203.0.113.1"
    );

    c.k(&[
        "patch",
        "svc",
        name,
        "-p",
        r#"{"metadata":{"labels":{"test-service":"patched"}}}"#,
    ]);
    let s = svc(&c, name);
    assert_eq!(s["metadata"]["labels"]["test-service"], "patched");
    assert_eq!(s["status"]["conditions"][0]["type"], "StatusUpdate");

    // A status write cannot give a non-LoadBalancer a load balancer.
    c.k(&["create", "service", "clusterip", "plain", "--tcp=80:80"]);
    let err = c.k_err(&[
        "patch",
        "svc",
        "plain",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"loadBalancer":{"ingress":[{"ip":"203.0.113.9"}]}}}"#,
    ]);
    assert!(err.contains("status.loadBalancer.ingress: Forbidden: may only be used when `spec.type` is 'LoadBalancer'"), "{err}");

    c.k(&["delete", "svc", name]);
    let out = c.kubectl(&["get", "svc", name]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("services \"{name}\" not found"))
    );
}

#[test]
fn conformance_delete_collection_and_list_all_namespaces() {
    let c = Cluster::start();
    let mk = |name: &str, label: &str, port: u16| {
        format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  labels:\n    e2e-test-service: {label}\nspec:\n  type: NodePort\n  ports:\n  - name: http\n    port: {port}\n    targetPort: {port}\n")
    };
    c.apply(
        &[
            mk("e2e-svc-a-x1", "delete", 8001),
            mk("e2e-svc-b-x2", "delete", 8002),
            mk("e2e-svc-c-x3", "keep", 8003),
        ]
        .join("---\n"),
    );
    let listed = json_of(&c, &["get", "svc", "-l", "e2e-test-service=delete"]);
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    let held: Vec<i64> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(node_ports)
        .collect();
    c.k(&["delete", "svc", "-l", "e2e-test-service=delete"]);
    let left = json_of(&c, &["get", "svc", "-l", "e2e-test-service"]);
    let names: Vec<&str> = left["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["e2e-svc-c-x3"]);
    for (i, p) in held.iter().enumerate() {
        c.k(&[
            "create",
            "service",
            "nodeport",
            &format!("reuse-{i}"),
            "--tcp=80:80",
            &format!("--node-port={p}"),
        ]);
    }

    c.k(&["create", "namespace", "services-1234"]);
    c.k(&[
        "create",
        "service",
        "clusterip",
        "test-service",
        "-n",
        "services-1234",
        "--tcp=80:80",
    ]);
    let all = json_of(&c, &["get", "svc", "-A"]);
    assert!(all["items"].as_array().unwrap().iter().any(|s| {
        s["metadata"]["name"] == "test-service" && s["metadata"]["namespace"] == "services-1234"
    }));
    // Deleting the namespace gives its services' values back too.
    let ip = json_of(&c, &["get", "svc", "test-service", "-n", "services-1234"])["spec"]
        ["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    c.k(&["delete", "namespace", "services-1234"]);
    c.k(&[
        "create",
        "service",
        "clusterip",
        "reuse-ip",
        "--tcp=80:80",
        &format!("--clusterip={ip}"),
    ]);
}

/// Upstream's status strategy keeps metadata changes made through `/status` (the
/// lifecycle test patches an annotation there); skiff's generic status write
/// (`strategy::prepare_update`) keeps only the status.
#[test]
fn conformance_status_patch_keeps_annotations() {
    let c = Cluster::start();
    c.k(&["create", "service", "clusterip", "s", "--tcp=80:80"]);
    c.k(&[
        "patch",
        "svc",
        "s",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"metadata":{"annotations":{"patchedstatus":"true"}}}"#,
    ]);
    assert_eq!(
        svc(&c, "s")["metadata"]["annotations"]["patchedstatus"],
        "true"
    );
}
