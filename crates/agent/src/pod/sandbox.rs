//! A pod's sandbox: the process holding its network, IPC and UTS namespaces, with
//! the pod's address, veth and host ports; made on the pod's first start and
//! again when it dies, its network released once the pod has finished.

use super::{lock, Msg, Worker};
use crate::{files, net, runtime};

impl Worker {
    /// `(protocol, hostPort, containerPort)` of every container port with a hostPort.
    pub(super) fn wanted_host_ports(&self) -> Vec<(String, u16, u16)> {
        self.ctrs
            .iter()
            .flat_map(|c| c.spec.ports.iter().flatten())
            .filter_map(|p| {
                let hp = u16::try_from(p.host_port?).ok().filter(|h| *h > 0)?;
                let cp = u16::try_from(p.container_port).ok()?;
                Some((p.protocol.clone().unwrap_or_else(|| "TCP".into()), hp, cp))
            })
            .collect()
    }

    /// A pod that has run to completion keeps its status and logs but not its
    /// sandbox or address (kubelet tears finished pods' sandboxes down), so
    /// completed pods never exhaust the node's addresses.
    pub(super) async fn release_network(&mut self) {
        let execs = std::mem::take(&mut lock(&self.rt).execs);
        for pid in execs {
            runtime::signal_group(pid, "KILL").await;
        }
        if let Some(p) = self.sandbox.take() {
            runtime::signal(p.pid, "KILL").await;
        }
        lock(&self.rt).sandbox = None;
        net::detach_pod(&self.veth).await;
        if self.agent.release_host_ports(&self.uid) {
            self.agent.sync_rules().await;
        }
        if let Some(ip) = self.ip {
            self.agent.ipam.release_owned(ip, &self.uid);
        }
        self.save();
        // Only now: the Ready condition above was reported while it still ran.
        self.report().await;
    }

    /// The sandbox died under the pod (killed, or its link removed): kill the
    /// containers and let the loop build a new sandbox with the same address, as
    /// kubelet does when a sandbox changes.
    pub(super) async fn sandbox_lost(&mut self) {
        tracing::warn!(pod = %self.name, ns = %self.ns, "pod sandbox died; re-creating it");
        self.event(
            false,
            "SandboxChanged",
            "Pod sandbox changed, it will be killed and re-created.".into(),
            None,
        );
        self.sandbox = None;
        lock(&self.rt).sandbox = None;
        for c in &self.ctrs {
            if let Some(p) = c.proc {
                crate::container::signal(p.pid, c.runc.as_ref(), "KILL").await;
            }
        }
        net::detach_pod(&self.veth).await;
        self.save();
    }

    pub(super) async fn setup(&mut self) {
        let spec = self.pod.spec.clone().unwrap_or_default();
        if spec.host_network.unwrap_or(false) {
            let msg = "hostNetwork is not supported by skiff's agent: every pod gets its own network namespace";
            self.fatal = Some(("CreateContainerConfigError".into(), msg.into()));
            self.event(true, "Failed", format!("Error: {msg}"), None);
            return;
        }
        let ports = self.wanted_host_ports();
        if let Err(msg) = self.agent.claim_host_ports(&self.uid, &ports, None) {
            if self.fatal.is_none() {
                self.event(true, "Failed", format!("Error: {msg}"), None);
            }
            self.fatal = Some(("CreateContainerConfigError".into(), msg));
            return;
        }
        if let Err(e) = self.try_setup().await {
            tracing::warn!(pod = %self.name, ns = %self.ns, error = %format!("{e:#}"), "pod sandbox");
            if self.setup_error.is_none() {
                self.event(
                    true,
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {e:#}"),
                    None,
                );
            }
            self.setup_error = Some(("ContainerCreating".into(), format!("{e:#}")));
            if let Some(p) = self.sandbox.take() {
                runtime::signal(p.pid, "KILL").await;
            }
        } else {
            self.setup_error = None;
        }
    }

    async fn try_setup(&mut self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let ip = self.agent.ipam.allocate(&self.uid)?;
        self.ip = Some(ip);
        self.save();
        let ips = vec![ip.to_string()];
        std::fs::write(
            self.dir.join("resolv.conf"),
            files::resolv_conf(&self.pod, &self.agent.dns),
        )?;
        std::fs::write(
            self.dir.join("hosts"),
            files::hosts(&self.pod, &ips, &self.agent.dns.cluster_domain),
        )?;
        std::fs::write(self.dir.join("hostname"), format!("{}\n", self.hostname()))?;
        let network = net::pod_network_batch(
            std::process::id(),
            &self.veth,
            ip,
            self.agent.subnet,
            self.agent.pod_mtu,
        );
        let bind_etc = self.agent.host_images;
        self.mark("sandbox starting");
        // The `ip` wiring the node's end starts now, in parallel with the sandbox.
        let attach = net::prepare_attach();
        let hostname = self.hostname();
        let sandbox = runtime::start_sandbox(&self.dir, &hostname, &network, bind_etc);
        // An image pod's volumes (API reads: its service-account token, ConfigMaps,
        // Secrets) are prepared while its sandbox starts, as kubelet mounts a pod's
        // volumes before it makes the sandbox. A failure here is left to the first
        // container start, which prepares them again and reports it.
        let started = if self.agent.host_images || self.volumes.is_some() {
            sandbox.await
        } else {
            let (started, volumes) = tokio::join!(sandbox, self.prepare_volumes());
            match volumes {
                Ok(v) => self.volumes = Some(v),
                Err(e) => {
                    tracing::debug!(pod = %self.name, error = %e, "volumes, left to the first container start")
                }
            }
            started
        };
        self.mark("sandbox up");
        let (proc, mut child) = match started {
            Ok(s) => s,
            Err(e) => {
                // A node end left by a crashed attempt makes the sandbox's `link
                // add` fail: remove it and try once more.
                tracing::debug!(pod = %self.name, error = %format!("{e:#}"), "sandbox, retrying");
                net::detach_pod(&self.veth).await;
                runtime::start_sandbox(&self.dir, &self.hostname(), &network, bind_etc).await?
            }
        };
        // Reap the sandbox when it ends (it is our child while we live), and
        // tell the worker: a pod without its sandbox must get a new one.
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let _ = child.wait().await;
            let _ = tx.send(Msg::SandboxExited(proc.pid));
        });
        self.sandbox = Some(proc);
        self.save();
        match attach {
            Ok(pending) => pending.attach(&self.veth).await?,
            Err(_) => net::attach_pod(&self.veth).await?,
        }
        self.mark("sandbox attached");
        lock(&self.rt).sandbox = Some(proc.pid);
        let ports = self.wanted_host_ports();
        if !ports.is_empty() {
            let _ = self.agent.claim_host_ports(&self.uid, &ports, Some(ip));
            self.agent.sync_rules().await;
        }
        Ok(())
    }
}
