//! The access log: one line per request under the tracing target
//! [`TARGET`], in nginx's combined format followed by what ingress-nginx adds
//! (request time, upstream name and address).

use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderMap, Method, Uri, Version};

/// The tracing target of access-log lines (`RUST_LOG=skiff_ingress::access=info`).
pub const TARGET: &str = "skiff_ingress::access";

/// One finished request.
pub struct Entry<'a> {
    pub remote: SocketAddr,
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub version: Version,
    pub headers: &'a HeaderMap,
    pub status: u16,
    /// The response body's length when known.
    pub bytes: Option<u64>,
    pub duration: Duration,
    /// `namespace-service-port`, or `-` when no backend was involved.
    pub upstream: &'a str,
    pub upstream_addr: Option<SocketAddr>,
}

fn version(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// The line for `e`.
pub fn line(e: &Entry<'_>) -> String {
    let header = |name: &str| {
        e.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
    };
    let uri = e.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    format!(
        "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\" {:.3} [{}] {}",
        e.remote.ip(),
        chrono::Local::now().format("%d/%b/%Y:%H:%M:%S %z"),
        e.method,
        uri,
        version(e.version),
        e.status,
        e.bytes.map_or_else(|| "-".to_string(), |b| b.to_string()),
        header("referer"),
        header("user-agent"),
        e.duration.as_secs_f64(),
        e.upstream,
        e.upstream_addr
            .map_or_else(|| "-".to_string(), |a| a.to_string()),
    )
}

/// Writes `e` to the access log, when that target is enabled.
pub fn log(e: &Entry<'_>) {
    if tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        tracing::info!(target: TARGET, "{}", line(e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_format_and_upstream() {
        let mut headers = HeaderMap::new();
        headers.insert("user-agent", "curl/8".parse().expect("ua"));
        let uri: Uri = "/a?b=c".parse().expect("uri");
        let e = Entry {
            remote: "10.1.2.3:5555".parse().expect("addr"),
            method: &Method::GET,
            uri: &uri,
            version: Version::HTTP_11,
            headers: &headers,
            status: 200,
            bytes: Some(12),
            duration: Duration::from_millis(1500),
            upstream: "default-web-80",
            upstream_addr: Some("10.244.0.5:8080".parse().expect("addr")),
        };
        let l = line(&e);
        assert!(l.starts_with("10.1.2.3 - - ["), "{l}");
        assert!(
            l.ends_with("\"GET /a?b=c HTTP/1.1\" 200 12 \"-\" \"curl/8\" 1.500 [default-web-80] 10.244.0.5:8080"),
            "{l}"
        );
    }
}
