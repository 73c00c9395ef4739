//! The node agent against real containerd: etcd and the server in a lab network namespace, two
//! node namespaces each with its own containerd and `dustkube agent` (client certificate
//! `system:node:<name>`), checked with real kubectl: nodes Ready, pods Running 1/1 with IPs in
//! their node's pod CIDR, HTTP between pods across nodes, logs, exec, deletion stopping the
//! containers, restarts of a crashing container, pods surviving a server outage (and an agent
//! restart without being recreated), and the agent's RSS with 10 pods.
//!
//! Needs root, containerd, runc, the CNI plugins in /usr/lib/cni, busybox-static, etcd and
//! kubectl (scripts/install-deps.sh).

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::node::{build_images, lab_pki, wait_for, Lab, Node, LAB_IP};
use common::{free_port, start_etcd, start_server, user_kubeconfig, Kubectl, Proc, KUBECTLS};
use serde_json::Value;

/// The pod CIDR of node `n` when the IPAM controller has not set one.
fn cidr_for(n: u8) -> String {
    format!("10.244.{n}.0/24")
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

fn pod_yaml(name: &str, node: &str, command: &str, restart: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels:
    app: {name}
spec:
  nodeName: {node}
  restartPolicy: {restart}
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: busybox:stable
    command: ["sh", "-c", {command:?}]
    env:
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: POD_IP
      valueFrom:
        fieldRef:
          fieldPath: status.podIP
    ports:
    - containerPort: 8080
"#
    )
}

/// Probes: web-probed turns ready through an httpGet readiness probe; its liveness exec probe
/// fails once /tmp/alive is removed, which restarts the container.
const PROBED: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: web-probed
spec:
  nodeName: node-2
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:musl
    command: ["sh", "-c", "touch /tmp/alive; mkdir -p /www; echo ok > /www/index.html; exec httpd -f -p 8080 -h /www"]
    ports:
    - name: http
      containerPort: 8080
    env:
    - name: GREETING
      valueFrom:
        configMapKeyRef:
          name: probe-config
          key: greeting
    volumeMounts:
    - name: config
      mountPath: /config
    - name: scratch
      mountPath: /scratch
    readinessProbe:
      httpGet:
        path: /index.html
        port: http
      periodSeconds: 1
    livenessProbe:
      exec:
        command: ["test", "-f", "/tmp/alive"]
      periodSeconds: 1
      failureThreshold: 2
  volumes:
  - name: config
    configMap:
      name: probe-config
  - name: scratch
    emptyDir: {}
"#;

fn get_json(k: &Kubectl, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&k.ok(&all)).unwrap()
}

/// The row of `kubectl get pods` for `name`: [NAME, READY, STATUS, RESTARTS, AGE...].
fn pod_row(k: &Kubectl, name: &str) -> Vec<String> {
    let out = k.run(&["get", "pods", name, "--no-headers"]);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}

fn wait_running(k: &Kubectl, name: &str, secs: u64) -> Value {
    wait_for(secs, &format!("pod {name} Running 1/1"), || {
        let row = pod_row(k, name);
        (row.len() >= 3 && row[1] == "1/1" && row[2] == "Running")
            .then(|| get_json(k, &["get", "pod", name]))
    })
}

fn rss_kib(pid: u32) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

struct Cluster {
    _etcd: Proc,
    server: Option<Proc>,
    dir: std::path::PathBuf,
    pki: std::path::PathBuf,
    etcd_port: u16,
    api_port: u16,
}

impl Cluster {
    fn start_server(&mut self, log: &str) {
        let p = |f: &str| self.pki.join(f).to_str().unwrap().to_string();
        let extra = [
            "--bind-address".to_string(),
            "0.0.0.0".to_string(),
            "--kubelet-client-certificate".to_string(),
            p("apiserver-kubelet-client.crt"),
            "--kubelet-client-key".to_string(),
            p("apiserver-kubelet-client.key"),
        ];
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        self.server = Some(start_server(
            &self.dir,
            &self.pki,
            self.etcd_port,
            self.api_port,
            &extra,
            log,
        ));
    }
}

