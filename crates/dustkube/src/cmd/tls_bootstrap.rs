//! A node's client certificate through the certificates API (kubelet's TLS bootstrap and
//! rotation): a CSR for `system:node:<name>` / `system:nodes` with signer
//! `kubernetes.io/kube-apiserver-client-kubelet`, posted with the caller's credentials (a
//! bootstrap token the first time, the node's own certificate for renewals), then waited on
//! until the controllers approve and sign it. Also the node kubeconfig (`kubelet.conf`) and its
//! renewal, which the agent calls before the certificate expires.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use duststack::pki::kubeconfig::Kubeconfig;
use duststack::pki::{CertInfo, KeyAlgorithm};

use super::client::ApiClient;

/// API path of CertificateSigningRequests.
pub const CSR_PATH: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
/// Signer of node client certificates.
pub const SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// How long [`request_client_certificate`] waits for approval and signing.
pub const WAIT: Duration = Duration::from_secs(300);

/// The user name of a node.
pub fn node_user(node_name: &str) -> String {
    format!("system:node:{node_name}")
}

/// A new private key for a node client certificate (ECDSA P-256, like the kubelet's), as PEM.
pub fn new_key() -> Result<String> {
    let key = duststack::pki::issue::generate_key(KeyAlgorithm::EcdsaP256)?;
    Ok(key.serialize_pem())
}

/// The public key (DER SubjectPublicKeyInfo) of a PEM private key.
#[cfg(test)]
fn public_key_der(key_pem: &str) -> Result<Vec<u8>> {
    let key = duststack::pki::issue::parse_key(key_pem).map_err(|e| anyhow!("node key: {e}"))?;
    Ok(duststack::pki::csr::public_key_der(&key))
}

/// The CSR name for this node and key: the same request gets the same name, so a retried
/// bootstrap finds its earlier request instead of making another.
fn csr_name(node_name: &str, spki: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(node_name.as_bytes())
        .chain_update(spki)
        .finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("node-csr-{hex}")
}

fn condition(csr: &Value, kind: &str) -> Option<String> {
    csr.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c["type"] == kind && c["status"] != "False")
        .map(|c| {
            let reason = c["reason"].as_str().unwrap_or("");
            let message = c["message"].as_str().unwrap_or("");
            format!("{reason}: {message}")
                .trim_matches([':', ' '])
                .to_string()
        })
}

/// The issued certificate of `csr` when it carries one for `spki`.
fn issued(csr: &Value, spki: &[u8]) -> Result<Option<String>> {
    let Some(b64) = csr
        .pointer("/status/certificate")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        return Ok(None);
    };
    let pem = String::from_utf8(B64.decode(b64).context("status.certificate: bad base64")?)
        .context("status.certificate: not PEM text")?;
    let info =
        CertInfo::from_pem(pem.as_bytes()).map_err(|e| anyhow!("issued certificate: {e}"))?;
    if info.spki != spki {
        return Err(anyhow!(
            "the issued certificate is for another key than this node's"
        ));
    }
    Ok(Some(pem))
}

