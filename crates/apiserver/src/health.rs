//! `/livez`, `/readyz` and `/healthz` in upstream's format: `ok` when every check
//! passes; on a failure a 500 listing each check (`[+]ping ok`, `[-]etcd failed: reason
//! withheld`) and `readyz check failed`. The reason is withheld because these paths
//! answer anyone; it goes to the log instead. `?verbose` lists the checks when all
//! pass too, `?exclude=<check>` skips one (as upstream).
//!
//! The store check is called `etcd` whatever the backend, as in k3s (whose kine
//! answers for etcd): scripts written against upstream look for that name. It is
//! part of `/readyz` and `/healthz`, not of `/livez`: restarting an API server does not
//! bring its store back, so a store outage makes the server unready, never "dead".

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use http::HeaderValue;
use skiff_store::Backend;

use crate::request::Query;

/// What one check found.
enum Outcome {
    Passed,
    Excluded,
    Failed,
}

/// The response for `path` (one of the three), or `None` for any other path.
pub async fn serve(
    backend: &Arc<dyn Backend>,
    path: &str,
    query: Option<&str>,
) -> Option<Response> {
    let (name, with_store) = match path {
        "/livez" => ("livez", false),
        "/readyz" => ("readyz", true),
        "/healthz" => ("healthz", true),
        _ => return None,
    };
    let query = Query::parse(query);
    let mut excluded: Vec<&str> = query
        .all("exclude")
        .iter()
        .flat_map(|e| e.split(','))
        .filter(|e| !e.is_empty())
        .collect();
    let mut checks = vec![("ping", Outcome::Passed)];
    if with_store {
        checks.push(("etcd", store_check(backend, name, &mut excluded).await));
    }
    if let Some(at) = excluded.iter().position(|e| *e == "ping") {
        excluded.remove(at);
        checks[0].1 = Outcome::Excluded;
    }
    Some(render(
        name,
        &checks,
        &excluded,
        query.get("verbose").is_some(),
    ))
}

async fn store_check(backend: &Arc<dyn Backend>, name: &str, excluded: &mut Vec<&str>) -> Outcome {
    if let Some(at) = excluded.iter().position(|e| *e == "etcd") {
        excluded.remove(at);
        return Outcome::Excluded;
    }
    // `ready` may wait on the network (a few seconds at most).
    let backend = backend.clone();
    match tokio::task::spawn_blocking(move || backend.ready()).await {
        Ok(Ok(())) => Outcome::Passed,
        Ok(Err(e)) => {
            tracing::info!(error = %e, "{name} check etcd failed");
            Outcome::Failed
        }
        Err(e) => {
            tracing::warn!(error = %e, "{name} check etcd did not finish");
            Outcome::Failed
        }
    }
}

fn render(name: &str, checks: &[(&str, Outcome)], unknown: &[&str], verbose: bool) -> Response {
    let mut out = String::new();
    let mut failed = false;
    for (check, outcome) in checks {
        match outcome {
            Outcome::Passed => out.push_str(&format!("[+]{check} ok\n")),
            Outcome::Excluded => out.push_str(&format!("[+]{check} excluded: ok\n")),
            Outcome::Failed => {
                failed = true;
                out.push_str(&format!("[-]{check} failed: reason withheld\n"));
            }
        }
    }
    if !unknown.is_empty() {
        let names: Vec<String> = unknown.iter().map(|n| format!("{n:?}")).collect();
        out.push_str(&format!(
            "warn: some health checks cannot be excluded: no matches for {}\n",
            names.join(",")
        ));
    }
    let (code, body) = if failed {
        (500, format!("{out}{name} check failed\n"))
    } else if verbose {
        (200, format!("{out}{name} check passed\n"))
    } else {
        (200, "ok".to_owned())
    };
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::OK);
    let headers = r.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_store::{Error, KeyValue, ListResult, MemoryBackend, Result, Revision, Watch};

    /// A store that is never ready.
    struct Down(MemoryBackend);

    impl Backend for Down {
        fn get(&self, key: &str) -> Result<Option<KeyValue>> {
            self.0.get(key)
        }
        fn list(&self, p: &str, a: Option<&str>, l: Option<usize>) -> Result<ListResult> {
            self.0.list(p, a, l)
        }
        fn create(&self, key: &str, value: &[u8]) -> Result<KeyValue> {
            self.0.create(key, value)
        }
        fn update(&self, key: &str, value: &[u8], expected: Revision) -> Result<KeyValue> {
            self.0.update(key, value, expected)
        }
        fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
            self.0.delete(key, expected)
        }
        fn watch(&self, prefix: &str, after: Revision) -> Result<Watch> {
            self.0.watch(prefix, after)
        }
        fn compact(&self, revision: Revision) -> Result<()> {
            self.0.compact(revision)
        }
        fn current_revision(&self) -> Result<Revision> {
            self.0.current_revision()
        }
        fn compacted_revision(&self) -> Revision {
            self.0.compacted_revision()
        }
        fn ready(&self) -> Result<()> {
            Err(Error::Unavailable("etcd is unreachable (test)".into()))
        }
    }

    async fn get(backend: Arc<dyn Backend>, path: &str, query: Option<&str>) -> (u16, String) {
        let r = serve(&backend, path, query).await.expect("a health path");
        let code = r.status().as_u16();
        let body = axum::body::to_bytes(r.into_body(), 1 << 16)
            .await
            .expect("body");
        (code, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn upstream_format() {
        let up: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let down: Arc<dyn Backend> = Arc::new(Down(MemoryBackend::new()));
        assert_eq!(get(up.clone(), "/readyz", None).await, (200, "ok".into()));
        assert_eq!(
            get(up.clone(), "/readyz", Some("verbose")).await,
            (200, "[+]ping ok\n[+]etcd ok\nreadyz check passed\n".into())
        );
        let failed = (
            500,
            "[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed\n".into(),
        );
        assert_eq!(get(down.clone(), "/readyz", None).await, failed);
        assert_eq!(get(down.clone(), "/healthz", None).await.0, 500);
        // A store outage does not make the server "dead".
        assert_eq!(get(down.clone(), "/livez", None).await, (200, "ok".into()));
        assert_eq!(
            get(
                down.clone(),
                "/readyz",
                Some("verbose&exclude=etcd&exclude=nope")
            )
            .await,
            (
                200,
                "[+]ping ok\n[+]etcd excluded: ok\n\
                 warn: some health checks cannot be excluded: no matches for \"nope\"\n\
                 readyz check passed\n"
                    .into()
            )
        );
        assert!(serve(&up, "/readyz/etcd", None).await.is_none());
    }
}
