//! Kinds that are answered, not stored: SelfSubjectAccessReview (`kubectl auth can-i`),
//! SelfSubjectRulesReview (`kubectl auth can-i --list`) and ComponentStatus (`kubectl get
//! componentstatuses`, computed from etcd's health).

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::objects::Target;
use super::status::ApiError;
use super::table::{self, Include};
use super::{json_response, json_status, AppState};
use crate::auth::rbac::Rule;
use crate::auth::{Attributes, Decision, User};
use crate::resources::{componentstatuses, str_at};

/// Answers a request for a non-stored kind (the caller is already authorized for `verb`).
pub async fn handle(
    state: &AppState,
    user: &User,
    t: &Target,
    verb: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let result = match (t.rt.plural, verb) {
        ("componentstatuses", "get" | "list") => component_statuses(state, t, headers).await,
        ("selfsubjectaccessreviews", "create") => access_review(state, user, body).await,
        ("selfsubjectrulesreviews", "create") => rules_review(state, user, body).await,
        (_, verb) => Err(ApiError::method_not_allowed(format!(
            "{verb} is not supported on {}",
            t.rt.plural
        ))),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

fn parse(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

fn answer(kind: &str, mut review: Value, status: Value) -> Response {
    if let Some(m) = review.as_object_mut() {
        m.insert("kind".into(), json!(kind));
        m.insert("apiVersion".into(), json!("authorization.k8s.io/v1"));
        m.entry("metadata").or_insert_with(|| json!({}));
        m.insert("status".into(), status);
    }
    json_status(StatusCode::CREATED, &review)
}

async fn access_review(state: &AppState, user: &User, body: &Bytes) -> Result<Response, ApiError> {
    let review = parse(body)?;
    let attrs = if let Some(r) = review.pointer("/spec/resourceAttributes") {
        let ns = str_at(r, "/namespace");
        let name = str_at(r, "/name");
        Attributes {
            verb: str_at(r, "/verb").into(),
            group: str_at(r, "/group").into(),
            resource: str_at(r, "/resource").into(),
            subresource: str_at(r, "/subresource").into(),
            namespace: (!ns.is_empty()).then(|| ns.to_string()),
            name: (!name.is_empty()).then(|| name.to_string()),
            path: None,
        }
    } else if let Some(n) = review.pointer("/spec/nonResourceAttributes") {
        Attributes {
            verb: str_at(n, "/verb").into(),
            group: String::new(),
            resource: String::new(),
            subresource: String::new(),
            namespace: None,
            name: None,
            path: Some(str_at(n, "/path").into()),
        }
    } else {
        return Err(ApiError::bad_request(
            "exactly one of spec.resourceAttributes and spec.nonResourceAttributes must be set",
        ));
    };
    let allowed = state.authorizer.authorize(user, &attrs).await == Decision::Allow;
    tracing::debug!(user = %user.name, verb = %attrs.verb, resource = %attrs.resource, allowed, "access review");
    let status = if allowed {
        json!({"allowed": true, "reason": "RBAC: allowed"})
    } else {
        json!({"allowed": false})
    };
    Ok(answer("SelfSubjectAccessReview", review, status))
}

async fn rules_review(state: &AppState, user: &User, body: &Bytes) -> Result<Response, ApiError> {
    let review = parse(body)?;
    let ns = str_at(&review, "/spec/namespace").to_string();
    let status = match state.authorizer.rules(user, &ns).await {
        Ok(rules) => rules_status(&rules),
        Err(e) => {
            json!({"resourceRules": [], "nonResourceRules": [], "incomplete": true, "evaluationError": e})
        }
    };
    Ok(answer("SelfSubjectRulesReview", review, status))
}

/// SubjectRulesReviewStatus for a rule list: resource rules and non-resource rules apart, each
/// rule once (several roles grant `/healthz`).
pub fn rules_status(rules: &[Rule]) -> Value {
    let mut resource = Vec::new();
    let mut non_resource = Vec::new();
    for r in rules {
        if !r.resources.is_empty() {
            let mut v =
                json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources});
            if !r.resource_names.is_empty() {
                v["resourceNames"] = json!(r.resource_names);
            }
            if !resource.contains(&v) {
                resource.push(v);
            }
        }
        if !r.non_resource_urls.is_empty() {
            let v = json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls});
            if !non_resource.contains(&v) {
                non_resource.push(v);
            }
        }
    }
    json!({"resourceRules": resource, "nonResourceRules": non_resource, "incomplete": false})
}

/// The three ComponentStatus objects; etcd-0 reflects whether the store answers.
pub async fn statuses(state: &AppState) -> Vec<Value> {
    let etcd = match state.store.revision().await {
        Ok(_) => componentstatuses::object("etcd-0", true, "ok", ""),
        Err(e) => componentstatuses::object("etcd-0", false, "", &e.to_string()),
    };
    vec![
        componentstatuses::object("scheduler", true, "ok", ""),
        componentstatuses::object("controller-manager", true, "ok", ""),
        etcd,
    ]
}

async fn component_statuses(
    state: &AppState,
    t: &Target,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let mut items = statuses(state).await;
    if let Some(name) = &t.name {
        items.retain(|o| crate::resources::name_of(o) == name);
        if items.is_empty() {
            return Err(ApiError::not_found(t.rt, name));
        }
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let body = if table::wants_table(accept) {
        table::table(t.rt, &items, json!({}), Include::Metadata)
    } else if t.name.is_some() {
        items.remove(0)
    } else {
        json!({"kind": "ComponentStatusList", "apiVersion": "v1", "metadata": {}, "items": items})
    };
    let mut resp = json_response(&body);
    resp.headers_mut().insert(
        header::WARNING,
        HeaderValue::from_static("299 - \"v1 ComponentStatus is deprecated in v1.19+\""),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_split_by_kind() {
        let mut named = Rule::resource(&["get"], &[""], &["configmaps"]);
        named.resource_names = vec!["cluster-info".into()];
        let v = Rule::urls(&["get"], &["/version"]);
        let s = rules_status(&[named, v.clone(), v]);
        assert_eq!(
            s["resourceRules"],
            json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cluster-info"]}])
        );
        assert_eq!(
            s["nonResourceRules"],
            json!([{"verbs": ["get"], "nonResourceURLs": ["/version"]}])
        );
    }
}
