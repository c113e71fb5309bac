//! `exec`: a new process in the container's namespaces, its stdio relayed as
//! channel frames and its exit reported as a v5 status. Apart from attach, which
//! starts no process.

use std::process::Stdio;

use anyhow::Result;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::request::Req;
use super::resize::resizer;
use super::{read_frame, write_frame, CLOSE, RESIZE, STATUS, STDERR, STDIN, STDOUT};
use crate::pod::{lock, CtrRuntime, Runtime};
use crate::runtime;

/// The exec status a v5 client reads on channel 3.
pub fn exit_status(argv: &[String], code: i32) -> serde_json::Value {
    if code == 0 {
        json!({"metadata": {}, "status": "Success"})
    } else {
        json!({"metadata": {}, "status": "Failure",
               "message": format!("command terminated with non-zero exit code: error executing command [{}], exit code {code}", argv.join(" ")),
               "reason": "NonZeroExitCode",
               "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
    }
}

async fn pump<R: AsyncRead + Unpin>(mut r: R, ch: u8, out: mpsc::Sender<(u8, Vec<u8>)>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if out.send((ch, buf[..n].to_vec())).await.is_err() {
                    break;
                }
            }
        }
    }
}

pub(super) async fn exec<S: AsyncRead + AsyncWrite + Send + 'static>(
    sock: S,
    rt: &std::sync::Mutex<Runtime>,
    req: &Req,
    ctr: &CtrRuntime,
    sandbox: u32,
    argv: Vec<String>,
) -> Result<()> {
    let tty = req.flag("tty");
    let want_stdin = req.flag("stdin");
    let mut cmd = ctr.exec_target(sandbox).command(&argv, tty);
    cmd.stdin(if want_stdin {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0)
    .kill_on_drop(true);
    let (mut rd, mut wr) = tokio::io::split(sock);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let st = json!({"metadata": {}, "status": "Failure", "message": format!("exec failed: {e}"), "reason": "InternalError"});
            write_frame(&mut wr, STATUS, st.to_string().as_bytes()).await?;
            return Ok(());
        }
    };
    let pgid = child.id().unwrap_or(0);
    lock(rt).execs.push(pgid);
    let (tx, mut frames) = mpsc::channel::<(u8, Vec<u8>)>(64);
    let mut pumps = Vec::new();
    if let Some(o) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(o, STDOUT, tx.clone())));
    }
    if let Some(e) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(e, STDERR, tx.clone())));
    }
    drop(tx);
    let mut stdin = child.stdin.take();
    // Client -> process: stdin and close frames; EOF means the client has gone.
    let (gone_tx, mut gone_rx) = tokio::sync::oneshot::channel::<()>();
    let resize = resizer(pgid);
    let input = tokio::spawn(async move {
        loop {
            match read_frame(&mut rd).await {
                Ok(Some((STDIN, data))) => {
                    if let Some(s) = stdin.as_mut() {
                        if s.write_all(&data).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                Ok(Some((CLOSE, data))) if data.first() == Some(&STDIN) => stdin = None,
                Ok(Some((RESIZE, data))) if tty => {
                    let _ = resize.send(data);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let _ = gone_tx.send(());
    });
    let mut client_gone = false;
    loop {
        tokio::select! {
            f = frames.recv() => match f {
                Some((ch, data)) => {
                    if write_frame(&mut wr, ch, &data).await.is_err() {
                        client_gone = true;
                        break;
                    }
                }
                None => break,
            },
            _ = &mut gone_rx, if !client_gone => {
                client_gone = true;
                runtime::signal_group(pgid, "KILL").await;
            }
        }
    }
    let code = child.wait().await.map(runtime::exit_code).unwrap_or(255);
    input.abort();
    lock(rt).execs.retain(|p| *p != pgid);
    if !client_gone {
        let st = exit_status(&argv, code);
        let _ = write_frame(&mut wr, STATUS, st.to_string().as_bytes()).await;
        let _ = wr.shutdown().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses() {
        let s = exit_status(&["false".into()], 1);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "1");
        assert_eq!(exit_status(&[], 0)["status"], "Success");
    }
}
