//! The record index: everything the answer path needs, keyed by name, built in
//! one pass from the Services and EndpointSlices, or derived from the previous
//! index by re-reading only the services that changed ([`Index::with_changes`]):
//! entries are shared between generations behind `Arc`s, so a change costs a
//! copy of the maps' pointers plus the changed entries, not a rebuild of every
//! name. A new index replaces the old one atomically, so a query sees either all
//! of a change or none of it, and never waits for an update.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::qname::dashed;

/// Zone-wide settings the index needs.
#[derive(Debug, Clone)]
pub struct Zone {
    /// Lowercase, no final dot, e.g. `cluster.local`.
    pub domain: String,
    /// TTL of every answer (and the SOA minimum).
    pub ttl: u32,
    /// Address of `ns.dns.<zone>` (the `kube-dns` ClusterIP).
    pub dns_ip: IpAddr,
}

/// A named service port (or an endpoint port of a headless service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// Lowercase port name.
    pub name: Box<str>,
    /// Lowercase protocol: `tcp`, `udp`, `sctp`.
    pub proto: Box<str>,
    pub port: u16,
}

impl Port {
    /// A port that SRV records can name: only named ports get records.
    fn named(name: Option<&str>, protocol: Option<&str>, port: Option<i32>) -> Option<Self> {
        Some(Self {
            name: name.filter(|n| !n.is_empty())?.to_ascii_lowercase().into(),
            proto: protocol.unwrap_or("TCP").to_ascii_lowercase().into(),
            port: u16::try_from(port?).ok()?,
        })
    }
}

/// One address of a headless service.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub ip: IpAddr,
    /// Lowercase hostname, or the dashed address when the endpoint has none.
    pub host: Box<str>,
    /// `<host>.<svc>.<ns>.svc.<zone>.`
    pub fqdn: Name,
    pub ports: Arc<[Port]>,
}

#[derive(Debug, Clone)]
pub enum Kind {
    ClusterIp(Vec<IpAddr>),
    /// Ready endpoints (all of them with `publishNotReadyAddresses`).
    Headless(Vec<Endpoint>),
    ExternalName(Name),
}

#[derive(Debug, Clone)]
pub struct ServiceEntry {
    /// `<svc>.<ns>.svc.<zone>.`
    pub fqdn: Name,
    pub kind: Kind,
    /// Named service ports (SRV for ClusterIP services).
    pub ports: Vec<Port>,
}

/// Everything known about the cluster's names, immutable once built.
#[derive(Debug)]
pub struct Index {
    pub zone: Zone,
    pub zone_name: Name,
    pub ns_name: Name,
    /// Serial of the SOA: changes whenever the index does.
    pub serial: u32,
    /// The zone's SOA record, built once: every negative answer carries it.
    pub soa: Record,
    /// Keyed by `<svc>.<ns>` (lowercase).
    pub services: HashMap<Arc<str>, Arc<ServiceEntry>>,
    /// Namespaces with at least one service, and how many services each has.
    pub namespaces: HashMap<Arc<str>, usize>,
    /// Reverse records: ClusterIPs and headless endpoint addresses.
    pub ptr: HashMap<IpAddr, Arc<[Name]>>,
}

/// One service to re-read in [`Index::with_changes`]: its key (`<svc>.<ns>`,
/// lowercase), the Service if it still exists, and its EndpointSlices.
pub struct Change<'a> {
    pub key: &'a str,
    pub service: Option<&'a Service>,
    pub slices: Vec<&'a EndpointSlice>,
}

/// The key a Service is indexed by: `<svc>.<ns>`, lowercase.
pub fn service_key(svc: &Service) -> Option<String> {
    let name = svc.metadata.name.as_deref()?;
    let ns = svc.metadata.namespace.as_deref()?;
    Some(format!("{name}.{ns}").to_ascii_lowercase())
}

