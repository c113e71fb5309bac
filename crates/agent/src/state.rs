//! What the agent keeps on disk about each pod (`<data>/pods/<uid>/state.json`),
//! so that a restarted agent adopts running processes instead of leaking them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::runtime::Proc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Term {
    pub exit_code: i32,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: String,
    pub finished_at: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedContainer {
    pub proc: Option<Proc>,
    pub restart_count: i32,
    pub started_at: Option<String>,
    pub env: Vec<(String, String)>,
    pub workdir: String,
    pub last: Option<Term>,
    pub terminated: Option<Term>,
    /// An image container's runtime handle (absent for host programs).
    #[serde(default)]
    pub runc: Option<crate::container::RuncRef>,
    #[serde(default)]
    pub image_id: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodState {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub ip: Option<Ipv4Addr>,
    pub veth: String,
    pub sandbox: Option<Proc>,
    pub start_time: Option<String>,
    pub containers: BTreeMap<String, SavedContainer>,
}

pub fn pods_dir(data: &Path) -> PathBuf {
    data.join("pods")
}

pub fn save(dir: &Path, s: &PodState) {
    let tmp = dir.join("state.json.tmp");
    let r = serde_json::to_vec_pretty(s)
        .map_err(std::io::Error::other)
        .and_then(|b| std::fs::write(&tmp, b))
        .and_then(|()| std::fs::rename(&tmp, dir.join("state.json")));
    if let Err(e) = r {
        tracing::warn!(dir = %dir.display(), error = %e, "saving pod state");
    }
}

/// Every saved pod state: uid -> (dir, state).
pub fn load_all(data: &Path) -> BTreeMap<String, (PathBuf, PodState)> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(pods_dir(data)) else {
        return out;
    };
    for e in entries.flatten() {
        let dir = e.path();
        let Some(uid) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let state = std::fs::read(dir.join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<PodState>(&b).ok())
            .unwrap_or_else(|| PodState {
                uid: uid.clone(),
                ..Default::default()
            });
        out.insert(uid, (dir, state));
    }
    out
}
