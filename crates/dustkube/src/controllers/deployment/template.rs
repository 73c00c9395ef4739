//! Pod templates of Deployments and their ReplicaSets: the `pod-template-hash` (a stable hash
//! of the template, encoded like Kubernetes' SafeEncodeString) and template equality that
//! ignores that label and treats null/empty fields as absent (apimachinery's semantic equality).

use serde_json::{Map, Value};

/// The label (and selector key) that ties a ReplicaSet and its pods to one template.
pub const HASH_LABEL: &str = "pod-template-hash";

/// `v` without nulls, empty objects and empty arrays, recursively.
pub fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                let n = normalize(x);
                let empty = match &n {
                    Value::Null => true,
                    Value::Object(o) => o.is_empty(),
                    Value::Array(a) => a.is_empty(),
                    _ => false,
                };
                if !empty {
                    out.insert(k.clone(), n);
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

/// The template without the `pod-template-hash` label.
pub fn without_hash(tpl: &Value) -> Value {
    let mut t = tpl.clone();
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
    }
    t
}

/// Whether two templates are the same apart from the hash label (EqualIgnoreHash).
pub fn equal_ignore_hash(a: &Value, b: &Value) -> bool {
    normalize(&without_hash(a)) == normalize(&without_hash(b))
}

/// Deterministic JSON text: object keys sorted at every level.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                canonical(&m[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn fnv1a32(bytes: &[u8], mut h: u32) -> u32 {
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Kubernetes' SafeEncodeString: each character mapped into an alphabet without vowels.
fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char)
        .collect()
}

/// The `pod-template-hash` of a template (hash label ignored); `collision_count` (the
/// Deployment's `status.collisionCount`) changes it when a name is already taken.
pub fn compute_hash(tpl: &Value, collision_count: Option<i64>) -> String {
    let mut text = String::new();
    canonical(&normalize(&without_hash(tpl)), &mut text);
    let mut h = fnv1a32(text.as_bytes(), 0x811c_9dc5);
    if let Some(c) = collision_count {
        h = fnv1a32(&(c as u32).to_le_bytes(), h);
    }
    safe_encode(&h.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tpl(image: &str) -> Value {
        json!({"metadata": {"labels": {"app": "web"}},
               "spec": {"containers": [{"name": "web", "image": image, "resources": {}}]}})
    }

    #[test]
    fn hash_is_stable_and_ignores_key_order_nulls_and_the_hash_label() {
        let a = tpl("busybox:stable");
        let h = compute_hash(&a, None);
        assert_eq!(h, compute_hash(&a, None));
        assert!(h.len() <= 10 && !h.is_empty(), "{h}");
        assert!(h
            .bytes()
            .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)));
        // Same template written differently (key order, null creationTimestamp, no empty
        // resources, hash label present) hashes the same.
        let b = json!({"spec": {"containers": [{"image": "busybox:stable", "name": "web"}]},
                       "metadata": {"creationTimestamp": null,
                                    "labels": {"pod-template-hash": h.clone(), "app": "web"}}});
        assert_eq!(compute_hash(&b, None), h);
        assert!(equal_ignore_hash(&a, &b));
        // A different image or a collision count changes it.
        assert_ne!(compute_hash(&tpl("busybox:musl"), None), h);
        assert!(!equal_ignore_hash(&a, &tpl("busybox:musl")));
        assert_ne!(compute_hash(&a, Some(1)), h);
        assert_eq!(safe_encode("0123"), "4567");
    }
}
