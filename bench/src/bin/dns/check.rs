//! Before timing anything: every server must give the same answers to the mix, or
//! the comparison would be between different work.

use std::collections::BTreeSet;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// A response as `dig` shows it: the status and the answer records without TTLs.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    status: String,
    answer: BTreeSet<String>,
}

fn dig(addr: &str, query: &str) -> Result<Seen> {
    let mut args = vec![
        format!("@{addr}"),
        "+noall".into(),
        "+comments".into(),
        "+answer".into(),
        "+time=2".into(),
        "+tries=2".into(),
    ];
    let mut words = query.split_whitespace();
    let (Some(name), Some(qtype)) = (words.next(), words.next()) else {
        bail!("bad query line {query:?}");
    };
    args.extend([name.to_string(), qtype.to_string()]);
    let out = Command::new("dig")
        .args(&args)
        .output()
        .context("running dig")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("no answer")
        .to_string();
    let answer = text
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(|l| {
            // name TTL class type data...: everything but the TTL.
            let f: Vec<&str> = l.split_whitespace().collect();
            let mut kept: Vec<&str> = f.iter().take(1).copied().collect();
            kept.extend(f.iter().skip(2));
            kept.join(" ").to_ascii_lowercase()
        })
        .collect();
    Ok(Seen { status, answer })
}

/// Asks every server each of `queries` (dnsperf lines) and fails on the first
/// disagreement with the first server. Returns how many queries were compared.
pub fn same_answers(servers: &[(&str, &str)], queries: &[&str]) -> Result<usize> {
    let Some(((first_name, first_addr), others)) = servers.split_first() else {
        return Ok(0);
    };
    for q in queries {
        let reference = dig(first_addr, q)?;
        if reference.status == "no answer" {
            bail!("{first_name} did not answer {q}");
        }
        for (name, addr) in others {
            let seen = dig(addr, q)?;
            if seen != reference {
                bail!(
                    "{name} and {first_name} disagree on `{q}`:\n{first_name}: {reference:?}\n{name}: {seen:?}"
                );
            }
        }
    }
    Ok(queries.len())
}
