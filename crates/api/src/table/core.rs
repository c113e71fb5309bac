//! Printers for core kinds other than Pod and Event.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{
    arr_at, at, col, docs, i64_at, len_at, name, str_at, wide, Ctx, Printer, Row, AGE, NAME,
};
use crate::selector::format_labels;

pub(crate) const SERVICE: Printer = Printer {
    columns: &[
        NAME,
        col("Type", "string", docs::SVC_TYPE),
        col("Cluster-IP", "string", docs::SVC_CLUSTER_IP),
        col("External-IP", "string", docs::SVC_EXTERNAL_IPS),
        col("Port(s)", "string", docs::SVC_PORTS),
        AGE,
        wide("Selector", "string", docs::SVC_SELECTOR),
    ],
    row: service_row,
};

/// Upstream `loadBalancerStatusStringer` (wide, so never clipped): the sorted,
/// deduplicated ingress IPs, or hostnames where there is no IP.
pub(crate) fn load_balancer_ingress(status: Option<&Value>) -> String {
    let mut set = BTreeSet::new();
    for ing in status.map_or(&[][..], |s| arr_at(s, &["ingress"])) {
        let ip = str_at(ing, &["ip"]);
        let host = str_at(ing, &["hostname"]);
        if !ip.is_empty() {
            set.insert(ip);
        } else if !host.is_empty() {
            set.insert(host);
        }
    }
    set.into_iter().collect::<Vec<_>>().join(",")
}

fn strings(v: &[Value]) -> Vec<String> {
    v.iter()
        .map(|s| s.as_str().unwrap_or("").to_string())
        .collect()
}

