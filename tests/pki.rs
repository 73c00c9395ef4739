//! `duststack pki`: every certificate against kubeadm's table, checked with openssl, kubectl and a
//! real etcd; idempotent init, renew and check.

use std::collections::BTreeMap;
use std::net::{IpAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use duststack::pki::kubeconfig::Kubeconfig;
use duststack::pki::spec::Usage;
use duststack::pki::CertInfo;

fn duststack(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_duststack"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const BASE: [&str; 4] = ["--node-name", "cp1", "--advertise-address", "192.168.50.10"];

fn init(dir: &Path, extra: &[&str]) -> String {
    let mut args = vec!["pki", "init", "--dir", dir.to_str().unwrap()];
    args.extend(BASE);
    args.extend(extra);
    ok(duststack(&args))
}

/// Runs a tool that the test depends on; a missing tool fails the test loudly.
fn tool(name: &str, args: &[&str]) -> Output {
    Command::new(name).args(args).output().unwrap_or_else(|e| {
        panic!("{name} is required for this test (scripts/install-deps.sh installs it): {e}")
    })
}

fn cert(dir: &Path, name: &str) -> CertInfo {
    CertInfo::from_pem(&std::fs::read(dir.join(format!("{name}.crt"))).unwrap()).unwrap()
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn within_a_minute(t: time::OffsetDateTime, days: i64) {
    let want = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    let off = (t - want).abs();
    assert!(off < time::Duration::minutes(1), "not_after {t} vs {want}");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every regular file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

/// (name, issuer, CN, O, usage) of every leaf in the table.
const LEAVES: [(&str, &str, &str, &[&str], Usage); 7] = [
    ("apiserver", "ca", "kube-apiserver", &[], Usage::Server),
    (
        "apiserver-kubelet-client",
        "ca",
        "kube-apiserver-kubelet-client",
        &["kubeadm:cluster-admins"],
        Usage::Client,
    ),
    (
        "front-proxy-client",
        "front-proxy-ca",
        "front-proxy-client",
        &[],
        Usage::Client,
    ),
    ("etcd/server", "etcd/ca", "cp1", &[], Usage::ServerAndClient),
    ("etcd/peer", "etcd/ca", "cp1", &[], Usage::ServerAndClient),
    (
        "etcd/healthcheck-client",
        "etcd/ca",
        "kube-etcd-healthcheck-client",
        &[],
        Usage::Client,
    ),
    (
        "apiserver-etcd-client",
        "etcd/ca",
        "kube-apiserver-etcd-client",
        &[],
        Usage::Client,
    ),
];

#[test]
fn every_certificate_matches_the_table() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let init_out = init(
        &dir,
        &[
            "--control-plane-endpoint",
            "lb.example.com:8443",
            "--cert-sans",
            "10.1.2.3,api.example.com",
            "--nodes",
            "cp1,w1",
        ],
    );
    assert!(
        init_out.contains("apiserver") && init_out.contains("created"),
        "{init_out}"
    );

    for (name, cn) in [
        ("ca", "kubernetes"),
        ("front-proxy-ca", "front-proxy-ca"),
        ("etcd/ca", "etcd-ca"),
    ] {
        let c = cert(&dir, name);
        assert_eq!(c.common_name, cn);
        assert!(c.is_ca, "{name} must be a CA");
        assert!(
            c.key_usages.contains(&"keyCertSign"),
            "{name}: {:?}",
            c.key_usages
        );
        assert!(c.signed_by(&c), "{name} must be self-signed");
        assert!(c.dns_names.is_empty() && c.ips.is_empty());
        within_a_minute(c.not_after, 3650);
        assert!(c.not_before <= time::OffsetDateTime::now_utc());
    }
    for (name, issuer, cn, orgs, usage) in LEAVES {
        let c = cert(&dir, name);
        assert_eq!(c.common_name, cn, "{name}");
        assert_eq!(c.organizations, orgs, "{name}");
        assert_eq!(c.usage, Some(usage), "{name}");
        assert!(!c.is_ca, "{name} must not be a CA");
        assert_eq!(
            c.key_usages,
            ["digitalSignature", "keyEncipherment"],
            "{name}"
        );
        assert!(
            c.signed_by(&cert(&dir, issuer)),
            "{name} must be signed by {issuer}"
        );
        assert_eq!(c.issuer_common_name, cert(&dir, issuer).common_name);
        within_a_minute(c.not_after, 365);
    }
    let api = cert(&dir, "apiserver");
    assert_eq!(
        api.dns_names,
        [
            "cp1",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "lb.example.com",
            "api.example.com"
        ]
    );
    assert_eq!(api.ips, ips(&["10.96.0.1", "192.168.50.10", "10.1.2.3"]));
    for name in ["etcd/server", "etcd/peer"] {
        let c = cert(&dir, name);
        assert_eq!(c.dns_names, ["cp1", "localhost"]);
        assert_eq!(c.ips, ips(&["192.168.50.10", "127.0.0.1", "::1"]));
    }
    for name in [
        "apiserver-kubelet-client",
        "front-proxy-client",
        "etcd/healthcheck-client",
    ] {
        let c = cert(&dir, name);
        assert!(c.dns_names.is_empty() && c.ips.is_empty(), "{name}");
    }

    // openssl's own reading agrees on the CA flag and usages.
    let text = String::from_utf8(
        tool(
            "openssl",
            &[
                "x509",
                "-noout",
                "-text",
                "-in",
                dir.join("etcd/server.crt").to_str().unwrap(),
            ],
        )
        .stdout,
    )
    .unwrap();
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(
        text.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{text}"
    );
    assert!(
        text.contains("Digital Signature, Key Encipherment"),
        "{text}"
    );
    assert!(text.contains("Public-Key: (2048 bit)"), "{text}");
    let text = String::from_utf8(
        tool(
            "openssl",
            &[
                "x509",
                "-noout",
                "-text",
                "-in",
                dir.join("ca.crt").to_str().unwrap(),
            ],
        )
        .stdout,
    )
    .unwrap();
    assert!(
        text.contains("CA:TRUE") && text.contains("Certificate Sign"),
        "{text}"
    );

    // openssl verifies every chain.
    for (name, issuer, ..) in LEAVES {
        let ca = dir.join(format!("{issuer}.crt"));
        let leaf = dir.join(format!("{name}.crt"));
        let out = tool(
            "openssl",
            &[
                "verify",
                "-CAfile",
                ca.to_str().unwrap(),
                leaf.to_str().unwrap(),
            ],
        );
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // ... and a certificate under the wrong CA is rejected (the check above can fail).
    let out = tool(
        "openssl",
        &[
            "verify",
            "-CAfile",
            dir.join("ca.crt").to_str().unwrap(),
            dir.join("etcd/server.crt").to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());

    // Modes: keys 0600, certificates 0644, kubeconfigs 0600.
    for (name, ..) in LEAVES {
        assert_eq!(mode(&dir.join(format!("{name}.key"))), 0o600, "{name}.key");
        assert_eq!(mode(&dir.join(format!("{name}.crt"))), 0o644, "{name}.crt");
    }
    for name in ["ca", "front-proxy-ca", "etcd/ca"] {
        assert_eq!(mode(&dir.join(format!("{name}.key"))), 0o600, "{name}.key");
    }
    assert_eq!(mode(&dir.join("sa.key")), 0o600);
    assert_eq!(mode(&dir.join("sa.pub")), 0o644);

    // sa.pub is the PEM PUBLIC KEY of sa.key.
    let sa_pub = std::fs::read_to_string(dir.join("sa.pub")).unwrap();
    assert!(
        sa_pub.starts_with("-----BEGIN PUBLIC KEY-----\n"),
        "{sa_pub}"
    );
    let derived = tool(
        "openssl",
        &[
            "pkey",
            "-in",
            dir.join("sa.key").to_str().unwrap(),
            "-pubout",
        ],
    );
    assert!(derived.status.success());
    assert_eq!(String::from_utf8(derived.stdout).unwrap(), sa_pub);

    // The printed CA hash equals openssl's SPKI digest.
    let ca = dir.join("ca.crt");
    let pipe = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -pubkey -noout -in '{}' | openssl pkey -pubin -outform der | sha256sum",
            ca.display()
        ))
        .output()
        .unwrap();
    assert!(pipe.status.success());
    let hex = String::from_utf8(pipe.stdout).unwrap();
    let hex = hex.split_whitespace().next().unwrap();
    assert_eq!(hex.len(), 64);
    assert!(out_has_hash(&init_out, hex), "{init_out}");

    // Kubeconfigs: subjects, CA, server, modes.
    for (file, cn, orgs) in [
        (
            "admin.conf",
            "kubernetes-admin",
            vec!["kubeadm:cluster-admins"],
        ),
        (
            "super-admin.conf",
            "kubernetes-super-admin",
            vec!["system:masters"],
        ),
        (
            "controller-manager.conf",
            "system:kube-controller-manager",
            vec![],
        ),
        ("scheduler.conf", "system:kube-scheduler", vec![]),
        ("kubelet-cp1.conf", "system:node:cp1", vec!["system:nodes"]),
        ("kubelet-w1.conf", "system:node:w1", vec!["system:nodes"]),
    ] {
        let path = dir.join(file);
        assert_eq!(mode(&path), 0o600, "{file}");
        let kc = Kubeconfig::parse(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
        assert_eq!(kc.server, "https://lb.example.com:8443");
        assert_eq!(
            kc.ca_pem,
            std::fs::read_to_string(dir.join("ca.crt")).unwrap()
        );
        let c = CertInfo::from_pem(kc.cert_pem.as_bytes()).unwrap();
        assert_eq!(c.common_name, cn, "{file}");
        assert_eq!(c.organizations, orgs, "{file}");
        assert_eq!(c.usage, Some(Usage::Client), "{file}");
        assert!(c.signed_by(&cert(&dir, "ca")), "{file}");
        within_a_minute(c.not_after, 365);
    }
}

fn out_has_hash(out: &str, hex: &str) -> bool {
    out.lines()
        .any(|l| l == format!("CA certificate hash: sha256:{hex}"))
}

#[test]
fn init_is_idempotent_and_reissues_only_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    init(&dir, &["--nodes", "w1"]);
    let first = snapshot(&dir);
    assert_eq!(first.len(), 10 * 2 + 2 + 5, "{:?}", first.keys());

    let out = init(&dir, &["--nodes", "w1"]);
    let rows: Vec<&str> = out.lines().filter(|l| !l.contains(':')).collect();
    assert_eq!(rows.len(), 16, "{out}");
    assert!(rows.iter().all(|l| l.ends_with(" kept")), "{out}");
    assert!(out.contains("created: 0  re-issued: 0  kept: 16"), "{out}");
    assert_eq!(
        snapshot(&dir),
        first,
        "a second init must not change any file"
    );

    // A new SAN re-issues only apiserver.crt, keeping its key.
    let out = init(&dir, &["--nodes", "w1", "--cert-sans", "extra.example.com"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("apiserver ") && l.ends_with(" re-issued (SANs changed)")),
        "{out}"
    );
    let second = snapshot(&dir);
    let changed: Vec<&PathBuf> = first.keys().filter(|k| first[*k] != second[*k]).collect();
    assert_eq!(changed, [&PathBuf::from("apiserver.crt")]);
    assert!(cert(&dir, "apiserver")
        .dns_names
        .contains(&"extra.example.com".to_string()));

    // A leaf signed by another CA is re-issued from the CA on disk; the CA stays.
    let other = tmp.path().join("other");
    init(&other, &[]);
    std::fs::copy(other.join("etcd/peer.crt"), dir.join("etcd/peer.crt")).unwrap();
    std::fs::copy(other.join("etcd/peer.key"), dir.join("etcd/peer.key")).unwrap();
    let out = init(&dir, &["--nodes", "w1", "--cert-sans", "extra.example.com"]);
    assert!(
        out.contains("etcd/peer") && out.contains("not signed by the current etcd/ca"),
        "{out}"
    );
    assert!(cert(&dir, "etcd/peer").signed_by(&cert(&dir, "etcd/ca")));
    let third = snapshot(&dir);
    let changed: Vec<&PathBuf> = second.keys().filter(|k| second[*k] != third[*k]).collect();
    // The foreign key is kept (it is a valid key); the certificate is re-signed.
    assert_eq!(
        changed,
        [
            &PathBuf::from("etcd/peer.crt"),
            &PathBuf::from("etcd/peer.key")
        ]
    );
    assert_eq!(
        third[&PathBuf::from("etcd/peer.key")],
        std::fs::read(other.join("etcd/peer.key")).unwrap()
    );
    assert_eq!(
        third[&PathBuf::from("etcd/ca.crt")],
        first[&PathBuf::from("etcd/ca.crt")]
    );

    // A deleted CA certificate is re-created from its key: same public key, same hash.
    let hash_before = out
        .lines()
        .find(|l| l.starts_with("CA certificate hash"))
        .unwrap()
        .to_string();
    std::fs::remove_file(dir.join("ca.crt")).unwrap();
    let out = init(&dir, &["--nodes", "w1", "--cert-sans", "extra.example.com"]);
    assert!(out.lines().any(|l| l == hash_before), "{out}");
    assert!(cert(&dir, "apiserver").signed_by(&cert(&dir, "ca")));
}

#[test]
fn kubectl_reads_the_kubeconfigs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let kdir = tmp.path().join("kube");
    init(
        &dir,
        &["--kubeconfig-dir", kdir.to_str().unwrap(), "--nodes", "n1"],
    );
    assert!(!dir.join("admin.conf").exists());
    for file in [
        "admin.conf",
        "super-admin.conf",
        "controller-manager.conf",
        "scheduler.conf",
        "kubelet-n1.conf",
    ] {
        let path = kdir.join(file);
        let out = tool(
            "kubectl",
            &[
                "--kubeconfig",
                path.to_str().unwrap(),
                "config",
                "view",
                "--raw",
                "-o",
                "jsonpath={.users[0].user.client-certificate-data}",
            ],
        );
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let kc = Kubeconfig::parse(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&out.stdout)
            .unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), kc.cert_pem, "{file}");
        let server = tool(
            "kubectl",
            &[
                "--kubeconfig",
                path.to_str().unwrap(),
                "config",
                "view",
                "-o",
                "jsonpath={.clusters[0].cluster.server}",
            ],
        );
        assert_eq!(
            String::from_utf8(server.stdout).unwrap(),
            "https://192.168.50.10:6443"
        );
    }
}

