//! A pod's status as kubelet reports it: container states, conditions with their
//! transition times, the phase, and the one status write per change.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::{json, Value};

use super::{now, Ctr, St, Worker};
use crate::state::Term;

impl Worker {
    pub(super) fn condition(&mut self, ty: &str, ok: bool, reason: Option<&str>) -> Value {
        let status = if ok { "True" } else { "False" };
        let entry = self
            .transitions
            .entry(ty.to_string())
            .or_insert_with(|| (status.to_string(), now()));
        if entry.0 != status {
            *entry = (status.to_string(), now());
        }
        let mut c = json!({"type": ty, "status": status, "lastProbeTime": null,
                           "lastTransitionTime": entry.1});
        if let (Some(r), false) = (reason, ok) {
            c["reason"] = json!(r);
        }
        c
    }

    pub(super) fn status(&mut self) -> Value {
        let uid8: String = self.uid.chars().filter(|c| *c != '-').take(12).collect();
        let ctr_status = |c: &Ctr, pending: Option<&(String, String)>| -> Value {
            let cid = format!("skiff://{uid8}-{}-{}", c.spec.name, c.restart_count);
            let state = match (&c.state, pending) {
                (St::Waiting { .. }, Some((r, m))) if c.gen == 0 => {
                    json!({"waiting": {"reason": r, "message": m}})
                }
                (St::Waiting { reason, message }, _) => {
                    if message.is_empty() {
                        json!({"waiting": {"reason": reason}})
                    } else {
                        json!({"waiting": {"reason": reason, "message": message}})
                    }
                }
                (St::Running, _) => json!({"running": {"startedAt": c.started_at}}),
                (St::Terminated(t), _) => term_json(t, &cid),
            };
            let image = c.spec.image.clone().unwrap_or_default();
            let mut s = json!({
                "name": c.spec.name,
                "image": image,
                "imageID": c.image_id.clone().unwrap_or_else(|| {
                    format!("skiff://builtin/{}", crate::catalog::normalize(&image))
                }),
                "ready": c.ready && c.is_running(),
                "started": c.is_running() && c.startup_ok,
                "restartCount": c.restart_count,
                "state": state,
                "lastState": c.last.as_ref().map(|t| term_json(t, &cid)).unwrap_or(json!({})),
            });
            if c.gen > 0 {
                s["containerID"] = json!(cid);
            }
            s
        };
        let pending = self.fatal.clone().or(self.setup_error.clone());
        let mut init_statuses = Vec::new();
        let mut statuses = Vec::new();
        for c in &self.ctrs {
            if c.init {
                init_statuses.push(ctr_status(c, pending.as_ref()));
            } else {
                statuses.push(ctr_status(c, pending.as_ref()));
            }
        }
        let phase = self.phase();
        let initialized = self.ctrs.iter().filter(|c| c.init).all(Ctr::succeeded);
        let app: Vec<&Ctr> = self.ctrs.iter().filter(|c| !c.init).collect();
        let all_ready = !app.is_empty() && app.iter().all(|c| c.ready && c.is_running());
        let completed = phase == "Succeeded" || phase == "Failed";
        let not_ready_reason = if completed {
            "PodCompleted"
        } else {
            "ContainersNotReady"
        };
        let sandbox_ready = self.sandbox.is_some();
        let conditions = vec![
            self.condition("PodReadyToStartContainers", sandbox_ready, None),
            self.condition(
                "Initialized",
                initialized,
                Some(if completed {
                    "PodCompleted"
                } else {
                    "ContainersNotInitialized"
                }),
            ),
            self.condition("Ready", all_ready, Some(not_ready_reason)),
            self.condition("ContainersReady", all_ready, Some(not_ready_reason)),
            self.condition("PodScheduled", true, None),
        ];
        let host_ip = self.agent.node_ip.to_string();
        let mut s = json!({
            "phase": phase,
            "conditions": conditions,
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "startTime": self.start_time,
            "containerStatuses": statuses,
        });
        if !init_statuses.is_empty() {
            s["initContainerStatuses"] = json!(init_statuses);
        }
        if let Some(e) = self.ephemeral_statuses() {
            s["ephemeralContainerStatuses"] = e;
        }
        if let (Some(ip), true) = (self.ip, sandbox_ready || completed) {
            s["podIP"] = json!(ip.to_string());
            s["podIPs"] = json!([{"ip": ip.to_string()}]);
        }
        s
    }

    /// Pod phase by kubelet's rules.
    pub(super) fn phase(&self) -> &'static str {
        let policy = self.restart_policy();
        let inits: Vec<&Ctr> = self.ctrs.iter().filter(|c| c.init).collect();
        if let Some(c) = inits.iter().find(|c| !c.succeeded()) {
            return match (&c.state, policy) {
                (St::Terminated(_), "Never") => "Failed",
                _ => "Pending",
            };
        }
        let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
        for c in self.ctrs.iter().filter(|c| !c.init) {
            match &c.state {
                St::Running => running += 1,
                St::Terminated(t) => {
                    stopped += 1;
                    if t.exit_code == 0 {
                        succeeded += 1;
                    }
                }
                St::Waiting { .. } if c.last.is_some() => stopped += 1,
                St::Waiting { .. } => waiting += 1,
            }
        }
        if waiting > 0 {
            "Pending"
        } else if running > 0 {
            "Running"
        } else if stopped > 0 {
            match policy {
                "Always" => "Running",
                "OnFailure" if stopped == succeeded => "Succeeded",
                "OnFailure" => "Running",
                _ if stopped == succeeded => "Succeeded",
                _ => "Failed",
            }
        } else {
            "Pending"
        }
    }

    /// Writes the pod's status if it changed, then posts the events queued
    /// meanwhile: the status first, so Running and Ready never wait behind them.
    pub(super) async fn report(&mut self) {
        self.write_status().await;
        self.post_events();
    }

    pub(super) async fn write_status(&mut self) {
        let status = self.status();
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.agent.client.clone(), &self.ns);
        match api
            .patch_status(
                &self.name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await
        {
            Ok(_) => {
                let ready = status["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
                if ready {
                    self.mark("Ready written");
                    if let Some(t) = self.began.take() {
                        tracing::info!(pod = %self.name, ns = %self.ns, ms = t.elapsed().as_millis() as u64, "pod ready");
                    }
                }
                self.last_status = Some(status);
            }
            Err(e) => {
                tracing::debug!(pod = %self.name, error = %e, "pod status update");
            }
        }
    }
}

fn term_json(t: &Term, cid: &str) -> Value {
    let mut v = json!({"terminated": {
        "exitCode": t.exit_code,
        "reason": t.reason,
        "startedAt": t.started_at,
        "finishedAt": t.finished_at,
        "containerID": cid,
    }});
    if let Some(m) = &t.message {
        v["terminated"]["message"] = json!(m);
    }
    v
}
