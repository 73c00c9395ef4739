//! `authorized_key`: SSH public keys in a user's `authorized_keys` ([`apply_keys`], pure), with
//! the `.ssh` directory (0700) and file (0600) owned by the user.

use anyhow::{bail, Result};
use async_trait::async_trait;

use super::attrs::{self, Attrs};
use super::copy::parent_dir;
use super::edit::{edit_file, Edit, EditOpts};
use super::{quote, Args, Ctx, Module, Outcome};

/// `authorized_key`.
pub struct AuthorizedKey;

const PARAMS: &[&str] = &[
    "user",
    "key",
    "state",
    "path",
    "exclusive",
    "manage_dir",
    "key_options",
    "comment",
    "follow",
    "validate_certs",
];

/// A parsed key line: options, type, blob, comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// Leading options (`from="x",no-pty`), if any.
    pub options: Option<String>,
    /// Key type (`ssh-ed25519`).
    pub kind: String,
    /// Base64 key material: the key's identity.
    pub blob: String,
    /// Trailing comment.
    pub comment: Option<String>,
}

fn is_type(w: &str) -> bool {
    w.starts_with("ssh-") || w.starts_with("ecdsa-") || w.starts_with("sk-")
}

/// Parses one authorized_keys line (`None` for blanks, comments, garbage).
pub fn parse_key(line: &str) -> Option<Key> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    // Options may contain quoted spaces: split at the first key type word.
    let words: Vec<&str> = t.split_whitespace().collect();
    let i = words.iter().position(|w| is_type(w))?;
    let blob = words.get(i + 1)?;
    let options = (i > 0).then(|| {
        let pos = t.find(&format!(" {}", words[i])).unwrap_or(0);
        t[..pos].trim().to_owned()
    });
    let comment = (words.len() > i + 2).then(|| words[i + 2..].join(" "));
    Some(Key {
        options,
        kind: words[i].to_owned(),
        blob: (*blob).to_owned(),
        comment,
    })
}

impl Key {
    /// The line as written to the file.
    pub fn line(&self) -> String {
        let mut s = String::new();
        if let Some(o) = &self.options {
            s.push_str(o);
            s.push(' ');
        }
        s.push_str(&self.kind);
        s.push(' ');
        s.push_str(&self.blob);
        if let Some(c) = &self.comment {
            s.push(' ');
            s.push_str(c);
        }
        s.push('\n');
        s
    }
}

/// New file text with `keys` present (replacing lines with the same blob that differ) or absent;
/// `exclusive` drops every other key. `None` when nothing changes.
pub fn apply_keys(text: &str, keys: &[Key], present: bool, exclusive: bool) -> Option<String> {
    let mut out: Vec<String> = Vec::new();
    let mut placed = vec![false; keys.len()];
    for l in text.split_inclusive('\n') {
        let Some(k) = parse_key(l) else {
            out.push(l.to_owned());
            continue;
        };
        match keys.iter().position(|w| w.blob == k.blob) {
            Some(i) if present => {
                if !placed[i] {
                    placed[i] = true;
                    out.push(if k == keys[i] {
                        l.to_owned()
                    } else {
                        keys[i].line()
                    });
                }
            }
            Some(_) => {}
            None if exclusive => {}
            None => out.push(l.to_owned()),
        }
    }
    if present {
        for (k, done) in keys.iter().zip(placed) {
            if !done {
                if let Some(last) = out.last_mut().filter(|l| !l.ends_with('\n')) {
                    last.push('\n');
                }
                out.push(k.line());
            }
        }
    }
    let new = out.concat();
    (new != text).then_some(new)
}

