//! From Service and EndpointSlice objects to the data plane's view.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use skiff_proxy::k8s::service_info;
use skiff_proxy::model::Proto;

fn svc(v: serde_json::Value) -> Service {
    serde_json::from_value(v).expect("service")
}

fn slice(v: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(v).expect("slice")
}

#[test]
fn load_balancer_with_named_ports_and_conditions() {
    let s = svc(serde_json::json!({
        "metadata": {"name": "web", "namespace": "ns"},
        "spec": {
            "type": "LoadBalancer",
            "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
            "externalIPs": ["203.0.113.9"],
            "sessionAffinity": "ClientIP",
            "externalTrafficPolicy": "Local",
            "ports": [
                {"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30100},
                {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30101}
            ]
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "192.168.78.1"}]}}
    }));
    let a = slice(serde_json::json!({
        "metadata": {"name": "web-a", "namespace": "ns",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}, {"name": "dns", "port": 5353, "protocol": "UDP"}],
        "endpoints": [
            {"addresses": ["10.244.0.2"], "nodeName": "n1"},
            {"addresses": ["10.244.0.3"], "nodeName": "n2",
             "conditions": {"ready": false, "serving": true, "terminating": true}}
        ]
    }));
    let v6 = slice(serde_json::json!({
        "metadata": {"name": "web-b", "namespace": "ns"},
        "addressType": "IPv6",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [{"addresses": ["fd00::2"]}]
    }));
    let info = service_info(&s, [&a, &v6].into_iter(), "n1").expect("info");
    assert_eq!(
        info.cluster_ips,
        vec!["10.96.0.20".parse::<std::net::Ipv4Addr>().expect("ip")]
    );
    assert_eq!(info.external_ips.len(), 2, "externalIPs and LB ingress");
    assert_eq!(
        info.load_balancer_ips,
        vec!["192.168.78.1".parse::<std::net::Ipv4Addr>().expect("ip")],
        "only the ingress is the node's to answer for"
    );
    assert_eq!(info.affinity_timeout, Some(10800));
    assert!(info.external_local && !info.internal_local);
    assert_eq!(info.ports.len(), 2);
    let http = &info.ports[0];
    assert_eq!(
        (http.proto, http.port, http.node_port),
        (Proto::Tcp, 80, Some(30100))
    );
    assert_eq!(http.endpoints.len(), 2);
    assert!(http.endpoints[0].ready && http.endpoints[0].local);
    assert!(!http.endpoints[1].ready && http.endpoints[1].terminating && !http.endpoints[1].local);
    let dns = &info.ports[1];
    assert_eq!((dns.proto, dns.endpoints[0].port), (Proto::Udp, 5353));
}

#[test]
fn external_name_is_skipped_and_cluster_ip_has_no_node_ports() {
    let s = svc(serde_json::json!({
        "metadata": {"name": "x", "namespace": "ns"},
        "spec": {"type": "ExternalName", "externalName": "example.com"}
    }));
    assert!(service_info(&s, std::iter::empty(), "n1").is_none());
    let s = svc(serde_json::json!({
        "metadata": {"name": "c", "namespace": "ns"},
        "spec": {"clusterIP": "None", "ports": [{"port": 80, "nodePort": 30000}]}
    }));
    let info = service_info(&s, std::iter::empty(), "n1").expect("info");
    assert!(info.cluster_ips.is_empty(), "headless");
    assert_eq!(info.ports[0].node_port, None);
}
