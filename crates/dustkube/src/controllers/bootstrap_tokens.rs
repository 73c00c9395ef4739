//! Bootstrap tokens (kube-controller-manager's tokencleaner and bootstrapsigner): deletes the
//! token Secrets in kube-system whose `expiration` has passed, and keeps the `jws-kubeconfig-<id>`
//! signatures of kube-public/cluster-info in step with the live signing tokens — a signature
//! per token with `usage-bootstrap-signing`, none for deleted or expired tokens (so `dustkube
//! join` with a stale token finds no signature and refuses).

use std::collections::BTreeMap;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::Utc;
use serde_json::{json, Map, Value};

use super::client::Client;
use super::reconcile::run_loop;
use crate::cmd::bootstrap::{detached_jws, token_info, Token, TokenInfo, JWS_PREFIX};
use crate::resources::{configmaps, name_of, secrets};

/// The component name of its Events.
pub const COMPONENT: &str = "bootstrap-token-controller";

/// The token of a bootstrap-token Secret, if it may sign cluster-info.
fn signing_token(info: &TokenInfo, secret: &Value) -> Option<Token> {
    if !info.usages.iter().any(|u| u == "signing") {
        return None;
    }
    let b64 = secret.pointer("/data/token-secret")?.as_str()?;
    let secret_half = String::from_utf8(B64.decode(b64).ok()?).ok()?;
    Token::parse(&format!("{}.{secret_half}", info.id)).ok()
}

/// The `data` cluster-info should have: its entries except signatures, plus one signature per
/// signing token over the kubeconfig.
pub fn signed_data(current: &Map<String, Value>, tokens: &[Token]) -> Map<String, Value> {
    let mut data: Map<String, Value> = current
        .iter()
        .filter(|(k, _)| !k.starts_with(JWS_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let kubeconfig = current
        .get("kubeconfig")
        .and_then(Value::as_str)
        .unwrap_or("");
    let sigs: BTreeMap<String, String> = tokens
        .iter()
        .map(|t| (format!("{JWS_PREFIX}{}", t.id), detached_jws(kubeconfig, t)))
        .collect();
    for (k, v) in sigs {
        data.insert(k, json!(v));
    }
    data
}

async fn sync(c: Client) -> anyhow::Result<()> {
    let (all, _) = c
        .list(&secrets::TYPE, Some("kube-system"), "")
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let mut tokens = Vec::new();
    for s in &all {
        let Some(info) = token_info(s) else { continue };
        if info.expires.is_some_and(|t| t <= Utc::now()) {
            tracing::info!(token = %info.id, "deleting expired bootstrap token");
            match c
                .delete(&secrets::TYPE, Some("kube-system"), name_of(s), &json!({}))
                .await
            {
                Ok(_) => {}
                Err(e) if e.reason == "NotFound" => {}
                Err(e) => return Err(anyhow::anyhow!(e.message)),
            }
            continue;
        }
        tokens.extend(signing_token(&info, s));
    }
    let Some(mut ci) = c
        .get(&configmaps::TYPE, Some("kube-public"), "cluster-info")
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?
    else {
        return Ok(());
    };
    let current = ci
        .get("data")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if !current.contains_key("kubeconfig") {
        return Ok(());
    }
    let wanted = signed_data(&current, &tokens);
    if wanted != current {
        ci["data"] = Value::Object(wanted);
        c.update(&configmaps::TYPE, ci)
            .await
            .map_err(|e| anyhow::anyhow!(e.message))?;
    }
    Ok(())
}

/// Runs the token cleaner and signer: on Secret/ConfigMap changes and every 10 s (expiry is a
/// matter of time, not of events).
pub async fn run(client: Client) {
    let c = client.as_component(COMPONENT);
    run_loop(
        c,
        "bootstrap-tokens",
        &[&secrets::TYPE, &configmaps::TYPE],
        Duration::from_secs(10),
        sync,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_the_tokens() {
        let t1 = Token::parse("abcdef.0123456789abcdef").unwrap();
        let t2 = Token::parse("ghijkl.0123456789abcdef").unwrap();
        let mut current = Map::new();
        current.insert("kubeconfig".into(), json!("apiVersion: v1\n"));
        current.insert(format!("{JWS_PREFIX}zzzzzz"), json!("stale"));
        let data = signed_data(&current, &[t1.clone(), t2]);
        assert!(!data.contains_key(&format!("{JWS_PREFIX}zzzzzz")));
        assert_eq!(
            data[&format!("{JWS_PREFIX}abcdef")],
            json!(detached_jws("apiVersion: v1\n", &t1))
        );
        assert!(data.contains_key(&format!("{JWS_PREFIX}ghijkl")));
        assert_eq!(data["kubeconfig"], json!("apiVersion: v1\n"));
        // Stable: the same tokens give the same data (no rewrite loop).
        assert_eq!(signed_data(&data, &[t1]).len(), 2);
    }
}
