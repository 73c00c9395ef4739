//! End to end: a real etcd (mTLS, loopback) and `dustkube server`, driven by the real kubectl
//! 1.27 and 1.33 binaries; asserts on what kubectl prints.

mod common;

use std::fs;
use std::path::Path;

use common::{free_port, has_row, rows, user_kubeconfig, Kubectl, KUBECTLS};

fn manifest(ns: &str, replicas: u32, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: {ns}\n  labels:\n    app: web\ndata:\n  color: blue\n\
---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: {ns}\n  labels:\n    app: web\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: nginx\n        image: {image}\n        ports:\n        - containerPort: 80\n"
    )
}

fn exercise(k: &Kubectl, jane: &Kubectl, dir: &Path, ns: &str) {
    // Default namespaces exist and are Active.
    let out = k.ok(&["get", "ns"]);
    assert!(has_row(&out, "NAME STATUS AGE"), "{out}");
    for n in ["default", "kube-system", "kube-public"] {
        assert!(
            has_row(&out, &format!("{n} Active ")),
            "{n} missing:\n{out}"
        );
    }
    // An empty cluster has no pods.
    let out = k.run(&["get", "pods", "-A"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("No resources found"));

    assert_eq!(
        k.ok(&["create", "namespace", ns]).trim(),
        format!("namespace/{ns} created")
    );
    let err = k.fails(&["create", "namespace", ns]);
    assert!(
        err.contains(&format!(
            "(AlreadyExists): namespaces \"{ns}\" already exists"
        )),
        "{err}"
    );

    // apply: created, then unchanged, then configured.
    let file = dir.join(format!("{ns}.yaml"));
    fs::write(&file, manifest(ns, 2, "nginx:1.25")).unwrap();
    let f = file.to_str().unwrap();
    let out = k.ok(&["apply", "-f", f]);
    assert!(
        out.contains("configmap/settings created") && out.contains("deployment.apps/web created"),
        "{out}"
    );
    let out = k.ok(&["apply", "-f", f]);
    assert!(
        out.contains("configmap/settings unchanged")
            && out.contains("deployment.apps/web unchanged"),
        "{out}"
    );
    fs::write(&file, manifest(ns, 3, "nginx:1.26")).unwrap();
    let out = k.ok(&["apply", "-f", f]);
    assert!(
        out.contains("configmap/settings unchanged")
            && out.contains("deployment.apps/web configured"),
        "{out}"
    );

    // Server-side apply is not there yet: a clear 415 that kubectl reports as such.
    let err = k.fails(&["apply", "--server-side", "-f", f]);
    assert!(
        err.contains("Server-side apply not available on the server"),
        "{err}"
    );

    // Tables with kubectl's columns.
    let out = k.ok(&["get", "deploy", "-n", ns]);
    assert_eq!(
        rows(&out)[0],
        "NAME READY UP-TO-DATE AVAILABLE AGE",
        "{out}"
    );
    assert!(has_row(&out, "web 0/3 0 0 "), "{out}");
    let out = k.ok(&["get", "deploy", "-n", ns, "-o", "wide"]);
    assert_eq!(
        rows(&out)[0],
        "NAME READY UP-TO-DATE AVAILABLE AGE CONTAINERS IMAGES SELECTOR",
        "{out}"
    );
    assert!(rows(&out)[1].ends_with("nginx nginx:1.26 app=web"), "{out}");
    let out = k.ok(&["get", "cm", "-A", "--show-labels"]);
    assert_eq!(rows(&out)[0], "NAMESPACE NAME DATA AGE LABELS", "{out}");
    let row = rows(&out)
        .into_iter()
        .find(|r| r.starts_with(&format!("{ns} settings 1 ")))
        .unwrap_or_default();
    assert!(row.ends_with("app=web"), "{out}");
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
        "3"
    );
    assert_eq!(
        k.ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ]),
        "nginx:1.26"
    );

    // scale (the scale subresource).
    assert_eq!(
        k.ok(&["scale", "deploy", "web", "-n", ns, "--replicas=5"])
            .trim(),
        "deployment.apps/web scaled"
    );
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
        "5"
    );
    let out = k.ok(&[
        "get",
        "--raw",
        &format!("/apis/apps/v1/namespaces/{ns}/deployments/web/scale"),
    ]);
    assert!(
        out.contains("\"kind\":\"Scale\"") && out.contains("\"replicas\":5"),
        "{out}"
    );

    // label --overwrite (merge patch).
    assert_eq!(
        k.ok(&["label", "deploy", "web", "-n", ns, "tier=fe"])
            .trim(),
        "deployment.apps/web labeled"
    );
    let err = k.fails(&["label", "deploy", "web", "-n", ns, "tier=be"]);
    assert!(err.contains("already has a value (fe)"), "{err}");
    k.ok(&["label", "deploy", "web", "-n", ns, "tier=be", "--overwrite"]);
    assert_eq!(
        k.ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            ns,
            "-o",
            "jsonpath={.metadata.labels.tier}"
        ]),
        "be"
    );

    // replace with a stale resourceVersion: 409 Conflict.
    let stale = k.ok(&["get", "cm", "settings", "-n", ns, "-o", "json"]);
    k.ok(&["label", "cm", "settings", "-n", ns, "seen=yes"]);
    let stale_file = dir.join(format!("{ns}-stale.json"));
    fs::write(&stale_file, stale).unwrap();
    let err = k.fails(&["replace", "-f", stale_file.to_str().unwrap()]);
    assert!(
        err.contains("Conflict") && err.contains("the object has been modified"),
        "{err}"
    );

    // A namespaced object in a missing namespace is NotFound.
    let err = k.fails(&["create", "configmap", "x", "-n", "nowhere"]);
    assert!(err.contains("namespaces \"nowhere\" not found"), "{err}");

    // watch: `get -w` (Table watch, chunked) prints an object created while it runs.
    let mut watcher = std::process::Command::new(k.bin)
        .arg("--kubeconfig")
        .arg(&k.kubeconfig)
        .arg("--cache-dir")
        .arg(&k.cache)
        .args(["get", "configmaps", "-n", ns, "--watch-only"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watcher.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(1500));
    k.ok(&[
        "create",
        "configmap",
        "watched",
        "-n",
        ns,
        "--from-literal=k=v",
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut lines = Vec::new();
    while std::time::Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
            lines.push(l.split_whitespace().collect::<Vec<_>>().join(" "));
            if lines.iter().any(|l| l.starts_with("watched 1 ")) {
                break;
            }
        }
    }
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert!(
        lines.iter().any(|l| l.starts_with("watched 1 ")),
        "watch printed {lines:?}"
    );
    k.ok(&["delete", "configmap", "watched", "-n", ns]);

    // delete -l removes both.
    let out = k.ok(&["delete", "cm,deploy", "-n", ns, "-l", "app=web"]);
    assert!(
        out.contains("configmap \"settings\" deleted")
            && out.contains("deployment.apps \"web\" deleted"),
        "{out}"
    );
    let out = k.run(&["get", "deploy,cm", "-n", ns, "-l", "app=web"]);
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains(&format!("No resources found in {ns} namespace.")));

    // A user outside system:masters is Forbidden (RBAC is not there yet).
    let err = jane.fails(&["get", "pods", "-n", ns]);
    assert!(
        err.contains(&format!("Error from server (Forbidden): pods is forbidden: User \"jane\" cannot list resource \"pods\" in API group \"\" in the namespace \"{ns}\"")),
        "{err}"
    );
}

