//! Authenticating a service-account token: its signature and claims
//! ([`super::jwt`], once per token: [`super::verified`]), then the objects it
//! is bound to ([`super::bound_objects`]: as the store has them now), as
//! upstream's service-account token validator does. A token outlives nothing it
//! names: a deleted (or recreated, so another uid) ServiceAccount, Pod, Secret
//! or Node ends it. Like upstream, an object that is being deleted keeps its
//! tokens for [`DELETION_GRACE_SECONDS`], so a pod shutting down can still
//! report in.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use skiff_api::StatusError;

use super::bound_objects::{self, Meta};
use super::jwt::Expected;
use super::verified::Token;
use super::ISSUER;
use crate::authn::User;
use crate::server::Api;

pub const DELETION_GRACE_SECONDS: i64 = 60;

/// The `kubernetes.io` claim's keys and upstream's `user.extra` keys.
pub const CLAIM: &str = "kubernetes.io";
pub const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
pub const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";
pub const EXTRA_NODE_NAME: &str = "authentication.kubernetes.io/node-name";
pub const EXTRA_NODE_UID: &str = "authentication.kubernetes.io/node-uid";
pub const EXTRA_CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";

/// An authenticated token: who, and which of the asked audiences it names.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: User,
    pub audiences: Vec<String>,
}

/// A `{name, uid}` reference in the private claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    pub name: String,
    pub uid: String,
}

fn reference(v: Option<&Value>) -> Option<Ref> {
    let v = v?;
    Some(Ref {
        name: v.get("name")?.as_str()?.to_string(),
        uid: v.get("uid")?.as_str()?.to_string(),
    })
}

/// What the `kubernetes.io` claim binds a token to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub namespace: String,
    pub service_account: Ref,
    pub pod: Option<Ref>,
    pub secret: Option<Ref>,
    pub node: Option<Ref>,
}

impl Binding {
    pub fn from_claims(claims: &Map<String, Value>) -> Result<Self, String> {
        let k = claims
            .get(CLAIM)
            .ok_or("the token has no kubernetes.io claim (not a bound token)")?;
        let namespace = k
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty())
            .ok_or("the kubernetes.io claim names no namespace")?
            .to_string();
        let service_account = reference(k.get("serviceaccount"))
            .ok_or("the kubernetes.io claim names no serviceaccount")?;
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if sub != service_account_user(&namespace, &service_account.name) {
            return Err("sub does not name the bound service account".into());
        }
        // A reference that is there but incomplete is refused, not ignored.
        let optional = |key: &str| match k.get(key) {
            None | Some(Value::Null) => Ok(None),
            v => reference(v)
                .map(Some)
                .ok_or_else(|| format!("the {key} reference is incomplete")),
        };
        Ok(Self {
            namespace,
            service_account,
            pod: optional("pod")?,
            secret: optional("secret")?,
            node: optional("node")?,
        })
    }
}

pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// What every request with a token needs of its claims, derived once per
/// token ([`super::verified::Token::prepared`]).
#[derive(Debug)]
pub struct Prepared {
    /// The bound objects to check, in order: resource, reference, store key.
    bound: Vec<(&'static str, Ref, String)>,
    user: User,
}

impl Prepared {
    fn new(claims: &Map<String, Value>) -> Result<Result<Self, String>, StatusError> {
        let binding = match Binding::from_claims(claims) {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        let ns = Some(binding.namespace.as_str());
        let checks = [
            ("serviceaccounts", ns, Some(&binding.service_account)),
            ("pods", ns, binding.pod.as_ref()),
            ("secrets", ns, binding.secret.as_ref()),
            ("nodes", None, binding.node.as_ref()),
        ];
        let mut bound = Vec::new();
        for (plural, namespace, r) in checks {
            let Some(r) = r else { continue };
            let key = bound_objects::key(plural, namespace, &r.name)?;
            bound.push((plural, r.clone(), key));
        }
        let mut extra = BTreeMap::new();
        if let Some(pod) = &binding.pod {
            extra.insert(EXTRA_POD_NAME.to_string(), vec![pod.name.clone()]);
            extra.insert(EXTRA_POD_UID.to_string(), vec![pod.uid.clone()]);
        }
        if let Some(node) = &binding.node {
            extra.insert(EXTRA_NODE_NAME.to_string(), vec![node.name.clone()]);
            extra.insert(EXTRA_NODE_UID.to_string(), vec![node.uid.clone()]);
        }
        if let Some(jti) = claims.get("jti").and_then(Value::as_str) {
            extra.insert(EXTRA_CREDENTIAL_ID.to_string(), vec![format!("JTI={jti}")]);
        }
        let user = User::service_account(
            &binding.namespace,
            &binding.service_account.name,
            &binding.service_account.uid,
            extra,
        );
        Ok(Ok(Self { bound, user }))
    }

    /// The token's, derived on its first use.
    fn of(token: &Token) -> Result<Result<&Self, &str>, StatusError> {
        if token.prepared.get().is_none() {
            // A store-key error is the server's, not the token's: not kept.
            let prepared = Self::new(&token.claims)?;
            let _ = token.prepared.set(prepared);
        }
        Ok(match token.prepared.get() {
            Some(Ok(p)) => Ok(p),
            Some(Err(why)) => Err(why.as_str()),
            None => Err("the token's binding could not be read"),
        })
    }
}

/// The API audiences, made once.
fn api_audiences() -> &'static [String] {
    static API: LazyLock<Vec<String>> = LazyLock::new(super::api_audiences);
    &API
}

/// Verifies `token` for one of `audiences` (the API audiences when `None`).
/// `Ok(Err(why))`: not a valid token; `Err`: the store could not be asked.
pub async fn authenticate(
    api: &Api,
    token: &str,
    audiences: Option<&[String]>,
) -> Result<Result<Authenticated, String>, StatusError> {
    let audiences = audiences.unwrap_or(api_audiences());
    let now = Utc::now();
    let expected = Expected {
        issuer: ISSUER,
        audiences,
        now: now.timestamp(),
    };
    let keys = &api.service_account_keys;
    let token = match keys.verified().verify(token, keys.verifying(), &expected) {
        Ok(t) => t,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let prepared = match Prepared::of(&token)? {
        Ok(p) => p,
        Err(why) => return Ok(Err(why.to_string())),
    };
    if let Err(why) = check_objects(api, prepared, now).await? {
        return Ok(Err(why));
    }
    let audiences = token
        .audiences()
        .iter()
        .filter(|a| audiences.contains(a))
        .cloned()
        .collect();
    Ok(Ok(Authenticated {
        user: prepared.user.clone(),
        audiences,
    }))
}

/// Each bound object must exist with the token's uid and not have been
/// deleting for longer than the grace. Asked of [`super::bound_objects`] on
/// every request: remembered until the store reports a change, so a deleted
/// object ends its tokens at once.
async fn check_objects(
    api: &Api,
    p: &Prepared,
    now: DateTime<Utc>,
) -> Result<Result<(), String>, StatusError> {
    let found = api
        .bound_objects
        .get(&api.objects, p.bound.iter().map(|(_, _, key)| key.as_str()))
        .await?;
    for ((plural, r, _), meta) in p.bound.iter().zip(found) {
        let Some(meta) = meta else {
            return Ok(Err(format!(
                "the bound {plural} {:?} no longer exists",
                r.name
            )));
        };
        if let Err(why) = still_valid(&meta, &r.uid, now) {
            return Ok(Err(format!("the bound {plural} {:?}: {why}", r.name)));
        }
    }
    Ok(Ok(()))
}

fn still_valid(meta: &Meta, uid: &str, now: DateTime<Utc>) -> Result<(), &'static str> {
    if meta.uid.as_deref() != Some(uid) {
        return Err("its uid is not the token's (deleted and recreated)");
    }
    if let Some(ts) = &meta.deletion_timestamp {
        let since = DateTime::parse_from_rfc3339(ts)
            .map(|t| (now - t.with_timezone(&Utc)).num_seconds())
            .unwrap_or(i64::MAX);
        if since > DELETION_GRACE_SECONDS {
            return Err("it has been deleting for longer than the grace");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(k: Value) -> Map<String, Value> {
        json!({"sub": "system:serviceaccount:ns:web", "kubernetes.io": k})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn the_binding_is_read_from_the_private_claim() {
        let b = Binding::from_claims(&claims(json!({
            "namespace": "ns",
            "serviceaccount": {"name": "web", "uid": "u1"},
            "pod": {"name": "web-0", "uid": "u2"},
        })))
        .unwrap();
        assert_eq!(b.namespace, "ns");
        assert_eq!(b.pod.unwrap().uid, "u2");
        assert!(b.secret.is_none() && b.node.is_none());
        // sub must agree with the claim.
        assert!(Binding::from_claims(&claims(json!({
            "namespace": "other", "serviceaccount": {"name": "web", "uid": "u1"}
        })))
        .is_err());
        // An incomplete reference is refused.
        assert!(Binding::from_claims(&claims(json!({
            "namespace": "ns", "serviceaccount": {"name": "web", "uid": "u1"}, "pod": {"name": "x"}
        })))
        .is_err());
        assert!(Binding::from_claims(&Map::new()).is_err());
    }

    #[test]
    fn deleted_or_recreated_objects_end_their_tokens() {
        let now = Utc::now();
        let meta = |v: Value| Meta::parse(v.to_string().as_bytes()).unwrap();
        let obj = json!({"metadata": {"uid": "u1"}, "spec": {"containers": []}});
        assert!(still_valid(&meta(obj.clone()), "u1", now).is_ok());
        assert!(still_valid(&meta(obj.clone()), "u2", now).is_err());
        assert!(still_valid(&meta(json!({})), "u1", now).is_err());
        let mut deleting = obj.clone();
        let ts = |secs: i64| (now - chrono::Duration::seconds(secs)).to_rfc3339();
        deleting["metadata"]["deletionTimestamp"] = json!(ts(10));
        assert!(still_valid(&meta(deleting.clone()), "u1", now).is_ok());
        deleting["metadata"]["deletionTimestamp"] = json!(ts(DELETION_GRACE_SECONDS + 5));
        assert!(still_valid(&meta(deleting), "u1", now).is_err());
    }
}
