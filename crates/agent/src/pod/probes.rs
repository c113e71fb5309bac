//! Probes and hooks of a pod's containers: when each probe runs, what its results
//! do (startup gates the others, readiness flips `ready`, liveness restarts), and
//! the `preStop` hooks run within the grace period.

use std::time::Duration;

use k8s_openapi::api::core::v1::Probe;
use tokio::time::Instant;

use super::{Msg, Worker, LIVENESS, READINESS, STARTUP};
use crate::probe;

impl Worker {
    pub(super) fn maybe_probe(&mut self, i: usize, kind: usize, now: Instant) {
        let (Some(ip), Some(sandbox)) = (self.ip, self.sandbox) else {
            return;
        };
        let c = &self.ctrs[i];
        if !c.is_running() {
            return;
        }
        let Some(p) = c.probe(kind).cloned() else {
            return;
        };
        if (kind == STARTUP) == c.startup_ok {
            return;
        }
        let ps = c.probes[kind];
        if ps.in_flight || ps.next.is_some_and(|t| t > now) {
            return;
        }
        let gen = c.gen;
        let period = Duration::from_secs(p.period_seconds.unwrap_or(10).max(1) as u64);
        let ctr = &mut self.ctrs[i];
        ctr.probes[kind].in_flight = true;
        ctr.probes[kind].next = Some(now + period);
        let spec = ctr.spec.clone();
        let target = ctr.exec_target(sandbox.pid);
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let ok = probe::run(&p, &spec, ip, &target).await;
            let _ = tx.send(Msg::Probe {
                ctr: i,
                gen,
                kind,
                ok,
            });
        });
    }

    pub(super) async fn probed(&mut self, i: usize, gen: u64, kind: usize, ok: bool) {
        let failed_now = self.probe_update(i, gen, kind, ok);
        if let Some((kind_name, cname)) = failed_now {
            self.event(
                true,
                "Unhealthy",
                format!("{kind_name} probe failed"),
                Some(&cname),
            );
        }
        self.probe_act(i, gen, kind).await;
    }

    /// Counts a probe result; returns (probe name, container) when it just
    /// reached its failure threshold.
    pub(super) fn probe_update(
        &mut self,
        i: usize,
        gen: u64,
        kind: usize,
        ok: bool,
    ) -> Option<(&'static str, String)> {
        let c = self.ctrs.get_mut(i)?;
        if c.gen != gen {
            return None;
        }
        c.probes[kind].in_flight = false;
        if !c.is_running() {
            return None;
        }
        let p = c.probe(kind).cloned()?;
        let ps = &mut c.probes[kind];
        if ok {
            ps.successes += 1;
            ps.failures = 0;
            None
        } else {
            ps.failures += 1;
            ps.successes = 0;
            (ps.failures == p.failure_threshold.unwrap_or(3).max(1)).then(|| {
                let name = ["Startup", "Readiness", "Liveness"][kind.min(2)];
                (name, c.spec.name.clone())
            })
        }
    }

    pub(super) async fn probe_act(&mut self, i: usize, gen: u64, kind: usize) {
        let Some(c) = self.ctrs.get_mut(i) else {
            return;
        };
        if c.gen != gen || !c.is_running() {
            return;
        }
        let Some(p) = c.probe(kind).cloned() else {
            return;
        };
        let ps = c.probes[kind];
        let succeeded = ps.successes >= p.success_threshold.unwrap_or(1).max(1);
        let failed = ps.failures >= p.failure_threshold.unwrap_or(3).max(1);
        match kind {
            STARTUP => {
                if succeeded {
                    c.startup_ok = true;
                    c.ready = c.spec.readiness_probe.is_none();
                    let now = Instant::now();
                    c.probes[READINESS].next = Some(now);
                    c.probes[LIVENESS].next = Some(now);
                } else if failed {
                    self.kill_for_restart(i, "Startup probe failed").await;
                }
            }
            READINESS => {
                if succeeded {
                    c.ready = true;
                } else if failed {
                    c.ready = false;
                }
            }
            _ => {
                if failed {
                    c.probes[kind].failures = 0;
                    self.kill_for_restart(i, "Liveness probe failed").await;
                }
            }
        }
    }

    /// Stops a container so that its restart policy applies (failed probes).
    pub(super) async fn kill_for_restart(&mut self, i: usize, why: &str) {
        let Some(p) = self.ctrs[i].proc else { return };
        let name = self.ctrs[i].spec.name.clone();
        tracing::info!(pod = %self.name, container = %name, "{why}, restarting");
        self.event(
            false,
            "Killing",
            if why.starts_with("Startup") {
                format!("Container {name} failed startup probe, will be restarted")
            } else if why.starts_with("Liveness") {
                format!("Container {name} failed liveness probe, will be restarted")
            } else {
                format!("Stopping container {name}")
            },
            Some(&name),
        );
        self.ctrs[i].ready = false;
        let runc = self.ctrs[i].runc.clone();
        crate::container::signal(p.pid, runc.as_ref(), "TERM").await;
        let grace = self.grace();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if p.alive() {
                crate::container::signal(p.pid, runc.as_ref(), "KILL").await;
            }
        });
    }

    /// Runs the `preStop` hooks of running containers, together, within the
    /// grace period (which they count against, as upstream).
    pub(super) async fn pre_stop(&self, deadline: Instant) {
        let (Some(ip), Some(sandbox)) = (self.ip, self.sandbox) else {
            return;
        };
        let mut hooks = Vec::new();
        for c in self.ctrs.iter().filter(|c| c.proc.is_some()) {
            let Some(h) = c.spec.lifecycle.as_ref().and_then(|l| l.pre_stop.clone()) else {
                continue;
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let (spec, target) = (c.spec.clone(), c.exec_target(sandbox.pid));
            hooks.push(async move {
                if let Some(s) = &h.sleep {
                    let d = Duration::from_secs(s.seconds.max(0) as u64).min(left);
                    tokio::time::sleep(d).await;
                    return;
                }
                // A hook is a probe without thresholds: reuse the prober.
                let as_probe = Probe {
                    exec: h.exec.clone(),
                    http_get: h.http_get.clone(),
                    tcp_socket: h.tcp_socket.clone(),
                    timeout_seconds: Some(left.as_secs().max(1) as i32),
                    ..Default::default()
                };
                let _ = probe::run(&as_probe, &spec, ip, &target).await;
            });
        }
        if !hooks.is_empty() {
            let _ = tokio::time::timeout_at(deadline, futures::future::join_all(hooks)).await;
        }
    }
}
