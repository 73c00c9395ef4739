//! Service-account tokens: compact JWS (JWT) signed with the PKI's `sa.key` — RS256 for RSA
//! keys, ES256 for P-256 keys, as kube-apiserver does — and verified with `sa.pub`. A valid
//! token names `system:serviceaccount:<ns>:<name>` (claim `sub`, or the legacy
//! `kubernetes.io/serviceaccount/*` claims) and puts the caller in `system:serviceaccounts` and
//! `system:serviceaccounts:<ns>`. Crypto is `ring` (already built for rustls), key files are
//! read with rustls-pki-types and x509-parser: no extra JWT crate is needed for two algorithms.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair, UnparsedPublicKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};
use serde_json::{json, Value};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::User;

/// A key that verifies service-account tokens (`--service-account-key-file`).
#[derive(Debug, Clone)]
pub enum VerifyKey {
    /// RSA public key (PKCS#1 RSAPublicKey DER), for RS256.
    Rsa(Vec<u8>),
    /// P-256 public point (uncompressed), for ES256.
    Ec(Vec<u8>),
}

impl VerifyKey {
    /// Reads a PEM public key (`PUBLIC KEY`, SubjectPublicKeyInfo).
    pub fn from_pem(pem: &[u8]) -> Result<VerifyKey> {
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem)
            .map_err(|e| anyhow!("not a PEM public key: {e}"))?;
        let (_, info) = SubjectPublicKeyInfo::from_der(spki.as_ref())
            .map_err(|e| anyhow!("unreadable public key: {e}"))?;
        let data = info.subject_public_key.data.to_vec();
        match info.parsed() {
            Ok(PublicKey::RSA(_)) => Ok(VerifyKey::Rsa(data)),
            Ok(PublicKey::EC(_)) => Ok(VerifyKey::Ec(data)),
            _ => Err(anyhow!("only RSA and P-256 public keys are supported")),
        }
    }

    /// Reads a PEM public key file.
    pub fn from_file(path: &Path) -> Result<VerifyKey> {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        VerifyKey::from_pem(&pem).with_context(|| path.display().to_string())
    }

    fn verify(&self, alg: &str, msg: &[u8], sig: &[u8]) -> bool {
        match (self, alg) {
            (VerifyKey::Rsa(k), "RS256") => {
                UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, k)
                    .verify(msg, sig)
                    .is_ok()
            }
            (VerifyKey::Ec(k), "ES256") => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, k)
                    .verify(msg, sig)
                    .is_ok()
            }
            _ => false,
        }
    }
}

/// A key that signs service-account tokens (`--service-account-signing-key-file`).
pub enum SigningKey {
    /// RSA (RS256).
    Rsa(RsaKeyPair),
    /// P-256 (ES256).
    Ec(EcdsaKeyPair),
}

impl SigningKey {
    /// Reads a PEM private key (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`).
    pub fn from_pem(pem: &[u8]) -> Result<SigningKey> {
        let key = PrivateKeyDer::from_pem_slice(pem)
            .map_err(|e| anyhow!("not a PEM private key: {e}"))?;
        match key {
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der())
                .map(SigningKey::Rsa)
                .map_err(|e| anyhow!("bad RSA key: {e}")),
            PrivateKeyDer::Pkcs8(k) => {
                let der = k.secret_pkcs8_der();
                if let Ok(rsa) = RsaKeyPair::from_pkcs8(der) {
                    return Ok(SigningKey::Rsa(rsa));
                }
                EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    der,
                    &SystemRandom::new(),
                )
                .map(SigningKey::Ec)
                .map_err(|e| anyhow!("neither an RSA nor a P-256 key: {e}"))
            }
            _ => Err(anyhow!(
                "unsupported private key format (use PKCS#8 or PKCS#1)"
            )),
        }
    }

    /// Reads a PEM private key file.
    pub fn from_file(path: &Path) -> Result<SigningKey> {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        SigningKey::from_pem(&pem).with_context(|| path.display().to_string())
    }

    /// The public half, which verifies what this key signs.
    pub fn verify_key(&self) -> VerifyKey {
        use ring::signature::KeyPair;
        match self {
            SigningKey::Rsa(k) => VerifyKey::Rsa(k.public_key().as_ref().to_vec()),
            SigningKey::Ec(k) => VerifyKey::Ec(k.public_key().as_ref().to_vec()),
        }
    }

    /// A compact JWS of `claims`.
    pub fn sign(&self, claims: &Value) -> Result<String> {
        let alg = match self {
            SigningKey::Rsa(_) => "RS256",
            SigningKey::Ec(_) => "ES256",
        };
        let header = json!({"alg": alg, "typ": "JWT"});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let sig = match self {
            SigningKey::Rsa(k) => {
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rng,
                    input.as_bytes(),
                    &mut sig,
                )
                .map_err(|_| anyhow!("RSA signing failed"))?;
                sig
            }
            SigningKey::Ec(k) => k
                .sign(&rng, input.as_bytes())
                .map_err(|_| anyhow!("ECDSA signing failed"))?
                .as_ref()
                .to_vec(),
        };
        Ok(format!("{input}.{}", B64.encode(sig)))
    }
}

