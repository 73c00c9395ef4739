//! The pods bound to this node: a list+watch of `spec.nodeName=<node>` keeps the wanted pods
//! (kept as last known while the API server is unreachable), and a level-triggered reconcile
//! loop makes the runtime match: sandbox per pod (adopted by the pod-uid label after a
//! restart), containers started in order with images pulled only when absent, restarts by
//! restartPolicy with back-off (10 s doubling to 5 min, reset after 10 min of running),
//! liveness kills, graceful termination of deleted pods (then DELETE with grace 0), removal
//! of orphans, and the status written back through `pods/<name>/status` when it changes.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Result};
use k8s_cri::v1 as cri;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

use super::client::{self, escape};
use super::cri::{normalize_image, LABEL_CONTAINER, LABEL_MANAGED, LABEL_UID};
use super::probes;
use super::spec::{self, pod_ids};
use super::status::{self, ContainerView, PodView};
use super::volumes;
use super::Agent;

/// How often the loop runs without being woken.
const RESYNC: Duration = Duration::from_secs(2);
/// First restart back-off after the immediate first restart.
const BACKOFF_START: Duration = Duration::from_secs(10);
/// Back-off cap.
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long resets its back-off.
const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// The pods the API says belong to this node.
pub struct Wanted {
    pods: Mutex<HashMap<String, Value>>,
    /// A full list succeeded since the agent started (only then are unknown sandboxes orphans).
    synced: AtomicBool,
    /// Wakes the reconcile loop.
    pub notify: Arc<Notify>,
}

impl Wanted {
    fn new() -> Wanted {
        Wanted {
            pods: Mutex::new(HashMap::new()),
            synced: AtomicBool::new(false),
            notify: Arc::new(Notify::new()),
        }
    }

    /// The pods and whether they come from a full list (read together: a pass must not
    /// treat sandboxes as orphans against a snapshot taken before the first list).
    fn snapshot(&self) -> (Vec<Value>, bool) {
        match self.pods.lock() {
            Ok(m) => (
                m.values().cloned().collect(),
                self.synced.load(Ordering::SeqCst),
            ),
            Err(_) => (Vec::new(), false),
        }
    }

    fn apply(&self, kind: &str, pod: Value) {
        let uid = pod_ids(&pod).2;
        if uid.is_empty() {
            return;
        }
        if let Ok(mut m) = self.pods.lock() {
            match kind {
                "ADDED" | "MODIFIED" => {
                    m.insert(uid, pod);
                }
                "DELETED" => {
                    m.remove(&uid);
                }
                _ => return,
            }
        }
        self.notify.notify_one();
    }

    fn replace(&self, pods: Vec<Value>) {
        if let Ok(mut m) = self.pods.lock() {
            *m = pods.into_iter().map(|p| (pod_ids(&p).2, p)).collect();
            self.synced.store(true, Ordering::SeqCst);
        }
        self.notify.notify_one();
    }
}

