//! `dustkube join` and `dustkube reset` against `dustkube init --foreground` on loopback, with
//! temp dirs and free ports: discovery with the CA pin, TLS bootstrap through the CSR
//! controllers (a node certificate checked with openssl), what the node may do, refusals (wrong
//! pin, deleted or expired token), idempotent join, reset of the node (inside a network
//! namespace, so its nftables step runs for real) and of the control plane, and a fresh
//! init + join afterwards. The agent phase is skipped (`--skip-phases agent`).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, kubectl, kubectl_ok, stderr, stdout, strings, wait_for_text, Proc};

/// Checks that need root or kernel state this test host may not have.
const HOST_CHECKS: &str = "root,swap,br_netfilter,ip_forward,cri";

struct Plane {
    dir: PathBuf,
    api: u16,
    etcd: u16,
    peer: u16,
}

impl Plane {
    fn new(dir: &Path) -> Plane {
        Plane {
            dir: dir.to_path_buf(),
            api: free_port(),
            etcd: free_port(),
            peer: free_port(),
        }
    }

    fn p(&self, f: &str) -> String {
        self.dir.join(f).to_str().unwrap().to_string()
    }

    fn init_args(&self) -> Vec<String> {
        strings(&[
            "init",
            "--node-name",
            "cp1",
            "--advertise-address",
            "127.0.0.1",
            "--apiserver-bind-address",
            "127.0.0.1",
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
            HOST_CHECKS,
        ])
    }

    /// Starts init in the foreground and returns it with its output once it is serving.
    fn start(&self) -> (Proc, String) {
        fs::create_dir_all(&self.dir).unwrap();
        let log = self.dir.join("init.out");
        let proc = Proc::spawn(
            "dustkube init",
            Command::new(env!("CARGO_BIN_EXE_dustkube")).args(self.init_args()),
            &log,
        );
        let text = wait_for_text(&log, "running in the foreground", 120);
        (proc, text)
    }

    fn admin(&self) -> PathBuf {
        self.dir.join("conf/admin.conf")
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
            // The control plane runs in the host's namespace: leave its nftables alone.
            "--skip-phases",
            "nftables",
        ])
    }
}

/// A worker's directories.
struct Node {
    dir: PathBuf,
    name: &'static str,
}

impl Node {
    fn p(&self, f: &str) -> String {
        self.dir.join(f).to_str().unwrap().to_string()
    }

    fn join_args(&self, endpoint: &str, token: &str, hash: &str) -> Vec<String> {
        strings(&[
            "join",
            endpoint,
            "--token",
            token,
            "--discovery-token-ca-cert-hash",
            hash,
            "--node-name",
            self.name,
            "--node-ip",
            "127.0.0.1",
            "--kubeconfig-dir",
            &self.p("conf"),
            "--root-dir",
            &self.p("root"),
            "--cni-conf-dir",
            &self.p("cni"),
            "--run-dir",
            &self.p("run"),
            "--skip-preflight",
            &format!("{HOST_CHECKS},ports"),
            "--skip-phases",
            "agent",
            "--foreground",
        ])
    }

    fn reset_args(&self) -> Vec<String> {
        strings(&[
            "reset",
            "--force",
            "--kubeconfig-dir",
            &self.p("conf"),
            "--root-dir",
            &self.p("root"),
            "--data-dir",
            &self.p("etcd-data"),
            "--run-dir",
            &self.p("run"),
            "--cni-conf-dir",
            &self.p("cni"),
            "--cri-socket",
            &self.p("no-runtime.sock"),
        ])
    }

    fn kubelet_conf(&self) -> PathBuf {
        self.dir.join("conf/kubelet.conf")
    }
}

