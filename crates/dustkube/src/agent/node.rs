//! The Node object of this host: registration (create, or adopt the existing one), status
//! (addresses, capacity, conditions from the runtime's readiness, nodeInfo, the agent's port)
//! and the Lease heartbeat in `kube-node-lease`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use k8s_cri::v1::VersionResponse;
use serde_json::{json, Value};

use super::Agent;
use crate::api::discovery::KUBE_VERSION;

/// The pod capacity every node advertises.
pub const MAX_PODS: u32 = 110;

/// Status is re-sent at least this often even when nothing changed (lastHeartbeatTime).
const STATUS_REFRESH: Duration = Duration::from_secs(60);

/// RFC 3339 with seconds (metav1.Time).
pub fn now_time() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// RFC 3339 with microseconds (metav1.MicroTime).
pub fn now_micro() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// The version the agent reports as kubeletVersion (the server's, so `kubectl get nodes` matches).
pub fn agent_version() -> String {
    format!(
        "v{}.{}.0-dustkube.{}",
        KUBE_VERSION.0,
        KUBE_VERSION.1,
        env!("CARGO_PKG_VERSION")
    )
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn memory_kib() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn os_image() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

/// Bytes of the filesystem holding `path` (ephemeral-storage capacity).
fn disk_bytes(path: &std::path::Path) -> u64 {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return 0;
    };
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    st.f_blocks as u64 * st.f_frsize as u64
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// What the node reports: capacity, nodeInfo, addresses, port.
fn static_status(agent: &Agent, version: &VersionResponse) -> Value {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let capacity = json!({
        "cpu": cpus.to_string(),
        "memory": format!("{}Ki", memory_kib()),
        "pods": MAX_PODS.to_string(),
        "ephemeral-storage": format!("{}Ki", disk_bytes(&agent.args.root_dir) / 1024),
    });
    json!({
        "capacity": capacity,
        "allocatable": capacity,
        "addresses": [
            {"type": "InternalIP", "address": agent.node_ip.to_string()},
            {"type": "Hostname", "address": agent.node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": agent.args.port}},
        "nodeInfo": {
            "machineID": read_trimmed("/etc/machine-id"),
            "systemUUID": read_trimmed("/sys/class/dmi/id/product_uuid"),
            "bootID": read_trimmed("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": read_trimmed("/proc/sys/kernel/osrelease"),
            "osImage": os_image(),
            "containerRuntimeVersion": format!("{}://{}", version.runtime_name, version.runtime_version),
            "kubeletVersion": agent_version(),
            "kubeProxyVersion": agent_version(),
            "operatingSystem": "linux",
            "architecture": arch(),
        },
    })
}

/// The four conditions; Ready follows the runtime's RuntimeReady and NetworkReady.
fn conditions(runtime: &[(String, bool, String)], old: &Value) -> Vec<Value> {
    let now = now_time();
    let not_ready: Vec<String> = if runtime.is_empty() {
        vec!["container runtime is not answering".into()]
    } else {
        runtime
            .iter()
            .filter(|(_, ok, _)| !ok)
            .map(|(t, _, m)| format!("{t}=false: {m}"))
            .collect()
    };
    let (ready, reason, message) = if not_ready.is_empty() {
        (
            "True",
            "KubeletReady",
            "kubelet is posting ready status".to_string(),
        )
    } else {
        (
            "False",
            "KubeletNotReady",
            format!("container runtime not ready: {}", not_ready.join("; ")),
        )
    };
    let cond = |ty: &str, status: &str, reason: &str, message: &str| {
        let previous = old
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|c| c["type"] == ty));
        let transition = match previous {
            Some(p) if p["status"] == status => p["lastTransitionTime"].clone(),
            _ => json!(now),
        };
        json!({
            "type": ty, "status": status,
            "lastHeartbeatTime": now, "lastTransitionTime": transition,
            "reason": reason, "message": message,
        })
    };
    vec![
        cond(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        cond(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        cond(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        cond("Ready", ready, reason, &message),
    ]
}

fn labels(agent: &Agent) -> Value {
    json!({
        "kubernetes.io/hostname": agent.node_name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch(),
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": arch(),
    })
}

/// Creates the Node, or takes over the existing one (labels merged); returns it.
async fn register(agent: &Agent, status: &Value) -> Result<Value> {
    let path = format!("/api/v1/nodes/{}", agent.node_name);
    let body = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": agent.node_name, "labels": labels(agent)},
        "spec": {},
        "status": status,
    });
    let r = agent
        .api
        .request("POST", "/api/v1/nodes", Some(&body))
        .await?;
    if r.ok() {
        tracing::info!(node = %agent.node_name, "registered the node");
        return Ok(r.body);
    }
    if r.status != 409 {
        return Err(anyhow!(
            "registering node {}: {} {}",
            agent.node_name,
            r.status,
            r.message()
        ));
    }
    let patch = json!({"metadata": {"labels": labels(agent)}});
    let node = agent.api.expect_ok("PATCH", &path, Some(&patch)).await?;
    tracing::info!(node = %agent.node_name, "node already registered; taking it over");
    Ok(node)
}

/// Renews (or creates) this node's Lease.
async fn renew_lease(agent: &Agent, node_uid: &str) -> Result<()> {
    let base = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";
    let path = format!("{base}/{}", agent.node_name);
    let spec = json!({
        "holderIdentity": agent.node_name,
        "leaseDurationSeconds": 40,
        "renewTime": now_micro(),
    });
    match agent.api.get(&path).await? {
        Some(mut lease) => {
            lease["spec"] = spec;
            agent.api.expect_ok("PUT", &path, Some(&lease)).await?;
        }
        None => {
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": agent.node_name,
                    "namespace": "kube-node-lease",
                    "ownerReferences": [{
                        "apiVersion": "v1", "kind": "Node",
                        "name": agent.node_name, "uid": node_uid,
                    }],
                },
                "spec": spec,
            });
            agent.api.expect_ok("POST", base, Some(&lease)).await?;
        }
    }
    Ok(())
}

