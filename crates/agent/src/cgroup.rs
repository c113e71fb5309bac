//! A container's cgroups. The runtime (runc) makes and removes the leaf cgroup of
//! each container instance; the agent owns its parent, `skiff/<pod uid>/<container>`,
//! and puts the memory limit there. That way the kernel's own accounting of the
//! limit outlives the instance, so an OOM kill can still be told apart from any
//! other SIGKILL after the runtime has removed the leaf.
//!
//! Works on cgroup v2 (`memory.max`, `memory.events`) and on v1 or hybrid hosts
//! (`memory.limit_in_bytes`, `memory.failcnt`).

use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";
/// Every container cgroup lives below this, in each hierarchy.
pub const PREFIX: &str = "skiff";

/// The parent cgroup of a container's instances, relative to a hierarchy's root.
pub fn container_parent(pod_uid: &str, container: &str) -> String {
    format!("{PREFIX}/{pod_uid}/{container}")
}

/// The cgroups path runc gets for one instance (absolute within each hierarchy).
pub fn instance_path(pod_uid: &str, container: &str, restart: i32) -> String {
    format!("/{}/{restart}", container_parent(pod_uid, container))
}

fn unified() -> bool {
    Path::new(ROOT).join("cgroup.controllers").exists()
}

/// The memory hierarchy's root.
fn memory_root() -> PathBuf {
    if unified() {
        PathBuf::from(ROOT)
    } else {
        Path::new(ROOT).join("memory")
    }
}

/// Every hierarchy root runc may create cgroups in.
fn hierarchies() -> Vec<PathBuf> {
    if unified() {
        return vec![PathBuf::from(ROOT)];
    }
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(ROOT) {
        for e in rd.flatten() {
            let p = e.path();
            if p.join("cgroup.procs").exists() {
                out.push(p);
            }
        }
    }
    out
}

/// The cgroup mounts of a mountinfo text: (mount point, fs type, super options).
fn cgroup_mounts(mountinfo: &str) -> Vec<(String, String, String)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?.to_string();
            let mut r = right.split(' ');
            let fstype = r.next()?.to_string();
            let _source = r.next()?;
            let options = r.next().unwrap_or("").to_string();
            (fstype == "cgroup" || fstype == "cgroup2").then_some((mount_point, fstype, options))
        })
        .collect()
}

/// The machine-wide lock file of [`ensure_mounted`] (`/run` is the machine's in
/// every namespace a node runs in).
const MOUNT_LOCK: &str = "/run/skiff/cgroup-mount.lock";

/// Takes [`MOUNT_LOCK`], held until the file is dropped.
fn mount_lock() -> std::io::Result<std::fs::File> {
    if let Some(dir) = Path::new(MOUNT_LOCK).parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(MOUNT_LOCK)?;
    file.lock()?;
    Ok(file)
}

