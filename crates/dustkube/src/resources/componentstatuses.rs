//! ComponentStatuses (v1, read-only, deprecated upstream but used by the seeds' exercises):
//! computed on every request, never stored — scheduler and controller-manager report Healthy
//! (they run inside dustkube), etcd-0 reports what etcd answers; table NAME STATUS MESSAGE ERROR.

use serde_json::{json, Value};

use super::{name_of, no_defaults, no_validation, str_at, ResourceType};
use crate::api::table::{col, Column};

/// The ComponentStatus kind.
pub static TYPE: ResourceType = ResourceType {
    group: "",
    version: "v1",
    plural: "componentstatuses",
    singular: "componentstatus",
    kind: "ComponentStatus",
    namespaced: false,
    short_names: &["cs"],
    categories: &[],
    columns,
    cells,
    name_age: false,
    wide: 0,
    defaults: no_defaults,
    validate: no_validation,
};

fn columns() -> Vec<Column> {
    vec![
        col("Name", "string", 0),
        col("Status", "string", 0),
        col("Message", "string", 0),
        col("Error", "string", 0),
    ]
}

fn cells(obj: &Value) -> Vec<Value> {
    let c = obj.pointer("/conditions/0").cloned().unwrap_or(json!({}));
    let status = if str_at(&c, "/status") == "True" {
        "Healthy"
    } else {
        "Unhealthy"
    };
    vec![
        json!(name_of(obj)),
        json!(status),
        json!(str_at(&c, "/message")),
        json!(str_at(&c, "/error")),
    ]
}

/// One ComponentStatus object.
pub fn object(name: &str, healthy: bool, message: &str, error: &str) -> Value {
    let mut cond = json!({"type": "Healthy", "status": if healthy { "True" } else { "False" }});
    if !message.is_empty() {
        cond["message"] = json!(message);
    }
    if !error.is_empty() {
        cond["error"] = json!(error);
    }
    json!({
        "kind": "ComponentStatus",
        "apiVersion": "v1",
        "metadata": {"name": name},
        "conditions": [cond],
    })
}
