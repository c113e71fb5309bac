//! Server-side apply and field ownership, as upstream's structured-merge-diff
//! does it, over the list keys of [`crate::schema`].
//!
//! Every write leaves `metadata.managedFields` saying which manager owns which
//! fields. [`apply`] merges an applied configuration into the live object, owns
//! what the configuration sets, drops what this manager applied before but no
//! longer does (unless someone else owns it), and refuses to change fields that
//! other managers own unless forced. [`record_update`] keeps ownership for
//! ordinary writes (create, update, patch): the writer gains the fields it
//! changed, everybody else loses them.
//!
//! Not done here: status/spec reset per subresource (the caller's strategy
//! decides what a write may change), the cap of ten updaters upstream merges
//! into "ancient-changes", and version conversion (one version per kind).

mod fieldset;
mod managed;
#[cfg(test)]
mod tests;
mod typed;

use serde_json::{Map, Value};

use crate::schema::{Cursor, GroupKind};
use fieldset::{path_string, FieldSet, PathElement};
use managed::{Entry, APPLY, UPDATE};

/// The annotation client-side `kubectl apply` keeps its configuration in.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The manager upstream assigns an object's existing fields to when it is first
/// applied to and has no managed fields.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// A field another manager owns that an apply would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    /// `"Apply"` or `"Update"`.
    pub operation: String,
    pub api_version: String,
    pub subresource: Option<String>,
    /// In upstream's notation: `.spec.ports[port=80,protocol="TCP"].targetPort`.
    pub path: String,
}

impl Conflict {
    /// The manager as upstream names it: `"kubectl"`, or `"m" using apps/v1` for
    /// an updater.
    pub fn manager_display(&self) -> String {
        managed::display_manager(
            &self.manager,
            &self.operation,
            &self.api_version,
            self.subresource.as_deref(),
        )
    }

