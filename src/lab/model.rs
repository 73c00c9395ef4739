//! The lab model: which VMs, networks and images a lab consists of, built and validated
//! from an inventory (the seed's classroom variables, plus simpler aliases).

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::inventory::Inventory;

/// The role a lab node plays in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Listed in `k8s_master_nodes` (or group `k8s_master`).
    ControlPlane,
    /// Listed in `k8s_nodes` (or group `k8s_node`).
    Worker,
    /// Listed in `k8s_utility_nodes` (or group `k8s_utility`).
    Utility,
}

impl Role {
    /// Stable lower-case name (`control-plane`, `worker`, `utility`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ControlPlane => "control-plane",
            Role::Worker => "worker",
            Role::Utility => "utility",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The hypervisor flavour (`virt_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtType {
    /// Hardware virtualisation through /dev/kvm.
    Kvm,
    /// Plain QEMU (TCG emulation), for hosts without usable KVM.
    Qemu,
}

impl VirtType {
    /// The libvirt domain type (`kvm` or `qemu`).
    pub fn as_str(self) -> &'static str {
        match self {
            VirtType::Kvm => "kvm",
            VirtType::Qemu => "qemu",
        }
    }
}

/// What a lab network provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkKind {
    /// NAT to the outside world (nic1, libvirt's `default`).
    Nat,
    /// Host-only, no forwarding (nic2, `internal`).
    Isolated,
}

/// A reserved address: the DHCP host entry a network hands out to one NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpHost {
    /// MAC address, `52:54:00:xx:xx:xx`.
    pub mac: String,
    /// Address reserved for that MAC.
    pub ip: Ipv4Addr,
    /// Host name given with the lease.
    pub name: String,
}

/// One lab network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// Network name (`nic1`/`nic2`, e.g. `default`, `internal`).
    pub name: String,
    /// NAT or isolated.
    pub kind: NetworkKind,
    /// Network address.
    pub address: Ipv4Addr,
    /// Prefix length (at most 24).
    pub prefix: u8,
    /// First address of the dynamic DHCP range.
    pub dhcp_start: Ipv4Addr,
    /// Last address of the dynamic DHCP range.
    pub dhcp_end: Ipv4Addr,
    /// Reserved addresses, one per node, in node order.
    pub hosts: Vec<DhcpHost>,
}

impl Network {
    /// `address/prefix`, e.g. `192.168.90.0/24`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.address, self.prefix)
    }

    /// The host side address (network + 1), where libvirt puts its bridge and dnsmasq.
    pub fn gateway(&self) -> Ipv4Addr {
        offset(self.address, 1)
    }

    /// The netmask for the prefix, e.g. `255.255.255.0`.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::MAX << (32 - u32::from(self.prefix)))
    }
}

/// One NIC of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// Name of the lab network it is attached to.
    pub network: String,
    /// Deterministic locally administered MAC (`52:54:00:xx:xx:xx`).
    pub mac: String,
    /// The address the node gets on that network (reserved via DHCP on NAT, static on isolated).
    pub ip: Ipv4Addr,
    /// Prefix length of the network.
    pub prefix: u8,
}

/// One VM of the lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Inventory host name.
    pub name: String,
    /// Cluster role.
    pub role: Role,
    /// Guest host name (`nodename`, else the inventory name).
    pub hostname: String,
    /// Virtual CPUs.
    pub vcpu: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// System disk size in GiB.
    pub disk_gib: u64,
    /// System disk format (`qcow2` or `raw`).
    pub disk_format: String,
    /// NICs: `[nic1 (NAT), nic2 (isolated)]`.
    pub nics: [Nic; 2],
    /// 32 hex digits; passed as `systemd.machine_id=` so clones never share a DHCP DUID.
    pub machine_id: String,
}

impl Node {
    /// The NAT NIC (nic1).
    pub fn nat_nic(&self) -> &Nic {
        &self.nics[0]
    }

    /// The isolated NIC (nic2) with the static internal address.
    pub fn internal_nic(&self) -> &Nic {
        &self.nics[1]
    }
}

/// Where the user's SSH public key comes from (`ssh_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshKeySource {
    /// A path to a `.pub` file (read later, `~` not expanded here).
    Path(String),
    /// The key line itself (`ssh-ed25519 AAAA... comment`).
    Literal(String),
}

/// A whole lab: nodes, networks and the images they boot from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lab {
    /// Lab name (`lab_name`, default `classroom`); prefixes domain and volume names.
    pub name: String,
    /// VMs, control planes first, then workers, then utility nodes.
    pub nodes: Vec<Node>,
    /// `[nic1 network (NAT), nic2 network (isolated)]`.
    pub networks: Vec<Network>,
    /// Directory for overlays and seeds (`virt_disk_image_path`).
    pub image_dir: String,
    /// Base image every system disk is an overlay on (`base_image`).
    pub base_image: String,
    /// Format of the base image (`base_image_format`, default `qcow2`).
    pub base_image_format: String,
    /// Kernel for direct kernel boot (`base_kernel`, default beside the base image); empty for a
    /// cloud image that boots through its own bootloader.
    pub kernel: String,
    /// Initrd for direct kernel boot (`base_initrd`, default beside the base image).
    pub initrd: String,
    /// Directory for serial console logs (`virt_log_path`).
    pub log_dir: String,
    /// The user's SSH public key (`ssh_key`).
    pub ssh_public_key: SshKeySource,
    /// `kvm` or `qemu`.
    pub virt_type: VirtType,
}

impl Lab {
    /// The libvirt/Hyper-V VM name of a node: `<lab>-<node>`.
    pub fn domain_name(&self, node: &Node) -> String {
        format!("{}-{}", self.name, node.name)
    }

