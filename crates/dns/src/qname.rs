//! The query-name parser: one pure function from a lowercased name to what it
//! asks for under the cluster zone. Parts are borrowed slices of the input, so
//! parsing never allocates (except for the rare IPv6 pod name).
//!
//! Index keys are contiguous substrings of the name: `<svc>.<ns>` for a
//! service, which is exactly what sits before `.svc.<zone>`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What a (lowercased, dot-free-at-the-end) query name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qname<'a> {
    /// The zone apex: SOA and NS live here.
    Apex,
    /// `ns.dns.<zone>`: the name server the NS record names.
    NameServer,
    /// `dns-version.<zone>`: TXT with the schema version.
    DnsVersion,
    /// `<ns>.svc.<zone>`: exists (without records) when the namespace has a service.
    Namespace(&'a str),
    /// `<svc>.<ns>.svc.<zone>`; the key is `<svc>.<ns>`.
    Service(&'a str),
    /// `<hostname>.<svc>.<ns>.svc.<zone>`: one endpoint of a headless service.
    Endpoint { host: &'a str, service: &'a str },
    /// `_<port>._<proto>.<svc>.<ns>.svc.<zone>` (port and proto without `_`).
    Srv {
        port: &'a str,
        proto: &'a str,
        service: &'a str,
    },
    /// `a-b-c-d.<ns>.pod.<zone>`: answered for any namespace, as CoreDNS's
    /// default `pods insecure` mode does.
    Pod(IpAddr),
    /// A name that exists only because longer names sit under it
    /// (`svc.<zone>`, `pod.<zone>`, `<ns>.pod.<zone>`, `dns.<zone>`): NODATA.
    EmptyNonTerminal,
    /// A complete reverse name (`d.c.b.a.in-addr.arpa`, 32 nibbles of `ip6.arpa`).
    Reverse(IpAddr),
    /// In the zone but of no shape the specification defines: NXDOMAIN.
    NoSuchName,
    /// Outside the zone (and not a full reverse name): forwarded.
    Outside,
}

/// Parses `name` (lowercase, with or without the final dot) against `zone`
/// (lowercase, no final dot).
pub fn parse<'a>(name: &'a str, zone: &str) -> Qname<'a> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if let Some(ip) = reverse(name) {
        return Qname::Reverse(ip);
    }
    if name == zone {
        return Qname::Apex;
    }
    let Some(rest) = name
        .strip_suffix(zone)
        .and_then(|r| r.strip_suffix('.'))
        .filter(|r| !r.is_empty())
    else {
        return Qname::Outside;
    };
    // `rest` is what sits before `.<zone>`; classify by its last label.
    let (inner, last) = match rest.rfind('.') {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    match (last, inner) {
        ("svc", None) | ("pod", None) | ("dns", None) => Qname::EmptyNonTerminal,
        ("svc", Some(inner)) => service(inner),
        ("pod", Some(inner)) => pod(inner),
        ("dns", Some("ns")) => Qname::NameServer,
        ("dns-version", None) => Qname::DnsVersion,
        _ => Qname::NoSuchName,
    }
}

/// `inner` is what sits before `.svc.<zone>`.
fn service(inner: &str) -> Qname<'_> {
    let mut dots = inner.match_indices('.').map(|(i, _)| i);
    let (d1, d2, d3) = (dots.next(), dots.next(), dots.next());
    if dots.next().is_some() || inner.split('.').any(str::is_empty) {
        return Qname::NoSuchName;
    }
    match (d1, d2, d3) {
        (None, _, _) => Qname::Namespace(inner),
        (Some(_), None, _) => Qname::Service(inner),
        (Some(d1), Some(_), None) => Qname::Endpoint {
            host: &inner[..d1],
            service: &inner[d1 + 1..],
        },
        (Some(d1), Some(d2), Some(_)) => {
            let (port, proto) = (&inner[..d1], &inner[d1 + 1..d2]);
            match (port.strip_prefix('_'), proto.strip_prefix('_')) {
                (Some(port), Some(proto)) if !port.is_empty() && !proto.is_empty() => Qname::Srv {
                    port,
                    proto,
                    service: &inner[d2 + 1..],
                },
                _ => Qname::NoSuchName,
            }
        }
    }
}

/// `inner` is what sits before `.pod.<zone>`.
fn pod(inner: &str) -> Qname<'_> {
    let Some((ip, ns)) = inner.split_once('.') else {
        return Qname::EmptyNonTerminal; // `<ns>.pod.<zone>`
    };
    if ns.is_empty() || ns.contains('.') {
        return Qname::NoSuchName;
    }
    match dashed_ip(ip) {
        Some(ip) => Qname::Pod(ip),
        None => Qname::NoSuchName,
    }
}

