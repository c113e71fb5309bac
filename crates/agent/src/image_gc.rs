//! Image garbage collection as kubelet's: when the image store's filesystem is
//! fuller than the high threshold, unused images are removed, least recently used
//! first, until it is back at the low threshold.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::pod::lock;
use crate::Agent;

/// kubelet checks every five minutes; a minute keeps a small edge disk safer.
const PERIOD: Duration = Duration::from_secs(60);

/// `(used bytes, size bytes)` of the filesystem holding `path`, from `df`.
async fn filesystem_usage(path: &Path) -> Option<(u64, u64)> {
    let out = tokio::process::Command::new("df")
        .args(["--output=used,size", "-B1"])
        .arg(path)
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut f = text.lines().nth(1)?.split_whitespace();
    Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
}

/// How many bytes must go to bring `used` of `size` down to `low` percent, once
/// usage is at or above `high` percent.
pub fn bytes_to_free(used: u64, size: u64, high: u8, low: u8) -> u64 {
    if size == 0 || used * 100 < u64::from(high) * size {
        return 0;
    }
    used.saturating_sub(size * u64::from(low) / 100)
}

pub async fn run(agent: Arc<Agent>, (high, low): (u8, u8)) {
    let root = agent.data_dir.join("images");
    loop {
        tokio::time::sleep(PERIOD).await;
        let Some((used, size)) = filesystem_usage(&root).await else {
            continue;
        };
        let need = bytes_to_free(used, size, high, low);
        if need == 0 {
            continue;
        }
        let in_use: HashSet<String> = lock(&agent.pods)
            .values()
            .flat_map(|h| h.images.iter().cloned())
            .collect();
        let target = agent.images.disk_usage().saturating_sub(need);
        match agent.images.gc(&in_use, target) {
            Ok(freed) => tracing::info!(freed, used, size, "image garbage collection"),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "image garbage collection"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        assert_eq!(bytes_to_free(50, 100, 85, 80), 0);
        assert_eq!(bytes_to_free(90, 100, 85, 80), 10);
        assert_eq!(bytes_to_free(85, 100, 85, 80), 5);
    }
}
