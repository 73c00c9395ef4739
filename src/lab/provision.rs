//! `lab up` end to end on libvirt: choose kvm or TCG (by a real probe), make or reuse each
//! node's seed (host keys generated once, then read back from the seed), bring networks,
//! storage and domains up, wait until every VM answers SSH as itself, and write the generated
//! inventory. Shows per-VM progress: created → booting → SSH ready.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{Map, Value};

use super::generated;
use super::kvm;
use super::libvirt::{seed_volume_name, Libvirt, UpReport};
use super::model::{Lab, VirtType};
use super::seeding::{absolute, authorized_keys, default_private_key, node_seed, SeedFormat};
use super::ssh_wait;

/// Settings of one `lab up` that the lab model does not hold.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Storage pool by name (default: the pool on the lab's image directory, else duststack's own).
    pub pool: Option<String>,
    /// Private key for SSH to the VMs (default: `ssh_key` without `.pub`).
    pub private_key: Option<PathBuf>,
    /// Directory for `<lab>.yml` and `<lab>.known_hosts`.
    pub generated_dir: PathBuf,
    /// How long each VM may take to answer SSH.
    pub ssh_timeout: Duration,
    /// The source inventory's `all` variables, copied into the generated inventory.
    pub lab_vars: Map<String, Value>,
    /// Whether `base_kernel` was set (then a missing kernel is an error, not a cloud image).
    pub kernel_given: bool,
}

/// What `lab up` did.
#[derive(Debug)]
pub struct UpOutcome {
    /// The libvirt steps and drift.
    pub report: UpReport,
    /// The lab as realised (addresses on reused networks, pool directory, virt type).
    pub lab: Lab,
    /// Seconds until SSH answered, per node.
    pub ready: Vec<(String, Duration)>,
    /// The generated inventory and whether it was (re)written.
    pub inventory: (PathBuf, bool),
    /// Whether anything changed at all.
    pub changed: bool,
}

/// kvm when asked for and usable (probed locally, or per libvirt's capabilities for a remote
/// hypervisor), else qemu (TCG) with a warning on stderr.
pub fn effective_virt_type(lv: &Libvirt, wanted: VirtType, kernel: Option<&Path>) -> VirtType {
    if wanted != VirtType::Kvm {
        return wanted;
    }
    let local = lv.is_local();
    let verdict = match kernel {
        Some(kernel) if local => kvm::probe(kernel, kvm::PROBE_TIMEOUT),
        // No kernel to boot (cloud image) or a remote hypervisor: libvirt's capabilities.
        _ => lv.supports_kvm(),
    };
    match verdict {
        Ok(()) => VirtType::Kvm,
        Err(why) => {
            eprintln!(
                "warning: KVM is not usable ({why}); the VMs run under TCG (domain type qemu), much slower"
            );
            VirtType::Qemu
        }
    }
}

