//! The control-plane part of `join --control-plane` (kubeadm's control-plane-prepare and
//! control-plane-join phases): [`prepare`] downloads the shared CAs and service-account keys
//! ([`super::certkey`]) and makes this host's own certificates and kubeconfigs from them;
//! [`start`] — after the node's TLS bootstrap — adds this host to etcd as a member, starts etcd
//! (`--initial-cluster-state existing`) and `dustkube server` like `init` does, waits until the
//! new server is ready and records its etcd endpoint in the cluster config.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};

use duststack::pki::spec::{Cidr, Endpoint};
use duststack::pki::{self, Action, ClusterSpec, KeyAlgorithm, Store};

use super::bootstrap::Token;
use super::client::ApiClient;
use super::join::{Discovery, JoinArgs};
use super::supervise::{Service, Supervisor};
use super::units::{self, Layout};
use super::{certkey, etcd_member, init};
use crate::auth::policy::CLUSTER_CONFIG;

/// What [`prepare`] found and made.
pub struct Plan {
    /// This control plane's processes.
    pub layout: Layout,
    /// The etcd client URLs of the existing members.
    pub etcd_endpoints: Vec<String>,
}

fn config_path() -> String {
    format!("/api/v1/namespaces/kube-system/configmaps/{CLUSTER_CONFIG}")
}

/// Shared certificates, this host's certificates and kubeconfigs; nothing in the cluster
/// changes yet.
pub async fn prepare(a: &JoinArgs, node: &str, found: &Discovery, token: &Token) -> Result<Plan> {
    let key = a
        .certificate_key
        .as_deref()
        .ok_or_else(|| anyhow!("--control-plane needs --certificate-key"))?;
    let pki_dir = std::path::absolute(a.kubeconfig_dir.join("pki")).context("--kubeconfig-dir")?;
    let data_dir = std::path::absolute(&a.data_dir).context("--data-dir")?;
    if data_dir.join("member").exists() {
        return Err(anyhow!(
            "{} already holds etcd data; run `dustkube reset` first",
            data_dir.display()
        ));
    }
    let client =
        ApiClient::new(&found.server, &found.ca_pem, None)?.with_bearer(&token.to_string());
    let config = client.get(&config_path()).await?.ok_or_else(|| {
        anyhow!(
            "kube-system/{CLUSTER_CONFIG} is missing (was the cluster made by `dustkube init`?)"
        )
    })?;
    let etcd_endpoints: Vec<String> = config
        .pointer("/data/etcdEndpoints")
        .and_then(Value::as_str)
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if etcd_endpoints.is_empty() {
        return Err(anyhow!(
            "kube-system/{CLUSTER_CONFIG} lists no etcd endpoints"
        ));
    }

    let written = certkey::download(&client, key, &pki_dir).await?;
    let ca = std::fs::read_to_string(pki_dir.join("ca.crt")).context("downloaded ca.crt")?;
    if ca != found.ca_pem {
        return Err(anyhow!(
            "the downloaded ca.crt is not the CA cluster-info is signed with; refusing"
        ));
    }
    println!(
        "[control-plane-prepare] downloaded and decrypted {} shared certificates and keys into {}",
        written.len(),
        pki_dir.display()
    );

    let advertise = a
        .apiserver_advertise_address
        .or(a.node_ip)
        .unwrap_or_else(init::default_address);
    let authority = found.server.trim_start_matches("https://");
    let mut spec = ClusterSpec::new(node, advertise);
    spec.control_plane_endpoint = Some(Endpoint::parse(authority)?);
    spec.service_cidr = Cidr::parse(&a.service_cidr, "--service-cidr")?;
    spec.key_algorithm = a.key_algorithm.parse::<KeyAlgorithm>()?;
    spec.validate()?;
    let report = pki::init(&Store::new(&pki_dir), &a.kubeconfig_dir, &spec)
        .context("this control plane's certificates")?;
    let created = report
        .rows
        .iter()
        .filter(|r| r.action == Action::Created)
        .count();
    println!(
        "[control-plane-prepare] created {created} certificates and kubeconfigs for {node} ({advertise})"
    );

    let layout = Layout {
        node_name: node.to_string(),
        advertise,
        bind_address: a.apiserver_bind_address,
        api_port: a.apiserver_bind_port,
        etcd_client_port: a.etcd_client_port,
        etcd_peer_port: a.etcd_peer_port,
        pki_dir,
        data_dir,
        etcd_binary: a.etcd_binary.clone(),
        dustkube_binary: std::env::current_exe().context("cannot find the dustkube binary")?,
        server_extra: a.server_args.clone(),
        etcd_initial_cluster: None,
    };
    Ok(Plan {
        layout,
        etcd_endpoints,
    })
}

