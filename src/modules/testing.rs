//! Test doubles for modules: a [`LocalConn`] that runs commands on this machine (for modules
//! exercised inside a tempdir), a [`FakeConn`] that answers commands from a script and records
//! them (for modules that must never touch the real machine), and [`Env`] to build a [`Ctx`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use regex::Regex;
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;

use super::{Args, Ctx, Module, Outcome};
use crate::connection::{ConnError, Connection, ExecOutput};

/// Runs commands with the local `/bin/sh`, files on the local disk.
pub struct LocalConn;

#[async_trait]
impl Connection for LocalConn {
    async fn exec(&self, command: &str, stdin: Option<&[u8]>) -> Result<ExecOutput, ConnError> {
        let mut child = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| ConnError::Other(e.to_string()))?;
        let mut input = child.stdin.take().expect("stdin piped");
        if let Some(data) = stdin {
            input
                .write_all(data)
                .await
                .map_err(|e| ConnError::Other(e.to_string()))?;
        }
        drop(input);
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| ConnError::Other(e.to_string()))?;
        Ok(ExecOutput {
            rc: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
    async fn put_file(&self, data: &[u8], path: &str, mode: Option<u32>) -> Result<(), ConnError> {
        use std::os::unix::fs::PermissionsExt;
        let tmp = format!("{path}.put-tmp");
        std::fs::write(&tmp, data).map_err(|e| ConnError::Other(format!("{path}: {e}")))?;
        let mode = mode.unwrap_or(0o644);
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
            .map_err(|e| ConnError::Other(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| ConnError::Other(e.to_string()))
    }
    async fn get_file(&self, path: &str) -> Result<Vec<u8>, ConnError> {
        std::fs::read(path).map_err(|e| ConnError::Other(format!("{path}: {e}")))
    }
    async fn close(&self) {}
}

/// Answers commands by the first matching regex and records every command and upload.
#[derive(Default)]
pub struct FakeConn {
    rules: Vec<(Regex, ExecOutput)>,
    /// Commands received, in order (uploads appear as `PUT <path>`).
    pub log: Mutex<Vec<String>>,
    /// Files uploaded with `put_file`.
    pub files: Mutex<HashMap<String, Vec<u8>>>,
}

impl FakeConn {
    /// An empty script: every command succeeds with no output.
    pub fn new() -> Self {
        FakeConn::default()
    }
    /// Commands matching `pattern` print `stdout` and exit with `rc`.
    pub fn on(mut self, pattern: &str, rc: i32, stdout: &str) -> Self {
        self.rules.push((
            Regex::new(pattern).expect("test regex"),
            ExecOutput {
                rc,
                stdout: stdout.as_bytes().to_vec(),
                stderr: Vec::new(),
            },
        ));
        self
    }
    /// All commands received.
    pub fn commands(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
    /// Whether some received command matches `pattern`.
    pub fn sent(&self, pattern: &str) -> bool {
        let re = Regex::new(pattern).unwrap();
        self.commands().iter().any(|c| re.is_match(c))
    }
}

#[async_trait]
impl Connection for FakeConn {
    async fn exec(&self, command: &str, _stdin: Option<&[u8]>) -> Result<ExecOutput, ConnError> {
        self.log.lock().unwrap().push(command.to_owned());
        Ok(self
            .rules
            .iter()
            .find(|(re, _)| re.is_match(command))
            .map(|(_, out)| out.clone())
            .unwrap_or_default())
    }
    async fn put_file(&self, data: &[u8], path: &str, _mode: Option<u32>) -> Result<(), ConnError> {
        self.log.lock().unwrap().push(format!("PUT {path}"));
        self.files
            .lock()
            .unwrap()
            .insert(path.to_owned(), data.to_vec());
        Ok(())
    }
    async fn get_file(&self, path: &str) -> Result<Vec<u8>, ConnError> {
        self.files
            .lock()
            .unwrap()
            .get(path)
            .cloned()
            .ok_or_else(|| ConnError::Other(format!("{path}: not found")))
    }
    async fn close(&self) {}
}

fn render(text: &str, _name: &str) -> anyhow::Result<String> {
    Ok(text.replace("{{ name }}", "world"))
}

/// Owns what a [`Ctx`] borrows.
pub struct Env {
    /// Local search paths for `src:`.
    pub search_paths: Vec<PathBuf>,
    /// Facts.
    pub facts: Map<String, Value>,
    /// `--check`.
    pub check: bool,
    /// `--diff`.
    pub diff: bool,
}

impl Env {
    /// Normal mode with `--diff`, searching `dir` for local files.
    pub fn new(dir: &std::path::Path) -> Self {
        Env {
            search_paths: vec![dir.to_path_buf()],
            facts: Map::new(),
            check: false,
            diff: true,
        }
    }
    /// A context on `conn`; templates substitute `{{ name }}` with `world`.
    pub fn ctx<'a>(&'a self, conn: &'a dyn Connection) -> Ctx<'a> {
        Ctx {
            conn,
            check: self.check,
            diff: self.diff,
            escalate: None,
            search_paths: &self.search_paths,
            render: &render,
            facts: &self.facts,
            inventory_hostname: "testhost",
        }
    }
}

/// Arguments from a JSON object literal.
pub fn args(v: Value) -> Args {
    Args::new(v.as_object().expect("object").clone())
}

/// Runs `module` with `a` after checking every key is a declared parameter (as the caller does).
pub async fn run(module: &dyn Module, a: Value, ctx: &Ctx<'_>) -> Outcome {
    let a = args(a);
    for k in a.0.keys() {
        assert!(
            module.params().contains(&k.as_str()),
            "undeclared parameter {k}"
        );
    }
    module.run(&a, ctx).await.unwrap()
}

/// Runs `module` expecting an error; returns its message.
pub async fn run_err(module: &dyn Module, a: Value, ctx: &Ctx<'_>) -> String {
    match module.run(&args(a), ctx).await {
        Ok(o) if o.failed => o.msg.unwrap_or_default(),
        Ok(o) => panic!("expected failure, got {o:?}"),
        Err(e) => format!("{e:#}"),
    }
}
