//! Object endpoints: `/api/v1/...` and `/apis/<g>/<v>/...` — path parsing, authorization, and
//! GET/LIST (selectors, limit/continue, Table), WATCH (see [`super::watch`]), POST, PUT, PATCH,
//! DELETE (see [`super::deletion`]) and deletecollection on the [`Store`](crate::storage::Store),
//! and the subresources (`status`, `scale`, `approval`, `finalize`, pods' `binding` and
//! `eviction`).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Map, Value};

use super::deletion::{self, DeleteOptions};
use super::patch::{self, PatchType};
use super::selectors::{FieldSelector, LabelSelector};
use super::status::{self, ApiError};
use super::table::{self, now_rfc3339, Include};
use super::{binding, eviction};
use super::{caller_of, json_response, json_status, scale, watch, AppState, Caller};
use crate::auth::{Attributes, Decision, User};
use crate::resources::{self, name_of, FieldError, ResourceType};
use crate::storage::{ListOptions, StoreError, Stored};

/// Query parameters, as sent.
type Params = HashMap<String, String>;

/// What a path addresses.
#[derive(Debug)]
pub struct Target {
    /// The kind.
    pub rt: &'static ResourceType,
    /// Namespace from the URL.
    pub namespace: Option<String>,
    /// Object name from the URL.
    pub name: Option<String>,
    /// Subresource (`status`).
    pub sub: Option<String>,
}

/// Parses the part of a path after `/api/v1/` or `/apis/<g>/<v>/`.
pub fn parse_target(group: &str, version: &str, rest: &str) -> Option<Target> {
    let segs: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let namespaced = segs.len() >= 3 && segs[0] == "namespaces";
    if namespaced {
        if let Some(rt) = resources::find(group, version, segs[2]).filter(|r| r.namespaced) {
            if segs.len() > 5 {
                return None;
            }
            return Some(Target {
                rt,
                namespace: Some(segs[1].to_string()),
                name: segs.get(3).map(|s| s.to_string()),
                sub: segs.get(4).map(|s| s.to_string()),
            });
        }
    }
    let rt = resources::find(group, version, segs.first()?)?;
    if segs.len() > 3 {
        return None;
    }
    Some(Target {
        rt,
        namespace: None,
        name: segs.get(1).map(|s| s.to_string()),
        sub: segs.get(2).map(|s| s.to_string()),
    })
}

/// Everything a handler needs from the request.
struct Req {
    method: Method,
    params: Params,
    headers: HeaderMap,
    body: Bytes,
}

/// `/api/{version}/{*rest}`.
pub async fn core(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path((version, rest)): Path<(String, String)>,
    method: Method,
    Query(params): Query<Params>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = Req {
        method,
        params,
        headers,
        body,
    };
    dispatch(state, caller_of(caller), "", &version, &rest, req).await
}

/// `/apis/{group}/{version}/{*rest}`.
pub async fn grouped(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path((group, version, rest)): Path<(String, String, String)>,
    method: Method,
    Query(params): Query<Params>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = Req {
        method,
        params,
        headers,
        body,
    };
    dispatch(state, caller_of(caller), &group, &version, &rest, req).await
}

