//! Unit tests of what a service gets from the pools on create and update.

use super::*;

fn settings() -> Settings {
    Settings::parse("10.96.0.0/28", "30000-30009", "198.51.100.0/30").unwrap()
}

/// A service as the REST layer hands it to the hooks: defaulted, prepared.
fn service(name: &str, spec: Value) -> Value {
    let mut o = json!({"metadata": {"name": name, "namespace": "default", "uid": name}, "spec": spec,
        "status": {"loadBalancer": {}}});
    svc::default(&mut o);
    svc::prepare(&mut o, None);
    assert!(svc::init_ip_families(&mut o, None).is_empty());
    o
}

fn create(p: &mut Pools, s: &Settings, mut obj: Value) -> Result<Value, String> {
    let owner = owner_of(&obj).unwrap();
    allocate(p, s, None, &mut obj, &owner).map_err(|f| match f {
        Failure::Invalid(e, _) => e.to_string(),
        Failure::Internal(m) => m,
    })?;
    Ok(obj)
}

fn update(
    p: &mut Pools,
    s: &Settings,
    old: &Value,
    change: impl FnOnce(&mut Value),
) -> Result<Value, String> {
    let mut new = old.clone();
    change(&mut new);
    svc::default(&mut new);
    svc::prepare(&mut new, Some(old));
    assert!(svc::init_ip_families(&mut new, Some(old)).is_empty());
    let owner = owner_of(&new).unwrap();
    allocate(p, s, Some(old), &mut new, &owner).map_err(|f| format!("{f:?}"))?;
    release_difference(p, s, old, Some(&new), &owner.uid);
    Ok(new)
}

fn node_ports(o: &Value) -> Vec<i64> {
    svc::ports(o)
        .iter()
        .map(|p| svc::int_field(p, "nodePort"))
        .collect()
}

#[test]
fn cluster_ips_requested_random_reserved_and_full() {
    let s = settings();
    let mut p = Pools::new(&s);
    let a = create(
        &mut p,
        &s,
        service(
            "a",
            json!({"clusterIP": "10.96.0.5", "ports": [{"port": 80}]}),
        ),
    )
    .unwrap();
    assert_eq!(a["spec"]["clusterIPs"], json!(["10.96.0.5"]));
    let again = create(
        &mut p,
        &s,
        service(
            "b",
            json!({"clusterIP": "10.96.0.5", "ports": [{"port": 80}]}),
        ),
    );
    assert_eq!(again.unwrap_err(), "spec.clusterIPs: Invalid value: []string{\"10.96.0.5\"}: failed to allocate IP 10.96.0.5: provided IP is already allocated");
    let out = create(
        &mut p,
        &s,
        service(
            "b",
            json!({"clusterIP": "10.97.0.1", "ports": [{"port": 80}]}),
        ),
    );
    assert_eq!(out.unwrap_err(), "spec.clusterIPs: Invalid value: []string{\"10.97.0.1\"}: failed to allocate IP 10.97.0.1: the provided IP (10.97.0.1) is not in the valid range. The range of valid IPs is 10.96.0.0/28");
    for reserved in ["10.96.0.1", "10.96.0.10"] {
        let out = create(
            &mut p,
            &s,
            service("b", json!({"clusterIP": reserved, "ports": [{"port": 80}]})),
        );
        assert!(out
            .unwrap_err()
            .ends_with("provided IP is already allocated"));
    }
    let mut k = service(
        "kubernetes",
        json!({"clusterIP": "10.96.0.1", "ports": [{"port": 443}]}),
    );
    k["metadata"]["uid"] = json!("k");
    create(&mut p, &s, k).unwrap();
    // 14 addresses: .1 (kubernetes), .5, .10 kept for kube-dns, 11 more.
    let mut seen = HashSet::new();
    for i in 0..11 {
        let o = create(
            &mut p,
            &s,
            service(&format!("s{i}"), json!({"ports": [{"port": 80}]})),
        )
        .unwrap();
        assert!(seen.insert(o["spec"]["clusterIP"].as_str().unwrap().to_string()));
    }
    assert!(!seen.contains("10.96.0.10"));
    let full = create(
        &mut p,
        &s,
        service("last", json!({"ports": [{"port": 80}]})),
    );
    assert_eq!(
        full.unwrap_err(),
        "failed to allocate a serviceIP: range is full"
    );
    // Headless and ExternalName services take nothing.
    create(&mut p, &s, service("h", json!({"clusterIP": "None"}))).unwrap();
    create(
        &mut p,
        &s,
        service(
            "x",
            json!({"type": "ExternalName", "externalName": "a.example"}),
        ),
    )
    .unwrap();
}

