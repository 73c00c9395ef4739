//! Seeds for lab VMs, independent of the hypervisor: the user's keys, the host key generated
//! once per VM (or read back from its existing seed), and the seed image in the format the
//! hypervisor attaches (FAT disk for libvirt, ISO 9660 DVD for Hyper-V).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};

use super::model::{Lab, Node, SshKeySource};
use super::seed::{self, HostKey};
use super::seed_image;
use crate::connection::spec::expand_tilde;

/// The user's public key line(s) from `ssh_key`.
pub fn authorized_keys(lab: &Lab) -> anyhow::Result<Vec<String>> {
    match &lab.ssh_public_key {
        SshKeySource::Literal(line) => Ok(vec![line.clone()]),
        SshKeySource::Path(path) => {
            let p = expand_tilde(path);
            let text = std::fs::read_to_string(&p).with_context(|| {
                format!(
                    "ssh_key: cannot read {} (create a key with `ssh-keygen -t ed25519` or point ssh_key at yours)",
                    p.display()
                )
            })?;
            Ok(text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect())
        }
    }
}

/// The private key matching `ssh_key` (its path without `.pub`), if that file exists.
pub fn default_private_key(lab: &Lab) -> Option<PathBuf> {
    match &lab.ssh_public_key {
        SshKeySource::Path(p) => {
            let private = expand_tilde(p.strip_suffix(".pub")?);
            private.exists().then_some(private)
        }
        SshKeySource::Literal(_) => None,
    }
}

/// How a seed volume is formatted: FAT for a libvirt disk, ISO 9660 for a Hyper-V DVD drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedFormat {
    /// FAT image labelled CIDATA ([`seed_image`]).
    Fat,
    /// ISO 9660 image (Rock Ridge + Joliet) labelled CIDATA ([`super::seed_iso`]).
    Iso,
}

impl SeedFormat {
    fn read(self, image: &[u8], path: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match self {
            SeedFormat::Fat => seed_image::read(image, path),
            SeedFormat::Iso => super::seed_iso::read(image, path),
        }
    }

    fn build(self, files: &[(String, Vec<u8>)]) -> anyhow::Result<Vec<u8>> {
        match self {
            SeedFormat::Fat => seed_image::build(files),
            SeedFormat::Iso => super::seed_iso::build(files),
        }
    }
}

/// A node's seed: `existing` (an earlier seed, kept: its host key is the VM's identity) gives
/// `(None, host public key)`; without one a host key is generated and the new seed image is
/// returned with it.
pub fn node_seed(
    lab: &Lab,
    node: &Node,
    authorized: &[String],
    existing: Option<&[u8]>,
    format: SeedFormat,
) -> anyhow::Result<(Option<Vec<u8>>, String)> {
    if let Some(image) = existing {
        let public = format
            .read(image, "duststack/ssh_host_ed25519_key.pub")?
            .ok_or_else(|| {
                anyhow!(
                    "the seed of {} has no duststack/ssh_host_ed25519_key.pub; \
                     run `lab down` and `lab up` to recreate the lab",
                    node.name
                )
            })?;
        return Ok((None, String::from_utf8_lossy(&public).trim().to_string()));
    }
    let hk: HostKey = seed::generate_host_key(&format!("root@{}", node.hostname))?;
    let rendered = seed::render(lab, node, authorized, std::slice::from_ref(&hk))?;
    let files = rendered.files(node, authorized, std::slice::from_ref(&hk))?;
    Ok((Some(format.build(&files)?), hk.public_line.clone()))
}

/// `p` made absolute (relative to the working directory), for files named in generated config.
pub fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}
