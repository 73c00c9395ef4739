//! CertificateSigningRequests (kube-controller-manager's csrapproving, csrsigning and
//! csrcleaner): auto-approves node client certificates — a bootstrap token's first request
//! (`create certificatesigningrequests/nodeclient`) and a node renewing its own
//! (`.../selfnodeclient`), both decided by RBAC like Kubernetes' SubjectAccessReview — signs
//! approved requests of `kubernetes.io/kube-apiserver-client-kubelet` and
//! `kubernetes.io/kube-apiserver-client` with the cluster CA (`--cluster-signing-cert-file`,
//! `--cluster-signing-key-file`, `--cluster-signing-duration`), and deletes old requests.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::client::Client;
use super::reconcile;
use crate::api::table::now_rfc3339;
use crate::auth::{Attributes, Decision, User};
use crate::resources::certificatesigningrequests::TYPE;
use crate::resources::{name_of, str_at};

/// Signer of node (kubelet) client certificates.
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// Signer of other API client certificates (approved by an administrator).
pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";
/// Group of node identities.
pub const NODES_GROUP: &str = "system:nodes";
/// Prefix of node user names.
pub const NODE_USER_PREFIX: &str = "system:node:";
/// Shortest lifetime a request may ask for (`spec.expirationSeconds`), like Kubernetes.
const MIN_EXPIRATION_SECONDS: i64 = 600;
/// How often the loop runs without changes (also the cleaner's period).
const RESYNC: Duration = Duration::from_secs(60);

/// The CA that signs approved requests.
pub struct SigningCa {
    /// CA certificate (PEM).
    pub cert_pem: String,
    /// CA private key (PEM).
    pub key_pem: String,
    /// Longest validity of an issued certificate.
    pub duration: Duration,
}

impl SigningCa {
    /// Reads and checks the CA files (the key must parse; the certificate must be a CA).
    pub fn from_files(cert: &Path, key: &Path, duration: Duration) -> Result<SigningCa> {
        let cert_pem = std::fs::read_to_string(cert)
            .with_context(|| format!("{}: cannot read the signing CA", cert.display()))?;
        let key_pem = std::fs::read_to_string(key)
            .with_context(|| format!("{}: cannot read the signing key", key.display()))?;
        let info = duststack::pki::CertInfo::from_pem(cert_pem.as_bytes())
            .map_err(|e| anyhow!("{}: {e}", cert.display()))?;
        if !info.is_ca {
            return Err(anyhow!("{}: not a CA certificate", cert.display()));
        }
        duststack::pki::issue::parse_key(&key_pem)
            .map_err(|e| anyhow!("{}: {e}", key.display()))?;
        Ok(SigningCa {
            cert_pem,
            key_pem,
            duration,
        })
    }
}

static SIGNING_CA: OnceLock<Arc<SigningCa>> = OnceLock::new();

/// Sets the signing CA of this server process (from its flags, once at startup); without it
/// approved requests stay unsigned, as in kube-controller-manager without signing flags.
pub fn configure(ca: SigningCa) {
    if SIGNING_CA.set(Arc::new(ca)).is_err() {
        tracing::warn!("the cluster signing CA was already configured; keeping the first");
    }
}

/// Starts the controller with the CA from [`configure`] (if any); runs until aborted.
pub async fn run(client: Client) {
    let ca = SIGNING_CA.get().cloned();
    reconcile::run_loop(client, "csr-signer", &[&TYPE], RESYNC, move |c| {
        let ca = ca.clone();
        async move { sync(&c, ca.as_deref()).await }
    })
    .await
}

fn has_condition(csr: &Value, kind: &str) -> bool {
    csr.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| str_at(c, "/type") == kind && str_at(c, "/status") != "False")
        })
}

