//! `dustkube init`: preflight → PKI (generated if absent, kept if valid) → etcd and
//! `dustkube server` (systemd units, or supervised children with `--foreground`) → wait for
//! /readyz → kubeadm's cluster objects (RBAC binding for admin.conf, cluster-info, a bootstrap
//! token) → the join command. On a live control plane it changes nothing and says so.

use std::net::{IpAddr, Ipv4Addr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde_json::json;

use duststack::pki::spec::{Cidr, Endpoint};
use duststack::pki::{self, Action, ClusterSpec, KeyAlgorithm, Store};

use super::bootstrap::{self, Token, CLUSTER_INFO_PATH};
use super::client::ApiClient;
use super::supervise::{Service, Supervisor};
use super::units::{self, Layout};
use super::{preflight, token};

/// Flags of `dustkube init` (named like kubeadm's where kubeadm has them).
#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    /// This node's name [default: the host name].
    #[arg(long)]
    pub node_name: Option<String>,
    /// Address the API server and etcd advertise [default: the address of the default route].
    #[arg(long)]
    pub advertise_address: Option<IpAddr>,
    /// Shared API endpoint HOST[:PORT] [default: advertise address and --apiserver-bind-port].
    #[arg(long)]
    pub control_plane_endpoint: Option<String>,
    /// API server port.
    #[arg(long, default_value_t = 6443)]
    pub apiserver_bind_port: u16,
    /// Address the API server listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub apiserver_bind_address: IpAddr,
    /// etcd client port.
    #[arg(long, default_value_t = 2379)]
    pub etcd_client_port: u16,
    /// etcd peer port.
    #[arg(long, default_value_t = 2380)]
    pub etcd_peer_port: u16,
    /// PKI directory (generated when absent).
    #[arg(long, default_value = "/etc/kubernetes/pki")]
    pub pki_dir: PathBuf,
    /// Where admin.conf and the other kubeconfigs go.
    #[arg(long, default_value = "/etc/kubernetes")]
    pub kubeconfig_dir: PathBuf,
    /// etcd data directory (never wiped).
    #[arg(long, default_value = "/var/lib/etcd")]
    pub data_dir: PathBuf,
    /// The etcd binary.
    #[arg(long, default_value = "/usr/bin/etcd")]
    pub etcd_binary: PathBuf,
    /// Service network (its first address is an API server SAN).
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cidr: String,
    /// Key algorithm for new keys: rsa-2048, rsa-4096 or ecdsa-p256.
    #[arg(long, default_value = "rsa-2048")]
    pub key_algorithm: String,
    /// Run etcd and the server as supervised child processes and stay in the foreground
    /// (the default when systemd is not PID 1).
    #[arg(long)]
    pub foreground: bool,
    /// Preflight checks to skip, comma-separated (root, swap, br_netfilter, ip_forward, ports,
    /// cri, or all).
    #[arg(long, value_delimiter = ',')]
    pub skip_preflight: Vec<String>,
    /// With supervised children: write etcd.log and dustkube-server.log here instead of inheriting
    /// this process's output.
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// The bootstrap token to create (random when omitted).
    #[arg(long)]
    pub token: Option<String>,
    /// Lifetime of the bootstrap token (0 = never expires).
    #[arg(long, default_value = "24h")]
    pub token_ttl: String,
    /// Extra flags for `dustkube server` (e.g. `--server-arg=--etcd-compaction-interval=60`).
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
    /// Where the pid file of the supervising process goes (`dustkube reset` reads it).
    #[arg(long, default_value = units::RUN_DIR)]
    pub run_dir: PathBuf,
    /// Upload the shared certificates (encrypted) for `join --control-plane` and print the
    /// certificate key that decrypts them.
    #[arg(long)]
    pub upload_certs: bool,
    /// The certificate key for `--upload-certs` (64 hex digits) [default: random].
    #[arg(long)]
    pub certificate_key: Option<String>,
}

