//! The one set of services every server answers for, and what each server is fed:
//! the Services and EndpointSlices skiff's DNS reads from the API server, the zone
//! file Knot DNS loads, the `host-record`/`srv-host` lines dnsmasq reads, and the
//! query file dnsperf replays.

use std::fmt::Write as _;

use serde_json::{json, Value};

pub const ZONE: &str = "cluster.local";
/// Endpoints of every headless service (a small StatefulSet each).
pub const HEADLESS_ENDPOINTS: usize = 3;

/// How many of each kind of service, in how many namespaces.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub services: usize,
    pub headless: usize,
    pub namespaces: usize,
}

/// A ClusterIP service with one named port (`http`, 80/TCP).
pub struct ClusterIpService {
    pub name: String,
    pub namespace: String,
    pub ip: String,
}

/// A headless service whose endpoints have hostnames (`db-0`, `db-1`, ...), as a
/// StatefulSet's do; one named port (`pg`, 5432/TCP).
pub struct HeadlessService {
    pub name: String,
    pub namespace: String,
    /// (hostname, address)
    pub endpoints: Vec<(String, String)>,
}

pub struct Records {
    pub sizes: Sizes,
    pub services: Vec<ClusterIpService>,
    pub headless: Vec<HeadlessService>,
}

pub fn namespace(i: usize) -> String {
    format!("ns-{i}")
}

impl Records {
    pub fn new(sizes: Sizes) -> Self {
        let namespaces = sizes.namespaces.max(1);
        // ClusterIPs from 10.96.1.0 on (the API server's default /12 holds them all,
        // clear of `kubernetes` at .0.1 and `kube-dns` at .0.10).
        let services = (0..sizes.services)
            .map(|i| ClusterIpService {
                name: format!("svc-{i}"),
                namespace: namespace(i % namespaces),
                ip: format!("10.96.{}.{}", 1 + i / 250, 1 + i % 250),
            })
            .collect();
        let headless = (0..sizes.headless)
            .map(|h| HeadlessService {
                name: format!("db-{h}"),
                namespace: namespace(h % namespaces),
                endpoints: (0..HEADLESS_ENDPOINTS)
                    .map(|e| {
                        let n = h * HEADLESS_ENDPOINTS + e;
                        (
                            format!("db-{e}"),
                            format!("10.244.{}.{}", 1 + n / 250, 1 + n % 250),
                        )
                    })
                    .collect(),
            })
            .collect();
        Records {
            sizes,
            services,
            headless,
        }
    }

    pub fn namespaces(&self) -> impl Iterator<Item = String> {
        (0..self.sizes.namespaces.max(1)).map(namespace)
    }

