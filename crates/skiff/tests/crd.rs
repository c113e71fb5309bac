//! CustomResourceDefinitions end to end with the real kubectl: a CRD applied
//! from YAML becomes Established and its objects are created, listed with their
//! printer columns, patched, applied server-side, watched, scaled, checked
//! against the schema, and deleted with the CRD; then a small kube-rs
//! controller over the CRD (DynamicObject) writes its objects' status.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use support::{eventually, Background, Cluster};

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wd]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
    additionalPrinterColumns:
    - name: Size
      type: string
      jsonPath: .spec.size
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Ready
      type: boolean
      jsonPath: .status.ready
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size:
                type: string
                enum: [small, large]
              replicas:
                type: integer
                minimum: 0
                default: 1
              colour:
                type: string
              ports:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [port]
                items:
                  type: object
                  required: [port]
                  properties:
                    port: {type: integer}
                    name: {type: string}
          status:
            type: object
            properties:
              replicas: {type: integer}
              ready: {type: boolean}
              observed: {type: string}
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

const WIDGET: &str = r#"
apiVersion: example.com/v1
kind: Widget
metadata:
  name: w1
spec:
  size: small
  unknownField: dropped
"#;

fn established(c: &Cluster) {
    c.k(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/widgets.example.com",
    ]);
}

