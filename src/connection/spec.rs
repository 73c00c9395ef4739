//! How to reach one host: [`ConnectionSpec`] built from Ansible connection variables, and [`connect`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{Map, Value};

use super::{ConnError, Connection};

/// Transport used for a host (`ansible_connection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionKind {
    /// SSH (`ssh`, `paramiko`, `smart`).
    Ssh,
    /// Commands run on the control machine (`local`).
    Local,
}

/// Everything needed to open a connection to one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSpec {
    /// Transport.
    pub kind: ConnectionKind,
    /// Address or name to connect to (`ansible_host`, default: the inventory name).
    pub host: String,
    /// TCP port (`ansible_port`, default 22).
    pub port: u16,
    /// Remote user (`ansible_user`, default: the current user).
    pub user: String,
    /// Password (`ansible_password` / `ansible_ssh_pass`).
    pub password: Option<String>,
    /// Private keys to try, in order (`ansible_ssh_private_key_file`, else the default files that exist).
    pub private_key_files: Vec<PathBuf>,
    /// Passphrase for encrypted private keys (`ansible_ssh_private_key_passphrase`).
    pub key_passphrase: Option<String>,
    /// known_hosts file used for host-key checking (default `~/.ssh/known_hosts`).
    pub known_hosts: PathBuf,
    /// Record unknown host keys instead of refusing them (mismatches are always refused).
    pub accept_new_host_keys: bool,
    /// Bastion to tunnel through (`-o ProxyJump=…` / `-J …` in `ansible_ssh_common_args`).
    pub proxy_jump: Option<Box<ConnectionSpec>>,
    /// Limit for TCP connect + handshake + authentication (default 10 s).
    pub connect_timeout: Duration,
    /// Limit for each command, if any.
    pub command_timeout: Option<Duration>,
}

/// A variable's value as a string (numbers and booleans are rendered; null is absent).
fn var_str(vars: &Map<String, Value>, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| match vars.get(*n)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    })
}

/// Ansible-style truthiness of a string (`yes`, `true`, `on`, `1`).
fn truthy(s: &str) -> bool {
    matches!(
        s.trim().to_ascii_lowercase().as_str(),
        "yes" | "true" | "on" | "1" | "y"
    )
}

/// The current user's name (`$USER`, else the passwd entry of the effective uid).
pub fn current_user() -> String {
    if let Ok(u) = std::env::var("USER") {
        if !u.is_empty() {
            return u;
        }
    }
    // SAFETY: getpwuid returns a pointer into static storage or null; we copy the name at once.
    unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if !pw.is_null() && !(*pw).pw_name.is_null() {
            return std::ffi::CStr::from_ptr((*pw).pw_name)
                .to_string_lossy()
                .into_owned();
        }
    }
    "root".to_string()
}

/// The home directory (`$HOME`, else `/root`).
fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

/// Expands a leading `~/`.
pub fn expand_tilde(p: &str) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => home().join(rest),
        None if p == "~" => home(),
        None => PathBuf::from(p),
    }
}

/// The default identity files that exist (`~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`).
fn default_keys() -> Vec<PathBuf> {
    ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|n| home().join(".ssh").join(n))
        .filter(|p| p.is_file())
        .collect()
}

/// Parses a port number from a variable value.
fn parse_port(s: &str, what: &str) -> anyhow::Result<u16> {
    s.trim()
        .parse::<u16>()
        .with_context(|| format!("{what}: invalid port {s:?}"))
}

/// Settings found in `ansible_ssh_common_args` / `ansible_ssh_extra_args`.
#[derive(Default)]
struct SshArgs {
    jump: Option<String>,
    known_hosts: Option<PathBuf>,
    strict: Option<String>,
    connect_timeout: Option<Duration>,
    identity: Vec<PathBuf>,
    port: Option<u16>,
    user: Option<String>,
}

