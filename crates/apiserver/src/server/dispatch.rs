//! The dispatcher: every request from authentication and authorization to the
//! handler its URL names. Apart from the verbs, which it hands resource
//! requests to, and from start-up, which only mounts it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::{json, Value};
use skiff_api::StatusError;

use super::verbs::{resource_request, Writer};
use super::Api;
use crate::authn::{self, Action};
use crate::request::{self, Query, Route};
use crate::{discovery, health, join, openapi, response, server_join};

const VERSION: &str = "v1.33.0-skiff";
fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": VERSION,
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "n/a (rust)",
        "compiler": "rustc",
        "platform": "linux/amd64",
    })
}

fn text(code: u16, s: impl Into<String>) -> Response {
    let mut r = Response::new(Body::from(s.into()));
    *r.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::OK);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Every request: its `Audit-ID` echoed, and its audit record kept (with a
/// `Panic` event if a handler panics) when the log is on.
pub(super) async fn dispatch(State(api): State<Arc<Api>>, req: Request) -> Response {
    use futures::FutureExt;
    let audit_id = crate::audit::request_id(req.headers());
    let mut resp = match api.auditor.clone() {
        None => serve(api, req, None).await,
        Some(auditor) => {
            let mut record = crate::audit::Record::new(auditor, &audit_id, &req);
            let served = std::panic::AssertUnwindSafe(serve(api, req, Some(&mut record)));
            match served.catch_unwind().await {
                Ok(resp) => record.finish(resp).await,
                Err(panic) => {
                    record.panicked(&crate::audit::panic_message(panic.as_ref()));
                    std::panic::resume_unwind(panic)
                }
            }
        }
    };
    crate::audit::set_header(&mut resp, &audit_id);
    resp
}

/// How much of a refused request's body is read before the refusal is sent.
const REFUSED_BODY_LIMIT: usize = 64 * 1024;
/// How long a refused request's body is waited for.
const REFUSED_BODY_WAIT: Duration = Duration::from_secs(1);

/// A 401 or 403 for a request whose body nobody read yet. The body is read first
/// (bounded in size and time): answering while an HTTP/2 client is still sending
/// it makes the server reset the stream, and curl then reports "Stream error in
/// the HTTP/2 framing layer" instead of the answer (an HTTP/1.1 client would lose
/// its keep-alive connection).
async fn refuse_unread(body: Body, e: &StatusError) -> Response {
    use http_body_util::BodyExt;
    let read = http_body_util::Limited::new(body, REFUSED_BODY_LIMIT).collect();
    let _ = tokio::time::timeout(REFUSED_BODY_WAIT, read).await;
    response::error(e)
}

/// How long a node's refused request waits for the node graph to change before
/// it is decided again ([`crate::authz::node::NodeGraph::changed`]).
const GRAPH_LAG_WAIT: Duration = Duration::from_millis(200);

async fn serve(
    api: Arc<Api>,
    req: Request,
    mut audit: Option<&mut crate::audit::Record>,
) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    match path.as_str() {
        // What upstream's system:public-info-viewer grants everyone.
        "/version" | "/version/" => return response::json(200, &version()),
        "/healthz" | "/livez" | "/readyz" => {
            if let Some(r) = health::serve(api.objects.backend(), &path, parts.uri.query()).await {
                return r;
            }
        }
        join::CACERTS_PATH => return join::cacerts(&api, &parts.method),
        server_join::BOOTSTRAP_PATH => {
            return server_join::serve(&api.data_dir, &parts.method, &parts.headers)
        }
        _ => {}
    }
    let user = match authn::authenticate_request(&api, &parts).await {
        Ok(u) => u,
        Err(e) => return refuse_unread(body, &e).await,
    };
    if let Some(record) = audit.as_deref_mut() {
        record.authenticated(&user);
    }
    if path == join::JOIN_PATH {
        if let Err(e) = authn::authorize(&user, &Action::Join) {
            return refuse_unread(body, &e).await;
        }
        let resp = join::serve(&api, &user, &parts.method, body).await;
        api.metrics.observe(
            "create",
            "join",
            resp.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
        return resp;
    }
    if path == crate::component_certs::NODE_COMPONENTS_PATH {
        // Nodes only, each for itself: checked there, not by RBAC.
        return crate::component_certs::serve(&api, &user, &parts.method, body).await;
    }
    let query = Query::parse(parts.uri.query());
    // Authorization decides on the index as it is now: never a store read.
    let index = api.rbac.get();
    let decide = |user: authn::User, audit: Option<&mut crate::audit::Record>| {
        let graph = &api.node_graph;
        authorize(index.as_deref(), graph, user, &parts, &path, &query, audit)
    };
    let authorized = decide(user, audit.as_deref_mut());
    // A node refused may be asking about a pod the graph has not seen yet.
    let authorized = match authorized {
        Err(mut refused)
            if refused
                .user
                .as_ref()
                .is_some_and(|u| u.node_name().is_some()) =>
        {
            api.node_graph.changed(GRAPH_LAG_WAIT).await;
            match refused.user.take() {
                Some(user) => decide(user, audit.as_deref_mut()),
                None => Err(refused),
            }
        }
        decided => decided,
    };
    let user = match authorized {
        Ok(u) => u,
        Err(refused) => return refuse_unread(body, &refused.status).await,
    };
    let body = match audit {
        Some(record) => match record.keep_body(body).await {
            Ok(body) => body,
            Err(e) => return response::error(&e),
        },
        None => body,
    };
    if let Some(route) = crate::authz::access_review::route(&path) {
        let (method, headers) = (&parts.method, &parts.headers);
        let authorizers = crate::authz::policy::Authorizers {
            rbac: index.as_deref(),
            nodes: Some(&api.node_graph),
        };
        return crate::authz::access_review::serve(
            authorizers,
            &user,
            route,
            method,
            headers,
            body,
        )
        .await;
    }
    // TokenReview, SelfSubjectReview and the OIDC documents: not stored resources.
    if let Some(route) = crate::serviceaccount::route(&path) {
        let (method, headers) = (&parts.method, &parts.headers);
        return crate::serviceaccount::serve(&api, &user, route, method, headers, body).await;
    }
    if path == "/metrics" {
        return text(200, api.metrics.render());
    }
    if path == "/openapi/v2" {
        // Protobuf for clients that ask for it (kubectl), JSON otherwise, as upstream.
        let wants_protobuf = parts
            .headers
            .get_all(http::header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("protobuf"));
        let (body, content_type) = if wants_protobuf {
            // Go's mime parser rejects the spec's own media type, so upstream sends this.
            (crate::openapi_v2::protobuf(), "application/octet-stream")
        } else {
            (crate::openapi_v2::json(), "application/json")
        };
        let mut r = Response::new(Body::from(body));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        );
        return r;
    }
    if path == "/openapi/v3" {
        return response::json(200, &openapi::index());
    }
    if let Some(rest) = path.strip_prefix("/openapi/v3/") {
        return match openapi::document(rest) {
            Some(doc) => response::json(200, &doc),
            None => response::error(&StatusError::no_such_resource()),
        };
    }
    // pods/proxy, services/proxy: relayed to a pod (proxy.rs), body and all.
    if let Some(target) = crate::proxy::route(&path) {
        let plural = target.plural;
        let resp = crate::proxy::serve(&api, target, parts, body)
            .await
            .unwrap_or_else(|e| response::error(&e));
        let code = resp.status().as_u16();
        api.metrics
            .observe("connect", plural, code, started.elapsed().as_secs_f64());
        return resp;
    }
    // pods/log, pods/exec, pods/attach: forwarded to the node agent (podstream.rs);
    // they need the whole request (the WebSocket upgrade lives in its extensions).
    if path.contains("/pods/") {
        if let Ok(Route::Resource(t)) = request::route(&path) {
            if crate::portforward::handles(&t) {
                let authorizers = crate::authz::policy::Authorizers {
                    rbac: index.as_deref(),
                    nodes: Some(&api.node_graph),
                };
                let checked = crate::portforward::authorize_websocket_create(
                    authorizers,
                    &user,
                    &parts,
                    &path,
                    &query,
                );
                let resp = match checked {
                    Ok(()) => crate::portforward::serve(&api, &t, parts).await,
                    Err(e) => Err(e),
                }
                .unwrap_or_else(|e| response::error(&e));
                let code = resp.status().as_u16();
                api.metrics
                    .observe("connect", "pods", code, started.elapsed().as_secs_f64());
                return resp;
            }
            if crate::podstream::handles(&t) {
                let resp = crate::podstream::serve(&api, &t, parts)
                    .await
                    .unwrap_or_else(|e| response::error(&e));
                let verb = if t.subresource.as_deref() == Some("log") {
                    "get"
                } else {
                    "connect"
                };
                api.metrics.observe(
                    verb,
                    "pods",
                    resp.status().as_u16(),
                    started.elapsed().as_secs_f64(),
                );
                return resp;
            }
        }
    }
    let (verb, resource, resp) = match request::route(&path) {
        Err(e) => ("", String::new(), response::error(&e)),
        Ok(Route::Discovery(d)) => {
            match discovery::serve(&d, &parts.headers, &api.server_address) {
                Ok((doc, aggregated)) => {
                    let mut r = response::json(200, &doc);
                    if aggregated {
                        r.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static(discovery::AGGREGATED_V2),
                        );
                    }
                    ("discovery", String::new(), r)
                }
                Err(e) => ("discovery", String::new(), response::error(&e)),
            }
        }
        Ok(Route::Resource(t)) => {
            let who = Writer {
                user: &user,
                index: index.as_deref(),
            };
            let (verb, resp) =
                resource_request(&api, &who, &t, &parts.method, &query, &parts.headers, body).await;
            (verb, t.resource.plural.to_string(), resp)
        }
    };
    if verb != "watch" {
        api.metrics.observe(
            verb,
            &resource,
            resp.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
    }
    resp
}

