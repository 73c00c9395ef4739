//! Keeps this node's Service data path current: lists Services and Endpoints, hands them to
//! the [`Proxier`](super::proxy::Proxier) on every change (watches wake the loop) and at least
//! every [`RESYNC`], so a table flushed by someone else comes back.

use std::sync::Arc;
use std::time::Duration;

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
    let mut proxier = Proxier::new(NodeContext {
        node_name: agent.node_name.clone(),
        cluster_cidrs: agent.args.cluster_cidr.clone(),
    });
    let (tx, mut rx) = mpsc::channel(1);
    for path in ["/api/v1/services", "/api/v1/endpoints"] {
        tokio::spawn(wake_on_changes(agent.clone(), path, tx.clone()));
    }
    loop {
        let lists = tokio::try_join!(
            client::list(&agent.api, "/api/v1/services"),
            client::list(&agent.api, "/api/v1/endpoints"),
        );
        match lists {
            Ok(((services, _), (endpoints, _))) => match proxier.sync(&services, &endpoints) {
                Ok(true) => tracing::info!(services = services.len(), "service rules applied"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "cannot apply the service rules");
                    proxier.forget();
                }
            },
            // Fail-static: the rules in place keep serving while the server is away.
            Err(e) => tracing::debug!(error = %format!("{e:#}"), "service sync: API unreachable"),
        }
        let _ = tokio::time::timeout(RESYNC, rx.recv()).await;
        // A burst of changes gives one sync.
        tokio::time::sleep(Duration::from_millis(100)).await;
        while rx.try_recv().is_ok() {}
    }
}
