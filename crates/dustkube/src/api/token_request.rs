//! The `serviceaccounts/<name>/token` subresource (authentication.k8s.io/v1 TokenRequest, what
//! `kubectl create token` calls): a service-account JWT signed with
//! `--service-account-signing-key-file`, for an existing ServiceAccount.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};

use super::objects::{fetch, Target};
use super::status::ApiError;
use super::{json_status, AppState};
use crate::auth::serviceaccount::claims;
use crate::resources::{str_at, FieldError};

/// Lifetime when the request names none (the real API's default).
const DEFAULT_SECONDS: i64 = 3600;
/// The shortest lifetime the API accepts.
const MIN_SECONDS: i64 = 600;

/// Answers POST `.../serviceaccounts/NAME/token`.
pub async fn handle(
    state: &AppState,
    t: &Target,
    _params: &HashMap<String, String>,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let Some(signer) = state.sa_signer.as_ref() else {
        return Err(ApiError::internal(
            "no service-account signing key (--service-account-signing-key-file)",
        ));
    };
    let mut req: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
        })?
    };
    let sa = fetch(state, t).await?;
    let ns = t.namespace.as_deref().unwrap_or("default");
    let name = t.name.as_deref().unwrap_or("");
    let seconds = match req.pointer("/spec/expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_SECONDS,
        Some(v) => v.as_i64().unwrap_or(0),
    };
    if seconds < MIN_SECONDS {
        return Err(ApiError::invalid(
            t.rt,
            name,
            &[FieldError::invalid(
                "spec.expirationSeconds",
                &seconds.to_string(),
                "may not specify a duration less than 10 minutes",
            )],
        ));
    }
    let now = Utc::now().timestamp();
    let mut c = claims(ns, name, str_at(&sa.value, "/metadata/uid"), now, seconds);
    if let Some(auds) = req
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    {
        c["aud"] = Value::Array(auds.clone());
    }
    let token = signer.sign(&c).map_err(ApiError::internal)?;
    let expires = Utc
        .timestamp_opt(now + seconds, 0)
        .single()
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    req["kind"] = json!("TokenRequest");
    req["apiVersion"] = json!("authentication.k8s.io/v1");
    req["metadata"] = json!({"name": name, "namespace": ns, "creationTimestamp": null});
    req["spec"]["expirationSeconds"] = json!(seconds);
    req["spec"]["audiences"] = c["aud"].clone();
    req["status"] = json!({"token": token, "expirationTimestamp": expires});
    Ok(json_status(StatusCode::CREATED, &req))
}
