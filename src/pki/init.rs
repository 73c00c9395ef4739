//! `init`: make the directory match the table. Keeps what is valid, re-issues what the inputs
//! changed (from the existing CA and key), creates what is missing; never replaces a CA whose key
//! exists, never replaces the service-account key.

use std::path::{Path, PathBuf};

use rcgen::{KeyPair, PublicKeyData};
use time::OffsetDateTime;

use super::info::CertInfo;
use super::issue::{generate_key, issue, parse_key};
use super::kubeconfig::Kubeconfig;
use super::spec::{certificates, kubeconfigs, CertSpec, ClusterSpec, KeyAlgorithm, Usage};
use super::store::{read_optional, write_atomic, Store, CERT_MODE, KEY_MODE};
use super::{hash, PkiError};

/// What `init` did to one certificate, key pair or kubeconfig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Did not exist; made now.
    Created,
    /// Existed and matched; untouched.
    Kept,
    /// Existed but had to change; the reason says why.
    Reissued(String),
}

impl Action {
    /// `created`, `kept` or `re-issued`.
    pub fn word(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Kept => "kept",
            Self::Reissued(_) => "re-issued",
        }
    }
}

/// One line of the `init` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitRow {
    /// Certificate name (`etcd/server`), `sa`, or kubeconfig file name (`admin.conf`).
    pub name: String,
    /// The files behind it.
    pub files: Vec<PathBuf>,
    /// What happened.
    pub action: Action,
}

/// Result of `init`.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// One row per certificate, the service-account key pair, and each kubeconfig, in table order.
    pub rows: Vec<InitRow>,
    /// `sha256:<hex>` of the cluster CA (for `join --discovery-token-ca-cert-hash`).
    pub ca_hash: String,
}

impl InitReport {
    /// True when nothing was created or re-issued.
    pub fn unchanged(&self) -> bool {
        self.rows.iter().all(|r| r.action == Action::Kept)
    }
}

/// A CA as loaded or made: certificate and, unless externally managed, its key.
struct Ca {
    name: String,
    pem: String,
    info: CertInfo,
    key: Option<KeyPair>,
}

/// Brings `store` (certificates, sa keys) and `kubeconfig_dir` in line with `spec`.
pub fn init(
    store: &Store,
    kubeconfig_dir: &Path,
    spec: &ClusterSpec,
) -> Result<InitReport, PkiError> {
    spec.validate()?;
    store.ensure_dir()?;
    super::store::ensure_dir(kubeconfig_dir)?;
    let now = OffsetDateTime::now_utc();
    let alg = spec.key_algorithm;
    let mut rows = Vec::new();
    let mut cas: Vec<Ca> = Vec::new();

    for cs in certificates(spec) {
        let files = vec![store.cert_path(&cs.name), store.key_path(&cs.name)];
        let action = match &cs.issuer {
            None => {
                let (ca, action) = ensure_ca(store, &cs, alg, now)?;
                cas.push(ca);
                action
            }
            Some(issuer) => {
                let ca = cas
                    .iter()
                    .find(|c| &c.name == issuer)
                    .ok_or_else(|| PkiError::Issue {
                        name: cs.name.clone(),
                        message: format!("issuer {issuer} is not in the table"),
                    })?;
                ensure_leaf(store, &cs, ca, alg, now)?
            }
        };
        rows.push(InitRow {
            name: cs.name.clone(),
            files,
            action,
        });
    }

    rows.push(ensure_service_account(store, alg)?);

    let ca = cas
        .iter()
        .find(|c| c.name == "ca")
        .ok_or_else(|| PkiError::Issue {
            name: "ca".into(),
            message: "missing from the table".into(),
        })?;
    let server = spec.server_url();
    for kc in kubeconfigs(spec) {
        let cs = CertSpec {
            name: kc.file.clone(),
            issuer: Some("ca".into()),
            common_name: kc.common_name.clone(),
            organizations: kc.organizations.clone(),
            dns_names: Vec::new(),
            ips: Vec::new(),
            usage: Some(Usage::Client),
        };
        let path = kubeconfig_dir.join(&kc.file);
        let action = ensure_kubeconfig(&path, &cs, ca, &server, alg, now)?;
        rows.push(InitRow {
            name: kc.file,
            files: vec![path],
            action,
        });
    }

    let ca_hash = hash::spki_hash(&ca.info.spki);
    Ok(InitReport { rows, ca_hash })
}

