//! A libvirt hypervisor in its own network namespace: `virtlogd` and `libvirtd` started inside
//! namespace NAME, so lab networks, dnsmasq and VMs never touch the machine's own network.
//! Whoever talks to it (duststack, virsh, ssh to the VMs) runs under `ip netns exec NAME`.
//! Only one libvirtd may run on a machine at a time (it owns /run/libvirt).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Where libvirtd listens; its presence means a libvirtd is running on this machine.
pub const LIBVIRT_SOCKET: &str = "/run/libvirt/libvirt-sock";

/// A running hypervisor namespace. Dropping it stops the daemons, kills every process left in
/// the namespace (VMs, dnsmasq) and removes the namespace, unless `keep` is set.
#[derive(Debug)]
pub struct Hypervisor {
    /// Network namespace name.
    pub netns: String,
    /// Leave everything running on drop (for `duststack testbed hypervisor up`).
    pub keep: bool,
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

impl Hypervisor {
    /// Creates namespace `netns` (loopback up) and starts virtlogd and libvirtd in it; waits
    /// until libvirtd answers. Fails if a libvirtd already runs on this machine.
    pub fn start(netns: &str) -> anyhow::Result<Hypervisor> {
        if Path::new(LIBVIRT_SOCKET).exists() && libvirtd_answers(None) {
            bail!(
                "a libvirtd is already running on this machine ({LIBVIRT_SOCKET}); stop it first \
                 (or `duststack testbed hypervisor down`)"
            );
        }
        for bin in ["libvirtd", "virtlogd", "qemu-system-x86_64", "dnsmasq"] {
            if which(bin).is_none() {
                bail!("{bin} not found: install libvirt-daemon-system, qemu-system-x86 and dnsmasq-base");
            }
        }
        if !netns_exists(netns) {
            run(Command::new("ip").args(["netns", "add", netns]))?;
        }
        let hv = Hypervisor {
            netns: netns.to_string(),
            keep: false,
        };
        run(Command::new("ip").args(["netns", "exec", netns, "ip", "link", "set", "lo", "up"]))?;
        // Runtime state of an earlier libvirtd (networks and domains it thought active, in a
        // namespace that is gone) would make this one believe bridges exist that do not.
        for dir in ["/run/libvirt/network", "/run/libvirt/qemu"] {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    let p = e.path();
                    let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("");
                    if p.is_file() && matches!(ext, "xml" | "pid") {
                        let _ = std::fs::remove_file(&p);
                    }
                }
            }
        }
        // Stale sockets or pid files of an earlier, killed daemon make the new one refuse.
        for stale in [
            "/run/libvirtd.pid",
            "/run/virtlogd.pid",
            LIBVIRT_SOCKET,
            "/run/libvirt/libvirt-sock-ro",
            "/run/libvirt/libvirt-admin-sock",
            "/run/libvirt/virtlogd-sock",
            "/run/libvirt/virtlogd-admin-sock",
        ] {
            let _ = std::fs::remove_file(stale);
        }
        run(Command::new("ip").args(["netns", "exec", netns, "virtlogd", "-d"]))?;
        run(Command::new("ip").args(["netns", "exec", netns, "libvirtd", "-d"]))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !libvirtd_answers(Some(netns)) {
            if Instant::now() > deadline {
                bail!("libvirtd in namespace {netns} did not answer within 20 s");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(hv)
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns]).arg(program);
        c
    }
}

impl Drop for Hypervisor {
    fn drop(&mut self) {
        if !self.keep {
            stop(&self.netns);
        }
    }
}

fn libvirtd_answers(netns: Option<&str>) -> bool {
    let mut c = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "virsh"]);
            c
        }
        None => Command::new("virsh"),
    };
    c.args(["-c", "qemu:///system", "version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn which(bin: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .map(|d| d.join(bin))
            .find(|p| p.is_file())
    })
}

fn pid_from(file: &str) -> Option<i32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// Stops the daemons of namespace `netns`, kills what is left in it (VMs, dnsmasq) and removes
/// it. Returns what it did, for messages.
pub fn stop(netns: &str) -> Vec<String> {
    let mut done = Vec::new();
    if !netns_exists(netns) {
        return done;
    }
    let in_ns = |pid: i32| -> bool {
        let mine = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
        let theirs = std::fs::metadata(Path::new("/run/netns").join(netns)).ok();
        match (mine, theirs) {
            (Some(link), Some(meta)) => {
                use std::os::unix::fs::MetadataExt;
                link.to_string_lossy()
                    .contains(&format!("[{}]", meta.ino()))
            }
            _ => false,
        }
    };
    // Let libvirt itself stop what runs (domains, then networks) so its runtime state is clean.
    let virsh = |args: &[&str]| -> String {
        Command::new("ip")
            .args(["netns", "exec", netns, "virsh", "-c", "qemu:///system"])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default()
    };
    for dom in virsh(&["list", "--name"])
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        virsh(&["destroy", dom.trim()]);
        done.push(format!("stopped domain {}", dom.trim()));
    }
    for net in virsh(&["net-list", "--name"])
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        virsh(&["net-destroy", net.trim()]);
        done.push(format!("stopped network {}", net.trim()));
    }
    for (file, name) in [
        ("/run/libvirtd.pid", "libvirtd"),
        ("/run/virtlogd.pid", "virtlogd"),
    ] {
        if let Some(pid) = pid_from(file).filter(|p| in_ns(*p)) {
            // SAFETY: sending a signal to a pid we read from the daemon's own pid file.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            done.push(format!("stopped {name} (pid {pid})"));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let pids = Command::new("ip")
        .args(["netns", "pids", netns])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    for pid in pids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        // SAFETY: only processes inside the namespace we created are signalled.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        done.push(format!("killed pid {pid}"));
    }
    std::thread::sleep(Duration::from_millis(200));
    let _ = Command::new("ip").args(["netns", "del", netns]).status();
    done.push(format!("removed namespace {netns}"));
    done
}
