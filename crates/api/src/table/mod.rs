//! Server-side `meta.k8s.io/v1` Tables, the answer to
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` that `kubectl get` prints.
//!
//! Columns and cells follow upstream's printers
//! (`pkg/printers/internalversion/printers.go`, v1.33). Like the real API server,
//! every row carries all cells, `-o wide` ones included: kubectl hides the
//! `priority: 1` columns itself. Cells are what kubectl prints verbatim, so ages
//! are rendered here against the caller's `now`.
//!
//! Upstream prints the *defaulted internal* object. Objects reaching skiff's
//! printers are already defaulted, but where a field with a v1 default is absent
//! (a Service's `type`, a port's `protocol`, a workload's `replicas`) the printer
//! uses the default rather than a zero value, and a malformed object renders
//! `<unknown>`-style cells instead of failing.

mod apiregistration;
mod certificates;
mod core;
mod docs;
mod events;
mod network;
mod pod;
mod policy;
mod workloads;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

/// What each row's `object` holds (`?includeObject=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// `object` is `null`.
    None,
    /// A `meta.k8s.io/v1` `PartialObjectMetadata` with the object's whole metadata.
    #[default]
    Metadata,
    /// The object itself (kubectl asks for this for `--sort-by` and custom columns).
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query value; `""` is the default. Upstream
    /// answers anything else with 400 `unrecognized includeObject value: "<v>"`.
    pub fn parse(v: &str) -> Option<Self> {
        match v {
            "" | "Metadata" => Some(Self::Metadata),
            "None" => Some(Self::None),
            "Object" => Some(Self::Object),
            _ => None,
        }
    }
}

/// Builds the Table for `objects` of `group`/`kind` (the core group is `""`).
///
/// `list_meta` becomes the Table's `metadata` (`resourceVersion`, `continue`,
/// `remainingItemCount`); for a single-object GET upstream puts the object's
/// own `resourceVersion` there.
pub fn table(
    group: &str,
    kind: &str,
    objects: &[Value],
    now: DateTime<Utc>,
    include: IncludeObject,
    list_meta: Option<Value>,
) -> Value {
    build(group, kind, objects, now, include, list_meta, true)
}

/// As [`table`], with `columnDefinitions: null` like upstream's `noHeaders`
/// table option: a watch sends headers with its first event only.
pub fn table_without_headers(
    group: &str,
    kind: &str,
    objects: &[Value],
    now: DateTime<Utc>,
    include: IncludeObject,
    list_meta: Option<Value>,
) -> Value {
    build(group, kind, objects, now, include, list_meta, false)
}

/// The `columnDefinitions` array for `group`/`kind`.
pub fn column_definitions(group: &str, kind: &str) -> Value {
    if printer_for(group, kind).is_none() {
        if let Some(def) = crate::crd::registered::definition_by_kind(group, kind) {
            return crate::crd::printer::column_definitions(&def);
        }
    }
    let cols = printer_for(group, kind).map_or(DEFAULT_COLUMNS, |p| p.columns);
    Value::Array(cols.iter().map(Col::to_json).collect())
}

fn build(
    group: &str,
    kind: &str,
    objects: &[Value],
    now: DateTime<Utc>,
    include: IncludeObject,
    list_meta: Option<Value>,
    headers: bool,
) -> Value {
    let printer = printer_for(group, kind);
    // A custom resource prints its CRD's additionalPrinterColumns.
    let custom = printer
        .is_none()
        .then(|| crate::crd::registered::definition_by_kind(group, kind))
        .flatten();
    let ctx = Ctx { now };
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let row = match (printer, &custom) {
                (Some(p), _) => (p.row)(obj, &ctx),
                (None, Some(def)) => Row::new(crate::crd::printer::cells(def, obj, now)),
                (None, None) => default_row(obj),
            };
            let mut r = Map::new();
            r.insert("cells".into(), Value::Array(row.cells));
            if let Some(c) = row.conditions {
                r.insert("conditions".into(), c);
            }
            r.insert("object".into(), row_object(obj, include));
            Value::Object(r)
        })
        .collect();
    let columns = if headers {
        column_definitions(group, kind)
    } else {
        Value::Null
    };
    let metadata = match list_meta {
        Some(m @ Value::Object(_)) => m,
        _ => json!({}),
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

fn row_object(obj: &Value, include: IncludeObject) -> Value {
    match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Object => obj.clone(),
        IncludeObject::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
        }),
    }
}

/// Upstream `duration.HumanDuration`: about two significant figures, with
/// up to 2s of clock skew shown as `0s` and anything earlier as `<invalid>`.
pub fn human_duration(d: chrono::Duration) -> String {
    // Truncating towards zero, as Go's int(d.Seconds()) does.
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".to_string();
    } else if seconds < 0 {
        return "0s".to_string();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        }
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        }
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

// ---- printer plumbing ----

pub(crate) struct Ctx {
    pub(crate) now: DateTime<Utc>,
}

impl Ctx {
    /// Upstream `translateTimestampSince`: `<unknown>` for a missing or zero time.
    pub(crate) fn since(&self, t: Option<&Value>) -> String {
        match t.and_then(Value::as_str).and_then(parse_time) {
            Some(t) => human_duration(self.now - t),
            None => "<unknown>".to_string(),
        }
    }

    /// The Age cell: time since `metadata.creationTimestamp`.
    pub(crate) fn age(&self, obj: &Value) -> String {
        self.since(at(obj, &["metadata", "creationTimestamp"]))
    }
}

/// Parses an RFC 3339 `Time`/`MicroTime`; Go's zero time counts as absent.
pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(s).ok()?.with_timezone(&Utc);
    (t.timestamp() != ZERO_TIME_UNIX).then_some(t)
}

