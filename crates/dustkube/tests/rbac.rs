//! RBAC end to end: a real etcd and `dustkube server`, driven by the real kubectl 1.27 and 1.33
//! and curl; asserts on what they print. Covers the default roles, `auth can-i` (also `--list`
//! and `--as`), a RoleBinding for an X.509 user, Forbidden messages, componentstatuses,
//! bootstrap tokens (CSR create, expiry), service-account JWTs and anonymous cluster-info.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{free_port, has_row, rows, user_kubeconfig, Kubectl, KUBECTLS};

use dustkube::auth::serviceaccount::{claims, SigningKey};

/// Prints the server log if the test fails.
struct LogOnPanic(PathBuf);

impl Drop for LogOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "server log:\n{}",
                fs::read_to_string(&self.0).unwrap_or_default()
            );
        }
    }
}

/// curl against the server: (HTTP code, body).
fn curl(
    server: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sSk", "-o", "-", "-w", "\n%{http_code}", "-X", method]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    let out = cmd.arg(format!("{server}{path}")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.stderr.is_empty() {
        eprintln!("curl: {}", String::from_utf8_lossy(&out.stderr));
    }
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    eprintln!("$ curl {method} {path} -> {code}\n{body}");
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn exercise(admin: &Kubectl, jane: &Kubectl, ns: &str) {
    // kubeadm-style admin.conf (O=kubeadm:cluster-admins) may do everything through cluster-admin.
    assert_eq!(admin.can_i(&["*", "*"]), "yes");
    assert_eq!(admin.can_i(&["delete", "nodes"]), "yes");
    let out = admin.ok(&["get", "clusterroles"]);
    assert_eq!(rows(&out)[0], "NAME CREATED AT", "{out}");
    for r in [
        "cluster-admin ",
        "admin ",
        "edit ",
        "view ",
        "system:node-bootstrapper ",
    ] {
        assert!(has_row(&out, r), "{r} missing:\n{out}");
    }
    let out = admin.ok(&["get", "clusterrolebindings", "-o", "wide"]);
    assert!(
        has_row(&out, "kubeadm:cluster-admins ClusterRole/cluster-admin ")
            && rows(&out)
                .iter()
                .any(|r| r.starts_with("kubeadm:cluster-admins ")
                    && r.ends_with(" kubeadm:cluster-admins")),
        "{out}"
    );

    let out = admin.ok(&["get", "componentstatuses"]);
    assert_eq!(rows(&out)[0], "NAME STATUS MESSAGE ERROR", "{out}");
    for c in [
        "scheduler Healthy ok",
        "controller-manager Healthy ok",
        "etcd-0 Healthy ok",
    ] {
        assert!(has_row(&out, c), "{c} missing:\n{out}");
    }

    admin.ok(&["create", "namespace", ns]);
    assert_eq!(jane.can_i(&["list", "pods", "-n", ns]), "no");
    assert_eq!(admin.can_i(&["list", "pods", "-n", ns, "--as=jane"]), "no");
    assert_eq!(
        admin
            .ok(&[
                "create",
                "rolebinding",
                "jane-view",
                "--clusterrole=view",
                "--user=jane",
                "-n",
                ns
            ])
            .trim(),
        "rolebinding.rbac.authorization.k8s.io/jane-view created"
    );
    assert_eq!(jane.can_i(&["list", "pods", "-n", ns]), "yes");
    assert_eq!(jane.can_i(&["list", "pods", "-n", "default"]), "no");
    assert_eq!(jane.can_i(&["create", "deployments", "-n", ns]), "no");
    assert_eq!(
        jane.can_i(&["get", "deployments.apps/scale", "-n", ns]),
        "yes"
    );
    assert_eq!(admin.can_i(&["list", "pods", "-n", ns, "--as=jane"]), "yes");
    assert_eq!(
        admin.can_i(&["list", "secrets", "-n", ns, "--as=jane"]),
        "no"
    );

    // jane's own kubeconfig: Forbidden in default (Kubernetes' exact words), fine in her namespace.
    let err = jane.fails(&["get", "pods", "-n", "default"]);
    assert!(
        err.contains("Error from server (Forbidden): pods is forbidden: User \"jane\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""),
        "{err}"
    );
    let out = jane.run(&["get", "pods", "-n", ns]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains(&format!("No resources found in {ns} namespace.")));
    let err = jane.fails(&["get", "deploy", "web", "-n", "default"]);
    assert!(
        err.contains("deployments.apps \"web\" is forbidden: User \"jane\" cannot get resource \"deployments\" in API group \"apps\" in the namespace \"default\""),
        "{err}"
    );
    // jane may not impersonate.
    let err = jane.fails(&["get", "pods", "-n", ns, "--as=admin"]);
    assert!(
        err.contains("users \"admin\" is forbidden: User \"jane\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"),
        "{err}"
    );

    // auth can-i --list shows view's rules (and the basic ones everyone has).
    let out = admin.ok(&["auth", "can-i", "--list", "--as=jane", "-n", ns]);
    let r = rows(&out);
    assert_eq!(
        r[0], "Resources Non-Resource URLs Resource Names Verbs",
        "{out}"
    );
    for want in [
        "pods [] [] [get list watch]",
        "deployments.apps [] [] [get list watch]",
        "selfsubjectaccessreviews.authorization.k8s.io [] [] [create]",
        "[/api/*] [] [get]",
    ] {
        assert!(r.iter().any(|l| l == want), "{want} missing:\n{out}");
    }
    assert!(!r.iter().any(|l| l.starts_with("secrets ")), "{out}");

    let out = admin.ok(&["get", "rolebinding", "-n", ns, "-o", "wide"]);
    assert_eq!(
        rows(&out)[0],
        "NAME ROLE AGE USERS GROUPS SERVICEACCOUNTS",
        "{out}"
    );
    assert!(has_row(&out, "jane-view ClusterRole/view "), "{out}");
    assert!(rows(&out)[1].ends_with(" jane"), "{out}");
    let out = admin.ok(&["get", "rolebinding", "-n", ns]);
    assert_eq!(rows(&out)[0], "NAME ROLE AGE", "{out}");

    // Removing the binding takes the access away again.
    admin.ok(&["delete", "rolebinding", "jane-view", "-n", ns]);
    assert_eq!(jane.can_i(&["list", "pods", "-n", ns]), "no");
}

fn bootstrap_secret(id: &str, secret: &str, expiration: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: bootstrap-token-{id}\n  namespace: kube-system\ntype: bootstrap.kubernetes.io/token\nstringData:\n  token-id: {id}\n  token-secret: {secret}\n  expiration: \"{expiration}\"\n  usage-bootstrap-authentication: \"true\"\n  usage-bootstrap-signing: \"true\"\n  auth-extra-groups: system:bootstrappers:kubeadm:default-node-token\n"
    )
}

