//! The ingress-nginx annotations skiff honours (`nginx.ingress.kubernetes.io/*`),
//! read once per Ingress when the route table is built. Any other annotation
//! under that prefix is ignored, and said so in an event (see
//! [`crate::routes::Problem`]), so a user porting an nginx Ingress learns what
//! did not carry over.

use std::collections::BTreeMap;

/// The prefix of ingress-nginx's annotations.
pub const PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// The cookie name ingress-nginx uses when `session-cookie-name` is not given.
pub const DEFAULT_COOKIE: &str = "INGRESSCOOKIE";

/// The annotations (after [`PREFIX`]) this component acts on.
const KNOWN: &[&str] = &[
    "affinity",
    "affinity-mode",
    "session-cookie-name",
    "session-cookie-max-age",
    "session-cookie-expires",
    "session-cookie-path",
    "rewrite-target",
    "use-regex",
    "ssl-redirect",
    "backend-protocol",
];

/// How requests reach a route's endpoints (`backend-protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Http,
    Https,
    /// gRPC over cleartext HTTP/2 (h2c prior knowledge).
    Grpc,
    /// gRPC over TLS.
    Grpcs,
}

impl Protocol {
    pub fn tls(self) -> bool {
        matches!(self, Protocol::Https | Protocol::Grpcs)
    }
    pub fn h2_only(self) -> bool {
        matches!(self, Protocol::Grpc | Protocol::Grpcs)
    }
}

/// Cookie affinity (`affinity: cookie`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Affinity {
    /// `session-cookie-name`.
    pub cookie: String,
    /// `session-cookie-max-age` (seconds); `None`: a session cookie.
    pub max_age: Option<u64>,
    /// `session-cookie-path`; `None`: the route's path.
    pub path: Option<String>,
}

/// What one Ingress's annotations ask of its routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteOptions {
    pub affinity: Option<Affinity>,
    /// `rewrite-target`, with `$1`-style references to the path's capture groups.
    pub rewrite_target: Option<String>,
    /// The paths are regular expressions (`use-regex`, implied by `rewrite-target`).
    pub use_regex: bool,
    /// Redirect plain HTTP to HTTPS for hosts with TLS (`ssl-redirect`, default true).
    pub ssl_redirect: bool,
    pub protocol: Protocol,
}

impl Default for RouteOptions {
    fn default() -> Self {
        RouteOptions {
            affinity: None,
            rewrite_target: None,
            use_regex: false,
            ssl_redirect: true,
            protocol: Protocol::Http,
        }
    }
}

/// Something about an annotation worth an event: `(warning, reason, message)`.
pub type Note = (bool, &'static str, String);

fn boolean(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// Reads an Ingress's annotations; also returns what is ignored and why.
pub fn parse(annotations: &BTreeMap<String, String>) -> (RouteOptions, Vec<Note>) {
    let mut o = RouteOptions::default();
    let mut notes = Vec::new();
    let get = |k: &str| annotations.get(&format!("{PREFIX}{k}")).map(|s| s.trim());
    let mut invalid = |key: &str, value: &str, why: &str| {
        notes.push((
            true,
            "InvalidAnnotation",
            format!("annotation \"{PREFIX}{key}\": invalid value {value:?}: {why}; ignored"),
        ));
    };
    match get("affinity") {
        Some("cookie") => {
            let cookie = get("session-cookie-name")
                .filter(|n| !n.is_empty())
                .unwrap_or(DEFAULT_COOKIE)
                .to_string();
            let max_age = match get("session-cookie-max-age").or(get("session-cookie-expires")) {
                Some(v) => match v.parse::<u64>() {
                    Ok(n) => Some(n),
                    Err(_) => {
                        invalid("session-cookie-max-age", v, "must be a number of seconds");
                        None
                    }
                },
                None => None,
            };
            let path = get("session-cookie-path")
                .filter(|p| !p.is_empty())
                .map(str::to_string);
            o.affinity = Some(Affinity {
                cookie,
                max_age,
                path,
            });
        }
        Some(other) if !other.is_empty() => invalid(
            "affinity",
            other,
            "the only affinity supported is \"cookie\"",
        ),
        _ => {}
    }
    if let Some(t) = get("rewrite-target").filter(|t| !t.is_empty()) {
        o.rewrite_target = Some(t.to_string());
        o.use_regex = true;
    }
    if let Some(v) = get("use-regex") {
        match boolean(v) {
            Some(b) => o.use_regex |= b,
            None => invalid("use-regex", v, "must be \"true\" or \"false\""),
        }
    }
    if let Some(v) = get("ssl-redirect") {
        match boolean(v) {
            Some(b) => o.ssl_redirect = b,
            None => invalid("ssl-redirect", v, "must be \"true\" or \"false\""),
        }
    }
    if let Some(v) = get("backend-protocol") {
        o.protocol = match v.to_ascii_uppercase().as_str() {
            "HTTP" => Protocol::Http,
            "HTTPS" => Protocol::Https,
            "GRPC" => Protocol::Grpc,
            "GRPCS" => Protocol::Grpcs,
            _ => {
                invalid(
                    "backend-protocol",
                    v,
                    "supported values: HTTP, HTTPS, GRPC, GRPCS",
                );
                Protocol::Http
            }
        };
    }
    for key in annotations.keys() {
        if let Some(name) = key.strip_prefix(PREFIX) {
            if !KNOWN.contains(&name) {
                notes.push((
                    false,
                    "UnsupportedAnnotation",
                    format!("annotation \"{key}\" is not supported by skiff's ingress; ignored"),
                ));
            }
        }
    }
    (o, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults() {
        let (o, notes) = parse(&BTreeMap::new());
        assert_eq!(o, RouteOptions::default());
        assert!(notes.is_empty());
        assert!(o.ssl_redirect);
    }

    #[test]
    fn cookie_affinity() {
        let (o, _) = parse(&ann(&[("affinity", "cookie")]));
        let a = o.affinity.expect("affinity");
        assert_eq!(a.cookie, DEFAULT_COOKIE);
        assert_eq!(a.max_age, None);
        let (o, notes) = parse(&ann(&[
            ("affinity", "cookie"),
            ("session-cookie-name", "route"),
            ("session-cookie-max-age", "172800"),
            ("session-cookie-path", "/app"),
        ]));
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(
            o.affinity,
            Some(Affinity {
                cookie: "route".into(),
                max_age: Some(172800),
                path: Some("/app".into())
            })
        );
    }

    #[test]
    fn rewrite_implies_regex_and_protocols() {
        let (o, _) = parse(&ann(&[
            ("rewrite-target", "/$2"),
            ("backend-protocol", "grpc"),
        ]));
        assert!(o.use_regex);
        assert_eq!(o.rewrite_target.as_deref(), Some("/$2"));
        assert_eq!(o.protocol, Protocol::Grpc);
        assert!(o.protocol.h2_only());
    }

    #[test]
    fn unknown_and_invalid_annotations_are_noted() {
        let mut a = ann(&[
            ("ssl-redirect", "false"),
            ("proxy-body-size", "8m"),
            ("backend-protocol", "AJP"),
        ]);
        a.insert("other.example/x".into(), "y".into());
        let (o, notes) = parse(&a);
        assert!(!o.ssl_redirect);
        assert_eq!(o.protocol, Protocol::Http);
        let reasons: Vec<_> = notes.iter().map(|n| (n.0, n.1)).collect();
        assert_eq!(
            reasons,
            vec![
                (true, "InvalidAnnotation"),
                (false, "UnsupportedAnnotation")
            ]
        );
        assert!(notes[1].2.contains("proxy-body-size"));
    }
}
