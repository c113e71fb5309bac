//! Pod Tables: the STATUS/READY/RESTARTS cells `kubectl get pods -o wide` prints.

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Value};
use skiff_api::table::{human_duration, table, IncludeObject};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0)
        .single()
        .expect("valid time")
}

fn ago(secs: i64) -> String {
    (now() - Duration::seconds(secs))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn pod(name: &str, spec: Value, status: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": ago(600)},
        "spec": spec,
        "status": status,
    })
}

fn one_container() -> Value {
    json!({"containers": [{"name": "app", "image": "nginx"}], "nodeName": "node-1"})
}

fn cells(obj: &Value) -> Vec<Value> {
    let t = table(
        "",
        "Pod",
        std::slice::from_ref(obj),
        now(),
        IncludeObject::None,
        None,
    );
    t["rows"][0]["cells"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// NAME READY STATUS RESTARTS AGE, as strings.
fn short(obj: &Value) -> Vec<String> {
    cells(obj)[..5]
        .iter()
        .map(|c| c.as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn running_pod_wide() {
    let p = pod(
        "web",
        one_container(),
        json!({"phase": "Running", "podIP": "10.244.0.7", "podIPs": [{"ip": "10.244.0.7"}],
               "conditions": [{"type": "Ready", "status": "True"}],
               "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0,
                                      "state": {"running": {"startedAt": ago(590)}}}]}),
    );
    assert_eq!(
        cells(&p),
        json!([
            "web",
            "1/1",
            "Running",
            "0",
            "10m",
            "10.244.0.7",
            "node-1",
            "<none>",
            "<none>"
        ])
        .as_array()
        .cloned()
        .unwrap_or_default()
    );
}

#[test]
fn crash_loop_back_off_with_restarts() {
    let p = pod(
        "crash",
        one_container(),
        json!({"phase": "Running", "podIP": "10.244.0.8",
               "containerStatuses": [{"name": "app", "ready": false, "restartCount": 3,
                   "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                   "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                                "finishedAt": ago(300)}}}]}),
    );
    assert_eq!(
        short(&p),
        ["crash", "0/1", "CrashLoopBackOff", "3 (5m ago)", "10m"]
    );
}

#[test]
fn waiting_and_terminated_reasons() {
    let status = |state: Value, phase: &str| {
        json!({"phase": phase, "containerStatuses": [{"name": "app", "ready": false,
                                                      "restartCount": 0, "state": state}]})
    };
    let case = |state: Value, phase: &str| {
        short(&pod("p", one_container(), status(state, phase)))[2].clone()
    };
    assert_eq!(
        case(
            json!({"waiting": {"reason": "ContainerCreating"}}),
            "Pending"
        ),
        "ContainerCreating"
    );
    assert_eq!(
        case(json!({"waiting": {"reason": "ErrImagePull"}}), "Pending"),
        "ErrImagePull"
    );
    assert_eq!(
        case(
            json!({"terminated": {"exitCode": 0, "reason": "Completed"}}),
            "Succeeded"
        ),
        "Completed"
    );
    assert_eq!(
        case(
            json!({"terminated": {"exitCode": 1, "reason": "Error"}}),
            "Failed"
        ),
        "Error"
    );
    assert_eq!(
        case(json!({"terminated": {"exitCode": 137}}), "Failed"),
        "ExitCode:137"
    );
    assert_eq!(
        case(
            json!({"terminated": {"exitCode": 0, "signal": 9}}),
            "Failed"
        ),
        "Signal:9"
    );
    // Not scheduled yet: no container statuses at all.
    let pending = pod(
        "p",
        json!({"containers": [{"name": "app"}]}),
        json!({"phase": "Pending"}),
    );
    assert_eq!(short(&pending), ["p", "0/1", "Pending", "0", "10m"]);
    assert_eq!(cells(&pending)[5..7], [json!("<none>"), json!("<none>")]);
}