fn usages(csr: &Value) -> Vec<String> {
    csr.pointer("/spec/usages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn request_pem(csr: &Value) -> Result<String, String> {
    let bytes = B64
        .decode(str_at(csr, "/spec/request"))
        .map_err(|e| format!("spec.request is not base64: {e}"))?;
    String::from_utf8(bytes).map_err(|_| "spec.request is not PEM text".to_string())
}

/// Checks a request against a signer's rules; `Err` says why it may not be signed.
pub fn validate_for_signer(signer: &str, csr: &Value) -> Result<(), String> {
    let info = duststack::pki::csr::parse_request(&request_pem(csr)?)?;
    let usages = usages(csr);
    let allowed = ["digital signature", "key encipherment", "client auth"];
    if let Some(u) = usages.iter().find(|u| !allowed.contains(&u.as_str())) {
        return Err(format!("usage \"{u}\" is not allowed for {signer}"));
    }
    if !usages.iter().any(|u| u == "client auth") {
        return Err(format!("{signer} requires the \"client auth\" usage"));
    }
    match signer {
        KUBELET_CLIENT_SIGNER => {
            if info.organizations != [NODES_GROUP] {
                return Err(format!(
                    "subject organization must be exactly [\"{NODES_GROUP}\"], got {:?}",
                    info.organizations
                ));
            }
            let node = info
                .common_name
                .strip_prefix(NODE_USER_PREFIX)
                .unwrap_or("");
            if node.is_empty() {
                return Err(format!(
                    "subject common name must be {NODE_USER_PREFIX}<node name>, got \"{}\"",
                    info.common_name
                ));
            }
            if !usages.iter().any(|u| u == "digital signature") {
                return Err("the \"digital signature\" usage is required".into());
            }
            if !info.dns_names.is_empty() || !info.ips.is_empty() || info.other_sans > 0 {
                return Err("subject alternative names are not allowed".into());
            }
        }
        CLIENT_SIGNER => {
            if info.common_name.is_empty() {
                return Err("subject common name is required".into());
            }
        }
        other => return Err(format!("signer {other} is not served here")),
    }
    Ok(())
}

/// The RBAC subresource a request needs for auto-approval, if it is a node client certificate
/// request: `selfnodeclient` when the requester is the node itself, else `nodeclient`.
fn approval_subresource(csr: &Value) -> Option<&'static str> {
    if str_at(csr, "/spec/signerName") != KUBELET_CLIENT_SIGNER {
        return None;
    }
    validate_for_signer(KUBELET_CLIENT_SIGNER, csr).ok()?;
    let info = duststack::pki::csr::parse_request(&request_pem(csr).ok()?).ok()?;
    if str_at(csr, "/spec/username") == info.common_name {
        Some("selfnodeclient")
    } else {
        Some("nodeclient")
    }
}

fn requester(csr: &Value) -> User {
    User {
        name: str_at(csr, "/spec/username").to_string(),
        groups: csr
            .pointer("/spec/groups")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
    }
}

fn condition(kind: &str, reason: &str, message: &str) -> Value {
    let now = now_rfc3339();
    json!({
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
    })
}

fn push_condition(csr: &mut Value, c: Value) {
    if !csr.get("status").is_some_and(Value::is_object) {
        csr["status"] = json!({});
    }
    match csr["status"]
        .get_mut("conditions")
        .and_then(Value::as_array_mut)
    {
        Some(cs) => cs.push(c),
        None => csr["status"]["conditions"] = json!([c]),
    }
}

/// Approves `csr` when it is a node client request its requester may have auto-approved.
async fn maybe_approve(client: &Client, csr: &Value) -> Result<bool> {
    let Some(sub) = approval_subresource(csr) else {
        return Ok(false);
    };
    let attrs = Attributes {
        verb: "create".into(),
        group: TYPE.group.into(),
        resource: TYPE.plural.into(),
        subresource: sub.into(),
        namespace: None,
        name: None,
        path: None,
    };
    let who = requester(csr);
    if let Decision::Deny(why) = client.state().authorizer.authorize(&who, &attrs).await {
        tracing::debug!(csr = name_of(csr), user = %who.name, %why, "not auto-approving");
        return Ok(false);
    }
    let message = if sub == "selfnodeclient" {
        "Auto approving self kubelet client certificate after SubjectAccessReview."
    } else {
        "Auto approving kubelet client certificate after SubjectAccessReview."
    };
    let mut updated = csr.clone();
    push_condition(&mut updated, condition("Approved", "AutoApproved", message));
    client
        .update_status(&TYPE, updated)
        .await
        .map_err(|e| anyhow!("approving {}: {}", name_of(csr), e.message))?;
    tracing::info!(csr = name_of(csr), user = %who.name, "auto-approved");
    Ok(true)
}

