//! `bench/endpoints`: how long after a pod turns Ready (or not Ready) its endpoint
//! shows the new state in its Service's EndpointSlice, with `--services` Services
//! present, printed beside the bare API write that made the change, in the same run.
//! See `bench/README.md`.
//!
//! The binary first re-executes itself inside a network namespace it creates (see
//! `skiff_bench::netns`); the inner run starts the API server and the real controllers
//! in-process on 127.0.0.1 in that namespace, on a fresh SQLite store in a temp dir.

mod changes;
mod cluster;
mod observe;
mod setup;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use skiff_bench::netns;
use skiff_bench::report::{self, Table};
use skiff_bench::runtime::runtime;
use skiff_bench::stats::{fmt_duration, thousands, Samples};

/// Everything the benchmark creates, but the Node, lives in this namespace.
pub const NAMESPACE: &str = "bench";
/// The Node the scheduler binds every pod to.
pub const NODE: &str = "bench-node";
/// Set by the EndpointSlice controller so programming latency can be measured downstream.
pub const TRIGGER_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

const HEADING: &str = "## EndpointSlice programming latency (bench/endpoints)";

/// The goal for the p99 of a pod change reaching its slice.
const GOAL_P99: Duration = Duration::from_millis(50);

/// Pod `i` and its Service share this name.
pub fn pod_name(i: usize) -> String {
    format!("svc-{i:05}")
}

/// Time from a pod becoming Ready to its endpoint in the slice, beside the bare write.
#[derive(Parser, Debug, Clone)]
#[command(name = "endpoints")]
struct Args {
    /// Services present, each selecting one pod of its own.
    #[arg(long, default_value_t = 1_000)]
    services: usize,
    /// Pod status changes timed (alternately Ready and not Ready, pod by pod).
    #[arg(long, default_value_t = 1_000)]
    changes: usize,
    /// Do not record the results in the docs file (for smoke runs).
    #[arg(long)]
    no_docs: bool,
    /// The file the results section is written into.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/benchmarks.md"))]
    docs: PathBuf,
    /// Internal: the network namespace this run was re-executed in.
    #[arg(long = "inner", hide = true)]
    inner: Option<String>,
}

