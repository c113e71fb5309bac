//! The route table: an immutable snapshot of where each request goes, built by
//! a pure function ([`build::build`]) from the Ingresses of our class and the
//! Services and EndpointSlices they name. The proxy looks a request up with
//! [`RouteTable::lookup`]; a new table replaces the old one whole (see
//! [`crate::watch`]), so a request in flight keeps the snapshot it started with.
//!
//! Precedence follows the Ingress API and ingress-nginx: an exact host before a
//! `*.` wildcard (which stands for exactly one label) before rules without a
//! host, then the defaultBackend; within a host, an `Exact` path before the
//! longest matching `Prefix` (matched element by element: `/foo` matches
//! `/foo/bar`, not `/foobar`); `ImplementationSpecific` is a `Prefix`. When two
//! Ingresses claim the same host and path, the older one wins.

pub mod build;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::annotations::RouteOptions;
use crate::metrics::RouteMetrics;

pub use build::{build, Objects, Problem};

/// An Ingress, as routes and events name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IngressRef {
    pub namespace: String,
    pub name: String,
}

/// One ready endpoint of a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// The affinity cookie's value naming this endpoint: a hash of `ip:port`,
    /// the same in every table and on every node.
    pub cookie: String,
    /// `ip:port` as a request's URI carries it, made once per table rather
    /// than formatted and parsed per request.
    pub authority: http::uri::Authority,
}

impl Endpoint {
    pub fn new(addr: SocketAddr) -> Self {
        use sha2::Digest;
        let text = addr.to_string();
        let digest = sha2::Sha256::digest(text.as_bytes());
        Endpoint {
            addr,
            cookie: hex::encode(&digest[..16]),
            // A socket address always parses as an authority; the fallback
            // is never taken.
            authority: http::uri::Authority::from_maybe_shared(bytes::Bytes::from(text))
                .unwrap_or_else(|_| http::uri::Authority::from_static("0.0.0.0")),
        }
    }
}

/// A Service port's ready endpoints, shared by every route to it.
#[derive(Debug)]
pub struct Backend {
    pub namespace: String,
    pub service: String,
    /// The port as the Ingress named it (a number or a name).
    pub port: String,
    pub endpoints: Vec<Endpoint>,
    /// Round-robin position.
    next: AtomicUsize,
}

impl Backend {
    pub fn new(namespace: &str, service: &str, port: &str, endpoints: Vec<Endpoint>) -> Self {
        Backend {
            namespace: namespace.into(),
            service: service.into(),
            port: port.into(),
            endpoints,
            next: AtomicUsize::new(rand::random::<u32>() as usize),
        }
    }

    /// The next endpoint in round-robin order, skipping `avoid` when there is
    /// another (a retry goes elsewhere).
    pub fn pick(&self, avoid: Option<SocketAddr>) -> Option<&Endpoint> {
        let n = self.endpoints.len();
        self.in_turn().find(|e| Some(e.addr) != avoid || n == 1)
    }

    /// The next endpoint in turn that is not among `tried`, for a retry.
    pub fn pick_untried(&self, tried: &[SocketAddr]) -> Option<&Endpoint> {
        self.in_turn().find(|e| !tried.contains(&e.addr))
    }

    /// Every endpoint once, starting from the next one in turn.
    fn in_turn(&self) -> impl Iterator<Item = &Endpoint> {
        let n = self.endpoints.len();
        let start = match n {
            0 => 0,
            _ => self.next.fetch_add(1, Ordering::Relaxed),
        };
        (0..n).map(move |i| &self.endpoints[(start + i) % n])
    }

    /// The endpoint an affinity cookie names, if it is still here.
    pub fn by_cookie(&self, cookie: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.cookie == cookie)
    }

    /// `namespace-service-port`, as ingress-nginx names an upstream.
    pub fn upstream_name(&self) -> String {
        format!("{}-{}-{}", self.namespace, self.service, self.port)
    }
}

/// Where a route's requests go.
#[derive(Debug, Clone)]
pub enum Target {
    Service(Arc<Backend>),
    /// The backend cannot be served (no such Service or port): 503.
    Missing {
        namespace: String,
        service: String,
        reason: String,
    },
}

