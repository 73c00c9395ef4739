//! Nodes: table NAME STATUS ROLES AGE VERSION, wide INTERNAL-IP EXTERNAL-IP OS-IMAGE KERNEL-VERSION CONTAINER-RUNTIME.

use serde_json::{json, Value};

use super::{no_defaults, no_validation, str_at, ResourceType};
use crate::api::table::{col, Column};

/// The Node kind.
pub static TYPE: ResourceType = ResourceType {
    group: "",
    version: "v1",
    plural: "nodes",
    singular: "node",
    kind: "Node",
    namespaced: false,
    short_names: &["no"],
    categories: &[],
    columns,
    cells,
    name_age: true,
    wide: 6,
    defaults: no_defaults,
    validate: no_validation,
};

fn columns() -> Vec<Column> {
    vec![
        col("Name", "string", 0),
        col("Status", "string", 0),
        col("Roles", "string", 0),
        col("Age", "string", 0),
        col("Version", "string", 0),
        col("Internal-IP", "string", 1),
        col("External-IP", "string", 1),
        col("OS-Image", "string", 1),
        col("Kernel-Version", "string", 1),
        col("Container-Runtime", "string", 1),
    ]
}

fn address(obj: &Value, kind: &str) -> String {
    obj.pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|x| x.get("type").and_then(Value::as_str) == Some(kind))
        })
        .and_then(|x| x.get("address").and_then(Value::as_str))
        .unwrap_or("<none>")
        .to_string()
}

fn cells(obj: &Value) -> Vec<Value> {
    let ready = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| {
            c.iter()
                .find(|x| x.get("type").and_then(Value::as_str) == Some("Ready"))
        })
        .and_then(|x| x.get("status").and_then(Value::as_str))
        == Some("True");
    let mut status = if ready { "Ready" } else { "NotReady" }.to_string();
    if obj.pointer("/spec/unschedulable") == Some(&json!(true)) {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles: Vec<String> = obj
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    };
    vec![
        json!(status),
        json!(roles),
        json!(str_at(obj, "/status/nodeInfo/kubeletVersion")),
        json!(address(obj, "InternalIP")),
        json!(address(obj, "ExternalIP")),
        json!(str_at(obj, "/status/nodeInfo/osImage")),
        json!(str_at(obj, "/status/nodeInfo/kernelVersion")),
        json!(str_at(obj, "/status/nodeInfo/containerRuntimeVersion")),
    ]
}
