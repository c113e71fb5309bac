//! Field sets as structured-merge-diff keeps them, and their `FieldsV1` encoding.
//!
//! A set holds member paths. In `FieldsV1` each path element is an object key
//! (`f:<field>`, `k:<key object JSON>`, `v:<value JSON>`, `i:<index>`), a leaf
//! member is `{}`, and a member that also has members below it says so with
//! `".": {}`.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

/// A JSON value with upstream's total order: numbers (by value) < strings <
/// booleans < lists < maps < null.
#[derive(Debug, Clone)]
pub struct OrdValue(pub Value);

fn rank(v: &Value) -> u8 {
    match v {
        Value::Number(_) => 0,
        Value::String(_) => 1,
        Value::Bool(_) => 2,
        Value::Array(_) => 3,
        Value::Object(_) => 4,
        Value::Null => 5,
    }
}

fn compare_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(p), Some(q)) => p.cmp(&q),
            _ => {
                let (p, q) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                p.total_cmp(&q)
            }
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let c = compare_values(p, q);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut xs: Vec<_> = x.iter().collect();
            let mut ys: Vec<_> = y.iter().collect();
            xs.sort_by(|p, q| p.0.cmp(q.0));
            ys.sort_by(|p, q| p.0.cmp(q.0));
            for ((kp, vp), (kq, vq)) in xs.iter().zip(&ys) {
                let c = kp.cmp(kq).then_with(|| compare_values(vp, vq));
                if c != Ordering::Equal {
                    return c;
                }
            }
            xs.len().cmp(&ys.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

impl PartialEq for OrdValue {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for OrdValue {}
impl PartialOrd for OrdValue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrdValue {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_values(&self.0, &other.0)
    }
}

/// One step of a path. The variant order is upstream's sort order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathElement {
    Field(String),
    /// An associative list item by its key fields, sorted by name.
    Key(Vec<(String, OrdValue)>),
    /// A set item by its value.
    Value(OrdValue),
    Index(usize),
}

impl PathElement {
    fn encode(&self) -> String {
        match self {
            Self::Field(f) => format!("f:{f}"),
            Self::Key(fields) => {
                let m: Map<String, Value> = fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.0.clone()))
                    .collect();
                format!("k:{}", Value::Object(m))
            }
            Self::Value(v) => format!("v:{}", v.0),
            Self::Index(i) => format!("i:{i}"),
        }
    }

    fn decode(s: &str) -> Option<Self> {
        let (kind, rest) = s.split_at_checked(2)?;
        Some(match kind {
            "f:" => Self::Field(rest.to_string()),
            "k:" => {
                let Value::Object(m) = serde_json::from_str(rest).ok()? else {
                    return None;
                };
                let mut fields: Vec<_> = m.into_iter().map(|(k, v)| (k, OrdValue(v))).collect();
                fields.sort();
                Self::Key(fields)
            }
            "v:" => Self::Value(OrdValue(serde_json::from_str(rest).ok()?)),
            "i:" => Self::Index(rest.parse().ok()?),
            _ => return None,
        })
    }
}

impl fmt::Display for PathElement {
    /// Upstream's path notation: `.spec`, `[name="web"]`, `[="a"]`, `[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Field(name) => write!(f, ".{name}"),
            Self::Key(fields) => {
                let parts: Vec<String> =
                    fields.iter().map(|(k, v)| format!("{k}={}", v.0)).collect();
                write!(f, "[{}]", parts.join(","))
            }
            Self::Value(v) => write!(f, "[={}]", v.0),
            Self::Index(i) => write!(f, "[{i}]"),
        }
    }
}

pub type Path = Vec<PathElement>;

pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// A set of member paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet(BTreeSet<Path>);

