//! `file`: a path's state (absent, directory, file, link, hard, touch) and its owner/group/mode.

use anyhow::{bail, Result};
use async_trait::async_trait;

use super::attrs::{self, Attrs, FileState, Kind};
use super::copy::parent_dir;
use super::{quote, Args, Ctx, Diff, Module, Outcome};

/// `file`.
pub struct File;

const PARAMS: &[&str] = &[
    "path",
    "dest",
    "name",
    "state",
    "src",
    "recurse",
    "mode",
    "owner",
    "group",
    "force",
    "follow",
    "modification_time",
    "modification_time_format",
    "access_time",
    "access_time_format",
    "unsafe_writes",
    "attributes",
    "seuser",
    "serole",
    "setype",
    "selevel",
];

fn state_of(st: Option<&FileState>) -> &'static str {
    match st {
        None => "absent",
        Some(s) => s.kind.state_name(),
    }
}

/// Whether anything under `path` differs from `attrs` (for `recurse: yes`).
async fn recurse_differs(ctx: &Ctx<'_>, path: &str, a: &Attrs) -> Result<bool> {
    let mut tests = Vec::new();
    if let Some(o) = &a.owner {
        tests.push(format!("! -user {}", quote(o)));
    }
    if let Some(g) = &a.group {
        tests.push(format!("! -group {}", quote(g)));
    }
    if let Some(m) = a.mode {
        tests.push(format!("! -perm {m:04o}"));
    }
    if tests.is_empty() {
        return Ok(false);
    }
    let out = ctx
        .read_ok(&format!(
            "find {} \\( {} \\) -print -quit",
            quote(path),
            tests.join(" -o ")
        ))
        .await?;
    Ok(!out.trim().is_empty())
}

#[async_trait]
impl Module for File {
    fn params(&self) -> &'static [&'static str] {
        PARAMS
    }
    async fn run(&self, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
        let path = args.required(&["path", "dest", "name"])?;
        let recurse = args.bool("recurse", false)?;
        let force = args.bool("force", false)?;
        let follow = args.bool("follow", true)?;
        let src = args.str("src")?;
        let a = Attrs::from_args(args)?;
        let mut cur = attrs::stat(ctx, &path, false, false).await?;
        let prev = state_of(cur.as_ref());
        let state = match args.str("state")? {
            Some(s) => {
                let choices = ["absent", "directory", "file", "hard", "link", "touch"];
                if !choices.contains(&s.as_str()) {
                    bail!(
                        "value of state must be one of: {}, got: {s}",
                        choices.join(", ")
                    );
                }
                s
            }
            None if prev != "absent" => prev.to_owned(),
            None if recurse => "directory".into(),
            None => "file".into(),
        };
        if recurse && state != "directory" {
            bail!("recurse option requires state to be 'directory'");
        }
        // With follow, a link pointing at the wanted kind is judged (and changed) through its target.
        if follow && prev == "link" && ["file", "directory", "touch"].contains(&state.as_str()) {
            if let Some(t) = attrs::stat(ctx, &path, true, false).await? {
                cur = Some(t);
            }
        }
        let prev_eff = state_of(cur.as_ref());
        let q = quote(&path);
        let mut out = Outcome::ok();
        let set_state = |out: &mut Outcome, from: &str, to: &str| {
            out.changed = true;
            if ctx.diff {
                out.diffs.push(Diff::state(&path, from, to));
            }
        };
        match state.as_str() {
            "absent" => {
                if cur.is_some() {
                    set_state(&mut out, prev, "absent");
                    ctx.apply(&format!("rm -rf -- {q}")).await?;
                }
                return Ok(out.with("path", path).with("state", "absent"));
            }
            "file" => {
                if prev_eff != "file" {
                    return Ok(Outcome::failed(format!(
                        "file ({path}) is {prev_eff}, cannot continue"
                    ))
                    .with("path", path)
                    .with("state", prev_eff));
                }
            }
            "directory" => match prev_eff {
                "absent" => {
                    set_state(&mut out, "absent", "directory");
                    ctx.apply(&format!("mkdir -p -- {q}")).await?;
                }
                "directory" => {}
                other => {
                    return Ok(Outcome::failed(format!(
                        "{path} already exists as a {other}"
                    )))
                }
            },
            "touch" => {
                if prev_eff == "absent" {
                    set_state(&mut out, "absent", "touch");
                } else {
                    out.changed = true;
                }
                ctx.apply(&format!("touch -- {q}")).await?;
            }
            "link" | "hard" => {
                let Some(src) = &src else {
                    bail!("src is required for state={state}");
                };
                return link(ctx, &path, src, &state, cur.as_ref(), force).await;
            }
            _ => unreachable!("state validated above"),
        }
        let attrs_changed = if recurse {
            if recurse_differs(ctx, &path, &a).await? {
                ctx.apply(&a.plan(&path, None, true).join(" && ")).await?;
                true
            } else {
                false
            }
        } else {
            // A path created just now: apply every requested attribute.
            let base = if out.changed && prev_eff == "absent" {
                None
            } else {
                cur.as_ref()
            };
            a.apply(ctx, &path, base).await?
        };
        out.changed |= attrs_changed;
        let final_state = if state == "touch" {
            "file"
        } else {
            state.as_str()
        };
        let after = if out.changed && !ctx.check {
            attrs::stat(ctx, &path, follow, false).await?
        } else {
            cur
        };
        if let Some(st) = after {
            out.data.extend(attrs::result_fields(&st));
        }
        Ok(out.with("path", path).with("state", final_state))
    }
}

