//! `dustkube join <endpoint> --token ID.SECRET --discovery-token-ca-cert-hash sha256:HEX`:
//! preflight → discovery (kube-public/cluster-info read anonymously, its JWS checked with the
//! token, the CA pinned by its public-key hash) → TLS bootstrap (a CSR as the bootstrap token,
//! approved and signed by the controllers; `kubelet.conf` with the node certificate) → the node
//! agent (`dustkube-agent.service`, or a supervised child). `--control-plane` additionally
//! fetches the shared PKI ([`super::certkey`]), adds an etcd member and starts etcd and a
//! server. On a joined node it changes nothing and says so.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use serde_json::Value;

use duststack::pki::kubeconfig::Kubeconfig;
use duststack::pki::store::{write_atomic, CERT_MODE, KEY_MODE};
use duststack::pki::CertInfo;

use super::bootstrap::{self, Token, CLUSTER_INFO_PATH, JWS_PREFIX};
use super::client::ApiClient;
use super::preflight::{self, Outcome};
use super::supervise::{Service, Supervisor};
use super::{init, tls_bootstrap, units};

/// Phases `--skip-phases` accepts.
pub const PHASES: [&str; 1] = ["agent"];
/// Port of the node agent (kubelet's).
pub const AGENT_PORT: u16 = 10250;
/// The node kubeconfig.
pub const KUBELET_CONF: &str = "kubelet.conf";
/// The bootstrap-token kubeconfig (removed once `kubelet.conf` exists).
pub const BOOTSTRAP_CONF: &str = "bootstrap-kubelet.conf";
/// Name of the pid file of a supervising `join`.
pub const PID_NAME: &str = "dustkube-join";

/// Flags of `dustkube join` (named like kubeadm's).
#[derive(Debug, Clone, clap::Args)]
pub struct JoinArgs {
    /// The API endpoint HOST:PORT printed by `dustkube init`.
    pub endpoint: String,
    /// Bootstrap token (`[a-z0-9]{6}.[a-z0-9]{16}`) for discovery and TLS bootstrap.
    #[arg(long)]
    pub token: String,
    /// Pin of the cluster CA: `sha256:<hex>` of its SubjectPublicKeyInfo (repeatable).
    #[arg(long)]
    pub discovery_token_ca_cert_hash: Vec<String>,
    /// Trust the CA in cluster-info without a pin (only the token's signature protects it).
    #[arg(long)]
    pub discovery_token_unsafe_skip_ca_verification: bool,
    /// This node's name [default: the host name].
    #[arg(long)]
    pub node_name: Option<String>,
    /// The address the agent reports for this node [default: the default route's address].
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// The container runtime socket [default: the first of containerd's and CRI-O's that
    /// exists].
    #[arg(long)]
    pub cri_socket: Option<PathBuf>,
    /// Also make this node a control plane (needs `--certificate-key`).
    #[arg(long)]
    pub control_plane: bool,
    /// Key that decrypts the shared certificates uploaded by `init --upload-certs`.
    #[arg(long)]
    pub certificate_key: Option<String>,
    /// Control plane: the address this node's etcd and server advertise [default: --node-ip].
    #[arg(long)]
    pub apiserver_advertise_address: Option<IpAddr>,
    /// Control plane: address the API server listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub apiserver_bind_address: IpAddr,
    /// Control plane: API server port.
    #[arg(long, default_value_t = 6443)]
    pub apiserver_bind_port: u16,
    /// Control plane: the service network (as given to `init`).
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cidr: String,
    /// Control plane: key algorithm of this host's new keys (rsa-2048, rsa-4096, ecdsa-p256).
    #[arg(long, default_value = "rsa-2048")]
    pub key_algorithm: String,
    /// Control plane: etcd client port.
    #[arg(long, default_value_t = 2379)]
    pub etcd_client_port: u16,
    /// Control plane: etcd peer port.
    #[arg(long, default_value_t = 2380)]
    pub etcd_peer_port: u16,
    /// Control plane: etcd data directory.
    #[arg(long, default_value = "/var/lib/etcd")]
    pub data_dir: PathBuf,
    /// Control plane: the etcd binary.
    #[arg(long, default_value = "/usr/bin/etcd")]
    pub etcd_binary: PathBuf,
    /// Run the agent as a supervised child and stay in the foreground (the default when
    /// systemd is not PID 1).
    #[arg(long)]
    pub foreground: bool,
    /// Where kubelet.conf and pki/ca.crt go.
    #[arg(long, default_value = "/etc/kubernetes")]
    pub kubeconfig_dir: PathBuf,
    /// The agent's state directory.
    #[arg(long, default_value = "/var/lib/dustkube")]
    pub root_dir: PathBuf,
    /// Where the agent writes the node's CNI configuration.
    #[arg(long, default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    /// Where the pid file of the supervising process goes (`dustkube reset` reads it).
    #[arg(long, default_value = units::RUN_DIR)]
    pub run_dir: PathBuf,
    /// Preflight checks to skip, comma-separated (root, swap, br_netfilter, ip_forward, ports,
    /// cri, or all).
    #[arg(long, value_delimiter = ',')]
    pub skip_preflight: Vec<String>,
    /// Phases to skip, comma-separated: `agent` (do not start the node agent).
    #[arg(long, value_delimiter = ',')]
    pub skip_phases: Vec<String>,
    /// With a supervised agent: write its log here instead of inheriting this output.
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// Extra flags for `dustkube agent`.
    #[arg(long = "agent-arg", allow_hyphen_values = true)]
    pub agent_args: Vec<String>,
    /// Control plane: extra flags for `dustkube server`.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
}

