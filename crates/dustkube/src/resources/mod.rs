//! The kinds the server serves: one module per kind with its discovery facts, defaulting,
//! validation and table columns; [`ALL`] lists them and [`find`] looks one up by URL segments.

pub mod certificatesigningrequests;
pub mod componentstatuses;
pub mod configmaps;
pub mod deployments;
pub mod endpoints;
pub mod events;
pub mod leases;
pub mod namespaces;
pub mod nodes;
pub mod pods;
pub mod rbac;
pub mod replicasets;
pub mod reviews;
pub mod secrets;
pub mod serviceaccounts;
pub mod services;

use serde_json::{json, Value};

use crate::api::table::{age, Column};

/// A field-level validation failure (becomes a `cause` of an `Invalid` Status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the field (`spec.selector`).
    pub field: String,
    /// `FieldValueRequired`, `FieldValueInvalid`, ...
    pub reason: &'static str,
    /// Human message.
    pub message: String,
}

impl FieldError {
    /// A required field is missing.
    pub fn required(field: &str) -> Self {
        Self {
            field: field.into(),
            reason: "FieldValueRequired",
            message: "Required value".into(),
        }
    }
    /// A field has a bad value.
    pub fn invalid(field: &str, value: &str, why: &str) -> Self {
        Self {
            field: field.into(),
            reason: "FieldValueInvalid",
            message: format!("Invalid value: \"{value}\": {why}"),
        }
    }
}

/// Everything the API machinery needs to know about one kind.
pub struct ResourceType {
    /// API group (`""` for the core group).
    pub group: &'static str,
    /// API version (`v1`).
    pub version: &'static str,
    /// URL and storage segment (`deployments`).
    pub plural: &'static str,
    /// Singular name (`deployment`).
    pub singular: &'static str,
    /// Kind (`Deployment`).
    pub kind: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// kubectl short names (`deploy`).
    pub short_names: &'static [&'static str],
    /// Categories (`all`).
    pub categories: &'static [&'static str],
    /// Table columns (NAME first; priority 1 = only with `-o wide`).
    pub columns: fn() -> Vec<Column>,
    /// Table cells for one object, matching `columns` (without NAME and AGE, which are generic
    /// when `name_age` is true).
    pub cells: fn(&Value) -> Vec<Value>,
    /// Whether the table is NAME, cells..., AGE, then wide cells (most kinds).
    pub name_age: bool,
    /// Number of trailing cells that belong after AGE (the wide columns).
    pub wide: usize,
    /// Fills defaults on create and update.
    pub defaults: fn(&mut Value),
    /// Kind-specific validation.
    pub validate: fn(&Value) -> Vec<FieldError>,
}

impl ResourceType {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `/registry/<plural>/` or `/registry/<plural>/<ns>/`.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match namespace.filter(|_| self.namespaced) {
            Some(ns) => format!("/registry/{}/{ns}/", self.plural),
            None => format!("/registry/{}/", self.plural),
        }
    }

    /// The storage key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.prefix(namespace))
    }

    /// Whether objects of this kind live in the store (not computed or create-only reviews).
    pub fn stored(&self) -> bool {
        !matches!(
            self.plural,
            "componentstatuses" | "selfsubjectaccessreviews" | "selfsubjectrulesreviews"
        )
    }

    /// Subresources served besides the object itself (`status`, `scale`, `approval`,
    /// namespaces' `finalize`, pods' `binding` and `eviction`).
    pub fn subresources(&self) -> &'static [&'static str] {
        match (self.group, self.plural) {
            (_, "componentstatuses" | "selfsubjectaccessreviews" | "selfsubjectrulesreviews") => {
                &[]
            }
            ("apps", _) => &["status", "scale"],
            (_, "certificatesigningrequests") => &["status", "approval"],
            ("", "pods") => &["status", "binding", "eviction"],
            ("", "namespaces") => &["status", "finalize"],
            ("", "nodes" | "services") => &["status"],
            ("", "serviceaccounts") => &["token"],
            // ConfigMaps, Secrets, Events, Endpoints, Leases, RBAC: no status.
            _ => &[],
        }
    }

    /// The verbs advertised in discovery.
    pub fn verbs(&self) -> Vec<&'static str> {
        match self.plural {
            "componentstatuses" => return vec!["get", "list"],
            "selfsubjectaccessreviews" | "selfsubjectrulesreviews" => return vec!["create"],
            _ => {}
        }
        vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }

    /// The APIResource entry of subresource `sub` for discovery (`pods/eviction` is a
    /// policy/v1 Eviction, `deployments/scale` an autoscaling/v1 Scale, ...).
    pub fn subresource_discovery(&self, sub: &str) -> Value {
        let mut e = json!({
            "name": format!("{}/{sub}", self.plural),
            "singularName": "",
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": subresource_verbs(sub),
        });
        match sub {
            "scale" => {
                e["group"] = json!("autoscaling");
                e["version"] = json!("v1");
                e["kind"] = json!("Scale");
            }
            "binding" => e["kind"] = json!("Binding"),
            "token" => {
                e["group"] = json!("authentication.k8s.io");
                e["version"] = json!("v1");
                e["kind"] = json!("TokenRequest");
            }
            "eviction" => {
                e["group"] = json!("policy");
                e["version"] = json!("v1");
                e["kind"] = json!("Eviction");
            }
            _ => {}
        }
        e
    }

    /// The APIResource entry for discovery.
    pub fn discovery(&self) -> Value {
        let mut r = json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": self.verbs(),
        });
        if !self.short_names.is_empty() {
            r["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            r["categories"] = json!(self.categories);
        }
        r
    }

    /// Table cells for `obj`: name, kind cells, age, wide cells (or the kind's own order).
    pub fn row(&self, obj: &Value) -> Vec<Value> {
        let cells = (self.cells)(obj);
        if !self.name_age {
            return cells;
        }
        let split = cells.len().saturating_sub(self.wide);
        let mut row = vec![json!(name_of(obj))];
        row.extend(cells[..split].iter().cloned());
        row.push(json!(age(obj)));
        row.extend(cells[split..].iter().cloned());
        row
    }
}

