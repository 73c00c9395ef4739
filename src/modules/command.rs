//! `command`, `shell` and `raw`: run a command line; always "changed" unless `creates`/`removes`
//! say the work is already done.

use std::time::Instant;

use anyhow::{bail, Result};
use async_trait::async_trait;
use serde_json::Value;

use super::args::RAW;
use super::{quote, Args, Ctx, Module, Outcome};

/// Keys that `command`/`shell` take out of free-form text.
pub const FREE_FORM_KEYS: &[&str] = &[
    "chdir",
    "creates",
    "removes",
    "executable",
    "stdin",
    "argv",
    "cmd",
];

const PARAMS: &[&str] = &[
    RAW,
    "cmd",
    "argv",
    "chdir",
    "creates",
    "removes",
    "stdin",
    "stdin_add_newline",
    "strip_empty_ends",
    "executable",
    "warn",
    "expand_argument_vars",
];

/// `command`: runs a program with arguments, without a shell.
pub struct Command;
/// `shell`: runs a command line through a shell.
pub struct Shell;
/// `raw`: sends the command line as it is.
pub struct Raw;

#[async_trait]
impl Module for Command {
    fn params(&self) -> &'static [&'static str] {
        PARAMS
    }
    async fn run(&self, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
        let line = match args.get("argv") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| super::args::to_string(v).map(|s| quote(&s)))
                .collect::<Option<Vec<_>>>()
                .map(|w| w.join(" ")),
            Some(_) => bail!("argv must be a list"),
            None => match args.str_any(&["cmd", RAW])? {
                Some(text) => Some(
                    shlex::split(&text)
                        .ok_or_else(|| anyhow::anyhow!("cannot split command line: {text}"))?
                        .iter()
                        .map(|w| quote(w))
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
                None => None,
            },
        };
        run_line(line, args, ctx).await
    }
}

#[async_trait]
impl Module for Shell {
    fn params(&self) -> &'static [&'static str] {
        PARAMS
    }
    async fn run(&self, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
        let text = args.str_any(&["cmd", RAW])?;
        let line = match (text, args.str("executable")?) {
            (Some(t), Some(exe)) => Some(format!("{} -c {}", quote(&exe), quote(&t))),
            (t, None) => t,
            (None, Some(_)) => None,
        };
        run_line(line, args, ctx).await
    }
}

#[async_trait]
impl Module for Raw {
    fn params(&self) -> &'static [&'static str] {
        &[RAW, "executable"]
    }
    fn supports_check(&self) -> bool {
        false
    }
    async fn run(&self, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
        let text = args.required(&[RAW])?;
        let start = Instant::now();
        let out = ctx.read(&text).await?;
        Ok(result(out, &text, start, true))
    }
}

/// Runs `line` honouring chdir/creates/removes/stdin and check mode.
async fn run_line(line: Option<String>, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
    let Some(line) = line else {
        return Ok(Outcome::failed("no command given"));
    };
    if let Some(path) = args.str("creates")? {
        if exists(ctx, &path).await? {
            return Ok(Outcome::ok()
                .with_msg(format!("Did not run command since '{path}' exists"))
                .with("rc", 0)
                .with("stdout", format!("skipped, since {path} exists"))
                .with("cmd", line));
        }
    }
    if let Some(path) = args.str("removes")? {
        if !exists(ctx, &path).await? {
            return Ok(Outcome::ok()
                .with_msg(format!("Did not run command since '{path}' does not exist"))
                .with("rc", 0)
                .with("stdout", format!("skipped, since {path} does not exist"))
                .with("cmd", line));
        }
    }
    if ctx.check {
        return Ok(Outcome {
            skipped: true,
            msg: Some("Command would have run if not in check mode".into()),
            ..Outcome::default()
        });
    }
    let full = match args.str("chdir")? {
        Some(dir) => format!("cd {} && {line}", quote(&dir)),
        None => line.clone(),
    };
    let start = Instant::now();
    let out = match args.str("stdin")? {
        Some(mut input) => {
            if args.bool("stdin_add_newline", true)? {
                input.push('\n');
            }
            ctx.change_with_input(&full, input.as_bytes()).await?
        }
        None => ctx.change(&full).await?,
    };
    let Some(out) = out else {
        return Ok(Outcome::changed(true));
    };
    Ok(result(
        out,
        &line,
        start,
        args.bool("strip_empty_ends", true)?,
    ))
}

async fn exists(ctx: &Ctx<'_>, path: &str) -> Result<bool> {
    let out = ctx.read(&format!("test -e {}", quote(path))).await?;
    Ok(out.rc == 0)
}

/// The registered result of a command, as Ansible shapes it.
fn result(out: crate::connection::ExecOutput, line: &str, start: Instant, strip: bool) -> Outcome {
    let mut stdout = out.stdout_str();
    let mut stderr = out.stderr_str();
    if strip {
        for s in [&mut stdout, &mut stderr] {
            while s.ends_with('\n') || s.ends_with('\r') {
                s.pop();
            }
        }
    }
    let lines = |s: &str| Value::from(s.lines().map(str::to_owned).collect::<Vec<_>>());
    let failed = out.rc != 0;
    Outcome {
        changed: true,
        failed,
        msg: failed.then(|| "non-zero return code".to_owned()),
        ..Outcome::default()
    }
    .with("cmd", line)
    .with("rc", out.rc)
    .with("stdout_lines", lines(&stdout))
    .with("stderr_lines", lines(&stderr))
    .with("stdout", stdout)
    .with("stderr", stderr)
    .with("delta", format!("{:?}", start.elapsed()))
}
