//! The first-pull row: a ~50 MB image (busybox + a layer of random bytes, see
//! `bench/pull-image`) pushed to a `docker-registry` on this namespace's loopback,
//! then pulled into an empty store with skiff-image's `ImageStore::pull` (the
//! agent's path: download, verify both digests, unpack for overlayfs), beside
//! `skopeo copy docker://... oci:DIR` of the same image into an empty directory
//! (download and verify, blobs kept as they are), rounds alternating which goes
//! first.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use skiff_bench::stats::{fmt_duration, Samples};

use crate::images::{self, Registry, PULL_TAG};

/// What the rounds measured.
#[derive(Default)]
pub struct PullSamples {
    pub rounds: usize,
    /// Bytes of the image's blobs (manifest, config, layers) as pushed.
    pub bytes: u64,
    pub skiff: Samples,
    pub skopeo: Samples,
    /// Each round's skiff ÷ skopeo.
    pub ratios: Vec<f64>,
}

pub async fn run(rounds: usize, oci: &Path, dir: &Path) -> Result<PullSamples> {
    let registry = Registry::start(dir).await?;
    registry.push(oci, PULL_TAG).await?;
    let reference = registry.reference(PULL_TAG);
    let bytes = image_bytes(oci, PULL_TAG)?;
    eprintln!(
        "first pull of {reference} ({:.1} MB), {rounds} rounds of ImageStore::pull and skopeo copy",
        bytes as f64 / 1e6
    );
    let mut s = PullSamples {
        rounds,
        bytes,
        ..Default::default()
    };
    // One untimed round of each: the registry's files in the page cache for both.
    skiff_pull(&reference, &dir.join("warm-skiff")).await?;
    skopeo_pull(&reference, &dir.join("warm-skopeo")).await?;
    for i in 0..rounds {
        let (a, b) = (
            dir.join(format!("skiff-{i}")),
            dir.join(format!("skopeo-{i}")),
        );
        let (skiff, skopeo) = if i % 2 == 0 {
            let x = skiff_pull(&reference, &a).await?;
            (x, skopeo_pull(&reference, &b).await?)
        } else {
            let y = skopeo_pull(&reference, &b).await?;
            (skiff_pull(&reference, &a).await?, y)
        };
        eprintln!(
            "  round {i}: skiff {} skopeo {}",
            fmt_duration(skiff),
            fmt_duration(skopeo)
        );
        s.skiff.push(skiff);
        s.skopeo.push(skopeo);
        s.ratios
            .push(skiff.as_secs_f64() / skopeo.as_secs_f64().max(1e-9));
    }
    drop(registry);
    Ok(s)
}

/// `ImageStore::pull` into a fresh, empty store at `root`; the store is removed after.
async fn skiff_pull(reference: &str, root: &Path) -> Result<Duration> {
    let store = skiff_image::ImageStore::open(root, Default::default())?;
    let began = Instant::now();
    let image = store
        .pull(reference, &[])
        .await
        .with_context(|| format!("pulling {reference}"))?;
    let took = began.elapsed();
    ensure!(
        image.layers.len() == 2,
        "the pull-test image has 2 layers, got {}",
        image.layers.len()
    );
    drop(store);
    remove(root)?;
    Ok(took)
}

/// `skopeo copy` of the same image into an empty OCI layout at `dest`, removed after.
async fn skopeo_pull(reference: &str, dest: &Path) -> Result<Duration> {
    let src = format!("docker://{reference}");
    let to = format!("oci:{}:{PULL_TAG}", dest.display());
    let began = Instant::now();
    images::run(
        Path::new("skopeo"),
        &[
            "copy",
            "--quiet",
            "--insecure-policy",
            "--src-tls-verify=false",
            &src,
            &to,
        ],
    )
    .await?;
    let took = began.elapsed();
    ensure!(
        dest.join("index.json").is_file(),
        "skopeo wrote no OCI layout"
    );
    remove(dest)?;
    Ok(took)
}

fn remove(p: &Path) -> Result<()> {
    std::fs::remove_dir_all(p).with_context(|| format!("removing {}", p.display()))
}

/// The size of `tag`'s manifest, config and layers in the OCI layout.
fn image_bytes(oci: &Path, tag: &str) -> Result<u64> {
    let read = |p: PathBuf| -> Result<serde_json::Value> {
        let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        Ok(serde_json::from_slice(&bytes)?)
    };
    let blob = |digest: &str| {
        oci.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let index = read(oci.join("index.json"))?;
    let desc = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .with_context(|| format!("no tag {tag} in {}", oci.display()))?;
    let digest = desc["digest"].as_str().context("manifest digest")?;
    let manifest = read(blob(digest))?;
    let size = |d: &serde_json::Value| d["size"].as_u64().unwrap_or(0);
    let layers: u64 = manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(size)
        .sum();
    Ok(size(desc) + size(&manifest["config"]) + layers)
}