/// This host's name, lower-cased (the default node name).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_ascii_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The source address of the default route (a UDP "connect" sends nothing).
pub fn default_address() -> IpAddr {
    UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

struct Plan {
    spec: ClusterSpec,
    layout: Layout,
    server: String,
}

fn plan(a: &InitArgs) -> Result<Plan> {
    preflight::validate_skips(&a.skip_preflight)?;
    let node = a.node_name.clone().unwrap_or_else(host_name);
    let advertise = a.advertise_address.unwrap_or_else(default_address);
    let endpoint = match &a.control_plane_endpoint {
        Some(e) => {
            let mut ep = Endpoint::parse(e)?;
            if e.parse::<IpAddr>().is_ok() || !e.contains(':') || e.ends_with(']') {
                ep.port = a.apiserver_bind_port;
            }
            ep
        }
        None => Endpoint {
            host: advertise.to_string(),
            port: a.apiserver_bind_port,
        },
    };
    let mut spec = ClusterSpec::new(&node, advertise);
    spec.control_plane_endpoint = Some(endpoint);
    spec.service_cidr = Cidr::parse(&a.service_cidr, "--service-cidr")?;
    spec.key_algorithm = a.key_algorithm.parse::<KeyAlgorithm>()?;
    spec.validate()?;
    let dustkube_binary = std::env::current_exe().context("cannot find the dustkube binary")?;
    let layout = Layout {
        node_name: node,
        advertise,
        bind_address: a.apiserver_bind_address,
        api_port: a.apiserver_bind_port,
        etcd_client_port: a.etcd_client_port,
        etcd_peer_port: a.etcd_peer_port,
        // Absolute: systemd units and restarted children must not depend on the cwd.
        pki_dir: std::path::absolute(&a.pki_dir).context("--pki-dir")?,
        data_dir: std::path::absolute(&a.data_dir).context("--data-dir")?,
        etcd_binary: a.etcd_binary.clone(),
        dustkube_binary,
        server_extra: a.server_args.clone(),
        etcd_initial_cluster: None,
    };
    let server = spec.server_url();
    Ok(Plan {
        spec,
        layout,
        server,
    })
}

/// `Some(url)` when a server at `url` answers /readyz with a certificate from our CA.
async fn live_plane(a: &InitArgs, server: &str) -> Option<String> {
    let ca = std::fs::read_to_string(a.pki_dir.join("ca.crt")).ok()?;
    let client = ApiClient::new(server, &ca, None).ok()?;
    client.ready().await.then(|| server.to_string())
}

/// Whether something listens on `ip:port` within `timeout`.
pub fn wait_for_port(ip: IpAddr, port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&(ip, port).into(), Duration::from_millis(500)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// Whether the server answers /readyz within `timeout`.
pub async fn wait_ready(client: &ApiClient, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if client.ready().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    false
}

fn start_children(a: &InitArgs, l: &Layout) -> Result<Supervisor> {
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
    if !wait_for_port(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        l.etcd_client_port,
        Duration::from_secs(30),
    ) {
        return Err(anyhow!(
            "etcd did not listen on 127.0.0.1:{} within 30s",
            l.etcd_client_port
        ));
    }
    sup.start(Service {
        name: "dustkube server",
        program: l.dustkube_binary.clone(),
        args: l.server_args(),
        log: log("dustkube-server.log"),
    })?;
    Ok(sup)
}

/// The cluster layout joining nodes read (kubeadm's kubeadm-config): the control-plane
/// endpoint and the etcd client URLs.
pub fn cluster_config(server: &str, etcd_endpoints: &[String]) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": crate::auth::policy::CLUSTER_CONFIG, "namespace": "kube-system"},
        "data": {
            "controlPlaneEndpoint": server,
            "etcdEndpoints": etcd_endpoints.join(","),
        },
    })
}

