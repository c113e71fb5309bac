//! Impersonation (`kubectl --as`, `--as-group`): the `Impersonate-User`,
//! `Impersonate-Group`, `Impersonate-Uid` and `Impersonate-Extra-<key>`
//! headers, each checked with the `impersonate` verb as upstream's
//! impersonation filter checks it (`users`, `groups`, `serviceaccounts` in
//! their namespace, `authentication.k8s.io` `uids` and `userextras/<key>`);
//! the request then goes on as the impersonated user.

use std::collections::BTreeMap;

use http::HeaderMap;
use skiff_api::StatusError;

use super::{policy, service_account_username, Attributes, RbacIndex, SERVICE_ACCOUNT_USER_PREFIX};
use crate::authn::{User, AUTHENTICATED, SERVICE_ACCOUNTS};

pub const USER_HEADER: &str = "impersonate-user";
pub const GROUP_HEADER: &str = "impersonate-group";
pub const UID_HEADER: &str = "impersonate-uid";
pub const EXTRA_PREFIX: &str = "impersonate-extra-";
const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";
const ANONYMOUS: &str = "system:anonymous";
const UNAUTHENTICATED: &str = "system:unauthenticated";

fn values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect()
}

/// Percent-decodes an extra's key, as upstream unescapes the header suffix.
fn unescape(s: &str) -> String {
    let q = crate::request::Query::parse(Some(&format!("k={}", s.replace('+', "%2B"))));
    q.get("k").unwrap_or(s).to_string()
}

/// Whether the request asks to impersonate anyone.
pub fn requested(headers: &HeaderMap) -> bool {
    headers.keys().any(|k| {
        let k = k.as_str();
        k == USER_HEADER || k == GROUP_HEADER || k == UID_HEADER || k.starts_with(EXTRA_PREFIX)
    })
}

/// The user `requester` acts as, once each impersonation header is allowed.
pub fn impersonate(
    index: Option<&RbacIndex>,
    requester: &User,
    headers: &HeaderMap,
) -> Result<User, StatusError> {
    let users = values(headers, USER_HEADER);
    let groups = values(headers, GROUP_HEADER);
    let uids = values(headers, UID_HEADER);
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in headers {
        if let Some(key) = k.as_str().strip_prefix(EXTRA_PREFIX) {
            if let Ok(v) = v.to_str() {
                extra.entry(unescape(key)).or_default().push(v.to_string());
            }
        }
    }
    let Some(name) = users.first().copied() else {
        return Err(StatusError::internal(
            "requested impersonation of groups, uid or extra without impersonating a user",
        ));
    };
    if users.len() > 1 || uids.len() > 1 {
        return Err(StatusError::bad_request(
            "only one user and one uid may be impersonated",
        ));
    }
    let allowed = |attrs: Attributes| policy::check(index, &attrs);
    let acting =
        |resource: &str| Attributes::resource(requester.clone(), "impersonate", "", resource);
    let mut new_groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    match name
        .strip_prefix(SERVICE_ACCOUNT_USER_PREFIX)
        .and_then(|r| r.split_once(':'))
    {
        Some((ns, sa)) if !ns.is_empty() && !sa.is_empty() && !sa.contains(':') => {
            allowed(acting("serviceaccounts").namespace(ns).name(sa))?;
            if groups.is_empty() {
                new_groups = vec![
                    SERVICE_ACCOUNTS.to_string(),
                    format!("{SERVICE_ACCOUNTS}:{ns}"),
                ];
            }
            debug_assert_eq!(service_account_username(ns, sa), name);
        }
        _ => allowed(acting("users").name(name))?,
    }
    for g in &groups {
        allowed(acting("groups").name(g))?;
    }
    let uid = uids.first().copied().unwrap_or("");
    if !uid.is_empty() {
        let attrs = Attributes::resource(
            requester.clone(),
            "impersonate",
            AUTHENTICATION_GROUP,
            "uids",
        );
        allowed(attrs.name(uid))?;
    }
    for (key, vals) in &extra {
        for v in vals {
            let attrs = Attributes::resource(
                requester.clone(),
                "impersonate",
                AUTHENTICATION_GROUP,
                "userextras",
            );
            allowed(attrs.subresource(key).name(v))?;
        }
    }
    let marker = if name == ANONYMOUS {
        UNAUTHENTICATED
    } else {
        AUTHENTICATED
    };
    if !new_groups.iter().any(|g| g == marker) {
        new_groups.push(marker.to_string());
    }
    Ok(User {
        name: name.to_string(),
        groups: new_groups,
        uid: uid.to_string(),
        extra: std::sync::Arc::new(extra),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn impersonation_needs_the_impersonate_verb() {
        let sa = User::service_account("default", "robot", "u", BTreeMap::new());
        let h = headers(&[("Impersonate-User", "jane")]);
        assert!(requested(&h));
        let index = RbacIndex::default();
        let e = impersonate(Some(&index), &sa, &h).unwrap_err();
        assert_eq!(
            e.message,
            r#"users "jane" is forbidden: User "system:serviceaccount:default:robot" cannot impersonate resource "users" in API group "" at the cluster scope"#
        );
        // The admin may; the user is then authenticated, with the groups asked.
        let h = headers(&[("Impersonate-User", "jane"), ("Impersonate-Group", "devs")]);
        let u = impersonate(Some(&index), &User::admin(), &h).unwrap();
        assert_eq!(u.name, "jane");
        assert_eq!(u.groups, ["devs", "system:authenticated"]);
        // A service account gets its groups.
        let h = headers(&[("Impersonate-User", "system:serviceaccount:ns:bot")]);
        let u = impersonate(None, &User::admin(), &h).unwrap();
        assert_eq!(
            u.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:ns",
                "system:authenticated"
            ]
        );
        // Allowed to impersonate that account only.
        let role = [json!({"metadata": {"name": "imp"},
            "rules": [{"verbs": ["impersonate"], "apiGroups": [""], "resources": ["serviceaccounts"], "resourceNames": ["bot"]}]})];
        let binding = [json!({"metadata": {"name": "b", "namespace": "ns"},
            "roleRef": {"kind": "ClusterRole", "name": "imp"},
            "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": "default"}]})];
        let index = RbacIndex::build(&super::super::RbacObjects {
            cluster_roles: &role,
            role_bindings: &binding,
            ..Default::default()
        });
        assert!(impersonate(Some(&index), &sa, &h).is_ok());
        let other = headers(&[("Impersonate-User", "system:serviceaccount:ns:other")]);
        assert_eq!(
            impersonate(Some(&index), &sa, &other).unwrap_err().code,
            403
        );
        let groups_only = headers(&[("Impersonate-Group", "devs")]);
        assert_eq!(
            impersonate(None, &User::admin(), &groups_only)
                .unwrap_err()
                .code,
            500
        );
    }
}
