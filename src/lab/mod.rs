//! Lab provisioning, pure part: turns an inventory into a lab description and renders
//! everything a hypervisor needs to build it (no I/O here).
//!
//! `duststack lab up -i inventory/classroom` runs these phases:
//!
//! 1. **validate**: [`model::Lab::from_inventory`] reads the seed's variables (`k8s_master_nodes`,
//!    `k8s_nodes`, `k8s_utility_nodes`, `vcpu`, `vmem`, `virt_disk_size`, `nic1`, `nic2`,
//!    `virt_type`, `base_image`, `ssh_key`, ...) and fails early with clear messages;
//!    every MAC, address and machine id is decided here, deterministically.
//! 2. **networks**: [`libvirt_xml::network_xml`] (NAT `default`, isolated `internal`, DHCP
//!    reservations per node); [`libvirt_xml::dhcp_host_xml`] for a `default` that already exists.
//! 3. **volumes**: [`libvirt_xml::volume_xml`], a qcow2 overlay per node on the base image
//!    (never overwriting an existing disk is the caller's job).
//! 4. **seeds**: [`seed`] renders NoCloud `meta-data`, `user-data`, `network-config` and
//!    generates ed25519 host keys, so known_hosts entries are exact before first boot.
//! 5. **domains**: [`libvirt_xml::domain_xml`] (direct kernel boot, overlay + seed disks, two
//!    NICs, logged serial console, `<metadata>` marking the lab so `lab down` removes exactly
//!    what duststack created).
//! 6. **start**, 7. **wait for SSH** on the reserved addresses, 8. **write**
//!    `inventory/generated/<lab>.yml`: done by the I/O layer.
//!
//! [`libvirt`] is that I/O layer for libvirt (steps 2, 3, 5 and 6, plus status and `down`).
//!
//! [`hyperv`] renders the same lab as PowerShell scripts (up, wait for addresses, down).

pub mod generated;
pub mod hyperv;
pub mod kvm;
#[cfg(feature = "libvirt")]
pub mod libvirt;
pub mod libvirt_xml;
pub mod model;
#[cfg(feature = "libvirt")]
pub mod provision;
pub mod seed;
pub mod seed_image;
pub mod seed_iso;
pub mod seeding;
pub mod ssh_wait;
