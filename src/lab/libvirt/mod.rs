//! The libvirt provider of `duststack lab`: connects through libvirt's C API (the `virt` crate),
//! creates networks, overlay volumes and domains from [`super::libvirt_xml`], reports their
//! state and removes exactly what duststack created (recognised by its `<metadata>`).

use anyhow::{anyhow, bail, Context};
use virt::connect::Connect;
use virt::domain::Domain;
use virt::network::Network as VirNetwork;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::sys;

use super::libvirt_xml::{dhcp_host_xml, domain_xml, network_xml, volume_xml, METADATA_NS};
use super::model::{DhcpHost, Lab, Network, Node};

pub mod snapshot;
pub mod storage;

pub use storage::{seed_volume_name, PoolInfo};

/// The URI `duststack lab` connects to unless told otherwise.
pub const DEFAULT_URI: &str = "qemu:///system";

/// An open connection to one libvirt hypervisor.
pub struct Libvirt {
    pub(crate) conn: Connect,
    pub(crate) uri: String,
}

impl Drop for Libvirt {
    fn drop(&mut self) {
        // Closing can only fail on an already broken connection; nothing to do about it here.
        let _ = self.conn.close();
    }
}

/// What an `ensure_*` call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// It did not exist and was created (and started, for networks).
    Created,
    /// It existed but was inactive and has been started.
    Started,
    /// It already existed as wanted.
    Unchanged,
}

/// Result of [`Libvirt::ensure_network`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkOutcome {
    /// What was done.
    pub change: Change,
    /// Whether the network carries duststack metadata for this lab (so `lab down` removes it).
    pub created_by_duststack: bool,
    /// Address and prefix of the network's subnet as libvirt has it (a reused network's
    /// subnet may differ from the model's).
    pub subnet: Option<(std::net::Ipv4Addr, u8)>,
}

/// Result of [`Libvirt::ensure_domain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainOutcome {
    /// The domain was defined now.
    Created,
    /// A duststack domain of this lab exists and matches the model.
    Unchanged,
    /// A duststack domain of this lab exists but differs from the model in its NICs (left as it is).
    Drift(Vec<String>),
    /// A duststack domain of this lab differed in vCPUs or memory only: its definition was
    /// updated, which takes effect the next time it is started.
    Redefined(Vec<String>),
}

/// Run state of a lab node's domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeState {
    /// The domain is running.
    Running,
    /// The domain is defined but shut off.
    ShutOff,
    /// The domain is paused.
    Paused,
    /// Another libvirt state (blocked, shutting down, crashed, suspended).
    Other(String),
    /// No domain of that name exists.
    Absent,
}

impl NodeState {
    /// The state as `virsh list` spells it.
    pub fn as_str(&self) -> &str {
        match self {
            NodeState::Running => "running",
            NodeState::ShutOff => "shut off",
            NodeState::Paused => "paused",
            NodeState::Other(s) => s,
            NodeState::Absent => "absent",
        }
    }
}

/// What [`Libvirt::status`] reports per lab node, read from the real domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// Inventory name of the node.
    pub name: String,
    /// libvirt domain name (`<lab>-<node>`).
    pub domain: String,
    /// Run state.
    pub state: NodeState,
    /// vCPUs of the domain (None when absent).
    pub vcpu: Option<u32>,
    /// Memory of the domain in MiB (None when absent).
    pub memory_mib: Option<u64>,
    /// Whether the domain carries duststack metadata for this lab (false for absent or foreign ones).
    pub owned: bool,
}

/// What [`Libvirt::destroy_lab`] removed and what it left alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestroyReport {
    /// Domains destroyed (if running) and undefined.
    pub domains_removed: Vec<String>,
    /// Networks destroyed and undefined (only those duststack created for this lab).
    pub networks_removed: Vec<String>,
    /// Overlay and seed volumes deleted (`pool/name`).
    pub volumes_removed: Vec<String>,
    /// Storage pools removed (only the one duststack defined for this lab, once empty).
    pub pools_removed: Vec<String>,
    /// DHCP reservations removed from networks duststack did not create (`network: mac ip`).
    pub reservations_removed: Vec<String>,
    /// Things named like the lab's but left alone, with the reason.
    pub kept: Vec<String>,
}

/// Result of [`Libvirt::up`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpReport {
    /// One line per step: `network internal: created`, `domain classroom-k8s-node-1: unchanged`, ...
    pub steps: Vec<String>,
    /// Drift found on existing domains (node name, differences).
    pub drift: Vec<(String, Vec<String>)>,
    /// Whether anything was created, started or redefined.
    pub changed: bool,
}

/// One undo action of a [`Rollback`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    /// Destroy (power off) a domain that `up` started.
    StopDomain(String),
    /// Undefine a domain that `up` defined.
    UndefineDomain(String),
    /// Destroy and undefine a network that `up` created.
    RemoveNetwork(String),
    /// Destroy a network that `up` started (it existed, inactive).
    StopNetwork(String),
    /// Remove a DHCP reservation that `up` added to a network it did not create.
    RemoveDhcpHost {
        /// Network name.
        network: String,
        /// The `<host>` element that was added.
        xml: String,
    },
    /// Destroy and undefine the storage pool that `up` defined.
    RemovePool(String),
    /// Delete a volume that `up` created.
    DeleteVolume {
        /// Storage pool.
        pool: String,
        /// Volume name.
        name: String,
    },
}

