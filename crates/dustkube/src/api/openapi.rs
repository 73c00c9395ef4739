//! OpenAPI documents kubectl reads: `/openapi/v2` (Swagger 2.0) and `/openapi/v3` (root plus one
//! document per group-version). Generated from the resource list: one path per object with its
//! operations, each PATCH declaring the `fieldValidation` query parameter and
//! `x-kubernetes-group-version-kind`, which tells kubectl to leave validation to the server.
//! Schemas are open objects for now (kubectl apply falls back to its built-in types for patches).

use serde_json::{json, Map, Value};

use super::discovery::KUBE_VERSION;
use crate::resources::{ResourceType, ALL};

fn url_prefix(r: &ResourceType) -> String {
    if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    }
}

fn item_path(r: &ResourceType) -> String {
    if r.namespaced {
        format!(
            "{}/namespaces/{{namespace}}/{}/{{name}}",
            url_prefix(r),
            r.plural
        )
    } else {
        format!("{}/{}/{{name}}", url_prefix(r), r.plural)
    }
}

fn gvk(r: &ResourceType) -> Value {
    json!({"group": r.group, "version": r.version, "kind": r.kind})
}

fn op_id(verb: &str, r: &ResourceType) -> String {
    let group = if r.group.is_empty() { "Core" } else { r.group };
    let mut g = group.to_string();
    if let Some(first) = g.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    let scope = if r.namespaced { "Namespaced" } else { "" };
    format!("{verb}{g}{}{scope}{}", r.version.to_uppercase(), r.kind)
}

fn definition_name(r: &ResourceType) -> String {
    let group = if r.group.is_empty() { "core" } else { r.group };
    format!("io.k8s.api.{group}.{}.{}", r.version, r.kind)
}

/// The Swagger 2.0 document.
pub fn v2() -> Value {
    let mut paths = Map::new();
    let mut defs = Map::new();
    for r in ALL {
        let param = |name: &str, location: &str| json!({"name": name, "in": location, "type": "string", "uniqueItems": true});
        let ok = json!({"200": {"description": "OK", "schema": {"$ref": format!("#/definitions/{}", definition_name(r))}}});
        let mut params = vec![param("name", "path")];
        if r.namespaced {
            params.push(param("namespace", "path"));
        }
        paths.insert(
            item_path(r),
            json!({
                "get": {"operationId": op_id("read", r), "responses": ok, "x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk(r)},
                "patch": {
                    "operationId": op_id("patch", r),
                    "consumes": ["application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json"],
                    "parameters": [
                        {"name": "body", "in": "body", "required": true, "schema": {"type": "object"}},
                        param("dryRun", "query"),
                        param("fieldManager", "query"),
                        param("fieldValidation", "query"),
                    ],
                    "responses": ok,
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": gvk(r),
                },
                "parameters": params,
            }),
        );
        defs.insert(
            definition_name(r),
            json!({
                "description": format!("{} ({}).", r.kind, r.api_version()),
                "type": "object",
                "x-kubernetes-group-version-kind": [gvk(r)],
            }),
        );
    }
    let (major, minor) = KUBE_VERSION;
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": format!("v{major}.{minor}.0")},
        "paths": paths,
        "definitions": defs,
    })
}

/// `/openapi/v3`: where each group-version's document lives.
pub fn v3_root() -> Value {
    let mut paths = Map::new();
    let mut gvs: Vec<String> = Vec::new();
    for r in ALL {
        let gv = url_prefix(r).trim_start_matches('/').to_string();
        if !gvs.contains(&gv) {
            gvs.push(gv);
        }
    }
    for gv in gvs {
        let url = format!(
            "/openapi/v3/{gv}?hash={}",
            env!("CARGO_PKG_VERSION").replace('.', "")
        );
        paths.insert(gv, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

/// `/openapi/v3/<gv>` (`api/v1`, `apis/apps/v1`); `None` if nothing is served there.
pub fn v3(gv: &str) -> Option<Value> {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for r in ALL
        .iter()
        .filter(|r| url_prefix(r).trim_start_matches('/') == gv)
    {
        let schema_ref = json!({"$ref": format!("#/components/schemas/{}", definition_name(r))});
        let ok = json!({"200": {"description": "OK", "content": {"application/json": {"schema": schema_ref}}}});
        let q = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
        let p = |name: &str| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}});
        let mut params = vec![p("name")];
        if r.namespaced {
            params.push(p("namespace"));
        }
        paths.insert(
            item_path(r),
            json!({
                "get": {"operationId": op_id("read", r), "responses": ok, "x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk(r)},
                "patch": {
                    "operationId": op_id("patch", r),
                    "parameters": [q("dryRun"), q("fieldManager"), q("fieldValidation"), q("force")],
                    "requestBody": {"content": {
                        "application/json-patch+json": {"schema": {"type": "object"}},
                        "application/merge-patch+json": {"schema": {"type": "object"}},
                        "application/strategic-merge-patch+json": {"schema": {"type": "object"}}
                    }, "required": true},
                    "responses": ok,
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": gvk(r),
                },
                "parameters": params,
            }),
        );
        // No x-kubernetes-group-version-kind on the schema yet: kubectl apply then computes
        // patches from its built-in types instead of warning about missing fields.
        schemas.insert(
            definition_name(r),
            json!({
                "description": format!("{} ({}).", r.kind, r.api_version()),
                "type": "object",
            }),
        );
    }
    if paths.is_empty() {
        return None;
    }
    let (major, minor) = KUBE_VERSION;
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v{major}.{minor}.0")},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// Protobuf encoding (gnostic's `openapi_v2.Document`), which kubectl's OpenAPI v2 client asks
/// for and parses: for now the document's `swagger` and `info` fields (title, version), enough
/// for kubectl to load it; validation is left to the server through the v3 documents.
pub fn v2_protobuf() -> Vec<u8> {
    let (major, minor) = KUBE_VERSION;
    let mut info = Vec::new();
    pb_string(&mut info, 1, "Kubernetes");
    pb_string(&mut info, 2, &format!("v{major}.{minor}.0"));
    let mut doc = Vec::new();
    pb_string(&mut doc, 1, "2.0");
    pb_bytes(&mut doc, 2, &info);
    doc
}

fn pb_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn pb_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    pb_varint(out, (field << 3) | 2);
    pb_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn pb_string(out: &mut Vec<u8>, field: u64, s: &str) {
    pb_bytes(out, field, s.as_bytes());
}
