//! `duststack image`: builds the Debian base image lab VMs boot from (`build`).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::image::{self, disk, progress, BuildOptions, Outcome, ProgressMode};

/// Flags of `duststack image`.
#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ImageAction,
}

/// `image` actions.
#[derive(Debug, clap::Subcommand)]
pub enum ImageAction {
    /// Build the base image (qcow2 + <stem>.vmlinuz + <stem>.initrd + <stem>.json); does nothing
    /// when the existing one matches. Needs root.
    Build(BuildArgs),
}

/// Flags of `duststack image build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The qcow2 to write; kernel, initrd and manifest go beside it.
    #[arg(long, value_name = "PATH", default_value = image::DEFAULT_OUTPUT)]
    pub output: PathBuf,
    /// Debian mirror (also the image's apt source).
    #[arg(long, value_name = "URL", default_value = image::DEFAULT_MIRROR)]
    pub mirror: String,
    /// Debian suite.
    #[arg(long, value_name = "SUITE", default_value = image::DEFAULT_SUITE)]
    pub suite: String,
    /// Virtual disk size (the root filesystem grows to the VM's disk at boot).
    #[arg(long, value_name = "SIZE", default_value = image::DEFAULT_SIZE)]
    pub size: String,
    /// Extra packages to install (comma-separated, repeatable).
    #[arg(long, value_name = "PKG,...", value_delimiter = ',')]
    pub packages: Vec<String>,
    /// Rebuild even when the image is up to date (VMs with overlays on the old image break).
    #[arg(long)]
    pub force: bool,
    /// Where downloaded packages are kept between builds.
    #[arg(long, value_name = "DIR", default_value = image::DEFAULT_CACHE_DIR)]
    pub cache_dir: PathBuf,
    /// Plain progress lines even on a terminal.
    #[arg(long)]
    pub plain: bool,
}

/// Runs `duststack image`.
pub fn run(args: &ImageArgs) -> anyhow::Result<ExitCode> {
    match &args.action {
        ImageAction::Build(b) => build(b),
    }
}

fn build(args: &BuildArgs) -> anyhow::Result<ExitCode> {
    let opts = BuildOptions {
        output: args.output.clone(),
        mirror: args.mirror.clone(),
        suite: args.suite.clone(),
        size: disk::parse_size(&args.size)?,
        extra_packages: args
            .packages
            .iter()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect(),
        force: args.force,
        cache_dir: args.cache_dir.clone(),
        progress: if args.plain {
            ProgressMode::Plain
        } else {
            ProgressMode::Auto
        },
    };
    let report = image::build(&opts)?;
    let m = &report.manifest;
    match report.outcome {
        Outcome::UpToDate => {
            println!(
                "image {} is up to date ({} {}, kernel {}, built {})",
                report.paths.image.display(),
                m.suite,
                m.size,
                m.kernel_version,
                m.built_at
            );
        }
        Outcome::Built => {
            if let Some(why) = &report.reason {
                println!("built because: {why}");
            }
            println!("image   {}", report.paths.image.display());
            println!(
                "kernel  {} ({})",
                report.paths.kernel.display(),
                m.kernel_version
            );
            println!("initrd  {}", report.paths.initrd.display());
            println!("manifest {}", report.paths.manifest.display());
            println!(
                "{} MiB qcow2, {} disk, sha256 {}",
                m.image_bytes >> 20,
                m.size,
                m.image_sha256
            );
            let total: std::time::Duration = report.steps.iter().map(|s| s.elapsed).sum();
            println!("timings:");
            for s in &report.steps {
                println!(
                    "  {:<18} {:>8}",
                    s.name,
                    progress::format_duration(s.elapsed)
                );
            }
            println!("  {:<18} {:>8}", "total", progress::format_duration(total));
        }
    }
    Ok(ExitCode::SUCCESS)
}