impl std::fmt::Debug for ResourceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.api_version(), self.plural)
    }
}

/// The verbs a subresource answers (`binding` and `eviction` are create-only, `finalize`
/// update-only, the others get/update/patch).
pub fn subresource_verbs(sub: &str) -> &'static [&'static str] {
    match sub {
        "binding" | "eviction" | "token" => &["create"],
        "finalize" => &["update"],
        _ => &["get", "patch", "update"],
    }
}

/// Every served kind.
pub static ALL: &[&ResourceType] = &[
    &namespaces::TYPE,
    &nodes::TYPE,
    &pods::TYPE,
    &configmaps::TYPE,
    &secrets::TYPE,
    &services::TYPE,
    &events::TYPE,
    &endpoints::TYPE,
    &serviceaccounts::TYPE,
    &componentstatuses::TYPE,
    &deployments::TYPE,
    &replicasets::TYPE,
    &rbac::CLUSTER_ROLE_BINDING,
    &rbac::CLUSTER_ROLE,
    &rbac::ROLE_BINDING,
    &rbac::ROLE,
    &leases::TYPE,
    &certificatesigningrequests::TYPE,
    &reviews::ACCESS,
    &reviews::RULES,
];

/// The kind served at `group`/`version`/`plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    ALL.iter()
        .copied()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The API groups other than core, with their versions, in discovery order.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in ALL {
        if !r.group.is_empty() && !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// `metadata.name`, or "".
pub fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// A string at a JSON pointer, or "".
pub fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// An integer at a JSON pointer, or 0.
pub fn int_at(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// Sets `obj[path...] = value` if absent, creating objects on the way.
pub fn default_at(obj: &mut Value, path: &[&str], value: Value) {
    let mut cur = obj;
    for (i, seg) in path.iter().enumerate() {
        if !cur.is_object() {
            return;
        }
        let map = match cur.as_object_mut() {
            Some(m) => m,
            None => return,
        };
        if i + 1 == path.len() {
            map.entry(seg.to_string()).or_insert(value);
            return;
        }
        cur = map.entry(seg.to_string()).or_insert_with(|| json!({}));
    }
}

/// Defaults every container of a pod spec at `spec` (imagePullPolicy, termination message,
/// port protocol), as the real API does.
pub fn default_pod_spec(spec: &mut Value) {
    default_at(spec, &["restartPolicy"], json!("Always"));
    default_at(spec, &["terminationGracePeriodSeconds"], json!(30));
    default_at(spec, &["dnsPolicy"], json!("ClusterFirst"));
    default_at(spec, &["schedulerName"], json!("default-scheduler"));
    default_at(spec, &["securityContext"], json!({}));
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                let image = c.get("image").and_then(Value::as_str).unwrap_or("");
                let last = image.rsplit('/').next().unwrap_or("");
                let policy = if !last.contains(':') || last.ends_with(":latest") {
                    "Always"
                } else {
                    "IfNotPresent"
                };
                default_at(c, &["imagePullPolicy"], json!(policy));
                default_at(
                    c,
                    &["terminationMessagePath"],
                    json!("/dev/termination-log"),
                );
                default_at(c, &["terminationMessagePolicy"], json!("File"));
                default_at(c, &["resources"], json!({}));
                if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports {
                        default_at(p, &["protocol"], json!("TCP"));
                    }
                }
            }
        }
    }
}

/// Validates the containers of a pod spec at `path`.
pub fn validate_pod_spec(spec: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match spec.get("containers").and_then(Value::as_array) {
        Some(cs) if !cs.is_empty() => {
            for (i, c) in cs.iter().enumerate() {
                if c.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
                {
                    errs.push(FieldError::required(&format!(
                        "{path}.containers[{i}].name"
                    )));
                }
                if c.get("image")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
                {
                    errs.push(FieldError::required(&format!(
                        "{path}.containers[{i}].image"
                    )));
                }
            }
        }
        _ => errs.push(FieldError::required(&format!("{path}.containers"))),
    }
    errs
}

/// Comma-joined `key=value` of a label selector's matchLabels (kubectl's SELECTOR column).
pub fn selector_text(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return "<none>".into();
    };
    let labels = sel.get("matchLabels").unwrap_or(sel);
    match labels.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect::<Vec<_>>()
            .join(","),
        _ => "<none>".into(),
    }
}

/// Containers' names and images joined with commas (CONTAINERS and IMAGES columns).
pub fn containers_and_images(spec: Option<&Value>) -> (String, String) {
    let cs = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = cs
        .iter()
        .map(|c| c.get("name").and_then(Value::as_str).unwrap_or(""))
        .collect();
    let images: Vec<&str> = cs
        .iter()
        .map(|c| c.get("image").and_then(Value::as_str).unwrap_or(""))
        .collect();
    (names.join(","), images.join(","))
}

/// No validation beyond the generic metadata checks.
pub fn no_validation(_: &Value) -> Vec<FieldError> {
    Vec::new()
}

/// No defaults.
pub fn no_defaults(_: &mut Value) {}
