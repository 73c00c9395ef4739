//! The node lifecycle controller: a node whose agent stops renewing its Lease (in
//! kube-node-lease) for the grace period gets Ready=Unknown; nodes that are not Ready get the
//! `node.kubernetes.io/not-ready` or `unreachable` taints (NoSchedule and NoExecute), removed
//! when the agent reports Ready again; pods on NoExecute-tainted nodes are evicted once their
//! tolerationSeconds run out (the taint manager), pods on unreachable nodes are marked not
//! ready, and pods bound to nodes that no longer exist are force-deleted (pod GC).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::api_result::OrFail;
use super::client::Client;
use super::conditions::{self, format_time, time_at};
use super::ownership::deleting;
use super::reconcile::run_loop;
use super::scheduler::filters::tolerates;
use crate::resources::{leases, name_of, nodes, pods, str_at};

/// Component name of the Events this controller records.
pub const COMPONENT: &str = "node-controller";
/// Namespace of the agents' heartbeat Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Taint of nodes whose Ready condition is False.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Taint of nodes whose Ready condition is Unknown.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// How long a pod may be bound to a missing node before it is force-deleted.
const ORPHAN_QUARANTINE: Duration = Duration::from_secs(40);

/// When the node's agent was last heard from: its Lease's renewTime or the Ready condition's
/// lastHeartbeatTime, whichever is later.
pub fn last_heard(node: &Value, lease: Option<&Value>) -> Option<DateTime<Utc>> {
    let lease_time = lease.and_then(|l| time_at(l, "/spec/renewTime"));
    let heartbeat = conditions::get(node, "Ready").and_then(|c| time_at(c, "/lastHeartbeatTime"));
    lease_time.max(heartbeat)
}

const CONDITION_TYPES: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// The status of a node not heard from within `grace` (its conditions Unknown), or `None`
/// when it is fresh or already Unknown. A node never heard from counts from its creation.
pub fn stale_status(
    node: &Value,
    heard: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    grace: Duration,
) -> Option<Value> {
    let since = heard.or_else(|| time_at(node, "/metadata/creationTimestamp"))?;
    let grace = chrono::Duration::from_std(grace).ok()?;
    if now - since <= grace {
        return None;
    }
    let mut status = node.get("status").cloned().unwrap_or(json!({}));
    let t = format_time(now);
    let mut changed = false;
    for ty in CONDITION_TYPES {
        let existing = conditions::get(node, ty).cloned();
        let cond = match existing {
            None => json!({"type": ty, "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                           "message": "Kubelet never posted node status.",
                           "lastHeartbeatTime": format_time(since), "lastTransitionTime": t}),
            Some(c) if c.get("status").and_then(Value::as_str) == Some("Unknown") => continue,
            Some(mut c) => {
                c["status"] = json!("Unknown");
                c["reason"] = json!("NodeStatusUnknown");
                c["message"] = json!("Kubelet stopped posting node status.");
                c["lastTransitionTime"] = json!(t);
                c
            }
        };
        changed |= conditions::set(&mut status, cond);
    }
    changed.then_some(status)
}

fn is_managed(taint: &Value) -> bool {
    matches!(str_at(taint, "/key"), NOT_READY | UNREACHABLE)
        && matches!(str_at(taint, "/effect"), "NoSchedule" | "NoExecute")
}

/// The node's taints as they should be: others kept, plus not-ready (Ready False or never
/// reported) or unreachable (Ready Unknown) with NoSchedule and NoExecute; an existing
/// managed taint keeps its timeAdded.
pub fn desired_taints(node: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let current: Vec<Value> = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out: Vec<Value> = current.iter().filter(|t| !is_managed(t)).cloned().collect();
    let key = match conditions::status_of(node, "Ready") {
        "True" => return out,
        "Unknown" => UNREACHABLE,
        "False" => NOT_READY,
        // Not reported yet: the agent registers the node before its first status.
        _ => return current,
    };
    for effect in ["NoSchedule", "NoExecute"] {
        let existing = current
            .iter()
            .find(|t| str_at(t, "/key") == key && str_at(t, "/effect") == effect);
        out.push(match existing {
            Some(t) => t.clone(),
            None if effect == "NoExecute" => {
                json!({"key": key, "effect": effect, "timeAdded": format_time(now)})
            }
            None => json!({"key": key, "effect": effect}),
        });
    }
    out
}