impl JoinArgs {
    fn node_name(&self) -> String {
        self.node_name.clone().unwrap_or_else(init::host_name)
    }

    fn skips(&self, phase: &str) -> bool {
        self.skip_phases.iter().any(|p| p == phase)
    }

    fn server(&self) -> String {
        let e = self.endpoint.trim_start_matches("https://");
        format!("https://{}", e.trim_end_matches('/'))
    }

    fn cri_socket(&self) -> Option<PathBuf> {
        self.cri_socket.clone().or_else(|| {
            preflight::CRI_SOCKETS
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
        })
    }
}

/// What discovery found: the API server to use and the CA it is pinned to.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The server URL from cluster-info.
    pub server: String,
    /// The cluster CA (PEM).
    pub ca_pem: String,
}

/// Reads the server and CA of the kubeconfig cluster-info publishes.
fn cluster_of(kubeconfig: &str) -> Result<(String, String)> {
    let doc = duststack::data::yaml::parse_yaml(kubeconfig, Path::new("cluster-info"))
        .map_err(|e| anyhow!("cluster-info kubeconfig: {e}"))?;
    let cluster = doc
        .get("clusters")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .and_then(|c| c.get("cluster"))
        .ok_or_else(|| anyhow!("cluster-info kubeconfig has no cluster"))?;
    let server = cluster
        .get("server")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("cluster-info kubeconfig has no server"))?;
    let ca = cluster
        .get("certificate-authority-data")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("cluster-info kubeconfig has no certificate-authority-data"))?;
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD
        .decode(ca.trim())
        .context("cluster-info: certificate-authority-data is not base64")?;
    let ca = String::from_utf8(ca).context("cluster-info: the CA is not PEM text")?;
    Ok((server.to_string(), ca))
}

/// Checks a cluster-info ConfigMap: the JWS for `token`, then the CA against `pins` (empty
/// with `skip_pin`). Pure; returns the server and CA.
pub fn verify_cluster_info(
    cm: &Value,
    token: &Token,
    pins: &[String],
    skip_pin: bool,
) -> Result<Discovery> {
    let kubeconfig = cm
        .pointer("/data/kubeconfig")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("cluster-info has no kubeconfig"))?;
    let key = format!("{JWS_PREFIX}{}", token.id);
    let jws = cm
        .pointer(&format!("/data/{key}"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            anyhow!(
                "cluster-info has no signature for token id \"{}\": the token is unknown to this cluster, expired or deleted (make a new one with `dustkube token create` on a control-plane node)",
                token.id
            )
        })?;
    if !bootstrap::verify_detached_jws(jws, kubeconfig, token) {
        return Err(anyhow!(
            "the signature of cluster-info does not verify with token \"{}\": the token secret is wrong, or this is not the API server you think it is",
            token.id
        ));
    }
    let (server, ca_pem) = cluster_of(kubeconfig)?;
    let got = duststack::pki::ca_cert_hash(ca_pem.as_bytes())
        .map_err(|e| anyhow!("cluster-info CA: {e}"))?;
    if !skip_pin {
        if pins.is_empty() {
            return Err(anyhow!(
                "give --discovery-token-ca-cert-hash {got} (check it on a control-plane node) or --discovery-token-unsafe-skip-ca-verification"
            ));
        }
        if !pins.iter().any(|p| p.eq_ignore_ascii_case(&got)) {
            return Err(anyhow!(
                "the cluster CA's public key hash is {got}, but --discovery-token-ca-cert-hash expects {}: refusing to trust this API server",
                pins.join(" or ")
            ));
        }
    }
    Ok(Discovery { server, ca_pem })
}

