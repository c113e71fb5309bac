//! Objects in upstream's canonical encoding, which clients that compare bytes (or
//! print objects) see: fields in the order upstream's Go structs declare them
//! (`kind`, `apiVersion`, `metadata`, `spec`, `status`; ObjectMeta's fields in
//! ObjectMeta's order) and resource quantities in `resource.Quantity`'s canonical
//! form ("1000m" is "1", "0.5" is "500m", "1024Mi" is "1Gi").

use serde_json::{Map, Value};

/// ObjectMeta's fields in the order upstream serialises them.
const OBJECT_META_ORDER: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Moves `first` keys (those present) to the front in that order, keeps the others
/// in their order, and moves `last` keys to the end.
fn reorder(map: &mut Map<String, Value>, first: &[&str], last: &[&str]) {
    let already = first
        .iter()
        .filter(|k| map.contains_key(**k))
        .zip(map.keys())
        .all(|(want, have)| *want == have);
    let tail_ok = last.iter().all(|k| !map.contains_key(*k))
        || map
            .keys()
            .rev()
            .zip(last.iter().rev().filter(|k| map.contains_key(**k)))
            .all(|(have, want)| have == want);
    if already && tail_ok {
        return;
    }
    let mut old = std::mem::take(map);
    for k in first {
        if let Some(v) = old.shift_remove(*k) {
            map.insert((*k).to_string(), v);
        }
    }
    let mut trailing = Vec::new();
    for k in last {
        if let Some(v) = old.shift_remove(*k) {
            trailing.push(((*k).to_string(), v));
        }
    }
    map.extend(old);
    map.extend(trailing);
}

/// Puts an object's fields in upstream's order: `kind`, `apiVersion`, `metadata`,
/// `spec` first, `status` last, everything else between in its own order; the
/// metadata's fields in ObjectMeta's order.
pub fn order_fields(obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else {
        return;
    };
    reorder(o, &["kind", "apiVersion", "metadata", "spec"], &["status"]);
    if let Some(Value::Object(meta)) = o.get_mut("metadata") {
        reorder(meta, OBJECT_META_ORDER, &[]);
    }
}

/// Sets `metadata.resourceVersion` in its place among ObjectMeta's fields (after
/// `uid`), so an object in upstream's order stays in it.
pub fn set_resource_version(meta: &mut Map<String, Value>, revision: String) {
    if let Some(v) = meta.get_mut("resourceVersion") {
        *v = Value::String(revision);
        return;
    }
    let at = meta
        .keys()
        .position(|k| {
            OBJECT_META_ORDER
                .iter()
                .position(|o| o == k)
                .is_none_or(|i| i > 5)
        })
        .unwrap_or(meta.len());
    meta.shift_insert(at, "resourceVersion".into(), Value::String(revision));
}

/// Fields of built-in kinds that are `metav1.Time`, which upstream encodes in RFC
/// 3339 at second precision (`MicroTime` fields such as a Lease's `renewTime` or
/// an Event's `eventTime` keep their microseconds and are not listed).
const TIME_FIELDS: &[&str] = &[
    "creationTimestamp",
    "deletionTimestamp",
    "lastTransitionTime",
    "lastProbeTime",
    "lastHeartbeatTime",
    "lastUpdateTime",
    "startTime",
    "startedAt",
    "finishedAt",
    "completionTime",
    "lastScheduleTime",
    "lastSuccessfulTime",
    "firstTimestamp",
    "lastTimestamp",
    "deprecatedFirstTimestamp",
    "deprecatedLastTimestamp",
    "expirationTimestamp",
    "time",
];

/// `2026-01-02T03:04:05.123456789Z` as `2026-01-02T03:04:05Z`; other strings unchanged.
fn second_precision(s: &str) -> Option<String> {
    let (head, rest) = s.split_at_checked(19)?;
    let fraction = rest.strip_prefix('.')?;
    let digits = fraction.find(|c: char| !c.is_ascii_digit())?;
    let zone = &fraction[digits..];
    let plausible = head.as_bytes().get(10) == Some(&b'T') && digits > 0;
    (plausible && (zone == "Z" || zone.starts_with(['+', '-']))).then(|| format!("{head}{zone}"))
}

/// Writes a built-in object's `metav1.Time` fields at second precision, as upstream
/// encodes them, wherever they are in the object (conditions, container states,
/// managedFields). Custom resources are left alone: their fields are theirs.
pub fn canonical_times(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if let Value::String(s) = v {
                    if TIME_FIELDS.contains(&k.as_str()) {
                        if let Some(t) = second_precision(s) {
                            *s = t;
                        }
                    }
                } else {
                    canonical_times(v);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(canonical_times),
        _ => {}
    }
}

/// Binary suffixes and their powers of two.
const BINARY: &[(&str, i32)] = &[
    ("Ki", 10),
    ("Mi", 20),
    ("Gi", 30),
    ("Ti", 40),
    ("Pi", 50),
    ("Ei", 60),
];
/// Decimal SI suffixes and their powers of ten.
const DECIMAL: &[(&str, i32)] = &[
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("", 0),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    BinarySi,
    DecimalSi,
    DecimalExponent,
}

