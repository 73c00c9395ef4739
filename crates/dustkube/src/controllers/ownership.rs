//! Controller references (`ownerReferences` with `controller: true`): which controller owns an
//! object, and the adopt/release decisions of Kubernetes' ControllerRefManager.

use serde_json::{json, Value};

use super::selector;
use crate::resources::str_at;

/// The ownerReference marked `controller: true`, if any.
pub fn controller_ref(obj: &Value) -> Option<&Value> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| r.get("controller") == Some(&json!(true)))
}

/// The uid of the controlling owner, if any.
pub fn controller_uid(obj: &Value) -> Option<&str> {
    controller_ref(obj)
        .and_then(|r| r.get("uid"))
        .and_then(Value::as_str)
}

/// Whether `obj` is controlled by `owner` (same uid).
pub fn is_controlled_by(obj: &Value, owner: &Value) -> bool {
    controller_uid(obj).is_some_and(|u| u == str_at(owner, "/metadata/uid"))
}

/// An ownerReference naming `owner` as the controller (blocking its foreground deletion).
pub fn owner_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": str_at(owner, "/apiVersion"),
        "kind": str_at(owner, "/kind"),
        "name": str_at(owner, "/metadata/name"),
        "uid": str_at(owner, "/metadata/uid"),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Whether the object is being deleted.
pub fn deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// What an owner should do about one candidate object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Controlled by the owner and matching its selector.
    Owned,
    /// An orphan matching the selector: take it (add a controller reference).
    Adopt,
    /// Controlled by the owner but no longer matching: let go (remove the reference).
    Release,
    /// Someone else's, or not matching.
    Ignore,
}

/// The ControllerRefManager decision for `obj` against `owner` with LabelSelector `sel`.
pub fn claim(owner: &Value, sel: Option<&Value>, obj: &Value) -> Claim {
    let matching = selector::matches(sel, obj);
    if is_controlled_by(obj, owner) {
        return if matching || deleting(owner) {
            // An owner being deleted keeps what it has (the garbage collector handles it).
            Claim::Owned
        } else {
            Claim::Release
        };
    }
    if controller_ref(obj).is_some() || !matching || deleting(owner) || deleting(obj) {
        return Claim::Ignore;
    }
    Claim::Adopt
}

/// `obj` with `owner` added as its controller.
pub fn adopted(obj: &Value, owner: &Value) -> Value {
    let mut o = obj.clone();
    let r = owner_ref(owner);
    match o
        .pointer_mut("/metadata/ownerReferences")
        .and_then(Value::as_array_mut)
    {
        Some(refs) => refs.push(r),
        None => o["metadata"]["ownerReferences"] = json!([r]),
    }
    o
}

/// `obj` without any ownerReference to `owner_uid`.
pub fn released(obj: &Value, owner_uid: &str) -> Value {
    let mut o = obj.clone();
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(refs) = meta
            .get_mut("ownerReferences")
            .and_then(Value::as_array_mut)
        {
            refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
            if refs.is_empty() {
                meta.remove("ownerReferences");
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
               "metadata": {"name": "web-1", "uid": "u1"},
               "spec": {"selector": {"matchLabels": {"app": "web"}}}})
    }

    #[test]
    fn adopt_own_release_ignore() {
        let owner = rs();
        let sel = owner.pointer("/spec/selector");
        let orphan = json!({"metadata": {"name": "p", "labels": {"app": "web"}}});
        assert_eq!(claim(&owner, sel, &orphan), Claim::Adopt);
        let mine = adopted(&orphan, &owner);
        assert_eq!(claim(&owner, sel, &mine), Claim::Owned);
        assert_eq!(
            controller_ref(&mine).unwrap()["blockOwnerDeletion"],
            json!(true)
        );
        let mut relabeled = mine.clone();
        relabeled["metadata"]["labels"]["app"] = json!("other");
        assert_eq!(claim(&owner, sel, &relabeled), Claim::Release);
        assert!(controller_ref(&released(&relabeled, "u1")).is_none());
        let mut foreign = orphan.clone();
        foreign["metadata"]["ownerReferences"] = json!([{"uid": "u2", "controller": true}]);
        assert_eq!(claim(&owner, sel, &foreign), Claim::Ignore);
        let mut dying = orphan.clone();
        dying["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        assert_eq!(claim(&owner, sel, &dying), Claim::Ignore);
    }
}
