use super::*;
use k8s_openapi::api::core::v1::{NodeStatus, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn ts(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn cond(type_: &str, status: &str) -> NodeCondition {
    NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some("KubeletSaysSo".into()),
        message: Some("kubelet message".into()),
        last_heartbeat_time: Some(Time(ts(100))),
        last_transition_time: Some(Time(ts(50))),
    }
}

fn node(conditions: Vec<NodeCondition>) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some("n1".into()),
            creation_timestamp: Some(Time(ts(10))),
            ..Default::default()
        },
        spec: None,
        status: Some(NodeStatus {
            conditions: Some(conditions),
            ..Default::default()
        }),
    }
}

#[test]
fn heartbeats_are_timed_by_our_clock() {
    let t0 = Instant::now();
    let later = t0 + Duration::from_secs(30);
    let ago = Duration::from_secs(20);
    // First sight: now, or the node's creation when it never posted a status.
    let h = observe(None, Some(ts(100)), None, t0, ago);
    assert_eq!(h.probe, t0);
    let never = observe(None, None, None, later, ago);
    assert_eq!(never.probe, later - ago);
    // The same heartbeat again is no news; a new one, or a newer renewal, is.
    assert_eq!(observe(Some(&h), Some(ts(100)), None, later, ago).probe, t0);
    assert_eq!(
        observe(Some(&h), Some(ts(160)), None, later, ago).probe,
        later
    );
    let leased = observe(Some(&h), Some(ts(100)), Some(ts(200)), later, ago);
    assert_eq!((leased.probe, leased.renew), (later, Some(ts(200))));
    let then = later + Duration::from_secs(10);
    assert_eq!(
        observe(Some(&leased), Some(ts(100)), Some(ts(200)), then, ago).probe,
        later
    );
    assert_eq!(
        observe(Some(&leased), Some(ts(100)), Some(ts(190)), then, ago).probe,
        later,
        "an older renewTime is no heartbeat"
    );
}

#[test]
fn silent_nodes_become_unknown() {
    let now = ts(1000);
    let n = node(vec![
        cond("Ready", "True"),
        cond("MemoryPressure", "False"),
        cond("DiskPressure", "False"),
        cond("PIDPressure", "False"),
        cond("NetworkUnavailable", "False"),
    ]);
    let got = stale_conditions(&n, now);
    assert_eq!(got.len(), 4, "NetworkUnavailable is not kubelet's: {got:?}");
    for c in &got {
        assert_eq!(c.status, "Unknown");
        assert_eq!(c.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            c.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        assert_eq!(c.last_transition_time, Some(Time(now)));
        assert_eq!(c.last_heartbeat_time, Some(Time(ts(100))), "heartbeat kept");
    }
    // Already Unknown: nothing more to write.
    let unknown: Vec<NodeCondition> = got.clone();
    assert!(stale_conditions(&node(unknown), now).is_empty());
    // Never posted: all four appear, heartbeat at creation.
    let never = stale_conditions(&node(vec![]), now);
    assert_eq!(never.len(), 4);
    assert_eq!(never[0].reason.as_deref(), Some("NodeStatusNeverUpdated"));
    assert_eq!(
        never[0].message.as_deref(),
        Some("Kubelet never posted node status.")
    );
    assert_eq!(never[0].last_heartbeat_time, Some(Time(ts(10))));
}

fn t(key: &str, effect: &str, at: Option<i64>) -> Taint {
    nodeutil::taint(key, effect, at.map(ts))
}

#[test]
fn taints_follow_conditions() {
    let now = ts(1000);
    let user = Taint {
        key: "dedicated".into(),
        value: Some("gpu".into()),
        effect: NO_SCHEDULE.into(),
        time_added: None,
    };
    let ready = vec![cond("Ready", "True"), cond("MemoryPressure", "False")];
    let unknown = vec![cond("Ready", "Unknown")];
    let not_ready = vec![cond("Ready", "False")];
    let unreachable_both = vec![
        t(TAINT_UNREACHABLE, NO_SCHEDULE, Some(900)),
        t(TAINT_UNREACHABLE, NO_EXECUTE, Some(900)),
    ];
    type Case<'a> = (
        &'a str,
        Vec<Taint>,
        Vec<NodeCondition>,
        bool,
        NoExecute,
        Option<Vec<Taint>>,
        bool,
        bool,
    );
    use NoExecute::*;
    let cases: Vec<Case> = vec![
        (
            "healthy",
            vec![user.clone()],
            ready.clone(),
            false,
            Allow,
            None,
            false,
            false,
        ),
        (
            "silent: unreachable, NoExecute with timeAdded",
            vec![],
            unknown.clone(),
            false,
            Allow,
            Some(vec![
                t(TAINT_UNREACHABLE, NO_SCHEDULE, Some(1000)),
                t(TAINT_UNREACHABLE, NO_EXECUTE, Some(1000)),
            ]),
            true,
            false,
        ),
        (
            "rate-limited: NoSchedule now, NoExecute waits",
            vec![],
            unknown.clone(),
            false,
            Hold,
            Some(vec![t(TAINT_UNREACHABLE, NO_SCHEDULE, Some(1000))]),
            false,
            true,
        ),
        (
            "already tainted: unchanged, times kept",
            unreachable_both.clone(),
            unknown.clone(),
            false,
            Allow,
            None,
            false,
            false,
        ),
        (
            "not-ready swapped for unreachable at once, even when rate-limited",
            vec![
                t(TAINT_UNREACHABLE, NO_SCHEDULE, Some(900)),
                t(TAINT_NOT_READY, NO_EXECUTE, Some(900)),
            ],
            unknown.clone(),
            false,
            Hold,
            Some(
                unreachable_both
                    .iter()
                    .map(|x| {
                        if x.effect == NO_EXECUTE {
                            t(TAINT_UNREACHABLE, NO_EXECUTE, Some(1000))
                        } else {
                            x.clone()
                        }
                    })
                    .collect(),
            ),
            false,
            false,
        ),
        (
            "no node Ready anywhere: NoExecute removed",
            unreachable_both.clone(),
            unknown.clone(),
            false,
            Stop,
            Some(vec![t(TAINT_UNREACHABLE, NO_SCHEDULE, Some(900))]),
            false,
            false,
        ),
        (
            "back to Ready: ours removed, the user's kept",
            [vec![user.clone()], unreachable_both.clone()].concat(),
            ready.clone(),
            false,
            Allow,
            Some(vec![user.clone()]),
            false,
            false,
        ),
        (
            "Ready=False: not-ready",
            vec![],
            not_ready,
            false,
            Allow,
            Some(vec![
                t(TAINT_NOT_READY, NO_SCHEDULE, Some(1000)),
                t(TAINT_NOT_READY, NO_EXECUTE, Some(1000)),
            ]),
            true,
            false,
        ),
        (
            "cordoned, memory pressure",
            vec![],
            vec![cond("Ready", "True"), cond("MemoryPressure", "True")],
            true,
            Allow,
            Some(vec![
                t(nodeutil::TAINT_MEMORY_PRESSURE, NO_SCHEDULE, Some(1000)),
                t(nodeutil::TAINT_UNSCHEDULABLE, NO_SCHEDULE, Some(1000)),
            ]),
            false,
            false,
        ),
    ];
    for (name, current, conds, cordoned, mode, want, added, held) in cases {
        let got = desired_taints(&current, &conds, cordoned, mode, now);
        assert_eq!(
            got,
            Taints {
                taints: want,
                added_no_execute: added,
                held
            },
            "{name}"
        );
    }
}