/// List+watch of this node's pods, forever; on errors the last known pods stay.
async fn watch_loop(agent: Arc<Agent>, wanted: Arc<Wanted>) {
    let selector = escape(&format!("spec.nodeName={}", agent.node_name));
    let path = format!("/api/v1/pods?fieldSelector={selector}");
    let mut delay = Duration::from_millis(500);
    loop {
        let (items, rv) = match client::list(&agent.api, &path).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot list this node's pods; keeping the last known");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        delay = Duration::from_millis(500);
        wanted.replace(items);
        let (tx, mut rx) = mpsc::channel(64);
        let api = agent.api.clone();
        let p = path.clone();
        let watch = async move {
            let r = client::watch(&api, &p, &rv, &tx).await;
            drop(tx);
            r
        };
        let consume = async {
            while let Some(ev) = rx.recv().await {
                wanted.apply(&ev.kind, ev.object);
            }
        };
        let (result, ()) = tokio::join!(watch, consume);
        if let Err(e) = result {
            tracing::info!(error = %format!("{e:#}"), "pod watch ended; listing again");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Restart back-off of one container.
#[derive(Debug, Default)]
struct Backoff {
    /// The exited container this wait is for.
    for_id: String,
    /// Not restarted before this.
    not_before: Option<Instant>,
    /// The wait in force.
    current: Duration,
    /// The next wait.
    next: Duration,
}

impl Backoff {
    /// For exited container `s` that should restart: `None` when it may start at `now`, else
    /// the wait in force. The first restart is immediate, then 10 s doubling to 5 min; a
    /// container that ran 10 minutes starts the sequence over.
    fn wait(&mut self, s: &cri::ContainerStatus, now: Instant) -> Option<Duration> {
        if self.for_id != s.id {
            let ran = Duration::from_nanos((s.finished_at - s.started_at).max(0) as u64);
            if ran >= BACKOFF_RESET {
                self.next = Duration::ZERO;
            }
            self.for_id = s.id.clone();
            self.current = self.next;
            self.not_before = Some(now + self.current);
            self.next = if self.next.is_zero() {
                BACKOFF_START
            } else {
                (self.next * 2).min(BACKOFF_MAX)
            };
        }
        match self.not_before {
            Some(t) if now < t => Some(self.current),
            _ => None,
        }
    }
}

/// Image pull back-off of one container.
#[derive(Debug, Default)]
struct PullBackoff {
    not_before: Option<Instant>,
    delay: Duration,
}

/// What the reconcile loop remembers between passes.
struct Reconciler {
    agent: Arc<Agent>,
    wanted: Arc<Wanted>,
    backoff: HashMap<(String, String), Backoff>,
    pull_backoff: HashMap<(String, String), PullBackoff>,
    /// Highest attempt per (uid, container), across sandboxes.
    attempts: HashMap<(String, String), u32>,
    /// Waiting reason per (uid, container) from the last failed step.
    waiting: HashMap<(String, String), (String, String)>,
    /// Fingerprint of the last status written per uid.
    sent: HashMap<String, Value>,
    /// Pods being terminated (uids).
    terminating: Arc<Mutex<HashSet<String>>>,
    /// Containers being killed after a failed liveness probe.
    killing: Arc<Mutex<HashSet<String>>>,
    /// Last seen pod per uid (its grace period when it vanishes).
    seen: HashMap<String, Value>,
    probes: probes::Table,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn label<'a>(labels: &'a HashMap<String, String>, k: &str) -> &'a str {
    labels.get(k).map(String::as_str).unwrap_or("")
}

fn is_ready(sb: &cri::PodSandbox) -> bool {
    sb.state == cri::PodSandboxState::SandboxReady as i32
}

fn attempt_of(c: &cri::Container) -> u32 {
    c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0)
}

fn grace_of(pod: &Value) -> i64 {
    pod.pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30)
        .max(0)
}

/// Starts the watch and runs the reconcile loop forever.
pub async fn run(agent: Arc<Agent>) {
    let wanted = Arc::new(Wanted::new());
    tokio::spawn(watch_loop(agent.clone(), wanted.clone()));
    let mut r = Reconciler {
        agent,
        wanted: wanted.clone(),
        backoff: HashMap::new(),
        pull_backoff: HashMap::new(),
        attempts: HashMap::new(),
        waiting: HashMap::new(),
        sent: HashMap::new(),
        terminating: Arc::new(Mutex::new(HashSet::new())),
        killing: Arc::new(Mutex::new(HashSet::new())),
        seen: HashMap::new(),
        probes: Arc::new(Mutex::new(HashMap::new())),
    };
    loop {
        if let Err(e) = r.pass().await {
            tracing::warn!(error = %format!("{e:#}"), "reconcile pass failed");
        }
        tokio::select! {
            _ = wanted.notify.notified() => {}
            _ = tokio::time::sleep(RESYNC) => {}
        }
    }
}

impl Reconciler {
    fn is_terminating(&self, uid: &str) -> bool {
        self.terminating
            .lock()
            .map(|t| t.contains(uid))
            .unwrap_or(false)
    }

