//! Test images for the image rows: `tests/images/build` (busybox-static in an OCI
//! layout, with umoci) and `bench/pull-image` (busybox + a layer of random bytes),
//! and Debian's `docker-registry` serving them on this namespace's loopback.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The image the image-container pods run (`tests/images/build`'s `httpd`:
/// busybox `httpd -f -p 80 -h /www`).
pub const SERVED: &str = "httpd";
/// The port it listens on.
pub const SERVED_PORT: u16 = 80;
/// The tag `bench/pull-image` adds.
pub const PULL_TAG: &str = "pull-test";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs a program to completion (the agent's helper); fails with its stderr.
pub async fn run(program: &Path, args: &[&str]) -> Result<()> {
    let program = program
        .to_str()
        .with_context(|| format!("{} is not UTF-8", program.display()))?;
    skiff_agent::cmd::run(program, args).await.map(drop)
}

/// Builds the test images into `<dir>/oci`; with `pull_mb`, also the pull-test
/// image of that many megabytes of random bytes. Returns the OCI layout.
pub async fn build(dir: &Path, pull_mb: Option<u32>) -> Result<PathBuf> {
    let began = Instant::now();
    let out = dir.join("images");
    let out_s = out.to_string_lossy().into_owned();
    run(&repo_root().join("tests/images/build"), &[&out_s])
        .await
        .context("building the test images (needs umoci, python3, busybox-static)")?;
    let oci = out.join("oci");
    if let Some(mb) = pull_mb {
        let oci_s = oci.to_string_lossy().into_owned();
        run(
            &repo_root().join("bench/pull-image"),
            &[&oci_s, &mb.to_string()],
        )
        .await?;
    }
    eprintln!(
        "test images built in {}",
        skiff_bench::stats::fmt_duration(began.elapsed())
    );
    Ok(oci)
}

/// Imports every image of the OCI layout into the store at `root` (the agent's
/// `<data dir>/agent/images`), so pods find them cached.
pub fn import(root: &Path, oci: &Path) -> Result<Vec<String>> {
    let store = skiff_image::ImageStore::open(root, Default::default())
        .with_context(|| format!("opening the image store {}", root.display()))?;
    store
        .import(oci)
        .with_context(|| format!("importing {}", oci.display()))
}

/// Debian's `docker-registry` on `127.0.0.1:<free port>` of this namespace,
/// storing under a directory of the run's temp dir; killed by PID on drop.
pub struct Registry {
    child: std::process::Child,
    pub addr: SocketAddr,
}

impl Registry {
    pub async fn start(dir: &Path) -> Result<Self> {
        let storage = dir.join("registry");
        std::fs::create_dir_all(&storage)?;
        // A port nobody in this namespace uses: bound, then handed over.
        let addr = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?;
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    \
                 rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                storage.display()
            ),
        )?;
        let log = std::fs::File::create(dir.join("registry.log"))?;
        let child = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting docker-registry (apt-get install docker-registry)")?;
        let mut reg = Registry { child, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if let Some(status) = reg.child.try_wait()? {
                bail!(
                    "docker-registry exited ({status}); see {}",
                    dir.join("registry.log").display()
                );
            }
            if Instant::now() > deadline {
                bail!("docker-registry not listening on {addr} within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(reg)
    }

    /// `HOST:PORT/library/NAME:latest` of an image in this registry.
    pub fn reference(&self, name: &str) -> String {
        format!("{}/library/{name}:latest", self.addr)
    }

    /// Pushes `tag` of the OCI layout here with skopeo.
    pub async fn push(&self, oci: &Path, tag: &str) -> Result<()> {
        let src = format!("oci:{}:{tag}", oci.display());
        let dest = format!("docker://{}", self.reference(tag));
        run(
            Path::new("skopeo"),
            &[
                "copy",
                "--quiet",
                "--insecure-policy",
                "--dest-tls-verify=false",
                &src,
                &dest,
            ],
        )
        .await
        .context("pushing with skopeo")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Our own child: killed by its PID, then reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
