//! Pods: container defaults, `Pending` phase; table NAME READY STATUS RESTARTS AGE, wide IP NODE
//! NOMINATED NODE READINESS GATES.

use serde_json::{json, Value};

use super::{default_at, default_pod_spec, str_at, validate_pod_spec, FieldError, ResourceType};
use crate::api::table::{col, Column};

/// The Pod kind.
pub static TYPE: ResourceType = ResourceType {
    group: "",
    version: "v1",
    plural: "pods",
    singular: "pod",
    kind: "Pod",
    namespaced: true,
    short_names: &["po"],
    categories: &["all"],
    columns,
    cells,
    name_age: true,
    wide: 4,
    defaults,
    validate,
};

fn columns() -> Vec<Column> {
    vec![
        col("Name", "string", 0),
        col("Ready", "string", 0),
        col("Status", "string", 0),
        col("Restarts", "string", 0),
        col("Age", "string", 0),
        col("IP", "string", 1),
        col("Node", "string", 1),
        col("Nominated Node", "string", 1),
        col("Readiness Gates", "string", 1),
    ]
}

fn cells(obj: &Value) -> Vec<Value> {
    let total = obj
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(Vec::len)
        .unwrap_or(0);
    let statuses = obj
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ready = statuses
        .iter()
        .filter(|s| s.get("ready") == Some(&json!(true)))
        .count();
    let restarts: i64 = statuses
        .iter()
        .filter_map(|s| s.get("restartCount").and_then(Value::as_i64))
        .sum();
    // A waiting or terminated container's reason wins over the phase, like kubectl shows.
    let mut status = str_at(obj, "/status/phase").to_string();
    if let Some(r) = obj.pointer("/status/reason").and_then(Value::as_str) {
        status = r.to_string();
    }
    for s in &statuses {
        for state in ["waiting", "terminated"] {
            if let Some(r) = s
                .pointer(&format!("/state/{state}/reason"))
                .and_then(Value::as_str)
            {
                status = r.to_string();
            }
        }
    }
    if obj.pointer("/metadata/deletionTimestamp").is_some() {
        status = "Terminating".into();
    }
    let or_none = |s: &str| {
        if s.is_empty() {
            "<none>".to_string()
        } else {
            s.to_string()
        }
    };
    vec![
        json!(format!("{ready}/{total}")),
        json!(status),
        json!(restarts.to_string()),
        json!(or_none(str_at(obj, "/status/podIP"))),
        json!(or_none(str_at(obj, "/spec/nodeName"))),
        json!(or_none(str_at(obj, "/status/nominatedNodeName"))),
        json!("<none>"),
    ]
}

fn defaults(obj: &mut Value) {
    if let Some(spec) = obj.get_mut("spec") {
        default_pod_spec(spec);
    }
    default_at(obj, &["status", "phase"], json!("Pending"));
    default_at(obj, &["status", "qosClass"], json!("BestEffort"));
}

fn validate(obj: &Value) -> Vec<FieldError> {
    match obj.get("spec") {
        Some(spec) => validate_pod_spec(spec, "spec"),
        None => vec![FieldError::required("spec")],
    }
}
