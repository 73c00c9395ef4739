//! The shared control-plane certificates for `join --control-plane` (kubeadm's
//! `--upload-certs` / `--certificate-key`): the CAs' certificates and keys and the
//! service-account key pair, each encrypted with AES-256-GCM under a random 32-byte key
//! (printed once as 64 hex digits, never stored), in the Secret `kube-system/dustkube-certs`
//! that bootstrap tokens may read. A joining control plane downloads and decrypts them with
//! the key.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Map, Value};

use duststack::pki::store::{write_atomic, CERT_MODE, KEY_MODE};

use super::client::ApiClient;

/// Namespace of the Secret.
pub const NAMESPACE: &str = "kube-system";
/// Name of the Secret.
pub const SECRET: &str = "dustkube-certs";
/// The shared files: Secret key and path inside the PKI directory.
pub const SHARED: [(&str, &str); 8] = [
    ("ca.crt", "ca.crt"),
    ("ca.key", "ca.key"),
    ("sa.key", "sa.key"),
    ("sa.pub", "sa.pub"),
    ("front-proxy-ca.crt", "front-proxy-ca.crt"),
    ("front-proxy-ca.key", "front-proxy-ca.key"),
    ("etcd-ca.crt", "etcd/ca.crt"),
    ("etcd-ca.key", "etcd/ca.key"),
];

/// A new certificate key: 32 random bytes as 64 hex digits.
pub fn generate() -> Result<String> {
    let mut key = [0u8; 32];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| anyhow!("no randomness for the certificate key"))?;
    Ok(key.iter().map(|b| format!("{b:02x}")).collect())
}

fn parse_key(hex: &str) -> Result<LessSafeKey> {
    let bad = || anyhow!("--certificate-key: expected 64 hex digits");
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad());
    }
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| bad())?;
    Ok(LessSafeKey::new(key))
}

/// `nonce || ciphertext || tag` of `plain` under the hex key.
pub fn encrypt(key_hex: &str, plain: &[u8]) -> Result<Vec<u8>> {
    let key = parse_key(key_hex)?;
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| anyhow!("no randomness for the nonce"))?;
    let mut data = plain.to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
        .map_err(|_| anyhow!("encryption failed"))?;
    let mut out = nonce.to_vec();
    out.extend(data);
    Ok(out)
}

/// Reverses [`encrypt`]; fails when the key is wrong or the data was changed.
pub fn decrypt(key_hex: &str, sealed: &[u8]) -> Result<Vec<u8>> {
    let key = parse_key(key_hex)?;
    if sealed.len() < NONCE_LEN {
        return Err(anyhow!("ciphertext too short"));
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| anyhow!("bad nonce"))?;
    let mut data = rest.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::empty(), &mut data)
        .map_err(|_| {
            anyhow!("the certificate key does not decrypt {NAMESPACE}/{SECRET} (wrong key?)")
        })?;
    Ok(plain.to_vec())
}

/// The Secret holding the encrypted files of `pki_dir`.
pub fn secret(pki_dir: &Path, key_hex: &str) -> Result<Value> {
    let mut data = Map::new();
    for (name, file) in SHARED {
        let path = pki_dir.join(file);
        let plain = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
        data.insert(name.into(), json!(B64.encode(encrypt(key_hex, &plain)?)));
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": NAMESPACE},
        "type": "Opaque",
        "data": data,
    }))
}

/// Uploads (creates or replaces) the Secret for `pki_dir` under `key_hex`.
pub async fn upload(client: &ApiClient, pki_dir: &Path, key_hex: &str) -> Result<()> {
    let s = secret(pki_dir, key_hex)?;
    let path = format!("/api/v1/namespaces/{NAMESPACE}/secrets");
    let r = client.request("POST", &path, Some(&s)).await?;
    if r.status == 409 {
        client
            .expect_ok("PUT", &format!("{path}/{SECRET}"), Some(&s))
            .await
            .with_context(|| format!("replacing {NAMESPACE}/{SECRET}"))?;
    } else if !r.ok() {
        return Err(anyhow!(
            "creating {NAMESPACE}/{SECRET}: {} {}",
            r.status,
            r.message()
        ));
    }
    Ok(())
}

/// Downloads the Secret with `client` (a bootstrap token may read it), decrypts every file
/// with `key_hex` and writes them into `pki_dir` (keys 0600). Returns the paths written.
pub async fn download(client: &ApiClient, key_hex: &str, pki_dir: &Path) -> Result<Vec<String>> {
    parse_key(key_hex)?;
    let path = format!("/api/v1/namespaces/{NAMESPACE}/secrets/{SECRET}");
    let s = client.get(&path).await?.ok_or_else(|| {
        anyhow!("{NAMESPACE}/{SECRET} does not exist: run `dustkube token create --upload-certs` (or `init --upload-certs`) on a control-plane node")
    })?;
    let mut plain = Vec::new();
    for (name, file) in SHARED {
        let b64 = s
            .pointer(&format!("/data/{name}"))
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("{NAMESPACE}/{SECRET} has no {name}"))?;
        let sealed = B64
            .decode(b64)
            .with_context(|| format!("{SECRET}/{name}: bad base64"))?;
        plain.push((file, decrypt(key_hex, &sealed)?));
    }
    // Everything decrypted: only now write.
    let mut written = Vec::new();
    for (file, bytes) in plain {
        let mode = if file.ends_with(".key") {
            KEY_MODE
        } else {
            CERT_MODE
        };
        let target = pki_dir.join(file);
        write_atomic(&target, &bytes, mode)?;
        written.push(target.display().to_string());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_key() {
        let k = generate().unwrap();
        assert_eq!(k.len(), 64);
        let sealed = encrypt(&k, b"secret key").unwrap();
        assert_ne!(&sealed[NONCE_LEN..], b"secret key");
        assert_eq!(decrypt(&k, &sealed).unwrap(), b"secret key");
        let other = generate().unwrap();
        let e = decrypt(&other, &sealed).unwrap_err().to_string();
        assert!(e.contains("does not decrypt"), "{e}");
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(decrypt(&k, &tampered).is_err());
        assert!(encrypt("abc", b"x").is_err());
        // Two encryptions of the same text differ (fresh nonce).
        assert_ne!(encrypt(&k, b"x").unwrap(), encrypt(&k, b"x").unwrap());
    }
}
