//! Scheduling filters: which nodes can take a pod (cordon, taints and tolerations, readiness,
//! nodeSelector and required node affinity, host ports, cpu/memory/pod capacity), and the
//! `0/N nodes are available: ...` message kube-scheduler gives when none can.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::quantity::milli_of;
use crate::controllers::conditions;
use crate::resources::{name_of, str_at};

/// Requested cpu (millicores), memory (milli-bytes) and pod count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// cpu in milli-units.
    pub cpu: i128,
    /// memory in milli-units (bytes × 1000).
    pub memory: i128,
    /// Number of pods.
    pub pods: i64,
}

/// cpu kube-scheduler assumes for scoring when a container requests none (100m).
const DEFAULT_CPU: i128 = 100;
/// memory assumed for scoring when a container requests none (200Mi).
const DEFAULT_MEMORY: i128 = 200 * 1024 * 1024 * 1000;

fn container_request(c: &Value, res: &str) -> Option<i128> {
    milli_of(c.pointer(&format!("/resources/requests/{res}")))
        .or_else(|| milli_of(c.pointer(&format!("/resources/limits/{res}"))))
}

fn pod_requests(pod: &Value, nonzero: bool) -> Resources {
    let mut r = Resources {
        pods: 1,
        ..Default::default()
    };
    let list = |k: &str| {
        pod.pointer(&format!("/spec/{k}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for c in list("containers") {
        let (cpu, mem) = (
            container_request(&c, "cpu"),
            container_request(&c, "memory"),
        );
        r.cpu += if nonzero {
            cpu.unwrap_or(DEFAULT_CPU)
        } else {
            cpu.unwrap_or(0)
        };
        r.memory += if nonzero {
            mem.unwrap_or(DEFAULT_MEMORY)
        } else {
            mem.unwrap_or(0)
        };
    }
    // Init containers run one at a time before the others: the largest counts.
    for c in list("initContainers") {
        r.cpu = r.cpu.max(container_request(&c, "cpu").unwrap_or(0));
        r.memory = r.memory.max(container_request(&c, "memory").unwrap_or(0));
    }
    r
}

/// What a pod asks for (requests, else limits; init containers' largest).
pub fn requests(pod: &Value) -> Resources {
    pod_requests(pod, false)
}

/// What a pod counts for in scoring (100m cpu / 200Mi memory for containers asking nothing).
pub fn nonzero_requests(pod: &Value) -> Resources {
    pod_requests(pod, true)
}

/// A node with what its pods already use.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// The Node object.
    pub node: Value,
    /// status.allocatable (capacity when absent; 110 pods when unsaid).
    pub allocatable: Resources,
    /// Sum of the requests of its pods.
    pub requested: Resources,
    /// Sum of its pods' scoring requests.
    pub nonzero_requested: Resources,
    /// Host ports in use: (protocol, port).
    pub host_ports: Vec<(String, i64)>,
}

fn host_ports(pod: &Value) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for c in pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for p in c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(hp) = p.get("hostPort").and_then(Value::as_i64).filter(|h| *h > 0) {
                let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                out.push((proto.to_string(), hp));
            }
        }
    }
    out
}

impl NodeInfo {
    /// A node with no pods counted yet.
    pub fn new(node: &Value) -> NodeInfo {
        let get = |res: &str| {
            milli_of(node.pointer(&format!("/status/allocatable/{res}")))
                .or_else(|| milli_of(node.pointer(&format!("/status/capacity/{res}"))))
        };
        NodeInfo {
            node: node.clone(),
            allocatable: Resources {
                cpu: get("cpu").unwrap_or(0),
                memory: get("memory").unwrap_or(0),
                pods: get("pods").map(|p| (p / 1000) as i64).unwrap_or(110),
            },
            requested: Resources::default(),
            nonzero_requested: Resources::default(),
            host_ports: Vec::new(),
        }
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        name_of(&self.node)
    }

    /// Counts a pod bound to this node.
    pub fn add_pod(&mut self, pod: &Value) {
        let r = requests(pod);
        let n = nonzero_requests(pod);
        self.requested.cpu += r.cpu;
        self.requested.memory += r.memory;
        self.requested.pods += 1;
        self.nonzero_requested.cpu += n.cpu;
        self.nonzero_requested.memory += n.memory;
        self.nonzero_requested.pods += 1;
        self.host_ports.extend(host_ports(pod));
    }
}

