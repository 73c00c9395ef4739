//! `dustkube server`: loads the TLS material, connects to etcd, seeds the default namespaces,
//! and serves the API over HTTPS (HTTP/1.1 and HTTP/2) with optional client certificates; compacts
//! etcd periodically; stops gracefully on SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use axum::Extension;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::api::{self, AppState, Caller};
use crate::auth::serviceaccount::{SigningKey, VerifyKey};
use crate::auth::{policy, rbac::Rbac, x509};
use crate::resources;
use crate::storage::etcd::{EtcdConfig, EtcdStore};
use crate::storage::Store;

/// Namespaces every cluster has.
pub const DEFAULT_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Settings of `dustkube server` (flags named like kube-apiserver's).
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// etcd endpoints, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "https://127.0.0.1:2379")]
    pub etcd_servers: Vec<String>,
    /// CA that signed etcd's server certificate.
    #[arg(long)]
    pub etcd_cafile: Option<PathBuf>,
    /// Client certificate for etcd.
    #[arg(long)]
    pub etcd_certfile: Option<PathBuf>,
    /// Client key for etcd.
    #[arg(long)]
    pub etcd_keyfile: Option<PathBuf>,
    /// Serving certificate (PEM, chain allowed).
    #[arg(long)]
    pub tls_cert_file: PathBuf,
    /// Serving key (PEM).
    #[arg(long)]
    pub tls_private_key_file: PathBuf,
    /// CA that signs client certificates (X.509 authentication).
    #[arg(long)]
    pub client_ca_file: PathBuf,
    /// HTTPS port.
    #[arg(long, default_value_t = 6443)]
    pub secure_port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: std::net::IpAddr,
    /// Public keys (PEM) that verify service-account tokens (`sa.pub`); repeatable.
    #[arg(long)]
    pub service_account_key_file: Vec<PathBuf>,
    /// Private key (PEM) that signs service-account tokens (`sa.key`); its public half also
    /// verifies them.
    #[arg(long)]
    pub service_account_signing_key_file: Option<PathBuf>,
    /// Seconds between etcd compactions (0: never compact).
    #[arg(long, default_value_t = 300)]
    pub etcd_compaction_interval: u64,
    /// Revisions each compaction keeps (watches from older revisions get 410 Expired).
    #[arg(long, default_value_t = 1000)]
    pub etcd_compaction_retain: u64,
    /// Run the controllers (leader-elected through a Lease when several servers run).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub controllers: bool,
    /// Address other hosts reach this server at (the `kubernetes` Service's endpoint)
    /// [default: --bind-address, or the address of the default route when that is 0.0.0.0].
    #[arg(long)]
    pub advertise_address: Option<std::net::IpAddr>,
    /// Pod network: each node gets a subnet of it as spec.podCIDR ("" to allocate none).
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: String,
    /// Prefix length of each node's podCIDR.
    #[arg(long, default_value_t = 24)]
    pub node_cidr_mask_size: u8,
    /// How long a node may go without a heartbeat before it is marked Unknown and tainted
    /// unreachable (`40s`, `1m`, `1m30s`).
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    pub node_monitor_grace_period: Duration,
    /// tolerationSeconds of the not-ready:NoExecute toleration pods get by default.
    #[arg(long, default_value_t = 300)]
    pub default_not_ready_toleration_seconds: i64,
    /// tolerationSeconds of the unreachable:NoExecute toleration pods get by default.
    #[arg(long, default_value_t = 300)]
    pub default_unreachable_toleration_seconds: i64,
    /// CA certificate that signs approved CertificateSigningRequests (kube-controller-manager's
    /// flag; unset: requests are approved but not signed).
    #[arg(long, requires = "cluster_signing_key_file")]
    pub cluster_signing_cert_file: Option<PathBuf>,
    /// Private key of `--cluster-signing-cert-file`.
    #[arg(long, requires = "cluster_signing_cert_file")]
    pub cluster_signing_key_file: Option<PathBuf>,
    /// Longest validity of a signed certificate (e.g. 8760h).
    #[arg(long, default_value = "8760h")]
    pub cluster_signing_duration: String,
    /// Client certificate presented to node agents (pods/log, pods/exec).
    #[arg(long, requires = "kubelet_client_key")]
    pub kubelet_client_certificate: Option<PathBuf>,
    /// Its key.
    #[arg(long, requires = "kubelet_client_certificate")]
    pub kubelet_client_key: Option<PathBuf>,
}

