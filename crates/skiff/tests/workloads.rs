//! Jobs, CronJobs, DaemonSets and ReplicationControllers end to end (issue
//! 20) with the machine's real kubectl: the commands users type, the tables
//! they read, and upstream's refusals of bad specs. Pods run the built-in
//! catalog's host programs (`busybox` is the host's shell tools).

mod support;

use std::time::Duration;

use serde_json::Value;
use support::multinode::MultiNode;
use support::{eventually, Cluster};

fn json_of(c: &Cluster, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&c.k(&a)).expect("kubectl json")
}

/// A node agent, no proxy or DNS: enough to run pods to completion.
fn cluster() -> Cluster {
    Cluster::start_with(&["--disable", "proxy,dns"])
}

#[test]
fn a_job_runs_to_completion_and_a_failing_one_gives_up() {
    let c = cluster();
    let out = c.k(&[
        "create",
        "job",
        "hello",
        "--image=busybox",
        "--",
        "sh",
        "-c",
        "echo hello from a job",
    ]);
    assert_eq!(out.trim(), "job.batch/hello created");
    c.k(&[
        "wait",
        "--for=condition=complete",
        "job/hello",
        "--timeout=90s",
    ]);
    let logs = c.k(&["logs", "job/hello"]);
    assert_eq!(logs.trim(), "hello from a job");
    let table = c.k(&["get", "job", "hello"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(&row[..3], ["hello", "Complete", "1/1"], "{table}");
    let job = json_of(&c, &["get", "job", "hello"]);
    let uid = job["metadata"]["uid"].as_str().unwrap_or_default();
    assert_eq!(
        job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        uid
    );
    assert_eq!(job["status"]["succeeded"], 1);
    assert!(job["status"]["completionTime"].is_string(), "{job}");
    let types: Vec<&str> = job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["type"].as_str())
        .collect();
    assert_eq!(types, ["SuccessCriteriaMet", "Complete"]);
    let events = c.k(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=hello",
    ]);
    assert!(events.contains("SuccessfulCreate"), "{events}");
    assert!(events.contains("Completed"), "{events}");

    // Exit 3 with no retries: Failed, BackoffLimitExceeded, as upstream.
    c.apply(
        "apiVersion: batch/v1
kind: Job
metadata:
  name: doomed
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: c
        image: busybox
        command: [sh, -c, 'exit 3']
",
    );
    c.k(&[
        "wait",
        "--for=condition=failed",
        "job/doomed",
        "--timeout=90s",
    ]);
    let job = json_of(&c, &["get", "job", "doomed"]);
    let failed = job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Failed")
        .cloned()
        .unwrap_or_default();
    assert_eq!(failed["reason"], "BackoffLimitExceeded", "{job}");
    assert_eq!(job["status"]["failed"], 1);
    let row = c.k(&["get", "job", "doomed", "--no-headers"]);
    assert!(row.contains("Failed"), "{row}");
}

#[test]
fn an_indexed_job_gives_each_pod_its_index() {
    let c = cluster();
    c.apply(
        "apiVersion: batch/v1
kind: Job
metadata:
  name: idx
spec:
  completions: 3
  parallelism: 2
  completionMode: Indexed
  ttlSecondsAfterFinished: 5
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: c
        image: busybox
        command: [sh, -c, 'echo index=$JOB_COMPLETION_INDEX host=$(hostname)']
",
    );
    c.k(&[
        "wait",
        "--for=condition=complete",
        "job/idx",
        "--timeout=90s",
    ]);
    let job = json_of(&c, &["get", "job", "idx"]);
    assert_eq!(job["status"]["completedIndexes"], "0-2", "{job}");
    let mut seen = Vec::new();
    for i in 0..3 {
        let sel = format!(
            "batch.kubernetes.io/job-completion-index={i},batch.kubernetes.io/job-name=idx"
        );
        let logs = c.k(&["logs", "-l", &sel]);
        seen.push(logs.trim().to_string());
    }
    assert_eq!(
        seen,
        [
            "index=0 host=idx-0",
            "index=1 host=idx-1",
            "index=2 host=idx-2"
        ]
    );
    // ttlSecondsAfterFinished: the Job goes, and its pods with it.
    eventually(Duration::from_secs(60), || {
        let out = c.kubectl(&["get", "job", "idx"]);
        (!out.status.success()).then_some(())
    });
    eventually(Duration::from_secs(60), || {
        let out = c.k(&[
            "get",
            "pods",
            "-l",
            "batch.kubernetes.io/job-name=idx",
            "-o",
            "name",
        ]);
        out.trim().is_empty().then_some(())
    });
}