/// A quantity as an exact decimal: `mantissa * 10^exponent`, and the format its
/// suffix chose.
struct Parsed {
    mantissa: i128,
    exponent: i32,
    format: Format,
}

fn parse(s: &str) -> Option<Parsed> {
    let (negative, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let number_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return None;
    }
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = format!("{whole}{fraction}");
    if digits.len() > 30 {
        return None;
    }
    let mut mantissa: i128 = digits.parse().ok()?;
    let mut exponent = -(fraction.len() as i32);
    let format = if let Some((_, p)) = BINARY.iter().find(|(s, _)| *s == suffix) {
        mantissa = mantissa.checked_mul(1i128.checked_shl(*p as u32)?)?;
        Format::BinarySi
    } else if let Some((_, e)) = DECIMAL.iter().find(|(s, _)| *s == suffix) {
        exponent += e;
        Format::DecimalSi
    } else if let Some(e) = suffix.strip_prefix(['e', 'E']) {
        exponent += e.parse::<i32>().ok().filter(|e| e.abs() <= 30)?;
        Format::DecimalExponent
    } else {
        return None;
    };
    if negative {
        mantissa = -mantissa;
    }
    Some(Parsed {
        mantissa,
        exponent,
        format,
    })
}

/// The quantity in upstream's canonical form, or `None` when it does not parse (or
/// is beyond what is kept exact here; validation reports it, not this).
pub fn canonical_quantity(s: &str) -> Option<String> {
    let Parsed {
        mut mantissa,
        mut exponent,
        mut format,
    } = parse(s)?;
    if mantissa == 0 {
        return Some("0".into());
    }
    // Upstream keeps nano precision, rounding up what is finer.
    while exponent < -9 {
        let rounded_up = mantissa % 10 != 0;
        mantissa = mantissa / 10 + i128::from(rounded_up) * mantissa.signum();
        exponent += 1;
    }
    // Strip trailing zeros into the exponent.
    while mantissa % 10 == 0 && exponent < 40 {
        mantissa /= 10;
        exponent += 1;
    }
    if format == Format::BinarySi {
        // Below 1Ki, or with a fraction, upstream prints decimal SI instead.
        let integral = exponent >= 0;
        let value = integral
            .then(|| 10i128.checked_pow(exponent as u32))
            .flatten()
            .and_then(|p| mantissa.checked_mul(p));
        match value {
            Some(v) if v.abs() >= 1024 => {
                let mut power = 0;
                let mut v = v;
                while power < 60 && v % 1024 == 0 {
                    v /= 1024;
                    power += 10;
                }
                let suffix = BINARY
                    .iter()
                    .find(|(_, p)| *p == power)
                    .map_or("", |(s, _)| s);
                return Some(format!("{v}{suffix}"));
            }
            _ => format = Format::DecimalSi,
        }
    }
    // Decimal: the exponent a multiple of three, the mantissa an integer.
    while exponent.rem_euclid(3) != 0 {
        mantissa = mantissa.checked_mul(10)?;
        exponent -= 1;
    }
    if format == Format::DecimalSi {
        // Upstream's largest suffix is E; beyond it, a bigger mantissa.
        while exponent > 18 {
            mantissa = mantissa.checked_mul(1000)?;
            exponent -= 3;
        }
        let suffix = DECIMAL.iter().find(|(_, e)| *e == exponent)?.0;
        Some(format!("{mantissa}{suffix}"))
    } else if exponent == 0 {
        Some(mantissa.to_string())
    } else {
        Some(format!("{mantissa}e{exponent}"))
    }
}

/// Rewrites every string value of a quantity map (`requests`, `limits`, ...) canonically.
fn canonical_map(v: Option<&mut Value>) {
    if let Some(Value::Object(m)) = v {
        for q in m.values_mut() {
            if let Some(c) = q.as_str().and_then(canonical_quantity) {
                *q = Value::String(c);
            }
        }
    }
}

fn canonical_pod_spec(spec: Option<&mut Value>) {
    let Some(spec) = spec else {
        return;
    };
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            for c in cs {
                if let Some(r) = c.get_mut("resources") {
                    canonical_map(r.get_mut("requests"));
                    canonical_map(r.get_mut("limits"));
                }
            }
        }
    }
    canonical_map(spec.get_mut("overhead"));
}