/// Parses a Go-style duration made of `<number><unit>` parts (`ms`, `s`, `m`, `h`): `40s`,
/// `1m30s`, `500ms`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (expected e.g. 40s, 1m30s, 500ms)");
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += Duration::from_secs_f64(n * scale);
    }
    Ok(total)
}

/// The address this server advertises: the flag, else the bind address, else (0.0.0.0) the
/// source address of the default route (a UDP socket's connect sends no packet).
fn advertise_ip(args: &ServerArgs) -> std::net::IpAddr {
    if let Some(ip) = args.advertise_address {
        return ip;
    }
    if !args.bind_address.is_unspecified() {
        return args.bind_address;
    }
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
}

/// The controllers' settings from the flags.
fn controller_config(args: &ServerArgs) -> Result<crate::controllers::Config> {
    let cluster_cidr = match args.cluster_cidr.as_str() {
        "" => None,
        c => {
            let cidr = crate::controllers::ipam::Cidr::parse(c)
                .with_context(|| format!("--cluster-cidr {c}"))?;
            if args.node_cidr_mask_size < cidr.prefix || args.node_cidr_mask_size > 32 {
                return Err(anyhow!(
                    "--node-cidr-mask-size {} does not fit in --cluster-cidr {c}",
                    args.node_cidr_mask_size
                ));
            }
            Some(cidr)
        }
    };
    Ok(crate::controllers::Config {
        node_monitor_grace: args.node_monitor_grace_period,
        cluster_cidr,
        node_cidr_mask: args.node_cidr_mask_size,
        root_ca_pem: std::fs::read_to_string(&args.client_ca_file).ok(),
    })
}

/// The service-account verification keys named by the flags (the signing key is checked to
/// load, so a bad file stops startup).
fn service_account_keys(args: &ServerArgs) -> Result<Vec<VerifyKey>> {
    let mut keys = Vec::new();
    for f in &args.service_account_key_file {
        keys.push(VerifyKey::from_file(f)?);
    }
    if let Some(f) = &args.service_account_signing_key_file {
        keys.push(SigningKey::from_file(f)?.verify_key());
    }
    Ok(keys)
}

