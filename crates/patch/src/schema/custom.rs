//! Merge schemas of custom resources, built from their CRDs' structural schemas:
//! `x-kubernetes-list-type: map` (with `x-kubernetes-list-map-keys`) and `set`,
//! `x-kubernetes-map-type: atomic`, and `additionalProperties` maps. Strategic
//! merge patch is not served for custom resources (upstream refuses it), so keyed
//! lists carry no strategic merge key; server-side apply merges them by their keys.
//!
//! The tables are `'static` like the built-in ones, so a schema's table is leaked
//! once and interned by the schema's text; at most [`MAX_SCHEMAS`] are ever built
//! (past that a kind is merged as schemaless: every list atomic).

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use serde_json::Value;

use super::{Field, Key, Shape, TypeDef, META};

/// At most this many distinct schemas are ever turned into leaked tables.
pub const MAX_SCHEMAS: usize = 512;

type Roots = HashMap<(String, String), &'static TypeDef>;

static ROOTS: RwLock<Option<Roots>> = RwLock::new(None);
static BUILT: Mutex<Option<HashMap<String, &'static TypeDef>>> = Mutex::new(None);

/// Merges objects of `group`/`kind` by `schema` (a version's `openAPIV3Schema`).
pub fn register(group: &str, kind: &str, schema: &Value) {
    let text = schema.to_string();
    let root = {
        let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
        let built = built.get_or_insert_with(HashMap::new);
        match built.get(&text) {
            Some(t) => Some(*t),
            None if built.len() < MAX_SCHEMAS => {
                let t = root_of(schema);
                built.insert(text, t);
                Some(t)
            }
            None => None,
        }
    };
    let mut roots = ROOTS.write().unwrap_or_else(|e| e.into_inner());
    let roots = roots.get_or_insert_with(HashMap::new);
    match root {
        Some(t) => roots.insert((group.to_string(), kind.to_string()), t),
        None => roots.remove(&(group.to_string(), kind.to_string())),
    };
}

/// Forgets `group`/`kind` (its CRD is gone).
pub fn unregister(group: &str, kind: &str) {
    let mut roots = ROOTS.write().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = roots.as_mut() {
        r.remove(&(group.to_string(), kind.to_string()));
    }
}

pub(crate) fn root(group: &str, kind: &str) -> Option<&'static TypeDef> {
    let roots = ROOTS.read().unwrap_or_else(|e| e.into_inner());
    roots
        .as_ref()?
        .get(&(group.to_string(), kind.to_string()))
        .copied()
}

fn leak_str(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

/// The root table: metadata as every kind has it, then the schema's own fields.
fn root_of(schema: &Value) -> &'static TypeDef {
    let mut fields = vec![META];
    fields.extend(
        fields_of(schema)
            .into_iter()
            .filter(|f| f.name != "metadata"),
    );
    Box::leak(Box::new(TypeDef {
        name: "CustomResource",
        fields: Box::leak(fields.into_boxed_slice()),
    }))
}

/// The table of an object schema; `None` when nothing below it merges specially.
fn typedef_of(schema: &Value) -> Option<&'static TypeDef> {
    let fields = fields_of(schema);
    if fields.is_empty() {
        return None;
    }
    Some(Box::leak(Box::new(TypeDef {
        name: "CustomObject",
        fields: Box::leak(fields.into_boxed_slice()),
    })))
}

fn fields_of(schema: &Value) -> Vec<Field> {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    props
        .iter()
        .filter_map(|(name, s)| field_of(name, s))
        .collect()
}

/// A property's row, `None` for an ordinary field with nothing special below.
fn field_of(name: &str, s: &Value) -> Option<Field> {
    let str_of = |k: &str| s.get(k).and_then(Value::as_str);
    let (ty, shape) = match (str_of("type"), str_of("x-kubernetes-list-type")) {
        (Some("array"), Some("map")) => {
            let keys: Vec<Key> = s
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| {
                    k.iter()
                        .filter_map(Value::as_str)
                        .map(|n| Key {
                            name: leak_str(n),
                            default: None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            if keys.is_empty() {
                return None;
            }
            let keys: &'static [Key] = Box::leak(keys.into_boxed_slice());
            let ty = s.get("items").and_then(typedef_of);
            (
                ty,
                Shape::MapList {
                    merge_key: None,
                    keys,
                },
            )
        }
        (Some("array"), Some("set")) => (None, Shape::Set),
        (Some("array"), _) => return None,
        _ if str_of("x-kubernetes-map-type") == Some("atomic") => (None, Shape::Atomic),
        _ if s.get("additionalProperties").is_some_and(Value::is_object)
            && s.get("properties").is_none() =>
        {
            (None, Shape::Map)
        }
        _ => (Some(typedef_of(s)?), Shape::Plain),
    };
    Some(Field {
        name: leak_str(name),
        ty,
        shape,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Cursor, GroupKind};
    use serde_json::json;

    #[test]
    fn list_types_and_maps_come_from_the_schema() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "ports": {"type": "array", "x-kubernetes-list-type": "map",
                      "x-kubernetes-list-map-keys": ["port", "protocol"],
                      "items": {"type": "object", "properties": {
                          "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}}},
            "plain": {"type": "array", "items": {"type": "string"}},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "selector": {"type": "object", "x-kubernetes-map-type": "atomic"},
        }}}});
        register("custom.example.com", "Thing", &schema);
        let gk = GroupKind::new("custom.example.com", "Thing");
        let spec = Cursor::root(&gk).child("spec");
        match spec.child("ports").shape {
            Shape::MapList { merge_key, keys } => {
                assert_eq!(merge_key, None);
                assert_eq!(
                    keys.iter().map(|k| k.name).collect::<Vec<_>>(),
                    ["port", "protocol"]
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            spec.child("ports").element().child("tags").shape,
            Shape::Set
        );
        assert_eq!(spec.child("plain").shape, Shape::Plain);
        assert_eq!(spec.child("labels").shape, Shape::Map);
        assert_eq!(spec.child("selector").shape, Shape::Atomic);
        assert_eq!(
            Cursor::root(&gk).child("metadata").child("labels").shape,
            Shape::Map
        );
        // The same schema again reuses the table.
        let first = root("custom.example.com", "Thing").unwrap();
        register("custom.example.com", "Thing", &schema);
        assert!(std::ptr::eq(
            first,
            root("custom.example.com", "Thing").unwrap()
        ));
        unregister("custom.example.com", "Thing");
        assert!(root("custom.example.com", "Thing").is_none());
    }
}