#[test]
fn zones_and_rates() {
    let cases = [
        (3, 0, Zone::Normal, 0.1),
        (2, 1, Zone::Normal, 0.1),
        (2, 2, Zone::Normal, 0.1),
        (1, 3, Zone::Partial, 0.0),
        (0, 1, Zone::Full, 0.1),
    ];
    for (ready, not_ready, zone, rate) in cases {
        assert_eq!(zone_state(ready, not_ready), zone, "{ready}/{not_ready}");
        assert_eq!(zone_rate(zone, ready + not_ready, 0.1), rate);
    }
    assert_eq!(zone_rate(Zone::Partial, 51, 0.1), SECONDARY_EVICTION_RATE);
}

#[test]
fn only_ready_pods_are_marked() {
    let pod = |status: Option<&str>| Pod {
        status: Some(PodStatus {
            conditions: status.map(|s| {
                vec![PodCondition {
                    type_: "Ready".into(),
                    status: s.into(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(ready_not_false(&pod(Some("True"))));
    assert!(ready_not_false(&pod(Some("Unknown"))));
    assert!(!ready_not_false(&pod(Some("False"))));
    assert!(!ready_not_false(&pod(None)));
}

#[test]
fn node_component_endpoints_on_a_dead_node_go_down() {
    let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "kube-dns-b", "namespace": "kube-system"},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["10.244.1.1"], "nodeName": "b", "conditions": {"ready": true, "serving": true}},
            {"addresses": ["10.244.0.1"], "nodeName": "a", "conditions": {"ready": true}},
        ],
    }))
    .unwrap();
    let down = node_endpoints_down(&slice, "b").expect("b's endpoint changes");
    assert_eq!(down[0]["conditions"]["ready"], false);
    assert_eq!(down[0]["conditions"]["serving"], false);
    assert_eq!(down[1]["conditions"]["ready"], true, "other nodes' stay");
    let again: EndpointSlice = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "kube-dns-b"}, "addressType": "IPv4", "endpoints": down,
    }))
    .unwrap();
    assert!(node_endpoints_down(&again, "b").is_none(), "already down");
    assert!(node_endpoints_down(&slice, "c").is_none());
}
