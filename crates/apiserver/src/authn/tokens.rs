//! The bearer-token formats skiff reads besides service-account JWTs, and the
//! Secrets that back them: bootstrap tokens (`<id>.<secret>`, as upstream's
//! bootstrap token authenticator reads them), node tokens
//! (`skiff-node.<node>.<secret>`, stored hashed) and the join tokens a node
//! or server is given (`K10<ca hash>::<bootstrap token>`, as k3s writes them).
//! What a request authenticated with one may do is [`super`]'s to say.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sha2::Digest;

use super::{ct_eq, User, BOOTSTRAPPERS, NAMESPACE};

/// Upstream's names for bootstrap token Secrets and their keys.
pub const BOOTSTRAP_TOKEN_TYPE: &str = "bootstrap.kubernetes.io/token";
pub const BOOTSTRAP_TOKEN_SECRET_PREFIX: &str = "bootstrap-token-";
pub const BOOTSTRAP_USER_PREFIX: &str = "system:bootstrap:";
const KEY_TOKEN_ID: &str = "token-id";
const KEY_TOKEN_SECRET: &str = "token-secret";
const KEY_EXPIRATION: &str = "expiration";
const KEY_DESCRIPTION: &str = "description";
const KEY_USAGE_AUTHENTICATION: &str = "usage-bootstrap-authentication";
const KEY_EXTRA_GROUPS: &str = "auth-extra-groups";

/// skiff's node credentials: one Secret per node, holding its token's hash.
pub const NODE_CREDENTIAL_TYPE: &str = "skiff.dev/node-credential";
pub const NODE_CREDENTIAL_PREFIX: &str = "skiff-node-credential-";
/// The label on a node credential Secret naming its node.
pub const NODE_LABEL: &str = "skiff.dev/node";
const NODE_TOKEN_PREFIX: &str = "skiff-node.";
const KEY_NODE_NAME: &str = "node-name";
const KEY_TOKEN_HASH: &str = "token-hash";

fn is_token_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn random_token_chars(n: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// A bootstrap token, `[a-z0-9]{6}.[a-z0-9]{16}`: a public id and a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    pub id: String,
    pub secret: String,
}

impl BootstrapToken {
    pub fn parse(s: &str) -> Option<Self> {
        let (id, secret) = s.split_once('.')?;
        let ok = id.len() == 6
            && secret.len() == 16
            && id.bytes().all(is_token_char)
            && secret.bytes().all(is_token_char);
        ok.then(|| Self {
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }

    /// A new random token, as `kubeadm token generate` makes.
    pub fn generate() -> Self {
        Self {
            id: random_token_chars(6),
            secret: random_token_chars(16),
        }
    }

    pub fn secret_name(&self) -> String {
        format!("{BOOTSTRAP_TOKEN_SECRET_PREFIX}{}", self.id)
    }

    /// The Secret that makes this token valid, as kubeadm writes it.
    pub fn to_secret(&self, description: Option<&str>, expiration: Option<DateTime<Utc>>) -> Value {
        let mut data = serde_json::Map::new();
        let mut put = |k: &str, v: &str| {
            data.insert(k.to_string(), json!(b64(v.as_bytes())));
        };
        put(KEY_TOKEN_ID, &self.id);
        put(KEY_TOKEN_SECRET, &self.secret);
        put(KEY_USAGE_AUTHENTICATION, "true");
        if let Some(d) = description.filter(|d| !d.is_empty()) {
            put(KEY_DESCRIPTION, d);
        }
        if let Some(e) = expiration {
            put(
                KEY_EXPIRATION,
                &e.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            );
        }
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": self.secret_name(), "namespace": NAMESPACE},
            "type": BOOTSTRAP_TOKEN_TYPE,
            "data": data,
        })
    }
}

impl std::fmt::Display for BootstrapToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

fn b64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// A Secret's `data[key]`, decoded.
pub fn secret_data(secret: &Value, key: &str) -> Option<String> {
    use base64::Engine;
    let v = secret.get("data")?.get(key)?.as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(v).ok()?;
    String::from_utf8(bytes).ok()
}

