//! `dustkube certs check-expiration|renew`: the PKI's expiry table and renewal, the same code as
//! `duststack pki check|renew` (kubeadm's `certs` verbs).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use duststack::pki::{self, check::format_time, RenewTarget, Store};

/// Flags of `dustkube certs`.
#[derive(Debug, clap::Args)]
pub struct CertsArgs {
    /// PKI directory.
    #[arg(long, global = true, default_value = "/etc/kubernetes/pki")]
    pub cert_dir: PathBuf,
    /// Directory of the kubeconfigs.
    #[arg(long, global = true, default_value = "/etc/kubernetes")]
    pub kubeconfig_dir: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: CertsCommand,
}

/// `certs` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CertsCommand {
    /// Expiry of every certificate, kubeconfig and CA; fails if one is missing or expired.
    CheckExpiration,
    /// Re-issue a certificate (apiserver, etcd-server, …), a kubeconfig (admin.conf) or `all`.
    Renew {
        /// What to renew.
        #[arg(default_value = "all", value_name = "NAME|all")]
        name: String,
    },
}

/// Runs `dustkube certs`.
pub fn run(args: &CertsArgs) -> Result<ExitCode> {
    let store = Store::new(&args.cert_dir);
    match &args.command {
        CertsCommand::CheckExpiration => {
            let report = pki::check(&store, &args.kubeconfig_dir)?;
            print!("{}", report.render());
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
        CertsCommand::Renew { name } => {
            let target = if name == "all" {
                RenewTarget::All
            } else {
                RenewTarget::Name(name.clone())
            };
            let rows = pki::renew(&store, &args.kubeconfig_dir, &target)
                .with_context(|| format!("renew {name}"))?;
            for row in rows {
                match row.not_after {
                    Some(t) => println!("{} renewed, expires {}", row.name, format_time(t)),
                    None => println!("{} missing, skipped", row.name),
                }
            }
            println!("Restart the API server (and etcd) so they load the renewed certificates.");
            Ok(ExitCode::SUCCESS)
        }
    }
}
