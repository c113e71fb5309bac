//! Pods running real OCI images end to end (issue 14): Debian's `docker-registry`
//! started inside the test's own network namespace, filled with images the test
//! builds itself (`tests/images/build`: umoci + skopeo from busybox-static), a
//! `registries.yaml` mirroring `docker.io` to it, and the real `skiff server`
//! pulling them and running them with runc. Checked with the real kubectl and curl:
//! a Deployment serving through a ClusterIP, upstream's entrypoint/command table,
//! image env/workdir/user and the pod's overrides, runAsNonRoot, isolation from
//! the node, a memory limit's OOM kill, and pull failures' waiting reasons.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::registry::{docker_io_mirror, run_image_script, start_registry, Registry, REGISTRY};
use support::{eventually, Background, Cluster, Netns};

const NODE: &str = "image-node";

/// Builds the test images and pushes them to the registry in `ns`.
fn build_and_push(ns: &Netns, dir: &Path) {
    let out_dir = dir.join("images");
    run_image_script(None, "build", &[out_dir.as_os_str()]);
    run_image_script(
        Some(ns),
        "build",
        &["--push".as_ref(), REGISTRY.as_ref(), out_dir.as_os_str()],
    );
}

struct ImageCluster {
    c: Cluster,
    _registry: Registry,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for ImageCluster {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.c
    }
}

impl std::ops::DerefMut for ImageCluster {
    fn deref_mut(&mut self) -> &mut Cluster {
        &mut self.c
    }
}

/// A full node (agent, proxy, DNS, controllers) in its own namespace with a
/// registry beside it, `docker.io` mirrored to that registry.
fn start() -> ImageCluster {
    let dir = tempfile::tempdir().expect("tempdir");
    let ns = Netns::new();
    let registry = start_registry(&ns, &dir.path().join("registry"), dir.path());
    build_and_push(&ns, dir.path());
    let reg = docker_io_mirror(dir.path()).to_string_lossy().into_owned();
    let c = Cluster::start_with_images(
        ns,
        &[
            "--disable",
            "netpol",
            "--node-name",
            NODE,
            "--registry-config",
            &reg,
        ],
    );
    ImageCluster {
        c,
        _registry: registry,
        _dir: dir,
    }
}

