//! OpenAPI documents kubectl reads: `/openapi/v2` (Swagger 2.0, as JSON or gnostic protobuf) and
//! `/openapi/v3` (root plus one document per group-version). Paths come from the resource list:
//! one per object with GET and PATCH, each PATCH declaring the `fieldValidation` query parameter
//! and `x-kubernetes-group-version-kind`, which tells kubectl to leave validation to the server.
//! Schemas come from the Kubernetes types ([`schema`]); kubectl explain prints them and client-side
//! apply computes strategic merge patches from them. Each document is built once, on first use,
//! and kept serialized.

pub mod gnostic;
pub mod schema;

use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

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

/// The definitions of a document: generated schemas, open ones for kinds without a type.
fn definitions() -> (Map<String, Value>, Vec<String>) {
    let gen = schema::generate();
    let mut defs = gen.definitions;
    let mut roots = Vec::new();
    for (r, name) in ALL.iter().zip(gen.roots) {
        let name = name.unwrap_or_else(|| {
            let name = definition_name(r);
            defs.insert(
                name.clone(),
                json!({
                    "description": format!("{} ({}).", r.kind, r.api_version()),
                    "type": "object",
                    "x-kubernetes-group-version-kind": [gvk(r)],
                }),
            );
            name
        });
        roots.push(name);
    }
    (defs, roots)
}

/// Swagger 2.0 has no `x-kubernetes-int-or-string`: such values are strings there (kubectl then
/// shows `<string>`), IntOrString with format `int-or-string` as Kubernetes publishes it.
fn v2_schema(name: &str, mut s: Value) -> Value {
    if let Value::Object(m) = &mut s {
        if m.get("x-kubernetes-int-or-string") == Some(&json!(true)) && !m.contains_key("type") {
            m.insert("type".into(), json!("string"));
            if name.ends_with(".IntOrString") {
                m.insert("format".into(), json!("int-or-string"));
            }
        }
    }
    s
}

/// The Swagger 2.0 document.
pub fn v2() -> Value {
    let (defs, roots) = definitions();
    let mut paths = Map::new();
    for (r, def) in ALL.iter().zip(&roots) {
        let param = |name: &str, location: &str| json!({"name": name, "in": location, "type": "string", "uniqueItems": true});
        let path_param = |name: &str| json!({"name": name, "in": "path", "required": true, "type": "string", "uniqueItems": true});
        let ok = json!({"200": {"description": "OK", "schema": {"$ref": format!("{}{def}", schema::DEFINITIONS)}}});
        let mut params = vec![path_param("name")];
        if r.namespaced {
            params.push(path_param("namespace"));
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
    }
    let definitions: Map<String, Value> = defs
        .into_iter()
        .map(|(name, s)| {
            let s = v2_schema(&name, s);
            (name, s)
        })
        .collect();
    let (major, minor) = KUBE_VERSION;
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": format!("v{major}.{minor}.0")},
        "paths": paths,
        "definitions": definitions,
    })
}

/// `/openapi/v2` as JSON, built once.
pub fn v2_json() -> Bytes {
    static DOC: OnceLock<Bytes> = OnceLock::new();
    DOC.get_or_init(|| Bytes::from(v2().to_string())).clone()
}

/// `/openapi/v2` in gnostic's protobuf encoding (what kubectl 1.27 asks for), built once.
pub fn v2_protobuf() -> Bytes {
    static DOC: OnceLock<Bytes> = OnceLock::new();
    DOC.get_or_init(|| Bytes::from(gnostic::document(&v2())))
        .clone()
}

/// The group-versions served, in discovery order (`api/v1`, `apis/apps/v1`, ...).
fn group_versions() -> Vec<String> {
    let mut gvs: Vec<String> = Vec::new();
    for r in ALL {
        let gv = url_prefix(r).trim_start_matches('/').to_string();
        if !gvs.contains(&gv) {
            gvs.push(gv);
        }
    }
    gvs
}

/// Every `/openapi/v3/<gv>` document, serialized, with its hash; built once.
fn v3_documents() -> &'static [(String, Bytes, String)] {
    static DOCS: OnceLock<Vec<(String, Bytes, String)>> = OnceLock::new();
    DOCS.get_or_init(|| {
        let (defs, roots) = definitions();
        group_versions()
            .into_iter()
            .map(|gv| {
                let body = Bytes::from(v3_document(&gv, &defs, &roots).to_string());
                let hash: String = Sha256::digest(&body)
                    .iter()
                    .map(|b| format!("{b:02X}"))
                    .collect();
                (gv, body, hash)
            })
            .collect()
    })
}