async fn dispatch(
    state: AppState,
    user: Option<User>,
    group: &str,
    version: &str,
    rest: &str,
    req: Req,
) -> Response {
    let Some(user) = user else {
        return ApiError::unauthorized().into_response();
    };
    let path = if group.is_empty() {
        format!("/api/{version}/{rest}")
    } else {
        format!("/apis/{group}/{version}/{rest}")
    };
    let Some(t) = parse_target(group, version, rest) else {
        return ApiError::no_route(&path).into_response();
    };
    let is_watch = matches!(
        req.params.get("watch").map(String::as_str),
        Some("true" | "1")
    );
    let verb = match (&req.method, t.name.is_some()) {
        (&Method::POST, true)
            if matches!(t.sub.as_deref(), Some("binding" | "eviction" | "token")) =>
        {
            "create"
        }
        (&Method::GET, true) => "get",
        (&Method::GET, false) if is_watch => "watch",
        (&Method::GET, false) => "list",
        (&Method::POST, false) => "create",
        (&Method::PUT, true) => "update",
        (&Method::PATCH, true) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        (m, _) => {
            return ApiError::method_not_allowed(format!("{m} is not supported on {path}"))
                .into_response()
        }
    };
    let attrs = Attributes {
        verb: verb.into(),
        group: t.rt.group.into(),
        resource: t.rt.plural.into(),
        subresource: t.sub.clone().unwrap_or_default(),
        namespace: t.namespace.clone(),
        name: t.name.clone(),
        path: None,
    };
    if let Decision::Deny(why) = state.authorizer.authorize(&user, &attrs).await {
        tracing::info!(user = %user.name, verb, resource = t.rt.plural, reason = %why, "forbidden");
        return ApiError::forbidden_request(
            &user.name,
            verb,
            t.rt,
            t.sub.as_deref().unwrap_or(""),
            t.name.as_deref(),
            t.namespace.as_deref(),
        )
        .into_response();
    }
    match t.sub.as_deref() {
        None => {}
        Some(sub) if t.rt.subresources().contains(&sub) => {
            let allowed = resources::subresource_verbs(sub);
            if !allowed.contains(&verb) {
                return ApiError::method_not_allowed(format!(
                    "{} is not supported on {path}",
                    req.method
                ))
                .into_response();
            }
        }
        Some(_) => return ApiError::no_route(&path).into_response(),
    }
    let ct = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    // kubectl 1.33's typed clients send protobuf: decode the kinds we know, 415 for the rest.
    let mut req = req;
    if !req.body.is_empty() && ct.starts_with("application/vnd.kubernetes.protobuf") {
        match super::protobuf::decode(&req.body) {
            Ok(v) => req.body = Bytes::from(v.to_string()),
            Err(e) => {
                tracing::info!(error = %e, "protobuf body refused");
                return ApiError::unsupported_media_type(&ct).into_response();
            }
        }
    }
    tracing::debug!(user = %user.name, verb, %path, "request");
    if !t.rt.stored() {
        return super::reviews::handle(&state, &user, &t, verb, &req.headers, &req.body).await;
    }
    if t.rt.plural == "certificatesigningrequests" && verb == "create" {
        match stamp_requester(&req.body, &user) {
            Ok(b) => req.body = b,
            Err(e) => return e.into_response(),
        }
    }
    let result = match verb {
        "get" | "update" | "patch" if t.sub.as_deref() == Some("scale") => {
            scale::handle(&state, &t, verb, &req.headers, &req.body).await
        }
        "create" if t.sub.as_deref() == Some("binding") => {
            binding::handle(&state, &t, &req.params, &req.body).await
        }
        "create" if t.sub.as_deref() == Some("eviction") => {
            eviction::handle(&state, &t, &req.params, &req.body).await
        }
        "create" if t.sub.as_deref() == Some("token") => {
            super::token_request::handle(&state, &t, &req.params, &req.body).await
        }
        "get" => get_with_table(&state, &t, &req).await,
        "list" => list(&state, &t, &req).await,
        "watch" => {
            watch::serve(
                &state,
                t.rt,
                t.namespace.as_deref(),
                &req.params,
                &req.headers,
            )
            .await
        }
        "create" => create(&state, &t, &req).await,
        "update" => update(&state, &t, &req).await,
        "patch" => patch_object(&state, &t, &req).await,
        "delete" => delete(&state, &t, &req).await,
        _ => delete_collection(&state, &t, &req).await,
    };
    match result {
        Ok(r) => {
            if t.rt.group == "rbac.authorization.k8s.io" && verb != "get" && verb != "list" {
                state.authorizer.invalidate();
            }
            r
        }
        Err(e) => e.into_response(),
    }
}

