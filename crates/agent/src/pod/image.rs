//! Image containers of a pod: the image pulled by the pod's pull policy (with
//! kubelet's events, waiting reasons and back-off), the bundle (overlay root,
//! `/etc` files, volumes, cgroup, runtime spec) and the `runc run` that the worker
//! then waits on like any container process.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Secret};
use kube::Api;
use skiff_image::{Image, PullError};
use tokio::process::Child;
use tokio::time::Instant;

use super::{St, Worker, BACKOFF_MAX, BACKOFF_START};

/// Where a container's image pull stands.
#[derive(Debug, Default)]
pub(super) enum Pull {
    #[default]
    Idle,
    /// Pulling in a task of its own, aborted if the pod goes first.
    InFlight(tokio::task::AbortHandle),
    /// Pulled, for the container's next start to take.
    Done(Box<Image>),
}
use crate::container::{self, RuncRef};
use crate::{cgroup, oci, volumes};

/// kubelet's default when `imagePullPolicy` is unset: `Always` for `:latest` or no
/// tag, else `IfNotPresent`.
pub fn pull_policy(c: &Container) -> String {
    if let Some(p) = c.image_pull_policy.as_deref().filter(|p| !p.is_empty()) {
        return p.to_string();
    }
    let image = c.image.as_deref().unwrap_or_default();
    if image.contains('@') {
        return "IfNotPresent".into();
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always".into(),
        Some(_) => "IfNotPresent".into(),
    }
}

