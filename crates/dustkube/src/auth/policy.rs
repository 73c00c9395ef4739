//! The default RBAC policy every cluster starts with (Kubernetes' bootstrap policy, reduced to
//! the kinds dustkube serves): ClusterRoles cluster-admin, admin, edit, view, system:node,
//! system:node-bootstrapper, the node client certificate auto-approval roles, kubeadm:get-nodes,
//! system:basic-user, system:discovery, system:public-info-viewer; their bindings; nodes' Leases
//! in kube-node-lease; bootstrap tokens' read access to the shared certificates and the cluster
//! config in kube-system; anonymous read access to kube-public's cluster-info. [`ensure`] creates
//! what is absent at startup and never overwrites what an administrator changed.

use anyhow::{anyhow, Result};
use serde_json::{json, Value};

use super::rbac::Rule;
use crate::api::objects::create_object;
use crate::api::AppState;
use crate::resources::{rbac, ResourceType};

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];

fn meta(name: &str, namespace: Option<&str>) -> Value {
    let mut m = json!({
        "name": name,
        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    });
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    m
}

fn role(kind: &str, name: &str, namespace: Option<&str>, rules: &[Rule]) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": meta(name, namespace),
        "rules": rules.iter().map(Rule::to_json).collect::<Vec<_>>(),
    })
}

fn binding(
    kind: &str,
    name: &str,
    namespace: Option<&str>,
    role_kind: &str,
    role: &str,
    subjects: &[(&str, &str)],
) -> Value {
    let subjects: Vec<Value> = subjects
        .iter()
        .map(|(k, n)| json!({"kind": k, "apiGroup": "rbac.authorization.k8s.io", "name": n}))
        .collect();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": meta(name, namespace),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": subjects,
    })
}

/// ConfigMap in kube-system describing the cluster for joining nodes (etcd endpoints).
pub const CLUSTER_CONFIG: &str = "dustkube-config";

/// ClusterRole allowing auto-approval of a bootstrap token's node client certificate request.
pub const NODE_CLIENT_ROLE: &str =
    "system:certificates.k8s.io:certificatesigningrequests:nodeclient";
/// ClusterRole allowing auto-approval of a node's renewal of its own client certificate.
pub const SELF_NODE_CLIENT_ROLE: &str =
    "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient";

/// What a node's agent (kubelet + kube-proxy) does with the API, bound to `system:nodes`.
/// Without a Node authorizer these are not limited to the node's own objects; nodes do not
/// create pods (no mirror pods).
fn node_rules() -> Vec<Rule> {
    vec![
        Rule::resource(&["create", "get", "list", "watch"], &[""], &["nodes"]),
        Rule::resource(&["patch", "update"], &[""], &["nodes", "nodes/status"]),
        Rule::resource(READ, &[""], &["pods", "services", "endpoints"]),
        Rule::resource(READ, &["discovery.k8s.io"], &["endpointslices"]),
        Rule::resource(&["patch", "update"], &[""], &["pods/status"]),
        Rule::resource(&["delete"], &[""], &["pods"]),
        Rule::resource(&["create", "patch", "update"], &[""], &["events"]),
        Rule::resource(
            &["create", "patch", "update"],
            &["events.k8s.io"],
            &["events"],
        ),
        Rule::resource(READ, &[""], &["configmaps", "secrets"]),
        Rule::resource(&["create"], &[""], &["serviceaccounts/token"]),
        Rule::resource(
            &["create", "get", "list", "watch"],
            &["certificates.k8s.io"],
            &["certificatesigningrequests"],
        ),
    ]
}

/// What `view` may read (no Secrets, like Kubernetes).
fn view_rules() -> Vec<Rule> {
    vec![
        Rule::resource(
            READ,
            &[""],
            &[
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "pods",
                "replicationcontrollers",
                "serviceaccounts",
                "services",
            ],
        ),
        Rule::resource(
            READ,
            &[""],
            &[
                "events",
                "limitranges",
                "namespaces/status",
                "pods/log",
                "pods/status",
                "resourcequotas",
            ],
        ),
        Rule::resource(READ, &[""], &["namespaces"]),
        Rule::resource(
            READ,
            &["apps"],
            &[
                "daemonsets",
                "deployments",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
                "statefulsets",
            ],
        ),
        Rule::resource(READ, &["batch"], &["cronjobs", "jobs"]),
        Rule::resource(READ, &["discovery.k8s.io"], &["endpointslices"]),
    ]
}

