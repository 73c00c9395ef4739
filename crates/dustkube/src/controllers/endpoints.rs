//! The endpoints controller: for every Service with a selector, an Endpoints object of the
//! same name listing the matching pods' IPs — ready ones in `addresses`, others in
//! `notReadyAddresses` (each with nodeName and a targetRef) — with the Service's ports
//! resolved to container ports (named targetPorts looked up in each pod). Endpoints whose
//! Service is gone are deleted.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::anyhow;
use serde_json::{json, Value};

use super::api_result::OrFail;
use super::client::Client;
use super::index;
use super::podutil;
use super::reconcile::run_loop;
use super::selector;
use crate::resources::{endpoints, name_of, pods, services, str_at};

/// Component name of the Events this controller records.
pub const COMPONENT: &str = "endpoint-controller";

/// The annotation of Endpoints used as leader-election locks (never deleted here).
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

/// The container port a Service port's targetPort names in `pod`.
fn resolve_port(svc_port: &Value, pod: &Value) -> Option<i64> {
    let protocol = svc_port
        .get("protocol")
        .and_then(Value::as_str)
        .unwrap_or("TCP");
    match svc_port.get("targetPort").or_else(|| svc_port.get("port")) {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => match s.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => pod
                .pointer("/spec/containers")
                .and_then(Value::as_array)?
                .iter()
                .flat_map(|c| {
                    c.get("ports")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                })
                .find(|p| {
                    p.get("name").and_then(Value::as_str) == Some(s.as_str())
                        && p.get("protocol").and_then(Value::as_str).unwrap_or("TCP") == protocol
                })
                .and_then(|p| p.get("containerPort"))
                .and_then(Value::as_i64),
        },
        _ => None,
    }
}

/// Whether a pod belongs in a Service's endpoints at all (has an IP, is not finished or
/// being deleted).
fn eligible(pod: &Value) -> bool {
    !str_at(pod, "/status/podIP").is_empty() && podutil::is_active(pod)
}

/// The `subsets` of the Endpoints of `svc` given its namespace's pods: pods grouped by their
/// resolved port list, addresses sorted by IP.
pub fn subsets(svc: &Value, pods: &[Value]) -> Vec<Value> {
    let sel = svc.pointer("/spec/selector");
    let publish_not_ready = svc.pointer("/spec/publishNotReadyAddresses") == Some(&json!(true));
    let svc_ports: Vec<Value> = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    // Keyed by the ports' text so equal port lists share a subset.
    let mut groups: BTreeMap<String, (Value, Vec<Value>, Vec<Value>)> = BTreeMap::new();
    for pod in pods
        .iter()
        .filter(|p| selector::map_matches(sel, p) && eligible(p))
    {
        let mut ports = Vec::new();
        for sp in &svc_ports {
            let Some(port) = resolve_port(sp, pod) else {
                continue;
            };
            let mut p = json!({"port": port, "protocol": sp.get("protocol").cloned().unwrap_or(json!("TCP"))});
            if let Some(n) = sp
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                p["name"] = json!(n);
            }
            ports.push(p);
        }
        if ports.is_empty() && !svc_ports.is_empty() {
            continue;
        }
        let mut addr = json!({
            "ip": str_at(pod, "/status/podIP"),
            "targetRef": {
                "kind": "Pod",
                "namespace": str_at(pod, "/metadata/namespace"),
                "name": name_of(pod),
                "uid": str_at(pod, "/metadata/uid"),
            },
        });
        let node = str_at(pod, "/spec/nodeName");
        if !node.is_empty() {
            addr["nodeName"] = json!(node);
        }
        let ports = Value::Array(ports);
        let entry = groups
            .entry(ports.to_string())
            .or_insert_with(|| (ports, Vec::new(), Vec::new()));
        if publish_not_ready || podutil::is_ready(pod) {
            entry.1.push(addr);
        } else {
            entry.2.push(addr);
        }
    }
    let by_ip = |a: &Value, b: &Value| str_at(a, "/ip").cmp(str_at(b, "/ip"));
    groups
        .into_values()
        .map(|(ports, mut ready, mut not_ready)| {
            ready.sort_by(by_ip);
            not_ready.sort_by(by_ip);
            let mut s = json!({});
            if !ready.is_empty() {
                s["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                s["notReadyAddresses"] = json!(not_ready);
            }
            if ports.as_array().is_some_and(|p| !p.is_empty()) {
                s["ports"] = ports;
            }
            s
        })
        .collect()
}

/// Writes the Endpoints of one Service when they differ from `current`.
async fn sync_service(
    c: &Client,
    svc: &Value,
    pods: &[Value],
    current: Option<&Value>,
) -> anyhow::Result<()> {
    let subsets = subsets(svc, pods);
    let labels = svc.pointer("/metadata/labels").cloned();
    let mut want = match current {
        Some(ep) => ep.clone(),
        None => json!({
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": name_of(svc), "namespace": str_at(svc, "/metadata/namespace")},
        }),
    };
    match labels {
        Some(l) if l.as_object().is_some_and(|m| !m.is_empty()) => want["metadata"]["labels"] = l,
        _ => {
            if let Some(m) = want["metadata"].as_object_mut() {
                m.remove("labels");
            }
        }
    }
    if let Some(m) = want.as_object_mut() {
        if subsets.is_empty() {
            m.remove("subsets");
        } else {
            m.insert("subsets".into(), json!(subsets));
        }
    }
    match current {
        Some(ep) if *ep == want => Ok(()),
        Some(_) => c.update(&endpoints::TYPE, want).await.map(|_| ()).or_fail(),
        None => c.create(&endpoints::TYPE, want).await.map(|_| ()).or_fail(),
    }
}

