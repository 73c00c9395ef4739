//! `metav1.LabelSelector` objects (`matchLabels` + `matchExpressions`) as label matchers, and
//! the plain `map[string]string` selectors of Services.

use serde_json::Value;

use crate::api::selectors::{LabelSelector, Requirement};

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The requirements of a LabelSelector object; `None` for a missing (nil) selector or an
/// unknown operator, which select nothing. `{}` selects everything.
pub fn from_object(sel: Option<&Value>) -> Option<LabelSelector> {
    let sel = sel.filter(|s| s.is_object())?;
    let mut reqs = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            reqs.push(Requirement::Equals(k.clone(), v.as_str()?.to_string()));
        }
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str)?.to_string();
        let values = strings(e.get("values"));
        reqs.push(match e.get("operator").and_then(Value::as_str)? {
            "In" => Requirement::In(key, values),
            "NotIn" => Requirement::NotIn(key, values),
            "Exists" => Requirement::Exists(key),
            "DoesNotExist" => Requirement::DoesNotExist(key),
            _ => return None,
        });
    }
    Some(LabelSelector(reqs))
}

/// Whether `obj`'s labels satisfy the LabelSelector object `sel` (nil selects nothing).
pub fn matches(sel: Option<&Value>, obj: &Value) -> bool {
    from_object(sel).is_some_and(|s| s.matches(obj))
}

/// Whether `obj`'s labels contain every pair of a map selector (a Service's `spec.selector`);
/// an empty or missing map selects nothing.
pub fn map_matches(sel: Option<&Value>, obj: &Value) -> bool {
    let Some(m) = sel.and_then(Value::as_object).filter(|m| !m.is_empty()) else {
        return false;
    };
    let labels = obj.pointer("/metadata/labels");
    m.iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selector_objects() {
        let pod = json!({"metadata": {"labels": {"app": "web", "tier": "fe"}}});
        assert!(matches(Some(&json!({"matchLabels": {"app": "web"}})), &pod));
        assert!(!matches(Some(&json!({"matchLabels": {"app": "db"}})), &pod));
        assert!(matches(Some(&json!({})), &pod), "empty selects all");
        assert!(!matches(None, &pod), "nil selects nothing");
        let expr = json!({"matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["fe", "be"]},
            {"key": "legacy", "operator": "DoesNotExist"}]});
        assert!(matches(Some(&expr), &pod));
        let bad = json!({"matchExpressions": [{"key": "x", "operator": "Near"}]});
        assert!(!matches(Some(&bad), &pod));
        assert!(map_matches(Some(&json!({"app": "web"})), &pod));
        assert!(!map_matches(Some(&json!({})), &pod));
        assert!(!map_matches(Some(&json!({"app": "web", "x": "y"})), &pod));
    }
}