/// The user a request acts as (impersonated, if it asked) once it is
/// allowed; upstream's 403 otherwise, before anything is read or written.
/// A request refused by [`authorize`]: why, and the user back when the
/// decision was the authorizers' (a node's may be decided again).
struct Refused {
    status: StatusError,
    user: Option<authn::User>,
}

impl From<StatusError> for Box<Refused> {
    fn from(status: StatusError) -> Self {
        Box::new(Refused { status, user: None })
    }
}

fn authorize(
    index: Option<&crate::authz::RbacIndex>,
    nodes: &crate::authz::node::NodeGraph,
    user: authn::User,
    parts: &http::request::Parts,
    path: &str,
    query: &Query,
    mut audit: Option<&mut crate::audit::Record>,
) -> Result<authn::User, Box<Refused>> {
    use crate::authz::{impersonate, policy, request_info};
    let user = if impersonate::requested(&parts.headers) {
        let as_user = impersonate::impersonate(index, &user, &parts.headers)?;
        if let Some(r) = audit.as_deref_mut() {
            r.impersonated(&as_user);
        }
        as_user
    } else if user.in_group(crate::authz::SUPERUSER_GROUP) {
        // Allowed whatever it asks: the admin path skips reading the request.
        if let Some(r) = audit {
            r.decided(true, "");
        }
        return Ok(user);
    } else {
        user
    };
    let attrs = request_info::attributes(user, &parts.method, path, query);
    // policy::check, with the decision's reason kept for the audit log.
    let authorizers = policy::Authorizers {
        rbac: index,
        nodes: Some(nodes),
    };
    let decision = policy::decide(authorizers, &attrs);
    if let Some(r) = audit {
        r.decided(decision.is_allowed(), decision.reason());
    }
    if !decision.is_allowed() {
        return Err(Box::new(Refused {
            status: crate::authz::message::forbidden(&attrs, decision.reason()),
            user: Some(attrs.user),
        }));
    }
    Ok(attrs.user)
}