/// A CSR records who asked for it: `spec.username`, `spec.groups`, `spec.uid` come from the
/// authenticated caller, whatever the body says.
fn stamp_requester(body: &Bytes, user: &User) -> Result<Bytes, ApiError> {
    let mut obj = parse_body(body)?;
    let spec = obj
        .as_object_mut()
        .map(|m| m.entry("spec").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
        .ok_or_else(|| ApiError::bad_request("spec must be an object"))?;
    spec.insert("username".into(), json!(user.name));
    spec.insert("groups".into(), json!(user.groups));
    spec.remove("uid");
    Ok(Bytes::from(obj.to_string()))
}

/// A stored object as the API shows it: kind, apiVersion and resourceVersion filled in.
pub fn present(rt: &ResourceType, stored: &Stored) -> Value {
    let mut v = stored.value.clone();
    if let Some(m) = v.as_object_mut() {
        m.insert("kind".into(), json!(rt.kind));
        m.insert("apiVersion".into(), json!(rt.api_version()));
        // kind and apiVersion first, like the real API prints them.
        let mut ordered = Map::new();
        for k in ["kind", "apiVersion"] {
            if let Some(x) = m.remove(k) {
                ordered.insert(k.into(), x);
            }
        }
        ordered.append(m);
        *m = ordered;
    }
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), json!(stored.revision.to_string()));
    }
    v
}

fn accept(req_headers: &HeaderMap) -> &str {
    req_headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn object_name(t: &Target) -> &str {
    t.name.as_deref().unwrap_or("")
}

/// The stored object a target names, or NotFound.
pub async fn fetch(state: &AppState, t: &Target) -> Result<Stored, ApiError> {
    let key = t.rt.key(t.namespace.as_deref(), object_name(t));
    state
        .store
        .get(&key)
        .await
        .map_err(|e| ApiError::from_store(e, t.rt, object_name(t)))?
        .ok_or_else(|| ApiError::not_found(t.rt, object_name(t)))
}

async fn get_with_table(state: &AppState, t: &Target, req: &Req) -> Result<Response, ApiError> {
    let stored = fetch(state, t).await?;
    let obj = present(t.rt, &stored);
    if table::wants_table(accept(&req.headers)) {
        let include = Include::parse(req.params.get("includeObject").map(String::as_str));
        let meta = json!({"resourceVersion": stored.revision.to_string()});
        return Ok(json_response(&table::table(t.rt, &[obj], meta, include)));
    }
    Ok(json_response(&obj))
}

/// Opaque continue token: the list revision and the last key returned.
fn encode_continue(revision: u64, after: &str) -> String {
    B64.encode(json!({"rv": revision, "after": after}).to_string())
}

fn decode_continue(token: &str) -> Result<(u64, String), ApiError> {
    let bad = || ApiError::bad_request("continue key is not valid");
    let bytes = B64.decode(token).map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    let after = v.get("after").and_then(Value::as_str).ok_or_else(bad)?;
    Ok((rv, after.to_string()))
}

/// Parsed selectors of a list or watch.
pub fn selectors(params: &Params) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(
        params
            .get("labelSelector")
            .map(String::as_str)
            .unwrap_or(""),
    )
    .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(
        params
            .get("fieldSelector")
            .map(String::as_str)
            .unwrap_or(""),
    )
    .map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

/// Lists objects matching the selectors; returns (items, revision, continue token).
pub async fn collect(
    state: &AppState,
    rt: &ResourceType,
    namespace: Option<&str>,
    params: &Params,
) -> Result<(Vec<Value>, u64, Option<String>), ApiError> {
    let (labels, fields) = selectors(params)?;
    let limit: usize = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut opts = ListOptions {
        limit: (limit > 0).then_some(limit),
        ..Default::default()
    };
    if let Some(token) = params.get("continue").filter(|c| !c.is_empty()) {
        let (rv, after) = decode_continue(token)?;
        opts.revision = Some(rv);
        opts.after = Some(after);
    }
    let prefix = rt.prefix(namespace);
    let mut items = Vec::new();
    let mut revision = None;
    let mut token = None;
    loop {
        let page = state
            .store
            .list(&prefix, &opts)
            .await
            .map_err(|e| match e {
                StoreError::Expired { .. } => ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ),
                other => ApiError::from_store(other, rt, ""),
            })?;
        let rev = *revision.get_or_insert(page.revision);
        let count = page.items.len();
        for (i, stored) in page.items.iter().enumerate() {
            let obj = present(rt, stored);
            if !(labels.matches(&obj) && fields.matches(&obj)) {
                continue;
            }
            items.push(obj);
            if limit > 0 && items.len() == limit {
                if i + 1 < count || page.more_after.is_some() {
                    token = Some(encode_continue(rev, &stored.key));
                }
                return Ok((items, rev, token));
            }
        }
        match page.more_after {
            Some(after) => {
                opts.after = Some(after);
                opts.revision = Some(rev);
            }
            None => break,
        }
    }
    Ok((items, revision.unwrap_or(0), token))
}

