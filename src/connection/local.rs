//! `ansible_connection=local`: commands run on the control machine through `/bin/sh -c`.

use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::{ConnError, Connection, ExecOutput};

/// Runs commands locally.
pub struct LocalConnection {
    timeout: Option<Duration>,
}

impl LocalConnection {
    /// A local connection with an optional per-command timeout.
    pub fn new(timeout: Option<Duration>) -> Self {
        LocalConnection { timeout }
    }
}

#[async_trait]
impl Connection for LocalConnection {
    async fn exec(&self, command: &str, stdin: Option<&[u8]>) -> Result<ExecOutput, ConnError> {
        let mut child = Command::new("/bin/sh")
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
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(data)
                .await
                .map_err(|e| ConnError::Other(format!("writing stdin: {e}")))?;
        }
        let wait = child.wait_with_output();
        let out = match self.timeout {
            Some(t) => tokio::time::timeout(t, wait)
                .await
                .map_err(|_| ConnError::Timeout(t))?,
            None => wait.await,
        }
        .map_err(|e| ConnError::Other(format!("waiting for command: {e}")))?;
        Ok(ExecOutput {
            rc: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    async fn put_file(&self, data: &[u8], path: &str, mode: Option<u32>) -> Result<(), ConnError> {
        let tmp = format!("{path}.duststack-tmp");
        let io = |e: std::io::Error| ConnError::Other(format!("writing {path}: {e}"));
        tokio::fs::write(&tmp, data).await.map_err(io)?;
        if let Some(m) = mode {
            use std::os::unix::fs::PermissionsExt;
            tokio::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(m))
                .await
                .map_err(io)?;
        }
        tokio::fs::rename(&tmp, path).await.map_err(io)
    }

    async fn get_file(&self, path: &str) -> Result<Vec<u8>, ConnError> {
        tokio::fs::read(path)
            .await
            .map_err(|e| ConnError::Other(format!("reading {path}: {e}")))
    }

    async fn close(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exec_put_get() {
        let c = LocalConnection::new(None);
        let out = c
            .exec("echo out; echo err >&2; cat; exit 3", Some(b"in"))
            .await
            .unwrap();
        assert_eq!(
            (out.rc, out.stdout_str().as_str(), out.stderr_str().as_str()),
            (3, "out\nin", "err\n")
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f").display().to_string();
        c.put_file(b"data", &p, Some(0o600)).await.unwrap();
        assert_eq!(c.get_file(&p).await.unwrap(), b"data");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
