//! The audit policy (`--audit-policy-file`): an `audit.k8s.io/v1` `Policy`
//! read and validated as upstream's `LoadPolicyFromFile` does, and evaluated
//! as its policy checker: rules in order, the first that matches decides the
//! level; no rule matching means `None`. Without a file every request is
//! audited at `Metadata` ([`Policy::metadata_for_all`]).

use std::fmt;

use serde_json::Value;

use super::{Level, Stage};
use crate::authn::User;
use crate::authz::Request;

/// The group versions upstream reads a policy in (`v1` is current; the
/// others are deprecated but still accepted).
const GROUP_VERSIONS: &[&str] = &[
    "audit.k8s.io/v1",
    "audit.k8s.io/v1beta1",
    "audit.k8s.io/v1alpha1",
];
const KIND: &str = "Policy";

/// Why a policy file was refused: the field and what is wrong with it, as
/// upstream's field errors read (`rules[0].level: Unsupported value: ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("failed decoding: {0}")]
    Decode(String),
    #[error("unknown group version field {0:?} in policy")]
    GroupVersion(String),
    #[error("{field}: {message}")]
    Field { field: String, message: String },
    #[error("loaded illegal policy with 0 rules")]
    NoRules,
}

fn field_error(field: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError::Field {
        field: field.into(),
        message: message.into(),
    }
}

/// Resources of one API group a rule applies to (upstream's `GroupResources`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupResources {
    pub group: String,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
}

/// One rule (upstream's `PolicyRule`): every non-empty list must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub level: Level,
    pub users: Vec<String>,
    pub user_groups: Vec<String>,
    pub verbs: Vec<String>,
    pub resources: Vec<GroupResources>,
    pub namespaces: Vec<String>,
    pub non_resource_urls: Vec<String>,
    /// This rule's stages with the policy's added (their union, as upstream's
    /// checker makes it).
    pub omit_stages: Vec<Stage>,
    /// `None`: the policy's `omitManagedFields` stands.
    pub omit_managed_fields: Option<bool>,
}

/// What the policy says of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub level: Level,
    pub omit_stages: Vec<Stage>,
    pub omit_managed_fields: bool,
}

impl Verdict {
    pub fn omits(&self, stage: Stage) -> bool {
        self.omit_stages.contains(&stage)
    }
}

/// A loaded policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub omit_stages: Vec<Stage>,
    pub omit_managed_fields: bool,
}

/// What a request is, for matching: who (absent when authentication
/// failed), the verb, and the resource or path.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub user: Option<&'a User>,
    pub verb: &'a str,
    pub request: &'a Request,
}

impl Policy {
    /// What skiff audits without a policy file: every request at `Metadata`.
    pub fn metadata_for_all() -> Self {
        Self {
            rules: vec![Rule {
                level: Level::Metadata,
                users: vec![],
                user_groups: vec![],
                verbs: vec![],
                resources: vec![],
                namespaces: vec![],
                non_resource_urls: vec![],
                omit_stages: vec![],
                omit_managed_fields: None,
            }],
            omit_stages: vec![],
            omit_managed_fields: false,
        }
    }

