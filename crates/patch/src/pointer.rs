//! RFC 6901 JSON pointers, as JSON patch uses them.

use crate::{Error, Result};

/// Splits a pointer into unescaped reference tokens; `""` is the whole document.
pub(crate) fn parse(pointer: &str) -> Result<Vec<String>> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(Error::InvalidPointer(pointer.to_string()));
    };
    rest.split('/').map(|t| unescape(t, pointer)).collect()
}

/// `~1` is `/` and `~0` is `~`; any other `~` sequence is malformed. Order matters:
/// `~01` must become `~1`, not `/`, so the string is scanned once, left to right.
fn unescape(token: &str, pointer: &str) -> Result<String> {
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c != '~' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('~'),
            Some('1') => out.push('/'),
            _ => return Err(Error::InvalidPointer(pointer.to_string())),
        }
    }
    Ok(out)
}

/// Parses an array index token. RFC 6901 forbids leading zeros and signs, so
/// `"01"` and `"+1"` are not indices.
pub(crate) fn index(token: &str) -> Option<usize> {
    if token.is_empty() || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    if !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_unescapes() {
        assert_eq!(parse("").unwrap(), Vec::<String>::new());
        assert_eq!(parse("/").unwrap(), vec![String::new()]);
        assert_eq!(
            parse("/metadata/annotations/a~1b~0c").unwrap(),
            vec!["metadata", "annotations", "a/b~c"]
        );
        assert_eq!(parse("/~01").unwrap(), vec!["~1"]);
        assert!(parse("a/b").is_err());
        assert!(parse("/a~2").is_err());
        assert!(parse("/a~").is_err());
    }

    #[test]
    fn indices() {
        assert_eq!(index("0"), Some(0));
        assert_eq!(index("12"), Some(12));
        assert_eq!(index("01"), None);
        assert_eq!(index("-"), None);
        assert_eq!(index("+1"), None);
        assert_eq!(index(""), None);
    }
}
