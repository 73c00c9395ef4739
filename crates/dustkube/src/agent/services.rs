//! Keeps this node's Service data path current: lists Services and Endpoints, hands them to
//! the [`Proxier`](super::proxy::Proxier) on every change (watches wake the loop) and at least
//! every [`RESYNC`], so a table flushed by someone else comes back. The pod network (traffic
//! from elsewhere is masqueraded) is `--cluster-cidr`, or else the nodes' podCIDRs.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use super::client::{self, WatchEvent};
use super::proxy::{NodeContext, Proxier};
use super::Agent;

/// Longest time between two syncs.
const RESYNC: Duration = Duration::from_secs(30);

/// Wakes `tx` on every change of the collection at `path`, re-watching when a watch ends.
async fn wake_on_changes(agent: Arc<Agent>, path: &'static str, tx: mpsc::Sender<()>) {
    loop {
        let rv = match client::list(&agent.api, path).await {
            Ok((_, rv)) => rv,
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        let (etx, mut erx) = mpsc::channel::<WatchEvent>(64);
        let api = agent.api.clone();
        let watch = tokio::spawn(async move { client::watch(&api, path, &rv, &etx).await });
        while let Some(ev) = erx.recv().await {
            if ev.kind != "BOOKMARK" && tx.send(()).await.is_err() {
                watch.abort();
                return;
            }
        }
        let _ = watch.await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs the Service data path until the agent stops.
pub async fn run(agent: Arc<Agent>) {
    let context = |cluster_cidrs| NodeContext {
        node_name: agent.node_name.clone(),
        cluster_cidrs,
    };
    let mut proxier = Proxier::new(context(agent.args.cluster_cidr.clone()));
    let mut cidrs = Vec::new();
    let (tx, mut rx) = mpsc::channel(1);
    for path in ["/api/v1/services", "/api/v1/endpoints", "/api/v1/nodes"] {
        tokio::spawn(wake_on_changes(agent.clone(), path, tx.clone()));
    }
    loop {
        let lists = tokio::try_join!(
            client::list(&agent.api, "/api/v1/services"),
            client::list(&agent.api, "/api/v1/endpoints"),
            client::list(&agent.api, "/api/v1/nodes"),
        );
        match lists {
            Ok(((services, _), (endpoints, _), (nodes, _))) => {
                if agent.args.cluster_cidr.is_empty() {
                    let now = pod_cidrs(&nodes);
                    if now != cidrs {
                        proxier = Proxier::new(context(now.clone()));
                        cidrs = now;
                    }
                }
                match proxier.sync(&services, &endpoints) {
                    Ok(true) => tracing::info!(services = services.len(), "service rules applied"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "cannot apply the service rules");
                        proxier.forget();
                    }
                }
            }
            // Fail-static: the rules in place keep serving while the server is away.
            Err(e) => tracing::debug!(error = %format!("{e:#}"), "service sync: API unreachable"),
        }
        let _ = tokio::time::timeout(RESYNC, rx.recv()).await;
        // A burst of changes gives one sync.
        tokio::time::sleep(Duration::from_millis(100)).await;
        while rx.try_recv().is_ok() {}
    }
}

/// The nodes' podCIDRs, sorted: the pod network when `--cluster-cidr` is not given.
pub fn pod_cidrs(nodes: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = nodes
        .iter()
        .flat_map(|n| {
            let list = n.pointer("/spec/podCIDRs").and_then(Value::as_array);
            let single = n.pointer("/spec/podCIDR").and_then(Value::as_str);
            list.into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .chain(single)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_network_from_the_nodes() {
        let nodes = [
            json!({"spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}}),
            json!({"spec": {"podCIDR": "10.244.0.0/24"}}),
            json!({"spec": {}}),
        ];
        assert_eq!(pod_cidrs(&nodes), ["10.244.0.0/24", "10.244.1.0/24"]);
    }
}
