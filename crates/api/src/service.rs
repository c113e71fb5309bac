//! Services as upstream's API server shapes them before they are stored:
//! defaulting (`SetDefaults_Service`), the registry's preparation of creates and
//! updates (clusterIP/clusterIPs kept in step, allocated values a client left out
//! patched back in, fields a type change makes meaningless dropped), IP family
//! initialisation for a single-stack IPv4 cluster, and validation ([`validate`]).
//!
//! Pure: the allocators that hand out addresses and ports live in the API server,
//! which calls [`prepare`] and [`init_ip_families`] before it allocates.

use std::net::{IpAddr, Ipv4Addr};

use serde_json::{json, Map, Value};

use crate::validation::FieldError;

mod validate;

#[cfg(test)]
mod tests;

pub use validate::{validate, validate_cluster_ips_related};

pub const CLUSTER_IP: &str = "ClusterIP";
pub const NODE_PORT: &str = "NodePort";
pub const LOAD_BALANCER: &str = "LoadBalancer";
pub const EXTERNAL_NAME: &str = "ExternalName";
/// `spec.clusterIP` of a headless service.
pub const NONE: &str = "None";
/// Upstream's `DefaultClientIPServiceAffinitySeconds` (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT: i64 = 10800;
/// Upstream's `MaxClientIPServiceAffinitySeconds` (1 day).
pub const MAX_AFFINITY_TIMEOUT: i64 = 86400;

// ---- reading a Service -----------------------------------------------------------

static NULL: Value = Value::Null;

/// `spec`, or `null` when the object has none.
pub fn spec(obj: &Value) -> &Value {
    obj.get("spec").unwrap_or(&NULL)
}

/// A string field; JSON `null` and absence read as `""`, as Go's zero value.
pub fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// An integer field; absent, `null` or not a number read as 0, as Go's zero value.
pub fn int_field(v: &Value, key: &str) -> i64 {
    v.get(key).and_then(Value::as_i64).unwrap_or(0)
}

/// A list of strings; `None` for absent or `null` (Go's nil slice).
pub fn str_list(v: &Value, key: &str) -> Option<Vec<String>> {
    v.get(key).and_then(Value::as_array).map(|a| {
        a.iter()
            .map(|s| s.as_str().unwrap_or("").to_string())
            .collect()
    })
}

pub fn svc_type(obj: &Value) -> &str {
    str_field(spec(obj), "type")
}

pub fn cluster_ip(obj: &Value) -> &str {
    str_field(spec(obj), "clusterIP")
}

pub fn cluster_ips(obj: &Value) -> Vec<String> {
    str_list(spec(obj), "clusterIPs").unwrap_or_default()
}

pub fn ip_families(obj: &Value) -> Vec<String> {
    str_list(spec(obj), "ipFamilies").unwrap_or_default()
}

/// `spec.ipFamilyPolicy`; `None` when unset (a nil pointer upstream).
pub fn ip_family_policy(obj: &Value) -> Option<&str> {
    spec(obj).get("ipFamilyPolicy").and_then(Value::as_str)
}

pub fn ports(obj: &Value) -> &[Value] {
    spec(obj)
        .get("ports")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Upstream's `isHeadlessService`: exactly one clusterIP and it is `None`.
pub fn is_headless(obj: &Value) -> bool {
    cluster_ips(obj) == [NONE]
}

pub fn needs_cluster_ip(obj: &Value) -> bool {
    svc_type(obj) != EXTERNAL_NAME
}

pub fn needs_node_port(obj: &Value) -> bool {
    matches!(svc_type(obj), NODE_PORT | LOAD_BALANCER)
}

/// Upstream's `ExternallyAccessible`: reachable from outside through a node or an
/// external address, which is what makes `externalTrafficPolicy` meaningful.
pub fn externally_accessible(obj: &Value) -> bool {
    match svc_type(obj) {
        NODE_PORT | LOAD_BALANCER => true,
        CLUSTER_IP => str_list(spec(obj), "externalIPs").is_some_and(|l| !l.is_empty()),
        _ => false,
    }
}

/// Upstream's `NeedsHealthCheck`: a LoadBalancer that keeps traffic node-local.
pub fn needs_health_check(obj: &Value) -> bool {
    svc_type(obj) == LOAD_BALANCER && str_field(spec(obj), "externalTrafficPolicy") == "Local"
}

/// Whether ports without a requested nodePort get one (`shouldAllocateNodePorts`).
pub fn should_allocate_node_ports(obj: &Value) -> bool {
    match svc_type(obj) {
        NODE_PORT => true,
        LOAD_BALANCER => spec(obj)
            .get("allocateLoadBalancerNodePorts")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        _ => false,
    }
}

/// Go's `netutils.ParseIPSloppy`: also takes IPv4 octets with leading zeros.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for o in &mut octets {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *o = p.parse().ok()?;
    }
    parts
        .next()
        .is_none()
        .then(|| IpAddr::V4(Ipv4Addr::from(octets)))
}