/// What a bootstrap token Secret says about its token, for listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapTokenInfo {
    pub token: BootstrapToken,
    pub description: Option<String>,
    /// The `expiration` as written (RFC 3339); `None`: never expires.
    pub expiration: Option<String>,
    pub usages: Vec<String>,
    pub extra_groups: Vec<String>,
}

impl BootstrapTokenInfo {
    /// Reads a bootstrap token Secret; `None` if it is not one.
    pub fn from_secret(secret: &Value) -> Option<Self> {
        if secret.get("type").and_then(Value::as_str) != Some(BOOTSTRAP_TOKEN_TYPE) {
            return None;
        }
        let id = secret_data(secret, KEY_TOKEN_ID)?;
        let token =
            BootstrapToken::parse(&format!("{id}.{}", secret_data(secret, KEY_TOKEN_SECRET)?))?;
        let mut usages: Vec<String> = secret
            .get("data")
            .and_then(Value::as_object)
            .map(|d| {
                d.keys()
                    .filter_map(|k| k.strip_prefix("usage-bootstrap-"))
                    .filter(|u| {
                        secret_data(secret, &format!("usage-bootstrap-{u}")).as_deref()
                            == Some("true")
                    })
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        usages.sort();
        Some(Self {
            token,
            description: secret_data(secret, KEY_DESCRIPTION),
            expiration: secret_data(secret, KEY_EXPIRATION),
            usages,
            extra_groups: secret_data(secret, KEY_EXTRA_GROUPS)
                .map(|g| {
                    g.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// Whether an `expiration` value has passed; one that does not parse has, as
/// upstream treats it.
pub fn expired(expiration: Option<&str>, now: DateTime<Utc>) -> bool {
    match expiration {
        None => false,
        Some(e) => DateTime::parse_from_rfc3339(e).map_or(true, |t| t <= now),
    }
}

/// Upstream's rule for extra bootstrap groups.
fn valid_bootstrap_group(g: &str) -> bool {
    let Some(rest) = g.strip_prefix("system:bootstrappers:") else {
        return false;
    };
    !rest.is_empty()
        && rest.len() <= 256
        && rest
            .bytes()
            .all(|c| is_token_char(c) || c == b':' || c == b'-')
        && rest.bytes().last().is_some_and(is_token_char)
}

/// Checks a bootstrap token against its Secret as upstream's authenticator does;
/// `Err` says why it does not authenticate (for the server log only: the client
/// sees 401 Unauthorized whatever the reason).
pub fn bootstrap_user(
    secret: &Value,
    token: &BootstrapToken,
    now: DateTime<Utc>,
) -> Result<User, &'static str> {
    if secret.pointer("/metadata/deletionTimestamp").is_some() {
        return Err("its Secret is being deleted");
    }
    if secret.get("type").and_then(Value::as_str) != Some(BOOTSTRAP_TOKEN_TYPE) {
        return Err("its Secret is not of type bootstrap.kubernetes.io/token");
    }
    let given = secret_data(secret, KEY_TOKEN_SECRET).unwrap_or_default();
    if !ct_eq(given.as_bytes(), token.secret.as_bytes()) {
        return Err("the token secret does not match");
    }
    if secret_data(secret, KEY_TOKEN_ID).as_deref() != Some(token.id.as_str()) {
        return Err("the token id does not match");
    }
    if expired(secret_data(secret, KEY_EXPIRATION).as_deref(), now) {
        return Err("the token has expired");
    }
    if secret_data(secret, KEY_USAGE_AUTHENTICATION).as_deref() != Some("true") {
        return Err("the token is not for authentication");
    }
    let mut groups = vec![BOOTSTRAPPERS.to_string()];
    if let Some(extra) = secret_data(secret, KEY_EXTRA_GROUPS) {
        for g in extra.split(',').map(str::trim).filter(|g| !g.is_empty()) {
            if !valid_bootstrap_group(g) {
                return Err("auth-extra-groups names a group outside system:bootstrappers:");
            }
            if !groups.iter().any(|x| x == g) {
                groups.push(g.to_string());
            }
        }
    }
    let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
    Ok(User::new(
        format!("{BOOTSTRAP_USER_PREFIX}{}", token.id),
        &groups,
    ))
}

/// A node's bearer token: `skiff-node.<node name>.<64 hex digits>`. It names its
/// node, so checking it is one read of that node's credential Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeToken {
    pub node: String,
    pub secret: String,
}

impl NodeToken {
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix(NODE_TOKEN_PREFIX)?;
        let (node, secret) = rest.rsplit_once('.')?;
        let ok = !node.is_empty()
            && node.len() <= 253
            && secret.len() == 64
            && secret
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
        ok.then(|| Self {
            node: node.to_string(),
            secret: secret.to_string(),
        })
    }

    pub fn generate(node: &str) -> Self {
        use rand::Rng;
        let bytes: [u8; 32] = rand::rng().random();
        Self {
            node: node.to_string(),
            secret: hex::encode(bytes),
        }
    }

    pub fn secret_name(&self) -> String {
        node_credential_name(&self.node)
    }

    /// What the Secret keeps instead of the token.
    pub fn hash(&self) -> String {
        hex::encode(sha2::Sha256::digest(self.secret.as_bytes()))
    }

    /// The Secret that makes this token valid.
    pub fn to_secret(&self) -> Value {
        let mut labels = serde_json::Map::new();
        // A label value is at most 63 characters; a longer node name is in the data.
        if skiff_api::validation::label_value(&self.node).is_empty() {
            labels.insert(NODE_LABEL.to_string(), json!(self.node));
        }
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": self.secret_name(), "namespace": NAMESPACE, "labels": labels},
            "type": NODE_CREDENTIAL_TYPE,
            "data": {
                KEY_NODE_NAME: b64(self.node.as_bytes()),
                KEY_TOKEN_HASH: b64(self.hash().as_bytes()),
            },
        })
    }
}

impl std::fmt::Display for NodeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{NODE_TOKEN_PREFIX}{}.{}", self.node, self.secret)
    }
}

pub fn node_credential_name(node: &str) -> String {
    format!("{NODE_CREDENTIAL_PREFIX}{node}")
}

/// Checks a node token against its credential Secret.
pub fn node_user(secret: &Value, token: &NodeToken) -> Result<User, &'static str> {
    if secret.pointer("/metadata/deletionTimestamp").is_some() {
        return Err("its Secret is being deleted");
    }
    if secret.get("type").and_then(Value::as_str) != Some(NODE_CREDENTIAL_TYPE) {
        return Err("its Secret is not a node credential");
    }
    if secret_data(secret, KEY_NODE_NAME).as_deref() != Some(token.node.as_str()) {
        return Err("the node name does not match");
    }
    let stored = secret_data(secret, KEY_TOKEN_HASH).unwrap_or_default();
    if !ct_eq(stored.as_bytes(), token.hash().as_bytes()) {
        return Err("the token does not match");
    }
    Ok(User::node(&token.node))
}

