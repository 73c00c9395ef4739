//! `duststack inventory`: prints an inventory as `ansible-inventory` would.

use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `duststack inventory`.
#[derive(Debug, clap::Args)]
pub struct InventoryArgs {
    /// Inventory source (file or directory); may be repeated.
    #[arg(short = 'i', long = "inventory")]
    pub inventory: Vec<PathBuf>,
}

/// Runs `duststack inventory`.
pub fn run(_args: &InventoryArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("inventory output is not implemented yet")
}