/// The cluster objects kubeadm creates after the control plane is up. Idempotent except for
/// the new bootstrap token.
async fn cluster_objects(
    a: &InitArgs,
    l: &Layout,
    client: &ApiClient,
    ca_pem: &str,
) -> Result<Token> {
    // admin.conf's group gets cluster-admin (kubeadm's binding); absent RBAC API: nothing to do.
    let crb = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "kubeadm:cluster-admins"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "kubeadm:cluster-admins"}],
    });
    let r = client
        .request(
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            Some(&crb),
        )
        .await?;
    match r.status {
        404 => println!("[rbac] the server has no RBAC API; admin.conf needs it (use super-admin.conf meanwhile)"),
        409 => println!("[rbac] ClusterRoleBinding kubeadm:cluster-admins exists"),
        _ if r.ok() => println!("[rbac] created ClusterRoleBinding kubeadm:cluster-admins"),
        s => return Err(anyhow!("creating ClusterRoleBinding kubeadm:cluster-admins: {s} {}", r.message())),
    }

    // The server seeds kube-public; wait until it is there.
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .get("/api/v1/namespaces/kube-public")
        .await?
        .is_none()
    {
        if Instant::now() > deadline {
            return Err(anyhow!("namespace kube-public did not appear"));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let ci = bootstrap::cluster_info(&client.server, ca_pem);
    let r = client
        .request(
            "POST",
            "/api/v1/namespaces/kube-public/configmaps",
            Some(&ci),
        )
        .await?;
    match r.status {
        409 => println!("[bootstrap] cluster-info exists in kube-public"),
        _ if r.ok() => println!("[bootstrap] created cluster-info in kube-public"),
        s => return Err(anyhow!("creating {CLUSTER_INFO_PATH}: {s} {}", r.message())),
    }

    let cfg = cluster_config(&client.server, &[l.etcd_client_url()]);
    let r = client
        .request(
            "POST",
            "/api/v1/namespaces/kube-system/configmaps",
            Some(&cfg),
        )
        .await?;
    match r.status {
        409 => println!(
            "[upload-config] {} exists in kube-system",
            crate::auth::policy::CLUSTER_CONFIG
        ),
        _ if r.ok() => println!(
            "[upload-config] created {} in kube-system",
            crate::auth::policy::CLUSTER_CONFIG
        ),
        s => {
            return Err(anyhow!(
                "creating {}: {s} {}",
                crate::auth::policy::CLUSTER_CONFIG,
                r.message()
            ))
        }
    }

    let tok = match &a.token {
        Some(t) => Token::parse(t)?,
        None => Token::generate()?,
    };
    let ttl = bootstrap::parse_ttl(&a.token_ttl)?;
    token::store_token(client, &tok, ttl, "created by dustkube init")
        .await
        .context("bootstrap token")?;
    println!(
        "[bootstrap] created bootstrap token {} (ttl {}) and signed cluster-info with it",
        tok.id, a.token_ttl
    );
    Ok(tok)
}

/// Runs `dustkube init`.
pub async fn run(a: InitArgs) -> Result<ExitCode> {
    let p = plan(&a)?;
    if let Some(url) = live_plane(&a, &p.server).await {
        println!(
            "dustkube init: the control plane at {url} is already initialised (it answers /readyz with the CA in {}); nothing changed.",
            a.pki_dir.join("ca.crt").display()
        );
        println!(
            "To add a node, make a join command with: dustkube token create --print-join-command"
        );
        return Ok(ExitCode::SUCCESS);
    }

    let checks = preflight::run(
        &a.skip_preflight,
        a.apiserver_bind_address,
        &[a.apiserver_bind_port, a.etcd_client_port, a.etcd_peer_port],
    );
    print!("{}", preflight::render(&checks));
    preflight::verdict(&checks)?;

    let report = pki::init(&Store::new(&a.pki_dir), &a.kubeconfig_dir, &p.spec).context("PKI")?;
    let count = |f: fn(&Action) -> bool| report.rows.iter().filter(|r| f(&r.action)).count();
    println!(
        "[certs] {}: created {}, re-issued {}, kept {}",
        a.pki_dir.display(),
        count(|x| *x == Action::Created),
        count(|x| matches!(x, Action::Reissued(_))),
        count(|x| *x == Action::Kept),
    );
    for row in &report.rows {
        if let Action::Reissued(why) = &row.action {
            println!("[certs] re-issued {} ({why})", row.name);
        }
    }
    println!(
        "[kubeconfig] wrote the kubeconfigs in {}",
        a.kubeconfig_dir.display()
    );

    let use_systemd = !a.foreground && units::systemd_is_init();
    let mut supervisor = None;
    if use_systemd {
        units::install(&p.layout)?;
        println!(
            "[units] started {} and {}",
            units::ETCD_UNIT,
            units::SERVER_UNIT
        );
    } else {
        if !a.foreground {
            println!("[supervisor] systemd is not PID 1: running etcd and the server as children of this process");
        }
        supervisor = Some(start_children(&a, &p.layout)?);
    }
    let _pid_file = match &supervisor {
        Some(_) => Some(units::PidFile::create(&a.run_dir, "dustkube-init")?),
        None => None,
    };

    let result = async {
        let client = ApiClient::from_kubeconfig(&a.kubeconfig_dir.join("super-admin.conf"))?;
        if !wait_ready(&client, Duration::from_secs(60)).await {
            return Err(anyhow!(
                "the API server at {} did not become ready within 60s",
                p.server
            ));
        }
        println!("[wait-control-plane] {} is ready", p.server);
        let ca_pem = std::fs::read_to_string(a.pki_dir.join("ca.crt"))
            .with_context(|| format!("{}/ca.crt", a.pki_dir.display()))?;
        let tok = cluster_objects(&a, &p.layout, &client, &ca_pem).await?;
        let mut key = None;
        if a.upload_certs || a.certificate_key.is_some() {
            let k = match &a.certificate_key {
                Some(k) => k.clone(),
                None => super::certkey::generate()?,
            };
            super::certkey::upload(&client, &a.pki_dir, &k).await?;
            println!(
                "[upload-certs] stored the shared certificates in {}/{}, encrypted with the certificate key:\n{k}",
                super::certkey::NAMESPACE,
                super::certkey::SECRET
            );
            key = Some(k);
        }
        Ok((tok, key))
    }
    .await;
    let (tok, cert_key) = match result {
        Ok(t) => t,
        Err(e) => {
            if let Some(mut s) = supervisor {
                s.stop().await;
            }
            return Err(e);
        }
    };

    println!("\nYour dustkube control plane has initialised successfully!\n");
    println!("To start using your cluster, run:\n");
    println!("  mkdir -p $HOME/.kube");
    println!(
        "  cp -i {} $HOME/.kube/config\n",
        a.kubeconfig_dir.join("admin.conf").display()
    );
    if let Some(k) = &cert_key {
        println!("To add control-plane nodes, run the following on each as root:\n");
        println!(
            "  {} --control-plane --certificate-key {k}\n",
            token::join_command(&p.server, &tok, &report.ca_hash)
        );
    }
    println!("Then join any number of worker nodes by running the following on each as root:\n");
    println!(
        "  {}\n",
        token::join_command(&p.server, &tok, &report.ca_hash)
    );

    if let Some(mut s) = supervisor {
        println!(
            "[supervisor] running in the foreground; SIGTERM or Ctrl-C stops etcd and the server"
        );
        crate::server::shutdown_signal().await;
        s.stop().await;
    }
    Ok(ExitCode::SUCCESS)
}
