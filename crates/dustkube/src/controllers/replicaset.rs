//! The ReplicaSet controller: keeps `spec.replicas` active pods controlled by each ReplicaSet
//! (creating them from the template, deleting the surplus in Kubernetes' order), adopts
//! matching orphans, releases pods that stop matching, and reports status.

use std::time::Duration;

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::api_result::OrFail;
use super::client::Client;
use super::index;
use super::ownership::{self, Claim};
use super::podutil;
use super::reconcile::run_loop;
use crate::resources::{int_at, name_of, pods, replicasets, str_at};

/// Component name of the Events this controller records.
pub const COMPONENT: &str = "replicaset-controller";

/// Most pods created or deleted in one pass (Kubernetes' burstReplicas).
const BURST: usize = 500;

/// What one ReplicaSet needs done to its pods.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Orphans to adopt (names).
    pub adopt: Vec<String>,
    /// Pods to release (names).
    pub release: Vec<String>,
    /// How many pods to create.
    pub create: usize,
    /// Pods to delete (names), in deletion order.
    pub delete: Vec<String>,
    /// The status to report (from the pods seen).
    pub status: Value,
}

/// Whether `labels` contain every label of the template (fullyLabeledReplicas).
fn fully_labeled(rs: &Value, pod: &Value) -> bool {
    let want = rs.pointer("/spec/template/metadata/labels");
    let have = pod.pointer("/metadata/labels");
    want.and_then(Value::as_object).is_none_or(|m| {
        m.iter()
            .all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v))
    })
}

/// The ReplicaSet's status computed from its active pods.
pub fn status_for(rs: &Value, owned: &[&Value], now: DateTime<Utc>) -> Value {
    let min_ready = int_at(rs, "/spec/minReadySeconds");
    let mut status = rs.get("status").cloned().unwrap_or_else(|| json!({}));
    if !status.is_object() {
        status = json!({});
    }
    status["replicas"] = json!(owned.len());
    status["fullyLabeledReplicas"] = json!(owned.iter().filter(|p| fully_labeled(rs, p)).count());
    status["readyReplicas"] = json!(owned.iter().filter(|p| podutil::is_ready(p)).count());
    status["availableReplicas"] = json!(owned
        .iter()
        .filter(|p| podutil::is_available(p, min_ready, now))
        .count());
    status["observedGeneration"] = json!(int_at(rs, "/metadata/generation"));
    status
}

/// Decides what to do for `rs` given every pod of its namespace.
pub fn plan(rs: &Value, pods: &[Value], now: DateTime<Utc>) -> Plan {
    let sel = rs.pointer("/spec/selector");
    let mut plan = Plan::default();
    let mut owned: Vec<&Value> = Vec::new();
    for p in pods {
        match ownership::claim(rs, sel, p) {
            Claim::Owned => {
                if podutil::is_active(p) {
                    owned.push(p)
                }
            }
            Claim::Adopt => {
                plan.adopt.push(name_of(p).to_string());
                if podutil::is_active(p) {
                    owned.push(p)
                }
            }
            Claim::Release => plan.release.push(name_of(p).to_string()),
            Claim::Ignore => {}
        }
    }
    plan.status = status_for(rs, &owned, now);
    if ownership::deleting(rs) {
        return plan;
    }
    let want = rs
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
        .max(0) as usize;
    if owned.len() < want {
        plan.create = (want - owned.len()).min(BURST);
    } else if owned.len() > want {
        let mut surplus = owned.clone();
        surplus.sort_by(|a, b| podutil::deletion_order(a, b));
        plan.delete = surplus
            .iter()
            .take((owned.len() - want).min(BURST))
            .map(|p| name_of(p).to_string())
            .collect();
    }
    plan
}

/// A new pod for `rs` from its template.
pub fn pod_from_template(rs: &Value) -> Value {
    let tpl = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let mut meta = json!({
        "generateName": format!("{}-", name_of(rs)),
        "namespace": str_at(rs, "/metadata/namespace"),
        "ownerReferences": [ownership::owner_ref(rs)],
    });
    for k in ["labels", "annotations"] {
        if let Some(v) = tpl.pointer(&format!("/metadata/{k}")) {
            meta[k] = v.clone();
        }
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": tpl.get("spec").cloned().unwrap_or(json!({})),
    })
}

fn find<'a>(pods: &'a [Value], name: &str) -> Option<&'a Value> {
    pods.iter().find(|p| name_of(p) == name)
}

