//! `duststack lab`: lab VMs on libvirt from an inventory (`up`, `status`, `down`, `snapshot`,
//! `restore`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::connection::spec::expand_tilde;
use crate::inventory::Inventory;
use crate::lab::generated;
use crate::lab::libvirt::{Libvirt, NodeStatus, DEFAULT_URI};
use crate::lab::model::Lab;
use crate::lab::provision::{self, UpOptions};

use super::lab_hyperv;

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
    /// Storage pool for overlays and seeds [default: `lab_pool` from the inventory, else the
    /// pool on `virt_disk_image_path`, else one duststack defines there].
    #[arg(long, value_name = "POOL")]
    pub pool: Option<String>,
    /// Directory of the generated inventory and known_hosts [default: `generated/` beside the
    /// inventory directory, e.g. inventory/generated].
    #[arg(long, value_name = "DIR")]
    pub generated_dir: Option<PathBuf>,
}

/// Flags of `lab up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    target: Target,
    /// Private key for SSH to the VMs [default: `private_key_file` from the inventory, else
    /// `ssh_key` without `.pub`].
    #[arg(long, value_name = "FILE")]
    private_key: Option<PathBuf>,
    /// Seconds each VM may take to answer SSH.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    ssh_timeout: u64,
}

/// Flags of `lab snapshot` and `lab restore`.
#[derive(Debug, clap::Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    target: Target,
    /// Snapshot name.
    name: String,
}

/// `lab` actions.
#[derive(Debug, clap::Subcommand)]
pub enum LabAction {
    /// Networks → pool → overlays and seeds → domains → start → wait for SSH → write the
    /// generated inventory; rolls back what it created if a libvirt step fails.
    Up(UpArgs),
    /// State, address, vCPUs and memory of every lab node.
    Status(Target),
    /// Remove the domains, volumes, networks and files duststack created for this lab.
    Down(Target),
    /// Snapshot every lab VM (disk and memory) under NAME, for class resets.
    Snapshot(SnapshotArgs),
    /// Return every lab VM to snapshot NAME.
    Restore(SnapshotArgs),
}

struct Resolved {
    inv: Inventory,
    private_key: Option<PathBuf>,
    lab: Lab,
    lv: Libvirt,
    uri: String,
    pool: Option<String>,
    generated_dir: PathBuf,
}

fn resolve(target: &Target) -> anyhow::Result<Resolved> {
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
    let generated_dir = target
        .generated_dir
        .clone()
        .unwrap_or_else(|| generated::default_dir(&target.inventory[0]));
    let private_key = private_key_of(&all, &lab);
    let lv = Libvirt::connect(&uri)?;
    Ok(Resolved {
        inv,
        private_key,
        lab,
        lv,
        uri,
        pool,
        generated_dir,
    })
}

/// Runs `duststack lab`.
pub fn run(args: &LabArgs) -> anyhow::Result<ExitCode> {
    let target = match &args.action {
        LabAction::Up(up) => &up.target,
        LabAction::Status(t) | LabAction::Down(t) => t,
        LabAction::Snapshot(s) | LabAction::Restore(s) => &s.target,
    };
    if let Some(code) = hyperv_lab(args, target)? {
        return Ok(code);
    }
    match &args.action {
        LabAction::Up(up) => run_up(up),
        LabAction::Status(t) => {
            let r = resolve(t)?;
            print_status(&r.lab, &r.lv.status(&r.lab)?);
            Ok(ExitCode::SUCCESS)
        }
        LabAction::Down(t) => run_down(t),
        LabAction::Snapshot(s) => {
            let r = resolve(&s.target)?;
            for d in r.lv.snapshot_lab(&r.lab, &s.name)? {
                println!("{d}: snapshot {} taken", s.name);
            }
            Ok(ExitCode::SUCCESS)
        }
        LabAction::Restore(s) => run_restore(s),
    }
}

/// The Hyper-V provider, when the inventory asks for it (`lab_provider: hyperv` or
/// `hyperv_host`); None for libvirt.
fn hyperv_lab(args: &LabArgs, target: &Target) -> anyhow::Result<Option<ExitCode>> {
    let inv = Inventory::load(&target.inventory)?;
    let all = inv.group_vars("all")?;
    if !crate::lab::hyperv::HyperVOptions::wanted(&all) {
        return Ok(None);
    }
    let lab = Lab::from_inventory(&inv).context("the inventory does not describe a valid lab")?;
    let action = match &args.action {
        LabAction::Up(_) => lab_hyperv::Action::Up,
        LabAction::Status(_) => lab_hyperv::Action::Status,
        LabAction::Down(_) => lab_hyperv::Action::Down,
        LabAction::Snapshot(_) | LabAction::Restore(_) => anyhow::bail!(
            "lab snapshot/restore is not available for Hyper-V labs yet (Checkpoint-VM is not wired)"
        ),
    };
    let generated_dir = target
        .generated_dir
        .clone()
        .unwrap_or_else(|| generated::default_dir(&target.inventory[0]));
    let private_key = match &args.action {
        LabAction::Up(up) => up.private_key.clone(),
        _ => None,
    }
    .or_else(|| private_key_of(&all, &lab));
    lab_hyperv::run(action, &lab, &all, &generated_dir, private_key.as_deref()).map(Some)
}

