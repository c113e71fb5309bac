//! What real clients tripped over (issue 21), end to end: a stub resolver
//! (`getent`) following an ExternalName, kube-rs metadata-only patches,
//! racing patches without a resourceVersion, the namespace name label, IPv6
//! manual Endpoints over DNS, and the default ClusterRoles.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use skiff_store::MemoryBackend;
use support::{eventually, Cluster};

#[test]
fn kube_rs_metadata_patches_and_racing_patches() {
    support::run_inside_netns("inner_kube_rs_patches");
}

#[test]
#[ignore = "run by kube_rs_metadata_patches_and_racing_patches inside a network namespace"]
fn inner_kube_rs_patches() {
    assert_eq!(std::env::var("SKIFF_E2E_INNER").as_deref(), Ok("1"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = skiff_apiserver::Config {
            listen: support::API.parse().expect("address"),
            data_dir: dir.path().to_path_buf(),
            compact_interval: Duration::from_secs(3600),
            compact_keep: 1000,
            services: Default::default(),
            admission: Default::default(),
            tls_sans: Vec::new(),
            audit: None,
        };
        let running = skiff_apiserver::start(config, Arc::new(MemoryBackend::new()))
            .await
            .expect("apiserver");
        let kubeconfig =
            kube::config::Kubeconfig::read_from(&running.kubeconfig).expect("kubeconfig");
        let kcfg = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("config");
        let client = kube::Client::try_from(kcfg).expect("client");
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("race".into());
        cm.data = Some(BTreeMap::from([("seed".to_string(), "0".to_string())]));
        api.create(&PostParams::default(), &cm)
            .await
            .expect("create");

        // A metadata-only patch answers PartialObjectMetadata, not the object.
        let patch = serde_json::json!({"metadata": {"labels": {"touched": "yes"}}});
        let meta = api
            .patch_metadata("race", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patch_metadata");
        let types = meta.types.expect("the answer's kind");
        assert_eq!(
            (types.api_version.as_str(), types.kind.as_str()),
            ("meta.k8s.io/v1", "PartialObjectMetadata")
        );
        assert_eq!(
            meta.metadata
                .labels
                .unwrap_or_default()
                .get("touched")
                .map(String::as_str),
            Some("yes")
        );
        // Two writers, 500 patches each, none with a resourceVersion: upstream
        // retries them on the fresh object, so not one 409.
        let writer = |n: usize, strategic: bool| {
            let api = api.clone();
            tokio::spawn(async move {
                let mut conflicts = 0;
                for i in 0..500 {
                    let key = format!("w{n}");
                    let body = serde_json::json!({"data": {key: i.to_string()}});
                    let p = if strategic {
                        Patch::Strategic(&body)
                    } else {
                        Patch::Merge(&body)
                    };
                    match api.patch("race", &PatchParams::default(), &p).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 409 => conflicts += 1,
                        Err(e) => panic!("patch {i} of writer {n}: {e}"),
                    }
                }
                conflicts
            })
        };
        let (a, b) = (writer(0, false), writer(1, true));
        let conflicts = a.await.expect("writer 0") + b.await.expect("writer 1");
        assert_eq!(
            conflicts, 0,
            "409s among 1000 patches without a resourceVersion"
        );
        let data = api.get("race").await.expect("get").data.unwrap_or_default();
        assert_eq!(data.get("w0").map(String::as_str), Some("499"));
        assert_eq!(data.get("w1").map(String::as_str), Some("499"));

        // A stale resourceVersion in the patch is still a conflict.
        let stale = serde_json::json!({"metadata": {"resourceVersion": "1"}, "data": {"x": "y"}});
        match api
            .patch("race", &PatchParams::default(), &Patch::Merge(&stale))
            .await
        {
            Err(kube::Error::Api(e)) => assert_eq!(e.code, 409),
            other => panic!("a stale resourceVersion was accepted: {other:?}"),
        }
    });
}

/// The API server, controllers (mirroring) and DNS; no node.
const FLAGS: &[&str] = &["--disable", "agent,proxy"];