fn parse_err(path: PathBuf, message: String) -> PkiError {
    PkiError::Parse { path, message }
}

/// Loads or makes one CA. A CA whose key exists is never replaced: at most its certificate is
/// re-created from that key (same public key, so the CA hash stays the same).
fn ensure_ca(
    store: &Store,
    cs: &CertSpec,
    alg: KeyAlgorithm,
    now: OffsetDateTime,
) -> Result<(Ca, Action), PkiError> {
    let key = match store.read_key(&cs.name)? {
        Some(pem) => Some(parse_key(&pem).map_err(|e| parse_err(store.key_path(&cs.name), e))?),
        None => None,
    };
    let cert = store.read_cert(&cs.name)?;
    let parsed = cert
        .as_deref()
        .map(|pem| CertInfo::from_pem(pem.as_bytes()).map(|info| (pem.to_string(), info)));
    let (pem, info, key, action) = match (parsed, key) {
        (Some(Ok((pem, info))), Some(key))
            if info.spki == key.subject_public_key_info() && info.is_ca =>
        {
            (pem, info, Some(key), Action::Kept)
        }
        (Some(Ok((pem, info))), None) => (pem, info, None, Action::Kept),
        (Some(Err(e)), None) => return Err(parse_err(store.cert_path(&cs.name), e)),
        (parsed, Some(key)) => {
            let reason = match parsed {
                None => "certificate missing; re-created from the existing key".to_string(),
                Some(Err(e)) => {
                    format!("certificate unreadable ({e}); re-created from the existing key")
                }
                Some(Ok(_)) => "certificate does not match the key; re-created from the key".into(),
            };
            let pem = issue(cs, &key, None, now)?;
            let info = CertInfo::from_pem(pem.as_bytes()).map_err(|message| PkiError::Issue {
                name: cs.name.clone(),
                message,
            })?;
            store.write_cert(&cs.name, &pem)?;
            (pem, info, Some(key), Action::Reissued(reason))
        }
        (None, None) => {
            let key = generate_key(alg)?;
            let pem = issue(cs, &key, None, now)?;
            let info = CertInfo::from_pem(pem.as_bytes()).map_err(|message| PkiError::Issue {
                name: cs.name.clone(),
                message,
            })?;
            store.write_key(&cs.name, &key.serialize_pem())?;
            store.write_cert(&cs.name, &pem)?;
            (pem, info, Some(key), Action::Created)
        }
    };
    Ok((
        Ca {
            name: cs.name.clone(),
            pem,
            info,
            key,
        },
        action,
    ))
}

/// Why an existing certificate (with its key) must be re-issued for `cs` under `ca`; `None` = keep.
fn reissue_reason(
    cert_pem: Option<&str>,
    key: Option<&KeyPair>,
    cs: &CertSpec,
    ca: &Ca,
    now: OffsetDateTime,
) -> Option<String> {
    let Some(cert_pem) = cert_pem else {
        return Some("missing".into());
    };
    let info = match CertInfo::from_pem(cert_pem.as_bytes()) {
        Ok(info) => info,
        Err(e) => return Some(format!("unreadable certificate: {e}")),
    };
    let Some(key) = key else {
        return Some("key missing or unreadable".into());
    };
    if info.spki != key.subject_public_key_info() {
        return Some("certificate does not match its key".into());
    }
    if !info.signed_by(&ca.info) {
        return Some(format!("not signed by the current {}", ca.name));
    }
    let diffs = info.differences(cs);
    if !diffs.is_empty() {
        return Some(diffs.join("; "));
    }
    if info.expired(now) {
        return Some("expired".into());
    }
    None
}

