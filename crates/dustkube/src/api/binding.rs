//! The `binding` subresource of pods (`POST .../pods/NAME/binding` with a v1 Binding): assigns
//! an unscheduled pod to a node — `spec.nodeName`, the Binding's annotations and the
//! `PodScheduled` condition — or answers 409 Conflict when the pod already has a node or is
//! being deleted. [`bind`] does the same for the in-process scheduler.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::deletion::{conflict_because, is_deleting};
use super::objects::{fetch, for_storage, present, Target};
use super::status::ApiError;
use super::table::now_rfc3339;
use super::{json_status, AppState};
use crate::resources::{pods, str_at};
use crate::storage::{StoreError, Stored};

/// Binds pod `namespace/pod` to `node` and returns the bound pod. Errors: NotFound, or
/// Conflict when the pod already runs on a node (even the same one) or is being deleted.
pub async fn bind(
    state: &AppState,
    namespace: &str,
    pod: &str,
    node: &str,
) -> Result<Value, ApiError> {
    assign(
        state,
        namespace,
        pod,
        node,
        &Map::new(),
        &Preconditions::default(),
        false,
    )
    .await
}

/// `metadata.uid` / `metadata.resourceVersion` a Binding may pin the pod to.
#[derive(Debug, Default)]
struct Preconditions {
    uid: Option<String>,
    resource_version: Option<String>,
}

/// Sets (or refreshes) a pod condition like the API's `UpdatePodCondition`: the transition
/// time changes only when the status does.
pub fn set_pod_condition(pod: &mut Value, type_: &str, status: &str, reason: &str, message: &str) {
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    if !pod["status"].get("conditions").is_some_and(Value::is_array) {
        pod["status"]["conditions"] = json!([]);
    }
    let now = now_rfc3339();
    let Some(conditions) = pod["status"]["conditions"].as_array_mut() else {
        return;
    };
    let mut wanted =
        json!({"type": type_, "status": status, "lastProbeTime": null, "lastTransitionTime": now});
    if !reason.is_empty() {
        wanted["reason"] = json!(reason);
    }
    if !message.is_empty() {
        wanted["message"] = json!(message);
    }
    match conditions.iter_mut().find(|c| c["type"] == type_) {
        Some(c) if c["status"] == status => {
            if !reason.is_empty() {
                c["reason"] = json!(reason);
            }
            if !message.is_empty() {
                c["message"] = json!(message);
            }
        }
        Some(c) => *c = wanted,
        None => conditions.push(wanted),
    }
}

