//! The enforcer's view of the cluster: NetworkPolicies, pods and namespaces
//! reduced to what the data plane needs. Pure data and the matching rules of
//! the API (label selectors, CIDRs); the conversion from API objects lives in
//! `k8s.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::Error;

/// Label every namespace carries with its own name (set by the API server
/// upstream; the model adds it so selectors on it always work).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Transport protocol of a policy port, named as nft names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    pub const ALL: [Proto; 3] = [Proto::Tcp, Proto::Udp, Proto::Sctp];

    /// From the Kubernetes spelling; `None` (absent) defaults to TCP as the API does.
    pub fn from_k8s(s: Option<&str>) -> Option<Self> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        })
    }
}

/// An IPv4 prefix such as `10.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }
}

impl FromStr for Cidr {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::Config(format!("{s:?} is not an IPv4 CIDR"));
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        let c = Cidr { addr, prefix };
        // Normalised, so the printed prefix is what the kernel stores.
        Ok(Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & c.mask()),
            prefix,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

pub type Labels = BTreeMap<String, String>;

/// One `matchExpressions` requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Requirement {
    fn matches(&self, labels: &Labels) -> bool {
        match self {
            Self::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            // Upstream: a missing key satisfies NotIn.
            Self::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Self::Exists(k) => labels.contains_key(k),
            Self::DoesNotExist(k) => !labels.contains_key(k),
        }
    }
}

/// A `metav1.LabelSelector`. The empty selector matches everything; a selector
/// the API would reject (unknown operator) matches nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    pub match_labels: Labels,
    pub requirements: Vec<Requirement>,
    pub invalid: bool,
}

impl Selector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// `matchLabels` only.
    pub fn labels<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            match_labels: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Self::default()
        }
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        !self.invalid
            && self
                .match_labels
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
            && self.requirements.iter().all(|r| r.matches(labels))
    }
}

/// A named container port of a pod (what a named policy port resolves to).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NamedPort {
    pub name: String,
    pub proto: Proto,
    pub port: u16,
}

/// A pod as the enforcer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    /// The pod's IPv4 address; pods without one are neither enforced nor peers.
    pub ip: Option<Ipv4Addr>,
    /// Runs on this node: its traffic is enforced here.
    pub local: bool,
    pub ports: Vec<NamedPort>,
}

impl PodInfo {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The port number `name`/`proto` names on this pod, if any container has it.
    pub fn named_port(&self, name: &str, proto: Proto) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.name == name && p.proto == proto)
            .map(|p| p.port)
    }
}

/// Which way a policy (or a part of the table) looks at traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    /// Short form used in generated names.
    pub fn short(self) -> &'static str {
        match self {
            Self::Ingress => "in",
            Self::Egress => "eg",
        }
    }

    /// As metrics label it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        }
    }
}

/// Whom a peer entry selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// Pods matching `pods` in the namespaces `namespaces` selects (`None`: the
    /// policy's own namespace, as a lone `podSelector` means).
    Pods {
        namespaces: Option<Selector>,
        pods: Selector,
    },
    /// `ipBlock`: addresses in `cidr` but in none of `except`.
    Block { cidr: Cidr, except: Vec<Cidr> },
}

/// The port part of a policy port entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRef {
    /// No `port`: every port of the protocol.
    Any,
    /// `port` with optional `endPort`: the range `first..=last`.
    Range(u16, u16),
    /// A named container port, resolved on the pod receiving the traffic.
    Named(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyPort {
    pub proto: Proto,
    pub port: PortRef,
}

/// One ingress or egress rule. `None` means the field was absent or empty,
/// which allows everything; `Some(vec![])` (every entry unusable, e.g. IPv6
/// blocks only) allows nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyRule {
    pub peers: Option<Vec<Peer>>,
    pub ports: Option<Vec<PolicyPort>>,
}

/// A NetworkPolicy with its `policyTypes` already defaulted: `ingress`/`egress`
/// are `Some` exactly when the policy isolates that direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    pub namespace: String,
    pub name: String,
    pub pod_selector: Selector,
    pub ingress: Option<Vec<PolicyRule>>,
    pub egress: Option<Vec<PolicyRule>>,
}

impl PolicyInfo {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn rules(&self, dir: Direction) -> Option<&Vec<PolicyRule>> {
        match dir {
            Direction::Ingress => self.ingress.as_ref(),
            Direction::Egress => self.egress.as_ref(),
        }
    }

    /// Does the policy select `pod` (same namespace, pod selector matches)?
    pub fn selects(&self, pod: &PodInfo) -> bool {
        pod.namespace == self.namespace && self.pod_selector.matches(&pod.labels)
    }
}

/// Everything rule generation looks at. Namespaces map name -> labels.
#[derive(Debug, Clone, Default)]
pub struct ClusterState {
    pub policies: BTreeMap<String, PolicyInfo>,
    pub pods: BTreeMap<String, PodInfo>,
    pub namespaces: BTreeMap<String, Labels>,
}

impl ClusterState {
    /// The labels of namespace `ns`, including the name label every namespace has.
    pub fn namespace_labels(&self, ns: &str) -> Labels {
        let mut labels = self.namespaces.get(ns).cloned().unwrap_or_default();
        labels.insert(NAMESPACE_NAME_LABEL.to_string(), ns.to_string());
        labels
    }

    /// Does `peer` (of a policy in `policy_ns`) select `pod`?
    pub fn peer_selects(&self, policy_ns: &str, peer: &Peer, pod: &PodInfo) -> bool {
        match peer {
            Peer::Pods { namespaces, pods } => {
                let ns_ok = match namespaces {
                    None => pod.namespace == policy_ns,
                    Some(sel) => sel.matches(&self.namespace_labels(&pod.namespace)),
                };
                ns_ok && pods.matches(&pod.labels)
            }
            Peer::Block { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_follow_the_api() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        assert!(Selector::everything().matches(&l));
        assert!(Selector::everything().matches(&Labels::new()));
        assert!(Selector::labels([("app", "web")]).matches(&l));
        assert!(!Selector::labels([("app", "db")]).matches(&l));
        let req = |r: Requirement| Selector {
            requirements: vec![r],
            ..Selector::default()
        };
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(req(Requirement::In("app".into(), v(&["web", "db"]))).matches(&l));
        assert!(!req(Requirement::In("x".into(), v(&["web"]))).matches(&l));
        assert!(!req(Requirement::NotIn("app".into(), v(&["web"]))).matches(&l));
        assert!(req(Requirement::NotIn("x".into(), v(&["web"]))).matches(&l));
        assert!(req(Requirement::Exists("tier".into())).matches(&l));
        assert!(!req(Requirement::DoesNotExist("tier".into())).matches(&l));
        let invalid = Selector {
            invalid: true,
            ..Selector::default()
        };
        assert!(!invalid.matches(&l));
    }

    #[test]
    fn cidrs() {
        let c: Cidr = "10.1.2.3/16".parse().unwrap();
        assert_eq!(c.to_string(), "10.1.0.0/16");
        assert!(c.contains("10.1.200.1".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        assert!("fd00::/8".parse::<Cidr>().is_err());
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
    }

    #[test]
    fn namespaces_always_carry_their_name_label() {
        let s = ClusterState::default();
        assert_eq!(
            s.namespace_labels("prod").get(NAMESPACE_NAME_LABEL),
            Some(&"prod".to_string())
        );
    }
}
