//! The custom resources served now, one set per established CustomResourceDefinition.
//!
//! Routing, discovery, storage and the watch cache hold `&'static Resource`s (the
//! watch cache even keys by address), so a custom resource's `Resource` is leaked
//! once and interned: registering the same definition again, or again after a
//! restart of its CRD, reuses the same value. Leaks are bounded by
//! [`MAX_INTERNED`] resources; past it a new definition is refused (logged by the
//! caller) rather than growing memory without end.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use super::Definition;
use crate::registry::{Resource, VERBS_ALL};

/// At most this many distinct custom `Resource` values are ever leaked.
pub const MAX_INTERNED: usize = 4096;

#[derive(Default)]
struct Served {
    /// By CRD name (`<plural>.<group>`).
    by_name: HashMap<String, Entry>,
}

struct Entry {
    definition: Arc<Definition>,
    resources: Vec<&'static Resource>,
}

static SERVED: RwLock<Option<Served>> = RwLock::new(None);

#[derive(Default)]
struct Interned {
    strings: HashSet<&'static str>,
    slices: Vec<&'static [&'static str]>,
    resources: Vec<&'static Resource>,
}

static INTERNED: Mutex<Option<Interned>> = Mutex::new(None);

/// Why a definition could not be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegisterError {
    #[error("too many custom resource versions registered (at most {MAX_INTERNED})")]
    TooMany,
}

impl Interned {
    fn str(&mut self, s: &str) -> &'static str {
        if let Some(found) = self.strings.get(s) {
            return found;
        }
        let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
        self.strings.insert(leaked);
        leaked
    }

    fn slice(&mut self, items: &[String]) -> &'static [&'static str] {
        let wanted: Vec<&'static str> = items.iter().map(|s| self.str(s)).collect();
        if let Some(found) = self.slices.iter().find(|s| **s == wanted.as_slice()) {
            return found;
        }
        let leaked: &'static [&'static str] = Box::leak(wanted.into_boxed_slice());
        self.slices.push(leaked);
        leaked
    }

    fn resource(&mut self, r: Resource) -> Result<&'static Resource, RegisterError> {
        if let Some(found) = self.resources.iter().find(|o| ***o == r) {
            return Ok(found);
        }
        if self.resources.len() >= MAX_INTERNED {
            return Err(RegisterError::TooMany);
        }
        let leaked: &'static Resource = Box::leak(Box::new(r));
        self.resources.push(leaked);
        Ok(leaked)
    }
}

/// The resources `def` serves: one per served version.
fn resources_of(def: &Definition) -> Result<Vec<&'static Resource>, RegisterError> {
    let mut guard = INTERNED.lock().unwrap_or_else(|e| e.into_inner());
    let interned = guard.get_or_insert_with(Interned::default);
    let storage = interned.str(&format!("{}/{}", def.group, def.plural));
    let group = interned.str(&def.group);
    let plural = interned.str(&def.plural);
    let singular = interned.str(&def.singular);
    let kind = interned.str(&def.kind);
    let short_names = interned.slice(&def.short_names);
    let categories = interned.slice(&def.categories);
    let mut out = Vec::new();
    for v in def.versions.iter().filter(|v| v.served) {
        let version = interned.str(&v.name);
        out.push(interned.resource(Resource {
            group,
            version,
            plural,
            singular,
            kind,
            namespaced: def.namespaced,
            short_names,
            categories,
            verbs: VERBS_ALL,
            status: v.status,
            scale: v.scale.is_some(),
            has_spec: true,
            storage,
        })?);
    }
    Ok(out)
}

fn read() -> std::sync::RwLockReadGuard<'static, Option<Served>> {
    SERVED.read().unwrap_or_else(|e| e.into_inner())
}

