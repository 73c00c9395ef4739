//! Reading a certificate back: subject, SANs, usages, validity, and signature checks (x509-parser).

use std::net::IpAddr;

use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::spec::{CertSpec, Usage};

/// The facts of one certificate that the PKI compares and reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// DER of the whole certificate.
    pub der: Vec<u8>,
    /// Subject common name.
    pub common_name: String,
    /// Subject organizations, in order.
    pub organizations: Vec<String>,
    /// Issuer common name.
    pub issuer_common_name: String,
    /// Raw DER of the subject name (compared with a child's issuer name).
    pub subject_raw: Vec<u8>,
    /// Raw DER of the issuer name.
    pub issuer_raw: Vec<u8>,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// IP SANs.
    pub ips: Vec<IpAddr>,
    /// Basic constraints CA flag.
    pub is_ca: bool,
    /// Extended key usage (`None` when the certificate has neither serverAuth nor clientAuth).
    pub usage: Option<Usage>,
    /// Key usage flags as names (`digitalSignature`, `keyEncipherment`, `keyCertSign`, ...).
    pub key_usages: Vec<&'static str>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// DER SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
}

impl CertInfo {
    /// Parses one PEM certificate (the first block of `pem`).
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let (_, block) =
            x509_parser::pem::parse_x509_pem(pem).map_err(|e| format!("not PEM: {e}"))?;
        if block.label != "CERTIFICATE" {
            return Err(format!("PEM block is '{}', not CERTIFICATE", block.label));
        }
        Self::from_der(&block.contents)
    }

    /// Parses a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        let (_, x) =
            X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let attr = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue>| {
            it.filter_map(|a| a.as_str().ok().map(str::to_string))
                .collect::<Vec<_>>()
        };
        let common_name = attr(&mut x.subject().iter_common_name())
            .into_iter()
            .next()
            .unwrap_or_default();
        let organizations = attr(&mut x.subject().iter_organization());
        let issuer_common_name = attr(&mut x.issuer().iter_common_name())
            .into_iter()
            .next()
            .unwrap_or_default();
        let mut dns_names = Vec::new();
        let mut ips = Vec::new();
        if let Ok(Some(san)) = x.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                    GeneralName::IPAddress(b) => {
                        if let Ok(a) = <[u8; 4]>::try_from(*b) {
                            ips.push(IpAddr::from(a));
                        } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                            ips.push(IpAddr::from(a));
                        }
                    }
                    _ => {}
                }
            }
        }
        let is_ca = matches!(x.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
        let usage = match x.extended_key_usage() {
            Ok(Some(eku)) => match (eku.value.server_auth, eku.value.client_auth) {
                (true, true) => Some(Usage::ServerAndClient),
                (true, false) => Some(Usage::Server),
                (false, true) => Some(Usage::Client),
                (false, false) => None,
            },
            _ => None,
        };
        let mut key_usages = Vec::new();
        if let Ok(Some(ku)) = x.key_usage() {
            let ku = ku.value;
            for (on, name) in [
                (ku.digital_signature(), "digitalSignature"),
                (ku.non_repudiation(), "contentCommitment"),
                (ku.key_encipherment(), "keyEncipherment"),
                (ku.data_encipherment(), "dataEncipherment"),
                (ku.key_agreement(), "keyAgreement"),
                (ku.key_cert_sign(), "keyCertSign"),
                (ku.crl_sign(), "cRLSign"),
            ] {
                if on {
                    key_usages.push(name);
                }
            }
        }
        Ok(Self {
            der: der.to_vec(),
            common_name,
            organizations,
            issuer_common_name,
            subject_raw: x.subject().as_raw().to_vec(),
            issuer_raw: x.issuer().as_raw().to_vec(),
            dns_names,
            ips,
            is_ca,
            usage,
            key_usages,
            not_before: x.validity().not_before.to_datetime(),
            not_after: x.validity().not_after.to_datetime(),
            spki: x.public_key().raw.to_vec(),
        })
    }

    /// True when `ca` signed this certificate (issuer name matches and the signature verifies).
    pub fn signed_by(&self, ca: &CertInfo) -> bool {
        if self.issuer_raw != ca.subject_raw {
            return false;
        }
        let (Ok((_, me)), Ok((_, parent))) = (
            X509Certificate::from_der(&self.der),
            X509Certificate::from_der(&ca.der),
        ) else {
            return false;
        };
        me.verify_signature(Some(parent.public_key())).is_ok()
    }

    /// True when `not_after` has passed.
    pub fn expired(&self, now: OffsetDateTime) -> bool {
        self.not_after <= now
    }

    /// What must change for this certificate to match `spec` (empty = nothing). Ignores the issuer.
    pub fn differences(&self, spec: &CertSpec) -> Vec<String> {
        let mut out = Vec::new();
        if self.common_name != spec.common_name {
            out.push(format!("CN {} -> {}", self.common_name, spec.common_name));
        }
        if self.organizations != spec.organizations {
            out.push(format!(
                "O [{}] -> [{}]",
                self.organizations.join(","),
                spec.organizations.join(",")
            ));
        }
        if !same_set(&self.dns_names, &spec.dns_names) || !same_set(&self.ips, &spec.ips) {
            out.push("SANs changed".into());
        }
        if self.is_ca != spec.is_ca() {
            out.push("CA flag changed".into());
        }
        if self.usage != spec.usage {
            out.push("usages changed".into());
        }
        out
    }

    /// The spec this certificate was issued from (for renewals: subject and SANs as they are).
    pub fn to_spec(&self, name: &str, issuer: Option<&str>) -> CertSpec {
        CertSpec {
            name: name.to_string(),
            issuer: issuer.map(str::to_string),
            common_name: self.common_name.clone(),
            organizations: self.organizations.clone(),
            dns_names: self.dns_names.clone(),
            ips: self.ips.clone(),
            usage: self.usage,
        }
    }
}

fn same_set<T: PartialEq>(a: &[T], b: &[T]) -> bool {
    a.iter().all(|x| b.contains(x)) && b.iter().all(|x| a.contains(x))
}
