//! SSH through russh: one TCP connection per host (TCP_NODELAY), one channel per command,
//! strict host-key checking against known_hosts, key/agent/password authentication, ProxyJump.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use russh::client::{self, Handle};
use russh::keys::{self, PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, Disconnect};
use tokio::sync::Semaphore;

use super::spec::ConnectionSpec;
use super::{ConnError, Connection, ExecOutput};
use crate::modules::quote;

/// Concurrent handshakes in the whole process (sshd's MaxStartups starts refusing at 10).
const MAX_HANDSHAKES: usize = 8;
/// Concurrent channels per connection (sshd's MaxSessions defaults to 10).
const MAX_CHANNELS: usize = 8;

fn handshakes() -> &'static Semaphore {
    static H: OnceLock<Semaphore> = OnceLock::new();
    H.get_or_init(|| Semaphore::new(MAX_HANDSHAKES))
}

/// Checks the server's key against known_hosts; remembers why it refused.
struct HostKeyCheck {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    accept_new: bool,
    refusal: Arc<Mutex<Option<String>>>,
}

impl HostKeyCheck {
    fn refuse(&self, why: String) -> bool {
        if let Ok(mut r) = self.refusal.lock() {
            *r = Some(why);
        }
        false
    }

    fn check(&self, key: &PublicKey) -> bool {
        let fp = key.fingerprint(Default::default());
        let shown = if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        };
        match keys::check_known_hosts_path(&self.host, self.port, key, &self.known_hosts) {
            Ok(true) => true,
            Ok(false) if self.accept_new => match keys::known_hosts::learn_known_hosts_path(&self.host, self.port, key, &self.known_hosts) {
                Ok(()) => true,
                Err(e) => self.refuse(format!("cannot record the host key of {shown} in {}: {e}", self.known_hosts.display())),
            },
            Ok(false) => self.refuse(format!(
                "host key verification failed: {shown} ({} {fp}) is not in {} (add it, or pass --accept-new-host-keys)",
                key.algorithm(),
                self.known_hosts.display()
            )),
            Err(keys::Error::KeyChanged { line }) => self.refuse(format!(
                "HOST KEY MISMATCH for {shown}: it now presents {} {fp}, but {}:{line} records another key. \
                 Someone could be eavesdropping, or the host was reinstalled; remove that line if you trust the new key",
                key.algorithm(),
                self.known_hosts.display()
            )),
            Err(e) if !self.known_hosts.exists() && self.accept_new => {
                let _ = e;
                match keys::known_hosts::learn_known_hosts_path(&self.host, self.port, key, &self.known_hosts) {
                    Ok(()) => true,
                    Err(e) => self.refuse(format!("cannot record the host key of {shown}: {e}")),
                }
            }
            Err(e) => self.refuse(format!("cannot check the host key of {shown} against {}: {e}", self.known_hosts.display())),
        }
    }
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        match key {
            keys::PublicKeyOrCertificate::PublicKey { key, .. } => Ok(self.check(key)),
            keys::PublicKeyOrCertificate::Certificate(_) => Ok(self.refuse(
                "host certificates are not supported; add the host key to known_hosts".into(),
            )),
        }
    }
}

/// A live SSH connection.
pub struct SshConnection {
    handle: Handle<HostKeyCheck>,
    channels: Semaphore,
    timeout: Option<Duration>,
    name: String,
    /// Keeps the bastion connection alive while tunnelled through it.
    _jump: Option<Box<SshConnection>>,
}

fn unreachable(spec: &ConnectionSpec, what: impl std::fmt::Display) -> ConnError {
    ConnError::Unreachable(format!(
        "Failed to connect to {}@{}:{}: {what}",
        spec.user, spec.host, spec.port
    ))
}

impl SshConnection {
    /// Connects and authenticates as `spec` says (through its ProxyJump, if any).
    pub fn connect(
        spec: &ConnectionSpec,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<SshConnection, ConnError>> + Send + '_>,
    > {
        Box::pin(async move {
            let _permit = handshakes()
                .acquire()
                .await
                .map_err(|_| ConnError::Other("handshake limiter closed".into()))?;
            match tokio::time::timeout(spec.connect_timeout, Self::connect_inner(spec)).await {
                Ok(r) => r,
                Err(_) => Err(unreachable(
                    spec,
                    format!("timed out after {:?}", spec.connect_timeout),
                )),
            }
        })
    }

    async fn connect_inner(spec: &ConnectionSpec) -> Result<SshConnection, ConnError> {
        let config = Arc::new(client::Config {
            nodelay: true,
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(15)),
            ..Default::default()
        });
        let refusal = Arc::new(Mutex::new(None));
        let check = HostKeyCheck {
            host: spec.host.clone(),
            port: spec.port,
            known_hosts: spec.known_hosts.clone(),
            accept_new: spec.accept_new_host_keys,
            refusal: refusal.clone(),
        };
        let (jump, result) = match &spec.proxy_jump {
            Some(j) => {
                let bastion = Box::pin(Self::connect_inner(j)).await?;
                let channel = bastion
                    .handle
                    .channel_open_direct_tcpip(spec.host.clone(), spec.port as u32, "127.0.0.1", 0)
                    .await
                    .map_err(|e| unreachable(spec, format!("through {}: {e}", j.host)))?;
                let r = client::connect_stream(config, channel.into_stream(), check).await;
                (Some(Box::new(bastion)), r)
            }
            None => {
                let stream = tokio::net::TcpStream::connect((spec.host.as_str(), spec.port))
                    .await
                    .map_err(|e| unreachable(spec, e))?;
                let _ = stream.set_nodelay(true);
                (None, client::connect_stream(config, stream, check).await)
            }
        };
        let mut handle = match result {
            Ok(h) => h,
            Err(e) => {
                let why = refusal.lock().ok().and_then(|r| r.clone());
                return Err(unreachable(spec, why.unwrap_or_else(|| e.to_string())));
            }
        };
        authenticate(&mut handle, spec).await?;
        Ok(SshConnection {
            handle,
            channels: Semaphore::new(MAX_CHANNELS),
            timeout: spec.command_timeout,
            name: format!("{}@{}:{}", spec.user, spec.host, spec.port),
            _jump: jump,
        })
    }

