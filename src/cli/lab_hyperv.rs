//! `duststack lab` on Hyper-V (`lab_provider: hyperv` or `hyperv_host` in the inventory): the
//! same lab model, seeds made here and uploaded, PowerShell run locally on Windows or over SSH
//! on the Hyper-V host (see `lab::hyperv`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Map, Value};

use crate::lab::generated;
use crate::lab::hyperv::{self, HyperVHost, HyperVOptions};
use crate::lab::model::Lab;
use crate::lab::seeding::{self as provision, SeedFormat};

/// What to do on the Hyper-V host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Seeds → switches, disks, VMs → wait for addresses → generated inventory.
    Up,
    /// One row per VM.
    Status,
    /// Remove what duststack created, and the local seeds and generated files.
    Down,
}

/// Directory of the seeds duststack makes here before uploading them.
fn seed_dir(generated_dir: &Path, lab: &Lab) -> PathBuf {
    generated_dir.join(format!("{}-seeds", lab.name))
}

/// Runs a `lab` action against Hyper-V.
pub fn run(
    action: Action,
    lab: &Lab,
    all: &Map<String, Value>,
    generated_dir: &Path,
    private_key: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let opts = HyperVOptions::from_vars(lab, all)?;
    let mut lab = lab.clone();
    lab.image_dir = seed_dir(generated_dir, &lab).display().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match action {
        Action::Up => {
            let host_keys = write_seeds(&lab)?;
            let report = rt.block_on(async {
                let host = HyperVHost::connect(&opts).await?;
                let r = hyperv::up(&lab, &opts, &host).await;
                host.close().await;
                r
            })?;
            for step in &report.steps {
                println!("{step}");
            }
            for d in &report.drift {
                eprintln!("WARNING: {d}");
            }
            let (inv, kh) = generated::paths(generated_dir, &lab);
            generated::write_if_changed(&kh, &generated::known_hosts(&lab, &host_keys)?)?;
            let yaml = generated::inventory_yaml(
                &lab,
                all,
                private_key,
                &provision::absolute(&kh),
                &format!(
                    "Hyper-V host {}",
                    opts.ssh
                        .as_ref()
                        .map(|s| s.label())
                        .unwrap_or_else(|| "localhost".into())
                ),
                1,
            );
            let written = generated::write_if_changed(&inv, &yaml)?;
            println!(
                "\ninventory: {} ({})",
                inv.display(),
                if written { "written" } else { "unchanged" }
            );
            println!(
                "lab {}: {}",
                lab.name,
                if report.created.is_empty() && !written {
                    "no change"
                } else {
                    "up"
                }
            );
        }
        Action::Status => {
            let rows = rt.block_on(async {
                let host = HyperVHost::connect(&opts).await?;
                let r = hyperv::status(&lab, &opts, &host).await;
                host.close().await;
                r
            })?;
            println!(
                "{:<20} {:<10} {:<32} {:>4} {:>8}",
                "NAME", "STATE", "ADDRESSES", "VCPU", "MEMORY"
            );
            for r in rows {
                println!(
                    "{:<20} {:<10} {:<32} {:>4} {:>8}",
                    r.node,
                    if r.exists { r.state.as_str() } else { "absent" },
                    r.addresses.join(","),
                    r.vcpu.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
                    r.memory_mib
                        .map(|m| format!("{m}MiB"))
                        .unwrap_or_else(|| "-".into())
                );
            }
        }
        Action::Down => {
            let report = rt.block_on(async {
                let host = HyperVHost::connect(&opts).await?;
                let r = hyperv::down(&lab, &opts, &host).await;
                host.close().await;
                r
            })?;
            for r in &report.removed {
                println!("removed {r}");
            }
            for k in &report.kept {
                println!("kept {k}");
            }
            let (inv, kh) = generated::paths(generated_dir, &lab);
            for f in [inv, kh] {
                if std::fs::remove_file(&f).is_ok() {
                    println!("removed file {}", f.display());
                }
            }
            let seeds = seed_dir(generated_dir, &lab);
            if seeds.exists() {
                std::fs::remove_dir_all(&seeds)
                    .with_context(|| format!("removing {}", seeds.display()))?;
                println!("removed {}", seeds.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes each node's seed (ISO 9660, for the VM's DVD drive) to `lab.seed_path(node)` unless
/// one exists (its host key is kept);
/// returns the host public keys by node.
fn write_seeds(lab: &Lab) -> anyhow::Result<Vec<(String, String)>> {
    let keys = provision::authorized_keys(lab)?;
    std::fs::create_dir_all(&lab.image_dir)
        .with_context(|| format!("creating {}", lab.image_dir))?;
    let mut host_keys = Vec::new();
    for node in &lab.nodes {
        let path = lab.seed_path(node);
        let existing = std::fs::read(&path).ok();
        let (image, public) =
            provision::node_seed(lab, node, &keys, existing.as_deref(), SeedFormat::Iso)?;
        if let Some(image) = image {
            std::fs::write(&path, image).with_context(|| format!("writing {path}"))?;
        }
        host_keys.push((node.name.clone(), public));
    }
    Ok(host_keys)
}