/// Registers the node, then renews the Lease every `--lease-interval` seconds and sends the
/// status when it changes (and at least every minute). Errors are logged and retried.
pub async fn run(agent: Arc<Agent>, version: VersionResponse) {
    let interval = Duration::from_secs(agent.args.lease_interval.max(1));
    let base = static_status(&agent, &version);
    let mut node = Value::Null;
    let mut last_sent: Option<(Value, Instant)> = None;
    loop {
        if node.is_null() {
            let runtime = agent.cri.conditions().await.unwrap_or_default();
            let mut status = base.clone();
            status["conditions"] = json!(conditions(&runtime, &Value::Null));
            match register(&agent, &status).await {
                Ok(n) => node = n,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "node registration failed; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
            }
        }
        let uid = node
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if let Err(e) = renew_lease(&agent, &uid).await {
            tracing::warn!(error = %format!("{e:#}"), "lease renewal failed");
        }
        let runtime = agent.cri.conditions().await.unwrap_or_default();
        let conds = conditions(&runtime, &node);
        let summary: Vec<(Value, Value)> = conds
            .iter()
            .map(|c| (c["type"].clone(), c["status"].clone()))
            .collect();
        let due = match &last_sent {
            Some((s, at)) => *s != json!(summary) || at.elapsed() >= STATUS_REFRESH,
            None => true,
        };
        if due {
            let mut status = base.clone();
            status["conditions"] = json!(conds);
            let path = format!("/api/v1/nodes/{}/status", agent.node_name);
            match agent
                .api
                .request("PATCH", &path, Some(&json!({"status": status})))
                .await
            {
                Ok(r) if r.ok() => {
                    node = r.body;
                    last_sent = Some((json!(summary), Instant::now()));
                }
                Ok(r) if r.status == 404 => {
                    tracing::warn!("the Node object is gone; registering again");
                    node = Value::Null;
                    last_sent = None;
                    continue;
                }
                Ok(r) => {
                    tracing::warn!(status = r.status, message = %r.message(), "node status update failed")
                }
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "node status update failed"),
            }
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_follows_the_runtime() {
        let ok = vec![
            ("RuntimeReady".to_string(), true, String::new()),
            ("NetworkReady".to_string(), true, String::new()),
        ];
        let c = conditions(&ok, &Value::Null);
        assert_eq!(c[3]["type"], "Ready");
        assert_eq!(c[3]["status"], "True");
        let bad = vec![
            ("RuntimeReady".to_string(), true, String::new()),
            (
                "NetworkReady".to_string(),
                false,
                "cni config uninitialized".to_string(),
            ),
        ];
        let c = conditions(&bad, &Value::Null);
        assert_eq!(c[3]["status"], "False");
        assert!(c[3]["message"].as_str().unwrap().contains("cni config"));
    }
}
