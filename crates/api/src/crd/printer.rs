//! A custom resource's Table: `Name` then its version's `additionalPrinterColumns`
//! (only `Age` when it has none), as upstream's CR table convertor builds it.
//! Column paths use the JSONPath subset CRDs use: `.a.b`, `.a[0].b`, `.a[*].b`,
//! and `\.` for a dot inside a key (`.metadata.labels.app\.kubernetes\.io/name`).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{Definition, PrinterColumn};

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const CREATION_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// The columns of `def`'s preferred version, `Age` when it declares none.
pub fn columns_of(def: &Definition) -> Vec<PrinterColumn> {
    let version = def
        .storage_version()
        .filter(|v| v.served)
        .or_else(|| def.versions.iter().find(|v| v.served));
    match version.map(|v| v.columns.clone()) {
        Some(cols) if !cols.is_empty() => cols,
        _ => vec![PrinterColumn {
            name: "Age".into(),
            type_: "date".into(),
            format: String::new(),
            description: CREATION_DESCRIPTION.into(),
            priority: 0,
            json_path: ".metadata.creationTimestamp".into(),
        }],
    }
}

/// `columnDefinitions` for `def`.
pub fn column_definitions(def: &Definition) -> Value {
    let mut out = vec![json!({"name": "Name", "type": "string", "format": "name",
        "description": NAME_DESCRIPTION, "priority": 0})];
    for c in columns_of(def) {
        out.push(json!({"name": c.name, "type": c.type_, "format": c.format,
            "description": c.description, "priority": c.priority}));
    }
    Value::Array(out)
}

/// One row's cells; a path that finds nothing, or a value of another type
/// than the column's, is `null` (kubectl prints `<none>`).
pub fn cells(def: &Definition, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let name = obj
        .pointer("/metadata/name")
        .cloned()
        .unwrap_or(Value::String(String::new()));
    let mut out = vec![name];
    for c in columns_of(def) {
        let found = evaluate(&c.json_path, obj).into_iter().next();
        out.push(match found {
            None => Value::Null,
            Some(v) => cell(&c.type_, v, now),
        });
    }
    out
}

fn cell(ty: &str, v: &Value, now: DateTime<Utc>) -> Value {
    match (ty, v) {
        ("string", Value::String(s)) => Value::String(s.clone()),
        ("string", Value::Null) => Value::Null,
        // Upstream prints other values with the JSONPath printer (JSON text).
        ("string", other) => Value::String(other.to_string()),
        ("integer", Value::Number(n)) => n
            .as_i64()
            .map(Value::from)
            .or_else(|| n.as_f64().map(|f| Value::from(f as i64)))
            .unwrap_or(Value::Null),
        ("number", Value::Number(n)) => Value::Number(n.clone()),
        ("boolean", Value::Bool(b)) => Value::Bool(*b),
        ("date", Value::String(s)) => match crate::table::parse_time(s) {
            Some(t) => Value::String(crate::table::human_duration(now - t)),
            None => Value::Null,
        },
        _ => Value::Null,
    }
}

#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    All,
}

/// Splits a JSONPath of the subset into steps; `None` if it is outside it.
fn parse(path: &str) -> Option<Vec<Step>> {
    let p = path.trim();
    let p = p
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(p);
    let p = p.strip_prefix('$').unwrap_or(p);
    let mut steps = Vec::new();
    let mut chars = p.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                let mut key = String::new();
                while let Some(&n) = chars.peek() {
                    match n {
                        '\\' => {
                            chars.next();
                            if let Some(escaped) = chars.next() {
                                key.push(escaped);
                            }
                        }
                        '.' | '[' => break,
                        _ => {
                            key.push(n);
                            chars.next();
                        }
                    }
                }
                if !key.is_empty() {
                    steps.push(Step::Field(key));
                }
            }
            '[' => {
                let mut inner = String::new();
                for n in chars.by_ref() {
                    if n == ']' {
                        break;
                    }
                    inner.push(n);
                }
                let inner = inner.trim().trim_matches('\'').trim_matches('"');
                if inner == "*" {
                    steps.push(Step::All);
                } else if let Ok(i) = inner.parse() {
                    steps.push(Step::Index(i));
                } else {
                    steps.push(Step::Field(inner.to_string()));
                }
            }
            _ => return None,
        }
    }
    Some(steps)
}

/// Every value `path` finds in `obj`, in document order.
pub fn evaluate<'a>(path: &str, obj: &'a Value) -> Vec<&'a Value> {
    let Some(steps) = parse(path) else {
        return Vec::new();
    };
    let mut current = vec![obj];
    for step in &steps {
        let mut next = Vec::new();
        for v in current {
            match step {
                Step::Field(k) => next.extend(v.get(k.as_str())),
                Step::Index(i) => next.extend(v.get(*i)),
                Step::All => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
            }
        }
        current = next;
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_of_the_subset() {
        let obj = json!({"metadata": {"labels": {"app.kubernetes.io/name": "web"}},
            "spec": {"replicas": 3, "ports": [{"port": 80}, {"port": 443}]}});
        assert_eq!(evaluate(".spec.replicas", &obj), vec![&json!(3)]);
        assert_eq!(evaluate(".spec.ports[1].port", &obj), vec![&json!(443)]);
        assert_eq!(
            evaluate(".spec.ports[*].port", &obj),
            vec![&json!(80), &json!(443)]
        );
        assert_eq!(
            evaluate(r".metadata.labels.app\.kubernetes\.io/name", &obj),
            vec![&json!("web")]
        );
        assert_eq!(evaluate("{.spec.replicas}", &obj), vec![&json!(3)]);
        assert!(evaluate(".spec.nothing", &obj).is_empty());
    }

    #[test]
    fn cells_follow_the_column_types() {
        let now = Utc::now();
        assert_eq!(cell("integer", &json!(2), now), json!(2));
        assert_eq!(cell("integer", &json!("2"), now), Value::Null);
        assert_eq!(cell("string", &json!("x"), now), json!("x"));
        assert_eq!(cell("boolean", &json!(true), now), json!(true));
        let then = (now - chrono::Duration::seconds(30)).to_rfc3339();
        assert_eq!(cell("date", &json!(then), now), json!("30s"));
    }
}
