//! Walks over an object guided by the schema: its field set, merging an applied
//! configuration into it, removing fields, and comparing two versions.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::{Map, Value};

use super::fieldset::{path_string, FieldSet, OrdValue, Path, PathElement};
use crate::json_patch::json_eq;
use crate::schema::{Cursor, Key, Shape};

/// How server-side apply sees a list.
#[derive(Clone, Copy)]
enum ListKind {
    Atomic,
    Set,
    Map(&'static [Key]),
}

fn list_kind(cur: Cursor) -> ListKind {
    if cur.deduced {
        return ListKind::Atomic;
    }
    match cur.shape {
        Shape::MapList { keys, .. } => ListKind::Map(keys),
        Shape::Set => ListKind::Set,
        _ => ListKind::Atomic,
    }
}

fn atomic_object(cur: Cursor) -> bool {
    cur.shape == Shape::Atomic
}

/// Whether an object's keys are data (each key its own member) rather than
/// declared struct fields (members only at their leaves).
fn keys_are_data(cur: Cursor) -> bool {
    cur.deduced || cur.shape == Shape::Map
}

/// The path element of a list item. `strict` (for applied configurations)
/// refuses an item that lacks a key field without default; otherwise the item
/// falls back to its index so a malformed live object can still be walked.
fn item_element(
    item: &Value,
    kind: ListKind,
    index: usize,
    strict: bool,
) -> Result<PathElement, String> {
    match kind {
        ListKind::Set => Ok(PathElement::Value(OrdValue(item.clone()))),
        ListKind::Map(keys) => {
            let mut fields = Vec::with_capacity(keys.len());
            for key in keys {
                let value = match (item.get(key.name), key.default) {
                    (Some(v), _) if !v.is_null() => v.clone(),
                    (_, Some(d)) => Value::String(d.to_string()),
                    _ if strict => {
                        return Err(format!(
                            "element {index}: associative list with keys has an element that omits key field {:?} (and doesn't have default value)",
                            key.name
                        ))
                    }
                    _ => return Ok(PathElement::Index(index)),
                };
                fields.push((key.name.to_string(), OrdValue(value)));
            }
            fields.sort();
            Ok(PathElement::Key(fields))
        }
        ListKind::Atomic => Ok(PathElement::Index(index)),
    }
}

fn child_path(path: &Path, pe: PathElement) -> Path {
    let mut p = Vec::with_capacity(path.len() + 1);
    p.extend_from_slice(path);
    p.push(pe);
    p
}

/// The set of fields `value` sets, as upstream's `ToFieldSet`.
pub fn field_set(value: &Value, cur: Cursor, strict: bool) -> Result<FieldSet, String> {
    let mut out = FieldSet::new();
    walk_set(value, cur, &Vec::new(), strict, &mut out, None)?;
    Ok(out)
}

/// The containers `value` has that upstream's comparison reports as added or
/// removed on their own when they appear or vanish: non-empty maps and
/// non-atomic lists. Update entries own them (`f:labels: {".": {}, ...}`), apply
/// entries do not.
fn containers(value: &Value, cur: Cursor) -> FieldSet {
    let mut scratch = FieldSet::new();
    let mut nodes = FieldSet::new();
    let _ = walk_set(
        value,
        cur,
        &Vec::new(),
        false,
        &mut scratch,
        Some(&mut nodes),
    );
    nodes
}

fn walk_set(
    value: &Value,
    cur: Cursor,
    path: &Path,
    strict: bool,
    out: &mut FieldSet,
    mut nodes: Option<&mut FieldSet>,
) -> Result<(), String> {
    match value {
        Value::Object(m) if !atomic_object(cur) => {
            if let Some(n) = nodes.as_deref_mut() {
                if keys_are_data(cur) && !m.is_empty() && !path.is_empty() {
                    n.insert(path.clone());
                }
            }
            for (k, child) in m {
                let p = child_path(path, PathElement::Field(k.clone()));
                walk_set(child, cur.child(k), &p, strict, out, nodes.as_deref_mut())?;
                let empty = child.is_null() || child.as_object().is_some_and(Map::is_empty);
                if empty || keys_are_data(cur) {
                    out.insert(p);
                }
            }
        }
        Value::Array(items) => match list_kind(cur) {
            ListKind::Atomic => out.insert(path.clone()),
            kind => {
                if let Some(n) = nodes.as_deref_mut() {
                    if !items.is_empty() {
                        n.insert(path.clone());
                    }
                }
                let mut seen = BTreeSet::new();
                for (i, item) in items.iter().enumerate() {
                    let pe = item_element(item, kind, i, strict)
                        .map_err(|e| format!("{}: {e}", path_string(path)))?;
                    if strict && !seen.insert(pe.clone()) {
                        return Err(format!(
                            "{}: duplicate entries for key {pe}",
                            path_string(path)
                        ));
                    }
                    let p = child_path(path, pe);
                    if matches!(kind, ListKind::Map(_)) {
                        walk_set(item, cur.element(), &p, strict, out, nodes.as_deref_mut())?;
                    }
                    out.insert(p);
                }
            }
        },
        // Scalars, nulls and atomic objects are owned whole.
        _ => out.insert(path.clone()),
    }
    Ok(())
}

/// Merges an applied configuration into the live object: the configuration's
/// values win, keyed list items merge by key, live-only parts stay. A `null` in
/// the configuration removes the field.
pub fn merge(live: Option<&Value>, config: &Value, cur: Cursor) -> Value {
    match (live, config) {
        (Some(Value::Object(l)), Value::Object(c)) if !atomic_object(cur) => {
            let mut out = l.clone();
            for (k, cv) in c {
                if cv.is_null() {
                    out.shift_remove(k);
                    continue;
                }
                let merged = merge(l.get(k), cv, cur.child(k));
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Some(Value::Array(l)), Value::Array(c)) => match list_kind(cur) {
            ListKind::Atomic => config.clone(),
            kind => Value::Array(merge_list(l, c, kind, cur.element())),
        },
        (_, Value::Object(c)) if !atomic_object(cur) => {
            // Nothing live to merge into: still drop the configuration's nulls.
            merge(
                Some(&Value::Object(Map::new())),
                &Value::Object(c.clone()),
                cur,
            )
        }
        _ => config.clone(),
    }
}

/// Merges keyed lists the way upstream orders them: items shared by both lists
/// come in the configuration's order, live-only items stay where they were
/// relative to them, configuration-only items come where the configuration
/// puts them.
fn merge_list(live: &[Value], config: &[Value], kind: ListKind, elem: Cursor) -> Vec<Value> {
    let lkeys: Vec<PathElement> = live
        .iter()
        .enumerate()
        .map(|(i, v)| item_element(v, kind, i, false).unwrap_or(PathElement::Index(i)))
        .collect();
    let ckeys: Vec<PathElement> = config
        .iter()
        .enumerate()
        .map(|(i, v)| item_element(v, kind, i, false).unwrap_or(PathElement::Index(i)))
        .collect();
    let mut lindex: BTreeMap<&PathElement, usize> = BTreeMap::new();
    for (i, k) in lkeys.iter().enumerate() {
        lindex.entry(k).or_insert(i);
    }
    let cset: BTreeSet<&PathElement> = ckeys.iter().collect();
    let mut shared: VecDeque<&PathElement> =
        ckeys.iter().filter(|k| lindex.contains_key(k)).collect();
    let mut next_shared = shared.pop_front();
    let mut done: BTreeSet<&PathElement> = BTreeSet::new();

    let item = |l: Option<&Value>, c: &Value| match kind {
        ListKind::Set => c.clone(),
        _ => merge(l, c, elem),
    };
    let mut out = Vec::with_capacity(live.len().max(config.len()));
    let (mut li, mut ci) = (0, 0);
    while li < live.len() || ci < config.len() {
        if li < live.len() && ci < config.len() {
            if lkeys[li] == ckeys[ci] {
                out.push(item(Some(&live[li]), &config[ci]));
                done.insert(&ckeys[ci]);
                li += 1;
                ci += 1;
                next_shared = shared.pop_front();
                continue;
            }
            // A shared item, but the configuration wants another one first.
            if cset.contains(&lkeys[li]) && next_shared.is_some_and(|n| *n != lkeys[li]) {
                li += 1;
                continue;
            }
        }
        if li < live.len() {
            if !cset.contains(&lkeys[li]) {
                out.push(live[li].clone());
                li += 1;
                continue;
            }
            if done.contains(&lkeys[li]) {
                li += 1;
                continue;
            }
        }
        if ci < config.len() {
            let k = &ckeys[ci];
            out.push(item(lindex.get(k).map(|&i| &live[i]), &config[ci]));
            done.insert(k);
            ci += 1;
            if next_shared == Some(k) {
                next_shared = shared.pop_front();
            }
        }
    }
    out
}

/// Removes the members of `doomed` from `value`, whole subtrees at a time. An
/// object left empty by the removal goes too unless `keep` has something there.
pub fn remove(value: &mut Value, doomed: &FieldSet, keep: &FieldSet, cur: Cursor, path: &Path) {
    match value {
        Value::Object(m) if !atomic_object(cur) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let p = child_path(path, PathElement::Field(k.clone()));
                if doomed.contains(&p) {
                    m.shift_remove(&k);
                } else if doomed.has_below(&p) {
                    if let Some(child) = m.get_mut(&k) {
                        let was_empty = child.as_object().is_some_and(Map::is_empty);
                        remove(child, doomed, keep, cur.child(&k), &p);
                        let now_empty = child.as_object().is_some_and(Map::is_empty);
                        if now_empty && !was_empty && !keep.has_prefix(&p) {
                            m.shift_remove(&k);
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            let kind = list_kind(cur);
            if matches!(kind, ListKind::Atomic) {
                return;
            }
            let mut i = 0;
            items.retain_mut(|item| {
                let pe = item_element(item, kind, i, false).unwrap_or(PathElement::Index(i));
                i += 1;
                let p = child_path(path, pe);
                if doomed.contains(&p) {
                    return false;
                }
                if doomed.has_below(&p) {
                    remove(item, doomed, keep, cur.element(), &p);
                }
                true
            });
        }
        _ => {}
    }
}

/// The value at `path`, if there is one.
fn value_at<'a>(value: &'a Value, path: &[PathElement], cur: Cursor) -> Option<&'a Value> {
    let Some((first, rest)) = path.split_first() else {
        return Some(value);
    };
    match (first, value) {
        (PathElement::Field(f), Value::Object(m)) => value_at(m.get(f)?, rest, cur.child(f)),
        (PathElement::Index(i), Value::Array(a)) => value_at(a.get(*i)?, rest, cur.element()),
        (pe, Value::Array(a)) => {
            let kind = list_kind(cur);
            let (_, item) = a
                .iter()
                .enumerate()
                .find(|(i, item)| item_element(item, kind, *i, false).is_ok_and(|e| e == *pe))?;
            value_at(item, rest, cur.element())
        }
        _ => None,
    }
}

/// Whether `a` and `b` hold the same value at `path` (both absent counts).
pub fn same_at(a: &Value, b: &Value, path: &[PathElement], cur: Cursor) -> bool {
    match (value_at(a, path, cur), value_at(b, path, cur)) {
        (Some(x), Some(y)) => json_eq(x, y),
        (x, y) => x.is_none() && y.is_none(),
    }
}

/// What changed from `old` to `new`, in field-set terms.
pub struct Comparison {
    pub added: FieldSet,
    pub removed: FieldSet,
    pub modified: FieldSet,
}

impl Comparison {
    pub fn changed(&self) -> FieldSet {
        self.added.union(&self.modified)
    }

    pub fn is_same(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.modified.is_empty()
    }
}

/// [`compare`], also reporting maps and lists that appeared or vanished whole,
/// as upstream's comparison does for an update.
pub fn compare_for_update(old: &Value, new: &Value, cur: Cursor) -> Comparison {
    let mut c = compare(old, new, cur);
    let (old_nodes, new_nodes) = (containers(old, cur), containers(new, cur));
    c.added = c.added.union(&new_nodes.difference(&old_nodes));
    c.removed = c.removed.union(&old_nodes.difference(&new_nodes));
    c
}

pub fn compare(old: &Value, new: &Value, cur: Cursor) -> Comparison {
    // Live objects were validated when written; be lenient with them.
    let old_set = field_set(old, cur, false).unwrap_or_default();
    let new_set = field_set(new, cur, false).unwrap_or_default();
    let mut modified = FieldSet::new();
    for p in old_set.intersection(&new_set).iter() {
        // Only leaves carry values of their own; containers change through them.
        if old_set.has_below(p) || new_set.has_below(p) {
            continue;
        }
        if !same_at(old, new, p, cur) {
            modified.insert(p.clone());
        }
    }
    Comparison {
        added: new_set.difference(&old_set),
        removed: old_set.difference(&new_set),
        modified,
    }
}
