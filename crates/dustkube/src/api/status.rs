//! API errors rendered as `metav1.Status` (`{"kind":"Status","status":"Failure","reason":...}`),
//! the one error type every handler returns.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::resources::{FieldError, ResourceType};
use crate::storage::StoreError;

/// An error answered to the client as a Status object.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `Forbidden`, ...
    pub reason: &'static str,
    /// Human message (kubectl prints it after "Error from server (Reason): ").
    pub message: String,
    /// `details` (name, group, kind, causes).
    pub details: Option<Value>,
}

/// `deployments.apps` or `pods`: how the API names a resource in messages.
pub fn qualified(rt: &ResourceType) -> String {
    if rt.group.is_empty() {
        rt.plural.to_string()
    } else {
        format!("{}.{}", rt.plural, rt.group)
    }
}

fn details(rt: &ResourceType, name: &str) -> Value {
    json!({"name": name, "group": rt.group, "kind": rt.plural})
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// 404 for one object.
    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        let mut e = Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(rt)),
        );
        e.details = Some(details(rt, name));
        e
    }

    /// 404 for a path the server does not serve.
    pub fn no_route(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    /// 409 on create of an existing object.
    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        let mut e = Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(rt)),
        );
        e.details = Some(details(rt, name));
        e
    }

    /// 409 on a stale resourceVersion.
    pub fn conflict(rt: &ResourceType, name: &str) -> Self {
        let mut e = Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                qualified(rt)
            ),
        );
        e.details = Some(details(rt, name));
        e
    }

    /// 422 with field causes.
    pub fn invalid(rt: &ResourceType, name: &str, errs: &[FieldError]) -> Self {
        let text: Vec<String> = errs
            .iter()
            .map(|f| format!("{}: {}", f.field, f.message))
            .collect();
        let message = format!("{} \"{name}\" is invalid: {}", rt.kind, text.join(", "));
        let causes: Vec<Value> = errs
            .iter()
            .map(|f| json!({"reason": f.reason, "message": f.message, "field": f.field}))
            .collect();
        let mut e = Self::new(422, "Invalid", message);
        e.details =
            Some(json!({"name": name, "group": rt.group, "kind": rt.kind, "causes": causes}));
        e
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 401 (no or unverified client certificate).
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 with Kubernetes' wording (list-style: no object name, no subresource).
    pub fn forbidden(user: &str, verb: &str, rt: &ResourceType, namespace: Option<&str>) -> Self {
        Self::forbidden_request(user, verb, rt, "", None, namespace)
    }

    /// 403 with Kubernetes' wording for any resource request:
    /// `pods "web" is forbidden: User "jane" cannot get resource "pods/log" in API group "" in
    /// the namespace "demo"`.
    pub fn forbidden_request(
        user: &str,
        verb: &str,
        rt: &ResourceType,
        sub: &str,
        name: Option<&str>,
        namespace: Option<&str>,
    ) -> Self {
        let scope = match namespace {
            Some(ns) if rt.namespaced && !ns.is_empty() => format!("in the namespace \"{ns}\""),
            _ => "at the cluster scope".into(),
        };
        let resource = if sub.is_empty() {
            rt.plural.to_string()
        } else {
            format!("{}/{sub}", rt.plural)
        };
        let subject = match name {
            Some(n) if !n.is_empty() => format!("{} \"{n}\"", qualified(rt)),
            _ => qualified(rt),
        };
        let mut e = Self::new(
            403,
            "Forbidden",
            format!(
                "{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{}\" {scope}",
                rt.group
            ),
        );
        let mut d = json!({"group": rt.group, "kind": rt.plural});
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            d["name"] = json!(n);
        }
        e.details = Some(d);
        e
    }

    /// 403 with a ready-made message.
    pub fn forbidden_message(message: String) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// 403 for a non-resource path.
    pub fn forbidden_path(user: &str, path: &str) -> Self {
        Self::new(
            403,
            "Forbidden",
            format!("forbidden: User \"{user}\" cannot get path \"{path}\""),
        )
    }

    /// 405.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    /// 410 (resourceVersion compacted).
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 415 (e.g. server-side apply, not supported yet).
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {content_type})"),
        )
    }

    /// 500; the cause is logged, not returned.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(
            500,
            "InternalError",
            "Internal error occurred: see the server log",
        )
    }

    /// Maps a store error for an object of kind `rt` named `name`.
    pub fn from_store(e: StoreError, rt: &ResourceType, name: &str) -> Self {
        match e {
            StoreError::NotFound(_) => Self::not_found(rt, name),
            StoreError::AlreadyExists(_) => Self::already_exists(rt, name),
            StoreError::Conflict { .. } => Self::conflict(rt, name),
            StoreError::Expired {
                requested,
                compacted,
            } => Self::expired(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            StoreError::Backend(m) => Self::internal(m),
        }
    }

    /// The Status object.
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            code,
            [(header::CONTENT_TYPE, "application/json")],
            self.status().to_string(),
        )
            .into_response()
    }
}

/// A successful Status (DELETE of most kinds answers this).
pub fn success(rt: &ResourceType, name: &str, uid: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": rt.group, "kind": rt.plural, "uid": uid},
    })
}