/// The IP family of an address as upstream names it (an IPv4-mapped IPv6 address
/// counts as IPv4, as Go's `To4` does).
pub fn family_of(ip: &str) -> Option<&'static str> {
    match parse_ip(ip)? {
        IpAddr::V4(_) => Some("IPv4"),
        IpAddr::V6(_) => Some("IPv6"),
    }
}

// ---- Go's rendering of typed values in messages --------------------------------

fn go_quoted(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `%#v` of a `[]string` (nil slices print as `[]string(nil)`).
pub fn go_strings(items: Option<&[String]>) -> Value {
    go_slice("[]string", items)
}

/// `%#v` of a typed string slice such as `[]core.IPFamily`.
pub fn go_slice(type_name: &str, items: Option<&[String]>) -> Value {
    crate::validation::go_value(match items {
        None => format!("{type_name}(nil)"),
        Some(items) => format!("{type_name}{{{}}}", go_quoted(items)),
    })
}

/// The clusterIPs exactly as the client sent them (nil vs empty matters to Go).
pub fn go_cluster_ips(obj: &Value) -> Value {
    go_strings(str_list(spec(obj), "clusterIPs").as_deref())
}

// ---- defaulting ------------------------------------------------------------------

fn unset(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Number(n)) => n.as_i64() == Some(0),
        _ => false,
    }
}

fn default_str(m: &mut Map<String, Value>, key: &str, value: &str) {
    if unset(m.get(key)) {
        m.insert(key.to_string(), json!(value));
    }
}

/// The `spec` object, made one if it is missing or `null`.
fn spec_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let o = obj.as_object_mut()?;
    let spec = o.entry("spec").or_insert_with(|| json!({}));
    if spec.is_null() {
        *spec = json!({});
    }
    spec.as_object_mut()
}

/// Upstream's `SetDefaults_Service`.
pub fn default(obj: &mut Value) {
    let Some(spec) = spec_mut(obj) else {
        return;
    };
    default_str(spec, "sessionAffinity", "None");
    match spec.get("sessionAffinity").and_then(Value::as_str) {
        Some("None") => {
            spec.remove("sessionAffinityConfig");
        }
        Some("ClientIP") => {
            let timeout = spec
                .get("sessionAffinityConfig")
                .and_then(|c| c.pointer("/clientIP/timeoutSeconds"));
            if unset_ptr(timeout) {
                spec.insert(
                    "sessionAffinityConfig".into(),
                    json!({"clientIP": {"timeoutSeconds": DEFAULT_AFFINITY_TIMEOUT}}),
                );
            }
        }
        _ => {}
    }
    default_str(spec, "type", CLUSTER_IP);
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default_str(p, "protocol", "TCP");
            // An integer 0 or an empty name both mean "the same as port".
            if unset(p.get("targetPort")) {
                let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                p.insert("targetPort".into(), json!(port));
            }
        }
    }
    let svc_type = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let view = json!({"spec": {"type": svc_type, "externalIPs": spec.get("externalIPs")}});
    if externally_accessible(&view) {
        default_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if matches!(svc_type.as_str(), NODE_PORT | LOAD_BALANCER | CLUSTER_IP)
        && spec.get("internalTrafficPolicy").is_none_or(Value::is_null)
    {
        spec.insert("internalTrafficPolicy".into(), json!("Cluster"));
    }
    if svc_type == LOAD_BALANCER {
        if spec
            .get("allocateLoadBalancerNodePorts")
            .is_none_or(Value::is_null)
        {
            spec.insert("allocateLoadBalancerNodePorts".into(), json!(true));
        }
        let ingress = obj
            .pointer_mut("/status/loadBalancer/ingress")
            .and_then(Value::as_array_mut);
        for ing in ingress.into_iter().flatten() {
            let has_ip = !str_field(ing, "ip").is_empty();
            if let Some(m) = ing.as_object_mut() {
                if has_ip && m.get("ipMode").is_none_or(Value::is_null) {
                    m.insert("ipMode".into(), json!("VIP"));
                }
            }
        }
    }
}

