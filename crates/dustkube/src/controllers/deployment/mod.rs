//! The Deployment controller: one ReplicaSet per pod template (named `<deploy>-<hash>`,
//! labelled and selected by `pod-template-hash`), rolled by the RollingUpdate (maxSurge,
//! maxUnavailable) or Recreate strategy, revisions in `deployment.kubernetes.io/revision`
//! (a rollback reuses the old ReplicaSet under a new revision), history trimmed to
//! `revisionHistoryLimit`, and the status `kubectl rollout status` waits on. The arithmetic is
//! in [`rollout`], templates and hashes in [`template`], status and conditions in [`status`].

pub mod rollout;
pub mod status;
pub mod template;

use std::time::Duration;

use anyhow::{anyhow, Context};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::api_result::OrFail;
use super::client::Client;
use super::conditions;
use super::index;
use super::ownership::{self, Claim};
use super::reconcile::run_loop;
use crate::resources::{deployments, int_at, name_of, pods, replicasets, str_at};
use rollout::RsView;
use template::HASH_LABEL;

/// Component name of the Events this controller records.
pub const COMPONENT: &str = "deployment-controller";
/// The revision of a ReplicaSet (and of the Deployment: its newest).
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a reused ReplicaSet had.
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's replicas when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// The Deployment's replicas + maxSurge when the ReplicaSet was last scaled.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Deployment annotations not copied to ReplicaSets.
const SKIP_COPY: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

fn set_annotation(obj: &mut Value, key: &str, value: &str) -> bool {
    if annotation(obj, key) == Some(value) {
        return false;
    }
    if !obj
        .pointer("/metadata/annotations")
        .is_some_and(Value::is_object)
    {
        obj["metadata"]["annotations"] = json!({});
    }
    obj["metadata"]["annotations"][key] = json!(value);
    true
}

/// A ReplicaSet's revision (0 when unset or invalid).
pub fn revision(rs: &Value) -> i64 {
    annotation(rs, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// SetNewReplicaSetAnnotations: copies the Deployment's annotations, raises the revision to
/// `new_revision` (remembering the old one in the history), and for a new ReplicaSet records
/// the replica annotations. Returns whether `rs` changed.
pub fn new_rs_annotations(
    d: &Value,
    rs: &mut Value,
    new_revision: i64,
    exists: bool,
    surge: i64,
) -> bool {
    let mut changed = false;
    if let Some(m) = d
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        for (k, v) in m {
            if let (false, Some(v)) = (SKIP_COPY.contains(&k.as_str()), v.as_str()) {
                changed |= set_annotation(rs, k, v);
            }
        }
    }
    let old = annotation(rs, REVISION).unwrap_or("").to_string();
    let old_int: i64 = old.parse().unwrap_or(0);
    if old_int < new_revision {
        changed |= set_annotation(rs, REVISION, &new_revision.to_string());
        if !old.is_empty() {
            let history = match annotation(rs, REVISION_HISTORY) {
                Some(h) if !h.is_empty() => format!("{h},{old}"),
                _ => old.clone(),
            };
            set_annotation(rs, REVISION_HISTORY, &history);
        }
    }
    if !exists {
        let desired = int_at(d, "/spec/replicas");
        changed |= replica_annotations(rs, desired, desired + surge);
    }
    changed
}

/// Sets the desired/max replica annotations; returns whether they changed.
fn replica_annotations(rs: &mut Value, desired: i64, max: i64) -> bool {
    let a = set_annotation(rs, DESIRED_REPLICAS, &desired.to_string());
    let b = set_annotation(rs, MAX_REPLICAS, &max.to_string());
    a || b
}

/// The resolved strategy of a Deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strategy {
    /// Recreate (else RollingUpdate).
    pub recreate: bool,
    /// maxSurge in replicas (0 for Recreate).
    pub surge: i64,
    /// maxUnavailable in replicas, at most spec.replicas (0 for Recreate).
    pub unavailable: i64,
}