    /// One pass over every wanted pod and every sandbox the runtime has.
    async fn pass(&mut self) -> Result<()> {
        let (pods, synced) = self.wanted.snapshot();
        let managed = HashMap::from([(LABEL_MANAGED.to_string(), "true".to_string())]);
        let sandboxes = self.agent.cri.sandboxes(managed.clone()).await?;
        let containers = self.agent.cri.containers(managed).await?;
        let mut sb_by_uid: HashMap<String, Vec<cri::PodSandbox>> = HashMap::new();
        for sb in sandboxes {
            sb_by_uid
                .entry(label(&sb.labels, LABEL_UID).to_string())
                .or_default()
                .push(sb);
        }
        let mut ct_by_uid: HashMap<String, Vec<cri::Container>> = HashMap::new();
        for c in containers {
            ct_by_uid
                .entry(label(&c.labels, LABEL_UID).to_string())
                .or_default()
                .push(c);
        }
        let alive: HashSet<String> = ct_by_uid.values().flatten().map(|c| c.id.clone()).collect();
        probes::retain(&self.probes, &alive);
        let mut wanted_uids = HashSet::new();
        for pod in &pods {
            let uid = pod_ids(pod).2;
            wanted_uids.insert(uid.clone());
            self.seen.insert(uid.clone(), pod.clone());
            if self.is_terminating(&uid) {
                continue;
            }
            let sbs = sb_by_uid.remove(&uid).unwrap_or_default();
            let cts = ct_by_uid.remove(&uid).unwrap_or_default();
            if pod
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|v| !v.is_null())
            {
                self.terminate(Some(pod.clone()), &uid, sbs, cts, grace_of(pod));
                continue;
            }
            if let Err(e) = self.sync_pod(pod, sbs, cts).await {
                let (ns, name, _) = pod_ids(pod);
                tracing::warn!(pod = %format!("{ns}/{name}"), error = %format!("{e:#}"), "pod sync failed");
            }
        }
        if synced {
            for (uid, sbs) in sb_by_uid {
                if self.is_terminating(&uid) {
                    continue;
                }
                let cts = ct_by_uid.remove(&uid).unwrap_or_default();
                let grace = self.seen.get(&uid).map(grace_of).unwrap_or(10).min(30);
                tracing::info!(%uid, "removing the sandbox of a pod that is no longer bound here");
                self.terminate(None, &uid, sbs, cts, grace);
            }
            let gone: Vec<String> = self
                .seen
                .keys()
                .filter(|u| !wanted_uids.contains(*u) && !self.is_terminating(u))
                .cloned()
                .collect();
            for uid in gone {
                self.forget(&uid);
            }
        }
        Ok(())
    }

    fn forget(&mut self, uid: &str) {
        self.seen.remove(uid);
        self.sent.remove(uid);
        self.backoff.retain(|(u, _), _| u != uid);
        self.pull_backoff.retain(|(u, _), _| u != uid);
        self.attempts.retain(|(u, _), _| u != uid);
        self.waiting.retain(|(u, _), _| u != uid);
    }

    /// Stops the pod's containers with `grace`, removes its sandboxes and files, and (for a
    /// pod still in the API) deletes it with grace 0. Runs in the background.
    fn terminate(
        &self,
        pod: Option<Value>,
        uid: &str,
        sbs: Vec<cri::PodSandbox>,
        cts: Vec<cri::Container>,
        grace: i64,
    ) {
        if let Ok(mut t) = self.terminating.lock() {
            if !t.insert(uid.to_string()) {
                return;
            }
        }
        let agent = self.agent.clone();
        let terminating = self.terminating.clone();
        let notify = self.wanted.notify.clone();
        let uid = uid.to_string();
        tokio::spawn(async move {
            let running: Vec<String> = cts
                .iter()
                .filter(|c| c.state == cri::ContainerState::ContainerRunning as i32)
                .map(|c| c.id.clone())
                .collect();
            if let Some(p) = &pod {
                let (ns, name, _) = pod_ids(p);
                tracing::info!(pod = %format!("{ns}/{name}"), grace, containers = running.len(), "stopping pod");
            }
            let stops = running.iter().map(|id| agent.cri.stop_container(id, grace));
            for r in futures::future::join_all(stops).await {
                if let Err(e) = r {
                    tracing::warn!(error = %format!("{e:#}"), "stopping a container failed");
                }
            }
            let mut clean = true;
            for sb in &sbs {
                if let Err(e) = agent.cri.stop_sandbox(&sb.id).await {
                    tracing::warn!(error = %format!("{e:#}"), "stopping a sandbox failed");
                    clean = false;
                    continue;
                }
                if let Err(e) = agent.cri.remove_sandbox(&sb.id).await {
                    tracing::warn!(error = %format!("{e:#}"), "removing a sandbox failed");
                    clean = false;
                }
            }
            if clean {
                volumes::remove(&agent.args.root_dir, &uid);
                if let Some(p) = &pod {
                    let _ = std::fs::remove_dir_all(spec::log_dir(&agent.args.root_dir, p));
                }
            }
            if let (true, Some(p)) = (clean, &pod) {
                let (ns, name, _) = pod_ids(p);
                let path = format!("/api/v1/namespaces/{ns}/pods/{name}");
                let body = json!({
                    "apiVersion": "v1", "kind": "DeleteOptions",
                    "gracePeriodSeconds": 0,
                    "preconditions": {"uid": uid},
                });
                match agent.api.request("DELETE", &path, Some(&body)).await {
                    Ok(r) if r.ok() || r.status == 404 || r.status == 409 => {
                        tracing::info!(pod = %format!("{ns}/{name}"), "pod stopped and deleted");
                    }
                    Ok(r) => {
                        tracing::warn!(status = r.status, message = %r.message(), "deleting the pod failed; retrying")
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "deleting the pod failed; retrying")
                    }
                }
            }
            if let Ok(mut t) = terminating.lock() {
                t.remove(&uid);
            }
            notify.notify_one();
        });
    }

    /// Makes the runtime match one pod and writes its status.
    async fn sync_pod(
        &mut self,
        pod: &Value,
        sbs: Vec<cri::PodSandbox>,
        cts: Vec<cri::Container>,
    ) -> Result<()> {
        let (ns, name, uid) = pod_ids(pod);
        let policy = pod
            .pointer("/spec/restartPolicy")
            .and_then(Value::as_str)
            .unwrap_or("Always")
            .to_string();
        let phase = pod
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("");
        let specs: Vec<Value> = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let host_net = pod.pointer("/spec/hostNetwork").and_then(Value::as_bool) == Some(true);
        for c in &cts {
            let key = (uid.clone(), label(&c.labels, LABEL_CONTAINER).to_string());
            let a = self.attempts.entry(key).or_insert(0);
            *a = (*a).max(attempt_of(c));
        }
        if phase == "Succeeded" || phase == "Failed" {
            for sb in sbs.iter().filter(|s| is_ready(s)) {
                self.agent.cri.stop_sandbox(&sb.id).await?;
            }
            return Ok(());
        }
        let root = self.agent.args.root_dir.clone();
        let ready = sbs
            .iter()
            .filter(|s| is_ready(s))
            .max_by_key(|s| s.created_at)
            .cloned();
        let mut sandbox: Option<(String, cri::PodSandboxConfig)> = None;
        match ready {
            Some(sb) => {
                let attempt = sb.metadata.as_ref().map(|m| m.attempt).unwrap_or(0);
                let cfg = spec::sandbox_config(
                    pod,
                    attempt,
                    &root,
                    &self.agent.node_name,
                    &self.agent.args.cluster_dns,
                    &self.agent.args.cluster_domain,
                );
                sandbox = Some((sb.id.clone(), cfg));
            }
            None if !sbs.is_empty() && policy == "Never" => {
                // The sandbox died and nothing may restart: report what is left.
            }
            None if !host_net && self.agent.pod_cidr.borrow().is_none() => {
                for c in &specs {
                    let cname = c["name"].as_str().unwrap_or("").to_string();
                    self.waiting.insert(
                        (uid.clone(), cname),
                        (
                            "ContainerCreating".into(),
                            "waiting for the node's pod CIDR".into(),
                        ),
                    );
                }
            }
            None => {
                let attempt = sbs
                    .iter()
                    .map(|s| s.metadata.as_ref().map(|m| m.attempt + 1).unwrap_or(0))
                    .max()
                    .unwrap_or(0);
                let cfg = spec::sandbox_config(
                    pod,
                    attempt,
                    &root,
                    &self.agent.node_name,
                    &self.agent.args.cluster_dns,
                    &self.agent.args.cluster_domain,
                );
                let _ = std::fs::create_dir_all(&cfg.log_directory);
                match self.agent.cri.run_sandbox(cfg.clone()).await {
                    Ok(id) => {
                        tracing::info!(pod = %format!("{ns}/{name}"), sandbox = %id, "sandbox started");
                        for old in &sbs {
                            let _ = self.agent.cri.stop_sandbox(&old.id).await;
                            let _ = self.agent.cri.remove_sandbox(&old.id).await;
                        }
                        sandbox = Some((id, cfg));
                    }
                    Err(e) => {
                        tracing::warn!(pod = %format!("{ns}/{name}"), error = %format!("{e:#}"), "cannot start the sandbox");
                        for c in &specs {
                            let cname = c["name"].as_str().unwrap_or("").to_string();
                            self.waiting.insert(
                                (uid.clone(), cname),
                                ("ContainerCreating".into(), format!("{e:#}")),
                            );
                        }
                    }
                }
            }
        }
        let sandbox_id = sandbox
            .as_ref()
            .map(|(id, _)| id.clone())
            .unwrap_or_default();
        let mut pod_ips = Vec::new();
        if let Some((id, _)) = &sandbox {
            if let Ok(st) = self.agent.cri.sandbox_status(id).await {
                if let Some(net) = st.network {
                    if !net.ip.is_empty() {
                        pod_ips.push(net.ip.clone());
                    }
                    pod_ips.extend(net.additional_ips.into_iter().map(|i| i.ip));
                }
            }
        }
        if host_net && pod_ips.is_empty() && sandbox.is_some() {
            pod_ips.push(self.agent.node_ip.to_string());
        }
        let pod_ip = pod_ips.first().cloned().unwrap_or_default();
        let host_ip = self.agent.node_ip.to_string();
        let mut volumes: Option<HashMap<String, std::path::PathBuf>> = None;
        let mut views = Vec::new();
        for c in &specs {
            let cname = c["name"].as_str().unwrap_or("").to_string();
            let key = (uid.clone(), cname.clone());
            let mut mine: Vec<&cri::Container> = cts
                .iter()
                .filter(|x| label(&x.labels, LABEL_CONTAINER) == cname)
                .collect();
            mine.sort_by_key(|x| std::cmp::Reverse((attempt_of(x), x.created_at)));
            let latest = mine
                .iter()
                .find(|x| x.pod_sandbox_id == sandbox_id)
                .copied();
            let latest = if sandbox.is_some() {
                latest
            } else {
                mine.first().copied()
            };
            let previous = mine
                .iter()
                .find(|x| Some(x.id.as_str()) != latest.map(|l| l.id.as_str()))
                .copied();
            let mut current = match latest {
                Some(l) => self.agent.cri.container_status(&l.id).await.ok(),
                None => None,
            };
            let previous = match previous {
                Some(p) => self.agent.cri.container_status(&p.id).await.ok(),
                None => None,
            };
            let mut start_attempt: Option<u32> = None;
            let mut will_restart = true;
            match &current {
                None if sandbox.is_some() => {
                    start_attempt = Some(match (mine.is_empty(), self.attempts.get(&key)) {
                        (true, None) => 0,
                        (_, a) => a.copied().unwrap_or(0) + 1,
                    });
                }
                None => will_restart = policy != "Never",
                Some(s) if s.state == cri::ContainerState::ContainerCreated as i32 => {
                    if let Err(e) = self.agent.cri.start_container(&s.id).await {
                        self.waiting
                            .insert(key.clone(), ("RunContainerError".into(), format!("{e:#}")));
                    } else {
                        self.waiting.remove(&key);
                        current = self.agent.cri.container_status(&s.id).await.ok();
                    }
                }
                Some(s) if s.state == cri::ContainerState::ContainerRunning as i32 => {
                    self.waiting.remove(&key);
                    self.backoff_settle(&key, s);
                    probes::tick(
                        &self.probes,
                        &self.agent.cri,
                        &self.wanted.notify,
                        c,
                        &s.id,
                        s.started_at,
                        &pod_ip,
                    );
                    let verdict = probes::get(&self.probes, &s.id, c);
                    if verdict.kill {
                        self.kill(&s.id, grace_of(pod), &format!("{ns}/{name}"), &cname);
                    }
                }
                Some(s) => {
                    will_restart = match policy.as_str() {
                        "Always" => true,
                        "OnFailure" => s.exit_code != 0,
                        _ => false,
                    } && sandbox.is_some();
                    if will_restart {
                        match self.backoff_wait(&key, s) {
                            None => {
                                start_attempt = Some(
                                    self.attempts
                                        .get(&key)
                                        .copied()
                                        .unwrap_or(0)
                                        .max(attempt_of_status(s))
                                        + 1,
                                );
                            }
                            Some(wait) => {
                                self.waiting.insert(
                                    key.clone(),
                                    (
                                        "CrashLoopBackOff".into(),
                                        format!("back-off {}s restarting failed container={cname} pod={name}_{ns}({uid})", wait.as_secs()),
                                    ),
                                );
                            }
                        }
                    } else {
                        self.waiting.remove(&key);
                    }
                }
            }
            if let (Some(attempt), Some((sid, scfg))) = (start_attempt, &sandbox) {
                if volumes.is_none() {
                    match volumes::prepare(&self.agent.api, &root, pod, &pod_ip, &host_ip).await {
                        Ok(v) => volumes = Some(v),
                        Err(e) => {
                            self.waiting.insert(
                                key.clone(),
                                ("CreateContainerConfigError".into(), format!("{e:#}")),
                            );
                        }
                    }
                }
                if let Some(vols) = &volumes {
                    match self
                        .start_container(pod, c, attempt, sid, scfg, vols, &pod_ip, &host_ip)
                        .await
                    {
                        Ok(id) => {
                            self.attempts.insert(key.clone(), attempt);
                            self.waiting.remove(&key);
                            let older: Vec<String> =
                                mine.iter().skip(1).map(|x| x.id.clone()).collect();
                            for old in older {
                                let _ = self.agent.cri.remove_container(&old).await;
                            }
                            current = self.agent.cri.container_status(&id).await.ok();
                            tracing::info!(pod = %format!("{ns}/{name}"), container = %cname, attempt, "container started");
                        }
                        Err((reason, e)) => {
                            tracing::warn!(pod = %format!("{ns}/{name}"), container = %cname, error = %format!("{e:#}"), "{reason}");
                            self.waiting.insert(key.clone(), (reason, format!("{e:#}")));
                        }
                    }
                }
            }
            let restart_count = current.as_ref().map(attempt_of_status).unwrap_or_else(|| {
                self.attempts
                    .get(&key)
                    .map(|a| a + u32::from(!mine.is_empty()))
                    .unwrap_or(0)
            });
            let verdict = current
                .as_ref()
                .map(|s| probes::get(&self.probes, &s.id, c))
                .unwrap_or_default();
            let previous = previous.filter(|p| Some(&p.id) != current.as_ref().map(|s| &s.id));
            views.push(ContainerView {
                name: cname.clone(),
                image: c["image"].as_str().unwrap_or("").to_string(),
                waiting: self.waiting.get(&key).cloned(),
                ready: verdict.ready,
                started: verdict.started,
                will_restart,
                restart_count,
                current,
                previous,
            });
        }
        let view = PodView {
            pod_ips,
            containers: views,
        };
        let now = super::node::now_time();
        let st = status::pod_status(pod, &view, &host_ip, &now);
        let fp = status::fingerprint(&st);
        let stored = pod.get("status").map(status::fingerprint);
        if self.sent.get(&uid) == Some(&fp) && stored.as_ref() == Some(&fp) {
            return Ok(());
        }
        if stored.as_ref() == Some(&fp) {
            self.sent.insert(uid, fp);
            return Ok(());
        }
        let path = format!("/api/v1/namespaces/{ns}/pods/{name}/status");
        let r = self
            .agent
            .api
            .request("PATCH", &path, Some(&json!({"status": st})))
            .await?;
        if !r.ok() {
            return Err(anyhow!("status update: {} {}", r.status, r.message()));
        }
        self.sent.insert(uid, fp);
        Ok(())
    }

    /// A running container: after 10 minutes its back-off starts over.
    fn backoff_settle(&mut self, key: &(String, String), s: &cri::ContainerStatus) {
        if let Some(b) = self.backoff.get_mut(key) {
            let ran = Duration::from_nanos((now_ns() - s.started_at).max(0) as u64);
            if ran >= BACKOFF_RESET {
                *b = Backoff::default();
            }
        }
    }

    /// For an exited container that should restart: `None` when it may start now, else the
    /// back-off in force.
    fn backoff_wait(
        &mut self,
        key: &(String, String),
        s: &cri::ContainerStatus,
    ) -> Option<Duration> {
        self.backoff
            .entry(key.clone())
            .or_default()
            .wait(s, Instant::now())
    }

    /// Stops a container whose liveness (or startup) probe failed; it is restarted by policy.
    fn kill(&self, id: &str, grace: i64, pod: &str, container: &str) {
        if let Ok(mut k) = self.killing.lock() {
            if !k.insert(id.to_string()) {
                return;
            }
        }
        tracing::info!(%pod, %container, "liveness probe failed; restarting the container");
        let (cri, killing, notify, id) = (
            self.agent.cri.clone(),
            self.killing.clone(),
            self.wanted.notify.clone(),
            id.to_string(),
        );
        tokio::spawn(async move {
            if let Err(e) = cri.stop_container(&id, grace).await {
                tracing::warn!(error = %format!("{e:#}"), "stopping the unhealthy container failed");
            }
            if let Ok(mut k) = killing.lock() {
                k.remove(&id);
            }
            notify.notify_one();
        });
    }

    /// Image (pulled only when absent), env, config, create, start. The error carries the
    /// waiting reason.
    #[allow(clippy::too_many_arguments)]
    async fn start_container(
        &mut self,
        pod: &Value,
        c: &Value,
        attempt: u32,
        sandbox_id: &str,
        sandbox: &cri::PodSandboxConfig,
        volumes: &HashMap<String, std::path::PathBuf>,
        pod_ip: &str,
        host_ip: &str,
    ) -> std::result::Result<String, (String, anyhow::Error)> {
        let uid = pod_ids(pod).2;
        let cname = c["name"].as_str().unwrap_or("").to_string();
        let image = normalize_image(c["image"].as_str().unwrap_or(""));
        let present = self
            .agent
            .cri
            .image_id(&image)
            .await
            .map_err(|e| ("ErrImagePull".to_string(), e))?;
        if present.is_none() {
            if c["imagePullPolicy"].as_str() == Some("Never") {
                return Err((
                    "ErrImageNeverPull".into(),
                    anyhow!("image {image} is not present and imagePullPolicy is Never"),
                ));
            }
            let key = (uid.clone(), cname.clone());
            let pb = self.pull_backoff.entry(key).or_default();
            if pb.not_before.is_some_and(|t| Instant::now() < t) {
                return Err((
                    "ImagePullBackOff".into(),
                    anyhow!("Back-off pulling image {image:?}"),
                ));
            }
            if let Err(e) = self.agent.cri.pull(&image).await {
                pb.delay = if pb.delay.is_zero() {
                    BACKOFF_START
                } else {
                    (pb.delay * 2).min(BACKOFF_MAX)
                };
                pb.not_before = Some(Instant::now() + pb.delay);
                return Err(("ErrImagePull".into(), e));
            }
            *pb = PullBackoff::default();
        }
        let env = spec::env(&self.agent.api, pod, c, pod_ip, host_ip)
            .await
            .map_err(|e| ("CreateContainerConfigError".to_string(), e))?;
        let cfg = spec::container_config(pod, c, attempt, &env, volumes)
            .map_err(|e| ("CreateContainerConfigError".to_string(), e))?;
        let id = self
            .agent
            .cri
            .create_container(sandbox_id, cfg, sandbox.clone())
            .await
            .map_err(|e| ("CreateContainerError".to_string(), e))?;
        if let Err(e) = self.agent.cri.start_container(&id).await {
            return Err(("RunContainerError".into(), e));
        }
        Ok(id)
    }
}