/// A pointer field is unset when absent or `null` (0 is a value for pointers).
fn unset_ptr(v: Option<&Value>) -> bool {
    v.is_none_or(Value::is_null)
}

// ---- the registry's preparation of writes ------------------------------------------

fn set_spec(obj: &mut Value, key: &str, value: Option<Value>) {
    if let Some(spec) = spec_mut(obj) {
        match value {
            Some(v) => spec.insert(key.to_string(), v),
            None => spec.remove(key),
        };
    }
}

/// A status-only write: the spec is what is stored, only the status differs.
pub fn is_status_write(new: &Value, old: &Value) -> bool {
    spec(new) == spec(old) && new.get("status") != old.get("status")
}

/// What upstream's strategy and storage do to a Service before validating and
/// allocating: on create, fill `clusterIPs` from `clusterIP`; on update, patch back
/// allocated values the client left out, keep `clusterIP`/`clusterIPs` in step and
/// drop fields a type change made meaningless. Idempotent.
pub fn prepare(new: &mut Value, old: Option<&Value>) {
    let Some(old) = old else {
        if !cluster_ip(new).is_empty() && cluster_ips(new).is_empty() {
            let ip = cluster_ip(new).to_string();
            set_spec(new, "clusterIPs", Some(json!([ip])));
        }
        return;
    };
    if is_status_write(new, old) {
        return;
    }
    patch_allocated_values(new, old);
    normalize_cluster_ips(new, old);
    drop_type_dependent_fields(new, old);
    if svc_type(new) == EXTERNAL_NAME {
        // Upstream drops this on read for ExternalName services; skiff stores it so.
        set_spec(new, "internalTrafficPolicy", None);
    }
}

fn node_port_of(p: &Value) -> i64 {
    int_field(p, "nodePort")
}

fn patch_allocated_values(new: &mut Value, old: &Value) {
    if needs_cluster_ip(old) && needs_cluster_ip(new) {
        if cluster_ip(new).is_empty() && !cluster_ip(old).is_empty() {
            set_spec(new, "clusterIP", Some(json!(cluster_ip(old))));
        }
        if cluster_ips(new).is_empty() && !cluster_ips(old).is_empty() {
            set_spec(new, "clusterIPs", Some(json!(cluster_ips(old))));
        }
    }
    if needs_node_port(old) && needs_node_port(new) {
        let used_by = |o: &Value| -> Vec<i64> {
            ports(o)
                .iter()
                .map(node_port_of)
                .filter(|n| *n != 0)
                .collect()
        };
        let new_used = used_by(new);
        let used: Vec<i64> = used_by(old)
            .into_iter()
            .filter(|n| new_used.contains(n))
            .collect();
        let by_name: Vec<(String, i64)> = ports(old)
            .iter()
            .map(|p| (str_field(p, "name").to_string(), node_port_of(p)))
            .collect();
        if let Some(list) = spec_mut(new)
            .and_then(|s| s.get_mut("ports"))
            .and_then(Value::as_array_mut)
        {
            for p in list.iter_mut() {
                if node_port_of(p) != 0 {
                    continue;
                }
                let name = str_field(p, "name");
                // Go's map lookup: the last old port of that name wins.
                let old_val = by_name
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map_or(0, |(_, v)| *v);
                if old_val != 0 && !used.contains(&old_val) {
                    if let Some(m) = p.as_object_mut() {
                        m.insert("nodePort".into(), json!(old_val));
                    }
                }
            }
        }
    }
    if needs_health_check(old)
        && needs_health_check(new)
        && int_field(spec(new), "healthCheckNodePort") == 0
    {
        let hc = int_field(spec(old), "healthCheckNodePort");
        if hc != 0 {
            set_spec(new, "healthCheckNodePort", Some(json!(hc)));
        }
    }
}

