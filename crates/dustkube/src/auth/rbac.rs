//! RBAC: policy rules, subjects and bindings as Kubernetes defines them, the rule matching of
//! `rbac/validation` (verbs, apiGroups, resources with `*` and `resource/subresource`,
//! resourceNames, nonResourceURLs with trailing `*`), and [`Rbac`], the [`Authorizer`] that
//! reads Roles and bindings through the store (cached briefly, dropped on every RBAC write).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{Attributes, Authorizer, Decision, User, MASTERS};
use crate::storage::{ListOptions, Store};

/// One `rules[]` entry of a Role or ClusterRole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    /// Verbs (`get`, `*`).
    pub verbs: Vec<String>,
    /// API groups (`""`, `apps`, `*`).
    pub api_groups: Vec<String>,
    /// Resources (`pods`, `deployments/scale`, `*`, `*/scale`, `pods/*`).
    pub resources: Vec<String>,
    /// Object names (empty: any).
    pub resource_names: Vec<String>,
    /// Non-resource URLs (`/healthz`, `/api/*`, `*`).
    pub non_resource_urls: Vec<String>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

impl Rule {
    /// Reads a PolicyRule object.
    pub fn from_json(v: &Value) -> Rule {
        Rule {
            verbs: strings(v.get("verbs")),
            api_groups: strings(v.get("apiGroups")),
            resources: strings(v.get("resources")),
            resource_names: strings(v.get("resourceNames")),
            non_resource_urls: strings(v.get("nonResourceURLs")),
        }
    }

    /// The PolicyRule object (empty lists left out, like the API prints them).
    pub fn to_json(&self) -> Value {
        let mut v = json!({});
        for (k, list) in [
            ("verbs", &self.verbs),
            ("apiGroups", &self.api_groups),
            ("resources", &self.resources),
            ("resourceNames", &self.resource_names),
            ("nonResourceURLs", &self.non_resource_urls),
        ] {
            if !list.is_empty() || k == "verbs" {
                v[k] = json!(list);
            }
        }
        v
    }

    /// A resource rule (shorthand for the bootstrap policy and tests).
    pub fn resource(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Rule {
        let own = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        Rule {
            verbs: own(verbs),
            api_groups: own(groups),
            resources: own(resources),
            ..Default::default()
        }
    }

    /// A non-resource rule.
    pub fn urls(verbs: &[&str], urls: &[&str]) -> Rule {
        let own = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        Rule {
            verbs: own(verbs),
            non_resource_urls: own(urls),
            ..Default::default()
        }
    }

    /// Whether this rule allows `attrs` (resource or non-resource request).
    pub fn allows(&self, attrs: &Attributes) -> bool {
        if !verb_matches(&self.verbs, &attrs.verb) {
            return false;
        }
        match &attrs.path {
            Some(path) => url_matches(&self.non_resource_urls, path),
            None => {
                group_matches(&self.api_groups, &attrs.group)
                    && resource_matches(&self.resources, &attrs.resource, &attrs.subresource)
                    && name_matches(&self.resource_names, attrs.name.as_deref())
            }
        }
    }
}

/// `verbs` holds `*` or `verb`.
pub fn verb_matches(verbs: &[String], verb: &str) -> bool {
    verbs.iter().any(|v| v == "*" || v == verb)
}

/// `groups` holds `*` or `group`.
pub fn group_matches(groups: &[String], group: &str) -> bool {
    groups.iter().any(|g| g == "*" || g == group)
}

/// Kubernetes' ResourceMatches: `*`, `resource`, `resource/sub`, `*/sub`, `resource/*`.
pub fn resource_matches(resources: &[String], resource: &str, sub: &str) -> bool {
    let combined = if sub.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}/{sub}")
    };
    resources.iter().any(|r| {
        r == "*"
            || *r == combined
            || (!sub.is_empty() && (*r == format!("*/{sub}") || *r == format!("{resource}/*")))
    })
}

/// No names means any name; otherwise the request must name one of them.
pub fn name_matches(names: &[String], name: Option<&str>) -> bool {
    names.is_empty() || name.is_some_and(|n| names.iter().any(|x| x == n))
}