/// The key of the service an EndpointSlice belongs to (its
/// `kubernetes.io/service-name` label), lowercase.
pub fn slice_owner_key(slice: &EndpointSlice) -> Option<String> {
    let ns = slice.metadata.namespace.as_deref()?;
    let svc = slice
        .metadata
        .labels
        .as_ref()?
        .get("kubernetes.io/service-name")?;
    Some(format!("{svc}.{ns}").to_ascii_lowercase())
}

fn fqdn(s: &str) -> Option<Name> {
    Name::from_ascii(format!("{s}.")).ok()
}

impl Index {
    /// An index with no services (the zone's own records only).
    pub fn empty(zone: Zone) -> Self {
        Self::build(zone, &[], &[], 0)
    }

    /// Builds the index. Objects that cannot form valid names are skipped.
    pub fn build(
        zone: Zone,
        services: &[Arc<Service>],
        slices: &[Arc<EndpointSlice>],
        serial: u32,
    ) -> Self {
        // Slices by owning service key, so each service reads only its own.
        let mut by_service: HashMap<String, Vec<&EndpointSlice>> = HashMap::new();
        for s in slices {
            if let Some(key) = slice_owner_key(s) {
                by_service.entry(key).or_default().push(s);
            }
        }
        let mut index = Self::bare(zone, serial, services.len());
        for svc in services {
            let Some(key) = service_key(svc) else {
                continue;
            };
            let slices = by_service.get(&key).map(Vec::as_slice).unwrap_or(&[]);
            index.insert_service(&key, svc, slices);
        }
        index
    }