/// Serves `def`'s resources (replacing what an earlier version of it served).
pub fn register(def: Definition) -> Result<(), RegisterError> {
    let resources = resources_of(&def)?;
    let mut guard = SERVED.write().unwrap_or_else(|e| e.into_inner());
    guard.get_or_insert_with(Served::default).by_name.insert(
        def.name.clone(),
        Entry {
            definition: Arc::new(def),
            resources,
        },
    );
    Ok(())
}

/// Stops serving the resources of the CRD `name`.
pub fn unregister(name: &str) {
    let mut guard = SERVED.write().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = guard.as_mut() {
        s.by_name.remove(name);
    }
}

/// Keeps serving only the CRDs `keep` says yes to (a relist found the others gone).
pub fn retain(keep: impl Fn(&str) -> bool) {
    let mut guard = SERVED.write().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = guard.as_mut() {
        s.by_name.retain(|name, _| keep(name));
    }
}

/// Every custom resource served now, ordered by CRD name for stable discovery.
pub fn resources() -> Vec<&'static Resource> {
    let guard = read();
    let Some(s) = guard.as_ref() else {
        return Vec::new();
    };
    let mut names: Vec<&String> = s.by_name.keys().collect();
    names.sort();
    names
        .into_iter()
        .flat_map(|n| s.by_name[n].resources.iter().copied())
        .collect()
}

pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    let guard = read();
    let e = guard.as_ref()?.by_name.get(&format!("{plural}.{group}"))?;
    e.resources.iter().copied().find(|r| r.version == version)
}

/// The preferred (storage, else first served) version's resource of `group`/`kind`.
pub fn by_kind(group: &str, kind: &str) -> Option<&'static Resource> {
    let guard = read();
    let e = guard
        .as_ref()?
        .by_name
        .values()
        .find(|e| e.definition.group == group && e.definition.kind == kind)?;
    let storage = e.definition.storage_version().map(|v| v.name.as_str());
    e.resources
        .iter()
        .copied()
        .find(|r| Some(r.version) == storage)
        .or_else(|| e.resources.first().copied())
}

/// The definition serving `group`/`plural`.
pub fn definition(group: &str, plural: &str) -> Option<Arc<Definition>> {
    let guard = read();
    let e = guard.as_ref()?.by_name.get(&format!("{plural}.{group}"))?;
    Some(e.definition.clone())
}

/// The definition of `group`/`kind` (the Table printer knows only those).
pub fn definition_by_kind(group: &str, kind: &str) -> Option<Arc<Definition>> {
    let guard = read();
    guard
        .as_ref()?
        .by_name
        .values()
        .find(|e| e.definition.group == group && e.definition.kind == kind)
        .map(|e| e.definition.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(name_group: &str) -> Definition {
        Definition::from_object(&json!({
            "metadata": {"name": format!("widgets.{name_group}")},
            "spec": {"group": name_group, "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [
                    {"name": "v1", "served": true, "storage": true},
                    {"name": "v1beta1", "served": true, "storage": false},
                    {"name": "v1alpha1", "served": false, "storage": false},
                ]}
        }))
        .unwrap()
    }

    #[test]
    fn served_versions_are_found_and_interned() {
        register(def("reg.example.com")).unwrap();
        let v1 = crate::registry::lookup("reg.example.com", "v1", "widgets").unwrap();
        assert_eq!(v1.kind, "Widget");
        assert_eq!(v1.storage, "reg.example.com/widgets");
        assert!(crate::registry::lookup("reg.example.com", "v1alpha1", "widgets").is_none());
        assert_eq!(
            crate::registry::by_kind("reg.example.com", "Widget").map(|r| r.version),
            Some("v1")
        );
        assert!(crate::registry::groups().contains(&"reg.example.com"));
        // The same definition again reuses the leaked value.
        register(def("reg.example.com")).unwrap();
        let again = crate::registry::lookup("reg.example.com", "v1", "widgets").unwrap();
        assert!(std::ptr::eq(v1, again));
        unregister("widgets.reg.example.com");
        assert!(crate::registry::lookup("reg.example.com", "v1", "widgets").is_none());
    }
}
