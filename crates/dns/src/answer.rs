//! The answer builder: (index, query name, query type) to the sections of a
//! response. Pure; the wire format is the server's business.

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::index::{Endpoint, Index, Kind, Port};
use crate::qname::{self, Qname};

/// The schema version of the Kubernetes DNS specification served.
pub const SCHEMA_VERSION: &str = "1.1.0";

/// An authoritative answer.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
}

/// What to do with a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Answer(Answer),
    /// Not ours: forward it upstream.
    Forward,
    /// An answer whose CNAME chain ends outside the zone: the target's
    /// records of the asked type come from upstream and are appended, as
    /// CoreDNS does, because stub resolvers (glibc's `getent`) do not chase a
    /// CNAME that arrives without them.
    Chase {
        partial: Answer,
        target: Name,
    },
}

/// How many CNAMEs one answer follows inside the zone (CoreDNS stops at 8 too).
pub const MAX_CNAME_CHAIN: usize = 8;

/// `lower` is the query name in lowercase (no final dot needed); `owner` the
/// name as asked, used as the owner of records at the query name.
pub fn answer(index: &Index, lower: &str, owner: &Name, qtype: RecordType) -> Outcome {
    let mut seen = vec![lower.trim_end_matches('.').to_string()];
    answer_at(index, lower, owner, qtype, &mut seen)
}

/// [`answer`], for one name of a CNAME chain; `seen` holds the names the
/// chain visited already (lowercase), to stop at loops and long chains.
fn answer_at(
    index: &Index,
    lower: &str,
    owner: &Name,
    qtype: RecordType,
    seen: &mut Vec<String>,
) -> Outcome {
    let q = qname::parse(lower, &index.zone.domain);
    let mut a = Answer::default();
    let b = Builder {
        owner,
        qtype,
        ttl: index.zone.ttl,
    };
    let exists = match q {
        Qname::Outside => return Outcome::Forward,
        Qname::Reverse(ip) => match index.ptr.get(&ip) {
            Some(names) => {
                for n in names.iter() {
                    b.push(&mut a.answers, RData::PTR(PTR(n.clone())));
                }
                true
            }
            // Not a cluster address: the node's resolvers may know it.
            None => return Outcome::Forward,
        },
        Qname::Apex => {
            if b.wants(RecordType::SOA) {
                let mut soa = index.soa.clone();
                soa.name = owner.clone();
                a.answers.push(soa);
            }
            if b.wants(RecordType::NS) {
                b.push(&mut a.answers, RData::NS(NS(index.ns_name.clone())));
                glue(index, &mut a.additional);
            }
            true
        }
        Qname::NameServer => {
            b.address(&mut a.answers, index.zone.dns_ip);
            true
        }
        Qname::DnsVersion => {
            b.push(
                &mut a.answers,
                RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_string()])),
            );
            true
        }
        Qname::EmptyNonTerminal => true,
        Qname::Namespace(ns) => index.has_namespace(ns),
        Qname::Pod(ip) => {
            b.address(&mut a.answers, ip);
            true
        }
        Qname::NoSuchName => false,
        Qname::Service(key) => match index.services.get(key) {
            None => false,
            Some(svc) => match &svc.kind {
                Kind::ClusterIp(ips) => {
                    for ip in ips {
                        b.address(&mut a.answers, *ip);
                    }
                    true
                }
                // No ready endpoint: the name does not exist (as CoreDNS).
                Kind::Headless(eps) if eps.is_empty() => false,
                Kind::Headless(eps) => {
                    for ep in eps {
                        b.address(&mut a.answers, ep.ip);
                    }
                    true
                }
                Kind::ExternalName(target) => {
                    // A CNAME answers every type but itself's siblings.
                    let cname = Record::from_rdata(
                        owner.clone(),
                        b.ttl,
                        RData::CNAME(CNAME(target.clone())),
                    );
                    a.answers.push(cname);
                    if matches!(qtype, RecordType::A | RecordType::AAAA) {
                        return chase(index, a, target, qtype, seen);
                    }
                    true
                }
            },
        },
        Qname::Endpoint { host, service } => match index.services.get(service) {
            Some(svc) => match &svc.kind {
                Kind::Headless(eps) => {
                    let mut found = false;
                    for ep in eps.iter().filter(|e| &*e.host == host) {
                        found = true;
                        b.address(&mut a.answers, ep.ip);
                    }
                    found
                }
                _ => false,
            },
            None => false,
        },
        Qname::Srv {
            port,
            proto,
            service,
        } => match index.services.get(service) {
            None => false,
            Some(svc) => {
                let matches = |p: &Port| &*p.name == port && &*p.proto == proto;
                match &svc.kind {
                    Kind::ClusterIp(ips) => match svc.ports.iter().find(|p| matches(p)) {
                        Some(p) => {
                            if b.wants(RecordType::SRV) {
                                b.push(
                                    &mut a.answers,
                                    RData::SRV(SRV::new(0, 100, p.port, svc.fqdn.clone())),
                                );
                                for ip in ips {
                                    extra_address(&mut a.additional, &svc.fqdn, *ip, b.ttl);
                                }
                            }
                            true
                        }
                        None => false,
                    },
                    Kind::Headless(eps) => {
                        let hits: Vec<(&Endpoint, u16)> = eps
                            .iter()
                            .filter_map(|e| {
                                e.ports.iter().find(|p| matches(p)).map(|p| (e, p.port))
                            })
                            .collect();
                        if b.wants(RecordType::SRV) {
                            let weight = weight(hits.len());
                            for (e, p) in &hits {
                                b.push(
                                    &mut a.answers,
                                    RData::SRV(SRV::new(0, weight, *p, e.fqdn.clone())),
                                );
                                extra_address(&mut a.additional, &e.fqdn, e.ip, b.ttl);
                            }
                        }
                        !hits.is_empty()
                    }
                    Kind::ExternalName(_) => false,
                }
            }
        },
    };
    if !exists {
        a.rcode = ResponseCode::NXDomain;
    }
    if a.answers.is_empty() {
        // NXDOMAIN and NODATA both carry the SOA, so resolvers can cache the miss.
        a.authority.push(index.soa.clone());
    }
    Outcome::Answer(a)
}

