//! ReplicaSets (apps/v1): table NAME DESIRED CURRENT READY AGE, wide CONTAINERS IMAGES SELECTOR.

use serde_json::{json, Value};

use super::{
    containers_and_images, default_at, default_pod_spec, int_at, selector_text, FieldError,
    ResourceType,
};
use crate::api::table::{col, Column};

/// The ReplicaSet kind.
pub static TYPE: ResourceType = ResourceType {
    group: "apps",
    version: "v1",
    plural: "replicasets",
    singular: "replicaset",
    kind: "ReplicaSet",
    namespaced: true,
    short_names: &["rs"],
    categories: &["all"],
    columns,
    cells,
    name_age: true,
    wide: 3,
    defaults,
    validate,
};

fn columns() -> Vec<Column> {
    vec![
        col("Name", "string", 0),
        col("Desired", "integer", 0),
        col("Current", "integer", 0),
        col("Ready", "integer", 0),
        col("Age", "string", 0),
        col("Containers", "string", 1),
        col("Images", "string", 1),
        col("Selector", "string", 1),
    ]
}

fn cells(obj: &Value) -> Vec<Value> {
    let (containers, images) = containers_and_images(obj.pointer("/spec/template/spec"));
    vec![
        json!(int_at(obj, "/spec/replicas")),
        json!(int_at(obj, "/status/replicas")),
        json!(int_at(obj, "/status/readyReplicas")),
        json!(containers),
        json!(images),
        json!(selector_text(obj.pointer("/spec/selector"))),
    ]
}

fn defaults(obj: &mut Value) {
    default_at(obj, &["spec", "replicas"], json!(1));
    if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
        default_pod_spec(spec);
    }
    default_at(obj, &["status", "replicas"], json!(0));
}

fn validate(obj: &Value) -> Vec<FieldError> {
    super::deployments::validate_selector(obj)
}
