//! CPU time by thread group. Server and clients share this process (and the cores), so
//! their threads are named apart and counted from `/proc/self/task/*/stat`: that tells
//! whether a slow phase was the server working or the load generator.

use std::collections::HashMap;
use std::time::Duration;

/// Thread-name prefix of the API server's runtime (workers and its blocking pool, where
/// the store calls run).
pub const SERVER: &str = "srv";
/// Thread-name prefix of the load generator's runtime, including the raw-store phases.
pub const CLIENT: &str = "cli";
/// Thread-name prefix of `EtcdBackend`'s own runtime (the etcd client's gRPC work).
pub const STORE: &str = "skiff-etcd";

/// Linux reports thread times in USER_HZ, which is 100 on every architecture we run on.
const TICKS_PER_SEC: u64 = 100;

/// A `stat` file's name and CPU ticks (user + system).
fn parse_stat(stat: &str) -> Option<(String, u64)> {
    // "tid (comm) state ...": comm may contain spaces, so split at the last ')'.
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    // After the ')', field 3 (state) is first; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let num = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some((stat.get(open + 1..close)?.to_string(), num(11) + num(12)))
}

/// CPU ticks (user + system) used so far by each live thread of this process, by TID,
/// with the thread's name.
fn threads() -> HashMap<u32, (String, u64)> {
    let mut out = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        if let Some(entry) = parse_stat(&stat) {
            out.insert(tid, entry);
        }
    }
    out
}

/// CPU ticks used so far by the processes `pids` together (the etcd members: their
/// `stat` sums every thread, live or exited).
fn processes(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| parse_stat(&stat))
        .map(|(_, ticks)| ticks)
        .sum()
}

/// CPU ticks used so far by this whole process, exited threads included.
fn this_process() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| parse_stat(&stat))
        .map_or(0, |(_, ticks)| ticks)
}

/// Per-thread CPU counters at one moment, this process's total, and the total of the
/// (etcd) processes `pids`.
pub struct Snapshot {
    threads: HashMap<u32, (String, u64)>,
    process: u64,
    pids: Vec<u32>,
    others: u64,
}

pub fn snapshot() -> Snapshot {
    snapshot_with(&[])
}

/// Like `snapshot`, also counting the (etcd) processes `pids`.
pub fn snapshot_with(pids: &[u32]) -> Snapshot {
    Snapshot {
        threads: threads(),
        process: this_process(),
        pids: pids.to_vec(),
        others: processes(pids),
    }
}

/// CPU used by the server's and the clients' threads during a phase.
#[derive(Debug, Default, Clone, Copy)]
pub struct Split {
    pub server: Duration,
    pub client: Duration,
    /// `EtcdBackend`'s runtime (zero on SQLite).
    pub store: Duration,
    /// The etcd members (zero unless counted with `snapshot_with`).
    pub etcd: Duration,
    /// This whole process: the groups above, short-lived threads, everything else.
    pub process: Duration,
}

impl Snapshot {
    /// What each thread used since `self`, summed by group. Compared thread by thread,
    /// so a pool thread that exits mid-phase (taking its counters with it) cannot make
    /// the sum shrink; only its own last few ticks are lost.
    pub fn split_since(&self) -> Split {
        let mut ticks = (0, 0, 0);
        for (tid, (name, now)) in threads() {
            let before = self.threads.get(&tid).map_or(0, |(_, t)| *t);
            let used = now.saturating_sub(before);
            if name.starts_with(SERVER) {
                ticks.0 += used;
            } else if name.starts_with(CLIENT) {
                ticks.1 += used;
            } else if name.starts_with(STORE) {
                ticks.2 += used;
            }
        }
        let ms = |t: u64| Duration::from_millis(t * 1000 / TICKS_PER_SEC);
        Split {
            server: ms(ticks.0),
            client: ms(ticks.1),
            store: ms(ticks.2),
            etcd: ms(processes(&self.pids).saturating_sub(self.others)),
            process: ms(this_process().saturating_sub(self.process)),
        }
    }
}

impl Split {
    pub fn plus(self, other: Split) -> Split {
        Split {
            server: self.server + other.server,
            client: self.client + other.client,
            store: self.store + other.store,
            etcd: self.etcd + other.etcd,
            process: self.process + other.process,
        }
    }
}
