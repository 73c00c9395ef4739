//! Deployments (apps/v1): replicas, strategy and template defaults, selector validation; table
//! NAME READY UP-TO-DATE AVAILABLE AGE, wide CONTAINERS IMAGES SELECTOR.

use serde_json::{json, Value};

use super::{
    containers_and_images, default_at, default_pod_spec, int_at, selector_text, FieldError,
    ResourceType,
};
use crate::api::table::{col, Column};

/// The Deployment kind.
pub static TYPE: ResourceType = ResourceType {
    group: "apps",
    version: "v1",
    plural: "deployments",
    singular: "deployment",
    kind: "Deployment",
    namespaced: true,
    short_names: &["deploy"],
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
        col("Ready", "string", 0),
        col("Up-to-date", "string", 0),
        col("Available", "string", 0),
        col("Age", "string", 0),
        col("Containers", "string", 1),
        col("Images", "string", 1),
        col("Selector", "string", 1),
    ]
}

fn cells(obj: &Value) -> Vec<Value> {
    let (containers, images) = containers_and_images(obj.pointer("/spec/template/spec"));
    vec![
        json!(format!(
            "{}/{}",
            int_at(obj, "/status/readyReplicas"),
            int_at(obj, "/spec/replicas")
        )),
        json!(int_at(obj, "/status/updatedReplicas")),
        json!(int_at(obj, "/status/availableReplicas")),
        json!(containers),
        json!(images),
        json!(selector_text(obj.pointer("/spec/selector"))),
    ]
}

fn defaults(obj: &mut Value) {
    default_at(obj, &["spec", "replicas"], json!(1));
    default_at(obj, &["spec", "revisionHistoryLimit"], json!(10));
    default_at(obj, &["spec", "progressDeadlineSeconds"], json!(600));
    default_at(
        obj,
        &["spec", "strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
    );
    if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
        default_pod_spec(spec);
    }
    default_at(obj, &["status"], json!({}));
}

/// Checks that the selector exists and matches the template's labels (shared with ReplicaSets).
pub fn validate_selector(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let sel = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object);
    let has_expr = obj.pointer("/spec/selector/matchExpressions").is_some();
    if sel.is_none() && !has_expr {
        errs.push(FieldError::required("spec.selector"));
        return errs;
    }
    let labels = obj.pointer("/spec/template/metadata/labels");
    if let Some(sel) = sel {
        for (k, v) in sel {
            if labels.and_then(|l| l.get(k)) != Some(v) {
                errs.push(FieldError::invalid(
                    "spec.template.metadata.labels",
                    &crate::api::selectors::labels_text(labels),
                    "`selector` does not match template `labels`",
                ));
                break;
            }
        }
    }
    errs
}

fn validate(obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_selector(obj);
    match obj.pointer("/spec/template/spec") {
        Some(spec) => errs.extend(super::validate_pod_spec(spec, "spec.template.spec")),
        None => errs.push(FieldError::required("spec.template.spec")),
    }
    if int_at(obj, "/spec/replicas") < 0 {
        errs.push(FieldError::invalid(
            "spec.replicas",
            &int_at(obj, "/spec/replicas").to_string(),
            "must be greater than or equal to 0",
        ));
    }
    errs
}
