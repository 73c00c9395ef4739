//! The CA pin used by `join --discovery-token-ca-cert-hash`: `sha256:<hex>` of the CA's DER
//! SubjectPublicKeyInfo.

use sha2::{Digest, Sha256};

use super::info::CertInfo;

/// `sha256:<hex>` of the certificate's SubjectPublicKeyInfo (PEM input).
pub fn ca_cert_hash(ca_cert_pem: &[u8]) -> Result<String, String> {
    Ok(spki_hash(&CertInfo::from_pem(ca_cert_pem)?.spki))
}

/// `sha256:<hex>` of DER SubjectPublicKeyInfo bytes.
pub fn spki_hash(spki_der: &[u8]) -> String {
    let digest = Sha256::digest(spki_der);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}
