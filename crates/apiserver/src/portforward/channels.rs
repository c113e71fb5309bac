//! Port-forward over plain WebSocket channels (`v4.channel.k8s.io`,
//! `v4.base64.channel.k8s.io`, or no subprotocol), as kubelet's `websocket.go`
//! serves it and the Python client speaks it: the ports come from `?ports=`,
//! port `i` has data channel `2i` and error channel `2i+1`, and the first
//! message on each carries the port as two little-endian bytes. One connection
//! per port; the session ends when every port's connection has ended.

use axum::extract::ws::{Message, WebSocket};
use base64::Engine;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::Dial;

pub const BINARY: &str = "v4.channel.k8s.io";
pub const BASE64: &str = "v4.base64.channel.k8s.io";

/// The `ports` query values (each may hold several, comma-separated), checked
/// as kubelet's `NewV4Options` checks them.
pub fn parse_ports(values: &[String]) -> Result<Vec<u16>, String> {
    if values.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    let mut ports = Vec::new();
    for v in values {
        if v.is_empty() {
            return Err("query parameter \"port\" cannot be empty".into());
        }
        for p in v.split(',') {
            match p.parse::<u16>() {
                Ok(0) => return Err(format!("port {v:?} must be > 0")),
                Ok(port) => ports.push(port),
                Err(e) => return Err(format!("unable to parse {v:?} as a port: {e}")),
            }
        }
    }
    Ok(ports)
}

/// A message on `channel`: binary `[channel][data]`, or in base64 mode text
/// whose first character is the channel's digit.
fn message(base64: bool, channel: u8, data: &[u8]) -> Message {
    if base64 {
        let mut s = String::with_capacity(1 + data.len() * 4 / 3 + 4);
        s.push(char::from(b'0' + channel));
        s.push_str(&base64::engine::general_purpose::STANDARD.encode(data));
        Message::Text(s.into())
    } else {
        let mut b = Vec::with_capacity(1 + data.len());
        b.push(channel);
        b.extend_from_slice(data);
        Message::Binary(b.into())
    }
}

/// A client message as (channel, data); `None` for one that carries none.
fn decode(base64: bool, msg: Message) -> Option<(u8, Vec<u8>)> {
    match msg {
        Message::Binary(b) => {
            let (&ch, data) = b.split_first()?;
            Some((ch, data.to_vec()))
        }
        Message::Text(t) if base64 => {
            let (first, rest) = t.as_str().split_at_checked(1)?;
            let ch = first.as_bytes()[0].checked_sub(b'0')?;
            let data = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()?;
            Some((ch, data))
        }
        Message::Text(t) => {
            let (&ch, data) = t.as_bytes().split_first()?;
            Some((ch, data.to_vec()))
        }
        _ => None,
    }
}

pub async fn serve<D: Dial>(socket: WebSocket, dialer: D, ports: Vec<u16>, base64: bool) {
    let (mut ws_tx, mut ws_rx) = socket.split();
    let (out, mut out_rx) = mpsc::channel::<(u8, Vec<u8>)>(256);
    let writer = tokio::spawn(async move {
        while let Some((ch, data)) = out_rx.recv().await {
            if ws_tx.send(message(base64, ch, &data)).await.is_err() {
                return;
            }
        }
        let close = axum::extract::ws::CloseFrame {
            code: axum::extract::ws::close_code::NORMAL,
            reason: "".into(),
        };
        let _ = ws_tx.send(Message::Close(Some(close))).await;
        let _ = ws_tx.close().await;
    });
    let mut inputs = Vec::new();
    let mut forwards = Vec::new();
    for (i, &port) in ports.iter().enumerate() {
        let (data_ch, error_ch) = ((2 * i) as u8, (2 * i + 1) as u8);
        let prefix = port.to_le_bytes().to_vec();
        let _ = out.send((data_ch, prefix.clone())).await;
        let _ = out.send((error_ch, prefix)).await;
        let (tx, rx) = mpsc::channel::<Vec<u8>>(64);
        inputs.push(tx);
        forwards.push(tokio::spawn(forward(
            dialer.clone(),
            port,
            data_ch,
            error_ch,
            rx,
            out.clone(),
        )));
    }
    drop(out);
    let all_done = futures::future::join_all(forwards);
    tokio::pin!(all_done);
    loop {
        tokio::select! {
            _ = &mut all_done => break,
            msg = ws_rx.next() => {
                let Some(Ok(msg)) = msg else { break };
                if matches!(msg, Message::Close(_)) {
                    break;
                }
                let Some((ch, data)) = decode(base64, msg) else { continue };
                // Only data channels take input; the error channels are write-only.
                if ch % 2 == 0 {
                    if let Some(tx) = inputs.get((ch / 2) as usize) {
                        if !data.is_empty() && tx.send(data).await.is_err() {
                            inputs[(ch / 2) as usize] = mpsc::channel(1).0;
                        }
                    }
                }
            }
        }
    }
    drop(inputs);
    // The forwards end as their input ends (the client went) or already have.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await;
}

async fn forward<D: Dial>(
    dialer: D,
    port: u16,
    data_ch: u8,
    error_ch: u8,
    mut rx: mpsc::Receiver<Vec<u8>>,
    out: mpsc::Sender<(u8, Vec<u8>)>,
) {
    let conn = match dialer.dial(port).await {
        Ok(c) => c,
        Err(msg) => {
            let _ = out.send((error_ch, msg.into_bytes())).await;
            return;
        }
    };
    let (mut pod_rd, mut pod_wr) = tokio::io::split(conn);
    let up = async {
        while let Some(b) = rx.recv().await {
            if pod_wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = pod_wr.shutdown().await;
        // The client is gone: nothing more to wait for on this side.
        std::future::pending::<()>().await;
    };
    let down = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match pod_rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if out.send((data_ch, buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_as_kubelet_reads_them() {
        assert_eq!(
            parse_ports(&["80,8080".into(), "9".into()]).unwrap(),
            vec![80, 8080, 9]
        );
        assert!(parse_ports(&[]).is_err());
        assert!(parse_ports(&["0".into()])
            .unwrap_err()
            .contains("must be > 0"));
        assert!(parse_ports(&["x".into()])
            .unwrap_err()
            .contains("unable to parse"));
    }

    #[test]
    fn messages_in_both_encodings() {
        let m = message(false, 3, b"hi");
        assert_eq!(decode(false, m), Some((3, b"hi".to_vec())));
        let m = message(true, 1, b"hi");
        assert!(matches!(&m, Message::Text(t) if t.as_str() == "1aGk="));
        assert_eq!(decode(true, m), Some((1, b"hi".to_vec())));
    }
}
