//! Reading modules: `stat` (a path's metadata as Ansible's `stat` dict), `slurp` (a file's content,
//! base64) and `fetch` (a file copied to the control machine under `dest/<host>/<path>`).

use anyhow::{Context, Result};
use async_trait::async_trait;
use base64::Engine;
use md5::Digest;
use serde_json::{json, Value};

use super::attrs::{self, Kind};
use super::{Args, Ctx, Module, Outcome};

/// `stat`.
pub struct Stat;
/// `slurp`.
pub struct Slurp;
/// `fetch`.
pub struct Fetch;

const ALGORITHMS: &[&str] = &["md5", "sha1", "sha224", "sha256", "sha384", "sha512"];

#[async_trait]
impl Module for Stat {
    fn params(&self) -> &'static [&'static str] {
        &[
            "path",
            "dest",
            "name",
            "follow",
            "get_checksum",
            "checksum_algorithm",
            "checksum",
            "checksum_algo",
            "get_mime",
            "mime",
            "mime_type",
            "mime-type",
            "get_attributes",
            "attr",
            "attributes",
            "get_md5",
            "get_selinux_context",
        ]
    }
    async fn run(&self, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
        let path = args.required(&["path", "dest", "name"])?;
        let follow = args.bool("follow", false)?;
        let alg = args
            .str_any(&["checksum_algorithm", "checksum", "checksum_algo"])?
            .unwrap_or_else(|| "sha1".into());
        if !ALGORITHMS.contains(&alg.as_str()) {
            anyhow::bail!(
                "value of checksum_algorithm must be one of: {}, got: {alg}",
                ALGORITHMS.join(", ")
            );
        }
        let sum = args.bool("get_checksum", true)?.then_some(alg.as_str());
        let out = ctx
            .read_ok(&attrs::stat_command(&path, follow, sum))
            .await?;
        let Some(st) = attrs::parse_stat(&out)? else {
            return Ok(Outcome::ok().with("stat", json!({"exists": false})));
        };
        let m = st.mode;
        let bit = |b: u32| m & b != 0;
        let mut s = json!({
            "exists": true,
            "path": path,
            "mode": st.mode_str(),
            "isdir": st.kind == Kind::Dir,
            "isreg": st.kind == Kind::File,
            "islnk": st.kind == Kind::Link,
            "isblk": st.kind == Kind::Block,
            "ischr": st.kind == Kind::Char,
            "isfifo": st.kind == Kind::Fifo,
            "issock": st.kind == Kind::Socket,
            "uid": st.uid,
            "gid": st.gid,
            "pw_name": st.owner,
            "gr_name": st.group,
            "size": st.size,
            "inode": st.inode,
            "dev": st.dev,
            "nlink": st.nlink,
            "atime": st.atime,
            "mtime": st.mtime,
            "ctime": st.ctime,
            "wusr": bit(0o200), "rusr": bit(0o400), "xusr": bit(0o100),
            "wgrp": bit(0o020), "rgrp": bit(0o040), "xgrp": bit(0o010),
            "woth": bit(0o002), "roth": bit(0o004), "xoth": bit(0o001),
            "isuid": bit(0o4000), "isgid": bit(0o2000),
            "readable": st.access.0,
            "writeable": st.access.1,
            "executable": st.access.2,
        });
        if let (Some(c), Value::Object(map)) = (&st.checksum, &mut s) {
            map.insert("checksum".into(), c.clone().into());
        }
        if let (Some(t), Some(src), Value::Object(map)) = (&st.link_target, &st.link_source, &mut s)
        {
            map.insert("lnk_target".into(), t.clone().into());
            map.insert("lnk_source".into(), src.clone().into());
        }
        Ok(Outcome::ok().with("stat", s))
    }
}

#[async_trait]
impl Module for Slurp {
    fn params(&self) -> &'static [&'static str] {
        &["src", "path"]
    }
    async fn run(&self, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
        let src = args.required(&["src", "path"])?;
        if ctx
            .read(&format!("[ -d {} ]", super::quote(&src)))
            .await?
            .rc
            == 0
        {
            return Ok(Outcome::failed(format!(
                "source is a directory and must be a file: {src}"
            )));
        }
        let Some(data) = ctx.read_file(&src).await? else {
            return Ok(Outcome::failed(format!("file not found: {src}")));
        };
        Ok(Outcome::ok()
            .with(
                "content",
                base64::engine::general_purpose::STANDARD.encode(data),
            )
            .with("encoding", "base64")
            .with("source", src))
    }
}