/// MaxSurge/MaxUnavailable of a Deployment as Kubernetes resolves them.
pub fn strategy(d: &Value) -> Result<Strategy, String> {
    let desired = int_at(d, "/spec/replicas");
    if str_at(d, "/spec/strategy/type") == "Recreate" {
        return Ok(Strategy {
            recreate: true,
            surge: 0,
            unavailable: 0,
        });
    }
    let (surge, unavailable) =
        rollout::fenceposts(d.pointer("/spec/strategy/rollingUpdate"), desired)?;
    Ok(Strategy {
        recreate: false,
        surge,
        unavailable: if desired == 0 {
            0
        } else {
            unavailable.min(desired)
        },
    })
}

fn view(rs: &Value) -> RsView {
    let ann = |k| annotation(rs, k).and_then(|v| v.parse().ok());
    RsView {
        name: name_of(rs).to_string(),
        created: str_at(rs, "/metadata/creationTimestamp").to_string(),
        replicas: int_at(rs, "/spec/replicas"),
        available: int_at(rs, "/status/availableReplicas"),
        desired: ann(DESIRED_REPLICAS),
        max_replicas: ann(MAX_REPLICAS),
    }
}

/// One Deployment's sync: the Deployment as last written, the ReplicaSets it owns.
struct Sync<'a> {
    c: &'a Client,
    d: Value,
    /// The status as stored (to write only changes).
    stored_status: Value,
    rss: Vec<Value>,
    strat: Strategy,
    now: DateTime<Utc>,
}

