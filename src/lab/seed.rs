//! NoCloud seed content for a lab node (`meta-data`, `user-data`, `network-config`) and the
//! ed25519 host keys duststack generates so known_hosts entries are exact before first boot.

use ssh_key::{Algorithm, LineEnding, PrivateKey, PublicKey};

use super::model::{Lab, Node};

/// An SSH host key pair in OpenSSH formats.
#[derive(Clone, PartialEq, Eq)]
pub struct HostKey {
    /// `-----BEGIN OPENSSH PRIVATE KEY-----` ... (unencrypted, LF line endings).
    pub private_openssh: String,
    /// `ssh-ed25519 AAAA... comment`.
    pub public_line: String,
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostKey")
            .field("public_line", &self.public_line)
            .finish_non_exhaustive()
    }
}

/// Why a seed could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// Key generation or parsing failed.
    #[error("ssh key: {0}")]
    Key(#[from] ssh_key::Error),
    /// A key given as input is not a single OpenSSH line / PEM block.
    #[error("{what} is not a valid OpenSSH key: {why}")]
    BadKey {
        /// Which key.
        what: String,
        /// What is wrong with it.
        why: String,
    },
}

/// Generates a fresh ed25519 host key pair; `comment` ends up on the public line.
pub fn generate_host_key(comment: &str) -> Result<HostKey, SeedError> {
    let mut key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)?;
    key.set_comment(comment);
    let private_openssh = key.to_openssh(LineEnding::LF)?.to_string();
    let public_line = key.public_key().to_openssh()?;
    Ok(HostKey {
        private_openssh,
        public_line,
    })
}

/// A known_hosts line for `names` (host names and addresses) and a public key line
/// (its comment is dropped): `k8s-master-1,192.168.90.10 ssh-ed25519 AAAA...`.
pub fn known_hosts_line(names: &[String], public_line: &str) -> Result<String, SeedError> {
    let key = PublicKey::from_openssh(public_line.trim())?;
    let mut bare = key.clone();
    bare.set_comment("");
    Ok(format!(
        "{} {}",
        names.join(","),
        bare.to_openssh()?.trim_end()
    ))
}

/// The three files of a NoCloud seed (to be put on an ISO 9660 volume labelled `cidata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// `meta-data`.
    pub meta_data: String,
    /// `user-data` (`#cloud-config`).
    pub user_data: String,
    /// `network-config` (netplan version 2).
    pub network_config: String,
    /// systemd-networkd files for the duststack image (`duststack/network/`).
    pub networkd: Vec<(String, String)>,
}

/// Renders all seed files for `node`: `authorized_keys` are the user's public key lines,
/// `host_keys` the node's host key pairs (usually one from [`generate_host_key`]).
pub fn render(
    lab: &Lab,
    node: &Node,
    authorized_keys: &[String],
    host_keys: &[HostKey],
) -> Result<Seed, SeedError> {
    Ok(Seed {
        meta_data: meta_data(lab, node),
        user_data: user_data(node, authorized_keys, host_keys)?,
        network_config: network_config(lab, node),
        networkd: networkd_files(lab, node),
    })
}

/// YAML double-quoted scalar (a JSON string is one).
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// `meta-data`: an instance id unique per lab and node, and the host name.
pub fn meta_data(lab: &Lab, node: &Node) -> String {
    format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        q(&format!(
            "{}-{}-{}",
            lab.name,
            node.name,
            &node.machine_id[..8]
        )),
        q(&node.hostname)
    )
}

/// The cloud-init `ssh_keys` name prefix for a public key line (`ed25519`, `ecdsa`, `rsa`).
fn key_kind(public_line: &str) -> Result<&'static str, SeedError> {
    let key = PublicKey::from_openssh(public_line.trim())?;
    match key.algorithm() {
        Algorithm::Ed25519 => Ok("ed25519"),
        Algorithm::Ecdsa { .. } => Ok("ecdsa"),
        Algorithm::Rsa { .. } => Ok("rsa"),
        other => Err(SeedError::BadKey {
            what: "host key".into(),
            why: format!("{other} host keys are not supported by cloud-init"),
        }),
    }
}

