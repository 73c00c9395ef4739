//! What `init` and `join` run: the command lines of etcd and `dustkube server` from one
//! [`Layout`], the node agent's unit, their systemd units (`dustkube-etcd.service`,
//! `dustkube-server.service`, `dustkube-agent.service`) for hosts where systemd is PID 1, and the
//! pid files of supervising processes (`init`/`join` without systemd) that `reset` stops.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, Context, Result};

/// Where systemd units are written.
pub const UNIT_DIR: &str = "/etc/systemd/system";
/// Unit name of etcd.
pub const ETCD_UNIT: &str = "dustkube-etcd.service";
/// Unit name of the API server.
pub const SERVER_UNIT: &str = "dustkube-server.service";
/// Unit name of the node agent.
pub const AGENT_UNIT: &str = "dustkube-agent.service";
/// Every unit `init` and `join` may install (what `reset` removes), last started first.
pub const ALL_UNITS: [&str; 3] = [AGENT_UNIT, SERVER_UNIT, ETCD_UNIT];
/// Default directory of the pid files.
pub const RUN_DIR: &str = "/run/dustkube";

/// Paths, addresses and ports of one control-plane host.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Node name (etcd member name).
    pub node_name: String,
    /// Address etcd and the API server advertise.
    pub advertise: IpAddr,
    /// Address the API server listens on.
    pub bind_address: IpAddr,
    /// API server port.
    pub api_port: u16,
    /// etcd client port.
    pub etcd_client_port: u16,
    /// etcd peer port.
    pub etcd_peer_port: u16,
    /// PKI directory (kubeadm layout).
    pub pki_dir: PathBuf,
    /// etcd data directory.
    pub data_dir: PathBuf,
    /// The etcd binary.
    pub etcd_binary: PathBuf,
    /// The dustkube binary (runs `dustkube server`).
    pub dustkube_binary: PathBuf,
    /// Extra flags for `dustkube server` (e.g. compaction settings).
    pub server_extra: Vec<String>,
    /// `existing` when joining a running etcd cluster (`--initial-cluster` then lists every
    /// member); `new` for the first control plane.
    pub etcd_initial_cluster: Option<String>,
}

fn url(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V6(_) => format!("https://[{ip}]:{port}"),
        IpAddr::V4(_) => format!("https://{ip}:{port}"),
    }
}

impl Layout {
    fn pki(&self, f: &str) -> String {
        self.pki_dir.join(f).display().to_string()
    }

    /// The etcd URL the API server uses.
    pub fn etcd_url(&self) -> String {
        url(IpAddr::V4([127, 0, 0, 1].into()), self.etcd_client_port)
    }

    /// The etcd client URL other hosts use.
    pub fn etcd_client_url(&self) -> String {
        url(self.advertise, self.etcd_client_port)
    }

    /// The etcd peer URL.
    pub fn etcd_peer_url(&self) -> String {
        url(self.advertise, self.etcd_peer_port)
    }

    /// etcd's flags: mTLS for clients and peers with the etcd CA, a single-member cluster.
    pub fn etcd_args(&self) -> Vec<String> {
        let mut client = vec![self.etcd_url()];
        if !self.advertise.is_loopback() {
            client.push(url(self.advertise, self.etcd_client_port));
        }
        let peer = url(self.advertise, self.etcd_peer_port);
        let mut a: Vec<String> = vec![
            "--name".into(),
            self.node_name.clone(),
            "--data-dir".into(),
            self.data_dir.display().to_string(),
            "--listen-client-urls".into(),
            client.join(","),
            "--advertise-client-urls".into(),
            url(self.advertise, self.etcd_client_port),
            "--listen-peer-urls".into(),
            peer.clone(),
            "--initial-advertise-peer-urls".into(),
            peer.clone(),
            "--initial-cluster".into(),
            self.etcd_initial_cluster
                .clone()
                .unwrap_or_else(|| format!("{}={peer}", self.node_name)),
            "--cert-file".into(),
            self.pki("etcd/server.crt"),
            "--key-file".into(),
            self.pki("etcd/server.key"),
            "--trusted-ca-file".into(),
            self.pki("etcd/ca.crt"),
            "--client-cert-auth".into(),
            "--peer-cert-file".into(),
            self.pki("etcd/peer.crt"),
            "--peer-key-file".into(),
            self.pki("etcd/peer.key"),
            "--peer-trusted-ca-file".into(),
            self.pki("etcd/ca.crt"),
            "--peer-client-cert-auth".into(),
            "--snapshot-count".into(),
            "10000".into(),
        ];
        if self.etcd_initial_cluster.is_some() {
            a.extend(["--initial-cluster-state".into(), "existing".into()]);
        }
        a
    }

