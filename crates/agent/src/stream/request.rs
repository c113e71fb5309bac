//! Parsing the upgrade request and the plain HTTP answers (an error `Status`,
//! `101 Switching Protocols`); apart because port-forward answers with them too.

use anyhow::Result;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A parsed request: kind, namespace, pod, container, and decoded query.
pub(super) struct Req {
    pub(super) kind: String,
    pub(super) ns: String,
    pub(super) pod: String,
    pub(super) container: String,
    pub(super) query: Vec<(String, String)>,
}

impl Req {
    pub(super) fn get(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
    pub(super) fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
    pub(super) fn all(&self, k: &str) -> Vec<String> {
        self.query
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn parse_target(target: &str) -> Option<Req> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let [kind, ns, pod, container] = parts.as_slice() else {
        return None;
    };
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    Some(Req {
        kind: kind.to_string(),
        ns: percent_decode(ns),
        pod: percent_decode(pod),
        container: percent_decode(container),
        query,
    })
}

pub(super) async fn read_head<S: AsyncRead + Unpin>(sock: &mut S) -> Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 64 * 1024 {
            anyhow::bail!("request head too large");
        }
        if sock.read(&mut byte).await? == 0 {
            anyhow::bail!("connection closed in request head");
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

fn status_error(code: u16, reason: &str, message: &str) -> serde_json::Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

pub(crate) async fn respond_error<S: AsyncWrite + Unpin>(
    sock: &mut S,
    code: u16,
    reason: &str,
    message: &str,
) -> Result<()> {
    let body = status_error(code, reason, message).to_string();
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body.as_bytes()).await?;
    sock.shutdown().await?;
    Ok(())
}

pub(crate) async fn upgraded<S: AsyncWrite + Unpin>(sock: &mut S) -> Result<()> {
    sock.write_all(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: skiff-stream\r\nConnection: Upgrade\r\n\r\n",
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let r =
            parse_target("/exec/default/web/c?command=sh&command=-c&command=echo%20hi&stdout=true")
                .unwrap();
        assert_eq!(r.kind, "exec");
        assert_eq!(r.all("command"), ["sh", "-c", "echo hi"]);
        assert!(r.flag("stdout"));
        assert!(parse_target("/exec/x").is_none());
    }
}
