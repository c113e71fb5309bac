//! The serviceaccount and root-ca-cert-publisher controllers against an
//! in-process API server (memory store), with the ServiceAccount admission
//! they make possible: every namespace gets a `default` ServiceAccount and the
//! `kube-root-ca.crt` ConfigMap (again when deleted or edited), and new pods
//! run as `default` with the token volume unless automounting is off.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use support::api_server;
use tokio::time::{sleep, Instant};

/// Polls `get` until it returns `Some`, for up to 10 s.
async fn until<T, F, Fut>(what: &str, mut get: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = get().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(50)).await;
    }
}

fn pod(name: &str, spec_extra: serde_json::Value) -> Pod {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}],
        "initContainers": [{"name": "i", "image": "busybox"}]});
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        s.extend(extra.clone());
    }
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name}, "spec": spec}))
    .expect("pod")
}

fn token_volumes(p: &Pod) -> Vec<String> {
    p.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter(|v| v.name.starts_with("kube-api-access-"))
        .map(|v| v.name.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_gets_its_account_and_the_ca_and_pods_their_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, client) = api_server(dir.path()).await;
    let ca = std::fs::read_to_string(dir.path().join("ca.crt")).expect("the cluster CA");

    // Before the controllers run, no namespace has an account: pods are
    // admitted (without a token) rather than refused.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let early = pods
        .create(&PostParams::default(), &pod("early", json!({})))
        .await
        .expect("a pod before the controllers");
    assert_eq!(
        early
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.as_deref()),
        Some("default")
    );
    assert!(token_volumes(&early).is_empty());

    let settings = skiff_controllers::Settings {
        enabled: vec!["serviceaccount".into(), "root-ca-cert-publisher".into()],
        cluster_cidr: None,
        root_ca_file: Some(dir.path().join("ca.crt")),
        ..Default::default()
    };
    let controllers = tokio::spawn(skiff_controllers::run(client.clone(), settings));

    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
        until(&format!("{ns}/default"), || async {
            sas.get_opt("default").await.ok().flatten()
        })
        .await;
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let cm = until(&format!("{ns}/kube-root-ca.crt"), || async {
            cms.get_opt("kube-root-ca.crt").await.ok().flatten()
        })
        .await;
        assert_eq!(cm.data.unwrap_or_default().get("ca.crt"), Some(&ca));
    }

    // A new namespace gets both; deleting or editing them brings them back.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "team"}})).expect("namespace");
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "team");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    let first = until("team/default", || async {
        sas.get_opt("default").await.ok().flatten()
    })
    .await;
    let cm = until("team/kube-root-ca.crt", || async {
        cms.get_opt("kube-root-ca.crt").await.ok().flatten()
    })
    .await;
    sas.delete("default", &DeleteParams::default())
        .await
        .expect("delete the account");
    until("team/default again", || async {
        sas.get_opt("default")
            .await
            .ok()
            .flatten()
            .filter(|s| s.metadata.uid != first.metadata.uid)
    })
    .await;
    let mut edited = cm.clone();
    edited.data = Some([("ca.crt".to_string(), "tampered".to_string())].into());
    cms.replace("kube-root-ca.crt", &PostParams::default(), &edited)
        .await
        .expect("edit the CA");
    until("the CA restored", || async {
        cms.get_opt("kube-root-ca.crt")
            .await
            .ok()
            .flatten()
            .filter(|c| c.data.as_ref().and_then(|d| d.get("ca.crt")) == Some(&ca))
    })
    .await;

    // Pods: the account defaulted, the token volume in every container.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "team");
    let p = pods
        .create(&PostParams::default(), &pod("web", json!({})))
        .await
        .expect("a pod");
    let spec = p.spec.clone().expect("spec");
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    assert_eq!(spec.service_account.as_deref(), Some("default"));
    let vols = token_volumes(&p);
    assert_eq!(vols.len(), 1, "{vols:?}");
    assert_eq!(vols[0].len(), "kube-api-access-".len() + 5);
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let m = c.volume_mounts.as_ref().expect("mounts");
        assert_eq!(m[0].name, vols[0]);
        assert_eq!(
            m[0].mount_path,
            "/var/run/secrets/kubernetes.io/serviceaccount"
        );
        assert_eq!(m[0].read_only, Some(true));
    }

    // Automounting off on the pod, or on its account: no volume.
    let p = pods
        .create(
            &PostParams::default(),
            &pod("quiet", json!({"automountServiceAccountToken": false})),
        )
        .await
        .expect("a pod without a token");
    assert!(token_volumes(&p).is_empty());
    let robot: ServiceAccount = serde_json::from_value(
        json!({"metadata": {"name": "robot"}, "automountServiceAccountToken": false}),
    )
    .expect("account");
    sas.create(&PostParams::default(), &robot)
        .await
        .expect("robot");
    let p = pods
        .create(
            &PostParams::default(),
            &pod("robot", json!({"serviceAccountName": "robot"})),
        )
        .await
        .expect("a robot pod");
    assert!(token_volumes(&p).is_empty());
    // ... unless the pod asks for it.
    let p = pods
        .create(
            &PostParams::default(),
            &pod(
                "robot-token",
                json!({"serviceAccountName": "robot", "automountServiceAccountToken": true}),
            ),
        )
        .await
        .expect("a robot pod with a token");
    assert_eq!(token_volumes(&p).len(), 1);

    // A missing account: upstream's 403.
    let err = pods
        .create(
            &PostParams::default(),
            &pod("ghost", json!({"serviceAccountName": "ghost"})),
        )
        .await
        .expect_err("a pod of a missing account");
    match err {
        kube::Error::Api(e) => {
            assert_eq!(e.code, 403);
            assert_eq!(
                e.message,
                r#"pods "ghost" is forbidden: error looking up service account team/ghost: serviceaccount "ghost" not found"#
            );
        }
        e => panic!("unexpected {e}"),
    }
    controllers.abort();
}