/// `K=V` pairs of an image's config, later keys winning.
fn image_env(img: &Image) -> Vec<(String, String)> {
    img.config
        .env
        .iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// One value per name, in order of first appearance, the last value winning: a
/// process environment with duplicates would let `getenv` see the first.
pub fn dedupe_env(env: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(env.len());
    for (k, v) in env {
        match out.iter_mut().find(|(ok, _)| ok == k) {
            Some(slot) => slot.1 = v.clone(),
            None => out.push((k.clone(), v.clone())),
        }
    }
    out
}

impl Worker {
    /// The environment an image container starts from: a default `PATH`, the
    /// pod's `HOSTNAME`, then the image's own variables.
    pub(super) fn image_base_env(&self, img: &Image) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "PATH".to_string(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            ),
            ("HOSTNAME".to_string(), self.hostname()),
        ];
        env.extend(image_env(img));
        env
    }

    /// The `.dockerconfigjson` of every `imagePullSecrets` entry that exists.
    async fn pull_secrets(&self) -> Vec<Vec<u8>> {
        let api: Api<Secret> = Api::namespaced(self.agent.client.clone(), &self.ns);
        let names: Vec<String> = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.name)
            .collect();
        let mut out = Vec::new();
        for n in names {
            match api.get_opt(&n).await {
                Ok(Some(s)) => {
                    if let Some(b) = s.data.and_then(|mut d| d.remove(".dockerconfigjson")) {
                        out.push(b.0);
                    }
                }
                Ok(None) => {
                    tracing::warn!(pod = %self.name, secret = %n, "image pull secret not found")
                }
                Err(e) => {
                    tracing::warn!(pod = %self.name, secret = %n, error = %e, "reading an image pull secret")
                }
            }
        }
        out
    }

    /// The container's image by its pull policy, or `None`: a pull is under way
    /// (it reports back with [`Msg::Pulled`](super::Msg::Pulled), so the worker
    /// keeps answering a deletion meanwhile), or the container waits with
    /// `ErrImagePull`, `ImagePullBackOff` or `ErrImageNeverPull`, retried with
    /// kubelet's back-off.
    pub(super) async fn ensure_image(&mut self, i: usize) -> Option<Image> {
        match std::mem::take(&mut self.ctrs[i].pull) {
            Pull::Done(img) => return Some(*img),
            Pull::InFlight(task) => {
                self.ctrs[i].pull = Pull::InFlight(task);
                return None;
            }
            Pull::Idle => {}
        }
        let store = self.agent.images.clone();
        let spec = self.ctrs[i].spec.clone();
        let image = spec.image.clone().unwrap_or_default();
        let policy = pull_policy(&spec);
        let present = store.get(&image);
        if policy != "Always" {
            if let Some(img) = present {
                self.event(
                    false,
                    "Pulled",
                    format!("Container image {image:?} already present on machine"),
                    Some(&spec.name),
                );
                return Some(img);
            }
            if policy == "Never" {
                let msg =
                    format!("Container image {image:?} is not present with pull policy of Never");
                self.event(true, "ErrImageNeverPull", msg.clone(), Some(&spec.name));
                self.image_wait(i, "ErrImageNeverPull", msg, None);
                return None;
            }
        }
        self.event(
            false,
            "Pulling",
            format!("Pulling image {image:?}"),
            Some(&spec.name),
        );
        let secrets = self.pull_secrets().await;
        let tx = self.tx.clone();
        let task = tokio::spawn(async move {
            let began = Instant::now();
            let result = store.pull(&image, &secrets).await;
            let _ = tx.send(super::Msg::Pulled {
                ctr: i,
                took: began.elapsed(),
                result: Box::new(result),
            });
        });
        let c = &mut self.ctrs[i];
        c.pull = Pull::InFlight(task.abort_handle());
        // The pull's report schedules the start (or the back-off).
        c.next_start = None;
        None
    }

    /// A pull of container `i`'s image ended: the container starts next, or waits
    /// with the pull error and back-off.
    pub(super) fn pulled(&mut self, i: usize, took: Duration, result: Result<Image, PullError>) {
        if !self
            .ctrs
            .get(i)
            .is_some_and(|c| matches!(c.pull, Pull::InFlight(_)))
        {
            return;
        }
        self.ctrs[i].pull = Pull::Idle;
        let spec = self.ctrs[i].spec.clone();
        let image = spec.image.clone().unwrap_or_default();
        match result {
            Ok(img) => {
                let took = took.as_secs_f64();
                let size = self
                    .agent
                    .images
                    .list()
                    .into_iter()
                    .find(|s| s.digest == img.digest)
                    .map(|s| s.size)
                    .unwrap_or(0);
                self.event(
                    false,
                    "Pulled",
                    format!(
                        "Successfully pulled image {image:?} in {took:.3}s ({took:.3}s including waiting). Image size: {size} bytes."
                    ),
                    Some(&spec.name),
                );
                let c = &mut self.ctrs[i];
                c.pull_backoff = None;
                c.pull = Pull::Done(Box::new(img));
                c.next_start = Some(Instant::now());
            }
            Err(e) => {
                let msg = pull_message(&image, &e);
                tracing::info!(pod = %self.name, container = %spec.name, error = %msg, "image pull failed");
                self.event(true, "Failed", msg.clone(), Some(&spec.name));
                self.event(
                    true,
                    "Failed",
                    "Error: ErrImagePull".into(),
                    Some(&spec.name),
                );
                let first = self.ctrs[i].pull_backoff.is_none();
                let delay = match self.ctrs[i].pull_backoff {
                    Some(d) => (d * 2).min(BACKOFF_MAX),
                    None => BACKOFF_START,
                };
                if first {
                    self.image_wait(i, "ErrImagePull", msg, Some(delay));
                } else {
                    self.event(
                        false,
                        "BackOff",
                        format!("Back-off pulling image {image:?}"),
                        Some(&spec.name),
                    );
                    self.image_wait(
                        i,
                        "ImagePullBackOff",
                        format!("Back-off pulling image {image:?}: {msg}"),
                        Some(delay),
                    );
                }
            }
        }
    }

    /// Stops the image pulls still under way (the pod is going).
    pub(super) fn abort_pulls(&mut self) {
        for c in &mut self.ctrs {
            if let Pull::InFlight(task) = std::mem::take(&mut c.pull) {
                task.abort();
            }
        }
    }

    /// The container waits for its image; `retry`: when to try again.
    fn image_wait(&mut self, i: usize, reason: &str, message: String, retry: Option<Duration>) {
        let c = &mut self.ctrs[i];
        c.state = St::Waiting {
            reason: reason.into(),
            message,
        };
        c.pull_backoff = retry.or(Some(BACKOFF_START));
        c.next_start = Some(Instant::now() + retry.unwrap_or(BACKOFF_START));
    }

    /// Prepares the pod's volumes once (they are shared by its containers).
    async fn ensure_volumes(&mut self) -> Result<(), String> {
        if self.volumes.is_some() {
            return Ok(());
        }
        let v = self.prepare_volumes().await?;
        self.volumes = Some(v);
        Ok(())
    }

    /// Fills the pod's volumes; `Err`: a `FailedMount` message.
    pub(super) async fn prepare_volumes(
        &self,
    ) -> Result<std::collections::HashMap<String, volumes::Prepared>, String> {
        let sources = volumes::Sources {
            client: &self.agent.client,
            namespace: &self.ns,
        };
        volumes::prepare(&self.pod, &self.dir, &self.volume_facts(), &sources).await
    }

    /// Rewrites the prepared volumes that read `source`; a volume that cannot be
    /// refreshed keeps its content and gets a `FailedMount` event, as upstream's.
    pub(super) async fn refresh_volumes(&mut self, source: &volumes::Source) {
        if self.volumes.is_none() {
            return;
        }
        let sources = volumes::Sources {
            client: &self.agent.client,
            namespace: &self.ns,
        };
        let facts = self.volume_facts();
        let (done, failed) = volumes::refresh(&self.pod, &self.dir, &facts, &sources, source).await;
        if !done.is_empty() {
            tracing::debug!(pod = %self.name, volumes = ?done, "volumes refreshed");
        }
        for message in failed {
            self.event(
                true,
                "FailedMount",
                format!("MountVolume.SetUp failed for {message}"),
                None,
            );
        }
    }

    fn volume_facts(&self) -> crate::envvars::PodFacts<'_> {
        crate::envvars::PodFacts {
            pod: &self.pod,
            pod_ip: self.ip.map(|i| i.to_string()).unwrap_or_default(),
            host_ip: self.agent.node_ip.to_string(),
            node_name: self.agent.node_name.clone(),
        }
    }

    /// Builds the bundle of container `i`'s next instance and starts `runc run`.
    /// `Err((reason, message))`: the container waits with that reason.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run_image_container(
        &mut self,
        i: usize,
        img: &Image,
        argv: &[String],
        env: &[(String, String)],
        workdir: &str,
        log: &Path,
        stdin: bool,
        tty: bool,
    ) -> Result<Child, (String, String)> {
        let config_err = |m: String| ("CreateContainerConfigError".to_string(), m);
        let create_err = |m: String| ("CreateContainerError".to_string(), m);
        let Some(sandbox) = self.sandbox else {
            return Err(create_err("the pod sandbox is gone".into()));
        };
        if argv.is_empty() {
            return Err(create_err(format!(
                "failed to create containerd task: no command specified for image {:?}",
                img.reference
            )));
        }
        let spec = self.ctrs[i].spec.clone();
        let pod_sc = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.clone());
        let sc = spec.security_context.clone().unwrap_or_default();
        let run_as_user = sc
            .run_as_user
            .or(pod_sc.as_ref().and_then(|p| p.run_as_user));
        let run_as_group = sc
            .run_as_group
            .or(pod_sc.as_ref().and_then(|p| p.run_as_group));
        let non_root = sc
            .run_as_non_root
            .or(pod_sc.as_ref().and_then(|p| p.run_as_non_root))
            .unwrap_or(false);
        if non_root {
            oci::verify_non_root(&img.config.user, run_as_user, &self.name, &spec.name)
                .map_err(config_err)?;
        }
        let mut supplemental: Vec<i64> = pod_sc
            .as_ref()
            .and_then(|p| p.supplemental_groups.clone())
            .unwrap_or_default();
        if let Some(g) = pod_sc.as_ref().and_then(|p| p.fs_group) {
            supplemental.push(g);
        }
        self.mark("image found");
        self.ensure_volumes().await.map_err(|m| {
            (
                "CreateContainerConfigError".to_string(),
                format!("MountVolume.SetUp failed: {m}"),
            )
        })?;
        self.mark("volumes ready");
        let restart = self.ctrs[i].restart_count;
        let cdir = self.dir.join(&spec.name);
        let bundle = container::bundle_dir(&cdir, restart);
        container::remove_bundle(&bundle).await;
        let rootfs = container::mount_rootfs(&bundle, &img.layers)
            .await
            .map_err(|e| create_err(format!("{e:#}")))?;
        self.mark("rootfs mounted");
        let user = oci::resolve_user(
            &rootfs,
            &img.config.user,
            run_as_user,
            run_as_group,
            &supplemental,
        )
        .map_err(config_err)?;
        let mut mounts: Vec<oci::BindMount> = ["hosts", "hostname", "resolv.conf"]
            .iter()
            .map(|f| oci::BindMount {
                source: self.dir.join(f),
                destination: format!("/etc/{f}"),
                read_only: false,
            })
            .collect();
        let vols = self.volumes.clone().unwrap_or_default();
        mounts.extend(volumes::mounts(&spec, &vols).map_err(config_err)?);
        let caps = sc.capabilities.clone().unwrap_or_default();
        let limits = spec
            .resources
            .as_ref()
            .and_then(|r| r.limits.clone())
            .unwrap_or_default();
        let requests = spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.clone())
            .unwrap_or_default();
        let memory = limits
            .get("memory")
            .and_then(|q| cgroup::parse_quantity_bytes(&q.0));
        let cpu_quota = limits
            .get("cpu")
            .and_then(|q| cgroup::parse_quantity_millicpu(&q.0))
            .map(|m| (m * 100).max(1000) as i64);
        let cpu_shares = requests
            .get("cpu")
            .or(limits.get("cpu"))
            .and_then(|q| cgroup::parse_quantity_millicpu(&q.0))
            .map(|m| (m * 1024 / 1000).max(2));
        let parent = cgroup::container_parent(&self.uid, &spec.name);
        cgroup::prepare(&parent, memory)
            .map_err(|e| create_err(format!("setting the memory limit: {e}")))?;
        let config = oci::ContainerConfig {
            args: argv.to_vec(),
            env: dedupe_env(env)
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
            cwd: workdir.to_string(),
            user,
            capabilities: oci::capabilities(
                caps.add.as_deref().unwrap_or_default(),
                caps.drop.as_deref().unwrap_or_default(),
            ),
            // As upstream: only `allowPrivilegeEscalation: false` sets it, so
            // set-uid programs in images keep working by default.
            no_new_privileges: sc.allow_privilege_escalation == Some(false),
            read_only_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
            rootfs: rootfs.clone(),
            sandbox_pid: sandbox.pid,
            cgroups_path: cgroup::instance_path(&self.uid, &spec.name, restart),
            cpu_quota,
            cpu_shares,
            mounts,
        };
        let runtime_spec = oci::runtime_spec(&config).map_err(create_err)?;
        runtime_spec
            .save(bundle.join("config.json"))
            .map_err(|e| create_err(format!("writing the runtime spec: {e}")))?;
        self.mark("runtime spec written");
        let runc = RuncRef {
            root: self.agent.runc_root.clone(),
            id: container::container_id(&self.uid, &spec.name, restart),
        };
        let child = container::run(&container::Start {
            runc: &runc,
            bundle: &bundle,
            log,
            stdin,
            tty,
        })
        .map_err(|e| ("RunContainerError".to_string(), format!("{e:#}")))?;
        let c = &mut self.ctrs[i];
        c.runc = Some(runc);
        c.image_id = Some(img.image_id());
        Ok(child)
    }
}

/// The `Failed` event's message for a pull error, in kubelet's words.
fn pull_message(image: &str, e: &PullError) -> String {
    format!("Failed to pull image {image:?}: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pull_policy() {
        let c = |image: &str, policy: Option<&str>| Container {
            image: Some(image.into()),
            image_pull_policy: policy.map(str::to_string),
            ..Default::default()
        };
        assert_eq!(pull_policy(&c("busybox", None)), "Always");
        assert_eq!(pull_policy(&c("busybox:latest", None)), "Always");
        assert_eq!(pull_policy(&c("busybox:1.36", None)), "IfNotPresent");
        assert_eq!(pull_policy(&c("localhost:5000/busybox", None)), "Always");
        assert_eq!(pull_policy(&c("a/b@sha256:00", None)), "IfNotPresent");
        assert_eq!(pull_policy(&c("busybox", Some("Never"))), "Never");
    }

    #[test]
    fn env_dedupes_last_wins() {
        let e = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            dedupe_env(&e(&[("PATH", "/a"), ("X", "1"), ("PATH", "/b")])),
            e(&[("PATH", "/b"), ("X", "1")])
        );
    }
}
