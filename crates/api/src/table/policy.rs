//! policy/v1 printers (upstream `printPodDisruptionBudget`).

use serde_json::Value;

use super::{at, col, i64_at, name, Ctx, Printer, Row, AGE, NAME};

pub(crate) const POD_DISRUPTION_BUDGET: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Min Available",
            "string",
            "The minimum number of pods that must be available.",
        ),
        col(
            "Max Unavailable",
            "string",
            "The maximum number of pods that may be unavailable.",
        ),
        col(
            "Allowed Disruptions",
            "integer",
            "Calculated number of pods that may be disrupted at this time.",
        ),
        AGE,
    ],
    row: pdb_row,
};

/// An int-or-string as Go's `IntOrString.String()`; `N/A` when unset.
fn int_or_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => "N/A".to_string(),
    }
}

fn pdb_row(pdb: &Value, ctx: &Ctx) -> Row {
    Row::new(vec![
        name(pdb).into(),
        int_or_string(at(pdb, &["spec", "minAvailable"])).into(),
        int_or_string(at(pdb, &["spec", "maxUnavailable"])).into(),
        i64_at(pdb, &["status", "disruptionsAllowed"]).into(),
        ctx.age(pdb).into(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unset_bounds_print_na() {
        let ctx = Ctx {
            now: chrono::Utc::now(),
        };
        let row = pdb_row(
            &json!({"metadata": {"name": "web"}, "spec": {"minAvailable": "50%"},
                    "status": {"disruptionsAllowed": 2}}),
            &ctx,
        );
        assert_eq!(row.cells[1], json!("50%"));
        assert_eq!(row.cells[2], json!("N/A"));
        assert_eq!(row.cells[3], json!(2));
    }
}
