//! `ansible_connection=local`: commands run on the control machine through `/bin/sh -c`.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use super::{ConnError, Connection, ExecOutput};

/// Runs commands and file transfers on this machine.
pub struct LocalConnection {
    command_timeout: Option<Duration>,
    closed: AtomicBool,
}

impl LocalConnection {
    /// A local connection; each command is limited to `command_timeout` if given.
    pub fn new(command_timeout: Option<Duration>) -> Self {
        LocalConnection {
            command_timeout,
            closed: AtomicBool::new(false),
        }
    }

    fn check_open(&self) -> Result<(), ConnError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(ConnError::Unreachable("local connection is closed".into()));
        }
        Ok(())
    }

    async fn run(&self, command: &str, stdin: Option<&[u8]>) -> Result<ExecOutput, ConnError> {
        let mut child = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ConnError::Other(format!("cannot run /bin/sh: {e}")))?;
        let input = child.stdin.take();
        let data = stdin.unwrap_or_default().to_vec();
        let writer = async move {
            if let Some(mut w) = input {
                // The command may exit without reading its input; that is not an error.
                let _ = w.write_all(&data).await;
                let _ = w.shutdown().await;
            }
        };
        let (_, output) = tokio::join!(writer, child.wait_with_output());
        let output = output.map_err(|e| ConnError::Other(format!("waiting for command: {e}")))?;
        Ok(ExecOutput {
            rc: output.status.code().unwrap_or(-1),
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }
}

#[async_trait]
impl Connection for LocalConnection {
    async fn exec(&self, command: &str, stdin: Option<&[u8]>) -> Result<ExecOutput, ConnError> {
        self.check_open()?;
        super::with_timeout(self.command_timeout, self.run(command, stdin)).await
    }

    async fn put_file(&self, data: &[u8], path: &str, mode: Option<u32>) -> Result<(), ConnError> {
        self.check_open()?;
        let tmp = super::temp_path(path);
        let result = async {
            tokio::fs::write(&tmp, data).await?;
            if let Some(m) = mode {
                tokio::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(m)).await?;
            }
            tokio::fs::rename(&tmp, path).await
        }
        .await;
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(ConnError::Other(format!("cannot write {path}: {e}")));
        }
        Ok(())
    }

    async fn get_file(&self, path: &str) -> Result<Vec<u8>, ConnError> {
        self.check_open()?;
        tokio::fs::read(path)
            .await
            .map_err(|e| ConnError::Other(format!("cannot read {path}: {e}")))
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}
