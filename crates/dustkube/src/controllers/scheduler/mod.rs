//! The scheduler: binds every pending pod (no `spec.nodeName`, `schedulerName`
//! default-scheduler) to the best node that passes the [`filters`], by the [`score`]; pods no
//! node can take get `PodScheduled=False` (reason Unschedulable) and a FailedScheduling event.

pub mod filters;
pub mod quantity;
pub mod score;

use std::time::Duration;

use anyhow::anyhow;
use serde_json::{json, Value};

use super::api_result::OrFail;
use super::client::Client;
use super::conditions;
use super::ownership::deleting;
use super::reconcile::run_loop;
use crate::api::status::ApiError;
use crate::api::table::now_rfc3339;
use crate::resources::{name_of, nodes, pods, str_at};
use filters::NodeInfo;

/// The scheduler's name (pods' `spec.schedulerName`) and Event component.
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// Whether this scheduler should place `pod`.
pub fn needs_scheduling(pod: &Value) -> bool {
    str_at(pod, "/spec/nodeName").is_empty()
        && !deleting(pod)
        && !matches!(str_at(pod, "/status/phase"), "Succeeded" | "Failed")
        && matches!(str_at(pod, "/spec/schedulerName"), "" | SCHEDULER_NAME)
        && pod
            .pointer("/spec/schedulingGates")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
}

/// Where a pod goes, or why it cannot go anywhere.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Bind to this node.
    Bind(String),
    /// No node fits: the FailedScheduling message.
    Unschedulable(String),
}

/// Filters and scores `nodes` for `pod`; on `Bind`, the chosen node has the pod counted.
pub fn decide(pod: &Value, nodes: &mut [NodeInfo]) -> Decision {
    let mut feasible = Vec::new();
    let mut reasons = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let why = filters::check(pod, n);
        if why.is_empty() {
            feasible.push(i);
        } else {
            reasons.push(why);
        }
    }
    match score::pick(pod, nodes, &feasible) {
        Some(i) => {
            nodes[i].add_pod(pod);
            Decision::Bind(nodes[i].name().to_string())
        }
        None => Decision::Unschedulable(filters::unschedulable_message(nodes.len(), &reasons)),
    }
}

fn scheduled_condition(status: &str, reason: Option<&str>, message: Option<&str>) -> Value {
    let mut c = json!({"type": "PodScheduled", "status": status, "lastProbeTime": null,
                       "lastTransitionTime": now_rfc3339()});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    c
}

/// Binds `pod` to `node` through the pods/binding subresource, which sets `spec.nodeName` and
/// the PodScheduled=True condition (Conflict when someone bound it first).
pub async fn bind(c: &Client, pod: &Value, node: &str) -> Result<Value, ApiError> {
    let ns = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    crate::api::binding::bind(c.state(), ns, crate::resources::name_of(pod), node).await
}

/// Marks `pod` unschedulable (once per distinct message) with a FailedScheduling event.
async fn mark_unschedulable(c: &Client, pod: &Value, message: &str) -> anyhow::Result<()> {
    let mut status = pod.get("status").cloned().unwrap_or(json!({}));
    let cond = scheduled_condition("False", Some("Unschedulable"), Some(message));
    if !conditions::set(&mut status, cond) {
        return Ok(());
    }
    let mut p = pod.clone();
    p["status"] = status;
    c.update_status(&pods::TYPE, p).await.or_fail()?;
    c.event(pod, "Warning", "FailedScheduling", message).await;
    Ok(())
}

/// One pass: every pending pod, oldest first, against the current nodes.
pub async fn sync(c: Client) -> anyhow::Result<()> {
    let (all_pods, _) = c.list(&pods::TYPE, None, "").await.or_fail()?;
    let mut pending: Vec<&Value> = all_pods.iter().filter(|p| needs_scheduling(p)).collect();
    if pending.is_empty() {
        return Ok(());
    }
    pending.sort_by(|a, b| {
        str_at(a, "/metadata/creationTimestamp")
            .cmp(str_at(b, "/metadata/creationTimestamp"))
            .then_with(|| name_of(a).cmp(name_of(b)))
    });
    let (all_nodes, _) = c.list(&nodes::TYPE, None, "").await.or_fail()?;
    let mut infos: Vec<NodeInfo> = all_nodes.iter().map(NodeInfo::new).collect();
    for p in &all_pods {
        let node = str_at(p, "/spec/nodeName");
        if node.is_empty() || matches!(str_at(p, "/status/phase"), "Succeeded" | "Failed") {
            continue;
        }
        if let Some(n) = infos.iter_mut().find(|n| n.name() == node) {
            n.add_pod(p);
        }
    }
    let mut failures = Vec::new();
    for pod in pending {
        let who = format!("{}/{}", str_at(pod, "/metadata/namespace"), name_of(pod));
        match decide(pod, &mut infos) {
            Decision::Bind(node) => match bind(&c, pod, &node).await {
                Ok(bound) => {
                    let msg = format!("Successfully assigned {who} to {node}");
                    c.event(&bound, "Normal", "Scheduled", &msg).await;
                }
                Err(e) => failures.push(format!("binding {who}: {}", e.message)),
            },
            Decision::Unschedulable(msg) => {
                if let Err(e) = mark_unschedulable(&c, pod, &msg).await {
                    failures.push(format!("{who}: {e:#}"));
                }
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(failures.join("; ")))
    }
}

/// Runs the scheduler until aborted.
pub async fn run(client: Client) {
    let c = client.as_component(SCHEDULER_NAME);
    run_loop(
        c,
        "scheduler",
        &[&pods::TYPE, &nodes::TYPE],
        Duration::from_secs(10),
        sync,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> Value {
        json!({"metadata": {"name": name}, "spec": {},
               "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                          "conditions": [{"type": "Ready", "status": "True"}]}})
    }

    #[test]
    fn pods_spread_and_avoid_tainted_nodes() {
        let mut cp = node("cp1");
        cp["spec"]["taints"] =
            json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]);
        let mut infos: Vec<NodeInfo> = [cp, node("w1"), node("w2")]
            .iter()
            .map(NodeInfo::new)
            .collect();
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}});
        let mut placed = Vec::new();
        for _ in 0..4 {
            match decide(&pod, &mut infos) {
                Decision::Bind(n) => placed.push(n),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(placed, ["w1", "w2", "w1", "w2"]);
        let big = json!({"metadata": {"name": "big"}, "spec": {"containers": [
            {"name": "c", "resources": {"requests": {"cpu": "64"}}}]}});
        assert_eq!(
            decide(&big, &mut infos),
            Decision::Unschedulable("0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu.".into())
        );
    }

    #[test]
    fn which_pods_are_pending() {
        let p = json!({"metadata": {"name": "p"}, "spec": {"schedulerName": "default-scheduler"}, "status": {"phase": "Pending"}});
        assert!(needs_scheduling(&p));
        let mut bound = p.clone();
        bound["spec"]["nodeName"] = json!("w1");
        assert!(!needs_scheduling(&bound));
        let mut other = p.clone();
        other["spec"]["schedulerName"] = json!("my-scheduler");
        assert!(!needs_scheduling(&other));
        let mut gated = p.clone();
        gated["spec"]["schedulingGates"] = json!([{"name": "wait"}]);
        assert!(!needs_scheduling(&gated));
    }
}
