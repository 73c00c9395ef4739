//! How to reach a host, read from its inventory variables (`ansible_host`, `ansible_port`,
//! `ansible_user`, key files, `ansible_connection`, ProxyJump in `ansible_ssh_common_args`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::{Map, Value};

use super::{local::LocalConnection, ssh, ConnError, Connection};
use crate::modules::args::to_string;

/// The transport to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionKind {
    /// SSH (russh).
    Ssh,
    /// Commands on the control machine.
    Local,
}

/// Everything needed to open a connection to one host.
#[derive(Debug, Clone)]
pub struct ConnectionSpec {
    /// Transport.
    pub kind: ConnectionKind,
    /// Address or name to connect to.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Remote user.
    pub user: String,
    /// Password for password authentication.
    pub password: Option<String>,
    /// Private keys to try, in order.
    pub private_key_files: Vec<PathBuf>,
    /// Passphrase for encrypted keys.
    pub key_passphrase: Option<String>,
    /// known_hosts file checked strictly.
    pub known_hosts: PathBuf,
    /// Record unknown host keys instead of refusing them (never changed ones).
    pub accept_new_host_keys: bool,
    /// A bastion to tunnel through.
    pub proxy_jump: Option<Box<ConnectionSpec>>,
    /// Time allowed to connect and authenticate.
    pub connect_timeout: Duration,
    /// Time allowed per command.
    pub command_timeout: Option<Duration>,
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

fn default_user() -> String {
    std::env::var("USER").unwrap_or_else(|_| "root".into())
}

impl ConnectionSpec {
    /// A spec with defaults for `host`.
    pub fn new(host: &str) -> Self {
        let ssh_dir = home().join(".ssh");
        ConnectionSpec {
            kind: ConnectionKind::Ssh,
            host: host.to_owned(),
            port: 22,
            user: default_user(),
            password: None,
            private_key_files: ["id_ed25519", "id_ecdsa", "id_rsa"]
                .iter()
                .map(|k| ssh_dir.join(k))
                .filter(|p| p.exists())
                .collect(),
            key_passphrase: None,
            known_hosts: ssh_dir.join("known_hosts"),
            accept_new_host_keys: false,
            proxy_jump: None,
            connect_timeout: Duration::from_secs(10),
            command_timeout: None,
        }
    }

