//! The service-account signing key: an ECDSA P-256 key (JWS `ES256`) kept in
//! `<data-dir>/sa.key`, made at first start, and its public half as a JWK.
//!
//! Upstream accepts RSA and ECDSA keys (`--service-account-key-file`,
//! `--service-account-signing-key-file`); skiff makes P-256 because ring signs
//! it without a big-number library and tokens stay short. The file is PKCS#8
//! PEM (`PRIVATE KEY`), what `openssl genpkey -algorithm EC` writes. Every
//! server of a cluster must share it: a joining server is to receive it in its
//! bootstrap bundle (server_join.rs), or tokens one server issued would not
//! verify on another.

use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use sha2::Digest;

/// The file in the data directory that holds the signing key.
pub const SA_KEY: &str = "sa.key";

/// The DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1,
/// then the BIT STRING header of a 65-byte uncompressed point): with the point
/// appended it is what Go's `x509.MarshalPKIXPublicKey` returns, which
/// upstream hashes for the key id.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A public key tokens are verified with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// Upstream's key id: base64url(sha256(DER SubjectPublicKeyInfo)).
    pub kid: String,
    /// The uncompressed point `04 || X || Y` (65 bytes).
    pub point: Vec<u8>,
}

impl PublicKey {
    pub fn from_point(point: &[u8]) -> Result<Self> {
        anyhow::ensure!(
            point.len() == 65 && point[0] == 0x04,
            "not an uncompressed P-256 point"
        );
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(point);
        Ok(Self {
            kid: b64url(&sha2::Sha256::digest(&spki)),
            point: point.to_vec(),
        })
    }

    /// The key as a JWK, in the members upstream's `/openid/v1/jwks` lists.
    pub fn jwk(&self) -> Value {
        json!({
            "use": "sig",
            "kty": "EC",
            "kid": self.kid,
            "crv": "P-256",
            "alg": "ES256",
            "x": b64url(&self.point[1..33]),
            "y": b64url(&self.point[33..65]),
        })
    }
}

/// The key tokens are signed with, and the keys they are verified with.
pub struct Keys {
    signing: EcdsaKeyPair,
    public: PublicKey,
    rng: SystemRandom,
    /// Tokens these keys have verified (see [`super::verified`]).
    verified: super::verified::Verified,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("Keys")
            .field("kid", &self.public.kid)
            .finish()
    }
}

impl Keys {
    /// Reads `<dir>/sa.key`, making it (0600) when there is none.
    pub fn ensure(dir: &Path) -> Result<Self> {
        let path = dir.join(SA_KEY);
        if path.exists() {
            let pem = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            return Self::from_pem(&pem).with_context(|| format!("loading {}", path.display()));
        }
        let (keys, pem) = Self::generate()?;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data dir {}", dir.display()))?;
        crate::pki::write_private(&path, &pem)?;
        tracing::info!(kid = %keys.public.kid, "made the service-account signing key");
        Ok(keys)
    }

    /// A new key and its PEM.
    pub fn generate() -> Result<(Self, String)> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("cannot generate a P-256 key"))?;
        let pem = to_pem("PRIVATE KEY", pkcs8.as_ref());
        Ok((Self::from_pkcs8(pkcs8.as_ref())?, pem))
    }

    pub fn from_pem(pem: &str) -> Result<Self> {
        let der = from_pem(pem, "PRIVATE KEY")
            .context("expected a PKCS#8 PEM block (BEGIN PRIVATE KEY) holding a P-256 key")?;
        Self::from_pkcs8(&der)
    }

    fn from_pkcs8(der: &[u8]) -> Result<Self> {
        let rng = SystemRandom::new();
        let signing = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|e| anyhow::anyhow!("not a P-256 PKCS#8 key: {e}"))?;
        let public = PublicKey::from_point(signing.public_key().as_ref())?;
        Ok(Self {
            signing,
            public,
            rng,
            verified: Default::default(),
        })
    }

    pub fn kid(&self) -> &str {
        &self.public.kid
    }

    /// The keys a token may be signed with: one today; rotation would add the
    /// previous key here.
    pub fn verifying(&self) -> &[PublicKey] {
        std::slice::from_ref(&self.public)
    }

    /// The tokens verified with [`Self::verifying`] so far.
    pub fn verified(&self) -> &super::verified::Verified {
        &self.verified
    }

    /// `r || s`, 64 bytes: the JWS form of an ES256 signature.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>> {
        let sig = self
            .signing
            .sign(&self.rng, msg)
            .map_err(|_| anyhow::anyhow!("ECDSA signing failed"))?;
        Ok(sig.as_ref().to_vec())
    }

    /// `/openid/v1/jwks`.
    pub fn jwks(&self) -> Value {
        json!({"keys": self.verifying().iter().map(PublicKey::jwk).collect::<Vec<_>>()})
    }
}

fn to_pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn from_pem(pem: &str, label: &str) -> Result<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin).context("no BEGIN line")? + begin.len();
    let stop = pem[start..].find(&end).context("no END line")? + start;
    let body: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .context("the PEM body is not base64")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_private_and_reloaded() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = Keys::ensure(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(SA_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = Keys::ensure(dir.path()).unwrap();
        assert_eq!(a.kid(), b.kid());
        assert!(std::fs::read_to_string(dir.path().join(SA_KEY))
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(
            Keys::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .is_err()
        );
    }

    #[test]
    fn the_key_id_is_upstreams_and_the_jwk_has_its_point() {
        let (keys, _) = Keys::generate().unwrap();
        let p = &keys.verifying()[0];
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(&p.point);
        // The prefix is a well-formed DER SEQUENCE of the whole length.
        assert_eq!(spki.len(), 91);
        assert_eq!(spki[1] as usize, spki.len() - 2);
        assert_eq!(p.kid, b64url(&sha2::Sha256::digest(&spki)));
        // ... and the same DER rcgen (x509) writes for this key.
        let (_, pem) = Keys::generate().unwrap();
        let again = Keys::from_pem(&pem).unwrap();
        let rc = rcgen::KeyPair::from_pem(&pem).unwrap();
        let mut mine = P256_SPKI_PREFIX.to_vec();
        mine.extend_from_slice(&again.verifying()[0].point);
        assert_eq!(rcgen::PublicKeyData::subject_public_key_info(&rc), mine);
        assert_eq!(p.kid.len(), 43);
        let jwk = p.jwk();
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["alg"], "ES256");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["x"].as_str().unwrap().len(), 43);
        assert_eq!(keys.jwks()["keys"][0]["kid"], p.kid);
    }
}
