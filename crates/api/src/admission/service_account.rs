//! Upstream's `ServiceAccount` admission plugin, the pure part: a new pod runs
//! as `spec.serviceAccountName` (`default` unless named), and unless
//! automounting is turned off it gets the projected `kube-api-access-<random>`
//! volume (a bound token, the cluster CA, its namespace) mounted read-only at
//! [`TOKEN_MOUNT_PATH`] in every container, which is what client libraries'
//! in-cluster configuration reads. Looking the ServiceAccount up is the API
//! server's part (it needs the store).

use serde_json::{json, Value};

/// The account a pod runs as when it names none.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// Where in-cluster clients look for `token`, `ca.crt` and `namespace`.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The volume's name prefix; upstream adds 5 random characters.
pub const TOKEN_VOLUME_PREFIX: &str = "kube-api-access-";
/// The ConfigMap with the cluster CA that the root-ca-cert-publisher keeps in
/// every namespace.
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
/// Upstream's `WarnOnlyBoundTokenExpirationSeconds`: just over an hour, so the
/// server can tell these tokens from explicitly requested one-hour ones.
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
/// The annotation that marks a node's static-pod mirror.
const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Whether the plugin leaves this pod alone: a mirror pod's spec must stay as
/// the node wrote it (the kubelet deletes a mirror whose spec differs).
pub fn skips(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| a.contains_key(MIRROR_POD_ANNOTATION))
}

/// Sets `spec.serviceAccountName` to [`DEFAULT_SERVICE_ACCOUNT`] when empty
/// (taking the deprecated `spec.serviceAccount` if only that is given, as
/// upstream's v1 conversion does) and mirrors it into `spec.serviceAccount`.
/// Returns the account's name.
pub fn default_service_account_name(pod: &mut Value) -> String {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return DEFAULT_SERVICE_ACCOUNT.to_string();
    };
    let given = |k: &str| {
        spec.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let name = given("serviceAccountName")
        .or_else(|| given("serviceAccount"))
        .unwrap_or_else(|| DEFAULT_SERVICE_ACCOUNT.to_string());
    spec.insert("serviceAccountName".into(), json!(name));
    spec.insert("serviceAccount".into(), json!(name));
    name
}

/// Upstream's `shouldAutomount`: the pod's `automountServiceAccountToken`
/// decides if set, else the ServiceAccount's, else yes.
pub fn should_automount(pod: &Value, service_account: &Value) -> bool {
    pod.pointer("/spec/automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| {
            service_account
                .get("automountServiceAccountToken")
                .and_then(Value::as_bool)
        })
        .unwrap_or(true)
}

/// Upstream's `TokenVolumeSource`: a bound token, the CA, the namespace.
pub fn token_volume_source() -> Value {
    json!({
        "defaultMode": 0o644,
        "sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": TOKEN_EXPIRATION_SECONDS}},
            {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ],
    })
}

/// Upstream's `mountServiceAccountToken`: every init container and container
/// without a mount at [`TOKEN_MOUNT_PATH`] gets a read-only one of the token
/// volume; the volume is added (named `volume_name`) if any container needs it
/// and the pod has no `kube-api-access-*` volume yet (whose name is then reused).
pub fn mount_service_account_token(pod: &mut Value, volume_name: &str) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .find(|n| n.starts_with(TOKEN_VOLUME_PREFIX))
        .map(str::to_string);
    let name = existing.clone().unwrap_or_else(|| volume_name.to_string());
    let mount = json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in containers.iter_mut().filter_map(Value::as_object_mut) {
            let mounts = c
                .entry("volumeMounts")
                .or_insert_with(|| Value::Array(Vec::new()));
            if mounts.is_null() {
                *mounts = Value::Array(Vec::new());
            }
            let Some(mounts) = mounts.as_array_mut() else {
                continue;
            };
            // A mount of the user's own at the path wins, as upstream.
            let taken = mounts
                .iter()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH));
            if !taken {
                mounts.push(mount.clone());
                needed = true;
            }
        }
    }
    if needed && existing.is_none() {
        let volumes = spec
            .entry("volumes")
            .or_insert_with(|| Value::Array(Vec::new()));
        if volumes.is_null() {
            *volumes = Value::Array(Vec::new());
        }
        if let Some(v) = volumes.as_array_mut() {
            v.push(json!({"name": name, "projected": token_volume_source()}));
        }
    }
}

