//! The controllers that run inside `dustkube server` (kube-controller-manager's job): one
//! module per controller, each a level-triggered loop ([`reconcile::run_loop`]) over the
//! in-process [`client::Client`]. Only the server holding the election Lease ([`leader`]) runs
//! them.

pub mod client;
pub mod csr_signer;
pub mod leader;
pub mod reconcile;

use client::Client;
use reconcile::AbortOnDrop;

use crate::api::AppState;

/// The component name controllers record Events under.
pub const COMPONENT: &str = "dustkube-controller-manager";

/// Starts every controller; each task runs until aborted.
fn spawn_all(client: &Client) -> Vec<tokio::task::JoinHandle<()>> {
    vec![tokio::spawn(csr_signer::run(client.clone()))]
}

/// Campaigns for leadership as `identity` and runs the controllers while leading; never returns.
pub async fn run(state: AppState, identity: String) {
    let client = Client::new(state, COMPONENT);
    let elector = leader::Elector::new(client.clone(), identity.clone());
    loop {
        elector.acquire().await;
        tracing::info!(%identity, "leading: controllers started");
        let tasks = AbortOnDrop(spawn_all(&client));
        elector.hold().await;
        drop(tasks);
        tracing::warn!(%identity, "lost the leader lease: controllers stopped");
    }
}
