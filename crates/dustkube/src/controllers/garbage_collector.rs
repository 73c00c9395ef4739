//! The garbage collector (kube-controller-manager's): an object whose owners
//! (`metadata.ownerReferences`) are all gone is deleted; an owner deleted in the foreground
//! (`foregroundDeletion` finalizer) has its dependents deleted first and loses the finalizer
//! once no dependent with `blockOwnerDeletion` is left; an owner deleted with the `orphan`
//! finalizer has the references to it removed from its dependents, then loses the finalizer.
//!
//! Each pass plans from a snapshot of every stored kind ([`plan`], pure) and acts only after
//! re-reading the objects involved, so a stale snapshot never deletes a live object's dependents.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::client::Client;
use super::reconcile::run_loop;
use crate::api::deletion::{
    finalizers, is_deleting, set_finalizers, Propagation, FINALIZER_FOREGROUND, FINALIZER_ORPHAN,
};
use crate::api::status::ApiError;
use crate::resources::{self, name_of, str_at, ResourceType};

/// Full pass at least this often (events and leases, not watched, are covered by it).
const RESYNC: Duration = Duration::from_secs(30);

/// Kinds that change constantly and rarely have owners: not watched, and only scanned by
/// passes at least [`RESYNC`] apart.
fn noisy(rt: &ResourceType) -> bool {
    matches!(rt.plural, "events" | "leases")
}

/// One stored object of a snapshot.
#[derive(Debug, Clone)]
pub struct Item {
    /// Its kind.
    pub rt: &'static ResourceType,
    /// The object as the API shows it.
    pub obj: Value,
}

impl Item {
    fn uid(&self) -> &str {
        str_at(&self.obj, "/metadata/uid")
    }

    fn namespace(&self) -> Option<&str> {
        self.obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            rt: self.rt,
            namespace: self.namespace().map(String::from),
            name: name_of(&self.obj).to_string(),
            uid: self.uid().to_string(),
        }
    }
}

/// Which object an action is about.
#[derive(Debug, Clone)]
pub struct ObjectRef {
    /// Its kind.
    pub rt: &'static ResourceType,
    /// Its namespace (cluster-scoped: `None`).
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// Its uid (the action is void if the object was replaced).
    pub uid: String,
}

impl PartialEq for ObjectRef {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.rt, other.rt)
            && self.namespace == other.namespace
            && self.name == other.name
            && self.uid == other.uid
    }
}

/// An owner as a dependent sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    /// Gone (or replaced by another object of that name).
    Absent,
    /// Being deleted in the foreground: waiting for its dependents to go.
    Waiting,
    /// There and not deleting its dependents (an owner of a kind this server does not serve
    /// counts as there: nothing is collected on a guess).
    Solid,
}

/// What happens to one dependent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// No owner is left: delete it with this propagation.
    Delete(Propagation),
    /// Some owner is left: drop the references to owners in `remove` (gone, or orphaning) and
    /// clear `blockOwnerDeletion` on the references to owners in `unblock` (waiting for
    /// dependents this one will not follow).
    EditRefs {
        /// Owner uids whose references go.
        remove: Vec<String>,
        /// Owner uids whose references stop blocking.
        unblock: Vec<String>,
    },
}

/// One step of a pass.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Re-read the dependent and its owners, then apply what they call for (planned: this).
    Dependent(ObjectRef, Change),
    /// Remove a garbage-collector finalizer from an owner whose dependents are done.
    RemoveFinalizer(ObjectRef, &'static str),
}

/// One entry of `metadata.ownerReferences`.
#[derive(Debug, Clone)]
struct OwnerRef {
    api_version: String,
    kind: String,
    name: String,
    uid: String,
    block: bool,
}

