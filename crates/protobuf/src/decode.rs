//! Schema-driven decoding of protobuf bytes into the JSON Go's `encoding/json` would print
//! for the same typed object.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::{Error, Malformation, Result};
use crate::format::{go_duration, rfc3339, GO_ZERO_TIME_SECONDS};
use crate::schema::{Field, Kind, Message, Presence};
use crate::wire::{Reader, WireValue, LEN, VARINT};

/// How deeply messages may nest before decoding fails with [`Error::TooDeep`].
pub const MAX_DEPTH: usize = 64;

/// A field number present in the data but absent from the schema; it was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownField {
    /// JSON-style path of the message holding the field, such as
    /// `spec.template.spec.containers[0]` (empty for the top-level object).
    pub path: String,
    /// The protobuf field number.
    pub number: u32,
}

impl fmt::Display for UnknownField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "unknown field number {}", self.number)
        } else {
            write!(f, "{}: unknown field number {}", self.path, self.number)
        }
    }
}

/// One step of a JSON path, kept on the stack and rendered only when needed.
#[derive(Clone, Copy)]
enum Segment<'a> {
    Root,
    Field(&'static str),
    Index(usize),
    Key(&'a str),
}

#[derive(Clone, Copy)]
pub(crate) struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    segment: Segment<'a>,
}

impl<'a> Path<'a> {
    pub(crate) const ROOT: Path<'static> = Path {
        parent: None,
        segment: Segment::Root,
    };

    fn child(&'a self, segment: Segment<'a>) -> Path<'a> {
        Path {
            parent: Some(self),
            segment,
        }
    }

    pub(crate) fn render(&self) -> String {
        let mut segments = Vec::new();
        let mut cur = Some(self);
        while let Some(p) = cur {
            segments.push(p.segment);
            cur = p.parent;
        }
        let mut out = String::new();
        for segment in segments.iter().rev() {
            match segment {
                Segment::Root => {}
                Segment::Field(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                Segment::Index(i) => out.push_str(&format!("[{i}]")),
                Segment::Key(k) => out.push_str(&format!("[{k}]")),
            }
        }
        out
    }

    fn malformed(&self, message: &'static str, malformation: Malformation) -> Error {
        let path = self.render();
        Error::Malformed {
            message,
            path: if path.is_empty() {
                "<object>".to_string()
            } else {
                path
            },
            malformation,
        }
    }
}

/// Decoding state: collects unknown fields.
#[derive(Default)]
pub(crate) struct Decoder {
    pub(crate) unknown: Vec<UnknownField>,
}

/// All occurrences of one field, in wire order.
type Occurrences<'a> = Vec<WireValue<'a>>;

/// The message whose fields are being read, for error reports.
#[derive(Clone, Copy)]
struct Owner<'p> {
    name: &'static str,
    path: &'p Path<'p>,
}

impl Owner<'_> {
    fn fail(&self, malformation: Malformation) -> Error {
        self.path.malformed(self.name, malformation)
    }
}

impl Decoder {
    /// Decodes one message into a JSON object.
    pub(crate) fn message(
        &mut self,
        message: &'static Message,
        data: &[u8],
        path: &Path<'_>,
        depth: usize,
    ) -> Result<Map<String, Value>> {
        if depth > MAX_DEPTH {
            let path = path.render();
            return Err(Error::TooDeep {
                path: if path.is_empty() {
                    "<object>".to_string()
                } else {
                    path
                },
                limit: MAX_DEPTH,
            });
        }
        let owner = Owner {
            name: message.name,
            path,
        };
        let mut seen: Vec<Occurrences<'_>> = vec![Vec::new(); message.fields.len()];
        let mut reader = Reader::new(data);
        while let Some((number, value)) = reader.field().map_err(|e| owner.fail(e))? {
            match message.position(number) {
                Some(i) => seen[i].push(value),
                None => self.unknown(path, number),
            }
        }
        let mut out = Map::new();
        for (field, values) in message.fields.iter().zip(&seen) {
            self.field(owner, field, values, depth, &mut out)?;
        }
        Ok(out)
    }

    fn unknown(&mut self, path: &Path<'_>, number: u32) {
        self.unknown.push(UnknownField {
            path: path.render(),
            number,
        });
    }

