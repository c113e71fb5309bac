//! DELETE and deletecollection: preconditions, finalizers, graceful pod deletion.

use serde_json::{json, Value};
use skiff_api::StatusError;

use crate::body;
use crate::objects::revision_of;
use crate::request::{Query, Target};
use crate::rest::{self, Filter, Result};
use crate::server::Api;
use crate::strategy::now_rfc3339;

/// `DeleteOptions` from the body and the query (the query wins, as upstream).
#[derive(Debug, Default)]
pub struct DeleteOptions {
    pub grace_period: Option<i64>,
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    /// From a DELETE's body (JSON, or protobuf as client-go's typed clients in
    /// kubectl send it; `media` is its content type) and query.
    pub fn parse(q: &Query, media: &str, bytes: &[u8]) -> Result<Self> {
        let b: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else if media == body::PROTOBUF {
            body::decode_object(media, bytes)?
        } else {
            body::parse_text(body::JSON, bytes)?
        };
        Self::from_value(q, &b)
    }

    /// From a decoded DeleteOptions object `b` (a DELETE's body, or an
    /// Eviction's `deleteOptions`) and the query.
    pub fn from_value(q: &Query, b: &Value) -> Result<Self> {
        let mut o = Self {
            grace_period: b.get("gracePeriodSeconds").and_then(Value::as_i64),
            propagation: b
                .get("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_string),
            precondition_uid: b
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(str::to_string),
            precondition_rv: b
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string),
            dry_run: b
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|v| v == "All")),
        };
        if let Some(g) = q.int("gracePeriodSeconds")? {
            o.grace_period = Some(g);
        }
        if let Some(p) = q.get("propagationPolicy") {
            o.propagation = Some(p.to_string());
        }
        if q.get("dryRun") == Some("All") {
            o.dry_run = true;
        }
        match o.propagation.as_deref() {
            None | Some("Background" | "Foreground" | "Orphan") => Ok(o),
            Some(other) => Err(StatusError::bad_request(format!(
                "DeleteOptions.propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            ))),
        }
    }
}

/// How often a delete re-reads and tries again when another writer got in between.
const DELETE_ATTEMPTS: usize = 16;

/// Deletes one object; returns it (marked for deletion, or as it was when removed).
///
/// Like upstream's guaranteed update, a write that loses a race with another writer
/// (a node agent's status update, say) is retried on the fresh object; only the
/// caller's own preconditions surface as 409 Conflict.
pub async fn delete(api: &Api, t: &Target, opts: &DeleteOptions) -> Result<Value> {
    let mut attempt = 1;
    loop {
        match delete_once(api, t, opts).await {
            Err(e) if lost_race(&e) && attempt < DELETE_ATTEMPTS => attempt += 1,
            other => return other,
        }
    }
}

fn lost_race(e: &StatusError) -> bool {
    e.code == 409 && !e.message.contains("Precondition failed")
}

async fn delete_once(api: &Api, t: &Target, opts: &DeleteOptions) -> Result<Value> {
    let name = t.name.clone().unwrap_or_default();
    let ns = t.namespace.as_deref();
    let obj = api.objects.get(t.resource, ns, &name).await?;
    let uid = obj
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if let Some(want) = &opts.precondition_uid {
        if want != uid {
            return Err(StatusError::conflict(
                t.resource,
                &name,
                &format!(
                    "Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"
                ),
            ));
        }
    }
    let rv = obj
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if let Some(want) = &opts.precondition_rv {
        if want != rv {
            return Err(StatusError::conflict(
                t.resource,
                &name,
                &format!("Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in meta: {rv}"),
            ));
        }
    }
    // Orphan and Foreground deletion hand the object to the garbage collector
    // through a finalizer, as upstream: it orphans or deletes the dependents, then
    // removes the finalizer, and the object goes.
    let gc_finalizer = match opts.propagation.as_deref() {
        Some("Orphan") => Some("orphan"),
        Some("Foreground") => Some("foregroundDeletion"),
        _ => None,
    };
    let mut obj = obj;
    if let (Some(f), None) = (gc_finalizer, obj.pointer("/metadata/deletionTimestamp")) {
        let list = obj["metadata"]
            .as_object_mut()
            .map(|m| m.entry("finalizers").or_insert_with(|| json!([])));
        if let Some(Value::Array(list)) = list {
            if !list.iter().any(|v| v == f) {
                list.push(json!(f));
            }
        }
    }
    let has_finalizers = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    let is_namespace = (t.resource.group, t.resource.kind) == ("", "Namespace");
    let graceful_pod = (t.resource.group, t.resource.kind) == ("", "Pod")
        && obj
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty())
        && opts.grace_period != Some(0)
        && obj
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .is_none_or(|p| p != "Succeeded" && p != "Failed");
    if obj.pointer("/metadata/deletionTimestamp").is_some() {
        // Already being deleted. A second delete with no grace (the node agent's
        // last word, or --force) removes an object that only waited for its grace.
        let force_now = !has_finalizers && !is_namespace && opts.grace_period == Some(0);
        if !force_now {
            return Ok(obj);
        }
    } else if has_finalizers || is_namespace || graceful_pod {
        if opts.dry_run {
            return Ok(obj);
        }
        let mut marked = obj.clone();
        let meta = &mut marked["metadata"];
        meta["deletionTimestamp"] = json!(now_rfc3339());
        if graceful_pod {
            let grace = opts
                .grace_period
                .or_else(|| {
                    obj.pointer("/spec/terminationGracePeriodSeconds")
                        .and_then(Value::as_i64)
                })
                .unwrap_or(30);
            meta["deletionGracePeriodSeconds"] = json!(grace);
        } else {
            meta["deletionGracePeriodSeconds"] = json!(0);
        }
        if is_namespace {
            marked["status"]["phase"] = json!("Terminating");
            api.namespaces_changed.notify_one();
        }
        let expected = revision_of(&obj).unwrap_or_default();
        return api
            .objects
            .update(t.resource, ns, &name, &marked, expected)
            .await;
    }
    if opts.dry_run {
        return Ok(obj);
    }
    let removed = api
        .objects
        .delete(t.resource, ns, &name, revision_of(&obj))
        .await?;
    crate::services::after_delete(api, t.resource, &removed).await;
    Ok(removed)
}

/// Deletes every object a list request with the same selectors would return.
pub async fn delete_collection(
    api: &Api,
    t: &Target,
    q: &Query,
    opts: &DeleteOptions,
) -> Result<Value> {
    let filter = Filter::from_query(t.resource, q)?;
    let page = api
        .objects
        .list(t.resource, t.namespace.as_deref(), None, None)
        .await?;
    let mut deleted = Vec::new();
    for obj in page.items.into_iter().filter(|o| filter.matches(o)) {
        let target = Target {
            resource: t.resource,
            namespace: obj
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_string),
            name: rest::name_of(&obj).map(str::to_string),
            subresource: None,
        };
        match delete(api, &target, opts).await {
            Ok(o) => deleted.push(o),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json!({
        "kind": t.resource.list_kind(),
        "apiVersion": t.resource.api_version(),
        "metadata": {"resourceVersion": page.revision.to_string()},
        "items": deleted,
    }))
}
