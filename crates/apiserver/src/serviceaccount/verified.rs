//! Tokens whose signature this server has already checked.
//!
//! A pod's client sends the same token with every request for most of its
//! hour, and verifying an ES256 signature is the largest part of what
//! authenticating it costs (bench/api `--rbac`). The signature and the header
//! checks depend on nothing but the token's text and the server's keys, so a
//! token that verified once is kept, with what every request needs of it read
//! out once ([`jwt::ClaimChecks`], and [`Token::prepared`] for
//! [`super::bound`]: its binding, the bound objects' store keys, the user it
//! names). A later request with the same token only re-checks the claims
//! against the moment and the audiences it is asked for (`exp`, `nbf`, `iat`,
//! `iss`, `aud`, as the first time).
//!
//! Tokens are found by their signature segment and then compared whole: only
//! tokens that verified are kept, their signatures are this server's and
//! random, so hashing those 86 characters (not the whole 1 KB, nor a SHA-256 of
//! it) tells them apart, and the full comparison makes any other token with the
//! same signature a miss. Lookups take a read lock, so concurrent requests do
//! not queue behind one another; only a token seen for the first time writes.
//!
//! Nothing about revocation is cached: the objects a token is bound to are
//! checked on every request ([`super::bound`], [`super::bound_objects`]), so a
//! token stops working the moment its Pod or ServiceAccount is gone, as
//! before. (Upstream caches whole authentication results for 10 s instead,
//! `--token-auth-cache-ttl`-style, and reads bound objects from informers.)

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use serde_json::{Map, Value};

use super::bound::Prepared;
use super::jwt::{self, ClaimChecks, Expected, Invalid};
use super::keys::PublicKey;

/// How many verified tokens are kept. A node's pods each use one or two, so
/// this covers a large cluster; past it, expired ones go first, then all.
pub const CAPACITY: usize = 8192;

/// A token whose signature verified.
#[derive(Debug)]
pub struct Token {
    text: Box<str>,
    pub claims: Map<String, Value>,
    checks: ClaimChecks,
    /// What [`super::bound`] derives from the claims, derived once: the
    /// binding or why the claims bind nothing.
    pub(super) prepared: OnceLock<Result<Prepared, String>>,
}

impl Token {
    fn new(text: &str, claims: Map<String, Value>) -> Self {
        Self {
            text: text.into(),
            checks: ClaimChecks::of(&claims),
            claims,
            prepared: OnceLock::new(),
        }
    }

    /// The token's `aud`, all of it.
    pub fn audiences(&self) -> &[String] {
        self.checks.audiences()
    }
}

/// The verified tokens, by their signature segment.
#[derive(Debug, Default)]
pub struct Verified {
    tokens: RwLock<HashMap<Box<str>, Arc<Token>>>,
}

/// The signature segment, what tokens are found by.
fn signature(token: &str) -> &str {
    token.rsplit_once('.').map_or(token, |(_, s)| s)
}

impl Verified {
    /// [`jwt::verify`], with the signature checked once per token.
    pub fn verify(
        &self,
        token: &str,
        keys: &[PublicKey],
        expected: &Expected<'_>,
    ) -> Result<Arc<Token>, Invalid> {
        let sig = signature(token);
        let hit = self
            .read()
            .get(sig)
            .filter(|t| crate::authn::ct_eq(t.text.as_bytes(), token.as_bytes()))
            .cloned();
        if let Some(t) = hit {
            t.checks.check(expected)?;
            return Ok(t);
        }
        let verified = Arc::new(Token::new(token, jwt::verify(token, keys, expected)?));
        let mut tokens = self.write();
        if tokens.len() >= CAPACITY {
            let now = expected.now;
            tokens.retain(|_, t| !t.checks.expired(now));
            if tokens.len() >= CAPACITY {
                tokens.clear();
            }
        }
        tokens.insert(sig.into(), verified.clone());
        Ok(verified)
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    // The map holds only verified tokens: a panic elsewhere leaves it valid.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Box<str>, Arc<Token>>> {
        self.tokens.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Box<str>, Arc<Token>>> {
        self.tokens.write().unwrap_or_else(|e| e.into_inner())
    }
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
            cache
                .verify(
                    &t,
                    keys.verifying(),
                    &at(NOW + 3600 + jwt::LEEWAY_SECONDS + 1, &api)
                )
                .err(),
            Some(Invalid::Expired)
        );
        let other = vec!["vault".to_string()];
        assert_eq!(
            cache.verify(&t, keys.verifying(), &at(NOW, &other)).err(),
            Some(Invalid::Audience)
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
            let mut tokens = cache.write();
            for i in 0..CAPACITY {
                let exp = if i % 2 == 0 { NOW - 3600 } else { NOW + 3600 };
                let claims = json!({"exp": exp}).as_object().unwrap().clone();
                let text = format!("h.p.{i}");
                tokens.insert(signature(&text).into(), Arc::new(Token::new(&text, claims)));
            }
        }
        let keys = Keys::generate().unwrap().0;
        let api = vec![ISS.to_string()];
        cache
            .verify(&token(&keys, NOW + 3600), keys.verifying(), &at(NOW, &api))
            .unwrap();
        assert_eq!(cache.len(), CAPACITY / 2 + 1);
    }

    #[test]
    fn a_token_is_found_by_its_signature_but_must_match_whole() {
        let keys = Keys::generate().unwrap().0;
        let api = vec![ISS.to_string()];
        let cache = Verified::default();
        let good = token(&keys, NOW + 3600);
        cache
            .verify(&good, keys.verifying(), &at(NOW, &api))
            .unwrap();
        // Another payload under the same signature: a miss, then refused.
        let (_, sig) = good.rsplit_once('.').unwrap();
        let other = token(&keys, NOW + 7200);
        let (signed, _) = other.rsplit_once('.').unwrap();
        let spliced = format!("{signed}.{sig}");
        assert_eq!(
            cache
                .verify(&spliced, keys.verifying(), &at(NOW, &api))
                .err(),
            Some(Invalid::Signature)
        );
        assert_eq!(cache.len(), 1);
    }
}
