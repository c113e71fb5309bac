//! The v2 document as gnostic's `openapi.v2.Document` protobuf, the form kubectl asks
//! for (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`). Encoded from
//! the JSON document (mod.rs) so the two forms cannot drift apart; only what that
//! document holds is encoded: info, PATCH operations with query parameters and a
//! response, and definitions. Field numbers are gnostic's `OpenAPIv2.proto`.

use serde_json::{Map, Value};

/// Minimal protobuf writer for the three wire types gnostic's messages use here.
#[derive(Default)]
pub(super) struct Msg(Vec<u8>);

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LENGTH_DELIMITED: u64 = 2;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Msg {
    fn tag(&mut self, field: u32, wire: u64) {
        varint(&mut self.0, (u64::from(field) << 3) | wire);
    }
    fn bytes(mut self, field: u32, data: &[u8]) -> Self {
        self.tag(field, LENGTH_DELIMITED);
        varint(&mut self.0, data.len() as u64);
        self.0.extend_from_slice(data);
        self
    }
    fn str(self, field: u32, s: &str) -> Self {
        self.bytes(field, s.as_bytes())
    }
    fn msg(self, field: u32, m: Msg) -> Self {
        self.bytes(field, &m.0)
    }
    fn int(mut self, field: u32, v: i64) -> Self {
        self.tag(field, VARINT);
        // int64 is two's complement on the wire, as a 10-byte varint when negative.
        varint(&mut self.0, v as u64);
        self
    }
    fn bool(self, field: u32, v: bool) -> Self {
        self.int(field, i64::from(v))
    }
    fn double(mut self, field: u32, v: f64) -> Self {
        self.tag(field, FIXED64);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(super) fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// A gnostic `Any` carrying a value as YAML text; JSON is YAML, and kube-openapi
/// reads these with a YAML parser.
fn any(v: &Value) -> Msg {
    Msg::default().str(2, &v.to_string())
}

/// `x-` keys of an object as repeated `NamedAny` in `field`.
fn vendor_extensions(mut m: Msg, field: u32, object: &Map<String, Value>) -> Msg {
    for (k, v) in object.iter().filter(|(k, _)| k.starts_with("x-")) {
        m = m.msg(field, Msg::default().str(1, k).msg(2, any(v)));
    }
    m
}

fn strings(mut m: Msg, field: u32, v: Option<&Value>) -> Msg {
    for s in v.and_then(Value::as_array).into_iter().flatten() {
        if let Some(s) = s.as_str() {
            m = m.str(field, s);
        }
    }
    m
}

/// A v2 JSON schema as `openapi.v2.Schema`.
fn schema(s: &Value) -> Msg {
    let Some(o) = s.as_object() else {
        return Msg::default();
    };
    let mut m = Msg::default();
    for (field, key) in [
        (1, "$ref"),
        (2, "format"),
        (3, "title"),
        (4, "description"),
        (13, "pattern"),
    ] {
        if let Some(v) = o.get(key).and_then(Value::as_str) {
            m = m.str(field, v);
        }
    }
    if let Some(v) = o.get("default") {
        m = m.msg(5, any(v));
    }
    for (field, key) in [(6, "multipleOf"), (7, "maximum"), (9, "minimum")] {
        if let Some(v) = o.get(key).and_then(Value::as_f64) {
            m = m.double(field, v);
        }
    }
    for (field, key) in [
        (8, "exclusiveMaximum"),
        (10, "exclusiveMinimum"),
        (16, "uniqueItems"),
        (27, "readOnly"),
    ] {
        if let Some(v) = o.get(key).and_then(Value::as_bool) {
            m = m.bool(field, v);
        }
    }
    for (field, key) in [
        (11, "maxLength"),
        (12, "minLength"),
        (14, "maxItems"),
        (15, "minItems"),
        (17, "maxProperties"),
        (18, "minProperties"),
    ] {
        if let Some(v) = o.get(key).and_then(Value::as_i64) {
            m = m.int(field, v);
        }
    }
    m = strings(m, 19, o.get("required"));
    for v in o
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m = m.msg(20, any(v));
    }
    match o.get("additionalProperties") {
        Some(Value::Bool(b)) => m = m.msg(21, Msg::default().bool(2, *b)),
        Some(sub @ Value::Object(_)) => m = m.msg(21, Msg::default().msg(1, schema(sub))),
        _ => {}
    }
    if let Some(t) = o.get("type").and_then(Value::as_str) {
        m = m.msg(22, Msg::default().str(1, t));
    }
    if let Some(items) = o.get("items").filter(|v| v.is_object()) {
        m = m.msg(23, Msg::default().msg(1, schema(items)));
    }
    if let Some(props) = o.get("properties").and_then(Value::as_object) {
        let mut p = Msg::default();
        for (name, sub) in props {
            p = p.msg(1, Msg::default().str(1, name).msg(2, schema(sub)));
        }
        m = m.msg(25, p);
    }
    vendor_extensions(m, 31, o)
}

/// A query parameter (`in: query`) as `ParametersItem`.
fn parameter(p: &Value) -> Msg {
    let mut q = Msg::default();
    if let Some(true) = p.get("required").and_then(Value::as_bool) {
        q = q.bool(1, true);
    }
    for (field, key) in [(2, "in"), (3, "description"), (4, "name"), (6, "type")] {
        if let Some(v) = p.get(key).and_then(Value::as_str) {
            q = q.str(field, v);
        }
    }
    if let Some(v) = p.get("uniqueItems").and_then(Value::as_bool) {
        q = q.bool(20, v);
    }
    let non_body = Msg::default().msg(3, q);
    Msg::default().msg(1, Msg::default().msg(2, non_body))
}

fn operation(op: &Value) -> Msg {
    let Some(o) = op.as_object() else {
        return Msg::default();
    };
    let mut m = Msg::default();
    if let Some(id) = o.get("operationId").and_then(Value::as_str) {
        m = m.str(5, id);
    }
    m = strings(m, 6, o.get("produces"));
    m = strings(m, 7, o.get("consumes"));
    for p in o
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m = m.msg(8, parameter(p));
    }
    let mut responses = Msg::default();
    for (code, r) in o
        .get("responses")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let mut response = Msg::default();
        if let Some(d) = r.get("description").and_then(Value::as_str) {
            response = response.str(1, d);
        }
        if let Some(s) = r.get("schema") {
            response = response.msg(2, Msg::default().msg(1, schema(s)));
        }
        let value = Msg::default().msg(1, response);
        responses = responses.msg(1, Msg::default().str(1, code).msg(2, value));
    }
    m = m.msg(9, responses);
    vendor_extensions(m, 13, o)
}