fn check_pin_format(pins: &[String]) -> Result<()> {
    for p in pins {
        let hex = p.strip_prefix("sha256:").unwrap_or("");
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(anyhow!(
                "--discovery-token-ca-cert-hash: '{p}' is not sha256:<64 hex digits>"
            ));
        }
    }
    Ok(())
}

/// Discovery: cluster-info read without trusting the server, verified with the token and the
/// pin, then read again over a connection verified with the pinned CA.
pub async fn discover(
    endpoint_url: &str,
    token: &Token,
    pins: &[String],
    skip_pin: bool,
) -> Result<Discovery> {
    let insecure = ApiClient::unverified(endpoint_url)?;
    let r = insecure
        .request("GET", CLUSTER_INFO_PATH, None)
        .await
        .context("reading cluster-info")?;
    if !r.ok() {
        return Err(anyhow!(
            "cannot read kube-public/cluster-info from {endpoint_url}: {} {}",
            r.status,
            r.message()
        ));
    }
    let found = verify_cluster_info(&r.body, token, pins, skip_pin)?;
    // The server must present a certificate of that CA.
    let trusted = ApiClient::new(endpoint_url, &found.ca_pem, None)?;
    let again = trusted
        .get(CLUSTER_INFO_PATH)
        .await
        .with_context(|| format!("{endpoint_url} does not present a certificate of the pinned CA"))?
        .ok_or_else(|| anyhow!("cluster-info disappeared"))?;
    if again.pointer("/data/kubeconfig") != r.body.pointer("/data/kubeconfig") {
        return Err(anyhow!("cluster-info changed between two reads; try again"));
    }
    Ok(found)
}

/// The bootstrap kubeconfig: the cluster and the token as bearer credentials.
pub fn bootstrap_kubeconfig(server: &str, ca_pem: &str, token: &Token) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: kubernetes\ncontexts:\n- context:\n    cluster: kubernetes\n    user: tls-bootstrap-token-user\n  name: tls-bootstrap-token-user@kubernetes\ncurrent-context: tls-bootstrap-token-user@kubernetes\nkind: Config\npreferences: {{}}\nusers:\n- name: tls-bootstrap-token-user\n  user:\n    token: {token}\n"
    )
}

/// What an existing kubelet.conf says about this node.
enum Joined {
    /// No kubelet.conf.
    No,
    /// Joined as this node, to this server.
    Yes(String),
}

/// Checks an existing kubelet.conf: it must be this node's, signed by the CA next to it.
fn joined(a: &JoinArgs, node: &str) -> Result<Joined> {
    let path = a.kubeconfig_dir.join(KUBELET_CONF);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(Joined::No);
    };
    let kc = Kubeconfig::parse(&text, &path).map_err(|e| {
        anyhow!(
            "{} exists but is not a usable kubeconfig ({e}); run `dustkube reset` first",
            path.display()
        )
    })?;
    let cert = CertInfo::from_pem(kc.cert_pem.as_bytes())
        .map_err(|e| anyhow!("{}: client certificate: {e}", path.display()))?;
    let want = tls_bootstrap::node_user(node);
    if cert.common_name != want {
        return Err(anyhow!(
            "{} belongs to {} (this join is for {want}); run `dustkube reset` first",
            path.display(),
            cert.common_name
        ));
    }
    let ca = CertInfo::from_pem(kc.ca_pem.as_bytes())
        .map_err(|e| anyhow!("{}: cluster CA: {e}", path.display()))?;
    if !cert.signed_by(&ca) {
        return Err(anyhow!(
            "{}: the node certificate is not signed by its cluster CA; run `dustkube reset` first",
            path.display()
        ));
    }
    Ok(Joined::Yes(kc.server))
}