impl Target {
    pub fn service(&self) -> (&str, &str) {
        match self {
            Target::Service(b) => (&b.namespace, &b.service),
            Target::Missing {
                namespace, service, ..
            } => (namespace, service),
        }
    }
}

/// How a route's path matches a request's.
#[derive(Debug, Clone)]
pub enum Matcher {
    Exact(String),
    /// The prefix without trailing slashes (`""` matches every path).
    Prefix(String),
    /// A regular expression anchored at the start, case-insensitive, as
    /// ingress-nginx's `~*` locations (`use-regex`, `rewrite-target`).
    Regex(regex::Regex),
}

impl Matcher {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Matcher::Exact(p) => p == path,
            Matcher::Prefix(p) => prefix_matches(p, path),
            Matcher::Regex(r) => r.is_match(path),
        }
    }
}

/// Whether the element-wise prefix `p` (no trailing slash) matches `path`.
pub fn prefix_matches(p: &str, path: &str) -> bool {
    p.is_empty()
        || path == p
        || (path.starts_with(p) && path.as_bytes().get(p.len()) == Some(&b'/'))
}

/// One path of one rule.
#[derive(Debug, Clone)]
pub struct Route {
    pub ingress: IngressRef,
    /// The path as written in the Ingress (`/` for a defaultBackend).
    pub path: String,
    pub matcher: Matcher,
    pub target: Target,
    pub options: Arc<RouteOptions>,
    /// The host has TLS in this Ingress and `ssl-redirect` is not off: plain
    /// HTTP requests get a 308 to HTTPS.
    pub redirect_to_https: bool,
    /// Its series of the component's metrics.
    pub metrics: Arc<RouteMetrics>,
}

impl Route {
    /// The path a request for `path` is sent to the backend with: unchanged
    /// without `rewrite-target`, else the target with the path's capture
    /// groups put in (`$1`), as nginx's `rewrite ... break`.
    pub fn rewrite(&self, path: &str) -> String {
        self.rewritten(path).unwrap_or_else(|| path.to_string())
    }

    /// [`Route::rewrite`], `None` when the route has no `rewrite-target` (the
    /// request's own path then goes on as it came, not copied).
    pub fn rewritten(&self, path: &str) -> Option<String> {
        let (Some(target), Matcher::Regex(re)) = (&self.options.rewrite_target, &self.matcher)
        else {
            return None;
        };
        let Some(caps) = re.captures(path) else {
            return Some(path.to_string());
        };
        let mut out = String::new();
        caps.expand(target, &mut out);
        if out.is_empty() {
            out.push('/');
        }
        Some(out)
    }
}

/// The routes of one host (or of every host).
#[derive(Debug, Default, Clone)]
pub struct HostRoutes {
    pub exact: HashMap<String, Route>,
    /// Prefix and regex routes, longest path first.
    pub ordered: Vec<Route>,
}

impl HostRoutes {
    pub fn lookup(&self, path: &str) -> Option<&Route> {
        self.exact
            .get(path)
            .or_else(|| self.ordered.iter().find(|r| r.matcher.matches(path)))
    }

    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.ordered.is_empty()
    }
}

/// Every route of every served Ingress.
#[derive(Debug, Default, Clone)]
pub struct RouteTable {
    pub hosts: HashMap<String, HostRoutes>,
    /// `*.example.com` rules, by `example.com`.
    pub wildcards: HashMap<String, HostRoutes>,
    /// Rules without a host.
    pub any_host: HostRoutes,
    /// The oldest served Ingress's `spec.defaultBackend`.
    pub default: Option<Route>,
    /// Every ready endpoint of every backend: a request waiting on an address
    /// no longer here is waiting on a pod that is going away.
    pub live: HashSet<SocketAddr>,
}

impl RouteTable {
    /// The route for a request to `host` (lower case, no port) and `path`.
    pub fn lookup(&self, host: &str, path: &str) -> Option<&Route> {
        let exact = self.hosts.get(host).and_then(|h| h.lookup(path));
        exact
            .or_else(|| {
                let (_, parent) = host.split_once('.')?;
                self.wildcards.get(parent)?.lookup(path)
            })
            .or_else(|| self.any_host.lookup(path))
            .or(self.default.as_ref())
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
            && self.wildcards.is_empty()
            && self.any_host.is_empty()
            && self.default.is_none()
    }
}
