//! Control-plane phases: services created through the API while the proxy
//! follows, a cold start programming them all from an empty table, and single
//! endpoint changes timed until they carry traffic. "Live" is always observed
//! on the data path (the prober's new connections through the ClusterIP) and
//! the table's size is checked in the kernel afterwards.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use rand::Rng;
use skiff_bench::stats::Samples;
use skiff_proxy::ruleset;

use crate::cluster::{self, ApiServer, Proxy, SERVICE_PORT};
use crate::nft;
use crate::topo::{server_ip, server_name, Prober, SERVER_PORT};

/// The endpoints of every bulk service: server pods 1-4.
pub const BULK_ENDPOINTS: [u8; 4] = [1, 2, 3, 4];
/// What one change swaps in for pod 4 (and back): its slot, 3, is the last in
/// the proxy's sorted endpoint order either way, so a change is one element.
const SWAP_IN: u8 = 5;
const SWAPPED_SLOT: u32 = 3;

fn vip(ip: Ipv4Addr) -> String {
    SocketAddr::from((ip, SERVICE_PORT)).to_string()
}

/// Waits until the kernel table holds at least `services` ClusterIP entries
/// and `endpoints` endpoint entries (the count is only a check: reading a map
/// of 40,000 elements back takes about a second).
pub async fn wait_complete(services: usize, endpoints: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (s, e) = (
            nft::element_count(ruleset::SERVICE_IPS)?,
            nft::element_count(ruleset::ENDPOINTS_TCP)?,
        );
        if s >= services && e >= endpoints {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the kernel table stayed incomplete: {s} services, {e} endpoints"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Bulk creation with the proxy running.
pub struct Bulk {
    /// Name -> ClusterIP of every bulk service.
    pub services: Vec<(String, Ipv4Addr)>,
    /// Until the last API write returned.
    pub writes: Duration,
    /// Until the last-written service answered through its ClusterIP.
    pub live: Duration,
}

pub async fn create_bulk(
    api: &ApiServer,
    prober: &mut Prober,
    count: usize,
    concurrency: usize,
) -> Result<Bulk> {
    let names: Vec<String> = (0..count).map(cluster::service_name).collect();
    let start = Instant::now();
    let created = api
        .create_services(names, &BULK_ENDPOINTS, concurrency)
        .await?;
    let writes = start.elapsed();
    // Completion order: the last entry is the last write that returned.
    let (_, last_ip) = created
        .last()
        .cloned()
        .context("no services were created")?;
    prober.wait_for(&vip(last_ip), "*").await?;
    let live = start.elapsed();
    Ok(Bulk {
        services: created,
        writes,
        live,
    })
}

/// A cold start over everything the API holds.
pub struct ColdStart {
    pub proxy: Proxy,
    /// Proxy start -> a service answers through its ClusterIP (the start's
    /// full sync is one transaction: one service live means all are).
    pub live: Duration,
    /// `nft -f` of the same table's sets, maps and elements.
    pub floor: Duration,
}

pub async fn cold_start(
    api: &ApiServer,
    proxy_rt: &tokio::runtime::Runtime,
    old: Proxy,
    prober: &mut Prober,
    probe_ip: Ipv4Addr,
) -> Result<ColdStart> {
    old.stop().await;
    // The floor loads the same content, from the proxy's own generator.
    let (svcs, slices) = api.everything().await?;
    let text = nft::floor_ruleset(&svcs, &slices)?;
    nft::delete_floor();
    let floor = nft::apply(&text)?;
    let start = Instant::now();
    let proxy = Proxy::start(proxy_rt, api);
    prober.wait_for(&vip(probe_ip), "*").await?;
    let live = start.elapsed();
    Ok(ColdStart { proxy, live, floor })
}

/// Latencies of single endpoint changes.
#[derive(Default)]
pub struct Changes {
    /// API write start -> the new endpoint answers through the ClusterIP.
    pub live: Samples,
    /// The API write alone (the merge patch's round trip).
    pub api: Samples,
    /// `nft -f` of the equivalent one-element change into the floor table.
    pub nft: Samples,
    /// Prober connections per change (the new endpoint is one of four).
    pub attempts: u64,
}

/// `n` changes, each replacing pod 4 by pod 5 (or back) in a random bulk service.
pub async fn endpoint_changes(
    api: &ApiServer,
    prober: &mut Prober,
    services: &[(String, Ipv4Addr)],
    n: usize,
) -> Result<Changes> {
    ensure!(!services.is_empty(), "no services to change");
    let mut swapped: HashMap<usize, bool> = HashMap::new();
    let mut out = Changes::default();
    let mut rng = rand::rng();
    for _ in 0..n {
        let i = rng.random_range(0..services.len());
        let (name, ip) = &services[i];
        let was_swapped = swapped.get(&i).copied().unwrap_or(false);
        let new_pod = if was_swapped { 4 } else { SWAP_IN };
        let mut endpoints = BULK_ENDPOINTS;
        endpoints[3] = new_pod;
        prober.start(&vip(*ip), &server_name(new_pod)).await?;
        let start = Instant::now();
        api.set_endpoints(name, &endpoints).await?;
        out.api.push(start.elapsed());
        out.attempts += prober.done().await?;
        out.live.push(start.elapsed());
        swapped.insert(i, !was_swapped);
        let change = nft::floor_change(*ip, SWAPPED_SLOT, server_ip(new_pod), SERVER_PORT);
        out.nft.push(nft::apply(&change)?);
        // Changes do not overlap: each starts on a quiet proxy.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(out)
}
