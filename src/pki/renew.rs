//! `renew`: re-issue leaf certificates (never CAs) from their CA, keeping the subject, SANs and
//! usages read from the existing certificate and keeping the key (as kubeadm does).

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::info::CertInfo;
use super::issue::{issue, parse_key};
use super::kubeconfig::Kubeconfig;
use super::spec::{CONTROL_PLANE_KUBECONFIGS, LEAF_NAMES};
use super::store::{read_optional, write_atomic, Store, KEY_MODE};
use super::PkiError;

/// What to renew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewTarget {
    /// Every leaf certificate and kubeconfig that exists.
    All,
    /// One certificate (`apiserver`, `etcd/server` or `etcd-server`) or kubeconfig (`admin.conf`).
    Name(String),
}

/// Outcome of renewing one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewRow {
    /// Display name (`etcd-server`, `admin.conf`).
    pub name: String,
    /// New expiry, or `None` when the item did not exist (only with [`RenewTarget::All`]).
    pub not_after: Option<OffsetDateTime>,
}

/// Renews `target`; CAs are read from `store`, kubeconfigs from `kubeconfig_dir`.
pub fn renew(
    store: &Store,
    kubeconfig_dir: &Path,
    target: &RenewTarget,
) -> Result<Vec<RenewRow>, PkiError> {
    let now = OffsetDateTime::now_utc();
    let kubeconfig_names = kubeconfig_files(kubeconfig_dir)?;
    let wanted = |name: &str| match target {
        RenewTarget::All => true,
        RenewTarget::Name(n) => n == name || *n == display_name(name),
    };
    let mut rows = Vec::new();
    let mut matched = false;
    for (name, ca) in LEAF_NAMES {
        if !wanted(name) {
            continue;
        }
        matched = true;
        let Some(cert_pem) = store.read_cert(name)? else {
            if *target == RenewTarget::All {
                rows.push(RenewRow {
                    name: display_name(name),
                    not_after: None,
                });
                continue;
            }
            return Err(PkiError::Io {
                path: store.cert_path(name),
                source: std::io::ErrorKind::NotFound.into(),
            });
        };
        let info = CertInfo::from_pem(cert_pem.as_bytes())
            .map_err(|message| parse(store.cert_path(name), message))?;
        let key_pem = store.read_key(name)?.ok_or_else(|| PkiError::Io {
            path: store.key_path(name),
            source: std::io::ErrorKind::NotFound.into(),
        })?;
        let key = parse_key(&key_pem).map_err(|m| parse(store.key_path(name), m))?;
        let (ca_pem, ca_key) = load_ca(store, ca, name)?;
        let pem = issue(
            &info.to_spec(name, Some(ca)),
            &key,
            Some((&ca_pem, &ca_key)),
            now,
        )?;
        store.write_cert(name, &pem)?;
        rows.push(RenewRow {
            name: display_name(name),
            not_after: Some(not_after(&pem, name)?),
        });
    }
    for file in &kubeconfig_names {
        if !wanted(file) {
            continue;
        }
        matched = true;
        let path = kubeconfig_dir.join(file);
        let Some(text) = read_optional(&path)? else {
            rows.push(RenewRow {
                name: file.clone(),
                not_after: None,
            });
            continue;
        };
        let mut kc = Kubeconfig::parse(&text, &path).map_err(|m| parse(path.clone(), m))?;
        let info =
            CertInfo::from_pem(kc.cert_pem.as_bytes()).map_err(|m| parse(path.clone(), m))?;
        let key = parse_key(&kc.key_pem).map_err(|m| parse(path.clone(), m))?;
        let (ca_pem, ca_key) = load_ca(store, "ca", file)?;
        kc.cert_pem = issue(
            &info.to_spec(file, Some("ca")),
            &key,
            Some((&ca_pem, &ca_key)),
            now,
        )?;
        write_atomic(&path, kc.render().as_bytes(), KEY_MODE)?;
        rows.push(RenewRow {
            name: file.clone(),
            not_after: Some(not_after(&kc.cert_pem, file)?),
        });
    }
    if !matched {
        let mut names: Vec<String> = LEAF_NAMES.iter().map(|(n, _)| display_name(n)).collect();
        names.extend(kubeconfig_names);
        names.push("all".into());
        let asked = match target {
            RenewTarget::Name(n) => n.clone(),
            RenewTarget::All => "all".into(),
        };
        return Err(PkiError::UnknownName(asked, names.join(", ")));
    }
    Ok(rows)
}

/// kubeadm's display name: `etcd/server` → `etcd-server`.
pub fn display_name(name: &str) -> String {
    name.replace('/', "-")
}

/// The control-plane kubeconfigs plus every `kubelet-*.conf` found in `dir`.
pub fn kubeconfig_files(dir: &Path) -> Result<Vec<String>, PkiError> {
    let mut out: Vec<String> = CONTROL_PLANE_KUBECONFIGS
        .iter()
        .map(|s| s.to_string())
        .collect();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => {
            return Err(PkiError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut kubelets: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("kubelet-") && n.ends_with(".conf"))
        .collect();
    kubelets.sort();
    out.extend(kubelets);
    Ok(out)
}

fn parse(path: PathBuf, message: String) -> PkiError {
    PkiError::Parse { path, message }
}

fn load_ca(store: &Store, ca: &str, for_name: &str) -> Result<(String, rcgen::KeyPair), PkiError> {
    let missing = |path: PathBuf| PkiError::Io {
        path,
        source: std::io::ErrorKind::NotFound.into(),
    };
    let pem = store
        .read_cert(ca)?
        .ok_or_else(|| missing(store.cert_path(ca)))?;
    let key_pem = store.read_key(ca)?.ok_or_else(|| PkiError::MissingCaKey {
        name: for_name.to_string(),
        reason: "renewal".into(),
        ca: ca.to_string(),
    })?;
    let key = parse_key(&key_pem).map_err(|m| parse(store.key_path(ca), m))?;
    Ok((pem, key))
}

fn not_after(pem: &str, name: &str) -> Result<OffsetDateTime, PkiError> {
    CertInfo::from_pem(pem.as_bytes())
        .map(|i| i.not_after)
        .map_err(|message| PkiError::Issue {
            name: name.to_string(),
            message,
        })
}