    /// Reads a policy from YAML or JSON text.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let doc: Value =
            serde_saphyr::from_str(text).map_err(|e| PolicyError::Decode(e.to_string()))?;
        let Some(obj) = doc.as_object() else {
            return Err(PolicyError::Decode(
                "the policy is not an object".to_string(),
            ));
        };
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        if api_version.is_empty() || kind.is_empty() {
            return Err(PolicyError::Decode(
                "Object 'Kind' or 'apiVersion' is missing".to_string(),
            ));
        }
        if !GROUP_VERSIONS.contains(&api_version) || kind != KIND {
            return Err(PolicyError::GroupVersion(format!(
                "{api_version}, Kind={kind}"
            )));
        }
        let omit_stages = stages(obj.get("omitStages"), "omitStages")?;
        let omit_managed_fields = boolean(obj.get("omitManagedFields"), "omitManagedFields")?;
        let rules = match obj.get("rules") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(rules)) => rules
                .iter()
                .enumerate()
                .map(|(i, r)| rule(r, &format!("rules[{i}]"), &omit_stages))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(field_error("rules", "must be a list of rules")),
        };
        if rules.is_empty() {
            return Err(PolicyError::NoRules);
        }
        Ok(Self {
            rules,
            omit_stages,
            omit_managed_fields: omit_managed_fields.unwrap_or(false),
        })
    }

    /// The level and stages for `subject`: the first rule that matches.
    pub fn evaluate(&self, subject: Subject<'_>) -> Verdict {
        match self.rules.iter().find(|r| r.matches(subject)) {
            Some(r) => Verdict {
                level: r.level,
                omit_stages: r.omit_stages.clone(),
                omit_managed_fields: r.omit_managed_fields.unwrap_or(self.omit_managed_fields),
            },
            None => Verdict {
                level: Level::None,
                omit_stages: self.omit_stages.clone(),
                omit_managed_fields: self.omit_managed_fields,
            },
        }
    }
}

impl Rule {
    fn matches(&self, s: Subject<'_>) -> bool {
        if !self.users.is_empty() && !s.user.is_some_and(|u| self.users.contains(&u.name)) {
            return false;
        }
        if !self.user_groups.is_empty()
            && !s
                .user
                .is_some_and(|u| u.groups.iter().any(|g| self.user_groups.contains(g)))
        {
            return false;
        }
        if !self.verbs.is_empty() && !self.verbs.iter().any(|v| v == s.verb) {
            return false;
        }
        if !self.namespaces.is_empty() || !self.resources.is_empty() {
            return self.matches_resource(s.request);
        }
        if !self.non_resource_urls.is_empty() {
            return match s.request {
                Request::NonResource { path } => {
                    self.non_resource_urls.iter().any(|u| path_matches(path, u))
                }
                Request::Resource(_) => false,
            };
        }
        true
    }

    fn matches_resource(&self, request: &Request) -> bool {
        let Request::Resource(r) = request else {
            return false;
        };
        // A cluster-scoped resource is in the namespace "".
        if !self.namespaces.is_empty() && !self.namespaces.contains(&r.namespace) {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        let combined = if r.subresource.is_empty() {
            r.resource.clone()
        } else {
            format!("{}/{}", r.resource, r.subresource)
        };
        self.resources
            .iter()
            .filter(|gr| gr.group == r.api_group)
            .any(|gr| {
                if gr.resources.is_empty() {
                    return true;
                }
                if !gr.resource_names.is_empty() && !gr.resource_names.contains(&r.name) {
                    return false;
                }
                gr.resources.iter().any(|res| {
                    res == "*"
                        || *res == combined
                        || (!r.subresource.is_empty()
                            && res.strip_prefix("*/") == Some(r.subresource.as_str()))
                        || res.strip_suffix("/*") == Some(r.resource.as_str())
                })
            })
    }
}

/// `*`, the exact path, or a prefix ending in `*`.
fn path_matches(path: &str, spec: &str) -> bool {
    spec == "*"
        || spec == path
        || spec
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix.trim_end_matches('*')))
}

struct Quoted<'a>(&'a [&'a str]);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quoted: Vec<String> = self.0.iter().map(|s| format!("{s:?}")).collect();
        f.write_str(&quoted.join(", "))
    }
}

fn strings(v: Option<&Value>, field: &str) -> Result<Vec<String>, PolicyError> {
    match v {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| field_error(format!("{field}[{i}]"), "must be a string"))
            })
            .collect(),
        Some(_) => Err(field_error(field, "must be a list of strings")),
    }
}

fn boolean(v: Option<&Value>, field: &str) -> Result<Option<bool>, PolicyError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(field_error(field, "must be true or false")),
    }
}

