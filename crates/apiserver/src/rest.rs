//! The generic REST verbs over every registered resource: get, list, create,
//! update, patch, delete, deletecollection, and the status/scale subresources.

use std::sync::Arc;

use axum::response::Response;
use http::HeaderMap;
use serde_json::{json, Value};
use skiff_api::fields::FieldSelector;
use skiff_api::registry::{self, Resource};
use skiff_api::selector::LabelSelector;
use skiff_api::table::{self, IncludeObject};
use skiff_api::{validation, StatusError};

use crate::body::{self, FieldValidation};
use crate::cache::{self, Miss};
use crate::objects::revision_of;
use crate::request::{Query, Target};
use crate::response;
use crate::server::Api;
use crate::strategy;

pub type Result<T, E = StatusError> = std::result::Result<T, E>;

pub fn name_of(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/name").and_then(Value::as_str)
}

/// Label and field selectors of a list or watch request.
pub struct Filter {
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
    group: &'static str,
    kind: &'static str,
}

impl Filter {
    pub fn from_query(resource: &'static Resource, q: &Query) -> Result<Self> {
        let labels = match q.get("labelSelector").filter(|s| !s.is_empty()) {
            Some(s) => {
                Some(LabelSelector::parse(s).map_err(|e| StatusError::bad_request(e.to_string()))?)
            }
            None => None,
        };
        let fields = match q.get("fieldSelector").filter(|s| !s.is_empty()) {
            Some(s) => {
                let sel =
                    FieldSelector::parse(s).map_err(|e| StatusError::bad_request(e.to_string()))?;
                // Reject unsupported fields up front, even when nothing is stored yet.
                sel.validate(resource.group, resource.kind)
                    .map_err(|e| StatusError::bad_request(e.to_string()))?;
                Some(sel)
            }
            None => None,
        };
        Ok(Self {
            labels,
            fields,
            group: resource.group,
            kind: resource.kind,
        })
    }

    /// No selector at all: every object matches.
    pub fn is_everything(&self) -> bool {
        self.labels.is_none() && self.fields.is_none()
    }

    /// The value the selectors require of an indexed attribute, if they pin one.
    pub fn pinned(&self, by: cache::Indexed) -> Option<&str> {
        match by {
            cache::Indexed::Field(field) => self
                .fields
                .as_ref()
                .and_then(|f| f.requires_exact_match(field)),
            cache::Indexed::Label(label) => self
                .labels
                .as_ref()
                .and_then(|l| l.requires_exact_match(label)),
        }
    }

    /// [`Self::matches`] for an object of the watch cache, from what it keeps of
    /// the object (its labels and selectable fields) without parsing it.
    pub fn matches_cached(&self, obj: &cache::Cached) -> bool {
        self.labels
            .as_ref()
            .is_none_or(|s| s.matches_lookup(|k| obj.label(k)))
            && self.fields.as_ref().is_none_or(|f| {
                f.matches_projection(self.group, self.kind, |field| obj.field(field))
            })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels_ok = self
            .labels
            .as_ref()
            .is_none_or(|s| s.matches(obj.pointer("/metadata/labels").and_then(Value::as_object)));
        labels_ok
            && self
                .fields
                .as_ref()
                .is_none_or(|f| f.matches(self.group, self.kind, obj))
    }
}

fn include_object(q: &Query) -> IncludeObject {
    match q.get("includeObject") {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    }
}

/// Renders an object for the client as its `Accept` asks: a Table, its
/// PartialObjectMetadata, or the object itself. Every verb that answers with
/// an object goes through here (upstream transforms write responses too). A
/// `Status` (a delete that is done) is never transformed, and an object of
/// another kind (a `Scale`) has no Table of its own.
pub fn render_one(headers: &HeaderMap, q: &Query, resource: &Resource, obj: Value) -> Value {
    let kind = obj.get("kind").and_then(Value::as_str);
    if kind == Some("Status") {
        return obj;
    }
    match response::shape(headers, false) {
        response::Shape::Table if kind.is_none_or(|k| k == resource.kind) => table::table(
            resource.group,
            resource.kind,
            &[obj],
            chrono::Utc::now(),
            include_object(q),
            None,
        ),
        response::Shape::Metadata => response::partial_metadata(&obj),
        _ => obj,
    }
}