    /// Path of a node's system disk overlay.
    pub fn overlay_path(&self, node: &Node) -> String {
        format!(
            "{}/{}.{}",
            self.image_dir.trim_end_matches('/'),
            self.domain_name(node),
            node.disk_format
        )
    }

    /// Path of a node's seed image (a FAT volume labelled `CIDATA`, see `seed_image`).
    pub fn seed_path(&self, node: &Node) -> String {
        format!(
            "{}/{}-seed.img",
            self.image_dir.trim_end_matches('/'),
            self.domain_name(node)
        )
    }

    /// Path of a node's serial console log.
    pub fn console_log_path(&self, node: &Node) -> String {
        format!(
            "{}/{}-console.log",
            self.log_dir.trim_end_matches('/'),
            self.domain_name(node)
        )
    }

    /// Moves network `name` to the subnet `address/prefix` (a reused network's real subnet):
    /// every node keeps its host number on it, reservations follow.
    pub fn rebase_network(&mut self, name: &str, address: Ipv4Addr, prefix: u8) {
        let Some(idx) = self.networks.iter().position(|n| n.name == name) else {
            return;
        };
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix.min(32)))
        };
        let base = Ipv4Addr::from(u32::from(address) & mask);
        let old = &self.networks[idx];
        if old.address == base && old.prefix == prefix {
            return;
        }
        let old_base = u32::from(old.address);
        let move_ip = |ip: Ipv4Addr| offset(base, u32::from(ip).wrapping_sub(old_base));
        let net = &mut self.networks[idx];
        net.dhcp_start = move_ip(net.dhcp_start);
        net.dhcp_end = move_ip(net.dhcp_end);
        for host in &mut net.hosts {
            host.ip = move_ip(host.ip);
        }
        net.address = base;
        net.prefix = prefix;
        for node in &mut self.nodes {
            for nic in node.nics.iter_mut().filter(|n| n.network == name) {
                nic.ip = move_ip(nic.ip);
                nic.prefix = prefix;
            }
        }
    }

    /// The node with inventory name `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The network called `name`.
    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }
}

/// Why an inventory does not describe a valid lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The inventory itself could not be read.
    #[error(transparent)]
    Inventory(#[from] anyhow::Error),
    /// A `k8s_*_nodes` entry names no inventory host.
    #[error("{node} is listed in {list} but is not a host in the inventory{}", did_you_mean(.closest))]
    UnknownNode {
        /// The list variable (`k8s_nodes`, ...).
        list: String,
        /// The missing name.
        node: String,
        /// The closest inventory host name, if any is close.
        closest: Option<String>,
    },
    /// A node is listed twice.
    #[error("{node} is listed twice (in {first} and in {second}); each VM needs one role")]
    DuplicateNode {
        /// The node.
        node: String,
        /// Where it was listed first.
        first: String,
        /// Where it was listed again.
        second: String,
    },
    /// Two nodes would get the same guest host name.
    #[error("{first} and {second} both have the host name {hostname}")]
    DuplicateHostname {
        /// The shared host name.
        hostname: String,
        /// First node.
        first: String,
        /// Second node.
        second: String,
    },
    /// A control plane node is too small for Kubernetes.
    #[error("{node} has {vcpu} vCPUs and {memory_mib} MiB: a control plane needs at least 2 vCPUs and 2 GiB (set lab_allow_small_nodes: true for a test lab)")]
    ControlPlaneTooSmall {
        /// The node.
        node: String,
        /// Its vCPUs.
        vcpu: u32,
        /// Its memory in MiB.
        memory_mib: u64,
    },
    /// A variable has a value of the wrong shape.
    #[error("{scope}: {var}={value} is not valid: {expected}")]
    BadValue {
        /// The node or `lab` the value applies to.
        scope: String,
        /// The variable name as found.
        var: String,
        /// The value as written.
        value: String,
        /// What would be accepted.
        expected: String,
    },
    /// `virt_type` is neither `kvm` nor `qemu`.
    #[error("virt_type={0} is not supported: use kvm or qemu (qemu = emulation, for hosts without usable KVM)")]
    UnknownVirtType(String),
    /// A required variable is missing.
    #[error("{var} is not set: {hint}")]
    Missing {
        /// The variable.
        var: String,
        /// How to fix it.
        hint: String,
    },
    /// The inventory names no nodes at all.
    #[error("the inventory defines no lab nodes: set k8s_master_nodes/k8s_nodes/k8s_utility_nodes or fill the groups k8s_master/k8s_node/k8s_utility")]
    NoNodes,
}

