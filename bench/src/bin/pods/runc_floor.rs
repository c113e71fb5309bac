//! The image rows' floor: the same cached image started directly with
//! `runc run -d`, from a bundle made the way the agent makes one (its own
//! functions: an overlayfs over the store's unpacked layers with a fresh upper
//! layer, and the runtime spec of `skiff_agent::oci` for the image's entrypoint,
//! env, user and containerd's default capabilities). Unlike the agent's
//! containers, which join their pod sandbox's namespaces, the floor's gets fresh
//! ones from runc (network too, with only `lo`): nothing else to set up.
//!
//! Timed from the start of `runc run -d` until it returns (the container's
//! process has been started), and until that process listens on its port (read
//! from `/proc/<pid>/net/tcp`, which shows the container's network namespace).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use skiff_agent::{cgroup, container, oci};
use skiff_image::Image;
use tokio::process::Command;

/// How often the listener is looked for (the skiff side retries connecting as often).
pub const POLL: Duration = Duration::from_millis(1);
/// How long a container may take to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the floor's containers live, and what they run.
pub struct RuncFloor {
    image: Image,
    /// `runc --root`.
    root: PathBuf,
    /// Bundles: `<dir>/run-<i>`.
    dir: PathBuf,
    /// The cgroup "pod uid" the floor's containers live under (`skiff/<owner>/...`),
    /// removed with the agent's own function.
    owner: String,
    port: u16,
}

/// One floor container; killed, unmounted and removed on drop.
pub struct FloorContainer {
    root: PathBuf,
    id: String,
    bundle: PathBuf,
}

/// One floor sample.
#[derive(Debug, Clone, Copy)]
pub struct FloorTiming {
    /// Overlay mount and `config.json` (before `runc run -d` starts).
    pub bundle: Duration,
    /// `runc run -d` until it returned.
    pub run: Duration,
    /// `runc run -d` start until the process listens on the port.
    pub serving: Duration,
}

impl RuncFloor {
    pub async fn new(image: Image, dir: &Path, port: u16) -> Result<Self> {
        // The agent does this too; idempotent (the hierarchies this process sees).
        cgroup::ensure_mounted().await?;
        let root = dir.join("runc");
        let bundles = dir.join("bundles");
        for d in [&root, &bundles] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        Ok(Self {
            image,
            root,
            dir: bundles,
            owner: format!("bench-floor-{}", std::process::id()),
            port,
        })
    }

    /// The runtime spec: the agent's, with fresh namespaces instead of a sandbox's.
    fn config(&self, rootfs: &Path, i: usize) -> Result<serde_json::Value> {
        let img = &self.image;
        let user = oci::resolve_user(rootfs, &img.config.user, None, None, &[])
            .map_err(anyhow::Error::msg)?;
        let mut env =
            vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()];
        env.extend(img.config.env.iter().cloned());
        let cwd = Some(img.config.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into());
        let config = oci::ContainerConfig {
            args: oci::container_argv(&img.config.entrypoint, &img.config.cmd, &[], &[]),
            env,
            cwd,
            user,
            capabilities: oci::capabilities(&[], &[]),
            no_new_privileges: false,
            read_only_rootfs: false,
            rootfs: rootfs.to_path_buf(),
            // Replaced below: the floor has no sandbox to join.
            sandbox_pid: 0,
            cgroups_path: cgroup::instance_path(&self.owner, "main", i32::try_from(i)?),
            cpu_quota: None,
            cpu_shares: None,
            mounts: Vec::new(),
        };
        let spec = oci::runtime_spec(&config).map_err(anyhow::Error::msg)?;
        let mut v = serde_json::to_value(&spec)?;
        let namespaces = v
            .pointer_mut("/linux/namespaces")
            .and_then(|n| n.as_array_mut())
            .context("the runtime spec has no namespaces")?;
        for ns in namespaces {
            if let Some(o) = ns.as_object_mut() {
                o.remove("path");
            }
        }
        Ok(v)
    }

    /// Starts floor container `i` and waits until it listens.
    pub async fn start(&self, i: usize) -> Result<(FloorContainer, FloorTiming)> {
        let began = Instant::now();
        let bundle = container::bundle_dir(&self.dir, i32::try_from(i)?);
        let c = FloorContainer {
            root: self.root.clone(),
            id: format!("{}-{i}", self.owner),
            bundle: bundle.clone(),
        };
        let rootfs = container::mount_rootfs(&bundle, &self.image.layers).await?;
        let config = self.config(&rootfs, i)?;
        std::fs::write(bundle.join("config.json"), serde_json::to_vec(&config)?)?;
        let run_began = Instant::now();
        let pid_file = bundle.join("pid");
        let out = Command::new(container::RUNTIME)
            .arg("--root")
            .arg(&self.root)
            .args(["run", "-d", "--bundle"])
            .arg(&bundle)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(&c.id)
            // Detached: the container keeps these; nothing may wait on a pipe.
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .context("running runc")?;
        let ran = run_began.elapsed();
        if !out.success() {
            bail!("`runc run -d` of floor container {i} failed ({out})");
        }
        let pid: u32 = std::fs::read_to_string(&pid_file)?
            .trim()
            .parse()
            .context("runc's pid file")?;
        wait_listening(pid, self.port).await?;
        let timing = FloorTiming {
            bundle: run_began.saturating_duration_since(began),
            run: ran,
            serving: run_began.elapsed(),
        };
        Ok((c, timing))
    }

    /// Removes the floor's cgroup parents (runc removed each container's leaf).
    pub fn remove_cgroups(&self) {
        cgroup::remove_pod(&self.owner);
    }
}

impl Drop for RuncFloor {
    fn drop(&mut self) {
        self.remove_cgroups();
    }
}

/// Waits until `/proc/<pid>/net/tcp` (the container's network namespace) has a
/// socket listening on `port`.
async fn wait_listening(pid: u32, port: u16) -> Result<()> {
    let deadline = Instant::now() + LISTEN_TIMEOUT;
    let tables = [
        format!("/proc/{pid}/net/tcp"),
        format!("/proc/{pid}/net/tcp6"),
    ];
    loop {
        if tables.iter().any(|t| listening(t, port)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("floor container (pid {pid}) not listening on {port} within {LISTEN_TIMEOUT:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether a `/proc/net/tcp`-format table has a LISTEN socket on `port`.
fn listening(table: &str, port: u16) -> bool {
    let Ok(text) = std::fs::read_to_string(table) else {
        return false;
    };
    let want = format!(":{port:04X}");
    text.lines().skip(1).any(|l| {
        let mut f = l.split_whitespace();
        let (local, state) = (f.nth(1), f.nth(1));
        local.is_some_and(|a| a.ends_with(&want)) && state == Some("0A")
    })
}

impl Drop for FloorContainer {
    fn drop(&mut self) {
        let _ = std::process::Command::new(container::RUNTIME)
            .arg("--root")
            .arg(&self.root)
            .args(["delete", "--force", &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let rootfs = self.bundle.join("rootfs");
        let _ = std::process::Command::new("umount")
            .arg(&rootfs)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.bundle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_listener() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("tcp");
        std::fs::write(
            &t,
            "  sl  local_address rem_address   st tx_queue rx_queue\n   \
             0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000\n",
        )
        .unwrap();
        let t = t.to_string_lossy();
        assert!(listening(&t, 80));
        assert!(!listening(&t, 8080));
    }
}
