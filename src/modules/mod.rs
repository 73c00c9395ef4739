//! Modules under their Ansible names: each turns (arguments, the host's current state) into the
//! commands still needed, runs them through [`Ctx`], and reports changed or not.
//!
//! Modules never talk to a connection directly for changes: [`Ctx::change`] is the one place that
//! alters a host, so check mode (`--check`) is honoured in one spot. Reads ([`Ctx::read`]) always run.

pub mod args;
pub mod attrs;
pub mod authorized_key;
pub mod blockinfile;
pub mod command;
pub mod copy;
pub mod edit;
pub mod file;
pub mod firewalld;
pub mod get_url;
pub mod hostname;
pub mod lineinfile;
pub mod modprobe;
pub mod mount;
pub mod package;
pub mod registry;
pub mod stat;
pub mod sysctl;
pub mod systemd;
#[cfg(test)]
pub mod testing;
pub mod ufw;
pub mod user;
pub mod wait_for;

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::connection::{ConnError, Connection, ExecOutput};

pub use args::Args;
pub use registry::{lookup, suggest};

/// Privilege escalation for a task (`become: true`): `sudo` to `user`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Become {
    /// Target user (`become_user`, default root).
    pub user: String,
    /// Password for sudo (`ansible_become_password`), fed on stdin.
    pub password: Option<String>,
}

/// A textual before/after pair shown with `--diff`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Label of the old state (usually the path).
    pub before_header: String,
    /// Label of the new state.
    pub after_header: String,
    /// Old content.
    pub before: String,
    /// New content.
    pub after: String,
}

impl Diff {
    /// A before/after pair of file contents labelled with `path`, as Ansible's file diffs.
    pub fn text(path: &str, before: &str, after: &str) -> Self {
        Diff {
            before_header: path.to_owned(),
            after_header: path.to_owned(),
            before: before.to_owned(),
            after: after.to_owned(),
        }
    }

    /// A before/after pair of the `state` of `path` (`absent`, `file`, `directory`, …), as `file` shows it.
    pub fn state(path: &str, before: &str, after: &str) -> Self {
        Diff::text(
            path,
            &format!("path: {path}\nstate: {before}\n"),
            &format!("path: {path}\nstate: {after}\n"),
        )
    }
}

/// What a module did (or, in check mode, would do).
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The host's state was (or would be) changed.
    pub changed: bool,
    /// The module failed; `msg` says why.
    pub failed: bool,
    /// The module decided not to act (e.g. `command` in check mode).
    pub skipped: bool,
    /// Human-readable message.
    pub msg: Option<String>,
    /// Before/after content for `--diff`.
    pub diffs: Vec<Diff>,
    /// Module-specific result fields (`rc`, `stdout`, `stat`, …), registered as Ansible does.
    pub data: Map<String, Value>,
}

impl Outcome {
    /// Nothing needed doing.
    pub fn ok() -> Self {
        Outcome::default()
    }
    /// The state was (or would be) changed.
    pub fn changed(changed: bool) -> Self {
        Outcome {
            changed,
            ..Outcome::default()
        }
    }
    /// The module failed with `msg`.
    pub fn failed(msg: impl Into<String>) -> Self {
        Outcome {
            failed: true,
            msg: Some(msg.into()),
            ..Outcome::default()
        }
    }
    /// Adds a result field.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.data.insert(key.to_owned(), value.into());
        self
    }
    /// Sets the message.
    pub fn with_msg(mut self, msg: impl Into<String>) -> Self {
        self.msg = Some(msg.into());
        self
    }
}

/// Renders a template file's text (source, name) with the task's variables; given by the executor.
pub type RenderFn<'a> = &'a (dyn Fn(&str, &str) -> anyhow::Result<String> + Sync);

/// Everything a module may use while it runs on one host.
pub struct Ctx<'a> {
    /// The host's connection.
    pub conn: &'a dyn Connection,
    /// `--check`: decide and report, change nothing.
    pub check: bool,
    /// `--diff`: fill [`Outcome::diffs`].
    pub diff: bool,
    /// Privilege escalation, when the task asks for it.
    pub escalate: Option<&'a Become>,
    /// Local directories searched for relative `src:` files (role files/, templates/, playbook dir).
    pub search_paths: &'a [PathBuf],
    /// Renders template text with the task's variables (for `template`).
    pub render: RenderFn<'a>,
    /// Facts already gathered for the host (`ansible_facts`), possibly empty.
    pub facts: &'a Map<String, Value>,
    /// The host's inventory name (`inventory_hostname`), e.g. for `fetch`'s local paths.
    pub inventory_hostname: &'a str,
}

