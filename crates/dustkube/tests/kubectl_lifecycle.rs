//! Object lifecycle end to end, driven by the real kubectl 1.27 and 1.33 against a real etcd and
//! `dustkube server` (with its controllers): describe, diff, replace --force, edit, cascading
//! deletion (background, orphan, foreground) through the garbage collector, finalizers, namespace
//! termination, selector watches that see objects leave and re-enter, and (with curl) the pod
//! binding and eviction subresources.

mod common;

use std::fs;
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{free_port, rows, Kubectl, KUBECTLS};
use serde_json::Value;

/// Waits up to 20 s for `cond`; panics with `what` otherwise.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting: {what}");
}

fn json_of(k: &Kubectl, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&k.ok(&all)).unwrap()
}

/// Whether `kubectl get` says the object is gone.
fn gone(k: &Kubectl, args: &[&str]) -> bool {
    let out = k.run(&[&["get"], args].concat());
    !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound")
}

/// kubectl with extra environment variables (KUBE_EDITOR).
fn run_env(k: &Kubectl, env: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
    let out = Command::new(k.bin)
        .arg("--kubeconfig")
        .arg(&k.kubeconfig)
        .arg("--cache-dir")
        .arg(&k.cache)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    eprintln!("$ {env:?} kubectl {}\n{o}{e}", args.join(" "));
    (out.status.success(), o, e)
}

fn pod(ns: &str, name: &str, app: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n    app: {app}\nspec:\n  containers:\n  - name: main\n    image: {image}\n    command: [\"sleep\", \"3600\"]\n"
    )
}

fn deployment(ns: &str, name: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n    app: {name}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      containers:\n      - name: nginx\n        image: nginx:1.25\n        ports:\n        - containerPort: 80\n"
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let f = dir.join(name);
    fs::write(&f, text).unwrap();
    f.to_str().unwrap().to_string()
}

