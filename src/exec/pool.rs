//! Connections by host name: opened on first use, shared by every task (and by delegation),
//! remembered as unreachable once they fail.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use crate::connection::spec::{connect, ConnectionSpec};
use crate::connection::{ConnError, Connection};

type Slot = Arc<OnceCell<Result<Arc<dyn Connection>, String>>>;

/// Settings from the command line that override inventory connection variables.
#[derive(Debug, Clone, Default)]
pub struct ConnOverrides {
    /// `--user`.
    pub user: Option<String>,
    /// `--private-key`.
    pub private_key: Option<std::path::PathBuf>,
    /// `--known-hosts`.
    pub known_hosts: Option<std::path::PathBuf>,
    /// `--accept-new-host-keys`.
    pub accept_new_host_keys: bool,
    /// `--timeout` for connecting.
    pub connect_timeout: Option<std::time::Duration>,
    /// `--ask-pass`: SSH password for hosts without `ansible_password`.
    pub password: Option<String>,
    /// Passphrase for encrypted private keys (asked once at start).
    pub key_passphrase: Option<String>,
}

/// All open connections of a run.
#[derive(Default)]
pub struct Pool {
    slots: Mutex<HashMap<String, Slot>>,
    overrides: ConnOverrides,
}

impl Pool {
    /// An empty pool applying `overrides` to every connection.
    pub fn new(overrides: ConnOverrides) -> Self {
        Pool {
            slots: Mutex::new(HashMap::new()),
            overrides,
        }
    }

    /// The connection to `host`, opened with its (templated) connection `vars` on first use.
    pub async fn get(
        &self,
        host: &str,
        vars: &Map<String, Value>,
    ) -> Result<Arc<dyn Connection>, ConnError> {
        let slot = {
            let mut slots = self
                .slots
                .lock()
                .map_err(|_| ConnError::Other("connection pool poisoned".into()))?;
            slots.entry(host.to_owned()).or_default().clone()
        };
        let result = slot
            .get_or_init(|| async {
                let mut spec =
                    ConnectionSpec::from_vars(host, vars).map_err(|e| format!("{e:#}"))?;
                let o = &self.overrides;
                if let Some(u) = &o.user {
                    if !vars.contains_key("ansible_user") {
                        spec.user = u.clone();
                    }
                }
                if let Some(k) = &o.private_key {
                    spec.private_key_files.insert(0, k.clone());
                }
                if let Some(k) = &o.known_hosts {
                    spec.known_hosts = k.clone();
                }
                if let Some(t) = o.connect_timeout {
                    spec.connect_timeout = t;
                }
                spec.accept_new_host_keys |= o.accept_new_host_keys;
                if spec.password.is_none() {
                    spec.password = o.password.clone();
                }
                if spec.key_passphrase.is_none() {
                    spec.key_passphrase = o.key_passphrase.clone();
                }
                connect(&spec).await.map_err(|e| e.to_string())
            })
            .await;
        match result {
            Ok(c) => Ok(c.clone()),
            Err(e) => Err(ConnError::Unreachable(e.clone())),
        }
    }

    /// Forgets the connection to `host` (after it broke), so a later task may reconnect.
    pub fn forget(&self, host: &str) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.remove(host);
        }
    }

    /// Closes every connection.
    pub async fn close_all(&self) {
        let slots: Vec<Slot> = match self.slots.lock() {
            Ok(mut s) => s.drain().map(|(_, v)| v).collect(),
            Err(_) => return,
        };
        for slot in slots {
            if let Some(Ok(c)) = slot.get() {
                c.close().await;
            }
        }
    }
}

/// Wraps a connection so every command runs with `environment:` exported.
pub struct WithEnv {
    inner: Arc<dyn Connection>,
    prefix: String,
}

impl WithEnv {
    /// `inner`, with `env` exported before each command.
    pub fn wrap(inner: Arc<dyn Connection>, env: &Map<String, Value>) -> Arc<dyn Connection> {
        if env.is_empty() {
            return inner;
        }
        let prefix = env
            .iter()
            .map(|(k, v)| {
                let val = crate::modules::args::to_string(v).unwrap_or_else(|| v.to_string());
                format!("export {k}={}; ", crate::modules::quote(&val))
            })
            .collect();
        Arc::new(WithEnv { inner, prefix })
    }
}

#[async_trait::async_trait]
impl Connection for WithEnv {
    async fn exec(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
    ) -> Result<crate::connection::ExecOutput, ConnError> {
        self.inner
            .exec(&format!("{}{command}", self.prefix), stdin)
            .await
    }
    async fn put_file(&self, data: &[u8], path: &str, mode: Option<u32>) -> Result<(), ConnError> {
        self.inner.put_file(data, path, mode).await
    }
    async fn get_file(&self, path: &str) -> Result<Vec<u8>, ConnError> {
        self.inner.get_file(path).await
    }
    async fn close(&self) {}
}
