//! The acceptance test of the whole product, end to end with real kubectl: `dustkube init
//! --foreground` (etcd + server) in a lab network namespace, two node namespaces each with its
//! own containerd joined with `dustkube join --foreground` (TLS bootstrap; join supervises
//! `dustkube agent`), then a Deployment of busybox httpd pods: spread over both nodes with IPs
//! in the nodes' pod CIDRs, logs and exec (kubectl 1.33 and 1.27), a deleted pod replaced,
//! scaling, a rolling update with history and undo, a NodePort Service reached through its
//! ClusterIP and the node port (the agents' nftables proxy), cordon/drain/uncordon, a node
//! failure (agent killed: NotReady, pods recreated elsewhere; the node rejoins), a server crash
//! (containers keep running; init restarts the server and state reconciles), `dustkube reset`
//! of the nodes and the control plane (no files, sandboxes, nftables table or processes left),
//! and a fresh init + join. Prints the agent's RSS with 10 pods.
//!
//! Needs root, containerd, runc, the CNI plugins in /usr/lib/cni, nft, curl, etcd and kubectl
//! (scripts/install-deps.sh).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::node::{build_images, wait_for, Lab, Node, LAB_IP};
use common::{free_port, strings, wait_for_text, Kubectl, Proc, KUBECTLS};
use serde_json::Value;

/// Preflight checks this test bed cannot pass (no systemd host setup; namespaces only).
const SKIP_PREFLIGHT: &str = "root,swap,br_netfilter,ip_forward,cri";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `dustkube <args>` in the calling thread's network namespace (`ns` None) or in `ns`.
fn dustkube(ns: Option<&str>, args: &[String]) -> Output {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{ns}"))
                .arg(env!("CARGO_BIN_EXE_dustkube"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_dustkube")),
    };
    let out = cmd.args(args).stdin(Stdio::null()).output().unwrap();
    eprintln!(
        "$ dustkube {}\n{}{}",
        args.join(" "),
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// Processes whose parent is `pid`: (pid, command line).
fn children_of(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let after = stat.rsplit(')').next().unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        if fields.first() == Some(&"Z") {
            continue;
        }
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            let cmd = fs::read(e.path().join("cmdline")).unwrap_or_default();
            out.push((child, text(&cmd).replace('\0', " ")));
        }
    }
    out
}

/// The child of `parent` whose command line contains `needle`.
fn child_pid(parent: u32, needle: &str) -> Option<u32> {
    children_of(parent)
        .into_iter()
        .find(|(_, c)| c.contains(needle))
        .map(|(p, _)| p)
}

fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
    })
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status();
}

fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn in_cidr(ip: &str, cidr: &str) -> bool {
    let (net, bits) = cidr.split_once('/').unwrap();
    let bits: u32 = bits.parse().unwrap();
    let a: std::net::Ipv4Addr = ip.parse().unwrap();
    let n: std::net::Ipv4Addr = net.parse().unwrap();
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    u32::from(a) & mask == u32::from(n) & mask
}

/// The control plane: `dustkube init --foreground` with its directories and ports.
struct Plane {
    dir: PathBuf,
    api: u16,
    etcd: u16,
    peer: u16,
}

impl Plane {
    fn p(&self, f: &str) -> String {
        self.dir.join(f).to_str().unwrap().to_string()
    }

    fn admin(&self) -> PathBuf {
        self.dir.join("conf/admin.conf")
    }

    /// Starts init (in the calling thread's namespace) and waits until it serves.
    fn start(&self, log: &str) -> Proc {
        fs::create_dir_all(&self.dir).unwrap();
        let log = self.dir.join(log);
        let args = strings(&[
            "init",
            "--node-name",
            "cp1",
            "--advertise-address",
            &LAB_IP.to_string(),
            "--apiserver-bind-address",
            "0.0.0.0",
            "--apiserver-bind-port",
            &self.api.to_string(),
            "--etcd-client-port",
            &self.etcd.to_string(),
            "--etcd-peer-port",
            &self.peer.to_string(),
            "--pki-dir",
            &self.p("pki"),
            "--kubeconfig-dir",
            &self.p("conf"),
            "--data-dir",
            &self.p("etcd-data"),
            "--log-dir",
            &self.p("logs"),
            "--run-dir",
            &self.p("run"),
            "--key-algorithm",
            "ecdsa-p256",
            "--skip-preflight",
            SKIP_PREFLIGHT,
        ]);
        let proc = Proc::spawn(
            "dustkube init",
            Command::new(env!("CARGO_BIN_EXE_dustkube")).args(&args),
            &log,
        );
        wait_for_text(&log, "running in the foreground", 120);
        proc
    }

