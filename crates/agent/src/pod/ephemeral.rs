//! Ephemeral containers (`spec.ephemeralContainers`, added by `kubectl
//! debug`): each new one is started once in the running pod and never
//! restarted, and reported in `status.ephemeralContainerStatuses`.
//!
//! One with a `targetContainerName` runs where an `exec` into that container
//! would (its namespaces, PID included, through the runtime for an image
//! container: so it sees the target's processes, with the target's root
//! filesystem, not its own image's); one without runs in the pod's sandbox
//! namespaces (network, UTS, IPC) on the node's programs, as the
//! `--host-images` catalog's containers do. Its output goes to its log file,
//! so `kubectl logs -c NAME` reads it; its process group is killed with the
//! pod's exec sessions.

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::{lock, log_path, CtrRuntime, Msg, Worker};

/// What the agent knows of one ephemeral container.
#[derive(Debug, Clone)]
struct Started {
    name: String,
    image: String,
    started_at: String,
    /// `(exit code, finished at)` once it ended.
    exit: Option<(i32, String)>,
    /// Why it could not start.
    failed: Option<String>,
}

/// The pod's ephemeral containers, shared with the tasks that wait for them.
#[derive(Default, Clone)]
pub(super) struct Ephemerals(Arc<Mutex<Vec<Started>>>);

impl Worker {
    /// Starts the ephemeral containers the spec lists that have not run yet.
    pub(super) fn start_ephemeral(&mut self) {
        let Some(sandbox) = self.sandbox.map(|p| p.pid) else {
            return;
        };
        let wanted: Vec<k8s_openapi::api::core::v1::EphemeralContainer> = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.ephemeral_containers.clone())
            .unwrap_or_default();
        for ec in wanted {
            if lock(&self.ephemeral.0).iter().any(|s| s.name == ec.name) {
                continue;
            }
            let mut started = Started {
                name: ec.name.clone(),
                image: ec.image.clone().unwrap_or_default(),
                started_at: super::now(),
                exit: None,
                failed: None,
            };
            if let Err(e) = self.spawn_ephemeral(&ec, sandbox) {
                started.failed = Some(e);
            }
            lock(&self.ephemeral.0).push(started);
        }
    }

    fn spawn_ephemeral(
        &mut self,
        ec: &k8s_openapi::api::core::v1::EphemeralContainer,
        sandbox: u32,
    ) -> Result<(), String> {
        let argv: Vec<String> = ec
            .command
            .iter()
            .flatten()
            .chain(ec.args.iter().flatten())
            .cloned()
            .collect();
        let argv = if argv.is_empty() {
            vec!["sh".to_string()]
        } else {
            argv
        };
        let env: Vec<(String, String)> = ec
            .env
            .iter()
            .flatten()
            .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v)))
            .collect();
        let target = ec
            .target_container_name
            .as_deref()
            .and_then(|t| self.ctrs.iter().find(|c| c.spec.name == t));
        let exec = match target {
            Some(c) => c.exec_target(sandbox),
            None => crate::container::ExecTarget::Host {
                sandbox,
                workdir: ec.working_dir.clone().unwrap_or_else(|| "/".into()),
                env: env.clone(),
            },
        };
        let log = log_path(&self.dir, &ec.name, 0);
        if let Some(parent) = log.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = exec.command(&argv, false);
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(false);
        let mut child = cmd.spawn().map_err(|e| e.to_string())?;
        let pgid = child.id().unwrap_or(0);
        {
            let mut rt = lock(&self.rt);
            rt.execs.push(pgid);
            rt.containers.insert(
                ec.name.clone(),
                CtrRuntime {
                    env,
                    workdir: ec.working_dir.clone().unwrap_or_else(|| "/".into()),
                    log: Some(log),
                    previous_log: None,
                    running: true,
                    instance: 0,
                    stdin: None,
                    stdin_once: false,
                    tty: false,
                    pid: Some(pgid),
                    runc: None,
                },
            );
        }
        let (state, rt, tx, pod, name) = (
            self.ephemeral.clone(),
            self.rt.clone(),
            self.tx.clone(),
            self.pod.clone(),
            ec.name.clone(),
        );
        tokio::spawn(async move {
            let code = match child.wait().await {
                Ok(s) => s.code().unwrap_or(137),
                Err(_) => 128,
            };
            if let Some(s) = lock(&state.0).iter_mut().find(|s| s.name == name) {
                s.exit = Some((code, super::now()));
            }
            if let Some(c) = lock(&rt).containers.get_mut(&name) {
                c.running = false;
            }
            // Wakes the worker, which then reports the new status.
            let _ = tx.send(Msg::Update(Box::new(pod)));
        });
        Ok(())
    }

    /// `status.ephemeralContainerStatuses`, or `None` when there are none.
    pub(super) fn ephemeral_statuses(&self) -> Option<Value> {
        let started = lock(&self.ephemeral.0);
        if started.is_empty() {
            return None;
        }
        let uid8: String = self.uid.chars().filter(|c| *c != '-').take(12).collect();
        let statuses: Vec<Value> = started
            .iter()
            .map(|s| {
                let cid = format!("skiff://{uid8}-{}-0", s.name);
                let state = match (&s.failed, &s.exit) {
                    (Some(why), _) => {
                        json!({"waiting": {"reason": "RunContainerError", "message": why}})
                    }
                    (None, Some((code, at))) => json!({"terminated": {
                        "exitCode": code,
                        "reason": if *code == 0 { "Completed" } else { "Error" },
                        "startedAt": s.started_at,
                        "finishedAt": at,
                        "containerID": cid,
                    }}),
                    (None, None) => json!({"running": {"startedAt": s.started_at}}),
                };
                json!({
                    "name": s.name,
                    "image": s.image,
                    "imageID": format!("skiff://builtin/{}", crate::catalog::normalize(&s.image)),
                    "containerID": cid,
                    "ready": false,
                    "restartCount": 0,
                    "state": state,
                    "lastState": {},
                })
            })
            .collect();
        Some(Value::Array(statuses))
    }
}
