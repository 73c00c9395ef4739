//! Bootstrap tokens (`[a-z0-9]{6}.[a-z0-9]{16}`): generation, the `bootstrap-token-<id>` Secret
//! in kube-system, and the cluster-info ConfigMap in kube-public with one detached HS256 JWS per
//! signing token (`jws-kubeconfig-<id>`), computed the way kubeadm's bootstrap signer does.

use std::fmt;
use std::io::Read;

use anyhow::{anyhow, Context, Result};
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Secret type of bootstrap tokens (the authenticator's).
pub use crate::auth::bootstrap::SECRET_TYPE;
/// Group extra tokens made by `init`/`token create` carry (kubeadm's default).
pub const DEFAULT_EXTRA_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
/// Prefix of the cluster-info keys holding signatures.
pub const JWS_PREFIX: &str = "jws-kubeconfig-";
/// API path of the cluster-info ConfigMap.
pub const CLUSTER_INFO_PATH: &str = "/api/v1/namespaces/kube-public/configmaps/cluster-info";
/// API path of the Secrets in kube-system.
pub const SECRETS_PATH: &str = "/api/v1/namespaces/kube-system/secrets";

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A bootstrap token: public id and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// Six characters, public (names the Secret).
    pub id: String,
    /// Sixteen characters, secret.
    pub secret: String,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}.****)", self.id)
    }
}

fn valid_part(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| ALPHABET.contains(&b))
}

impl Token {
    /// A fresh random token (from /dev/urandom).
    pub fn generate() -> Result<Self> {
        let mut out = String::with_capacity(22);
        let mut f = std::fs::File::open("/dev/urandom").context("/dev/urandom")?;
        let mut buf = [0u8; 64];
        while out.len() < 22 {
            f.read_exact(&mut buf).context("/dev/urandom")?;
            // 252 = 7 × 36: rejecting the rest keeps every character equally likely.
            for b in buf.iter().filter(|b| **b < 252) {
                if out.len() < 22 {
                    out.push(ALPHABET[usize::from(*b % 36)] as char);
                }
            }
        }
        Ok(Self {
            id: out[..6].to_string(),
            secret: out[6..].to_string(),
        })
    }

    /// Parses `id.secret`.
    pub fn parse(s: &str) -> Result<Self> {
        let (id, secret) = s
            .split_once('.')
            .filter(|(i, s)| valid_part(i, 6) && valid_part(s, 16))
            .ok_or_else(|| {
                anyhow!("'{s}' is not a bootstrap token ([a-z0-9]{{6}}.[a-z0-9]{{16}})")
            })?;
        Ok(Self {
            id: id.into(),
            secret: secret.into(),
        })
    }
}

/// Checks a token id (`delete` accepts an id or a full token).
pub fn parse_id(s: &str) -> Result<String> {
    let id = s.split('.').next().unwrap_or("");
    if valid_part(id, 6) {
        Ok(id.to_string())
    } else {
        Err(anyhow!(
            "'{s}' is neither a token id ([a-z0-9]{{6}}) nor a token"
        ))
    }
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |x: u8| k.iter().map(|b| b ^ x).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// The detached JWS (`header..signature`) of `payload` signed with `token`: HS256, key = the
/// full token, `kid` = the token id (what `kubeadm join` verifies).
pub fn detached_jws(payload: &str, token: &Token) -> String {
    let header = B64URL.encode(json!({"alg": "HS256", "kid": token.id}).to_string());
    let input = format!("{header}.{}", B64URL.encode(payload));
    let sig = hmac_sha256(token.to_string().as_bytes(), input.as_bytes());
    format!("{header}..{}", B64URL.encode(sig))
}

/// Checks a detached JWS against `payload` and `token`.
pub fn verify_detached_jws(jws: &str, payload: &str, token: &Token) -> bool {
    let Some((header, sig)) = jws.split_once("..") else {
        return false;
    };
    let input = format!("{header}.{}", B64URL.encode(payload));
    let want = B64URL.encode(hmac_sha256(token.to_string().as_bytes(), input.as_bytes()));
    let header_ok = B64URL
        .decode(header)
        .ok()
        .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
        .is_some_and(|h| h["alg"] == "HS256");
    header_ok && want == sig
}

/// The kubeconfig cluster-info publishes: the server URL and CA, no user.
pub fn cluster_info_kubeconfig(server: &str, ca_pem: &str) -> String {
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {server}\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {{}}\nusers: null\n",
        B64.encode(ca_pem)
    )
}

/// The cluster-info ConfigMap (without signatures).
pub fn cluster_info(server: &str, ca_pem: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cluster-info", "namespace": "kube-public"},
        "data": {"kubeconfig": cluster_info_kubeconfig(server, ca_pem)},
    })
}

