//! Facts about pods controllers share: active (counted by ReplicaSets), ready, available
//! (ready for `minReadySeconds`), and the order in which surplus pods are deleted.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::conditions;
use super::ownership::deleting;
use crate::resources::str_at;

/// Not being deleted and not finished (`Succeeded`/`Failed`).
pub fn is_active(pod: &Value) -> bool {
    !deleting(pod) && !matches!(str_at(pod, "/status/phase"), "Succeeded" | "Failed")
}

/// The pod's Ready condition is True.
pub fn is_ready(pod: &Value) -> bool {
    conditions::status_of(pod, "Ready") == "True"
}

/// When the pod last became Ready (the Ready condition's lastTransitionTime).
pub fn ready_since(pod: &Value) -> Option<DateTime<Utc>> {
    conditions::get(pod, "Ready")
        .and_then(|c| c.get("lastTransitionTime"))
        .and_then(Value::as_str)
        .and_then(conditions::parse_time)
}

/// Ready for at least `min_ready_seconds` at `now` (a missing transition time counts as long
/// ago, like an agent that does not record it).
pub fn is_available(pod: &Value, min_ready_seconds: i64, now: DateTime<Utc>) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    ready_since(pod).is_none_or(|t| (now - t).num_seconds() >= min_ready_seconds)
}

fn phase_rank(pod: &Value) -> u8 {
    match str_at(pod, "/status/phase") {
        "Pending" | "" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    }
}

fn restarts(pod: &Value) -> i64 {
    pod.pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Kubernetes' ActivePods order: the pods to delete first sort first (unscheduled, then
/// pending/unknown/running, not ready before ready, ready for less time, more restarts, newer).
pub fn deletion_order(a: &Value, b: &Value) -> Ordering {
    let assigned = |p: &Value| !str_at(p, "/spec/nodeName").is_empty();
    assigned(a)
        .cmp(&assigned(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        .then_with(|| {
            if is_ready(a) && is_ready(b) {
                // Ready for a shorter time (later transition) first.
                ready_since(b).cmp(&ready_since(a))
            } else {
                Ordering::Equal
            }
        })
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| {
            str_at(b, "/metadata/creationTimestamp").cmp(str_at(a, "/metadata/creationTimestamp"))
        })
        .then_with(|| str_at(a, "/metadata/name").cmp(str_at(b, "/metadata/name")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: &str, phase: &str, ready: bool, created: &str) -> Value {
        json!({"metadata": {"name": name, "creationTimestamp": created},
               "spec": {"nodeName": node},
               "status": {"phase": phase, "conditions": [
                   {"type": "Ready", "status": if ready {"True"} else {"False"},
                    "lastTransitionTime": created}]}})
    }

    #[test]
    fn surplus_pods_go_unscheduled_unready_newest_first() {
        let mut pods = [
            pod("old-ready", "n1", "Running", true, "2024-01-01T00:00:00Z"),
            pod("new-ready", "n1", "Running", true, "2024-01-02T00:00:00Z"),
            pod("unready", "n1", "Running", false, "2024-01-01T00:00:00Z"),
            pod("pending", "n1", "Pending", false, "2024-01-01T00:00:00Z"),
            pod("unscheduled", "", "Pending", false, "2024-01-01T00:00:00Z"),
        ];
        pods.sort_by(deletion_order);
        let names: Vec<&str> = pods.iter().map(|p| str_at(p, "/metadata/name")).collect();
        assert_eq!(
            names,
            [
                "unscheduled",
                "pending",
                "unready",
                "new-ready",
                "old-ready"
            ]
        );
    }

    #[test]
    fn active_ready_available() {
        let now = Utc::now();
        let p = pod("p", "n", "Running", true, &conditions::format_time(now));
        assert!(is_active(&p) && is_ready(&p));
        assert!(is_available(&p, 0, now));
        assert!(!is_available(&p, 30, now));
        let mut done = p.clone();
        done["status"]["phase"] = json!("Succeeded");
        assert!(!is_active(&done));
    }
}