/// Parses the OpenSSH command-line options we honour; others are ignored.
fn parse_ssh_args(args: &str) -> anyhow::Result<SshArgs> {
    let words = shlex::split(args).with_context(|| format!("cannot split ssh args {args:?}"))?;
    let mut out = SshArgs::default();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let (flag, inline) = if w.len() > 2 && w.starts_with('-') && !w.starts_with("--") {
            (w[..2].to_string(), Some(w[2..].to_string()))
        } else {
            (w.clone(), None)
        };
        let mut value = |name: &str| -> anyhow::Result<String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it
                    .next()
                    .with_context(|| format!("ssh option {name} needs a value")),
            }
        };
        match flag.as_str() {
            "-o" => {
                let opt = value("-o")?;
                let (k, v) = opt
                    .split_once('=')
                    .or_else(|| opt.split_once(' '))
                    .with_context(|| format!("ssh option -o {opt:?} has no value"))?;
                let v = v.trim().to_string();
                match k.trim().to_ascii_lowercase().as_str() {
                    "proxyjump" if !v.eq_ignore_ascii_case("none") => out.jump = Some(v),
                    "userknownhostsfile" => {
                        let first = v.split_whitespace().next().unwrap_or_default();
                        out.known_hosts = Some(expand_tilde(first));
                    }
                    "stricthostkeychecking" => out.strict = Some(v.to_ascii_lowercase()),
                    "connecttimeout" => {
                        let secs: u64 = v.parse().with_context(|| format!("ConnectTimeout={v}"))?;
                        out.connect_timeout = Some(Duration::from_secs(secs));
                    }
                    "identityfile" => out.identity.push(expand_tilde(&v)),
                    "port" => out.port = Some(parse_port(&v, "Port")?),
                    "user" => out.user = Some(v),
                    _ => {}
                }
            }
            "-J" => out.jump = Some(value("-J")?),
            "-i" => out.identity.push(expand_tilde(&value("-i")?)),
            "-p" => out.port = Some(parse_port(&value("-p")?, "-p")?),
            "-l" => out.user = Some(value("-l")?),
            // Options that take a value we do not use: skip the value.
            "-F" | "-b" | "-c" | "-D" | "-E" | "-e" | "-L" | "-m" | "-O" | "-Q" | "-R" | "-S"
            | "-W" | "-w" | "-B" | "-I"
                if inline.is_none() =>
            {
                it.next();
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Parses one ProxyJump hop: `[user@]host[:port]` or `ssh://[user@]host[:port]`, IPv6 in brackets.
fn parse_hop(hop: &str) -> anyhow::Result<(Option<String>, String, Option<u16>)> {
    let hop = hop.trim();
    let hop = hop.strip_prefix("ssh://").unwrap_or(hop);
    let (user, rest) = match hop.rsplit_once('@') {
        Some((u, r)) => (Some(u.to_string()), r),
        None => (None, hop),
    };
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (h, after) = inner
            .split_once(']')
            .with_context(|| format!("bad jump host {hop:?}"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(parse_port(p, "ProxyJump")?),
            None => None,
        };
        (h.to_string(), port)
    } else if let Some((h, p)) = rest.rsplit_once(':') {
        (h.to_string(), Some(parse_port(p, "ProxyJump")?))
    } else {
        (rest.to_string(), None)
    };
    if host.is_empty() {
        bail!("bad jump host {hop:?}");
    }
    Ok((user, host, port))
}

impl ConnectionSpec {
    /// Builds the spec of host `inventory_name` from its variables (`ansible_host`, `ansible_port`,
    /// `ansible_user`, `ansible_password`, `ansible_ssh_private_key_file`, `ansible_ssh_common_args`,
    /// `ansible_ssh_extra_args`, `ansible_connection`, `ansible_host_key_checking`, `ansible_ssh_timeout`).
    pub fn from_vars(inventory_name: &str, vars: &Map<String, Value>) -> anyhow::Result<Self> {
        let kind = match var_str(vars, &["ansible_connection"]).as_deref() {
            None | Some("ssh") | Some("smart") | Some("paramiko") | Some("paramiko_ssh") => {
                ConnectionKind::Ssh
            }
            Some("local") => ConnectionKind::Local,
            Some(other) => bail!("{inventory_name}: unsupported ansible_connection {other:?}"),
        };
        let mut args = SshArgs::default();
        for name in ["ansible_ssh_common_args", "ansible_ssh_extra_args"] {
            if let Some(a) = var_str(vars, &[name]) {
                let parsed =
                    parse_ssh_args(&a).with_context(|| format!("{inventory_name}: {name}"))?;
                args.jump = parsed.jump.or(args.jump);
                args.known_hosts = parsed.known_hosts.or(args.known_hosts);
                args.strict = parsed.strict.or(args.strict);
                args.connect_timeout = parsed.connect_timeout.or(args.connect_timeout);
                args.identity.extend(parsed.identity);
                args.port = parsed.port.or(args.port);
                args.user = parsed.user.or(args.user);
            }
        }
        let host = var_str(vars, &["ansible_host", "ansible_ssh_host"])
            .unwrap_or_else(|| inventory_name.to_string());
        let port = match var_str(vars, &["ansible_port", "ansible_ssh_port"]) {
            Some(p) => parse_port(&p, &format!("{inventory_name}: ansible_port"))?,
            None => args.port.unwrap_or(22),
        };
        let user = var_str(vars, &["ansible_user", "ansible_ssh_user"])
            .or(args.user)
            .unwrap_or_else(current_user);
        let password = var_str(
            vars,
            &[
                "ansible_password",
                "ansible_ssh_pass",
                "ansible_ssh_password",
            ],
        );
        let mut private_key_files: Vec<PathBuf> = var_str(
            vars,
            &["ansible_ssh_private_key_file", "ansible_private_key_file"],
        )
        .map(|p| vec![expand_tilde(&p)])
        .unwrap_or_default();
        private_key_files.extend(args.identity);
        if private_key_files.is_empty() {
            private_key_files = default_keys();
        }
        let key_passphrase = var_str(vars, &["ansible_ssh_private_key_passphrase"]);
        let known_hosts = args
            .known_hosts
            .unwrap_or_else(|| home().join(".ssh").join("known_hosts"));
        let mut accept_new_host_keys =
            matches!(args.strict.as_deref(), Some("no" | "accept-new" | "off"));
        if let Some(v) = var_str(
            vars,
            &["ansible_host_key_checking", "ansible_ssh_host_key_checking"],
        ) {
            accept_new_host_keys = !truthy(&v);
        }
        let connect_timeout = match var_str(vars, &["ansible_ssh_timeout", "ansible_timeout"]) {
            Some(t) => Duration::from_secs(
                t.trim()
                    .parse()
                    .with_context(|| format!("{inventory_name}: bad timeout {t:?}"))?,
            ),
            None => args.connect_timeout.unwrap_or(Duration::from_secs(10)),
        };
        let mut spec = ConnectionSpec {
            kind,
            host,
            port,
            user,
            password,
            private_key_files,
            key_passphrase,
            known_hosts,
            accept_new_host_keys,
            proxy_jump: None,
            connect_timeout,
            command_timeout: None,
        };
        if let Some(jump) = args.jump {
            spec.proxy_jump = spec
                .jump_chain(&jump)
                .with_context(|| format!("{inventory_name}: ProxyJump"))?;
        }
        Ok(spec)
    }

    /// Builds the bastion chain of `jump` (`a,b` = through `a`, then `b`); hops inherit this host's
    /// keys, known_hosts, host-key policy and connect timeout, but not its password.
    fn jump_chain(&self, jump: &str) -> anyhow::Result<Option<Box<ConnectionSpec>>> {
        let mut outer: Option<Box<ConnectionSpec>> = None;
        for hop in jump.split(',').filter(|h| !h.trim().is_empty()) {
            let (user, host, port) = parse_hop(hop)?;
            outer = Some(Box::new(ConnectionSpec {
                kind: ConnectionKind::Ssh,
                host,
                port: port.unwrap_or(22),
                user: user.unwrap_or_else(current_user),
                password: None,
                private_key_files: self.private_key_files.clone(),
                key_passphrase: self.key_passphrase.clone(),
                known_hosts: self.known_hosts.clone(),
                accept_new_host_keys: self.accept_new_host_keys,
                proxy_jump: outer,
                connect_timeout: self.connect_timeout,
                command_timeout: None,
            }));
        }
        Ok(outer)
    }

    /// A local-connection spec (for `localhost` and tests).
    pub fn local() -> Self {
        ConnectionSpec {
            kind: ConnectionKind::Local,
            host: "localhost".into(),
            port: 22,
            user: current_user(),
            password: None,
            private_key_files: Vec::new(),
            key_passphrase: None,
            known_hosts: home().join(".ssh").join("known_hosts"),
            accept_new_host_keys: false,
            proxy_jump: None,
            connect_timeout: Duration::from_secs(10),
            command_timeout: None,
        }
    }

    /// An SSH spec for `user@host:port` with the given key file, strict host keys from `known_hosts`.
    pub fn ssh(host: &str, port: u16, user: &str, key: Option<&Path>, known_hosts: &Path) -> Self {
        ConnectionSpec {
            kind: ConnectionKind::Ssh,
            host: host.into(),
            port,
            user: user.into(),
            password: None,
            private_key_files: key.map(|k| vec![k.to_path_buf()]).unwrap_or_default(),
            key_passphrase: None,
            known_hosts: known_hosts.to_path_buf(),
            accept_new_host_keys: false,
            proxy_jump: None,
            connect_timeout: Duration::from_secs(10),
            command_timeout: None,
        }
    }

    /// `user@host:port`, for messages.
    pub fn label(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }
}

/// Opens a connection as described by `spec`.
pub async fn connect(spec: &ConnectionSpec) -> Result<Arc<dyn Connection>, ConnError> {
    match spec.kind {
        ConnectionKind::Local => Ok(Arc::new(super::local::LocalConnection::new(
            spec.command_timeout,
        ))),
        ConnectionKind::Ssh => Ok(Arc::new(super::ssh::SshConnection::connect(spec).await?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn defaults_and_basic_vars() {
        let s = ConnectionSpec::from_vars(
            "web1",
            &vars(
                json!({"ansible_port": 2222, "ansible_user": "deploy", "ansible_ssh_pass": "pw",
                         "ansible_ssh_private_key_file": "/k/id"}),
            ),
        )
        .unwrap();
        assert_eq!(s.kind, ConnectionKind::Ssh);
        assert_eq!(
            (s.host.as_str(), s.port, s.user.as_str()),
            ("web1", 2222, "deploy")
        );
        assert_eq!(s.password.as_deref(), Some("pw"));
        assert_eq!(s.private_key_files, vec![PathBuf::from("/k/id")]);
        assert!(!s.accept_new_host_keys);
        assert_eq!(s.connect_timeout, Duration::from_secs(10));
        assert!(s.proxy_jump.is_none());
    }

    #[test]
    fn local_and_unknown_connection() {
        let s =
            ConnectionSpec::from_vars("l", &vars(json!({"ansible_connection": "local"}))).unwrap();
        assert_eq!(s.kind, ConnectionKind::Local);
        let e = ConnectionSpec::from_vars("l", &vars(json!({"ansible_connection": "winrm"})))
            .unwrap_err();
        assert!(e.to_string().contains("winrm"), "{e}");
    }

    #[test]
    fn common_args_jump_known_hosts_strict() {
        let s = ConnectionSpec::from_vars(
            "db",
            &vars(json!({"ansible_host": "10.0.0.5", "ansible_ssh_private_key_file": "/k",
                "ansible_ssh_common_args":
                "-o ProxyJump=ops@bastion1:2200,[fe80::1]:23 -o UserKnownHostsFile=/tmp/kh -oStrictHostKeyChecking=accept-new -o ConnectTimeout=3"})),
        )
        .unwrap();
        assert_eq!(s.known_hosts, PathBuf::from("/tmp/kh"));
        assert!(s.accept_new_host_keys);
        assert_eq!(s.connect_timeout, Duration::from_secs(3));
        let last = s.proxy_jump.as_ref().unwrap();
        assert_eq!((last.host.as_str(), last.port), ("fe80::1", 23));
        let first = last.proxy_jump.as_ref().unwrap();
        assert_eq!(
            (first.user.as_str(), first.host.as_str(), first.port),
            ("ops", "bastion1", 2200)
        );
        assert_eq!(first.private_key_files, vec![PathBuf::from("/k")]);
        assert!(first.proxy_jump.is_none());

        let j =
            ConnectionSpec::from_vars("x", &vars(json!({"ansible_ssh_common_args": "-J root@b"})))
                .unwrap();
        assert_eq!(j.proxy_jump.unwrap().host, "b");
        let k = ConnectionSpec::from_vars("x", &vars(json!({"ansible_host_key_checking": false})))
            .unwrap();
        assert!(k.accept_new_host_keys);
    }
}
