//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch
//! (merge patch plus list merge by key for the lists Kubernetes marks `patchMergeKey`, and the
//! `$patch`, `$setElementOrder/`, `$retainKeys` and `$deleteFromPrimitiveList/` directives
//! kubectl apply sends).

use serde_json::{Map, Value};

/// The patch flavours, by Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/json-patch+json`.
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
}

impl PatchType {
    /// The flavour for a Content-Type, or `None` (server-side apply and unknown types → 415).
    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/merge-patch+json" => Some(Self::Merge),
            "application/json-patch+json" => Some(Self::Json),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            _ => None,
        }
    }
}

/// Applies `patch` (raw body) of type `ty` to `target`.
pub fn apply(target: &Value, patch: &[u8], ty: PatchType) -> Result<Value, String> {
    let patch: Value =
        serde_json::from_slice(patch).map_err(|e| format!("invalid JSON patch body: {e}"))?;
    match ty {
        PatchType::Merge => Ok(merge_patch(target, &patch)),
        PatchType::Strategic => {
            if !patch.is_object() {
                return Err("strategic merge patch must be a JSON object".into());
            }
            Ok(strategic_merge(target, &patch))
        }
        PatchType::Json => {
            let ops: json_patch::Patch =
                serde_json::from_value(patch).map_err(|e| format!("invalid JSON patch: {e}"))?;
            let mut doc = target.clone();
            json_patch::patch(&mut doc, &ops).map_err(|e| e.to_string())?;
            Ok(doc)
        }
    }
}

/// RFC 7386: objects merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    let Value::Object(p) = patch else {
        return patch.clone();
    };
    let mut out = match target {
        Value::Object(t) => t.clone(),
        _ => Map::new(),
    };
    for (k, v) in p {
        if v.is_null() {
            out.remove(k);
        } else {
            let merged = merge_patch(out.get(k).unwrap_or(&Value::Null), v);
            out.insert(k.clone(), merged);
        }
    }
    Value::Object(out)
}

/// The merge key of a list field, as Kubernetes' types declare (`patchMergeKey`). `elements` is
/// the patch's list, used to tell container ports (`containerPort`) from service ports (`port`).
fn merge_key(field: &str, elements: &[Value]) -> Option<&'static str> {
    let has = |k: &str| elements.iter().any(|e| e.get(k).is_some());
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => Some("name"),
        "volumeMounts" | "volumeDevices" => Some("mountPath"),
        "ports" if has("containerPort") => Some("containerPort"),
        "ports" => Some("port"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        "hostAliases" => Some("ip"),
        "addresses" => Some("type"),
        _ => None,
    }
}

/// Strategic merge patch of `patch` onto `target` (both objects).
pub fn strategic_merge(target: &Value, patch: &Value) -> Value {
    let Value::Object(p) = patch else {
        return patch.clone();
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = p.clone();
        replaced.remove("$patch");
        return Value::Object(replaced);
    }
    let mut out = match target {
        Value::Object(t) => t.clone(),
        _ => Map::new(),
    };
    let mut orders: Vec<(String, Vec<Value>)> = Vec::new();
    let mut retain: Option<Vec<String>> = None;
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            orders.push((field.to_string(), v.as_array().cloned().unwrap_or_default()));
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(cur)), Some(del)) = (out.get_mut(field), v.as_array()) {
                cur.retain(|x| !del.contains(x));
            }
            continue;
        }
        if k == "$retainKeys" {
            retain = v.as_array().map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            });
            continue;
        }
        if k == "$patch" {
            continue;
        }
        if v.is_null() {
            out.remove(k);
            continue;
        }
        let merged = match (out.get(k), v) {
            (Some(Value::Array(cur)), Value::Array(new)) => match merge_key(k, new) {
                Some(key) if new.iter().all(|e| e.get(key).is_some()) => {
                    Value::Array(merge_list(cur, new, key))
                }
                _ => Value::Array(strip_directives(new)),
            },
            (Some(cur @ Value::Object(_)), Value::Object(_)) => strategic_merge(cur, v),
            (_, Value::Object(_)) => strategic_merge(&Value::Null, v),
            (_, Value::Array(new)) => Value::Array(strip_directives(new)),
            _ => v.clone(),
        };
        out.insert(k.clone(), merged);
    }
    for (field, order) in orders {
        if let Some(Value::Array(list)) = out.get_mut(&field) {
            reorder(list, &order);
        }
    }
    if let Some(keep) = retain {
        out.retain(|k, _| keep.iter().any(|r| r == k));
    }
    Value::Object(out)
}