#[test]
fn renew_keeps_subject_sans_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    init(&dir, &["--cert-sans", "a.example.com,10.9.9.9"]);
    let before = snapshot(&dir);
    let old = cert(&dir, "apiserver");
    std::thread::sleep(Duration::from_millis(1100));

    let out = ok(duststack(&[
        "pki",
        "renew",
        "apiserver",
        "--dir",
        dir.to_str().unwrap(),
    ]));
    assert!(out.starts_with("apiserver renewed, expires "), "{out}");
    let after = snapshot(&dir);
    let changed: Vec<&PathBuf> = before.keys().filter(|k| before[*k] != after[*k]).collect();
    assert_eq!(changed, [&PathBuf::from("apiserver.crt")]);
    let new = cert(&dir, "apiserver");
    assert_ne!(new.der, old.der);
    assert_eq!(new.dns_names, old.dns_names);
    assert_eq!(new.ips, old.ips);
    assert_eq!(new.common_name, old.common_name);
    assert_eq!(new.usage, old.usage);
    assert_eq!(new.spki, old.spki, "the key is kept");
    assert!(new.not_after > old.not_after);
    within_a_minute(new.not_after, 365);

    // `all` renews every leaf and kubeconfig, never a CA; chains still verify.
    let out = ok(duststack(&[
        "pki",
        "renew",
        "all",
        "--dir",
        dir.to_str().unwrap(),
    ]));
    assert_eq!(out.lines().count(), 7 + 4, "{out}");
    assert!(
        out.contains("etcd-server renewed") && out.contains("admin.conf renewed"),
        "{out}"
    );
    let all = snapshot(&dir);
    for name in [
        "ca.crt",
        "ca.key",
        "etcd/ca.crt",
        "front-proxy-ca.crt",
        "sa.key",
        "sa.pub",
        "apiserver.key",
    ] {
        assert_eq!(
            all[&PathBuf::from(name)],
            before[&PathBuf::from(name)],
            "{name}"
        );
    }
    assert_ne!(
        all[&PathBuf::from("admin.conf")],
        before[&PathBuf::from("admin.conf")]
    );
    for (name, issuer, cn, ..) in LEAVES {
        let c = cert(&dir, name);
        assert_eq!(c.common_name, cn);
        assert!(c.signed_by(&cert(&dir, issuer)), "{name}");
    }

    // CAs are not renewable; unknown names are named in the error.
    let out = duststack(&["pki", "renew", "ca", "--dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown certificate 'ca'") && err.contains("etcd-server"),
        "{err}"
    );
}

