//! The printed tables and the docs section.

use std::time::Duration;

use skiff_bench::report::Table;
use skiff_bench::stats::{fmt_duration, fmt_rate, thousands};

use crate::control::{Bulk, Changes};
use crate::crossnode::CrossNode;
use crate::dataplane::{Comparison, Phase, Shape};

pub const HEADING: &str = "## Service proxy (bench/proxy)";
pub const CROSS_HEADING: &str = "## Service proxy across nodes (bench/proxy)";

pub struct Results {
    pub services: usize,
    pub concurrency: usize,
    pub small: Phase,
    pub large: Phase,
    pub bulk: Bulk,
    pub cold_live: Duration,
    pub cold_floor: Duration,
    pub changes: Changes,
}

fn ratio(skiff: f64, floor: f64) -> String {
    if floor <= 0.0 {
        return "n/a".into();
    }
    let r = skiff / floor;
    if r >= 100.0 {
        format!("{r:.0}×")
    } else if r >= 10.0 {
        format!("{r:.1}×")
    } else {
        format!("{r:.2}×")
    }
}

fn time_row(t: &mut Table, what: String, skiff: Duration, floor: Duration) {
    t.row(
        what,
        fmt_duration(skiff),
        fmt_duration(floor),
        ratio(skiff.as_secs_f64(), floor.as_secs_f64()),
    );
}

/// The total-rate row and the median-of-rounds row of one comparison.
fn rate_rows(t: &mut Table, what: &str, c: &Comparison) {
    t.row(
        what,
        fmt_rate(c.rate_a()),
        fmt_rate(c.rate_b()),
        ratio(c.rate_a(), c.rate_b()),
    );
    t.row(
        format!("  median of {} paired rounds", c.a.len()),
        String::new(),
        String::new(),
        ratio(c.median_ratio(), 1.0),
    );
}

/// The large phase's ClusterIP rate against the small phase's, raw and with
/// each divided by its own phase's pod-IP rate: the phases run minutes apart,
/// and the pod-IP path (same node, same conntrack) is the control for drift.
fn scale_rows(t: &mut Table, what: &str, large: &Comparison, small: &Comparison) {
    t.row(
        what,
        fmt_rate(large.rate_a()),
        fmt_rate(small.rate_a()),
        ratio(large.rate_a(), small.rate_a()),
    );
    let large_rel = large.rate_a() / large.rate_b().max(1e-9);
    let small_rel = small.rate_a() / small.rate_b().max(1e-9);
    t.row(
        "  each ÷ its own phase's pod-IP rate",
        format!("{large_rel:.3}"),
        format!("{small_rel:.3}"),
        ratio(large_rel, small_rel),
    );
}

