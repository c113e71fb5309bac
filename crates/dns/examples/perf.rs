//! Side-by-side DNS throughput: skiff's DNS, Knot DNS and dnsmasq serving the
//! same records (1,000 services with a named port, 100 headless services of
//! 3 endpoints), measured with dnsperf in one run, inside a network
//! namespace made for the run (only `lo`). Prints QPS, latency and ratios.
//!
//! ```text
//! sudo cargo run --release -p skiff-dns --example perf [-- SECONDS]
//! ```
//!
//! Needs `dnsperf`, `knotd`, `dnsmasq` and `dig`. This is the interim home of
//! issue 7's `bench/dns` (see docs/dns.md); it is a benchmark, never a test.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use skiff_dns::index::{Index, Zone};
use skiff_dns::DnsSettings;

const SERVICES: usize = 1000;
const HEADLESS: usize = 100;
const NAMESPACES: usize = 10;
const ZONE: &str = "cluster.local";

fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    if std::env::var_os("SKIFF_DNSPERF_INSIDE").is_none() {
        // Re-run inside a fresh namespace so nothing leaves the machine.
        let ns = format!("skiff-dnsperf-{}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &ns]));
        run(Command::new("ip").args(["-n", &ns, "link", "set", "lo", "up"]));
        let exe = std::env::current_exe().expect("own path");
        let status = Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(exe)
            .arg(secs.to_string())
            .env("SKIFF_DNSPERF_INSIDE", "1")
            .status();
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        std::process::exit(status.map(|s| s.code().unwrap_or(1)).unwrap_or(1));
    }
    let dir = std::env::temp_dir().join(format!("skiff-dnsperf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("work dir");
    let result = bench(&dir, secs);
    let _ = std::fs::remove_dir_all(&dir);
    print!("{result}");
}

/// Service `i`: name, namespace, ClusterIP.
fn service(i: usize) -> (String, String, String) {
    (
        format!("svc-{i}"),
        format!("ns-{}", i % NAMESPACES),
        format!("10.96.{}.{}", 1 + i / 250, 1 + i % 250),
    )
}

/// Headless service `h`: name, namespace, endpoints (hostname, address).
fn headless(h: usize) -> (String, String, Vec<(String, String)>) {
    let eps = (0..3)
        .map(|e| {
            (
                format!("db-{e}"),
                format!("10.244.{}.{}", 1 + h / 80, 1 + (h % 80) * 3 + e),
            )
        })
        .collect();
    (format!("db-{h}"), format!("ns-{}", h % NAMESPACES), eps)
}

fn index() -> Index {
    let (services, slices) = objects();
    Index::build(zone(), &services, &slices, 1)
}

fn zone() -> Zone {
    Zone {
        domain: ZONE.into(),
        ttl: 5,
        dns_ip: "10.96.0.10".parse().expect("ip"),
    }
}

type Objects = (
    Vec<Arc<k8s_openapi::api::core::v1::Service>>,
    Vec<Arc<k8s_openapi::api::discovery::v1::EndpointSlice>>,
);

fn objects() -> Objects {
    let mut services = Vec::new();
    let mut slices = Vec::new();
    for i in 0..SERVICES {
        let (name, ns, ip) = service(i);
        let svc = json!({"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "clusterIPs": [ip],
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}});
        services.push(Arc::new(serde_json::from_value(svc).expect("service")));
    }
    for h in 0..HEADLESS {
        let (name, ns, eps) = headless(h);
        let svc = json!({"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}});
        services.push(Arc::new(serde_json::from_value(svc).expect("service")));
        let eps: Vec<_> = eps
            .iter()
            .map(|(host, ip)| json!({"addresses": [ip], "hostname": host, "conditions": {"ready": true}}))
            .collect();
        let slice = json!({"metadata": {"name": format!("{name}-1"), "namespace": ns,
                "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "endpoints": eps,
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]});
        slices.push(Arc::new(serde_json::from_value(slice).expect("slice")));
    }
    (services, slices)
}

/// The index rebuild after a change: the part of DNS programming latency
/// that is ours (the rest is the watch event's trip from the API server).
fn rebuild_p99() -> Duration {
    let (services, slices) = objects();
    let mut times: Vec<Duration> = (0..200)
        .map(|i| {
            let start = Instant::now();
            std::hint::black_box(Index::build(zone(), &services, &slices, i));
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() * 99 / 100]
}

/// The same records as a zone file (Knot) and as dnsmasq configuration.
fn peers_config(dir: &Path) -> (PathBuf, PathBuf) {
    let mut zone = format!(
        "$ORIGIN {ZONE}.\n$TTL 5\n@ SOA ns.dns hostmaster 1 7200 1800 86400 5\n@ NS ns.dns\nns.dns A 10.96.0.10\n"
    );
    let mut masq = format!(
        "port=53\nlisten-address=127.0.0.4\nbind-interfaces\nno-resolv\nno-hosts\nuser=root\nlocal=/{ZONE}/\nauth-ttl=5\nlocal-ttl=5\n"
    );
    for i in 0..SERVICES {
        let (name, ns, ip) = service(i);
        let fq = format!("{name}.{ns}.svc.{ZONE}");
        let _ = writeln!(zone, "{name}.{ns}.svc A {ip}");
        let _ = writeln!(zone, "_http._tcp.{name}.{ns}.svc SRV 0 100 80 {fq}.");
        let _ = writeln!(masq, "host-record={fq},{ip}");
        let _ = writeln!(masq, "srv-host=_http._tcp.{fq},{fq},80,0,100");
    }
    for h in 0..HEADLESS {
        let (name, ns, eps) = headless(h);
        let fq = format!("{name}.{ns}.svc.{ZONE}");
        for (host, ip) in eps {
            let _ = writeln!(zone, "{name}.{ns}.svc A {ip}");
            let _ = writeln!(zone, "{host}.{name}.{ns}.svc A {ip}");
            let _ = writeln!(zone, "_pg._tcp.{name}.{ns}.svc SRV 0 33 5432 {host}.{fq}.");
            let _ = writeln!(masq, "host-record={fq},{ip}");
            let _ = writeln!(masq, "host-record={host}.{fq},{ip}");
            let _ = writeln!(masq, "srv-host=_pg._tcp.{fq},{host}.{fq},5432,0,33");
        }
    }
    let zone_path = dir.join("cluster.local.zone");
    std::fs::write(&zone_path, zone).expect("zone");
    let knot = format!(
        "server:\n  listen: 127.0.0.3@53\n  udp-workers: 2\n  tcp-workers: 1\n  background-workers: 1\n  rundir: {d}\ndatabase:\n  storage: {d}\nlog:\n  - target: stderr\n    any: error\nzone:\n  - domain: {ZONE}\n    file: {z}\n    journal-content: none\n    zonefile-sync: -1\n",
        d = dir.display(),
        z = zone_path.display()
    );
    let knot_conf = dir.join("knot.conf");
    std::fs::write(&knot_conf, knot).expect("knot conf");
    let masq_conf = dir.join("dnsmasq.conf");
    std::fs::write(&masq_conf, masq).expect("dnsmasq conf");
    (knot_conf, masq_conf)
}

/// A query mix like upstream's perf tests: cluster A, SRV, headless, NXDOMAIN
/// and the NXDOMAINs of search-path expansions.
fn queries(dir: &Path) -> PathBuf {
    let mut q = String::new();
    for n in 0..10_000usize {
        let (name, ns, _) = service((n * 7919) % SERVICES);
        let (hname, hns, _) = headless((n * 31) % HEADLESS);
        let line = match n % 10 {
            0..=3 => format!("{name}.{ns}.svc.{ZONE} A"),
            4 | 5 => format!("_http._tcp.{name}.{ns}.svc.{ZONE} SRV"),
            6 | 7 => format!("{hname}.{hns}.svc.{ZONE} A"),
            8 => format!("missing-{n}.{ns}.svc.{ZONE} A"),
            _ => format!("{name}.{ns}.svc.{ZONE}.{ns}.svc.{ZONE} A"),
        };
        q.push_str(&line);
        q.push('\n');
    }
    let path = dir.join("queries.txt");
    std::fs::write(&path, q).expect("queries");
    path
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bench(dir: &Path, secs: u64) -> String {
    let index = index();
    let (knot_conf, masq_conf) = peers_config(dir);
    let queries = queries(dir);

    let mut settings = DnsSettings::new(
        ZONE,
        "10.96.0.10".parse().expect("ip"),
        "10.244.0.0/16",
        "bench",
    );
    settings.listen = SocketAddr::from(([127, 0, 0, 2], 53));
    settings.metrics_listen = SocketAddr::from(([127, 0, 0, 2], 9153));
    settings.upstreams = vec![SocketAddr::from(([127, 0, 0, 9], 53))];
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        if let Err(e) = rt.block_on(skiff_dns::serve_index(index, settings)) {
            eprintln!("skiff dns: {e}");
        }
    });
    let _knot = Killed(
        Command::new("knotd")
            .args(["-c"])
            .arg(&knot_conf)
            .stdout(Stdio::null())
            .spawn()
            .expect("knotd"),
    );
    let _masq = Killed(
        Command::new("dnsmasq")
            .args(["--keep-in-foreground", "--pid-file=", "-C"])
            .arg(&masq_conf)
            .spawn()
            .expect("dnsmasq"),
    );
    let servers = [
        ("skiff", "127.0.0.2"),
        ("knot", "127.0.0.3"),
        ("dnsmasq", "127.0.0.4"),
    ];
    for (name, addr) in servers {
        wait_answers(name, addr);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "dnsperf -c 4 -l {secs}, {SERVICES} services + {HEADLESS} headless x3, mix: 40% A, 20% SRV, 20% headless A, 10% NXDOMAIN, 10% search-path NXDOMAIN"
    );
    let mut results = Vec::new();
    for (name, addr) in servers {
        let (qps, lat) = dnsperf(addr, &queries, secs);
        let _ = writeln!(
            out,
            "{name:>8}: {qps:>10.0} QPS  {:>7.3} ms avg",
            lat * 1000.0
        );
        results.push((qps, lat));
    }
    let _ = writeln!(
        out,
        "index rebuild after a change, {} services: p99 {:?} (goal for programming latency: p99 < 10 ms)",
        SERVICES + HEADLESS,
        rebuild_p99()
    );
    let (s, k, d) = (results[0], results[1], results[2]);
    let _ = writeln!(
        out,
        "skiff/knot QPS {:.2}x (goal >= 1), skiff/dnsmasq QPS {:.2}x (goal >= 2); latency skiff/knot {:.2}, skiff/dnsmasq {:.2}",
        s.0 / k.0,
        s.0 / d.0,
        s.1 / k.1,
        s.1 / d.1
    );
    out
}

fn wait_answers(name: &str, addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new("dig")
            .args([
                &format!("@{addr}"),
                "+short",
                "+time=1",
                "+tries=1",
                "svc-1.ns-1.svc.cluster.local",
            ])
            .output();
        if out.map(|o| !o.stdout.is_empty()).unwrap_or(false) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} at {addr} does not answer"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// QPS and average latency (seconds) from dnsperf's report.
fn dnsperf(addr: &str, queries: &Path, secs: u64) -> (f64, f64) {
    let out = Command::new("dnsperf")
        .args(["-s", addr, "-c", "4", "-l", &secs.to_string(), "-d"])
        .arg(queries)
        .output()
        .expect("dnsperf");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |label: &str| -> f64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    (field("Queries per second:"), field("Average Latency (s):"))
}

fn run(c: &mut Command) {
    let ok = c.status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "{c:?} failed");
}
