//! Upstream's `NodeRestriction` admission plugin
//! (`plugin/pkg/admission/noderestriction`): what a node (`system:node:<n>`)
//! may write, beyond what the Node authorizer lets it ask for. With the
//! authorizer's answers "any node may patch a node status" or "any node may
//! delete a pod", this is what keeps each node to its own:
//!
//! - Nodes: only its own, created without labels outside the kubelet's set
//!   (`kubernetes.io/hostname`, `node.kubernetes.io/...`, ...), updated
//!   without changing its taints or such labels;
//! - pods: no creation (skiff runs no static pods, so there are no mirror
//!   pods to make), status writes and deletion only of pods bound to it,
//!   evictions only of those;
//! - Leases: only its own in `kube-node-lease`;
//! - a ServiceAccount token only bound to a pod of the node, by uid;
//! - a PersistentVolumeClaim: only its status' capacity and conditions.
//!
//! Refusals are upstream's 403 with upstream's words; nothing is written.
//! Checks that compare with the stored object pin the version they read and
//! run again if it changed before the write, so they judge what is replaced.

use std::sync::atomic::{AtomicBool, Ordering};

use http::HeaderMap;
use serde_json::{Map, Value};
use skiff_api::registry::Resource;
use skiff_api::StatusError;

use crate::authn::User;
use crate::authz::message::go_quote;
use crate::authz::node::graph::MIRROR_POD_ANNOTATION;
use crate::authz::node::NODE_LEASE_NAMESPACE;
use crate::body;
use crate::patch;
use crate::request::{Query, Target};
use crate::rest::{self, Result, WriteOptions};
use crate::server::Api;

/// Labels a kubelet sets on its Node (upstream's `kubeletapis.IsKubeletLabel`).
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
];
/// Label namespaces (and their subdomains) a kubelet may set freely.
const KUBELET_LABEL_NAMESPACES: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];
/// Labels no node may set: they steer workloads that trust them.
const NODE_RESTRICTION_NAMESPACE: &str = "node-restriction.kubernetes.io";

/// Upstream's admission operations, as its messages name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Update,
    Delete,
}

impl Op {
    fn of(verb: &str) -> Option<Self> {
        match verb {
            "create" => Some(Op::Create),
            "update" | "patch" => Some(Op::Update),
            "delete" | "deletecollection" => Some(Op::Delete),
            _ => None,
        }
    }

    fn quoted(self) -> String {
        go_quote(match self {
            Op::Create => "CREATE",
            Op::Update => "UPDATE",
            Op::Delete => "DELETE",
        })
    }
}

/// What NodeRestriction looks after, by the request's resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guarded {
    Pods,
    Nodes,
    Claims,
    ServiceAccounts,
    Leases,
}

fn guarded(r: &Resource) -> Option<Guarded> {
    match (r.group, r.plural) {
        ("", "pods") => Some(Guarded::Pods),
        ("", "nodes") => Some(Guarded::Nodes),
        ("", "persistentvolumeclaims") => Some(Guarded::Claims),
        ("", "serviceaccounts") => Some(Guarded::ServiceAccounts),
        ("coordination.k8s.io", "leases") => Some(Guarded::Leases),
        _ => None,
    }
}

/// The node a request comes from, when NodeRestriction has a say on it.
fn restricted<'a>(user: &'a User, t: &Target) -> Option<(&'a str, Guarded)> {
    Some((user.node_name()?, guarded(t.resource)?))
}

fn forbidden(t: &Target, name: &str, why: impl AsRef<str>) -> StatusError {
    StatusError::forbidden(t.resource, name, why.as_ref())
}

fn url_name(t: &Target) -> &str {
    t.name.as_deref().unwrap_or("")
}

fn sub(t: &Target) -> &str {
    t.subresource.as_deref().unwrap_or("")
}

fn str_at<'a>(v: &'a Value, path: &str) -> &'a str {
    v.pointer(path).and_then(Value::as_str).unwrap_or("")
}

/// Reads the pod `name` of the request's namespace (404 as upstream's lister
/// answers it).
async fn stored_pod(api: &Api, t: &Target, name: &str) -> Result<Value> {
    api.objects
        .get(t.resource, t.namespace.as_deref(), name)
        .await
}

