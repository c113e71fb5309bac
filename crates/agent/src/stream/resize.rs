//! Terminal resizes for exec and attach with a tty: finding the pty `script` made
//! through /proc and sizing it with `stty`; apart because both handlers use it.

use std::process::Stdio;
use std::time::Duration;

use tokio::sync::mpsc;

/// The terminal `script` (process `pid`) made for its child, once it exists.
fn child_terminal(pid: u32) -> Option<String> {
    let dir = std::fs::read_dir("/proc").ok()?;
    for e in dir.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let ppid = stat[close + 2..].split_whitespace().nth(1);
        if ppid == Some(pid.to_string().as_str()) {
            let tty = std::fs::read_link(format!("/proc/{child}/fd/0")).ok()?;
            let tty = tty.to_string_lossy().into_owned();
            return tty.starts_with("/dev/pts/").then_some(tty);
        }
    }
    None
}

/// Applies resize messages (`{"Width":W,"Height":H}`) to the terminal of the
/// process `pid` made, in order (kubectl sends size+1 then the size, to force a
/// redraw): setting the pty's size makes the kernel send SIGWINCH to its
/// foreground.
pub(super) fn resizer(pid: u32) -> mpsc::UnboundedSender<Vec<u8>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        let mut tty = None;
        while let Some(data) = rx.recv().await {
            let Ok(size) = serde_json::from_slice::<serde_json::Value>(&data) else {
                continue;
            };
            let (Some(w), Some(h)) = (size["Width"].as_u64(), size["Height"].as_u64()) else {
                continue;
            };
            // The first resize arrives with the session, before `script` forked.
            for _ in 0..40 {
                if tty.is_some() {
                    break;
                }
                tty = tokio::task::spawn_blocking(move || child_terminal(pid))
                    .await
                    .ok()
                    .flatten();
                if tty.is_none() {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
            let Some(t) = &tty else { continue };
            let _ = tokio::process::Command::new("stty")
                .args(["-F", t, "rows", &h.to_string(), "cols", &w.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
        }
    });
    tx
}
