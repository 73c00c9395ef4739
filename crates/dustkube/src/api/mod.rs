//! The HTTP API: [`app`] builds the axum router (health, discovery, OpenAPI, objects) around an
//! [`AppState`]; the modules below own one concern each.
//!
//! A request goes: authentication (the TLS layer put the client's [`Caller`] in the request
//! extensions) → [`authn::authenticate`] (certificate, bearer token or anonymous; impersonation;
//! non-resource authorization) → route → for objects, [`objects`] parses the path, asks the
//! [`Authorizer`](crate::auth::Authorizer), and talks to the [`Store`](crate::storage::Store).

pub mod authn;
pub mod binding;
pub mod deletion;
pub mod discovery;
pub mod eviction;
pub mod nodeport;
pub mod objects;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod proxy;
pub mod reviews;
pub mod scale;
pub mod selectors;
pub mod status;
pub mod table;
pub mod token_request;
pub mod watch;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Extension, Router};
use serde_json::{json, Value};

use crate::auth::serviceaccount::{SigningKey, VerifyKey};
use crate::auth::{Authorizer, User};
use crate::storage::Store;
use status::ApiError;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// Where objects live.
    pub store: Arc<dyn Store>,
    /// Who may do what.
    pub authorizer: Arc<dyn Authorizer>,
    /// Keys that verify service-account tokens (`--service-account-key-file`).
    pub sa_keys: Arc<Vec<VerifyKey>>,
    /// The key that signs requested service-account tokens
    /// (`--service-account-signing-key-file`; TokenRequest).
    pub sa_signer: Option<Arc<SigningKey>>,
}

impl AppState {
    /// State with no service-account keys (tokens then only from bootstrap Secrets).
    pub fn new(store: Arc<dyn Store>, authorizer: Arc<dyn Authorizer>) -> AppState {
        AppState {
            store,
            authorizer,
            sa_keys: Arc::new(Vec::new()),
            sa_signer: None,
        }
    }
}

/// The authenticated identity of a connection (`None`: no client certificate).
#[derive(Debug, Clone, Default)]
pub struct Caller(pub Option<User>);

/// A JSON response with status 200.
pub fn json_response(v: &Value) -> Response {
    json_status(StatusCode::OK, v)
}

/// A JSON response with the given status.
pub fn json_status(code: StatusCode, v: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// The router, without a socket (tests can drive it directly).
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route(
            "/version",
            get(|| async { json_response(&discovery::version()) }),
        )
        .route(
            "/api",
            get(|| async { json_response(&discovery::api_versions()) }),
        )
        .route(
            "/apis",
            get(|| async { json_response(&discovery::api_groups()) }),
        )
        .route("/api/{version}", get(core_resources))
        .route("/apis/{group}/{version}", get(group_resources))
        .route("/openapi/v2", get(openapi_v2))
        .route(
            "/openapi/v3",
            get(|| async { json_response(&openapi::v3_root()) }),
        )
        .route("/openapi/v3/{*gv}", get(openapi_v3))
        .route("/api/{version}/{*rest}", any(objects::core))
        .route("/apis/{group}/{version}/{*rest}", any(objects::grouped))
        .fallback(|req: Request| async move { ApiError::no_route(req.uri().path()) })
        // pods/log|exec|attach go to the node agent (after authentication, before routing).
        .layer(middleware::from_fn_with_state(
            state.clone(),
            proxy::intercept,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            authn::authenticate,
        ))
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.revision().await {
        Ok(_) => "ok".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readyz: storage not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "[-]etcd failed: storage unreachable\n",
            )
                .into_response()
        }
    }
}

async fn core_resources(Path(version): Path<String>) -> Response {
    match discovery::resource_list("", &version) {
        Some(v) => json_response(&v),
        None => ApiError::no_route(&format!("/api/{version}")).into_response(),
    }
}

async fn group_resources(Path((group, version)): Path<(String, String)>) -> Response {
    match discovery::resource_list(&group, &version) {
        Some(v) => json_response(&v),
        None => ApiError::no_route(&format!("/apis/{group}/{version}")).into_response(),
    }
}

async fn openapi_v2(headers: axum::http::HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("protobuf") {
        let ct = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
        return ([(header::CONTENT_TYPE, ct)], openapi::v2_protobuf()).into_response();
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi::v2_json(),
    )
        .into_response()
}

async fn openapi_v3(Path(gv): Path<String>) -> Response {
    match openapi::v3(gv.trim_matches('/')) {
        Some(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        None => ApiError::no_route(&format!("/openapi/v3/{gv}")).into_response(),
    }
}

/// The caller of a request (extension set by the server; tests set it by hand).
pub fn caller_of(ext: Option<Extension<Caller>>) -> Option<User> {
    ext.and_then(|Extension(c)| c.0)
}

/// An empty body (for HEAD-like answers).
pub fn empty() -> Body {
    Body::empty()
}

/// `{"kind": ..., "apiVersion": ...}` header of a list.
pub fn list_header(kind: &str, api_version: &str) -> Value {
    json!({"kind": format!("{kind}List"), "apiVersion": api_version})
}