    /// The spec for `inventory_name` from its (templated) variables.
    pub fn from_vars(inventory_name: &str, vars: &Map<String, Value>) -> Result<Self> {
        let get = |k: &str| vars.get(k).and_then(to_string);
        let mut spec =
            ConnectionSpec::new(&get("ansible_host").unwrap_or_else(|| inventory_name.to_owned()));
        spec.kind = match get("ansible_connection").as_deref() {
            None | Some("ssh") | Some("smart") | Some("paramiko") | Some("russh") => {
                ConnectionKind::Ssh
            }
            Some("local") => ConnectionKind::Local,
            Some(other) => {
                bail!("{inventory_name}: unsupported ansible_connection '{other}' (ssh or local)")
            }
        };
        if let Some(p) = get("ansible_port").or_else(|| get("ansible_ssh_port")) {
            spec.port = p.parse().map_err(|_| {
                anyhow::anyhow!("{inventory_name}: ansible_port '{p}' is not a port")
            })?;
        }
        if let Some(u) = get("ansible_user").or_else(|| get("ansible_ssh_user")) {
            spec.user = u;
        }
        spec.password = get("ansible_password").or_else(|| get("ansible_ssh_pass"));
        if let Some(k) =
            get("ansible_ssh_private_key_file").or_else(|| get("ansible_private_key_file"))
        {
            let path = match k.strip_prefix("~/") {
                Some(rest) => home().join(rest),
                None => PathBuf::from(k),
            };
            spec.private_key_files.insert(0, path);
        }
        spec.key_passphrase = get("ansible_ssh_private_key_passphrase");
        if let Some(t) = get("ansible_timeout").or_else(|| get("ansible_ssh_timeout")) {
            if let Ok(secs) = t.parse::<u64>() {
                spec.connect_timeout = Duration::from_secs(secs);
            }
        }
        let common = [
            get("ansible_ssh_common_args"),
            get("ansible_ssh_extra_args"),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        spec.apply_ssh_args(&common)?;
        Ok(spec)
    }

    /// Understands the OpenSSH options duststack honours: `-J`/`ProxyJump`, `UserKnownHostsFile`,
    /// `StrictHostKeyChecking=accept-new`, `-i`, `-p`, `ConnectTimeout`.
    fn apply_ssh_args(&mut self, args: &str) -> Result<()> {
        let words = shlex::split(args).unwrap_or_default();
        let mut i = 0;
        let mut options = Vec::new();
        while i < words.len() {
            let w = &words[i];
            let next = words.get(i + 1).cloned();
            match w.as_str() {
                "-o" => {
                    options.extend(next);
                    i += 2;
                    continue;
                }
                "-J" => {
                    if let Some(j) = next {
                        options.push(format!("ProxyJump={j}"));
                    }
                    i += 2;
                    continue;
                }
                "-i" => {
                    if let Some(k) = next {
                        self.private_key_files.insert(0, PathBuf::from(k));
                    }
                    i += 2;
                    continue;
                }
                _ if w.starts_with("-o") => options.push(w[2..].to_owned()),
                _ => {}
            }
            i += 1;
        }
        for opt in options {
            let (k, v) = opt
                .split_once('=')
                .or_else(|| opt.split_once(' '))
                .unwrap_or((&opt, ""));
            match k.to_ascii_lowercase().as_str() {
                "proxyjump" if !v.is_empty() && v != "none" => {
                    self.proxy_jump = Some(Box::new(self.jump_spec(v)?))
                }
                "userknownhostsfile" => self.known_hosts = PathBuf::from(v),
                "stricthostkeychecking" => {
                    self.accept_new_host_keys = v == "accept-new" || v == "no"
                }
                "connecttimeout" => {
                    if let Ok(s) = v.parse() {
                        self.connect_timeout = Duration::from_secs(s);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A bastion spec from `[user@]host[:port]`, sharing keys and known_hosts with this one.
    fn jump_spec(&self, text: &str) -> Result<ConnectionSpec> {
        let first = text.split(',').next().unwrap_or(text);
        let (user, rest) = match first.split_once('@') {
            Some((u, r)) => (Some(u.to_owned()), r),
            None => (None, first),
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.starts_with('[') => {
                (h.trim_matches(['[', ']']).to_owned(), p.parse()?)
            }
            _ => (rest.to_owned(), 22),
        };
        let mut j = self.clone();
        j.host = host;
        j.port = port;
        j.proxy_jump = None;
        if let Some(u) = user {
            j.user = u;
        }
        Ok(j)
    }
}

/// Opens a connection as `spec` says.
pub async fn connect(spec: &ConnectionSpec) -> Result<Arc<dyn Connection>, ConnError> {
    match spec.kind {
        ConnectionKind::Local => Ok(Arc::new(LocalConnection::new(spec.command_timeout))),
        ConnectionKind::Ssh => Ok(Arc::new(ssh::SshConnection::connect(spec).await?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_inventory_vars() {
        let vars = json!({"ansible_host": "10.0.0.5", "ansible_port": 2222, "ansible_user": "admin",
            "ansible_ssh_common_args": "-o ProxyJump=jump@bastion:2200 -o UserKnownHostsFile=/tmp/kh"});
        let s = ConnectionSpec::from_vars("web1", vars.as_object().unwrap()).unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.user.as_str()),
            ("10.0.0.5", 2222, "admin")
        );
        assert_eq!(s.known_hosts, PathBuf::from("/tmp/kh"));
        let j = s.proxy_jump.unwrap();
        assert_eq!(
            (j.host.as_str(), j.port, j.user.as_str()),
            ("bastion", 2200, "jump")
        );
    }

    #[test]
    fn local_and_bad_kinds() {
        let local = json!({"ansible_connection": "local"});
        assert_eq!(
            ConnectionSpec::from_vars("x", local.as_object().unwrap())
                .unwrap()
                .kind,
            ConnectionKind::Local
        );
        let bad = json!({"ansible_connection": "winrm"});
        assert!(ConnectionSpec::from_vars("x", bad.as_object().unwrap()).is_err());
    }
}
