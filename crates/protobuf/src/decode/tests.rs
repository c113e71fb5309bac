//! Decoder tests on a small test-only schema.

use serde_json::json;

use super::*;
use crate::schema::{
    field, msg, Kind, BOOL, I32, I64, INT_OR_STR, MAP_QTY, MAP_STR, MICRO_TIME, QTY, STR, TIME,
};

/// Minimal encoder for building test messages.
fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
fn num(n: u32, v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    varint(u64::from(n) << 3, &mut out);
    varint(v, &mut out);
    out
}
fn len(n: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint((u64::from(n) << 3) | 2, &mut out);
    varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}
fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

static INNER: Message = Message {
    name: "Inner",
    fields: &[field(1, "a", STR), field(2, "b", I32).ptr()],
};

static TEST: Message = Message {
    name: "Test",
    fields: &[
        field(1, "str", STR),
        field(2, "i32", I32),
        field(3, "i64", I64).ptr(),
        field(4, "flag", BOOL),
        field(5, "bytes", Kind::Bytes),
        field(6, "inner", msg(&INNER)).ptr(),
        field(7, "list", I64).rep(),
        field(8, "port", INT_OR_STR),
        field(9, "qty", QTY),
        field(10, "time", TIME),
        field(11, "micro", MICRO_TIME).ptr(),
        field(12, "duration", Kind::Duration).ptr(),
        field(13, "raw", Kind::RawExtension).ptr(),
        field(14, "labels", MAP_STR),
        field(15, "limits", MAP_QTY),
        field(16, "required", STR).req(),
        field(17, "requiredList", STR).rep().req(),
        field(18, "nullable", STR).nullable(),
        field(19, "embedded", msg(&INNER)).inline(),
        field(20, "items", msg(&INNER)).rep(),
    ],
};

fn run(data: &[u8]) -> Result<(Value, Vec<UnknownField>)> {
    let mut decoder = Decoder::default();
    let object = decoder.message(&TEST, data, &Path::ROOT, 0)?;
    Ok((Value::Object(object), decoder.unknown))
}

#[test]
fn empty_message_prints_go_zero_values() {
    let (v, unknown) = run(&[]).expect("decode");
    assert!(unknown.is_empty());
    assert_eq!(
        v,
        json!({
            "port": 0, "qty": "0", "time": null,
            "required": "", "requiredList": null, "nullable": null,
        })
    );
}

#[test]
fn zero_values_follow_presence() {
    let data = cat(&[
        len(1, b""),
        num(2, 0),
        num(3, 0),
        num(4, 0),
        len(5, b""),
        len(6, &[]),
        len(18, b""),
    ]);
    let (v, _) = run(&data).expect("decode");
    // Non-pointer zeros are dropped; pointer zeros and present nullables are kept.
    assert_eq!(
        v,
        json!({
            "i64": 0, "inner": {}, "port": 0, "qty": "0", "time": null,
            "required": "", "requiredList": null, "nullable": "",
        })
    );
}

