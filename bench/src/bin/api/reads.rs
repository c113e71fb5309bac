//! Get and list latency with the whole collection stored, through the API server and
//! straight from the very store the server reads (same file, same rows).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use http::{Method, StatusCode};
use skiff_bench::client::{Conn, Proto, Server};
use skiff_bench::stats::Samples;
use skiff_store::{Backend, SqliteBackend};

use crate::{cpu, key, name, NAMESPACE, PREFIX};

/// The page size kubectl and client-go informers use.
pub const PAGE: usize = 500;

#[derive(Default)]
pub struct Reads {
    pub get: Samples,
    pub list_all: Samples,
    pub list_page: Samples,
    /// Every page of `PAGE`, following continue tokens: how an informer lists.
    pub list_walk: Samples,
    /// CPU per API phase: (what, requests, CPU used).
    pub cpu: Vec<(String, usize, cpu::Split)>,
}

/// Which objects to get: the same pseudo-random sequence on both sides.
pub fn picks(n: usize, count: usize) -> Vec<usize> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..count)
        .map(|_| {
            // xorshift64: cheap, deterministic, and spread over the whole key range.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        })
        .collect()
}

/// The `metadata.continue` token of a list response. The server writes `metadata`
/// before `items`, so this looks only at the head instead of parsing the page.
fn continue_token(body: &[u8]) -> Option<String> {
    const MARK: &[u8] = b"\"continue\":\"";
    let head = &body[..body.len().min(1024)];
    let at = head.windows(MARK.len()).position(|w| w == MARK)? + MARK.len();
    let len = head[at..].iter().position(|&b| b == b'"')?;
    Some(String::from_utf8_lossy(&head[at..at + len]).into_owned())
}

fn count_items(body: &[u8]) -> Result<usize> {
    let v: serde_json::Value = serde_json::from_slice(body).context("list response")?;
    Ok(v["items"].as_array().map_or(0, Vec::len))
}

async fn get_ok(conn: &mut Conn, path: &str) -> Result<Bytes> {
    conn.expect(StatusCode::OK, Method::GET, path, None, Bytes::new())
        .await
}

pub async fn api(
    server: &Server,
    proto: Proto,
    n: usize,
    gets: usize,
    lists: usize,
) -> Result<Reads> {
    // One client issuing one request at a time: latency, not throughput.
    let mut conn = server.connect(proto).await?;
    let base = format!("/api/v1/namespaces/{NAMESPACE}/services");
    let mut r = Reads::default();

    // Checked once, outside the clock, so the timed loops measure only the server.
    ensure!(
        count_items(&get_ok(&mut conn, &base).await?)? == n,
        "the full list does not hold all {n} services"
    );
    let page_path = format!("{base}?limit={PAGE}");
    ensure!(
        count_items(&get_ok(&mut conn, &page_path).await?)? == PAGE.min(n),
        "a limit={PAGE} page does not hold {PAGE} services"
    );

    let before = cpu::snapshot();
    for i in picks(n, gets) {
        let path = format!("{base}/{}", name(i));
        let t = Instant::now();
        get_ok(&mut conn, &path).await?;
        r.get.push(t.elapsed());
    }
    r.cpu.push(("get".into(), gets, before.split_since()));
    let before = cpu::snapshot();
    for _ in 0..lists {
        let t = Instant::now();
        get_ok(&mut conn, &base).await?;
        r.list_all.push(t.elapsed());
    }
    r.cpu
        .push((format!("list all {n}"), lists, before.split_since()));
    let before = cpu::snapshot();
    for _ in 0..lists * 5 {
        let t = Instant::now();
        get_ok(&mut conn, &page_path).await?;
        r.list_page.push(t.elapsed());
    }
    r.cpu.push((
        format!("list limit={PAGE}"),
        lists * 5,
        before.split_since(),
    ));
    for _ in 0..lists {
        let t = Instant::now();
        let mut body = get_ok(&mut conn, &page_path).await?;
        let mut pages = 1;
        while let Some(token) = continue_token(&body) {
            body = get_ok(&mut conn, &format!("{page_path}&continue={token}")).await?;
            pages += 1;
        }
        r.list_walk.push(t.elapsed());
        if pages != n.div_ceil(PAGE).max(1) {
            bail!("walking pages of {PAGE} took {pages} pages for {n} services");
        }
    }
    Ok(r)
}

/// The same reads as `api`, as `Backend` calls on the server's own store.
pub async fn raw(store: Arc<SqliteBackend>, n: usize, gets: usize, lists: usize) -> Result<Reads> {
    tokio::task::spawn_blocking(move || {
        let mut r = Reads::default();
        for i in picks(n, gets) {
            let k = key(i);
            let t = Instant::now();
            let kv = store.get(&k)?;
            r.get.push(t.elapsed());
            ensure!(kv.is_some(), "{k} is missing from the store");
        }
        for _ in 0..lists {
            let t = Instant::now();
            let all = store.list(PREFIX, None, None)?;
            r.list_all.push(t.elapsed());
            ensure!(all.items.len() == n, "raw list: {} of {n}", all.items.len());
        }
        for _ in 0..lists * 5 {
            let t = Instant::now();
            store.list(PREFIX, None, Some(PAGE))?;
            r.list_page.push(t.elapsed());
        }
        for _ in 0..lists {
            let t = Instant::now();
            let mut page = store.list(PREFIX, None, Some(PAGE))?;
            while page.more {
                let last = page.items.last().map(|kv| kv.key.clone());
                page = store.list(PREFIX, last.as_deref(), Some(PAGE))?;
            }
            r.list_walk.push(t.elapsed());
        }
        Ok(r)
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_continue_token_in_the_head() {
        let body = br#"{"kind":"ServiceList","apiVersion":"v1","metadata":{"resourceVersion":"9","continue":"eyJ2IjoxfQ","remainingItemCount":3},"items":[]}"#;
        assert_eq!(continue_token(body).as_deref(), Some("eyJ2IjoxfQ"));
        assert_eq!(
            continue_token(br#"{"metadata":{"resourceVersion":"9"},"items":[]}"#),
            None
        );
    }

    #[test]
    fn picks_cover_the_range_deterministically() {
        let a = picks(100, 1000);
        assert_eq!(a, picks(100, 1000));
        assert!(a.iter().all(|&i| i < 100));
        assert!(a.iter().collect::<std::collections::HashSet<_>>().len() > 90);
    }
}