fn same_cluster_ips(a: &Value, b: &Value) -> bool {
    cluster_ip(a) == cluster_ip(b) && cluster_ips(a) == cluster_ips(b)
}

fn normalize_cluster_ips(new: &mut Value, old: &Value) {
    if !cluster_ips(old).is_empty()
        && cluster_ips(new).is_empty()
        && cluster_ip(old) == cluster_ip(new)
    {
        // An old client patched something else and did not send clusterIPs.
        set_spec(new, "clusterIPs", Some(json!(cluster_ips(old))));
    }
    if cluster_ip(old) != cluster_ip(new) && same_cluster_ips(old, new) {
        // Upstream compares both fields here, so this never fires; kept for parity.
        if !cluster_ip(old).is_empty() && cluster_ip(new).is_empty() {
            set_spec(new, "clusterIPs", None);
        } else {
            let ip = cluster_ip(new).to_string();
            set_spec(new, "clusterIPs", Some(json!([ip])));
        }
    }
}

fn drop_type_dependent_fields(new: &mut Value, old: &Value) {
    let o = spec(old).clone();
    if needs_cluster_ip(old) && !needs_cluster_ip(new) {
        if same_cluster_ips(old, new) {
            // Released after the write succeeds.
            set_spec(new, "clusterIP", None);
            set_spec(new, "clusterIPs", None);
        }
        if ip_families(old) == ip_families(new) {
            set_spec(new, "ipFamilies", None);
        }
        if o.get("ipFamilyPolicy") == spec(new).get("ipFamilyPolicy") {
            set_spec(new, "ipFamilyPolicy", None);
        }
    }
    if needs_node_port(old) && !needs_node_port(new) {
        let same = ports(old).len() == ports(new).len()
            && ports(old)
                .iter()
                .zip(ports(new))
                .all(|(a, b)| node_port_of(a) == node_port_of(b));
        if same {
            if let Some(list) = spec_mut(new)
                .and_then(|s| s.get_mut("ports"))
                .and_then(Value::as_array_mut)
            {
                for p in list.iter_mut().filter_map(Value::as_object_mut) {
                    p.remove("nodePort");
                }
            }
        }
    }
    if needs_health_check(old)
        && !needs_health_check(new)
        && int_field(&o, "healthCheckNodePort") == int_field(spec(new), "healthCheckNodePort")
    {
        set_spec(new, "healthCheckNodePort", None);
    }
    let was_lb = svc_type(old) == LOAD_BALANCER;
    let is_lb = svc_type(new) == LOAD_BALANCER;
    if was_lb && !is_lb {
        let key = "allocateLoadBalancerNodePorts";
        let (a, b) = (o.get(key), spec(new).get(key));
        if a.is_some_and(|v| !v.is_null()) && a == b {
            set_spec(new, key, None);
        }
        // `canSetLoadBalancerClass` is true only for LoadBalancer services.
        if o.get("loadBalancerClass") == spec(new).get("loadBalancerClass") {
            set_spec(new, "loadBalancerClass", None);
        }
    }
    if externally_accessible(old)
        && !externally_accessible(new)
        && str_field(&o, "externalTrafficPolicy") == str_field(spec(new), "externalTrafficPolicy")
    {
        set_spec(new, "externalTrafficPolicy", None);
    }
    if !is_lb {
        // The load balancer is gone with the type; its status goes too.
        if let Some(o) = new.as_object_mut() {
            o.insert("status".into(), json!({"loadBalancer": {}}));
        }
    }
}

// ---- IP families ---------------------------------------------------------------

fn policy_value(obj: &Value) -> Value {
    ip_family_policy(obj).map_or(Value::Null, |p| json!(p))
}