fn did_you_mean(closest: &Option<String>) -> String {
    match closest {
        Some(c) => format!(" (did you mean {c}?)"),
        None => String::new(),
    }
}

/// The list variables and fallback groups, by role.
const ROLE_SOURCES: [(Role, &str, &str); 3] = [
    (Role::ControlPlane, "k8s_master_nodes", "k8s_master"),
    (Role::Worker, "k8s_nodes", "k8s_node"),
    (Role::Utility, "k8s_utility_nodes", "k8s_utility"),
];

const DEFAULT_NAT_CIDR: &str = "192.168.122.0/24";
const DEFAULT_INTERNAL_CIDR: &str = "192.168.90.0/24";
/// Node `i` gets host number `FIRST_HOST + i` on each network.
const FIRST_HOST: u32 = 10;
/// Dynamic DHCP leases start at this host number.
const DHCP_FIRST: u32 = 128;

impl Lab {
    /// Builds and validates the lab an inventory describes.
    ///
    /// Lab-wide settings come from the vars of group `all`; sizes (`vcpu`/`vcpus`,
    /// `vmem`/`memory`, `virt_disk_size`, `virt_disk_format`) and `nodename` per host.
    pub fn from_inventory(inv: &Inventory) -> Result<Lab, LabError> {
        let all = inv.group_vars("all")?;
        let name = string_var(&all, "lab", &["lab_name"])?.unwrap_or_else(|| "classroom".into());
        check_name("lab", "lab_name", &name)?;

        let members = role_members(inv, &all)?;
        if members.is_empty() {
            return Err(LabError::NoNodes);
        }

        let virt_type = match string_var(&all, "lab", &["virt_type"])?.as_deref() {
            None | Some("kvm") => VirtType::Kvm,
            Some("qemu") => VirtType::Qemu,
            Some(other) => return Err(LabError::UnknownVirtType(other.to_string())),
        };
        let image_dir = string_var(&all, "lab", &["virt_disk_image_path", "image_dir"])?
            .unwrap_or_else(|| "/var/lib/libvirt/images".into());
        let base_image = string_var(&all, "lab", &["base_image"])?.ok_or_else(|| LabError::Missing {
            var: "base_image".into(),
            hint: "set it to the disk `duststack image build` made (e.g. /var/lib/duststack/images/debian-12.qcow2)".into(),
        })?;
        let stem = base_image
            .rsplit_once('.')
            .filter(|(stem, _)| !stem.ends_with('/') && !stem.is_empty())
            .map(|(stem, _)| stem.to_string())
            .unwrap_or_else(|| base_image.clone());
        let kernel =
            string_var(&all, "lab", &["base_kernel"])?.unwrap_or(format!("{stem}.vmlinuz"));
        let initrd = string_var(&all, "lab", &["base_initrd"])?.unwrap_or(format!("{stem}.initrd"));
        let base_image_format =
            string_var(&all, "lab", &["base_image_format"])?.unwrap_or_else(|| "qcow2".into());
        check_format("lab", "base_image_format", &base_image_format)?;
        let log_dir = string_var(&all, "lab", &["virt_log_path"])?
            .unwrap_or_else(|| "/var/log/libvirt/qemu".into());
        let ssh_key =
            string_var(&all, "lab", &["ssh_key", "ssh_public_key"])?.ok_or_else(|| {
                LabError::Missing {
                    var: "ssh_key".into(),
                    hint: "set it to your public key file (e.g. ~/.ssh/id_ed25519.pub)".into(),
                }
            })?;
        let ssh_public_key = if ssh_key.starts_with("ssh-") || ssh_key.starts_with("ecdsa-") {
            SshKeySource::Literal(ssh_key)
        } else {
            SshKeySource::Path(ssh_key)
        };

        let nic1 = string_var(&all, "lab", &["nic1"])?.unwrap_or_else(|| "default".into());
        let nic2 = string_var(&all, "lab", &["nic2"])?.unwrap_or_else(|| "internal".into());
        check_name("lab", "nic1", &nic1)?;
        check_name("lab", "nic2", &nic2)?;
        if nic1 == nic2 {
            return Err(bad(
                "lab",
                "nic2",
                &nic2,
                "nic1 and nic2 must be two different networks",
            ));
        }
        let nat_cidr =
            string_var(&all, "lab", &["nic1_cidr"])?.unwrap_or_else(|| DEFAULT_NAT_CIDR.into());
        let internal_cidr = string_var(&all, "lab", &["nic2_cidr"])?
            .unwrap_or_else(|| DEFAULT_INTERNAL_CIDR.into());
        let (nat_addr, nat_prefix) = parse_cidr("nic1_cidr", &nat_cidr)?;
        let (int_addr, int_prefix) = parse_cidr("nic2_cidr", &internal_cidr)?;
        if nat_addr == int_addr {
            return Err(bad(
                "lab",
                "nic2_cidr",
                &internal_cidr,
                "nic1 and nic2 need different subnets",
            ));
        }
        if members.len() as u32 > DHCP_FIRST - FIRST_HOST {
            return Err(bad(
                "lab",
                "k8s_*_nodes",
                &members.len().to_string(),
                &format!("at most {} nodes fit in a lab", DHCP_FIRST - FIRST_HOST),
            ));
        }

        // `lab_allow_small_nodes: true` lifts the control-plane minimum (CI and TCG test labs).
        let small_ok = matches!(all.get("lab_allow_small_nodes"), Some(Value::Bool(true)));
        let mut nodes = Vec::new();
        let mut macs: Vec<String> = Vec::new();
        let mut hostnames: HashMap<String, String> = HashMap::new();
        for (i, (node_name, role)) in members.iter().enumerate() {
            let vars = inv.vars_for_host(node_name, None)?;
            let vcpu = match int_var(&vars, node_name, &["vcpu", "vcpus"])? {
                None => 2,
                Some(n) if (1..=1024).contains(&n) => n as u32,
                Some(n) => {
                    return Err(bad(
                        node_name,
                        "vcpu",
                        &n.to_string(),
                        "a count between 1 and 1024",
                    ))
                }
            };
            let memory_mib =
                size_var(&vars, node_name, &["vmem", "memory", "memory_mib"])?.unwrap_or(4096);
            let disk_mib =
                size_var(&vars, node_name, &["virt_disk_size", "disk_size"])?.unwrap_or(20 * 1024);
            if disk_mib % 1024 != 0 || disk_mib == 0 {
                let (var, val) = found(&vars, &["virt_disk_size", "disk_size"]);
                return Err(bad(
                    node_name,
                    &var,
                    &val,
                    "a disk size must be a whole number of GiB, e.g. 20G, 20GiB or 20480M",
                ));
            }
            let disk_format = string_var(&vars, node_name, &["virt_disk_format", "disk_format"])?
                .unwrap_or_else(|| "qcow2".into());
            check_format(node_name, "virt_disk_format", &disk_format)?;
            if *role == Role::ControlPlane && !small_ok && (vcpu < 2 || memory_mib < 2048) {
                return Err(LabError::ControlPlaneTooSmall {
                    node: node_name.clone(),
                    vcpu,
                    memory_mib,
                });
            }
            let hostname =
                string_var(&vars, node_name, &["nodename"])?.unwrap_or_else(|| node_name.clone());
            check_hostname(node_name, &hostname)?;
            if let Some(first) = hostnames.insert(hostname.clone(), node_name.clone()) {
                return Err(LabError::DuplicateHostname {
                    hostname,
                    first,
                    second: node_name.clone(),
                });
            }
            let host = FIRST_HOST + i as u32;
            let nat_mac = unique_mac(&name, node_name, 0, &mut macs);
            let int_mac = unique_mac(&name, node_name, 1, &mut macs);
            nodes.push(Node {
                name: node_name.clone(),
                role: *role,
                hostname,
                vcpu,
                memory_mib,
                disk_gib: disk_mib / 1024,
                disk_format,
                nics: [
                    Nic {
                        network: nic1.clone(),
                        mac: nat_mac,
                        ip: offset(nat_addr, host),
                        prefix: nat_prefix,
                    },
                    Nic {
                        network: nic2.clone(),
                        mac: int_mac,
                        ip: offset(int_addr, host),
                        prefix: int_prefix,
                    },
                ],
                machine_id: machine_id(&name, node_name),
            });
        }

        let networks = [
            (&nic1, NetworkKind::Nat, nat_addr, nat_prefix, 0),
            (&nic2, NetworkKind::Isolated, int_addr, int_prefix, 1),
        ]
        .into_iter()
        .map(|(net, kind, address, prefix, idx)| Network {
            name: net.clone(),
            kind,
            address,
            prefix,
            dhcp_start: offset(address, DHCP_FIRST),
            dhcp_end: offset(address, 254),
            hosts: nodes
                .iter()
                .map(|n| DhcpHost {
                    mac: n.nics[idx].mac.clone(),
                    ip: n.nics[idx].ip,
                    name: n.hostname.clone(),
                })
                .collect(),
        })
        .collect();

        Ok(Lab {
            name,
            nodes,
            networks,
            image_dir,
            base_image,
            base_image_format,
            kernel,
            initrd,
            log_dir,
            ssh_public_key,
            virt_type,
        })
    }
}

