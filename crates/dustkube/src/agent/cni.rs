//! Pod networking of this node: once the control plane gave the Node a `spec.podCIDR`, the CNI
//! conflist (bridge with a per-node name, gateway and masquerade; host-local IPAM on the CIDR;
//! portmap; loopback) goes into the runtime's CNI conf dir; and every other node's pod CIDR is
//! routed via that node's InternalIP, so pods on different nodes reach each other.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};

use super::Agent;

/// The conflist's file name in the CNI conf dir.
pub const CONF_FILE: &str = "10-dustkube.conflist";

/// How often the Node objects are read.
const POLL: Duration = Duration::from_secs(3);

/// The bridge's name on this node: `dk-` + the node name (interface names have 15 bytes).
pub fn bridge_name(node: &str) -> String {
    let clean: String = node
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    if clean.len() <= 12 {
        return format!("dk-{clean}");
    }
    let hash: u32 = node
        .bytes()
        .fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619));
    format!("dk-{}{:04x}", &clean[..8], hash & 0xffff)
}

/// The conflist for `pod_cidr`.
pub fn conflist(node: &str, pod_cidr: &str, data_dir: &Path) -> Value {
    json!({
        "cniVersion": "0.4.0",
        "name": "dustkube",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge_name(node),
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": data_dir.to_string_lossy(),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "loopback"},
        ],
    })
}

/// Writes the conflist when its content differs (atomically: the runtime watches the dir).
fn write_conflist(agent: &Agent, pod_cidr: &str) -> Result<bool> {
    let dir = &agent.args.cni_conf_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let data_dir = agent.path("cni/networks");
    std::fs::create_dir_all(&data_dir)?;
    let text = serde_json::to_string_pretty(&conflist(&agent.node_name, pod_cidr, &data_dir))?;
    let path = dir.join(CONF_FILE);
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
        return Ok(false);
    }
    let tmp = dir.join(format!(".{CONF_FILE}.tmp"));
    std::fs::write(&tmp, &text).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(true)
}

fn internal_ip(node: &Value) -> Option<String> {
    node.pointer("/status/addresses")?
        .as_array()?
        .iter()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str())
        .map(String::from)
}

async fn ip(args: &[&str]) -> Result<()> {
    let out = tokio::process::Command::new("ip")
        .args(args)
        .output()
        .await
        .context("running ip")?;
    if !out.status.success() {
        return Err(anyhow!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Keeps the routes to the other nodes' pod CIDRs: adds/replaces wanted ones, deletes the ones
/// this agent added for nodes that are gone.
async fn sync_routes(wanted: &BTreeMap<String, String>, installed: &mut BTreeMap<String, String>) {
    for (cidr, via) in wanted {
        if installed.get(cidr) == Some(via) {
            continue;
        }
        match ip(&["route", "replace", cidr, "via", via]).await {
            Ok(()) => {
                tracing::info!(%cidr, %via, "route to pod CIDR");
                installed.insert(cidr.clone(), via.clone());
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot add route"),
        }
    }
    let stale: Vec<String> = installed
        .keys()
        .filter(|c| !wanted.contains_key(*c))
        .cloned()
        .collect();
    for cidr in stale {
        if let Err(e) = ip(&["route", "del", &cidr]).await {
            tracing::debug!(error = %format!("{e:#}"), "route already gone");
        }
        installed.remove(&cidr);
    }
}

/// Polls the Node objects: writes the conflist for this node's CIDR, routes the others'.
pub async fn run(agent: Arc<Agent>) {
    let mut installed: BTreeMap<String, String> = BTreeMap::new();
    let mut forwarding = false;
    loop {
        match super::client::list(&agent.api, "/api/v1/nodes").await {
            Ok((nodes, _)) => {
                let mut wanted = BTreeMap::new();
                for n in &nodes {
                    let name = n.pointer("/metadata/name").and_then(Value::as_str);
                    let cidr = n.pointer("/spec/podCIDR").and_then(Value::as_str);
                    let Some(cidr) = cidr else { continue };
                    if name == Some(agent.node_name.as_str()) {
                        if !forwarding {
                            forwarding =
                                std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").is_ok();
                        }
                        match write_conflist(&agent, cidr) {
                            Ok(true) => tracing::info!(pod_cidr = cidr, "CNI config written"),
                            Ok(false) => {}
                            Err(e) => {
                                tracing::warn!(error = %format!("{e:#}"), "cannot write the CNI config")
                            }
                        }
                        agent.pod_cidr.send_if_modified(|c| {
                            let changed = c.as_deref() != Some(cidr);
                            *c = Some(cidr.to_string());
                            changed
                        });
                    } else if let Some(ip) = internal_ip(n) {
                        if ip != agent.node_ip.to_string() {
                            wanted.insert(cidr.to_string(), ip);
                        }
                    }
                }
                sync_routes(&wanted, &mut installed).await;
            }
            Err(e) => tracing::debug!(error = %format!("{e:#}"), "cannot list nodes"),
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_names_fit_and_differ() {
        assert_eq!(bridge_name("node-1"), "dk-node-1");
        let a = bridge_name("a-very-long-node-name-1");
        let b = bridge_name("a-very-long-node-name-2");
        assert!(a.len() <= 15 && b.len() <= 15);
        assert_ne!(a, b);
    }

    #[test]
    fn conflist_uses_the_cidr() {
        let c = conflist("n1", "10.244.3.0/24", Path::new("/x"));
        assert_eq!(
            c["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.244.3.0/24"
        );
        assert_eq!(c["plugins"][0]["bridge"], "dk-n1");
    }
}
