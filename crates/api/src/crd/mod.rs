//! apiextensions.k8s.io/v1 CustomResourceDefinitions: what a definition says
//! ([`Definition`]), the resources served from it ([`registered`]), its own
//! validation ([`validation`]), and the structural schema its objects are
//! checked, pruned and defaulted against ([`schema`]), printed by its
//! `additionalPrinterColumns` ([`printer`]).

pub mod printer;
pub mod registered;
pub mod schema;
pub mod validation;

use serde_json::Value;

use crate::registry::Resource;
use crate::validation::FieldError;

/// The group every CustomResourceDefinition lives in.
pub const GROUP: &str = "apiextensions.k8s.io";

/// One `additionalPrinterColumns` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

/// The `scale` subresource's paths (`.spec.replicas` form).
#[derive(Debug, Clone, PartialEq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// One entry of `spec.versions`.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    pub name: String,
    pub served: bool,
    pub storage: bool,
    /// `schema.openAPIV3Schema`, `Null` when absent.
    pub schema: Value,
    pub columns: Vec<PrinterColumn>,
    pub status: bool,
    pub scale: Option<ScalePaths>,
}

/// What a CustomResourceDefinition defines, read from its accepted spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    /// `metadata.name`: `<plural>.<group>`.
    pub name: String,
    pub group: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub versions: Vec<Version>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn string(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl Definition {
    /// Reads a stored CustomResourceDefinition; `None` if it is not one skiff
    /// can serve (validation refuses those before they are stored).
    pub fn from_object(crd: &Value) -> Option<Self> {
        let spec = crd.get("spec")?;
        let versions: Vec<Version> = spec
            .get("versions")?
            .as_array()?
            .iter()
            .map(|v| Version {
                name: string(v, "/name"),
                served: v.get("served").and_then(Value::as_bool).unwrap_or(false),
                storage: v.get("storage").and_then(Value::as_bool).unwrap_or(false),
                schema: v
                    .pointer("/schema/openAPIV3Schema")
                    .cloned()
                    .unwrap_or(Value::Null),
                columns: v
                    .get("additionalPrinterColumns")
                    .and_then(Value::as_array)
                    .map(|cols| {
                        cols.iter()
                            .map(|c| PrinterColumn {
                                name: string(c, "/name"),
                                type_: string(c, "/type"),
                                format: string(c, "/format"),
                                description: string(c, "/description"),
                                priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                                json_path: string(c, "/jsonPath"),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                status: v.pointer("/subresources/status").is_some(),
                scale: v.pointer("/subresources/scale").map(|s| ScalePaths {
                    spec_replicas: string(s, "/specReplicasPath"),
                    status_replicas: string(s, "/statusReplicasPath"),
                    label_selector: s
                        .get("labelSelectorPath")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                }),
            })
            .collect();
        let names = spec.get("names")?;
        let kind = string(names, "/kind");
        let plural = string(names, "/plural");
        let group = string(spec, "/group");
        if kind.is_empty() || plural.is_empty() || group.is_empty() || versions.is_empty() {
            return None;
        }
        let singular = match string(names, "/singular") {
            s if s.is_empty() => kind.to_lowercase(),
            s => s,
        };
        let list_kind = match string(names, "/listKind") {
            s if s.is_empty() => format!("{kind}List"),
            s => s,
        };
        Some(Self {
            name: string(crd, "/metadata/name"),
            group,
            plural,
            singular,
            kind,
            list_kind,
            namespaced: spec.get("scope").and_then(Value::as_str) != Some("Cluster"),
            short_names: strings(names.get("shortNames")),
            categories: strings(names.get("categories")),
            versions,
        })
    }

    /// The version objects are stored in.
    pub fn storage_version(&self) -> Option<&Version> {
        self.versions.iter().find(|v| v.storage)
    }

    pub fn version(&self, name: &str) -> Option<&Version> {
        self.versions.iter().find(|v| v.name == name)
    }
}

/// The definition behind a custom resource, `None` for built-in ones.
pub fn definition_of(resource: &Resource) -> Option<std::sync::Arc<Definition>> {
    registered::definition(resource.group, resource.plural)
}

/// Prunes fields the schema does not know and applies its defaults, as
/// upstream does when decoding a custom resource.
pub fn prune_and_default(resource: &Resource, obj: &mut Value) {
    let Some(def) = definition_of(resource) else {
        return;
    };
    let Some(version) = def.version(resource.version) else {
        return;
    };
    if version.schema.is_object() {
        schema::prune_object(&version.schema, obj);
        schema::default(&version.schema, obj);
    }
}

/// The fields of a custom resource its version's schema does not declare;
/// `None` for a built-in resource.
pub fn unknown_fields(resource: &Resource, obj: &Value) -> Option<Vec<String>> {
    let def = definition_of(resource)?;
    let version = def.version(resource.version)?;
    Some(if version.schema.is_object() {
        schema::unknown_fields(&version.schema, obj)
    } else {
        Vec::new()
    })
}

/// A custom resource checked against its version's schema.
pub fn validate_object(resource: &Resource, obj: &Value) -> Vec<FieldError> {
    let Some(def) = definition_of(resource) else {
        return Vec::new();
    };
    let Some(version) = def.version(resource.version) else {
        return Vec::new();
    };
    let mut errs = Vec::new();
    if version.schema.is_object() {
        schema::validate_object(&version.schema, obj, &mut errs);
    }
    if let Some(scale) = &version.scale {
        scale_replicas(obj, scale, &mut errs);
    }
    errs
}

/// Upstream checks the replicas at `specReplicasPath` is a non-negative int32.
fn scale_replicas(obj: &Value, scale: &ScalePaths, errs: &mut Vec<FieldError>) {
    let Some(v) = obj.pointer(&json_pointer(&scale.spec_replicas)) else {
        return;
    };
    let path = scale.spec_replicas.trim_start_matches('.');
    // The schema has had its say on this field already.
    if errs.iter().any(|e| e.field == path) {
        return;
    }
    match v.as_i64() {
        Some(n) if (0..=i64::from(i32::MAX)).contains(&n) => {}
        Some(n) if n < 0 => errs.push(FieldError::invalid(
            path,
            v.clone(),
            &format!("{path} in body should be greater than or equal to 0"),
        )),
        _ => errs.push(FieldError::invalid(
            path,
            v.clone(),
            &format!("{path} in body must be of type integer"),
        )),
    }
}

/// `.spec.replicas` as the JSON pointer `/spec/replicas`.
pub fn json_pointer(dotted: &str) -> String {
    dotted
        .trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
        .fold(String::new(), |mut acc, seg| {
            acc.push('/');
            acc.push_str(&seg.replace('~', "~0").replace('/', "~1"));
            acc
        })
}

/// The scale paths of a custom resource's version, `None` for built-ins.
pub fn scale_paths(resource: &Resource) -> Option<ScalePaths> {
    definition_of(resource)?
        .version(resource.version)?
        .scale
        .clone()
}

/// Writes the replicas a Scale asks for where the resource keeps them:
/// `spec.replicas`, or a custom resource's `specReplicasPath`.
pub fn set_spec_replicas(resource: &Resource, obj: &mut Value, replicas: Value) {
    let pointer = scale_paths(resource)
        .map(|s| json_pointer(&s.spec_replicas))
        .unwrap_or_else(|| "/spec/replicas".to_string());
    let mut cur = obj;
    let segments: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    for (i, seg) in segments.iter().enumerate() {
        if !cur.is_object() {
            *cur = Value::Object(Default::default());
        }
        let Some(map) = cur.as_object_mut() else {
            return;
        };
        if i + 1 == segments.len() {
            map.insert(seg.clone(), replicas);
            return;
        }
        cur = map
            .entry(seg.clone())
            .or_insert_with(|| Value::Object(Default::default()));
    }
}
