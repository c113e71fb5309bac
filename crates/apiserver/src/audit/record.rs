//! One request's audit record while it is served: what the request is (from
//! its head, before anything else runs), who sent it (once authenticated),
//! what authorization decided, the request body (for writes), and at the end
//! the response. It emits the stages' events through its [`Auditor`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use http::Method;
use serde_json::Value;
use skiff_api::StatusError;

use super::policy::{Subject, Verdict};
use super::{
    Auditor, Event, Level, ObjectRef, ResponseStatus, Stage, UserInfo, DECISION_ANNOTATION,
    REASON_ANNOTATION,
};
use crate::authn::User;
use crate::authz::{request_info, Attributes, Request as AuthzRequest};
use crate::request::Query;

/// Upstream's cap on a logged User-Agent.
const MAX_USER_AGENT: usize = 1024;
const USER_AGENT_TRUNCATED: &str = "...TRUNCATED";
/// Upstream's long-running requests (kube-apiserver's
/// `BasicLongRunningRequestCheck`): by verb, and by subresource.
const LONG_RUNNING_VERBS: &[&str] = &["watch", "proxy"];
const LONG_RUNNING_SUBRESOURCES: &[&str] = &["attach", "exec", "proxy", "log", "portforward"];
/// Verbs whose request body is the request object.
const WRITE_VERBS: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];
/// Who a request skiff serves before authentication is logged as (what
/// upstream's anonymous authenticator makes of a request without credentials).
const ANONYMOUS: &str = "system:anonymous";
const UNAUTHENTICATED: &str = "system:unauthenticated";

/// The request as it arrived, kept until the user is known.
struct Head {
    method: Method,
    path: String,
    query: Option<String>,
    uri: String,
    user_agent: String,
    source_ips: Vec<String>,
    content_type: String,
}

/// One request's audit state.
pub struct Record {
    auditor: Arc<Auditor>,
    audit_id: String,
    received: DateTime<Utc>,
    head: Head,
    /// Set once the user is known: the policy's word and the request as
    /// authorization reads it.
    verdict: Option<(Verdict, Attributes)>,
    /// `None` when nothing is logged (level `None`, or not decided yet).
    event: Option<Event>,
    body: Option<Bytes>,
}