/// Fails before anything is created when the VMs that `up` would start need more memory than
/// the hypervisor has available (MemAvailable for a local one, libvirt's free memory otherwise).
fn check_memory(lv: &Libvirt, lab: &Lab) -> anyhow::Result<()> {
    let status = lv.status(lab)?;
    let needed: u64 = lab
        .nodes
        .iter()
        .zip(&status)
        .filter(|(_, s)| s.state != super::libvirt::NodeState::Running)
        .map(|(n, _)| n.memory_mib)
        .sum();
    if needed == 0 {
        return Ok(());
    }
    let available_mib = if lv.is_local() {
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("MemAvailable:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
            .map(|kb| kb / 1024)
    } else {
        lv.free_memory_mib().ok()
    };
    if let Some(avail) = available_mib {
        if needed > avail {
            anyhow::bail!(
                "the lab's VMs need {needed} MiB of memory but the hypervisor has {avail} MiB \
                 available; lower vmem or the node count (nothing was created)"
            );
        }
    }
    Ok(())
}

/// Per node: the seed images to upload (none for a node whose seed volume exists already) and
/// the host public key each VM will present, both by node name.
struct Seeds {
    images: Vec<(String, Vec<u8>)>,
    host_keys: Vec<(String, String)>,
}

fn seeds(lv: &Libvirt, lab: &Lab, pool: Option<&str>) -> anyhow::Result<Seeds> {
    let keys = authorized_keys(lab)?;
    let pool = lv.find_pool(lab, pool)?;
    let mut images = Vec::new();
    let mut host_keys = Vec::new();
    for node in &lab.nodes {
        let existing = match &pool {
            Some(p) => lv.read_volume(&p.name, &seed_volume_name(lab, node))?,
            None => None,
        };
        let (image, public) = node_seed(lab, node, &keys, existing.as_deref(), SeedFormat::Fat)?;
        if let Some(image) = image {
            images.push((node.name.clone(), image));
        }
        host_keys.push((node.name.clone(), public));
    }
    Ok(Seeds { images, host_keys })
}

/// One line per VM on a terminal (spinners), plain lines otherwise.
struct Progress {
    bars: Vec<(String, ProgressBar)>,
}

impl Progress {
    fn new(names: &[String]) -> Progress {
        let multi = MultiProgress::new();
        let tty = console_is_tty();
        let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
        let style = ProgressStyle::with_template("{spinner} {prefix} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bars = names
            .iter()
            .map(|n| {
                let bar = if tty {
                    let b = multi.add(ProgressBar::new_spinner());
                    b.set_style(style.clone());
                    b.enable_steady_tick(Duration::from_millis(120));
                    b
                } else {
                    ProgressBar::hidden()
                };
                bar.set_prefix(format!("{n:<width$}"));
                (n.clone(), bar)
            })
            .collect();
        Progress { bars }
    }

    fn set(&self, node: &str, state: &str) {
        if let Some((_, bar)) = self.bars.iter().find(|(n, _)| n == node) {
            if bar.is_hidden() {
                println!("{node}: {state}");
            } else {
                bar.set_message(state.to_string());
            }
        }
    }

    fn finish(&self, node: &str, state: &str) {
        if let Some((_, bar)) = self.bars.iter().find(|(n, _)| n == node) {
            if bar.is_hidden() {
                println!("{node}: {state}");
            } else {
                bar.finish_with_message(state.to_string());
            }
        }
    }
}

fn console_is_tty() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

/// Runs `lab up` on libvirt (see the module doc).
pub fn up(lv: &Libvirt, lab: &Lab, opts: &UpOptions) -> anyhow::Result<UpOutcome> {
    let mut lab = lab.clone();
    let local = lv.is_local();
    if local && !Path::new(&lab.base_image).exists() {
        anyhow::bail!(
            "{} does not exist: build the base image with `duststack image build` \
             (or point base_image at a cloud image); nothing was created",
            lab.base_image
        );
    }
    // A base image without a kernel beside it (and no base_kernel) is a cloud image: it boots
    // through its own bootloader and cloud-init applies the seed's NoCloud files.
    if local && !Path::new(&lab.kernel).exists() {
        if opts.kernel_given {
            anyhow::bail!(
                "base_kernel {} does not exist; nothing was created",
                lab.kernel
            );
        }
        lab.kernel.clear();
        lab.initrd.clear();
    } else if local && !Path::new(&lab.initrd).exists() {
        anyhow::bail!("{} does not exist; nothing was created", lab.initrd);
    }
    let kernel = if lab.kernel.is_empty() {
        None
    } else {
        Some(PathBuf::from(&lab.kernel))
    };
    lab.virt_type = effective_virt_type(lv, lab.virt_type, kernel.as_deref());
    check_memory(lv, &lab)?;
    // Addresses on a reused network follow its subnet; the seeds carry them.
    for name in lab
        .networks
        .iter()
        .map(|n| n.name.clone())
        .collect::<Vec<_>>()
    {
        if let Some((address, prefix)) = lv.reused_subnet(&lab, &name)? {
            lab.rebase_network(&name, address, prefix);
        }
    }
    let Seeds {
        images: seed_images,
        host_keys,
    } = seeds(lv, &lab, opts.pool.as_deref())?;
    let names: Vec<String> = lab.nodes.iter().map(|n| n.name.clone()).collect();
    let progress = Progress::new(&names);
    for n in &names {
        progress.set(n, "defining");
    }
    let report = lv.up(&mut lab, opts.pool.as_deref(), &seed_images)?;
    for node in &lab.nodes {
        let domain = lab.domain_name(node);
        let created = report
            .steps
            .iter()
            .any(|s| s == &format!("domain {domain}: created"));
        let started = report
            .steps
            .iter()
            .any(|s| s == &format!("start {domain}: started"));
        let state = match (created, started) {
            (true, _) => "created → booting",
            (false, true) => "started → booting",
            (false, false) => "running → checking SSH",
        };
        progress.set(&node.name, state);
    }

    let (inv_path, kh_path) = generated::paths(&opts.generated_dir, &lab);
    let kh_changed =
        generated::write_if_changed(&kh_path, &generated::known_hosts(&lab, &host_keys)?)?;
    let key = opts
        .private_key
        .clone()
        .or_else(|| default_private_key(&lab));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let results = rt.block_on(async {
        let waits = lab.nodes.iter().map(|node| {
            let address = node.nat_nic().ip.to_string();
            let key = key.clone();
            let kh = kh_path.clone();
            let progress = &progress;
            async move {
                let r = ssh_wait::wait_ready(
                    &address,
                    &node.hostname,
                    key.as_deref(),
                    &kh,
                    opts.ssh_timeout,
                )
                .await;
                match &r {
                    Ok(t) => progress.finish(
                        &node.name,
                        &format!("SSH ready at {address} ({:.1}s)", t.as_secs_f64()),
                    ),
                    Err(_) => progress.finish(&node.name, "SSH not ready"),
                }
                (node.name.clone(), r)
            }
        });
        futures::future::join_all(waits).await
    });
    let mut ready = Vec::new();
    let mut failures = Vec::new();
    for (name, r) in results {
        match r {
            Ok(t) => ready.push((name, t)),
            Err(e) => {
                let tail = lab
                    .node(&name)
                    .map(|n| console_tail(&lab.console_log_path(n), 15))
                    .unwrap_or_default();
                failures.push(format!("{name}: {e:#}{tail}"));
            }
        }
    }
    if !failures.is_empty() {
        anyhow::bail!(
            "the lab's VMs were created but {} of them did not come up (they are left running for \
             inspection; `duststack lab down` removes them):\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    let yaml = generated::inventory_yaml(
        &lab,
        &opts.lab_vars,
        key.as_deref(),
        &absolute(&kh_path),
        lv.uri(),
        0,
    );
    let inv_changed = generated::write_if_changed(&inv_path, &yaml)?;
    let changed = report.changed || inv_changed || kh_changed;
    Ok(UpOutcome {
        report,
        lab,
        ready,
        inventory: (inv_path, inv_changed),
        changed,
    })
}

/// The last `lines` lines of a console log, indented, for error messages (empty if unreadable).
fn console_tail(path: &str, lines: usize) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    format!(
        "\n  last console lines ({path}):\n{}",
        all[from..]
            .iter()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// After `lab restore`: every VM's clock is where it was at snapshot time, so each one gets the
/// host's current time over SSH (labs are offline: NTP cannot fix it). Returns per node what
/// happened.
pub fn set_clocks(
    lab: &Lab,
    private_key: Option<&Path>,
    known_hosts: &Path,
) -> anyhow::Result<Vec<(String, anyhow::Result<()>)>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(rt.block_on(async {
        let jobs = lab.nodes.iter().map(|node| async move {
            let address = node.nat_nic().ip.to_string();
            let r = async {
                ssh_wait::wait_ready(
                    &address,
                    &node.hostname,
                    private_key,
                    known_hosts,
                    Duration::from_secs(60),
                )
                .await?;
                let mut spec = crate::connection::ConnectionSpec::ssh(
                    &address,
                    22,
                    "root",
                    private_key,
                    known_hosts,
                );
                spec.command_timeout = Some(Duration::from_secs(20));
                let conn = crate::connection::connect(&spec).await?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let out = conn
                    .exec(&format!("date -u -s @{now} >/dev/null"), None)
                    .await;
                conn.close().await;
                let out = out?;
                anyhow::ensure!(out.rc == 0, "date -s failed: {}", out.stderr_str().trim());
                Ok(())
            }
            .await;
            (node.name.clone(), r)
        });
        futures::future::join_all(jobs).await
    }))
}