#[test]
fn completed_pods_carry_row_conditions() {
    let p = pod(
        "job-x",
        one_container(),
        json!({"phase": "Succeeded", "containerStatuses": [{"name": "app", "ready": false,
               "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
    );
    let t = table("", "Pod", &[p], now(), IncludeObject::None, None);
    assert_eq!(
        t["rows"][0]["conditions"],
        json!([{"type": "Completed", "status": "True", "reason": "Succeeded",
                "message": "The pod has completed successfully."}])
    );
}

#[test]
fn init_containers() {
    let spec = json!({"initContainers": [{"name": "init"}], "containers": [{"name": "app"}]});
    let init = |state: Value| {
        let p = pod(
            "p",
            spec.clone(),
            json!({"phase": "Pending",
                   "initContainerStatuses": [{"name": "init", "ready": false, "restartCount": 0, "state": state}],
                   "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0,
                                          "state": {"waiting": {"reason": "PodInitializing"}}}]}),
        );
        short(&p)[2].clone()
    };
    assert_eq!(init(json!({"running": {}})), "Init:0/1");
    assert_eq!(
        init(json!({"waiting": {"reason": "PodInitializing"}})),
        "Init:0/1"
    );
    assert_eq!(
        init(json!({"waiting": {"reason": "CrashLoopBackOff"}})),
        "Init:CrashLoopBackOff"
    );
    assert_eq!(
        init(json!({"terminated": {"exitCode": 1, "reason": "Error"}})),
        "Init:Error"
    );
    assert_eq!(
        init(json!({"terminated": {"exitCode": 2}})),
        "Init:ExitCode:2"
    );
    // Init done: the app container's state decides.
    assert_eq!(
        init(json!({"terminated": {"exitCode": 0, "reason": "Completed"}})),
        "PodInitializing"
    );
}

#[test]
fn sidecar_counts_towards_ready() {
    let spec = json!({
        "initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
        "containers": [{"name": "app"}]
    });
    let p = pod(
        "p",
        spec,
        json!({"phase": "Running",
               "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
               "initContainerStatuses": [{"name": "proxy", "ready": true, "started": true, "restartCount": 1,
                                          "state": {"running": {}}}],
               "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0,
                                      "state": {"running": {}}}]}),
    );
    assert_eq!(short(&p), ["p", "2/2", "Running", "1", "10m"]);
}

#[test]
fn terminating_and_node_lost() {
    let mut p = pod(
        "p",
        one_container(),
        json!({"phase": "Running", "containerStatuses": [{"name": "app", "ready": true,
               "state": {"running": {}}}]}),
    );
    p["metadata"]["deletionTimestamp"] = json!(ago(5));
    assert_eq!(short(&p)[2], "Terminating");
    p["status"]["reason"] = json!("NodeLost");
    assert_eq!(short(&p)[2], "Unknown");
    // A finished pod being deleted keeps its final status.
    let mut done = pod(
        "p",
        one_container(),
        json!({"phase": "Succeeded", "containerStatuses": [{"name": "app",
               "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
    );
    done["metadata"]["deletionTimestamp"] = json!(ago(5));
    assert_eq!(short(&done)[2], "Completed");
}

#[test]
fn readiness_gates_and_nominated_node() {
    let mut spec = one_container();
    spec["readinessGates"] = json!([{"conditionType": "a/ready"}, {"conditionType": "b/ready"}]);
    let p = pod(
        "p",
        spec,
        json!({"phase": "Running", "nominatedNodeName": "node-2",
               "conditions": [{"type": "a/ready", "status": "True"}, {"type": "b/ready", "status": "False"}]}),
    );
    let c = cells(&p);
    assert_eq!(c[7], json!("node-2"));
    assert_eq!(c[8], json!("1/2"));
}

#[test]
fn scheduling_gated() {
    let p = pod(
        "p",
        json!({"containers": [{"name": "app"}], "schedulingGates": [{"name": "x"}]}),
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                                                   "reason": "SchedulingGated"}]}),
    );
    assert_eq!(short(&p)[2], "SchedulingGated");
}

#[test]
fn malformed_pod_does_not_panic() {
    for bad in [
        json!({}),
        json!({"metadata": "x", "spec": 3, "status": []}),
        json!({"status": {"containerStatuses": [1, null, {"state": "x"}],
                          "initContainerStatuses": {"a": 1}}}),
    ] {
        let c = cells(&bad);
        assert_eq!(c.len(), 9);
        assert_eq!(c[4], json!("<unknown>"));
    }
}

#[test]
fn human_durations() {
    let cases = [
        (-3, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (59, "59s"),
        (119, "119s"),
        (123, "2m3s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600 + 4 * 60, "3h4m"),
        (5 * 3600, "5h"),
        (47 * 3600, "47h"),
        (2 * 86400 + 3 * 3600, "2d3h"),
        (8 * 86400, "8d"),
        ((2 * 365 + 100) * 86400, "2y100d"),
        (9 * 365 * 86400, "9y"),
    ];
    for (secs, want) in cases {
        assert_eq!(human_duration(Duration::seconds(secs)), want, "{secs}s");
    }
}
