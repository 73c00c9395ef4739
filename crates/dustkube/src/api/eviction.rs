//! The `eviction` subresource of pods (`POST .../pods/NAME/eviction` with a policy/v1 Eviction,
//! what `kubectl drain` sends): marks the pod with the `DisruptionTarget` condition and deletes
//! it gracefully with the Eviction's DeleteOptions. PodDisruptionBudgets are not served, so an
//! eviction is always allowed. [`evict`] does the same in-process.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::binding::set_pod_condition;
use super::deletion::{self, is_deleting, DeleteOptions, Outcome};
use super::objects::{fetch, for_storage, present, Target};
use super::status::ApiError;
use super::{json_status, AppState};
use crate::resources::pods;
use crate::storage::StoreError;

/// Evicts pod `namespace/pod`: the `DisruptionTarget` condition (reason
/// `EvictionByEvictionAPI`), then a delete with `opts` (graceful for a pod on a node).
pub async fn evict(
    state: &AppState,
    namespace: &str,
    pod: &str,
    opts: &DeleteOptions,
) -> Result<Outcome, ApiError> {
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
        if is_deleting(&obj) || opts.dry_run {
            break;
        }
        set_pod_condition(
            &mut obj,
            "DisruptionTarget",
            "True",
            "EvictionByEvictionAPI",
            "Eviction API: evicting",
        );
        match state
            .store
            .update(&old.key, &for_storage(&obj), Some(old.revision))
            .await
        {
            Ok(_) => break,
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(ApiError::from_store(e, rt, pod)),
        }
    }
    let outcome = deletion::delete(state, &t, opts).await?;
    tracing::info!(%namespace, %pod, removed = outcome.removed, "evicted");
    Ok(outcome)
}

/// `POST .../pods/NAME/eviction`: 201 with a success Status.
pub async fn handle(
    state: &AppState,
    t: &Target,
    params: &HashMap<String, String>,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let pod = t.name.as_deref().unwrap_or("");
    let eviction = super::objects::subresource_body(body, pod, "Eviction", "an")?;
    let mut options = eviction
        .get("deleteOptions")
        .cloned()
        .filter(|o| !o.is_null())
        .unwrap_or(json!({}));
    if params.get("dryRun").is_some_and(|d| d == "All") {
        options["dryRun"] = json!(["All"]);
    }
    let opts = DeleteOptions::from_json(&options)?;
    let namespace = t.namespace.as_deref().unwrap_or("default");
    evict(state, namespace, pod, &opts).await?;
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
    async fn eviction_deletes_gracefully_with_a_disruption_condition() {
        let state = AppState::new(Arc::new(MemoryStore::new()), Arc::new(MastersOnly));
        crate::server::seed(&state).await.unwrap();
        let p = json!({"metadata": {"name": "web"},
                       "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}});
        create_object(&state, &pods::TYPE, Some("default"), p, false)
            .await
            .unwrap();
        let out = evict(&state, "default", "web", &DeleteOptions::default())
            .await
            .unwrap();
        assert!(!out.removed, "a pod on a node gets its grace period");
        let pod = &out.response;
        assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 30);
        let cond = pod["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "DisruptionTarget")
            .unwrap();
        assert_eq!(cond["reason"], "EvictionByEvictionAPI");
        assert_eq!(
            evict(&state, "default", "nope", &DeleteOptions::default())
                .await
                .unwrap_err()
                .code,
            404
        );
    }
}