/// Where `fetch` stores `src` of `host` locally.
pub fn fetch_dest(dest: &str, src: &str, host: &str, flat: bool) -> String {
    if flat {
        if dest.ends_with('/') {
            let base = src.rsplit('/').next().unwrap_or(src);
            format!("{dest}{base}")
        } else {
            dest.to_owned()
        }
    } else {
        format!(
            "{}/{host}/{}",
            dest.trim_end_matches('/'),
            src.trim_start_matches('/')
        )
    }
}

#[async_trait]
impl Module for Fetch {
    fn params(&self) -> &'static [&'static str] {
        &[
            "src",
            "dest",
            "flat",
            "fail_on_missing",
            "validate_checksum",
            "validate_md5",
        ]
    }
    async fn run(&self, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
        let src = args.required(&["src"])?;
        let dest = args.required(&["dest"])?;
        let local = fetch_dest(
            &dest,
            &src,
            ctx.inventory_hostname,
            args.bool("flat", false)?,
        );
        let st = attrs::stat(ctx, &src, true, true).await?;
        let Some(st) = st else {
            let msg = "the remote file does not exist, not transferring, ignored";
            return Ok(if args.bool("fail_on_missing", true)? {
                Outcome::failed(msg)
            } else {
                Outcome::ok().with_msg(msg).with("file", src)
            });
        };
        if st.kind == Kind::Dir {
            return Ok(Outcome::failed(
                "remote file is a directory, fetch cannot work on directories",
            ));
        }
        let remote = st.checksum.clone().unwrap_or_default();
        let have = std::fs::read(&local).ok().map(|d| attrs::sha1_hex(&d));
        let mut out = Outcome::ok()
            .with("dest", local.clone())
            .with("file", src.clone())
            .with("remote_checksum", remote.clone())
            .with("checksum", remote.clone());
        if have.as_deref() == Some(remote.as_str()) {
            return Ok(out);
        }
        out.changed = true;
        if ctx.check {
            return Ok(out);
        }
        let data = ctx.read_file(&src).await?.unwrap_or_default();
        let got = attrs::sha1_hex(&data);
        if args.bool("validate_checksum", true)? && got != remote {
            return Ok(Outcome::failed(format!(
                "checksum mismatch: remote {remote}, transferred {got}"
            )));
        }
        if let Some(parent) = std::path::Path::new(&local).parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&local, &data).with_context(|| format!("writing {local}"))?;
        out.data
            .insert("md5sum".into(), attrs::hex(&md5::Md5::digest(&data)).into());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::testing::{run, Env, LocalConn};

    #[tokio::test]
    async fn stat_slurp_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "abc").unwrap();
        let fs = f.to_str().unwrap();
        let env = Env::new(dir.path());
        let ctx = env.ctx(&LocalConn);
        let o = run(&Stat, json!({"path": fs}), &ctx).await;
        let s = &o.data["stat"];
        assert_eq!(s["exists"], true);
        assert_eq!(s["isreg"], true);
        assert_eq!(s["size"], 3);
        assert_eq!(s["checksum"], attrs::sha1_hex(b"abc"));
        assert_eq!(s["pw_name"], "root");
        let o = run(
            &Stat,
            json!({"path": fs, "checksum_algorithm": "sha256"}),
            &ctx,
        )
        .await;
        assert_eq!(o.data["stat"]["checksum"].as_str().unwrap().len(), 64);
        let o = run(
            &Stat,
            json!({"path": dir.path().join("no").to_str().unwrap()}),
            &ctx,
        )
        .await;
        assert_eq!(o.data["stat"], json!({"exists": false}));

        let o = run(&Slurp, json!({"src": fs}), &ctx).await;
        assert_eq!(o.data["content"], "YWJj");

        let local = dir.path().join("fetched");
        let a = json!({"src": fs, "dest": local.to_str().unwrap()});
        let o = run(&Fetch, a.clone(), &ctx).await;
        assert!(o.changed);
        let want = format!("{}/testhost{}", local.display(), fs);
        assert_eq!(o.data["dest"], want.as_str());
        assert_eq!(std::fs::read_to_string(&want).unwrap(), "abc");
        assert!(!run(&Fetch, a, &ctx).await.changed);
        assert_eq!(fetch_dest("/d/", "/etc/hosts", "h", true), "/d/hosts");
    }
}
