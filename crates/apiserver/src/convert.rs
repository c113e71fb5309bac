//! Conversion between the two versions of one stored resource. Events are stored
//! in their core/v1 shape (what `kubectl describe` and `involvedObject.*` field
//! selectors read) and served as events.k8s.io/v1 on the fly, as upstream does.

use serde_json::{Map, Value};
use skiff_api::registry::Resource;

/// Field renames between events.k8s.io/v1 (left) and core/v1 (right).
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn is_new_events(resource: &Resource) -> bool {
    (resource.group, resource.kind) == ("events.k8s.io", "Event")
}

fn rename(obj: Value, from_new: bool, api_version: &str) -> Value {
    let Value::Object(map) = obj else { return obj };
    let mut out = Map::with_capacity(map.len());
    for (k, v) in map {
        let key = EVENT_FIELDS
            .iter()
            .find(|(new, old)| if from_new { new == &k } else { old == &k })
            .map(|(new, old)| if from_new { *old } else { *new })
            .unwrap_or(k.as_str())
            .to_string();
        out.insert(key, v);
    }
    out.insert("apiVersion".into(), Value::String(api_version.into()));
    out.insert("kind".into(), Value::String("Event".into()));
    Value::Object(out)
}

/// The object as stored for `resource` (events.k8s.io events become core events).
pub fn to_storage(resource: &Resource, obj: &Value) -> Value {
    if is_new_events(resource) {
        rename(obj.clone(), true, "v1")
    } else {
        obj.clone()
    }
}

/// A stored object as `resource` serves it.
pub fn from_storage(resource: &Resource, obj: Value) -> Value {
    if is_new_events(resource) {
        rename(obj, false, "events.k8s.io/v1")
    } else if skiff_api::crd::definition_of(resource).is_some() {
        // Conversion `None`: a custom resource's versions differ only in apiVersion.
        let mut obj = obj;
        if let Some(m) = obj.as_object_mut() {
            m.insert("apiVersion".into(), Value::String(resource.api_version()));
        }
        obj
    } else {
        obj
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use skiff_api::registry::lookup;

    #[test]
    fn events_round_trip_between_versions() {
        let new = lookup("events.k8s.io", "v1", "events").unwrap();
        let e = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "hi", "reason": "Started",
            "reportingController": "skiff/agent", "type": "Normal"});
        let stored = to_storage(new, &e);
        assert_eq!(stored["apiVersion"], "v1");
        assert_eq!(stored["involvedObject"]["name"], "p");
        assert_eq!(stored["message"], "hi");
        assert_eq!(stored["reportingComponent"], "skiff/agent");
        assert_eq!(from_storage(new, stored), e);
        let core = lookup("", "v1", "events").unwrap();
        assert_eq!(to_storage(core, &e), e);
    }
}
