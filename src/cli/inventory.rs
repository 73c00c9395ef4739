//! `duststack inventory`: prints an inventory as `ansible-inventory` would.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::inventory::{output, Inventory};

/// Flags of `duststack inventory`.
#[derive(Debug, clap::Args)]
pub struct InventoryArgs {
    /// Inventory source (file, directory or `host1,host2,` list); may be repeated.
    #[arg(short = 'i', long = "inventory")]
    pub inventory: Vec<PathBuf>,
    /// Print every group and host as JSON (`_meta.hostvars` holds the merged vars).
    #[arg(long)]
    pub list: bool,
    /// Print the group tree, from GROUP (default `all`).
    #[arg(long, value_name = "GROUP", num_args = 0..=1, default_missing_value = "all")]
    pub graph: Option<String>,
    /// Print the merged vars of one host as JSON.
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// With --graph: show vars too.
    #[arg(long)]
    pub vars: bool,
    /// With --list: print YAML instead of JSON (JSON is valid YAML; printed as JSON).
    #[arg(short = 'y', long)]
    pub yaml: bool,
    /// Restrict --list/--graph to hosts matching this pattern.
    #[arg(short = 'l', long)]
    pub limit: Option<String>,
}

/// Runs `duststack inventory`.
pub fn run(args: &InventoryArgs) -> anyhow::Result<ExitCode> {
    if args.inventory.is_empty() {
        bail!("no inventory given: pass -i FILE");
    }
    let modes = [args.list, args.graph.is_some(), args.host.is_some()];
    if modes.iter().filter(|m| **m).count() != 1 {
        bail!("choose exactly one of --list, --graph or --host");
    }
    let inv = Inventory::load(&args.inventory)?;
    let text = if let Some(host) = &args.host {
        serde_json::to_string_pretty(&output::host_json(&inv, host)?)?
    } else if let Some(group) = &args.graph {
        output::graph(&inv, Some(group), args.vars)?
    } else {
        let hosts = match &args.limit {
            Some(limit) => inv.select(limit).context("invalid --limit")?,
            None => inv.hosts(),
        };
        serde_json::to_string_pretty(&output::list_json_for(&inv, &hosts)?)?
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    Ok(ExitCode::SUCCESS)
}
