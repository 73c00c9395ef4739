//! Leases (coordination.k8s.io/v1): node heartbeats and leader election; table NAME HOLDER AGE.

use serde_json::{json, Value};

use super::{no_defaults, no_validation, str_at, ResourceType};
use crate::api::table::{col, Column};

/// The Lease kind.
pub static TYPE: ResourceType = ResourceType {
    group: "coordination.k8s.io",
    version: "v1",
    plural: "leases",
    singular: "lease",
    kind: "Lease",
    namespaced: true,
    short_names: &[],
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
        col("Holder", "string", 0),
        col("Age", "string", 0),
    ]
}

fn cells(obj: &Value) -> Vec<Value> {
    vec![json!(str_at(obj, "/spec/holderIdentity"))]
}
