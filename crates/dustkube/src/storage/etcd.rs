//! The etcd v3 [`Store`]: mTLS connection, transactions for create/update/delete with
//! optimistic concurrency on mod revisions, prefix watches with compaction reported as `Expired`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions,
    Identity, KeyValue, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use futures::StreamExt;
use serde_json::Value;

use super::{
    prefix_end, Event, EventKind, EventStream, ListOptions, ListPage, Store, StoreError, Stored,
};

/// How to reach etcd: endpoints and, for `https://` endpoints, the client certificate and CA.
#[derive(Debug, Clone, Default)]
pub struct EtcdConfig {
    /// `https://127.0.0.1:2379`, ...
    pub endpoints: Vec<String>,
    /// CA that signed etcd's server certificate.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (apiserver-etcd-client.crt).
    pub cert_file: Option<PathBuf>,
    /// Client key.
    pub key_file: Option<PathBuf>,
}

/// The etcd-backed store.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn read(path: &PathBuf) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))
}

/// Maps an etcd error; "required revision has been compacted" becomes `Expired`.
fn map_err(e: etcd_client::Error, requested: u64) -> StoreError {
    let text = e.to_string();
    if text.contains("compacted") {
        StoreError::Expired {
            requested,
            compacted: 0,
        }
    } else {
        StoreError::Backend(text)
    }
}

fn to_stored(kv: &KeyValue) -> Result<Stored, StoreError> {
    let key = kv.key_str().map_err(backend)?.to_string();
    let value = serde_json::from_slice(kv.value())
        .map_err(|e| StoreError::Backend(format!("{key}: stored value is not JSON: {e}")))?;
    Ok(Stored {
        key,
        value,
        revision: kv.mod_revision() as u64,
    })
}