/// One pass over every Service (also what the loop runs).
pub async fn sync_once(c: &Client) -> anyhow::Result<()> {
    sync(c.clone()).await
}

async fn sync(c: Client) -> anyhow::Result<()> {
    let (svcs, _) = c.list(&services::TYPE, None, "").await.or_fail()?;
    let (eps, _) = c.list(&endpoints::TYPE, None, "").await.or_fail()?;
    let managed: Vec<&Value> = svcs
        .iter()
        .filter(|s| {
            s.pointer("/spec/selector")
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
        })
        .collect();
    let all_pods = if managed.is_empty() {
        Default::default()
    } else {
        index::by_namespace(c.list(&pods::TYPE, None, "").await.or_fail()?.0)
    };
    let key = |o: &Value| {
        (
            str_at(o, "/metadata/namespace").to_string(),
            name_of(o).to_string(),
        )
    };
    let mut failures = Vec::new();
    for svc in managed {
        let ns = str_at(svc, "/metadata/namespace");
        let pods = index::in_namespace(&all_pods, ns);
        let current = eps.iter().find(|e| key(e) == key(svc));
        if let Err(e) = sync_service(&c, svc, pods, current).await {
            failures.push(format!("{ns}/{}: {e:#}", name_of(svc)));
        }
    }
    // Endpoints of deleted Services go too (leader-election locks excepted).
    for ep in &eps {
        let orphan = !svcs.iter().any(|s| key(s) == key(ep))
            && ep
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(LEADER_ANNOTATION))
                .is_none();
        if orphan {
            let ns = str_at(ep, "/metadata/namespace");
            match c
                .delete(&endpoints::TYPE, Some(ns), name_of(ep), &json!({}))
                .await
            {
                Ok(_) => {}
                Err(e) if e.reason == "NotFound" => {}
                Err(e) => failures.push(format!("{ns}/{}: {}", name_of(ep), e.message)),
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(failures.join("; ")))
    }
}

/// Runs the controller until aborted.
pub async fn run(client: Client) {
    run_loop(
        client.as_component(COMPONENT),
        "endpoints",
        &[&services::TYPE, &pods::TYPE, &endpoints::TYPE],
        Duration::from_secs(30),
        sync,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ip: &str, ready: bool) -> Value {
        json!({"metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
               "spec": {"nodeName": "w1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
               "status": {"phase": "Running", "podIP": ip,
                          "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    }

    #[test]
    fn ready_and_not_ready_addresses_with_resolved_ports() {
        let svc = json!({"metadata": {"name": "web", "namespace": "ns"},
            "spec": {"selector": {"app": "web"}, "ports": [
                {"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"},
                {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"}]}});
        let mut other = pod("other", "10.244.1.9", true);
        other["metadata"]["labels"]["app"] = json!("db");
        let mut no_ip = pod("starting", "", false);
        no_ip["status"].as_object_mut().unwrap().remove("podIP");
        let mut dying = pod("dying", "10.244.1.8", true);
        dying["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        let pods = vec![
            pod("b", "10.244.1.3", true),
            pod("a", "10.244.1.2", true),
            pod("c", "10.244.2.4", false),
            other,
            no_ip,
            dying,
        ];
        let s = subsets(&svc, &pods);
        assert_eq!(s.len(), 1);
        let ips: Vec<&str> = s[0]["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| str_at(a, "/ip"))
            .collect();
        assert_eq!(ips, ["10.244.1.2", "10.244.1.3"]);
        assert_eq!(s[0]["notReadyAddresses"][0]["ip"], "10.244.2.4");
        assert_eq!(s[0]["addresses"][0]["nodeName"], "w1");
        assert_eq!(s[0]["addresses"][0]["targetRef"]["name"], "a");
        assert_eq!(
            s[0]["ports"],
            json!([{"port": 8080, "protocol": "TCP", "name": "web"}, {"port": 9090, "protocol": "TCP", "name": "metrics"}])
        );
        // publishNotReadyAddresses puts everyone in addresses.
        let mut svc2 = svc.clone();
        svc2["spec"]["publishNotReadyAddresses"] = json!(true);
        assert_eq!(
            subsets(&svc2, &pods)[0]["addresses"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        // A pod without the named port only gets the numeric one: its own subset.
        let mut unnamed = pod("d", "10.244.3.1", true);
        unnamed["spec"]["containers"][0]["ports"] = json!([]);
        let s = subsets(&svc, &[pod("a", "10.244.1.2", true), unnamed]);
        assert_eq!(s.len(), 2);
    }
}
