//! Table tests: defaulting, preparation, IP family initialisation and validation,
//! each error asserted as upstream renders it (`field: message`).

use serde_json::{json, Value};

use super::*;

const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const QUALIFIED_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

fn svc(spec: Value) -> Value {
    json!({"metadata": {"name": "s", "namespace": "default"}, "spec": spec})
}

fn defaulted(spec: Value) -> Value {
    let mut o = svc(spec);
    default(&mut o);
    o
}

/// What a create reports, after defaulting as the REST layer does.
fn create_errors(spec: Value) -> Vec<String> {
    validate(&defaulted(spec), None)
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// A stored service: defaulted, prepared and given families as the server would.
fn stored(spec: Value) -> Value {
    let mut o = defaulted(spec);
    prepare(&mut o, None);
    assert!(init_ip_families(&mut o, None).is_empty());
    o
}

/// What an update from `old` to `new_spec` reports (status carried over as the REST layer does).
fn update_errors(old: &Value, new_spec: Value) -> Vec<String> {
    let mut new = svc(new_spec);
    new["status"] = old["status"].clone();
    default(&mut new);
    validate(&new, Some(old))
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn defaults_like_set_defaults_service() {
    let o = defaulted(json!({"ports": [{"port": 80}, {"port": 443, "targetPort": "https"}]}));
    let s = &o["spec"];
    assert_eq!(s["type"], "ClusterIP");
    assert_eq!(s["sessionAffinity"], "None");
    assert_eq!(s["internalTrafficPolicy"], "Cluster");
    assert!(s.get("externalTrafficPolicy").is_none());
    assert!(s.get("sessionAffinityConfig").is_none());
    assert_eq!(s["ports"][0]["protocol"], "TCP");
    assert_eq!(s["ports"][0]["targetPort"], 80);
    assert_eq!(s["ports"][1]["targetPort"], "https");

    let cases: &[(Value, &str, Value)] = &[
        (
            json!({"type": "NodePort"}),
            "/spec/externalTrafficPolicy",
            json!("Cluster"),
        ),
        (
            json!({"type": "LoadBalancer"}),
            "/spec/externalTrafficPolicy",
            json!("Cluster"),
        ),
        (
            json!({"type": "LoadBalancer"}),
            "/spec/allocateLoadBalancerNodePorts",
            json!(true),
        ),
        (
            json!({"externalIPs": ["1.2.3.4"]}),
            "/spec/externalTrafficPolicy",
            json!("Cluster"),
        ),
        (
            json!({"type": "ExternalName"}),
            "/spec/internalTrafficPolicy",
            Value::Null,
        ),
        (
            json!({"type": "NodePort", "externalTrafficPolicy": "Local"}),
            "/spec/externalTrafficPolicy",
            json!("Local"),
        ),
        (
            json!({"ports": [{"port": 53, "targetPort": 0}]}),
            "/spec/ports/0/targetPort",
            json!(53),
        ),
        (
            json!({"ports": [{"port": 53, "targetPort": ""}]}),
            "/spec/ports/0/targetPort",
            json!(53),
        ),
        (
            json!({"ports": [{"port": 53, "protocol": "UDP"}]}),
            "/spec/ports/0/protocol",
            json!("UDP"),
        ),
        (
            json!({"sessionAffinity": "ClientIP"}),
            "/spec/sessionAffinityConfig/clientIP/timeoutSeconds",
            json!(10800),
        ),
        (
            json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {}}}),
            "/spec/sessionAffinityConfig/clientIP/timeoutSeconds",
            json!(10800),
        ),
        (
            json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10000}}}),
            "/spec/sessionAffinityConfig/clientIP/timeoutSeconds",
            json!(10000),
        ),
        (
            json!({"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 5}}}),
            "/spec/sessionAffinityConfig",
            Value::Null,
        ),
        (json!({"type": ""}), "/spec/type", json!("ClusterIP")),
    ];
    for (spec, ptr, want) in cases {
        let o = defaulted(spec.clone());
        assert_eq!(o.pointer(ptr).unwrap_or(&Value::Null), want, "{spec} {ptr}");
    }
    let mut lb = svc(json!({"type": "LoadBalancer"}));
    lb["status"] =
        json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.1"}, {"hostname": "a.example"}]}});
    default(&mut lb);
    assert_eq!(lb["status"]["loadBalancer"]["ingress"][0]["ipMode"], "VIP");
    assert!(lb["status"]["loadBalancer"]["ingress"][1]
        .get("ipMode")
        .is_none());
    // A service with no spec at all is still defaulted (and then rejected for its ports).
    let mut bare = json!({"metadata": {"name": "s"}});
    default(&mut bare);
    assert_eq!(bare["spec"]["type"], "ClusterIP");
}