impl EtcdStore {
    /// Connects (with mTLS when certificate files are given) and checks the connection with a read.
    pub async fn connect(config: &EtcdConfig) -> Result<Self, StoreError> {
        let endpoints: Vec<String> = config
            .endpoints
            .iter()
            .map(|e| e.trim_end_matches('/').to_string())
            .collect();
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(30), Duration::from_secs(10));
        if endpoints.iter().any(|e| e.starts_with("https://")) {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &config.ca_file {
                tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
            }
            if let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            opts = opts.with_tls(tls);
        }
        let client = Client::connect(endpoints, Some(opts))
            .await
            .map_err(backend)?;
        let store = Self { client };
        store.revision().await?;
        Ok(store)
    }

    async fn current(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        self.get(key).await
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        let resp = self
            .client
            .kv_client()
            .get(key, None)
            .await
            .map_err(backend)?;
        resp.kvs().first().map(to_stored).transpose()
    }

    async fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListPage, StoreError> {
        let start = match &opts.after {
            Some(after) => format!("{after}\0"),
            None => prefix.to_string(),
        };
        let mut get = GetOptions::new().with_range(prefix_end(prefix));
        let limit = opts.limit.filter(|l| *l > 0);
        if let Some(l) = limit {
            get = get.with_limit(l as i64);
        }
        if let Some(r) = opts.revision {
            get = get.with_revision(r as i64);
        }
        let resp = self
            .client
            .kv_client()
            .get(start, Some(get))
            .await
            .map_err(|e| map_err(e, opts.revision.unwrap_or(0)))?;
        let items = resp
            .kvs()
            .iter()
            .map(to_stored)
            .collect::<Result<Vec<_>, _>>()?;
        let revision = resp.header().map(|h| h.revision() as u64).unwrap_or(0);
        let more_after = if resp.more() {
            items.last().map(|s| s.key.clone())
        } else {
            None
        };
        Ok(ListPage {
            items,
            revision: opts.revision.unwrap_or(revision),
            more_after,
        })
    }

    async fn create(&self, key: &str, value: &Value) -> Result<u64, StoreError> {
        let bytes = serde_json::to_vec(value).map_err(backend)?;
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, bytes, None)]);
        let resp = self.client.kv_client().txn(txn).await.map_err(backend)?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists(key.to_string()));
        }
        Ok(resp.header().map(|h| h.revision() as u64).unwrap_or(0))
    }

    async fn update(
        &self,
        key: &str,
        value: &Value,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let bytes = serde_json::to_vec(value).map_err(backend)?;
        let cmp = match expected {
            Some(r) => Compare::mod_revision(key, CompareOp::Equal, r as i64),
            None => Compare::create_revision(key, CompareOp::Greater, 0),
        };
        let txn = Txn::new()
            .when([cmp])
            .and_then([TxnOp::put(key, bytes, None)]);
        let resp = self.client.kv_client().txn(txn).await.map_err(backend)?;
        if resp.succeeded() {
            return Ok(resp.header().map(|h| h.revision() as u64).unwrap_or(0));
        }
        match self.current(key).await? {
            None => Err(StoreError::NotFound(key.to_string())),
            Some(cur) => Err(StoreError::Conflict {
                key: key.to_string(),
                expected: expected.unwrap_or(0),
                found: cur.revision,
            }),
        }
    }

    async fn delete(&self, key: &str, expected: Option<u64>) -> Result<Stored, StoreError> {
        let cmp = match expected {
            Some(r) => Compare::mod_revision(key, CompareOp::Equal, r as i64),
            None => Compare::create_revision(key, CompareOp::Greater, 0),
        };
        let txn = Txn::new().when([cmp]).and_then([TxnOp::delete(
            key,
            Some(DeleteOptions::new().with_prev_key()),
        )]);
        let resp = self.client.kv_client().txn(txn).await.map_err(backend)?;
        if !resp.succeeded() {
            return match self.current(key).await? {
                None => Err(StoreError::NotFound(key.to_string())),
                Some(cur) => Err(StoreError::Conflict {
                    key: key.to_string(),
                    expected: expected.unwrap_or(0),
                    found: cur.revision,
                }),
            };
        }
        let revision = resp.header().map(|h| h.revision() as u64).unwrap_or(0);
        for op in resp.op_responses() {
            if let TxnOpResponse::Delete(d) = op {
                if let Some(prev) = d.prev_kvs().first() {
                    let mut stored = to_stored(prev)?;
                    stored.revision = revision;
                    return Ok(stored);
                }
            }
        }
        Err(StoreError::NotFound(key.to_string()))
    }

    async fn watch(&self, prefix: &str, from: u64) -> Result<EventStream, StoreError> {
        let mut opts = WatchOptions::new()
            .with_range(prefix_end(prefix))
            .with_prev_key();
        if from > 0 {
            opts = opts.with_start_revision(from as i64);
        }
        let (watcher, stream) = self
            .client
            .watch_client()
            .watch(prefix, Some(opts))
            .await
            .map_err(|e| map_err(e, from))?;
        // The watcher travels with the stream: dropping it would end the watch.
        let state = (watcher, stream, VecDeque::<Event>::new(), false);
        let events = futures::stream::unfold(state, move |(w, mut s, mut q, done)| async move {
            loop {
                if let Some(e) = q.pop_front() {
                    return Some((Ok(e), (w, s, q, done)));
                }
                if done {
                    return None;
                }
                let resp = match s.message().await {
                    Ok(Some(r)) => r,
                    Ok(None) => return None,
                    Err(e) => return Some((Err(map_err(e, from)), (w, s, q, true))),
                };
                if resp.compact_revision() > 0 {
                    let err = StoreError::Expired {
                        requested: from,
                        compacted: resp.compact_revision() as u64,
                    };
                    return Some((Err(err), (w, s, q, true)));
                }
                if resp.canceled() {
                    let err =
                        StoreError::Backend(format!("watch canceled: {}", resp.cancel_reason()));
                    return Some((Err(err), (w, s, q, true)));
                }
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let converted = match ev.event_type() {
                        EventType::Put => to_stored(kv).map(|object| Event {
                            kind: if kv.create_revision() == kv.mod_revision() {
                                EventKind::Added
                            } else {
                                EventKind::Modified
                            },
                            object,
                            prev: ev
                                .prev_kv()
                                .and_then(|p| serde_json::from_slice(p.value()).ok()),
                        }),
                        EventType::Delete => match ev.prev_kv() {
                            Some(prev) => to_stored(prev).map(|mut object| {
                                object.revision = kv.mod_revision() as u64;
                                Event {
                                    kind: EventKind::Deleted,
                                    prev: Some(object.value.clone()),
                                    object,
                                }
                            }),
                            None => continue,
                        },
                    };
                    match converted {
                        Ok(e) => q.push_back(e),
                        Err(e) => return Some((Err(e), (w, s, q, true))),
                    }
                }
            }
        });
        Ok(events.boxed())
    }

    async fn revision(&self) -> Result<u64, StoreError> {
        let resp = self
            .client
            .kv_client()
            .get("/registry/", Some(GetOptions::new().with_count_only()))
            .await
            .map_err(backend)?;
        Ok(resp.header().map(|h| h.revision() as u64).unwrap_or(0))
    }

    async fn compact(&self, revision: u64) -> Result<(), StoreError> {
        self.client
            .kv_client()
            .compact(revision as i64, None)
            .await
            .map_err(backend)?;
        Ok(())
    }
}