    fn reset_args(&self) -> Vec<String> {
        strings(&[
            "reset",
            "--force",
            "--kubeconfig-dir",
            &self.p("conf"),
            "--pki-dir",
            &self.p("pki"),
            "--data-dir",
            &self.p("etcd-data"),
            "--root-dir",
            &self.p("root"),
            "--run-dir",
            &self.p("run"),
            "--cni-conf-dir",
            &self.p("cni"),
            "--cri-socket",
            &self.p("no-runtime.sock"),
            "--etcd-endpoint",
            &format!("https://127.0.0.1:{}", self.etcd),
        ])
    }
}

/// `dustkube token create --print-join-command` → the join command's words after `join`.
fn join_command(plane: &Plane) -> (String, String, String) {
    let out = dustkube(
        None,
        &strings(&[
            "token",
            "--kubeconfig",
            plane.admin().to_str().unwrap(),
            "create",
            "--print-join-command",
        ]),
    );
    assert!(out.status.success());
    let t = text(&out.stdout);
    let w: Vec<&str> = t.split_whitespace().collect();
    assert_eq!(&w[..2], ["dustkube", "join"], "{t}");
    assert_eq!(w[3], "--token", "{t}");
    assert_eq!(w[5], "--discovery-token-ca-cert-hash", "{t}");
    (w[2].to_string(), w[4].to_string(), w[6].to_string())
}

/// A `dustkube join --foreground` running in a node's namespace (it supervises the agent).
/// Dropping it kills the agent and join, so nothing outlives a failed test.
struct Joined {
    proc: Option<Proc>,
}

impl Joined {
    fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// The agent process join supervises.
    fn agent_pid(&self) -> Option<u32> {
        self.pid().and_then(|p| child_pid(p, " agent "))
    }

    fn kill(&mut self) {
        if let Some(pid) = self.pid() {
            signal(pid, "STOP");
            for (child, _) in children_of(pid) {
                signal(child, "KILL");
            }
        }
        self.proc.take();
    }
}

impl Drop for Joined {
    fn drop(&mut self) {
        self.kill();
    }
}

fn node_dir(node: &Node, f: &str) -> String {
    node.dir.join(f).to_str().unwrap().to_string()
}

/// Starts `dustkube join` for `node`; returns once the agent process runs.
fn join(node: &Node, endpoint: &str, token: &str, hash: &str, log: &str) -> Joined {
    let args = strings(&[
        "join",
        endpoint,
        "--token",
        token,
        "--discovery-token-ca-cert-hash",
        hash,
        "--node-name",
        &node.name,
        "--node-ip",
        &node.ip.to_string(),
        "--cri-socket",
        node.sock.to_str().unwrap(),
        "--kubeconfig-dir",
        &node_dir(node, "conf"),
        "--root-dir",
        node.agent_root().to_str().unwrap(),
        "--cni-conf-dir",
        &node_dir(node, "cni"),
        "--run-dir",
        &node_dir(node, "run"),
        "--log-dir",
        &node_dir(node, "logs"),
        "--skip-preflight",
        SKIP_PREFLIGHT,
        "--foreground",
    ]);
    let log = node.dir.join(log);
    let proc = Proc::spawn(
        "dustkube join",
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", node.ns))
            .arg(env!("CARGO_BIN_EXE_dustkube"))
            .args(&args)
            .env("RUST_LOG", "info"),
        &log,
    );
    let joined = Joined { proc: Some(proc) };
    wait_for_text(&log, "running in the foreground", 60);
    wait_for(10, "the supervised agent", || joined.agent_pid());
    joined
}

/// Prints the warnings and errors of a log (diagnosis; the outcomes are asserted elsewhere).
fn print_warnings(what: &str, log: &Path) {
    let log = fs::read_to_string(log).unwrap_or_default();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    eprintln!(
        "{what}: {} log lines, {} warnings/errors; the last ones:\n{}",
        log.lines().count(),
        warnings.len(),
        warnings[warnings.len().saturating_sub(15)..].join("\n")
    );
}