#[test]
fn a_cronjob_every_minute_runs_twice() {
    let c = cluster();
    let out = c.k(&[
        "create",
        "cronjob",
        "tick",
        "--image=busybox",
        "--schedule=*/1 * * * *",
        "--",
        "sh",
        "-c",
        "echo tick",
    ]);
    assert_eq!(out.trim(), "cronjob.batch/tick created");
    let header = c.k(&["get", "cronjob", "tick"]);
    let cols: Vec<&str> = header
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        cols,
        ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"],
        "{header}"
    );
    // Two activations: at most two minutes and a bit.
    let names = eventually(Duration::from_secs(200), || {
        let jobs = json_of(&c, &["get", "jobs"]);
        let done: Vec<String> = jobs["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|j| j["status"]["succeeded"] == 1)
            .filter_map(|j| j["metadata"]["name"].as_str().map(String::from))
            .collect();
        (done.len() >= 2).then_some(done)
    });
    for n in &names {
        let minutes = n.strip_prefix("tick-").unwrap_or_default();
        assert!(minutes.parse::<u64>().is_ok(), "job name {n}");
        let job = json_of(&c, &["get", "job", n]);
        assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
        let at = job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(at.ends_with(":00Z"), "{at}");
    }
    let cj = json_of(&c, &["get", "cronjob", "tick"]);
    assert!(cj["status"]["lastScheduleTime"].is_string(), "{cj}");
    let events = eventually(Duration::from_secs(30), || {
        let ev = c.k(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=tick",
        ]);
        ev.contains("SawCompletedJob").then_some(ev)
    });
    assert!(events.contains("SuccessfulCreate"), "{events}");
    assert!(cj["status"]["lastSuccessfulTime"].is_string(), "{cj}");
    // A Job made by hand from the CronJob's template.
    let out = c.k(&["create", "job", "manual", "--from=cronjob/tick"]);
    assert_eq!(out.trim(), "job.batch/manual created");
    c.k(&[
        "wait",
        "--for=condition=complete",
        "job/manual",
        "--timeout=90s",
    ]);
    assert_eq!(c.k(&["logs", "job/manual"]).trim(), "tick");
    // Suspended: no more runs.
    c.k(&[
        "patch",
        "cronjob",
        "tick",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]);
    let row = c.k(&["get", "cronjob", "tick", "--no-headers"]);
    assert!(row.contains("True"), "{row}");
}