/// The undo actions of what an `up` created so far, run in reverse order when a later step fails.
#[derive(Debug, Default)]
pub struct Rollback {
    undo: Vec<Undo>,
}

impl Rollback {
    /// An empty rollback list.
    pub fn new() -> Rollback {
        Rollback::default()
    }

    /// Records how to undo a step that just succeeded.
    pub fn push(&mut self, undo: Undo) {
        self.undo.push(undo);
    }

    /// The recorded actions, oldest first.
    pub fn actions(&self) -> &[Undo] {
        &self.undo
    }

    /// Runs every undo action, newest first; returns the ones that failed (with the error).
    pub fn run(mut self, lv: &Libvirt) -> Vec<String> {
        let mut failures = Vec::new();
        while let Some(undo) = self.undo.pop() {
            if let Err(err) = lv.undo(&undo) {
                failures.push(format!("{undo:?}: {err:#}"));
            }
        }
        failures
    }
}

/// The duststack mark found in a domain's or network's `<metadata>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// Lab name.
    pub lab: String,
    /// Node name (domains only).
    pub node: Option<String>,
}

/// Reads the duststack `<metadata>` mark from libvirt XML (domain or network), if any.
pub fn read_mark(xml: &str) -> anyhow::Result<Option<Mark>> {
    let doc =
        roxmltree::Document::parse(xml).context("libvirt returned XML that does not parse")?;
    let Some(meta) = doc
        .root_element()
        .children()
        .find(|c| c.has_tag_name("metadata"))
    else {
        return Ok(None);
    };
    let mark = meta
        .children()
        .find(|c| c.has_tag_name((METADATA_NS, "lab")));
    Ok(mark.and_then(|m| {
        Some(Mark {
            lab: m.attribute("name")?.to_string(),
            node: m.attribute("node").map(str::to_string),
        })
    }))
}

/// vCPUs, memory (MiB) and NICs (`network`, `mac`) of a domain, read from its XML.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    vcpu: u32,
    memory_mib: u64,
    nics: Vec<(String, String)>,
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children().find(|c| c.has_tag_name(name))
}

fn domain_shape(xml: &str) -> anyhow::Result<Shape> {
    let doc =
        roxmltree::Document::parse(xml).context("libvirt returned XML that does not parse")?;
    let root = doc.root_element();
    let vcpu = child(root, "vcpu")
        .and_then(|v| v.text())
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| anyhow!("domain XML has no readable <vcpu>"))?;
    let mem = child(root, "memory").ok_or_else(|| anyhow!("domain XML has no <memory>"))?;
    let amount: u64 = mem
        .text()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| anyhow!("domain XML has an unreadable <memory>"))?;
    let memory_mib = match mem.attribute("unit").unwrap_or("KiB") {
        "b" | "bytes" => amount / (1024 * 1024),
        "k" | "KiB" => amount / 1024,
        "M" | "MiB" => amount,
        "G" | "GiB" => amount * 1024,
        other => bail!("domain XML: memory unit {other} not understood"),
    };
    let mut nics = Vec::new();
    if let Some(devices) = child(root, "devices") {
        for nic in devices.children().filter(|c| c.has_tag_name("interface")) {
            let net = child(nic, "source")
                .and_then(|s| s.attribute("network"))
                .unwrap_or("");
            let mac = child(nic, "mac")
                .and_then(|s| s.attribute("address"))
                .unwrap_or("");
            nics.push((net.to_string(), mac.to_ascii_lowercase()));
        }
    }
    Ok(Shape {
        vcpu,
        memory_mib,
        nics,
    })
}

/// The (network, MAC) pairs the model gives a node.
fn nics_of(node: &Node) -> Vec<(String, String)> {
    node.nics
        .iter()
        .map(|n| (n.network.clone(), n.mac.to_ascii_lowercase()))
        .collect()
}

/// Differences between a node of the model and the shape of its existing domain.
fn drift(node: &Node, have: &Shape) -> Vec<String> {
    let mut out = Vec::new();
    if have.vcpu != node.vcpu {
        out.push(format!(
            "vcpu: domain has {}, model wants {}",
            have.vcpu, node.vcpu
        ));
    }
    if have.memory_mib != node.memory_mib {
        out.push(format!(
            "memory: domain has {} MiB, model wants {} MiB",
            have.memory_mib, node.memory_mib
        ));
    }
    let want = nics_of(node);
    if have.nics != want {
        out.push(format!(
            "nics: domain has {:?}, model wants {:?}",
            have.nics, want
        ));
    }
    out
}

fn is_code(err: &virt::error::Error, code: virt::error::ErrorNumber) -> bool {
    err.code() == code
}

fn state_of(state: sys::virDomainState) -> NodeState {
    match state {
        sys::VIR_DOMAIN_RUNNING => NodeState::Running,
        sys::VIR_DOMAIN_SHUTOFF => NodeState::ShutOff,
        sys::VIR_DOMAIN_PAUSED => NodeState::Paused,
        sys::VIR_DOMAIN_BLOCKED => NodeState::Other("idle".into()),
        sys::VIR_DOMAIN_SHUTDOWN => NodeState::Other("in shutdown".into()),
        sys::VIR_DOMAIN_CRASHED => NodeState::Other("crashed".into()),
        sys::VIR_DOMAIN_PMSUSPENDED => NodeState::Other("pmsuspended".into()),
        _ => NodeState::Other("no state".into()),
    }
}

