//! Table-driven cases modelled on upstream's apiextensions validation tests.

use serde_json::json;

use super::*;

fn schema() -> Value {
    json!({
        "type": "object",
        "required": ["spec"],
        "properties": {
            "spec": {
                "type": "object",
                "required": ["size"],
                "properties": {
                    "size": {"type": "string", "enum": ["small", "large"]},
                    "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
                    "name": {"type": "string", "minLength": 2, "maxLength": 5, "pattern": "^[a-z]+$"},
                    "when": {"type": "string", "format": "date-time"},
                    "ratio": {"type": "number", "exclusiveMaximum": true, "maximum": 1},
                    "port": {"x-kubernetes-int-or-string": true},
                    "note": {"type": "string", "nullable": true},
                    "tags": {"type": "array", "maxItems": 2, "minItems": 1,
                             "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                    "ports": {"type": "array", "x-kubernetes-list-type": "map",
                              "x-kubernetes-list-map-keys": ["port"],
                              "items": {"type": "object", "properties": {
                                  "port": {"type": "integer"}, "name": {"type": "string", "default": "p"}}}},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                                 "properties": {"spec": {"type": "object"}}},
                },
            },
            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
        },
    })
}

fn errors(spec: Value) -> Vec<String> {
    let obj = json!({"apiVersion": "x.example.com/v1", "kind": "Foo",
        "metadata": {"name": "a"}, "spec": spec});
    let mut errs = Vec::new();
    validate_object(&schema(), &obj, &mut errs);
    errs.iter().map(ToString::to_string).collect()
}

#[test]
fn validation_cases() {
    let cases: &[(Value, &[&str])] = &[
        (json!({"size": "small"}), &[]),
        (
            json!({"size": "small", "replicas": "string"}),
            &[r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#],
        ),
        (json!({}), &["spec.size: Required value"]),
        (
            json!({"size": "medium"}),
            &[r#"spec.size: Unsupported value: "medium": supported values: "small", "large""#],
        ),
        (
            json!({"size": "small", "replicas": 11}),
            &["spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10"],
        ),
        (
            json!({"size": "small", "replicas": -1}),
            &["spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0"],
        ),
        (
            json!({"size": "small", "name": "a"}),
            &[r#"spec.name: Invalid value: "a": spec.name in body should be at least 2 chars long"#],
        ),
        (
            json!({"size": "small", "name": "abcdef"}),
            &["spec.name: Too long: may not be more than 5 bytes"],
        ),
        (
            json!({"size": "small", "name": "AB"}),
            &[r#"spec.name: Invalid value: "AB": spec.name in body should match '^[a-z]+$'"#],
        ),
        (
            json!({"size": "small", "when": "yesterday"}),
            &[r#"spec.when: Invalid value: "yesterday": spec.when in body must be of type date-time: "yesterday""#],
        ),
        (json!({"size": "small", "when": "2026-01-01T00:00:00Z"}), &[]),
        (
            json!({"size": "small", "ratio": 1}),
            &["spec.ratio: Invalid value: 1: spec.ratio in body should be less than 1"],
        ),
        (json!({"size": "small", "ratio": 0.5}), &[]),
        (json!({"size": "small", "port": 80}), &[]),
        (json!({"size": "small", "port": "http"}), &[]),
        (
            json!({"size": "small", "port": true}),
            &[r#"spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#],
        ),
        (json!({"size": "small", "note": null}), &[]),
        (
            json!({"size": "small", "name": null}),
            &[r#"spec.name: Invalid value: "null": spec.name in body must be of type string: "null""#],
        ),
        (
            json!({"size": "small", "tags": ["a", "b", "c"]}),
            &[r#"spec.tags: Invalid value: ["a","b","c"]: spec.tags in body should have at most 2 items"#],
        ),
        (
            json!({"size": "small", "tags": []}),
            &["spec.tags: Invalid value: []: spec.tags in body should have at least 1 items"],
        ),
        (
            json!({"size": "small", "tags": ["a", "a"]}),
            &[r#"spec.tags[1]: Duplicate value: "a""#],
        ),
        (
            json!({"size": "small", "ports": [{"port": 1}, {"port": 1}]}),
            &["spec.ports[1]: Duplicate value: 1"],
        ),
        (
            json!({"size": "small", "ports": [{"port": "x"}]}),
            &[r#"spec.ports[0].port: Invalid value: "string": spec.ports[0].port in body must be of type integer: "string""#],
        ),
        (
            json!({"size": "small", "labels": {"a": 1}}),
            &[r#"spec.labels.a: Invalid value: "integer": spec.labels.a in body must be of type string: "integer""#],
        ),
        (
            json!({"size": "small", "template": {"spec": {}}}),
            &[
                "spec.template.apiVersion: Required value: must not be empty",
                "spec.template.kind: Required value: must not be empty",
            ],
        ),
        (
            json!("flat"),
            &[r#"spec: Invalid value: "string": spec in body must be of type object: "string""#],
        ),
    ];
    for (spec, want) in cases {
        assert_eq!(errors(spec.clone()), *want, "spec {spec}");
    }
}

#[test]
fn spec_is_required_at_the_root() {
    let mut errs = Vec::new();
    validate_object(&schema(), &json!({"metadata": {"name": "a"}}), &mut errs);
    assert_eq!(errs[0].to_string(), "spec: Required value");
}

#[test]
fn pruning_drops_undeclared_fields_but_keeps_preserved_and_embedded_ones() {
    let mut obj = json!({
        "apiVersion": "x.example.com/v1", "kind": "Foo", "metadata": {"name": "a"},
        "extra": 1,
        "spec": {"size": "small", "bogus": true,
                 "labels": {"k": "v"},
                 "free": {"anything": {"deep": 1}},
                 "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                              "spec": {}, "junk": 2},
                 "ports": [{"port": 1, "zzz": 1}]},
    });
    prune_object(&schema(), &mut obj);
    assert_eq!(
        obj,
        json!({
            "apiVersion": "x.example.com/v1", "kind": "Foo", "metadata": {"name": "a"},
            "spec": {"size": "small", "labels": {"k": "v"},
                     "free": {"anything": {"deep": 1}},
                     "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}},
                     "ports": [{"port": 1}]},
        })
    );
}

#[test]
fn defaults_fill_absent_fields_in_objects_and_list_items() {
    let mut obj =
        json!({"spec": {"size": "small", "ports": [{"port": 1}, {"port": 2, "name": "x"}]}});
    default(&schema(), &mut obj);
    assert_eq!(obj["spec"]["replicas"], 1);
    assert_eq!(obj["spec"]["ports"][0]["name"], "p");
    assert_eq!(obj["spec"]["ports"][1]["name"], "x");
    let mut given = json!({"spec": {"size": "small", "replicas": 3}});
    default(&schema(), &mut given);
    assert_eq!(given["spec"]["replicas"], 3);
}

#[test]
fn unknown_fields_are_the_ones_pruning_drops() {
    let obj = json!({"apiVersion": "x.example.com/v1", "kind": "Foo", "metadata": {"name": "a"},
        "extra": 1, "spec": {"size": "small", "bogus": true, "ports": [{"port": 1, "zzz": 1}],
        "free": {"kept": 1}}});
    assert_eq!(
        unknown_fields(&schema(), &obj),
        ["extra", "spec.bogus", "spec.ports[0].zzz"]
    );
}
