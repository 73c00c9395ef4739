//! Deleting objects the way the Kubernetes API does: DeleteOptions (body or query),
//! preconditions, graceful deletion of pods bound to a node, finalizers (including the garbage
//! collector's `orphan` and `foregroundDeletion`, which the propagation policy adds), the
//! two-phase termination of namespaces, and removal once an update drops the last finalizer.
//!
//! [`delete`] is the one entry point (HTTP DELETE, deletecollection, eviction and the in-process
//! controllers all go through it); [`should_delete_during_update`] and [`new_finalizers_error`]
//! are the update side, used by [`super::objects::write_update`].

use std::collections::HashMap;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::objects::{fetch, for_storage, present, Target};
use super::status::{self, qualified, ApiError};
use super::AppState;
use crate::resources::{name_of, str_at, FieldError, ResourceType};
use crate::storage::{StoreError, Stored};

/// The garbage collector orphans the dependents of an object carrying this finalizer.
pub const FINALIZER_ORPHAN: &str = "orphan";
/// The garbage collector deletes the (blocking) dependents of an object carrying this
/// finalizer before the object itself goes.
pub const FINALIZER_FOREGROUND: &str = "foregroundDeletion";
/// The namespace controller's finalizer in a Namespace's `spec.finalizers`.
pub const FINALIZER_NAMESPACE: &str = "kubernetes";
/// Namespaces the API refuses to delete (the NamespaceLifecycle admission plugin's list).
pub const IMMORTAL_NAMESPACES: [&str; 3] = ["default", "kube-system", "kube-public"];

/// How dependents are treated when their owner is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Dependents stay, their ownerReferences to the owner are removed (`orphan` finalizer).
    Orphan,
    /// The owner goes at once; the garbage collector deletes the dependents afterwards.
    Background,
    /// Dependents go first (`foregroundDeletion` finalizer on the owner), then the owner.
    Foreground,
}

impl Propagation {
    /// The API spelling (`Orphan`, `Background`, `Foreground`).
    pub fn as_str(self) -> &'static str {
        match self {
            Propagation::Orphan => "Orphan",
            Propagation::Background => "Background",
            Propagation::Foreground => "Foreground",
        }
    }
}

