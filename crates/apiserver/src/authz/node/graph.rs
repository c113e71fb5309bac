//! Which objects each node may reach, as upstream's Node authorizer graph
//! (`plugin/pkg/auth/authorizer/node/graph.go`) relates them:
//!
//! ```text
//! node <- pod <- secret, configmap, pvc, serviceaccount
//!             pvc <- pv <- secret
//! ```
//!
//! Instead of a general graph, the edges are kept as counts: for each object a
//! pod references, how many pods on each node reference it. A question ("may
//! node n read secret s?") is then one or two map lookups. A pod's references
//! are immutable once it is bound, so a pod is added when it has a node and
//! replaced only when its node or uid changes; a deleted pod takes its
//! references with it. References are recorded by name whether or not the
//! object exists, as upstream's vertices are.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

/// The annotation of a mirror pod (a static pod's API object): it grants its
/// node nothing besides the pod (upstream short-circuits it the same way).
pub const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The kinds of object a pod may reference (upstream's vertex types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Pod,
    Secret,
    ConfigMap,
    PersistentVolumeClaim,
    ServiceAccount,
}

/// One referenced object: its kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    fn new(kind: Kind, namespace: &str, name: &str) -> Self {
        Self {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

/// What a bound pod gives its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEdges {
    pub node: String,
    pub uid: String,
    /// The pod itself first, then everything it references (no duplicates).
    pub refs: BTreeSet<ObjectRef>,
}

fn str_at<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    v.pointer(path)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn array<'a>(v: &'a Value, path: &str) -> impl Iterator<Item = &'a Value> {
    v.pointer(path)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// The Secrets a volume names (upstream's `VisitPodSecretNames` over volumes:
/// secret volumes, projected secrets and every plugin's `secretRef`).
fn volume_secrets(vol: &Value) -> Vec<&str> {
    let mut out: Vec<&str> = [
        "/secret/secretName",
        "/azureFile/secretName",
        "/cephfs/secretRef/name",
        "/cinder/secretRef/name",
        "/flexVolume/secretRef/name",
        "/iscsi/secretRef/name",
        "/rbd/secretRef/name",
        "/scaleIO/secretRef/name",
        "/storageos/secretRef/name",
        "/csi/nodePublishSecretRef/name",
    ]
    .iter()
    .filter_map(|p| str_at(vol, p))
    .collect();
    out.extend(array(vol, "/projected/sources").filter_map(|s| str_at(s, "/secret/name")));
    out
}

/// The ConfigMaps a volume names (configMap volumes and projected ones).
fn volume_config_maps(vol: &Value) -> Vec<&str> {
    let mut out: Vec<&str> = str_at(vol, "/configMap/name").into_iter().collect();
    out.extend(array(vol, "/projected/sources").filter_map(|s| str_at(s, "/configMap/name")));
    out
}

/// The PVC a volume uses: named, or the one an ephemeral volume makes
/// (`<pod>-<volume>`, upstream's `ephemeral.VolumeClaimName`).
fn volume_claim(pod_name: &str, vol: &Value) -> Option<String> {
    if let Some(claim) = str_at(vol, "/persistentVolumeClaim/claimName") {
        return Some(claim.to_string());
    }
    if vol.get("ephemeral").is_some_and(Value::is_object) {
        let name = str_at(vol, "/name")?;
        return Some(format!("{pod_name}-{name}"));
    }
    None
}

