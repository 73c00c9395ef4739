//! The command-line verbs besides `server`: `init` (bring up a control plane on this host),
//! `token` (bootstrap tokens), `certs` (expiry and renewal), and what they share.
//!
//! How the parts connect:
//! - [`preflight`]: the host checks `init` runs first (root, swap, br_netfilter, ports, CRI).
//! - [`units`]: the command lines of etcd and `dustkube server`, as systemd units or for
//!   [`supervise`], which runs them as restarted child processes (`init --foreground`).
//! - [`client`]: a small HTTPS client that talks to the API with a kubeconfig's credentials.
//! - [`bootstrap`]: bootstrap tokens, their Secrets, and the cluster-info JWS signatures.
//! - [`init`], [`token`], [`certs`]: the verbs.

pub mod bootstrap;
pub mod certkey;
pub mod certs;
pub mod client;
pub mod etcd_member;
pub mod init;
pub mod join;
pub mod join_control_plane;
pub mod preflight;
pub mod reset;
pub mod supervise;
pub mod tls_bootstrap;
pub mod token;
pub mod units;