impl Libvirt {
    /// Opens a connection to `uri` (e.g. `qemu:///system`, `test:///default`).
    pub fn connect(uri: &str) -> anyhow::Result<Libvirt> {
        // libvirt's default handler prints every error (even an expected "not found" lookup)
        // to stderr; every error reaches the caller through `Result` instead.
        virt::error::clear_error_callback();
        let conn = Connect::open(Some(uri)).map_err(|e| {
            anyhow!(
                "cannot connect to libvirt at {uri}: {}; is libvirtd running? ({uri}) \
                 and may this user use it (group libvirt)?",
                e.message()
            )
        })?;
        Ok(Libvirt {
            conn,
            uri: uri.to_string(),
        })
    }

    /// Whether the hypervisor offers domain type kvm (libvirt's domain capabilities); used for
    /// remote hypervisors, where duststack cannot run its own KVM probe.
    pub fn supports_kvm(&self) -> Result<(), String> {
        self.conn
            .get_domain_capabilities(None, Some("x86_64"), None, Some("kvm"), 0)
            .map(|_| ())
            .map_err(|e| format!("{} offers no kvm domains: {}", self.uri, e.message()))
    }

    /// Free memory of the hypervisor host in MiB (as libvirt reports it).
    pub fn free_memory_mib(&self) -> anyhow::Result<u64> {
        self.conn
            .get_free_memory()
            .map(|b| b / (1024 * 1024))
            .map_err(|e| anyhow!("{}: free memory: {}", self.uri, e.message()))
    }

    /// Whether the hypervisor runs on this machine (`qemu:///system`, `test:///default`, no
    /// host in the URI): then its files (images, console logs) are this machine's files.
    pub fn is_local(&self) -> bool {
        self.uri.contains(":///")
    }

    /// The URI this connection was opened with.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The domain called `name`, or None if there is none.
    fn find_domain(&self, name: &str) -> anyhow::Result<Option<Domain>> {
        match Domain::lookup_by_name(&self.conn, name) {
            Ok(d) => Ok(Some(d)),
            Err(e) if is_code(&e, virt::error::ErrorNumber::NoDomain) => Ok(None),
            Err(e) => Err(anyhow!(
                "{}: looking up domain {name}: {}",
                self.uri,
                e.message()
            )),
        }
    }

    /// The network called `name`, or None if there is none.
    fn find_network(&self, name: &str) -> anyhow::Result<Option<VirNetwork>> {
        match VirNetwork::lookup_by_name(&self.conn, name) {
            Ok(n) => Ok(Some(n)),
            Err(e) if is_code(&e, virt::error::ErrorNumber::NoNetwork) => Ok(None),
            Err(e) => Err(anyhow!(
                "{}: looking up network {name}: {}",
                self.uri,
                e.message()
            )),
        }
    }

    fn pool(&self, pool: &str) -> anyhow::Result<StoragePool> {
        StoragePool::lookup_by_name(&self.conn, pool).map_err(|e| {
            anyhow!(
                "{}: storage pool {pool} not found ({}); create it or pass another pool",
                self.uri,
                e.message()
            )
        })
    }

    /// The persistent (inactive) XML of a domain.
    fn domain_xml_of(&self, dom: &Domain) -> anyhow::Result<String> {
        dom.get_xml_desc(sys::VIR_DOMAIN_XML_INACTIVE)
            .map_err(|e| anyhow!("{}: reading domain XML: {}", self.uri, e.message()))
    }

    /// Defines and starts the network from [`network_xml`] if it is absent; starts it if it is
    /// defined but inactive; otherwise reuses it (its metadata tells whether duststack made it).
    pub fn ensure_network(&self, lab: &Lab, net: &Network) -> anyhow::Result<NetworkOutcome> {
        if let Some(existing) = self.find_network(&net.name)? {
            let xml = existing.get_xml_desc(0).map_err(|e| {
                anyhow!(
                    "{}: reading network {}: {}",
                    self.uri,
                    net.name,
                    e.message()
                )
            })?;
            let ours = read_mark(&xml)?.is_some_and(|m| m.lab == lab.name);
            let active = existing
                .is_active()
                .map_err(|e| anyhow!("{}: network {}: {}", self.uri, net.name, e.message()))?;
            let change = if active {
                Change::Unchanged
            } else {
                existing.create().map_err(|e| {
                    anyhow!(
                        "{}: starting network {}: {}",
                        self.uri,
                        net.name,
                        e.message()
                    )
                })?;
                Change::Started
            };
            return Ok(NetworkOutcome {
                change,
                created_by_duststack: ours,
                subnet: network_subnet(&xml)?,
            });
        }
        let xml = network_xml(lab, net);
        let created = VirNetwork::define_xml(&self.conn, &xml).map_err(|e| {
            anyhow!(
                "{}: defining network {}: {}",
                self.uri,
                net.name,
                e.message()
            )
        })?;
        if let Err(e) = created.create() {
            let _ = created.undefine();
            bail!(
                "{}: starting network {}: {}",
                self.uri,
                net.name,
                e.message()
            );
        }
        Ok(NetworkOutcome {
            change: Change::Created,
            created_by_duststack: true,
            subnet: Some((net.address, net.prefix)),
        })
    }

