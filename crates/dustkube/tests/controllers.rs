//! The controllers inside `dustkube server` against real etcd, driven by real kubectl 1.33
//! (and 1.27 for a rollout cycle), with no node agent: the test registers three Node objects
//! (one a tainted control plane), renews their Leases, and plays the agent's part for pod
//! status (Running, Ready, an IP from the node's podCIDR) and for finishing deletions.
//! Covers scheduling and spreading, scaling, rolling updates, history and undo, Service
//! endpoints, cordon, FailedScheduling, and eviction from a node whose Lease stops.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{free_port, rows, Kubectl, KUBECTLS};
use serde_json::{json, Value};

const WORKERS: [&str; 2] = ["w1", "w2"];

fn micro_now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// kubectl without echo (background threads), stdout on success.
fn quiet(bin: &str, kubeconfig: &Path, cache: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(bin)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn get_json(k: &Kubectl, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    let out = Command::new(k.bin)
        .arg("--kubeconfig")
        .arg(&k.kubeconfig)
        .arg("--cache-dir")
        .arg(&k.cache)
        .args(&all)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl {all:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn apply(k: &Kubectl, dir: &Path, name: &str, yaml: &str) -> String {
    let f = dir.join(format!("{name}.yaml"));
    fs::write(&f, yaml).unwrap();
    k.ok(&["apply", "-f", f.to_str().unwrap()])
}

/// Polls `check` until it returns `Some`, or panics with `what` after `secs`.
fn wait_for<T>(secs: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(500));
    }
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

/// Pods of `ns` that are not being deleted and not finished.
fn live_pods(k: &Kubectl, ns: &str, selector: &str) -> Vec<Value> {
    let list = get_json(k, &["pods", "-n", ns, "-l", selector]);
    items(&list)
        .into_iter()
        .filter(|p| {
            p.pointer("/metadata/deletionTimestamp").is_none()
                && !matches!(s(p, "/status/phase"), "Succeeded" | "Failed")
        })
        .collect()
}

fn node_yaml(name: &str) -> String {
    let (labels, taints) = if name == "cp1" {
        (
            "    node-role.kubernetes.io/control-plane: \"\"\n",
            "  taints:\n  - key: node-role.kubernetes.io/control-plane\n    effect: NoSchedule\n",
        )
    } else {
        ("", "")
    };
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels:\n    kubernetes.io/hostname: {name}\n{labels}spec:\n{taints}  unschedulable: false\n\
---\napiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: {name}\n  namespace: kube-node-lease\nspec:\n  holderIdentity: {name}\n  leaseDurationSeconds: 40\n  renewTime: \"{}\"\n",
        micro_now()
    )
}

fn node_status(ip: &str) -> String {
    let t = now();
    json!({"status": {
        "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
        "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
        "addresses": [{"type": "InternalIP", "address": ip}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "agent is posting ready status",
                        "lastHeartbeatTime": t, "lastTransitionTime": t}],
        "nodeInfo": {"kubeletVersion": "v1.33.0-dustkube"}}})
    .to_string()
}

fn deployment_yaml(name: &str, ns: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: {ns}\n  annotations:\n    kubernetes.io/change-cause: create {name}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      terminationGracePeriodSeconds: 1\n      tolerations:\n      - key: node.kubernetes.io/unreachable\n        operator: Exists\n        effect: NoExecute\n        tolerationSeconds: 3\n      - key: node.kubernetes.io/not-ready\n        operator: Exists\n        effect: NoExecute\n        tolerationSeconds: 3\n      containers:\n      - name: {name}\n        image: busybox:stable\n        command: [sleep, \"3600\"]\n        ports:\n        - name: http\n          containerPort: 8080\n"
    )
}

