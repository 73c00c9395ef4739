//! The in-process API client controllers use: the same create/update/delete paths as HTTP
//! requests (defaulting, validation, optimistic concurrency, deletion semantics), without the
//! network or authorization (controllers run as the server itself).

use serde_json::{json, Value};

use crate::api::objects::{self, Target};
use crate::api::status::ApiError;
use crate::api::table::now_rfc3339;
use crate::api::AppState;
use crate::resources::{self, name_of, str_at, ResourceType};
use crate::storage::{EventStream, StoreError};

/// A handle on the API for code running inside the server.
#[derive(Clone)]
pub struct Client {
    state: AppState,
    component: &'static str,
}

fn namespace_of(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn target(
    rt: &'static ResourceType,
    namespace: Option<&str>,
    name: &str,
    sub: Option<&str>,
) -> Target {
    Target {
        rt,
        namespace: namespace.map(String::from),
        name: Some(name.to_string()),
        sub: sub.map(String::from),
    }
}

impl Client {
    /// A client acting as `component` (the `source.component` of the Events it records).
    pub fn new(state: AppState, component: &'static str) -> Client {
        Client { state, component }
    }

    /// The same client under another component name.
    pub fn as_component(&self, component: &'static str) -> Client {
        Client {
            state: self.state.clone(),
            component,
        }
    }

    /// The server state (store, authorizer) behind this client.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// One object, or `None` when absent.
    pub async fn get(
        &self,
        rt: &'static ResourceType,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, ApiError> {
        match objects::fetch(&self.state, &target(rt, namespace, name, None)).await {
            Ok(stored) => Ok(Some(objects::present(rt, &stored))),
            Err(e) if e.reason == "NotFound" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Objects of a kind (in `namespace`, or everywhere) matching a label selector (`""`: all),
    /// with the revision the list was read at.
    pub async fn list(
        &self,
        rt: &'static ResourceType,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> Result<(Vec<Value>, u64), ApiError> {
        let mut params = std::collections::HashMap::new();
        if !label_selector.is_empty() {
            params.insert("labelSelector".to_string(), label_selector.to_string());
        }
        let (items, revision, _) = objects::collect(&self.state, rt, namespace, &params).await?;
        Ok((items, revision))
    }

    /// Creates an object (namespace from the object, `default` when unset for namespaced kinds).
    pub async fn create(&self, rt: &'static ResourceType, obj: Value) -> Result<Value, ApiError> {
        let ns = namespace_of(&obj).map(String::from);
        objects::create_object(&self.state, rt, ns.as_deref(), obj, false).await
    }

    /// Replaces an object; its `metadata.resourceVersion`, when set, must be current (else
    /// `Conflict`). Status is kept from the stored object (use [`Client::update_status`]).
    pub async fn update(&self, rt: &'static ResourceType, obj: Value) -> Result<Value, ApiError> {
        self.write(rt, obj, None).await
    }

    /// Replaces only the status of an object (the `status` subresource).
    pub async fn update_status(
        &self,
        rt: &'static ResourceType,
        obj: Value,
    ) -> Result<Value, ApiError> {
        self.write(rt, obj, Some("status")).await
    }

    async fn write(
        &self,
        rt: &'static ResourceType,
        obj: Value,
        sub: Option<&str>,
    ) -> Result<Value, ApiError> {
        let t = target(rt, namespace_of(&obj), name_of(&obj), sub);
        let old = objects::fetch(&self.state, &t).await?;
        let expected = match str_at(&obj, "/metadata/resourceVersion") {
            "" => old.revision,
            rv => rv
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv}")))?,
        };
        if expected != old.revision {
            return Err(ApiError::conflict(rt, name_of(&obj)));
        }
        objects::write_update(&self.state, &t, &old, obj, Some(expected), false).await
    }

    /// Deletes an object with Kubernetes DeleteOptions (`{}` for the defaults); returns what
    /// the API would answer (the object while it is being finalized, or a Status).
    pub async fn delete(
        &self,
        rt: &'static ResourceType,
        namespace: Option<&str>,
        name: &str,
        options: &Value,
    ) -> Result<Value, ApiError> {
        objects::delete_object(&self.state, &target(rt, namespace, name, None), options).await
    }

    /// The store's current revision (start watches from it + 1 after a list).
    pub async fn revision(&self) -> Result<u64, StoreError> {
        self.state.store.revision().await
    }

    /// Raw changes to objects of a kind from revision `from` on.
    pub async fn watch(
        &self,
        rt: &'static ResourceType,
        from: u64,
    ) -> Result<EventStream, StoreError> {
        self.state.store.watch(&rt.prefix(None), from).await
    }

    /// Records an Event about `object` (`Normal` or `Warning`), like kubectl describe shows.
    /// Failures are logged, never returned: events are best effort.
    pub async fn event(&self, object: &Value, type_: &str, reason: &str, message: &str) {
        let ns = namespace_of(object).unwrap_or("default").to_string();
        let now = now_rfc3339();
        let ev = json!({
            "metadata": {"generateName": format!("{}.", name_of(object)), "namespace": ns},
            "involvedObject": {
                "kind": str_at(object, "/kind"),
                "apiVersion": str_at(object, "/apiVersion"),
                "namespace": namespace_of(object).unwrap_or(""),
                "name": name_of(object),
                "uid": str_at(object, "/metadata/uid"),
                "resourceVersion": str_at(object, "/metadata/resourceVersion"),
            },
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        });
        if let Err(e) = self.create(&resources::events::TYPE, ev).await {
            tracing::debug!(reason, error = %e.message, "cannot record event");
        }
    }
}
