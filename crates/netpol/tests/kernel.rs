//! The generated text is what the kernel accepts, and a diff lands where a full
//! load would: every fixture is loaded with the real `nft` inside a network
//! namespace made for the test (never the host's own tables), and each diff
//! applied on top of the old state must list exactly as the new state loaded
//! from scratch. Skipped when namespaces cannot be made (not root).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{cluster, everything, ip, policies};
use skiff_netpol::model::{ClusterState, Proto};
use skiff_netpol::program::Program;
use skiff_netpol::ruleset::{desired, FAMILY, TABLE};

struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Option<Self> {
        let name = format!("skiff-netpol-{tag}-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self(name))
    }

    fn nft(&self, text: &str) -> Result<(), String> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        child
            .stdin
            .take()
            .ok_or("stdin")?
            .write_all(text.as_bytes())
            .map_err(|e| e.to_string())?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The table as the kernel holds it, normalised: elements sorted, since
    /// nft lists a hash set in hash order.
    fn list(&self) -> String {
        let out = Command::new("ip")
            .args([
                "netns", "exec", &self.0, "nft", "list", "table", FAMILY, TABLE,
            ])
            .output()
            .expect("nft list");
        normalise(&String::from_utf8_lossy(&out.stdout))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn normalise(listing: &str) -> String {
    let flat = listing.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::new();
    let mut rest = flat.as_str();
    while let Some(i) = rest.find("elements = { ") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "elements = { ".len()..];
        let end = after.find(" }").unwrap_or(after.len());
        let mut items: Vec<&str> = after[..end].split(", ").collect();
        items.sort();
        out.push_str(&format!("elements = {{ {} }}", items.join(", ")));
        rest = &after[end.min(after.len())..];
        rest = rest.strip_prefix(" }").unwrap_or(rest);
    }
    out.push_str(rest);
    out
}

/// A named edit of the fixture cluster.
type Change = Box<dyn Fn(&mut ClusterState)>;

fn full(c: &ClusterState) -> String {
    let mut p = Program::new();
    p.load(desired(c));
    p.full()
}

#[test]
fn fixtures_load_and_diffs_land_where_full_loads_do() {
    let (Some(a), Some(b)) = (Netns::new("a"), Netns::new("b")) else {
        eprintln!("skipped: cannot create network namespaces (not root?)");
        return;
    };
    for (name, p) in policies() {
        a.nft(&full(&cluster(&[p])))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // Each change from the whole fixture state: old + diff == new.
    let changes: Vec<(&str, Change)> = vec![
        ("nothing", Box::new(|_| {})),
        (
            "pod added",
            Box::new(|c| {
                let p = common::pod(
                    "default",
                    "broker-1",
                    &[("role", "message-broker")],
                    "10.244.0.13",
                    &[("redis", Proto::Tcp, 6380)],
                );
                c.pods.insert(p.key(), p);
            }),
        ),
        (
            "labels",
            Box::new(|c| {
                if let Some(p) = c.pods.get_mut("default/client-no") {
                    p.labels.insert("broker-access".into(), "true".into());
                }
            }),
        ),
        (
            "pod ip",
            Box::new(|c| {
                if let Some(p) = c.pods.get_mut("frontend/web") {
                    p.ip = Some(ip("10.244.0.32"));
                }
            }),
        ),
        (
            "pod deleted",
            Box::new(|c| {
                c.pods.remove("prod/api");
            }),
        ),
        (
            "namespace labels",
            Box::new(|c| {
                c.namespaces
                    .insert("other".into(), [("team".into(), "frontend".into())].into());
            }),
        ),
        (
            "policy deleted",
            Box::new(|c| {
                c.policies.remove("default/broker");
            }),
        ),
        ("all policies deleted", Box::new(|c| c.policies.clear())),
        ("all pods deleted", Box::new(|c| c.pods.clear())),
    ];
    for (name, change) in &changes {
        let old = everything();
        let mut new = everything();
        change(&mut new);
        let mut p = Program::new();
        p.load(desired(&old));
        a.nft(&p.full())
            .unwrap_or_else(|e| panic!("{name}: full: {e}"));
        let diff = p.update(desired(&new)).text;
        a.nft(&diff)
            .unwrap_or_else(|e| panic!("{name}: diff: {e}\n{diff}"));
        b.nft(&full(&new))
            .unwrap_or_else(|e| panic!("{name}: new: {e}"));
        let listed = a.list();
        assert!(listed.contains("chain forward-ingress"), "{listed}");
        assert_eq!(listed, b.list(), "{name}: diff and full load differ");
    }
    // And back up from nothing.
    let mut p = Program::new();
    p.load(desired(&cluster(&[])));
    a.nft(&p.full()).expect("empty");
    a.nft(&p.update(desired(&everything())).text).expect("grow");
    b.nft(&full(&everything())).expect("full");
    assert_eq!(a.list(), b.list(), "grown from empty");
}
