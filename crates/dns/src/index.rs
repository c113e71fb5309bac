//! The record index: everything the answer path needs, keyed by name, built in
//! one pass from the reflectors' Services and EndpointSlices. A new index
//! replaces the old one atomically, so a query sees either all of a change or
//! none of it, and never waits for a rebuild.

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
    pub services: HashMap<Box<str>, ServiceEntry>,
    /// Namespaces with at least one service.
    pub namespaces: HashSet<Box<str>>,
    /// Reverse records: ClusterIPs and headless endpoint addresses.
    pub ptr: HashMap<IpAddr, Vec<Name>>,
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
        let zone_name = fqdn(&zone.domain).unwrap_or_else(Name::root);
        let ns_name = fqdn(&format!("ns.dns.{}", zone.domain)).unwrap_or_else(Name::root);
        // Slices by owning service key, so each service reads only its own.
        let mut by_service: HashMap<String, Vec<&EndpointSlice>> = HashMap::new();
        for s in slices {
            let (Some(ns), Some(svc)) = (
                s.metadata.namespace.as_deref(),
                s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("kubernetes.io/service-name")),
            ) else {
                continue;
            };
            by_service
                .entry(format!("{svc}.{ns}").to_ascii_lowercase())
                .or_default()
                .push(s);
        }
        let rname = fqdn(&format!("hostmaster.{}", zone.domain)).unwrap_or_else(Name::root);
        let soa = SOA::new(ns_name.clone(), rname, serial, 7200, 1800, 86400, zone.ttl);
        let soa = Record::from_rdata(zone_name.clone(), zone.ttl, RData::SOA(soa));
        let mut index = Index {
            zone_name,
            ns_name,
            serial,
            soa,
            services: HashMap::with_capacity(services.len()),
            namespaces: HashSet::new(),
            ptr: HashMap::new(),
            zone,
        };
        for svc in services {
            index.add_service(svc, &by_service);
        }
        index
    }

    fn add_service(&mut self, svc: &Service, slices: &HashMap<String, Vec<&EndpointSlice>>) {
        let (Some(name), Some(ns)) = (
            svc.metadata.name.as_deref(),
            svc.metadata.namespace.as_deref(),
        ) else {
            return;
        };
        let key = format!("{name}.{ns}").to_ascii_lowercase();
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
                let eps = self.endpoints(
                    &key,
                    slices.get(&key).map(Vec::as_slice).unwrap_or(&[]),
                    publish_all,
                );
                for ep in &eps {
                    self.ptr.entry(ep.ip).or_default().push(ep.fqdn.clone());
                }
                Kind::Headless(eps)
            } else {
                for ip in &ips {
                    self.ptr.entry(*ip).or_default().push(svc_fqdn.clone());
                }
                Kind::ClusterIp(ips)
            }
        };
        self.namespaces.insert(ns.to_ascii_lowercase().into());
        self.services.insert(
            key.into(),
            ServiceEntry {
                fqdn: svc_fqdn,
                kind,
                ports,
            },
        );
    }

    /// The endpoints a headless service answers with, deduplicated by address.
    fn endpoints(&self, key: &str, slices: &[&EndpointSlice], publish_all: bool) -> Vec<Endpoint> {
        let mut out: Vec<Endpoint> = Vec::new();
        let mut seen = HashSet::new();
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
