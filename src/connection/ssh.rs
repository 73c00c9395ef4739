//! SSH transport over russh: one TCP connection per host, one channel per command.
//!
//! Concurrency is bounded twice: [`MAX_CHANNELS`] channels per connection (sshd's
//! `MaxSessions` is 10) and [`MAX_HANDSHAKES`] handshakes in flight process-wide (sshd's
//! `MaxStartups` starts dropping at 10). Host keys are checked strictly against known_hosts
//! ([`super::known_hosts`]). Authentication tries the ssh-agent, then key files, then a password.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use russh::client::{self, AuthResult, Handle};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::ChannelMsg;
use tokio::sync::Semaphore;

use super::known_hosts::{self, HostKeyStatus};
use super::spec::ConnectionSpec;
use super::{quote, ConnError, Connection, ExecOutput};

/// Channels (commands, transfers) open at once on one connection.
pub const MAX_CHANNELS: usize = 8;
/// SSH handshakes (TCP connect to authenticated) in flight at once in this process.
pub const MAX_HANDSHAKES: usize = 8;

static HANDSHAKES: Semaphore = Semaphore::const_new(MAX_HANDSHAKES);

/// Errors raised inside the russh session by our handler.
#[derive(Debug, thiserror::Error)]
enum HandlerError {
    /// Host-key verification refused the server.
    #[error("{0}")]
    HostKey(String),
    /// Protocol or I/O error.
    #[error(transparent)]
    Ssh(#[from] russh::Error),
}

/// russh client callbacks: verifies the server's host key.
struct Client {
    host: String,
    port: u16,
    known_hosts: std::path::PathBuf,
    accept_new: bool,
}

impl Client {
    fn verify(&self, key: &russh::keys::PublicKey) -> Result<(), String> {
        let file = self.known_hosts.display();
        let name = known_hosts::host_label(&self.host, self.port);
        let alg = key.algorithm();
        let fp = key.fingerprint(HashAlg::Sha256);
        let status = known_hosts::check(&self.known_hosts, &self.host, self.port, key)
            .map_err(|e| format!("{name}: cannot read known_hosts file {file}: {e}"))?;
        match status {
            HostKeyStatus::Known => Ok(()),
            HostKeyStatus::Mismatch { line } => Err(format!(
                "{name}: HOST KEY MISMATCH: the server presented {alg} host key {fp}, but {file}:{line} \
                 records a different {alg} key for {name}. Refusing to connect (someone may be \
                 intercepting the connection, or the host was reinstalled: check, then remove line {line})"
            )),
            HostKeyStatus::Revoked { line } => Err(format!(
                "{name}: host key {fp} is marked @revoked in {file}:{line}; refusing to connect"
            )),
            HostKeyStatus::Unknown if self.accept_new => known_hosts::learn(&self.known_hosts, &self.host, self.port, key)
                .map_err(|e| format!("{name}: cannot record new host key in {file}: {e}")),
            HostKeyStatus::Unknown => Err(format!(
                "{name}: host key verification failed: no {alg} host key for {name} in {file} \
                 (server presented {fp}); add it to known_hosts or use StrictHostKeyChecking=accept-new"
            )),
        }
    }
}

impl client::Handler for Client {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        self.verify(&key.public_key())
            .map_err(HandlerError::HostKey)?;
        Ok(true)
    }
}

/// A live SSH connection to one host.
pub struct SshConnection {
    handle: Handle<Client>,
    channels: Semaphore,
    label: String,
    command_timeout: Option<Duration>,
    /// Keeps the bastion's session (which carries our TCP stream) alive.
    _jump: Option<Arc<SshConnection>>,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl SshConnection {
    /// Connects, verifies the host key and authenticates as `spec.user` (through `spec.proxy_jump` if set).
    pub fn connect(spec: &ConnectionSpec) -> BoxFuture<'_, Result<SshConnection, ConnError>> {
        Box::pin(async move {
            let label = spec.label();
            let jump = match &spec.proxy_jump {
                Some(j) => Some(jump_connection(j).await.map_err(|e| {
                    ConnError::Unreachable(format!("{label}: via jump host {}: {e}", j.label()))
                })?),
                None => None,
            };
            let _permit = HANDSHAKES.acquire().await.map_err(|_| {
                ConnError::Unreachable(format!("{label}: handshake limiter closed"))
            })?;
            let t = spec.connect_timeout;
            let handle = tokio::time::timeout(t, Self::handshake(spec, jump.as_deref()))
                .await
                .map_err(|_| {
                    ConnError::Unreachable(format!(
                        "{label}: timed out after {t:?} while connecting"
                    ))
                })??;
            Ok(SshConnection {
                handle,
                channels: Semaphore::new(MAX_CHANNELS),
                label,
                command_timeout: spec.command_timeout,
                _jump: jump,
            })
        })
    }