/// Every `interval`, compacts the store to `retain` revisions behind the current one.
pub async fn compact_periodically(store: Arc<dyn Store>, interval: Duration, retain: u64) {
    let mut last = 0;
    loop {
        tokio::time::sleep(interval).await;
        let current = match store.revision().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "compaction: cannot read the revision");
                continue;
            }
        };
        let target = current.saturating_sub(retain);
        if target <= last {
            continue;
        }
        match store.compact(target).await {
            Ok(()) => {
                tracing::info!(revision = target, current, "compacted etcd");
                last = target;
            }
            Err(e) => tracing::warn!(error = %e, revision = target, "compaction failed"),
        }
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("{}: cannot read certificates", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: bad PEM", path.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

/// The rustls server configuration: our certificate, client certificates verified against the
/// client CA when presented (anonymous connections are allowed; the API answers them 401).
pub fn tls_config(cert: &Path, key: &Path, client_ca: &Path) -> Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in read_certs(client_ca)? {
        roots
            .add(c)
            .with_context(|| format!("{}: not a usable CA certificate", client_ca.display()))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .context("client certificate verifier")?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("{}: cannot read the private key", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(read_certs(cert)?, key)
        .context("serving certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Creates the default namespaces that are missing.
pub async fn seed(state: &AppState) -> Result<()> {
    for ns in DEFAULT_NAMESPACES {
        let rt = &resources::namespaces::TYPE;
        if state.store.get(&rt.key(None, ns)).await?.is_some() {
            continue;
        }
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        match api::objects::create_object(state, rt, None, obj, false).await {
            Ok(_) => tracing::info!(namespace = ns, "created default namespace"),
            Err(e) if e.reason == "AlreadyExists" => {}
            Err(e) => return Err(anyhow!("creating namespace {ns}: {}", e.message)),
        }
    }
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

/// Runs the server until SIGTERM.
pub async fn run(args: ServerArgs) -> Result<()> {
    let tls = tls_config(
        &args.tls_cert_file,
        &args.tls_private_key_file,
        &args.client_ca_file,
    )?;
    if let (Some(cert), Some(key)) = (&args.kubelet_client_certificate, &args.kubelet_client_key) {
        api::proxy::configure_kubelet_client(cert, key)?;
    }
    let etcd = EtcdConfig {
        endpoints: args.etcd_servers.clone(),
        ca_file: args.etcd_cafile.clone(),
        cert_file: args.etcd_certfile.clone(),
        key_file: args.etcd_keyfile.clone(),
    };
    let store = EtcdStore::connect(&etcd)
        .await
        .with_context(|| format!("connecting to etcd at {}", args.etcd_servers.join(",")))?;
    let store = Arc::new(store) as Arc<dyn Store>;
    let mut state = AppState::new(store.clone(), Arc::new(Rbac::new(store)));
    state.sa_keys = Arc::new(service_account_keys(&args)?);
    if let Some(f) = &args.service_account_signing_key_file {
        state.sa_signer = Some(Arc::new(SigningKey::from_file(f)?));
    }
    seed(&state).await?;
    policy::ensure(&state).await?;
    if args.etcd_compaction_interval > 0 {
        tokio::spawn(compact_periodically(
            state.store.clone(),
            Duration::from_secs(args.etcd_compaction_interval),
            args.etcd_compaction_retain,
        ));
    }
    resources::pods::set_default_toleration_seconds(
        args.default_not_ready_toleration_seconds,
        args.default_unreachable_toleration_seconds,
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let id = uuid::Uuid::new_v4().to_string();
    let identity = format!("{}_{id}", host.trim());
    let advertise = SocketAddr::new(advertise_ip(&args), args.secure_port);
    tokio::spawn(crate::controllers::apiserver::run(
        crate::controllers::client::Client::new(state.clone(), "kube-apiserver"),
        id,
        identity.clone(),
        advertise,
    ));
    if let (Some(cert), Some(key)) = (
        &args.cluster_signing_cert_file,
        &args.cluster_signing_key_file,
    ) {
        let duration = crate::cmd::bootstrap::parse_ttl(&args.cluster_signing_duration)
            .ok()
            .flatten()
            .and_then(|d| d.to_std().ok())
            .ok_or_else(|| {
                anyhow!(
                    "--cluster-signing-duration: '{}' is not a positive duration (e.g. 8760h)",
                    args.cluster_signing_duration
                )
            })?;
        crate::controllers::csr_signer::configure(
            crate::controllers::csr_signer::SigningCa::from_files(cert, key, duration)?,
        );
    }
    if args.controllers {
        let config = controller_config(&args)?;
        tokio::spawn(crate::controllers::run(state.clone(), identity, config));
    }
    let addr = SocketAddr::new(args.bind_address, args.secure_port);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(%addr, "serving");
    serve(
        listener,
        TlsAcceptor::from(Arc::new(tls)),
        api::app(state),
        shutdown_signal(),
    )
    .await
}

/// Accepts TLS connections on `listener` and serves `app` until `shutdown` completes, then
/// gives open connections 5 seconds to finish.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|der| match x509::user_from_der(der) {
                    Ok(u) => Some(u),
                    Err(e) => {
                        tracing::info!(%peer, error = %e, "client certificate rejected");
                        None
                    }
                });
            let svc = app.layer(Extension(Caller(user))).map_request(
                |req: hyper::Request<hyper::body::Incoming>| req.map(axum::body::Body::new),
            );
            let svc = TowerToHyperService::new(svc);
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    tracing::info!("shutting down");
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(Duration::from_secs(5)) => tracing::info!("closing the remaining connections"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("40s"), Ok(Duration::from_secs(40)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("s").is_err());
    }
}