impl Record {
    /// Starts the record of `req` under `audit_id`.
    pub fn new(auditor: Arc<Auditor>, audit_id: &str, req: &http::Request<Body>) -> Self {
        let headers = req.headers();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let mut user_agent = header("user-agent");
        if user_agent.len() > MAX_USER_AGENT {
            let mut cut = MAX_USER_AGENT;
            while !user_agent.is_char_boundary(cut) {
                cut -= 1;
            }
            user_agent.truncate(cut);
            user_agent.push_str(USER_AGENT_TRUNCATED);
        }
        let remote = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        Self {
            auditor,
            audit_id: audit_id.to_string(),
            received: Utc::now(),
            head: Head {
                method: req.method().clone(),
                path: req.uri().path().to_string(),
                query: req.uri().query().map(str::to_string),
                uri: req
                    .uri()
                    .path_and_query()
                    .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string()),
                user_agent,
                source_ips: source_ips(
                    &header("x-forwarded-for"),
                    &header("x-real-ip"),
                    remote.as_deref(),
                ),
                content_type: crate::body::content_type(headers),
            },
            verdict: None,
            event: None,
            body: None,
        }
    }

    fn attributes(&self, user: User) -> Attributes {
        request_info::attributes(
            user,
            &self.head.method,
            &self.head.path,
            &Query::parse(self.head.query.as_deref()),
        )
    }

    /// The event's fields that come from the request and `attrs`.
    fn event(&self, level: Level, user: UserInfo, attrs: &Attributes) -> Event {
        let mut ev = Event::new(level, self.audit_id.clone(), self.received);
        ev.request_uri = self.head.uri.clone();
        ev.verb = attrs.verb.clone();
        ev.user = user;
        ev.source_ips = self.head.source_ips.clone();
        ev.user_agent = self.head.user_agent.clone();
        if let AuthzRequest::Resource(r) = &attrs.request {
            ev.object_ref = Some(ObjectRef {
                resource: r.resource.clone(),
                namespace: r.namespace.clone(),
                name: r.name.clone(),
                api_group: r.api_group.clone(),
                api_version: api_version(&self.head.path).to_string(),
                subresource: r.subresource.clone(),
                ..Default::default()
            });
        }
        ev
    }

    /// The user is known: the policy decides the level, and
    /// `RequestReceived` goes out.
    pub fn authenticated(&mut self, user: &User) {
        let attrs = self.attributes(user.clone());
        let verdict = self.auditor.policy().evaluate(Subject {
            user: Some(user),
            verb: &attrs.verb,
            request: &attrs.request,
        });
        if verdict.level > Level::None {
            let ev = self.event(verdict.level, UserInfo::from(user), &attrs);
            if !verdict.omits(Stage::RequestReceived) {
                self.auditor.emit(&ev);
            }
            self.event = Some(ev);
        }
        self.verdict = Some((verdict, attrs));
    }

    /// The request goes on as `user` (`Impersonate-User`).
    pub fn impersonated(&mut self, user: &User) {
        if let Some(ev) = self.event.as_mut() {
            ev.impersonated_user = Some(UserInfo::from(user));
        }
    }

    /// Authorization's decision, as upstream annotates it.
    pub fn decided(&mut self, allowed: bool, reason: &str) {
        if let Some(ev) = self.event.as_mut() {
            let decision = if allowed { "allow" } else { "forbid" };
            ev.annotations
                .insert(DECISION_ANNOTATION.to_string(), decision.to_string());
            ev.annotations
                .insert(REASON_ANNOTATION.to_string(), reason.to_string());
        }
    }

    fn long_running(&self) -> bool {
        self.verdict
            .as_ref()
            .is_some_and(|(_, a)| is_long_running(a))
    }

    /// Keeps a write's body for the log, handing the handler the same bytes.
    /// Nothing is read when nothing is logged.
    pub async fn keep_body(&mut self, body: Body) -> Result<Body, StatusError> {
        let wanted = self.event.is_some()
            && !self.long_running()
            && self
                .verdict
                .as_ref()
                .is_some_and(|(_, a)| WRITE_VERBS.contains(&a.verb.as_str()));
        if !wanted {
            return Ok(body);
        }
        let bytes = crate::body::read(body).await?;
        self.body = Some(bytes.clone());
        Ok(Body::from(bytes))
    }

    /// The request object from the kept body: upstream logs the decoded
    /// object as JSON (a patch as sent), and takes a create's or update's name,
    /// namespace, uid and resourceVersion into `objectRef`.
    fn log_request_object(&mut self, omit_managed_fields: bool) {
        let (Some(ev), Some(bytes)) = (self.event.as_mut(), self.body.as_ref()) else {
            return;
        };
        if bytes.is_empty() {
            return;
        }
        // An object in any media type the server reads (protobuf too); a
        // patch as the JSON or YAML text it is.
        let media = self.head.content_type.as_str();
        let text_media = if media.ends_with("yaml") {
            crate::body::YAML
        } else {
            crate::body::JSON
        };
        let decoded = crate::body::decode_object(media, bytes)
            .or_else(|_| crate::body::parse_text(text_media, bytes));
        let Ok(mut obj) = decoded else {
            return;
        };
        if matches!(ev.verb.as_str(), "create" | "update") {
            if let Some(r) = ev.object_ref.as_mut() {
                let meta = |k: &str| {
                    obj.pointer(&format!("/metadata/{k}"))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                for (field, key) in [
                    (&mut r.namespace, "namespace"),
                    (&mut r.name, "name"),
                    (&mut r.uid, "uid"),
                    (&mut r.resource_version, "resourceVersion"),
                ] {
                    if field.is_empty() {
                        *field = meta(key);
                    }
                }
            }
        }
        if ev.level >= Level::Request {
            if omit_managed_fields {
                drop_managed_fields(&mut obj);
            }
            ev.request_object = Some(obj);
        }
    }

    /// The response is ready: its status (and, at `RequestResponse`, its
    /// object) goes into the event; `ResponseComplete` goes out now, or for a
    /// long-running request `ResponseStarted` now and `ResponseComplete` when
    /// its body ends.
    pub async fn finish(mut self, resp: Response) -> Response {
        if self.verdict.is_none() {
            if resp.status() == http::StatusCode::UNAUTHORIZED {
                return self.failed_authentication(resp).await;
            }
            // Served before authentication (/version, /healthz, ...).
            let anonymous = User {
                name: ANONYMOUS.to_string(),
                groups: vec![UNAUTHENTICATED.to_string()],
                uid: String::new(),
                extra: Default::default(),
            };
            self.authenticated(&anonymous);
        }
        let long_running = self.long_running();
        let omit_managed_fields = match (&self.verdict, &self.event) {
            (Some((verdict, _)), Some(_)) => verdict.omit_managed_fields,
            // Level None: nothing to log.
            _ => return resp,
        };
        self.log_request_object(omit_managed_fields);
        let (Some(mut ev), Some((verdict, _))) = (self.event.take(), self.verdict.take()) else {
            return resp;
        };
        let code = resp.status().as_u16();
        if long_running {
            ev.response_status = Some(ResponseStatus {
                code,
                ..Default::default()
            });
            self.emit_stage(&mut ev, Stage::ResponseStarted, &verdict);
            let done = Completion {
                auditor: self.auditor.clone(),
                event: ev,
                verdict,
            };
            return resp.map(|body| {
                Body::from_stream(body.into_data_stream().map(move |chunk| {
                    let _ = &done;
                    chunk
                }))
            });
        }
        let wants_object = ev.level >= Level::RequestResponse;
        let (resp, status, object) = read_response(resp, wants_object).await;
        ev.response_status = Some(status.unwrap_or(ResponseStatus {
            code,
            ..Default::default()
        }));
        if let Some(mut obj) = object {
            if omit_managed_fields {
                drop_managed_fields(&mut obj);
            }
            ev.response_object = Some(obj);
        }
        self.emit_stage(&mut ev, Stage::ResponseComplete, &verdict);
        resp
    }

    /// Upstream's failed-authentication audit: one `ResponseStarted` event,
    /// no user, the 401's status.
    async fn failed_authentication(self, resp: Response) -> Response {
        let attrs = self.attributes(User {
            name: String::new(),
            groups: vec![],
            uid: String::new(),
            extra: Default::default(),
        });
        let verdict = self.auditor.policy().evaluate(Subject {
            user: None,
            verb: &attrs.verb,
            request: &attrs.request,
        });
        if verdict.level == Level::None || verdict.omits(Stage::ResponseStarted) {
            return resp;
        }
        let mut ev = self.event(verdict.level, UserInfo::default(), &attrs);
        let code = resp.status().as_u16();
        let (resp, status, _) = read_response(resp, false).await;
        ev.response_status = Some(status.unwrap_or(ResponseStatus {
            code,
            ..Default::default()
        }));
        self.emit_stage(&mut ev, Stage::ResponseStarted, &verdict);
        resp
    }

    /// A handler panicked: upstream's `Panic` event.
    pub fn panicked(mut self, message: &str) {
        let Some(mut ev) = self.event.take() else {
            return;
        };
        let Some((verdict, _)) = self.verdict.take() else {
            return;
        };
        ev.response_status = Some(ResponseStatus {
            status: "Failure".to_string(),
            reason: "InternalError".to_string(),
            message: format!("APIServer panic'd: {message}"),
            code: 500,
            ..Default::default()
        });
        self.emit_stage(&mut ev, Stage::Panic, &verdict);
    }

    fn emit_stage(&self, ev: &mut Event, stage: Stage, verdict: &Verdict) {
        emit_stage(&self.auditor, ev, stage, verdict);
    }
}