impl Sync<'_> {
    fn desired(&self) -> i64 {
        int_at(&self.d, "/spec/replicas")
    }

    /// Claims the namespace's ReplicaSets: owned ones kept, orphans adopted, strays released.
    async fn claim(&mut self, candidates: &[Value]) -> anyhow::Result<()> {
        let sel = self.d.pointer("/spec/selector").cloned();
        for rs in candidates {
            match ownership::claim(&self.d, sel.as_ref(), rs) {
                Claim::Owned => self.rss.push(rs.clone()),
                Claim::Adopt => {
                    let rs = ownership::adopted(rs, &self.d);
                    self.rss
                        .push(self.c.update(&replicasets::TYPE, rs).await.or_fail()?);
                }
                Claim::Release => {
                    let rs = ownership::released(rs, str_at(&self.d, "/metadata/uid"));
                    self.c.update(&replicasets::TYPE, rs).await.or_fail()?;
                }
                Claim::Ignore => {}
            }
        }
        Ok(())
    }

    /// The oldest owned ReplicaSet whose template is the Deployment's (FindNewReplicaSet).
    fn find_new(&self) -> Option<usize> {
        let tpl = self
            .d
            .pointer("/spec/template")
            .cloned()
            .unwrap_or(json!({}));
        let mut idx: Vec<usize> = (0..self.rss.len()).collect();
        idx.sort_by(|a, b| {
            let (x, y) = (&self.rss[*a], &self.rss[*b]);
            str_at(x, "/metadata/creationTimestamp")
                .cmp(str_at(y, "/metadata/creationTimestamp"))
                .then_with(|| name_of(x).cmp(name_of(y)))
        });
        idx.into_iter().find(|i| {
            let t = self.rss[*i]
                .pointer("/spec/template")
                .unwrap_or(&Value::Null);
            template::equal_ignore_hash(t, &tpl)
        })
    }

    fn old(&self, new: Option<usize>) -> Vec<usize> {
        (0..self.rss.len()).filter(|i| Some(*i) != new).collect()
    }

    /// Writes the Deployment's metadata (keeping the status being computed in memory).
    async fn update_deployment(&mut self, d: Value) -> anyhow::Result<()> {
        let mut updated = self.c.update(&deployments::TYPE, d).await.or_fail()?;
        updated["status"] = self.d["status"].clone();
        self.d = updated;
        Ok(())
    }

    /// The Deployment's revision annotation follows its new ReplicaSet's.
    async fn sync_deployment_revision(&mut self, new: usize) -> anyhow::Result<()> {
        let rev = annotation(&self.rss[new], REVISION)
            .unwrap_or("")
            .to_string();
        if rev.is_empty() || annotation(&self.d, REVISION) == Some(rev.as_str()) {
            return Ok(());
        }
        let mut d = self.d.clone();
        set_annotation(&mut d, REVISION, &rev);
        self.update_deployment(d).await
    }

    fn set_progressing(&mut self, reason: &str, message: String) {
        if !status::has_progress_deadline(&self.d) {
            return;
        }
        let c = status::condition("Progressing", "True", reason, &message, self.now);
        let mut st = self.d.get("status").cloned().unwrap_or(json!({}));
        if conditions::set(&mut st, c) {
            self.d["status"] = st;
        }
    }

    /// getAllReplicaSetsAndSyncRevision: finds (or with `create`, makes) the new ReplicaSet
    /// and brings its revision and copied annotations up to date.
    async fn sync_revision(&mut self, create: bool) -> anyhow::Result<Option<usize>> {
        let new = self.find_new();
        let max_old = self
            .old(new)
            .iter()
            .map(|i| revision(&self.rss[*i]))
            .max()
            .unwrap_or(0);
        let new_revision = max_old + 1;
        if let Some(i) = new {
            let mut rs = self.rss[i].clone();
            let mut changed = new_rs_annotations(&self.d, &mut rs, new_revision, true, 0);
            let min_ready = self.d.pointer("/spec/minReadySeconds").cloned();
            if rs.pointer("/spec/minReadySeconds") != min_ready.as_ref() {
                rs["spec"]["minReadySeconds"] = min_ready.unwrap_or(json!(0));
                changed = true;
            }
            if changed {
                self.rss[i] = self.c.update(&replicasets::TYPE, rs).await.or_fail()?;
            }
            self.sync_deployment_revision(i).await?;
            if conditions::get(&self.d, "Progressing").is_none() {
                let msg = format!("Found new replica set \"{}\"", name_of(&self.rss[i]));
                self.set_progressing(status::FOUND_NEW_RS, msg);
            }
            return Ok(Some(i));
        }
        if !create {
            return Ok(None);
        }
        let collisions = self
            .d
            .pointer("/status/collisionCount")
            .and_then(Value::as_i64);
        let mut tpl = self
            .d
            .pointer("/spec/template")
            .cloned()
            .unwrap_or(json!({}));
        let hash = template::compute_hash(&tpl, collisions);
        if !tpl
            .pointer("/metadata/labels")
            .is_some_and(Value::is_object)
        {
            if !tpl.get("metadata").is_some_and(Value::is_object) {
                tpl["metadata"] = json!({});
            }
            tpl["metadata"]["labels"] = json!({});
        }
        tpl["metadata"]["labels"][HASH_LABEL] = json!(hash);
        let mut selector = self
            .d
            .pointer("/spec/selector")
            .cloned()
            .unwrap_or(json!({}));
        if !selector.get("matchLabels").is_some_and(Value::is_object) {
            selector["matchLabels"] = json!({});
        }
        selector["matchLabels"][HASH_LABEL] = json!(hash);
        let old_total: i64 = self
            .old(None)
            .iter()
            .map(|i| int_at(&self.rss[*i], "/spec/replicas"))
            .sum();
        let replicas = if self.strat.recreate {
            self.desired()
        } else {
            rollout::rolling_new_replicas(self.desired(), self.strat.surge, 0, old_total)
        };
        let name = format!("{}-{hash}", name_of(&self.d));
        let mut rs = json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": str_at(&self.d, "/metadata/namespace"),
                "labels": tpl["metadata"]["labels"].clone(),
                "ownerReferences": [ownership::owner_ref(&self.d)],
            },
            "spec": {
                "replicas": replicas,
                "minReadySeconds": int_at(&self.d, "/spec/minReadySeconds"),
                "selector": selector,
                "template": tpl,
            },
        });
        new_rs_annotations(&self.d, &mut rs, new_revision, false, self.strat.surge);
        let created = match self.c.create(&replicasets::TYPE, rs).await {
            Ok(rs) => {
                if replicas > 0 {
                    let msg = format!("Scaled up replica set {name} to {replicas}");
                    self.c
                        .event(&self.d, "Normal", "ScalingReplicaSet", &msg)
                        .await;
                }
                self.set_progressing(
                    status::NEW_RS_CREATED,
                    format!("Created new replica set \"{name}\""),
                );
                rs
            }
            Err(e) if e.reason == "AlreadyExists" => {
                let ns = str_at(&self.d, "/metadata/namespace").to_string();
                let existing = self
                    .c
                    .get(&replicasets::TYPE, Some(&ns), &name)
                    .await
                    .or_fail()?;
                let tpl = self.d.pointer("/spec/template").unwrap_or(&Value::Null);
                match existing {
                    Some(rs)
                        if ownership::is_controlled_by(&rs, &self.d)
                            && template::equal_ignore_hash(
                                rs.pointer("/spec/template").unwrap_or(&Value::Null),
                                tpl,
                            ) =>
                    {
                        rs
                    }
                    _ => {
                        // A hash collision: the next pass hashes with a higher count.
                        let mut d = self.d.clone();
                        d["status"]["collisionCount"] = json!(collisions.unwrap_or(0) + 1);
                        self.c
                            .update_status(&deployments::TYPE, d)
                            .await
                            .or_fail()?;
                        return Err(anyhow!("replica set {name} exists with another template"));
                    }
                }
            }
            Err(e) => return Err(anyhow!("creating replica set {name}: {}", e.message)),
        };
        self.rss.push(created);
        let i = self.rss.len() - 1;
        self.sync_deployment_revision(i).await?;
        Ok(Some(i))
    }

    /// Scales one ReplicaSet (recording the Deployment's size in its annotations) and records
    /// a ScalingReplicaSet event; returns whether it changed.
    async fn scale_rs(&mut self, i: usize, to: i64) -> anyhow::Result<bool> {
        let from = int_at(&self.rss[i], "/spec/replicas");
        if from == to {
            return Ok(false);
        }
        let mut rs = self.rss[i].clone();
        rs["spec"]["replicas"] = json!(to);
        let desired = self.desired();
        replica_annotations(&mut rs, desired, desired + self.strat.surge);
        self.rss[i] = self.c.update(&replicasets::TYPE, rs).await.or_fail()?;
        let op = if to > from { "up" } else { "down" };
        let msg = format!(
            "Scaled {op} replica set {} to {to} from {from}",
            name_of(&self.rss[i])
        );
        self.c
            .event(&self.d, "Normal", "ScalingReplicaSet", &msg)
            .await;
        Ok(true)
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.rss.iter().position(|r| name_of(r) == name)
    }

    async fn apply_scales(&mut self, scales: rollout::Scales) -> anyhow::Result<bool> {
        let mut any = false;
        for (name, n) in scales {
            if let Some(i) = self.index_of(&name) {
                any |= self.scale_rs(i, n).await?;
            }
        }
        Ok(any)
    }

    /// isScalingEvent: an active ReplicaSet was sized for another Deployment size.
    fn is_scaling_event(&self) -> bool {
        let desired = self.desired();
        self.rss
            .iter()
            .filter(|r| int_at(r, "/spec/replicas") > 0)
            .any(|r| {
                annotation(r, DESIRED_REPLICAS)
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v != desired)
            })
    }

    /// Kubernetes' `scale`: a resize goes to the one active ReplicaSet, or the old ones are
    /// dropped when the new one is saturated, or it is shared proportionally.
    async fn scale(&mut self, new: Option<usize>) -> anyhow::Result<()> {
        let desired = self.desired();
        let new_view = new.map(|i| view(&self.rss[i]));
        let old_views: Vec<RsView> = self.old(new).iter().map(|i| view(&self.rss[*i])).collect();
        if let Some(target) = rollout::active_or_latest(new_view.as_ref(), &old_views) {
            let Some(i) = self.index_of(&target.name) else {
                return Ok(());
            };
            if target.replicas != desired {
                self.scale_rs(i, desired).await?;
            } else {
                // Same size but sized for another Deployment size: only the annotations.
                let mut rs = self.rss[i].clone();
                if replica_annotations(&mut rs, desired, desired + self.strat.surge) {
                    self.rss[i] = self.c.update(&replicasets::TYPE, rs).await.or_fail()?;
                }
            }
            return Ok(());
        }
        let saturated = new.is_some_and(|i| {
            let v = view(&self.rss[i]);
            v.replicas == desired && v.desired == Some(desired) && v.available == desired
        });
        if saturated {
            let scales = old_views
                .iter()
                .filter(|v| v.replicas > 0)
                .map(|v| (v.name.clone(), 0))
                .collect();
            self.apply_scales(scales).await?;
            return Ok(());
        }
        if !self.strat.recreate {
            let active: Vec<RsView> = new_view
                .into_iter()
                .chain(old_views)
                .filter(|v| v.replicas > 0)
                .collect();
            let scales = rollout::proportional_scales(
                desired,
                self.strat.surge,
                int_at(&self.d, "/status/replicas"),
                &active,
            );
            self.apply_scales(scales).await?;
        }
        Ok(())
    }

    /// cleanupDeployment: deletes the oldest idle ReplicaSets beyond revisionHistoryLimit.
    async fn cleanup(&mut self, new: Option<usize>) -> anyhow::Result<()> {
        let Some(limit) = self
            .d
            .pointer("/spec/revisionHistoryLimit")
            .and_then(Value::as_i64)
        else {
            return Ok(());
        };
        let mut alive: Vec<Value> = self
            .old(new)
            .iter()
            .map(|i| self.rss[*i].clone())
            .filter(|r| !ownership::deleting(r))
            .collect();
        let diff = alive.len() as i64 - limit.max(0);
        if diff <= 0 {
            return Ok(());
        }
        alive.sort_by(|a, b| {
            revision(a).cmp(&revision(b)).then_with(|| {
                str_at(a, "/metadata/creationTimestamp")
                    .cmp(str_at(b, "/metadata/creationTimestamp"))
            })
        });
        let ns = str_at(&self.d, "/metadata/namespace").to_string();
        for rs in alive.iter().take(diff as usize) {
            let busy = int_at(rs, "/status/replicas") != 0
                || int_at(rs, "/spec/replicas") != 0
                || int_at(rs, "/metadata/generation") > int_at(rs, "/status/observedGeneration");
            if busy {
                continue;
            }
            match self
                .c
                .delete(&replicasets::TYPE, Some(&ns), name_of(rs), &json!({}))
                .await
            {
                Ok(_) => {
                    let name = name_of(rs).to_string();
                    self.rss.retain(|r| name_of(r) != name);
                }
                Err(e) if e.reason == "NotFound" => {}
                Err(e) => return Err(anyhow!("deleting old replica set: {}", e.message)),
            }
        }
        Ok(())
    }

    /// Writes the status (counts, Available, and with `rolling_out` Progressing) if changed.
    async fn write_status(&mut self, rolling_out: bool) -> anyhow::Result<()> {
        let new = self.find_new();
        let all: Vec<&Value> = self.rss.iter().collect();
        let new_rs = new.map(|i| &self.rss[i]);
        let st = if rolling_out {
            status::rollout(&self.d, &all, new_rs, self.strat.unavailable, self.now)
        } else {
            status::calculate(&self.d, &all, new_rs, self.strat.unavailable, self.now)
        };
        if st == self.stored_status {
            return Ok(());
        }
        let mut d = self.d.clone();
        d["status"] = st.clone();
        self.d = self
            .c
            .update_status(&deployments::TYPE, d)
            .await
            .or_fail()?;
        self.stored_status = st;
        Ok(())
    }

    /// Kubernetes' `sync`: resize and status only (paused, or a scaling event).
    async fn sync_scale(&mut self) -> anyhow::Result<()> {
        let new = self.sync_revision(false).await?;
        self.scale(new).await?;
        if self.d.pointer("/spec/paused") == Some(&json!(true)) {
            let new = self.find_new();
            self.cleanup(new).await?;
        }
        self.write_status(false).await
    }

    async fn rolling(&mut self) -> anyhow::Result<()> {
        let new = self
            .sync_revision(true)
            .await?
            .context("no new replica set")?;
        let desired = self.desired();
        let others: i64 = self
            .old(Some(new))
            .iter()
            .map(|i| int_at(&self.rss[*i], "/spec/replicas"))
            .sum();
        let current = int_at(&self.rss[new], "/spec/replicas");
        let target = rollout::rolling_new_replicas(desired, self.strat.surge, current, others);
        if target != current {
            self.scale_rs(new, target).await?;
            return self.write_status(true).await;
        }
        let new_view = view(&self.rss[new]);
        let old_views: Vec<RsView> = self
            .old(Some(new))
            .iter()
            .map(|i| view(&self.rss[*i]))
            .filter(|v| v.replicas > 0)
            .collect();
        let scales =
            rollout::rolling_old_scales(desired, self.strat.unavailable, &new_view, &old_views);
        if self.apply_scales(scales).await? {
            return self.write_status(true).await;
        }
        let status = self.d.get("status").cloned().unwrap_or(json!({}));
        if status::complete(&self.d, &status) {
            self.cleanup(Some(new)).await?;
        }
        self.write_status(true).await
    }

    async fn recreate(&mut self, pods: &[Value]) -> anyhow::Result<()> {
        let new = self.sync_revision(false).await?;
        let old_active: Vec<(String, i64)> = self
            .old(new)
            .iter()
            .map(|i| &self.rss[*i])
            .filter(|r| int_at(r, "/spec/replicas") > 0)
            .map(|r| (name_of(r).to_string(), 0))
            .collect();
        if self.apply_scales(old_active).await? {
            return self.write_status(true).await;
        }
        // Wait until no old pod runs (terminating ones included).
        let old_uids: Vec<String> = self
            .old(new)
            .iter()
            .map(|i| str_at(&self.rss[*i], "/metadata/uid").to_string())
            .collect();
        let old_actual: i64 = self
            .old(new)
            .iter()
            .map(|i| int_at(&self.rss[*i], "/status/replicas"))
            .sum();
        let old_running = old_actual > 0
            || pods.iter().any(|p| {
                ownership::controller_uid(p).is_some_and(|u| old_uids.iter().any(|o| o == u))
                    && !matches!(str_at(p, "/status/phase"), "Succeeded" | "Failed")
            });
        if old_running {
            return self.write_status(true).await;
        }
        let new = match new {
            Some(i) => i,
            None => self
                .sync_revision(true)
                .await?
                .context("no new replica set")?,
        };
        let desired = self.desired();
        self.scale_rs(new, desired).await?;
        let status = self.d.get("status").cloned().unwrap_or(json!({}));
        if status::complete(&self.d, &status) {
            self.cleanup(Some(new)).await?;
        }
        self.write_status(true).await
    }
}