fn pod_json(c: &Cluster, name: &str) -> Value {
    let out = c.kubectl(&["get", "pod", name, "-o", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Waits until the pod's first container is terminated; returns its state.
fn terminated(c: &Cluster, name: &str) -> Value {
    eventually(Duration::from_secs(60), || {
        let p = pod_json(c, name);
        let t = p["status"]["containerStatuses"][0]["state"]["terminated"].clone();
        (!t.is_null()).then_some(t)
    })
}

/// Waits until the pod's first container waits with one of `reasons`.
fn waiting(c: &Cluster, name: &str, reasons: &[&str]) -> Value {
    eventually(Duration::from_secs(60), || {
        let p = pod_json(c, name);
        let w = p["status"]["containerStatuses"][0]["state"]["waiting"].clone();
        w["reason"]
            .as_str()
            .is_some_and(|r| reasons.contains(&r))
            .then_some(w)
    })
}

fn logs(c: &Cluster, name: &str) -> String {
    c.k(&["logs", name])
}

fn pod(name: &str, image: &str, container_extra: &str, pod_extra: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  nodeName: {NODE}
{pod_extra}
  containers:
  - name: c
    image: {image}
{container_extra}
"#
    )
}

#[test]
fn image_pods() {
    let mut c = start();

    // A Deployment of a real image through the docker.io mirror, behind a ClusterIP.
    c.k(&["create", "deployment", "web", "--image=httpd", "--port=80"]);
    c.k(&["expose", "deployment", "web", "--port=80"]);
    c.k(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    let ip = c.k(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let mut body = String::new();
    for _ in 0..30 {
        let out = c.sh(&format!("curl -sf --max-time 3 http://{ip}/"));
        if out.status.success() {
            body = String::from_utf8_lossy(&out.stdout).into_owned();
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    if body.is_empty() {
        let diag = c.sh(
            "kubectl get pods -o wide; kubectl logs -l app=web; kubectl get endpointslices; \
             for ip in $(kubectl get pods -l app=web -o jsonpath='{.items[*].status.podIP}'); do \
             curl -sv --max-time 3 http://$ip/ 2>&1 | tail -5; done",
        );
        panic!(
            "no answer from the ClusterIP {ip}:\n{}{}\n{}",
            String::from_utf8_lossy(&diag.stdout),
            String::from_utf8_lossy(&diag.stderr),
            c.log()
        );
    }
    assert!(body.contains("skiff test httpd"), "{body}");
    let web = c.k(&["get", "pods", "-l", "app=web", "-o", "json"]);
    let web: Value = serde_json::from_str(&web).expect("pods json");
    let image_id = web["items"][0]["status"]["containerStatuses"][0]["imageID"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        image_id.starts_with("docker.io/library/httpd@sha256:"),
        "{image_id}"
    );
    let events = c.k(&[
        "get",
        "events",
        "--field-selector",
        "reason=Pulled",
        "-o",
        "json",
    ]);
    assert!(events.contains("Successfully pulled image"), "{events}");

    // Upstream's table: command replaces the Entrypoint, args the Cmd.
    let cases = [
        ("ep-none", "", "ep cmd1 cmd2"),
        ("ep-command", "    command: [\"/bin/echo\", \"c\"]", "c"),
        ("ep-args", "    args: [\"a1\"]", "ep a1"),
        (
            "ep-both",
            "    command: [\"/bin/echo\", \"c\"]\n    args: [\"a1\"]",
            "c a1",
        ),
    ];
    for (name, extra, _) in cases {
        c.apply(&pod(name, "entrypoint-test", extra, ""));
    }
    for (name, _, want) in cases {
        assert_eq!(terminated(&c, name)["exitCode"], 0, "{name}");
        assert_eq!(logs(&c, name).trim(), want, "{name}");
    }

    // The image's Env, WorkingDir and User, then the pod's overrides.
    let show = "    command: [\"sh\", \"-c\", \"echo $FROM_IMAGE $EXTRA; pwd; id -u; id -g\"]";
    c.apply(&pod("from-image", "entrypoint-test", show, ""));
    c.apply(&pod(
        "overridden",
        "entrypoint-test",
        &format!(
            "{show}\n    workingDir: /tmp\n    env:\n    - {{name: FROM_IMAGE, value: pod}}\n    - {{name: EXTRA, value: x}}\n    securityContext:\n      runAsUser: 2000\n      runAsGroup: 3000"
        ),
        "",
    ));
    terminated(&c, "from-image");
    assert_eq!(logs(&c, "from-image").trim(), "1\n/work\n1000\n1000");
    terminated(&c, "overridden");
    assert_eq!(logs(&c, "overridden").trim(), "pod x\n/tmp\n2000\n3000");

    // Volumes: configMap, secret (read-only), emptyDir, and a subPath mount.
    c.k(&[
        "create",
        "configmap",
        "cfg",
        "--from-literal=greeting=hello",
    ]);
    c.k(&[
        "create",
        "secret",
        "generic",
        "sec",
        "--from-literal=pw=s3cret",
    ]);
    c.apply(&pod(
        "vols",
        "busybox",
        r#"    command: ["sh", "-c", "cat /cfg/greeting /sec/pw /etc/greeting; echo; touch /cfg/x 2>/dev/null || echo read-only; echo scratch > /scratch/f && cat /scratch/f"]
    volumeMounts:
    - {name: cfg, mountPath: /cfg}
    - {name: sec, mountPath: /sec}
    - {name: scratch, mountPath: /scratch}
    - {name: cfg, mountPath: /etc/greeting, subPath: greeting}"#,
        r#"  volumes:
  - {name: cfg, configMap: {name: cfg}}
  - {name: sec, secret: {secretName: sec}}
  - {name: scratch, emptyDir: {}}"#,
    ));
    assert_eq!(
        terminated(&c, "vols")["exitCode"],
        0,
        "{}",
        logs(&c, "vols")
    );
    assert_eq!(
        logs(&c, "vols").trim(),
        "hellos3crethello\nread-only\nscratch"
    );

    // Updates reach a running pod's volumes as kubelet's do: configMap, secret and
    // downwardAPI labels follow; a subPath file keeps the version it was given.
    c.apply(&pod(
        "live",
        "busybox",
        r#"    command: ["sleep", "3600"]
    volumeMounts:
    - {name: cfg, mountPath: /cfg}
    - {name: sec, mountPath: /sec}
    - {name: meta, mountPath: /meta}
    - {name: cfg, mountPath: /etc/greeting, subPath: greeting}"#,
        r#"  volumes:
  - {name: cfg, configMap: {name: cfg}}
  - {name: sec, secret: {secretName: sec}}
  - name: meta
    downwardAPI:
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}"#,
    ));
    c.k(&["wait", "--for=condition=Ready", "pod/live", "--timeout=60s"]);
    let read = |c: &Cluster| {
        c.k(&[
            "exec",
            "live",
            "--",
            "sh",
            "-c",
            "cat /cfg/greeting; echo; cat /sec/pw; echo; cat /etc/greeting; echo; cat /meta/labels",
        ])
    };
    assert_eq!(read(&c).trim(), "hello\ns3cret\nhello");
    c.k(&[
        "patch",
        "configmap",
        "cfg",
        "-p",
        r#"{"data":{"greeting":"bonjour"}}"#,
    ]);
    c.k(&[
        "patch",
        "secret",
        "sec",
        "-p",
        r#"{"stringData":{"pw":"n3w"}}"#,
    ]);
    c.k(&["label", "pod", "live", "tier=web"]);
    let want = "bonjour\nn3w\nhello\ntier=\"web\"";
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut seen = read(&c);
    while seen.trim() != want && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        seen = read(&c);
    }
    assert_eq!(seen.trim(), want, "volumes after the updates\n{}", c.log());
    c.k(&["delete", "pod", "live", "--grace-period=1"]);

    // A command the image does not have: the runtime cannot start it, reported
    // as upstream does (StartError, exit code 128, the runtime's message).
    c.apply(&pod(
        "no-such-command",
        "busybox",
        "    command: [\"nope-not-here\"]",
        "",
    ));
    let t = terminated(&c, "no-such-command");
    assert_eq!(t["reason"], "StartError", "{t}");
    assert_eq!(t["exitCode"], 128, "{t}");
    let message = t["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(r#"exec: "nope-not-here": executable file not found in $PATH"#),
        "{t}"
    );

    // runAsNonRoot with an image that runs as root.
    c.apply(&pod(
        "nonroot",
        "busybox",
        "    command: [\"true\"]\n    securityContext:\n      runAsNonRoot: true",
        "",
    ));
    let w = waiting(&c, "nonroot", &["CreateContainerConfigError"]);
    assert_eq!(
        w["message"],
        "container has runAsNonRoot and image will run as root (pod: \"nonroot\", container: c)"
    );

    // A pull that hangs (a registry that accepts and never answers) does not hold
    // up the pod's deletion: the store's read timeout is 30 s.
    let silent = c
        .netns
        .command("python3")
        .args([
            "-c",
            "import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('127.0.0.1', 5001))\ns.listen(16)\nheld = []\nwhile True:\n    held.append(s.accept()[0])",
        ])
        .spawn()
        .expect("start a registry that never answers");
    let silent = Background(silent);
    c.apply(&pod(
        "hanging-pull",
        "127.0.0.1:5001/silent:1",
        "    command: [\"true\"]",
        "",
    ));
    let pulling = eventually(Duration::from_secs(20), || {
        let events = c.k(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=hanging-pull,reason=Pulling",
            "-o",
            "name",
        ]);
        (!events.trim().is_empty()).then_some(events)
    });
    assert!(!pulling.is_empty());
    let began = std::time::Instant::now();
    c.k(&["delete", "pod", "hanging-pull", "--timeout=60s"]);
    let took = began.elapsed();
    drop(silent);
    assert!(
        took < Duration::from_secs(10),
        "deleting a pod whose image pull hangs took {took:?}"
    );

    // Isolation: the node's files and processes are out of reach.
    c.apply(&pod(
        "iso",
        "busybox",
        "    command: [\"sleep\", \"3600\"]",
        "",
    ));
    c.k(&["wait", "--for=condition=Ready", "pod/iso", "--timeout=60s"]);
    let data = c.data_dir();
    let probe = format!(
        "ls {d} 2>&1; cat {d}/admin.token 2>&1; ls /proc | grep -c '^[0-9]'; cat /proc/1/cmdline | tr '\\0' ' '",
        d = data.display()
    );
    let out = c.kubectl(&["exec", "iso", "--", "sh", "-c", &probe]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let token = c.token();
    assert!(!text.contains(&token), "the admin token leaked: {text}");
    assert!(text.contains("No such file or directory"), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    let procs: usize = lines[lines.len() - 2].trim().parse().unwrap_or(usize::MAX);
    assert!(procs <= 4, "the pod sees {procs} processes: {text}");
    assert!(lines[lines.len() - 1].starts_with("sleep 3600"), "{text}");
    // Another pod's root filesystem is not there either.
    let other = c.kubectl(&["exec", "iso", "--", "sh", "-c", "ls /www 2>&1"]);
    assert!(
        !other.status.success(),
        "httpd's files are visible from another pod"
    );

    // An agent killed and restarted adopts the running image container.
    let started = |c: &Cluster| {
        pod_json(c, "iso")["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
            .clone()
    };
    let before = started(&c);
    c.stop(true);
    c.spawn(&[]);
    std::thread::sleep(Duration::from_secs(2));
    c.k(&["wait", "--for=condition=Ready", "pod/iso", "--timeout=60s"]);
    assert_eq!(
        started(&c),
        before,
        "the container was restarted, not adopted"
    );
    let out = c.kubectl(&["exec", "iso", "--", "cat", "/proc/1/cmdline"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("sleep"),
        "exec after adoption: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A memory limit is enforced, and its kill is reported as such.
    c.apply(&pod(
        "oom",
        "busybox",
        "    command: [\"sh\", \"-c\", \"head -c 200m /dev/zero | tail\"]\n    resources:\n      limits:\n        memory: 20Mi",
        "",
    ));
    let t = terminated(&c, "oom");
    assert_eq!(
        t["reason"],
        "OOMKilled",
        "{t}\n{}",
        c.log()
            .lines()
            .filter(|l| l.contains("oom"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(t["exitCode"], 137);

    // Pull failures wait with upstream's reasons.
    c.apply(&pod(
        "missing",
        &format!("{REGISTRY}/library/nope:1"),
        "",
        "",
    ));
    let w = waiting(&c, "missing", &["ErrImagePull", "ImagePullBackOff"]);
    assert!(
        w["message"].as_str().unwrap_or_default().contains("nope"),
        "{w}"
    );
    c.apply(&pod(
        "never",
        "not-pulled:1",
        "    imagePullPolicy: Never",
        "",
    ));
    let w = waiting(&c, "never", &["ErrImageNeverPull"]);
    assert_eq!(
        w["message"],
        "Container image \"not-pulled:1\" is not present with pull policy of Never"
    );

    // The store lists what was pulled.
    let out = Command::new(support::skiff_bin())
        .args(["images", "--data-dir"])
        .arg(&data)
        .stdin(Stdio::null())
        .output()
        .expect("skiff images");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("docker.io/library/httpd"), "{listing}");
}
