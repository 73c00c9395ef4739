//! Hyper-V settings the lab model does not carry: switches, the Windows directory for disks
//! and seeds, the parent VHDX, how to reach the Hyper-V host, and how long to wait; read from
//! the inventory's `hyperv_*` variables with clear validation errors.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::connection::ConnectionSpec;
use crate::lab::model::{Lab, LabError, Node};

/// How VMs reach the outside world (nic1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatSwitch {
    /// Use a switch that already exists (e.g. Hyper-V's `Default Switch`); never removed.
    Existing(String),
    /// Create (if missing) an External switch bound to a host network adapter.
    External {
        /// Switch name.
        name: String,
        /// Host adapter name (`Get-NetAdapter`), e.g. `Ethernet`.
        net_adapter: String,
    },
}

impl NatSwitch {
    /// The switch name.
    pub fn name(&self) -> &str {
        match self {
            NatSwitch::Existing(name) => name,
            NatSwitch::External { name, .. } => name,
        }
    }
}

/// Hyper-V specifics that the inventory's lab variables do not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HyperVOptions {
    /// Switch for nic1.
    pub nat_switch: NatSwitch,
    /// Internal switch for nic2 (created if missing).
    pub internal_switch: String,
    /// Windows directory for the VMs' disks, seed ISOs and uploaded scripts.
    pub vm_dir: String,
    /// The base image as VHDX (parent of every differencing disk); must exist on the host.
    pub parent_vhdx: String,
    /// How to reach the Hyper-V host over SSH (`hyperv_host`); `None` = run locally (Windows only).
    pub ssh: Option<ConnectionSpec>,
    /// How long `up` waits for every VM to report its address (`hyperv_wait_timeout`, seconds).
    pub wait_timeout: Duration,
    /// Pause between two address polls (`hyperv_poll_interval`, seconds).
    pub poll_interval: Duration,
}

/// The default Windows user on the Hyper-V host (`hyperv_user`).
pub const DEFAULT_USER: &str = "Administrator";
/// The default NAT switch (`hyperv_switch`): the one Hyper-V creates itself.
pub const DEFAULT_SWITCH: &str = "Default Switch";

impl HyperVOptions {
    /// Defaults: `Default Switch` for NAT, the lab's nic2 name for the internal switch,
    /// `C:\ProgramData\duststack\<lab>` for disks, `base.vhdx` in it as parent, local execution,
    /// 600 s address wait polled every 5 s.
    pub fn defaults(lab: &Lab) -> HyperVOptions {
        let vm_dir = format!("C:\\ProgramData\\duststack\\{}", lab.name);
        HyperVOptions {
            nat_switch: NatSwitch::Existing(DEFAULT_SWITCH.into()),
            internal_switch: lab
                .networks
                .get(1)
                .map(|n| n.name.clone())
                .unwrap_or_else(|| "internal".into()),
            parent_vhdx: format!("{vm_dir}\\base.vhdx"),
            vm_dir,
            ssh: None,
            wait_timeout: Duration::from_secs(600),
            poll_interval: Duration::from_secs(5),
        }
    }

    /// Whether the inventory asks for Hyper-V: `lab_provider: hyperv`, or `hyperv_host` set
    /// without another `lab_provider`.
    pub fn wanted(vars: &Map<String, Value>) -> bool {
        match vars.get("lab_provider").and_then(Value::as_str) {
            Some(p) => p.eq_ignore_ascii_case("hyperv") || p.eq_ignore_ascii_case("hyper-v"),
            None => vars.get("hyperv_host").is_some_and(|v| !v.is_null()),
        }
    }

