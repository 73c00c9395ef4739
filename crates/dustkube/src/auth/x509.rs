//! X.509 client-certificate authentication: the certificate was already verified against the
//! client CA during the TLS handshake; here its subject becomes a [`User`] (CN → name, each O →
//! a group).

use x509_parser::prelude::{FromDer, X509Certificate};

use super::User;

/// The user a verified client certificate (DER) names.
pub fn user_from_der(der: &[u8]) -> Result<User, String> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| format!("unreadable client certificate: {e}"))?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("")
        .to_string();
    if name.is_empty() {
        return Err("client certificate has no common name".into());
    }
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(String::from))
        .collect();
    groups.push("system:authenticated".into());
    Ok(User { name, groups })
}
