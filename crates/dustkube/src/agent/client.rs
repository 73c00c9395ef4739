//! The agent's API client: the verbs' HTTPS client ([`ApiClient`]) plus list+watch streams
//! (newline-delimited watch events read as they arrive).

use std::path::Path;

use anyhow::{anyhow, Result};
use bytes::{Buf, BytesMut};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::sync::mpsc;

pub use crate::cmd::client::{ApiClient, Reply};

/// One event of a watch stream.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    /// ADDED, MODIFIED, DELETED, BOOKMARK or ERROR.
    pub kind: String,
    /// The object (a Status for ERROR).
    pub object: Value,
}

/// Percent-encodes a query value.
pub fn escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The client with the kubeconfig's server, CA and client certificate.
pub fn from_kubeconfig(path: &Path) -> Result<ApiClient> {
    ApiClient::from_kubeconfig(path)
}

/// Lists `path` (a collection URL with its query); returns the items and the list's
/// resourceVersion.
pub async fn list(api: &ApiClient, path: &str) -> Result<(Vec<Value>, String)> {
    let body = api
        .get(path)
        .await?
        .ok_or_else(|| anyhow!("GET {path}: not found"))?;
    let rv = body
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("0")
        .to_string();
    let items = body
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Ok((items, rv))
}

/// Watches `path` (a collection URL with its query, without `watch`) from `resource_version`
/// and sends each event to `tx` until the stream ends; returns the last resourceVersion seen.
/// An ERROR event (e.g. 410 Expired) ends the watch with an error.
pub async fn watch(
    api: &ApiClient,
    path: &str,
    resource_version: &str,
    tx: &mpsc::Sender<WatchEvent>,
) -> Result<String> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let url = format!(
        "{path}{sep}watch=true&allowWatchBookmarks=true&resourceVersion={}",
        escape(resource_version)
    );
    let (status, mut body) = api.stream(&url).await?;
    if status != 200 {
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(anyhow!(
            "watch {path}: HTTP {status} {}",
            String::from_utf8_lossy(&bytes).trim()
        ));
    }
    let mut last = resource_version.to_string();
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| anyhow!("watch {path}: {e}"))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        loop {
            let mut stream = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
            let ev = match stream.next() {
                Some(Ok(v)) => v,
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => return Err(anyhow!("watch {path}: bad event: {e}")),
                None => break,
            };
            let used = stream.byte_offset();
            buf.advance(used);
            let kind = ev
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let object = ev.get("object").cloned().unwrap_or(Value::Null);
            if kind == "ERROR" {
                return Err(anyhow!(
                    "watch {path}: {}",
                    object
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("error event")
                ));
            }
            if let Some(rv) = object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
            {
                last = rv.to_string();
            }
            if tx.send(WatchEvent { kind, object }).await.is_err() {
                return Ok(last);
            }
        }
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_selectors() {
        assert_eq!(escape("spec.nodeName=n1"), "spec.nodeName%3Dn1");
    }
}