/// Applies the plan of one ReplicaSet.
async fn sync_one(c: &Client, rs: &Value, pods: &[Value]) -> anyhow::Result<()> {
    let plan = plan(rs, pods, Utc::now());
    let ns = str_at(rs, "/metadata/namespace");
    let uid = str_at(rs, "/metadata/uid");
    for name in &plan.adopt {
        if let Some(p) = find(pods, name) {
            c.update(&pods::TYPE, ownership::adopted(p, rs))
                .await
                .or_fail()?;
        }
    }
    for name in &plan.release {
        if let Some(p) = find(pods, name) {
            c.update(&pods::TYPE, ownership::released(p, uid))
                .await
                .or_fail()?;
        }
    }
    let mut errors = Vec::new();
    for _ in 0..plan.create {
        match c.create(&pods::TYPE, pod_from_template(rs)).await {
            Ok(p) => {
                c.event(
                    rs,
                    "Normal",
                    "SuccessfulCreate",
                    &format!("Created pod: {}", name_of(&p)),
                )
                .await
            }
            Err(e) => {
                c.event(
                    rs,
                    "Warning",
                    "FailedCreate",
                    &format!("Error creating: {}", e.message),
                )
                .await;
                errors.push(e.message);
                break;
            }
        }
    }
    for name in &plan.delete {
        match c.delete(&pods::TYPE, Some(ns), name, &json!({})).await {
            Ok(_) => {
                c.event(
                    rs,
                    "Normal",
                    "SuccessfulDelete",
                    &format!("Deleted pod: {name}"),
                )
                .await
            }
            Err(e) if e.reason == "NotFound" => {}
            Err(e) => errors.push(e.message),
        }
    }
    if rs.get("status") != Some(&plan.status) {
        let mut updated = rs.clone();
        updated["status"] = plan.status;
        c.update_status(&replicasets::TYPE, updated)
            .await
            .or_fail()?;
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(anyhow!("{}: {}", name_of(rs), errors.join("; ")))
    }
}

/// One pass over every ReplicaSet.
pub async fn sync(c: Client) -> anyhow::Result<()> {
    let (all_rs, _) = c.list(&replicasets::TYPE, None, "").await.or_fail()?;
    if all_rs.is_empty() {
        return Ok(());
    }
    let pods = index::by_namespace(c.list(&pods::TYPE, None, "").await.or_fail()?.0);
    let mut failures = Vec::new();
    for rs in &all_rs {
        let ns = str_at(rs, "/metadata/namespace");
        if let Err(e) = sync_one(&c, rs, index::in_namespace(&pods, ns)).await {
            failures.push(format!("{e:#}"));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(failures.join("; ")))
    }
}

/// Runs the controller until aborted.
pub async fn run(client: Client) {
    let c = client.as_component(COMPONENT);
    run_loop(
        c,
        "replicaset",
        &[&replicasets::TYPE, &pods::TYPE],
        Duration::from_secs(10),
        sync,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(replicas: i64) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
               "metadata": {"name": "web-abc", "namespace": "ns", "uid": "rs-uid", "generation": 2},
               "spec": {"replicas": replicas,
                        "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}},
                                     "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    }

    fn pod(name: &str, owned: bool, ready: bool, node: &str) -> Value {
        let mut p = json!({"metadata": {"name": name, "namespace": "ns", "creationTimestamp": "2024-01-01T00:00:00Z",
                                         "labels": {"app": "web", "tier": "fe"}},
                            "spec": {"nodeName": node},
                            "status": {"phase": "Running", "conditions": [
                                {"type": "Ready", "status": if ready {"True"} else {"False"}}]}});
        if owned {
            p["metadata"]["ownerReferences"] = json!([{"uid": "rs-uid", "controller": true}]);
        }
        p
    }

    #[test]
    fn creates_missing_and_reports_status() {
        let pods = vec![pod("a", true, true, "n1"), pod("b", true, false, "")];
        let p = plan(&rs(3), &pods, Utc::now());
        assert_eq!(p.create, 1);
        assert!(p.delete.is_empty());
        assert_eq!(p.status["replicas"], 2);
        assert_eq!(p.status["readyReplicas"], 1);
        assert_eq!(p.status["availableReplicas"], 1);
        assert_eq!(p.status["fullyLabeledReplicas"], 2);
        assert_eq!(p.status["observedGeneration"], 2);
    }

    #[test]
    fn deletes_surplus_unscheduled_first_and_ignores_finished() {
        let mut done = pod("done", true, false, "n1");
        done["status"]["phase"] = json!("Succeeded");
        let mut dying = pod("dying", true, false, "n1");
        dying["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        let pods = vec![
            pod("a", true, true, "n1"),
            pod("b", true, false, ""),
            pod("c", true, true, "n2"),
            done,
            dying,
        ];
        let p = plan(&rs(1), &pods, Utc::now());
        assert_eq!(p.create, 0);
        assert_eq!(p.delete.len(), 2);
        assert_eq!(p.delete[0], "b", "the unscheduled pod goes first");
        assert_eq!(p.status["replicas"], 3);
    }

    #[test]
    fn adopts_orphans_and_releases_strays() {
        let mut stray = pod("stray", true, true, "n1");
        stray["metadata"]["labels"]["app"] = json!("db");
        let pods = vec![pod("orphan", false, true, "n1"), stray];
        let p = plan(&rs(1), &pods, Utc::now());
        assert_eq!(p.adopt, vec!["orphan"]);
        assert_eq!(p.release, vec!["stray"]);
        assert_eq!(p.create, 0, "the adopted orphan counts");
    }

    #[test]
    fn new_pods_come_from_the_template() {
        let p = pod_from_template(&rs(1));
        assert_eq!(p["metadata"]["generateName"], "web-abc-");
        assert_eq!(p["metadata"]["labels"]["tier"], "fe");
        assert_eq!(p["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(p["metadata"]["ownerReferences"][0]["uid"], "rs-uid");
        assert_eq!(p["spec"]["containers"][0]["image"], "busybox");
    }
}