#[test]
fn check_lists_expiry_and_fails_on_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    init(&dir, &[]);
    let out = ok(duststack(&["pki", "check", "--dir", dir.to_str().unwrap()]));
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    for col in [
        "CERTIFICATE",
        "EXPIRES",
        "RESIDUAL TIME",
        "CERTIFICATE AUTHORITY",
        "EXTERNALLY MANAGED",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let row = out.lines().find(|l| l.starts_with("etcd-server ")).unwrap();
    assert!(
        row.contains(" 364d ") && row.contains(" etcd-ca ") && row.ends_with("no"),
        "{row}"
    );
    let row = out.lines().find(|l| l.starts_with("admin.conf ")).unwrap();
    assert!(row.contains(" ca "), "{row}");
    let ca_header = out
        .lines()
        .find(|l| l.starts_with("CERTIFICATE AUTHORITY"))
        .unwrap();
    assert!(ca_header.contains("EXPIRES"));
    let row = out
        .lines()
        .find(|l| l.starts_with("front-proxy-ca "))
        .unwrap();
    assert!(row.contains(" 9y ") || row.contains(" 10y "), "{row}");

    std::fs::remove_file(dir.join("etcd/peer.crt")).unwrap();
    std::fs::remove_file(dir.join("front-proxy-ca.key")).unwrap();
    let out = duststack(&["pki", "check", "--dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let row = stdout
        .lines()
        .find(|l| l.starts_with("etcd-peer "))
        .unwrap();
    assert!(row.contains("<missing>"), "{row}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("front-proxy-ca "))
        .unwrap();
    assert!(row.ends_with("yes"), "{row}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("etcd-peer (missing)"));
}

#[test]
fn ecdsa_keys_chain_and_an_external_ca_without_key_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    init(&dir, &["--key-algorithm", "ecdsa-p256"]);
    let text = String::from_utf8(
        tool(
            "openssl",
            &[
                "x509",
                "-noout",
                "-text",
                "-in",
                dir.join("apiserver.crt").to_str().unwrap(),
            ],
        )
        .stdout,
    )
    .unwrap();
    assert!(
        text.contains("id-ecPublicKey") && text.contains("P-256"),
        "{text}"
    );
    let out = tool(
        "openssl",
        &[
            "verify",
            "-CAfile",
            dir.join("ca.crt").to_str().unwrap(),
            dir.join("apiserver.crt").to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    // With ca.key gone, a change that needs signing fails and says why.
    std::fs::remove_file(dir.join("ca.key")).unwrap();
    let mut args = vec!["pki", "init", "--dir", dir.to_str().unwrap()];
    args.extend(BASE);
    args.extend(["--cert-sans", "new.example.com"]);
    let out = duststack(&args);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("apiserver needs to be issued (SANs changed) but ca.key is missing"),
        "{err}"
    );
}

#[test]
fn bad_inputs_name_their_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let d = dir.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &["--node-name", "n", "--advertise-address", "1.2.3"],
            "--advertise-address: '1.2.3' is not an IP address",
        ),
        (
            &[
                "--node-name",
                "n",
                "--advertise-address",
                "1.2.3.4",
                "--service-cidr",
                "10.96.0.0/40",
            ],
            "--service-cidr",
        ),
        (
            &[
                "--node-name",
                "n",
                "--advertise-address",
                "1.2.3.4",
                "--service-cidr",
                "10.96.0.0",
            ],
            "--service-cidr",
        ),
        (
            &[
                "--node-name",
                "n",
                "--advertise-address",
                "1.2.3.4",
                "--key-algorithm",
                "dsa",
            ],
            "--key-algorithm: unknown key algorithm 'dsa'",
        ),
        (
            &["--node-name", "bad name", "--advertise-address", "1.2.3.4"],
            "--node-name",
        ),
        (
            &[
                "--node-name",
                "n",
                "--advertise-address",
                "1.2.3.4",
                "--control-plane-endpoint",
                "lb:99999",
            ],
            "--control-plane-endpoint",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["pki", "init", "--dir", d];
        all.extend(args);
        let out = duststack(&all);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!dir.exists(), "nothing written for bad input");
    }
    // A --dir that is a file.
    std::fs::write(&dir, "x").unwrap();
    let mut all = vec!["pki", "init", "--dir", d];
    all.extend(BASE);
    let out = duststack(&all);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--dir") && err.contains(d), "{err}");
    let out = duststack(&[
        "pki",
        "check",
        "--dir",
        tmp.path().join("nope").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dir"));
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills etcd when the test ends, passed or failed.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn etcd_serves_with_the_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    init(&dir, &[]);
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let client = free_port();
    let peer = free_port();
    let client_url = format!("https://127.0.0.1:{client}");
    let peer_url = format!("https://127.0.0.1:{peer}");
    let log = std::fs::File::create(tmp.path().join("etcd.log")).unwrap();
    let child = Command::new("etcd")
        .args([
            "--name",
            "cp1",
            "--data-dir",
            tmp.path().join("data").to_str().unwrap(),
            "--cert-file",
            &p("etcd/server.crt"),
            "--key-file",
            &p("etcd/server.key"),
            "--client-cert-auth",
            "--trusted-ca-file",
            &p("etcd/ca.crt"),
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
            "--peer-cert-file",
            &p("etcd/peer.crt"),
            "--peer-key-file",
            &p("etcd/peer.key"),
            "--peer-client-cert-auth",
            "--peer-trusted-ca-file",
            &p("etcd/ca.crt"),
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
            "--initial-cluster",
            &format!("cp1={peer_url}"),
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("etcd is required for this test (apt-get install etcd-server etcd-client; scripts/install-deps.sh): {e}")
        });
    let _etcd = KillOnDrop(child);
    let health = |with_client_cert: bool| {
        let mut args = vec![
            "--endpoints".to_string(),
            client_url.clone(),
            "--cacert".into(),
            p("etcd/ca.crt"),
            "--dial-timeout".into(),
            "2s".into(),
            "--command-timeout".into(),
            "3s".into(),
        ];
        if with_client_cert {
            args.extend([
                "--cert".into(),
                p("etcd/healthcheck-client.crt"),
                "--key".into(),
                p("etcd/healthcheck-client.key"),
            ]);
        }
        args.extend(["endpoint".into(), "health".into()]);
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(&args)
            .output()
            .unwrap_or_else(|e| {
                panic!("etcdctl is required for this test (apt-get install etcd-client): {e}")
            })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let healthy = loop {
        let out = health(true);
        if out.status.success() {
            break out;
        }
        if Instant::now() > deadline {
            panic!(
                "etcd never became healthy: {}\n{}\netcd log:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(tmp.path().join("etcd.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    // etcdctl 3.4 prints the health line on stderr.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&healthy.stdout),
        String::from_utf8_lossy(&healthy.stderr)
    );
    assert!(said.contains("is healthy"), "{said}");
    let refused = health(false);
    assert!(
        !refused.status.success(),
        "etcd accepted a client without a certificate"
    );
}