    /// TCP (or direct-tcpip through `jump`) + key exchange + authentication.
    async fn handshake(
        spec: &ConnectionSpec,
        jump: Option<&SshConnection>,
    ) -> Result<Handle<Client>, ConnError> {
        let label = spec.label();
        let unreachable = |what: &str, e: &dyn std::fmt::Display| {
            ConnError::Unreachable(format!("{label}: {what}: {e}"))
        };
        let mut preferred = russh::Preferred::default();
        let recorded = known_hosts::recorded_algorithms(&spec.known_hosts, &spec.host, spec.port);
        if !recorded.is_empty() {
            let mut keys = preferred.key.to_vec();
            keys.sort_by_key(|a| !recorded.iter().any(|r| known_hosts::same_type(r, a)));
            preferred.key = keys.into();
        }
        let config = Arc::new(client::Config {
            nodelay: true,
            preferred,
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 3,
            ..Default::default()
        });
        let handler = Client {
            host: spec.host.clone(),
            port: spec.port,
            known_hosts: spec.known_hosts.clone(),
            accept_new: spec.accept_new_host_keys,
        };
        let result = match jump {
            None => {
                let tcp = tokio::net::TcpStream::connect((spec.host.as_str(), spec.port))
                    .await
                    .map_err(|e| unreachable("cannot connect", &e))?;
                tcp.set_nodelay(true)
                    .map_err(|e| unreachable("cannot set TCP_NODELAY", &e))?;
                client::connect_stream(config, tcp, handler).await
            }
            Some(j) => {
                let ch = j
                    .handle
                    .channel_open_direct_tcpip(
                        spec.host.as_str(),
                        u32::from(spec.port),
                        "127.0.0.1",
                        0,
                    )
                    .await
                    .map_err(|e| {
                        unreachable(&format!("jump host {} cannot open a tunnel", j.label), &e)
                    })?;
                client::connect_stream(config, ch.into_stream(), handler).await
            }
        };
        let mut handle = result.map_err(|e| match e {
            HandlerError::HostKey(msg) => ConnError::Unreachable(msg),
            HandlerError::Ssh(e) => unreachable("SSH handshake failed", &e),
        })?;
        authenticate(&mut handle, spec).await?;
        Ok(handle)
    }

    /// `user@host:port` of this connection.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Maps a russh error: a closed session makes the host unreachable.
    fn fail(&self, what: &str, e: impl std::fmt::Display) -> ConnError {
        if self.handle.is_closed() {
            ConnError::Unreachable(format!("{}: connection lost ({what}: {e})", self.label))
        } else {
            ConnError::Other(format!("{}: {what}: {e}", self.label))
        }
    }