#[test]
fn ip_families_for_a_single_stack_cluster() {
    type Want = Result<(&'static str, Value), &'static str>;
    let cases: &[(Value, Want)] = &[
        (json!({"ports": [{"port": 80}]}), Ok(("SingleStack", json!(["IPv4"])))),
        (json!({"ports": [{"port": 80}], "ipFamilyPolicy": "PreferDualStack"}), Ok(("PreferDualStack", json!(["IPv4"])))),
        (json!({"clusterIP": "None", "selector": {"a": "b"}}), Ok(("SingleStack", json!(["IPv4"])))),
        (json!({"clusterIP": "None"}), Ok(("RequireDualStack", json!(["IPv4", "IPv6"])))),
        (json!({"clusterIP": "10.96.0.5", "ports": [{"port": 80}]}), Ok(("SingleStack", json!(["IPv4"])))),
        (json!({"ports": [{"port": 80}], "ipFamilyPolicy": "RequireDualStack"}),
         Err("spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services")),
        (json!({"ports": [{"port": 80}], "ipFamilies": ["IPv6"]}),
         Err("spec.ipFamilies[0]: Invalid value: \"IPv6\": not configured on this cluster")),
        (json!({"ports": [{"port": 80}], "clusterIP": "fd00::1"}),
         Err("spec.clusterIPs[0]: Invalid value: []string{\"fd00::1\"}: IPv6 is not configured on this cluster")),
        (json!({"ports": [{"port": 80}], "ipFamilies": ["IPv4", "IPv6"]}),
         Err("spec.ipFamilyPolicy: Invalid value: \"SingleStack\": must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified")),
    ];
    for (spec, want) in cases {
        let mut o = defaulted(spec.clone());
        prepare(&mut o, None);
        let errs: Vec<String> = init_ip_families(&mut o, None)
            .iter()
            .map(ToString::to_string)
            .collect();
        match want {
            Ok((policy, families)) => {
                assert!(errs.is_empty(), "{spec}: {errs:?}");
                assert_eq!(o["spec"]["ipFamilyPolicy"], *policy, "{spec}");
                assert_eq!(o["spec"]["ipFamilies"], *families, "{spec}");
            }
            Err(msg) => assert_eq!(errs, vec![msg.to_string()], "{spec}"),
        }
    }
}

#[test]
fn create_validation_messages() {
    let ok = |spec: Value| assert_eq!(create_errors(spec.clone()), Vec::<String>::new(), "{spec}");
    ok(json!({"ports": [{"port": 80}]}));
    ok(json!({"clusterIP": "None"}));
    ok(json!({"type": "ExternalName", "externalName": "db.example.com."}));
    ok(
        json!({"ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53}]}),
    );
    ok(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30000}]}));
    ok(
        json!({"type": "LoadBalancer", "loadBalancerIP": "78.11.24.19", "ports": [{"port": 80, "protocol": "TCP"}]}),
    );
    ok(
        json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10000}}, "ports": [{"name": "http", "port": 80}]}),
    );
    ok(
        json!({"ports": [{"port": 80, "appProtocol": "kubernetes.io/h2c"}], "selector": {"app.kubernetes.io/name": "web"}}),
    );

    let cases: Vec<(Value, Vec<String>)> = vec![
        (json!({}), vec!["spec.ports: Required value".into()]),
        (json!({"ports": [{"port": 80}, {"port": 443}]}), vec![
            "spec.ports[0].name: Required value".into(),
            "spec.ports[1].name: Required value".into(),
        ]),
        (json!({"ports": [{"name": "http", "port": 80}, {"name": "http", "port": 81}]}),
         vec!["spec.ports[1].name: Duplicate value: \"http\"".into()]),
        (json!({"ports": [{"name": "HTTP", "port": 80}]}),
         vec![format!("spec.ports[0].name: Invalid value: \"HTTP\": {LABEL_MSG}")]),
        (json!({"ports": [{"port": 0}]}), vec![
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive".into(),
            "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive".into(),
        ]),
        (json!({"ports": [{"port": 80, "targetPort": 70000}]}),
         vec!["spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive".into()]),
        (json!({"ports": [{"port": 80, "protocol": "ICMP"}]}),
         vec!["spec.ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"".into()]),
        (json!({"ports": [{"port": 80, "targetPort": "-Web--Port_1234567"}]}), vec![
            "spec.ports[0].targetPort: Invalid value: \"-Web--Port_1234567\": must be no more than 15 characters".into(),
            "spec.ports[0].targetPort: Invalid value: \"-Web--Port_1234567\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into(),
            "spec.ports[0].targetPort: Invalid value: \"-Web--Port_1234567\": must not contain consecutive hyphens".into(),
            "spec.ports[0].targetPort: Invalid value: \"-Web--Port_1234567\": must not begin or end with a hyphen".into(),
        ]),
        (json!({"ports": [{"port": 80, "targetPort": "8080"}]}),
         vec!["spec.ports[0].targetPort: Invalid value: \"8080\": must contain at least one letter (a-z)".into()]),
        (json!({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]}),
         vec!["spec.ports[1]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}".into()]),
        (json!({"type": "ExternalName"}), vec!["spec.externalName: Required value".into()]),
        (json!({"type": "ExternalName", "externalName": "foo_bar"}),
         vec![format!("spec.externalName: Invalid value: \"foo_bar\": {SUBDOMAIN_MSG}")]),
        (json!({"type": "ExternalName", "externalName": "a.example", "clusterIP": "10.96.0.9"}),
         vec!["spec.clusterIPs: Forbidden: may not be set for ExternalName services".into()]),
        (json!({"type": "ExternalName", "externalName": "a.example", "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}), vec![
            "spec.ipFamilies: Forbidden: may not be set for ExternalName services".into(),
            "spec.ipFamilyPolicy: Forbidden: may not be set for ExternalName services".into(),
        ]),
        (json!({"ports": [{"port": 80}], "externalIPs": ["abc", "127.0.0.1", "0.0.0.0", "169.254.1.1", "224.0.0.5", "1.2.3.4"]}), vec![
            "spec.externalIPs[0]: Invalid value: \"abc\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into(),
            "spec.externalIPs[1]: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)".into(),
            "spec.externalIPs[2]: Invalid value: \"0.0.0.0\": may not be unspecified (0.0.0.0)".into(),
            "spec.externalIPs[3]: Invalid value: \"169.254.1.1\": may not be in the link-local range (169.254.0.0/16, fe80::/10)".into(),
            "spec.externalIPs[4]: Invalid value: \"224.0.0.5\": may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)".into(),
        ]),
        (json!({"type": "NodePort", "clusterIP": "None", "ports": [{"port": 80}]}),
         vec!["spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services".into()]),
        (json!({"type": "LoadBalancer", "clusterIP": "None", "ports": [{"port": 80}]}),
         vec!["spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for LoadBalancer services".into()]),
        (json!({"clusterIP": "abc", "ports": [{"port": 80}]}),
         vec!["spec.clusterIPs[0]: Invalid value: \"abc\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into()]),
        (json!({"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.6"], "ports": [{"port": 80}]}),
         vec!["spec.clusterIPs: Invalid value: []string{\"10.96.0.6\"}: first value must match `clusterIP`".into()]),
        (json!({"clusterIPs": ["10.96.0.6"], "ports": [{"port": 80}]}),
         vec!["spec.clusterIPs: Invalid value: []string{\"10.96.0.6\"}: must be empty when `clusterIP` is not specified".into()]),
        (json!({"clusterIP": "None", "clusterIPs": ["None", "10.96.0.1"]}),
         vec![
            // Not headless (two values), so ports are required.
            "spec.ports: Required value".into(),
            "spec.clusterIPs: Invalid value: []string{\"None\", \"10.96.0.1\"}: 'None' must be the first and only value".into(),
        ]),
        (json!({"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5", "10.96.0.6"], "ports": [{"port": 80}]}),
         vec!["spec.clusterIPs: Invalid value: []string{\"10.96.0.5\", \"10.96.0.6\"}: may specify no more than one IP for each IP family".into()]),
        (json!({"ipFamilies": ["IPv5", "IPv4", "IPv4"], "ipFamilyPolicy": "Both", "ports": [{"port": 80}]}), vec![
            "spec.ipFamilies[0]: Unsupported value: \"IPv5\": supported values: \"IPv4\", \"IPv6\"".into(),
            "spec.ipFamilies[2]: Duplicate value: \"IPv4\"".into(),
            "spec.ipFamilyPolicy: Unsupported value: \"Both\": supported values: \"PreferDualStack\", \"RequireDualStack\", \"SingleStack\"".into(),
        ]),
        (json!({"type": "Foo", "ports": [{"port": 80}]}), vec![
            "spec.type: Unsupported value: \"Foo\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"".into(),
        ]),
        (json!({"ports": [{"port": 80, "nodePort": 30001}]}),
         vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'".into()]),
        (json!({"type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": 30001}, {"name": "b", "port": 81, "nodePort": 30001}]}),
         vec!["spec.ports[1].nodePort: Duplicate value: 30001".into()]),
        (json!({"ports": [{"port": 80}], "selector": {"a b": "c d"}}), vec![
            format!("spec.selector: Invalid value: \"a b\": {QUALIFIED_MSG}"),
            "spec.selector: Invalid value: \"c d\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into(),
        ]),
        (json!({"ports": [{"port": 80}], "sessionAffinity": "Sticky"}),
         vec!["spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\"".into()]),
        (json!({"ports": [{"port": 80}], "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}}),
         vec!["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400".into()]),
        (json!({"ports": [{"port": 80}], "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86401}}}),
         vec!["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: must be greater than 0 and less than 86400".into()]),
        (json!({"ports": [{"port": 80}], "externalTrafficPolicy": "Local"}),
         vec!["spec.externalTrafficPolicy: Invalid value: \"Local\": may only be set for externally-accessible services".into()]),
        (json!({"type": "NodePort", "ports": [{"port": 80}], "externalTrafficPolicy": "Everywhere"}),
         vec!["spec.externalTrafficPolicy: Unsupported value: \"Everywhere\": supported values: \"Cluster\", \"Local\"".into()]),
        (json!({"type": "NodePort", "ports": [{"port": 80}], "healthCheckNodePort": 30005}),
         vec!["spec.healthCheckNodePort: Invalid value: 30005: may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'".into()]),
        (json!({"type": "NodePort", "ports": [{"port": 80}], "allocateLoadBalancerNodePorts": false}),
         vec!["spec.allocateLoadBalancerNodePorts: Forbidden: may only be used when `type` is 'LoadBalancer'".into()]),
        (json!({"ports": [{"port": 80}], "loadBalancerSourceRanges": ["10.0.0.0/8"]}),
         vec!["spec.LoadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'".into()]),
        (json!({"type": "LoadBalancer", "ports": [{"port": 80}], "loadBalancerSourceRanges": ["10.0.0.0/33"]}),
         vec!["spec.LoadBalancerSourceRanges[0]: Invalid value: \"10.0.0.0/33\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)".into()]),
        (json!({"ports": [{"port": 80}], "loadBalancerClass": "example.com/lb"}),
         vec!["spec.loadBalancerClass: Forbidden: may only be used when `type` is 'LoadBalancer'".into()]),
        (json!({"ports": [{"port": 80}], "internalTrafficPolicy": "Nearby"}),
         vec!["spec.internalTrafficPolicy: Unsupported value: \"Nearby\": supported values: \"Cluster\", \"Local\"".into()]),
        (json!({"ports": [{"port": 80}], "trafficDistribution": "PreferFar"}),
         vec!["spec.trafficDistribution: Unsupported value: \"PreferFar\": supported values: \"PreferClose\"".into()]),
    ];
    for (spec, want) in cases {
        assert_eq!(create_errors(spec.clone()), want, "{spec}");
    }
    let mut annotated = defaulted(json!({"ports": [{"port": 80}]}));
    annotated["metadata"]["annotations"] = json!({
        "service.kubernetes.io/topology-mode": "Auto",
        "service.kubernetes.io/topology-aware-hints": "Disabled",
    });
    assert_eq!(
        validate(&annotated, None)[0].to_string(),
        "metadata.annotations[service.kubernetes.io/topology-mode]: Invalid value: \"Auto\": must match annotations[service.kubernetes.io/topology-aware-hints] when both are specified"
    );
}

#[test]
fn update_validation_messages() {
    let mut old = stored(json!({"ports": [{"port": 80}]}));
    old["spec"]["clusterIP"] = json!("10.96.0.5");
    old["spec"]["clusterIPs"] = json!(["10.96.0.5"]);
    let cases: Vec<(Value, Vec<String>)> = vec![
        // A client that leaves the allocated address out keeps it.
        (json!({"ports": [{"port": 80}]}), vec![]),
        (json!({"clusterIP": "10.96.0.7", "clusterIPs": ["10.96.0.7"], "ports": [{"port": 80}]}),
         vec!["spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.7\"}: may not change once set".into()]),
        // Only the singular field changed: upstream reports the mismatch instead.
        (json!({"clusterIP": "10.96.0.7", "clusterIPs": ["10.96.0.5"], "ports": [{"port": 80}]}),
         vec!["spec.clusterIPs: Invalid value: []string{\"10.96.0.5\"}: first value must match `clusterIP`".into()]),
        (json!({"clusterIP": "None", "clusterIPs": ["None"], "ports": [{"port": 80}]}),
         vec!["spec.clusterIPs[0]: Invalid value: []string{\"None\"}: may not change once set".into()]),
        (json!({"ipFamilies": ["IPv6"], "ports": [{"port": 80}]}), vec![
            "spec.ipFamilies[0]: Invalid value: []core.IPFamily{\"IPv6\"}: may not change once set".into(),
            "spec.clusterIPs[0]: Invalid value: \"10.96.0.5\": expected an IPv6 value as indicated by `ipFamilies[0]`".into(),
        ]),
        // Type changes: the address goes with ExternalName, comes back without it.
        (json!({"type": "ExternalName", "externalName": "foo.example.com", "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "ports": [{"port": 80}]}), vec![]),
        (json!({"type": "NodePort", "ports": [{"port": 80}]}), vec![]),
    ];
    for (spec, want) in cases {
        assert_eq!(update_errors(&old, spec.clone()), want, "{spec}");
    }

    let ext = stored(json!({"type": "ExternalName", "externalName": "a.example"}));
    assert_eq!(
        update_errors(&ext, json!({"type": "ClusterIP", "ports": [{"port": 80}]})),
        Vec::<String>::new()
    );

    let mut lb = stored(
        json!({"type": "LoadBalancer", "loadBalancerClass": "a.example/x", "ports": [{"port": 80}]}),
    );
    lb["spec"]["clusterIP"] = json!("10.96.0.8");
    lb["spec"]["clusterIPs"] = json!(["10.96.0.8"]);
    assert_eq!(
        update_errors(
            &lb,
            json!({"type": "LoadBalancer", "loadBalancerClass": "b.example/x", "ports": [{"port": 80}]})
        ),
        vec![
            "spec.loadBalancerClass: Invalid value: \"b.example/x\": may not change once set"
                .to_string()
        ]
    );

    // Status writes are checked as status: a load balancer only on a LoadBalancer.
    let mut st = old.clone();
    st["status"] = json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}]}});
    assert_eq!(
        validate(&st, Some(&old))
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec!["status.loadBalancer.ingress: Forbidden: may only be used when `spec.type` is 'LoadBalancer'"]
    );
    let mut st = lb.clone();
    st["status"] = json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}, {"ip": "x", "ipMode": "VIP"}, {"hostname": "a.example", "ipMode": "Proxy"}]}});
    default(&mut st);
    assert_eq!(
        validate(&st, Some(&lb))
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec![
            "status.loadBalancer.ingress[1].ip: Invalid value: \"x\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            "status.loadBalancer.ingress[2].ipMode: Forbidden: may not be specified when `ip` is not set",
        ]
    );
}