    /// The subnet of network `name` if it exists and duststack did not create it for this lab
    /// (a reused network, e.g. libvirt's `default`): the lab's addresses must live in it.
    pub fn reused_subnet(
        &self,
        lab: &Lab,
        name: &str,
    ) -> anyhow::Result<Option<(std::net::Ipv4Addr, u8)>> {
        let Some(net) = self.find_network(name)? else {
            return Ok(None);
        };
        let xml = net
            .get_xml_desc(0)
            .map_err(|e| anyhow!("{}: reading network {name}: {}", self.uri, e.message()))?;
        if read_mark(&xml)?.is_some_and(|m| m.lab == lab.name) {
            return Ok(None);
        }
        network_subnet(&xml)
    }

    /// Adds a DHCP reservation (live and persistent) for every lab node to a network that
    /// duststack did not create (typically libvirt's `default`), unless one for that MAC with
    /// that address exists. Returns the `<host>` elements it added.
    pub fn ensure_reservations(&self, net: &Network) -> anyhow::Result<Vec<String>> {
        let existing = self
            .find_network(&net.name)?
            .ok_or_else(|| anyhow!("{}: network {} vanished", self.uri, net.name))?;
        let xml = existing
            .get_xml_desc(0)
            .map_err(|e| anyhow!("{}: network {}: {}", self.uri, net.name, e.message()))?;
        let have = dhcp_hosts(&xml)?;
        let mut added = Vec::new();
        for host in &net.hosts {
            let mac = host.mac.to_ascii_lowercase();
            match have.iter().find(|h| h.mac == mac) {
                Some(h) if h.ip == host.ip => continue,
                Some(h) => bail!(
                    "{}: network {} already reserves {} for MAC {mac} (a lab node wants {}); \
                     remove that reservation or change the lab",
                    self.uri,
                    net.name,
                    h.ip,
                    host.ip
                ),
                None => {}
            }
            if let Some(h) = have.iter().find(|h| h.ip == host.ip) {
                bail!(
                    "{}: network {} already reserves {} for another MAC ({}); \
                     set nic1_cidr or free that address",
                    self.uri,
                    net.name,
                    host.ip,
                    h.mac
                );
            }
            let element = dhcp_host_xml(host);
            self.update_dhcp_host(
                &existing,
                sys::VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
                &element,
            )
            .map_err(|e| {
                anyhow!(
                    "{}: adding a DHCP reservation for {} to network {}: {}",
                    self.uri,
                    host.name,
                    net.name,
                    e.message()
                )
            })?;
            added.push(element);
        }
        Ok(added)
    }

    fn update_dhcp_host(
        &self,
        net: &VirNetwork,
        command: sys::virNetworkUpdateCommand,
        element: &str,
    ) -> Result<(), virt::error::Error> {
        let mut flags = sys::VIR_NETWORK_UPDATE_AFFECT_CONFIG;
        if net.is_active()? {
            flags |= sys::VIR_NETWORK_UPDATE_AFFECT_LIVE;
        }
        net.update(
            command,
            sys::VIR_NETWORK_SECTION_IP_DHCP_HOST,
            -1,
            element,
            flags,
        )
    }

    /// Creates the node's system disk overlay ([`volume_xml`]) in storage pool `pool`, unless a
    /// volume of that name exists (never overwritten). Returns what was done and the volume's path.
    pub fn ensure_volume(
        &self,
        lab: &Lab,
        node: &Node,
        pool: &str,
    ) -> anyhow::Result<(Change, String)> {
        let p = self.pool(pool)?;
        let name = volume_name(lab, node);
        if let Ok(vol) = StorageVol::lookup_by_name(&p, &name) {
            let path = vol
                .get_path()
                .map_err(|e| anyhow!("{}: {}", self.uri, e.message()))?;
            return Ok((Change::Unchanged, path));
        }
        let vol = StorageVol::create_xml(&p, &volume_xml(lab, node), 0).map_err(|e| {
            anyhow!(
                "{}: creating volume {name} in pool {pool}: {}",
                self.uri,
                e.message()
            )
        })?;
        let path = vol
            .get_path()
            .map_err(|e| anyhow!("{}: {}", self.uri, e.message()))?;
        Ok((Change::Created, path))
    }

    /// Defines the node's domain from [`domain_xml`] if absent. An existing domain of that name
    /// must carry duststack metadata for this lab (otherwise: a name clash error, and the domain
    /// is left untouched); its vCPUs, memory and NICs are compared with the model.
    pub fn ensure_domain(&self, lab: &Lab, node: &Node) -> anyhow::Result<DomainOutcome> {
        let name = lab.domain_name(node);
        if let Some(dom) = self.find_domain(&name)? {
            let xml = self.domain_xml_of(&dom)?;
            match read_mark(&xml)? {
                Some(m) if m.lab == lab.name => {}
                Some(m) => bail!(
                    "domain {name} already exists and belongs to duststack lab {}, not {}: \
                     name clash; rename one of the labs",
                    m.lab,
                    lab.name
                ),
                None => bail!(
                    "domain {name} already exists on {}: name clash with a domain duststack did \
                     not create (it has no duststack metadata); left untouched, rename or remove it yourself",
                    self.uri
                ),
            }
            let have = domain_shape(&xml)?;
            let diff = drift(node, &have);
            if diff.is_empty() {
                return Ok(DomainOutcome::Unchanged);
            }
            if nics_of(node) != have.nics {
                return Ok(DomainOutcome::Drift(diff));
            }
            let uuid = dom
                .get_uuid_string()
                .map_err(|e| anyhow!("{}: domain {name}: {}", self.uri, e.message()))?;
            let xml = domain_xml(lab, node).replacen(
                "</name>\n",
                &format!("</name>\n  <uuid>{uuid}</uuid>\n"),
                1,
            );
            Domain::define_xml(&self.conn, &xml)
                .map_err(|e| anyhow!("{}: redefining domain {name}: {}", self.uri, e.message()))?;
            return Ok(DomainOutcome::Redefined(diff));
        }
        Domain::define_xml(&self.conn, &domain_xml(lab, node))
            .map_err(|e| anyhow!("{}: defining domain {name}: {}", self.uri, e.message()))?;
        Ok(DomainOutcome::Created)
    }