/// The `bootstrap-token-<id>` Secret: usages signing + authentication, kubeadm's extra group,
/// expiring `ttl` from `now` (`None`: never).
pub fn token_secret(
    token: &Token,
    now: DateTime<Utc>,
    ttl: Option<chrono::Duration>,
    description: &str,
) -> Value {
    let mut data = serde_json::Map::new();
    let mut put = |k: &str, v: &str| {
        data.insert(k.into(), json!(B64.encode(v)));
    };
    put("token-id", &token.id);
    put("token-secret", &token.secret);
    if let Some(ttl) = ttl {
        put(
            "expiration",
            &(now + ttl).to_rfc3339_opts(SecondsFormat::Secs, true),
        );
    }
    put("usage-bootstrap-authentication", "true");
    put("usage-bootstrap-signing", "true");
    put("auth-extra-groups", DEFAULT_EXTRA_GROUP);
    if !description.is_empty() {
        put("description", description);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": format!("bootstrap-token-{}", token.id), "namespace": "kube-system"},
        "type": SECRET_TYPE,
        "data": data,
    })
}

/// What `token list` shows of one token Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// Token id.
    pub id: String,
    /// Expiry, if any.
    pub expires: Option<DateTime<Utc>>,
    /// `authentication`, `signing`, ... (the `usage-bootstrap-*` keys set to true).
    pub usages: Vec<String>,
    /// Free text.
    pub description: String,
    /// `auth-extra-groups`.
    pub extra_groups: String,
}

/// Reads a token Secret; `None` for other Secrets or malformed ones.
pub fn token_info(secret: &Value) -> Option<TokenInfo> {
    if secret.get("type").and_then(Value::as_str) != Some(SECRET_TYPE) {
        return None;
    }
    let data = secret.get("data")?.as_object()?;
    let field = |k: &str| {
        data.get(k)
            .and_then(Value::as_str)
            .and_then(|v| B64.decode(v).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let id = field("token-id")?;
    let expires = field("expiration")
        .and_then(|e| DateTime::parse_from_rfc3339(&e).ok())
        .map(|t| t.with_timezone(&Utc));
    let mut usages: Vec<String> = data
        .keys()
        .filter_map(|k| k.strip_prefix("usage-bootstrap-"))
        .filter(|u| field(&format!("usage-bootstrap-{u}")).as_deref() == Some("true"))
        .map(str::to_string)
        .collect();
    usages.sort();
    Some(TokenInfo {
        id,
        expires,
        usages,
        description: field("description").unwrap_or_default(),
        extra_groups: field("auth-extra-groups").unwrap_or_default(),
    })
}

/// A duration the way kubectl prints ages: `23h`, `6d`, `59m`, `<invalid>` when negative.
pub fn human(d: chrono::Duration) -> String {
    let s = d.num_seconds();
    if s < 0 {
        "<invalid>".into()
    } else if s < 120 {
        format!("{s}s")
    } else if s < 2 * 3600 {
        format!("{}m", s / 60)
    } else if s < 48 * 3600 {
        format!("{}h", s / 3600)
    } else {
        format!("{}d", s / 86400)
    }
}

/// Parses a TTL like `24h`, `30m`, `1h30m`, `90s`, `2d`; `0` means never expires (`None`).
pub fn parse_ttl(s: &str) -> Result<Option<chrono::Duration>> {
    if s == "0" || s == "0s" {
        return Ok(None);
    }
    let bad = || anyhow!("--ttl: '{s}' is not a duration (e.g. 24h, 30m, 1h30m, 0 = never)");
    let mut total = 0i64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num.parse().map_err(|_| bad())?;
        num.clear();
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(bad()),
        };
    }
    if !num.is_empty() || total <= 0 {
        return Err(bad());
    }
    Ok(Some(chrono::Duration::seconds(total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn tokens_and_jws() {
        let t = Token::generate().unwrap();
        assert!(valid_part(&t.id, 6) && valid_part(&t.secret, 16));
        assert_eq!(Token::parse(&t.to_string()).unwrap(), t);
        assert!(Token::parse("abc.def").is_err());
        let jws = detached_jws("payload", &t);
        assert!(jws.contains(".."));
        assert!(verify_detached_jws(&jws, "payload", &t));
        assert!(!verify_detached_jws(&jws, "payload!", &t));
        assert_eq!(parse_id(&t.to_string()).unwrap(), t.id);
    }

    #[test]
    fn secret_round_trip() {
        let t = Token::parse("abcdef.0123456789abcdef").unwrap();
        let now = Utc::now();
        let s = token_secret(&t, now, Some(chrono::Duration::hours(24)), "init");
        let info = token_info(&s).unwrap();
        assert_eq!(info.id, "abcdef");
        assert_eq!(info.usages, ["authentication", "signing"]);
        assert_eq!(info.extra_groups, DEFAULT_EXTRA_GROUP);
        let left = info.expires.unwrap() - now;
        assert!(left.num_hours() == 23 || left.num_hours() == 24);
        assert_eq!(human(left), "23h");
    }

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("24h").unwrap().unwrap().num_hours(), 24);
        assert_eq!(parse_ttl("1h30m").unwrap().unwrap().num_minutes(), 90);
        assert_eq!(parse_ttl("0").unwrap(), None);
        assert!(parse_ttl("soon").is_err());
        assert!(parse_ttl("10").is_err());
    }
}