fn dustkube(args: &[String]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_dustkube"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    eprintln!(
        "$ dustkube {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn sh(script: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `dustkube token create --print-join-command` → (endpoint, token, hash).
fn join_command(plane: &Plane, ttl: &str) -> (String, String, String) {
    let out = dustkube(&strings(&[
        "token",
        "--kubeconfig",
        plane.admin().to_str().unwrap(),
        "create",
        "--ttl",
        ttl,
        "--print-join-command",
    ]));
    assert!(out.status.success());
    let text = stdout(&out);
    let w: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(&w[..2], ["dustkube", "join"], "{text}");
    assert_eq!(w[3], "--token");
    assert_eq!(w[5], "--discovery-token-ca-cert-hash");
    (w[2].to_string(), w[4].to_string(), w[6].to_string())
}

/// The client certificate of a kubeconfig, written out for openssl.
fn cert_file(kubeconfig: &Path, dir: &Path) -> PathBuf {
    let text = fs::read_to_string(kubeconfig).unwrap();
    let kc = duststack::pki::kubeconfig::Kubeconfig::parse(&text, kubeconfig).unwrap();
    let f = dir.join("node.crt");
    fs::write(&f, kc.cert_pem).unwrap();
    f
}

/// Checks kubelet.conf: the node's certificate, signed by the plane's CA (openssl), usable
/// with kubectl, with only a node's rights.
fn check_node_credentials(plane: &Plane, node: &Node, cache: &Path) {
    let conf = node.kubelet_conf();
    let crt = cert_file(&conf, &node.dir);
    let subject = sh(&format!(
        "openssl x509 -noout -subject -nameopt RFC2253 -in {}",
        crt.display()
    ));
    assert_eq!(
        subject.trim(),
        format!("subject=CN=system:node:{},O=system:nodes", node.name)
    );
    let verified = sh(&format!(
        "openssl verify -CAfile {} {}",
        plane.dir.join("pki/ca.crt").display(),
        crt.display()
    ));
    assert!(verified.contains(": OK"), "{verified}");
    let text = sh(&format!("openssl x509 -noout -text -in {}", crt.display()));
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert!(!text.contains("TLS Web Server Authentication"), "{text}");
    let dates = sh(&format!(
        "openssl x509 -noout -enddate -in {}",
        crt.display()
    ));
    let year = chrono::Utc::now()
        .format("%Y")
        .to_string()
        .parse::<i32>()
        .unwrap()
        + 1;
    assert!(
        dates.contains(&year.to_string()),
        "valid for a year: {dates}"
    );
    assert_eq!(
        fs::read_to_string(node.dir.join("conf/pki/ca.crt")).unwrap(),
        fs::read_to_string(plane.dir.join("pki/ca.crt")).unwrap()
    );
    assert!(!node.dir.join("conf/bootstrap-kubelet.conf").exists());
    let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&conf).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    let (ok, _, err) = kubectl(&conf, cache, &["get", "nodes"]);
    assert!(ok, "the node may list nodes: {err}");
    let can = |args: &[&str]| {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        kubectl(&conf, cache, &all).1.trim().to_string()
    };
    assert_eq!(can(&["create", "pods"]), "no");
    assert_eq!(can(&["delete", "secrets", "-n", "kube-system"]), "no");
    assert_eq!(can(&["list", "pods", "--all-namespaces"]), "yes");
    assert_eq!(can(&["update", "pods", "--subresource=status"]), "yes");
    assert_eq!(can(&["update", "pods"]), "no");
    assert_eq!(can(&["create", "nodes"]), "yes");
    assert_eq!(can(&["update", "leases", "-n", "kube-node-lease"]), "yes");
    assert_eq!(can(&["update", "leases", "-n", "default"]), "no");
    assert_eq!(can(&["create", "events"]), "yes");
}

fn gone(paths: &[PathBuf]) {
    for p in paths {
        assert!(!p.exists(), "{} still exists", p.display());
    }
}