async fn list(state: &AppState, t: &Target, req: &Req) -> Result<Response, ApiError> {
    let (items, revision, token) =
        collect(state, t.rt, t.namespace.as_deref(), &req.params).await?;
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if let Some(c) = token {
        meta["continue"] = json!(c);
    }
    if table::wants_table(accept(&req.headers)) {
        let include = Include::parse(req.params.get("includeObject").map(String::as_str));
        return Ok(json_response(&table::table(t.rt, &items, meta, include)));
    }
    let mut list = super::list_header(t.rt.kind, &t.rt.api_version());
    list["metadata"] = meta;
    list["items"] = Value::Array(items);
    Ok(json_response(&list))
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(v)
}

/// The JSON body of a create-only subresource (a Binding, an Eviction): an object whose `kind`,
/// when given, is `kind` and whose name is the one in the URL. `article` is "a" or "an".
pub fn subresource_body(
    body: &Bytes,
    name: &str,
    kind: &str,
    article: &str,
) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request(format!(
            "{article} {kind} must be a JSON object"
        )));
    }
    if let Some(k) = v.get("kind").and_then(Value::as_str) {
        if k != kind {
            return Err(ApiError::bad_request(format!(
                "not {article} {kind} object: {k}"
            )));
        }
    }
    if name_of(&v) != name {
        return Err(ApiError::bad_request(format!(
            "name in URL does not match name in {kind} object"
        )));
    }
    Ok(v)
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Generic metadata validation (name format) plus the kind's own checks.
fn validate(rt: &ResourceType, obj: &Value) -> Vec<FieldError> {
    let name = name_of(obj);
    let mut errs = Vec::new();
    let label_only = matches!(rt.plural, "namespaces" | "services");
    if rt.group == "rbac.authorization.k8s.io" {
        // RBAC names are path segments (`system:node`, `kubeadm:cluster-admins`).
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '%']) {
            errs.push(FieldError::invalid(
                "metadata.name",
                name,
                "may not be '.' or '..' and may not contain '/' or '%'",
            ));
        }
        errs.extend((rt.validate)(obj));
        return errs;
    }
    let ok = if label_only {
        is_dns_label(name)
    } else {
        is_dns_subdomain(name)
    };
    if !ok {
        let why = if label_only {
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
        } else {
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        };
        errs.push(FieldError::invalid("metadata.name", name, why));
    }
    errs.extend((rt.validate)(obj));
    errs
}

/// Random lowercase suffix for generateName (Kubernetes' alphabet, no vowels).
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

fn dry_run(params: &Params) -> bool {
    params.get("dryRun").is_some_and(|d| d == "All")
}