/// `*`, an exact URL, or a prefix ending in `*`.
pub fn url_matches(urls: &[String], path: &str) -> bool {
    urls.iter().any(|u| {
        u == "*"
            || u == path
            || u.strip_suffix('*')
                .is_some_and(|prefix| path.starts_with(prefix))
    })
}

/// A subject of a binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// `User`, `Group` or `ServiceAccount`.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace (ServiceAccount only; defaults to the binding's).
    pub namespace: String,
}

impl Subject {
    /// Whether `user` is this subject; `binding_ns` is the namespace of a RoleBinding.
    pub fn matches(&self, user: &User, binding_ns: &str) -> bool {
        match self.kind.as_str() {
            "User" => user.name == self.name,
            "Group" => user.groups.contains(&self.name),
            "ServiceAccount" => {
                let ns = if self.namespace.is_empty() {
                    binding_ns
                } else {
                    &self.namespace
                };
                user.name == format!("system:serviceaccount:{ns}:{}", self.name)
            }
            _ => false,
        }
    }
}

/// A RoleBinding or ClusterRoleBinding, reduced to what authorization needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Namespace (empty for ClusterRoleBindings).
    pub namespace: String,
    /// `Role` or `ClusterRole`.
    pub role_kind: String,
    /// Role name.
    pub role_name: String,
    /// Who it grants to.
    pub subjects: Vec<Subject>,
}

impl Binding {
    /// Reads a binding object.
    pub fn from_json(v: &Value) -> Binding {
        let s = |p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let subjects = v
            .get("subjects")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|x| Subject {
                        kind: x.get("kind").and_then(Value::as_str).unwrap_or("").into(),
                        name: x.get("name").and_then(Value::as_str).unwrap_or("").into(),
                        namespace: x
                            .get("namespace")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .into(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Binding {
            namespace: s("/metadata/namespace"),
            role_kind: s("/roleRef/kind"),
            role_name: s("/roleRef/name"),
            subjects,
        }
    }
}

/// All roles and bindings at one moment.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// ClusterRoles: name → rules.
    pub cluster_roles: Vec<(String, Vec<Rule>)>,
    /// Roles: (namespace, name) → rules.
    pub roles: Vec<((String, String), Vec<Rule>)>,
    /// ClusterRoleBindings.
    pub cluster_bindings: Vec<Binding>,
    /// RoleBindings.
    pub bindings: Vec<Binding>,
}

fn rules_of(v: &Value) -> Vec<Rule> {
    v.get("rules")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(Rule::from_json).collect())
        .unwrap_or_default()
}

impl Policy {
    /// Reads every Role, ClusterRole and binding from the store.
    pub async fn load(store: &dyn Store) -> Result<Policy, String> {
        let all = |prefix: &'static str| async move {
            store
                .list(prefix, &ListOptions::default())
                .await
                .map(|p| p.items)
                .map_err(|e| format!("reading {prefix}: {e}"))
        };
        let mut p = Policy::default();
        for item in all("/registry/clusterroles/").await? {
            let name = crate::resources::name_of(&item.value).to_string();
            p.cluster_roles.push((name, rules_of(&item.value)));
        }
        for item in all("/registry/roles/").await? {
            let ns = crate::resources::str_at(&item.value, "/metadata/namespace").to_string();
            let name = crate::resources::name_of(&item.value).to_string();
            p.roles.push(((ns, name), rules_of(&item.value)));
        }
        for item in all("/registry/clusterrolebindings/").await? {
            let mut b = Binding::from_json(&item.value);
            b.namespace.clear();
            p.cluster_bindings.push(b);
        }
        for item in all("/registry/rolebindings/").await? {
            p.bindings.push(Binding::from_json(&item.value));
        }
        Ok(p)
    }

    fn role_rules(&self, b: &Binding) -> &[Rule] {
        let found = match b.role_kind.as_str() {
            "ClusterRole" => self
                .cluster_roles
                .iter()
                .find(|(n, _)| *n == b.role_name)
                .map(|(_, r)| r),
            "Role" if !b.namespace.is_empty() => self
                .roles
                .iter()
                .find(|((ns, n), _)| *ns == b.namespace && *n == b.role_name)
                .map(|(_, r)| r),
            _ => None,
        };
        found.map(Vec::as_slice).unwrap_or(&[])
    }

    /// The rules that apply to `user` in `namespace` (cluster-wide bindings always; RoleBindings
    /// of that namespace when given).
    pub fn rules_for(&self, user: &User, namespace: Option<&str>) -> Vec<Rule> {
        let mut out = Vec::new();
        for b in &self.cluster_bindings {
            if b.subjects.iter().any(|s| s.matches(user, "")) {
                out.extend(self.role_rules(b).iter().cloned());
            }
        }
        if let Some(ns) = namespace {
            for b in self.bindings.iter().filter(|b| b.namespace == ns) {
                if b.subjects.iter().any(|s| s.matches(user, ns)) {
                    out.extend(self.role_rules(b).iter().cloned());
                }
            }
        }
        out
    }

    /// The decision for `user` doing `attrs`.
    pub fn decide(&self, user: &User, attrs: &Attributes) -> Decision {
        if user.groups.iter().any(|g| g == MASTERS) {
            return Decision::Allow;
        }
        let ns = attrs.namespace.as_deref().filter(|_| attrs.path.is_none());
        if self.rules_for(user, ns).iter().any(|r| r.allows(attrs)) {
            Decision::Allow
        } else {
            Decision::Deny(format!("no RBAC rule allows {}", attrs.verb))
        }
    }
}