pub fn render(r: &Results, command: &str, shape: Shape) -> (String, String) {
    let n = thousands(r.services as u64);
    let mut data = Table::new("data plane", "skiff", "floor", "skiff ÷ floor");
    rate_rows(
        &mut data,
        "keep-alive requests/s: ClusterIP vs pod IP, 1 service",
        &r.small.keep_alive,
    );
    rate_rows(
        &mut data,
        "new connections/s: ClusterIP vs pod IP, 1 service",
        &r.small.close,
    );
    rate_rows(
        &mut data,
        &format!("keep-alive requests/s: ClusterIP vs pod IP, {n} services"),
        &r.large.keep_alive,
    );
    rate_rows(
        &mut data,
        &format!("new connections/s: ClusterIP vs pod IP, {n} services"),
        &r.large.close,
    );
    scale_rows(
        &mut data,
        &format!("keep-alive requests/s via ClusterIP: {n} services vs 1"),
        &r.large.keep_alive,
        &r.small.keep_alive,
    );
    scale_rows(
        &mut data,
        &format!("new connections/s via ClusterIP: {n} services vs 1"),
        &r.large.close,
        &r.small.close,
    );
    let errors = [&r.small, &r.large]
        .iter()
        .map(|p| p.keep_alive.errors() + p.close.errors())
        .sum::<u64>();

    let mut control = Table::new("control plane", "skiff", "floor", "skiff ÷ floor");
    time_row(
        &mut control,
        format!(
            "{n} services created via the API, proxy running: last one live vs last write returned"
        ),
        r.bulk.live,
        r.bulk.writes,
    );
    time_row(
        &mut control,
        format!("cold start, {n} services × 4 endpoints from an empty table vs `nft -f` of the same table"),
        r.cold_live,
        r.cold_floor,
    );
    let (mut live, mut api, mut nft) = (
        r.changes.live.clone(),
        r.changes.api.clone(),
        r.changes.nft.clone(),
    );
    let changes = live.len();
    for (p, name) in [(50.0, "p50"), (99.0, "p99")] {
        time_row(
            &mut control,
            format!("one endpoint change live ({n} services) vs the API write alone, {name}"),
            live.percentile(p),
            api.percentile(p),
        );
        time_row(
            &mut control,
            format!(
                "one endpoint change live ({n} services) vs `nft -f` of that one element, {name}"
            ),
            live.percentile(p),
            nft.percentile(p),
        );
    }
    let attempts = r.changes.attempts as f64 / changes.max(1) as f64;
    let data_md = data.markdown();
    let control_md = control.markdown();
    let printed = format!("{data_md}\n{control_md}\nload-generator errors: {errors}");
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let section = format!(
        "{HEADING}\n\n\
Command: `{command}`\n\n\
Run {date} on a machine with `nproc` = {nproc}, shared with other work; the API server, \
the proxier, the pod servers, the load generator and `nft` all run on the same cores. \
Only the ratios, measured side by side in this one run, are meaningful. Goals (issue 6): \
ClusterIP ÷ pod IP ≥ 0.95, {n} services ÷ 1 ≥ 0.95, endpoint change live p99 < 50 ms.\n\n\
{data_md}\n\
- Topology: the benchmark's namespace is the node; a client pod and five server pods are \
namespaces joined to it by veth pairs (/32 addresses, default route via the node), so the \
pod-IP path and the ClusterIP path both cross the node's forwarding and conntrack and differ \
only by the proxy's DNAT. The proxier is the real one (`skiff_proxy::run`, in-process, its \
own runtime) fed by the real API server (in-process, SQLite) holding selector-less \
Services and their EndpointSlices.\n\
- The load generator and the HTTP server are this benchmark's binary run inside the pods: \
{workers} concurrent connections (keep-alive, one request at a time each) or {workers} \
loops opening a connection per request (`Connection: close`, the server closes first); \
{secs} s per run, {rounds} rounds per comparison alternating which side goes first. The \
target service has one endpoint, the same server the pod-IP side loads.\n\
- {n} services vs 1: the two phases run minutes apart (programming {n} services sits \
between them), so the second row divides each phase's ClusterIP rate by the pod-IP rate \
measured in the same phase. Load-generator errors over all runs: {errors}.\n\n\
{control_md}\n\
- Live is observed on the data path: a prober in the client pod opens new connections to \
the ClusterIP (one every 250 µs) until the expected pod answers; the kernel table's \
element counts are checked with `nft -j list` after the bulk phases (not timed).\n\
- Creation: {bulk} services and their slices created by {concurrency} concurrent API \
clients while the proxier follows; the floor is the time until the last API write \
returned, the figure the time until the last-written service answered.\n\
- Cold start: the proxier is stopped (its table removed) and started again with every \
service in the API; the figure runs from its start (list + watch, rule generation, one \
`nft -f` transaction) until a service answers. The floor is `nft -f` of the same table's \
sets, maps, elements and chains (the proxier's own generator, renamed, without hooks).\n\
- Endpoint change: a merge patch of a random service's EndpointSlice replacing one of its \
four endpoints; timed from the start of the API write until the new endpoint answers \
through the ClusterIP (the prober needed {attempts:.1} connections per change on average, \
each new connection picking one of four endpoints). Floors: the API write's own round trip, \
and `nft -f` of the same one-element change into a table of the same size.\n",
        workers = shape.workers,
        secs = shape.seconds,
        rounds = shape.rounds,
        bulk = thousands(r.bulk.services.len() as u64),
        concurrency = r.concurrency,
    );
    (section, printed)
}