/// One row of `kubectl get pods -o wide`.
#[derive(Debug, Clone)]
struct PodRow {
    name: String,
    ready: String,
    status: String,
    ip: String,
    node: String,
}

impl PodRow {
    fn running(&self) -> bool {
        self.ready == "1/1" && self.status == "Running"
    }
}

/// The web pods as `kubectl get pods -l app=web -o wide` prints them.
fn web_pods(k: &Kubectl) -> Vec<PodRow> {
    let out = k.run(&["get", "pods", "-l", "app=web", "-o", "wide", "--no-headers"]);
    if !out.status.success() {
        return Vec::new();
    }
    text(&out.stdout)
        .lines()
        .filter_map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            // NAME READY STATUS RESTARTS AGE IP NODE NOMINATED-NODE READINESS-GATES, where
            // RESTARTS may be "1 (5s ago)": IP and NODE are counted from the end.
            (t.len() >= 9).then(|| PodRow {
                name: t[0].into(),
                ready: t[1].into(),
                status: t[2].into(),
                ip: t[t.len() - 4].into(),
                node: t[t.len() - 3].into(),
            })
        })
        .collect()
}

/// Waits until exactly `n` web pods are listed, all Running 1/1 (and `check` holds).
fn wait_web(k: &Kubectl, n: usize, secs: u64, check: impl Fn(&[PodRow]) -> bool) -> Vec<PodRow> {
    wait_for(secs, &format!("{n} web pods Running"), || {
        let rows = web_pods(k);
        (rows.len() == n && rows.iter().all(PodRow::running) && check(&rows)).then_some(rows)
    })
}

/// Running web pods per node (ignoring terminating ones).
fn per_node(rows: &[PodRow]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in rows.iter().filter(|r| r.running()) {
        *m.entry(r.node.clone()).or_insert(0) += 1;
    }
    m
}

fn get_json(k: &Kubectl, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&k.ok(&all)).unwrap()
}

/// Node name → STATUS column of `kubectl get nodes`.
fn node_status(k: &Kubectl) -> BTreeMap<String, String> {
    let out = k.run(&["get", "nodes", "--no-headers"]);
    text(&out.stdout)
        .lines()
        .filter_map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            (t.len() >= 2).then(|| (t[0].to_string(), t[1].to_string()))
        })
        .collect()
}

fn wait_nodes_ready(k: &Kubectl, names: &[&str], secs: u64) {
    wait_for(secs, &format!("nodes {names:?} Ready"), || {
        let st = node_status(k);
        names
            .iter()
            .all(|n| st.get(*n).map(String::as_str) == Some("Ready"))
            .then_some(())
    });
}

/// The container IDs (without `containerd://`) of the running web pods.
fn web_container_ids(k: &Kubectl) -> BTreeMap<String, String> {
    let list = get_json(k, &["pods", "-l", "app=web"]);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .filter_map(|p| {
            let id = p
                .pointer("/status/containerStatuses/0/containerID")
                .and_then(Value::as_str)?;
            Some((
                p["metadata"]["name"].as_str().unwrap().to_string(),
                id.trim_start_matches("containerd://").to_string(),
            ))
        })
        .collect()
}

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      terminationGracePeriodSeconds: 1
      tolerations:
      - key: node.kubernetes.io/unreachable
        operator: Exists
        effect: NoExecute
        tolerationSeconds: 5
      - key: node.kubernetes.io/not-ready
        operator: Exists
        effect: NoExecute
        tolerationSeconds: 5
      containers:
      - name: web
        image: busybox:stable
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && echo serving $(hostname) && exec httpd -f -p 80 -h /www"]
        ports:
        - containerPort: 80
"#;

#[test]
fn cluster_acceptance() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let images = dir.join("images");
    build_images(&images);
    let lab = Lab::new("clus");
    lab.run(|| scenario(&lab, &dir, &images));
    eprintln!("cluster acceptance took {:?}", started.elapsed());
}

