//! RBAC kinds (rbac.authorization.k8s.io/v1): Role, ClusterRole (table NAME CREATED AT),
//! RoleBinding, ClusterRoleBinding (table NAME ROLE AGE, wide USERS GROUPS SERVICEACCOUNTS);
//! bindings need a roleRef and well-formed subjects.

use serde_json::{json, Value};

use super::{name_of, no_defaults, str_at, FieldError, ResourceType};
use crate::api::table::{col, Column};

const GROUP: &str = "rbac.authorization.k8s.io";

/// Role (namespaced rules).
pub static ROLE: ResourceType = ResourceType {
    group: GROUP,
    version: "v1",
    plural: "roles",
    singular: "role",
    kind: "Role",
    namespaced: true,
    short_names: &[],
    categories: &[],
    columns: role_columns,
    cells: role_cells,
    name_age: false,
    wide: 0,
    defaults: no_defaults,
    validate: validate_role,
};

/// ClusterRole (cluster-wide rules).
pub static CLUSTER_ROLE: ResourceType = ResourceType {
    group: GROUP,
    version: "v1",
    plural: "clusterroles",
    singular: "clusterrole",
    kind: "ClusterRole",
    namespaced: false,
    short_names: &[],
    categories: &[],
    columns: role_columns,
    cells: role_cells,
    name_age: false,
    wide: 0,
    defaults: no_defaults,
    validate: validate_role,
};

/// RoleBinding (grants a Role or ClusterRole in one namespace).
pub static ROLE_BINDING: ResourceType = ResourceType {
    group: GROUP,
    version: "v1",
    plural: "rolebindings",
    singular: "rolebinding",
    kind: "RoleBinding",
    namespaced: true,
    short_names: &[],
    categories: &[],
    columns: binding_columns,
    cells: binding_cells,
    name_age: true,
    wide: 3,
    defaults: binding_defaults,
    validate: validate_binding,
};

/// ClusterRoleBinding (grants a ClusterRole everywhere).
pub static CLUSTER_ROLE_BINDING: ResourceType = ResourceType {
    group: GROUP,
    version: "v1",
    plural: "clusterrolebindings",
    singular: "clusterrolebinding",
    kind: "ClusterRoleBinding",
    namespaced: false,
    short_names: &[],
    categories: &[],
    columns: binding_columns,
    cells: binding_cells,
    name_age: true,
    wide: 3,
    defaults: binding_defaults,
    validate: validate_binding,
};

fn role_columns() -> Vec<Column> {
    vec![col("Name", "string", 0), col("Created At", "date", 0)]
}

fn role_cells(obj: &Value) -> Vec<Value> {
    vec![
        json!(name_of(obj)),
        json!(str_at(obj, "/metadata/creationTimestamp")),
    ]
}

fn validate_role(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(rules) = obj.get("rules").and_then(Value::as_array) {
        for (i, r) in rules.iter().enumerate() {
            let empty = |k: &str| r.get(k).and_then(Value::as_array).is_none_or(Vec::is_empty);
            if empty("verbs") {
                errs.push(FieldError::required(&format!("rules[{i}].verbs")));
            }
            if empty("nonResourceURLs") && empty("resources") {
                errs.push(FieldError::required(&format!("rules[{i}].resources")));
            }
        }
    }
    errs
}

fn binding_columns() -> Vec<Column> {
    vec![
        col("Name", "string", 0),
        col("Role", "string", 0),
        col("Age", "string", 0),
        col("Users", "string", 1),
        col("Groups", "string", 1),
        col("ServiceAccounts", "string", 1),
    ]
}

fn binding_cells(obj: &Value) -> Vec<Value> {
    let subjects = obj
        .get("subjects")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let of = |kind: &str| -> String {
        subjects
            .iter()
            .filter(|s| s.get("kind").and_then(Value::as_str) == Some(kind))
            .map(|s| {
                let name = str_at(s, "/name");
                if kind == "ServiceAccount" {
                    format!("{}/{name}", str_at(s, "/namespace"))
                } else {
                    name.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        json!(format!(
            "{}/{}",
            str_at(obj, "/roleRef/kind"),
            str_at(obj, "/roleRef/name")
        )),
        json!(of("User")),
        json!(of("Group")),
        json!(of("ServiceAccount")),
    ]
}

fn binding_defaults(obj: &mut Value) {
    if let Some(subjects) = obj.get_mut("subjects").and_then(Value::as_array_mut) {
        for s in subjects {
            let kind = str_at(s, "/kind").to_string();
            if kind == "User" || kind == "Group" {
                super::default_at(s, &["apiGroup"], json!(GROUP));
            }
        }
    }
    if let Some(r) = obj.get_mut("roleRef") {
        super::default_at(r, &["apiGroup"], json!(GROUP));
    }
}

fn validate_binding(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let kind = str_at(obj, "/roleRef/kind");
    let namespaced = !str_at(obj, "/metadata/namespace").is_empty();
    match kind {
        "" => errs.push(FieldError::required("roleRef.kind")),
        "ClusterRole" => {}
        "Role" if namespaced => {}
        other => errs.push(FieldError {
            field: "roleRef.kind".into(),
            reason: "FieldValueNotSupported",
            message: format!("Unsupported value: \"{other}\""),
        }),
    }
    if str_at(obj, "/roleRef/name").is_empty() {
        errs.push(FieldError::required("roleRef.name"));
    }
    if let Some(subjects) = obj.get("subjects").and_then(Value::as_array) {
        for (i, s) in subjects.iter().enumerate() {
            if str_at(s, "/name").is_empty() {
                errs.push(FieldError::required(&format!("subjects[{i}].name")));
            }
            match str_at(s, "/kind") {
                "User" | "Group" => {}
                "ServiceAccount" if namespaced || !str_at(s, "/namespace").is_empty() => {}
                "ServiceAccount" => {
                    errs.push(FieldError::required(&format!("subjects[{i}].namespace")))
                }
                other => errs.push(FieldError {
                    field: format!("subjects[{i}].kind"),
                    reason: "FieldValueNotSupported",
                    message: format!(
                        "Unsupported value: \"{other}\": supported values: \"ServiceAccount\", \"User\", \"Group\""
                    ),
                }),
            }
        }
    }
    errs
}