    /// Starts the node's domain unless it is running.
    pub fn start(&self, lab: &Lab, node: &Node) -> anyhow::Result<Change> {
        let name = lab.domain_name(node);
        let dom = self
            .find_domain(&name)?
            .ok_or_else(|| anyhow!("{}: domain {name} does not exist", self.uri))?;
        let active = dom
            .is_active()
            .map_err(|e| anyhow!("{}: domain {name}: {}", self.uri, e.message()))?;
        if active {
            return Ok(Change::Unchanged);
        }
        dom.create()
            .map_err(|e| anyhow!("{}: starting domain {name}: {}", self.uri, e.message()))?;
        Ok(Change::Started)
    }

    /// State, vCPUs and memory of every lab node's domain, read from libvirt.
    pub fn status(&self, lab: &Lab) -> anyhow::Result<Vec<NodeStatus>> {
        let mut out = Vec::new();
        for node in &lab.nodes {
            let domain = lab.domain_name(node);
            let Some(dom) = self.find_domain(&domain)? else {
                out.push(NodeStatus {
                    name: node.name.clone(),
                    domain,
                    state: NodeState::Absent,
                    vcpu: None,
                    memory_mib: None,
                    owned: false,
                });
                continue;
            };
            let info = dom
                .get_info()
                .map_err(|e| anyhow!("{}: domain {domain}: {}", self.uri, e.message()))?;
            let owned = read_mark(&self.domain_xml_of(&dom)?)?.is_some_and(|m| m.lab == lab.name);
            out.push(NodeStatus {
                name: node.name.clone(),
                domain,
                state: state_of(info.state),
                vcpu: Some(info.nr_virt_cpu),
                memory_mib: Some(info.max_mem / 1024),
                owned,
            });
        }
        Ok(out)
    }

    /// Brings the lab up: networks (DHCP reservations on a reused one) → storage pool →
    /// overlays and seeds → domains → start. `lab` is updated to what was realised: addresses
    /// on a reused network's subnet and the pool's directory as image directory. `seeds` are
    /// the seed images by node name (nodes without one get no seed volume). If a step fails,
    /// everything this call created is removed again (in reverse order) and the error says so.
    pub fn up(
        &self,
        lab: &mut Lab,
        pool: Option<&str>,
        seeds: &[(String, Vec<u8>)],
    ) -> anyhow::Result<UpReport> {
        let mut rollback = Rollback::new();
        let mut report = UpReport::default();
        match self.up_steps(lab, pool, seeds, &mut rollback, &mut report) {
            Ok(()) => {
                report.changed = !rollback.actions().is_empty()
                    || report.steps.iter().any(|s| s.contains("redefined"));
                Ok(report)
            }
            Err(err) => {
                let undone = rollback.actions().len();
                let failures = rollback.run(self);
                if failures.is_empty() {
                    Err(err.context(format!(
                        "lab up failed; rolled back the {undone} change(s) it had made"
                    )))
                } else {
                    Err(err.context(format!(
                        "lab up failed; rollback left things behind: {}",
                        failures.join("; ")
                    )))
                }
            }
        }
    }

