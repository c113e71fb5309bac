//! Cookie affinity (`nginx.ingress.kubernetes.io/affinity: cookie`): the first
//! response sets a cookie naming the endpoint that answered (a hash of its
//! `ip:port`, see [`crate::routes::Endpoint`]); later requests carrying it go to
//! the same endpoint while it is ready. A cookie naming no ready endpoint (the pod
//! is gone, or the cookie is junk) is answered by a new pick and a new cookie,
//! as ingress-nginx does.

use http::header::{HeaderMap, HeaderValue, COOKIE};

use crate::annotations::Affinity;
use crate::routes::{Backend, Endpoint};

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// The endpoint for a request, and whether the response must (re)set the cookie.
pub fn choose<'b>(
    backend: &'b Backend,
    affinity: Option<&Affinity>,
    headers: &HeaderMap,
) -> Option<(&'b Endpoint, bool)> {
    let Some(a) = affinity else {
        return backend.pick(None).map(|e| (e, false));
    };
    if let Some(e) = cookie(headers, &a.cookie).and_then(|v| backend.by_cookie(v)) {
        return Some((e, false));
    }
    backend.pick(None).map(|e| (e, true))
}

/// The `Set-Cookie` value naming `endpoint`; `route_path`: the path of the
/// route, the cookie's path unless `session-cookie-path` says otherwise.
pub fn set_cookie(a: &Affinity, route_path: &str, endpoint: &Endpoint) -> Option<HeaderValue> {
    let path = a.path.as_deref().unwrap_or(route_path);
    let path = if path.is_empty() { "/" } else { path };
    let mut v = format!("{}={}; Path={path}", a.cookie, endpoint.cookie);
    if let Some(age) = a.max_age {
        let expires =
            chrono::Utc::now() + chrono::Duration::seconds(age.min(i64::MAX as u64) as i64);
        v.push_str(&format!(
            "; Expires={}; Max-Age={age}",
            expires.format("%a, %d-%b-%y %H:%M:%S GMT")
        ));
    }
    v.push_str("; HttpOnly");
    HeaderValue::from_str(&v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend() -> Backend {
        let eps = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]
            .iter()
            .map(|a| Endpoint::new(a.parse().expect("addr")))
            .collect();
        Backend::new("default", "s", "80", eps)
    }

    fn affinity() -> Affinity {
        Affinity {
            cookie: "route".into(),
            max_age: Some(60),
            path: None,
        }
    }

    #[test]
    fn sticks_to_the_cookie_and_repicks_a_stale_one() {
        let b = backend();
        let a = affinity();
        let (first, set) = choose(&b, Some(&a), &HeaderMap::new()).expect("pick");
        assert!(set);
        let header = set_cookie(&a, "/", first).expect("header");
        let text = header.to_str().expect("ascii");
        assert!(
            text.starts_with(&format!("route={}; Path=/; Expires=", first.cookie)),
            "{text}"
        );
        assert!(text.ends_with("; Max-Age=60; HttpOnly"), "{text}");
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_str(&format!("a=b; route={}", first.cookie)).expect("v"),
        );
        for _ in 0..10 {
            let (again, set) = choose(&b, Some(&a), &h).expect("pick");
            assert_eq!(again.addr, first.addr);
            assert!(!set);
        }
        h.insert(COOKIE, HeaderValue::from_static("route=stale"));
        let (_, set) = choose(&b, Some(&a), &h).expect("pick");
        assert!(set, "a stale cookie is replaced");
        // Without affinity, requests spread.
        let picks: std::collections::HashSet<_> = (0..3)
            .filter_map(|_| choose(&b, None, &h))
            .map(|(e, _)| e.addr)
            .collect();
        assert_eq!(picks.len(), 3);
    }
}
