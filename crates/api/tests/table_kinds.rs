//! Tables for every printed kind, cells as `kubectl get -o wide` shows them upstream.

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Value};
use skiff_api::table::{column_definitions, table, table_without_headers, IncludeObject};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0)
        .single()
        .expect("valid time")
}

fn ago(secs: i64) -> String {
    (now() - Duration::seconds(secs))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn meta(name: &str, age_secs: i64) -> Value {
    json!({"name": name, "namespace": "default", "creationTimestamp": ago(age_secs),
           "resourceVersion": "42", "labels": {"app": name}})
}

fn row(group: &str, kind: &str, obj: Value) -> Value {
    let t = table(group, kind, &[obj], now(), IncludeObject::None, None);
    t["rows"][0]["cells"].clone()
}

fn column_names(group: &str, kind: &str) -> Vec<(String, i64)> {
    column_definitions(group, kind)
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or("").to_string(),
                        c["priority"].as_i64().unwrap_or(-1),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn svc(name: &str, spec: Value, status: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": meta(name, 480), "spec": spec, "status": status})
}

#[test]
fn services() {
    let kube_dns = svc(
        "kube-dns",
        json!({"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
               "selector": {"k8s-app": "kube-dns"},
               "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                         {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}),
        json!({"loadBalancer": {}}),
    );
    assert_eq!(
        row("", "Service", kube_dns),
        json!([
            "kube-dns",
            "ClusterIP",
            "10.96.0.10",
            "<none>",
            "53/UDP,53/TCP",
            "8m",
            "k8s-app=kube-dns"
        ])
    );

    let node_port = svc(
        "my-nginx",
        json!({"type": "NodePort", "clusterIP": "10.0.162.149", "clusterIPs": ["10.0.162.149"],
               "selector": {"run": "my-nginx"},
               "ports": [{"name": "http", "nodePort": 31704, "port": 8080, "protocol": "TCP", "targetPort": 80},
                         {"name": "https", "nodePort": 32453, "port": 443, "protocol": "TCP", "targetPort": 443}]}),
        json!({}),
    );
    assert_eq!(
        row("", "Service", node_port)[4],
        json!("8080:31704/TCP,443:32453/TCP")
    );

    let lb = |status: Value, external_ips: Value| {
        svc(
            "lb",
            json!({"type": "LoadBalancer", "clusterIPs": ["10.96.1.1"], "externalIPs": external_ips,
                   "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}),
            status,
        )
    };
    assert_eq!(
        row("", "Service", lb(json!({"loadBalancer": {}}), json!([])))[3],
        json!("<pending>")
    );
    assert_eq!(
        row(
            "",
            "Service",
            lb(
                json!({"loadBalancer": {"ingress": [{"ip": "162.222.184.144"}]}}),
                json!([])
            )
        )[3],
        json!("162.222.184.144")
    );
    // Ingress IPs (sorted, hostnames where no IP), then spec.externalIPs; never clipped.
    let both = lb(
        json!({"loadBalancer": {"ingress": [
            {"hostname": "a320587ffd19711e5a37606cf4a74574-1142138393.us-east-1.elb.amazonaws.com"},
            {"ip": "5.6.7.8"}]}}),
        json!(["1.2.3.4"]),
    );
    assert_eq!(
        row("", "Service", both)[3],
        json!("5.6.7.8,a320587ffd19711e5a37606cf4a74574-1142138393.us-east-1.elb.amazonaws.com,1.2.3.4")
    );

    let external_name = svc(
        "db",
        json!({"type": "ExternalName", "externalName": "my.database.example.com"}),
        json!({}),
    );
    assert_eq!(
        row("", "Service", external_name),
        json!([
            "db",
            "ExternalName",
            "<none>",
            "my.database.example.com",
            "<none>",
            "8m",
            "<none>"
        ])
    );

    let headless = svc(
        "postgresql-svc",
        json!({"clusterIP": "None", "clusterIPs": ["None"], "ports": [{"port": 5432}],
               "externalIPs": ["192.0.2.9"]}),
        json!({}),
    );
    assert_eq!(
        row("", "Service", headless),
        json!([
            "postgresql-svc",
            "ClusterIP",
            "None",
            "192.0.2.9",
            "5432/TCP",
            "8m",
            "<none>"
        ])
    );
    assert_eq!(
        column_names("", "Service"),
        [
            ("Name".into(), 0),
            ("Type".into(), 0),
            ("Cluster-IP".into(), 0),
            ("External-IP".into(), 0),
            ("Port(s)".into(), 0),
            ("Age".into(), 0),
            ("Selector".into(), 1)
        ]
    );
}

#[test]
fn endpoints_and_slices() {
    let addrs: Vec<Value> = (5..10)
        .map(|i| json!({"ip": format!("10.244.0.{i}")}))
        .collect();
    let ep = json!({"metadata": meta("web", 60), "subsets": [{"addresses": addrs, "ports": [{"port": 8080}]}]});
    assert_eq!(
        row("", "Endpoints", ep),
        json!([
            "web",
            "10.244.0.5:8080,10.244.0.6:8080,10.244.0.7:8080 + 2 more...",
            "60s"
        ])
    );
    let two_ports = json!({"metadata": meta("web", 60), "subsets": [{
        "addresses": [{"ip": "10.244.0.5"}, {"ip": "fd00::5"}],
        "notReadyAddresses": [{"ip": "10.244.0.9"}],
        "ports": [{"port": 80}, {"port": 443}]}]});
    assert_eq!(
        row("", "Endpoints", two_ports)[1],
        json!("10.244.0.5:80,[fd00::5]:80,10.244.0.5:443 + 1 more...")
    );
    assert_eq!(
        row("", "Endpoints", json!({"metadata": meta("kubernetes", 60)}))[1],
        json!("<none>")
    );
    let headless =
        json!({"metadata": meta("h", 60), "subsets": [{"addresses": [{"ip": "10.0.0.1"}]}]});
    assert_eq!(row("", "Endpoints", headless)[1], json!("10.0.0.1"));

    let eps: Vec<Value> = (5..10)
        .map(|i| json!({"addresses": [format!("10.244.0.{i}")], "conditions": {"ready": true}}))
        .collect();
    let slice = json!({"metadata": meta("web-abcde", 60), "addressType": "IPv4",
                       "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "metrics"}, {}],
                       "endpoints": eps});
    assert_eq!(
        row("discovery.k8s.io", "EndpointSlice", slice),
        json!([
            "web-abcde",
            "IPv4",
            "8080,metrics,*",
            "10.244.0.5,10.244.0.6,10.244.0.7 + 2 more...",
            "60s"
        ])
    );
    let empty = json!({"metadata": meta("e", 60), "addressType": "IPv4"});
    assert_eq!(
        row("discovery.k8s.io", "EndpointSlice", empty),
        json!(["e", "IPv4", "<unset>", "<unset>", "60s"])
    );
}

fn template() -> Value {
    json!({"metadata": {"labels": {"app": "web"}},
           "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"},
                                   {"name": "sidecar", "image": "busybox"}]}})
}

#[test]
fn workloads() {
    let d = json!({"metadata": meta("web", 5 * 86400), "spec": {"replicas": 3,
                   "selector": {"matchLabels": {"app": "web"}}, "template": template()},
                   "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
    assert_eq!(
        row("apps", "Deployment", d),
        json!([
            "web",
            "2/3",
            3,
            2,
            "5d",
            "nginx,sidecar",
            "nginx:1.25,busybox",
            "app=web"
        ])
    );
    let fresh = json!({"metadata": meta("new", 3), "spec": {"template": template()}});
    assert_eq!(
        row("apps", "Deployment", fresh),
        json!([
            "new",
            "0/1",
            0,
            0,
            "3s",
            "nginx,sidecar",
            "nginx:1.25,busybox",
            ""
        ])
    );

    let rs = json!({"metadata": meta("web-5d4f", 3600), "spec": {"replicas": 3,
                    "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d4f"}},
                    "template": template()},
                    "status": {"replicas": 3, "readyReplicas": 2}});
    assert_eq!(
        row("apps", "ReplicaSet", rs),
        json!([
            "web-5d4f",
            3,
            3,
            2,
            "60m",
            "nginx,sidecar",
            "nginx:1.25,busybox",
            "app=web,pod-template-hash=5d4f"
        ])
    );

    let sts = json!({"metadata": meta("postgresql-sfs", 21), "spec": {"replicas": 3, "template": template()},
                     "status": {"readyReplicas": 3}});
    assert_eq!(
        row("apps", "StatefulSet", sts),
        json!([
            "postgresql-sfs",
            "3/3",
            "21s",
            "nginx,sidecar",
            "nginx:1.25,busybox"
        ])
    );
    assert_eq!(
        column_names("apps", "StatefulSet"),
        [
            ("Name".into(), 0),
            ("Ready".into(), 0),
            ("Age".into(), 0),
            ("Containers".into(), 1),
            ("Images".into(), 1)
        ]
    );

    let ds = json!({"metadata": meta("kube-proxy", 86400), "spec": {
                    "selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
                    "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"},
                                          "containers": [{"name": "kube-proxy", "image": "kube-proxy:v1.33.0"}]}}},
                    "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1,
                               "updatedNumberScheduled": 2, "numberAvailable": 1}});
    assert_eq!(
        row("apps", "DaemonSet", ds),
        json!([
            "kube-proxy",
            2,
            2,
            1,
            2,
            1,
            "kubernetes.io/os=linux",
            "24h",
            "kube-proxy",
            "kube-proxy:v1.33.0",
            "k8s-app=kube-proxy"
        ])
    );
}