fn attempt_of_status(s: &cri::ContainerStatus) -> u32 {
    s.metadata.as_ref().map(|m| m.attempt).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(id: &str, ran_secs: i64) -> cri::ContainerStatus {
        cri::ContainerStatus {
            id: id.into(),
            started_at: 1_000_000_000,
            finished_at: 1_000_000_000 + ran_secs * 1_000_000_000,
            ..Default::default()
        }
    }

    #[test]
    fn backoff_doubles_and_resets() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        assert_eq!(b.wait(&exited("a", 1), t0), None);
        assert_eq!(b.wait(&exited("b", 1), t0), Some(Duration::from_secs(10)));
        assert_eq!(
            b.wait(&exited("b", 1), t0 + Duration::from_secs(5)),
            Some(Duration::from_secs(10))
        );
        assert_eq!(b.wait(&exited("b", 1), t0 + Duration::from_secs(11)), None);
        assert_eq!(b.wait(&exited("c", 1), t0), Some(Duration::from_secs(20)));
        for i in 0..10 {
            b.wait(&exited(&format!("x{i}"), 1), t0);
        }
        assert_eq!(b.wait(&exited("y", 1), t0), Some(Duration::from_secs(300)));
        assert_eq!(b.wait(&exited("z", 700), t0), None);
        assert_eq!(b.wait(&exited("z2", 1), t0), Some(Duration::from_secs(10)));
    }

    #[test]
    fn grace_periods() {
        let p = json!({"metadata": {"deletionGracePeriodSeconds": 5}, "spec": {"terminationGracePeriodSeconds": 30}});
        assert_eq!(grace_of(&p), 5);
        assert_eq!(grace_of(&json!({"spec": {}})), 30);
    }
}