/// Syncs one Deployment against its namespace's ReplicaSets (and pods, for Recreate).
async fn sync_one(c: &Client, d: &Value, rss: &[Value], pods: &[Value]) -> anyhow::Result<()> {
    let strat = match strategy(d) {
        Ok(s) => s,
        Err(e) => {
            c.event(d, "Warning", "InvalidStrategy", &e).await;
            return Err(anyhow!("{}: {e}", name_of(d)));
        }
    };
    let stored_status = d.get("status").cloned().unwrap_or(json!({}));
    let mut s = Sync {
        c,
        d: d.clone(),
        stored_status,
        rss: Vec::new(),
        strat,
        now: Utc::now(),
    };
    s.claim(rss).await?;
    if ownership::deleting(d) {
        return s.write_status(false).await;
    }
    let mut st = s.d.get("status").cloned().unwrap_or(json!({}));
    if status::paused_condition(&s.d, &mut st, s.now) {
        s.d["status"] = st;
    }
    if s.d.pointer("/spec/paused") == Some(&json!(true)) || s.is_scaling_event() {
        return s.sync_scale().await;
    }
    if strat.recreate {
        s.recreate(pods).await
    } else {
        s.rolling().await
    }
}

/// One pass over every Deployment.
pub async fn sync(c: Client) -> anyhow::Result<()> {
    let (all, _) = c.list(&deployments::TYPE, None, "").await.or_fail()?;
    if all.is_empty() {
        return Ok(());
    }
    let all_rs = index::by_namespace(c.list(&replicasets::TYPE, None, "").await.or_fail()?.0);
    let need_pods = all
        .iter()
        .any(|d| str_at(d, "/spec/strategy/type") == "Recreate");
    let all_pods = if need_pods {
        index::by_namespace(c.list(&pods::TYPE, None, "").await.or_fail()?.0)
    } else {
        Default::default()
    };
    let mut failures = Vec::new();
    for d in &all {
        let ns = str_at(d, "/metadata/namespace");
        let rss = index::in_namespace(&all_rs, ns);
        let pods = index::in_namespace(&all_pods, ns);
        if let Err(e) = sync_one(&c, d, rss, pods).await {
            failures.push(format!("{ns}/{}: {e:#}", name_of(d)));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(failures.join("; ")))
    }
}