async fn assign(
    state: &AppState,
    namespace: &str,
    pod: &str,
    node: &str,
    annotations: &Map<String, Value>,
    pre: &Preconditions,
    dry: bool,
) -> Result<Value, ApiError> {
    let rt = &pods::TYPE;
    let t = Target {
        rt,
        namespace: Some(namespace.to_string()),
        name: Some(pod.to_string()),
        sub: None,
    };
    for _ in 0..8 {
        let old = fetch(state, &t).await?;
        let mut obj = present(rt, &old);
        let uid = str_at(&obj, "/metadata/uid").to_string();
        if let Some(want) = pre.uid.as_deref().filter(|u| *u != uid) {
            return Err(conflict_because(
                "pods",
                pod,
                &format!(
                    "Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"
                ),
            ));
        }
        let rv = old.revision.to_string();
        if let Some(want) = pre.resource_version.as_deref().filter(|r| *r != rv) {
            return Err(conflict_because(
                "pods",
                pod,
                &format!("Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rv}"),
            ));
        }
        if is_deleting(&obj) {
            return Err(conflict_because(
                "pods/binding",
                pod,
                &format!("pod {pod} is being deleted, cannot be assigned to a host"),
            ));
        }
        let current = str_at(&obj, "/spec/nodeName");
        if !current.is_empty() {
            return Err(conflict_because(
                "pods/binding",
                pod,
                &format!("pod {pod} is already assigned to node \"{current}\""),
            ));
        }
        if obj
            .pointer("/spec/schedulingGates")
            .and_then(Value::as_array)
            .is_some_and(|g| !g.is_empty())
        {
            return Err(conflict_because(
                "pods/binding",
                pod,
                &format!("pod {pod} has non-empty .spec.schedulingGates"),
            ));
        }
        obj["spec"]["nodeName"] = json!(node);
        if !annotations.is_empty() {
            if !obj["metadata"]
                .get("annotations")
                .is_some_and(Value::is_object)
            {
                obj["metadata"]["annotations"] = json!({});
            }
            for (k, v) in annotations {
                obj["metadata"]["annotations"][k] = v.clone();
            }
        }
        set_pod_condition(&mut obj, "PodScheduled", "True", "", "");
        if dry {
            return Ok(obj);
        }
        match state
            .store
            .update(&old.key, &for_storage(&obj), Some(old.revision))
            .await
        {
            Ok(revision) => {
                tracing::info!(%namespace, %pod, %node, "bound");
                return Ok(present(
                    rt,
                    &Stored {
                        key: old.key,
                        value: obj,
                        revision,
                    },
                ));
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(ApiError::from_store(e, rt, pod)),
        }
    }
    Err(ApiError::conflict(rt, pod))
}

fn invalid_binding(name: &str, field: &str, reason: &'static str, message: String) -> ApiError {
    ApiError {
        code: 422,
        reason: "Invalid",
        message: format!("Binding \"{name}\" is invalid: {field}: {message}"),
        details: Some(json!({
            "name": name,
            "kind": "Binding",
            "causes": [{"reason": reason, "message": message, "field": field}],
        })),
    }
}

/// `POST .../pods/NAME/binding`: 201 with a success Status.
pub async fn handle(
    state: &AppState,
    t: &Target,
    params: &HashMap<String, String>,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let pod = t.name.as_deref().unwrap_or("");
    let binding = super::objects::subresource_body(body, pod, "Binding", "a")?;
    let node = str_at(&binding, "/target/name");
    if node.is_empty() {
        return Err(invalid_binding(
            pod,
            "target.name",
            "FieldValueRequired",
            "Required value".into(),
        ));
    }
    let kind = str_at(&binding, "/target/kind");
    if !kind.is_empty() && kind != "Node" {
        return Err(invalid_binding(
            pod,
            "target.kind",
            "FieldValueNotSupported",
            format!("Unsupported value: \"{kind}\": supported values: \"Node\", \"<empty>\""),
        ));
    }
    let annotations = binding
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let pre = Preconditions {
        uid: Some(str_at(&binding, "/metadata/uid").to_string()).filter(|s| !s.is_empty()),
        resource_version: Some(str_at(&binding, "/metadata/resourceVersion").to_string())
            .filter(|s| !s.is_empty()),
    };
    let dry = params.get("dryRun").is_some_and(|d| d == "All");
    let namespace = t.namespace.as_deref().unwrap_or("default");
    assign(state, namespace, pod, node, &annotations, &pre, dry).await?;
    Ok(json_status(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::api::objects::create_object;
    use crate::auth::MastersOnly;
    use crate::storage::memory::MemoryStore;

    #[tokio::test]
    async fn binds_once_then_conflicts() {
        let state = AppState::new(Arc::new(MemoryStore::new()), Arc::new(MastersOnly));
        crate::server::seed(&state).await.unwrap();
        let p = json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        create_object(&state, &pods::TYPE, Some("default"), p, false)
            .await
            .unwrap();
        let bound = bind(&state, "default", "web", "n1").await.unwrap();
        assert_eq!(bound["spec"]["nodeName"], "n1");
        let cond = &bound["status"]["conditions"][0];
        assert_eq!(
            (cond["type"].as_str(), cond["status"].as_str()),
            (Some("PodScheduled"), Some("True"))
        );
        let e = bind(&state, "default", "web", "n2").await.unwrap_err();
        assert_eq!(e.code, 409);
        assert_eq!(
            e.message,
            "Operation cannot be fulfilled on pods/binding \"web\": pod web is already assigned to node \"n1\""
        );
        assert_eq!(
            bind(&state, "default", "nope", "n1")
                .await
                .unwrap_err()
                .code,
            404
        );
    }

    #[test]
    fn conditions_keep_their_transition_time_when_unchanged() {
        let mut p = json!({"status": {"conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]}});
        set_pod_condition(&mut p, "PodScheduled", "True", "", "");
        assert_eq!(
            p["status"]["conditions"][0]["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
        set_pod_condition(&mut p, "PodScheduled", "False", "Unschedulable", "no nodes");
        assert_eq!(p["status"]["conditions"][0]["reason"], "Unschedulable");
        assert_ne!(
            p["status"]["conditions"][0]["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
        assert_eq!(p["status"]["conditions"].as_array().unwrap().len(), 1);
    }
}
