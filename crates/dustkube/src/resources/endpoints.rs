//! Endpoints: table NAME ENDPOINTS AGE (`ip:port` pairs, the first three then `+ N more...`).

use serde_json::{json, Value};

use super::{no_defaults, no_validation, ResourceType};
use crate::api::table::{col, Column};

/// The Endpoints kind.
pub static TYPE: ResourceType = ResourceType {
    group: "",
    version: "v1",
    plural: "endpoints",
    singular: "endpoints",
    kind: "Endpoints",
    namespaced: true,
    short_names: &["ep"],
    categories: &[],
    columns,
    cells,
    name_age: true,
    wide: 0,
    defaults: no_defaults,
    validate: no_validation,
};

fn columns() -> Vec<Column> {
    vec![
        col("Name", "string", 0),
        col("Endpoints", "string", 0),
        col("Age", "string", 0),
    ]
}

/// kubectl's ENDPOINTS text for a list of subsets.
pub fn endpoints_text(obj: &Value) -> String {
    let mut all = Vec::new();
    for s in obj
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let ips: Vec<&str> = s
            .get("addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| a.get("ip").and_then(Value::as_str))
            .collect();
        let ports: Vec<i64> = s
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("port").and_then(Value::as_i64))
            .collect();
        for ip in ips {
            if ports.is_empty() {
                all.push(ip.to_string());
            }
            for p in &ports {
                all.push(format!("{ip}:{p}"));
            }
        }
    }
    match all.len() {
        0 => "<none>".into(),
        n if n > 3 => format!("{} + {} more...", all[..3].join(","), n - 3),
        _ => all.join(","),
    }
}

fn cells(obj: &Value) -> Vec<Value> {
    vec![json!(endpoints_text(obj))]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_column() {
        let ep = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}]}]});
        assert_eq!(endpoints_text(&ep), "10.0.0.1:80,10.0.0.2:80");
        assert_eq!(endpoints_text(&json!({})), "<none>");
        let many = json!({"subsets": [{"addresses": [{"ip": "a"}, {"ip": "b"}, {"ip": "c"}, {"ip": "d"}], "ports": [{"port": 1}]}]});
        assert_eq!(endpoints_text(&many), "a:1,b:1,c:1 + 1 more...");
    }
}
