//! Compact JWS (RFC 7515) with ES256 only: what service-account tokens are.
//!
//! Verification trusts nothing in the token before its signature is checked
//! against a key the server holds: the header must say `ES256` (so `none`,
//! `HS256` with the public key as a secret, and every other substitution is
//! refused before any crypto), the key is chosen by our key ids, the signature
//! must be the 64-byte `r || s` form, and the claims are then checked: `iss`,
//! `aud`, `exp` / `nbf` / `iat` with a small leeway for clock skew, as go-jose's
//! `Claims.Validate` (which upstream uses) does.

use base64::Engine;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use serde_json::{json, Map, Value};

use super::keys::{Keys, PublicKey};

/// The only algorithm issued and accepted.
pub const ALG: &str = "ES256";
/// Clock skew tolerated on `exp`, `nbf` and `iat` (go-jose's DefaultLeeway).
pub const LEEWAY_SECONDS: i64 = 60;
/// Larger tokens are refused before any decoding: ours are well under 2 KiB.
const MAX_TOKEN_LEN: usize = 16 * 1024;

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Strict base64url: no padding, no stray bits (go-jose's RawURLEncoding).
fn unb64url(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
}

/// Signs `claims` (a JSON object) with the service-account key.
pub fn encode(keys: &Keys, claims: &Value) -> anyhow::Result<String> {
    // go-jose writes no `typ`; upstream's tokens carry `alg` and `kid` only.
    let header = json!({"alg": ALG, "kid": keys.kid()});
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(serde_json::to_vec(claims)?.as_slice())
    );
    let sig = keys.sign(signing_input.as_bytes())?;
    Ok(format!("{signing_input}.{}", b64url(&sig)))
}

/// What a token must say to be accepted.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    pub issuer: &'a str,
    /// The token's `aud` must name at least one of these.
    pub audiences: &'a [String],
    /// Seconds since the epoch.
    pub now: i64,
}

/// Why a token was refused (for the server log; clients see 401 only).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("not a compact JWS")]
    Malformed,
    #[error("the header is not a JSON object")]
    Header,
    #[error("alg {0:?} is not ES256")]
    Algorithm(String),
    #[error("the header has critical extensions")]
    Critical,
    #[error("no key has id {0:?}")]
    UnknownKey(String),
    #[error("the signature does not verify")]
    Signature,
    #[error("the claims are not a JSON object")]
    Claims,
    #[error("issuer {0:?} is not ours")]
    Issuer(String),
    #[error("no audience of the token is accepted")]
    Audience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued in the future")]
    IssuedInFuture,
}

/// The token's `iss`, read without verifying anything: only for telling a
/// service-account token from another JWT before verifying it.
pub fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(&unb64url(payload)?).ok()?;
    claims.get("iss")?.as_str().map(str::to_string)
}

/// Whether `token` has the shape of a compact JWS (a JSON header, three parts),
/// so it is worth trying as one. Only the shape: this runs on every request
/// with a token, and what is not base64url is refused by [`verify`] (or never
/// matches the verified-token cache, which compares whole texts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.len() <= MAX_TOKEN_LEN
        && token.starts_with("eyJ")
        && token.bytes().filter(|&c| c == b'.').count() == 2
}

/// Verifies a token's signature and claims; the claims on success.
pub fn verify(
    token: &str,
    keys: &[PublicKey],
    expected: &Expected<'_>,
) -> Result<Map<String, Value>, Invalid> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Invalid::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Invalid::Malformed);
    };
    let header: Value = serde_json::from_slice(&unb64url(h).ok_or(Invalid::Malformed)?)
        .map_err(|_| Invalid::Header)?;
    let header = header.as_object().ok_or(Invalid::Header)?;
    match header.get("alg").and_then(Value::as_str) {
        Some(ALG) => {}
        other => return Err(Invalid::Algorithm(other.unwrap_or_default().to_string())),
    }
    // RFC 7515 4.1.11: extensions we do not understand must not be ignored.
    if header.contains_key("crit") {
        return Err(Invalid::Critical);
    }
    let candidates: Vec<&PublicKey> = match header.get("kid") {
        Some(Value::String(kid)) => {
            let k: Vec<&PublicKey> = keys.iter().filter(|k| k.kid == *kid).collect();
            if k.is_empty() {
                return Err(Invalid::UnknownKey(kid.clone()));
            }
            k
        }
        None => keys.iter().collect(),
        Some(_) => return Err(Invalid::Header),
    };
    let sig = unb64url(s).ok_or(Invalid::Malformed)?;
    if sig.len() != 64 {
        return Err(Invalid::Signature);
    }
    // The signing input is the token's own text, not a re-encoding.
    let signing_input = &token[..h.len() + 1 + p.len()];
    let verified = candidates.iter().any(|k| {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &k.point)
            .verify(signing_input.as_bytes(), &sig)
            .is_ok()
    });
    if !verified {
        return Err(Invalid::Signature);
    }
    let claims: Value = serde_json::from_slice(&unb64url(p).ok_or(Invalid::Malformed)?)
        .map_err(|_| Invalid::Claims)?;
    let Value::Object(claims) = claims else {
        return Err(Invalid::Claims);
    };
    check_claims(&claims, expected)?;
    Ok(claims)
}

