//! Bootstrap-token authentication: a Bearer `<id>.<secret>` matches the Secret
//! `kube-system/bootstrap-token-<id>` (type `bootstrap.kubernetes.io/token`) when its
//! `token-secret` equals, `expiration` is in the future and `usage-bootstrap-authentication` is
//! `true`; the caller becomes `system:bootstrap:<id>` in `system:bootstrappers` plus the
//! Secret's `auth-extra-groups`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::User;
use crate::storage::Store;

/// Secret type of bootstrap tokens.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";

/// Splits `abcdef.0123456789abcdef` into (id, secret) if it has the bootstrap token shape.
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

fn data(secret: &Value, key: &str) -> Option<String> {
    let b64 = secret.get("data")?.get(key)?.as_str()?;
    String::from_utf8(B64.decode(b64).ok()?).ok()
}

/// Constant-time string comparison (the secret half of a token).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Checks `token` against the stored Secret `secret` at time `now`; the user or why not.
pub fn check(
    secret: &Value,
    id: &str,
    token_secret: &str,
    now: DateTime<Utc>,
) -> Result<User, String> {
    if secret.get("type").and_then(Value::as_str) != Some(SECRET_TYPE) {
        return Err(format!("secret bootstrap-token-{id} has the wrong type"));
    }
    if data(secret, "token-id").as_deref() != Some(id) {
        return Err("token-id does not match".into());
    }
    match data(secret, "token-secret") {
        Some(s) if same(&s, token_secret) => {}
        _ => return Err("token secret does not match".into()),
    }
    if data(secret, "usage-bootstrap-authentication").as_deref() != Some("true") {
        return Err("token may not be used for authentication".into());
    }
    if let Some(exp) = data(secret, "expiration") {
        let t = DateTime::parse_from_rfc3339(&exp)
            .map_err(|_| format!("unparsable expiration {exp:?}"))?;
        if t.with_timezone(&Utc) <= now {
            return Err(format!("token {id} expired at {exp}"));
        }
    }
    let mut groups = vec!["system:bootstrappers".to_string()];
    if let Some(extra) = data(secret, "auth-extra-groups") {
        for g in extra.split(',').map(str::trim).filter(|g| !g.is_empty()) {
            if !g.starts_with("system:bootstrappers:") {
                return Err(format!(
                    "extra group {g:?} must start with system:bootstrappers:"
                ));
            }
            groups.push(g.to_string());
        }
    }
    groups.push("system:authenticated".into());
    Ok(User {
        name: format!("system:bootstrap:{id}"),
        groups,
    })
}

/// Authenticates a bearer token as a bootstrap token; `Ok(None)` when it is not shaped like
/// one (another authenticator may know it).
pub async fn authenticate(store: &dyn Store, token: &str) -> Result<Option<User>, String> {
    let Some((id, secret)) = parse_token(token) else {
        return Ok(None);
    };
    let key = format!("/registry/secrets/kube-system/bootstrap-token-{id}");
    let stored = store
        .get(&key)
        .await
        .map_err(|e| format!("reading bootstrap token {id}: {e}"))?
        .ok_or_else(|| format!("no bootstrap token {id}"))?;
    check(&stored.value, id, secret, Utc::now()).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret(exp: &str) -> Value {
        let e = |s: &str| B64.encode(s);
        json!({
            "type": SECRET_TYPE,
            "data": {
                "token-id": e("abcdef"),
                "token-secret": e("0123456789abcdef"),
                "expiration": e(exp),
                "usage-bootstrap-authentication": e("true"),
                "auth-extra-groups": e("system:bootstrappers:kubeadm:default-node-token"),
            }
        })
    }

    #[test]
    fn tokens_are_checked_with_expiry() {
        assert_eq!(
            parse_token("abcdef.0123456789abcdef"),
            Some(("abcdef", "0123456789abcdef"))
        );
        assert!(parse_token("abc.def").is_none());
        let now = Utc::now();
        let u = check(
            &secret("2999-01-01T00:00:00Z"),
            "abcdef",
            "0123456789abcdef",
            now,
        )
        .unwrap();
        assert_eq!(u.name, "system:bootstrap:abcdef");
        assert_eq!(
            u.groups,
            vec![
                "system:bootstrappers",
                "system:bootstrappers:kubeadm:default-node-token",
                "system:authenticated"
            ]
        );
        assert!(check(
            &secret("2000-01-01T00:00:00Z"),
            "abcdef",
            "0123456789abcdef",
            now
        )
        .unwrap_err()
        .contains("expired"));
        assert!(check(
            &secret("2999-01-01T00:00:00Z"),
            "abcdef",
            "0123456789abcdeX",
            now
        )
        .is_err());
    }
}