// ---- continue tokens -------------------------------------------------------

fn encode_continue(revision: i64, last_key: &str) -> String {
    use base64::Engine;
    let raw = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": last_key}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// A continue token's revision and the key its page ended at.
fn decode_continue(token: &str) -> Result<(i64, String)> {
    use base64::Engine;
    let bad = || {
        StatusError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    let rv = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    Ok((rv, start.to_string()))
}

// ---- read verbs --------------------------------------------------------------

/// A get's response. An object served as it is (no Table, no metadata view, no
/// scale) from the watch cache is its cached JSON, sent without parsing it again.
pub async fn get_response(
    api: &Api,
    t: &Target,
    q: &Query,
    headers: &HeaderMap,
) -> Result<Response> {
    let plain = matches!(t.subresource.as_deref(), None | Some("status"))
        && response::shape(headers, false) == response::Shape::Object;
    if plain {
        let name = t.name.as_deref().unwrap_or_default();
        if let Some(found) = get_cached(api, t, q, name).await? {
            return Ok(response::json_bytes(200, found.json.clone()));
        }
    }
    Ok(response::json(200, &get(api, t, q, headers).await?))
}

pub async fn get(api: &Api, t: &Target, q: &Query, headers: &HeaderMap) -> Result<Value> {
    let name = t.name.as_deref().unwrap_or_default();
    let obj = match get_cached(api, t, q, name).await? {
        Some(obj) => obj.value(),
        None => {
            api.objects
                .get(t.resource, t.namespace.as_deref(), name)
                .await?
        }
    };
    match t.subresource.as_deref() {
        None | Some("status" | "ephemeralcontainers") => {
            Ok(render_one(headers, q, t.resource, obj))
        }
        Some("scale") if t.resource.scale => scale_of(&obj),
        Some(_) => Err(StatusError::no_such_resource()),
    }
}

/// A get from the watch cache, as fresh as the request asks; `None`: read the store.
async fn get_cached(
    api: &Api,
    t: &Target,
    q: &Query,
    name: &str,
) -> Result<Option<Arc<cache::Cached>>> {
    let Some(freshness) = cache::read::get_freshness(q)? else {
        return Ok(None);
    };
    match api.cache.fresh(&api.objects, t.resource, freshness).await {
        Ok((c, _)) => match c.get(&t.resource.key(t.namespace.as_deref(), name)).0 {
            Some(found) => Ok(Some(found)),
            None => Err(StatusError::not_found(t.resource, name)),
        },
        Err(Miss::Fail(e)) => Err(e),
        Err(Miss::Store) => Ok(None),
    }
}

/// A list's items: the cache's (encoded already) or the store's.
enum Items {
    Cached(Vec<Arc<cache::Cached>>),
    Values(Vec<Value>),
}

impl Items {
    fn into_values(self) -> Vec<Value> {
        match self {
            Items::Cached(c) => c.iter().map(|c| c.value()).collect(),
            Items::Values(v) => v,
        }
    }
}

/// One page of a list, before rendering.
struct Listed {
    items: Items,
    revision: i64,
    continue_after: Option<String>,
    /// Upstream's `remainingItemCount`, where it is known.
    remaining: Option<usize>,
}

pub async fn list(api: &Api, t: &Target, q: &Query, headers: &HeaderMap) -> Result<Response> {
    let filter = Filter::from_query(t.resource, q)?;
    let limit = q.int("limit")?.filter(|l| *l > 0).map(|l| l as usize);
    let token = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(c) => Some(decode_continue(c)?),
        None => None,
    };
    let freshness = cache::read::list_freshness(q, limit.is_some(), token.as_ref().map(|t| t.0))?;
    let continuing = token.is_some();
    let start = token.map(|t| t.1);
    let listed = match api.cache.fresh(&api.objects, t.resource, freshness).await {
        Ok((c, at)) => {
            let prefix = t.resource.key_prefix(t.namespace.as_deref());
            let page = c
                .page(
                    &prefix,
                    at,
                    start.as_deref(),
                    limit,
                    &|o| filter.matches_cached(o),
                    c.indexed.and_then(|by| filter.pinned(by)),
                )
                .map_err(|old| match (continuing, at) {
                    (true, _) => cache::read::continue_expired(),
                    (false, at) => StatusError::expired(at.unwrap_or_default(), old.oldest),
                })?;
            Listed {
                items: Items::Cached(page.items),
                revision: page.revision,
                continue_after: page.continue_after,
                remaining: Some(page.remaining),
            }
        }
        Err(Miss::Fail(e)) => return Err(e),
        Err(Miss::Store) => list_store(api, t, &filter, limit, start).await?,
    };
    let mut meta = json!({"resourceVersion": listed.revision.to_string()});
    if let Some(last) = &listed.continue_after {
        meta["continue"] = json!(encode_continue(listed.revision, last));
        if let Some(n) = listed.remaining.filter(|_| filter.is_everything()) {
            meta["remainingItemCount"] = json!(n);
        }
    }
    let value = match response::shape(headers, true) {
        response::Shape::Table => table::table(
            t.resource.group,
            t.resource.kind,
            &listed.items.into_values(),
            chrono::Utc::now(),
            include_object(q),
            Some(meta),
        ),
        response::Shape::Metadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": meta,
            "items": listed.items.into_values().iter().map(response::partial_metadata).collect::<Vec<_>>(),
        }),
        response::Shape::Object => match listed.items {
            Items::Cached(items) => {
                return Ok(response::json_bytes(
                    200,
                    cache::read::list_body(
                        &t.resource.list_kind(),
                        &t.resource.api_version(),
                        &meta,
                        &items,
                    ),
                ))
            }
            Items::Values(items) => json!({
                "kind": t.resource.list_kind(),
                "apiVersion": t.resource.api_version(),
                "metadata": meta,
                "items": items,
            }),
        },
    };
    Ok(response::json(200, &value))
}

