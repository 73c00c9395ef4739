//! `dustkube reset`: undoes `init` and `join` on this host, printing each thing it removes —
//! this control plane's etcd member (when others remain), the systemd units or the supervising
//! `init`/`join` process (by its pid file) and their children, every pod sandbox in the
//! container runtime, the `table inet dustkube` nftables table, the agent's CNI conflist,
//! the agent's state directory (after unmounting what is mounted under it), the etcd data of a
//! control plane, and the kubeconfigs and PKI in the kubeconfig directory. A second run
//! finds nothing and says so. Unlike kubeadm it also cleans the network rules and CNI config.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

use super::{etcd_member, preflight, units};

/// Phases `--skip-phases` accepts.
pub const PHASES: [&str; 6] = ["etcd-member", "stop", "cri", "nftables", "cni", "files"];
/// The CNI configuration the agent writes in `--cni-conf-dir`.
pub const CNI_CONFLIST: &str = "10-dustkube.conflist";
/// Kubeconfigs `init` and `join` write in the kubeconfig directory.
pub const KUBECONFIGS: [&str; 6] = [
    "admin.conf",
    "super-admin.conf",
    "kubelet.conf",
    "bootstrap-kubelet.conf",
    "controller-manager.conf",
    "scheduler.conf",
];
/// Supervising processes `reset` stops: pid file name and what to call it.
const SUPERVISORS: [(&str, &str); 2] = [
    (super::join::PID_NAME, "dustkube join"),
    ("dustkube-init", "dustkube init"),
];

/// Flags of `dustkube reset`.
#[derive(Debug, Clone, clap::Args)]
pub struct ResetArgs {
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub force: bool,
    /// Where the kubeconfigs are.
    #[arg(long, default_value = "/etc/kubernetes")]
    pub kubeconfig_dir: PathBuf,
    /// The PKI directory [default: <kubeconfig-dir>/pki].
    #[arg(long)]
    pub pki_dir: Option<PathBuf>,
    /// The agent's state directory.
    #[arg(long, default_value = "/var/lib/dustkube")]
    pub root_dir: PathBuf,
    /// etcd's data directory (removed on a control plane).
    #[arg(long, default_value = "/var/lib/etcd")]
    pub data_dir: PathBuf,
    /// This host's etcd, to remove its member from the cluster.
    #[arg(long, default_value = "https://127.0.0.1:2379")]
    pub etcd_endpoint: String,
    /// The container runtime socket [default: the first of containerd's and CRI-O's that
    /// exists].
    #[arg(long)]
    pub cri_socket: Option<PathBuf>,
    /// Where the agent wrote the node's CNI configuration.
    #[arg(long, default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    /// Where `init`/`join` wrote the pid files of supervising processes.
    #[arg(long, default_value = units::RUN_DIR)]
    pub run_dir: PathBuf,
    /// Phases to skip, comma-separated: etcd-member, stop, cri, nftables, cni, files.
    #[arg(long, value_delimiter = ',')]
    pub skip_phases: Vec<String>,
}

impl ResetArgs {
    fn pki_dir(&self) -> PathBuf {
        self.pki_dir
            .clone()
            .unwrap_or_else(|| self.kubeconfig_dir.join("pki"))
    }

    fn skips(&self, phase: &str) -> bool {
        self.skip_phases.iter().any(|p| p == phase)
    }

    /// A control plane made by `init` (or `join --control-plane`) has the etcd CA here.
    fn is_control_plane(&self) -> bool {
        self.pki_dir().join("etcd/ca.crt").exists()
    }
}

/// Collects what was done, printing each line as it happens.
#[derive(Default)]
struct Report {
    removed: usize,
}

impl Report {
    fn did(&mut self, what: impl AsRef<str>) {
        println!("[reset] {}", what.as_ref());
        self.removed += 1;
    }

    fn note(&self, what: impl AsRef<str>) {
        println!("[reset] {}", what.as_ref());
    }
}

