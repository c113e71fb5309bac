//! A port-forward session over SPDY, the server's half of what kubelet's
//! `httpstream.go` serves: for every forwarded connection the client opens an
//! error stream and a data stream that share a `requestID` and name the
//! `port`; once both exist the connection to the pod is made, the data stream
//! carries its bytes and the error stream upstream's message if it fails. Many
//! connections share one session; one failing leaves the others (and the
//! session) as they were.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::spdy::{self, Frame};
use super::Dial;

/// What the client sent on a data stream, in order.
enum Inbound {
    Data(Vec<u8>),
    Fin,
}

/// A frame to send; header compression happens in the writer, in send order.
enum Out {
    Reply(u32),
    Data(u32, bool, Vec<u8>),
    Rst(u32, u32),
    Ping(u32),
    GoAway(u32),
}

/// The streams of one forwarded connection seen so far.
struct Pair {
    error: Option<u32>,
    data: Option<(u32, mpsc::Receiver<Inbound>)>,
    port: u16,
    /// When its first stream came: the other must follow within [`PAIR_TIMEOUT`].
    since: Instant,
}

/// How long a connection's second stream may take (kubelet's default
/// `streamCreationTimeout`).
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);

/// Drops the pairs whose second stream never came, telling the client on the
/// error stream when there is one, as kubelet's `monitorStreamPair` does.
async fn expire(pairs: &mut HashMap<String, Pair>, out: &mpsc::Sender<Out>) {
    let stale: Vec<String> = pairs
        .iter()
        .filter(|(_, p)| p.since.elapsed() > PAIR_TIMEOUT)
        .map(|(k, _)| k.clone())
        .collect();
    for request in stale {
        let Some(p) = pairs.remove(&request) else {
            continue;
        };
        if let Some(e) = p.error {
            let msg = format!("(request={request}) timed out waiting for streams");
            let _ = out.send(Out::Data(e, false, msg.into_bytes())).await;
            let _ = out.send(Out::Data(e, true, Vec::new())).await;
        }
        if let Some((d, _)) = p.data {
            let _ = out.send(Out::Data(d, true, Vec::new())).await;
        }
    }
}

/// How much of the pod's output one DATA frame carries at most.
const CHUNK: usize = 32 * 1024;

