//! `duststack pki`: the cluster PKI in kubeadm's layout (`init`, `check`, `renew`).

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::pki::check::format_time;
use crate::pki::spec::{Cidr, Endpoint};
use crate::pki::{self, Action, ClusterSpec, KeyAlgorithm, PkiError, RenewTarget, Store};

/// Flags of `duststack pki`.
#[derive(Debug, clap::Args)]
pub struct PkiArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: PkiCommand,
}

/// `pki` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum PkiCommand {
    /// Create (or complete) the CAs, certificates, service-account keys and kubeconfigs.
    Init(InitArgs),
    /// Show expiry of every certificate and kubeconfig; fails if one is missing or expired.
    Check(DirArgs),
    /// Re-issue a leaf certificate or kubeconfig (or `all`) for one more year, keeping its subject.
    Renew(RenewArgs),
}

/// Where the PKI lives.
#[derive(Debug, clap::Args)]
pub struct DirArgs {
    /// PKI directory (kubeadm: /etc/kubernetes/pki).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Directory of the kubeconfigs (kubeadm: /etc/kubernetes) [default: same as --dir].
    #[arg(long, value_name = "DIR")]
    pub kubeconfig_dir: Option<PathBuf>,
}

impl DirArgs {
    fn store(&self) -> Store {
        Store::new(&self.dir)
    }
    fn kubeconfig_dir(&self) -> &Path {
        self.kubeconfig_dir.as_deref().unwrap_or(&self.dir)
    }
}

/// Flags of `duststack pki init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    #[command(flatten)]
    dirs: DirArgs,
    /// This control-plane node's name.
    #[arg(long, value_name = "NAME")]
    node_name: String,
    /// Address the API server and etcd advertise.
    #[arg(long, value_name = "IP")]
    advertise_address: String,
    /// Shared API endpoint (load balancer or DNS name), HOST[:PORT].
    #[arg(long, value_name = "HOST[:PORT]")]
    control_plane_endpoint: Option<String>,
    /// Service network; its first address gets an API server SAN.
    #[arg(long, value_name = "CIDR", default_value = "10.96.0.0/12")]
    service_cidr: String,
    /// Cluster DNS domain.
    #[arg(long, value_name = "DOMAIN", default_value = "cluster.local")]
    dns_domain: String,
    /// Extra API server SANs (DNS names or IPs), comma-separated.
    #[arg(long, value_name = "SANS", value_delimiter = ',')]
    cert_sans: Vec<String>,
    /// Key algorithm for new keys: rsa-2048, rsa-4096 or ecdsa-p256.
    #[arg(long, value_name = "ALG", default_value = "rsa-2048")]
    key_algorithm: String,
    /// Nodes that get a kubelet-<node>.conf, comma-separated.
    #[arg(long, value_name = "NODES", value_delimiter = ',')]
    nodes: Vec<String>,
}

/// Flags of `duststack pki renew`.
#[derive(Debug, clap::Args)]
pub struct RenewArgs {
    /// Certificate (apiserver, etcd-server, ...), kubeconfig (admin.conf) or `all`.
    #[arg(value_name = "NAME|all")]
    name: String,
    #[command(flatten)]
    dirs: DirArgs,
}

/// Runs `duststack pki`.
pub fn run(args: &PkiArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        PkiCommand::Init(a) => init(a),
        PkiCommand::Check(a) => check(a),
        PkiCommand::Renew(a) => renew(a),
    }
}

/// Flags → a validated [`ClusterSpec`]; every error names its flag.
fn cluster_spec(a: &InitArgs) -> Result<ClusterSpec, PkiError> {
    let advertise: IpAddr = a.advertise_address.parse().map_err(|_| PkiError::Input {
        flag: "--advertise-address",
        message: format!("'{}' is not an IP address", a.advertise_address),
    })?;
    let mut spec = ClusterSpec::new(&a.node_name, advertise);
    spec.control_plane_endpoint = a
        .control_plane_endpoint
        .as_deref()
        .map(Endpoint::parse)
        .transpose()?;
    spec.service_cidr = Cidr::parse(&a.service_cidr, "--service-cidr")?;
    spec.dns_domain = a.dns_domain.clone();
    spec.cert_sans = a
        .cert_sans
        .iter()
        .filter(|s| !s.is_empty())
        .cloned()
        .collect();
    spec.key_algorithm = a.key_algorithm.parse::<KeyAlgorithm>()?;
    spec.nodes = a.nodes.iter().filter(|s| !s.is_empty()).cloned().collect();
    spec.validate()?;
    Ok(spec)
}

fn dir_error(err: PkiError, dirs: &DirArgs) -> anyhow::Error {
    match &err {
        PkiError::Io { path, .. } if path == &dirs.dir => {
            anyhow::Error::new(err).context("--dir: cannot use the PKI directory")
        }
        PkiError::Io { path, .. } if Some(path.as_path()) == dirs.kubeconfig_dir.as_deref() => {
            anyhow::Error::new(err).context("--kubeconfig-dir: cannot use the directory")
        }
        _ => err.into(),
    }
}

fn init(a: &InitArgs) -> anyhow::Result<ExitCode> {
    let spec = cluster_spec(a)?;
    let report = pki::init(&a.dirs.store(), a.dirs.kubeconfig_dir(), &spec)
        .map_err(|e| dir_error(e, &a.dirs))?;
    let mut out = std::io::stdout().lock();
    let width = report.rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
    for row in &report.rows {
        let reason = match &row.action {
            Action::Reissued(why) => format!(" ({why})"),
            _ => String::new(),
        };
        writeln!(out, "{:<width$}  {}{reason}", row.name, row.action.word())?;
    }
    let created = report
        .rows
        .iter()
        .filter(|r| r.action == Action::Created)
        .count();
    let reissued = report
        .rows
        .iter()
        .filter(|r| matches!(r.action, Action::Reissued(_)))
        .count();
    let kept = report.rows.len() - created - reissued;
    writeln!(
        out,
        "created: {created}  re-issued: {reissued}  kept: {kept}"
    )?;
    writeln!(out, "CA certificate hash: {}", report.ca_hash)?;
    Ok(ExitCode::SUCCESS)
}

fn check(a: &DirArgs) -> anyhow::Result<ExitCode> {
    let report = pki::check(&a.store(), a.kubeconfig_dir()).map_err(|e| dir_error(e, a))?;
    let mut out = std::io::stdout().lock();
    write!(out, "{}", report.render())?;
    if report.ok() {
        return Ok(ExitCode::SUCCESS);
    }
    let bad: Vec<String> = report
        .certs
        .iter()
        .chain(&report.cas)
        .filter_map(|r| Some(format!("{} ({})", r.name, r.problem.as_ref()?)))
        .collect();
    eprintln!("ERROR: {}", bad.join(", "));
    Ok(ExitCode::from(1))
}

fn renew(a: &RenewArgs) -> anyhow::Result<ExitCode> {
    let target = if a.name == "all" {
        RenewTarget::All
    } else {
        RenewTarget::Name(a.name.clone())
    };
    let rows = pki::renew(&a.dirs.store(), a.dirs.kubeconfig_dir(), &target)
        .map_err(|e| dir_error(e, &a.dirs))
        .with_context(|| format!("renew {}", a.name))?;
    let mut out = std::io::stdout().lock();
    for row in rows {
        match row.not_after {
            Some(t) => writeln!(out, "{} renewed, expires {}", row.name, format_time(t))?,
            None => writeln!(out, "{} missing, skipped", row.name)?,
        }
    }
    Ok(ExitCode::SUCCESS)
}