    /// The message of the `FieldManagerConflict` cause for this field.
    pub fn cause_message(&self) -> String {
        format!("conflict with {}", self.manager_display())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Answer 409 Conflict with [`conflict_message`].
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The applied configuration is not valid for its kind (answer 422 or 400).
    #[error("{0}")]
    Invalid(String),
}

/// Upstream's conflict message, as the 409 Status carries it:
/// `Apply failed with 1 conflict: conflict with "m" using v1: .spec.replicas`, or
/// for several, one `conflicts with ...:` block per manager listing `- path`s.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [one] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            one.manager_display(),
            one.path
        );
    }
    let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
    for c in conflicts {
        let who = c.manager_display();
        match groups.iter_mut().find(|(m, _)| *m == who) {
            Some((_, paths)) => paths.push(&c.path),
            None => groups.push((who, vec![&c.path])),
        }
    }
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    let mut lines = Vec::new();
    for (who, paths) in groups {
        lines.push(format!("conflicts with {who}:"));
        lines.extend(paths.iter().map(|p| format!("- {p}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// Fields never tracked: identity and bookkeeping the server owns.
fn untracked() -> FieldSet {
    let mut s = FieldSet::new();
    let f = |n: &str| PathElement::Field(n.to_string());
    s.insert(vec![f("apiVersion")]);
    s.insert(vec![f("kind")]);
    s.insert(vec![f("metadata")]);
    for m in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        s.insert(vec![f("metadata"), f(m)]);
    }
    s
}

fn api_version(obj: Option<&Value>) -> Option<String> {
    obj?.get("apiVersion")?.as_str().map(str::to_string)
}

/// Server-side apply of `applied` (the request body, already parsed from YAML)
/// by `manager` onto `live` (`None`: the object is being created). Returns the
/// new object with `metadata.managedFields` updated; `now` is the RFC 3339 time
/// stamped on the manager's entry.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    kind: &GroupKind,
    now: &str,
) -> Result<Value, ApplyError> {
    if !applied.is_object() {
        return Err(ApplyError::Invalid(
            "the applied configuration must be an object".into(),
        ));
    }
    if applied
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        .is_some_and(|v| !v.is_null())
    {
        return Err(ApplyError::Invalid(
            "metadata.managedFields must be nil".into(),
        ));
    }
    let cur = Cursor::root(kind);
    let version = api_version(Some(applied))
        .or_else(|| api_version(live))
        .unwrap_or_default();
    let untracked = untracked();

    let mut entries = live.map(managed::decode).unwrap_or_default();
    let mut live_obj = live.cloned().unwrap_or_else(|| Value::Object(Map::new()));
    managed::strip(&mut live_obj);
    if live.is_some() && entries.is_empty() {
        // Someone wrote these fields before anyone tracked them: upstream makes
        // them this pseudo-manager's, so applying over them still conflicts.
        let set = typed::field_set(&live_obj, cur, false).unwrap_or_default();
        entries.push(Entry {
            manager: BEFORE_FIRST_APPLY.into(),
            operation: UPDATE.into(),
            api_version: api_version(live).unwrap_or_else(|| version.clone()),
            time: None,
            subresource: None,
            set: set.difference(&untracked),
        });
    }

    let config_set = typed::field_set(applied, cur, true)
        .map_err(ApplyError::Invalid)?
        .difference(&untracked);
    let mut merged = typed::merge(Some(&live_obj), applied, cur);

    let mine = |e: &Entry| e.same_manager(manager, APPLY, &version, None);
    let last = entries.iter().find(|e| mine(e)).map(|e| e.set.clone());
    match entries.iter_mut().find(|e| mine(e)) {
        Some(e) => {
            e.set = config_set.clone();
            e.api_version = version.clone();
        }
        None => entries.push(Entry {
            manager: manager.into(),
            operation: APPLY.into(),
            api_version: version.clone(),
            time: None,
            subresource: None,
            set: config_set.clone(),
        }),
    }

    // Prune: what this manager applied last time, no longer applies, and
    // nobody else owns.
    if let Some(last) = &last {
        let owned = entries
            .iter()
            .fold(FieldSet::new(), |acc, e| acc.union(&e.set));
        let doomed = last.difference(&owned);
        if !doomed.is_empty() {
            typed::remove(&mut merged, &doomed, &owned, cur, &Vec::new());
        }
    }

    let cmp = typed::compare(&live_obj, &merged, cur);
    let changed = cmp.changed();
    let mut conflicts = Vec::new();
    for e in entries.iter().filter(|e| !mine(e)) {
        for p in e.set.intersection(&changed).paths_in_upstream_order() {
            conflicts.push(Conflict {
                manager: e.manager.clone(),
                operation: e.operation.clone(),
                api_version: e.api_version.clone(),
                subresource: e.subresource.clone(),
                path: path_string(&p),
            });
        }
    }
    if !conflicts.is_empty() && !force && !allowed_by_last_applied(live, manager, &conflicts, cur) {
        conflicts.sort_by_key(|c| {
            (
                c.manager.clone(),
                c.operation.clone(),
                c.api_version.clone(),
            )
        });
        return Err(ApplyError::Conflicts(conflicts));
    }
    for e in entries.iter_mut().filter(|e| !mine(e)) {
        e.set = e.set.difference(&changed).difference(&cmp.removed);
    }
    let touched = live.is_none() || !cmp.is_same() || last.as_ref() != Some(&config_set);
    if let Some(e) = entries.iter_mut().find(|e| mine(e)) {
        if touched || e.time.is_none() {
            e.time = Some(now.to_string());
        }
    }

    if manager == "kubectl" && has_last_applied(live) {
        set_last_applied(&mut merged, applied);
    }
    managed::encode_into(&mut merged, entries);
    Ok(merged)
}

/// Records an ordinary write (create, update, any patch) by `manager`: it gains
/// ownership of what it changed from `old` to `new`, others lose it, and fields
/// it removed are nobody's. Returns `new` with `metadata.managedFields` set.
pub fn record_update(
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    kind: &GroupKind,
    now: &str,
) -> Value {
    record_subresource_update(old, new, manager, None, kind, now)
}

/// [`record_update`] for a write through a subresource (`"status"`, `"scale"`):
/// upstream keeps such entries apart, marked with the subresource.
pub fn record_subresource_update(
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    subresource: Option<&str>,
    kind: &GroupKind,
    now: &str,
) -> Value {
    let cur = Cursor::root(kind);
    let version = api_version(Some(new))
        .or_else(|| api_version(old))
        .unwrap_or_default();
    let mut entries = managed::decode_live_or_new(old, new);
    let mut old_obj = old.cloned().unwrap_or_else(|| Value::Object(Map::new()));
    managed::strip(&mut old_obj);
    let mut out = new.clone();
    managed::strip(&mut out);

    let cmp = typed::compare_for_update(&old_obj, &out, cur);
    let changed = cmp.changed().difference(&untracked());
    for e in &mut entries {
        e.set = e.set.difference(&changed).difference(&cmp.removed);
    }
    if !changed.is_empty() {
        match entries
            .iter_mut()
            .find(|e| e.same_manager(manager, UPDATE, &version, subresource))
        {
            Some(e) => {
                e.set = e.set.union(&changed);
                e.time = Some(now.to_string());
            }
            None => entries.push(Entry {
                manager: manager.into(),
                operation: UPDATE.into(),
                api_version: version,
                time: Some(now.to_string()),
                subresource: subresource.map(str::to_string),
                set: changed,
            }),
        }
    }
    managed::encode_into(&mut out, entries);
    out
}

fn last_applied(obj: Option<&Value>) -> Option<&str> {
    obj?.get("metadata")?
        .get("annotations")?
        .get(LAST_APPLIED_ANNOTATION)?
        .as_str()
        .filter(|s| !s.is_empty())
}

fn has_last_applied(obj: Option<&Value>) -> bool {
    last_applied(obj).is_some()
}

/// Upstream's path from client-side to server-side apply: `kubectl` may take
/// over fields from other managers without force where the live object still
/// holds what its last client-side apply set.
fn allowed_by_last_applied(
    live: Option<&Value>,
    manager: &str,
    conflicts: &[Conflict],
    cur: Cursor,
) -> bool {
    if manager != "kubectl" {
        return false;
    }
    let Some(last) = last_applied(live).and_then(|s| serde_json::from_str::<Value>(s).ok()) else {
        return false;
    };
    let Some(live) = live else { return false };
    let Ok(set) = typed::field_set(&last, cur, false) else {
        return false;
    };
    let allowed: Vec<String> = set
        .iter()
        .filter(|p| typed::same_at(&last, live, p, cur))
        .map(|p| path_string(p))
        .collect();
    conflicts.iter().all(|c| allowed.contains(&c.path))
}

/// Keeps the client-side apply annotation in step when `kubectl` applies
/// server-side, so a later client-side apply diffs against the right thing.
fn set_last_applied(obj: &mut Value, applied: &Value) {
    let mut config = applied.clone();
    if let Some(Value::Object(meta)) = config.get_mut("metadata") {
        if let Some(Value::Object(ann)) = meta.get_mut("annotations") {
            ann.shift_remove(LAST_APPLIED_ANNOTATION);
            if ann.is_empty() {
                meta.shift_remove("annotations");
            }
        }
    }
    // Go marshals maps with sorted keys; match the bytes kubectl itself writes.
    let text = sorted(&config).to_string();
    if let Some(Value::Object(ann)) = obj
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
    {
        ann.insert(LAST_APPLIED_ANNOTATION.into(), Value::String(text));
    }
}

fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}