/// The checks that need only the request line (and, for pods, the stored
/// pod): run before the body is read. Nothing for other users.
pub async fn admit(api: &Api, user: &User, t: &Target, verb: &str) -> Result<()> {
    let (Some((node, kind)), Some(op)) = (restricted(user, t), Op::of(verb)) else {
        return Ok(());
    };
    let name = url_name(t);
    match (kind, sub(t), op) {
        (Guarded::Pods, "", Op::Create) => Ok(()), // admit_create
        (Guarded::Pods, "", Op::Delete) => {
            let refuse = || {
                forbidden(
                    t,
                    name,
                    format!(
                        "node {} can only delete pods with spec.nodeName set to itself",
                        go_quote(node)
                    ),
                )
            };
            if name.is_empty() {
                return Err(refuse());
            }
            let pod = stored_pod(api, t, name).await?;
            if str_at(&pod, "/spec/nodeName") != node {
                return Err(refuse());
            }
            Ok(())
        }
        (Guarded::Pods, "", op) => Err(forbidden(
            t,
            name,
            format!(
                "unexpected operation {}, node {} can only create and delete mirror pods",
                op.quoted(),
                go_quote(node)
            ),
        )),
        (Guarded::Pods, "status", Op::Update) => Ok(()), // update / patch
        (Guarded::Pods, "eviction", Op::Create) => {
            let pod = stored_pod(api, t, name).await?;
            if str_at(&pod, "/spec/nodeName") != node {
                return Err(forbidden(
                    t,
                    name,
                    format!("node {node} can only evict pods with spec.nodeName set to itself"),
                ));
            }
            Ok(())
        }
        (Guarded::Pods, "status" | "eviction", op) => Err(forbidden(
            t,
            name,
            format!("unexpected operation {}", op.quoted()),
        )),
        (Guarded::Pods, other, _) => Err(forbidden(
            t,
            name,
            format!(
                "unexpected pod subresource {}, only 'status' and 'eviction' are allowed",
                go_quote(other)
            ),
        )),
        (Guarded::Nodes, _, Op::Create) => Ok(()), // admit_create: the name is in the body
        (Guarded::Nodes, _, _) if name != node => Err(forbidden(
            t,
            name,
            format!(
                "node {} is not allowed to modify node {}",
                go_quote(node),
                go_quote(name)
            ),
        )),
        (Guarded::Nodes, _, _) => Ok(()),
        (Guarded::Claims, "status", Op::Update) => Ok(()),
        (Guarded::Claims, "status", op) => Err(forbidden(
            t,
            name,
            format!("unexpected operation {}", op.quoted()),
        )),
        (Guarded::Claims, _, _) => Err(forbidden(t, name, "may only update PVC status")),
        (Guarded::ServiceAccounts, _, _) => Ok(()), // admit_token
        (Guarded::Leases, _, op) => {
            let ns = t.namespace.as_deref().unwrap_or("");
            if op == Op::Create && name.is_empty() {
                return Ok(()); // admit_create: the name is in the body
            }
            lease(t, node, ns, name)
        }
    }
}

/// Upstream's `admitLease`.
fn lease(t: &Target, node: &str, namespace: &str, name: &str) -> Result<()> {
    if namespace != NODE_LEASE_NAMESPACE {
        return Err(forbidden(
            t,
            name,
            format!(
                "can only access leases in the {} system namespace",
                go_quote(NODE_LEASE_NAMESPACE)
            ),
        ));
    }
    if name != node {
        return Err(forbidden(
            t,
            name,
            "can only access node lease with the same name as the requesting node",
        ));
    }
    Ok(())
}

/// The name a create is refused under: the object's, its generateName, or
/// `Unknown` (upstream's `extractResourceName`).
fn create_name(obj: &Value) -> &str {
    [
        str_at(obj, "/metadata/name"),
        str_at(obj, "/metadata/generateName"),
    ]
    .into_iter()
    .find(|n| !n.is_empty())
    .unwrap_or("Unknown")
}