/// What `edit` may change in a namespace (on top of [`view_rules`]).
fn edit_rules() -> Vec<Rule> {
    let mut rules = vec![
        Rule::resource(
            &["create", "get", "list", "watch"],
            &[""],
            &["pods/attach", "pods/exec", "pods/portforward", "pods/proxy"],
        ),
        Rule::resource(&["impersonate"], &[""], &["serviceaccounts"]),
        Rule::resource(
            WRITE,
            &[""],
            &[
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "pods",
                "replicationcontrollers",
                "secrets",
                "serviceaccounts",
                "services",
            ],
        ),
        Rule::resource(READ, &[""], &["secrets"]),
        Rule::resource(
            WRITE,
            &["apps"],
            &[
                "daemonsets",
                "deployments",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
                "statefulsets",
            ],
        ),
        Rule::resource(WRITE, &["batch"], &["cronjobs", "jobs"]),
        Rule::resource(
            &[
                "create", "delete", "get", "list", "patch", "update", "watch",
            ],
            &["coordination.k8s.io"],
            &["leases"],
        ),
    ];
    rules.extend(view_rules());
    rules
}

fn admin_rules() -> Vec<Rule> {
    let mut rules = vec![
        Rule::resource(
            &[
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ],
            &["rbac.authorization.k8s.io"],
            &["rolebindings", "roles"],
        ),
        Rule::resource(
            &["create"],
            &["authorization.k8s.io"],
            &["localsubjectaccessreviews"],
        ),
    ];
    rules.extend(edit_rules());
    rules
}

