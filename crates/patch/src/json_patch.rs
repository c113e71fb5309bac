//! RFC 6902 JSON patch (`application/json-patch+json`).

use serde_json::Value;

use crate::pointer::{self, index};
use crate::{Error, Result};

/// Applies an RFC 6902 patch (an array of operations) to `doc` and returns the
/// patched copy. The operations apply in order and all-or-nothing: on the first
/// failing operation the error is returned and `doc` is untouched.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value> {
    let Value::Array(ops) = patch else {
        return Err(Error::InvalidOperation(
            "a JSON patch must be an array of operations".into(),
        ));
    };
    let mut out = doc.clone();
    for op in ops {
        apply_op(&mut out, op)?;
    }
    Ok(out)
}

fn apply_op(doc: &mut Value, op: &Value) -> Result<()> {
    let Value::Object(fields) = op else {
        return Err(Error::InvalidOperation(format!(
            "operation is not an object: {op}"
        )));
    };
    let name = str_field(fields, "op")?;
    let path = str_field(fields, "path")?;
    let tokens = pointer::parse(path)?;
    let value = || {
        fields
            .get("value")
            .cloned()
            .ok_or_else(|| Error::InvalidOperation(format!("{name} operation has no value")))
    };
    match name {
        "add" => add(doc, &tokens, value()?, name, path),
        "remove" => remove(doc, &tokens, name, path).map(drop),
        "replace" => replace(doc, &tokens, value()?, path),
        "test" => {
            let want = value()?;
            match get(doc, &tokens) {
                Some(have) if json_eq(have, &want) => Ok(()),
                _ => Err(Error::TestFailed { path: path.into() }),
            }
        }
        "move" | "copy" => {
            let from = str_field(fields, "from")?;
            let from_tokens = pointer::parse(from)?;
            if name == "copy" {
                let v = get(doc, &from_tokens)
                    .cloned()
                    .ok_or_else(|| missing(name, from))?;
                return add(doc, &tokens, v, name, path);
            }
            if from_tokens == tokens {
                // Moving a value onto itself is a no-op, but it must exist.
                return get(doc, &tokens)
                    .map(drop)
                    .ok_or_else(|| missing(name, from));
            }
            if tokens.len() > from_tokens.len() && tokens.starts_with(&from_tokens) {
                return Err(Error::InvalidOperation(format!(
                    "cannot move {from:?} into its own child {path:?}"
                )));
            }
            let v = remove(doc, &from_tokens, name, from)?;
            add(doc, &tokens, v, name, path)
        }
        other => Err(Error::InvalidOperation(format!(
            "unknown operation {other:?}"
        ))),
    }
}

fn str_field<'a>(fields: &'a serde_json::Map<String, Value>, key: &str) -> Result<&'a str> {
    fields
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::InvalidOperation(format!("operation has no string {key:?}")))
}

fn missing(op: &str, path: &str) -> Error {
    Error::MissingPath {
        op: op.into(),
        path: path.into(),
    }
}

fn get<'a>(doc: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    tokens.iter().try_fold(doc, |cur, t| match cur {
        Value::Object(m) => m.get(t),
        Value::Array(a) => index(t).and_then(|i| a.get(i)),
        _ => None,
    })
}

fn get_mut<'a>(doc: &'a mut Value, tokens: &[String]) -> Option<&'a mut Value> {
    tokens.iter().try_fold(doc, |cur, t| match cur {
        Value::Object(m) => m.get_mut(t),
        Value::Array(a) => index(t).and_then(|i| a.get_mut(i)),
        _ => None,
    })
}

/// Splits off the last token: the parent must exist for add/remove/replace.
fn parent<'a, 'b>(
    doc: &'a mut Value,
    tokens: &'b [String],
    op: &str,
    path: &str,
) -> Result<(&'a mut Value, &'b str)> {
    let Some((last, init)) = tokens.split_last() else {
        return Err(missing(op, path));
    };
    let parent = get_mut(doc, init).ok_or_else(|| missing(op, path))?;
    Ok((parent, last))
}