/// The nodes and their roles, from the `k8s_*_nodes` lists, else from the role groups.
fn role_members(
    inv: &Inventory,
    all: &Map<String, Value>,
) -> Result<Vec<(String, Role)>, LabError> {
    let hosts = inv.hosts();
    let lists_given = ROLE_SOURCES
        .iter()
        .any(|(_, var, _)| all.contains_key(*var));
    let mut members: Vec<(String, Role)> = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for (role, var, group) in ROLE_SOURCES {
        let (source, names) = if lists_given {
            let names = match all.get(var) {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s.clone()),
                        other => Err(bad(
                            "lab",
                            var,
                            &other.to_string(),
                            "a list of inventory host names",
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                Some(Value::String(s)) => s
                    .split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect(),
                Some(other) => {
                    return Err(bad(
                        "lab",
                        var,
                        &other.to_string(),
                        "a list of inventory host names",
                    ))
                }
            };
            (var.to_string(), names)
        } else {
            (format!("group {group}"), inv.group_hosts(group))
        };
        for node in names {
            if !hosts.contains(&node) {
                let closest = hosts
                    .iter()
                    .map(|h| (strsim::damerau_levenshtein(&node, h), h))
                    .filter(|(d, h)| *d <= 3.max(h.len() / 3))
                    .min_by_key(|(d, _)| *d)
                    .map(|(_, h)| h.clone());
                return Err(LabError::UnknownNode {
                    list: source,
                    node,
                    closest,
                });
            }
            if let Some(first) = seen.insert(node.clone(), source.clone()) {
                return Err(LabError::DuplicateNode {
                    node,
                    first,
                    second: source,
                });
            }
            check_name(&node, "inventory host name", &node)?;
            members.push((node, role));
        }
    }
    Ok(members)
}

fn bad(scope: &str, var: &str, value: &str, expected: &str) -> LabError {
    LabError::BadValue {
        scope: scope.to_string(),
        var: var.to_string(),
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

/// The first alias present (name and value as text), for error messages.
fn found(vars: &Map<String, Value>, names: &[&str]) -> (String, String) {
    for n in names {
        if let Some(v) = vars.get(*n) {
            return (n.to_string(), display(v));
        }
    }
    (names[0].to_string(), String::new())
}

fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A string variable by its first present alias; numbers are turned into text.
fn string_var(
    vars: &Map<String, Value>,
    scope: &str,
    names: &[&str],
) -> Result<Option<String>, LabError> {
    for n in names {
        match vars.get(*n) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => return Ok(Some(s.trim().to_string())),
            Some(Value::Number(num)) => return Ok(Some(num.to_string())),
            Some(other) => return Err(bad(scope, n, &other.to_string(), "a string")),
        }
    }
    Ok(None)
}

/// An integer variable (number or digits in a string) by its first present alias.
fn int_var(
    vars: &Map<String, Value>,
    scope: &str,
    names: &[&str],
) -> Result<Option<u64>, LabError> {
    for n in names {
        match vars.get(*n) {
            None | Some(Value::Null) => continue,
            Some(Value::Number(num)) => {
                return num
                    .as_u64()
                    .map(Some)
                    .ok_or_else(|| bad(scope, n, &num.to_string(), "a whole positive number"))
            }
            Some(Value::String(s)) => {
                return s
                    .trim()
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| bad(scope, n, s, "a whole positive number"))
            }
            Some(other) => {
                return Err(bad(scope, n, &other.to_string(), "a whole positive number"))
            }
        }
    }
    Ok(None)
}

/// A size variable in MiB: a bare number means MiB; `M`/`MiB`/`MB`, `G`/`GiB`/`GB`, `T`/`TiB`/`TB`
/// are binary units (as qemu-img and libvirt read them).
fn size_var(
    vars: &Map<String, Value>,
    scope: &str,
    names: &[&str],
) -> Result<Option<u64>, LabError> {
    for n in names {
        let text = match vars.get(*n) {
            None | Some(Value::Null) => continue,
            Some(Value::Number(num)) => num.to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        return parse_size_mib(&text).map(Some).ok_or_else(|| {
            bad(
                scope,
                n,
                &text,
                "a size like 20G, 20GiB, 20480M or 4096 (MiB)",
            )
        });
    }
    Ok(None)
}

/// Parses `20G`, `20GiB`, `20480M`, `1T`, `4096` (MiB) into MiB; `None` when malformed or zero.
pub fn parse_size_mib(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "m" | "mb" | "mib" => 1,
        "g" | "gb" | "gib" => 1024,
        "t" | "tb" | "tib" => 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(factor).filter(|v| *v > 0)
}

fn parse_cidr(var: &str, text: &str) -> Result<(Ipv4Addr, u8), LabError> {
    let err = |why: &str| bad("lab", var, text, why);
    let (addr, prefix) = text
        .split_once('/')
        .ok_or_else(|| err("an IPv4 network like 192.168.90.0/24"))?;
    let addr: Ipv4Addr = addr
        .trim()
        .parse()
        .map_err(|_| err("an IPv4 network like 192.168.90.0/24"))?;
    let prefix: u8 = prefix
        .trim()
        .parse()
        .map_err(|_| err("an IPv4 network like 192.168.90.0/24"))?;
    if !(8..=24).contains(&prefix) {
        return Err(err("the prefix must be between /8 and /24"));
    }
    let mask = u32::MAX << (32 - u32::from(prefix));
    if u32::from(addr) & !mask != 0 {
        return Err(err(
            "host bits are set: give the network address (e.g. 192.168.90.0/24)",
        ));
    }
    Ok((addr, prefix))
}

fn check_format(scope: &str, var: &str, format: &str) -> Result<(), LabError> {
    match format {
        "qcow2" | "raw" => Ok(()),
        other => Err(bad(scope, var, other, "qcow2 or raw")),
    }
}

/// Names used in file, domain and network names: letters, digits, `.`, `_`, `-`; no leading `.`/`-`.
fn check_name(scope: &str, var: &str, name: &str) -> Result<(), LabError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(bad(
            scope,
            var,
            name,
            "1-64 letters, digits, '.', '_' or '-' (not starting with '.' or '-')",
        ))
    }
}

