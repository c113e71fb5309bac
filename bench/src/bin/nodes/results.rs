//! The printed tables and the docs section.

use skiff_bench::report::Table;

use crate::round::{Round, Window, PROBE_SLOW, PROBE_TIMEOUT};
use crate::Args;

pub const HEADING: &str = "## Node failure (bench/nodes)";

/// Seconds with millisecond resolution: `12.345 s`.
fn s(ns: i128) -> String {
    format!("{:.3} s", ns as f64 / 1e9)
}

/// Signed seconds: `+0.012 s`.
fn signed(ns: i128) -> String {
    format!("{:+.3} s", ns as f64 / 1e9)
}

/// p50 (nearest rank) and max.
fn p50_max(mut v: Vec<i128>) -> Option<(i128, i128)> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let rank = (v.len() as f64 * 0.5).ceil() as usize;
    Some((v[rank.clamp(1, v.len()) - 1], v[v.len() - 1]))
}

fn row(t: &mut Table, what: &str, values: Vec<i128>, fmt: fn(i128) -> String, beside: String) {
    let (p50, max) = p50_max(values)
        .map_or((String::from("n/a"), String::from("n/a")), |(a, b)| {
            (fmt(a), fmt(b))
        });
    t.row(what, p50, max, beside);
}

/// A Markdown table of any width, padded to line up in a terminal too.
fn markdown(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::from("|");
        for (i, (w, c)) in width.iter().zip(cells).enumerate() {
            let pad = " ".repeat(w - c.chars().count());
            if i == 0 {
                out.push_str(&format!(" {c}{pad} |"));
            } else {
                out.push_str(&format!(" {pad}{c} |"));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(header.to_vec());
    out.push('|');
    for (i, w) in width.iter().enumerate() {
        if i == 0 {
            out.push_str(&format!(" {} |", "-".repeat(*w)));
        } else {
            out.push_str(&format!(" {}: |", "-".repeat(w - 1)));
        }
    }
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

pub fn render(args: &Args, rounds: &[Round], aborted: &[String]) -> (String, String) {
    let (g, t) = (args.grace, args.toleration);
    let n = rounds.len();
    let mut sum = Table::new(
        &format!("node 3 killed ({n} rounds)"),
        "p50",
        "max",
        "configured / goal",
    );
    let map = |f: fn(&Round) -> i128| rounds.iter().map(f).collect::<Vec<_>>();
    row(
        &mut sum,
        "node 3's Lease last renewed → kill",
        map(|r| r.kill - r.last_renew),
        s,
        format!("renewed every {} s", args.lease as f64 / 4.0),
    );
    row(
        &mut sum,
        "kill → node 3 Ready=Unknown",
        rounds
            .iter()
            .filter_map(|r| r.unknown.map(|u| u - r.kill))
            .collect(),
        s,
        format!("grace {g} s"),
    );
    row(
        &mut sum,
        "kill → node 3's endpoints not ready",
        map(|r| r.endpoints - r.kill),
        s,
        format!("grace {g} s"),
    );
    row(
        &mut sum,
        "grace end → node 3's endpoints not ready",
        map(|r| r.endpoints - r.grace_end),
        signed,
        "goal ≤ 1 s".into(),
    );
    row(
        &mut sum,
        &format!(
            "kill → all {} replicas Ready on nodes 1 and 2",
            args.replicas
        ),
        map(|r| r.replicas - r.kill),
        s,
        format!("grace + toleration {} s", g + t),
    );
    row(
        &mut sum,
        &format!(
            "grace end → all {} replicas Ready on nodes 1 and 2",
            args.replicas
        ),
        map(|r| r.replicas - r.grace_end),
        signed,
        format!("toleration {t} s"),
    );
    let total = |f: fn(&Round) -> Window| {
        rounds.iter().map(f).fold(Window::default(), |a, w| Window {
            total: a.total + w.total,
            failed: a.failed + w.failed,
            slow: a.slow + w.slow,
        })
    };
    let after = total(|r| r.after);
    let during = total(|r| r.during);
    let before = total(|r| r.before);
    sum.row(
        "ClusterIP prober: connections failed after the endpoints went not ready, all rounds",
        format!("{} of {}", after.failed, after.total),
        String::new(),
        "goal 0".into(),
    );
    sum.row(
        "ClusterIP prober: connections failed between the kill and then, all rounds",
        format!("{} of {}", during.failed, during.total),
        String::new(),
        String::new(),
    );
    let flaps: usize = rounds.iter().map(|r| r.healthy_not_ready).sum();
    let stale: usize = rounds.iter().map(|r| r.failed_stale).sum();
    let lag: usize = rounds.iter().map(|r| r.failed_lag).sum();
    let other: usize = rounds.iter().map(|r| r.failed_other).sum();

    let per_round: Vec<Vec<String>> = rounds
        .iter()
        .enumerate()
        .map(|(i, r)| {
            vec![
                (i + 1).to_string(),
                format!("{}/{}/{}", r.spread[0], r.spread[1], r.spread[2]),
                s(r.kill - r.last_renew),
                r.unknown.map_or("n/a".into(), |u| signed(u - r.grace_end)),
                s(r.endpoints - r.kill),
                signed(r.endpoints - r.grace_end),
                s(r.replicas - r.kill),
                format!(
                    "{} of {} ({} slow)",
                    r.after.failed, r.after.total, r.after.slow
                ),
                r.last_failure_after.map_or(String::new(), signed),
            ]
        })
        .collect();
    let rounds_md = markdown(
        &[
            "round",
            "replicas per node",
            "renewed → kill",
            "grace end → Unknown",
            "kill → endpoints",
            "grace end → endpoints",
            "kill → replicas",
            "prober failed after",
            "last failure after",
        ],
        &per_round,
    );
    let sum_md = sum.markdown();
    let aborted_md = if aborted.is_empty() {
        String::from("No round was aborted.")
    } else {
        let mut out = format!(
            "{} round(s) aborted and run again (not in the tables):",
            aborted.len()
        );
        for a in aborted {
            // The first line says what was not seen; the rest is diagnostics.
            out.push_str(&format!("\n  - `{}`", a.lines().next().unwrap_or_default()));
        }
        out
    };
    let printed = format!(
        "{sum_md}\n{rounds_md}\nprober connections before the kill: {} failed, {} slow of {}; \
         failed after the endpoints went: {stale} by a stale conntrack entry to node 3, \
         {lag} before node 1's proxier caught up, {other} otherwise; \
         snapshots with node 1 or 2 not Ready: {flaps}\n{aborted_md}",
        before.failed, before.slow, before.total
    );
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let section = format!(
        "{HEADING}\n\n\
Command: `{command}`\n\n\
Run {date} on a machine with `nproc` = {nproc}, shared with other work; the three nodes, \
their pods, the benchmark's watches and the prober share its cores. Goals (issue 15): \
a dead node's endpoints not ready within 1 s after its grace period ends, and no failed \
ClusterIP request after that.\n\n\
{sum_md}\n\
Per round (\"grace end\" is node 3's last Lease renewTime + {g} s):\n\n\
{rounds_md}\n\
- Cluster: `skiff up --nodes 3 --host-images --flannel-backend {backend} \
--server-arg=--node-monitor-grace-period={g}s \
--server-arg=--default-unreachable-toleration-seconds={t} \
--server-arg=--node-lease-duration-seconds={lease} --agent-arg=--node-lease-duration-seconds={lease}` \
(each node's Lease renewed every {renew} s), the release binary, run inside a \
network namespace the benchmark made (the nodes' LAN); every round on a fresh cluster, \
removed with `skiff down` after it. `skiff up` pins the nodes' bridge's MAC address: a Linux \
bridge whose address was never set follows the lowest MAC among its ports, so deleting node 3's \
veth changed it and the live nodes' neighbour entries for the LAN's address (where the \
benchmark's watches come from) stalled the watches for up to a minute; the benchmark checks at \
every kill that the address stayed. A Deployment of `traefik/whoami` ({replicas} replicas, \
the built-in catalog's stand-in) behind a ClusterIP Service; the round starts once every \
replica is Ready (a TCP readiness probe on port 80, every second) and ready in the slices, \
with at least one on each node.\n\
- Node 3 dies as in the e2e: SIGKILL of its `skiff agent` and of the process holding its \
network namespace (PIDs from `up.json`), then its veth on the bridge deleted. Its pods' \
processes are cut off, not killed (as on a machine that lost its network).\n\
- Times come from the benchmark's own watches (kube-rs, the cluster's kubeconfig) of the \
Service's EndpointSlices, the pods and the Nodes, stamped with the wall clock when each \
event arrives. Endpoints not ready: no endpoint on node 3 is ready in the slices. Replicas: \
{replicas} pods Ready and not terminating on nodes 1 and 2. Node 3's Lease renewTime is \
read after the kill, so it is the last one.\n\
- Prober: this benchmark's binary in the network namespace of a pod pinned to node 1 \
(`nsenter` to the pod's sandbox), {loops} loops each opening a TCP connection to the \
ClusterIP and closing it, every {interval} ms; a connection not established within \
{timeout} ms (the first SYN and two retransmissions) fails, one established after more than \
{slow} ms is counted as slow (it needed a retransmitted SYN: the stand-in is Python's \
`ThreadingHTTPServer`, whose accept queue of 5 drops SYNs when the machine is busy). \
Connections, not HTTP requests: the stand-in starts a process per request. Counted by when \
each connection started, against the moment the benchmark's watch showed the endpoints not \
ready. Before the kill: {bf} failed and {bs} slow of {bt}. Where the connections that \
failed after the endpoints went were sent is read from node 1's conntrack table (`conntrack \
-L` in node 1's namespace at the end of the round, by source port): {stale} went to a pod \
on node 3 through a stale entry (the same source port had failed against node 3 before \
the endpoints went, and its `SYN_SENT` entry, kept 120 s, still held the old DNAT), {lag} \
went to node 3 with no such earlier attempt (node 1's proxier had not yet applied the \
change), {other} elsewhere. Snapshots in which node 1 or 2 was not Ready: {flaps}.\n\
- {aborted_md}\n",
        bf = before.failed,
        bs = before.slow,
        bt = before.total,
        slow = PROBE_SLOW.as_millis(),
        lease = args.lease,
        renew = args.lease as f64 / 4.0,
        command = args.command_line(),
        backend = args.backend,
        replicas = args.replicas,
        loops = args.probe_loops,
        interval = args.probe_interval_ms,
        timeout = PROBE_TIMEOUT.as_millis(),
    );
    (section, printed)
}