fn owner_refs(obj: &Value) -> Vec<OwnerRef> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .map(|r| OwnerRef {
                    api_version: str_at(r, "/apiVersion").to_string(),
                    kind: str_at(r, "/kind").to_string(),
                    name: str_at(r, "/name").to_string(),
                    uid: str_at(r, "/uid").to_string(),
                    block: r.get("blockOwnerDeletion") == Some(&json!(true)),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The stored kind an ownerReference names (by group and kind), if this server serves it.
fn kind_of(r: &OwnerRef) -> Option<&'static ResourceType> {
    let group = match r.api_version.split_once('/') {
        Some((g, _)) => g,
        None => "",
    };
    resources::ALL
        .iter()
        .copied()
        .find(|rt| rt.stored() && rt.group == group && rt.kind == r.kind)
}

fn waiting_for_dependents(obj: &Value) -> bool {
    is_deleting(obj) && finalizers(obj).iter().any(|f| f == FINALIZER_FOREGROUND)
}

fn orphaning(obj: &Value) -> bool {
    is_deleting(obj) && finalizers(obj).iter().any(|f| f == FINALIZER_ORPHAN)
}

/// What a dependent needs, given how its owners stand (`owner` answers for each reference,
/// with whether that owner is orphaning its dependents) and whether it has dependents itself.
/// An object being deleted only loses its references to orphaning owners. `None` when
/// nothing changes.
fn decide(
    obj: &Value,
    mut owner: impl FnMut(&OwnerRef) -> (OwnerState, bool),
    has_dependents: bool,
) -> Option<Change> {
    let refs = owner_refs(obj);
    if refs.is_empty() {
        return None;
    }
    if is_deleting(obj) {
        let remove: Vec<String> = refs
            .iter()
            .filter(|r| owner(r) == (OwnerState::Solid, true))
            .map(|r| r.uid.clone())
            .collect();
        return (!remove.is_empty()).then_some(Change::EditRefs {
            remove,
            unblock: Vec::new(),
        });
    }
    let (mut solid, mut remove, mut unblock, mut waiting) = (0, Vec::new(), Vec::new(), 0);
    for r in &refs {
        match owner(r) {
            (OwnerState::Absent, _) => remove.push(r.uid.clone()),
            (OwnerState::Waiting, _) => {
                waiting += 1;
                if r.block {
                    unblock.push(r.uid.clone());
                }
            }
            (OwnerState::Solid, orphans) => {
                solid += 1;
                if orphans {
                    remove.push(r.uid.clone());
                }
            }
        }
    }
    if solid > 0 {
        if remove.is_empty() && unblock.is_empty() {
            return None;
        }
        return Some(Change::EditRefs { remove, unblock });
    }
    let own = finalizers(obj);
    let propagation = if waiting > 0 && has_dependents {
        Propagation::Foreground
    } else if own.iter().any(|f| f == FINALIZER_ORPHAN) {
        Propagation::Orphan
    } else if own.iter().any(|f| f == FINALIZER_FOREGROUND) {
        Propagation::Foreground
    } else {
        Propagation::Background
    };
    Some(Change::Delete(propagation))
}

/// How `owner` stands for a dependent in namespace `dep_ns` (`dep_rt` its kind), with
/// whether it orphans its dependents.
fn owner_state(
    dep_rt: &ResourceType,
    dep_ns: Option<&str>,
    r: &OwnerRef,
    found: Option<(&'static ResourceType, &Value)>,
) -> (OwnerState, bool) {
    let Some(rt) = kind_of(r) else {
        return (OwnerState::Solid, false);
    };
    if rt.namespaced && !dep_rt.namespaced {
        // A cluster-scoped object cannot be owned by a namespaced one: the reference is void.
        return (OwnerState::Absent, false);
    }
    let Some((found_rt, obj)) = found else {
        return (OwnerState::Absent, false);
    };
    let same_ns =
        !rt.namespaced || obj.pointer("/metadata/namespace").and_then(Value::as_str) == dep_ns;
    if !std::ptr::eq(found_rt, rt) || name_of(obj) != r.name || !same_ns {
        return (OwnerState::Absent, false);
    }
    if waiting_for_dependents(obj) {
        (OwnerState::Waiting, false)
    } else {
        (OwnerState::Solid, orphaning(obj))
    }
}

/// The actions one pass takes, from a snapshot of every stored object.
pub fn plan(items: &[Item]) -> Vec<Action> {
    let by_uid: HashMap<&str, &Item> = items.iter().map(|i| (i.uid(), i)).collect();
    // Owner uid → (dependent, blocks the owner's deletion).
    let mut dependents: HashMap<&str, Vec<(&Item, bool)>> = HashMap::new();
    for item in items {
        for r in item
            .obj
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let block = r.get("blockOwnerDeletion") == Some(&json!(true));
            dependents
                .entry(str_at(r, "/uid"))
                .or_default()
                .push((item, block));
        }
    }
    let mut actions = Vec::new();
    for item in items {
        let has_dependents = dependents.contains_key(item.uid());
        let change = decide(
            &item.obj,
            |r| {
                let found = by_uid.get(r.uid.as_str()).map(|o| (o.rt, &o.obj));
                owner_state(item.rt, item.namespace(), r, found)
            },
            has_dependents,
        );
        if let Some(c) = change {
            actions.push(Action::Dependent(item.object_ref(), c));
        }
    }
    for item in items.iter().filter(|i| is_deleting(&i.obj)) {
        let deps = dependents.get(item.uid()).map(Vec::as_slice).unwrap_or(&[]);
        if waiting_for_dependents(&item.obj) && !deps.iter().any(|(_, block)| *block) {
            actions.push(Action::RemoveFinalizer(
                item.object_ref(),
                FINALIZER_FOREGROUND,
            ));
        }
        if orphaning(&item.obj) && deps.is_empty() {
            actions.push(Action::RemoveFinalizer(item.object_ref(), FINALIZER_ORPHAN));
        }
    }
    actions
}

/// Every stored object, kind by kind (without the noisy kinds unless `all`).
async fn snapshot(client: &Client, all: bool) -> Result<Vec<Item>, ApiError> {
    let mut items = Vec::new();
    for rt in resources::ALL
        .iter()
        .copied()
        .filter(|r| r.stored() && (all || !noisy(r)))
    {
        let (list, _) = client.list(rt, None, "").await?;
        items.extend(list.into_iter().map(|obj| Item { rt, obj }));
    }
    Ok(items)
}

/// The live object `r` names, if it is still the same object (same uid).
async fn live(client: &Client, r: &ObjectRef) -> Result<Option<Value>, ApiError> {
    Ok(client
        .get(r.rt, r.namespace.as_deref(), &r.name)
        .await?
        .filter(|o| str_at(o, "/metadata/uid") == r.uid))
}

/// Re-reads a dependent and its owners and applies what they call for now.
async fn review(client: &Client, dep: &ObjectRef, has_dependents: bool) -> Result<(), ApiError> {
    let Some(obj) = live(client, dep).await? else {
        return Ok(());
    };
    let mut owners = HashMap::new();
    for r in owner_refs(&obj) {
        let Some(rt) = kind_of(&r) else { continue };
        let ns = if rt.namespaced {
            dep.namespace.as_deref()
        } else {
            None
        };
        if rt.namespaced && ns.is_none() {
            continue;
        }
        if let Some(o) = client.get(rt, ns, &r.name).await? {
            owners.insert(r.uid.clone(), (rt, o));
        }
    }
    let change = decide(
        &obj,
        |r| {
            let found = owners
                .get(&r.uid)
                .filter(|(_, o)| str_at(o, "/metadata/uid") == r.uid)
                .map(|(rt, o)| (*rt, o));
            owner_state(dep.rt, dep.namespace.as_deref(), r, found)
        },
        has_dependents,
    );
    match change {
        None => Ok(()),
        Some(Change::Delete(p)) => {
            tracing::info!(kind = dep.rt.kind, name = %dep.name, propagation = p.as_str(), "garbage collecting");
            let options =
                json!({"propagationPolicy": p.as_str(), "preconditions": {"uid": dep.uid}});
            match client
                .delete(dep.rt, dep.namespace.as_deref(), &dep.name, &options)
                .await
            {
                Err(e) if e.reason != "NotFound" => Err(e),
                _ => Ok(()),
            }
        }
        Some(Change::EditRefs { remove, unblock }) => {
            let mut obj = obj;
            let refs: Vec<Value> = obj
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|r| !remove.iter().any(|u| u == str_at(r, "/uid")))
                .map(|mut r| {
                    if unblock.iter().any(|u| u == str_at(&r, "/uid")) {
                        r["blockOwnerDeletion"] = json!(false);
                    }
                    r
                })
                .collect();
            if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                if refs.is_empty() {
                    meta.remove("ownerReferences");
                } else {
                    meta.insert("ownerReferences".into(), Value::Array(refs));
                }
            }
            tracing::info!(kind = dep.rt.kind, name = %dep.name, ?remove, ?unblock, "updating owner references");
            client.update(dep.rt, obj).await.map(|_| ())
        }
    }
}

