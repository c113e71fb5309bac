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

/// Linux reports thread times in USER_HZ, which is 100 on every architecture we run on.
const TICKS_PER_SEC: u64 = 100;

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
        // "tid (comm) state ...": comm may contain spaces, so split at the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        // After the ')', field 3 (state) is first; utime and stime are fields 14 and 15.
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let num = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        out.insert(tid, (stat[open + 1..close].to_string(), num(11) + num(12)));
    }
    out
}

/// Per-thread CPU counters at one moment.
pub struct Snapshot(HashMap<u32, (String, u64)>);

pub fn snapshot() -> Snapshot {
    Snapshot(threads())
}

/// CPU used by the server's and the clients' threads during a phase.
#[derive(Debug, Default, Clone, Copy)]
pub struct Split {
    pub server: Duration,
    pub client: Duration,
}

impl Snapshot {
    /// What each thread used since `self`, summed by group. Compared thread by thread,
    /// so a pool thread that exits mid-phase (taking its counters with it) cannot make
    /// the sum shrink; only its own last few ticks are lost.
    pub fn split_since(&self) -> Split {
        let mut ticks = (0, 0);
        for (tid, (name, now)) in threads() {
            let before = self.0.get(&tid).map_or(0, |(_, t)| *t);
            let used = now.saturating_sub(before);
            if name.starts_with(SERVER) {
                ticks.0 += used;
            } else if name.starts_with(CLIENT) {
                ticks.1 += used;
            }
        }
        let ms = |t: u64| Duration::from_millis(t * 1000 / TICKS_PER_SEC);
        Split {
            server: ms(ticks.0),
            client: ms(ticks.1),
        }
    }
}

impl Split {
    pub fn plus(self, other: Split) -> Split {
        Split {
            server: self.server + other.server,
            client: self.client + other.client,
        }
    }
}