/// `user-data`: host name, the user's keys for root and a `duststack` sudo user,
/// the pre-generated host keys (kept: `ssh_deletekeys: false`), no password logins.
pub fn user_data(
    node: &Node,
    authorized_keys: &[String],
    host_keys: &[HostKey],
) -> Result<String, SeedError> {
    let mut keys = Vec::new();
    for (i, k) in authorized_keys.iter().enumerate() {
        let k = k.trim();
        if k.contains(['\n', '\r']) {
            return Err(SeedError::BadKey {
                what: format!("authorized key {}", i + 1),
                why: "it spans several lines".into(),
            });
        }
        PublicKey::from_openssh(k).map_err(|e| SeedError::BadKey {
            what: format!("authorized key {}", i + 1),
            why: e.to_string(),
        })?;
        keys.push(q(k));
    }
    // A YAML list at `indent` (flow `[]` when empty).
    let list = |indent: &str| {
        if keys.is_empty() {
            " []\n".to_string()
        } else {
            keys.iter()
                .map(|k| format!("\n{indent}- {k}"))
                .collect::<String>()
                + "\n"
        }
    };
    let mut out = String::from("#cloud-config\n");
    out.push_str(&format!("hostname: {}\n", q(&node.hostname)));
    out.push_str("preserve_hostname: false\n");
    out.push_str("disable_root: false\n");
    out.push_str("ssh_pwauth: false\n");
    out.push_str("ssh_authorized_keys:");
    out.push_str(&list("  "));
    out.push_str("users:\n");
    out.push_str("  - name: duststack\n");
    out.push_str("    gecos: duststack automation\n");
    out.push_str("    shell: /bin/bash\n");
    out.push_str("    lock_passwd: true\n");
    out.push_str("    sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n");
    out.push_str("    ssh_authorized_keys:");
    out.push_str(&list("      "));
    out.push_str("ssh_deletekeys: false\n");
    if !host_keys.is_empty() {
        out.push_str("ssh_keys:\n");
        for hk in host_keys {
            let kind = key_kind(&hk.public_line)?;
            let private = PrivateKey::from_openssh(hk.private_openssh.trim())?;
            let public = PublicKey::from_openssh(hk.public_line.trim())?;
            if private.public_key().key_data() != public.key_data() {
                return Err(SeedError::BadKey {
                    what: format!("{kind} host key"),
                    why: "the public line does not belong to the private key".into(),
                });
            }
            // Re-encode: the block below is then guaranteed to be plain base64 PEM lines.
            let pem = private.to_openssh(LineEnding::LF)?;
            out.push_str(&format!("  {kind}_private: |\n"));
            for line in pem.lines() {
                out.push_str(&format!("    {line}\n"));
            }
            out.push_str(&format!("  {kind}_public: {}\n", q(hk.public_line.trim())));
        }
    }
    Ok(out)
}

/// `network-config` v2: DHCP on the NAT NIC (its address is reserved by MAC), the static
/// internal address on the isolated NIC; both matched by MAC.
/// The NAT network's gateway (also its DNS server: libvirt's dnsmasq) for a node.
fn nat_gateway(lab: &Lab, node: &Node) -> std::net::Ipv4Addr {
    let nat = node.nat_nic();
    lab.network(&nat.network)
        .map(|n| n.gateway())
        .unwrap_or_else(|| {
            let mask = u32::MAX << (32 - u32::from(nat.prefix.clamp(1, 32)));
            std::net::Ipv4Addr::from((u32::from(nat.ip) & mask) + 1)
        })
}

/// systemd-networkd files for the duststack image's seed applier (`duststack/network/`), both
/// NICs matched by MAC and addressed statically: nic1 with its reserved address, the gateway
/// and DNS of the NAT network (no dependence on DHCP: a lease dnsmasq still holds for a VM of
/// an earlier lab can never move a node off its address), nic2 with its internal address.
pub fn networkd_files(lab: &Lab, node: &Node) -> Vec<(String, String)> {
    let nat = node.nat_nic();
    let internal = node.internal_nic();
    let gw = nat_gateway(lab, node);
    vec![
        (
            "10-nic1.network".into(),
            format!(
                "[Match]\nMACAddress={}\n\n[Network]\nAddress={}/{}\nGateway={gw}\nDNS={gw}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
                nat.mac, nat.ip, nat.prefix
            ),
        ),
        (
            "20-nic2.network".into(),
            format!(
                "[Match]\nMACAddress={}\n\n[Network]\nAddress={}/{}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
                internal.mac, internal.ip, internal.prefix
            ),
        ),
    ]
}