/// Removes `finalizer` from the owner `r` (still the same object and still deleting).
async fn remove_finalizer(client: &Client, r: &ObjectRef, finalizer: &str) -> Result<(), ApiError> {
    let Some(mut obj) = live(client, r).await? else {
        return Ok(());
    };
    let list = finalizers(&obj);
    if !is_deleting(&obj) || !list.iter().any(|f| f == finalizer) {
        return Ok(());
    }
    let rest: Vec<String> = list.into_iter().filter(|f| f != finalizer).collect();
    set_finalizers(&mut obj, &rest);
    tracing::info!(kind = r.rt.kind, name = %r.name, finalizer, "dependents done: removing finalizer");
    match client.update(r.rt, obj).await {
        Err(e) if e.reason != "NotFound" => Err(e),
        _ => Ok(()),
    }
}

/// One pass: snapshot, plan, act (failures are logged; the next pass retries). `all`: include
/// the noisy kinds.
async fn sync(client: &Client, all: bool) -> anyhow::Result<()> {
    let items = snapshot(client, all)
        .await
        .map_err(|e| anyhow::anyhow!("listing objects: {}", e.message))?;
    let owners: HashSet<String> = items
        .iter()
        .flat_map(|i| owner_refs(&i.obj))
        .map(|r| r.uid)
        .collect();
    for action in plan(&items) {
        let result = match &action {
            Action::Dependent(dep, _) => review(client, dep, owners.contains(&dep.uid)).await,
            Action::RemoveFinalizer(owner, f) => remove_finalizer(client, owner, f).await,
        };
        if let Err(e) = result {
            tracing::debug!(?action, error = %e.message, "garbage collector: retrying later");
        }
    }
    Ok(())
}