/// Serves a session until the client ends it (EOF or GOAWAY).
pub async fn serve<T, D>(io: T, dialer: D)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
    D: Dial,
{
    let (mut rd, wr) = tokio::io::split(io);
    let (out, out_rx) = mpsc::channel::<Out>(256);
    let writer = tokio::spawn(write_frames(wr, out_rx));
    let mut inflater = spdy::Inflater::default();
    let mut inbound: HashMap<u32, mpsc::Sender<Inbound>> = HashMap::new();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut forwards = JoinSet::new();
    let mut last = 0;
    loop {
        while forwards.try_join_next().is_some() {}
        expire(&mut pairs, &out).await;
        let frame = match spdy::read_frame(&mut rd, &mut inflater).await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "port-forward session");
                break;
            }
        };
        match frame {
            Frame::SynStream {
                stream,
                fin,
                headers,
            } => {
                last = stream;
                let get = |k: &str| {
                    headers
                        .iter()
                        .find(|(n, _)| n == k)
                        .map(|(_, v)| v.as_str())
                };
                let (port, kind) = match check_stream(get("port"), get("streamtype")) {
                    Ok(v) => v,
                    Err(msg) => {
                        // Upstream's handler refuses the stream: it is reset.
                        tracing::debug!(stream, %msg, "port-forward stream refused");
                        let _ = out.send(Out::Rst(stream, spdy::RST_PROTOCOL_ERROR)).await;
                        continue;
                    }
                };
                let _ = out.send(Out::Reply(stream)).await;
                let request = request_id(get("requestid"), kind, stream);
                let pair = pairs.entry(request.clone()).or_insert_with(|| Pair {
                    error: None,
                    data: None,
                    port,
                    since: Instant::now(),
                });
                pair.port = port;
                let duplicate = match kind {
                    StreamKind::Error => pair.error.replace(stream).is_some(),
                    StreamKind::Data => {
                        let (tx, rx) = mpsc::channel(64);
                        if fin {
                            let _ = tx.try_send(Inbound::Fin);
                        } else {
                            inbound.insert(stream, tx);
                        }
                        pair.data.replace((stream, rx)).is_some()
                    }
                };
                if duplicate {
                    let which = if kind == StreamKind::Error {
                        "error"
                    } else {
                        "data"
                    };
                    if let Some(e) = pair.error {
                        let msg = format!(
                            "error processing stream for request {request}: {which} stream already assigned"
                        );
                        let _ = out.send(Out::Data(e, false, msg.into_bytes())).await;
                    }
                    continue;
                }
                if pair.error.is_some() && pair.data.is_some() {
                    if let Some(Pair {
                        error: Some(error),
                        data: Some((data, rx)),
                        port,
                        ..
                    }) = pairs.remove(&request)
                    {
                        let (dialer, out) = (dialer.clone(), out.clone());
                        forwards.spawn(forward(dialer, port, error, data, rx, out));
                    }
                }
            }
            Frame::Data { stream, fin, data } => {
                if let Some(tx) = inbound.get(&stream) {
                    let mut gone = !data.is_empty() && tx.send(Inbound::Data(data)).await.is_err();
                    if fin && !gone {
                        let _ = tx.send(Inbound::Fin).await;
                        gone = true;
                    }
                    if gone {
                        inbound.remove(&stream);
                    }
                }
            }
            // Dropping the sender is the reset: the forward stops.
            Frame::Rst { stream } => {
                inbound.remove(&stream);
            }
            Frame::Ping { id } => {
                let _ = out.send(Out::Ping(id)).await;
            }
            Frame::GoAway => break,
            Frame::Other => {}
        }
    }
    forwards.abort_all();
    drop(inbound);
    let _ = out.send(Out::GoAway(last)).await;
    drop(out);
    let _ = writer.await;
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum StreamKind {
    Error,
    Data,
}

/// A new stream's `port` and `streamType` headers, checked as kubelet checks them.
fn check_stream(port: Option<&str>, kind: Option<&str>) -> Result<(u16, StreamKind), String> {
    let port = port
        .filter(|p| !p.is_empty())
        .ok_or("\"port\" header is required")?;
    let port = match port.parse::<u16>() {
        Ok(0) => return Err(format!("port {port:?} must be > 0")),
        Ok(p) => p,
        Err(e) => return Err(format!("unable to parse {port:?} as a port: {e}")),
    };
    match kind {
        None | Some("") => Err("\"streamType\" header is required".into()),
        Some("error") => Ok((port, StreamKind::Error)),
        Some("data") => Ok((port, StreamKind::Data)),
        Some(other) => Err(format!("invalid stream type {other:?}")),
    }
}

/// The pair a stream belongs to: its `requestID`, or for a client too old to
/// send one, upstream's guess from consecutive stream IDs.
fn request_id(given: Option<&str>, kind: StreamKind, stream: u32) -> String {
    match given.filter(|r| !r.is_empty()) {
        Some(r) => r.to_string(),
        None if kind == StreamKind::Error => stream.to_string(),
        None => (i64::from(stream) - 2).to_string(),
    }
}