#[test]
fn prepare_patches_allocated_values_and_drops_with_type() {
    let mut old = stored(json!({"type": "NodePort", "ports": [
        {"name": "http", "port": 80}, {"name": "https", "port": 443}]}));
    old["spec"]["clusterIP"] = json!("10.96.0.5");
    old["spec"]["clusterIPs"] = json!(["10.96.0.5"]);
    old["spec"]["ports"][0]["nodePort"] = json!(31704);
    old["spec"]["ports"][1]["nodePort"] = json!(32453);

    // Re-submitting the original manifest keeps the address and node ports.
    let mut again = defaulted(json!({"type": "NodePort", "ports": [
        {"name": "https", "port": 443}, {"name": "http", "port": 80}]}));
    prepare(&mut again, Some(&old));
    assert_eq!(again["spec"]["clusterIPs"], json!(["10.96.0.5"]));
    assert_eq!(again["spec"]["ports"][0]["nodePort"], 32453);
    assert_eq!(again["spec"]["ports"][1]["nodePort"], 31704);

    // NodePort -> ClusterIP: node ports and the external policy go.
    let mut to_cip = old.clone();
    to_cip["spec"]["type"] = json!("ClusterIP");
    prepare(&mut to_cip, Some(&old));
    assert!(to_cip["spec"]["ports"][0].get("nodePort").is_none());
    assert!(to_cip["spec"].get("externalTrafficPolicy").is_none());
    assert_eq!(to_cip["spec"]["clusterIP"], "10.96.0.5");

    // -> ExternalName: the address and families go too.
    let mut to_ext = old.clone();
    to_ext["spec"]["type"] = json!("ExternalName");
    prepare(&mut to_ext, Some(&old));
    for gone in [
        "clusterIP",
        "clusterIPs",
        "ipFamilies",
        "ipFamilyPolicy",
        "internalTrafficPolicy",
    ] {
        assert!(to_ext["spec"].get(gone).is_none(), "{gone}");
    }

    // LoadBalancer -> ClusterIP: the load balancer's status and flags go.
    let mut lb = stored(json!({"type": "LoadBalancer", "ports": [{"port": 80}]}));
    lb["status"] = json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.4", "ipMode": "VIP"}]}});
    let mut back = lb.clone();
    back["spec"]["type"] = json!("ClusterIP");
    prepare(&mut back, Some(&lb));
    assert_eq!(back["status"], json!({"loadBalancer": {}}));
    assert!(back["spec"].get("allocateLoadBalancerNodePorts").is_none());
}

#[test]
fn sloppy_ip_parsing_as_go() {
    assert_eq!(parse_ip("010.001.0.1"), parse_ip("10.1.0.1"));
    assert_eq!(family_of("::ffff:10.0.0.1"), Some("IPv4"));
    assert_eq!(family_of("fd00::1"), Some("IPv6"));
    assert_eq!(parse_ip("1.2.3"), None);
    assert_eq!(parse_ip("1.2.3.4.5"), None);
    assert_eq!(parse_ip("256.1.1.1"), None);
}
