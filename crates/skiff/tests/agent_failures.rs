//! The node agent end to end when things go wrong: containers that crash,
//! fail their probes or are deleted, an agent killed and restarted, pods cut off
//! from their node and sandboxes that die. The harness is `support::agent`, as
//! in `agent.rs`; every test kills what its pods left on the machine.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::agent::{
    exec, get_pod, ipam, links, pod_json, ready, start, states, wait_ready, FLAGS, NODE,
};
use support::eventually;

#[test]
fn restarts_back_off_probes_and_deletion_cleans_up() {
    let c = start();
    let flag = c.dir.path().join("ready-flag");
    std::fs::write(&flag, "").unwrap();
    c.apply(&pod_json(
        "crash",
        "busybox",
        &["sh", "-c", "echo dying; exit 2"],
        json!({}),
    ));
    c.apply(&pod_json(
        "probed",
        "busybox",
        &["sleep", "3600"],
        json!({"spec": {"containers": [{"name": "probed", "image": "busybox", "args": ["sleep", "3600"],
            "readinessProbe": {"exec": {"command": ["test", "-e", flag.to_str().unwrap()]},
                               "periodSeconds": 1, "failureThreshold": 1}}]}}),
    ));
    c.apply(&pod_json(
        "unlive",
        "busybox",
        &["sleep", "3600"],
        json!({"spec": {"containers": [{"name": "unlive", "image": "busybox", "args": ["sleep", "3600"],
            "livenessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 2}}]}}),
    ));
    c.apply(&pod_json(
        "unknown",
        "example.com/not-an-image:v1",
        &[],
        json!({}),
    ));
    wait_ready(&c, "probed");
    // Not ready once the probe fails.
    std::fs::remove_file(&flag).unwrap();
    eventually(Duration::from_secs(15), || {
        (!ready(&get_pod(&c, "probed"))).then_some(())
    });
    assert_eq!(get_pod(&c, "probed")["status"]["phase"], "Running");
    // Unknown image: waiting with a clear reason, never run.
    let p = get_pod(&c, "unknown");
    let w = &p["status"]["containerStatuses"][0]["state"]["waiting"];
    assert_eq!(w["reason"], "ErrImagePull");
    assert!(w["message"]
        .as_str()
        .unwrap()
        .contains("not in skiff's built-in catalog"));
    assert_eq!(p["status"]["phase"], "Pending");
    // Crash loop: rising restart count, back-off, last state kept, logs of the previous run.
    let p = eventually(Duration::from_secs(60), || {
        let p = get_pod(&c, "crash");
        (p["status"]["containerStatuses"][0]["restartCount"].as_i64() >= Some(2)).then_some(p)
    });
    let s = &p["status"]["containerStatuses"][0];
    assert_eq!(s["lastState"]["terminated"]["exitCode"], 2);
    let w = eventually(Duration::from_secs(30), || {
        let p = get_pod(&c, "crash");
        let w = p["status"]["containerStatuses"][0]["state"]["waiting"].clone();
        (w["reason"] == "CrashLoopBackOff").then_some(w)
    });
    assert!(
        w["message"].as_str().unwrap().starts_with("back-off "),
        "{w}"
    );
    assert!(c.k(&["get", "pods"]).contains("CrashLoopBackOff"));
    assert_eq!(c.k(&["logs", "crash", "--previous"]), "dying\n");
    // A failing postStart hook restarts the container.
    c.apply(&pod_json(
        "hooked",
        "busybox",
        &["sleep", "3600"],
        json!({"spec": {"containers": [{"name": "hooked", "image": "busybox", "args": ["sleep", "3600"],
            "lifecycle": {"postStart": {"exec": {"command": ["false"]}}}}]}}),
    ));
    eventually(Duration::from_secs(30), || {
        let p = get_pod(&c, "hooked");
        (p["status"]["containerStatuses"][0]["restartCount"].as_i64() >= Some(1)).then_some(())
    });
    // A failing liveness probe restarts the container.
    let p = eventually(Duration::from_secs(30), || {
        let p = get_pod(&c, "unlive");
        (p["status"]["containerStatuses"][0]["restartCount"].as_i64() >= Some(1)).then_some(p)
    });
    assert_eq!(
        p["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"], 143,
        "killed by SIGTERM"
    );
    // A pod that ran to completion keeps status and logs, not its address.
    c.apply(&pod_json(
        "done",
        "busybox",
        &["sh", "-c", "echo finished"],
        json!({"spec": {"restartPolicy": "Never"}}),
    ));
    let p = eventually(Duration::from_secs(20), || {
        let p = get_pod(&c, "done");
        (p["status"]["phase"] == "Succeeded").then_some(p)
    });
    let ip = p["status"]["podIP"].as_str().unwrap().to_string();
    assert_eq!(
        p["status"]["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
    eventually(Duration::from_secs(10), || {
        (!ipam(&c).contains(&ip)).then_some(())
    });
    assert_eq!(c.k(&["logs", "done"]), "finished\n");
    assert!(c.k(&["get", "pod", "done"]).contains("Completed"));
    // What went on is in the events, as kubelet reports it.
    let events = c.k(&["get", "events"]);
    for want in [
        "Started",
        "BackOff",
        "ErrImagePull",
        "Unhealthy",
        "Killing",
        "FailedPostStartHook",
    ] {
        assert!(events.contains(want), "no {want} event:\n{events}");
    }
    // hostNetwork cannot be honoured: a clear reason instead of a silent failure.
    c.apply(&pod_json(
        "hostnet",
        "busybox",
        &["sleep", "3600"],
        json!({"spec": {"hostNetwork": true}}),
    ));
    let w = eventually(Duration::from_secs(15), || {
        let p = get_pod(&c, "hostnet");
        let w = p["status"]["containerStatuses"][0]["state"]["waiting"].clone();
        (w["reason"] == "CreateContainerConfigError").then_some(w)
    });
    assert!(
        w["message"].as_str().unwrap().contains("hostNetwork"),
        "{w}"
    );

    // Deletion removes processes, veth, address and files.
    let before = states(&c);
    let probed = before
        .iter()
        .find(|s| s["name"] == "probed")
        .unwrap()
        .clone();
    let veth = probed["veth"].as_str().unwrap().to_string();
    let ip = probed["ip"].as_str().unwrap().to_string();
    let sandbox = probed["sandbox"]["pid"].as_u64().unwrap();
    assert!(links(&c).contains(&veth));
    assert!(ipam(&c).contains(&ip));
    c.k(&[
        "delete", "pod", "probed", "crash", "unknown", "hostnet", "unlive", "done", "hooked",
    ]);
    assert!(!links(&c).contains(&veth));
    assert!(!ipam(&c).contains(&ip));
    assert!(!std::path::Path::new(&format!("/proc/{sandbox}")).exists());
    assert!(states(&c).is_empty());
    assert!(c.pod_processes().is_empty());
    assert!(c.k(&["get", "pods"]).trim().is_empty());
}

#[test]
fn agent_sigkill_and_restart_keeps_pods_running() {
    let mut c = start();
    for name in ["a", "b"] {
        c.apply(&pod_json(name, "traefik/whoami", &[], json!({})));
    }
    let a = wait_ready(&c, "a");
    let b = wait_ready(&c, "b");
    let (ip_a, ip_b) = (
        a["status"]["podIP"].as_str().unwrap().to_string(),
        b["status"]["podIP"].as_str().unwrap().to_string(),
    );
    let before = c.lasting_pod_processes();
    assert!(!before.is_empty());
    c.stop(true);
    // Pods outlive the agent...
    for pid in &before {
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
    c.spawn(FLAGS);
    // ...and are adopted, not restarted: same IPs, same processes, still serving.
    let a2 = wait_ready(&c, "a");
    assert_eq!(a2["status"]["podIP"], ip_a.as_str());
    assert_eq!(a2["status"]["containerStatuses"][0]["restartCount"], 0);
    let body = exec(
        &c,
        "a",
        &["curl", "-s", "-m", "5", &format!("http://{ip_b}/")],
    );
    assert!(body.contains("Hostname: b\n"), "{body}");
    assert!(body.contains(&format!("IP: {ip_b}")), "{body}");
    let mut after = c.lasting_pod_processes();
    after.retain(|p| before.contains(p));
    assert_eq!(after.len(), before.len(), "processes were replaced");
    // A pod deleted while the agent is down is cleaned up when it comes back.
    c.stop(true);
    let b_state = states(&c).into_iter().find(|s| s["name"] == "b").unwrap();
    let veth_b = b_state["veth"].as_str().unwrap().to_string();
    c.spawn(&[
        "--disable",
        "controllers,proxy,dns,agent",
        "--node-name",
        NODE,
    ]);
    c.k(&["delete", "pod", "b", "--force", "--grace-period=0"]);
    c.stop(true);
    c.spawn(FLAGS);
    wait_ready(&c, "a");
    eventually(Duration::from_secs(20), || {
        (!links(&c).contains(&veth_b) && !ipam(&c).contains(&ip_b)).then_some(())
    });
    assert_eq!(ipam(&c), vec![ip_a.clone()]);
    // Only a's sandbox and container are left.
    assert_eq!(states(&c).len(), 1);
}

#[test]
fn pods_cut_off_from_the_node_do_not_outlive_it() {
    let mut c = start();
    c.apply(&pod_json(
        "orphan",
        "busybox",
        &["sleep", "3600"],
        json!({}),
    ));
    wait_ready(&c, "orphan");
    let s = states(&c).pop().expect("state");
    let veth = s["veth"].as_str().unwrap().to_string();
    let pids = c.pod_processes();
    assert!(pids.len() >= 2, "{pids:?}");
    // The agent is gone and the node end of the pod's link disappears (as when a
    // test's namespace is deleted): the pod's processes end themselves.
    c.stop(true);
    let out = c
        .netns
        .command("ip")
        .args(["link", "del", &veth])
        .output()
        .unwrap();
    assert!(out.status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    loop {
        let left: Vec<String> = pids
            .iter()
            .filter(|p| std::path::Path::new(&format!("/proc/{p}/ns")).exists())
            .map(|p| {
                let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
                format!("{p}: {stat}")
            })
            .collect();
        if left.is_empty() {
            break;
        }
        if std::time::Instant::now() >= deadline {
            let links = Command::new("nsenter")
                .args(["-t", &pids[0].to_string(), "-n", "ip", "-br", "link"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let children = Command::new("ps")
                .args(["-o", "pid,ppid,stat,args", "--ppid", &pids[0].to_string()])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            panic!("still alive: {left:?}\nLINKS {links}\nCHILDREN {children}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_dead_sandbox_is_recreated_with_the_same_address() {
    let c = start();
    c.apply(&pod_json("phoenix", "bretfisher/httpenv", &[], json!({})));
    let p = wait_ready(&c, "phoenix");
    let ip = p["status"]["podIP"].as_str().unwrap().to_string();
    let s = states(&c).pop().expect("state");
    let old = s["sandbox"]["pid"].as_u64().unwrap();
    let out = Command::new("kill")
        .args(["-KILL", &old.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let p = eventually(Duration::from_secs(40), || {
        let p = get_pod(&c, "phoenix");
        let restarted = p["status"]["containerStatuses"][0]["restartCount"].as_i64() >= Some(1);
        (restarted && ready(&p)).then_some(p)
    });
    assert_eq!(p["status"]["podIP"], ip.as_str());
    let new = states(&c).pop().expect("state")["sandbox"]["pid"].as_u64();
    assert!(new.is_some() && new != Some(old));
    // Ready means started (no probe): the server may still be binding its port.
    eventually(Duration::from_secs(20), || {
        let body = c.sh(&format!("curl -s -m 3 http://{ip}:8888/"));
        String::from_utf8_lossy(&body.stdout)
            .contains("\"HOSTNAME\": \"phoenix\"")
            .then_some(())
    });
    assert!(c.k(&["get", "events"]).contains("SandboxChanged"));
}