    /// Opens a session channel. sshd frees a session slot a little after the channel closes, so
    /// a refused open (slots of just-finished commands still counted against `MaxSessions`)
    /// is retried with backoff for a while as long as the connection is up.
    async fn open_session(&self) -> Result<russh::Channel<client::Msg>, ConnError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut delay = Duration::from_millis(2);
        loop {
            match self.handle.channel_open_session().await {
                Ok(c) => return Ok(c),
                Err(russh::Error::ChannelOpenFailure(_))
                    if !self.handle.is_closed() && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(100));
                }
                Err(e) => return Err(self.fail("cannot open channel", e)),
            }
        }
    }

    /// Runs one command on a fresh channel.
    async fn run(&self, command: &str, stdin: Option<&[u8]>) -> Result<ExecOutput, ConnError> {
        let channel = self.open_session().await?;
        channel
            .exec(true, command)
            .await
            .map_err(|e| self.fail("cannot start command", e))?;
        let (mut read, write) = channel.split();
        let writer = async {
            if let Some(data) = stdin {
                if !data.is_empty() {
                    write.data(data).await?;
                }
            }
            write.eof().await
        };
        let reader = async {
            let mut out = ExecOutput {
                rc: -1,
                ..Default::default()
            };
            let mut got_status = false;
            let mut refused = false;
            while let Some(msg) = read.wait().await {
                match msg {
                    ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        out.stderr.extend_from_slice(&data)
                    }
                    ChannelMsg::ExitStatus { exit_status } => {
                        out.rc = i32::try_from(exit_status).unwrap_or(-1);
                        got_status = true;
                    }
                    ChannelMsg::ExitSignal {
                        signal_name,
                        error_message,
                        ..
                    } => {
                        out.rc = -1;
                        got_status = true;
                        let msg = format!("killed by signal {signal_name:?} {error_message}");
                        out.stderr.extend_from_slice(msg.trim_end().as_bytes());
                    }
                    ChannelMsg::Failure => {
                        refused = true;
                        break;
                    }
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
            (out, got_status, refused)
        };
        let (written, (out, got_status, refused)) = tokio::join!(writer, reader);
        if refused {
            return Err(ConnError::Other(format!(
                "{}: the server refused to run the command",
                self.label
            )));
        }
        if !got_status && self.handle.is_closed() {
            return Err(ConnError::Unreachable(format!(
                "{}: connection lost while running a command",
                self.label
            )));
        }
        if let Err(e) = written {
            // The command may legitimately exit without reading its input.
            if !got_status {
                return Err(self.fail("cannot send input", e));
            }
        }
        Ok(out)
    }
}

/// Bastion connections shared by every host that jumps through them (tunnels are not
/// sessions, so sshd's `MaxSessions` does not limit them).
static JUMPS: tokio::sync::Mutex<Vec<(ConnectionSpec, Weak<SshConnection>)>> =
    tokio::sync::Mutex::const_new(Vec::new());

/// The live connection to bastion `spec`, opened on first use. The lock is not held while
/// connecting (a bastion may itself jump through another one).
async fn jump_connection(spec: &ConnectionSpec) -> Result<Arc<SshConnection>, ConnError> {
    fn live(
        jumps: &mut Vec<(ConnectionSpec, Weak<SshConnection>)>,
        spec: &ConnectionSpec,
    ) -> Option<Arc<SshConnection>> {
        jumps.retain(|(_, w)| w.upgrade().is_some_and(|c| !c.handle.is_closed()));
        jumps
            .iter()
            .find(|(s, _)| s == spec)
            .and_then(|(_, w)| w.upgrade())
    }
    if let Some(c) = live(&mut *JUMPS.lock().await, spec) {
        return Ok(c);
    }
    let c = Arc::new(SshConnection::connect(spec).await?);
    let mut jumps = JUMPS.lock().await;
    if let Some(existing) = live(&mut jumps, spec) {
        return Ok(existing);
    }
    jumps.push((spec.clone(), Arc::downgrade(&c)));
    Ok(c)
}