/// A list read from the store (the cache is not running): pages at the current
/// revision whatever the request's resourceVersion, as before the cache.
async fn list_store(
    api: &Api,
    t: &Target,
    filter: &Filter,
    limit: Option<usize>,
    mut start: Option<String>,
) -> Result<Listed> {
    let mut items = Vec::new();
    let mut revision;
    let mut more_after: Option<String> = None;
    let mut remaining = None;
    loop {
        let want = limit.map(|l| l - items.len());
        let page = api
            .objects
            .list(t.resource, t.namespace.as_deref(), start.clone(), want)
            .await?;
        revision = page.revision;
        let fetched = page.items.len();
        items.extend(page.items.into_iter().filter(|o| filter.matches(o)));
        if !page.more || fetched == 0 {
            break;
        }
        start = page.last_key.clone();
        if limit.is_some_and(|l| items.len() >= l) {
            more_after = page.last_key;
            remaining = page.remaining;
            break;
        }
    }
    Ok(Listed {
        items: Items::Values(items),
        revision,
        continue_after: more_after,
        remaining,
    })
}

// ---- write verbs -------------------------------------------------------------

/// Options shared by the write verbs.
pub struct WriteOptions {
    pub dry_run: bool,
    pub validation: FieldValidation,
    pub field_manager: Option<String>,
}

impl WriteOptions {
    /// Reads the options; the field manager defaults to the client's User-Agent
    /// product (`kubectl`, `kube-rs`...), as upstream does.
    pub fn from_request(q: &Query, headers: &HeaderMap) -> Result<Self> {
        let mut o = Self::from_query(q)?;
        if o.field_manager.is_none() {
            o.field_manager = headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .and_then(|ua| ua.split('/').next())
                .filter(|m| !m.is_empty() && m.len() <= 128)
                .map(str::to_string);
        }
        Ok(o)
    }