impl FieldSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, path: Path) {
        self.0.insert(path);
    }

    pub fn contains(&self, path: &[PathElement]) -> bool {
        self.0.contains(path)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether some member is `prefix` or lies below it.
    pub fn has_prefix(&self, prefix: &[PathElement]) -> bool {
        self.0
            .range::<[PathElement], _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .next()
            .is_some_and(|p| p.starts_with(prefix))
    }

    /// Whether some member lies strictly below `prefix`.
    pub fn has_below(&self, prefix: &[PathElement]) -> bool {
        self.0
            .range::<[PathElement], _>((
                std::ops::Bound::Excluded(prefix),
                std::ops::Bound::Unbounded,
            ))
            .next()
            .is_some_and(|p| p.starts_with(prefix))
    }

    pub fn union(&self, other: &Self) -> Self {
        Self(self.0.union(&other.0).cloned().collect())
    }

    pub fn difference(&self, other: &Self) -> Self {
        Self(self.0.difference(&other.0).cloned().collect())
    }

    pub fn intersection(&self, other: &Self) -> Self {
        Self(self.0.intersection(&other.0).cloned().collect())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Path> {
        self.0.iter()
    }

    /// Members in upstream's iteration order: at each level the members first,
    /// then what lies below, child by child. Conflict messages list paths so.
    pub fn paths_in_upstream_order(&self) -> Vec<Path> {
        fn walk(node: &Node, prefix: &mut Path, out: &mut Vec<Path>) {
            for (pe, child) in &node.children {
                if child.member {
                    let mut p = prefix.clone();
                    p.push(pe.clone());
                    out.push(p);
                }
            }
            for (pe, child) in &node.children {
                prefix.push(pe.clone());
                walk(child, prefix, out);
                prefix.pop();
            }
        }
        let mut out = Vec::with_capacity(self.len());
        walk(&self.tree(), &mut Vec::new(), &mut out);
        out
    }

    fn tree(&self) -> Node {
        let mut root = Node::default();
        for path in &self.0 {
            let mut node = &mut root;
            for pe in path {
                node = node.children.entry(pe.clone()).or_default();
            }
            node.member = true;
        }
        root
    }

    /// The `fieldsV1` object.
    pub fn to_fields_v1(&self) -> Value {
        fn encode(node: &Node) -> Value {
            let mut m = Map::new();
            if node.member && !node.children.is_empty() {
                m.insert(".".into(), Value::Object(Map::new()));
            }
            for (pe, child) in &node.children {
                m.insert(pe.encode(), encode(child));
            }
            Value::Object(m)
        }
        encode(&self.tree())
    }

    /// Parses a `fieldsV1` object; `None` if it is not one.
    pub fn from_fields_v1(v: &Value) -> Option<Self> {
        fn decode(v: &Value, prefix: &mut Path, out: &mut FieldSet) -> Option<()> {
            let Value::Object(m) = v else { return None };
            for (k, child) in m {
                if k == "." {
                    out.insert(prefix.clone());
                    continue;
                }
                prefix.push(PathElement::decode(k)?);
                if child.as_object().is_some_and(Map::is_empty) {
                    out.insert(prefix.clone());
                } else {
                    decode(child, prefix, out)?;
                }
                prefix.pop();
            }
            Some(())
        }
        let mut out = FieldSet::new();
        decode(v, &mut Vec::new(), &mut out)?;
        Some(out)
    }
}

#[derive(Default)]
struct Node {
    member: bool,
    children: BTreeMap<PathElement, Node>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(name: &str) -> PathElement {
        PathElement::Field(name.into())
    }

    #[test]
    fn fields_v1_round_trip_and_order() {
        let v = json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:ports": {
                    "k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:targetPort": {}}
                },
                "f:replicas": {}
            },
            "f:metadata2": {"f:finalizers": {"v:\"a\"": {}, "i:3": {}}}
        });
        let set = FieldSet::from_fields_v1(&v).unwrap();
        assert_eq!(set.len(), 7);
        let port = PathElement::Key(vec![
            ("port".into(), OrdValue(json!(80))),
            ("protocol".into(), OrdValue(json!("TCP"))),
        ]);
        assert!(set.contains(&[f("spec"), f("ports"), port.clone()]));
        assert_eq!(
            path_string(&[f("spec"), f("ports"), port, f("port")]),
            r#".spec.ports[port=80,protocol="TCP"].port"#
        );
        // Encoding sorts elements: fields by name, "." first.
        let text = serde_json::to_string(&set.to_fields_v1()).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"f:metadata":{"f:labels":{"f:app":{}}},"f:metadata2":{"f:finalizers":{"v:\"a\"":{},"i:3":{}}},"#,
                r#""f:spec":{"f:ports":{"k:{\"port\":80,\"protocol\":\"TCP\"}":{".":{},"f:port":{},"f:targetPort":{}}},"f:replicas":{}}}"#
            )
        );
        assert_eq!(FieldSet::from_fields_v1(&set.to_fields_v1()), Some(set));
        assert_eq!(FieldSet::from_fields_v1(&json!({"x:y": {}})), None);
    }

    #[test]
    fn upstream_iteration_order_puts_members_before_deeper_paths() {
        let mut set = FieldSet::new();
        set.insert(vec![f("spec"), f("a"), f("b")]);
        set.insert(vec![f("spec"), f("z")]);
        let order: Vec<String> = set
            .paths_in_upstream_order()
            .iter()
            .map(|p| path_string(p))
            .collect();
        assert_eq!(order, [".spec.z", ".spec.a.b"]);
        assert!(set.has_prefix(&[f("spec")]));
        assert!(set.has_prefix(&[f("spec"), f("z")]));
        assert!(!set.has_below(&[f("spec"), f("z")]));
        assert!(!set.has_prefix(&[f("spe")]));
    }

    #[test]
    fn value_order() {
        let mut vals = vec![
            json!(null),
            json!({}),
            json!([]),
            json!(true),
            json!("a"),
            json!(2),
            json!(1.5),
        ];
        vals.sort_by(compare_values);
        assert_eq!(
            vals,
            vec![
                json!(1.5),
                json!(2),
                json!("a"),
                json!(true),
                json!([]),
                json!({}),
                json!(null)
            ]
        );
    }
}
