//! Namespaces: `Active` on creation, the `kubernetes` finalizer; table NAME STATUS AGE.

use serde_json::{json, Value};

use super::{default_at, no_validation, str_at, ResourceType};
use crate::api::table::{col, Column};

/// The Namespace kind.
pub static TYPE: ResourceType = ResourceType {
    group: "",
    version: "v1",
    plural: "namespaces",
    singular: "namespace",
    kind: "Namespace",
    namespaced: false,
    short_names: &["ns"],
    categories: &[],
    columns,
    cells,
    name_age: true,
    wide: 0,
    defaults,
    validate: no_validation,
};

fn columns() -> Vec<Column> {
    vec![
        col("Name", "string", 0),
        col("Status", "string", 0),
        col("Age", "string", 0),
    ]
}

fn cells(obj: &Value) -> Vec<Value> {
    vec![json!(str_at(obj, "/status/phase"))]
}

fn defaults(obj: &mut Value) {
    default_at(obj, &["spec", "finalizers"], json!(["kubernetes"]));
    default_at(obj, &["status", "phase"], json!("Active"));
    // Like the real API: every namespace carries its own name as a label.
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    default_at(
        obj,
        &["metadata", "labels", "kubernetes.io/metadata.name"],
        json!(name),
    );
}
