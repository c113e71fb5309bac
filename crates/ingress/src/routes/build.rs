//! The pure function from cluster objects to a [`RouteTable`]: no I/O, so a
//! table is testable from objects alone, and whatever is wrong with an Ingress
//! comes back as a [`Problem`] for the caller to record as an event.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};

use super::{Backend, Endpoint, HostRoutes, IngressRef, Matcher, Route, RouteTable, Target};
use crate::annotations::{self, RouteOptions};
use crate::class::Classes;
use crate::metrics::RouteMetrics;

/// What a table is built from. Services by `(namespace, name)`, slices by
/// `(namespace, service name)`.
#[derive(Default)]
pub struct Objects<'a> {
    pub classes: Classes,
    pub ingresses: Vec<&'a Ingress>,
    pub services: HashMap<(&'a str, &'a str), &'a Service>,
    pub slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
}

impl<'a> Objects<'a> {
    pub fn new(
        classes: Classes,
        ingresses: impl IntoIterator<Item = &'a Ingress>,
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> Self {
        let mut o = Objects {
            classes,
            ingresses: ingresses.into_iter().collect(),
            ..Default::default()
        };
        for s in services {
            if let (Some(ns), Some(name)) = (&s.metadata.namespace, &s.metadata.name) {
                o.services.insert((ns.as_str(), name.as_str()), s);
            }
        }
        for s in slices {
            let ns = s.metadata.namespace.as_deref();
            let svc = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"));
            if let (Some(ns), Some(svc)) = (ns, svc) {
                o.slices.entry((ns, svc.as_str())).or_default().push(s);
            }
        }
        o
    }
}

/// Something wrong with a served Ingress, for an event on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub ingress: IngressRef,
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// A host whose certificate comes from a `kubernetes.io/tls` Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsHost {
    pub host: String,
    pub namespace: String,
    /// `None`: the Ingress names no secret (the default certificate serves).
    pub secret: Option<String>,
    pub ingress: IngressRef,
}

/// A table and what was noticed building it.
#[derive(Debug, Default)]
pub struct Built {
    pub table: RouteTable,
    pub problems: Vec<Problem>,
    pub tls: Vec<TlsHost>,
    /// The Ingresses served, oldest first.
    pub served: Vec<IngressRef>,
}

fn iref(i: &Ingress) -> IngressRef {
    IngressRef {
        namespace: i.metadata.namespace.clone().unwrap_or_default(),
        name: i.metadata.name.clone().unwrap_or_default(),
    }
}

