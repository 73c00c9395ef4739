//! The `scale` subresource of Deployments and ReplicaSets (`kubectl scale`): an autoscaling/v1
//! Scale view of `spec.replicas`, readable, replaceable and patchable.

use axum::body::Bytes;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use serde_json::{json, Value};

use super::objects::{fetch, present, write_update, Target};
use super::patch::{self, PatchType};
use super::selectors::labels_text;
use super::status::ApiError;
use super::{json_response, AppState};
use crate::storage::Stored;

/// The Scale object of a stored Deployment or ReplicaSet.
pub fn scale_of(obj: &Value) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    let pick = |k: &str| meta.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": pick("name"),
            "namespace": pick("namespace"),
            "uid": pick("uid"),
            "resourceVersion": pick("resourceVersion"),
            "creationTimestamp": pick("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": labels_text(obj.pointer("/spec/selector/matchLabels")),
        },
    })
}

/// GET, PUT or PATCH on `.../<name>/scale`.
pub async fn handle(
    state: &AppState,
    t: &Target,
    verb: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let name = t.name.clone().unwrap_or_default();
    for _ in 0..5 {
        let old: Stored = fetch(state, t).await?;
        let current = present(t.rt, &old);
        let scale = scale_of(&current);
        let wanted = match verb {
            "get" => return Ok(json_response(&scale)),
            "update" => serde_json::from_slice::<Value>(body)
                .map_err(|e| ApiError::bad_request(format!("invalid Scale: {e}")))?,
            _ => {
                let ct = headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let ty = PatchType::from_content_type(ct)
                    .ok_or_else(|| ApiError::unsupported_media_type(ct))?;
                patch::apply(&scale, body, ty).map_err(ApiError::bad_request)?
            }
        };
        let replicas = wanted
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .ok_or_else(|| ApiError::bad_request("Scale spec.replicas must be an integer"))?;
        let expected = match wanted
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
        {
            Some(rv) if !rv.is_empty() && rv != old.revision.to_string() => {
                return Err(ApiError::conflict(t.rt, &name))
            }
            _ => old.revision,
        };
        let mut new = current.clone();
        new["spec"]["replicas"] = json!(replicas);
        let main = Target {
            rt: t.rt,
            namespace: t.namespace.clone(),
            name: t.name.clone(),
            sub: None,
        };
        match write_update(state, &main, &old, new, Some(expected), false).await {
            Ok(v) => return Ok(json_response(&scale_of(&v))),
            Err(e) if e.reason == "Conflict" => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(t.rt, &name))
}