    /// Reads `hyperv_host`, `hyperv_user` (default `Administrator`), `hyperv_port`,
    /// `hyperv_ssh_private_key_file`, `hyperv_ssh_common_args`, `hyperv_vm_dir`,
    /// `hyperv_switch` (an existing NAT switch, default `Default Switch`),
    /// `hyperv_external_adapter` (create an External switch on that adapter instead; named
    /// `hyperv_switch` or `<lab>-external`), `hyperv_internal_switch`, `hyperv_parent_vhdx`,
    /// `hyperv_wait_timeout` and `hyperv_poll_interval` (seconds) from the lab's vars.
    pub fn from_vars(lab: &Lab, vars: &Map<String, Value>) -> Result<HyperVOptions, LabError> {
        let mut opts = HyperVOptions::defaults(lab);
        if let Some(dir) = text(vars, "hyperv_vm_dir")? {
            check_windows_path("hyperv_vm_dir", &dir)?;
            opts.parent_vhdx = format!("{}\\base.vhdx", dir.trim_end_matches('\\'));
            opts.vm_dir = dir;
        }
        if let Some(parent) = text(vars, "hyperv_parent_vhdx")? {
            check_windows_path("hyperv_parent_vhdx", &parent)?;
            let lower = parent.to_ascii_lowercase();
            if !(lower.ends_with(".vhdx") || lower.ends_with(".vhd")) {
                return Err(bad(
                    "hyperv_parent_vhdx",
                    &parent,
                    "a .vhdx (or .vhd) file on the Hyper-V host: convert the base image with `qemu-img convert -O vhdx`",
                ));
            }
            opts.parent_vhdx = parent;
        }
        let switch = text(vars, "hyperv_switch")?;
        if let Some(s) = &switch {
            check_switch_name("hyperv_switch", s)?;
        }
        opts.nat_switch = match text(vars, "hyperv_external_adapter")? {
            Some(adapter) => {
                check_switch_name("hyperv_external_adapter", &adapter)?;
                NatSwitch::External {
                    name: switch.unwrap_or_else(|| format!("{}-external", lab.name)),
                    net_adapter: adapter,
                }
            }
            None => NatSwitch::Existing(switch.unwrap_or_else(|| DEFAULT_SWITCH.into())),
        };
        if let Some(s) = text(vars, "hyperv_internal_switch")? {
            check_switch_name("hyperv_internal_switch", &s)?;
            opts.internal_switch = s;
        }
        if opts.internal_switch == opts.nat_switch.name() {
            return Err(bad(
                "hyperv_internal_switch",
                &opts.internal_switch,
                "the internal switch must differ from the NAT switch (hyperv_switch)",
            ));
        }
        if let Some(secs) = seconds(vars, "hyperv_wait_timeout")? {
            opts.wait_timeout = secs;
        }
        if let Some(secs) = seconds(vars, "hyperv_poll_interval")? {
            opts.poll_interval = secs;
        }

        let user = text(vars, "hyperv_user")?;
        let port = text(vars, "hyperv_port")?;
        let key = text(vars, "hyperv_ssh_private_key_file")?;
        let args = text(vars, "hyperv_ssh_common_args")?;
        opts.ssh = match text(vars, "hyperv_host")? {
            None => {
                if let Some((var, _)) = [("hyperv_user", &user), ("hyperv_port", &port)]
                    .into_iter()
                    .find(|(_, v)| v.is_some())
                {
                    return Err(LabError::Missing {
                        var: "hyperv_host".into(),
                        hint: format!("{var} is set, but without hyperv_host duststack runs PowerShell locally (Windows only)"),
                    });
                }
                None
            }
            Some(host) => {
                if host.chars().any(|c| c.is_whitespace() || c.is_control()) || host.contains('@') {
                    return Err(bad(
                        "hyperv_host",
                        &host,
                        "a host name or address (put the user in hyperv_user)",
                    ));
                }
                let mut conn = Map::new();
                conn.insert("ansible_host".into(), Value::String(host.clone()));
                conn.insert(
                    "ansible_user".into(),
                    Value::String(user.unwrap_or_else(|| DEFAULT_USER.into())),
                );
                if let Some(p) = port {
                    conn.insert("ansible_port".into(), Value::String(p));
                }
                if let Some(k) = key {
                    conn.insert("ansible_ssh_private_key_file".into(), Value::String(k));
                }
                if let Some(a) = args {
                    conn.insert("ansible_ssh_common_args".into(), Value::String(a));
                }
                let spec = ConnectionSpec::from_vars(&host, &conn)
                    .map_err(|e| bad("hyperv_host", &host, &format!("{e:#}")))?;
                Some(spec)
            }
        };
        Ok(opts)
    }

    /// Path of a node's differencing disk.
    pub fn vhd_path(&self, lab: &Lab, node: &Node) -> String {
        self.file(&format!("{}.vhdx", lab.domain_name(node)))
    }

    /// Path of a node's seed ISO.
    pub fn seed_path(&self, lab: &Lab, node: &Node) -> String {
        self.file(&format!("{}-seed.iso", lab.domain_name(node)))
    }

    /// Path where a script too long for one command line is uploaded (`.duststack-<kind>.ps1`).
    pub fn script_path(&self, kind: &str) -> String {
        self.file(&format!(".duststack-{kind}.ps1"))
    }

    /// `name` inside `vm_dir`.
    fn file(&self, name: &str) -> String {
        format!("{}\\{name}", self.vm_dir.trim_end_matches('\\'))
    }
}

fn bad(var: &str, value: &str, expected: &str) -> LabError {
    LabError::BadValue {
        scope: "lab".into(),
        var: var.into(),
        value: value.into(),
        expected: expected.into(),
    }
}

/// A string variable (numbers are rendered); empty strings count as unset.
fn text(vars: &Map<String, Value>, var: &str) -> Result<Option<String>, LabError> {
    match vars.get(var) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(bad(var, &other.to_string(), "a string")),
    }
}

fn seconds(vars: &Map<String, Value>, var: &str) -> Result<Option<Duration>, LabError> {
    let Some(t) = text(vars, var)? else {
        return Ok(None);
    };
    match t.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => Ok(Some(Duration::from_secs_f64(s))),
        _ => Err(bad(var, &t, "a number of seconds between 0 and 86400")),
    }
}

/// An absolute Windows path (`C:\...` or `\\server\share\...`) without the characters that
/// cmd.exe or PowerShell would expand on the `powershell -File "<path>"` command line.
fn check_windows_path(var: &str, path: &str) -> Result<(), LabError> {
    let b = path.as_bytes();
    let drive = b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\';
    let unc = path.starts_with("\\\\") && path.len() > 2;
    if !(drive || unc) {
        return Err(bad(
            var,
            path,
            "an absolute Windows path like C:\\ProgramData\\duststack\\classroom",
        ));
    }
    if let Some(c) = path.chars().find(|c| {
        c.is_control() || matches!(c, '"' | '%' | '$' | '`' | '/' | '*' | '?' | '<' | '>' | '|')
    }) {
        return Err(bad(
            var,
            path,
            &format!("a Windows path without {c:?} (it would be expanded on the PowerShell command line or is not allowed in file names)"),
        ));
    }
    Ok(())
}

/// A switch or adapter name: printable, at most 100 characters.
fn check_switch_name(var: &str, name: &str) -> Result<(), LabError> {
    if name.len() > 100 || name.chars().any(char::is_control) {
        return Err(bad(
            var,
            name,
            "a Hyper-V switch or adapter name (printable, at most 100 characters)",
        ));
    }
    Ok(())
}
