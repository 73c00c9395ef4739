//! `lab up`, `lab status` and `lab down` on Hyper-V, as visible phases over [`HyperVHost`]:
//! up = seeds (upload only what is missing or changed) → up script → poll the status script
//! until every VM reports its expected address → drift check; down = down script → a final
//! listing that must show nothing duststack created.

use std::net::Ipv4Addr;
use std::time::Instant;

use serde::Deserialize;
use serde_json::Value;

use super::host::{sha256_hex, HyperVError, HyperVHost};
use super::options::HyperVOptions;
use super::{render_down, render_file_hashes, render_status, render_up};
use crate::lab::model::Lab;

/// One thing a script did: `kind` (`switch`, `disk`, `vm`, `start`, `file`, `seed`), `name`
/// and `change` (`created`, `unchanged`, `existing`, `started`, `uploaded`, `removed`, `kept`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Item {
    /// What kind of object.
    pub kind: String,
    /// Its name or path.
    pub name: String,
    /// What happened to it.
    pub change: String,
}

impl Item {
    /// `kind name: change`, the step line shown to the user.
    pub fn step(&self) -> String {
        format!("{} {}: {}", self.kind, self.name, self.change)
    }

    /// Whether the item changed the host.
    pub fn changed(&self) -> bool {
        matches!(
            self.change.as_str(),
            "created" | "started" | "uploaded" | "removed"
        )
    }
}

/// The addresses one node's VM reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddresses {
    /// Inventory name of the node.
    pub node: String,
    /// VM name.
    pub vm: String,
    /// Every IPv4 address its adapters report (the expected internal one among them).
    pub addresses: Vec<Ipv4Addr>,
}

/// What `up` did.
#[derive(Debug, Clone, Default)]
pub struct UpReport {
    /// Everything the seed upload and the up script reported, in order.
    pub items: Vec<Item>,
    /// One line per item (`vm classroom-k8s-node-1: created`).
    pub steps: Vec<String>,
    /// The items that changed the host, as step lines (empty on a second `up`).
    pub created: Vec<String>,
    /// Addresses per node, in node order.
    pub addresses: Vec<NodeAddresses>,
    /// How many status polls the address wait took.
    pub polls: u32,
    /// Existing VMs whose size differs from the inventory (left as they are).
    pub drift: Vec<String>,
}

/// One row of `lab status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmStatus {
    /// Inventory name of the node.
    pub node: String,
    /// VM name.
    pub vm: String,
    /// Whether a VM of that name exists.
    pub exists: bool,
    /// Hyper-V state (`Running`, `Off`, ...), `absent` when missing.
    pub state: String,
    /// vCPUs.
    pub vcpu: Option<u32>,
    /// Startup memory in MiB.
    pub memory_mib: Option<u64>,
    /// Whether it carries this lab's marker.
    pub owned: bool,
    /// IPv4 addresses its adapters report.
    pub addresses: Vec<String>,
}

/// One poll of the lab (the status script's result).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listing {
    /// One row per lab node.
    pub vms: Vec<VmStatus>,
    /// Every VM carrying the lab's marker.
    pub marked_vms: Vec<String>,
    /// Every switch carrying the lab's marker.
    pub marked_switches: Vec<String>,
    /// Which of the lab's disk and seed files exist.
    pub files: Vec<String>,
}

/// What `down` did.
#[derive(Debug, Clone, Default)]
pub struct DownReport {
    /// Everything the down script reported.
    pub items: Vec<Item>,
    /// One line per item.
    pub steps: Vec<String>,
    /// What was removed (step lines).
    pub removed: Vec<String>,
    /// VMs with a lab node's name that duststack did not create, left alone.
    pub kept: Vec<String>,
}

#[derive(Deserialize)]
struct RawVm {
    name: String,
    exists: bool,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    vcpu: Option<u32>,
    #[serde(default)]
    memory_mib: Option<u64>,
    #[serde(default)]
    owned: bool,
    #[serde(default, deserialize_with = "one_or_many")]
    addresses: Vec<String>,
}

#[derive(Deserialize)]
struct RawListing {
    #[serde(default, deserialize_with = "one_or_many")]
    vms: Vec<RawVm>,
    #[serde(default, deserialize_with = "one_or_many")]
    marked_vms: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    marked_switches: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    files: Vec<String>,
}

