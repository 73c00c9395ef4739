//! etcd cluster membership for `join --control-plane` (add this host as a member before its
//! etcd starts) and `reset` (remove this host's member while the others keep quorum), over
//! mTLS with the control plane's `apiserver-etcd-client` certificate.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

/// One member as etcd lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Member id.
    pub id: u64,
    /// Name (empty until the member has started).
    pub name: String,
    /// Peer URLs.
    pub peer_urls: Vec<String>,
    /// Client URLs (empty until started).
    pub client_urls: Vec<String>,
}

/// A client of one etcd cluster.
pub struct Etcd {
    client: Client,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{}", path.display()))
}

impl Etcd {
    /// Connects to `endpoints` with the etcd CA and `apiserver-etcd-client` of `pki_dir`.
    pub async fn connect(endpoints: &[String], pki_dir: &Path) -> Result<Etcd> {
        let tls = TlsOptions::new()
            .ca_certificate(Certificate::from_pem(read(&pki_dir.join("etcd/ca.crt"))?))
            .identity(Identity::from_pem(
                read(&pki_dir.join("apiserver-etcd-client.crt"))?,
                read(&pki_dir.join("apiserver-etcd-client.key"))?,
            ));
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(10))
            .with_tls(tls);
        let client = Client::connect(endpoints, Some(opts))
            .await
            .with_context(|| format!("connecting to etcd at {}", endpoints.join(",")))?;
        Ok(Etcd { client })
    }

    /// Every member.
    pub async fn members(&mut self) -> Result<Vec<Member>> {
        let resp = self
            .client
            .member_list()
            .await
            .context("listing etcd members")?;
        Ok(resp
            .members()
            .iter()
            .map(|m| Member {
                id: m.id(),
                name: m.name().to_string(),
                peer_urls: m.peer_urls().to_vec(),
                client_urls: m.client_urls().to_vec(),
            })
            .collect())
    }

    /// The id of the member answering on the endpoint this client is connected to.
    pub async fn local_member_id(&mut self) -> Result<u64> {
        let status = self.client.status().await.context("etcd status")?;
        status
            .header()
            .map(|h| h.member_id())
            .ok_or_else(|| anyhow!("etcd status has no header"))
    }

    /// Adds a member with `peer_url`; returns the `--initial-cluster` value the new member
    /// starts with (every member's `name=peer`, the new one as `name`).
    pub async fn add(&mut self, name: &str, peer_url: &str) -> Result<String> {
        let existing = self.members().await?;
        if let Some(m) = existing
            .iter()
            .find(|m| m.peer_urls.iter().any(|u| u == peer_url))
        {
            // A retried join: the member was added before its etcd ever started.
            if !m.name.is_empty() && m.name != name {
                return Err(anyhow!(
                    "etcd already has member {} with peer URL {peer_url}",
                    m.name
                ));
            }
        } else {
            self.client
                .member_add([peer_url], None)
                .await
                .with_context(|| format!("adding etcd member {name} ({peer_url})"))?;
        }
        let members = self.members().await?;
        let mut parts = Vec::new();
        for m in members {
            let member_name = if m.peer_urls.iter().any(|u| u == peer_url) {
                name.to_string()
            } else {
                m.name.clone()
            };
            if member_name.is_empty() {
                continue;
            }
            for u in &m.peer_urls {
                parts.push(format!("{member_name}={u}"));
            }
        }
        Ok(parts.join(","))
    }

    /// Removes member `id`.
    pub async fn remove(&mut self, id: u64) -> Result<()> {
        self.client
            .member_remove(id)
            .await
            .with_context(|| format!("removing etcd member {id:x}"))?;
        Ok(())
    }
}