#[test]
fn scalars_and_specials() {
    let data = cat(&[
        len(1, "héllo".as_bytes()),
        num(2, u64::MAX), // -1 as an int32 varint
        num(3, 1 << 40),
        num(4, 1),
        len(5, &[0, 255, 1]),
        len(6, &cat(&[len(1, b"x"), num(2, 7)])),
        num(7, 1),
        len(7, &[2, 3]), // packed
        len(8, &cat(&[num(1, 1), len(3, b"http")])),
        len(9, &len(1, b"500m")),
        len(10, &cat(&[num(1, 1_700_000_000), num(2, 5)])),
        len(11, &cat(&[num(1, 1_700_000_000), num(2, 123_456_789)])),
        len(12, &num(1, 90_000_000_000)),
        len(13, &len(1, br#"{"kind":"X","n":[1]}"#)),
        len(14, &cat(&[len(1, b"z"), len(2, b"1")])),
        len(14, &cat(&[len(1, b"a"), len(2, b"2")])),
        len(14, &cat(&[len(1, b"z"), len(2, b"3")])),
        len(15, &cat(&[len(1, b"cpu"), len(2, &len(1, b"1"))])),
        len(16, b"r"),
        len(17, b"l1"),
        len(17, b"l2"),
        len(18, b"n"),
        len(19, &len(1, b"inline")),
        len(20, &len(1, b"first")),
        len(20, &num(2, 0)),
    ]);
    let (v, unknown) = run(&data).expect("decode");
    assert!(unknown.is_empty(), "{unknown:?}");
    assert_eq!(
        v,
        json!({
            "str": "héllo", "i32": -1, "i64": 1_099_511_627_776_i64, "flag": true,
            "bytes": "AP8B", "inner": {"a": "x", "b": 7}, "list": [1, 2, 3],
            "port": "http", "qty": "500m", "time": "2023-11-14T22:13:20Z",
            "micro": "2023-11-14T22:13:20.123456Z", "duration": "1m30s",
            "raw": {"kind": "X", "n": [1]}, "labels": {"a": "2", "z": "3"},
            "limits": {"cpu": "1"}, "required": "r", "requiredList": ["l1", "l2"],
            "nullable": "n", "a": "inline", "items": [{"a": "first"}, {"b": 0}],
        })
    );
    // Map keys come out sorted, struct fields in table order.
    let keys: Vec<_> = v["labels"]
        .as_object()
        .expect("map")
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys, ["a", "z"]);
}

#[test]
fn repeated_singular_message_is_merged_and_last_scalar_wins() {
    let data = cat(&[
        len(6, &len(1, b"x")),
        len(6, &num(2, 3)),
        len(1, b"first"),
        len(1, b"second"),
    ]);
    let (v, _) = run(&data).expect("decode");
    assert_eq!(v["inner"], json!({"a": "x", "b": 3}));
    assert_eq!(v["str"], json!("second"));
}

#[test]
fn unknown_fields_are_skipped_and_reported() {
    let data = cat(&[
        num(99, 1),
        len(6, &cat(&[len(1, b"x"), len(42, b"?")])),
        len(20, &num(7, 1)),
        len(100, b"ignored"),
    ]);
    let (v, unknown) = run(&data).expect("decode");
    assert_eq!(v["inner"], json!({"a": "x"}));
    let rendered: Vec<String> = unknown.iter().map(ToString::to_string).collect();
    assert_eq!(
        rendered,
        [
            "unknown field number 99",
            "unknown field number 100",
            "inner: unknown field number 42",
            "items[0]: unknown field number 7",
        ]
    );
}

#[test]
fn errors_name_the_message_and_path() {
    let err = run(&num(1, 5)).expect_err("string as varint");
    assert_eq!(
        err.to_string(),
        "malformed protobuf Test at <object>: field 1 has wire type 0, expected 2"
    );
    let err = run(&len(6, &len(2, b"x"))).expect_err("int as bytes");
    assert_eq!(
        err,
        Error::Malformed {
            message: "Inner",
            path: "inner".to_string(),
            malformation: Malformation::WrongWireType {
                field: 2,
                got: 2,
                expected: 0
            },
        }
    );
    let err = run(&len(8, &num(1, 7))).expect_err("bad IntOrString");
    assert!(matches!(
        err,
        Error::Malformed {
            malformation: Malformation::InvalidIntOrStringType(7),
            ..
        }
    ));
    let err = run(&len(13, &len(1, b"{not json"))).expect_err("bad raw");
    assert!(err.to_string().contains("RawExtension at raw"), "{err}");
    let err = run(&[0x0a, 0x05, b'a']).expect_err("truncated");
    assert!(matches!(
        err,
        Error::Malformed {
            malformation: Malformation::LengthOutOfBounds(5),
            ..
        }
    ));
}

static NESTED: Message = Message {
    name: "Nested",
    fields: &[field(1, "child", msg(&NESTED)).ptr()],
};

#[test]
fn hostile_nesting_is_cut_off() {
    let mut data = Vec::new();
    for _ in 0..(MAX_DEPTH + 5) {
        data = len(1, &data);
    }
    let mut decoder = Decoder::default();
    let err = decoder
        .message(&NESTED, &data, &Path::ROOT, 0)
        .expect_err("too deep");
    assert!(
        matches!(
            err,
            Error::TooDeep {
                limit: MAX_DEPTH,
                ..
            }
        ),
        "{err}"
    );

    let mut data = Vec::new();
    for _ in 0..MAX_DEPTH {
        data = len(1, &data);
    }
    assert!(decoder.message(&NESTED, &data, &Path::ROOT, 0).is_ok());
}