fn tokens(admin: &Kubectl, dir: &Path, pki: &Path, server: &str) {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);

    // A bootstrap token may create a CSR but not list pods.
    let file = dir.join("tokens.yaml");
    fs::write(
        &file,
        format!(
            "{}---\n{}",
            bootstrap_secret("abcdef", "0123456789abcdef", "2999-01-01T00:00:00Z"),
            bootstrap_secret("expird", "0123456789abcdef", "2001-01-01T00:00:00Z")
        ),
    )
    .unwrap();
    admin.ok(&["apply", "-f", file.to_str().unwrap()]);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "system:node:worker1");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    let csr_pem = params.serialize_request(&key).unwrap().pem().unwrap();
    let csr = serde_json::json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": "node-csr-worker1"},
        "spec": {
            "request": b64(csr_pem.as_bytes()),
            "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
            // "server auth" keeps the controllers from auto-approving it (not a node client
            // certificate request), so it stays Pending until the admin approves it.
            "usages": ["digital signature", "client auth", "server auth"],
            "username": "someone-else",
        }
    })
    .to_string();
    let good = Some("abcdef.0123456789abcdef");
    let csrs = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
    let (code, body) = curl(server, good, "POST", csrs, Some(&csr));
    assert_eq!(code, 201, "{body}");
    assert!(
        body.contains("\"username\":\"system:bootstrap:abcdef\""),
        "{body}"
    );
    let (code, body) = curl(server, good, "GET", "/api/v1/namespaces/default/pods", None);
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("User \\\"system:bootstrap:abcdef\\\" cannot list resource \\\"pods\\\""),
        "{body}"
    );
    let expired = Some("expird.0123456789abcdef");
    let (code, body) = curl(server, expired, "POST", csrs, Some(&csr));
    assert_eq!(code, 401, "{body}");
    let (code, _) = curl(server, Some("zzzzzz.0123456789abcdef"), "GET", "/api", None);
    assert_eq!(code, 401);

    // The CSR table and approval (the /approval subresource).
    let out = admin.ok(&["get", "csr"]);
    assert_eq!(
        rows(&out)[0],
        "NAME AGE SIGNERNAME REQUESTOR REQUESTEDDURATION CONDITION",
        "{out}"
    );
    assert!(
        rows(&out).iter().any(|r| r.starts_with("node-csr-worker1 ")
            && r.ends_with(" kubernetes.io/kube-apiserver-client-kubelet system:bootstrap:abcdef <none> Pending")),
        "{out}"
    );
    assert_eq!(
        admin
            .ok(&["certificate", "approve", "node-csr-worker1"])
            .trim(),
        "certificatesigningrequest.certificates.k8s.io/node-csr-worker1 approved"
    );
    let out = admin.ok(&["get", "csr", "node-csr-worker1"]);
    assert!(rows(&out)[1].ends_with(" Approved"), "{out}");

    // A service-account token signed with sa.key authenticates as the service account.
    let out = admin.ok(&["create", "serviceaccount", "builder", "-n", "ci"]);
    assert_eq!(out.trim(), "serviceaccount/builder created");
    let out = admin.ok(&["get", "sa", "-n", "ci"]);
    assert_eq!(rows(&out)[0], "NAME SECRETS AGE", "{out}");
    assert!(has_row(&out, "builder 0 "), "{out}");
    let uid = admin.ok(&[
        "get",
        "sa",
        "builder",
        "-n",
        "ci",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let signer = SigningKey::from_file(&pki.join("sa.key")).unwrap();
    let now = chrono::Utc::now().timestamp();
    let token = signer
        .sign(&claims("ci", "builder", &uid, now, 600))
        .unwrap();
    admin.ok(&[
        "create",
        "rolebinding",
        "builder-edit",
        "--clusterrole=edit",
        "--serviceaccount=ci:builder",
        "-n",
        "ci",
    ]);
    let ssar = |ns: &str, verb: &str, resource: &str| {
        serde_json::json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"namespace": ns, "verb": verb, "resource": resource}},
        })
        .to_string()
    };
    let reviews = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    let (code, body) = curl(
        server,
        Some(&token),
        "POST",
        reviews,
        Some(&ssar("ci", "create", "pods")),
    );
    assert_eq!(code, 201, "{body}");
    assert!(body.contains("\"allowed\":true"), "{body}");
    let (code, body) = curl(
        server,
        Some(&token),
        "POST",
        reviews,
        Some(&ssar("default", "list", "pods")),
    );
    assert_eq!(code, 201, "{body}");
    assert!(body.contains("\"allowed\":false"), "{body}");
    let (code, body) = curl(
        server,
        Some(&token),
        "GET",
        "/api/v1/namespaces/default/pods",
        None,
    );
    assert_eq!(code, 403);
    assert!(
        body.contains(
            "User \\\"system:serviceaccount:ci:builder\\\" cannot list resource \\\"pods\\\""
        ),
        "{body}"
    );
    // `kubectl create token` (TokenRequest; protobuf from 1.33, JSON from 1.27) signs a token
    // for the same account.
    for (i, bin) in KUBECTLS.iter().enumerate() {
        let k = Kubectl {
            bin,
            cache: admin.cache.join(format!("token-{i}")),
            kubeconfig: admin.kubeconfig.clone(),
        };
        let requested = k.ok(&["create", "token", "builder", "-n", "ci", "--duration=20m"]);
        let requested = requested.trim();
        assert_eq!(requested.split('.').count(), 3, "not a JWT: {requested}");
        let (code, body) = curl(
            server,
            Some(requested),
            "GET",
            "/api/v1/namespaces/default/pods",
            None,
        );
        assert_eq!(code, 403, "{body}");
        assert!(body.contains("system:serviceaccount:ci:builder"), "{body}");
        let (code, body) = curl(
            server,
            Some(requested),
            "GET",
            "/api/v1/namespaces/ci/pods",
            None,
        );
        assert_eq!(code, 200, "{body}");
        let err = k.fails(&["create", "token", "builder", "-n", "ci", "--duration=5m"]);
        assert!(
            err.contains("may not specify a duration less than 10 minutes"),
            "{err}"
        );
        let err = k.fails(&["create", "token", "nobody", "-n", "ci"]);
        assert!(err.contains("not found"), "{err}");
    }
    // The same claims signed by another key, or after the account is gone: 401.
    let other = SigningKey::from_pem(
        rcgen::KeyPair::generate()
            .unwrap()
            .serialize_pem()
            .as_bytes(),
    )
    .unwrap();
    let forged = other
        .sign(&claims("ci", "builder", &uid, now, 600))
        .unwrap();
    assert_eq!(
        curl(
            server,
            Some(&forged),
            "POST",
            reviews,
            Some(&ssar("ci", "create", "pods"))
        )
        .0,
        401
    );
    admin.ok(&["delete", "sa", "builder", "-n", "ci"]);
    assert_eq!(
        curl(
            server,
            Some(&token),
            "POST",
            reviews,
            Some(&ssar("ci", "create", "pods"))
        )
        .0,
        401
    );

    // Anonymous: cluster-info in kube-public is readable, nothing else is.
    admin.ok(&[
        "create",
        "configmap",
        "cluster-info",
        "-n",
        "kube-public",
        "--from-literal=kubeconfig=x",
    ]);
    let (code, body) = curl(
        server,
        None,
        "GET",
        "/api/v1/namespaces/kube-public/configmaps/cluster-info",
        None,
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"kubeconfig\":\"x\""), "{body}");
    assert_eq!(
        curl(
            server,
            None,
            "GET",
            "/api/v1/namespaces/kube-public/configmaps",
            None
        )
        .0,
        401
    );
    assert_eq!(curl(server, None, "GET", "/healthz", None).0, 200);
}

