//! `/openapi/v2` as gnostic protobuf, which kubectl 1.27 and 1.28 require: their
//! `fieldValidation` check reads each kind's PATCH operation from it. Like the v3
//! documents it carries no schema definitions, so kubectl falls back to its
//! built-in types for apply patches and leaves validation to the server.

use skiff_api::registry::{self, Resource};

/// Minimal protobuf writer: only length-delimited fields are needed here.
#[derive(Default)]
struct Msg(Vec<u8>);

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Msg {
    fn bytes(mut self, field: u32, data: &[u8]) -> Self {
        varint(&mut self.0, (u64::from(field) << 3) | 2);
        varint(&mut self.0, data.len() as u64);
        self.0.extend_from_slice(data);
        self
    }
    fn str(self, field: u32, s: &str) -> Self {
        self.bytes(field, s.as_bytes())
    }
    fn msg(self, field: u32, m: Msg) -> Self {
        self.bytes(field, &m.0)
    }
}

/// A gnostic `NamedAny` whose value is YAML text.
fn extension(name: &str, yaml: &str) -> Msg {
    Msg::default()
        .str(1, name)
        .msg(2, Msg::default().str(2, yaml))
}

fn query_param(name: &str) -> Msg {
    let sub = Msg::default().str(2, "query").str(4, name).str(6, "string");
    let non_body = Msg::default().msg(3, sub);
    let param = Msg::default().msg(2, non_body);
    Msg::default().msg(1, param)
}

fn patch_operation(r: &Resource) -> Msg {
    let gvk = format!(
        "group: \"{}\"\nkind: {}\nversion: {}\n",
        r.group, r.kind, r.version
    );
    let ok = Msg::default()
        .str(1, "200")
        .msg(2, Msg::default().msg(1, Msg::default().str(1, "OK")));
    let mut op = Msg::default().str(5, &format!("patch{}", r.kind));
    for c in [
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/apply-patch+yaml",
    ] {
        op = op.str(7, c);
    }
    for p in ["dryRun", "fieldManager", "fieldValidation", "force"] {
        op = op.msg(8, query_param(p));
    }
    op.msg(9, Msg::default().msg(1, ok))
        .msg(13, extension("x-kubernetes-action", "patch"))
        .msg(13, extension("x-kubernetes-group-version-kind", &gvk))
}

fn item_path(r: &Resource) -> String {
    let base = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    if r.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
    } else {
        format!("{base}/{}/{{name}}", r.plural)
    }
}

/// The whole document, encoded.
pub fn document() -> Vec<u8> {
    let mut paths = Msg::default();
    for r in registry::all() {
        let item = Msg::default().msg(8, patch_operation(r));
        paths = paths.msg(2, Msg::default().str(1, &item_path(r)).msg(2, item));
    }
    let info = Msg::default().str(1, "Kubernetes").str(2, "v1.33.0");
    Msg::default()
        .str(1, "2.0")
        .msg(2, info)
        .msg(8, paths)
        .msg(9, Msg::default())
        .0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_nesting() {
        let mut v = Vec::new();
        varint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
        let m = Msg::default().str(1, "2.0");
        assert_eq!(m.0, [0x0a, 3, b'2', b'.', b'0']);
        let doc = document();
        assert!(doc.starts_with(&[0x0a, 3, b'2', b'.', b'0']));
        let text = String::from_utf8_lossy(&doc);
        assert!(text.contains("/apis/apps/v1/namespaces/{namespace}/deployments/{name}"));
        assert!(text.contains("kind: Deployment"));
    }
}
