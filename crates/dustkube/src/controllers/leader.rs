//! Leader election through a coordination.k8s.io Lease (like kube-controller-manager's): one
//! server runs the controllers; the others wait until the holder stops renewing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::client::Client;
use crate::resources::{int_at, leases, str_at};

/// Namespace of the election Lease.
pub const LEASE_NAMESPACE: &str = "kube-system";
/// Name of the election Lease.
pub const LEASE_NAME: &str = "dustkube-controller-manager";

/// How long a holder's claim lasts without renewal.
const LEASE_SECONDS: i64 = 15;
/// How often the holder renews (and candidates retry).
const RETRY: Duration = Duration::from_secs(2);

/// Lease times are MicroTime: RFC 3339 with microseconds.
fn micro_now() -> String {
    Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// One candidate in the election.
pub struct Elector {
    client: Client,
    identity: String,
}

impl Elector {
    /// A candidate named `identity` (unique per server process).
    pub fn new(client: Client, identity: String) -> Elector {
        Elector { client, identity }
    }

    /// Returns once this candidate holds the Lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::debug!(error = %e, "leader election"),
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Keeps renewing the Lease; returns when leadership is lost (another holder, or no
    /// successful renewal for the lease duration).
    pub async fn hold(&self) {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(RETRY).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew the leader lease");
                    // Stop before another server may take over.
                    if last_ok.elapsed() >= Duration::from_secs((LEASE_SECONDS - 3) as u64) {
                        return;
                    }
                }
            }
        }
    }

    fn expired(lease: &Value) -> bool {
        let renew = str_at(lease, "/spec/renewTime");
        let seconds = match int_at(lease, "/spec/leaseDurationSeconds") {
            0 => LEASE_SECONDS,
            s => s,
        };
        match DateTime::parse_from_rfc3339(renew) {
            Ok(t) => (Utc::now() - t.with_timezone(&Utc)).num_seconds() > seconds,
            Err(_) => true,
        }
    }

    /// One round: true when this candidate holds the Lease afterwards.
    async fn try_acquire_or_renew(&self) -> Result<bool, String> {
        let rt = &leases::TYPE;
        let now = micro_now();
        let current = self
            .client
            .get(rt, Some(LEASE_NAMESPACE), LEASE_NAME)
            .await
            .map_err(|e| e.message)?;
        let Some(mut lease) = current else {
            let lease = json!({
                "metadata": {"name": LEASE_NAME, "namespace": LEASE_NAMESPACE},
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": LEASE_SECONDS,
                    "acquireTime": now,
                    "renewTime": now,
                    "leaseTransitions": 0,
                },
            });
            return match self.client.create(rt, lease).await {
                Ok(_) => Ok(true),
                Err(e) if e.reason == "AlreadyExists" => Ok(false),
                Err(e) => Err(e.message),
            };
        };
        let holder = str_at(&lease, "/spec/holderIdentity").to_string();
        if holder != self.identity {
            if !holder.is_empty() && !Self::expired(&lease) {
                return Ok(false);
            }
            let transitions = int_at(&lease, "/spec/leaseTransitions") + 1;
            lease["spec"]["holderIdentity"] = json!(self.identity);
            lease["spec"]["acquireTime"] = json!(now);
            lease["spec"]["leaseTransitions"] = json!(transitions);
        }
        lease["spec"]["renewTime"] = json!(now);
        lease["spec"]["leaseDurationSeconds"] = json!(LEASE_SECONDS);
        match self.client.update(rt, lease).await {
            Ok(_) => Ok(true),
            Err(e) if e.reason == "Conflict" => Ok(false),
            Err(e) => Err(e.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::api::AppState;
    use crate::auth::MastersOnly;
    use crate::storage::memory::MemoryStore;

    async fn client() -> Client {
        let state = AppState::new(Arc::new(MemoryStore::new()), Arc::new(MastersOnly));
        crate::server::seed(&state).await.unwrap();
        Client::new(state, "test")
    }

    #[tokio::test]
    async fn one_holder_at_a_time_until_the_lease_expires() {
        let c = client().await;
        let a = Elector::new(c.clone(), "a".into());
        let b = Elector::new(c.clone(), "b".into());
        assert!(a.try_acquire_or_renew().await.unwrap());
        assert!(!b.try_acquire_or_renew().await.unwrap());
        assert!(a.try_acquire_or_renew().await.unwrap(), "the holder renews");
        // Age the lease past its duration: b takes over and counts a transition.
        let mut lease = c
            .get(&leases::TYPE, Some(LEASE_NAMESPACE), LEASE_NAME)
            .await
            .unwrap()
            .unwrap();
        lease["spec"]["renewTime"] = json!("2020-01-01T00:00:00.000000Z");
        c.update(&leases::TYPE, lease).await.unwrap();
        assert!(b.try_acquire_or_renew().await.unwrap());
        assert!(!a.try_acquire_or_renew().await.unwrap());
        let lease = c
            .get(&leases::TYPE, Some(LEASE_NAMESPACE), LEASE_NAME)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(str_at(&lease, "/spec/holderIdentity"), "b");
        assert_eq!(int_at(&lease, "/spec/leaseTransitions"), 1);
    }
}
