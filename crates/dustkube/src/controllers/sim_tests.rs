//! In-process runs of the controllers together (ReplicaSet, Deployment, scheduler,
//! endpoints) on the memory store, with a stand-in agent that marks bound pods Running and
//! Ready: rollouts, scaling, rollback and endpoints converge as with the real binary.

use std::sync::Arc;

use serde_json::{json, Value};

use super::client::Client;
use super::deployment::{self, template::HASH_LABEL, REVISION};
use super::{conditions, endpoints, ownership, replicaset, scheduler};
use crate::api::AppState;
use crate::auth::MastersOnly;
use crate::resources::{deployments, name_of, nodes, pods, replicasets, services, str_at};
use crate::storage::memory::MemoryStore;

async fn client() -> Client {
    let state = AppState::new(Arc::new(MemoryStore::new()), Arc::new(MastersOnly));
    crate::server::seed(&state).await.unwrap();
    Client::new(state, "test")
}

fn node(name: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {},
           "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                      "conditions": [{"type": "Ready", "status": "True"}]}})
}

/// The stand-in agent: bound pods become Running and Ready with an IP; deleted ones vanish.
async fn agent(c: &Client) {
    let (all, _) = c.list(&pods::TYPE, None, "").await.unwrap();
    for (i, p) in all.iter().enumerate() {
        // A node agent finishes graceful deletions with a final zero-grace DELETE.
        if !str_at(p, "/metadata/deletionTimestamp").is_empty() {
            let ns = p.pointer("/metadata/namespace").and_then(Value::as_str);
            c.delete(
                &pods::TYPE,
                ns,
                crate::resources::name_of(p),
                &json!({"gracePeriodSeconds": 0}),
            )
            .await
            .unwrap();
            continue;
        }
        if str_at(p, "/spec/nodeName").is_empty() || conditions::status_of(p, "Ready") == "True" {
            continue;
        }
        let mut p = p.clone();
        p["status"]["phase"] = json!("Running");
        p["status"]["podIP"] = json!(format!("10.244.0.{}", i + 10));
        conditions::set(
            &mut p["status"],
            json!({"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}),
        );
        c.update_status(&pods::TYPE, p).await.unwrap();
    }
}

async fn settle(c: &Client) {
    for _ in 0..40 {
        deployment::sync(c.clone()).await.unwrap();
        replicaset::sync(c.clone()).await.unwrap();
        scheduler::sync(c.clone()).await.unwrap();
        agent(c).await;
    }
}

async fn deploy(c: &Client) -> Value {
    c.get(&deployments::TYPE, Some("default"), "web")
        .await
        .unwrap()
        .unwrap()
}

async fn replica_sets(c: &Client) -> Vec<Value> {
    c.list(&replicasets::TYPE, Some("default"), "")
        .await
        .unwrap()
        .0
}

async fn live_pods(c: &Client) -> Vec<Value> {
    let (all, _) = c.list(&pods::TYPE, Some("default"), "").await.unwrap();
    all.into_iter().filter(super::podutil::is_active).collect()
}

fn rollout_done(d: &Value) -> bool {
    let i = |p: &str| d.pointer(p).and_then(Value::as_i64).unwrap_or(-1);
    i("/status/observedGeneration") >= i("/metadata/generation")
        && i("/status/updatedReplicas") == i("/spec/replicas")
        && i("/status/replicas") == i("/status/updatedReplicas")
        && i("/status/availableReplicas") == i("/status/updatedReplicas")
}

#[tokio::test]
async fn rollout_scale_rollback_and_endpoints() {
    let c = client().await;
    for n in ["w1", "w2"] {
        c.create(&nodes::TYPE, node(n)).await.unwrap();
    }
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default",
                     "annotations": {"kubernetes.io/change-cause": "first"}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "busybox:stable",
                                       "ports": [{"name": "http", "containerPort": 8080}]}]}}}});
    c.create(&deployments::TYPE, d).await.unwrap();
    settle(&c).await;
    let d = deploy(&c).await;
    assert!(rollout_done(&d), "{:#}", d["status"]);
    assert_eq!(
        str_at(
            &d,
            "/metadata/annotations/deployment.kubernetes.io~1revision"
        ),
        "1"
    );
    let rss = replica_sets(&c).await;
    assert_eq!(rss.len(), 1);
    let first = rss[0].clone();
    let hash = str_at(&first, "/metadata/labels/pod-template-hash").to_string();
    assert_eq!(name_of(&first), format!("web-{hash}"));
    assert_eq!(
        first["spec"]["selector"]["matchLabels"][HASH_LABEL],
        json!(hash)
    );
    assert_eq!(
        str_at(&first, "/metadata/annotations/kubernetes.io~1change-cause"),
        "first"
    );
    assert!(ownership::is_controlled_by(&first, &d));
    let pods = live_pods(&c).await;
    assert_eq!(pods.len(), 3);
    let on = |n: &str| {
        pods.iter()
            .filter(|p| str_at(p, "/spec/nodeName") == n)
            .count()
    };
    assert_eq!(
        (on("w1") + on("w2"), on("w1").min(on("w2"))),
        (3, 1),
        "spread"
    );
    let cond = conditions::get(&d, "Progressing").unwrap();
    assert_eq!(cond["reason"], "NewReplicaSetAvailable");

    // Scale 3 → 5 → 2.
    for n in [5, 2] {
        let mut d = deploy(&c).await;
        d["spec"]["replicas"] = json!(n);
        c.update(&deployments::TYPE, d).await.unwrap();
        settle(&c).await;
        assert_eq!(live_pods(&c).await.len(), n);
        assert!(rollout_done(&deploy(&c).await));
    }

    // New image: a second ReplicaSet takes over.
    let mut d = deploy(&c).await;
    d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("busybox:musl");
    c.update(&deployments::TYPE, d).await.unwrap();
    settle(&c).await;
    let d = deploy(&c).await;
    assert!(rollout_done(&d), "{:#}", d["status"]);
    let rss = replica_sets(&c).await;
    assert_eq!(rss.len(), 2);
    let second = rss
        .iter()
        .find(|r| name_of(r) != name_of(&first))
        .unwrap()
        .clone();
    assert_eq!(deployment::revision(&second), 2);
    assert_eq!(second["spec"]["replicas"], 2);
    assert_eq!(d["metadata"]["annotations"][REVISION], "2");
    let old = rss.iter().find(|r| name_of(r) == name_of(&first)).unwrap();
    assert_eq!(old["spec"]["replicas"], 0);
    for p in live_pods(&c).await {
        assert_eq!(p["spec"]["containers"][0]["image"], "busybox:musl");
    }

    // Rollback (what `kubectl rollout undo` patches): the first ReplicaSet is reused as
    // revision 3.
    let mut d = deploy(&c).await;
    let mut tpl = first["spec"]["template"].clone();
    tpl["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove(HASH_LABEL);
    tpl["metadata"]["creationTimestamp"] = Value::Null;
    d["spec"]["template"] = tpl;
    c.update(&deployments::TYPE, d).await.unwrap();
    settle(&c).await;
    let d = deploy(&c).await;
    assert!(rollout_done(&d));
    let rss = replica_sets(&c).await;
    assert_eq!(rss.len(), 2, "no third ReplicaSet");
    let back = rss.iter().find(|r| name_of(r) == name_of(&first)).unwrap();
    assert_eq!(deployment::revision(back), 3);
    assert_eq!(back["spec"]["replicas"], 2);
    assert_eq!(
        str_at(
            back,
            "/metadata/annotations/deployment.kubernetes.io~1revision-history"
        ),
        "1"
    );
    for p in live_pods(&c).await {
        assert_eq!(p["metadata"]["labels"][HASH_LABEL], json!(hash));
    }

    // A Service selecting the pods gets their IPs, with the named port resolved.
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
                     "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}});
    c.create(&services::TYPE, svc).await.unwrap();
    endpoints::sync_once(&c).await.unwrap();
    let ep = c
        .get(&crate::resources::endpoints::TYPE, Some("default"), "web")
        .await
        .unwrap()
        .unwrap();
    let mut ips: Vec<String> = live_pods(&c)
        .await
        .iter()
        .map(|p| str_at(p, "/status/podIP").to_string())
        .collect();
    ips.sort();
    let got: Vec<&str> = ep["subsets"][0]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| str_at(a, "/ip"))
        .collect();
    assert_eq!(got, ips);
    assert_eq!(ep["subsets"][0]["ports"][0]["port"], 8080);
    endpoints::sync_once(&c).await.unwrap();
    let again = c
        .get(&crate::resources::endpoints::TYPE, Some("default"), "web")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, ep, "an unchanged Service is not rewritten");
    // Deleting the Service deletes its Endpoints.
    c.delete(&services::TYPE, Some("default"), "web", &json!({}))
        .await
        .unwrap();
    endpoints::sync_once(&c).await.unwrap();
    assert!(c
        .get(&crate::resources::endpoints::TYPE, Some("default"), "web")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn recreate_replaces_all_pods_at_once() {
    let c = client().await;
    c.create(&nodes::TYPE, node("w1")).await.unwrap();
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 2, "strategy": {"type": "Recreate"},
                 "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "a"}]}}}});
    c.create(&deployments::TYPE, d).await.unwrap();
    settle(&c).await;
    assert!(rollout_done(&deploy(&c).await));
    let mut d = deploy(&c).await;
    d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("b");
    c.update(&deployments::TYPE, d).await.unwrap();
    // One pass of each: the old set is scaled to zero before a new one exists.
    deployment::sync(c.clone()).await.unwrap();
    let rss = replica_sets(&c).await;
    assert_eq!(rss.len(), 1);
    assert_eq!(rss[0]["spec"]["replicas"], 0);
    settle(&c).await;
    let d = deploy(&c).await;
    assert!(rollout_done(&d));
    let pods = live_pods(&c).await;
    assert_eq!(pods.len(), 2);
    assert!(pods
        .iter()
        .all(|p| p["spec"]["containers"][0]["image"] == "b"));
}

#[tokio::test]
async fn history_is_trimmed_and_paused_deployments_only_scale() {
    let c = client().await;
    c.create(&nodes::TYPE, node("w1")).await.unwrap();
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 1, "revisionHistoryLimit": 1,
                 "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "v1"}]}}}});
    c.create(&deployments::TYPE, d).await.unwrap();
    settle(&c).await;
    for image in ["v2", "v3", "v4"] {
        let mut d = deploy(&c).await;
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
        c.update(&deployments::TYPE, d).await.unwrap();
        settle(&c).await;
        assert!(rollout_done(&deploy(&c).await));
    }
    let mut revisions: Vec<i64> = replica_sets(&c)
        .await
        .iter()
        .map(deployment::revision)
        .collect();
    revisions.sort();
    assert_eq!(
        revisions,
        [3, 4],
        "one old ReplicaSet kept besides the new one"
    );

    // Paused: a template change makes no new ReplicaSet, a resize still applies.
    let mut d = deploy(&c).await;
    d["spec"]["paused"] = json!(true);
    d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("v5");
    d["spec"]["replicas"] = json!(2);
    c.update(&deployments::TYPE, d).await.unwrap();
    settle(&c).await;
    let rss = replica_sets(&c).await;
    assert!(
        rss.iter()
            .all(|r| r["spec"]["template"]["spec"]["containers"][0]["image"] != "v5"),
        "no ReplicaSet for the paused template"
    );
    assert_eq!(live_pods(&c).await.len(), 2);
    let d = deploy(&c).await;
    assert_eq!(
        conditions::get(&d, "Progressing").unwrap()["reason"],
        "DeploymentPaused"
    );
    assert!(live_pods(&c)
        .await
        .iter()
        .all(|p| p["spec"]["containers"][0]["image"] == "v4"));
    // Resumed: the rollout happens.
    let mut d = deploy(&c).await;
    d["spec"]["paused"] = json!(false);
    c.update(&deployments::TYPE, d).await.unwrap();
    settle(&c).await;
    let d = deploy(&c).await;
    assert!(rollout_done(&d));
    assert!(live_pods(&c)
        .await
        .iter()
        .all(|p| p["spec"]["containers"][0]["image"] == "v5"));
}