    fn up_steps(
        &self,
        lab: &mut Lab,
        pool: Option<&str>,
        seeds: &[(String, Vec<u8>)],
        rollback: &mut Rollback,
        report: &mut UpReport,
    ) -> anyhow::Result<()> {
        for i in 0..lab.networks.len() {
            let net = lab.networks[i].clone();
            let outcome = self.ensure_network(lab, &net)?;
            match outcome.change {
                Change::Created => rollback.push(Undo::RemoveNetwork(net.name.clone())),
                Change::Started => rollback.push(Undo::StopNetwork(net.name.clone())),
                Change::Unchanged => {}
            }
            let owner = if outcome.created_by_duststack {
                "duststack"
            } else {
                "not duststack's, reused"
            };
            report.steps.push(format!(
                "network {}: {} ({owner})",
                net.name,
                change_word(&outcome.change)
            ));
            if !outcome.created_by_duststack {
                if let Some((address, prefix)) = outcome.subnet {
                    lab.rebase_network(&net.name, address, prefix);
                }
                let net = lab.networks[i].clone();
                let added = self.ensure_reservations(&net)?;
                if !added.is_empty() {
                    report.steps.push(format!(
                        "network {}: {} DHCP reservation(s) added",
                        net.name,
                        added.len()
                    ));
                }
                for xml in added {
                    rollback.push(Undo::RemoveDhcpHost {
                        network: net.name.clone(),
                        xml,
                    });
                }
            }
        }
        let (info, change) = self.ensure_pool(lab, pool)?;
        if change == Change::Created {
            rollback.push(Undo::RemovePool(info.name.clone()));
        }
        report.steps.push(format!(
            "pool {} ({}): {}",
            info.name,
            info.path,
            change_word(&change)
        ));
        lab.image_dir = info.path.clone();
        for node in &lab.nodes {
            let (change, path) = self.ensure_volume(lab, node, &info.name)?;
            if change == Change::Created {
                rollback.push(Undo::DeleteVolume {
                    pool: info.name.clone(),
                    name: volume_name(lab, node),
                });
            }
            report
                .steps
                .push(format!("volume {path}: {}", change_word(&change)));
            if let Some((_, bytes)) = seeds.iter().find(|(n, _)| *n == node.name) {
                let name = seed_volume_name(lab, node);
                let change = self.ensure_bytes_volume(&info.name, &name, bytes)?;
                if change == Change::Created {
                    rollback.push(Undo::DeleteVolume {
                        pool: info.name.clone(),
                        name: name.clone(),
                    });
                }
                report.steps.push(format!(
                    "seed {}: {}",
                    lab.seed_path(node),
                    change_word(&change)
                ));
            }
        }
        for node in &lab.nodes {
            let name = lab.domain_name(node);
            match self.ensure_domain(lab, node)? {
                DomainOutcome::Created => {
                    rollback.push(Undo::UndefineDomain(name.clone()));
                    report.steps.push(format!("domain {name}: created"));
                }
                DomainOutcome::Unchanged => report.steps.push(format!("domain {name}: unchanged")),
                DomainOutcome::Redefined(diff) => report.steps.push(format!(
                    "domain {name}: redefined ({}); takes effect when it is next stopped and started",
                    diff.join("; ")
                )),
                DomainOutcome::Drift(diff) => {
                    report
                        .steps
                        .push(format!("domain {name}: drift ({})", diff.join("; ")));
                    report.drift.push((node.name.clone(), diff));
                }
            }
        }
        for node in &lab.nodes {
            let name = lab.domain_name(node);
            let change = self.start(lab, node)?;
            if change == Change::Started {
                rollback.push(Undo::StopDomain(name.clone()));
            }
            report
                .steps
                .push(format!("start {name}: {}", change_word(&change)));
        }
        Ok(())
    }

    fn undo(&self, undo: &Undo) -> anyhow::Result<()> {
        let err =
            |what: &str, e: virt::error::Error| anyhow!("{}: {what}: {}", self.uri, e.message());
        match undo {
            Undo::StopDomain(name) => {
                if let Some(d) = self.find_domain(name)? {
                    if d.is_active().map_err(|e| err(name, e))? {
                        d.destroy().map_err(|e| err(name, e))?;
                    }
                }
            }
            Undo::UndefineDomain(name) => {
                if let Some(d) = self.find_domain(name)? {
                    if d.is_active().map_err(|e| err(name, e))? {
                        d.destroy().map_err(|e| err(name, e))?;
                    }
                    d.undefine().map_err(|e| err(name, e))?;
                }
            }
            Undo::RemoveNetwork(name) => {
                if let Some(n) = self.find_network(name)? {
                    remove_network(&n).map_err(|e| err(name, e))?;
                }
            }
            Undo::StopNetwork(name) => {
                if let Some(n) = self.find_network(name)? {
                    if n.is_active().map_err(|e| err(name, e))? {
                        n.destroy().map_err(|e| err(name, e))?;
                    }
                }
            }
            Undo::RemoveDhcpHost { network, xml } => {
                if let Some(n) = self.find_network(network)? {
                    self.update_dhcp_host(&n, sys::VIR_NETWORK_UPDATE_COMMAND_DELETE, xml)
                        .map_err(|e| err(network, e))?;
                }
            }
            Undo::RemovePool(name) => {
                if let Ok(p) = StoragePool::lookup_by_name(&self.conn, name) {
                    if p.is_active().map_err(|e| err(name, e))? {
                        p.destroy().map_err(|e| err(name, e))?;
                    }
                    p.undefine().map_err(|e| err(name, e))?;
                }
            }
            Undo::DeleteVolume { pool, name } => {
                let p = self.pool(pool)?;
                if let Ok(v) = StorageVol::lookup_by_name(&p, name) {
                    v.delete(0).map_err(|e| err(name, e))?;
                }
            }
        }
        Ok(())
    }