/// Patch elements without `$patch: delete` entries (for lists that are replaced).
fn strip_directives(list: &[Value]) -> Vec<Value> {
    list.iter()
        .filter(|e| e.get("$patch").and_then(Value::as_str) != Some("delete"))
        .map(|e| {
            if e.is_object() {
                strategic_merge(&Value::Null, e)
            } else {
                e.clone()
            }
        })
        .collect()
}

fn merge_list(cur: &[Value], new: &[Value], key: &str) -> Vec<Value> {
    let mut out: Vec<Value> = cur.to_vec();
    for e in new {
        let id = e.get(key);
        let pos = out.iter().position(|x| x.get(key) == id);
        if e.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(i) = pos {
                out.remove(i);
            }
            continue;
        }
        match pos {
            Some(i) => out[i] = strategic_merge(&out[i], e),
            None => out.push(strategic_merge(&Value::Null, e)),
        }
    }
    out
}

/// Orders `list` like `order` (elements identified by the fields present in each order entry);
/// elements not named keep their relative order after the named ones.
fn reorder(list: &mut Vec<Value>, order: &[Value]) {
    let matches = |e: &Value, o: &Value| match (e, o) {
        (Value::Object(em), Value::Object(om)) => om.iter().all(|(k, v)| em.get(k) == Some(v)),
        _ => e == o,
    };
    let mut sorted = Vec::with_capacity(list.len());
    for o in order {
        if let Some(i) = list.iter().position(|e| matches(e, o)) {
            sorted.push(list.remove(i));
        }
    }
    sorted.append(list);
    *list = sorted;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386() {
        let t = json!({"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]});
        let p = json!({"a": null, "b": {"c": 5}, "l": [3]});
        assert_eq!(
            merge_patch(&t, &p),
            json!({"b": {"c": 5, "d": 3}, "l": [3]})
        );
    }

    #[test]
    fn strategic_merges_containers_by_name_and_keeps_order() {
        let t = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "a:1", "ports": [{"containerPort": 80, "protocol": "TCP"}]},
            {"name": "b", "image": "b:1"}
        ]}}}});
        let p = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [{"name": "a", "image": "a:2"}]
        }}}});
        let out = strategic_merge(&t, &p);
        let cs = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs[0]["name"], "b");
        assert_eq!(cs[1]["image"], "a:2");
        assert_eq!(cs[1]["ports"][0]["containerPort"], 80);
    }

    #[test]
    fn strategic_delete_directives() {
        let t = json!({"env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
                       "args": ["a", "b", "c"], "keep": 1});
        let p = json!({"env": [{"name": "X", "$patch": "delete"}],
                       "$deleteFromPrimitiveList/args": ["b"], "keep": null});
        let out = strategic_merge(&t, &p);
        assert_eq!(
            out,
            json!({"env": [{"name": "Y", "value": "2"}], "args": ["a", "c"]})
        );
        let r = strategic_merge(
            &json!({"s": {"a": 1, "b": 2}}),
            &json!({"s": {"$patch": "replace", "c": 3}}),
        );
        assert_eq!(r, json!({"s": {"c": 3}}));
    }

    #[test]
    fn strategic_retain_keys() {
        let t = json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}});
        let p = json!({"strategy": {"$retainKeys": ["type"], "type": "Recreate"}});
        assert_eq!(
            strategic_merge(&t, &p),
            json!({"strategy": {"type": "Recreate"}})
        );
    }

    #[test]
    fn json_patch_and_content_types() {
        let t = json!({"spec": {"replicas": 1}});
        let out = apply(
            &t,
            br#"[{"op":"replace","path":"/spec/replicas","value":4}]"#,
            PatchType::Json,
        )
        .unwrap();
        assert_eq!(out["spec"]["replicas"], 4);
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml"),
            None
        );
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchType::Merge)
        );
    }
}
