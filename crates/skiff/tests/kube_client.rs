//! Client libraries against skiff: kube-rs (the library every skiff component is
//! built on) and the Python `kubernetes` client.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use skiff_store::{Backend, MemoryBackend};

fn inner_only() {
    assert_eq!(
        std::env::var("SKIFF_E2E_INNER").as_deref(),
        Ok("1"),
        "runs only inside a test-made network namespace, through its outer test"
    );
}

#[test]
fn kube_rs_watcher_sees_every_change_and_recovers_after_compaction() {
    support::run_inside_netns("inner_kube_rs_watcher");
}

fn cm(name: &str, v: &str) -> ConfigMap {
    let mut c = ConfigMap::default();
    c.metadata.name = Some(name.into());
    c.data = Some(BTreeMap::from([("v".to_string(), v.to_string())]));
    c
}

fn snapshot(reader: &reflector::Store<ConfigMap>) -> BTreeMap<String, String> {
    reader
        .state()
        .iter()
        .map(|c| {
            let v = c
                .data
                .as_ref()
                .and_then(|d| d.get("v"))
                .cloned()
                .unwrap_or_default();
            (c.metadata.name.clone().unwrap_or_default(), v)
        })
        .collect()
}

async fn wait_for(reader: &reflector::Store<ConfigMap>, want: &BTreeMap<String, String>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if &snapshot(reader) == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "reflector stuck at {:?}, want {want:?}",
            snapshot(reader)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
#[ignore = "run by kube_rs_watcher_sees_every_change_and_recovers_after_compaction inside a network namespace"]
fn inner_kube_rs_watcher() {
    inner_only();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(MemoryBackend::new());
        let config = skiff_apiserver::Config {
            listen: support::API.parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            compact_interval: Duration::from_secs(3600),
            compact_keep: 1000,
            services: Default::default(),
            admission: Default::default(),
            tls_sans: Vec::new(),
            audit: None,
        };
        let running = skiff_apiserver::start(config.clone(), backend.clone()).await.unwrap();
        let kubeconfig = kube::config::Kubeconfig::read_from(&running.kubeconfig).unwrap();
        let kcfg = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
        let client = kube::Client::try_from(kcfg).unwrap();
        let api: Api<ConfigMap> = Api::namespaced(client, "default");

        // A raw watcher records the event sequence; a reflector keeps the state.
        let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let raw = watcher(api.clone(), watcher::Config::default()).default_backoff();
        tokio::spawn(raw.for_each(move |ev| {
            let _ = tx.send(ev.map_err(|e| e.to_string()));
            futures::future::ready(())
        }));
        let (reader, writer) = reflector::store();
        let stream = reflector(writer, watcher(api.clone(), watcher::Config::default()).default_backoff());
        tokio::spawn(stream.applied_objects().for_each(|_| futures::future::ready(())));
        reader.wait_until_ready().await.unwrap();

        let pp = PostParams::default();
        for i in 0..20 {
            api.create(&pp, &cm(&format!("cm-{i}"), "0")).await.unwrap();
        }
        for i in 0..10 {
            let patch = serde_json::json!({"data": {"v": "1"}});
            api.patch(&format!("cm-{i}"), &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        }
        for i in 15..20 {
            api.delete(&format!("cm-{i}"), &DeleteParams::default()).await.unwrap();
        }
        let mut want: BTreeMap<String, String> =
            (0..15).map(|i| (format!("cm-{i}"), if i < 10 { "1" } else { "0" }.to_string())).collect();
        wait_for(&reader, &want).await;

        // The raw event order per object: created at "0", then "1", then deleted; RVs rising.
        let mut seen: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while seen.values().map(Vec::len).sum::<usize>() < 35 && tokio::time::Instant::now() < deadline {
            let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(1), events.recv()).await else { continue };
            let (what, obj) = match ev.unwrap() {
                watcher::Event::Apply(o) => ("apply", o),
                watcher::Event::Delete(o) => ("delete", o),
                _ => continue,
            };
            let name = obj.metadata.name.clone().unwrap();
            let v = obj.data.as_ref().and_then(|d| d.get("v")).cloned().unwrap_or_default();
            let rv: i64 = obj.metadata.resource_version.clone().unwrap().parse().unwrap();
            seen.entry(name).or_default().push((format!("{what}:{v}"), rv));
        }
        for i in 0..20 {
            let evs = &seen[&format!("cm-{i}")];
            let kinds: Vec<&str> = evs.iter().map(|(k, _)| k.as_str()).collect();
            let expect: &[&str] = match i {
                0..10 => &["apply:0", "apply:1"],
                10..15 => &["apply:0"],
                _ => &["apply:0", "delete:0"],
            };
            assert_eq!(kinds, expect, "cm-{i}");
            assert!(evs.windows(2).all(|w| w[0].1 < w[1].1), "cm-{i} revisions not increasing: {evs:?}");
        }

        // Outage: the server stops, history changes and is compacted behind the
        // watchers' backs; on reconnect they get 410 and must relist.
        running.stopper().stop();
        running.wait().await.unwrap();
        let key = |n: &str| format!("/registry/configmaps/default/{n}");
        let obj = |n: &str, v: &str| {
            serde_json::to_vec(&serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": n, "namespace": "default", "uid": format!("uid-{n}"), "creationTimestamp": "2026-01-01T00:00:00Z"},
                "data": {"v": v}}))
            .unwrap()
        };
        backend.create(&key("cm-extra"), &obj("cm-extra", "9")).unwrap();
        backend.delete(&key("cm-0"), None).unwrap();
        let cur = backend.get(&key("cm-1")).unwrap().unwrap();
        backend.update(&key("cm-1"), &obj("cm-1", "2"), cur.mod_revision).unwrap();
        backend.compact(backend.current_revision().unwrap()).unwrap();
        while events.try_recv().is_ok() {}
        let _again = skiff_apiserver::start(config, backend.clone()).await.unwrap();

        want.remove("cm-0");
        want.insert("cm-1".into(), "2".into());
        want.insert("cm-extra".into(), "9".into());
        wait_for(&reader, &want).await;
        // The raw watcher relisted: a fresh Init after the outage.
        let mut relisted = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !relisted && tokio::time::Instant::now() < deadline {
            if let Ok(Some(Ok(watcher::Event::Init))) = tokio::time::timeout(Duration::from_secs(1), events.recv()).await {
                relisted = true;
            }
        }
        assert!(relisted, "watcher did not relist after the compaction");
    });
}

#[test]
fn python_kubernetes_client_lists_and_watches_services() {
    let c = support::Cluster::start();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/list_watch_services.py"
    );
    let out = c.sh(&format!("python3 {script} \"$KUBECONFIG\""));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("LISTED default/py-svc"), "{text}");
    assert!(text.contains("ADDED py-watch"), "{text}");
    assert!(text.contains("MODIFIED py-watch"), "{text}");
    assert!(text.contains("DELETED py-watch"), "{text}");
}
