//! A Deployment's status from its ReplicaSets (replicas, updated, ready, available,
//! unavailable, observedGeneration) and its Available and Progressing conditions, with the
//! reasons `kubectl rollout status` and `describe` read.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use crate::controllers::conditions::{self, format_time, time_at};
use crate::resources::{int_at, name_of};

/// Progressing: the new ReplicaSet is fully available.
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
/// Progressing: a rollout is moving.
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
/// Progressing: the new ReplicaSet was just created.
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
/// Progressing: the new ReplicaSet already existed.
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
/// Progressing False: no progress within progressDeadlineSeconds.
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
/// Progressing Unknown: spec.paused.
pub const PAUSED: &str = "DeploymentPaused";
/// Progressing Unknown: unpaused.
pub const RESUMED: &str = "DeploymentResumed";

/// A Deployment condition stamped `now`.
pub fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) -> Value {
    let t = format_time(now);
    json!({"type": type_, "status": status, "lastUpdateTime": t, "lastTransitionTime": t,
           "reason": reason, "message": message})
}

fn sum(rss: &[&Value], pointer: &str) -> i64 {
    rss.iter().map(|r| int_at(r, pointer)).sum()
}

/// Whether progressDeadlineSeconds applies.
pub fn has_progress_deadline(d: &Value) -> bool {
    d.pointer("/spec/progressDeadlineSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|s| s != i64::from(i32::MAX))
}

/// calculateStatus: counts from the ReplicaSets and the Available condition (kept conditions
/// otherwise). `max_unavailable` is the resolved strategy value (0 for Recreate).
pub fn calculate(
    d: &Value,
    all: &[&Value],
    new: Option<&Value>,
    max_unavailable: i64,
    now: DateTime<Utc>,
) -> Value {
    let desired = int_at(d, "/spec/replicas");
    let available = sum(all, "/status/availableReplicas");
    let total_spec = sum(all, "/spec/replicas");
    let mut status = json!({
        "observedGeneration": int_at(d, "/metadata/generation"),
        "replicas": sum(all, "/status/replicas"),
        "updatedReplicas": new.map_or(0, |n| int_at(n, "/status/replicas")),
        "readyReplicas": sum(all, "/status/readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": (total_spec - available).max(0),
    });
    if let Some(c) = d.pointer("/status/collisionCount") {
        status["collisionCount"] = c.clone();
    }
    if let Some(c) = d.pointer("/status/conditions") {
        status["conditions"] = c.clone();
    }
    let cond = if available >= desired - max_unavailable {
        condition(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            now,
        )
    } else {
        condition(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            now,
        )
    };
    conditions::set(&mut status, cond);
    status
}

/// DeploymentComplete: every replica updated and available, and the spec observed.
pub fn complete(d: &Value, status: &Value) -> bool {
    let desired = int_at(d, "/spec/replicas");
    int_at(status, "/updatedReplicas") == desired
        && int_at(status, "/replicas") == desired
        && int_at(status, "/availableReplicas") == desired
        && int_at(status, "/observedGeneration") >= int_at(d, "/metadata/generation")
}

/// DeploymentProgressing: more updated, ready or available replicas, or fewer old ones, than
/// the status the Deployment has.
fn progressing(d: &Value, new: &Value) -> bool {
    let old = d.get("status").cloned().unwrap_or(json!({}));
    let i = |v: &Value, k: &str| int_at(v, &format!("/{k}"));
    let old_old = i(&old, "replicas") - i(&old, "updatedReplicas");
    let new_old = i(new, "replicas") - i(new, "updatedReplicas");
    i(new, "updatedReplicas") > i(&old, "updatedReplicas")
        || new_old < old_old
        || i(new, "readyReplicas") > i(&old, "readyReplicas")
        || i(new, "availableReplicas") > i(&old, "availableReplicas")
}

fn timed_out(d: &Value, status: &Value, now: DateTime<Utc>) -> bool {
    let Some(c) = conditions::get(&json!({"status": status}), "Progressing").cloned() else {
        return false;
    };
    match c.get("reason").and_then(Value::as_str) {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => {
            let deadline = int_at(d, "/spec/progressDeadlineSeconds");
            time_at(&c, "/lastUpdateTime")
                .is_some_and(|from| from + Duration::seconds(deadline) < now)
        }
    }
}

fn progressing_cond(status: &Value) -> Option<Value> {
    conditions::get(&json!({"status": status}), "Progressing").cloned()
}

fn remove_condition(status: &mut Value, type_: &str) {
    if let Some(list) = status.get_mut("conditions").and_then(Value::as_array_mut) {
        list.retain(|c| c.get("type").and_then(Value::as_str) != Some(type_));
    }
}

/// syncRolloutStatus: [`calculate`] plus the Progressing condition (complete, progressing,
/// or timed out against progressDeadlineSeconds).
pub fn rollout(
    d: &Value,
    all: &[&Value],
    new: Option<&Value>,
    max_unavailable: i64,
    now: DateTime<Utc>,
) -> Value {
    let mut status = calculate(d, all, new, max_unavailable, now);
    if !has_progress_deadline(d) {
        remove_condition(&mut status, "Progressing");
        return status;
    }
    let current = progressing_cond(&status);
    let is_complete = int_at(&status, "/replicas") == int_at(&status, "/updatedReplicas")
        && current
            .as_ref()
            .is_some_and(|c| c.get("reason").and_then(Value::as_str) == Some(NEW_RS_AVAILABLE));
    if is_complete {
        return status;
    }
    let subject = match new {
        Some(rs) => format!("ReplicaSet \"{}\"", name_of(rs)),
        None => format!("Deployment \"{}\"", name_of(d)),
    };
    if complete(d, &status) {
        let c = condition(
            "Progressing",
            "True",
            NEW_RS_AVAILABLE,
            &format!("{subject} has successfully progressed."),
            now,
        );
        conditions::set(&mut status, c);
    } else if progressing(d, &status) {
        let mut c = condition(
            "Progressing",
            "True",
            RS_UPDATED,
            &format!("{subject} is progressing."),
            now,
        );
        if let Some(cur) = &current {
            if cur.get("status").and_then(Value::as_str) == Some("True") {
                if let Some(t) = cur.get("lastTransitionTime") {
                    c["lastTransitionTime"] = t.clone();
                }
            }
        }
        // Replace outright: lastUpdateTime records the progress.
        remove_condition(&mut status, "Progressing");
        conditions::set(&mut status, c);
    } else if timed_out(d, &status, now) {
        let c = condition(
            "Progressing",
            "False",
            TIMED_OUT,
            &format!("{subject} has timed out progressing."),
            now,
        );
        conditions::set(&mut status, c);
    }
    status
}

/// checkPausedConditions: Progressing Unknown DeploymentPaused/DeploymentResumed when
/// `spec.paused` changed; returns whether the status changed.
pub fn paused_condition(d: &Value, status: &mut Value, now: DateTime<Utc>) -> bool {
    if !has_progress_deadline(d) {
        return false;
    }
    let current = progressing_cond(status);
    let reason = current
        .as_ref()
        .and_then(|c| c.get("reason"))
        .and_then(Value::as_str);
    if reason == Some(TIMED_OUT) {
        return false;
    }
    let paused = d.pointer("/spec/paused") == Some(&json!(true));
    let c = if paused && reason != Some(PAUSED) {
        condition(
            "Progressing",
            "Unknown",
            PAUSED,
            "Deployment is paused",
            now,
        )
    } else if !paused && reason == Some(PAUSED) {
        condition(
            "Progressing",
            "Unknown",
            RESUMED,
            "Deployment is resumed",
            now,
        )
    } else {
        return false;
    };
    conditions::set(status, c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(name: &str, spec: i64, replicas: i64, ready: i64, available: i64) -> Value {
        json!({"metadata": {"name": name}, "spec": {"replicas": spec},
               "status": {"replicas": replicas, "readyReplicas": ready, "availableReplicas": available}})
    }

    fn deploy(replicas: i64, generation: i64, status: Value) -> Value {
        json!({"metadata": {"name": "web", "generation": generation},
               "spec": {"replicas": replicas, "progressDeadlineSeconds": 600}, "status": status})
    }

    #[test]
    fn counts_and_conditions_through_a_rollout() {
        let now = Utc::now();
        let old = rs("web-old", 2, 3, 3, 3);
        let new = rs("web-new", 2, 2, 1, 1);
        let d = deploy(3, 2, json!({"updatedReplicas": 1, "replicas": 4}));
        let st = rollout(&d, &[&old, &new], Some(&new), 0, now);
        assert_eq!(st["replicas"], 5);
        assert_eq!(st["updatedReplicas"], 2);
        assert_eq!(st["readyReplicas"], 4);
        assert_eq!(st["availableReplicas"], 4);
        assert_eq!(st["unavailableReplicas"], 0);
        assert_eq!(st["observedGeneration"], 2);
        let obj = json!({"status": st});
        assert_eq!(conditions::status_of(&obj, "Available"), "True");
        let p = conditions::get(&obj, "Progressing").unwrap();
        assert_eq!(p["reason"], RS_UPDATED);
        assert_eq!(p["message"], "ReplicaSet \"web-new\" is progressing.");

        // Done: all three updated and available.
        let new = rs("web-new", 3, 3, 3, 3);
        let old = rs("web-old", 0, 0, 0, 0);
        let d = deploy(3, 2, obj["status"].clone());
        let st = rollout(&d, &[&old, &new], Some(&new), 0, now);
        assert!(complete(&d, &st));
        let p = conditions::get(&json!({"status": st}), "Progressing")
            .unwrap()
            .clone();
        assert_eq!(p["reason"], NEW_RS_AVAILABLE);
        assert_eq!(
            p["message"],
            "ReplicaSet \"web-new\" has successfully progressed."
        );
    }

    #[test]
    fn unavailable_and_timed_out() {
        let now = Utc::now();
        let new = rs("web-new", 3, 3, 0, 0);
        let long_ago = format_time(now - Duration::seconds(700));
        let d = deploy(
            3,
            1,
            json!({"updatedReplicas": 3, "replicas": 3, "conditions": [
            {"type": "Progressing", "status": "True", "reason": RS_UPDATED,
             "lastUpdateTime": long_ago, "lastTransitionTime": long_ago}]}),
        );
        let st = rollout(&d, &[&new], Some(&new), 0, now);
        let obj = json!({"status": st});
        assert_eq!(
            conditions::get(&obj, "Available").unwrap()["reason"],
            "MinimumReplicasUnavailable"
        );
        assert_eq!(
            conditions::get(&obj, "Progressing").unwrap()["reason"],
            TIMED_OUT
        );
        assert_eq!(obj["status"]["unavailableReplicas"], 3);
    }

    #[test]
    fn pause_and_resume() {
        let now = Utc::now();
        let mut d = deploy(1, 1, json!({}));
        d["spec"]["paused"] = json!(true);
        let mut st = json!({});
        assert!(paused_condition(&d, &mut st, now));
        assert!(!paused_condition(&d, &mut st, now));
        d["spec"]["paused"] = json!(false);
        assert!(paused_condition(&d, &mut st, now));
        assert_eq!(
            conditions::get(&json!({"status": st}), "Progressing").unwrap()["reason"],
            RESUMED
        );
    }
}
