//! An in-memory [`Store`] with etcd's semantics (one global revision, mod revisions per key,
//! history for watches, compaction), for unit tests and single-process experiments.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::broadcast;

use super::{Event, EventKind, EventStream, ListOptions, ListPage, Store, StoreError, Stored};

/// The in-memory store. Cheap to create; share it behind an `Arc`.
pub struct MemoryStore {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Event>,
}

struct Inner {
    revision: u64,
    compacted: u64,
    data: BTreeMap<String, (Value, u64)>,
    history: Vec<Event>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store at revision 1 (like a fresh etcd).
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            inner: Mutex::new(Inner {
                revision: 1,
                compacted: 0,
                data: BTreeMap::new(),
                history: Vec::new(),
            }),
            events,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(
        &self,
        inner: &mut Inner,
        kind: EventKind,
        key: &str,
        value: Value,
        prev: Option<Value>,
    ) -> u64 {
        inner.revision += 1;
        let revision = inner.revision;
        let event = Event {
            kind,
            object: Stored {
                key: key.to_string(),
                value,
                revision,
            },
            prev,
        };
        inner.history.push(event.clone());
        // No receiver is fine: nobody watches.
        let _ = self.events.send(event);
        revision
    }
}

fn check_expected(key: &str, expected: Option<u64>, found: u64) -> Result<(), StoreError> {
    match expected {
        Some(e) if e != found => Err(StoreError::Conflict {
            key: key.to_string(),
            expected: e,
            found,
        }),
        _ => Ok(()),
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        Ok(self.lock().data.get(key).map(|(v, r)| Stored {
            key: key.to_string(),
            value: v.clone(),
            revision: *r,
        }))
    }

    async fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListPage, StoreError> {
        let inner = self.lock();
        if let Some(r) = opts.revision {
            if r < inner.compacted {
                return Err(StoreError::Expired {
                    requested: r,
                    compacted: inner.compacted,
                });
            }
        }
        let limit = opts.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let mut items = Vec::new();
        let mut more_after = None;
        let start = opts.after.clone().unwrap_or_else(|| prefix.to_string());
        for (k, (v, r)) in inner.data.range(start..) {
            if !k.starts_with(prefix) {
                break;
            }
            if opts.after.as_deref() == Some(k.as_str()) {
                continue;
            }
            if items.len() == limit {
                more_after = items.last().map(|s: &Stored| s.key.clone());
                break;
            }
            items.push(Stored {
                key: k.clone(),
                value: v.clone(),
                revision: *r,
            });
        }
        Ok(ListPage {
            items,
            revision: inner.revision,
            more_after,
        })
    }

    async fn create(&self, key: &str, value: &Value) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        if inner.data.contains_key(key) {
            return Err(StoreError::AlreadyExists(key.to_string()));
        }
        let rev = self.record(&mut inner, EventKind::Added, key, value.clone(), None);
        inner.data.insert(key.to_string(), (value.clone(), rev));
        Ok(rev)
    }

    async fn update(
        &self,
        key: &str,
        value: &Value,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let (prev, found) = match inner.data.get(key) {
            Some((v, r)) => (v.clone(), *r),
            None => return Err(StoreError::NotFound(key.to_string())),
        };
        check_expected(key, expected, found)?;
        let rev = self.record(
            &mut inner,
            EventKind::Modified,
            key,
            value.clone(),
            Some(prev),
        );
        inner.data.insert(key.to_string(), (value.clone(), rev));
        Ok(rev)
    }

    async fn delete(&self, key: &str, expected: Option<u64>) -> Result<Stored, StoreError> {
        let mut inner = self.lock();
        let (value, found) = match inner.data.get(key) {
            Some((v, r)) => (v.clone(), *r),
            None => return Err(StoreError::NotFound(key.to_string())),
        };
        check_expected(key, expected, found)?;
        inner.data.remove(key);
        let revision = self.record(
            &mut inner,
            EventKind::Deleted,
            key,
            value.clone(),
            Some(value.clone()),
        );
        Ok(Stored {
            key: key.to_string(),
            value,
            revision,
        })
    }

    async fn watch(&self, prefix: &str, from: u64) -> Result<EventStream, StoreError> {
        let inner = self.lock();
        if from != 0 && from < inner.compacted {
            return Err(StoreError::Expired {
                requested: from,
                compacted: inner.compacted,
            });
        }
        let from = if from == 0 { inner.revision + 1 } else { from };
        let prefix = prefix.to_string();
        let backlog: Vec<Event> = inner
            .history
            .iter()
            .filter(|e| e.object.revision >= from && e.object.key.starts_with(&prefix))
            .cloned()
            .collect();
        // Subscribing under the lock: no event can slip between the backlog and the live feed.
        let rx = self.events.subscribe();
        drop(inner);
        let live = futures::stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                Ok(e) => Some((Ok(e), rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    Some((Err(StoreError::Backend("watcher fell behind".into())), rx))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
        .filter(move |e| {
            let keep = match e {
                Ok(e) => e.object.key.starts_with(&prefix) && e.object.revision >= from,
                Err(_) => true,
            };
            futures::future::ready(keep)
        });
        Ok(futures::stream::iter(backlog.into_iter().map(Ok))
            .chain(live)
            .boxed())
    }

    async fn revision(&self) -> Result<u64, StoreError> {
        Ok(self.lock().revision)
    }

    async fn compact(&self, revision: u64) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.compacted = inner.compacted.max(revision);
        let c = inner.compacted;
        inner.history.retain(|e| e.object.revision >= c);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn create_get_conflict_delete() {
        let s = MemoryStore::new();
        let r1 = s.create("/registry/a/x", &json!({"v": 1})).await.unwrap();
        assert!(matches!(
            s.create("/registry/a/x", &json!({})).await,
            Err(StoreError::AlreadyExists(_))
        ));
        let got = s.get("/registry/a/x").await.unwrap().unwrap();
        assert_eq!(got.revision, r1);
        let r2 = s
            .update("/registry/a/x", &json!({"v": 2}), Some(r1))
            .await
            .unwrap();
        assert!(r2 > r1);
        let stale = s.update("/registry/a/x", &json!({"v": 3}), Some(r1)).await;
        assert!(matches!(stale, Err(StoreError::Conflict { found, .. }) if found == r2));
        assert!(matches!(
            s.update("/registry/a/missing", &json!({}), None).await,
            Err(StoreError::NotFound(_))
        ));
        let del = s.delete("/registry/a/x", None).await.unwrap();
        assert_eq!(del.value, json!({"v": 2}));
        assert!(s.get("/registry/a/x").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn list_pages_by_prefix() {
        let s = MemoryStore::new();
        for n in ["a", "b", "c", "d", "e"] {
            s.create(&format!("/registry/p/ns/{n}"), &json!(n))
                .await
                .unwrap();
        }
        s.create("/registry/p/other/z", &json!("z")).await.unwrap();
        s.create("/registry/pods2/ns/z", &json!("z")).await.unwrap();
        let mut opts = ListOptions {
            limit: Some(2),
            ..Default::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = s.list("/registry/p/ns/", &opts).await.unwrap();
            seen.extend(page.items.iter().map(|i| i.value.clone()));
            match page.more_after {
                Some(k) => opts.after = Some(k),
                None => break,
            }
        }
        assert_eq!(
            seen,
            vec![json!("a"), json!("b"), json!("c"), json!("d"), json!("e")]
        );
        let all = s
            .list("/registry/p/", &ListOptions::default())
            .await
            .unwrap();
        assert_eq!(all.items.len(), 6);
    }

    #[tokio::test]
    async fn watch_replays_then_follows_and_expires() {
        let s = MemoryStore::new();
        let r1 = s.create("/registry/cm/ns/a", &json!(1)).await.unwrap();
        s.create("/registry/other/b", &json!(2)).await.unwrap();
        let mut w = s.watch("/registry/cm/", r1).await.unwrap();
        let e = w.next().await.unwrap().unwrap();
        assert_eq!((e.kind, e.object.revision), (EventKind::Added, r1));
        s.update("/registry/cm/ns/a", &json!(3), None)
            .await
            .unwrap();
        s.delete("/registry/cm/ns/a", None).await.unwrap();
        let e = w.next().await.unwrap().unwrap();
        assert_eq!(
            (e.kind, e.object.value.clone()),
            (EventKind::Modified, json!(3))
        );
        let e = w.next().await.unwrap().unwrap();
        assert_eq!((e.kind, e.object.value), (EventKind::Deleted, json!(3)));
        let now = s.revision().await.unwrap();
        s.compact(now).await.unwrap();
        assert!(matches!(
            s.watch("/registry/cm/", r1).await,
            Err(StoreError::Expired { .. })
        ));
    }
}