#[test]
fn node_ports_shared_requested_and_reverted() {
    let s = settings();
    let mut p = Pools::new(&s);
    let dns = create(&mut p, &s, service("dns", json!({"type": "NodePort", "ports": [
        {"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53}, {"name": "m", "port": 9153}]}))).unwrap();
    let np = node_ports(&dns);
    assert_eq!(np[0], np[1]);
    assert_ne!(np[0], np[2]);
    assert_eq!(p.ports.used(), 2);
    // The second port asks for a taken value: the first one's port is given back.
    let before = p.ports.used();
    let free = (30000..=30009).rev().find(|n| !np.contains(n)).unwrap();
    let err = create(
        &mut p,
        &s,
        service(
            "b",
            json!({"type": "NodePort", "ports": [
        {"name": "a", "port": 80, "nodePort": free}, {"name": "b", "port": 81, "nodePort": np[2]}]}),
        ),
    );
    assert_eq!(
        err.unwrap_err(),
        format!(
            "spec.ports[1].nodePort: Invalid value: {}: provided port is already allocated",
            np[2]
        )
    );
    assert_eq!(p.ports.used(), before);
    let err = create(
        &mut p,
        &s,
        service(
            "c",
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 31000}]}),
        ),
    );
    assert_eq!(err.unwrap_err(), "spec.ports[0].nodePort: Invalid value: 31000: provided port is not in the valid range. The range of valid ports is 30000-30009");
    // LoadBalancer without node ports: only asked-for ones.
    let lb = create(
        &mut p,
        &s,
        service(
            "lb",
            json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false,
        "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": free}]}),
        ),
    )
    .unwrap();
    assert_eq!(node_ports(&lb), [0, free]);
    // Local traffic policy: a health-check node port too.
    let local = create(&mut p, &s, service("local", json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80}]}))).unwrap();
    let hc = svc::int_field(svc::spec(&local), "healthCheckNodePort");
    assert!((30000..=30009).contains(&hc) && !node_ports(&local).contains(&hc));
}

#[test]
fn type_changes_allocate_and_release() {
    let s = settings();
    let mut p = Pools::new(&s);
    let ext = create(
        &mut p,
        &s,
        service(
            "t",
            json!({"type": "ExternalName", "externalName": "a.example"}),
        ),
    )
    .unwrap();
    assert_eq!((p.ips.used(), p.ports.used()), (0, 0));
    let cip = update(&mut p, &s, &ext, |o| {
        o["spec"] = json!({"type": "ClusterIP", "ports": [{"port": 80}]});
    })
    .unwrap();
    assert!(!svc::cluster_ip(&cip).is_empty());
    let np = update(&mut p, &s, &cip, |o| o["spec"]["type"] = json!("NodePort")).unwrap();
    assert_eq!((p.ips.used(), p.ports.used()), (1, 1));
    assert_eq!(np["spec"]["clusterIP"], cip["spec"]["clusterIP"]);
    let lb = update(&mut p, &s, &np, |o| {
        o["spec"]["type"] = json!("LoadBalancer")
    })
    .unwrap();
    assert_eq!(node_ports(&lb), node_ports(&np));
    assert_eq!(p.lb.used(), 1);
    assert!(lb_slots(&s, &lb).len() == 1);
    let back = update(&mut p, &s, &lb, |o| o["spec"]["type"] = json!("ClusterIP")).unwrap();
    assert_eq!((p.ips.used(), p.ports.used(), p.lb.used()), (1, 0, 0));
    update(&mut p, &s, &back, |o| {
        o["spec"]["type"] = json!("ExternalName");
        o["spec"]["externalName"] = json!("a.example");
    })
    .unwrap();
    assert_eq!((p.ips.used(), p.ports.used(), p.lb.used()), (0, 0, 0));
}

#[test]
fn load_balancer_addresses_requested_pending_and_released() {
    let s = settings();
    let mut p = Pools::new(&s);
    let lb = |name: &str, extra: Value| {
        let mut spec = json!({"type": "LoadBalancer", "ports": [{"port": 80}]});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        service(name, spec)
    };
    let a = create(
        &mut p,
        &s,
        lb("a", json!({"loadBalancerIP": "198.51.100.2"})),
    )
    .unwrap();
    assert_eq!(
        a["status"]["loadBalancer"]["ingress"],
        json!([{"ip": "198.51.100.2", "ipMode": "VIP"}])
    );
    let b = create(&mut p, &s, lb("b", json!({}))).unwrap();
    assert_eq!(
        b["status"]["loadBalancer"]["ingress"][0]["ip"],
        "198.51.100.1"
    );
    let c = create(&mut p, &s, lb("c", json!({}))).unwrap();
    assert_eq!(c["status"]["loadBalancer"], json!({}));
    let other = create(
        &mut p,
        &s,
        lb("d", json!({"loadBalancerIP": "203.0.113.5"})),
    )
    .unwrap();
    assert_eq!(other["status"]["loadBalancer"], json!({}));
    let owner_c = owner_of(&c).unwrap();
    assert_eq!(
        pick_lb(&mut p, &s, &c, &owner_c),
        Err("no available IPs in pool 198.51.100.0/30".into())
    );
    assert_eq!(
        pick_lb(&mut p, &s, &other, &owner_of(&other).unwrap()),
        Err("requested loadBalancerIP 203.0.113.5 is not in pool 198.51.100.0/30".into())
    );
    // A failed write of `a` gives back only what `a` holds.
    assert_eq!(release_difference(&mut p, &s, &a, None, "b"), 0);
    assert_eq!(release_difference(&mut p, &s, &a, None, "a"), 3);
    assert_eq!(pick_lb(&mut p, &s, &c, &owner_c), Ok(1));
    // Another implementation's class is left alone.
    let classed = create(
        &mut p,
        &s,
        lb("e", json!({"loadBalancerClass": "example.com/x"})),
    )
    .unwrap();
    assert_eq!(classed["status"]["loadBalancer"], json!({}));
}