    async fn run(&self, command: &str, stdin: Option<&[u8]>) -> Result<ExecOutput, ConnError> {
        let _permit = self
            .channels
            .acquire()
            .await
            .map_err(|_| ConnError::Other("connection closed".into()))?;
        let lost = |e: russh::Error| {
            ConnError::Unreachable(format!("connection to {} lost: {e}", self.name))
        };
        let mut channel = self.handle.channel_open_session().await.map_err(lost)?;
        channel.exec(true, command).await.map_err(lost)?;
        if let Some(data) = stdin {
            channel.data(data).await.map_err(lost)?;
        }
        channel.eof().await.map_err(lost)?;
        let mut out = ExecOutput {
            rc: -1,
            ..ExecOutput::default()
        };
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, ext: 1 } => out.stderr.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => out.rc = exit_status as i32,
                ChannelMsg::ExitSignal { signal_name, .. } => out
                    .stderr
                    .extend_from_slice(format!("killed by signal {signal_name:?}\n").as_bytes()),
                _ => {}
            }
        }
        if self.handle.is_closed() && out.rc == -1 {
            return Err(ConnError::Unreachable(format!(
                "connection to {} lost",
                self.name
            )));
        }
        Ok(out)
    }
}

/// Tries ssh-agent, then key files, then the password.
async fn authenticate(
    handle: &mut Handle<HostKeyCheck>,
    spec: &ConnectionSpec,
) -> Result<(), ConnError> {
    let mut tried = Vec::new();
    if std::env::var_os("SSH_AUTH_SOCK").is_some() {
        if let Ok(mut agent) = keys::agent::client::AgentClient::connect_env().await {
            if let Ok(ids) = agent.request_identities().await {
                for id in ids {
                    let hash = handle
                        .best_supported_rsa_hash()
                        .await
                        .ok()
                        .flatten()
                        .flatten();
                    if let Ok(r) = handle
                        .authenticate_publickey_with(
                            &spec.user,
                            id.public_key().into_owned(),
                            hash,
                            &mut agent,
                        )
                        .await
                    {
                        if r.success() {
                            return Ok(());
                        }
                    }
                }
                tried.push("ssh-agent".to_owned());
            }
        }
    }
    for path in &spec.private_key_files {
        let key = match keys::load_secret_key(path, spec.key_passphrase.as_deref()) {
            Ok(k) => k,
            Err(e) => {
                tried.push(format!("{} (unreadable: {e})", path.display()));
                continue;
            }
        };
        let hash = handle
            .best_supported_rsa_hash()
            .await
            .ok()
            .flatten()
            .flatten();
        let r = handle
            .authenticate_publickey(&spec.user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(|e| unreachable(spec, e))?;
        if r.success() {
            return Ok(());
        }
        tried.push(path.display().to_string());
    }
    if let Some(pw) = &spec.password {
        let r = handle
            .authenticate_password(&spec.user, pw)
            .await
            .map_err(|e| unreachable(spec, e))?;
        if r.success() {
            return Ok(());
        }
        tried.push("password".into());
    }
    Err(unreachable(
        spec,
        format!(
            "Permission denied (tried: {})",
            if tried.is_empty() {
                "no credentials".into()
            } else {
                tried.join(", ")
            }
        ),
    ))
}

#[async_trait]
impl Connection for SshConnection {
    async fn exec(&self, command: &str, stdin: Option<&[u8]>) -> Result<ExecOutput, ConnError> {
        match self.timeout {
            Some(t) => tokio::time::timeout(t, self.run(command, stdin))
                .await
                .map_err(|_| ConnError::Timeout(t))?,
            None => self.run(command, stdin).await,
        }
    }

    async fn put_file(&self, data: &[u8], path: &str, mode: Option<u32>) -> Result<(), ConnError> {
        let q = quote(path);
        let mut cmd = format!("tmp=$(mktemp {q}.XXXXXX) && cat > \"$tmp\"");
        match mode {
            Some(m) => cmd.push_str(&format!(" && chmod {m:o} \"$tmp\"")),
            // Keep an existing file's mode; new files get the umask default like cp.
            None => cmd.push_str(&format!(
                " && {{ [ ! -e {q} ] && chmod 644 \"$tmp\" || chmod --reference={q} \"$tmp\"; }}"
            )),
        }
        cmd.push_str(&format!(
            " && mv -f \"$tmp\" {q} || {{ rm -f \"$tmp\"; exit 1; }}"
        ));
        let out = self.exec(&cmd, Some(data)).await?;
        if out.rc != 0 {
            return Err(ConnError::Other(format!(
                "writing {path}: {}",
                out.stderr_str().trim()
            )));
        }
        Ok(())
    }

    async fn get_file(&self, path: &str) -> Result<Vec<u8>, ConnError> {
        let out = self.exec(&format!("cat {}", quote(path)), None).await?;
        if out.rc != 0 {
            return Err(ConnError::Other(format!(
                "reading {path}: {}",
                out.stderr_str().trim()
            )));
        }
        Ok(out.stdout)
    }

    async fn close(&self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }
}
