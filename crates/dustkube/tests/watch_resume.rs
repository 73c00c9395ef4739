//! Watches across a server restart and a compaction, against real etcd: a watcher that
//! reconnects from its last resourceVersion gets exactly the events it missed; after the
//! server's periodic compaction an old resourceVersion gets an ERROR event with a 410 Status;
//! `kubectl get --watch` lists then follows.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{free_port, kubectl_ok};
use serde_json::Value;

struct Curl {
    cacert: String,
    cert: String,
    key: String,
    base: String,
}

impl Curl {
    fn cmd(&self, path: &str) -> Command {
        let mut c = Command::new("curl");
        c.args([
            "-sS",
            "-N",
            "--cacert",
            &self.cacert,
            "--cert",
            &self.cert,
            "--key",
            &self.key,
        ])
        .arg(format!("{}{path}", self.base));
        c
    }

    /// A watch of default/configmaps from `rv` that ends after `secs`; all events.
    fn watch_all(&self, rv: &str, secs: u32) -> Vec<Value> {
        let out = self
            .cmd(&format!(
                "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds={secs}"
            ))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        eprintln!("watch from {rv}:\n{text}");
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn event_summary(e: &Value) -> String {
    format!(
        "{} {}",
        e["type"].as_str().unwrap(),
        e["object"]["metadata"]["name"].as_str().unwrap_or("")
    )
}

fn rv_of(conf: &Path, cache: &Path, name: &str) -> String {
    kubectl_ok(
        conf,
        cache,
        &[
            "get",
            "cm",
            name,
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ],
    )
}

#[test]
fn watch_resumes_after_restart_and_expires_after_compaction() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cache = dir.join("kcache");
    let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
    let pki = common::make_pki(dir, api_port);
    let conf = dir.join("super-admin.conf");
    let _etcd = common::start_etcd(dir, &pki, etcd_port, peer_port);
    // No controllers: their objects (kube-root-ca.crt ConfigMaps) would join the watched ones.
    let no_compaction = ["--etcd-compaction-interval", "0", "--controllers=false"];
    let mut api = common::start_server(
        dir,
        &pki,
        etcd_port,
        api_port,
        &no_compaction,
        "server1.log",
    );
    let (cert, key) = common::client_cert_files(&conf, dir, "admin");
    let curl = Curl {
        cacert: pki.join("ca.crt").to_str().unwrap().into(),
        cert,
        key,
        base: format!("https://127.0.0.1:{api_port}"),
    };

    kubectl_ok(&conf, &cache, &["create", "cm", "a1", "--from-literal=k=1"]);
    let rv1 = rv_of(&conf, &cache, "a1");

    // A live watch from a1's revision sees a2, and ends when the server goes away.
    let mut child = curl
        .cmd(&format!(
            "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv1}"
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    kubectl_ok(&conf, &cache, &["create", "cm", "a2", "--from-literal=k=2"]);
    let first: Value =
        serde_json::from_str(&rx.recv_timeout(Duration::from_secs(10)).unwrap()).unwrap();
    assert_eq!(event_summary(&first), "ADDED a2");
    let last_rv = first["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    assert!(api.terminate(), "server did not stop cleanly");
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "watch did not end with the server"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap();
    assert!(rx.try_recv().is_err(), "unexpected events after a2");

    // Changes the watcher misses: made while it is disconnected.
    let mut api = common::start_server(
        dir,
        &pki,
        etcd_port,
        api_port,
        &no_compaction,
        "server2.log",
    );
    kubectl_ok(&conf, &cache, &["create", "cm", "b1", "--from-literal=k=3"]);
    kubectl_ok(&conf, &cache, &["label", "cm", "a1", "tier=web"]);
    kubectl_ok(&conf, &cache, &["delete", "cm", "a2"]);
    kubectl_ok(&conf, &cache, &["create", "cm", "b2", "--from-literal=k=4"]);

    let missed: Vec<String> = curl
        .watch_all(&last_rv, 3)
        .iter()
        .map(event_summary)
        .collect();
    assert_eq!(
        missed,
        ["ADDED b1", "MODIFIED a1", "DELETED a2", "ADDED b2"]
    );

    // Restart with aggressive compaction: the old revision is compacted away → 410.
    assert!(api.terminate());
    let compacting = [
        "--etcd-compaction-interval",
        "1",
        "--etcd-compaction-retain",
        "1",
        "--controllers=false",
    ];
    let _api = common::start_server(dir, &pki, etcd_port, api_port, &compacting, "server3.log");
    for i in 0..3 {
        kubectl_ok(
            &conf,
            &cache,
            &["create", "cm", &format!("c{i}"), "--from-literal=k=5"],
        );
    }
    let log = dir.join("server3.log");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("compacted etcd")
    {
        assert!(Instant::now() < deadline, "no compaction logged");
        std::thread::sleep(Duration::from_millis(200));
    }
    let expired = curl.watch_all(&last_rv, 3);
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(expired[0]["type"], "ERROR");
    assert_eq!(expired[0]["object"]["kind"], "Status");
    assert_eq!(expired[0]["object"]["code"], 410);
    assert_eq!(expired[0]["object"]["reason"], "Expired");

    // A watch from now still works after compaction.
    let current = rv_of(&conf, &cache, "c2");
    let waiter = {
        let c = curl.cmd(&format!(
            "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={current}&timeoutSeconds=3"
        ));
        std::thread::spawn(move || {
            let mut c = c;
            c.output().unwrap()
        })
    };
    std::thread::sleep(Duration::from_millis(700));
    kubectl_ok(&conf, &cache, &["create", "cm", "d0", "--from-literal=k=6"]);
    let out = waiter.join().unwrap();
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| event_summary(&serde_json::from_str(l).unwrap()))
        .collect();
    assert_eq!(lines, ["ADDED d0"]);

    // kubectl get --watch: the current list, then new objects as they come.
    let wlog = dir.join("kubectl-watch.out");
    let mut kw = Command::new("/usr/lib/google-cloud-sdk/bin/kubectl.1.33")
        .arg("--kubeconfig")
        .arg(&conf)
        .arg("--cache-dir")
        .arg(&cache)
        .args(["get", "cm", "--watch"])
        .stdout(std::fs::File::create(&wlog).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&wlog)
        .unwrap_or_default()
        .contains("d0")
    {
        assert!(
            Instant::now() < deadline,
            "kubectl get --watch printed nothing"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    kubectl_ok(&conf, &cache, &["create", "cm", "e1", "--from-literal=k=7"]);
    while !std::fs::read_to_string(&wlog)
        .unwrap_or_default()
        .contains("e1")
    {
        assert!(Instant::now() < deadline, "kubectl get --watch missed e1");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = kw.kill();
    let _ = kw.wait();
    let text = std::fs::read_to_string(&wlog).unwrap();
    eprintln!("kubectl get --watch:\n{text}");
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0][..3], ["NAME", "DATA", "AGE"]);
    let names: Vec<&str> = rows[1..].iter().map(|r| r[0]).collect();
    assert_eq!(names, ["a1", "b1", "b2", "c0", "c1", "c2", "d0", "e1"]);
    assert!(rows.iter().skip(1).all(|r| r.len() == 3), "{text}");
}