/// The namespace of a new object must exist and not be terminating (the NamespaceLifecycle
/// admission plugin's rule).
async fn ensure_namespace(
    state: &AppState,
    rt: &ResourceType,
    ns: &str,
    name: &str,
) -> Result<(), ApiError> {
    let key = resources::namespaces::TYPE.key(None, ns);
    match state.store.get(&key).await {
        Ok(Some(stored)) => {
            let terminating = deletion::is_deleting(&stored.value)
                || resources::str_at(&stored.value, "/status/phase") == "Terminating";
            if !terminating {
                return Ok(());
            }
            let subject = if name.is_empty() {
                status::qualified(rt)
            } else {
                format!("{} \"{name}\"", status::qualified(rt))
            };
            let mut e = ApiError::forbidden_message(format!(
                "{subject} is forbidden: unable to create new content in namespace {ns} because it is being terminated"
            ));
            e.details = Some(json!({
                "name": name,
                "group": rt.group,
                "kind": rt.plural,
                "causes": [{
                    "reason": "NamespaceTerminating",
                    "message": format!("namespace {ns} is being terminated"),
                    "field": "metadata.namespace",
                }],
            }));
            Err(e)
        }
        Ok(None) => Err(ApiError::not_found(&resources::namespaces::TYPE, ns)),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// Picks a free ClusterIP in 10.96.0.0/12 (10.96.0.1 is the `kubernetes` Service's).
async fn allocate_cluster_ip(state: &AppState) -> Result<String, ApiError> {
    let rt = &resources::services::TYPE;
    let all = state
        .store
        .list(&rt.prefix(None), &ListOptions::default())
        .await
        .map_err(ApiError::internal)?;
    let used: Vec<String> = all
        .items
        .iter()
        .map(|s| resources::str_at(&s.value, "/spec/clusterIP").to_string())
        .collect();
    for _ in 0..64 {
        let b = uuid::Uuid::new_v4();
        let bytes = b.as_bytes();
        let n =
            (u32::from(bytes[0] & 0x0f) << 16) | (u32::from(bytes[1]) << 8) | u32::from(bytes[2]);
        if n < 2 || n == 0x0f_ffff {
            continue;
        }
        let ip = std::net::Ipv4Addr::from(0x0a60_0000u32 | n).to_string();
        if !used.contains(&ip) {
            return Ok(ip);
        }
    }
    Err(ApiError::internal("no free cluster IP found"))
}

/// Fills server-owned fields, defaults and validates an object about to be created.
async fn prepare_create(state: &AppState, t: &Target, mut obj: Value) -> Result<Value, ApiError> {
    let rt = t.rt;
    if let Some(kind) = obj.get("kind").and_then(Value::as_str) {
        if kind != rt.kind {
            return Err(ApiError::bad_request(format!(
                "the kind \"{kind}\" does not match the URL's \"{}\"",
                rt.kind
            )));
        }
    }
    let meta = obj
        .as_object_mut()
        .map(|m| m.entry("metadata").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
    if rt.namespaced {
        let url_ns = t.namespace.clone().unwrap_or_else(|| "default".into());
        match meta.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != url_ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ))
            }
            _ => {
                meta.insert("namespace".into(), json!(url_ns));
            }
        }
    } else {
        meta.remove("namespace");
    }
    let has_name = meta
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    if !has_name {
        match meta.get("generateName").and_then(Value::as_str) {
            Some(prefix) if !prefix.is_empty() => {
                let name = format!("{prefix}{}", random_suffix());
                meta.insert("name".into(), json!(name));
            }
            _ => {
                return Err(ApiError::invalid(
                    rt,
                    "",
                    &[FieldError {
                        field: "metadata.name".into(),
                        reason: "FieldValueRequired",
                        message: "Required value: name or generateName is required".into(),
                    }],
                ))
            }
        }
    }
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
    meta.remove("resourceVersion");
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    meta.remove("selfLink");
    if rt.group == "apps" {
        meta.insert("generation".into(), json!(1));
    }
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), json!(rt.api_version()));
        m.insert("kind".into(), json!(rt.kind));
    }
    (rt.defaults)(&mut obj);
    if rt.group.is_empty() && rt.plural == "namespaces" {
        // A new namespace is Active and always carries the namespace controller's finalizer.
        resources::default_at(&mut obj, &["spec", "finalizers"], json!([]));
        if let Some(list) = obj
            .pointer_mut("/spec/finalizers")
            .and_then(Value::as_array_mut)
        {
            if !list.iter().any(|f| f == deletion::FINALIZER_NAMESPACE) {
                list.push(json!(deletion::FINALIZER_NAMESPACE));
            }
        }
        obj["status"] = json!({"phase": "Active"});
    }
    if rt.plural == "services"
        && resources::str_at(&obj, "/spec/type") != "ExternalName"
        && resources::str_at(&obj, "/spec/clusterIP").is_empty()
    {
        let ip = allocate_cluster_ip(state).await?;
        obj["spec"]["clusterIP"] = json!(ip);
        obj["spec"]["clusterIPs"] = json!([ip]);
    }
    if rt.plural == "services" {
        super::nodeport::allocate_node_ports(state, &mut obj, None).await?;
    }
    let errs = validate(rt, &obj);
    if !errs.is_empty() {
        return Err(ApiError::invalid(rt, name_of(&obj), &errs));
    }
    Ok(obj)
}

