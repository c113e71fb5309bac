//! `kubectl explain` against skiff's OpenAPI v3 documents (issue 20): the machine's
//! real kubectl prints upstream's descriptions, types and nested fields, which it
//! can only do when the served documents carry upstream's schemas. The expected
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
    assert_contains_text(
        &ports,
        "The list of ports that are exposed by this service. More info: \
         https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies \
         ServicePort contains information on service's port.",
    );
    assert_contains_text(
        &ports,
        "port <integer> -required- The port that will be exposed by this service.",
    );
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
}