#[async_trait]
impl Module for AuthorizedKey {
    fn params(&self) -> &'static [&'static str] {
        PARAMS
    }
    async fn run(&self, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
        let user = args.required(&["user"])?;
        let key_text = args.required(&["key"])?;
        if key_text.starts_with("http://") || key_text.starts_with("https://") {
            bail!(
                "key from a URL is not supported; pass the key text (e.g. with lookup('url', ...))"
            );
        }
        let present = args.choice("state", &["present", "absent"], "present")? == "present";
        let exclusive = args.bool("exclusive", false)?;
        let options = args.str("key_options")?;
        let comment = args.str("comment")?;
        let mut keys = Vec::new();
        for l in key_text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
        {
            let mut k =
                parse_key(l).ok_or_else(|| anyhow::anyhow!("invalid key specified: {l}"))?;
            if options.is_some() {
                k.options = options.clone();
            }
            if comment.is_some() {
                k.comment = comment.clone();
            }
            keys.push(k);
        }
        let pw = ctx
            .read_ok(&format!("getent passwd {} || true", quote(&user)))
            .await?;
        let f: Vec<&str> = pw.trim().split(':').collect();
        if f.len() < 7 {
            return Ok(Outcome::failed(format!("Failed to lookup user {user}")));
        }
        let (uid, gid, home) = (f[2].to_owned(), f[3].to_owned(), f[5].to_owned());
        let path = args
            .str("path")?
            .unwrap_or_else(|| format!("{home}/.ssh/authorized_keys"));
        let mut changed = false;
        if args.bool("manage_dir", true)? && present {
            let dir = parent_dir(&path);
            let st = attrs::stat(ctx, &dir, true, false).await?;
            if st.is_none() {
                ctx.apply(&format!("mkdir -p {}", quote(&dir))).await?;
                changed = true;
            }
            let want = Attrs {
                owner: Some(uid.clone()),
                group: Some(gid.clone()),
                mode: Some(0o700),
            };
            changed |= want.apply(ctx, &dir, st.as_ref()).await?;
        }
        let opts = EditOpts {
            attrs: Attrs {
                owner: Some(uid),
                group: Some(gid),
                mode: Some(0o600),
            },
            ..EditOpts::default()
        };
        let mut out = edit_file(ctx, &path, &opts, |t| match (t, present) {
            (None, false) => Edit::Keep(String::new()),
            (t, _) => match apply_keys(t.unwrap_or_default(), &keys, present, exclusive) {
                Some(n) => Edit::Write(n, String::new()),
                None if t.is_none() => Edit::Write(String::new(), String::new()),
                None => Edit::Keep(String::new()),
            },
        })
        .await?;
        out.changed |= changed;
        out.msg = None;
        out.data.remove("msg");
        Ok(out
            .with("user", user)
            .with("key", key_text)
            .with("path", path)
            .with("exclusive", exclusive))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::testing::{run, Env, LocalConn};
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    const K1: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA1 alice@x";
    const K2: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ2 bob@y";

    #[test]
    fn key_edits() {
        let k1 = parse_key(K1).unwrap();
        let k2 = parse_key(&format!("from=\"10.0.0.1\",no-pty {K2}")).unwrap();
        assert_eq!(k2.options.as_deref(), Some("from=\"10.0.0.1\",no-pty"));
        assert_eq!(k2.comment.as_deref(), Some("bob@y"));
        let t = format!("# keep\n{K1}\n");
        assert_eq!(apply_keys(&t, std::slice::from_ref(&k1), true, false), None);
        assert_eq!(
            apply_keys(&t, std::slice::from_ref(&k2), true, false).unwrap(),
            format!("{t}{}", k2.line())
        );
        assert_eq!(
            apply_keys(&t, std::slice::from_ref(&k2), true, true).unwrap(),
            format!("# keep\n{}", k2.line())
        );
        assert_eq!(apply_keys(&t, &[k1], false, false).unwrap(), "# keep\n");
    }

    #[tokio::test]
    async fn module_in_tempdir() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ssh/authorized_keys");
        let env = Env::new(dir.path());
        let ctx = env.ctx(&LocalConn);
        let a =
            json!({"user": "root", "key": format!("{K1}\n{K2}"), "path": path.to_str().unwrap()});
        let o = run(&AuthorizedKey, a.clone(), &ctx).await;
        assert!(o.changed);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{K1}\n{K2}\n")
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        assert!(!run(&AuthorizedKey, a, &ctx).await.changed);
        let o = run(
            &AuthorizedKey,
            json!({"user": "root", "key": K2, "path": path.to_str().unwrap(), "state": "absent"}),
            &ctx,
        )
        .await;
        assert!(o.changed);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{K1}\n"));
    }
}