fn stages(v: Option<&Value>, field: &str) -> Result<Vec<Stage>, PolicyError> {
    let names = strings(v, field)?;
    names
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Stage::parse(s).ok_or_else(|| {
                field_error(
                    format!("{field}[{i}]"),
                    format!(
                        "Invalid value: {s:?}: allowed stages are {}",
                        Stage::ALL.map(Stage::as_str).join(",")
                    ),
                )
            })
        })
        .collect()
}

fn rule(v: &Value, path: &str, policy_omits: &[Stage]) -> Result<Rule, PolicyError> {
    let Some(obj) = v.as_object() else {
        return Err(field_error(path, "must be an object"));
    };
    let get = |k: &str| obj.get(k);
    let at = |k: &str| format!("{path}.{k}");
    let level = match get("level").and_then(Value::as_str) {
        None | Some("") => return Err(field_error(at("level"), "Required value")),
        Some(l) => Level::parse(l).ok_or_else(|| {
            let names = Level::ALL.map(Level::as_str);
            field_error(
                at("level"),
                format!(
                    "Unsupported value: {l:?}: supported values: {}",
                    Quoted(&names)
                ),
            )
        })?,
    };
    let non_resource_urls = strings(get("nonResourceURLs"), &at("nonResourceURLs"))?;
    for (i, url) in non_resource_urls.iter().enumerate() {
        if url == "*" {
            continue;
        }
        let field = format!("{}[{i}]", at("nonResourceURLs"));
        if !url.starts_with('/') {
            return Err(field_error(
                field,
                format!(
                    "Invalid value: {url:?}: non-resource URL rules must begin with a '/' character"
                ),
            ));
        }
        if url[..url.len() - 1].contains('*') {
            return Err(field_error(field, format!("Invalid value: {url:?}: non-resource URL wildcards '*' must be the final character of the rule")));
        }
    }
    let resources = match get("resources") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, gr)| group_resources(gr, &format!("{}[{i}]", at("resources"))))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(field_error(at("resources"), "must be a list")),
    };
    let namespaces = strings(get("namespaces"), &at("namespaces"))?;
    if !non_resource_urls.is_empty() && (!resources.is_empty() || !namespaces.is_empty()) {
        return Err(field_error(
            at("nonResourceURLs"),
            "Invalid value: rules cannot apply to both regular resources and non-resource URLs",
        ));
    }
    let mut omit_stages = stages(get("omitStages"), &at("omitStages"))?;
    for s in policy_omits {
        if !omit_stages.contains(s) {
            omit_stages.push(*s);
        }
    }
    Ok(Rule {
        level,
        users: strings(get("users"), &at("users"))?,
        user_groups: strings(get("userGroups"), &at("userGroups"))?,
        verbs: strings(get("verbs"), &at("verbs"))?,
        resources,
        namespaces,
        non_resource_urls,
        omit_stages,
        omit_managed_fields: boolean(get("omitManagedFields"), &at("omitManagedFields"))?,
    })
}

fn group_resources(v: &Value, path: &str) -> Result<GroupResources, PolicyError> {
    let Some(obj) = v.as_object() else {
        return Err(field_error(path, "must be an object"));
    };
    let group = match obj.get("group") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(g)) => g.clone(),
        Some(_) => return Err(field_error(format!("{path}.group"), "must be a string")),
    };
    // A group is a DNS subdomain: `rbac.authorization.k8s.io/v1` is a
    // version, not a group (the mistake upstream's check is for).
    let valid_group = group.is_empty()
        || (group.len() <= 253
            && group.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            }));
    if !valid_group {
        return Err(field_error(
            format!("{path}.group"),
            format!("Invalid value: {group:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
        ));
    }
    let resources = strings(obj.get("resources"), &format!("{path}.resources"))?;
    let resource_names = strings(obj.get("resourceNames"), &format!("{path}.resourceNames"))?;
    if !resource_names.is_empty() && resources.is_empty() {
        return Err(field_error(
            format!("{path}.resourceNames"),
            "Invalid value: using resourceNames requires at least one resource",
        ));
    }
    Ok(GroupResources {
        group,
        resources,
        resource_names,
    })
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
