//! The machine's real kubectl against `skiff server`, each test in its own
//! network namespace: the workflows users type and the errors they see.

mod support;

use std::time::Duration;

use support::{eventually, Cluster};

const DEPLOY: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  labels:
    app: example
  name: example
spec:
  replicas: 3
  selector:
    matchLabels:
      app: example
  template:
    metadata:
      labels:
        app: example
    spec:
      containers:
      - image: docker.io/traefik/whoami:latest
        name: whoami
        ports:
        - containerPort: 80
          name: http
";

const SERVICE: &str = "apiVersion: v1
kind: Service
metadata:
  labels:
    app: example
  name: example
spec:
  ports:
  - name: http
    port: 80
    targetPort: http
  - name: https
    port: 443
    targetPort: 8443
  selector:
    app: example
";

#[test]
fn apply_create_update_and_unchanged() {
    let c = Cluster::start();
    let both = format!("{DEPLOY}---\n{SERVICE}");
    let out = c.apply(&both);
    assert!(out.contains("deployment.apps/example created"), "{out}");
    assert!(out.contains("service/example created"), "{out}");
    let out = c.apply(&both);
    assert!(out.contains("deployment.apps/example unchanged"), "{out}");
    assert!(out.contains("service/example unchanged"), "{out}");
    // Update path: strategic merge patch with a removed port and a changed field.
    let edited = both
        .replace("replicas: 3", "replicas: 2")
        .replace("  - name: https\n    port: 443\n    targetPort: 8443\n", "");
    let out = c.apply(&edited);
    assert!(out.contains("deployment.apps/example configured"), "{out}");
    assert!(out.contains("service/example configured"), "{out}");
    assert_eq!(
        c.k(&[
            "get",
            "deploy",
            "example",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "2"
    );
    let ports = c.k(&[
        "get",
        "svc",
        "example",
        "-o",
        "jsonpath={.spec.ports[*].port}",
    ]);
    assert_eq!(ports, "80", "removed port must be gone");
    // The last-applied annotation is what kubectl diffs against next time.
    let ann = c.k(&[
        "get",
        "svc",
        "example",
        "-o",
        "jsonpath={.metadata.annotations}",
    ]);
    assert!(
        ann.contains("kubectl.kubernetes.io/last-applied-configuration"),
        "{ann}"
    );
    // Server-side apply: create, then update by the same manager.
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: \"1\"\n";
    let out = c.kubectl_in(&["apply", "--server-side", "-f", "-"], cm);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configmap/ssa serverside-applied"));
    let out = c.kubectl_in(
        &["apply", "--server-side", "-f", "-"],
        &cm.replace("\"1\"", "\"2\""),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(c.k(&["get", "cm", "ssa", "-o", "jsonpath={.data.a}"]), "2");
}

#[test]
fn get_formats_and_selectors() {
    let c = Cluster::start();
    c.apply(&format!("{DEPLOY}---\n{SERVICE}"));
    c.k(&["create", "namespace", "moon"]);
    c.k(&[
        "create",
        "configmap",
        "cfg",
        "--from-literal=k=v",
        "-n",
        "moon",
    ]);
    let wide = c.k(&["get", "deploy", "-o", "wide"]);
    assert!(
        wide.contains("CONTAINERS") && wide.contains("whoami") && wide.contains("app=example"),
        "{wide}"
    );
    let yaml = c.k(&["get", "svc", "example", "-o", "yaml"]);
    assert!(
        yaml.contains("kind: Service") && yaml.contains("resourceVersion:"),
        "{yaml}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&c.k(&["get", "svc", "example", "-o", "json"])).unwrap();
    assert_eq!(json["spec"]["ports"][0]["name"], "http");
    assert!(c
        .k(&["get", "svc", "-l", "app=example"])
        .contains("example"));
    assert!(c.k(&["get", "svc", "-l", "app=nope"]).is_empty());
    let all_ns = c.k(&["get", "cm", "-A"]);
    assert!(
        all_ns.contains("moon") && all_ns.contains("cfg"),
        "{all_ns}"
    );
    let sorted = c.k(&["get", "ns", "--sort-by=.metadata.name", "-o", "name"]);
    let names: Vec<&str> = sorted.lines().collect();
    let mut want = names.clone();
    want.sort();
    assert_eq!(names, want);
    let all = c.k(&["get", "all"]);
    assert!(
        all.contains("service/example") && all.contains("deployment.apps/example"),
        "{all}"
    );
    let desc = c.k(&["describe", "svc", "example"]);
    assert!(
        desc.contains("Selector:") && desc.contains("app=example"),
        "{desc}"
    );
    assert!(c
        .k(&["describe", "deploy", "example"])
        .contains("Replicas:"));
}

#[test]
fn imperative_commands() {
    let c = Cluster::start();
    // These send protobuf bodies.
    assert!(c
        .k(&[
            "create",
            "deployment",
            "httpenv",
            "--image=bretfisher/httpenv"
        ])
        .contains("created"));
    assert!(c
        .k(&["scale", "deployment/httpenv", "--replicas=5"])
        .contains("scaled"));
    assert_eq!(
        c.k(&[
            "get",
            "deploy",
            "httpenv",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "5"
    );
    assert!(c
        .k(&["expose", "deployment/httpenv", "--port", "8888"])
        .contains("service/httpenv exposed"));
    let sel = c.k(&[
        "get",
        "svc",
        "httpenv",
        "-o",
        "jsonpath={.spec.selector.app}",
    ]);
    assert_eq!(sel, "httpenv");
    c.k(&["create", "service", "clusterip", "my-svc", "--tcp=80:8080"]);
    assert_eq!(
        c.k(&[
            "get",
            "svc",
            "my-svc",
            "-o",
            "jsonpath={.spec.ports[0].targetPort}"
        ]),
        "8080"
    );
    c.k(&["create", "namespace", "moon"]);
    c.k(&[
        "create",
        "configmap",
        "cm",
        "--from-literal=a=b",
        "-n",
        "moon",
    ]);
    assert_eq!(
        c.k(&["get", "cm", "cm", "-n", "moon", "-o", "jsonpath={.data.a}"]),
        "b"
    );
    assert!(c
        .k(&["run", "tmp", "--image=busybox", "--", "sleep", "1000"])
        .contains("pod/tmp created"));
    c.k(&["label", "pod", "tmp", "tier=tools"]);
    c.k(&["annotate", "pod", "tmp", "note=hello"]);
    assert_eq!(
        c.k(&["get", "pod", "-l", "tier=tools", "-o", "name"])
            .trim(),
        "pod/tmp"
    );
    // Patches of every kind.
    c.k(&[
        "patch",
        "deploy",
        "httpenv",
        "-p",
        r#"{"spec":{"replicas":2}}"#,
    ]);
    c.k(&[
        "patch",
        "deploy",
        "httpenv",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"m":"1"}}}"#,
    ]);
    c.k(&[
        "patch",
        "deploy",
        "httpenv",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":3}]"#,
    ]);
    assert_eq!(
        c.k(&[
            "get",
            "deploy",
            "httpenv",
            "-o",
            "jsonpath={.spec.replicas}{.metadata.labels.m}"
        ]),
        "31"
    );
    // Deletes: by name, by label, by file, a namespace.
    assert!(c
        .k(&["delete", "svc", "my-svc"])
        .contains("service \"my-svc\" deleted"));
    c.k(&["delete", "pod", "-l", "tier=tools"]);
    assert!(c
        .k(&["get", "pods", "-l", "tier=tools", "-o", "name"])
        .is_empty());
    c.apply(SERVICE);
    let out = c.kubectl_in(&["delete", "-f", "-"], SERVICE);
    assert!(out.status.success());
    c.k(&["delete", "namespace", "moon"]);
    assert!(c
        .k_err(&["get", "ns", "moon"])
        .contains("namespaces \"moon\" not found"));
    assert!(c
        .k_err(&["get", "cm", "cm", "-n", "moon"])
        .contains("not found"));
}

#[test]
fn errors_read_like_upstream() {
    let c = Cluster::start();
    assert_eq!(
        c.k_err(&["get", "svc", "nope"]).trim(),
        "Error from server (NotFound): services \"nope\" not found"
    );
    c.apply(SERVICE);
    let out = c.kubectl_in(&["create", "-f", "-"], SERVICE);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "Error from server (AlreadyExists): error when creating \"STDIN\": services \"example\" already exists"
    );
    let bogus = SERVICE
        .replace("  selector:", "  bogus: 1\n  selector:")
        .replace("name: example", "name: other");
    let out = c.kubectl_in(&["create", "-f", "-"], &bogus);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "Error from server (BadRequest): error when creating \"STDIN\": Service in version \"v1\" cannot be handled as a Service: strict decoding error: unknown field \"spec.bogus\""
    );
    let bad_name = SERVICE.replace("name: example", "name: Bad_Name");
    let out = c.kubectl_in(&["create", "-f", "-"], &bad_name);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("The Service \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a DNS-1035 label must consist of lower case alphanumeric characters"),
        "{err}"
    );
    let out = c.kubectl_in(&["create", "-n", "nowhere", "-f", "-"], SERVICE);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "Error from server (NotFound): error when creating \"STDIN\": namespaces \"nowhere\" not found"
    );
    assert!(
        c.k(&["get", "svc", "-o", "name"])
            .contains("service/example"),
        "nothing else stored"
    );
    assert!(!c.k(&["get", "svc", "-o", "name"]).contains("other"));
    // Wrong credentials.
    // (Without the admin kubeconfig, whose client certificate would be tried
    // before the token, as upstream does.)
    let ca = format!("--certificate-authority={}/ca.crt", c.data_dir().display());
    let out = c.kubectl(&[
        "--kubeconfig=/dev/null",
        "--server=https://127.0.0.1:6443",
        &ca,
        "--token=wrong",
        "get",
        "pods",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Unauthorized"), "{err}");
    // Raw HTTP: no token, malformed JSON, oversized body, wrong kind for the URL.
    let tok = c.token();
    let curl = |args: &str| -> String {
        let out = c.sh(&format!(
            "curl -sk -o /dev/stdout -w ' %{{http_code}}' {args}"
        ));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let r = curl("https://127.0.0.1:6443/api/v1/pods");
    assert!(
        r.ends_with(" 401") && r.contains("\"reason\":\"Unauthorized\""),
        "{r}"
    );
    let auth = format!("-H 'Authorization: Bearer {tok}' -H 'Content-Type: application/json'");
    let r = curl(&format!("{auth} -X POST --data '{{not json' https://127.0.0.1:6443/api/v1/namespaces/default/configmaps"));
    assert!(
        r.ends_with(" 400") && r.contains("\"kind\":\"Status\""),
        "{r}"
    );
    let r = curl(&format!(
        "{auth} -X POST --data '{{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{{\"name\":\"x\"}}}}' https://127.0.0.1:6443/api/v1/namespaces/default/services"
    ));
    assert!(
        r.ends_with(" 400") && r.contains("does not match the expected API version"),
        "{r}"
    );
    let big = c.dir.path().join("big.json");
    let payload = format!(
        "{{\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"x\":\"{}\"}}}}",
        "a".repeat(3 * 1024 * 1024 + 10)
    );
    std::fs::write(&big, payload).unwrap();
    let r = curl(&format!("{auth} -X POST --data-binary @{} https://127.0.0.1:6443/api/v1/namespaces/default/configmaps", big.display()));
    assert!(
        r.ends_with(" 413") && r.contains("RequestEntityTooLarge"),
        "{}",
        &r[r.len().saturating_sub(200)..]
    );
    let r = curl(&format!("{auth} -X PUT --data '{{\"metadata\":{{\"name\":\"other\"}}}}' https://127.0.0.1:6443/api/v1/namespaces/default/services/example"));
    assert!(
        r.ends_with(" 400") && r.contains("does not match the name on the URL"),
        "{r}"
    );
    // A stale resourceVersion is a conflict.
    let rv = c.k(&[
        "get",
        "svc",
        "example",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    c.k(&["label", "svc", "example", "bump=1"]);
    let r = curl(&format!(
        "{auth} -X PUT --data '{{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{{\"name\":\"example\",\"resourceVersion\":\"{rv}\"}},\"spec\":{{\"ports\":[{{\"port\":80}}]}}}}' https://127.0.0.1:6443/api/v1/namespaces/default/services/example"
    ));
    assert!(
        r.ends_with(" 409") && r.contains("the object has been modified"),
        "{r}"
    );
    assert_eq!(
        c.k(&[
            "get",
            "svc",
            "example",
            "-o",
            "jsonpath={.spec.ports[*].port}"
        ]),
        "80 443"
    );
}

#[test]
fn get_watch_prints_a_row_per_change() {
    let c = Cluster::start();
    let log = c.dir.path().join("watch.out");
    let mut watcher = c
        .netns
        .command("kubectl")
        .args(["get", "configmaps", "-w", "--request-timeout=0"])
        .env("KUBECONFIG", &c.kubeconfig)
        .env("HOME", c.dir.path())
        .stdout(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    c.k(&["create", "configmap", "w1", "--from-literal=a=1"]);
    c.k(&["label", "configmap", "w1", "x=y"]);
    c.k(&["delete", "configmap", "w1"]);
    let rows = eventually(Duration::from_secs(10), || {
        let s = std::fs::read_to_string(&log).unwrap_or_default();
        (s.lines().filter(|l| l.starts_with("w1 ")).count() >= 3).then_some(s)
    });
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert!(rows.lines().next().unwrap().starts_with("NAME"), "{rows}");
}

#[test]
fn kubectl_versions_1_27_to_1_33() {
    let c = Cluster::start();
    let dir = std::path::PathBuf::from(
        String::from_utf8(
            std::process::Command::new("sh")
                .args(["-c", "dirname $(readlink -f $(command -v kubectl))"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim(),
    );
    for minor in 27..=33 {
        let bin = dir.join(format!("kubectl.1.{minor}"));
        assert!(bin.exists(), "missing {}", bin.display());
        let name = format!("v{minor}");
        let manifest = DEPLOY.replace("name: example", &format!("name: {name}"));
        let k = |args: &[&str]| {
            let out = c.kubectl_bin(&bin, args);
            assert!(
                out.status.success(),
                "kubectl 1.{minor} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let file = c.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, &manifest).unwrap();
        let f = file.to_str().unwrap();
        assert!(k(&["apply", "-f", f]).contains("created"), "1.{minor}");
        assert!(k(&["apply", "-f", f]).contains("unchanged"), "1.{minor}");
        assert!(k(&["get", "deploy", &name]).contains(&name));
        assert!(k(&["describe", "deploy", &name]).contains("Replicas:"));
        assert!(k(&["scale", "deploy", &name, "--replicas=4"]).contains("scaled"));
        assert_eq!(
            k(&["get", "deploy", &name, "-o", "jsonpath={.spec.replicas}"]),
            "4"
        );
        assert!(k(&["delete", "-f", f]).contains("deleted"));
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let mut c = Cluster::start();
    let tok = c.token();
    let n = 50;
    // One shell loop of creates, each acknowledged (201) before the next.
    let script = format!(
        "for i in $(seq 1 {n}); do curl -sk -o /dev/null -w '%{{http_code}}\\n' -H 'Authorization: Bearer {tok}' -H 'Content-Type: application/json' \
         -X POST --data \"{{\\\"metadata\\\":{{\\\"name\\\":\\\"d$i\\\"}},\\\"data\\\":{{\\\"i\\\":\\\"$i\\\"}}}}\" \
         https://127.0.0.1:6443/api/v1/namespaces/default/configmaps; done"
    );
    let out = c.sh(&script);
    let codes = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(codes.lines().filter(|l| *l == "201").count(), n, "{codes}");
    let before: i64 = c
        .k(&[
            "get",
            "cm",
            "d50",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .parse()
        .unwrap();
    c.stop(true);
    c.spawn(&[]);
    let names = c.k(&["get", "cm", "-o", "name"]);
    for i in 1..=n {
        assert!(
            names.contains(&format!("configmap/d{i}\n")),
            "d{i} lost after SIGKILL"
        );
    }
    c.k(&["create", "configmap", "after"]);
    let after: i64 = c
        .k(&[
            "get",
            "cm",
            "after",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .parse()
        .unwrap();
    assert!(
        after > before,
        "resourceVersion went backwards: {after} <= {before}"
    );
}

#[test]
fn events_both_apis_duplicates_and_http2() {
    let c = Cluster::start();
    c.apply(SERVICE);
    let uid = c.k(&["get", "svc", "example", "-o", "jsonpath={.metadata.uid}"]);
    let tok = c.token();
    let post = |path: &str, body: &str| -> String {
        let file = c.dir.path().join("body.json");
        std::fs::write(&file, body).unwrap();
        let out = c.sh(&format!(
            "curl -sk -w ' %{{http_code}}' -H 'Authorization: Bearer {tok}' -H 'Content-Type: application/json' \
             -X POST --data-binary @{} 'https://127.0.0.1:6443{path}?fieldValidation=Strict'",
            file.display()
        ));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // A component records an event through events.k8s.io/v1, as kube-rs's Recorder does...
    let ev = format!(
        r#"{{"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{{"name":"example.1"}},
        "regarding":{{"apiVersion":"v1","kind":"Service","name":"example","namespace":"default","uid":"{uid}"}},
        "reason":"Probing","note":"hello from a controller","type":"Normal","eventTime":"2026-01-01T00:00:00.000000Z",
        "reportingController":"skiff/test","reportingInstance":"skiff/test-1","action":"Probe"}}"#
    );
    let r = post("/apis/events.k8s.io/v1/namespaces/default/events", &ev);
    assert!(r.ends_with(" 201"), "{r}");
    // ...and kubectl sees it through core/v1, in describe and in get events.
    let desc = c.k(&["describe", "svc", "example"]);
    assert!(
        desc.contains("Probing") && desc.contains("hello from a controller"),
        "{desc}"
    );
    let core: serde_json::Value =
        serde_json::from_str(&c.k(&["get", "events.v1.", "example.1", "-o", "json"])).unwrap();
    assert_eq!(core["involvedObject"]["name"], "example");
    assert_eq!(core["message"], "hello from a controller");
    let new: serde_json::Value =
        serde_json::from_str(&c.k(&["get", "events.v1.events.k8s.io", "example.1", "-o", "json"]))
            .unwrap();
    assert_eq!(new["regarding"]["name"], "example");
    assert_eq!(new["note"], "hello from a controller");
    // Strict validation reports a duplicated field, and nothing is stored.
    let r = post(
        "/api/v1/namespaces/default/configmaps",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup"},"data":{"a":"1"},"data":{"a":"2"}}"#,
    );
    assert!(
        r.ends_with(" 400") && r.contains("duplicate field \\\"data\\\""),
        "{r}"
    );
    assert!(c.k_err(&["get", "cm", "dup"]).contains("not found"));
    // HTTP/2 is negotiated over TLS, HTTP/1.1 still works.
    let out = c.sh(&format!("curl -sk --http2 -o /dev/null -w '%{{http_version}}' -H 'Authorization: Bearer {tok}' https://127.0.0.1:6443/api"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2");
    let out = c.sh(&format!("curl -sk --http1.1 -o /dev/null -w '%{{http_version}}' -H 'Authorization: Bearer {tok}' https://127.0.0.1:6443/api"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1.1");
}

#[test]
fn paging_generate_name_finalizers_metrics() {
    let c = Cluster::start();
    for i in 0..7 {
        c.k(&["create", "configmap", &format!("page-{i}")]);
    }
    // kubectl follows continue tokens when it lists in chunks.
    let names = c.k(&["get", "cm", "--chunk-size=2", "-o", "name"]);
    assert_eq!(
        names
            .lines()
            .filter(|l| l.starts_with("configmap/page-"))
            .count(),
        7,
        "{names}"
    );
    let gen = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: gen-\n";
    let out = c.kubectl_in(&["create", "-f", "-"], gen);
    let made = String::from_utf8_lossy(&out.stdout).into_owned();
    let made = made.trim().strip_suffix(" created").unwrap_or_default();
    assert!(
        made.starts_with("configmap/gen-") && made.len() == "configmap/gen-".len() + 5,
        "{made}"
    );
    // An object with a finalizer is only marked; removing the finalizer removes it.
    c.apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  finalizers: [example.com/hold]\n");
    c.k(&["delete", "cm", "held", "--wait=false"]);
    let ts = c.k(&[
        "get",
        "cm",
        "held",
        "-o",
        "jsonpath={.metadata.deletionTimestamp}",
    ]);
    assert!(!ts.is_empty(), "deletionTimestamp must be set");
    c.k(&[
        "patch",
        "cm",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    assert!(c.k_err(&["get", "cm", "held"]).contains("not found"));
    // Metrics count requests by verb and resource.
    let tok = c.token();
    let out = c.sh(&format!(
        "curl -sk -H 'Authorization: Bearer {tok}' https://127.0.0.1:6443/metrics"
    ));
    let m = String::from_utf8_lossy(&out.stdout);
    assert!(
        m.contains("apiserver_request_total{verb=\"create\",resource=\"configmaps\",code=\"201\"}"),
        "{m}"
    );
    assert!(
        m.contains("apiserver_request_duration_seconds_bucket"),
        "{m}"
    );
    // Garbage protobuf is a 400, never a 500.
    let out = c.sh(&format!(
        "printf 'k8s\\000\\012\\377\\377' | curl -sk -w ' %{{http_code}}' -H 'Authorization: Bearer {tok}' \
         -H 'Content-Type: application/vnd.kubernetes.protobuf' -X POST --data-binary @- \
         https://127.0.0.1:6443/api/v1/namespaces/default/configmaps"
    ));
    let r = String::from_utf8_lossy(&out.stdout);
    assert!(
        r.ends_with(" 400") && r.contains("\"kind\":\"Status\""),
        "{r}"
    );
}

const BAD_HOST_INGRESS: &str = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: x
spec:
  rules:
  - host: Foo_bar.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: web
            port:
              number: 80
";

/// A bad Ingress host and a changed IngressClass controller are refused with
/// upstream's 422 wording, through kubectl and in the raw Status; nothing is stored.
#[test]
fn ingress_validation_reads_like_upstream() {
    let c = Cluster::start();
    let subdomain = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    let out = c.kubectl_in(&["apply", "-f", "-"], BAD_HOST_INGRESS);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!("The Ingress \"x\" is invalid: spec.rules[0].host: Invalid value: \"Foo_bar.example.com\": {subdomain}")
    );
    assert!(c
        .k_err(&["get", "ingress", "x"])
        .contains("ingresses.networking.k8s.io \"x\" not found"));

    // The Status the server sends, as kube-apiserver words it.
    let body = c.dir.path().join("bad-ingress.yaml");
    std::fs::write(
        &body,
        BAD_HOST_INGRESS.replace("Foo_bar.example.com", "'*'"),
    )
    .unwrap();
    let tok = c.token();
    let out = c.sh(&format!(
        "kubectl create --dry-run=client -o json -f {} | curl -sk -w ' %{{http_code}}' \
         -H 'Authorization: Bearer {tok}' -H 'Content-Type: application/json' --data-binary @- \
         https://127.0.0.1:6443/apis/networking.k8s.io/v1/namespaces/default/ingresses",
        body.display()
    ));
    let r = String::from_utf8_lossy(&out.stdout);
    let (body, code) = r.trim_end().rsplit_once(' ').expect("body and status code");
    assert_eq!(code, "422", "{r}");
    let status: serde_json::Value = serde_json::from_str(body).expect("a Status");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["message"],
        "Ingress.networking.k8s.io \"x\" is invalid: spec.rules[0].host: Invalid value: \"*\": a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    );
    assert_eq!(status["details"]["group"], "networking.k8s.io");
    assert_eq!(
        status["details"]["causes"][0]["field"],
        "spec.rules[0].host"
    );

    // A valid Ingress is stored; an invalid edit of it is refused and changes nothing.
    c.apply(&BAD_HOST_INGRESS.replace("Foo_bar.example.com", "foo.example.com"));
    let out = c.kubectl_in(
        &["apply", "-f", "-"],
        &BAD_HOST_INGRESS
            .replace("Foo_bar.example.com", "foo.example.com")
            .replace("path: /", "path: /a//b"),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "The Ingress \"x\" is invalid: spec.rules[0].http.paths[0].path: Invalid value: \"/a//b\": must not contain '//'"
    );
    assert_eq!(
        c.k(&[
            "get",
            "ingress",
            "x",
            "-o",
            "jsonpath={.spec.rules[0].http.paths[0].path}"
        ]),
        "/"
    );

    // IngressClass: the controller is required and may not change.
    c.apply(
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: other\nspec:\n  controller: example.com/ingress\n",
    );
    let err = c.k_err(&[
        "patch",
        "ingressclass",
        "other",
        "--type=merge",
        "-p",
        "{\"spec\":{\"controller\":\"example.com/changed\"}}",
    ]);
    assert_eq!(
        err.trim(),
        "The IngressClass \"other\" is invalid: spec.controller: Invalid value: \"example.com/changed\": field is immutable"
    );
    let out = c.kubectl_in(
        &["apply", "-f", "-"],
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: bad\nspec:\n  controller: nodomain\n",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "The IngressClass \"bad\" is invalid: spec.controller: Invalid value: \"nodomain\": must be a domain-prefixed path (such as \"acme.io/foo\")"
    );
}