/// `meta/v1` DeleteOptions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds` (pods: seconds before the node agent removes them; 0: at once).
    pub grace_period_seconds: Option<i64>,
    /// `propagationPolicy`.
    pub propagation: Option<Propagation>,
    /// `orphanDependents` (deprecated form of the policy).
    pub orphan_dependents: Option<bool>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun: ["All"]`: everything is checked, nothing written.
    pub dry_run: bool,
}

fn invalid_options(field: &str, message: String) -> ApiError {
    ApiError {
        code: 422,
        reason: "Invalid",
        message: format!("DeleteOptions.meta.k8s.io \"\" is invalid: {field}: {message}"),
        details: Some(json!({
            "group": "meta.k8s.io",
            "kind": "DeleteOptions",
            "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field}],
        })),
    }
}

impl DeleteOptions {
    /// Reads DeleteOptions from their JSON form (`{}` for the defaults).
    pub fn from_json(v: &Value) -> Result<DeleteOptions, ApiError> {
        if !(v.is_object() || v.is_null()) {
            return Err(ApiError::bad_request("DeleteOptions must be a JSON object"));
        }
        let grace = match v.get("gracePeriodSeconds") {
            None | Some(Value::Null) => None,
            Some(g) => Some(
                g.as_i64()
                    .or_else(|| g.as_str().and_then(|s| s.parse().ok()))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!("invalid gracePeriodSeconds {g}"))
                    })?,
            ),
        };
        let orphan = match v.get("orphanDependents") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::String(s)) if s == "true" || s == "false" => Some(s == "true"),
            Some(o) => {
                return Err(ApiError::bad_request(format!(
                    "invalid orphanDependents {o}"
                )))
            }
        };
        let propagation = match v.get("propagationPolicy") {
            None | Some(Value::Null) => None,
            Some(p) => {
                let s = p.as_str().unwrap_or_default();
                Some(match s {
                    "Orphan" => Propagation::Orphan,
                    "Background" => Propagation::Background,
                    "Foreground" => Propagation::Foreground,
                    other => {
                        return Err(invalid_options(
                            "propagationPolicy",
                            format!("Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""),
                        ))
                    }
                })
            }
        };
        if orphan.is_some() && propagation.is_some() {
            return Err(invalid_options(
                "propagationPolicy",
                format!(
                    "Invalid value: \"{}\": orphanDependents and deletionPropagation cannot be both set",
                    propagation.map(Propagation::as_str).unwrap_or_default()
                ),
            ));
        }
        let pre = |k: &str| {
            v.pointer(&format!("/preconditions/{k}"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(String::from)
        };
        let dry_run = match v.get("dryRun") {
            Some(Value::Array(a)) => a.iter().any(|x| x == "All"),
            Some(Value::String(s)) => s == "All",
            _ => false,
        };
        Ok(DeleteOptions {
            grace_period_seconds: grace,
            propagation,
            orphan_dependents: orphan,
            uid: pre("uid"),
            resource_version: pre("resourceVersion"),
            dry_run,
        })
    }

    /// DeleteOptions of an HTTP DELETE: the JSON body, overridden by the query parameters
    /// (`gracePeriodSeconds`, `propagationPolicy`, `orphanDependents`, `dryRun=All`).
    pub fn from_request(
        body: &[u8],
        params: &HashMap<String, String>,
    ) -> Result<DeleteOptions, ApiError> {
        let mut v: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(format!("the DeleteOptions body is not valid JSON: {e}"))
            })?
        };
        if !v.is_object() {
            return Err(ApiError::bad_request("DeleteOptions must be a JSON object"));
        }
        for key in [
            "gracePeriodSeconds",
            "propagationPolicy",
            "orphanDependents",
        ] {
            if let Some(p) = params.get(key) {
                v[key] = json!(p);
            }
        }
        if params.get("dryRun").is_some_and(|d| d == "All") {
            v["dryRun"] = json!(["All"]);
        }
        DeleteOptions::from_json(&v)
    }
}

/// What a delete did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The API's answer: the object (while it waits for finalizers or its grace period, or
    /// for kinds whose DELETE returns the deleted object) or a success Status.
    pub response: Value,
    /// Whether the object left the store (with dry-run: would have).
    pub removed: bool,
}

impl Outcome {
    /// The HTTP status of the answer: 202 when the object stays and the caller asked for
    /// `orphanDependents: false`, like the real API; 200 otherwise.
    pub fn http_code(&self, opts: &DeleteOptions) -> u16 {
        if !self.removed && opts.orphan_dependents == Some(false) {
            202
        } else {
            200
        }
    }
}

/// Kinds whose DELETE answers with the deleted object instead of a Status (the registries with
/// `ReturnDeletedObject`).
pub fn returns_deleted_object(rt: &ResourceType) -> bool {
    rt.group.is_empty()
        && matches!(
            rt.plural,
            "pods" | "services" | "serviceaccounts" | "namespaces"
        )
}

fn finished(rt: &ResourceType, obj: &Value) -> Value {
    if returns_deleted_object(rt) {
        obj.clone()
    } else {
        status::success(rt, name_of(obj), str_at(obj, "/metadata/uid"))
    }
}

/// `metadata.finalizers` as strings.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Sets `metadata.finalizers` (removed when empty, as the API omits it).
pub fn set_finalizers(obj: &mut Value, list: &[String]) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("finalizers");
        } else {
            meta.insert("finalizers".into(), json!(list));
        }
    }
}

/// Whether the object has a `metadata.deletionTimestamp`.
pub fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

fn should_orphan(current: &[String], opts: &DeleteOptions) -> bool {
    if let Some(o) = opts.orphan_dependents {
        return o;
    }
    if let Some(p) = opts.propagation {
        return p == Propagation::Orphan;
    }
    for f in current {
        match f.as_str() {
            FINALIZER_ORPHAN => return true,
            FINALIZER_FOREGROUND => return false,
            _ => {}
        }
    }
    // Every kind served here defaults to deleting dependents (in the background).
    false
}

fn should_delete_dependents(current: &[String], opts: &DeleteOptions) -> bool {
    if opts.orphan_dependents.is_some() {
        return false;
    }
    if let Some(p) = opts.propagation {
        return p == Propagation::Foreground;
    }
    for f in current {
        match f.as_str() {
            FINALIZER_FOREGROUND => return true,
            FINALIZER_ORPHAN => return false,
            _ => {}
        }
    }
    false
}

/// The finalizers an object gets when deleted with `opts`: the garbage collector's `orphan` /
/// `foregroundDeletion` set by the propagation policy, the others kept (the current list when
/// nothing changes).
pub fn gc_finalizers(current: &[String], opts: &DeleteOptions) -> Vec<String> {
    let mut out: Vec<String> = current
        .iter()
        .filter(|f| *f != FINALIZER_ORPHAN && *f != FINALIZER_FOREGROUND)
        .cloned()
        .collect();
    if should_orphan(current, opts) {
        out.push(FINALIZER_ORPHAN.into());
    }
    if should_delete_dependents(current, opts) {
        out.push(FINALIZER_FOREGROUND.into());
    }
    if same_set(&out, current) {
        current.to_vec()
    } else {
        out
    }
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.iter().all(|x| b.contains(x)) && b.iter().all(|x| a.contains(x))
}

fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// What [`before_delete`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grace {
    /// The kind has no graceful deletion (or it is over): delete now, unless finalizers wait.
    None,
    /// A graceful deletion is already running and the request does not shorten it.
    Pending,
    /// The object gets (or keeps, shortened) a graceful deletion of this many seconds.
    Graceful(i64),
}

/// `rest.BeforeDelete` with the pod strategy: stamps `deletionTimestamp` (now + grace) and
/// `deletionGracePeriodSeconds` on a pod bound to a node (grace from the options, else the
/// pod's `terminationGracePeriodSeconds`; 0 for unbound or finished pods), or shortens a
/// running graceful deletion. Sets `opts.grace_period_seconds` to the grace used.
pub fn before_delete(
    rt: &ResourceType,
    obj: &mut Value,
    opts: &mut DeleteOptions,
    now: DateTime<Utc>,
) -> Grace {
    if opts.grace_period_seconds.is_some_and(|g| g < 0) {
        opts.grace_period_seconds = Some(1);
    }
    if obj
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|g| g < 0)
    {
        obj["metadata"]["deletionGracePeriodSeconds"] = json!(1);
    }
    if !(rt.group.is_empty() && rt.plural == "pods") {
        return Grace::None;
    }
    if is_deleting(obj) {
        let current = obj
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if current == 0 {
            return Grace::None;
        }
        let Some(period) = opts.grace_period_seconds else {
            opts.grace_period_seconds = Some(current);
            return Grace::Pending;
        };
        if period >= current {
            return Grace::Pending;
        }
        let ts = parse_time(str_at(obj, "/metadata/deletionTimestamp")).unwrap_or(now);
        let shortened = ts - Duration::seconds(current) + Duration::seconds(period);
        obj["metadata"]["deletionTimestamp"] = json!(timestamp(shortened));
        obj["metadata"]["deletionGracePeriodSeconds"] = json!(period);
        return Grace::Graceful(period);
    }
    let mut period = opts.grace_period_seconds.unwrap_or_else(|| {
        obj.pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    });
    if str_at(obj, "/spec/nodeName").is_empty() {
        period = 0;
    }
    if matches!(str_at(obj, "/status/phase"), "Succeeded" | "Failed") {
        period = 0;
    }
    opts.grace_period_seconds = Some(period);
    obj["metadata"]["deletionTimestamp"] = json!(timestamp(now + Duration::seconds(period)));
    obj["metadata"]["deletionGracePeriodSeconds"] = json!(period);
    bump_generation(obj);
    Grace::Graceful(period)
}

fn bump_generation(obj: &mut Value) {
    if let Some(g) = obj
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .filter(|g| *g > 0)
    {
        obj["metadata"]["generation"] = json!(g + 1);
    }
}

/// Marks an object without graceful deletion as being deleted (it waits for finalizers):
/// `deletionTimestamp` now (kept when earlier), `deletionGracePeriodSeconds` 0.
pub fn mark_as_deleting(obj: &mut Value, now: DateTime<Utc>) {
    let existing = parse_time(str_at(obj, "/metadata/deletionTimestamp"));
    if existing.is_none() {
        bump_generation(obj);
    }
    if existing.is_none_or(|t| t > now) {
        obj["metadata"]["deletionTimestamp"] = json!(timestamp(now));
    }
    obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
}

/// Whether an update (`new` replacing `old`) removes the object: it is being deleted, has no
/// grace period running, and the update leaves no finalizers (for namespaces also no
/// `spec.finalizers`).
pub fn should_delete_during_update(rt: &ResourceType, old: &Value, new: &Value) -> bool {
    if !finalizers(new).is_empty() || !is_deleting(old) {
        return false;
    }
    if rt.group.is_empty()
        && rt.plural == "namespaces"
        && new
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    {
        return false;
    }
    old.pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        == 0
}

/// The validation error for an update that adds finalizers to an object being deleted.
pub fn new_finalizers_error(old: &Value, new: &Value) -> Option<FieldError> {
    if !is_deleting(old) {
        return None;
    }
    let before = finalizers(old);
    let added: Vec<String> = finalizers(new)
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    if added.is_empty() {
        return None;
    }
    let quoted: Vec<String> = added.iter().map(|f| format!("{f:?}")).collect();
    Some(FieldError {
        field: "metadata.finalizers".into(),
        reason: "FieldValueForbidden",
        message: format!(
            "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
            quoted.join(", ")
        ),
    })
}

/// A 409 Conflict with the API's "Operation cannot be fulfilled" wording and a reason.
pub fn conflict_because(resource: &str, name: &str, why: &str) -> ApiError {
    ApiError {
        code: 409,
        reason: "Conflict",
        message: format!("Operation cannot be fulfilled on {resource} \"{name}\": {why}"),
        details: Some(json!({"name": name, "kind": resource})),
    }
}

fn check_preconditions(
    rt: &ResourceType,
    old: &Stored,
    opts: &DeleteOptions,
) -> Result<(), ApiError> {
    let name = name_of(&old.value);
    let uid = str_at(&old.value, "/metadata/uid");
    if let Some(want) = &opts.uid {
        if want != uid {
            return Err(conflict_because(
                &qualified(rt),
                name,
                &format!(
                    "Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"
                ),
            ));
        }
    }
    if let Some(want) = &opts.resource_version {
        let rv = old.revision.to_string();
        if *want != rv {
            return Err(conflict_because(
                &qualified(rt),
                name,
                &format!("Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rv}"),
            ));
        }
    }
    Ok(())
}

/// One try: `Ok(None)` asks for another after a write conflict.
type Attempt = Result<Option<Outcome>, ApiError>;

/// Writes `obj` over `old` (optimistic), answering the presented result.
async fn write(
    state: &AppState,
    rt: &'static ResourceType,
    old: &Stored,
    obj: Value,
    dry: bool,
) -> Result<Option<Value>, ApiError> {
    let current = present(rt, old);
    if obj == current {
        // Nothing changes (a repeated delete): no write, no watch event, like etcd3's store.
        return Ok(Some(current));
    }
    if dry {
        let mut v = obj;
        v["metadata"]["resourceVersion"] = json!(old.revision.to_string());
        return Ok(Some(v));
    }
    match state
        .store
        .update(&old.key, &for_storage(&obj), Some(old.revision))
        .await
    {
        Ok(revision) => Ok(Some(present(
            rt,
            &Stored {
                key: old.key.clone(),
                value: obj,
                revision,
            },
        ))),
        Err(StoreError::Conflict { .. }) => Ok(None),
        Err(e) => Err(ApiError::from_store(e, rt, name_of(&old.value))),
    }
}

/// The generic registry's delete (`Store.Delete`): graceful deletion, finalizers, removal.
async fn delete_generic(
    state: &AppState,
    rt: &'static ResourceType,
    old: &Stored,
    mut opts: DeleteOptions,
) -> Attempt {
    let now = Utc::now();
    let current = present(rt, old);
    let mut obj = current.clone();
    let grace = before_delete(rt, &mut obj, &mut opts, now);
    if grace == Grace::Pending {
        // Finalizers cannot change through DeleteOptions once a deletion is pending.
        return Ok(Some(Outcome {
            response: finished(rt, &current),
            removed: false,
        }));
    }
    let existing = finalizers(&obj);
    let wanted = gc_finalizers(&existing, &opts);
    let mut updated = None;
    if grace != Grace::None || !existing.is_empty() || wanted != existing {
        set_finalizers(&mut obj, &wanted);
        let pending = !wanted.is_empty();
        match grace {
            Grace::None if pending => {
                mark_as_deleting(&mut obj, now);
                let Some(out) = write(state, rt, old, obj, opts.dry_run).await? else {
                    return Ok(None);
                };
                return Ok(Some(Outcome {
                    response: out,
                    removed: false,
                }));
            }
            Grace::None => {}
            _ => {
                let Some(out) = write(state, rt, old, obj, opts.dry_run).await? else {
                    return Ok(None);
                };
                if pending || opts.grace_period_seconds.unwrap_or(0) > 0 {
                    return Ok(Some(Outcome {
                        response: out,
                        removed: false,
                    }));
                }
                updated = Some(out);
            }
        }
    }
    if opts.dry_run {
        let last = updated.unwrap_or(current);
        return Ok(Some(Outcome {
            response: finished(rt, &last),
            removed: true,
        }));
    }
    let expected = match &updated {
        Some(u) => str_at(u, "/metadata/resourceVersion").parse().ok(),
        None => Some(old.revision),
    };
    match state.store.delete(&old.key, expected).await {
        Ok(stored) => {
            tracing::info!(kind = rt.kind, name = name_of(&stored.value), "deleted");
            Ok(Some(Outcome {
                response: finished(rt, &present(rt, &stored)),
                removed: true,
            }))
        }
        // Someone else removed it after our update (the node agent, a finalizer): done.
        Err(StoreError::NotFound(_)) if updated.is_some() => Ok(Some(Outcome {
            response: finished(rt, updated.as_ref().unwrap_or(&current)),
            removed: true,
        })),
        Err(StoreError::Conflict { .. }) => Ok(None),
        Err(e) => Err(ApiError::from_store(e, rt, name_of(&old.value))),
    }
}

/// A namespace's delete: the first request only starts termination (`Terminating`,
/// deletionTimestamp, GC finalizers per the options); the namespace controller empties it and
/// removes `kubernetes` from `spec.finalizers`; a later delete (or that finalize) removes it.
async fn delete_namespace(
    state: &AppState,
    rt: &'static ResourceType,
    old: &Stored,
    opts: DeleteOptions,
) -> Attempt {
    let current = present(rt, old);
    if !is_deleting(&current) {
        let mut obj = current.clone();
        obj["metadata"]["deletionTimestamp"] = json!(timestamp(Utc::now()));
        obj["status"]["phase"] = json!("Terminating");
        let have = finalizers(&obj);
        let has = |f: &str| have.iter().any(|x| x == f);
        let orphan = match (opts.orphan_dependents, opts.propagation) {
            (Some(o), _) => o,
            (None, Some(p)) => p == Propagation::Orphan,
            (None, None) => has(FINALIZER_ORPHAN),
        };
        let foreground = match (opts.orphan_dependents, opts.propagation) {
            (Some(o), _) => !o,
            (None, Some(p)) => p == Propagation::Foreground,
            (None, None) => has(FINALIZER_FOREGROUND),
        };
        let mut list: Vec<String> = have
            .iter()
            .filter(|f| *f != FINALIZER_ORPHAN && *f != FINALIZER_FOREGROUND)
            .cloned()
            .collect();
        if orphan {
            list.push(FINALIZER_ORPHAN.into());
        }
        if foreground {
            list.push(FINALIZER_FOREGROUND.into());
        }
        if !same_set(&list, &have) {
            set_finalizers(&mut obj, &list);
        }
        let Some(out) = write(state, rt, old, obj, opts.dry_run).await? else {
            return Ok(None);
        };
        tracing::info!(namespace = name_of(&out), "namespace terminating");
        return Ok(Some(Outcome {
            response: out,
            removed: false,
        }));
    }
    let spec_finalizers = current
        .pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if spec_finalizers {
        return Ok(Some(Outcome {
            response: current,
            removed: false,
        }));
    }
    delete_generic(state, rt, old, opts).await
}

/// Deletes the object `t` names with `opts`, as the real API does: preconditions, namespaces'
/// termination, graceful deletion of bound pods, finalizers. Write conflicts are retried.
pub async fn delete(
    state: &AppState,
    t: &Target,
    opts: &DeleteOptions,
) -> Result<Outcome, ApiError> {
    let name = t.name.as_deref().unwrap_or("");
    let is_namespace = t.rt.group.is_empty() && t.rt.plural == "namespaces";
    if is_namespace && IMMORTAL_NAMESPACES.contains(&name) {
        return Err(ApiError::forbidden_message(format!(
            "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
        )));
    }
    for _ in 0..8 {
        let old = fetch(state, t).await?;
        check_preconditions(t.rt, &old, opts)?;
        let attempt = if is_namespace {
            delete_namespace(state, t.rt, &old, opts.clone()).await?
        } else {
            delete_generic(state, t.rt, &old, opts.clone()).await?
        };
        if let Some(outcome) = attempt {
            return Ok(outcome);
        }
    }
    Err(ApiError::conflict(t.rt, name))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::api::objects::{create_object, write_update};
    use crate::auth::MastersOnly;
    use crate::resources::{configmaps, namespaces, pods};
    use crate::storage::memory::MemoryStore;

    fn opts(v: Value) -> DeleteOptions {
        DeleteOptions::from_json(&v).unwrap()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_from_body_and_query() {
        let mut q = HashMap::new();
        q.insert("gracePeriodSeconds".to_string(), "0".to_string());
        q.insert("dryRun".to_string(), "All".to_string());
        let o = DeleteOptions::from_request(
            br#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Foreground","gracePeriodSeconds":30,"preconditions":{"uid":"u1"}}"#,
            &q,
        )
        .unwrap();
        assert_eq!(o.grace_period_seconds, Some(0));
        assert_eq!(o.propagation, Some(Propagation::Foreground));
        assert_eq!(o.uid.as_deref(), Some("u1"));
        assert!(o.dry_run);
        assert_eq!(
            DeleteOptions::from_request(b"", &HashMap::new()).unwrap(),
            DeleteOptions::default()
        );
        let e = DeleteOptions::from_json(&json!({"propagationPolicy": "Sometimes"})).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(
            e.message.contains("Unsupported value: \"Sometimes\""),
            "{}",
            e.message
        );
        let e = DeleteOptions::from_json(
            &json!({"propagationPolicy": "Orphan", "orphanDependents": true}),
        )
        .unwrap_err();
        assert!(e.message.contains("cannot be both set"), "{}", e.message);
    }

    #[test]
    fn propagation_sets_the_gc_finalizers() {
        let none: Vec<String> = Vec::new();
        assert_eq!(gc_finalizers(&none, &opts(json!({}))), none);
        assert_eq!(
            gc_finalizers(&none, &opts(json!({"propagationPolicy": "Background"}))),
            none
        );
        assert_eq!(
            gc_finalizers(&none, &opts(json!({"propagationPolicy": "Foreground"}))),
            strings(&["foregroundDeletion"])
        );
        assert_eq!(
            gc_finalizers(
                &strings(&["x/y"]),
                &opts(json!({"propagationPolicy": "Orphan"}))
            ),
            strings(&["x/y", "orphan"])
        );
        assert_eq!(
            gc_finalizers(&none, &opts(json!({"orphanDependents": true}))),
            strings(&["orphan"])
        );
        // orphanDependents=false means background, and drops an orphan finalizer.
        assert_eq!(
            gc_finalizers(
                &strings(&["orphan"]),
                &opts(json!({"orphanDependents": false}))
            ),
            none
        );
        // Without a policy, an existing GC finalizer is kept.
        assert_eq!(
            gc_finalizers(&strings(&["orphan", "a"]), &opts(json!({}))),
            strings(&["orphan", "a"])
        );
    }

    fn pod(node: &str) -> Value {
        json!({"metadata": {"name": "p", "namespace": "d"},
               "spec": {"nodeName": node, "terminationGracePeriodSeconds": 30, "containers": []},
               "status": {"phase": "Running"}})
    }

    #[test]
    fn bound_pods_get_a_grace_period_that_can_only_shrink() {
        let now = Utc::now();
        let mut o = DeleteOptions::default();
        let mut p = pod("n1");
        assert_eq!(
            before_delete(&pods::TYPE, &mut p, &mut o, now),
            Grace::Graceful(30)
        );
        assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 30);
        assert_eq!(
            parse_time(str_at(&p, "/metadata/deletionTimestamp")).unwrap(),
            parse_time(&timestamp(now + Duration::seconds(30))).unwrap()
        );
        // A second delete without a shorter grace: pending; with 0: shortened to now.
        let mut o = DeleteOptions::default();
        assert_eq!(
            before_delete(&pods::TYPE, &mut p, &mut o, now),
            Grace::Pending
        );
        let mut o = opts(json!({"gracePeriodSeconds": 40}));
        assert_eq!(
            before_delete(&pods::TYPE, &mut p, &mut o, now),
            Grace::Pending
        );
        let mut o = opts(json!({"gracePeriodSeconds": 0}));
        assert_eq!(
            before_delete(&pods::TYPE, &mut p, &mut o, now),
            Grace::Graceful(0)
        );
        assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 0);
        assert_eq!(str_at(&p, "/metadata/deletionTimestamp"), timestamp(now));
        // Unbound and finished pods: no grace; other kinds: not graceful at all.
        let mut o = DeleteOptions::default();
        assert_eq!(
            before_delete(&pods::TYPE, &mut pod(""), &mut o, now),
            Grace::Graceful(0)
        );
        let mut done = pod("n1");
        done["status"]["phase"] = json!("Succeeded");
        let mut o = DeleteOptions::default();
        assert_eq!(
            before_delete(&pods::TYPE, &mut done, &mut o, now),
            Grace::Graceful(0)
        );
        let mut cm = json!({"metadata": {"name": "c"}});
        let mut o = DeleteOptions::default();
        assert_eq!(
            before_delete(&configmaps::TYPE, &mut cm, &mut o, now),
            Grace::None
        );
        assert!(!is_deleting(&cm));
    }

    #[test]
    fn finalizer_removal_deletes_only_objects_without_grace() {
        let deleting = json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z",
                                           "deletionGracePeriodSeconds": 0, "finalizers": ["a"]}});
        let cleared = json!({"metadata": {}});
        assert!(should_delete_during_update(
            &configmaps::TYPE,
            &deleting,
            &cleared
        ));
        assert!(!should_delete_during_update(
            &configmaps::TYPE,
            &deleting,
            &deleting
        ));
        let live = json!({"metadata": {"finalizers": ["a"]}});
        assert!(!should_delete_during_update(
            &configmaps::TYPE,
            &live,
            &cleared
        ));
        let mut graceful = deleting.clone();
        graceful["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        assert!(!should_delete_during_update(
            &pods::TYPE,
            &graceful,
            &cleared
        ));
        let ns_left = json!({"metadata": {}, "spec": {"finalizers": ["kubernetes"]}});
        assert!(!should_delete_during_update(
            &namespaces::TYPE,
            &deleting,
            &ns_left
        ));
        let err = new_finalizers_error(&deleting, &json!({"metadata": {"finalizers": ["a", "b"]}}))
            .unwrap();
        assert_eq!(
            err.message,
            "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"b\"}"
        );
        assert!(
            new_finalizers_error(&live, &json!({"metadata": {"finalizers": ["a", "b"]}})).is_none()
        );
    }

    async fn state() -> AppState {
        let state = AppState::new(Arc::new(MemoryStore::new()), Arc::new(MastersOnly));
        crate::server::seed(&state).await.unwrap();
        state
    }

    fn target(rt: &'static ResourceType, ns: Option<&str>, name: &str) -> Target {
        Target {
            rt,
            namespace: ns.map(String::from),
            name: Some(name.into()),
            sub: None,
        }
    }

    #[tokio::test]
    async fn finalizers_hold_an_object_until_an_update_removes_them() {
        let s = state().await;
        let cm = json!({"metadata": {"name": "c", "finalizers": ["example.com/keep"]}});
        create_object(&s, &configmaps::TYPE, Some("default"), cm, false)
            .await
            .unwrap();
        let t = target(&configmaps::TYPE, Some("default"), "c");
        let out = delete(&s, &t, &DeleteOptions::default()).await.unwrap();
        assert!(!out.removed);
        assert_eq!(out.response["kind"], "ConfigMap");
        assert!(is_deleting(&out.response));
        assert_eq!(out.response["metadata"]["deletionGracePeriodSeconds"], 0);
        // Deleting again changes nothing (no write: same resourceVersion).
        let again = delete(&s, &t, &DeleteOptions::default()).await.unwrap();
        assert_eq!(again, out);
        // Adding a finalizer now is refused; removing the last one removes the object.
        let old = fetch(&s, &t).await.unwrap();
        let mut more = present(&configmaps::TYPE, &old);
        more["metadata"]["finalizers"] = json!(["example.com/keep", "other"]);
        let e = write_update(&s, &t, &old, more, None, false)
            .await
            .unwrap_err();
        assert_eq!(e.code, 422, "{}", e.message);
        let mut none = present(&configmaps::TYPE, &old);
        none["metadata"]["finalizers"] = json!([]);
        write_update(&s, &t, &old, none, None, false).await.unwrap();
        assert_eq!(fetch(&s, &t).await.unwrap_err().code, 404);
    }

    #[tokio::test]
    async fn deletes_answer_like_the_real_api() {
        let s = state().await;
        create_object(
            &s,
            &configmaps::TYPE,
            Some("default"),
            json!({"metadata": {"name": "c"}}),
            false,
        )
        .await
        .unwrap();
        let t = target(&configmaps::TYPE, Some("default"), "c");
        // Preconditions.
        let e = delete(&s, &t, &opts(json!({"preconditions": {"uid": "nope"}})))
            .await
            .unwrap_err();
        assert_eq!(e.code, 409);
        assert!(
            e.message
                .contains("Precondition failed: UID in precondition: nope"),
            "{}",
            e.message
        );
        // Dry run changes nothing.
        let out = delete(&s, &t, &opts(json!({"dryRun": ["All"]})))
            .await
            .unwrap();
        assert!(out.removed);
        assert!(fetch(&s, &t).await.is_ok());
        // Foreground: the object stays with the finalizer; 202 only with orphanDependents=false.
        let fg = opts(json!({"propagationPolicy": "Foreground"}));
        let out = delete(&s, &t, &fg).await.unwrap();
        assert_eq!(finalizers(&out.response), strings(&["foregroundDeletion"]));
        assert_eq!(out.http_code(&fg), 200);
        assert_eq!(
            out.http_code(&opts(json!({"orphanDependents": false}))),
            202
        );
        // A ConfigMap without finalizers answers a Status; a pod answers the pod.
        create_object(
            &s,
            &configmaps::TYPE,
            Some("default"),
            json!({"metadata": {"name": "d"}}),
            false,
        )
        .await
        .unwrap();
        let out = delete(
            &s,
            &target(&configmaps::TYPE, Some("default"), "d"),
            &DeleteOptions::default(),
        )
        .await
        .unwrap();
        assert!(out.removed);
        assert_eq!(out.response["kind"], "Status");
        assert_eq!(out.response["details"]["name"], "d");
        let p = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        create_object(&s, &pods::TYPE, Some("default"), p, false)
            .await
            .unwrap();
        let out = delete(
            &s,
            &target(&pods::TYPE, Some("default"), "p"),
            &DeleteOptions::default(),
        )
        .await
        .unwrap();
        assert!(out.removed, "an unbound pod goes at once");
        assert_eq!(out.response["kind"], "Pod");
        // Immortal namespaces.
        let e = delete(
            &s,
            &target(&namespaces::TYPE, None, "default"),
            &DeleteOptions::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code, 403);
    }

    #[tokio::test]
    async fn bound_pods_wait_for_the_node_agent() {
        let s = state().await;
        let p = json!({"metadata": {"name": "p"},
                       "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}});
        create_object(&s, &pods::TYPE, Some("default"), p, false)
            .await
            .unwrap();
        let t = target(&pods::TYPE, Some("default"), "p");
        let out = delete(&s, &t, &DeleteOptions::default()).await.unwrap();
        assert!(!out.removed);
        assert_eq!(out.response["metadata"]["deletionGracePeriodSeconds"], 30);
        // Again: pending, nothing changes.
        let again = delete(&s, &t, &DeleteOptions::default()).await.unwrap();
        assert_eq!(
            again.response["metadata"]["deletionTimestamp"],
            out.response["metadata"]["deletionTimestamp"]
        );
        // The agent's final delete.
        let out = delete(&s, &t, &opts(json!({"gracePeriodSeconds": 0})))
            .await
            .unwrap();
        assert!(out.removed);
        assert_eq!(fetch(&s, &t).await.unwrap_err().code, 404);
    }

    #[tokio::test]
    async fn namespaces_terminate_in_two_phases() {
        let s = state().await;
        create_object(
            &s,
            &namespaces::TYPE,
            None,
            json!({"metadata": {"name": "gone"}}),
            false,
        )
        .await
        .unwrap();
        let t = target(&namespaces::TYPE, None, "gone");
        let out = delete(&s, &t, &DeleteOptions::default()).await.unwrap();
        assert!(!out.removed);
        assert_eq!(out.response["status"]["phase"], "Terminating");
        assert_eq!(out.response["spec"]["finalizers"], json!(["kubernetes"]));
        // New content is refused while it terminates.
        let e = create_object(
            &s,
            &configmaps::TYPE,
            Some("gone"),
            json!({"metadata": {"name": "c"}}),
            false,
        )
        .await
        .unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "configmaps \"c\" is forbidden: unable to create new content in namespace gone because it is being terminated"
        );
        // Still there while spec.finalizers is not empty; finalize removes it.
        assert!(
            !delete(&s, &t, &DeleteOptions::default())
                .await
                .unwrap()
                .removed
        );
        let old = fetch(&s, &t).await.unwrap();
        let mut fin = present(&namespaces::TYPE, &old);
        fin["spec"]["finalizers"] = json!([]);
        let ft = Target {
            sub: Some("finalize".into()),
            ..target(&namespaces::TYPE, None, "gone")
        };
        write_update(&s, &ft, &old, fin, None, false).await.unwrap();
        assert_eq!(fetch(&s, &t).await.unwrap_err().code, 404);
    }
}
