//! Request bodies in Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`), which
//! kubectl 1.33's typed clients send (`kubectl create namespace`, `create configmap`, `create
//! secret`). A small schema-driven decoder turns the kinds listed in [`decode`] into JSON; other
//! kinds answer 415 for now.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Map, Value};

/// How one protobuf field maps to JSON.
enum F {
    Str(&'static str),
    Bool(&'static str),
    Msg(&'static str, &'static [(u64, F)]),
    MapStr(&'static str),
    MapBytes(&'static str),
    RepStr(&'static str),
    RepMsg(&'static str, &'static [(u64, F)]),
    Bytes(&'static str),
    Int(&'static str),
}

static OBJECT_META: &[(u64, F)] = &[
    (1, F::Str("name")),
    (2, F::Str("generateName")),
    (3, F::Str("namespace")),
    (11, F::MapStr("labels")),
    (12, F::MapStr("annotations")),
    (14, F::RepStr("finalizers")),
];

static NAMESPACE: &[(u64, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (2, F::Msg("spec", &[(1, F::RepStr("finalizers"))])),
];

static CONFIGMAP: &[(u64, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (2, F::MapStr("data")),
    (3, F::MapBytes("binaryData")),
    (4, F::Bool("immutable")),
];

static SECRET: &[(u64, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (2, F::MapBytes("data")),
    (3, F::Str("type")),
    (5, F::Bool("immutable")),
];

static POLICY_RULE: &[(u64, F)] = &[
    (1, F::RepStr("verbs")),
    (2, F::RepStr("apiGroups")),
    (3, F::RepStr("resources")),
    (4, F::RepStr("resourceNames")),
    (5, F::RepStr("nonResourceURLs")),
];

static ROLE: &[(u64, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (2, F::RepMsg("rules", POLICY_RULE)),
];

static BINDING: &[(u64, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (
        2,
        F::RepMsg(
            "subjects",
            &[
                (1, F::Str("kind")),
                (2, F::Str("apiGroup")),
                (3, F::Str("name")),
                (4, F::Str("namespace")),
            ],
        ),
    ),
    (
        3,
        F::Msg(
            "roleRef",
            &[
                (1, F::Str("apiGroup")),
                (2, F::Str("kind")),
                (3, F::Str("name")),
            ],
        ),
    ),
];

static ACCESS_REVIEW: &[(u64, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (
        2,
        F::Msg(
            "spec",
            &[
                (
                    1,
                    F::Msg(
                        "resourceAttributes",
                        &[
                            (1, F::Str("namespace")),
                            (2, F::Str("verb")),
                            (3, F::Str("group")),
                            (4, F::Str("version")),
                            (5, F::Str("resource")),
                            (6, F::Str("subresource")),
                            (7, F::Str("name")),
                        ],
                    ),
                ),
                (
                    2,
                    F::Msg(
                        "nonResourceAttributes",
                        &[(1, F::Str("path")), (2, F::Str("verb"))],
                    ),
                ),
            ],
        ),
    ),
];

static RULES_REVIEW: &[(u64, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (2, F::Msg("spec", &[(1, F::Str("namespace"))])),
];

static SERVICE_ACCOUNT: &[(u64, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (
        2,
        F::RepMsg(
            "secrets",
            &[
                (1, F::Str("kind")),
                (2, F::Str("namespace")),
                (3, F::Str("name")),
            ],
        ),
    ),
    (4, F::Bool("automountServiceAccountToken")),
];

static CSR_CONDITION: &[(u64, F)] = &[
    (1, F::Str("type")),
    (2, F::Str("reason")),
    (3, F::Str("message")),
    (6, F::Str("status")),
];

static CSR: &[(u64, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (
        2,
        F::Msg(
            "spec",
            &[
                (1, F::Bytes("request")),
                (2, F::Str("username")),
                (3, F::Str("uid")),
                (4, F::RepStr("groups")),
                (5, F::RepStr("usages")),
                (7, F::Str("signerName")),
                (8, F::Int("expirationSeconds")),
            ],
        ),
    ),
    (
        3,
        F::Msg(
            "status",
            &[
                (1, F::RepMsg("conditions", CSR_CONDITION)),
                (2, F::Bytes("certificate")),
            ],
        ),
    ),
];

static TYPE_META: &[(u64, F)] = &[(1, F::Str("apiVersion")), (2, F::Str("kind"))];

/// One raw field: number and payload.
enum Raw<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

fn fields(buf: &[u8]) -> Result<Vec<(u64, Raw<'_>)>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let tag = varint(buf, &mut pos)?;
        let (num, wire) = (tag >> 3, tag & 7);
        match wire {
            0 => out.push((num, Raw::Varint(varint(buf, &mut pos)?))),
            1 => pos += 8,
            5 => pos += 4,
            2 => {
                let len = varint(buf, &mut pos)? as usize;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= buf.len())
                    .ok_or("truncated field")?;
                out.push((num, Raw::Bytes(&buf[pos..end])));
                pos = end;
            }
            w => return Err(format!("unsupported wire type {w}")),
        }
    }
    Ok(out)
}

fn text(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "invalid UTF-8 in a string field".to_string())
}

fn message(buf: &[u8], schema: &[(u64, F)]) -> Result<Value, String> {
    let mut obj = Map::new();
    for (num, raw) in fields(buf)? {
        let Some((_, f)) = schema.iter().find(|(n, _)| *n == num) else {
            continue;
        };
        match (f, raw) {
            (F::Str(name), Raw::Bytes(b)) if !b.is_empty() => {
                obj.insert((*name).into(), json!(text(b)?));
            }
            (F::Bool(name), Raw::Varint(v)) => {
                obj.insert((*name).into(), json!(v != 0));
            }
            (F::Msg(name, sub), Raw::Bytes(b)) => {
                let v = message(b, sub)?;
                if v.as_object().is_some_and(|m| !m.is_empty()) {
                    obj.insert((*name).into(), v);
                }
            }
            (F::MapStr(name) | F::MapBytes(name), Raw::Bytes(b)) => {
                let mut key = String::new();
                let mut value = Value::String(String::new());
                for (n, r) in fields(b)? {
                    if let Raw::Bytes(x) = r {
                        match n {
                            1 => key = text(x)?,
                            2 if matches!(f, F::MapBytes(_)) => value = json!(B64.encode(x)),
                            2 => value = json!(text(x)?),
                            _ => {}
                        }
                    }
                }
                let map = obj.entry(*name).or_insert_with(|| json!({}));
                if let Some(m) = map.as_object_mut() {
                    m.insert(key, value);
                }
            }
            (F::RepMsg(name, sub), Raw::Bytes(b)) => {
                let v = message(b, sub)?;
                let list = obj.entry(*name).or_insert_with(|| json!([]));
                if let Some(l) = list.as_array_mut() {
                    l.push(v);
                }
            }
            (F::Bytes(name), Raw::Bytes(b)) if !b.is_empty() => {
                obj.insert((*name).into(), json!(B64.encode(b)));
            }
            (F::Int(name), Raw::Varint(v)) => {
                obj.insert((*name).into(), json!(v as i64));
            }
            (F::RepStr(name), Raw::Bytes(b)) => {
                let list = obj.entry(*name).or_insert_with(|| json!([]));
                if let Some(l) = list.as_array_mut() {
                    l.push(json!(text(b)?));
                }
            }
            _ => {}
        }
    }
    Ok(Value::Object(obj))
}

/// Decodes a protobuf-encoded object (`k8s\0` + runtime.Unknown) into JSON; `Err` for malformed
/// bodies or kinds this decoder does not know.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(b"k8s\0")
        .ok_or("missing the k8s protobuf magic number")?;
    let mut type_meta = Value::Null;
    let mut raw: &[u8] = &[];
    for (num, r) in fields(rest)? {
        match (num, r) {
            (1, Raw::Bytes(b)) => type_meta = message(b, TYPE_META)?,
            (2, Raw::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    let kind = type_meta.get("kind").and_then(Value::as_str).unwrap_or("");
    let schema = match kind {
        "Namespace" => NAMESPACE,
        "ConfigMap" => CONFIGMAP,
        "Secret" => SECRET,
        "Role" | "ClusterRole" => ROLE,
        "RoleBinding" | "ClusterRoleBinding" => BINDING,
        "SelfSubjectAccessReview" => ACCESS_REVIEW,
        "SelfSubjectRulesReview" => RULES_REVIEW,
        "ServiceAccount" => SERVICE_ACCOUNT,
        "CertificateSigningRequest" => CSR,
        other => {
            return Err(format!(
                "protobuf bodies of kind {other:?} are not supported yet"
            ))
        }
    };
    let mut obj = message(raw, schema)?;
    if let Some(m) = obj.as_object_mut() {
        m.insert("kind".into(), json!(kind));
        if let Some(v) = type_meta.get("apiVersion") {
            m.insert("apiVersion".into(), v.clone());
        }
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(num: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![((num << 3) | 2) as u8, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn decodes_a_namespace_like_kubectl_sends_it() {
        // The exact bytes kubectl 1.33 sends for `kubectl create namespace demo2`.
        let body: &[u8] = b"k8s\x00\x0a\x0f\x0a\x02v1\x12\x09Namespace\x12\x1d\x0a\x15\x0a\x05demo2\x12\x00\x1a\x00\x22\x00\x2a\x00\x32\x00\x38\x00\x42\x00\x12\x00\x1a\x00\x1a\x00\x22\x00";
        let v = decode(body).unwrap();
        assert_eq!(
            v,
            json!({"metadata": {"name": "demo2"}, "kind": "Namespace", "apiVersion": "v1"})
        );
    }

    #[test]
    fn decodes_configmap_data_and_labels() {
        let entry = [field(1, b"color"), field(2, b"blue")].concat();
        let label = [field(1, b"app"), field(2, b"web")].concat();
        let meta = [field(1, b"cfg"), field(3, b"demo"), field(11, &label)].concat();
        let cm = [field(1, &meta), field(2, &entry)].concat();
        let tm = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let body = [b"k8s\0".to_vec(), field(1, &tm), field(2, &cm)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(
            v["metadata"],
            json!({"name": "cfg", "namespace": "demo", "labels": {"app": "web"}})
        );
        assert_eq!(v["data"], json!({"color": "blue"}));
        let subject = [field(1, b"User"), field(3, b"jane")].concat();
        let role_ref = [field(2, b"ClusterRole"), field(3, b"view")].concat();
        let rb = [
            field(1, &field(1, b"jane-view")),
            field(2, &subject),
            field(3, &role_ref),
        ]
        .concat();
        let tm = [
            field(1, b"rbac.authorization.k8s.io/v1"),
            field(2, b"RoleBinding"),
        ]
        .concat();
        let v = decode(&[b"k8s\0".to_vec(), field(1, &tm), field(2, &rb)].concat()).unwrap();
        assert_eq!(v["subjects"], json!([{"kind": "User", "name": "jane"}]));
        assert_eq!(v["roleRef"], json!({"kind": "ClusterRole", "name": "view"}));
        let tm = [field(1, b"v1"), field(2, b"Pod")].concat();
        assert!(decode(&[b"k8s\0".to_vec(), field(1, &tm)].concat()).is_err());
    }
}