/// The claims of a token for `namespace/name`, valid for `seconds` from `now` (Unix seconds).
pub fn claims(namespace: &str, name: &str, uid: &str, now: i64, seconds: i64) -> Value {
    json!({
        "iss": "https://kubernetes.default.svc.cluster.local",
        "sub": format!("system:serviceaccount:{namespace}:{name}"),
        "aud": ["https://kubernetes.default.svc.cluster.local"],
        "iat": now,
        "nbf": now,
        "exp": now + seconds,
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}},
    })
}

/// A verified token's service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Namespace.
    pub namespace: String,
    /// ServiceAccount name.
    pub name: String,
    /// ServiceAccount uid, if the token names one.
    pub uid: Option<String>,
}

impl Identity {
    /// The user this identity authenticates as.
    pub fn user(&self) -> User {
        User {
            name: format!("system:serviceaccount:{}:{}", self.namespace, self.name),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{}", self.namespace),
                "system:authenticated".into(),
            ],
        }
    }
}

/// Whether a bearer token looks like a JWT (three base64url parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && token.starts_with("eyJ")
}

/// Verifies `token` with any of `keys` at Unix time `now`; the identity or why not.
pub fn verify(token: &str, keys: &[VerifyKey], now: i64) -> Result<Identity, String> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a JWT".into());
    };
    let decode = |x: &str| B64.decode(x).map_err(|_| "bad base64 in JWT".to_string());
    let header: Value =
        serde_json::from_slice(&decode(h)?).map_err(|_| "bad JWT header".to_string())?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let sig = decode(s)?;
    let msg = format!("{h}.{p}");
    if !keys.iter().any(|k| k.verify(alg, msg.as_bytes(), &sig)) {
        return Err("invalid signature".into());
    }
    let claims: Value =
        serde_json::from_slice(&decode(p)?).map_err(|_| "bad JWT claims".to_string())?;
    if let Some(exp) = claims.get("exp").and_then(Value::as_i64) {
        if exp <= now {
            return Err("token expired".into());
        }
    }
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_i64) {
        if nbf > now + 60 {
            return Err("token not yet valid".into());
        }
    }
    let legacy = |k: &str| {
        claims
            .get(format!("kubernetes.io/serviceaccount/{k}"))
            .and_then(Value::as_str)
            .map(String::from)
    };
    let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
    let (namespace, name) = match sub.strip_prefix("system:serviceaccount:") {
        Some(rest) => match rest.split_once(':') {
            Some((ns, n)) if !ns.is_empty() && !n.is_empty() => (ns.to_string(), n.to_string()),
            _ => return Err(format!("bad subject {sub:?}")),
        },
        None => match (legacy("namespace"), legacy("service-account.name")) {
            (Some(ns), Some(n)) => (ns, n),
            _ => return Err("token names no service account".into()),
        },
    };
    let uid = claims
        .pointer("/kubernetes.io/serviceaccount/uid")
        .and_then(Value::as_str)
        .map(String::from)
        .or_else(|| legacy("service-account.uid"));
    Ok(Identity {
        namespace,
        name,
        uid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keypair() -> (SigningKey, VerifyKey) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
        let k = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .unwrap();
        use ring::signature::KeyPair;
        let public = VerifyKey::Ec(k.public_key().as_ref().to_vec());
        (SigningKey::Ec(k), public)
    }

    #[test]
    fn rsa_keys_from_pem_sign_rs256() {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let signer = SigningKey::from_pem(kp.serialize_pem().as_bytes()).unwrap();
        assert!(matches!(signer, SigningKey::Rsa(_)));
        let public = VerifyKey::from_pem(kp.public_key_pem().as_bytes()).unwrap();
        assert!(matches!(public, VerifyKey::Rsa(_)));
        let token = signer
            .sign(&claims("kube-system", "ctl", "u", 100, 60))
            .unwrap();
        let header = B64.decode(token.split('.').next().unwrap()).unwrap();
        assert!(String::from_utf8(header).unwrap().contains("\"RS256\""));
        assert_eq!(verify(&token, &[public], 120).unwrap().name, "ctl");
        assert!(verify(&token, &[signer.verify_key()], 120).is_ok());
        let ec = rcgen::KeyPair::generate().unwrap();
        let ec_public = VerifyKey::from_pem(ec.public_key_pem().as_bytes()).unwrap();
        assert!(verify(&token, &[ec_public], 120).is_err());
    }

    #[test]
    fn signed_tokens_verify_and_expire() {
        let (signer, public) = keypair();
        let now = 1_700_000_000;
        let token = signer
            .sign(&claims("ci", "builder", "u-1", now, 3600))
            .unwrap();
        assert!(looks_like_jwt(&token));
        let id = verify(&token, std::slice::from_ref(&public), now + 10).unwrap();
        assert_eq!(
            id,
            Identity {
                namespace: "ci".into(),
                name: "builder".into(),
                uid: Some("u-1".into())
            }
        );
        assert_eq!(id.user().name, "system:serviceaccount:ci:builder");
        assert!(id
            .user()
            .groups
            .contains(&"system:serviceaccounts:ci".to_string()));
        assert_eq!(
            verify(&token, std::slice::from_ref(&public), now + 4000).unwrap_err(),
            "token expired"
        );
        let (_, other) = keypair();
        assert_eq!(
            verify(&token, &[other], now).unwrap_err(),
            "invalid signature"
        );
        let mut forged = token.clone();
        forged.insert(forged.len() - 5, 'A');
        assert!(verify(&forged, &[public], now).is_err());
    }
}
