//! The access log: one line per request, in nginx's combined format followed by
//! what ingress-nginx adds (request time, upstream name and address), on the
//! process's stderr beside its other logs and switched by the same filter (the
//! target [`TARGET`]).
//!
//! Lines are not written through `tracing`: a write to stderr per request, under
//! its lock, cost a third of the proxy's throughput (bench/ingress). They are
//! appended to a buffer and written by one thread every [`FLUSH_EVERY`], as nginx's
//! `access_log ... buffer= flush=` does; a line appears at most that much later.

use std::cell::RefCell;
use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Mutex, OnceLock};
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
    pub referer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
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
pub fn line(e: &Entry<'_>, time_local: &str) -> String {
    let mut out = String::with_capacity(160);
    write_line(&mut out, e, time_local);
    out
}

/// Appends [`line`] to `out`, formatting numbers and addresses in place.
fn write_line(out: &mut String, e: &Entry<'_>, time_local: &str) {
    use std::fmt::Write as _;
    let uri = e.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let _ = write!(
        out,
        "{} - - [{}] \"{} {} {}\" {} ",
        e.remote.ip(),
        time_local,
        e.method,
        uri,
        version(e.version),
        e.status,
    );
    let _ = match e.bytes {
        Some(b) => write!(out, "{b}"),
        None => out.write_str("-"),
    };
    let _ = write!(
        out,
        " \"{}\" \"{}\" {:.3} [{}] ",
        e.referer.unwrap_or("-"),
        e.user_agent.unwrap_or("-"),
        e.duration.as_secs_f64(),
        e.upstream,
    );
    let _ = match e.upstream_addr {
        Some(a) => write!(out, "{a}"),
        None => out.write_str("-"),
    };
}

/// Whether the access log is on (the log filter enables [`TARGET`]).
pub fn enabled() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::INFO)
}

/// A header's value for the log, when it is text.
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The lines' timestamp (UTC, to the second: lines are written in batches).
const STAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// How often buffered lines are written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Lines beyond this many bytes waiting are dropped (and counted) rather than
/// letting a stalled stderr grow memory.
const BUFFER_LIMIT: usize = 8 << 20;

#[derive(Default)]
struct Pending {
    text: String,
    dropped: u64,
}

/// The buffer, and the thread that empties it, started by the first line.
fn pending() -> &'static Mutex<Pending> {
    static PENDING: OnceLock<&'static Mutex<Pending>> = OnceLock::new();
    PENDING.get_or_init(|| {
        let buffer: &'static Mutex<Pending> = Box::leak(Box::default());
        let spawned = std::thread::Builder::new()
            .name("ingress-access-log".into())
            .spawn(move || loop {
                std::thread::sleep(FLUSH_EVERY);
                flush(buffer);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "access log writer; lines will not be written");
        }
        buffer
    })
}

fn flush(buffer: &Mutex<Pending>) {
    let taken = match buffer.lock() {
        Ok(mut p) => std::mem::take(&mut *p),
        Err(_) => return,
    };
    let mut text = taken.text;
    if taken.dropped > 0 {
        text.push_str(&format!(
            "{}  WARN {TARGET}: {} access log lines dropped (stderr did not keep up)\n",
            chrono::Utc::now().format(STAMP_FORMAT),
            taken.dropped
        ));
    }
    if !text.is_empty() {
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

/// A second, as the line prefix and as `$time_local`.
type Formatted = (i64, Rc<str>, Rc<str>);

/// The times a line carries, formatted once per second: the line prefix's
/// (UTC, as the other logs') and nginx's `$time_local`.
fn times() -> (Rc<str>, Rc<str>) {
    thread_local! {
        static CACHED: RefCell<Option<Formatted>> = const { RefCell::new(None) };
    }
    // The second from the system clock; the local time (whose offset chrono
    // looks up, reading `TZ`, on every call) only when the second changes.
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    CACHED.with(|c| {
        let mut c = c.borrow_mut();
        match &*c {
            Some((cached, stamp, local)) if *cached == second => (stamp.clone(), local.clone()),
            _ => {
                let now = chrono::Local::now();
                let stamp: Rc<str> = now
                    .with_timezone(&chrono::Utc)
                    .format(STAMP_FORMAT)
                    .to_string()
                    .into();
                let local: Rc<str> = now.format("%d/%b/%Y:%H:%M:%S %z").to_string().into();
                *c = Some((now.timestamp(), stamp.clone(), local.clone()));
                (stamp, local)
            }
        }
    })
}

/// Queues `e`'s line (the caller checked [`enabled`]).
pub fn log(e: &Entry<'_>) {
    thread_local! {
        static LINE: RefCell<String> = RefCell::new(String::with_capacity(256));
    }
    let (stamp, local) = times();
    LINE.with(|l| {
        let mut l = l.borrow_mut();
        l.clear();
        l.push_str(&stamp);
        l.push_str("  INFO ");
        l.push_str(TARGET);
        l.push_str(": ");
        write_line(&mut l, e, &local);
        l.push('\n');
        let Ok(mut p) = pending().lock() else {
            return;
        };
        if p.text.len() + l.len() > BUFFER_LIMIT {
            p.dropped += 1;
            return;
        }
        p.text.push_str(&l);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_format_and_upstream() {
        let uri: Uri = "/a?b=c".parse().expect("uri");
        let e = Entry {
            remote: "10.1.2.3:5555".parse().expect("addr"),
            method: &Method::GET,
            uri: &uri,
            version: Version::HTTP_11,
            referer: None,
            user_agent: Some("curl/8"),
            status: 200,
            bytes: Some(12),
            duration: Duration::from_millis(1500),
            upstream: "default-web-80",
            upstream_addr: Some("10.244.0.5:8080".parse().expect("addr")),
        };
        let l = line(&e, "07/Dec/2026:14:00:00 +0000");
        assert!(
            l.starts_with("10.1.2.3 - - [07/Dec/2026:14:00:00 +0000] "),
            "{l}"
        );
        assert!(
            l.ends_with("\"GET /a?b=c HTTP/1.1\" 200 12 \"-\" \"curl/8\" 1.500 [default-web-80] 10.244.0.5:8080"),
            "{l}"
        );
    }
}