impl Seed {
    /// Every file of the seed volume with its path: the NoCloud trio at the root (read by
    /// cloud-init in cloud images) and `duststack/…` (read by the duststack image's
    /// `duststack-seed` service): hostname, authorized_keys, host keys, networkd files.
    pub fn files(
        &self,
        node: &Node,
        authorized_keys: &[String],
        host_keys: &[HostKey],
    ) -> Result<Vec<(String, Vec<u8>)>, SeedError> {
        let mut out = vec![
            ("meta-data".to_string(), self.meta_data.clone().into_bytes()),
            ("user-data".to_string(), self.user_data.clone().into_bytes()),
            (
                "network-config".to_string(),
                self.network_config.clone().into_bytes(),
            ),
            (
                "duststack/hostname".to_string(),
                format!("{}\n", node.hostname).into_bytes(),
            ),
        ];
        let mut keys = String::new();
        for k in authorized_keys {
            keys.push_str(k.trim());
            keys.push('\n');
        }
        out.push(("duststack/authorized_keys".into(), keys.into_bytes()));
        for hk in host_keys {
            let kind = key_kind(&hk.public_line)?;
            out.push((
                format!("duststack/ssh_host_{kind}_key"),
                hk.private_openssh.clone().into_bytes(),
            ));
            out.push((
                format!("duststack/ssh_host_{kind}_key.pub"),
                format!("{}\n", hk.public_line.trim()).into_bytes(),
            ));
        }
        for (name, text) in &self.networkd {
            out.push((
                format!("duststack/network/{name}"),
                text.clone().into_bytes(),
            ));
        }
        Ok(out)
    }
}