/// The object as stored: without `metadata.resourceVersion` (the store's revision is it).
pub(crate) fn for_storage(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    v
}

/// Creates an object (shared with startup seeding).
pub async fn create_object(
    state: &AppState,
    rt: &'static ResourceType,
    namespace: Option<&str>,
    obj: Value,
    dry: bool,
) -> Result<Value, ApiError> {
    let t = Target {
        rt,
        namespace: namespace.map(String::from),
        name: None,
        sub: None,
    };
    if rt.namespaced {
        let name = resources::str_at(&obj, "/metadata/name").to_string();
        ensure_namespace(state, rt, namespace.unwrap_or("default"), &name).await?;
    }
    let obj = prepare_create(state, &t, obj).await?;
    let name = name_of(&obj).to_string();
    if dry {
        return Ok(obj);
    }
    let key = rt.key(namespace.or(Some("default")), &name);
    let revision = state
        .store
        .create(&key, &for_storage(&obj))
        .await
        .map_err(|e| ApiError::from_store(e, rt, &name))?;
    Ok(present(
        rt,
        &Stored {
            key,
            value: obj,
            revision,
        },
    ))
}

async fn create(state: &AppState, t: &Target, req: &Req) -> Result<Response, ApiError> {
    let obj = parse_body(&req.body)?;
    let created = create_object(
        state,
        t.rt,
        t.namespace.as_deref(),
        obj,
        dry_run(&req.params),
    )
    .await?;
    tracing::info!(kind = t.rt.kind, name = name_of(&created), "created");
    Ok(json_status(StatusCode::CREATED, &created))
}

/// Server-owned metadata kept from the stored object on update; generation bumped on spec change.
fn carry_over(rt: &ResourceType, old: &Value, new: &mut Value) {
    for f in [
        "uid",
        "creationTimestamp",
        "namespace",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old.pointer(&format!("/metadata/{f}")) {
            Some(v) => {
                if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.insert(f.into(), v.clone());
                }
            }
            None => {
                if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove(f);
                }
            }
        }
    }
    if let Some(m) = new.as_object_mut() {
        m.insert("apiVersion".into(), json!(rt.api_version()));
        m.insert("kind".into(), json!(rt.kind));
    }
    if rt.group == "apps" && old.get("spec") != new.get("spec") {
        let g = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        new["metadata"]["generation"] = json!(g);
    }
}

