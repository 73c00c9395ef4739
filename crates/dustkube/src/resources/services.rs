//! Services: type ClusterIP, port protocol and targetPort defaults; table NAME TYPE CLUSTER-IP
//! EXTERNAL-IP PORT(S) AGE, wide SELECTOR. Cluster IPs are allocated by the API layer.

use serde_json::{json, Value};

use super::{default_at, selector_text, str_at, FieldError, ResourceType};
use crate::api::table::{col, Column};

/// The Service kind.
pub static TYPE: ResourceType = ResourceType {
    group: "",
    version: "v1",
    plural: "services",
    singular: "service",
    kind: "Service",
    namespaced: true,
    short_names: &["svc"],
    categories: &["all"],
    columns,
    cells,
    name_age: true,
    wide: 1,
    defaults,
    validate,
};

fn columns() -> Vec<Column> {
    vec![
        col("Name", "string", 0),
        col("Type", "string", 0),
        col("Cluster-IP", "string", 0),
        col("External-IP", "string", 0),
        col("Port(s)", "string", 0),
        col("Age", "string", 0),
        col("Selector", "string", 1),
    ]
}

/// `80/TCP,443:30443/TCP` as kubectl prints ports.
pub fn ports_text(obj: &Value) -> String {
    let ports = obj
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if ports.is_empty() {
        return "<none>".into();
    }
    ports
        .iter()
        .map(|p| {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(np) => format!("{port}:{np}/{proto}"),
                None => format!("{port}/{proto}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn cells(obj: &Value) -> Vec<Value> {
    let ty = str_at(obj, "/spec/type");
    let external: Vec<String> = obj
        .pointer("/spec/externalIPs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let external = if !external.is_empty() {
        external.join(",")
    } else if ty == "LoadBalancer" {
        "<pending>".into()
    } else if ty == "ExternalName" {
        str_at(obj, "/spec/externalName").to_string()
    } else {
        "<none>".into()
    };
    let cluster_ip = match str_at(obj, "/spec/clusterIP") {
        "" => "<none>",
        ip => ip,
    };
    vec![
        json!(ty),
        json!(cluster_ip),
        json!(external),
        json!(ports_text(obj)),
        json!(selector_text(obj.pointer("/spec/selector"))),
    ]
}

fn defaults(obj: &mut Value) {
    default_at(obj, &["spec", "type"], json!("ClusterIP"));
    default_at(obj, &["spec", "sessionAffinity"], json!("None"));
    default_at(obj, &["spec", "ipFamilies"], json!(["IPv4"]));
    default_at(obj, &["spec", "ipFamilyPolicy"], json!("SingleStack"));
    default_at(obj, &["spec", "internalTrafficPolicy"], json!("Cluster"));
    default_at(obj, &["status", "loadBalancer"], json!({}));
    if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for p in ports {
            default_at(p, &["protocol"], json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                default_at(p, &["targetPort"], port);
            }
        }
    }
}

fn validate(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ty = str_at(obj, "/spec/type");
    if !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].contains(&ty) {
        errs.push(FieldError::invalid(
            "spec.type",
            ty,
            "supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
        ));
    }
    if let Some(ports) = obj.pointer("/spec/ports").and_then(Value::as_array) {
        for (i, p) in ports.iter().enumerate() {
            if p.get("port").and_then(Value::as_i64).unwrap_or(0) <= 0 {
                errs.push(FieldError::required(&format!("spec.ports[{i}].port")));
            }
        }
    }
    errs
}