    /// `dustkube server` flags.
    pub fn server_args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "server".into(),
            "--etcd-servers".into(),
            self.etcd_url(),
            "--etcd-cafile".into(),
            self.pki("etcd/ca.crt"),
            "--etcd-certfile".into(),
            self.pki("apiserver-etcd-client.crt"),
            "--etcd-keyfile".into(),
            self.pki("apiserver-etcd-client.key"),
            "--tls-cert-file".into(),
            self.pki("apiserver.crt"),
            "--tls-private-key-file".into(),
            self.pki("apiserver.key"),
            "--client-ca-file".into(),
            self.pki("ca.crt"),
            "--secure-port".into(),
            self.api_port.to_string(),
            "--bind-address".into(),
            self.bind_address.to_string(),
            "--service-account-key-file".into(),
            self.pki("sa.pub"),
            "--service-account-signing-key-file".into(),
            self.pki("sa.key"),
            "--cluster-signing-cert-file".into(),
            self.pki("ca.crt"),
            "--cluster-signing-key-file".into(),
            self.pki("ca.key"),
            "--kubelet-client-certificate".into(),
            self.pki("apiserver-kubelet-client.crt"),
            "--kubelet-client-key".into(),
            self.pki("apiserver-kubelet-client.key"),
            "--advertise-address".into(),
            self.advertise.to_string(),
        ];
        a.extend(self.server_extra.iter().cloned());
        a
    }
}