/// The edges a pod gives its node; `None` until it is bound (no node yet).
pub fn pod_edges(pod: &Value) -> Option<PodEdges> {
    let node = str_at(pod, "/spec/nodeName")?;
    let ns = str_at(pod, "/metadata/namespace").unwrap_or("");
    let name = str_at(pod, "/metadata/name")?;
    let mut refs = BTreeSet::new();
    refs.insert(ObjectRef::new(Kind::Pod, ns, name));
    let edges = |refs| PodEdges {
        node: node.to_string(),
        uid: str_at(pod, "/metadata/uid").unwrap_or("").to_string(),
        refs,
    };
    let mirror = pod
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| a.contains_key(MIRROR_POD_ANNOTATION));
    if mirror {
        return Some(edges(refs));
    }
    let mut add = |kind, n: &str| {
        refs.insert(ObjectRef::new(kind, ns, n));
    };
    if let Some(sa) = str_at(pod, "/spec/serviceAccountName") {
        add(Kind::ServiceAccount, sa);
    }
    for s in array(pod, "/spec/imagePullSecrets").filter_map(|r| str_at(r, "/name")) {
        add(Kind::Secret, s);
    }
    let containers = [
        "/spec/containers",
        "/spec/initContainers",
        "/spec/ephemeralContainers",
    ]
    .into_iter()
    .flat_map(|p| array(pod, p));
    for c in containers {
        for from in array(c, "/envFrom") {
            if let Some(s) = str_at(from, "/secretRef/name") {
                add(Kind::Secret, s);
            }
            if let Some(m) = str_at(from, "/configMapRef/name") {
                add(Kind::ConfigMap, m);
            }
        }
        for env in array(c, "/env") {
            if let Some(s) = str_at(env, "/valueFrom/secretKeyRef/name") {
                add(Kind::Secret, s);
            }
            if let Some(m) = str_at(env, "/valueFrom/configMapKeyRef/name") {
                add(Kind::ConfigMap, m);
            }
        }
    }
    for vol in array(pod, "/spec/volumes") {
        for s in volume_secrets(vol) {
            add(Kind::Secret, s);
        }
        for m in volume_config_maps(vol) {
            add(Kind::ConfigMap, m);
        }
        if let Some(claim) = volume_claim(name, vol) {
            add(Kind::PersistentVolumeClaim, &claim);
        }
    }
    Some(edges(refs))
}

/// What a PersistentVolume relates: the claim bound to it and the Secrets its
/// plugin reads on the node (upstream's `VisitPVSecretNames`, kubelet-visible).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvEdges {
    pub claim: (String, String),
    pub secrets: BTreeSet<(String, String)>,
}

/// A PV's edges; `None` while it is bound to no claim (it grants nothing).
pub fn pv_edges(pv: &Value) -> Option<PvEdges> {
    let claim_ns = str_at(pv, "/spec/claimRef/namespace").unwrap_or("");
    let claim = str_at(pv, "/spec/claimRef/name")?;
    let mut secrets = BTreeSet::new();
    // Plugins whose secret is in a namespace of its own, else the claim's.
    for (name, ns) in [
        (
            "/spec/azureFile/secretName",
            "/spec/azureFile/secretNamespace",
        ),
        (
            "/spec/cephfs/secretRef/name",
            "/spec/cephfs/secretRef/namespace",
        ),
        (
            "/spec/cinder/secretRef/name",
            "/spec/cinder/secretRef/namespace",
        ),
        (
            "/spec/flexVolume/secretRef/name",
            "/spec/flexVolume/secretRef/namespace",
        ),
        ("/spec/rbd/secretRef/name", "/spec/rbd/secretRef/namespace"),
        (
            "/spec/scaleIO/secretRef/name",
            "/spec/scaleIO/secretRef/namespace",
        ),
        (
            "/spec/iscsi/secretRef/name",
            "/spec/iscsi/secretRef/namespace",
        ),
        (
            "/spec/storageos/secretRef/name",
            "/spec/storageos/secretRef/namespace",
        ),
        (
            "/spec/csi/nodePublishSecretRef/name",
            "/spec/csi/nodePublishSecretRef/namespace",
        ),
        (
            "/spec/csi/nodeStageSecretRef/name",
            "/spec/csi/nodeStageSecretRef/namespace",
        ),
        (
            "/spec/csi/nodeExpandSecretRef/name",
            "/spec/csi/nodeExpandSecretRef/namespace",
        ),
    ] {
        if let Some(s) = str_at(pv, name) {
            let ns = str_at(pv, ns).unwrap_or(claim_ns);
            secrets.insert((ns.to_string(), s.to_string()));
        }
    }
    Some(PvEdges {
        claim: (claim_ns.to_string(), claim.to_string()),
        secrets,
    })
}

type Key = (String, String);

/// The graph: bound pods and what they reference, counted per node.
#[derive(Debug, Default)]
pub struct Graph {
    pods: HashMap<Key, PodEdges>,
    /// For each referenced object, how many pods on each node reference it.
    nodes_of: HashMap<ObjectRef, HashMap<String, usize>>,
    pvs: HashMap<String, PvEdges>,
    pvs_by_claim: HashMap<Key, BTreeSet<String>>,
    pvs_by_secret: HashMap<Key, BTreeSet<String>>,
}

fn pod_key(pod: &Value) -> Option<Key> {
    Some((
        str_at(pod, "/metadata/namespace").unwrap_or("").to_string(),
        str_at(pod, "/metadata/name")?.to_string(),
    ))
}

