//! OpenSSH `known_hosts` files: checking a server's host key and recording new ones.
//!
//! Understands plain host patterns (with `*`, `?` wildcards and `!` negation), `[host]:port`
//! entries, hashed `|1|salt|hash` entries, comments, and the `@revoked` marker
//! (`@cert-authority` lines are ignored: certificates are not accepted).

use std::io::Write;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use russh::keys::{Algorithm, PublicKey};
use sha1::{Digest, Sha1};

/// What a known_hosts file says about a host's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyStatus {
    /// The key is recorded for this host.
    Known,
    /// No key of this type is recorded for this host.
    Unknown,
    /// A different key of the same type is recorded for this host (1-based line number).
    Mismatch {
        /// Line of the recorded key.
        line: usize,
    },
    /// The key is marked `@revoked` (1-based line number).
    Revoked {
        /// Line of the `@revoked` entry.
        line: usize,
    },
}

/// One usable entry of a known_hosts file.
struct Entry {
    line: usize,
    revoked: bool,
    patterns: String,
    key: PublicKey,
}

/// The name a host is recorded under: `host`, or `[host]:port` when the port is not 22.
pub fn host_label(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Compares key algorithms, treating all RSA signature hashes as one key type.
fn same_key_type(a: &Algorithm, b: &Algorithm) -> bool {
    match (a, b) {
        (Algorithm::Rsa { .. }, Algorithm::Rsa { .. }) => true,
        _ => a == b,
    }
}

/// Reads the entries of `path`; a missing file has none. Unparsable lines are skipped.
fn read_entries(path: &Path) -> std::io::Result<Vec<Entry>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut entries = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next().unwrap_or_default();
        let mut revoked = false;
        if let Some(marker) = first.strip_prefix('@') {
            match marker {
                "revoked" => revoked = true,
                _ => continue,
            }
            first = match fields.next() {
                Some(f) => f,
                None => continue,
            };
        }
        let (Some(_kind), Some(b64)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Ok(key) = russh::keys::parse_public_key_base64(b64) else {
            continue;
        };
        entries.push(Entry {
            line: i + 1,
            revoked,
            patterns: first.to_string(),
            key,
        });
    }
    Ok(entries)
}

/// HMAC-SHA1, as used by hashed known_hosts entries.
fn hmac_sha1(key: &[u8], msg: &[u8]) -> [u8; 20] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..20].copy_from_slice(&Sha1::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha1::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha1::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Glob match with `*` and `?` (OpenSSH `match_pattern`).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some((c, rest)) => text
            .split_first()
            .is_some_and(|(t, trest)| t.eq_ignore_ascii_case(c) && glob(rest, trest)),
    }
}

/// Whether a comma-separated host pattern list matches `label` (`host` or `[host]:port`).
fn patterns_match(patterns: &str, label: &str) -> bool {
    if let Some(hashed) = patterns.strip_prefix("|1|") {
        let mut parts = hashed.split('|');
        let (Some(salt), Some(hash)) = (parts.next(), parts.next()) else {
            return false;
        };
        let (Ok(salt), Ok(hash)) = (B64.decode(salt), B64.decode(hash)) else {
            return false;
        };
        return hmac_sha1(&salt, label.as_bytes())[..] == hash[..];
    }
    let mut matched = false;
    for pat in patterns.split(',') {
        if let Some(neg) = pat.strip_prefix('!') {
            if glob(neg.as_bytes(), label.as_bytes()) {
                return false;
            }
        } else if glob(pat.as_bytes(), label.as_bytes()) {
            matched = true;
        }
    }
    matched
}

/// Checks `key` presented by `host`:`port` against the known_hosts file at `path`.
pub fn check(
    path: &Path,
    host: &str,
    port: u16,
    key: &PublicKey,
) -> std::io::Result<HostKeyStatus> {
    let label = host_label(host, port);
    let mut mismatch = None;
    let mut known = false;
    for e in read_entries(path)? {
        if !patterns_match(&e.patterns, &label) {
            continue;
        }
        let same = e.key.key_data() == key.key_data();
        if e.revoked {
            if same {
                return Ok(HostKeyStatus::Revoked { line: e.line });
            }
            continue;
        }
        if same {
            known = true;
        } else if same_key_type(&e.key.algorithm(), &key.algorithm()) && mismatch.is_none() {
            mismatch = Some(e.line);
        }
    }
    Ok(if known {
        HostKeyStatus::Known
    } else if let Some(line) = mismatch {
        HostKeyStatus::Mismatch { line }
    } else {
        HostKeyStatus::Unknown
    })
}

