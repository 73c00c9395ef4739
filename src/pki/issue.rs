//! Making keys and certificates (rcgen on aws-lc-rs): self-signed CAs and CA-signed leaves.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, RsaKeySize, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use super::spec::{CertSpec, KeyAlgorithm, CA_VALIDITY_DAYS, LEAF_VALIDITY_DAYS};
use super::PkiError;

/// How far `notBefore` is set in the past, to tolerate clock skew between nodes.
const BACKDATE: Duration = Duration::minutes(5);

/// Generates a new private key.
pub fn generate_key(alg: KeyAlgorithm) -> Result<KeyPair, PkiError> {
    let key = match alg {
        KeyAlgorithm::Rsa2048 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048)
        }
        KeyAlgorithm::Rsa4096 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_4096)
        }
        KeyAlgorithm::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
    };
    key.map_err(|e| PkiError::Issue {
        name: format!("{alg} key"),
        message: e.to_string(),
    })
}

/// Parses a PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub fn parse_key(pem: &str) -> Result<KeyPair, String> {
    KeyPair::from_pem(pem).map_err(|e| e.to_string())
}

/// Issues a certificate for `spec` and `key`: self-signed when `spec` is a CA, otherwise signed by
/// `ca` (the CA's certificate PEM and key). Validity starts now (minus 5 minutes of skew) and lasts
/// 10 years for CAs, 1 year for leaves. Returns the certificate PEM.
pub fn issue(
    spec: &CertSpec,
    key: &KeyPair,
    ca: Option<(&str, &KeyPair)>,
    now: OffsetDateTime,
) -> Result<String, PkiError> {
    let err = |message: String| PkiError::Issue {
        name: spec.name.clone(),
        message,
    };
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    for org in &spec.organizations {
        params
            .distinguished_name
            .push(DnType::OrganizationName, org.as_str());
    }
    params
        .distinguished_name
        .push(DnType::CommonName, spec.common_name.as_str());
    for dns in &spec.dns_names {
        let name = dns
            .as_str()
            .try_into()
            .map_err(|e| err(format!("SAN '{dns}': {e}")))?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    for ip in &spec.ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    params.serial_number = Some(random_serial().map_err(err)?);
    params.not_before = now - BACKDATE;
    let days = if spec.is_ca() {
        CA_VALIDITY_DAYS
    } else {
        LEAF_VALIDITY_DAYS
    };
    params.not_after = now + Duration::days(days);

    if spec.is_ca() {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyCertSign,
        ];
        let cert = params.self_signed(key).map_err(|e| err(e.to_string()))?;
        return Ok(cert.pem());
    }

    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    if let Some(usage) = spec.usage {
        let (server, client) = usage.flags();
        if server {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if client {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
    }
    params.use_authority_key_identifier_extension = true;
    let (ca_pem, ca_key) = ca.ok_or_else(|| err("a leaf certificate needs a CA".into()))?;
    let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key)
        .map_err(|e| err(format!("reading the CA certificate: {e}")))?;
    let cert = params
        .signed_by(key, &issuer)
        .map_err(|e| err(e.to_string()))?;
    Ok(cert.pem())
}

/// A random positive 16-byte serial number (kubeadm uses random serials too).
pub(crate) fn random_serial() -> Result<SerialNumber, String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("reading /dev/urandom: {e}"))?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01; // positive and exactly 16 bytes
    Ok(SerialNumber::from(bytes.to_vec()))
}