/// One forwarded connection: dial the pod through its node's agent, then
/// copy until the pod's side ends or the client resets the data stream.
/// The error stream always ends (kubectl waits for it), after the message if
/// the connection failed.
async fn forward<D: Dial>(
    dialer: D,
    port: u16,
    error: u32,
    data: u32,
    mut rx: mpsc::Receiver<Inbound>,
    out: mpsc::Sender<Out>,
) {
    let conn = match dialer.dial(port).await {
        Ok(c) => c,
        Err(msg) => {
            let _ = out.send(Out::Data(error, false, msg.into_bytes())).await;
            let _ = out.send(Out::Data(error, true, Vec::new())).await;
            let _ = out.send(Out::Data(data, true, Vec::new())).await;
            return;
        }
    };
    let (mut pod_rd, mut pod_wr) = tokio::io::split(conn);
    // Client -> pod; `true` when the client half-closed, `false` on a reset.
    let up = async {
        loop {
            match rx.recv().await {
                Some(Inbound::Data(b)) => {
                    if pod_wr.write_all(&b).await.is_err() {
                        return false;
                    }
                }
                Some(Inbound::Fin) => {
                    let _ = pod_wr.shutdown().await;
                    return true;
                }
                None => return false,
            }
        }
    };
    // Pod -> client, then the data stream's half close.
    let down = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match pod_rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if out
                        .send(Out::Data(data, false, buf[..n].to_vec()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = out.send(Out::Data(data, true, Vec::new())).await;
    };
    tokio::pin!(up, down);
    let mut up_done = false;
    loop {
        tokio::select! {
            half_closed = &mut up, if !up_done => {
                if !half_closed {
                    break;
                }
                up_done = true;
            }
            _ = &mut down => break,
        }
    }
    let _ = out.send(Out::Data(error, true, Vec::new())).await;
}

/// Encodes and writes frames in the order they were queued.
async fn write_frames<W: AsyncWrite + Unpin>(mut wr: W, mut rx: mpsc::Receiver<Out>) {
    let mut deflater = spdy::Deflater::default();
    while let Some(frame) = rx.recv().await {
        let mut bytes = encode(&mut deflater, frame);
        // Whatever else is queued goes out in the same write.
        while let Ok(more) = rx.try_recv() {
            bytes.extend(encode(&mut deflater, more));
            if bytes.len() > 256 * 1024 {
                break;
            }
        }
        if wr.write_all(&bytes).await.is_err() || wr.flush().await.is_err() {
            return;
        }
    }
    let _ = wr.shutdown().await;
}

fn encode(deflater: &mut spdy::Deflater, frame: Out) -> Vec<u8> {
    match frame {
        Out::Reply(s) => spdy::syn_reply(deflater, s),
        Out::Data(s, fin, d) => spdy::data(s, fin, &d),
        Out::Rst(s, status) => spdy::rst(s, status),
        Out::Ping(id) => spdy::ping(id),
        Out::GoAway(last) => spdy::goaway(last),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::DuplexStream;

    /// Port 80 upper-cases what it reads until the client half-closes, then
    /// closes; nothing listens on any other port.
    #[derive(Clone)]
    struct Pod;

    impl Dial for Pod {
        type Conn = DuplexStream;

        async fn dial(&self, port: u16) -> Result<DuplexStream, String> {
            if port != 80 {
                return Err(format!("nothing listens on {port}"));
            }
            let (ours, mut theirs) = tokio::io::duplex(4096);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = theirs.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let _ = theirs.write_all(&buf[..n].to_ascii_uppercase()).await;
                }
            });
            Ok(ours)
        }
    }

    type Seen = HashMap<u32, (Vec<u8>, bool)>;

    /// Reads frames until `done` says so, gathering each stream's DATA (and
    /// whether it ended) in `seen`; returns the other frames.
    async fn read_until(
        rd: &mut (impl AsyncRead + Unpin),
        inflater: &mut spdy::Inflater,
        seen: &mut Seen,
        mut done: impl FnMut(&Seen, &[Frame]) -> bool,
    ) -> Vec<Frame> {
        let mut others = Vec::new();
        while !done(seen, &others) {
            let f = tokio::time::timeout(Duration::from_secs(5), spdy::read_frame(rd, inflater))
                .await
                .expect("a frame in time")
                .expect("a frame")
                .expect("the session open");
            match f {
                Frame::Data { stream, fin, data } => {
                    let e = seen.entry(stream).or_default();
                    e.0.extend(data);
                    e.1 |= fin;
                }
                other => others.push(other),
            }
        }
        others
    }

    fn ended(s: &Seen, id: u32) -> bool {
        s.get(&id).is_some_and(|e| e.1)
    }

    #[tokio::test]
    async fn a_pair_whose_data_stream_never_comes_times_out_on_its_error_stream() {
        let (out, mut rx) = mpsc::channel(8);
        let mut pairs = HashMap::new();
        let old = Instant::now()
            .checked_sub(PAIR_TIMEOUT + Duration::from_secs(1))
            .expect("an instant 31 s ago");
        for (id, since) in [("7", old), ("8", Instant::now())] {
            let error = Some(if id == "7" { 1 } else { 3 });
            let pair = Pair {
                error,
                data: None,
                port: 80,
                since,
            };
            pairs.insert(id.to_string(), pair);
        }
        expire(&mut pairs, &out).await;
        assert_eq!(pairs.keys().collect::<Vec<_>>(), ["8"]);
        match rx.try_recv() {
            Ok(Out::Data(1, false, msg)) => {
                assert_eq!(msg, b"(request=7) timed out waiting for streams")
            }
            _ => panic!("no message on the error stream"),
        }
        assert!(matches!(rx.try_recv(), Ok(Out::Data(1, true, _))));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_refused_connection_leaves_the_session_serving_the_next() {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let session = tokio::spawn(serve(server, Pod));
        let (mut rd, mut wr) = tokio::io::split(client);
        let mut deflater = spdy::Deflater::default();
        let mut inflater = spdy::Inflater::default();
        let mut seen = Seen::new();
        let headers = |kind: &'static str, port: &'static str, id: &'static str| {
            [("streamtype", kind), ("port", port), ("requestid", id)]
        };
        // Port 81: the error stream carries the dialer's message, and both end.
        let mut frames = spdy::syn_stream(&mut deflater, 1, true, &headers("error", "81", "0"));
        frames.extend(spdy::syn_stream(
            &mut deflater,
            3,
            false,
            &headers("data", "81", "0"),
        ));
        wr.write_all(&frames).await.unwrap();
        read_until(&mut rd, &mut inflater, &mut seen, |s, _| {
            ended(s, 1) && ended(s, 3)
        })
        .await;
        assert_eq!(seen[&1].0, b"nothing listens on 81");
        assert_eq!(seen[&3].0, b"");
        // Port 80 in the same session: data both ways, half closes both ways.
        let mut frames = spdy::syn_stream(&mut deflater, 5, true, &headers("error", "80", "1"));
        frames.extend(spdy::syn_stream(
            &mut deflater,
            7,
            false,
            &headers("data", "80", "1"),
        ));
        frames.extend(spdy::data(7, false, b"hello"));
        frames.extend(spdy::data(7, true, b""));
        frames.extend(spdy::ping(1));
        wr.write_all(&frames).await.unwrap();
        read_until(&mut rd, &mut inflater, &mut seen, |s, others| {
            ended(s, 5) && ended(s, 7) && others.contains(&Frame::Ping { id: 1 })
        })
        .await;
        assert_eq!(seen[&7].0, b"HELLO");
        assert_eq!(seen[&5].0, b"", "no error for a good connection");
        // Ending the connection ends the session, with a GOAWAY.
        wr.shutdown().await.unwrap();
        let mut rest = Vec::new();
        while let Ok(Some(f)) = spdy::read_frame(&mut rd, &mut inflater).await {
            rest.push(f);
        }
        assert!(rest.contains(&Frame::GoAway), "{rest:?}");
        session.await.unwrap();
    }

    #[test]
    fn streams_are_checked_as_kubelet_checks_them() {
        assert!(check_stream(Some("80"), Some("data")).is_ok());
        assert_eq!(
            check_stream(None, Some("data")).unwrap_err(),
            "\"port\" header is required"
        );
        assert_eq!(
            check_stream(Some("0"), Some("data")).unwrap_err(),
            "port \"0\" must be > 0"
        );
        assert_eq!(
            check_stream(Some("80"), Some("x")).unwrap_err(),
            "invalid stream type \"x\""
        );
        assert_eq!(request_id(Some("7"), StreamKind::Data, 9), "7");
        assert_eq!(request_id(None, StreamKind::Error, 5), "5");
        assert_eq!(request_id(None, StreamKind::Data, 7), "5");
    }
}
