//! The controllers that run inside `dustkube server` (kube-controller-manager's job): one
//! module per controller, each a level-triggered loop ([`reconcile::run_loop`]) over the
//! in-process [`client::Client`]. Only the server holding the election Lease ([`leader`]) runs
//! them.

pub mod api_result;
pub mod client;
pub mod conditions;
pub mod deployment;
pub mod leader;
pub mod ownership;
pub mod podutil;
pub mod reconcile;
pub mod replicaset;
pub mod scheduler;
pub mod selector;

use client::Client;
use reconcile::AbortOnDrop;

use crate::api::AppState;

/// The component name controllers record Events under.
pub const COMPONENT: &str = "dustkube-controller-manager";

/// Settings of the controllers (server flags).
#[derive(Debug, Clone)]
pub struct Config {}

/// Starts every controller; each task runs until aborted.
fn spawn_all(client: &Client, config: &Config) -> Vec<tokio::task::JoinHandle<()>> {
    let _ = config;
    vec![
        tokio::spawn(replicaset::run(client.clone())),
        tokio::spawn(deployment::run(client.clone())),
        tokio::spawn(scheduler::run(client.clone())),
    ]
}

/// Campaigns for leadership as `identity` and runs the controllers while leading; never returns.
pub async fn run(state: AppState, identity: String, config: Config) {
    let client = Client::new(state, COMPONENT);
    let elector = leader::Elector::new(client.clone(), identity.clone());
    loop {
        elector.acquire().await;
        tracing::info!(%identity, "leading: controllers started");
        let tasks = AbortOnDrop(spawn_all(&client, &config));
        elector.hold().await;
        drop(tasks);
        tracing::warn!(%identity, "lost the leader lease: controllers stopped");
    }
}