/// The token's audiences: `aud` is a string or an array of strings.
pub fn audiences(claims: &Map<String, Value>) -> Vec<String> {
    match claims.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// The claims' own checks (`iss`, `aud`, `exp`, `nbf`, `iat`), without the
/// signature: for claims whose signature was verified before.
pub(crate) fn check_claims(
    claims: &Map<String, Value>,
    expected: &Expected<'_>,
) -> Result<(), Invalid> {
    ClaimChecks::of(claims).check(expected)
}

/// What [`check_claims`] reads of the claims, read once: a token verified
/// before is checked against each request's moment without walking its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimChecks {
    iss: String,
    audiences: Vec<String>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
}

impl ClaimChecks {
    pub(crate) fn of(claims: &Map<String, Value>) -> Self {
        let time = |k: &str| claims.get(k).and_then(Value::as_i64);
        Self {
            iss: claims
                .get("iss")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            audiences: audiences(claims),
            exp: time("exp"),
            nbf: time("nbf"),
            iat: time("iat"),
        }
    }

    /// The token's `aud`, all of it.
    pub(crate) fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// Past `exp` and its leeway: no check can accept it any more.
    pub(crate) fn expired(&self, now: i64) -> bool {
        self.exp.is_none_or(|exp| now > exp + LEEWAY_SECONDS)
    }