/// Signs `cs` for `key` (existing or new) with `ca`; returns the certificate PEM and whether the
/// key is new.
fn sign(
    cs: &CertSpec,
    key: Option<KeyPair>,
    ca: &Ca,
    reason: &str,
    alg: KeyAlgorithm,
    now: OffsetDateTime,
) -> Result<(String, KeyPair, bool), PkiError> {
    let ca_key = ca.key.as_ref().ok_or_else(|| PkiError::MissingCaKey {
        name: cs.name.clone(),
        reason: reason.to_string(),
        ca: ca.name.clone(),
    })?;
    let (key, new_key) = match key {
        Some(k) => (k, false),
        None => (generate_key(alg)?, true),
    };
    let pem = issue(cs, &key, Some((&ca.pem, ca_key)), now)?;
    Ok((pem, key, new_key))
}

fn ensure_leaf(
    store: &Store,
    cs: &CertSpec,
    ca: &Ca,
    alg: KeyAlgorithm,
    now: OffsetDateTime,
) -> Result<Action, PkiError> {
    let key_pem = store.read_key(&cs.name)?;
    let cert_pem = store.read_cert(&cs.name)?;
    let key = key_pem.as_deref().and_then(|p| parse_key(p).ok());
    let Some(reason) = reissue_reason(cert_pem.as_deref(), key.as_ref(), cs, ca, now) else {
        return Ok(Action::Kept);
    };
    let (pem, key, new_key) = sign(cs, key, ca, &reason, alg, now)?;
    if new_key {
        store.write_key(&cs.name, &key.serialize_pem())?;
    }
    store.write_cert(&cs.name, &pem)?;
    Ok(if cert_pem.is_none() && key_pem.is_none() {
        Action::Created
    } else {
        Action::Reissued(reason)
    })
}

/// `sa.key` (0600) and `sa.pub` (PEM PUBLIC KEY). An existing key is never replaced: that
/// would invalidate every service-account token.
fn ensure_service_account(store: &Store, alg: KeyAlgorithm) -> Result<InitRow, PkiError> {
    let key_path = store.dir.join("sa.key");
    let pub_path = store.dir.join("sa.pub");
    let files = vec![key_path.clone(), pub_path.clone()];
    let action = match read_optional(&key_path)? {
        Some(pem) => {
            let key = parse_key(&pem).map_err(|e| parse_err(key_path.clone(), e))?;
            let want = key.public_key_pem();
            if read_optional(&pub_path)?.as_deref() == Some(want.as_str()) {
                Action::Kept
            } else {
                write_atomic(&pub_path, want.as_bytes(), CERT_MODE)?;
                Action::Reissued("sa.pub missing or not matching sa.key; derived again".into())
            }
        }
        None => {
            let key = generate_key(alg)?;
            write_atomic(&key_path, key.serialize_pem().as_bytes(), KEY_MODE)?;
            write_atomic(&pub_path, key.public_key_pem().as_bytes(), CERT_MODE)?;
            Action::Created
        }
    };
    Ok(InitRow {
        name: "sa".into(),
        files,
        action,
    })
}

fn ensure_kubeconfig(
    path: &Path,
    cs: &CertSpec,
    ca: &Ca,
    server: &str,
    alg: KeyAlgorithm,
    now: OffsetDateTime,
) -> Result<Action, PkiError> {
    let text = read_optional(path)?;
    let existing = text.as_deref().map(|t| Kubeconfig::parse(t, path));
    let (reason, key) = match &existing {
        None => (Some("missing".to_string()), None),
        Some(Err(e)) => (Some(format!("unreadable: {e}")), None),
        Some(Ok(kc)) => {
            let key = parse_key(&kc.key_pem).ok();
            let reason = if kc.ca_pem.trim() != ca.pem.trim() {
                Some("CA certificate changed".to_string())
            } else if kc.server != server {
                Some(format!("server {} -> {server}", kc.server))
            } else {
                reissue_reason(Some(&kc.cert_pem), key.as_ref(), cs, ca, now)
            };
            (reason, key)
        }
    };
    let Some(reason) = reason else {
        return Ok(Action::Kept);
    };
    let (cert_pem, key, _) = sign(cs, key, ca, &reason, alg, now)?;
    let kc = Kubeconfig {
        server: server.to_string(),
        ca_pem: ca.pem.clone(),
        user: cs.common_name.clone(),
        cert_pem,
        key_pem: key.serialize_pem(),
    };
    write_atomic(path, kc.render().as_bytes(), KEY_MODE)?;
    Ok(if existing.is_none() {
        Action::Created
    } else {
        Action::Reissued(reason)
    })
}