/// Windows PowerShell's ConvertTo-Json writes a one-element collection in some positions as
/// the element itself and `$null` for none: accept a list, a single value or null.
fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let v = Value::deserialize(d)?;
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(a) => a
            .into_iter()
            .map(|x| serde_json::from_value(x).map_err(serde::de::Error::custom))
            .collect(),
        one => Ok(vec![
            serde_json::from_value(one).map_err(serde::de::Error::custom)?
        ]),
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    host: &HyperVHost,
    kind: &str,
    v: Value,
) -> Result<T, HyperVError> {
    serde_json::from_value(v.clone()).map_err(|e| HyperVError::BadReply {
        host: host.label().into(),
        kind: kind.into(),
        detail: format!("{e}: {v}"),
    })
}

fn items(host: &HyperVHost, kind: &str, v: &Value) -> Result<Vec<Item>, HyperVError> {
    #[derive(Deserialize)]
    struct Items {
        #[serde(default, deserialize_with = "one_or_many")]
        items: Vec<Item>,
    }
    Ok(parse::<Items>(host, kind, v.clone())?.items)
}

/// Brings the lab up on `host`: uploads each node's seed (`lab.seed_path(node)`, made by the
/// seed step) to `opts.seed_path` unless the host has it already, runs the up script, then
/// polls until every VM reports its internal address (the static one from its seed) or
/// `opts.wait_timeout` passes. A second `up` reports no change.
pub async fn up(
    lab: &Lab,
    opts: &HyperVOptions,
    host: &HyperVHost,
) -> Result<UpReport, HyperVError> {
    let mut report = UpReport::default();

    // 1. seeds
    let mut seeds = Vec::new();
    for node in &lab.nodes {
        let local = lab.seed_path(node);
        let data = std::fs::read(&local).map_err(|e| {
            HyperVError::Setup(format!(
                "seed image of {} is missing at {local} ({e}); it is made before the VMs",
                node.name
            ))
        })?;
        seeds.push((lab.domain_name(node), opts.seed_path(lab, node), data));
    }
    let paths: Vec<String> = seeds.iter().map(|(_, p, _)| p.clone()).collect();
    let present = host
        .run_script(
            "files",
            &render_file_hashes(&paths),
            &opts.script_path("files"),
        )
        .await?;
    #[derive(Deserialize)]
    struct Present {
        path: String,
        sha256: String,
    }
    #[derive(Deserialize)]
    struct Files {
        #[serde(default, deserialize_with = "one_or_many")]
        files: Vec<Present>,
    }
    let present = parse::<Files>(host, "files", present)?.files;
    for (vm, remote, data) in &seeds {
        let same = present
            .iter()
            .any(|p| &p.path == remote && p.sha256.eq_ignore_ascii_case(&sha256_hex(data)));
        let change = if same {
            "unchanged"
        } else {
            host.put(remote, data).await?;
            "uploaded"
        };
        report.items.push(Item {
            kind: "seed".into(),
            name: vm.clone(),
            change: change.into(),
        });
    }

    // 2. switches, disks, VMs, start
    let v = host
        .run_script("up", &render_up(lab, opts), &opts.script_path("up"))
        .await?;
    report.items.extend(items(host, "up", &v)?);
    report.steps = report.items.iter().map(Item::step).collect();
    report.created = report
        .items
        .iter()
        .filter(|i| i.changed())
        .map(Item::step)
        .collect();

    // 3. wait for addresses
    let started = Instant::now();
    let listing = loop {
        report.polls += 1;
        let listing = listing(lab, opts, host).await?;
        let missing: Vec<&VmStatus> = listing
            .vms
            .iter()
            .filter(|s| {
                let want = lab
                    .node(&s.node)
                    .map(|n| n.internal_nic().ip.to_string())
                    .unwrap_or_default();
                !s.addresses.contains(&want)
            })
            .collect();
        if missing.is_empty() {
            break listing;
        }
        if started.elapsed() + opts.poll_interval > opts.wait_timeout {
            let detail = missing
                .iter()
                .map(|s| {
                    let want = lab
                        .node(&s.node)
                        .map(|n| n.internal_nic().ip.to_string())
                        .unwrap_or_default();
                    format!(
                        "{} is {}, expected {want}, reports [{}]",
                        s.vm,
                        s.state,
                        s.addresses.join(", ")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(HyperVError::Timeout {
                host: host.label().into(),
                waited: started.elapsed(),
                missing: missing.iter().map(|s| s.vm.clone()).collect(),
                detail,
            });
        }
        tokio::time::sleep(opts.poll_interval).await;
    };
    for s in &listing.vms {
        report.addresses.push(NodeAddresses {
            node: s.node.clone(),
            vm: s.vm.clone(),
            addresses: s.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
        });
    }

    // 4. drift: existing VMs sized differently from the inventory
    for s in &listing.vms {
        let Some(node) = lab.node(&s.node) else {
            continue;
        };
        let mut diffs = Vec::new();
        if s.vcpu.is_some_and(|v| v != node.vcpu) {
            diffs.push(format!("vcpu {} → {}", s.vcpu.unwrap_or(0), node.vcpu));
        }
        if s.memory_mib.is_some_and(|m| m != node.memory_mib) {
            diffs.push(format!(
                "memory {} MiB → {} MiB",
                s.memory_mib.unwrap_or(0),
                node.memory_mib
            ));
        }
        if !diffs.is_empty() {
            report.drift.push(format!("{}: {}", s.vm, diffs.join(", ")));
        }
    }
    Ok(report)
}

/// One poll of the lab: VMs (by node), marked VMs and switches, and existing lab files.
pub async fn listing(
    lab: &Lab,
    opts: &HyperVOptions,
    host: &HyperVHost,
) -> Result<Listing, HyperVError> {
    let v = host
        .run_script(
            "status",
            &render_status(lab, opts),
            &opts.script_path("status"),
        )
        .await?;
    let raw: RawListing = parse(host, "status", v)?;
    let mut vms = Vec::new();
    for node in &lab.nodes {
        let vm = lab.domain_name(node);
        let row = match raw.vms.iter().find(|r| r.name == vm) {
            Some(r) if r.exists => VmStatus {
                node: node.name.clone(),
                vm,
                exists: true,
                state: r.state.clone().unwrap_or_else(|| "unknown".into()),
                vcpu: r.vcpu,
                memory_mib: r.memory_mib,
                owned: r.owned,
                addresses: r.addresses.clone(),
            },
            _ => VmStatus {
                node: node.name.clone(),
                vm,
                exists: false,
                state: "absent".into(),
                vcpu: None,
                memory_mib: None,
                owned: false,
                addresses: Vec::new(),
            },
        };
        vms.push(row);
    }
    Ok(Listing {
        vms,
        marked_vms: raw.marked_vms,
        marked_switches: raw.marked_switches,
        files: raw.files,
    })
}

/// `lab status`: one row per node (name, state, vCPUs, memory, addresses).
pub async fn status(
    lab: &Lab,
    opts: &HyperVOptions,
    host: &HyperVHost,
) -> Result<Vec<VmStatus>, HyperVError> {
    Ok(listing(lab, opts, host).await?.vms)
}

/// Tears the lab down (only what carries its marker) and verifies with a final listing that
/// no marked VM or switch and none of the lab's disk or seed files remain.
pub async fn down(
    lab: &Lab,
    opts: &HyperVOptions,
    host: &HyperVHost,
) -> Result<DownReport, HyperVError> {
    let v = host
        .run_script("down", &render_down(lab, opts), &opts.script_path("down"))
        .await?;
    let items = items(host, "down", &v)?;
    let after = listing(lab, opts, host).await?;
    let mut remaining: Vec<String> = Vec::new();
    remaining.extend(after.marked_vms.iter().map(|n| format!("vm {n}")));
    remaining.extend(
        after
            .vms
            .iter()
            .filter(|s| s.owned && !after.marked_vms.contains(&s.vm))
            .map(|s| format!("vm {}", s.vm)),
    );
    remaining.extend(after.marked_switches.iter().map(|n| format!("switch {n}")));
    let kept: Vec<String> = items
        .iter()
        .filter(|i| i.change == "kept")
        .map(|i| i.name.clone())
        .collect();
    // Files of a VM left alone (not duststack's) are not removed either.
    remaining.extend(
        after
            .files
            .iter()
            .filter(|f| !kept.iter().any(|k| f.contains(k.as_str())))
            .map(|f| format!("file {f}")),
    );
    if !remaining.is_empty() {
        return Err(HyperVError::Remains {
            host: host.label().into(),
            remaining,
        });
    }
    Ok(DownReport {
        steps: items.iter().map(Item::step).collect(),
        removed: items
            .iter()
            .filter(|i| i.change == "removed")
            .map(Item::step)
            .collect(),
        kept,
        items,
    })
}
