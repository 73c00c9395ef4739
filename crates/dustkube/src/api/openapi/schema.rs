//! The schemas of the served kinds, generated from the Kubernetes types of `k8s-openapi` through
//! their `schemars` implementations: JSON Schema definitions named like Kubernetes' own
//! (`io.k8s.api.core.v1.PodSpec`), referencing each other as `#/definitions/<name>`, with the
//! annotations kubectl reads: `x-kubernetes-group-version-kind` on each served kind (explain and
//! apply find a kind's schema by it) and the patch strategies of lists
//! (`x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`), which client-side apply uses to
//! merge lists such as containers by name instead of replacing them.

use k8s_openapi::api::{apps, authorization, certificates, coordination, core, rbac};
use k8s_openapi::schemars::generate::{SchemaGenerator, SchemaSettings};
use k8s_openapi::schemars::JsonSchema;
use k8s_openapi::Resource;
use serde_json::{json, Map, Value};

use crate::resources::{ResourceType, ALL};

/// Where definitions live in the generated `$ref`s (Swagger 2.0's place).
pub const DEFINITIONS: &str = "#/definitions/";

/// The definitions of every served kind and everything they reference, plus the definition name
/// of each served kind (`None` for kinds without a Kubernetes type, which keep open schemas).
pub struct Generated {
    /// Definition name → JSON Schema, in generation order.
    pub definitions: Map<String, Value>,
    /// For each entry of [`ALL`], its definition name.
    pub roots: Vec<Option<String>>,
}

/// Adds `T`'s schema (and what it references) to `g`; returns its name and group/version/kind.
fn root<T: JsonSchema + Resource>(g: &mut SchemaGenerator) -> (String, [&'static str; 3]) {
    g.subschema_for::<T>();
    (
        T::schema_name().into_owned(),
        [T::GROUP, T::VERSION, T::KIND],
    )
}

type Root = fn(&mut SchemaGenerator) -> (String, [&'static str; 3]);

/// The Kubernetes type behind a served kind.
fn type_of(r: &ResourceType) -> Option<Root> {
    use core::v1 as c;
    use rbac::v1 as rb;
    Some(match (r.group, r.version, r.kind) {
        ("", "v1", "Namespace") => root::<c::Namespace>,
        ("", "v1", "Node") => root::<c::Node>,
        ("", "v1", "Pod") => root::<c::Pod>,
        ("", "v1", "ConfigMap") => root::<c::ConfigMap>,
        ("", "v1", "Secret") => root::<c::Secret>,
        ("", "v1", "Service") => root::<c::Service>,
        ("", "v1", "Event") => root::<c::Event>,
        ("", "v1", "Endpoints") => root::<c::Endpoints>,
        ("", "v1", "ServiceAccount") => root::<c::ServiceAccount>,
        ("", "v1", "ComponentStatus") => root::<c::ComponentStatus>,
        ("apps", "v1", "Deployment") => root::<apps::v1::Deployment>,
        ("apps", "v1", "ReplicaSet") => root::<apps::v1::ReplicaSet>,
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => root::<rb::ClusterRoleBinding>,
        ("rbac.authorization.k8s.io", "v1", "ClusterRole") => root::<rb::ClusterRole>,
        ("rbac.authorization.k8s.io", "v1", "RoleBinding") => root::<rb::RoleBinding>,
        ("rbac.authorization.k8s.io", "v1", "Role") => root::<rb::Role>,
        ("coordination.k8s.io", "v1", "Lease") => root::<coordination::v1::Lease>,
        ("certificates.k8s.io", "v1", "CertificateSigningRequest") => {
            root::<certificates::v1::CertificateSigningRequest>
        }
        ("authorization.k8s.io", "v1", "SelfSubjectAccessReview") => {
            root::<authorization::v1::SelfSubjectAccessReview>
        }
        ("authorization.k8s.io", "v1", "SelfSubjectRulesReview") => {
            root::<authorization::v1::SelfSubjectRulesReview>
        }
        _ => return None,
    })
}

/// How lists merge in a strategic merge patch, as the Kubernetes types declare it
/// (`patchStrategy`/`patchMergeKey` struct tags): definition, field, strategy, merge key.
static PATCH_STRATEGIES: &[(&str, &str, &str, &str)] = &[
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        "merge",
        "",
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        "merge",
        "uid",
    ),
    ("io.k8s.api.core.v1.PodSpec", "containers", "merge", "name"),
    (
        "io.k8s.api.core.v1.PodSpec",
        "initContainers",
        "merge",
        "name",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "ephemeralContainers",
        "merge",
        "name",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "volumes",
        "merge,retainKeys",
        "name",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "imagePullSecrets",
        "merge",
        "name",
    ),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases", "merge", "ip"),
    (
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        "merge",
        "topologyKey",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "resourceClaims",
        "merge,retainKeys",
        "name",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "schedulingGates",
        "merge",
        "name",
    ),
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        "merge",
        "containerPort",
    ),
    ("io.k8s.api.core.v1.Container", "env", "merge", "name"),
    (
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        "merge",
        "mountPath",
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        "merge",
        "devicePath",
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "env",
        "merge",
        "name",
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeMounts",
        "merge",
        "mountPath",
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeDevices",
        "merge",
        "devicePath",
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "conditions",
        "merge",
        "type",
    ),
    ("io.k8s.api.core.v1.PodStatus", "podIPs", "merge", "ip"),
    ("io.k8s.api.core.v1.PodStatus", "hostIPs", "merge", "ip"),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", "merge", "port"),
    (
        "io.k8s.api.core.v1.ServiceStatus",
        "conditions",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.core.v1.ServiceAccount",
        "secrets",
        "merge",
        "name",
    ),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", "merge", ""),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "conditions",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "addresses",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.core.v1.NamespaceStatus",
        "conditions",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.apps.v1.DeploymentSpec",
        "strategy",
        "retainKeys",
        "",
    ),
    (
        "io.k8s.api.apps.v1.DeploymentStatus",
        "conditions",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "conditions",
        "merge",
        "type",
    ),
];

