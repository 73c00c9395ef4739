//! Certificate signing requests (PKCS#10): making one for a key (a node's TLS bootstrap), reading
//! one back (subject, SANs, key type), and signing one with a CA the way kube-controller-manager's
//! signer does — the certificate takes only the request's subject, SANs and public key; usages
//! and validity come from the signer, never from extensions in the request.

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::PkiError;

/// How far `notBefore` is set in the past, to tolerate clock skew between nodes.
const BACKDATE: Duration = Duration::minutes(5);

/// The facts of a request a signer checks before signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrInfo {
    /// Subject common name.
    pub common_name: String,
    /// Subject organizations, in order.
    pub organizations: Vec<String>,
    /// Requested DNS SANs.
    pub dns_names: Vec<String>,
    /// Requested IP SANs (as text).
    pub ips: Vec<String>,
    /// Requested e-mail and URI SANs (counted: client signers refuse them).
    pub other_sans: usize,
    /// Public key algorithm (`RSA`, `EC`, `Ed25519`, or the OID).
    pub key_algorithm: String,
    /// DER SubjectPublicKeyInfo of the requested key.
    pub spki: Vec<u8>,
}

/// DER SubjectPublicKeyInfo of a key pair (compare with [`CsrInfo::spki`] or
/// [`super::CertInfo::spki`] to see whether a request or certificate is for this key).
pub fn public_key_der(key: &KeyPair) -> Vec<u8> {
    use rcgen::PublicKeyData;
    key.subject_public_key_info()
}

/// Reads a PEM request (`CERTIFICATE REQUEST`) and checks its self-signature.
pub fn parse_request(pem: &str) -> Result<CsrInfo, String> {
    let (_, block) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| format!("not PEM: {e}"))?;
    if block.label != "CERTIFICATE REQUEST" {
        return Err(format!(
            "PEM block is '{}', not CERTIFICATE REQUEST",
            block.label
        ));
    }
    let (_, csr) = X509CertificationRequest::from_der(&block.contents)
        .map_err(|e| format!("not a PKCS#10 request: {e}"))?;
    csr.verify_signature()
        .map_err(|_| "the request's signature does not verify".to_string())?;
    let info = &csr.certification_request_info;
    let texts = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue>| {
        it.filter_map(|a| a.as_str().ok().map(str::to_string))
            .collect::<Vec<_>>()
    };
    let common_name = texts(&mut info.subject.iter_common_name())
        .into_iter()
        .next()
        .unwrap_or_default();
    let organizations = texts(&mut info.subject.iter_organization());
    let mut out = CsrInfo {
        common_name,
        organizations,
        dns_names: Vec::new(),
        ips: Vec::new(),
        other_sans: 0,
        key_algorithm: key_algorithm_name(&info.subject_pki.algorithm.algorithm.to_id_string()),
        spki: info.subject_pki.raw.to_vec(),
    };
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(d) => out.dns_names.push(d.to_string()),
                    GeneralName::IPAddress(b) => {
                        if let Ok(a) = <[u8; 4]>::try_from(*b) {
                            out.ips.push(std::net::IpAddr::from(a).to_string());
                        } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                            out.ips.push(std::net::IpAddr::from(a).to_string());
                        } else {
                            out.other_sans += 1;
                        }
                    }
                    _ => out.other_sans += 1,
                }
            }
        }
    }
    Ok(out)
}

fn key_algorithm_name(oid: &str) -> String {
    match oid {
        "1.2.840.113549.1.1.1" => "RSA".into(),
        "1.2.840.10045.2.1" => "EC".into(),
        "1.3.101.112" => "Ed25519".into(),
        other => other.into(),
    }
}

/// A PEM request for `key` with subject CN `common_name` and O `organizations` (no extensions:
/// the signer decides usages).
pub fn make_request(
    common_name: &str,
    organizations: &[&str],
    key: &KeyPair,
) -> Result<String, PkiError> {
    let err = |message: String| PkiError::Issue {
        name: format!("request for {common_name}"),
        message,
    };
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    for org in organizations {
        params
            .distinguished_name
            .push(DnType::OrganizationName, *org);
    }
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .serialize_request(key)
        .and_then(|r| r.pem())
        .map_err(|e| err(e.to_string()))
}