/// Runs the garbage collector until aborted.
pub async fn run(client: Client) {
    let kinds: Vec<&'static ResourceType> = resources::ALL
        .iter()
        .copied()
        .filter(|r| r.stored() && !noisy(r))
        .collect();
    let mut last_full: Option<Instant> = None;
    run_loop(client, "garbage-collector", &kinds, RESYNC, move |c| {
        let all = last_full.is_none_or(|t| t.elapsed() >= RESYNC);
        if all {
            last_full = Some(Instant::now());
        }
        async move { sync(&c, all).await }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{configmaps, deployments, namespaces, pods, replicasets};

    fn item(rt: &'static ResourceType, name: &str, uid: &str, meta: Value) -> Item {
        let mut obj = json!({"metadata": {"name": name, "uid": uid}});
        if rt.namespaced {
            obj["metadata"]["namespace"] = json!("d");
        }
        for (k, v) in meta.as_object().cloned().unwrap_or_default() {
            obj["metadata"][k] = v;
        }
        Item { rt, obj }
    }

    fn owned_by(kind: &str, api: &str, name: &str, uid: &str, block: bool) -> Value {
        json!({"ownerReferences": [{"apiVersion": api, "kind": kind, "name": name, "uid": uid,
                                    "controller": true, "blockOwnerDeletion": block}]})
    }

    fn deleting(finalizer: &str) -> Value {
        json!({"deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": [finalizer]})
    }

    fn dependent_changes(actions: &[Action]) -> Vec<(String, Change)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Dependent(r, c) => Some((r.name.clone(), c.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn dependents_of_a_missing_owner_are_deleted_in_the_background() {
        let items = vec![
            item(
                &replicasets::TYPE,
                "rs",
                "u-rs",
                owned_by("Deployment", "apps/v1", "web", "u-gone", true),
            ),
            item(
                &pods::TYPE,
                "p",
                "u-p",
                owned_by("ReplicaSet", "apps/v1", "rs", "u-rs", true),
            ),
        ];
        assert_eq!(
            dependent_changes(&plan(&items)),
            vec![("rs".to_string(), Change::Delete(Propagation::Background))]
        );
    }

    #[test]
    fn a_replaced_owner_or_one_in_another_namespace_does_not_count() {
        let mut other_ns = item(&deployments::TYPE, "web", "u-web", json!({}));
        other_ns.obj["metadata"]["namespace"] = json!("elsewhere");
        let items = vec![
            other_ns,
            item(
                &replicasets::TYPE,
                "rs",
                "u-rs",
                owned_by("Deployment", "apps/v1", "web", "u-web", false),
            ),
            item(&deployments::TYPE, "api", "u-new", json!({})),
            item(
                &replicasets::TYPE,
                "rs2",
                "u-rs2",
                owned_by("Deployment", "apps/v1", "api", "u-old", false),
            ),
        ];
        let changes = dependent_changes(&plan(&items));
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(changes
            .iter()
            .all(|(_, c)| *c == Change::Delete(Propagation::Background)));
    }

    #[test]
    fn owners_of_unknown_kinds_are_never_guessed_away() {
        let items = vec![item(
            &configmaps::TYPE,
            "c",
            "u-c",
            owned_by("Widget", "example.com/v1", "w", "u-w", false),
        )];
        assert!(plan(&items).is_empty());
    }

    #[test]
    fn foreground_deletes_dependents_then_releases_the_owner() {
        let owner = item(
            &deployments::TYPE,
            "web",
            "u-web",
            deleting("foregroundDeletion"),
        );
        let rs = item(
            &replicasets::TYPE,
            "rs",
            "u-rs",
            owned_by("Deployment", "apps/v1", "web", "u-web", true),
        );
        let pod = item(
            &pods::TYPE,
            "p",
            "u-p",
            owned_by("ReplicaSet", "apps/v1", "rs", "u-rs", true),
        );
        // The ReplicaSet has dependents itself: deleted in the foreground too.
        let actions = plan(&[owner.clone(), rs.clone(), pod]);
        assert_eq!(
            dependent_changes(&actions),
            vec![("rs".to_string(), Change::Delete(Propagation::Foreground))]
        );
        assert!(!actions
            .iter()
            .any(|a| matches!(a, Action::RemoveFinalizer(..))));
        // A dependent without blockOwnerDeletion is deleted but not waited for.
        let loose = item(
            &replicasets::TYPE,
            "rs",
            "u-rs",
            owned_by("Deployment", "apps/v1", "web", "u-web", false),
        );
        let actions = plan(&[owner.clone(), loose]);
        assert_eq!(
            dependent_changes(&actions),
            vec![("rs".to_string(), Change::Delete(Propagation::Background))]
        );
        assert!(actions.contains(&Action::RemoveFinalizer(
            owner.object_ref(),
            FINALIZER_FOREGROUND
        )));
        // A blocking dependent being deleted still blocks; once gone, the finalizer goes.
        let mut going = rs.clone();
        going.obj["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        assert!(plan(&[owner.clone(), going]).is_empty());
        assert_eq!(
            plan(std::slice::from_ref(&owner)),
            vec![Action::RemoveFinalizer(
                owner.object_ref(),
                FINALIZER_FOREGROUND
            )]
        );
    }

    #[test]
    fn a_dependent_with_another_owner_stays_and_stops_blocking() {
        let owner = item(
            &deployments::TYPE,
            "web",
            "u-web",
            deleting("foregroundDeletion"),
        );
        let other = item(&namespaces::TYPE, "keep", "u-ns", json!({}));
        let mut cm = item(
            &configmaps::TYPE,
            "c",
            "u-c",
            owned_by("Deployment", "apps/v1", "web", "u-web", true),
        );
        cm.obj["metadata"]["ownerReferences"]
            .as_array_mut()
            .unwrap()
            .push(json!({"apiVersion": "v1", "kind": "Namespace", "name": "keep", "uid": "u-ns"}));
        assert_eq!(
            dependent_changes(&plan(&[owner, other, cm])),
            vec![(
                "c".to_string(),
                Change::EditRefs {
                    remove: vec![],
                    unblock: vec!["u-web".to_string()]
                }
            )]
        );
    }

    #[test]
    fn orphaning_removes_the_references_then_the_finalizer() {
        let owner = item(&deployments::TYPE, "web", "u-web", deleting("orphan"));
        let rs = item(
            &replicasets::TYPE,
            "rs",
            "u-rs",
            owned_by("Deployment", "apps/v1", "web", "u-web", true),
        );
        assert_eq!(
            plan(&[owner.clone(), rs]),
            vec![Action::Dependent(
                ObjectRef {
                    rt: &replicasets::TYPE,
                    namespace: Some("d".into()),
                    name: "rs".into(),
                    uid: "u-rs".into()
                },
                Change::EditRefs {
                    remove: vec!["u-web".to_string()],
                    unblock: vec![]
                }
            )]
        );
        assert_eq!(
            plan(std::slice::from_ref(&owner)),
            vec![Action::RemoveFinalizer(
                owner.object_ref(),
                FINALIZER_ORPHAN
            )]
        );
        // A dependent that is being deleted itself is orphaned too (it may wait long).
        let mut held = item(
            &configmaps::TYPE,
            "c",
            "u-c",
            owned_by("Deployment", "apps/v1", "web", "u-web", false),
        );
        held.obj["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        held.obj["metadata"]["finalizers"] = json!(["example.com/hold"]);
        assert_eq!(
            dependent_changes(&plan(&[owner, held])),
            vec![(
                "c".to_string(),
                Change::EditRefs {
                    remove: vec!["u-web".to_string()],
                    unblock: vec![]
                }
            )]
        );
    }

    mod live {
        use std::sync::Arc;

        use super::*;
        use crate::api::AppState;
        use crate::auth::MastersOnly;
        use crate::storage::memory::MemoryStore;

        async fn client() -> Client {
            let state = AppState::new(Arc::new(MemoryStore::new()), Arc::new(MastersOnly));
            crate::server::seed(&state).await.unwrap();
            Client::new(state, "test")
        }

        fn deployment(name: &str) -> Value {
            json!({"metadata": {"name": name, "namespace": "default"},
                   "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                            "template": {"metadata": {"labels": {"app": name}},
                                         "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
        }

        async fn owned_rs(c: &Client, owner: &Value, name: &str) -> Value {
            let mut rs = deployment(name);
            rs["metadata"]["ownerReferences"] = json!([{
                "apiVersion": "apps/v1", "kind": "Deployment", "name": name_of(owner),
                "uid": str_at(owner, "/metadata/uid"), "controller": true, "blockOwnerDeletion": true}]);
            c.create(&replicasets::TYPE, rs).await.unwrap()
        }

        async fn passes(c: &Client, n: usize) {
            for _ in 0..n {
                sync(c, true).await.unwrap();
            }
        }

        #[tokio::test]
        async fn background_foreground_and_orphan_deletion() {
            let c = client().await;
            let rs_of = |d: &str| format!("{d}-rs");
            for (d, policy) in [("bg", "Background"), ("fg", "Foreground"), ("or", "Orphan")] {
                let dep = c.create(&deployments::TYPE, deployment(d)).await.unwrap();
                owned_rs(&c, &dep, &rs_of(d)).await;
                let out = c
                    .delete(
                        &deployments::TYPE,
                        Some("default"),
                        d,
                        &json!({"propagationPolicy": policy}),
                    )
                    .await
                    .unwrap();
                assert_eq!(
                    out["kind"] == "Status",
                    policy == "Background",
                    "{policy}: {out}"
                );
            }
            passes(&c, 4).await;
            let get = |k: &'static ResourceType, n: String| {
                let c = c.clone();
                async move { c.get(k, Some("default"), &n).await.unwrap() }
            };
            assert!(get(&deployments::TYPE, "bg".into()).await.is_none());
            assert!(
                get(&replicasets::TYPE, rs_of("bg")).await.is_none(),
                "background: RS collected"
            );
            assert!(
                get(&deployments::TYPE, "fg".into()).await.is_none(),
                "foreground: owner released"
            );
            assert!(
                get(&replicasets::TYPE, rs_of("fg")).await.is_none(),
                "foreground: RS deleted"
            );
            assert!(
                get(&deployments::TYPE, "or".into()).await.is_none(),
                "orphan: owner released"
            );
            let orphan = get(&replicasets::TYPE, rs_of("or"))
                .await
                .expect("orphan: RS kept");
            assert!(
                orphan.pointer("/metadata/ownerReferences").is_none(),
                "{orphan}"
            );
        }
    }
}
