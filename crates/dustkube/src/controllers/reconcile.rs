//! Level-triggered control loops: a controller's `sync` runs once at start, again (coalesced)
//! whenever an object of a watched kind changes, and at least every `resync` period, so a
//! missed event or a failed sync is repaired by the next pass.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;

use super::client::Client;
use crate::resources::ResourceType;

/// Wait after a change before syncing, so a burst of writes gives one pass.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// Notifies `wake` on every change of `rt`, re-watching from the current revision when a watch
/// breaks (compaction, etcd restart).
async fn watch_kind(client: Client, rt: &'static ResourceType, wake: Arc<Notify>) {
    loop {
        let from = match client.revision().await {
            Ok(r) => r + 1,
            Err(e) => {
                tracing::debug!(kind = rt.kind, error = %e, "controller watch: no revision");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        match client.watch(rt, from).await {
            Ok(mut events) => {
                // Changes between the last sync and this watch are covered by a wake-up now.
                wake.notify_one();
                while let Some(ev) = events.next().await {
                    if ev.is_err() {
                        break;
                    }
                    wake.notify_one();
                }
            }
            Err(e) => tracing::debug!(kind = rt.kind, error = %e, "controller watch failed"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `sync` forever: at start, after changes to any of `kinds`, and every `resync`.
/// Errors are logged and retried at the next wake-up (at most `resync` later).
pub async fn run_loop<F, Fut>(
    client: Client,
    name: &'static str,
    kinds: &[&'static ResourceType],
    resync: Duration,
    mut sync: F,
) where
    F: FnMut(Client) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let wake = Arc::new(Notify::new());
    let watchers: Vec<_> = kinds
        .iter()
        .map(|rt| tokio::spawn(watch_kind(client.clone(), rt, wake.clone())))
        .collect();
    let _abort = AbortOnDrop(watchers);
    loop {
        if let Err(e) = sync(client.clone()).await {
            tracing::warn!(controller = name, error = %format!("{e:#}"), "sync failed");
        }
        tokio::select! {
            _ = wake.notified() => tokio::time::sleep(DEBOUNCE).await,
            _ = tokio::time::sleep(resync) => {}
        }
    }
}

/// Aborts the spawned tasks when the owner stops (a controller losing leadership).
pub struct AbortOnDrop(pub Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}