/// Validates `new` as a replacement of `old` and writes it if it differs.
pub async fn write_update(
    state: &AppState,
    t: &Target,
    old: &Stored,
    mut new: Value,
    expected: Option<u64>,
    dry: bool,
) -> Result<Value, ApiError> {
    let rt = t.rt;
    let name = object_name(t).to_string();
    if !new.get("metadata").is_some_and(Value::is_object) {
        return Err(ApiError::bad_request("metadata must be an object"));
    }
    if name_of(&new) != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            name_of(&new)
        )));
    }
    let old_obj = present(rt, old);
    if t.sub.as_deref() == Some("status") {
        let status = new.get("status").cloned().unwrap_or(Value::Null);
        new = old_obj.clone();
        new["status"] = status;
    } else if t.sub.as_deref() == Some("approval") {
        // Only the Approved/Denied conditions change through /approval.
        let mut conditions = new
            .pointer("/status/conditions")
            .cloned()
            .unwrap_or(json!([]));
        for c in conditions.as_array_mut().into_iter().flatten() {
            resources::default_at(c, &["status"], json!("True"));
            resources::default_at(c, &["lastUpdateTime"], json!(now_rfc3339()));
            resources::default_at(c, &["lastTransitionTime"], json!(now_rfc3339()));
        }
        new = old_obj.clone();
        resources::default_at(&mut new, &["status"], json!({}));
        new["status"]["conditions"] = conditions;
    } else if t.sub.as_deref() == Some("finalize") {
        // Only a namespace's spec.finalizers change through /finalize.
        let list = new
            .pointer("/spec/finalizers")
            .cloned()
            .unwrap_or(json!([]));
        new = old_obj.clone();
        resources::default_at(&mut new, &["spec"], json!({}));
        new["spec"]["finalizers"] = list;
    } else {
        // The main resource does not change status; a namespace's spec.finalizers only change
        // through /finalize.
        match old_obj.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        if rt.group.is_empty() && rt.plural == "namespaces" {
            let list = old_obj
                .pointer("/spec/finalizers")
                .cloned()
                .unwrap_or(json!([]));
            resources::default_at(&mut new, &["spec"], json!({}));
            if new.get("spec").is_some_and(Value::is_object) {
                new["spec"]["finalizers"] = list;
            }
        }
    }
    carry_over(rt, &old_obj, &mut new);
    (rt.defaults)(&mut new);
    if rt.plural == "services" {
        for f in ["clusterIP", "clusterIPs"] {
            if let Some(v) = old_obj.pointer(&format!("/spec/{f}")) {
                new["spec"][f] = v.clone();
            }
        }
        super::nodeport::allocate_node_ports(state, &mut new, Some(&old_obj)).await?;
    }
    let mut errs = validate(rt, &new);
    errs.extend(deletion::new_finalizers_error(&old_obj, &new));
    if !errs.is_empty() {
        return Err(ApiError::invalid(rt, &name, &errs));
    }
    let mut compare = new.clone();
    if let Some(m) = compare.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), json!(old.revision.to_string()));
    }
    if deletion::should_delete_during_update(rt, &old_obj, &new) {
        // The last finalizer is gone from an object being deleted: it goes now, and the
        // caller gets the object it sent, like the real API.
        if !dry {
            state
                .store
                .delete(&old.key, expected)
                .await
                .map_err(|e| ApiError::from_store(e, rt, &name))?;
            tracing::info!(kind = rt.kind, %name, "deleted after its last finalizer");
        }
        return Ok(compare);
    }
    if compare == old_obj || dry {
        return Ok(compare);
    }
    let revision = state
        .store
        .update(&old.key, &for_storage(&new), expected)
        .await
        .map_err(|e| ApiError::from_store(e, rt, &name))?;
    Ok(present(
        rt,
        &Stored {
            key: old.key.clone(),
            value: new,
            revision,
        },
    ))
}

fn precondition(obj: &Value) -> Result<Option<u64>, ApiError> {
    match obj.pointer("/metadata/resourceVersion") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion \"{s}\""))),
        Some(other) => Err(ApiError::bad_request(format!(
            "invalid resourceVersion {other}"
        ))),
    }
}

async fn update(state: &AppState, t: &Target, req: &Req) -> Result<Response, ApiError> {
    let new = parse_body(&req.body)?;
    let expected = precondition(&new)?;
    let old = fetch(state, t).await?;
    if let Some(e) = expected {
        if e != old.revision {
            return Err(ApiError::conflict(t.rt, object_name(t)));
        }
    }
    let out = write_update(
        state,
        t,
        &old,
        new,
        expected.or(Some(old.revision)),
        dry_run(&req.params),
    )
    .await?;
    Ok(json_response(&out))
}