/// How long the certificate for `csr` lives: the signer's duration, shortened by
/// `spec.expirationSeconds` (at least 10 minutes).
fn lifetime(csr: &Value, max: Duration) -> Duration {
    match csr
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
    {
        Some(s) => {
            let s = s.max(MIN_EXPIRATION_SECONDS) as u64;
            max.min(Duration::from_secs(s))
        }
        None => max,
    }
}

/// Signs an approved request (or marks it Failed when the signer refuses it).
async fn sign(client: &Client, csr: &Value, ca: &SigningCa) -> Result<()> {
    let signer = str_at(csr, "/spec/signerName").to_string();
    let mut updated = csr.clone();
    let result = validate_for_signer(&signer, csr).and_then(|()| {
        let key = duststack::pki::issue::parse_key(&ca.key_pem)?;
        let usages = usages(csr);
        let usages: Vec<&str> = usages.iter().map(String::as_str).collect();
        duststack::pki::csr::sign_request(
            &request_pem(csr)?,
            &usages,
            &ca.cert_pem,
            &key,
            lifetime(csr, ca.duration),
        )
        .map_err(|e| e.to_string())
    });
    match result {
        Ok(cert) => {
            updated["status"]["certificate"] = json!(B64.encode(cert));
            tracing::info!(csr = name_of(csr), %signer, "signed");
        }
        Err(why) => {
            tracing::info!(csr = name_of(csr), %signer, %why, "refused to sign");
            push_condition(
                &mut updated,
                condition("Failed", "SignerValidationFailure", &why),
            );
        }
    }
    client
        .update_status(&TYPE, updated)
        .await
        .map_err(|e| anyhow!("writing the certificate of {}: {}", name_of(csr), e.message))?;
    Ok(())
}

/// Whether the cleaner removes `csr` at `now`: issued, denied or failed for an hour, or
/// pending for a day (kube-controller-manager's csrcleaner).
fn expired(csr: &Value, now: DateTime<Utc>) -> bool {
    let Ok(created) = DateTime::parse_from_rfc3339(str_at(csr, "/metadata/creationTimestamp"))
    else {
        return false;
    };
    let age = now - created.with_timezone(&Utc);
    let finished = !str_at(csr, "/status/certificate").is_empty()
        || has_condition(csr, "Denied")
        || has_condition(csr, "Failed");
    if finished {
        age > chrono::Duration::hours(1)
    } else {
        age > chrono::Duration::hours(24)
    }
}

