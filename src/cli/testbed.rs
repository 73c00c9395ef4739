//! `duststack testbed up|down`: local SSH hosts in network namespaces, for trying playbooks
//! without VMs (and for the benchmarks).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::testbed::{self, TestBed};

/// Flags of `duststack testbed`.
#[derive(Debug, clap::Args)]
pub struct TestbedArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: TestbedAction,
}

/// `up` or `down`.
#[derive(Debug, clap::Subcommand)]
pub enum TestbedAction {
    /// Start N SSH hosts (network namespaces with their own sshd) and write an inventory.
    Up {
        /// Number of hosts.
        #[arg(long, default_value_t = 3)]
        hosts: usize,
        /// Where keys, known_hosts, the inventory and host workdirs go.
        #[arg(long, default_value = "/var/tmp/duststack-testbed")]
        dir: PathBuf,
        /// Prefix of the network namespaces (`<name>-ctl` is the control namespace).
        #[arg(long, default_value = "dslab")]
        name: String,
    },
    /// A libvirt hypervisor (libvirtd + virtlogd) in its own network namespace, for `lab up`.
    Hypervisor {
        /// `up` or `down`.
        #[command(subcommand)]
        action: HypervisorAction,
    },
    /// Stop the hosts and remove their namespaces and files.
    Down {
        /// The directory given to `up`.
        #[arg(long, default_value = "/var/tmp/duststack-testbed")]
        dir: PathBuf,
        /// The name given to `up`.
        #[arg(long, default_value = "dslab")]
        name: String,
    },
}

/// `testbed hypervisor` actions.
#[derive(Debug, clap::Subcommand)]
pub enum HypervisorAction {
    /// Create namespace NAME and start virtlogd and libvirtd in it.
    Up {
        /// Network namespace name.
        #[arg(long, default_value = "dsvirt")]
        name: String,
    },
    /// Stop the daemons, kill what is left in the namespace (VMs, dnsmasq), remove it.
    Down {
        /// Network namespace name.
        #[arg(long, default_value = "dsvirt")]
        name: String,
    },
}

/// Runs `duststack testbed`.
pub fn run(args: &TestbedArgs) -> Result<ExitCode> {
    match &args.action {
        TestbedAction::Up { hosts, dir, name } => {
            let prefix = format!("{name}-");
            let removed = testbed::destroy(&prefix);
            if !removed.is_empty() {
                eprintln!("removed an earlier test bed ({} namespaces)", removed.len());
            }
            let mut bed = TestBed::start_in(*hosts, dir, &prefix)?;
            bed.keep = true;
            println!("{:<8} {:<12} WORKDIR", "HOST", "ADDRESS");
            for h in bed.hosts() {
                println!("{:<8} {:<12} {}", h.name, h.addr, h.workdir.display());
            }
            println!("\ninventory: {}", bed.inventory_path().display());
            println!("run playbooks from the control namespace:");
            println!(
                "  ip netns exec {} duststack play PLAYBOOK -i {}",
                bed.control_ns(),
                bed.inventory_path().display()
            );
            Ok(ExitCode::SUCCESS)
        }
        TestbedAction::Hypervisor {
            action: HypervisorAction::Up { name },
        } => {
            let mut hv = testbed::hypervisor::Hypervisor::start(name)?;
            hv.keep = true;
            println!("libvirtd runs in network namespace {name}; use it with:");
            println!("  ip netns exec {name} duststack lab up -i INVENTORY");
            println!("  ip netns exec {name} virsh list --all");
            Ok(ExitCode::SUCCESS)
        }
        TestbedAction::Hypervisor {
            action: HypervisorAction::Down { name },
        } => {
            for line in testbed::hypervisor::stop(name) {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        TestbedAction::Down { dir, name } => {
            let removed = testbed::destroy(&format!("{name}-"));
            if dir.join("inventory.ini").exists() {
                std::fs::remove_dir_all(dir)?;
            }
            println!("removed {} namespaces", removed.len());
            Ok(ExitCode::SUCCESS)
        }
    }
}
