//! Element order of merged lists: `$setElementOrder/<field>` and the default
//! "patch order first, live order for the rest" rule.
//!
//! Precedence, as upstream: `$setElementOrder` > order in the patch list > order in
//! the live list. Items only the server has keep their place relative to the
//! items around them in the live list.

use serde_json::{Map, Value};

use super::{
    bad, fresh, merge_key, merge_list, merge_list_by, merges, no_merge_key, DIRECTIVE, SET_ORDER,
};
use crate::schema::Cursor;
use crate::Result;

/// The identity of a list item: its merge key's value, or the scalar itself.
fn id<'a>(v: &'a Value, key: Option<&str>) -> Option<&'a Value> {
    match key {
        Some(k) => v.get(k),
        None => Some(v),
    }
}

fn position(list: &[Value], v: &Value, key: Option<&str>) -> Option<usize> {
    let want = id(v, key)?;
    list.iter().position(|x| id(x, key) == Some(want))
}

/// Orders `merged`: the items named in `order` follow `order`, the others follow
/// `server`, and the two runs are interleaved by their positions in `server`.
pub(super) fn normalize(
    merged: Vec<Value>,
    order: &[Value],
    server: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let (mut ours, mut theirs): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|v| position(order, v, key).is_some());
    ours.sort_by_key(|v| position(order, v, key).unwrap_or(usize::MAX));
    theirs.sort_by_key(|v| position(server, v, key).unwrap_or(usize::MAX));

    // Insert each server-only item before the first patch item that the live
    // list had after it; with no live position to compare, the patch item goes first.
    let mut out = Vec::with_capacity(ours.len() + theirs.len());
    let mut ours = ours.into_iter().peekable();
    let mut theirs = theirs.into_iter().peekable();
    loop {
        let take_theirs = match (theirs.peek(), ours.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (position(server, l, key), position(server, r, key)),
                (Some(a), Some(b)) if a < b
            ),
        };
        let next = if take_theirs {
            theirs.next()
        } else {
            ours.next()
        };
        out.extend(next);
    }
    out
}

/// Resolves every `$setElementOrder/<field>` of `patch` together with the patch's
/// `<field>` list, leaving neither in `patch`.
pub(super) fn set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    cur: Cursor,
) -> Result<()> {
    let directives: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ORDER))
        .cloned()
        .collect();
    for directive in directives {
        let Some(Value::Array(order)) = patch.shift_remove(&directive) else {
            return Err(bad("invalid patch format of setElementOrder list"));
        };
        let field = &directive[SET_ORDER.len()..];
        if field.is_empty() {
            return Err(bad("invalid patch format of setElementOrder list"));
        }
        let child = cur.child(field);
        // kubectl only sends `$setElementOrder` for merge lists, naming each item by
        // its merge key. Should the table lack the list, trust the directive rather
        // than replace the list with the few items the patch carries.
        let inferred = (!merges(child)).then(|| inferred_key(&order)).flatten();
        let key = merge_key(child).or(inferred.as_deref());
        let live = match original.get(field) {
            None => None,
            Some(Value::Array(l)) => Some(l.clone()),
            Some(_) => return Err(bad("invalid patch format of setElementOrder list")),
        };
        let patched = match patch.shift_remove(field) {
            None => None,
            Some(Value::Array(p)) => Some(p),
            Some(_) => return Err(bad("invalid patch format of setElementOrder list")),
        };
        if let Some(p) = &patched {
            validate(p, &order, key)?;
        }
        let merged = match (live.clone(), patched) {
            (None, None) => continue,
            (Some(l), None) => l,
            (None, Some(p)) => match fresh(Value::Array(p), child)? {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            },
            (Some(l), Some(p)) if merges(child) => merge_list(l, p, child)?,
            (Some(l), Some(p)) if inferred.is_some() || order.iter().all(|v| !v.is_object()) => {
                merge_list_by(l, p, key, child.element())?
            }
            (Some(_), Some(p)) => match fresh(Value::Array(p), child)? {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            },
        };
        let server = live.unwrap_or_default();
        let ordered = normalize(merged, &order, &server, key);
        original.insert(field.to_string(), Value::Array(ordered));
    }
    Ok(())
}

/// The merge key a `$setElementOrder` list names: every item an object with the
/// same single key.
fn inferred_key(order: &[Value]) -> Option<String> {
    let mut key = None;
    for item in order {
        let Value::Object(m) = item else { return None };
        let mut keys = m.keys();
        let (Some(k), None) = (keys.next(), keys.next()) else {
            return None;
        };
        match &key {
            None => key = Some(k.clone()),
            Some(seen) if seen == k => {}
            Some(_) => return None,
        }
    }
    key
}

/// The patch list's items (deletions aside) must appear in `$setElementOrder`
/// in the same relative order.
fn validate(patch: &[Value], order: &[Value], key: Option<&str>) -> Result<()> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let is_delete = |v: &Value| v.get(DIRECTIVE).and_then(Value::as_str) == Some("delete");
    let items: Vec<&Value> = patch
        .iter()
        .filter(|v| key.is_none() || !is_delete(v))
        .collect();
    let key_of = |v: &Value| -> Result<Value> {
        match key {
            None => Ok(v.clone()),
            Some(k) => match v {
                Value::Object(m) => m.get(k).cloned().ok_or_else(|| no_merge_key(m, k)),
                _ => Err(bad("invalid patch format of setElementOrder list")),
            },
        }
    };
    let (mut p, mut o) = (0, 0);
    while p < items.len() && o < order.len() {
        if items[p].get(DIRECTIVE).is_some() {
            p += 1;
            continue;
        }
        if key_of(items[p])? == key_of(&order[o])? {
            p += 1;
        }
        o += 1;
    }
    if p < items.len() {
        return Err(crate::Error::BadPatch(format!(
            "The order in patch list:\n{}\n doesn't match $setElementOrder list:\n{}\n",
            Value::Array(patch.to_vec()),
            Value::Array(order.to_vec())
        )));
    }
    Ok(())
}
