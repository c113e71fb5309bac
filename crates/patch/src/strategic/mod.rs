//! Strategic merge patch (`application/strategic-merge-patch+json`), as upstream's
//! `strategicpatch.StrategicMergePatch` applies it on the server.
//!
//! Maps merge recursively and `null` deletes a key. A list merges only when the
//! schema says `patchStrategy:"merge"`: lists of objects by their merge key, lists
//! of scalars as a union; every other list is replaced. The directives:
//! - `$patch: replace | delete` in a map (replace it / empty it), and in a list
//!   element (`replace`: the list becomes the patch's elements; `delete`: remove
//!   the element with that merge key),
//! - `$deleteFromPrimitiveList/<field>: [values]`,
//! - `$setElementOrder/<field>: [...]`, the order kubectl wants the merged list in,
//! - `$retainKeys: [fields]`, drop every other field of this map.
//!
//! No directive key survives into the result. Where upstream would leave one
//! behind (a directive inside a value that did not exist before, which it copies
//! verbatim), this merges the value into nothing instead, so directives are
//! resolved and `null`s dropped all the same.

mod order;
#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use crate::schema::{Cursor, GroupKind, Shape};
use crate::{Error, Result};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList/";

/// Applies a strategic merge patch to `doc`, both JSON objects. The merge keys
/// come from [`crate::schema`] for `kind`. A kind the schema does not know is
/// merged like a JSON merge patch for maps, with every list replaced (upstream
/// refuses strategic merge patch for such kinds; being lenient costs nothing).
/// One exception, for kinds known or not: a list that comes with a
/// `$setElementOrder` naming its items by one key is merged by that key, since
/// kubectl sends that directive only for merge lists.
pub fn strategic_merge_patch(doc: &Value, patch: &Value, kind: &GroupKind) -> Result<Value> {
    let (Value::Object(doc), Value::Object(patch)) = (doc, patch) else {
        return Err(Error::BadPatch("invalid JSON document".into()));
    };
    merge_map(doc.clone(), patch.clone(), Cursor::root(kind)).map(Value::Object)
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    cur: Cursor,
) -> Result<Map<String, Value>> {
    if let Some(directive) = patch.shift_remove(DIRECTIVE) {
        return match directive.as_str() {
            // The patch's content, itself resolved, replaces the map.
            Some("replace") => merge_map(Map::new(), patch, cur),
            Some("delete") => Ok(Map::new()),
            _ => Err(bad_patch_type(&directive, &patch)),
        };
    }
    retain_keys(&mut original, &mut patch)?;
    order::set_element_order(&mut original, &mut patch, cur)?;

    for (key, patch_value) in patch {
        if let Some(field) = key.strip_prefix(DELETE_PRIMITIVE) {
            let Value::Array(doomed) = patch_value else {
                return Err(bad("invalid patch format of primitive list"));
            };
            if let Some(Value::Array(list)) = original.get_mut(field) {
                list.retain(|v| !doomed.contains(v));
            }
            continue;
        }
        if patch_value.is_null() {
            original.shift_remove(&key);
            continue;
        }
        let child = cur.child(&key);
        let merged = match original.get_mut(&key) {
            Some(slot) => merge_value(slot.take(), patch_value, child)?,
            None => fresh(patch_value, child)?,
        };
        match merged {
            Some(v) => {
                original.insert(key, v);
            }
            None => {
                original.shift_remove(&key);
            }
        }
    }
    Ok(original)
}

/// Merges one field's patch value into its original value. `None`: drop the field.
fn merge_value(original: Value, patch: Value, cur: Cursor) -> Result<Option<Value>> {
    match (original, patch) {
        (Value::Object(o), Value::Object(p)) => Ok(Some(Value::Object(merge_map(o, p, cur)?))),
        (Value::Array(o), Value::Array(p)) if merges(cur) => {
            Ok(Some(Value::Array(merge_list(o, p, cur)?)))
        }
        // Different types, a replaced list or a scalar: the patch value wins.
        (_, p) => fresh(p, cur),
    }
}

/// Whether the list at `cur` has `patchStrategy:"merge"`.
fn merges(cur: Cursor) -> bool {
    matches!(
        cur.shape,
        Shape::Set
            | Shape::MapList {
                merge_key: Some(_),
                ..
            }
    )
}

fn merge_key(cur: Cursor) -> Option<&'static str> {
    match cur.shape {
        Shape::MapList { merge_key, .. } => merge_key,
        _ => None,
    }
}

/// A patch value with nothing to merge into: resolve its directives and drop its
/// `null`s, as if merged into an empty value. `None` when the value deletes itself.
fn fresh(patch: Value, cur: Cursor) -> Result<Option<Value>> {
    match patch {
        Value::Object(p) => {
            if p.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                return Ok(None);
            }
            Ok(Some(Value::Object(merge_map(Map::new(), p, cur)?)))
        }
        Value::Array(p) if merges(cur) => Ok(Some(Value::Array(merge_list(Vec::new(), p, cur)?))),
        Value::Array(p) => {
            let elem = cur.element();
            let mut out = Vec::with_capacity(p.len());
            for item in p {
                match item {
                    // Nulls inside a list are data, not deletions.
                    Value::Null => out.push(Value::Null),
                    item => out.extend(fresh(item, elem)?),
                }
            }
            Ok(Some(Value::Array(out)))
        }
        scalar => Ok(Some(scalar)),
    }
}