    /// The Services and EndpointSlices, as JSON objects POSTed to the API server:
    /// (collection path, object).
    pub fn api_objects(&self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for s in &self.services {
            out.push((
                format!("/api/v1/namespaces/{}/services", s.namespace),
                json!({
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": s.name, "namespace": s.namespace},
                    "spec": {"clusterIP": s.ip, "clusterIPs": [s.ip],
                             "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
                }),
            ));
        }
        for h in &self.headless {
            out.push((
                format!("/api/v1/namespaces/{}/services", h.namespace),
                json!({
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": h.name, "namespace": h.namespace},
                    "spec": {"clusterIP": "None",
                             "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]},
                }),
            ));
            let endpoints: Vec<Value> = h
                .endpoints
                .iter()
                .map(|(host, ip)| {
                    json!({"addresses": [ip], "hostname": host, "conditions": {"ready": true}})
                })
                .collect();
            out.push((
                format!(
                    "/apis/discovery.k8s.io/v1/namespaces/{}/endpointslices",
                    h.namespace
                ),
                json!({
                    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": format!("{}-1", h.name), "namespace": h.namespace,
                                 "labels": {"kubernetes.io/service-name": h.name}},
                    "addressType": "IPv4",
                    "endpoints": endpoints,
                    "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
                }),
            ));
        }
        out
    }

    /// The same records as a zone file for Knot DNS, with the SOA and NS skiff gives.
    pub fn knot_zone(&self) -> String {
        let mut z = format!(
            "$ORIGIN {ZONE}.\n$TTL 5\n\
             @ SOA ns.dns hostmaster 1 7200 1800 86400 5\n\
             @ NS ns.dns\n\
             ns.dns A 10.96.0.10\n\
             dns-version TXT \"1.1.0\"\n"
        );
        for s in &self.services {
            let owner = format!("{}.{}.svc", s.name, s.namespace);
            let _ = writeln!(z, "{owner} A {}", s.ip);
            let _ = writeln!(z, "_http._tcp.{owner} SRV 0 100 80 {owner}.{ZONE}.");
        }
        for h in &self.headless {
            let owner = format!("{}.{}.svc", h.name, h.namespace);
            let weight = 100 / h.endpoints.len().max(1);
            for (host, ip) in &h.endpoints {
                let _ = writeln!(z, "{owner} A {ip}");
                let _ = writeln!(z, "{host}.{owner} A {ip}");
                let _ = writeln!(
                    z,
                    "_pg._tcp.{owner} SRV 0 {weight} 5432 {host}.{owner}.{ZONE}."
                );
            }
        }
        z
    }

    /// The same records as dnsmasq configuration lines; `local=` makes dnsmasq
    /// authoritative for the zone (NXDOMAIN for anything it does not know).
    pub fn dnsmasq_lines(&self) -> String {
        let mut m = format!("local=/{ZONE}/\nlocal-ttl=5\nauth-ttl=5\nneg-ttl=5\n");
        for s in &self.services {
            let fq = format!("{}.{}.svc.{ZONE}", s.name, s.namespace);
            let _ = writeln!(m, "host-record={fq},{}", s.ip);
            let _ = writeln!(m, "srv-host=_http._tcp.{fq},{fq},80,0,100");
        }
        for h in &self.headless {
            let fq = format!("{}.{}.svc.{ZONE}", h.name, h.namespace);
            let weight = 100 / h.endpoints.len().max(1);
            for (host, ip) in &h.endpoints {
                let _ = writeln!(m, "host-record={fq},{ip}");
                let _ = writeln!(m, "host-record={host}.{fq},{ip}");
                let _ = writeln!(m, "srv-host=_pg._tcp.{fq},{host}.{fq},5432,0,{weight}");
            }
        }
        m
    }

    /// dnsperf's input: `lines` queries in the mix [`MIX`] describes, spread over all
    /// services so no server gets by on a handful of hot names.
    pub fn queries(&self, lines: usize) -> String {
        let mut q = String::new();
        if self.services.is_empty() || self.headless.is_empty() {
            return q;
        }
        let namespaces = self.sizes.namespaces.max(1);
        for n in 0..lines {
            // Co-prime strides walk every service in a scattered order.
            let s = &self.services[(n * 7919) % self.services.len()];
            let h = &self.headless[(n * 31) % self.headless.len()];
            let (svc, ns) = (&s.name, &s.namespace);
            // The namespace of the pod asking: its search path starts there.
            let asker = namespace((n / 20 + 1) % namespaces);
            let line = match n % 20 {
                0..=5 => format!("{svc}.{ns}.svc.{ZONE} A"),
                6..=8 => format!("_http._tcp.{svc}.{ns}.svc.{ZONE} SRV"),
                9 | 10 => format!("{}.{}.svc.{ZONE} A", h.name, h.namespace),
                11 => format!("_pg._tcp.{}.{}.svc.{ZONE} SRV", h.name, h.namespace),
                12 => format!("db-{}.{}.{}.svc.{ZONE} A", n % 3, h.name, h.namespace),
                13 | 14 => format!("missing-{n}.{ns}.svc.{ZONE} A"),
                // `svc.ns` from a pod in another namespace: ndots:5 tries
                // `svc.ns.<asker>.svc.<zone>` first.
                15 | 16 => format!("{svc}.{ns}.{asker}.svc.{ZONE} A"),
                // The FQDN typed without its final dot is expanded by the search path
                // too: `svc.ns.svc.cluster.local.<asker>.svc.cluster.local`.
                17 | 18 => format!("{svc}.{ns}.svc.{ZONE}.{asker}.svc.{ZONE} A"),
                // ... and its last expansion, `svc.ns.svc.cluster.local.cluster.local`.
                _ => format!("{svc}.{ns}.svc.{ZONE}.{ZONE} A"),
            };
            q.push_str(&line);
            q.push('\n');
        }
        q
    }
}

/// The query mix in words, for the report.
pub const MIX: &str = "30% service A, 15% service SRV, 10% headless A (3 records), \
5% headless SRV (3 records + 3 A in Additional), 5% StatefulSet member A, \
10% NXDOMAIN in a namespace, 25% NXDOMAIN search-path expansions (`svc.ns.<ns>.svc.<zone>`, \
`svc.ns.svc.<zone>.<ns>.svc.<zone>`, `svc.ns.svc.<zone>.<zone>`)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_query_is_in_the_mix() {
        let r = Records::new(Sizes {
            services: 10,
            headless: 3,
            namespaces: 2,
        });
        let q = r.queries(20);
        assert_eq!(q.lines().count(), 20);
        assert!(q.contains("_http._tcp.svc-"));
        assert!(q.contains("_pg._tcp.db-"));
        assert!(q.contains("missing-"));
        assert!(q.contains(".svc.cluster.local.ns-"));
        assert!(q.contains(".svc.cluster.local.cluster.local A"));
        assert!(r.knot_zone().contains("db-0.db-0.ns-0.svc A 10.244.1.1"));
        assert!(r
            .dnsmasq_lines()
            .contains("host-record=svc-3.ns-1.svc.cluster.local,10.96.1.4"));
        assert_eq!(r.api_objects().len(), 10 + 3 * 2);
    }
}