async fn patch_object(state: &AppState, t: &Target, req: &Req) -> Result<Response, ApiError> {
    let ct = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ty =
        PatchType::from_content_type(ct).ok_or_else(|| ApiError::unsupported_media_type(ct))?;
    // Optimistic concurrency: re-read and re-apply when someone wrote in between.
    for _ in 0..5 {
        let old = fetch(state, t).await?;
        let current = present(t.rt, &old);
        let patched = patch::apply(&current, &req.body, ty).map_err(ApiError::bad_request)?;
        let expected = match precondition(&patched)? {
            Some(rv) if rv != old.revision => return Err(ApiError::conflict(t.rt, object_name(t))),
            _ => old.revision,
        };
        match write_update(
            state,
            t,
            &old,
            patched,
            Some(expected),
            dry_run(&req.params),
        )
        .await
        {
            Err(e) if e.reason == "Conflict" => continue,
            other => return other.map(|v| json_response(&v)),
        }
    }
    Err(ApiError::conflict(t.rt, object_name(t)))
}

/// Deletes the object `t` names with DeleteOptions in their JSON form (`{}` for the defaults)
/// and returns the API's answer: the object while it waits for finalizers or a grace period
/// (and, for pods, services, service accounts and namespaces, the deleted object), else a
/// success Status. See [`deletion::delete`] for the outcome with `removed`.
pub async fn delete_object(
    state: &AppState,
    t: &Target,
    options: &Value,
) -> Result<Value, ApiError> {
    let opts = DeleteOptions::from_json(options)?;
    Ok(deletion::delete(state, t, &opts).await?.response)
}

async fn delete(state: &AppState, t: &Target, req: &Req) -> Result<Response, ApiError> {
    let opts = DeleteOptions::from_request(&req.body, &req.params)?;
    let outcome = deletion::delete(state, t, &opts).await?;
    let code = StatusCode::from_u16(outcome.http_code(&opts)).unwrap_or(StatusCode::OK);
    Ok(json_status(code, &outcome.response))
}

/// DELETE on a collection: every listed object (selectors apply) is deleted like a single
/// DELETE with the same options; the answer lists them as they were.
async fn delete_collection(state: &AppState, t: &Target, req: &Req) -> Result<Response, ApiError> {
    let opts = DeleteOptions::from_request(&req.body, &req.params)?;
    let (items, revision, _) = collect(state, t.rt, t.namespace.as_deref(), &req.params).await?;
    let mut deleted = Vec::new();
    for obj in items {
        let one = Target {
            rt: t.rt,
            namespace: obj
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(String::from),
            name: Some(name_of(&obj).to_string()),
            sub: None,
        };
        match deletion::delete(state, &one, &opts).await {
            Ok(_) => deleted.push(obj),
            Err(e) if e.reason == "NotFound" => {}
            Err(e) => return Err(e),
        }
    }
    let mut list = super::list_header(t.rt.kind, &t.rt.api_version());
    list["metadata"] = json!({"resourceVersion": revision.to_string()});
    list["items"] = Value::Array(deleted);
    Ok(json_response(&list))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_to_kinds() {
        let t = parse_target("", "v1", "namespaces/demo/pods/web").unwrap();
        assert_eq!(
            (t.rt.kind, t.namespace.as_deref(), t.name.as_deref()),
            ("Pod", Some("demo"), Some("web"))
        );
        let t = parse_target("", "v1", "namespaces/demo").unwrap();
        assert_eq!(
            (t.rt.kind, t.namespace, t.name.as_deref()),
            ("Namespace", None, Some("demo"))
        );
        let t = parse_target("", "v1", "namespaces/demo/status").unwrap();
        assert_eq!((t.rt.kind, t.sub.as_deref()), ("Namespace", Some("status")));
        let t = parse_target("apps", "v1", "deployments").unwrap();
        assert_eq!((t.rt.kind, t.namespace, t.name), ("Deployment", None, None));
        assert!(parse_target("", "v1", "bogus").is_none());
        assert!(parse_target("apps", "v1", "pods").is_none());
    }

    #[test]
    fn continue_tokens_round_trip() {
        let tok = encode_continue(42, "/registry/pods/ns/b");
        assert_eq!(
            decode_continue(&tok).unwrap(),
            (42, "/registry/pods/ns/b".to_string())
        );
        assert!(decode_continue("garbage!").is_err());
    }
}