fn preflight_checks(a: &JoinArgs) -> Result<()> {
    preflight::validate_skips(&a.skip_preflight)?;
    let mut ports = vec![AGENT_PORT];
    if a.control_plane {
        ports.extend([a.apiserver_bind_port, a.etcd_client_port, a.etcd_peer_port]);
    }
    let mut checks = preflight::run(&a.skip_preflight, IpAddr::from([0, 0, 0, 0]), &ports);
    if let (Some(sock), Some(c)) = (
        &a.cri_socket,
        checks
            .iter_mut()
            .find(|c| c.name == "cri" && c.outcome != Outcome::Skipped),
    ) {
        c.outcome = if sock.exists() {
            Outcome::Ok(format!("container runtime socket {}", sock.display()))
        } else {
            Outcome::Fail(format!(
                "--cri-socket {} does not exist; start the container runtime",
                sock.display()
            ))
        };
    }
    print!("{}", preflight::render(&checks));
    preflight::verdict(&checks)
}

/// Turns a bootstrap-token 401 into advice.
fn token_refused(r: &super::client::Reply, token: &Token) -> anyhow::Error {
    anyhow!(
        "the API server refused bootstrap token \"{}\" ({} {}): it expired or was deleted; make a new one with `dustkube token create` on a control-plane node",
        token.id,
        r.status,
        r.message()
    )
}

/// Refuses a node name a Ready Node already has (another machine would be replaced).
async fn check_node_name(client: &ApiClient, node: &str, token: &Token) -> Result<()> {
    let r = client
        .request("GET", &format!("/api/v1/nodes/{node}"), None)
        .await?;
    match r.status {
        401 => Err(token_refused(&r, token)),
        200 => {
            let ready = r
                .body
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
            if ready {
                Err(anyhow!(
                    "a Node named \"{node}\" is Ready in the cluster already: delete it (kubectl delete node {node}) or join with another --node-name"
                ))
            } else {
                Ok(())
            }
        }
        // 404: new node; 403: an older policy without kubeadm:get-nodes — the CSR decides.
        _ => Ok(()),
    }
}

/// The `dustkube agent` command line for this node.
fn agent_args(a: &JoinArgs, node: &str) -> Result<Vec<String>> {
    let abs = |p: &Path, flag: &str| {
        std::path::absolute(p)
            .with_context(|| flag.to_string())
            .map(|p| p.display().to_string())
    };
    let mut args = vec![
        "agent".to_string(),
        "--kubeconfig".into(),
        abs(&a.kubeconfig_dir.join(KUBELET_CONF), "--kubeconfig-dir")?,
        "--node-name".into(),
        node.to_string(),
        "--node-ip".into(),
        a.node_ip.unwrap_or_else(init::default_address).to_string(),
        "--root-dir".into(),
        abs(&a.root_dir, "--root-dir")?,
        "--cni-conf-dir".into(),
        abs(&a.cni_conf_dir, "--cni-conf-dir")?,
    ];
    if let Some(sock) = a.cri_socket() {
        args.push("--container-runtime-endpoint".into());
        args.push(format!("unix://{}", abs(&sock, "--cri-socket")?));
    }
    args.extend(a.agent_args.iter().cloned());
    Ok(args)
}

/// Starts the agent: a systemd unit, or a supervised child this process waits on (until
/// SIGTERM/Ctrl-C) when systemd is not PID 1 or with `--foreground`.
async fn start_agent(a: &JoinArgs, node: &str, extra: Option<Supervisor>) -> Result<()> {
    let program = std::env::current_exe().context("cannot find the dustkube binary")?;
    let args = agent_args(a, node)?;
    let use_systemd = !a.foreground && units::systemd_is_init();
    if use_systemd {
        units::install_units(&[(units::AGENT_UNIT, units::agent_unit(&program, &args))])?;
        println!("[agent] started {}", units::AGENT_UNIT);
        return Ok(());
    }
    if !a.foreground {
        println!("[supervisor] systemd is not PID 1: running the agent as a child of this process");
    }
    let pid_path = a.run_dir.join(format!("{PID_NAME}.pid"));
    if let Some(pid) = units::live_pid(&pid_path) {
        println!(
            "[agent] a supervising dustkube (pid {pid}, {}) already runs this node's agent",
            pid_path.display()
        );
        return Ok(());
    }
    let mut sup = extra.unwrap_or_default();
    if let Some(dir) = &a.log_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    }
    sup.start(Service {
        name: "dustkube agent",
        program,
        args,
        log: a.log_dir.as_ref().map(|d| d.join("dustkube-agent.log")),
    })?;
    let _pid = units::PidFile::create(&a.run_dir, PID_NAME)?;
    println!("[supervisor] running in the foreground; SIGTERM or Ctrl-C stops the agent");
    crate::server::shutdown_signal().await;
    sup.stop().await;
    Ok(())
}