/// One pass over every request: approve, sign, clean up.
pub async fn sync(client: &Client, ca: Option<&SigningCa>) -> Result<()> {
    let (items, _) = client
        .list(&TYPE, None, "")
        .await
        .map_err(|e| anyhow!("listing CSRs: {}", e.message))?;
    let now = Utc::now();
    let mut errors = Vec::new();
    for mut csr in items {
        if expired(&csr, now) {
            if let Err(e) = client.delete(&TYPE, None, name_of(&csr), &json!({})).await {
                errors.push(format!("deleting {}: {}", name_of(&csr), e.message));
            }
            continue;
        }
        let decided = has_condition(&csr, "Approved") || has_condition(&csr, "Denied");
        if !decided {
            match maybe_approve(client, &csr).await {
                Ok(true) => {
                    // Re-read: the approval changed the resourceVersion.
                    match client.get(&TYPE, None, name_of(&csr)).await {
                        Ok(Some(fresh)) => csr = fresh,
                        Ok(None) => continue,
                        Err(e) => {
                            errors.push(e.message);
                            continue;
                        }
                    }
                }
                Ok(false) => continue,
                Err(e) => {
                    errors.push(format!("{e:#}"));
                    continue;
                }
            }
        }
        let signable = matches!(
            str_at(&csr, "/spec/signerName"),
            KUBELET_CLIENT_SIGNER | CLIENT_SIGNER
        );
        if signable
            && has_condition(&csr, "Approved")
            && !has_condition(&csr, "Failed")
            && str_at(&csr, "/status/certificate").is_empty()
        {
            if let Some(ca) = ca {
                if let Err(e) = sign(client, &csr, ca).await {
                    errors.push(format!("{e:#}"));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(errors.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::api::AppState;
    use crate::auth::rbac::Rbac;
    use crate::storage::memory::MemoryStore;
    use duststack::pki::issue::{generate_key, issue};
    use duststack::pki::{CertInfo, CertSpec, KeyAlgorithm};

    async fn client() -> Client {
        let store = Arc::new(MemoryStore::new());
        let state = AppState::new(store.clone(), Arc::new(Rbac::new(store)));
        crate::server::seed(&state).await.unwrap();
        crate::auth::policy::ensure(&state).await.unwrap();
        Client::new(state, "test")
    }

    fn ca() -> SigningCa {
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let spec = CertSpec {
            name: "ca".into(),
            issuer: None,
            common_name: "kubernetes".into(),
            organizations: Vec::new(),
            dns_names: Vec::new(),
            ips: Vec::new(),
            usage: None,
        };
        let cert = issue(&spec, &key, None, time::OffsetDateTime::now_utc()).unwrap();
        SigningCa {
            cert_pem: cert,
            key_pem: key.serialize_pem(),
            duration: Duration::from_secs(365 * 86400),
        }
    }

    /// A CSR object as the API stores it after stamping the requester.
    fn csr(
        name: &str,
        cn: &str,
        orgs: &[&str],
        signer: &str,
        user: &str,
        groups: &[&str],
    ) -> Value {
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let pem = duststack::pki::csr::make_request(cn, orgs, &key).unwrap();
        json!({
            "metadata": {"name": name},
            "spec": {
                "request": B64.encode(pem),
                "signerName": signer,
                "usages": ["digital signature", "key encipherment", "client auth"],
                "username": user,
                "groups": groups,
            },
        })
    }

    async fn status_of(c: &Client, name: &str) -> Value {
        c.get(&TYPE, None, name).await.unwrap().unwrap()["status"].clone()
    }

    #[tokio::test]
    async fn node_requests_are_approved_and_signed_others_wait() {
        let c = client().await;
        let ca = ca();
        let boot = ["system:bootstrappers", "system:authenticated"];
        c.create(
            &TYPE,
            csr(
                "boot",
                "system:node:w1",
                &["system:nodes"],
                KUBELET_CLIENT_SIGNER,
                "system:bootstrap:abcdef",
                &boot,
            ),
        )
        .await
        .unwrap();
        c.create(
            &TYPE,
            csr(
                "renew",
                "system:node:w1",
                &["system:nodes"],
                KUBELET_CLIENT_SIGNER,
                "system:node:w1",
                &["system:nodes", "system:authenticated"],
            ),
        )
        .await
        .unwrap();
        // A node may not get another node's certificate renewed by itself: w2 asks for w1.
        c.create(
            &TYPE,
            csr(
                "other-node",
                "system:node:w1",
                &["system:nodes"],
                KUBELET_CLIENT_SIGNER,
                "system:node:w2",
                &["system:nodes", "system:authenticated"],
            ),
        )
        .await
        .unwrap();
        // Wrong organization: never auto-approved.
        c.create(
            &TYPE,
            csr(
                "bad-org",
                "system:node:w1",
                &["system:masters"],
                KUBELET_CLIENT_SIGNER,
                "system:bootstrap:abcdef",
                &boot,
            ),
        )
        .await
        .unwrap();
        // A plain user without rights: pending.
        c.create(
            &TYPE,
            csr(
                "jane",
                "jane",
                &[],
                CLIENT_SIGNER,
                "jane",
                &["system:authenticated"],
            ),
        )
        .await
        .unwrap();

        sync(&c, Some(&ca)).await.unwrap();
        let ca_info = CertInfo::from_pem(ca.cert_pem.as_bytes()).unwrap();
        for name in ["boot", "renew"] {
            let st = status_of(&c, name).await;
            assert_eq!(st["conditions"][0]["type"], "Approved", "{name}: {st}");
            assert_eq!(st["conditions"][0]["reason"], "AutoApproved");
            let pem = B64
                .decode(st["certificate"].as_str().expect("issued"))
                .unwrap();
            let cert = CertInfo::from_pem(&pem).unwrap();
            assert_eq!(cert.common_name, "system:node:w1");
            assert_eq!(cert.organizations, ["system:nodes"]);
            assert!(cert.signed_by(&ca_info));
        }
        for name in ["other-node", "bad-org", "jane"] {
            let st = status_of(&c, name).await;
            assert!(st.get("conditions").is_none(), "{name}: {st}");
            assert!(st.get("certificate").is_none(), "{name}: {st}");
        }

        // An administrator approves jane's request: it is signed for jane.
        let mut jane = c.get(&TYPE, None, "jane").await.unwrap().unwrap();
        push_condition(&mut jane, condition("Approved", "AdminApproved", "ok"));
        c.update_status(&TYPE, jane).await.unwrap();
        // An approved request that breaks its signer's rules fails instead of being signed.
        let mut bad = c.get(&TYPE, None, "bad-org").await.unwrap().unwrap();
        push_condition(&mut bad, condition("Approved", "AdminApproved", "ok"));
        c.update_status(&TYPE, bad).await.unwrap();
        sync(&c, Some(&ca)).await.unwrap();
        let st = status_of(&c, "jane").await;
        let cert =
            CertInfo::from_pem(&B64.decode(st["certificate"].as_str().unwrap()).unwrap()).unwrap();
        assert_eq!(cert.common_name, "jane");
        let st = status_of(&c, "bad-org").await;
        assert_eq!(st["conditions"][1]["type"], "Failed", "{st}");
        assert!(st["conditions"][1]["message"]
            .as_str()
            .unwrap()
            .contains("organization"));
        assert!(st.get("certificate").is_none());
    }

    #[tokio::test]
    async fn without_a_ca_requests_are_approved_but_not_signed() {
        let c = client().await;
        c.create(
            &TYPE,
            csr(
                "boot",
                "system:node:w1",
                &["system:nodes"],
                KUBELET_CLIENT_SIGNER,
                "system:bootstrap:abcdef",
                &["system:bootstrappers", "system:authenticated"],
            ),
        )
        .await
        .unwrap();
        sync(&c, None).await.unwrap();
        let st = status_of(&c, "boot").await;
        assert_eq!(st["conditions"][0]["type"], "Approved");
        assert!(st.get("certificate").is_none());
    }

    #[test]
    fn lifetimes_and_cleanup() {
        let year = Duration::from_secs(365 * 86400);
        assert_eq!(lifetime(&json!({}), year), year);
        let short = json!({"spec": {"expirationSeconds": 60}});
        assert_eq!(lifetime(&short, year), Duration::from_secs(600));
        let now = Utc::now();
        let old = (now - chrono::Duration::hours(2)).to_rfc3339();
        let issued =
            json!({"metadata": {"creationTimestamp": old}, "status": {"certificate": "eA=="}});
        let pending = json!({"metadata": {"creationTimestamp": old}, "status": {}});
        assert!(expired(&issued, now));
        assert!(!expired(&pending, now));
    }
}