    pub(crate) fn check(&self, expected: &Expected<'_>) -> Result<(), Invalid> {
        if self.iss != expected.issuer {
            return Err(Invalid::Issuer(self.iss.clone()));
        }
        if !self
            .audiences
            .iter()
            .any(|a| expected.audiences.contains(a))
        {
            return Err(Invalid::Audience);
        }
        // Service-account tokens always expire; one without `exp` is not ours.
        if self.expired(expected.now) {
            return Err(Invalid::Expired);
        }
        if self
            .nbf
            .is_some_and(|nbf| expected.now + LEEWAY_SECONDS < nbf)
        {
            return Err(Invalid::NotYetValid);
        }
        if self
            .iat
            .is_some_and(|iat| expected.now + LEEWAY_SECONDS < iat)
        {
            return Err(Invalid::IssuedInFuture);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISS: &str = "https://kubernetes.default.svc.cluster.local";
    const NOW: i64 = 1_900_000_000;

    fn keys() -> Keys {
        Keys::generate().unwrap().0
    }

    fn claims() -> Value {
        json!({"iss": ISS, "sub": "system:serviceaccount:default:web", "aud": [ISS],
               "iat": NOW - 10, "nbf": NOW - 10, "exp": NOW + 3600})
    }

    fn expect(auds: &[String]) -> Expected<'_> {
        Expected {
            issuer: ISS,
            audiences: auds,
            now: NOW,
        }
    }

    fn auds() -> Vec<String> {
        vec![ISS.to_string()]
    }

    /// A token with its header or claims replaced, re-signed with `keys`.
    fn forge(keys: &Keys, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let sig = keys.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", b64url(&sig))
    }

    #[test]
    fn a_signed_token_verifies_and_has_upstreams_header() {
        let k = keys();
        let t = encode(&k, &claims()).unwrap();
        assert!(looks_like_jwt(&t));
        // The shape alone is not enough: what is not base64url does not verify.
        let bad = t.replacen('.', "!.", 1);
        assert!(looks_like_jwt(&bad));
        assert!(verify(&bad, k.verifying(), &expect(&auds())).is_err());
        assert!(!looks_like_jwt("skiff-node.abc.def") && !looks_like_jwt("eyJa.b"));
        let c = verify(&t, k.verifying(), &expect(&auds())).unwrap();
        assert_eq!(c["sub"], "system:serviceaccount:default:web");
        let h: Value =
            serde_json::from_slice(&unb64url(t.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(h, json!({"alg": "ES256", "kid": k.kid()}));
        assert_eq!(unverified_issuer(&t).as_deref(), Some(ISS));
        // The string form of `aud` is accepted too.
        let mut one = claims();
        one["aud"] = json!(ISS);
        assert!(verify(&encode(&k, &one).unwrap(), k.verifying(), &expect(&auds())).is_ok());
    }

    #[test]
    fn a_tampered_token_is_refused() {
        let k = keys();
        let t = encode(&k, &claims()).unwrap();
        let (input, sig) = t.rsplit_once('.').unwrap();
        // Another signature byte.
        let mut raw = unb64url(sig).unwrap();
        raw[10] ^= 1;
        let bad = format!("{input}.{}", b64url(&raw));
        assert_eq!(
            verify(&bad, k.verifying(), &expect(&auds())),
            Err(Invalid::Signature)
        );
        // Other claims under the original signature.
        let mut c = claims();
        c["sub"] = json!("system:serviceaccount:kube-system:admin");
        let (h, _) = input.split_once('.').unwrap();
        let swapped = format!("{h}.{}.{sig}", b64url(c.to_string().as_bytes()));
        assert_eq!(
            verify(&swapped, k.verifying(), &expect(&auds())),
            Err(Invalid::Signature)
        );
        // Signed by another key that claims our kid.
        let other = keys();
        let forged = forge(&other, &json!({"alg": "ES256", "kid": k.kid()}), &claims());
        assert_eq!(
            verify(&forged, k.verifying(), &expect(&auds())),
            Err(Invalid::Signature)
        );
        // A kid we do not have.
        let unknown = encode(&other, &claims()).unwrap();
        assert!(matches!(
            verify(&unknown, k.verifying(), &expect(&auds())),
            Err(Invalid::UnknownKey(_))
        ));
        // A DER-encoded (non-JWS) signature, padding, garbage, extra parts.
        for t in [
            format!("{input}.{}", b64url(&[0u8; 70])),
            format!("{t}="),
            format!("{t}.x"),
            "eyJ.eyJ".to_string(),
            String::new(),
        ] {
            assert!(verify(&t, k.verifying(), &expect(&auds())).is_err(), "{t}");
        }
    }

    #[test]
    fn other_algorithms_are_refused_before_any_crypto() {
        let k = keys();
        let payload = b64url(claims().to_string().as_bytes());
        // alg none with an empty signature.
        let none = format!("{}.{payload}.", b64url(br#"{"alg":"none"}"#));
        assert_eq!(
            verify(&none, k.verifying(), &expect(&auds())),
            Err(Invalid::Algorithm("none".into()))
        );
        // HS256 keyed with the public key (the classic confusion attack).
        let header = b64url(format!(r#"{{"alg":"HS256","kid":"{}"}}"#, k.kid()).as_bytes());
        let input = format!("{header}.{payload}");
        let mac = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &k.verifying()[0].point),
            input.as_bytes(),
        );
        let hs = format!("{input}.{}", b64url(mac.as_ref()));
        assert_eq!(
            verify(&hs, k.verifying(), &expect(&auds())),
            Err(Invalid::Algorithm("HS256".into()))
        );
        // A valid ES256 signature under a header that is not ES256 (or has crit).
        for h in [json!({"alg": "es256"}), json!({"kid": k.kid()}), json!([1])] {
            assert!(verify(&forge(&k, &h, &claims()), k.verifying(), &expect(&auds())).is_err());
        }
        let crit = forge(&k, &json!({"alg": "ES256", "crit": ["b64"]}), &claims());
        assert_eq!(
            verify(&crit, k.verifying(), &expect(&auds())),
            Err(Invalid::Critical)
        );
    }

    #[test]
    fn expiry_not_before_issuer_and_audience_are_checked() {
        let k = keys();
        let check = |c: Value| verify(&encode(&k, &c).unwrap(), k.verifying(), &expect(&auds()));
        let mut c = claims();
        c["exp"] = json!(NOW - LEEWAY_SECONDS - 1);
        assert_eq!(check(c), Err(Invalid::Expired));
        let mut c = claims();
        c["exp"] = json!(NOW - 5); // within the leeway
        assert!(check(c).is_ok());
        let mut c = claims();
        c.as_object_mut().unwrap().remove("exp");
        assert_eq!(check(c), Err(Invalid::Expired));
        let mut c = claims();
        c["nbf"] = json!(NOW + LEEWAY_SECONDS + 1);
        assert_eq!(check(c), Err(Invalid::NotYetValid));
        let mut c = claims();
        c["iat"] = json!(NOW + 3 * LEEWAY_SECONDS);
        assert_eq!(check(c), Err(Invalid::IssuedInFuture));
        let mut c = claims();
        c["aud"] = json!(["vault"]);
        assert_eq!(check(c.clone()), Err(Invalid::Audience));
        // ... which another audience accepts.
        let vault = vec!["vault".to_string()];
        assert!(verify(&encode(&k, &c).unwrap(), k.verifying(), &expect(&vault)).is_ok());
        let mut c = claims();
        c["iss"] = json!("https://evil.example");
        assert!(matches!(check(c), Err(Invalid::Issuer(_))));
        let mut c = claims();
        c["aud"] = json!(null);
        assert_eq!(check(c), Err(Invalid::Audience));
    }
}
