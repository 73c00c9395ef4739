//! Node IPAM: gives every node without `spec.podCIDR` the next free subnet of the cluster CIDR
//! (`--cluster-cidr`, 10.244.0.0/16 in /24s by default); the node agent builds its pod bridge
//! from it.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{anyhow, Context};
use serde_json::{json, Value};

use super::api_result::OrFail;
use super::client::Client;
use super::reconcile::run_loop;
use crate::resources::{name_of, nodes, str_at};

/// Component name of the Events this controller records.
pub const COMPONENT: &str = "node-ipam-controller";

/// An IPv4 network: base address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address.
    pub base: u32,
    /// The prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Parses `10.244.0.0/16` (host bits must be zero).
    pub fn parse(s: &str) -> anyhow::Result<Cidr> {
        let (ip, prefix) = s.split_once('/').context("expected ADDRESS/PREFIX")?;
        let ip: Ipv4Addr = ip
            .parse()
            .with_context(|| format!("{ip}: not an IPv4 address"))?;
        let prefix: u8 = prefix.parse().context("bad prefix length")?;
        if prefix > 32 {
            return Err(anyhow!("prefix length {prefix} is over 32"));
        }
        let base = u32::from(ip);
        if prefix < 32 && base & (u32::MAX >> prefix) != 0 {
            return Err(anyhow!("{s}: host bits are set"));
        }
        Ok(Cidr { base, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

/// The first `/mask` subnet of `cluster` not in `used`.
pub fn allocate(cluster: Cidr, mask: u8, used: &[String]) -> Option<String> {
    if mask < cluster.prefix || mask > 32 {
        return None;
    }
    let count: u64 = 1 << (mask - cluster.prefix);
    (0..count)
        .map(|i| Cidr {
            base: cluster.base | ((i as u32).checked_shl(32 - u32::from(mask)).unwrap_or(0)),
            prefix: mask,
        })
        .map(|c| c.to_string())
        .find(|c| !used.contains(c))
}

/// The controller's settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The cluster's pod network.
    pub cluster_cidr: Cidr,
    /// Prefix length of each node's subnet.
    pub node_mask: u8,
}

async fn sync(c: Client, s: Settings) -> anyhow::Result<()> {
    let (mut all, _) = c.list(&nodes::TYPE, None, "").await.or_fail()?;
    let mut used: Vec<String> = all
        .iter()
        .map(|n| str_at(n, "/spec/podCIDR").to_string())
        .filter(|c| !c.is_empty())
        .collect();
    all.sort_by(|a, b| {
        str_at(a, "/metadata/creationTimestamp").cmp(str_at(b, "/metadata/creationTimestamp"))
    });
    for node in all.iter().filter(|n| str_at(n, "/spec/podCIDR").is_empty()) {
        let Some(cidr) = allocate(s.cluster_cidr, s.node_mask, &used) else {
            let msg = format!("no free /{} left in {}", s.node_mask, s.cluster_cidr);
            c.event(node, "Normal", "CIDRNotAvailable", &msg).await;
            return Err(anyhow!("{}: {msg}", name_of(node)));
        };
        let mut n = node.clone();
        if !n.get("spec").is_some_and(Value::is_object) {
            n["spec"] = json!({});
        }
        n["spec"]["podCIDR"] = json!(cidr);
        n["spec"]["podCIDRs"] = json!([cidr]);
        c.update(&nodes::TYPE, n).await.or_fail()?;
        tracing::info!(node = name_of(node), %cidr, "allocated pod CIDR");
        used.push(cidr);
    }
    Ok(())
}

/// Runs the controller until aborted.
pub async fn run(client: Client, settings: Settings) {
    run_loop(
        client.as_component(COMPONENT),
        "node-ipam",
        &[&nodes::TYPE],
        Duration::from_secs(60),
        move |c| sync(c, settings),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_in_order_skipping_used_ones() {
        let c = Cidr::parse("10.244.0.0/16").unwrap();
        assert_eq!(allocate(c, 24, &[]).as_deref(), Some("10.244.0.0/24"));
        let used = vec!["10.244.0.0/24".to_string(), "10.244.2.0/24".to_string()];
        assert_eq!(allocate(c, 24, &used).as_deref(), Some("10.244.1.0/24"));
        let small = Cidr::parse("10.0.0.0/23").unwrap();
        let full = vec!["10.0.0.0/24".to_string(), "10.0.1.0/24".to_string()];
        assert_eq!(allocate(small, 24, &full), None);
        assert_eq!(
            allocate(small, 22, &[]),
            None,
            "mask wider than the cluster"
        );
        assert!(Cidr::parse("10.244.1.0/16").is_err());
        assert!(Cidr::parse("10.244.0.0").is_err());
        assert_eq!(
            Cidr::parse("10.244.0.0/16").unwrap().to_string(),
            "10.244.0.0/16"
        );
    }
}
