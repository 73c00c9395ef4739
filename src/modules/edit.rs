//! Editing a text file on the host through a pure function of its content: read, compute the new
//! text locally, show a diff, back up, write (validated), then owner/group/mode. Shared by
//! lineinfile, blockinfile, sysctl and mount (fstab).

use anyhow::Result;

use super::attrs::{self, Attrs, Kind};
use super::copy::{parent_dir, text_diff, write_validated};
use super::{quote, Args, Ctx, Outcome};

/// What an edit function decided for the file's current content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Nothing to change; the message (possibly empty) is reported.
    Keep(String),
    /// Write this new content; report the message.
    Write(String, String),
    /// The module fails with this message.
    Fail(String),
}

/// How to write the edited file.
#[derive(Debug, Clone, Default)]
pub struct EditOpts {
    /// Owner/group/mode to apply after editing.
    pub attrs: Attrs,
    /// Keep a timestamped copy of the old file.
    pub backup: bool,
    /// Validation command (`%s` = temporary path).
    pub validate: Option<String>,
}

impl EditOpts {
    /// Reads `owner`, `group`, `mode`, `backup` and `validate`.
    pub fn from_args(args: &Args) -> Result<Self> {
        let validate = args.str("validate")?;
        if let Some(v) = &validate {
            if !v.contains("%s") {
                anyhow::bail!("validate must contain %s: {v}");
            }
        }
        Ok(EditOpts {
            attrs: Attrs::from_args(args)?,
            backup: args.bool("backup", false)?,
            validate,
        })
    }
}

/// Applies `edit` to the text of `path` (`None` when the file does not exist); creating parent
/// directories when a missing file is written. Result has `msg`, and `backup`/`backup_file`.
pub async fn edit_file(
    ctx: &Ctx<'_>,
    path: &str,
    opts: &EditOpts,
    edit: impl FnOnce(Option<&str>) -> Edit,
) -> Result<Outcome> {
    let cur = attrs::stat(ctx, path, true, false).await?;
    if cur.as_ref().is_some_and(|c| c.kind == Kind::Dir) {
        return Ok(Outcome::failed(format!("Path {path} is a directory !")));
    }
    let before = match &cur {
        Some(_) => Some(
            String::from_utf8_lossy(&ctx.read_file(path).await?.unwrap_or_default()).into_owned(),
        ),
        None => None,
    };
    let mut out = Outcome::ok();
    let msg = match edit(before.as_deref()) {
        Edit::Fail(m) => return Ok(Outcome::failed(m)),
        Edit::Keep(m) => m,
        Edit::Write(new, m) => {
            if ctx.diff {
                if let Some(d) = text_diff(
                    path,
                    before.as_deref().unwrap_or_default().as_bytes(),
                    new.as_bytes(),
                ) {
                    out.diffs.push(d);
                }
            }
            if opts.backup && cur.is_some() {
                if let Some(b) = attrs::backup(ctx, path).await? {
                    out.data.insert("backup".into(), b.clone().into());
                    out.data.insert("backup_file".into(), b.into());
                }
            }
            if cur.is_none() {
                ctx.apply(&format!("mkdir -p {}", quote(&parent_dir(path))))
                    .await?;
            }
            write_validated(
                ctx,
                path,
                new.as_bytes(),
                cur.as_ref(),
                opts.attrs.mode,
                opts.validate.as_deref(),
            )
            .await?;
            out.changed = true;
            m
        }
    };
    let exists_after = cur.is_some() || out.changed;
    let mut msg = msg;
    if exists_after && opts.attrs.apply(ctx, path, cur.as_ref()).await? {
        if !out.changed {
            msg = String::new();
        }
        if !msg.is_empty() {
            msg.push_str(" and ");
        }
        msg.push_str("ownership, perms or SE linux context changed");
        out.changed = true;
    }
    out.data.insert("msg".into(), msg.clone().into());
    out.msg = Some(msg);
    Ok(out)
}
