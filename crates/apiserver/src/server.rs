//! The HTTPS server: authentication ([`crate::authn`]), the dispatcher from URL
//! to verb, and the ordered start-up (credentials, listener, built-in
//! namespaces, the default join token, lifecycle tasks).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use http::{HeaderMap, Method};
use serde_json::{json, Value};
use skiff_api::registry;
use skiff_api::StatusError;
use skiff_store::Backend;
use tokio::sync::Notify;

use crate::authn::{self, Action};
use crate::delete::{self, DeleteOptions};
use crate::objects::Objects;
use crate::request::{self, Query, Route, Target};
use crate::rest::{self, WriteOptions};
use crate::{
    body, discovery, health, join, metrics::Metrics, namespaces, openapi, pki, response,
    server_join, watch,
};

/// How the API server is run.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// How often superseded history is compacted away.
    pub compact_interval: Duration,
    /// How many revisions of history compaction keeps (watchers further behind get 410).
    pub compact_keep: i64,
    /// Where Service ClusterIPs, node ports and load-balancer addresses come from.
    pub services: crate::services::Settings,
    /// Mutating admission of new objects beyond defaulting.
    pub admission: AdmissionSettings,
    /// Names and addresses the serving certificate covers besides the listen
    /// address (k3s's `--tls-san`): what nodes on other machines dial.
    pub tls_sans: Vec<String>,
    /// The audit log (`--audit-log-path`, `--audit-policy-file`); `None`: off.
    pub audit: Option<crate::audit::Settings>,
}

/// What admission adds to new objects (upstream's admission plugin flags).
#[derive(Debug, Clone, Copy)]
pub struct AdmissionSettings {
    /// `DefaultTolerationSeconds`: how long a new pod tolerates its node being
    /// not ready (`--default-not-ready-toleration-seconds`).
    pub not_ready_toleration_seconds: i64,
    /// ... or unreachable (`--default-unreachable-toleration-seconds`).
    pub unreachable_toleration_seconds: i64,
}

impl Default for AdmissionSettings {
    fn default() -> Self {
        Self {
            not_ready_toleration_seconds: skiff_api::admission::DEFAULT_TOLERATION_SECONDS,
            unreachable_toleration_seconds: skiff_api::admission::DEFAULT_TOLERATION_SECONDS,
        }
    }
}

/// Shared state of every request.
pub struct Api {
    pub objects: Objects,
    /// Lists, gets and watches are served from here ([`crate::cache`]).
    pub cache: crate::cache::Caches,
    pub metrics: Metrics,
    pub admin_token: String,
    /// The cluster CA: served at `/cacerts`, signs joining nodes' certificates.
    pub ca: pki::Ca,
    /// How the API server dials node agents' streaming endpoints: their serving
    /// certificates verified against the cluster CA, presenting
    /// `apiserver-kubelet-client`.
    pub kubelet_tls: Arc<rustls::ClientConfig>,
    pub server_address: String,
    /// Wakes the namespace lifecycle task when a namespace starts terminating.
    pub namespaces_changed: Notify,
    /// Service ClusterIP / NodePort / LoadBalancer allocations.
    pub services: crate::services::State,
    pub admission: AdmissionSettings,
    /// The data directory: what a joining server is handed comes from its files.
    pub data_dir: PathBuf,
    /// Signs and verifies service-account tokens (`<data-dir>/sa.key`).
    pub service_account_keys: crate::serviceaccount::Keys,
    /// The RBAC index requests are authorized with, kept current by
    /// [`crate::authz::live::run`].
    pub rbac: crate::authz::live::LiveIndex,
    /// What each node's pods reference, for the Node authorizer, kept current
    /// by [`crate::authz::node::live::run`].
    pub node_graph: crate::authz::node::NodeGraph,
    /// The namespaces a create checks, kept current by
    /// [`crate::namespace_cache::run`].
    pub namespace_cache: crate::namespace_cache::NamespaceCache,
    /// What service-account tokens are bound to, as the store has it now.
    pub bound_objects: crate::serviceaccount::bound_objects::BoundObjects,
    /// The audit log, when one is written.
    pub auditor: Option<Arc<crate::audit::Auditor>>,
}

