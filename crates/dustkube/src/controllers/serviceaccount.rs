//! The service-account controller: a `default` ServiceAccount in every active namespace, and
//! the `kube-root-ca.crt` ConfigMap (key `ca.crt`) with the cluster CA when the server knows it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use serde_json::{json, Value};

use super::api_result::OrFail;
use super::client::Client;
use super::ownership::deleting;
use super::reconcile::run_loop;
use crate::resources::{configmaps, name_of, namespaces, serviceaccounts, str_at};

/// Component name of the Events this controller records.
pub const COMPONENT: &str = "serviceaccount-controller";
/// The ConfigMap every namespace gets with the cluster CA.
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";

fn active(ns: &Value) -> bool {
    !deleting(ns) && str_at(ns, "/status/phase") != "Terminating"
}

fn find<'a>(objs: &'a [Value], ns: &str, name: &str) -> Option<&'a Value> {
    objs.iter()
        .find(|o| str_at(o, "/metadata/namespace") == ns && name_of(o) == name)
}

/// The kube-root-ca.crt ConfigMap as it should be (`current` updated, or a new one).
pub fn root_ca_configmap(ns: &str, ca_pem: &str, current: Option<&Value>) -> Value {
    let mut cm = current.cloned().unwrap_or_else(|| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": ROOT_CA_CONFIGMAP, "namespace": ns}})
    });
    cm["data"] = json!({"ca.crt": ca_pem});
    cm
}

async fn sync(c: Client, ca: Option<Arc<String>>) -> anyhow::Result<()> {
    let (all_ns, _) = c.list(&namespaces::TYPE, None, "").await.or_fail()?;
    let (sas, _) = c.list(&serviceaccounts::TYPE, None, "").await.or_fail()?;
    let cms = match &ca {
        Some(_) => c.list(&configmaps::TYPE, None, "").await.or_fail()?.0,
        None => Vec::new(),
    };
    let mut failures = Vec::new();
    for ns in all_ns.iter().filter(|n| active(n)) {
        let ns = name_of(ns);
        if find(&sas, ns, "default").is_none() {
            let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                            "metadata": {"name": "default", "namespace": ns}});
            match c.create(&serviceaccounts::TYPE, sa).await {
                Ok(_)
                | Err(crate::api::status::ApiError {
                    reason: "AlreadyExists",
                    ..
                }) => {}
                Err(e) => failures.push(format!("{ns}/default: {}", e.message)),
            }
        }
        if let Some(pem) = &ca {
            let current = find(&cms, ns, ROOT_CA_CONFIGMAP);
            let want = root_ca_configmap(ns, pem, current);
            let result = match current {
                Some(cm) if *cm == want => Ok(()),
                Some(_) => c.update(&configmaps::TYPE, want).await.map(|_| ()),
                None => c.create(&configmaps::TYPE, want).await.map(|_| ()),
            };
            if let Err(e) = result {
                if e.reason != "AlreadyExists" {
                    failures.push(format!("{ns}/{ROOT_CA_CONFIGMAP}: {}", e.message));
                }
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(failures.join("; ")))
    }
}

/// Runs the controller until aborted; `ca_pem` is the cluster CA (`--client-ca-file`).
pub async fn run(client: Client, ca_pem: Option<String>) {
    let ca = ca_pem.map(Arc::new);
    run_loop(
        client.as_component(COMPONENT),
        "serviceaccount",
        &[&namespaces::TYPE, &serviceaccounts::TYPE, &configmaps::TYPE],
        Duration::from_secs(60),
        move |c| sync(c, ca.clone()),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_ca_configmap_keeps_metadata_and_sets_the_ca() {
        let new = root_ca_configmap("demo", "PEM", None);
        assert_eq!(new["metadata"]["name"], ROOT_CA_CONFIGMAP);
        assert_eq!(new["data"]["ca.crt"], "PEM");
        let old = json!({"metadata": {"name": ROOT_CA_CONFIGMAP, "namespace": "demo", "resourceVersion": "7"},
                         "data": {"ca.crt": "OLD", "extra": "x"}});
        let upd = root_ca_configmap("demo", "PEM", Some(&old));
        assert_eq!(upd["metadata"]["resourceVersion"], "7");
        assert_eq!(upd["data"], json!({"ca.crt": "PEM"}));
        assert!(active(&json!({"status": {"phase": "Active"}})));
        assert!(!active(&json!({"status": {"phase": "Terminating"}})));
    }
}
