//! Secrets: `type` defaults to Opaque, `stringData` is folded into base64 `data`; table NAME TYPE DATA AGE.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use super::{configmaps::data_count, default_at, no_validation, str_at, ResourceType};
use crate::api::table::{col, Column};

/// The Secret kind.
pub static TYPE: ResourceType = ResourceType {
    group: "",
    version: "v1",
    plural: "secrets",
    singular: "secret",
    kind: "Secret",
    namespaced: true,
    short_names: &[],
    categories: &[],
    columns,
    cells,
    name_age: true,
    wide: 0,
    defaults,
    validate: no_validation,
};

fn columns() -> Vec<Column> {
    vec![
        col("Name", "string", 0),
        col("Type", "string", 0),
        col("Data", "string", 0),
        col("Age", "string", 0),
    ]
}

fn cells(obj: &Value) -> Vec<Value> {
    vec![json!(str_at(obj, "/type")), json!(data_count(obj))]
}

fn defaults(obj: &mut Value) {
    default_at(obj, &["type"], json!("Opaque"));
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    if let Some(Value::Object(sd)) = map.remove("stringData") {
        let data = map.entry("data").or_insert_with(|| json!({}));
        if let Some(d) = data.as_object_mut() {
            for (k, v) in sd {
                d.insert(k, json!(B64.encode(v.as_str().unwrap_or(""))));
            }
        }
    }
}
