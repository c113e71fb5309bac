//! The backend pods' program (the hidden `serve` subcommand, run by the agent as
//! a host program): the least a keep-alive HTTP/1.1 server needs, answering every
//! request with its pod's hostname, so the backends cost little next to the
//! proxies being compared and every answer says which pod gave it.

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn header_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// The value of header `name` (lowercase) in a request head.
fn header<'a>(head: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    head.split(|b| *b == b'\n').find_map(|line| {
        let colon = line.iter().position(|b| *b == b':')?;
        line[..colon]
            .eq_ignore_ascii_case(name)
            .then(|| line[colon + 1..].trim_ascii())
    })
}

/// `serve`: answers on `port` until the pod is stopped.
pub async fn serve(port: u16) -> Result<()> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let body = format!("Hostname: {host}\n");
    let keep: &'static [u8] = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
    .leak();
    let close: &'static [u8] = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
    .leak();
    let listener = TcpListener::bind(("0.0.0.0", port))
        .await
        .with_context(|| format!("listening on {port}"))?;
    println!("serving {host} on :{port}");
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = connection(stream, keep, close).await;
        });
    }
}

async fn connection(mut s: TcpStream, keep: &[u8], close: &[u8]) -> Result<()> {
    s.set_nodelay(true)?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut have = 0;
    loop {
        while let Some(end) = header_end(&buf[..have]) {
            let head = &buf[..end];
            let closing = header(head, b"connection")
                .is_some_and(|v| v.eq_ignore_ascii_case(b"close"))
                || head.windows(8).any(|w| w == b"HTTP/1.0");
            let body: usize = header(head, b"content-length")
                .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
                .unwrap_or(0);
            // A request body (none in this benchmark) is read and dropped.
            let total = end + 4 + body;
            while have < total.min(buf.len()) {
                let n = s.read(&mut buf[have..]).await?;
                if n == 0 {
                    return Ok(());
                }
                have += n;
            }
            if total > buf.len() {
                bail!("request too large");
            }
            s.write_all(if closing { close } else { keep }).await?;
            if closing {
                return Ok(());
            }
            buf.copy_within(total..have, 0);
            have -= total;
        }
        if have == buf.len() {
            bail!("request header too large");
        }
        let n = s.read(&mut buf[have..]).await?;
        if n == 0 {
            return Ok(());
        }
        have += n;
    }
}