const MANIFEST: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: ext-svc, namespace: default}
spec:
  type: ExternalName
  externalName: web.default.svc.cluster.local
---
apiVersion: v1
kind: Service
metadata: {name: v6, namespace: default}
spec:
  clusterIP: None
  ipFamilies: [IPv6]
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: v6, namespace: default}
subsets:
- addresses: [{ip: "fd00:10:244::5"}]
  ports: [{name: http, port: 80, protocol: TCP}]
"#;

/// Removes the namespace's resolv.conf override on drop.
struct ResolvConf(std::path::PathBuf);

impl Drop for ResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dig(c: &Cluster, args: &str) -> String {
    let out = c.sh(&format!("dig @127.0.0.1 +time=2 +tries=1 +short {args}"));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn real_clients_against_a_cluster() {
    let c = Cluster::start_with(FLAGS);
    c.apply(MANIFEST);

    // kubernetes.io/metadata.name on the built-in namespaces and new ones,
    // put back when a client removes it.
    let names = c.k(&[
        "get",
        "ns",
        "-l",
        "kubernetes.io/metadata.name=default",
        "-o",
        "name",
    ]);
    assert_eq!(names.trim(), "namespace/default");
    c.k(&["create", "namespace", "team"]);
    c.k(&["label", "namespace", "team", "kubernetes.io/metadata.name-"]);
    let label = c.k(&[
        "get",
        "ns",
        "team",
        "-o",
        "jsonpath={.metadata.labels.kubernetes\\.io/metadata\\.name}",
    ]);
    assert_eq!(label.trim(), "team");

    // The default ClusterRoles and bindings exist from the start.
    let roles = c.k(&[
        "get",
        "clusterroles",
        "cluster-admin",
        "view",
        "edit",
        "admin",
        "-o",
        "name",
    ]);
    assert_eq!(roles.lines().count(), 4, "{roles}");
    let subject = c.k(&[
        "get",
        "clusterrolebinding",
        "cluster-admin",
        "-o",
        "jsonpath={.subjects[0].name}",
    ]);
    assert_eq!(subject.trim(), "system:masters");

    // A stub resolver with the cluster's search path follows the ExternalName
    // to the ClusterIP: the answer carries the target's A record.
    let web_ip = c.k(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let etc = std::path::PathBuf::from("/etc/netns").join(&c.netns.name);
    std::fs::create_dir_all(&etc).expect("creating /etc/netns/<ns>");
    let _guard = ResolvConf(etc.clone());
    std::fs::write(
        etc.join("resolv.conf"),
        "nameserver 127.0.0.1\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n",
    )
    .expect("writing the namespace's resolv.conf");
    let hosts = eventually(Duration::from_secs(30), || {
        let out = c.sh("getent hosts ext-svc.default.svc.cluster.local");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success().then_some(text)
    });
    assert!(hosts.starts_with(web_ip.trim()), "getent: {hosts}");
    let short = c.sh("getent hosts ext-svc");
    assert!(
        String::from_utf8_lossy(&short.stdout).starts_with(web_ip.trim()),
        "getent ext-svc"
    );
    let answer = dig(&c, "ext-svc.default.svc.cluster.local");
    assert_eq!(
        answer.lines().collect::<Vec<_>>(),
        vec!["web.default.svc.cluster.local.", web_ip.trim()]
    );

    // Manual Endpoints with an IPv6 address: mirrored into an IPv6 slice,
    // answered over AAAA and PTR.
    let aaaa = eventually(Duration::from_secs(30), || {
        let a = dig(&c, "AAAA v6.default.svc.cluster.local");
        (!a.is_empty()).then_some(a)
    });
    assert_eq!(aaaa, "fd00:10:244::5");
    let types = c.k(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=v6",
        "-o",
        "jsonpath={.items[*].addressType}",
    ]);
    assert_eq!(types.trim(), "IPv6");
    let ptr = dig(&c, "-x fd00:10:244::5");
    assert_eq!(ptr, "fd00-10-244--5.v6.default.svc.cluster.local.");
}
