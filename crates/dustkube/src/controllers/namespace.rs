//! The namespace controller: a namespace being deleted (`Terminating`) is emptied — every
//! object in it is deleted, in the background — and once nothing is left, the `kubernetes`
//! finalizer leaves its `spec.finalizers` (the `finalize` subresource), which removes the
//! namespace. Until then its status conditions say what remains, like the real controller's.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::client::Client;
use super::reconcile::run_loop;
use crate::api::deletion::{
    self, finalizers, is_deleting, DeleteOptions, Propagation, FINALIZER_NAMESPACE,
};
use crate::api::objects::{self, Target};
use crate::api::status::ApiError;
use crate::api::table::now_rfc3339;
use crate::resources::{self, name_of, namespaces, ResourceType};

/// Full pass at least this often (objects that only wait for finalizers or a grace period).
const RESYNC: Duration = Duration::from_secs(5);

/// The kinds that live in namespaces and are stored.
fn namespaced_kinds() -> impl Iterator<Item = &'static ResourceType> {
    resources::ALL
        .iter()
        .copied()
        .filter(|r| r.namespaced && r.stored())
}

/// What is left in a terminating namespace.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Remaining {
    /// `resource.group` → objects still there.
    pub resources: BTreeMap<String, usize>,
    /// Finalizer → objects still carrying it.
    pub finalizers: BTreeMap<String, usize>,
}

fn condition(type_: &str, remaining: Option<String>, ok: (&str, &str), bad: &str) -> Value {
    match remaining {
        Some(message) => {
            json!({"type": type_, "status": "True", "reason": bad, "message": message})
        }
        None => json!({"type": type_, "status": "False", "reason": ok.0, "message": ok.1}),
    }
}

/// The namespace's status conditions for what remains (the real controller's five).
pub fn conditions(left: &Remaining) -> Vec<Value> {
    let content = (!left.resources.is_empty()).then(|| {
        let parts: Vec<String> = left
            .resources
            .iter()
            .map(|(r, n)| format!("{r} has {n} resource instances"))
            .collect();
        format!("Some resources are remaining: {}", parts.join(", "))
    });
    let finalizers = (!left.finalizers.is_empty()).then(|| {
        let parts: Vec<String> = left
            .finalizers
            .iter()
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect();
        format!(
            "Some content in the namespace has finalizers remaining: {}",
            parts.join(", ")
        )
    });
    vec![
        condition(
            "NamespaceDeletionDiscoveryFailure",
            None,
            (
                "ResourcesDiscovered",
                "All resources successfully discovered",
            ),
            "",
        ),
        condition(
            "NamespaceDeletionGroupVersionParsingFailure",
            None,
            (
                "ParsedGroupVersions",
                "All legacy kube types successfully parsed",
            ),
            "",
        ),
        condition(
            "NamespaceDeletionContentFailure",
            None,
            (
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization",
            ),
            "",
        ),
        condition(
            "NamespaceContentRemaining",
            content,
            ("ContentRemoved", "All content successfully removed"),
            "SomeResourcesRemain",
        ),
        condition(
            "NamespaceFinalizersRemaining",
            finalizers,
            (
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished",
            ),
            "SomeFinalizersRemain",
        ),
    ]
}

/// Conditions equal but for their transition times.
fn same_conditions(a: Option<&Value>, b: &[Value]) -> bool {
    let strip = |c: &Value| {
        let mut c = c.clone();
        if let Some(m) = c.as_object_mut() {
            m.remove("lastTransitionTime");
        }
        c
    };
    let a: Vec<Value> = a
        .and_then(Value::as_array)
        .map(|l| l.iter().map(strip).collect())
        .unwrap_or_default();
    let b: Vec<Value> = b.iter().map(strip).collect();
    a == b
}

/// Deletes what is in namespace `ns` and reports what is still there.
async fn delete_content(client: &Client, ns: &str) -> Result<Remaining, ApiError> {
    let mut left = Remaining::default();
    let background = DeleteOptions {
        propagation: Some(Propagation::Background),
        ..DeleteOptions::default()
    };
    for rt in namespaced_kinds() {
        let (items, _) = client.list(rt, Some(ns), "").await?;
        for item in items {
            let mut item = item;
            if !is_deleting(&item) {
                let t = Target {
                    rt,
                    namespace: Some(ns.to_string()),
                    name: Some(name_of(&item).to_string()),
                    sub: None,
                };
                match deletion::delete(client.state(), &t, &background).await {
                    Ok(out) if out.removed => continue,
                    Ok(out) => item = out.response,
                    Err(e) if e.reason == "NotFound" => continue,
                    Err(e) => return Err(e),
                }
            }
            *left
                .resources
                .entry(format!("{}.{}", rt.plural, rt.group))
                .or_default() += 1;
            for f in finalizers(&item) {
                *left.finalizers.entry(f).or_default() += 1;
            }
        }
    }
    Ok(left)
}