#[test]
fn a_replication_controller_scales() {
    let c = cluster();
    c.apply(
        "apiVersion: v1
kind: ReplicationController
metadata:
  name: web
spec:
  replicas: 2
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: c
        image: busybox
        command: [sleep, '3600']
",
    );
    let ready = |n: i64| {
        eventually(Duration::from_secs(90), || {
            let rc = json_of(&c, &["get", "rc", "web"]);
            (rc["status"]["readyReplicas"].as_i64().unwrap_or(0) == n
                && rc["status"]["replicas"] == n)
                .then_some(())
        })
    };
    ready(2);
    let rc = json_of(&c, &["get", "rc", "web"]);
    assert_eq!(rc["spec"]["selector"]["app"], "web");
    assert_eq!(
        c.k(&["scale", "rc/web", "--replicas=3"]).trim(),
        "replicationcontroller/web scaled"
    );
    ready(3);
    let table = c.k(&["get", "rc", "web"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(&row[..4], ["web", "3", "3", "3"], "{table}");
    c.k(&["scale", "rc/web", "--replicas=1"]);
    eventually(Duration::from_secs(60), || {
        let pods = c.k(&["get", "pods", "-l", "app=web", "--no-headers"]);
        (pods.lines().filter(|l| !l.contains("Terminating")).count() == 1).then_some(())
    });
    // Deleted with --cascade=orphan: the pod stays, no longer owned.
    c.k(&["delete", "rc", "web", "--cascade=orphan"]);
    eventually(Duration::from_secs(60), || {
        let out = c.kubectl(&["get", "rc", "web"]);
        (!out.status.success()).then_some(())
    });
    let pods = json_of(&c, &["get", "pods", "-l", "app=web"]);
    let left: Vec<&Value> = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect();
    assert_eq!(left.len(), 1, "{pods}");
    assert!(
        left[0]["metadata"]
            .get("ownerReferences")
            .is_none_or(|r| r.as_array().is_none_or(|a| a.is_empty())),
        "{pods}"
    );
}

#[test]
fn refused_specs_give_upstreams_messages() {
    let c = Cluster::start();
    let cases = [
        (
            "apiVersion: batch/v1
kind: Job
metadata: {name: bad}
spec:
  template:
    spec:
      containers: [{name: c, image: busybox}]
",
            r#"The Job "bad" is invalid: spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never""#,
        ),
        (
            "apiVersion: batch/v1
kind: CronJob
metadata: {name: bad}
spec:
  schedule: 'every minute'
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: c, image: busybox}]
",
            r#"The CronJob "bad" is invalid: spec.schedule: Invalid value: "every minute": expected exactly 5 fields, found 2: [every minute]"#,
        ),
        (
            "apiVersion: apps/v1
kind: DaemonSet
metadata: {name: bad}
spec:
  selector: {matchLabels: {app: d}}
  template:
    metadata: {labels: {app: d}}
    spec:
      restartPolicy: OnFailure
      containers: [{name: c, image: busybox}]
",
            r#"The DaemonSet "bad" is invalid: spec.template.spec.restartPolicy: Unsupported value: "OnFailure": supported values: "Always""#,
        ),
    ];
    for (manifest, want) in cases {
        let out = c.kubectl_in(&["apply", "-f", "-"], manifest);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains(want), "want {want}\ngot {err}");
    }
}

/// Each controller writes as its own ServiceAccount with upstream's rules,
/// and no more.
#[test]
fn each_controller_has_only_its_own_rights() {
    let c = Cluster::start();
    let cases: &[(&str, &[&str], bool)] = &[
        ("job-controller", &["create", "pods"], true),
        (
            "job-controller",
            &["update", "jobs.batch", "--subresource=status"],
            true,
        ),
        ("job-controller", &["delete", "jobs.batch"], false),
        ("job-controller", &["get", "secrets"], false),
        ("cronjob-controller", &["create", "jobs.batch"], true),
        (
            "cronjob-controller",
            &["update", "cronjobs.batch", "--subresource=status"],
            true,
        ),
        ("cronjob-controller", &["create", "pods"], false),
        (
            "ttl-after-finished-controller",
            &["delete", "jobs.batch"],
            true,
        ),
        ("ttl-after-finished-controller", &["delete", "pods"], false),
        ("daemon-set-controller", &["create", "pods"], true),
        ("daemon-set-controller", &["list", "nodes"], true),
        ("daemon-set-controller", &["delete", "nodes"], false),
        (
            "daemon-set-controller",
            &["update", "daemonsets.apps"],
            false,
        ),
        ("replication-controller", &["create", "pods"], true),
        (
            "replication-controller",
            &["update", "replicationcontrollers", "--subresource=status"],
            true,
        ),
        (
            "replication-controller",
            &["create", "replicationcontrollers"],
            false,
        ),
    ];
    for (account, ask, want) in cases {
        let who = format!("--as=system:serviceaccount:kube-system:{account}");
        let mut args = vec!["auth", "can-i"];
        args.extend_from_slice(ask);
        args.extend(["-n", "default", who.as_str()]);
        let out = c.kubectl(&args);
        let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(said, if *want { "yes" } else { "no" }, "{account} {ask:?}");
    }
}

#[test]
fn python_client_runs_a_job() {
    let c = cluster();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/run_job.py");
    let out = c.sh(&format!("python3 {script} \"$KUBECONFIG\""));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("SUCCEEDED 2"), "{text}");
    assert!(text.contains("LOG py-job says hi"), "{text}");
    assert!(text.contains("COLLECTED"), "{text}");
}

const DAEMONSET: &str = "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels:
      app: agent
  template:
    metadata:
      labels:
        app: agent
    spec:
      containers:
      - name: c
        image: busybox
        command: [sleep, '3600']
";