/// Requests a client certificate for node `node_name` and the private key `key_pem`, with the
/// credentials of `client` (a bootstrap token or the node's current certificate), and waits
/// (up to [`WAIT`]) until it is approved and signed. Returns the certificate PEM; fails when
/// the request is denied or fails.
pub async fn request_client_certificate(
    client: &ApiClient,
    node_name: &str,
    key_pem: &str,
) -> Result<String> {
    let key = duststack::pki::issue::parse_key(key_pem).map_err(|e| anyhow!("node key: {e}"))?;
    let spki = duststack::pki::csr::public_key_der(&key);
    let user = node_user(node_name);
    let request = duststack::pki::csr::make_request(&user, &["system:nodes"], &key)?;
    let name = csr_name(node_name, &spki);
    let csr = json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": B64.encode(&request),
            "signerName": SIGNER,
            "usages": ["digital signature", "key encipherment", "client auth"],
        },
    });
    let r = client.request("POST", CSR_PATH, Some(&csr)).await?;
    match r.status {
        409 => tracing::info!(csr = %name, "the request exists already; waiting for it"),
        _ if r.ok() => {}
        s => {
            return Err(anyhow!(
                "creating CertificateSigningRequest {name}: {s} {}",
                r.message()
            ))
        }
    }
    let path = format!("{CSR_PATH}/{name}");
    let deadline = Instant::now() + WAIT;
    loop {
        let current = client
            .get(&path)
            .await?
            .ok_or_else(|| anyhow!("CertificateSigningRequest {name} disappeared"))?;
        if let Some(pem) = issued(&current, &spki)? {
            return Ok(pem);
        }
        if let Some(why) = condition(&current, "Denied") {
            return Err(anyhow!(
                "CertificateSigningRequest {name} was denied ({why})"
            ));
        }
        if let Some(why) = condition(&current, "Failed") {
            return Err(anyhow!("CertificateSigningRequest {name} failed ({why})"));
        }
        if Instant::now() > deadline {
            let state = if condition(&current, "Approved").is_some() {
                "approved but not signed (is the server started with --cluster-signing-cert-file?)"
            } else {
                "not approved (approve it with: kubectl certificate approve NAME)"
            };
            return Err(anyhow!(
                "CertificateSigningRequest {name} is still {} after {}s",
                state.replace("NAME", &name),
                WAIT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The node kubeconfig: `server`, the cluster CA, and the node's certificate and key embedded.
pub fn node_kubeconfig(
    server: &str,
    ca_pem: &str,
    node_name: &str,
    cert_pem: &str,
    key_pem: &str,
) -> String {
    Kubeconfig {
        server: server.to_string(),
        ca_pem: ca_pem.to_string(),
        user: node_user(node_name),
        cert_pem: cert_pem.to_string(),
        key_pem: key_pem.to_string(),
    }
    .render()
}

/// Whether the client certificate in the kubeconfig at `path` should be renewed: 80% of its
/// lifetime has passed (the kubelet renews between 70% and 90%).
pub fn renewal_due(path: &Path) -> Result<bool> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let kc = Kubeconfig::parse(&text, path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let info = CertInfo::from_pem(kc.cert_pem.as_bytes())
        .map_err(|e| anyhow!("{}: client certificate: {e}", path.display()))?;
    let (start, end) = (
        info.not_before.unix_timestamp(),
        info.not_after.unix_timestamp(),
    );
    let due = start + (end - start) * 4 / 5;
    Ok(chrono::Utc::now().timestamp() >= due)
}

/// Renews the node certificate of the kubeconfig at `path` (a new key, a CSR signed in with
/// the current certificate) and rewrites the file atomically (0600). The agent calls this when
/// [`renewal_due`] says so.
pub async fn renew_node_kubeconfig(path: &Path, node_name: &str) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let kc = Kubeconfig::parse(&text, path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let client = ApiClient::new(&kc.server, &kc.ca_pem, Some((&kc.cert_pem, &kc.key_pem)))?;
    let key_pem = new_key()?;
    let cert = request_client_certificate(&client, node_name, &key_pem).await?;
    let text = node_kubeconfig(&kc.server, &kc.ca_pem, node_name, &cert, &key_pem);
    duststack::pki::store::write_atomic(path, text.as_bytes(), duststack::pki::store::KEY_MODE)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_key() {
        let a = new_key().unwrap();
        let b = new_key().unwrap();
        let (pa, pb) = (public_key_der(&a).unwrap(), public_key_der(&b).unwrap());
        assert_eq!(csr_name("w1", &pa), csr_name("w1", &pa));
        assert_ne!(csr_name("w1", &pa), csr_name("w1", &pb));
        assert_ne!(csr_name("w1", &pa), csr_name("w2", &pa));
        assert!(csr_name("w1", &pa).starts_with("node-csr-"));
        assert_eq!(csr_name("w1", &pa).len(), "node-csr-".len() + 32);
    }

    #[test]
    fn conditions_are_read() {
        let csr = json!({"status": {"conditions": [
            {"type": "Denied", "status": "True", "reason": "Nope", "message": "not you"}
        ]}});
        assert_eq!(condition(&csr, "Denied").unwrap(), "Nope: not you");
        assert!(condition(&csr, "Approved").is_none());
        assert!(issued(&csr, b"x").unwrap().is_none());
    }
}
