//! The Event printer, shared by core/v1 and events.k8s.io/v1 Events: both are
//! stored as the same internal type upstream, so they print identically.

use serde_json::Value;

use super::{at, col, docs, i64_at, name, parse_time, str_at, wide, Col, Ctx, Printer, Row};

const COLUMNS: &[Col] = &[
    col("Last Seen", "string", docs::EVENT_LAST),
    col("Type", "string", docs::EVENT_TYPE),
    col("Reason", "string", docs::EVENT_REASON),
    col("Object", "string", docs::EVENT_INVOLVED),
    wide("Subobject", "string", docs::OBJREF_FIELD_PATH),
    wide("Source", "string", docs::EVENT_SOURCE),
    col("Message", "string", docs::EVENT_MESSAGE),
    wide("First Seen", "string", docs::EVENT_FIRST),
    wide("Count", "string", docs::EVENT_COUNT),
    Col {
        name: "Name",
        ty: "string",
        format: "name",
        description: docs::META_NAME,
        priority: 1,
    },
];

pub(crate) const CORE_EVENT: Printer = Printer {
    columns: COLUMNS,
    row: core_event_row,
};

pub(crate) const EVENTS_EVENT: Printer = Printer {
    columns: COLUMNS,
    row: events_event_row,
};

/// Where each internal Event field lives in one API version's JSON.
struct Fields {
    involved: &'static str,
    first: &'static str,
    last: &'static str,
    count: &'static str,
    message: &'static str,
    source: &'static str,
    reporting_controller: &'static str,
}

const CORE: Fields = Fields {
    involved: "involvedObject",
    first: "firstTimestamp",
    last: "lastTimestamp",
    count: "count",
    message: "message",
    source: "source",
    reporting_controller: "reportingComponent",
};

const EVENTS_V1: Fields = Fields {
    involved: "regarding",
    first: "deprecatedFirstTimestamp",
    last: "deprecatedLastTimestamp",
    count: "deprecatedCount",
    message: "note",
    source: "deprecatedSource",
    reporting_controller: "reportingController",
};

fn core_event_row(ev: &Value, ctx: &Ctx) -> Row {
    event_row(ev, ctx, &CORE)
}

fn events_event_row(ev: &Value, ctx: &Ctx) -> Row {
    event_row(ev, ctx, &EVENTS_V1)
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() {
        b
    } else {
        a
    }
}

fn event_row(ev: &Value, ctx: &Ctx, f: &Fields) -> Row {
    let stamp = |field: &str| {
        at(ev, &[field])
            .and_then(Value::as_str)
            .and_then(parse_time)
    };
    let first_seen = match stamp(f.first) {
        Some(t) => super::human_duration(ctx.now - t),
        None => ctx.since(at(ev, &["eventTime"])),
    };
    let mut last_seen = match stamp(f.last) {
        Some(t) => super::human_duration(ctx.now - t),
        None => first_seen.clone(),
    };
    let mut count = i64_at(ev, &[f.count]);
    if let Some(series) = at(ev, &["series"]).filter(|s| s.is_object()) {
        last_seen = ctx.since(at(series, &["lastObservedTime"]));
        count = i64_at(series, &["count"]);
    } else if count == 0 {
        // Singleton events of the new API carry no count.
        count = 1;
    }

    let kind = str_at(ev, &[f.involved, "kind"]).to_lowercase();
    let obj_name = str_at(ev, &[f.involved, "name"]);
    let target = if obj_name.is_empty() {
        kind
    } else {
        format!("{kind}/{obj_name}")
    };

    let component = first_non_empty(
        str_at(ev, &[f.source, "component"]),
        str_at(ev, &[f.reporting_controller]),
    );
    let instance = first_non_empty(
        str_at(ev, &[f.source, "host"]),
        str_at(ev, &["reportingInstance"]),
    );
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };

    Row::new(vec![
        last_seen.into(),
        str_at(ev, &["type"]).into(),
        str_at(ev, &["reason"]).into(),
        target.into(),
        str_at(ev, &[f.involved, "fieldPath"]).into(),
        source.into(),
        str_at(ev, &[f.message]).trim().into(),
        first_seen.into(),
        count.into(),
        name(ev).into(),
    ])
}
