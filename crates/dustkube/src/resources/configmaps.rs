//! ConfigMaps: table NAME DATA AGE (DATA counts `data` + `binaryData` keys).

use serde_json::{json, Value};

use super::{no_defaults, no_validation, ResourceType};
use crate::api::table::{col, Column};

/// The ConfigMap kind.
pub static TYPE: ResourceType = ResourceType {
    group: "",
    version: "v1",
    plural: "configmaps",
    singular: "configmap",
    kind: "ConfigMap",
    namespaced: true,
    short_names: &["cm"],
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
        col("Data", "integer", 0),
        col("Age", "string", 0),
    ]
}

/// Number of keys in `data` and `binaryData`.
pub fn data_count(obj: &Value) -> usize {
    ["data", "binaryData"]
        .iter()
        .filter_map(|f| obj.get(*f).and_then(Value::as_object))
        .map(|m| m.len())
        .sum()
}

fn cells(obj: &Value) -> Vec<Value> {
    vec![json!(data_count(obj))]
}
