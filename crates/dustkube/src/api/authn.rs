//! The authentication gate in front of every route: client certificate (put in the request by
//! the TLS layer as a [`Caller`]), else a Bearer token (bootstrap token or service-account JWT),
//! else anonymous; then impersonation (`Impersonate-User`/`Impersonate-Group`, allowed when the
//! caller may `impersonate` them) and authorization of non-resource paths (`/version`, `/api`,
//! discovery, OpenAPI). Resource paths are authorized by [`super::objects`].

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::status::ApiError;
use super::{AppState, Caller};
use crate::auth::{bootstrap, serviceaccount, Attributes, Decision, User};

/// Paths anyone may read without credentials.
pub const PUBLIC: &[&str] = &["/livez", "/readyz", "/healthz"];

/// The only object anonymous callers may reach (RBAC still decides).
const CLUSTER_INFO: &str = "/api/v1/namespaces/kube-public/configmaps/cluster-info";

/// The anonymous user.
pub fn anonymous() -> User {
    User {
        name: "system:anonymous".into(),
        groups: vec!["system:unauthenticated".into()],
    }
}

/// Whether `path` addresses resources (`/api/v1/...`, `/apis/<g>/<v>/...`), which the object
/// handlers authorize; everything else is a non-resource URL.
pub fn is_resource_path(path: &str) -> bool {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.first() {
        Some(&"api") => segs.len() >= 3,
        Some(&"apis") => segs.len() >= 4,
        _ => false,
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// The user a bearer token authenticates, or why not.
pub async fn authenticate_token(state: &AppState, token: &str) -> Result<User, String> {
    if let Some(u) = bootstrap::authenticate(state.store.as_ref(), token).await? {
        return Ok(u);
    }
    if serviceaccount::looks_like_jwt(token) {
        if state.sa_keys.is_empty() {
            return Err("no service-account key configured".into());
        }
        let now = chrono::Utc::now().timestamp();
        let id = serviceaccount::verify(token, &state.sa_keys, now)?;
        let key = format!("/registry/serviceaccounts/{}/{}", id.namespace, id.name);
        let sa = state
            .store
            .get(&key)
            .await
            .map_err(|e| format!("reading service account: {e}"))?
            .ok_or_else(|| format!("service account {}/{} not found", id.namespace, id.name))?;
        if let Some(uid) = &id.uid {
            if crate::resources::str_at(&sa.value, "/metadata/uid") != uid {
                return Err("service account was recreated (uid differs)".into());
            }
        }
        return Ok(id.user());
    }
    Err("unknown bearer token".into())
}

/// Applies impersonation headers: the impersonated user, or the caller unchanged; Forbidden if
/// the caller may not impersonate.
pub async fn impersonate(
    state: &AppState,
    caller: User,
    headers: &HeaderMap,
) -> Result<User, ApiError> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(String::from)
            .collect()
    };
    let users = values("impersonate-user");
    let groups = values("impersonate-group");
    let Some(name) = users.first().cloned() else {
        if groups.is_empty() {
            return Ok(caller);
        }
        return Err(ApiError::bad_request(
            "requested impersonation of groups without impersonating a user",
        ));
    };
    let check = |resource: &str, name: &str, namespace: Option<String>| Attributes {
        verb: "impersonate".into(),
        group: String::new(),
        resource: resource.into(),
        subresource: String::new(),
        namespace,
        name: Some(name.into()),
        path: None,
    };
    let sa = name
        .strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'))
        .map(|(ns, n)| (ns.to_string(), n.to_string()));
    let mut wanted = vec![match &sa {
        Some((ns, n)) => check("serviceaccounts", n, Some(ns.clone())),
        None => check("users", &name, None),
    }];
    wanted.extend(groups.iter().map(|g| check("groups", g, None)));
    for attrs in wanted {
        if let Decision::Deny(_) = state.authorizer.authorize(&caller, &attrs).await {
            let target = attrs.name.clone().unwrap_or_default();
            let scope = match &attrs.namespace {
                Some(ns) => format!("in the namespace \"{ns}\""),
                None => "at the cluster scope".into(),
            };
            return Err(ApiError::forbidden_message(format!(
                "{} \"{target}\" is forbidden: User \"{}\" cannot impersonate resource \"{}\" in API group \"\" {scope}",
                attrs.resource, caller.name, attrs.resource
            )));
        }
    }
    let mut out_groups = groups;
    if let Some((ns, _)) = &sa {
        for g in [
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{ns}"),
        ] {
            if !out_groups.contains(&g) {
                out_groups.push(g);
            }
        }
    }
    if name != "system:anonymous" && !out_groups.iter().any(|g| g == "system:authenticated") {
        out_groups.push("system:authenticated".into());
    }
    tracing::debug!(caller = %caller.name, as_user = %name, "impersonating");
    Ok(User {
        name,
        groups: out_groups,
    })
}

/// Answers `err` after reading (up to 1 MiB of) the unread request body, so that the client is
/// not reset while it is still sending (curl then reports no answer at all).
async fn reject(req: Request, err: ApiError) -> Response {
    let _ = axum::body::to_bytes(req.into_body(), 1 << 20).await;
    err.into_response()
}

/// The middleware: identifies the caller, applies impersonation, authorizes non-resource paths,
/// and hands the final [`Caller`] to the handlers.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let public = PUBLIC.contains(&path.as_str());
    let cert_user = req.extensions().get::<Caller>().and_then(|c| c.0.clone());
    let user = match cert_user {
        Some(u) => u,
        None => match bearer(req.headers()) {
            Some(token) => match authenticate_token(&state, &token).await {
                Ok(u) => u,
                Err(why) if public => {
                    tracing::debug!(%why, "token rejected on a public path");
                    anonymous()
                }
                Err(why) => {
                    tracing::info!(%why, %path, "bearer token rejected");
                    return reject(req, ApiError::unauthorized()).await;
                }
            },
            None if public || path == CLUSTER_INFO => anonymous(),
            None => return reject(req, ApiError::unauthorized()).await,
        },
    };
    let user = match impersonate(&state, user, req.headers()).await {
        Ok(u) => u,
        Err(e) => return reject(req, e).await,
    };
    if !public && !is_resource_path(&path) {
        let attrs = Attributes {
            verb: "get".into(),
            group: String::new(),
            resource: String::new(),
            subresource: String::new(),
            namespace: None,
            name: None,
            path: Some(path.clone()),
        };
        if let Decision::Deny(why) = state.authorizer.authorize(&user, &attrs).await {
            tracing::info!(user = %user.name, %path, %why, "forbidden");
            return reject(req, ApiError::forbidden_path(&user.name, &path)).await;
        }
    }
    req.extensions_mut().insert(Caller(Some(user)));
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_paths() {
        assert!(is_resource_path("/api/v1/pods"));
        assert!(is_resource_path("/apis/apps/v1/deployments"));
        assert!(!is_resource_path("/api/v1"));
        assert!(!is_resource_path("/apis/apps/v1"));
        assert!(!is_resource_path("/apis"));
        assert!(!is_resource_path("/version"));
        assert!(!is_resource_path("/openapi/v3/apis/apps/v1"));
    }
}
