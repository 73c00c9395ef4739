//! Status conditions (`status.conditions[]` with type, status, reason, message and times) of
//! pods, nodes and deployments, and the timestamps they carry.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// The condition of `type_` in `obj.status.conditions`.
pub fn get<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
}

/// The `status` ("True", "False", "Unknown") of a condition, or "".
pub fn status_of<'a>(obj: &'a Value, type_: &str) -> &'a str {
    get(obj, type_)
        .and_then(|c| c.get("status"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Sets `cond` (which has a `type`) in `status.conditions`, keeping `lastTransitionTime` when
/// the condition's status does not change; returns whether anything changed. Fields other
/// than type/status/reason/message are compared too, except the times the old one had.
pub fn set(status: &mut Value, mut cond: Value) -> bool {
    if !status.is_object() {
        *status = json!({});
    }
    let type_ = cond.get("type").cloned().unwrap_or(Value::Null);
    let list = status
        .as_object_mut()
        .map(|m| m.entry("conditions").or_insert_with(|| json!([])));
    let Some(list) = list.and_then(Value::as_array_mut) else {
        return false;
    };
    match list.iter_mut().find(|c| c.get("type") == Some(&type_)) {
        Some(old) => {
            let same = ["status", "reason", "message"]
                .iter()
                .all(|k| old.get(*k) == cond.get(*k));
            if same {
                return false;
            }
            if old.get("status") == cond.get("status") {
                if let Some(t) = old.get("lastTransitionTime") {
                    cond["lastTransitionTime"] = t.clone();
                }
            }
            *old = cond;
            true
        }
        None => {
            list.push(cond);
            true
        }
    }
}

/// Parses an RFC 3339 time (`2024-01-01T00:00:00Z`, with or without fractions).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// An RFC 3339 time at a JSON pointer.
pub fn time_at(obj: &Value, pointer: &str) -> Option<DateTime<Utc>> {
    obj.pointer(pointer)
        .and_then(Value::as_str)
        .and_then(parse_time)
}

/// `t` as the API writes Time fields (seconds).
pub fn format_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_keeps_transition_time_when_status_holds() {
        let mut st = json!({});
        let c1 =
            json!({"type": "Ready", "status": "True", "reason": "A", "lastTransitionTime": "t1"});
        assert!(set(&mut st, c1.clone()));
        assert!(!set(&mut st, c1), "same condition: no change");
        let c2 =
            json!({"type": "Ready", "status": "True", "reason": "B", "lastTransitionTime": "t2"});
        assert!(set(&mut st, c2));
        assert_eq!(
            get(&json!({"status": st.clone()}), "Ready").unwrap()["lastTransitionTime"],
            "t1"
        );
        let c3 =
            json!({"type": "Ready", "status": "False", "reason": "B", "lastTransitionTime": "t3"});
        assert!(set(&mut st, c3));
        let obj = json!({"status": st});
        assert_eq!(get(&obj, "Ready").unwrap()["lastTransitionTime"], "t3");
        assert_eq!(status_of(&obj, "Ready"), "False");
        assert_eq!(
            parse_time("2024-01-02T03:04:05.123456Z")
                .map(format_time)
                .as_deref(),
            Some("2024-01-02T03:04:05Z")
        );
    }
}