/// The whole v2 JSON document as `openapi.v2.Document`.
pub(super) fn document(doc: &Value) -> Msg {
    let mut m = Msg::default();
    if let Some(v) = doc.get("swagger").and_then(Value::as_str) {
        m = m.str(1, v);
    }
    let mut info = Msg::default();
    for (field, key) in [(1, "title"), (2, "version")] {
        if let Some(v) = doc.pointer(&format!("/info/{key}")).and_then(Value::as_str) {
            info = info.str(field, v);
        }
    }
    m = m.msg(2, info);
    let mut paths = Msg::default();
    for (path, item) in doc
        .get("paths")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let mut path_item = Msg::default();
        if let Some(patch) = item.get("patch") {
            path_item = path_item.msg(8, operation(patch));
        }
        paths = paths.msg(2, Msg::default().str(1, path).msg(2, path_item));
    }
    m = m.msg(8, paths);
    let mut definitions = Msg::default();
    for (name, s) in doc
        .get("definitions")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        definitions = definitions.msg(1, Msg::default().str(1, name).msg(2, schema(s)));
    }
    m.msg(9, definitions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_types_as_protobuf_defines_them() {
        let mut v = Vec::new();
        varint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
        assert_eq!(Msg::default().str(1, "2.0").0, [0x0a, 3, b'2', b'.', b'0']);
        assert_eq!(Msg::default().int(11, 5).0, [11 << 3, 5]);
        assert_eq!(Msg::default().bool(16, true).0, [0x80, 0x01, 1]);
        let d = Msg::default().double(7, 1.5).0;
        assert_eq!(d[0], (7 << 3) | 1);
        assert_eq!(&d[1..], 1.5f64.to_le_bytes());
    }

    #[test]
    fn schema_fields_land_in_gnostic_numbers() {
        let s = json!({
            "description": "d",
            "type": "object",
            "required": ["port"],
            "properties": {"port": {"type": "integer", "format": "int32"}},
            "x-kubernetes-patch-strategy": "merge",
        });
        let bytes = schema(&s).0;
        // description (4), required (19), type (22: TypeItem{value}), properties (25).
        assert!(bytes.starts_with(&[(4 << 3) | 2, 1, b'd']));
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("port") && text.contains("int32"), "{text}");
        // The extension's value is YAML (here JSON) text: a quoted string.
        assert!(text.contains("\"merge\""), "{text}");
    }
}
