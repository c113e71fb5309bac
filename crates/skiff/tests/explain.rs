//! `kubectl explain` against skiff's OpenAPI v3 and v2 documents (issue 20), and
//! client-side apply beside v2's schemas: the machine's real kubectl prints
//! upstream's descriptions, types and nested fields, which it can only do when the
//! served documents carry upstream's schemas. The expected
//! texts below are upstream's (Kubernetes 1.33 API field docs).

mod support;

use support::Cluster;

/// Words of `text`, so kubectl's wrapping and indentation do not matter.
fn words(text: &str) -> Vec<&str> {
    text.split_whitespace().collect()
}

/// Asserts `output` contains `expected` word for word.
fn assert_contains_text(output: &str, expected: &str) {
    let out = words(output).join(" ");
    let want = words(expected).join(" ");
    assert!(
        out.contains(&want),
        "expected upstream text\n  {want}\nin kubectl explain output:\n{output}"
    );
}

/// The lines of kubectl's `FIELDS:` section, trimmed of trailing space.
fn field_lines(output: &str) -> Vec<String> {
    output
        .lines()
        .skip_while(|l| !l.starts_with("FIELDS:"))
        .skip(1)
        .map(|l| l.trim_end().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Upstream's description of `Service.spec.ports` (its field's, then its type's).
const SERVICE_PORTS_TEXT: &str = "The list of ports that are exposed by this service. More \
     info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies \
     ServicePort contains information on service's port.";
/// Upstream's line for `ServicePort.port` in an explain listing.
const SERVICE_PORT_TEXT: &str =
    "port <integer> -required- The port that will be exposed by this service.";

/// `kubectl explain FIELD` from the OpenAPI v2 document.
fn explain_v2(c: &Cluster, field: &str) -> String {
    c.k(&["explain", field, "--output", "plaintext-openapiv2"])
}

#[test]
fn explain_prints_upstream_descriptions() {
    let c = Cluster::start();

    let ports = c.k(&["explain", "svc.spec.ports"]);
    assert!(ports.contains("KIND:       Service"), "{ports}");
    assert!(ports.contains("VERSION:    v1"), "{ports}");
    assert!(
        ports.contains("FIELD: ports <[]ServicePort>"),
        "type of ports: {ports}"
    );
    assert_contains_text(&ports, SERVICE_PORTS_TEXT);
    assert_contains_text(&ports, SERVICE_PORT_TEXT);
    assert_contains_text(
        &ports,
        "protocol <string> The IP protocol for this port. Supports \"TCP\", \"UDP\", and \
         \"SCTP\". Default is TCP.",
    );
    assert!(ports.contains("targetPort\t<IntOrString>"), "{ports}");

    let strategy = c.k(&["explain", "deployment.spec.strategy"]);
    assert!(strategy.contains("GROUP:      apps"), "{strategy}");
    assert!(
        strategy.contains("FIELD: strategy <DeploymentStrategy>"),
        "{strategy}"
    );
    assert_contains_text(
        &strategy,
        "The deployment strategy to use to replace existing pods with new ones. \
         DeploymentStrategy describes how to replace existing pods with new ones.",
    );
    assert_contains_text(
        &strategy,
        "rollingUpdate <RollingUpdateDeployment> Rolling update config params. Present \
         only if DeploymentStrategyType = RollingUpdate.",
    );
    assert_contains_text(
        &strategy,
        "type <string> Type of deployment. Can be \"Recreate\" or \"RollingUpdate\". \
         Default is RollingUpdate.",
    );

    let resources = c.k(&["explain", "pod.spec.containers.resources", "--recursive"]);
    assert_contains_text(
        &resources,
        "Compute Resources required by this container. Cannot be updated. More info: \
         https://kubernetes.io/docs/concepts/configuration/manage-resources-containers/ \
         ResourceRequirements describes the compute resource requirements.",
    );
    assert_eq!(
        field_lines(&resources),
        [
            "  claims\t<[]ResourceClaim>",
            "    name\t<string> -required-",
            "    request\t<string>",
            "  limits\t<map[string]Quantity>",
            "  requests\t<map[string]Quantity>",
        ],
        "{resources}"
    );

    // Cluster-scoped kinds of other groups are found too.
    let rules = c.k(&["explain", "clusterrole.rules.verbs"]);
    assert_contains_text(
        &rules,
        "Verbs is a list of Verbs that apply to ALL the ResourceKinds contained in this \
         rule. '*' represents all verbs.",
    );
}

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names: {plural: crontabs, singular: crontab, kind: CronTab}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        description: A CronTab runs a command on a schedule.
        properties:
          spec:
            type: object
            properties:
              cronSpec:
                type: string
                description: When to run, in cron syntax.
              replicas:
                type: integer
"#;

#[test]
fn explain_custom_resource_from_its_schema() {
    let c = Cluster::start();
    c.apply(CRD);
    c.k(&[
        "wait",
        "--for=condition=Established",
        "crd/crontabs.stable.example.com",
        "--timeout=30s",
    ]);
    let out = c.k(&["explain", "crontab"]);
    assert!(out.contains("GROUP:      stable.example.com"), "{out}");
    assert_contains_text(&out, "DESCRIPTION: A CronTab runs a command on a schedule.");
    assert_contains_text(&out, "metadata <ObjectMeta>");
    let spec = c.k(&["explain", "crontab.spec.cronSpec"]);
    assert_contains_text(
        &spec,
        "FIELD: cronSpec <string> DESCRIPTION: When to run, in cron syntax.",
    );
    // The v2 document describes it too, from the same schema.
    let v2 = explain_v2(&c, "crontab.spec.cronSpec");
    assert_contains_text(
        &v2,
        "FIELD: cronSpec <string> DESCRIPTION: When to run, in cron syntax.",
    );
}

#[test]
fn explain_from_openapi_v2() {
    let c = Cluster::start();
    let ports = explain_v2(&c, "svc.spec.ports");
    assert!(ports.contains("KIND:     Service"), "{ports}");
    assert_contains_text(&ports, "RESOURCE: ports <[]Object>");
    assert_contains_text(&ports, SERVICE_PORTS_TEXT);
    assert_contains_text(&ports, SERVICE_PORT_TEXT);
    let strategy = explain_v2(&c, "deployment.spec.strategy.type");
    assert!(strategy.contains("VERSION:  apps/v1"), "{strategy}");
    assert_contains_text(
        &strategy,
        "Type of deployment. Can be \"Recreate\" or \"RollingUpdate\". Default is \
         RollingUpdate.",
    );
}

const WEB_V1: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 0
  selector: {matchLabels: {app: web}}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1}
  template:
    metadata: {labels: {app: web}}
    spec:
      volumes:
      - name: data
        emptyDir: {}
      containers:
      - name: app
        image: nginx
        ports:
        - {name: http, containerPort: 80}
        - {name: metrics, containerPort: 9090}
        env:
        - {name: A, value: "1"}
        - {name: B, value: "2"}
        volumeMounts:
        - {name: data, mountPath: /data}
"#;

const WEB_V2: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 0
  selector: {matchLabels: {app: web}}
  strategy:
    type: Recreate
  template:
    metadata: {labels: {app: web}}
    spec:
      volumes:
      - name: data
        configMap: {name: web-data}
      containers:
      - name: app
        image: nginx
        ports:
        - {name: http, containerPort: 80}
        env:
        - {name: A, value: "1"}
        volumeMounts:
        - {name: data, mountPath: /data}
      - name: sidecar
        image: busybox
"#;

/// With schemas in v2, kubectl's client-side apply still merges lists by key: v2's
/// PATCH operations do not offer strategic merge patch, so kubectl computes its
/// patch from its compiled-in types (as it does for v3), not from the definitions.
/// What another client added survives a re-apply, what the manifest dropped goes,
/// and retainKeys clears a replaced strategy and volume source.
#[test]
fn client_side_apply_still_merges_by_key_with_v2_schemas() {
    let c = Cluster::start();
    let out = c.kubectl_in(&["apply", "-f", "-"], WEB_V1);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.k(&["set", "env", "deployment/web", "-c", "app", "C=3"]);
    let out = c.kubectl_in(&["apply", "-f", "-"], WEB_V2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");

    let get = |path: &str| {
        c.k(&[
            "get",
            "deployment",
            "web",
            "-o",
            &format!("jsonpath={path}"),
        ])
    };
    let spec = ".spec.template.spec";
    assert_eq!(
        get(&format!("{{{spec}.containers[*].name}}")),
        "app sidecar"
    );
    // B was the manifest's and is gone; C was `kubectl set env`'s and stays.
    assert_eq!(
        get(&format!(
            "{{range {spec}.containers[0].env[*]}}{{.name}}={{.value}} {{end}}"
        )),
        "A=1 C=3 "
    );
    assert_eq!(
        get(&format!("{{{spec}.containers[0].ports[*].containerPort}}")),
        "80"
    );
    assert_eq!(
        get(&format!("{{{spec}.volumes[0].configMap.name}}")),
        "web-data"
    );
    assert_eq!(get(&format!("{{{spec}.volumes[0].emptyDir}}")), "");
    assert_eq!(get("{.spec.strategy.type}"), "Recreate");
    assert_eq!(get("{.spec.strategy.rollingUpdate}"), "");
}