/// `state: link` / `state: hard`.
async fn link(
    ctx: &Ctx<'_>,
    path: &str,
    src: &str,
    state: &str,
    cur: Option<&FileState>,
    force: bool,
) -> Result<Outcome> {
    let q = quote(path);
    let qs = quote(src);
    let prev = state_of(cur);
    let done = match state {
        "link" => cur.and_then(|c| c.link_target.as_deref()) == Some(src),
        _ => cur.is_some() && ctx.read(&format!("[ {q} -ef {qs} ]")).await?.rc == 0,
    };
    let out = Outcome::ok()
        .with("path", path)
        .with("src", src)
        .with("state", state);
    if done {
        return Ok(out);
    }
    // Ansible resolves a relative symlink source against the link's directory.
    let abs_src = if src.starts_with('/') || state == "hard" {
        src.to_owned()
    } else {
        format!("{}/{src}", parent_dir(path))
    };
    if !force && ctx.read(&format!("[ -e {} ]", quote(&abs_src))).await?.rc != 0 {
        return Ok(Outcome::failed(format!(
            "src file does not exist, use \"force=yes\" if you really want to create the link: {abs_src}"
        )));
    }
    let make = if state == "link" {
        format!("ln -sfn -- {qs} {q}")
    } else {
        format!("ln -f -- {qs} {q}")
    };
    let cmd = match (prev, cur.map(|c| c.kind)) {
        ("absent", _) | (_, Some(Kind::Link)) => make,
        (_, Some(Kind::Dir)) if force => format!("rmdir -- {q} && {make}"),
        (_, Some(Kind::Dir)) => {
            return Ok(Outcome::failed(format!(
                "refusing to convert from directory to {state} for {path}"
            )))
        }
        _ if force || state == "hard" => make,
        _ => {
            return Ok(Outcome::failed(format!(
                "refusing to convert from {prev} to symlink for {path}"
            )))
        }
    };
    let mut out = out;
    out.changed = true;
    if ctx.diff {
        out.diffs.push(Diff::state(path, prev, state));
    }
    ctx.apply(&cmd).await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::testing::{run, run_err, Env, LocalConn};
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn directory_file_absent_touch() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("a/b");
        let ds = d.to_str().unwrap();
        let env = Env::new(dir.path());
        let ctx = env.ctx(&LocalConn);
        let a = json!({"path": ds, "state": "directory", "mode": "0750"});
        let o = run(&File, a.clone(), &ctx).await;
        assert!(o.changed);
        assert_eq!(o.diffs[0].after, format!("path: {ds}\nstate: directory\n"));
        assert!(d.is_dir());
        assert_eq!(
            std::fs::metadata(&d).unwrap().permissions().mode() & 0o7777,
            0o750
        );
        assert_eq!(o.data["mode"], "0750");
        assert!(!run(&File, a, &ctx).await.changed);

        let f = d.join("f");
        let fs = f.to_str().unwrap();
        let e = run_err(&File, json!({"path": fs}), &ctx).await;
        assert!(e.contains("is absent, cannot continue"), "{e}");
        let o = run(&File, json!({"path": fs, "state": "touch"}), &ctx).await;
        assert!(o.changed && f.exists());
        assert!(
            run(&File, json!({"path": fs, "state": "touch"}), &ctx)
                .await
                .changed
        );
        let o = run(&File, json!({"path": fs, "mode": "0600"}), &ctx).await;
        assert!(o.changed);
        assert!(
            !run(&File, json!({"path": fs, "mode": "0600"}), &ctx)
                .await
                .changed
        );

        let mut cenv = Env::new(dir.path());
        cenv.check = true;
        let o = run(
            &File,
            json!({"path": ds, "state": "absent"}),
            &cenv.ctx(&LocalConn),
        )
        .await;
        assert!(o.changed && d.exists());
        assert_eq!(o.diffs[0].before, format!("path: {ds}\nstate: directory\n"));
        assert!(
            run(&File, json!({"path": ds, "state": "absent"}), &ctx)
                .await
                .changed
        );
        assert!(!d.exists());
        assert!(
            !run(&File, json!({"path": ds, "state": "absent"}), &ctx)
                .await
                .changed
        );
    }

    #[tokio::test]
    async fn links_and_recurse() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("target");
        std::fs::write(&t, "x").unwrap();
        let l = dir.path().join("l");
        let env = Env::new(dir.path());
        let ctx = env.ctx(&LocalConn);
        let a = json!({"path": l.to_str().unwrap(), "src": "target", "state": "link"});
        assert!(run(&File, a.clone(), &ctx).await.changed);
        assert_eq!(std::fs::read_link(&l).unwrap().to_str(), Some("target"));
        assert!(!run(&File, a, &ctx).await.changed);
        let e = run_err(
            &File,
            json!({"path": t.to_str().unwrap(), "src": "nope", "state": "link"}),
            &ctx,
        )
        .await;
        assert!(e.contains("src file does not exist"), "{e}");
        let h = dir.path().join("h");
        let a = json!({"path": h.to_str().unwrap(), "src": t.to_str().unwrap(), "state": "hard"});
        assert!(run(&File, a.clone(), &ctx).await.changed);
        assert!(!run(&File, a, &ctx).await.changed);

        let sub = dir.path().join("tree/x");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("f"), "").unwrap();
        let a = json!({"path": dir.path().join("tree").to_str().unwrap(), "state": "directory", "recurse": true, "mode": "0700"});
        assert!(run(&File, a.clone(), &ctx).await.changed);
        assert_eq!(
            std::fs::metadata(sub.join("f"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        assert!(!run(&File, a, &ctx).await.changed);
    }
}