/// When a pod on a node with `taints` must be evicted: `None` while it tolerates every
/// NoExecute taint forever (or there is none), else the time its shortest tolerationSeconds
/// (counted from when the taints were added) runs out, or `now` for an untolerated taint.
pub fn eviction_time(pod: &Value, taints: &[Value], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let no_execute: Vec<&Value> = taints
        .iter()
        .filter(|t| str_at(t, "/effect") == "NoExecute")
        .collect();
    if no_execute.is_empty() {
        return None;
    }
    let tolerations: Vec<Value> = pod
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut min_seconds: Option<i64> = None;
    for taint in &no_execute {
        let used: Vec<&Value> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if used.is_empty() {
            return Some(now);
        }
        for t in used {
            if let Some(s) = t.get("tolerationSeconds").and_then(Value::as_i64) {
                let s = s.max(0);
                min_seconds = Some(min_seconds.map_or(s, |m| m.min(s)));
            }
        }
    }
    let seconds = min_seconds?;
    let start = no_execute
        .iter()
        .filter_map(|t| time_at(t, "/timeAdded"))
        .max()
        .unwrap_or(now);
    Some(start + chrono::Duration::seconds(seconds))
}

/// Pods marked not ready because their node is unreachable: the status to write.
pub fn not_ready_status(pod: &Value, now: DateTime<Utc>) -> Option<Value> {
    if conditions::status_of(pod, "Ready") != "True" {
        return None;
    }
    let mut status = pod.get("status").cloned().unwrap_or(json!({}));
    for ty in ["Ready", "ContainersReady"] {
        if let Some(mut c) = conditions::get(pod, ty).cloned() {
            c["status"] = json!("False");
            c["lastTransitionTime"] = json!(format_time(now));
            conditions::set(&mut status, c);
        }
    }
    Some(status)
}

/// The controller's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a node may go without a heartbeat before it is Unknown.
    pub grace: Duration,
}

