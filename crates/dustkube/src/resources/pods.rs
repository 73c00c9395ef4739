//! Pods: container defaults, `Pending` phase; table NAME READY STATUS RESTARTS AGE, wide IP NODE
//! NOMINATED NODE READINESS GATES.

use std::sync::atomic::{AtomicI64, Ordering};

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

/// tolerationSeconds of the default not-ready:NoExecute toleration (server flag).
static NOT_READY_SECONDS: AtomicI64 = AtomicI64::new(300);
/// tolerationSeconds of the default unreachable:NoExecute toleration (server flag).
static UNREACHABLE_SECONDS: AtomicI64 = AtomicI64::new(300);

/// Sets the tolerationSeconds pods get for the not-ready and unreachable taints
/// (`--default-not-ready-toleration-seconds`, `--default-unreachable-toleration-seconds`).
pub fn set_default_toleration_seconds(not_ready: i64, unreachable: i64) {
    NOT_READY_SECONDS.store(not_ready, Ordering::Relaxed);
    UNREACHABLE_SECONDS.store(unreachable, Ordering::Relaxed);
}

/// Kubernetes' DefaultTolerationSeconds admission: a pod that does not tolerate the
/// not-ready or unreachable NoExecute taints tolerates them for a while (300 s), so its pods
/// are evicted from a failed node after that.
fn default_tolerations(spec: &mut Value) {
    let Some(map) = spec.as_object_mut() else {
        return;
    };
    let list = map.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = list.as_array_mut() else {
        return;
    };
    for (key, seconds) in [
        ("node.kubernetes.io/not-ready", &NOT_READY_SECONDS),
        ("node.kubernetes.io/unreachable", &UNREACHABLE_SECONDS),
    ] {
        let covered = list.iter().any(|t| {
            let k = t.get("key").and_then(Value::as_str).unwrap_or("");
            let e = t.get("effect").and_then(Value::as_str).unwrap_or("");
            (k.is_empty() || k == key) && (e.is_empty() || e == "NoExecute")
        });
        if !covered {
            list.push(
                json!({"key": key, "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": seconds.load(Ordering::Relaxed)}),
            );
        }
    }
}

fn defaults(obj: &mut Value) {
    if let Some(spec) = obj.get_mut("spec") {
        default_pod_spec(spec);
        default_tolerations(spec);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_toleration_seconds() {
        let mut pod = json!({"spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        defaults(&mut pod);
        let t = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0]["key"], "node.kubernetes.io/not-ready");
        assert_eq!(t[1]["tolerationSeconds"], 300);
        // Idempotent, and a pod's own toleration for a key wins.
        defaults(&mut pod);
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 2);
        let mut own = json!({"spec": {"containers": [], "tolerations": [
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]}});
        defaults(&mut own);
        let t = own["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0]["tolerationSeconds"], 5);
        assert_eq!(t[1]["key"], "node.kubernetes.io/not-ready");
    }
}