impl Args {
    /// The command that reproduces this run, every size spelled out.
    fn command_line(&self) -> String {
        format!(
            "cargo run --release -p skiff-bench --bin endpoints -- --services {} --changes {}",
            self.services, self.changes
        )
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    skiff_bench::logging::init();
    let result = match &args.inner {
        None => netns::run_outer("skiff-bench"),
        Some(ns) => inner(ns, &args).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| {
        eprintln!("bench/endpoints: error: {e:#}");
        ExitCode::FAILURE
    })
}

fn inner(ns: &str, args: &Args) -> Result<()> {
    netns::verify_inside(ns)?;
    anyhow::ensure!(
        args.services > 0 && args.changes > 0,
        "--services and --changes must be positive"
    );
    let dir = tempfile::Builder::new()
        .prefix("skiff-bench-endpoints")
        .tempdir()?;
    // Two runtimes, as `skiff server` and a separate client would be: the cluster
    // (API server and controllers) and the load generator cannot starve each other's
    // schedulers; both default to one worker per core.
    let cluster_rt = runtime("skiff-cluster", None)?;
    let client_rt = runtime("bench-client", None)?;
    let cluster = cluster::Cluster::start(&cluster_rt, dir.path())?;
    eprintln!("API server and controllers running (inside netns {ns})");

    let result = client_rt.block_on(async {
        tokio::select! {
            r = measure(args, &cluster.kubeconfig) => r,
            e = cluster.controllers_ended() => Err(e),
            r = netns::interrupted() => r.and_then(|()| Err(anyhow::anyhow!("interrupted"))),
        }
    });
    cluster.stop();
    client_rt.shutdown_timeout(Duration::from_secs(2));
    cluster_rt.shutdown_timeout(Duration::from_secs(2));
    let (section, table) = result?;
    println!("\n{table}");
    if args.no_docs {
        eprintln!("not recording (--no-docs)");
    } else {
        report::write_section(&args.docs, HEADING, &section)?;
        eprintln!("recorded in {}", args.docs.display());
    }
    drop(dir);
    Ok(())
}

/// The ratio column: skiff's figure divided by the floor's.
fn ratio(skiff: Duration, floor: Duration) -> String {
    if floor.is_zero() {
        return "n/a".into();
    }
    let r = skiff.as_secs_f64() / floor.as_secs_f64();
    if r >= 10.0 {
        format!("{r:.1}×")
    } else {
        format!("{r:.2}×")
    }
}

fn rows(t: &mut Table, what: &str, skiff: &mut Samples, floor: &mut Samples, floor_name: &str) {
    for (p, name) in [(50.0, "p50"), (99.0, "p99")] {
        let (s, f) = (skiff.percentile(p), floor.percentile(p));
        t.row(
            format!("{what} {name} (floor: {floor_name})"),
            fmt_duration(s),
            fmt_duration(f),
            ratio(s, f),
        );
    }
}

/// Set-up, the timed changes, and the table; returns the docs section and the table.
async fn measure(args: &Args, kubeconfig: &std::path::Path) -> Result<(String, String)> {
    let client = cluster::client(kubeconfig).await?;
    let n = args.services;
    setup::node_and_namespace(&client).await?;
    let slices = observe::watch_slices(client.clone());
    let pod_watch = observe::watch_pods(client.clone());
    eprintln!("creating {n} services, each selecting one pod of its own");
    let created = setup::services_and_pods(&client, n).await?;
    eprintln!("  created in {}", fmt_duration(created));
    let settled = setup::settle(&slices, n, Duration::from_secs(300)).await?;
    eprintln!(
        "  every pod bound and listed (not ready) in its slice {} later",
        fmt_duration(settled)
    );
    eprintln!("timing {} changes", args.changes);
    let results = changes::run(&client, &slices, &pod_watch, n, args.changes).await?;

    eprintln!("slowest changes (patch returned / on the Pod watch / in the slice):");
    for s in &results.slowest {
        eprintln!(
            "  #{} {} → {}: {} / {} / {}",
            s.change,
            s.pod,
            if s.ready { "Ready" } else { "not Ready" },
            fmt_duration(s.write),
            fmt_duration(s.to_pod_watch),
            fmt_duration(s.to_slice)
        );
    }
    let mut all = results.all();
    let count = results.changes();
    let (mut ready, mut not_ready) = (results.to_ready, results.to_not_ready);
    let mut t = Table::new(
        "change",
        "until the slice shows it",
        "floor",
        "skiff ÷ floor",
    );
    const WRITE: &str = "bare status patch";
    const POD_WATCH: &str = "patch seen on a Pod watch";
    rows(
        &mut t,
        "→ Ready",
        &mut ready.to_slice,
        &mut ready.write,
        WRITE,
    );
    rows(
        &mut t,
        "→ not Ready",
        &mut not_ready.to_slice,
        &mut not_ready.write,
        WRITE,
    );
    rows(&mut t, "all", &mut all.to_slice, &mut all.write, WRITE);
    rows(
        &mut t,
        "all",
        &mut all.to_slice,
        &mut all.to_pod_watch,
        POD_WATCH,
    );
    let (worst, worst_write) = (all.to_slice.percentile(100.0), all.write.percentile(100.0));
    t.row(
        format!("all max (floor: {WRITE})"),
        fmt_duration(worst),
        fmt_duration(worst_write),
        ratio(worst, worst_write),
    );
    let table = t.markdown();

    // The measure: a pod becoming Ready until its endpoint is ready in the slice.
    let p99 = ready.to_slice.p99();
    let goal = format!(
        "Goal (issue 4): pod Ready → endpoint ready in its slice, p99 under {}: {} \
         (p99 {} over {} → Ready changes; {} over all {} changes).",
        fmt_duration(GOAL_P99),
        if p99 < GOAL_P99 { "met" } else { "**missed**" },
        fmt_duration(p99),
        thousands(ready.to_slice.len() as u64),
        fmt_duration(all.to_slice.p99()),
        thousands(count as u64),
    );
    let trigger = format!(
        "`{TRIGGER_ANNOTATION}` on the slice that showed the change: set in {} of {} changes, \
         naming the Ready condition's lastTransitionTime the change wrote in {}.",
        results.trigger_set, count, results.trigger_matches
    );
    let printed = format!("{table}\n{goal}\n{trigger}\n");
    let section = docs_section(args, &table, &goal, &trigger);
    Ok((section, printed))
}

fn docs_section(args: &Args, table: &str, goal: &str, trigger: &str) -> String {
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{HEADING}\n\n\
Command: `{cmd}`\n\n\
Run {date} on a machine with `nproc` = {nproc}, **shared with other builds and with the \
load generator** (API server, controllers and the benchmark's client run in one process on \
the same cores, inside a network namespace the benchmark made, over HTTPS on 127.0.0.1). \
The absolute figures are noisy; the ratios, measured side by side in this one run, are \
what to compare.\n\n\
{table}\n\
{goal}\n\n\
{trigger}\n\n\
- Set-up: {services} Services, each selecting one pod of its own; the scheduler binds \
every pod to a Ready Node the benchmark registered; the benchmark (playing the kubelet) \
patches each pod Running with an IP, not Ready, and waits until every endpoint is listed, \
not ready, in its slice.\n\
- Changes, one at a time: change 2k patches pod k's status Ready, change 2k+1 patches it \
not Ready again (a JSON merge patch of `status.conditions`, as a kubelet's readiness probe \
would). Each is timed from the start of the patch to the moment the benchmark's own \
EndpointSlice watch delivers the slice with the pod's endpoint in the new state: the \
durable pod write, its watch event to the controllers, the reconcile, the durable slice \
write and its watch event.\n\
- Floors from the same changes: the status patch's own round trip (one durable write), \
and the moment the benchmark's Pod watch delivers the patched pod (a write plus a watch \
delivery: half of the controllers' path).\n",
        cmd = args.command_line(),
        services = thousands(args.services as u64),
    )
}
