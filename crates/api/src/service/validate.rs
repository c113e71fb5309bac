//! Upstream's `ValidateService`, `ValidateServiceUpdate` and
//! `ValidateServiceStatusUpdate`, with their field paths, messages and order.

use std::net::IpAddr;

use serde_json::{json, Value};

use super::*;
use crate::validation::{self as v, FieldError};

const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const TYPES: &[&str] = &[CLUSTER_IP, EXTERNAL_NAME, LOAD_BALANCER, NODE_PORT];
const AFFINITIES: &[&str] = &["ClientIP", "None"];
const TRAFFIC_POLICIES: &[&str] = &["Cluster", "Local"];
const FAMILIES: &[&str] = &["IPv4", "IPv6"];
const FAMILY_POLICIES: &[&str] = &["PreferDualStack", "RequireDualStack", "SingleStack"];
const IP_MODES: &[&str] = &["Proxy", "VIP"];
const TOPOLOGY_MODE: &str = "service.kubernetes.io/topology-mode";
const TOPOLOGY_HINTS: &str = "service.kubernetes.io/topology-aware-hints";
const SOURCE_RANGES: &str = "service.beta.kubernetes.io/load-balancer-source-ranges";
const BAD_IP: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
const BAD_CIDR: &str = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";
const LB_ONLY: &str = "may only be used when `type` is 'LoadBalancer'";

/// Validates a Service as it will be stored: `obj` after [`prepare`] (this applies
/// it to a copy, so callers may pass the object as the client sent it), and the
/// change from `old` on update.
pub fn validate(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut new = obj.clone();
    prepare(&mut new, old);
    let mut errs = Vec::new();
    if let Some(old) = old {
        if is_status_write(&new, old) {
            lb_status(&new, &mut errs);
            return errs;
        }
        upgrade_downgrade_cluster_ips(old, &new, &mut errs);
        upgrade_downgrade_families(old, &new, &mut errs);
        load_balancer_class_update(old, &new, &mut errs);
        if needs_health_check(old)
            && needs_health_check(&new)
            && int_field(spec(old), "healthCheckNodePort")
                != int_field(spec(&new), "healthCheckNodePort")
        {
            errs.push(FieldError::forbidden(
                "spec.healthCheckNodePort",
                "field is immutable",
            ));
        }
    }
    service(&new, &mut errs);
    errs
}

fn port_num(n: i64) -> Option<&'static str> {
    (!(1..=65535).contains(&n)).then_some("must be between 1 and 65535, inclusive")
}

fn port_name(name: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    if name.len() > 15 {
        out.push("must be no more than 15 characters");
    }
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        out.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        out.push("must contain at least one letter (a-z)");
    }
    if name.contains("--") {
        out.push("must not contain consecutive hyphens");
    }
    if name.starts_with('-') || name.ends_with('-') {
        out.push("must not begin or end with a hyphen");
    }
    out
}

fn check_ip(path: &str, ip: &str, errs: &mut Vec<FieldError>) -> bool {
    if parse_ip(ip).is_some() {
        return true;
    }
    errs.push(FieldError::invalid(path, json!(ip), BAD_IP));
    false
}

/// Upstream's `ValidateNonSpecialIP`, for addresses traffic is sent to.
fn non_special_ip(path: &str, ip: &str, errs: &mut Vec<FieldError>) {
    let Some(addr) = parse_ip(ip) else {
        errs.push(FieldError::invalid(
            path,
            json!(ip),
            "must be a valid IP address",
        ));
        return;
    };
    let (unspecified, loopback, link_local, ll_multicast) = match addr {
        IpAddr::V4(a) => (
            a.is_unspecified(),
            a.is_loopback(),
            a.is_link_local(),
            a.octets()[..3] == [224, 0, 0],
        ),
        IpAddr::V6(a) => {
            let s = a.segments();
            (
                a.is_unspecified(),
                a.is_loopback(),
                s[0] & 0xffc0 == 0xfe80,
                s[0] & 0xff0f == 0xff02,
            )
        }
    };
    if unspecified {
        errs.push(FieldError::invalid(
            path,
            json!(ip),
            &format!("may not be unspecified ({ip})"),
        ));
    }
    if loopback {
        errs.push(FieldError::invalid(
            path,
            json!(ip),
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        ));
    }
    if link_local {
        errs.push(FieldError::invalid(
            path,
            json!(ip),
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ));
    }
    if ll_multicast {
        errs.push(FieldError::invalid(
            path,
            json!(ip),
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ));
    }
}

