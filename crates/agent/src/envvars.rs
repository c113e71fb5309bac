//! A container's environment as kubelet builds it: service variables for the
//! services that exist when it starts, then the container's own `env` (later wins),
//! with `$(VAR)` references expanded.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, Service};

/// The docker-link style variables of one service.
fn service_vars(svc: &Service, out: &mut Vec<(String, String)>) {
    let Some(spec) = &svc.spec else { return };
    let Some(ip) = spec.cluster_ip.as_deref() else {
        return;
    };
    if ip.is_empty() || ip == "None" {
        return;
    }
    let ports = spec.ports.clone().unwrap_or_default();
    let Some(first) = ports.first() else { return };
    let name = svc
        .metadata
        .name
        .as_deref()
        .unwrap_or_default()
        .to_ascii_uppercase()
        .replace('-', "_");
    out.push((format!("{name}_SERVICE_HOST"), ip.to_string()));
    out.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
    for p in &ports {
        if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
            let pn = pn.to_ascii_uppercase().replace('-', "_");
            out.push((format!("{name}_SERVICE_PORT_{pn}"), p.port.to_string()));
        }
    }
    let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
        p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase()
    };
    out.push((
        format!("{name}_PORT"),
        format!("{}://{ip}:{}", proto(first), first.port),
    ));
    for p in &ports {
        let pr = proto(p);
        let prefix = format!("{name}_PORT_{}_{}", p.port, pr.to_ascii_uppercase());
        out.push((prefix.clone(), format!("{pr}://{ip}:{}", p.port)));
        out.push((format!("{prefix}_PROTO"), pr));
        out.push((format!("{prefix}_PORT"), p.port.to_string()));
        out.push((format!("{prefix}_ADDR"), ip.to_string()));
    }
}

/// Service variables for a pod: every service of its namespace when
/// `enableServiceLinks` (default true), plus `default/kubernetes` always.
pub fn service_env(pod: &Pod, services: &[Service]) -> Vec<(String, String)> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let mut chosen: BTreeMap<String, &Service> = BTreeMap::new();
    for s in services {
        let sns = s.metadata.namespace.as_deref().unwrap_or("default");
        let name = s.metadata.name.clone().unwrap_or_default();
        if sns == ns && links {
            chosen.insert(name, s);
        } else if sns == "default" && name == "kubernetes" {
            chosen.entry(name).or_insert(s);
        }
    }
    let mut out = Vec::new();
    for s in chosen.values() {
        service_vars(s, &mut out);
    }
    out
}

/// What `valueFrom.fieldRef` can read.
pub struct PodFacts<'a> {
    pub pod: &'a Pod,
    pub pod_ip: String,
    pub host_ip: String,
    pub node_name: String,
}

fn label_key(path: &str, prefix: &str) -> Option<String> {
    let rest = path.strip_prefix(prefix)?.strip_suffix("']")?;
    Some(rest.to_string())
}

pub fn field_ref(path: &str, f: &PodFacts<'_>) -> Option<String> {
    let m = &f.pod.metadata;
    let spec = f.pod.spec.as_ref();
    Some(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "spec.nodeName" => f.node_name.clone(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        "status.podIP" | "status.podIPs" => f.pod_ip.clone(),
        "status.hostIP" | "status.hostIPs" => f.host_ip.clone(),
        p => {
            if let Some(k) = label_key(p, "metadata.labels['") {
                m.labels.as_ref()?.get(&k)?.clone()
            } else if let Some(k) = label_key(p, "metadata.annotations['") {
                m.annotations.as_ref()?.get(&k)?.clone()
            } else {
                return None;
            }
        }
    })
}

/// `$(VAR)` expansion as in upstream's `expansion` package: a known variable is
/// replaced, `$$` is an escaped `$`, anything else is left as written.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut chars = input.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some((_, '$')) => {
                chars.next();
                out.push('$');
            }
            Some((_, '(')) => {
                let rest = &input[i + 2..];
                match rest.find(')') {
                    Some(end) => {
                        let name = &rest[..end];
                        match lookup(name) {
                            Some(v) => out.push_str(&v),
                            None => out.push_str(&format!("$({name})")),
                        }
                        // Skip '(' name ')'.
                        for _ in 0..end + 2 {
                            chars.next();
                        }
                    }
                    None => out.push('$'),
                }
            }
            _ => out.push('$'),
        }
    }
    out
}

/// The full environment of a container (ordered; a later entry of the same name
/// replaces an earlier one), and any error reading a reference.
/// ConfigMaps and Secrets of the pod's namespace that env refers to, by name
/// (absent: it does not exist). Secret values are decoded.
#[derive(Debug, Default, Clone)]
pub struct Refs {
    pub config_maps: BTreeMap<String, Option<BTreeMap<String, String>>>,
    pub secrets: BTreeMap<String, Option<BTreeMap<String, String>>>,
}

