//! Printers for discovery, networking and coordination kinds.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{arr_at, at, col, docs, list_with_more, name, str_at, Ctx, Printer, Row, AGE, NAME};
use crate::selector::format_label_selector;

pub(crate) const ENDPOINT_SLICE: Printer = Printer {
    columns: &[
        NAME,
        col("AddressType", "string", docs::SLICE_ADDRESS_TYPE),
        col("Ports", "string", docs::SLICE_PORTS),
        col("Endpoints", "string", docs::SLICE_ENDPOINTS),
        AGE,
    ],
    row: endpoint_slice_row,
};

fn endpoint_slice_row(slice: &Value, ctx: &Ctx) -> Row {
    // A port without a number is shown by name, one without either as `*`.
    let ports: Vec<String> = arr_at(slice, &["ports"])
        .iter()
        .map(|p| {
            if let Some(n) = at(p, &["port"]).and_then(Value::as_i64) {
                n.to_string()
            } else if let Some(n) = at(p, &["name"]).and_then(Value::as_str) {
                n.to_string()
            } else {
                "*".to_string()
            }
        })
        .collect();
    let addresses: Vec<String> = arr_at(slice, &["endpoints"])
        .iter()
        .flat_map(|e| arr_at(e, &["addresses"]))
        .map(|a| a.as_str().unwrap_or("").to_string())
        .collect();
    Row::new(vec![
        name(slice).into(),
        str_at(slice, &["addressType"]).into(),
        list_with_more(&ports, 3).into(),
        list_with_more(&addresses, 3).into(),
        ctx.age(slice).into(),
    ])
}

pub(crate) const NETWORK_POLICY: Printer = Printer {
    columns: &[
        NAME,
        col("Pod-Selector", "string", docs::NETPOL_POD_SELECTOR),
        AGE,
    ],
    row: network_policy_row,
};

fn network_policy_row(np: &Value, ctx: &Ctx) -> Row {
    Row::new(vec![
        name(np).into(),
        format_label_selector(at(np, &["spec", "podSelector"])).into(),
        ctx.age(np).into(),
    ])
}

pub(crate) const INGRESS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Class",
            "string",
            "The name of the IngressClass resource that should be used for additional configuration",
        ),
        col(
            "Hosts",
            "string",
            "Hosts that incoming requests are matched against before the ingress rule",
        ),
        col(
            "Address",
            "string",
            "Address is a list containing ingress points for the load-balancer",
        ),
        col("Ports", "string", "Ports of TLS configurations that open"),
        AGE,
    ],
    row: ingress_row,
};

/// Upstream `formatHosts`: up to three hosts, `*` when no rule names one.
fn format_hosts(rules: &[Value]) -> String {
    const MAX: usize = 3;
    let mut list: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if list.len() == MAX {
            more = true;
        }
        let host = str_at(rule, &["host"]);
        if !more && !host.is_empty() {
            list.push(host);
        }
    }
    if list.is_empty() {
        return "*".to_string();
    }
    let s = list.join(",");
    if more {
        // Counted against all rules, hostless ones included, as upstream does.
        format!("{s} + {} more...", rules.len() - MAX)
    } else {
        s
    }
}

fn ingress_row(ing: &Value, ctx: &Ctx) -> Row {
    let class = at(ing, &["spec", "ingressClassName"])
        .and_then(Value::as_str)
        .unwrap_or("<none>");
    let mut addresses = BTreeSet::new();
    for lb in arr_at(ing, &["status", "loadBalancer", "ingress"]) {
        let ip = str_at(lb, &["ip"]);
        let host = str_at(lb, &["hostname"]);
        if !ip.is_empty() {
            addresses.insert(ip);
        } else if !host.is_empty() {
            addresses.insert(host);
        }
    }
    let ports = if arr_at(ing, &["spec", "tls"]).is_empty() {
        "80"
    } else {
        "80, 443"
    };
    Row::new(vec![
        name(ing).into(),
        class.into(),
        format_hosts(arr_at(ing, &["spec", "rules"])).into(),
        addresses.into_iter().collect::<Vec<_>>().join(",").into(),
        ports.into(),
        ctx.age(ing).into(),
    ])
}

pub(crate) const INGRESS_CLASS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Controller",
            "string",
            "Controller that is responsible for handling this class",
        ),
        col(
            "Parameters",
            "string",
            "A reference to a resource with additional parameters",
        ),
        AGE,
    ],
    row: ingress_class_row,
};

fn ingress_class_row(ic: &Value, ctx: &Ctx) -> Row {
    let parameters = match at(ic, &["spec", "parameters"]).filter(|p| p.is_object()) {
        None => "<none>".to_string(),
        Some(p) => {
            let mut s = str_at(p, &["kind"]).to_string();
            if let Some(group) = at(p, &["apiGroup"]).and_then(Value::as_str) {
                s = format!("{s}.{group}");
            }
            format!("{s}/{}", str_at(p, &["name"]))
        }
    };
    Row::new(vec![
        name(ic).into(),
        str_at(ic, &["spec", "controller"]).into(),
        parameters.into(),
        ctx.age(ic).into(),
    ])
}

pub(crate) const LEASE: Printer = Printer {
    columns: &[NAME, col("Holder", "string", docs::LEASE_HOLDER), AGE],
    row: lease_row,
};

fn lease_row(lease: &Value, ctx: &Ctx) -> Row {
    Row::new(vec![
        name(lease).into(),
        str_at(lease, &["spec", "holderIdentity"]).into(),
        ctx.age(lease).into(),
    ])
}