fn local_url(l: &Layout) -> String {
    match l.advertise {
        IpAddr::V6(ip) => format!("https://[{ip}]:{}", l.api_port),
        IpAddr::V4(ip) => format!("https://{ip}:{}", l.api_port),
    }
}

/// etcd membership, etcd and the server (units or supervised children); returns the
/// supervisor when the processes are children of this one.
pub async fn start(a: &JoinArgs, mut plan: Plan) -> Result<Option<Supervisor>> {
    let l = &mut plan.layout;
    let mut etcd = etcd_member::Etcd::connect(&plan.etcd_endpoints, &l.pki_dir).await?;
    let initial = etcd.add(&l.node_name, &l.etcd_peer_url()).await?;
    println!(
        "[control-plane-join] added etcd member {} ({}); initial cluster {initial}",
        l.node_name,
        l.etcd_peer_url()
    );
    l.etcd_initial_cluster = Some(initial);
    let l = &plan.layout;

    let mut supervisor = None;
    if !a.foreground && units::systemd_is_init() {
        units::install(l)?;
        println!(
            "[control-plane-join] started {} and {}",
            units::ETCD_UNIT,
            units::SERVER_UNIT
        );
    } else {
        if let Some(dir) = &a.log_dir {
            std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
        }
        let log = |f: &str| a.log_dir.as_ref().map(|d| d.join(f));
        let mut sup = Supervisor::default();
        sup.start(Service {
            name: "etcd",
            program: l.etcd_binary.clone(),
            args: l.etcd_args(),
            log: log("etcd.log"),
        })?;
        if !init::wait_for_port(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            l.etcd_client_port,
            Duration::from_secs(60),
        ) {
            sup.stop().await;
            return Err(anyhow!(
                "etcd did not listen on 127.0.0.1:{} within 60s (the cluster has a member that is not running: remove it with `etcdctl member remove`)",
                l.etcd_client_port
            ));
        }
        sup.start(Service {
            name: "dustkube server",
            program: l.dustkube_binary.clone(),
            args: l.server_args(),
            log: log("dustkube-server.log"),
        })?;
        supervisor = Some(sup);
    }

    let ca = std::fs::read_to_string(l.pki_dir.join("ca.crt")).context("ca.crt")?;
    let local = ApiClient::new(&local_url(l), &ca, None)?;
    if !init::wait_ready(&local, Duration::from_secs(90)).await {
        if let Some(mut s) = supervisor {
            s.stop().await;
        }
        return Err(anyhow!(
            "the new API server at {} did not become ready within 90s",
            local.server
        ));
    }
    println!("[control-plane-join] {} is ready", local.server);

    // Record this member's etcd endpoint for the next joins.
    let admin = ApiClient::from_kubeconfig(&a.kubeconfig_dir.join("super-admin.conf"))?;
    let mut endpoints = plan.etcd_endpoints.clone();
    if !endpoints.contains(&l.etcd_client_url()) {
        endpoints.push(l.etcd_client_url());
    }
    let patch = json!({"data": {"etcdEndpoints": endpoints.join(",")}});
    admin
        .expect_ok("PATCH", &config_path(), Some(&patch))
        .await
        .with_context(|| format!("updating kube-system/{CLUSTER_CONFIG}"))?;
    Ok(supervisor)
}

/// Drops `urls` from the cluster config's etcd endpoints (`reset` of a control plane).
pub async fn forget_endpoints(admin: &ApiClient, urls: &[String]) -> Result<()> {
    let Some(cfg) = admin.get(&config_path()).await? else {
        return Ok(());
    };
    let kept: Vec<&str> = cfg
        .pointer("/data/etcdEndpoints")
        .and_then(Value::as_str)
        .unwrap_or("")
        .split(',')
        .filter(|e| !e.is_empty() && !urls.iter().any(|u| u == e))
        .collect();
    let patch = json!({"data": {"etcdEndpoints": kept.join(",")}});
    admin
        .expect_ok("PATCH", &config_path(), Some(&patch))
        .await
        .map(|_| ())
}