impl Refs {
    /// Names a container's env refers to: (config maps, secrets).
    pub fn wanted(c: &Container) -> (Vec<String>, Vec<String>) {
        let (mut cms, mut secrets) = (Vec::new(), Vec::new());
        for e in c.env.iter().flatten() {
            if let Some(from) = &e.value_from {
                if let Some(r) = &from.config_map_key_ref {
                    cms.push(r.name.clone());
                }
                if let Some(r) = &from.secret_key_ref {
                    secrets.push(r.name.clone());
                }
            }
        }
        for f in c.env_from.iter().flatten() {
            if let Some(r) = &f.config_map_ref {
                cms.push(r.name.clone());
            }
            if let Some(r) = &f.secret_ref {
                secrets.push(r.name.clone());
            }
        }
        cms.sort();
        cms.dedup();
        secrets.sort();
        secrets.dedup();
        (cms, secrets)
    }
}

/// A key `envFrom` can turn into a variable (upstream: a C identifier-ish name).
fn env_name_ok(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

fn lookup_ref(
    kind: &str,
    map: &BTreeMap<String, Option<BTreeMap<String, String>>>,
    ns: &str,
    name: &str,
    key: &str,
    optional: bool,
) -> Result<Option<String>, String> {
    match map.get(name).cloned().flatten() {
        None if optional => Ok(None),
        None => Err(format!(
            "{} \"{name}\" not found",
            kind.to_ascii_lowercase()
        )),
        Some(data) => match data.get(key) {
            Some(v) => Ok(Some(v.clone())),
            None if optional => Ok(None),
            None => Err(format!("couldn't find key {key} in {kind} {ns}/{name}")),
        },
    }
}

pub fn container_env(
    c: &Container,
    facts: &PodFacts<'_>,
    services: &[Service],
    base: &[(String, String)],
    refs: &Refs,
) -> Result<Vec<(String, String)>, String> {
    let ns = facts.pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut env: Vec<(String, String)> = base.to_vec();
    env.extend(service_env(facts.pod, services));
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
        if let Some(slot) = env.iter_mut().find(|(n, _)| *n == k) {
            slot.1 = v;
        } else {
            env.push((k, v));
        }
    };
    for f in c.env_from.iter().flatten() {
        let prefix = f.prefix.clone().unwrap_or_default();
        let (kind, map, name, optional) = if let Some(r) = &f.config_map_ref {
            (
                "ConfigMap",
                &refs.config_maps,
                &r.name,
                r.optional.unwrap_or(false),
            )
        } else if let Some(r) = &f.secret_ref {
            (
                "Secret",
                &refs.secrets,
                &r.name,
                r.optional.unwrap_or(false),
            )
        } else {
            continue;
        };
        match map.get(name).cloned().flatten() {
            Some(data) => {
                for (k, v) in data {
                    let var = format!("{prefix}{k}");
                    if env_name_ok(&var) {
                        set(&mut env, var, v);
                    }
                }
            }
            None if optional => {}
            None => {
                return Err(format!(
                    "{} \"{name}\" not found",
                    kind.to_ascii_lowercase()
                ));
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(from) = &e.value_from {
            if let Some(fr) = &from.field_ref {
                field_ref(&fr.field_path, facts).ok_or_else(|| {
                    format!("unsupported fieldRef {:?} in env {}", fr.field_path, e.name)
                })?
            } else if let Some(r) = &from.config_map_key_ref {
                match lookup_ref(
                    "ConfigMap",
                    &refs.config_maps,
                    ns,
                    &r.name,
                    &r.key,
                    r.optional.unwrap_or(false),
                )? {
                    Some(v) => v,
                    None => continue,
                }
            } else if let Some(r) = &from.secret_key_ref {
                match lookup_ref(
                    "Secret",
                    &refs.secrets,
                    ns,
                    &r.name,
                    &r.key,
                    r.optional.unwrap_or(false),
                )? {
                    Some(v) => v,
                    None => continue,
                }
            } else if from.resource_field_ref.is_some() {
                // Limits are not enforced on process pods; upstream reports node
                // allocatable when no limit is set, which this approximates as 0.
                "0".to_string()
            } else {
                return Err(format!("env {}: unsupported valueFrom", e.name));
            }
        } else {
            let current = env.clone();
            let lookup = move |n: &str| {
                current
                    .iter()
                    .rev()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.clone())
            };
            expand(e.value.as_deref().unwrap_or(""), &lookup)
        };
        set(&mut env, e.name.clone(), value);
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(ns: &str, name: &str, ip: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": ports}}))
        .unwrap()
    }

    #[test]
    fn service_variables() {
        let pod: Pod =
            serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default"}}))
                .unwrap();
        let services = vec![
            svc(
                "default",
                "my-nginx",
                "10.0.0.11",
                json!([{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "https", "port": 443, "protocol": "TCP"}]),
            ),
            svc("default", "headless", "None", json!([{"port": 80}])),
            svc("other", "elsewhere", "10.0.0.12", json!([{"port": 80}])),
            svc(
                "default",
                "kubernetes",
                "10.96.0.1",
                json!([{"name": "https", "port": 443, "protocol": "TCP"}]),
            ),
        ];
        let env: BTreeMap<_, _> = service_env(&pod, &services).into_iter().collect();
        assert_eq!(env["MY_NGINX_SERVICE_HOST"], "10.0.0.11");
        assert_eq!(env["MY_NGINX_SERVICE_PORT"], "80");
        assert_eq!(env["MY_NGINX_SERVICE_PORT_HTTPS"], "443");
        assert_eq!(env["MY_NGINX_PORT"], "tcp://10.0.0.11:80");
        assert_eq!(env["MY_NGINX_PORT_443_TCP"], "tcp://10.0.0.11:443");
        assert_eq!(env["MY_NGINX_PORT_443_TCP_PROTO"], "tcp");
        assert_eq!(env["MY_NGINX_PORT_443_TCP_PORT"], "443");
        assert_eq!(env["MY_NGINX_PORT_443_TCP_ADDR"], "10.0.0.11");
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.96.0.1");
        assert!(!env.contains_key("HEADLESS_SERVICE_HOST"));
        assert!(!env.contains_key("ELSEWHERE_SERVICE_HOST"));

        let pod: Pod =
            serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "other"},
            "spec": {"containers": [], "enableServiceLinks": false}}))
            .unwrap();
        let env: BTreeMap<_, _> = service_env(&pod, &services).into_iter().collect();
        assert!(env.contains_key("KUBERNETES_SERVICE_HOST"));
        assert!(!env.contains_key("ELSEWHERE_SERVICE_HOST"));
    }

    #[test]
    fn expansion() {
        let l = |n: &str| (n == "A").then(|| "x".to_string());
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &l), "x-$(B)-$(A)-$");
    }

    #[test]
    fn env_with_field_refs() {
        let pod: Pod = serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"containers": []}}),
        )
        .unwrap();
        let c: Container = serde_json::from_value(json!({"name": "c", "env": [
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "GREETING", "value": "hi $(POD)"}]}))
        .unwrap();
        let facts = PodFacts {
            pod: &pod,
            pod_ip: "10.244.0.2".into(),
            host_ip: "10.0.0.1".into(),
            node_name: "n".into(),
        };
        let env: BTreeMap<_, _> = container_env(&c, &facts, &[], &[], &Refs::default())
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(env["POD"], "p");
        assert_eq!(env["IP"], "10.244.0.2");
        assert_eq!(env["APP"], "web");
        assert_eq!(env["GREETING"], "hi p");
    }

    #[test]
    fn env_from_config_maps_and_secrets() {
        let pod: Pod =
            serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns"}})).unwrap();
        let c: Container = serde_json::from_value(json!({"name": "c",
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}, {"secretRef": {"name": "gone", "optional": true}}],
            "env": [{"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                    {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
                    {"name": "NOPE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope", "optional": true}}}]})).unwrap();
        let mut refs = Refs::default();
        refs.config_maps.insert(
            "cfg".into(),
            Some(
                [
                    ("mode".to_string(), "fast".to_string()),
                    ("1bad".to_string(), "x".to_string()),
                ]
                .into(),
            ),
        );
        refs.secrets.insert(
            "db".into(),
            Some([("password".to_string(), "s3cret".to_string())].into()),
        );
        refs.secrets.insert("gone".into(), None);
        let facts = PodFacts {
            pod: &pod,
            pod_ip: String::new(),
            host_ip: String::new(),
            node_name: String::new(),
        };
        let env: BTreeMap<_, _> = container_env(&c, &facts, &[], &[], &refs)
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(env["CFG_mode"], "fast");
        assert_eq!(env["CFG_1bad"], "x");
        assert_eq!(env["PASS"], "s3cret");
        assert_eq!(env["MODE"], "fast");
        assert!(!env.contains_key("NOPE"));
        assert_eq!(
            Refs::wanted(&c),
            (
                vec!["cfg".to_string()],
                vec!["db".to_string(), "gone".to_string()]
            )
        );
        refs.secrets.insert("db".into(), None);
        assert_eq!(
            container_env(&c, &facts, &[], &[], &refs).unwrap_err(),
            "secret \"db\" not found"
        );
    }
}