/// The cross-node tables: ClusterIP ÷ pod IP per backend, and VXLAN ÷ host-gw.
pub fn render_cross(c: &CrossNode, command: &str, shape: Shape) -> (String, String) {
    let mut data = Table::new(
        "client pod on node A → server pod on node B",
        "via ClusterIP",
        "floor: pod IP",
        "ClusterIP ÷ pod IP",
    );
    for (name, p) in [("host-gw", &c.host_gw), ("vxlan", &c.vxlan)] {
        rate_rows(
            &mut data,
            &format!("keep-alive requests/s, {name}"),
            &p.keep_alive,
        );
        rate_rows(&mut data, &format!("new connections/s, {name}"), &p.close);
    }
    let mut backends = Table::new("pod IP across nodes", "vxlan", "host-gw", "vxlan ÷ host-gw");
    rate_rows(
        &mut backends,
        "keep-alive requests/s",
        &c.backends.keep_alive,
    );
    rate_rows(&mut backends, "new connections/s", &c.backends.close);
    let errors: u64 = [&c.host_gw, &c.vxlan, &c.backends]
        .iter()
        .map(|p| p.keep_alive.errors() + p.close.errors())
        .sum();
    let data_md = data.markdown();
    let backends_md = backends.markdown();
    let printed = format!("{data_md}\n{backends_md}\nload-generator errors: {errors}");
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let section = format!(
        "{CROSS_HEADING}\n\n\
Command: `{command}`\n\n\
Run {date} on a machine with `nproc` = {nproc}, shared with other work; the API server, \
the proxier, both nodes' pods, the load generator and the kernel's forwarding (and VXLAN \
encapsulation) on both nodes all run on the same cores. Only the ratios, measured side by \
side in this one run, are meaningful. Goal (issue 15): ClusterIP ÷ pod IP across nodes \
≥ 0.95 per backend.\n\n\
{data_md}\n\
{backends_md}\n\
- Topology: the benchmark's namespace is node A, where the proxier runs (`skiff_proxy::run`, \
in-process, fed by the in-process API server) and the client pod is; node B is a second \
namespace joined to it by a veth pair (the nodes' LAN, MTU {underlay}), with its own pod \
range and the server pod. The service has one endpoint, that pod (`nodeName` node B); the \
pod-IP side loads the same server directly, so both sides cross node A's forwarding, the \
LAN and node B's forwarding and differ only by the proxy's DNAT on node A.\n\
- Routes between the nodes' pod ranges are programmed with the agent's own functions \
(`skiff_agent::crossnode`), as `skiff agent` does on each node: host-gw is the `plan` + \
`diff` batch of direct routes via the peer's LAN address; VXLAN is `underlay` + \
`setup_vxlan` on both nodes and the FDB, neighbour and route batches to the peer's VTEP, \
with the client's and the server's veths at the overlay MTU ({overlay}) while VXLAN is \
programmed. Switching backend applies `diff(old plan, new plan)` on both nodes.\n\
- Load: {workers} concurrent connections (keep-alive, one request at a time each) or \
{workers} loops opening a connection per request (`Connection: close`), {secs} s per run, \
{rounds} rounds per comparison alternating which side goes first. VXLAN ÷ host-gw: the \
pod-IP path with the backend switched before every run (both sides of a round seconds \
apart), so the machine's drift hits both alike, each side from a source address of its \
own that never went through the ClusterIP to this server (the conntrack entries of those \
connections would clash with direct ones for two minutes). Load-generator errors over all runs: \
{errors}.\n",
        underlay = c.underlay_mtu,
        overlay = c.overlay_mtu,
        workers = shape.workers,
        secs = shape.seconds,
        rounds = shape.rounds,
    );
    (section, printed)
}