#[test]
fn kubectl_1_27_and_1_33_drive_dustkube_on_etcd() {
    for bin in KUBECTLS.iter().chain(["/usr/bin/etcd"].iter()) {
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

    // The API surface alone: no controllers turning Deployments into pods and statuses.
    let mut api = common::start_server(
        dir,
        &pki,
        etcd_port,
        api_port,
        &["--controllers=false"],
        "server.log",
    );
    let server_log = dir.join("server.log");

    let jane_conf = dir.join("jane.conf");
    fs::write(
        &jane_conf,
        user_kubeconfig(&pki, &server, "jane", &["students"]),
    )
    .unwrap();
    for (i, bin) in KUBECTLS.iter().enumerate() {
        let cache = dir.join(format!("cache-{i}"));
        let admin = Kubectl {
            bin,
            cache: cache.clone(),
            kubeconfig: dir.join("super-admin.conf"),
        };
        let jane = Kubectl {
            bin,
            cache,
            kubeconfig: jane_conf.clone(),
        };
        let version = bin.rsplit('.').next().unwrap_or("x");
        exercise(&admin, &jane, dir, &format!("demo{version}"));
    }

    // Without a client certificate (an unknown bearer token): health is public, the API is 401.
    let ca_b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(fs::read(pki.join("ca.crt")).unwrap())
    };
    let anon_conf = dir.join("anonymous.conf");
    fs::write(
        &anon_conf,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca_b64}\nusers:\n- name: u\n  user: {{token: not-a-valid-token}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"
        ),
    )
    .unwrap();
    let anon = Kubectl {
        bin: KUBECTLS[1],
        cache: dir.join("cache-anon"),
        kubeconfig: anon_conf,
    };
    assert_eq!(anon.ok(&["get", "--raw", "/livez"]), "ok");
    let err = anon.fails(&["get", "ns"]);
    assert!(
        err.contains("the server has asked for the client to provide credentials"),
        "{err}"
    );

    let log = fs::read_to_string(&server_log).unwrap_or_default();
    assert!(
        api.terminate(),
        "server did not shut down cleanly on SIGTERM:\n{log}"
    );
    let log = fs::read_to_string(&server_log).unwrap_or_default();
    assert!(log.contains("shutting down"), "{log}");
}
