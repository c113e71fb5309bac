//! `attach`: the running container's own stdin and output, the output followed
//! from its log file. Apart from exec: attach starts no process, and shares
//! only the frames and the resizer with it.

use std::io::SeekFrom;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};

use super::request::Req;
use super::resize::resizer;
use super::{instance_running, read_frame, write_frame, CLOSE, RESIZE, STATUS, STDIN, STDOUT};
use crate::pod::{CtrRuntime, Runtime};

pub(super) async fn attach<S: AsyncRead + AsyncWrite + Send + 'static>(
    sock: S,
    rt: &std::sync::Mutex<Runtime>,
    req: &Req,
    ctr: CtrRuntime,
) -> Result<()> {
    let (mut rd, mut wr) = tokio::io::split(sock);
    // Output is followed from here on: positioned before any input is forwarded, so
    // what the container answers to the first line typed is never skipped.
    let mut output = match ctr.log.clone() {
        Some(path) => {
            let mut file = tokio::fs::File::open(&path).await?;
            file.seek(SeekFrom::End(0)).await?;
            Some(file)
        }
        None => None,
    };
    let stdin = if req.flag("stdin") {
        ctr.stdin.clone()
    } else {
        None
    };
    let stdin_once = ctr.stdin_once;
    let input_stdin = stdin.clone();
    let resize = ctr.pid.filter(|_| ctr.tty).map(resizer);
    let input = tokio::spawn(async move {
        loop {
            match read_frame(&mut rd).await {
                Ok(Some((STDIN, data))) => {
                    if let Some(s) = &input_stdin {
                        let mut g = s.lock().await;
                        if let Some(w) = g.as_mut() {
                            if w.write_all(&data).await.is_err() {
                                *g = None;
                            }
                        }
                    }
                }
                Ok(Some((CLOSE, data))) if data.first() == Some(&STDIN) => {
                    if let (Some(s), true) = (&input_stdin, stdin_once) {
                        *s.lock().await = None;
                    }
                }
                Ok(Some((RESIZE, data))) => {
                    if let Some(r) = &resize {
                        let _ = r.send(data);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        // stdinOnce: the container's stdin closes after the first attach ends.
        if let (Some(s), true) = (&input_stdin, stdin_once) {
            *s.lock().await = None;
        }
    });
    let Some(mut file) = output.take() else {
        return Ok(());
    };
    let mut buf = vec![0u8; 16 * 1024];
    let out_ch = STDOUT;
    loop {
        let n = file.read(&mut buf).await?;
        if n > 0 {
            if write_frame(&mut wr, out_ch, &buf[..n]).await.is_err() {
                input.abort();
                return Ok(());
            }
            continue;
        }
        if !instance_running(rt, &req.container, ctr.instance) {
            let n = file.read(&mut buf).await?;
            if n > 0 {
                let _ = write_frame(&mut wr, out_ch, &buf[..n]).await;
                continue;
            }
            break;
        }
        if input.is_finished() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    input.abort();
    let st = json!({"metadata": {}, "status": "Success"});
    let _ = write_frame(&mut wr, STATUS, st.to_string().as_bytes()).await;
    let _ = wr.shutdown().await;
    Ok(())
}