/// The message of upstream's 403 for a pod whose account is missing.
pub fn lookup_failed(namespace: &str, name: &str, why: &str) -> String {
    format!("error looking up service account {namespace}/{name}: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({"metadata": {"name": "p"}, "spec": {
            "initContainers": [{"name": "init", "image": "i"}],
            "containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i", "volumeMounts": null}],
        }})
    }

    #[test]
    fn defaults_the_account_and_mirrors_it() {
        let mut p = pod();
        assert_eq!(default_service_account_name(&mut p), "default");
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        assert_eq!(p["spec"]["serviceAccount"], "default");
        let mut named = json!({"spec": {"serviceAccountName": "robot"}});
        assert_eq!(default_service_account_name(&mut named), "robot");
        assert_eq!(named["spec"]["serviceAccount"], "robot");
        // Only the deprecated field: it names the account.
        let mut old = json!({"spec": {"serviceAccount": "legacy"}});
        assert_eq!(default_service_account_name(&mut old), "legacy");
        assert_eq!(old["spec"]["serviceAccountName"], "legacy");
    }

    #[test]
    fn mounts_the_token_volume_everywhere() {
        let mut p = pod();
        mount_service_account_token(&mut p, "kube-api-access-abcde");
        let vols = p["spec"]["volumes"].as_array().unwrap();
        assert_eq!(vols.len(), 1);
        assert_eq!(vols[0]["name"], "kube-api-access-abcde");
        let sources = &vols[0]["projected"]["sources"];
        assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(sources[0]["serviceAccountToken"]["path"], "token");
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(sources[1]["configMap"]["items"][0]["key"], "ca.crt");
        assert_eq!(
            sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
        assert_eq!(vols[0]["projected"]["defaultMode"], 420);
        let want = json!([{"name": "kube-api-access-abcde", "readOnly": true,
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]);
        assert_eq!(p["spec"]["initContainers"][0]["volumeMounts"], want);
        assert_eq!(p["spec"]["containers"][0]["volumeMounts"], want);
        assert_eq!(p["spec"]["containers"][1]["volumeMounts"], want);
        // Admitting again (an existing volume) adds nothing.
        let before = p.clone();
        mount_service_account_token(&mut p, "kube-api-access-zzzzz");
        assert_eq!(p, before);
    }

    #[test]
    fn an_existing_mount_at_the_path_is_kept() {
        let mut p = json!({"spec": {"containers": [
            {"name": "a", "volumeMounts": [{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]},
            {"name": "b"},
        ], "volumes": [{"name": "mine", "emptyDir": {}}]}});
        mount_service_account_token(&mut p, "kube-api-access-abcde");
        let a = p["spec"]["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0]["name"], "mine");
        assert_eq!(
            p["spec"]["containers"][1]["volumeMounts"][0]["name"],
            "kube-api-access-abcde"
        );
        assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 2);
        // Every container has its own: no volume at all.
        let mut all = json!({"spec": {"containers": [
            {"name": "a", "volumeMounts": [{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]},
        ]}});
        mount_service_account_token(&mut all, "kube-api-access-abcde");
        assert!(all["spec"].get("volumes").is_none());
    }

    #[test]
    fn automount_follows_the_pod_then_the_account() {
        let sa = json!({"metadata": {"name": "default"}});
        let off = json!({"automountServiceAccountToken": false});
        let on = json!({"automountServiceAccountToken": true});
        let p = json!({"spec": {}});
        let p_off = json!({"spec": {"automountServiceAccountToken": false}});
        let p_on = json!({"spec": {"automountServiceAccountToken": true}});
        assert!(should_automount(&p, &sa));
        assert!(!should_automount(&p, &off));
        assert!(should_automount(&p, &on));
        assert!(!should_automount(&p_off, &on));
        assert!(should_automount(&p_on, &off));
    }

    #[test]
    fn mirror_pods_are_left_alone() {
        assert!(skips(
            &json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}}})
        ));
        assert!(!skips(&json!({"metadata": {}})));
    }
}
