//! The image-container rows: pods of a real OCI image already in the node's store,
//! run by the agent with runc, one at a time, each interleaved with one floor
//! sample (the same image started directly with `runc run -d`, see
//! [`crate::runc_floor`]).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use skiff_bench::stats::{fmt_duration, Samples};

use crate::cluster::Cluster;
use crate::images::{SERVED, SERVED_PORT};
use crate::pods::{self, Kind, Tracker};
use crate::runc_floor::{RuncFloor, POLL};

/// How long a Ready pod may take to accept a connection.
const SERVING_TIMEOUT: Duration = Duration::from_secs(30);

/// What the phase measured.
#[derive(Default)]
pub struct ImageSamples {
    pub pods: usize,
    /// Create request until the watch shows the pod Running and Ready.
    pub ready: Samples,
    /// Create request until the API answered, and until scheduled.
    pub created: Samples,
    pub scheduled: Samples,
    /// Create request until a TCP connection to the pod's port is accepted.
    pub serving: Samples,
    pub floor_bundle: Samples,
    pub floor_run: Samples,
    pub floor_serving: Samples,
}

/// Runs `n` image pods one at a time beside as many floor containers; every pod
/// and floor container is gone when this returns (also on failure).
pub async fn run(n: usize, cluster: &Cluster, data_dir: &Path, dir: &Path) -> Result<ImageSamples> {
    let client = &cluster.client;
    let node_ready = cluster.wait_node_ready(Duration::from_secs(30)).await?;
    eprintln!("image node Ready {} after start", fmt_duration(node_ready));
    pods::create_namespace(client).await?;
    let tracker = Tracker::start(client.clone()).await?;
    let store = skiff_image::ImageStore::open(&data_dir.join("agent/images"), Default::default())?;
    let image = store
        .get(SERVED)
        .with_context(|| format!("image {SERVED} is not in the node's store"))?;
    let floor = RuncFloor::new(image, dir, SERVED_PORT).await?;
    let result = phase(n, client, &tracker, &floor).await;
    // The pods go whatever happened; the floor's containers went with `phase`.
    let deleted = pods::delete_all(client, Duration::from_secs(120)).await;
    floor.remove_cgroups();
    let samples = result?;
    deleted?;
    Ok(samples)
}

async fn phase(
    n: usize,
    client: &kube::Client,
    tracker: &Tracker,
    floor: &RuncFloor,
) -> Result<ImageSamples> {
    // One untimed round first, so binaries, layers and caches are warm on both sides.
    {
        let _warm = floor.start(n).await?;
        start_serving(client, tracker, "image-warmup").await?;
    }
    eprintln!("{n} image pods one at a time, each beside one `runc run -d`");
    let mut s = ImageSamples {
        pods: n,
        ..Default::default()
    };
    // Floor containers stay up until the phase ends, as the pods do.
    let mut floor_containers = Vec::with_capacity(n);
    for i in 0..n {
        // Alternating which side goes first cancels any bias from the order.
        if i % 2 == 1 {
            let (c, t) = floor.start(i).await?;
            floor_containers.push(c);
            s.push_floor(t);
        }
        let (t, serving) = start_serving(client, tracker, &format!("image-{i:03}")).await?;
        s.created.push(t.created);
        s.scheduled.push(t.scheduled);
        s.ready.push(t.ready);
        s.serving.push(serving);
        if i % 2 == 0 {
            let (c, t) = floor.start(i).await?;
            floor_containers.push(c);
            s.push_floor(t);
        }
    }
    Ok(s)
}

impl ImageSamples {
    fn push_floor(&mut self, t: crate::runc_floor::FloorTiming) {
        self.floor_bundle.push(t.bundle);
        self.floor_run.push(t.run);
        self.floor_serving.push(t.serving);
    }
}

/// Creates one image pod, waits until it is Ready, then until its port accepts a
/// connection; returns its timing and the time from the create request to that.
async fn start_serving(
    client: &kube::Client,
    tracker: &Tracker,
    name: &str,
) -> Result<(pods::Timing, Duration)> {
    let t = pods::start_one(client, tracker, name, Kind::Image).await?;
    let ip =
        t.ip.with_context(|| format!("pod {name} is Ready without a pod IP"))?;
    let addr = SocketAddr::new(ip, SERVED_PORT);
    let deadline = Instant::now() + SERVING_TIMEOUT;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok((t, t.began.elapsed()));
        }
        if Instant::now() > deadline {
            bail!("pod {name} Ready but {addr} not accepting within {SERVING_TIMEOUT:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What image pods and floor containers left behind: overlay mounts below the
/// run's directory, runc containers, cgroups of the floor.
pub fn leaks(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let prefix = dir.to_string_lossy().into_owned();
    let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .map(str::to_string)
        .collect();
    if !mounts.is_empty() {
        found.push(format!("mounts {}", mounts.join(", ")));
    }
    let cgroups: Vec<String> = std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|h| {
            let p = h.path().join(skiff_agent::cgroup::PREFIX);
            std::fs::read_dir(&p).ok().map(|rd| (p, rd))
        })
        .flat_map(|(p, rd)| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("bench-floor-"))
                .map(move |e| p.join(e.file_name()).display().to_string())
        })
        .collect();
    if !cgroups.is_empty() {
        found.push(format!("cgroups {}", cgroups.join(", ")));
    }
    found
}
