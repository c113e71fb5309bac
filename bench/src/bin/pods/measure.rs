//! The phases of the run, the table, and the docs section.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use skiff_bench::report::Table;
use skiff_bench::stats::{fmt_duration, Samples};

use crate::floor::FloorPod;
use crate::pods::{self, Kind, Timing, Tracker};
use crate::{cluster, Args};

/// The goal: p99 under this, and within `GOAL_RATIO` of the floor's p99.
const GOAL_P99: Duration = Duration::from_millis(100);
const GOAL_RATIO: f64 = 3.0;

/// Pod timings split by stage.
#[derive(Default)]
struct Stages {
    created: Samples,
    scheduled: Samples,
    ready: Samples,
}

impl Stages {
    fn push(&mut self, t: Timing) {
        self.created.push(t.created);
        self.scheduled.push(t.scheduled);
        self.ready.push(t.ready);
    }
}

/// The host-program rows' tables and verdict, as Markdown.
pub struct HostTables {
    pub table: String,
    pub stages: String,
    pub goal: String,
}

/// Runs every host-program phase; returns their tables.
pub async fn run(
    args: &Args,
    cluster: &cluster::Cluster,
    data_dir: &Path,
    floor_prefix: &str,
) -> Result<HostTables> {
    let client = &cluster.client;
    let node_ready = cluster.wait_node_ready(Duration::from_secs(30)).await?;
    eprintln!("node Ready {} after start", fmt_duration(node_ready));
    pods::create_namespace(client).await?;
    let tracker = Tracker::start(client.clone()).await?;

    // One untimed round first, so binaries and caches are warm on both sides.
    {
        let _warm_floor = FloorPod::start(floor_prefix, 0).await?;
        pods::start_one(client, &tracker, "warmup", Kind::Sleep).await?;
        pods::delete_all(client, Duration::from_secs(60)).await?;
    }

    eprintln!(
        "{} pods one at a time, each beside one floor sample",
        args.pods
    );
    let mut seq = Stages::default();
    let mut floor_seq = Samples::with_capacity(args.pods);
    {
        // Floor pods stay up until the phase ends, as the pods do.
        let mut floor_pods = Vec::with_capacity(args.pods);
        for i in 0..args.pods {
            // Alternating which side goes first cancels any bias from the order.
            if i % 2 == 1 {
                let (p, took) = FloorPod::start(floor_prefix, i).await?;
                floor_pods.push(p);
                floor_seq.push(took);
            }
            seq.push(pods::start_one(client, &tracker, &format!("seq-{i:03}"), Kind::Sleep).await?);
            if i % 2 == 0 {
                let (p, took) = FloorPod::start(floor_prefix, i).await?;
                floor_pods.push(p);
                floor_seq.push(took);
            }
        }
    }
    let deleted = Instant::now();
    pods::delete_all(client, Duration::from_secs(120)).await?;
    let delete_all_took = deleted.elapsed();

    let mut probed = Stages::default();
    if args.probed > 0 {
        eprintln!("{} pods with a readiness probe, one at a time", args.probed);
        for i in 0..args.probed {
            probed.push(
                pods::start_one(client, &tracker, &format!("probed-{i:03}"), Kind::Probed).await?,
            );
        }
        pods::delete_all(client, Duration::from_secs(120)).await?;
    }

    let mut burst = Stages::default();
    let mut floor_burst = Samples::with_capacity(args.burst);
    let (mut burst_all, mut floor_burst_all) = (Duration::ZERO, Duration::ZERO);
    if args.burst > 0 {
        eprintln!(
            "{} pods at once, then {} floor samples at once",
            args.burst, args.burst
        );
        let (timings, all) =
            pods::start_burst(client, &tracker, "burst", args.burst, Kind::Sleep).await?;
        timings.into_iter().for_each(|t| burst.push(t));
        burst_all = all;
        let began = Instant::now();
        let started = futures::future::try_join_all(
            (0..args.burst).map(|i| FloorPod::start(floor_prefix, i)),
        )
        .await?;
        floor_burst_all = began.elapsed();
        for (_, took) in &started {
            floor_burst.push(*took);
        }
        drop(started);
        pods::delete_all(client, Duration::from_secs(120)).await?;
    }

    let leaks = leaks(data_dir, floor_prefix).await?;
    if !leaks.is_empty() {
        bail!(
            "left behind after every pod was deleted: {}",
            leaks.join("; ")
        );
    }

    let mut t = Table::new(
        "pod start",
        "skiff",
        "floor: netns + veth + process",
        "skiff ÷ floor",
    );
    let n = args.pods;
    rows(
        &mut t,
        &format!("one at a time ({n})"),
        &mut seq.ready,
        &mut floor_seq,
    );
    if args.probed > 0 {
        rows(
            &mut t,
            &format!("one at a time, readiness probe ({})", args.probed),
            &mut probed.ready,
            &mut floor_seq,
        );
    }
    if args.burst > 0 {
        let b = args.burst;
        rows(
            &mut t,
            &format!("{b} at once, per pod"),
            &mut burst.ready,
            &mut floor_burst,
        );
        t.row(
            format!("{b} at once, until the last is Ready"),
            fmt_duration(burst_all),
            fmt_duration(floor_burst_all),
            ratio(burst_all, floor_burst_all),
        );
    }
    let mut stages = Table::new("stage (from the create request)", "p50", "p99", "pods");
    for (what, s) in [
        ("create request answered", &mut seq.created),
        ("watch shows spec.nodeName (scheduled)", &mut seq.scheduled),
        ("watch shows Running and Ready", &mut seq.ready),
        ("with readiness probe: create answered", &mut probed.created),
        ("with readiness probe: scheduled", &mut probed.scheduled),
        ("with readiness probe: Running and Ready", &mut probed.ready),
    ] {
        if !s.is_empty() {
            stages.row(
                what,
                fmt_duration(s.p50()),
                fmt_duration(s.p99()),
                s.len().to_string(),
            );
        }
    }
    stages.row(
        format!("delete all {n}, until gone (total)"),
        fmt_duration(delete_all_took),
        String::new(),
        n.to_string(),
    );

    let (p99, floor_p99) = (seq.ready.p99(), floor_seq.p99());
    let r = p99.as_secs_f64() / floor_p99.as_secs_f64().max(1e-9);
    let met = p99 < GOAL_P99 && r <= GOAL_RATIO;
    let goal = format!(
        "Goal (issue 5): p99 one at a time under {} and within {GOAL_RATIO}× the floor's p99: \
         **{}** (p99 {}, {r:.2}× the floor's {}).",
        fmt_duration(GOAL_P99),
        if met { "met" } else { "missed" },
        fmt_duration(p99),
        fmt_duration(floor_p99),
    );
    Ok(HostTables {
        table: t.markdown(),
        stages: stages.markdown(),
        goal,
    })
}