    /// Adds one field to `out` following the field's presence rule.
    fn field(
        &mut self,
        owner: Owner<'_>,
        field: &Field,
        values: &[WireValue<'_>],
        depth: usize,
        out: &mut Map<String, Value>,
    ) -> Result<()> {
        let path = owner.path.child(Segment::Field(field.name));
        if field.inline {
            if let Kind::Message(inner) = field.kind {
                let data = concat(field, values).map_err(|e| owner.fail(e))?;
                out.extend(self.message(inner, &data, owner.path, depth + 1)?);
            }
            return Ok(());
        }
        let value = if is_map(field.kind) {
            if values.is_empty() {
                null_unless_always(field)
            } else {
                Some(self.map(owner, field, values, &path, depth)?)
            }
        } else if field.repeated {
            let items = self.list(owner, field, values, &path, depth)?;
            if items.is_empty() {
                null_unless_always(field)
            } else {
                Some(Value::Array(items))
            }
        } else if is_message_like(field.kind) {
            match field.presence {
                Presence::Pointer if values.is_empty() => None,
                Presence::Nullable if values.is_empty() => Some(Value::Null),
                _ => {
                    let data = concat(field, values).map_err(|e| owner.fail(e))?;
                    Some(self.message_like(field.kind, &data, &path, depth + 1)?)
                }
            }
        } else {
            match values.last() {
                None if field.presence == Presence::Always => Some(zero(field.kind)),
                None if field.presence == Presence::Nullable => Some(Value::Null),
                None => None,
                Some(last) => {
                    let v = scalar(field, *last).map_err(|e| owner.fail(e))?;
                    let keep = field.presence != Presence::OmitEmpty || !is_zero(&v);
                    keep.then_some(v)
                }
            }
        };
        if let Some(v) = value {
            out.insert(field.name.to_string(), v);
        }
        Ok(())
    }

    /// Decodes the elements of a repeated field.
    fn list(
        &mut self,
        owner: Owner<'_>,
        field: &Field,
        values: &[WireValue<'_>],
        path: &Path<'_>,
        depth: usize,
    ) -> Result<Vec<Value>> {
        let mut items = Vec::with_capacity(values.len());
        for value in values {
            match (field.kind, value) {
                // Packed numeric elements.
                (Kind::Int32 | Kind::Int64 | Kind::Bool, WireValue::Len(bytes)) => {
                    let mut reader = Reader::new(bytes);
                    while !reader.is_empty() {
                        let v = reader.varint().map_err(|e| owner.fail(e))?;
                        items.push(scalar(field, WireValue::Varint(v)).map_err(|e| owner.fail(e))?);
                    }
                }
                (kind, WireValue::Len(bytes)) if is_message_like(kind) => {
                    let item = path.child(Segment::Index(items.len()));
                    items.push(self.message_like(kind, bytes, &item, depth + 1)?);
                }
                (kind, other) if is_message_like(kind) => {
                    return Err(owner.fail(wrong_wire_type(field, *other, LEN)))
                }
                _ => items.push(scalar(field, *value).map_err(|e| owner.fail(e))?),
            }
        }
        Ok(items)
    }

    /// Decodes a map field: each occurrence is an entry message {1 key, 2 value}.
    /// Keys come out sorted, as Go prints them; a repeated key keeps its last value.
    fn map(
        &mut self,
        owner: Owner<'_>,
        field: &Field,
        values: &[WireValue<'_>],
        path: &Path<'_>,
        depth: usize,
    ) -> Result<Value> {
        let entry_owner = Owner {
            name: "map entry",
            path,
        };
        let mut entries = BTreeMap::new();
        for value in values {
            let WireValue::Len(bytes) = value else {
                return Err(owner.fail(wrong_wire_type(field, *value, LEN)));
            };
            let mut key = String::new();
            let mut raw_value: Option<&[u8]> = None;
            let mut reader = Reader::new(bytes);
            while let Some((number, v)) = reader.field().map_err(|e| entry_owner.fail(e))? {
                match (number, v) {
                    (1, WireValue::Len(k)) => key = String::from_utf8_lossy(k).into_owned(),
                    (2, WireValue::Len(b)) => raw_value = Some(b),
                    (1 | 2, other) => {
                        return Err(entry_owner.fail(Malformation::WrongWireType {
                            field: number,
                            got: other.wire_type(),
                            expected: LEN,
                        }))
                    }
                    _ => self.unknown(path, number),
                }
            }
            let bytes = raw_value.unwrap_or_default();
            let v = match field.kind {
                Kind::MapBytes => {
                    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
                Kind::MapStringList => {
                    let mut items = Vec::new();
                    let mut inner = Reader::new(bytes);
                    while let Some((number, v)) = inner.field().map_err(|e| entry_owner.fail(e))? {
                        match (number, v) {
                            (1, WireValue::Len(s)) => {
                                items.push(Value::String(String::from_utf8_lossy(s).into_owned()))
                            }
                            (1, other) => {
                                return Err(entry_owner.fail(Malformation::WrongWireType {
                                    field: 1,
                                    got: other.wire_type(),
                                    expected: LEN,
                                }))
                            }
                            _ => self.unknown(path, number),
                        }
                    }
                    Value::Array(items)
                }
                Kind::MapQuantity | Kind::MapTime => {
                    let entry = path.child(Segment::Key(&key));
                    let kind = if matches!(field.kind, Kind::MapTime) {
                        Kind::Time
                    } else {
                        Kind::Quantity
                    };
                    self.message_like(kind, bytes, &entry, depth + 1)?
                }
                _ => Value::String(String::from_utf8_lossy(bytes).into_owned()),
            };
            entries.insert(key, v);
        }
        Ok(Value::Object(entries.into_iter().collect()))
    }

    /// Decodes a nested message or one of the special well-known messages.
    fn message_like(
        &mut self,
        kind: Kind,
        data: &[u8],
        path: &Path<'_>,
        depth: usize,
    ) -> Result<Value> {
        match kind {
            Kind::Message(m) => Ok(Value::Object(self.message(m, data, path, depth)?)),
            Kind::IntOrString => {
                let owner = Owner {
                    name: "IntOrString",
                    path,
                };
                let fields = self.small(owner, data, &[(1, VARINT), (2, VARINT), (3, LEN)])?;
                match varint_of(fields[0]) {
                    0 => Ok(Value::from(i64::from(varint_of(fields[1]) as i32))),
                    1 => Ok(Value::String(string_of(fields[2]))),
                    other => Err(owner.fail(Malformation::InvalidIntOrStringType(other))),
                }
            }
            Kind::Quantity => {
                let owner = Owner {
                    name: "Quantity",
                    path,
                };
                let fields = self.small(owner, data, &[(1, LEN)])?;
                // A zero Quantity prints as "0".
                Ok(Value::String(match fields[0] {
                    Some(_) => string_of(fields[0]),
                    None => "0".to_string(),
                }))
            }
            Kind::Time | Kind::MicroTime => {
                let name = if matches!(kind, Kind::Time) {
                    "Time"
                } else {
                    "MicroTime"
                };
                let fields = self.small(Owner { name, path }, data, &[(1, VARINT), (2, VARINT)])?;
                if data.is_empty() {
                    return Ok(Value::Null);
                }
                let seconds = varint_of(fields[0]) as i64;
                let nanos = i64::from(varint_of(fields[1]) as i32);
                if matches!(kind, Kind::Time) {
                    // Go keeps only whole seconds when reading a Time from protobuf.
                    if seconds == GO_ZERO_TIME_SECONDS {
                        return Ok(Value::Null);
                    }
                    return Ok(Value::String(rfc3339(seconds, None)));
                }
                let seconds = seconds.saturating_add(nanos.div_euclid(1_000_000_000));
                let nanos = nanos.rem_euclid(1_000_000_000);
                if seconds == GO_ZERO_TIME_SECONDS && nanos == 0 {
                    return Ok(Value::Null);
                }
                let micros = u32::try_from(nanos / 1000).unwrap_or(0);
                Ok(Value::String(rfc3339(seconds, Some(micros))))
            }
            Kind::Duration => {
                let fields = self.small(
                    Owner {
                        name: "Duration",
                        path,
                    },
                    data,
                    &[(1, VARINT)],
                )?;
                Ok(Value::String(go_duration(varint_of(fields[0]) as i64)))
            }
            Kind::RawExtension | Kind::FieldsV1 => {
                let name = if matches!(kind, Kind::FieldsV1) {
                    "FieldsV1"
                } else {
                    "RawExtension"
                };
                let owner = Owner { name, path };
                let fields = self.small(owner, data, &[(1, LEN)])?;
                match fields[0] {
                    Some(WireValue::Len(raw)) if !raw.is_empty() => serde_json::from_slice(raw)
                        .map_err(|_| owner.fail(Malformation::InvalidRawJson)),
                    _ => Ok(Value::Null),
                }
            }
            _ => Ok(zero(kind)),
        }
    }

    /// Reads a small fixed message: returns the last value of each `(number, wire type)`,
    /// failing on a wrong wire type and recording other numbers as unknown.
    fn small<'d, const N: usize>(
        &mut self,
        owner: Owner<'_>,
        data: &'d [u8],
        spec: &[(u32, u8); N],
    ) -> Result<[Option<WireValue<'d>>; N]> {
        let mut found = [None; N];
        let mut reader = Reader::new(data);
        while let Some((number, value)) = reader.field().map_err(|e| owner.fail(e))? {
            match spec.iter().position(|(n, _)| *n == number) {
                Some(i) if value.wire_type() == spec[i].1 => found[i] = Some(value),
                Some(i) => {
                    return Err(owner.fail(Malformation::WrongWireType {
                        field: number,
                        got: value.wire_type(),
                        expected: spec[i].1,
                    }))
                }
                None => self.unknown(owner.path, number),
            }
        }
        Ok(found)
    }
}

fn varint_of(value: Option<WireValue<'_>>) -> u64 {
    match value {
        Some(WireValue::Varint(v)) => v,
        _ => 0,
    }
}

fn string_of(value: Option<WireValue<'_>>) -> String {
    match value {
        Some(WireValue::Len(s)) => String::from_utf8_lossy(s).into_owned(),
        _ => String::new(),
    }
}

/// Joins all occurrences of a singular message field: protobuf merges them, and merging
/// is the same as decoding the concatenated bytes.
fn concat<'a>(field: &Field, values: &[WireValue<'a>]) -> Result<Cow<'a, [u8]>, Malformation> {
    let mut chunks = Vec::with_capacity(values.len());
    for value in values {
        match value {
            WireValue::Len(bytes) => chunks.push(*bytes),
            other => return Err(wrong_wire_type(field, *other, LEN)),
        }
    }
    Ok(match chunks.as_slice() {
        [] => Cow::Borrowed(&[][..]),
        [one] => Cow::Borrowed(*one),
        many => Cow::Owned(many.concat()),
    })
}

