//! The generated text is what the kernel accepts: every fixture and the diffs
//! between states are loaded with the real `nft` inside a network namespace made
//! for the test (never the host's own tables). Skipped when not root.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Instant;

use skiff_proxy::model::{Config, Endpoint, PortInfo, Proto, ServiceInfo};
use skiff_proxy::program::Program;
use skiff_proxy::ruleset::service_fragment;

struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Option<Self> {
        let name = format!("skiff-proxy-{tag}-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self(name))
    }

    fn nft(&self, text: &str) -> Result<(), String> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        child
            .stdin
            .take()
            .ok_or("stdin")?
            .write_all(text.as_bytes())
            .map_err(|e| e.to_string())?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn list(&self) -> String {
        let out = Command::new("ip")
            .args([
                "netns", "exec", &self.0, "nft", "list", "table", "ip", "skiff",
            ])
            .output()
            .expect("nft list");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn cfg() -> Config {
    Config {
        pod_cidr: Some("10.244.0.0/16".parse().expect("cidr")),
        service_cidr: "10.96.0.0/12".parse().expect("cidr"),
        node_ips: vec!["192.168.50.2".parse().expect("ip")],
    }
}

fn service(i: u32, endpoints: u32, affinity: bool) -> ServiceInfo {
    let vip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + 16 + i);
    ServiceInfo {
        namespace: "bench".into(),
        name: format!("svc-{i}"),
        cluster_ips: vec![vip],
        affinity_timeout: affinity.then_some(60),
        ports: vec![PortInfo {
            name: String::new(),
            proto: if i.is_multiple_of(2) {
                Proto::Tcp
            } else {
                Proto::Udp
            },
            port: 80,
            node_port: i
                .is_multiple_of(10)
                .then(|| 30000 + u16::try_from(i / 10).unwrap_or(0)),
            endpoints: (0..endpoints)
                .map(|e| {
                    Endpoint::ready(
                        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 244, 0, 0)) + i * 8 + e),
                        8080,
                    )
                })
                .collect(),
        }],
        ..Default::default()
    }
}

fn update(p: &mut Program, services: &[ServiceInfo]) -> String {
    let c = cfg();
    p.update(
        services
            .iter()
            .map(|s| (s.key(), Some(service_fragment(&c, s))))
            .collect(),
    )
    .text
}

#[test]
fn kernel_accepts_full_and_diffs() {
    let Some(ns) = Netns::new("kernel") else {
        eprintln!("skipped: cannot make a network namespace (not root?)");
        return;
    };
    let mut p = Program::new(cfg());
    let mut services: Vec<ServiceInfo> = (0..20).map(|i| service(i, 3, i % 3 == 0)).collect();
    update(&mut p, &services);
    ns.nft(&p.full()).expect("full load");
    // Scale every service: down, up, to zero, back; each diff must apply on top.
    for n in [2u32, 4, 0, 1, 3] {
        for (i, s) in services.iter_mut().enumerate() {
            *s = service(u32::try_from(i).unwrap_or(0), n, i % 3 == 0);
        }
        let text = update(&mut p, &services);
        ns.nft(&text)
            .unwrap_or_else(|e| panic!("diff to {n} endpoints rejected: {e}\n{text}"));
    }
    // Deleting everything leaves only the skeleton.
    let c = cfg();
    let gone: Vec<_> = services.iter().map(|s| (s.key(), None)).collect();
    let text = p.update(gone).text;
    ns.nft(&text).expect("delete all");
    let listed = ns.list();
    assert!(!listed.contains("pick-"), "{listed}");
    assert!(!listed.contains("rec-"), "{listed}");
    // And a full resync applies over a populated table.
    update(&mut p, &[service(1, 2, true)]);
    ns.nft(&p.full()).expect("full over existing");
    ns.nft(&p.full()).expect("full again");
    // The periodic refill keeps affinity entries.
    ns.nft("add element ip skiff aff-bench/svc-1/udp/80 { 10.244.9.9 timeout 60s : 10.244.0.8 . 8080 }\n")
        .expect("affinity entry");
    ns.nft(&p.refill()).expect("refill");
    ns.nft(&p.refill()).expect("refill again");
    let listed = ns.list();
    assert!(listed.contains("10.244.9.9"), "{listed}");
    assert_eq!(listed.matches("jump services").count(), 2, "{listed}");
    let _ = c;
}

/// An externalTrafficPolicy: Local service with `local` of its 3 endpoints on
/// this node, a node port and a load-balancer address.
fn external_local(i: u32, local: usize, affinity: bool) -> ServiceInfo {
    let mut s = service(i, 3, affinity);
    s.external_local = true;
    s.ports[0].node_port = Some(31000 + u16::try_from(i).unwrap_or(0));
    let lb = Ipv4Addr::new(192, 168, 60, u8::try_from(i).unwrap_or(0));
    s.external_ips = vec![lb];
    s.load_balancer_ips = vec![lb];
    for (n, e) in s.ports[0].endpoints.iter_mut().enumerate() {
        e.local = n < local;
    }
    s
}