    /// A new index with serial `serial`: this one, with each service in
    /// `changes` re-read (removed if its Service is gone). Everything else is
    /// shared with this index, not rebuilt.
    pub fn with_changes<'a>(
        &self,
        changes: impl IntoIterator<Item = Change<'a>>,
        serial: u32,
    ) -> Self {
        let mut index = Self::bare(self.zone.clone(), serial, 0);
        index.services = self.services.clone();
        index.namespaces = self.namespaces.clone();
        index.ptr = self.ptr.clone();
        for c in changes {
            index.remove_service(c.key);
            if let Some(svc) = c.service {
                index.insert_service(c.key, svc, &c.slices);
            }
        }
        index
    }

    /// The zone's own records and no services.
    fn bare(zone: Zone, serial: u32, capacity: usize) -> Self {
        let zone_name = fqdn(&zone.domain).unwrap_or_else(Name::root);
        let ns_name = fqdn(&format!("ns.dns.{}", zone.domain)).unwrap_or_else(Name::root);
        let rname = fqdn(&format!("hostmaster.{}", zone.domain)).unwrap_or_else(Name::root);
        let soa = SOA::new(ns_name.clone(), rname, serial, 7200, 1800, 86400, zone.ttl);
        let soa = Record::from_rdata(zone_name.clone(), zone.ttl, RData::SOA(soa));
        Index {
            zone_name,
            ns_name,
            serial,
            soa,
            services: HashMap::with_capacity(capacity),
            namespaces: HashMap::new(),
            ptr: HashMap::new(),
            zone,
        }
    }

    /// Whether `ns` has at least one service.
    pub fn has_namespace(&self, ns: &str) -> bool {
        self.namespaces.contains_key(ns)
    }

    fn add_ptr(&mut self, ip: IpAddr, name: &Name) {
        let names = match self.ptr.get(&ip) {
            Some(old) => old.iter().chain([name]).cloned().collect(),
            None => Arc::from([name.clone()]),
        };
        self.ptr.insert(ip, names);
    }

    fn remove_ptr(&mut self, ip: IpAddr, name: &Name) {
        let Some(old) = self.ptr.get(&ip) else {
            return;
        };
        let rest: Arc<[Name]> = old.iter().filter(|n| *n != name).cloned().collect();
        if rest.is_empty() {
            self.ptr.remove(&ip);
        } else {
            self.ptr.insert(ip, rest);
        }
    }

    /// Takes the service `key` and its reverse records out of the index.
    fn remove_service(&mut self, key: &str) {
        let Some(old) = self.services.remove(key) else {
            return;
        };
        match &old.kind {
            Kind::ClusterIp(ips) => {
                for ip in ips {
                    self.remove_ptr(*ip, &old.fqdn);
                }
            }
            Kind::Headless(eps) => {
                for ep in eps {
                    self.remove_ptr(ep.ip, &ep.fqdn);
                }
            }
            Kind::ExternalName(_) => {}
        }
        if let Some((_, ns)) = key.split_once('.') {
            match self.namespaces.get_mut(ns) {
                Some(n) if *n > 1 => *n -= 1,
                Some(_) => {
                    self.namespaces.remove(ns);
                }
                None => {}
            }
        }
    }

    /// Adds service `key` (not in the index) with its slices.
    fn insert_service(&mut self, key: &str, svc: &Service, slices: &[&EndpointSlice]) {
        let Some(ns) = svc.metadata.namespace.as_deref() else {
            return;
        };
        let Some(svc_fqdn) = fqdn(&format!("{key}.svc.{}", self.zone.domain)) else {
            return;
        };
        let Some(spec) = svc.spec.as_ref() else {
            return;
        };
        let ports = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| Port::named(p.name.as_deref(), p.protocol.as_deref(), Some(p.port)))
            .collect();
        let kind = if spec.type_.as_deref() == Some("ExternalName") {
            let Some(target) = spec
                .external_name
                .as_deref()
                .and_then(|t| fqdn(t.trim_end_matches('.')))
            else {
                return;
            };
            Kind::ExternalName(target)
        } else {
            let ips: Vec<IpAddr> = match spec.cluster_ips.as_ref() {
                Some(ips) if !ips.is_empty() => ips.iter().filter_map(|i| i.parse().ok()).collect(),
                _ => spec
                    .cluster_ip
                    .iter()
                    .filter_map(|i| i.parse().ok())
                    .collect(),
            };
            if ips.is_empty() {
                let publish_all = spec.publish_not_ready_addresses == Some(true);
                let eps = self.endpoints(key, slices, publish_all);
                for ep in &eps {
                    self.add_ptr(ep.ip, &ep.fqdn);
                }
                Kind::Headless(eps)
            } else {
                for ip in &ips {
                    self.add_ptr(*ip, &svc_fqdn);
                }
                Kind::ClusterIp(ips)
            }
        };
        *self
            .namespaces
            .entry(ns.to_ascii_lowercase().into())
            .or_default() += 1;
        self.services.insert(
            key.into(),
            Arc::new(ServiceEntry {
                fqdn: svc_fqdn,
                kind,
                ports,
            }),
        );
    }

    /// The endpoints a headless service answers with, deduplicated by address
    /// (an address in two slices takes its name from the first slice by name,
    /// so the answer does not depend on the order the slices were seen in).
    fn endpoints(&self, key: &str, slices: &[&EndpointSlice], publish_all: bool) -> Vec<Endpoint> {
        let mut out: Vec<Endpoint> = Vec::new();
        let mut seen = HashSet::new();
        let mut slices = slices.to_vec();
        slices.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        for slice in slices {
            let ports: Arc<[Port]> = slice
                .ports
                .iter()
                .flatten()
                .filter_map(|p| Port::named(p.name.as_deref(), p.protocol.as_deref(), p.port))
                .collect();
            for ep in &slice.endpoints {
                // An unset `ready` means ready, as the API documents.
                let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                if !ready && !publish_all {
                    continue;
                }
                for addr in &ep.addresses {
                    let Ok(ip) = addr.parse::<IpAddr>() else {
                        continue;
                    };
                    if !seen.insert(ip) {
                        continue;
                    }
                    let host = ep
                        .hostname
                        .as_deref()
                        .filter(|h| !h.is_empty())
                        .map(str::to_ascii_lowercase)
                        .unwrap_or_else(|| dashed(ip));
                    let Some(fqdn) = fqdn(&format!("{host}.{key}.svc.{}", self.zone.domain)) else {
                        continue;
                    };
                    out.push(Endpoint {
                        ip,
                        host: host.into(),
                        fqdn,
                        ports: ports.clone(),
                    });
                }
            }
        }
        out
    }
}
