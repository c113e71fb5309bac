//! The audit log (issue #17): upstream's log backend (`--audit-log-path`,
//! `--audit-policy-file`), one `audit.k8s.io/v1` `Event` per line in
//! upstream's JSON.
//!
//! The stages follow upstream's audit filter, which runs after
//! authentication and before impersonation and authorization:
//!
//! - `RequestReceived` once the user is known, the level decided by the
//!   policy ([`policy`]) from the authenticated (not the impersonated) user;
//! - `ResponseStarted` for long-running requests (watches, `log`, `exec`,
//!   `attach`, `portforward`, `proxy`) when their headers go out;
//! - `ResponseComplete` when the response is done (a long-running one's
//!   body ended or its client left);
//! - `Panic` when a handler panicked.
//!
//! A request that fails authentication is one `ResponseStarted` event with
//! an empty user and code 401 (upstream's `WithFailedAuthenticationAudit`),
//! whose message says which credentials were tried. The paths skiff serves
//! before authentication (`/version`, `/healthz`, `/livez`, `/readyz`,
//! `/cacerts`, the server bootstrap) are logged as `system:anonymous`.
//! Authorization adds `authorization.k8s.io/decision` (`allow`/`forbid`) and
//! `authorization.k8s.io/reason`.
//!
//! Every response carries the `Audit-ID` header, the request's own when it
//! sent one. Events never wait on the disk: they are encoded on the request
//! task and handed to the writer ([`writer`]) through a bounded channel; when
//! it is full the event is dropped and `apiserver_audit_error_total` counts
//! it. Without `--audit-log-path` there is no [`Auditor`] and requests pay
//! nothing but the `Audit-ID` header.

pub mod policy;
pub mod record;
pub mod writer;

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, SecondsFormat, Utc};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Serialize;
use serde_json::Value;

pub use policy::Policy;
pub use record::Record;

/// The header carrying a request's audit ID, both ways.
pub const AUDIT_ID_HEADER: &str = "audit-id";
/// Annotation keys upstream's authorization filter sets.
pub const DECISION_ANNOTATION: &str = "authorization.k8s.io/decision";
pub const REASON_ANNOTATION: &str = "authorization.k8s.io/reason";

/// How much of a request is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
}

impl Level {
    pub const ALL: [Level; 4] = [
        Level::None,
        Level::Metadata,
        Level::Request,
        Level::RequestResponse,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "None",
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// When in a request's handling an event is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Stage {
    RequestReceived,
    ResponseStarted,
    ResponseComplete,
    Panic,
}

impl Stage {
    pub const ALL: [Stage; 4] = [
        Stage::RequestReceived,
        Stage::ResponseStarted,
        Stage::ResponseComplete,
        Stage::Panic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::RequestReceived => "RequestReceived",
            Stage::ResponseStarted => "ResponseStarted",
            Stage::ResponseComplete => "ResponseComplete",
            Stage::Panic => "Panic",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// Upstream's `authentication.k8s.io/v1` `UserInfo`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UserInfo {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl From<&crate::authn::User> for UserInfo {
    fn from(u: &crate::authn::User) -> Self {
        Self {
            username: u.name.clone(),
            uid: u.uid.clone(),
            groups: u.groups.clone(),
            extra: (*u.extra).clone(),
        }
    }
}

/// What a resource request is about (upstream's audit `ObjectReference`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subresource: String,
}

/// The response's `meta/v1` `Status`: only the code on success, upstream's
/// status, message, reason and details on failure.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ResponseStatus {
    /// Always `{}` (a `Status`'s list metadata, never omitted upstream).
    pub metadata: BTreeMap<String, Value>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    pub code: u16,
}

/// One audit event, fields in upstream's order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub level: Level,
    #[serde(rename = "auditID")]
    pub audit_id: String,
    pub stage: Stage,
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    pub verb: String,
    pub user: UserInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impersonated_user: Option<UserInfo>,
    #[serde(rename = "sourceIPs", skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_ref: Option<ObjectRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_status: Option<ResponseStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_object: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_object: Option<Value>,
    #[serde(serialize_with = "micro_time")]
    pub request_received_timestamp: DateTime<Utc>,
    #[serde(serialize_with = "micro_time")]
    pub stage_timestamp: DateTime<Utc>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `meta/v1` `MicroTime`: RFC 3339 with microseconds, in UTC.
fn micro_time<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true))
}

impl Event {
    /// A new event at `level` for a request received at `received`.
    pub fn new(level: Level, audit_id: String, received: DateTime<Utc>) -> Self {
        Self {
            kind: "Event",
            api_version: "audit.k8s.io/v1",
            level,
            audit_id,
            stage: Stage::RequestReceived,
            request_uri: String::new(),
            verb: String::new(),
            user: UserInfo::default(),
            impersonated_user: None,
            source_ips: vec![],
            user_agent: String::new(),
            object_ref: None,
            response_status: None,
            request_object: None,
            response_object: None,
            request_received_timestamp: received,
            stage_timestamp: received,
            annotations: BTreeMap::new(),
        }
    }