/// The checks of a create, on the object to be created.
pub fn admit_create(user: &User, t: &Target, obj: &Value) -> Result<()> {
    let Some((node, kind)) = restricted(user, t) else {
        return Ok(());
    };
    let name = create_name(obj);
    match (kind, sub(t)) {
        (Guarded::Pods, "") => {
            let mirror = obj
                .pointer("/metadata/annotations")
                .and_then(Value::as_object)
                .is_some_and(|a| a.contains_key(MIRROR_POD_ANNOTATION));
            let why = if mirror {
                // Upstream lets a node make mirror pods of its static pods;
                // skiff has no static pods, so a node has none to mirror.
                format!(
                    "node {} can not create mirror pods: skiff runs no static pods",
                    go_quote(node)
                )
            } else {
                format!(
                    "pod does not have {} annotation, node {} can only create mirror pods",
                    go_quote(MIRROR_POD_ANNOTATION),
                    go_quote(node)
                )
            };
            Err(forbidden(t, name, why))
        }
        (Guarded::Nodes, "") => check_node(t, node, name, None, obj),
        (Guarded::Leases, "") => {
            let ns = t.namespace.as_deref().unwrap_or("");
            lease(t, node, ns, str_at(obj, "/metadata/name"))
        }
        _ => Ok(()),
    }
}