/// Moves one terminating namespace forward.
async fn finalize(client: &Client, ns: &Value) -> Result<(), ApiError> {
    let name = name_of(ns).to_string();
    let spec_finalizers: Vec<String> = ns
        .pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let t = |sub: Option<&str>| Target {
        rt: &namespaces::TYPE,
        namespace: None,
        name: Some(name.clone()),
        sub: sub.map(String::from),
    };
    if !spec_finalizers.iter().any(|f| f == FINALIZER_NAMESPACE) {
        if spec_finalizers.is_empty() && finalizers(ns).is_empty() {
            // Finalized but still there (an interrupted removal): delete it again.
            deletion::delete(client.state(), &t(None), &DeleteOptions::default()).await?;
        }
        return Ok(());
    }
    let left = delete_content(client, &name).await?;
    let state = client.state();
    if left.resources.is_empty() {
        let old = objects::fetch(state, &t(None)).await?;
        let mut new = objects::present(&namespaces::TYPE, &old);
        let rest: Vec<String> = spec_finalizers
            .into_iter()
            .filter(|f| f != FINALIZER_NAMESPACE)
            .collect();
        new["spec"]["finalizers"] = json!(rest);
        objects::write_update(
            state,
            &t(Some("finalize")),
            &old,
            new,
            Some(old.revision),
            false,
        )
        .await?;
        tracing::info!(namespace = %name, "namespace emptied and finalized");
        return Ok(());
    }
    let wanted = conditions(&left);
    if same_conditions(ns.pointer("/status/conditions"), &wanted) {
        return Ok(());
    }
    let now = now_rfc3339();
    let mut new = ns.clone();
    new["status"]["conditions"] = Value::Array(
        wanted
            .into_iter()
            .map(|mut c| {
                c["lastTransitionTime"] = json!(now);
                c
            })
            .collect(),
    );
    client
        .update_status(&namespaces::TYPE, new)
        .await
        .map(|_| ())
}

/// One pass over the terminating namespaces.
async fn sync(client: &Client) -> anyhow::Result<()> {
    let (all, _) = client
        .list(&namespaces::TYPE, None, "")
        .await
        .map_err(|e| anyhow::anyhow!("listing namespaces: {}", e.message))?;
    for ns in all.iter().filter(|n| is_deleting(n)) {
        if let Err(e) = finalize(client, ns).await {
            tracing::debug!(namespace = name_of(ns), error = %e.message, "namespace controller: retrying later");
        }
    }
    Ok(())
}

/// Runs the namespace controller until aborted.
pub async fn run(client: Client) {
    let mut kinds = vec![&namespaces::TYPE];
    kinds.extend(namespaced_kinds().filter(|r| !matches!(r.plural, "events" | "leases")));
    run_loop(client, "namespace", &kinds, RESYNC, |c| async move {
        sync(&c).await
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::api::objects::create_object;
    use crate::api::AppState;
    use crate::auth::MastersOnly;
    use crate::resources::configmaps;
    use crate::storage::memory::MemoryStore;

    #[test]
    fn conditions_say_what_remains() {
        let mut left = Remaining::default();
        left.resources.insert("pods.".into(), 2);
        left.finalizers.insert("example.com/keep".into(), 1);
        let c = conditions(&left);
        assert_eq!(c.len(), 5);
        assert_eq!(c[3]["status"], "True");
        assert_eq!(
            c[3]["message"],
            "Some resources are remaining: pods. has 2 resource instances"
        );
        assert_eq!(
            c[4]["message"],
            "Some content in the namespace has finalizers remaining: example.com/keep in 1 resource instances"
        );
        let done = conditions(&Remaining::default());
        assert!(done.iter().all(|c| c["status"] == "False"));
        assert!(same_conditions(Some(&json!(done.clone())), &done));
        assert!(!same_conditions(Some(&json!(c)), &done));
    }

    #[tokio::test]
    async fn a_terminating_namespace_is_emptied_then_removed() {
        let state = AppState::new(Arc::new(MemoryStore::new()), Arc::new(MastersOnly));
        crate::server::seed(&state).await.unwrap();
        let client = Client::new(state.clone(), "test");
        create_object(
            &state,
            &namespaces::TYPE,
            None,
            json!({"metadata": {"name": "x"}}),
            false,
        )
        .await
        .unwrap();
        let keep = json!({"metadata": {"name": "kept", "finalizers": ["example.com/keep"]}});
        create_object(&state, &configmaps::TYPE, Some("x"), keep, false)
            .await
            .unwrap();
        create_object(
            &state,
            &configmaps::TYPE,
            Some("x"),
            json!({"metadata": {"name": "plain"}}),
            false,
        )
        .await
        .unwrap();
        client
            .delete(&namespaces::TYPE, None, "x", &json!({}))
            .await
            .unwrap();
        sync(&client).await.unwrap();
        // The plain ConfigMap is gone, the finalized one waits, and the namespace says so.
        assert!(client
            .get(&configmaps::TYPE, Some("x"), "plain")
            .await
            .unwrap()
            .is_none());
        let kept = client
            .get(&configmaps::TYPE, Some("x"), "kept")
            .await
            .unwrap()
            .unwrap();
        assert!(is_deleting(&kept));
        let ns = client
            .get(&namespaces::TYPE, None, "x")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ns["status"]["phase"], "Terminating");
        assert_eq!(
            ns["status"]["conditions"][3]["message"],
            "Some resources are remaining: configmaps. has 1 resource instances"
        );
        // Once the finalizer is removed, the next pass removes the namespace.
        let mut kept = kept;
        kept["metadata"]["finalizers"] = json!([]);
        client.update(&configmaps::TYPE, kept).await.unwrap();
        sync(&client).await.unwrap();
        assert!(client
            .get(&namespaces::TYPE, None, "x")
            .await
            .unwrap()
            .is_none());
    }
}
