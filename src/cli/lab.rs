//! `duststack lab`: lab VMs on libvirt from an inventory (`up`, `status`, `down`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::inventory::Inventory;
use crate::lab::libvirt::{Libvirt, NodeStatus, DEFAULT_URI};
use crate::lab::model::Lab;

/// Flags of `duststack lab`.
#[derive(Debug, clap::Args)]
pub struct LabArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: LabAction,
}

/// Flags every `lab` action takes.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// Inventory describing the lab (file or directory; repeatable).
    #[arg(
        short = 'i',
        long = "inventory",
        value_name = "INVENTORY",
        required = true
    )]
    pub inventory: Vec<PathBuf>,
    /// libvirt URI [default: `lab_uri` from the inventory, else qemu:///system].
    #[arg(long, value_name = "URI")]
    pub uri: Option<String>,
    /// Storage pool for the system disk overlays [default: `lab_pool` from the inventory;
    /// without either, no volumes are created or removed].
    #[arg(long, value_name = "POOL")]
    pub pool: Option<String>,
}

/// `lab` actions.
#[derive(Debug, clap::Subcommand)]
pub enum LabAction {
    /// validate → networks → volumes → domains → start; rolls back what it created on failure.
    Up(Target),
    /// State, address, vCPUs and memory of every lab node.
    Status(Target),
    /// Remove the domains, overlays and networks duststack created for this lab.
    Down(Target),
}

/// Runs `duststack lab`.
pub fn run(args: &LabArgs) -> anyhow::Result<ExitCode> {
    let (target, action) = match &args.action {
        LabAction::Up(t) => (t, "up"),
        LabAction::Status(t) => (t, "status"),
        LabAction::Down(t) => (t, "down"),
    };
    let inv = Inventory::load(&target.inventory)?;
    let lab = Lab::from_inventory(&inv).context("the inventory does not describe a valid lab")?;
    let all = inv.group_vars("all")?;
    let var = |name: &str| all.get(name).and_then(|v| v.as_str()).map(str::to_string);
    let uri = target
        .uri
        .clone()
        .or_else(|| var("lab_uri"))
        .unwrap_or_else(|| DEFAULT_URI.to_string());
    let pool = target.pool.clone().or_else(|| var("lab_pool"));
    let lv = Libvirt::connect(&uri)?;
    match action {
        "up" => {
            let report = lv.up(&lab, pool.as_deref())?;
            for step in &report.steps {
                println!("{step}");
            }
            println!();
            print_status(&lab, &lv.status(&lab)?);
            println!("\nSSH wait not implemented yet: the nodes were started but duststack did not check that they answer.");
            if !report.drift.is_empty() {
                eprintln!(
                    "WARNING: {} existing domain(s) differ from the inventory (left as they are); \
                     run `duststack lab down` and `up` again to apply",
                    report.drift.len()
                );
            }
        }
        "status" => print_status(&lab, &lv.status(&lab)?),
        _ => {
            let report = lv.destroy_lab(&lab, pool.as_deref())?;
            for d in &report.domains_removed {
                println!("removed domain {d}");
            }
            for v in &report.volumes_removed {
                println!("removed volume {v}");
            }
            for n in &report.networks_removed {
                println!("removed network {n}");
            }
            for k in &report.kept {
                println!("kept {k}");
            }
            if report.domains_removed.is_empty() && report.networks_removed.is_empty() {
                println!("nothing of lab {} to remove on {uri}", lab.name);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(lab: &Lab, status: &[NodeStatus]) {
    println!(
        "{:<20} {:<10} {:<16} {:>4} {:>8}",
        "NAME", "STATE", "ADDRESS", "VCPU", "MEMORY"
    );
    for s in status {
        let address = lab
            .node(&s.name)
            .map(|n| n.internal_nic().ip.to_string())
            .unwrap_or_default();
        let vcpu = s.vcpu.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        let memory = s
            .memory_mib
            .map(|m| format!("{m}MiB"))
            .unwrap_or_else(|| "-".into());
        let mut state = s.state.as_str().to_string();
        if !s.owned && s.vcpu.is_some() {
            state.push_str(" (foreign)");
        }
        println!(
            "{:<20} {:<10} {:<16} {:>4} {:>8}",
            s.name, state, address, vcpu, memory
        );
    }
}