    pub fn from_query(q: &Query) -> Result<Self> {
        let dry_run = match q.get("dryRun") {
            None | Some("") => false,
            Some("All") => true,
            Some(other) => {
                return Err(StatusError::bad_request(format!(
                    "unsupported dryRun value: {other:?}, supported values: \"All\""
                )))
            }
        };
        Ok(Self {
            dry_run,
            validation: FieldValidation::parse(q.get("fieldValidation"))?,
            field_manager: q.get("fieldManager").map(str::to_string),
        })
    }
}

const GENERATE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub(crate) fn generated_name(base: &str) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| GENERATE_ALPHABET[rng.random_range(0..GENERATE_ALPHABET.len())] as char)
        .collect();
    // Upstream truncates the base so that the result stays a valid name.
    let base: String = base.chars().take(63 - 5).collect();
    format!("{base}{suffix}")
}

async fn check_namespace(
    api: &Api,
    resource: &'static Resource,
    ns: Option<&str>,
    name: &str,
) -> Result<()> {
    let (true, Some(ns)) = (resource.namespaced, ns) else {
        return Ok(());
    };
    use crate::namespace_cache::Known;
    let terminating = match api.namespace_cache.lookup(ns) {
        Known::Active => false,
        Known::Terminating => true,
        Known::Unknown => {
            let namespaces = registry::lookup("", "v1", "namespaces")
                .ok_or_else(StatusError::no_such_resource)?;
            let nsobj = api.objects.get(namespaces, None, ns).await?;
            nsobj.pointer("/metadata/deletionTimestamp").is_some()
        }
    };
    if terminating {
        return Err(StatusError::forbidden(
            resource,
            name,
            &format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        ));
    }
    Ok(())
}

fn validate(resource: &'static Resource, obj: &Value, old: Option<&Value>) -> Result<()> {
    let name = name_of(obj).unwrap_or_default().to_string();
    let mut errs = match obj.get("metadata").and_then(Value::as_object) {
        Some(m) => validation::object_meta(resource, m),
        None => vec![validation::FieldError::required(
            "metadata.name",
            "name or generateName is required",
        )],
    };
    errs.extend(skiff_api::validate::validate(resource, obj, old));
    if errs.is_empty() {
        Ok(())
    } else {
        Err(StatusError::invalid(resource, &name, &errs))
    }
}

/// Decodes and checks a create/update body for `t`.
pub fn decode_body(
    t: &Target,
    headers: &HeaderMap,
    bytes: &[u8],
    opts: &WriteOptions,
) -> Result<(Value, Vec<String>)> {
    let media = body::content_type(headers);
    let obj = body::decode_object(&media, bytes)?;
    if t.subresource.as_deref() == Some("scale") {
        return Ok((obj, Vec::new()));
    }
    let duplicates = if media == body::JSON {
        body::duplicate_fields(bytes)
    } else {
        Vec::new()
    };
    body::check_object(t.resource, obj, opts.validation, &duplicates)
}

