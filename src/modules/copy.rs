//! `copy` and `template`: put content (inline, a local file, a rendered template, or a file already
//! on the host) at `dest`, only when its sha1 differs; then owner/group/mode.

use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use md5::Digest;
use serde_json::Value;

use super::attrs::{self, Attrs, FileState, Kind};
use super::{args::to_string, quote, Args, Ctx, Diff, Module, Outcome};

/// `copy`.
pub struct Copy;
/// `template`.
pub struct Template;

/// Diffs of files larger than this are not shown (Ansible's `max_diff_size`).
pub const MAX_DIFF: usize = 104_448;

const COPY_PARAMS: &[&str] = &[
    "dest",
    "src",
    "content",
    "mode",
    "owner",
    "group",
    "backup",
    "force",
    "remote_src",
    "validate",
    "directory_mode",
    "follow",
    "local_follow",
    "unsafe_writes",
    "checksum",
    "decrypt",
    "seuser",
    "serole",
    "setype",
    "selevel",
    "attributes",
];

const TEMPLATE_PARAMS: &[&str] = &[
    "src",
    "dest",
    "mode",
    "owner",
    "group",
    "backup",
    "force",
    "validate",
    "follow",
    "newline_sequence",
    "trim_blocks",
    "lstrip_blocks",
    "block_start_string",
    "block_end_string",
    "variable_start_string",
    "variable_end_string",
    "comment_start_string",
    "comment_end_string",
    "output_encoding",
    "unsafe_writes",
    "seuser",
    "serole",
    "setype",
    "selevel",
    "attributes",
];

/// How to place content at a destination (shared by copy, template).
pub struct Placement {
    /// Destination path.
    pub dest: String,
    /// Owner/group/mode.
    pub attrs: Attrs,
    /// Keep a timestamped copy of the old file.
    pub backup: bool,
    /// Replace a differing existing file (`force: no` only creates).
    pub force: bool,
    /// Command checking the new content, `%s` = its temporary path.
    pub validate: Option<String>,
}

impl Placement {
    fn from_args(args: &Args) -> Result<Self> {
        let validate = args.str("validate")?;
        if let Some(v) = &validate {
            if !v.contains("%s") {
                bail!("validate must contain %s: {v}");
            }
        }
        Ok(Placement {
            dest: args.required(&["dest"])?,
            attrs: Attrs::from_args(args)?,
            backup: args.bool("backup", false)?,
            force: args.bool("force", true)?,
            validate,
        })
    }
}

/// Puts `content` at `p.dest` when its sha1 differs (or the file is missing), then applies attributes.
/// `src_name` is the basename used when `dest` is a directory.
pub async fn place(
    ctx: &Ctx<'_>,
    p: &Placement,
    content: &[u8],
    src_name: Option<&str>,
) -> Result<Outcome> {
    let mut dest = p.dest.clone();
    let mut cur = attrs::stat(ctx, &dest, true, true).await?;
    if let Some(st) = &cur {
        if st.kind == Kind::Dir {
            let Some(name) = src_name else {
                return Ok(Outcome::failed(format!(
                    "can not use content with a dir as dest: {dest}"
                )));
            };
            dest = format!("{}/{name}", dest.trim_end_matches('/'));
            cur = attrs::stat(ctx, &dest, true, true).await?;
        }
    }
    if cur.is_none() {
        check_parent(ctx, &dest).await?;
    }
    let sum = attrs::sha1_hex(content);
    let differs = cur
        .as_ref()
        .is_none_or(|c| c.checksum.as_deref() != Some(sum.as_str()));
    let write = differs && (p.force || cur.is_none());
    let mut out = Outcome::ok();
    if write {
        if ctx.diff {
            let before = match &cur {
                Some(_) => ctx.read_file(&dest).await?.unwrap_or_default(),
                None => Vec::new(),
            };
            if let Some(d) = text_diff(&dest, &before, content) {
                out.diffs.push(d);
            }
        }
        if p.backup && cur.is_some() {
            if let Some(b) = attrs::backup(ctx, &dest).await? {
                out.data.insert("backup_file".into(), b.into());
            }
        }
        write_validated(
            ctx,
            &dest,
            content,
            cur.as_ref(),
            p.attrs.mode,
            p.validate.as_deref(),
        )
        .await?;
        out.changed = true;
    }
    // A new file already got its mode on write; other attributes still need applying.
    let attrs_changed = p.attrs.apply(ctx, &dest, cur.as_ref()).await?;
    out.changed |= attrs_changed;
    let after = if out.changed && !ctx.check {
        attrs::stat(ctx, &dest, true, false).await?
    } else {
        cur
    };
    out.data.insert("dest".into(), dest.clone().into());
    out.data.insert("checksum".into(), sum.into());
    out.data.insert(
        "md5sum".into(),
        attrs::hex(&md5::Md5::digest(content)).into(),
    );
    out.data.insert("size".into(), content.len().into());
    if let Some(st) = after {
        for (k, v) in attrs::result_fields(&st) {
            if k != "size" {
                out.data.insert(k, v);
            }
        }
    }
    Ok(out)
}