/// Writes the quantities of a kind's object in canonical form: containers'
/// requests and limits (in pods and pod templates) and nodes' capacity.
pub fn canonical_quantities(group: &str, kind: &str, obj: &mut Value) {
    match (group, kind) {
        ("", "Pod") => canonical_pod_spec(obj.get_mut("spec")),
        ("", "Node") => {
            if let Some(status) = obj.get_mut("status") {
                canonical_map(status.get_mut("capacity"));
                canonical_map(status.get_mut("allocatable"));
            }
        }
        ("batch", "CronJob") => {
            canonical_pod_spec(obj.pointer_mut("/spec/jobTemplate/spec/template/spec"))
        }
        ("", "ReplicationController")
        | ("", "PodTemplate")
        | ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
        | ("batch", "Job") => canonical_pod_spec(obj.pointer_mut("/spec/template/spec")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_as_upstream_prints_them() {
        for (given, want) in [
            ("1000m", "1"),
            ("1", "1"),
            ("0.5", "500m"),
            ("1.5", "1500m"),
            ("1500m", "1500m"),
            ("100m", "100m"),
            ("1000", "1k"),
            ("1200", "1200"),
            ("2000000", "2M"),
            ("1Gi", "1Gi"),
            ("1024Mi", "1Gi"),
            ("1000Mi", "1000Mi"),
            ("512Mi", "512Mi"),
            ("0.5Gi", "512Mi"),
            ("1Ki", "1Ki"),
            ("100Ki", "100Ki"),
            ("1e3", "1e3"),
            ("1.5e3", "1500"),
            ("0", "0"),
            ("0Mi", "0"),
            ("-1000m", "-1"),
            ("128974848", "128974848"),
            ("129e6", "129e6"),
            ("129M", "129M"),
            ("123Mi", "123Mi"),
            ("0.1n", "1n"),
            ("12345678n", "12345678n"),
        ] {
            assert_eq!(canonical_quantity(given).as_deref(), Some(want), "{given}");
        }
        for bad in ["", "abc", "1.2.3", "1Xi", "m", "--1"] {
            assert_eq!(canonical_quantity(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn object_fields_in_upstream_order() {
        let mut obj = json!({
            "status": {"phase": "Pending"},
            "spec": {"containers": []},
            "metadata": {
                "labels": {"a": "b"},
                "uid": "u",
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "name": "p",
                "resourceVersion": "7",
                "namespace": "default",
                "managedFields": [],
            },
            "apiVersion": "v1",
            "kind": "Pod",
        });
        order_fields(&mut obj);
        let keys: Vec<&str> = obj
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["kind", "apiVersion", "metadata", "spec", "status"]);
        let meta: Vec<&str> = obj["metadata"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            meta,
            [
                "name",
                "namespace",
                "uid",
                "resourceVersion",
                "creationTimestamp",
                "labels",
                "managedFields"
            ]
        );
        assert_eq!(
            serde_json::to_string(&obj).unwrap(),
            r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p","namespace":"default","uid":"u","resourceVersion":"7","creationTimestamp":"2026-01-01T00:00:00Z","labels":{"a":"b"},"managedFields":[]},"spec":{"containers":[]},"status":{"phase":"Pending"}}"#
        );
    }

    #[test]
    fn times_at_second_precision() {
        let mut pod = json!({"status": {"conditions": [
            {"type": "PodScheduled", "lastTransitionTime": "2026-12-07T07:07:34.485773256Z"},
            {"type": "Ready", "lastTransitionTime": "2026-12-07T07:07:34Z"}
        ]}, "metadata": {"managedFields": [{"time": "2026-12-07T07:07:34.5+01:00"}]},
        "spec": {"renewTime": "2026-12-07T07:07:34.485773Z", "time": "not a time"}});
        canonical_times(&mut pod);
        assert_eq!(
            pod["status"]["conditions"][0]["lastTransitionTime"],
            "2026-12-07T07:07:34Z"
        );
        assert_eq!(
            pod["status"]["conditions"][1]["lastTransitionTime"],
            "2026-12-07T07:07:34Z"
        );
        assert_eq!(
            pod["metadata"]["managedFields"][0]["time"],
            "2026-12-07T07:07:34+01:00"
        );
        assert_eq!(pod["spec"]["renewTime"], "2026-12-07T07:07:34.485773Z");
        assert_eq!(pod["spec"]["time"], "not a time");
    }

    #[test]
    fn resource_version_goes_after_uid() {
        let mut obj =
            json!({"metadata": {"name": "a", "uid": "u", "creationTimestamp": "t", "labels": {}}});
        let meta = obj["metadata"].as_object_mut().unwrap();
        set_resource_version(meta, "5".into());
        let keys: Vec<&str> = meta.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "name",
                "uid",
                "resourceVersion",
                "creationTimestamp",
                "labels"
            ]
        );
        set_resource_version(meta, "6".into());
        assert_eq!(meta["resourceVersion"], "6");
        assert_eq!(meta.len(), 5);
    }

    #[test]
    fn fields_without_spec_keep_their_order() {
        let mut cm = json!({"data": {"k": "v"}, "apiVersion": "v1", "immutable": false, "kind": "ConfigMap", "metadata": {"name": "c"}});
        order_fields(&mut cm);
        let keys: Vec<&str> = cm.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["kind", "apiVersion", "metadata", "data", "immutable"]
        );
    }

    #[test]
    fn pod_template_quantities_are_canonical() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "c", "resources": {"requests": {"cpu": "1000m", "memory": "1024Mi"}, "limits": {"cpu": "0.5"}}}
        ]}}}});
        canonical_quantities("apps", "Deployment", &mut d);
        let r = &d["spec"]["template"]["spec"]["containers"][0]["resources"];
        assert_eq!(r["requests"], json!({"cpu": "1", "memory": "1Gi"}));
        assert_eq!(r["limits"], json!({"cpu": "500m"}));
    }
}