/// Upstream's `initIPFamilyFields` for a cluster whose only service family is
/// IPv4: fills `ipFamilyPolicy` and `ipFamilies`, or says why the request cannot
/// be met here. Runs after validation, before allocation.
pub fn init_ip_families(new: &mut Value, old: Option<&Value>) -> Vec<FieldError> {
    if svc_type(new) == EXTERNAL_NAME {
        return Vec::new();
    }
    if let Some(old) = old {
        let dual = Some("PreferDualStack");
        if ip_family_policy(new) == dual
            && ip_family_policy(old) == dual
            && svc_type(old) == svc_type(new)
            && same_cluster_ips(old, new)
            && ip_families(old) == ip_families(new)
        {
            return Vec::new();
        }
    }
    if ip_family_policy(new).is_none() {
        let policy = match old.and_then(ip_family_policy) {
            Some(p) => p.to_string(),
            None if cluster_ip(new) == NONE && selector_empty(new) => "RequireDualStack".into(),
            None => "SingleStack".into(),
        };
        set_spec(new, "ipFamilyPolicy", Some(json!(policy)));
    }
    let errs = validate_cluster_ips_related(new);
    if !errs.is_empty() {
        return errs;
    }
    let mut errs = Vec::new();
    let policy = ip_family_policy(new).unwrap_or_default().to_string();
    if let Some(old) = old {
        if policy == "SingleStack" {
            if same_cluster_ips(old, new) && cluster_ips(new).len() > 1 {
                let first = cluster_ips(new)[0].clone();
                set_spec(new, "clusterIPs", Some(json!([first])));
            }
            if ip_families(old) == ip_families(new) && ip_families(new).len() > 1 {
                let first = ip_families(new)[0].clone();
                set_spec(new, "ipFamilies", Some(json!([first])));
            }
        } else {
            if cluster_ips(new).len() < cluster_ips(old).len() {
                errs.push(FieldError::invalid(
                    "spec.ipFamilyPolicy",
                    policy_value(new),
                    "must be 'SingleStack' to release the secondary cluster IP",
                ));
            }
            if ip_families(new).len() < ip_families(old).len() {
                errs.push(FieldError::invalid(
                    "spec.ipFamilyPolicy",
                    policy_value(new),
                    "must be 'SingleStack' to release the secondary IP family",
                ));
            }
        }
    }
    if policy == "SingleStack" {
        if cluster_ips(new).len() == 2 {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                policy_value(new),
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
            ));
        }
        if ip_families(new).len() == 2 {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                policy_value(new),
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
            ));
        }
    }
    let mut families = ip_families(new);
    for (i, ip) in cluster_ips(new).iter().enumerate() {
        if ip == NONE {
            break;
        }
        let fam = family_of(ip).unwrap_or("IPv4");
        if i >= families.len() {
            if fam == "IPv4" {
                families.push(fam.to_string());
            } else {
                errs.push(FieldError::invalid(
                    &format!("spec.clusterIPs[{i}]"),
                    go_cluster_ips(new),
                    &format!("{fam} is not configured on this cluster"),
                ));
            }
        }
    }
    set_spec(new, "ipFamilies", Some(json!(families)));
    if !errs.is_empty() {
        return errs;
    }
    if cluster_ip(new) == NONE && selector_empty(new) {
        // Headless and selectorless: endpoints may be of either family, so this is
        // allowed to name both even on a single-stack cluster.
        if families.is_empty() {
            families.push("IPv4".into());
        }
        if families.len() < 2 && policy != "SingleStack" {
            let other = if families[0] == "IPv4" {
                "IPv6"
            } else {
                "IPv4"
            };
            families.push(other.into());
        }
        set_spec(new, "ipFamilies", Some(json!(families)));
        return Vec::new();
    }
    if policy == "RequireDualStack" {
        errs.push(FieldError::invalid(
            "spec.ipFamilyPolicy",
            policy_value(new),
            "this cluster is not configured for dual-stack services",
        ));
    }
    for (i, fam) in families.iter().enumerate() {
        if fam != "IPv4" {
            errs.push(FieldError::invalid(
                &format!("spec.ipFamilies[{i}]"),
                json!(fam),
                "not configured on this cluster",
            ));
        }
    }
    if !errs.is_empty() {
        return errs;
    }
    if families.is_empty() {
        set_spec(new, "ipFamilies", Some(json!(["IPv4"])));
    }
    Vec::new()
}

fn selector_empty(obj: &Value) -> bool {
    spec(obj)
        .get("selector")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty)
}