#[test]
fn a_daemonset_runs_on_every_node_and_rolls() {
    let c = MultiNode::up(3, &["--host-images"]);
    let nodes = c.k(&["get", "nodes", "-o", "name"]).lines().count();
    assert_eq!(nodes, 3);
    c.apply(DAEMONSET);
    let out = c.k(&["rollout", "status", "ds/agent", "--timeout=120s"]);
    assert!(
        out.contains("daemon set \"agent\" successfully rolled out"),
        "{out}"
    );
    let on_nodes = |want_hash: Option<&str>| {
        let pods: Value =
            serde_json::from_str(&c.k(&["get", "pods", "-l", "app=agent", "-o", "json"]))
                .expect("pods");
        let mut nodes: Vec<String> = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .filter(|p| {
                want_hash.is_none_or(|h| p["metadata"]["labels"]["controller-revision-hash"] == h)
            })
            .filter_map(|p| p["spec"]["nodeName"].as_str().map(String::from))
            .collect();
        nodes.sort();
        nodes
    };
    let placed = on_nodes(None);
    assert_eq!(placed.len(), 3, "{placed:?}");
    let first_hash = c.k(&[
        "get",
        "pods",
        "-l",
        "app=agent",
        "-o",
        "jsonpath={.items[0].metadata.labels.controller-revision-hash}",
    ]);
    assert_eq!(on_nodes(Some(&first_hash)), placed);
    placed
        .windows(2)
        .for_each(|w| assert_ne!(w[0], w[1], "{placed:?}"));
    let table = c.k(&["get", "ds", "agent"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE",
            "SELECTOR",
            "AGE"
        ],
        "{table}"
    );
    // A new template rolls out node by node.
    c.k(&["set", "env", "ds/agent", "VERSION=2"]);
    let out = c.k(&["rollout", "status", "ds/agent", "--timeout=180s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let hash = eventually(Duration::from_secs(30), || {
        let pods: Value =
            serde_json::from_str(&c.k(&["get", "pods", "-l", "app=agent", "-o", "json"]))
                .expect("pods");
        pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| {
                p["spec"]["containers"][0]["env"][0]["value"] == "2"
                    && p["metadata"]["deletionTimestamp"].is_null()
            })
            .and_then(|p| p["metadata"]["labels"]["controller-revision-hash"].as_str())
            .map(String::from)
    });
    let updated = eventually(Duration::from_secs(60), || {
        let n = on_nodes(Some(&hash));
        (n.len() == 3).then_some(n)
    });
    assert_eq!(updated, placed);
    let ds = c.k(&["get", "ds", "agent", "-o", "jsonpath={.status.updatedNumberScheduled}/{.status.numberAvailable}/{.status.desiredNumberScheduled}"]);
    assert_eq!(ds, "3/3/3");
    // The history kubectl reads, and an undo back to the first template.
    let history = eventually(Duration::from_secs(30), || {
        let h = c.k(&["rollout", "history", "ds/agent"]);
        let revisions: Vec<String> = h
            .lines()
            .skip_while(|l| !l.starts_with("REVISION"))
            .skip(1)
            .filter_map(|l| l.split_whitespace().next().map(String::from))
            .collect();
        (revisions == ["1", "2"]).then_some(h)
    });
    assert!(history.contains("daemonset.apps/agent"), "{history}");
    // The undo rolls with a surge: each new pod starts beside the old one.
    let strategy =
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"maxSurge":1,"maxUnavailable":0}}}}"#;
    c.k(&["patch", "ds", "agent", "-p", strategy]);
    let out = c.k(&["rollout", "undo", "ds/agent"]);
    assert_eq!(out.trim(), "daemonset.apps/agent rolled back");
    c.k(&["rollout", "status", "ds/agent", "--timeout=180s"]);
    let back = eventually(Duration::from_secs(60), || {
        let n = on_nodes(Some(&first_hash));
        (n.len() == 3).then_some(n)
    });
    assert_eq!(back, placed);
    let revisions = c.k(&[
        "get",
        "controllerrevisions",
        "-o",
        "jsonpath={range .items[*]}{.revision}{\" \"}{end}",
    ]);
    let mut revisions: Vec<&str> = revisions.split_whitespace().collect();
    revisions.sort();
    assert_eq!(revisions, ["2", "3"]);
    // Deleting the DaemonSet takes its pods.
    c.k(&["delete", "ds", "agent"]);
    eventually(Duration::from_secs(90), || {
        on_nodes(None).is_empty().then_some(())
    });
}
