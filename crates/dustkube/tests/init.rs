//! `dustkube init --foreground` on loopback with temp dirs and free ports: preflight, PKI,
//! supervised etcd + server, cluster-info with a valid JWS, the join command and its CA pin
//! (checked with openssl), idempotent re-init, and `token create/list/delete`.

mod common;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::SystemTime;

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine;
use common::{free_port, kubectl, kubectl_ok, stdout, wait_for_text, Proc};
use serde_json::Value;

/// Checks that need root or kernel state this test host may not have.
const HOST_CHECKS: &str = "root,swap,br_netfilter,ip_forward,cri";

struct Ports {
    api: u16,
    etcd: u16,
    peer: u16,
}

fn init_args(dir: &Path, ports: &Ports) -> Vec<String> {
    let d = |f: &str| dir.join(f).to_str().unwrap().to_string();
    [
        "init",
        "--node-name",
        "cp1",
        "--advertise-address",
        "127.0.0.1",
        "--apiserver-bind-address",
        "127.0.0.1",
        "--apiserver-bind-port",
        &ports.api.to_string(),
        "--etcd-client-port",
        &ports.etcd.to_string(),
        "--etcd-peer-port",
        &ports.peer.to_string(),
        "--pki-dir",
        &d("pki"),
        "--kubeconfig-dir",
        &d("conf"),
        "--data-dir",
        &d("etcd-data"),
        "--log-dir",
        &d("logs"),
        "--run-dir",
        &d("run"),
        "--key-algorithm",
        "ecdsa-p256",
        "--skip-preflight",
        HOST_CHECKS,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
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

fn etcd_revision(dir: &Path, port: u16) -> u64 {
    let pki = dir.join("pki");
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
        .args(["endpoint", "status", "-w", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["Status"]["header"]["revision"].as_u64().unwrap()
}

fn mtimes(dir: &Path) -> Vec<(PathBuf, SystemTime)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(mtimes(&e.path()));
        } else {
            out.push((e.path(), e.metadata().unwrap().modified().unwrap()));
        }
    }
    out.sort();
    out
}

/// HMAC-SHA256 by openssl, base64url: an independent check of the JWS.
fn openssl_hs256(key: &str, input: &str, dir: &Path) -> String {
    let f = dir.join("jws-input");
    fs::write(&f, input).unwrap();
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-mac", "HMAC", "-macopt"])
        .arg(format!("key:{key}"))
        .arg("-binary")
        .arg(&f)
        .output()
        .unwrap();
    assert!(out.status.success());
    B64URL.encode(out.stdout)
}

#[test]
fn preflight_failure_is_reported_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let ports = Ports {
        api: busy.local_addr().unwrap().port(),
        etcd: free_port(),
        peer: free_port(),
    };
    let out = dustkube(&init_args(tmp.path(), &ports));
    assert!(!out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "[preflight] FAIL  ports: port {} is in use on 127.0.0.1",
            ports.api
        )),
        "{text}"
    );
    assert!(text.contains("[preflight] skip  swap"), "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("preflight failed: ports (fix them, or skip with --skip-preflight=ports)"),
        "{err}"
    );
    assert!(
        !tmp.path().join("pki").exists(),
        "PKI written despite preflight failure"
    );

    let mut bad = init_args(tmp.path(), &ports);
    let last = bad.len() - 1;
    bad[last] = "swapp".into();
    let out = dustkube(&bad);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown check 'swapp'"));
}