/// Writes `content` to `dest` (keeping an existing file's attributes), through a temporary file
/// checked by `validate` (`%s` = its path) when given. Skipped in check mode.
pub async fn write_validated(
    ctx: &Ctx<'_>,
    dest: &str,
    content: &[u8],
    cur: Option<&FileState>,
    mode: Option<u32>,
    validate: Option<&str>,
) -> Result<()> {
    let Some(validate) = validate else {
        return attrs::replace_content(ctx, dest, content, cur, mode).await;
    };
    if ctx.check {
        return Ok(());
    }
    let tmp = format!("{dest}.duststack-validate.tmp");
    attrs::replace_content(ctx, &tmp, content, cur, mode).await?;
    let cmd = validate.replace("%s", &quote(&tmp));
    let out = ctx.read(&cmd).await?;
    if out.rc != 0 {
        ctx.apply(&format!("rm -f {}", quote(&tmp))).await?;
        bail!(
            "failed to validate: rc={} {}{}",
            out.rc,
            out.stdout_str().trim(),
            out.stderr_str().trim()
        );
    }
    ctx.apply(&format!("mv -f {} {}", quote(&tmp), quote(dest)))
        .await?;
    Ok(())
}

/// Fails when the directory that would hold `dest` does not exist.
pub async fn check_parent(ctx: &Ctx<'_>, dest: &str) -> Result<()> {
    let parent = parent_dir(dest);
    if ctx.read(&format!("test -d {}", quote(&parent))).await?.rc != 0 {
        bail!("Destination directory {parent} does not exist");
    }
    Ok(())
}

/// The directory part of `path` (`/` for top-level, `.` for a bare name).
pub fn parent_dir(path: &str) -> String {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) => "/".to_owned(),
        Some((d, _)) => d.to_owned(),
        None => ".".to_owned(),
    }
}

/// A content diff when both sides are text and small enough.
pub fn text_diff(path: &str, before: &[u8], after: &[u8]) -> Option<Diff> {
    if before.len() > MAX_DIFF || after.len() > MAX_DIFF {
        return None;
    }
    let b = std::str::from_utf8(before).ok()?;
    let a = std::str::from_utf8(after).ok()?;
    Some(Diff::text(path, b, a))
}

#[async_trait]
impl Module for Copy {
    fn params(&self) -> &'static [&'static str] {
        COPY_PARAMS
    }
    async fn run(&self, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
        let p = Placement::from_args(args)?;
        let src = args.str("src")?;
        if args.bool("remote_src", false)? {
            let src = src.ok_or_else(|| anyhow::anyhow!("src is required with remote_src"))?;
            return remote_copy(ctx, &p, &src).await;
        }
        let (content, name) = match (args.get("content"), &src) {
            (Some(_), Some(_)) => bail!("parameters are mutually exclusive: content|src"),
            (Some(v), None) => {
                let text = match v {
                    Value::Array(_) | Value::Object(_) => serde_json::to_string(v)?,
                    v => to_string(v).unwrap_or_default(),
                };
                (text.into_bytes(), None)
            }
            (None, Some(src)) => {
                let Some(path) = ctx.find_local(src, "files") else {
                    return Ok(Outcome::failed(format!(
                        "Could not find or access '{src}' on the Ansible Controller."
                    )));
                };
                if path.is_dir() {
                    return Ok(Outcome::failed(format!(
                        "src '{src}' is a directory: recursive copy of directories is not supported"
                    )));
                }
                let data =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                (data, name)
            }
            (None, None) => bail!("src (or content) is required"),
        };
        let mut out = place(ctx, &p, &content, name.as_deref()).await?;
        if let Some(s) = src {
            out.data.insert("src".into(), s.into());
        }
        Ok(out)
    }
}

/// `remote_src: yes`: copy a file already on the host with `cp`.
async fn remote_copy(ctx: &Ctx<'_>, p: &Placement, src: &str) -> Result<Outcome> {
    let Some(s) = attrs::stat(ctx, src, true, true).await? else {
        return Ok(Outcome::failed(format!("Source {src} not found")));
    };
    if s.kind == Kind::Dir {
        return Ok(Outcome::failed(format!(
            "src '{src}' is a directory: recursive remote copy is not supported"
        )));
    }
    let cur = attrs::stat(ctx, &p.dest, true, true).await?;
    if cur.is_none() {
        check_parent(ctx, &p.dest).await?;
    }
    let mut out = Outcome::ok();
    if cur.as_ref().is_none_or(|c| c.checksum != s.checksum) && (p.force || cur.is_none()) {
        if p.backup && cur.is_some() {
            if let Some(b) = attrs::backup(ctx, &p.dest).await? {
                out.data.insert("backup_file".into(), b.into());
            }
        }
        let keep = if cur.is_some() {
            "--no-preserve=all "
        } else {
            ""
        };
        ctx.apply(&format!("cp {keep}-- {} {}", quote(src), quote(&p.dest)))
            .await?;
        out.changed = true;
    }
    out.changed |= p.attrs.apply(ctx, &p.dest, cur.as_ref()).await?;
    out.data.insert("dest".into(), p.dest.clone().into());
    out.data.insert("src".into(), src.into());
    if let Some(c) = s.checksum {
        out.data.insert("checksum".into(), c.into());
    }
    Ok(out)
}

