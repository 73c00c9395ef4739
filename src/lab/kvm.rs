//! Is KVM really usable here? A `/dev/kvm` that opens is not enough: on some hosts KVM runs
//! firmware but a Linux guest never prints a line, or qemu aborts setting the host CPU's MSRs.
//! So the probe boots the lab's own kernel the way the lab will run it (`-accel kvm -cpu host`)
//! for a few seconds and requires the kernel's first console line ("Linux version").

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long the probe kernel may take to print its banner under KVM (it takes well under a
/// second where KVM works).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(8);

/// The qemu binary the probe runs (libvirt's default emulator on Debian).
pub const QEMU: &str = "qemu-system-x86_64";

/// Boots `kernel` under KVM with a serial console into a temp file; `Ok(())` once the kernel
/// prints "Linux version", else why not (qemu refused KVM, crashed, or the guest stayed silent).
pub fn probe(kernel: &Path, timeout: Duration) -> Result<(), String> {
    if !Path::new("/dev/kvm").exists() {
        return Err("/dev/kvm does not exist".into());
    }
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let console = dir.path().join("console");
    let mut child = Command::new(QEMU)
        .args([
            "-accel",
            "kvm",
            "-cpu",
            "host",
            "-machine",
            "pc",
            "-m",
            "256",
            "-nodefaults",
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
        ])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {QEMU}: {e}"))?;
    let start = Instant::now();
    let verdict = loop {
        let text = std::fs::read_to_string(&console).unwrap_or_default();
        if text.contains("Linux version") {
            break Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let last = err
                .lines()
                .rfind(|l| !l.contains("warning:"))
                .unwrap_or("")
                .to_string();
            break Err(format!("qemu with KVM exited ({status}): {last}"));
        }
        if start.elapsed() > timeout {
            break Err(format!(
                "a KVM guest did not reach its kernel within {}s",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    verdict
}