#[test]
fn crd_lifecycle_with_kubectl() {
    let c = Cluster::start();
    assert!(c
        .apply(CRD)
        .contains("customresourcedefinition.apiextensions.k8s.io/widgets.example.com created"));
    established(&c);
    let names = c.k(&["get", "crd", "widgets.example.com", "-o", "jsonpath={.status.acceptedNames.kind} {.status.conditions[?(@.type==\"NamesAccepted\")].status}"]);
    assert_eq!(names, "Widget True");

    // kubectl validates strictly by default: an undeclared field is refused...
    let out = c.kubectl_in(&["apply", "-f", "-"], WIDGET);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"strict decoding error: unknown field "spec.unknownField""#),
        "{err}"
    );
    // ...and, with --validate=false, pruned; defaults are applied.
    let out = c.kubectl_in(&["apply", "--validate=false", "-f", "-"], WIDGET);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w = c.k(&["get", "widget", "w1", "-o", "json"]);
    let w: serde_json::Value = serde_json::from_str(&w).unwrap();
    assert_eq!(w["spec"]["replicas"], 1, "{w}");
    assert!(w["spec"].get("unknownField").is_none(), "{w}");
    assert_eq!(w["apiVersion"], "example.com/v1");

    // Listed with the printer columns, by short name and through category all.
    let table = c.k(&["get", "wd"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SIZE", "REPLICAS", "READY"], "{table}");
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    // A path that finds nothing is an empty cell, as upstream prints it.
    assert_eq!(row, ["w1", "small", "1"], "{table}");
    assert!(c.k(&["get", "all"]).contains("widget.example.com/w1"));
    // The other served version shows the same object.
    let beta = c.k(&[
        "get",
        "widgets.v1beta1.example.com",
        "w1",
        "-o",
        "jsonpath={.apiVersion}",
    ]);
    assert_eq!(beta, "example.com/v1beta1");

    // A watch sees the changes that follow.
    let mut watch = c.netns.command("kubectl");
    watch
        .args([
            "get",
            "widgets",
            "-w",
            "--output-watch-events",
            "-o",
            "custom-columns=EVENT:.type,NAME:.object.metadata.name,COLOUR:.object.spec.colour",
        ])
        .env("KUBECONFIG", &c.kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = Background(watch.spawn().unwrap());
    let (tx, rx) = mpsc::channel();
    let out = child.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::thread::sleep(Duration::from_millis(500));

    // Merge patch.
    c.k(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"spec":{"colour":"red"}}"#,
    ]);
    assert_eq!(
        c.k(&["get", "widget", "w1", "-o", "jsonpath={.spec.colour}"]),
        "red"
    );
    // Strategic merge has no rules for custom resources: refused as upstream.
    let err = c.k_err(&[
        "patch",
        "widget",
        "w1",
        "-p",
        r#"{"spec":{"colour":"blue"}}"#,
    ]);
    assert!(
        err.contains("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"),
        "{err}"
    );
    // A JSON patch, and a client-side re-apply (kubectl sends a merge patch).
    c.k(&[
        "patch",
        "widget",
        "w1",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/colour","value":"green"}]"#,
    ]);
    assert_eq!(
        c.k(&["get", "widget", "w1", "-o", "jsonpath={.spec.colour}"]),
        "green"
    );
    let reapplied = c.apply(&WIDGET.replace("unknownField: dropped", "colour: red"));
    assert!(
        reapplied.contains("widget.example.com/w1 configured"),
        "{reapplied}"
    );
    // Server-side apply by another manager, merging list-map items by key.
    let ssa = r#"
apiVersion: example.com/v1
kind: Widget
metadata:
  name: w1
spec:
  size: large
  ports:
  - port: 80
    name: http
"#;
    // spec.size belongs to kubectl's client-side apply: a conflict, as upstream.
    let ssa_args = ["apply", "--server-side", "--field-manager=ops", "-f", "-"];
    let out = c.kubectl_in(&ssa_args, ssa);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"conflict with "kubectl-client-side-apply""#) && err.contains(".spec.size"),
        "{err}"
    );
    let forced = [
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=ops",
        "-f",
        "-",
    ];
    let out = c.kubectl_in(&forced, ssa);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = c.k(&[
        "get",
        "widget",
        "w1",
        "-o",
        "jsonpath={.spec.size} {.spec.colour} {.spec.ports[0].name}",
    ]);
    assert_eq!(got, "large red http");
    // The list-map item is merged by its key: another manager's port joins ops'
    // (an atomic list would have been taken over), and ops' re-apply changes its own.
    let theirs = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  ports:\n  - port: 443\n    name: https\n";
    let tls = ["apply", "--server-side", "--field-manager=tls", "-f", "-"];
    let out = c.kubectl_in(&tls, theirs);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = c.kubectl_in(&ssa_args, &ssa.replace("name: http", "name: web"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ports = c.k(&[
        "get",
        "widget",
        "w1",
        "-o",
        "jsonpath={.spec.ports[*].name}",
    ]);
    assert_eq!(ports, "web https");
    let managers = c.k(&[
        "get",
        "widget",
        "w1",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ]);
    assert!(managers.contains("ops"), "{managers}");

    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !seen
        .iter()
        .any(|l: &String| l.contains("MODIFIED") && l.contains("red"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "watch saw only {seen:?}"
        );
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(l);
        }
    }
    drop(child);

    // A schema-breaking object is refused with the path.
    let bad = r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"bad"},"spec":{"size":"small","replicas":"three"}}"#;
    // The server's own message names the kind with its group, as upstream's.
    let raw = c.sh(&format!(
        "curl -sk -X POST -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' \
         --data '{bad}' https://{}/apis/example.com/v1/namespaces/default/widgets",
        c.token(),
        support::API
    ));
    let status: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(status["code"], 422, "{status}");
    assert_eq!(
        status["message"],
        r#"Widget.example.com "bad" is invalid: spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#
    );
    assert_eq!(status["details"]["causes"][0]["field"], "spec.replicas");
    let out = c.kubectl_in(&["create", "-f", "-"], bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(r#"The Widget "bad" is invalid: spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#),
        "{err}"
    );
    let out = c.kubectl_in(&["create", "-f", "-"], r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"bad"},"spec":{"size":"huge"}}"#);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"spec.size: Unsupported value: "huge": supported values: "small", "large""#),
        "{err}"
    );

    // Status subresource: the main resource ignores status, /status takes it,
    // and only spec changes count in metadata.generation.
    let generation = || {
        c.k(&[
            "get",
            "widget",
            "w1",
            "-o",
            "jsonpath={.metadata.generation}",
        ])
    };
    let before = generation();
    c.k(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"status":{"ready":true}}"#,
    ]);
    assert_eq!(
        c.k(&["get", "widget", "w1", "-o", "jsonpath={.status.ready}"]),
        ""
    );
    c.k(&[
        "patch",
        "widget",
        "w1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"ready":true,"replicas":1}}"#,
    ]);
    assert_eq!(
        c.k(&["get", "widget", "w1", "-o", "jsonpath={.status.ready}"]),
        "true"
    );

    assert_eq!(generation(), before);
    // Scale.
    c.k(&["scale", "widget", "w1", "--replicas=3"]);
    assert_eq!(
        generation().parse::<i64>().unwrap(),
        before.parse::<i64>().unwrap() + 1
    );
    assert_eq!(
        c.k(&["get", "widget", "w1", "-o", "jsonpath={.spec.replicas}"]),
        "3"
    );
    let scale = c.k(&[
        "get",
        "--raw",
        "/apis/example.com/v1/namespaces/default/widgets/w1/scale",
    ]);
    let scale: serde_json::Value = serde_json::from_str(&scale).unwrap();
    assert_eq!(
        (
            scale["kind"].as_str(),
            scale["spec"]["replicas"].as_i64(),
            scale["status"]["replicas"].as_i64()
        ),
        (Some("Scale"), Some(3), Some(1))
    );

    // RBAC: a user with only the view role cannot see widgets until a role
    // aggregated to view says so.
    let can = |verb: &str| {
        c.kubectl(&[
            "auth",
            "can-i",
            verb,
            "widgets.example.com",
            "--as=jane",
            "-n",
            "default",
        ])
        .status
        .success()
    };
    c.k(&[
        "create",
        "rolebinding",
        "jane-view",
        "--clusterrole=view",
        "--user=jane",
        "-n",
        "default",
    ]);
    assert!(!can("list"));
    c.apply(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: widgets-view
  labels:
    rbac.authorization.k8s.io/aggregate-to-view: "true"
rules:
- apiGroups: [example.com]
  resources: [widgets]
  verbs: [get, list, watch]
"#,
    );
    eventually(Duration::from_secs(10), || can("list").then_some(()));
    assert!(!can("delete"));
    let listed = c.k(&["get", "widgets", "--as=jane", "-o", "name"]);
    assert_eq!(listed.trim(), "widget.example.com/w1");

    // A namespace takes its custom objects with it.
    c.k(&["create", "namespace", "shop"]);
    c.apply(r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w3","namespace":"shop"},"spec":{"size":"small"}}"#);
    c.k(&["delete", "namespace", "shop", "--timeout=30s"]);
    let left = c.k(&["get", "widgets", "-A", "-o", "name"]);
    assert_eq!(left.trim(), "widget.example.com/w1");

    // Deleting the CRD deletes its objects and stops serving them.
    c.apply(r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w2"},"spec":{"size":"small"}}"#);
    c.k(&["delete", "crd", "widgets.example.com", "--timeout=30s"]);
    let err = c.k_err(&["get", "widgets"]);
    assert!(
        err.contains("the server doesn't have a resource type \"widgets\"")
            || err.contains("the server could not find the requested resource"),
        "{err}"
    );
    // Defined again, it starts empty.
    c.apply(CRD);
    established(&c);
    let left = eventually(Duration::from_secs(10), || {
        let out = c.kubectl(&["get", "widgets", "-o", "name"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    assert_eq!(left, "");
}

#[test]
fn crd_validation_is_upstreams() {
    let c = Cluster::start();
    let two_storage = CRD.replace("storage: false", "storage: true");
    let out = c.kubectl_in(&["apply", "-f", "-"], &two_storage);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"The CustomResourceDefinition "widgets.example.com" is invalid: spec.versions: Invalid value"#)
            && err.contains("must have exactly one version marked as storage version"),
        "{err}"
    );
    let no_schema = r#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition",
      "metadata":{"name":"gadgets.example.com"},
      "spec":{"group":"example.com","scope":"Cluster","names":{"plural":"gadgets","kind":"Gadget"},
        "versions":[{"name":"v1","served":true,"storage":true}]}}"#;
    let out = c.kubectl_in(&["create", "-f", "-"], no_schema);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required"
        ),
        "{err}"
    );

    // A cluster-scoped CRD with a schema-less-by-preserve object.
    let cluster = no_schema.replace(
        r#""storage":true}"#,
        r#""storage":true,"schema":{"openAPIV3Schema":{"type":"object","x-kubernetes-preserve-unknown-fields":true}}}"#,
    );
    c.kubectl_in(&["create", "-f", "-"], &cluster);
    c.k(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/gadgets.example.com",
    ]);
    c.apply(r#"{"apiVersion":"example.com/v1","kind":"Gadget","metadata":{"name":"g"},"anything":{"goes":1}}"#);
    assert_eq!(
        c.k(&["get", "gadget", "g", "-o", "jsonpath={.anything.goes}"]),
        "1"
    );
    let header = c.k(&["get", "gadgets"]);
    assert!(
        header.starts_with("NAME") && header.contains("AGE"),
        "{header}"
    );
}

fn inner_only() {
    assert_eq!(
        std::env::var("SKIFF_E2E_INNER").as_deref(),
        Ok("1"),
        "runs only inside a test-made network namespace, through its outer test"
    );
}

#[test]
fn kube_rs_controller_over_a_crd() {
    support::run_inside_netns("inner_kube_rs_controller");
}

/// The controller: every Widget's `status.observed` follows its `spec.size`.
async fn controller(api: kube::Api<kube::api::DynamicObject>) {
    use futures::StreamExt;
    use kube::runtime::{watcher, WatchStreamExt};
    let stream = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects();
    futures::pin_mut!(stream);
    while let Some(Ok(obj)) = stream.next().await {
        let size = obj.data["spec"]["size"].clone();
        if obj.data["status"]["observed"] == size {
            continue;
        }
        let name = obj.metadata.name.clone().unwrap_or_default();
        let patch = serde_json::json!({"status": {"observed": size}});
        let _ = api
            .patch_status(
                &name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await;
    }
}

#[test]
#[ignore = "run by kube_rs_controller_over_a_crd inside a network namespace"]
fn inner_kube_rs_controller() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, ApiResource, DynamicObject, PostParams};
    use kube::core::GroupVersionKind;
    inner_only();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let backend = std::sync::Arc::new(skiff_store::MemoryBackend::new());
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
        let running = skiff_apiserver::start(config, backend).await.unwrap();
        let kubeconfig = kube::config::Kubeconfig::read_from(&running.kubeconfig).unwrap();
        let kcfg = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        let client = kube::Client::try_from(kcfg).unwrap();

        // The CRD, from the same YAML kubectl applies.
        let crd: CustomResourceDefinition = serde_yaml_from(CRD);
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        crds.create(&PostParams::default(), &crd).await.unwrap();
        let established = |c: &CustomResourceDefinition| {
            c.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                })
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !established(&crds.get("widgets.example.com").await.unwrap()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "CRD not established"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // Discovery finds the kind, as a client resolving it by GVK does.
        let gvk = GroupVersionKind::gvk("example.com", "v1", "Widget");
        let (ar, caps) = kube::discovery::pinned_kind(&client, &gvk).await.unwrap();
        assert_eq!(ar.plural, "widgets");
        assert!(caps
            .subresources
            .iter()
            .any(|(s, _)| s.plural == "widgets/status" || s.plural == "status"));
        let ar = ApiResource::from_gvk_with_plural(&gvk, "widgets");
        let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
        tokio::spawn(controller(widgets.clone()));

        for (name, size) in [("a", "small"), ("b", "large"), ("c", "small")] {
            let mut w = DynamicObject::new(name, &ar);
            w.data = serde_json::json!({"spec": {"size": size}});
            widgets.create(&PostParams::default(), &w).await.unwrap();
        }
        let observed = |want: Vec<(&'static str, &'static str)>| {
            let widgets = widgets.clone();
            async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
                loop {
                    let list = widgets.list(&Default::default()).await.unwrap();
                    let got: Vec<(String, String)> = list
                        .items
                        .iter()
                        .map(|w| {
                            (
                                w.metadata.name.clone().unwrap_or_default(),
                                w.data["status"]["observed"]
                                    .as_str()
                                    .unwrap_or("")
                                    .to_string(),
                            )
                        })
                        .collect();
                    let want: Vec<(String, String)> = want
                        .iter()
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .collect();
                    if got == want {
                        return;
                    }
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "status {got:?}, want {want:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        observed(vec![("a", "small"), ("b", "large"), ("c", "small")]).await;
        let patch = serde_json::json!({"spec": {"size": "large"}});
        widgets
            .patch(
                "a",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .unwrap();
        observed(vec![("a", "large"), ("b", "large"), ("c", "small")]).await;
        running.stopper().stop();
        running.wait().await.unwrap();
    });
}

/// The CRD manifest kubectl applies, read into its typed form (the workspace has
/// no YAML crate; PyYAML, which the Python client suite needs anyway, converts it).
fn serde_yaml_from<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(yaml.as_bytes())?;
            }
            child.wait_with_output()
        })
        .expect("python3 with PyYAML converts the manifest");
    serde_json::from_slice(&out.stdout).expect("manifest as JSON")
}