/// Builds the table of the Ingresses `objects.classes` serves.
pub fn build(objects: &Objects<'_>) -> Built {
    let mut ingresses: Vec<&Ingress> = objects
        .ingresses
        .iter()
        .copied()
        .filter(|i| objects.classes.serves(i))
        .collect();
    // The oldest Ingress wins a conflict, as in ingress-nginx.
    ingresses.sort_by(|a, b| {
        let key = |i: &Ingress| (i.metadata.creation_timestamp.as_ref().map(|t| t.0), iref(i));
        key(a).cmp(&key(b))
    });
    let mut out = Built::default();
    let mut backends: HashMap<(String, String, String), Arc<Backend>> = HashMap::new();
    let mut hosts: BTreeMap<String, Vec<Route>> = BTreeMap::new();
    for ing in ingresses {
        let who = iref(ing);
        out.served.push(who.clone());
        let empty = BTreeMap::new();
        let ann = ing.metadata.annotations.as_ref().unwrap_or(&empty);
        let (options, notes) = annotations::parse(ann);
        for (warning, reason, message) in notes {
            out.problems.push(Problem {
                ingress: who.clone(),
                warning,
                reason,
                message,
            });
        }
        let options = Arc::new(options);
        let Some(spec) = &ing.spec else { continue };
        let tls_hosts: Vec<&str> = spec
            .tls
            .iter()
            .flatten()
            .flat_map(|t| t.hosts.iter().flatten())
            .map(String::as_str)
            .collect();
        for t in spec.tls.iter().flatten() {
            for h in t.hosts.iter().flatten() {
                out.tls.push(TlsHost {
                    host: h.to_ascii_lowercase(),
                    namespace: who.namespace.clone(),
                    secret: t.secret_name.clone().filter(|s| !s.is_empty()),
                    ingress: who.clone(),
                });
            }
        }
        let mut ctx = Ctx {
            objects,
            who: &who,
            backends: &mut backends,
            problems: &mut out.problems,
        };
        if let Some(b) = &spec.default_backend {
            if out.table.default.is_none() {
                let target = ctx.target(b);
                out.table.default = Some(Route {
                    metrics: route_metrics(&who, &target),
                    ingress: who.clone(),
                    path: "/".into(),
                    matcher: Matcher::Prefix(String::new()),
                    target,
                    options: options.clone(),
                    redirect_to_https: false,
                });
            }
        }
        for rule in spec.rules.iter().flatten() {
            let host = rule.host.as_deref().unwrap_or("").to_ascii_lowercase();
            let redirect = options.ssl_redirect
                && !host.is_empty()
                && tls_hosts.iter().any(|t| t.eq_ignore_ascii_case(&host));
            let Some(http) = &rule.http else { continue };
            for p in &http.paths {
                let path = p.path.clone().unwrap_or_else(|| "/".into());
                let matcher = ctx.matcher(&path, &p.path_type, &options);
                let target = ctx.target(&p.backend);
                hosts.entry(host.clone()).or_default().push(Route {
                    metrics: route_metrics(&who, &target),
                    ingress: who.clone(),
                    path,
                    matcher,
                    target,
                    options: options.clone(),
                    redirect_to_https: redirect,
                });
            }
        }
    }
    out.table.live = backends
        .values()
        .flat_map(|b| b.endpoints.iter().map(|e| e.addr))
        .collect();
    for (host, routes) in hosts {
        let set = host_routes(routes);
        if host.is_empty() {
            out.table.any_host = set;
        } else if let Some(parent) = host.strip_prefix("*.") {
            out.table.wildcards.insert(parent.to_string(), set);
        } else {
            out.table.hosts.insert(host, set);
        }
    }
    out
}

/// One host's routes in lookup order; a path an older Ingress already has
/// (same kind) is dropped.
fn host_routes(routes: Vec<Route>) -> HostRoutes {
    let mut set = HostRoutes::default();
    let mut ordered: Vec<Route> = Vec::new();
    for r in routes {
        match &r.matcher {
            Matcher::Exact(p) => {
                set.exact.entry(p.clone()).or_insert(r);
            }
            Matcher::Prefix(p) => {
                let dup = ordered
                    .iter()
                    .any(|o| matches!(&o.matcher, Matcher::Prefix(q) if q == p));
                if !dup {
                    ordered.push(r);
                }
            }
            Matcher::Regex(_) => {
                if !ordered.iter().any(|o| o.path == r.path) {
                    ordered.push(r);
                }
            }
        }
    }
    // Longest first; the sort is stable, so older Ingresses stay ahead on ties.
    ordered.sort_by_key(|r| std::cmp::Reverse(rank(r)));
    set.ordered = ordered;
    set
}

fn rank(r: &Route) -> usize {
    match &r.matcher {
        Matcher::Prefix(p) => p.len(),
        _ => r.path.len(),
    }
}

struct Ctx<'a, 'o> {
    objects: &'a Objects<'o>,
    who: &'a IngressRef,
    backends: &'a mut HashMap<(String, String, String), Arc<Backend>>,
    problems: &'a mut Vec<Problem>,
}

impl Ctx<'_, '_> {
    fn problem(&mut self, warning: bool, reason: &'static str, message: String) {
        let p = Problem {
            ingress: self.who.clone(),
            warning,
            reason,
            message,
        };
        if !self.problems.contains(&p) {
            self.problems.push(p);
        }
    }

    fn matcher(&mut self, path: &str, kind: &str, options: &RouteOptions) -> Matcher {
        if options.use_regex {
            let anchored = if kind == "Exact" {
                format!("(?i)^(?:{path})$")
            } else {
                format!("(?i)^{path}")
            };
            match regex::Regex::new(&anchored) {
                Ok(r) => return Matcher::Regex(r),
                Err(e) => self.problem(
                    true,
                    "InvalidPath",
                    format!("path {path:?} is not a valid regular expression ({e}); matched as a prefix"),
                ),
            }
        }
        match kind {
            "Exact" => Matcher::Exact(path.to_string()),
            _ => Matcher::Prefix(path.trim_end_matches('/').to_string()),
        }
    }

