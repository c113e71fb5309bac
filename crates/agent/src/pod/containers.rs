//! Container instances of a pod: what each start is made of (image or host
//! program, environment, volumes, runtime) and how its end is recorded (exit
//! code, OOM, start errors, restart back-off), as kubelet's container manager.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use kube::Api;
use tokio::time::Instant;

use super::{
    lock, log_path, now, CtrRuntime, Msg, St, Worker, BACKOFF_MAX, BACKOFF_START, LIVENESS,
    READINESS, STARTUP,
};
use crate::state::Term;
use crate::{envvars, probe, runtime};

impl Worker {
    fn base_env(&self, c: &Container) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "PATH".to_string(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            ),
            ("HOSTNAME".to_string(), self.hostname()),
            ("HOME".to_string(), "/root".to_string()),
        ];
        if c.tty.unwrap_or(false) {
            env.push(("TERM".into(), "xterm".into()));
        }
        env
    }

    /// The ConfigMaps and Secrets a container's env reads, fetched now (kubelet
    /// reads them at container start too).
    async fn fetch_refs(&self, c: &Container) -> envvars::Refs {
        use k8s_openapi::api::core::v1::{ConfigMap, Secret};
        let (cms, secrets) = envvars::Refs::wanted(c);
        let mut refs = envvars::Refs::default();
        let cm_api: Api<ConfigMap> = Api::namespaced(self.agent.client.clone(), &self.ns);
        for name in cms {
            let data = match cm_api.get_opt(&name).await {
                Ok(cm) => cm.map(|cm| cm.data.unwrap_or_default()),
                Err(e) => {
                    tracing::warn!(configmap = %name, error = %e, "reading a ConfigMap for env");
                    None
                }
            };
            refs.config_maps.insert(name, data);
        }
        let secret_api: Api<Secret> = Api::namespaced(self.agent.client.clone(), &self.ns);
        for name in secrets {
            let data = match secret_api.get_opt(&name).await {
                Ok(s) => s.map(|s| {
                    let mut out: std::collections::BTreeMap<String, String> = s
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                        .collect();
                    for (k, v) in s.string_data.unwrap_or_default() {
                        out.entry(k).or_insert(v);
                    }
                    out
                }),
                Err(e) => {
                    tracing::warn!(secret = %name, error = %e, "reading a Secret for env");
                    None
                }
            };
            refs.secrets.insert(name, data);
        }
        refs
    }

    pub(super) async fn start(&mut self, i: usize) {
        let Some(sandbox) = self.sandbox else { return };
        let spec = self.ctrs[i].spec.clone();
        // A real image unless the node runs the built-in catalog's host programs.
        let image_ref = if self.agent.host_images {
            None
        } else {
            match self.ensure_image(i).await {
                Some(img) => Some(img),
                None => return,
            }
        };
        let base_env = match &image_ref {
            Some(img) => self.image_base_env(img),
            None => self.base_env(&spec),
        };
        self.mark("image ready");
        let refs = self.fetch_refs(&spec).await;
        let services: Vec<_> = self
            .agent
            .services
            .state()
            .iter()
            .map(|s| (**s).clone())
            .collect();
        let facts = envvars::PodFacts {
            pod: &self.pod,
            pod_ip: self.ip.map(|i| i.to_string()).unwrap_or_default(),
            host_ip: self.agent.node_ip.to_string(),
            node_name: self.agent.node_name.clone(),
        };
        let env = match envvars::container_env(&spec, &facts, &services, &base_env, &refs) {
            Ok(e) => e,
            Err(msg) => {
                self.event(true, "Failed", format!("Error: {msg}"), Some(&spec.name));
                let c = &mut self.ctrs[i];
                c.state = St::Waiting {
                    reason: "CreateContainerConfigError".into(),
                    message: msg,
                };
                c.next_start = Some(Instant::now() + Duration::from_secs(10));
                return;
            }
        };
        let lookup = |n: &str| {
            env.iter()
                .rev()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        let command: Vec<String> = spec
            .command
            .iter()
            .flatten()
            .map(|a| envvars::expand(a, &lookup))
            .collect();
        let args: Vec<String> = spec
            .args
            .iter()
            .flatten()
            .map(|a| envvars::expand(a, &lookup))
            .collect();
        let image = spec.image.clone().unwrap_or_default();
        let argv = match &image_ref {
            Some(img) => Ok(crate::oci::container_argv(
                &img.config.entrypoint,
                &img.config.cmd,
                &command,
                &args,
            )),
            None => self.agent.catalog.argv(&image, &command, &args),
        };
        let argv = match argv {
            Ok(a) => a,
            Err(msg) => {
                self.event(
                    true,
                    "Failed",
                    format!("Failed to pull image {image:?}: {msg}"),
                    Some(&spec.name),
                );
                self.event(
                    true,
                    "Failed",
                    "Error: ErrImagePull".into(),
                    Some(&spec.name),
                );
                let c = &mut self.ctrs[i];
                c.state = St::Waiting {
                    reason: "ErrImagePull".into(),
                    message: msg,
                };
                // The catalog is fixed while the agent runs: no point retrying.
                c.next_start = None;
                return;
            }
        };
        let workdir = spec
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .or_else(|| {
                image_ref
                    .as_ref()
                    .map(|img| img.config.working_dir.clone())
                    .filter(|w| !w.is_empty())
            })
            .unwrap_or_else(|| "/".into());
        let restart_count = self.ctrs[i].restart_count;
        let cdir = self.dir.join(&spec.name);
        let _ = std::fs::create_dir_all(&cdir);
        let log = log_path(&self.dir, &spec.name, restart_count);
        // Keep the current and previous instance's logs, as kubelet does.
        if restart_count >= 2 {
            let _ = std::fs::remove_file(log_path(&self.dir, &spec.name, restart_count - 2));
        }
        let _ = std::fs::remove_file(&log);
        let tty = spec.tty.unwrap_or(false);
        let want_stdin = spec.stdin.unwrap_or(false);
        let spawned = match &image_ref {
            Some(img) => {
                self.run_image_container(i, img, &argv, &env, &workdir, &log, want_stdin, tty)
                    .await
            }
            None => runtime::spawn_container(&runtime::Spawn {
                sandbox: sandbox.pid,
                argv: &argv,
                env: &env,
                workdir: &workdir,
                log: &log,
                stdin: want_stdin,
                tty,
            })
            .inspect(|_| self.ctrs[i].runc = None)
            .map_err(|e| ("RunContainerError".to_string(), format!("{e:#}"))),
        };
        let mut child = match spawned {
            Ok(c) => {
                if image_ref.is_none() {
                    self.event(
                        false,
                        "Pulled",
                        format!("Container image {image:?} already present on machine"),
                        Some(&spec.name),
                    );
                }
                self.event(
                    false,
                    "Created",
                    format!("Created container: {}", spec.name),
                    Some(&spec.name),
                );
                c
            }
            Err((reason, message)) => {
                self.event(
                    true,
                    "Failed",
                    format!("Error: {message}"),
                    Some(&spec.name),
                );
                let c = &mut self.ctrs[i];
                c.state = St::Waiting { reason, message };
                c.next_start = Some(Instant::now() + Duration::from_secs(10));
                return;
            }
        };
        // An image container is Running once runc has created it; if runc exits
        // first, the container never started (`StartError`, in `exited`).
        let bundle =
            crate::container::bundle_dir(&self.dir.join(&spec.name), self.ctrs[i].restart_count);
        let start_failed = match (&image_ref, &self.ctrs[i].runc) {
            (Some(_), Some(_)) => {
                crate::container::wait_created(&mut child, &bundle, Duration::from_secs(30))
                    .await
                    .err()
            }
            _ => None,
        };
        self.mark("container created");
        if start_failed.is_none() {
            self.event(
                false,
                "Started",
                format!("Started container {}", spec.name),
                Some(&spec.name),
            );
        }
        let pid = child.id().unwrap_or(0);
        let c = &mut self.ctrs[i];
        c.gen += 1;
        c.proc = runtime::Proc::of(pid).or(Some(runtime::Proc { pid, start: 0 }));
        c.state = St::Running;
        c.started_at = Some(now());
        c.started_instant = Some(Instant::now());
        c.next_start = None;
        c.env = env;
        c.workdir = workdir;
        c.startup_ok = spec.startup_probe.is_none();
        c.ready = c.startup_ok && spec.readiness_probe.is_none();
        c.probes = Default::default();
        let now_i = Instant::now();
        for (kind, p) in [
            (STARTUP, &spec.startup_probe),
            (READINESS, &spec.readiness_probe),
            (LIVENESS, &spec.liveness_probe),
        ] {
            if let Some(p) = p {
                let delay = p.initial_delay_seconds.unwrap_or(0).max(0) as u64;
                c.probes[kind].next = Some(now_i + Duration::from_secs(delay));
            }
        }
        let stdin = child
            .stdin
            .take()
            .map(|s| Arc::new(tokio::sync::Mutex::new(Some(s))));
        {
            let mut rt = lock(&self.rt);
            rt.containers.insert(
                spec.name.clone(),
                CtrRuntime {
                    env: c.env.clone(),
                    workdir: c.workdir.clone(),
                    log: Some(log.clone()),
                    previous_log: (c.restart_count > 0)
                        .then(|| log_path(&self.dir, &spec.name, c.restart_count - 1)),
                    running: true,
                    instance: c.gen,
                    stdin,
                    stdin_once: spec.stdin_once.unwrap_or(false),
                    tty,
                    pid: Some(pid),
                    runc: c.runc.clone(),
                },
            );
        }
        let tx = self.tx.clone();
        let gen = c.gen;
        if let Some(code) = start_failed {
            if let Some(message) = crate::container::start_error(&bundle) {
                self.event(
                    true,
                    "Failed",
                    format!("Error: {message}"),
                    Some(&spec.name),
                );
            }
            self.exited(i, gen, Some(code));
            self.save();
            return;
        }
        tokio::spawn(async move {
            let code = child.wait().await.ok().map(runtime::exit_code);
            let _ = tx.send(Msg::Exited { ctr: i, gen, code });
        });
        if let (Some(h), Some(ip)) = (
            spec.lifecycle.as_ref().and_then(|l| l.post_start.clone()),
            self.ip,
        ) {
            let (tx, target, spec) = (
                self.tx.clone(),
                self.ctrs[i].exec_target(sandbox.pid),
                spec.clone(),
            );
            tokio::spawn(async move {
                let as_probe = Probe {
                    exec: h.exec.clone(),
                    http_get: h.http_get.clone(),
                    tcp_socket: h.tcp_socket.clone(),
                    timeout_seconds: Some(30),
                    ..Default::default()
                };
                let ok = match &h.sleep {
                    Some(s) => {
                        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64)).await;
                        true
                    }
                    None => probe::run(&as_probe, &spec, ip, &target).await,
                };
                if !ok {
                    let _ = tx.send(Msg::PostStartFailed { ctr: i, gen });
                }
            });
        }
        tracing::debug!(pod = %self.name, container = %spec.name, pid, "container started");
        self.save();
    }

    pub(super) fn exited(&mut self, i: usize, gen: u64, code: Option<i32>) {
        let policy = self.restart_policy().to_string();
        let deleting = self.deleting;
        let pod_desc = format!("{}_{}({})", self.name, self.ns, self.uid);
        let Some(c) = self.ctrs.get_mut(i) else {
            return;
        };
        if c.gen != gen {
            return;
        }
        let oom = c.runc.is_some()
            && code == Some(137)
            && crate::cgroup::oom_killed(&crate::cgroup::container_parent(&self.uid, &c.spec.name));
        let bundle = crate::container::bundle_dir(&self.dir.join(&c.spec.name), c.restart_count);
        // runc could not start the process (upstream: StartError, exit code 128).
        let start_error = c
            .runc
            .as_ref()
            .and(code)
            .and_then(|_| crate::container::start_error(&bundle));
        if let Some(r) = c.runc.take() {
            // The instance is over: its writable layer and runtime state go.
            tokio::spawn(async move {
                r.delete().await;
                crate::container::remove_bundle(&bundle).await;
            });
        }
        let (exit_code, reason, message) = match code {
            _ if start_error.is_some() => (128, "StartError", start_error.clone()),
            Some(0) => (0, "Completed", None),
            Some(137) if oom => (137, "OOMKilled", None),
            Some(n) => (n, "Error", None),
            None => (
                137,
                "ContainerStatusUnknown",
                Some("The container exited while the agent was not watching it".to_string()),
            ),
        };
        let term = Term {
            exit_code,
            reason: reason.into(),
            message,
            started_at: c.started_at.clone().unwrap_or_else(now),
            finished_at: now(),
        };
        c.proc = None;
        c.ready = false;
        if let Some(r) = lock(&self.rt).containers.get_mut(&c.spec.name) {
            r.running = false;
            r.stdin = None;
        }
        let restart = !deleting
            && match policy.as_str() {
                "Never" => false,
                "OnFailure" => exit_code != 0,
                _ => !(c.init && exit_code == 0),
            };
        if !restart {
            c.state = St::Terminated(term);
            c.next_start = None;
        } else {
            // Back-off doubles per crash from 10 s to 5 min, and starts over once a
            // container has run for twice the maximum, as kubelet's does.
            let ran = c.started_instant.map(|t| t.elapsed()).unwrap_or_default();
            let delay = match c.backoff {
                Some(_) if ran >= BACKOFF_MAX * 2 => BACKOFF_START,
                Some(d) => (d * 2).min(BACKOFF_MAX),
                None => BACKOFF_START,
            };
            c.backoff = Some(delay);
            c.last = Some(term);
            c.restart_count += 1;
            let backoff_event = format!(
                "Back-off restarting failed container {} in pod {pod_desc}",
                c.spec.name
            );
            let name = c.spec.name.clone();
            c.state = St::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: format!(
                    "back-off {}s restarting failed container={} pod={pod_desc}",
                    delay.as_secs(),
                    c.spec.name
                ),
            };
            c.next_start = Some(Instant::now() + delay);
            self.event(true, "BackOff", backoff_event, Some(&name));
        }
        self.save();
    }
}
