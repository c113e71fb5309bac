//! A definition's `status`: the names it was accepted under and the
//! `NamesAccepted`/`Established` conditions, worded as upstream's naming and
//! establishing controllers word them.

use serde_json::{json, Value};
use skiff_api::crd::Definition;

/// Why `crd`'s names cannot be served: another definition of the same group
/// already uses its plural, kind or one of its short names.
pub fn conflict(crd: &Value, all: &[Value]) -> Option<String> {
    let me = Definition::from_object(crd)?;
    for other in all {
        let Some(o) = Definition::from_object(other) else {
            continue;
        };
        if o.name == me.name || o.group != me.group {
            continue;
        }
        // The first one established keeps its names.
        let created = |o: &Value| {
            o.pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let older = (created(other), &o.name) < (created(crd), &me.name);
        if !older {
            continue;
        }
        if o.plural == me.plural || o.singular == me.plural {
            return Some(format!("\"{}\" is already in use", me.plural));
        }
        if o.kind == me.kind || o.list_kind == me.kind {
            return Some(format!("\"{}\" is already in use", me.kind));
        }
        if let Some(s) = me.short_names.iter().find(|s| o.short_names.contains(s)) {
            return Some(format!("\"{s}\" is already in use"));
        }
    }
    None
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Sets one condition, keeping its `lastTransitionTime` when its status is unchanged.
pub fn set_condition(status: &mut Value, type_: &str, state: &str, reason: &str, message: &str) {
    if !status.is_object() {
        *status = json!({});
    }
    let conditions = status
        .as_object_mut()
        .map(|m| m.entry("conditions").or_insert_with(|| json!([])));
    let Some(Value::Array(list)) = conditions else {
        return;
    };
    let since = list
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == state)
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(now()));
    let cond = json!({"type": type_, "status": state, "lastTransitionTime": since,
        "reason": reason, "message": message});
    match list.iter_mut().find(|c| c["type"] == type_) {
        Some(c) => *c = cond,
        None => list.push(cond),
    }
}

/// The status `crd` should have now.
pub fn status(crd: &Value, def: &Definition, conflict: Option<&str>) -> Value {
    let mut status = crd.get("status").cloned().unwrap_or_else(|| json!({}));
    match conflict {
        None => {
            let mut accepted = json!({"plural": def.plural, "singular": def.singular,
                "kind": def.kind, "listKind": def.list_kind});
            if !def.short_names.is_empty() {
                accepted["shortNames"] = json!(def.short_names);
            }
            if !def.categories.is_empty() {
                accepted["categories"] = json!(def.categories);
            }
            status["acceptedNames"] = accepted;
            set_condition(
                &mut status,
                "NamesAccepted",
                "True",
                "NoConflicts",
                "no conflicts found",
            );
            set_condition(
                &mut status,
                "Established",
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted",
            );
        }
        Some(why) => {
            if status.get("acceptedNames").is_none() {
                status["acceptedNames"] = json!({"plural": "", "kind": ""});
            }
            set_condition(&mut status, "NamesAccepted", "False", "NameConflict", why);
            set_condition(
                &mut status,
                "Established",
                "False",
                "NotAccepted",
                "not all names are accepted",
            );
        }
    }
    // Every version objects were ever stored in, the current storage one last.
    let mut stored: Vec<Value> = status
        .get("storedVersions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(v) = def.storage_version() {
        if !stored.iter().any(|s| s == v.name.as_str()) {
            stored.push(json!(v.name));
        }
    }
    status["storedVersions"] = Value::Array(stored);
    status
}

/// The status with its timestamps left out, to tell a real change from none.
pub fn without_times(status: &Value) -> Value {
    let mut s = status.clone();
    if let Some(list) = s.get_mut("conditions").and_then(Value::as_array_mut) {
        for c in list {
            if let Some(m) = c.as_object_mut() {
                m.remove("lastTransitionTime");
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(name: &str, plural: &str, kind: &str, created: &str) -> Value {
        json!({"metadata": {"name": format!("{plural}.{name}"), "creationTimestamp": created},
            "spec": {"group": name, "scope": "Namespaced",
                "names": {"plural": plural, "kind": kind},
                "versions": [{"name": "v1", "served": true, "storage": true}]}})
    }

    #[test]
    fn the_older_definition_keeps_its_names() {
        let a = crd("example.com", "foos", "Foo", "2026-01-01T00:00:00Z");
        let b = crd("example.com", "bars", "Foo", "2026-01-02T00:00:00Z");
        let all = [a.clone(), b.clone()];
        assert_eq!(conflict(&a, &all), None);
        assert_eq!(
            conflict(&b, &all).as_deref(),
            Some("\"Foo\" is already in use")
        );
    }

    #[test]
    fn an_accepted_definition_is_established() {
        let a = crd("example.com", "foos", "Foo", "2026-01-01T00:00:00Z");
        let def = Definition::from_object(&a).unwrap();
        let s = status(&a, &def, None);
        assert_eq!(s["acceptedNames"]["listKind"], "FooList");
        assert_eq!(s["conditions"][1]["type"], "Established");
        assert_eq!(s["conditions"][1]["status"], "True");
        assert_eq!(s["storedVersions"], json!(["v1"]));
        let mut again = a.clone();
        again["status"] = s.clone();
        assert_eq!(
            without_times(&status(&again, &def, None)),
            without_times(&s)
        );
    }
}