/// How long a loaded policy is trusted when nothing was written through this server.
const CACHE_TTL: Duration = Duration::from_secs(2);

/// The RBAC authorizer: [`Policy`] read through the store, cached for [`CACHE_TTL`] and
/// dropped whenever an RBAC object is written through the API ([`Authorizer::invalidate`]).
pub struct Rbac {
    store: Arc<dyn Store>,
    cache: Mutex<Option<(Instant, Arc<Policy>)>>,
}

impl Rbac {
    /// An authorizer reading roles and bindings from `store`.
    pub fn new(store: Arc<dyn Store>) -> Rbac {
        Rbac {
            store,
            cache: Mutex::new(None),
        }
    }

    async fn policy(&self) -> Result<Arc<Policy>, String> {
        if let Ok(guard) = self.cache.lock() {
            if let Some((at, p)) = guard.as_ref() {
                if at.elapsed() < CACHE_TTL {
                    return Ok(p.clone());
                }
            }
        }
        let p = Arc::new(Policy::load(self.store.as_ref()).await?);
        if let Ok(mut guard) = self.cache.lock() {
            *guard = Some((Instant::now(), p.clone()));
        }
        Ok(p)
    }
}

#[async_trait]
impl Authorizer for Rbac {
    async fn authorize(&self, user: &User, attrs: &Attributes) -> Decision {
        if user.groups.iter().any(|g| g == MASTERS) {
            return Decision::Allow;
        }
        match self.policy().await {
            Ok(p) => p.decide(user, attrs),
            Err(e) => {
                tracing::warn!(error = %e, "RBAC policy unavailable");
                Decision::Deny(format!("authorizer error: {e}"))
            }
        }
    }

    async fn rules(&self, user: &User, namespace: &str) -> Result<Vec<Rule>, String> {
        if user.groups.iter().any(|g| g == MASTERS) {
            return Ok(vec![
                Rule::resource(&["*"], &["*"], &["*"]),
                Rule::urls(&["*"], &["*"]),
            ]);
        }
        let ns = Some(namespace).filter(|n| !n.is_empty());
        Ok(self.policy().await?.rules_for(user, ns))
    }

