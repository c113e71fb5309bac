//! Image references as Docker and kubelet read them: `busybox` is
//! `docker.io/library/busybox:latest`, a first component with a `.` or `:` (or
//! `localhost`) is a registry, and `@sha256:...` pins a manifest digest.

use std::fmt;

/// Docker Hub's canonical name; `index.docker.io` is folded into it.
pub const DOCKER_HUB: &str = "docker.io";

/// A normalized image reference. Its `Display` is the full form kubelet and
/// containerd report: `docker.io/library/busybox:latest`,
/// `localhost:5000/a/b@sha256:...`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `ghcr.io`, `localhost:5000`, `[::1]:5000`.
    pub registry: String,
    /// The path inside the registry: `library/busybox`, `a/b`.
    pub repository: String,
    /// The tag; `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    /// `sha256:<64 hex>` when the reference pins a manifest.
    pub digest: Option<String>,
}

/// Why a reference does not parse; the message is Docker's wording where it has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("couldn't parse image name {reference:?}: {reason}")]
pub struct ReferenceError {
    pub reference: String,
    pub reason: String,
}

impl Reference {
    /// `registry/repository`, without tag or digest: the name a pod's imageID starts with.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// kubelet's default pull policy is `Always` exactly when this is true: the tag
    /// is `latest` (given or defaulted) and no digest pins the image.
    pub fn is_latest(&self) -> bool {
        self.digest.is_none() && self.tag.as_deref() == Some("latest")
    }

    /// `name@digest`, the form an image is recorded under after a pull by digest.
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference {
            digest: Some(digest.to_string()),
            tag: None,
            ..self.clone()
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        normalize(s)
    }
}

/// Parses and normalizes a reference the way `docker pull` and kubelet do.
pub fn normalize(reference: &str) -> Result<Reference, ReferenceError> {
    let err = |reason: &str| ReferenceError {
        reference: reference.to_string(),
        reason: reason.to_string(),
    };
    if reference.is_empty() || reference.len() > 4096 {
        return Err(err("invalid reference format"));
    }
    let (rest, digest) = match reference.split_once('@') {
        Some((r, d)) => (r, Some(parse_digest(d).map_err(|m| err(&m))?)),
        None => (reference, None),
    };
    // A tag is the part after the last ':' that is not followed by a '/' (a ':'
    // before a '/' is a registry port).
    let (name, tag) = match rest.rfind(':') {
        Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(t) = tag {
        if !valid_tag(t) {
            return Err(err("invalid reference format"));
        }
    }
    let (registry, path) = split_registry(name);
    if let Some(r) = registry {
        if !valid_registry(r) {
            return Err(err("invalid reference format"));
        }
    }
    if path.is_empty() || path.len() > 255 {
        return Err(err("invalid reference format"));
    }
    for component in path.split('/') {
        if !valid_component(component) {
            let reason = if component.chars().any(|c| c.is_ascii_uppercase()) {
                "invalid reference format: repository name must be lowercase"
            } else {
                "invalid reference format"
            };
            return Err(err(reason));
        }
    }
    let mut registry = registry.unwrap_or(DOCKER_HUB).to_string();
    if registry == "index.docker.io" {
        registry = DOCKER_HUB.to_string();
    }
    let repository = if registry == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_string()
    };
    let tag = match (tag, &digest) {
        (Some(t), _) => Some(t.to_string()),
        (None, None) => Some("latest".to_string()),
        (None, Some(_)) => None,
    };
    Ok(Reference {
        registry,
        repository,
        tag,
        digest,
    })
}

/// Docker's rule: the first component is a registry when it has a `.` or `:`,
/// is `localhost`, or has an upper-case letter (repositories cannot).
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

/// Only sha256 is accepted: it is what registries serve and what we verify.
pub(crate) fn parse_digest(d: &str) -> Result<String, String> {
    match d.split_once(':') {
        Some(("sha256", hex))
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(d.to_string())
        }
        Some((algo, _)) if algo != "sha256" && !algo.is_empty() => {
            Err(format!("unsupported digest algorithm {algo:?}"))
        }
        _ => Err("invalid reference format: invalid digest".to_string()),
    }
}

fn valid_tag(t: &str) -> bool {
    let mut b = t.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphanumeric() || c == b'_')
        && t.len() <= 128
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__' or any number of '-'.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// A host name or IP (IPv6 in brackets), with an optional port.
fn valid_registry(r: &str) -> bool {
    let valid_port =
        |p: &str| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = r.strip_prefix('[') {
        let Some((v6, tail)) = rest.split_once(']') else {
            return false;
        };
        return v6.parse::<std::net::Ipv6Addr>().is_ok()
            && (tail.is_empty() || tail.strip_prefix(':').is_some_and(valid_port));
    }
    let host = match r.split_once(':') {
        Some((h, p)) if valid_port(p) => h,
        Some(_) => return false,
        None => r,
    };
    host.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalizes_like_docker() {
        let cases: &[(&str, &str)] = &[
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
            ),
            ("bretfisher/httpenv", "docker.io/bretfisher/httpenv:latest"),
            ("localhost:5000/a/b:1", "localhost:5000/a/b:1"),
            ("localhost/a", "localhost/a:latest"),
            ("ghcr.io/me/my-app:1.4", "ghcr.io/me/my-app:1.4"),
            ("127.0.0.1:5000/busybox", "127.0.0.1:5000/busybox:latest"),
            ("[::1]:5000/busybox:x", "[::1]:5000/busybox:x"),
            (
                "a/b__c.d-e---f:V_1.0-rc",
                "docker.io/a/b__c.d-e---f:V_1.0-rc",
            ),
        ];
        for (input, want) in cases {
            let r = normalize(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), *want, "{input}");
        }
        let r = normalize(&format!("a/b@{D}")).expect("digest");
        assert_eq!(r.to_string(), format!("docker.io/a/b@{D}"));
        assert_eq!(r.tag, None);
        assert!(!r.is_latest());
        let r = normalize(&format!("a/b:1@{D}")).expect("tag and digest");
        assert_eq!(r.to_string(), format!("docker.io/a/b:1@{D}"));
        assert_eq!(r.name(), "docker.io/a/b");
    }

    #[test]
    fn latest_is_the_default_tag() {
        assert!(normalize("busybox").expect("ok").is_latest());
        assert!(normalize("busybox:latest").expect("ok").is_latest());
        assert!(!normalize("busybox:1").expect("ok").is_latest());
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "Busybox",
            "docker.io/Library/busybox",
            "busybox:",
            "busybox:-x",
            "a//b",
            "/a",
            "a/",
            "a b",
            "a/b@sha256:123",
            "a/b@md5:0123",
            "a..b",
            "-a",
            "a:b:c",
            "a/b:c/d",
            "host:port/a",
            "[::x]:5000/a",
        ] {
            assert!(normalize(bad).is_err(), "{bad:?} should be rejected");
        }
        let e = normalize("Busybox").expect_err("upper case");
        assert!(e.to_string().contains("must be lowercase"), "{e}");
        assert!(e
            .to_string()
            .starts_with("couldn't parse image name \"Busybox\""));
    }
}