async fn sync_nodes(
    c: &Client,
    settings: &Settings,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<Value>> {
    let (all, _) = c.list(&nodes::TYPE, None, "").await.or_fail()?;
    let (node_leases, _) = c
        .list(&leases::TYPE, Some(LEASE_NAMESPACE), "")
        .await
        .or_fail()?;
    let mut out = Vec::new();
    for mut node in all {
        let lease = node_leases.iter().find(|l| name_of(l) == name_of(&node));
        if let Some(status) = stale_status(&node, last_heard(&node, lease), now, settings.grace) {
            let mut n = node.clone();
            n["status"] = status;
            node = c.update_status(&nodes::TYPE, n).await.or_fail()?;
            let msg = format!("Node {} status is now: NodeNotReady", name_of(&node));
            c.event(&node, "Normal", "NodeNotReady", &msg).await;
        }
        let taints = desired_taints(&node, now);
        let current = node.pointer("/spec/taints").cloned().unwrap_or(json!([]));
        if json!(taints) != current {
            let mut n = node.clone();
            match n.get_mut("spec").and_then(Value::as_object_mut) {
                Some(spec) if taints.is_empty() => {
                    spec.remove("taints");
                }
                Some(spec) => {
                    spec.insert("taints".into(), json!(taints));
                }
                None => n["spec"] = json!({"taints": taints}),
            }
            node = c.update(&nodes::TYPE, n).await.or_fail()?;
        }
        out.push(node);
    }
    Ok(out)
}

/// One pass: node conditions and taints, then evictions and orphans.
async fn sync(
    c: Client,
    settings: Settings,
    orphans: Arc<Mutex<HashMap<String, std::time::Instant>>>,
) -> anyhow::Result<()> {
    let now = Utc::now();
    let all_nodes = sync_nodes(&c, &settings, now).await?;
    let (all_pods, _) = c.list(&pods::TYPE, None, "").await.or_fail()?;
    let mut failures = Vec::new();
    let mut seen_orphans = Vec::new();
    for pod in &all_pods {
        let node_name = str_at(pod, "/spec/nodeName");
        if node_name.is_empty() {
            continue;
        }
        let ns = str_at(pod, "/metadata/namespace");
        let who = format!("{ns}/{}", name_of(pod));
        let Some(node) = all_nodes.iter().find(|n| name_of(n) == node_name) else {
            let first = {
                let mut map = orphans.lock().unwrap_or_else(|e| e.into_inner());
                *map.entry(who.clone())
                    .or_insert_with(std::time::Instant::now)
            };
            seen_orphans.push(who.clone());
            if first.elapsed() >= ORPHAN_QUARANTINE {
                let force = json!({"gracePeriodSeconds": 0});
                match c.delete(&pods::TYPE, Some(ns), name_of(pod), &force).await {
                    Ok(_) => {
                        tracing::info!(pod = %who, node = node_name, "deleted pod bound to a missing node")
                    }
                    Err(e) if e.reason == "NotFound" => {}
                    Err(e) => failures.push(format!("{who}: {}", e.message)),
                }
            }
            continue;
        };
        if deleting(pod) {
            continue;
        }
        if conditions::status_of(node, "Ready") == "Unknown" {
            if let Some(status) = not_ready_status(pod, now) {
                let mut p = pod.clone();
                p["status"] = status;
                if let Err(e) = c.update_status(&pods::TYPE, p).await {
                    failures.push(format!("{who}: {}", e.message));
                }
            }
        }
        let taints: Vec<Value> = node
            .pointer("/spec/taints")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if eviction_time(pod, &taints, now).is_some_and(|t| t <= now) {
            c.event(
                pod,
                "Normal",
                "TaintManagerEviction",
                &format!("Marking for deletion Pod {who}"),
            )
            .await;
            match c
                .delete(&pods::TYPE, Some(ns), name_of(pod), &json!({}))
                .await
            {
                Ok(_) => tracing::info!(pod = %who, node = node_name, "evicted"),
                Err(e) if e.reason == "NotFound" => {}
                Err(e) => failures.push(format!("{who}: {}", e.message)),
            }
        }
    }
    orphans
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|k, _| seen_orphans.contains(k));
    if failures.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(failures.join("; ")))
    }
}

