//! The `serviceAccountToken` source of projected volumes, as kubelet's token
//! manager: a token bound to the pod is requested through the API
//! (`TokenRequest` on the pod's ServiceAccount, `boundObjectRef` the pod), kept
//! per pod, account, audience and lifetime, and requested again once 80% of its
//! lifetime has passed or it is 24 hours old (kubelet's rule), so the file in
//! the pod is rewritten well before the token expires.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount, ServiceAccountTokenProjection};
use kube::api::{Api, PostParams};

/// Upstream's default `expirationSeconds` of a projected token.
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// Refreshed after this long whatever the lifetime (kubelet's `maxTTL`).
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// One cached token: the pod's uid, account, audience and lifetime asked for.
type CacheKey = (String, String, String, i64);

#[derive(Debug, Clone)]
struct Token {
    token: String,
    issued: SystemTime,
    expires: SystemTime,
}

fn cache() -> &'static Mutex<HashMap<CacheKey, Token>> {
    static TOKENS: OnceLock<Mutex<HashMap<CacheKey, Token>>> = OnceLock::new();
    TOKENS.get_or_init(Mutex::default)
}

/// When a token issued at `issued` and expiring at `expires` is due to be
/// replaced: at 80% of its lifetime, after [`MAX_AGE`] at the latest.
pub fn refresh_at(issued: SystemTime, expires: SystemTime) -> SystemTime {
    let lifetime = expires.duration_since(issued).unwrap_or_default();
    issued + lifetime.mul_f64(0.8).min(MAX_AGE)
}

/// A token for `source` of `pod`'s volume: the cached one until it is due,
/// else a new one from the API server.
pub async fn get(
    client: &kube::Client,
    pod: &Pod,
    source: &ServiceAccountTokenProjection,
) -> Result<String, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".to_string());
    let audience = source.audience.clone().unwrap_or_default();
    let seconds = source
        .expiration_seconds
        .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
    let key = (uid.clone(), account.clone(), audience.clone(), seconds);
    let now = SystemTime::now();
    if let Some(t) = lock().get(&key) {
        if now < refresh_at(t.issued, t.expires) {
            return Ok(t.token.clone());
        }
    }
    let request = TokenRequest {
        spec: TokenRequestSpec {
            // No audience: the API server's own (its issuer), as kubelet asks.
            audiences: if audience.is_empty() {
                Vec::new()
            } else {
                vec![audience]
            },
            expiration_seconds: Some(seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: Some(uid),
            }),
        },
        ..Default::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let issued = SystemTime::now();
    let answer: TokenRequest = api
        .create_subresource("token", &account, &PostParams::default(), &request)
        .await
        .map_err(|e| format!("failed to fetch token: {e}"))?;
    let status = answer
        .status
        .ok_or_else(|| "failed to fetch token: no status in the TokenRequest".to_string())?;
    // The server may shorten the lifetime: its expiry is the one that counts.
    let expires = SystemTime::from(status.expiration_timestamp.0);
    let token = status.token;
    lock().insert(
        key,
        Token {
            token: token.clone(),
            issued,
            expires,
        },
    );
    Ok(token)
}

fn lock() -> std::sync::MutexGuard<'static, HashMap<CacheKey, Token>> {
    cache().lock().unwrap_or_else(|e| e.into_inner())
}

/// The pods (uids) holding a token that is due now, to rewrite their volumes.
pub fn due(now: SystemTime) -> Vec<String> {
    let mut uids: Vec<String> = lock()
        .iter()
        .filter(|(_, t)| now >= refresh_at(t.issued, t.expires))
        .map(|((uid, ..), _)| uid.clone())
        .collect();
    uids.sort();
    uids.dedup();
    uids
}

/// Drops the tokens of pods that are gone (kubelet deletes them with the pod).
pub fn retain_pods(live: impl Fn(&str) -> bool) {
    lock().retain(|(uid, ..), _| live(uid));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshed_at_80_percent_or_a_day() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = t0 + Duration::from_secs(3607);
        assert_eq!(
            refresh_at(t0, hour),
            t0 + Duration::from_secs(3607).mul_f64(0.8)
        );
        let ten_min = t0 + Duration::from_secs(600);
        assert_eq!(refresh_at(t0, ten_min), t0 + Duration::from_secs(480));
        let week = t0 + Duration::from_secs(7 * 24 * 3600);
        assert_eq!(refresh_at(t0, week), t0 + MAX_AGE);
        // An expiry before issue (a clock step) is due at once.
        assert_eq!(refresh_at(hour, t0), hour);
    }

    #[test]
    fn due_tokens_name_their_pods() {
        let now = SystemTime::now();
        let old = Token {
            token: "a".into(),
            issued: now - Duration::from_secs(3000),
            expires: now + Duration::from_secs(600),
        };
        let fresh = Token {
            token: "b".into(),
            issued: now,
            expires: now + Duration::from_secs(3600),
        };
        let key = |uid: &str| (uid.to_string(), "default".to_string(), String::new(), 3607);
        lock().insert(key("due-test-old"), old);
        lock().insert(key("due-test-fresh"), fresh);
        let due = due(now);
        assert!(due.contains(&"due-test-old".to_string()));
        assert!(!due.contains(&"due-test-fresh".to_string()));
        retain_pods(|uid| !uid.starts_with("due-test-"));
        assert!(lock().keys().all(|(uid, ..)| !uid.starts_with("due-test-")));
    }
}
