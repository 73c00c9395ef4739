//! Events (core/v1): table LAST SEEN TYPE REASON OBJECT MESSAGE, like `kubectl get events`.

use serde_json::{json, Value};

use super::{no_defaults, no_validation, str_at, ResourceType};
use crate::api::table::{col, human_age_since, Column};

/// The Event kind.
pub static TYPE: ResourceType = ResourceType {
    group: "",
    version: "v1",
    plural: "events",
    singular: "event",
    kind: "Event",
    namespaced: true,
    short_names: &["ev"],
    categories: &[],
    columns,
    cells,
    name_age: false,
    wide: 0,
    defaults: no_defaults,
    validate: no_validation,
};

fn columns() -> Vec<Column> {
    vec![
        col("Last Seen", "string", 0),
        col("Type", "string", 0),
        col("Reason", "string", 0),
        col("Object", "string", 0),
        col("Message", "string", 0),
    ]
}

fn cells(obj: &Value) -> Vec<Value> {
    let last = [
        "/lastTimestamp",
        "/eventTime",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .map(|p| str_at(obj, p))
    .find(|s| !s.is_empty())
    .unwrap_or("");
    let object = format!(
        "{}/{}",
        str_at(obj, "/involvedObject/kind").to_lowercase(),
        str_at(obj, "/involvedObject/name")
    );
    vec![
        json!(human_age_since(last)),
        json!(str_at(obj, "/type")),
        json!(str_at(obj, "/reason")),
        json!(object),
        json!(str_at(obj, "/message")),
    ]
}