/// Makes the node's cgroup hierarchies visible where runc looks for them. A
/// mount namespace with a fresh `/sys` (as `ip netns exec` makes) has none;
/// the hierarchies of the machine's init are mounted again there (the same
/// hierarchies, so limits are the node's own). Elsewhere this does nothing.
pub async fn ensure_mounted() -> anyhow::Result<()> {
    // One caller at a time: two that both saw nothing mounted would both mount,
    // each tmpfs hiding the directories the other made. Callers are this
    // process's (the agent, a benchmark's floor) and other processes sharing its
    // mount namespace (`skiff up`'s nodes enter only their own network
    // namespace), so the lock is an in-process mutex and then a file lock.
    static MOUNTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one_at_a_time = MOUNTING.lock().await;
    let _one_process_at_a_time = tokio::task::spawn_blocking(mount_lock).await??;
    let own = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if !cgroup_mounts(&own).is_empty() {
        return Ok(());
    }
    let init = std::fs::read_to_string("/proc/1/mountinfo").unwrap_or_default();
    let wanted = cgroup_mounts(&init);
    anyhow::ensure!(
        !wanted.is_empty(),
        "no cgroup hierarchy is mounted on this machine: containers need cgroups"
    );
    let run = |args: Vec<String>| async move {
        let out = tokio::process::Command::new("mount")
            .args(&args)
            .output()
            .await?;
        anyhow::ensure!(
            out.status.success(),
            "mount {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        anyhow::Ok(())
    };
    if !wanted.iter().any(|(mp, _, _)| mp == ROOT) {
        run(vec![
            "-t".into(),
            "tmpfs".into(),
            "-o".into(),
            "mode=755".into(),
            "cgroup_root".into(),
            ROOT.into(),
        ])
        .await?;
    }
    for (mp, fstype, options) in wanted {
        std::fs::create_dir_all(&mp)?;
        let opts: Vec<&str> = options
            .split(',')
            .filter(|o| *o != "rw" && *o != "ro")
            .collect();
        let mut args = vec!["-t".to_string(), fstype.clone()];
        if !opts.is_empty() {
            args.extend(["-o".to_string(), opts.join(",")]);
        }
        args.extend([fstype, mp]);
        run(args).await?;
    }
    Ok(())
}

/// Makes the container's parent cgroup with its memory limit (bytes), fresh: the
/// failure counter of a previous instance must not count against the next.
pub fn prepare(parent: &str, memory_limit: Option<u64>) -> std::io::Result<()> {
    remove(parent);
    let Some(limit) = memory_limit else {
        return Ok(());
    };
    let dir = memory_root().join(parent);
    std::fs::create_dir_all(&dir)?;
    if unified() {
        // The controller must be enabled on every ancestor for memory.max to exist.
        let mut p = PathBuf::from(ROOT);
        for part in Path::new(parent)
            .parent()
            .into_iter()
            .flat_map(|p| p.iter())
        {
            let _ = std::fs::write(p.join("cgroup.subtree_control"), "+memory");
            p = p.join(part);
        }
        let _ = std::fs::write(p.join("cgroup.subtree_control"), "+memory");
        std::fs::write(dir.join("memory.max"), limit.to_string())?;
        std::fs::write(dir.join("memory.swap.max"), "0").ok();
    } else {
        std::fs::write(dir.join("memory.limit_in_bytes"), limit.to_string())?;
        // Without this the limit is met by swapping instead of an OOM kill.
        std::fs::write(dir.join("memory.memsw.limit_in_bytes"), limit.to_string()).ok();
    }
    Ok(())
}

/// Whether the memory limit of the container's parent was hit hard enough for the
/// kernel to kill (v2: `oom_kill` events; v1: the limit was reached, which is what
/// a SIGKILL then means).
pub fn oom_killed(parent: &str) -> bool {
    let dir = memory_root().join(parent);
    if unified() {
        return std::fs::read_to_string(dir.join("memory.events"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse::<u64>().ok())
            })
            .is_some_and(|n| n > 0);
    }
    let oom_kills = std::fs::read_to_string(dir.join("memory.oom_control"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    let failures: u64 = ["memory.failcnt", "memory.memsw.failcnt"]
        .iter()
        .filter_map(|f| read(f))
        .sum();
    // Some kernels count no failures when the reclaim path kills instead; the
    // peak usage then stands at the limit. The cgroup is fresh per instance, so
    // the peak is this instance's.
    let reached = |usage: &str, limit: &str| match (read(usage), read(limit)) {
        (Some(u), Some(l)) => u >= l,
        _ => false,
    };
    let at_limit = reached("memory.max_usage_in_bytes", "memory.limit_in_bytes")
        || reached(
            "memory.memsw.max_usage_in_bytes",
            "memory.memsw.limit_in_bytes",
        );
    oom_kills > 0 || failures > 0 || at_limit
}

/// Removes `rel` and everything below it in every hierarchy (only empty cgroups
/// can be removed; runc removes its leaves when an instance ends).
pub fn remove(rel: &str) {
    for h in hierarchies() {
        remove_tree(&h.join(rel));
    }
}

fn remove_tree(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Removes a pod's cgroups (`skiff/<uid>`) and, when it is empty, `skiff` itself.
pub fn remove_pod(pod_uid: &str) {
    remove(&format!("{PREFIX}/{pod_uid}"));
    for h in hierarchies() {
        let _ = std::fs::remove_dir(h.join(PREFIX));
    }
}

/// `resources.limits.memory` etc. as bytes (`128Mi`, `1G`, `500M`, `1e9`).
pub fn parse_quantity_bytes(q: &str) -> Option<u64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "m" => 1e-3,
        s if s.starts_with('e') || s.starts_with('E') => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some((n * mult).ceil() as u64)
}

/// `resources.*.cpu` as millicores (`500m`, `2`, `0.5`).
pub fn parse_quantity_millicpu(q: &str) -> Option<u64> {
    let q = q.trim();
    if let Some(m) = q.strip_suffix('m') {
        return m.parse().ok();
    }
    q.parse::<f64>().ok().map(|c| (c * 1000.0).ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity_bytes("128Mi"), Some(128 << 20));
        assert_eq!(parse_quantity_bytes("1G"), Some(1_000_000_000));
        assert_eq!(parse_quantity_bytes("1e3"), Some(1000));
        assert_eq!(parse_quantity_bytes("12"), Some(12));
        assert_eq!(parse_quantity_bytes("x"), None);
        assert_eq!(parse_quantity_millicpu("500m"), Some(500));
        assert_eq!(parse_quantity_millicpu("2"), Some(2000));
        assert_eq!(parse_quantity_millicpu("0.25"), Some(250));
    }

    #[test]
    fn mountinfo_cgroups() {
        let m = "30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                 31 30 0:27 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                 32 30 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup_mounts(m),
            vec![
                (
                    "/sys/fs/cgroup/memory".into(),
                    "cgroup".into(),
                    "rw,memory".into()
                ),
                (
                    "/sys/fs/cgroup/unified".into(),
                    "cgroup2".into(),
                    "rw".into()
                ),
            ]
        );
    }

    #[test]
    fn paths() {
        assert_eq!(container_parent("u1", "web"), "skiff/u1/web");
        assert_eq!(instance_path("u1", "web", 3), "/skiff/u1/web/3");
    }
}
