//! `metadata.managedFields`: decoding entries into field sets and back.

use serde_json::{Map, Value};

use super::fieldset::FieldSet;

pub const APPLY: &str = "Apply";
pub const UPDATE: &str = "Update";

/// One `ManagedFieldsEntry`.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: Option<String>,
    pub subresource: Option<String>,
    pub set: FieldSet,
}

impl Entry {
    /// Upstream's manager identity: appliers are one manager whatever API
    /// version they use; updaters are told apart by version too.
    pub fn same_manager(
        &self,
        manager: &str,
        operation: &str,
        api_version: &str,
        subresource: Option<&str>,
    ) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
            && (operation == APPLY || self.api_version == api_version)
    }

    fn decode(v: &Value) -> Option<Self> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        if v.get("fieldsType")
            .and_then(Value::as_str)
            .is_some_and(|t| t != "FieldsV1")
        {
            return None;
        }
        let operation = s("operation")?;
        if operation != APPLY && operation != UPDATE {
            return None;
        }
        let set = match v.get("fieldsV1") {
            Some(f) => FieldSet::from_fields_v1(f)?,
            None => FieldSet::new(),
        };
        Some(Self {
            manager: s("manager").unwrap_or_default(),
            operation,
            api_version: s("apiVersion").unwrap_or_default(),
            time: s("time"),
            subresource: s("subresource").filter(|s| !s.is_empty()),
            set,
        })
    }

    fn encode(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), self.manager.clone().into());
        m.insert("operation".into(), self.operation.clone().into());
        m.insert("apiVersion".into(), self.api_version.clone().into());
        if let Some(t) = &self.time {
            m.insert("time".into(), t.clone().into());
        }
        m.insert("fieldsType".into(), "FieldsV1".into());
        m.insert("fieldsV1".into(), self.set.to_fields_v1());
        if let Some(s) = &self.subresource {
            m.insert("subresource".into(), s.clone().into());
        }
        Value::Object(m)
    }
}

pub fn display_manager(
    manager: &str,
    operation: &str,
    api_version: &str,
    subresource: Option<&str>,
) -> String {
    let mut s = format!("{manager:?}");
    if let Some(sub) = subresource {
        s.push_str(&format!(" with subresource {sub:?}"));
    }
    if operation == UPDATE {
        s.push_str(&format!(" using {api_version}"));
    }
    s
}

fn managed_fields(obj: &Value) -> Option<&Value> {
    obj.get("metadata")?.get("managedFields")
}

/// Decodes an object's entries. Like upstream, one bad entry voids them all:
/// tracking then starts afresh rather than from a guess.
pub fn decode(obj: &Value) -> Vec<Entry> {
    let Some(Value::Array(items)) = managed_fields(obj) else {
        return Vec::new();
    };
    items
        .iter()
        .map(Entry::decode)
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default()
}

/// The entries a write starts from: those of the new object if it brings its
/// own (a client may set them), none if it resets them with `[{}]`, else those
/// of the live object (clients that know nothing of them must not drop them).
pub fn decode_live_or_new(live: Option<&Value>, new: &Value) -> Vec<Entry> {
    if let Some(Value::Array(items)) = managed_fields(new) {
        if items.len() == 1 && items[0].as_object().is_some_and(Map::is_empty) {
            return Vec::new();
        }
        let decoded = decode(new);
        if !decoded.is_empty() {
            return decoded;
        }
    }
    live.map(decode).unwrap_or_default()
}

/// Writes the entries into `obj`, in upstream's order: by operation, time,
/// manager, version, subresource. No entries: no field.
pub fn encode_into(obj: &mut Value, mut entries: Vec<Entry>) {
    entries.retain(|e| !e.set.is_empty());
    entries.sort_by(|a, b| {
        a.operation
            .cmp(&b.operation)
            .then_with(|| a.time.cmp(&b.time))
            .then_with(|| a.manager.cmp(&b.manager))
            .then_with(|| a.api_version.cmp(&b.api_version))
            .then_with(|| a.subresource.cmp(&b.subresource))
    });
    let Value::Object(root) = obj else { return };
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(meta) = meta else { return };
    if entries.is_empty() {
        meta.shift_remove("managedFields");
    } else {
        meta.insert(
            "managedFields".into(),
            Value::Array(entries.iter().map(Entry::encode).collect()),
        );
    }
}

/// Removes `metadata.managedFields`: it is bookkeeping, never compared or merged.
pub fn strip(obj: &mut Value) {
    if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
        meta.shift_remove("managedFields");
    }
}