/// `10-244-0-5` or `fd00--1` (dashes for dots or colons) to an address.
pub fn dashed_ip(s: &str) -> Option<IpAddr> {
    let mut octets = [0u8; 4];
    let mut parts = s.split('-');
    let mut v4 = true;
    for o in &mut octets {
        match parts.next().map(str::parse::<u8>) {
            Some(Ok(v)) => *o = v,
            _ => {
                v4 = false;
                break;
            }
        }
    }
    if v4 && parts.next().is_none() {
        // Reject leading zeros ("010") so one address has one name.
        let canonical = s.split('-').all(|p| p == "0" || !p.starts_with('0'));
        return canonical.then_some(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    if s.len() > 45 || !s.contains('-') {
        return None;
    }
    s.replace('-', ":").parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// The stable name of an endpoint without a hostname: its address with dashes.
pub fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

/// A complete reverse-lookup name to its address.
fn reverse(name: &str) -> Option<IpAddr> {
    if let Some(rest) = name.strip_suffix(".in-addr.arpa") {
        let mut octets = [0u8; 4];
        let mut parts = rest.split('.');
        for o in octets.iter_mut().rev() {
            let p = parts.next()?;
            if p.len() > 1 && p.starts_with('0') {
                return None;
            }
            *o = p.parse().ok()?;
        }
        return parts
            .next()
            .is_none()
            .then_some(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    if let Some(rest) = name.strip_suffix(".ip6.arpa") {
        let mut v: u128 = 0;
        let mut n = 0;
        // Nibbles come least significant first.
        for (i, p) in rest.split('.').enumerate() {
            if i >= 32 || p.len() != 1 {
                return None;
            }
            let d = u128::from(p.chars().next()?.to_digit(16)?);
            v |= d << (4 * i);
            n += 1;
        }
        return (n == 32).then_some(IpAddr::V6(Ipv6Addr::from(v)));
    }
    None
}

/// The reverse name of an address, with the final dot.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(73);
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa.");
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Z: &str = "cluster.local";

    #[test]
    fn shapes() {
        use Qname::*;
        let cases: &[(&str, Qname<'_>)] = &[
            ("cluster.local", Apex),
            ("cluster.local.", Apex),
            ("ns.dns.cluster.local", NameServer),
            ("dns.cluster.local", EmptyNonTerminal),
            ("dns-version.cluster.local", DnsVersion),
            ("svc.cluster.local", EmptyNonTerminal),
            ("pod.cluster.local", EmptyNonTerminal),
            ("default.svc.cluster.local", Namespace("default")),
            ("web.default.svc.cluster.local.", Service("web.default")),
            (
                "web-0.web.default.svc.cluster.local",
                Endpoint {
                    host: "web-0",
                    service: "web.default",
                },
            ),
            (
                "_http._tcp.web.default.svc.cluster.local",
                Srv {
                    port: "http",
                    proto: "tcp",
                    service: "web.default",
                },
            ),
            ("a.b.c.d.e.svc.cluster.local", NoSuchName),
            ("x._tcp.web.default.svc.cluster.local", NoSuchName),
            ("web..default.svc.cluster.local", NoSuchName),
            ("default.pod.cluster.local", EmptyNonTerminal),
            (
                "10-244-0-5.default.pod.cluster.local",
                Pod(IpAddr::V4(Ipv4Addr::new(10, 244, 0, 5))),
            ),
            ("10-244-0-05.default.pod.cluster.local", NoSuchName),
            ("10-244-0.default.pod.cluster.local", NoSuchName),
            (
                "fd00--1.default.pod.cluster.local",
                Pod("fd00::1".parse().unwrap()),
            ),
            ("foo.cluster.local", NoSuchName),
            ("example.com", Outside),
            ("notcluster.local", Outside),
            ("local", Outside),
            (
                "10.0.96.10.in-addr.arpa.",
                Reverse(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10))),
            ),
            ("96.10.in-addr.arpa", Outside),
            ("1.2.3.4.5.in-addr.arpa", Outside),
        ];
        for (name, want) in cases {
            assert_eq!(parse(name, Z), *want, "{name}");
        }
    }

    /// What a pod's resolver sends with `ndots:5` and search path
    /// `<ns>.svc.<zone> svc.<zone> <zone>`: every expansion must parse to a
    /// shape whose lookup either finds the service or cleanly misses.
    #[test]
    fn search_path_expansions() {
        use Qname::*;
        let search = [
            "default.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
        ];
        let expand =
            |q: &str| -> Vec<String> { search.iter().map(|s| format!("{q}.{s}")).collect() };
        // `my-nginx` from namespace default: the first expansion is the service.
        let e = expand("my-nginx");
        assert_eq!(parse(&e[0], Z), Service("my-nginx.default"));
        assert_eq!(parse(&e[1], Z), Namespace("my-nginx"));
        assert_eq!(parse(&e[2], Z), NoSuchName);
        // `httpenv.default` from another namespace: the second expansion hits.
        let e = expand("httpenv.default");
        assert_eq!(
            parse(&e[0], Z),
            Endpoint {
                host: "httpenv",
                service: "default.default"
            }
        );
        assert_eq!(parse(&e[1], Z), Service("httpenv.default"));
        // `x.y.svc` (svc.ns.svc): the third expansion.
        let e = expand("httpenv.default.svc");
        assert_eq!(parse(&e[2], Z), Service("httpenv.default"));
        // The FQDN under search expansion gets longer and misses.
        let e = expand("web-0.web.ns.svc.cluster.local");
        assert!(e.iter().all(|n| parse(n, Z) == NoSuchName), "{e:?}");
        // An outside name under the search path stays in the zone (a miss:
        // no service `com` in namespace `default`), and only the bare name
        // is forwarded.
        let e = expand("example.com");
        assert_eq!(
            parse(&e[0], Z),
            Endpoint {
                host: "example",
                service: "com.default"
            }
        );
        assert_eq!(parse(&e[1], Z), Service("example.com"));
        assert_eq!(parse(&e[2], Z), NoSuchName);
        assert_eq!(parse("example.com", Z), Outside);
    }

    #[test]
    fn reverse_names_round_trip() {
        for ip in ["10.96.0.10", "fd00::1", "2001:db8::abcd:1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(reverse(reverse_name(ip).trim_end_matches('.')), Some(ip));
            assert_eq!(dashed_ip(&dashed(ip)), Some(ip));
        }
    }
}