#[test]
fn init_brings_up_a_control_plane_and_is_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cache = dir.join("kcache");
    let ports = Ports {
        api: free_port(),
        etcd: free_port(),
        peer: free_port(),
    };
    let log = dir.join("init.out");
    let mut init = Proc::spawn(
        "dustkube init",
        Command::new(env!("CARGO_BIN_EXE_dustkube")).args(init_args(dir, &ports)),
        &log,
    );
    let text = wait_for_text(&log, "running in the foreground", 120);

    // The join command and its CA pin, computed independently by openssl.
    let join = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("dustkube join "))
        .unwrap_or_else(|| panic!("no join command:\n{text}"));
    let words: Vec<&str> = join.split_whitespace().collect();
    assert_eq!(words[2], format!("127.0.0.1:{}", ports.api), "{join}");
    assert_eq!(words[3], "--token");
    let token = words[4].to_string();
    let (id, _) = token.split_once('.').unwrap();
    assert_eq!(words[5], "--discovery-token-ca-cert-hash");
    let ca = dir.join("pki/ca.crt");
    let openssl_hash = sh(&format!(
        "openssl x509 -pubkey -noout -in {} | openssl pkey -pubin -outform der | sha256sum",
        ca.display()
    ));
    let hex = openssl_hash.split_whitespace().next().unwrap();
    assert_eq!(words[6], format!("sha256:{hex}"));
    assert!(text.contains("[supervisor] started etcd (pid "), "{text}");
    assert!(
        text.contains("[supervisor] started dustkube server (pid "),
        "{text}"
    );

    // kubectl with admin.conf; until RBAC binds kubeadm:cluster-admins, super-admin.conf.
    let admin = dir.join("conf/admin.conf");
    let (ok, _, err) = kubectl(&admin, &cache, &["get", "ns"]);
    let conf = if ok {
        admin
    } else {
        assert!(
            err.contains("Forbidden") || err.contains("forbidden"),
            "{err}"
        );
        eprintln!("admin.conf is Forbidden (no RBAC yet): using super-admin.conf");
        dir.join("conf/super-admin.conf")
    };
    let ns = kubectl_ok(&conf, &cache, &["get", "ns"]);
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            ns.lines().any(|l| l.split_whitespace().next() == Some(n)),
            "{n} missing:\n{ns}"
        );
    }

    // cluster-info: the CA and endpoint, signed for the token (HS256 detached JWS).
    let ci: Value = serde_json::from_str(&kubectl_ok(
        &conf,
        &cache,
        &[
            "get",
            "configmap",
            "cluster-info",
            "-n",
            "kube-public",
            "-o",
            "json",
        ],
    ))
    .unwrap();
    let kubeconfig = ci["data"]["kubeconfig"].as_str().unwrap();
    let ca_pem = fs::read_to_string(&ca).unwrap();
    assert!(kubeconfig.contains(&format!("server: https://127.0.0.1:{}", ports.api)));
    assert!(kubeconfig.contains(&B64.encode(&ca_pem)));
    let jws = ci["data"][format!("jws-kubeconfig-{id}")].as_str().unwrap();
    let (header, sig) = jws.split_once("..").unwrap();
    let h: Value = serde_json::from_slice(&B64URL.decode(header).unwrap()).unwrap();
    assert_eq!(h["alg"], "HS256");
    assert_eq!(h["kid"], id);
    let input = format!("{header}.{}", B64URL.encode(kubeconfig));
    assert_eq!(sig, openssl_hs256(&token, &input, dir));

    // The token Secret.
    let secret: Value = serde_json::from_str(&kubectl_ok(
        &conf,
        &cache,
        &[
            "get",
            "secret",
            &format!("bootstrap-token-{id}"),
            "-n",
            "kube-system",
            "-o",
            "json",
        ],
    ))
    .unwrap();
    assert_eq!(secret["type"], "bootstrap.kubernetes.io/token");
    let field = |k: &str| {
        String::from_utf8(B64.decode(secret["data"][k].as_str().unwrap()).unwrap()).unwrap()
    };
    assert_eq!(field("token-secret"), token.split_once('.').unwrap().1);
    assert_eq!(field("usage-bootstrap-signing"), "true");
    assert_eq!(field("usage-bootstrap-authentication"), "true");
    assert_eq!(
        field("auth-extra-groups"),
        "system:bootstrappers:kubeadm:default-node-token"
    );

    // A second init on the live plane changes nothing.
    let before = etcd_revision(dir, ports.etcd);
    let files = mtimes(dir.join("pki").as_path());
    let conf_before = fs::read_to_string(dir.join("conf/admin.conf")).unwrap();
    let again = dustkube(&init_args(dir, &ports));
    assert!(again.status.success());
    let again_text = stdout(&again);
    assert!(again_text.contains("already initialised"), "{again_text}");
    assert!(again_text.contains("nothing changed"), "{again_text}");
    assert!(!again_text.contains("[preflight]"), "{again_text}");
    assert_eq!(etcd_revision(dir, ports.etcd), before);
    assert_eq!(mtimes(dir.join("pki").as_path()), files);
    assert_eq!(
        fs::read_to_string(dir.join("conf/admin.conf")).unwrap(),
        conf_before
    );

    // token create / list / delete.
    let kc = conf.to_str().unwrap().to_string();
    let tok_args = |rest: &[&str]| {
        let mut v = vec!["token".to_string(), "--kubeconfig".into(), kc.clone()];
        v.extend(rest.iter().map(|s| s.to_string()));
        v
    };
    let created = dustkube(&tok_args(&[
        "create",
        "--ttl",
        "1h",
        "--description",
        "for worker",
    ]));
    assert!(created.status.success());
    let new_token = stdout(&created).trim().to_string();
    let (new_id, _) = new_token.split_once('.').unwrap();
    assert_eq!(new_token.len(), 23, "{new_token}");
    let list = stdout(&dustkube(&tok_args(&["list"])));
    let header_row: Vec<&str> = list.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(&header_row[..4], ["ID", "TTL", "EXPIRES", "USAGES"]);
    let row = list
        .lines()
        .find(|l| l.starts_with(new_id))
        .unwrap_or_else(|| panic!("{new_id} not listed:\n{list}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert!(cells[1] == "59m" || cells[1] == "60m", "{row}");
    assert_eq!(cells[3], "authentication,signing");
    assert!(row.contains("for worker"), "{row}");
    assert!(list.lines().any(|l| l.starts_with(id)), "{list}");
    let ci = kubectl_ok(
        &conf,
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
    assert!(ci.contains(&format!("jws-kubeconfig-{new_id}")));

    let join2 = stdout(&dustkube(&tok_args(&["create", "--print-join-command"])));
    assert!(
        join2.starts_with(&format!("dustkube join 127.0.0.1:{} --token ", ports.api)),
        "{join2}"
    );
    assert!(join2.trim().ends_with(words[6]), "{join2}");

    let deleted = dustkube(&tok_args(&["delete", new_id]));
    assert!(deleted.status.success());
    assert!(stdout(&deleted).contains(&format!("bootstrap token \"{new_id}\" deleted")));
    let list = stdout(&dustkube(&tok_args(&["list"])));
    assert!(!list.lines().any(|l| l.starts_with(new_id)), "{list}");
    let ci = kubectl_ok(
        &conf,
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
    assert!(!ci.contains(&format!("jws-kubeconfig-{new_id}")));
    assert!(ci.contains(&format!("jws-kubeconfig-{id}")));
    let missing = dustkube(&tok_args(&["delete", new_id]));
    assert!(!missing.status.success());

    // certs check-expiration reads the generated PKI.
    let certs = dustkube(&[
        "certs".into(),
        "check-expiration".into(),
        "--cert-dir".into(),
        dir.join("pki").to_str().unwrap().into(),
        "--kubeconfig-dir".into(),
        dir.join("conf").to_str().unwrap().into(),
    ]);
    assert!(certs.status.success());
    let certs_text = stdout(&certs);
    assert!(
        certs_text
            .lines()
            .any(|l| l.starts_with("apiserver ") && l.contains("364d")),
        "{certs_text}"
    );

    // SIGTERM stops the supervisor and both children.
    assert!(init.terminate(), "init did not exit cleanly");
    let out = fs::read_to_string(&log).unwrap();
    assert!(
        out.contains("[supervisor] dustkube server stopped"),
        "{out}"
    );
    assert!(out.contains("[supervisor] etcd stopped"), "{out}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", ports.api)).is_err());
    assert!(std::net::TcpStream::connect(("127.0.0.1", ports.etcd)).is_err());
}