fn emit_stage(auditor: &Auditor, ev: &mut Event, stage: Stage, verdict: &Verdict) {
    if verdict.omits(stage) {
        return;
    }
    ev.stage = stage;
    ev.stage_timestamp = Utc::now();
    auditor.emit(ev);
}

/// A long-running response's last event, sent when its body is dropped:
/// after the last byte, or when the client went away.
struct Completion {
    auditor: Arc<Auditor>,
    event: Event,
    verdict: Verdict,
}

impl Drop for Completion {
    fn drop(&mut self) {
        emit_stage(
            &self.auditor,
            &mut self.event,
            Stage::ResponseComplete,
            &self.verdict,
        );
    }
}

/// Reads a finished response back when the log needs it: an error's
/// `Status` (upstream copies its status, message, reason, details and code),
/// and at `RequestResponse` the JSON object. The response is rebuilt from
/// the same bytes.
async fn read_response(
    resp: Response,
    wants_object: bool,
) -> (Response, Option<ResponseStatus>, Option<Value>) {
    let failed = resp.status().as_u16() >= 400;
    let json = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if !json || !(failed || wants_object) {
        return (resp, None, None);
    }
    let (parts, body) = resp.into_parts();
    // Only responses already in memory get here (long-running ones stream
    // and are never read back), so there is no limit to hold to.
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            let status = ResponseStatus {
                code: parts.status.as_u16(),
                message: format!("reading the response for the audit log: {e}"),
                ..Default::default()
            };
            return (
                Response::from_parts(parts, Body::empty()),
                Some(status),
                None,
            );
        }
    };
    let value: Option<Value> = serde_json::from_slice(&bytes).ok();
    let status = value
        .as_ref()
        .filter(|v| v["kind"] == "Status")
        .map(|v| ResponseStatus {
            status: v["status"].as_str().unwrap_or("").to_string(),
            message: v["message"].as_str().unwrap_or("").to_string(),
            reason: v["reason"].as_str().unwrap_or("").to_string(),
            details: v.get("details").filter(|d| !d.is_null()).cloned(),
            code: v["code"]
                .as_u64()
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(parts.status.as_u16()),
            ..Default::default()
        });
    let object = if wants_object { value } else { None };
    (
        Response::from_parts(parts, Body::from(bytes)),
        status,
        object,
    )
}