    /// Destroys and undefines every domain whose duststack metadata names this lab (with its
    /// snapshot metadata), deletes the lab's overlays (only those backed by the lab's base
    /// image) and seed volumes from its pool, removes the DHCP reservations it added to networks
    /// it did not create, removes the networks and the pool duststack created for this lab, then
    /// lists again and fails if anything it created is still there.
    pub fn destroy_lab(&self, lab: &Lab, pool: Option<&str>) -> anyhow::Result<DestroyReport> {
        let mut report = DestroyReport::default();
        let domains = self
            .conn
            .list_all_domains(0)
            .map_err(|e| anyhow!("{}: listing domains: {}", self.uri, e.message()))?;
        for dom in domains {
            let name = dom
                .get_name()
                .map_err(|e| anyhow!("{}: {}", self.uri, e.message()))?;
            let mark = read_mark(&self.domain_xml_of(&dom)?)?;
            match mark {
                Some(m) if m.lab == lab.name => {
                    if dom.is_active().unwrap_or(false) {
                        dom.destroy().map_err(|e| {
                            anyhow!("{}: destroying domain {name}: {}", self.uri, e.message())
                        })?;
                    }
                    dom.undefine_flags(sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
                        .or_else(|_| dom.undefine())
                        .map_err(|e| {
                            anyhow!("{}: undefining domain {name}: {}", self.uri, e.message())
                        })?;
                    report.domains_removed.push(name);
                }
                _ => {
                    if lab.nodes.iter().any(|n| lab.domain_name(n) == name) {
                        report.kept.push(format!(
                            "domain {name}: not created by duststack for lab {}",
                            lab.name
                        ));
                    }
                }
            }
        }
        let still_defined = self.domain_names()?;
        if let Some(info) = self.find_pool(lab, pool)? {
            let p = self.pool(&info.name)?;
            let _ = p.refresh(0);
            for node in &lab.nodes {
                if still_defined.contains(&lab.domain_name(node)) {
                    continue; // a foreign domain of that name may use them
                }
                let vname = volume_name(lab, node);
                if let Ok(vol) = StorageVol::lookup_by_name(&p, &vname) {
                    let xml = vol
                        .get_xml_desc(0)
                        .map_err(|e| anyhow!("{}: volume {vname}: {}", self.uri, e.message()))?;
                    if backing_path(&xml)?.as_deref() == Some(lab.base_image.as_str()) {
                        vol.delete(0).map_err(|e| {
                            anyhow!("{}: deleting volume {vname}: {}", self.uri, e.message())
                        })?;
                        report
                            .volumes_removed
                            .push(format!("{}/{vname}", info.name));
                    } else {
                        report.kept.push(format!(
                            "volume {}/{vname}: not an overlay on {}",
                            info.name, lab.base_image
                        ));
                    }
                }
                let sname = seed_volume_name(lab, node);
                if let Ok(vol) = StorageVol::lookup_by_name(&p, &sname) {
                    vol.delete(0).map_err(|e| {
                        anyhow!("{}: deleting volume {sname}: {}", self.uri, e.message())
                    })?;
                    report
                        .volumes_removed
                        .push(format!("{}/{sname}", info.name));
                }
            }
            if info.created_by_duststack && self.remove_own_pool_if_empty(lab)? {
                report.pools_removed.push(info.name.clone());
            }
        }
        let networks = self
            .conn
            .list_all_networks(0)
            .map_err(|e| anyhow!("{}: listing networks: {}", self.uri, e.message()))?;
        for net in networks {
            let name = net
                .get_name()
                .map_err(|e| anyhow!("{}: {}", self.uri, e.message()))?;
            let xml = net
                .get_xml_desc(0)
                .map_err(|e| anyhow!("{}: network {name}: {}", self.uri, e.message()))?;
            if read_mark(&xml)?.is_some_and(|m| m.lab == lab.name) {
                remove_network(&net).map_err(|e| {
                    anyhow!("{}: removing network {name}: {}", self.uri, e.message())
                })?;
                report.networks_removed.push(name);
            } else if let Some(model) = lab.network(&name) {
                let macs: Vec<String> = model
                    .hosts
                    .iter()
                    .map(|h| h.mac.to_ascii_lowercase())
                    .collect();
                for host in dhcp_hosts(&xml)?
                    .into_iter()
                    .filter(|h| macs.contains(&h.mac))
                {
                    let element = format!("<host mac='{}' ip='{}'/>", host.mac, host.ip);
                    self.update_dhcp_host(&net, sys::VIR_NETWORK_UPDATE_COMMAND_DELETE, &element)
                        .map_err(|e| {
                            anyhow!(
                                "{}: removing the reservation of {} from network {name}: {}",
                                self.uri,
                                host.mac,
                                e.message()
                            )
                        })?;
                    report
                        .reservations_removed
                        .push(format!("{name}: {} {}", host.mac, host.ip));
                }
                report
                    .kept
                    .push(format!("network {name}: not created by duststack, kept"));
            }
        }
        self.verify_gone(lab, &report, pool)?;
        Ok(report)
    }

    /// Lists again after `destroy_lab`: fails if a domain or network marked for this lab, or a
    /// deleted volume, is still there.
    fn verify_gone(
        &self,
        lab: &Lab,
        report: &DestroyReport,
        pool: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut left = Vec::new();
        for dom in self
            .conn
            .list_all_domains(0)
            .map_err(|e| anyhow!("{}: listing domains: {}", self.uri, e.message()))?
        {
            if read_mark(&self.domain_xml_of(&dom)?)?.is_some_and(|m| m.lab == lab.name) {
                left.push(format!("domain {}", dom.get_name().unwrap_or_default()));
            }
        }
        for net in self
            .conn
            .list_all_networks(0)
            .map_err(|e| anyhow!("{}: listing networks: {}", self.uri, e.message()))?
        {
            let xml = net.get_xml_desc(0).unwrap_or_default();
            if read_mark(&xml)
                .ok()
                .flatten()
                .is_some_and(|m| m.lab == lab.name)
            {
                left.push(format!("network {}", net.get_name().unwrap_or_default()));
            }
        }
        if let Some(info) = self.find_pool(lab, pool)? {
            let p = self.pool(&info.name)?;
            for v in &report.volumes_removed {
                let name = v.rsplit('/').next().unwrap_or(v);
                if StorageVol::lookup_by_name(&p, name).is_ok() {
                    left.push(format!("volume {v}"));
                }
            }
        }
        if !left.is_empty() {
            bail!(
                "{}: lab {} still has after removal: {}",
                self.uri,
                lab.name,
                left.join(", ")
            );
        }
        Ok(())
    }

    /// Defines a domain from raw XML (for tests and tools that bring their own XML).
    pub fn define_domain_xml(&self, xml: &str) -> anyhow::Result<()> {
        Domain::define_xml(&self.conn, xml)
            .map_err(|e| anyhow!("{}: defining domain: {}", self.uri, e.message()))?;
        Ok(())
    }

    /// Names of all domains (running or not).
    pub fn domain_names(&self) -> anyhow::Result<Vec<String>> {
        let doms = self
            .conn
            .list_all_domains(0)
            .map_err(|e| anyhow!("{}: listing domains: {}", self.uri, e.message()))?;
        doms.iter()
            .map(|d| d.get_name().map_err(|e| anyhow!("{}", e.message())))
            .collect()
    }

    /// Names of all networks (active or not).
    pub fn network_names(&self) -> anyhow::Result<Vec<String>> {
        let nets = self
            .conn
            .list_all_networks(0)
            .map_err(|e| anyhow!("{}: listing networks: {}", self.uri, e.message()))?;
        nets.iter()
            .map(|n| n.get_name().map_err(|e| anyhow!("{}", e.message())))
            .collect()
    }

    /// Names of the volumes in storage pool `pool`.
    pub fn volume_names(&self, pool: &str) -> anyhow::Result<Vec<String>> {
        let p = self.pool(pool)?;
        p.list_volumes()
            .map_err(|e| anyhow!("{}: listing volumes of {pool}: {}", self.uri, e.message()))
    }

    /// The persistent XML of domain `name` (None if absent).
    pub fn domain_xml(&self, name: &str) -> anyhow::Result<Option<String>> {
        match self.find_domain(name)? {
            Some(d) => Ok(Some(self.domain_xml_of(&d)?)),
            None => Ok(None),
        }
    }
}

/// Name of a node's overlay volume in its pool: `<lab>-<node>.<format>`.
pub fn volume_name(lab: &Lab, node: &Node) -> String {
    format!("{}.{}", lab.domain_name(node), node.disk_format)
}

fn change_word(change: &Change) -> &'static str {
    match change {
        Change::Created => "created",
        Change::Started => "started",
        Change::Unchanged => "unchanged",
    }
}