/// The agent's part, played by the test: Lease renewals for live nodes, pods on live nodes
/// Running/Ready with an IP from the node's podCIDR, deletions of their pods finished.
struct FakeAgents {
    alive: Arc<Mutex<HashSet<String>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl FakeAgents {
    fn start(bin: &'static str, kubeconfig: PathBuf, dir: &Path) -> FakeAgents {
        let alive = Arc::new(Mutex::new(
            ["cp1", "w1", "w2"]
                .iter()
                .map(|s| s.to_string())
                .collect::<HashSet<String>>(),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        {
            let (alive, stop, kc, cache) = (
                alive.clone(),
                stop.clone(),
                kubeconfig.clone(),
                dir.join("cache-leases"),
            );
            threads.push(thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let names: Vec<String> = alive.lock().unwrap().iter().cloned().collect();
                    for n in names {
                        let patch = json!({"spec": {"renewTime": micro_now()}}).to_string();
                        quiet(
                            bin,
                            &kc,
                            &cache,
                            &[
                                "patch",
                                "lease",
                                &n,
                                "-n",
                                "kube-node-lease",
                                "--type=merge",
                                "-p",
                                &patch,
                            ],
                        );
                    }
                    thread::sleep(Duration::from_secs(2));
                }
            }));
        }
        {
            let (alive, stop, kc, cache) = (
                alive.clone(),
                stop.clone(),
                kubeconfig,
                dir.join("cache-pods"),
            );
            threads.push(thread::spawn(move || {
                let mut next_ip: HashMap<String, u32> = HashMap::new();
                while !stop.load(Ordering::Relaxed) {
                    pod_agent_round(bin, &kc, &cache, &alive, &mut next_ip);
                    thread::sleep(Duration::from_millis(700));
                }
            }));
        }
        FakeAgents {
            alive,
            stop,
            threads,
        }
    }

    fn kill(&self, node: &str) {
        self.alive.lock().unwrap().remove(node);
    }
}

impl Drop for FakeAgents {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn pod_agent_round(
    bin: &str,
    kc: &Path,
    cache: &Path,
    alive: &Mutex<HashSet<String>>,
    next_ip: &mut HashMap<String, u32>,
) {
    let Some(nodes) = quiet(bin, kc, cache, &["get", "nodes", "-o", "json"]) else {
        return;
    };
    let nodes: Value = serde_json::from_str(&nodes).unwrap_or(json!({}));
    let cidrs: HashMap<String, String> = items(&nodes)
        .iter()
        .map(|n| {
            (
                s(n, "/metadata/name").to_string(),
                s(n, "/spec/podCIDR").to_string(),
            )
        })
        .collect();
    let Some(pods) = quiet(bin, kc, cache, &["get", "pods", "-A", "-o", "json"]) else {
        return;
    };
    let pods: Value = serde_json::from_str(&pods).unwrap_or(json!({}));
    let alive = alive.lock().unwrap().clone();
    for p in items(&pods) {
        let node = s(&p, "/spec/nodeName").to_string();
        if node.is_empty() || !alive.contains(&node) {
            continue;
        }
        let (ns, name) = (s(&p, "/metadata/namespace"), s(&p, "/metadata/name"));
        if p.pointer("/metadata/deletionTimestamp").is_some() {
            quiet(
                bin,
                kc,
                cache,
                &[
                    "delete",
                    "pod",
                    name,
                    "-n",
                    ns,
                    "--grace-period=0",
                    "--force",
                ],
            );
            continue;
        }
        let ready = p
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
        if ready {
            continue;
        }
        let Some(prefix) = cidrs.get(&node).and_then(|c| c.strip_suffix(".0/24")) else {
            continue;
        };
        let n = next_ip.entry(node.clone()).or_insert(2);
        let ip = format!("{prefix}.{n}");
        *n += 1;
        let t = now();
        let cond = |ty: &str| json!({"type": ty, "status": "True", "lastTransitionTime": t});
        let statuses: Vec<Value> = p["spec"]["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|c| {
                json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": true,
                       "started": true, "restartCount": 0, "state": {"running": {"startedAt": t}}})
            })
            .collect();
        let patch = json!({"status": {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "192.0.2.10",
            "startTime": t, "containerStatuses": statuses,
            "conditions": [cond("Initialized"), cond("Ready"), cond("ContainersReady"), cond("PodScheduled")]}})
        .to_string();
        quiet(
            bin,
            kc,
            cache,
            &[
                "patch",
                "pod",
                name,
                "-n",
                ns,
                "--subresource=status",
                "--type=merge",
                "-p",
                &patch,
            ],
        );
    }
}

/// Prints the server's log when the test fails (it lives in a temporary directory).
struct LogOnPanic(PathBuf);