/// `private_key_file` / `ansible_ssh_private_key_file` from the inventory, else `ssh_key`
/// without `.pub`.
fn private_key_of(all: &serde_json::Map<String, serde_json::Value>, lab: &Lab) -> Option<PathBuf> {
    ["ansible_ssh_private_key_file", "private_key_file"]
        .iter()
        .find_map(|k| all.get(*k).and_then(|v| v.as_str()))
        .map(expand_tilde)
        .or_else(|| crate::lab::seeding::default_private_key(lab))
}

fn run_restore(s: &SnapshotArgs) -> anyhow::Result<ExitCode> {
    let r = resolve(&s.target)?;
    for d in r.lv.restore_lab(&r.lab, &s.name)? {
        println!("{d}: restored to {}", s.name);
    }
    // The guests' clocks went back to snapshot time: set them to now.
    let (_, known_hosts) = generated::paths(&r.generated_dir, &r.lab);
    let mut failed = false;
    for (node, result) in provision::set_clocks(&r.lab, r.private_key.as_deref(), &known_hosts)? {
        match result {
            Ok(()) => println!("{node}: clock set to the host's time"),
            Err(e) => {
                failed = true;
                eprintln!("{node}: could not set the clock: {e:#}");
            }
        }
    }
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn run_up(args: &UpArgs) -> anyhow::Result<ExitCode> {
    let r = resolve(&args.target)?;
    let all = r.inv.group_vars("all")?;
    let private_key = args.private_key.clone().or_else(|| r.private_key.clone());
    let opts = UpOptions {
        pool: r.pool.clone(),
        private_key,
        generated_dir: r.generated_dir.clone(),
        ssh_timeout: Duration::from_secs(args.ssh_timeout),
        kernel_given: all.contains_key("base_kernel"),
        lab_vars: all,
    };
    let started = std::time::Instant::now();
    let outcome = provision::up(&r.lv, &r.lab, &opts)?;
    println!();
    for step in &outcome.report.steps {
        println!("{step}");
    }
    println!();
    print_status(&outcome.lab, &r.lv.status(&outcome.lab)?);
    let (inv, written) = &outcome.inventory;
    println!(
        "\ninventory: {} ({})",
        inv.display(),
        if *written { "written" } else { "unchanged" }
    );
    if !outcome.report.drift.is_empty() {
        eprintln!(
            "WARNING: {} existing domain(s) have other NICs than the inventory (left as they are); \
             run `duststack lab down` and `up` again to apply",
            outcome.report.drift.len()
        );
    }
    println!(
        "lab {}: {} in {:.1}s",
        outcome.lab.name,
        if outcome.changed {
            "up"
        } else {
            "no change, all VMs answer SSH"
        },
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn run_down(t: &Target) -> anyhow::Result<ExitCode> {
    let r = resolve(t)?;
    let report = r.lv.destroy_lab(&r.lab, r.pool.as_deref())?;
    for d in &report.domains_removed {
        println!("removed domain {d}");
    }
    for v in &report.volumes_removed {
        println!("removed volume {v}");
    }
    for p in &report.pools_removed {
        println!("removed pool {p}");
    }
    for h in &report.reservations_removed {
        println!("removed DHCP reservation {h}");
    }
    for n in &report.networks_removed {
        println!("removed network {n}");
    }
    for k in &report.kept {
        println!("kept {k}");
    }
    let mut files = Vec::new();
    let (inv, kh) = generated::paths(&r.generated_dir, &r.lab);
    files.push(inv);
    files.push(kh);
    // Console logs exist on this machine only for a local hypervisor.
    if r.lv.is_local() {
        for node in &r.lab.nodes {
            files.push(PathBuf::from(r.lab.console_log_path(node)));
        }
    }
    for f in files {
        match std::fs::remove_file(&f) {
            Ok(()) => println!("removed file {}", f.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => anyhow::bail!("removing {}: {e}", f.display()),
        }
    }
    if report.domains_removed.is_empty() && report.networks_removed.is_empty() {
        println!("nothing of lab {} to remove on {}", r.lab.name, r.uri);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(lab: &Lab, status: &[NodeStatus]) {
    println!(
        "{:<20} {:<10} {:<16} {:<16} {:>4} {:>8}",
        "NAME", "STATE", "ADDRESS", "INTERNAL", "VCPU", "MEMORY"
    );
    for s in status {
        let node = lab.node(&s.name);
        let address = node.map(|n| n.nat_nic().ip.to_string()).unwrap_or_default();
        let internal = node
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
            "{:<20} {:<10} {:<16} {:<16} {:>4} {:>8}",
            s.name, state, address, internal, vcpu, memory
        );
    }
}