    fn target(&mut self, b: &IngressBackend) -> Target {
        let ns = self.who.namespace.clone();
        let Some(svc) = &b.service else {
            let name = b
                .resource
                .as_ref()
                .map(|r| r.name.clone())
                .unwrap_or_default();
            self.problem(
                true,
                "UnsupportedBackend",
                format!("resource backend {name:?} is not supported; answering 503"),
            );
            return Target::Missing {
                namespace: ns,
                service: name,
                reason: "resource backends are not supported".into(),
            };
        };
        let port = svc.port.as_ref();
        let label = match (
            port.and_then(|p| p.number),
            port.and_then(|p| p.name.as_deref()),
        ) {
            (Some(n), _) => n.to_string(),
            (None, Some(name)) => name.to_string(),
            (None, None) => String::new(),
        };
        let key = (ns.clone(), svc.name.clone(), label.clone());
        if let Some(b) = self.backends.get(&key) {
            return Target::Service(b.clone());
        }
        match resolve(self.objects, &ns, &svc.name, &label) {
            Ok((number, endpoints)) => {
                // A port named in one route and numbered in another is one
                // backend (one round-robin), as its endpoints are the same.
                let canonical = (ns.clone(), svc.name.clone(), number.to_string());
                let b = self
                    .backends
                    .entry(canonical)
                    .or_insert_with(|| {
                        Arc::new(Backend::new(&ns, &svc.name, &number.to_string(), endpoints))
                    })
                    .clone();
                self.backends.insert(key, b.clone());
                Target::Service(b)
            }
            Err(reason) => {
                self.problem(true, "ServiceNotFound", format!("{reason}; answering 503"));
                Target::Missing {
                    namespace: ns,
                    service: svc.name.clone(),
                    reason,
                }
            }
        }
    }
}

/// The Service port's number and the ready endpoints of service `ns/name` at
/// the port `port` (a number or a name): the EndpointSlices' port of the same
/// name as the Service's port is its targetPort on the pods.
fn resolve(
    o: &Objects<'_>,
    ns: &str,
    name: &str,
    port: &str,
) -> Result<(i32, Vec<Endpoint>), String> {
    let svc = o
        .services
        .get(&(ns, name))
        .ok_or_else(|| format!("service \"{ns}/{name}\" not found"))?;
    let spec = svc.spec.as_ref();
    if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
        return Err(format!(
            "service \"{ns}/{name}\" is of type ExternalName, which skiff's ingress does not proxy to"
        ));
    }
    let ports = spec.and_then(|s| s.ports.as_ref());
    let sp = ports
        .into_iter()
        .flatten()
        .find(|p| match port.parse::<i32>() {
            Ok(n) => p.port == n,
            Err(_) => p.name.as_deref() == Some(port),
        })
        .ok_or_else(|| format!("service \"{ns}/{name}\" has no port {port}"))?;
    let port_name = sp.name.as_deref().unwrap_or("");
    let mut out: Vec<Endpoint> = Vec::new();
    for slice in o.slices.get(&(ns, name)).into_iter().flatten() {
        let Some(target) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or("") == port_name)
            .and_then(|p| p.port)
        else {
            continue;
        };
        let Ok(target) = u16::try_from(target) else {
            continue;
        };
        for ep in &slice.endpoints {
            let ready = ep.conditions.as_ref().and_then(|c| c.ready) != Some(false);
            if !ready {
                continue;
            }
            for a in &ep.addresses {
                if let Ok(ip) = a.parse::<IpAddr>() {
                    let e = Endpoint::new(SocketAddr::new(ip, target));
                    if !out.contains(&e) {
                        out.push(e);
                    }
                }
            }
        }
    }
    // A stable order, so round-robin and tables compare across rebuilds.
    out.sort_by_key(|e| e.addr);
    Ok((sp.port, out))
}

fn route_metrics(who: &IngressRef, target: &Target) -> Arc<RouteMetrics> {
    let (_, service) = target.service();
    Arc::new(RouteMetrics::new(&who.namespace, &who.name, service))
}