/// The short-circuit rules (`fib saddr type local`, `numgen ... offset`) load,
/// and moving endpoints between this node and others diffs cleanly.
#[test]
fn kernel_accepts_external_local() {
    let Some(ns) = Netns::new("etp") else {
        eprintln!("skipped: cannot make a network namespace (not root?)");
        return;
    };
    let mut p = Program::new(cfg());
    let mut services: Vec<ServiceInfo> = (0..4).map(|i| external_local(i, 1, i % 2 == 0)).collect();
    update(&mut p, &services);
    ns.nft(&p.full()).expect("full load");
    for local in [0usize, 2, 3, 0, 1] {
        for (i, s) in services.iter_mut().enumerate() {
            *s = external_local(u32::try_from(i).unwrap_or(0), local, i % 2 == 0);
        }
        let text = update(&mut p, &services);
        ns.nft(&text)
            .unwrap_or_else(|e| panic!("diff to {local} local endpoints rejected: {e}\n{text}"));
    }
    let listed = ns.list();
    assert!(listed.contains("fib saddr type local"), "{listed}");
    let gone: Vec<_> = services.iter().map(|s| (s.key(), None)).collect();
    let text = p.update(gone).text;
    ns.nft(&text).expect("delete all");
    let listed = ns.list();
    for prefix in ["pick-", "local-", "li-", "si-"] {
        assert!(!listed.contains(prefix), "{prefix} left: {listed}");
    }
}

/// `cargo test -p skiff-proxy --release --test kernel -- --ignored --nocapture`
#[test]
#[ignore]
fn scale_10000_services() {
    let Some(ns) = Netns::new("scale") else {
        return;
    };
    let mut p = Program::new(cfg());
    let mut services: Vec<ServiceInfo> = (0..10_000).map(|i| service(i, 4, false)).collect();
    let t = Instant::now();
    let c = cfg();
    let frags: Vec<_> = services
        .iter()
        .map(|s| (s.key(), Some(service_fragment(&c, s))))
        .collect();
    let fragments = t.elapsed();
    p.load(frags);
    let updated = t.elapsed();
    let text = p.full();
    let generated = t.elapsed();
    println!(
        "fragments {fragments:?}, update {:?}, full text {:?}",
        updated - fragments,
        generated - updated
    );
    if let Some(path) = std::env::var_os("SKIFF_PROXY_DUMP") {
        std::fs::write(path, &text).expect("dump");
    }
    ns.nft(&text).expect("full load");
    let total = t.elapsed();
    println!(
        "10,000 services x 4 endpoints: generate {generated:?}, generate + nft -f {total:?} ({} bytes, {} elements, {} chains)",
        text.len(),
        p.element_count(),
        p.chain_count()
    );
    let mut times = Vec::new();
    for round in 0..100u32 {
        let i = (round * 97) % 10_000;
        let idx = usize::try_from(i).unwrap_or(0);
        let n = if round % 2 == 0 { 3 } else { 4 };
        services[idx] = service(i, n, false);
        let t = Instant::now();
        let text = update(&mut p, &services[idx..=idx]);
        ns.nft(&text).expect("diff");
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "one endpoint change at 10,000 services: p50 {:?}, p99 {:?}",
        times[49], times[98]
    );
}

/// Sets up, in the namespace, one established TCP connection and one that waits
/// for its SYN-ACK, both to 10.244.9.9:80; runs `conntrack` with the given
/// arguments; prints the TCP entries before and after, split by a line `--`.
const CONNTRACK_SCRIPT: &str = r#"
import socket, subprocess, sys, time
listener = socket.socket(); listener.bind(("10.244.9.9", 80)); listener.listen(8)
served = socket.socket(); served.bind(("10.244.9.7", 0)); served.connect(("10.244.9.9", 80))
waiting = socket.socket(); waiting.bind(("10.244.9.8", 0)); waiting.setblocking(False)
try:
    waiting.connect(("10.244.9.9", 80))
except BlockingIOError:
    pass
time.sleep(0.2)
def entries():
    out = subprocess.run(["conntrack", "-L", "-p", "tcp"], capture_output=True, text=True)
    return out.stdout
print(entries()); print("--")
subprocess.run(["conntrack"] + sys.argv[1:], capture_output=True)
print(entries())
"#;

/// A removed TCP endpoint loses only its connections still waiting for a
/// SYN-ACK: a retransmitted SYN then picks a live endpoint, and what the pod
/// is serving is left alone.
#[test]
fn conntrack_cleanup_drops_only_unreplied_tcp() {
    let Some(ns) = Netns::new("ct") else {
        eprintln!("skipped: cannot make a network namespace (not root?)");
        return;
    };
    let sh = |args: &[&str]| {
        let ok = Command::new("ip")
            .args(["netns", "exec", &ns.0])
            .args(args)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "{args:?}");
    };
    sh(&["ip", "link", "set", "lo", "up"]);
    for a in ["10.244.9.7/32", "10.244.9.8/32", "10.244.9.9/32"] {
        sh(&["ip", "addr", "add", a, "dev", "lo"]);
    }
    // The SYNs from .8 vanish (a dead pod), and `ct` makes the namespace track.
    ns.nft(
        "table ip cttest {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    \
         ip saddr 10.244.9.8 tcp dport 80 ct state new drop\n  }\n}\n",
    )
    .expect("test table");
    let args =
        skiff_proxy::net::conntrack_delete_args(Proto::Tcp, Ipv4Addr::new(10, 244, 9, 9), 80);
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0, "python3", "-c", CONNTRACK_SCRIPT])
        .args(&args)
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    let (before, after) = text.split_once("--").unwrap_or_else(|| panic!("{text}"));
    assert!(
        before.contains("SYN_SENT") && before.contains("src=10.244.9.8"),
        "{text}"
    );
    assert!(
        before.contains("ESTABLISHED") && before.contains("src=10.244.9.7"),
        "{text}"
    );
    assert!(!after.contains("SYN_SENT"), "unreplied entry kept:\n{text}");
    assert!(
        after.contains("ESTABLISHED") && after.contains("src=10.244.9.7"),
        "established entry lost:\n{text}"
    );
}
