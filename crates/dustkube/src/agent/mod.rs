//! The node agent (`dustkube agent`): registers this host as a Node, keeps its Lease and status,
//! writes the CNI config for the node's pod CIDR and routes to the other nodes' pod CIDRs, runs
//! the pods bound to this node through the CRI of containerd, and serves their logs and exec
//! sessions on port 10250.
//!
//! How the parts connect:
//! - [`client`]: the API client (the verbs' HTTPS client plus list+watch streams).
//! - [`cri`]: the CRI v1 client on containerd's unix socket.
//! - [`node`]: Node registration, status, Lease heartbeat.
//! - [`cni`]: the CNI conflist (bridge + host-local on the node's podCIDR) and inter-node routes.
//! - [`pods`]: watch of this node's pods and the reconcile loop (sandboxes, containers,
//!   restarts with back-off, termination, orphans, adoption after a restart).
//! - [`spec`]: pod spec → CRI sandbox and container configs (env, mounts, DNS, ports).
//! - [`volumes`]: emptyDir/configMap/secret/downwardAPI/projected/hostPath files on disk.
//! - [`status`]: pod status (phase, conditions, container statuses) from what CRI reports.
//! - [`probes`]: liveness/readiness/startup probes (exec, httpGet, tcpSocket).
//! - [`server`]: the HTTPS endpoint (`/containerLogs`, `/exec`, `/attach`) the API server proxies to.
//! - [`logs`]: the CRI log format.
//! - [`rotation`]: renewal of the node's client certificate before it expires.
//! - [`proxy`]: the Service data path in nftables (kube-proxy's job); [`services`] keeps it
//!   current from the Services and Endpoints.

pub mod client;
pub mod cni;
pub mod cri;
pub mod logs;
pub mod node;
pub mod pods;
pub mod probes;
pub mod proxy;
pub mod rotation;
pub mod server;
pub mod services;
pub mod spec;
pub mod status;
pub mod volumes;

use std::net::{IpAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::Args;

use client::ApiClient;
use cri::Cri;

/// `dustkube agent` flags (the kubelet's names).
#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// Kubeconfig with this node's client certificate (`system:node:<name>`, group `system:nodes`).
    #[arg(long, default_value = "/etc/kubernetes/kubelet.conf")]
    pub kubeconfig: PathBuf,
    /// Name of the Node object (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// The node's InternalIP (default: the address that routes to the API server).
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// The CRI socket.
    #[arg(long, default_value = "unix:///run/containerd/containerd.sock")]
    pub container_runtime_endpoint: String,
    /// Where pod volumes, logs and the agent's serving certificate live.
    #[arg(long, default_value = "/var/lib/dustkube")]
    pub root_dir: PathBuf,
    /// Where the CNI config is written (the runtime's CNI conf_dir).
    #[arg(long, default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    /// HTTPS port for logs and exec (the API server proxies to it).
    #[arg(long, default_value_t = 10250)]
    pub port: u16,
    /// Cluster DNS server handed to ClusterFirst pods (none: the host's resolv.conf).
    #[arg(long, value_delimiter = ',')]
    pub cluster_dns: Vec<IpAddr>,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Seconds between Lease renewals.
    #[arg(long, default_value_t = 10)]
    pub lease_interval: u64,
    /// The pod network(s), comma-separated: Service traffic from elsewhere is masqueraded
    /// (kube-proxy's `--cluster-cidr`; default: the nodes' podCIDRs).
    #[arg(long, value_delimiter = ',')]
    pub cluster_cidr: Vec<String>,
}

/// What every part of the agent shares.
pub struct Agent {
    /// The Node's name.
    pub node_name: String,
    /// The Node's InternalIP.
    pub node_ip: IpAddr,
    /// The API client (this node's identity).
    pub api: ApiClient,
    /// The runtime.
    pub cri: Cri,
    /// The flags.
    pub args: AgentArgs,
    /// This node's pod CIDR once the control plane assigned it.
    pub pod_cidr: tokio::sync::watch::Sender<Option<String>>,
}

impl Agent {
    /// `root-dir/<rel>`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.args.root_dir.join(rel)
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_lowercase())
        .unwrap_or_else(|_| "localhost".into())
}

/// The local address the kernel would use to reach `server` (no packet is sent).
fn local_ip_towards(server: &str) -> Result<IpAddr> {
    let authority = server
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string();
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&authority)
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .ok_or_else(|| anyhow!("{authority}: no address"))?;
    let sock = UdpSocket::bind(if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })?;
    sock.connect(addr)?;
    Ok(sock.local_addr()?.ip())
}

/// Runs the agent until SIGTERM or Ctrl-C. Pods keep running when it stops (a restarted agent
/// adopts them).
pub async fn run(args: AgentArgs) -> Result<()> {
    let api = client::from_kubeconfig(&args.kubeconfig)?;
    let cri = Cri::connect(&args.container_runtime_endpoint)?;
    let node_name = args.node_name.clone().unwrap_or_else(hostname);
    let node_ip = match args.node_ip {
        Some(ip) => ip,
        None => local_ip_towards(&api.server).context("cannot tell the node IP; pass --node-ip")?,
    };
    std::fs::create_dir_all(&args.root_dir)
        .with_context(|| format!("{}: cannot create", args.root_dir.display()))?;
    let mut delay = Duration::from_millis(200);
    let version = loop {
        match cri.version().await {
            Ok(v) => break v,
            Err(e) => {
                tracing::warn!(error = %e, endpoint = %args.container_runtime_endpoint, "runtime not answering yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    };
    tracing::info!(node = %node_name, ip = %node_ip, runtime = %format!("{}://{}", version.runtime_name, version.runtime_version), "agent starting");
    let (pod_cidr, _) = tokio::sync::watch::channel(None);
    let agent = Arc::new(Agent {
        node_name,
        node_ip,
        api,
        cri,
        args,
        pod_cidr,
    });
    let server = server::start(agent.clone()).await?;
    tokio::spawn(node::run(agent.clone(), version));
    tokio::spawn(cni::run(agent.clone()));
    tokio::spawn(pods::run(agent.clone()));
    tokio::spawn(services::run(agent.clone()));
    let renewed = rotation::until_renewed(agent.args.kubeconfig.clone(), agent.node_name.clone());
    tokio::select! {
        _ = crate::server::shutdown_signal() => tracing::info!("agent stopping; pods keep running"),
        // The new certificate is read at start: exit so the supervisor starts us again.
        _ = renewed => tracing::info!("restarting with the renewed certificate; pods keep running"),
    }
    server.abort();
    Ok(())
}