/// Upstream's `RequestInfo` long-running check.
fn is_long_running(attrs: &Attributes) -> bool {
    LONG_RUNNING_VERBS.contains(&attrs.verb.as_str())
        || matches!(&attrs.request, AuthzRequest::Resource(r)
            if LONG_RUNNING_SUBRESOURCES.contains(&r.subresource.as_str()))
}

/// The version segment of a resource path (`/api/v1/...`, `/apis/g/v/...`).
fn api_version(path: &str) -> &str {
    let mut parts = path.trim_start_matches('/').split('/');
    match parts.next() {
        Some("api") => parts.next().unwrap_or(""),
        Some("apis") => parts.nth(1).unwrap_or(""),
        _ => "",
    }
}

/// Upstream's `utilnet.SourceIPs`: `X-Forwarded-For`, then `X-Real-Ip` if
/// not already there, then the peer's address unless it is the last one.
fn source_ips(forwarded_for: &str, real_ip: &str, remote: Option<&str>) -> Vec<String> {
    let mut ips: Vec<String> = forwarded_for
        .split(',')
        .map(str::trim)
        .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
        .map(str::to_string)
        .collect();
    let real_ip = real_ip.trim();
    if real_ip.parse::<std::net::IpAddr>().is_ok() && !ips.iter().any(|ip| ip == real_ip) {
        ips.push(real_ip.to_string());
    }
    if let Some(remote) = remote {
        if ips.last().map(String::as_str) != Some(remote) {
            ips.push(remote.to_string());
        }
    }
    ips
}

/// `omitManagedFields`: an object's (or a list's items') managed fields go.
fn drop_managed_fields(obj: &mut Value) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    if let Some(items) = obj.get_mut("items").and_then(Value::as_array_mut) {
        for item in items {
            drop_managed_fields(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn source_ips_as_upstream_lists_them() {
        assert_eq!(source_ips("", "", Some("10.0.0.1")), ["10.0.0.1"]);
        assert_eq!(
            source_ips("1.2.3.4, 5.6.7.8", "9.9.9.9", Some("10.0.0.1")),
            ["1.2.3.4", "5.6.7.8", "9.9.9.9", "10.0.0.1"]
        );
        assert_eq!(
            source_ips("1.2.3.4", "1.2.3.4", Some("1.2.3.4")),
            ["1.2.3.4"]
        );
        assert_eq!(source_ips("junk", "", None), Vec::<String>::new());
    }

    #[test]
    fn versions_come_from_the_path() {
        assert_eq!(api_version("/api/v1/namespaces/default/pods"), "v1");
        assert_eq!(api_version("/apis/apps/v1/deployments"), "v1");
        assert_eq!(api_version("/healthz"), "");
    }

    #[test]
    fn managed_fields_go_from_objects_and_list_items() {
        let mut obj = json!({"metadata": {"name": "a", "managedFields": [1]},
            "items": [{"metadata": {"name": "b", "managedFields": [2]}}]});
        drop_managed_fields(&mut obj);
        assert_eq!(
            obj,
            json!({"metadata": {"name": "a"}, "items": [{"metadata": {"name": "b"}}]})
        );
    }
}
