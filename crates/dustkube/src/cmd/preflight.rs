//! The host checks `dustkube init` runs before touching anything: root, swap off, br_netfilter,
//! IP forwarding, the API and etcd ports free, a container runtime socket. Each prints one line;
//! any failure that was not skipped stops `init`.

use std::net::{IpAddr, TcpListener};
use std::path::Path;

use anyhow::{anyhow, Result};

/// Names accepted by `--skip-preflight` (plus `all`).
pub const CHECKS: [&str; 6] = ["root", "swap", "br_netfilter", "ip_forward", "ports", "cri"];

/// Runtime sockets looked for by the `cri` check.
pub const CRI_SOCKETS: [&str; 3] = [
    "/run/containerd/containerd.sock",
    "/var/run/crio/crio.sock",
    "/run/crio/crio.sock",
];

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Passed; the text says what was seen.
    Ok(String),
    /// Failed; the text says what is wrong and how to fix it.
    Fail(String),
    /// Not run (`--skip-preflight`).
    Skipped,
}

/// One check with its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Short name (one of [`CHECKS`]).
    pub name: &'static str,
    /// What happened.
    pub outcome: Outcome,
}

/// Validates `--skip-preflight` names.
pub fn validate_skips(skips: &[String]) -> Result<()> {
    for s in skips {
        if s != "all" && !CHECKS.contains(&s.as_str()) {
            return Err(anyhow!(
                "--skip-preflight: unknown check '{s}' (expected all or: {})",
                CHECKS.join(", ")
            ));
        }
    }
    Ok(())
}

fn root() -> Outcome {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        Outcome::Ok("running as root".into())
    } else {
        Outcome::Fail(format!("must run as root (effective uid is {uid})"))
    }
}

fn swap() -> Outcome {
    match std::fs::read_to_string("/proc/swaps") {
        Ok(text) => {
            let active: Vec<&str> = text
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().next())
                .collect();
            if active.is_empty() {
                Outcome::Ok("no swap active".into())
            } else {
                Outcome::Fail(format!(
                    "swap is on ({}); turn it off with `swapoff -a` and remove it from /etc/fstab",
                    active.join(", ")
                ))
            }
        }
        Err(e) => Outcome::Fail(format!("cannot read /proc/swaps: {e}")),
    }
}

fn br_netfilter() -> Outcome {
    let loaded = std::fs::read_to_string("/proc/modules")
        .map(|m| m.lines().any(|l| l.starts_with("br_netfilter ")))
        .unwrap_or(false);
    if loaded || Path::new("/proc/sys/net/bridge").exists() {
        Outcome::Ok("br_netfilter is loaded".into())
    } else {
        Outcome::Fail(
            "br_netfilter is not loaded (/proc/sys/net/bridge is missing); run `modprobe br_netfilter`"
                .into(),
        )
    }
}

fn ip_forward() -> Outcome {
    match std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward") {
        Ok(v) if v.trim() == "1" => Outcome::Ok("net.ipv4.ip_forward = 1".into()),
        Ok(v) => Outcome::Fail(format!(
            "net.ipv4.ip_forward is {}, must be 1; run `sysctl -w net.ipv4.ip_forward=1`",
            v.trim()
        )),
        Err(e) => Outcome::Fail(format!("cannot read /proc/sys/net/ipv4/ip_forward: {e}")),
    }
}

fn ports(bind: IpAddr, ports: &[u16]) -> Outcome {
    let busy: Vec<String> = ports
        .iter()
        .filter(|p| TcpListener::bind((bind, **p)).is_err())
        .map(|p| p.to_string())
        .collect();
    let all: Vec<String> = ports.iter().map(u16::to_string).collect();
    if busy.is_empty() {
        Outcome::Ok(format!("ports {} are free", all.join(", ")))
    } else {
        Outcome::Fail(format!(
            "port {} is in use on {bind} (needed: {})",
            busy.join(", "),
            all.join(", ")
        ))
    }
}

fn cri() -> Outcome {
    match CRI_SOCKETS.iter().find(|s| Path::new(s).exists()) {
        Some(s) => Outcome::Ok(format!("container runtime socket {s}")),
        None => Outcome::Fail(format!(
            "no container runtime socket found ({}); install and start containerd or CRI-O",
            CRI_SOCKETS.join(", ")
        )),
    }
}

/// Runs every check not in `skips`; `ports` are checked on `bind`.
pub fn run(skips: &[String], bind: IpAddr, wanted_ports: &[u16]) -> Vec<Check> {
    let skipped = |n: &str| skips.iter().any(|s| s == n || s == "all");
    CHECKS
        .iter()
        .map(|name| {
            let outcome = if skipped(name) {
                Outcome::Skipped
            } else {
                match *name {
                    "root" => root(),
                    "swap" => swap(),
                    "br_netfilter" => br_netfilter(),
                    "ip_forward" => ip_forward(),
                    "ports" => ports(bind, wanted_ports),
                    _ => cri(),
                }
            };
            Check { name, outcome }
        })
        .collect()
}

/// One line per check, e.g. `[preflight] FAIL  swap: swap is on (/swapfile); ...`.
pub fn render(checks: &[Check]) -> String {
    checks
        .iter()
        .map(|c| match &c.outcome {
            Outcome::Ok(t) => format!("[preflight] ok    {}: {t}\n", c.name),
            Outcome::Fail(t) => format!("[preflight] FAIL  {}: {t}\n", c.name),
            Outcome::Skipped => format!("[preflight] skip  {}\n", c.name),
        })
        .collect()
}

/// An error naming the failed checks, or `Ok` when none failed.
pub fn verdict(checks: &[Check]) -> Result<()> {
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Fail(_)))
        .map(|c| c.name)
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(
            "preflight failed: {} (fix them, or skip with --skip-preflight={})",
            failed.join(", "),
            failed.join(",")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_port_fails_with_its_number() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let skips: Vec<String> = ["root", "swap", "br_netfilter", "ip_forward", "cri"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let checks = run(&skips, "127.0.0.1".parse().unwrap(), &[port]);
        let text = render(&checks);
        assert!(
            text.contains(&format!("FAIL  ports: port {port} is in use")),
            "{text}"
        );
        assert!(text.contains("[preflight] skip  swap"), "{text}");
        let err = verdict(&checks).unwrap_err().to_string();
        assert!(err.contains("--skip-preflight=ports"), "{err}");
        assert!(validate_skips(&["swap".into()]).is_ok());
        assert!(validate_skips(&["swapp".into()]).is_err());
    }
}