/// The join token a node is given: k3s's secure format,
/// `K10<sha256 of the CA certificate PEM>::<bootstrap token>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Hex sha256 of the CA certificate's PEM file, as served at `/cacerts`.
    pub ca_hash: String,
    pub token: BootstrapToken,
}

pub const JOIN_TOKEN_PREFIX: &str = "K10";

pub fn ca_hash(ca_pem: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(ca_pem))
}

impl JoinToken {
    pub fn new(ca_pem: &[u8], token: BootstrapToken) -> Self {
        Self {
            ca_hash: ca_hash(ca_pem),
            token,
        }
    }

    /// Parses a join token; `Err` says what is wrong with it, in a few words.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let rest = s.strip_prefix(JOIN_TOKEN_PREFIX).ok_or_else(|| {
            "a join token starts with K10 (use the token skiff server prints or `skiff token create` makes)".to_string()
        })?;
        let (hash, creds) = rest.split_once("::").ok_or_else(|| {
            "a join token is K10<CA hash>::<id>.<secret>; no '::' found".to_string()
        })?;
        if hash.len() != 64 || !hash.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "the CA hash after K10 must be 64 hex digits (a sha256), not {:?}",
                hash
            ));
        }
        let token = BootstrapToken::parse(creds).ok_or_else(|| {
            "the credentials after '::' must be a bootstrap token [a-z0-9]{6}.[a-z0-9]{16}"
                .to_string()
        })?;
        Ok(Self {
            ca_hash: hash.to_ascii_lowercase(),
            token,
        })
    }

    /// Whether `ca_pem` (the bytes `/cacerts` served) is the CA this token names.
    pub fn matches_ca(&self, ca_pem: &[u8]) -> bool {
        ct_eq(ca_hash(ca_pem).as_bytes(), self.ca_hash.as_bytes())
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{JOIN_TOKEN_PREFIX}{}::{}", self.ca_hash, self.token)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::authn) fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    pub(in crate::authn) fn tok() -> BootstrapToken {
        BootstrapToken::parse("abcdef.0123456789abcdef").unwrap()
    }

    #[test]
    fn bootstrap_tokens_parse_as_upstream_defines_them() {
        assert_eq!(tok().id, "abcdef");
        assert_eq!(tok().secret, "0123456789abcdef");
        for bad in [
            "abcdef0123456789abcdef",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdef",
            "abcdef.0123456789abcde",
            "abcdef.0123456789abcdef0",
            "abcdef.0123456789abcde_",
            "",
        ] {
            assert!(BootstrapToken::parse(bad).is_none(), "{bad}");
        }
        let g = BootstrapToken::generate();
        assert_eq!(BootstrapToken::parse(&g.to_string()), Some(g.clone()));
        assert_eq!(g.secret_name(), format!("bootstrap-token-{}", g.id));
    }

    #[test]
    fn a_bootstrap_token_authenticates_as_its_bootstrap_user() {
        let secret = tok().to_secret(Some("the default join token"), None);
        assert_eq!(secret["type"], BOOTSTRAP_TOKEN_TYPE);
        assert_eq!(secret["metadata"]["name"], "bootstrap-token-abcdef");
        assert_eq!(secret["metadata"]["namespace"], "kube-system");
        let u = bootstrap_user(&secret, &tok(), now()).unwrap();
        assert_eq!(u.name, "system:bootstrap:abcdef");
        assert_eq!(u.groups, ["system:bootstrappers", "system:authenticated"]);
        // A wrong secret, a wrong id, another type: not authenticated.
        let wrong = BootstrapToken::parse("abcdef.0123456789abcdee").unwrap();
        assert!(bootstrap_user(&secret, &wrong, now()).is_err());
        let other = BootstrapToken::parse("abcdeg.0123456789abcdef").unwrap();
        assert!(bootstrap_user(&secret, &other, now()).is_err());
        let mut opaque = secret.clone();
        opaque["type"] = json!("Opaque");
        assert!(bootstrap_user(&opaque, &tok(), now()).is_err());
        let mut deleting = secret.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2029-01-01T00:00:00Z");
        assert!(bootstrap_user(&deleting, &tok(), now()).is_err());
        // Usage must say so.
        let mut no_usage = secret.clone();
        no_usage["data"]
            .as_object_mut()
            .unwrap()
            .remove(KEY_USAGE_AUTHENTICATION);
        assert!(bootstrap_user(&no_usage, &tok(), now()).is_err());
    }

    #[test]
    fn bootstrap_tokens_expire() {
        let exp = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let later = tok().to_secret(None, Some(exp("2030-01-01T00:00:01Z")));
        assert!(bootstrap_user(&later, &tok(), now()).is_ok());
        let past = tok().to_secret(None, Some(exp("2029-12-31T23:59:59Z")));
        assert_eq!(
            bootstrap_user(&past, &tok(), now()),
            Err("the token has expired")
        );
        let at_now = tok().to_secret(None, Some(now()));
        assert!(bootstrap_user(&at_now, &tok(), now()).is_err());
        // An expiration that does not parse counts as expired, as upstream.
        let mut garbage = tok().to_secret(None, None);
        garbage["data"][KEY_EXPIRATION] = json!(b64(b"tomorrow"));
        assert!(bootstrap_user(&garbage, &tok(), now()).is_err());
        assert!(!expired(None, now()));
    }

    #[test]
    fn extra_groups_must_be_bootstrappers_subgroups() {
        let mut s = tok().to_secret(None, None);
        s["data"][KEY_EXTRA_GROUPS] = json!(b64(
            b"system:bootstrappers:skiff:workers, system:bootstrappers:a"
        ));
        let u = bootstrap_user(&s, &tok(), now()).unwrap();
        assert_eq!(
            u.groups,
            [
                "system:bootstrappers",
                "system:bootstrappers:skiff:workers",
                "system:bootstrappers:a",
                "system:authenticated"
            ]
        );
        for bad in [
            "system:masters",
            "system:bootstrappers:",
            "system:bootstrappers:x-",
        ] {
            s["data"][KEY_EXTRA_GROUPS] = json!(b64(bad.as_bytes()));
            assert!(bootstrap_user(&s, &tok(), now()).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_info_reads_what_kubeadm_lists() {
        let mut s = tok().to_secret(
            Some("for workers"),
            Some(
                DateTime::parse_from_rfc3339("2030-01-02T00:00:00Z")
                    .unwrap()
                    .with_timezone(&Utc),
            ),
        );
        s["data"]["usage-bootstrap-signing"] = json!(b64(b"true"));
        let info = BootstrapTokenInfo::from_secret(&s).unwrap();
        assert_eq!(info.token, tok());
        assert_eq!(info.description.as_deref(), Some("for workers"));
        assert_eq!(info.expiration.as_deref(), Some("2030-01-02T00:00:00Z"));
        assert_eq!(info.usages, ["authentication", "signing"]);
        s["type"] = json!("Opaque");
        assert!(BootstrapTokenInfo::from_secret(&s).is_none());
    }

    #[test]
    fn node_tokens_carry_their_node_and_are_stored_hashed() {
        let t = NodeToken::generate("worker-1.example");
        let text = t.to_string();
        assert!(text.starts_with("skiff-node.worker-1.example."));
        let parsed = NodeToken::parse(&text).unwrap();
        assert_eq!(parsed, t);
        let secret = t.to_secret();
        assert_eq!(secret["type"], NODE_CREDENTIAL_TYPE);
        assert_eq!(
            secret["metadata"]["name"],
            "skiff-node-credential-worker-1.example"
        );
        assert_eq!(secret["metadata"]["labels"][NODE_LABEL], "worker-1.example");
        // The token itself is nowhere in the Secret.
        assert!(!secret.to_string().contains(&t.secret));
        assert!(!secret.to_string().contains(&b64(t.secret.as_bytes())));
        let u = node_user(&secret, &t).unwrap();
        assert_eq!(u.name, "system:node:worker-1.example");
        assert_eq!(u.groups, ["system:nodes", "system:authenticated"]);
        assert_eq!(u.node_name(), Some("worker-1.example"));
        // Another node's token, a changed secret: refused.
        let other = NodeToken::generate("worker-1.example");
        assert!(node_user(&secret, &other).is_err());
        let mut theirs = t.clone();
        theirs.node = "worker-2".into();
        assert!(node_user(&secret, &theirs).is_err());
        for bad in [
            "skiff-node.x.abc",
            "skiff-node..0123",
            "node.x.0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert!(NodeToken::parse(bad).is_none(), "{bad}");
        }
        // A long node name is not a label value; the data still names it.
        let long = NodeToken::generate(&"n".repeat(100));
        assert!(long.to_secret()["metadata"]["labels"]
            .as_object()
            .unwrap()
            .is_empty());
    }

    #[test]
    fn join_tokens_are_k3s_secure_tokens() {
        let ca = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let jt = JoinToken::new(ca, tok());
        let text = jt.to_string();
        assert_eq!(
            text,
            format!(
                "K10{}::abcdef.0123456789abcdef",
                hex::encode(sha2::Sha256::digest(ca))
            )
        );
        let parsed = JoinToken::parse(&text).unwrap();
        assert_eq!(parsed, jt);
        assert!(parsed.matches_ca(ca));
        assert!(!parsed.matches_ca(b"another CA"));
        assert!(JoinToken::parse("abcdef.0123456789abcdef")
            .unwrap_err()
            .contains("K10"));
        assert!(JoinToken::parse("K10abc").unwrap_err().contains("::"));
        assert!(JoinToken::parse("K10abc::abcdef.0123456789abcdef")
            .unwrap_err()
            .contains("64 hex"));
        let bad_creds = format!("K10{}::admin:password", jt.ca_hash);
        assert!(JoinToken::parse(&bad_creds)
            .unwrap_err()
            .contains("bootstrap token"));
    }
}
