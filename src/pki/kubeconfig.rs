//! Kubeconfig files (`admin.conf`, `kubelet-<node>.conf`, ...): one cluster, one user with an
//! embedded client certificate and key, one context — the shape kubeadm writes.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::Value;

/// Cluster name used in every kubeconfig (kubeadm's default).
pub const CLUSTER_NAME: &str = "kubernetes";

/// The contents of one kubeconfig, PEM fields decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kubeconfig {
    /// API server URL.
    pub server: String,
    /// CA certificate PEM.
    pub ca_pem: String,
    /// User name (the client certificate's CN).
    pub user: String,
    /// Client certificate PEM.
    pub cert_pem: String,
    /// Client key PEM.
    pub key_pem: String,
}

impl Kubeconfig {
    /// Renders the YAML, certificates base64-encoded like kubectl expects.
    pub fn render(&self) -> String {
        let context = format!("{}@{CLUSTER_NAME}", self.user);
        format!(
            "apiVersion: v1\n\
             clusters:\n\
             - cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: {CLUSTER_NAME}\n\
             contexts:\n\
             - context:\n    cluster: {CLUSTER_NAME}\n    user: {user}\n  name: {context}\n\
             current-context: {context}\n\
             kind: Config\n\
             preferences: {{}}\n\
             users:\n\
             - name: {user}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n",
            ca = B64.encode(&self.ca_pem),
            server = quote(&self.server),
            user = quote(&self.user),
            context = quote(&context),
            cert = B64.encode(&self.cert_pem),
            key = B64.encode(&self.key_pem),
        )
    }

    /// Parses a kubeconfig: the current context's cluster and user (or the first ones).
    pub fn parse(text: &str, file: &Path) -> Result<Self, String> {
        let doc = crate::data::yaml::parse_yaml(text, file).map_err(|e| e.to_string())?;
        let current = doc.get("current-context").and_then(Value::as_str);
        let context = doc
            .get("contexts")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .find(|c| current.is_some() && c.get("name").and_then(Value::as_str) == current)
                    .or_else(|| cs.first())
            })
            .and_then(|c| c.get("context"));
        let pick = |list: &str, wanted: Option<&str>| -> Option<Value> {
            let items = doc.get(list)?.as_array()?;
            items
                .iter()
                .find(|i| wanted.is_some() && i.get("name").and_then(Value::as_str) == wanted)
                .or_else(|| items.first())
                .cloned()
        };
        let cluster = pick(
            "clusters",
            context
                .and_then(|c| c.get("cluster"))
                .and_then(Value::as_str),
        )
        .ok_or("no cluster")?;
        let user = pick(
            "users",
            context.and_then(|c| c.get("user")).and_then(Value::as_str),
        )
        .ok_or("no user")?;
        let field = |v: &Value, section: &str, key: &str| -> Result<String, String> {
            v.get(section)
                .and_then(|s| s.get(key))
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("missing {section}.{key}"))
        };
        let decode = |v: &Value, section: &str, key: &str| -> Result<String, String> {
            let b = B64
                .decode(field(v, section, key)?.trim())
                .map_err(|e| format!("{section}.{key}: bad base64: {e}"))?;
            String::from_utf8(b).map_err(|_| format!("{section}.{key}: not PEM text"))
        };
        Ok(Self {
            server: field(&cluster, "cluster", "server")?,
            ca_pem: decode(&cluster, "cluster", "certificate-authority-data")?,
            user: user
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            cert_pem: decode(&user, "user", "client-certificate-data")?,
            key_pem: decode(&user, "user", "client-key-data")?,
        })
    }
}

/// Double-quotes a YAML scalar when it contains anything but safe characters.
fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/@[]".contains(c))
        && !s.starts_with(['[', ':', '@'])
        && !s.contains(": ");
    if plain && !s.starts_with("https://[") {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let k = Kubeconfig {
            server: "https://[fd00::1]:6443".into(),
            ca_pem: "-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n".into(),
            user: "system:node:cp1".into(),
            cert_pem: "cert".into(),
            key_pem: "key".into(),
        };
        let text = k.render();
        assert!(
            text.contains("current-context: system:node:cp1@kubernetes"),
            "{text}"
        );
        assert_eq!(Kubeconfig::parse(&text, Path::new("x.conf")).unwrap(), k);
    }
}
