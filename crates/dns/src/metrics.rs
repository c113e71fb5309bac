//! Metrics (`/metrics`, Prometheus text), liveness (`/health`) and readiness
//! (`/ready`: 200 once the first sync has built an index) on one HTTP port,
//! 9153 as CoreDNS's `prometheus` plugin.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::request::Transport;

type Labels = [(&'static str, &'static str); 3];

pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    duration: Histogram,
    forwarded: Counter,
    services: Gauge,
    programming: Histogram,
    pub ready: AtomicBool,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("skiff_dns");
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "requests",
            "DNS requests answered, by transport, query type and response code",
            requests.clone(),
        );
        // 10 µs to ~2.6 s: the answer path sits at the bottom, forwarding at the top.
        let duration = Histogram::new(exponential_buckets(0.00001, 4.0, 10));
        registry.register(
            "request_duration_seconds",
            "Time from receiving a request to sending its response",
            duration.clone(),
        );
        let forwarded = Counter::default();
        registry.register(
            "forwarded_requests",
            "Requests forwarded to upstream resolvers",
            forwarded.clone(),
        );
        let services = Gauge::default();
        registry.register("services", "Services in the index", services.clone());
        // 100 µs to ~1.6 s.
        let programming = Histogram::new(exponential_buckets(0.0001, 2.0, 15));
        registry.register(
            "programming_duration_seconds",
            "From a Service or EndpointSlice watch event to the swap of an index that answers it",
            programming.clone(),
        );
        Arc::new(Self {
            registry,
            requests,
            duration,
            forwarded,
            services,
            programming,
            ready: AtomicBool::new(false),
        })
    }

    pub fn observe(
        &self,
        transport: Transport,
        qtype: Option<RecordType>,
        rcode: ResponseCode,
        took: Duration,
    ) {
        self.requests
            .get_or_create(&labels(transport, qtype, rcode))
            .inc();
        self.duration.observe(took.as_secs_f64());
    }

    /// Hands a socket thread's batch to the shared metrics (and empties it).
    pub fn flush(&self, batch: &mut Batch) {
        for (transport, qtype, rcode, n) in batch.counts.drain(..) {
            self.requests
                .get_or_create(&labels(transport, qtype, rcode))
                .inc_by(n);
        }
        for took in batch.durations.drain(..) {
            self.duration.observe(took);
        }
    }

    pub fn forwarded(&self) {
        self.forwarded.inc();
    }

    pub fn set_services(&self, n: usize) {
        self.services.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn programmed(&self, took: Duration) {
        self.programming.observe(took.as_secs_f64());
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

fn labels(transport: Transport, qtype: Option<RecordType>, rcode: ResponseCode) -> Labels {
    let proto = match transport {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
    };
    let qtype: &'static str = qtype.map(Into::into).unwrap_or("none");
    [
        ("proto", proto),
        ("type", qtype),
        ("rcode", rcode_name(rcode)),
    ]
}

/// One UDP thread's observations not yet in the shared metrics. The shared
/// counters hash their labels and the histogram takes a lock on every update;
/// per query, from every thread at once, that costs more than the answer.
#[derive(Default)]
pub struct Batch {
    /// A handful of distinct label sets at most: a list beats a map.
    counts: Vec<(Transport, Option<RecordType>, ResponseCode, u64)>,
    durations: Vec<f64>,
}

impl Batch {
    pub fn observe(
        &mut self,
        transport: Transport,
        qtype: Option<RecordType>,
        rcode: ResponseCode,
        took: Duration,
    ) {
        match self
            .counts
            .iter_mut()
            .find(|(t, q, r, _)| *t == transport && *q == qtype && *r == rcode)
        {
            Some((.., n)) => *n += 1,
            None => self.counts.push((transport, qtype, rcode, 1)),
        }
        self.durations.push(took.as_secs_f64());
    }

    /// Observations waiting.
    pub fn len(&self) -> usize {
        self.durations.len()
    }
}

fn rcode_name(r: ResponseCode) -> &'static str {
    match r {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::BADVERS => "BADVERS",
        _ => "OTHER",
    }
}

/// Serves metrics and health until the listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/metrics", get(render))
        .route("/health", get(|| async { "OK" }))
        .route("/ready", get(ready))
        .with_state(metrics);
    axum::serve(listener, app).await
}

async fn render(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        m.render(),
    )
}

async fn ready(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    if m.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "OK")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not synced")
    }
}