pub fn ratio(skiff: Duration, floor: Duration) -> String {
    if floor.is_zero() {
        return "n/a".into();
    }
    format!("{:.2}×", skiff.as_secs_f64() / floor.as_secs_f64())
}

pub fn rows(t: &mut Table, what: &str, skiff: &mut Samples, floor: &mut Samples) {
    for (label, s, f) in [
        ("p50", skiff.p50(), floor.p50()),
        ("p99", skiff.p99(), floor.p99()),
    ] {
        t.row(
            format!("{what} {label}"),
            fmt_duration(s),
            fmt_duration(f),
            ratio(s, f),
        );
    }
}

/// What the run left in its namespace: veths, IPAM entries, floor namespaces.
async fn leaks(data_dir: &Path, floor_prefix: &str) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let veths = cmd("ip", &["-o", "link", "show", "type", "veth"]).await?;
    let veths: Vec<&str> = veths
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(str::trim))
        .collect();
    if !veths.is_empty() {
        found.push(format!("veths {}", veths.join(", ")));
    }
    let ipam = data_dir.join("agent").join("ipam");
    let held: Vec<String> = std::fs::read_dir(&ipam)
        .with_context(|| format!("reading {}", ipam.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        // One file per address held; `last` is the allocator's cursor.
        .filter(|f| f.parse::<std::net::Ipv4Addr>().is_ok())
        .collect();
    if !held.is_empty() {
        found.push(format!("IPAM entries {}", held.join(", ")));
    }
    let namespaces = cmd("ip", &["netns", "list"]).await?;
    let floors: Vec<&str> = namespaces
        .lines()
        .filter(|l| l.starts_with(floor_prefix))
        .collect();
    if !floors.is_empty() {
        found.push(format!("network namespaces {}", floors.join(", ")));
    }
    Ok(found)
}

async fn cmd(program: &str, args: &[&str]) -> Result<String> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!("`{program} {}` failed", args.join(" "));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