/// Tries the agent, the key files, then the password, in that order.
async fn authenticate(handle: &mut Handle<Client>, spec: &ConnectionSpec) -> Result<(), ConnError> {
    let label = spec.label();
    let mut tried: Vec<String> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    let mut server_methods = String::new();
    let mut note = |r: &AuthResult| {
        if let AuthResult::Failure {
            remaining_methods, ..
        } = r
        {
            let names: Vec<String> = remaining_methods.iter().map(String::from).collect();
            server_methods = names.join(",");
        }
    };
    let lost = |e: &dyn std::fmt::Display| {
        ConnError::Unreachable(format!("{label}: authentication aborted: {e}"))
    };

    if std::env::var_os("SSH_AUTH_SOCK").is_some() {
        match AgentClient::connect_env().await {
            Ok(mut agent) => {
                let ids = agent.request_identities().await.unwrap_or_default();
                for id in ids {
                    let AgentIdentity::PublicKey { key, comment } = id else {
                        continue;
                    };
                    let hash = if key.algorithm().is_rsa() {
                        rsa_hash(handle).await
                    } else {
                        None
                    };
                    tried.push(format!("agent key {comment}"));
                    match handle
                        .authenticate_publickey_with(&spec.user, key, hash, &mut agent)
                        .await
                    {
                        Ok(r) if r.success() => return Ok(()),
                        Ok(r) => note(&r),
                        Err(e) => problems.push(format!("agent: {e}")),
                    }
                }
            }
            Err(e) => problems.push(format!("ssh-agent: {e}")),
        }
    }
    for path in &spec.private_key_files {
        let key = match load_key(path, spec.key_passphrase.as_deref()) {
            Ok(k) => k,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        let hash = if key.algorithm().is_rsa() {
            rsa_hash(handle).await
        } else {
            None
        };
        tried.push(format!("key {}", path.display()));
        let r = handle
            .authenticate_publickey(&spec.user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(|e| lost(&e))?;
        if r.success() {
            return Ok(());
        }
        note(&r);
    }
    if let Some(pw) = &spec.password {
        tried.push("password".into());
        let r = handle
            .authenticate_password(&spec.user, pw)
            .await
            .map_err(|e| lost(&e))?;
        if r.success() {
            return Ok(());
        }
        note(&r);
    }
    let mut msg = format!("{label}: authentication failed");
    if tried.is_empty() {
        msg.push_str(" (no agent key, key file or password to try)");
    } else {
        msg.push_str(&format!(" (tried {})", tried.join(", ")));
    }
    if !server_methods.is_empty() {
        msg.push_str(&format!("; server allows: {server_methods}"));
    }
    if !problems.is_empty() {
        msg.push_str(&format!("; {}", problems.join("; ")));
    }
    Err(ConnError::Unreachable(msg))
}

/// The RSA signature hash to use: the best the server announces, else SHA-256.
async fn rsa_hash(handle: &Handle<Client>) -> Option<HashAlg> {
    match handle.best_supported_rsa_hash().await {
        Ok(Some(best)) => best,
        _ => Some(HashAlg::Sha256),
    }
}

/// Loads a private key file, decrypting it with `passphrase` if needed.
fn load_key(path: &Path, passphrase: Option<&str>) -> Result<russh::keys::PrivateKey, String> {
    russh::keys::load_secret_key(path, passphrase).map_err(|e| match e {
        russh::keys::Error::KeyIsEncrypted => format!(
            "{}: key is encrypted and no passphrase was given",
            path.display()
        ),
        e => format!("{}: cannot load key: {e}", path.display()),
    })
}

#[async_trait]
impl Connection for SshConnection {
    async fn exec(&self, command: &str, stdin: Option<&[u8]>) -> Result<ExecOutput, ConnError> {
        let _permit =
            self.channels.acquire().await.map_err(|_| {
                ConnError::Unreachable(format!("{}: connection closed", self.label))
            })?;
        super::with_timeout(self.command_timeout, self.run(command, stdin)).await
    }

    async fn put_file(&self, data: &[u8], path: &str, mode: Option<u32>) -> Result<(), ConnError> {
        let tmp = super::temp_path(path);
        let (dest, tmpq) = (quote(path), quote(&tmp));
        let write = match mode {
            Some(m) => format!("(umask 077 && cat > {tmpq}) && chmod {m:o} {tmpq}"),
            None => format!("cat > {tmpq}"),
        };
        let cmd = format!("{write} && mv -f {tmpq} {dest} || {{ rc=$?; rm -f {tmpq}; exit $rc; }}");
        let out = self.exec(&cmd, Some(data)).await?;
        if out.rc != 0 {
            return Err(ConnError::Other(format!(
                "{}: cannot write {path}: {}",
                self.label,
                out.stderr_str().trim()
            )));
        }
        Ok(())
    }

    async fn get_file(&self, path: &str) -> Result<Vec<u8>, ConnError> {
        let out = self.exec(&format!("cat -- {}", quote(path)), None).await?;
        if out.rc != 0 {
            return Err(ConnError::Other(format!(
                "{}: cannot read {path}: {}",
                self.label,
                out.stderr_str().trim()
            )));
        }
        Ok(out.stdout)
    }

    async fn close(&self) {
        self.channels.close();
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}
