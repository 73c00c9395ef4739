//! Pod volumes on disk under `<root-dir>/pods/<uid>/volumes/<plugin>/<name>`: emptyDir,
//! configMap, secret, downwardAPI and projected (their files written from the API objects),
//! and hostPath (the host's path itself).

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use serde_json::Value;

use super::client::ApiClient;
use super::spec::field_ref;

/// `<root>/pods/<uid>`: everything the agent keeps for one pod.
pub fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join("pods").join(uid)
}

/// A relative path that stays inside its volume.
fn safe_rel(p: &str) -> Result<&str> {
    let path = Path::new(p);
    if p.is_empty()
        || path
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
    {
        bail!("invalid volume item path {p:?}");
    }
    Ok(p)
}

fn write_file(dir: &Path, rel: &str, data: &[u8], mode: u32) -> Result<()> {
    let path = dir.join(safe_rel(rel)?);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if std::fs::read(&path).ok().as_deref() != Some(data) {
        std::fs::write(&path, data).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))?;
    Ok(())
}

fn mode_of(v: &Value, default: u32) -> u32 {
    v.as_u64().map(|m| m as u32).unwrap_or(default)
}

/// The key → bytes of a ConfigMap (`data` and `binaryData`) or Secret (`data`, base64).
async fn source_data(
    api: &ApiClient,
    namespace: &str,
    kind: &str,
    name: &str,
    optional: bool,
) -> Result<Option<Vec<(String, Vec<u8>)>>> {
    let path = format!("/api/v1/namespaces/{namespace}/{kind}/{name}");
    let Some(obj) = api.get(&path).await? else {
        if optional {
            return Ok(None);
        }
        bail!("{kind} \"{name}\" not found");
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    if let Some(m) = obj.get("data").and_then(Value::as_object) {
        for (k, v) in m {
            let s = v.as_str().unwrap_or("");
            let bytes = if kind == "secrets" {
                b64.decode(s)
                    .map_err(|e| anyhow!("secret {name} key {k}: bad base64: {e}"))?
            } else {
                s.as_bytes().to_vec()
            };
            out.push((k.clone(), bytes));
        }
    }
    if let Some(m) = obj.get("binaryData").and_then(Value::as_object) {
        for (k, v) in m {
            let bytes = b64
                .decode(v.as_str().unwrap_or(""))
                .map_err(|e| anyhow!("configmap {name} key {k}: bad base64: {e}"))?;
            out.push((k.clone(), bytes));
        }
    }
    Ok(Some(out))
}

/// Writes a configMap/secret source's keys (or its `items`) into `dir`.
async fn write_keys(
    api: &ApiClient,
    namespace: &str,
    kind: &str,
    src: &Value,
    dir: &Path,
    default_mode: u32,
) -> Result<()> {
    let name = src
        .get(if kind == "secrets" && src.get("secretName").is_some() {
            "secretName"
        } else {
            "name"
        })
        .and_then(Value::as_str)
        .unwrap_or("");
    let optional = src.get("optional").and_then(Value::as_bool) == Some(true);
    let Some(data) = source_data(api, namespace, kind, name, optional).await? else {
        return Ok(());
    };
    match src.get("items").and_then(Value::as_array) {
        Some(items) => {
            for item in items {
                let key = item["key"].as_str().unwrap_or("");
                let rel = item["path"].as_str().unwrap_or(key);
                match data.iter().find(|(k, _)| k == key) {
                    Some((_, bytes)) => {
                        write_file(dir, rel, bytes, mode_of(&item["mode"], default_mode))?
                    }
                    None if optional => {}
                    None => bail!("{kind} \"{name}\" has no key {key:?}"),
                }
            }
        }
        None => {
            for (k, bytes) in &data {
                write_file(dir, k, bytes, default_mode)?;
            }
        }
    }
    Ok(())
}

/// Writes downwardAPI items (fieldRef) into `dir`.
fn write_downward(
    pod: &Value,
    items: &[Value],
    dir: &Path,
    default_mode: u32,
    ips: (&str, &str),
) -> Result<()> {
    for item in items {
        let rel = item["path"].as_str().unwrap_or("");
        let value = match item.pointer("/fieldRef/fieldPath").and_then(Value::as_str) {
            Some(fp) => field_ref(pod, fp, ips.0, ips.1)?,
            None => String::new(),
        };
        write_file(
            dir,
            rel,
            value.as_bytes(),
            mode_of(&item["mode"], default_mode),
        )?;
    }
    Ok(())
}

/// Prepares every volume of `pod`; returns volume name → host path.
pub async fn prepare(
    api: &ApiClient,
    root: &Path,
    pod: &Value,
    pod_ip: &str,
    host_ip: &str,
) -> Result<HashMap<String, PathBuf>> {
    let uid = pod
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("");
    let ns = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let base = pod_dir(root, uid).join("volumes");
    let mut out = HashMap::new();
    let volumes = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for v in &volumes {
        let name = v["name"].as_str().unwrap_or("");
        let dir_for = |plugin: &str| base.join(plugin).join(name);
        let path = if v.get("emptyDir").is_some() {
            let d = dir_for("kubernetes.io~empty-dir");
            std::fs::create_dir_all(&d)?;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777))?;
            d
        } else if let Some(src) = v.get("configMap") {
            let d = dir_for("kubernetes.io~configmap");
            std::fs::create_dir_all(&d)?;
            let mode = mode_of(&src["defaultMode"], 0o644);
            write_keys(api, ns, "configmaps", src, &d, mode).await?;
            d
        } else if let Some(src) = v.get("secret") {
            let d = dir_for("kubernetes.io~secret");
            std::fs::create_dir_all(&d)?;
            let mode = mode_of(&src["defaultMode"], 0o644);
            write_keys(api, ns, "secrets", src, &d, mode).await?;
            d
        } else if let Some(src) = v.get("downwardAPI") {
            let d = dir_for("kubernetes.io~downward-api");
            std::fs::create_dir_all(&d)?;
            let items = src["items"].as_array().cloned().unwrap_or_default();
            let mode = mode_of(&src["defaultMode"], 0o644);
            write_downward(pod, &items, &d, mode, (pod_ip, host_ip))?;
            d
        } else if let Some(src) = v.get("projected") {
            let d = dir_for("kubernetes.io~projected");
            std::fs::create_dir_all(&d)?;
            let mode = mode_of(&src["defaultMode"], 0o644);
            for s in src["sources"].as_array().into_iter().flatten() {
                if let Some(c) = s.get("configMap") {
                    write_keys(api, ns, "configmaps", c, &d, mode).await?;
                } else if let Some(c) = s.get("secret") {
                    write_keys(api, ns, "secrets", c, &d, mode).await?;
                } else if let Some(c) = s.get("downwardAPI") {
                    let items = c["items"].as_array().cloned().unwrap_or_default();
                    write_downward(pod, &items, &d, mode, (pod_ip, host_ip))?;
                } else if s.get("serviceAccountToken").is_some() {
                    // Token requests are not served yet: the file is left out.
                    tracing::debug!(volume = name, "serviceAccountToken projection skipped");
                }
            }
            d
        } else if let Some(src) = v.get("hostPath") {
            let p = PathBuf::from(src["path"].as_str().unwrap_or(""));
            if !p.is_absolute() {
                bail!("hostPath volume {name}: path must be absolute");
            }
            match src["type"].as_str().unwrap_or("") {
                "DirectoryOrCreate" => std::fs::create_dir_all(&p)?,
                "Directory" if !p.is_dir() => bail!("hostPath {} is not a directory", p.display()),
                _ => {}
            }
            p
        } else {
            bail!("volume {name}: this volume type is not supported by dustkube agent");
        };
        out.insert(name.to_string(), path);
    }
    Ok(out)
}

/// Deletes the pod's directory (volumes and all).
pub fn remove(root: &Path, uid: &str) {
    if uid.is_empty() {
        return;
    }
    let dir = pod_dir(root, uid);
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the pod directory");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_paths_stay_inside() {
        assert!(safe_rel("a/b").is_ok());
        assert!(safe_rel("../x").is_err());
        assert!(safe_rel("/etc/passwd").is_err());
        assert!(safe_rel("").is_err());
    }

    #[test]
    fn downward_files() {
        let dir = tempfile::tempdir().unwrap();
        let pod =
            serde_json::json!({"metadata": {"name": "p", "namespace": "n", "labels": {"a": "1"}}});
        let items = vec![
            serde_json::json!({"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}),
            serde_json::json!({"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}),
        ];
        write_downward(&pod, &items, dir.path(), 0o644, ("10.0.0.2", "10.0.0.1")).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("name")).unwrap(),
            "p"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("labels")).unwrap(),
            "a=\"1\""
        );
    }
}
