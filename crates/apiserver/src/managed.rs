//! `metadata.managedFields` for ordinary (non-apply) writes, so server-side apply
//! knows who owns what.

use serde_json::Value;
use skiff_api::registry::Resource;
use skiff_patch::GroupKind;

pub fn record(resource: &Resource, old: Option<&Value>, new: &mut Value, manager: &str) {
    let gk = GroupKind {
        group: resource.group.to_string(),
        kind: resource.kind.to_string(),
    };
    let now = crate::strategy::now_rfc3339();
    *new = skiff_patch::apply::record_update(old, new, manager, &gk, &now);
}