fn check_namespace_matches(t: &Target, obj: &Value) -> Result<()> {
    if let (Some(ns), Some(body_ns)) = (
        t.namespace.as_deref(),
        obj.pointer("/metadata/namespace").and_then(Value::as_str),
    ) {
        if ns != body_ns && !body_ns.is_empty() {
            return Err(StatusError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    Ok(())
}

pub async fn create(api: &Api, t: &Target, mut obj: Value, opts: &WriteOptions) -> Result<Value> {
    check_namespace_matches(t, &obj)?;
    let generate = obj
        .pointer("/metadata/generateName")
        .and_then(Value::as_str)
        .map(str::to_string);
    let given = name_of(&obj).filter(|n| !n.is_empty()).map(str::to_string);
    if given.is_none() && generate.is_none() {
        return Err(StatusError::invalid(
            t.resource,
            "",
            &[validation::FieldError::required(
                "metadata.name",
                "name or generateName is required",
            )],
        ));
    }
    let ns = t.namespace.as_deref();
    check_namespace(api, t.resource, ns, given.as_deref().unwrap_or_default()).await?;
    strategy::prepare_create(t.resource, &mut obj, ns);
    skiff_api::defaults::apply(t.resource, &mut obj);
    if (t.resource.group, t.resource.kind) == ("", "Pod") {
        skiff_api::admission::default_toleration_seconds(
            &mut obj,
            api.admission.not_ready_toleration_seconds,
            api.admission.unreachable_toleration_seconds,
        );
        crate::sa_admission::admit(api, t.resource, ns.unwrap_or_default(), &mut obj).await?;
    }
    for attempt in 0..8 {
        let name = match (&given, &generate) {
            (Some(n), _) => n.clone(),
            (None, Some(base)) => generated_name(base),
            (None, None) => String::new(),
        };
        obj["metadata"]["name"] = json!(name);
        strategy::canonicalize(t.resource, &mut obj);
        validate(t.resource, &obj, None)?;
        if let Some(manager) = &opts.field_manager {
            crate::managed::record(t.resource, None, &mut obj, manager);
        }
        crate::services::before_create(api, t.resource, &mut obj).await?;
        if opts.dry_run {
            crate::services::after_write(api, t.resource, None, &obj, false).await;
            return Ok(obj);
        }
        let result = api.objects.create(t.resource, ns, &name, &obj).await;
        crate::services::after_write(api, t.resource, None, &obj, result.is_ok()).await;
        match result {
            Err(e) if e.reason == "AlreadyExists" && given.is_none() && attempt < 7 => continue,
            other => return other,
        }
    }
    Err(StatusError::internal("could not generate a unique name"))
}

/// Writes `new` over `old` after the server-side preparation; a no-op write is skipped.
pub async fn write_update(
    api: &Api,
    t: &Target,
    old: &Value,
    mut new: Value,
    opts: &WriteOptions,
) -> Result<Value> {
    let name = t.name.clone().unwrap_or_default();
    strategy::prepare_update(t.resource, old, &mut new, t.subresource.as_deref());
    skiff_api::defaults::apply(t.resource, &mut new);
    strategy::canonicalize(t.resource, &mut new);
    validate(t.resource, &new, Some(old))?;
    if let Some(manager) = &opts.field_manager {
        crate::managed::record(t.resource, Some(old), &mut new, manager);
    }
    if strategy::same_content(old, &new) {
        return Ok(old.clone());
    }
    crate::services::before_update(api, t.resource, old, &mut new).await?;
    if opts.dry_run {
        crate::services::after_write(api, t.resource, Some(old), &new, false).await;
        return Ok(new);
    }
    let expected = revision_of(old).unwrap_or_default();
    // The last finalizer is gone from an object being deleted (not a pod still in
    // its grace period): delete it now.
    let finalized = new.pointer("/metadata/deletionTimestamp").is_some()
        && new
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .is_none_or(|g| g == 0)
        && new
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
    if finalized && t.resource.kind != "Namespace" {
        let removed = api
            .objects
            .delete(t.resource, t.namespace.as_deref(), &name, Some(expected))
            .await?;
        crate::services::after_delete(api, t.resource, &removed).await;
        return Ok(removed);
    }
    let result = api
        .objects
        .update(t.resource, t.namespace.as_deref(), &name, &new, expected)
        .await;
    crate::services::after_write(api, t.resource, Some(old), &new, result.is_ok()).await;
    result
}

pub async fn update(api: &Api, t: &Target, obj: Value, opts: &WriteOptions) -> Result<Value> {
    let name = t.name.clone().unwrap_or_default();
    if t.subresource.as_deref() == Some("scale") {
        let replicas = obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0));
        let mut patch = json!({});
        skiff_api::crd::set_spec_replicas(t.resource, &mut patch, replicas);
        return patch_with(api, t, opts, |cur| {
            Ok(skiff_patch::merge_patch(cur, &patch))
        })
        .await
        .and_then(|o| scale_of(&o));
    }
    if let Some(body_name) = name_of(&obj) {
        if body_name != name {
            return Err(StatusError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
    }
    check_namespace_matches(t, &obj)?;
    let old = api
        .objects
        .get(t.resource, t.namespace.as_deref(), &name)
        .await?;
    if let Some(rv) = obj
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
    {
        if !rv.is_empty()
            && Some(rv)
                != old
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
        {
            return Err(StatusError::stale(t.resource, &name));
        }
    }
    write_update(api, t, &old, obj, opts).await
}

/// How long a write without a resourceVersion precondition keeps retrying
/// after losing races to other writers: upstream's GuaranteedUpdate retries
/// without a count, each lost race meaning another writer made progress; the
/// bound is upstream's default request timeout.
pub const RETRY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether a write failed only because the object changed under it (the
/// store's compare-and-swap), which a write without a precondition retries.
pub fn lost_race(e: &StatusError) -> bool {
    e.code == 409 && e.reason == "Conflict"
}

/// The answer when a write kept losing races until [`RETRY_DEADLINE`].
pub fn retries_timed_out() -> StatusError {
    StatusError::timeout(
        "Timeout: request did not complete within requested timeout - context deadline exceeded",
    )
}

/// Read-modify-write as upstream's GuaranteedUpdate: `f` maps the current
/// object to the new one, and is run again on the fresh object whenever
/// another writer got in between. Only a resourceVersion the patch itself
/// sets (one the result carries that the current object does not) is a
/// precondition, and only that ends in 409 Conflict.
pub async fn patch_with<F>(api: &Api, t: &Target, opts: &WriteOptions, f: F) -> Result<Value>
where
    F: Fn(&Value) -> Result<Value>,
{
    let name = t.name.clone().unwrap_or_default();
    let deadline = tokio::time::Instant::now() + RETRY_DEADLINE;
    loop {
        let old = api
            .objects
            .get(t.resource, t.namespace.as_deref(), &name)
            .await?;
        let mut new = f(&old)?;
        let current = old
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str);
        match new
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
        {
            // The patch set a resourceVersion other than the current one.
            Some(rv) if !rv.is_empty() && Some(rv) != current => {
                return Err(StatusError::stale(t.resource, &name));
            }
            _ => {}
        }
        if name_of(&new) != Some(name.as_str()) {
            return Err(StatusError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                name_of(&new).unwrap_or_default()
            )));
        }
        if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        match write_update(api, t, &old, new, opts).await {
            // A precondition the patch set was checked against `old` above:
            // on the fresh object it fails there, not here.
            Err(e) if lost_race(&e) => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(retries_timed_out());
                }
            }
            other => return other,
        }
    }
}