impl Graph {
    /// Records a pod as the store has it now (added or updated). A pod whose
    /// node and uid are unchanged keeps its edges (they are immutable).
    pub fn put_pod(&mut self, pod: &Value) {
        let Some(key) = pod_key(pod) else {
            return;
        };
        let edges = pod_edges(pod);
        let same = match (&edges, self.pods.get(&key)) {
            (Some(new), Some(old)) => new.node == old.node && new.uid == old.uid,
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        self.remove_pod(&key.0, &key.1);
        if let Some(edges) = edges {
            for r in &edges.refs {
                *self
                    .nodes_of
                    .entry(r.clone())
                    .or_default()
                    .entry(edges.node.clone())
                    .or_default() += 1;
            }
            self.pods.insert(key, edges);
        }
    }

    /// Forgets a deleted pod and what only it referenced.
    pub fn remove_pod(&mut self, namespace: &str, name: &str) {
        let Some(old) = self.pods.remove(&(namespace.to_string(), name.to_string())) else {
            return;
        };
        for r in &old.refs {
            let Some(per_node) = self.nodes_of.get_mut(r) else {
                continue;
            };
            if let Some(n) = per_node.get_mut(&old.node) {
                *n -= 1;
                if *n == 0 {
                    per_node.remove(&old.node);
                }
            }
            if per_node.is_empty() {
                self.nodes_of.remove(r);
            }
        }
    }

    /// Records a PersistentVolume as the store has it now.
    pub fn put_pv(&mut self, pv: &Value) {
        let Some(name) = str_at(pv, "/metadata/name") else {
            return;
        };
        let name = name.to_string();
        self.remove_pv(&name);
        let Some(edges) = pv_edges(pv) else {
            return;
        };
        self.pvs_by_claim
            .entry(edges.claim.clone())
            .or_default()
            .insert(name.clone());
        for s in &edges.secrets {
            self.pvs_by_secret
                .entry(s.clone())
                .or_default()
                .insert(name.clone());
        }
        self.pvs.insert(name, edges);
    }

    pub fn remove_pv(&mut self, name: &str) {
        let Some(old) = self.pvs.remove(name) else {
            return;
        };
        let drop_from = |map: &mut HashMap<Key, BTreeSet<String>>, key: &Key| {
            if let Some(set) = map.get_mut(key) {
                set.remove(name);
                if set.is_empty() {
                    map.remove(key);
                }
            }
        };
        drop_from(&mut self.pvs_by_claim, &old.claim);
        for s in &old.secrets {
            drop_from(&mut self.pvs_by_secret, s);
        }
    }

    /// Whether a pod bound to `node` references the object (or is the pod).
    pub fn referenced(&self, node: &str, kind: Kind, namespace: &str, name: &str) -> bool {
        self.nodes_of
            .get(&ObjectRef::new(kind, namespace, name))
            .is_some_and(|per_node| per_node.contains_key(node))
    }

    /// Whether PersistentVolume `name` is bound to a claim a pod on `node` uses.
    pub fn pv_reachable(&self, node: &str, name: &str) -> bool {
        self.pvs.get(name).is_some_and(|pv| {
            self.referenced(node, Kind::PersistentVolumeClaim, &pv.claim.0, &pv.claim.1)
        })
    }

    /// Whether `node` may reach Secret `namespace/name`: a pod of its
    /// references it, or a PV bound to a claim of one of its pods does.
    pub fn secret_reachable(&self, node: &str, namespace: &str, name: &str) -> bool {
        self.referenced(node, Kind::Secret, namespace, name)
            || self
                .pvs_by_secret
                .get(&(namespace.to_string(), name.to_string()))
                .is_some_and(|pvs| pvs.iter().any(|pv| self.pv_reachable(node, pv)))
    }

    /// How many bound pods the graph holds (for logs and tests).
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: &str, spec: Value) -> Value {
        let mut spec = spec;
        if !node.is_empty() {
            spec["nodeName"] = json!(node);
        }
        json!({"metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")},
               "spec": spec})
    }

    fn full_spec() -> Value {
        json!({
            "serviceAccountName": "robot",
            "imagePullSecrets": [{"name": "pull"}],
            "containers": [{"name": "c",
                "envFrom": [{"secretRef": {"name": "env-s"}}, {"configMapRef": {"name": "env-cm"}}],
                "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "key-s", "key": "k"}}},
                        {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "key-cm", "key": "k"}}}]}],
            "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "init-s"}}]}],
            "ephemeralContainers": [{"name": "e", "envFrom": [{"configMapRef": {"name": "eph-cm"}}]}],
            "volumes": [
                {"name": "v1", "secret": {"secretName": "vol-s"}},
                {"name": "v2", "configMap": {"name": "vol-cm"}},
                {"name": "v3", "projected": {"sources": [
                    {"secret": {"name": "proj-s"}}, {"configMap": {"name": "kube-root-ca.crt"}},
                    {"serviceAccountToken": {"path": "token"}}]}},
                {"name": "v4", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                {"name": "v5", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "csi-s"}}}
            ]
        })
    }

    #[test]
    fn every_reference_of_a_bound_pod_is_an_edge() {
        let e = pod_edges(&pod("web", "n1", full_spec())).expect("bound");
        let names = |kind| -> Vec<&str> {
            e.refs
                .iter()
                .filter(|r| r.kind == kind)
                .map(|r| r.name.as_str())
                .collect()
        };
        assert_eq!(e.node, "n1");
        assert_eq!(names(Kind::Pod), ["web"]);
        assert_eq!(names(Kind::ServiceAccount), ["robot"]);
        assert_eq!(
            names(Kind::Secret),
            ["csi-s", "env-s", "init-s", "key-s", "proj-s", "pull", "vol-s"]
        );
        assert_eq!(
            names(Kind::ConfigMap),
            ["env-cm", "eph-cm", "key-cm", "kube-root-ca.crt", "vol-cm"]
        );
        assert_eq!(names(Kind::PersistentVolumeClaim), ["data", "web-scratch"]);
    }

    #[test]
    fn unbound_and_mirror_pods_grant_nothing_more() {
        assert_eq!(pod_edges(&pod("p", "", full_spec())), None);
        let mut mirror = pod("m", "n1", full_spec());
        mirror["metadata"]["annotations"] = json!({MIRROR_POD_ANNOTATION: "x"});
        let e = pod_edges(&mirror).expect("bound");
        assert_eq!(e.refs.len(), 1, "only the pod itself: {:?}", e.refs);
    }

    #[test]
    fn shared_references_last_until_their_last_pod_goes() {
        let mut g = Graph::default();
        let spec = json!({"volumes": [{"name": "v", "secret": {"secretName": "shared"}}]});
        g.put_pod(&pod("a", "n1", spec.clone()));
        g.put_pod(&pod("b", "n1", spec.clone()));
        g.put_pod(&pod("c", "n2", spec));
        assert!(g.secret_reachable("n1", "ns", "shared"));
        assert!(g.secret_reachable("n2", "ns", "shared"));
        g.remove_pod("ns", "a");
        assert!(g.secret_reachable("n1", "ns", "shared"));
        g.remove_pod("ns", "b");
        assert!(!g.secret_reachable("n1", "ns", "shared"));
        assert!(g.secret_reachable("n2", "ns", "shared"));
        g.remove_pod("ns", "c");
        assert!(g.nodes_of.is_empty() && g.pods.is_empty());
    }

    #[test]
    fn a_recreated_pod_on_another_node_moves_its_edges() {
        let mut g = Graph::default();
        let spec = json!({"serviceAccountName": "sa"});
        g.put_pod(&pod("p", "n1", spec.clone()));
        let mut moved = pod("p", "n2", spec);
        moved["metadata"]["uid"] = json!("other");
        g.put_pod(&moved);
        assert!(!g.referenced("n1", Kind::ServiceAccount, "ns", "sa"));
        assert!(g.referenced("n2", Kind::ServiceAccount, "ns", "sa"));
        assert_eq!(g.pod_count(), 1);
    }

    #[test]
    fn persistent_volumes_reach_through_their_claim() {
        let mut g = Graph::default();
        let spec =
            json!({"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]});
        g.put_pod(&pod("p", "n1", spec));
        let pv = json!({"metadata": {"name": "pv1"}, "spec": {
            "claimRef": {"namespace": "ns", "name": "data"},
            "csi": {"driver": "d", "nodePublishSecretRef": {"name": "pv-s", "namespace": "vault"}},
            "rbd": {"secretRef": {"name": "rbd-s"}}}});
        g.put_pv(&pv);
        assert!(g.pv_reachable("n1", "pv1"));
        assert!(!g.pv_reachable("n2", "pv1"));
        assert!(g.secret_reachable("n1", "vault", "pv-s"));
        assert!(g.secret_reachable("n1", "ns", "rbd-s"));
        assert!(!g.secret_reachable("n2", "vault", "pv-s"));
        g.remove_pv("pv1");
        assert!(!g.secret_reachable("n1", "vault", "pv-s"));
        assert!(!g.pv_reachable("n1", "pv1"));
    }
}