/// A network namespace deleted when dropped.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn join_bootstraps_a_node_and_reset_undoes_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("kcache");
    let plane = Plane::new(&tmp.path().join("cp"));
    let (mut init, _) = plane.start();
    let node = Node {
        dir: tmp.path().join("w1"),
        name: "w1",
    };
    let (endpoint, token, hash) = join_command(&plane, "1h");
    assert_eq!(endpoint, format!("127.0.0.1:{}", plane.api));

    // A wrong pin is refused before anything is written; the message names both hashes.
    let wrong = format!("sha256:{}", "ab".repeat(32));
    let out = dustkube(&node.join_args(&endpoint, &token, &wrong));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("the cluster CA's public key hash is {hash}")),
        "{err}"
    );
    assert!(err.contains(&format!("expects {wrong}")), "{err}");
    assert!(err.contains("refusing to trust this API server"), "{err}");
    assert!(!node.kubelet_conf().exists());
    assert!(!node.dir.join("conf/pki/ca.crt").exists());

    // The join.
    let out = dustkube(&node.join_args(&endpoint, &token, &hash));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("[discovery] cluster-info from https://127.0.0.1:"),
        "{text}"
    );
    assert!(text.contains("This node has joined the cluster"), "{text}");
    assert!(text.contains("[agent] skipped"), "{text}");
    check_node_credentials(&plane, &node, &cache);

    // The CSR was auto-approved and issued by the controllers.
    let csrs = kubectl_ok(&plane.admin(), &cache, &["get", "csr"]);
    let row = csrs
        .lines()
        .find(|l| l.starts_with("node-csr-"))
        .unwrap_or_else(|| panic!("no node CSR:\n{csrs}"));
    assert!(
        row.contains("kubernetes.io/kube-apiserver-client-kubelet"),
        "{row}"
    );
    assert!(
        row.contains(&format!("system:bootstrap:{}", &token[..6])),
        "{row}"
    );
    assert!(row.trim_end().ends_with("Approved,Issued"), "{row}");

    // The agent's renewal: a new key and certificate through a CSR signed in with the node's
    // own certificate (auto-approved as selfnodeclient).
    let before = fs::read_to_string(node.kubelet_conf()).unwrap();
    assert!(!dustkube::cmd::tls_bootstrap::renewal_due(&node.kubelet_conf()).unwrap());
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(dustkube::cmd::tls_bootstrap::renew_node_kubeconfig(
            &node.kubelet_conf(),
            node.name,
        ))
        .unwrap();
    let after = fs::read_to_string(node.kubelet_conf()).unwrap();
    assert_ne!(before, after, "kubelet.conf was not renewed");
    check_node_credentials(&plane, &node, &cache);
    let csrs = kubectl_ok(&plane.admin(), &cache, &["get", "csr"]);
    assert!(
        csrs.lines()
            .any(|l| l.contains(" system:node:w1 ") && l.trim_end().ends_with("Approved,Issued")),
        "{csrs}"
    );

    // Joining again changes nothing.
    let before = fs::read_to_string(node.kubelet_conf()).unwrap();
    let again = dustkube(&node.join_args(&endpoint, &token, &hash));
    assert!(again.status.success());
    let text = stdout(&again);
    assert!(text.contains("already joined"), "{text}");
    assert!(text.contains("nothing changed"), "{text}");
    assert!(!text.contains("[preflight]"), "{text}");
    assert_eq!(fs::read_to_string(node.kubelet_conf()).unwrap(), before);

    // A name a Ready Node already has is refused.
    let ready = node.dir.join("w9.json");
    fs::write(
        &ready,
        r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"w9"},"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
    )
    .unwrap();
    kubectl_ok(
        &plane.admin(),
        &cache,
        &["create", "-f", ready.to_str().unwrap()],
    );
    let w9 = Node {
        dir: tmp.path().join("w9"),
        name: "w9",
    };
    let out = dustkube(&w9.join_args(&endpoint, &token, &hash));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("a Node named \"w9\" is Ready in the cluster already"),
        "{err}"
    );
    assert!(!w9.kubelet_conf().exists());

    // A deleted token: cluster-info no longer carries its signature.
    let other = Node {
        dir: tmp.path().join("w2"),
        name: "w2",
    };
    let (_, deleted, _) = join_command(&plane, "1h");
    let out = dustkube(&strings(&[
        "token",
        "--kubeconfig",
        plane.admin().to_str().unwrap(),
        "delete",
        &deleted,
    ]));
    assert!(out.status.success());
    let out = dustkube(&other.join_args(&endpoint, &deleted, &hash));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("no signature for token id \"{}\"", &deleted[..6])),
        "{err}"
    );
    assert!(!other.kubelet_conf().exists());

    // An expired token: refused by the API server (or, once the token cleaner has run, for
    // want of a signature)...
    let (_, expired, _) = join_command(&plane, "1s");
    std::thread::sleep(Duration::from_millis(2500));
    let out = dustkube(&other.join_args(&endpoint, &expired, &hash));
    assert!(!out.status.success());
    let err = stderr(&out);
    let id = &expired[..6];
    assert!(
        (err.contains(&format!("refused bootstrap token \"{id}\""))
            && err.contains("expired or was deleted"))
            || err.contains(&format!("no signature for token id \"{id}\"")),
        "{err}"
    );
    assert!(!other.kubelet_conf().exists());
    assert!(!other.dir.join("conf/bootstrap-kubelet.conf").exists());
    // ...and the token cleaner deletes its Secret and signature within its resync period.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let secrets = kubectl_ok(
            &plane.admin(),
            &cache,
            &["get", "secrets", "-n", "kube-system"],
        );
        let ci = kubectl_ok(
            &plane.admin(),
            &cache,
            &[
                "get",
                "cm",
                "cluster-info",
                "-n",
                "kube-public",
                "-o",
                "json",
            ],
        );
        if !secrets.contains(&format!("bootstrap-token-{id}"))
            && !ci.contains(&format!("jws-kubeconfig-{id}"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expired token {id} still present:\n{secrets}\n{ci}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Reset the node inside a network namespace holding a dustkube table, with the files the
    // agent would have made.
    let ns = Netns(format!("dk-reset-{}", std::process::id()));
    sh(&format!("ip netns add {}", ns.0));
    sh(&format!(
        "ip netns exec {} nft add table inet dustkube",
        ns.0
    ));
    fs::create_dir_all(node.dir.join("cni")).unwrap();
    fs::write(node.dir.join("cni/10-dustkube.conflist"), "{}").unwrap();
    fs::write(node.dir.join("cni/99-other.conflist"), "{}").unwrap();
    fs::create_dir_all(node.dir.join("root/pods/x")).unwrap();
    fs::write(node.dir.join("root/pods/x/state"), "x").unwrap();
    let reset = |args: Vec<String>| {
        let mut full = vec!["netns".to_string(), "exec".into(), ns.0.clone()];
        full.push(env!("CARGO_BIN_EXE_dustkube").into());
        full.extend(args);
        let out = Command::new("ip")
            .args(&full)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        eprintln!("$ ip {}\n{}{}", full.join(" "), stdout(&out), stderr(&out));
        out
    };
    let out = reset(node.reset_args());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for line in [
        "[reset] removed nftables table inet dustkube".to_string(),
        format!("[reset] removed {}", node.p("cni/10-dustkube.conflist")),
        format!("[reset] removed {}", node.p("root")),
        format!("[reset] removed {}", node.p("conf/kubelet.conf")),
        format!("[reset] removed {}", node.p("conf/pki")),
        format!("[reset] removed {}", node.p("conf")),
    ] {
        assert!(text.lines().any(|l| l == line), "missing '{line}':\n{text}");
    }
    assert!(text.contains("no pods to remove"), "{text}");
    gone(&[
        node.dir.join("conf"),
        node.dir.join("root"),
        node.dir.join("cni/10-dustkube.conflist"),
    ]);
    assert!(
        node.dir.join("cni/99-other.conflist").exists(),
        "other CNI configs stay"
    );
    let listed = sh(&format!("ip netns exec {} nft list tables", ns.0));
    assert!(!listed.contains("dustkube"), "{listed}");
    let out = reset(node.reset_args());
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("nothing to remove"),
        "{}",
        stdout(&out)
    );
    // The API still knows the node's CSR but the node can join again from scratch later.

    // Reset the control plane: it stops init (and etcd and the server), then removes the etcd
    // data, the kubeconfigs and the PKI.
    let out = dustkube(&plane.reset_args());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("etcd member cp1 is the only member"),
        "{text}"
    );
    assert!(
        text.contains("[reset] stopped dustkube init (pid "),
        "{text}"
    );
    for f in [
        "etcd-data",
        "conf/admin.conf",
        "conf/super-admin.conf",
        "pki",
        "conf",
        "run",
    ] {
        let line = format!("[reset] removed {}", plane.p(f));
        assert!(text.lines().any(|l| l == line), "missing '{line}':\n{text}");
    }
    gone(&[
        plane.dir.join("etcd-data"),
        plane.dir.join("pki"),
        plane.dir.join("conf"),
        plane.dir.join("run"),
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", plane.api)).is_ok()
        || std::net::TcpStream::connect(("127.0.0.1", plane.etcd)).is_ok()
    {
        assert!(Instant::now() < deadline, "server or etcd still listening");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(init.terminate(), "init did not exit after reset stopped it");
    let log = fs::read_to_string(plane.dir.join("init.out")).unwrap();
    assert!(log.contains("[supervisor] etcd stopped"), "{log}");
    let out = dustkube(&plane.reset_args());
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("nothing to remove"),
        "{}",
        stdout(&out)
    );

    // A fresh control plane and join on the same directories work (new CA, new node cert).
    let (mut init2, _) = plane.start();
    let (endpoint, token, hash2) = join_command(&plane, "1h");
    assert_ne!(hash2, hash, "a new CA after reset");
    let out = dustkube(&node.join_args(&endpoint, &token, &hash2));
    assert!(out.status.success(), "{}", stderr(&out));
    check_node_credentials(&plane, &node, &cache);
    let out = dustkube(&plane.reset_args());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(init2.terminate());
}

/// `etcdctl member list` names of the etcd at `port`, with `pki`'s client certificate.
fn etcd_members(pki: &Path, port: u16) -> Vec<String> {
    let out = Command::new("/usr/bin/etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=https://127.0.0.1:{port}"))
        .arg(format!("--cacert={}", pki.join("etcd/ca.crt").display()))
        .arg(format!(
            "--cert={}",
            pki.join("apiserver-etcd-client.crt").display()
        ))
        .arg(format!(
            "--key={}",
            pki.join("apiserver-etcd-client.key").display()
        ))
        .args(["member", "list", "-w", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<String> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap_or("").to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn control_plane_join_adds_an_etcd_member_and_reset_removes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("kcache");
    let plane = Plane::new(&tmp.path().join("cp1"));
    fs::create_dir_all(&plane.dir).unwrap();
    let log = plane.dir.join("init.out");
    let mut args = plane.init_args();
    args.push("--upload-certs".into());
    let mut init = Proc::spawn(
        "dustkube init",
        Command::new(env!("CARGO_BIN_EXE_dustkube")).args(args),
        &log,
    );
    let text = wait_for_text(&log, "running in the foreground", 120);
    let key = text
        .lines()
        .skip_while(|l| !l.starts_with("[upload-certs] stored the shared certificates"))
        .nth(1)
        .unwrap_or_else(|| panic!("no certificate key:\n{text}"))
        .trim()
        .to_string();
    assert_eq!(key.len(), 64, "{key}");
    let cp_join = text
        .lines()
        .map(str::trim)
        .find(|l| l.contains("--control-plane --certificate-key"))
        .unwrap_or_else(|| panic!("no control-plane join command:\n{text}"));
    assert!(cp_join.ends_with(&key), "{cp_join}");

    // token create --upload-certs prints a control-plane join command with a fresh key.
    let out = dustkube(&strings(&[
        "token",
        "--kubeconfig",
        plane.admin().to_str().unwrap(),
        "create",
        "--upload-certs",
        "--cert-dir",
        &plane.p("pki"),
        "--print-join-command",
    ]));
    assert!(out.status.success());
    let printed = stdout(&out);
    let words: Vec<&str> = printed.split_whitespace().collect();
    assert_eq!(
        words[7..9],
        ["--control-plane", "--certificate-key"],
        "{printed}"
    );
    let (endpoint, token, hash, key) = (
        words[2].to_string(),
        words[4].to_string(),
        words[6].to_string(),
        words[9].to_string(),
    );
    assert_eq!(key.len(), 64);

    let cp2 = Node {
        dir: tmp.path().join("cp2"),
        name: "cp2",
    };
    let (api2, etcd2, peer2) = (free_port(), free_port(), free_port());
    let join_args = |key: &str| {
        let mut v = cp2.join_args(&endpoint, &token, &hash);
        v.extend(strings(&[
            "--control-plane",
            "--certificate-key",
            key,
            "--apiserver-advertise-address",
            "127.0.0.1",
            "--apiserver-bind-address",
            "127.0.0.1",
            "--apiserver-bind-port",
            &api2.to_string(),
            "--etcd-client-port",
            &etcd2.to_string(),
            "--etcd-peer-port",
            &peer2.to_string(),
            "--data-dir",
            &cp2.p("etcd-data"),
            "--log-dir",
            &cp2.p("logs"),
            "--key-algorithm",
            "ecdsa-p256",
        ]));
        v
    };

    // The wrong key decrypts nothing and changes nothing.
    let wrong = "0".repeat(64);
    let out = dustkube(&join_args(&wrong));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("does not decrypt kube-system/dustkube-certs"),
        "{err}"
    );
    assert_eq!(etcd_members(&plane.dir.join("pki"), plane.etcd), ["cp1"]);
    assert!(!cp2.dir.join("conf/pki/ca.key").exists());

    fs::create_dir_all(&cp2.dir).unwrap();
    let jlog = cp2.dir.join("join.out");
    let mut join = Proc::spawn(
        "dustkube join --control-plane",
        Command::new(env!("CARGO_BIN_EXE_dustkube")).args(join_args(&key)),
        &jlog,
    );
    let jtext = wait_for_text(&jlog, "running in the foreground", 180);
    assert!(
        jtext.contains("[control-plane-join] added etcd member cp2"),
        "{jtext}"
    );
    assert_eq!(
        etcd_members(&plane.dir.join("pki"), plane.etcd),
        ["cp1", "cp2"]
    );
    for f in [
        "ca.crt",
        "ca.key",
        "sa.key",
        "sa.pub",
        "etcd/ca.crt",
        "front-proxy-ca.key",
    ] {
        assert_eq!(
            fs::read(cp2.dir.join("conf/pki").join(f)).unwrap(),
            fs::read(plane.dir.join("pki").join(f)).unwrap(),
            "{f} differs"
        );
    }
    check_node_credentials(&plane, &cp2, &cache);

    // Both servers serve the same data.
    let admin = plane.admin();
    let server2 = format!("--server=https://127.0.0.1:{api2}");
    kubectl_ok(
        &admin,
        &cache,
        &["create", "configmap", "shared", "--from-literal=k=v"],
    );
    let got = kubectl_ok(
        &admin,
        &cache,
        &[
            &server2,
            "get",
            "configmap",
            "shared",
            "-o",
            "jsonpath={.data.k}",
        ],
    );
    assert_eq!(got, "v");
    let cfg = kubectl_ok(
        &admin,
        &cache,
        &[
            "get",
            "cm",
            "dustkube-config",
            "-n",
            "kube-system",
            "-o",
            "jsonpath={.data.etcdEndpoints}",
        ],
    );
    assert_eq!(
        cfg,
        format!("https://127.0.0.1:{},https://127.0.0.1:{etcd2}", plane.etcd)
    );

    // Reset the second control plane: its member leaves, the first keeps a working cluster.
    let mut reset = cp2.reset_args();
    reset.extend(strings(&[
        "--pki-dir",
        &cp2.p("conf/pki"),
        "--etcd-endpoint",
        &format!("https://127.0.0.1:{etcd2}"),
        "--skip-phases",
        "nftables",
    ]));
    let out = dustkube(&reset);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("[reset] removed etcd member cp2"), "{text}");
    assert!(
        text.contains("[reset] stopped dustkube join (pid "),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l == format!("[reset] removed {}", cp2.p("etcd-data"))),
        "{text}"
    );
    assert!(
        join.terminate(),
        "join did not exit cleanly after reset stopped it"
    );
    assert_eq!(etcd_members(&plane.dir.join("pki"), plane.etcd), ["cp1"]);
    kubectl_ok(
        &admin,
        &cache,
        &["create", "configmap", "after", "--from-literal=k=v"],
    );
    let cfg = kubectl_ok(
        &admin,
        &cache,
        &[
            "get",
            "cm",
            "dustkube-config",
            "-n",
            "kube-system",
            "-o",
            "jsonpath={.data.etcdEndpoints}",
        ],
    );
    assert_eq!(cfg, format!("https://127.0.0.1:{}", plane.etcd));
    gone(&[cp2.dir.join("conf"), cp2.dir.join("etcd-data")]);

    let out = dustkube(&plane.reset_args());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(init.terminate());
}
