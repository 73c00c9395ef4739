//! Object storage behind the API: the [`Store`] trait, with an in-memory implementation
//! ([`memory::MemoryStore`], unit tests) and an etcd v3 one ([`etcd::EtcdStore`], the product).
//!
//! Keys are `/registry/<resource>/<namespace>/<name>` (cluster-scoped: `/registry/<resource>/<name>`),
//! values are JSON objects, and the revision of a key (etcd's mod revision) is the object's
//! `metadata.resourceVersion`. The store knows nothing about Kubernetes beyond that.

pub mod etcd;
pub mod memory;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde_json::Value;

/// Everything a store can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// `create` on a key that exists.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The key's revision is not the one the caller expected (optimistic concurrency).
    #[error("conflict on {key}: expected revision {expected}, found {found}")]
    Conflict {
        /// The key.
        key: String,
        /// The revision the caller had.
        expected: u64,
        /// The revision in the store.
        found: u64,
    },
    /// The requested revision was compacted away (watch or paged list too old).
    #[error("revision {requested} has been compacted (oldest available {compacted})")]
    Expired {
        /// The revision asked for.
        requested: u64,
        /// The compaction point.
        compacted: u64,
    },
    /// The backend failed (connection, decoding).
    #[error("storage backend: {0}")]
    Backend(String),
}

/// A value with the revision of its last modification.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The full key.
    pub key: String,
    /// The JSON object.
    pub value: Value,
    /// Revision of the last write to this key (becomes `metadata.resourceVersion`).
    pub revision: u64,
}

/// One page of a prefix listing.
#[derive(Debug, Clone)]
pub struct ListPage {
    /// Items in key order.
    pub items: Vec<Stored>,
    /// The store revision the page was read at.
    pub revision: u64,
    /// Set when more items follow: the last key returned (pass it back as `after`).
    pub more_after: Option<String>,
}

/// What happened to a key, as seen by a watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created.
    Added,
    /// The key was updated.
    Modified,
    /// The key was deleted; the event carries the last value.
    Deleted,
}

/// One change delivered by [`Store::watch`].
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Created, modified or deleted.
    pub kind: EventKind,
    /// The new value (the last value for deletions), with the revision of this change.
    pub object: Stored,
    /// The value before this change (`None` for creations, or when history no longer has it);
    /// watches with selectors need it to tell "stopped matching" from "never matched".
    pub prev: Option<Value>,
}

/// A stream of watch events, ending with an error when the watch breaks.
pub type EventStream = BoxStream<'static, Result<Event, StoreError>>;

/// Options of [`Store::list`].
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// At most this many items (`None` or 0: all).
    pub limit: Option<usize>,
    /// Start strictly after this key (from a previous page's `more_after`).
    pub after: Option<String>,
    /// Read at this revision (for consistent paging); `None`: the latest.
    pub revision: Option<u64>,
}

/// A key-value store with revisions, optimistic concurrency and watches.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The value at `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Stored>, StoreError>;
    /// Keys under `prefix`, in key order, paged by `opts`.
    async fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListPage, StoreError>;
    /// Creates `key`; fails with `AlreadyExists` if present. Returns the new revision.
    async fn create(&self, key: &str, value: &Value) -> Result<u64, StoreError>;
    /// Replaces `key`; with `expected` set, fails with `Conflict` unless the key's revision is that.
    /// Fails with `NotFound` if the key is absent. Returns the new revision.
    async fn update(
        &self,
        key: &str,
        value: &Value,
        expected: Option<u64>,
    ) -> Result<u64, StoreError>;
    /// Deletes `key` (checking `expected` like `update`) and returns its last value, with the
    /// revision of the deletion.
    async fn delete(&self, key: &str, expected: Option<u64>) -> Result<Stored, StoreError>;
    /// Changes under `prefix` from revision `from` (inclusive) on; `Expired` if compacted.
    async fn watch(&self, prefix: &str, from: u64) -> Result<EventStream, StoreError>;
    /// The store's current revision.
    async fn revision(&self) -> Result<u64, StoreError>;
    /// Drops history older than `revision` (watches from before it get `Expired`).
    async fn compact(&self, revision: u64) -> Result<(), StoreError>;
}

/// The end of a prefix range: `prefix` with its last byte incremented (etcd's convention).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