fn valid_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match parse_ip(ip) {
        Some(IpAddr::V4(_)) if !ip.contains(':') => bits <= 32,
        Some(_) => bits <= 128,
        None => false,
    }
}

fn qualified(path: &str, value: &str, errs: &mut Vec<FieldError>) {
    for m in v::qualified_name(value) {
        errs.push(FieldError::invalid(path, json!(value), &m));
    }
}

/// Upstream's `ValidateService`.
fn service(svc: &Value, errs: &mut Vec<FieldError>) {
    let spec = spec(svc);
    let ty = svc_type(svc);
    let annotations = svc.pointer("/metadata/annotations");
    let annotation = |k: &str| annotations.and_then(|a| a.get(k)).and_then(Value::as_str);
    if let (Some(mode), Some(hints)) = (annotation(TOPOLOGY_MODE), annotation(TOPOLOGY_HINTS)) {
        if mode != hints {
            errs.push(FieldError::invalid(
                &format!("metadata.annotations[{TOPOLOGY_MODE}]"),
                json!(mode),
                &format!("must match annotations[{TOPOLOGY_HINTS}] when both are specified"),
            ));
        }
    }
    let headless = is_headless(svc);
    let ports = ports(svc);
    if ports.is_empty() && !headless && ty != EXTERNAL_NAME {
        errs.push(FieldError::required("spec.ports", ""));
    }
    match ty {
        LOAD_BALANCER | NODE_PORT if headless => errs.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            json!(NONE),
            &format!("may not be set to 'None' for {ty} services"),
        )),
        EXTERNAL_NAME => {
            for (key, set) in [
                ("clusterIPs", !cluster_ips(svc).is_empty()),
                ("ipFamilies", !ip_families(svc).is_empty()),
                ("ipFamilyPolicy", ip_family_policy(svc).is_some()),
            ] {
                if set {
                    errs.push(FieldError::forbidden(
                        &format!("spec.{key}"),
                        "may not be set for ExternalName services",
                    ));
                }
            }
            // A CNAME may end in a dot to mark it fully qualified.
            let cname = str_field(spec, "externalName");
            let cname = cname.strip_suffix('.').unwrap_or(cname);
            if cname.is_empty() {
                errs.push(FieldError::required("spec.externalName", ""));
            } else {
                for m in v::dns1123_subdomain(cname) {
                    errs.push(FieldError::invalid("spec.externalName", json!(cname), &m));
                }
            }
        }
        _ => {}
    }
    let mut names: Vec<&str> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        service_port(
            p,
            ports.len() > 1,
            &mut names,
            &format!("spec.ports[{i}]"),
            errs,
        );
    }
    if let Some(sel) = spec.get("selector").and_then(Value::as_object) {
        for (k, val) in sel {
            for m in v::qualified_name(k) {
                errs.push(FieldError::invalid("spec.selector", json!(k), &m));
            }
            let val = val.as_str().unwrap_or_default();
            for m in v::label_value(val) {
                errs.push(FieldError::invalid("spec.selector", json!(val), &m));
            }
        }
    }
    let affinity = str_field(spec, "sessionAffinity");
    if affinity.is_empty() {
        errs.push(FieldError::required("spec.sessionAffinity", ""));
    } else if !AFFINITIES.contains(&affinity) {
        errs.push(FieldError::not_supported(
            "spec.sessionAffinity",
            json!(affinity),
            AFFINITIES,
        ));
    }
    let config = spec.get("sessionAffinityConfig").filter(|c| !c.is_null());
    if affinity == "ClientIP" {
        client_ip_config(config, errs);
    } else if affinity == "None" && config.is_some() {
        errs.push(FieldError::forbidden(
            "spec.sessionAffinityConfig",
            "must not be set when session affinity is None",
        ));
    }
    errs.extend(validate_cluster_ips_related(svc));
    for (i, ip) in str_list(spec, "externalIPs")
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let path = format!("spec.externalIPs[{i}]");
        if check_ip(&path, ip, errs) {
            non_special_ip(&path, ip, errs);
        }
    }
    if ty.is_empty() {
        errs.push(FieldError::required("spec.type", ""));
    } else if !TYPES.contains(&ty) {
        errs.push(FieldError::not_supported("spec.type", json!(ty), TYPES));
    }
    if ty == CLUSTER_IP {
        for (i, p) in ports.iter().enumerate() {
            if int_field(p, "nodePort") != 0 {
                errs.push(FieldError::forbidden(
                    &format!("spec.ports[{i}].nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    let mut node_ports: Vec<(&str, i64)> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let key = (str_field(p, "protocol"), int_field(p, "nodePort"));
        if key.1 == 0 {
            continue;
        }
        if node_ports.contains(&key) {
            errs.push(FieldError::duplicate(
                &format!("spec.ports[{i}].nodePort"),
                json!(key.1),
            ));
        }
        node_ports.push(key);
    }
    let mut seen: Vec<(&str, i64)> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let key = (str_field(p, "protocol"), int_field(p, "port"));
        if seen.contains(&key) {
            errs.push(FieldError::duplicate(
                &format!("spec.ports[{i}]"),
                crate::validation::go_value(format!(
                    "core.ServicePort{{Name:\"\", Protocol:{:?}, AppProtocol:(*string)(nil), Port:{}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
                    key.0, key.1
                )),
            ));
        }
        seen.push(key);
    }
    source_ranges(svc, errs);
    let alloc = spec
        .get("allocateLoadBalancerNodePorts")
        .filter(|a| !a.is_null());
    if alloc.is_some() && ty != LOAD_BALANCER {
        errs.push(FieldError::forbidden(
            "spec.allocateLoadBalancerNodePorts",
            LB_ONLY,
        ));
    }
    if ty == LOAD_BALANCER && alloc.is_none() {
        // Upstream's path really lacks the `spec.` prefix.
        errs.push(FieldError::required("allocateLoadBalancerNodePorts", ""));
    }
    let class = spec.get("loadBalancerClass").and_then(Value::as_str);
    match class {
        Some(c) if ty == LOAD_BALANCER => qualified("spec.loadBalancerClass", c, errs),
        Some(_) => errs.push(FieldError::forbidden("spec.loadBalancerClass", LB_ONLY)),
        None => {}
    }
    traffic_policies(svc, errs);
}

/// Upstream's `validateServicePort`.
fn service_port<'a>(
    p: &'a Value,
    require_name: bool,
    names: &mut Vec<&'a str>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    let name = str_field(p, "name");
    if require_name && name.is_empty() {
        errs.push(FieldError::required(&format!("{path}.name"), ""));
    } else if !name.is_empty() {
        for m in v::dns1123_label(name) {
            errs.push(FieldError::invalid(
                &format!("{path}.name"),
                json!(name),
                &m,
            ));
        }
        if names.contains(&name) {
            errs.push(FieldError::duplicate(&format!("{path}.name"), json!(name)));
        } else {
            names.push(name);
        }
    }
    let port = int_field(p, "port");
    if let Some(m) = port_num(port) {
        errs.push(FieldError::invalid(&format!("{path}.port"), json!(port), m));
    }
    let proto = str_field(p, "protocol");
    if proto.is_empty() {
        errs.push(FieldError::required(&format!("{path}.protocol"), ""));
    } else if !PROTOCOLS.contains(&proto) {
        errs.push(FieldError::not_supported(
            &format!("{path}.protocol"),
            json!(proto),
            PROTOCOLS,
        ));
    }
    let target = format!("{path}.targetPort");
    match p.get("targetPort") {
        Some(Value::String(s)) => {
            for m in port_name(s) {
                errs.push(FieldError::invalid(&target, json!(s), m));
            }
        }
        other => {
            let n = other.and_then(Value::as_i64).unwrap_or(0);
            if let Some(m) = port_num(n) {
                errs.push(FieldError::invalid(&target, json!(n), m));
            }
        }
    }
    if let Some(app) = p.get("appProtocol").and_then(Value::as_str) {
        qualified(&format!("{path}.appProtocol"), app, errs);
    }
}

fn client_ip_config(config: Option<&Value>, errs: &mut Vec<FieldError>) {
    let path = "spec.sessionAffinityConfig";
    let why = "when session affinity type is ClientIP";
    let Some(config) = config else {
        errs.push(FieldError::required(path, why));
        return;
    };
    let Some(client) = config.get("clientIP").filter(|c| !c.is_null()) else {
        errs.push(FieldError::required(&format!("{path}.clientIP"), why));
        return;
    };
    let timeout_path = format!("{path}.clientIP.timeoutSeconds");
    let Some(timeout) = client.get("timeoutSeconds").and_then(Value::as_i64) else {
        errs.push(FieldError::required(&timeout_path, why));
        return;
    };
    if timeout <= 0 || timeout > MAX_AFFINITY_TIMEOUT {
        errs.push(FieldError::invalid(
            &timeout_path,
            json!(timeout),
            &format!("must be greater than 0 and less than {MAX_AFFINITY_TIMEOUT}"),
        ));
    }
}

/// Upstream's `ValidateServiceClusterIPsRelatedFields`, also run before allocation.
pub fn validate_cluster_ips_related(svc: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if svc_type(svc) == EXTERNAL_NAME {
        return errs;
    }
    let ips = cluster_ips(svc);
    let all = || go_cluster_ips(svc);
    if !cluster_ip(svc).is_empty() {
        if ips.is_empty() {
            errs.push(FieldError::required("spec.clusterIPs", ""));
        } else if ips[0] != cluster_ip(svc) {
            errs.push(FieldError::invalid(
                "spec.clusterIPs",
                all(),
                "first value must match `clusterIP`",
            ));
        }
    } else if !ips.is_empty() {
        errs.push(FieldError::invalid(
            "spec.clusterIPs",
            all(),
            "must be empty when `clusterIP` is not specified",
        ));
    }
    let mut seen: Vec<String> = Vec::new();
    for (i, fam) in ip_families(svc).into_iter().enumerate() {
        let path = format!("spec.ipFamilies[{i}]");
        if !FAMILIES.contains(&fam.as_str()) {
            errs.push(FieldError::not_supported(&path, json!(fam), FAMILIES));
        }
        if seen.contains(&fam) {
            errs.push(FieldError::duplicate(&path, json!(fam)));
        }
        seen.push(fam);
    }
    if let Some(policy) = ip_family_policy(svc) {
        if !FAMILY_POLICIES.contains(&policy) {
            errs.push(FieldError::not_supported(
                "spec.ipFamilyPolicy",
                json!(policy),
                FAMILY_POLICIES,
            ));
        }
    }
    let mut invalid_ips = false;
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && ip == NONE {
            if ips.len() > 1 {
                invalid_ips = true;
                errs.push(FieldError::invalid(
                    "spec.clusterIPs",
                    all(),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        invalid_ips |= !check_ip(&format!("spec.clusterIPs[{i}]"), ip, &mut errs);
    }
    if ips.len() > 2 {
        errs.push(FieldError::invalid(
            "spec.clusterIPs",
            all(),
            "may only hold up to 2 values",
        ));
    }
    if invalid_ips {
        return errs;
    }
    if ips.len() > 1 {
        let fams: Vec<_> = ips.iter().map(|ip| family_of(ip)).collect();
        if ips.len() != 2 || fams[0] == fams[1] {
            errs.push(FieldError::invalid(
                "spec.clusterIPs",
                all(),
                "may specify no more than one IP for each IP family",
            ));
        }
    }
    if !is_headless(svc) {
        for (i, (ip, fam)) in ips.iter().zip(ip_families(svc)).enumerate() {
            let actual = family_of(ip).unwrap_or("IPv4");
            if fam == "IPv4" && actual == "IPv6" || fam == "IPv6" && actual != "IPv6" {
                errs.push(FieldError::invalid(
                    &format!("spec.clusterIPs[{i}]"),
                    json!(ip),
                    &format!("expected an {fam} value as indicated by `ipFamilies[{i}]`"),
                ));
            }
        }
    }
    errs
}

fn source_ranges(svc: &Value, errs: &mut Vec<FieldError>) {
    let ranges = str_list(spec(svc), "loadBalancerSourceRanges").unwrap_or_default();
    let not_lb = svc_type(svc) != LOAD_BALANCER;
    if !ranges.is_empty() {
        // Upstream's path really is capitalised.
        let path = "spec.LoadBalancerSourceRanges";
        if not_lb {
            errs.push(FieldError::forbidden(path, LB_ONLY));
        }
        for (i, r) in ranges.iter().enumerate() {
            // Historically space-padded values are allowed.
            let r = r.trim();
            if !valid_cidr(r) {
                errs.push(FieldError::invalid(
                    &format!("{path}[{i}]"),
                    json!(r),
                    BAD_CIDR,
                ));
            }
        }
        return;
    }
    let Some(val) = svc
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(SOURCE_RANGES))
        .and_then(Value::as_str)
    else {
        return;
    };
    let path = format!("metadata.annotations[{SOURCE_RANGES}]");
    if not_lb {
        errs.push(FieldError::forbidden(&path, LB_ONLY));
    }
    let val = val.trim();
    if !val.is_empty() {
        for r in val.split(',').map(str::trim) {
            if !valid_cidr(r) {
                errs.push(FieldError::invalid(&path, json!(r), BAD_CIDR));
            }
        }
    }
}

fn traffic_policies(svc: &Value, errs: &mut Vec<FieldError>) {
    let spec = spec(svc);
    let etp = str_field(spec, "externalTrafficPolicy");
    if !externally_accessible(svc) {
        if !etp.is_empty() {
            errs.push(FieldError::invalid(
                "spec.externalTrafficPolicy",
                json!(etp),
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        errs.push(FieldError::required("spec.externalTrafficPolicy", ""));
    } else if !TRAFFIC_POLICIES.contains(&etp) {
        errs.push(FieldError::not_supported(
            "spec.externalTrafficPolicy",
            json!(etp),
            TRAFFIC_POLICIES,
        ));
    }
    let hc = int_field(spec, "healthCheckNodePort");
    if !needs_health_check(svc) {
        if hc != 0 {
            errs.push(FieldError::invalid(
                "spec.healthCheckNodePort",
                json!(hc),
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        }
    } else if hc == 0 {
        // Allocated after validation when the client left it out.
    } else if let Some(m) = port_num(hc) {
        errs.push(FieldError::invalid(
            "spec.healthCheckNodePort",
            json!(hc),
            m,
        ));
    }
    match spec.get("internalTrafficPolicy").and_then(Value::as_str) {
        None if matches!(svc_type(svc), NODE_PORT | LOAD_BALANCER | CLUSTER_IP) => {
            errs.push(FieldError::required("spec.internalTrafficPolicy", ""));
        }
        Some(itp) if !TRAFFIC_POLICIES.contains(&itp) => errs.push(FieldError::not_supported(
            "spec.internalTrafficPolicy",
            json!(itp),
            TRAFFIC_POLICIES,
        )),
        _ => {}
    }
    if let Some(td) = spec.get("trafficDistribution").and_then(Value::as_str) {
        if td != "PreferClose" {
            errs.push(FieldError::not_supported(
                "spec.trafficDistribution",
                json!(td),
                &["PreferClose"],
            ));
        }
    }
}

fn upgrade_downgrade_cluster_ips(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    if svc_type(new) == EXTERNAL_NAME || svc_type(old) == EXTERNAL_NAME {
        return;
    }
    if is_headless(old) && is_headless(new) {
        return;
    }
    let (o, n) = (cluster_ips(old), cluster_ips(new));
    let value = || go_cluster_ips(new);
    let changed = "may not change once set";
    if o.len() == n.len() {
        for (i, ip) in o.iter().enumerate() {
            if *ip != n[i] {
                errs.push(FieldError::invalid(
                    &format!("spec.clusterIPs[{i}]"),
                    value(),
                    changed,
                ));
            }
        }
    } else if o.len() > n.len() {
        if n.is_empty() {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                value(),
                "primary clusterIP can not be unset",
            ));
        }
        if !o.is_empty() && !n.is_empty() && n[0] != o[0] {
            errs.push(FieldError::invalid("spec.clusterIPs[0]", value(), changed));
        }
        if n.len() == 1 && ip_family_policy(new) != Some("SingleStack") {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                ip_family_policy(new).map_or(Value::Null, |p| json!(p)),
                "must be set to 'SingleStack' when releasing the secondary clusterIP",
            ));
        }
    } else if !o.is_empty() && n[0] != o[0] {
        errs.push(FieldError::invalid("spec.clusterIPs[0]", value(), changed));
    }
}

fn upgrade_downgrade_families(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    if svc_type(new) == EXTERNAL_NAME || svc_type(old) == EXTERNAL_NAME {
        return;
    }
    if is_headless(old) || is_headless(new) {
        return;
    }
    let (o, n) = (ip_families(old), ip_families(new));
    let families = str_list(spec(new), "ipFamilies");
    let changed = "may not change once set";
    if o.len() == n.len() {
        for (i, fam) in o.iter().enumerate() {
            if *fam != n[i] {
                errs.push(FieldError::invalid(
                    "spec.ipFamilies[0]",
                    go_slice("[]core.IPFamily", families.as_deref()),
                    changed,
                ));
            }
        }
    } else if o.len() > n.len() {
        if cluster_ips(new).is_empty() {
            errs.push(FieldError::invalid(
                "spec.ipFamilies[0]",
                go_slice("[]core.IPFamily", families.as_deref()),
                "primary ipFamily can not be unset",
            ));
        }
        // Upstream reports clusterIPs as the value of the next two errors.
        if !n.is_empty() && n[0] != o[0] {
            errs.push(FieldError::invalid(
                "spec.ipFamilies[0]",
                go_cluster_ips(new),
                changed,
            ));
        }
        if n.len() == 1 && ip_family_policy(new) != Some("SingleStack") {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                ip_family_policy(new).map_or(Value::Null, |p| json!(p)),
                "must be set to 'SingleStack' when releasing the secondary ipFamily",
            ));
        }
    } else if !o.is_empty() && !n.is_empty() && n[0] != o[0] {
        errs.push(FieldError::invalid(
            "spec.ipFamilies[0]",
            go_cluster_ips(new),
            changed,
        ));
    }
}

fn load_balancer_class_update(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    if svc_type(old) != LOAD_BALANCER || svc_type(new) != LOAD_BALANCER {
        return;
    }
    let class = |s: &Value| {
        spec(s)
            .get("loadBalancerClass")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    if class(old) != class(new) {
        errs.push(FieldError::invalid(
            "spec.loadBalancerClass",
            class(new).map_or(Value::Null, Value::String),
            "may not change once set",
        ));
    }
}

/// Upstream's `ValidateLoadBalancerStatus` (with `AllowServiceLBStatusOnNonLB` off).
fn lb_status(svc: &Value, errs: &mut Vec<FieldError>) {
    let ingress = svc
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let path = "status.loadBalancer.ingress";
    if svc_type(svc) != LOAD_BALANCER && !ingress.is_empty() {
        errs.push(FieldError::forbidden(
            path,
            "may only be used when `spec.type` is 'LoadBalancer'",
        ));
        return;
    }
    for (i, ing) in ingress.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let ip = str_field(ing, "ip");
        if !ip.is_empty() {
            check_ip(&format!("{p}.ip"), ip, errs);
        }
        let mode = ing.get("ipMode").and_then(Value::as_str);
        match mode {
            None if !ip.is_empty() => errs.push(FieldError::required(
                &format!("{p}.ipMode"),
                "must be specified when `ip` is set",
            )),
            Some(_) if ip.is_empty() => errs.push(FieldError::forbidden(
                &format!("{p}.ipMode"),
                "may not be specified when `ip` is not set",
            )),
            Some(m) if !IP_MODES.contains(&m) => errs.push(FieldError::not_supported(
                &format!("{p}.ipMode"),
                json!(m),
                IP_MODES,
            )),
            _ => {}
        }
        let host = str_field(ing, "hostname");
        if !host.is_empty() {
            for m in v::dns1123_subdomain(host) {
                errs.push(FieldError::invalid(
                    &format!("{p}.hostname"),
                    json!(host),
                    &m,
                ));
            }
            if parse_ip(host).is_some() {
                errs.push(FieldError::invalid(
                    &format!("{p}.hostname"),
                    json!(host),
                    "must be a DNS name, not an IP address",
                ));
            }
        }
    }
}
