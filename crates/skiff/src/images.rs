//! `skiff images` and `skiff image import|pull`: the node's image store from the
//! command line, as `crictl images` and k3s's `ctr images import` do. They work on
//! the store under the data directory directly, so an air-gapped node can be
//! loaded before (or while) `skiff server` runs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

/// k3s keeps it at `/etc/rancher/k3s/registries.yaml`; skiff beside its own config.
pub const DEFAULT_REGISTRY_CONFIG: &str = "/etc/skiff/registries.yaml";

#[derive(Parser, Debug)]
pub struct StoreArgs {
    /// The server's data directory (images live in `<data-dir>/agent/images`).
    #[arg(long, default_value = "/var/lib/skiff", env = "SKIFF_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Registry mirrors, rewrites and credentials (k3s `registries.yaml` format).
    #[arg(long, default_value = DEFAULT_REGISTRY_CONFIG, env = "SKIFF_REGISTRY_CONFIG")]
    pub registry_config: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Load images from a `docker save` tarball or an OCI image layout (a
    /// directory or a tar of one), for use with no network at all.
    Import {
        /// The tarball or layout to load.
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Pull an image into the store (through the configured mirrors).
    Pull {
        /// The image reference, e.g. `busybox` or `registry.example:5000/app:1.4`.
        image: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn open(args: &StoreArgs) -> Result<skiff_image::ImageStore> {
    let registries = skiff_image::RegistryConfig::load(&args.registry_config)
        .with_context(|| format!("--registry-config {}", args.registry_config.display()))?;
    let root = images_dir(&args.data_dir);
    skiff_image::ImageStore::open(&root, registries)
        .with_context(|| format!("opening the image store at {}", root.display()))
}

fn images_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("agent").join("images")
}

/// Sizes as crictl prints them.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.3}{}", UNITS[u]).replace(".000", "")
    }
}

pub fn list(args: &StoreArgs) -> Result<()> {
    let store = open(args)?;
    let mut rows = vec![[
        "IMAGE".to_string(),
        "TAG".into(),
        "IMAGE ID".into(),
        "SIZE".into(),
    ]];
    for s in store.list() {
        let id: String = s
            .digest
            .strip_prefix("sha256:")
            .unwrap_or(&s.digest)
            .chars()
            .take(13)
            .collect();
        for r in &s.references {
            let (name, tag) = split_tag(r);
            rows.push([name, tag, id.clone(), human(s.size)]);
        }
    }
    let widths: Vec<usize> = (0..4)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for r in rows {
        println!(
            "{:w0$}   {:w1$}   {:w2$}   {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    }
    Ok(())
}

/// `docker.io/library/busybox:latest` -> (`docker.io/library/busybox`, `latest`).
fn split_tag(r: &str) -> (String, String) {
    let r = r.split('@').next().unwrap_or(r);
    match r.rfind(':') {
        Some(i) if !r[i..].contains('/') => (r[..i].to_string(), r[i + 1..].to_string()),
        _ => (r.to_string(), "<none>".to_string()),
    }
}

pub fn run(cmd: ImageCommand) -> Result<()> {
    match cmd {
        ImageCommand::Import { file, store } => {
            let s = open(&store)?;
            let refs = s
                .import(&file)
                .with_context(|| format!("importing {}", file.display()))?;
            for r in refs {
                println!("unpacked image {r}");
            }
            Ok(())
        }
        ImageCommand::Pull { image, store } => {
            let s = open(&store)?;
            let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
            let img = rt
                .block_on(s.pull(&image, &[]))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("Image is up to date for {}", img.digest);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_sizes() {
        assert_eq!(
            split_tag("docker.io/library/busybox:latest"),
            ("docker.io/library/busybox".into(), "latest".into())
        );
        assert_eq!(
            split_tag("localhost:5000/app"),
            ("localhost:5000/app".into(), "<none>".into())
        );
        assert_eq!(human(512), "512B");
        assert_eq!(human(4_500_000), "4.500MB");
    }
}