/// Runs the controller until aborted.
pub async fn run(client: Client, settings: Settings) {
    let c = client.as_component(COMPONENT);
    let orphans = Arc::new(Mutex::new(HashMap::new()));
    run_loop(
        c,
        "node-lifecycle",
        &[&nodes::TYPE],
        Duration::from_secs(2),
        move |c| sync(c, settings.clone(), orphans.clone()),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ready: &str) -> Value {
        json!({"metadata": {"name": "w1", "creationTimestamp": "2024-01-01T00:00:00Z"},
               "spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]},
               "status": {"conditions": [
                   {"type": "Ready", "status": ready, "reason": "KubeletReady",
                    "lastHeartbeatTime": "2024-01-01T00:00:00Z", "lastTransitionTime": "2024-01-01T00:00:00Z"},
                   {"type": "MemoryPressure", "status": "False"}]}})
    }

    #[test]
    fn stale_leases_make_nodes_unknown() {
        let now = Utc::now();
        let n = node("True");
        let fresh = json!({"spec": {"renewTime": format_time(now - chrono::Duration::seconds(5))}});
        let heard = last_heard(&n, Some(&fresh));
        assert!(stale_status(&n, heard, now, Duration::from_secs(40)).is_none());
        let old = json!({"spec": {"renewTime": format_time(now - chrono::Duration::seconds(41))}});
        let st =
            stale_status(&n, last_heard(&n, Some(&old)), now, Duration::from_secs(40)).unwrap();
        let obj = json!({"status": st});
        let ready = conditions::get(&obj, "Ready").unwrap();
        assert_eq!(ready["status"], "Unknown");
        assert_eq!(ready["reason"], "NodeStatusUnknown");
        assert_eq!(ready["message"], "Kubelet stopped posting node status.");
        assert_eq!(conditions::status_of(&obj, "MemoryPressure"), "Unknown");
        assert_eq!(
            conditions::get(&obj, "DiskPressure").unwrap()["reason"],
            "NodeStatusNeverUpdated"
        );
        // Already Unknown: nothing to write.
        let mut unknown = n.clone();
        unknown["status"] = obj["status"].clone();
        assert!(stale_status(
            &unknown,
            last_heard(&n, Some(&old)),
            now,
            Duration::from_secs(40)
        )
        .is_none());
    }

    #[test]
    fn taints_follow_the_ready_condition() {
        let now = Utc::now();
        let t = desired_taints(&node("Unknown"), now);
        let keys: Vec<String> = t
            .iter()
            .map(|t| format!("{}:{}", str_at(t, "/key"), str_at(t, "/effect")))
            .collect();
        assert_eq!(
            keys,
            [
                "dedicated:NoSchedule",
                "node.kubernetes.io/unreachable:NoSchedule",
                "node.kubernetes.io/unreachable:NoExecute"
            ]
        );
        assert!(t[2].get("timeAdded").is_some());
        // Kept as is on the next pass (timeAdded too).
        let mut tainted = node("Unknown");
        tainted["spec"]["taints"] = json!(t.clone());
        assert_eq!(
            desired_taints(&tainted, now + chrono::Duration::seconds(9)),
            t
        );
        // Ready again: only the foreign taint stays.
        tainted["status"]["conditions"][0]["status"] = json!("True");
        assert_eq!(desired_taints(&tainted, now).len(), 1);
        let f = desired_taints(&node("False"), now);
        assert_eq!(str_at(&f[1], "/key"), NOT_READY);
    }

    #[test]
    fn evictions_wait_for_toleration_seconds() {
        let now = Utc::now();
        let added = now - chrono::Duration::seconds(10);
        let taints = vec![
            json!({"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": format_time(added)}),
        ];
        let plain = json!({"spec": {}});
        assert_eq!(
            eviction_time(&plain, &taints, now),
            Some(now),
            "untolerated: now"
        );
        let pod = |secs: Option<i64>| {
            let mut t = json!({"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"});
            if let Some(s) = secs {
                t["tolerationSeconds"] = json!(s);
            }
            json!({"spec": {"tolerations": [t]}})
        };
        assert_eq!(eviction_time(&pod(None), &taints, now), None, "forever");
        let at = eviction_time(&pod(Some(5)), &taints, now).unwrap();
        assert!(
            at <= now
                && at
                    == conditions::parse_time(&format_time(added)).unwrap()
                        + chrono::Duration::seconds(5)
        );
        assert!(eviction_time(&pod(Some(300)), &taints, now).unwrap() > now);
        assert_eq!(eviction_time(&pod(Some(5)), &[], now), None);
    }

    #[test]
    fn pods_on_unreachable_nodes_turn_not_ready() {
        let now = Utc::now();
        let pod = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}]}});
        let st = not_ready_status(&pod, now).unwrap();
        let obj = json!({"status": st});
        assert_eq!(conditions::status_of(&obj, "Ready"), "False");
        assert_eq!(conditions::status_of(&obj, "ContainersReady"), "False");
        assert!(not_ready_status(&obj, now).is_none());
    }
}