/// A custom resource's Scale, read from its CRD's scale paths.
fn custom_scale(obj: &Value, meta: &Value) -> Option<Value> {
    let av = obj.get("apiVersion").and_then(Value::as_str)?;
    let (group, version) = registry::split_api_version(av);
    let kind = obj.get("kind").and_then(Value::as_str)?;
    let def = skiff_api::crd::registered::definition_by_kind(group, kind)?;
    let paths = def.version(version)?.scale.clone()?;
    let at = |dotted: &str| obj.pointer(&skiff_api::crd::json_pointer(dotted)).cloned();
    let selector = paths
        .label_selector
        .as_deref()
        .and_then(at)
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    Some(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": at(&paths.spec_replicas).unwrap_or(json!(0))},
        "status": {
            "replicas": at(&paths.status_replicas).unwrap_or(json!(0)),
            "selector": selector,
        },
    }))
}

/// The `autoscaling/v1 Scale` view of an object with `spec.replicas`.
pub fn scale_of(obj: &Value) -> Result<Value> {
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    if let Some(scale) = custom_scale(obj, &meta) {
        return Ok(scale);
    }
    // A ReplicationController's selector is a plain label map.
    let rc_selector = (obj.get("kind").and_then(Value::as_str) == Some("ReplicationController"))
        .then(|| {
            obj.pointer("/spec/selector")
                .map(|m| json!({ "matchLabels": m }))
        })
        .flatten();
    let selector = rc_selector
        .as_ref()
        .or(obj.pointer("/spec/selector"))
        .map(|s| skiff_api::selector::LabelSelector::from_json(s).map(|l| l.to_string()))
        .transpose()
        .map_err(|e| StatusError::internal(e.to_string()))?
        .unwrap_or_default();
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    }))
}
