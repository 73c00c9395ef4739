//! Connections to managed hosts: one per host, reused by every task.
//!
//! [`Connection`] is the one trait the executor and modules talk to. Implementations:
//! `ssh` (russh, one TCP connection per host, one channel per command) and `local`
//! (`ansible_connection=local`: commands run on the control machine).

use std::time::Duration;

use async_trait::async_trait;

/// What a command printed and how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit status (`-1` when the remote side sent none, e.g. killed by a signal).
    pub rc: i32,
    /// Standard output bytes.
    pub stdout: Vec<u8>,
    /// Standard error bytes.
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    /// Standard output as lossy UTF-8.
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    /// Standard error as lossy UTF-8.
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Why a connection could not be used. `Unreachable` errors make a host unreachable
/// in the recap; the others fail the task.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The host could not be reached or authenticated (connect, handshake, auth, host key, lost link).
    #[error("{0}")]
    Unreachable(String),
    /// A command or transfer timed out.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// A transfer or channel failed while the link stayed up.
    #[error("{0}")]
    Other(String),
}

/// A live connection to one host. Cheap to share (`Arc<dyn Connection>`); safe to use
/// from several tasks at once (implementations bound concurrent channels).
#[async_trait]
pub trait Connection: Send + Sync {
    /// Runs `command` through `/bin/sh -c` on the host, feeding `stdin` if given.
    async fn exec(&self, command: &str, stdin: Option<&[u8]>) -> Result<ExecOutput, ConnError>;
    /// Writes `data` to `path` on the host (replacing it atomically where possible), with `mode` if given.
    async fn put_file(&self, data: &[u8], path: &str, mode: Option<u32>) -> Result<(), ConnError>;
    /// Reads the whole file at `path` from the host.
    async fn get_file(&self, path: &str) -> Result<Vec<u8>, ConnError>;
    /// Closes the connection; further calls fail.
    async fn close(&self);
}

pub mod known_hosts;
pub mod local;
pub mod spec;
pub mod ssh;

pub use spec::{connect, ConnectionKind, ConnectionSpec};

/// Shell-quotes one word for `/bin/sh` (NUL bytes, which no shell can carry, are dropped).
pub fn quote(word: &str) -> String {
    shlex::try_quote(word)
        .map(|c| c.into_owned())
        .unwrap_or_else(|_| format!("'{}'", word.replace('\0', "")))
}

/// A unique temporary path beside `path`, for writing a file and renaming it into place.
fn temp_path(path: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{path}.duststack-{}-{n}.tmp", std::process::id())
}

/// Runs `fut`, failing with [`ConnError::Timeout`] after `limit` when one is set.
async fn with_timeout<T>(
    limit: Option<Duration>,
    fut: impl std::future::Future<Output = Result<T, ConnError>>,
) -> Result<T, ConnError> {
    match limit {
        Some(t) => tokio::time::timeout(t, fut)
            .await
            .map_err(|_| ConnError::Timeout(t))?,
        None => fut.await,
    }
}
