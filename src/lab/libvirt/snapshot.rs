//! `lab snapshot NAME` / `lab restore NAME`: one internal snapshot per lab domain (disk and, for
//! a running domain, memory, kept inside its qcow2 overlay), so a class can be reset to a
//! known point. The read-only seed disk is left out of every snapshot.

use anyhow::{anyhow, bail};
use virt::domain_snapshot::DomainSnapshot;
use virt::sys;

use super::Libvirt;
use crate::lab::libvirt_xml::escape;
use crate::lab::model::Lab;

impl Libvirt {
    /// Takes snapshot `name` of every lab domain. Fails before touching anything if a domain is
    /// missing or already has a snapshot of that name; if one domain fails, the snapshots taken
    /// by this call are deleted again.
    pub fn snapshot_lab(&self, lab: &Lab, name: &str) -> anyhow::Result<Vec<String>> {
        let mut domains = Vec::new();
        for node in &lab.nodes {
            let dname = lab.domain_name(node);
            let dom = self
                .find_domain(&dname)?
                .ok_or_else(|| anyhow!("domain {dname} does not exist; run `lab up` first"))?;
            if DomainSnapshot::lookup_by_name(&dom, name, 0).is_ok() {
                bail!("domain {dname} already has a snapshot called {name}; pick another name");
            }
            domains.push((dname, dom));
        }
        let xml = format!(
            "<domainsnapshot><name>{}</name><description>duststack lab {}</description>\
             <disks><disk name='vda' snapshot='internal'/><disk name='vdb' snapshot='no'/></disks>\
             </domainsnapshot>",
            escape(name),
            escape(&lab.name)
        );
        let mut taken = Vec::new();
        for (dname, dom) in &domains {
            match DomainSnapshot::create_xml(dom, &xml, sys::VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC) {
                Ok(_) => taken.push(dname.clone()),
                Err(e) => {
                    for (undo, d) in domains.iter().filter(|(n, _)| taken.contains(n)) {
                        if let Ok(s) = DomainSnapshot::lookup_by_name(d, name, 0) {
                            if let Err(err) = s.delete(0) {
                                eprintln!(
                                    "warning: could not delete snapshot {name} of {undo}: {}",
                                    err.message()
                                );
                            }
                        }
                    }
                    bail!(
                        "{}: snapshot {name} of {dname}: {}; no snapshot kept",
                        self.uri,
                        e.message()
                    );
                }
            }
        }
        Ok(taken)
    }

    /// Reverts every lab domain to snapshot `name` (a domain snapshotted while running is
    /// running again afterwards). Fails before reverting anything if one lacks the snapshot.
    pub fn restore_lab(&self, lab: &Lab, name: &str) -> anyhow::Result<Vec<String>> {
        let mut snaps = Vec::new();
        for node in &lab.nodes {
            let dname = lab.domain_name(node);
            let dom = self
                .find_domain(&dname)?
                .ok_or_else(|| anyhow!("domain {dname} does not exist"))?;
            let snap = DomainSnapshot::lookup_by_name(&dom, name, 0)
                .map_err(|_| anyhow!("domain {dname} has no snapshot called {name}"))?;
            snaps.push((dname, snap));
        }
        let mut done = Vec::new();
        for (dname, snap) in snaps {
            snap.revert(0).map_err(|e| {
                anyhow!("{}: reverting {dname} to {name}: {}", self.uri, e.message())
            })?;
            done.push(dname);
        }
        Ok(done)
    }

    /// Names of the snapshots of a lab node's domain.
    pub fn snapshot_names(&self, lab: &Lab, node: &str) -> anyhow::Result<Vec<String>> {
        let Some(n) = lab.node(node) else {
            bail!("no node {node} in lab {}", lab.name);
        };
        let dname = lab.domain_name(n);
        let Some(dom) = self.find_domain(&dname)? else {
            return Ok(Vec::new());
        };
        dom.list_all_snapshots(0)
            .map_err(|e| anyhow!("{}: {dname}: {}", self.uri, e.message()))?
            .iter()
            .map(|s| s.get_name().map_err(|e| anyhow!("{}", e.message())))
            .collect()
    }
}