/// Removes this host's etcd member when other members remain (they keep the cluster).
async fn remove_etcd_member(a: &ResetArgs, r: &mut Report) {
    if !a.is_control_plane() || !a.data_dir.exists() {
        return;
    }
    let mut etcd = match etcd_member::Etcd::connect(
        std::slice::from_ref(&a.etcd_endpoint),
        &a.pki_dir(),
    )
    .await
    {
        Ok(e) => e,
        Err(e) => {
            r.note(format!(
                "warning: cannot reach etcd at {} ({e:#}); if other control planes exist, remove this member there with `etcdctl member remove`",
                a.etcd_endpoint
            ));
            return;
        }
    };
    let result = async {
        let me = etcd.local_member_id().await?;
        let members = etcd.members().await?;
        let this = members.iter().find(|m| m.id == me).cloned();
        let name = this.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        if members.len() <= 1 {
            return Ok::<_, anyhow::Error>(format!(
                "etcd member {name} is the only member: its data goes with {}",
                a.data_dir.display()
            ));
        }
        // etcd refuses to remove a member while the cluster is settling (a member added in
        // the last seconds): retry for a while.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match etcd.remove(me).await {
                Ok(()) => break,
                Err(e) if Instant::now() < deadline && format!("{e:#}").contains("unhealthy") => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
        // The next joins must not try this member's endpoint (best effort).
        let urls = this.map(|m| m.client_urls).unwrap_or_default();
        if let Ok(admin) =
            super::client::ApiClient::from_kubeconfig(&a.kubeconfig_dir.join("super-admin.conf"))
        {
            if let Err(e) = super::join_control_plane::forget_endpoints(&admin, &urls).await {
                tracing::warn!(error = %format!("{e:#}"), "cannot update the cluster config");
            }
        }
        Ok(format!(
            "removed etcd member {name} ({me:x}); {} member(s) remain",
            members.len() - 1
        ))
    }
    .await;
    match result {
        Ok(line) if line.starts_with("removed") => r.did(line),
        Ok(line) => r.note(line),
        Err(e) => r.note(format!(
            "warning: cannot remove this host's etcd member ({e:#}); remove it on another control plane with `etcdctl member remove`"
        )),
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
}

/// SIGTERM to `pid`, SIGKILL after `grace`; true when it is gone.
async fn terminate(pid: u32, grace: Duration) -> bool {
    // SAFETY: kill(2) with a pid read from our own pid file and checked to be dustkube.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // SAFETY: as above.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    !alive(pid)
}

/// Stops the systemd units, or the supervising processes named by the pid files.
async fn stop(a: &ResetArgs, r: &mut Report) -> Result<()> {
    if units::systemd_is_init() {
        for line in units::remove_units()? {
            r.did(line);
        }
    }
    for (name, what) in SUPERVISORS {
        let path = a.run_dir.join(format!("{name}.pid"));
        if !path.exists() {
            continue;
        }
        match units::live_pid(&path) {
            Some(pid) => {
                // The supervisor stops its children (10 s each at most) before it exits.
                if terminate(pid, Duration::from_secs(35)).await {
                    r.did(format!(
                        "stopped {what} (pid {pid}) and the processes it supervised"
                    ));
                } else {
                    return Err(anyhow!("{what} (pid {pid}) did not stop"));
                }
            }
            None => r.note(format!("{} is stale (no such process)", path.display())),
        }
        if path.exists() {
            std::fs::remove_file(&path).with_context(|| format!("{}", path.display()))?;
            r.did(format!("removed {}", path.display()));
        }
    }
    Ok(())
}

/// Stops and removes every pod sandbox (and so its containers) through CRI.
async fn remove_sandboxes(socket: &Path, r: &mut Report) -> Result<()> {
    let cri = crate::agent::cri::Cri::connect(&socket.to_string_lossy())?;
    let sandboxes = cri
        .sandboxes(Default::default())
        .await
        .with_context(|| format!("the container runtime at {}", socket.display()))?;
    for sb in sandboxes {
        let label = sb
            .metadata
            .as_ref()
            .map(|m| format!("{}/{}", m.namespace, m.name))
            .unwrap_or_default();
        let short: String = sb.id.chars().take(13).collect();
        cri.stop_sandbox(&sb.id).await?;
        cri.remove_sandbox(&sb.id).await?;
        r.did(format!("removed pod sandbox {label} ({short})"));
    }
    Ok(())
}

/// Mount points at or under `dir`, deepest first (from /proc/self/mountinfo).
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let digits = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("");
            if let Ok(n) = u8::from_str_radix(digits, 8) {
                out.push(n);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn umount(path: &Path) -> Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .context("mount point with a NUL byte")?;
    // SAFETY: umount2 with a valid NUL-terminated path; MNT_DETACH never blocks.
    let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    if rc == 0 {
        Ok(())
    } else {
        Err(anyhow!(
            "umount {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ))
    }
}

/// Removes a directory tree (after unmounting anything under it).
fn remove_tree(dir: &Path, r: &mut Report) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    for m in mounts_under(&abs) {
        umount(&m)?;
        r.did(format!("unmounted {}", m.display()));
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    r.did(format!("removed {}", dir.display()));
    Ok(())
}

fn remove_file(path: &Path, r: &mut Report) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            r.did(format!("removed {}", path.display()));
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow!("removing {}: {e}", path.display())),
    }
}

