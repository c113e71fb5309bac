//! Data-plane rounds: the same load generator against two targets, alternating
//! which goes first each round, so drift on a shared machine hits both alike.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Result;

use crate::topo::{Topology, LOAD_SOURCE_A, LOAD_SOURCE_B};
use crate::wire::{LoadResult, Mode};

/// How each generator run is shaped.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub rounds: usize,
    pub seconds: f64,
    pub workers: usize,
}

/// One generator run from the client pod.
pub async fn run(
    topo: &Topology,
    (target, source): (SocketAddr, Ipv4Addr),
    mode: Mode,
    shape: Shape,
) -> Result<LoadResult> {
    let mode_arg = match mode {
        Mode::KeepAlive => "keep-alive",
        Mode::Close => "close",
    };
    let line = topo
        .load(&[
            "load".into(),
            "--target".into(),
            target.to_string(),
            "--source".into(),
            source.to_string(),
            "--mode".into(),
            mode_arg.into(),
            "--workers".into(),
            shape.workers.to_string(),
            "--millis".into(),
            ((shape.seconds * 1000.0) as u64).to_string(),
        ])
        .await?;
    LoadResult::parse(&line)
}

/// Both sides' runs, round by round.
#[derive(Debug, Default, Clone)]
pub struct Comparison {
    pub a: Vec<LoadResult>,
    pub b: Vec<LoadResult>,
}

fn total_rate(runs: &[LoadResult]) -> f64 {
    let requests: u64 = runs.iter().map(|r| r.requests).sum();
    let secs: f64 = runs.iter().map(|r| r.elapsed.as_secs_f64()).sum();
    requests as f64 / secs.max(1e-9)
}

impl Comparison {
    pub fn rate_a(&self) -> f64 {
        total_rate(&self.a)
    }

    pub fn rate_b(&self) -> f64 {
        total_rate(&self.b)
    }

    pub fn errors(&self) -> u64 {
        self.a.iter().chain(&self.b).map(|r| r.errors).sum()
    }

    /// Median over rounds of (a ÷ b): a few disturbed rounds cannot skew it.
    pub fn median_ratio(&self) -> f64 {
        let mut r: Vec<f64> = self
            .a
            .iter()
            .zip(&self.b)
            .map(|(a, b)| a.rate() / b.rate().max(1e-9))
            .collect();
        r.sort_by(f64::total_cmp);
        match r.len() {
            0 => 0.0,
            n if n % 2 == 1 => r[n / 2],
            n => (r[n / 2 - 1] + r[n / 2]) / 2.0,
        }
    }
}

/// `shape.rounds` rounds of `a` and `b` under `mode`, each side from its own
/// source address (see `topo::LOAD_SOURCE_A`).
pub async fn compare(
    topo: &Topology,
    a: SocketAddr,
    b: SocketAddr,
    mode: Mode,
    shape: Shape,
) -> Result<Comparison> {
    let (a, b) = ((a, LOAD_SOURCE_A), (b, LOAD_SOURCE_B));
    let mut c = Comparison::default();
    for round in 0..shape.rounds {
        if round % 2 == 0 {
            c.a.push(run(topo, a, mode, shape).await?);
            c.b.push(run(topo, b, mode, shape).await?);
        } else {
            c.b.push(run(topo, b, mode, shape).await?);
            c.a.push(run(topo, a, mode, shape).await?);
        }
        // Lets the last run's connections finish closing before the next.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(c)
}

/// Keep-alive and new-connection comparisons of one phase.
#[derive(Debug, Clone)]
pub struct Phase {
    pub keep_alive: Comparison,
    pub close: Comparison,
}

/// ClusterIP (`a`) against the pod IP (`b`), in both modes.
pub async fn phase(
    topo: &Topology,
    vip: SocketAddr,
    pod: SocketAddr,
    shape: Shape,
) -> Result<Phase> {
    eprintln!(
        "  keep-alive requests: ClusterIP vs pod IP, {} rounds",
        shape.rounds
    );
    let keep_alive = compare(topo, vip, pod, Mode::KeepAlive, shape).await?;
    eprintln!(
        "  new connections: ClusterIP vs pod IP, {} rounds",
        shape.rounds
    );
    let close = compare(topo, vip, pod, Mode::Close, shape).await?;
    Ok(Phase { keep_alive, close })
}