fn validate(a: &JoinArgs) -> Result<Token> {
    preflight::validate_skips(&a.skip_preflight)?;
    for p in &a.skip_phases {
        if !PHASES.contains(&p.as_str()) {
            return Err(anyhow!(
                "--skip-phases: unknown phase '{p}' (expected: {})",
                PHASES.join(", ")
            ));
        }
    }
    check_pin_format(&a.discovery_token_ca_cert_hash)?;
    if a.control_plane && a.certificate_key.is_none() {
        return Err(anyhow!(
            "--control-plane needs --certificate-key (from `dustkube init --upload-certs` or `dustkube token create --upload-certs`)"
        ));
    }
    Token::parse(&a.token)
}

/// Runs `dustkube join`.
pub async fn run(a: JoinArgs) -> Result<ExitCode> {
    let token = validate(&a)?;
    let node = a.node_name();
    if let Joined::Yes(server) = joined(&a, &node)? {
        println!(
            "dustkube join: this node is already joined to {server} as {} ({} exists); nothing changed.",
            tls_bootstrap::node_user(&node),
            a.kubeconfig_dir.join(KUBELET_CONF).display()
        );
        println!("To join it again, run `dustkube reset` first.");
        if !a.skips("agent") && (a.foreground || !units::systemd_is_init()) {
            start_agent(&a, &node, None).await?;
        }
        return Ok(ExitCode::SUCCESS);
    }

    preflight_checks(&a)?;

    let endpoint = a.server();
    let found = discover(
        &endpoint,
        &token,
        &a.discovery_token_ca_cert_hash,
        a.discovery_token_unsafe_skip_ca_verification,
    )
    .await?;
    println!(
        "[discovery] cluster-info from {endpoint} is signed by token \"{}\"; the CA matches the pin; API server {}",
        token.id, found.server
    );
    let client =
        ApiClient::new(&found.server, &found.ca_pem, None)?.with_bearer(&token.to_string());
    check_node_name(&client, &node, &token).await?;

    let mut control_plane = None;
    if a.control_plane {
        control_plane = Some(super::join_control_plane::prepare(&a, &node, &found, &token).await?);
    }

    let dir = &a.kubeconfig_dir;
    let ca_path = dir.join("pki/ca.crt");
    if std::fs::read_to_string(&ca_path).ok().as_deref() != Some(found.ca_pem.as_str()) {
        write_atomic(&ca_path, found.ca_pem.as_bytes(), CERT_MODE)?;
        println!("[kubelet-start] wrote {}", ca_path.display());
    }
    let boot_path = dir.join(BOOTSTRAP_CONF);
    write_atomic(
        &boot_path,
        bootstrap_kubeconfig(&found.server, &found.ca_pem, &token).as_bytes(),
        KEY_MODE,
    )?;
    println!("[kubelet-start] wrote {}", boot_path.display());

    let key_pem = tls_bootstrap::new_key()?;
    let cert = match tls_bootstrap::request_client_certificate(&client, &node, &key_pem).await {
        Ok(c) => c,
        Err(e) => {
            let refused = e.to_string().contains(": 401 ");
            let _ = std::fs::remove_file(&boot_path);
            if refused {
                return Err(anyhow!(
                    "the API server refused bootstrap token \"{}\": it expired or was deleted; make a new one with `dustkube token create` on a control-plane node ({e:#})",
                    token.id
                ));
            }
            return Err(e.context("TLS bootstrap"));
        }
    };
    println!(
        "[kubelet-start] the certificate signing request for {} was approved and signed",
        tls_bootstrap::node_user(&node)
    );
    let conf = dir.join(KUBELET_CONF);
    write_atomic(
        &conf,
        tls_bootstrap::node_kubeconfig(&found.server, &found.ca_pem, &node, &cert, &key_pem)
            .as_bytes(),
        KEY_MODE,
    )?;
    println!("[kubelet-start] wrote {}", conf.display());
    std::fs::remove_file(&boot_path).with_context(|| format!("{}", boot_path.display()))?;
    println!(
        "[kubelet-start] removed {} (the token is no longer needed)",
        boot_path.display()
    );

    let supervisor = match control_plane {
        Some(plan) => super::join_control_plane::start(&a, plan).await?,
        None => None,
    };

    println!("\nThis node has joined the cluster:");
    println!(
        "* A certificate signing request was sent to the API server and a response was received."
    );
    println!(
        "* Its agent talks to {} as {}.",
        found.server,
        tls_bootstrap::node_user(&node)
    );
    println!(
        "\nRun 'kubectl get nodes' on a control-plane node to see this node join the cluster.\n"
    );

    if a.skips("agent") {
        println!("[agent] skipped (--skip-phases agent)");
        if let Some(mut s) = supervisor {
            let _pid = units::PidFile::create(&a.run_dir, PID_NAME)?;
            println!("[supervisor] running in the foreground; SIGTERM or Ctrl-C stops etcd and the server");
            crate::server::shutdown_signal().await;
            s.stop().await;
        }
        return Ok(ExitCode::SUCCESS);
    }
    start_agent(&a, &node, supervisor).await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(token: &Token, ca_pem: &str) -> Value {
        let mut ci = bootstrap::cluster_info("https://10.0.0.5:6443", ca_pem);
        let kc = ci["data"]["kubeconfig"].as_str().unwrap().to_string();
        ci["data"][format!("{JWS_PREFIX}{}", token.id)] =
            Value::String(bootstrap::detached_jws(&kc, token));
        ci
    }

    fn ca() -> String {
        let tmp = tempfile::tempdir().unwrap();
        let mut spec = duststack::pki::ClusterSpec::new("cp1", "127.0.0.1".parse().unwrap());
        spec.key_algorithm = duststack::pki::KeyAlgorithm::EcdsaP256;
        duststack::pki::init(
            &duststack::pki::Store::new(tmp.path().join("pki")),
            tmp.path(),
            &spec,
        )
        .unwrap();
        std::fs::read_to_string(tmp.path().join("pki/ca.crt")).unwrap()
    }

    #[test]
    fn cluster_info_is_verified_by_token_and_pin() {
        let ca = ca();
        let pin = duststack::pki::ca_cert_hash(ca.as_bytes()).unwrap();
        let t = Token::parse("abcdef.0123456789abcdef").unwrap();
        let found =
            verify_cluster_info(&cm(&t, &ca), &t, std::slice::from_ref(&pin), false).unwrap();
        assert_eq!(found.server, "https://10.0.0.5:6443");
        assert_eq!(found.ca_pem, ca);

        let wrong = format!("sha256:{}", "0".repeat(64));
        let e = verify_cluster_info(&cm(&t, &ca), &t, std::slice::from_ref(&wrong), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&pin) && e.contains(&wrong), "{e}");
        assert!(verify_cluster_info(&cm(&t, &ca), &t, &[], true).is_ok());
        assert!(verify_cluster_info(&cm(&t, &ca), &t, &[], false).is_err());

        let other = Token::parse("abcdef.0123456789abcdeX".replace('X', "z").as_str()).unwrap();
        let e = verify_cluster_info(&cm(&t, &ca), &other, std::slice::from_ref(&pin), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not verify"), "{e}");
        let unknown = Token::parse("zzzzzz.0123456789abcdef").unwrap();
        let e = verify_cluster_info(&cm(&t, &ca), &unknown, &[pin], false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no signature for token id \"zzzzzz\""), "{e}");
        assert!(check_pin_format(&["sha256:abc".into()]).is_err());
    }

    #[test]
    fn bootstrap_kubeconfig_carries_the_token() {
        let t = Token::parse("abcdef.0123456789abcdef").unwrap();
        let text = bootstrap_kubeconfig("https://h:6443", "CA", &t);
        let doc = duststack::data::yaml::parse_yaml(&text, Path::new("x")).unwrap();
        assert_eq!(doc["users"][0]["user"]["token"], "abcdef.0123456789abcdef");
        assert_eq!(doc["clusters"][0]["cluster"]["server"], "https://h:6443");
    }
}