/// Removes `dir` when it is empty.
fn remove_if_empty(dir: &Path, r: &mut Report) {
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
        && std::fs::remove_dir(dir).is_ok()
    {
        r.did(format!("removed {}", dir.display()));
    }
}

fn confirm(a: &ResetArgs) -> Result<bool> {
    if a.force {
        return Ok(true);
    }
    println!("[reset] WARNING: this stops dustkube on this host and deletes its pods, network rules, certificates and data.");
    print!("[reset] Are you sure you want to proceed? [y/N]: ");
    use std::io::Write;
    std::io::stdout().flush().ok();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

/// Runs `dustkube reset`.
pub async fn run(a: ResetArgs) -> Result<ExitCode> {
    for p in &a.skip_phases {
        if !PHASES.contains(&p.as_str()) {
            return Err(anyhow!(
                "--skip-phases: unknown phase '{p}' (expected: {})",
                PHASES.join(", ")
            ));
        }
    }
    if !confirm(&a)? {
        println!("[reset] aborted; nothing changed");
        return Ok(ExitCode::from(1));
    }
    let mut r = Report::default();
    let control_plane = a.is_control_plane();

    if !a.skips("etcd-member") {
        remove_etcd_member(&a, &mut r).await;
    }
    if !a.skips("stop") {
        stop(&a, &mut r).await?;
    }
    if !a.skips("cri") {
        let socket = a.cri_socket.clone().or_else(|| {
            preflight::CRI_SOCKETS
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
        });
        match socket {
            Some(s) if s.exists() => remove_sandboxes(&s, &mut r)
                .await
                .with_context(|| format!("removing pods through {}", s.display()))?,
            Some(s) => r.note(format!(
                "no container runtime at {}: no pods to remove",
                s.display()
            )),
            None => r.note("no container runtime socket found: no pods to remove"),
        }
    }
    if !a.skips("nftables") {
        match crate::agent::proxy::delete_table() {
            Ok(true) => r.did(format!(
                "removed nftables table inet {}",
                crate::agent::proxy::TABLE
            )),
            Ok(false) => {}
            Err(e) => r.note(format!("warning: {e:#}")),
        }
    }
    if !a.skips("cni") {
        remove_file(&a.cni_conf_dir.join(CNI_CONFLIST), &mut r)?;
    }
    if !a.skips("files") {
        remove_tree(&a.root_dir, &mut r)?;
        if control_plane {
            remove_tree(&a.data_dir, &mut r)?;
        }
        for f in KUBECONFIGS {
            remove_file(&a.kubeconfig_dir.join(f), &mut r)?;
        }
        remove_tree(&a.pki_dir(), &mut r)?;
        remove_if_empty(&a.kubeconfig_dir, &mut r);
        remove_if_empty(&a.run_dir, &mut r);
    }
    if r.removed == 0 {
        println!("[reset] nothing to remove: dustkube is not set up on this host");
    } else {
        println!(
            "[reset] done; not touched: kubectl configs (~/.kube/config) and network interfaces the CNI plugins made"
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mount("/var/lib/dk/a\\040b"), "/var/lib/dk/a b");
        assert_eq!(unescape_mount("/plain"), "/plain");
        assert_eq!(unescape_mount("/end\\"), "/end\\");
    }

    #[test]
    fn mounts_under_a_dir_deepest_first() {
        // /proc is mounted on every Linux host.
        let m = mounts_under(Path::new("/proc"));
        assert!(m.contains(&PathBuf::from("/proc")), "{m:?}");
        let depths: Vec<usize> = m.iter().map(|p| p.components().count()).collect();
        assert!(depths.windows(2).all(|w| w[0] >= w[1]), "{m:?}");
    }
}
