//! The Service data path for real, inside network namespaces this test creates: the ruleset
//! loads with `nft -f`, `nft list table inet dustkube` shows it, and connections reach a "pod"
//! (busybox httpd in a second namespace behind a veth pair) through its ClusterIP, through a
//! NodePort, and from the pod itself (hairpin); a Service without endpoints refuses at once.
//! Needs root, `ip`, `nft` and busybox.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use dustkube::agent::proxy::{self, NodeContext, Proxier};
use serde_json::json;

/// A network namespace deleted (with everything in it) when dropped.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("dk-{tag}-{}", std::process::id());
        sh(&format!("ip netns add {name}"));
        let ns = Netns(name);
        ns.run("ip link set lo up");
        ns
    }

    fn cmd(&self, script: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, "sh", "-c", script]);
        c
    }

    fn out(&self, script: &str) -> Output {
        let out = self.cmd(script).output().unwrap();
        eprintln!(
            "[{}] $ {script}\n{}{}",
            self.0,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn run(&self, script: &str) -> String {
        let out = self.out(script);
        assert!(out.status.success(), "{script} failed in {}", self.0);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A background process killed when dropped.
struct Bg(Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sh(script: &str) {
    let st = Command::new("sh").args(["-c", script]).status().unwrap();
    assert!(st.success(), "{script}");
}

fn services() -> Vec<serde_json::Value> {
    vec![
        json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP", "nodePort": 30080}]},
        }),
        json!({
            "metadata": {"name": "empty", "namespace": "default"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.11",
                     "ports": [{"port": 80, "protocol": "TCP"}]},
        }),
    ]
}

fn endpoints() -> Vec<serde_json::Value> {
    vec![json!({
        "metadata": {"name": "web", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": "10.244.1.2"}],
                     "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}],
    })]
}

#[test]
fn cluster_ip_and_node_port_reach_the_pod() {
    // "node": the namespace the rules live in; "pod": busybox httpd on 10.244.1.2:8080.
    let node = Netns::new("node");
    let pod = Netns::new("pod");
    node.run(&format!(
        "ip link add vn type veth peer name vp netns {} && ip addr add 10.244.1.1/24 dev vn && ip link set vn up && ip route add default dev vn && sysctl -qw net.ipv4.ip_forward=1",
        pod.0
    ));
    pod.run("ip addr add 10.244.1.2/24 dev vp && ip link set vp up && ip route add default via 10.244.1.1");
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "hello from the pod\n").unwrap();
    let _httpd = Bg(pod
        .cmd(&format!(
            "exec busybox httpd -f -p 10.244.1.2:8080 -h {}",
            www.path().display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !node
        .out("curl -sS -m 1 http://10.244.1.2:8080/")
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "httpd did not come up");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Without rules the ClusterIP leads nowhere.
    assert!(!node
        .out("curl -sS -m 2 http://10.96.0.10/")
        .status
        .success());

    let ctx = NodeContext {
        node_name: "w1".into(),
        cluster_cidrs: vec!["10.244.0.0/16".into()],
    };
    let script = proxy::ruleset(&services(), &endpoints(), &ctx);
    let file = www.path().join("rules.nft");
    std::fs::write(&file, &script).unwrap();
    node.run(&format!("nft -f {}", file.display()));
    let listed = node.run("nft list table inet dustkube");
    assert!(
        listed.contains("ip daddr 10.96.0.10 tcp dport 80 goto svc/default/web/http"),
        "{listed}"
    );
    assert!(listed.contains("dnat ip to 10.244.1.2:8080"), "{listed}");
    // Loading it again replaces the table (no duplicate chains or rules).
    node.run(&format!("nft -f {}", file.display()));
    let again = node.run("nft list table inet dustkube");
    assert_eq!(listed, again);

    // ClusterIP from the node, NodePort on the node's address from the pod namespace (forwarded
    // and masqueraded back), and the pod reaching itself through its Service (hairpin).
    let body = node.run("curl -sS -m 5 http://10.96.0.10/");
    assert_eq!(body, "hello from the pod\n");
    let body = pod.run("curl -sS -m 5 http://10.244.1.1:30080/");
    assert_eq!(body, "hello from the pod\n");
    let body = pod.run("curl -sS -m 5 http://10.96.0.10/");
    assert_eq!(body, "hello from the pod\n");

    // No endpoints: refused at once, not a timeout.
    let start = Instant::now();
    let out = node.out("curl -sS -m 5 http://10.96.0.11/");
    assert_eq!(out.status.code(), Some(7), "curl: couldn't connect");
    assert!(start.elapsed() < Duration::from_secs(3));

    // Without the table the ClusterIP leads nowhere again.
    node.run("nft delete table inet dustkube");
    assert!(!node
        .out("curl -sS -m 2 http://10.96.0.10/")
        .status
        .success());
}

/// `Proxier::sync` applies only when the rules change; `delete_table` removes the table. The
/// test runs itself in a fresh namespace (re-executed under `ip netns exec`) so the host's
/// nftables are never touched.
#[test]
fn proxier_applies_changes_only() {
    if std::env::var("DUSTKUBE_PROXY_IN_NETNS").is_err() {
        let ns = Netns::new("sync");
        let exe = std::env::current_exe().unwrap();
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.0])
            .arg(exe)
            .args(["--exact", "proxier_applies_changes_only", "--nocapture"])
            .env("DUSTKUBE_PROXY_IN_NETNS", "1")
            .output()
            .unwrap();
        eprintln!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "the test failed inside {}", ns.0);
        assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
        return;
    }
    let mut p = Proxier::new(NodeContext::default());
    assert!(p.sync(&services(), &endpoints()).unwrap());
    assert!(
        !p.sync(&services(), &endpoints()).unwrap(),
        "unchanged rules applied again"
    );
    let listed = Command::new("nft")
        .args(["list", "table", "inet", "dustkube"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains("dnat ip to 10.244.1.2:8080"), "{text}");
    assert!(
        p.sync(&services(), &[]).unwrap(),
        "new endpoints not applied"
    );
    let listed = Command::new("nft")
        .args(["list", "table", "inet", "dustkube"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(!text.contains("dnat"), "{text}");
    assert!(
        text.contains("ip daddr 10.96.0.10 tcp dport 80 reject"),
        "{text}"
    );
    assert!(proxy::delete_table().unwrap());
    assert!(!proxy::delete_table().unwrap());
}
