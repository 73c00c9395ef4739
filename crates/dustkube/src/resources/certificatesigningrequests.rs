//! CertificateSigningRequests (certificates.k8s.io/v1): the requester's identity is stamped by
//! the API on create; approval through the `/approval` subresource (conditions Approved or
//! Denied); table NAME AGE SIGNERNAME REQUESTOR REQUESTEDDURATION CONDITION.

use serde_json::{json, Value};

use super::{name_of, str_at, FieldError, ResourceType};
use crate::api::table::{age, col, human_duration, Column};

/// The CertificateSigningRequest kind.
pub static TYPE: ResourceType = ResourceType {
    group: "certificates.k8s.io",
    version: "v1",
    plural: "certificatesigningrequests",
    singular: "certificatesigningrequest",
    kind: "CertificateSigningRequest",
    namespaced: false,
    short_names: &["csr"],
    categories: &[],
    columns,
    cells,
    name_age: false,
    wide: 0,
    defaults,
    validate,
};

fn columns() -> Vec<Column> {
    vec![
        col("Name", "string", 0),
        col("Age", "string", 0),
        col("SignerName", "string", 0),
        col("Requestor", "string", 0),
        col("RequestedDuration", "string", 0),
        col("Condition", "string", 0),
    ]
}

/// kubectl's CONDITION: the condition types joined by commas (+ `Issued`), or `Pending`.
pub fn condition_text(obj: &Value) -> String {
    let mut out: Vec<String> = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| str_at(c, "/status") != "False")
        .map(|c| str_at(c, "/type").to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if !str_at(obj, "/status/certificate").is_empty() {
        out.push("Issued".into());
    }
    if out.is_empty() {
        "Pending".into()
    } else {
        out.join(",")
    }
}

fn cells(obj: &Value) -> Vec<Value> {
    let duration = obj
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .map_or("<none>".to_string(), human_duration);
    vec![
        json!(name_of(obj)),
        json!(age(obj)),
        json!(str_at(obj, "/spec/signerName")),
        json!(str_at(obj, "/spec/username")),
        json!(duration),
        json!(condition_text(obj)),
    ]
}

fn defaults(obj: &mut Value) {
    super::default_at(obj, &["status"], json!({}));
}

fn validate(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if str_at(obj, "/spec/request").is_empty() {
        errs.push(FieldError::required("spec.request"));
    }
    if str_at(obj, "/spec/signerName").is_empty() {
        errs.push(FieldError::required("spec.signerName"));
    }
    if obj
        .pointer("/spec/usages")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        errs.push(FieldError::required("spec.usages"));
    }
    for (i, c) in obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let t = str_at(c, "/type");
        if !matches!(t, "Approved" | "Denied" | "Failed") {
            errs.push(FieldError {
                field: format!("status.conditions[{i}].type"),
                reason: "FieldValueNotSupported",
                message: format!("Unsupported value: \"{t}\": supported values: \"Approved\", \"Denied\", \"Failed\""),
            });
        }
    }
    let has = |t: &str| {
        obj.pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().any(|c| str_at(c, "/type") == t))
    };
    if has("Approved") && has("Denied") {
        errs.push(FieldError::invalid(
            "status.conditions",
            "Approved, Denied",
            "Approved and Denied conditions are mutually exclusive",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_column() {
        assert_eq!(condition_text(&json!({})), "Pending");
        let ok = json!({"status": {"conditions": [{"type": "Approved", "status": "True"}], "certificate": "eA=="}});
        assert_eq!(condition_text(&ok), "Approved,Issued");
        let both = json!({"status": {"conditions": [{"type": "Approved"}, {"type": "Denied"}]}});
        assert!(!validate(&both).is_empty());
    }
}