/// Whether one toleration tolerates a taint (Kubernetes' ToleratesTaint).
pub fn tolerates(toleration: &Value, taint: &Value) -> bool {
    let t = |k: &str| toleration.get(k).and_then(Value::as_str).unwrap_or("");
    let effect = t("effect");
    if !effect.is_empty() && effect != str_at(taint, "/effect") {
        return false;
    }
    let key = t("key");
    if !key.is_empty() && key != str_at(taint, "/key") {
        return false;
    }
    match t("operator") {
        "Exists" => true,
        "" | "Equal" => t("value") == str_at(taint, "/value"),
        _ => false,
    }
}

/// Whether any of the pod's tolerations tolerates `taint`.
pub fn pod_tolerates(pod: &Value, taint: &Value) -> bool {
    pod.pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .is_some_and(|ts| ts.iter().any(|t| tolerates(t, taint)))
}

fn taint_text(taint: &Value) -> String {
    format!("{{{}: {}}}", str_at(taint, "/key"), str_at(taint, "/value"))
}

/// The taint the node lifecycle controller puts (or will put) on a node that is not Ready:
/// not-ready when Ready is False or unreported, unreachable when Unknown.
fn readiness_taint(node: &Value) -> Option<Value> {
    let key = match conditions::status_of(node, "Ready") {
        "True" => return None,
        "Unknown" => "node.kubernetes.io/unreachable",
        _ => "node.kubernetes.io/not-ready",
    };
    Some(json!({"key": key, "effect": "NoSchedule"}))
}