impl Drop for LogOnPanic {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "--- server log ---\n{}",
                fs::read_to_string(&self.0).unwrap_or_default()
            );
        }
    }
}

fn rollout_status(k: &Kubectl, ns: &str, name: &str) {
    let out = k.ok(&[
        "rollout",
        "status",
        &format!("deployment/{name}"),
        "-n",
        ns,
        "--timeout=120s",
    ]);
    assert!(
        out.contains(&format!("deployment \"{name}\" successfully rolled out")),
        "{out}"
    );
}

fn replica_sets(k: &Kubectl, ns: &str) -> Vec<Value> {
    items(&get_json(k, &["rs", "-n", ns]))
}

fn revision(rs: &Value) -> &str {
    s(
        rs,
        "/metadata/annotations/deployment.kubernetes.io~1revision",
    )
}

/// A rollout cycle any kubectl version must drive: create, roll, update, history, undo, scale.
fn rollout_cycle(k: &Kubectl, dir: &Path, ns: &str) {
    k.ok(&["create", "namespace", ns]);
    let out = apply(k, dir, &format!("{ns}-app"), &deployment_yaml("app", ns, 2));
    assert!(out.contains("deployment.apps/app created"), "{out}");
    rollout_status(k, ns, "app");
    assert_eq!(live_pods(k, ns, "app=app").len(), 2);
    let first = replica_sets(k, ns);
    assert_eq!(first.len(), 1);
    let first_name = s(&first[0], "/metadata/name").to_string();
    k.ok(&[
        "set",
        "image",
        "deployment/app",
        "app=busybox:musl",
        "-n",
        ns,
    ]);
    rollout_status(k, ns, "app");
    let rss = replica_sets(k, ns);
    assert_eq!(rss.len(), 2, "{rss:#?}");
    let history = k.ok(&["rollout", "history", "deployment/app", "-n", ns]);
    let h = rows(&history);
    assert!(
        h.contains(&"REVISION CHANGE-CAUSE".to_string()),
        "{history}"
    );
    assert!(h.iter().any(|r| r.starts_with("1 ")), "{history}");
    assert!(h.iter().any(|r| r.starts_with("2 ")), "{history}");
    let out = k.ok(&["rollout", "undo", "deployment/app", "-n", ns]);
    assert!(out.contains("deployment.apps/app rolled back"), "{out}");
    rollout_status(k, ns, "app");
    let back = wait_for(30, "the first ReplicaSet to be revision 3", || {
        replica_sets(k, ns)
            .into_iter()
            .find(|r| s(r, "/metadata/name") == first_name && revision(r) == "3")
    });
    assert_eq!(back["spec"]["replicas"], 2);
    for p in live_pods(k, ns, "app=app") {
        assert_eq!(s(&p, "/spec/containers/0/image"), "busybox:stable");
    }
    k.ok(&["scale", "deployment/app", "--replicas=3", "-n", ns]);
    rollout_status(k, ns, "app");
    wait_for(30, "3 pods", || {
        (live_pods(k, ns, "app=app").len() == 3).then_some(())
    });
}