fn describe_diff_replace_edit(k: &Kubectl, dir: &Path, ns: &str) {
    let out = k.ok(&["describe", "ns", ns]);
    assert!(
        rows(&out).iter().any(|r| r == &format!("Name: {ns}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("kubernetes.io/metadata.name={ns}")),
        "{out}"
    );
    assert!(rows(&out).iter().any(|r| r == "Status: Active"), "{out}");

    let d = write(dir, &format!("{ns}-web.yaml"), &deployment(ns, "web", 2));
    k.ok(&["apply", "-f", &d]);
    let out = k.ok(&["describe", "deploy", "web", "-n", ns]);
    let r = rows(&out);
    for want in [
        "Name: web",
        &format!("Namespace: {ns}"),
        "Labels: app=web",
        "Selector: app=web",
    ] {
        assert!(r.iter().any(|l| l == want), "{want} missing:\n{out}");
    }
    assert!(
        r.iter().any(|l| l.starts_with("Replicas: 2 desired |")),
        "{out}"
    );
    assert!(r.iter().any(|l| l == "Containers:"), "{out}");
    assert!(r.iter().any(|l| l == "Image: nginx:1.25"), "{out}");

    let p = write(
        dir,
        &format!("{ns}-pod.yaml"),
        &pod(ns, "p1", "x", "busybox:1.36"),
    );
    k.ok(&["apply", "-f", &p]);
    let out = k.ok(&["describe", "pod", "p1", "-n", ns]);
    let r = rows(&out);
    for want in [
        "Name: p1",
        &format!("Namespace: {ns}"),
        "Labels: app=x",
        "Status: Pending",
        "Containers:",
        "main:",
        "Image: busybox:1.36",
    ] {
        assert!(r.iter().any(|l| l == want), "{want} missing:\n{out}");
    }

    // diff: nothing to show (exit 0), then the changed image (exit 1).
    let out = k.run(&["diff", "-f", &p]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let p2 = write(
        dir,
        &format!("{ns}-pod2.yaml"),
        &pod(ns, "p1", "x", "busybox:1.37"),
    );
    let out = k.run(&["diff", "-f", &p2]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("-    image: busybox:1.36") && text.contains("+    image: busybox:1.37"),
        "{text}"
    );

    // replace --force: deleted, then created again with a new uid.
    let uid = json_of(k, &["get", "pod", "p1", "-n", ns])["metadata"]["uid"].clone();
    let out = k.ok(&["replace", "--force", "-f", &p2]);
    assert!(
        out.contains("pod \"p1\" deleted") && out.contains("pod/p1 replaced"),
        "{out}"
    );
    let now = json_of(k, &["get", "pod", "p1", "-n", ns]);
    assert_ne!(now["metadata"]["uid"], uid);
    assert_eq!(now["spec"]["containers"][0]["image"], "busybox:1.37");

    // edit with an editor that changes the replicas.
    let (ok, out, err) = run_env(
        k,
        &[("KUBE_EDITOR", "sed -i s/replicas:\\ 2/replicas:\\ 4/")],
        &["edit", "deploy", "web", "-n", ns],
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "deployment.apps/web edited");
    assert_eq!(
        k.ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "4"
    );
}

/// The name of the one object of `kind` in `ns` whose controller ownerReference has `uid`.
fn owned_by(k: &Kubectl, kind: &str, ns: &str, uid: &str) -> Option<String> {
    let list = json_of(k, &["get", kind, "-n", ns]);
    list["items"].as_array()?.iter().find_map(|o| {
        let refs = o["metadata"]["ownerReferences"].as_array()?;
        refs.iter()
            .any(|r| r["uid"] == uid && r["controller"] == true)
            .then(|| o["metadata"]["name"].as_str().unwrap_or("").to_string())
    })
}

fn uid_of(k: &Kubectl, args: &[&str]) -> String {
    json_of(k, args)["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Deployment → ReplicaSet → Pod chains made by the controllers (no node: the pod stays
/// Pending), deleted with each cascade mode.
fn cascades(k: &Kubectl, dir: &Path, ns: &str) {
    for (name, cascade) in [
        ("bg", "background"),
        ("orph", "orphan"),
        ("fg", "foreground"),
    ] {
        let d = write(dir, &format!("{ns}-{name}.yaml"), &deployment(ns, name, 1));
        k.ok(&["apply", "-f", &d]);
        let uid = uid_of(k, &["get", "deploy", name, "-n", ns]);
        let mut rs_name = String::new();
        eventually("the deployment's ReplicaSet", || {
            owned_by(k, "rs", ns, &uid).map(|n| rs_name = n).is_some()
        });
        let rs_uid = uid_of(k, &["get", "rs", &rs_name, "-n", ns]);
        let mut pod_name = String::new();
        eventually("the ReplicaSet's pod", || {
            owned_by(k, "pods", ns, &rs_uid)
                .map(|n| pod_name = n)
                .is_some()
        });

        let cascade_flag = format!("--cascade={cascade}");
        let out = k.ok(&["delete", "deploy", name, "-n", ns, &cascade_flag]);
        assert_eq!(out.trim(), format!("deployment.apps \"{name}\" deleted"));
        assert!(gone(k, &["deploy", name, "-n", ns]));
        match cascade {
            "foreground" => {
                // kubectl waited for the deployment, which waited for its dependents.
                assert!(
                    gone(k, &["rs", &rs_name, "-n", ns]),
                    "foreground left the RS"
                );
                assert!(
                    gone(k, &["pod", &pod_name, "-n", ns]),
                    "foreground left the pod"
                );
            }
            "background" => {
                eventually("the RS is collected", || {
                    gone(k, &["rs", &rs_name, "-n", ns])
                });
                eventually("the pod is collected", || {
                    gone(k, &["pod", &pod_name, "-n", ns])
                });
            }
            _ => {
                // Orphaned: the RS stays, without its owner reference; its pod keeps its owner.
                std::thread::sleep(Duration::from_secs(1));
                let rs = json_of(k, &["get", "rs", &rs_name, "-n", ns]);
                assert!(rs["metadata"].get("ownerReferences").is_none(), "{rs}");
                let p = json_of(k, &["get", "pod", &pod_name, "-n", ns]);
                assert_eq!(p["metadata"]["ownerReferences"][0]["uid"], rs_uid.as_str());
                k.ok(&["delete", "rs", &rs_name, "-n", ns]);
                eventually("the orphan's pod is collected", || {
                    gone(k, &["pod", &pod_name, "-n", ns])
                });
            }
        }
    }
}

fn finalizers(k: &Kubectl, ns: &str) {
    k.ok(&[
        "create",
        "configmap",
        "held",
        "-n",
        ns,
        "--from-literal=k=v",
    ]);
    k.ok(&[
        "patch",
        "configmap",
        "held",
        "-n",
        ns,
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ]);
    let out = k.ok(&["delete", "configmap", "held", "-n", ns, "--wait=false"]);
    assert_eq!(out.trim(), "configmap \"held\" deleted");
    // Still listed, with a deletionTimestamp, until the finalizer goes.
    let out = k.ok(&["get", "configmap", "-n", ns]);
    assert!(rows(&out).iter().any(|r| r.starts_with("held 1 ")), "{out}");
    let ts = k.ok(&[
        "get",
        "configmap",
        "held",
        "-n",
        ns,
        "-o",
        "jsonpath={.metadata.deletionTimestamp}",
    ]);
    assert!(ts.ends_with('Z') && ts.len() == 20, "{ts}");
    // No new finalizers on an object being deleted; other changes are fine.
    let err = k.fails(&[
        "patch",
        "configmap",
        "held",
        "-n",
        ns,
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold","example.com/more"]}}"#,
    ]);
    assert!(
        err.contains("no new finalizers can be added if the object is being deleted"),
        "{err}"
    );
    k.ok(&["label", "configmap", "held", "-n", ns, "still=here"]);
    k.ok(&[
        "patch",
        "configmap",
        "held",
        "-n",
        ns,
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    assert!(gone(k, &["configmap", "held", "-n", ns]));
}

fn namespace_termination(k: &Kubectl, dir: &Path, ns: &str) {
    let doomed = format!("{ns}-doomed");
    k.ok(&["create", "namespace", &doomed]);
    let d = write(
        dir,
        &format!("{doomed}.yaml"),
        &deployment(&doomed, "web", 1),
    );
    k.ok(&["apply", "-f", &d]);
    k.ok(&[
        "create",
        "configmap",
        "plain",
        "-n",
        &doomed,
        "--from-literal=k=v",
    ]);
    k.ok(&[
        "create",
        "configmap",
        "held",
        "-n",
        &doomed,
        "--from-literal=k=v",
    ]);
    k.ok(&[
        "patch",
        "configmap",
        "held",
        "-n",
        &doomed,
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ]);
    let out = k.ok(&["delete", "namespace", &doomed, "--wait=false"]);
    assert_eq!(out.trim(), format!("namespace \"{doomed}\" deleted"));
    let out = k.ok(&["get", "namespace", &doomed]);
    assert!(
        rows(&out)
            .iter()
            .any(|r| r.starts_with(&format!("{doomed} Terminating "))),
        "{out}"
    );
    let err = k.fails(&[
        "create",
        "configmap",
        "late",
        "-n",
        &doomed,
        "--from-literal=k=v",
    ]);
    assert!(
        err.contains(&format!("configmaps \"late\" is forbidden: unable to create new content in namespace {doomed} because it is being terminated")),
        "{err}"
    );
    // The controller empties it; the held ConfigMap waits and the namespace says why.
    eventually("the namespace's content is deleted", || {
        gone(k, &["deploy", "web", "-n", &doomed])
            && gone(k, &["configmap", "plain", "-n", &doomed])
    });
    eventually("the namespace reports what remains", || {
        k.ok(&["get", "namespace", &doomed, "-o", "json"])
            .contains("Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances")
    });
    assert!(!gone(k, &["namespace", &doomed]));
    k.ok(&[
        "patch",
        "configmap",
        "held",
        "-n",
        &doomed,
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    eventually("the namespace goes", || gone(k, &["namespace", &doomed]));

    // A plain `kubectl delete namespace` waits until the namespace is gone.
    let quick = format!("{ns}-quick");
    k.ok(&["create", "namespace", &quick]);
    k.ok(&[
        "create",
        "configmap",
        "c",
        "-n",
        &quick,
        "--from-literal=k=v",
    ]);
    let out = k.ok(&["delete", "namespace", &quick]);
    assert_eq!(out.trim(), format!("namespace \"{quick}\" deleted"));
    assert!(gone(k, &["namespace", &quick]));
}

fn selector_watch(k: &Kubectl, dir: &Path, ns: &str) {
    let p = write(
        dir,
        &format!("{ns}-w.yaml"),
        &pod(ns, "watched", "w", "busybox:1.36"),
    );
    k.ok(&["apply", "-f", &p]);
    let mut child = Command::new(k.bin)
        .arg("--kubeconfig")
        .arg(&k.kubeconfig)
        .arg("--cache-dir")
        .arg(&k.cache)
        .args([
            "get",
            "pods",
            "-n",
            ns,
            "-w",
            "-l",
            "app=w",
            "--output-watch-events",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let wait_for = |prefix: &str, lines: &mut Vec<String>| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
                let l = l.split_whitespace().collect::<Vec<_>>().join(" ");
                let hit = l.starts_with(prefix);
                lines.push(l);
                if hit {
                    return true;
                }
            }
        }
        false
    };
    let first = wait_for("ADDED watched ", &mut lines);
    k.ok(&[
        "label",
        "pod",
        "watched",
        "-n",
        ns,
        "app=other",
        "--overwrite",
    ]);
    let left = wait_for("DELETED watched ", &mut lines);
    k.ok(&["label", "pod", "watched", "-n", ns, "app=w", "--overwrite"]);
    let back = wait_for("ADDED watched ", &mut lines);
    let _ = child.kill();
    let _ = child.wait();
    assert!(first && left && back, "watch printed {lines:?}");
    k.ok(&["delete", "pod", "watched", "-n", ns]);
}

/// curl with the admin client certificate; returns (HTTP code, body).
fn curl(certs: &(String, String), ca: &Path, method: &str, url: &str, body: &str) -> (u16, Value) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--cacert"])
        .arg(ca)
        .args(["--cert", &certs.0, "--key", &certs.1, "-X", method])
        .args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
            url,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("$ curl -X {method} {url} {body}\n{text}");
    let (json, code) = text.rsplit_once('\n').unwrap();
    (
        code.trim().parse().unwrap(),
        serde_json::from_str(json).unwrap_or(Value::Null),
    )
}

fn subresources_with_curl(k: &Kubectl, dir: &Path, pki: &Path, server: &str) {
    let ns = "curl";
    k.ok(&["create", "namespace", ns]);
    let certs = common::client_cert_files(&k.kubeconfig, dir, "admin");
    let ca = pki.join("ca.crt");
    let pods = format!("{server}/api/v1/namespaces/{ns}/pods");

    // Discovery lists binding and eviction the way kubectl drain looks for them.
    let (_, core) = curl(&certs, &ca, "GET", &format!("{server}/api/v1"), "");
    let find = |n: &str| {
        core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == n)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let ev = find("pods/eviction");
    assert_eq!(
        (
            ev["group"].as_str(),
            ev["version"].as_str(),
            ev["kind"].as_str()
        ),
        (Some("policy"), Some("v1"), Some("Eviction"))
    );
    assert_eq!(ev["verbs"], serde_json::json!(["create"]));
    assert_eq!(find("pods/binding")["kind"], "Binding");
    assert_eq!(
        find("namespaces/finalize")["verbs"],
        serde_json::json!(["update"])
    );

    for name in ["bound", "loose"] {
        let f = write(
            dir,
            &format!("curl-{name}.yaml"),
            &pod(ns, name, name, "busybox:1.36"),
        );
        k.ok(&["apply", "-f", &f]);
    }
    // binding: once, then 409.
    let bind = |node: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Binding","metadata":{{"name":"bound"}},"target":{{"kind":"Node","name":"{node}"}}}}"#
        )
    };
    let (code, body) = curl(
        &certs,
        &ca,
        "POST",
        &format!("{pods}/bound/binding"),
        &bind("n1"),
    );
    assert_eq!(
        (code, body["status"].as_str()),
        (201, Some("Success")),
        "{body}"
    );
    let (code, body) = curl(
        &certs,
        &ca,
        "POST",
        &format!("{pods}/bound/binding"),
        &bind("n2"),
    );
    assert_eq!(code, 409, "{body}");
    assert_eq!(
        body["message"],
        "Operation cannot be fulfilled on pods/binding \"bound\": pod bound is already assigned to node \"n1\""
    );
    assert_eq!(
        k.ok(&[
            "get",
            "pod",
            "bound",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.nodeName}"
        ]),
        "n1"
    );

    // eviction: the pod on a node terminates gracefully; the unbound one goes at once.
    let evict = |name: &str| {
        format!(
            r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{name}","namespace":"{ns}"}}}}"#
        )
    };
    let (code, body) = curl(
        &certs,
        &ca,
        "POST",
        &format!("{pods}/bound/eviction"),
        &evict("bound"),
    );
    assert_eq!(
        (code, body["status"].as_str()),
        (201, Some("Success")),
        "{body}"
    );
    let p = json_of(k, &["get", "pod", "bound", "-n", ns]);
    assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 30, "{p}");
    assert!(p["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "DisruptionTarget" && c["reason"] == "EvictionByEvictionAPI"));
    let out = k.ok(&["get", "pod", "bound", "-n", ns]);
    assert!(
        rows(&out)
            .iter()
            .any(|r| r.starts_with("bound 0/1 Terminating ")),
        "{out}"
    );
    let (code, _) = curl(
        &certs,
        &ca,
        "POST",
        &format!("{pods}/loose/eviction"),
        &evict("loose"),
    );
    assert_eq!(code, 201);
    assert!(gone(k, &["pod", "loose", "-n", ns]));
    // The node agent's final delete (grace 0) removes the terminating pod; DELETE of a pod
    // answers the pod.
    let (code, body) = curl(
        &certs,
        &ca,
        "DELETE",
        &format!("{pods}/bound"),
        r#"{"gracePeriodSeconds":0}"#,
    );
    assert_eq!((code, body["kind"].as_str()), (200, Some("Pod")), "{body}");
    assert!(gone(k, &["pod", "bound", "-n", ns]));

    // DELETE of a ConfigMap answers a Status; one held by a finalizer answers the object, with
    // 202 when orphanDependents=false was asked.
    let cms = format!("{server}/api/v1/namespaces/{ns}/configmaps");
    k.ok(&["create", "configmap", "a", "-n", ns]);
    let (code, body) = curl(&certs, &ca, "DELETE", &format!("{cms}/a"), "");
    assert_eq!(
        (code, body["kind"].as_str(), body["status"].as_str()),
        (200, Some("Status"), Some("Success")),
        "{body}"
    );
    let (code, _) = curl(
        &certs,
        &ca,
        "POST",
        &cms,
        r#"{"metadata":{"name":"b","finalizers":["example.com/hold"]}}"#,
    );
    assert_eq!(code, 201);
    let (code, body) = curl(
        &certs,
        &ca,
        "DELETE",
        &format!("{cms}/b"),
        r#"{"orphanDependents":false}"#,
    );
    assert_eq!(
        (code, body["kind"].as_str()),
        (202, Some("ConfigMap")),
        "{body}"
    );
    let (code, body) = curl(
        &certs,
        &ca,
        "DELETE",
        &format!("{cms}/b"),
        r#"{"preconditions":{"uid":"wrong"}}"#,
    );
    assert_eq!(code, 409, "{body}");
}

#[test]
fn object_lifecycle_with_kubectl_1_27_and_1_33() {
    for bin in KUBECTLS
        .iter()
        .chain(["/usr/bin/etcd", "/usr/bin/curl"].iter())
    {
        assert!(
            Path::new(bin).exists(),
            "{bin} is required (scripts/install-deps.sh)"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
    let server = format!("https://127.0.0.1:{api_port}");
    let pki = common::make_pki(dir, api_port);
    let _etcd = common::start_etcd(dir, &pki, etcd_port, peer_port);
    let _api = common::start_server(dir, &pki, etcd_port, api_port, &[], "server.log");

    for (i, bin) in KUBECTLS.iter().enumerate() {
        let k = Kubectl {
            bin,
            cache: dir.join(format!("cache-{i}")),
            kubeconfig: dir.join("super-admin.conf"),
        };
        let ns = format!("life{}", bin.rsplit('.').next().unwrap_or("x"));
        k.ok(&["create", "namespace", &ns]);
        describe_diff_replace_edit(&k, dir, &ns);
        cascades(&k, dir, &ns);
        finalizers(&k, &ns);
        selector_watch(&k, dir, &ns);
        namespace_termination(&k, dir, &ns);
    }
    let k = Kubectl {
        bin: KUBECTLS[1],
        cache: dir.join("cache-curl"),
        kubeconfig: dir.join("super-admin.conf"),
    };
    subresources_with_curl(&k, dir, &pki, &server);
}