fn match_expression(e: &Value, value: Option<&str>) -> bool {
    let values: Vec<&str> = e
        .get("values")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match e.get("operator").and_then(Value::as_str).unwrap_or("") {
        "In" => value.is_some_and(|v| values.contains(&v)),
        "NotIn" => !value.is_some_and(|v| values.contains(&v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => {
            matches!((value.and_then(number), values.first().and_then(|v| number(v))), (Some(a), Some(b)) if a > b)
        }
        "Lt" => {
            matches!((value.and_then(number), values.first().and_then(|v| number(v))), (Some(a), Some(b)) if a < b)
        }
        _ => false,
    }
}

/// nodeSelector and requiredDuringSchedulingIgnoredDuringExecution node affinity.
pub fn matches_affinity(pod: &Value, node: &Value) -> bool {
    let labels = node.pointer("/metadata/labels");
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    if let Some(sel) = pod.pointer("/spec/nodeSelector").and_then(Value::as_object) {
        if !sel.iter().all(|(k, v)| label(k) == v.as_str()) {
            return false;
        }
    }
    let Some(terms) = pod
        .pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array)
    else {
        return true;
    };
    // Terms are ORed; within a term every expression must hold; an empty term matches nothing.
    terms.iter().any(|term| {
        let exprs = term.get("matchExpressions").and_then(Value::as_array);
        let fields = term.get("matchFields").and_then(Value::as_array);
        if exprs.is_none_or(Vec::is_empty) && fields.is_none_or(Vec::is_empty) {
            return false;
        }
        exprs
            .into_iter()
            .flatten()
            .all(|e| match_expression(e, label(e.get("key").and_then(Value::as_str).unwrap_or(""))))
            && fields.into_iter().flatten().all(|e| {
                let v = (e.get("key").and_then(Value::as_str) == Some("metadata.name"))
                    .then(|| name_of(node));
                match_expression(e, v)
            })
    })
}

/// Why `node` cannot run `pod` (empty: it can), in kube-scheduler's words; filters stop at
/// the first that fails, as the scheduler framework does.
pub fn check(pod: &Value, node: &NodeInfo) -> Vec<String> {
    let n = &node.node;
    if n.pointer("/spec/unschedulable") == Some(&json!(true)) {
        let t = json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"});
        if !pod_tolerates(pod, &t) {
            return vec!["node(s) were unschedulable".into()];
        }
    }
    let taints = n
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for t in taints.iter().chain(readiness_taint(n).iter()) {
        let effect = str_at(t, "/effect");
        if (effect == "NoSchedule" || effect == "NoExecute") && !pod_tolerates(pod, t) {
            return vec![format!("node(s) had untolerated taint {}", taint_text(t))];
        }
    }
    if !matches_affinity(pod, n) {
        return vec!["node(s) didn't match Pod's node affinity/selector".into()];
    }
    let ports = host_ports(pod);
    if ports.iter().any(|p| node.host_ports.contains(p)) {
        return vec!["node(s) didn't have free ports for the requested pod ports".into()];
    }
    let want = requests(pod);
    let (alloc, used) = (node.allocatable, node.requested);
    let mut reasons = Vec::new();
    if used.pods + 1 > alloc.pods {
        reasons.push("Too many pods".to_string());
    }
    if want.cpu > 0 && used.cpu + want.cpu > alloc.cpu {
        reasons.push("Insufficient cpu".to_string());
    }
    if want.memory > 0 && used.memory + want.memory > alloc.memory {
        reasons.push("Insufficient memory".to_string());
    }
    reasons
}

/// `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) were unschedulable.` from the
/// reasons each node gave (counted per reason, sorted like kube-scheduler's histogram).
pub fn unschedulable_message(total: usize, reasons: &[Vec<String>]) -> String {
    if total == 0 {
        return "no nodes available to schedule pods".into();
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reasons.iter().flatten() {
        *counts.entry(r.as_str()).or_default() += 1;
    }
    let mut parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    format!("0/{total} nodes are available: {}.", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cpu: &str) -> Value {
        json!({"metadata": {"name": name, "labels": {"disk": "ssd", "zone": "a"}},
               "spec": {},
               "status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "3"},
                          "conditions": [{"type": "Ready", "status": "True"}]}})
    }

    fn pod(cpu: Option<&str>) -> Value {
        let mut c = json!({"name": "c", "image": "busybox"});
        if let Some(cpu) = cpu {
            c["resources"] = json!({"requests": {"cpu": cpu}});
        }
        json!({"metadata": {"name": "p"}, "spec": {"containers": [c]}})
    }

    #[test]
    fn taints_tolerations_and_cordon() {
        let cp = json!({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"});
        let mut n = node("cp", "2");
        n["spec"]["taints"] = json!([cp.clone()]);
        let info = NodeInfo::new(&n);
        assert_eq!(
            check(&pod(None), &info),
            vec!["node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"]
        );
        let mut tolerant = pod(None);
        tolerant["spec"]["tolerations"] = json!([{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]);
        assert!(check(&tolerant, &info).is_empty());
        assert!(
            tolerates(&json!({"operator": "Exists"}), &cp),
            "empty key + Exists tolerates all"
        );
        assert!(!tolerates(&json!({"key": "x", "operator": "Exists"}), &cp));
        assert!(!tolerates(
            &json!({"key": "node-role.kubernetes.io/control-plane", "value": "x"}),
            &cp
        ));

        let mut cordoned = node("w", "2");
        cordoned["spec"]["unschedulable"] = json!(true);
        assert_eq!(
            check(&pod(None), &NodeInfo::new(&cordoned)),
            vec!["node(s) were unschedulable"]
        );

        let mut down = node("w", "2");
        down["status"]["conditions"][0]["status"] = json!("Unknown");
        assert_eq!(
            check(&pod(None), &NodeInfo::new(&down)),
            vec!["node(s) had untolerated taint {node.kubernetes.io/unreachable: }"]
        );
    }

    #[test]
    fn capacity_and_affinity() {
        let mut info = NodeInfo::new(&node("w", "1"));
        assert!(check(&pod(Some("500m")), &info).is_empty());
        info.add_pod(&pod(Some("600m")));
        assert_eq!(check(&pod(Some("500m")), &info), vec!["Insufficient cpu"]);
        info.add_pod(&pod(None));
        info.add_pod(&pod(None));
        assert_eq!(
            check(&pod(Some("500m")), &info),
            vec!["Too many pods", "Insufficient cpu"]
        );
        let n = node("w", "1");
        let mut p = pod(None);
        p["spec"]["nodeSelector"] = json!({"disk": "ssd"});
        assert!(matches_affinity(&p, &n));
        p["spec"]["nodeSelector"] = json!({"disk": "hdd"});
        assert!(!matches_affinity(&p, &n));
        let mut p = pod(None);
        p["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
            {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["c"]}, {"key": "disk", "operator": "Exists"}]}]}}});
        assert!(matches_affinity(&p, &n));
        p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"] = json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["other"]}]}]);
        assert!(!matches_affinity(&p, &n));
    }

    #[test]
    fn requests_and_messages() {
        let mut p = pod(Some("250m"));
        p["spec"]["containers"][0]["resources"]["limits"] = json!({"memory": "1Gi"});
        p["spec"]["initContainers"] =
            json!([{"name": "i", "resources": {"requests": {"cpu": "2"}}}]);
        let r = requests(&p);
        assert_eq!((r.cpu, r.memory), (2000, 1024 * 1024 * 1024 * 1000));
        assert_eq!(nonzero_requests(&pod(None)).cpu, 100);
        let msg = unschedulable_message(
            2,
            &[
                vec![
                    "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"
                        .into(),
                ],
                vec!["node(s) were unschedulable".into()],
            ],
        );
        assert_eq!(msg, "0/2 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 1 node(s) were unschedulable.");
        let msg = unschedulable_message(
            3,
            &[
                vec!["Insufficient cpu".into()],
                vec!["Insufficient cpu".into()],
                vec!["node(s) were unschedulable".into()],
            ],
        );
        assert_eq!(
            msg,
            "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient cpu."
        );
    }
}
