//! Command-line interface: flags (clap) → one function per subcommand → exit status.

pub mod image;
pub mod inventory;
#[cfg(feature = "libvirt")]
pub mod lab;
#[cfg(feature = "libvirt")]
pub mod lab_hyperv;
pub mod pki;
pub mod play;
pub mod testbed;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Duststack: an inventory in, a working cluster out.
#[derive(Debug, Parser)]
#[command(name = "duststack", version, about)]
pub struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a playbook against an inventory (like ansible-playbook).
    Play(play::PlayArgs),
    /// Show an inventory the way `ansible-inventory` does (--list, --graph, --host).
    Inventory(inventory::InventoryArgs),
    /// Local SSH hosts in network namespaces (no VMs needed).
    Testbed(testbed::TestbedArgs),
    /// The cluster PKI in kubeadm's layout: init, check, renew.
    Pki(pki::PkiArgs),
    /// Lab VMs on libvirt from an inventory: up, status, down.
    #[cfg(feature = "libvirt")]
    Lab(lab::LabArgs),
    /// The Debian base image lab VMs boot from: build.
    Image(image::ImageArgs),
}

/// Parses the process arguments and runs the chosen subcommand.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Play(args) => play::run(args),
        Command::Inventory(args) => inventory::run(args),
        Command::Testbed(args) => testbed::run(args),
        Command::Pki(args) => pki::run(args),
        #[cfg(feature = "libvirt")]
        Command::Lab(args) => lab::run(args),
        Command::Image(args) => image::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("ERROR: {err:#}");
            ExitCode::from(1)
        }
    }
}
