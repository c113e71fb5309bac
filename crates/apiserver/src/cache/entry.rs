//! What the watch cache keeps per object and per event: the object parsed once (for
//! selectors, Tables and metadata views) next to its JSON as served, encoded once and
//! shared (`Bytes`) by every list page and every watcher that sends it unchanged.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::Value;
use skiff_api::registry::Resource;
use skiff_api::StatusError;
use skiff_store::{KeyValue, Revision};

use crate::objects;

/// One object as the API serves it, at one revision: its JSON, and what selectors and
/// indexes read of it. The parsed object is not kept (it would take ten times the
/// JSON's size); the few readers that need it (a get, a Table) parse the bytes again.
pub struct Cached {
    /// Served form (`convert::from_storage`), `metadata.resourceVersion` stamped,
    /// serialised: what a list item or a watch event's object is, byte for byte.
    pub json: Bytes,
    /// The revision the object carries as its resourceVersion.
    pub revision: Revision,
    /// `metadata.labels`, for label selectors.
    labels: Box<[(String, String)]>,
    /// The kind's selectable fields that are not empty (upstream's
    /// `ToSelectableFields`), for field selectors.
    fields: Box<[(&'static str, String)]>,
}

impl Cached {
    /// Parses a stored value once, as `resource` serves it.
    pub fn decode(resource: &Resource, kv: &KeyValue) -> Result<Self, StatusError> {
        let value = objects::decode_as(resource, kv)?;
        Ok(Self::from_value(resource, &value, kv.mod_revision))
    }

    pub fn from_value(resource: &Resource, value: &Value, revision: Revision) -> Self {
        let json = Bytes::from(serde_json::to_vec(value).unwrap_or_default());
        let labels = value
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        let fields = skiff_api::fields::projection(resource.group, resource.kind, value);
        Self {
            json,
            revision,
            labels,
            fields: fields.into_boxed_slice(),
        }
    }

    /// The object itself, parsed from its bytes.
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A selectable field's value (`None`: empty or missing, which selectors read as "").
    pub fn field(&self, canonical: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(f, _)| *f == canonical)
            .map(|(_, v)| v.as_str())
    }

    /// The same object stamped with another revision: a deleted object is sent with the
    /// delete's revision, as upstream does.
    pub fn restamped(&self, resource: &Resource, revision: Revision) -> Self {
        let mut value = self.value();
        objects::set_resource_version(&mut value, revision);
        Self::from_value(resource, &value, revision)
    }
}

/// The type of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Added,
    Modified,
    Deleted,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Added => "ADDED",
            Kind::Modified => "MODIFIED",
            Kind::Deleted => "DELETED",
        }
    }
}

/// One change to one object of a cached resource.
pub struct CachedEvent {
    pub revision: Revision,
    pub key: String,
    pub kind: Kind,
    /// The object after the change; for a delete, the last value stamped with the
    /// delete's revision.
    pub object: std::sync::Arc<Cached>,
    /// The live value this change replaced (`None` for a create): what a filtered
    /// watcher compares against, and what a snapshot at an older revision shows.
    pub prev: Option<std::sync::Arc<Cached>>,
    /// `{"type":...,"object":...}\n` for an unfiltered JSON watcher, built once.
    pub line: Bytes,
    /// Its lines in other forms (a Table for `kubectl get -w`, metadata only), made
    /// by the first watcher that asks for one and shared with the others.
    renders: std::sync::Mutex<Vec<(String, Bytes)>>,
}

impl CachedEvent {
    pub fn new(
        revision: Revision,
        key: String,
        kind: Kind,
        object: std::sync::Arc<Cached>,
        prev: Option<std::sync::Arc<Cached>>,
    ) -> Self {
        let line = event_line(kind.as_str(), &object.json);
        Self {
            revision,
            key,
            kind,
            object,
            prev,
            line,
            renders: Default::default(),
        }
    }

    /// This event's line in the form named `form`, made by `make` the first time.
    pub fn rendered(&self, form: &str, make: impl FnOnce() -> Bytes) -> Bytes {
        let mut renders = self.renders.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, b)) = renders.iter().find(|(f, _)| f == form) {
            return b.clone();
        }
        let b = make();
        renders.push((form.to_owned(), b.clone()));
        b
    }
}

/// A watch event line around already-encoded object bytes: a copy, no serialisation.
pub fn event_line(kind: &str, object_json: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(object_json.len() + kind.len() + 24);
    b.put_slice(b"{\"type\":\"");
    b.put_slice(kind.as_bytes());
    b.put_slice(b"\",\"object\":");
    b.put_slice(object_json);
    b.put_slice(b"}\n");
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_line_is_the_json_a_serialiser_would_write() {
        let obj = serde_json::json!({"kind": "Service", "metadata": {"name": "a"}});
        let line = event_line("ADDED", &serde_json::to_vec(&obj).expect("json"));
        let parsed: Value = serde_json::from_slice(&line).expect("parses");
        assert_eq!(parsed, serde_json::json!({"type": "ADDED", "object": obj}));
        assert!(line.ends_with(b"\n"));
    }
}