impl Ctx<'_> {
    /// Wraps `command` for `become` (sudo) when needed.
    fn wrap(&self, command: &str) -> (String, Option<Vec<u8>>) {
        match self.escalate {
            Some(b) => {
                let inner = shlex::try_quote(command)
                    .map(|c| c.into_owned())
                    .unwrap_or_else(|_| command.to_owned());
                match &b.password {
                    Some(pw) => (
                        format!("sudo -H -k -S -p '' -u {} /bin/sh -c {inner}", b.user),
                        Some(format!("{pw}\n").into_bytes()),
                    ),
                    None => (format!("sudo -H -n -u {} /bin/sh -c {inner}", b.user), None),
                }
            }
            None => (command.to_owned(), None),
        }
    }

    async fn exec(&self, command: &str, stdin: Option<&[u8]>) -> Result<ExecOutput, ConnError> {
        let (cmd, prefix) = self.wrap(command);
        match (prefix, stdin) {
            (None, stdin) => self.conn.exec(&cmd, stdin).await,
            (Some(mut p), stdin) => {
                p.extend_from_slice(stdin.unwrap_or_default());
                self.conn.exec(&cmd, Some(&p)).await
            }
        }
    }

    /// Runs a command that only inspects the host; it runs in check mode too.
    pub async fn read(&self, command: &str) -> Result<ExecOutput, ConnError> {
        self.exec(command, None).await
    }

    /// Runs a command that changes the host; in check mode it is not run and `None` is returned.
    pub async fn change(&self, command: &str) -> Result<Option<ExecOutput>, ConnError> {
        if self.check {
            return Ok(None);
        }
        self.exec(command, None).await.map(Some)
    }

    /// Like [`Ctx::change`], feeding `stdin`.
    pub async fn change_with_input(
        &self,
        command: &str,
        stdin: &[u8],
    ) -> Result<Option<ExecOutput>, ConnError> {
        if self.check {
            return Ok(None);
        }
        self.exec(command, Some(stdin)).await.map(Some)
    }

    /// Writes `data` to `path` on the host with `mode` (skipped in check mode). Honours `become`.
    pub async fn write_file(
        &self,
        path: &str,
        data: &[u8],
        mode: Option<u32>,
    ) -> Result<(), ConnError> {
        if self.check {
            return Ok(());
        }
        if self.escalate.is_none() {
            return self.conn.put_file(data, path, mode).await;
        }
        let q = quote(path);
        let mut cmd = format!("tmp=$(mktemp {q}.XXXXXX) && cat > \"$tmp\"");
        if let Some(m) = mode {
            cmd.push_str(&format!(" && chmod {m:o} \"$tmp\""));
        }
        cmd.push_str(&format!(" && mv -f \"$tmp\" {q}"));
        let out = self.exec(&cmd, Some(data)).await?;
        if out.rc != 0 {
            return Err(ConnError::Other(format!(
                "writing {path}: {}",
                out.stderr_str().trim()
            )));
        }
        Ok(())
    }

    /// Reads a file from the host; `None` if it does not exist.
    pub async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, ConnError> {
        let q = quote(path);
        let out = self
            .exec(
                &format!("if [ -e {q} ]; then cat {q}; else exit 3; fi"),
                None,
            )
            .await?;
        match out.rc {
            0 => Ok(Some(out.stdout)),
            3 => Ok(None),
            _ => Err(ConnError::Other(format!(
                "reading {path}: {}",
                out.stderr_str().trim()
            ))),
        }
    }

    /// Runs a changing command (skipped in check mode, returning `false`); a non-zero exit is an
    /// error carrying the command's stderr.
    pub async fn apply(&self, command: &str) -> anyhow::Result<bool> {
        match self.change(command).await? {
            None => Ok(false),
            Some(out) if out.rc == 0 => Ok(true),
            Some(out) => anyhow::bail!(
                "command failed (rc={}): {}: {}",
                out.rc,
                command,
                out.stderr_str().trim()
            ),
        }
    }

    /// Runs an inspecting command that must succeed; returns its stdout.
    pub async fn read_ok(&self, command: &str) -> anyhow::Result<String> {
        let out = self.read(command).await?;
        if out.rc != 0 {
            anyhow::bail!(
                "command failed (rc={}): {}: {}",
                out.rc,
                command,
                out.stderr_str().trim()
            );
        }
        Ok(out.stdout_str())
    }

    /// Finds a local file for `src:` in the search paths (absolute paths are used as they are).
    pub fn find_local(&self, src: &str, subdir: &str) -> Option<PathBuf> {
        let p = PathBuf::from(src);
        if p.is_absolute() {
            return p.exists().then_some(p);
        }
        self.search_paths
            .iter()
            .flat_map(|d| [d.join(subdir).join(src), d.join(src)])
            .find(|c| c.exists())
    }
}

pub use crate::connection::quote;

/// A module: validates its arguments and brings the host to the desired state.
#[async_trait]
pub trait Module: Sync + Send {
    /// The parameters it accepts (aliases included); others are refused with a suggestion.
    fn params(&self) -> &'static [&'static str];
    /// Whether it honours check mode itself (others are skipped under `--check`).
    fn supports_check(&self) -> bool {
        true
    }
    /// Runs the module on one host.
    async fn run(&self, args: &Args, ctx: &Ctx<'_>) -> anyhow::Result<Outcome>;
}

/// Module results keyed by name, for JSON output and registration.
pub type ResultMap = BTreeMap<String, Value>;