#[test]
fn agent_runs_pods_on_two_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let images = dir.join("images");
    build_images(&images);
    let lab = Lab::new("agent");
    lab.run(|| scenario(&lab, &dir, &images));
}

fn scenario(lab: &Lab, dir: &Path, images: &Path) {
    let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
    let pki = lab_pki(dir, api_port);
    let etcd = start_etcd(dir, &pki, etcd_port, peer_port);
    let mut cluster = Cluster {
        _etcd: etcd,
        server: None,
        dir: dir.to_path_buf(),
        pki: pki.clone(),
        etcd_port,
        api_port,
    };
    cluster.start_server("server.log");
    let server_url = format!("https://{LAB_IP}:{api_port}");
    let kubectl = |bin: &'static str| Kubectl {
        bin,
        cache: dir.join(format!("cache-{}", bin.rsplit('.').next().unwrap())),
        kubeconfig: dir.join("admin.conf"),
    };
    let k = kubectl(KUBECTLS[1]);

    let mut nodes: Vec<Node> = (1..=2).map(|n| Node::new(lab, n, dir, images)).collect();
    for node in nodes.iter_mut() {
        let kc = dir.join(format!("kubelet-{}.conf", node.name));
        let user = format!("system:node:{}", node.name);
        fs::write(
            &kc,
            user_kubeconfig(&pki, &server_url, &user, &["system:nodes"]),
        )
        .unwrap();
        node.start_agent(&kc, &[]);
    }

    // Registration; pod CIDRs from the IPAM controller, or set here when it has not landed.
    for (i, node) in nodes.iter().enumerate() {
        wait_for(30, &format!("{} registered", node.name), || {
            k.run(&["get", "node", &node.name])
                .status
                .success()
                .then_some(())
        });
        std::thread::sleep(Duration::from_secs(2));
        let n = get_json(&k, &["get", "node", &node.name]);
        if n.pointer("/spec/podCIDR").is_none() {
            let cidr = cidr_for(i as u8 + 1);
            let patch = format!(r#"{{"spec":{{"podCIDR":"{cidr}","podCIDRs":["{cidr}"]}}}}"#);
            k.ok(&["patch", "node", &node.name, "--type=merge", "-p", &patch]);
        }
    }
    wait_for(60, "both nodes Ready", || {
        let out = k.ok(&["get", "nodes", "--no-headers"]);
        let ready = out
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .count();
        (ready == 2).then_some(())
    });
    let wide = k.ok(&["get", "nodes", "-o", "wide"]);
    assert!(
        wide.contains("10.99.0.11") && wide.contains("10.99.0.12"),
        "{wide}"
    );
    assert!(wide.contains("containerd://1.6"), "{wide}");
    let leases = k.ok(&["get", "leases", "-n", "kube-node-lease"]);
    assert!(
        leases.contains("node-1") && leases.contains("node-2"),
        "{leases}"
    );

    // One web server per node, and a crashing container.
    let web = "echo started $POD_NAME at $POD_IP; mkdir -p /www; echo hello-from-$POD_NAME > /www/index.html; exec httpd -f -p 8080 -h /www";
    let manifests = dir.join("pods.yaml");
    fs::write(
        &manifests,
        [
            pod_yaml("web-1", "node-1", web, "Always"),
            pod_yaml("web-2", "node-2", web, "Always"),
            pod_yaml("crasher", "node-1", "echo crashing; exit 3", "Always"),
            PROBED.to_string(),
        ]
        .join("---\n"),
    )
    .unwrap();
    k.ok(&[
        "create",
        "configmap",
        "probe-config",
        "--from-literal=greeting=hi",
    ]);
    k.ok(&["apply", "-f", manifests.to_str().unwrap()]);
    let web1 = wait_running(&k, "web-1", 120);
    let web2 = wait_running(&k, "web-2", 120);
    let pods_table = k.ok(&["get", "pods", "-o", "wide"]);
    assert!(pods_table.contains("1/1"), "{pods_table}");
    let ip1 = web1
        .pointer("/status/podIP")
        .and_then(Value::as_str)
        .unwrap()
        .to_string();
    let ip2 = web2
        .pointer("/status/podIP")
        .and_then(Value::as_str)
        .unwrap()
        .to_string();
    for (node, ip) in [(1u8, &ip1), (2u8, &ip2)] {
        let n = get_json(&k, &["get", "node", &format!("node-{node}")]);
        let cidr = n.pointer("/spec/podCIDR").and_then(Value::as_str).unwrap();
        assert!(
            in_cidr(ip, cidr),
            "pod IP {ip} outside node-{node}'s {cidr}"
        );
    }
    assert_eq!(
        web1.pointer("/status/hostIP").and_then(Value::as_str),
        Some("10.99.0.11")
    );
    let cid1 = web1
        .pointer("/status/containerStatuses/0/containerID")
        .and_then(Value::as_str)
        .unwrap()
        .trim_start_matches("containerd://")
        .to_string();

    // Across nodes: node-2's namespace (and its pod's network) reach web-1's pod IP.
    let fetch = format!("curl -sf -m 5 http://{ip1}:8080/");
    let got = wait_for(30, "web-1 reachable from node-2", || {
        let out = nodes[1].sh(&fetch);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string())
    });
    assert_eq!(got.trim(), "hello-from-web-1");
    // Pod to pod across nodes: web-2 (node-2) fetches from web-1 (node-1).
    let http = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {ip1} 8080");
    let reply = k.ok(&["exec", "web-2", "--", "sh", "-c", &http]);
    assert!(reply.contains("hello-from-web-1"), "{reply}");

    // Logs and exec, with both kubectl generations (1.33 falls back from WebSocket to SPDY).
    for bin in KUBECTLS {
        let kc = kubectl(bin);
        let logs = kc.ok(&["logs", "web-1"]);
        assert_eq!(logs.trim(), format!("started web-1 at {ip1}"));
        let tail = kc.ok(&["logs", "web-2", "--tail=1"]);
        assert!(tail.starts_with("started web-2"), "{tail}");
        let host = kc.ok(&["exec", "web-1", "--", "cat", "/etc/hostname"]);
        assert_eq!(host.trim(), "web-1");
        let env = kc.ok(&[
            "exec",
            "web-2",
            "-c",
            "main",
            "--",
            "sh",
            "-c",
            "echo $POD_NAME",
        ]);
        assert_eq!(env.trim(), "web-2");
    }

    // The crashing container is restarted, with back-off.
    let row = wait_for(90, "crasher restarted twice", || {
        let row = pod_row(&k, "crasher");
        let restarts: u32 = row.get(3).and_then(|r| r.parse().ok()).unwrap_or(0);
        (restarts >= 2).then_some(row)
    });
    assert!(
        ["CrashLoopBackOff", "Error", "Running", "Completed"].contains(&row[2].as_str()),
        "{row:?}"
    );
    let crasher = get_json(&k, &["get", "pod", "crasher"]);
    assert_eq!(
        crasher.pointer("/status/containerStatuses/0/lastState/terminated/exitCode"),
        Some(&serde_json::json!(3)),
        "{crasher}"
    );
    let crash_logs = k.ok(&["logs", "crasher", "--previous"]);
    assert_eq!(crash_logs.trim(), "crashing");
    // Following a container that exits ends with its output.
    let followed = k.ok(&["logs", "-f", "crasher"]);
    assert!(followed.contains("crashing"), "{followed}");

    // Probes: ready through httpGet; a failing liveness probe restarts the container.
    let probed = wait_running(&k, "web-probed", 60);
    assert_eq!(
        probed
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .map(|c| c["status"].clone()),
        Some(serde_json::json!("True"))
    );
    let flavor = k.ok(&["exec", "web-probed", "--", "cat", "/etc/busybox-flavor"]);
    assert_eq!(flavor.trim(), "musl");
    let config = k.ok(&[
        "exec",
        "web-probed",
        "--",
        "sh",
        "-c",
        "cat /config/greeting; echo; echo $GREETING; touch /scratch/x && echo writable",
    ]);
    assert_eq!(config.trim(), "hi\nhi\nwritable");
    k.ok(&["exec", "web-probed", "--", "rm", "/tmp/alive"]);
    wait_for(60, "web-probed restarted by its liveness probe", || {
        let row = pod_row(&k, "web-probed");
        (row.len() >= 4 && row[3] != "0").then_some(())
    });
    wait_running(&k, "web-probed", 60);

    // Deleting a pod stops its containers.
    let cid2 = web2
        .pointer("/status/containerStatuses/0/containerID")
        .and_then(Value::as_str)
        .unwrap()
        .trim_start_matches("containerd://")
        .to_string();
    assert!(nodes[1]
        .tasks()
        .iter()
        .any(|(id, st)| *id == cid2 && st == "RUNNING"));
    k.ok(&["delete", "pod", "web-2", "--wait=true", "--timeout=60s"]);
    wait_for(30, "web-2's container gone", || {
        (!nodes[1]
            .tasks()
            .iter()
            .any(|(id, st)| *id == cid2 && st == "RUNNING"))
        .then_some(())
    });
    assert!(k.run(&["get", "pod", "web-2"]).status.code() == Some(1));

    // The agent restarts: pods are adopted, not recreated.
    let agent1_kc = dir.join("kubelet-node-1.conf");
    nodes[0].stop_agent();
    nodes[0].start_agent(&agent1_kc, &[]);
    std::thread::sleep(Duration::from_secs(6));
    let again = wait_running(&k, "web-1", 60);
    assert_eq!(
        again
            .pointer("/status/containerStatuses/0/containerID")
            .and_then(Value::as_str),
        Some(format!("containerd://{cid1}").as_str()),
        "the restarted agent recreated web-1"
    );

    // Server outage: containers keep running; the agent still restarts a killed container;
    // the status catches up when the server is back.
    assert!(cluster.server.take().unwrap().terminate());
    std::thread::sleep(Duration::from_secs(3));
    assert!(nodes[0]
        .tasks()
        .iter()
        .any(|(id, st)| *id == cid1 && st == "RUNNING"));
    let kill = nodes[0].ctr(&["tasks", "kill", "-s", "SIGKILL", &cid1]);
    assert!(
        kill.status.success(),
        "{}",
        String::from_utf8_lossy(&kill.stderr)
    );
    let fetched = wait_for(60, "web-1 restarted while the server is down", || {
        let out = nodes[1].sh(&fetch);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string())
    });
    assert_eq!(fetched.trim(), "hello-from-web-1");
    cluster.start_server("server-2.log");
    let row = wait_for(60, "web-1's restart reported", || {
        let row = pod_row(&k, "web-1");
        (row.len() >= 4 && row[1] == "1/1" && row[2] == "Running" && row[3].starts_with('1'))
            .then_some(row)
    });
    eprintln!("after the outage: {row:?}");

    // Footprint: the agent with 10 pods.
    let many: Vec<String> = (0..10)
        .map(|i| pod_yaml(&format!("idle-{i}"), "node-2", "exec sleep 3600", "Always"))
        .collect();
    let many_file = dir.join("many.yaml");
    fs::write(&many_file, many.join("---\n")).unwrap();
    k.ok(&["apply", "-f", many_file.to_str().unwrap()]);
    for i in 0..10 {
        wait_running(&k, &format!("idle-{i}"), 180);
    }
    std::thread::sleep(Duration::from_secs(5));
    let rss = rss_kib(nodes[1].agent_pid().unwrap());
    eprintln!(
        "agent RSS with 10 pods: {} KiB ({:.1} MiB)",
        rss,
        rss as f64 / 1024.0
    );
    assert!(rss > 0);
}
