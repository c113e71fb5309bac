//! Tokens whose signature this server has already checked.
//!
//! A pod's client sends the same token with every request for most of its
//! hour, and verifying an ES256 signature is the largest part of what
//! authenticating it costs (bench/api `--rbac`). The signature and the header
//! checks depend on nothing but the token's text and the server's keys, so the
//! claims of a token that verified once are kept, keyed by the SHA-256 of the
//! token, and a later request with the same token only re-checks the claims
//! against the moment and the audiences it is asked for (`exp`, `nbf`, `iat`,
//! `iss`, `aud`, as the first time).
//!
//! Nothing about revocation is cached: the objects a token is bound to are read
//! on every request ([`super::bound`]), so a token stops working the moment its
//! Pod or ServiceAccount is gone, as before. (Upstream caches whole
//! authentication results for 10 s instead, `--token-auth-cache-ttl`-style,
//! and reads bound objects from informers.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::jwt::{self, Expected, Invalid};
use super::keys::PublicKey;

/// How many verified tokens are kept. A node's pods each use one or two, so
/// this covers a large cluster; past it, expired ones go first, then all.
pub const CAPACITY: usize = 8192;

type Claims = Arc<Map<String, Value>>;

/// The claims of tokens that verified, by the SHA-256 of the token.
#[derive(Debug, Default)]
pub struct Verified {
    tokens: Mutex<HashMap<[u8; 32], Claims>>,
}

impl Verified {
    /// [`jwt::verify`], with the signature checked once per token.
    pub fn verify(
        &self,
        token: &str,
        keys: &[PublicKey],
        expected: &Expected<'_>,
    ) -> Result<Claims, Invalid> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let hit = self.lock().get(&digest).cloned();
        if let Some(claims) = hit {
            jwt::check_claims(&claims, expected)?;
            return Ok(claims);
        }
        let claims = Arc::new(jwt::verify(token, keys, expected)?);
        let mut tokens = self.lock();
        if tokens.len() >= CAPACITY {
            let now = expected.now;
            tokens.retain(|_, c| !expired(c, now));
            if tokens.len() >= CAPACITY {
                tokens.clear();
            }
        }
        tokens.insert(digest, claims.clone());
        Ok(claims)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Claims>> {
        // The map holds only verified claims: a panic elsewhere leaves it valid.
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Past `exp` and its leeway: no check can accept it any more.
fn expired(claims: &Map<String, Value>, now: i64) -> bool {
    claims
        .get("exp")
        .and_then(Value::as_i64)
        .is_none_or(|exp| now > exp + jwt::LEEWAY_SECONDS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serviceaccount::keys::Keys;
    use serde_json::json;

    const ISS: &str = "https://kubernetes.default.svc.cluster.local";
    const NOW: i64 = 1_900_000_000;

    fn token(keys: &Keys, exp: i64) -> String {
        let claims = json!({"iss": ISS, "aud": [ISS], "exp": exp, "iat": NOW, "nbf": NOW,
                            "sub": "system:serviceaccount:ns:sa"});
        jwt::encode(keys, &claims).unwrap()
    }

    fn at(now: i64, audiences: &[String]) -> Expected<'_> {
        Expected {
            issuer: ISS,
            audiences,
            now,
        }
    }

    #[test]
    fn a_verified_token_is_remembered_and_its_claims_checked_each_time() {
        let keys = Keys::generate().unwrap().0;
        let api = vec![ISS.to_string()];
        let cache = Verified::default();
        let t = token(&keys, NOW + 3600);
        assert!(cache.verify(&t, keys.verifying(), &at(NOW, &api)).is_ok());
        assert_eq!(cache.len(), 1);
        assert!(cache
            .verify(&t, keys.verifying(), &at(NOW + 10, &api))
            .is_ok());
        assert_eq!(cache.len(), 1);
        // The cached claims still expire, and still name only their audiences.
        assert_eq!(
            cache.verify(
                &t,
                keys.verifying(),
                &at(NOW + 3600 + jwt::LEEWAY_SECONDS + 1, &api)
            ),
            Err(Invalid::Expired)
        );
        let other = vec!["vault".to_string()];
        assert_eq!(
            cache.verify(&t, keys.verifying(), &at(NOW, &other)),
            Err(Invalid::Audience)
        );
    }

    #[test]
    fn only_tokens_that_verify_are_kept() {
        let keys = Keys::generate().unwrap().0;
        let stranger = Keys::generate().unwrap().0;
        let api = vec![ISS.to_string()];
        let cache = Verified::default();
        let forged = token(&stranger, NOW + 3600);
        for _ in 0..2 {
            assert!(matches!(
                cache.verify(&forged, keys.verifying(), &at(NOW, &api)),
                Err(Invalid::UnknownKey(_))
            ));
        }
        // A valid token with its signature altered is another token: verified anew.
        let good = token(&keys, NOW + 3600);
        cache
            .verify(&good, keys.verifying(), &at(NOW, &api))
            .unwrap();
        let mut tampered = good.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(cache
            .verify(&tampered, keys.verifying(), &at(NOW, &api))
            .is_err());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_full_cache_drops_expired_tokens_first() {
        let cache = Verified::default();
        {
            let mut tokens = cache.lock();
            for i in 0..CAPACITY {
                let exp = if i % 2 == 0 { NOW - 3600 } else { NOW + 3600 };
                let digest: [u8; 32] = Sha256::digest(i.to_string()).into();
                let claims = json!({"exp": exp}).as_object().unwrap().clone();
                tokens.insert(digest, Arc::new(claims));
            }
        }
        let keys = Keys::generate().unwrap().0;
        let api = vec![ISS.to_string()];
        cache
            .verify(&token(&keys, NOW + 3600), keys.verifying(), &at(NOW, &api))
            .unwrap();
        assert_eq!(cache.len(), CAPACITY / 2 + 1);
    }
}