/// Merges a `patchStrategy:"merge"` list.
fn merge_list(original: Vec<Value>, patch: Vec<Value>, cur: Cursor) -> Result<Vec<Value>> {
    merge_list_by(original, patch, merge_key(cur), cur.element())
}

/// Merges a list by `key` (objects) or as a union (scalars).
fn merge_list_by(
    original: Vec<Value>,
    patch: Vec<Value>,
    key: Option<&str>,
    elem: Cursor,
) -> Result<Vec<Value>> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let objects = element_kind(&original, &patch)?;
    if !objects {
        return Ok(merge_scalars(original, patch));
    }
    let Some(key) = key else {
        return Err(bad("cannot merge lists without merge key"));
    };
    merge_keyed(original, patch, key, elem)
}

/// Whether the elements are objects; all must be of one kind and none a list.
fn element_kind(original: &[Value], patch: &[Value]) -> Result<bool> {
    let mut objects = None;
    for v in original.iter().chain(patch) {
        if v.is_array() {
            return Err(bad("lists of lists are not supported"));
        }
        match objects {
            None => objects = Some(v.is_object()),
            Some(o) if o != v.is_object() => {
                return Err(bad("list element types are not identical"));
            }
            Some(_) => {}
        }
    }
    Ok(objects.unwrap_or(false))
}

/// A union without duplicates, in patch order, live-only values interleaved
/// where the live list had them.
fn merge_scalars(original: Vec<Value>, patch: Vec<Value>) -> Vec<Value> {
    let server = original.clone();
    let mut merged = original;
    for v in &patch {
        if !merged.contains(v) {
            merged.push(v.clone());
        }
    }
    order::normalize(merged, &patch, &server, None)
}

fn merge_keyed(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
    elem: Cursor,
) -> Result<Vec<Value>> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Value::Object(item) = item else {
            return Err(bad("list element types are not identical"));
        };
        let Some(directive) = item.get(DIRECTIVE) else {
            plain.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let doomed = item.get(key).ok_or_else(|| no_merge_key(&item, key))?;
                original.retain(|o| o.get(key) != Some(doomed));
            }
            // Keep going: later elements may still carry directives to drop.
            Some("replace") => replace = true,
            Some("merge") => return Err(bad("merging lists cannot yet be specified in the patch")),
            _ => return Err(bad_patch_type(directive, &item)),
        }
    }
    if replace {
        original.clear();
    }

    let server_order: Vec<Value> = original.clone();
    let mut patch_order = Vec::with_capacity(plain.len());
    for item in plain {
        let id = item
            .get(key)
            .cloned()
            .ok_or_else(|| no_merge_key(&item, key))?;
        let found = original.iter().position(|o| o.get(key) == Some(&id));
        patch_order.push(Value::Object(Map::from_iter([(key.to_string(), id)])));
        match found {
            Some(i) => {
                let Value::Object(o) = original[i].take() else {
                    return Err(bad(&format!("value for key {i} is not a map")));
                };
                original[i] = Value::Object(merge_map(o, item, elem)?);
            }
            None => original.extend(fresh(Value::Object(item), elem)?),
        }
    }
    Ok(order::normalize(
        original,
        &patch_order,
        &server_order,
        Some(key),
    ))
}

/// `$retainKeys`: every key of `original` not listed goes; the patch may only set
/// listed keys.
fn retain_keys(original: &mut Map<String, Value>, patch: &mut Map<String, Value>) -> Result<()> {
    let Some(list) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(list) = list else {
        return Err(bad("invalid patch format of retainKeys"));
    };
    let keep = |k: &str| list.iter().any(|v| v.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null() || k.starts_with(DELETE_PRIMITIVE) || k.starts_with(SET_ORDER) {
            continue;
        }
        if !keep(k) {
            return Err(bad("invalid patch format of retainKeys"));
        }
    }
    original.retain(|k, _| keep(k));
    Ok(())
}

fn bad(msg: &str) -> Error {
    Error::BadPatch(msg.to_string())
}

fn bad_patch_type(directive: &Value, map: &Map<String, Value>) -> Error {
    let d = directive
        .as_str()
        .map_or_else(|| directive.to_string(), str::to_string);
    Error::BadPatch(format!(
        "unknown patch type: {d} in map: {}",
        Value::Object(map.clone())
    ))
}

fn no_merge_key(map: &Map<String, Value>, key: &str) -> Error {
    Error::BadPatch(format!(
        "map: {} does not contain declared merge key: {key}",
        Value::Object(map.clone())
    ))
}
