//! The `kubernetes` Service in `default` (ClusterIP 10.96.0.1, port 443 → the servers) and its
//! Endpoints, kept by every server (not only the controller leader): each server renews an
//! identity Lease in kube-system carrying its advertise address, and the Endpoints list the
//! addresses of the servers whose Leases are fresh.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use serde_json::{json, Value};

use super::api_result::OrFail;
use super::client::Client;
use super::conditions::time_at;
use crate::resources::{endpoints, leases, name_of, services};

/// The Service's ClusterIP (the first of the service range, never handed out otherwise).
pub const CLUSTER_IP: &str = "10.96.0.1";
/// Label that marks the servers' identity Leases.
pub const IDENTITY_LABEL: &str = "apiserver.kubernetes.io/identity";
/// Annotation of an identity Lease with the server's `ip:port`.
pub const ADVERTISE_ANNOTATION: &str = "dustkube.io/advertise-address";
/// How long an identity Lease is valid without renewal.
const LEASE_SECONDS: i64 = 30;
/// How often a server renews its Lease and reconciles.
const PERIOD: Duration = Duration::from_secs(10);
/// Expired identity Leases older than this are deleted.
const FORGET_AFTER_SECONDS: i64 = 3600;

/// The `kubernetes` Service as it should be (`current` updated, or new).
pub fn service(current: Option<&Value>, port: u16) -> Value {
    let mut svc = current.cloned().unwrap_or_else(|| {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "kubernetes", "namespace": "default"},
               "spec": {"type": "ClusterIP", "clusterIP": CLUSTER_IP, "clusterIPs": [CLUSTER_IP],
                        "sessionAffinity": "None"}})
    });
    svc["metadata"]["labels"] = json!({"component": "apiserver", "provider": "kubernetes"});
    svc["spec"]["ports"] =
        json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]);
    svc
}

/// The Endpoints subsets for the fresh servers' `ip:port` addresses (one subset per port).
pub fn subsets(addresses: &[SocketAddr]) -> Vec<Value> {
    let mut ports: Vec<u16> = addresses.iter().map(SocketAddr::port).collect();
    ports.sort();
    ports.dedup();
    ports
        .into_iter()
        .map(|port| {
            let mut ips: Vec<String> = addresses
                .iter()
                .filter(|a| a.port() == port)
                .map(|a| a.ip().to_string())
                .collect();
            ips.sort();
            ips.dedup();
            json!({
                "addresses": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            })
        })
        .collect()
}

/// One server's part: renew its Lease, then reconcile the Service and Endpoints.
struct Member {
    client: Client,
    lease_name: String,
    holder: String,
    advertise: SocketAddr,
}