#[test]
fn scheduler_and_workload_controllers_with_kubectl() {
    for bin in KUBECTLS.iter().chain(["/usr/bin/etcd"].iter()) {
        assert!(
            Path::new(bin).exists(),
            "{bin} is required (scripts/install-deps.sh)"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
    let pki = common::make_pki(dir, api_port);
    let _etcd = common::start_etcd(dir, &pki, etcd_port, peer_port);
    let _api = common::start_server(
        dir,
        &pki,
        etcd_port,
        api_port,
        &["--node-monitor-grace-period=12s"],
        "server.log",
    );
    let _log = LogOnPanic(dir.join("server.log"));
    let kubeconfig = dir.join("super-admin.conf");
    let k = Kubectl {
        bin: KUBECTLS[1],
        cache: dir.join("cache-133"),
        kubeconfig: kubeconfig.clone(),
    };
    let old = Kubectl {
        bin: KUBECTLS[0],
        cache: dir.join("cache-127"),
        kubeconfig: kubeconfig.clone(),
    };

    // Nodes: a tainted control plane and two workers, Ready, with fresh Leases.
    for (i, n) in ["cp1", "w1", "w2"].iter().enumerate() {
        apply(&k, dir, n, &node_yaml(n));
        let status = node_status(&format!("192.0.2.{}", i + 1));
        k.ok(&[
            "patch",
            "node",
            n,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status,
        ]);
    }
    let agents = FakeAgents::start(KUBECTLS[1], kubeconfig.clone(), dir);

    // Node IPAM: distinct /24s of 10.244.0.0/16.
    let cidrs: Vec<String> = wait_for(30, "podCIDRs", || {
        let list = get_json(&k, &["nodes"]);
        let c: Vec<String> = items(&list)
            .iter()
            .map(|n| s(n, "/spec/podCIDR").to_string())
            .collect();
        (c.len() == 3 && c.iter().all(|x| !x.is_empty())).then_some(c)
    });
    let unique: HashSet<&String> = cidrs.iter().collect();
    assert_eq!(unique.len(), 3, "{cidrs:?}");
    assert!(
        cidrs
            .iter()
            .all(|c| c.starts_with("10.244.") && c.ends_with(".0/24")),
        "{cidrs:?}"
    );

    // The kubernetes Service and its endpoints (this server).
    wait_for(30, "the kubernetes service", || {
        let out = quiet(
            k.bin,
            &kubeconfig,
            &k.cache,
            &[
                "get",
                "svc",
                "kubernetes",
                "-o",
                "jsonpath={.spec.clusterIP} {.spec.ports[0].port}",
            ],
        )?;
        (out == "10.96.0.1 443").then_some(())
    });
    wait_for(30, "the kubernetes endpoints", || {
        let out = quiet(
            k.bin,
            &kubeconfig,
            &k.cache,
            &["get", "endpoints", "kubernetes"],
        )?;
        rows(&out)
            .iter()
            .any(|r| r.starts_with(&format!("kubernetes 127.0.0.1:{api_port} ")))
            .then_some(())
    });

    // Service accounts and the root CA in a new namespace.
    k.ok(&["create", "namespace", "apps"]);
    wait_for(30, "the default service account", || {
        quiet(
            k.bin,
            &kubeconfig,
            &k.cache,
            &["get", "sa", "default", "-n", "apps"],
        )
        .map(|_| ())
    });
    let ca = fs::read_to_string(pki.join("ca.crt")).unwrap();
    let got = wait_for(30, "kube-root-ca.crt", || {
        quiet(
            k.bin,
            &kubeconfig,
            &k.cache,
            &[
                "get",
                "cm",
                "kube-root-ca.crt",
                "-n",
                "apps",
                "-o",
                "jsonpath={.data.ca\\.crt}",
            ],
        )
    });
    assert_eq!(got.trim(), ca.trim());

    // The 1.27 rollout cycle (in its own namespace).
    rollout_cycle(&old, dir, "old127");

    // A Deployment of 3: scheduled on the workers only, spread over both.
    let out = apply(&k, dir, "web", &deployment_yaml("web", "apps", 3));
    assert!(out.contains("deployment.apps/web created"), "{out}");
    rollout_status(&k, "apps", "web");
    let pods = live_pods(&k, "apps", "app=web");
    assert_eq!(pods.len(), 3);
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for p in &pods {
        *per_node
            .entry(s(p, "/spec/nodeName").to_string())
            .or_default() += 1;
    }
    assert_eq!(
        per_node.keys().cloned().collect::<Vec<_>>(),
        WORKERS,
        "{per_node:?}"
    );
    let out = k.ok(&["get", "deploy", "web", "-n", "apps"]);
    assert!(
        rows(&out).iter().any(|r| r.starts_with("web 3/3 3 3 ")),
        "{out}"
    );
    let pod0 = s(&pods[0], "/metadata/name").to_string();
    let out = k.ok(&["describe", "pod", &pod0, "-n", "apps"]);
    assert!(
        out.contains(&format!("Successfully assigned apps/{pod0} to w")),
        "{out}"
    );
    let rs_name = s(&replica_sets(&k, "apps")[0], "/metadata/name").to_string();
    let out = k.ok(&["describe", "deploy", "web", "-n", "apps"]);
    assert!(
        out.contains("ScalingReplicaSet")
            && out.contains(&format!("Scaled up replica set {rs_name} to 3")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "NewReplicaSet:   {rs_name} (3/3 replicas created)"
        )),
        "{out}"
    );
    let out = k.ok(&["describe", "rs", &rs_name, "-n", "apps"]);
    assert!(
        out.contains("SuccessfulCreate") && out.contains("Created pod: "),
        "{out}"
    );

    // Scale 3 → 5 → 2.
    for n in [5, 2] {
        k.ok(&[
            "scale",
            "deployment/web",
            &format!("--replicas={n}"),
            "-n",
            "apps",
        ]);
        wait_for(60, &format!("{n} pods"), || {
            (live_pods(&k, "apps", "app=web").len() == n).then_some(())
        });
        rollout_status(&k, "apps", "web");
    }
    let out = k.ok(&["describe", "rs", &rs_name, "-n", "apps"]);
    assert!(
        out.contains("SuccessfulDelete") && out.contains("Deleted pod: "),
        "{out}"
    );

    // A new image: a second ReplicaSet, two revisions; undo returns the first.
    k.ok(&[
        "set",
        "image",
        "deployment/web",
        "web=busybox:musl",
        "-n",
        "apps",
    ]);
    rollout_status(&k, "apps", "web");
    k.ok(&[
        "annotate",
        "deployment/web",
        "-n",
        "apps",
        "--overwrite",
        "kubernetes.io/change-cause=image musl",
    ]);
    let rss = replica_sets(&k, "apps");
    assert_eq!(rss.len(), 2);
    let history = wait_for(30, "history with both change causes", || {
        let h = k.ok(&["rollout", "history", "deployment/web", "-n", "apps"]);
        let r = rows(&h);
        (r.contains(&"1 create web".to_string()) && r.contains(&"2 image musl".to_string()))
            .then_some(h)
    });
    assert!(
        rows(&history).contains(&"REVISION CHANGE-CAUSE".to_string()),
        "{history}"
    );
    for p in live_pods(&k, "apps", "app=web") {
        assert_eq!(s(&p, "/spec/containers/0/image"), "busybox:musl");
    }
    let out = k.ok(&["rollout", "undo", "deployment/web", "-n", "apps"]);
    assert!(out.contains("deployment.apps/web rolled back"), "{out}");
    rollout_status(&k, "apps", "web");
    let back = wait_for(30, "the first ReplicaSet as revision 3", || {
        replica_sets(&k, "apps")
            .into_iter()
            .find(|r| s(r, "/metadata/name") == rs_name && revision(r) == "3")
    });
    assert_eq!(back["spec"]["replicas"], 2);
    assert_eq!(replica_sets(&k, "apps").len(), 2);
    let hash = s(&back, "/metadata/labels/pod-template-hash").to_string();
    wait_for(60, "pods of the first ReplicaSet only", || {
        let pods = live_pods(&k, "apps", "app=web");
        (pods.len() == 2
            && pods
                .iter()
                .all(|p| s(p, "/metadata/labels/pod-template-hash") == hash))
        .then_some(())
    });
    let out = k.ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "apps",
        "-o",
        "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
    ]);
    assert_eq!(out, "3");

    // expose: the Endpoints list the ready pods' IPs on the container port.
    k.ok(&[
        "expose",
        "deployment/web",
        "--port=80",
        "--target-port=8080",
        "-n",
        "apps",
    ]);
    wait_for(30, "endpoints with the pod IPs", || {
        let pods = live_pods(&k, "apps", "app=web");
        let mut ips: Vec<String> = pods
            .iter()
            .map(|p| s(p, "/status/podIP").to_string())
            .collect();
        ips.sort();
        let ep = get_json(&k, &["endpoints", "web", "-n", "apps"]);
        let got: Vec<String> = ep["subsets"][0]["addresses"]
            .as_array()?
            .iter()
            .map(|a| s(a, "/ip").to_string())
            .collect();
        let port_ok = ep["subsets"][0]["ports"][0]["port"] == 8080;
        let refs_ok = ep["subsets"][0]["addresses"]
            .as_array()?
            .iter()
            .all(|a| a["targetRef"]["kind"] == "Pod" && !s(a, "/nodeName").is_empty());
        (got == ips
            && ips.len() == 2
            && ips.iter().all(|ip| ip.starts_with("10.244."))
            && port_ok
            && refs_ok)
            .then_some(())
    });

    // cordon w2: new pods go to w1 only.
    k.ok(&["cordon", "w2"]);
    let out = k.ok(&["get", "nodes"]);
    assert!(
        rows(&out)
            .iter()
            .any(|r| r.starts_with("w2 Ready,SchedulingDisabled ")),
        "{out}"
    );
    let before: HashSet<String> = live_pods(&k, "apps", "app=web")
        .iter()
        .map(|p| s(p, "/metadata/name").to_string())
        .collect();
    k.ok(&["scale", "deployment/web", "--replicas=4", "-n", "apps"]);
    let added = wait_for(60, "2 more pods, scheduled", || {
        let pods = live_pods(&k, "apps", "app=web");
        let new: Vec<Value> = pods
            .into_iter()
            .filter(|p| !before.contains(s(p, "/metadata/name")))
            .collect();
        (new.len() == 2 && new.iter().all(|p| !s(p, "/spec/nodeName").is_empty())).then_some(new)
    });
    for p in &added {
        assert_eq!(s(p, "/spec/nodeName"), "w1", "a new pod on a cordoned node");
    }
    rollout_status(&k, "apps", "web");

    // A pod no node can take: Pending, with kube-scheduler's message.
    let big = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: big\n  namespace: apps\nspec:\n  containers:\n  - name: big\n    image: busybox:stable\n    resources:\n      requests:\n        cpu: \"64\"\n";
    apply(&k, dir, "big", big);
    let expected = "0/3 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 1 node(s) were unschedulable.";
    let described = wait_for(30, "FailedScheduling", || {
        let out = k.ok(&["describe", "pod", "big", "-n", "apps"]);
        (out.contains("FailedScheduling") && out.contains(expected)).then_some(out)
    });
    assert!(
        rows(&described).contains(&"Status: Pending".to_string()),
        "{described}"
    );
    let pod = get_json(&k, &["pod", "big", "-n", "apps"]);
    let cond = pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .cloned()
        .unwrap();
    assert_eq!(
        (cond["status"].as_str(), cond["reason"].as_str()),
        (Some("False"), Some("Unschedulable"))
    );
    assert_eq!(s(&pod, "/spec/nodeName"), "");
    k.ok(&[
        "delete",
        "pod",
        "big",
        "-n",
        "apps",
        "--grace-period=0",
        "--force",
    ]);
    k.ok(&["uncordon", "w2"]);

    // w1's agent dies (no more Lease renewals, no more pod updates): w1 turns Unknown and
    // tainted unreachable, its pods are evicted after their 3 s toleration and replaced on w2.
    agents.kill("w1");
    let started = Instant::now();
    wait_for(60, "w1 NotReady with the unreachable taints", || {
        let n = get_json(&k, &["node", "w1"]);
        let ready = n["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Ready")?
            .clone();
        let taints: Vec<String> = n["spec"]["taints"]
            .as_array()?
            .iter()
            .map(|t| format!("{}:{}", s(t, "/key"), s(t, "/effect")))
            .collect();
        (ready["status"] == "Unknown"
            && ready["reason"] == "NodeStatusUnknown"
            && ready["message"] == "Kubelet stopped posting node status."
            && taints.contains(&"node.kubernetes.io/unreachable:NoExecute".to_string())
            && taints.contains(&"node.kubernetes.io/unreachable:NoSchedule".to_string()))
        .then_some(())
    });
    let out = k.ok(&["get", "nodes"]);
    assert!(
        rows(&out).iter().any(|r| r.starts_with("w1 NotReady ")),
        "{out}"
    );
    wait_for(90, "all 4 pods on w2", || {
        let pods = live_pods(&k, "apps", "app=web");
        (pods.len() == 4 && pods.iter().all(|p| s(p, "/spec/nodeName") == "w2")).then_some(())
    });
    rollout_status(&k, "apps", "web");
    eprintln!("failover took {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "pods took {:?} to move",
        started.elapsed()
    );
    let events = k.ok(&["get", "events", "-n", "apps"]);
    assert!(events.contains("TaintManagerEviction"), "{events}");
    drop(agents);
}
