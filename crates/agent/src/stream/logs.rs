//! `containerLogs`: the log file as raw bytes after the upgrade (tailLines,
//! limitBytes, previous, follow). Apart because logs, unlike exec and attach,
//! send no frames.

use std::io::SeekFrom;
use std::time::Duration;

use anyhow::Result;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};

use super::instance_running;
use super::request::{respond_error, upgraded, Req};
use crate::pod::{CtrRuntime, Runtime};

/// Where the last `n` lines of `data` start.
pub fn tail_offset(data: &[u8], n: usize) -> usize {
    if n == 0 {
        return data.len();
    }
    let mut seen = 0;
    let end = if data.ends_with(b"\n") {
        data.len() - 1
    } else {
        data.len()
    };
    for i in (0..end).rev() {
        if data[i] == b'\n' {
            seen += 1;
            if seen == n {
                return i + 1;
            }
        }
    }
    0
}

pub(super) async fn logs<S: AsyncRead + AsyncWrite + Unpin>(
    sock: &mut S,
    rt: &std::sync::Mutex<Runtime>,
    req: &Req,
    ctr: CtrRuntime,
) -> Result<()> {
    let previous = req.flag("previous");
    let path = if previous {
        ctr.previous_log.clone()
    } else {
        ctr.log.clone()
    };
    let Some(path) = path.filter(|p| p.exists()) else {
        let msg = if previous {
            format!(
                "previous terminated container {:?} in pod {:?} not found",
                req.container, req.pod
            )
        } else {
            format!(
                "container {:?} in pod {:?} is waiting to start: ContainerCreating",
                req.container, req.pod
            )
        };
        return respond_error(sock, 400, "BadRequest", &msg).await;
    };
    let mut file = tokio::fs::File::open(&path).await?;
    let data = tokio::fs::read(&path).await?;
    let start = match req.get("tailLines").and_then(|v| v.parse::<i64>().ok()) {
        Some(n) if n >= 0 => tail_offset(&data, n as usize),
        _ => 0,
    };
    upgraded(sock).await?;
    file.seek(SeekFrom::Start(start as u64)).await?;
    let follow = req.flag("follow") && !previous;
    let mut buf = vec![0u8; 32 * 1024];
    let mut sent: usize = 0;
    let mut limit = req
        .get("limitBytes")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(usize::MAX);
    if !follow {
        // Without follow, the log as it was when asked (tailLines counted then).
        limit = limit.min(data.len() - start);
    }
    loop {
        let n = file.read(&mut buf).await?;
        if n > 0 {
            let n = n.min(limit - sent);
            sock.write_all(&buf[..n]).await?;
            sent += n;
            if sent >= limit {
                break;
            }
            continue;
        }
        if !follow || !instance_running(rt, &req.container, ctr.instance) {
            // One last read: output written just before the exit.
            let n = file.read(&mut buf).await?;
            if n > 0 {
                let n = n.min(limit - sent);
                sock.write_all(&buf[..n]).await?;
                if follow {
                    continue;
                }
            }
            break;
        }
        // Stop when the client has gone (a read on the socket returns EOF).
        let mut probe = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(100), sock.read(&mut probe)).await
        {
            break;
        }
    }
    sock.shutdown().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails() {
        let d = b"a\nb\nc\n";
        assert_eq!(&d[tail_offset(d, 2)..], b"b\nc\n");
        assert_eq!(&d[tail_offset(d, 5)..], d);
        assert_eq!(tail_offset(d, 0), d.len());
        let d = b"a\nb";
        assert_eq!(&d[tail_offset(d, 1)..], b"b");
    }
}