/// RFC 1123 host names: dot-separated labels of letters, digits and inner `-`.
fn check_hostname(scope: &str, hostname: &str) -> Result<(), LabError> {
    let ok = !hostname.is_empty()
        && hostname.len() <= 253
        && hostname.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(bad(
            scope,
            "nodename",
            hostname,
            "a host name of letters, digits and '-' labels",
        ))
    }
}

fn offset(addr: Ipv4Addr, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(addr).wrapping_add(n))
}

/// A MAC in QEMU's locally administered range `52:54:00`, from a hash of lab, node and NIC index;
/// re-hashed with a counter in the (unlikely) case it collides with one already handed out.
pub fn node_mac(lab: &str, node: &str, nic: u8, attempt: u32) -> String {
    let mut h = Sha256::new();
    h.update(b"duststack-mac\0");
    h.update(lab.as_bytes());
    h.update(b"\0");
    h.update(node.as_bytes());
    h.update([0, nic]);
    h.update(attempt.to_be_bytes());
    let d = h.finalize();
    format!("52:54:00:{:02x}:{:02x}:{:02x}", d[0], d[1], d[2])
}

fn unique_mac(lab: &str, node: &str, nic: u8, taken: &mut Vec<String>) -> String {
    let mut attempt = 0;
    loop {
        let mac = node_mac(lab, node, nic, attempt);
        if !taken.contains(&mac) {
            taken.push(mac.clone());
            return mac;
        }
        attempt += 1;
    }
}