fn remove_network(net: &VirNetwork) -> Result<(), virt::error::Error> {
    if net.is_active()? {
        net.destroy()?;
    }
    // A transient network is gone once destroyed.
    if net.is_persistent().unwrap_or(true) {
        net.undefine()?;
    }
    Ok(())
}

/// The `<backingStore><path>` of a volume's XML.
fn backing_path(xml: &str) -> anyhow::Result<Option<String>> {
    let doc =
        roxmltree::Document::parse(xml).context("libvirt returned XML that does not parse")?;
    Ok(doc
        .root_element()
        .children()
        .find(|c| c.has_tag_name("backingStore"))
        .and_then(|b| b.children().find(|c| c.has_tag_name("path")))
        .and_then(|p| p.text())
        .map(|t| t.trim().to_string()))
}

/// Address and prefix of a network's `<ip>` element.
fn network_subnet(xml: &str) -> anyhow::Result<Option<(std::net::Ipv4Addr, u8)>> {
    let doc =
        roxmltree::Document::parse(xml).context("libvirt returned XML that does not parse")?;
    let Some(ip) = doc
        .root_element()
        .children()
        .find(|c| c.has_tag_name("ip") && c.attribute("family").unwrap_or("ipv4") == "ipv4")
    else {
        return Ok(None);
    };
    let Some(address) = ip.attribute("address").and_then(|a| a.parse().ok()) else {
        return Ok(None);
    };
    let prefix = match (ip.attribute("prefix"), ip.attribute("netmask")) {
        (Some(p), _) => p.parse().ok(),
        (None, Some(m)) => m
            .parse::<std::net::Ipv4Addr>()
            .ok()
            .map(|m| u32::from(m).count_ones() as u8),
        (None, None) => None,
    };
    Ok(prefix.map(|p| (address, p)))
}

/// The `<dhcp><host>` reservations of a network's XML (MACs lower-cased).
fn dhcp_hosts(xml: &str) -> anyhow::Result<Vec<DhcpHost>> {
    let doc =
        roxmltree::Document::parse(xml).context("libvirt returned XML that does not parse")?;
    let mut out = Vec::new();
    for host in doc.descendants().filter(|n| n.has_tag_name("host")) {
        if !host.parent().is_some_and(|p| p.has_tag_name("dhcp")) {
            continue;
        }
        let (Some(mac), Some(ip)) = (
            host.attribute("mac"),
            host.attribute("ip").and_then(|i| i.parse().ok()),
        ) else {
            continue;
        };
        out.push(DhcpHost {
            mac: mac.to_ascii_lowercase(),
            ip,
            name: host.attribute("name").unwrap_or("").to_string(),
        });
    }
    Ok(out)
}
