//! The etcd [`Store`] against a real etcd (mTLS): create/AlreadyExists, optimistic concurrency,
//! paged listing, watch events, and compaction reported as Expired.

mod common;

use dustkube::storage::etcd::{EtcdConfig, EtcdStore};
use dustkube::storage::{EventKind, ListOptions, Store, StoreError};
use futures::StreamExt;
use serde_json::json;

#[tokio::test]
async fn etcd_store_semantics() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pki = common::make_pki(dir, 6443);
    let (port, peer) = (common::free_port(), common::free_port());
    let _etcd = common::start_etcd(dir, &pki, port, peer);
    let store = EtcdStore::connect(&EtcdConfig {
        endpoints: vec![format!("https://127.0.0.1:{port}")],
        ca_file: Some(pki.join("etcd/ca.crt")),
        cert_file: Some(pki.join("apiserver-etcd-client.crt")),
        key_file: Some(pki.join("apiserver-etcd-client.key")),
    })
    .await
    .unwrap();

    let key = "/registry/configmaps/demo/a";
    let r1 = store.create(key, &json!({"v": 1})).await.unwrap();
    assert!(matches!(
        store.create(key, &json!({})).await,
        Err(StoreError::AlreadyExists(_))
    ));
    let got = store.get(key).await.unwrap().unwrap();
    assert_eq!((got.value, got.revision), (json!({"v": 1}), r1));

    let mut watch = store.watch("/registry/configmaps/", r1).await.unwrap();
    let r2 = store.update(key, &json!({"v": 2}), Some(r1)).await.unwrap();
    assert!(matches!(
        store.update(key, &json!({"v": 3}), Some(r1)).await,
        Err(StoreError::Conflict { found, .. }) if found == r2
    ));
    assert!(matches!(
        store
            .update("/registry/configmaps/demo/none", &json!({}), None)
            .await,
        Err(StoreError::NotFound(_))
    ));
    let deleted = store.delete(key, None).await.unwrap();
    assert_eq!(deleted.value, json!({"v": 2}));
    assert!(store.get(key).await.unwrap().is_none());

    let mut seen = Vec::new();
    for _ in 0..3 {
        let e = watch.next().await.unwrap().unwrap();
        seen.push((e.kind, e.object.value));
    }
    assert_eq!(
        seen,
        vec![
            (EventKind::Added, json!({"v": 1})),
            (EventKind::Modified, json!({"v": 2})),
            (EventKind::Deleted, json!({"v": 2})),
        ]
    );

    for n in ["b", "c", "d", "e", "f"] {
        store
            .create(&format!("/registry/pods/ns/{n}"), &json!(n))
            .await
            .unwrap();
    }
    let mut opts = ListOptions {
        limit: Some(2),
        ..Default::default()
    };
    let mut names = Vec::new();
    loop {
        let page = store.list("/registry/pods/ns/", &opts).await.unwrap();
        names.extend(page.items.iter().map(|i| i.value.clone()));
        opts.revision = Some(page.revision);
        match page.more_after {
            Some(k) => opts.after = Some(k),
            None => break,
        }
    }
    assert_eq!(
        names,
        vec![json!("b"), json!("c"), json!("d"), json!("e"), json!("f")]
    );

    let now = store.revision().await.unwrap();
    store.compact(now).await.unwrap();
    let mut old = store.watch("/registry/", r1).await.unwrap();
    assert!(matches!(
        old.next().await,
        Some(Err(StoreError::Expired { .. }))
    ));
    let stale = ListOptions {
        revision: Some(r1),
        ..Default::default()
    };
    assert!(matches!(
        store.list("/registry/pods/", &stale).await,
        Err(StoreError::Expired { .. })
    ));
}
