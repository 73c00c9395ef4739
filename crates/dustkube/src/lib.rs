//! dustkube: a small Kubernetes-compatible control plane whose API server keeps every object in
//! etcd and speaks enough of the Kubernetes API for kubectl 1.27–1.33.
//!
//! How the parts connect:
//! - [`storage`]: the [`storage::Store`] trait (revisions, optimistic concurrency, watches) with
//!   memory and etcd implementations.
//! - [`resources`]: one module per kind (discovery facts, defaults, validation, table columns).
//! - [`api`]: the HTTP API (discovery, OpenAPI, objects, list/watch, patch, Table, Status errors).
//! - [`auth`]: X.509 client-certificate users and the authorization seam.
//! - [`controllers`]: the control loops (leader-elected) that run inside the server.
//! - [`server`]: TLS listener, health, graceful shutdown, etcd compaction (`dustkube server`).
//! - [`agent`]: the node agent (today: the Service data path, [`agent::proxy`]).
//! - [`cmd`]: the other verbs (`init`, `token`, `certs`) and what they share.
//! - [`agent`]: the node agent (`dustkube agent`): registers the Node, runs its pods through CRI.
//! - [`images`]: the offline image bundle (`dustkube images build`).

pub mod agent;
pub mod api;
pub mod auth;
pub mod cmd;
pub mod controllers;
pub mod images;
pub mod resources;
pub mod server;
pub mod storage;