    /// One log line: the event as upstream's encoder writes it (Go's JSON
    /// escapes `<`, `>`, `&`, U+2028 and U+2029), ending in a newline.
    pub fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let mut out = Vec::with_capacity(json.len() + 16);
        let mut i = 0;
        while i < json.len() {
            match json[i] {
                b'<' => out.extend_from_slice(b"\\u003c"),
                b'>' => out.extend_from_slice(b"\\u003e"),
                b'&' => out.extend_from_slice(b"\\u0026"),
                // U+2028 and U+2029 are E2 80 A8 / E2 80 A9 in UTF-8.
                0xE2 if json.get(i + 1) == Some(&0x80)
                    && matches!(json.get(i + 2), Some(0xA8 | 0xA9)) =>
                {
                    out.extend_from_slice(if json[i + 2] == 0xA8 {
                        b"\\u2028"
                    } else {
                        b"\\u2029"
                    });
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        out.push(b'\n');
        out
    }
}

/// Where the log goes and what is logged (`skiff server --audit-*`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--audit-log-path`: a file, or `-` for standard output.
    pub path: PathBuf,
    /// `--audit-policy-file`, loaded; [`Policy::metadata_for_all`] without one.
    pub policy: Policy,
    /// `--audit-log-maxsize`: megabytes before the file is rotated (0: 100,
    /// as upstream's lumberjack defaults).
    pub max_size_mb: u64,
    /// `--audit-log-maxbackup`: rotated files kept (0: all).
    pub max_backups: usize,
}

impl Settings {
    /// Settings for `path` with the policy in `policy_file` (none: every
    /// request at `Metadata`). The error names the flag and the field.
    pub fn load(path: PathBuf, policy_file: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let policy = match policy_file {
            None => Policy::metadata_for_all(),
            Some(file) => {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| anyhow::anyhow!("--audit-policy-file {}: {e}", file.display()))?;
                Policy::parse(&text)
                    .map_err(|e| anyhow::anyhow!("--audit-policy-file {}: {e}", file.display()))?
            }
        };
        Ok(Self {
            path,
            policy,
            max_size_mb: 0,
            max_backups: 0,
        })
    }
}

/// Counters of the audit log, registered in the server's metrics.
#[derive(Clone, Default)]
pub struct AuditMetrics {
    /// `apiserver_audit_event_total`: events generated and sent to the log.
    pub events: Counter,
    /// `apiserver_audit_error_total{plugin="log"}`: events lost.
    pub errors: Family<PluginLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct PluginLabel {
    pub plugin: String,
}

impl AuditMetrics {
    fn lost(&self, events: u64) {
        self.errors
            .get_or_create(&PluginLabel {
                plugin: "log".to_string(),
            })
            .inc_by(events);
    }
}

/// The audit log of a running server: the policy and the writer's channel.
pub struct Auditor {
    policy: Policy,
    sink: writer::Sink,
    metrics: AuditMetrics,
}

impl Auditor {
    /// Opens the log and starts its writer.
    pub fn start(settings: &Settings, metrics: AuditMetrics) -> anyhow::Result<Self> {
        let sink = writer::start(
            &settings.path,
            writer::Rotation {
                max_bytes: if settings.max_size_mb == 0 {
                    writer::DEFAULT_MAX_BYTES
                } else {
                    settings.max_size_mb.saturating_mul(1024 * 1024)
                },
                max_backups: settings.max_backups,
            },
            metrics.clone(),
        )
        .map_err(|e| anyhow::anyhow!("--audit-log-path {}: {e}", settings.path.display()))?;
        Ok(Self {
            policy: settings.policy.clone(),
            sink,
            metrics,
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Hands an event to the writer; never waits. A full channel loses it.
    pub fn emit(&self, event: &Event) {
        self.metrics.events.inc();
        if !self.sink.try_send(event.encode()) {
            self.metrics.lost(1);
        }
    }
}

/// The request's audit ID: its own `Audit-ID` header, or a new UUID.
pub fn request_id(headers: &http::HeaderMap) -> String {
    headers
        .get(AUDIT_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// What a panic said, for the `Panic` event.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

/// Echoes the audit ID to the client, unless a handler already set one.
pub fn set_header(resp: &mut axum::response::Response, audit_id: &str) {
    if resp.headers().contains_key(AUDIT_ID_HEADER) {
        return;
    }
    if let Ok(v) = http::HeaderValue::from_str(audit_id) {
        resp.headers_mut().insert(AUDIT_ID_HEADER, v);
    }
}

#[cfg(test)]
mod tests;