/// `/openapi/v3`: where each group-version's document lives (the hash changes with the content,
/// so kubectl's cache notices new schemas).
pub fn v3_root() -> Value {
    let mut paths = Map::new();
    for (gv, _, hash) in v3_documents() {
        let url = format!("/openapi/v3/{gv}?hash={hash}");
        paths.insert(gv.clone(), json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

/// `/openapi/v3/<gv>` (`api/v1`, `apis/apps/v1`) as JSON; `None` if nothing is served there.
pub fn v3(gv: &str) -> Option<Bytes> {
    v3_documents()
        .iter()
        .find(|(g, _, _)| g == gv)
        .map(|(_, body, _)| body.clone())
}

/// A definition in OpenAPI 3 form: references point into `#/components/schemas/`, and a
/// reference with siblings (a field's description) becomes `allOf: [{$ref}]` plus the siblings,
/// as OpenAPI 3.0 ignores a `$ref`'s siblings.
fn v3_schema(s: &Value) -> Value {
    match s {
        Value::Object(m) => {
            let mut out: Map<String, Value> =
                m.iter().map(|(k, v)| (k.clone(), v3_schema(v))).collect();
            if let Some(Value::String(r)) = out.get("$ref") {
                let r = r.replacen(schema::DEFINITIONS, "#/components/schemas/", 1);
                if out.len() == 1 {
                    out.insert("$ref".into(), json!(r));
                } else {
                    out.remove("$ref");
                    out.insert("allOf".into(), json!([{"$ref": r}]));
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(v3_schema).collect()),
        other => other.clone(),
    }
}

fn v3_document(gv: &str, defs: &Map<String, Value>, roots: &[String]) -> Value {
    let mut paths = Map::new();
    let mut wanted: Vec<&str> = Vec::new();
    for (r, def) in ALL.iter().zip(roots) {
        if url_prefix(r).trim_start_matches('/') != gv {
            continue;
        }
        wanted.push(def);
        let schema_ref = json!({"$ref": format!("#/components/schemas/{def}")});
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
    }
    let schemas: Map<String, Value> = schema::closure(defs, &wanted)
        .into_iter()
        .filter_map(|name| defs.get(&name).map(|s| (name, v3_schema(s))))
        .collect();
    let (major, minor) = KUBE_VERSION;
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v{major}.{minor}.0")},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_has_kind_schemas_with_strings_for_int_or_string() {
        let doc = v2();
        let defs = &doc["definitions"];
        let pod = &defs["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            pod["x-kubernetes-group-version-kind"],
            json!([{"group": "", "version": "v1", "kind": "Pod"}])
        );
        assert_eq!(
            pod["properties"]["spec"]["$ref"],
            "#/definitions/io.k8s.api.core.v1.PodSpec"
        );
        let ios = &defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
        assert_eq!(ios["type"], "string");
        assert_eq!(ios["format"], "int-or-string");
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert!(patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation"));
    }

    #[test]
    fn v3_documents_hold_their_group_versions_kinds_and_references() {
        let apps: Value = serde_json::from_slice(&v3("apis/apps/v1").unwrap()).unwrap();
        let schemas = apps["components"]["schemas"].as_object().unwrap();
        let dep = &schemas["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            dep["x-kubernetes-group-version-kind"][0]["kind"],
            "Deployment"
        );
        // A described reference is wrapped in allOf; a bare one stays a $ref.
        assert_eq!(
            dep["properties"]["spec"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
        );
        assert!(dep["properties"]["spec"]["description"].is_string());
        let spec = &schemas["io.k8s.api.core.v1.PodSpec"];
        assert_eq!(
            spec["properties"]["containers"]["items"]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.Container"
        );
        assert!(schemas.contains_key("io.k8s.api.core.v1.Container"));
        assert!(!schemas.contains_key("io.k8s.api.core.v1.Pod"));
        let patch =
            &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert!(patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation"));
        let root = v3_root();
        let url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{url}");
        assert!(v3("apis/nothing/v1").is_none());
    }
}