pub fn network_config(lab: &Lab, node: &Node) -> String {
    let nat = node.nat_nic();
    let internal = node.internal_nic();
    let gw = nat_gateway(lab, node).to_string();
    format!(
        "version: 2\nethernets:\n  nic1:\n    match:\n      macaddress: {}\n    dhcp4: false\n    addresses:\n      - {}\n    routes:\n      - to: default\n        via: {}\n    nameservers:\n      addresses:\n        - {}\n  nic2:\n    match:\n      macaddress: {}\n    dhcp4: false\n    addresses:\n      - {}\n",
        q(&nat.mac),
        q(&format!("{}/{}", nat.ip, nat.prefix)),
        q(&gw),
        q(&gw),
        q(&internal.mac),
        q(&format!("{}/{}", internal.ip, internal.prefix)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::yaml;
    use crate::lab::model::tests::sample_lab;
    use serde_json::Value;
    use std::path::Path;

    fn parse(text: &str) -> Value {
        yaml::parse_yaml(text, Path::new("seed")).unwrap()
    }

    #[test]
    fn lab_host_key_roundtrip() {
        let hk = generate_host_key("root@k8s-master-1").unwrap();
        assert!(hk
            .private_openssh
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        assert!(hk.public_line.starts_with("ssh-ed25519 "));
        assert!(hk.public_line.ends_with(" root@k8s-master-1"));
        let private = PrivateKey::from_openssh(&hk.private_openssh).unwrap();
        let public = PublicKey::from_openssh(&hk.public_line).unwrap();
        assert_eq!(private.public_key().key_data(), public.key_data());
        assert_eq!(private.algorithm(), Algorithm::Ed25519);
        // Two keys differ.
        let other = generate_host_key("x").unwrap();
        assert_ne!(
            other.public_line.split(' ').nth(1),
            hk.public_line.split(' ').nth(1)
        );

        let line = known_hosts_line(
            &["k8s-master-1".into(), "192.168.90.10".into()],
            &hk.public_line,
        )
        .unwrap();
        let b64 = hk.public_line.split(' ').nth(1).unwrap();
        assert_eq!(
            line,
            format!("k8s-master-1,192.168.90.10 ssh-ed25519 {b64}")
        );
    }

    #[test]
    fn lab_seed_files_parse_and_carry_values() {
        let lab = sample_lab();
        let node = &lab.nodes[0];
        let user_key = generate_host_key("me@laptop").unwrap().public_line;
        let hk = generate_host_key("root@k8s-master-1").unwrap();
        let seed = render(
            &lab,
            node,
            std::slice::from_ref(&user_key),
            std::slice::from_ref(&hk),
        )
        .unwrap();

        let meta = parse(&seed.meta_data);
        assert_eq!(meta["local-hostname"], "k8s-master-1");
        let iid = meta["instance-id"].as_str().unwrap();
        assert!(iid.starts_with("classroom-k8s-master-1-"), "{iid}");
        let other_iid = parse(&meta_data(&lab, &lab.nodes[1]))["instance-id"].clone();
        assert_ne!(meta["instance-id"], other_iid);

        assert!(seed.user_data.starts_with("#cloud-config\n"));
        let ud = parse(&seed.user_data);
        assert_eq!(ud["hostname"], "k8s-master-1");
        assert_eq!(ud["ssh_pwauth"], false);
        assert_eq!(ud["disable_root"], false);
        assert_eq!(ud["ssh_deletekeys"], false);
        assert_eq!(ud["ssh_authorized_keys"][0], user_key.as_str());
        let user = &ud["users"][0];
        assert_eq!(user["name"], "duststack");
        assert_eq!(user["sudo"], "ALL=(ALL) NOPASSWD:ALL");
        assert_eq!(user["ssh_authorized_keys"][0], user_key.as_str());
        let private = ud["ssh_keys"]["ed25519_private"].as_str().unwrap();
        let back = PrivateKey::from_openssh(private).unwrap();
        assert_eq!(
            back.public_key().key_data(),
            PublicKey::from_openssh(&hk.public_line).unwrap().key_data()
        );
        assert_eq!(ud["ssh_keys"]["ed25519_public"], hk.public_line.as_str());

        let net = parse(&seed.network_config);
        assert_eq!(net["version"], 2);
        let e = &net["ethernets"];
        assert_eq!(
            e["nic1"]["match"]["macaddress"],
            node.nat_nic().mac.as_str()
        );
        assert_eq!(e["nic1"]["dhcp4"], false);
        assert_eq!(e["nic1"]["addresses"][0], "192.168.122.10/24");
        assert_eq!(e["nic1"]["routes"][0]["via"], "192.168.122.1");
        assert_eq!(e["nic1"]["nameservers"]["addresses"][0], "192.168.122.1");
        let nd = networkd_files(&lab, node);
        assert!(
            nd[0]
                .1
                .contains("Address=192.168.122.10/24\nGateway=192.168.122.1\n"),
            "{nd:?}"
        );
        assert!(nd[1].1.contains("Address=192.168.90.10/24\n"), "{nd:?}");
        assert_eq!(
            e["nic2"]["match"]["macaddress"],
            node.internal_nic().mac.as_str()
        );
        assert_eq!(e["nic2"]["dhcp4"], false);
        assert_eq!(e["nic2"]["addresses"][0], "192.168.90.10/24");
    }

    #[test]
    fn lab_seed_rejects_bad_keys() {
        let lab = sample_lab();
        let node = &lab.nodes[0];
        let hk = generate_host_key("a").unwrap();
        let err = user_data(node, &["ssh-ed25519 AAAA\nruncmd: [x]".into()], &[]).unwrap_err();
        assert!(err.to_string().contains("authorized key 1"), "{err}");
        let err = user_data(node, &["not a key".into()], &[]).unwrap_err();
        assert!(matches!(err, SeedError::BadKey { .. }), "{err}");
        // No keys at all: empty lists, still valid YAML.
        let ud = parse(&user_data(node, &[], &[]).unwrap());
        assert_eq!(ud["ssh_authorized_keys"], serde_json::json!([]));
        assert_eq!(ud["users"][0]["ssh_authorized_keys"], serde_json::json!([]));
        assert!(ud.get("ssh_keys").is_none());
        let err = user_data(node, &["ecdsa-sha2-nistp256 !!".into()], &[]).unwrap_err();
        assert!(matches!(err, SeedError::BadKey { .. }), "{err}");
        let mismatched = HostKey {
            private_openssh: hk.private_openssh.clone(),
            public_line: generate_host_key("b").unwrap().public_line,
        };
        let err = user_data(node, &[], &[mismatched]).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
    }
}
