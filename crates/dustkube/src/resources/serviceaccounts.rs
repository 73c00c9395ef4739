//! ServiceAccounts: table NAME SECRETS AGE (SECRETS counts `secrets`).

use serde_json::{json, Value};

use super::{no_defaults, no_validation, ResourceType};
use crate::api::table::{col, Column};

/// The ServiceAccount kind.
pub static TYPE: ResourceType = ResourceType {
    group: "",
    version: "v1",
    plural: "serviceaccounts",
    singular: "serviceaccount",
    kind: "ServiceAccount",
    namespaced: true,
    short_names: &["sa"],
    categories: &[],
    columns,
    cells,
    name_age: true,
    wide: 0,
    defaults: no_defaults,
    validate: no_validation,
};

fn columns() -> Vec<Column> {
    vec![
        col("Name", "string", 0),
        col("Secrets", "integer", 0),
        col("Age", "string", 0),
    ]
}

fn cells(obj: &Value) -> Vec<Value> {
    let n = obj
        .get("secrets")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    vec![json!(n)]
}