/// Generates the definitions (see [`Generated`]).
pub fn generate() -> Generated {
    let mut g = SchemaSettings::draft07()
        .with(|s| {
            s.definitions_path = DEFINITIONS.trim_end_matches('/').into();
            s.meta_schema = None;
            s.transforms = Vec::new();
        })
        .into_generator();
    let mut roots = Vec::new();
    let mut kinds = Vec::new();
    for r in ALL {
        match type_of(r) {
            Some(f) => {
                let (name, gvk) = f(&mut g);
                kinds.push((name.clone(), gvk));
                roots.push(Some(name));
            }
            None => roots.push(None),
        }
    }
    let mut definitions = g.take_definitions(false);
    for (name, [group, version, kind]) in kinds {
        if let Some(Value::Object(d)) = definitions.get_mut(&name) {
            d.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": group, "version": version, "kind": kind}]),
            );
        }
    }
    for (def, field, strategy, key) in PATCH_STRATEGIES {
        let Some(Value::Object(p)) = definitions
            .get_mut(*def)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(*field))
        else {
            continue;
        };
        p.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
        if !key.is_empty() {
            p.insert("x-kubernetes-patch-merge-key".into(), json!(key));
        }
    }
    Generated { definitions, roots }
}

/// The definition names a schema references directly (`$ref`s anywhere inside it).
pub fn refs(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        if let Some(name) = r.strip_prefix(DEFINITIONS) {
                            out.push(name.to_string());
                        }
                    }
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// `roots` and every definition reachable from them, in `definitions`' order.
pub fn closure(definitions: &Map<String, Value>, roots: &[&str]) -> Vec<String> {
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut todo: Vec<String> = roots.iter().map(|s| s.to_string()).collect();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(d) = definitions.get(&name) {
            let mut found = Vec::new();
            refs(d, &mut found);
            todo.extend(found.into_iter().filter(|n| !seen.contains(n)));
        }
    }
    definitions
        .keys()
        .filter(|k| seen.contains(*k))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_kind_has_a_schema_with_its_group_version_kind() {
        let gen = generate();
        for (r, name) in ALL.iter().zip(&gen.roots) {
            let name = name
                .as_deref()
                .unwrap_or_else(|| panic!("{r:?} has no type"));
            let d = &gen.definitions[name];
            assert_eq!(
                d["x-kubernetes-group-version-kind"],
                json!([{"group": r.group, "version": r.version, "kind": r.kind}]),
                "{name}"
            );
            assert!(d["description"].as_str().is_some_and(|s| !s.is_empty()));
        }
        // Every reference resolves.
        let mut all = Vec::new();
        for d in gen.definitions.values() {
            refs(d, &mut all);
        }
        for name in all {
            assert!(gen.definitions.contains_key(&name), "{name}");
        }
        let spec = &gen.definitions["io.k8s.api.core.v1.PodSpec"];
        assert_eq!(
            spec["properties"]["containers"]["items"]["$ref"],
            "#/definitions/io.k8s.api.core.v1.Container"
        );
        assert_eq!(
            spec["properties"]["containers"]["x-kubernetes-patch-merge-key"],
            "name"
        );
        assert_eq!(spec["required"], json!(["containers"]));
        // Every strategy names a real field.
        for (def, field, _, _) in PATCH_STRATEGIES {
            assert!(
                gen.definitions[*def]["properties"].get(*field).is_some(),
                "{def}.{field}"
            );
        }
    }

    #[test]
    fn closure_follows_references() {
        let gen = generate();
        let names = closure(&gen.definitions, &["io.k8s.api.apps.v1.Deployment"]);
        for n in [
            "io.k8s.api.apps.v1.DeploymentSpec",
            "io.k8s.api.core.v1.Container",
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
        ] {
            assert!(names.iter().any(|x| x == n), "{n}");
        }
        assert!(!names.iter().any(|x| x == "io.k8s.api.rbac.v1.Role"));
    }
}
