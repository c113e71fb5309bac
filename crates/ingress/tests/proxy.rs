//! The proxy over loopback, with no API server: a route table built from
//! objects, real backends (the built-in catalog's `whoami` stand-in, Python),
//! and real clients (hyper, raw TCP). Each test binds 127.0.0.x ports, so run
//! it in a private network namespace:
//! `unshare -n sh -c 'ip link set lo up; cargo test -p skiff-ingress --test proxy'`.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde_json::json;
use skiff_ingress::class::{Classes, CONTROLLER};
use skiff_ingress::routes::{build, Objects};
use skiff_ingress::state::Shared;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A backend process, killed on drop.
struct Backend(Child);

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn whoami(port: u16) -> Backend {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../agent/catalog/whoami.py");
    let src = std::fs::read_to_string(script).expect("whoami.py");
    let backend = Backend(
        Command::new("python3")
            .args(["-u", "-c", &src])
            .env("WHOAMI_PORT_NUMBER", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3"),
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return backend;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("whoami on {port} did not start");
}

fn objects(
    backends: &[(&str, u16)],
    annotations: serde_json::Value,
) -> (
    Vec<IngressClass>,
    Vec<Ingress>,
    Vec<Service>,
    Vec<EndpointSlice>,
) {
    let class: IngressClass = serde_json::from_value(json!({
        "metadata": {"name": "skiff", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
        "spec": {"controller": CONTROLLER},
    }))
    .expect("class");
    let path = |p: &str, svc: &str| json!({"path": p, "pathType": "Prefix", "backend": {"service": {"name": svc, "port": {"number": 80}}}});
    let ingress: Ingress = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "annotations": annotations},
        "spec": {"rules": [{"host": "app.example", "http": {"paths": [
            path("/", "app"), path("/gone", "nope"),
        ]}}]},
    }))
    .expect("ingress");
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "app", "namespace": "default"},
        "spec": {"ports": [{"port": 80}]},
    }))
    .expect("service");
    let slices = backends
        .iter()
        .enumerate()
        .map(|(i, (ip, port))| {
            serde_json::from_value(json!({
                "metadata": {"name": format!("app-{i}"), "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "app"}},
                "addressType": "IPv4",
                "ports": [{"port": port, "protocol": "TCP"}],
                "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
            }))
            .expect("slice")
        })
        .collect();
    (vec![class], vec![ingress], vec![service], slices)
}

/// The proxy on 127.0.0.1, routing to `backends`.
async fn proxy(backends: &[(&str, u16)]) -> SocketAddr {
    proxy_annotated(backends, json!({})).await
}

async fn proxy_annotated(backends: &[(&str, u16)], annotations: serde_json::Value) -> SocketAddr {
    serve(table(backends, annotations)).await.0
}

fn table(
    backends: &[(&str, u16)],
    annotations: serde_json::Value,
) -> skiff_ingress::routes::RouteTable {
    let (classes, ingresses, services, slices) = objects(backends, annotations);
    build(&Objects::new(
        Classes::from_classes(&classes),
        &ingresses,
        &services,
        &slices,
    ))
    .table
}

async fn serve(table: skiff_ingress::routes::RouteTable) -> (SocketAddr, Arc<Shared>) {
    let shared = Arc::new(Shared::new(443).expect("shared"));
    shared.swap_table(table);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(skiff_ingress::proxy::serve_plain(
        listener,
        skiff_ingress::proxy::Worker::new(shared.clone()),
    ));
    (addr, shared)
}

async fn get(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Empty<Bytes>,
    >,
    proxy: SocketAddr,
    path: &str,
) -> (u16, String) {
    let req = hyper::Request::builder()
        .uri(format!("http://{proxy}{path}"))
        .header("host", "app.example")
        .body(Empty::new())
        .expect("request");
    let resp = client.request(req).await.expect("response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn retries_a_refused_endpoint_and_speaks_h2c() {
    let _b = whoami(18181);
    // 127.0.0.2:18182: nobody listens; every other request is tried there first.
    let proxy = proxy(&[("127.0.0.1", 18181), ("127.0.0.2", 18182)]).await;
    let h1 = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    for _ in 0..10 {
        let (status, body) = get(&h1, proxy, "/").await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("GET / HTTP/1.1"), "{body}");
    }
    assert_eq!(get(&h1, proxy, "/gone").await.0, 503);
    let h2 = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let (status, body) = get(&h2, proxy, "/over-h2").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("GET /over-h2 HTTP/1.1"), "{body}");
}

#[tokio::test]
async fn websocket_passes_through() {
    let _b = whoami(18183);
    let proxy = proxy(&[("127.0.0.1", 18183)]).await;
    let mut s = tokio::net::TcpStream::connect(proxy)
        .await
        .expect("connect");
    s.write_all(
        b"GET /echo HTTP/1.1\r\nHost: app.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .expect("handshake");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk).await.expect("read");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    // One masked text frame, echoed unmasked.
    let mask = [1u8, 2, 3, 4];
    let msg = b"hello";
    let mut frame = vec![0x81, 0x80 | msg.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(msg.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).await.expect("frame");
    let mut echo = [0u8; 7];
    s.read_exact(&mut echo).await.expect("echo");
    assert_eq!(&echo[..2], &[0x81, 5]);
    assert_eq!(&echo[2..], msg);
}

/// A gRPC-shaped backend over h2c: echoes the request body with a
/// `grpc-status: 0` trailer.
async fn grpc_backend() -> SocketAddr {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let h2 = req.version() == hyper::Version::HTTP_2;
                        let body = req.into_body().collect().await?.to_bytes();
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                        let frames = vec![
                            Ok::<_, std::convert::Infallible>(Frame::data(body)),
                            Ok(Frame::trailers(trailers)),
                        ];
                        Ok::<_, hyper::Error>(
                            hyper::Response::builder()
                                .header("content-type", "application/grpc")
                                .header("x-backend-h2", h2.to_string())
                                .body(StreamBody::new(futures::stream::iter(frames)))
                                .expect("response"),
                        )
                    },
                );
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn grpc_passes_through_over_h2_with_trailers() {
    use http_body_util::Full;
    let backend = grpc_backend().await;
    let ip = backend.ip().to_string();
    let proxy = proxy_annotated(
        &[(ip.as_str(), backend.port())],
        json!({"nginx.ingress.kubernetes.io/backend-protocol": "GRPC"}),
    )
    .await;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let req = hyper::Request::builder()
        .method("POST")
        .uri(format!("http://{proxy}/helloworld.Greeter/SayHello"))
        .header("host", "app.example")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\x03abc")))
        .expect("request");
    let resp = client.request(req).await.expect("response");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("x-backend-h2").map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    let collected = resp.into_body().collect().await.expect("body");
    let trailers = collected.trailers().cloned().expect("trailers");
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"0"[..])
    );
    assert_eq!(&collected.to_bytes()[..], b"\0\0\0\0\x03abc");
}

/// A pod that went silent (accepts, never answers) and then left the
/// Service: the request waiting on it is retried on an endpoint of the new
/// table, not left hanging.
#[tokio::test]
async fn a_request_waiting_on_a_removed_endpoint_is_retried() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let _b = whoami(18184);
    let (proxy, shared) = serve(table(&[("127.0.0.1", silent_port)], json!({}))).await;
    let h1 = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    let started = std::time::Instant::now();
    let request = tokio::spawn(async move { get(&h1, proxy, "/").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    shared.swap_table(table(&[("127.0.0.1", 18184)], json!({})));
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), request)
        .await
        .expect("the request hung")
        .expect("task");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("GET / HTTP/1.1"), "{body}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "answered before the grace"
    );
}