/// Signs the PEM request `csr_pem` with the CA (`ca_pem`, `ca_key`): subject, SANs and public
/// key from the request; `usages` in Kubernetes' names (`digital signature`, `key
/// encipherment`, `client auth`, `server auth`; others are refused); valid from now (minus 5
/// minutes of skew) for `validity`. Returns the certificate PEM.
pub fn sign_request(
    csr_pem: &str,
    usages: &[&str],
    ca_pem: &str,
    ca_key: &KeyPair,
    validity: std::time::Duration,
) -> Result<String, PkiError> {
    let err = |message: String| PkiError::Issue {
        name: "certificate signing request".into(),
        message,
    };
    let request = CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| err(format!("unusable request: {e}")))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = request.params.distinguished_name.clone();
    params.subject_alt_names = request.params.subject_alt_names.clone();
    params.is_ca = IsCa::ExplicitNoCa;
    for usage in usages {
        match *usage {
            "digital signature" => params.key_usages.push(KeyUsagePurpose::DigitalSignature),
            "key encipherment" => params.key_usages.push(KeyUsagePurpose::KeyEncipherment),
            "client auth" => params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth),
            "server auth" => params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth),
            other => return Err(err(format!("usage \"{other}\" is not supported"))),
        }
    }
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(super::issue::random_serial().map_err(err)?);
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    let validity = Duration::try_from(validity).map_err(|e| err(e.to_string()))?;
    params.not_after = now + validity;
    let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key)
        .map_err(|e| err(format!("reading the CA certificate: {e}")))?;
    let cert = params
        .signed_by(&request.public_key, &issuer)
        .map_err(|e| err(e.to_string()))?;
    Ok(cert.pem())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::issue::{generate_key, issue};
    use crate::pki::spec::{CertSpec, KeyAlgorithm};
    use crate::pki::CertInfo;

    #[test]
    fn request_is_signed_with_the_signer_usages() {
        let ca_key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let ca_spec = CertSpec {
            name: "ca".into(),
            issuer: None,
            common_name: "kubernetes".into(),
            organizations: Vec::new(),
            dns_names: Vec::new(),
            ips: Vec::new(),
            usage: None,
        };
        let ca = issue(&ca_spec, &ca_key, None, OffsetDateTime::now_utc()).unwrap();
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let csr = make_request("system:node:w1", &["system:nodes"], &key).unwrap();
        let info = parse_request(&csr).unwrap();
        assert_eq!(info.common_name, "system:node:w1");
        assert_eq!(info.organizations, ["system:nodes"]);
        assert_eq!(info.key_algorithm, "EC");
        assert!(info.dns_names.is_empty() && info.ips.is_empty());
        assert_eq!(info.spki, public_key_der(&key));

        let year = std::time::Duration::from_secs(365 * 86400);
        let cert = sign_request(
            &csr,
            &["digital signature", "key encipherment", "client auth"],
            &ca,
            &ca_key,
            year,
        )
        .unwrap();
        let c = CertInfo::from_pem(cert.as_bytes()).unwrap();
        assert_eq!(c.common_name, "system:node:w1");
        assert_eq!(c.organizations, ["system:nodes"]);
        assert_eq!(c.issuer_common_name, "kubernetes");
        assert_eq!(c.usage, Some(crate::pki::spec::Usage::Client));
        assert!(!c.is_ca);
        let days = (c.not_after - OffsetDateTime::now_utc()).whole_days();
        assert!((364..=365).contains(&days), "{days}");
        let ca_info = CertInfo::from_pem(ca.as_bytes()).unwrap();
        assert!(c.signed_by(&ca_info), "not signed by the CA");
        // The certificate carries the request's key.
        assert_eq!(c.spki, info.spki);

        assert!(sign_request(&csr, &["code signing"], &ca, &ca_key, year).is_err());
        let mut broken = csr.replace("REQUEST-----\n", "REQUEST-----\nAAAA");
        broken.truncate(broken.len() - 40);
        assert!(parse_request(&broken).is_err());
    }
}