/// Appends the records of `target` (the end of the CNAME in `a`) of type
/// `qtype`: from the index when the target is in the zone, else it is left
/// to the caller to ask upstream. The rcode stays NOERROR whatever the
/// target gives: the name asked exists, and CoreDNS answers the same.
fn chase(
    index: &Index,
    mut a: Answer,
    target: &Name,
    qtype: RecordType,
    seen: &mut Vec<String>,
) -> Outcome {
    let lower = target.to_lowercase().to_ascii();
    let lower = lower.trim_end_matches('.');
    if seen.len() >= MAX_CNAME_CHAIN || seen.iter().any(|s| s == lower) {
        // A loop or an endless chain: the CNAMEs so far, and no address.
        return Outcome::Answer(a);
    }
    seen.push(lower.to_string());
    match answer_at(index, lower, target, qtype, seen) {
        Outcome::Forward => Outcome::Chase {
            partial: a,
            target: target.clone(),
        },
        Outcome::Answer(inner) => {
            a.answers.extend(inner.answers);
            Outcome::Answer(a)
        }
        Outcome::Chase { partial, target } => {
            a.answers.extend(partial.answers);
            Outcome::Chase { partial: a, target }
        }
    }
}

/// Equal SRV weights that sum to about 100, as CoreDNS gives them.
fn weight(n: usize) -> u16 {
    u16::try_from(100 / n.max(1)).unwrap_or(1).max(1)
}

fn glue(index: &Index, additional: &mut Vec<Record>) {
    extra_address(
        additional,
        &index.ns_name,
        index.zone.dns_ip,
        index.zone.ttl,
    );
}

fn extra_address(additional: &mut Vec<Record>, name: &Name, ip: IpAddr, ttl: u32) {
    let rdata = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    additional.push(Record::from_rdata(name.clone(), ttl, rdata));
}

struct Builder<'a> {
    owner: &'a Name,
    qtype: RecordType,
    ttl: u32,
}

impl Builder<'_> {
    fn wants(&self, t: RecordType) -> bool {
        self.qtype == t || self.qtype == RecordType::ANY
    }

    /// Adds a record at the query name if the query asks for its type.
    fn push(&self, out: &mut Vec<Record>, rdata: RData) {
        if self.wants(rdata.record_type()) {
            out.push(Record::from_rdata(self.owner.clone(), self.ttl, rdata));
        }
    }

    fn address(&self, out: &mut Vec<Record>, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => self.push(out, RData::A(A(v4))),
            IpAddr::V6(v6) => self.push(out, RData::AAAA(AAAA(v6))),
        }
    }
}