/// A started API server.
pub struct Running {
    pub url: String,
    pub kubeconfig: PathBuf,
    pub addr: SocketAddr,
    /// The default join token for other nodes (`K10...::<id>.<secret>`), also in
    /// [`Running::join_token_file`]; `None` once it was deleted or has expired.
    pub join_token: Option<String>,
    pub join_token_file: PathBuf,
    /// What another `skiff server` on the same store joins with (`--token`).
    pub server_token: String,
    pub server_token_file: PathBuf,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Serves until the listener fails or [`Running::shutdown`] is called.
    pub async fn wait(self) -> Result<()> {
        self.task.await.context("server task panicked")??;
        Ok(())
    }

    /// A handle that stops the server gracefully from elsewhere.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.handle.clone())
    }
}

#[derive(Clone)]
pub struct Stopper(axum_server::Handle<SocketAddr>);

impl Stopper {
    pub fn stop(&self) {
        self.0.graceful_shutdown(Some(Duration::from_secs(1)));
    }
}

const VERSION: &str = "v1.33.0-skiff";

/// How long start-up waits for the first RBAC index before serving anyway.
const RBAC_READY_TIMEOUT: Duration = Duration::from_secs(10);

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
async fn dispatch(State(api): State<Arc<Api>>, req: Request) -> Response {
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
    // A node refused may be asking about a pod the graph has not seen yet.
    let node = user.node_name().is_some().then(|| user.clone());
    let mut authorized = authorize(
        index.as_deref(),
        &api.node_graph,
        user,
        &parts,
        &path,
        &query,
        audit.as_deref_mut(),
    );
    if let (Err(e), Some(node)) = (&authorized, node) {
        if e.code == 403 {
            api.node_graph.changed(GRAPH_LAG_WAIT).await;
            authorized = authorize(
                index.as_deref(),
                &api.node_graph,
                node,
                &parts,
                &path,
                &query,
                audit.as_deref_mut(),
            );
        }
    }
    let user = match authorized {
        Ok(u) => u,
        Err(e) => return refuse_unread(body, &e).await,
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
fn authorize(
    index: Option<&crate::authz::RbacIndex>,
    nodes: &crate::authz::node::NodeGraph,
    user: authn::User,
    parts: &http::request::Parts,
    path: &str,
    query: &Query,
    mut audit: Option<&mut crate::audit::Record>,
) -> Result<authn::User, StatusError> {
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
        return Err(crate::authz::message::forbidden(&attrs, decision.reason()));
    }
    Ok(attrs.user)
}

/// Who writes, for escalation checks on RBAC objects.
struct Writer<'a> {
    user: &'a authn::User,
    index: Option<&'a crate::authz::RbacIndex>,
}

impl Writer<'_> {
    /// Refuses an RBAC object that would grant more than the writer holds.
    fn check_escalation(&self, t: &Target, obj: &Value) -> Result<(), StatusError> {
        use crate::authz::escalation;
        match escalation::Kind::of(t.resource) {
            Some(kind) => escalation::check(
                self.index,
                self.user,
                t.resource,
                kind,
                t.namespace.as_deref().unwrap_or(""),
                obj,
            ),
            None => Ok(()),
        }
    }
}

async fn resource_request(
    api: &Api,
    who: &Writer<'_>,
    t: &Target,
    method: &Method,
    q: &Query,
    headers: &HeaderMap,
    body: Body,
) -> (&'static str, Response) {
    let verb = match (method.as_str(), t.name.is_some()) {
        ("GET", true) if q.flag("watch") => "watch",
        ("GET", true) => "get",
        ("GET", false) if q.flag("watch") => "watch",
        ("GET", false) => "list",
        ("POST", false) => "create",
        // A subresource created on an object (pods/<name>/eviction,
        // serviceaccounts/<name>/token).
        ("POST", true) if matches!(t.subresource.as_deref(), Some("eviction" | "token")) => {
            "create"
        }
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return ("", response::error(&StatusError::method_not_allowed())),
    };
    if !t.resource.verbs.contains(&verb) && verb != "watch" {
        return (verb, response::error(&StatusError::method_not_allowed()));
    }
    let result = run_verb(api, who, t, verb, q, headers, body).await;
    (verb, result.unwrap_or_else(|e| response::error(&e)))
}