fn add(doc: &mut Value, tokens: &[String], value: Value, op: &str, path: &str) -> Result<()> {
    if tokens.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = parent(doc, tokens, op, path)?;
    match parent {
        Value::Object(m) => {
            m.insert(last.to_string(), value);
            Ok(())
        }
        Value::Array(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                index(last).ok_or_else(|| bad_index(op, path))?
            };
            if i > a.len() {
                return Err(bad_index(op, path));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err(missing(op, path)),
    }
}

fn remove(doc: &mut Value, tokens: &[String], op: &str, path: &str) -> Result<Value> {
    let (parent, last) = parent(doc, tokens, op, path)?;
    match parent {
        // shift_remove keeps the order of the remaining keys (preserve_order).
        Value::Object(m) => m.shift_remove(last).ok_or_else(|| missing(op, path)),
        Value::Array(a) => match index(last) {
            Some(i) if i < a.len() => Ok(a.remove(i)),
            _ => Err(bad_index(op, path)),
        },
        _ => Err(missing(op, path)),
    }
}

fn replace(doc: &mut Value, tokens: &[String], value: Value, path: &str) -> Result<()> {
    let target = get_mut(doc, tokens).ok_or_else(|| missing("replace", path))?;
    *target = value;
    Ok(())
}

fn bad_index(op: &str, path: &str) -> Error {
    Error::BadIndex {
        op: op.into(),
        path: path.into(),
    }
}

/// JSON equality where `1` and `1.0` are the same number (RFC 6902 §4.6).
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || matches!((x.as_f64(), y.as_f64()), (Some(p), Some(q)) if p == q)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(doc: Value, patch: Value, want: Value) {
        assert_eq!(json_patch(&doc, &patch).unwrap(), want, "patch {patch}");
    }

    fn err(doc: Value, patch: Value) -> Error {
        json_patch(&doc, &patch).expect_err("patch should fail")
    }

    #[test]
    fn rfc6902_appendix_a() {
        // A.1 .. A.16 from the RFC, the ones that succeed.
        let cases = [
            (
                json!({"foo":"bar"}),
                json!([{"op":"add","path":"/baz","value":"qux"}]),
                json!({"foo":"bar","baz":"qux"}),
            ),
            (
                json!({"foo":["bar","baz"]}),
                json!([{"op":"add","path":"/foo/1","value":"qux"}]),
                json!({"foo":["bar","qux","baz"]}),
            ),
            (
                json!({"baz":"qux","foo":"bar"}),
                json!([{"op":"remove","path":"/baz"}]),
                json!({"foo":"bar"}),
            ),
            (
                json!({"foo":["bar","qux","baz"]}),
                json!([{"op":"remove","path":"/foo/1"}]),
                json!({"foo":["bar","baz"]}),
            ),
            (
                json!({"baz":"qux","foo":"bar"}),
                json!([{"op":"replace","path":"/baz","value":"boo"}]),
                json!({"baz":"boo","foo":"bar"}),
            ),
            (
                json!({"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}}),
                json!([{"op":"move","from":"/foo/waldo","path":"/qux/thud"}]),
                json!({"foo":{"bar":"baz"},"qux":{"corge":"grault","thud":"fred"}}),
            ),
            (
                json!({"foo":["all","grass","cows","eat"]}),
                json!([{"op":"move","from":"/foo/1","path":"/foo/3"}]),
                json!({"foo":["all","cows","eat","grass"]}),
            ),
            (
                json!({"baz":"qux","foo":["a",2,"c"]}),
                json!([{"op":"test","path":"/baz","value":"qux"},{"op":"test","path":"/foo/1","value":2}]),
                json!({"baz":"qux","foo":["a",2,"c"]}),
            ),
            (
                json!({"foo":"bar"}),
                json!([{"op":"add","path":"/child","value":{"grandchild":{}}}]),
                json!({"foo":"bar","child":{"grandchild":{}}}),
            ),
            (
                json!({"foo":"bar"}),
                json!([{"op":"add","path":"/baz","value":"qux","xyz":123}]),
                json!({"foo":"bar","baz":"qux"}),
            ),
            (
                json!({"foo":["bar"]}),
                json!([{"op":"add","path":"/foo/-","value":["abc","def"]}]),
                json!({"foo":["bar",["abc","def"]]}),
            ),
            (
                json!({"/":9,"~1":10}),
                json!([{"op":"test","path":"/~01","value":10}]),
                json!({"/":9,"~1":10}),
            ),
            (
                json!({"foo":null}),
                json!([{"op":"test","path":"/foo","value":null}]),
                json!({"foo":null}),
            ),
            (
                json!({"foo":1}),
                json!([{"op":"test","path":"/foo","value":1.0}]),
                json!({"foo":1}),
            ),
        ];
        for (doc, patch, want) in cases {
            ok(doc, patch, want);
        }
    }

    #[test]
    fn rfc6902_appendix_a_errors() {
        assert!(matches!(
            err(
                json!({"foo":"bar"}),
                json!([{"op":"add","path":"/baz/bat","value":"qux"}])
            ),
            Error::MissingPath { .. }
        ));
        assert!(matches!(
            err(
                json!({"baz":"qux"}),
                json!([{"op":"test","path":"/baz","value":"bar"}])
            ),
            Error::TestFailed { .. }
        ));
        assert!(matches!(
            err(
                json!({"foo":["bar","baz"]}),
                json!([{"op":"add","path":"/foo/3","value":"x"}])
            ),
            Error::BadIndex { .. }
        ));
        assert!(matches!(
            err(
                json!({"/":9,"~1":10}),
                json!([{"op":"test","path":"/~01","value":"10"}])
            ),
            Error::TestFailed { .. }
        ));
    }

    #[test]
    fn kubernetes_style_patches() {
        let svc = json!({"metadata":{"name":"web","labels":{"app":"web"}},
                          "spec":{"ports":[{"port":80},{"port":443}],"selector":{"app":"web"}}});
        ok(
            svc.clone(),
            json!([{"op":"add","path":"/metadata/labels/app.kubernetes.io~1name","value":"x"},
                   {"op":"replace","path":"/spec/ports/0/port","value":8080},
                   {"op":"remove","path":"/spec/ports/1"},
                   {"op":"copy","from":"/spec/selector","path":"/metadata/annotations"}]),
            json!({"metadata":{"name":"web","labels":{"app":"web","app.kubernetes.io/name":"x"},
                                "annotations":{"app":"web"}},
                   "spec":{"ports":[{"port":8080}],"selector":{"app":"web"}}}),
        );
        // Whole-document replace and add.
        ok(
            json!({"a":1}),
            json!([{"op":"replace","path":"","value":{"b":2}}]),
            json!({"b":2}),
        );
        ok(
            json!({"a":1}),
            json!([{"op":"add","path":"","value":[1]}]),
            json!([1]),
        );
        // Removing a key keeps the order of the others.
        let got = json_patch(
            &json!({"a":1,"b":2,"c":3}),
            &json!([{"op":"remove","path":"/a"}]),
        )
        .unwrap();
        assert_eq!(serde_json::to_string(&got).unwrap(), r#"{"b":2,"c":3}"#);
    }

    #[test]
    fn errors_are_errors_not_panics() {
        let doc = json!({"a":{"b":[1,2]}});
        let bad = [
            json!({"op":"add","path":"/a/b/x","value":1}),
            json!([{"op":"add","path":"/a/b/01","value":1}]),
            json!([{"op":"remove","path":"/a/c"}]),
            json!([{"op":"remove","path":"/a/b/2"}]),
            json!([{"op":"remove","path":"/a/b/-"}]),
            json!([{"op":"remove","path":""}]),
            json!([{"op":"replace","path":"/x","value":1}]),
            json!([{"op":"replace","path":"/a/b/-","value":1}]),
            json!([{"op":"move","from":"/a","path":"/a/b/c"}]),
            json!([{"op":"move","from":"/x","path":"/y"}]),
            json!([{"op":"copy","from":"/x","path":"/y"}]),
            json!([{"op":"test","path":"/x","value":1}]),
            json!([{"op":"add","path":"/a/b/0/x","value":1}]),
            json!([{"op":"add","path":"a","value":1}]),
            json!([{"op":"add","path":"/a"}]),
            json!([{"op":"frobnicate","path":"/a"}]),
            json!([{"path":"/a"}]),
            json!([1]),
        ];
        for patch in bad {
            assert!(json_patch(&doc, &patch).is_err(), "{patch} should fail");
        }
        // A failed operation leaves nothing half-done: the input is untouched.
        let patch = json!([{"op":"add","path":"/z","value":1},{"op":"remove","path":"/nope"}]);
        assert!(json_patch(&doc, &patch).is_err());
    }

    #[test]
    fn move_onto_itself_and_null_values() {
        ok(
            json!({"a":1}),
            json!([{"op":"move","from":"/a","path":"/a"}]),
            json!({"a":1}),
        );
        ok(
            json!({"a":1}),
            json!([{"op":"add","path":"/a","value":null}]),
            json!({"a":null}),
        );
        ok(
            json!({"a":[1,2,3]}),
            json!([{"op":"move","from":"/a/0","path":"/a/-"}]),
            json!({"a":[2,3,1]}),
        );
    }
}
