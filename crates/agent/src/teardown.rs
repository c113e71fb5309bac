//! Ending a node's pods for good, when the node itself goes away (`skiff down`):
//! pods are processes that outlive the agent by design (a restarted agent adopts
//! them), so whoever removes a node must end them, by PID, from the agent's own
//! records. The agent must already be stopped, or it would restart them.

use std::path::Path;
use std::time::Duration;

use crate::state;

/// The network namespace (its `/proc/<pid>/ns/net` link) of a process.
fn netns_of(pid: u32) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()
}

/// PIDs of every process inside a pod network namespace recorded under
/// `agent_dir` (`<data-dir>/agent`): the sandbox holders and all they hold.
pub fn pod_processes(agent_dir: &Path) -> Vec<u32> {
    let saved = state::load_all(agent_dir);
    let own = netns_of(std::process::id());
    let namespaces: Vec<_> = saved
        .values()
        .filter_map(|(_, s)| s.sandbox.as_ref())
        .filter(|p| p.alive())
        .filter_map(|p| netns_of(p.pid))
        .filter(|ns| Some(ns) != own.as_ref())
        .collect();
    if namespaces.is_empty() {
        return Vec::new();
    }
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| netns_of(pid).is_some_and(|ns| namespaces.contains(&ns)))
        .collect()
}

/// SIGKILLs every pod process of the node whose agent kept its state in
/// `agent_dir`, then removes their cgroups. Returns how many were killed.
pub fn kill_pods(agent_dir: &Path) -> usize {
    let pids = pod_processes(agent_dir);
    for &pid in &pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let uids: Vec<String> = state::load_all(agent_dir)
        .into_values()
        .map(|(_, s)| s.uid)
        .collect();
    // A killed process leaves its cgroup a moment after the signal.
    for _ in 0..50 {
        for uid in &uids {
            crate::cgroup::remove_pod(uid);
        }
        if pod_processes(agent_dir).is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    pids.len()
}

/// Unmounts everything mounted at or below `dir` in this mount namespace (image
/// containers' overlay roots, volume mounts), deepest first, lazily: a node's
/// directory can then be removed. Returns how many were unmounted.
pub fn unmount_under(dir: &Path) -> usize {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<std::path::PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .map(std::path::PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    let mut n = 0;
    for p in points {
        if nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH).is_ok() {
            n += 1;
        }
    }
    n
}

/// A mountinfo path field: space, tab, newline and backslash are octal-escaped.
fn unescape_mountinfo(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn mountinfo_paths_unescape() {
        assert_eq!(
            super::unescape_mountinfo(r"/var/lib/a\040b"),
            "/var/lib/a b"
        );
        assert_eq!(super::unescape_mountinfo("/plain"), "/plain");
        assert_eq!(super::unescape_mountinfo(r"/x\134y"), r"/x\y");
    }
}
