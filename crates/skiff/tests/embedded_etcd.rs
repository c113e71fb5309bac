//! Three servers with embedded etcd (issue #16): `skiff up --servers 3
//! --server-arg=--cluster-init` makes node 1 a new cluster with an etcd member
//! of its own, nodes 2 and 3 join it, each adding a member. Every server
//! answers with the same objects; a SIGKILLed server takes its member with it,
//! and the other two (a quorum of 2 of 3) still take writes.
//!
//! Needs root (network namespaces); everything runs inside the test's own.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::eventually;
use support::multinode::{node_ip, MultiNode};

const SERVERS: u8 = 3;

fn url(node: u8) -> String {
    format!("https://{}:6443", node_ip(node))
}

/// etcd's member list as node `i`'s member answers it, through etcd's JSON
/// gateway with the node's client certificate (no etcdctl needed): each
/// member's name, empty for one that never started.
fn members(c: &MultiNode, i: u8) -> Option<Vec<String>> {
    let dir = c.cluster_dir().join(format!("node{i}"));
    let out = c
        .netns
        .command("curl")
        .args(["-sf", "-m", "5", "-X", "POST", "-d", "{}"])
        .arg("--cacert")
        .arg(dir.join("ca.crt"))
        .arg("--cert")
        .arg(dir.join("etcd-tls/client.crt"))
        .arg("--key")
        .arg(dir.join("etcd-tls/client.key"))
        .arg(format!(
            "https://{}:2379/v3/cluster/member/list",
            node_ip(i)
        ))
        .output()
        .expect("curl");
    let list: Value = serde_json::from_slice(&out.stdout).ok()?;
    let mut names: Vec<String> = list["members"]
        .as_array()?
        .iter()
        .map(|m| m["name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    Some(names)
}

/// PIDs of the live (not zombie) etcd processes whose data is under `dir`.
fn etcd_pids(dir: &Path) -> Vec<u32> {
    let arg = format!("--data-dir={}", dir.join("etcd").display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            !zombie && cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes())
        })
        .collect()
}

#[test]
fn three_servers_with_embedded_etcd_survive_the_loss_of_one() {
    let c = MultiNode::up(
        SERVERS,
        &[
            "--servers",
            "3",
            "--host-images",
            "--server-arg=--cluster-init",
            "--server-arg=--leader-elect",
        ],
    );
    let names: Vec<String> = (1..=SERVERS).map(|i| c.node_name(i)).collect();
    // Three started members, the same list from each.
    for i in 1..=SERVERS {
        let got = eventually(Duration::from_secs(30), || {
            members(&c, i).filter(|m| *m == names)
        });
        assert_eq!(got, names, "members through node {i}");
    }
    // Each server answers, with one cluster's objects.
    c.k(&["--server", &url(1), "create", "configmap", "made-on-1"]);
    for i in 1..=SERVERS {
        let nodes = c.k(&["--server", &url(i), "get", "nodes", "-o", "name"]);
        assert_eq!(nodes.lines().count(), 3, "through server {i}: {nodes}");
        let cm = c.k(&[
            "--server",
            &url(i),
            "get",
            "configmap",
            "made-on-1",
            "-o",
            "name",
        ]);
        assert_eq!(cm.trim(), "configmap/made-on-1", "through server {i}");
    }

    // The first server (the one that made the cluster) dies; its member with it.
    let node1 = c.cluster_dir().join("node1");
    assert_eq!(etcd_pids(&node1).len(), 1, "node 1's etcd is running");
    // Its command line, to start it again later as `skiff up` did.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", c.node_pid(1))).expect("cmdline");
    let argv: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let _ = Command::new("kill")
        .args(["-KILL", &c.node_pid(1).to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !etcd_pids(&node1).is_empty() {
        assert!(
            Instant::now() < deadline,
            "node 1's etcd outlived its server: {:?}",
            etcd_pids(&node1)
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Two of three members are a quorum: both other servers take writes, and
    // see each other's.
    for (writer, reader) in [(2u8, 3u8), (3, 2)] {
        let name = format!("made-on-{writer}");
        // A retry after an answer that was lost finds the first try's object.
        eventually(Duration::from_secs(30), || {
            let out = c.kubectl(&["--server", &url(writer), "create", "configmap", &name]);
            (out.status.success() || String::from_utf8_lossy(&out.stderr).contains("AlreadyExists"))
                .then_some(())
        });
        let got = c.k(&[
            "--server",
            &url(reader),
            "get",
            "configmap",
            &name,
            "-o",
            "name",
        ]);
        assert_eq!(got.trim(), format!("configmap/{name}"));
    }
    let all = c.k(&["--server", &url(2), "get", "configmaps", "-o", "name"]);
    for name in ["made-on-1", "made-on-2", "made-on-3"] {
        assert!(all.contains(name), "{name} missing: {all}\n{}", c.logs());
    }
    // The dead member is still a member: the server, started again with the
    // flags it was made with, restarts it from its data and catches up.
    assert_eq!(members(&c, 2).map(|m| m.len()), Some(3));
    let log = std::fs::File::create(node1.join("restart.log")).expect("log");
    let mut again = c.on_node(1, &argv[0]);
    again
        .args(&argv[1..])
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
    // Killed on drop, before `skiff down` (dropped after it) removes the rest.
    let _restarted = support::Background(again.spawn().expect("restart server 1"));
    let got = eventually(Duration::from_secs(60), || {
        let out = c.kubectl(&[
            "--server",
            &url(1),
            "get",
            "configmap",
            "made-on-3",
            "-o",
            "name",
        ]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    assert_eq!(got.trim(), "configmap/made-on-3");
    assert_eq!(members(&c, 1), Some(names));
    assert_eq!(etcd_pids(&node1).len(), 1, "node 1's etcd runs again");
}
