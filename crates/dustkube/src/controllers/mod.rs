//! The controllers that run inside `dustkube server` (kube-controller-manager's and
//! kube-scheduler's jobs): one module per controller, each a level-triggered loop
//! ([`reconcile::run_loop`]) over the in-process [`client::Client`]. Only the server holding the
//! election Lease ([`leader`]) runs them: [`replicaset`], [`deployment`], [`scheduler`],
//! [`node_lifecycle`], [`ipam`], [`endpoints`], [`serviceaccount`], [`garbage_collector`],
//! [`namespace`], [`csr_signer`], [`bootstrap_tokens`]. Every server (leader or not) keeps the
//! `kubernetes` Service through [`apiserver`].

pub mod api_result;
pub mod apiserver;
pub mod bootstrap_tokens;
pub mod client;
pub mod conditions;
pub mod csr_signer;
pub mod deployment;
pub mod endpoints;
pub mod garbage_collector;
pub mod index;
pub mod ipam;
pub mod leader;
pub mod namespace;
pub mod node_lifecycle;
pub mod ownership;
pub mod podutil;
pub mod reconcile;
pub mod replicaset;
pub mod scheduler;
pub mod selector;
pub mod serviceaccount;
#[cfg(test)]
mod sim_tests;

use client::Client;
use reconcile::AbortOnDrop;

use crate::api::AppState;

/// The component name controllers record Events under.
pub const COMPONENT: &str = "dustkube-controller-manager";

/// Settings of the controllers (server flags).
#[derive(Debug, Clone)]
pub struct Config {
    /// How long a node may go without a heartbeat before it is Unknown
    /// (`--node-monitor-grace-period`).
    pub node_monitor_grace: std::time::Duration,
    /// Pod network nodes get their podCIDR from (`--cluster-cidr`); `None`: no allocation.
    pub cluster_cidr: Option<ipam::Cidr>,
    /// Prefix length of each node's podCIDR (`--node-cidr-mask-size`).
    pub node_cidr_mask: u8,
    /// The cluster CA (PEM) published as the kube-root-ca.crt ConfigMap.
    pub root_ca_pem: Option<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            node_monitor_grace: std::time::Duration::from_secs(40),
            cluster_cidr: None,
            node_cidr_mask: 24,
            root_ca_pem: None,
        }
    }
}

/// Starts every controller; each task runs until aborted.
fn spawn_all(client: &Client, config: &Config) -> Vec<tokio::task::JoinHandle<()>> {
    let lifecycle = node_lifecycle::Settings {
        grace: config.node_monitor_grace,
    };
    let mut tasks = vec![
        tokio::spawn(garbage_collector::run(client.clone())),
        tokio::spawn(csr_signer::run(client.clone())),
        tokio::spawn(bootstrap_tokens::run(client.clone())),
        tokio::spawn(namespace::run(client.clone())),
        tokio::spawn(replicaset::run(client.clone())),
        tokio::spawn(deployment::run(client.clone())),
        tokio::spawn(scheduler::run(client.clone())),
        tokio::spawn(node_lifecycle::run(client.clone(), lifecycle)),
        tokio::spawn(endpoints::run(client.clone())),
        tokio::spawn(serviceaccount::run(
            client.clone(),
            config.root_ca_pem.clone(),
        )),
    ];
    if let Some(cidr) = config.cluster_cidr {
        let settings = ipam::Settings {
            cluster_cidr: cidr,
            node_mask: config.node_cidr_mask,
        };
        tasks.push(tokio::spawn(ipam::run(client.clone(), settings)));
    }
    tasks
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