/// Runs the controller until aborted.
pub async fn run(client: Client) {
    let c = client.as_component(COMPONENT);
    run_loop(
        c,
        "deployment",
        &[&deployments::TYPE, &replicasets::TYPE],
        Duration::from_secs(10),
        sync,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_and_copied_annotations() {
        let d = json!({"metadata": {"annotations": {
            "kubernetes.io/change-cause": "set image",
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
            REVISION: "1"}},
            "spec": {"replicas": 3}});
        let mut rs = json!({"metadata": {"name": "web-a"}});
        assert!(new_rs_annotations(&d, &mut rs, 1, false, 1));
        assert_eq!(annotation(&rs, REVISION), Some("1"));
        assert_eq!(
            annotation(&rs, "kubernetes.io/change-cause"),
            Some("set image")
        );
        assert_eq!(
            annotation(&rs, "kubectl.kubernetes.io/last-applied-configuration"),
            None
        );
        assert_eq!(annotation(&rs, DESIRED_REPLICAS), Some("3"));
        assert_eq!(annotation(&rs, MAX_REPLICAS), Some("4"));
        assert!(!new_rs_annotations(&d, &mut rs, 1, true, 1), "nothing new");
        // A rollback reuses it as revision 3 and remembers 1.
        assert!(new_rs_annotations(&d, &mut rs, 3, true, 1));
        assert_eq!(revision(&rs), 3);
        assert_eq!(annotation(&rs, REVISION_HISTORY), Some("1"));
        // Never lowered.
        assert!(!new_rs_annotations(&d, &mut rs, 2, true, 1));
        assert_eq!(revision(&rs), 3);
    }

    #[test]
    fn strategies_resolve() {
        let d = json!({"spec": {"replicas": 3, "strategy": {"type": "RollingUpdate"}}});
        assert_eq!(
            strategy(&d),
            Ok(Strategy {
                recreate: false,
                surge: 1,
                unavailable: 0
            })
        );
        let d = json!({"spec": {"replicas": 0, "strategy": {"type": "RollingUpdate"}}});
        assert_eq!(strategy(&d).unwrap().unavailable, 0);
        let d = json!({"spec": {"replicas": 2, "strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 5}}}});
        assert_eq!(
            strategy(&d),
            Ok(Strategy {
                recreate: false,
                surge: 0,
                unavailable: 2
            })
        );
        let d = json!({"spec": {"replicas": 2, "strategy": {"type": "Recreate"}}});
        assert!(strategy(&d).unwrap().recreate);
    }
}
