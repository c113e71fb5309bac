use super::*;
use crate::scheduler::tests::{labels, node, pod, service};
use k8s_openapi::api::core::v1::PodSpec;

fn constrained(
    name: &str,
    app: &str,
    key: &str,
    max_skew: i32,
    when: &str,
    min_domains: Option<i32>,
) -> Pod {
    let mut p = (*pod(name, None, app)).clone();
    let spec = p.spec.get_or_insert_with(PodSpec::default);
    spec.topology_spread_constraints = Some(vec![TopologySpreadConstraint {
        max_skew,
        topology_key: key.into(),
        when_unsatisfiable: when.into(),
        label_selector: Some(LabelSelector {
            match_labels: labels(&[("app", app)]),
            ..Default::default()
        }),
        min_domains,
        ..Default::default()
    }]);
    p
}

#[test]
fn do_not_schedule_filters_by_skew() {
    let nodes = [
        node("a", "True", &[(ZONE, "z1")]),
        node("b", "True", &[(ZONE, "z1")]),
        node("c", "True", &[(ZONE, "z2")]),
        node("d", "True", &[]),
    ];
    let pods = [pod("w1", Some("a"), "web"), pod("o1", Some("c"), "other")];
    let snap = Snapshot::new(&nodes, &pods, &[], &[], &[]);
    let p = constrained("new", "web", ZONE, 1, "DoNotSchedule", None);
    let hard = Hard::new(&p, &snap);
    let reasons: Vec<Option<String>> = nodes
        .iter()
        .map(|n| hard.check(n).map(|m| m.reason))
        .collect();
    assert_eq!(
        reasons,
        vec![
            Some(SKEW.to_string()),
            Some(SKEW.to_string()),
            None,
            Some(MISSING_LABEL.to_string())
        ]
    );
    assert!(hard.check(&nodes[0]).is_some_and(|m| m.resolvable));
    assert!(hard.check(&nodes[3]).is_some_and(|m| !m.resolvable));
    // maxSkew 2 allows z1 again.
    let loose = constrained("new", "web", ZONE, 2, "DoNotSchedule", None);
    assert!(Hard::new(&loose, &snap).check(&nodes[0]).is_none());
    // With one pod in each zone and minDomains 3, the global minimum is 0:
    // neither zone may take another.
    let pods = [pod("w1", Some("a"), "web"), pod("w2", Some("c"), "web")];
    let snap = Snapshot::new(&nodes, &pods, &[], &[], &[]);
    let p = constrained("new", "web", ZONE, 1, "DoNotSchedule", Some(3));
    let hard = Hard::new(&p, &snap);
    assert!(hard.check(&nodes[0]).is_some() && hard.check(&nodes[2]).is_some());
    let p = constrained("new", "web", ZONE, 1, "DoNotSchedule", None);
    assert!(Hard::new(&p, &snap).check(&nodes[2]).is_none());
}

#[test]
fn node_affinity_policy_and_match_label_keys() {
    let nodes = [
        node("a", "True", &[(ZONE, "z1"), ("disk", "ssd")]),
        node("b", "True", &[(ZONE, "z2"), ("disk", "hdd")]),
    ];
    let pods = [pod("w1", Some("a"), "web")];
    let snap = Snapshot::new(&nodes, &pods, &[], &[], &[]);
    let mut p = constrained("new", "web", ZONE, 1, "DoNotSchedule", None);
    // Only ssd nodes are the pod's: z2 is no domain, so z1 is the minimum.
    if let Some(s) = p.spec.as_mut() {
        s.node_selector = labels(&[("disk", "ssd")]);
    }
    assert!(Hard::new(&p, &snap).check(&nodes[0]).is_none());
    if let Some(c) = p
        .spec
        .as_mut()
        .and_then(|s| s.topology_spread_constraints.as_mut())
    {
        c[0].node_affinity_policy = Some("Ignore".into());
    }
    assert!(Hard::new(&p, &snap).check(&nodes[0]).is_some());
    // matchLabelKeys narrows the selector to the pod's own value.
    let mut q = (*pod("new", None, "web")).clone();
    q.metadata.labels = labels(&[("app", "web"), ("pod-template-hash", "v2")]);
    q.spec = Some(PodSpec {
        topology_spread_constraints: Some(vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: ZONE.into(),
            when_unsatisfiable: "DoNotSchedule".into(),
            label_selector: Some(LabelSelector {
                match_labels: labels(&[("app", "web")]),
                ..Default::default()
            }),
            match_label_keys: Some(vec!["pod-template-hash".into()]),
            ..Default::default()
        }]),
        ..Default::default()
    });
    // w1 (no hash label) no longer counts: both zones are empty.
    assert!(Hard::new(&q, &snap).check(&nodes[0]).is_none());
}

#[test]
fn default_selector_and_scores() {
    let svc = [service("web")];
    let nodes = [node("a", "True", &[]), node("b", "True", &[])];
    let snap = Snapshot::new(&nodes, &[], &svc, &[], &[]);
    let sel = default_selector(&pod("new", None, "web"), &snap);
    assert_eq!(sel.and_then(|s| s.match_labels), labels(&[("app", "web")]));
    assert_eq!(default_selector(&pod("new", None, "lone"), &snap), None);
    // Own ScheduleAnyway constraints: a node without the key is not scored.
    let zoned = [
        node("a", "True", &[(ZONE, "z1")]),
        node("b", "True", &[(ZONE, "z2")]),
        node("c", "True", &[]),
    ];
    let pods = [pod("w1", Some("a"), "web"), pod("w2", Some("a"), "web")];
    let snap = Snapshot::new(&zoned, &pods, &[], &[], &[]);
    let p = constrained("new", "web", ZONE, 1, "ScheduleAnyway", None);
    let refs: Vec<&Node> = zoned.iter().map(|n| &**n).collect();
    // Weight ln(2 + 2): z1 scores 2 * 1.39 = 3, z2 0; normalized 0 and 100.
    assert_eq!(scores(&p, &snap, &refs), vec![0, 100, 0]);
    // No constraints and nothing selecting the pod: no opinion.
    assert_eq!(
        scores(&pod("new", None, "lone"), &snap, &refs),
        vec![0, 0, 0]
    );
}