/// The default ClusterRoles.
pub fn cluster_roles() -> Vec<Value> {
    let cr = |name: &str, rules: &[Rule]| role("ClusterRole", name, None, rules);
    let discovery_urls = [
        "/api",
        "/api/*",
        "/apis",
        "/apis/*",
        "/healthz",
        "/livez",
        "/openapi",
        "/openapi/*",
        "/readyz",
        "/version",
        "/version/",
    ];
    vec![
        cr(
            "cluster-admin",
            &[
                Rule::resource(&["*"], &["*"], &["*"]),
                Rule::urls(&["*"], &["*"]),
            ],
        ),
        cr("admin", &admin_rules()),
        cr("edit", &edit_rules()),
        cr("view", &view_rules()),
        cr("system:node", &node_rules()),
        cr(
            "system:node-bootstrapper",
            &[Rule::resource(
                &["create", "get", "list", "watch"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests"],
            )],
        ),
        // Auto-approval of node client certificates (csr_signer asks RBAC, like Kubernetes'
        // SubjectAccessReview): a bootstrap token's first request, a node's renewal.
        cr(
            NODE_CLIENT_ROLE,
            &[Rule::resource(
                &["create"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests/nodeclient"],
            )],
        ),
        cr(
            SELF_NODE_CLIENT_ROLE,
            &[Rule::resource(
                &["create"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests/selfnodeclient"],
            )],
        ),
        // `join` refuses a node name that a Ready Node already has (kubeadm:get-nodes).
        cr(
            "kubeadm:get-nodes",
            &[Rule::resource(&["get"], &[""], &["nodes"])],
        ),
        cr(
            "system:basic-user",
            &[Rule::resource(
                &["create"],
                &["authorization.k8s.io"],
                &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
            )],
        ),
        cr("system:discovery", &[Rule::urls(&["get"], &discovery_urls)]),
        cr(
            "system:public-info-viewer",
            &[Rule::urls(
                &["get"],
                &["/healthz", "/livez", "/readyz", "/version", "/version/"],
            )],
        ),
    ]
}

/// The default ClusterRoleBindings.
pub fn cluster_role_bindings() -> Vec<Value> {
    let crb = |name: &str, role: &str, subjects: &[(&str, &str)]| {
        binding(
            "ClusterRoleBinding",
            name,
            None,
            "ClusterRole",
            role,
            subjects,
        )
    };
    vec![
        crb(
            "cluster-admin",
            "cluster-admin",
            &[("Group", "system:masters")],
        ),
        crb(
            "kubeadm:cluster-admins",
            "cluster-admin",
            &[("Group", "kubeadm:cluster-admins")],
        ),
        crb(
            "system:basic-user",
            "system:basic-user",
            &[("Group", "system:authenticated")],
        ),
        crb(
            "system:discovery",
            "system:discovery",
            &[("Group", "system:authenticated")],
        ),
        crb(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &[
                ("Group", "system:authenticated"),
                ("Group", "system:unauthenticated"),
            ],
        ),
        crb("system:node", "system:node", &[("Group", "system:nodes")]),
        crb(
            "system:node-bootstrapper",
            "system:node-bootstrapper",
            &[("Group", "system:bootstrappers")],
        ),
        crb(
            "kubeadm:node-autoapprove-bootstrap",
            NODE_CLIENT_ROLE,
            &[("Group", "system:bootstrappers")],
        ),
        crb(
            "kubeadm:node-autoapprove-certificate-rotation",
            SELF_NODE_CLIENT_ROLE,
            &[("Group", "system:nodes")],
        ),
        crb(
            "kubeadm:get-nodes",
            "kubeadm:get-nodes",
            &[("Group", "system:bootstrappers")],
        ),
    ]
}

/// Namespaced defaults: anonymous `get` of kube-public's cluster-info ConfigMap; nodes'
/// heartbeat Leases in kube-node-lease.
pub fn namespaced() -> Vec<(&'static ResourceType, Value)> {
    let mut r = Rule::resource(&["get"], &[""], &["configmaps"]);
    r.resource_names = vec!["cluster-info".into()];
    let name = "kubeadm:bootstrap-signer-clusterinfo";
    let leases = Rule::resource(
        &[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ],
        &["coordination.k8s.io"],
        &["leases"],
    );
    let lease_role = "system:node-lease";
    // `join --control-plane` reads the encrypted shared certificates with its token; every
    // join reads the cluster layout (etcd endpoints) — kubeadm's kubeadm-certs and
    // kubeadm-config Roles.
    let mut certs = Rule::resource(&["get"], &[""], &["secrets"]);
    certs.resource_names = vec![crate::cmd::certkey::SECRET.into()];
    let mut config = Rule::resource(&["get"], &[""], &["configmaps"]);
    config.resource_names = vec![CLUSTER_CONFIG.into()];
    let token_group = crate::cmd::bootstrap::DEFAULT_EXTRA_GROUP;
    vec![
        (
            &rbac::ROLE,
            role("Role", "dustkube:certs", Some("kube-system"), &[certs]),
        ),
        (
            &rbac::ROLE_BINDING,
            binding(
                "RoleBinding",
                "dustkube:certs",
                Some("kube-system"),
                "Role",
                "dustkube:certs",
                &[("Group", token_group)],
            ),
        ),
        (
            &rbac::ROLE,
            role("Role", "dustkube:config", Some("kube-system"), &[config]),
        ),
        (
            &rbac::ROLE_BINDING,
            binding(
                "RoleBinding",
                "dustkube:config",
                Some("kube-system"),
                "Role",
                "dustkube:config",
                &[("Group", token_group), ("Group", "system:nodes")],
            ),
        ),
        (
            &rbac::ROLE,
            role("Role", lease_role, Some("kube-node-lease"), &[leases]),
        ),
        (
            &rbac::ROLE_BINDING,
            binding(
                "RoleBinding",
                lease_role,
                Some("kube-node-lease"),
                "Role",
                lease_role,
                &[("Group", "system:nodes")],
            ),
        ),
        (&rbac::ROLE, role("Role", name, Some("kube-public"), &[r])),
        (
            &rbac::ROLE_BINDING,
            binding(
                "RoleBinding",
                name,
                Some("kube-public"),
                "Role",
                name,
                &[("User", "system:anonymous")],
            ),
        ),
    ]
}

/// Creates every default role and binding that is absent; existing objects are left alone.
pub async fn ensure(state: &AppState) -> Result<()> {
    let mut all: Vec<(&'static ResourceType, Value)> = Vec::new();
    all.extend(
        cluster_roles()
            .into_iter()
            .map(|v| (&rbac::CLUSTER_ROLE, v)),
    );
    all.extend(
        cluster_role_bindings()
            .into_iter()
            .map(|v| (&rbac::CLUSTER_ROLE_BINDING, v)),
    );
    all.extend(namespaced());
    let mut created = 0;
    for (rt, obj) in all {
        let ns = crate::resources::str_at(&obj, "/metadata/namespace").to_string();
        let ns = Some(ns.as_str()).filter(|n| !n.is_empty());
        let name = crate::resources::name_of(&obj).to_string();
        if state.store.get(&rt.key(ns, &name)).await?.is_some() {
            continue;
        }
        match create_object(state, rt, ns, obj, false).await {
            Ok(_) => created += 1,
            Err(e) if e.reason == "AlreadyExists" => {}
            Err(e) => return Err(anyhow!("creating {} {name}: {}", rt.kind, e.message)),
        }
    }
    if created > 0 {
        tracing::info!(created, "default RBAC policy created");
        state.authorizer.invalidate();
    }
    Ok(())
}
