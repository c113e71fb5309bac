//! Running iproute2 / util-linux / nft binaries without blocking the runtime.

use std::process::Stdio;

use anyhow::{bail, Context, Result};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Runs `program args`, returns stdout; fails with stderr on a non-zero exit.
pub async fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Like [`run`], feeding `input` on stdin.
pub async fn run_stdin(program: &str, args: &[&str], input: &str) -> Result<String> {
    start_stdin(program, args)?.finish(input).await
}

/// A program started ahead of the input it will read on stdin, so its start (a
/// fork and exec, the dominant cost of a short `ip -batch -`) overlaps other
/// work; killed if dropped unfinished.
pub struct Started {
    child: tokio::process::Child,
    program: String,
    args: Vec<String>,
}

/// Starts `program args` reading stdin; [`Started::finish`] feeds it.
pub fn start_stdin(program: &str, args: &[&str]) -> Result<Started> {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running {program}"))?;
    Ok(Started {
        child,
        program: program.to_string(),
        args: args.iter().map(|a| a.to_string()).collect(),
    })
}

impl Started {
    /// Writes `input`, closes stdin, returns stdout; fails with stderr on a
    /// non-zero exit.
    pub async fn finish(mut self, input: &str) -> Result<String> {
        if let Some(mut stdin) = self.child.stdin.take() {
            stdin.write_all(input.as_bytes()).await?;
        }
        let out = self.child.wait_with_output().await?;
        if !out.status.success() {
            bail!(
                "{} {}: {}: {}",
                self.program,
                self.args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim(),
                input.trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