/// Key types recorded for `host`:`port` (non-revoked entries), in file order.
pub fn recorded_algorithms(path: &Path, host: &str, port: u16) -> Vec<Algorithm> {
    let label = host_label(host, port);
    let mut out: Vec<Algorithm> = Vec::new();
    for e in read_entries(path).unwrap_or_default() {
        if !e.revoked && patterns_match(&e.patterns, &label) {
            let alg = e.key.algorithm();
            if !out.iter().any(|a| same_key_type(a, &alg)) {
                out.push(alg);
            }
        }
    }
    out
}

/// Whether two algorithms name the same host key type (RSA hashes are one type).
pub fn same_type(a: &Algorithm, b: &Algorithm) -> bool {
    same_key_type(a, b)
}

/// Appends `host`:`port` with `key` to the known_hosts file at `path` (creating it and its directory).
pub fn learn(path: &Path, host: &str, port: u16, key: &PublicKey) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let mut key = key.clone();
    key.set_comment("");
    let openssh = key
        .to_openssh()
        .map_err(|e| std::io::Error::other(format!("cannot encode host key: {e}")))?;
    let needs_newline = match std::fs::read(path) {
        Ok(bytes) => !bytes.is_empty() && !bytes.ends_with(b"\n"),
        Err(_) => false,
    };
    let sep = if needs_newline { "\n" } else { "" };
    let line = format!("{sep}{} {}\n", host_label(host, port), openssh.trim());
    // One write on an O_APPEND file: concurrent learners do not interleave.
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIBC+SvtAaKmTnz24D//+9RWSvXKq320vAkyI8ldmiVmX";
    const KEY_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIJoZpxAOw4EBWSkGupX8c2xA8bhLrZo+ErGwvL4S+s8M";

    fn key(b64: &str) -> PublicKey {
        russh::keys::parse_public_key_base64(b64).unwrap()
    }

    fn file(content: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content.as_bytes()).unwrap();
        f
    }

    #[test]
    fn plain_port_and_wildcard_entries() {
        let f = file(&format!(
            "# comment\n\n[10.0.0.1]:2222 ssh-ed25519 {KEY_A}\nweb*.example.com,!web9.example.com ssh-ed25519 {KEY_B}\n"
        ));
        let p = f.path();
        assert_eq!(
            check(p, "10.0.0.1", 2222, &key(KEY_A)).unwrap(),
            HostKeyStatus::Known
        );
        assert_eq!(
            check(p, "10.0.0.1", 22, &key(KEY_A)).unwrap(),
            HostKeyStatus::Unknown
        );
        assert_eq!(
            check(p, "10.0.0.1", 2222, &key(KEY_B)).unwrap(),
            HostKeyStatus::Mismatch { line: 3 }
        );
        assert_eq!(
            check(p, "web1.example.com", 22, &key(KEY_B)).unwrap(),
            HostKeyStatus::Known
        );
        assert_eq!(
            check(p, "web9.example.com", 22, &key(KEY_B)).unwrap(),
            HostKeyStatus::Unknown
        );
    }

    #[test]
    fn hashed_entries_match_their_host_only() {
        let salt = [7u8; 20];
        let hash = hmac_sha1(&salt, b"host.example");
        let line = format!(
            "|1|{}|{} ssh-ed25519 {KEY_A}\n",
            B64.encode(salt),
            B64.encode(hash)
        );
        let f = file(&line);
        assert_eq!(
            check(f.path(), "host.example", 22, &key(KEY_A)).unwrap(),
            HostKeyStatus::Known
        );
        assert_eq!(
            check(f.path(), "other.example", 22, &key(KEY_A)).unwrap(),
            HostKeyStatus::Unknown
        );
    }

    #[test]
    fn hmac_matches_rfc2202_case_2() {
        let mac = hmac_sha1(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    }

    #[test]
    fn revoked_and_learn() {
        let f = file(&format!("@revoked * ssh-ed25519 {KEY_B}"));
        assert_eq!(
            check(f.path(), "x", 22, &key(KEY_B)).unwrap(),
            HostKeyStatus::Revoked { line: 1 }
        );
        learn(f.path(), "10.1.1.1", 2200, &key(KEY_A)).unwrap();
        assert_eq!(
            check(f.path(), "10.1.1.1", 2200, &key(KEY_A)).unwrap(),
            HostKeyStatus::Known
        );
        let text = std::fs::read_to_string(f.path()).unwrap();
        assert!(
            text.ends_with(&format!("\n[10.1.1.1]:2200 ssh-ed25519 {KEY_A}\n")),
            "{text}"
        );
    }
}