fn service_external_ip(svc: &Value, svc_type: &str) -> String {
    let external_ips = strings(arr_at(svc, &["spec", "externalIPs"]));
    match svc_type {
        "ClusterIP" | "NodePort" if external_ips.is_empty() => "<none>".to_string(),
        "ClusterIP" | "NodePort" => external_ips.join(","),
        "LoadBalancer" => {
            let lb = load_balancer_ingress(at(svc, &["status", "loadBalancer"]));
            if !external_ips.is_empty() {
                let mut all: Vec<String> = Vec::new();
                if !lb.is_empty() {
                    all.extend(lb.split(',').map(str::to_string));
                }
                all.extend(external_ips);
                all.join(",")
            } else if !lb.is_empty() {
                lb
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => str_at(svc, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// Upstream `makePortString`: `port/proto`, or `port:nodePort/proto`.
fn port_string(ports: &[Value]) -> String {
    ports
        .iter()
        .map(|p| {
            let port = i64_at(p, &["port"]);
            let proto = at(p, &["protocol"])
                .and_then(Value::as_str)
                .unwrap_or("TCP");
            let node_port = i64_at(p, &["nodePort"]);
            if node_port > 0 {
                format!("{port}:{node_port}/{proto}")
            } else {
                format!("{port}/{proto}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn service_row(svc: &Value, ctx: &Ctx) -> Row {
    let svc_type = at(svc, &["spec", "type"])
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    // Reading a Service back fills clusterIPs from clusterIP, so either will do.
    let cluster_ip = match arr_at(svc, &["spec", "clusterIPs"]).first() {
        Some(first) => first.as_str().unwrap_or(""),
        None => match str_at(svc, &["spec", "clusterIP"]) {
            "" => "<none>",
            ip => ip,
        },
    };
    let mut ports = port_string(arr_at(svc, &["spec", "ports"]));
    if ports.is_empty() {
        ports = "<none>".to_string();
    }
    Row::new(vec![
        name(svc).into(),
        svc_type.into(),
        cluster_ip.into(),
        service_external_ip(svc, svc_type).into(),
        ports.into(),
        ctx.age(svc).into(),
        format_labels(at(svc, &["spec", "selector"]).and_then(Value::as_object)).into(),
    ])
}

pub(crate) const ENDPOINTS: Printer = Printer {
    columns: &[
        NAME,
        col("Endpoints", "string", docs::ENDPOINTS_SUBSETS),
        AGE,
    ],
    row: endpoints_row,
};

/// Go's `net.JoinHostPort`.
pub(crate) fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Upstream `formatEndpoints`: ready addresses × ports, the first three shown.
fn format_endpoints(subsets: &[Value]) -> String {
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for ss in subsets {
        let addresses = arr_at(ss, &["addresses"]);
        let ports = arr_at(ss, &["ports"]);
        if ports.is_empty() {
            // Headless services may have no ports.
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(str_at(a, &["ip"]).to_string());
            }
            continue;
        }
        for p in ports {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(join_host_port(str_at(a, &["ip"]), i64_at(p, &["port"])));
            }
        }
    }
    let s = list.join(",");
    if more {
        format!("{s} + {} more...", count - MAX)
    } else {
        s
    }
}

fn endpoints_row(ep: &Value, ctx: &Ctx) -> Row {
    Row::new(vec![
        name(ep).into(),
        format_endpoints(arr_at(ep, &["subsets"])).into(),
        ctx.age(ep).into(),
    ])
}

pub(crate) const NAMESPACE: Printer = Printer {
    columns: &[
        NAME,
        col("Status", "string", "The status of the namespace"),
        AGE,
    ],
    row: namespace_row,
};

fn namespace_row(ns: &Value, ctx: &Ctx) -> Row {
    Row::new(vec![
        name(ns).into(),
        str_at(ns, &["status", "phase"]).into(),
        ctx.age(ns).into(),
    ])
}

pub(crate) const NODE: Printer = Printer {
    columns: &[
        NAME,
        col("Status", "string", "The status of the node"),
        col("Roles", "string", "The roles of the node"),
        AGE,
        col("Version", "string", docs::NODE_KUBELET_VERSION),
        wide("Internal-IP", "string", docs::NODE_ADDRESSES),
        wide("External-IP", "string", docs::NODE_ADDRESSES),
        wide("OS-Image", "string", docs::NODE_OS_IMAGE),
        wide("Kernel-Version", "string", docs::NODE_KERNEL),
        wide("Container-Runtime", "string", docs::NODE_RUNTIME),
    ],
    row: node_row,
};

/// Roles from `node-role.kubernetes.io/<role>` keys and the `kubernetes.io/role` value.
fn node_roles(node: &Value) -> String {
    let mut roles = BTreeSet::new();
    if let Some(labels) = at(node, &["metadata", "labels"]).and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role.to_string());
                }
            } else if k == "kubernetes.io/role" {
                if let Some(v) = v.as_str().filter(|v| !v.is_empty()) {
                    roles.insert(v.to_string());
                }
            }
        }
    }
    if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    }
}

fn node_address(node: &Value, ty: &str) -> String {
    arr_at(node, &["status", "addresses"])
        .iter()
        .find(|a| str_at(a, &["type"]) == ty)
        .map_or("<none>", |a| str_at(a, &["address"]))
        .to_string()
}

fn node_row(node: &Value, ctx: &Ctx) -> Row {
    // The last Ready condition wins, as upstream builds a map by type.
    let ready = arr_at(node, &["status", "conditions"])
        .iter()
        .rfind(|c| str_at(c, &["type"]) == "Ready");
    let mut status = vec![match ready {
        Some(c) if str_at(c, &["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if at(node, &["spec", "unschedulable"]).and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }
    let info = |field: &str| match str_at(node, &["status", "nodeInfo", field]) {
        "" => "<unknown>".to_string(),
        v => v.to_string(),
    };
    Row::new(vec![
        name(node).into(),
        status.join(",").into(),
        node_roles(node).into(),
        ctx.age(node).into(),
        str_at(node, &["status", "nodeInfo", "kubeletVersion"]).into(),
        node_address(node, "InternalIP").into(),
        node_address(node, "ExternalIP").into(),
        info("osImage").into(),
        info("kernelVersion").into(),
        info("containerRuntimeVersion").into(),
    ])
}

pub(crate) const CONFIG_MAP: Printer = Printer {
    columns: &[NAME, col("Data", "string", docs::CM_DATA), AGE],
    row: config_map_row,
};

fn config_map_row(cm: &Value, ctx: &Ctx) -> Row {
    let data = len_at(cm, &["data"]) + len_at(cm, &["binaryData"]);
    Row::new(vec![name(cm).into(), data.into(), ctx.age(cm).into()])
}

pub(crate) const SECRET: Printer = Printer {
    columns: &[
        NAME,
        col("Type", "string", docs::SECRET_TYPE),
        col("Data", "string", docs::SECRET_DATA),
        AGE,
    ],
    row: secret_row,
};

fn secret_row(secret: &Value, ctx: &Ctx) -> Row {
    let ty = at(secret, &["type"])
        .and_then(Value::as_str)
        .unwrap_or("Opaque");
    // Decoding merges stringData into data, so count the union of keys.
    let mut keys = BTreeSet::new();
    for field in ["data", "stringData"] {
        if let Some(m) = at(secret, &[field]).and_then(Value::as_object) {
            keys.extend(m.keys());
        }
    }
    Row::new(vec![
        name(secret).into(),
        ty.into(),
        keys.len().into(),
        ctx.age(secret).into(),
    ])
}

pub(crate) const SERVICE_ACCOUNT: Printer = Printer {
    columns: &[NAME, col("Secrets", "string", docs::SA_SECRETS), AGE],
    row: service_account_row,
};

fn service_account_row(sa: &Value, ctx: &Ctx) -> Row {
    Row::new(vec![
        name(sa).into(),
        len_at(sa, &["secrets"]).into(),
        ctx.age(sa).into(),
    ])
}