fn labels(obj: Option<&Value>) -> Map<String, Value> {
    obj.and_then(|o| o.pointer("/metadata/labels"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// The label keys added, removed or changed between `a` and `b`, sorted.
fn modified_labels(a: &Map<String, Value>, b: &Map<String, Value>) -> Vec<String> {
    let mut keys: Vec<String> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .chain(b.iter().filter(|(k, v)| a.get(*k) != Some(v)))
        .map(|(k, _)| k.clone())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn label_namespace(key: &str) -> &str {
    key.split_once('/').map_or("", |(ns, _)| ns)
}

fn in_namespace(ns: &str, domain: &str) -> bool {
    ns == domain
        || ns
            .strip_suffix(domain)
            .is_some_and(|rest| rest.ends_with('.'))
}

fn is_kubelet_label(key: &str) -> bool {
    let ns = label_namespace(key);
    KUBELET_LABELS.contains(&key) || KUBELET_LABEL_NAMESPACES.iter().any(|d| in_namespace(ns, d))
}

/// Upstream's `getForbiddenLabels`: node-restriction labels, and
/// kubernetes.io / k8s.io labels a kubelet does not set.
fn forbidden_labels(modified: &[String]) -> Vec<String> {
    modified
        .iter()
        .filter(|key| {
            let ns = label_namespace(key);
            let restriction = in_namespace(ns, NODE_RESTRICTION_NAMESPACE);
            let kubernetes = in_namespace(ns, "kubernetes.io") || in_namespace(ns, "k8s.io");
            restriction || (kubernetes && !is_kubelet_label(key))
        })
        .cloned()
        .collect()
}

/// Taints compared as upstream's semantic equality: none, null and `[]` are
/// the same, and so are an empty and a missing field of a taint.
fn taints(obj: Option<&Value>) -> Vec<Value> {
    obj.and_then(|o| o.pointer("/spec/taints"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| match t.as_object() {
            Some(m) => Value::Object(
                m.iter()
                    .filter(|(_, v)| !v.is_null() && v.as_str() != Some(""))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            None => t.clone(),
        })
        .collect()
}

fn config_source(obj: Option<&Value>) -> Option<&Value> {
    obj?.pointer("/spec/configSource").filter(|v| !v.is_null())
}

/// Upstream's `admitNode` on the object: `old` is `None` for a create.
fn check_node(t: &Target, node: &str, name: &str, old: Option<&Value>, new: &Value) -> Result<()> {
    let node_q = go_quote(node);
    if name != node {
        return Err(forbidden(
            t,
            name,
            format!(
                "node {node_q} is not allowed to modify node {}",
                go_quote(name)
            ),
        ));
    }
    let Some(old) = old else {
        if config_source(Some(new)).is_some() {
            return Err(forbidden(
                t,
                name,
                format!("node {node_q} is not allowed to create pods with a non-nil configSource"),
            ));
        }
        let bad = forbidden_labels(&modified_labels(&labels(Some(new)), &Map::new()));
        if !bad.is_empty() {
            return Err(forbidden(
                t,
                name,
                format!(
                    "node {node_q} is not allowed to set the following labels: {}",
                    bad.join(", ")
                ),
            ));
        }
        return Ok(());
    };
    if let Some(source) = config_source(Some(new)) {
        if config_source(Some(old)) != Some(source) {
            return Err(forbidden(
                t,
                name,
                format!(
                    "node {node_q} is not allowed to update configSource to a new non-nil configSource"
                ),
            ));
        }
    }
    // A status write keeps the stored spec (the strategy), so only a write
    // of the Node itself can change the taints.
    if sub(t) != "status" && taints(Some(new)) != taints(Some(old)) {
        return Err(forbidden(
            t,
            name,
            format!("node {node_q} is not allowed to modify taints"),
        ));
    }
    let bad = forbidden_labels(&modified_labels(&labels(Some(new)), &labels(Some(old))));
    if !bad.is_empty() {
        // Upstream's words, without the node's name.
        return Err(forbidden(
            t,
            name,
            format!("is not allowed to modify labels: {}", bad.join(", ")),
        ));
    }
    Ok(())
}

/// Upstream's `admitPodStatus`: the stored pod must be bound to the node, and
/// a status write may not relabel it or change its resource claims.
fn check_pod_status(t: &Target, node: &str, old: &Value, new: &Value) -> Result<()> {
    let name = url_name(t);
    let node_q = go_quote(node);
    if str_at(old, "/spec/nodeName") != node {
        return Err(forbidden(
            t,
            name,
            format!("node {node_q} can only update pod status for pods with spec.nodeName set to itself"),
        ));
    }
    if labels(Some(old)) != labels(Some(new)) {
        return Err(forbidden(
            t,
            name,
            format!("node {node_q} cannot update labels through pod status"),
        ));
    }
    let claims = |o: &Value| {
        o.pointer("/status/resourceClaimStatuses")
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(Value::Array(Vec::new()))
    };
    if claims(old) != claims(new) {
        return Err(forbidden(
            t,
            name,
            format!("node {node_q} cannot update resource claim statues"),
        ));
    }
    Ok(())
}

/// Upstream's `admitPVCStatus`: nothing but the capacity, conditions and
/// allocation of the status may change.
fn check_claim_status(t: &Target, node: &str, old: &Value, new: &Value) -> Result<()> {
    let strip = |o: &Value| {
        let mut o = o.clone();
        for p in [
            "/metadata/resourceVersion",
            "/metadata/managedFields",
            "/status/capacity",
            "/status/conditions",
            "/status/allocatedResourceStatuses",
            "/status/allocatedResources",
        ] {
            if let Some((parent, key)) = p.rsplit_once('/') {
                if let Some(m) = o.pointer_mut(parent).and_then(Value::as_object_mut) {
                    m.remove(key);
                }
            }
        }
        o
    };
    if strip(old) != strip(new) {
        return Err(forbidden(
            t,
            url_name(t),
            format!(
                "node {} is not allowed to update fields other than status.capacity and status.conditions",
                go_quote(node)
            ),
        ));
    }
    Ok(())
}

/// Whether a write by this user must be judged against the stored object.
fn compares_with_stored<'a>(user: &'a User, t: &Target) -> Option<&'a str> {
    let (node, kind) = restricted(user, t)?;
    match (kind, sub(t)) {
        (Guarded::Nodes, _) | (Guarded::Pods, "status") | (Guarded::Claims, "status") => Some(node),
        _ => None,
    }
}

/// The checks of an update on the object replacing `old` (`None`: an apply
/// that creates).
fn check_write(t: &Target, node: &str, old: Option<&Value>, new: &Value) -> Result<()> {
    match (guarded(t.resource), old) {
        (Some(Guarded::Nodes), _) => check_node(t, node, url_name(t), old, new),
        (Some(Guarded::Pods), Some(old)) => check_pod_status(t, node, old, new),
        (Some(Guarded::Claims), Some(old)) => check_claim_status(t, node, old, new),
        _ => Ok(()),
    }
}

fn resource_version(obj: Option<&Value>) -> Option<&str> {
    obj?.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|rv| !rv.is_empty())
}

/// `rest::update`, judged against the object it replaces: the version read
/// is made the write's precondition (when the client gave none), and a write
/// that lost to another is judged again on the fresh object.
pub async fn update(
    api: &Api,
    user: &User,
    t: &Target,
    obj: Value,
    opts: &WriteOptions,
) -> Result<Value> {
    let Some(node) = compares_with_stored(user, t) else {
        return rest::update(api, t, obj, opts).await;
    };
    let asked = resource_version(Some(&obj)).is_some();
    let deadline = tokio::time::Instant::now() + rest::RETRY_DEADLINE;
    loop {
        let old = api
            .objects
            .get(t.resource, t.namespace.as_deref(), url_name(t))
            .await?;
        check_write(t, node, Some(&old), &obj)?;
        let mut pinned = obj.clone();
        if !asked {
            if let (Some(rv), Some(m)) = (
                resource_version(Some(&old)),
                pinned.get_mut("metadata").and_then(Value::as_object_mut),
            ) {
                m.insert("resourceVersion".into(), Value::String(rv.to_string()));
            }
        }
        match rest::update(api, t, pinned, opts).await {
            Err(e) if !asked && rest::lost_race(&e) => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(rest::retries_timed_out());
                }
            }
            other => return other,
        }
    }
}

/// `patch::patch_checked`, judged against the object the patch applies to:
/// the stored version is read first, and a patch that applies to a newer
/// version (another writer got in between) is judged again on that one.
pub async fn patch(
    api: &Api,
    user: &User,
    t: &Target,
    q: &Query,
    headers: &HeaderMap,
    bytes: &[u8],
    check: patch::Check<'_>,
) -> Result<(u16, Value)> {
    let Some(node) = compares_with_stored(user, t) else {
        return patch::patch_checked(api, t, q, headers, bytes, check).await;
    };
    let deadline = tokio::time::Instant::now() + rest::RETRY_DEADLINE;
    let mut judged: Option<Option<String>> = None;
    loop {
        let old = api
            .objects
            .get_opt(t.resource, t.namespace.as_deref(), url_name(t))
            .await?;
        let version = resource_version(old.as_ref()).map(str::to_string);
        let moved = AtomicBool::new(false);
        let judge = |new: &Value| -> Result<()> {
            check(new)?;
            // The patched object carries the version it was made from.
            if let Some(from) = resource_version(Some(new)) {
                if Some(from) != version.as_deref() {
                    moved.store(true, Ordering::Relaxed);
                    return Err(StatusError::stale(t.resource, url_name(t)));
                }
            }
            check_write(t, node, old.as_ref(), new)
        };
        match patch::patch_checked(api, t, q, headers, bytes, &judge).await {
            // The patch names a version of its own that is not the stored
            // one: the object did not move, so that precondition failed.
            Err(e) if moved.load(Ordering::Relaxed) && judged.as_ref() == Some(&version) => {
                return Err(e)
            }
            Err(_) if moved.load(Ordering::Relaxed) => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(rest::retries_timed_out());
                }
                judged = Some(version);
            }
            other => return other,
        }
    }
}