/// A stable 128-bit machine id (32 lower-case hex digits) for a lab node.
pub fn machine_id(lab: &str, node: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"duststack-machine-id\0");
    h.update(lab.as_bytes());
    h.update(b"\0");
    h.update(node.as_bytes());
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// Writes an inventory directory (hosts + group_vars/all.yml) and loads it.
    pub(crate) fn inventory(dir: &Path, hosts: &str, all_yml: &str) -> Inventory {
        std::fs::create_dir_all(dir.join("group_vars")).unwrap();
        std::fs::write(dir.join("hosts"), hosts).unwrap();
        std::fs::write(dir.join("group_vars/all.yml"), all_yml).unwrap();
        Inventory::load(&[dir.to_path_buf()]).unwrap()
    }

    const HOSTS: &str = "[k8s_master]\nk8s-master-1 nodename=k8s-master-1\n\n[k8s_node]\nk8s-node-1 nodename=k8s-node-1\nk8s-node-2 nodename=k8s-node-2\n\n[k8s_utility]\n";

    const ALL: &str = "lab_name: classroom\nk8s_master_nodes: [k8s-master-1]\nk8s_nodes: [k8s-node-1, k8s-node-2]\nk8s_utility_nodes: []\nvcpu: 2\nvmem: 4096\nvirt_disk_size: 20G\nvirt_disk_format: qcow2\nvirt_disk_image_path: /var/lib/libvirt/images\nnic1: default\nnic2: internal\nvirt_type: kvm\nbase_image: /var/lib/duststack/images/debian-12.qcow2\nssh_key: ~/.ssh/id_ed25519.pub\n";

    fn load(hosts: &str, all: &str) -> Result<Lab, LabError> {
        let dir = tempfile::tempdir().unwrap();
        let inv = inventory(dir.path(), hosts, all);
        Lab::from_inventory(&inv)
    }

    /// A small valid lab for the renderers' tests.
    pub(crate) fn sample_lab() -> Lab {
        load(HOSTS, ALL).unwrap()
    }

    #[test]
    fn lab_from_classroom_example_inventory() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("inventory/classroom");
        let inv = Inventory::load(&[dir]).unwrap();
        let lab = Lab::from_inventory(&inv).unwrap();
        assert_eq!(lab.name, "classroom");
        let names: Vec<_> = lab
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.role))
            .collect();
        assert_eq!(
            names,
            [
                ("k8s-master-1", Role::ControlPlane),
                ("k8s-node-1", Role::Worker),
                ("k8s-node-2", Role::Worker),
                ("k8s-utility-1", Role::Utility)
            ]
        );
        assert_eq!(lab.base_image, "/var/lib/duststack/images/debian-12.qcow2");
        assert_eq!(lab.kernel, "/var/lib/duststack/images/debian-12.vmlinuz");
        assert_eq!(lab.virt_type, VirtType::Kvm);
        assert_eq!(
            lab.ssh_public_key,
            SshKeySource::Path("~/.ssh/id_ed25519.pub".into())
        );
    }

    #[test]
    fn lab_nodes_get_sizes_macs_and_addresses() {
        let lab = sample_lab();
        assert_eq!(lab.nodes.len(), 3);
        let m = &lab.nodes[0];
        assert_eq!(
            (m.vcpu, m.memory_mib, m.disk_gib, m.disk_format.as_str()),
            (2, 4096, 20, "qcow2")
        );
        assert_eq!(m.internal_nic().ip, Ipv4Addr::new(192, 168, 90, 10));
        assert_eq!(
            lab.nodes[2].internal_nic().ip,
            Ipv4Addr::new(192, 168, 90, 12)
        );
        assert_eq!(lab.nodes[1].nat_nic().ip, Ipv4Addr::new(192, 168, 122, 11));
        assert_eq!(m.nat_nic().network, "default");
        assert_eq!(m.internal_nic().network, "internal");
        let mac_re = regex::Regex::new("^52:54:00(:[0-9a-f]{2}){3}$").unwrap();
        let mut macs: Vec<&str> = lab
            .nodes
            .iter()
            .flat_map(|n| n.nics.iter().map(|c| c.mac.as_str()))
            .collect();
        assert!(macs.iter().all(|m| mac_re.is_match(m)), "{macs:?}");
        macs.sort();
        macs.dedup();
        assert_eq!(macs.len(), 6);
        // Deterministic: the same inventory gives the same MACs and machine ids.
        let again = sample_lab();
        assert_eq!(again, lab);
        assert_ne!(lab.nodes[0].machine_id, lab.nodes[1].machine_id);
        assert_eq!(lab.nodes[0].machine_id.len(), 32);
        // Another lab name gives other MACs.
        let other = load(
            HOSTS,
            &ALL.replace("lab_name: classroom", "lab_name: other"),
        )
        .unwrap();
        assert_ne!(other.nodes[0].nat_nic().mac, lab.nodes[0].nat_nic().mac);

        let net = lab.network("internal").unwrap();
        assert_eq!(net.kind, NetworkKind::Isolated);
        assert_eq!(net.cidr(), "192.168.90.0/24");
        assert_eq!(net.gateway(), Ipv4Addr::new(192, 168, 90, 1));
        assert_eq!(net.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(net.hosts[1].name, "k8s-node-1");
        assert_eq!(net.hosts[1].mac, lab.nodes[1].internal_nic().mac);
        assert_eq!(lab.network("default").unwrap().kind, NetworkKind::Nat);
        assert_eq!(
            lab.overlay_path(m),
            "/var/lib/libvirt/images/classroom-k8s-master-1.qcow2"
        );
    }

    #[test]
    fn lab_aliases_and_per_host_overrides() {
        let hosts = "[k8s_master]\ncp memory=3G vcpus=4\n[k8s_node]\nw1 nodename=worker-one\n";
        let all = "base_image: /img/base.qcow2\nssh_key: ssh-ed25519 AAAAC3 me@x\nvirt_type: qemu\ndisk_size: 20480M\nmemory: 2048\n";
        let lab = load(hosts, all).unwrap();
        // No k8s_*_nodes lists: roles come from the groups.
        assert_eq!(lab.nodes[0].role, Role::ControlPlane);
        assert_eq!((lab.nodes[0].vcpu, lab.nodes[0].memory_mib), (4, 3072));
        assert_eq!(
            (
                lab.nodes[1].vcpu,
                lab.nodes[1].memory_mib,
                lab.nodes[1].disk_gib
            ),
            (2, 2048, 20)
        );
        assert_eq!(lab.nodes[1].hostname, "worker-one");
        assert_eq!(lab.virt_type, VirtType::Qemu);
        assert_eq!(
            lab.ssh_public_key,
            SshKeySource::Literal("ssh-ed25519 AAAAC3 me@x".into())
        );
        assert_eq!(lab.name, "classroom");
    }

    #[test]
    fn lab_unknown_node_names_list_and_closest_host() {
        let err = load(
            HOSTS,
            &ALL.replace("[k8s-node-1, k8s-node-2]", "[k8s-node-1, k8s-nod-2]"),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("k8s-nod-2 is listed in k8s_nodes"), "{msg}");
        assert!(msg.contains("did you mean k8s-node-2?"), "{msg}");
    }

    #[test]
    fn lab_duplicate_node_and_hostname_rejected() {
        let err = load(
            HOSTS,
            &ALL.replace("k8s_utility_nodes: []", "k8s_utility_nodes: [k8s-node-1]"),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("k8s-node-1 is listed twice (in k8s_nodes and in k8s_utility_nodes)"),
            "{err}"
        );
        let err = load(
            &HOSTS.replace(
                "k8s-node-2 nodename=k8s-node-2",
                "k8s-node-2 nodename=k8s-node-1",
            ),
            ALL,
        )
        .unwrap_err();
        assert!(matches!(err, LabError::DuplicateHostname { .. }), "{err}");
    }

    #[test]
    fn lab_small_control_plane_rejected() {
        let err = load(HOSTS, &ALL.replace("vmem: 4096", "vmem: 1024")).unwrap_err();
        assert!(
            err.to_string()
                .contains("a control plane needs at least 2 vCPUs and 2 GiB"),
            "{err}"
        );
        let err = load(
            &HOSTS.replace("k8s-master-1 nodename", "k8s-master-1 vcpu=1 nodename"),
            ALL,
        )
        .unwrap_err();
        assert!(
            matches!(err, LabError::ControlPlaneTooSmall { vcpu: 1, .. }),
            "{err}"
        );
        // A small worker is fine.
        let lab = load(
            &HOSTS.replace("k8s-node-1 nodename", "k8s-node-1 vmem=1024 nodename"),
            ALL,
        )
        .unwrap();
        assert_eq!(lab.nodes[1].memory_mib, 1024);
    }

    #[test]
    fn lab_disk_sizes_and_virt_type_validated() {
        assert_eq!(parse_size_mib("20G"), Some(20480));
        assert_eq!(parse_size_mib("20GiB"), Some(20480));
        assert_eq!(parse_size_mib("20480M"), Some(20480));
        assert_eq!(parse_size_mib("1T"), Some(1024 * 1024));
        assert_eq!(parse_size_mib("20X"), None);
        assert_eq!(parse_size_mib("G"), None);
        assert_eq!(parse_size_mib("0G"), None);
        for (size, ok) in [
            ("20GiB", Some(20)),
            ("20480M", Some(20)),
            ("twenty", None),
            ("1500M", None),
        ] {
            let r = load(
                HOSTS,
                &ALL.replace("virt_disk_size: 20G", &format!("virt_disk_size: {size}")),
            );
            match ok {
                Some(gib) => assert_eq!(r.unwrap().nodes[0].disk_gib, gib),
                None => {
                    let msg = r.unwrap_err().to_string();
                    assert!(
                        msg.contains(&format!("virt_disk_size={size} is not valid")),
                        "{msg}"
                    );
                }
            }
        }
        let err = load(HOSTS, &ALL.replace("virt_type: kvm", "virt_type: xen")).unwrap_err();
        assert!(
            err.to_string()
                .contains("virt_type=xen is not supported: use kvm or qemu"),
            "{err}"
        );
    }

    #[test]
    fn lab_missing_base_image_and_bad_names() {
        let err = load(
            HOSTS,
            &ALL.replace(
                "base_image: /var/lib/duststack/images/debian-12.qcow2\n",
                "",
            ),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("base_image is not set"),
            "{err}"
        );
        let err = load(
            HOSTS,
            &ALL.replace("lab_name: classroom", "lab_name: ../etc"),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("lab_name=../etc is not valid"),
            "{err}"
        );
        let err = load(
            "[k8s_master]\nlocalhost\n",
            "base_image: /b.qcow2\nssh_key: /k.pub\n",
        )
        .map(|l| l.nodes.len());
        assert_eq!(err.unwrap(), 1);
        let err = load("[other]\nh1\n", "base_image: /b.qcow2\nssh_key: /k.pub\n").unwrap_err();
        assert!(matches!(err, LabError::NoNodes));
    }
}
