//! Prometheus metrics per Ingress, Service and status code, served on the
//! metrics port at `/metrics`.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub namespace: String,
    pub ingress: String,
    pub service: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub namespace: String,
    pub ingress: String,
    pub service: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub retries: Family<RouteLabels, Counter>,
    pub table_updates: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("skiff_ingress");
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        let retries = Family::<RouteLabels, Counter>::default();
        let table_updates = Counter::default();
        registry.register(
            "requests",
            "Requests served, by Ingress, Service and status code",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its response headers",
            duration.clone(),
        );
        registry.register(
            "upstream_retries",
            "Requests retried on another endpoint after a failed attempt",
            retries.clone(),
        );
        registry.register(
            "route_table_updates",
            "Route tables swapped in",
            table_updates.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            retries,
            table_updates,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// One route's series, found by label set once per route table rather than
/// on every request: a request then hashes and allocates nothing for its
/// metrics (bench/ingress: the label sets' clones and hashing were a visible
/// part of the proxy's own work).
#[derive(Debug)]
pub struct RouteMetrics {
    labels: RouteLabels,
    duration: OnceLock<Histogram>,
    retries: OnceLock<Counter>,
    /// By status code; a route sees few distinct codes.
    requests: Mutex<Vec<(u16, Counter)>>,
}

impl RouteMetrics {
    pub fn new(namespace: &str, ingress: &str, service: &str) -> Self {
        RouteMetrics {
            labels: RouteLabels {
                namespace: namespace.into(),
                ingress: ingress.into(),
                service: service.into(),
            },
            duration: OnceLock::new(),
            retries: OnceLock::new(),
            requests: Mutex::new(Vec::new()),
        }
    }

    /// Counts a request answered with `status` after `elapsed`.
    pub fn record(&self, metrics: &Metrics, status: u16, elapsed: Duration) {
        self.duration
            .get_or_init(|| metrics.duration.get_or_create(&self.labels).clone())
            .observe(elapsed.as_secs_f64());
        let Ok(mut by_status) = self.requests.lock() else {
            return;
        };
        if let Some((_, c)) = by_status.iter().find(|(s, _)| *s == status) {
            c.inc();
            return;
        }
        let labels = RequestLabels {
            namespace: self.labels.namespace.clone(),
            ingress: self.labels.ingress.clone(),
            service: self.labels.service.clone(),
            status,
        };
        let c = metrics.requests.get_or_create(&labels).clone();
        c.inc();
        by_status.push((status, c));
    }

    /// Counts a retry on another endpoint.
    pub fn retried(&self, metrics: &Metrics) {
        self.retries
            .get_or_init(|| metrics.retries.get_or_create(&self.labels).clone())
            .inc();
    }
}

/// Serves `/metrics` (and `/healthz`) on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let m = metrics.clone();
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let m = m.clone();
                    async move {
                        let (status, body) = match req.uri().path() {
                            "/metrics" => (200, m.encode()),
                            "/healthz" => (200, "ok".to_string()),
                            _ => (404, "404 page not found\n".to_string()),
                        };
                        hyper::Response::builder()
                            .status(status)
                            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                            .body(Full::new(Bytes::from(body)))
                    }
                });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_routes_series_are_the_familys() {
        let m = Metrics::new();
        let r = RouteMetrics::new("default", "web", "echo");
        let ms = Duration::from_millis(1);
        r.record(&m, 200, ms);
        r.record(&m, 200, ms);
        r.record(&m, 502, ms);
        r.retried(&m);
        // A second table's route for the same Ingress and Service adds to
        // the same series.
        RouteMetrics::new("default", "web", "echo").record(&m, 200, ms);
        let text = m.encode();
        let labels = r#"namespace="default",ingress="web",service="echo""#;
        for want in [
            format!("skiff_ingress_requests_total{{{labels},status=\"200\"}} 3"),
            format!("skiff_ingress_requests_total{{{labels},status=\"502\"}} 1"),
            format!("skiff_ingress_upstream_retries_total{{{labels}}} 1"),
            format!("skiff_ingress_request_duration_seconds_count{{{labels}}} 4"),
        ] {
            assert!(text.contains(&want), "{want} in\n{text}");
        }
    }
}