fn exec_line(program: &Path, args: &[String]) -> String {
    let quote = |s: &str| {
        if s.chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\\')
        {
            format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
        } else {
            s.to_string()
        }
    };
    std::iter::once(program.display().to_string())
        .chain(args.iter().map(|a| quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The etcd unit.
pub fn etcd_unit(l: &Layout) -> String {
    format!(
        "[Unit]\nDescription=etcd for the dustkube control plane\nAfter=network-online.target\nWants=network-online.target\n\n\
[Service]\nExecStart={}\nRestart=always\nRestartSec=5\nLimitNOFILE=65536\n\n[Install]\nWantedBy=multi-user.target\n",
        exec_line(&l.etcd_binary, &l.etcd_args())
    )
}

/// The API server unit (after etcd).
pub fn server_unit(l: &Layout) -> String {
    format!(
        "[Unit]\nDescription=dustkube API server\nAfter=network-online.target {ETCD_UNIT}\nWants=network-online.target {ETCD_UNIT}\n\n\
[Service]\nExecStart={}\nRestart=always\nRestartSec=5\nLimitNOFILE=65536\n\n[Install]\nWantedBy=multi-user.target\n",
        exec_line(&l.dustkube_binary, &l.server_args())
    )
}

/// The node agent unit running `program args`.
pub fn agent_unit(program: &Path, args: &[String]) -> String {
    format!(
        "[Unit]\nDescription=dustkube node agent\nAfter=network-online.target containerd.service\nWants=network-online.target\n\n\
[Service]\nExecStart={}\nRestart=always\nRestartSec=5\nLimitNOFILE=65536\n\n[Install]\nWantedBy=multi-user.target\n",
        exec_line(program, args)
    )
}

/// True when PID 1 is systemd.
pub fn systemd_is_init() -> bool {
    std::fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "systemd")
}

fn systemctl(args: &[&str]) -> Result<()> {
    let status = Command::new("systemctl")
        .args(args)
        .status()
        .with_context(|| format!("cannot run systemctl {}", args.join(" ")))?;
    if status.success() {
        Ok(())
    } else {
        Err(anyhow!("systemctl {} failed ({status})", args.join(" ")))
    }
}

/// Writes both units (only when their text changed), reloads systemd and enables + starts them.
pub fn install(l: &Layout) -> Result<()> {
    install_units(&[(ETCD_UNIT, etcd_unit(l)), (SERVER_UNIT, server_unit(l))])
}

/// Writes units (name, text) whose text changed, reloads systemd and enables + starts them.
pub fn install_units(units: &[(&str, String)]) -> Result<()> {
    for (name, text) in units {
        let path = Path::new(UNIT_DIR).join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            println!("[units] wrote {}", path.display());
        }
    }
    systemctl(&["daemon-reload"])?;
    let mut args = vec!["enable", "--now"];
    args.extend(units.iter().map(|(n, _)| *n));
    systemctl(&args)
}

/// Stops, disables and deletes the unit files of [`ALL_UNITS`] that exist; returns what was
/// removed (one line each).
pub fn remove_units() -> Result<Vec<String>> {
    let mut done = Vec::new();
    let present: Vec<&str> = ALL_UNITS
        .iter()
        .copied()
        .filter(|u| Path::new(UNIT_DIR).join(u).exists())
        .collect();
    if present.is_empty() {
        return Ok(done);
    }
    let mut args = vec!["disable", "--now"];
    args.extend(present.iter().copied());
    if let Err(e) = systemctl(&args) {
        done.push(format!("warning: {e:#}"));
    }
    for u in present {
        let path = Path::new(UNIT_DIR).join(u);
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        done.push(format!("stopped and removed {}", path.display()));
    }
    systemctl(&["daemon-reload"])?;
    Ok(done)
}

/// A pid file naming the process that supervises this node's children (`init`/`join` without
/// systemd); removed when dropped.
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes `<run_dir>/<name>.pid` with this process's pid.
    pub fn create(run_dir: &Path, name: &str) -> Result<PidFile> {
        std::fs::create_dir_all(run_dir).with_context(|| format!("{}", run_dir.display()))?;
        let path = run_dir.join(format!("{name}.pid"));
        std::fs::write(&path, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(PidFile { path })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The pid in `path` when that process is alive and is a dustkube process.
pub fn live_pid(path: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(argv0)
        .contains("dustkube")
        .then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            node_name: "cp1".into(),
            advertise: "10.0.0.5".parse().unwrap(),
            bind_address: "0.0.0.0".parse().unwrap(),
            api_port: 6443,
            etcd_client_port: 2379,
            etcd_peer_port: 2380,
            pki_dir: "/etc/kubernetes/pki".into(),
            data_dir: "/var/lib/etcd".into(),
            etcd_binary: "/usr/bin/etcd".into(),
            dustkube_binary: "/usr/local/bin/dustkube".into(),
            server_extra: Vec::new(),
            etcd_initial_cluster: None,
        }
    }

    #[test]
    fn etcd_listens_on_loopback_and_advertise() {
        let a = layout().etcd_args().join(" ");
        assert!(a.contains("--listen-client-urls https://127.0.0.1:2379,https://10.0.0.5:2379"));
        assert!(a.contains("--initial-cluster cp1=https://10.0.0.5:2380"));
        assert!(a.contains("--client-cert-auth"));
        let unit = etcd_unit(&layout());
        assert!(unit.contains("ExecStart=/usr/bin/etcd --name cp1 --data-dir /var/lib/etcd"));
        let s = server_unit(&layout());
        assert!(s.contains("After=network-online.target dustkube-etcd.service"));
        assert!(s.contains("--etcd-certfile /etc/kubernetes/pki/apiserver-etcd-client.crt"));
        assert!(s.contains(
            "--cluster-signing-cert-file /etc/kubernetes/pki/ca.crt --cluster-signing-key-file /etc/kubernetes/pki/ca.key"
        ));
        assert!(!a.contains("--initial-cluster-state"));
        let mut joining = layout();
        joining.etcd_initial_cluster =
            Some("cp0=https://10.0.0.4:2380,cp1=https://10.0.0.5:2380".into());
        let a = joining.etcd_args().join(" ");
        assert!(
            a.contains("--initial-cluster cp0=https://10.0.0.4:2380,cp1=https://10.0.0.5:2380 ")
        );
        assert!(a.ends_with("--initial-cluster-state existing"));
    }
}