async fn run_verb(
    api: &Api,
    who: &Writer<'_>,
    t: &Target,
    verb: &str,
    q: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, StatusError> {
    if let Some(sub) = t.subresource.as_deref() {
        let known = match sub {
            "status" => t.resource.status,
            "scale" => t.resource.scale,
            "finalize" => t.resource.kind == "Namespace",
            "eviction" => t.resource.kind == "Pod" && verb == "create",
            "token" => t.resource.kind == "ServiceAccount" && verb == "create",
            "approval" => t.resource.kind == "CertificateSigningRequest" && verb == "update",
            "ephemeralcontainers" => {
                t.resource.kind == "Pod" && matches!(verb, "get" | "update" | "patch")
            }
            _ => false,
        };
        if !known {
            return Err(StatusError::no_such_resource());
        }
    }
    crate::node_restriction::admit(api, who.user, t, verb).await?;
    match verb {
        "get" => rest::get_response(api, t, q, headers).await,
        "list" => rest::list(api, t, q, headers).await,
        // A watch on a single object is its collection's watch filtered by name.
        "watch" => watch::watch(api, t, q, headers).await,
        "create" if t.subresource.as_deref() == Some("eviction") => {
            let bytes = body::read(body).await?;
            crate::eviction::evict(api, t, q, headers, &bytes).await
        }
        "create" if t.subresource.as_deref() == Some("token") => {
            let bytes = body::read(body).await?;
            crate::node_restriction::admit_token(api, who.user, t, headers, &bytes).await?;
            crate::serviceaccount::token_request::create(api, t, headers, &bytes).await
        }
        "create" => {
            let bytes = body::read(body).await?;
            let opts = WriteOptions::from_request(q, headers)?;
            let (mut obj, warnings) = rest::decode_body(t, headers, &bytes, &opts)?;
            if t.resource.kind == "CertificateSigningRequest" {
                crate::csr::admit_create(who.user, t.resource, &mut obj)?;
            }
            who.check_escalation(t, &obj)?;
            crate::node_restriction::admit_create(who.user, t, &obj)?;
            let created = rest::create(api, t, obj, &opts).await?;
            let created = rest::render_one(headers, q, t.resource, created);
            Ok(response::with_warnings(
                response::json(201, &created),
                &warnings,
            ))
        }
        "update" if t.subresource.as_deref() == Some("approval") => {
            let bytes = body::read(body).await?;
            crate::csr::approve(api, who.user, who.index, t, headers, &bytes, q).await
        }
        "update" => {
            let bytes = body::read(body).await?;
            let opts = WriteOptions::from_request(q, headers)?;
            let (obj, warnings) = rest::decode_body(t, headers, &bytes, &opts)?;
            who.check_escalation(t, &obj)?;
            let updated = crate::node_restriction::update(api, who.user, t, obj, &opts).await?;
            let updated = rest::render_one(headers, q, t.resource, updated);
            Ok(response::with_warnings(
                response::json(200, &updated),
                &warnings,
            ))
        }
        "patch" => {
            let bytes = body::read(body).await?;
            let check = |obj: &Value| who.check_escalation(t, obj);
            let (code, obj) =
                crate::node_restriction::patch(api, who.user, t, q, headers, &bytes, &check)
                    .await?;
            let obj = rest::render_one(headers, q, t.resource, obj);
            Ok(response::json(code, &obj))
        }
        "delete" => {
            let bytes = body::read(body).await?;
            let opts = DeleteOptions::parse(q, &body::content_type(headers), &bytes)?;
            let obj = delete::delete(api, t, &opts).await?;
            let obj = rest::render_one(headers, q, t.resource, obj);
            Ok(response::json(200, &obj))
        }
        "deletecollection" => {
            let bytes = body::read(body).await?;
            let opts = DeleteOptions::parse(q, &body::content_type(headers), &bytes)?;
            Ok(response::json(
                200,
                &delete::delete_collection(api, t, q, &opts).await?,
            ))
        }
        _ => Err(StatusError::method_not_allowed()),
    }
}

/// Namespaces every cluster has from the start.
pub const BUILTIN_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

async fn bootstrap(api: &Api) -> Result<()> {
    let ns = registry::lookup("", "v1", "namespaces").context("namespaces resource")?;
    let opts = WriteOptions {
        dry_run: false,
        validation: body::FieldValidation::Strict,
        field_manager: None,
    };
    for name in BUILTIN_NAMESPACES {
        if let Some(old) = api
            .objects
            .get_opt(ns, None, name)
            .await
            .map_err(|e| anyhow::anyhow!(e))?
        {
            // Stored before namespaces carried their name label: an update
            // through the strategy puts it on.
            if old
                .pointer("/metadata/labels")
                .and_then(|l| l.get(crate::strategy::NAMESPACE_NAME_LABEL))
                .is_none()
            {
                let t = Target {
                    resource: ns,
                    namespace: None,
                    name: Some((*name).to_string()),
                    subresource: None,
                };
                rest::patch_with(api, &t, &opts, |cur| Ok(cur.clone()))
                    .await
                    .map_err(|e| anyhow::anyhow!("labelling namespace {name}: {e}"))?;
            }
            continue;
        }
        let t = Target {
            resource: ns,
            namespace: None,
            name: None,
            subresource: None,
        };
        match rest::create(api, &t, json!({"metadata": {"name": name}}), &opts).await {
            Ok(_) => {}
            Err(e) if e.reason == "AlreadyExists" => {}
            Err(e) => return Err(anyhow::anyhow!("creating namespace {name}: {e}")),
        }
    }
    crate::services::builtin::ensure(api).await;
    crate::rbac::ensure(api).await?;
    Ok(())
}

/// Turns off Nagle's algorithm on every accepted connection: watch events and
/// list pages go out in several writes, and without it each waits ~40 ms for the
/// client's delayed ACK (measured in bench/api).
#[derive(Clone, Copy)]
struct NoDelay;

impl<S: Send + 'static> axum_server::accept::Accept<tokio::net::TcpStream, S> for NoDelay {
    type Stream = tokio::net::TcpStream;
    type Service = S;
    type Future = std::future::Ready<std::io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: tokio::net::TcpStream, service: S) -> Self::Future {
        std::future::ready(stream.set_nodelay(true).map(|()| (stream, service)))
    }
}