#[test]
fn jobs() {
    let job = json!({"metadata": meta("pi", 300), "spec": {"completions": 1, "parallelism": 1,
                     "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
                     "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
                     "status": {"succeeded": 1, "startTime": ago(300), "completionTime": ago(240),
                                "conditions": [{"type": "Complete", "status": "True"}]}});
    assert_eq!(
        row("batch", "Job", job),
        json!([
            "pi",
            "Complete",
            "1/1",
            "60s",
            "5m",
            "pi",
            "perl",
            "batch.kubernetes.io/controller-uid=u"
        ])
    );
    let running = json!({"metadata": meta("w", 300), "spec": {"parallelism": 3},
                         "status": {"startTime": ago(150)}});
    let r = row("batch", "Job", running);
    assert_eq!(
        (r[1].clone(), r[2].clone(), r[3].clone()),
        (json!("Running"), json!("0/1 of 3"), json!("2m30s"))
    );

    let cj = json!({"metadata": meta("hello", 3600), "spec": {"schedule": "*/1 * * * *", "suspend": false,
                    "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "hello", "image": "busybox"}]}}}}},
                    "status": {"active": [{"name": "hello-1"}], "lastScheduleTime": ago(30)}});
    assert_eq!(
        row("batch", "CronJob", cj),
        json!([
            "hello",
            "*/1 * * * *",
            "<none>",
            "False",
            1,
            "30s",
            "60m",
            "hello",
            "busybox",
            "<none>"
        ])
    );
}

#[test]
fn namespaces_nodes_config() {
    let ns = json!({"metadata": {"name": "default", "creationTimestamp": ago(2 * 86400 + 18 * 3600)},
                    "status": {"phase": "Active"}});
    assert_eq!(
        row("", "Namespace", ns),
        json!(["default", "Active", "2d18h"])
    );

    let node = json!({"metadata": {"name": "node-1", "creationTimestamp": ago(2 * 86400),
                      "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "edge",
                                 "kubernetes.io/hostname": "node-1"}},
                      "spec": {"unschedulable": true},
                      "status": {"conditions": [{"type": "MemoryPressure", "status": "False"},
                                                {"type": "Ready", "status": "True"}],
                                 "addresses": [{"type": "InternalIP", "address": "192.168.1.10"},
                                               {"type": "Hostname", "address": "node-1"}],
                                 "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Ubuntu 24.04 LTS",
                                              "kernelVersion": "6.8.0-31-generic",
                                              "containerRuntimeVersion": "containerd://1.7.12"}}});
    assert_eq!(
        row("", "Node", node),
        json!([
            "node-1",
            "Ready,SchedulingDisabled",
            "control-plane,edge",
            "2d",
            "v1.33.0",
            "192.168.1.10",
            "<none>",
            "Ubuntu 24.04 LTS",
            "6.8.0-31-generic",
            "containerd://1.7.12"
        ])
    );
    let bare = json!({"metadata": {"name": "n2"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
    assert_eq!(
        row("", "Node", bare),
        json!([
            "n2",
            "NotReady",
            "<none>",
            "<unknown>",
            "",
            "<none>",
            "<none>",
            "<unknown>",
            "<unknown>",
            "<unknown>"
        ])
    );

    let cm = json!({"metadata": meta("kube-root-ca.crt", 60), "data": {"ca.crt": "x"}, "binaryData": {"b": "eA=="}});
    assert_eq!(
        row("", "ConfigMap", cm),
        json!(["kube-root-ca.crt", 2, "60s"])
    );
    let secret = json!({"metadata": meta("tls", 60), "type": "kubernetes.io/tls",
                        "data": {"tls.crt": "eA==", "tls.key": "eA=="}});
    assert_eq!(
        row("", "Secret", secret),
        json!(["tls", "kubernetes.io/tls", 2, "60s"])
    );
    let sa = json!({"metadata": meta("default", 60)});
    assert_eq!(row("", "ServiceAccount", sa), json!(["default", 0, "60s"]));
}

#[test]
fn events_core_and_events_api() {
    let core = json!({"metadata": meta("web.17c", 120),
        "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default", "fieldPath": "spec.containers{app}"},
        "reason": "BackOff", "message": "Back-off restarting failed container\n", "type": "Warning",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": ago(3600), "lastTimestamp": ago(30), "count": 12});
    assert_eq!(
        row("", "Event", core),
        json!([
            "30s",
            "Warning",
            "BackOff",
            "pod/web",
            "spec.containers{app}",
            "kubelet, node-1",
            "Back-off restarting failed container",
            "60m",
            12,
            "web.17c"
        ])
    );
    let v1 = json!({"metadata": meta("web.18d", 120),
        "regarding": {"kind": "Deployment", "name": "web"}, "reason": "ScalingReplicaSet",
        "note": "Scaled up replica set web-5d4f to 3", "type": "Normal",
        "reportingController": "deployment-controller", "reportingInstance": "",
        "eventTime": format!("{}.123456Z", &ago(90)[..19])});
    assert_eq!(
        row("events.k8s.io", "Event", v1),
        json!([
            "89s",
            "Normal",
            "ScalingReplicaSet",
            "deployment/web",
            "",
            "deployment-controller",
            "Scaled up replica set web-5d4f to 3",
            "89s",
            1,
            "web.18d"
        ])
    );
    let series = json!({"metadata": meta("s", 120), "involvedObject": {"kind": "Node"},
        "eventTime": format!("{}.000000Z", &ago(600)[..19]),
        "series": {"count": 4, "lastObservedTime": format!("{}.000000Z", &ago(5)[..19])},
        "reportingComponent": "kubelet", "reportingInstance": "node-1"});
    let r = row("", "Event", series);
    assert_eq!(
        (
            r[0].clone(),
            r[3].clone(),
            r[5].clone(),
            r[7].clone(),
            r[8].clone()
        ),
        (
            json!("5s"),
            json!("node"),
            json!("kubelet, node-1"),
            json!("10m"),
            json!(4)
        )
    );
    assert_eq!(
        column_names("", "Event")
            .iter()
            .map(|(n, p)| format!("{n}:{p}"))
            .collect::<Vec<_>>(),
        [
            "Last Seen:0",
            "Type:0",
            "Reason:0",
            "Object:0",
            "Subobject:1",
            "Source:1",
            "Message:0",
            "First Seen:1",
            "Count:1",
            "Name:1"
        ]
    );
}

#[test]
fn networking_and_leases() {
    let np = json!({"metadata": meta("deny", 60), "spec": {"podSelector": {"matchLabels": {"app": "web"}}}});
    assert_eq!(
        row("networking.k8s.io", "NetworkPolicy", np),
        json!(["deny", "app=web", "60s"])
    );
    let all = json!({"metadata": meta("all", 60), "spec": {"podSelector": {}}});
    assert_eq!(
        row("networking.k8s.io", "NetworkPolicy", all)[1],
        json!("<none>")
    );

    let ing = json!({"metadata": meta("web", 3600), "spec": {"ingressClassName": "nginx",
        "tls": [{"hosts": ["foo.example.com"]}],
        "rules": [{"host": "foo.example.com"}, {}, {"host": "bar.example.com"}, {"host": "baz.example.com"}, {"host": "q.example.com"}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.9"}, {"hostname": "lb.example.com"}]}}});
    assert_eq!(
        row("networking.k8s.io", "Ingress", ing),
        json!([
            "web",
            "nginx",
            "foo.example.com,bar.example.com,baz.example.com + 2 more...",
            "10.0.0.9,lb.example.com",
            "80, 443",
            "60m"
        ])
    );
    let plain = json!({"metadata": meta("p", 60), "spec": {"defaultBackend": {}}});
    assert_eq!(
        row("networking.k8s.io", "Ingress", plain),
        json!(["p", "<none>", "*", "", "80", "60s"])
    );

    let ic = json!({"metadata": {"name": "nginx", "creationTimestamp": ago(60)},
        "spec": {"controller": "k8s.io/ingress-nginx",
                 "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external-lb"}}});
    assert_eq!(
        row("networking.k8s.io", "IngressClass", ic),
        json!([
            "nginx",
            "k8s.io/ingress-nginx",
            "IngressParameters.k8s.example.com/external-lb",
            "60s"
        ])
    );
    let lease = json!({"metadata": meta("kube-controller-manager", 60), "spec": {"holderIdentity": "node-1_abc"}});
    assert_eq!(
        row("coordination.k8s.io", "Lease", lease),
        json!(["kube-controller-manager", "node-1_abc", "60s"])
    );
}

#[test]
fn default_table_and_envelope() {
    let role = json!({"metadata": {"name": "pod-reader", "namespace": "default",
                                   "creationTimestamp": "2024-01-02T03:04:05Z"}, "rules": []});
    let t = table(
        "rbac.authorization.k8s.io",
        "Role",
        std::slice::from_ref(&role),
        now(),
        IncludeObject::Metadata,
        Some(json!({"resourceVersion": "99", "continue": "abc"})),
    );
    assert_eq!(
        t,
        json!({
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": "99", "continue": "abc"},
            "columnDefinitions": [
                {"name": "Name", "type": "string", "format": "name",
                 "description": "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
                 "priority": 0},
                {"name": "Created At", "type": "date", "format": "",
                 "description": "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
                 "priority": 0}
            ],
            "rows": [{
                "cells": ["pod-reader", "2024-01-02T03:04:05Z"],
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                           "metadata": role["metadata"].clone()}
            }]
        })
    );

    let full = table(
        "",
        "ConfigMap",
        std::slice::from_ref(&role),
        now(),
        IncludeObject::Object,
        None,
    );
    assert_eq!(full["rows"][0]["object"], role);
    assert_eq!(full["metadata"], json!({}));
    let none = table_without_headers("", "ConfigMap", &[role], now(), IncludeObject::None, None);
    assert_eq!(none["rows"][0]["object"], Value::Null);
    assert_eq!(none["columnDefinitions"], Value::Null);
    let empty = table(
        "apps",
        "Deployment",
        &[],
        now(),
        IncludeObject::Metadata,
        None,
    );
    assert_eq!(empty["rows"], json!([]));
    assert_eq!(IncludeObject::parse(""), Some(IncludeObject::Metadata));
    assert_eq!(IncludeObject::parse("Object"), Some(IncludeObject::Object));
    assert_eq!(IncludeObject::parse("bogus"), None);
}

#[test]
fn every_row_has_one_cell_per_column() {
    let kinds = [
        ("", "Pod"),
        ("", "Service"),
        ("", "Endpoints"),
        ("", "Namespace"),
        ("", "Node"),
        ("", "ConfigMap"),
        ("", "Secret"),
        ("", "ServiceAccount"),
        ("", "ReplicationController"),
        ("", "Event"),
        ("events.k8s.io", "Event"),
        ("apps", "Deployment"),
        ("apps", "ReplicaSet"),
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
        ("batch", "Job"),
        ("batch", "CronJob"),
        ("discovery.k8s.io", "EndpointSlice"),
        ("networking.k8s.io", "NetworkPolicy"),
        ("networking.k8s.io", "Ingress"),
        ("networking.k8s.io", "IngressClass"),
        ("coordination.k8s.io", "Lease"),
        ("example.com", "Widget"),
    ];
    let objects = [
        json!({}),
        json!(null),
        json!({"metadata": {"name": 3}, "spec": [], "status": "x"}),
    ];
    for (group, kind) in kinds {
        let t = table(group, kind, &objects, now(), IncludeObject::Metadata, None);
        let n = t["columnDefinitions"].as_array().map_or(0, Vec::len);
        assert!(n >= 2, "{group}/{kind}");
        for r in t["rows"].as_array().into_iter().flatten() {
            assert_eq!(
                r["cells"].as_array().map_or(0, Vec::len),
                n,
                "{group}/{kind}"
            );
        }
    }
}
