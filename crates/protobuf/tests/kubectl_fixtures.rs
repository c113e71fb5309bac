//! Real request bodies captured from `kubectl.1.33 create ...` (see `fixtures/README.md`),
//! each checked against the JSON the same kubectl prints with `--dry-run=client -o json`.
//!
//! Normalisation: none. The decoded object must equal kubectl's JSON exactly, including
//! `creationTimestamp: null`, `status: {}`, `resources: {}` and `strategy: {}` (Go's
//! encoder prints non-pointer structs even when empty, and protobuf carries them), and
//! including key order.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// All `(name, protobuf body, expected JSON)` triples whose kind is supported.
fn fixtures() -> Vec<(String, Vec<u8>, Value)> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(fixtures_dir())
        .expect("fixtures dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "pb"))
        .collect();
    entries.sort();
    for pb in entries {
        let name = pb.file_stem().expect("stem").to_string_lossy().into_owned();
        let body = fs::read(&pb).expect("read pb");
        let expected: Value =
            serde_json::from_slice(&fs::read(pb.with_extension("json")).expect("read json"))
                .expect("parse json");
        out.push((name, body, expected));
    }
    assert!(out.len() >= 30, "fixtures missing");
    out
}

fn supported(expected: &Value) -> bool {
    skiff_protobuf::is_supported(
        expected["apiVersion"].as_str().unwrap_or_default(),
        expected["kind"].as_str().unwrap_or_default(),
    )
}

#[test]
fn decodes_to_kubectl_json() {
    for (name, body, expected) in fixtures() {
        assert!(supported(&expected), "{name}: kind not supported");
        let decoded =
            skiff_protobuf::decode_detailed(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded.object, expected, "{name}");
        // Same key order as Go prints.
        assert_eq!(
            serde_json::to_string_pretty(&decoded.object).expect("json"),
            serde_json::to_string_pretty(&expected).expect("json"),
            "{name}: key order"
        );
        assert!(
            decoded.unknown_fields.is_empty(),
            "{name}: {:?}",
            decoded.unknown_fields
        );
    }
}

#[test]
fn explicit_zero_replicas_is_kept() {
    let body = fs::read(fixtures_dir().join("deployment_zero.pb")).expect("read");
    let object = skiff_protobuf::decode(&body).expect("decode");
    assert_eq!(object["spec"]["replicas"], Value::from(0));
    // Non-pointer zero scalars are dropped.
    assert!(object["spec"].get("minReadySeconds").is_none());
    assert!(object["spec"].get("paused").is_none());
}

#[test]
fn every_truncation_is_an_error_or_ok() {
    for (name, body, _) in fixtures() {
        for len in 0..body.len() {
            // Must not panic; most truncations are errors.
            let result = skiff_protobuf::decode(&body[..len]);
            if len < 4 {
                assert_eq!(
                    result,
                    Err(skiff_protobuf::Error::MissingMagic),
                    "{name} at {len}"
                );
            }
        }
    }
}

#[test]
fn byte_mutations_never_panic() {
    for (_, body, _) in fixtures() {
        // Every byte of small bodies; about 300 evenly spread positions of large ones.
        let step = (body.len() / 300).max(1);
        for i in (4..body.len()).step_by(step) {
            for replacement in [
                0x00,
                0xff,
                0x80,
                0x7f,
                body[i] ^ 0x01,
                body[i] ^ 0x07,
                body[i].wrapping_add(1),
            ] {
                let mut mutated = body.clone();
                mutated[i] = replacement;
                let _ = skiff_protobuf::decode_detailed(&mutated);
            }
        }
    }
}

#[test]
fn fixtures_are_in_the_envelope_format() {
    for (name, body, _) in fixtures() {
        assert!(body.starts_with(&skiff_protobuf::MAGIC), "{name}");
    }
}