/// Compacts the store's history periodically, as kube-apiserver asks etcd to.
async fn compactor(api: Arc<Api>, every: Duration, keep: i64) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let backend = api.objects.backend().clone();
        let r = tokio::task::spawn_blocking(move || {
            let target = backend.current_revision()? - keep;
            if target > backend.compacted_revision() {
                backend.compact(target)?;
            }
            Ok::<_, skiff_store::Error>(target)
        })
        .await;
        match r {
            Ok(Ok(rev)) => tracing::debug!(revision = rev, "compacted"),
            Ok(Err(e)) => tracing::warn!(error = %e, "compaction failed"),
            Err(e) => tracing::warn!(error = %e, "compaction task failed"),
        }
    }
}

/// Starts the API server: credentials, listener, built-in objects, then serving.
pub async fn start(config: Config, backend: Arc<dyn Backend>) -> Result<Running> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let host = match addr.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let url = format!("https://{host}:{}", addr.port());
    let mut sans = vec![addr.ip().to_string()];
    sans.extend(config.tls_sans.iter().cloned());
    let creds = pki::ensure(&config.data_dir, &url, &sans)?;
    let kubelet_tls = crate::podstream::client_tls(&creds)?;
    let server_token = server_join::ensure_server_token(&config.data_dir, &creds.ca_pem)?;
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(
        crate::x509::server_config(&creds.ca_pem, &creds.cert_pem, &creds.key_pem)?,
    ));

    let metrics = Metrics::default();
    let auditor = match &config.audit {
        Some(settings) => Some(Arc::new(crate::audit::Auditor::start(
            settings,
            metrics.audit.clone(),
        )?)),
        None => None,
    };
    let api = Arc::new(Api {
        cache: crate::cache::Caches::new(backend.clone()),
        objects: Objects::new(backend),
        metrics,
        admin_token: creds.admin_token.clone(),
        ca: creds.ca(),
        kubelet_tls,
        server_address: format!("{host}:{}", addr.port()),
        namespaces_changed: Notify::new(),
        services: crate::services::State::new(&config.services),
        admission: config.admission,
        data_dir: config.data_dir.clone(),
        service_account_keys: crate::serviceaccount::Keys::ensure(&config.data_dir)?,
        rbac: Default::default(),
        node_graph: Default::default(),
        namespace_cache: Default::default(),
        bound_objects: Default::default(),
        auditor,
    });
    // The watch cache's feed follows the store from now on.
    api.cache.start();
    crate::services::load(&api)
        .await
        .map_err(|e| anyhow::anyhow!("loading service allocations: {e}"))?;
    // A store that has no kube-system yet is new: it gets a new default join token.
    let fresh = {
        let ns = registry::lookup("", "v1", "namespaces").context("namespaces resource")?;
        api.objects
            .get_opt(ns, None, "kube-system")
            .await
            .map_err(|e| anyhow::anyhow!(e))?
            .is_none()
    };
    bootstrap(&api).await?;
    // Requests are authorized with the index from the first listing on: wait
    // for it (the store just answered bootstrap) rather than refuse everyone
    // but system:masters for the first moments.
    tokio::spawn(crate::authz::live::run(api.clone()));
    tokio::spawn(crate::authz::node::live::run(api.clone()));
    if !api.rbac.wait_ready(RBAC_READY_TIMEOUT).await {
        tracing::warn!("RBAC index not built yet; only system:masters is allowed until it is");
    }
    // Listed alongside: nodes reach their pods' objects from the first moment.
    if !api.node_graph.wait_ready(RBAC_READY_TIMEOUT).await {
        tracing::warn!("node graph not listed yet; nodes reach no pod's secrets until it is");
    }
    let join_token = join::ensure_default_token(&api, &config.data_dir, fresh).await?;
    tokio::spawn(crate::services::run(api.clone()));
    tokio::spawn(namespaces::lifecycle(api.clone()));
    tokio::spawn(crate::namespace_cache::run(api.clone()));
    tokio::spawn(crate::csr::signer::run(api.clone()));
    tokio::spawn(crate::apiservices::run(api.clone()));
    tokio::spawn(crate::crd::run(api.clone()));
    tokio::spawn(compactor(
        api.clone(),
        config.compact_interval,
        config.compact_keep,
    ));

    let app = Router::new().fallback(dispatch).with_state(api);
    let handle = axum_server::Handle::new();
    let acceptor = crate::x509::PeerCertAcceptor::new(
        axum_server::tls_rustls::RustlsAcceptor::new(tls).acceptor(NoDelay),
    );
    let server = axum_server::from_tcp(listener)?
        .acceptor(acceptor)
        .handle(handle.clone());
    let task = tokio::spawn(server.serve(app.into_make_service_with_connect_info::<SocketAddr>()));
    tracing::info!(%url, kubeconfig = %creds.kubeconfig_path.display(), "API server listening");
    Ok(Running {
        url,
        kubeconfig: creds.kubeconfig_path,
        addr,
        join_token,
        join_token_file: config.data_dir.join(join::NODE_TOKEN_FILE),
        server_token: server_token.to_string(),
        server_token_file: config.data_dir.join(server_join::SERVER_TOKEN_FILE),
        handle,
        task,
    })
}