#[async_trait]
impl Module for Template {
    fn params(&self) -> &'static [&'static str] {
        TEMPLATE_PARAMS
    }
    async fn run(&self, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
        let src = args.required(&["src"])?;
        let p = Placement::from_args(args)?;
        let Some(path) = ctx.find_local(&src, "templates") else {
            return Ok(Outcome::failed(format!("Could not find or access '{src}'")));
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading template {}", path.display()))?;
        let rendered = (ctx.render)(&text, &src)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let mut out = place(ctx, &p, rendered.as_bytes(), name.as_deref()).await?;
        out.data.insert("src".into(), src.into());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::testing::{run, run_err, Env, LocalConn};
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn copy_content_is_idempotent_and_check_mode_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f.conf");
        let d = dest.to_str().unwrap();
        let env = Env::new(dir.path());
        let ctx = env.ctx(&LocalConn);
        let a = json!({"dest": d, "content": "a=1\n", "mode": "0640"});
        let o = run(&Copy, a.clone(), &ctx).await;
        assert!(o.changed && !o.failed);
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "a=1\n");
        assert_eq!(
            std::fs::metadata(&dest).unwrap().permissions().mode() & 0o7777,
            0o640
        );
        assert_eq!(o.data["checksum"], attrs::sha1_hex(b"a=1\n"));
        assert_eq!(o.data["mode"], "0640");
        let o = run(&Copy, a, &ctx).await;
        assert!(!o.changed);

        let mut env2 = Env::new(dir.path());
        env2.check = true;
        let cctx = env2.ctx(&LocalConn);
        let o = run(&Copy, json!({"dest": d, "content": "a=2\n"}), &cctx).await;
        assert!(o.changed);
        assert_eq!(o.diffs[0].before, "a=1\n");
        assert_eq!(o.diffs[0].after, "a=2\n");
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "a=1\n");
        // mode change alone is a change; existing mode kept on content change
        let o = run(
            &Copy,
            json!({"dest": d, "content": "a=2\n", "backup": true}),
            &ctx,
        )
        .await;
        assert!(o.changed);
        assert_eq!(
            std::fs::metadata(&dest).unwrap().permissions().mode() & 0o7777,
            0o640
        );
        let b = o.data["backup_file"].as_str().unwrap();
        assert_eq!(std::fs::read_to_string(b).unwrap(), "a=1\n");
    }

    #[tokio::test]
    async fn copy_src_into_directory_and_missing_parent() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("files")).unwrap();
        std::fs::write(dir.path().join("files/x.txt"), "xx").unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let env = Env::new(dir.path());
        let ctx = env.ctx(&LocalConn);
        let o = run(
            &Copy,
            json!({"src": "x.txt", "dest": out.to_str().unwrap()}),
            &ctx,
        )
        .await;
        assert!(o.changed);
        assert_eq!(std::fs::read_to_string(out.join("x.txt")).unwrap(), "xx");
        let e = run_err(
            &Copy,
            json!({"content": "x", "dest": dir.path().join("no/such").to_str().unwrap()}),
            &ctx,
        )
        .await;
        assert!(e.contains("does not exist"), "{e}");
    }

    #[tokio::test]
    async fn copy_validate_failure_leaves_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("v");
        std::fs::write(&dest, "old").unwrap();
        let env = Env::new(dir.path());
        let ctx = env.ctx(&LocalConn);
        let d = dest.to_str().unwrap();
        let e = run_err(
            &Copy,
            json!({"dest": d, "content": "bad", "validate": "grep -q good %s"}),
            &ctx,
        )
        .await;
        assert!(e.contains("failed to validate"), "{e}");
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "old");
        let o = run(
            &Copy,
            json!({"dest": d, "content": "good", "validate": "grep -q good %s"}),
            &ctx,
        )
        .await;
        assert!(o.changed);
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "good");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn template_renders_then_copies() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("templates")).unwrap();
        std::fs::write(dir.path().join("templates/t.j2"), "hello {{ name }}\n").unwrap();
        let dest = dir.path().join("t");
        let env = Env::new(dir.path());
        let ctx = env.ctx(&LocalConn);
        let a = json!({"src": "t.j2", "dest": dest.to_str().unwrap()});
        assert!(run(&Template, a.clone(), &ctx).await.changed);
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "hello world\n");
        assert!(!run(&Template, a, &ctx).await.changed);
    }

    #[tokio::test]
    async fn remote_src_copies_on_host() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path().join("s");
        std::fs::write(&s, "data").unwrap();
        let d = dir.path().join("d");
        let env = Env::new(dir.path());
        let ctx = env.ctx(&LocalConn);
        let a =
            json!({"src": s.to_str().unwrap(), "dest": d.to_str().unwrap(), "remote_src": true});
        assert!(run(&Copy, a.clone(), &ctx).await.changed);
        assert_eq!(std::fs::read_to_string(&d).unwrap(), "data");
        assert!(!run(&Copy, a, &ctx).await.changed);
    }
}