fn scenario(lab: &Lab, dir: &Path, images: &Path) {
    let plane = Plane {
        dir: dir.join("cp"),
        api: free_port(),
        etcd: free_port(),
        peer: free_port(),
    };
    let mut nodes: Vec<Node> = (1..=2).map(|n| Node::new(lab, n, dir, images)).collect();
    // Declared after the nodes: dropped first (agents stop before containerd).
    let mut init = Some(plane.start("init.out"));
    let mut joins: Vec<Joined> = Vec::new();
    let k = Kubectl {
        bin: KUBECTLS[1],
        cache: dir.join("cache-133"),
        kubeconfig: plane.admin(),
    };
    let old = Kubectl {
        bin: KUBECTLS[0],
        cache: dir.join("cache-127"),
        kubeconfig: plane.admin(),
    };

    // --- Join both nodes.
    let (endpoint, token, hash) = join_command(&plane);
    assert_eq!(endpoint, format!("{LAB_IP}:{}", plane.api));
    for (i, node) in nodes.iter().enumerate() {
        joins.push(join(
            node,
            &endpoint,
            &token,
            &hash,
            &format!("join-{i}.out"),
        ));
        let out = fs::read_to_string(node.dir.join(format!("join-{i}.out"))).unwrap();
        assert!(out.contains("This node has joined the cluster"), "{out}");
    }
    wait_nodes_ready(&k, &["node-1", "node-2"], 60);
    for kc in [&k, &old] {
        let wide = kc.ok(&["get", "nodes", "-o", "wide"]);
        for n in &nodes {
            let row = wide
                .lines()
                .find(|l| l.starts_with(&n.name))
                .unwrap_or_else(|| panic!("{} missing:\n{wide}", n.name));
            assert!(row.contains(" Ready "), "{row}");
            assert!(row.contains(&n.ip.to_string()), "{row}");
        }
    }
    let mut cidrs = BTreeMap::new();
    for n in &nodes {
        let node = get_json(&k, &["node", &n.name]);
        let cidr = node
            .pointer("/spec/podCIDR")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{} has no podCIDR: {node}", n.name))
            .to_string();
        cidrs.insert(n.name.clone(), cidr);
    }
    assert_ne!(cidrs["node-1"], cidrs["node-2"]);

    // --- A Deployment of 3 busybox httpd pods spread over both nodes.
    let manifest = dir.join("web.yaml");
    fs::write(&manifest, DEPLOYMENT).unwrap();
    k.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    let rows = wait_web(&k, 3, 120, |rows| per_node(rows).len() == 2);
    for r in &rows {
        assert!(
            in_cidr(&r.ip, &cidrs[&r.node]),
            "pod {} IP {} outside {}'s {}",
            r.name,
            r.ip,
            r.node,
            cidrs[&r.node]
        );
    }
    wait_for(30, "deployment web 3/3 up to date and available", || {
        let deploy = k.ok(&["get", "deployment", "web", "--no-headers"]);
        let cols: Vec<&str> = deploy.split_whitespace().collect();
        (cols.len() >= 4 && cols[..4] == ["web", "3/3", "3", "3"]).then_some(())
    });

    // --- Logs and exec, with both kubectl generations.
    let pod = rows[0].name.clone();
    for kc in [&k, &old] {
        let table = kc.ok(&["get", "pods", "-o", "wide"]);
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(&pod) && l.contains("Running")),
            "{table}"
        );
        let logs = kc.ok(&["logs", &pod]);
        assert_eq!(logs.trim(), format!("serving {pod}"));
        let host = kc.ok(&["exec", &pod, "--", "cat", "/etc/hostname"]);
        assert_eq!(host.trim(), pod);
    }

    // --- A deleted pod is replaced.
    k.ok(&["delete", "pod", &pod, "--wait=true", "--timeout=60s"]);
    let rows = wait_web(&k, 3, 60, |rows| rows.iter().all(|r| r.name != pod));
    eprintln!("replaced {pod}: {rows:?}");

    // --- Scale 3 → 5 → 2 → 3.
    k.ok(&["scale", "deployment/web", "--replicas=5"]);
    let rows = wait_web(&k, 5, 90, |_| true);
    assert_eq!(per_node(&rows).len(), 2, "{rows:?}");
    k.ok(&["scale", "deployment/web", "--replicas=2"]);
    wait_web(&k, 2, 60, |_| true);
    k.ok(&["scale", "deployment/web", "--replicas=3"]);
    wait_web(&k, 3, 60, |_| true);

    // --- Rolling update, history, undo.
    k.ok(&["set", "image", "deploy/web", "web=busybox:musl"]);
    k.ok(&["rollout", "status", "deploy/web", "--timeout=120s"]);
    let rows = wait_web(&k, 3, 60, |_| true);
    let flavor = k.ok(&["exec", &rows[0].name, "--", "cat", "/etc/busybox-flavor"]);
    assert_eq!(flavor.trim(), "musl");
    let history = k.ok(&["rollout", "history", "deploy/web"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    k.ok(&["rollout", "undo", "deploy/web"]);
    k.ok(&["rollout", "status", "deploy/web", "--timeout=120s"]);
    let image = k.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "busybox:stable");
    let rows = wait_web(&k, 3, 60, |_| true);
    let images_now = k.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].spec.containers[0].image}",
    ]);
    assert_eq!(
        images_now.split_whitespace().collect::<BTreeSet<_>>(),
        BTreeSet::from(["busybox:stable"]),
        "{images_now}"
    );
    let flavor = k.ok(&["exec", &rows[0].name, "--", "cat", "/etc/busybox-flavor"]);
    assert_eq!(flavor.trim(), "stable");

    // --- A NodePort Service: ClusterIP from a node, node port from outside the nodes.
    k.ok(&[
        "expose", "deploy", "web", "--port", "80", "--type", "NodePort",
    ]);
    let svc = get_json(&k, &["service", "web"]);
    let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    let node_port = svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    assert!(
        (30000..=32767).contains(&node_port),
        "node port {node_port}"
    );
    let svc_row = k.ok(&["get", "service", "web", "--no-headers"]);
    assert!(svc_row.contains("NodePort"), "{svc_row}");
    assert!(
        svc_row.contains(&format!("80:{node_port}/TCP")),
        "{svc_row}"
    );
    let names: BTreeSet<String> = rows.iter().map(|r| r.name.clone()).collect();
    let answered_by_web = |out: &Output| {
        let body = text(&out.stdout);
        (out.status.success() && names.contains(body.trim())).then_some(body)
    };
    for node in &nodes {
        wait_for(30, &format!("ClusterIP from {}", node.name), || {
            answered_by_web(&node.sh(&format!("curl -sS -m 3 http://{cluster_ip}:80/")))
        });
    }
    // From inside a pod (each pod: possibly its own endpoint, the hairpin case).
    let get = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {cluster_ip} 80");
    for r in &rows {
        let reply = wait_for(30, &format!("ClusterIP from pod {}", r.name), || {
            let out = k.run(&["exec", &r.name, "--", "sh", "-c", &get]);
            let body = text(&out.stdout);
            let last = body.lines().last().unwrap_or("").trim().to_string();
            (out.status.success() && body.starts_with("HTTP/1.") && names.contains(&last))
                .then_some(body)
        });
        assert!(reply.contains("200 OK"), "{reply}");
    }
    for node in &nodes {
        let url = format!("http://{}:{node_port}/", node.ip);
        // From the lab network (outside every node) and from the other node.
        wait_for(30, &format!("NodePort {url} from the lab"), || {
            let out = Command::new("curl")
                .args(["-sS", "-m", "3", &url])
                .output()
                .unwrap();
            eprintln!("$ curl {url}\n{}{}", text(&out.stdout), text(&out.stderr));
            answered_by_web(&out)
        });
        let other = nodes.iter().find(|n| n.name != node.name).unwrap();
        wait_for(30, &format!("NodePort {url} from {}", other.name), || {
            answered_by_web(&other.sh(&format!("curl -sS -m 3 {url}")))
        });
    }

    // --- Cordon and drain node-1: its pods move to node-2; 10 pods there for the footprint.
    k.ok(&["cordon", "node-1"]);
    assert_eq!(
        node_status(&k).get("node-1").map(String::as_str),
        Some("Ready,SchedulingDisabled")
    );
    k.ok(&[
        "drain",
        "node-1",
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=90s",
    ]);
    let rows = wait_web(&k, 3, 90, |rows| rows.iter().all(|r| r.node == "node-2"));
    eprintln!("after drain: {rows:?}");
    k.ok(&["scale", "deployment/web", "--replicas=10"]);
    wait_web(&k, 10, 180, |rows| rows.iter().all(|r| r.node == "node-2"));
    std::thread::sleep(Duration::from_secs(3));
    let agent2 = joins[1].agent_pid().expect("node-2's agent");
    let rss = rss_kib(agent2);
    eprintln!(
        "agent RSS with 10 pods: {rss} KiB ({:.1} MiB)",
        rss as f64 / 1024.0
    );
    assert!(rss > 0);
    k.ok(&["scale", "deployment/web", "--replicas=4"]);
    wait_web(&k, 4, 90, |_| true);
    k.ok(&["uncordon", "node-1"]);
    assert_eq!(
        node_status(&k).get("node-1").map(String::as_str),
        Some("Ready")
    );
    k.ok(&["scale", "deployment/web", "--replicas=6"]);
    let rows = wait_web(&k, 6, 90, |rows| {
        per_node(rows).get("node-1").copied().unwrap_or(0) >= 1
    });
    eprintln!("after uncordon: {:?}", per_node(&rows));

    // --- node-2's agent is killed: join restarts it, which adopts the running pods.
    let ids = web_container_ids(&k);
    let agent2 = joins[1].agent_pid().expect("node-2's agent");
    signal(agent2, "KILL");
    let agent2b = wait_for(15, "join restarts node-2's agent", || {
        joins[1].agent_pid().filter(|p| *p != agent2)
    });
    eprintln!("node-2's agent {agent2} killed; join restarted it as {agent2b}");
    let log = wait_for_text(
        &nodes[1].dir.join("join-1.out"),
        "restarted dustkube agent",
        5,
    );
    assert!(log.contains("[supervisor] dustkube agent exited"), "{log}");
    std::thread::sleep(Duration::from_secs(5));
    wait_web(&k, 6, 30, |_| true);
    assert_eq!(
        web_container_ids(&k),
        ids,
        "the restarted agent recreated pods"
    );
    assert_eq!(
        node_status(&k).get("node-2").map(String::as_str),
        Some("Ready")
    );

    // --- Node failure: node-1's agent dies (join is frozen so nothing restarts it).
    let lost: BTreeSet<String> = rows
        .iter()
        .filter(|r| r.node == "node-1")
        .map(|r| r.name.clone())
        .collect();
    let agent1 = joins[0].agent_pid().expect("node-1's agent");
    joins[0].kill();
    wait_for(5, "node-1's agent gone after SIGKILL", || {
        (!alive(agent1)).then_some(())
    });
    let t0 = Instant::now();
    wait_for(60, "node-1 NotReady/Unknown", || {
        let st = node_status(&k);
        st.get("node-1")
            .is_some_and(|s| s.starts_with("NotReady") || s.starts_with("Unknown"))
            .then_some(())
    });
    eprintln!("node-1 NotReady after {:?}", t0.elapsed());
    let ready = get_json(&k, &["node", "node-1"]);
    let cond = ready["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .unwrap();
    assert_eq!(cond["status"], "Unknown", "{cond}");
    let rows = wait_for(90, "node-1's pods recreated on node-2", || {
        let rows = web_pods(&k);
        let running: Vec<&PodRow> = rows.iter().filter(|r| r.running()).collect();
        (running.len() == 6
            && running
                .iter()
                .all(|r| r.node == "node-2" && !lost.contains(&r.name)))
        .then_some(rows)
    });
    eprintln!("node failure handled after {:?}: {rows:?}", t0.elapsed());
    // The Service follows: its endpoints are the pods on node-2 only, and the ClusterIP
    // answers from those (node-1's orphaned containers still serve, so a stale rule would
    // show up as an answer from a lost pod).
    let live: BTreeSet<String> = rows
        .iter()
        .filter(|r| r.running())
        .map(|r| r.name.clone())
        .collect();
    wait_for(30, "endpoints of web on node-2 only", || {
        let ep = get_json(&k, &["endpoints", "web"]);
        let addrs: Vec<Value> = ep
            .pointer("/subsets/0/addresses")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let targets: BTreeSet<String> = addrs
            .iter()
            .filter_map(|a| a.pointer("/targetRef/name").and_then(Value::as_str))
            .map(String::from)
            .collect();
        (targets == live && addrs.iter().all(|a| a["nodeName"] == "node-2")).then_some(())
    });
    wait_for(30, "the ClusterIP answers from node-2's pods only", || {
        let answers: Vec<String> = (0..8)
            .map(|_| {
                let out = nodes[1].sh(&format!("curl -sS -m 3 http://{cluster_ip}:80/"));
                text(&out.stdout).trim().to_string()
            })
            .collect();
        answers.iter().all(|a| live.contains(a)).then_some(())
    });
    // node-1 comes back: join again finds kubelet.conf and runs the agent; the evicted pods
    // finish terminating there.
    joins[0] = join(&nodes[0], &endpoint, &token, &hash, "join-0-again.out");
    let again = fs::read_to_string(nodes[0].dir.join("join-0-again.out")).unwrap();
    assert!(again.contains("already joined"), "{again}");
    wait_nodes_ready(&k, &["node-1"], 60);
    wait_web(&k, 6, 60, |rows| rows.iter().all(|r| r.node == "node-2"));

    // --- The server crashes: containers keep running; init restarts it; state reconciles.
    let before = web_container_ids(&k);
    assert_eq!(before.len(), 6);
    let init_pid = init.as_ref().unwrap().pid();
    let server = child_pid(init_pid, " server ").expect("init's dustkube server");
    signal(server, "KILL");
    for id in before.values() {
        assert!(
            nodes[1]
                .tasks()
                .iter()
                .any(|(t, st)| t == id && st == "RUNNING"),
            "container {id} stopped with the server down: {:?}",
            nodes[1].tasks()
        );
    }
    let pod_ip = rows.iter().find(|r| r.running()).unwrap().ip.clone();
    let out = nodes[1].sh(&format!("curl -sS -m 3 http://{pod_ip}:80/"));
    assert!(
        out.status.success(),
        "a pod stopped serving without the server"
    );
    // While the server is away a container dies: the agent restarts it on its own.
    let (victim, victim_id) = before
        .iter()
        .next()
        .map(|(p, c)| (p.clone(), c.clone()))
        .unwrap();
    let kill = nodes[1].ctr(&["tasks", "kill", "-s", "SIGKILL", &victim_id]);
    assert!(kill.status.success(), "{}", text(&kill.stderr));
    let log = wait_for_text(&plane.dir.join("init.out"), "restarted dustkube server", 30);
    assert!(log.contains("[supervisor] dustkube server exited"), "{log}");
    let restarted = child_pid(init_pid, " server ").expect("a new server");
    assert_ne!(restarted, server);
    wait_for(60, "kubectl works again", || {
        k.run(&["get", "pods"]).status.success().then_some(())
    });
    wait_nodes_ready(&k, &["node-1", "node-2"], 60);
    // The state reconciles: the killed container's restart shows, the others are untouched.
    let pod = wait_for(60, "the killed container's restart reported", || {
        let pod = get_json(&k, &["pod", &victim]);
        (pod.pointer("/status/containerStatuses/0/restartCount") == Some(&1.into())).then_some(pod)
    });
    assert_eq!(
        pod.pointer("/status/containerStatuses/0/lastState/terminated/exitCode"),
        Some(&137.into()),
        "{pod}"
    );
    let rows = wait_web(&k, 6, 60, |_| true);
    let restarts = k.ok(&["get", "pod", &victim, "--no-headers"]);
    assert_eq!(restarts.split_whitespace().nth(3), Some("1"), "{restarts}");
    let after = web_container_ids(&k);
    assert_ne!(after[&victim], victim_id);
    for (pod, id) in &before {
        if *pod != victim {
            assert_eq!(
                &after[pod], id,
                "{pod} was recreated after the server restart"
            );
        }
    }
    for id in after.values() {
        assert!(
            nodes[1]
                .tasks()
                .iter()
                .any(|(t, st)| t == id && st == "RUNNING"),
            "container {id} not running after the server restart"
        );
    }
    assert_eq!(rows.len(), after.len());
    let etcd_pid = children_of(init_pid)
        .into_iter()
        .find(|(_, c)| c.starts_with("/usr/bin/etcd "))
        .map(|(p, _)| p)
        .expect("init's etcd");
    for node in &nodes {
        print_warnings(&node.name, &node.dir.join("logs/dustkube-agent.log"));
    }
    print_warnings("server", &plane.dir.join("logs/dustkube-server.log"));

    // --- Reset both nodes and the control plane.
    for (i, node) in nodes.iter().enumerate() {
        let join_pid = joins[i].pid().unwrap();
        let agent_pid = joins[i].agent_pid().unwrap();
        let args = strings(&[
            "reset",
            "--force",
            "--kubeconfig-dir",
            &node_dir(node, "conf"),
            "--root-dir",
            node.agent_root().to_str().unwrap(),
            "--cni-conf-dir",
            &node_dir(node, "cni"),
            "--cri-socket",
            node.sock.to_str().unwrap(),
            "--run-dir",
            &node_dir(node, "run"),
            "--data-dir",
            &node_dir(node, "etcd-data"),
        ]);
        assert!(node.dir.join("cni/10-dustkube.conflist").exists());
        assert!(node.sh("nft list table inet dustkube").status.success());
        let out = dustkube(Some(&node.ns), &args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let said = text(&out.stdout);
        assert!(
            said.contains(&format!("[reset] stopped dustkube join (pid {join_pid})")),
            "{said}"
        );
        // node-2 runs the web pods (node-1 lost its pods in the failure above).
        let sandboxes = said
            .matches("[reset] removed pod sandbox default/web-")
            .count();
        if node.name == "node-2" {
            assert!(sandboxes >= 6, "{said}");
        }
        assert!(
            said.contains("[reset] removed nftables table inet dustkube"),
            "{said}"
        );
        for p in [
            node.dir.join("conf"),
            node.agent_root(),
            node.dir.join("cni/10-dustkube.conflist"),
        ] {
            assert!(!p.exists(), "{} still exists", p.display());
        }
        wait_for(5, &format!("join and agent of {} gone", node.name), || {
            (!alive(join_pid) && !alive(agent_pid)).then_some(())
        });
        let sandboxes = node.ctr(&["containers", "ls", "-q"]);
        assert_eq!(text(&sandboxes.stdout).trim(), "", "containers left");
        assert!(node.tasks().is_empty(), "{:?}", node.tasks());
        let nft = node.sh("nft list tables");
        assert!(
            !text(&nft.stdout).contains("dustkube"),
            "nftables table left"
        );
        let again = dustkube(Some(&node.ns), &args);
        assert!(text(&again.stdout).contains("nothing to remove"));
    }
    for j in joins.iter_mut() {
        j.proc.take();
    }
    let out = dustkube(None, &plane.reset_args());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains(&format!("[reset] stopped dustkube init (pid {init_pid})")),
        "{said}"
    );
    for p in ["etcd-data", "pki", "conf", "run"] {
        assert!(!plane.dir.join(p).exists(), "{p} still exists");
    }
    wait_for(5, "init, its etcd and its server gone", || {
        (!alive(init_pid) && !alive(restarted) && !alive(etcd_pid)).then_some(())
    });
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", plane.etcd)).is_err(),
        "etcd still listens"
    );
    assert!(
        std::net::TcpStream::connect((LAB_IP, plane.api)).is_err(),
        "the API still listens"
    );
    let nft = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    assert!(
        !text(&nft.stdout).contains("dustkube"),
        "nftables table left"
    );
    init.take();

    // --- A fresh control plane and join.
    init = Some(plane.start("init-2.out"));
    let (endpoint, token, hash2) = join_command(&plane);
    assert_ne!(hash2, hash, "a new CA after reset");
    joins.push(join(&nodes[0], &endpoint, &token, &hash2, "join-fresh.out"));
    wait_nodes_ready(&k, &["node-1"], 60);
    let st = node_status(&k);
    assert!(!st.contains_key("node-2"), "a fresh cluster: {st:?}");
    k.ok(&[
        "run",
        "fresh",
        "--image=busybox:stable",
        "--restart=Never",
        "--command",
        "--",
        "sh",
        "-c",
        "echo fresh-$(hostname); exec sleep 3600",
    ]);
    let row = wait_for(60, "pod fresh Running on node-1", || {
        let out = k.run(&["get", "pod", "fresh", "-o", "wide", "--no-headers"]);
        let t = text(&out.stdout);
        let w: Vec<&str> = t.split_whitespace().collect();
        (w.len() >= 9 && w[1] == "1/1" && w[2] == "Running" && w[w.len() - 3] == "node-1")
            .then(|| t.clone())
    });
    let ip = row.split_whitespace().rev().nth(3).unwrap().to_string();
    let cidr = get_json(&k, &["node", "node-1"])["spec"]["podCIDR"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(in_cidr(&ip, &cidr), "{ip} outside {cidr}");
    assert_eq!(k.ok(&["logs", "fresh"]).trim(), "fresh-fresh");
    drop(joins);
    drop(init);
    nodes.clear();
}