    fn invalidate(&self) {
        if let Ok(mut guard) = self.cache.lock() {
            *guard = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(verb: &str, group: &str, resource: &str, sub: &str, ns: Option<&str>) -> Attributes {
        Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.map(String::from),
            name: None,
            path: None,
        }
    }

    fn jane() -> User {
        User {
            name: "jane".into(),
            groups: vec!["students".into(), "system:authenticated".into()],
        }
    }

    #[test]
    fn verbs_groups_resources_and_wildcards() {
        let r = Rule::resource(&["get", "list"], &[""], &["pods"]);
        assert!(r.allows(&attrs("list", "", "pods", "", None)));
        assert!(!r.allows(&attrs("create", "", "pods", "", None)));
        assert!(!r.allows(&attrs("list", "apps", "pods", "", None)));
        assert!(!r.allows(&attrs("list", "", "pods", "log", None)));
        let all = Rule::resource(&["*"], &["*"], &["*"]);
        assert!(all.allows(&attrs("delete", "apps", "deployments", "scale", Some("x"))));
    }

    #[test]
    fn subresources() {
        let scale = Rule::resource(&["get"], &["apps"], &["deployments/scale"]);
        assert!(scale.allows(&attrs("get", "apps", "deployments", "scale", None)));
        assert!(!scale.allows(&attrs("get", "apps", "deployments", "", None)));
        let any_status = Rule::resource(&["get"], &["apps"], &["*/status"]);
        assert!(any_status.allows(&attrs("get", "apps", "replicasets", "status", None)));
        assert!(!any_status.allows(&attrs("get", "apps", "replicasets", "scale", None)));
        let pods_any = Rule::resource(&["get"], &[""], &["pods/*"]);
        assert!(pods_any.allows(&attrs("get", "", "pods", "log", None)));
        assert!(!pods_any.allows(&attrs("get", "", "pods", "", None)));
    }

    #[test]
    fn resource_names_and_urls() {
        let mut r = Rule::resource(&["get"], &[""], &["configmaps"]);
        r.resource_names = vec!["cluster-info".into()];
        let mut a = attrs("get", "", "configmaps", "", Some("kube-public"));
        assert!(!r.allows(&a));
        a.name = Some("cluster-info".into());
        assert!(r.allows(&a));
        a.name = Some("other".into());
        assert!(!r.allows(&a));

        let u = Rule::urls(&["get"], &["/api", "/api/*", "/version"]);
        let path = |p: &str| Attributes {
            path: Some(p.into()),
            ..attrs("get", "", "", "", None)
        };
        assert!(u.allows(&path("/api")));
        assert!(u.allows(&path("/api/v1")));
        assert!(u.allows(&path("/version")));
        assert!(!u.allows(&path("/apis")));
        assert!(!u.allows(&attrs("get", "", "pods", "", None)));
    }

    #[test]
    fn bindings_grant_in_their_namespace_only() {
        let policy = Policy {
            cluster_roles: vec![(
                "view".into(),
                vec![Rule::resource(&["get", "list", "watch"], &[""], &["pods"])],
            )],
            roles: vec![(
                ("demo".into(), "cm-writer".into()),
                vec![Rule::resource(&["create"], &[""], &["configmaps"])],
            )],
            cluster_bindings: vec![],
            bindings: vec![
                Binding::from_json(&json!({
                    "metadata": {"name": "jane-view", "namespace": "demo"},
                    "roleRef": {"kind": "ClusterRole", "name": "view"},
                    "subjects": [{"kind": "User", "name": "jane"}],
                })),
                Binding::from_json(&json!({
                    "metadata": {"name": "students", "namespace": "demo"},
                    "roleRef": {"kind": "Role", "name": "cm-writer"},
                    "subjects": [{"kind": "Group", "name": "students"}],
                })),
            ],
        };
        let j = jane();
        let ok = |a: &Attributes| policy.decide(&j, a) == Decision::Allow;
        assert!(ok(&attrs("list", "", "pods", "", Some("demo"))));
        assert!(!ok(&attrs("list", "", "pods", "", Some("default"))));
        assert!(!ok(&attrs("list", "", "pods", "", None)));
        assert!(ok(&attrs("create", "", "configmaps", "", Some("demo"))));
        assert!(!ok(&attrs(
            "create",
            "apps",
            "deployments",
            "",
            Some("demo")
        )));
        let other = User {
            name: "bob".into(),
            groups: vec![],
        };
        assert!(matches!(
            policy.decide(&other, &attrs("list", "", "pods", "", Some("demo"))),
            Decision::Deny(_)
        ));
        let root = User {
            name: "root".into(),
            groups: vec![MASTERS.into()],
        };
        assert_eq!(
            policy.decide(&root, &attrs("delete", "", "nodes", "", None)),
            Decision::Allow
        );
    }

    #[test]
    fn service_account_subjects() {
        let s = Subject {
            kind: "ServiceAccount".into(),
            name: "builder".into(),
            namespace: String::new(),
        };
        let sa = User {
            name: "system:serviceaccount:ci:builder".into(),
            groups: vec![],
        };
        assert!(s.matches(&sa, "ci"));
        assert!(!s.matches(&sa, "other"));
    }
}