#[test]
fn rbac_tokens_and_reviews_with_kubectl_1_27_and_1_33() {
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

    let sa_pub = pki.join("sa.pub").display().to_string();
    let sa_key = pki.join("sa.key").display().to_string();
    let mut api = common::start_server(
        dir,
        &pki,
        etcd_port,
        api_port,
        &[
            "--service-account-key-file",
            &sa_pub,
            "--service-account-signing-key-file",
            &sa_key,
        ],
        "server.log",
    );
    let server_log = dir.join("server.log");
    let _log = LogOnPanic(server_log.clone());

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
            kubeconfig: dir.join("admin.conf"),
        };
        let jane = Kubectl {
            bin,
            cache,
            kubeconfig: jane_conf.clone(),
        };
        let version = bin.rsplit('.').next().unwrap_or("x");
        exercise(&admin, &jane, &format!("demo{version}"));
    }
    let admin = Kubectl {
        bin: KUBECTLS[1],
        cache: dir.join("cache-1"),
        kubeconfig: dir.join("admin.conf"),
    };
    admin.ok(&["create", "namespace", "ci"]);
    tokens(&admin, dir, &pki, &server);

    let log = fs::read_to_string(&server_log).unwrap_or_default();
    assert!(api.terminate(), "server did not shut down cleanly:\n{log}");
}