/// Converts one scalar wire value.
fn scalar(field: &Field, value: WireValue<'_>) -> Result<Value, Malformation> {
    Ok(match (field.kind, value) {
        (Kind::String, WireValue::Len(s)) => Value::String(String::from_utf8_lossy(s).into_owned()),
        (Kind::Bytes, WireValue::Len(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        // Go truncates int32 varints the same way.
        (Kind::Int32, WireValue::Varint(v)) => Value::from(i64::from(v as i32)),
        (Kind::Int64, WireValue::Varint(v)) => Value::from(v as i64),
        (Kind::Bool, WireValue::Varint(v)) => Value::Bool(v != 0),
        (Kind::String | Kind::Bytes, other) => return Err(wrong_wire_type(field, other, LEN)),
        (_, other) => return Err(wrong_wire_type(field, other, VARINT)),
    })
}

fn wrong_wire_type(field: &Field, got: WireValue<'_>, expected: u8) -> Malformation {
    Malformation::WrongWireType {
        field: field.number,
        got: got.wire_type(),
        expected,
    }
}

fn is_map(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::MapString | Kind::MapBytes | Kind::MapQuantity | Kind::MapTime | Kind::MapStringList
    )
}

fn is_message_like(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Message(_)
            | Kind::IntOrString
            | Kind::Quantity
            | Kind::Time
            | Kind::MicroTime
            | Kind::Duration
            | Kind::RawExtension
            | Kind::FieldsV1
    )
}

/// Go's zero value for an absent scalar field (a nil `[]byte` prints as `null`).
fn zero(kind: Kind) -> Value {
    match kind {
        Kind::String => Value::String(String::new()),
        Kind::Int32 | Kind::Int64 => Value::from(0),
        Kind::Bool => Value::Bool(false),
        _ => Value::Null,
    }
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_i64() == Some(0),
        Value::Bool(b) => !b,
        _ => false,
    }
}

/// An empty list or map prints as `null` without `omitempty`, and is dropped with it.
fn null_unless_always(field: &Field) -> Option<Value> {
    (field.presence == Presence::Always).then_some(Value::Null)
}

#[cfg(test)]
mod tests;
