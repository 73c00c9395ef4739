//! authorization.k8s.io/v1 SelfSubjectAccessReview and SelfSubjectRulesReview: create-only,
//! never stored; answered by [`crate::api::reviews`] (`kubectl auth can-i`, `--list`).

use serde_json::Value;

use super::{no_defaults, no_validation, ResourceType};
use crate::api::table::{col, Column};

fn columns() -> Vec<Column> {
    vec![col("Name", "string", 0), col("Age", "string", 0)]
}

fn cells(_: &Value) -> Vec<Value> {
    Vec::new()
}

/// SelfSubjectAccessReview: may I do this?
pub static ACCESS: ResourceType = ResourceType {
    group: "authorization.k8s.io",
    version: "v1",
    plural: "selfsubjectaccessreviews",
    singular: "",
    kind: "SelfSubjectAccessReview",
    namespaced: false,
    short_names: &[],
    categories: &[],
    columns,
    cells,
    name_age: true,
    wide: 0,
    defaults: no_defaults,
    validate: no_validation,
};

/// SelfSubjectRulesReview: what may I do in a namespace?
pub static RULES: ResourceType = ResourceType {
    group: "authorization.k8s.io",
    version: "v1",
    plural: "selfsubjectrulesreviews",
    singular: "",
    kind: "SelfSubjectRulesReview",
    namespaced: false,
    short_names: &[],
    categories: &[],
    columns,
    cells,
    name_age: true,
    wide: 0,
    defaults: no_defaults,
    validate: no_validation,
};