/// `0001-01-01T00:00:00Z`, what Go serializes for an unset time.
const ZERO_TIME_UNIX: i64 = -62_135_596_800;

pub(crate) struct Col {
    name: &'static str,
    ty: &'static str,
    format: &'static str,
    description: &'static str,
    priority: i32,
}

impl Col {
    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.ty,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// A column shown by plain `kubectl get`.
pub(crate) const fn col(name: &'static str, ty: &'static str, description: &'static str) -> Col {
    Col {
        name,
        ty,
        format: "",
        description,
        priority: 0,
    }
}

/// A column shown only with `-o wide`.
pub(crate) const fn wide(name: &'static str, ty: &'static str, description: &'static str) -> Col {
    Col {
        name,
        ty,
        format: "",
        description,
        priority: 1,
    }
}

/// The Name column: `format: name` makes kubectl print `kind/name` when asked.
pub(crate) const NAME: Col = Col {
    name: "Name",
    ty: "string",
    format: "name",
    description: docs::META_NAME,
    priority: 0,
};

pub(crate) const AGE: Col = col("Age", "string", docs::META_CREATION);
pub(crate) const CONTAINERS: Col = wide(
    "Containers",
    "string",
    "Names of each container in the template.",
);
pub(crate) const IMAGES: Col = wide(
    "Images",
    "string",
    "Images referenced by each container in the template.",
);

pub(crate) struct Row {
    pub(crate) cells: Vec<Value>,
    pub(crate) conditions: Option<Value>,
}

impl Row {
    pub(crate) fn new(cells: Vec<Value>) -> Self {
        Row {
            cells,
            conditions: None,
        }
    }
}

pub(crate) struct Printer {
    pub(crate) columns: &'static [Col],
    pub(crate) row: fn(&Value, &Ctx) -> Row,
}

fn printer_for(group: &str, kind: &str) -> Option<&'static Printer> {
    Some(match (group, kind) {
        ("", "Pod") => &pod::POD,
        ("", "Service") => &core::SERVICE,
        ("", "Endpoints") => &core::ENDPOINTS,
        ("", "Namespace") => &core::NAMESPACE,
        ("", "Node") => &core::NODE,
        ("", "ConfigMap") => &core::CONFIG_MAP,
        ("", "Secret") => &core::SECRET,
        ("", "ServiceAccount") => &core::SERVICE_ACCOUNT,
        ("", "ReplicationController") => &workloads::REPLICATION_CONTROLLER,
        ("", "Event") => &events::CORE_EVENT,
        ("events.k8s.io", "Event") => &events::EVENTS_EVENT,
        ("apps", "Deployment") => &workloads::DEPLOYMENT,
        ("apps", "ReplicaSet") => &workloads::REPLICA_SET,
        ("apps", "StatefulSet") => &workloads::STATEFUL_SET,
        ("apps", "DaemonSet") => &workloads::DAEMON_SET,
        ("apps", "ControllerRevision") => &workloads::CONTROLLER_REVISION,
        ("batch", "Job") => &workloads::JOB,
        ("batch", "CronJob") => &workloads::CRON_JOB,
        ("discovery.k8s.io", "EndpointSlice") => &network::ENDPOINT_SLICE,
        ("networking.k8s.io", "NetworkPolicy") => &network::NETWORK_POLICY,
        ("networking.k8s.io", "Ingress") => &network::INGRESS,
        ("networking.k8s.io", "IngressClass") => &network::INGRESS_CLASS,
        ("coordination.k8s.io", "Lease") => &network::LEASE,
        ("policy", "PodDisruptionBudget") => &policy::POD_DISRUPTION_BUDGET,
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            &certificates::CERTIFICATE_SIGNING_REQUEST
        }
        ("apiregistration.k8s.io", "APIService") => &apiregistration::API_SERVICE,
        _ => return None,
    })
}

/// apiserver's `DefaultTableConvertor`, for kinds without a printer.
const DEFAULT_COLUMNS: &[Col] = &[NAME, col("Created At", "date", docs::META_CREATION)];

fn default_row(obj: &Value) -> Row {
    let created = at(obj, &["metadata", "creationTimestamp"])
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| {
            t.with_timezone(&Utc)
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        })
        // Go formats an unset time as the zero time.
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string());
    Row::new(vec![name(obj).into(), created.into()])
}

// ---- JSON access helpers: absent or mistyped reads as Go's zero value ----

pub(crate) fn at<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

pub(crate) fn str_at<'v>(v: &'v Value, path: &[&str]) -> &'v str {
    at(v, path).and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn i64_at(v: &Value, path: &[&str]) -> i64 {
    at(v, path).and_then(Value::as_i64).unwrap_or(0)
}

pub(crate) fn arr_at<'v>(v: &'v Value, path: &[&str]) -> &'v [Value] {
    at(v, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

pub(crate) fn len_at(v: &Value, path: &[&str]) -> usize {
    match at(v, path) {
        Some(Value::Array(a)) => a.len(),
        Some(Value::Object(o)) => o.len(),
        _ => 0,
    }
}

pub(crate) fn name(obj: &Value) -> &str {
    str_at(obj, &["metadata", "name"])
}

/// Upstream `layoutContainerCells`: names and images, comma-joined.
pub(crate) fn layout_containers(containers: &[Value]) -> (String, String) {
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

/// `first/.../more` lists: the first three, then ` + N more...` (upstream
/// `listWithMoreString`), or `<unset>` when there is nothing.
pub(crate) fn list_with_more(items: &[String], max: usize) -> String {
    let shown = items.len().min(max);
    let mut s = items[..shown].join(",");
    if items.len() > max {
        s.push_str(&format!(" + {} more...", items.len() - max));
    } else if s.is_empty() {
        s = "<unset>".to_string();
    }
    s
}