impl Member {
    async fn renew(&self) -> anyhow::Result<()> {
        let now = Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        let rt = &leases::TYPE;
        let current = self
            .client
            .get(rt, Some("kube-system"), &self.lease_name)
            .await
            .or_fail()?;
        let mut lease = current.unwrap_or_else(|| {
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                   "metadata": {"name": self.lease_name, "namespace": "kube-system"},
                   "spec": {"acquireTime": now}})
        });
        lease["metadata"]["labels"] = json!({IDENTITY_LABEL: "kube-apiserver"});
        lease["metadata"]["annotations"] =
            json!({ADVERTISE_ANNOTATION: self.advertise.to_string()});
        lease["spec"]["holderIdentity"] = json!(self.holder);
        lease["spec"]["leaseDurationSeconds"] = json!(LEASE_SECONDS);
        lease["spec"]["renewTime"] = json!(now);
        if lease.pointer("/metadata/resourceVersion").is_some() {
            self.client.update(rt, lease).await.or_fail()?;
        } else {
            self.client.create(rt, lease).await.or_fail()?;
        }
        Ok(())
    }

    /// Fresh servers' addresses; expired Leases long gone are deleted.
    async fn members(&self) -> anyhow::Result<Vec<SocketAddr>> {
        let selector = format!("{IDENTITY_LABEL}=kube-apiserver");
        let (all, _) = self
            .client
            .list(&leases::TYPE, Some("kube-system"), &selector)
            .await
            .or_fail()?;
        let now = Utc::now();
        let mut out = Vec::new();
        for l in &all {
            let age = time_at(l, "/spec/renewTime").map(|t| (now - t).num_seconds());
            let ttl = l
                .pointer("/spec/leaseDurationSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(LEASE_SECONDS);
            match age {
                Some(a) if a <= ttl => {
                    let addr = l
                        .pointer("/metadata/annotations")
                        .and_then(|a| a.get(ADVERTISE_ANNOTATION))
                        .and_then(Value::as_str)
                        .and_then(|s| s.parse::<SocketAddr>().ok());
                    out.extend(addr);
                }
                Some(a) if a < FORGET_AFTER_SECONDS => {}
                _ => {
                    let _ = self
                        .client
                        .delete(&leases::TYPE, Some("kube-system"), name_of(l), &json!({}))
                        .await;
                }
            }
        }
        if !out.contains(&self.advertise) {
            out.push(self.advertise);
        }
        Ok(out)
    }

    async fn reconcile(&self) -> anyhow::Result<()> {
        self.renew().await.context("renewing the identity lease")?;
        let c = &self.client;
        let svc = c
            .get(&services::TYPE, Some("default"), "kubernetes")
            .await
            .or_fail()?;
        let want = service(svc.as_ref(), self.advertise.port());
        match &svc {
            None => {
                c.create(&services::TYPE, want).await.or_fail()?;
            }
            Some(s) if *s != want => {
                c.update(&services::TYPE, want).await.or_fail()?;
            }
            Some(_) => {}
        }
        let subsets = subsets(&self.members().await?);
        let ep = c
            .get(&endpoints::TYPE, Some("default"), "kubernetes")
            .await
            .or_fail()?;
        let mut want = ep.clone().unwrap_or_else(|| {
            json!({"apiVersion": "v1", "kind": "Endpoints",
                   "metadata": {"name": "kubernetes", "namespace": "default"}})
        });
        want["metadata"]["labels"] = json!({"endpointslice.kubernetes.io/skip-mirror": "true"});
        want["subsets"] = json!(subsets);
        match &ep {
            None => {
                c.create(&endpoints::TYPE, want).await.or_fail()?;
            }
            Some(e) if *e != want => {
                c.update(&endpoints::TYPE, want).await.or_fail()?;
            }
            Some(_) => {}
        }
        Ok(())
    }
}

/// Keeps this server's identity Lease and the `kubernetes` Service and Endpoints; never
/// returns. `id` names the Lease (`apiserver-<id>`), `advertise` is the server's address.
pub async fn run(client: Client, id: String, holder: String, advertise: SocketAddr) {
    let m = Member {
        client,
        lease_name: format!("apiserver-{id}"),
        holder,
        advertise,
    };
    loop {
        if let Err(e) = m.reconcile().await {
            tracing::warn!(error = %format!("{e:#}"), "kubernetes service");
        }
        tokio::time::sleep(PERIOD).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::AppState;
    use crate::auth::MastersOnly;
    use crate::storage::memory::MemoryStore;

    #[tokio::test]
    async fn reconcile_creates_once_then_changes_nothing() {
        let state = AppState::new(
            std::sync::Arc::new(MemoryStore::new()),
            std::sync::Arc::new(MastersOnly),
        );
        crate::server::seed(&state).await.unwrap();
        let m = Member {
            client: Client::new(state, "test"),
            lease_name: "apiserver-x".into(),
            holder: "x".into(),
            advertise: "10.0.0.5:6443".parse().unwrap(),
        };
        m.reconcile().await.unwrap();
        let get = |rt: &'static crate::resources::ResourceType| {
            let c = m.client.clone();
            async move {
                c.get(rt, Some("default"), "kubernetes")
                    .await
                    .unwrap()
                    .unwrap()
            }
        };
        let (svc, ep) = (get(&services::TYPE).await, get(&endpoints::TYPE).await);
        assert_eq!(svc["spec"]["clusterIP"], CLUSTER_IP);
        assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], "10.0.0.5");
        m.reconcile().await.unwrap();
        assert_eq!(get(&services::TYPE).await, svc, "no rewrite of the Service");
        assert_eq!(
            get(&endpoints::TYPE).await,
            ep,
            "no rewrite of the Endpoints"
        );
    }

    #[test]
    fn service_and_endpoints_shape() {
        let s = service(None, 6443);
        assert_eq!(s["spec"]["clusterIP"], CLUSTER_IP);
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 6443);
        assert_eq!(s["spec"]["ports"][0]["port"], 443);
        let addrs: Vec<SocketAddr> = vec![
            "10.0.0.2:6443".parse().unwrap(),
            "10.0.0.1:6443".parse().unwrap(),
        ];
        let sub = subsets(&addrs);
        assert_eq!(
            sub,
            vec![
                json!({"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
                        "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]})
            ]
        );
    }
}