/// Upstream's `admitServiceAccount`: a node's token request must be bound to
/// a pod, by uid, that is scheduled on the node.
pub async fn admit_token(
    api: &Api,
    user: &User,
    t: &Target,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<()> {
    let Some((node, Guarded::ServiceAccounts)) = restricted(user, t) else {
        return Ok(());
    };
    if sub(t) != "token" {
        return Ok(());
    }
    let name = url_name(t);
    let request = body::decode_object(&body::content_type(headers), bytes)?;
    let bound = |f: &str| str_at(&request, &format!("/spec/boundObjectRef/{f}"));
    if bound("apiVersion") != "v1" || bound("kind") != "Pod" || bound("name").is_empty() {
        return Err(forbidden(
            t,
            name,
            "node requested token not bound to a pod",
        ));
    }
    if bound("uid").is_empty() {
        return Err(forbidden(
            t,
            name,
            "node requested token with a pod binding without a uid",
        ));
    }
    let pods =
        skiff_api::registry::lookup("", "v1", "pods").ok_or_else(StatusError::no_such_resource)?;
    let pod = api
        .objects
        .get(pods, t.namespace.as_deref(), bound("name"))
        .await?;
    if str_at(&pod, "/metadata/uid") != bound("uid") {
        return Err(forbidden(
            t,
            name,
            format!(
                "the UID in the bound object reference ({}) does not match the UID in record. The object might have been deleted and then recreated",
                bound("uid")
            ),
        ));
    }
    if str_at(&pod, "/spec/nodeName") != node {
        return Err(forbidden(
            t,
            name,
            "node requested token bound to a pod scheduled on a different node",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
