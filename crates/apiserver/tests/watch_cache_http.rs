//! The watch cache through HTTP (issue 18), with curl as the client: a namespace's
//! watch gets only its namespace's events, in order, each once; pages walked while
//! writes go on show the first page's snapshot; selectors filter lists; a watch from
//! before the cache was loaded is replayed from the store; a resourceVersion from the
//! future is upstream's 504 "Too large resource version"; gets without a
//! resourceVersion see every write that returned before them.
//!
//! Run inside a private network namespace:
//! `unshare -n sh -c 'ip link set lo up; cargo test -p skiff-apiserver --test watch_cache_http'`

mod support;

use std::path::Path;
use std::process::Stdio;

use serde_json::{json, Value};
use support::Client;

/// curl with the admin token and the cluster CA; the raw body.
async fn curl(dir: &Path, c: &Client, path: &str) -> String {
    curl_accept(dir, c, path, "application/json").await
}

/// [`curl`] asking for the form `accept` names (kubectl asks for Tables).
async fn curl_accept(dir: &Path, c: &Client, path: &str, accept: &str) -> String {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(dir.join(skiff_apiserver::pki::CA))
        .arg("-H")
        .arg(format!("Accept: {accept}"))
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", c.admin))
        .arg(format!("https://{}{path}", c.addr))
        .stdout(Stdio::piped())
        .output()
        .await
        .expect("curl runs");
    assert!(out.status.success(), "curl {path}: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

async fn configmap(c: &Client, ns: &str, name: &str, app: &str) -> Value {
    let (code, body) = c
        .call(
            "POST",
            &format!("/api/v1/namespaces/{ns}/configmaps"),
            Some(&json!({"metadata": {"name": name, "labels": {"app": app}}, "data": {"k": "v"}})),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    body
}

fn rv(v: &Value) -> i64 {
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .expect("resourceVersion")
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            i["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_pages_and_watches_through_the_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_running, c) = support::start(dir.path()).await;
    for ns in ["a", "b"] {
        let (code, body) = c
            .call(
                "POST",
                "/api/v1/namespaces",
                Some(&json!({"metadata": {"name": ns}})),
            )
            .await;
        assert_eq!(code, 201, "{body}");
    }
    // Before any list of configmaps: the cache for them does not exist yet.
    let first = configmap(&c, "a", "early", "web").await;

    for i in 0..6 {
        configmap(
            &c,
            "a",
            &format!("a{i}"),
            if i % 2 == 0 { "web" } else { "db" },
        )
        .await;
    }
    // A consistent list sees every write that returned, in key order.
    let list: Value =
        serde_json::from_str(&curl(dir.path(), &c, "/api/v1/namespaces/a/configmaps").await)
            .expect("list");
    assert_eq!(names(&list), ["a0", "a1", "a2", "a3", "a4", "a5", "early"]);
    let listed_at: i64 = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .parse()
        .expect("int");

    // A watch of namespace a from the list's revision, while both namespaces change.
    let watch_path = format!(
        "/api/v1/namespaces/a/configmaps?watch=1&resourceVersion={listed_at}&timeoutSeconds=3"
    );
    let watcher = {
        let (d, c, p) = (dir.path().to_path_buf(), c.clone(), watch_path.clone());
        tokio::spawn(async move { curl(&d, &c, &p).await })
    };
    // Two watchers asking for Tables, as `kubectl get -w` does: one render, shared.
    let table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
    let table_watchers: Vec<_> = (0..2)
        .map(|_| {
            let (d, c, p) = (dir.path().to_path_buf(), c.clone(), watch_path.clone());
            tokio::spawn(async move { curl_accept(&d, &c, &p, table).await })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    configmap(&c, "b", "b0", "web").await;
    configmap(&c, "a", "late", "web").await;
    let (code, _) = c
        .call("DELETE", "/api/v1/namespaces/a/configmaps/a0", None)
        .await;
    assert_eq!(code, 200);
    let lines = watcher.await.expect("watcher");
    let events: Vec<(String, String)> = lines
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("event line"))
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default().to_string(),
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("ADDED".to_string(), "late".to_string()),
            ("DELETED".into(), "a0".into())
        ],
        "{lines}"
    );

    let mut tables = Vec::new();
    for w in table_watchers {
        tables.push(w.await.expect("table watcher"));
    }
    assert_eq!(
        tables[0], tables[1],
        "both Table watchers get the same lines"
    );
    let rows: Vec<(String, String)> = tables[0]
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("event line"))
        .map(|e| {
            assert_eq!(e["object"]["kind"], "Table", "{e}");
            (
                e["type"].as_str().unwrap_or_default().to_string(),
                e["object"]["rows"][0]["cells"][0]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("ADDED".to_string(), "late".to_string()),
            ("DELETED".into(), "a0".into())
        ]
    );

    // Pages of 2 from one snapshot, with writes between the pages.
    let mut got = Vec::new();
    let mut path = "/api/v1/namespaces/a/configmaps?limit=2".to_string();
    let mut snapshot = None;
    loop {
        let page: Value = serde_json::from_str(&curl(dir.path(), &c, &path).await).expect("page");
        got.extend(names(&page));
        let page_rv = page["metadata"]["resourceVersion"]
            .as_str()
            .expect("rv")
            .to_string();
        assert_eq!(
            *snapshot.get_or_insert(page_rv.clone()),
            page_rv,
            "every page is the first page's snapshot"
        );
        match page["metadata"]["continue"].as_str() {
            Some(token) => {
                path = format!("/api/v1/namespaces/a/configmaps?limit=2&continue={token}")
            }
            None => break,
        }
        configmap(&c, "a", &format!("z{}", got.len()), "web").await;
        let (code, _) = c
            .call("DELETE", "/api/v1/namespaces/a/configmaps/early", None)
            .await;
        assert!(code == 200 || code == 404);
    }
    assert_eq!(got, ["a1", "a2", "a3", "a4", "a5", "early", "late"]);

    // Selectors.
    let db: Value = serde_json::from_str(
        &curl(
            dir.path(),
            &c,
            "/api/v1/namespaces/a/configmaps?labelSelector=app%3Ddb",
        )
        .await,
    )
    .expect("list");
    assert_eq!(names(&db), ["a1", "a3", "a5"]);
    let one: Value = serde_json::from_str(
        &curl(
            dir.path(),
            &c,
            "/api/v1/configmaps?fieldSelector=metadata.name%3Db0",
        )
        .await,
    )
    .expect("list");
    assert_eq!(names(&one), ["b0"]);

    // A watch from before the cache was loaded comes from the store's history.
    let from_start = curl(
        dir.path(),
        &c,
        &format!(
            "/api/v1/namespaces/a/configmaps?watch=1&resourceVersion={}&timeoutSeconds=1",
            rv(&first) - 1
        ),
    )
    .await;
    let first_event: Value =
        serde_json::from_str(from_start.lines().next().expect("an event")).expect("json");
    assert_eq!(
        (
            first_event["type"].as_str(),
            first_event["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("early"))
    );

    // Gets: "0" and not-older-than from the cache; a future revision is refused.
    let got: Value = serde_json::from_str(
        &curl(
            dir.path(),
            &c,
            "/api/v1/namespaces/a/configmaps/a1?resourceVersion=0",
        )
        .await,
    )
    .expect("get");
    assert_eq!(got["metadata"]["name"], "a1");
    let future = curl(
        dir.path(),
        &c,
        "/api/v1/namespaces/a/configmaps/a1?resourceVersion=999999",
    )
    .await;
    let status: Value = serde_json::from_str(&future).expect("status");
    assert_eq!(
        (status["code"].as_i64(), status["reason"].as_str()),
        (Some(504), Some("Timeout")),
        "{future}"
    );
    assert!(status["message"]
        .as_str()
        .unwrap_or_default()
        .starts_with("Too large resource version: 999999"));
}

/// Gets without a resourceVersion are consistent reads served by the cache: each sees
/// the write that returned just before it (an update, a delete), and a watcher that
/// falls behind a burst of writes gets every event once, in order (several per write
/// when it is behind).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gets_see_every_write_that_returned_and_a_burst_reaches_watchers_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_running, c) = support::start(dir.path()).await;
    let (code, body) = c
        .call(
            "POST",
            "/api/v1/namespaces",
            Some(&json!({"metadata": {"name": "g"}})),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let mut cm = configmap(&c, "g", "cm", "web").await;
    let path = "/api/v1/namespaces/g/configmaps/cm";
    // Loads the cache, and a watch from here on.
    let (code, _) = c.call("GET", path, None).await;
    assert_eq!(code, 200);
    let from = rv(&cm);
    let watcher = {
        let (d, c) = (dir.path().to_path_buf(), c.clone());
        let p = format!(
            "/api/v1/namespaces/g/configmaps?watch=1&resourceVersion={from}&timeoutSeconds=8"
        );
        tokio::spawn(async move { curl(&d, &c, &p).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    const WRITES: usize = 40;
    for i in 0..WRITES {
        cm["data"]["k"] = json!(format!("v{i}"));
        let (code, written) = c.call("PUT", path, Some(&cm)).await;
        assert_eq!(code, 200, "{written}");
        let (code, got) = c.call("GET", path, None).await;
        assert_eq!(code, 200, "{got}");
        assert_eq!(
            (rv(&got), &got["data"]["k"]),
            (rv(&written), &json!(format!("v{i}"))),
            "the get after write {i} sees it"
        );
        cm = got;
    }
    // A burst from several writers at once, on other objects.
    let burst: Vec<_> = (0..4)
        .map(|w| {
            let c = c.clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    configmap(&c, "g", &format!("w{w}-{i}"), "db").await;
                }
            })
        })
        .collect();
    for b in burst {
        b.await.expect("writer");
    }
    let (code, _) = c.call("DELETE", path, None).await;
    assert_eq!(code, 200);
    let (code, gone) = c.call("GET", path, None).await;
    assert_eq!(
        (code, gone["reason"].as_str()),
        (404, Some("NotFound")),
        "{gone}"
    );

    let lines = watcher.await.expect("watcher");
    let events: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("event line"))
        .collect();
    let revisions: Vec<i64> = events.iter().map(|e| rv(&e["object"])).collect();
    let mut sorted = revisions.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(revisions, sorted, "events in revision order, each once");
    assert_eq!(events.len(), WRITES + 40 + 1, "{lines}");
    assert_eq!(events.last().map(|e| &e["type"]), Some(&json!("DELETED")));
}
