//! The per-pod `/etc/resolv.conf`, `/etc/hosts` and `/etc/hostname`, in the form
//! kubelet (and the container runtime it drives) writes them.

use k8s_openapi::api::core::v1::Pod;

/// What the node contributes to pod DNS.
#[derive(Debug, Clone)]
pub struct DnsSettings {
    pub cluster_domain: String,
    pub cluster_dns: String,
    /// The node's own resolv.conf (the `Default` policy copies it).
    pub host_resolv: String,
}

const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCH: usize = 32;

#[derive(Debug, Default, PartialEq)]
struct Resolv {
    nameservers: Vec<String>,
    searches: Vec<String>,
    options: Vec<String>,
}

fn parse_resolv(text: &str) -> Resolv {
    let mut r = Resolv::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => r.nameservers.extend(words.next().map(str::to_string)),
            Some("search") | Some("domain") => {
                r.searches = words.map(str::to_string).collect();
            }
            Some("options") => r.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    r
}

fn push_unique(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for i in items {
        if !list.contains(&i) {
            list.push(i);
        }
    }
}

/// Options merge by name: a later `ndots:2` replaces an earlier `ndots:5`.
fn merge_options(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for i in items {
        let name = i.split(':').next().unwrap_or("").to_string();
        if let Some(slot) = list
            .iter_mut()
            .find(|o| o.split(':').next() == Some(name.as_str()))
        {
            *slot = i;
        } else {
            list.push(i);
        }
    }
}

/// The pod's resolv.conf: `dnsPolicy` ClusterFirst (default), ClusterFirstWithHostNet,
/// Default or None, then `dnsConfig` merged in.
pub fn resolv_conf(pod: &Pod, dns: &DnsSettings) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let host = parse_resolv(&dns.host_resolv);
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let mut r = match policy {
        "None" => Resolv::default(),
        "Default" => host,
        "ClusterFirst" if host_network => host,
        _ => {
            let d = &dns.cluster_domain;
            let mut searches = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
            push_unique(&mut searches, host.searches);
            Resolv {
                nameservers: vec![dns.cluster_dns.clone()],
                searches,
                options: vec!["ndots:5".to_string()],
            }
        }
    };
    if let Some(cfg) = &spec.dns_config {
        push_unique(
            &mut r.nameservers,
            cfg.nameservers.clone().unwrap_or_default(),
        );
        push_unique(&mut r.searches, cfg.searches.clone().unwrap_or_default());
        merge_options(
            &mut r.options,
            cfg.options.iter().flatten().filter_map(|o| {
                let name = o.name.clone()?;
                Some(match &o.value {
                    Some(v) => format!("{name}:{v}"),
                    None => name,
                })
            }),
        );
    }
    r.nameservers.truncate(MAX_NAMESERVERS);
    r.searches.truncate(MAX_SEARCH);
    let mut out = String::new();
    if !r.searches.is_empty() {
        out.push_str(&format!("search {}\n", r.searches.join(" ")));
    }
    for n in &r.nameservers {
        out.push_str(&format!("nameserver {n}\n"));
    }
    if !r.options.is_empty() {
        out.push_str(&format!("options {}\n", r.options.join(" ")));
    }
    out
}

/// The pod's hostname: `spec.hostname` or the pod name, cut to 63 characters
/// (without a trailing `-` or `.`), as kubelet does.
pub fn hostname(pod: &Pod) -> String {
    let spec = pod.spec.as_ref();
    let name = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    let mut h: String = name.chars().take(63).collect();
    while h.ends_with(['-', '.']) {
        h.pop();
    }
    h
}

/// The fully qualified name when `spec.subdomain` is set.
pub fn fqdn(pod: &Pod, cluster_domain: &str) -> Option<String> {
    let sub = pod
        .spec
        .as_ref()?
        .subdomain
        .clone()
        .filter(|s| !s.is_empty())?;
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    Some(format!("{}.{sub}.{ns}.svc.{cluster_domain}", hostname(pod)))
}

/// The pod's `/etc/hosts`, kubelet's managed file.
pub fn hosts(pod: &Pod, pod_ips: &[String], cluster_domain: &str) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    let host = hostname(pod);
    for ip in pod_ips {
        match fqdn(pod, cluster_domain) {
            Some(f) => out.push_str(&format!("{ip}\t{f}\t{host}\n")),
            None => out.push_str(&format!("{ip}\t{host}\n")),
        }
    }
    let aliases = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_aliases.clone())
        .unwrap_or_default();
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            let names = a.hostnames.unwrap_or_default();
            if !names.is_empty() {
                out.push_str(&format!("{}\t{}\n", a.ip, names.join("\t")));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn dns() -> DnsSettings {
        DnsSettings {
            cluster_domain: "cluster.local".into(),
            cluster_dns: "10.96.0.10".into(),
            host_resolv: "nameserver 192.0.2.53\nsearch corp.example\noptions edns0\n".into(),
        }
    }

    #[test]
    fn cluster_first() {
        let p = pod(
            json!({"metadata": {"name": "web", "namespace": "shop"}, "spec": {"containers": []}}),
        );
        assert_eq!(
            resolv_conf(&p, &dns()),
            "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\n\
             nameserver 10.96.0.10\n\
             options ndots:5\n"
        );
    }

    #[test]
    fn default_none_and_dns_config() {
        let p = pod(json!({"metadata": {"name": "a", "namespace": "x"},
            "spec": {"containers": [], "dnsPolicy": "Default"}}));
        assert_eq!(
            resolv_conf(&p, &dns()),
            "search corp.example\nnameserver 192.0.2.53\noptions edns0\n"
        );
        let p = pod(json!({"metadata": {"name": "a", "namespace": "x"},
            "spec": {"containers": [], "dnsPolicy": "None", "dnsConfig": {
                "nameservers": ["1.2.3.4"], "searches": ["ns1.svc.cluster-domain.example"],
                "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}}));
        assert_eq!(
            resolv_conf(&p, &dns()),
            "search ns1.svc.cluster-domain.example\nnameserver 1.2.3.4\noptions ndots:2 edns0\n"
        );
        let p = pod(json!({"metadata": {"name": "a", "namespace": "x"},
            "spec": {"containers": [], "dnsConfig": {"options": [{"name": "ndots", "value": "1"}]}}}));
        assert!(resolv_conf(&p, &dns()).ends_with("options ndots:1\n"));
    }

    #[test]
    fn hosts_file() {
        let p = pod(
            json!({"metadata": {"name": "nginx", "namespace": "default"}, "spec": {"containers": []}}),
        );
        assert_eq!(
            hosts(&p, &["10.200.0.4".into()], "cluster.local"),
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n\
             10.200.0.4\tnginx\n"
        );
        let p = pod(
            json!({"metadata": {"name": "web-0", "namespace": "default"},
            "spec": {"containers": [], "hostname": "busybox-1", "subdomain": "sub",
                     "hostAliases": [{"ip": "127.0.0.1", "hostnames": ["foo.local", "bar.local"]}]}}),
        );
        let h = hosts(&p, &["10.244.0.9".into()], "cluster.local");
        assert!(h.contains("10.244.0.9\tbusybox-1.sub.default.svc.cluster.local\tbusybox-1\n"));
        assert!(h.ends_with("\n# Entries added by HostAliases.\n127.0.0.1\tfoo.local\tbar.local\n"));
        assert_eq!(hostname(&p), "busybox-1");
    }
}
